//! The uplink's decisions, with no I/O and no clock of its own: the state
//! machine of the uplink module's doc, and the schedule.
//!
//! `on(now, event)` records what happened and returns the effects that need
//! no answer (close the WebSocket, feed the clock). `next(now)` returns the
//! one thing to do now (a request, answered by an event) or how long to
//! wait, with a `Publish` first when `status` would change. The driver feeds
//! every event it has before it calls `next()`, so a decision never misses
//! an answer. Time comes in with the calls; jitter comes from the injected
//! source, so tests replay exactly.

mod batches;
mod event;
mod link;
mod session;
#[cfg(test)]
mod sim;
mod state;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_batch;
#[cfg(test)]
mod tests_session;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use kitty_proto::api::ConnectionState;
use kitty_store::outbox::{Cursor, Verdict};
use serde_json::Value;

pub use event::{Action, BatchFailure, Config, Counters, Event, Failure, Path, Report};
use state::Batches;
pub use state::State;

use super::target::Target;

/// After this many failed WebSocket attempts in a row the state is `OfflineBatchMode`.
pub const WS_FAILURES_FOR_BATCH_MODE: u32 = 10;
/// Our own heartbeat on the WebSocket, and how long silence may last.
pub const HEARTBEAT: Duration = Duration::from_secs(20);
pub const SILENCE_LIMIT: Duration = Duration::from_secs(60);
/// While the server is unreachable, probe it this often so delivery resumes
/// within about a second of it coming back, whatever the backoff says.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// With an acknowledging server, rows still queued this long after being
/// sent (their ack was lost) are confirmed by a batch.
pub const ACK_GRACE: Duration = Duration::from_secs(10);
/// A failed `Apply` (the database is busy or broken) is tried again this much later.
const APPLY_RETRY: Duration = Duration::from_secs(1);
/// Verdicts kept while they cannot be applied; beyond this the rows are just
/// sent again later (the server deduplicates).
const MAX_PENDING: usize = 100_000;
/// Server pings waiting for a pong; an older one is not worth answering.
const MAX_PONGS: usize = 64;

/// A number in [-1, 1): the jitter, in seconds, added to each backoff.
pub type Jitter = Box<dyn FnMut() -> f64 + Send>;

pub struct Planner {
    state: State,
    config: Config,
    batch: Batches,
    /// Where the WebSocket has sent up to in drain order. Rows before it are
    /// confirmed by batches, whichever connection sent them.
    cursor: Option<Cursor>,
    /// Rows may be waiting to go over the WebSocket.
    ws_pending: bool,
    /// The last failure was not reaching the server at all: probe it.
    unreachable: bool,
    next_probe: Instant,
    /// A refresh is wanted, and for which request.
    refresh_for: Option<Path>,
    /// The access token comes from a refresh that no request has tried yet:
    /// a 401 on it is a failure, not a reason to refresh again.
    fresh_token: bool,
    pending: Vec<(String, Verdict)>,
    apply_at: Instant,
    pongs: VecDeque<Value>,
    stopping: bool,
    server_acks: bool,
    last_error: Option<String>,
    last_sync_at: Option<String>,
    counters: Counters,
    published: Option<Report>,
    jitter: Jitter,
}

impl Planner {
    /// `session`: `Ok` when the credentials are a live session, else why not.
    pub fn new(now: Instant, config: Config, session: Result<(), String>, jitter: Jitter) -> Self {
        let state = match session {
            Ok(()) => State::Offline { next_ws: now },
            Err(why) => State::AuthRequired { why },
        };
        Self {
            state,
            // Whatever waits in the queue from before goes out at once.
            batch: Batches::due(now, now + config.flush_interval),
            cursor: None,
            ws_pending: false,
            unreachable: false,
            next_probe: now,
            refresh_for: None,
            fresh_token: false,
            pending: Vec::new(),
            apply_at: now,
            pongs: VecDeque::new(),
            stopping: false,
            server_acks: false,
            last_error: config.target.as_ref().err().cloned(),
            last_sync_at: None,
            counters: Counters::default(),
            published: None,
            jitter,
            config,
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// The server to talk to, when `server_url` is usable.
    pub fn target(&self) -> Option<&Target> {
        self.config.target.as_ref().ok()
    }

    /// Records `event`; returns the effects it calls for (no requests).
    pub fn on(&mut self, now: Instant, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Committed if self.state.is_connected() => self.ws_pending = true,
            // Without the WebSocket, batches carry the events.
            Event::Committed => self.batch.wanted = true,
            Event::SyncRequested => {
                self.batch.wanted = true;
                self.batch.asked = true;
                self.ws_pending = true;
                self.state.retry_ws_by(now);
            }
            Event::Config(c) => self.configure(now, c, &mut out),
            Event::Credentials(Ok(())) => self.credentials_back(now),
            Event::Credentials(Err(why)) | Event::SessionOver(why) => {
                self.session_over(why, &mut out)
            }
            Event::Timer => {}
            Event::Shutdown => {
                self.stopping = true;
                self.leave_link(now, &mut out);
            }
            Event::WsOpened => self.ws_opened(now),
            Event::WsFailed(f) => self.ws_down(now, f, &mut out),
            Event::WsSent {
                last,
                ids,
                full,
                bad,
            } => self.ws_sent(now, last, ids, full, bad),
            Event::Frame(inbound) => self.frame(now, inbound, &mut out),
            Event::Unauthorized(path) => self.unauthorized(now, path, &mut out),
            Event::BatchEmpty => {
                self.batch.wanted = false;
                self.batch.asked = false;
            }
            Event::BatchAnswered {
                sent,
                full,
                verdicts,
            } => self.batch_answered(now, sent, full, verdicts),
            Event::BatchFailed { sent, failure } => self.batch_failed(now, sent, failure),
            Event::Refreshed => self.refreshed(now),
            Event::RefreshFailed(f) => match self.refresh_for.take() {
                Some(Path::Ws) => self.ws_down(now, f, &mut out),
                Some(Path::Batch) => self.batch_backoff(now, f),
                None => {}
            },
            Event::Probed { reachable } => self.probed(now, reachable),
            Event::Applied { counts, at } => self.applied(counts, at),
            Event::ApplyFailed { verdicts, message } => self.apply_failed(now, verdicts, message),
        }
        out
    }

    /// The one thing to do now, after a `Publish` when `status` changed.
    pub fn next(&mut self, now: Instant) -> Vec<Action> {
        self.timers(now);
        let action = self.decide(now);
        let report = self.report(now);
        let mut out = Vec::with_capacity(2);
        if self.published.as_ref() != Some(&report) {
            self.published = Some(report.clone());
            out.push(Action::Publish(report));
        }
        out.push(action);
        out
    }

    /// In order: results first (they free the queue), the link's upkeep, the
    /// session, the WebSocket, batches, the probe; else wait for the earliest timer.
    fn decide(&mut self, now: Instant) -> Action {
        if !self.pending.is_empty() && now >= self.apply_at {
            return Action::Apply(std::mem::take(&mut self.pending));
        }
        if self.stopping {
            return Action::Stop;
        }
        if self.config.target.is_err() || matches!(self.state, State::AuthRequired { .. }) {
            return Action::Wait(None);
        }
        if let State::Connected(link) = &mut self.state {
            if let Some(ts) = self.pongs.pop_front() {
                return Action::Pong(ts);
            }
            if now.saturating_duration_since(link.pinged) >= HEARTBEAT
                && now.saturating_duration_since(link.heard) < SILENCE_LIMIT
            {
                link.pinged = now;
                return Action::Ping;
            }
            if now.saturating_duration_since(link.heard) >= SILENCE_LIMIT {
                let silent = Failure::answered("the WebSocket has been silent for a minute");
                self.ws_down(now, silent, &mut Vec::new());
                return Action::CloseWs;
            }
        }
        if self.refresh_for.is_some() {
            return Action::Refresh;
        }
        if self.state.next_ws().is_some_and(|t| now >= t) {
            return Action::OpenWs;
        }
        if self.state.is_connected() && self.ws_pending {
            return Action::SendWs { after: self.cursor };
        }
        if self.batch.wanted && now >= self.batch.next_at {
            return Action::PostBatch;
        }
        if self.probing() && now >= self.next_probe {
            self.next_probe = now + PROBE_EVERY;
            return Action::Probe;
        }
        Action::Wait(Some(self.wake_at()))
    }

    fn timers(&mut self, now: Instant) {
        if now >= self.batch.flush_at {
            self.batch.wanted = true;
            self.ws_pending = true;
            self.batch.flush_at = now + self.config.flush_interval.max(Duration::from_secs(1));
        }
        if self.batch.confirm_at.is_some_and(|t| now >= t) {
            self.batch.confirm_at = None;
            self.batch.wanted = true;
        }
    }

    fn wake_at(&self) -> Instant {
        let b = &self.batch;
        let mut t = b.flush_at;
        let mut at = |x: Instant| t = t.min(x);
        if let Some(n) = self.state.next_ws() {
            at(n);
        }
        if b.wanted {
            at(b.next_at);
        }
        if let Some(c) = b.confirm_at {
            at(c);
        }
        if let State::Connected(link) = &self.state {
            at(link.pinged + HEARTBEAT);
            at(link.heard + SILENCE_LIMIT);
        }
        if self.probing() {
            at(self.next_probe);
        }
        if !self.pending.is_empty() {
            at(self.apply_at);
        }
        t
    }

    fn probing(&self) -> bool {
        self.unreachable && (!self.state.is_connected() || self.batch.wanted)
    }

    pub fn report(&self, now: Instant) -> Report {
        let offline = self.stopping || self.config.target.is_err();
        let mut next_retry = match self.state {
            State::Reconnecting { next_ws, .. } | State::OfflineBatchMode { next_ws, .. } => {
                Some(next_ws)
            }
            _ => None,
        };
        if self.batch.wanted && self.batch.next_at > now {
            next_retry = Some(next_retry.map_or(self.batch.next_at, |n| n.min(self.batch.next_at)));
        }
        if offline || matches!(self.state, State::AuthRequired { .. }) {
            next_retry = None;
        }
        Report {
            state: if offline {
                ConnectionState::Offline
            } else {
                self.state.name()
            },
            consecutive_failures: self.state.ws_failures().max(self.batch.failures),
            next_retry,
            last_error: self.last_error.clone(),
            last_sync_at: self.last_sync_at.clone(),
            counters: self.counters.clone(),
            server_acks: self.server_acks,
        }
    }
}
