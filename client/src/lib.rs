//! kitty-sync: the thin client of kitty-syncd, as a library and a binary.
//!
//! [`Client::emit`] hands one event to the daemon and returns once it is
//! durable. It never blocks for long and never loses the event: when no daemon
//! answers within [`DAEMON_DEADLINE`], it queues the event itself
//! ([`fallback`]), so the whole call stays within about a second whatever state
//! the daemon is in.
//!
//! - [`fallback`]: queueing an event ourselves, by the daemon's rules.
//! - [`login`]: `kitty-sync login` and `logout`.
//! - [`queue_cmd`]: `kitty-sync queue list|dead|retry-dead`.
//! - [`staleness`]: warnings when queued events will not reach the server.
//! - [`sync`]: `kitty-sync sync`, a flush now, optionally waited for.
//! - [`tail`]: `kitty-sync tail`, following the daemon's feed.
//!
//! What the daemon's command line shares with ours (the socket call, `status`,
//! the clap definitions and docs) lives in `kitty_cli_common`, re-exported
//! here under its old names.

pub mod fallback;
pub mod login;
pub mod queue_cmd;
pub mod staleness;
pub mod sync;
pub mod tail;

pub use kitty_cli_common::client_cli as cli;
pub use kitty_cli_common::{block_on, docs, skew, status, transport, warn_once};

use std::path::PathBuf;
use std::time::Duration;

use hyper::{Method, StatusCode};
use kitty_proto::api::{
    DeadView, EmitResponse, ErrorBody, ErrorCode, QueueView, Requeued, Status, SyncTriggered,
};
use kitty_proto::home::{Home, HomeError};
use kitty_proto::request::parse_one;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

pub use transport::TransportError;

/// How long the daemon gets to answer an emit before the client queues the
/// event itself.
pub const DAEMON_DEADLINE: Duration = Duration::from_millis(600);
/// The whole emit, fallback included, aims to finish within this.
pub const EMIT_BUDGET: Duration = Duration::from_millis(950);

/// Which way the event became durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryPath {
    /// The daemon committed it.
    Daemon,
    /// No daemon ran; the client committed it to queue.db itself.
    Direct,
    /// A daemon runs but did not answer; it will queue it from the spool.
    Spool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Emitted {
    pub event_id: String,
    /// `None` when spooled: the daemon stamps it later.
    pub lamport_clock: Option<u64>,
    pub path: DeliveryPath,
    pub duplicate: bool,
    /// The daemon's delivery-health hint (path `daemon`, from a daemon that sends one).
    #[serde(skip)]
    pub health: Option<kitty_proto::api::DeliveryHealth>,
    /// Why the daemon did not take it (paths `direct` and `spool`). The
    /// binary turns this into at most one warning an hour ([`staleness`]).
    #[serde(skip)]
    pub note: Option<String>,
    /// The protocol and version the daemon answered with (path `daemon`).
    #[serde(skip)]
    pub daemon: Option<(u32, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// The event breaks a rule; nothing was stored.
    #[error("{}", .0.message)]
    Invalid(Box<ErrorBody>),
    #[error("{0}")]
    QueueFull(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Failed(String),
    /// The event could not be queued here: `what` failed.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Spool(#[from] kitty_store::spool::SpoolError),
    #[error("the daemon's answer is unreadable")]
    Unreadable(#[source] serde_json::Error),
}

impl EmitError {
    /// The exit status of `kitty-sync emit` (sysexits.h).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Invalid(_) => 65,   // EX_DATAERR
            Self::QueueFull(_) => 75, // EX_TEMPFAIL
            Self::Forbidden(_) => 77, // EX_NOPERM
            Self::Failed(_) | Self::Io { .. } | Self::Spool(_) | Self::Unreadable(_) => 1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    home: Home,
    socket: PathBuf,
    deadline: Duration,
}

impl Client {
    pub fn new(home: Home, socket: PathBuf) -> Self {
        Self {
            home,
            socket,
            deadline: DAEMON_DEADLINE,
        }
    }

    /// `SPEC_KITTY_HOME` / `KITTY_SYNCD_SOCKET` as the daemon reads them.
    pub fn from_env() -> Result<Self, HomeError> {
        let home = Home::from_env()?;
        let socket = home.socket_path()?;
        Ok(Self::new(home, socket))
    }

    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    pub fn home(&self) -> &Home {
        &self.home
    }

    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// Emits one event, given as JSON text: a draft (the daemon stamps it) or
    /// a complete envelope (relayed unchanged). A draft without an event_id
    /// gets one here, so that a retry after a timeout leaves a single row.
    pub async fn emit(&self, event_json: &str) -> Result<Emitted, EmitError> {
        let started = std::time::Instant::now();
        let text = with_event_id(event_json);
        let answer = transport::call(
            &self.socket,
            Method::POST,
            "/v1/events",
            Some(text.clone().into_bytes()),
            self.deadline,
        )
        .await;
        let why = match answer {
            Ok(a) if a.status == StatusCode::ACCEPTED => return accepted(&a.body),
            Ok(a) if a.status.is_client_error() || a.status == StatusCode::INSUFFICIENT_STORAGE => {
                return Err(refused(a.status, &a.body));
            }
            Ok(a) => format!("the daemon answered {}", a.status),
            // Someone else serves our socket: a sign of an attack, said every
            // time, not folded into the hourly delivery warning.
            Err(e @ transport::TransportError::ForeignPeer { .. }) => {
                eprintln!("kitty-sync: warning: {e}; not sent there");
                e.to_string()
            }
            Err(e) => kitty_cli_common::error_chain(&e),
        };
        self.fall_back(&text, &why, started + EMIT_BUDGET)
            .await
            .map_err(|e| match e {
                // Say why no daemon of ours took it, not only why we will not queue it.
                EmitError::Forbidden(m) => EmitError::Forbidden(format!("{why}; {m}")),
                e => e,
            })
    }

    /// Queues the event without asking the daemon, directly or in the spool
    /// by the same rules as [`Client::emit`]'s fallback: for a caller that
    /// already asked it and got no usable answer (`why`), such as the Python
    /// package, so that one emit does not wait for the daemon twice.
    pub async fn emit_without_daemon(
        &self,
        event_json: &str,
        why: &str,
    ) -> Result<Emitted, EmitError> {
        let started = std::time::Instant::now();
        let text = with_event_id(event_json);
        self.fall_back(&text, why, started + EMIT_BUDGET).await
    }

    async fn fall_back(
        &self,
        text: &str,
        why: &str,
        deadline: std::time::Instant,
    ) -> Result<Emitted, EmitError> {
        let raw: &RawValue = serde_json::from_str(text).map_err(|e| {
            EmitError::Invalid(Box::new(error_body(
                ErrorCode::InvalidJson,
                format!("the event is not valid JSON: {e}"),
                None,
            )))
        })?;
        // The daemon's own limit: what it would refuse is not queued behind its back.
        if text.len() > kitty_proto::MAX_BODY_BYTES {
            return Err(EmitError::Invalid(Box::new(error_body(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the event is {} bytes; the limit is {}",
                    text.len(),
                    kitty_proto::MAX_BODY_BYTES
                ),
                None,
            ))));
        }
        let submission = parse_one(raw).map_err(|v| {
            EmitError::Invalid(Box::new(ErrorBody {
                field: Some(v.field.clone()),
                rule: Some(v.rule.clone()),
                ..error_body(ErrorCode::InvalidEvent, v.to_string(), None)
            }))
        })?;
        let event_id = submission.event_id().unwrap_or_default().to_owned();
        match fallback::queue(&self.home, raw, submission, deadline).await? {
            fallback::Fallback::Direct(a) => Ok(Emitted {
                event_id: a.event_id,
                lamport_clock: Some(a.lamport_clock),
                path: DeliveryPath::Direct,
                duplicate: a.duplicate,
                health: None,
                note: Some(why.to_owned()),
                daemon: None,
            }),
            fallback::Fallback::Spooled(direct_failed) => {
                let also = direct_failed
                    .map(|e| format!("; queue.db: {e}"))
                    .unwrap_or_default();
                Ok(Emitted {
                    event_id,
                    lamport_clock: None,
                    path: DeliveryPath::Spool,
                    duplicate: false,
                    health: None,
                    note: Some(format!("{why}{also}")),
                    daemon: None,
                })
            }
        }
    }

    /// `GET /v1/status` of a running daemon.
    pub async fn status(&self) -> Result<Status, TransportError> {
        self.get_json("/v1/status").await
    }

    /// `GET /v1/queue?limit=N`: the oldest queued events.
    pub async fn queue(&self, limit: u32) -> Result<QueueView, TransportError> {
        self.get_json(&format!("/v1/queue?limit={limit}")).await
    }

    /// `POST /v1/sync`: asks the daemon to flush the queue to the server now.
    pub async fn sync(&self) -> Result<SyncTriggered, TransportError> {
        self.post_json("/v1/sync", &Value::Object(Map::new())).await
    }

    /// `GET /v1/dead?limit=N`: events the server rejected five times.
    pub async fn dead(&self, limit: u32) -> Result<DeadView, TransportError> {
        self.get_json(&format!("/v1/dead?limit={limit}")).await
    }

    /// `POST /v1/dead/retry`: puts every dead letter back into the queue.
    pub async fn retry_dead(&self) -> Result<Requeued, TransportError> {
        self.post_json("/v1/dead/retry", &Value::Object(Map::new()))
            .await
    }

    /// A `GET` of the socket API whose success answer is `T`.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, TransportError> {
        self.call_json(Method::GET, path, None).await
    }

    /// A `POST` of `body` to the socket API whose success answer is `T`.
    pub async fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<T, TransportError> {
        self.call_json(Method::POST, path, Some(body.to_string().into_bytes()))
            .await
    }

    async fn call_json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, TransportError> {
        transport::call_json(&self.socket, method, path, body, self.deadline).await
    }
}

/// Adds a fresh event_id to a draft that has none (absent or `null`), so that
/// the id printed is the id queued, whichever way the event goes; anything
/// else is left as is. A draft that repeats a key is left as is too: rewriting
/// it would quietly keep one of the values, and it is refused whole.
fn with_event_id(event_json: &str) -> String {
    // One pass both refuses a repeated key and reads the object.
    match kitty_proto::unique_keys::parse_unique(event_json) {
        Ok(Value::Object(mut obj))
            if !obj.contains_key("lamport_clock")
                && obj.get("event_id").is_none_or(Value::is_null) =>
        {
            obj.insert(
                "event_id".into(),
                Value::String(kitty_store::ids::new_ulid().to_string()),
            );
            Value::Object(obj).to_string()
        }
        _ => event_json.to_owned(),
    }
}

fn accepted(body: &[u8]) -> Result<Emitted, EmitError> {
    let res: EmitResponse = serde_json::from_slice(body).map_err(EmitError::Unreadable)?;
    let a = res
        .events
        .into_iter()
        .next()
        .ok_or_else(|| EmitError::Failed("the daemon accepted no event".into()))?;
    Ok(Emitted {
        event_id: a.event_id,
        lamport_clock: Some(a.lamport_clock),
        path: DeliveryPath::Daemon,
        duplicate: a.duplicate,
        health: res.health,
        note: None,
        daemon: Some((res.protocol, res.version)),
    })
}

fn refused(status: StatusCode, body: &[u8]) -> EmitError {
    let err = serde_json::from_slice::<ErrorBody>(body).unwrap_or_else(|_| {
        error_body(
            ErrorCode::Unknown,
            format!(
                "the daemon answered {status}: {}",
                String::from_utf8_lossy(body)
            ),
            None,
        )
    });
    match status {
        StatusCode::INSUFFICIENT_STORAGE => EmitError::QueueFull(err.message),
        StatusCode::FORBIDDEN => EmitError::Forbidden(err.message),
        StatusCode::BAD_REQUEST
        | StatusCode::PAYLOAD_TOO_LARGE
        | StatusCode::UNPROCESSABLE_ENTITY => EmitError::Invalid(Box::new(err)),
        _ => EmitError::Failed(err.message),
    }
}

fn error_body(code: ErrorCode, message: String, index: Option<usize>) -> ErrorBody {
    ErrorBody {
        error: code,
        message,
        field: None,
        rule: None,
        index,
        version: kitty_proto::VERSION.into(),
    }
}
