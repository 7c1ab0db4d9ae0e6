//! Issue 7, sharing a home with a spec-kitty CLI that writes it directly.
//!
//! Until the CLI hands its events to the socket, spec-kitty-cli 2.1.3 ticks a
//! private copy of the clock loaded from clock.json, saves it back, and inserts
//! its rows into queue.db itself. Run side by side, processes of the real CLI
//! (from PyPI) and the daemon take turns: no `(node_id, lamport_clock)` may
//! repeat, each process continues above everything issued before it, and
//! clock.json ends at the largest value, never lowered.
//!
//! The CLI runs with `HOME` = the test's root, whose `.spec-kitty` is the
//! daemon's home, and its server URL points at a closed loopback port.

use std::collections::HashSet;

use kitty_tests::harness::*;
use kitty_tests::pycli::PyCli;
use serde_json::Value;

fn shared_home() -> TestHome {
    let home = TestHome::with_home_at(".spec-kitty");
    // Nothing but loopback for the CLI (and the daemon): a port nobody serves.
    home.write(
        "config.toml",
        "[sync]\nserver_url = \"http://127.0.0.1:9\"\n",
    );
    home
}

#[test]
fn the_daemon_and_spec_kitty_cli_2_1_3_take_turns_without_reusing_a_value() {
    let cli = PyCli::get("2.1.3");
    let home = shared_home();
    let d = home.start_daemon();
    let api = d.api();

    // (who, value) in the order issued.
    let mut issued: Vec<(&str, u64)> = Vec::new();
    let mut record = |who, v: u64| {
        if let Some(&(prev_who, prev)) = issued.iter().max_by_key(|(_, v)| *v) {
            assert!(
                v > prev,
                "{who} issued {v}, not above {prev} issued earlier by {prev_who}: {issued:?}"
            );
        }
        issued.push((who, v));
    };
    for round in 0..3u32 {
        for i in 0..2 {
            record(
                "daemon",
                api.emit(&status_draft(round * 2 + i)).lamport_clock,
            );
        }
        // Each CLI process loads clock.json afresh: it must find a value at or
        // above the daemon's last there at once, not a second later.
        let event = cli.emit_wp_created(home.root(), &format!("WP{:02}", 10 + round));
        let v = event["lamport_clock"]
            .as_u64()
            .unwrap_or_else(|| panic!("no lamport_clock: {event}"));
        record("spec-kitty-cli 2.1.3", v);
    }
    // The daemon moves past what the last CLI process issued.
    record("daemon", api.emit(&status_draft(9)).lamport_clock);

    let rows = home.db().rows();
    assert_eq!(rows.len(), issued.len(), "every event queued: {rows:?}");
    let mut seen = HashSet::new();
    for r in &rows {
        let env: Value = r.envelope();
        let key = (
            env["node_id"].as_str().unwrap_or("").to_owned(),
            r.lamport(),
        );
        assert!(seen.insert(key.clone()), "{key:?} issued twice: {rows:?}");
    }
    let node_ids: HashSet<_> = seen.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(node_ids.len(), 1, "one node: {node_ids:?}");
    let max = rows.iter().map(QueueRow::lamport).max().unwrap();
    let file = home.assert_clock_covers(max, "clock.json after the commit");
    d.stop_gracefully();
    assert_eq!(home.clock_value(), Some(file), "not moved at shutdown");
}

#[test]
fn clock_json_the_cli_moved_ahead_is_never_moved_back() {
    let cli = PyCli::get("2.1.3");
    let home = shared_home();
    let d = home.start_daemon();
    let api = d.api();
    let mine = api.emit(&status_draft(1)).lamport_clock;
    let before = home.assert_clock_covers(mine, "after the daemon's first value");
    // A CLI process with an old private copy of the clock saves a value ahead
    // of ours (clock.json is how it persists its ticks).
    let out = cli.python(
        home.root(),
        "from specify_cli.sync.clock import LamportClock\n\
         c = LamportClock.load()\n\
         c.value += 40\n\
         c.save()\n",
    );
    out.assert_code(0);
    let ahead = home.clock_value().expect("the CLI wrote clock.json");
    assert_eq!(ahead, before + 40, "{:?}", home.clock_text());
    let next = api.emit(&status_draft(2)).lamport_clock;
    assert_eq!(next, ahead + 1, "continues above the CLI's value");
    let file = home.assert_clock_covers(next, "after the daemon's next value");
    d.stop_gracefully();
    assert_eq!(home.clock_value(), Some(file), "not moved back at shutdown");
}
