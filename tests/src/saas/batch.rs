//! `POST /api/v1/events/batch/` (CONTRACT.md §3).
//!
//! The checks run in this order, so each fault and refusal can be tested on
//! its own: injected 500, injected 429, bearer token (401), rate limit (429),
//! `X-Team-Slug` (403), body (400), batch size (400), tenant (403), then the
//! events one by one.
//!
//! Tenancy: the token's team is the only team a batch may name. If the
//! `X-Team-Slug` header or the `team_slug` of *any* event differs from it,
//! the whole batch is refused with 403 and nothing is stored. A partial
//! answer would let a misconfigured daemon deliver half a batch into the
//! wrong place before anyone noticed; refusing whole makes it fail loudly.
//! `local` gets no special treatment: the daemon rewrites it to the session's
//! team before sending, so a `local` arriving here is a bug to surface (a user
//! without a team has `local` as their tenant, so for them it is right).

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::CONTENT_ENCODING;
use flate2::read::MultiGzDecoder;
use kitty_proto::MAX_EVENTS_PER_REQUEST;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::AppState;
use super::auth::TokenKind;
use super::events::{self, Checked, Refusal};
use super::faults::roll;
use super::http::ApiError;

/// The most we read of a body, before and after gunzip; past it the request
/// is refused, so a gzip bomb costs at most this much memory.
pub const MAX_BODY_BYTES: usize = 16 << 20;

#[derive(Deserialize)]
struct BatchBody<'a> {
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
}

pub(crate) async fn batch(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    st.counters.batch_requests.bump();
    let faults = st.faults();
    if faults.batch_hang_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.batch_hang_ms)).await;
    }
    if roll(faults.batch_500_fraction) {
        st.counters.faults_500.bump();
        return Err(ApiError::internal(
            "Internal Server Error (fault batch_500_fraction)",
        ));
    }
    if roll(faults.batch_429_fraction) {
        st.counters.faults_429.bump();
        return Err(ApiError::too_many(faults.retry_after_secs).details("fault batch_429_fraction"));
    }
    let claims = st.keys.bearer(&headers, TokenKind::Access)?;
    if let Some(wait) = st.rate_window(&claims.sub, faults.rate_limit_batch_secs) {
        st.counters.rate_limited.bump();
        return Err(ApiError::too_many(wait).details(format!(
            "at most 1 batch per {} s",
            faults.rate_limit_batch_secs
        )));
    }
    let tenant = claims.team.as_str();
    if let Some(h) = headers.get("x-team-slug") {
        let named = String::from_utf8_lossy(h.as_bytes());
        if named != tenant {
            return Err(st.forbid(format!(
                "X-Team-Slug {named:?} is not the token's team {tenant:?}"
            )));
        }
    }

    let body = read_body(&headers, body).await?;
    let parsed: BatchBody<'_> = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request("Invalid batch body: expected {\"events\": [...]}")
            .details(e.to_string())
    })?;
    if parsed.events.len() > MAX_EVENTS_PER_REQUEST {
        return Err(ApiError::bad_request(format!(
            "Max {MAX_EVENTS_PER_REQUEST} events per batch"
        ))
        .details(format!("got {}", parsed.events.len())));
    }
    if parsed.events.is_empty() {
        return Err(ApiError::bad_request("No events provided"));
    }

    let objects: Vec<(&str, Result<_, Refusal>)> = parsed
        .events
        .iter()
        .map(|raw| (raw.get(), events::parse_object(raw.get())))
        .collect();
    for fields in objects.iter().filter_map(|(_, o)| o.as_ref().ok()) {
        if let Some(other) = events::foreign_team(fields, tenant) {
            let id = events::event_id_of(fields).unwrap_or_default();
            return Err(st.forbid(format!(
                "event {id} names team {other:?}; the token is for team {tenant:?}"
            )));
        }
    }

    // Request order is kept in `outcomes`; the checked events go to the store
    // together and their answers are filled in after.
    let mut checked: Vec<Checked> = Vec::new();
    let outcomes: Vec<Result<usize, Refusal>> = objects
        .into_iter()
        .map(|(raw, fields)| {
            let c = events::check(raw, fields?)?;
            checked.push(c);
            Ok(checked.len() - 1)
        })
        .collect();
    let fresh = st.accept(tenant, &checked, "batch", None).await?;

    let mut results = Vec::with_capacity(outcomes.len());
    for outcome in outcomes {
        results.push(match outcome {
            Ok(i) => json!({
                "event_id": checked[i].envelope.event_id,
                "status": if fresh[i] { "success" } else { "duplicate" },
            }),
            Err(r) => {
                st.counters.rejected.bump();
                json!({ "event_id": r.event_id, "status": "error", "error_message": r.message })
            }
        });
    }
    st.counters.batches.bump();
    st.counters.batch_events.add(results.len() as u64);
    tracing::debug!(user = %claims.sub, events = results.len(), "batch");
    if faults.empty_results {
        results.clear();
    }
    Ok(Json(json!({ "results": results })))
}

/// The body, gunzipped when `Content-Encoding: gzip` says so, at most
/// [`MAX_BODY_BYTES`] either way.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let raw = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|e| {
            ApiError::bad_request(format!("Body unreadable or over {MAX_BODY_BYTES} bytes"))
                .details(e.to_string())
        })?;
    let encoding = headers.get(CONTENT_ENCODING).map(|v| {
        String::from_utf8_lossy(v.as_bytes())
            .trim()
            .to_ascii_lowercase()
    });
    match encoding.as_deref() {
        None | Some("" | "identity") => Ok(raw),
        Some("gzip" | "x-gzip") => {
            let mut out = Vec::new();
            MultiGzDecoder::new(&raw[..])
                .take(MAX_BODY_BYTES as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| {
                    ApiError::bad_request("Body is not valid gzip").details(e.to_string())
                })?;
            if out.len() > MAX_BODY_BYTES {
                return Err(ApiError::bad_request(format!(
                    "Decompressed body over {MAX_BODY_BYTES} bytes"
                )));
            }
            Ok(out.into())
        }
        Some(other) => Err(ApiError::bad_request(format!(
            "Unsupported Content-Encoding {other:?}"
        ))),
    }
}

impl AppState {
    /// With a limit of `secs`, records this batch and answers None, or answers
    /// the whole seconds left before the user may send the next one.
    fn rate_window(&self, user: &str, secs: u64) -> Option<u64> {
        if secs == 0 {
            return None;
        }
        let now = Instant::now();
        let window = Duration::from_secs(secs);
        let mut last = self.last_batch.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(prev) = last.get(user)
            && let left = window.saturating_sub(now.duration_since(*prev))
            && !left.is_zero()
        {
            return Some(left.as_secs_f64().ceil() as u64);
        }
        last.insert(user.to_owned(), now);
        None
    }

    fn forbid(&self, why: String) -> ApiError {
        self.counters.forbidden.bump();
        ApiError::forbidden("Cross-tenant request refused").details(why)
    }
}
