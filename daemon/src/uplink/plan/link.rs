//! Transitions of the WebSocket: opened, failed or lost, rows sent, frames
//! in; and the probe that brings a lost server back early.

use std::time::Instant;

use kitty_store::outbox::{Cursor, Verdict};

use super::state::{Link, State};
use super::{ACK_GRACE, Action, Failure, MAX_PONGS, PROBE_EVERY, Planner};
use crate::uplink::backoff;
use crate::uplink::ws::Inbound;

impl Planner {
    pub(super) fn ws_opened(&mut self, now: Instant) {
        tracing::info!("WebSocket connected");
        self.state = State::Connected(Link::new(now));
        self.fresh_token = false;
        self.unreachable = false;
        self.ws_pending = true;
        self.pongs.clear();
        self.last_error = None;
        // The WebSocket now carries every queued row after the cursor, so a
        // batch wanted while it was down would send those rows a second time
        // (up to a batch of them after every start with a backlog), unless
        // `sync now` asked for it. Rows before the cursor went out on an
        // earlier connection, and only a batch settles them: it comes when
        // it would after a send.
        if !self.batch.asked && std::mem::take(&mut self.batch.wanted) && self.cursor.is_some() {
            self.confirm_later(now);
        }
    }

    /// One more failed WebSocket attempt (or a link lost): back off, and let
    /// batches carry the events meanwhile.
    pub(super) fn ws_down(&mut self, now: Instant, f: Failure, out: &mut Vec<Action>) {
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

    pub(super) fn ws_sent(
        &mut self,
        now: Instant,
        last: Option<Cursor>,
        ids: Vec<String>,
        full: bool,
        bad: Vec<(String, Verdict)>,
    ) {
        let State::Connected(link) = &mut self.state else {
            return;
        };
        let count = (ids.len() + bad.len()) as u64;
        link.in_flight.extend(ids);
        self.cursor = last.or(self.cursor);
        self.counters.sent_ws += count;
        self.pending.extend(bad);
        self.ws_pending = full;
        if count > 0 {
            self.confirm_later(now);
        }
    }

    /// Schedules the batch that settles rows the WebSocket sent, unless one
    /// is scheduled already. A server that acknowledges gets time to; without
    /// acks the batch is what confirms them.
    fn confirm_later(&mut self, now: Instant) {
        if self.batch.confirm_at.is_none() {
            let interval = self.config.batch_interval;
            let wait = if self.server_acks {
                ACK_GRACE.max(interval)
            } else {
                interval
            };
            self.batch.confirm_at = Some(now + wait);
        }
    }

    pub(super) fn frame(&mut self, now: Instant, inbound: Inbound, out: &mut Vec<Action>) {
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
            Inbound::Event(Some(relayed)) => out.push(Action::Receive(relayed)),
            // Only a verdict on an event sent on this connection, and only
            // the first: anything else is a lie or a mix-up, and must neither
            // delete a row nor push it towards the dead letters.
            Inbound::Verdict(id, v) if link.in_flight.remove(&id) => {
                self.server_acks = true;
                out.push(Action::Acknowledged(id.clone(), v.clone()));
                self.pending.push((id, v));
            }
            Inbound::Verdict(id, _) => {
                tracing::debug!(event_id = %id, "ignored a verdict on an event not in flight on this WebSocket");
            }
            Inbound::Event(None) | Inbound::Snapshot | Inbound::Other => {}
        }
    }

    /// Whether the last failure was not reaching the server; probing starts a second later.
    pub(super) fn set_unreachable(&mut self, now: Instant, unreachable: bool) {
        if unreachable && !self.unreachable {
            self.next_probe = now + PROBE_EVERY;
        }
        self.unreachable = unreachable;
    }

    /// A cheap TCP connect got through: retry now, not after the backoff.
    pub(super) fn probed(&mut self, now: Instant, reachable: bool) {
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
