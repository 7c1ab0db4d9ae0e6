//! When no daemon answers: queue the event ourselves, by the daemon's rules.
//!
//! With `clock.lock` free (no daemon runs), we own the clock for a moment:
//! the same ledger the daemon uses stamps the event and commits it with the
//! clock's high-water mark, and clock.json is updated. With the lock held (a
//! daemon runs but does not answer), the event goes to the spool for that
//! daemon to stamp when it recovers: two owners never issue Lamport values.

use std::time::{Duration, Instant};

use chrono::Utc;
use kitty_proto::Submission;
use kitty_proto::api::{Accepted, ErrorBody, ErrorCode};
use kitty_proto::home::Home;
use kitty_store::{CommitError, Job, Ledger, lock};
use serde_json::value::RawValue;

use crate::EmitError;

/// How long to wait for `clock.lock` while a daemon runs: it holds the lock
/// for its whole life, so waiting longer cannot help.
const LIVE_DAEMON_PATIENCE: Duration = Duration::from_millis(250);
/// What the direct commit itself needs of the budget, at most.
const COMMIT_RESERVE: Duration = Duration::from_millis(300);
/// How long a direct commit waits for another process's write lock on queue.db.
const BUSY_PATIENCE: Duration = Duration::from_millis(250);

pub enum Fallback {
    Direct(Accepted),
    /// Spooled, with the reason it could not be queued directly when there was one.
    Spooled(Option<String>),
}

/// Queues the event directly or spools it, finishing by `deadline` as far as
/// the disk allows.
pub async fn queue(
    home: &Home,
    event: &RawValue,
    submission: Submission,
    deadline: Instant,
) -> Result<Fallback, EmitError> {
    kitty_store::fsutil::ensure_private_dir(home.dir()).map_err(|source| EmitError::Io {
        what: format!("cannot create {}", home.dir().display()),
        source,
    })?;
    // The daemon's own rule: a home another user owns or can write is not a
    // place to leave an event (no daemon would run there to deliver it).
    kitty_store::fsutil::check_private_dir(home.dir())
        .map_err(|e| EmitError::Forbidden(format!("refusing to queue the event: {e}")))?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .saturating_sub(COMMIT_RESERVE);
    // With no daemon alive, whoever holds clock.lock is another client queueing
    // directly, which lets go within milliseconds: wait for it rather than
    // spool an event that no daemon would pick up.
    let patience = if lock::is_held(&home.daemon_lock()) {
        LIVE_DAEMON_PATIENCE.min(left)
    } else {
        left.max(LIVE_DAEMON_PATIENCE)
    };
    let held = lock::lock_within(&home.clock_lock(), patience).map_err(|source| EmitError::Io {
        what: format!("cannot open {}", home.clock_lock().display()),
        source,
    })?;
    let Some(held) = held else {
        return spool(home, event, &submission, None);
    };
    // A broken config.toml stops the daemon from starting, but must not cost
    // the caller its event: queue it under the default cap.
    let config = kitty_store::config::load(&home.config_toml()).unwrap_or_default();
    let team = kitty_store::credentials::read(&home.credentials());
    let (mut ledger, _) = match Ledger::open(home, held, config.max_queue_size, BUSY_PATIENCE).await
    {
        Ok(l) => l,
        Err(e) => return spool(home, event, &submission, Some(e.to_string())),
    };
    let job = Job {
        events: vec![submission],
        made_at: None,
    };
    let result = ledger
        .commit(std::slice::from_ref(&job), team.team_slug())
        .await
        .remove(0);
    if result.is_ok()
        && let Err(e) = ledger.checkpoint(home)
    {
        // The high-water mark in queue.db already holds the value.
        eprintln!("kitty-sync: warning: cannot update clock.json: {e}");
    }
    ledger.close().await;
    match result {
        Ok(mut accepted) => Ok(Fallback::Direct(accepted.remove(0))),
        Err(e @ CommitError::QueueFull { .. }) => Err(EmitError::QueueFull(e.to_string())),
        Err(e @ CommitError::ClockExhausted { .. }) => Err(EmitError::Failed(e.to_string())),
        // queue.db is busy or broken: the spool keeps the event for the daemon.
        Err(CommitError::Storage(e)) => spool(home, event, &job.events[0], Some(e)),
    }
}

fn spool(
    home: &Home,
    event: &RawValue,
    submission: &Submission,
    why: Option<String>,
) -> Result<Fallback, EmitError> {
    use kitty_store::spool::SpoolError;
    match kitty_store::spool::write(home, event, submission, Utc::now()) {
        Ok(s) => {
            // The client gave every draft its event_id before sending it.
            debug_assert_eq!(Some(&*s.event_id), submission.event_id());
            Ok(Fallback::Spooled(why))
        }
        Err(SpoolError::Invalid(v)) => Err(EmitError::Invalid(Box::new(ErrorBody {
            error: ErrorCode::InvalidEvent,
            message: v.to_string(),
            field: Some(v.field),
            rule: Some(v.rule),
            index: None,
            version: kitty_proto::VERSION.into(),
        }))),
        Err(e @ SpoolError::Io { .. }) => Err(e.into()),
    }
}
