//! Keeps clock.json current: at most once a second when the clock moved, and
//! once more when the writer ends, so a clean shutdown leaves clock.json equal
//! to the last value issued. The source of truth is the high-water mark in
//! queue.db; this file is for people and older tools.

use std::time::Duration;

use kitty_proto::home::Home;
use tokio::sync::watch;

/// Runs until the clock's sender is dropped (the writer ended), writing the
/// final value before returning.
pub async fn run(
    home: Home,
    node_id: String,
    mut clock: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut written = *clock.borrow_and_update();
    loop {
        let open = clock.changed().await.is_ok();
        let value = *clock.borrow_and_update();
        if value != written {
            let (path, id) = (home.clock_json(), node_id.clone());
            match tokio::task::spawn_blocking(move || {
                kitty_store::clockfile::write(&path, value, &id)
            })
            .await
            {
                Ok(Ok(())) => written = value,
                Ok(Err(e)) => tracing::warn!("cannot write clock.json: {e}"),
                Err(e) => tracing::warn!("clock.json writer failed: {e}"),
            }
        }
        if !open {
            return;
        }
        if !*shutdown.borrow() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}
