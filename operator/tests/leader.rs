//! Leader election on the real API server: one holder at a time; a replica takes
//! over only after the holder stopped renewing for the lease duration; a holder cut
//! off from the API server stops before its lease could expire.

use anyhow::{Context as _, Result};
use hookline_operator::leader::{self, LeaseConfig};
use hookline_tests::{Bench, KubeCluster, Workdir};
use std::time::{Duration, Instant};

fn config(namespace: &str, identity: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: namespace.to_owned(),
        name: "hookline-operator".to_owned(),
        identity: identity.to_owned(),
        duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        renew: Duration::from_millis(500),
    }
}

#[tokio::test]
async fn one_leader_at_a_time_and_takeover_after_expiry() -> Result<()> {
    let bench = Bench::shared().await?;
    let client = bench.kube.client().await?;
    let namespace = bench.kube.namespace(&client, "lease").await?;

    let renewed = leader::acquire(&client, &config(&namespace, "replica-a")).await;
    let holder = {
        let client = client.clone();
        let config = config(&namespace, "replica-a");
        tokio::spawn(async move { leader::hold(&client, &config, renewed).await })
    };

    // While A renews, B waits.
    let b = config(&namespace, "replica-b");
    let waiting = tokio::time::timeout(Duration::from_secs(5), leader::acquire(&client, &b)).await;
    assert!(waiting.is_err(), "B became leader while A renewed");

    // A stops renewing (a crash); B takes over once the lease expires.
    holder.abort();
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(15), leader::acquire(&client, &b)).await?;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "took over before the lease could have expired"
    );

    // A, back, must now wait in turn: holding fails at once.
    let a = config(&namespace, "replica-a");
    let lost = tokio::time::timeout(
        Duration::from_secs(5),
        leader::hold(&client, &a, tokio::time::Instant::now()),
    )
    .await;
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

    leader::acquire(&client, &long("replica-a")).await;
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
    .await?;
    Ok(())
}

/// The API server stops answering (SIGSTOP: connections stay open and nothing comes
/// back, as in a network partition): the holder must stop leading before another
/// replica could take the lease, i.e. before the Lease's renewTime + duration, even
/// though its renewal request never returns. Without the renew deadline the renewal
/// hangs for the client's read timeout (minutes) and the holder goes on leading.
#[tokio::test]
async fn a_leader_cut_off_from_the_api_server_stops_before_its_lease_expires() -> Result<()> {
    // An API server of its own: the shared one must keep answering other tests.
    let workdir = Workdir::create()?;
    let cluster =
        KubeCluster::start_bare(&hookline_tests::kube_binaries()?, workdir.path()).await?;
    let client = cluster.client().await?;
    let namespace = cluster.namespace(&client, "partition").await?;
    let config = LeaseConfig {
        duration: Duration::from_secs(6),
        renew_deadline: Duration::from_secs(4),
        ..config(&namespace, "replica-a")
    };
    let renewed = leader::acquire(&client, &config).await;
    let holder = {
        let client = client.clone();
        let config = config.clone();
        tokio::spawn(async move { leader::hold(&client, &config, renewed).await })
    };
    // A few renewals on a healthy API server.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !holder.is_finished(),
        "stopped leading on a healthy API server"
    );

    cluster.apiserver().signal("STOP")?;
    let frozen = Instant::now();
    let ended = tokio::time::timeout(config.duration * 2, holder).await;
    let stopped_after = frozen.elapsed();
    cluster.apiserver().signal("CONT")?;
    ended
        .with_context(|| {
            format!(
                "still leading {:?} after the API server froze",
                config.duration * 2
            )
        })?
        .context("the holder task")?;
    eprintln!(
        "the holder stopped {stopped_after:?} after the API server froze (renew deadline {:?}, lease {:?})",
        config.renew_deadline, config.duration
    );
    // The last successful renewal was sent at most one `renew` before the freeze, so
    // a standby could take over from `duration - renew` after it on.
    assert!(
        stopped_after + config.renew < config.duration,
        "stopped leading {stopped_after:?} after the freeze: a standby could have taken over after {:?}",
        config.duration - config.renew
    );
    Ok(())
}
