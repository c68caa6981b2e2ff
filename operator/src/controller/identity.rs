//! A worker's AWS identity, between the Webhook reconcile and the cluster/IAM: its
//! ServiceAccount (its own, or one shared by a namespace's Webhooks so EKS Pod
//! Identity needs one association per namespace) and, for IRSA, the namespace's role
//! that the operator creates and deletes with the namespace's last Webhook.

use hookline_crds::conditions::WORKER_READY;
use hookline_crds::reasons::{AWS_ERROR, IRSA_NOT_CONFIGURED, NOT_OWNED};
use hookline_crds::{Webhook, WebhookGateway};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};

use super::context::Context;
use super::{Error, MANAGER, Result};
use crate::aws::{AwsError, NamespaceRoleSpec, Owner};
use crate::conditions::Report;
use crate::desired;
use crate::names;

/// The owner of a namespace's AWS objects (its worker role).
fn namespace_owner(namespace: &Namespace) -> Result<Owner> {
    Ok(Owner {
        uid: namespace
            .metadata
            .uid
            .clone()
            .ok_or(Error::Malformed("namespace uid"))?,
        resource: format!("Namespace {}", namespace.name_any()),
    })
}

/// Makes sure the worker's ServiceAccount (and, for IRSA, its namespace role) exists;
/// returns the ServiceAccount's name, or the report saying why the worker cannot have
/// its identity yet.
pub async fn ensure(
    ctx: &Context,
    webhook: &Webhook,
    gateway: &WebhookGateway,
    namespace: &str,
) -> Result<std::result::Result<String, Report>> {
    let identity = &gateway.spec.worker_identity;
    let role_arn = if identity.irsa_role_per_namespace {
        let Some(provider) = &ctx.settings.irsa_oidc_provider_arn else {
            return Ok(Err(Report::failed(
                WORKER_READY,
                IRSA_NOT_CONFIGURED,
                "the gateway asks for a per-namespace IRSA role, but the operator has no --irsa-oidc-provider-arn (chart value aws.irsaOidcProviderArn)",
            )));
        };
        let ns = Api::<Namespace>::all(ctx.client.clone())
            .get(namespace)
            .await?;
        let spec = NamespaceRoleSpec {
            name: names::namespace_role(&ctx.settings.name_prefix, namespace),
            namespace: namespace.to_owned(),
            service_account: identity.service_account_name.clone(),
            oidc_provider_arn: provider.clone(),
            region: ctx.settings.region.clone(),
            queue_prefix: ctx.settings.name_prefix.clone(),
            owner: namespace_owner(&ns)?,
        };
        match ctx.aws.roles.ensure_namespace_role(&spec).await {
            Ok(arn) => Some(arn),
            Err(e) => {
                let reason = if matches!(e, AwsError::NotOwned { .. }) {
                    NOT_OWNED
                } else {
                    AWS_ERROR
                };
                return Ok(Err(Report::failed(
                    WORKER_READY,
                    reason,
                    format!("worker role of namespace {namespace}: {e}"),
                )));
            }
        }
    } else {
        None
    };
    let account = desired::worker_service_account(webhook, gateway, role_arn.as_deref());
    let name = desired::worker_service_account_name(webhook, gateway);
    let manager = if desired::shares_service_account(gateway) {
        desired::shared_service_account_manager(webhook)
    } else {
        MANAGER.to_owned()
    };
    Api::<ServiceAccount>::namespaced(ctx.client.clone(), namespace)
        .patch(
            &name,
            &PatchParams::apply(&manager).force(),
            &Patch::Apply(&account),
        )
        .await?;
    Ok(Ok(name))
}

/// On deletion, after the queues are gone: gives up this Webhook's share of any
/// shared worker ServiceAccount that other Webhooks still use, and
/// deletes the namespace's IRSA role when this is the namespace's last Webhook.
pub async fn release(ctx: &Context, webhook: &Webhook, namespace: &str) -> Result<()> {
    release_shared_service_accounts(ctx, webhook, namespace).await?;
    if ctx.settings.irsa_oidc_provider_arn.is_some() {
        release_namespace_role(ctx, webhook, namespace).await?;
    }
    Ok(())
}

/// A shared ServiceAccount is deleted by Kubernetes' garbage collector once every
/// Webhook owning it is gone, which needs no delete permission on ServiceAccounts.
/// While others still own it, this Webhook's owner reference and managed fields are
/// removed now, so a long-lived account does not collect an entry per Webhook that
/// ever used it.
async fn release_shared_service_accounts(
    ctx: &Context,
    webhook: &Webhook,
    namespace: &str,
) -> Result<()> {
    let uid = webhook.meta().uid.clone().ok_or(Error::Malformed("uid"))?;
    let accounts = Api::<ServiceAccount>::namespaced(ctx.client.clone(), namespace);
    let listed = accounts
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=hookline"))
        .await?;
    for account in listed {
        let owners = account.owner_references();
        let ours = owners
            .iter()
            .any(|o| o.uid == uid && o.controller != Some(true));
        if !ours || owners.len() < 2 {
            continue;
        }
        let name = account.name_any();
        // Applying nothing under this Webhook's manager drops what only it set.
        let nothing = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace},
        });
        accounts
            .patch(
                &name,
                &PatchParams::apply(&desired::shared_service_account_manager(webhook)).force(),
                &Patch::Apply(&nothing),
            )
            .await?;
    }
    Ok(())
}

/// The role goes with the namespace's last Webhook. When the others are all being
/// deleted too, the one with the smallest name waits for them and deletes it, so two
/// that go together neither both keep it nor take it from a worker still draining.
async fn release_namespace_role(ctx: &Context, webhook: &Webhook, namespace: &str) -> Result<()> {
    let me = webhook.name_any();
    let others: Vec<Webhook> = Api::<Webhook>::namespaced(ctx.client.clone(), namespace)
        .list(&ListParams::default())
        .await?
        .into_iter()
        .filter(|w| w.name_any() != me)
        .collect();
    match last_in_namespace(&me, &others) {
        Last::No => return Ok(()),
        Last::AfterOthers => {
            return Err(Error::Blocked(format!(
                "{namespace}/{me} deletes the namespace's worker role once the other Webhooks being deleted are gone"
            )));
        }
        Last::Yes => {}
    }
    let Some(ns) = Api::<Namespace>::all(ctx.client.clone())
        .get_opt(namespace)
        .await?
    else {
        return Ok(());
    };
    let name = names::namespace_role(&ctx.settings.name_prefix, namespace);
    match ctx
        .aws
        .roles
        .delete_namespace_role(&name, &namespace_owner(&ns)?)
        .await
    {
        Ok(()) => Ok(()),
        // Someone else's role of our name: never ours to delete.
        Err(e @ AwsError::NotOwned { .. }) => {
            tracing::warn!(role = %name, error = %e, "left an IAM role that is not ours");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether a Webhook being deleted is its namespace's last.
#[derive(Debug, PartialEq, Eq)]
enum Last {
    /// Another Webhook stays.
    No,
    /// The others are being deleted too; this one goes after them.
    AfterOthers,
    /// No other Webhook is left, or this one is not the one that waits.
    Yes,
}

fn last_in_namespace(me: &str, others: &[Webhook]) -> Last {
    if others.is_empty() {
        return Last::Yes;
    }
    if others.iter().any(|w| w.meta().deletion_timestamp.is_none()) {
        return Last::No;
    }
    if others.iter().all(|w| me < w.name_any().as_str()) {
        Last::AfterOthers
    } else {
        Last::No
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn webhook(name: &str, deleting: bool) -> Webhook {
        let mut w: Webhook = serde_json::from_value(serde_json::json!({
            "apiVersion": "hookline.dev/v1alpha1",
            "kind": "Webhook",
            "metadata": {"name": name, "namespace": "team"},
            "spec": {"path": format!("/{name}"), "worker": {"template": {"spec": {"containers": [{"name": "h", "image": "h"}]}}}},
        }))
        .unwrap();
        if deleting {
            w.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        }
        w
    }

    #[test]
    fn the_role_goes_with_the_last_webhook_and_once() {
        assert_eq!(last_in_namespace("a", &[]), Last::Yes);
        assert_eq!(last_in_namespace("a", &[webhook("b", false)]), Last::No);
        // Two deleted together: the smaller name waits and deletes, the other leaves it.
        assert_eq!(
            last_in_namespace("a", &[webhook("b", true)]),
            Last::AfterOthers
        );
        assert_eq!(last_in_namespace("b", &[webhook("a", true)]), Last::No);
        assert_eq!(
            last_in_namespace("b", &[webhook("a", true), webhook("c", false)]),
            Last::No
        );
    }
}
