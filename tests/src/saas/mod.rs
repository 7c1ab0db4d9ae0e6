//! kitty-saas-dev: a real server that plays the spec-kitty SaaS (CONTRACT.md
//! §3–4) for tests, benchmarks and a newcomer's first try, with faults that
//! can be switched on at start or live through `/admin/faults`.
//!
//! Run it in-process with [`Server::start`], or as the `kitty-saas-dev` binary.
//! With [`Db::Sink`] (`--sink`) it answers the same but keeps no events, only
//! their ids and counters: for benchmarks of a client.
//!
//! Routes:
//! - `POST /api/v1/token/`, `POST /api/v1/token/refresh/` (rotating),
//!   `POST /api/v1/ws-token/`, `POST /api/v1/events/batch/`, `GET /ws/v1/events/`
//! - `GET|POST|DELETE /admin/faults`, `GET /admin/counters`,
//!   `GET /admin/events?limit=N&offset=M&team=T`, `POST /admin/reset`,
//!   `POST /admin/ws/drop`

mod admin;
mod auth;
mod batch;
mod events;
mod faults;
mod http;
mod store;
mod tokens;
mod users;
mod ws;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use admin::Counters;
pub use batch::MAX_BODY_BYTES;
pub use faults::Faults;
pub use store::Db;
pub use users::{NO_TEAM, User};

/// How to start a server. `Config::default()` listens on a free loopback
/// port with an in-memory store and no users.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub users: Vec<User>,
    /// None: a random secret, so tokens die with the process.
    pub jwt_secret: Option<Vec<u8>>,
    pub db: Db,
    pub ping_interval: Duration,
    /// The switches at start; `DELETE /admin/faults` returns to these.
    pub faults: Faults,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            users: Vec::new(),
            jwt_secret: None,
            db: Db::Memory,
            ping_interval: Duration::from_millis(15_000),
            faults: Faults::default(),
        }
    }
}

pub(crate) struct AppState {
    users: users::Users,
    keys: auth::Keys,
    store: store::Store,
    faults: RwLock<Faults>,
    initial_faults: Faults,
    counters: admin::CounterCells,
    hub: ws::Hub,
    /// When each user's last batch got past the rate limit.
    last_batch: Mutex<HashMap<String, Instant>>,
    ping_interval: Duration,
    /// Set once, to end the open WebSockets, which graceful HTTP shutdown
    /// does not wait for.
    shutdown: watch::Sender<bool>,
}

impl AppState {
    fn faults(&self) -> Faults {
        self.faults
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn counters(&self) -> anyhow::Result<Counters> {
        let unique = self.store.count(None).await?;
        Ok(self.counters.snapshot(unique, self.hub.connected()))
    }

    async fn reset(&self) -> anyhow::Result<()> {
        self.store.clear_events().await?;
        self.counters.clear();
        self.last_batch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        tracing::info!("events and counters reset");
        Ok(())
    }
}

fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/api/v1/token/", post(tokens::login))
        .route("/api/v1/token/refresh/", post(tokens::refresh))
        .route("/api/v1/ws-token/", post(tokens::ws_token))
        .route("/api/v1/events/batch/", post(batch::batch))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            http::added_latency,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            http::count_and_redirect,
        ));
    Router::new()
        .merge(api)
        .route("/ws/v1/events/", get(ws::upgrade))
        .route(
            "/admin/faults",
            get(admin::get_faults)
                .post(admin::post_faults)
                .delete(admin::delete_faults),
        )
        .route("/admin/counters", get(admin::counters))
        .route("/admin/events", get(admin::events))
        .route("/admin/reset", post(admin::reset))
        .route("/admin/ws/drop", post(admin::drop_websockets))
        .fallback(|| async { http::ApiError::new(StatusCode::NOT_FOUND, "Not found") })
        .with_state(state)
}

pub struct Server;

impl Server {
    /// Binds `config.listen`, opens the store and serves on the current tokio
    /// runtime until the handle is shut down or dropped.
    pub async fn start(config: Config) -> anyhow::Result<ServerHandle> {
        let listener = std::net::TcpListener::bind(config.listen)
            .with_context(|| format!("binding {}", config.listen))?;
        Self::start_on(config, listener).await
    }

    /// Like [`Server::start`], on a listener the caller made (a test that
    /// reserved the port and hands the socket over, so no other process can
    /// take the port in between); `config.listen` is ignored.
    pub async fn start_on(
        config: Config,
        listener: std::net::TcpListener,
    ) -> anyhow::Result<ServerHandle> {
        config
            .faults
            .check()
            .map_err(anyhow::Error::msg)
            .context("checking the faults")?;
        let users = users::Users::new(&config.users).map_err(anyhow::Error::msg)?;
        let keys = match &config.jwt_secret {
            Some(secret) if secret.is_empty() => anyhow::bail!("the JWT secret must not be empty"),
            Some(secret) => auth::Keys::new(secret),
            None => auth::Keys::random(),
        };
        let store = store::Store::open(&config.db).await?;
        listener
            .set_nonblocking(true)
            .context("making the listener non-blocking")?;
        let listener =
            tokio::net::TcpListener::from_std(listener).context("registering the listener")?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let (shutdown, _) = watch::channel(false);
        let state = Arc::new(AppState {
            users,
            keys,
            store,
            faults: RwLock::new(config.faults.clone()),
            initial_faults: config.faults,
            counters: admin::CounterCells::default(),
            hub: ws::Hub::default(),
            last_batch: Mutex::new(HashMap::new()),
            ping_interval: config.ping_interval.max(Duration::from_millis(1)),
            shutdown,
        });
        let mut stop = state.shutdown.subscribe();
        let app = router(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    // An error means the sender is gone, which is a stop too.
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        });
        tracing::info!(%addr, db = ?config.db, users = config.users.len(), "kitty-saas-dev serving");
        Ok(ServerHandle {
            addr,
            state,
            task: Some(task),
        })
    }
}

/// A running server. Dropping it stops the server without waiting;
/// [`ServerHandle::shutdown`] waits.
pub struct ServerHandle {
    addr: SocketAddr,
    state: Arc<AppState>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl ServerHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, the daemon's `server_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://ADDR/ws/v1/events/`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws/v1/events/", self.addr)
    }

    pub fn faults(&self) -> Faults {
        self.state.faults()
    }

    pub fn set_faults(&self, faults: Faults) -> anyhow::Result<()> {
        faults.check().map_err(anyhow::Error::msg)?;
        *self.state.faults.write().unwrap_or_else(|p| p.into_inner()) = faults;
        Ok(())
    }

    pub async fn counters(&self) -> anyhow::Result<Counters> {
        self.state.counters().await
    }

    /// All stored envelopes in arrival order.
    pub async fn events(&self) -> anyhow::Result<Vec<Value>> {
        self.state
            .store
            .events(None, 0, None)
            .await?
            .iter()
            .map(|raw| serde_json::from_str(raw).context("parsing a stored envelope"))
            .collect()
    }

    /// Clears events, counters and rate-limit windows, as `POST /admin/reset`.
    pub async fn reset(&self) -> anyhow::Result<()> {
        self.state.reset().await
    }

    /// Stops accepting, closes the WebSockets, and waits for open HTTP
    /// requests to finish.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.state.shutdown.send_replace(true);
        if let Some(task) = self.task.take() {
            task.await
                .context("the server task failed")?
                .context("serving HTTP")?;
        }
        Ok(())
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.state.shutdown.send_replace(true);
    }
}
