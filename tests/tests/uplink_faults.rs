//! Issue 3, the uplink under faults: 500s, WebSocket drops and expiring tokens
//! at once; 429 with Retry-After; a 200 that confirms nothing; a 403.
//!
//! Real kitty-syncd, real kitty-saas-dev. Waits are bounded. The only timing
//! checks are upper bounds on how many requests the daemon made while it
//! should have been waiting, which a slow machine can only lower.

use std::time::{Duration, Instant};

use kitty_tests::harness::*;
use kitty_tests::uplink_harness::*;
use serde_json::{Value, json};

#[test]
fn chaos_500s_websocket_drops_and_expiring_tokens_lose_nothing() {
    const ROUNDS: usize = 20;
    const PER_ROUND: usize = 100;
    const N: u64 = (ROUNDS * PER_ROUND) as u64;
    let home = TestHome::new();
    let server = SaasDev::start(
        home.root(),
        &[
            "--batch-500-fraction",
            "0.3",
            "--ws-close-after-frames",
            "100",
            "--access-ttl-secs",
            "3",
        ],
    );
    configure(&home, &server, 1, 300, true);
    let first_refresh = credentials_field(&home, "refresh").expect("refresh token written");
    let d = home.start_daemon();
    let api = d.api();

    // 2,000 events over about 10 s.
    let mut ids = Vec::new();
    for round in 0..ROUNDS {
        let drafts: Vec<Value> = (0..PER_ROUND)
            .map(|i| status_draft((round * PER_ROUND + i) as u32))
            .collect();
        ids.extend(api.emit_batch(&drafts).into_iter().map(|a| a.event_id));
        std::thread::sleep(Duration::from_millis(500));
    }

    let c = wait_delivered(&server, &home, N, Duration::from_secs(120));
    assert_eq!(c.unique_event_ids, N, "every event stored: {c:?}");
    assert_eq!(c.events_stored, N, "each once: {c:?}");
    assert!(
        c.refreshes > 0,
        "tokens expiring every 3 s were refreshed: {c:?}"
    );
    assert!(
        c.ws_connections >= 2,
        "the WebSocket was dropped every 100 frames and reopened: {c:?}"
    );
    let stored: std::collections::HashSet<String> = server
        .events(Some(TEAM))
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    for id in &ids {
        assert!(stored.contains(id), "{id} lost");
    }
    let up = api.uplink();
    assert!(up.refreshes > 0, "{up:?}");
    assert_eq!(up.dead_letters, 0, "{up:?}");
    assert_ne!(up.state, "AuthRequired", "{up:?}");
    // The rotated tokens were saved for the next start (and the CLI).
    let refresh_now = credentials_field(&home, "refresh").expect("credentials kept");
    assert_ne!(refresh_now, first_refresh, "rotated refresh token saved");
    d.stop_gracefully();
}

#[test]
fn retry_after_of_a_429_is_honoured() {
    const RETRY_AFTER: u64 = 5;
    const N: u64 = 10;
    let home = TestHome::new();
    let server = SaasDev::start(
        home.root(),
        &[
            "--batch-429-fraction",
            "1",
            "--retry-after-secs",
            &RETRY_AFTER.to_string(),
        ],
    );
    // No limit of the daemon's own: only Retry-After may hold it back.
    configure(&home, &server, 0, 300, true);
    let d = home.start_daemon();
    let api = d.api();
    let drafts: Vec<Value> = (0..N as u32).map(status_draft).collect();
    api.emit_batch(&drafts);
    api.sync_now();

    let (t0, c0) = wait_until("a first 429", DRAIN_GUARD, || {
        let c = server.counters();
        if c.faults_429 >= 1 {
            Ok((Instant::now(), c.faults_429))
        } else {
            Err(format!("{c:?}"))
        }
    });
    // Watch two Retry-After periods.
    let window = Duration::from_secs(2 * RETRY_AFTER);
    while t0.elapsed() < window {
        std::thread::sleep(Duration::from_millis(200));
    }
    let elapsed = t0.elapsed().as_secs();
    let c1 = server.counters();
    let during = c1.faults_429 - c0;
    let allowed = elapsed / RETRY_AFTER + 1;
    eprintln!("{during} batch requests in {elapsed} s after the first 429: {c1:?}");
    assert!(
        during <= allowed,
        "{during} batch requests in {elapsed} s after a 429 with Retry-After {RETRY_AFTER}; \
         honouring it allows at most {allowed}: {c1:?}"
    );
    assert_eq!(home.db().count(), N as i64, "nothing confirmed yet");
    let up = api.uplink();
    assert!(
        up.last_error.is_some() || up.next_retry_at.is_some(),
        "the 429 shows in status: {up:?}"
    );

    server.set_faults(json!({"batch_429_fraction": 0.0}));
    let c = wait_delivered(&server, &home, N, DRAIN_GUARD);
    assert_eq!(c.events_stored, N, "{c:?}");
    d.stop_gracefully();
}

#[test]
fn empty_results_end_the_round_instead_of_looping() {
    const N: u64 = 10;
    let home = TestHome::new();
    let server = SaasDev::start(home.root(), &["--empty-results"]);
    configure(&home, &server, 0, 300, true);
    let d = home.start_daemon();
    let api = d.api();
    let drafts: Vec<Value> = (0..N as u32).map(status_draft).collect();
    api.emit_batch(&drafts);
    api.sync_now();

    let (t0, c0) = wait_until("a first batch", DRAIN_GUARD, || {
        let c = server.counters();
        if c.batches >= 1 {
            Ok((Instant::now(), c.batch_requests))
        } else {
            Err(format!("{c:?}"))
        }
    });
    let window = Duration::from_secs(5);
    while t0.elapsed() < window {
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            home.db().count(),
            N as i64,
            "a 200 that confirms nothing deletes nothing"
        );
    }
    let c1 = server.counters();
    let during = c1.batch_requests - c0;
    eprintln!(
        "{during} batch requests in {:?} of empty results: {c1:?}",
        t0.elapsed()
    );
    assert!(
        during <= 10,
        "{during} batch requests within {:?} of a 200 with empty results: a loop, not a backoff: {c1:?}",
        t0.elapsed()
    );
    assert_eq!(home.db().count(), N as i64);
    let up = api.uplink();
    assert_eq!(up.dead_letters, 0, "no result is no rejection: {up:?}");
    assert_eq!(up.rejected, 0, "{up:?}");
    assert_eq!(
        dead_letter_rows(&home),
        0,
        "an event missing from results stays untouched"
    );
    for r in home.db().rows() {
        assert_eq!(r.retry_count, Some(0), "retry_count untouched: {r:?}");
    }

    server.set_faults(json!({"empty_results": false}));
    api.sync_now();
    let c = wait_delivered(&server, &home, N, DRAIN_GUARD);
    assert_eq!(c.unique_event_ids, N, "{c:?}");
    d.stop_gracefully();
}

#[test]
fn a_forbidden_batch_keeps_its_events_and_says_forbidden() {
    let home = TestHome::new();
    let server = SaasDev::start(home.root(), &[]);
    configure(&home, &server, 0, 300, true);
    let d = home.start_daemon();
    let api = d.api();
    // An envelope relayed from elsewhere that names another team: the server
    // refuses any batch holding it with 403.
    let foreign = foreign_envelope(OTHER_TEAM, 7);
    let acc = api.emit(&foreign);
    api.emit(&status_draft(1));
    api.sync_now();

    let up = wait_until("the 403 to show", DRAIN_GUARD, || {
        let up = api.uplink();
        let c = server.counters();
        let says = up
            .last_error
            .as_deref()
            .is_some_and(|e| e.to_ascii_lowercase().contains("forbidden"));
        if c.forbidden >= 1 && says {
            Ok(up)
        } else {
            Err(format!("{up:?} {c:?}"))
        }
    });
    let rows = home.db().rows_with_event_id(&acc.event_id);
    assert_eq!(rows.len(), 1, "the refused event stays: {up:?}");
    assert_eq!(
        rows[0].retry_count,
        Some(0),
        "a 403 is not a per-event rejection"
    );
    assert_eq!(dead_letter_rows(&home), 0);
    let c = server.counters();
    assert_eq!(
        server.events(Some(OTHER_TEAM)).len(),
        0,
        "nothing reached another team: {c:?}"
    );
    d.stop_gracefully();
}

#[test]
fn a_hung_batch_post_shows_in_flight_and_gives_up_well_before_a_minute() {
    const N: u64 = 5;
    let home = TestHome::new();
    // Batches only, and each one hangs for two minutes.
    let server = SaasDev::start(
        home.root(),
        &["--ws-refuse-upgrade", "--batch-hang-ms", "120000"],
    );
    configure(&home, &server, 0, 300, true);
    let d = home.start_daemon();
    let api = d.api();
    api.emit_batch(&(0..N as u32).map(status_draft).collect::<Vec<_>>());
    api.sync_now();

    let (flight, seen_at) = wait_until("a batch POST in flight", DRAIN_GUARD, || {
        let up = api.uplink();
        match up.in_flight {
            Some(f) if f.what.contains("batch POST of 5 events") => Ok((f, Instant::now())),
            _ => Err(format!("{up:?}")),
        }
    });
    chrono::DateTime::parse_from_rfc3339(&flight.since)
        .unwrap_or_else(|e| panic!("since {:?} is RFC 3339: {e}", flight.since));
    wait_until(
        "the batch to reach the server, which holds it",
        DRAIN_GUARD,
        || {
            let c = server.counters();
            if c.batch_requests >= 1 {
                Ok(())
            } else {
                Err(format!("{c:?}"))
            }
        },
    );

    // The old client waited 60 s; the bound here leaves room for a slow machine.
    // A second request means the first was given up.
    wait_until(
        "the hung batch to be given up",
        Duration::from_secs(50),
        || {
            let c = server.counters();
            if c.batch_requests >= 2 {
                Ok(())
            } else {
                Err(format!("{c:?}"))
            }
        },
    );
    eprintln!("gave up after {:?}", seen_at.elapsed());
    assert!(
        d.log().contains("the batch POST got no answer within"),
        "the log says why:\n{}",
        d.log()
    );
    assert_eq!(home.db().count(), N as i64, "nothing deleted");

    server.set_faults(json!({"batch_hang_ms": 0}));
    api.sync_now();
    wait_delivered(&server, &home, N, DRAIN_GUARD);
    d.stop_gracefully();
}
