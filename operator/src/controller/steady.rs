//! The steady-state resync: what lets a reconcile of an unchanged resource make at
//! most two AWS reads instead of the full pass, and when the full pass (the audit)
//! runs anyway.
//!
//! A full pass that leaves a resource's AWS parts ready records here a fingerprint
//! of what it applied (the plan, and the ids it wrote to status) and when. The next
//! reconcile computes its plan as usual (Kubernetes reads only) and, if the
//! fingerprint is the same and the audit is not due, checks the AWS parts with one
//! read each (`Queues::queue_matches` + `Checks::route_matches` for a Webhook,
//! `Checks::stage_matches` + `Checks::domain_matches` for a gateway). Drift in
//! either read falls through to the full pass in the same reconcile, so a deleted
//! queue or route is recreated by the next resync, not by the next audit.
//!
//! What the two reads cannot see is repaired by the audit: the first reconcile of
//! each resource after the operator starts (this record lives in memory only, so a
//! restart or a new leader audits everything once) and then every audit interval
//! (`--audit-interval-seconds`, 10 h by default, like ACK's resync). docs/operator.md
//! lists that drift per resource.
//!
//! Why in memory and not in status: the fingerprint hashes the plan's `Debug`
//! rendering, stable within one build of the operator only; the first reconcile
//! after a start is a full pass anyway, so nothing older than the process is needed.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{DefaultHasher, Hasher};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::aws::RouteAuth;

/// The default audit interval: ten hours, ACK's default resync period.
pub const DEFAULT_AUDIT_INTERVAL: Duration = Duration::from_secs(10 * 3600);

/// What a full pass proved, per resource uid.
#[derive(Debug)]
pub struct Steady {
    audit_interval: Duration,
    verified: Mutex<HashMap<String, Verified>>,
}

/// One resource's last full pass that left its AWS parts ready.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// [`fingerprint`] of what it applied.
    pub fingerprint: u64,
    /// When it ran.
    pub at: Instant,
    /// What the steady reads compare with that the plan does not say.
    pub evidence: Evidence,
}

/// What a full pass learnt from AWS that the steady reads compare with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evidence {
    /// A Webhook's route authorization as that pass made it (an authorizer's id
    /// comes from AWS, not from the plan).
    pub auth: Option<RouteAuth>,
    /// A gateway's access-log destination and format (the group's ARN comes from
    /// AWS).
    pub access_log: Option<(String, String)>,
}

impl Default for Steady {
    fn default() -> Self {
        Self::new(DEFAULT_AUDIT_INTERVAL)
    }
}

impl Steady {
    /// A record whose entries are trusted for `audit_interval` after their full pass.
    pub fn new(audit_interval: Duration) -> Self {
        Self {
            audit_interval,
            verified: Mutex::default(),
        }
    }

    /// The audit interval.
    pub fn audit_interval(&self) -> Duration {
        self.audit_interval
    }

    /// What the last full pass of `uid` proved, if it applied `fingerprint` and the
    /// audit is not due; `None`: run the full pass.
    pub fn trusted(&self, uid: &str, fingerprint: u64) -> Option<Verified> {
        self.trusted_at(uid, fingerprint, Instant::now())
    }

    fn trusted_at(&self, uid: &str, fingerprint: u64, now: Instant) -> Option<Verified> {
        let verified = self.lock();
        let entry = verified.get(uid)?;
        (entry.fingerprint == fingerprint
            && now.saturating_duration_since(entry.at) < self.audit_after(uid))
        .then(|| entry.clone())
    }

    /// How long `uid`'s full pass is trusted: the audit interval, spread by ±10 %
    /// per resource. A start audits every resource at once; without the spread their
    /// audits would stay in step and compete, all together, with real changes for
    /// the AWS rate limits every interval. The spread is a hash of the uid, so one
    /// resource's audits stay an interval apart.
    fn audit_after(&self, uid: &str) -> Duration {
        let mut hasher = DefaultHasher::new();
        hasher.write(uid.as_bytes());
        // A fraction in [0.9, 1.1), in thousandths.
        let permille = 900 + u32::try_from(hasher.finish() % 200).unwrap_or(0);
        self.audit_interval * permille / 1000
    }

    /// Records a full pass of `uid` that left its AWS parts ready.
    pub fn verified(&self, uid: &str, fingerprint: u64, evidence: Evidence) {
        self.lock().insert(
            uid.to_owned(),
            Verified {
                fingerprint,
                at: Instant::now(),
                evidence,
            },
        );
    }

    /// Forgets `uid`: a full pass starts, or the resource is gone.
    pub fn forget(&self, uid: &str) {
        self.lock().remove(uid);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Verified>> {
        self.verified.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A hash of `value`'s `Debug` rendering: every field of a plan, nested ones
/// included, without asking every type it holds to implement `Hash` (some hold
/// `f64`). Only compared within one process (see the module doc).
pub fn fingerprint(value: &impl Debug) -> u64 {
    struct Feed(DefaultHasher);
    impl std::fmt::Write for Feed {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0.write(s.as_bytes());
            Ok(())
        }
    }
    let mut feed = Feed(DefaultHasher::new());
    // Writing to a hasher cannot fail; a Debug impl that errs changes only the hash.
    let _ = std::fmt::write(&mut feed, format_args!("{value:?}"));
    feed.0.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_pass_is_trusted_for_the_same_plan_until_the_audit() {
        let steady = Steady::new(Duration::from_secs(60));
        let plan = fingerprint(&("queue", 5));
        assert_eq!(
            steady.trusted("u", plan),
            None,
            "nothing before a full pass"
        );
        let evidence = Evidence {
            auth: Some(RouteAuth::ApiKey),
            access_log: None,
        };
        steady.verified("u", plan, evidence.clone());
        let trusted = steady.trusted("u", plan).expect("trusted");
        assert_eq!(trusted.evidence, evidence);
        assert_eq!(
            steady.trusted("u", fingerprint(&("queue", 6))),
            None,
            "another plan"
        );
        assert_eq!(steady.trusted("v", plan), None, "another resource");
        let later = trusted.at + Duration::from_secs(66);
        assert_eq!(steady.trusted_at("u", plan, later), None, "audit due");
        steady.forget("u");
        assert_eq!(steady.trusted("u", plan), None, "forgotten");
    }

    #[test]
    fn audits_are_spread_over_a_fifth_of_the_interval() {
        let interval = Duration::from_secs(36_000);
        let steady = Steady::new(interval);
        let afters: Vec<Duration> = (0..200)
            .map(|i| steady.audit_after(&format!("uid-{i}")))
            .collect();
        assert!(
            afters
                .iter()
                .all(|a| *a >= interval * 9 / 10 && *a < interval * 11 / 10),
            "{afters:?}"
        );
        let (min, max) = (afters.iter().min(), afters.iter().max());
        assert!(
            max.zip(min)
                .is_some_and(|(max, min)| *max - *min > interval / 10),
            "spread: {min:?}..{max:?}"
        );
        assert_eq!(steady.audit_after("uid-1"), steady.audit_after("uid-1"));
        let plan = fingerprint(&"plan");
        steady.verified("uid-1", plan, Evidence::default());
        let at = steady
            .trusted("uid-1", plan)
            .map(|v| v.at)
            .expect("trusted");
        let after = steady.audit_after("uid-1");
        assert!(
            steady
                .trusted_at("uid-1", plan, at + after - Duration::from_secs(1))
                .is_some()
        );
        assert!(steady.trusted_at("uid-1", plan, at + after).is_none());
    }

    #[test]
    fn a_fingerprint_sees_every_field() {
        assert_eq!(fingerprint(&("a", 1.5)), fingerprint(&("a", 1.5)));
        assert_ne!(fingerprint(&("a", 1.5)), fingerprint(&("a", 1.25)));
        assert_ne!(fingerprint(&Some("a")), fingerprint(&None::<&str>));
    }
}
