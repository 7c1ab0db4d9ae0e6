//! Error answers and the pieces every `/api/v1/` route shares.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::header::{LOCATION, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;

/// An error answer: `{"error": ..., "details"?: ...}` as CONTRACT.md §3 gives for
/// 400, used for every status so clients have one shape to read.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub error: String,
    pub details: Option<String>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, error: impl Into<String>) -> Self {
        Self {
            status,
            error: error.into(),
            details: None,
            retry_after: None,
        }
    }

    pub(crate) fn bad_request(error: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error)
    }

    pub(crate) fn unauthorized(error: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, error)
    }

    pub(crate) fn forbidden(error: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, error)
    }

    pub(crate) fn internal(error: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, error)
    }

    pub(crate) fn too_many(retry_after_secs: u64) -> Self {
        Self {
            retry_after: Some(retry_after_secs),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "Request was throttled")
        }
    }

    pub(crate) fn details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(details.into());
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            // Warn, not error: most are injected faults, which a benchmark
            // may ask for thousands of times.
            tracing::warn!(status = %self.status, error = %self.error, "request failed");
        } else {
            tracing::debug!(
                status = %self.status,
                error = %self.error,
                details = ?self.details,
                "request refused"
            );
        }
        let mut body = json!({ "error": self.error });
        if let Some(d) = self.details {
            body["details"] = d.into();
        }
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Self::internal(format!("{e:#}"))
    }
}

/// Parses a JSON body by hand, so malformed input gets our 400 shape rather
/// than axum's plain-text rejection.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("Invalid JSON body").details(e.to_string()))
}

/// The `latency_ms` fault, in front of every API route.
pub(crate) async fn added_latency(
    State(st): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let ms = st.faults().latency_ms;
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    next.run(req).await
}

/// Counts every API request, then answers the `redirect` fault's routes with
/// a 307 before anything else looks at them.
pub(crate) async fn count_and_redirect(
    State(st): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    st.counters.api_requests.bump();
    let route = match req.uri().path() {
        "/api/v1/token/" => "token",
        "/api/v1/token/refresh/" => "refresh",
        "/api/v1/ws-token/" => "ws-token",
        "/api/v1/events/batch/" => "batch",
        _ => return next.run(req).await,
    };
    match redirect(&st, route, req.uri()) {
        Some(r) => r,
        None => next.run(req).await,
    }
}

/// The `redirect` fault's 307 for `route`, if it names one.
pub(crate) fn redirect(st: &AppState, route: &str, uri: &Uri) -> Option<Response> {
    let origin = st.faults().redirect.get(route)?.clone();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let location = format!("{}{path}", origin.trim_end_matches('/'));
    tracing::info!(route, %location, "redirecting (fault redirect)");
    let mut response = (StatusCode::TEMPORARY_REDIRECT, "").into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(LOCATION, v);
    }
    Some(response)
}
