//! kitty-syncd's state on disk, shared by the daemon and the client's fallback.
//!
//! Both must follow one set of rules for the Lamport clock and the queue, so
//! the rules live here once:
//! - [`db`]: opening queue.db and its schema (CONTRACT.md §1, plus `kitty_meta`).
//! - [`queue`]: reading the queue: depth, statistics, the oldest rows.
//! - [`ledger`]: the clock in memory and the group commit that stamps events and
//!   writes them, with the clock's high-water mark, in one transaction.
//! - [`outbox`]: the uplink's side of queue.db: what to send next, what was delivered.
//! - [`report`]: the status report, the same from the daemon or straight from disk.
//! - [`clockfile`]: clock.json, the checkpoint for people and older tools.
//! - [`node_id`]: the node id, from the host and user names.
//! - [`lock`]: the flock files that say who may stamp and who is the daemon.
//! - [`spool`]: events a client left for a daemon that did not answer in time.
//! - [`config`]: config.toml, read and validated.
//! - [`credentials`]: the credentials file the spec-kitty CLI shares with us.
//! - [`sys`]: the libc calls of the daemon and the client, the only `unsafe` code.
//! - [`ids`]: new ULIDs, for event ids and file names.
//! - [`fsutil`]: opening and creating files in `<home>` that nothing planted can subvert.

pub mod clockfile;
pub mod config;
pub mod credentials;
pub mod db;
pub mod fsutil;
pub mod ids;
pub mod ledger;
pub mod lock;
pub mod node_id;
pub mod outbox;
pub mod queue;
pub mod report;
pub mod spool;
pub mod sys;

pub use ledger::{CommitError, Job, Ledger};

/// Errors from queue.db, with what we were doing when it failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what}: {source}")]
    Db {
        what: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// Another process holds `clock.lock` as it is named now (the file we
    /// locked was removed or replaced), so stamping would make two owners.
    #[error(
        "{path} is held by another process (its file was removed or replaced under us); \
         not stamping until it is ours again"
    )]
    NotOwner { path: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    pub(crate) fn db(what: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Self::Db { what, source }
    }

    pub(crate) fn io(
        what: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.display().to_string();
        move |source| Self::Io { what, path, source }
    }
}
