//! Issue 3, the uplink and an expired session: a refused refresh leaves the
//! daemon in `AuthRequired` with the queue and the credentials file intact,
//! and a new login (a new credentials file) resumes delivery without a restart.
//!
//! Real kitty-syncd, real kitty-saas-dev. Waits are bounded; nothing asserts
//! on elapsed time.

use std::time::Duration;

use kitty_tests::harness::*;
use kitty_tests::uplink_harness::*;
use serde_json::{Value, json};

#[test]
fn refused_refresh_means_auth_required_and_a_new_login_resumes_delivery() {
    const N: u64 = 20;
    let home = TestHome::new();
    let server = SaasDev::start(home.root(), &[]);
    write_sync_config(&home, &server.url(), 1, 300);
    // Access tokens issued now are expired at once; the refresh token is
    // good, so the home counts as logged in, but the server refuses to refresh.
    server.set_faults(json!({"access_ttl_secs": 0}));
    login(&home, &server.url(), USER, PASSWORD);
    server.set_faults(json!({"refuse_refresh": true}));
    let creds_before = credentials_text(&home).expect("credentials written");

    let d = home.start_daemon();
    let api = d.api();
    let drafts: Vec<Value> = (0..N as u32).map(status_draft).collect();
    let accs = api.emit_batch(&drafts);
    api.sync_now();

    let up = api.wait_state("AuthRequired", DRAIN_GUARD);
    let c = server.counters();
    assert!(c.refresh_refused >= 1, "it tried to refresh: {c:?} {up:?}");
    // Give it a moment in that state: nothing may be deleted meanwhile.
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(api.uplink().state, "AuthRequired");
    }
    assert_eq!(home.db().count(), N as i64, "the queue keeps everything");
    for a in &accs {
        assert_eq!(home.db().rows_with_event_id(&a.event_id).len(), 1);
    }
    assert_eq!(dead_letter_rows(&home), 0);
    assert!(
        home.file("credentials").exists(),
        "the credentials file is not deleted"
    );
    assert_eq!(
        credentials_text(&home).as_deref(),
        Some(creds_before.as_str()),
        "a refused refresh rewrites nothing"
    );
    let c = server.counters();
    assert_eq!(c.refreshes, 0, "the fault refused every refresh: {c:?}");

    // Log in again: tokens that live, refresh still refused.
    server.set_faults(json!({"access_ttl_secs": 900}));
    login(&home, &server.url(), USER, PASSWORD);
    let c = wait_delivered(&server, &home, N, DRAIN_GUARD);
    assert_eq!(c.events_stored, N, "{c:?}");
    let stored = server.events(Some(TEAM));
    for a in &accs {
        assert!(
            stored.iter().any(|e| e["event_id"] == a.event_id.as_str()),
            "{} delivered",
            a.event_id
        );
    }
    let up = api.uplink();
    assert_ne!(
        up.state, "AuthRequired",
        "resumed without a restart: {up:?}"
    );
    d.stop_gracefully();
}

#[test]
fn expired_access_is_refreshed_once_for_every_request_that_hit_it() {
    const N: u64 = 20;
    let home = TestHome::new();
    let server = SaasDev::start(home.root(), &[]);
    write_sync_config(&home, &server.url(), 0, 300);
    // The stored access token is dead on arrival; the refresh token is good
    // and, rotating, good for one use only.
    server.set_faults(json!({"access_ttl_secs": 0}));
    let reply = login(&home, &server.url(), USER, PASSWORD);
    server.set_faults(json!({"access_ttl_secs": 900}));
    let first_refresh = reply["refresh"].as_str().unwrap().to_owned();

    let d = home.start_daemon();
    let api = d.api();
    let drafts: Vec<Value> = (0..N as u32).map(status_draft).collect();
    api.emit_batch(&drafts);
    api.sync_now();

    // The WebSocket (ws-token) and the batch path both meet the dead token:
    // one refresh serves both; a second would present a used refresh token.
    let c = wait_delivered(&server, &home, N, DRAIN_GUARD);
    assert_eq!(c.events_stored, N, "{c:?}");
    assert_eq!(
        c.refresh_refused, 0,
        "no refresh presented an already used token (single flight): {c:?}"
    );
    assert_eq!(c.refreshes, 1, "one refresh for all: {c:?}");
    let up = api.uplink();
    assert_ne!(up.state, "AuthRequired", "{up:?}");
    assert_eq!(up.refreshes, 1, "{up:?}");
    // The rotated pair is saved, so the next start does not reuse a spent token.
    let saved = wait_until(
        "the rotated tokens to be saved",
        DRAIN_GUARD,
        || match credentials_field(&home, "refresh") {
            Some(r) if r != first_refresh => Ok(r),
            other => Err(format!("{other:?}")),
        },
    );
    assert!(!saved.is_empty());
    assert!(
        credentials_field(&home, "team_slug").as_deref() == Some(TEAM),
        "other fields kept: {:?}",
        credentials_text(&home)
    );
    d.stop_gracefully();
}
