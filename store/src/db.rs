//! Opening queue.db: the shared `queue` table exactly as CONTRACT.md §1, and
//! `kitty_meta`, a table of our own for the clock's high-water mark.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Sqlite, SqliteConnection, SqlitePool, Transaction};

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

/// `BEGIN IMMEDIATE` (the write lock at once), on a connection that a failed
/// transaction may have left unusable: see [`recover`].
pub async fn begin_immediate<'c>(
    conn: &'c mut SqliteConnection,
    what: &'static str,
) -> Result<Transaction<'c, Sqlite>, StoreError> {
    if conn.is_in_transaction() {
        recover(conn).await?;
    }
    conn.begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(StoreError::db(what))
}

/// Makes a connection usable again after a transaction on it failed.
///
/// SQLite rolls some failed transactions back by itself (a full disk, an I/O
/// error); sqlx's own ROLLBACK then fails, it goes on counting the transaction
/// as open and refuses every later BEGIN, for ever. Such a connection is
/// replaced by a fresh one on the same file, with the same busy timeout.
pub async fn recover(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    // Dropping the failed transaction queued its ROLLBACK on the connection's
    // worker; this statement runs after it, so the count below is settled.
    let file: String =
        sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
            .fetch_one(&mut *conn)
            .await
            .map_err(StoreError::db(
                "cannot inspect a failed queue.db connection",
            ))?;
    if !conn.is_in_transaction() {
        return Ok(());
    }
    let busy_ms: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
        .fetch_one(&mut *conn)
        .await
        .map_err(StoreError::db(
            "cannot inspect a failed queue.db connection",
        ))?;
    let busy = Duration::from_millis(busy_ms.max(0) as u64);
    let fresh = open_writer(Path::new(&file), busy).await?;
    let stale = std::mem::replace(conn, fresh);
    tracing::warn!("reopened queue.db: a failed transaction had left the connection unusable");
    drop(stale);
    Ok(())
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
    // SQLite's read-only open of a FIFO would wait for a writer for ever, so
    // the file's type is checked first: by stat, never by opening it. A
    // descriptor of queue.db closed in this process drops every POSIX lock
    // the process holds on it (the daemon's writer connection's too); the
    // next process to close its connection then finds itself the last one
    // and deletes the WAL the writer is still appending to.
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("cannot open", path)(e)),
        Ok(meta) if !meta.is_file() => {
            let why = std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "it is {}, not a regular file; refusing to open it",
                    crate::fsutil::describe(&meta)
                ),
            );
            return Err(StoreError::io("cannot open", path)(why));
        }
        Ok(_) => {}
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

/// Full disks on demand, for tests: SQLite's `max_page_count` makes it answer
/// "database or disk is full" (SQLITE_FULL) exactly as a full file system does.
#[cfg(test)]
pub(crate) mod testing {
    use sqlx::{Connection, SqliteConnection};

    /// Caps the file at its current size: no page can be added.
    pub async fn fill_up(c: &mut SqliteConnection) {
        // Free pages would be reused first.
        sqlx::query("VACUUM").execute(&mut *c).await.unwrap();
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(&mut *c)
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "PRAGMA max_page_count = {pages}"
        )))
        .execute(&mut *c)
        .await
        .unwrap();
    }

    pub async fn free_space(c: &mut SqliteConnection) {
        sqlx::query("PRAGMA max_page_count = 1073741823")
            .execute(&mut *c)
            .await
            .unwrap();
    }

    /// Leaves `c` as a transaction that hit a full disk does: SQLite rolled it
    /// back by itself, sqlx still counts it open.
    pub async fn wedge_with_full_disk(c: &mut SqliteConnection) {
        fill_up(c).await;
        {
            let mut tx = c.begin_with("BEGIN IMMEDIATE").await.unwrap();
            let big = "x".repeat(64 * 1024);
            // One row: no statement journal, so SQLite rolls the whole
            // transaction back rather than just the statement.
            let e = sqlx::query("INSERT INTO kitty_meta (key, value) VALUES ('filler', ?)")
                .bind(&big)
                .execute(&mut *tx)
                .await
                .unwrap_err();
            assert!(e.to_string().contains("full"), "{e}");
        }
        free_space(c).await;
        assert!(
            c.begin_with("BEGIN IMMEDIATE").await.is_err(),
            "sqlx refuses to begin on the wedged connection"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A reader opened beside the writer must not cost the writer its locks
    /// (see open_existing): another connection closing would then delete the
    /// WAL under it, and commits acknowledged after would be lost.
    #[tokio::test]
    async fn a_reader_opened_beside_the_writer_leaves_its_wal_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("queue.db");
        let mut w = open_writer(&p, BUSY_TIMEOUT).await.unwrap();
        let mut r = open_existing(&p).await.unwrap().unwrap();
        sqlx::query("SELECT COUNT(*) FROM queue")
            .execute(&mut r)
            .await
            .unwrap();
        // Another process opens and closes the file: Python's sqlite3, as
        // the spec-kitty CLI does. (In this process SQLite knows its own
        // connections; only another one trusts the locks alone.)
        let closed = std::process::Command::new("python3")
            .arg("-c")
            .arg("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('SELECT COUNT(*) FROM queue').fetchall(); c.close()")
            .arg(&p)
            .status();
        match closed {
            Ok(s) => assert!(s.success(), "python3: {s}"),
            Err(e) => return eprintln!("skipped: no python3 here ({e})"),
        }
        sqlx::query(
            "INSERT INTO queue (event_id, event_type, data, timestamp) VALUES ('a', 'T', '{}', 1)",
        )
        .execute(&mut w)
        .await
        .unwrap();
        assert!(
            dir.path().join("queue.db-wal").exists(),
            "the writer's WAL is still there"
        );
        let mut fresh = open_writer(&p, BUSY_TIMEOUT).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM queue")
            .fetch_one(&mut fresh)
            .await
            .unwrap();
        assert_eq!(n, 1, "the commit is in the file others read");
    }

    #[tokio::test]
    async fn a_fifo_or_a_symlink_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("queue.db");
        crate::sys::mkfifo(&p);
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

    #[tokio::test]
    async fn begin_immediate_recovers_a_wedged_connection() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = open_writer(&dir.path().join("queue.db"), Duration::from_millis(1234))
            .await
            .unwrap();
        testing::wedge_with_full_disk(&mut c).await;
        let mut tx = begin_immediate(&mut c, "begin").await.unwrap();
        sqlx::query("INSERT INTO kitty_meta (key, value) VALUES ('k', 'v')")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(busy, 1234, "the reopened connection keeps its busy timeout");
    }
}
