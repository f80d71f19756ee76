//! Retry arithmetic: how long to wait before the next attempt, and whether there is one.

use std::time::Duration;

use crate::spec::model::{Backoff, FailureClass, RetryPolicy};

/// The longest wait between attempts when `exponential` backoff has no `max_delay_s`: doubling
/// must stop somewhere.
pub const MAX_DELAY: Duration = Duration::from_secs(24 * 3600);

/// Whether a failure of `class` may be retried when `spent` retries of the budget are used.
/// `budget` counts retries after the first attempt, so an instance runs at most `budget + 1`
/// times (requeues from a later stage count against the same budget).
pub fn may_retry(policy: &RetryPolicy, class: FailureClass, spent: u32) -> bool {
    spent < policy.budget && policy.on.contains(&class)
}

/// The wait before retry `n` (1 = the first retry), before jitter: `delay_s` every time for
/// `fixed`; `delay_s × 2^(n-1)` for `exponential`, at most `max_delay_s`.
pub fn base_delay(policy: &RetryPolicy, n: u32) -> Duration {
    let d = policy.delay_s.max(0.0);
    let secs = match policy.backoff {
        Backoff::Fixed => d,
        Backoff::Exponential => {
            let grown = d * 2f64.powi(n.saturating_sub(1).min(1024) as i32);
            match policy.max_delay_s {
                Some(max) => grown.min(max.max(0.0)),
                None => grown,
            }
        }
    };
    Duration::try_from_secs_f64(secs)
        .unwrap_or(MAX_DELAY)
        .min(MAX_DELAY)
}

/// The wait before retry `n`: [`base_delay`], spread over [half of it, all of it] by `unit`
/// (a number in [0, 1]) when the policy has `jitter`.
pub fn delay(policy: &RetryPolicy, n: u32, unit: f64) -> Duration {
    let base = base_delay(policy, n);
    if policy.jitter {
        base.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
    } else {
        base
    }
}

/// A random number in [0, 1] for jitter. Jitter only has to keep retries of many scenes from
/// hitting a server at one instant, so the randomness of a fresh ULID is plenty.
pub fn random_unit() -> f64 {
    let bits = (ulid::Ulid::generate().random() as u64) >> 11;
    bits as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(backoff: Backoff, delay_s: f64, max: Option<f64>, jitter: bool) -> RetryPolicy {
        RetryPolicy {
            budget: 3,
            backoff,
            delay_s,
            max_delay_s: max,
            jitter,
            on: vec![FailureClass::Timeout],
        }
    }

    #[test]
    fn fixed_waits_the_same_every_time() {
        let p = policy(Backoff::Fixed, 1.5, None, false);
        for n in 1..5 {
            assert_eq!(base_delay(&p, n), Duration::from_millis(1500));
        }
    }

    #[test]
    fn exponential_doubles_up_to_the_cap() {
        let p = policy(Backoff::Exponential, 1.0, Some(5.0), false);
        let got: Vec<u64> = (1..6).map(|n| base_delay(&p, n).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 5, 5]);
        let uncapped = policy(Backoff::Exponential, 1.0, None, false);
        assert_eq!(base_delay(&uncapped, 1000), MAX_DELAY);
    }

    #[test]
    fn jitter_spreads_over_the_upper_half() {
        let p = policy(Backoff::Fixed, 4.0, None, true);
        assert_eq!(delay(&p, 1, 0.0), Duration::from_secs(2));
        assert_eq!(delay(&p, 1, 1.0), Duration::from_secs(4));
        for _ in 0..100 {
            let d = delay(&p, 1, random_unit());
            assert!(
                d >= Duration::from_secs(2) && d <= Duration::from_secs(4),
                "{d:?}"
            );
        }
    }

    #[test]
    fn budget_counts_retries_after_the_first_attempt_and_only_listed_classes() {
        let p = policy(Backoff::Fixed, 0.0, None, false);
        assert!(may_retry(&p, FailureClass::Timeout, 0));
        assert!(may_retry(&p, FailureClass::Timeout, 2));
        assert!(!may_retry(&p, FailureClass::Timeout, 3));
        assert!(!may_retry(&p, FailureClass::Transport, 0));
    }
}
