//! `/admin/`: what tests read and steer. Unprotected on purpose: this is a
//! loopback dev server, and it binds only where `--listen` says.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::AppState;
use super::faults::Faults;
use super::http::{ApiError, json_body};

#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn bump(&self) {
        self.add(1);
    }

    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn clear(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

/// One list of names makes both the live cells and the snapshot, so a counter
/// cannot be added to one and forgotten in the other.
macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        #[derive(Debug, Default)]
        pub(crate) struct CounterCells {
            $(pub $name: Counter,)*
        }

        /// `GET /admin/counters`. Everything but the last two counts since the
        /// start or the last `POST /admin/reset`.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct Counters {
            $($(#[$doc])* pub $name: u64,)*
            /// Rows in the event store: with dedup working, equals `events_stored`.
            pub unique_event_ids: u64,
            /// WebSocket connections open now.
            pub ws_connected: u64,
        }

        impl CounterCells {
            pub(crate) fn snapshot(&self, unique_event_ids: u64, ws_connected: u64) -> Counters {
                Counters { $($name: self.$name.get(),)* unique_event_ids, ws_connected }
            }

            pub(crate) fn clear(&self) {
                $(self.$name.clear();)*
            }
        }
    };
}

counters! {
    /// Events newly stored, by batch or WebSocket.
    events_stored,
    /// Events whose event_id was already stored (answered `duplicate`).
    duplicates_seen,
    /// Events refused one by one: a broken envelope, or over the WebSocket another team's.
    rejected,
    /// Batches refused 403, and WebSocket envelopes of another team.
    forbidden,
    /// Every POST to the batch endpoint, faulted and refused ones included.
    batch_requests,
    /// Batches answered 200.
    batches,
    /// Events in the batches answered 200.
    batch_events,
    /// Batch requests answered 500 by the batch_500_fraction fault.
    faults_500,
    /// Batch requests answered 429 by the batch_429_fraction fault.
    faults_429,
    /// Batch requests answered 429 by rate_limit_batch_secs.
    rate_limited,
    /// Successful logins.
    logins,
    /// Logins refused for bad credentials.
    bad_logins,
    /// Successful refreshes.
    refreshes,
    /// Refreshes refused (expired, reused, bad, or the refuse_refresh fault).
    refresh_refused,
    /// ws tokens issued.
    ws_tokens,
    /// WebSocket upgrades accepted.
    ws_connections,
    /// Frames received over WebSockets, pongs included.
    ws_frames_in,
    /// Frames received that were not control messages (envelopes, valid or not).
    ws_events,
    /// Pings sent.
    ws_pings,
    /// Pongs that echoed the timestamp of a ping we sent.
    ws_pongs,
    /// Pongs that echoed no timestamp we sent.
    ws_bad_pongs,
    /// `{"type":"event"}` frames sent to other connections.
    ws_broadcasts,
    /// Every request to an `/api/v1/` route or the WebSocket upgrade, before
    /// any check: what reached this origin at all.
    api_requests,
    /// Frames sent by the ws_send_on_connect fault.
    ws_forged_frames,
}

pub(crate) async fn counters(State(st): State<Arc<AppState>>) -> Result<Json<Counters>, ApiError> {
    Ok(Json(st.counters().await?))
}

pub(crate) async fn get_faults(State(st): State<Arc<AppState>>) -> Json<Faults> {
    Json(st.faults())
}

/// Takes any subset of the keys `GET` shows; answers the switches now in force.
pub(crate) async fn post_faults(
    State(st): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<Faults>, ApiError> {
    let patch: Map<String, Value> = json_body(&body)?;
    let mut faults = st.faults.write().unwrap_or_else(|p| p.into_inner());
    let next = faults
        .merged(patch)
        .map_err(|e| ApiError::bad_request("Invalid faults").details(e))?;
    tracing::info!(faults = ?next, "faults changed");
    *faults = next.clone();
    Ok(Json(next))
}

/// Back to the switches the server started with.
pub(crate) async fn delete_faults(State(st): State<Arc<AppState>>) -> Json<Faults> {
    let initial = st.initial_faults.clone();
    *st.faults.write().unwrap_or_else(|p| p.into_inner()) = initial.clone();
    Json(initial)
}

#[derive(Deserialize)]
pub(crate) struct EventsQuery {
    limit: Option<u64>,
    #[serde(default)]
    offset: u64,
    team: Option<String>,
}

/// `{"total": N, "events": [envelope, ...]}` in arrival order, each envelope
/// byte for byte as received; `total` counts all that match, past `limit` too.
pub(crate) async fn events(
    State(st): State<Arc<AppState>>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    let team = q.team.as_deref();
    let rows = st.store.events(team, q.offset, q.limit).await?;
    let total = st.store.count(team).await?;
    let events = rows
        .into_iter()
        .map(RawValue::from_string)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::internal(format!("a stored envelope is not JSON: {e}")))?;
    Ok(Json(json!({ "total": total, "events": events })))
}

/// Clears events, counters and rate-limit windows; users, sessions, faults
/// and open WebSockets stay.
pub(crate) async fn reset(State(st): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    st.reset().await?;
    Ok(Json(json!({ "ok": true })))
}

/// Closes every open WebSocket (code 1012, service restart); clients may
/// reconnect at once.
pub(crate) async fn drop_websockets(State(st): State<Arc<AppState>>) -> Json<Value> {
    let open = st.hub.connected();
    st.hub.drop_all();
    tracing::info!(open, "dropping every WebSocket");
    Json(json!({ "dropped": open }))
}
