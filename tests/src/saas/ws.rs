//! `/ws/v1/events/` (CONTRACT.md §4).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{FutureExt, SinkExt};
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, watch};

use super::AppState;
use super::auth::{Claims, TokenKind};
use super::events::{self, Refusal};
use super::http::ApiError;

/// The open sockets of each team, for broadcasts. Unbounded queues: a test
/// must see every event, and a dev server may spend memory on a slow reader.
#[derive(Default)]
pub(crate) struct Hub {
    next_id: AtomicU64,
    teams: Mutex<HashMap<String, HashMap<u64, mpsc::UnboundedSender<String>>>>,
    /// Bumped by `/admin/ws/drop`: every open socket closes.
    drops: watch::Sender<u64>,
}

impl Hub {
    pub(crate) fn drop_all(&self) {
        self.drops.send_modify(|n| *n += 1);
    }

    fn join(&self, team: &str) -> (u64, mpsc::UnboundedReceiver<String>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock()
            .entry(team.to_owned())
            .or_default()
            .insert(id, tx);
        (id, rx)
    }

    fn leave(&self, team: &str, id: u64) {
        let mut teams = self.lock();
        if let Some(conns) = teams.get_mut(team) {
            conns.remove(&id);
            if conns.is_empty() {
                teams.remove(team);
            }
        }
    }

    /// Queues a frame for each of the team's sockets but `except`; the frame
    /// is built only when someone will get it. Returns how many will.
    pub(crate) fn broadcast(
        &self,
        team: &str,
        except: Option<u64>,
        frame: impl FnOnce() -> String,
    ) -> u64 {
        let teams = self.lock();
        let Some(conns) = teams.get(team) else {
            return 0;
        };
        let mut targets = conns
            .iter()
            .filter(|(id, _)| Some(**id) != except)
            .peekable();
        if targets.peek().is_none() {
            return 0;
        }
        let frame = frame();
        // A send fails only for a socket that is closing; it leaves on its own.
        targets
            .filter(|(_, tx)| tx.send(frame.clone()).is_ok())
            .count() as u64
    }

    pub(crate) fn connected(&self) -> u64 {
        self.lock().values().map(|c| c.len() as u64).sum()
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<u64, mpsc::UnboundedSender<String>>>>
    {
        self.teams.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The token is checked before the upgrade, so a bad one gets a plain 401
/// (the daemon's cue to refresh once) rather than an open-then-closed socket.
pub(crate) async fn upgrade(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    st.counters.api_requests.bump();
    if let Some(r) = super::http::redirect(&st, "ws", &uri) {
        return r;
    }
    if st.faults().ws_refuse_upgrade {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "WebSocket unavailable (fault ws_refuse_upgrade)",
        )
        .into_response();
    }
    let claims = match st.keys.bearer(&headers, TokenKind::Ws) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    match ws {
        Ok(ws) => {
            st.counters.ws_connections.bump();
            ws.on_upgrade(move |socket| async move {
                Connection::new(st, claims).run(socket).await;
            })
        }
        Err(rejection) => rejection.into_response(),
    }
}

/// How many unanswered ping timestamps a connection remembers for matching pongs.
const PINGS_REMEMBERED: usize = 64;

/// The most frames handled (and stored) as one run.
const MAX_BURST: usize = 256;

/// What one frame of a run comes to.
enum Step {
    /// An answer to send now (or nothing to send).
    Reply(Option<String>),
    /// A checked event to store with the rest of the run.
    Store(events::Checked),
    /// Stored: the index of its answer in the run's store call.
    Stored(usize),
}

type Received = Option<Result<Message, axum::Error>>;

/// `first`, and the frames already waiting behind it, up to `room` text or
/// binary ones: never waits for one more. Stops early when a broadcast is
/// queued, so that it goes out before the answers to frames that came after
/// it. Returns the frames, and why the connection ends if it does.
fn take_burst(
    socket: &mut WebSocket,
    first: Received,
    room: usize,
    rx: &mpsc::UnboundedReceiver<String>,
) -> (Vec<Message>, Option<String>) {
    let mut burst = Vec::new();
    let mut next = Some(first);
    while let Some(msg) = next.take() {
        match msg {
            None => return (burst, Some("client went away".into())),
            Some(Err(e)) => return (burst, Some(format!("socket error: {e}"))),
            Some(Ok(Message::Close(_))) => return (burst, Some("client closed".into())),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(m)) => burst.push(m),
        }
        if burst.len() >= room || !rx.is_empty() {
            break;
        }
        // A recv that is not ready is dropped after one poll; the stream
        // keeps any frame it has not handed out, so none is lost.
        next = socket.recv().now_or_never();
    }
    (burst, None)
}

struct Connection {
    st: Arc<AppState>,
    claims: Claims,
    pings: VecDeque<Value>,
    frames_in: u64,
}

impl Connection {
    fn new(st: Arc<AppState>, claims: Claims) -> Self {
        Self {
            st,
            claims,
            pings: VecDeque::new(),
            frames_in: 0,
        }
    }

    async fn run(mut self, mut socket: WebSocket) {
        let team = self.claims.team.clone();
        let (id, mut rx) = self.st.hub.join(&team);
        tracing::info!(user = %self.claims.sub, %team, conn = id, "websocket connected");
        let why = match self.serve(&mut socket, id, &mut rx).await {
            Ok(why) => why,
            Err(e) => format!("error: {e:#}"),
        };
        self.st.hub.leave(&team, id);
        tracing::info!(conn = id, %why, "websocket closed");
    }

    /// Returns why the connection ended.
    async fn serve(
        &mut self,
        socket: &mut WebSocket,
        id: u64,
        rx: &mut mpsc::UnboundedReceiver<String>,
    ) -> anyhow::Result<String> {
        let mut dropped = self.st.hub.drops.subscribe();
        let snapshot = json!({ "type": "snapshot", "work_packages": self.snapshot().await? });
        socket.send(Message::text(snapshot.to_string())).await?;
        for frame in self.st.faults().ws_send_on_connect {
            socket.send(Message::text(frame.to_string())).await?;
            self.st.counters.ws_forged_frames.bump();
        }
        let period = self.st.ping_interval;
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let mut shutdown = self.st.shutdown.subscribe();
        loop {
            // Biased so a broadcast queued before a client frame arrived goes
            // out before that frame's answer: tests rely on that ordering.
            tokio::select! {
                biased;
                // The Ref that wait_for yields is not Send; drop it inside.
                () = async { let _ = shutdown.wait_for(|stop| *stop).await; } => {
                    close(socket, close_code::AWAY, "server shutting down").await;
                    return Ok("server shutdown".into());
                }
                _ = dropped.changed() => {
                    close(socket, close_code::RESTART, "dropped by /admin/ws/drop").await;
                    return Ok("dropped by /admin/ws/drop".into());
                }
                Some(frame) = rx.recv() => socket.send(Message::text(frame)).await?,
                msg = socket.recv() => {
                    let limit = self.st.faults().ws_close_after_frames;
                    let room = if limit > 0 {
                        usize::try_from(limit.saturating_sub(self.frames_in)).unwrap_or(MAX_BURST)
                    } else {
                        MAX_BURST
                    };
                    let (burst, end) = take_burst(socket, msg, room.clamp(1, MAX_BURST), rx);
                    let replies = self.on_frames(burst, id).await?;
                    let any = !replies.is_empty();
                    for reply in replies {
                        socket.feed(Message::text(reply)).await?;
                    }
                    if any {
                        socket.flush().await?;
                    }
                    if let Some(why) = end {
                        return Ok(why);
                    }
                    if limit > 0 && self.frames_in >= limit {
                        close(socket, close_code::AWAY, "fault ws_close_after_frames").await;
                        return Ok(format!("closed after {} frames (fault)", self.frames_in));
                    }
                }
                _ = ping.tick() => socket.send(Message::text(self.ping())).await?,
            }
        }
    }

    /// Handles a run of text or binary frames in order; returns the answers
    /// to send, in order. The events among them are stored together, in one
    /// transaction, so a client that streams frames costs one store call per
    /// run rather than one per frame.
    async fn on_frames(&mut self, burst: Vec<Message>, id: u64) -> anyhow::Result<Vec<String>> {
        let mut steps = Vec::with_capacity(burst.len());
        let mut checked = Vec::new();
        for msg in burst {
            self.frames_in += 1;
            self.st.counters.ws_frames_in.bump();
            steps.push(match msg {
                Message::Text(t) => match self.on_text(t.as_str()) {
                    Step::Store(c) => {
                        checked.push(c);
                        Step::Stored(checked.len() - 1)
                    }
                    step => step,
                },
                _ => {
                    self.st.counters.ws_events.bump();
                    Step::Reply(self.refuse(Refusal {
                        event_id: None,
                        message: "binary frames are not accepted; send the envelope as text".into(),
                    }))
                }
            });
        }
        let fresh = if checked.is_empty() {
            Vec::new()
        } else {
            let tenant = self.claims.team.clone();
            self.st.accept(&tenant, &checked, "ws", Some(id)).await?
        };
        let ack = self.st.faults().ack;
        let mut replies = Vec::with_capacity(steps.len());
        for step in steps {
            match step {
                Step::Reply(reply) => replies.extend(reply),
                Step::Stored(i) if ack => {
                    let status = if fresh[i] { "accepted" } else { "duplicate" };
                    let frame = json!({
                        "type": "ack",
                        "event_id": checked[i].envelope.event_id,
                        "status": status,
                    });
                    replies.push(frame.to_string());
                }
                Step::Stored(_) | Step::Store(_) => {}
            }
        }
        Ok(replies)
    }

    fn ping(&mut self) -> String {
        // Seconds as a float, the way Python's time.time() gives them, so a
        // client that assumes an integer shows up.
        let t = Value::from(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
        if self.pings.len() == PINGS_REMEMBERED {
            self.pings.pop_front();
        }
        self.pings.push_back(t.clone());
        self.st.counters.ws_pings.bump();
        json!({ "type": "ping", "timestamp": t }).to_string()
    }

    /// What a text frame asks for: an answer now, or a place in the store.
    fn on_text(&mut self, text: &str) -> Step {
        let fields = match events::parse_object(text) {
            Ok(f) => f,
            Err(r) => {
                self.st.counters.ws_events.bump();
                return Step::Reply(self.refuse(r));
            }
        };
        match fields.get("type").and_then(Value::as_str) {
            Some("pong") => {
                self.on_pong(&fields);
                return Step::Reply(None);
            }
            Some("ping") => {
                let reply = json!({ "type": "pong", "timestamp": fields.get("timestamp") });
                return Step::Reply(Some(reply.to_string()));
            }
            _ => {}
        }
        self.st.counters.ws_events.bump();
        let faults = self.st.faults();
        if faults.ws_ignore_events {
            return Step::Reply(None);
        }
        if let Some(status) = faults.ws_fake_ack {
            let id = events::event_id_of(&fields);
            return Step::Reply(Some(
                json!({ "type": "ack", "event_id": id, "status": status }).to_string(),
            ));
        }
        let tenant = &self.claims.team;
        if let Some(other) = events::foreign_team(&fields, tenant) {
            self.st.counters.forbidden.bump();
            let r = Refusal {
                event_id: events::event_id_of(&fields),
                message: format!("event names team {other:?}; the token is for team {tenant:?}"),
            };
            return Step::Reply(self.refuse(r));
        }
        match events::check(text, fields) {
            Ok(c) => Step::Store(c),
            Err(r) => Step::Reply(self.refuse(r)),
        }
    }

    fn on_pong(&mut self, fields: &Map<String, Value>) {
        let echoed = fields.get("timestamp");
        match self.pings.iter().position(|t| Some(t) == echoed) {
            Some(i) => {
                self.pings.drain(..=i);
                self.st.counters.ws_pongs.bump();
            }
            None => {
                tracing::warn!(timestamp = ?echoed, "pong echoes no ping timestamp we sent");
                self.st.counters.ws_bad_pongs.bump();
            }
        }
    }

    /// Counts a refused frame; answers it only when acknowledging, since a
    /// 2026-02 server says nothing either way.
    fn refuse(&self, r: Refusal) -> Option<String> {
        self.st.counters.rejected.bump();
        tracing::debug!(event_id = ?r.event_id, error = %r.message, "websocket frame refused");
        if !self.st.faults().ack {
            return None;
        }
        let frame = json!({
            "type": "error",
            "event_id": r.event_id,
            "status": "rejected",
            "error": r.message,
        });
        Some(frame.to_string())
    }

    /// The latest status of each of the team's work packages: the highest
    /// Lamport clock wins, arrival order breaks ties. Both WPStatusChanged
    /// shapes count (new_status, or to_lane from mid-February 2026).
    async fn snapshot(&self) -> anyhow::Result<Vec<Value>> {
        let mut latest: BTreeMap<String, (u64, Value)> = BTreeMap::new();
        for raw in self.st.store.status_changes(&self.claims.team).await? {
            let Ok(env) = serde_json::from_str::<Map<String, Value>>(&raw) else {
                continue;
            };
            let payload = env.get("payload").and_then(Value::as_object);
            let field = |k: &str| payload.and_then(|p| p.get(k)).and_then(Value::as_str);
            let Some(wp) =
                field("wp_id").or_else(|| env.get("aggregate_id").and_then(Value::as_str))
            else {
                continue;
            };
            let Some(status) = field("new_status").or_else(|| field("to_lane")) else {
                continue;
            };
            let lamport = env
                .get("lamport_clock")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if latest.get(wp).is_some_and(|(seen, _)| *seen > lamport) {
                continue;
            }
            let entry = json!({
                "wp_id": wp,
                "status": status,
                "feature_slug": field("feature_slug"),
                "lamport_clock": lamport,
                "event_id": env.get("event_id"),
                "updated_at": env.get("timestamp"),
            });
            latest.insert(wp.to_owned(), (lamport, entry));
        }
        Ok(latest.into_values().map(|(_, v)| v).collect())
    }
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    // The peer may be gone already; a failed close changes nothing.
    let _ = socket.send(Message::Close(Some(frame))).await;
}
