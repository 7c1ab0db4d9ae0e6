//! The spool: events a client could not hand over because the daemon was alive
//! but not answering (and so still held `clock.lock`). Each is a file
//! `<home>/spool/<event_id>.json`, written atomically; the daemon stamps and
//! queues them when it recovers, then deletes them.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use kitty_proto::home::Home;
use kitty_proto::request::parse_one;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::fsutil;
use crate::ledger::Job;

#[derive(Debug, Serialize, Deserialize)]
struct Entry<'a> {
    /// When the client made the event: its envelope keeps this time.
    made_at: DateTime<Utc>,
    #[serde(borrow)]
    event: &'a RawValue,
}

/// Spools one event (a draft carrying its event_id, or an envelope).
pub fn write(
    home: &Home,
    event_id: &str,
    event: &RawValue,
    made_at: DateTime<Utc>,
) -> std::io::Result<PathBuf> {
    let dir = home.spool_dir();
    fsutil::ensure_private_dir(&dir)?;
    let path = dir.join(format!("{event_id}.json"));
    let text =
        serde_json::to_vec(&Entry { made_at, event }).expect("a spool entry always serialises");
    fsutil::atomic_write(&path, &text, 0o600)?;
    Ok(path)
}

/// Spooled files, oldest event first (names are ULIDs, which sort by time).
pub fn list(home: &Home) -> std::io::Result<Vec<PathBuf>> {
    let mut files = match std::fs::read_dir(home.spool_dir()) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|e| e == "json")
                    && p.file_name()
                        .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
            })
            .collect::<Vec<_>>(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(e) => return Err(e),
    };
    files.sort();
    Ok(files)
}

/// Reads and validates a spooled event, as the socket would have.
pub fn read(path: &Path) -> Result<Job, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() > kitty_proto::MAX_BODY_BYTES {
        return Err(format!("{} bytes, over the request limit", bytes.len()));
    }
    let entry: Entry =
        serde_json::from_slice(&bytes).map_err(|e| format!("not a spool entry: {e}"))?;
    let event = parse_one(entry.event).map_err(|v| v.to_string())?;
    Ok(Job {
        events: vec![event],
        made_at: Some(entry.made_at),
    })
}

/// Moves an entry that can never be queued aside, to `spool/rejected/`, so it
/// is kept for a person to look at but not retried forever.
pub fn reject(home: &Home, path: &Path) -> std::io::Result<PathBuf> {
    let dir = home.spool_dir().join("rejected");
    fsutil::ensure_private_dir(&dir)?;
    let to = dir.join(path.file_name().unwrap_or_default());
    std::fs::rename(path, &to)?;
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_reject() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let ev = r#"{"event_type":"WPCreated","event_id":"01HX5ZQK3M8N9P0R1S2T3V4W5X","payload":{"wp_id":"WP01","title":"T","feature_slug":"028-x"}}"#;
        let raw: &RawValue = serde_json::from_str(ev).unwrap();
        let p = write(&home, "01HX5ZQK3M8N9P0R1S2T3V4W5X", raw, Utc::now()).unwrap();
        assert_eq!(list(&home).unwrap(), vec![p.clone()]);
        let job = read(&p).unwrap();
        assert_eq!(job.events[0].event_id(), Some("01HX5ZQK3M8N9P0R1S2T3V4W5X"));
        std::fs::write(&p, "garbage").unwrap();
        assert!(read(&p).is_err());
        reject(&home, &p).unwrap();
        assert!(list(&home).unwrap().is_empty());
    }
}
