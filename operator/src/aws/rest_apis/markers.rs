//! Change and deployment markers (pure): how the operator tells from AWS alone
//! whether the stage serves a route's last change.

/// What a route's `POST` method (its `operationName`) and a deployment (its
/// description) carry to tell, from AWS alone, whether the live deployment contains
/// the route's last change: `hookline <n>`, `n` the operator's clock in milliseconds
/// when the change or the deployment was made, strictly increasing within a process.
/// A route is live when the stage's deployment has a larger `n` than the route. An
/// operator stopped between a change and its deployment leaves a route whose `n` is
/// larger than the stage's, so the next one deploys it. (API Gateway keeps no change
/// time on methods; the deployment's `createdDate` is the service's clock, so
/// comparing it with our marker would depend on clock skew.)
const MARKER_PREFIX: &str = "hookline ";

/// A new change or deployment marker.
pub(super) fn new_marker() -> u64 {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let previous = LAST
        .fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |last| Some(now.max(last + 1)),
        )
        .unwrap_or(0);
    now.max(previous + 1)
}

pub(super) fn marker_text(marker: u64) -> String {
    format!("{MARKER_PREFIX}{marker}")
}

/// The word after a route's marker saying that the `GET` method on its resource is
/// the operator's handshake (`hookline <n> handshake`). It is how the operator tells
/// its `GET` from one made by hand, and how it knows, from the `GetMethod` of the
/// `POST` it makes anyway, whether there is a `GET` to delete: a route without a
/// handshake costs no extra read.
const HANDSHAKE_WORD: &str = "handshake";

/// A route's marker text, flagged when the route has a handshake `GET`.
pub(super) fn route_marker_text(marker: u64, handshake: bool) -> String {
    if handshake {
        format!("{MARKER_PREFIX}{marker} {HANDSHAKE_WORD}")
    } else {
        marker_text(marker)
    }
}

/// Whether a route's `operationName` says the `GET` on its resource is ours.
pub(super) fn has_handshake(text: Option<&str>) -> bool {
    text.and_then(|t| t.strip_prefix(MARKER_PREFIX))
        .is_some_and(|rest| rest.split_whitespace().nth(1) == Some(HANDSHAKE_WORD))
}

/// The marker in an `operationName` or a deployment description.
pub(super) fn read_marker(text: Option<&str>) -> Option<u64> {
    text?
        .strip_prefix(MARKER_PREFIX)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Whether a deployment marked `deployed` contains a route marked `changed` (either
/// missing: no, so the route is deployed, and marked, once more).
pub fn deployment_contains(deployed: Option<u64>, changed: Option<u64>) -> bool {
    matches!((deployed, changed), (Some(d), Some(c)) if d > c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployment_contains_a_route_only_when_made_after_its_change() {
        assert!(deployment_contains(Some(20), Some(10)));
        assert!(!deployment_contains(Some(10), Some(20)), "changed since");
        assert!(!deployment_contains(Some(10), Some(10)));
        assert!(
            !deployment_contains(None, Some(10)),
            "not Hookline's deployment"
        );
        assert!(
            !deployment_contains(Some(10), None),
            "a route from before markers"
        );
        assert_eq!(
            read_marker(Some("hookline 1764582000123")),
            Some(1_764_582_000_123)
        );
        assert_eq!(read_marker(Some("hookline")), None, "the old description");
        assert_eq!(read_marker(Some(&marker_text(42))), Some(42));
        assert_eq!(read_marker(Some(&route_marker_text(42, true))), Some(42));
        assert!(has_handshake(Some(&route_marker_text(42, true))));
        assert!(!has_handshake(Some(&route_marker_text(42, false))));
        assert!(!has_handshake(Some("handshake")), "not a marker");
        assert!(!has_handshake(None));
        let (a, b) = (new_marker(), new_marker());
        assert!(b > a, "markers increase strictly within a process");
    }
}
