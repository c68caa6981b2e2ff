//! Step 1 of a Webhook reconcile: every read it needs (the gateway, the namespace's
//! labels, the Secrets it names, the other Webhooks, whether KEDA is installed) into
//! one [`Observed`] value, so that the steps after it decide without I/O.

use hookline_crds::{NamespacesFrom, Webhook, WebhookGateway};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use std::collections::BTreeMap;
use std::sync::Arc;

use super::super::Result;
use super::super::context::Context;
use crate::desired;

/// What the cluster says, read once per pass.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The gateway the Webhook attaches to, or why there is none.
    pub gateway: Result<WebhookGateway, String>,
    /// The namespace's labels, read only when the gateway admits namespaces by selector.
    pub namespace_labels: Option<BTreeMap<String, String>>,
    /// The API key's Secret, when `auth.apiKey` names one.
    pub api_key_secret: Option<SecretRead>,
    /// The signature Secret, when `signature` names one.
    pub signature_secret: Option<SecretRead>,
    /// The handshake's verify-token Secret, when `handshake` names one.
    pub handshake_secret: Option<SecretRead>,
    /// Every Webhook the operator manages (from the controllers' caches; see
    /// [`Context::claimants`]).
    pub webhooks: Vec<Arc<Webhook>>,
    /// Whether KEDA's ScaledObject and TriggerAuthentication CRDs are both installed.
    pub keda_installed: bool,
}

/// A Secret as the operator could read it.
#[derive(Debug, Clone, PartialEq)]
pub enum SecretRead {
    /// It exists, with this data.
    Found(BTreeMap<String, k8s_openapi::ByteString>),
    /// It does not exist.
    Missing,
    /// RBAC does not let the operator read it (a cluster-wide install reads Secrets
    /// only where a namespace granted it access).
    Forbidden,
}

impl SecretRead {
    /// The Secret's data, when it exists.
    pub fn data(&self) -> Option<&BTreeMap<String, k8s_openapi::ByteString>> {
        match self {
            Self::Found(data) => Some(data),
            Self::Missing | Self::Forbidden => None,
        }
    }
}

/// Reads everything the pass for `webhook` in `namespace` needs.
pub async fn observe(ctx: &Context, webhook: &Webhook, namespace: &str) -> Result<Observed> {
    let gateway = gateway(ctx, webhook).await?;
    let namespace_labels = match &gateway {
        Ok(gateway) if gateway.spec.allowed_namespaces.from == NamespacesFrom::Selector => Some(
            Api::<Namespace>::all(ctx.client.clone())
                .get(namespace)
                .await?
                .metadata
                .labels
                .unwrap_or_default(),
        ),
        _ => None,
    };
    let api_key_secret = match &webhook.spec.auth.api_key {
        Some(api_key) => Some(secret(ctx, namespace, &api_key.secret_ref.name).await?),
        None => None,
    };
    let signature_secret = match &webhook.spec.signature {
        Some(signature) => Some(secret(ctx, namespace, &signature.secret_ref.name).await?),
        None => None,
    };
    let handshake_secret = match webhook
        .spec
        .handshake
        .as_ref()
        .and_then(|h| h.verify_token_secret_ref.as_ref())
    {
        Some(reference) => Some(secret(ctx, namespace, &reference.name).await?),
        None => None,
    };
    let crds = Api::<CustomResourceDefinition>::all(ctx.client.clone());
    let keda_installed = crds.get_opt(desired::KEDA_CRD).await?.is_some()
        && crds
            .get_opt(desired::KEDA_TRIGGER_AUTHENTICATION_CRD)
            .await?
            .is_some();
    Ok(Observed {
        gateway,
        namespace_labels,
        api_key_secret,
        signature_secret,
        handshake_secret,
        webhooks: ctx.claimants(claiming(webhook)).await?,
        keda_installed,
    })
}

/// Whether the Webhook is about to claim its path: it holds no route yet, or its
/// spec (its path, perhaps) changed since the pass that last applied it.
fn claiming(webhook: &Webhook) -> bool {
    webhook.status.as_ref().is_none_or(|status| {
        status.route.is_none() || status.observed_generation != webhook.metadata.generation
    })
}

/// The gateway a webhook attaches to: the named one, or the single default.
async fn gateway(ctx: &Context, webhook: &Webhook) -> Result<Result<WebhookGateway, String>> {
    let gateways: Api<WebhookGateway> = Api::all(ctx.client.clone());
    if let Some(reference) = &webhook.spec.gateway_ref {
        return Ok(gateways
            .get_opt(&reference.name)
            .await?
            .ok_or_else(|| format!("WebhookGateway {} does not exist", reference.name)));
    }
    let mut defaults: Vec<WebhookGateway> = gateways
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|g| g.spec.is_default)
        .collect();
    if defaults.len() == 1
        && let Some(gateway) = defaults.pop()
    {
        return Ok(Ok(gateway));
    }
    Ok(Err(if defaults.is_empty() {
        "no gatewayRef, and no WebhookGateway is marked default: true".to_owned()
    } else {
        let names: Vec<String> = defaults.iter().map(ResourceExt::name_any).collect();
        format!(
            "no gatewayRef, and {} WebhookGateways are marked default ({}); name one",
            names.len(),
            names.join(", ")
        )
    }))
}

async fn secret(ctx: &Context, namespace: &str, name: &str) -> Result<SecretRead> {
    match Api::<Secret>::namespaced(ctx.client.clone(), namespace)
        .get_opt(name)
        .await
    {
        Ok(Some(secret)) => Ok(SecretRead::Found(secret.data.unwrap_or_default())),
        Ok(None) => Ok(SecretRead::Missing),
        Err(kube::Error::Api(status)) if status.code == 403 => Ok(SecretRead::Forbidden),
        Err(e) => Err(e.into()),
    }
}
