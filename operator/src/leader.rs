//! Leader election on a `coordination.k8s.io/v1` Lease, so that two replicas of the
//! operator never reconcile at once. The leader renews every `renew`; a replica takes
//! over when the lease has not been renewed for `duration`. A leader that cannot renew
//! in time stops (the process exits and restarts as a follower) rather than risk two
//! leaders.

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
    /// How often the leader renews.
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

/// Waits until this replica holds the lease. Returns the lease's resourceVersion.
pub async fn acquire(client: &kube::Client, config: &LeaseConfig) -> Result<(), kube::Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    loop {
        if try_take(&leases, config).await? {
            tracing::info!(identity = %config.identity, lease = %config.name, "became leader");
            return Ok(());
        }
        tokio::time::sleep(config.renew).await;
    }
}

/// Renews the lease until renewal fails for longer than the lease duration; then
/// returns, and the caller must stop reconciling.
pub async fn hold(client: &kube::Client, config: &LeaseConfig) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let mut last_renewed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(config.renew).await;
        match try_take(&leases, config).await {
            Ok(true) => last_renewed = tokio::time::Instant::now(),
            Ok(false) => {
                tracing::error!(identity = %config.identity, "lost the lease to another replica");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "renewing the lease failed"),
        }
        if last_renewed.elapsed() > config.duration {
            tracing::error!("could not renew the lease in time");
            return;
        }
    }
}

/// Gives the lease up if this replica holds it, so that a standby takes over at its
/// next try instead of waiting out the lease duration (a rollout hands over in
/// seconds). Best effort: a failure only means the standby waits for expiry.
pub async fn release(client: &kube::Client, config: &LeaseConfig) {
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
