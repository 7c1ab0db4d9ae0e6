//! `status --json` is a contract (scripts read it): its keys, their order and
//! the words in it stay as they were when its states, codes and supervisor
//! kinds became types in kitty-proto. The texts below are what the binaries of
//! main printed for a fresh home before that change; only the values that
//! differ from one run to the next are masked.

use kitty_tests::harness::*;
use serde_json::Value;

/// A fresh daemon with no credentials: nothing queued, waiting for a login.
const RUNNING: &str = r#"{
  "running": true,
  "pid": "<pid>",
  "version": "<version>",
  "protocol": 2,
  "uptime_secs": "<uptime>",
  "socket": "<socket>",
  "home": "<home>",
  "queue": {
    "depth": 0,
    "max_queue_size": 10000,
    "oldest_age_secs": null,
    "retries": {
      "0": 0,
      "1-3": 0,
      "4+": 0
    },
    "top_event_types": []
  },
  "clock": {
    "value": 0,
    "node_id": "<node>"
  },
  "team_slug": "local",
  "server_url": "https://spec-kitty-dev.fly.dev",
  "logged_in": false,
  "username": null,
  "connection": "AuthRequired",
  "supervisor": "manual",
  "spooled": 0,
  "spool_rejected": 0,
  "start_hint": null,
  "config_loaded_at": "<time>",
  "refused": 0,
  "uplink": {
    "state": "AuthRequired",
    "last_sync_at": null,
    "last_error": null,
    "consecutive_failures": 0,
    "next_retry_at": null,
    "dead_letters": 0,
    "sent_ws": 0,
    "sent_batch": 0,
    "delivered": 0,
    "duplicates": 0,
    "rejected": 0,
    "refreshes": 0,
    "server_acks": false,
    "in_flight": null
  },
  "health": {
    "state": "AuthRequired",
    "depth": 0,
    "oldest_age_secs": null,
    "stale_after_secs": 3600
  },
  "writer": {
    "ok": true,
    "last_error": null,
    "failing_since": null,
    "consecutive_failures": 0,
    "last_commit_at": null
  }
}"#;

/// The same home before any daemon ran: what `status` reads from disk.
const NOT_RUNNING: &str = r#"{
  "running": false,
  "pid": null,
  "version": "<version>",
  "protocol": 2,
  "uptime_secs": null,
  "socket": "<socket>",
  "home": "<home>",
  "queue": {
    "depth": 0,
    "max_queue_size": 10000,
    "oldest_age_secs": null,
    "retries": {
      "0": 0,
      "1-3": 0,
      "4+": 0
    },
    "top_event_types": []
  },
  "clock": {
    "value": 0,
    "node_id": "<node>"
  },
  "team_slug": "local",
  "server_url": "https://spec-kitty-dev.fly.dev",
  "logged_in": false,
  "username": null,
  "connection": "Offline",
  "supervisor": null,
  "spooled": 0,
  "spool_rejected": 0,
  "start_hint": "<hint>",
  "config_loaded_at": null,
  "refused": 0,
  "uplink": {
    "state": "Offline",
    "last_sync_at": null,
    "last_error": null,
    "consecutive_failures": 0,
    "next_retry_at": null,
    "dead_letters": 0,
    "sent_ws": 0,
    "sent_batch": 0,
    "delivered": 0,
    "duplicates": 0,
    "rejected": 0,
    "refreshes": 0,
    "server_acks": false,
    "in_flight": null
  },
  "writer": {
    "ok": true,
    "last_error": null,
    "failing_since": null,
    "consecutive_failures": 0,
    "last_commit_at": null
  }
}"#;

/// The output with the values of this run masked, after checking that it is
/// the pretty form of its own JSON (so the layout is pinned too).
fn masked(out: &Output) -> String {
    let mut v: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        out.stdout,
        format!("{}\n", serde_json::to_string_pretty(&v).unwrap()),
        "printed as pretty JSON"
    );
    let mask = |v: &mut Value, key: &str, with: &str| {
        if v[key].is_null() {
            return;
        }
        v[key] = Value::String(with.into());
    };
    mask(&mut v, "pid", "<pid>");
    mask(&mut v, "version", "<version>");
    mask(&mut v, "uptime_secs", "<uptime>");
    mask(&mut v, "socket", "<socket>");
    mask(&mut v, "home", "<home>");
    mask(&mut v, "start_hint", "<hint>");
    mask(&mut v, "config_loaded_at", "<time>");
    mask(&mut v["clock"], "node_id", "<node>");
    serde_json::to_string_pretty(&v).unwrap()
}

#[test]
fn status_json_of_a_fresh_home_is_what_it_always_was() {
    let home = TestHome::new();
    for out in [
        home.daemon_cmd(&["status", "--json"]),
        home.client(&["status", "--json"]),
    ] {
        out.assert_code(EXIT_NOT_RUNNING);
        assert_eq!(masked(&out), NOT_RUNNING, "{out}");
    }
    let d = home.start_daemon();
    for out in [
        home.daemon_cmd(&["status", "--json"]),
        home.client(&["status", "--json"]),
    ] {
        out.assert_code(0);
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["pid"], d.pid(), "{out}");
        assert_eq!(v["version"], kitty_proto::VERSION, "{out}");
        assert_eq!(masked(&out), RUNNING, "{out}");
    }
    d.stop_gracefully();
}
