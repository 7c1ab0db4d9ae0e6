//! The writer: the one task that owns the ledger, and so the one writer of
//! queue.db. Requests queue up on a channel while a commit is in flight; the
//! next commit takes all of them at once (group commit), so one disk sync
//! serves many events. The uplink's deletions, retry counts and dead letters
//! and `POST /v1/dead/retry` come through here too, as chores done between
//! commits.
//!
//! It also says how its commits go ([`WriterHealth`]): `/v1/health` (and so
//! the watchdog) and `status` report a writer whose last commit failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use kitty_proto::api::Accepted;
use kitty_store::outbox::{Applied, Verdict};
use kitty_store::{CommitError, Job, Ledger, StoreError};
use tokio::sync::{mpsc, oneshot, watch};

use crate::settings::SettingsRx;

/// Most events one transaction takes; bounds a commit's latency.
const MAX_GROUP_EVENTS: usize = 8192;
/// Requests waiting for the writer; beyond this, handlers wait to enqueue.
const CHANNEL_DEPTH: usize = 4096;
/// How often an idle writer checks that `clock.lock` is still its own, so a
/// removed lock file is taken back before a client could take it.
const OWNERSHIP_CHECK: Duration = Duration::from_secs(1);

pub type Reply = Result<Vec<Accepted>, CommitError>;

/// What a request gets when the writer has stopped.
const GONE: &str = "the daemon is shutting down";

enum Msg {
    Commit {
        job: Job,
        reply: oneshot::Sender<Reply>,
    },
    /// A Lamport value seen on the server's WebSocket, and the node that
    /// issued it (when the frame says).
    Receive(u64, Option<String>),
    /// Anything else that writes (or must see what others wrote).
    Chore(Chore),
}

/// Work besides commits, done after the group it arrived with.
enum Chore {
    /// What the server said about sent events.
    Apply {
        verdicts: Vec<(String, Verdict)>,
        reply: oneshot::Sender<Result<Applied, StoreError>>,
    },
    /// Dead letters back into the queue, within the cap.
    RetryDead {
        reply: oneshot::Sender<Result<u64, CommitError>>,
    },
    /// The depth, with what other processes wrote since counted in.
    Depth {
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
}

/// How the writer's commits go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriterHealth {
    /// Why the last commit failed, while no later one has succeeded.
    pub last_error: Option<String>,
    /// When the first of the failures in a row happened.
    pub failing_since: Option<DateTime<Utc>>,
    pub consecutive_failures: u64,
    pub last_commit_at: Option<DateTime<Utc>>,
}

impl WriterHealth {
    pub fn ok(&self) -> bool {
        self.last_error.is_none()
    }

    fn failed(&mut self, error: String) {
        self.failing_since.get_or_insert_with(Utc::now);
        self.consecutive_failures += 1;
        self.last_error = Some(error);
    }

    /// The failure is over without a commit (the lock is ours again).
    fn recovered(&mut self) {
        *self = Self {
            last_commit_at: self.last_commit_at,
            ..Self::default()
        };
    }

    fn succeeded(&mut self) {
        *self = Self {
            last_commit_at: Some(Utc::now()),
            ..Self::default()
        };
    }
}

/// A cheap handle for submitting jobs to the writer.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Msg>,
    health: watch::Receiver<WriterHealth>,
    /// The queue's depth as of the writer's last transaction.
    depth: Arc<AtomicU64>,
}

impl WriterHandle {
    /// Whether the writer task still takes jobs.
    pub fn is_alive(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Rows in the queue as of the writer's last transaction: its own count
    /// (see [`Ledger::depth`]), so reading it costs nothing at any size.
    pub fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }

    /// The depth, exact: what other processes inserted or deleted since the
    /// last commit is counted in (one small read unless they wrote).
    pub async fn current_depth(&self) -> Result<u64, StoreError> {
        let gone = || StoreError::Io {
            what: "cannot ask the writer for",
            path: "the queue's depth".into(),
            source: std::io::Error::other(GONE),
        };
        self.ask(|reply| Msg::Chore(Chore::Depth { reply }))
            .await
            .unwrap_or_else(|| Err(gone()))
    }

    /// How the writer's commits go now.
    pub fn health(&self) -> WriterHealth {
        self.health.borrow().clone()
    }

    /// Stamps and commits `job`; resolves once it is durable (or refused).
    pub async fn submit(&self, job: Job) -> Reply {
        self.ask(|reply| Msg::Commit { job, reply })
            .await
            .unwrap_or_else(|| Err(CommitError::Storage(GONE.into())))
    }

    /// Sends the message `make` builds around a reply channel, and waits for
    /// the answer; `None` when the writer is gone (shutting down).
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Msg) -> Option<T> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.ok()?;
        rx.await.ok()
    }

    /// Lamport `receive()`: the clock moves past `remote`, unless `node_id`
    /// says the value is our own (relayed back to us).
    pub async fn receive(&self, remote: u64, node_id: Option<String>) {
        let _ = self.tx.send(Msg::Receive(remote, node_id)).await;
    }

    /// Applies the server's verdicts (deletes, retry counts, dead letters).
    pub async fn apply(&self, verdicts: Vec<(String, Verdict)>) -> Result<Applied, String> {
        match self
            .ask(|reply| Msg::Chore(Chore::Apply { verdicts, reply }))
            .await
        {
            Some(r) => r.map_err(|e| e.to_string()),
            None => Err(GONE.to_owned()),
        }
    }

    /// Puts the dead letters back into the queue; refused with
    /// [`CommitError::QueueFull`] when they would not fit under the cap.
    pub async fn retry_dead(&self) -> Result<u64, CommitError> {
        self.ask(|reply| Msg::Chore(Chore::RetryDead { reply }))
            .await
            .unwrap_or_else(|| Err(CommitError::Storage(GONE.into())))
    }
}

/// Starts the writer. `clock` publishes the clock after every commit and
/// `committed` wakes the uplink when new events are durable; `oldest` is
/// told the queue's oldest row when a commit makes it known for free. The
/// task ends, handing the ledger back, once every handle is dropped.
pub fn spawn(
    mut ledger: Ledger,
    settings: SettingsRx,
    clock: watch::Sender<u64>,
    committed: watch::Sender<()>,
    feed: crate::feed::Feed,
    oldest: crate::health::Cache,
) -> (WriterHandle, tokio::task::JoinHandle<Ledger>) {
    let (tx, mut rx) = mpsc::channel::<Msg>(CHANNEL_DEPTH);
    let (health_tx, health) = watch::channel(WriterHealth::default());
    let depth = Arc::new(AtomicU64::new(ledger.depth()));
    let depth_out = depth.clone();
    let task = tokio::spawn(async move {
        let mut jobs = Vec::new();
        let mut replies = Vec::new();
        let mut chores = Vec::new();
        let mut check = tokio::time::interval(OWNERSHIP_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut lost_lock = false;
        loop {
            let first = tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => msg,
                    None => break,
                },
                _ = check.tick() => {
                    match ledger.assert_ownership().await {
                        Err(e) => {
                            tracing::error!("{e}");
                            health_tx.send_modify(|h| h.failed(e.to_string()));
                            lost_lock = true;
                        }
                        Ok(()) if std::mem::take(&mut lost_lock) => {
                            tracing::info!("clock.lock is ours again");
                            health_tx.send_modify(WriterHealth::recovered);
                        }
                        Ok(()) => {}
                    }
                    continue;
                }
            };
            let mut events = 0;
            let mut next = Some(first);
            // What is there now, and nothing more: waiting for requests on
            // their way (yielding to the runtime so the connections hand them
            // in) made groups no larger here, and its polling cost the one
            // thread that parses requests (BENCHMARKS.md, issue 10).
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Commit { job, reply } => {
                        events += job.events.len();
                        jobs.push(job);
                        replies.push(reply);
                    }
                    Msg::Receive(remote, node) => ledger.observe_from(remote, node.as_deref()),
                    Msg::Chore(chore) => chores.push(chore),
                }
                if events < MAX_GROUP_EVENTS {
                    next = rx.try_recv().ok();
                }
            }
            if jobs.is_empty() && !ledger.unpersisted() {
                do_chores(&mut ledger, &settings, chores.drain(..)).await;
                depth_out.store(ledger.depth(), Ordering::Relaxed);
                continue;
            }
            let current: Arc<_> = settings.borrow().clone();
            ledger.set_max_queue_size(current.config.max_queue_size);
            // At or before the ledger's own "now": an age from it errs older.
            let started = Utc::now();
            let results = ledger.commit(&jobs, current.team_slug()).await;
            if let Some(t) = only_rows_of(&jobs, &results, ledger.depth(), started) {
                oldest.note_oldest(t);
            }
            feed.committed(&jobs, &results);
            clock.send_if_modified(|v| std::mem::replace(v, ledger.clock()) != ledger.clock());
            if !jobs.is_empty() {
                let _ = committed.send(());
            }
            // Per-job refusals (the cap, the clock's range) are the commit
            // working; a storage error fails every job of the group alike.
            // The commit begins with the ownership check; a lost lock is told
            // apart from other failures, so the idle check can report it over
            // when it is.
            match results.iter().find_map(|r| match r {
                Err(CommitError::Storage(e)) => Some(e.clone()),
                _ => None,
            }) {
                Some(e) if ledger.owner_lost() => {
                    tracing::error!("{e}");
                    health_tx.send_modify(|h| h.failed(e));
                    lost_lock = true;
                }
                Some(e) => {
                    tracing::error!("commit failed: {e}");
                    health_tx.send_modify(|h| h.failed(e));
                }
                None => {
                    if !health_tx.borrow().ok() {
                        tracing::info!("commits succeed again");
                    }
                    lost_lock = false;
                    health_tx.send_modify(WriterHealth::succeeded);
                }
            }
            for (reply, result) in replies.drain(..).zip(results) {
                if let Err(
                    e @ (CommitError::QueueFull { .. } | CommitError::ClockExhausted { .. }),
                ) = &result
                {
                    tracing::warn!("{e}");
                }
                let _ = reply.send(result);
            }
            jobs.clear();
            do_chores(&mut ledger, &settings, chores.drain(..)).await;
            depth_out.store(ledger.depth(), Ordering::Relaxed);
        }
        ledger
    });
    (WriterHandle { tx, health, depth }, task)
}

/// The oldest enqueue time of the rows this group inserted, when they are
/// all the queue holds: `depth` (the ledger's count after the commit, exact
/// or an upper bound) is no more than their number, so no older row is left.
fn only_rows_of(
    jobs: &[Job],
    results: &[Reply],
    depth: u64,
    started: DateTime<Utc>,
) -> Option<i64> {
    let mut inserted = 0;
    let mut oldest: Option<i64> = None;
    for (job, result) in jobs.iter().zip(results) {
        let fresh = result
            .as_ref()
            .map_or(0, |a| a.iter().filter(|a| !a.duplicate).count() as u64);
        if fresh > 0 {
            inserted += fresh;
            let t = job.made_at.unwrap_or(started).timestamp();
            oldest = Some(oldest.map_or(t, |o| o.min(t)));
        }
    }
    oldest.filter(|_| depth <= inserted)
}

async fn do_chores(
    ledger: &mut Ledger,
    settings: &SettingsRx,
    chores: impl Iterator<Item = Chore>,
) {
    for chore in chores {
        match chore {
            Chore::Apply { verdicts, reply } => {
                let _ = reply.send(ledger.apply(&verdicts).await);
            }
            Chore::Depth { reply } => {
                let _ = reply.send(ledger.refresh_depth().await);
            }
            Chore::RetryDead { reply } => {
                ledger.set_max_queue_size(settings.borrow().config.max_queue_size);
                let result = ledger.retry_dead().await;
                if let Err(e @ CommitError::QueueFull { .. }) = &result {
                    tracing::warn!("dead letters not requeued: {e}");
                }
                let _ = reply.send(result);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(made_at: Option<DateTime<Utc>>) -> Job {
        Job {
            events: Vec::new(),
            made_at,
        }
    }

    fn accepted(duplicates: &[bool]) -> Reply {
        Ok(duplicates
            .iter()
            .map(|&duplicate| Accepted {
                event_id: "01HX5ZQK3M8N9P0R1S2T3V4W5X".into(),
                lamport_clock: 1,
                duplicate,
            })
            .collect())
    }

    #[test]
    fn the_oldest_row_is_known_only_when_the_group_is_all_the_queue_holds() {
        let started = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let spooled = DateTime::from_timestamp(1_799_999_000, 0).unwrap();
        let jobs = [job(None), job(Some(spooled)), job(None)];
        let full = CommitError::QueueFull {
            depth: 3,
            max: 3,
            wanted: 1,
        };
        let results = [accepted(&[false, false]), accepted(&[false]), Err(full)];
        // Three rows inserted, the spooled one made earliest.
        assert_eq!(
            only_rows_of(&jobs, &results, 3, started),
            Some(1_799_999_000)
        );
        // One more row in the queue than the group inserted: an older one may be left.
        assert_eq!(only_rows_of(&jobs, &results, 4, started), None);
        // Duplicates are rows queued before: they insert nothing.
        let results = [accepted(&[false, true]), accepted(&[true]), accepted(&[])];
        assert_eq!(
            only_rows_of(&jobs, &results, 1, started),
            Some(1_800_000_000)
        );
        assert_eq!(only_rows_of(&jobs, &results, 2, started), None);
        // Nothing inserted: nothing known, even of an empty queue.
        let failed = || Err(CommitError::Storage("disk I/O error".into()));
        let results = [failed(), failed(), failed()];
        assert_eq!(only_rows_of(&jobs, &results, 0, started), None);
    }
}
