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

enum Msg {
    Commit {
        job: Job,
        reply: oneshot::Sender<Reply>,
    },
    /// Another node's Lamport value, seen on the server's WebSocket.
    Receive(u64),
}

/// A cheap handle for submitting jobs to the writer.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Msg>,
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
        if self.tx.send(Msg::Commit { job, reply }).await.is_err() {
            return gone();
        }
        rx.await.unwrap_or_else(|_| gone())
    }

    /// Lamport `receive()`: the clock moves past `remote`.
    pub async fn receive(&self, remote: u64) {
        let _ = self.tx.send(Msg::Receive(remote)).await;
    }
}

/// Starts the writer. `clock` publishes the clock after every commit and
/// `committed` wakes the uplink when new events are durable; the task ends,
/// handing the ledger back, once every handle is dropped.
pub fn spawn(
    mut ledger: Ledger,
    settings: SettingsRx,
    clock: watch::Sender<u64>,
    committed: watch::Sender<()>,
    feed: crate::feed::Feed,
) -> (WriterHandle, tokio::task::JoinHandle<Ledger>) {
    let (tx, mut rx) = mpsc::channel::<Msg>(CHANNEL_DEPTH);
    let task = tokio::spawn(async move {
        let mut jobs = Vec::new();
        let mut replies = Vec::new();
        while let Some(first) = rx.recv().await {
            let mut events = 0;
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Commit { job, reply } => {
                        events += job.events.len();
                        jobs.push(job);
                        replies.push(reply);
                    }
                    Msg::Receive(remote) => ledger.observe(remote),
                }
                if events < MAX_GROUP_EVENTS {
                    next = rx.try_recv().ok();
                }
            }
            if jobs.is_empty() && !ledger.unpersisted() {
                continue;
            }
            let current: Arc<_> = settings.borrow().clone();
            ledger.set_max_queue_size(current.config.max_queue_size);
            let results = ledger.commit(&jobs, current.team_slug()).await;
            feed.committed(&jobs, &results);
            clock.send_if_modified(|v| std::mem::replace(v, ledger.clock()) != ledger.clock());
            if !jobs.is_empty() {
                let _ = committed.send(());
            }
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
