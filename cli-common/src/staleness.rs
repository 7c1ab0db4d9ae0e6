//! Staleness is loud: when events are queued but will not reach the server
//! (no daemon, a daemon that does not answer, a session the server refused,
//! an oldest event older than `[sync] stale_after_secs`), `emit` says so in
//! one line on stderr with the command that fixes it, at most once an hour
//! per home ([`crate::warn_once`]), and `status` says so on its first line.
//! The client tells an emit's condition (`kitty_sync::staleness`).

use kitty_proto::api::{ConnectionState, DeliveryHealth, Status, Stuck, Supervisor};
use kitty_proto::home::Home;

/// What is wrong with delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// No daemon of ours answered: the client queued the event itself.
    NotRunning { why: Option<String> },
    /// A daemon holds the home but did not answer: the event is in the spool.
    NotAnswering { why: Option<String> },
    /// Delivery is stuck, by the daemon's own account.
    Stuck {
        stuck: Stuck,
        state: ConnectionState,
    },
}

impl Condition {
    pub fn of_health(h: &DeliveryHealth) -> Option<Self> {
        h.stuck().map(|stuck| Self::Stuck {
            stuck,
            state: h.state,
        })
    }

    /// What a running daemon's status says, if delivery is stuck.
    pub fn of_status(s: &Status) -> Option<Self> {
        s.health.as_ref().and_then(Self::of_health)
    }

    /// One line: what is wrong, and the command that fixes it.
    pub fn describe(&self, home: &Home) -> String {
        match self {
            Self::NotRunning { why } => format!(
                "kitty-syncd is not running{}, so queued events are not sent; start it with: {}",
                why.as_deref()
                    .map(|w| format!(" ({w})"))
                    .unwrap_or_default(),
                crate::status::start_hint()
            ),
            Self::NotAnswering { why } => format!(
                "kitty-syncd runs but did not answer{}, so events wait in the spool; \
                 `kitty-sync status` shows its state; restart it with: {}",
                why.as_deref()
                    .map(|w| format!(" ({w})"))
                    .unwrap_or_default(),
                restart_hint(None)
            ),
            Self::Stuck {
                stuck: Stuck::AuthRequired,
                ..
            } => format!(
                "queued events are not sent: the server needs a new login; log in with: \
                 kitty-sync login --server {} --username <you>",
                server_url(home)
            ),
            Self::Stuck {
                stuck: Stuck::Old { age_secs, .. },
                state,
            } => format!(
                "the oldest queued event has waited {} (connection {state}); \
                 `kitty-sync status` shows why, `kitty-sync sync --wait` tries again now",
                crate::status::human_duration(*age_secs)
            ),
        }
    }
}

/// `[sync] server_url` of config.toml, as the daemon would read it.
fn server_url(home: &Home) -> String {
    kitty_store::config::load(&home.config_toml())
        .unwrap_or_default()
        .server_url
}

/// The command that restarts the daemon, for the way it was started (when
/// known), else for the service installed here.
pub fn restart_hint(supervisor: Option<Supervisor>) -> String {
    use kitty_proto::service;
    let installed = |p: std::path::PathBuf| p.exists();
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let xdg = std::env::var_os("XDG_CONFIG_HOME").map(std::path::PathBuf::from);
    let unit = home
        .as_deref()
        .map(|h| service::systemd_user_dir(h, xdg.as_deref()).join(service::SYSTEMD_SERVICE));
    let plist = home.as_deref().map(service::launchd_plist);
    let systemd = supervisor == Some(Supervisor::Systemd)
        || (supervisor.is_none() && unit.is_some_and(installed));
    let launchd = supervisor == Some(Supervisor::Launchd)
        || (supervisor.is_none() && plist.is_some_and(installed));
    if systemd {
        format!("systemctl --user restart {}", service::SYSTEMD_SERVICE)
    } else if launchd {
        let uid = kitty_store::sys::uid();
        format!(
            "launchctl kickstart -k gui/{uid}/{}",
            service::LAUNCHD_LABEL
        )
    } else {
        "stop it (SIGTERM) and start it again: kitty-syncd run".into()
    }
}
