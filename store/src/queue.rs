//! Reading the queue: depth, statistics, the oldest rows, the clock's marks.
//! Writing goes through [`crate::ledger`] only.

use kitty_proto::api::{QueueEntry, QueueStats, RetryDistribution, TypeCount};
use sqlx::{Row, SqliteConnection};

use crate::StoreError;

const HWM_KEY: &str = "clock_hwm";

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

/// The largest integer `lamport_clock` in the queue, ignoring rows that are
/// not JSON (another tool's) and values beyond 2^53 - 1.
pub async fn max_lamport(conn: &mut SqliteConnection) -> Result<u64, StoreError> {
    // Nested CASEs: json_type() raises on invalid JSON, and SQLite does not
    // promise to short-circuit AND.
    // Dead letters count too: their values were issued. The table may not
    // exist yet in a file only the Python CLI has opened.
    let sql = if table_exists(&mut *conn, "dead_letter").await? {
        "SELECT MAX(v) FROM (
            SELECT CASE WHEN json_valid(data) THEN
                   CASE WHEN json_type(data, '$.lamport_clock') = 'integer'
                        THEN json_extract(data, '$.lamport_clock') END END AS v FROM queue
            UNION ALL
            SELECT CASE WHEN json_valid(data) THEN
                   CASE WHEN json_type(data, '$.lamport_clock') = 'integer'
                        THEN json_extract(data, '$.lamport_clock') END END FROM dead_letter)"
    } else {
        "SELECT MAX(CASE WHEN json_valid(data) THEN
                   CASE WHEN json_type(data, '$.lamport_clock') = 'integer'
                        THEN json_extract(data, '$.lamport_clock') END END)
         FROM queue"
    };
    let max: Option<i64> =
        sqlx::query_scalar(sql)
            .fetch_one(conn)
            .await
            .map_err(StoreError::db(
                "cannot read the queue's largest Lamport value",
            ))?;
    Ok(max.map_or(0, |m| (m.max(0) as u64).min(kitty_proto::MAX_LAMPORT)))
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

/// The high-water mark of issued Lamport values, stored with the events.
pub async fn high_water_mark(conn: &mut SqliteConnection) -> Result<u64, StoreError> {
    let v: Option<String> = sqlx::query_scalar("SELECT value FROM kitty_meta WHERE key = ?")
        .bind(HWM_KEY)
        .fetch_optional(conn)
        .await
        .map_err(StoreError::db("cannot read the clock's high-water mark"))?;
    Ok(v.and_then(|s| s.parse().ok()).unwrap_or(0))
}

pub(crate) async fn set_high_water_mark(
    conn: &mut SqliteConnection,
    value: u64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO kitty_meta (key, value) VALUES (?, ?)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )
    .bind(HWM_KEY)
    .bind(value.to_string())
    .execute(conn)
    .await
    .map_err(StoreError::db("cannot store the clock's high-water mark"))?;
    Ok(())
}
