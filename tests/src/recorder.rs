//! A test's handler or recorder on 127.0.0.1: every POST it gets (from a worker
//! itself, or from a pod's handler container on the bench's node forwarding each
//! delivery), in arrival order, with the pod that sent it (`X-Hookline-Pod`). It
//! answers 200 once a body is recorded, or 500 when [`Recorder::fail_when`]'s text is
//! in the body, so the worker retries it.

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Header naming the pod a delivery went through (tests/node/helper's handler).
pub const POD_HEADER: &str = "x-hookline-pod";

/// One recorded call.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The pod's hostname (its name), when the handler said.
    pub pod: Option<String>,
    pub body: String,
    pub at: Instant,
    /// Answered 200 (else 500: [`Recorder::fail_when`]).
    pub accepted: bool,
}

#[derive(Debug, Default)]
struct Shared {
    deliveries: Vec<Delivery>,
    fail_when: Option<String>,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Recorder {
    shared: Arc<Mutex<Shared>>,
    port: u16,
}

impl Recorder {
    /// Listens on a free port of 127.0.0.1.
    pub async fn start() -> Result<Self> {
        let shared: Arc<Mutex<Shared>> = Arc::default();
        let app = Router::new()
            .fallback(post(record))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the recorder")?;
        let port = listener.local_addr()?.port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { shared, port })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Refuses (500) every body containing `text`, until called with `None`.
    pub fn fail_when(&self, text: Option<&str>) {
        if let Ok(mut shared) = self.shared.lock() {
            shared.fail_when = text.map(str::to_owned);
        }
    }

    /// Every call so far, refused ones too, in arrival order.
    pub fn calls(&self) -> Vec<Delivery> {
        self.shared
            .lock()
            .map(|s| s.deliveries.clone())
            .unwrap_or_default()
    }

    /// The calls answered 200, in arrival order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.calls().into_iter().filter(|d| d.accepted).collect()
    }

    /// The bodies answered 200, in arrival order.
    pub fn bodies(&self) -> Vec<String> {
        self.deliveries().into_iter().map(|d| d.body).collect()
    }

    /// How many calls were answered 200.
    pub fn len(&self) -> usize {
        self.shared
            .lock()
            .map_or(0, |s| s.deliveries.iter().filter(|d| d.accepted).count())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Accepted deliveries per pod.
    pub fn per_pod(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for delivery in self.deliveries() {
            *counts
                .entry(delivery.pod.unwrap_or_else(|| "?".to_owned()))
                .or_default() += 1;
        }
        counts
    }
}

async fn record(
    State(shared): State<Arc<Mutex<Shared>>>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let Ok(mut shared) = shared.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR;
    };
    let accepted = !shared
        .fail_when
        .as_deref()
        .is_some_and(|text| body.contains(text));
    shared.deliveries.push(Delivery {
        pod: headers
            .get(POD_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body,
        at: Instant::now(),
        accepted,
    });
    if accepted {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}
