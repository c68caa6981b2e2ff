//! When a failed reconcile runs again: per object, exponential backoff with jitter.
//!
//! A flat retry period makes every object that failed together (a throttled burst,
//! an API server restart) retry together, and fail together again: AWS's own
//! guidance is capped exponential backoff with jitter ("Exponential Backoff And
//! Jitter", AWS Architecture Blog; the SDKs' standard retry mode). controller-runtime
//! does the same per object (5 ms doubling to 1000 s). Ours starts at [`FIRST`] and
//! doubles to [`super::context::Timing::error`], drawn from the upper half of each step
//! ("equal jitter"), so a retry is never much sooner than the step asks. The count is
//! forgotten at the object's first success.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// The first retry after a success; each further failure doubles it up to the cap.
pub const FIRST: Duration = Duration::from_secs(2);

/// Consecutive failures and the next delay of each failing object, by uid.
#[derive(Debug, Default)]
pub struct Retries {
    failing: Mutex<HashMap<String, (u32, Duration)>>,
}

impl Retries {
    /// Records a failure of `key`; returns how long until its next reconcile.
    pub fn failed(&self, key: &str, cap: Duration) -> Duration {
        let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = failing.entry(key.to_owned()).or_insert((0, cap));
        entry.0 = entry.0.saturating_add(1);
        entry.1 = jittered(step(entry.0, cap), fastrand::f64());
        entry.1
    }

    /// The delay the last [`Self::failed`] of `key` chose (`cap` if none did).
    pub fn delay(&self, key: &str, cap: Duration) -> Duration {
        let failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        failing.get(key).map_or(cap, |(_, delay)| *delay)
    }

    /// Forgets `key`'s failures: it succeeded.
    pub fn succeeded(&self, key: &str) {
        let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        failing.remove(key);
    }

    /// Objects currently failing.
    pub fn failing(&self) -> usize {
        self.failing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The step of the `failures`-th consecutive failure: [`FIRST`] doubled, at most `cap`.
fn step(failures: u32, cap: Duration) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST.saturating_mul(1 << doublings).min(cap)
}

/// A delay in `[step / 2, step]`, `draw` in `[0, 1)`.
fn jittered(step: Duration, draw: f64) -> Duration {
    step.mul_f64(0.5 + draw.clamp(0.0, 1.0) / 2.0)
}

/// The key of `obj` in [`Retries`]: its uid, or its name when it has none.
pub fn key<K: kube::Resource>(obj: &K) -> String {
    let meta = obj.meta();
    meta.uid.clone().unwrap_or_else(|| {
        format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: Duration = Duration::from_secs(30);

    #[test]
    fn steps_double_from_the_first_to_the_cap() {
        let steps: Vec<u64> = (1..=7).map(|n| step(n, CAP).as_secs()).collect();
        assert_eq!(steps, [2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(step(u32::MAX, CAP), CAP);
        // A cap below the first step (the bench's 1 s) is the delay from the start.
        assert_eq!(step(1, Duration::from_secs(1)), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_in_the_upper_half_of_the_step() {
        let step = Duration::from_secs(16);
        assert_eq!(jittered(step, 0.0), Duration::from_secs(8));
        assert!(jittered(step, 0.999_999) <= step);
        assert_eq!(jittered(step, 7.0), step);
    }

    #[test]
    fn a_success_starts_the_count_again() {
        let retries = Retries::default();
        for _ in 0..6 {
            retries.failed("a", CAP);
        }
        assert!(retries.delay("a", CAP) >= CAP / 2);
        retries.succeeded("a");
        assert_eq!(retries.failing(), 0);
        assert!(retries.failed("a", CAP) <= FIRST);
        // Another object's failures are its own.
        assert!(retries.failed("b", CAP) <= FIRST);
        assert_eq!(retries.failing(), 2);
    }
}
