//! Advisory file locks (flock) that say who may do what in `<home>`.
//!
//! - `kitty-syncd.lock`: one daemon per home; holds the running daemon's pid.
//! - `clock.lock`: the holder owns the Lamport clock. The daemon holds it for its
//!   whole life; a client takes it only to queue an event directly while no
//!   daemon runs. The kernel drops both when the holder dies, even by `kill -9`.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct Held {
    file: File,
}

impl Held {
    pub fn file(&self) -> &File {
        &self.file
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

/// Takes the lock if it is free now.
pub fn try_lock(path: &Path) -> std::io::Result<Option<Held>> {
    let file = open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(Held { file })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(e),
    }
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
            let mut f = &held.file;
            f.set_len(0).map_err(io)?;
            f.rewind().map_err(io)?;
            writeln!(f, "{}", std::process::id()).map_err(io)?;
            f.sync_all().map_err(io)?;
            Ok(held)
        }
        None => Err(InstanceError::AlreadyRuns {
            pid: running_pid(path).unwrap_or_else(|| "unknown".into()),
        }),
    }
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
}
