//! The session and the settings in virtual time (`sim`): AuthRequired,
//! refreshes, sync now, a new or unusable server_url.

use super::sim::*;
use super::tests::refused;
use super::*;

#[test]
fn a_refused_refresh_is_auth_required_until_the_credentials_change() {
    let mut s = Sim::new(config(5, 300));
    assert_eq!(s.expect(secs(1.0)), Action::OpenWs);
    s.on(Event::Unauthorized(Path::Ws));
    assert_eq!(s.expect(secs(1.0)), Action::Refresh);
    s.on(Event::SessionOver(
        "the server refused the refresh (401)".into(),
    ));
    assert_eq!(s.published().state, ConnectionState::AuthRequired);
    // Nothing is tried, nothing is deleted, whatever happens meanwhile.
    for e in [
        Event::Committed,
        Event::SyncRequested,
        Event::Timer,
        Event::Config(config(5, 300)),
        Event::Credentials(Err("not logged in".into())),
    ] {
        s.on(e);
        assert_eq!(s.request(secs(86_400.0)), None, "still waiting");
    }
    assert_eq!(s.published().state, ConnectionState::AuthRequired);
    assert_eq!(s.published().next_retry, None);
    s.on(Event::Credentials(Ok(())));
    assert_eq!(s.expect(s.at()), Action::OpenWs, "at once");
    s.on(Event::WsOpened);
    assert_eq!(s.published().state, ConnectionState::Connected);
}

#[test]
fn without_a_session_at_start_nothing_is_tried() {
    let mut s = Sim::with_session(config(5, 300), Err("not logged in".into()));
    assert_eq!(s.request(secs(3600.0)), None);
    assert_eq!(s.published().state, ConnectionState::AuthRequired);
    s.on(Event::Credentials(Ok(())));
    assert_eq!(s.expect(s.at()), Action::OpenWs);
}

#[test]
fn one_refresh_however_many_requests_hit_a_401() {
    let mut s = Sim::new(config(5, 300));
    // The stored access token is dead: both paths meet it.
    assert_eq!(s.expect(secs(1.0)), Action::OpenWs);
    s.on(Event::Unauthorized(Path::Ws));
    assert_eq!(s.expect(secs(1.0)), Action::Refresh);
    s.on(Event::Refreshed);
    assert_eq!(s.expect(secs(1.0)), Action::OpenWs, "retried at once");
    s.on(Event::WsOpened);
    let log = s.run(secs(60.0), server(Event::WsOpened, 5));
    assert!(log.iter().any(|(_, a)| *a == Action::PostBatch));
    assert!(!log.iter().any(|(_, a)| *a == Action::Refresh));
    assert_eq!(s.published().counters.refreshes, 1);
}

#[test]
fn a_401_on_the_token_just_refreshed_backs_off_instead_of_looping() {
    // A server that refuses every token it issues.
    let mut s = Sim::new(config(5, 300));
    let log = s.run(secs(600.0), |a, _| match a {
        Action::OpenWs => vec![Event::Unauthorized(Path::Ws)],
        Action::PostBatch => vec![Event::Unauthorized(Path::Batch)],
        Action::Refresh => vec![Event::Refreshed],
        _ => vec![],
    });
    let refreshes = times(&log, |a| *a == Action::Refresh).len();
    let requests = times(&log, |a| matches!(a, Action::OpenWs | Action::PostBatch)).len();
    assert!(requests < 200, "{requests} requests in 10 minutes: a loop");
    assert!(
        refreshes * 2 <= requests + 1,
        "{refreshes} refreshes for {requests} requests"
    );
    let r = s.published();
    assert!(r.consecutive_failures >= 5, "{r:?}");
    assert!(r.last_error.unwrap().contains("401"));
}

#[test]
fn sync_now_tries_the_websocket_at_once_and_wants_a_batch() {
    let mut s = Sim::new(config(5, 300));
    s.run(secs(100.0), server(refused(), 0));
    assert_eq!(s.p.state().next_ws(), Some(s.t0 + secs(121.5)));
    s.on(Event::SyncRequested);
    assert_eq!(s.expect(s.at()), Action::OpenWs, "no backoff wait");
    s.on(refused());
    assert_eq!(s.expect(s.at()), Action::PostBatch);
}
#[test]
fn a_new_server_url_starts_over_and_an_unusable_one_waits_for_the_next() {
    let mut s = Sim::new(config(5, 300));
    s.run(secs(10.0), server(refused(), 0));
    assert_eq!(s.published().consecutive_failures, 5);
    let mut bad = config(5, 300);
    bad.target = Target::parse("http://example.com");
    s.on(Event::Config(bad));
    assert_eq!(s.request(secs(86_400.0)), None, "nothing to talk to");
    let r = s.published();
    assert_eq!(r.state, ConnectionState::Offline);
    assert!(r.last_error.unwrap().contains("https"));
    let mut good = config(5, 300);
    good.target = Target::parse("https://other.example");
    s.on(Event::Config(good));
    assert_eq!(s.expect(s.at()), Action::OpenWs, "at once");
    assert_eq!(s.published().consecutive_failures, 0);
}

#[test]
fn an_unusable_server_url_at_start_says_why() {
    let mut bad = config(5, 300);
    bad.target = Target::parse("http://example.com");
    let mut s = Sim::new(bad);
    assert_eq!(s.request(secs(3600.0)), None);
    let r = s.published();
    assert_eq!(r.state, ConnectionState::Offline);
    assert!(r.last_error.unwrap().contains("use https"));
}
