//! The delivery-health hint: is what was just queued on its way? The 202 of
//! `POST /v1/events` carries it, so that `kitty-sync emit` can warn about a
//! stuck queue without asking again, and `status` carries the same.
//!
//! The queue's oldest row is read at most once a second and shared by every
//! emit meanwhile, so a busy socket pays for one small read a second; the
//! depth is the writer's own count.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kitty_proto::api::{DeliveryHealth, Status};
use kitty_store::config::Config;

use crate::server::AppState;

/// How old a reading of the queue may be.
const FRESH: Duration = Duration::from_secs(1);

#[derive(Clone, Copy)]
struct Sample {
    taken: Instant,
    /// Enqueue time of the oldest row, epoch seconds.
    oldest: Option<i64>,
}

/// The last reading of the queue, shared by the socket's handlers.
#[derive(Clone, Default)]
pub struct Cache(Arc<Mutex<Option<Sample>>>);

impl Cache {
    fn fresh(&self) -> Option<Sample> {
        let s = *self.0.lock().unwrap_or_else(|p| p.into_inner());
        s.filter(|s| s.taken.elapsed() < FRESH)
    }

    fn store(&self, s: Sample) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
    }

    /// The writer's word after a commit that left the queue holding nothing
    /// but the rows it just inserted: their oldest enqueue time (epoch
    /// seconds) is the queue's. On a quiet daemon (emits seconds apart, so
    /// the last reading is stale) this saves the read that would otherwise
    /// come between the commit and the 202: a hop to a reader's thread.
    pub fn note_oldest(&self, oldest: i64) {
        self.store(Sample {
            taken: Instant::now(),
            oldest: Some(oldest),
        });
    }
}

fn age(oldest: Option<i64>) -> Option<u64> {
    oldest.map(|t| (chrono::Utc::now().timestamp() - t).max(0) as u64)
}

/// The hint for an answer to a successful emit; `None` when the queue cannot
/// be read (the emit itself succeeded, so it is not failed for this).
pub async fn hint(state: &AppState) -> Option<DeliveryHealth> {
    let sample = match state.health.fresh() {
        Some(s) => s,
        None => {
            let mut conn = crate::server::reader(state).await.ok()?;
            let oldest = kitty_store::queue::oldest_timestamp(&mut conn).await.ok()?;
            let s = Sample {
                taken: Instant::now(),
                oldest,
            };
            state.health.store(s);
            s
        }
    };
    let stale_after_secs = state.settings.borrow().config.stale_after_secs;
    Some(DeliveryHealth {
        state: state.uplink.state(),
        // The writer's own count (free to read); the event just answered is
        // queued whatever it says.
        depth: state.writer.depth().max(1),
        oldest_age_secs: age(sample.oldest),
        stale_after_secs,
    })
}

/// The same, from a status report being built.
pub fn of_status(status: &Status, config: &Config) -> DeliveryHealth {
    DeliveryHealth {
        state: status.connection,
        depth: status.queue.depth,
        oldest_age_secs: status.queue.oldest_age_secs,
        stale_after_secs: config.stale_after_secs,
    }
}
