//! The signals a daemon answers: SIGTERM and SIGINT stop it, SIGHUP reloads
//! config.toml.

use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::server::AppState;
use crate::settings::{self, Settings};

pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for SIGTERM or SIGINT; SIGHUP reloads config.toml meanwhile.
    pub async fn wait(
        &mut self,
        state: &AppState,
        settings: &watch::Sender<Arc<Settings>>,
    ) -> &'static str {
        loop {
            tokio::select! {
                _ = self.term.recv() => return "SIGTERM",
                _ = self.int.recv() => return "SIGINT",
                _ = self.hup.recv() => {
                    tracing::info!("SIGHUP: reloading config.toml");
                    crate::systemd_notify::reloading();
                    settings::reload_config(&state.home, settings);
                    crate::systemd_notify::reloaded(&crate::systemd_notify::status_line(state).await);
                }
            }
        }
    }
}
