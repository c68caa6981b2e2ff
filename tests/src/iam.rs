//! IAM identities for tests on an emulator that enforces IAM (MiniStack with
//! [`crate::aws::Options::enforce_iam`]): a user whose only permission is one of the
//! chart's policies, rendered the way the chart's README tells an operator to.

use anyhow::{Context, Result, bail};
use aws_sdk_sqs::config::Credentials;

use crate::{Emulator, EmulatorKind};

/// The values a reader substitutes into the chart's `files/*-iam-policy.json`
/// (charts/hookline/README.md, "The operator's AWS identity").
#[derive(Debug, Clone)]
pub struct PolicyValues {
    /// `REGION`.
    pub region: String,
    /// `ACCOUNT`.
    pub account: String,
    /// `PREFIX`: the operator's `--name-prefix`.
    pub prefix: String,
    /// `ZONE_ID`: the hosted zone the gateways write to.
    pub zone_id: String,
    /// `NAMESPACE` (the worker policy): the Webhook's namespace.
    pub namespace: String,
}

/// `charts/hookline/files/<file>` with its placeholders replaced. Read at test time,
/// so a change to the chart's policy is what the enforced tests run with.
pub fn chart_policy(file: &str, values: &PolicyValues) -> Result<serde_json::Value> {
    let path = crate::repo_root().join("charts/hookline/files").join(file);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    // The bench's emulators are in the `aws` partition.
    let rendered = text
        .replace("PARTITION", "aws")
        .replace("REGION", &values.region)
        .replace("ACCOUNT", &values.account)
        .replace("ZONE_ID", &values.zone_id)
        .replace("PREFIX", &values.prefix)
        .replace("NAMESPACE", &values.namespace);
    serde_json::from_str(&rendered).with_context(|| format!("parsing rendered {}", path.display()))
}

/// The policy without the statement whose `Sid` is `sid`, to show that the
/// statement is needed (a test that removes nothing cannot fail).
pub fn without_statement(policy: &serde_json::Value, sid: &str) -> Result<serde_json::Value> {
    let mut policy = policy.clone();
    let statements = policy["Statement"]
        .as_array_mut()
        .context("policy has no Statement list")?;
    let before = statements.len();
    statements.retain(|s| s["Sid"] != sid);
    if statements.len() == before {
        bail!("policy has no statement {sid}");
    }
    Ok(policy)
}

/// Services whose resources' tags MiniStack 1.5.33 does not look up for an
/// `aws:ResourceTag/…` condition (`ministack/services/tagging.py` collects them for
/// DynamoDB, IAM, IoT, KMS, Lambda, Secrets Manager, SNS, SQS, SSM, and Logs on its
/// own), so such a condition never matches there.
const MINISTACK_UNTAGGED: [&str; 3] = ["acm:", "apigateway:", "route53:"];

/// `policy` adapted to where `kind` evaluates differently from AWS
/// (docs/emulators.md), for MiniStack:
/// - it evaluates role actions (`iam:GetRole`, …) against `role/NAME` without the
///   role's path, where AWS uses the role's ARN, `role/PATH/NAME`: each
///   `role/hookline/…` resource is also granted path-less;
/// - it has no resource tags for ACM (and API Gateway, Route 53) certificates in an
///   `aws:ResourceTag` condition, which AWS documents for `acm:DeleteCertificate`:
///   such a condition is dropped from a statement on those services only.
///
/// Nothing else is widened, and the chart's file is what AWS gets.
pub fn as_evaluated_by(kind: EmulatorKind, policy: &serde_json::Value) -> serde_json::Value {
    let mut policy = policy.clone();
    if kind != EmulatorKind::MiniStack {
        return policy;
    }
    let Some(statements) = policy["Statement"].as_array_mut() else {
        return policy;
    };
    for statement in statements {
        let actions: Vec<&str> = match &statement["Action"] {
            serde_json::Value::String(one) => vec![one.as_str()],
            serde_json::Value::Array(many) => many.iter().filter_map(|a| a.as_str()).collect(),
            _ => Vec::new(),
        };
        let untagged = !actions.is_empty()
            && actions
                .iter()
                .all(|a| MINISTACK_UNTAGGED.iter().any(|s| a.starts_with(s)));
        if untagged
            && statement["Condition"]
                .to_string()
                .contains("aws:ResourceTag/")
            && let Some(fields) = statement.as_object_mut()
        {
            fields.remove("Condition");
        }
        let resources: Vec<String> = match &statement["Resource"] {
            serde_json::Value::String(one) => vec![one.clone()],
            serde_json::Value::Array(many) => many
                .iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect(),
            _ => continue,
        };
        let pathless: Vec<String> = resources
            .iter()
            .filter(|r| r.contains(":role/hookline/"))
            .map(|r| r.replace(":role/hookline/", ":role/"))
            .collect();
        if !pathless.is_empty() {
            statement["Resource"] = resources.into_iter().chain(pathless).collect();
        }
    }
    policy
}

/// Creates IAM user `name` on `emulator` (as the account's root, the bench's `test`
/// keys) with `policy` as its only (inline) policy, and returns its access key.
pub async fn user_with_policy(
    emulator: &Emulator,
    name: &str,
    policy: &serde_json::Value,
) -> Result<Credentials> {
    let iam = aws_sdk_iam::Client::new(&emulator.sdk_config().await);
    iam.create_user()
        .user_name(name)
        .send()
        .await
        .with_context(|| format!("creating IAM user {name}"))?;
    iam.put_user_policy()
        .user_name(name)
        .policy_name("only")
        .policy_document(policy.to_string())
        .send()
        .await
        .with_context(|| format!("putting the policy of IAM user {name}"))?;
    let key = iam
        .create_access_key()
        .user_name(name)
        .send()
        .await
        .with_context(|| format!("creating an access key for IAM user {name}"))?
        .access_key
        .context("CreateAccessKey returned no key")?;
    Ok(Credentials::new(
        key.access_key_id,
        key.secret_access_key,
        None,
        None,
        "hookline-bench-iam-user",
    ))
}
