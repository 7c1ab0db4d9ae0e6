//! Issue 3, dead letters: an event the server rejects one by one is retried,
//! and after the fifth rejection moved to `dead_letter`, shown in status and
//! `GET /v1/dead`, while the others are delivered; `POST /v1/dead/retry`
//! puts it back with a fresh retry_count.
//!
//! The rejected event is a row another tool (an older CLI) wrote straight into
//! queue.db, with an envelope the server refuses (`aggregate_type` "thing", not PascalCase):
//! kitty-syncd would refuse such an envelope on its socket, so only a row
//! written behind its back can carry it.
//!
//! Real kitty-syncd, real kitty-saas-dev. Waits are bounded; nothing asserts
//! on elapsed time.

use kitty_tests::harness::*;
use kitty_tests::uplink_harness::*;
use serde_json::Value;

#[test]
fn five_rejections_make_a_dead_letter_and_retry_dead_puts_it_back() {
    const GOOD: u64 = 5;
    let home = TestHome::new();
    let server = SaasDev::start(home.root(), &[]);
    // flush every second, so each round comes quickly.
    configure(&home, &server, 0, 1, true);

    let bad_id = new_ulid();
    let mut bad = foreign_envelope(TEAM, 3);
    bad["event_id"] = bad_id.as_str().into();
    bad["aggregate_type"] = "thing".into();
    let db = home.db();
    db.create_cli_schema(false);
    db.insert_like_cli(&bad_id, "WPStatusChanged", &bad.to_string(), 1);

    let d = home.start_daemon();
    let api = d.api();
    let drafts: Vec<Value> = (0..GOOD as u32).map(status_draft).collect();
    let accs = api.emit_batch(&drafts);

    let up = wait_until("the bad event to become a dead letter", DRAIN_GUARD, || {
        let up = api.uplink();
        if up.dead_letters >= 1 {
            Ok(up)
        } else {
            // Nudge a round now and then; the flush interval does too.
            let _ = api.try_request("POST", "/v1/sync", Some(b""));
            Err(format!("{up:?} queue {:?}", db.rows_with_event_id(&bad_id)))
        }
    });
    assert_eq!(up.dead_letters, 1, "{up:?}");
    assert!(up.rejected >= 5, "five rejections counted: {up:?}");

    let dead = api.dead(10);
    assert_eq!(dead.count, 1, "{dead:?}");
    let entry = &dead.events[0];
    assert_eq!(entry.event_id, bad_id);
    assert_eq!(entry.retry_count, 5, "{entry:?}");
    assert!(
        entry
            .error
            .as_deref()
            .is_some_and(|e| e.contains("aggregate_type")),
        "the server's message is kept: {entry:?}"
    );
    assert_eq!(entry.envelope, bad, "kept as it was");
    assert!(
        db.rows_with_event_id(&bad_id).is_empty(),
        "moved out of the queue"
    );
    assert_eq!(
        dead_letter_rows(&home),
        1,
        "in queue.db's dead_letter table"
    );

    // The others went through.
    let c = wait_delivered(&server, &home, GOOD, DRAIN_GUARD);
    assert_eq!(c.unique_event_ids, GOOD, "{c:?}");
    assert!(c.rejected >= 5, "{c:?}");
    let stored = server.events(Some(TEAM));
    for a in &accs {
        assert!(stored.iter().any(|e| e["event_id"] == a.event_id.as_str()));
    }

    // Put back: in the queue again with a fresh count, no longer dead.
    let requeued = api.retry_dead();
    assert_eq!(requeued.requeued, 1, "{requeued:?}");
    let rows = db.rows_with_event_id(&bad_id);
    assert_eq!(rows.len(), 1, "back in the queue");
    assert!(
        rows[0].retry_count.unwrap_or(0) < 5,
        "retry_count reset: {:?}",
        rows[0]
    );
    assert_eq!(rows[0].envelope(), bad);
    // Five more rounds would bury it again; right after the retry it is alive.
    let after = api.dead(10);
    assert_eq!(after.count, 0, "{after:?}");
    assert_eq!(dead_letter_rows(&home), 0);
    d.stop_gracefully();
}
