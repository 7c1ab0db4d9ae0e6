//! The driver: performs the planner's actions and turns what happens into
//! events. It decides nothing; every rule lives in `plan`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kitty_store::outbox;
use serde_json::json;
use sqlx::SqliteConnection;
use tokio_tungstenite::tungstenite::{self, Message};

use super::auth::{Auth, AuthError};
use super::batch::{self, BatchError};
use super::plan::{self, Action, BatchFailure, Event, Failure, Path, Planner};
use super::target::Target;
use super::ws::{self, Inbound, Ws};
use super::{UplinkCtx, backoff};
use crate::settings::Settings;

/// Rows sent over the WebSocket per `SendWs`.
const WS_CHUNK: u32 = 1000;
/// Frames taken at once after a request (acks come in bursts); the rest wait.
const MAX_DRAIN: usize = 10_000;

pub struct Driver {
    ctx: UplinkCtx,
    conn: SqliteConnection,
    http: reqwest::Client,
    auth: Auth,
    ws: Option<Ws>,
    planner: Planner,
    /// The settings the planner was last told about.
    seen: Arc<Settings>,
}

impl Driver {
    pub async fn new(mut ctx: UplinkCtx) -> Result<Self, String> {
        let conn =
            kitty_store::db::open_writer(&ctx.home.queue_db(), kitty_store::db::BUSY_TIMEOUT)
                .await
                .map_err(|e| e.to_string())?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("kitty-syncd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let mut auth = Auth::new(ctx.home.clone(), http.clone(), ctx.settings.clone());
        let seen = ctx.settings.borrow_and_update().clone();
        let planner = Planner::new(
            Instant::now(),
            plan_config(&seen),
            session(&mut auth),
            Box::new(backoff::random_jitter),
        );
        Ok(Self {
            ctx,
            conn,
            http,
            auth,
            ws: None,
            planner,
            seen,
        })
    }

    /// Feeds the planner every event there is, then does what it says next.
    pub async fn run(mut self) {
        let mut events = VecDeque::new();
        loop {
            let actions = match events.pop_front() {
                Some(event) => self.planner.on(Instant::now(), event),
                None => self.planner.next(Instant::now()),
            };
            for action in actions {
                if action == Action::Stop {
                    return self.close_ws().await;
                }
                events.extend(self.perform(action).await);
            }
        }
    }

    async fn perform(&mut self, action: Action) -> Vec<Event> {
        let answer = match action {
            Action::Wait(until) => return self.wait(until).await,
            Action::Publish(report) => {
                let shared = &self.ctx.shared;
                shared.publish(report, Instant::now(), chrono::Utc::now());
                return vec![];
            }
            Action::CloseWs => {
                self.close_ws().await;
                return vec![];
            }
            Action::Receive(remote) => {
                self.ctx.writer.receive(remote).await;
                return vec![];
            }
            Action::Stop => return vec![],
            Action::OpenWs => self.open_ws().await,
            Action::SendWs { after } => self.send_ws(after).await,
            Action::Ping => {
                let sent = match self.ws.as_mut() {
                    Some(ws) => ws.ping().await,
                    None => Ok(()),
                };
                sent.err().map(|e| self.link_lost(e))
            }
            Action::Pong(ts) => {
                let pong = json!({"type": "pong", "timestamp": ts}).to_string();
                let sent = match self.ws.as_mut() {
                    Some(ws) => ws.send_text(pong).await,
                    None => Ok(()),
                };
                sent.err().map(|e| self.link_lost(e))
            }
            Action::PostBatch => Some(self.post_batch().await),
            Action::Refresh => Some(self.refresh().await),
            Action::Probe => Some(self.probe().await),
            Action::Apply(verdicts) => Some(self.apply(verdicts).await),
        };
        // What the server sent meanwhile (acks), so that a long send never
        // leaves it blocked writing to us while we block writing to it.
        let mut events: Vec<Event> = answer.into_iter().collect();
        self.drain(&mut events);
        events
    }

    fn target(&self) -> Option<Target> {
        self.planner.target().cloned()
    }

    async fn open_ws(&mut self) -> Option<Event> {
        let target = self.target()?;
        let token = match self.auth.ws_token(&target).await {
            Ok(t) => t,
            Err(e) => return Some(auth_failed(Path::Ws, e)),
        };
        Some(match ws::connect(&target, &token).await {
            Ok(ws) => {
                tracing::info!(server = %target.base, "WebSocket open");
                self.ws = Some(ws);
                Event::WsOpened
            }
            Err(ws::WsError::Unauthorized) => Event::Unauthorized(Path::Ws),
            Err(ws::WsError::Failed { message, connect }) => Event::WsFailed(Failure {
                message,
                unreachable: connect,
            }),
        })
    }

    async fn send_ws(&mut self, after: Option<outbox::Cursor>) -> Option<Event> {
        let rows = match outbox::oldest_after(&mut self.conn, after, WS_CHUNK).await {
            Ok(r) => r,
            Err(e) => {
                // Nothing sent; the next commit or flush tries again.
                tracing::error!("{e}");
                return Some(Event::WsSent {
                    last: None,
                    count: 0,
                    full: false,
                    bad: vec![],
                });
            }
        };
        let ws = self.ws.as_mut()?;
        let team = self.auth.team();
        Some(match ws.send_rows(&rows, team.as_deref()).await {
            Ok(bad) => Event::WsSent {
                last: rows.last().map(|r| (r.timestamp, r.id)),
                count: rows.len() as u64,
                full: rows.len() as u32 == WS_CHUNK,
                bad,
            },
            Err(e) => self.link_lost(e),
        })
    }

    async fn post_batch(&mut self) -> Event {
        let rows = match outbox::oldest_after(&mut self.conn, None, batch::MAX_BATCH).await {
            Ok(r) if r.is_empty() => return Event::BatchEmpty,
            Ok(r) => r,
            Err(e) => {
                let failure = BatchFailure::Failed(Failure::answered(e.to_string()));
                return Event::BatchFailed { sent: 0, failure };
            }
        };
        let Some(target) = self.target() else {
            return Event::BatchEmpty;
        };
        let token = match self.auth.access() {
            Ok(t) => t,
            Err(e) => return auth_failed(Path::Batch, e),
        };
        let team = self.auth.team();
        let sent = rows.len() as u64;
        let failure = match batch::post(&self.http, &target, &token, team.as_deref(), &rows).await {
            Ok(verdicts) => {
                let full = rows.len() as u32 == batch::MAX_BATCH;
                return Event::BatchAnswered {
                    sent,
                    full,
                    verdicts,
                };
            }
            Err(BatchError::Unauthorized) => return Event::Unauthorized(Path::Batch),
            Err(BatchError::RateLimited(wait)) => BatchFailure::RateLimited(wait),
            Err(BatchError::Forbidden(why)) => BatchFailure::Forbidden(why),
            Err(BatchError::Failed { message, connect }) => BatchFailure::Failed(Failure {
                message,
                unreachable: connect,
            }),
        };
        Event::BatchFailed { sent, failure }
    }

    async fn refresh(&mut self) -> Event {
        let Some(target) = self.target() else {
            return Event::RefreshFailed(Failure::answered("no usable server_url"));
        };
        match self.auth.refresh(&target).await {
            Ok(()) => Event::Refreshed,
            Err(AuthError::Transient { message, connect }) => Event::RefreshFailed(Failure {
                message,
                unreachable: connect,
            }),
            Err(e) => Event::SessionOver(e.to_string()),
        }
    }

    /// A cheap TCP connect: is the server back?
    async fn probe(&mut self) -> Event {
        let reachable = match self.target() {
            Some(t) => tokio::time::timeout(
                Duration::from_millis(500),
                tokio::net::TcpStream::connect(&t.authority),
            )
            .await
            .is_ok_and(|r| r.is_ok()),
            None => false,
        };
        Event::Probed { reachable }
    }

    async fn apply(&mut self, verdicts: Vec<(String, outbox::Verdict)>) -> Event {
        match outbox::apply(&mut self.conn, &verdicts).await {
            Ok(counts) => Event::Applied {
                counts,
                at: kitty_proto::rules::format_utc(chrono::Utc::now()),
            },
            Err(e) => Event::ApplyFailed {
                verdicts,
                message: e.to_string(),
            },
        }
    }

    async fn close_ws(&mut self) {
        if let Some(ws) = self.ws.take() {
            ws.close().await;
        }
    }

    fn link_lost(&mut self, message: String) -> Event {
        self.ws = None;
        Event::WsFailed(Failure::answered(message))
    }

    /// Waits for the next thing to happen: a timer, a commit, a frame,
    /// `sync now`, a settings change or shutdown.
    async fn wait(&mut self, until: Option<Instant>) -> Vec<Event> {
        if *self.ctx.shutdown.borrow() {
            return vec![Event::Shutdown];
        }
        let Self { ctx, ws, .. } = self;
        let sync_now = ctx.shared.sync_now.clone();
        let frame = async {
            match ws {
                Some(ws) => ws.next().await,
                None => std::future::pending().await,
            }
        };
        let timer = async {
            match until {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        // A sender that is gone (its task ended) is never heard from again.
        let woke = tokio::select! {
            r = ctx.shutdown.changed() => if r.is_ok() { Woke::Shutdown } else { Woke::Gone },
            r = ctx.settings.changed() => if r.is_ok() { Woke::Settings } else { Woke::Gone },
            r = ctx.committed.changed() => if r.is_ok() { Woke::Committed } else { Woke::Gone },
            _ = sync_now.notified() => Woke::Sync,
            item = frame => Woke::Frame(item),
            _ = timer => Woke::Timer,
        };
        match woke {
            Woke::Shutdown | Woke::Gone if *self.ctx.shutdown.borrow() => vec![Event::Shutdown],
            // The writer or the watcher ended: shutdown is near; do not spin on it.
            Woke::Gone => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                vec![Event::Timer]
            }
            Woke::Shutdown => vec![],
            Woke::Settings => self.settings_events(),
            Woke::Committed => vec![Event::Committed],
            Woke::Sync => vec![Event::SyncRequested],
            Woke::Timer => vec![Event::Timer],
            Woke::Frame(item) => {
                let mut events = vec![self.frame_event(item)];
                self.drain(&mut events);
                events
            }
        }
    }

    /// Frames already here, up to `MAX_DRAIN`, or until the link ends.
    fn drain(&mut self, events: &mut Vec<Event>) {
        for _ in 0..MAX_DRAIN {
            let Some(item) = self.ws.as_mut().and_then(Ws::ready) else {
                return;
            };
            events.push(self.frame_event(item));
        }
    }

    fn frame_event(&mut self, item: Option<Result<Message, tungstenite::Error>>) -> Event {
        match item {
            Some(Ok(Message::Text(text))) => Event::Frame(ws::classify(&text)),
            Some(Ok(Message::Close(frame))) => {
                let why = frame
                    .map(|f| format!("{} {}", f.code, f.reason))
                    .unwrap_or_default();
                self.link_lost(
                    format!("the server closed the WebSocket {why}")
                        .trim()
                        .to_owned(),
                )
            }
            // Pings, pongs, binary: the link is alive.
            Some(Ok(_)) => Event::Frame(Inbound::Other),
            Some(Err(e)) => self.link_lost(format!("WebSocket: {e}")),
            None => self.link_lost("the WebSocket closed".into()),
        }
    }

    /// What changed in config.toml and the credentials, as events.
    fn settings_events(&mut self) -> Vec<Event> {
        let now = self.ctx.settings.borrow_and_update().clone();
        let mut events = Vec::new();
        if now.config != self.seen.config {
            events.push(Event::Config(plan_config(&now)));
        }
        if now.credentials != self.seen.credentials {
            events.push(Event::Credentials(session(&mut self.auth)));
        }
        self.seen = now;
        events
    }
}

enum Woke {
    Shutdown,
    Gone,
    Settings,
    Committed,
    Sync,
    Frame(Option<Result<Message, tungstenite::Error>>),
    Timer,
}

fn plan_config(settings: &Settings) -> plan::Config {
    let c = &settings.config;
    plan::Config {
        target: Target::parse(&c.server_url),
        batch_interval: Duration::from_secs(c.batch_interval_secs),
        flush_interval: Duration::from_secs(c.flush_interval_secs),
    }
}

/// `Ok` when the credentials in force are a live session.
fn session(auth: &mut Auth) -> Result<(), String> {
    if auth.logged_in() {
        Ok(())
    } else {
        Err(AuthError::NotLoggedIn.to_string())
    }
}

fn auth_failed(path: Path, e: AuthError) -> Event {
    match e {
        AuthError::Unauthorized => Event::Unauthorized(path),
        AuthError::Transient { message, connect } => {
            let f = Failure {
                message,
                unreachable: connect,
            };
            match path {
                Path::Ws => Event::WsFailed(f),
                Path::Batch => Event::BatchFailed {
                    sent: 0,
                    failure: BatchFailure::Failed(f),
                },
            }
        }
        AuthError::NotLoggedIn | AuthError::SessionOver(_) => Event::SessionOver(e.to_string()),
    }
}
