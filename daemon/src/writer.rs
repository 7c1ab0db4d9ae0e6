//! The writer: the one task that owns the ledger. Requests queue up on a
//! channel while a commit is in flight; the next commit takes all of them at
//! once (group commit), so one disk sync serves many events.

use std::sync::Arc;

use kitty_proto::api::Accepted;
use kitty_store::{CommitError, Job, Ledger};
use tokio::sync::{mpsc, oneshot, watch};

use crate::settings::SettingsRx;

/// Most events one transaction takes; bounds a commit's latency.
const MAX_GROUP_EVENTS: usize = 8192;
/// Requests waiting for the writer; beyond this, handlers wait to enqueue.
const CHANNEL_DEPTH: usize = 4096;

pub type Reply = Result<Vec<Accepted>, CommitError>;

struct Pending {
    job: Job,
    reply: oneshot::Sender<Reply>,
}

/// A cheap handle for submitting jobs to the writer.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Pending>,
}

impl WriterHandle {
    /// Whether the writer task still takes jobs.
    pub fn is_alive(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Stamps and commits `job`; resolves once it is durable (or refused).
    pub async fn submit(&self, job: Job) -> Reply {
        let (reply, rx) = oneshot::channel();
        let gone = || Err(CommitError::Storage("the daemon is shutting down".into()));
        if self.tx.send(Pending { job, reply }).await.is_err() {
            return gone();
        }
        rx.await.unwrap_or_else(|_| gone())
    }
}

/// Starts the writer. `clock` publishes the clock after every commit; the task
/// ends, handing the ledger back, once every handle is dropped.
pub fn spawn(
    mut ledger: Ledger,
    settings: SettingsRx,
    clock: watch::Sender<u64>,
) -> (WriterHandle, tokio::task::JoinHandle<Ledger>) {
    let (tx, mut rx) = mpsc::channel::<Pending>(CHANNEL_DEPTH);
    let task = tokio::spawn(async move {
        let mut jobs = Vec::new();
        let mut replies = Vec::new();
        while let Some(first) = rx.recv().await {
            let mut events = first.job.events.len();
            jobs.push(first.job);
            replies.push(first.reply);
            while events < MAX_GROUP_EVENTS {
                match rx.try_recv() {
                    Ok(p) => {
                        events += p.job.events.len();
                        jobs.push(p.job);
                        replies.push(p.reply);
                    }
                    Err(_) => break,
                }
            }
            let current: Arc<_> = settings.borrow().clone();
            ledger.set_max_queue_size(current.config.max_queue_size);
            let results = ledger.commit(&jobs, current.team_slug()).await;
            clock.send_if_modified(|v| std::mem::replace(v, ledger.clock()) != ledger.clock());
            for (reply, result) in replies.drain(..).zip(results) {
                if let Err(e) = &result {
                    match e {
                        CommitError::QueueFull { .. } => tracing::warn!("{e}"),
                        CommitError::Storage(_) => tracing::error!("commit failed: {e}"),
                    }
                }
                let _ = reply.send(result);
            }
            jobs.clear();
        }
        ledger
    });
    (WriterHandle { tx }, task)
}
