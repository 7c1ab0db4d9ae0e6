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

/// The enqueue time of the oldest row (epoch seconds): one step down
/// `idx_timestamp`, whatever the queue's size.
pub async fn oldest_timestamp(conn: &mut SqliteConnection) -> Result<Option<i64>, StoreError> {
    sqlx::query_scalar("SELECT MIN(timestamp) FROM queue")
        .fetch_one(conn)
        .await
        .map_err(StoreError::db("cannot read the queue's oldest row"))
}

/// Rows the event-type summary of a large queue looks at: its newest ones.
pub const TYPE_SAMPLE: u64 = 10_000;

/// Depth, oldest age, retry distribution and the five commonest event types,
/// at a cost that does not grow with the queue beyond [`TYPE_SAMPLE`] rows:
/// the depth is given (the writer keeps it) or counted on an index, the
/// retries are counted on `idx_retry` (cheap while few rows were retried),
/// and the types of a queue larger than the sample are those of its newest rows.
pub async fn stats(
    conn: &mut SqliteConnection,
    max_queue_size: u64,
    depth: Option<u64>,
) -> Result<QueueStats, StoreError> {
    let depth = match depth {
        Some(d) => d,
        None => self::depth(&mut *conn).await?,
    };
    let (oldest, few, many): (Option<i64>, i64, i64) = sqlx::query_as(
        "SELECT (SELECT MIN(timestamp) FROM queue),
                (SELECT COUNT(*) FROM queue WHERE retry_count BETWEEN 1 AND 3),
                (SELECT COUNT(*) FROM queue WHERE retry_count >= 4)",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(StoreError::db("cannot read queue statistics"))?;
    let (few, many) = (few.max(0) as u64, many.max(0) as u64);
    let sampled = depth > TYPE_SAMPLE;
    let top = sqlx::query(
        "SELECT event_type, COUNT(*) AS n
         FROM (SELECT event_type FROM queue ORDER BY id DESC LIMIT ?)
         GROUP BY event_type ORDER BY n DESC, event_type LIMIT 5",
    )
    .bind(if sampled { TYPE_SAMPLE as i64 } else { -1 })
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::db("cannot read queue statistics"))?;
    let now = chrono::Utc::now().timestamp();
    Ok(QueueStats {
        depth,
        max_queue_size,
        oldest_age_secs: oldest.map(|t| (now - t).max(0) as u64),
        retries: RetryDistribution {
            none: depth.saturating_sub(few + many),
            few,
            many,
        },
        top_event_types: top
            .iter()
            .map(|r| TypeCount {
                event_type: r.get(0),
                count: r.get::<i64, _>(1).max(0) as u64,
            })
            .collect(),
        top_event_types_of_newest: sampled.then_some(TYPE_SAMPLE),
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

/// What a writer must know of the queue before it stamps: whether another
/// connection changed the file since it last looked (`PRAGMA data_version`),
/// the largest row id in the table and ever given (`sqlite_sequence`: the
/// next rows get the ids after it), and the stored high-water mark as text.
/// Not the depth: counting is O(rows), so the writer keeps the depth itself
/// and counts only when `data_version` says someone else wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marks {
    pub data_version: i64,
    /// The largest id given to a row, in the table now or ever.
    pub max_id: i64,
    /// The most rows the queue can hold now: ids are unique, so no more than
    /// its largest id less its smallest, plus one. Two steps down the rowid
    /// tree, against a count that reads every row.
    pub depth_bound: u64,
    pub high_water_mark: Option<String>,
}

const MARKS: &str = "SELECT (SELECT data_version FROM pragma_data_version),
        (SELECT MIN(id) FROM queue), (SELECT MAX(id) FROM queue),
        (SELECT seq FROM sqlite_sequence WHERE name = 'queue'),
        (SELECT value FROM kitty_meta WHERE key = ?)";

type MarksRow = (i64, Option<i64>, Option<i64>, Option<i64>, Option<String>);

fn to_marks((data_version, min_id, max_id, seq, hwm): MarksRow) -> Marks {
    Marks {
        data_version,
        max_id: max_id.unwrap_or(0).max(seq.unwrap_or(0)),
        depth_bound: match (min_id, max_id) {
            (Some(lo), Some(hi)) if hi >= lo => (hi - lo) as u64 + 1,
            _ => 0,
        },
        high_water_mark: hwm,
    }
}

pub async fn marks(conn: &mut SqliteConnection) -> Result<Marks, StoreError> {
    let row: MarksRow = sqlx::query_as(MARKS)
        .bind(HWM_KEY)
        .fetch_one(conn)
        .await
        .map_err(StoreError::db("cannot read the queue's marks"))?;
    Ok(to_marks(row))
}

/// `BEGIN IMMEDIATE` and [`marks`] in one statement list: one trip to
/// SQLite's thread instead of two. The transaction is the caller's to end
/// (`COMMIT`, or [`rollback`] on any failure): it is SQLite's alone, which
/// sqlx does not track, so a failed commit cannot leave sqlx counting a
/// transaction that SQLite already rolled back.
pub(crate) async fn begin_with_marks(conn: &mut SqliteConnection) -> Result<Marks, StoreError> {
    let sql = format!("BEGIN IMMEDIATE; {MARKS}");
    let row: MarksRow = sqlx::query_as(AssertSqlSafe(sql))
        .bind(HWM_KEY)
        .fetch_one(&mut *conn)
        .await
        .map_err(StoreError::db("cannot begin a queue transaction"))?;
    Ok(to_marks(row))
}

/// What [`GUARD`] aborts a statement list with.
pub(crate) const GUARD_TRIPPED: &str = "queue.db changed since its marks were read";

/// Made once per connection (temporary objects are the connection's own):
/// an insert into the view compares the marks a commit stamped by with the
/// file's — `data_version` (another connection committed), the largest row
/// id ever given (rows were added) and the stored high-water mark — and
/// aborts the statement list when any differs.
pub(crate) fn guard_setup() -> String {
    format!(
        "CREATE TEMP VIEW IF NOT EXISTS kitty_commit_guard (data_version, seq, hwm)
             AS SELECT 0, 0, '0';
         CREATE TEMP TRIGGER IF NOT EXISTS kitty_commit_guard_check
         INSTEAD OF INSERT ON kitty_commit_guard
         WHEN NEW.data_version IS NOT (SELECT data_version FROM pragma_data_version)
           OR NEW.seq IS NOT IFNULL((SELECT seq FROM sqlite_sequence WHERE name = 'queue'), 0)
           OR NEW.hwm IS NOT IFNULL((SELECT value FROM kitty_meta WHERE key = '{HWM_KEY}'), '0')
         BEGIN SELECT RAISE(ABORT, '{GUARD_TRIPPED}'); END"
    )
}

/// After `BEGIN IMMEDIATE` (the write lock held, so nobody can commit after
/// it): fails unless the marks are still the bound values (`data_version`,
/// the largest row id given, the stored high-water mark as text).
pub(crate) const GUARD: &str =
    "INSERT INTO temp.kitty_commit_guard (data_version, seq, hwm) VALUES (?, ?, ?)";

/// Whether `e` is [`GUARD`] tripping.
pub(crate) fn guard_tripped(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.message().contains(GUARD_TRIPPED))
}

/// Whether `e` is an insert breaking the `UNIQUE` on `queue.event_id`: an
/// event of the statement is queued already.
pub(crate) fn queued_already(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d)
        if d.is_unique_violation() && d.message().contains("queue.event_id"))
}

/// Ends a transaction [`begin_with_marks`] began, after a failure. SQLite
/// may have rolled it back itself (a full disk): then there is nothing to do.
pub(crate) async fn rollback(conn: &mut SqliteConnection) {
    if let Err(e) = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await {
        let msg = e.to_string();
        if !msg.contains("no transaction is active") {
            tracing::warn!("rolling back a queue transaction: {msg}");
        }
    }
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

/// Stores the high-water mark, which covers every queue row up to the scan
/// mark (see [`clock_floor`]): a statement the ledger sends with the rows and
/// the COMMIT, in one list; its binds are [`mark_binds`].
pub(crate) const SET_MARK: &str = "INSERT INTO kitty_meta (key, value) VALUES (?, ?), (?, ?)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value";

pub(crate) fn mark_binds(value: u64, scanned: i64) -> [String; 4] {
    [
        HWM_KEY.to_owned(),
        value.to_string(),
        SCANNED_KEY.to_owned(),
        scanned.to_string(),
    ]
}
