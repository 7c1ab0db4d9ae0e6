//! SQLite on its own: the floor under a durable commit on this disk, and
//! reading a daemon's queue.db from the side (row counts, the cost of the
//! `COUNT(*)` every commit does).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection};

/// The `queue` table as CONTRACT.md §1 has it, and the daemon's own `kitty_meta`.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT UNIQUE NOT NULL,
    event_type TEXT NOT NULL,
    data TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    retry_count INTEGER DEFAULT 0
);
CREATE INDEX IF NOT EXISTS idx_timestamp ON queue(timestamp);
CREATE INDEX IF NOT EXISTS idx_retry ON queue(retry_count);
CREATE TABLE IF NOT EXISTS kitty_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);";

/// An envelope of the size the daemon stores for the bench's draft.
pub(crate) const ENVELOPE: &str = r#"{"event_id":"01KBENCH0000000000000000000","event_type":"WPStatusChanged","aggregate_id":"WP01","aggregate_type":"WorkPackage","payload":{"wp_id":"WP01","previous_status":"planned","new_status":"doing"},"node_id":"0123456789ab","lamport_clock":1,"causation_id":null,"timestamp":"2026-02-04T13:47:09.123456+00:00","team_slug":"local","project_uuid":null,"project_slug":null}"#;

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// The two kinds of single-event transaction timed by [`commit_latencies`].
pub struct CommitFloor {
    /// `BEGIN IMMEDIATE; INSERT; COMMIT`.
    pub bare: Vec<Duration>,
    /// What one daemon commit of one event runs: `BEGIN IMMEDIATE;
    /// SELECT COUNT(*) FROM queue; INSERT … ON CONFLICT DO NOTHING;
    /// upsert kitty_meta; COMMIT`.
    pub daemon_like: Vec<Duration>,
    /// `SELECT 1`: what one statement costs through sqlx (a round trip to the
    /// connection's worker thread) with no disk involved.
    pub statement: Vec<Duration>,
    /// A daemon-like commit of [`GROUP`] events, one INSERT statement each.
    pub group_statements: Vec<Duration>,
    /// The same [`GROUP`] events as one multi-row INSERT statement.
    pub group_multirow: Vec<Duration>,
    /// CPU time (this process, all threads, user + system) per single-event
    /// commit, over the `bare` and `daemon_like` loop.
    pub cpu_per_commit: Duration,
}

/// The group size of [`CommitFloor::group_statements`]: as many events as
/// 16 clients can have waiting.
pub const GROUP: usize = 16;

/// Times `n` single-event transactions of each kind on a new database in
/// `dir`, opened as the daemon opens queue.db (WAL, `synchronous=FULL`).
pub fn commit_latencies(dir: &Path, n: usize) -> Result<CommitFloor> {
    let path = dir.join("floor.db");
    runtime()?.block_on(async {
        let mut c = open_like_queue_db(&path).await?;
        let mut bare = Vec::with_capacity(n);
        let mut daemon_like = Vec::with_capacity(n);
        let cpu_start = crate::bench::sys::self_cpu_time();
        for i in 0..(2 * n + 2) {
            let event_id = format!("bench-{i}");
            let t = Instant::now();
            let mut tx = c.begin_with("BEGIN IMMEDIATE").await?;
            let like_daemon = i % 2 == 1;
            if like_daemon {
                let _: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM queue")
                    .fetch_one(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "INSERT INTO queue (event_id, event_type, data, timestamp, retry_count)
                 VALUES (?, 'WPStatusChanged', ?, 1770000000, 0) ON CONFLICT(event_id) DO NOTHING",
            )
            .bind(&event_id)
            .bind(ENVELOPE)
            .execute(&mut *tx)
            .await?;
            if like_daemon {
                sqlx::query(
                    "INSERT INTO kitty_meta (key, value) VALUES ('clock_hwm', ?)
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                )
                .bind(i.to_string())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            // The first of each kind warms up.
            if i >= 2 {
                if like_daemon {
                    daemon_like.push(t.elapsed());
                } else {
                    bare.push(t.elapsed());
                }
            }
        }
        let cpu_per_commit =
            (crate::bench::sys::self_cpu_time().saturating_sub(cpu_start)) / (2 * n as u32 + 2);
        let groups = (n / 4).max(3);
        let mut group_statements = Vec::with_capacity(groups);
        let mut group_multirow = Vec::with_capacity(groups);
        let multirow_sql = format!(
            "INSERT INTO queue (event_id, event_type, data, timestamp, retry_count) VALUES {}
             ON CONFLICT(event_id) DO NOTHING",
            vec!["(?, 'WPStatusChanged', ?, 1770000000, 0)"; GROUP].join(", ")
        );
        for g in 0..(2 * groups + 2) {
            let multirow = g % 2 == 1;
            let t = Instant::now();
            let mut tx = c.begin_with("BEGIN IMMEDIATE").await?;
            let _: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM queue")
                .fetch_one(&mut *tx)
                .await?;
            if multirow {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(multirow_sql.as_str()));
                for e in 0..GROUP {
                    q = q.bind(format!("group-{g}-{e}")).bind(ENVELOPE);
                }
                q.execute(&mut *tx).await?;
            } else {
                for e in 0..GROUP {
                    sqlx::query(
                        "INSERT INTO queue (event_id, event_type, data, timestamp, retry_count)
                         VALUES (?, 'WPStatusChanged', ?, 1770000000, 0) ON CONFLICT(event_id) DO NOTHING",
                    )
                    .bind(format!("group-{g}-{e}"))
                    .bind(ENVELOPE)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            sqlx::query(
                "INSERT INTO kitty_meta (key, value) VALUES ('clock_hwm', ?)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            )
            .bind(g.to_string())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            if g >= 2 {
                if multirow {
                    group_multirow.push(t.elapsed());
                } else {
                    group_statements.push(t.elapsed());
                }
            }
        }

        let mut statement = Vec::with_capacity(n);
        for i in 0..=n {
            let t = Instant::now();
            let _: i64 = sqlx::query_scalar("SELECT 1").fetch_one(&mut c).await?;
            if i > 0 {
                statement.push(t.elapsed());
            }
        }
        let _ = c.close().await;
        Ok(CommitFloor {
            bare,
            daemon_like,
            statement,
            group_statements,
            group_multirow,
            cpu_per_commit,
        })
    })
}

/// A database at `path` (created if missing) opened as the daemon opens
/// queue.db (WAL, `synchronous=FULL`), with the contract's `queue` table.
pub(crate) async fn open_like_queue_db(path: &Path) -> Result<SqliteConnection> {
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full);
    let mut c = SqliteConnection::connect_with(&opts)
        .await
        .with_context(|| format!("open {}", path.display()))?;
    sqlx::raw_sql(SCHEMA).execute(&mut c).await?;
    Ok(c)
}

async fn open_read_only(db: &Path) -> Result<SqliteConnection> {
    let opts = SqliteConnectOptions::new()
        .filename(db)
        .read_only(true)
        .busy_timeout(Duration::from_secs(10));
    SqliteConnection::connect_with(&opts)
        .await
        .with_context(|| format!("open {}", db.display()))
}

/// Rows in `queue`, read through a separate connection.
pub fn row_count(db: &Path) -> Result<u64> {
    runtime()?.block_on(async {
        let mut c = open_read_only(db).await?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM queue")
            .fetch_one(&mut c)
            .await?;
        let _ = c.close().await;
        Ok(n.max(0) as u64)
    })
}

/// Times `SELECT COUNT(*) FROM queue` `n` times (after one warm-up) on an
/// existing queue.db: what each daemon commit spends counting the queue.
pub fn count_latencies(db: &Path, n: usize) -> Result<Vec<Duration>> {
    runtime()?.block_on(async {
        let mut c = open_read_only(db).await?;
        let mut out = Vec::with_capacity(n);
        for i in 0..=n {
            let t = Instant::now();
            let _: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM queue")
                .fetch_one(&mut c)
                .await?;
            if i > 0 {
                out.push(t.elapsed());
            }
        }
        let _ = c.close().await;
        Ok(out)
    })
}

/// The `queue` table and its indexes exactly as CONTRACT.md §1 gives them,
/// and nothing of the daemon's own: a prefilled file is one any writer could
/// have left.
const CONTRACT_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT UNIQUE NOT NULL,
    event_type TEXT NOT NULL,
    data TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    retry_count INTEGER DEFAULT 0
);
CREATE INDEX IF NOT EXISTS idx_timestamp ON queue(timestamp);
CREATE INDEX IF NOT EXISTS idx_retry ON queue(retry_count);";

/// Rows per prefill statement (3 parameters each).
const PREFILL_ROWS: usize = 500;

/// A WPStatusChanged envelope as the daemon stores it (CONTRACT.md §2), team
/// `local`, so that the daemon would deliver it as its own.
fn prefill_envelope(event_id: &str, lamport: u64) -> String {
    format!(
        r#"{{"event_id":"{event_id}","event_type":"WPStatusChanged","aggregate_id":"WP01","aggregate_type":"WorkPackage","payload":{{"wp_id":"WP01","previous_status":"planned","new_status":"doing"}},"node_id":"0123456789ab","lamport_clock":{lamport},"causation_id":null,"timestamp":"2026-02-04T13:47:09.123456+00:00","team_slug":"local","project_uuid":null,"project_slug":null}}"#
    )
}

/// Appends `n` events to `db` (created with the contract's schema if
/// missing) straight through SQLite, in the contract's row format, with
/// Lamport clocks above any already there: the way another process fills the
/// queue, and some hundred times faster than through the daemon's socket.
/// Returns the largest `lamport_clock` written.
pub fn prefill_queue(db: &Path, n: usize) -> Result<u64> {
    runtime()?.block_on(async {
        let opts = SqliteConnectOptions::new()
            .filename(db)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let mut c = SqliteConnection::connect_with(&opts)
            .await
            .with_context(|| format!("open {}", db.display()))?;
        sqlx::raw_sql(CONTRACT_SCHEMA).execute(&mut c).await?;
        let mut tx = c.begin_with("BEGIN IMMEDIATE").await?;
        let top: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(CAST(json_extract(data, '$.lamport_clock') AS INTEGER)) FROM queue",
        )
        .fetch_one(&mut *tx)
        .await?;
        let mut lamport = top.unwrap_or(0).max(0) as u64;
        let now = chrono::Utc::now().timestamp();
        let sql = |rows: usize| {
            format!(
                "INSERT INTO queue (event_id, event_type, data, timestamp, retry_count) VALUES {}",
                vec!["(?, 'WPStatusChanged', ?, ?, 0)"; rows].join(", ")
            )
        };
        let full = sql(PREFILL_ROWS);
        let mut left = n;
        while left > 0 {
            let k = left.min(PREFILL_ROWS);
            let partial;
            let text = if k == PREFILL_ROWS {
                full.as_str()
            } else {
                partial = sql(k);
                partial.as_str()
            };
            let mut q = sqlx::query(sqlx::AssertSqlSafe(text));
            for _ in 0..k {
                lamport += 1;
                let id = ulid::Ulid::generate().to_string();
                let data = prefill_envelope(&id, lamport);
                q = q.bind(id).bind(data).bind(now);
            }
            q.execute(&mut *tx).await.context("prefilling the queue")?;
            left -= k;
        }
        tx.commit().await.context("committing the prefill")?;
        let _ = c.close().await;
        Ok(lamport)
    })
}
