//! Leader election on the real API server: one holder at a time; a replica takes
//! over only after the holder stopped renewing for the lease duration.

use anyhow::Result;
use hookline_operator::leader::{self, LeaseConfig};
use hookline_tests::Bench;
use std::time::{Duration, Instant};

fn config(namespace: &str, identity: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: namespace.to_owned(),
        name: "hookline-operator".to_owned(),
        identity: identity.to_owned(),
        duration: Duration::from_secs(3),
        renew: Duration::from_millis(500),
    }
}

#[tokio::test]
async fn one_leader_at_a_time_and_takeover_after_expiry() -> Result<()> {
    let bench = Bench::shared().await?;
    let client = bench.kube.client().await?;
    let namespace = bench.kube.namespace(&client, "lease").await?;

    leader::acquire(&client, &config(&namespace, "replica-a")).await?;
    let holder = {
        let client = client.clone();
        let config = config(&namespace, "replica-a");
        tokio::spawn(async move { leader::hold(&client, &config).await })
    };

    // While A renews, B waits.
    let b = config(&namespace, "replica-b");
    let waiting = tokio::time::timeout(Duration::from_secs(5), leader::acquire(&client, &b)).await;
    assert!(waiting.is_err(), "B became leader while A renewed");

    // A stops renewing (a crash); B takes over once the lease expires.
    holder.abort();
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(15), leader::acquire(&client, &b)).await??;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "took over before the lease could have expired"
    );

    // A, back, must now wait in turn: holding fails at once.
    let a = config(&namespace, "replica-a");
    let lost = tokio::time::timeout(Duration::from_secs(5), leader::hold(&client, &a)).await;
    assert!(lost.is_ok(), "A kept leading after B took the lease");
    Ok(())
}

#[tokio::test]
async fn a_released_lease_is_taken_at_once_and_only_the_holder_releases() -> Result<()> {
    let bench = Bench::shared().await?;
    let client = bench.kube.client().await?;
    let namespace = bench.kube.namespace(&client, "release").await?;
    // A long lease: without the release, B would wait a minute.
    let long = |identity: &str| LeaseConfig {
        duration: Duration::from_secs(60),
        ..config(&namespace, identity)
    };

    leader::acquire(&client, &long("replica-a")).await?;
    // B is not the holder: its release must leave A's lease alone.
    leader::release(&client, &long("replica-b")).await;
    let waiting = tokio::time::timeout(
        Duration::from_secs(2),
        leader::acquire(&client, &long("replica-b")),
    )
    .await;
    assert!(waiting.is_err(), "a non-holder's release freed the lease");

    leader::release(&client, &long("replica-a")).await;
    tokio::time::timeout(
        Duration::from_secs(5),
        leader::acquire(&client, &long("replica-b")),
    )
    .await??;
    Ok(())
}
