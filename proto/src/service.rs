//! Where the service files live and what they are called, for `install`,
//! `uninstall` and the start hint of `status`.

use std::path::{Path, PathBuf};

pub const SYSTEMD_SERVICE: &str = "kitty-syncd.service";
pub const SYSTEMD_SOCKET: &str = "kitty-syncd.socket";
pub const LAUNCHD_LABEL: &str = "dev.spec-kitty.kitty-syncd";

/// `$XDG_CONFIG_HOME/systemd/user`, else `~/.config/systemd/user`.
pub fn systemd_user_dir(user_home: &Path, xdg_config_home: Option<&Path>) -> PathBuf {
    match xdg_config_home.filter(|p| p.is_absolute()) {
        Some(x) => x.join("systemd/user"),
        None => user_home.join(".config/systemd/user"),
    }
}

/// `~/Library/LaunchAgents/dev.spec-kitty.kitty-syncd.plist`
pub fn launchd_plist(user_home: &Path) -> PathBuf {
    user_home
        .join("Library/LaunchAgents")
        .join(format!("{LAUNCHD_LABEL}.plist"))
}

/// `~/Library/Logs/kitty-syncd`
pub fn launchd_log_dir(user_home: &Path) -> PathBuf {
    user_home.join("Library/Logs/kitty-syncd")
}
