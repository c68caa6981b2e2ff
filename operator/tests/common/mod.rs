//! Helpers shared by the operator's bench tests (each test binary uses a subset).
#![allow(dead_code)]

use hookline_operator::controller::context::Context;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The operator's controllers and scaler, run as the binary runs them, in this process.
pub struct Operator {
    stop: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Operator {
    /// Starts the operator on `ctx`.
    pub fn start(ctx: Arc<Context>) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = futures::FutureExt::shared(Box::pin(async move {
            let _ = stopped.await;
        }));
        let task =
            tokio::spawn(
                async move { hookline_operator::controller::run::run(ctx, shutdown).await },
            );
        Self { stop, task }
    }

    /// Stops it abruptly, as a crash would: in-flight reconciles are dropped.
    pub fn kill(self) {
        self.task.abort();
        drop(self.stop);
    }

    /// Stops it as SIGTERM would, waiting (bounded) for it to finish.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(20), self.task).await;
    }
}
