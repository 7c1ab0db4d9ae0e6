//! The spool: events a client could not hand over because the daemon was alive
//! but not answering (and so still held `clock.lock`). The daemon stamps and
//! queues them when it recovers, then deletes them.
//!
//! Each event is a file `<home>/spool/<ULID>.json`. The name is a fresh ULID of
//! the writer's, never anything the producer wrote, and the file is created
//! complete without ever replacing another, so two events cannot share a file.
//! Every spooled event carries its event_id (a draft without one gets one
//! before it is written): the id the client reports is the id it is queued
//! under, and importing a file twice leaves one row.
//!
//! Whatever lands in `spool/` is either imported or moved to `spool/rejected/`
//! with the reason logged; `status` counts both. Only a write still in
//! progress (a young temporary file) is passed over.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use kitty_proto::Submission;
use kitty_proto::home::Home;
use kitty_proto::request::parse_one;
use kitty_proto::rules::Violation;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::fsutil::{self, Symlinks};
use crate::ledger::Job;

/// The largest entry: an event at the socket's request limit, with room for
/// the entry's own fields and an added event_id.
pub const MAX_ENTRY_BYTES: u64 = kitty_proto::MAX_BODY_BYTES as u64 + 1024;
/// A temporary file older than this belongs to a writer that died before
/// publishing it; younger ones may still be being written.
const STALE_TEMP: Duration = Duration::from_secs(60);
const REJECTED: &str = "rejected";

#[derive(Debug, Serialize, Deserialize)]
struct Entry<'a> {
    /// When the client made the event: its envelope keeps this time.
    made_at: DateTime<Utc>,
    #[serde(borrow)]
    event: &'a RawValue,
}

/// A spooled event: where it waits, and the event_id it will be queued under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spooled {
    pub path: PathBuf,
    pub event_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The event would be refused by the daemon, so it is not spooled.
    #[error("{0}")]
    Invalid(Violation),
    #[error("cannot spool the event into {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Spools one event: `event` as the client will hand it over, and
/// `submission`, what validating that text gave (the client validated it
/// already; the caller must pass the pair that belongs together). A draft
/// without an event_id is given a fresh one first.
pub fn write(
    home: &Home,
    event: &RawValue,
    submission: &Submission,
    made_at: DateTime<Utc>,
) -> Result<Spooled, SpoolError> {
    let len = event.get().len();
    if len > kitty_proto::MAX_BODY_BYTES {
        return Err(SpoolError::Invalid(Violation::new(
            "event",
            format!(
                "is {len} bytes; the limit is {}",
                kitty_proto::MAX_BODY_BYTES
            ),
        )));
    }
    let (event, event_id) = with_event_id(event, submission)?;
    let text = serde_json::to_vec(&Entry {
        made_at,
        event: &event,
    })
    .expect("a spool entry always serialises");
    debug_assert!(text.len() as u64 <= MAX_ENTRY_BYTES);
    let dir = home.spool_dir();
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| SpoolError::Io { path, source }
    };
    fsutil::ensure_private_subdir(&dir).map_err(io(&dir))?;
    loop {
        let path = dir.join(format!("{}.json", crate::ids::new_ulid()));
        match fsutil::create_new_atomic(&path, &text, 0o600) {
            Ok(()) => return Ok(Spooled { path, event_id }),
            // Another writer took this very name: take the next one.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io(&path)(e)),
        }
    }
}

/// The event as it will be spooled, and its event_id.
fn with_event_id(
    event: &RawValue,
    submission: &Submission,
) -> Result<(Box<RawValue>, String), SpoolError> {
    let owned = |text: String| RawValue::from_string(text).expect("valid JSON stays valid");
    if let Some(id) = submission.event_id() {
        return Ok((owned(event.get().to_owned()), id.to_owned()));
    }
    // Only a draft lacks an event_id, and a draft is stamped from its parsed
    // fields, so its text may be rewritten: `"event_id": null` keeps its place.
    let mut obj: Map<String, Value> = serde_json::from_str(event.get())
        .map_err(|_| SpoolError::Invalid(Violation::new("event", "must be a JSON object")))?;
    let id = crate::ids::new_ulid().to_string();
    obj.insert("event_id".into(), Value::String(id.clone()));
    let text = serde_json::to_string(&obj).expect("a JSON object serialises");
    Ok((owned(text), id))
}

fn is_temp(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// Everything in the spool that waits to be imported or rejected, oldest
/// event first (the names are ULIDs, which sort by time). Only `rejected/`
/// and writes still in progress are left out.
pub fn list(home: &Home) -> std::io::Result<Vec<PathBuf>> {
    let dir = home.spool_dir();
    if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_symlink()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{} is a symbolic link; refusing to follow it",
                dir.display()
            ),
        ));
    }
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for entry in rd {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == REJECTED {
            continue;
        }
        if is_temp(&name) {
            let age = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok());
            if age.is_none_or(|a| a < STALE_TEMP) {
                continue;
            }
        }
        files.push(entry.path());
    }
    files.sort();
    Ok(files)
}

/// How many entries wait in `spool/rejected/` for a person to look at.
pub fn rejected_count(home: &Home) -> u64 {
    std::fs::read_dir(home.spool_dir().join(REJECTED)).map_or(0, |rd| rd.count() as u64)
}

/// Reads and validates a spooled event, as the socket would have; `Ok(None)`
/// when it is gone. A file that is not a regular one of ours (a symlink, a
/// FIFO, another user's file), an unfinished write or an invalid entry is an
/// error that says why: it can never be queued.
pub fn read(path: &Path) -> Result<Option<Job>, String> {
    if path
        .file_name()
        .is_some_and(|n| is_temp(&n.to_string_lossy()))
    {
        return Err(format!(
            "a write that never finished (its writer stopped over {} s ago)",
            STALE_TEMP.as_secs()
        ));
    }
    let Some((file, meta)) =
        fsutil::open_regular(path, Symlinks::Refuse).map_err(|e| e.problem.to_string())?
    else {
        return Ok(None);
    };
    let ours = fsutil::euid();
    if std::os::unix::fs::MetadataExt::uid(&meta) != ours {
        return Err(fsutil::Problem::ForeignOwner {
            owner: std::os::unix::fs::MetadataExt::uid(&meta),
            ours,
        }
        .to_string());
    }
    let bytes = fsutil::read_bounded(path, file, &meta, MAX_ENTRY_BYTES)
        .map_err(|e| e.problem.to_string())?;
    let entry: Entry =
        serde_json::from_slice(&bytes).map_err(|e| format!("not a spool entry: {e}"))?;
    let event = parse_one(entry.event).map_err(|v| v.to_string())?;
    Ok(Some(Job {
        events: vec![event],
        made_at: Some(entry.made_at),
    }))
}

/// Moves an entry that can never be queued aside, to `spool/rejected/`, so it
/// is kept for a person to look at but not retried forever. An entry of the
/// same name already there is kept too: the new one gets a suffix.
pub fn reject(home: &Home, path: &Path) -> std::io::Result<PathBuf> {
    let dir = home.spool_dir().join(REJECTED);
    fsutil::ensure_private_subdir(&dir)?;
    let name = path
        .file_name()
        .map_or_else(|| "entry".into(), |n| n.to_string_lossy().into_owned());
    // Only the daemon's intake, one task, moves files in here.
    let mut to = dir.join(&name);
    while std::fs::symlink_metadata(&to).is_ok() {
        to = dir.join(format!("{name}.{}", crate::ids::new_ulid()));
    }
    std::fs::rename(path, &to)?;
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DRAFT: &str = r#"{"event_type":"WPCreated","payload":{"wp_id":"WP01","title":"T","feature_slug":"028-x"}}"#;

    fn raw(s: &str) -> &RawValue {
        serde_json::from_str(s).unwrap()
    }

    fn spool(home: &Home, event: &str) -> Spooled {
        let raw = raw(event);
        write(home, raw, &parse_one(raw).unwrap(), Utc::now()).unwrap()
    }

    #[test]
    fn round_trip_and_reject() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let ev = r#"{"event_type":"WPCreated","event_id":"01HX5ZQK3M8N9P0R1S2T3V4W5X","payload":{"wp_id":"WP01","title":"T","feature_slug":"028-x"}}"#;
        let s = spool(&home, ev);
        assert_eq!(s.event_id, "01HX5ZQK3M8N9P0R1S2T3V4W5X");
        let p = s.path;
        assert_eq!(list(&home).unwrap(), vec![p.clone()]);
        let job = read(&p).unwrap().unwrap();
        assert_eq!(job.events[0].event_id(), Some("01HX5ZQK3M8N9P0R1S2T3V4W5X"));
        std::fs::write(&p, "garbage").unwrap();
        assert!(read(&p).is_err());
        reject(&home, &p).unwrap();
        assert!(list(&home).unwrap().is_empty());
        assert_eq!(rejected_count(&home), 1);
        assert!(read(&p).unwrap().is_none(), "gone");
    }

    #[test]
    fn names_never_come_from_the_event_and_drafts_get_an_id() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let null_id = r#"{"event_type":"WPCreated","event_id":null,"payload":{"wp_id":"WP01","title":"T","feature_slug":"028-x"}}"#;
        let given = r#"{"event_type":"WPCreated","event_id":"01HX5ZQK3M8N9P0R1S2T3V4W5X","payload":{"wp_id":"WP01","title":"T","feature_slug":"028-x"}}"#;
        let spooled: Vec<Spooled> = [null_id, null_id, DRAFT, given, given]
            .iter()
            .map(|e| spool(&home, e))
            .collect();
        let mut paths: Vec<_> = spooled.iter().map(|s| s.path.clone()).collect();
        paths.sort();
        assert_eq!(list(&home).unwrap(), paths, "five files, none replaced");
        for s in &spooled {
            assert!(kitty_proto::rules::is_ulid(&s.event_id), "{s:?}");
            let stem = s.path.file_stem().unwrap().to_str().unwrap();
            assert!(kitty_proto::rules::is_ulid(stem), "{s:?}");
            let job = read(&s.path).unwrap().unwrap();
            assert_eq!(job.events[0].event_id(), Some(&*s.event_id), "{s:?}");
        }
        assert_ne!(spooled[0].event_id, spooled[1].event_id);
        assert_eq!(spooled[3].event_id, spooled[4].event_id);
        assert_ne!(spooled[3].path, spooled[4].path);
    }

    #[test]
    fn refuses_what_the_daemon_would_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let title = "t".repeat(kitty_proto::MAX_BODY_BYTES);
        let big = format!(
            r#"{{"event_type":"WPCreated","payload":{{"wp_id":"WP01","title":"{title}","feature_slug":"028-x"}}}}"#
        );
        let raw = raw(&big);
        let e = write(&home, raw, &parse_one(raw).unwrap(), Utc::now()).unwrap_err();
        assert!(matches!(e, SpoolError::Invalid(_)), "{e}");
        assert!(e.to_string().contains("limit"), "{e}");
        assert!(list(&home).unwrap().is_empty());
    }

    #[test]
    fn whatever_lands_in_the_spool_is_listed_and_unusable_files_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let spool = home.spool_dir();
        std::fs::create_dir_all(spool.join("rejected")).unwrap();
        // What an old client wrote for a draft with "event_id": null.
        std::fs::write(spool.join(".json"), "{}").unwrap();
        std::fs::write(spool.join("notes.txt"), "hello").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", spool.join("link.json")).unwrap();
        crate::sys::mkfifo(&spool.join("fifo.json"));
        std::fs::write(spool.join(".x.json.1.2.tmp"), "in progress").unwrap();
        let stale = spool.join(".y.json.1.2.tmp");
        std::fs::write(&stale, "abandoned").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - 2 * STALE_TEMP)
            .unwrap();
        let names: Vec<String> = list(&home)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                ".json",
                ".y.json.1.2.tmp",
                "fifo.json",
                "link.json",
                "notes.txt"
            ]
        );
        let why = |n: &str| read(&spool.join(n)).unwrap_err();
        assert!(why("fifo.json").contains("FIFO"), "{}", why("fifo.json"));
        assert!(why("link.json").contains("symbolic link"));
        assert!(why(".y.json.1.2.tmp").contains("never finished"));
        assert!(why("notes.txt").contains("not a spool entry"));
        let big = spool.join("big.json");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(64 << 30)
            .unwrap();
        assert!(
            why("big.json").contains("over the limit"),
            "{}",
            why("big.json")
        );
    }

    #[test]
    fn reject_keeps_entries_of_the_same_name() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        std::fs::create_dir_all(home.spool_dir()).unwrap();
        let p = home.spool_dir().join(".json");
        for text in ["one", "two"] {
            std::fs::write(&p, text).unwrap();
            reject(&home, &p).unwrap();
        }
        assert_eq!(rejected_count(&home), 2);
    }
}
