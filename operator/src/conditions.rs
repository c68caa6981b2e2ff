//! Merging conditions into a status: one function, so `lastTransitionTime` moves
//! only when a condition's status really changes, and callers learn which changed
//! (each transition is also published as an Event).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// A condition as a reconcile step reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Condition type, from `hookline_crds::conditions`.
    pub type_: &'static str,
    /// True or False (Unknown is never reported: a step either knows or fails).
    pub ok: bool,
    /// CamelCase reason, from `hookline_crds::reasons`.
    pub reason: String,
    /// What a human should know.
    pub message: String,
}

impl Report {
    /// A True condition.
    pub fn ok(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_,
            ok: true,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }

    /// A False condition.
    pub fn failed(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_,
            ok: false,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
}

/// Merges `report` into `conditions`. Returns true when the condition is new or its
/// status flipped; reason, message and observedGeneration are updated either way.
pub fn merge(
    conditions: &mut Vec<Condition>,
    report: &Report,
    generation: Option<i64>,
    now: &Time,
) -> bool {
    let status = if report.ok { "True" } else { "False" };
    match conditions.iter_mut().find(|c| c.type_ == report.type_) {
        Some(existing) => {
            let flipped = existing.status != status;
            if flipped {
                existing.status = status.to_owned();
                existing.last_transition_time = now.clone();
            }
            existing.reason.clone_from(&report.reason);
            existing.message.clone_from(&report.message);
            existing.observed_generation = generation;
            flipped
        }
        None => {
            conditions.push(Condition {
                type_: report.type_.to_owned(),
                status: status.to_owned(),
                reason: report.reason.clone(),
                message: report.message.clone(),
                observed_generation: generation,
                last_transition_time: now.clone(),
            });
            true
        }
    }
}

/// Whether the condition of this type is True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn transition_time_moves_only_on_a_status_change() {
        let mut conditions = Vec::new();
        assert!(merge(
            &mut conditions,
            &Report::failed("Ready", "Progressing", "creating"),
            Some(1),
            &at(100)
        ));
        assert!(!merge(
            &mut conditions,
            &Report::failed("Ready", "Progressing", "still creating"),
            Some(1),
            &at(200)
        ));
        assert_eq!(
            conditions[0].last_transition_time,
            at(100),
            "same status: time kept"
        );
        assert_eq!(conditions[0].message, "still creating", "message refreshed");
        assert!(merge(
            &mut conditions,
            &Report::ok("Ready", "Reconciled", ""),
            Some(2),
            &at(300)
        ));
        assert_eq!(conditions[0].last_transition_time, at(300));
        assert_eq!(conditions[0].observed_generation, Some(2));
        assert_eq!(conditions.len(), 1);
    }

    #[test]
    fn conditions_of_other_types_are_independent() {
        let mut conditions = Vec::new();
        merge(
            &mut conditions,
            &Report::ok("QueueReady", "Reconciled", ""),
            None,
            &at(1),
        );
        merge(
            &mut conditions,
            &Report::failed("RouteReady", "AwsError", "boom"),
            None,
            &at(2),
        );
        assert!(is_true(&conditions, "QueueReady"));
        assert!(!is_true(&conditions, "RouteReady"));
        assert!(!is_true(&conditions, "Ready"));
    }
}
