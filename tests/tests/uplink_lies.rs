//! Issue 7, a server that lies: WebSocket acks and errors count only for
//! events in flight on that connection; an ack that says "rejected" (or
//! nothing readable) is not an acceptance.
//!
//! Real kitty-syncd, real kitty-saas-dev with its lying switches. Waits are
//! bounded; nothing asserts on elapsed time. Each wait that decides "the
//! daemon has seen the lie" waits for a frame the daemon must answer *after*
//! the lie, so the assertions after it are not a matter of luck.

use kitty_tests::harness::*;
use kitty_tests::uplink_harness::*;
use serde_json::{Value, json};

/// A ping whose timestamp no server ping had: the daemon's pong to it shows
/// up as `ws_bad_pongs`, after every frame sent before it was handled.
fn marker_ping() -> Value {
    json!({"type": "ping", "timestamp": "after-the-lies"})
}

#[test]
fn acks_and_errors_for_events_not_in_flight_on_the_connection_change_nothing() {
    const N: usize = 3000;
    let home = TestHome::new();
    let server = SaasDev::start(home.root(), &["--ack"]);
    // Connection 1 carries every event and the server drops them all; no
    // batch gets through, so the rows stay queued, sent but unconfirmed.
    server.set_faults(json!({"ws_ignore_events": true, "batch_500_fraction": 1.0}));
    configure(&home, &server, 1, 300, true);
    let d = home.start_daemon();
    let api = d.api();
    api.wait_state("Connected", DRAIN_GUARD);
    api.emit_many(N, &|i| status_draft(i as u32));
    wait_until("every event sent over connection 1", DRAIN_GUARD, || {
        let c = server.counters();
        if c.ws_events >= N as u64 {
            Ok(())
        } else {
            Err(format!("{c:?}"))
        }
    });
    let ids: Vec<String> = home.db().rows().into_iter().map(|r| r.event_id).collect();
    assert_eq!(ids.len(), N);

    // Connection 2 opens with acks for half the queue and five errors each
    // for the other half: none of them was sent on it.
    let (acked, errored) = ids.split_at(N / 2);
    let mut lies: Vec<Value> = acked
        .iter()
        .map(|id| json!({"type": "ack", "event_id": id, "status": "accepted"}))
        .collect();
    for _ in 0..5 {
        lies.extend(errored.iter().map(
            |id| json!({"type": "error", "event_id": id, "status": "rejected", "error": "lie"}),
        ));
    }
    lies.push(marker_ping());
    let forged = lies.len() as u64;
    server.set_faults(json!({"ws_send_on_connect": lies}));
    assert_eq!(server.drop_websockets(), 1);
    wait_until(
        "the daemon to answer the ping after the lies",
        DRAIN_GUARD,
        || {
            let c = server.counters();
            if c.ws_forged_frames >= forged && c.ws_bad_pongs >= 1 {
                Ok(())
            } else {
                Err(format!("{c:?}"))
            }
        },
    );

    assert_eq!(
        home.db().count(),
        N as i64,
        "an ack for an event not sent on the connection deletes nothing"
    );
    assert!(
        home.db().rows().iter().all(|r| r.retry_count == Some(0)),
        "an error for an event not sent on the connection counts no rejection"
    );
    assert_eq!(dead_letter_rows(&home), 0);
    let up = api.uplink();
    assert_eq!((up.delivered, up.rejected), (0, 0), "{up:?}");
    assert!(!up.server_acks, "no real ack has come yet: {up:?}");

    // The truth, by batch: every event arrives.
    server.set_faults(json!({"ws_send_on_connect": [], "batch_500_fraction": 0.0}));
    api.sync_now();
    let c = wait_delivered(&server, &home, N as u64, DRAIN_GUARD);
    assert_eq!(c.unique_event_ids, N as u64, "{c:?}");
    assert_eq!(api.uplink().dead_letters, 0);
    d.stop_gracefully();
}

#[test]
fn an_ack_that_says_rejected_or_nothing_readable_is_not_an_acceptance() {
    const N: usize = 10;
    let home = TestHome::new();
    let server = SaasDev::start(home.root(), &["--ack", "--ping-interval-ms", "200"]);
    server.set_faults(json!({"ws_fake_ack": "rejected", "batch_500_fraction": 1.0}));
    configure(&home, &server, 1, 300, true);
    let d = home.start_daemon();
    let api = d.api();
    api.wait_state("Connected", DRAIN_GUARD);
    api.emit_many(N, &|i| status_draft(i as u32));
    let up = wait_until("the rejections to be counted", DRAIN_GUARD, || {
        let up = api.uplink();
        if up.rejected >= N as u64 || up.delivered > 0 || home.db().count() < N as i64 {
            Ok(up)
        } else {
            Err(format!("{up:?}"))
        }
    });
    assert_eq!(
        up.delivered, 0,
        "an ack with status rejected deletes nothing: {up:?}"
    );
    assert_eq!(home.db().count(), N as i64);
    assert!(
        home.db().rows().iter().all(|r| r.retry_count == Some(1)),
        "it is one rejection each"
    );

    // An ack whose status means nothing we know is ignored outright.
    server.set_faults(json!({"ws_fake_ack": "pending"}));
    api.emit_many(N, &|i| status_draft(i as u32));
    wait_until("the second round to reach the server", DRAIN_GUARD, || {
        let c = server.counters();
        if c.ws_events >= 2 * N as u64 {
            Ok(())
        } else {
            Err(format!("{c:?}"))
        }
    });
    // Pongs to two pings sent after the fake acks: the daemon has read them.
    let pongs = server.counters().ws_pongs;
    wait_until("two more pongs", DRAIN_GUARD, || {
        let c = server.counters();
        if c.ws_pongs >= pongs + 2 {
            Ok(())
        } else {
            Err(format!("{c:?}"))
        }
    });
    let up = api.uplink();
    assert_eq!(up.delivered, 0, "{up:?}");
    assert_eq!(up.rejected, N as u64, "{up:?}");
    assert_eq!(home.db().count(), 2 * N as i64);

    server.set_faults(json!({"ws_fake_ack": null, "batch_500_fraction": 0.0}));
    api.sync_now();
    wait_delivered(&server, &home, 2 * N as u64, DRAIN_GUARD);
    assert_eq!(dead_letter_rows(&home), 0);
    d.stop_gracefully();
}

/// Waits until the daemon's log holds every one of `needles`, or until
/// anything reaches `elsewhere` (which the caller then reports).
fn wait_log_or_leak(d: &Daemon, elsewhere: &SaasDev, needles: &[&str]) {
    wait_until(
        &format!("the daemon to log {needles:?}"),
        DRAIN_GUARD,
        || {
            if elsewhere.counters().api_requests > 0 {
                return Ok(());
            }
            let log = d.log();
            match needles.iter().find(|n| !log.contains(**n)) {
                None => Ok(()),
                Some(missing) => Err(format!("no {missing:?} yet")),
            }
        },
    );
}

#[test]
fn redirected_batches_and_websocket_upgrades_are_refused_and_reach_no_other_origin() {
    let home = TestHome::new();
    let elsewhere = SaasDev::start(home.root(), &[]);
    let server = SaasDev::start(home.root(), &[]);
    server.set_faults(json!({"redirect": {"batch": elsewhere.url(), "ws": elsewhere.url()}}));
    configure(&home, &server, 0, 300, true);
    let d = home.start_daemon();
    let api = d.api();
    api.emit_many(5, &|i| status_draft(i as u32));
    api.sync_now();
    wait_log_or_leak(
        &d,
        &elsewhere,
        &[
            "the batch POST was answered 307 Temporary Redirect",
            "the WebSocket upgrade was answered 307 Temporary Redirect",
        ],
    );
    let c = elsewhere.counters();
    assert_eq!(c.api_requests, 0, "nothing reached the other origin: {c:?}");
    let up = api.uplink();
    assert!(
        up.last_error
            .as_deref()
            .is_some_and(|e| e.contains("follows no redirects")),
        "status says why: {up:?}"
    );
    assert_eq!(home.db().count(), 5, "nothing deleted");
    assert_eq!(up.delivered, 0, "{up:?}");

    server.set_faults(json!({"redirect": {}}));
    api.sync_now();
    wait_delivered(&server, &home, 5, DRAIN_GUARD);
    assert_eq!(elsewhere.counters().api_requests, 0);
    d.stop_gracefully();
}

#[test]
fn redirected_login_refresh_and_ws_token_are_refused_and_reach_no_other_origin() {
    let home = TestHome::new();
    let elsewhere = SaasDev::start(home.root(), &[]);
    let server = SaasDev::start(home.root(), &[]);
    write_sync_config(&home, &server.url(), 0, 300);

    server.set_faults(json!({"redirect": {"token": elsewhere.url()}}));
    let out = home.client_stdin(
        &[
            "login",
            "--server",
            &server.url(),
            "--username",
            USER,
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(out.code(), Some(1), "a redirected login fails: {out:?}");
    assert!(credentials_text(&home).is_none(), "and writes nothing");

    // Access tokens live 2 s, so the daemon soon has to refresh.
    server.set_faults(json!({
        "access_ttl_secs": 2,
        "redirect": {"refresh": elsewhere.url(), "ws-token": elsewhere.url(), "batch": elsewhere.url()},
    }));
    login(&home, &server.url(), USER, PASSWORD);
    let refresh_before = credentials_field(&home, "refresh");
    let d = home.start_daemon();
    let api = d.api();
    api.emit_many(5, &|i| status_draft(i as u32));
    api.sync_now();
    wait_log_or_leak(
        &d,
        &elsewhere,
        &[
            "ws-token was answered 307 Temporary Redirect",
            "the token refresh was answered 307 Temporary Redirect",
        ],
    );
    let c = elsewhere.counters();
    assert_eq!(c.api_requests, 0, "nothing reached the other origin: {c:?}");
    assert_eq!(home.db().count(), 5, "nothing deleted");
    assert_eq!(
        credentials_field(&home, "refresh"),
        refresh_before,
        "no refresh happened"
    );
    d.stop_gracefully();
}
