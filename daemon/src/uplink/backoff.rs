//! Retry delays: 0.5 s doubling to 30 s (backon's exponential schedule), with
//! ±1 s of jitter so that many clients do not retry in step. Never gives up.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

const MAX: Duration = Duration::from_secs(30);

/// The delay after `failures` failures in a row (1 for the first), with
/// `jitter` seconds in [-1, 1) added. Never under 0.25 s.
pub fn delay(failures: u32, jitter: f64) -> Duration {
    // The schedule has reached its cap long before 32 steps.
    let steps = failures.clamp(1, 32) as usize;
    let base = ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(MAX)
        .with_factor(2.0)
        .without_max_times()
        .build()
        .nth(steps - 1)
        .unwrap_or(MAX);
    let jitter = if jitter.is_finite() {
        jitter.clamp(-1.0, 1.0)
    } else {
        0.0
    };
    Duration::from_secs_f64((base.as_secs_f64() + jitter).max(0.25))
}

/// The jitter of a running daemon: uniform in [-1, 1).
pub fn random_jitter() -> f64 {
    rand::random_range(-1.0..1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_half_a_second_to_thirty_and_stays_there() {
        let secs: Vec<f64> = (1..=12).map(|n| delay(n, 0.0).as_secs_f64()).collect();
        assert_eq!(
            secs,
            [
                0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0, 30.0, 30.0
            ]
        );
        assert_eq!(delay(u32::MAX, 0.0), MAX, "never gives up, never overflows");
    }

    #[test]
    fn jitter_stays_within_a_second() {
        for n in 1..=20 {
            let base = delay(n, 0.0).as_secs_f64();
            for j in [-1.0, -0.5, 0.0, 0.5, 0.999] {
                let d = delay(n, j).as_secs_f64();
                assert!((d - base).abs() <= 1.0, "{n} failures, jitter {j}: {d}");
                assert!(d >= 0.25, "{n} failures, jitter {j}: {d}");
            }
        }
        assert_eq!(delay(3, 7.0), delay(3, 1.0), "a wild source is bounded");
        assert_eq!(delay(3, f64::NAN), delay(3, 0.0));
    }
}
