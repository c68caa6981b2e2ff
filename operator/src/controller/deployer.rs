//! Coalesced stage deployments. A deployment snapshots the whole REST API, so one
//! started after a change includes it: many webhooks changing at once share one
//! `CreateDeployment` per gateway, instead of one each. AWS allows one
//! `CreateDeployment` per 5 s per *account* (all gateways together), which the
//! caller's rate limits enforce (see `aws::limits`); coalescing is what keeps many
//! gateways from queueing behind each other there.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::aws::{AwsError, RestApis};

/// Per-API deployment state.
#[derive(Debug, Default)]
struct ApiState {
    /// When the last deployment that succeeded was started.
    last_started: Option<Instant>,
}

/// Coalesces deployments per REST API.
#[derive(Debug)]
pub struct Deployer {
    window: Duration,
    apis: Mutex<HashMap<String, Arc<Mutex<ApiState>>>>,
    deployments: std::sync::atomic::AtomicU64,
}

impl Deployer {
    /// Waits `window` to collect changes before each deployment.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            apis: Mutex::default(),
            deployments: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Deployments made so far (for tests and benchmarks).
    pub fn count(&self) -> u64 {
        self.deployments.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Makes sure a deployment of `api_id` to `stage` started after `changed_at` (the
    /// moment the caller's change was complete) exists; shares one with every caller
    /// whose change it covers.
    pub async fn deploy_after(
        &self,
        apis: &impl RestApis,
        api_id: &str,
        stage: &str,
        changed_at: Instant,
    ) -> Result<(), AwsError> {
        let state = self
            .apis
            .lock()
            .await
            .entry(api_id.to_owned())
            .or_default()
            .clone();
        let mut state = state.lock().await;
        if state
            .last_started
            .is_some_and(|started| started > changed_at)
        {
            return Ok(());
        }
        // Others changing the same API now will queue on the lock and find their
        // change covered by this deployment.
        tokio::time::sleep(self.window).await;
        let started = Instant::now();
        apis.deploy(api_id, stage).await?;
        self.deployments
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        state.last_started = Some(started);
        Ok(())
    }
}
