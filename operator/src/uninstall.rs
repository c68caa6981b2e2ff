//! The chart's pre-delete check (`hookline-operator uninstall-check`): an uninstall
//! while Webhooks or WebhookGateways still carry the operator's finalizer leaves
//! them with nobody to remove it, so deleting their namespace (or the CRDs) hangs in
//! `Terminating` with nothing saying why. The check refuses the uninstall instead,
//! naming what is left and how to resolve it.

use hookline_crds::{Webhook, WebhookGateway};
use kube::api::{Api, ListParams};
use kube::{Resource, ResourceExt};
use std::fmt::Write as _;

use crate::controller::FINALIZER;

/// An object whose finalizer only a running operator removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocker {
    /// `Webhook` or `WebhookGateway`.
    pub kind: &'static str,
    /// The Webhook's namespace; `None` for a gateway (cluster-scoped).
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
}

fn held<K: Resource>(object: &K) -> bool {
    object
        .meta()
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == FINALIZER)
}

/// The Webhooks (in `namespaces`, or everywhere when empty, as the operator watches)
/// and WebhookGateways that still carry the operator's finalizer.
///
/// # Errors
/// The API server's, e.g. when the caller may not list them.
pub async fn blockers(
    client: &kube::Client,
    namespaces: &[String],
) -> Result<Vec<Blocker>, kube::Error> {
    let mut found = Vec::new();
    let webhook_apis: Vec<Api<Webhook>> = if namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    };
    for api in webhook_apis {
        for webhook in api.list(&ListParams::default()).await? {
            if held(&webhook) {
                found.push(Blocker {
                    kind: "Webhook",
                    namespace: webhook.namespace(),
                    name: webhook.name_any(),
                });
            }
        }
    }
    let gateways: Api<WebhookGateway> = Api::all(client.clone());
    for gateway in gateways.list(&ListParams::default()).await? {
        if held(&gateway) {
            found.push(Blocker {
                kind: "WebhookGateway",
                namespace: None,
                name: gateway.name_any(),
            });
        }
    }
    Ok(found)
}

/// What the uninstall leaves behind and the ways out, for the hook Job's log.
pub fn explain(blockers: &[Blocker]) -> String {
    let mut text = format!(
        "refusing the uninstall: {} object(s) still carry the finalizer {FINALIZER}, which \
         only a running Hookline operator removes (after deleting their AWS resources). \
         Uninstalled now, deleting them or their namespace would hang in Terminating.\n",
        blockers.len()
    );
    for blocker in blockers {
        match &blocker.namespace {
            Some(ns) => {
                let _ = writeln!(text, "  {} {ns}/{}", blocker.kind, blocker.name);
            }
            None => {
                let _ = writeln!(text, "  {} {}", blocker.kind, blocker.name);
            }
        }
    }
    text.push_str(
        "Either:\n\
         - delete them while the operator runs, and wait until they are gone (queues \
         drain first; see docs/operator.md#deletion):\n    \
         kubectl delete webhooks --all -A --wait=false && kubectl get webhooks -A\n    \
         kubectl delete webhookgateways --all --wait=false && kubectl get webhookgateways\n  \
         then run helm uninstall again; or\n\
         - keep them and their AWS resources for a later install of Hookline (which takes \
         them over): helm uninstall --no-hooks. Until Hookline runs again their \
         namespaces cannot be deleted; see docs/operations.md#uninstall.\n",
    );
    text
}
