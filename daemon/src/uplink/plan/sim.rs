//! The planner in virtual time: `Sim` jumps its clock from one `Wait`
//! deadline to the next and answers each request as a scripted server would,
//! so hours of backoff run in microseconds and nothing sleeps. Every `Wait`
//! must lie in the future (else the daemon would spin), and requests at one
//! instant are bounded (else it would loop).

use std::sync::{Arc, Mutex};

use super::*;
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

    pub fn state(&self) -> ConnectionState {
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
