//! `GET /v1/feed[?since_start=true]`: the feed as NDJSON in a chunked
//! response, one JSON object per line, for `kitty-sync tail` and for
//! `curl -N --unix-socket <socket> http://localhost/v1/feed`.
//!
//! The first line is `hello` (version, protocol, pid, connection state); with
//! `since_start`, the kept history follows (after a `missed` line when some of
//! it is gone), then live lines. The response ends with `stopping` when the
//! daemon shuts down.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use kitty_proto::VERSION;
use kitty_proto::api::{FeedEvent, FeedLine, PROTOCOL};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, watch};

use crate::server::{AppState, error};

/// The most lines one chunk carries when many are waiting.
const CHUNK_LINES: usize = 256;

pub async fn get_feed(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let since_start = match since_start(&q) {
        Ok(b) => b,
        Err(msg) => return error(StatusCode::BAD_REQUEST, "bad_request", msg),
    };
    let feed = state.uplink.feed.clone();
    let mut pending = VecDeque::new();
    pending.push_back(line(FeedEvent::Hello {
        version: VERSION.into(),
        protocol: PROTOCOL,
        pid: std::process::id(),
        state: state.uplink.snapshot().state,
    }));
    let sub = feed.subscribe(since_start);
    if sub.dropped > 0 {
        pending.push_back(line(FeedEvent::Missed {
            missed: sub.dropped,
        }));
    }
    pending.extend(sub.backlog);
    let reader = Reader {
        pending,
        live: sub.live,
        shutdown: feed.shutdown(),
        done: false,
    };
    let body = Body::from_stream(futures_util::stream::unfold(reader, |mut r| async move {
        let chunk = r.next_chunk().await?;
        Some((Ok::<_, Infallible>(chunk), r))
    }));
    (
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// `since_start` alone: absent, `false` or `0` is off; empty, `true` or `1` is on.
fn since_start(q: &HashMap<String, String>) -> Result<bool, String> {
    if let Some(unknown) = q.keys().find(|k| k.as_str() != "since_start") {
        return Err(format!(
            "unknown parameter {unknown:?}; only since_start is accepted"
        ));
    }
    match q.get("since_start").map(String::as_str) {
        None | Some("false" | "0") => Ok(false),
        Some("" | "true" | "1") => Ok(true),
        Some(_) => Err("since_start must be true or false".into()),
    }
}

fn line(event: FeedEvent) -> Arc<FeedLine> {
    Arc::new(FeedLine {
        at: kitty_proto::rules::format_utc(chrono::Utc::now()),
        event,
    })
}

/// One reader's position: lines to send, then the live ring.
struct Reader {
    pending: VecDeque<Arc<FeedLine>>,
    live: broadcast::Receiver<Arc<FeedLine>>,
    shutdown: Option<watch::Receiver<bool>>,
    done: bool,
}

impl Reader {
    /// The next chunk of lines; waits for one when none is pending. Only
    /// polled when the connection can take more, so a reader that does not
    /// read falls behind in the ring instead of holding anything up.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        if self.pending.is_empty() {
            let first = tokio::select! {
                r = self.live.recv() => r,
                () = stopped(&mut self.shutdown) => {
                    self.done = true;
                    return Some(encode([line(FeedEvent::Stopping)].iter()));
                }
            };
            match first {
                Ok(l) => self.pending.push_back(l),
                Err(RecvError::Lagged(n)) => self
                    .pending
                    .push_back(line(FeedEvent::Missed { missed: n })),
                Err(RecvError::Closed) => return None,
            }
            while self.pending.len() < CHUNK_LINES {
                match self.live.try_recv() {
                    Ok(l) => self.pending.push_back(l),
                    Err(TryRecvError::Lagged(n)) => self
                        .pending
                        .push_back(line(FeedEvent::Missed { missed: n })),
                    Err(_) => break,
                }
            }
        }
        let n = self.pending.len().min(CHUNK_LINES);
        Some(encode(self.pending.drain(..n).collect::<Vec<_>>().iter()))
    }
}

/// Resolves once the daemon shuts down (never, without a shutdown signal).
async fn stopped(shutdown: &mut Option<watch::Receiver<bool>>) {
    match shutdown {
        Some(rx) => {
            let _ = rx.wait_for(|stop| *stop).await;
        }
        None => std::future::pending().await,
    }
}

fn encode<'a>(lines: impl Iterator<Item = &'a Arc<FeedLine>>) -> Bytes {
    let mut buf = Vec::new();
    for l in lines {
        serde_json::to_writer(&mut buf, &**l).expect("a feed line always serialises");
        buf.push(b'\n');
    }
    Bytes::from(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn since_start_is_the_only_parameter() {
        assert_eq!(since_start(&q(&[])), Ok(false));
        assert_eq!(since_start(&q(&[("since_start", "")])), Ok(true));
        assert_eq!(since_start(&q(&[("since_start", "1")])), Ok(true));
        assert_eq!(since_start(&q(&[("since_start", "false")])), Ok(false));
        assert!(since_start(&q(&[("since_start", "yes")])).is_err());
        assert!(since_start(&q(&[("limit", "1")])).is_err());
    }
}
