//! Issue 3, the uplink online: events go out over the WebSocket as they are
//! committed, each stored once, in Lamport order, with a 2026-02 server (no
//! acks: rows wait for a batch to confirm them) and a later one (acks delete
//! rows); pings are answered; remote events advance the clock; `local` is sent
//! as the session's team; SIGTERM closes the WebSocket with a close frame.
//!
//! Real kitty-syncd, real kitty-saas-dev. Waits are bounded; nothing asserts
//! on elapsed time.

use std::collections::HashSet;

use kitty_tests::harness::*;
use kitty_tests::uplink_harness::*;
use serde_json::Value;

fn online_delivery(ack: bool) {
    let home = TestHome::new();
    let mut args = vec!["--ping-interval-ms", "300"];
    if ack {
        args.push("--ack");
    }
    let server = SaasDev::start(home.root(), &args);
    configure(&home, &server, 1, 300, true);
    let d = home.start_daemon();
    let api = d.api();
    api.wait_state("Connected", DRAIN_GUARD);

    // One at a time, then two arrays: both paths into the queue.
    let mut emitted = Vec::new();
    for i in 0..20 {
        emitted.push(api.emit(&status_draft(i)));
    }
    for _ in 0..2 {
        let drafts: Vec<Value> = (0..15).map(status_draft).collect();
        emitted.extend(api.emit_batch(&drafts));
    }
    let n = emitted.len() as u64;

    let c = wait_delivered(&server, &home, n, DRAIN_GUARD);
    assert_eq!(c.unique_event_ids, n, "each event stored once: {c:?}");
    assert_eq!(
        c.events_stored, n,
        "no event stored twice (duplicates are answered, not stored): {c:?}"
    );
    assert!(c.ws_events >= 1, "events went over the WebSocket: {c:?}");
    assert_eq!(c.rejected, 0, "nothing refused: {c:?}");
    assert_eq!(c.forbidden, 0, "nothing cross-tenant: {c:?}");

    let stored = server.events(Some(TEAM));
    assert_eq!(stored.len() as u64, n);
    let ids: HashSet<&str> = stored
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    let sent: HashSet<&str> = emitted.iter().map(|a| a.event_id.as_str()).collect();
    assert_eq!(ids, sent, "the server holds exactly the emitted events");
    let lamports: Vec<u64> = stored
        .iter()
        .map(|e| e["lamport_clock"].as_u64().unwrap())
        .collect();
    assert!(
        lamports.windows(2).all(|w| w[0] < w[1]),
        "arrival order of first copies is Lamport order: {lamports:?}"
    );
    for e in &stored {
        assert_eq!(e["team_slug"], TEAM);
    }

    let up = api.uplink();
    assert!(up.sent_ws >= n, "sent over the WebSocket: {up:?}");
    if ack {
        assert!(up.server_acks, "the server acknowledges: {up:?}");
    } else {
        assert!(!up.server_acks, "a 2026-02 server sends no acks: {up:?}");
        assert!(
            c.duplicates_seen > 0,
            "without acks, a batch confirms what the WebSocket sent (answered duplicate): {c:?}"
        );
        assert!(c.batches >= 1, "{c:?}");
    }

    // Pings are answered with pongs echoing their timestamps.
    let c = wait_until("a pong from the daemon", DRAIN_GUARD, || {
        let c = server.counters();
        if c.ws_pongs >= 1 {
            Ok(c)
        } else {
            Err(format!("{c:?}"))
        }
    });
    assert_eq!(c.ws_bad_pongs, 0, "pongs echo the ping's timestamp: {c:?}");
    d.stop_gracefully();
}

#[test]
fn online_events_arrive_over_the_websocket_once_in_order_without_acks() {
    online_delivery(false);
}

#[test]
fn online_events_arrive_over_the_websocket_once_in_order_with_acks() {
    online_delivery(true);
}

#[test]
fn remote_events_on_the_websocket_advance_the_clock() {
    let home = TestHome::new();
    let server = SaasDev::start(home.root(), &[]);
    configure(&home, &server, 1, 300, true);
    let d = home.start_daemon();
    let api = d.api();
    let first = api.emit(&status_draft(1));
    assert!(first.lamport_clock < 10_000);
    wait_delivered(&server, &home, 1, DRAIN_GUARD);
    api.wait_state("Connected", DRAIN_GUARD);
    wait_until("the daemon's WebSocket at the server", DRAIN_GUARD, || {
        let c = server.counters();
        if c.ws_connected >= 1 {
            Ok(())
        } else {
            Err(format!("{c:?}"))
        }
    });

    // Another node of the same team posts a batch; the server broadcasts it
    // to the team's sockets, the daemon's among them.
    let token = server.access_token(USER, PASSWORD);
    let remote = foreign_envelope(TEAM, 10_000);
    let r = server.post_batch(&token, std::slice::from_ref(&remote));
    r.assert_status(200);
    let c = server.counters();
    assert!(c.ws_broadcasts >= 1, "broadcast to the daemon: {c:?}");

    let clock = wait_until("the clock to pass 10,000", DRAIN_GUARD, || {
        let v = api.status().clock.value;
        if v >= 10_000 {
            Ok(v)
        } else {
            Err(format!("clock {v}"))
        }
    });
    assert!(
        clock > 10_000,
        "receive() = max(local, remote) + 1: {clock}"
    );
    let next = api.emit(&status_draft(2));
    assert!(
        next.lamport_clock > 10_000,
        "the next local emit is after the remote event: {}",
        next.lamport_clock
    );
    wait_delivered(&server, &home, 3, DRAIN_GUARD);
    d.stop_gracefully();
}

#[test]
fn local_team_is_sent_as_the_sessions_team_once_logged_in() {
    let home = TestHome::new();
    let server = SaasDev::start(home.root(), &[]);
    configure(&home, &server, 1, 300, false);
    let d = home.start_daemon();
    let api = d.api();
    let drafts: Vec<Value> = (0..3).map(status_draft).collect();
    let accs = api.emit_batch(&drafts);
    let rows = home.db().rows();
    assert_eq!(rows.len(), 3);
    for r in &rows {
        assert_eq!(r.envelope()["team_slug"], "local", "logged out: local");
    }

    login(&home, &server.url(), USER, PASSWORD);
    let c = wait_delivered(&server, &home, 3, DRAIN_GUARD);
    assert_eq!(c.unique_event_ids, 3, "{c:?}");
    assert_eq!(c.forbidden, 0, "nothing went out as \"local\": {c:?}");
    let stored = server.events(Some(TEAM));
    assert_eq!(stored.len(), 3, "stored under the session's team");
    for (acc, row) in accs.iter().zip(&rows) {
        let e = stored
            .iter()
            .find(|e| e["event_id"] == acc.event_id.as_str())
            .unwrap_or_else(|| panic!("{} not stored: {stored:?}", acc.event_id));
        assert_eq!(e["team_slug"], TEAM);
        // Everything else is the queued envelope as it was.
        let mut queued = row.envelope();
        queued["team_slug"] = TEAM.into();
        assert_eq!(e, &queued, "only team_slug is rewritten");
    }

    // Emitted while logged in: stamped with the team at once.
    let acc = api.emit(&status_draft(9));
    wait_delivered(&server, &home, 4, DRAIN_GUARD);
    let e = server
        .events(Some(TEAM))
        .into_iter()
        .find(|e| e["event_id"] == acc.event_id.as_str())
        .expect("stored");
    assert_eq!(e["team_slug"], TEAM);
    d.stop_gracefully();
}

#[test]
fn sigterm_closes_the_websocket_with_a_close_frame() {
    let home = TestHome::new();
    let server = SaasDev::start(home.root(), &[]);
    configure(&home, &server, 1, 300, true);
    let d = home.start_daemon();
    d.api().wait_state("Connected", DRAIN_GUARD);
    wait_until("the daemon's WebSocket at the server", DRAIN_GUARD, || {
        let c = server.counters();
        if c.ws_connected >= 1 {
            Ok(())
        } else {
            Err(format!("{c:?}"))
        }
    });
    d.stop_gracefully();
    wait_until("the server to see the socket end", DRAIN_GUARD, || {
        let log = server.log();
        if log.contains("websocket closed") {
            Ok(())
        } else {
            Err(log)
        }
    });
    let log = server.log();
    assert!(
        log.contains("client closed"),
        "the daemon sent a close frame (the server logs why=client closed):\n{log}"
    );
}
