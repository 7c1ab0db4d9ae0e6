//! Transitions about the session and the settings: a new server, new
//! credentials, a session that is over, 401s and refreshes.

use std::time::Instant;

use super::state::{Batches, State};
use super::{Action, Config, Failure, Path, Planner};

impl Planner {
    pub(super) fn configure(&mut self, now: Instant, c: Config, out: &mut Vec<Action>) {
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
    pub(super) fn leave_link(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.state.is_connected() {
            out.push(Action::CloseWs);
        }
        self.state = State::Offline { next_ws: now };
    }

    pub(super) fn credentials_back(&mut self, now: Instant) {
        if let State::AuthRequired { .. } = self.state {
            tracing::info!("credentials changed; trying the new session");
            self.state = State::Offline { next_ws: now };
            self.batch = Batches::due(now, self.batch.flush_at);
            self.fresh_token = false;
        }
    }

    pub(super) fn session_over(&mut self, why: String, out: &mut Vec<Action>) {
        tracing::warn!("{why}; waiting for a new login (the queue keeps every event)");
        if self.state.is_connected() {
            out.push(Action::CloseWs);
        }
        self.last_error = Some(why.clone());
        self.state = State::AuthRequired { why };
        self.refresh_for = None;
    }

    /// A 401 refreshes once; a 401 on the token just refreshed is a failure.
    pub(super) fn unauthorized(&mut self, now: Instant, path: Path, out: &mut Vec<Action>) {
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

    pub(super) fn refreshed(&mut self, now: Instant) {
        self.counters.refreshes += 1;
        self.fresh_token = true;
        match self.refresh_for.take() {
            Some(Path::Ws) => self.state.retry_ws_by(now),
            Some(Path::Batch) => self.batch.next_at = now,
            None => {}
        }
    }
}
