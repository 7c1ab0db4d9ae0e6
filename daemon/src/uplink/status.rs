//! The uplink's state as `status` shows it, shared with the socket API.

use std::sync::{Arc, Mutex};

use kitty_proto::api::{InFlight, UplinkStatus};
use tokio::sync::Notify;

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
    pub fn new(state: State) -> Self {
        let shared = Self::default();
        shared.update(|s| s.state = state.name().into());
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

    /// Changes the status; a change of state is reported to the feed.
    pub fn update(&self, f: impl FnOnce(&mut UplinkStatus)) {
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let was = s.state.clone();
        f(&mut s);
        if s.state != was {
            self.feed.state(&s.state, s.last_error.as_deref());
        }
    }

    /// Shows `what` as in flight from now until the guard is dropped, so a
    /// slow request is visible as such (and not as the last error before it).
    pub fn in_flight(&self, what: String) -> InFlightGuard {
        let since = kitty_proto::rules::format_utc(chrono::Utc::now());
        self.update(|s| s.in_flight = Some(InFlight { what, since }));
        InFlightGuard(self.clone())
    }
}

/// Clears `in_flight` when the request is over, however it ended.
pub struct InFlightGuard(UplinkShared);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.update(|s| s.in_flight = None);
    }
}

/// The connection states of CONTRACT.md §4, plus `AuthRequired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Connected,
    Reconnecting,
    Offline,
    OfflineBatchMode,
    AuthRequired,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            Self::Connected => "Connected",
            Self::Reconnecting => "Reconnecting",
            Self::Offline => "Offline",
            Self::OfflineBatchMode => "OfflineBatchMode",
            Self::AuthRequired => "AuthRequired",
        }
    }
}
