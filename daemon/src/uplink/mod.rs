//! The uplink: gets every queued event to the server, once, in order, through
//! outages, token expiry and restarts (CONTRACT.md §3–5, DESIGN.md decisions 3
//! and 5).
//!
//! One task runs a loop. Each turn it (re)checks the target and the session,
//! connects the WebSocket when due, sends newly committed rows over it, applies
//! the server's verdicts, posts a batch when one is due, and then waits for the
//! next thing to happen: a commit, a frame, a timer, `sync now`, a settings
//! change or shutdown.
//!
//! - WebSocket first: rows go out in queue order as soon as they are committed.
//!   A server that acknowledges gets its rows deleted on `ack`; with one that
//!   does not (the 2026-02 server), rows stay until a batch confirms them,
//!   `batch_interval` after they were sent (the server answers `duplicate`).
//! - Batches: when the WebSocket is down, on `sync now`, every
//!   `flush_interval`, and to confirm what the WebSocket sent. At most one per
//!   `batch_interval`; a batch that confirms nothing backs off.
//! - Failures are states with a next retry time, shown in `status`.

mod auth;
mod backoff;
mod batch;
mod envelope;
mod redirect;
mod status;
mod target;
mod ws;

use std::time::{Duration, Instant};

use kitty_proto::home::Home;
use kitty_store::outbox::{self, Cursor, Verdict};
use serde_json::json;
use sqlx::SqliteConnection;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

pub use status::{State, UplinkShared};

use crate::feed::Via;
use crate::settings::SettingsRx;
use crate::writer::WriterHandle;
use auth::{Auth, AuthError};
use backoff::Backoff;
use batch::BatchError;
use target::Target;
use ws::{Inbound, Ws, WsError};

/// After this many failed WebSocket attempts the state is `OfflineBatchMode`.
const WS_FAILURES_FOR_BATCH_MODE: u32 = 10;
/// Our own heartbeat on the WebSocket, and how long silence may last.
const HEARTBEAT: Duration = Duration::from_secs(20);
const SILENCE_LIMIT: Duration = Duration::from_secs(60);
/// While the server is unreachable, probe it this often so delivery resumes
/// within about a second of it coming back, whatever the backoff says.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Rows sent over the WebSocket per turn of the loop.
const WS_CHUNK: u32 = 1000;
/// With an acknowledging server, rows still queued this long after being
/// sent (their ack was lost) are confirmed by a batch.
const ACK_GRACE: Duration = Duration::from_secs(10);
/// The longest one request to the server may take, answer included. The loop
/// waits for it (nothing else moves meanwhile), so: short, and well inside
/// the minute of silence after which the WebSocket counts as dead.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct UplinkCtx {
    pub home: Home,
    pub settings: SettingsRx,
    pub writer: WriterHandle,
    pub committed: watch::Receiver<()>,
    pub shared: UplinkShared,
    pub shutdown: watch::Receiver<bool>,
}

/// The state before the first attempt: waiting for a login, or about to try.
pub fn initial_state(settings: &crate::settings::Settings) -> State {
    let logged_in = settings
        .credentials
        .credentials()
        .is_some_and(|c| c.logged_in(chrono::Utc::now()));
    if logged_in {
        State::Offline
    } else {
        State::AuthRequired
    }
}

pub fn spawn(ctx: UplinkCtx) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        match Uplink::new(ctx).await {
            Ok(mut u) => u.run().await,
            Err((shared, e)) => {
                tracing::error!("the uplink cannot start: {e}");
                shared.update(|s| s.last_error = Some(format!("the uplink cannot start: {e}")));
            }
        }
    })
}

struct Uplink {
    ctx: UplinkCtx,
    conn: SqliteConnection,
    http: reqwest::Client,
    auth: Auth,
    target: Option<Target>,
    /// Set when the server refused our refresh token; cleared by a change of credentials.
    session_over: Option<String>,

    ws: Option<Ws>,
    ws_backoff: Backoff,
    next_ws_at: Instant,
    /// Where the WebSocket has sent up to; rows before it are confirmed by batches.
    ws_cursor: Option<Cursor>,
    server_acks: bool,

    batch_backoff: Backoff,
    batch_wanted: bool,
    next_batch_at: Instant,
    confirm_due: Option<Instant>,
    next_flush_at: Instant,

    /// The last failure was the server being unreachable (not an answer).
    unreachable: bool,
    verdicts: Vec<(String, Verdict)>,
}

impl Uplink {
    async fn new(ctx: UplinkCtx) -> Result<Self, (UplinkShared, String)> {
        let fail = |e: String| (ctx.shared.clone(), e);
        let conn =
            kitty_store::db::open_writer(&ctx.home.queue_db(), kitty_store::db::BUSY_TIMEOUT)
                .await
                .map_err(|e| fail(e.to_string()))?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // See redirect.rs: a 3xx is an error, never followed.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("kitty-syncd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| fail(format!("cannot build the HTTP client: {e}")))?;
        let auth = Auth::new(ctx.home.clone(), http.clone(), ctx.settings.clone());
        let now = Instant::now();
        let flush = flush_interval(&ctx.settings);
        Ok(Self {
            conn,
            http,
            auth,
            target: None,
            session_over: None,
            ws: None,
            ws_backoff: Backoff::new(),
            next_ws_at: now,
            ws_cursor: None,
            server_acks: false,
            batch_backoff: Backoff::new(),
            // Whatever waits in the queue from before goes out at once.
            batch_wanted: true,
            next_batch_at: now,
            confirm_due: None,
            next_flush_at: now + flush,
            unreachable: false,
            verdicts: Vec::new(),
            ctx,
        })
    }

    async fn run(&mut self) {
        loop {
            if *self.ctx.shutdown.borrow() {
                break;
            }
            if !self.ready_to_talk().await {
                self.idle().await;
                continue;
            }
            let now = Instant::now();
            self.timers(now).await;
            if self.ws.is_none() && now >= self.next_ws_at {
                self.connect().await;
                if self.session_over.is_some() {
                    // One refused refresh is the answer: do not ask again for the batch.
                    continue;
                }
            }
            let more = self.pump_ws().await;
            // Read what the server sent meanwhile (acks), so that a long send
            // never leaves it blocked writing to us while we block writing to it.
            self.drain_ready_frames().await;
            self.apply_verdicts().await;
            if self.batch_wanted && Instant::now() >= self.next_batch_at {
                self.flush_batch().await;
                self.apply_verdicts().await;
            }
            self.publish();
            if !more {
                self.wait().await;
            }
        }
        self.apply_verdicts().await;
        if let Some(ws) = self.ws.take() {
            ws.close().await;
        }
        self.ctx
            .shared
            .update(|s| s.state = State::Offline.name().into());
    }

    /// Checks the server URL and the session; says why not in the status.
    async fn ready_to_talk(&mut self) -> bool {
        let url = self.ctx.settings.borrow().config.server_url.clone();
        let target = match Target::parse(&url) {
            Ok(t) => t,
            Err(e) => {
                self.drop_ws().await;
                self.target = None;
                self.set_state(State::Offline, Some(e));
                return false;
            }
        };
        if self.target.as_ref() != Some(&target) {
            if self.target.is_some() {
                tracing::info!(server = %target.base, "server changed; reconnecting");
            }
            self.drop_ws().await;
            self.target = Some(target);
            self.ws_backoff.succeed();
            self.batch_backoff.succeed();
            self.next_ws_at = Instant::now();
            self.next_batch_at = Instant::now();
            self.batch_wanted = true;
        }
        if let Some(why) = self.session_over.clone() {
            self.drop_ws().await;
            self.set_state(State::AuthRequired, Some(why));
            return false;
        }
        if !self.auth.logged_in() {
            self.drop_ws().await;
            self.set_state(
                State::AuthRequired,
                Some(AuthError::NotLoggedIn.to_string()),
            );
            return false;
        }
        true
    }

    /// Waits for something that may make talking possible again.
    async fn idle(&mut self) {
        let sync_now = self.ctx.shared.sync_now.clone();
        tokio::select! {
            _ = self.ctx.settings.changed() => self.on_settings_change(),
            _ = self.ctx.shutdown.changed() => {}
            _ = sync_now.notified() => {}
        }
    }

    fn on_settings_change(&mut self) {
        if self.session_over.take().is_some() {
            tracing::info!("credentials changed; trying the new session");
            self.batch_wanted = true;
            self.next_batch_at = Instant::now();
            self.next_ws_at = Instant::now();
        }
    }

    /// Timers that came due: periodic flush, confirmation of WebSocket sends,
    /// the heartbeat, and the reachability probe.
    async fn timers(&mut self, now: Instant) {
        if now >= self.next_flush_at {
            self.batch_wanted = true;
            self.next_flush_at = now + flush_interval(&self.ctx.settings);
        }
        if self.confirm_due.is_some_and(|t| now >= t) {
            self.confirm_due = None;
            self.batch_wanted = true;
        }
        if let Some(ws) = &mut self.ws {
            if now.duration_since(ws.last_heard) > SILENCE_LIMIT {
                self.ws_failed("the WebSocket has been silent for a minute".into(), false);
            } else if now.duration_since(ws.last_ping_sent) >= HEARTBEAT
                && let Err(e) = ws.ping().await
            {
                self.ws_failed(e, false);
            }
        }
    }

    async fn connect(&mut self) {
        let Some(target) = self.target.clone() else {
            return;
        };
        self.set_state(
            if self.ws_backoff.failures > 0 {
                self.down_state()
            } else {
                State::Offline
            },
            None,
        );
        let _busy = self.ctx.shared.in_flight("opening the WebSocket".into());
        let token = match self.auth.ws_token(&target).await {
            Ok(t) => t,
            Err(e) => return self.auth_failed(e, true),
        };
        match ws::connect(&target, &token).await {
            Ok(ws) => {
                tracing::info!(server = %target.base, "WebSocket connected");
                self.ws = Some(ws);
                self.ws_backoff.succeed();
                self.unreachable = false;
                self.set_state(State::Connected, None);
                self.ctx.shared.update(|s| s.last_error = None);
            }
            Err(WsError::Unauthorized) => {
                // A ws_token is fresh by construction: refresh the session once.
                match self.auth.refresh(&target).await {
                    Ok(_) => self.next_ws_at = Instant::now(),
                    Err(e) => self.auth_failed(e, true),
                }
            }
            Err(WsError::Failed { message, connect }) => self.ws_failed(message, connect),
        }
    }

    fn ws_failed(&mut self, message: String, connect: bool) {
        self.ws = None;
        let delay = self.ws_backoff.fail();
        self.next_ws_at = Instant::now() + delay;
        self.unreachable |= connect;
        // Without the WebSocket, batches carry the events.
        self.batch_wanted = true;
        tracing::warn!(failures = self.ws_backoff.failures, retry_in = ?delay, "WebSocket: {message}");
        self.set_state(self.down_state(), Some(message));
    }

    fn down_state(&self) -> State {
        if self.ws_backoff.failures >= WS_FAILURES_FOR_BATCH_MODE {
            State::OfflineBatchMode
        } else if self.ws_backoff.failures > 0 {
            State::Reconnecting
        } else {
            State::Offline
        }
    }

    fn auth_failed(&mut self, e: AuthError, for_ws: bool) {
        match e {
            AuthError::Transient { message, connect } => {
                if for_ws {
                    self.ws_failed(message, connect);
                } else {
                    self.batch_failed(message, connect);
                }
            }
            AuthError::NotLoggedIn | AuthError::SessionOver(_) => {
                tracing::warn!("{e}; waiting for a new login (the queue keeps every event)");
                self.session_over = Some(e.to_string());
                self.ws = None;
                self.set_state(State::AuthRequired, Some(e.to_string()));
            }
        }
    }

    /// Sends newly committed rows over the WebSocket; true when more are waiting.
    async fn pump_ws(&mut self) -> bool {
        let Some(ws) = &mut self.ws else { return false };
        let rows = match outbox::oldest_after(&mut self.conn, self.ws_cursor, WS_CHUNK).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("{e}");
                return false;
            }
        };
        if rows.is_empty() {
            return false;
        }
        let team = self.auth.team();
        match ws.send_rows(&rows, team.as_deref()).await {
            Ok(bad) => {
                self.ctx.shared.feed.verdicts(&bad, Via::Daemon);
                let last = rows.last().expect("not empty");
                self.ws_cursor = Some((last.timestamp, last.id));
                let n = rows.len() as u64;
                self.ctx.shared.update(|s| s.sent_ws += n);
                self.verdicts.extend(bad);
                if self.confirm_due.is_none() {
                    let wait = if self.server_acks {
                        ACK_GRACE.max(batch_interval(&self.ctx.settings))
                    } else {
                        batch_interval(&self.ctx.settings)
                    };
                    self.confirm_due = Some(Instant::now() + wait);
                }
                rows.len() as u32 == WS_CHUNK
            }
            Err(e) => {
                self.ws_failed(e, false);
                false
            }
        }
    }

    async fn apply_verdicts(&mut self) {
        if self.verdicts.is_empty() {
            return;
        }
        let verdicts = std::mem::take(&mut self.verdicts);
        match outbox::apply(&mut self.conn, &verdicts).await {
            Ok(a) => {
                self.ctx.shared.feed.dead(&a.dead_ids);
                let confirmed = a.delivered + a.duplicates;
                let now = chrono::Utc::now();
                self.ctx.shared.update(|s| {
                    s.delivered += a.delivered;
                    s.duplicates += a.duplicates;
                    s.rejected += a.rejected;
                    if confirmed > 0 {
                        s.last_sync_at = Some(kitty_proto::rules::format_utc(now));
                    }
                });
                if a.dead > 0 {
                    tracing::warn!(
                        dead = a.dead,
                        "events rejected five times moved to dead_letter"
                    );
                }
                if a.rejected > 0 {
                    tracing::warn!(
                        rejected = a.rejected,
                        "the server rejected events; they stay queued"
                    );
                }
            }
            Err(e) => {
                tracing::error!("cannot apply the server's results: {e}");
                // Keep them: the next attempt may succeed, and re-sending is safe.
                self.verdicts = verdicts;
            }
        }
    }

    /// One batch POST of the oldest queued events.
    async fn flush_batch(&mut self) {
        let Some(target) = self.target.clone() else {
            return;
        };
        let rows = match outbox::oldest_after(&mut self.conn, None, batch::MAX_BATCH).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("{e}");
                return self.batch_failed(e.to_string(), false);
            }
        };
        if rows.is_empty() {
            self.batch_wanted = false;
            return;
        }
        let interval = batch_interval(&self.ctx.settings);
        let _busy = (self.ctx.shared).in_flight(format!("a batch POST of {} events", rows.len()));
        let mut token = match self.auth.access(&target).await {
            Ok(t) => t,
            Err(e) => return self.auth_failed(e, false),
        };
        let team = self.auth.team();
        let mut result = batch::post(&self.http, &target, &token, team.as_deref(), &rows).await;
        if matches!(result, Err(BatchError::Unauthorized)) {
            token = match self.auth.refresh(&target).await {
                Ok(t) => t,
                Err(e) => return self.auth_failed(e, false),
            };
            result = batch::post(&self.http, &target, &token, team.as_deref(), &rows).await;
        }
        let n = rows.len() as u64;
        self.ctx.shared.update(|s| s.sent_batch += n);
        match result {
            Ok(verdicts) => {
                self.ctx.shared.feed.verdicts(&verdicts, Via::Batch);
                let progress = verdicts
                    .iter()
                    .filter(|(_, v)| matches!(v, Verdict::Accepted | Verdict::Duplicate))
                    .count();
                let complete = verdicts.len() == rows.len();
                if let Some(ws) = &mut self.ws {
                    ws.settled(
                        verdicts
                            .iter()
                            .filter(|(_, v)| matches!(v, Verdict::Accepted | Verdict::Duplicate))
                            .map(|(id, _)| id.as_str()),
                    );
                }
                self.verdicts.extend(verdicts);
                self.unreachable = false;
                if progress == 0 {
                    // Nothing confirmed (empty results, all rejected): back off
                    // rather than send the same batch again at once.
                    let delay = self.batch_backoff.fail();
                    self.next_batch_at = Instant::now() + delay.max(interval);
                    let msg = if complete {
                        "the server rejected every event of the batch".to_owned()
                    } else {
                        format!("the server confirmed none of {n} events")
                    };
                    tracing::warn!(retry_in = ?delay, "{msg}");
                    self.ctx.shared.update(|s| s.last_error = Some(msg));
                } else {
                    self.batch_backoff.succeed();
                    self.next_batch_at = Instant::now() + interval;
                    // More may wait: a full batch, or events rejected or left out this time.
                    self.batch_wanted =
                        rows.len() as u32 == batch::MAX_BATCH || progress < rows.len();
                    if self.ws.is_some() {
                        self.ctx.shared.update(|s| s.last_error = None);
                    }
                }
            }
            Err(BatchError::RateLimited(wait)) => {
                tracing::info!(?wait, "rate limited by the server");
                self.next_batch_at = Instant::now() + wait.max(interval);
                self.ctx.shared.update(|s| {
                    s.last_error = Some(format!("rate limited; retrying in {}s", wait.as_secs()))
                });
            }
            Err(BatchError::Forbidden(why)) => {
                let msg = format!("forbidden (403): {why}; the events stay queued");
                self.batch_failed(msg, false);
            }
            Err(BatchError::Unauthorized) => self.batch_failed(
                "the server refused a freshly refreshed token (401)".into(),
                false,
            ),
            Err(BatchError::Failed { message, connect }) => self.batch_failed(message, connect),
        }
    }

    fn batch_failed(&mut self, message: String, connect: bool) {
        let delay = self.batch_backoff.fail();
        self.next_batch_at = Instant::now() + delay.max(batch_interval(&self.ctx.settings));
        self.unreachable |= connect;
        tracing::warn!(failures = self.batch_backoff.failures, retry_in = ?delay, "batch: {message}");
        self.ctx.shared.update(|s| s.last_error = Some(message));
    }

    async fn drop_ws(&mut self) {
        if let Some(ws) = self.ws.take() {
            ws.close().await;
        }
    }

    fn set_state(&self, state: State, error: Option<String>) {
        self.ctx.shared.update(|s| {
            s.state = state.name().into();
            if error.is_some() {
                s.last_error = error;
            }
        });
    }

    /// Refreshes the status fields derived from the loop's own state.
    fn publish(&self) {
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        if self.ws.is_none() && self.ws_backoff.failures > 0 {
            next = Some(self.next_ws_at);
        }
        if self.batch_wanted && self.next_batch_at > now {
            next = Some(next.map_or(self.next_batch_at, |n| n.min(self.next_batch_at)));
        }
        let failures = self.ws_backoff.failures.max(self.batch_backoff.failures);
        let acks = self.server_acks;
        let refreshes = self.auth.refreshes;
        let state = if self.ws.is_some() {
            State::Connected
        } else {
            self.down_state()
        };
        self.ctx.shared.update(|s| {
            if s.state != State::AuthRequired.name() || self.session_over.is_none() {
                s.state = state.name().into();
            }
            s.consecutive_failures = failures;
            s.next_retry_at = next.map(|t| {
                kitty_proto::rules::format_utc(
                    chrono::Utc::now() + t.saturating_duration_since(now),
                )
            });
            s.server_acks = acks;
            s.refreshes = refreshes;
        });
    }

    /// Waits for the next thing to do.
    async fn wait(&mut self) {
        let now = Instant::now();
        let mut until = self.next_flush_at;
        if self.ws.is_none() {
            until = until.min(self.next_ws_at);
        }
        if self.batch_wanted {
            until = until.min(self.next_batch_at);
        }
        if let Some(t) = self.confirm_due {
            until = until.min(t);
        }
        if let Some(ws) = &self.ws {
            until = until.min(ws.last_ping_sent + HEARTBEAT);
        }
        let probing = self.unreachable && (self.ws.is_none() || self.batch_wanted);
        if probing {
            until = until.min(now + PROBE_EVERY);
        }
        // Receivers are moved out for the select (the frame future borrows
        // self) and put back after, so what they have seen is remembered.
        let mut settings = self.ctx.settings.clone();
        let mut shutdown = self.ctx.shutdown.clone();
        let mut committed = self.ctx.committed.clone();
        let sync_now = self.ctx.shared.sync_now.clone();
        let frame = async {
            match &mut self.ws {
                Some(ws) => ws.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.changed() => {}
            _ = settings.changed() => self.on_settings_change(),
            _ = committed.changed() => {
                if self.ws.is_none() {
                    self.batch_wanted = true;
                }
            }
            _ = sync_now.notified() => {
                self.batch_wanted = true;
                self.next_ws_at = self.next_ws_at.min(Instant::now());
            }
            msg = frame => self.on_frame(msg).await,
            _ = tokio::time::sleep_until(until.into()) => {
                if probing {
                    self.probe().await;
                }
            }
        }
        self.ctx.committed = committed;
        self.ctx.settings = settings;
        self.ctx.shutdown = shutdown;
    }

    /// A cheap TCP connect: when the server is back, retry now, not after the backoff.
    async fn probe(&mut self) {
        let Some(target) = &self.target else { return };
        let reachable = tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(&target.authority),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        if reachable {
            tracing::info!("the server is reachable again");
            self.unreachable = false;
            let now = Instant::now();
            self.next_ws_at = now;
            self.next_batch_at = self.next_batch_at.min(now);
            self.batch_wanted = true;
        }
    }

    async fn drain_ready_frames(&mut self) {
        let ready = match &mut self.ws {
            Some(ws) => ws.ready(),
            None => None,
        };
        if let Some(frame) = ready {
            self.on_frame(frame).await;
        }
    }

    /// Handles a frame (`None`: the stream ended), then any already waiting.
    async fn on_frame(
        &mut self,
        first: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) {
        let mut next = Some(first);
        let mut handled = 0;
        while let Some(item) = next.take() {
            match item {
                Some(Ok(Message::Text(text))) => match ws::classify(&text) {
                    Inbound::Ping(ts) => {
                        let pong = json!({"type": "pong", "timestamp": ts}).to_string();
                        if let Some(ws) = &mut self.ws
                            && let Err(e) = ws.send_text(pong).await
                        {
                            return self.ws_failed(e, false);
                        }
                    }
                    Inbound::Event(Some(remote)) => self.ctx.writer.receive(remote).await,
                    Inbound::Verdict(id, v) => {
                        if self.ws.as_mut().is_some_and(|ws| ws.answer(&id)) {
                            self.server_acks = true;
                            self.ctx.shared.feed.verdict(&id, &v, Via::WebSocket);
                            self.verdicts.push((id, v));
                        } else {
                            tracing::debug!(event_id = %id, "ignored a verdict on an event not in flight on this WebSocket");
                        }
                    }
                    Inbound::Event(None) | Inbound::Snapshot | Inbound::Other => {}
                },
                Some(Ok(Message::Close(frame))) => {
                    let why = frame
                        .map(|f| format!("{} {}", f.code, f.reason))
                        .unwrap_or_default();
                    return self.ws_failed(
                        format!("the server closed the WebSocket {why}")
                            .trim()
                            .to_owned(),
                        false,
                    );
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return self.ws_failed(format!("WebSocket: {e}"), false),
                None => return self.ws_failed("the WebSocket closed".into(), false),
            }
            handled += 1;
            // Take what has already arrived (acks come in bursts) before returning.
            if handled < 10_000
                && let Some(ws) = &mut self.ws
            {
                next = ws.ready();
            }
        }
    }
}

fn batch_interval(settings: &SettingsRx) -> Duration {
    Duration::from_secs(settings.borrow().config.batch_interval_secs)
}

fn flush_interval(settings: &SettingsRx) -> Duration {
    Duration::from_secs(settings.borrow().config.flush_interval_secs)
}
