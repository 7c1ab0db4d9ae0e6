//! Issue 11: staleness is loud. A successful `kitty-sync emit` whose event will
//! not reach the server (no daemon, a daemon that does not answer, a session
//! the server refused, an oldest event older than `[sync] stale_after_secs`)
//! prints one warning line with the command that fixes it, at most once an
//! hour per home; `status` puts the same on its first line and exits 4.
//!
//! Real kitty-syncd, kitty-sync and kitty-saas-dev. The hour is not waited
//! for: the test moves the time of the last warning in `<home>/warned` back.

use kitty_tests::harness::*;
use kitty_tests::uplink_harness::*;
use serde_json::json;

fn payload(n: u32) -> String {
    json!({"wp_id": format!("WP{n:02}"), "previous_status": "planned", "new_status": "doing"})
        .to_string()
}

fn emit(home: &TestHome, n: u32) -> Output {
    let out = home.client(&[
        "emit",
        "WPStatusChanged",
        "--payload",
        &payload(n),
        "--json",
    ]);
    out.assert_code(0);
    out
}

fn warnings(out: &Output) -> Vec<String> {
    out.stderr
        .lines()
        .filter(|l| l.contains("warning:"))
        .map(str::to_owned)
        .collect()
}

/// As if the last warning had been shown `secs` ago.
fn warned_ago(home: &TestHome, secs: i64) {
    let t = chrono::Utc::now().timestamp() - secs;
    home.write("warned", format!("delivery {t}\n"));
}

/// A session with a server that is gone: the home is configured for a port
/// held for it (refused until a server starts on it) and logged in with a
/// server that was then killed, so nothing can be delivered.
fn logged_in_to_a_gone_server(home: &TestHome) -> ReservedPort {
    let server = SaasDev::start(home.root(), &[]);
    let port = ReservedPort::new();
    let url = port.url();
    write_sync_config(home, &url, 0, 1);
    let r = server.try_login(USER, PASSWORD);
    r.assert_status(200);
    write_credentials_from_reply(home, &url, USER, &r.json());
    server.kill9();
    port
}

/// Queues an event made `secs_ago`, as another tool would.
fn queue_like_another_tool(home: &TestHome, lamport: u64, secs_ago: i64) {
    let mut old = foreign_envelope(TEAM, lamport);
    old["event_id"] = new_ulid().into();
    home.db().insert_like_cli(
        old["event_id"].as_str().unwrap(),
        "WPStatusChanged",
        &old.to_string(),
        chrono::Utc::now().timestamp() - secs_ago,
    );
}

#[test]
fn without_a_daemon_many_emits_give_one_warning_with_the_start_command() {
    let home = TestHome::new();
    // 16 emits, four at a time, as a busy script would.
    let outs: Vec<Output> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let home = &home;
                s.spawn(move || (0..4).map(|i| emit(home, w * 4 + i)).collect::<Vec<_>>())
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert!(
        outs.iter()
            .all(|o| o.json::<serde_json::Value>()["path"] == "direct")
    );
    assert_eq!(home.db().count(), 16);
    let lines: Vec<String> = outs.iter().flat_map(warnings).collect();
    assert_eq!(lines.len(), 1, "one warning for 16 emits: {lines:?}");
    assert!(
        lines[0].contains("kitty-syncd is not running") && lines[0].contains("start it with: "),
        "{}",
        lines[0]
    );

    // An hour later it says so again, once.
    warned_ago(&home, 3601);
    assert_eq!(warnings(&emit(&home, 20)).len(), 1);
    assert!(warnings(&emit(&home, 21)).is_empty());
}

#[test]
fn without_a_session_emit_warns_once_and_status_exits_4() {
    let home = TestHome::new();
    let d = home.start_daemon();
    let first = emit(&home, 1);
    let w = warnings(&first);
    assert_eq!(w.len(), 1, "{first}");
    assert!(
        w[0].contains("needs a new login")
            && w[0].contains("kitty-sync login --server https://spec-kitty-dev.fly.dev"),
        "{}",
        w[0]
    );
    assert_eq!(first.json::<serde_json::Value>()["path"], "daemon");
    assert!(warnings(&emit(&home, 2)).is_empty(), "once an hour");

    for out in [home.client(&["status"]), home.daemon_cmd(&["status"])] {
        out.assert_code(EXIT_STUCK);
        let line = out.stdout.lines().next().unwrap();
        assert!(
            line.starts_with("DELIVERY STUCK: ") && line.contains("kitty-sync login"),
            "{out}"
        );
    }
    let out = home.client(&["status", "--json"]);
    out.assert_code(EXIT_STUCK);
    let st: kitty_proto::api::Status = out.json();
    let h = st
        .health
        .expect("a running daemon reports its delivery health");
    assert_eq!((h.state.as_str(), h.depth), ("AuthRequired", 2));
    d.stop_gracefully();
}

#[test]
fn an_event_older_than_the_threshold_is_loud_until_it_is_delivered() {
    let home = TestHome::new();
    let port = logged_in_to_a_gone_server(&home);
    // Queued two minutes ago, by another tool, while nothing could deliver it.
    home.db().create_cli_schema(false);
    queue_like_another_tool(&home, 1, 120);
    let d = home.start_daemon();
    let api = d.api();
    wait_until("a failed attempt", DRAIN_GUARD, || {
        let u = api.uplink();
        (u.consecutive_failures > 0)
            .then_some(())
            .ok_or(format!("{u:?}"))
    });

    // Two minutes is not stuck by the default hour.
    assert!(warnings(&emit(&home, 1)).is_empty());
    home.client(&["status"]).assert_code(0);

    // With a one-minute threshold it is.
    let mut config = std::fs::read_to_string(home.file("config.toml")).unwrap();
    config = config.replace("[sync]\n", "[sync]\nstale_after_secs = 60\n");
    home.write("config.toml", config);
    wait_until("the new threshold", HANG_GUARD, || {
        let h = api.status().health.unwrap();
        (h.stale_after_secs == 60)
            .then_some(())
            .ok_or(format!("{h:?}"))
    });
    let out = emit(&home, 2);
    let w = warnings(&out);
    assert_eq!(w.len(), 1, "{out}");
    assert!(
        w[0].contains("the oldest queued event has waited 2m")
            && w[0].contains("kitty-sync sync --wait"),
        "{}",
        w[0]
    );
    let out = home.client(&["status"]);
    out.assert_code(EXIT_STUCK);
    assert!(
        out.stdout
            .starts_with("DELIVERY STUCK: the oldest queued event"),
        "{out}"
    );

    // The server is back: everything goes, and status is calm again.
    // (A new kitty-saas-dev signs with a new key: log in to it.)
    let server = SaasDev::start_on(home.root(), port, &[]);
    login(&home, &server.url(), USER, PASSWORD);
    wait_delivered(&server, &home, 3, DRAIN_GUARD);
    let out = home.client(&["status"]);
    out.assert_code(0);
    assert!(!out.stdout.contains("STUCK"), "{out}");
    d.stop_gracefully();
}

/// The daemon answers an emit on a queue that held nothing else without
/// reading the queue (it knows the oldest row is the one it just wrote); a
/// row another tool queues while the daemon runs must still count.
#[test]
fn an_old_event_queued_by_another_tool_while_the_daemon_runs_still_counts() {
    let home = TestHome::new();
    let _port = logged_in_to_a_gone_server(&home);
    std::fs::write(
        home.file("config.toml"),
        std::fs::read_to_string(home.file("config.toml"))
            .unwrap()
            .replace("[sync]\n", "[sync]\nstale_after_secs = 60\n"),
    )
    .unwrap();
    let d = home.start_daemon();
    // An empty queue, then one fresh event: nothing is stale.
    assert!(warnings(&emit(&home, 1)).is_empty());
    // Another tool queues an event made two minutes ago, the daemon running.
    queue_like_another_tool(&home, 50, 120);
    // The one-second reading of the queue has gone stale by now.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = emit(&home, 2);
    let w = warnings(&out);
    assert_eq!(w.len(), 1, "{out}");
    assert!(
        w[0].contains("the oldest queued event has waited 2m"),
        "{}",
        w[0]
    );
    d.stop_gracefully();
}

#[test]
fn a_daemon_that_does_not_answer_gets_one_warning_for_its_spooled_events() {
    let home = TestHome::new();
    let d = home.start_daemon();
    d.freeze();
    let first = emit(&home, 1);
    assert_eq!(
        first.json::<serde_json::Value>()["path"],
        "spool",
        "{first}"
    );
    let w = warnings(&first);
    assert_eq!(w.len(), 1, "{first}");
    assert!(
        w[0].contains("did not answer") && w[0].contains("restart it with: "),
        "{}",
        w[0]
    );
    let second = emit(&home, 2);
    assert_eq!(second.json::<serde_json::Value>()["path"], "spool");
    assert!(warnings(&second).is_empty(), "{second}");
    d.thaw();
    eventually("the spool queued", HANG_GUARD, || {
        (home.db().count() == 2).then_some(())
    });
    d.stop_gracefully();
}
