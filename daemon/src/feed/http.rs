//! `GET /v1/feed[?since_start=true | ?after=SEQ]`: the feed as NDJSON in a
//! chunked response, one JSON object per line, for `kitty-sync tail` and for
//! `curl -N --unix-socket <socket> http://localhost/v1/feed`.
//!
//! The first line is `hello` (version, protocol, pid, connection state, the
//! last seq so far). With `since_start` (or `after`), the kept history from
//! there follows, after a `missed` line when some of it is gone; then live
//! lines. A response lasts a little less than a connection may
//! ([`crate::accept::MAX_LIFETIME`]) and ends with `reconnect`: asking again
//! with `after=<last seq read>` goes on without a gap. It ends with `stopping`
//! when the daemon shuts down, after every line published before.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use kitty_proto::VERSION;
use kitty_proto::api::{ErrorCode, FeedEvent, FeedLine, PROTOCOL};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use crate::server::{AppState, error};

/// The most lines one chunk carries when many are waiting.
const CHUNK_LINES: usize = 256;
/// How long one response lasts: ended by us, with `reconnect`, well before
/// the accept loop would cut the connection.
const RESPONSE_LIFETIME: Duration =
    crate::accept::MAX_LIFETIME.saturating_sub(Duration::from_secs(10));

pub async fn get_feed(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let after = match start_from(&q) {
        Ok(a) => a,
        Err(msg) => return error(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, msg),
    };
    let feed = state.uplink.feed.clone();
    let sub = feed.subscribe(after);
    let mut pending = VecDeque::new();
    pending.push_back(line(FeedEvent::Hello {
        version: VERSION.into(),
        protocol: PROTOCOL,
        pid: std::process::id(),
        state: state.uplink.snapshot().state,
        last_seq: sub.last_seq,
    }));
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
        ends_at: Instant::now() + RESPONSE_LIFETIME,
        last: false,
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

/// Where the reader starts: `since_start` (absent, `false` or `0` is off;
/// empty, `true` or `1` is on) is `after=0`; `after=SEQ` resumes; neither
/// is live only.
fn start_from(q: &HashMap<String, String>) -> Result<Option<u64>, String> {
    if let Some(unknown) = q
        .keys()
        .find(|k| !matches!(k.as_str(), "since_start" | "after"))
    {
        return Err(format!(
            "unknown parameter {unknown:?}; since_start and after are accepted"
        ));
    }
    let since_start = match q.get("since_start").map(String::as_str) {
        None | Some("false" | "0") => false,
        Some("" | "true" | "1") => true,
        Some(_) => return Err("since_start must be true or false".into()),
    };
    let after = match q.get("after") {
        None => None,
        Some(s) => Some(
            s.parse::<u64>()
                .map_err(|_| "after must be a seq: an integer from 0".to_owned())?,
        ),
    };
    match (since_start, after) {
        (true, Some(_)) => Err("since_start and after exclude each other".into()),
        (true, None) => Ok(Some(0)),
        (false, a) => Ok(a),
    }
}

fn line(event: FeedEvent) -> Arc<FeedLine> {
    Arc::new(FeedLine {
        at: kitty_proto::rules::format_utc(chrono::Utc::now()),
        seq: None,
        event,
    })
}

/// One reader's position: lines to send, then the live ring.
struct Reader {
    pending: VecDeque<Arc<FeedLine>>,
    live: broadcast::Receiver<Arc<FeedLine>>,
    shutdown: Option<watch::Receiver<bool>>,
    ends_at: Instant,
    /// The closing line (`reconnect` or `stopping`) is queued.
    last: bool,
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
            tokio::select! {
                biased;
                () = stopped(&mut self.shutdown) => self.close(FeedEvent::Stopping),
                r = self.live.recv() => {
                    match r {
                        Ok(l) => self.pending.push_back(l),
                        Err(RecvError::Lagged(n)) => self.missed(n),
                        Err(RecvError::Closed) => return None,
                    }
                    self.take_ready(CHUNK_LINES);
                }
                () = tokio::time::sleep_until(self.ends_at) => self.close(FeedEvent::Reconnect),
            }
        }
        let n = self.pending.len().min(CHUNK_LINES);
        let chunk = encode(self.pending.drain(..n));
        self.done = self.last && self.pending.is_empty();
        Some(chunk)
    }

    /// Queues what was published before now, then the closing line: the
    /// last commits before a shutdown are answered before it, so they must
    /// reach the reader too.
    fn close(&mut self, last: FeedEvent) {
        self.take_ready(usize::MAX);
        self.pending.push_back(line(last));
        self.last = true;
    }

    fn missed(&mut self, n: u64) {
        self.pending
            .push_back(line(FeedEvent::Missed { missed: n }));
    }

    /// Moves the lines already in the ring to `pending`, up to `max` pending.
    fn take_ready(&mut self, max: usize) {
        while self.pending.len() < max {
            match self.live.try_recv() {
                Ok(l) => self.pending.push_back(l),
                Err(TryRecvError::Lagged(n)) => self.missed(n),
                Err(_) => break,
            }
        }
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

fn encode(lines: impl Iterator<Item = Arc<FeedLine>>) -> Bytes {
    let mut buf = Vec::new();
    for l in lines {
        serde_json::to_writer(&mut buf, &*l).expect("a feed line always serialises");
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
    fn since_start_or_after_a_seq_or_live() {
        assert_eq!(start_from(&q(&[])), Ok(None));
        assert_eq!(start_from(&q(&[("since_start", "")])), Ok(Some(0)));
        assert_eq!(start_from(&q(&[("since_start", "1")])), Ok(Some(0)));
        assert_eq!(start_from(&q(&[("since_start", "false")])), Ok(None));
        assert_eq!(start_from(&q(&[("after", "41")])), Ok(Some(41)));
        assert!(start_from(&q(&[("since_start", "yes")])).is_err());
        assert!(start_from(&q(&[("after", "-1")])).is_err());
        assert!(start_from(&q(&[("after", "1"), ("since_start", "1")])).is_err());
        assert!(start_from(&q(&[("limit", "1")])).is_err());
    }

    #[tokio::test]
    async fn lines_published_before_a_stop_go_out_before_stopping() {
        let (stop_tx, stop_rx) = watch::channel(false);
        let feed = super::super::Feed::new(stop_rx);
        let sub = feed.subscribe(None);
        let mut r = Reader {
            pending: VecDeque::new(),
            live: sub.live,
            shutdown: feed.shutdown(),
            ends_at: Instant::now() + Duration::from_secs(3600),
            last: false,
            done: false,
        };
        feed.state(kitty_proto::api::ConnectionState::Offline, None);
        feed.state(kitty_proto::api::ConnectionState::Connected, None);
        stop_tx.send(true).unwrap();
        let mut text = String::new();
        while let Some(chunk) = r.next_chunk().await {
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        let kinds: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].to_string())
            .collect();
        assert_eq!(kinds, [r#""state""#, r#""state""#, r#""stopping""#]);
    }

    #[tokio::test]
    async fn a_response_ends_with_reconnect_before_the_connection_would_be_cut() {
        assert!(RESPONSE_LIFETIME + Duration::from_secs(5) <= crate::accept::MAX_LIFETIME);
        let feed = super::super::Feed::default();
        let sub = feed.subscribe(None);
        let mut r = Reader {
            pending: VecDeque::new(),
            live: sub.live,
            shutdown: None,
            ends_at: Instant::now() + Duration::from_millis(50),
            last: false,
            done: false,
        };
        let chunk = r.next_chunk().await.unwrap();
        assert!(
            std::str::from_utf8(&chunk)
                .unwrap()
                .contains(r#""kind":"reconnect""#)
        );
        assert!(r.next_chunk().await.is_none());
    }
}
