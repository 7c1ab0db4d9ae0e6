//! The ledger: the Lamport clock in memory and the one way events enter
//! queue.db. Each [`Ledger::commit`] is one SQLite transaction holding any
//! number of requests (group commit): every event is stamped, inserted, and the
//! clock's high-water mark stored with them, so a value is issued only if the
//! transaction that used it commits, and never twice.
//!
//! Whoever holds a ledger must hold `clock.lock` (see [`crate::lock`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use kitty_proto::api::Accepted;
use kitty_proto::draft::Stamp;
use kitty_proto::home::Home;
use kitty_proto::{Submission, rules};
use std::collections::HashMap;

use sqlx::{Connection, QueryBuilder, Row as _, Sqlite, SqliteConnection};

use crate::clockfile::{self, ClockFile};
use crate::{StoreError, db, node_id, queue};

/// One request: all its events are committed, or none.
#[derive(Debug, Clone)]
pub struct Job {
    pub events: Vec<Submission>,
    /// When the producer made the events, if earlier than now (spooled events).
    pub made_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    #[error(
        "queue is full: it holds {depth} events and max_queue_size is {max}; \
         the {wanted} new event(s) were refused and nothing changed"
    )]
    QueueFull { depth: u64, max: u64, wanted: usize },
    #[error("{0}")]
    Storage(String),
}

/// How the clock was recovered when the ledger opened, for the log.
#[derive(Debug, Clone)]
pub struct Recovery {
    pub clock_file: ClockFile,
    pub high_water_mark: u64,
    pub queue_max: u64,
    pub value: u64,
}

impl Recovery {
    /// clock.json should be rewritten now: missing, corrupt or behind.
    pub fn checkpoint_stale(&self) -> bool {
        !matches!(self.clock_file, ClockFile::Valid { value, .. } if value == self.value)
    }
}

pub struct Ledger {
    conn: SqliteConnection,
    stamper: Stamper,
    max_queue_size: u64,
    /// The high-water mark as stored in queue.db.
    persisted: u64,
}

/// The clock and the ids: everything a commit changes besides the database.
struct Stamper {
    clock: u64,
    node_id: String,
    ulids: ulid::Generator,
}

impl Ledger {
    /// Opens queue.db and resumes the clock from the largest of clock.json, the
    /// stored high-water mark and the largest `lamport_clock` in the queue, so a
    /// corrupt, deleted or stale clock.json can only move it up, never back.
    ///
    /// `busy_timeout` bounds how long a commit waits for another process (the
    /// Python CLI) to release queue.db's write lock.
    pub async fn open(
        home: &Home,
        max_queue_size: u64,
        busy_timeout: Duration,
    ) -> Result<(Self, Recovery), StoreError> {
        let mut conn = db::open_writer(&home.queue_db(), busy_timeout).await?;
        let clock_file = clockfile::read(&home.clock_json());
        let high_water_mark = queue::high_water_mark(&mut conn).await?;
        let queue_max = queue::max_lamport(&mut conn).await?;
        let value = clock_file.value().max(high_water_mark).max(queue_max);
        let node_id = match &clock_file {
            ClockFile::Valid {
                node_id: Some(id), ..
            } => id.clone(),
            _ => node_id::compute(),
        };
        let recovery = Recovery {
            clock_file,
            high_water_mark,
            queue_max,
            value,
        };
        let ledger = Self {
            conn,
            stamper: Stamper {
                clock: value,
                node_id,
                ulids: ulid::Generator::new(),
            },
            max_queue_size,
            persisted: recovery.high_water_mark,
        };
        Ok((ledger, recovery))
    }

    /// The last Lamport value issued or received.
    pub fn clock(&self) -> u64 {
        self.stamper.clock
    }

    pub fn node_id(&self) -> &str {
        &self.stamper.node_id
    }

    /// Lamport `receive()` of another node's value: the clock moves past it,
    /// so later local events order after it. Stored with the next commit.
    pub fn observe(&mut self, remote: u64) {
        self.stamper.clock = self.stamper.clock.max(remote.min(kitty_proto::MAX_LAMPORT)) + 1;
    }

    /// Whether the clock moved since the high-water mark was last stored.
    pub fn unpersisted(&self) -> bool {
        self.stamper.clock != self.persisted
    }

    pub fn set_max_queue_size(&mut self, max: u64) {
        self.max_queue_size = max;
    }

    /// Closes queue.db cleanly, so SQLite checkpoints and removes its WAL file.
    pub async fn close(self) {
        if let Err(e) = self.conn.close().await {
            tracing::warn!("closing queue.db: {e}");
        }
    }

    /// Writes clock.json with the current value.
    pub fn checkpoint(&self, home: &Home) -> std::io::Result<()> {
        clockfile::write(
            &home.clock_json(),
            self.stamper.clock,
            &self.stamper.node_id,
        )
    }

    /// Commits `jobs` in one transaction; one result per job, in order. A job
    /// refused for the cap changes nothing; if the transaction fails, no job's
    /// events are stored and the clock is as it was.
    pub async fn commit(
        &mut self,
        jobs: &[Job],
        team_slug: &str,
    ) -> Vec<Result<Vec<Accepted>, CommitError>> {
        let before = self.stamper.clock;
        match self.commit_inner(jobs, team_slug).await {
            Ok(results) => results,
            Err(e) => {
                self.stamper.clock = before;
                let msg = e.to_string();
                jobs.iter()
                    .map(|_| Err(CommitError::Storage(msg.clone())))
                    .collect()
            }
        }
    }

    async fn commit_inner(
        &mut self,
        jobs: &[Job],
        team_slug: &str,
    ) -> Result<Vec<Result<Vec<Accepted>, CommitError>>, StoreError> {
        let now = Utc::now();
        // IMMEDIATE takes the write lock at once, so the count and the
        // duplicate lookup below stay true until we commit, even if the
        // Python CLI writes the file too.
        let mut tx = self
            .conn
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(StoreError::db("cannot begin a queue transaction"))?;
        let mut depth = queue::depth(&mut tx).await?;
        // Every statement is a hop to sqlx's SQLite thread, so a group costs a
        // fixed number of them: one lookup of the ids already queued, one
        // multi-row INSERT (in chunks), one high-water mark.
        let preset: Vec<&str> = jobs
            .iter()
            .flat_map(|j| &j.events)
            .filter_map(Submission::event_id)
            .collect();
        let mut known = existing(&mut tx, &preset).await?;
        let mut rows: Vec<Row> = Vec::new();
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs {
            if depth + job.events.len() as u64 > self.max_queue_size {
                results.push(Err(CommitError::QueueFull {
                    depth,
                    max: self.max_queue_size,
                    wanted: job.events.len(),
                }));
                continue;
            }
            let made_at = job.made_at.unwrap_or(now);
            let stamp_time = rules::format_utc(made_at);
            let mut accepted = Vec::with_capacity(job.events.len());
            for event in &job.events {
                if let Some(&lamport) = event.event_id().and_then(|id| known.get(id)) {
                    // Already queued (a retry): the row stays as it is, and no
                    // value is stamped, so the sequence has no gap.
                    accepted.push(Accepted {
                        event_id: event.event_id().unwrap_or_default().to_owned(),
                        lamport_clock: lamport,
                        duplicate: true,
                    });
                    continue;
                }
                let row = self
                    .stamper
                    .stamp(event, &stamp_time, made_at.timestamp(), team_slug);
                known.insert(row.event_id.clone(), row.lamport);
                accepted.push(Accepted {
                    event_id: row.event_id.clone(),
                    lamport_clock: row.lamport,
                    duplicate: false,
                });
                depth += 1;
                rows.push(row);
            }
            results.push(Ok(accepted));
        }
        insert(&mut tx, &rows).await?;
        if self.stamper.clock != self.persisted {
            queue::set_high_water_mark(&mut tx, self.stamper.clock).await?;
        }
        tx.commit()
            .await
            .map_err(StoreError::db("cannot commit to queue.db"))?;
        self.persisted = self.stamper.clock;
        Ok(results)
    }
}

/// A stamped event, ready for the `queue` table.
struct Row {
    event_id: String,
    event_type: String,
    data: String,
    enqueued_at: i64,
    lamport: u64,
}

/// Rows per INSERT statement: 4 bound values each, well under SQLite's limit
/// of 32,766 variables.
const INSERT_CHUNK: usize = 1000;
/// Ids per lookup statement.
const LOOKUP_CHUNK: usize = 1000;

/// The queued events among `ids`, with their Lamport values.
async fn existing(
    conn: &mut SqliteConnection,
    ids: &[&str],
) -> Result<HashMap<String, u64>, StoreError> {
    let mut found = HashMap::new();
    for chunk in ids.chunks(LOOKUP_CHUNK) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT event_id, json_extract(data, '$.lamport_clock') FROM queue WHERE event_id IN (",
        );
        let mut list = qb.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        list.push_unseparated(")");
        let rows = qb
            .build()
            .fetch_all(&mut *conn)
            .await
            .map_err(StoreError::db("cannot look up queued events"))?;
        for r in rows {
            let lamport: Option<i64> = r.try_get(1).unwrap_or(None);
            found.insert(
                r.get::<String, _>(0),
                lamport.map_or(0, |v| v.max(0) as u64),
            );
        }
    }
    Ok(found)
}

async fn insert(conn: &mut SqliteConnection, rows: &[Row]) -> Result<(), StoreError> {
    for chunk in rows.chunks(INSERT_CHUNK) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT INTO queue (event_id, event_type, data, timestamp, retry_count) ",
        );
        qb.push_values(chunk, |mut b, row| {
            b.push_bind(row.event_id.as_str())
                .push_bind(row.event_type.as_str())
                .push_bind(row.data.as_str())
                .push_bind(row.enqueued_at)
                .push("0");
        });
        qb.build()
            .execute(&mut *conn)
            .await
            .map_err(StoreError::db("cannot insert into the queue"))?;
    }
    Ok(())
}

impl Stamper {
    /// Completes a draft (or takes a relayed envelope as it is) and moves the
    /// clock: `tick()` for a draft, `receive()` for an envelope.
    fn stamp(
        &mut self,
        event: &Submission,
        stamp_time: &str,
        enqueued_at: i64,
        team_slug: &str,
    ) -> Row {
        match event {
            Submission::Draft(d) => {
                let event_id = match &d.event_id {
                    Some(id) => id.clone(),
                    None => self.next_ulid(),
                };
                self.clock += 1;
                let data = d.stamp(&Stamp {
                    event_id: &event_id,
                    lamport_clock: self.clock,
                    node_id: &self.node_id,
                    timestamp: stamp_time,
                    team_slug,
                });
                Row {
                    event_id,
                    event_type: d.event_type.as_str().to_owned(),
                    data,
                    enqueued_at,
                    lamport: self.clock,
                }
            }
            Submission::Envelope(e) => {
                self.clock = self.clock.max(e.lamport_clock) + 1;
                Row {
                    event_id: e.event_id.clone(),
                    event_type: e.event_type.clone(),
                    data: e.raw.clone(),
                    enqueued_at,
                    lamport: e.lamport_clock,
                }
            }
        }
    }

    fn next_ulid(&mut self) -> String {
        match self.ulids.generate() {
            Ok(u) => u.to_string(),
            Err(overflow) => overflow.commit_overflow_increment().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kitty_proto::parse_events_request;

    fn job(body: &str) -> Job {
        Job {
            events: parse_events_request(body.as_bytes()).unwrap(),
            made_at: None,
        }
    }

    const D: &str = r#"{"event_type":"WPCreated","payload":{"wp_id":"WP01","title":"T","feature_slug":"028-x"}}"#;

    #[tokio::test]
    async fn stamps_in_order_and_recovers_upwards() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let (mut l, r) = Ledger::open(&home, 10, db::BUSY_TIMEOUT).await.unwrap();
        assert_eq!(r.value, 0);
        let res = l
            .commit(&[job(D), job(&format!("[{D},{D}]"))], "local")
            .await;
        let values: Vec<u64> = res
            .iter()
            .flat_map(|r| r.as_ref().unwrap().iter().map(|a| a.lamport_clock))
            .collect();
        assert_eq!(values, vec![1, 2, 3]);
        // No clock.json was written: the high-water mark alone carries the clock.
        drop(l);
        let (l, r) = Ledger::open(&home, 10, db::BUSY_TIMEOUT).await.unwrap();
        assert_eq!((r.high_water_mark, r.queue_max, l.clock()), (3, 3, 3));
        assert!(r.checkpoint_stale());
        std::fs::write(home.clock_json(), "{corrupt").unwrap();
        drop(l);
        let (l, _) = Ledger::open(&home, 10, db::BUSY_TIMEOUT).await.unwrap();
        assert_eq!(l.clock(), 3);
    }

    #[tokio::test]
    async fn duplicates_keep_one_row_and_no_gap() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let (mut l, _) = Ledger::open(&home, 10, db::BUSY_TIMEOUT).await.unwrap();
        let with_id = r#"{"event_type":"WPCreated","event_id":"01HX5ZQK3M8N9P0R1S2T3V4W5X","payload":{"wp_id":"WP01","title":"T","feature_slug":"028-x"}}"#;
        let a = l.commit(&[job(with_id)], "local").await.remove(0).unwrap();
        let b = l.commit(&[job(with_id)], "local").await.remove(0).unwrap();
        assert!(!a[0].duplicate && b[0].duplicate);
        assert_eq!(b[0].lamport_clock, a[0].lamport_clock);
        let c = l.commit(&[job(D)], "local").await.remove(0).unwrap();
        assert_eq!(c[0].lamport_clock, 2);
    }

    #[tokio::test]
    async fn cap_refuses_whole_request_and_envelopes_receive() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let (mut l, _) = Ledger::open(&home, 2, db::BUSY_TIMEOUT).await.unwrap();
        let res = l
            .commit(&[job(&format!("[{D},{D},{D}]")), job(D)], "acme")
            .await;
        assert!(matches!(
            res[0],
            Err(CommitError::QueueFull {
                depth: 0,
                max: 2,
                wanted: 3
            })
        ));
        assert_eq!(res[1].as_ref().unwrap()[0].lamport_clock, 1);
        let env = r#"{"event_id":"01HX5ZQK3M8N9P0R1S2T3V4W5X","event_type":"Custom","aggregate_id":"a","aggregate_type":"Feature","payload":{},"node_id":"n","lamport_clock":40,"timestamp":"2026-02-04T13:47:09Z","team_slug":"acme"}"#;
        let res = l.commit(&[job(env)], "acme").await.remove(0).unwrap();
        assert_eq!(res[0].lamport_clock, 40);
        assert_eq!(l.clock(), 41);
        let full = l.commit(&[job(D)], "acme").await.remove(0);
        assert!(matches!(full, Err(CommitError::QueueFull { .. })));
        assert_eq!(l.clock(), 41, "a refused event does not move the clock");
    }
}
