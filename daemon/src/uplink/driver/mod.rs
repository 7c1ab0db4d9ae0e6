//! The driver: performs the planner's actions and turns what happens into
//! events. It decides nothing; every rule lives in `plan`.

mod requests;
mod wait;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::SqliteConnection;

use crate::feed::Via;
use crate::settings::Settings;
use crate::uplink::auth::{Auth, AuthError};
use crate::uplink::plan::{self, Action, BatchFailure, Event, Failure, Path, Planner};
use crate::uplink::target::Target;
use crate::uplink::ws::Ws;
use crate::uplink::{UplinkCtx, backoff};

/// Rows sent over the WebSocket per `SendWs`.
const WS_CHUNK: u32 = 1000;
/// Frames taken at once after a request (acks come in bursts); the rest wait.
const MAX_DRAIN: usize = 10_000;
/// The longest one request to the server may take, answer included. The
/// driver waits for it (nothing else moves meanwhile), so: short, and well
/// inside the minute of silence after which the WebSocket counts as dead.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Driver {
    ctx: UplinkCtx,
    /// A read-only connection, for what to send next.
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
        // Reads only: every write goes through the writer (ctx.writer).
        let conn = kitty_store::db::open_existing(&ctx.home.queue_db())
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{} is gone", ctx.home.queue_db().display()))?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // See redirect.rs: a 3xx is an error, never followed.
            .redirect(reqwest::redirect::Policy::none())
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
            Action::Receive(relayed) => {
                self.ctx
                    .writer
                    .receive(relayed.lamport, relayed.node_id)
                    .await;
                return vec![];
            }
            Action::Acknowledged(id, verdict) => {
                self.ctx.shared.feed.verdict(&id, &verdict, Via::WebSocket);
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

    async fn close_ws(&mut self) {
        if let Some(ws) = self.ws.take() {
            ws.close().await;
        }
    }

    fn link_lost(&mut self, message: String) -> Event {
        self.ws = None;
        Event::WsFailed(Failure::answered(message))
    }
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
