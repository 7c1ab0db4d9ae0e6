//! Retry delays: 0.5 s doubling to 30 s (backon's exponential schedule), with
//! ±1 s of jitter so that many clients do not retry in step.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

pub struct Backoff {
    schedule: ExponentialBackoff,
    pub failures: u32,
}

fn schedule() -> ExponentialBackoff {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(30))
        .with_factor(2.0)
        .without_max_times()
        .build()
}

impl Backoff {
    pub fn new() -> Self {
        Self {
            schedule: schedule(),
            failures: 0,
        }
    }

    /// The delay before the next attempt, counting one more failure.
    pub fn fail(&mut self) -> Duration {
        self.failures += 1;
        let base = self.schedule.next().unwrap_or(Duration::from_secs(30));
        let jitter: f64 = rand::random_range(-1.0..1.0);
        Duration::from_secs_f64((base.as_secs_f64() + jitter).clamp(0.25, 31.0))
    }

    pub fn succeed(&mut self) {
        self.schedule = schedule();
        self.failures = 0;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_resets() {
        let mut b = Backoff::new();
        let delays: Vec<Duration> = (0..12).map(|_| b.fail()).collect();
        assert!(delays[0] <= Duration::from_millis(1500));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(31)));
        assert!(delays[11] >= Duration::from_secs(29));
        assert_eq!(b.failures, 12);
        b.succeed();
        assert_eq!(b.failures, 0);
        assert!(b.fail() <= Duration::from_millis(1500));
    }
}
