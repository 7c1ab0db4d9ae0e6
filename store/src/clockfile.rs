//! clock.json: `{"value", "node_id", "updated_at"}`, pretty-printed with an
//! indent of 2 as Python's `json.dump(..., indent=2)` writes it, mode 0600,
//! replaced atomically.

use std::path::Path;

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

/// Writes the checkpoint atomically (fsync, rename, directory fsync), 0600.
pub fn write(path: &Path, value: u64, node_id: &str) -> std::io::Result<()> {
    let cp = Checkpoint {
        value,
        node_id: node_id.to_owned(),
        updated_at: kitty_proto::rules::format_utc(chrono::Utc::now()),
    };
    let text = serde_json::to_string_pretty(&cp).expect("a checkpoint always serialises");
    fsutil::atomic_write(path, text.as_bytes(), 0o600)
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
    fn corrupt_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("clock.json");
        for bad in [
            "{",
            "[]",
            r#"{"value":"7"}"#,
            r#"{"value":-1}"#,
            r#"{"value":1.5}"#,
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
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        match read(&p) {
            ClockFile::Corrupt(why) => assert!(why.contains("FIFO"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
