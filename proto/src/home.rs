//! Where everything lives: `<home>` and the files in it (CONTRACT.md §1).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Environment variable that moves all state.
pub const HOME_ENV: &str = "SPEC_KITTY_HOME";
/// Environment variable that overrides the socket path.
pub const SOCKET_ENV: &str = "KITTY_SYNCD_SOCKET";

/// The longest socket path the kernel accepts: `sun_path` is 108 bytes on
/// Linux and 104 on macOS, one of them the terminating NUL.
#[cfg(target_os = "linux")]
pub const MAX_SOCKET_PATH: usize = 107;
#[cfg(not(target_os = "linux"))]
pub const MAX_SOCKET_PATH: usize = 103;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HomeError {
    #[error("cannot find the home directory: neither {HOME_ENV} nor HOME is set")]
    NoHome,
    #[error(
        "socket path {path} is {len} bytes, longer than the {MAX_SOCKET_PATH} a Unix socket allows; \
         set {SOCKET_ENV} to a shorter path"
    )]
    SocketPathTooLong { path: String, len: usize },
}

/// `<home>`: `$SPEC_KITTY_HOME` when set and not empty, else `~/.spec-kitty`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    dir: PathBuf,
}

impl Home {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Reads `SPEC_KITTY_HOME`, then `HOME`. An empty variable counts as
    /// unset, as it does for the spec-kitty CLI (`if env_home := ...`).
    pub fn from_env() -> Result<Self, HomeError> {
        Self::from_vars(std::env::var_os(HOME_ENV), std::env::var_os("HOME"))
    }

    fn from_vars(spec_home: Option<OsString>, home: Option<OsString>) -> Result<Self, HomeError> {
        let set = |v: Option<OsString>| v.filter(|v| !v.is_empty());
        match (set(spec_home), set(home)) {
            (Some(dir), _) => Ok(Self::new(dir)),
            (None, Some(home)) => Ok(Self::new(PathBuf::from(home).join(".spec-kitty"))),
            (None, None) => Err(HomeError::NoHome),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The Lamport clock checkpoint.
    pub fn clock_json(&self) -> PathBuf {
        self.dir.join("clock.json")
    }

    /// The offline queue shared with the spec-kitty CLI.
    pub fn queue_db(&self) -> PathBuf {
        self.dir.join("queue.db")
    }

    pub fn config_toml(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    pub fn credentials(&self) -> PathBuf {
        self.dir.join("credentials")
    }

    pub fn credentials_lock(&self) -> PathBuf {
        self.dir.join("credentials.lock")
    }

    /// Held by the running daemon for its whole life; holds its pid.
    pub fn daemon_lock(&self) -> PathBuf {
        self.dir.join("kitty-syncd.lock")
    }

    /// Whoever holds this lock owns the Lamport clock: the daemon for its whole
    /// life, or a client queueing directly while no daemon runs.
    pub fn clock_lock(&self) -> PathBuf {
        self.dir.join("clock.lock")
    }

    /// Events a client could not hand over because the daemon was alive but not
    /// answering; the daemon stamps and queues them when it recovers.
    pub fn spool_dir(&self) -> PathBuf {
        self.dir.join("spool")
    }

    /// Events the Python package's spec-kitty transport could not hand over
    /// (the daemon refused them), one JSON line each with the daemon's
    /// message; `status` counts them.
    pub fn refused_log(&self) -> PathBuf {
        self.dir.join("kitty-sync-refused.jsonl")
    }

    pub fn default_socket(&self) -> PathBuf {
        self.dir.join("kitty-syncd.sock")
    }

    /// `KITTY_SYNCD_SOCKET` when set and not empty, else
    /// `<home>/kitty-syncd.sock`; refused when too long for a Unix socket.
    pub fn socket_path(&self) -> Result<PathBuf, HomeError> {
        socket_path_from(self, std::env::var_os(SOCKET_ENV))
    }
}

fn socket_path_from(home: &Home, over: Option<OsString>) -> Result<PathBuf, HomeError> {
    let path = match over {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => home.default_socket(),
    };
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(HomeError::SocketPathTooLong {
            path: path.display().to_string(),
            len,
        });
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_rules() {
        let h = Home::from_vars(Some("/x/y".into()), Some("/home/a".into())).unwrap();
        assert_eq!(h.dir(), Path::new("/x/y"));
        let h = Home::from_vars(None, Some("/home/a".into())).unwrap();
        assert_eq!(h.dir(), Path::new("/home/a/.spec-kitty"));
        assert_eq!(Home::from_vars(None, None), Err(HomeError::NoHome));
        // Empty is unset, as for the spec-kitty CLI.
        let h = Home::from_vars(Some("".into()), Some("/home/a".into())).unwrap();
        assert_eq!(h.dir(), Path::new("/home/a/.spec-kitty"));
        assert_eq!(
            Home::from_vars(Some("".into()), Some("".into())),
            Err(HomeError::NoHome)
        );
    }

    #[test]
    fn socket_rules() {
        let h = Home::new("/tmp/k");
        assert_eq!(
            socket_path_from(&h, None).unwrap(),
            Path::new("/tmp/k/kitty-syncd.sock")
        );
        assert_eq!(
            socket_path_from(&h, Some("/s.sock".into())).unwrap(),
            Path::new("/s.sock")
        );
        assert_eq!(
            socket_path_from(&h, Some("".into())).unwrap(),
            Path::new("/tmp/k/kitty-syncd.sock")
        );
        let long = Home::new(format!("/tmp/{}", "a".repeat(120)));
        let err = socket_path_from(&long, None).unwrap_err();
        assert!(err.to_string().contains(SOCKET_ENV), "{err}");
    }
}
