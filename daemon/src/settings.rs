//! config.toml and credentials as the daemon currently believes them, reloaded
//! when either file changes ([`crate::file_watch`] watches `<home>`, so
//! editors that replace the file by rename are seen too).

use std::sync::Arc;

use kitty_proto::home::Home;
use kitty_store::config::{self, Config};
use kitty_store::credentials::{self, CredentialsFile};
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct Settings {
    pub config: Config,
    pub credentials: CredentialsFile,
    pub config_loaded_at: chrono::DateTime<chrono::Utc>,
}

impl Settings {
    pub fn team_slug(&self) -> &str {
        self.credentials.team_slug()
    }
}

pub type SettingsRx = watch::Receiver<Arc<Settings>>;

/// Quiet time after the last file event before the files are read again.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(200);
/// The longest a reload waits for a burst to settle.
const MAX_SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

/// Loads both files once; the config must be valid for the daemon to start.
pub fn load(home: &Home) -> Result<Settings, config::ConfigError> {
    Ok(Settings {
        config: config::load(&home.config_toml())?,
        credentials: read_credentials(home),
        config_loaded_at: chrono::Utc::now(),
    })
}

fn read_credentials(home: &Home) -> CredentialsFile {
    let creds = credentials::read(&home.credentials());
    if let CredentialsFile::Corrupt(why) = &creds {
        tracing::warn!("credentials file is unreadable ({why}); treating this user as logged out");
    }
    creds
}

/// Re-reads config.toml; a broken file keeps the settings we have, and says why.
pub fn reload_config(home: &Home, tx: &watch::Sender<Arc<Settings>>) {
    match config::load(&home.config_toml()) {
        Ok(config) => {
            let current = tx.borrow().clone();
            if current.config.log_filter != config.log_filter
                && let Some(now) = crate::logging::set_config_filter(config.log_filter.as_deref())
            {
                tracing::info!("log filter is now {now}");
            }
            if current.config != config {
                tracing::info!(max_queue_size = config.max_queue_size, server_url = %config.server_url, "config.toml reloaded");
            }
            tx.send_replace(Arc::new(Settings {
                config,
                config_loaded_at: chrono::Utc::now(),
                ..(*current).clone()
            }));
        }
        Err(e) => tracing::warn!("keeping the previous settings: {e}"),
    }
}

fn reload_credentials(home: &Home, tx: &watch::Sender<Arc<Settings>>) {
    let credentials = read_credentials(home);
    let current = tx.borrow().clone();
    if current.credentials != credentials {
        tracing::info!(team = credentials.team_slug(), "credentials changed");
        tx.send_replace(Arc::new(Settings {
            credentials,
            ..(*current).clone()
        }));
    }
}

/// Watches `<home>` and reloads whichever file changed. The returned watch
/// must be kept alive. See [`crate::file_watch`] for how, and why not notify's
/// watcher on Linux.
pub fn watch(
    home: Home,
    tx: watch::Sender<Arc<Settings>>,
) -> std::io::Result<crate::file_watch::FileWatch> {
    let (config, creds) = (home.config_toml(), home.credentials());
    let names = [&config, &creds]
        .iter()
        .map(|p| p.file_name().unwrap_or_default().to_owned())
        .collect();
    let (watcher, mut ev_rx) = crate::file_watch::watch(home.dir(), names)?;
    tokio::spawn(async move {
        while let Some(first) = ev_rx.recv().await {
            // A writer that truncates and then writes shows us an empty file
            // first: let the burst settle (bounded, so a busy file is still read).
            let mut events = vec![first];
            let deadline = tokio::time::Instant::now() + MAX_SETTLE;
            loop {
                let until = (tokio::time::Instant::now() + SETTLE).min(deadline);
                match tokio::time::timeout_at(until, ev_rx.recv()).await {
                    Ok(Some(ev)) => events.push(ev),
                    Ok(None) => return,
                    Err(_) => break,
                }
                if tokio::time::Instant::now() >= deadline {
                    break;
                }
            }
            if events.contains(&0) {
                reload_config(&home, &tx);
            }
            if events.contains(&1) {
                reload_credentials(&home, &tx);
            }
        }
    });
    Ok(watcher)
}
