//! The uplink's state as `status` shows it, shared with the socket API.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use kitty_proto::api::{ConnectionState, InFlight, UplinkStatus};
use kitty_proto::rules::format_utc;
use tokio::sync::Notify;

use super::plan::Report;

/// What the socket API shares with the uplink task.
#[derive(Clone, Default)]
pub struct UplinkShared {
    status: Arc<Mutex<UplinkStatus>>,
    /// `POST /v1/sync`: flush now.
    pub sync_now: Arc<Notify>,
    /// Where verdicts, dead letters and state changes are reported.
    pub feed: crate::feed::Feed,
}

impl UplinkShared {
    /// Starts in `state`, so that `status` is right from the first request.
    pub fn new(state: ConnectionState) -> Self {
        let shared = Self::default();
        shared.update(|s| s.state = state);
        shared
    }

    pub fn with_feed(mut self, feed: crate::feed::Feed) -> Self {
        self.feed = feed;
        self
    }

    pub fn snapshot(&self) -> UplinkStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The connection state alone: every emit's answer carries it, and a
    /// whole snapshot would clone the status's strings for it.
    pub fn state(&self) -> ConnectionState {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).state
    }

    /// Changes the status; a change of state is reported to the feed.
    pub fn update(&self, f: impl FnOnce(&mut UplinkStatus)) {
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let was = s.state;
        f(&mut s);
        if s.state != was {
            self.feed.state(s.state, s.last_error.as_deref());
        }
    }

    /// Shows `what` as in flight from now until the guard is dropped, so a
    /// slow request is visible as such (and not as the last error before it).
    pub fn in_flight(&self, what: String) -> InFlightGuard {
        let since = format_utc(Utc::now());
        self.update(|s| s.in_flight = Some(InFlight { what, since }));
        InFlightGuard(self.clone())
    }

    /// Shows the planner's report; `now` and `wall` are the same moment on
    /// the two clocks, to turn the next retry into a time of day.
    pub fn publish(&self, r: Report, now: Instant, wall: DateTime<Utc>) {
        self.update(|s| {
            s.state = r.state;
            s.consecutive_failures = r.consecutive_failures;
            s.next_retry_at = r
                .next_retry
                .map(|t| format_utc(wall + t.saturating_duration_since(now)));
            s.last_error = r.last_error;
            s.last_sync_at = r.last_sync_at;
            s.sent_ws = r.counters.sent_ws;
            s.sent_batch = r.counters.sent_batch;
            s.delivered = r.counters.delivered;
            s.duplicates = r.counters.duplicates;
            s.rejected = r.counters.rejected;
            s.refreshes = r.counters.refreshes;
            s.server_acks = r.server_acks;
        });
    }
}

/// Clears `in_flight` when the request is over, however it ended.
pub struct InFlightGuard(UplinkShared);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.update(|s| s.in_flight = None);
    }
}
