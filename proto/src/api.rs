//! The JSON the socket API answers with (`/v1/...`). The daemon serialises these
//! and the client reads them back, so both ends share one definition.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Header carried by every answer of the socket API.
pub const VERSION_HEADER: &str = "x-kitty-syncd-version";

/// `202` to `POST /v1/events`: every event is committed to queue.db.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmitResponse {
    /// Always `"queued"`.
    pub status: String,
    pub events: Vec<Accepted>,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub event_id: String,
    /// The value stamped on a draft, or the relayed envelope's own value.
    pub lamport_clock: u64,
    /// The event_id was already queued; the existing row was kept as it was.
    #[serde(default)]
    pub duplicate: bool,
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A short code: `invalid_json`, `invalid_event`, `payload_too_large`,
    /// `queue_full`, `forbidden`, `not_found`, `bad_request`, `storage_error`,
    /// `shutting_down`.
    pub error: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The event's position when the request was an array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    pub version: String,
}

/// `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub ok: bool,
    pub pid: u32,
    pub version: String,
}

/// `GET /v1/queue?limit=N`: the oldest queued events first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueView {
    pub depth: u64,
    pub events: Vec<QueueEntry>,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub id: i64,
    pub event_id: String,
    pub event_type: String,
    /// Enqueue time, epoch seconds.
    pub timestamp: i64,
    pub retry_count: i64,
    /// The stored envelope; a row whose `data` is not JSON (written by some other
    /// tool) shows as a string.
    pub envelope: Value,
}

/// `GET /v1/status`, and what `status` prints from disk when no daemon answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub running: bool,
    pub pid: Option<u32>,
    pub version: String,
    pub uptime_secs: Option<u64>,
    pub socket: String,
    pub home: String,
    pub queue: QueueStats,
    pub clock: ClockStatus,
    pub team_slug: String,
    pub server_url: String,
    pub logged_in: bool,
    pub username: Option<String>,
    /// `Connected`, `Reconnecting`, `Offline`, `OfflineBatchMode`, `AuthRequired`.
    pub connection: String,
    /// How the daemon was started: `systemd`, `launchd` or `manual`.
    pub supervisor: Option<String>,
    /// Events waiting in the spool for a daemon to stamp them.
    pub spooled: u64,
    /// When not running: the command that starts the daemon.
    pub start_hint: Option<String>,
    /// When config.toml was last read (start-up, SIGHUP, or a change on disk).
    #[serde(default)]
    pub config_loaded_at: Option<String>,
    /// Delivery to the server.
    #[serde(default)]
    pub uplink: UplinkStatus,
}

/// What the uplink is doing; `state` is also `Status::connection`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UplinkStatus {
    /// `Connected`, `Reconnecting`, `Offline`, `OfflineBatchMode`, `AuthRequired`.
    pub state: String,
    /// Last time the server confirmed events (RFC 3339).
    pub last_sync_at: Option<String>,
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
    /// When the next attempt is due, while backing off (RFC 3339).
    pub next_retry_at: Option<String>,
    /// Events moved aside after 5 per-event rejections.
    pub dead_letters: u64,
    /// Events sent over the WebSocket / in batch POSTs (sends, not deliveries).
    pub sent_ws: u64,
    pub sent_batch: u64,
    /// Confirmed by the server: `success`/`accepted`, `duplicate`, and per-event rejections.
    pub delivered: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub refreshes: u64,
    /// Whether the server acknowledges WebSocket events (later servers do).
    pub server_acks: bool,
    /// The request to the server under way right now, if any.
    #[serde(default)]
    pub in_flight: Option<InFlight>,
}

/// A request to the server under way: what it is and since when (RFC 3339).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    pub what: String,
    pub since: String,
}

/// `POST /v1/sync`: a flush was triggered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncTriggered {
    pub triggered: bool,
    pub depth: u64,
    pub version: String,
}

/// `GET /v1/dead?limit=N`: events the server rejected five times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadView {
    pub count: u64,
    pub events: Vec<DeadEntry>,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadEntry {
    pub id: i64,
    pub event_id: String,
    pub event_type: String,
    pub timestamp: i64,
    pub retry_count: i64,
    /// The server's last rejection message.
    pub error: Option<String>,
    /// When it was moved aside, epoch seconds.
    pub died_at: i64,
    pub envelope: Value,
}

/// `POST /v1/dead/retry`: dead letters put back into the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requeued {
    pub requeued: u64,
    pub version: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueStats {
    pub depth: u64,
    pub max_queue_size: u64,
    pub oldest_age_secs: Option<u64>,
    pub retries: RetryDistribution,
    pub top_event_types: Vec<TypeCount>,
}

/// How many queued events have been retried 0, 1-3 and 4 or more times.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryDistribution {
    #[serde(rename = "0")]
    pub none: u64,
    #[serde(rename = "1-3")]
    pub few: u64,
    #[serde(rename = "4+")]
    pub many: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeCount {
    pub event_type: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockStatus {
    pub value: u64,
    pub node_id: String,
}
