//! The JSON the socket API answers with (`/v1/...`). The daemon serialises these
//! and the client reads them back, so both ends share one definition.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::vocab::{ConnectionState, ErrorCode, Supervisor};

/// Header carried by every answer of the socket API.
pub const VERSION_HEADER: &str = "x-kitty-syncd-version";
/// Header carried by every answer: the daemon's [`PROTOCOL`].
pub const PROTOCOL_HEADER: &str = "x-kitty-syncd-protocol";

/// `202` to `POST /v1/events`: every event is committed to queue.db.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmitResponse {
    /// Always `"queued"`.
    pub status: String,
    pub events: Vec<Accepted>,
    pub version: String,
    /// The daemon's [`PROTOCOL`].
    #[serde(default = "protocol_unnumbered")]
    pub protocol: u32,
    /// Whether what was just queued is on its way; absent from older daemons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<DeliveryHealth>,
}

/// Whether queued events are getting to the server: carried by the 202 of
/// `POST /v1/events` (so `emit` needs no second request) and by `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryHealth {
    pub state: ConnectionState,
    /// Events waiting in the queue.
    pub depth: u64,
    /// Age of the oldest of them, seconds.
    pub oldest_age_secs: Option<u64>,
    /// `[sync] stale_after_secs`: older than this is stuck (0: never).
    pub stale_after_secs: u64,
}

/// Why delivery is stuck.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stuck {
    /// The server refused the session: nothing goes out until a new login.
    AuthRequired,
    /// The oldest waiting event is older than the threshold.
    Old { age_secs: u64, threshold_secs: u64 },
}

impl DeliveryHealth {
    /// Stuck = events wait and either the session is over or the oldest of
    /// them has waited longer than `stale_after_secs`.
    pub fn stuck(&self) -> Option<Stuck> {
        if self.depth == 0 {
            return None;
        }
        if self.state == ConnectionState::AuthRequired {
            return Some(Stuck::AuthRequired);
        }
        match self.oldest_age_secs {
            Some(age) if self.stale_after_secs > 0 && age > self.stale_after_secs => {
                Some(Stuck::Old {
                    age_secs: age,
                    threshold_secs: self.stale_after_secs,
                })
            }
            _ => None,
        }
    }
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
    pub error: ErrorCode,
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
    #[serde(default = "protocol_unnumbered")]
    pub protocol: u32,
    /// Why the daemon is not healthy (503), e.g. its last commit failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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
    /// The [`PROTOCOL`] of whoever built this report.
    #[serde(default = "protocol_unnumbered")]
    pub protocol: u32,
    pub uptime_secs: Option<u64>,
    pub socket: String,
    pub home: String,
    pub queue: QueueStats,
    pub clock: ClockStatus,
    pub team_slug: String,
    pub server_url: String,
    pub logged_in: bool,
    pub username: Option<String>,
    /// The same as `uplink.state`.
    pub connection: ConnectionState,
    /// How the daemon was started (a running daemon only).
    pub supervisor: Option<Supervisor>,
    /// Files waiting in the spool for a daemon to stamp them (or to set aside).
    pub spooled: u64,
    /// Spool files set aside in `spool/rejected/`, never to be queued: invalid,
    /// unfinished, not a regular file, or another user's.
    #[serde(default)]
    pub spool_rejected: u64,
    /// When not running: the command that starts the daemon.
    pub start_hint: Option<String>,
    /// When config.toml was last read (start-up, SIGHUP, or a change on disk).
    #[serde(default)]
    pub config_loaded_at: Option<String>,
    /// Lines of `<home>/kitty-sync-refused.jsonl`: events of the spec-kitty
    /// CLI that the daemon refused, kept there with its message.
    #[serde(default)]
    pub refused: u64,
    /// Delivery to the server.
    #[serde(default)]
    pub uplink: UplinkStatus,
    /// Whether delivery is stuck (a running daemon only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<DeliveryHealth>,
    /// How the daemon's commits to queue.db go.
    #[serde(default)]
    pub writer: WriterStatus,
}

/// The daemon's writer: whether its commits succeed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterStatus {
    /// False while the last commit failed and none has succeeded since.
    pub ok: bool,
    pub last_error: Option<String>,
    /// When the current run of failures began (RFC 3339).
    pub failing_since: Option<String>,
    pub consecutive_failures: u64,
    /// The last commit that succeeded (RFC 3339).
    pub last_commit_at: Option<String>,
}

impl Default for WriterStatus {
    fn default() -> Self {
        Self {
            ok: true,
            last_error: None,
            failing_since: None,
            consecutive_failures: 0,
            last_commit_at: None,
        }
    }
}

/// What the uplink is doing; `state` is also `Status::connection`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UplinkStatus {
    pub state: ConnectionState,
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
    /// When the queue is large, `top_event_types` counts only its newest
    /// this-many rows (a count over every row would make `status` slow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_event_types_of_newest: Option<u64>,
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

/// The socket API's protocol: raised whenever a request or an answer changes
/// in a way an older client or daemon would misread. A client that finds
/// another number in an answer says the daemon needs a restart.
pub const PROTOCOL: u32 = 2;
/// What a daemon from before protocol numbers speaks (its answers carry none).
pub const PROTOCOL_UNNUMBERED: u32 = 1;

fn protocol_unnumbered() -> u32 {
    PROTOCOL_UNNUMBERED
}

/// One line of `GET /v1/feed` (NDJSON: one JSON object per line, as things
/// happen): `{"at": "...", "kind": "...", ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedLine {
    /// When it happened (RFC 3339, UTC).
    pub at: String,
    /// Its place among everything this daemon has published since it started
    /// (1, 2, ...); `after=<seq>` asks for what came later. Lines about one
    /// reader only (`hello`, `missed`, `reconnect`, `stopping`) have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(flatten)]
    pub event: FeedEvent,
}

/// What a feed line reports, by its `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeedEvent {
    /// The first line of every feed.
    Hello {
        version: String,
        #[serde(default = "protocol_unnumbered")]
        protocol: u32,
        pid: u32,
        /// The connection state right now.
        state: ConnectionState,
        /// The seq of the last line published before this feed began.
        #[serde(default)]
        last_seq: u64,
    },
    /// An event committed to queue.db by the daemon.
    Committed {
        event_id: String,
        event_type: String,
        aggregate_id: String,
        lamport_clock: u64,
        /// How it came in: `daemon` (a socket request) or `spool`.
        path: String,
        /// The event_id was already queued; nothing new was stored.
        #[serde(default)]
        duplicate: bool,
    },
    /// The server confirmed an event: `status` is `accepted` or `duplicate`.
    Confirmed {
        event_id: String,
        status: String,
        /// `websocket` (an ack) or `batch` (a batch result).
        via: String,
    },
    /// The server (or, for unreadable stored data, the daemon) refused an event;
    /// it stays queued until its fifth rejection.
    Rejected {
        event_id: String,
        error: String,
        /// `websocket`, `batch`, or `daemon`.
        via: String,
    },
    /// An event moved to `dead_letter` after its fifth rejection.
    Dead { event_id: String },
    /// The connection state changed.
    State {
        state: ConnectionState,
        #[serde(default)]
        error: Option<String>,
    },
    /// This reader fell behind (or, first thing with `since_start`, the
    /// history no longer holds them): this many lines were not sent to it.
    Missed { missed: u64 },
    /// This response ends here (a connection lives at most a minute); ask
    /// again with `after=<the last seq read>` to go on without a gap.
    Reconnect,
    /// The daemon is shutting down; the feed ends after this line.
    Stopping,
    /// A kind this build does not know (from a newer daemon).
    #[serde(other)]
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuck_means_events_wait_without_a_session_or_too_long() {
        use ConnectionState::*;
        let h = |state, depth, age| DeliveryHealth {
            state,
            depth,
            oldest_age_secs: age,
            stale_after_secs: 3600,
        };
        assert_eq!(h(Connected, 3, Some(10)).stuck(), None);
        assert_eq!(h(AuthRequired, 0, None).stuck(), None, "nothing waits");
        assert_eq!(
            h(AuthRequired, 1, Some(0)).stuck(),
            Some(Stuck::AuthRequired)
        );
        assert_eq!(h(Connected, 5, Some(3600)).stuck(), None);
        assert_eq!(
            h(Reconnecting, 5, Some(3601)).stuck(),
            Some(Stuck::Old {
                age_secs: 3601,
                threshold_secs: 3600
            })
        );
        let off = DeliveryHealth {
            stale_after_secs: 0,
            ..h(Offline, 5, Some(99_999))
        };
        assert_eq!(off.stuck(), None, "0 turns the age check off");
    }

    #[test]
    fn an_error_body_is_as_the_socket_api_has_always_spelled_it() {
        let body = ErrorBody {
            error: ErrorCode::InvalidEvent,
            message: "m".into(),
            field: Some("payload.wp_id".into()),
            rule: Some("wp_id".into()),
            index: Some(2),
            version: "0.1.0".into(),
        };
        let text = serde_json::to_string(&body).unwrap();
        assert_eq!(
            text,
            r#"{"error":"invalid_event","message":"m","field":"payload.wp_id","rule":"wp_id","index":2,"version":"0.1.0"}"#
        );
        assert_eq!(serde_json::from_str::<ErrorBody>(&text).unwrap(), body);
        let bare: ErrorBody =
            serde_json::from_str(r#"{"error":"queue_full","message":"m","version":"v"}"#).unwrap();
        assert_eq!(bare.error, ErrorCode::QueueFull);
        assert_eq!(
            serde_json::to_string(&bare).unwrap(),
            r#"{"error":"queue_full","message":"m","version":"v"}"#
        );
    }

    #[test]
    fn feed_lines_are_flat_objects_tagged_by_kind() {
        let line = FeedLine {
            at: "2026-02-04T13:47:09.123456+00:00".into(),
            seq: Some(7),
            event: FeedEvent::Confirmed {
                event_id: "01J0".into(),
                status: "duplicate".into(),
                via: "batch".into(),
            },
        };
        let text = serde_json::to_string(&line).unwrap();
        assert_eq!(
            text,
            r#"{"at":"2026-02-04T13:47:09.123456+00:00","seq":7,"kind":"confirmed","event_id":"01J0","status":"duplicate","via":"batch"}"#
        );
        assert_eq!(serde_json::from_str::<FeedLine>(&text).unwrap(), line);
        let stopping: FeedLine = serde_json::from_str(r#"{"at":"t","kind":"stopping"}"#).unwrap();
        assert_eq!((stopping.seq, stopping.event), (None, FeedEvent::Stopping));
        // A newer daemon's kind is read, not refused.
        let newer: FeedLine =
            serde_json::from_str(r#"{"at":"t","kind":"something_new","x":1}"#).unwrap();
        assert_eq!(newer.event, FeedEvent::Unknown);
    }
}
