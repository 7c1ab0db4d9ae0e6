//! The uplink: gets every queued event to the server, once, in order, through
//! outages, token expiry and restarts (CONTRACT.md §3–5, DESIGN.md decisions 3
//! and 5).
//!
//! Two halves. [`plan`] decides: it holds the state below and the schedule,
//! takes events (committed, sync requested, WebSocket opened / failed / sent /
//! frame, batch answered, refresh done or refused, credentials or config
//! changed, timer, probe) and returns actions (open the WebSocket, send rows,
//! post a batch, refresh, apply verdicts, publish status, wait until T). It
//! does no I/O and reads no clock. [`driver`] performs the actions and turns
//! what happens into events; it decides nothing.
//!
//! | state | entered on | what runs | leaves on |
//! |---|---|---|---|
//! | `Offline` | start with a session; a new `server_url`; a new login after `AuthRequired` | a WebSocket attempt now; batches | opened → `Connected`; failed → `Reconnecting` (1) |
//! | `Connected` | the WebSocket opened | rows out over it as committed; a batch `batch_interval` after a send to confirm it (10 s with a server that acks); the flush; ping every 20 s | closed, errored, a minute of silence → `Reconnecting` (1) |
//! | `Reconnecting` (n = 1–9) | n failed attempts in a row | batches carry the queue; the next attempt after 0.5 s · 2ⁿ⁻¹ (at most 30 s) ± 1 s; a TCP probe every 1 s while the server is unreachable, which brings the attempt forward | opened → `Connected`; the 10th failure → `OfflineBatchMode` |
//! | `OfflineBatchMode` (n ≥ 10) | the 10th failure in a row | as `Reconnecting`, at the 30 s cap | opened → `Connected` |
//! | `AuthRequired` | a refused refresh; not logged in (at start or after logout) | nothing is sent or deleted | the credentials change to a live session → `Offline` |
//!
//! In every state but `AuthRequired`, batches follow their own schedule:
//! at most one per `batch_interval`; wanted when the WebSocket is down and
//! events are committed, on `sync now` (which also tries the WebSocket at
//! once), every `flush_interval`, and to confirm WebSocket sends. A batch
//! still wanted when the WebSocket opens is dropped (unless `sync now` asked
//! for it), because the WebSocket sends those rows; rows that went out on an
//! earlier connection get the confirming batch instead. A batch
//! that confirms nothing, fails or is forbidden (403) backs off like the
//! WebSocket; a 429 waits its `Retry-After`. A 401 (or an access token past
//! its expiry) asks for one refresh; a 401 on the token just refreshed is a
//! failure, so a server that refuses every token gets backoff, not a loop.
//! An unusable `server_url` shows `Offline` with the reason as the last
//! error, and nothing is tried until config.toml changes.

mod auth;
mod backoff;
mod batch;
mod driver;
mod envelope;
pub mod plan;
mod redirect;
mod status;
mod target;
mod ws;

use kitty_proto::api::ConnectionState;
use kitty_proto::home::Home;
use tokio::sync::watch;

pub use status::UplinkShared;

use crate::settings::SettingsRx;
use crate::writer::WriterHandle;

pub struct UplinkCtx {
    pub home: Home,
    pub settings: SettingsRx,
    pub writer: WriterHandle,
    pub committed: watch::Receiver<()>,
    pub shared: UplinkShared,
    pub shutdown: watch::Receiver<bool>,
}

/// The state before the first attempt: waiting for a login, or about to try.
pub fn initial_state(settings: &crate::settings::Settings) -> ConnectionState {
    let logged_in = settings
        .credentials
        .credentials()
        .is_some_and(|c| c.logged_in(chrono::Utc::now()));
    if logged_in {
        ConnectionState::Offline
    } else {
        ConnectionState::AuthRequired
    }
}

pub fn spawn(ctx: UplinkCtx) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let shared = ctx.shared.clone();
        match driver::Driver::new(ctx).await {
            Ok(d) => d.run().await,
            Err(e) => {
                tracing::error!("the uplink cannot start: {e}");
                shared.update(|s| s.last_error = Some(format!("the uplink cannot start: {e}")));
            }
        }
    })
}
