//! Reading the queue: depth, statistics, the oldest rows, the clock's marks.
//! Writing goes through [`crate::ledger`] only.

use kitty_proto::api::{QueueEntry, QueueStats, RetryDistribution, TypeCount};
use sqlx::{AssertSqlSafe, Row, SqliteConnection};

use crate::StoreError;

const HWM_KEY: &str = "clock_hwm";
/// The largest queue row id whose `lamport_clock` the stored high-water mark
/// covers: a start reads only the rows above it, so it costs the same with an
/// empty queue and a full one. Written with the mark, in the same transaction.
const SCANNED_KEY: &str = "clock_scanned_id";

pub async fn depth(conn: &mut SqliteConnection) -> Result<u64, StoreError> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM queue")
        .fetch_one(conn)
        .await
        .map_err(StoreError::db("cannot count the queue"))?;
    Ok(n.max(0) as u64)
}

/// Depth and the enqueue time of the oldest row (epoch seconds), in one read.
pub async fn depth_and_oldest(
    conn: &mut SqliteConnection,
) -> Result<(u64, Option<i64>), StoreError> {
    let (n, oldest): (i64, Option<i64>) =
        sqlx::query_as("SELECT COUNT(*), MIN(timestamp) FROM queue")
            .fetch_one(conn)
            .await
            .map_err(StoreError::db("cannot read the queue's depth"))?;
    Ok((n.max(0) as u64, oldest))
}

/// Depth, oldest age, retry distribution and the five commonest event types.
pub async fn stats(
    conn: &mut SqliteConnection,
    max_queue_size: u64,
) -> Result<QueueStats, StoreError> {
    let row = sqlx::query(
        "SELECT COUNT(*),
                MIN(timestamp),
                COALESCE(SUM(CASE WHEN COALESCE(retry_count, 0) <= 0 THEN 1 ELSE 0 END), 0),
                COALESCE(SUM(CASE WHEN retry_count BETWEEN 1 AND 3 THEN 1 ELSE 0 END), 0),
                COALESCE(SUM(CASE WHEN retry_count >= 4 THEN 1 ELSE 0 END), 0)
         FROM queue",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(StoreError::db("cannot read queue statistics"))?;
    let oldest: Option<i64> = row.get(1);
    let now = chrono::Utc::now().timestamp();
    let top = sqlx::query(
        "SELECT event_type, COUNT(*) AS n FROM queue GROUP BY event_type ORDER BY n DESC, event_type LIMIT 5",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::db("cannot read queue statistics"))?;
    Ok(QueueStats {
        depth: row.get::<i64, _>(0).max(0) as u64,
        max_queue_size,
        oldest_age_secs: oldest.map(|t| (now - t).max(0) as u64),
        retries: RetryDistribution {
            none: row.get::<i64, _>(2).max(0) as u64,
            few: row.get::<i64, _>(3).max(0) as u64,
            many: row.get::<i64, _>(4).max(0) as u64,
        },
        top_event_types: top
            .iter()
            .map(|r| TypeCount {
                event_type: r.get(0),
                count: r.get::<i64, _>(1).max(0) as u64,
            })
            .collect(),
    })
}

/// The oldest `limit` rows, in drain order.
pub async fn oldest(
    conn: &mut SqliteConnection,
    limit: u32,
) -> Result<Vec<QueueEntry>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, event_id, event_type, data, timestamp, COALESCE(retry_count, 0)
         FROM queue ORDER BY timestamp ASC, id ASC LIMIT ?",
    )
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await
    .map_err(StoreError::db("cannot list the queue"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let data: String = r.get(3);
            QueueEntry {
                id: r.get(0),
                event_id: r.get(1),
                event_type: r.get(2),
                timestamp: r.get(4),
                retry_count: r.get(5),
                envelope: serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data)),
            }
        })
        .collect())
}

/// What a look at the queue's `lamport_clock` values found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LamportScan {
    /// The largest value within the contract's range (0 when none).
    pub max: u64,
    /// Rows whose value lies beyond 2^53 - 1: no value of ours can equal
    /// theirs, so they are left out rather than let them use up the clock.
    pub beyond: u64,
}

impl LamportScan {
    /// Both scans as one.
    pub fn merge(self, other: Self) -> Self {
        Self {
            max: self.max.max(other.max),
            beyond: self.beyond + other.beyond,
        }
    }
}

/// The `lamport_clock` of each row as (`json_type`, value). Nested CASEs:
/// json_type() raises on invalid JSON, and SQLite does not promise to
/// short-circuit AND. Rows that are not JSON (another tool's) yield NULLs.
const LAMPORT_OF_ROW: &str =
    "CASE WHEN json_valid(data) THEN json_type(data, '$.lamport_clock') END AS t,
     CASE WHEN json_valid(data) THEN json_extract(data, '$.lamport_clock') END AS x";

const LAMPORT_SUMMARY: &str = "SELECT
     MAX(CASE WHEN t = 'integer' AND x BETWEEN 0 AND 9007199254740991 THEN x END),
     COUNT(CASE WHEN t IN ('integer', 'real') AND x > 9007199254740991 THEN 1 END)";

/// The largest in-range `lamport_clock` in the queue and the dead letters,
/// ignoring rows that are not JSON and values beyond 2^53 - 1.
pub async fn max_lamport(conn: &mut SqliteConnection) -> Result<u64, StoreError> {
    Ok(scan_lamport(conn).await?.max)
}

/// [`max_lamport`], and how many values it left out for being beyond the range.
pub async fn scan_lamport(conn: &mut SqliteConnection) -> Result<LamportScan, StoreError> {
    // Dead letters count too: their values were issued. The table may not
    // exist yet in a file only the Python CLI has opened.
    let rows = if table_exists(&mut *conn, "dead_letter").await? {
        format!(
            "SELECT {LAMPORT_OF_ROW} FROM queue UNION ALL SELECT {LAMPORT_OF_ROW} FROM dead_letter"
        )
    } else {
        format!("SELECT {LAMPORT_OF_ROW} FROM queue")
    };
    let sql = format!("{LAMPORT_SUMMARY} FROM ({rows})");
    summarise(sqlx::query_as(AssertSqlSafe(sql)), conn).await
}

/// [`scan_lamport`] of the dead letters only (none when the table does not exist).
pub async fn scan_dead(conn: &mut SqliteConnection) -> Result<LamportScan, StoreError> {
    if !table_exists(&mut *conn, "dead_letter").await? {
        return Ok(LamportScan::default());
    }
    let sql = format!("{LAMPORT_SUMMARY} FROM (SELECT {LAMPORT_OF_ROW} FROM dead_letter)");
    summarise(sqlx::query_as(AssertSqlSafe(sql)), conn).await
}

/// [`scan_lamport`] of the queue rows with an id above `after` only: the rows
/// other processes inserted since we last looked.
pub async fn scan_lamport_after(
    conn: &mut SqliteConnection,
    after: i64,
) -> Result<LamportScan, StoreError> {
    let sql = format!("{LAMPORT_SUMMARY} FROM (SELECT {LAMPORT_OF_ROW} FROM queue WHERE id > ?)");
    summarise(sqlx::query_as(AssertSqlSafe(sql)).bind(after), conn).await
}

async fn summarise(
    query: sqlx::query::QueryAs<
        '_,
        sqlx::Sqlite,
        (Option<i64>, i64),
        sqlx::sqlite::SqliteArguments,
    >,
    conn: &mut SqliteConnection,
) -> Result<LamportScan, StoreError> {
    let (max, beyond) = query.fetch_one(conn).await.map_err(StoreError::db(
        "cannot read the queue's largest Lamport value",
    ))?;
    Ok(LamportScan {
        max: max.map_or(0, |m| m.max(0) as u64),
        beyond: beyond.max(0) as u64,
    })
}

/// What a writer must know of the queue before it stamps, in one statement:
/// whether another connection changed the file since it last looked
/// (`PRAGMA data_version`), the largest row id, and the stored high-water mark
/// as text. Not the depth: counting is O(rows), so the writer keeps the depth
/// itself and counts only when `data_version` says someone else wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marks {
    pub data_version: i64,
    pub max_id: i64,
    pub high_water_mark: Option<String>,
}

pub async fn marks(conn: &mut SqliteConnection) -> Result<Marks, StoreError> {
    let (data_version, max_id, hwm): (i64, Option<i64>, Option<String>) = sqlx::query_as(
        "SELECT (SELECT data_version FROM pragma_data_version), (SELECT MAX(id) FROM queue),
                (SELECT value FROM kitty_meta WHERE key = ?)",
    )
    .bind(HWM_KEY)
    .fetch_one(conn)
    .await
    .map_err(StoreError::db("cannot read the queue's marks"))?;
    Ok(Marks {
        data_version,
        max_id: max_id.unwrap_or(0),
        high_water_mark: hwm,
    })
}

/// What the queue says of the clock, read at a start (the daemon's, a direct
/// emit's, `status` without a daemon).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockFloor {
    /// The stored high-water mark, or the text refused for being no value in range.
    pub high_water_mark: Result<u64, String>,
    /// The rows examined: those above the stored scan mark, and the dead letters.
    pub scan: LamportScan,
    /// The largest queue row id now accounted for.
    pub max_id: i64,
    /// Whether every row had to be read (no usable scan mark).
    pub full_scan: bool,
}

/// The clock's floor from queue.db without reading every row: the stored
/// high-water mark covers the rows up to the stored scan mark, so only rows
/// others inserted above it (the Python CLI, a client with the lock) are read.
/// Row ids only grow (AUTOINCREMENT); when `sqlite_sequence` has gone below
/// the scan mark the table was made anew, and every row is read.
pub async fn clock_floor(conn: &mut SqliteConnection) -> Result<ClockFloor, StoreError> {
    let (hwm, scanned, seq, max_id): (Option<String>, Option<String>, Option<i64>, Option<i64>) =
        sqlx::query_as(
            "SELECT (SELECT value FROM kitty_meta WHERE key = ?),
                    (SELECT value FROM kitty_meta WHERE key = ?),
                    (SELECT seq FROM sqlite_sequence WHERE name = 'queue'),
                    (SELECT MAX(id) FROM queue)",
        )
        .bind(HWM_KEY)
        .bind(SCANNED_KEY)
        .fetch_one(&mut *conn)
        .await
        .map_err(StoreError::db("cannot read the clock's marks"))?;
    let high_water_mark = parse_mark(hwm.as_deref());
    let max_id = max_id.unwrap_or(0);
    let scanned = scanned
        .and_then(|s| s.trim().parse::<i64>().ok())
        .filter(|&id| id >= 0 && high_water_mark.is_ok() && seq.unwrap_or(0).max(max_id) >= id);
    let (scan, full_scan) = match scanned {
        Some(after) => {
            let queued = scan_lamport_after(&mut *conn, after).await?;
            let dead = scan_dead(&mut *conn).await?;
            (queued.merge(dead), false)
        }
        None => (scan_lamport(&mut *conn).await?, true),
    };
    Ok(ClockFloor {
        high_water_mark,
        scan,
        max_id,
        full_scan,
    })
}

/// A stored high-water mark: a decimal integer from 0 to 2^53 - 1. Anything
/// else was never written by us (a corrupt or tampered file) and is refused,
/// with the text for the warning.
pub fn parse_mark(raw: Option<&str>) -> Result<u64, String> {
    match raw {
        None => Ok(0),
        Some(s) => match s.trim().parse::<u64>() {
            Ok(v) if v <= kitty_proto::MAX_LAMPORT => Ok(v),
            _ => Err(s.chars().take(40).collect()),
        },
    }
}

pub(crate) async fn table_exists(
    conn: &mut SqliteConnection,
    name: &str,
) -> Result<bool, StoreError> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?")
            .bind(name)
            .fetch_one(conn)
            .await
            .map_err(StoreError::db("cannot read the schema"))?;
    Ok(n > 0)
}

/// The high-water mark of issued Lamport values, stored with the events; 0
/// when there is none or it is not a value in the contract's range.
pub async fn high_water_mark(conn: &mut SqliteConnection) -> Result<u64, StoreError> {
    let v: Option<String> = sqlx::query_scalar("SELECT value FROM kitty_meta WHERE key = ?")
        .bind(HWM_KEY)
        .fetch_optional(conn)
        .await
        .map_err(StoreError::db("cannot read the clock's high-water mark"))?;
    Ok(parse_mark(v.as_deref()).unwrap_or(0))
}

/// Stores the high-water mark `value`, which covers every queue row up to id
/// `scanned` (see [`clock_floor`]), in one statement.
pub(crate) async fn set_high_water_mark(
    conn: &mut SqliteConnection,
    value: u64,
    scanned: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO kitty_meta (key, value) VALUES (?, ?), (?, ?)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )
    .bind(HWM_KEY)
    .bind(value.to_string())
    .bind(SCANNED_KEY)
    .bind(scanned.to_string())
    .execute(conn)
    .await
    .map_err(StoreError::db("cannot store the clock's high-water mark"))?;
    Ok(())
}
