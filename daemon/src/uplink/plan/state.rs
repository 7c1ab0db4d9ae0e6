//! The uplink's connection state, with what each state needs, and the batch
//! schedule that runs alongside it.

use std::collections::HashSet;
use std::time::Instant;

use kitty_proto::api::ConnectionState;

use super::WS_FAILURES_FOR_BATCH_MODE;

/// The connection states of CONTRACT.md §4, plus `AuthRequired`.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Not connected, and no attempt has failed: at start, after a new
    /// server or a new login. The WebSocket is tried at `next_ws`.
    Offline {
        next_ws: Instant,
    },
    Connected(Link),
    /// `failures` (1 to 9) attempts in a row failed; the next is at `next_ws`.
    Reconnecting {
        failures: u32,
        next_ws: Instant,
    },
    /// 10 or more failed in a row: batches carry the queue, the WebSocket
    /// is still tried (every 30 s, or at once when the probe gets through).
    OfflineBatchMode {
        failures: u32,
        next_ws: Instant,
    },
    /// The session is over (refresh refused, not logged in): nothing is
    /// sent until the credentials change.
    AuthRequired {
        why: String,
    },
}

/// An open WebSocket.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// Anything arrived: a link silent for a minute is dead.
    pub heard: Instant,
    pub pinged: Instant,
    /// Events sent on this connection and not yet settled: the only ones
    /// whose ack or error counts.
    pub in_flight: HashSet<String>,
}

impl Link {
    pub fn new(now: Instant) -> Self {
        Self {
            heard: now,
            pinged: now,
            in_flight: HashSet::new(),
        }
    }
}

impl State {
    /// What `status` calls it.
    pub fn name(&self) -> ConnectionState {
        match self {
            Self::Offline { .. } => ConnectionState::Offline,
            Self::Connected(_) => ConnectionState::Connected,
            Self::Reconnecting { .. } => ConnectionState::Reconnecting,
            Self::OfflineBatchMode { .. } => ConnectionState::OfflineBatchMode,
            Self::AuthRequired { .. } => ConnectionState::AuthRequired,
        }
    }

    /// After `failures` failed attempts in a row, the next at `next_ws`.
    pub fn down(failures: u32, next_ws: Instant) -> Self {
        if failures >= WS_FAILURES_FOR_BATCH_MODE {
            Self::OfflineBatchMode { failures, next_ws }
        } else {
            Self::Reconnecting { failures, next_ws }
        }
    }

    pub fn is_connected(&self) -> bool {
        matches!(self, Self::Connected(_))
    }

    pub fn ws_failures(&self) -> u32 {
        match self {
            Self::Reconnecting { failures, .. } | Self::OfflineBatchMode { failures, .. } => {
                *failures
            }
            _ => 0,
        }
    }

    /// When the WebSocket is next tried, in the states that try it.
    pub fn next_ws(&self) -> Option<Instant> {
        match self {
            Self::Offline { next_ws }
            | Self::Reconnecting { next_ws, .. }
            | Self::OfflineBatchMode { next_ws, .. } => Some(*next_ws),
            Self::Connected(_) | Self::AuthRequired { .. } => None,
        }
    }

    /// Brings the next WebSocket attempt forward to `now`, in the states that try it.
    pub fn retry_ws_by(&mut self, now: Instant) {
        match self {
            Self::Offline { next_ws }
            | Self::Reconnecting { next_ws, .. }
            | Self::OfflineBatchMode { next_ws, .. } => *next_ws = (*next_ws).min(now),
            Self::Connected(_) | Self::AuthRequired { .. } => {}
        }
    }
}

/// When batches go: wanted (something may need one) and not before `next_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct Batches {
    pub wanted: bool,
    /// `sync now` asked for it: it goes even when the WebSocket opens first,
    /// because without acks only a batch settles what the WebSocket sent,
    /// and `kitty-sync sync --wait` waits for that.
    pub asked: bool,
    pub next_at: Instant,
    /// Batches in a row that failed or confirmed nothing.
    pub failures: u32,
    /// When a batch confirms what the WebSocket sent.
    pub confirm_at: Option<Instant>,
    /// The next periodic flush.
    pub flush_at: Instant,
}

impl Batches {
    /// A fresh schedule with a batch due now.
    pub fn due(now: Instant, flush_at: Instant) -> Self {
        Self {
            wanted: true,
            asked: false,
            next_at: now,
            failures: 0,
            confirm_at: None,
            flush_at,
        }
    }
}
