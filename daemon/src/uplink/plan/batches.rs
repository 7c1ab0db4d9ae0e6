//! Transitions of the batch path: answers, failures, backoff.

use std::time::Instant;

use kitty_store::outbox::{Applied, Verdict};

use super::state::State;
use super::{APPLY_RETRY, BatchFailure, Failure, MAX_PENDING, Planner};
use crate::uplink::backoff;

impl Planner {
    pub(super) fn batch_answered(
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
        // Confirmed another way: no WebSocket answer is awaited for them any more.
        if let State::Connected(link) = &mut self.state {
            for (id, v) in &verdicts {
                if matches!(v, Verdict::Accepted | Verdict::Duplicate) {
                    link.in_flight.remove(id);
                }
            }
        }
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
        self.batch.asked = false;
        self.batch.next_at = now + self.config.batch_interval;
        // More may wait: a full batch, or events rejected or left out this time.
        self.batch.wanted = full || confirmed < sent;
        if self.state.is_connected() {
            self.last_error = None;
        }
    }

    pub(super) fn batch_failed(&mut self, now: Instant, sent: u64, failure: BatchFailure) {
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

    pub(super) fn batch_backoff(&mut self, now: Instant, f: Failure) {
        self.batch.failures += 1;
        let delay = backoff::delay(self.batch.failures, (self.jitter)());
        self.batch.next_at = now + delay.max(self.config.batch_interval);
        self.set_unreachable(now, f.unreachable);
        tracing::warn!(failures = self.batch.failures, retry_in = ?delay, "batch: {}", f.message);
        self.last_error = Some(f.message);
    }

    pub(super) fn applied(&mut self, counts: Applied, at: String) {
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

    pub(super) fn apply_failed(
        &mut self,
        now: Instant,
        mut verdicts: Vec<(String, Verdict)>,
        message: String,
    ) {
        tracing::error!("cannot apply the server's results: {message}");
        // Keep them, oldest first: the next attempt may succeed, and re-sending is safe.
        verdicts.append(&mut self.pending);
        verdicts.truncate(MAX_PENDING);
        self.pending = verdicts;
        self.apply_at = now + APPLY_RETRY;
    }
}
