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

mod event;
mod state;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_batch;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use kitty_store::outbox::{Cursor, Verdict};
use serde_json::Value;

pub use event::{Action, BatchFailure, Config, Counters, Event, Failure, Path, Report};
pub use state::State;
use state::{Batches, Link};

use super::backoff;
use super::target::Target;
use super::ws::Inbound;

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
            config,
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
            last_error: None,
            last_sync_at: None,
            counters: Counters::default(),
            published: None,
            jitter,
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
                count,
                full,
                bad,
            } => self.ws_sent(now, last, count, full, bad),
            Event::Frame(inbound) => self.frame(now, inbound, &mut out),
            Event::Unauthorized(path) => self.unauthorized(now, path, &mut out),
            Event::BatchEmpty => self.batch.wanted = false,
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
            Event::Applied { counts, at } => {
                let c = &mut self.counters;
                c.delivered += counts.delivered;
                c.duplicates += counts.duplicates;
                c.rejected += counts.rejected;
                if counts.delivered + counts.duplicates > 0 {
                    self.last_sync_at = Some(at);
                }
                if counts.dead > 0 {
                    tracing::warn!(
                        dead = counts.dead,
                        "events rejected five times moved to dead_letter"
                    );
                }
                if counts.rejected > 0 {
                    tracing::warn!(
                        rejected = counts.rejected,
                        "the server rejected events; they stay queued"
                    );
                }
            }
            Event::ApplyFailed {
                mut verdicts,
                message,
            } => {
                tracing::error!("cannot apply the server's results: {message}");
                // Keep them, oldest first: the next attempt may succeed, and re-sending is safe.
                verdicts.append(&mut self.pending);
                verdicts.truncate(MAX_PENDING);
                self.pending = verdicts;
                self.apply_at = now + APPLY_RETRY;
            }
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
                "Offline"
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

    // ---- transitions ----

    fn configure(&mut self, now: Instant, c: Config, out: &mut Vec<Action>) {
        if c.flush_interval != self.config.flush_interval {
            self.batch.flush_at = self.batch.flush_at.min(now + c.flush_interval);
        }
        let server_changed = c.target != self.config.target;
        self.config = c;
        if !server_changed {
            return;
        }
        match &self.config.target {
            Ok(t) => tracing::info!(server = %t.base, "server changed; reconnecting"),
            Err(e) => self.last_error = Some(e.clone()),
        }
        // A new server: start over with it, except that a refused session stays refused.
        if !matches!(self.state, State::AuthRequired { .. }) {
            self.leave_link(now, out);
        }
        self.batch = Batches::due(now, self.batch.flush_at);
        self.cursor = None;
        self.ws_pending = false;
        self.unreachable = false;
        self.refresh_for = None;
    }

    /// Closes the WebSocket, if open; the state is `Offline` with a try due now.
    fn leave_link(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.state.is_connected() {
            out.push(Action::CloseWs);
        }
        self.state = State::Offline { next_ws: now };
    }

    fn credentials_back(&mut self, now: Instant) {
        if let State::AuthRequired { .. } = self.state {
            tracing::info!("credentials changed; trying the new session");
            self.state = State::Offline { next_ws: now };
            self.batch = Batches::due(now, self.batch.flush_at);
            self.fresh_token = false;
        }
    }

    fn session_over(&mut self, why: String, out: &mut Vec<Action>) {
        tracing::warn!("{why}; waiting for a new login (the queue keeps every event)");
        if self.state.is_connected() {
            out.push(Action::CloseWs);
        }
        self.last_error = Some(why.clone());
        self.state = State::AuthRequired { why };
        self.refresh_for = None;
    }

    fn ws_opened(&mut self, now: Instant) {
        tracing::info!("WebSocket connected");
        self.state = State::Connected(Link {
            heard: now,
            pinged: now,
        });
        self.fresh_token = false;
        self.unreachable = false;
        self.ws_pending = true;
        self.pongs.clear();
        self.last_error = None;
    }

    /// One more failed WebSocket attempt (or a link lost): back off, and let
    /// batches carry the events meanwhile.
    fn ws_down(&mut self, now: Instant, f: Failure, out: &mut Vec<Action>) {
        if matches!(self.state, State::AuthRequired { .. }) {
            return;
        }
        if self.state.is_connected() {
            out.push(Action::CloseWs);
        } else {
            self.fresh_token = false;
        }
        let failures = self.state.ws_failures() + 1;
        let delay = backoff::delay(failures, (self.jitter)());
        self.state = State::down(failures, now + delay);
        self.set_unreachable(now, f.unreachable);
        self.batch.wanted = true;
        tracing::warn!(failures, retry_in = ?delay, "WebSocket: {}", f.message);
        self.last_error = Some(f.message);
    }

    fn ws_sent(
        &mut self,
        now: Instant,
        last: Option<Cursor>,
        count: u64,
        full: bool,
        bad: Vec<(String, Verdict)>,
    ) {
        if !self.state.is_connected() {
            return;
        }
        self.cursor = last.or(self.cursor);
        self.counters.sent_ws += count;
        self.pending.extend(bad);
        self.ws_pending = full;
        // A server that acknowledges gets time to; without acks a batch confirms.
        if count > 0 && self.batch.confirm_at.is_none() {
            let interval = self.config.batch_interval;
            let wait = if self.server_acks {
                ACK_GRACE.max(interval)
            } else {
                interval
            };
            self.batch.confirm_at = Some(now + wait);
        }
    }

    fn frame(&mut self, now: Instant, inbound: Inbound, out: &mut Vec<Action>) {
        let State::Connected(link) = &mut self.state else {
            return;
        };
        link.heard = now;
        match inbound {
            Inbound::Ping(ts) => {
                if self.pongs.len() == MAX_PONGS {
                    self.pongs.pop_front();
                }
                self.pongs.push_back(ts);
            }
            Inbound::Event(Some(remote)) => out.push(Action::Receive(remote)),
            Inbound::Verdict(id, v) => {
                self.server_acks = true;
                self.pending.push((id, v));
            }
            Inbound::Event(None) | Inbound::Snapshot | Inbound::Other => {}
        }
    }

    /// A 401 refreshes once; a 401 on the token just refreshed is a failure.
    fn unauthorized(&mut self, now: Instant, path: Path, out: &mut Vec<Action>) {
        if !std::mem::take(&mut self.fresh_token) {
            self.refresh_for = Some(path);
            return;
        }
        let f = Failure::answered("the server refused a freshly refreshed token (401)");
        match path {
            Path::Ws => self.ws_down(now, f, out),
            Path::Batch => self.batch_backoff(now, f),
        }
    }

    fn refreshed(&mut self, now: Instant) {
        self.counters.refreshes += 1;
        self.fresh_token = true;
        match self.refresh_for.take() {
            Some(Path::Ws) => self.state.retry_ws_by(now),
            Some(Path::Batch) => self.batch.next_at = now,
            None => {}
        }
    }

    fn batch_answered(
        &mut self,
        now: Instant,
        sent: u64,
        full: bool,
        verdicts: Vec<(String, Verdict)>,
    ) {
        self.counters.sent_batch += sent;
        self.fresh_token = false;
        self.unreachable = false;
        let confirmed = verdicts
            .iter()
            .filter(|(_, v)| matches!(v, Verdict::Accepted | Verdict::Duplicate))
            .count() as u64;
        let complete = verdicts.len() as u64 == sent;
        self.pending.extend(verdicts);
        if confirmed == 0 {
            // Nothing confirmed (empty results, all rejected): back off
            // rather than send the same batch again at once.
            let message = if complete {
                "the server rejected every event of the batch".to_owned()
            } else {
                format!("the server confirmed none of {sent} events")
            };
            return self.batch_backoff(now, Failure::answered(message));
        }
        self.batch.failures = 0;
        self.batch.next_at = now + self.config.batch_interval;
        // More may wait: a full batch, or events rejected or left out this time.
        self.batch.wanted = full || confirmed < sent;
        if self.state.is_connected() {
            self.last_error = None;
        }
    }

    fn batch_failed(&mut self, now: Instant, sent: u64, failure: BatchFailure) {
        self.counters.sent_batch += sent;
        self.fresh_token = false;
        match failure {
            BatchFailure::RateLimited(wait) => {
                tracing::info!(?wait, "rate limited by the server");
                self.unreachable = false;
                self.batch.next_at = now + wait.max(self.config.batch_interval);
                self.last_error = Some(format!("rate limited; retrying in {}s", wait.as_secs()));
            }
            BatchFailure::Forbidden(why) => {
                let message = format!("forbidden (403): {why}; the events stay queued");
                self.batch_backoff(now, Failure::answered(message));
            }
            BatchFailure::Failed(f) => self.batch_backoff(now, f),
        }
    }

    fn batch_backoff(&mut self, now: Instant, f: Failure) {
        self.batch.failures += 1;
        let delay = backoff::delay(self.batch.failures, (self.jitter)());
        self.batch.next_at = now + delay.max(self.config.batch_interval);
        self.set_unreachable(now, f.unreachable);
        tracing::warn!(failures = self.batch.failures, retry_in = ?delay, "batch: {}", f.message);
        self.last_error = Some(f.message);
    }

    /// Whether the last failure was not reaching the server; probing starts a second later.
    fn set_unreachable(&mut self, now: Instant, unreachable: bool) {
        if unreachable && !self.unreachable {
            self.next_probe = now + PROBE_EVERY;
        }
        self.unreachable = unreachable;
    }

    /// A cheap TCP connect got through: retry now, not after the backoff.
    fn probed(&mut self, now: Instant, reachable: bool) {
        if !reachable || !self.unreachable {
            return;
        }
        tracing::info!("the server is reachable again");
        self.unreachable = false;
        self.state.retry_ws_by(now);
        self.batch.next_at = self.batch.next_at.min(now);
        self.batch.wanted = true;
    }
}
