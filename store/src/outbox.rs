//! The uplink's side of queue.db: reading what to send, in drain order, and
//! applying what the server said about it, each answer in one transaction.
//! A row leaves the queue only when the server confirmed it (`success`,
//! `accepted` or `duplicate`); a per-event rejection raises its retry_count,
//! and the fifth moves it to `dead_letter`. The writes run on the ledger's
//! connection ([`crate::Ledger::apply`], [`crate::Ledger::retry_dead`]), so
//! queue.db has one writer; the reads may use any connection.

use kitty_proto::api::DeadEntry;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use crate::StoreError;

/// Rejections after which an event is moved aside.
pub const DEAD_AFTER: i64 = 5;

/// A queued event on its way out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub id: i64,
    pub timestamp: i64,
    pub event_id: String,
    pub data: String,
}

/// Where a sender stands in drain order: `(timestamp, id)` of the last row sent.
pub type Cursor = (i64, i64);

/// The oldest `limit` rows after `after`, in drain order (`timestamp, id`).
pub async fn oldest_after(
    conn: &mut SqliteConnection,
    after: Option<Cursor>,
    limit: u32,
) -> Result<Vec<Outgoing>, StoreError> {
    let (ts, id) = after.unwrap_or((i64::MIN, i64::MIN));
    let rows = sqlx::query(
        "SELECT id, timestamp, event_id, data FROM queue
         WHERE (timestamp, id) > (?, ?)
         ORDER BY timestamp ASC, id ASC LIMIT ?",
    )
    .bind(ts)
    .bind(id)
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await
    .map_err(StoreError::db("cannot read the queue to send"))?;
    Ok(rows
        .iter()
        .map(|r| Outgoing {
            id: r.get(0),
            timestamp: r.get(1),
            event_id: r.get(2),
            data: r.get(3),
        })
        .collect())
}

/// What the server said about one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    Duplicate,
    Rejected(String),
}

/// What applying a set of verdicts changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Rows deleted because the server stored them now.
    pub delivered: u64,
    /// Rows deleted because the server had them already.
    pub duplicates: u64,
    /// Rows whose retry_count grew.
    pub rejected: u64,
    /// Rows moved to `dead_letter`.
    pub dead: u64,
    /// Their event_ids.
    pub dead_ids: Vec<String>,
}

/// Applies the verdicts in one transaction. Verdicts about rows no longer in
/// the queue (confirmed twice, once per path) change nothing.
pub async fn apply(
    conn: &mut SqliteConnection,
    verdicts: &[(String, Verdict)],
) -> Result<Applied, StoreError> {
    let mut applied = Applied::default();
    if verdicts.is_empty() {
        return Ok(applied);
    }
    let mut tx = crate::db::begin_immediate(conn, "cannot begin applying server results").await?;
    // Confirmations are the bulk (one per event): delete them a chunk per
    // statement, since every statement is a hop to sqlx's SQLite thread.
    let ids = |want: &Verdict| -> Vec<&str> {
        verdicts
            .iter()
            .filter(|(_, v)| v == want)
            .map(|(id, _)| id.as_str())
            .collect()
    };
    applied.delivered = delete_all(&mut tx, &ids(&Verdict::Accepted)).await?;
    applied.duplicates = delete_all(&mut tx, &ids(&Verdict::Duplicate)).await?;
    for (event_id, verdict) in verdicts {
        let Verdict::Rejected(why) = verdict else {
            continue;
        };
        let retries: Option<i64> = sqlx::query_scalar(
            "UPDATE queue SET retry_count = COALESCE(retry_count, 0) + 1 WHERE event_id = ?
             RETURNING retry_count",
        )
        .bind(event_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::db("cannot count a rejection"))?;
        let Some(retries) = retries else { continue };
        applied.rejected += 1;
        if retries >= DEAD_AFTER {
            sqlx::query(
                "INSERT INTO dead_letter (event_id, event_type, data, timestamp, retry_count, error, died_at)
                 SELECT event_id, event_type, data, timestamp, retry_count, ?, unixepoch() FROM queue WHERE event_id = ?
                 ON CONFLICT(event_id) DO UPDATE SET data = excluded.data, retry_count = excluded.retry_count,
                     error = excluded.error, died_at = excluded.died_at",
            )
            .bind(truncate(why, 2000))
            .bind(event_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("cannot move an event to dead_letter"))?;
            sqlx::query("DELETE FROM queue WHERE event_id = ?")
                .bind(event_id)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("cannot move an event to dead_letter"))?;
            applied.dead += 1;
            applied.dead_ids.push(event_id.clone());
        }
    }
    tx.commit()
        .await
        .map_err(StoreError::db("cannot commit server results"))?;
    Ok(applied)
}

/// Deletes the rows of `ids`; returns how many there were.
async fn delete_all(conn: &mut SqliteConnection, ids: &[&str]) -> Result<u64, StoreError> {
    let mut gone = 0;
    for chunk in ids.chunks(1000) {
        let mut qb = QueryBuilder::<Sqlite>::new("DELETE FROM queue WHERE event_id IN (");
        let mut list = qb.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        list.push_unseparated(")");
        gone += qb
            .build()
            .execute(&mut *conn)
            .await
            .map_err(StoreError::db("cannot delete delivered events"))?
            .rows_affected();
    }
    Ok(gone)
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

pub async fn dead_count(conn: &mut SqliteConnection) -> Result<u64, StoreError> {
    if !crate::queue::table_exists(&mut *conn, "dead_letter").await? {
        return Ok(0);
    }
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM dead_letter")
        .fetch_one(conn)
        .await
        .map_err(StoreError::db("cannot count dead letters"))?;
    Ok(n.max(0) as u64)
}

pub async fn dead_list(
    conn: &mut SqliteConnection,
    limit: u32,
) -> Result<Vec<DeadEntry>, StoreError> {
    if !crate::queue::table_exists(&mut *conn, "dead_letter").await? {
        return Ok(vec![]);
    }
    let rows = sqlx::query(
        "SELECT id, event_id, event_type, timestamp, COALESCE(retry_count, 0), error, died_at, data
         FROM dead_letter ORDER BY died_at ASC, id ASC LIMIT ?",
    )
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await
    .map_err(StoreError::db("cannot list dead letters"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let data: String = r.get(7);
            DeadEntry {
                id: r.get(0),
                event_id: r.get(1),
                event_type: r.get(2),
                timestamp: r.get(3),
                retry_count: r.get(4),
                error: r.get(5),
                died_at: r.get(6),
                envelope: serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data)),
            }
        })
        .collect())
}

/// What [`retry_dead`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// The dead letters are back in the queue, which now holds `depth` rows.
    Done { requeued: u64, depth: u64 },
    /// Putting `wanted` rows back would take the queue (`depth` rows) past
    /// `max_queue_size`; nothing changed.
    Full { depth: u64, wanted: u64 },
}

/// Puts every dead letter back into the queue with a fresh retry count, in
/// one transaction, unless that would take the queue past `max_queue_size`:
/// the cap holds for every way into the queue, an emit's or this one.
pub async fn retry_dead(
    conn: &mut SqliteConnection,
    max_queue_size: u64,
) -> Result<Requeue, StoreError> {
    let mut tx = crate::db::begin_immediate(conn, "cannot begin requeueing dead letters").await?;
    // A rare, explicit request: counting here costs nothing that matters.
    let (depth, wanted): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM queue),
                (SELECT COUNT(*) FROM dead_letter d
                  WHERE NOT EXISTS (SELECT 1 FROM queue q WHERE q.event_id = d.event_id))",
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(StoreError::db("cannot count dead letters"))?;
    let (depth, wanted) = (depth.max(0) as u64, wanted.max(0) as u64);
    if depth + wanted > max_queue_size {
        return Ok(Requeue::Full { depth, wanted });
    }
    let n = sqlx::query(
        "INSERT INTO queue (event_id, event_type, data, timestamp, retry_count)
         SELECT event_id, event_type, data, timestamp, 0 FROM dead_letter WHERE true
         ON CONFLICT(event_id) DO UPDATE SET retry_count = 0",
    )
    .execute(&mut *tx)
    .await
    .map_err(StoreError::db("cannot requeue dead letters"))?
    .rows_affected();
    sqlx::query("DELETE FROM dead_letter")
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db("cannot requeue dead letters"))?;
    tx.commit()
        .await
        .map_err(StoreError::db("cannot requeue dead letters"))?;
    Ok(Requeue::Done {
        requeued: n,
        depth: depth + wanted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db;

    async fn queue_with(n: usize) -> (tempfile::TempDir, SqliteConnection) {
        let dir = tempfile::tempdir().unwrap();
        let mut c = db::open_writer(&dir.path().join("queue.db"), db::BUSY_TIMEOUT)
            .await
            .unwrap();
        for i in 0..n {
            sqlx::query(
                "INSERT INTO queue (event_id, event_type, data, timestamp) VALUES (?, 'T', ?, ?)",
            )
            .bind(format!("e{i}"))
            .bind(format!(r#"{{"lamport_clock":{i}}}"#))
            .bind(100 - i as i64 % 2)
            .execute(&mut c)
            .await
            .unwrap();
        }
        (dir, c)
    }

    #[tokio::test]
    async fn reads_in_drain_order_after_a_cursor() {
        let (_d, mut c) = queue_with(4).await;
        let all = oldest_after(&mut c, None, 10).await.unwrap();
        let ids: Vec<&str> = all.iter().map(|o| o.event_id.as_str()).collect();
        assert_eq!(ids, ["e1", "e3", "e0", "e2"]);
        let rest = oldest_after(&mut c, Some((all[1].timestamp, all[1].id)), 10)
            .await
            .unwrap();
        assert_eq!(rest.len(), 2);
        assert_eq!(rest[0].event_id, "e0");
    }

    #[tokio::test]
    async fn verdicts_delete_count_and_bury() {
        let (_d, mut c) = queue_with(3).await;
        let v = vec![
            ("e0".to_string(), Verdict::Accepted),
            ("e1".to_string(), Verdict::Duplicate),
            ("e2".to_string(), Verdict::Rejected("bad".into())),
            ("gone".to_string(), Verdict::Accepted),
        ];
        let a = apply(&mut c, &v).await.unwrap();
        assert_eq!(
            a,
            Applied {
                delivered: 1,
                duplicates: 1,
                rejected: 1,
                dead: 0,
                dead_ids: vec![],
            }
        );
        for _ in 0..3 {
            apply(&mut c, &v[2..3]).await.unwrap();
        }
        let fifth = apply(&mut c, &v[2..3]).await.unwrap();
        assert_eq!(fifth.dead_ids, vec!["e2".to_string()]);
        assert_eq!(crate::queue::depth(&mut c).await.unwrap(), 0);
        assert_eq!(dead_count(&mut c).await.unwrap(), 1);
        let dead = dead_list(&mut c, 10).await.unwrap();
        assert_eq!(
            (dead[0].retry_count, dead[0].error.as_deref()),
            (5, Some("bad"))
        );
        assert_eq!(
            crate::queue::max_lamport(&mut c).await.unwrap(),
            2,
            "dead letters keep their clock"
        );
        assert_eq!(
            retry_dead(&mut c, 10).await.unwrap(),
            Requeue::Done {
                requeued: 1,
                depth: 1
            }
        );
        assert_eq!(dead_count(&mut c).await.unwrap(), 0);
        assert_eq!(crate::queue::depth(&mut c).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_connection_left_wedged_by_a_full_disk_applies_and_requeues() {
        let (_d, mut c) = queue_with(2).await;
        db::testing::wedge_with_full_disk(&mut c).await;
        let v = vec![
            ("e0".to_string(), Verdict::Accepted),
            ("e1".to_string(), Verdict::Rejected("bad".into())),
        ];
        let a = apply(&mut c, &v).await.unwrap();
        assert_eq!((a.delivered, a.rejected), (1, 1));
        db::testing::wedge_with_full_disk(&mut c).await;
        assert_eq!(
            retry_dead(&mut c, 10).await.unwrap(),
            Requeue::Done {
                requeued: 0,
                depth: 1
            }
        );
        assert_eq!(crate::queue::depth(&mut c).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn requeueing_dead_letters_respects_the_cap() {
        let (_d, mut c) = queue_with(3).await;
        for _ in 0..DEAD_AFTER {
            apply(
                &mut c,
                &[("e0".to_string(), Verdict::Rejected("no".into()))],
            )
            .await
            .unwrap();
        }
        assert_eq!(dead_count(&mut c).await.unwrap(), 1);
        assert_eq!(
            retry_dead(&mut c, 2).await.unwrap(),
            Requeue::Full {
                depth: 2,
                wanted: 1
            }
        );
        assert_eq!(dead_count(&mut c).await.unwrap(), 1, "nothing changed");
        assert_eq!(crate::queue::depth(&mut c).await.unwrap(), 2);
        assert_eq!(
            retry_dead(&mut c, 3).await.unwrap(),
            Requeue::Done {
                requeued: 1,
                depth: 3
            }
        );
    }
}
