//! The planner in virtual time: `Sim` jumps its clock from one `Wait`
//! deadline to the next and answers each request as a scripted server would,
//! so hours of backoff run in microseconds and nothing sleeps. Every `Wait`
//! must lie in the future (else the daemon would spin).
//!
//! These tests: the WebSocket, the probe, the session. Batches: `tests_batch`.

use std::sync::{Arc, Mutex};

use super::*;
use crate::uplink::ws::Inbound;
use kitty_store::outbox::Applied;

pub(super) const SERVER: &str = "https://kitty.example";

pub(super) fn config(batch_secs: u64, flush_secs: u64) -> Config {
    Config {
        target: Target::parse(SERVER),
        batch_interval: Duration::from_secs(batch_secs),
        flush_interval: Duration::from_secs(flush_secs),
    }
}

pub(super) fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

pub(super) struct Sim {
    pub p: Planner,
    pub t0: Instant,
    pub now: Instant,
    pub jitter: Arc<Mutex<f64>>,
    /// The last `Publish`.
    pub report: Option<Report>,
    /// Events that happen every so often whatever the planner does, and when next.
    pub ticks: Option<(Duration, Vec<Event>, Instant)>,
    /// Requests made since virtual time last moved: a loop if it grows.
    same_instant: u32,
}

impl Sim {
    pub fn new(config: Config) -> Self {
        Self::with_session(config, Ok(()))
    }

    pub fn with_session(config: Config, session: Result<(), String>) -> Self {
        let t0 = Instant::now();
        let jitter = Arc::new(Mutex::new(0.0));
        let j = jitter.clone();
        let p = Planner::new(t0, config, session, Box::new(move || *j.lock().unwrap()));
        Self {
            p,
            t0,
            now: t0,
            jitter,
            report: None,
            ticks: None,
            same_instant: 0,
        }
    }

    /// Virtual time since the start.
    pub fn at(&self) -> Duration {
        self.now - self.t0
    }

    pub fn set_jitter(&self, j: f64) {
        *self.jitter.lock().unwrap() = j;
    }

    pub fn on(&mut self, event: Event) -> Vec<Action> {
        self.p.on(self.now, event)
    }

    pub fn state(&self) -> &'static str {
        self.p.state().name()
    }

    /// The next request, letting virtual time pass up to `limit` from the
    /// start; `None` when the planner waits past it or for an event.
    pub fn request(&mut self, limit: Duration) -> Option<Action> {
        loop {
            for action in self.p.next(self.now) {
                match action {
                    Action::Publish(r) => self.report = Some(r),
                    Action::Wait(None) => return None,
                    Action::Wait(Some(t)) => {
                        assert!(t > self.now, "a Wait that is already due spins: {t:?}");
                        if let Some((every, events, next)) = &mut self.ticks
                            && *next < t
                            && *next - self.t0 <= limit
                        {
                            self.now = *next;
                            *next += *every;
                            for e in events.clone() {
                                self.p.on(self.now, e);
                            }
                            self.same_instant = 0;
                            continue;
                        }
                        if t - self.t0 > limit {
                            self.now = self.t0 + limit;
                            return None;
                        }
                        self.now = t;
                        self.p.on(self.now, Event::Timer);
                        self.same_instant = 0;
                    }
                    other => {
                        self.same_instant += 1;
                        assert!(self.same_instant < 10_000, "a loop without time passing");
                        return Some(other);
                    }
                }
            }
        }
    }

    /// The next request, which must come by `limit`.
    pub fn expect(&mut self, limit: Duration) -> Action {
        let got = self.request(limit);
        got.unwrap_or_else(|| panic!("no request by {limit:?} (now {:?})", self.at()))
    }

    /// Runs until `until`, answering every request with `server`; returns
    /// each request and effect with the time it came.
    pub fn run(
        &mut self,
        until: Duration,
        mut server: impl FnMut(&Action, Duration) -> Vec<Event>,
    ) -> Vec<(Duration, Action)> {
        let mut log = Vec::new();
        while let Some(action) = self.request(until) {
            let at = self.at();
            for event in server(&action, at) {
                for effect in self.p.on(self.now, event) {
                    log.push((at, effect));
                }
            }
            log.push((at, action));
        }
        log
    }

    /// What `status` shows now.
    pub fn published(&self) -> Report {
        self.p.report(self.now)
    }

    /// Runs, answering with `server`, until a request `want` comes; returns it unanswered.
    pub fn until(
        &mut self,
        limit: Duration,
        want: impl Fn(&Action) -> bool,
        mut server: impl FnMut(&Action, Duration) -> Vec<Event>,
    ) -> Action {
        loop {
            let a = self.expect(limit);
            if want(&a) {
                return a;
            }
            for event in server(&a, self.at()) {
                self.p.on(self.now, event);
            }
        }
    }
}

/// The times of the requests that match.
pub(super) fn times(log: &[(Duration, Action)], f: impl Fn(&Action) -> bool) -> Vec<f64> {
    log.iter()
        .filter(|(_, a)| f(a))
        .map(|(t, _)| t.as_secs_f64())
        .collect()
}

pub(super) fn gaps(t: &[f64]) -> Vec<f64> {
    t.windows(2)
        .map(|w| ((w[1] - w[0]) * 1000.0).round() / 1000.0)
        .collect()
}

pub(super) fn applied(verdicts: &[(String, Verdict)]) -> Event {
    let mut counts = Applied::default();
    for (_, v) in verdicts {
        match v {
            Verdict::Accepted => counts.delivered += 1,
            Verdict::Duplicate => counts.duplicates += 1,
            Verdict::Rejected(_) => counts.rejected += 1,
        }
    }
    Event::Applied {
        counts,
        at: "2026-02-04T13:47:09Z".into(),
    }
}

/// A server that takes batches (all accepted) and answers whatever else
/// `ws` says to `OpenWs`; the queue holds `depth` events.
pub(super) fn server(ws: Event, depth: u64) -> impl FnMut(&Action, Duration) -> Vec<Event> {
    move |a, _| match a {
        Action::OpenWs => vec![ws.clone()],
        Action::PostBatch if depth == 0 => vec![Event::BatchEmpty],
        Action::PostBatch => vec![Event::BatchAnswered {
            sent: depth,
            full: false,
            verdicts: (0..depth)
                .map(|i| (format!("e{i}"), Verdict::Accepted))
                .collect(),
        }],
        Action::Apply(v) => vec![applied(v)],
        Action::Probe => vec![Event::Probed { reachable: false }],
        Action::SendWs { .. } => vec![Event::WsSent {
            last: None,
            ids: vec![],
            full: false,
            bad: vec![],
        }],
        _ => vec![],
    }
}

fn refused() -> Event {
    Event::WsFailed(Failure::answered("the WebSocket upgrade was answered 503"))
}

fn unreachable() -> Event {
    Event::WsFailed(Failure::unreachable("connection refused"))
}

#[test]
fn backoff_doubles_from_half_a_second_to_thirty_and_never_gives_up() {
    let mut s = Sim::new(config(5, 300));
    let log = s.run(secs(3600.0), server(refused(), 0));
    let opens = times(&log, |a| *a == Action::OpenWs);
    assert_eq!(opens[0], 0.0, "the first attempt at once");
    let g = gaps(&opens);
    assert_eq!(&g[..9], [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]);
    assert!(g[9..].iter().all(|d| *d == 30.0), "{g:?}");
    assert!(
        *opens.last().unwrap() > 3570.0,
        "still trying after an hour: {opens:?}"
    );
    assert_eq!(s.published().consecutive_failures, opens.len() as u32);
}

#[test]
fn jitter_moves_each_delay_by_at_most_a_second() {
    for (j, want) in [
        (0.9, [1.4, 1.9, 2.9, 4.9, 8.9, 16.9, 30.9]),
        (-1.0, [0.25, 0.25, 1.0, 3.0, 7.0, 15.0, 29.0]),
    ] {
        let mut s = Sim::new(config(5, 300));
        s.set_jitter(j);
        let log = s.run(secs(120.0), server(refused(), 0));
        let g = gaps(&times(&log, |a| *a == Action::OpenWs));
        assert_eq!(g[..7], want, "jitter {j}");
    }
}

#[test]
fn a_tcp_probe_every_second_while_unreachable_brings_delivery_back_within_one() {
    let mut s = Sim::new(config(5, 300));
    let back_at = 200.3;
    let log = s.run(secs(260.0), |a, at| {
        let up = at.as_secs_f64() >= back_at;
        match a {
            Action::OpenWs if up => vec![Event::WsOpened],
            Action::OpenWs => vec![unreachable()],
            Action::PostBatch if up => vec![Event::BatchEmpty],
            Action::PostBatch => vec![Event::BatchFailed {
                sent: 3,
                failure: BatchFailure::Failed(Failure::unreachable("connection refused")),
            }],
            Action::Probe => vec![Event::Probed { reachable: up }],
            Action::SendWs { .. } => server(Event::WsOpened, 0)(a, at),
            _ => vec![],
        }
    });
    let probes = times(&log, |a| *a == Action::Probe);
    assert_eq!(probes[0], 1.0, "a second after the first refusal");
    assert!(gaps(&probes).iter().all(|g| *g == 1.0), "{probes:?}");
    let last_probe = *probes.last().unwrap();
    assert!((back_at..back_at + 1.0).contains(&last_probe), "{probes:?}");
    // The backoff had reached 30 s; the probe brings the attempt forward.
    let opens = times(&log, |a| *a == Action::OpenWs);
    let reopened = opens.iter().find(|t| **t >= back_at).unwrap();
    assert_eq!(*reopened, last_probe, "the WebSocket at once: {opens:?}");
    let batch = times(&log, |a| *a == Action::PostBatch);
    assert!(
        batch.contains(&last_probe),
        "a batch at once too: {batch:?}"
    );
    assert_eq!(s.state(), "Connected");
}

#[test]
fn offline_batch_mode_after_exactly_ten_failed_attempts_and_back_when_one_succeeds() {
    let mut s = Sim::new(config(5, 300));
    let mut states = Vec::new();
    for _ in 0..12 {
        assert_eq!(s.expect(secs(600.0)), Action::OpenWs);
        s.on(refused());
        states.push(s.state());
        // Batches go on meanwhile, in every state.
        while let Some(a) = s.request(s.at() + secs(0.4)) {
            assert_eq!(a, Action::PostBatch);
            s.on(Event::BatchEmpty);
        }
    }
    let mut want = vec!["Reconnecting"; 9];
    want.extend(["OfflineBatchMode"; 3]);
    assert_eq!(states, want);
    assert_eq!(s.published().state, "OfflineBatchMode");

    s.on(Event::Committed);
    assert_eq!(
        s.expect(secs(600.0)),
        Action::PostBatch,
        "batches carry the queue"
    );
    s.on(Event::BatchEmpty);
    assert_eq!(s.expect(secs(600.0)), Action::OpenWs);
    s.on(Event::WsOpened);
    let r = s.published();
    assert_eq!((r.state, r.consecutive_failures), ("Connected", 0));
}

#[test]
fn heartbeat_every_20_s_and_a_minute_of_silence_is_a_dead_link() {
    let mut s = Sim::new(config(5, 300));
    assert_eq!(s.expect(secs(1.0)), Action::OpenWs);
    s.on(Event::WsOpened);
    let log = s.run(secs(200.0), |a, at| match a {
        // The server answers pings until 100 s, then falls silent.
        Action::Ping if at <= secs(100.0) => vec![Event::Frame(Inbound::Other)],
        Action::OpenWs => vec![refused()],
        _ => server(refused(), 0)(a, at),
    });
    let pings = times(&log, |a| *a == Action::Ping);
    assert_eq!(pings, [20.0, 40.0, 60.0, 80.0, 100.0, 120.0, 140.0]);
    let closed = times(&log, |a| *a == Action::CloseWs);
    assert_eq!(closed, [160.0], "a minute after the last frame, at 100 s");
    assert_ne!(s.state(), "Connected");
}

#[test]
fn server_pings_are_answered_and_remote_events_reach_the_clock() {
    let mut s = Sim::new(config(5, 300));
    s.expect(secs(1.0));
    s.on(Event::WsOpened);
    let ts = serde_json::json!(1.5);
    assert!(s.on(Event::Frame(Inbound::Ping(ts.clone()))).is_empty());
    assert_eq!(
        s.on(Event::Frame(Inbound::Event(Some(42)))),
        [Action::Receive(42)]
    );
    assert_eq!(s.expect(secs(1.0)), Action::Pong(ts));
}

#[test]
fn a_refused_refresh_is_auth_required_until_the_credentials_change() {
    let mut s = Sim::new(config(5, 300));
    assert_eq!(s.expect(secs(1.0)), Action::OpenWs);
    s.on(Event::Unauthorized(Path::Ws));
    assert_eq!(s.expect(secs(1.0)), Action::Refresh);
    s.on(Event::SessionOver(
        "the server refused the refresh (401)".into(),
    ));
    assert_eq!(s.published().state, "AuthRequired");
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
    assert_eq!(s.published().state, "AuthRequired");
    assert_eq!(s.published().next_retry, None);
    s.on(Event::Credentials(Ok(())));
    assert_eq!(s.expect(s.at()), Action::OpenWs, "at once");
    s.on(Event::WsOpened);
    assert_eq!(s.published().state, "Connected");
}

#[test]
fn without_a_session_at_start_nothing_is_tried() {
    let mut s = Sim::with_session(config(5, 300), Err("not logged in".into()));
    assert_eq!(s.request(secs(3600.0)), None);
    assert_eq!(s.published().state, "AuthRequired");
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
fn acks_count_only_for_events_in_flight_on_the_connection() {
    let mut s = Sim::new(config(5, 300));
    s.expect(secs(1.0));
    s.on(Event::WsOpened);
    assert_eq!(s.expect(secs(1.0)), Action::SendWs { after: None });
    s.on(Event::WsSent {
        last: Some((1, 2)),
        ids: vec!["a".into(), "b".into()],
        full: false,
        bad: vec![],
    });
    let mut counted = Vec::new();
    for id in ["a", "a", "x", "b"] {
        counted.extend(s.on(Event::Frame(Inbound::Verdict(id.into(), Verdict::Accepted))));
    }
    assert_eq!(
        counted,
        [
            Action::Acknowledged("a".into(), Verdict::Accepted),
            Action::Acknowledged("b".into(), Verdict::Accepted)
        ],
        "only these reach the feed"
    );
    let want = vec![
        ("a".into(), Verdict::Accepted),
        ("b".into(), Verdict::Accepted),
    ];
    assert_eq!(
        s.expect(secs(1.0)),
        Action::Apply(want.clone()),
        "once each, x never sent"
    );
    s.on(applied(&want));
    // On the next connection nothing of the first is in flight.
    s.on(Event::WsFailed(Failure::answered("closed")));
    s.until(secs(60.0), |a| *a == Action::OpenWs, server(refused(), 0));
    s.on(Event::WsOpened);
    s.on(Event::Frame(Inbound::Verdict(
        "b".into(),
        Verdict::Duplicate,
    )));
    assert_eq!(
        s.expect(secs(1.0)),
        Action::SendWs {
            after: Some((1, 2))
        }
    );
    assert!(s.published().server_acks);
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
    assert_eq!(r.state, "Offline");
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
    assert_eq!(r.state, "Offline");
    assert!(r.last_error.unwrap().contains("use https"));
}

#[test]
fn shutdown_applies_what_is_pending_closes_the_websocket_and_stops() {
    let mut s = Sim::new(config(5, 300));
    s.expect(secs(1.0));
    s.on(Event::WsOpened);
    s.expect(secs(1.0));
    s.on(Event::WsSent {
        last: Some((1, 1)),
        ids: vec!["a".into()],
        full: false,
        bad: vec![],
    });
    s.on(Event::Frame(Inbound::Verdict(
        "a".into(),
        Verdict::Accepted,
    )));
    assert_eq!(s.on(Event::Shutdown), [Action::CloseWs]);
    assert!(matches!(s.expect(s.at()), Action::Apply(_)));
    s.on(applied(&[("a".into(), Verdict::Accepted)]));
    assert_eq!(s.expect(s.at()), Action::Stop);
    assert_eq!(s.report.as_ref().unwrap().state, "Offline");
}
