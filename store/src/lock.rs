//! Advisory file locks (flock) that say who may do what in `<home>`.
//!
//! - `kitty-syncd.lock`: one daemon per home; holds the running daemon's pid.
//! - `clock.lock`: the holder owns the Lamport clock. The daemon holds it for its
//!   whole life; a client takes it only to queue an event directly while no
//!   daemon runs. The kernel drops both when the holder dies, even by `kill -9`.
//!
//! A flock belongs to an inode, not to a path: once the file is unlinked (`rm
//! <home>/*.lock`) or replaced, the next process to open the path creates a new
//! file and locks it too, and there are two owners. So a lock counts only while
//! its path still names the locked inode: [`try_lock`] checks that after
//! taking it, and [`Held::is_current`] / [`Held::reassert`] let a long-lived
//! holder check it again (one `stat`) and take the path back.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct Held {
    file: File,
    path: PathBuf,
    /// `(st_dev, st_ino)` of the locked file.
    inode: (u64, u64),
}

/// What [`Held::reassert`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// The path still names our locked file.
    Kept,
    /// The path had been removed or replaced; we locked the file it names now.
    Retaken,
    /// The path names a file another process holds locked.
    Lost,
}

impl Held {
    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the lock's path still names the file we hold locked.
    pub fn is_current(&self) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.inode)
    }

    /// Makes sure the path names a file we hold locked: when it was removed or
    /// replaced, locks the file there now (creating it), letting go of the old one.
    pub fn reassert(&mut self) -> std::io::Result<Ownership> {
        if self.is_current() {
            return Ok(Ownership::Kept);
        }
        match try_lock(&self.path)? {
            Some(fresh) => {
                *self = fresh;
                Ok(Ownership::Retaken)
            }
            None => Ok(Ownership::Lost),
        }
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        // Never through a planted symlink (the daemon lock is truncated and
        // written), never waiting on a FIFO.
        .custom_flags(crate::fsutil::LOCK_FILE_FLAGS)
        .open(path);
    crate::fsutil::checked_lock_file(path, opened)
}

/// Attempts at locking a path that keeps being replaced under us.
const RACE_RETRIES: usize = 8;

/// Takes the lock if it is free now. The lock is ours only if, once locked,
/// the path still names the same file: another process may have removed or
/// replaced it between our open and our flock.
pub fn try_lock(path: &Path) -> std::io::Result<Option<Held>> {
    for _ in 0..RACE_RETRIES {
        let file = open(path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => return Err(e),
        }
        let meta = file.metadata()?;
        let held = Held {
            file,
            path: path.to_path_buf(),
            inode: (meta.dev(), meta.ino()),
        };
        if held.is_current() {
            return Ok(Some(held));
        }
    }
    Err(std::io::Error::other(format!(
        "{} is removed or replaced as fast as it is locked",
        path.display()
    )))
}

/// Takes the lock, waiting up to `patience` for its holder to let go.
pub fn lock_within(path: &Path, patience: Duration) -> std::io::Result<Option<Held>> {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(held) = try_lock(path)? {
            return Ok(Some(held));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("kitty-syncd already runs (pid {pid}) for this home; `kitty-syncd status` shows it")]
    AlreadyRuns { pid: String },
    #[error(
        "another kitty-syncd answers on {socket} (its kitty-syncd.lock was removed?); \
         refusing to replace its socket"
    )]
    SocketInUse { socket: String },
    #[error("cannot use the daemon lock {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Takes the single-instance lock and records our pid in it. Waits a moment
/// first, since `status` may hold the lock shared for the instant of a check.
pub fn claim_instance(path: &Path) -> Result<Held, InstanceError> {
    let io = |source| InstanceError::Io {
        path: path.display().to_string(),
        source,
    };
    match lock_within(path, Duration::from_millis(500)).map_err(io)? {
        Some(held) => {
            write_pid(&held).map_err(io)?;
            Ok(held)
        }
        None => Err(InstanceError::AlreadyRuns {
            pid: running_pid(path).unwrap_or_else(|| "unknown".into()),
        }),
    }
}

/// Records our pid in a held daemon lock (after [`Held::reassert`] retook it).
pub fn write_pid(held: &Held) -> std::io::Result<()> {
    let mut f = &held.file;
    f.set_len(0)?;
    f.rewind()?;
    writeln!(f, "{}", std::process::id())?;
    f.sync_all()
}

/// The pid recorded in a daemon lock file.
pub fn running_pid(path: &Path) -> Option<String> {
    let mut s = String::new();
    crate::fsutil::open_regular(path, crate::fsutil::Symlinks::Refuse)
        .ok()??
        .0
        .take(64)
        .read_to_string(&mut s)
        .ok()?;
    let pid = s.trim();
    (!pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())).then(|| pid.to_owned())
}

/// Whether some process holds the lock at `path` right now (without taking it
/// for longer than the check).
pub fn is_held(path: &Path) -> bool {
    match crate::fsutil::open_regular(path, crate::fsutil::Symlinks::Refuse) {
        Ok(Some((f, _))) => matches!(f.try_lock_shared(), Err(TryLockError::WouldBlock)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_instance_is_refused_with_pid() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kitty-syncd.lock");
        let held = claim_instance(&p).unwrap();
        let err = claim_instance(&p).unwrap_err();
        assert!(
            err.to_string().contains(&std::process::id().to_string()),
            "{err}"
        );
        assert!(is_held(&p));
        drop(held);
        assert!(!is_held(&p));
        claim_instance(&p).unwrap();
    }

    #[test]
    fn lock_within_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("clock.lock");
        let _held = try_lock(&p).unwrap().unwrap();
        assert!(
            lock_within(&p, Duration::from_millis(20))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_removed_lock_file_is_noticed_and_taken_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("clock.lock");
        let mut ours = try_lock(&p).unwrap().unwrap();
        assert!(ours.is_current());
        assert_eq!(ours.reassert().unwrap(), Ownership::Kept);

        std::fs::remove_file(&p).unwrap();
        assert!(!ours.is_current(), "an unlinked lock no longer counts");
        assert_eq!(ours.reassert().unwrap(), Ownership::Retaken);
        assert!(ours.is_current() && is_held(&p));
        assert!(try_lock(&p).unwrap().is_none(), "the path is ours again");

        // Replaced, and the new file locked by someone else first: we lost it.
        std::fs::remove_file(&p).unwrap();
        let theirs = try_lock(&p).unwrap().unwrap();
        assert_eq!(ours.reassert().unwrap(), Ownership::Lost);
        drop(theirs);
        assert_eq!(ours.reassert().unwrap(), Ownership::Retaken);
    }
}
