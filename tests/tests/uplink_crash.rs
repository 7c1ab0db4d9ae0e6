//! Issue 3, a crash in the middle of a sync: `kill -9` while a backlog drains,
//! then a restart; everything is delivered, and the server sees at most
//! re-sends it answers `duplicate` (stored once each).
//!
//! Real kitty-syncd, real kitty-saas-dev. Waits are bounded; nothing asserts
//! on elapsed time.

use kitty_tests::harness::*;
use kitty_tests::uplink_harness::*;

#[test]
fn kill_9_while_draining_then_restart_delivers_everything_once() {
    const N: u64 = 5000;
    let home = TestHome::new();
    // A 2026-02 server (no acks): rows leave only when a batch confirms them,
    // and with one batch a second, 5,000 take several seconds to confirm.
    let server = SaasDev::start(home.root(), &[]);
    configure(&home, &server, 1, 300, true);
    let d = home.start_daemon();
    let api = d.api();
    let accs = api.emit_many(N as usize, &|i| status_draft(i as u32));
    assert_eq!(accs.len() as u64, N);

    // In the middle: the server has taken a first batch, the queue is not empty.
    let c = wait_until("the drain to be under way", DRAIN_GUARD, || {
        let c = server.counters();
        if c.batches >= 1 || c.events_stored >= 1 {
            Ok(c)
        } else {
            Err(format!("{c:?}"))
        }
    });
    d.kill9();
    let left = home.db().count();
    assert!(
        left > 0,
        "killed in the middle of the sync: {left} rows left after {c:?}"
    );
    assert!(
        home.db().count() as u64 <= N,
        "no row appeared from nowhere"
    );

    let d = home.start_daemon();
    let c = wait_delivered(&server, &home, N, DRAIN_GUARD);
    assert_eq!(c.unique_event_ids, N, "all delivered: {c:?}");
    assert_eq!(
        c.events_stored, N,
        "re-sends are answered duplicate, never stored twice: {c:?}"
    );
    let stored = server.events(Some(TEAM));
    assert_eq!(stored.len() as u64, N);
    let ids: std::collections::HashSet<&str> = stored
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    for a in &accs {
        assert!(ids.contains(a.event_id.as_str()), "{} lost", a.event_id);
    }
    let up = d.api().uplink();
    assert_eq!(up.dead_letters, 0, "{up:?}");
    d.stop_gracefully();
}
