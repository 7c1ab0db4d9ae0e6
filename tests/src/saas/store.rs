//! The server's state in SQLite: accepted events in arrival order, and the
//! refresh tokens still unused.
//!
//! One connection behind a lock: every write is serialized, which makes
//! "first one in wins, the rest are duplicates" hold across concurrent
//! batches and sockets, and keeps an in-memory database alive for the
//! server's whole life.

use std::path::PathBuf;
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

impl Store {
    pub(crate) async fn open(db: &Db) -> anyhow::Result<Self> {
        let options = match db {
            Db::Memory => SqliteConnectOptions::new().in_memory(true),
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
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// Stores the events in one transaction; `true` where an event is new,
    /// `false` where its event_id was stored before (or earlier in this call).
    pub(crate) async fn insert(&self, events: &[NewEvent<'_>]) -> anyhow::Result<Vec<bool>> {
        let received_at = kitty_proto::rules::format_utc(chrono::Utc::now());
        let mut conn = self.conn.lock().await;
        let mut tx = conn.begin().await.context("starting an event insert")?;
        let mut fresh = Vec::with_capacity(events.len());
        for e in events {
            let n = sqlx::query(
                "INSERT INTO events (event_id, event_type, team_slug, lamport_clock, via, received_at, data)
                 VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(event_id) DO NOTHING",
            )
            .bind(e.event_id)
            .bind(e.event_type)
            .bind(e.team)
            .bind(i64::try_from(e.lamport_clock).context("lamport_clock beyond i64")?)
            .bind(e.via)
            .bind(&received_at)
            .bind(e.raw)
            .execute(&mut *tx)
            .await
            .with_context(|| format!("storing event {}", e.event_id))?
            .rows_affected();
            fresh.push(n == 1);
        }
        tx.commit().await.context("committing stored events")?;
        Ok(fresh)
    }

    /// Envelopes in arrival order.
    pub(crate) async fn events(
        &self,
        team: Option<&str>,
        offset: u64,
        limit: Option<u64>,
    ) -> anyhow::Result<Vec<String>> {
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
        let mut conn = self.conn.lock().await;
        sqlx::query("DELETE FROM events")
            .execute(&mut *conn)
            .await
            .context("clearing stored events")?;
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
