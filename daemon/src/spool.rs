//! Queues what clients spooled while the daemon held the clock but did not
//! answer (hung, stopped, overloaded). Checked at start and twice a second.

use std::time::Duration;

use kitty_proto::home::Home;
use kitty_store::CommitError;
use tokio::sync::watch;

use crate::writer::WriterHandle;

pub async fn run(home: Home, writer: WriterHandle, mut shutdown: watch::Receiver<bool>) {
    loop {
        drain(&home, &writer).await;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One pass over the spool; returns how many events it queued.
pub async fn drain(home: &Home, writer: &WriterHandle) -> usize {
    let files = match kitty_store::spool::list(home) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!("cannot list the spool: {e}");
            return 0;
        }
    };
    let mut queued = 0;
    for path in files {
        let job = match kitty_store::spool::read(&path) {
            Ok(job) => job,
            Err(why) => {
                match kitty_store::spool::reject(home, &path) {
                    Ok(to) => tracing::warn!(
                        "spooled event {} is invalid ({why}); moved to {}",
                        path.display(),
                        to.display()
                    ),
                    Err(e) => tracing::warn!(
                        "spooled event {} is invalid ({why}) and cannot be moved: {e}",
                        path.display()
                    ),
                }
                continue;
            }
        };
        match writer.submit(job).await {
            Ok(accepted) => {
                queued += accepted.iter().filter(|a| !a.duplicate).count();
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!("queued {} but cannot remove it: {e}", path.display());
                }
            }
            // Full or failing: leave it for the next pass; nothing is lost.
            Err(
                e @ (CommitError::QueueFull { .. }
                | CommitError::ClockExhausted { .. }
                | CommitError::Storage(_)),
            ) => {
                tracing::warn!("spooled events wait: {e}");
                break;
            }
        }
    }
    if queued > 0 {
        tracing::info!(queued, "queued spooled events");
    }
    queued
}
