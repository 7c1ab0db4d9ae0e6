//! Talking to the service manager: systemd's notify protocol (READY=1,
//! STATUS=, STOPPING=1, WATCHDOG=1) and its socket activation. Without
//! `NOTIFY_SOCKET` or `LISTEN_FDS` every call here is a no-op.

use std::path::PathBuf;
use std::time::Duration;

use hyper::Method;
use sd_notify::NotifyState;
use tokio::sync::watch;

use crate::server::AppState;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("cannot notify the service manager: {e}");
    }
}

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

pub fn reloading() {
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        send(&[NotifyState::Reloading, now]);
    }
}

pub fn reloaded(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// The listener systemd passed us (socket activation), if any.
pub fn activated_listener() -> std::io::Result<Option<std::os::unix::net::UnixListener>> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(None);
    }
    fds.take_unix_listener(0)
}

/// One line for `systemctl status`: what the daemon holds and how it is connected.
pub async fn status_line(state: &AppState) -> String {
    match crate::status::report(state).await {
        Ok(s) => format!(
            "{}queue {} events, clock {}, {}",
            match &s.writer.last_error {
                Some(e) if !s.writer.ok => format!("commits FAILING ({e}); "),
                _ => String::new(),
            },
            s.queue.depth,
            s.clock.value,
            s.connection
        ),
        Err(e) => format!("cannot read the queue: {e}"),
    }
}

/// Sends STATUS= every few seconds and, when systemd asked for a watchdog,
/// WATCHDOG=1 at half its interval, but only after a real request through our
/// own socket succeeds: a daemon whose serving loop is stuck stops pinging and
/// gets restarted.
pub async fn run(state: AppState, socket: PathBuf, mut shutdown: watch::Receiver<bool>) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let watchdog = sd_notify::watchdog_enabled();
    let period = watchdog.map_or(Duration::from_secs(5), |d| {
        (d / 2).min(Duration::from_secs(5))
    });
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let line = status_line(&state).await;
        if watchdog.is_some() {
            match kitty_cli_common::transport::call(
                &socket,
                Method::GET,
                "/v1/health",
                None,
                period,
            )
            .await
            {
                Ok(a) if a.status.is_success() => {
                    send(&[NotifyState::Watchdog, NotifyState::Status(&line)])
                }
                Ok(a) => tracing::warn!("watchdog: the socket answered {}; not pinging", a.status),
                Err(e) => tracing::warn!(
                    "watchdog: {}; not pinging",
                    kitty_cli_common::error_chain(&e)
                ),
            }
        } else {
            send(&[NotifyState::Status(&line)]);
        }
    }
}
