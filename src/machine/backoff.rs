//! Retry delays: exponential backoff with deterministic jitter.
//!
//! Jitter spreads retries of jobs that failed together, but every replica must compute the
//! same delay, so the PRNG (ChaCha8, a fixed algorithm, unlike `StdRng`) is seeded from the job
//! id and attempt number only.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::job::{Backoff, JobId};

/// Delay before the retry that follows failed attempt `attempt` (1-based) of job `job_id`.
pub fn retry_delay_ms(backoff: &Backoff, job_id: JobId, attempt: u32) -> u64 {
    let mut delay = backoff.base_ms.min(backoff.cap_ms);
    for _ in 1..attempt {
        delay = delay.saturating_mul(backoff.factor.into());
        if delay >= backoff.cap_ms {
            delay = backoff.cap_ms;
            break;
        }
    }
    if !backoff.jitter || delay < 2 {
        return delay;
    }
    let seed = job_id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(attempt);
    ChaCha8Rng::seed_from_u64(seed).random_range(delay / 2..=delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without jitter: base, base*factor, ... up to the cap.
    #[test]
    fn backoff_doubles_to_the_cap() {
        let b = Backoff {
            jitter: false,
            ..Backoff::default()
        };
        let delays: Vec<u64> = (1..=7).map(|a| retry_delay_ms(&b, 1, a)).collect();
        assert_eq!(delays, [1_000, 2_000, 4_000, 8_000, 16_000, 16_000, 16_000]);
        let huge = retry_delay_ms(&b, 1, u32::MAX);
        assert_eq!(huge, 16_000);
    }

    /// With jitter: within [d/2, d], the same for the same (job, attempt), and spread across jobs.
    #[test]
    fn backoff_jitter_is_bounded_and_deterministic() {
        let b = Backoff::default();
        let mut distinct = std::collections::BTreeSet::new();
        for job in 1..200 {
            for attempt in 1..6 {
                let d = retry_delay_ms(&b, job, attempt);
                let full = retry_delay_ms(&Backoff { jitter: false, ..b }, job, attempt);
                assert!(
                    d >= full / 2 && d <= full,
                    "{d} not in [{}, {full}]",
                    full / 2
                );
                assert_eq!(d, retry_delay_ms(&b, job, attempt));
                if attempt == 1 {
                    distinct.insert(d);
                }
            }
        }
        assert!(
            distinct.len() > 100,
            "jitter barely varies: {}",
            distinct.len()
        );
    }
}
