//! Issue 2, the thin client `kitty-sync`: emits through the daemon, queues
//! directly when no daemon runs, spools when the daemon hangs, and never lets
//! two parties issue the same Lamport value.

use std::time::Duration;

use kitty_tests::harness::*;
use serde_json::{Value, json};

const PAYLOAD: &str = r#"{"wp_id":"WP01","previous_status":"planned","new_status":"doing"}"#;

fn emit_json(home: &TestHome, extra: &[&str]) -> (Output, Value) {
    let mut args = vec!["emit", "WPStatusChanged", "--payload", PAYLOAD, "--json"];
    args.extend_from_slice(extra);
    let out = home.client(&args);
    out.assert_code(0);
    let v: Value = out.json();
    (out, v)
}

#[test]
fn emit_through_the_daemon_prints_the_event_id() {
    let home = TestHome::new();
    let d = home.start_daemon();
    let out = home.client(&[
        "emit",
        "WPStatusChanged",
        "--aggregate-id",
        "WP01",
        "--payload",
        PAYLOAD,
    ]);
    out.assert_code(0);
    let id = out.stdout.trim();
    assert!(
        kitty_proto::rules::is_ulid(id),
        "prints the event_id:\n{out}"
    );
    // No fallback warning; this home has no session, so the one warning is
    // that nothing will be sent until a login (staleness.rs).
    assert!(
        out.stderr
            .lines()
            .all(|l| !l.contains("warning:") || l.contains("needs a new login")),
        "no fallback warning when the daemon took it:\n{out}"
    );
    let rows = home.db().rows_with_event_id(id);
    assert_eq!(rows.len(), 1);
    let env = assert_valid_envelope(&rows[0].data);
    assert_eq!(env["lamport_clock"], 1);

    let (_, v) = emit_json(&home, &[]);
    assert_eq!(v["path"], "daemon", "{v}");
    assert_eq!(v["lamport_clock"], 2, "{v}");
    assert_eq!(v["duplicate"], false, "{v}");
    let id2 = v["event_id"].as_str().unwrap();
    assert_eq!(home.db().rows_with_event_id(id2).len(), 1);
    assert_eq!(d.api().status().queue.depth, 2);
}

#[test]
fn payload_file_stdin_flags_and_envelopes() {
    let home = TestHome::new();
    let d = home.start_daemon();

    home.write(
        "p.json",
        r#"{"wp_id":"WP03","entry_type":"note","entry_content":"from a file"}"#,
    );
    let path = home.file("p.json");
    let out = home.client(&[
        "emit",
        "HistoryAdded",
        "--payload-file",
        path.to_str().unwrap(),
    ]);
    out.assert_code(0);
    let env = home.db().rows_with_event_id(out.stdout.trim())[0].envelope();
    assert_eq!(env["payload"]["entry_content"], "from a file");

    let cause = new_ulid();
    let out = home.client_stdin(
        &[
            "emit",
            "WPAssigned",
            "--payload-file",
            "-",
            "--causation-id",
            &cause,
            "--project-uuid",
            "6f1c2d3e-0000-4000-8000-000000000001",
            "--project-slug",
            "demo",
        ],
        r#"{"wp_id":"WP04","agent_id":"claude","phase":"review"}"#,
    );
    out.assert_code(0);
    let env = home.db().rows_with_event_id(out.stdout.trim())[0].envelope();
    assert_eq!(env["event_type"], "WPAssigned");
    assert_eq!(env["payload"]["phase"], "review");
    assert_eq!(env["causation_id"], cause.as_str());
    assert_eq!(env["project_uuid"], "6f1c2d3e-0000-4000-8000-000000000001");
    assert_eq!(env["project_slug"], "demo");

    // A complete envelope, from a file and from stdin: relayed unchanged.
    let id = new_ulid();
    let envelope = cli_envelope(&id, 60);
    home.write("e.json", serde_json::to_string_pretty(&envelope).unwrap());
    let out = home.client(&[
        "emit",
        "--envelope",
        home.file("e.json").to_str().unwrap(),
        "--json",
    ]);
    out.assert_code(0);
    let v: Value = out.json();
    assert_eq!(v["event_id"], id.as_str());
    assert_eq!(v["lamport_clock"], 60);
    assert_eq!(home.db().rows_with_event_id(&id)[0].envelope(), envelope);

    let id2 = new_ulid();
    let envelope2 = cli_envelope(&id2, 61);
    let out = home.client_stdin(&["emit", "--envelope", "-"], &envelope2.to_string());
    out.assert_code(0);
    assert_eq!(out.stdout.trim(), id2);
    assert_eq!(
        home.db().rows_with_event_id(&id2)[0].data,
        envelope2.to_string(),
        "unchanged"
    );
    // Later local events order after the relayed ones.
    let (_, v) = emit_json(&home, &[]);
    assert!(v["lamport_clock"].as_u64().unwrap() > 61, "{v}");
    drop(d);
}

#[test]
fn invalid_input_exits_65_with_the_reason_and_stores_nothing() {
    let home = TestHome::new();
    let d = home.start_daemon();
    d.api().emit(&status_draft(1));

    let missing = r#"{"wp_id":"WP01","previous_status":"planned"}"#;
    let out = home.client(&["emit", "WPStatusChanged", "--payload", missing]);
    out.assert_code(EXIT_DATAERR);
    assert!(
        out.stderr.contains("payload.new_status"),
        "the daemon's message names the field:\n{out}"
    );

    let out = home.client(&["emit", "WPStatusChanged", "--payload", "{not json"]);
    out.assert_code(EXIT_DATAERR);

    let out = home.client(&[
        "emit",
        "WPStatusChanged",
        "--aggregate-id",
        "WP02",
        "--payload",
        PAYLOAD,
    ]);
    out.assert_code(EXIT_DATAERR);
    assert!(out.stderr.contains("aggregate_id"), "{out}");

    let mut bad_env = cli_envelope(&new_ulid(), 3);
    bad_env["lamport_clock"] = json!(-4);
    let out = home.client_stdin(&["emit", "--envelope", "-"], &bad_env.to_string());
    out.assert_code(EXIT_DATAERR);
    assert!(out.stderr.contains("lamport_clock"), "{out}");

    // An unknown type may be caught by the argument parser (2) or the validator (65).
    let out = home.client(&["emit", "WPExploded", "--payload", PAYLOAD]);
    assert!(matches!(out.code(), Some(2) | Some(EXIT_DATAERR)), "{out}");

    // Usage errors.
    home.client(&["emit"]).assert_code(2);
    home.client(&["emit", "WPStatusChanged", "--bogus-flag"])
        .assert_code(2);

    let st = d.api().status();
    assert_eq!(st.queue.depth, 1, "nothing stored");
    assert_eq!(st.clock.value, 1, "the clock did not move");
    assert!(home.spool_files().is_empty());
}

#[test]
fn with_no_daemon_the_client_queues_durably_and_a_later_daemon_continues() {
    let home = TestHome::new();
    let (out, v) = emit_json(&home, &[]);
    assert_eq!(v["path"], "direct", "{out}");
    assert_eq!(v["lamport_clock"], 1, "{out}");
    assert!(out.stderr.contains("warning:"), "warns on stderr:\n{out}");
    let id1 = v["event_id"].as_str().unwrap().to_owned();
    let row = &home.db().rows_with_event_id(&id1)[0];
    let env = assert_valid_envelope(&row.data);
    assert_eq!(env["lamport_clock"], 1);
    assert_eq!(env["team_slug"], "local");
    assert_eq!(home.clock_value(), Some(1), "the client updates clock.json");
    assert_eq!(home.clock_json().unwrap()["node_id"], env["node_id"]);

    // Plain output too; the warning is not repeated within the hour (staleness.rs).
    let out = home.client(&["emit", "WPStatusChanged", "--payload", PAYLOAD]);
    out.assert_code(0);
    assert!(!out.stderr.contains("warning:"), "{out}");
    let id2 = out.stdout.trim().to_owned();
    assert_eq!(home.db().rows_with_event_id(&id2)[0].lamport(), 2);
    assert_eq!(home.clock_value(), Some(2));

    // Invalid input is still refused locally.
    let out = home.client(&[
        "emit",
        "WPStatusChanged",
        "--payload",
        r#"{"wp_id":"WP01"}"#,
    ]);
    out.assert_code(EXIT_DATAERR);
    assert_eq!(home.db().count(), 2);

    // status without a daemon reads what the client wrote.
    let out = home.client(&["status", "--json"]);
    out.assert_code(EXIT_NOT_RUNNING);
    let st: kitty_proto::api::Status = out.json();
    assert_eq!((st.queue.depth, st.clock.value), (2, 2));

    // A daemon started later sees the rows and continues above them.
    let d = home.start_daemon();
    let st = d.api().status();
    assert_eq!(st.queue.depth, 2);
    assert!(st.clock.value >= 2);
    let next = d.api().emit(&status_draft(1));
    assert!(
        next.lamport_clock > 2,
        "issued {} after the client issued 2",
        next.lamport_clock
    );
    assert_eq!(
        home.db().rows()[0].envelope()["node_id"],
        env["node_id"],
        "one node_id for both"
    );
}

#[test]
fn with_a_stale_socket_file_the_client_queues_directly() {
    let home = TestHome::new();
    drop(std::os::unix::net::UnixListener::bind(home.socket()).unwrap());
    let (out, v) = emit_json(&home, &[]);
    assert_eq!(v["path"], "direct", "{out}");
    assert!(out.stderr.contains("warning:"), "{out}");
    assert_eq!(home.db().count(), 1);
}

#[test]
fn after_kill_9_the_direct_client_continues_above_every_issued_value() {
    let home = TestHome::new();
    let d = home.start_daemon();
    let accs = d
        .api()
        .emit_batch(&(0..50).map(status_draft).collect::<Vec<_>>());
    let max = accs.iter().map(|a| a.lamport_clock).max().unwrap();
    d.kill9(); // clock.json may lag behind: it is only a checkpoint
    let (out, v) = emit_json(&home, &[]);
    assert_eq!(v["path"], "direct", "{out}");
    assert!(
        v["lamport_clock"].as_u64().unwrap() > max,
        "direct client issued {v} after {max}"
    );
    // And then a daemon continues above the client.
    let d = home.start_daemon();
    let next = d.api().emit(&status_draft(1)).lamport_clock;
    assert!(next > v["lamport_clock"].as_u64().unwrap());
}

#[test]
fn concurrent_clients_never_share_a_lamport_value() {
    // Through the daemon.
    let home = std::sync::Arc::new(TestHome::new());
    let d = home.start_daemon();
    let run = |home: &std::sync::Arc<TestHome>, per: usize| -> Vec<Value> {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let home = std::sync::Arc::clone(home);
                std::thread::spawn(move || {
                    (0..per)
                        .map(|_| emit_json(&home, &[]).1)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    };
    let got = run(&home, 10);
    let mut values: Vec<u64> = got
        .iter()
        .map(|v| v["lamport_clock"].as_u64().unwrap())
        .collect();
    values.sort_unstable();
    assert_eq!(values, (1..=40).collect::<Vec<_>>());
    assert!(got.iter().all(|v| v["path"] == "daemon"));
    d.stop_gracefully();

    // Directly, with no daemon: the clock lock serialises them.
    let got = run(&home, 5);
    let direct: Vec<&Value> = got.iter().filter(|v| v["path"] == "direct").collect();
    let mut values: Vec<u64> = direct
        .iter()
        .map(|v| v["lamport_clock"].as_u64().unwrap())
        .collect();
    values.sort_unstable();
    let n = values.len();
    values.dedup();
    assert_eq!(
        values.len(),
        n,
        "direct writers issued a value twice: {got:?}"
    );
    assert!(
        values.iter().all(|&v| v > 40),
        "direct writers continue above the daemon: {values:?}"
    );
    let mut stored: Vec<u64> = home.db().rows().iter().map(|r| r.lamport()).collect();
    stored.sort_unstable();
    let n = stored.len();
    stored.dedup();
    assert_eq!(stored.len(), n, "a value stored twice");
    assert_eq!(stored.len(), 40 + direct.len());

    // Whatever path each took, a daemon started now ends up with every event once.
    let d = home.start_daemon();
    for v in &got {
        let id = v["event_id"].as_str().unwrap();
        eventually(
            &format!("event {id} ({}) in the queue", v["path"]),
            Duration::from_secs(10),
            || (home.db().rows_with_event_id(id).len() == 1).then_some(()),
        );
    }
    let mut stored: Vec<u64> = home.db().rows().iter().map(|r| r.lamport()).collect();
    stored.sort_unstable();
    let n = stored.len();
    stored.dedup();
    assert_eq!((stored.len(), n), (60, 60), "60 events, 60 distinct values");
    d.stop_gracefully();

    // With no daemon, every one of them should have been queued directly
    // (the interface: no daemon → path "direct"); a spool is for a hung daemon.
    let spooled: Vec<&Value> = got.iter().filter(|v| v["path"] != "direct").collect();
    assert!(
        spooled.is_empty(),
        "{} of 20 concurrent clients with NO daemon running did not queue directly: {spooled:?}",
        spooled.len()
    );
}

#[test]
fn a_hung_daemon_makes_the_client_spool_and_the_event_lands_once() {
    let home = TestHome::new();
    let d = home.start_daemon();
    let first = d.api().emit(&status_draft(1));
    d.freeze();
    let (out1, v1) = emit_json(&home, &[]);
    let (out2, v2) = emit_json(&home, &[]);
    assert_eq!(
        v1["path"], "spool",
        "a hung daemon may hold the clock lock:\n{out1}"
    );
    assert_eq!(v2["path"], "spool", "{out2}");
    let ids = [
        v1["event_id"].as_str().unwrap().to_owned(),
        v2["event_id"].as_str().unwrap().to_owned(),
    ];
    assert_ne!(ids[0], ids[1]);
    assert!(
        !home.spool_files().is_empty(),
        "the events wait in <home>/spool"
    );
    assert_eq!(
        home.db().count(),
        1,
        "nothing stamped while the daemon is stopped"
    );

    d.thaw();
    for id in &ids {
        eventually(
            &format!("spooled event {id} to be queued"),
            Duration::from_secs(10),
            || (home.db().rows_with_event_id(id).len() == 1).then_some(()),
        );
    }
    eventually("the spool to empty", Duration::from_secs(10), || {
        home.spool_files().is_empty().then_some(())
    });
    let view = d.api().queue(100);
    assert_eq!(view.depth, 3, "exactly once each: {view:?}");
    let rows = home.db().rows();
    assert_eq!(rows.len(), 3);
    let mut values: Vec<u64> = rows.iter().map(|r| r.lamport()).collect();
    values.sort_unstable();
    values.dedup();
    assert_eq!(values.len(), 3, "distinct values: {values:?}");
    for id in &ids {
        let row = &home.db().rows_with_event_id(id)[0];
        assert_valid_envelope(&row.data);
        assert!(row.lamport() > first.lamport_clock);
    }
    assert_eq!(d.api().status().spooled, 0);
}

#[test]
fn emit_takes_another_event_type_with_its_aggregate_on_both_paths() {
    let home = TestHome::new();
    let args = [
        "emit",
        "MissionCreated",
        "--aggregate-type",
        "Mission",
        "--aggregate-id",
        "042-demo",
        "--payload",
        r#"{"mission_slug":"042-demo","wp_count":3}"#,
        "--json",
    ];
    let without = home.client(&["emit", args[1], args[6], args[7]]);
    without.assert_code(65);
    assert!(without.stderr.contains("aggregate"), "{without}");
    let mut paths = Vec::new();
    for daemon in [false, true] {
        let _d = daemon.then(|| home.start_daemon());
        let out = home.client(&args);
        out.assert_code(0);
        let v: Value = out.json();
        paths.push(v["path"].as_str().unwrap().to_owned());
        let row = &home
            .db()
            .rows_with_event_id(v["event_id"].as_str().unwrap())[0];
        let env = assert_valid_envelope(&row.data);
        assert_eq!(env["aggregate_type"], "Mission", "{out}");
        assert_eq!(env["aggregate_id"], "042-demo");
        assert_eq!(
            env["payload"],
            json!({"mission_slug":"042-demo","wp_count":3})
        );
    }
    assert_eq!(paths, ["direct", "daemon"]);
}
