//! Opening queue.db: the shared `queue` table exactly as CONTRACT.md §1, and
//! `kitty_meta`, a table of our own for the clock's high-water mark.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection, SqlitePool};

use crate::StoreError;

/// Other processes (the Python CLI) write this file too; give them time.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS queue (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT UNIQUE NOT NULL,
        event_type TEXT NOT NULL,
        data TEXT NOT NULL,
        timestamp INTEGER NOT NULL,
        retry_count INTEGER DEFAULT 0
    )",
    "CREATE INDEX IF NOT EXISTS idx_timestamp ON queue(timestamp)",
    "CREATE INDEX IF NOT EXISTS idx_retry ON queue(retry_count)",
    "CREATE TABLE IF NOT EXISTS kitty_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    // Events the server rejected five times: kept for a person, out of the way
    // of the queue, put back by `kitty-sync queue retry-dead`.
    "CREATE TABLE IF NOT EXISTS dead_letter (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT UNIQUE NOT NULL,
        event_type TEXT NOT NULL,
        data TEXT NOT NULL,
        timestamp INTEGER NOT NULL,
        retry_count INTEGER DEFAULT 0,
        error TEXT,
        died_at INTEGER NOT NULL
    )",
];

fn options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::from_str("sqlite:")
        .expect("static options parse")
        .filename(path)
        .busy_timeout(BUSY_TIMEOUT)
        // WAL lets status and queue views read while the writer commits;
        // FULL makes every commit durable before we acknowledge it.
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
}

/// Opens (creating when missing, mode 0600) the queue for writing and makes
/// sure the schema exists. A file with the later `coalesce_key` column, or
/// without it, opens the same way: we never name that column.
pub async fn open_writer(
    path: &Path,
    busy_timeout: Duration,
) -> Result<SqliteConnection, StoreError> {
    crate::fsutil::touch_private(path, 0o600).map_err(StoreError::io("cannot create", path))?;
    let opts = options(path)
        .create_if_missing(true)
        .busy_timeout(busy_timeout);
    let mut conn = SqliteConnection::connect_with(&opts)
        .await
        .map_err(StoreError::db("cannot open queue.db"))?;
    for stmt in SCHEMA {
        sqlx::query(*stmt)
            .execute(&mut conn)
            .await
            .map_err(StoreError::db("cannot create the queue schema"))?;
    }
    Ok(conn)
}

/// A small pool for reads (status, queue views), so they never wait on a commit.
pub async fn open_readers(path: &Path) -> Result<SqlitePool, StoreError> {
    SqlitePoolOptions::new()
        .max_connections(2)
        .connect_with(options(path))
        .await
        .map_err(StoreError::db("cannot open queue.db for reading"))
}

/// Opens an existing queue for reading only; `None` when there is no file.
pub async fn open_existing(path: &Path) -> Result<Option<SqliteConnection>, StoreError> {
    // SQLite's read-only open of a FIFO would wait for a writer for ever.
    match crate::fsutil::open_regular(path, crate::fsutil::Symlinks::Follow) {
        Ok(None) => return Ok(None),
        Ok(Some(_)) => {}
        Err(e) => {
            let source = match e.problem {
                crate::fsutil::Problem::Io(io) => io,
                other => std::io::Error::new(std::io::ErrorKind::InvalidInput, other.to_string()),
            };
            return Err(StoreError::io("cannot open", path)(source));
        }
    }
    // No journal_mode here: changing it needs a write lock, and a reader must
    // not need one.
    let opts = SqliteConnectOptions::from_str("sqlite:")
        .expect("static options parse")
        .filename(path)
        .busy_timeout(BUSY_TIMEOUT)
        .read_only(true);
    SqliteConnection::connect_with(&opts)
        .await
        .map(Some)
        .map_err(StoreError::db("cannot open queue.db"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn a_fifo_or_a_symlink_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("queue.db");
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = open_existing(&p).await.unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
        let e = open_writer(&p, BUSY_TIMEOUT).await.unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(dir.path().join("elsewhere.db"), &link).unwrap();
        assert!(open_writer(&link, BUSY_TIMEOUT).await.is_err());
        assert!(!dir.path().join("elsewhere.db").exists());
    }

    #[tokio::test]
    async fn opens_a_cli_file_with_coalesce_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("queue.db");
        {
            let mut c = SqliteConnection::connect_with(&options(&p).create_if_missing(true))
                .await
                .unwrap();
            sqlx::query("CREATE TABLE queue (id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT UNIQUE NOT NULL, event_type TEXT NOT NULL, data TEXT NOT NULL, timestamp INTEGER NOT NULL, retry_count INTEGER DEFAULT 0, coalesce_key TEXT)")
                .execute(&mut c).await.unwrap();
            sqlx::query("INSERT INTO queue (event_id, event_type, data, timestamp, coalesce_key) VALUES ('a','T','{}',1,'k')")
                .execute(&mut c).await.unwrap();
        }
        let mut c = open_writer(&p, BUSY_TIMEOUT).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM queue")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(n, 1);
    }

    #[tokio::test]
    async fn new_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("queue.db");
        open_writer(&p, BUSY_TIMEOUT).await.unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(
            open_existing(&dir.path().join("none.db"))
                .await
                .unwrap()
                .is_none()
        );
    }
}
