//! Keeps the socket where clients look for it.
//!
//! A deleted socket file (a cleanup of `<home>`, a careless `rm`) leaves the
//! daemon running but unreachable, and `status` saying NOT RUNNING. Every
//! [`CHECK_EVERY`] the guard looks at the path:
//!
//! - our socket (the file we bound): nothing to do;
//! - nothing there: bind it again and hand the new listener to the accept loop;
//! - another socket that answers: another process serves there, and we never
//!   take it over (we log it, once);
//! - a socket that does not answer: a stale one, replaced like at start-up;
//! - anything else: left alone (logged once).
//!
//! All of that only while this daemon still holds the home's instance lock.
//! A removed lock file is taken back by the instance guard in `startup`; if
//! the path names a file another process holds, another daemon may own the
//! home now: the instance guard raises the flag this guard reads, the guard
//! reports it lost, and the daemon stops rather than compete.
//!
//! Not used when the service manager passed the socket in: the path is its
//! to keep.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};

pub const CHECK_EVERY: Duration = Duration::from_secs(2);
/// How long another socket at our path may take to accept before it counts as dead.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// What the guard tells the accept loop.
pub enum GuardEvent {
    /// The socket was bound again: accept on this listener from now on.
    Rebound(UnixListener),
    /// The instance lock is gone: stop.
    Lost(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

pub struct SocketGuard {
    path: PathBuf,
    /// The socket file we bound last, shared with [`SocketOwner`].
    ours: Arc<Mutex<FileId>>,
    /// Raised by the instance guard while another process holds the instance lock's path.
    instance_lost: Arc<AtomicBool>,
    tick: tokio::time::Interval,
    /// The last problem logged, so that a lasting one is logged once.
    noted: Option<String>,
}

impl SocketGuard {
    /// `socket` was just bound by us.
    pub fn new(socket: &Path, instance_lost: Arc<AtomicBool>) -> io::Result<Self> {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(Self {
            path: socket.to_path_buf(),
            ours: Arc::new(Mutex::new(FileId::of(&std::fs::symlink_metadata(socket)?))),
            instance_lost,
            tick,
            noted: None,
        })
    }

    /// Who may remove the socket at shutdown.
    pub fn owner(&self) -> SocketOwner {
        SocketOwner {
            path: self.path.clone(),
            ours: Some(self.ours.clone()),
        }
    }

    fn ours(&self) -> FileId {
        *self.ours.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until there is something to hand over.
    pub async fn next(&mut self) -> GuardEvent {
        loop {
            self.tick.tick().await;
            if let Some(ev) = self.check().await {
                return ev;
            }
        }
    }

    async fn check(&mut self) -> Option<GuardEvent> {
        if self.instance_lost.load(Ordering::Acquire) {
            return Some(GuardEvent::Lost(
                "another process holds the home's instance lock now: this daemon no longer \
                 owns the home, so it stops (another daemon may run for this home now)"
                    .to_owned(),
            ));
        }
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if FileId::of(&m) == self.ours() => {
                self.noted = None;
                None
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.rebind("was deleted"),
            Ok(m) if m.file_type().is_socket() => {
                if answers(&self.path).await {
                    self.note(format!(
                        "another process now listens on {}; not taking it over, so this \
                         daemon cannot be reached until that socket goes away",
                        self.path.display()
                    ));
                    return None;
                }
                if let Err(e) = std::fs::remove_file(&self.path) {
                    self.note(format!(
                        "cannot remove the stale socket {}: {e}",
                        self.path.display()
                    ));
                    return None;
                }
                self.rebind("was replaced by a dead socket")
            }
            Ok(_) => {
                self.note(format!(
                    "{} is no longer a socket; leaving it alone, so this daemon cannot be reached",
                    self.path.display()
                ));
                None
            }
            Err(e) => {
                self.note(format!("cannot look at {}: {e}", self.path.display()));
                None
            }
        }
    }

    fn rebind(&mut self, what_happened: &str) -> Option<GuardEvent> {
        match bind_new(&self.path) {
            Ok((listener, id)) => {
                tracing::warn!(
                    "the socket {} {what_happened}; listening there again",
                    self.path.display()
                );
                *self.ours.lock().unwrap_or_else(|p| p.into_inner()) = id;
                self.noted = None;
                Some(GuardEvent::Rebound(listener))
            }
            Err(e) => {
                // Someone may have bound it in between: the next check sees whose it is.
                self.note(format!("cannot bind {} again: {e}", self.path.display()));
                None
            }
        }
    }

    fn note(&mut self, problem: String) {
        if self.noted.as_deref() != Some(problem.as_str()) {
            tracing::error!("{problem}");
            self.noted = Some(problem);
        }
    }
}

/// Binds a socket where there is none (never replacing one), 0600.
fn bind_new(path: &Path) -> io::Result<(UnixListener, FileId)> {
    let std_listener = std::os::unix::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    std_listener.set_nonblocking(true)?;
    let id = FileId::of(&std::fs::symlink_metadata(path)?);
    Ok((UnixListener::from_std(std_listener)?, id))
}

/// Whether something accepts connections on the socket at `path`.
async fn answers(path: &Path) -> bool {
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, UnixStream::connect(path)).await,
        Ok(Ok(_))
    )
}

/// The right to remove the socket file at shutdown: only while it is still
/// the one we bound, never another process's.
pub struct SocketOwner {
    path: PathBuf,
    /// None: the path is the service manager's, and not ours to remove.
    ours: Option<Arc<Mutex<FileId>>>,
}

impl SocketOwner {
    /// The owner of a socket the service manager passed in: removes nothing.
    pub fn service_manager(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            ours: None,
        }
    }

    pub fn remove_if_ours(&self) {
        let Some(ours) = &self.ours else { return };
        let ours = *ours.lock().unwrap_or_else(|p| p.into_inner());
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| FileId::of(&m) == ours) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
