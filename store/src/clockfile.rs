//! clock.json: `{"value", "node_id", "updated_at"}`, pretty-printed with an
//! indent of 2 as Python's `json.dump(..., indent=2)` writes it, mode 0600,
//! replaced atomically.
//!
//! The spec-kitty CLI writes this file too (it ticks a private copy of the
//! clock and saves it), so the ledger watches it: [`FileId`] is what a `stat`
//! tells about the file, cheap enough to compare before every commit.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub value: u64,
    pub node_id: String,
    pub updated_at: String,
}

/// What reading clock.json found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClockFile {
    Missing,
    Valid {
        value: u64,
        node_id: Option<String>,
    },
    /// Unreadable or not the contract's shape; the reason says which.
    Corrupt(String),
}

impl ClockFile {
    pub fn value(&self) -> u64 {
        match self {
            Self::Valid { value, .. } => *value,
            _ => 0,
        }
    }
}

/// Which file a path names and its state: replaced (a new inode) or written in
/// place (size, mtime), any write by anyone changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl FileId {
    fn of(m: &std::fs::Metadata) -> Self {
        Self {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        }
    }
}

/// The file at `path` now, or `None` when there is none.
pub fn stat(path: &Path) -> Option<FileId> {
    std::fs::metadata(path).ok().map(|m| FileId::of(&m))
}

pub fn read(path: &Path) -> ClockFile {
    /// A checkpoint is under 200 bytes; anything far larger is not one.
    const MAX_FILE_BYTES: u64 = 64 * 1024;
    let bytes = match fsutil::read_state_file(path, MAX_FILE_BYTES) {
        Ok(Some(b)) => b,
        Ok(None) => return ClockFile::Missing,
        Err(e) => return ClockFile::Corrupt(e.problem.to_string()),
    };
    let v: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return ClockFile::Corrupt(format!("not JSON: {e}")),
    };
    let value = match v
        .get("value")
        .map(|x| kitty_proto::envelope::lamport(Some(x)))
    {
        Some(Ok(x)) => x,
        _ => return ClockFile::Corrupt("\"value\" is not an integer from 0 to 2^53-1".into()),
    };
    let node_id = v
        .get("node_id")
        .and_then(|n| n.as_str())
        .filter(|n| crate::node_id::is_valid(n))
        .map(str::to_owned);
    ClockFile::Valid { value, node_id }
}

fn render(value: u64, node_id: &str) -> String {
    let cp = Checkpoint {
        value,
        node_id: node_id.to_owned(),
        updated_at: kitty_proto::rules::format_utc(chrono::Utc::now()),
    };
    serde_json::to_string_pretty(&cp).expect("a checkpoint always serialises")
}

/// Writes the checkpoint atomically and durably (fsync, rename, directory
/// fsync), 0600.
pub fn write(path: &Path, value: u64, node_id: &str) -> std::io::Result<()> {
    fsutil::atomic_write(path, render(value, node_id).as_bytes(), 0o600)
}

/// Replaces the checkpoint atomically (a temporary file put in its place), 0600,
/// without waiting for the disk: cheap enough to follow the clock, since the
/// high-water mark in queue.db, not this file, is what survives a crash.
/// Returns the [`FileId`] of the file written.
pub fn replace(path: &Path, value: u64, node_id: &str) -> std::io::Result<FileId> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".clock.json.{}.{}.tmp",
        std::process::id(),
        crate::ids::new_ulid()
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(render(value, node_id).as_bytes())?;
        let id = FileId::of(&f.metadata()?);
        swap_into_place(&tmp, path)?;
        Ok(id)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Puts `tmp` at `path` atomically. Renaming over an existing file makes ext4
/// flush the new one first (auto_da_alloc: over a millisecond, per commit);
/// exchanging the two names is as atomic for a reader and costs microseconds.
/// The old file, now at `tmp`, is removed after.
fn swap_into_place(tmp: &Path, path: &Path) -> std::io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    use rustix::io::Errno;
    match renameat_with(CWD, tmp, CWD, path, RenameFlags::EXCHANGE) {
        Ok(()) => {
            if let Err(e) = std::fs::remove_file(tmp) {
                tracing::warn!("cannot remove the old clock.json at {}: {e}", tmp.display());
            }
            Ok(())
        }
        // No clock.json yet, or a file system that cannot exchange names.
        Err(Errno::NOENT | Errno::INVAL | Errno::NOSYS | Errno::NOTSUP) => {
            std::fs::rename(tmp, path)
        }
        Err(e) => Err(e.into()),
    }
}

/// clock.json as a writer of the clock keeps it: at or above every value
/// issued (rewritten cheaply, see [`replace`], when a commit passes what it
/// holds), re-read whenever someone else wrote it, and never lowered.
#[derive(Debug)]
pub struct Watched {
    path: PathBuf,
    node_id: String,
    /// The file as we last saw it, whoever wrote it.
    seen: Option<FileId>,
    /// The value of our own last write, while the file is still that write.
    ours: Option<u64>,
    /// How far ahead of the clock a write puts the file (0: exactly at it).
    headroom: u64,
    /// A write failed and was not yet followed by one that succeeded.
    failing: bool,
}

/// What changed in clock.json since we last looked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Noticed {
    Nothing,
    /// Someone else wrote a valid checkpoint with this value.
    Value(u64),
    /// Someone else wrote it, and it is unusable (the reason says why).
    Unusable(String),
    /// Someone removed it.
    Removed,
}

impl Watched {
    /// Starts watching `path`, as `seen` found it when its value was last read.
    pub fn new(path: PathBuf, node_id: String, seen: Option<FileId>) -> Self {
        Self {
            path,
            node_id,
            seen,
            ours: None,
            headroom: 0,
            failing: false,
        }
    }

    /// From now on a write puts the file `headroom` values ahead of the clock
    /// (never beyond [`kitty_proto::MAX_LAMPORT`]), so that the file is
    /// rewritten once per `headroom` values instead of once per commit.
    pub fn set_headroom(&mut self, headroom: u64) {
        self.headroom = headroom;
    }

    /// The value the file holds by our own write, while it is still that write.
    pub fn held(&self) -> Option<u64> {
        self.ours
    }

    /// Whether our own last write, still in place as far as we last looked,
    /// holds `value` or more: then there is nothing to write.
    pub fn covers(&self, value: u64) -> bool {
        self.ours.is_some_and(|held| held >= value)
    }

    /// One `stat`; a read only when the file changed since we last looked.
    pub fn notice(&mut self) -> Noticed {
        let now = stat(&self.path);
        if now == self.seen {
            return Noticed::Nothing;
        }
        self.seen = now;
        self.ours = None;
        if now.is_none() {
            return Noticed::Removed;
        }
        match read(&self.path) {
            ClockFile::Valid { value, .. } => Noticed::Value(value),
            ClockFile::Corrupt(why) => Noticed::Unusable(why),
            ClockFile::Missing => Noticed::Removed,
        }
    }

    /// Makes the file say at least `value` (plus the headroom), unless our
    /// own last write, still in place, already covers it. The caller noticed
    /// the file first and never passes a lower value than it holds. A failure
    /// leaves the file as it was, for the next try.
    pub fn publish(&mut self, value: u64) -> std::io::Result<()> {
        if self.covers(value) {
            return Ok(());
        }
        let target = value
            .saturating_add(self.headroom)
            .min(kitty_proto::MAX_LAMPORT)
            .max(value);
        match replace(&self.path, target, &self.node_id) {
            Ok(id) => {
                self.seen = Some(id);
                self.ours = Some(target);
                if std::mem::take(&mut self.failing) {
                    tracing::info!("clock.json is written again");
                }
                Ok(())
            }
            Err(e) => {
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(
                        "cannot update {}: {e}; queue.db's high-water mark keeps the clock, \
                         and the file is written again after the next commit",
                        self.path.display()
                    );
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_python_layout() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("clock.json");
        assert_eq!(read(&p), ClockFile::Missing);
        write(&p, 42, "3f9a0c1b2d4e").unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.starts_with(
                "{\n  \"value\": 42,\n  \"node_id\": \"3f9a0c1b2d4e\",\n  \"updated_at\": \""
            ),
            "{text}"
        );
        assert_eq!(
            read(&p),
            ClockFile::Valid {
                value: 42,
                node_id: Some("3f9a0c1b2d4e".into())
            }
        );
    }

    #[test]
    fn any_write_changes_the_file_id() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("clock.json");
        assert_eq!(stat(&p), None);
        let ours = replace(&p, 7, "3f9a0c1b2d4e").unwrap();
        assert_eq!(stat(&p), Some(ours), "the id returned is the file's");
        assert_eq!(read(&p).value(), 7);
        let again = replace(&p, 7, "3f9a0c1b2d4e").unwrap();
        assert_ne!(again, ours, "replaced: a new file");
        // Written in place, as a tool without atomic writes does.
        std::fs::write(&p, r#"{"value": 9}"#).unwrap();
        assert_ne!(stat(&p), Some(again));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn with_headroom_the_file_is_rewritten_only_when_the_clock_passes_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("clock.json");
        let mut w = Watched::new(p.clone(), "3f9a0c1b2d4e".into(), None);
        w.set_headroom(1000);
        assert_eq!(w.notice(), Noticed::Nothing);
        w.publish(1).unwrap();
        assert_eq!(read(&p).value(), 1001, "ahead of the clock");
        let first = stat(&p);
        for v in [2, 500, 1001] {
            assert_eq!(w.notice(), Noticed::Nothing);
            w.publish(v).unwrap();
            assert_eq!(stat(&p), first, "{v} is covered: not rewritten");
        }
        w.publish(1002).unwrap();
        assert_eq!(read(&p).value(), 2002);
        assert_eq!(w.held(), Some(2002));

        // Another process writes a lower value: it is noticed, and the next
        // publish raises the file again even for a value we had covered.
        write(&p, 40, "abcdefabcdef").unwrap();
        assert_eq!(w.notice(), Noticed::Value(40));
        assert_eq!(w.held(), None);
        w.publish(1500).unwrap();
        assert_eq!(read(&p).value(), 2500);

        // Never beyond the contract's range, never below the value itself.
        let max = kitty_proto::MAX_LAMPORT;
        w.publish(max - 10).unwrap();
        assert_eq!(read(&p).value(), max);
        w.publish(max).unwrap();
        assert_eq!(read(&p).value(), max);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn without_headroom_the_file_is_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("clock.json");
        let mut w = Watched::new(p.clone(), "3f9a0c1b2d4e".into(), None);
        w.publish(5).unwrap();
        assert_eq!(read(&p).value(), 5);
        w.publish(6).unwrap();
        assert_eq!(read(&p).value(), 6);
    }

    #[test]
    fn corrupt_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("clock.json");
        for bad in [
            "{",
            "[]",
            r#"{"value":"7"}"#,
            r#"{"value":-1}"#,
            r#"{"value":1.5}"#,
            r#"{"value":9007199254740992}"#,
            r#"{"value":18446744073709551615}"#,
        ] {
            std::fs::write(&p, bad).unwrap();
            assert!(matches!(read(&p), ClockFile::Corrupt(_)), "{bad}");
        }
        std::fs::write(&p, vec![b' '; 64 * 1024 + 1]).unwrap();
        match read(&p) {
            ClockFile::Corrupt(why) => assert!(why.contains("over the limit"), "{why}"),
            other => panic!("{other:?}"),
        }
        std::fs::write(&p, r#"{"value": 9}"#).unwrap();
        assert_eq!(
            read(&p),
            ClockFile::Valid {
                value: 9,
                node_id: None
            }
        );
    }

    #[test]
    fn a_fifo_is_corrupt_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("clock.json");
        crate::sys::mkfifo(&p);
        match read(&p) {
            ClockFile::Corrupt(why) => assert!(why.contains("FIFO"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
