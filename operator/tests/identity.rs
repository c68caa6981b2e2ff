//! One AWS identity per team, on the bench (real API server + MiniStack): a gateway
//! with `workerIdentity: {serviceAccount: PerNamespace, irsaRolePerNamespace: true}`
//! gives a namespace's Webhooks one worker ServiceAccount, owned by each of them, with
//! the IRSA role the operator made for that namespace (trust from the cluster's OIDC
//! provider, the namespace's queues only). The role outlives the first Webhook's
//! deletion and goes with the last. KEDA's TriggerAuthentication is written as the
//! gateway asks, against KEDA's own CRD schema. An operator without the OIDC provider
//! reports `IrsaNotConfigured`.
//!
//! Its own test binary, so its operator is the only one on its API server. The bench
//! has no garbage collector (no kube-controller-manager): the test checks the owner
//! references the collector acts on, not the collection.

mod common;

use anyhow::{Context as _, Result};
use common::Operator;
use hookline_crds::Webhook;
use hookline_operator::aws::{AwsClients, RateLimits, RetryPolicy};
use hookline_operator::controller::context::Context;
use hookline_operator::desired::Settings;
use hookline_operator::names;
use hookline_tests::Bench;
use hookline_tests::util::wait_for;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde_json::json;
use std::time::Duration;

fn webhook(name: &str, gateway: &str, engine: &str) -> Result<Webhook> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "hookline.dev/v1alpha1",
        "kind": "Webhook",
        "metadata": {"name": name},
        "spec": {
            "gatewayRef": {"name": gateway},
            "path": format!("/{name}"),
            "signature": {"preset": "Stripe", "secretRef": {"name": "stripe-webhook"}},
            "worker": {
                "template": {"spec": {"containers": [{"name": "handler", "image": "handler:1"}]}},
                "scaling": {"engine": engine}
            }
        }
    }))?)
}

async fn install_keda_crds(client: &kube::Client) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (name, crd) in [
        (
            "scaledobjects.keda.sh",
            hookline_tests::keda_scaled_object_crd()?,
        ),
        (
            "triggerauthentications.keda.sh",
            hookline_tests::keda_trigger_authentication_crd()?,
        ),
    ] {
        crds.patch(
            name,
            &PatchParams::apply("hookline-test").force(),
            &Patch::Apply(&crd),
        )
        .await?;
        tokio::time::timeout(
            Duration::from_secs(30),
            kube::runtime::wait::await_condition(
                crds.clone(),
                name,
                kube::runtime::wait::conditions::is_crd_established(),
            ),
        )
        .await??;
    }
    Ok(())
}

fn decoded(document: &str) -> Result<serde_json::Value> {
    let text = percent_encoding::percent_decode_str(document).decode_utf8()?;
    Ok(serde_json::from_str(&text)?)
}

#[tokio::test]
async fn a_namespace_shares_one_service_account_and_one_irsa_role() -> Result<()> {
    let bench = Bench::shared().await?;
    let client = bench.kube.client().await?;
    let clients = AwsClients::new(
        &bench.aws.sdk_config().await,
        &RateLimits::unlimited(),
        RetryPolicy::default(),
    );
    let id = std::process::id();
    let prefix = format!("id{id}");
    let issuer = format!("oidc.eks.us-east-1.amazonaws.com/id/ID{id}");
    let provider = clients
        .iam
        .create_open_id_connect_provider()
        .url(format!("https://{issuer}"))
        .client_id_list("sts.amazonaws.com")
        .thumbprint_list("9e99a48a9960b14926bb7f3b02e22da2b0ab7280")
        .send()
        .await?
        .open_id_connect_provider_arn
        .context("no provider ARN")?;
    let settings = Settings {
        irsa_oidc_provider_arn: Some(provider.clone()),
        ..common::settings(bench.aws.endpoint(), &prefix)
    };
    let timing = common::fast_timing(Duration::from_secs(2));
    let ctx = Context::new(
        client.clone(),
        &clients,
        settings,
        timing,
        "bench".to_owned(),
        Vec::new(),
    );
    install_keda_crds(&client).await?;
    let zone = format!("id{id}.example.com");
    common::hosted_zone(&clients, &zone).await?;
    let gw_name = format!("teams-{id}");
    common::create_gateway(
        &client,
        &gw_name,
        &zone,
        json!({"workerIdentity": {
            "serviceAccount": "PerNamespace",
            "irsaRolePerNamespace": true,
            "keda": "Workload"
        }}),
    )
    .await?;
    let ns = bench.kube.namespace(&client, "team").await?;
    let namespace_uid = Api::<Namespace>::all(client.clone())
        .get(&ns)
        .await?
        .metadata
        .uid
        .context("namespace uid")?;
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "stripe-webhook"}, "stringData": {"secret": "whsec_test"}}),
    )?;
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &secret)
        .await?;
    let webhooks: Api<Webhook> = Api::namespaced(client.clone(), &ns);
    for (name, engine) in [("orders", "Keda"), ("refunds", "Builtin")] {
        webhooks
            .create(&PostParams::default(), &webhook(name, &gw_name, engine)?)
            .await?;
    }
    let operator = Operator::start(ctx.clone());

    // One ServiceAccount for both, owned by each, with the namespace's role.
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let owners = |account: &ServiceAccount| -> Vec<String> {
        let mut names: Vec<String> = account
            .metadata
            .owner_references
            .iter()
            .flatten()
            .map(|o| o.name.clone())
            .collect();
        names.sort();
        names
    };
    wait_for(
        "the shared ServiceAccount owned by both Webhooks",
        Duration::from_secs(90),
        || async {
            Ok(accounts
                .get_opt("hookline-worker")
                .await?
                .is_some_and(|a| owners(&a) == ["orders", "refunds"]))
        },
    )
    .await?;
    let account = accounts.get("hookline-worker").await?;
    assert!(
        account
            .metadata
            .owner_references
            .iter()
            .flatten()
            .all(|o| o.controller != Some(true)),
        "no Webhook is the shared account's controller"
    );
    let role_name = names::namespace_role(&prefix, &ns);
    let role_arn = account
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("eks.amazonaws.com/role-arn"))
        .context("no IRSA annotation on the shared ServiceAccount")?
        .clone();
    assert!(
        role_arn.ends_with(&format!(":role/hookline/{role_name}")),
        "{role_arn}"
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    for name in ["orders-worker", "refunds-worker"] {
        wait_for("the worker Deployment", Duration::from_secs(30), || async {
            Ok(deployments.get_opt(name).await?.is_some())
        })
        .await?;
        let pod = deployments
            .get(name)
            .await?
            .spec
            .template
            .spec
            .context("pod spec")?;
        assert_eq!(
            pod.service_account_name.as_deref(),
            Some("hookline-worker"),
            "{name}"
        );
    }

    // The role: owned by the namespace, trusted by that namespace's account only, and
    // allowed that namespace's queues only.
    let role = clients
        .iam
        .get_role()
        .role_name(&role_name)
        .send()
        .await?
        .role
        .context("no role")?;
    assert_eq!(role.arn, role_arn);
    let tags = role.tags.clone().unwrap_or_default();
    assert!(
        tags.iter()
            .any(|t| t.key == "hookline.dev/owner" && t.value == namespace_uid),
        "{tags:?}"
    );
    let trust = decoded(
        role.assume_role_policy_document
            .as_deref()
            .unwrap_or_default(),
    )?;
    assert_eq!(trust["Statement"][0]["Principal"]["Federated"], provider);
    assert_eq!(
        trust["Statement"][0]["Condition"]["StringEquals"][format!("{issuer}:sub")],
        format!("system:serviceaccount:{ns}:hookline-worker")
    );
    let policy = clients
        .iam
        .get_role_policy()
        .role_name(&role_name)
        .policy_name("hookline-drain-namespace-queues")
        .send()
        .await?;
    let policy = decoded(&policy.policy_document)?;
    assert_eq!(
        policy["Statement"][0]["Condition"]["StringLike"]["aws:ResourceTag/hookline.dev/resource"],
        format!("Webhook {ns}/*")
    );

    // KEDA reads the queue as the workload, i.e. with the role in that annotation.
    let authentications = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        &ns,
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "keda.sh",
            "v1alpha1",
            "TriggerAuthentication",
        )),
    );
    wait_for(
        "the TriggerAuthentication",
        Duration::from_secs(30),
        || async { Ok(authentications.get_opt("orders-worker").await?.is_some()) },
    )
    .await?;
    let authentication = authentications.get("orders-worker").await?;
    assert_eq!(
        authentication.data["spec"]["podIdentity"],
        json!({"provider": "aws", "identityOwner": "workload"})
    );

    // The first Webhook goes: its share of the account goes, the role stays.
    webhooks.delete("refunds", &DeleteParams::default()).await?;
    wait_for("refunds deleted", Duration::from_secs(60), || async {
        Ok(webhooks.get_opt("refunds").await?.is_none())
    })
    .await?;
    assert_eq!(owners(&accounts.get("hookline-worker").await?), ["orders"]);
    assert!(
        clients
            .iam
            .get_role()
            .role_name(&role_name)
            .send()
            .await
            .is_ok(),
        "the role stays while a Webhook of the namespace is left"
    );

    // The last one goes: so does the role. The account's only owner reference is the
    // deleted Webhook's, on which the garbage collector deletes it.
    webhooks.delete("orders", &DeleteParams::default()).await?;
    wait_for("orders deleted", Duration::from_secs(60), || async {
        Ok(webhooks.get_opt("orders").await?.is_none())
    })
    .await?;
    let gone = clients.iam.get_role().role_name(&role_name).send().await;
    assert!(
        gone.as_ref()
            .is_err_and(|e| format!("{e:?}").contains("NoSuchEntity")),
        "the namespace's role is deleted with its last Webhook: {gone:?}"
    );
    assert_eq!(owners(&accounts.get("hookline-worker").await?), ["orders"]);
    operator.stop().await;

    // An operator started without the OIDC provider says why it makes no role.
    let mut settings = ctx.settings.clone();
    settings.irsa_oidc_provider_arn = None;
    let unconfigured = Context::new(
        client.clone(),
        &clients,
        settings,
        timing,
        "bench".to_owned(),
        Vec::new(),
    );
    let operator = Operator::start(unconfigured);
    let other = bench.kube.namespace(&client, "team").await?;
    Api::<Secret>::namespaced(client.clone(), &other)
        .create(&PostParams::default(), &secret)
        .await?;
    let webhooks: Api<Webhook> = Api::namespaced(client.clone(), &other);
    webhooks
        .create(
            &PostParams::default(),
            &webhook("invoices", &gw_name, "Builtin")?,
        )
        .await?;
    wait_for(
        "WorkerReady=False IrsaNotConfigured",
        Duration::from_secs(60),
        || async {
            let status = webhooks.get("invoices").await?.status.unwrap_or_default();
            Ok(status
                .conditions
                .iter()
                .any(|c| c.type_ == "WorkerReady" && c.reason == "IrsaNotConfigured"))
        },
    )
    .await?;
    assert!(
        Api::<ServiceAccount>::namespaced(client.clone(), &other)
            .get_opt("hookline-worker")
            .await?
            .is_none(),
        "no ServiceAccount without its role"
    );
    webhooks
        .delete("invoices", &DeleteParams::default())
        .await?;
    wait_for("invoices deleted", Duration::from_secs(60), || async {
        Ok(webhooks.get_opt("invoices").await?.is_none())
    })
    .await?;
    operator.stop().await;
    Ok(())
}
