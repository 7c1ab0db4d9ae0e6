//! The ledger: the Lamport clock in memory and the one way events enter
//! queue.db. Each [`Ledger::commit`] is one SQLite transaction holding any
//! number of requests (group commit): every event is stamped, inserted, and the
//! clock's high-water mark stored with them, so a value is issued only if the
//! transaction that used it commits, and never twice.
//!
//! A ledger holds `clock.lock` (see [`crate::lock`]) and checks before each
//! commit that the lock's path still names the file it locked. It does not
//! rest on the lock alone: other processes write the same home (a client
//! queueing directly, the spec-kitty CLI ticking its own copy of the clock), so
//! inside the write transaction, before stamping, it reads what they left —
//! the stored high-water mark, rows added to the queue since it last looked,
//! and clock.json when its `stat` changed — and moves past it. After every
//! commit clock.json is rewritten, never lower than what it held.
//!
//! Every value stays within the contract's range, 0 to 2^53 - 1: at the top the
//! clock stops, and drafts are refused rather than stamped with a value the
//! envelope rules reject.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kitty_proto::api::Accepted;
use kitty_proto::draft::Stamp;
use kitty_proto::home::Home;
use kitty_proto::{MAX_LAMPORT, Submission, rules};
use sqlx::{Connection, QueryBuilder, Row as _, Sqlite, SqliteConnection};

use crate::clockfile::{self, ClockFile, Noticed};
use crate::lock::{self, Ownership};
use crate::outbox::{self, Applied, Requeue, Verdict};
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
    #[error(
        "the Lamport clock is at {clock}, and stamping these events would pass 2^53 - 1, \
         the largest value the contract allows; nothing changed"
    )]
    ClockExhausted { clock: u64 },
    #[error("{0}")]
    Storage(String),
}

/// How the clock was recovered when the ledger opened, for the log.
#[derive(Debug, Clone)]
pub struct Recovery {
    pub clock_file: ClockFile,
    pub high_water_mark: u64,
    /// The stored high-water mark, when it was refused for being no value in
    /// the contract's range (the clock resumed from the other sources).
    pub refused_mark: Option<String>,
    pub queue_max: u64,
    /// Queued values beyond 2^53 - 1, left out.
    pub queue_beyond: u64,
    /// Whether every row was read, for want of a usable scan mark; otherwise
    /// `queue_max` and `queue_beyond` are of the rows the mark did not cover.
    pub full_scan: bool,
    pub value: u64,
}

impl Recovery {
    /// clock.json should be rewritten now: missing, corrupt or behind.
    pub fn checkpoint_stale(&self) -> bool {
        !matches!(self.clock_file, ClockFile::Valid { value, .. } if value == self.value)
    }
}

/// How long a commit waits for `clock.lock` when its path names a file
/// someone else locked (a client queueing directly holds it for milliseconds).
const OWNER_PATIENCE: Duration = Duration::from_millis(500);

pub struct Ledger {
    conn: SqliteConnection,
    owner: lock::Held,
    stamper: Stamper,
    max_queue_size: u64,
    /// The high-water mark as stored in queue.db; `None` when what is stored
    /// is no value in the range (it is rewritten with the next commit).
    persisted: Option<u64>,
    /// The largest queue row id accounted for: rows above it are new to us.
    seen_id: i64,
    /// Rows in the queue, kept here rather than counted per commit (counting
    /// reads every row). After a start, or after another connection changed
    /// the file, only an upper bound is known, from the row ids; the rows are
    /// counted only when the bound comes near `max_queue_size` or `status`
    /// asks, so a start and a direct emit cost the same at any depth.
    depth: Depth,
    /// `PRAGMA data_version` as of our last look: it changes only when another
    /// connection commits, so while it stands still `depth` and `seen_id` are
    /// the whole truth. Every write of ours goes through this one connection.
    data_version: i64,
    /// `data_version` when everything others may write was last read: the
    /// rows above `seen_id`, the stored high-water mark and the depth (at the
    /// open, and in every commit the long way). While it stands, a commit may
    /// skip those reads ([`Self::commit_in_one_trip`]). Unlike `data_version`,
    /// a count for `status` does not move it, since it reads no clock values.
    synced_version: i64,
    /// Commits that took [`Self::commit_in_one_trip`], for the tests.
    #[cfg(test)]
    one_trip: u64,
    clock_json: clockfile::Watched,
    /// The refused high-water mark last warned about, so the log says it once.
    refused_mark: Option<String>,
    /// Whether the last ownership check found `clock.lock` held by someone
    /// else: the writer tells a lost lock from other failures by it, without
    /// a check of its own before every commit (one `stat` fewer each).
    owner_lost: bool,
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
    /// Values beyond the contract's range in any of them are refused. Only the
    /// rows the stored mark does not cover are read ([`queue::clock_floor`]).
    ///
    /// `clock_lock` is `clock.lock`, held. `busy_timeout` bounds how long a
    /// commit waits for another process (the Python CLI) to release queue.db's
    /// write lock.
    pub async fn open(
        home: &Home,
        clock_lock: lock::Held,
        max_queue_size: u64,
        busy_timeout: Duration,
    ) -> Result<(Self, Recovery), StoreError> {
        let mut conn = db::open_writer(&home.queue_db(), busy_timeout).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(queue::guard_setup()))
            .execute(&mut conn)
            .await
            .map_err(StoreError::db("cannot prepare queue.db's commit guard"))?;
        // stat before read: a write in between is noticed again at the first commit.
        let seen = clockfile::stat(&home.clock_json());
        let clock_file = clockfile::read(&home.clock_json());
        // The marks first: whatever another process commits after them
        // changes data_version, so it is bounded and scanned again at the
        // first commit.
        let marks = queue::marks(&mut conn).await?;
        let floor = queue::clock_floor(&mut conn).await?;
        let (high_water_mark, refused_mark) = match floor.high_water_mark {
            Ok(v) => (v, None),
            Err(raw) => (0, Some(raw)),
        };
        let scan = floor.scan;
        let value = clock_file.value().max(high_water_mark).max(scan.max);
        let node_id = match &clock_file {
            ClockFile::Valid {
                node_id: Some(id), ..
            } => id.clone(),
            _ => node_id::compute(),
        };
        let recovery = Recovery {
            clock_file,
            high_water_mark,
            refused_mark: refused_mark.clone(),
            queue_max: scan.max,
            queue_beyond: scan.beyond,
            full_scan: floor.full_scan,
            value,
        };
        let ledger = Self {
            conn,
            owner: clock_lock,
            stamper: Stamper {
                clock: value,
                node_id: node_id.clone(),
                ulids: ulid::Generator::new(),
            },
            max_queue_size,
            persisted: refused_mark.is_none().then_some(high_water_mark),
            seen_id: floor.max_id,
            depth: Depth::AtMost(marks.depth_bound),
            data_version: marks.data_version,
            synced_version: marks.data_version,
            #[cfg(test)]
            one_trip: 0,
            clock_json: clockfile::Watched::new(home.clock_json(), node_id, seen),
            refused_mark,
            owner_lost: false,
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
    /// so later local events order after it. Stored with the next commit. A
    /// value beyond the contract's range is no Lamport value and is ignored.
    pub fn observe(&mut self, remote: u64) {
        if remote > MAX_LAMPORT {
            tracing::warn!(
                remote,
                "ignored a remote Lamport value beyond 2^53 - 1, the contract's range"
            );
            return;
        }
        self.stamper.receive(remote);
    }

    /// [`Self::observe`] of a value relayed by the server, unless `node_id`
    /// is ours: our own events come back when the server broadcasts a batch
    /// to every socket of the team, and our clock is past them already; a
    /// receive() of them would only skip values.
    pub fn observe_from(&mut self, remote: u64, node_id: Option<&str>) {
        if node_id == Some(self.stamper.node_id.as_str()) {
            return;
        }
        self.observe(remote);
    }

    /// Whether the clock moved since the high-water mark was last stored.
    pub fn unpersisted(&self) -> bool {
        self.persisted != Some(self.stamper.clock)
    }

    pub fn set_max_queue_size(&mut self, max: u64) {
        self.max_queue_size = max;
    }

    /// Rows in the queue as of the last transaction (the writer's own
    /// count), or at most that many when it has not counted since a start or
    /// another process's write ([`Self::refresh_depth`] counts).
    pub fn depth(&self) -> u64 {
        self.depth.value()
    }

    /// The depth, counted again first if another connection wrote since the
    /// last look (for `status`, between commits).
    pub async fn refresh_depth(&mut self) -> Result<u64, StoreError> {
        // data_version before the count: a commit in between is counted
        // again next time, never missed.
        let version = queue::marks(&mut self.conn).await?.data_version;
        if version != self.data_version || !self.depth.is_exact() {
            self.depth = Depth::Exact(queue::depth(&mut self.conn).await?);
            self.data_version = version;
        }
        Ok(self.depth.value())
    }

    /// Applies what the server said about sent events, in one transaction on
    /// the ledger's connection: queue.db has one writer.
    pub async fn apply(&mut self, verdicts: &[(String, Verdict)]) -> Result<Applied, StoreError> {
        let applied = outbox::apply(&mut self.conn, verdicts).await?;
        self.depth = self
            .depth
            .map(|d| d.saturating_sub(applied.delivered + applied.duplicates + applied.dead));
        Ok(applied)
    }

    /// Puts the dead letters back into the queue, unless that would take it
    /// past `max_queue_size` (refused like an emit, and nothing changes).
    pub async fn retry_dead(&mut self) -> Result<u64, CommitError> {
        match outbox::retry_dead(&mut self.conn, self.max_queue_size).await {
            Ok(Requeue::Done { requeued, depth }) => {
                // Counted under the write lock. Should others have written
                // before, data_version says so and the next commit counts.
                self.depth = Depth::Exact(depth);
                Ok(requeued)
            }
            Ok(Requeue::Full { depth, wanted }) => Err(CommitError::QueueFull {
                depth,
                max: self.max_queue_size,
                wanted: wanted as usize,
            }),
            Err(e) => {
                if let Err(again) = db::recover(&mut self.conn).await {
                    tracing::warn!("{again}");
                }
                Err(CommitError::Storage(e.to_string()))
            }
        }
    }

    /// Makes sure `clock.lock`'s path still names the file we hold locked,
    /// locking it again when it was removed or replaced; waits a moment for
    /// a holder that lets go quickly. One `stat` when nothing changed.
    pub async fn assert_ownership(&mut self) -> Result<(), StoreError> {
        let checked = self.check_ownership().await;
        self.owner_lost = matches!(checked, Err(StoreError::NotOwner { .. }));
        checked
    }

    /// Whether the last ownership check (by [`Self::assert_ownership`], or
    /// the one every commit begins with) found `clock.lock` held by someone
    /// else; a commit refused for it wrote nothing, clock.json included.
    pub fn owner_lost(&self) -> bool {
        self.owner_lost
    }

    async fn check_ownership(&mut self) -> Result<(), StoreError> {
        let deadline = Instant::now() + OWNER_PATIENCE;
        loop {
            let path = self.owner.path().to_path_buf();
            match self
                .owner
                .reassert()
                .map_err(StoreError::io("cannot lock", &path))?
            {
                Ownership::Kept => return Ok(()),
                Ownership::Retaken => {
                    tracing::warn!(
                        "{} had been removed or replaced; locked it again. Values others \
                         issued meanwhile are read from queue.db and clock.json before stamping",
                        path.display()
                    );
                    return Ok(());
                }
                Ownership::Lost if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Ownership::Lost => {
                    return Err(StoreError::NotOwner {
                        path: path.display().to_string(),
                    });
                }
            }
        }
    }

    /// Closes queue.db cleanly, so SQLite checkpoints and removes its WAL file.
    pub async fn close(self) {
        if let Err(e) = self.conn.close().await {
            tracing::warn!("closing queue.db: {e}");
        }
    }

    /// Writes clock.json with the current value, durably, unless someone wrote
    /// a higher one since or our own write holds one ahead (the headroom):
    /// the file never goes back.
    pub fn checkpoint(&mut self, home: &Home) -> std::io::Result<()> {
        self.notice_clock_json();
        let value = self
            .clock_json
            .held()
            .map_or(self.stamper.clock, |held| held.max(self.stamper.clock));
        clockfile::write(&home.clock_json(), value, &self.stamper.node_id)
    }

    /// Keeps clock.json `headroom` values ahead of the clock from now on, so
    /// that it is rewritten once per `headroom` values rather than after every
    /// commit ([`kitty_proto::CLOCK_JSON_HEADROOM`] says why that is safe).
    pub fn keep_clock_json_ahead(&mut self, headroom: u64) {
        self.clock_json.set_headroom(headroom);
    }

    /// Commits `jobs` in one transaction; one result per job, in order. A job
    /// refused for the cap or the clock's range changes nothing; if the
    /// transaction fails, no job's events are stored and the clock is as it was
    /// (past any value others issued meanwhile). clock.json covers the clock after.
    pub async fn commit(
        &mut self,
        jobs: &[Job],
        team_slug: &str,
    ) -> Vec<Result<Vec<Accepted>, CommitError>> {
        let mut restore = self.stamper.clock;
        let results = match self.commit_inner(jobs, team_slug, &mut restore).await {
            Ok(results) => results,
            // Nothing was begun, and clock.json is not ours to write while
            // someone else holds the lock (their writes and ours would race).
            Err(e @ StoreError::NotOwner { .. }) => return all_failed(jobs, &e),
            Err(e) => {
                self.stamper.clock = restore;
                // Now rather than at the next begin: the failure is reported
                // with the connection already fit for the next group.
                if let Err(again) = db::recover(&mut self.conn).await {
                    tracing::warn!("{again}");
                }
                all_failed(jobs, &e)
            }
        };
        self.publish_clock_json();
        results
    }

    async fn commit_inner(
        &mut self,
        jobs: &[Job],
        team_slug: &str,
        restore: &mut u64,
    ) -> Result<Vec<Result<Vec<Accepted>, CommitError>>, StoreError> {
        self.assert_ownership().await?;
        if let Some(done) = self.commit_in_one_trip(jobs, team_slug).await {
            return done;
        }
        // IMMEDIATE takes the write lock at once, so what we read below stays
        // true until we commit, even if the Python CLI writes the file too.
        let marks = queue::begin_with_marks(&mut self.conn).await?;
        let written = self.stamp_and_write(jobs, team_slug, restore, &marks).await;
        if written.is_err() {
            queue::rollback(&mut self.conn).await;
        }
        written
    }

    /// The transaction [`Self::commit_inner`] began: stamps, writes, commits.
    async fn stamp_and_write(
        &mut self,
        jobs: &[Job],
        team_slug: &str,
        restore: &mut u64,
        marks: &queue::Marks,
    ) -> Result<Vec<Result<Vec<Accepted>, CommitError>>, StoreError> {
        let now = Utc::now();
        let tx = &mut self.conn;
        if marks.data_version != self.data_version {
            // Someone else committed (the Python CLI, a client with the lock):
            // what they inserted or deleted is bounded by the row ids.
            self.depth = Depth::AtMost(marks.depth_bound);
        }
        let wanted: u64 = jobs.iter().map(|j| j.events.len() as u64).sum();
        if !self.depth.is_exact() && self.depth.value() + wanted > self.max_queue_size {
            // Near the cap a bound is not enough: count, once.
            self.depth = Depth::Exact(queue::depth(&mut *tx).await?);
        }
        let depth = self.depth.value();
        // Every statement list is a hop to sqlx's SQLite thread, so the long
        // way costs two of them (one is the usual: commit_in_one_trip): the
        // begin with the marks, and the rows with the high-water mark and the
        // commit. One more when drafts bring ids (the lookup of those already
        // queued), and two only when another process wrote since (the count
        // above and the scan below).
        let others_rows = if marks.max_id > self.seen_id {
            queue::scan_lamport_after(&mut *tx, self.seen_id).await?.max
        } else {
            0
        };
        self.persisted = match queue::parse_mark(marks.high_water_mark.as_deref()) {
            Ok(v) => Some(v),
            Err(raw) => {
                if self.refused_mark.as_ref() != Some(&raw) {
                    tracing::warn!(
                        "queue.db's stored high-water mark {raw:?} is no value from 0 to \
                         2^53 - 1; ignored, and replaced with the next commit"
                    );
                    self.refused_mark = Some(raw);
                }
                None
            }
        };
        notice_clock_json(&mut self.clock_json, &mut self.stamper);
        let theirs = others_rows.max(self.persisted.unwrap_or(0));
        if theirs > self.stamper.clock {
            tracing::info!(
                from = self.stamper.clock,
                to = theirs,
                "another process issued Lamport values; continuing above them"
            );
            self.stamper.clock = theirs;
        }
        *restore = self.stamper.clock;
        let preset: Vec<&str> = jobs
            .iter()
            .flat_map(|j| &j.events)
            .filter_map(Submission::event_id)
            .collect();
        let mut known = existing(&mut *tx, &preset).await?;
        let (rows, results) = self.stamp_jobs(jobs, team_slug, &mut known, depth, now);
        // AUTOINCREMENT: the rows get the ids after the largest ever given.
        let seen_id = self.seen_id.max(marks.max_id + rows.len() as i64);
        let mark = self.mark_binds(seen_id);
        write_and_commit(&mut self.conn, None, &rows, mark).await?;
        self.committed(rows.len(), seen_id);
        self.data_version = marks.data_version;
        self.synced_version = marks.data_version;
        Ok(results)
    }

    /// A group in one trip to SQLite's thread instead of two or three, when
    /// nothing has to be read before stamping: no other connection committed
    /// since our last look (so the depth, the stored mark and the row ids we
    /// know are the whole truth), its cap decisions are certain, and its rows
    /// fit one statement. The rows are stamped from what we know and sent
    /// after `BEGIN IMMEDIATE` and a guard that aborts the list if the file's
    /// marks are not those we stamped by (see [`queue::guard_setup`]); then
    /// the stamps are undone and `None` sends the group the long way, which
    /// reads what the others wrote. Event ids the drafts bring (every
    /// `kitty-sync emit` and Python emit does) are taken to be new: if one is
    /// queued already (a retry), the insert breaks the `UNIQUE` on
    /// `event_id`, and the group goes the long way too, which looks them up
    /// and answers the retry with the first value. `None` too when the
    /// shortcut does not apply.
    async fn commit_in_one_trip(
        &mut self,
        jobs: &[Job],
        team_slug: &str,
    ) -> Option<Result<Vec<Result<Vec<Accepted>, CommitError>>, StoreError>> {
        let wanted: u64 = jobs.iter().map(|j| j.events.len() as u64).sum();
        let certain = self.depth.is_exact() || self.depth.value() + wanted <= self.max_queue_size;
        let persisted = self.persisted.filter(|_| self.refused_mark.is_none())?;
        if !certain || wanted as usize > INSERT_CHUNK {
            return None;
        }
        notice_clock_json(&mut self.clock_json, &mut self.stamper);
        // The long way's rule (continue above the stored mark); the guard
        // checks that the mark is still `persisted`.
        self.stamper.clock = self.stamper.clock.max(persisted);
        let before = self.stamper.clock;
        let mut known = HashMap::new();
        let (rows, results) =
            self.stamp_jobs(jobs, team_slug, &mut known, self.depth.value(), Utc::now());
        // The guard checks that `seen_id` is the largest id given, so the
        // rows get the ones after it.
        let seen_id = self.seen_id + rows.len() as i64;
        let guard = Some((self.synced_version, self.seen_id, persisted));
        let mark = self.mark_binds(seen_id);
        match write_and_commit(&mut self.conn, guard, &rows, mark).await {
            Ok(()) => {
                self.committed(rows.len(), seen_id);
                #[cfg(test)]
                {
                    self.one_trip += 1;
                }
                Some(Ok(results))
            }
            Err(e) => {
                queue::rollback(&mut self.conn).await;
                self.stamper.clock = before;
                match e {
                    StoreError::Db { source, .. }
                        if queue::guard_tripped(&source) || queue::queued_already(&source) =>
                    {
                        None
                    }
                    e => Some(Err(e)),
                }
            }
        }
    }

    /// Stamps the events of `jobs` that fit (the cap from `depth`, the
    /// clock's range), skipping those `known` holds already (retries): the
    /// rows to insert, and one result per job, in order.
    fn stamp_jobs(
        &mut self,
        jobs: &[Job],
        team_slug: &str,
        known: &mut HashMap<String, u64>,
        mut depth: u64,
        now: DateTime<Utc>,
    ) -> (Vec<Row>, Vec<Result<Vec<Accepted>, CommitError>>) {
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
            if !self.stamper.fits(&job.events, known) {
                results.push(Err(CommitError::ClockExhausted {
                    clock: self.stamper.clock,
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
        (rows, results)
    }

    /// The high-water mark's upsert, when the clock moved past the stored one.
    fn mark_binds(&self, seen_id: i64) -> Option<[String; 4]> {
        (self.persisted != Some(self.stamper.clock))
            .then(|| queue::mark_binds(self.stamper.clock, seen_id))
    }

    /// What a commit of `inserted` rows, up to row id `seen_id`, leaves known.
    fn committed(&mut self, inserted: usize, seen_id: i64) {
        self.persisted = Some(self.stamper.clock);
        self.refused_mark = None;
        self.seen_id = seen_id;
        self.depth = self.depth.map(|d| d + inserted as u64);
    }

    fn notice_clock_json(&mut self) {
        notice_clock_json(&mut self.clock_json, &mut self.stamper);
    }

    /// clock.json after a commit: at or above the current value (see
    /// [`Self::keep_clock_json_ahead`]), never lower than the file.
    fn publish_clock_json(&mut self) {
        // Our own write still covers the clock: nothing to write, so no need
        // to look (a `stat` per commit); the next commit looks before it stamps.
        if self.clock_json.covers(self.stamper.clock) {
            return;
        }
        self.notice_clock_json();
        // A failure is logged by the watcher and retried after the next commit.
        let _ = self.clock_json.publish(self.stamper.clock);
    }
}

/// What the ledger knows of the queue's depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Depth {
    Exact(u64),
    AtMost(u64),
}

impl Depth {
    fn value(self) -> u64 {
        match self {
            Self::Exact(n) | Self::AtMost(n) => n,
        }
    }

    fn is_exact(self) -> bool {
        matches!(self, Self::Exact(_))
    }

    /// The depth after rows of ours were added or deleted: a bound stays a bound.
    fn map(self, f: impl FnOnce(u64) -> u64) -> Self {
        match self {
            Self::Exact(d) => Self::Exact(f(d)),
            Self::AtMost(d) => Self::AtMost(f(d)),
        }
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

/// Inserts the rows, stores the high-water mark (when it moved) and commits:
/// the last chunk of rows, the mark and the COMMIT go as one statement list.
/// With `guard` (the marks the caller stamped by: `data_version`, the largest
/// row id given, the stored high-water mark), the list also begins the
/// transaction and fails with [`queue::GUARD_TRIPPED`] if the file's differ;
/// the rows must then fit one statement.
async fn write_and_commit(
    conn: &mut SqliteConnection,
    guard: Option<(i64, i64, u64)>,
    rows: &[Row],
    mark: Option<[String; 4]>,
) -> Result<(), StoreError> {
    let chunks: Vec<&[Row]> = rows.chunks(INSERT_CHUNK).collect();
    debug_assert!(
        guard.is_none() || chunks.len() <= 1,
        "a guarded list is one statement"
    );
    let (last, before) = match chunks.split_last() {
        Some((last, before)) => (Some(*last), before),
        None => (None, &[][..]),
    };
    for chunk in before {
        insert_values(QueryBuilder::new(""), chunk)
            .build()
            .execute(&mut *conn)
            .await
            .map_err(StoreError::db("cannot insert into the queue"))?;
    }
    let mut qb = QueryBuilder::<Sqlite>::new("");
    if let Some((version, seq, hwm)) = guard {
        let mut parts = queue::GUARD.split('?');
        qb.push("BEGIN IMMEDIATE; ");
        qb.push(parts.next().unwrap_or_default());
        qb.push_bind(version);
        qb.push(parts.next().unwrap_or_default());
        qb.push_bind(seq);
        qb.push(parts.next().unwrap_or_default());
        qb.push_bind(hwm.to_string());
        qb.push(parts.next().unwrap_or_default());
        qb.push("; ");
    }
    if let Some(chunk) = last {
        qb = insert_values(qb, chunk);
        qb.push("; ");
    }
    if let Some(binds) = mark {
        // The fragment's placeholders take these binds, in order.
        let mut parts = queue::SET_MARK.split('?');
        qb.push(parts.next().unwrap_or_default());
        for (bind, part) in binds.into_iter().zip(parts) {
            qb.push_bind(bind);
            qb.push(part);
        }
        qb.push("; ");
    }
    qb.push("COMMIT");
    qb.build()
        .execute(&mut *conn)
        .await
        .map_err(StoreError::db("cannot commit to queue.db"))?;
    Ok(())
}

fn insert_values(mut qb: QueryBuilder<Sqlite>, chunk: &[Row]) -> QueryBuilder<Sqlite> {
    qb.push("INSERT INTO queue (event_id, event_type, data, timestamp, retry_count) ");
    qb.push_values(chunk, |mut b, row| {
        b.push_bind(row.event_id.as_str())
            .push_bind(row.event_type.as_str())
            .push_bind(row.data.as_str())
            .push_bind(row.enqueued_at)
            .push("0");
    });
    qb
}

/// One storage failure for every job of a group that was not committed.
fn all_failed(jobs: &[Job], e: &StoreError) -> Vec<Result<Vec<Accepted>, CommitError>> {
    let msg = e.to_string();
    jobs.iter()
        .map(|_| Err(CommitError::Storage(msg.clone())))
        .collect()
}

/// Moves the clock past a value someone else wrote into clock.json.
fn notice_clock_json(watched: &mut clockfile::Watched, stamper: &mut Stamper) {
    match watched.notice() {
        Noticed::Value(v) if v > stamper.clock => {
            tracing::info!(
                from = stamper.clock,
                to = v,
                "another process (the spec-kitty CLI?) moved clock.json ahead; continuing above it"
            );
            stamper.clock = v;
        }
        Noticed::Unusable(why) => tracing::warn!(
            "clock.json was rewritten by another process and is unusable ({why}); \
             ignored, and rewritten with the current value"
        ),
        _ => {}
    }
}

impl Stamper {
    /// Whether stamping `events` (those not queued already) keeps every value
    /// within the contract's range.
    fn fits(&self, events: &[Submission], known: &HashMap<String, u64>) -> bool {
        let mut clock = self.clock;
        for event in events {
            if event.event_id().is_some_and(|id| known.contains_key(id)) {
                continue;
            }
            match event {
                Submission::Draft(_) if clock >= MAX_LAMPORT => return false,
                Submission::Draft(_) => clock += 1,
                Submission::Envelope(e) => clock = next_after(clock, e.lamport_clock),
            }
        }
        true
    }

    /// `receive()`, stopping at the top of the range.
    fn receive(&mut self, remote: u64) {
        self.clock = next_after(self.clock, remote);
    }

    /// Completes a draft (or takes a relayed envelope as it is) and moves the
    /// clock: `tick()` for a draft, `receive()` for an envelope. The caller
    /// checked [`Self::fits`] first.
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
                self.receive(e.lamport_clock);
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

/// Lamport `receive()`: past both, but never past the top of the range.
fn next_after(clock: u64, remote: u64) -> u64 {
    clock.max(remote).saturating_add(1).min(MAX_LAMPORT)
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

    fn envelope(lamport: u64) -> String {
        format!(
            r#"{{"event_id":"{}","event_type":"Custom","aggregate_id":"a","aggregate_type":"Feature","payload":{{}},"node_id":"n","lamport_clock":{lamport},"timestamp":"2026-02-04T13:47:09Z","team_slug":"acme"}}"#,
            crate::ids::new_ulid()
        )
    }

    /// Opens a ledger the way its users do: `clock.lock` first.
    async fn open(home: &Home, max: u64) -> (Ledger, Recovery) {
        let held = lock::try_lock(&home.clock_lock())
            .unwrap()
            .expect("clock.lock is free");
        Ledger::open(home, held, max, db::BUSY_TIMEOUT)
            .await
            .unwrap()
    }

    /// The Lamport value of each accepted event, in order; panics on a refusal.
    fn values(res: &[Result<Vec<Accepted>, CommitError>]) -> Vec<u64> {
        res.iter()
            .flat_map(|r| r.as_ref().unwrap().iter().map(|a| a.lamport_clock))
            .collect()
    }

    async fn emit(l: &mut Ledger, n: usize) -> Vec<u64> {
        let body = format!("[{}]", vec![D; n].join(","));
        values(&l.commit(&[job(&body)], "local").await)
    }

    async fn set_mark(l: &mut Ledger, raw: &str) {
        sqlx::query("UPDATE kitty_meta SET value = ? WHERE key = 'clock_hwm'")
            .bind(raw)
            .execute(&mut l.conn)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn stamps_in_order_and_recovers_upwards() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let (mut l, r) = open(&home, 10).await;
        assert_eq!(r.value, 0);
        let res = l
            .commit(&[job(D), job(&format!("[{D},{D}]"))], "local")
            .await;
        assert_eq!(values(&res), vec![1, 2, 3]);
        // Without clock.json the high-water mark alone carries the clock.
        drop(l);
        std::fs::remove_file(home.clock_json()).unwrap();
        let (l, r) = open(&home, 10).await;
        assert_eq!((r.high_water_mark, r.queue_max, l.clock()), (3, 0, 3));
        assert!(r.checkpoint_stale());
        std::fs::write(home.clock_json(), "{corrupt").unwrap();
        drop(l);
        let (l, _) = open(&home, 10).await;
        assert_eq!(l.clock(), 3);
    }

    #[tokio::test]
    async fn a_commit_refused_for_a_lost_lock_leaves_clock_json_to_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let (mut l, _) = open(&home, 10).await;
        assert_eq!(emit(&mut l, 1).await, vec![1]);
        assert!(!l.owner_lost());
        // Someone removes clock.lock and locks a new one: the clock is theirs
        // now, and they move clock.json on.
        std::fs::remove_file(home.clock_lock()).unwrap();
        let theirs = lock::try_lock(&home.clock_lock())
            .unwrap()
            .expect("the new clock.lock is free");
        clockfile::write(&home.clock_json(), 40, "0123456789ab").unwrap();
        let written = std::fs::read(home.clock_json()).unwrap();
        // A value seen on the server's WebSocket moves our clock past what
        // our own clock.json holds, so a commit would want to write it.
        l.observe_from(100, None);
        let res = l.commit(&[job(D)], "local").await;
        assert!(
            matches!(&res[0], Err(CommitError::Storage(m)) if m.contains("clock.lock")),
            "{res:?}"
        );
        assert!(l.owner_lost());
        assert_eq!(
            std::fs::read(home.clock_json()).unwrap(),
            written,
            "clock.json is the holder's to write"
        );
        // Let go: the next commit locks it again and continues above both.
        drop(theirs);
        assert_eq!(emit(&mut l, 1).await, vec![102], "receive() moved past 100");
        assert!(!l.owner_lost());
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM queue")
            .fetch_one(&mut l.conn)
            .await
            .unwrap();
        assert_eq!(rows, 2, "the refused commit stored nothing");
    }

    #[tokio::test]
    async fn duplicates_keep_one_row_and_no_gap() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let (mut l, _) = open(&home, 10).await;
        let with_id = r#"{"event_type":"WPCreated","event_id":"01HX5ZQK3M8N9P0R1S2T3V4W5X","payload":{"wp_id":"WP01","title":"T","feature_slug":"028-x"}}"#;
        let a = l.commit(&[job(with_id)], "local").await.remove(0).unwrap();
        let short = l.one_trip;
        let b = l.commit(&[job(with_id)], "local").await.remove(0).unwrap();
        assert!(!a[0].duplicate && b[0].duplicate);
        assert_eq!(b[0].lamport_clock, a[0].lamport_clock);
        assert_eq!(l.one_trip, short, "a retry is looked up the long way");
        let c = l.commit(&[job(D)], "local").await.remove(0).unwrap();
        assert_eq!(c[0].lamport_clock, 2);
        assert_eq!(l.one_trip, short + 1);
        // A group of a new id, a queued one and the new one again: the new
        // one is stamped once, the others answered with their values.
        let fresh = with_id.replace("5X\"", "5Y\"");
        let res = l
            .commit(&[job(&fresh), job(with_id), job(&fresh)], "local")
            .await;
        let got: Vec<(u64, bool)> = res
            .iter()
            .map(|r| r.as_ref().unwrap()[0].clone())
            .map(|a| (a.lamport_clock, a.duplicate))
            .collect();
        assert_eq!(got, vec![(3, false), (1, true), (3, true)]);
        assert_eq!(l.one_trip, short + 1);
        // Ids the drafts bring, none queued yet: one trip, as without ids.
        let newer = with_id.replace("5X\"", "5Z\"");
        let res = l.commit(&[job(&newer), job(D)], "local").await;
        assert_eq!(values(&res), vec![4, 5]);
        assert_eq!(l.one_trip, short + 2);
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM queue")
            .fetch_one(&mut l.conn)
            .await
            .unwrap();
        assert_eq!(rows, 5);
    }

    #[tokio::test]
    async fn cap_refuses_whole_request_and_envelopes_receive() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let (mut l, _) = open(&home, 2).await;
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
        let res = l
            .commit(&[job(&envelope(40))], "acme")
            .await
            .remove(0)
            .unwrap();
        assert_eq!(res[0].lamport_clock, 40);
        assert_eq!(l.clock(), 41);
        let full = l.commit(&[job(D)], "acme").await.remove(0);
        assert!(matches!(full, Err(CommitError::QueueFull { .. })));
        assert_eq!(l.clock(), 41, "a refused event does not move the clock");
    }

    #[tokio::test]
    async fn a_full_disk_fails_one_commit_and_the_next_succeeds_once_space_returns() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let (mut l, _) = open(&home, 100).await;
        assert_eq!(emit(&mut l, 2).await, vec![1, 2]);
        let big = format!(
            r#"{{"event_type":"WPCreated","payload":{{"wp_id":"WP01","title":"{}","feature_slug":"028-x"}}}}"#,
            "x".repeat(64 * 1024)
        );
        for _ in 0..3 {
            // The ledger may have reopened queue.db after a failure; the disk
            // is still full.
            db::testing::fill_up(&mut l.conn).await;
            let res = l.commit(&[job(&big)], "local").await.remove(0);
            match res {
                Err(CommitError::Storage(e)) => assert!(e.contains("full"), "{e}"),
                other => panic!("expected a storage error, got {other:?}"),
            }
            assert_eq!(l.clock(), 2, "a failed commit issues nothing");
        }
        db::testing::free_space(&mut l.conn).await;
        let res = l.commit(&[job(&big), job(D)], "local").await;
        assert_eq!(values(&res), vec![3, 4], "commits resume by themselves");
    }

    #[tokio::test]
    async fn a_stored_mark_beyond_the_range_is_refused_not_wrapped() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let (mut l, _) = open(&home, 100).await;
        assert_eq!(emit(&mut l, 3).await, vec![1, 2, 3]);
        set_mark(&mut l, "18446744073709551615").await;
        drop(l);
        let (mut l, r) = open(&home, 100).await;
        assert_eq!(r.refused_mark.as_deref(), Some("18446744073709551615"));
        assert_eq!(l.clock(), 3, "resumed from clock.json and the queue");
        assert_eq!(emit(&mut l, 2).await, vec![4, 5]);
        assert_eq!(
            queue::high_water_mark(&mut l.conn).await.unwrap(),
            5,
            "rewritten"
        );
        // Corrupted again while running: refused before the next stamp too.
        set_mark(&mut l, "9007199254740992").await;
        assert_eq!(emit(&mut l, 1).await, vec![6]);
    }

    #[tokio::test]
    async fn queued_values_beyond_the_range_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let (mut l, _) = open(&home, 100).await;
        assert_eq!(emit(&mut l, 1).await, vec![1]);
        for (id, v) in [
            ("a", "9007199254740992"),
            ("b", "18446744073709551615"),
            ("c", "7"),
        ] {
            sqlx::query(
                "INSERT INTO queue (event_id, event_type, data, timestamp) VALUES (?, 'T', ?, 1)",
            )
            .bind(id)
            .bind(format!(r#"{{"lamport_clock":{v}}}"#))
            .execute(&mut l.conn)
            .await
            .unwrap();
        }
        assert_eq!(
            emit(&mut l, 1).await,
            vec![8],
            "moved past 7, not past the range"
        );
        drop(l);
        std::fs::remove_file(home.clock_json()).unwrap();
        let (l, r) = open(&home, 100).await;
        // The stored mark covers every row: none is read again.
        assert_eq!(
            (r.full_scan, r.queue_max, r.queue_beyond, r.value),
            (false, 0, 0, 8)
        );
        // Without the scan mark, every row is, and the same is found.
        sqlx::query("DELETE FROM kitty_meta WHERE key = 'clock_scanned_id'")
            .execute(&mut { l }.conn)
            .await
            .unwrap();
        let (_, r) = open(&home, 100).await;
        assert_eq!(
            (r.full_scan, r.queue_max, r.queue_beyond, r.value),
            (true, 8, 2, 8)
        );
    }

    #[tokio::test]
    async fn a_start_reads_only_the_rows_above_the_scan_mark() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let (mut l, _) = open(&home, 100).await;
        assert_eq!(emit(&mut l, 3).await, vec![1, 2, 3]);
        drop(l);
        // Another process, while nobody held the clock: one row above the mark.
        let mut other = db::open_writer(&home.queue_db(), db::BUSY_TIMEOUT)
            .await
            .unwrap();
        sqlx::query("INSERT INTO queue (event_id, event_type, data, timestamp) VALUES ('x', 'T', '{\"lamport_clock\":70}', 1)")
            .execute(&mut other)
            .await
            .unwrap();
        std::fs::remove_file(home.clock_json()).unwrap();
        let (mut l, r) = open(&home, 100).await;
        assert_eq!(
            (r.full_scan, r.high_water_mark, r.queue_max, r.value),
            (false, 3, 70, 70)
        );
        assert_eq!(l.depth(), 4);
        assert_eq!(emit(&mut l, 1).await, vec![71]);
        // A scan mark beyond every id ever given (the table made anew) is
        // not trusted.
        sqlx::query("UPDATE kitty_meta SET value = '1000' WHERE key = 'clock_scanned_id'")
            .execute(&mut other)
            .await
            .unwrap();
        drop(l);
        let (_, r) = open(&home, 100).await;
        assert!(r.full_scan);
        assert_eq!(r.queue_max, 71);
    }

    #[tokio::test]
    async fn our_own_values_relayed_back_do_not_move_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let (mut l, _) = open(&home, 10).await;
        assert_eq!(emit(&mut l, 2).await, vec![1, 2]);
        let own = l.node_id().to_owned();
        l.observe_from(1, Some(&own));
        assert_eq!(l.clock(), 2, "our own event, relayed back");
        l.observe_from(1, Some("feedfacecafe"));
        assert_eq!(l.clock(), 3, "another node's: receive()");
        l.observe_from(7, None);
        assert_eq!(l.clock(), 8, "no node_id: receive()");
    }

    #[tokio::test]
    async fn a_bound_from_the_row_ids_stands_in_for_a_count_until_the_cap_is_near() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let (mut l, _) = open(&home, 10).await;
        assert_eq!(emit(&mut l, 10).await.len(), 10);
        drop(l);
        let mut other = db::open_writer(&home.queue_db(), db::BUSY_TIMEOUT)
            .await
            .unwrap();
        sqlx::query("DELETE FROM queue WHERE id BETWEEN 2 AND 9")
            .execute(&mut other)
            .await
            .unwrap();
        // Opened without a count: ids 1 and 10 are left, so at most 10 rows.
        let (mut l, _) = open(&home, 10).await;
        assert_eq!(l.depth(), 10);
        // 10 + 1 would pass the cap: now it counts, finds 2, and takes it.
        assert_eq!(emit(&mut l, 1).await, vec![11]);
        assert_eq!(l.depth(), 3);
        assert_eq!(l.refresh_depth().await.unwrap(), 3);
    }

    #[tokio::test]
    async fn the_depth_is_counted_again_only_after_another_connection_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let (mut l, _) = open(&home, 5).await;
        emit(&mut l, 3).await;
        assert_eq!(l.depth(), 3);
        let mut other = db::open_writer(&home.queue_db(), db::BUSY_TIMEOUT)
            .await
            .unwrap();
        sqlx::query("DELETE FROM queue WHERE id <= 2")
            .execute(&mut other)
            .await
            .unwrap();
        assert_eq!(emit(&mut l, 4).await.len(), 4, "2 deleted: 1 + 4 fits");
        assert_eq!(l.depth(), 5);
        sqlx::query(
            "INSERT INTO queue (event_id, event_type, data, timestamp) VALUES ('y', 'T', '{}', 1)",
        )
        .execute(&mut other)
        .await
        .unwrap();
        sqlx::query("DELETE FROM queue WHERE id = 3")
            .execute(&mut other)
            .await
            .unwrap();
        let res = l.commit(&[job(D)], "local").await.remove(0);
        assert!(
            matches!(res, Err(CommitError::QueueFull { depth: 5, .. })),
            "{res:?}"
        );
        // Applied verdicts and requeued dead letters keep it right too.
        let ids: Vec<String> = sqlx::query_scalar("SELECT event_id FROM queue ORDER BY id LIMIT 2")
            .fetch_all(&mut other)
            .await
            .unwrap();
        let verdicts: Vec<_> = ids.iter().map(|i| (i.clone(), Verdict::Accepted)).collect();
        assert_eq!(l.apply(&verdicts).await.unwrap().delivered, 2);
        assert_eq!(l.depth(), 3);
        assert_eq!(l.retry_dead().await.unwrap(), 0);
        assert_eq!(emit(&mut l, 2).await.len(), 2);
        assert_eq!(queue::depth(&mut other).await.unwrap(), 5);
        assert_eq!(l.depth(), 5);
    }

    #[tokio::test]
    async fn the_clock_stops_at_the_top_of_the_range() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let (mut l, _) = open(&home, 100).await;
        // A relayed envelope at the top is stored, and the clock stays in range.
        let top = l.commit(&[job(&envelope(MAX_LAMPORT))], "acme").await;
        assert_eq!(values(&top), vec![MAX_LAMPORT]);
        assert_eq!(l.clock(), MAX_LAMPORT);
        let refused = l.commit(&[job(D), job(&envelope(5))], "acme").await;
        assert!(
            matches!(
                refused[0],
                Err(CommitError::ClockExhausted { clock: MAX_LAMPORT })
            ),
            "{refused:?}"
        );
        assert_eq!(
            values(&refused[1..]),
            vec![5],
            "an envelope needs no new value"
        );
        assert_eq!(l.clock(), MAX_LAMPORT);
        assert_eq!(home_clock_value(&home), MAX_LAMPORT);
        // Remote values: at the top, the clock stays there; beyond, ignored.
        let dir2 = tempfile::tempdir().unwrap();
        let home2 = Home::new(dir2.path());
        let (mut l, _) = open(&home2, 100).await;
        l.observe(MAX_LAMPORT + 1);
        l.observe(u64::MAX);
        assert_eq!(l.clock(), 0);
        l.observe(MAX_LAMPORT - 1);
        assert_eq!(l.clock(), MAX_LAMPORT);
        l.observe(MAX_LAMPORT);
        assert_eq!(l.clock(), MAX_LAMPORT);
        assert!(matches!(
            l.commit(&[job(D)], "acme").await[0],
            Err(CommitError::ClockExhausted { .. })
        ));
        // The mark is stored, in range, and the ledger reopens at it.
        drop(l);
        let (l, r) = open(&home2, 100).await;
        assert_eq!((r.high_water_mark, l.clock()), (MAX_LAMPORT, MAX_LAMPORT));
    }

    fn home_clock_value(home: &Home) -> u64 {
        clockfile::read(&home.clock_json()).value()
    }

    #[tokio::test]
    async fn clock_json_is_current_after_every_commit_and_never_lowered() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let (mut l, _) = open(&home, 100).await;
        for n in 1..=3 {
            assert_eq!(emit(&mut l, 1).await, vec![n]);
            assert_eq!(home_clock_value(&home), n);
        }
        // Another process (the CLI) saved its own, higher clock.
        clockfile::write(&home.clock_json(), 48, "abcdefabcdef").unwrap();
        assert_eq!(
            emit(&mut l, 1).await,
            vec![49],
            "continues above clock.json"
        );
        assert_eq!(home_clock_value(&home), 49);
        // Lowered or corrupted by someone else: back to the current value.
        clockfile::write(&home.clock_json(), 2, "abcdefabcdef").unwrap();
        assert_eq!(emit(&mut l, 1).await, vec![50]);
        assert_eq!(home_clock_value(&home), 50);
        std::fs::write(home.clock_json(), "{").unwrap();
        assert_eq!(emit(&mut l, 1).await, vec![51]);
        assert_eq!(home_clock_value(&home), 51);
        l.checkpoint(&home).unwrap();
        assert_eq!(home_clock_value(&home), 51);
        clockfile::write(&home.clock_json(), 70, "abcdefabcdef").unwrap();
        l.checkpoint(&home).unwrap();
        assert_eq!(home_clock_value(&home), 70, "a checkpoint never lowers it");
    }

    #[tokio::test]
    async fn clock_json_kept_ahead_covers_every_value_and_survives_a_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let (mut l, _) = open(&home, 10_000).await;
        l.keep_clock_json_ahead(10);
        assert_eq!(emit(&mut l, 1).await, vec![1]);
        assert_eq!(home_clock_value(&home), 11, "ahead by the headroom");
        let written = clockfile::stat(&home.clock_json());
        assert_eq!(emit(&mut l, 10).await, (2..=11).collect::<Vec<_>>());
        assert_eq!(
            clockfile::stat(&home.clock_json()),
            written,
            "values up to 11 were covered: no rewrite"
        );
        assert_eq!(emit(&mut l, 1).await, vec![12]);
        assert_eq!(home_clock_value(&home), 22);
        // The CLI loads the file now and ticks above everything issued.
        clockfile::write(&home.clock_json(), 23, "abcdefabcdef").unwrap();
        assert_eq!(emit(&mut l, 1).await, vec![24], "continues above the CLI");
        assert_eq!(home_clock_value(&home), 34);
        // At shutdown the reservation stays: the file is never lowered.
        l.checkpoint(&home).unwrap();
        assert_eq!(home_clock_value(&home), 34);
        drop(l);
        let (mut again, recovery) = open(&home, 10_000).await;
        assert_eq!(recovery.value, 34);
        assert_eq!(
            emit(&mut again, 1).await,
            vec![35],
            "a restart skips the rest"
        );
    }

    #[tokio::test]
    async fn a_quiet_queue_commits_in_one_trip_and_others_rows_still_count() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let (mut l, _) = open(&home, 100).await;
        assert_eq!(emit(&mut l, 1).await, vec![1]);
        assert_eq!(emit(&mut l, 2).await, vec![2, 3]);
        assert_eq!(emit(&mut l, 1).await, vec![4]);
        let short = l.one_trip;
        assert!(
            short >= 2,
            "nobody else wrote: {short} of 3 commits in one trip"
        );
        // Another process queues a row with its own, higher value; then a
        // count for status reads data_version again (and only the depth).
        let mut other = db::open_writer(&home.queue_db(), db::BUSY_TIMEOUT)
            .await
            .unwrap();
        sqlx::query("INSERT INTO queue (event_id, event_type, data, timestamp) VALUES ('cli', 'T', '{\"lamport_clock\":50}', 1)")
            .execute(&mut other)
            .await
            .unwrap();
        assert_eq!(l.refresh_depth().await.unwrap(), 5);
        assert_eq!(
            emit(&mut l, 1).await,
            vec![51],
            "continues above the other's row"
        );
        assert_eq!(l.one_trip, short, "that commit read the others' rows");
        assert_eq!(emit(&mut l, 1).await, vec![52]);
        assert_eq!(l.one_trip, short + 1, "and the next is short again");
        // Another process moves the stored high-water mark alone.
        sqlx::query("UPDATE kitty_meta SET value = '90' WHERE key = 'clock_hwm'")
            .execute(&mut other)
            .await
            .unwrap();
        assert_eq!(emit(&mut l, 1).await, vec![91]);
        assert_eq!(l.one_trip, short + 1);
        // Rows added on our own connection change no data_version; the
        // largest id given does.
        sqlx::query("INSERT INTO queue (event_id, event_type, data, timestamp) VALUES ('own', 'T', '{\"lamport_clock\":200}', 1)")
            .execute(&mut l.conn)
            .await
            .unwrap();
        assert_eq!(emit(&mut l, 1).await, vec![201]);
        assert_eq!(l.one_trip, short + 1);
        let values: Vec<i64> = sqlx::query_scalar(
            "SELECT json_extract(data, '$.lamport_clock') FROM queue ORDER BY id",
        )
        .fetch_all(&mut other)
        .await
        .unwrap();
        assert_eq!(values, vec![1, 2, 3, 4, 50, 51, 52, 91, 200, 201]);
    }

    #[tokio::test]
    async fn rows_and_marks_other_processes_wrote_are_noticed_before_stamping() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let (mut l, _) = open(&home, 100).await;
        assert_eq!(emit(&mut l, 3).await, vec![1, 2, 3]);
        // The CLI inserted a row with its own value, clock.json untouched.
        let mut other = db::open_writer(&home.queue_db(), db::BUSY_TIMEOUT)
            .await
            .unwrap();
        sqlx::query("INSERT INTO queue (event_id, event_type, data, timestamp) VALUES ('cli', 'T', '{\"lamport_clock\":9}', 1)")
            .execute(&mut other)
            .await
            .unwrap();
        assert_eq!(emit(&mut l, 1).await, vec![10]);
        // A second ledger (a client that took a re-created clock.lock) stamped.
        std::fs::remove_file(home.clock_lock()).unwrap();
        let (mut second, _) = open(&home, 100).await;
        assert_eq!(emit(&mut second, 2).await, vec![11, 12]);
        drop(second);
        assert_eq!(
            emit(&mut l, 1).await,
            vec![13],
            "after the other owner's values"
        );
        assert!(l.owner.is_current(), "and clock.lock is ours again");
    }

    #[tokio::test]
    async fn a_clock_lock_held_by_another_process_stops_stamping() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let (mut l, _) = open(&home, 100).await;
        assert_eq!(emit(&mut l, 1).await, vec![1]);
        std::fs::remove_file(home.clock_lock()).unwrap();
        let theirs = lock::try_lock(&home.clock_lock()).unwrap().unwrap();
        let res = l.commit(&[job(D)], "local").await.remove(0);
        match res {
            Err(CommitError::Storage(e)) => assert!(e.contains("clock.lock"), "{e}"),
            other => panic!("stamped while another process owns clock.lock: {other:?}"),
        }
        drop(theirs);
        assert_eq!(emit(&mut l, 1).await, vec![2]);
    }
}
