//! The socket API: axum's router on a Unix socket, served by [`crate::accept`]
//! (which checks every connection's peer uid before reading from it, caps
//! the connections and times them out). Every answer carries the daemon's
//! version.
//!
//! - `POST /v1/events`: one event or an array of up to 1,000 → 202 once committed.
//! - `GET /v1/status`, `GET /v1/queue?limit=N`, `GET /v1/health`.
//! - `GET /v1/feed`: what happens, as NDJSON (see [`crate::feed`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kitty_proto::api::{
    EmitResponse, ErrorBody, ErrorCode, Health, PROTOCOL, PROTOCOL_HEADER, QueueView,
    VERSION_HEADER,
};
use kitty_proto::home::Home;
use kitty_proto::{MAX_BODY_BYTES, VERSION, parse_events_request};
use kitty_store::{CommitError, Job};
use sqlx::SqlitePool;
use tokio::net::UnixListener;
use tokio::sync::watch;

use crate::settings::SettingsRx;
use crate::writer::WriterHandle;

/// What every handler may read: a handle, since axum clones the state for
/// every request (a clone of the fields was a dozen allocations per event).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The fields behind [`AppState`].
pub struct Shared {
    pub home: Home,
    pub socket: PathBuf,
    pub writer: WriterHandle,
    pub readers: SqlitePool,
    pub settings: SettingsRx,
    pub clock: watch::Receiver<u64>,
    pub node_id: String,
    pub started: Instant,
    pub uplink: crate::uplink::UplinkShared,
    pub health: crate::health::Cache,
}

/// The connecting process, from the kernel (SO_PEERCRED), not from anything it says.
#[derive(Clone, Debug)]
pub struct Peer {
    pub uid: Option<u32>,
    pub pid: Option<i32>,
}

/// The longest a request body may take to arrive.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/events", post(post_events))
        .route("/v1/status", get(get_status))
        .route("/v1/queue", get(get_queue))
        .route("/v1/health", get(get_health))
        .route("/v1/sync", post(post_sync))
        .route("/v1/dead", get(get_dead))
        .route("/v1/dead/retry", post(post_dead_retry))
        .route("/v1/feed", get(crate::feed::get_feed))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "no such endpoint; see /v1/health".into(),
            )
        })
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::MethodNotAllowed,
                "method not allowed here".into(),
            )
        })
        .with_state(state)
}

/// Serves until `shutdown` resolves, then finishes the requests in flight.
/// With a guard, a deleted socket is bound again; losing the instance lock
/// ends the serving with an error.
pub async fn serve(
    listener: UnixListener,
    state: AppState,
    guard: Option<crate::socket_guard::SocketGuard>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::accept::serve(listener, router(state), guard, shutdown).await
}

/// Every answer, whichever route (or fallback) gave it, names the daemon's
/// version and protocol. Done by the connection's service
/// (`accept::serve_one`) rather than an axum middleware: a `from_fn` layer
/// boxes a future per request, and two of them were 10% of the daemon's CPU
/// at 64 clients (BENCHMARKS.md, "Issue 10, third round").
pub fn name_the_version(res: &mut Response) {
    res.headers_mut()
        .insert(VERSION_HEADER, HeaderValue::from_static(VERSION));
    res.headers_mut()
        .insert(PROTOCOL_HEADER, HeaderValue::from(PROTOCOL));
}

/// The answer to a request from another user. Connections of other users are
/// refused at accept, before a byte is read; the connection's service checks
/// the peer again before each request, so that no change to accept can let
/// one reach a route.
pub fn forbidden() -> Response {
    error(
        StatusCode::FORBIDDEN,
        ErrorCode::Forbidden,
        "this daemon serves only the user that runs it".into(),
    )
}

pub fn error(status: StatusCode, code: ErrorCode, message: String) -> Response {
    let body = ErrorBody {
        error: code,
        message,
        field: None,
        rule: None,
        index: None,
        version: VERSION.into(),
    };
    (status, Json(body)).into_response()
}

async fn post_events(State(state): State<AppState>, req: Request) -> Response {
    // The body is dropped before the commit is waited for: hyper reads on
    // while a request is served (to see the peer hang up), and while any
    // request bytes are alive its read buffer is shared, so each such read
    // allocated a fresh 8 KiB buffer.
    let parsed = match read_body(req.into_body()).await {
        Ok(body) => parse_events_request(&body),
        Err(res) => return res,
    };
    let events = match parsed {
        Ok(events) => events,
        Err(e) => {
            let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            let (field, rule, index) = match &e {
                kitty_proto::RequestError::Invalid { index, violation } => (
                    Some(violation.field.clone()),
                    Some(violation.rule.clone()),
                    *index,
                ),
                _ => (None, None, None),
            };
            // The code and the rule, not the message: a JSON error can quote the body.
            tracing::debug!(
                status = status.as_u16(),
                error = %e.code(),
                field = field.as_deref(),
                rule = rule.as_deref(),
                index,
                "rejected a request"
            );
            let body = ErrorBody {
                error: e.code(),
                message: e.to_string(),
                field,
                rule,
                index,
                version: VERSION.into(),
            };
            return (status, Json(body)).into_response();
        }
    };
    match state
        .writer
        .submit(Job {
            events,
            made_at: None,
        })
        .await
    {
        Ok(accepted) => {
            for a in &accepted {
                tracing::debug!(event_id = %a.event_id, lamport = a.lamport_clock, duplicate = a.duplicate, "queued");
            }
            let body = EmitResponse {
                status: "queued".into(),
                events: accepted,
                version: VERSION.into(),
                protocol: PROTOCOL,
                health: crate::health::hint(&state).await,
            };
            (StatusCode::ACCEPTED, Json(body)).into_response()
        }
        Err(e) => commit_refused(e),
    }
}

/// How a refused commit is answered, for an emit and a requeue alike.
fn commit_refused(e: CommitError) -> Response {
    match e {
        CommitError::QueueFull { .. } => error(
            StatusCode::INSUFFICIENT_STORAGE,
            ErrorCode::QueueFull,
            e.to_string(),
        ),
        // Permanent: no value is left to issue, so falling back cannot help.
        CommitError::ClockExhausted { .. } => error(
            StatusCode::CONFLICT,
            ErrorCode::ClockExhausted,
            e.to_string(),
        ),
        CommitError::Storage(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::StorageError,
            e.to_string(),
        ),
    }
}

/// Reads at most [`MAX_BODY_BYTES`]; a larger body is refused without reading it all.
async fn read_body(body: Body) -> Result<Bytes, Response> {
    let Ok(read) =
        tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY_BYTES)).await
    else {
        return Err(error(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::RequestTimeout,
            format!(
                "the request body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            ),
        ));
    };
    match read {
        Ok(b) => Ok(b),
        Err(e) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            Err(if too_large {
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::PayloadTooLarge,
                    format!("request body is over the limit of {MAX_BODY_BYTES} bytes"),
                )
            } else {
                error(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::BadRequest,
                    format!("cannot read the request body: {e}"),
                )
            })
        }
    }
}

async fn get_status(State(state): State<AppState>) -> Response {
    json_or_500(crate::status::report(&state).await)
}

const DEFAULT_QUEUE_LIMIT: u32 = 100;
const MAX_QUEUE_LIMIT: u32 = 10_000;

/// `?limit=N` (the only parameter), 1 to 10,000, default 100; the error is
/// the message of a 400.
fn limit(q: &HashMap<String, String>) -> Result<u32, String> {
    if let Some(unknown) = q.keys().find(|k| k.as_str() != "limit") {
        return Err(format!(
            "unknown parameter {unknown:?}; only limit is accepted"
        ));
    }
    match q.get("limit").map(|s| s.parse::<u32>()) {
        None => Ok(DEFAULT_QUEUE_LIMIT),
        Some(Ok(n)) if (1..=MAX_QUEUE_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(format!(
            "limit must be an integer from 1 to {MAX_QUEUE_LIMIT}"
        )),
    }
}

/// A pooled read connection (WAL: reads never wait for the writer).
pub(crate) async fn reader(
    state: &AppState,
) -> Result<sqlx::pool::PoolConnection<sqlx::Sqlite>, kitty_store::StoreError> {
    state
        .readers
        .acquire()
        .await
        .map_err(|source| kitty_store::StoreError::Db {
            what: "cannot read queue.db",
            source,
        })
}

async fn post_sync(State(state): State<AppState>) -> Response {
    state.uplink.sync_now.notify_one();
    // The writer's count, not a COUNT(*) over every row.
    let depth = state.writer.current_depth().await.unwrap_or(0);
    let body = kitty_proto::api::SyncTriggered {
        triggered: true,
        depth,
        version: VERSION.into(),
    };
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

async fn get_dead(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let limit = match limit(&q) {
        Ok(l) => l,
        Err(msg) => return error(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, msg),
    };
    let result = async {
        let mut conn = reader(&state).await?;
        let count = kitty_store::outbox::dead_count(&mut conn).await?;
        let events = kitty_store::outbox::dead_list(&mut conn, limit).await?;
        Ok::<_, kitty_store::StoreError>(kitty_proto::api::DeadView {
            count,
            events,
            version: VERSION.into(),
        })
    }
    .await;
    json_or_500(result)
}

async fn post_dead_retry(State(state): State<AppState>) -> Response {
    match state.writer.retry_dead().await {
        Ok(requeued) => {
            if requeued > 0 {
                tracing::info!(requeued, "dead letters put back into the queue");
                state.uplink.sync_now.notify_one();
            }
            Json(kitty_proto::api::Requeued {
                requeued,
                version: VERSION.into(),
            })
            .into_response()
        }
        Err(e) => commit_refused(e),
    }
}

async fn get_queue(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let limit = match limit(&q) {
        Ok(l) => l,
        Err(msg) => return error(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, msg),
    };
    let result = async {
        let depth = state.writer.current_depth().await?;
        let mut conn = reader(&state).await?;
        let events = kitty_store::queue::oldest(&mut conn, limit).await?;
        Ok::<_, kitty_store::StoreError>(QueueView {
            depth,
            events,
            version: VERSION.into(),
        })
    }
    .await;
    json_or_500(result)
}

/// The value as JSON, or a 500 that says what storage failed.
fn json_or_500<T: serde::Serialize>(result: Result<T, kitty_store::StoreError>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::StorageError,
            e.to_string(),
        ),
    }
}

/// Healthy = the socket answers, the writer still takes events, and its last
/// commit did not fail (a full disk, a lost clock.lock): the watchdog probes
/// this, so a daemon that cannot commit stops being reported alive.
async fn get_health(State(state): State<AppState>) -> Response {
    let error = if state.writer.is_alive() {
        state
            .writer
            .health()
            .last_error
            .map(|e| format!("the last commit failed: {e}"))
    } else {
        Some("the writer has stopped".into())
    };
    let status = if error.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Health {
        ok: error.is_none(),
        pid: std::process::id(),
        version: VERSION.into(),
        protocol: PROTOCOL,
        error,
    };
    (status, Json(body)).into_response()
}
