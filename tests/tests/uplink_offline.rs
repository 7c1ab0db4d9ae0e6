//! Issue 3, the uplink offline: a backlog built while the server is down goes
//! out once it is up, in batches of at most 1,000, each event stored once,
//! within the server's rate limit; with the WebSocket refused, batches alone
//! deliver.
//!
//! Real kitty-syncd, real kitty-saas-dev. Waits are bounded; nothing asserts
//! on elapsed time.

use kitty_tests::harness::*;
use kitty_tests::uplink_harness::*;

/// Both servers sign with it, so a token issued by the first is good at the second.
const JWT_SECRET: &str = "uplink-offline-test-secret";

#[test]
fn offline_backlog_of_5000_is_delivered_once_in_batches_within_the_rate_limit() {
    const N: usize = 5000;
    let home = TestHome::new();
    let port = ReservedPort::new();
    let url = port.url();
    write_sync_config(&home, &url, 1, 300);
    {
        // Log in now, at a server that goes away again.
        let first = SaasDev::start(home.root(), &["--jwt-secret", JWT_SECRET]);
        let r = first.try_login(USER, PASSWORD);
        r.assert_status(200);
        write_credentials_from_reply(&home, &url, USER, &r.json());
        first.stop();
    }

    let d = home.start_daemon();
    let api = d.api();
    let accs = api.emit_many(N, &|i| status_draft(i as u32));
    assert_eq!(accs.len(), N);
    assert_eq!(home.db().count(), N as i64, "all committed");
    let up = api.uplink();
    assert_ne!(up.state, "Connected", "nothing listens on {url}: {up:?}");
    assert_ne!(up.state, "AuthRequired", "the session is fine: {up:?}");

    let server = SaasDev::start_on(
        home.root(),
        port,
        &["--jwt-secret", JWT_SECRET, "--rate-limit-batch-secs", "1"],
    );
    let c = wait_delivered(&server, &home, N as u64, DRAIN_GUARD);
    assert_eq!(c.unique_event_ids, N as u64, "all stored: {c:?}");
    assert_eq!(c.events_stored, N as u64, "each stored once: {c:?}");
    assert_eq!(
        c.rate_limited, 0,
        "batch_interval_secs = 1 keeps within the server's 1 batch per 1 s: {c:?}"
    );
    // Every batch request was answered 200: none was refused 400 for holding
    // more than 1,000 events (nor 401/403).
    assert_eq!(
        c.batch_requests,
        c.batches + c.faults_500 + c.faults_429 + c.rate_limited,
        "every batch answered 200: {c:?}"
    );
    assert!(
        c.batches * 1000 >= c.batch_events,
        "at most 1,000 events per batch: {c:?}"
    );
    let stored = server.events(Some(TEAM));
    assert_eq!(stored.len(), N);
    let up = api.uplink();
    assert!(up.last_sync_at.is_some(), "{up:?}");
    assert_eq!(up.dead_letters, 0, "{up:?}");
    d.stop_gracefully();
}

#[test]
fn batches_alone_deliver_when_the_websocket_is_refused() {
    const N: usize = 1500;
    let home = TestHome::new();
    let server = SaasDev::start(home.root(), &["--ws-refuse-upgrade"]);
    configure(&home, &server, 0, 300, true);
    let d = home.start_daemon();
    let api = d.api();
    api.emit_many(N, &|i| status_draft(i as u32));
    let c = wait_delivered(&server, &home, N as u64, DRAIN_GUARD);
    assert_eq!(c.events_stored, N as u64, "each stored once: {c:?}");
    assert_eq!(c.ws_connections, 0, "{c:?}");
    assert_eq!(c.ws_events, 0, "{c:?}");
    assert!(c.batches >= 2, "1,500 events need two batches: {c:?}");
    assert!(c.batches * 1000 >= c.batch_events, "{c:?}");
    let up = api.uplink();
    assert!(up.sent_batch >= N as u64, "{up:?}");
    assert_eq!(up.sent_ws, 0, "{up:?}");
    assert_ne!(up.state, "Connected", "{up:?}");
    d.stop_gracefully();
}

#[test]
fn a_new_server_url_takes_effect_without_a_restart() {
    const N: u64 = 10;
    let home = TestHome::new();
    let server = SaasDev::start(home.root(), &[]);
    login(&home, &server.url(), USER, PASSWORD);
    let nowhere_port = ReservedPort::new();
    let nowhere = nowhere_port.url();
    write_sync_config(&home, &nowhere, 1, 300);
    let d = home.start_daemon();
    let api = d.api();
    let drafts: Vec<serde_json::Value> = (0..N as u32).map(status_draft).collect();
    api.emit_batch(&drafts);
    api.sync_now();
    wait_until("a failed attempt at the dead URL", DRAIN_GUARD, || {
        let up = api.uplink();
        if up.consecutive_failures >= 1 || up.last_error.is_some() {
            Ok(())
        } else {
            Err(format!("{up:?}"))
        }
    });
    assert_eq!(home.db().count(), N as i64);

    write_sync_config(&home, &server.url(), 1, 300);
    let c = wait_delivered(&server, &home, N, DRAIN_GUARD);
    assert_eq!(c.events_stored, N, "{c:?}");
    assert_eq!(api.status().server_url, server.url());
    d.stop_gracefully();
}

#[test]
fn ten_refused_websocket_attempts_are_offline_batch_mode_until_one_succeeds() {
    const N: u64 = 30;
    let home = TestHome::new();
    let server = SaasDev::start(home.root(), &["--ws-refuse-upgrade"]);
    configure(&home, &server, 0, 300, true);
    let d = home.start_daemon();
    let api = d.api();

    // `sync now` retries the WebSocket at once, so ten refusals take moments
    // rather than the two minutes the backoff alone would.
    let mut seen = Vec::new();
    let up = wait_until("OfflineBatchMode", DRAIN_GUARD, || {
        let up = api.uplink();
        seen.push((up.consecutive_failures, up.state));
        if up.state == "OfflineBatchMode" {
            return Ok(up);
        }
        api.sync_now();
        Err(format!("{up:?}"))
    });
    assert!(up.consecutive_failures >= 10, "{up:?}");
    for (failures, state) in &seen {
        let want = match failures {
            0 => "Offline",
            1..=9 => "Reconnecting",
            _ => "OfflineBatchMode",
        };
        assert_eq!(state, want, "{failures} failed attempts: {seen:?}");
    }
    assert!(
        seen.iter().any(|(f, _)| (1..=9).contains(f)),
        "Reconnecting on the way: {seen:?}"
    );

    // Batches carry the queue meanwhile.
    api.emit_many(N as usize, &|i| status_draft(i as u32));
    let c = wait_delivered(&server, &home, N, DRAIN_GUARD);
    assert_eq!((c.events_stored, c.ws_connections), (N, 0), "{c:?}");
    assert_eq!(api.uplink().state, "OfflineBatchMode");

    // One WebSocket that opens ends it.
    server.set_faults(serde_json::json!({"ws_refuse_upgrade": false}));
    api.sync_now();
    let up = api.wait_state("Connected", DRAIN_GUARD);
    assert_eq!(up.consecutive_failures, 0, "{up:?}");
    d.stop_gracefully();
}
