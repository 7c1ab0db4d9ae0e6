//! What goes into the planner (events) and what comes out (actions).

use std::time::{Duration, Instant};

use kitty_proto::api::ConnectionState;
use kitty_store::outbox::{Applied, Cursor, Verdict};
use serde_json::Value;

use crate::uplink::target::Target;
use crate::uplink::ws::Inbound;

/// The settings the planner follows, from config.toml.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[sync] server_url`, or why it cannot be used.
    pub target: Result<Target, String>,
    /// Least time between two batch POSTs (zero: no limit).
    pub batch_interval: Duration,
    /// How often a queue with something in it is flushed anyway.
    pub flush_interval: Duration,
}

/// Which request needed a fresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Ws,
    Batch,
}

/// A request that did not get an answer worth reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    /// The server could not be reached at all (refused, timed out), as
    /// opposed to answering badly: the TCP probe is what brings it back.
    pub unreachable: bool,
}

impl Failure {
    /// The server answered, but not usefully.
    pub fn answered(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            unreachable: false,
        }
    }

    pub fn unreachable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            unreachable: true,
        }
    }
}

/// A batch POST that delivered nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchFailure {
    /// 429: wait this long (already bounded, see `batch::retry_after`).
    RateLimited(Duration),
    /// 403 with the server's reason: the events stay, the state says forbidden.
    Forbidden(String),
    /// Anything else: 5xx, timeouts, refused connections, unreadable replies.
    Failed(Failure),
}

/// Something that happened. The driver feeds every event it has before it
/// asks `next()` what to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The writer committed events.
    Committed,
    /// `POST /v1/sync` (`kitty-sync sync`).
    SyncRequested,
    /// config.toml was read again.
    Config(Config),
    /// The credentials changed: `Ok` when they are a live session, else why not.
    Credentials(Result<(), String>),
    /// The deadline of a `Wait` passed.
    Timer,
    Shutdown,

    // Answers to `OpenWs`, `SendWs`, `Ping`, `Pong`, and what arrives on the link.
    WsOpened,
    /// Opening failed, or the open WebSocket broke (send failed, closed, errored).
    WsFailed(Failure),
    /// `SendWs` sent the events `ids`, read up to `last`; `full` when more
    /// may be waiting. `bad` are rows that could not be sent (not JSON
    /// objects), rejected here.
    WsSent {
        last: Option<Cursor>,
        ids: Vec<String>,
        full: bool,
        bad: Vec<(String, Verdict)>,
    },
    Frame(Inbound),

    // Answers to `PostBatch`, `OpenWs` and `Refresh`.
    /// The server refused the access token (401), or it had expired before
    /// the request could be made.
    Unauthorized(Path),
    /// The session cannot be used any more: refresh refused, not logged in.
    SessionOver(String),
    /// `PostBatch` found the queue empty.
    BatchEmpty,
    /// The server answered 200 about `sent` rows (`full`: as many as a batch
    /// holds); the rows it named have their verdicts, the others none.
    BatchAnswered {
        sent: u64,
        full: bool,
        verdicts: Vec<(String, Verdict)>,
    },
    BatchFailed {
        sent: u64,
        failure: BatchFailure,
    },
    Refreshed,
    /// The refresh did not get an answer (network, 5xx): worth trying again.
    RefreshFailed(Failure),
    Probed {
        reachable: bool,
    },
    /// `Apply` went through at `at` (RFC 3339).
    Applied {
        counts: Applied,
        at: String,
    },
    /// `Apply` failed; the verdicts come back to be applied later.
    ApplyFailed {
        verdicts: Vec<(String, Verdict)>,
        message: String,
    },
}

/// Something to do. Requests (`OpenWs` to `Apply`) are answered by events;
/// the others are not.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Get a WebSocket token and open the WebSocket.
    OpenWs,
    /// Send the queued rows after `after` (drain order) over the WebSocket.
    SendWs { after: Option<Cursor> },
    /// Our heartbeat: a WebSocket ping.
    Ping,
    /// Answer a server ping with its timestamp.
    Pong(Value),
    /// POST the oldest queued rows as one batch.
    PostBatch,
    /// Exchange the refresh token for new tokens.
    Refresh,
    /// Try a TCP connection to the server.
    Probe,
    /// Delete confirmed rows, count rejections (the store moves the fifth to
    /// `dead_letter`).
    Apply(Vec<(String, Verdict)>),

    /// Close the WebSocket with a close frame.
    CloseWs,
    /// Feed a relayed event's Lamport value to the clock (the ledger leaves
    /// out our own node's).
    Receive(crate::uplink::ws::Relayed),
    /// A WebSocket verdict that counts (on an event in flight there): for
    /// the feed of `kitty-sync tail`.
    Acknowledged(String, Verdict),
    /// Show this in `status`.
    Publish(Report),
    /// Nothing to do until this instant (`None`: until something happens).
    Wait(Option<Instant>),
    /// The uplink is done.
    Stop,
}

/// What the server said, counted (`status` shows these).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub sent_ws: u64,
    pub sent_batch: u64,
    pub delivered: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub refreshes: u64,
}

/// The uplink as `status` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub state: ConnectionState,
    pub consecutive_failures: u32,
    /// When the next attempt is due, while backing off.
    pub next_retry: Option<Instant>,
    pub last_error: Option<String>,
    /// When the server last confirmed events (RFC 3339).
    pub last_sync_at: Option<String>,
    pub counters: Counters,
    pub server_acks: bool,
}
