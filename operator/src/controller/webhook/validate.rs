//! Step 2 of a Webhook reconcile (pure): what the schema cannot check, from what
//! [`super::observe`] read: the gateway exists and admits the namespace, the Secrets
//! are readable and hold their keys, the pod template leaves the worker's name free,
//! and the gateway index gives this Webhook its path within the quotas. An invalid
//! spec gets no AWS call.

use hookline_crds::conditions::{ROUTE_READY, WORKER_READY};
use hookline_crds::reasons::{
    GATEWAY_NOT_FOUND, INVALID_SPEC, NAMESPACE_NOT_ALLOWED, PATH_CONFLICT, SECRET_FORBIDDEN,
    SECRET_NOT_FOUND,
};
use std::collections::BTreeMap;

use hookline_crds::{Webhook, WebhookGateway};
use k8s_openapi::ByteString;
use kube::ResourceExt;

use super::super::index::{self, Admission, GatewayIndex};
use super::super::selector;
use super::observe::{Observed, SecretRead};
use crate::aws::templates::{Handshake, handshake_template};
use crate::conditions::Report;
use crate::desired;
use crate::quotas::Quotas;

/// A spec the pass can build: the gateway it attaches to.
#[derive(Debug, Clone)]
pub struct Valid {
    /// The gateway, as observed.
    pub gateway: WebhookGateway,
}

/// Why the spec cannot be honoured: the part's condition, False.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub Report);

fn invalid(part: &'static str, reason: &'static str, message: impl Into<String>) -> Invalid {
    Invalid(Report::failed(part, reason, message))
}

/// Checks `webhook` against what was observed, in the order a human would fix things.
pub fn validate(webhook: &Webhook, observed: &Observed, quotas: &Quotas) -> Result<Valid, Invalid> {
    let namespace = webhook.namespace().unwrap_or_default();
    let gateway = observed
        .gateway
        .as_ref()
        .map_err(|message| invalid(ROUTE_READY, GATEWAY_NOT_FOUND, message.clone()))?;
    if let Some(labels) = &observed.namespace_labels {
        let selector = gateway
            .spec
            .allowed_namespaces
            .selector
            .clone()
            .unwrap_or_default();
        if !selector::matches(&selector, labels) {
            return Err(invalid(
                ROUTE_READY,
                NAMESPACE_NOT_ALLOWED,
                format!(
                    "WebhookGateway {} does not allow namespace {namespace} (allowedNamespaces.selector)",
                    gateway.name_any()
                ),
            ));
        }
    }
    // Only readability for the API key: a missing API key Secret is created later.
    if let (Some(api_key), Some(SecretRead::Forbidden)) =
        (&webhook.spec.auth.api_key, &observed.api_key_secret)
    {
        return Err(forbidden(ROUTE_READY, &namespace, &api_key.secret_ref.name));
    }
    if let (Some(signature), Some(read)) = (&webhook.spec.signature, &observed.signature_secret) {
        let used = SecretUse {
            part: WORKER_READY,
            field: "signature.secretRef",
            name: &signature.secret_ref.name,
        };
        let data = used.data(&namespace, read)?;
        // No keys listed means every key of the Secret: it needs at least one.
        if signature.secret_ref.keys.is_empty() && data.is_empty() {
            return Err(used.refused(format!("Secret {} has no keys", used.name)));
        }
        used.holds(data, &signature.secret_ref.keys)?;
    }
    if let (Some(reference), Some(read)) = (
        webhook
            .spec
            .handshake
            .as_ref()
            .and_then(|h| h.verify_token_secret_ref.as_ref()),
        &observed.handshake_secret,
    ) {
        let used = SecretUse {
            part: ROUTE_READY,
            field: "handshake.verifyTokenSecretRef",
            name: &reference.name,
        };
        let data = used.data(&namespace, read)?;
        used.holds(data, std::slice::from_ref(&reference.key))?;
        if let Some(token) = data.get(&reference.key)
            && let Err(e) = handshake_template(&Handshake::Meta {
                verify_token: desired::verify_token(token),
            })
        {
            return Err(invalid(
                ROUTE_READY,
                INVALID_SPEC,
                format!("Secret {} key {:?}: {e}", used.name, reference.key),
            ));
        }
    }
    if desired::worker_has_reserved_container(webhook) {
        return Err(invalid(
            WORKER_READY,
            INVALID_SPEC,
            format!(
                "the pod template may not contain a container named {}",
                desired::WORKER_CONTAINER
            ),
        ));
    }
    admission(webhook, gateway, observed, quotas)?;
    Ok(Valid {
        gateway: gateway.clone(),
    })
}

/// A Secret the spec names at `field`, whose faults are reported on `part`: the
/// condition of what needs it (the worker verifies signatures; the route serves the API
/// key and the handshake).
struct SecretUse<'a> {
    part: &'static str,
    field: &'static str,
    name: &'a str,
}

impl SecretUse<'_> {
    fn refused(&self, message: String) -> Invalid {
        invalid(
            self.part,
            SECRET_NOT_FOUND,
            format!("{message} ({})", self.field),
        )
    }

    /// The Secret's data, or why there is none.
    fn data<'r>(
        &self,
        namespace: &str,
        read: &'r SecretRead,
    ) -> Result<&'r BTreeMap<String, ByteString>, Invalid> {
        match read {
            SecretRead::Found(data) => Ok(data),
            SecretRead::Forbidden => Err(forbidden(self.part, namespace, self.name)),
            SecretRead::Missing => {
                Err(self.refused(format!("Secret {} does not exist", self.name)))
            }
        }
    }

    /// Refuses unless `data` holds every key of `keys`.
    fn holds(&self, data: &BTreeMap<String, ByteString>, keys: &[String]) -> Result<(), Invalid> {
        let missing: Vec<&String> = keys.iter().filter(|k| !data.contains_key(*k)).collect();
        match missing.as_slice() {
            [] => Ok(()),
            [key] => Err(self.refused(format!("Secret {} has no key {key:?}", self.name))),
            _ => Err(self.refused(format!("Secret {} has no keys {missing:?}", self.name))),
        }
    }
}

fn forbidden(part: &'static str, namespace: &str, name: &str) -> Invalid {
    invalid(
        part,
        SECRET_FORBIDDEN,
        format!(
            "the operator may not read Secret {name} in namespace {namespace}; grant it \
             access to this namespace's Secrets (RoleBinding to the ClusterRole \
             hookline-secrets, see the chart's rbac.secretNamespaces)"
        ),
    )
}

/// Path ownership and quotas: the gateway index's decisions.
fn admission(
    webhook: &Webhook,
    gateway: &WebhookGateway,
    observed: &Observed,
    quotas: &Quotas,
) -> Result<(), Invalid> {
    let gateway_name = gateway.name_any();
    let attached = index::attachments(
        observed.webhooks.iter().map(|w| &**w),
        Some((&gateway_name, webhook)),
    );
    match GatewayIndex::build(&gateway_name, &attached, quotas).admission(webhook) {
        Admission::Admitted => Ok(()),
        Admission::PathTaken { owner } => Err(invalid(
            ROUTE_READY,
            PATH_CONFLICT,
            format!(
                "Webhook {owner} already serves {} on gateway {gateway_name}",
                webhook.spec.path
            ),
        )),
        Admission::Refused(refusal) => Err(invalid(ROUTE_READY, refusal.reason, refusal.message)),
        // The index attaches the Webhook it is asked about; only a Webhook without a
        // uid (never stored by the API server) is left out.
        Admission::NotAttached => Err(invalid(ROUTE_READY, INVALID_SPEC, "the Webhook has no uid")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(spec: serde_json::Value) -> Webhook {
        let mut base = serde_json::json!({
            "path": "/w",
            "gatewayRef": {"name": "gw"},
            "worker": {"template": {"spec": {"containers": [{"name": "h", "image": "h"}]}}}
        });
        if let (Some(base), serde_json::Value::Object(extra)) = (base.as_object_mut(), spec) {
            base.extend(extra);
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "hookline.dev/v1alpha1",
            "kind": "Webhook",
            "metadata": {"name": "w", "namespace": "n", "uid": "u1",
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": base,
        }))
        .expect("a valid Webhook")
    }

    fn gateway(allowed: serde_json::Value) -> WebhookGateway {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "hookline.dev/v1alpha1",
            "kind": "WebhookGateway",
            "metadata": {"name": "gw", "uid": "g1"},
            "spec": {"hostname": "hooks.example.com", "hostedZone": {"name": "example.com"},
                     "allowedNamespaces": allowed},
        }))
        .expect("a valid WebhookGateway")
    }

    fn observed(gateway: Result<WebhookGateway, String>) -> Observed {
        Observed {
            gateway,
            namespace_labels: None,
            api_key_secret: None,
            signature_secret: None,
            handshake_secret: None,
            webhooks: Vec::new(),
            keda_installed: false,
        }
    }

    fn secret(keys: &[&str]) -> SecretRead {
        SecretRead::Found(
            keys.iter()
                .map(|k| ((*k).to_owned(), ByteString(b"v".to_vec())))
                .collect(),
        )
    }

    fn reason(result: &Result<Valid, Invalid>) -> Option<(&'static str, String)> {
        result
            .as_ref()
            .err()
            .map(|Invalid(r)| (r.type_, r.reason.clone()))
    }

    #[test]
    fn each_refusal_names_its_part_and_reason() {
        let all = serde_json::json!({"from": "All"});
        let signed = webhook(serde_json::json!({
            "signature": {"preset": "Stripe", "secretRef": {"name": "s", "keys": ["k"]}}
        }));
        let keyed = webhook(serde_json::json!({
            "auth": {"type": "ApiKey", "apiKey": {"secretRef": {"name": "key", "key": "k"}}}
        }));
        let meta = webhook(serde_json::json!({
            "handshake": {"type": "Meta", "verifyTokenSecretRef": {"name": "hs", "key": "t"}}
        }));
        let selected =
            serde_json::json!({"from": "Selector", "selector": {"matchLabels": {"team": "a"}}});
        let with = |f: &dyn Fn(&mut Observed)| {
            let mut o = observed(Ok(gateway(all.clone())));
            f(&mut o);
            o
        };
        type Case<'a> = (&'a str, Webhook, Observed, Option<(&'a str, &'a str)>);
        let cases: Vec<Case<'_>> = vec![
            (
                "no gateway",
                webhook(serde_json::json!({})),
                observed(Err("gone".to_owned())),
                Some((ROUTE_READY, GATEWAY_NOT_FOUND)),
            ),
            (
                "admitted",
                webhook(serde_json::json!({})),
                with(&|_| {}),
                None,
            ),
            (
                "namespace not selected",
                webhook(serde_json::json!({})),
                Observed {
                    namespace_labels: Some([("team".to_owned(), "b".to_owned())].into()),
                    ..observed(Ok(gateway(selected.clone())))
                },
                Some((ROUTE_READY, NAMESPACE_NOT_ALLOWED)),
            ),
            (
                "API key Secret unreadable",
                keyed.clone(),
                with(&|o| o.api_key_secret = Some(SecretRead::Forbidden)),
                Some((ROUTE_READY, SECRET_FORBIDDEN)),
            ),
            (
                "API key Secret missing: made later",
                keyed,
                with(&|o| o.api_key_secret = Some(SecretRead::Missing)),
                None,
            ),
            (
                "handshake Secret missing",
                meta.clone(),
                with(&|o| o.handshake_secret = Some(SecretRead::Missing)),
                Some((ROUTE_READY, SECRET_NOT_FOUND)),
            ),
            (
                "handshake key missing",
                meta.clone(),
                with(&|o| o.handshake_secret = Some(secret(&["other"]))),
                Some((ROUTE_READY, SECRET_NOT_FOUND)),
            ),
            (
                "handshake Secret unreadable",
                meta.clone(),
                with(&|o| o.handshake_secret = Some(SecretRead::Forbidden)),
                Some((ROUTE_READY, SECRET_FORBIDDEN)),
            ),
            (
                "handshake token with a line break inside",
                meta.clone(),
                with(&|o| {
                    o.handshake_secret = Some(SecretRead::Found(
                        [("t".to_owned(), ByteString(b"a\nb".to_vec()))].into(),
                    ));
                }),
                Some((ROUTE_READY, INVALID_SPEC)),
            ),
            (
                "handshake token readable",
                meta,
                with(&|o| o.handshake_secret = Some(secret(&["t"]))),
                None,
            ),
            (
                "signature Secret missing",
                signed.clone(),
                with(&|o| o.signature_secret = Some(SecretRead::Missing)),
                Some((WORKER_READY, SECRET_NOT_FOUND)),
            ),
            (
                "signature key missing",
                signed.clone(),
                with(&|o| o.signature_secret = Some(secret(&["other"]))),
                Some((WORKER_READY, SECRET_NOT_FOUND)),
            ),
            (
                "signature Secret unreadable",
                signed.clone(),
                with(&|o| o.signature_secret = Some(SecretRead::Forbidden)),
                Some((WORKER_READY, SECRET_FORBIDDEN)),
            ),
            (
                "signature key present",
                signed,
                with(&|o| o.signature_secret = Some(secret(&["k"]))),
                None,
            ),
        ];
        for (name, webhook, observed, expected) in cases {
            let got = validate(&webhook, &observed, &Quotas::default());
            let got = reason(&got);
            assert_eq!(
                got.as_ref().map(|(t, r)| (*t, r.as_str())),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn an_older_webhook_keeps_its_path() {
        let mut older = webhook(serde_json::json!({}));
        older.metadata.name = Some("older".to_owned());
        older.metadata.uid = Some("u0".to_owned());
        older.metadata.creation_timestamp = Some(
            serde_json::from_value(serde_json::json!("2025-01-01T00:00:00Z")).expect("a timestamp"),
        );
        older.status = Some(hookline_crds::WebhookStatus {
            gateway: Some("gw".to_owned()),
            ..Default::default()
        });
        let observed = Observed {
            webhooks: vec![older.into()],
            ..observed(Ok(gateway(serde_json::json!({"from": "All"}))))
        };
        let got = validate(
            &webhook(serde_json::json!({})),
            &observed,
            &Quotas::default(),
        );
        assert_eq!(
            reason(&got),
            Some((ROUTE_READY, PATH_CONFLICT.to_owned())),
            "{got:?}"
        );
    }
}
