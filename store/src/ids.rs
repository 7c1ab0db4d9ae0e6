//! New ULIDs: event ids, and the unique parts of temporary and spool file names.
//!
//! The 80 random bits come straight from the operating system (`getrandom`,
//! one syscall) rather than from `ulid::Ulid::generate`'s use of rand's
//! ChaCha, whose first use asks the CPU for its features (`cpuid`, a trap to
//! the hypervisor in a VM). The sixth round of issue 10 credited this with
//! 0.1 ms of a `kitty-sync emit`; the seventh, comparing binaries in the same
//! page-cache state, measured no difference either way (BENCHMARKS.md).

use std::time::{SystemTime, UNIX_EPOCH};

use ulid::Ulid;

/// A new ULID: milliseconds since the epoch and 80 random bits.
pub fn new_ulid() -> Ulid {
    let mut random = [0u8; 16];
    if getrandom::fill(&mut random).is_err() {
        // No entropy from the system (never seen on Linux or macOS): rand's way.
        return Ulid::generate();
    }
    // `from_parts` keeps the low 80 bits of the random part.
    Ulid::from_parts(now_ms(), u128::from_le_bytes(random))
}

/// Milliseconds since the epoch (0 for a clock set before 1970).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_distinct_and_stamped_with_now() {
        let before = now_ms();
        let ids: Vec<Ulid> = (0..10_000).map(|_| new_ulid()).collect();
        let after = now_ms();
        let distinct: HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        for id in &ids {
            assert!((before..=after).contains(&id.timestamp_ms()), "{id}");
            let text = id.to_string();
            assert_eq!(text.len(), 26);
            assert_eq!(Ulid::from_string(&text).unwrap(), *id);
        }
        // The random part is not stuck at zero or at one value.
        let randoms: HashSet<u128> = ids.iter().map(|id| id.random()).collect();
        assert!(randoms.len() > 9_990);
    }
}
