//! The server's state: accepted events in arrival order, and the refresh
//! tokens still unused.
//!
//! One SQLite connection behind a lock: every write is serialized, which makes
//! "first one in wins, the rest are duplicates" hold across concurrent
//! batches and sockets, and keeps an in-memory database alive for the
//! server's whole life. A batch (or a run of WebSocket frames) is stored as a
//! few multi-row `INSERT … RETURNING` statements in one transaction, because
//! each statement is a hop to sqlx's worker thread and that hop, not SQLite,
//! was what the server spent its time on.
//!
//! [`Db::Sink`] keeps no events at all, only their ids (to answer duplicates)
//! and counters: a server that is never the slower side of a benchmark.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, Row, SqliteConnection};
use tokio::sync::Mutex;

/// Where the state lives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Db {
    /// Gone when the server stops.
    #[default]
    Memory,
    /// Kept across restarts. With a random JWT secret the old tokens still die
    /// with the process; pass `--jwt-secret` to keep sessions too.
    File(PathBuf),
    /// Events are checked, deduplicated by `event_id` and counted, but not
    /// kept: `/admin/events` lists nothing and the WebSocket snapshot is
    /// empty. Refresh tokens live in memory. For measuring a client.
    Sink,
}

/// An event that passed the envelope rules, on its way into the store.
pub(crate) struct NewEvent<'a> {
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub team: &'a str,
    pub lamport_clock: u64,
    pub raw: &'a str,
    pub via: &'static str,
}

pub(crate) struct Store {
    conn: Mutex<SqliteConnection>,
    /// Some in [`Db::Sink`] mode: events go here instead of `conn`.
    sink: Option<std::sync::Mutex<Sink>>,
    /// Events held (in the sink: ids seen), kept here so that counting them,
    /// which a benchmark polls every few milliseconds, neither scans the table
    /// nor waits for the lock.
    rows: AtomicU64,
}

/// What the sink remembers: the ids, for duplicates, and a count per team.
#[derive(Default)]
struct Sink {
    ids: HashSet<Box<str>>,
    per_team: HashMap<String, u64>,
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE,
        event_type TEXT NOT NULL,
        team_slug TEXT NOT NULL,
        lamport_clock INTEGER NOT NULL,
        via TEXT NOT NULL,
        received_at TEXT NOT NULL,
        data TEXT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS events_team ON events(team_slug, event_type)",
    "CREATE TABLE IF NOT EXISTS refresh_tokens (
        jti TEXT PRIMARY KEY,
        username TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    )",
];

/// Rows per `INSERT` statement, largest first: a batch is cut greedily into
/// these, so that at most this many distinct statements are ever prepared
/// (sqlx caches each) and a batch of 1,000 takes 10 statements, not 1,000.
const CHUNKS: [usize; 5] = [256, 64, 16, 4, 1];

/// The statement for `rows` rows, one of [`CHUNKS`], built once.
fn insert_sql(rows: usize) -> &'static str {
    static SQL: [OnceLock<String>; CHUNKS.len()] = [const { OnceLock::new() }; CHUNKS.len()];
    let i = CHUNKS
        .iter()
        .position(|&n| n == rows)
        .expect("a chunk size");
    SQL[i].get_or_init(|| build_insert_sql(rows))
}

/// Plain `?` placeholders, seven per row: with numbered ones (`?1` shared by
/// every row) sqlx looks each parameter's name up, and SQLite finds a name by
/// walking the statement's list, so binding cost grew with the square of the
/// rows (a quarter of the server's CPU at 256 rows).
fn build_insert_sql(rows: usize) -> String {
    let values = vec!["(?, ?, ?, ?, ?, ?, ?)"; rows].join(", ");
    format!(
        "INSERT INTO events (event_id, event_type, team_slug, lamport_clock, via, received_at, data) \
         VALUES {values} ON CONFLICT(event_id) DO NOTHING RETURNING event_id"
    )
}

/// Per event, whether it is the first with its id: those in `inserted` (the
/// ids the store took), each only at its first occurrence in `events`.
fn first_occurrences(events: &[NewEvent<'_>], mut inserted: HashSet<String>) -> Vec<bool> {
    events.iter().map(|e| inserted.remove(e.event_id)).collect()
}

impl Store {
    pub(crate) async fn open(db: &Db) -> anyhow::Result<Self> {
        let options = match db {
            Db::Memory | Db::Sink => SqliteConnectOptions::new().in_memory(true),
            Db::File(path) => SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5)),
        };
        let mut conn = SqliteConnection::connect_with(&options)
            .await
            .with_context(|| format!("opening the server database {db:?}"))?;
        for stmt in SCHEMA {
            sqlx::query(*stmt)
                .execute(&mut conn)
                .await
                .with_context(|| format!("creating the server schema in {db:?}"))?;
        }
        let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(&mut conn)
            .await
            .with_context(|| format!("counting the events in {db:?}"))?;
        Ok(Self {
            conn: Mutex::new(conn),
            sink: (*db == Db::Sink).then(Default::default),
            rows: AtomicU64::new(u64::try_from(held).unwrap_or(0)),
        })
    }

    fn sink(&self) -> Option<std::sync::MutexGuard<'_, Sink>> {
        self.sink
            .as_ref()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Stores the events in one transaction; `true` where an event is new,
    /// `false` where its event_id was stored before (or earlier in this call).
    pub(crate) async fn insert(&self, events: &[NewEvent<'_>]) -> anyhow::Result<Vec<bool>> {
        if let Some(mut sink) = self.sink() {
            let sink = &mut *sink;
            let fresh: Vec<bool> = events
                .iter()
                .map(|e| {
                    let new = sink.ids.insert(e.event_id.into());
                    if new {
                        *sink.per_team.entry(e.team.to_owned()).or_default() += 1;
                    }
                    new
                })
                .collect();
            self.held(&fresh);
            return Ok(fresh);
        }
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let received_at = kitty_proto::rules::format_utc(chrono::Utc::now());
        let mut inserted = HashSet::with_capacity(events.len());
        let mut conn = self.conn.lock().await;
        let mut tx = conn.begin().await.context("starting an event insert")?;
        let mut rest = events;
        while !rest.is_empty() {
            let n = CHUNKS.into_iter().find(|&n| n <= rest.len()).unwrap_or(1);
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let mut q = sqlx::query(sqlx::AssertSqlSafe(insert_sql(n)));
            for e in chunk {
                q = q
                    .bind(e.event_id)
                    .bind(e.event_type)
                    .bind(e.team)
                    .bind(i64::try_from(e.lamport_clock).context("lamport_clock beyond i64")?)
                    .bind(e.via)
                    .bind(&received_at)
                    .bind(e.raw);
            }
            let rows = q
                .fetch_all(&mut *tx)
                .await
                .with_context(|| format!("storing {n} events from {}", chunk[0].event_id))?;
            for r in rows {
                inserted.insert(r.try_get::<String, _>(0).context("reading a stored id")?);
            }
        }
        tx.commit().await.context("committing stored events")?;
        let fresh = first_occurrences(events, inserted);
        self.held(&fresh);
        Ok(fresh)
    }

    fn held(&self, fresh: &[bool]) {
        let n = fresh.iter().filter(|f| **f).count() as u64;
        self.rows.fetch_add(n, Ordering::Relaxed);
    }

    /// Envelopes in arrival order.
    pub(crate) async fn events(
        &self,
        team: Option<&str>,
        offset: u64,
        limit: Option<u64>,
    ) -> anyhow::Result<Vec<String>> {
        if self.sink.is_some() {
            return Ok(Vec::new());
        }
        // SQLite reads LIMIT -1 as "no limit".
        let limit = limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let mut conn = self.conn.lock().await;
        let rows = sqlx::query(
            "SELECT data FROM events WHERE ?1 IS NULL OR team_slug = ?1 ORDER BY seq LIMIT ?2 OFFSET ?3",
        )
        .bind(team)
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *conn)
        .await
        .context("reading stored events")?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).context("reading an event row"))
            .collect()
    }

    pub(crate) async fn count(&self, team: Option<&str>) -> anyhow::Result<u64> {
        let Some(team) = team else {
            return Ok(self.rows.load(Ordering::Relaxed));
        };
        if let Some(sink) = self.sink() {
            return Ok(sink.per_team.get(team).copied().unwrap_or(0));
        }
        let mut conn = self.conn.lock().await;
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE ?1 IS NULL OR team_slug = ?1")
                .bind(team)
                .fetch_one(&mut *conn)
                .await
                .context("counting stored events")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The team's WPStatusChanged envelopes in arrival order, for the snapshot.
    pub(crate) async fn status_changes(&self, team: &str) -> anyhow::Result<Vec<String>> {
        if self.sink.is_some() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.lock().await;
        sqlx::query_scalar(
            "SELECT data FROM events WHERE team_slug = ? AND event_type = 'WPStatusChanged' ORDER BY seq",
        )
            .bind(team)
            .fetch_all(&mut *conn)
            .await
            .context("reading status changes for the snapshot")
    }

    pub(crate) async fn clear_events(&self) -> anyhow::Result<()> {
        if let Some(mut sink) = self.sink() {
            *sink = Sink::default();
        } else {
            let mut conn = self.conn.lock().await;
            sqlx::query("DELETE FROM events")
                .execute(&mut *conn)
                .await
                .context("clearing stored events")?;
        }
        self.rows.store(0, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) async fn save_refresh(
        &self,
        jti: &str,
        username: &str,
        expires_at: u64,
    ) -> anyhow::Result<()> {
        let mut conn = self.conn.lock().await;
        sqlx::query("INSERT INTO refresh_tokens (jti, username, expires_at) VALUES (?, ?, ?)")
            .bind(jti)
            .bind(username)
            .bind(i64::try_from(expires_at).unwrap_or(i64::MAX))
            .execute(&mut *conn)
            .await
            .context("saving a refresh token")?;
        Ok(())
    }

    /// Uses up a refresh token: true the first time, false ever after. Expired
    /// rows are swept on the way, so the table only holds live sessions.
    pub(crate) async fn consume_refresh(&self, jti: &str) -> anyhow::Result<bool> {
        let now = chrono::Utc::now().timestamp();
        let mut conn = self.conn.lock().await;
        sqlx::query("DELETE FROM refresh_tokens WHERE expires_at <= ?")
            .bind(now)
            .execute(&mut *conn)
            .await
            .context("sweeping expired refresh tokens")?;
        let n = sqlx::query("DELETE FROM refresh_tokens WHERE jti = ?")
            .bind(jti)
            .execute(&mut *conn)
            .await
            .context("using up a refresh token")?
            .rows_affected();
        Ok(n == 1)
    }
}
