//! Queues what clients spooled while the daemon held the clock but did not
//! answer (hung, stopped, overloaded). Checked at start and twice a second.
//!
//! Every file in `spool/` is imported or moved to `spool/rejected/`, each with
//! a log line: nothing there is passed over in silence. Opening one never
//! blocks (a FIFO is refused at once), so intake cannot stall shutdown.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use kitty_proto::home::Home;
use kitty_store::CommitError;
use tokio::sync::watch;

use crate::writer::WriterHandle;

pub async fn run(home: Home, writer: WriterHandle, mut shutdown: watch::Receiver<bool>) {
    let mut said = Said::default();
    loop {
        drain(&home, &writer, &mut said).await;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Problems already logged, so that a pass twice a second does not repeat them.
#[derive(Default)]
pub struct Said {
    /// Files that could be neither queued nor moved aside.
    stuck: HashSet<PathBuf>,
    /// The spool itself cannot be listed.
    unlistable: bool,
}

/// One pass over the spool; returns how many events it queued.
pub async fn drain(home: &Home, writer: &WriterHandle, said: &mut Said) -> usize {
    let files = match kitty_store::spool::list(home) {
        Ok(f) => {
            said.unlistable = false;
            f
        }
        Err(e) => {
            if !std::mem::replace(&mut said.unlistable, true) {
                tracing::error!("cannot list the spool: {e}");
            }
            return 0;
        }
    };
    let mut queued = 0;
    for path in files {
        let job = match kitty_store::spool::read(&path) {
            Ok(Some(job)) => job,
            // Gone since the listing: nothing to do.
            Ok(None) => continue,
            Err(why) => {
                match kitty_store::spool::reject(home, &path) {
                    Ok(to) => {
                        said.stuck.remove(&path);
                        tracing::warn!(
                            "spool file {} cannot be queued ({why}); moved it to {}",
                            path.display(),
                            to.display()
                        )
                    }
                    Err(e) if said.stuck.insert(path.clone()) => tracing::error!(
                        "spool file {} cannot be queued ({why}) and cannot be moved aside: {e}",
                        path.display()
                    ),
                    Err(_) => {}
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
