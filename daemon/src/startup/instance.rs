//! Keeping `kitty-syncd.lock` ours for as long as the daemon runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kitty_store::lock;
use tokio::sync::watch;

/// How often the daemon checks that `kitty-syncd.lock` still names its file.
const INSTANCE_CHECK: Duration = Duration::from_secs(1);

/// Holds the instance lock, taking the path back when someone removes or
/// replaces the file, so that a second daemon started meanwhile is refused as
/// it should be. Hands the lock back at shutdown: it is held to the very end.
pub async fn guard_instance(
    mut instance: lock::Held,
    lost_flag: Arc<AtomicBool>,
    mut shutdown: watch::Receiver<bool>,
) -> lock::Held {
    let mut lost = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(INSTANCE_CHECK) => {}
            _ = shutdown.changed() => return instance,
        }
        let path = instance.path().display().to_string();
        match instance.reassert() {
            Ok(lock::Ownership::Kept) => {
                lost = false;
                lost_flag.store(false, Ordering::Release);
            }
            Ok(lock::Ownership::Retaken) => {
                lost = false;
                lost_flag.store(false, Ordering::Release);
                match lock::write_pid(&instance) {
                    Ok(()) => {
                        tracing::warn!("{path} had been removed or replaced; locked it again")
                    }
                    Err(e) => tracing::warn!("{path} locked again, but cannot record our pid: {e}"),
                }
            }
            Ok(lock::Ownership::Lost) => {
                // The socket guard stops the daemon on this: another one owns the home.
                lost_flag.store(true, Ordering::Release);
                if !std::mem::replace(&mut lost, true) {
                    tracing::error!(
                        "{path} was replaced and another process (pid {}) holds it now",
                        lock::running_pid(instance.path()).unwrap_or_else(|| "unknown".into())
                    );
                }
            }
            Err(e) => tracing::warn!("cannot check {path}: {e}"),
        }
    }
}
