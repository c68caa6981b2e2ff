//! Leader election on a `coordination.k8s.io/v1` Lease, so that two replicas of the
//! operator never reconcile at once. The leader renews every `renew`; a replica takes
//! over when the lease has not been renewed for `duration`. A leader that has not
//! renewed for `renew_deadline` (shorter than `duration`) stops (the process exits and
//! restarts as a follower) rather than risk two leaders: it gives up before another
//! replica may take over, even when the API server answers nothing at all (each
//! renewal is cut off at the deadline). These are client-go's defaults: 15 s, 10 s, 2 s.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use std::time::Duration;

/// Lease settings.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a lease stays valid without renewal.
    pub duration: Duration,
    /// How long the leader keeps leading without a successful renewal; shorter than
    /// `duration`, so that it has stopped before another replica can take over.
    pub renew_deadline: Duration,
    /// How often the leader renews (and a standby tries).
    pub renew: Duration,
}

/// Whether `spec` lets `identity` take or keep the lease at `now`.
pub fn can_acquire(spec: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> bool {
    let Some(spec) = spec else { return true };
    match spec.holder_identity.as_deref() {
        None | Some("") => true,
        Some(holder) if holder == identity => true,
        Some(_) => {
            let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(15));
            spec.renew_time
                .as_ref()
                .is_none_or(|renewed| renewed.0 + SignedDuration::from_secs(seconds) < now)
        }
    }
}

/// Waits until this replica holds the lease, and returns when the winning request
/// was sent (the lease's renewTime is no earlier): pass it to [`hold`]. Errors (the
/// API server away, a timeout) are logged and retried every `renew`: a replica
/// started while the API server is down waits for it instead of exiting, which under
/// a kubelet would become a crash loop whose back-off outlasts the outage.
pub async fn acquire(client: &kube::Client, config: &LeaseConfig) -> tokio::time::Instant {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    loop {
        let sent = tokio::time::Instant::now();
        // Bounded like a renewal: a request the API server never answers must not
        // hold the standby forever.
        match tokio::time::timeout(config.renew_deadline, try_take(&leases, config)).await {
            Ok(Ok(true)) => {
                tracing::info!(identity = %config.identity, lease = %config.name, "became leader");
                return sent;
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, lease = %config.name, "reading or taking the lease failed; retrying")
            }
            Err(_) => tracing::warn!(lease = %config.name, "taking the lease timed out; retrying"),
        }
        tokio::time::sleep(config.renew).await;
    }
}

/// Renews the lease every `renew` until it is lost to another replica, or until no
/// renewal has succeeded for `renew_deadline` since `renewed` (when the last
/// successful one was sent); then returns, and the caller must stop reconciling at
/// once. A renewal still unanswered at the deadline is abandoned: the lease may be
/// expiring for the other replicas, whatever the request would have said.
pub async fn hold(client: &kube::Client, config: &LeaseConfig, renewed: tokio::time::Instant) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let mut renewed = renewed;
    loop {
        let deadline = renewed + config.renew_deadline;
        tokio::time::sleep_until((tokio::time::Instant::now() + config.renew).min(deadline)).await;
        if tokio::time::Instant::now() >= deadline {
            tracing::error!(identity = %config.identity, deadline = ?config.renew_deadline, "could not renew the lease within the renew deadline");
            return;
        }
        // The renewTime written is taken after this instant, so the other replicas
        // count the expiry from no earlier than `sent`.
        let sent = tokio::time::Instant::now();
        match tokio::time::timeout_at(deadline, try_take(&leases, config)).await {
            Ok(Ok(true)) => renewed = sent,
            Ok(Ok(false)) => {
                tracing::error!(identity = %config.identity, "lost the lease to another replica");
                return;
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "renewing the lease failed"),
            Err(_) => tracing::warn!("renewing the lease did not finish before the renew deadline"),
        }
    }
}

/// Gives the lease up if this replica holds it, so that a standby takes over at its
/// next try instead of waiting out the lease duration (a rollout hands over in
/// seconds). Best effort, and bounded by `renew_deadline` so that a stop with the API
/// server unreachable is not held up: a failure only means the standby waits for
/// expiry.
pub async fn release(client: &kube::Client, config: &LeaseConfig) {
    if tokio::time::timeout(config.renew_deadline, release_now(client, config))
        .await
        .is_err()
    {
        tracing::warn!(lease = %config.name, "releasing the lease timed out; a standby takes over at expiry");
    }
}

async fn release_now(client: &kube::Client, config: &LeaseConfig) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let lease = match leases.get_opt(&config.name).await {
        Ok(Some(lease)) => lease,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "reading the lease to release it");
            return;
        }
    };
    let holder = lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref());
    if holder != Some(config.identity.as_str()) {
        return;
    }
    // Compare-and-swap, as when taking it: never clear a lease another replica took.
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": lease.metadata.resource_version},
        "spec": {"holderIdentity": null, "renewTime": null, "acquireTime": null},
    });
    match leases
        .patch(&config.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => tracing::info!(identity = %config.identity, "released the lease"),
        Err(e) => tracing::warn!(error = %e, "releasing the lease"),
    }
}

async fn try_take(leases: &Api<Lease>, config: &LeaseConfig) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let existing = leases.get_opt(&config.name).await?;
    let Some(lease) = existing else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(spec(config, now, now)),
        };
        return match leases.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    if !can_acquire(lease.spec.as_ref(), &config.identity, now) {
        return Ok(false);
    }
    let acquired = lease
        .spec
        .as_ref()
        .filter(|s| s.holder_identity.as_deref() == Some(config.identity.as_str()))
        .and_then(|s| s.acquire_time.as_ref().map(|t| t.0))
        .unwrap_or(now);
    // The resourceVersion makes this a compare-and-swap: of two replicas taking an
    // expired lease at once, one gets 409.
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": lease.metadata.resource_version},
        "spec": spec(config, acquired, now),
    });
    match leases
        .patch(&config.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

fn spec(config: &LeaseConfig, acquired: Timestamp, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(i32::try_from(config.duration.as_secs()).unwrap_or(i32::MAX)),
        acquire_time: Some(MicroTime(acquired)),
        renew_time: Some(MicroTime(now)),
        ..LeaseSpec::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).unwrap())),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn who_may_take_the_lease() {
        let now = Timestamp::from_second(1_000).unwrap();
        assert!(can_acquire(None, "a", now), "no lease yet");
        assert!(
            can_acquire(Some(&lease("a", 990)), "a", now),
            "the holder renews"
        );
        assert!(
            !can_acquire(Some(&lease("b", 990)), "a", now),
            "another holder within its duration"
        );
        assert!(
            can_acquire(Some(&lease("b", 980)), "a", now),
            "another holder expired"
        );
        assert!(
            can_acquire(Some(&LeaseSpec::default()), "a", now),
            "released"
        );
    }
}
