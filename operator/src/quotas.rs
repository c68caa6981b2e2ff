//! AWS quotas checked before AWS refuses (pure): which Webhooks fit a gateway's
//! REST API (resources, authorizers, resource policy size) and the account (usage
//! plans). When they do not all fit, the oldest Webhooks (by creation time, then
//! namespace and name) keep their routes and the others are told which quota they
//! would exceed and how to raise it; nothing is half-created on AWS's refusal.

use hookline_crds::reasons::{
    AUTHORIZERS_PER_API_QUOTA, RESOURCE_POLICY_SIZE_QUOTA, RESOURCES_PER_API_QUOTA,
    USAGE_PLANS_QUOTA,
};
use hookline_crds::{AuthMode, Webhook};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::{BTreeMap, BTreeSet};

use crate::aws::rest_apis::source_ip_policy;

/// The quotas, as the operator's settings give them (AWS's defaults unless raised).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Resources per REST API; every path segment, and `/`, is one.
    pub resources_per_api: usize,
    /// Authorizers per REST API.
    pub authorizers_per_api: usize,
    /// Characters of a REST API's resource policy.
    pub resource_policy_chars: usize,
    /// Usage plans per account and region.
    pub usage_plans: usize,
}

impl Default for Quotas {
    /// AWS's defaults (API Gateway developer guide, "Amazon API Gateway quotas").
    fn default() -> Self {
        Self {
            resources_per_api: 300,
            authorizers_per_api: 10,
            resource_policy_chars: 8192,
            usage_plans: 300,
        }
    }
}

/// Why a Webhook does not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// A condition reason naming the quota.
    pub reason: &'static str,
    /// What would be exceeded, and how to raise it.
    pub message: String,
}

/// What AWS adds to each statement's `execute-api:/` shorthand when it stores the
/// policy (`arn:aws-us-gov:execute-api:ap-southeast-2:123456789012:abcdefghij/`, the
/// longest partition and region), so the estimate stays on the safe side of what
/// AWS counts.
const EXPANSION_PER_STATEMENT: usize = 53;

/// The resource policy's size as AWS stores it, at most.
pub fn policy_chars(lists: &[(String, Vec<String>)]) -> usize {
    source_ip_policy(lists).map_or(0, |policy| {
        let statements = policy["Statement"].as_array().map_or(0, Vec::len);
        policy.to_string().len() + statements * EXPANSION_PER_STATEMENT
    })
}

/// Every resource path a route needs: `/a/b/c` → `/a`, `/a/b`, `/a/b/c`.
pub fn segments(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for part in path.trim_matches('/').split('/').filter(|p| !p.is_empty()) {
        current = format!("{current}/{part}");
        out.push(current.clone());
    }
    out
}

#[derive(Default)]
struct Api {
    resources: BTreeSet<String>,
    authorizers: usize,
    lists: Vec<(String, Vec<String>)>,
}

/// The Webhooks (by uid) that do not fit, each with its [`Refusal`]. `webhooks` are
/// `(gateway name, Webhook)`: every Webhook that holds, or asks for, a route. Older
/// Webhooks are counted first, so a new one never takes an older one's place.
pub fn refusals(webhooks: &[(String, &Webhook)], quotas: &Quotas) -> BTreeMap<String, Refusal> {
    let mut apis: BTreeMap<&str, Api> = BTreeMap::new();
    let mut usage_plans = 0;
    let mut refused = BTreeMap::new();
    for (gateway, webhook) in oldest_first(webhooks) {
        let api = apis.entry(gateway.as_str()).or_insert_with(|| Api {
            resources: BTreeSet::from(["/".to_owned()]),
            ..Api::default()
        });
        let ask = Ask::of(&webhook.spec, api);
        match refusal(gateway, &ask, api, usage_plans, quotas) {
            Some(refusal) => {
                if let Some(uid) = &webhook.metadata.uid {
                    refused.insert(uid.clone(), refusal);
                }
            }
            None => {
                api.resources.extend(ask.new);
                api.authorizers += usize::from(ask.authorizer);
                usage_plans += usize::from(ask.api_key);
                api.lists = ask.lists;
            }
        }
    }
    refused
}

/// The order in which Webhooks claim paths and quota: the older first. Creation
/// times have one-second resolution, so within one second a Webhook whose route
/// already exists goes first: a newcomer created in the same second as a serving
/// Webhook must never take over its path (its events would go to the newcomer's
/// queue) or its place under a quota. Namespace and name settle the rest.
pub type Seniority = (Option<Time>, bool, Option<String>, Option<String>);

/// `webhook`'s place in the [`Seniority`] order.
pub fn seniority(webhook: &Webhook) -> Seniority {
    (
        webhook.metadata.creation_timestamp.clone(),
        webhook.status.as_ref().is_none_or(|s| s.route.is_none()),
        webhook.metadata.namespace.clone(),
        webhook.metadata.name.clone(),
    )
}

fn oldest_first<'a>(webhooks: &'a [(String, &'a Webhook)]) -> Vec<&'a (String, &'a Webhook)> {
    let mut ordered: Vec<&(String, &Webhook)> = webhooks.iter().collect();
    ordered.sort_by(|(_, a), (_, b)| {
        seniority(a)
            .partial_cmp(&seniority(b))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    ordered
}

/// What one Webhook would add to its REST API and the account.
struct Ask {
    /// Path segments the API does not have yet.
    new: Vec<String>,
    /// Resources the API would then have.
    resources: usize,
    authorizer: bool,
    api_key: bool,
    /// The API's source-IP lists with this Webhook's.
    lists: Vec<(String, Vec<String>)>,
}

impl Ask {
    fn of(spec: &hookline_crds::WebhookSpec, api: &Api) -> Self {
        let new: Vec<String> = segments(&spec.path)
            .into_iter()
            .filter(|s| !api.resources.contains(s))
            .collect();
        let mut lists = api.lists.clone();
        if !spec.auth.source_ip_allow_list.is_empty() {
            lists.push((spec.path.clone(), spec.auth.source_ip_allow_list.clone()));
        }
        Self {
            resources: api.resources.len() + new.len(),
            new,
            authorizer: matches!(spec.auth.mode, AuthMode::Cognito | AuthMode::Lambda),
            api_key: spec.auth.mode == AuthMode::ApiKey,
            lists,
        }
    }
}

/// The first quota `ask` would exceed on `api` (of `gateway`), with `usage_plans`
/// already used in the account.
fn refusal(
    gateway: &str,
    ask: &Ask,
    api: &Api,
    usage_plans: usize,
    quotas: &Quotas,
) -> Option<Refusal> {
    let (resources, authorizer, api_key) = (ask.resources, ask.authorizer, ask.api_key);
    let has_list = ask.lists.len() > api.lists.len();
    let lists = &ask.lists;
    if resources > quotas.resources_per_api {
        Some(Refusal {
            reason: RESOURCES_PER_API_QUOTA,
            message: format!(
                "the REST API of gateway {gateway} would need {resources} resources (every \
                 path segment is one, `/` too), over the quota of {}; older Webhooks keep \
                 theirs. Raise \"Resources per API\" in Service Quotas (API Gateway) and the \
                 operator's --quota-resources-per-api (chart: quotas.resourcesPerApi), or \
                 use a path sharing more segments with the others",
                quotas.resources_per_api
            ),
        })
    } else if authorizer && api.authorizers + 1 > quotas.authorizers_per_api {
        Some(Refusal {
            reason: AUTHORIZERS_PER_API_QUOTA,
            message: format!(
                "the REST API of gateway {gateway} would need {} authorizers (one per \
                 Cognito or Lambda Webhook), over the quota of {}; older Webhooks keep \
                 theirs. Raise \"Authorizers per API\" in Service Quotas (API Gateway) and \
                 the operator's --quota-authorizers-per-api (chart: \
                 quotas.authorizersPerApi), or move Webhooks to another gateway",
                api.authorizers + 1,
                quotas.authorizers_per_api
            ),
        })
    } else if api_key && usage_plans + 1 > quotas.usage_plans {
        Some(Refusal {
            reason: USAGE_PLANS_QUOTA,
            message: format!(
                "the account would need {} usage plans (one per ApiKey Webhook), over the \
                 quota of {}; older Webhooks keep theirs. Raise \"Usage plans per \
                 account\" in Service Quotas (API Gateway) and the operator's \
                 --quota-usage-plans (chart: quotas.usagePlansPerAccount)",
                usage_plans + 1,
                quotas.usage_plans
            ),
        })
    } else if has_list && policy_chars(lists) > quotas.resource_policy_chars {
        Some(Refusal {
            reason: RESOURCE_POLICY_SIZE_QUOTA,
            message: format!(
                "with this sourceIpAllowList the resource policy of gateway {gateway} would \
                 be about {} characters, over API Gateway's {} (a fixed limit; the \
                 operator's --quota-resource-policy-chars, chart: \
                 quotas.resourcePolicyChars, only follows it); older Webhooks keep theirs. \
                 List fewer or wider CIDR ranges",
                policy_chars(lists),
                quotas.resource_policy_chars
            ),
        })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn webhook(name: &str, age: i64, path: &str, auth: serde_json::Value) -> Webhook {
        let created = Time(
            k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + age).unwrap_or_default(),
        );
        let mut w: Webhook = serde_json::from_value(serde_json::json!({
            "apiVersion": "hookline.dev/v1alpha1",
            "kind": "Webhook",
            "metadata": {"name": name, "namespace": "team", "uid": format!("uid-{name}")},
            "spec": {
                "path": path,
                "auth": auth,
                "worker": {"template": {"spec": {"containers": [{"name": "h", "image": "h"}]}}}
            }
        }))
        .expect("a valid Webhook");
        w.metadata.creation_timestamp = Some(created);
        w
    }

    fn refused(webhooks: &[Webhook], quotas: &Quotas) -> Vec<(String, &'static str)> {
        let list: Vec<(String, &Webhook)> = webhooks.iter().map(|w| ("gw".to_owned(), w)).collect();
        refusals(&list, quotas)
            .into_iter()
            .map(|(uid, r)| (uid, r.reason))
            .collect()
    }

    #[test]
    fn the_oldest_webhooks_fit_and_the_rest_are_told_which_quota() {
        let none = serde_json::json!({});
        let lambda = serde_json::json!({"type": "Lambda", "lambda": {"functionArn": "arn:aws:lambda:eu-west-1:1:function:a"}});
        let key = serde_json::json!({"type": "ApiKey", "apiKey": {"secretRef": {"name": "k", "key": "k"}}});
        let ips = |n: usize| {
            let cidrs: Vec<String> = (0..n).map(|i| format!("10.0.{}.0/24", i % 250)).collect();
            serde_json::json!({"sourceIpAllowList": cidrs})
        };
        let small = Quotas {
            resources_per_api: 4,
            authorizers_per_api: 1,
            resource_policy_chars: 8192,
            usage_plans: 1,
        };
        // `/`, /a, /a/b, /a/c: four; /d would be the fifth. Listed newest first: the
        // order of the input does not matter, age does.
        type Case = (
            &'static str,
            Vec<Webhook>,
            Quotas,
            Vec<(String, &'static str)>,
        );
        let cases: Vec<Case> = vec![
            (
                "resources: shared segments count once",
                vec![
                    webhook("d", 4, "/d", none.clone()),
                    webhook("c", 3, "/a/c", none.clone()),
                    webhook("b", 2, "/a/b", none.clone()),
                    webhook("a", 1, "/a", none.clone()),
                ],
                small,
                vec![("uid-d".to_owned(), RESOURCES_PER_API_QUOTA)],
            ),
            (
                "authorizers",
                vec![
                    webhook("y", 2, "/y", lambda.clone()),
                    webhook("x", 1, "/x", lambda.clone()),
                ],
                small,
                vec![("uid-y".to_owned(), AUTHORIZERS_PER_API_QUOTA)],
            ),
            (
                "usage plans",
                vec![
                    webhook("k2", 2, "/k2", key.clone()),
                    webhook("k1", 1, "/k1", key.clone()),
                ],
                small,
                vec![("uid-k2".to_owned(), USAGE_PLANS_QUOTA)],
            ),
            (
                "resource policy size: the list that pushes it over",
                vec![
                    webhook("p1", 1, "/p1", ips(200)),
                    webhook("p2", 2, "/p2", ips(300)),
                    webhook("open", 3, "/open", none.clone()),
                ],
                Quotas::default(),
                vec![("uid-p2".to_owned(), RESOURCE_POLICY_SIZE_QUOTA)],
            ),
            (
                "everything fits under AWS's defaults",
                vec![
                    webhook("a", 1, "/a", lambda.clone()),
                    webhook("b", 2, "/b", key.clone()),
                    webhook("c", 3, "/c", ips(10)),
                ],
                Quotas::default(),
                vec![],
            ),
        ];
        for (name, webhooks, quotas, expected) in cases {
            assert_eq!(refused(&webhooks, &quotas), expected, "{name}");
        }
    }

    #[test]
    fn the_policy_estimate_covers_what_aws_stores() {
        let lists = vec![("/a".to_owned(), vec!["10.0.0.0/8".to_owned()])];
        let written = source_ip_policy(&lists).map_or(0, |p| p.to_string().len());
        assert_eq!(policy_chars(&lists), written + 2 * EXPANSION_PER_STATEMENT);
        assert_eq!(policy_chars(&[]), 0);
        assert!(
            "arn:aws-us-gov:execute-api:ap-southeast-2:123456789012:abcdefghij/".len()
                - "execute-api:/".len()
                <= EXPANSION_PER_STATEMENT
        );
    }
}
