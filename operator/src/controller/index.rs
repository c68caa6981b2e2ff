//! The gateway index (pure, no I/O): from the Webhooks attached to gateways, which
//! Webhook owns each path (the oldest), which are refused for an AWS quota (see
//! [`crate::quotas`]), and what the admitted ones share on their gateway's REST API:
//! the per-route throttles on the stage, the source-IP resource policy, the
//! authorizers and the resource counts. The Webhook reconcile asks it whether its
//! Webhook may have a route; the gateway reconcile applies the shared parts, so a
//! setting goes away when the last Webhook asking for it does.

use hookline_crds::{AuthMode, Webhook};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

use crate::aws::rest_apis::source_ip_policy;
use crate::quotas::{self, Quotas, Refusal};

/// What the index says about one Webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// It owns its path on the gateway and fits the quotas: it has a route.
    Admitted,
    /// An older Webhook on the same gateway serves the same path.
    PathTaken {
        /// `namespace/name` of the Webhook that keeps the path.
        owner: String,
    },
    /// It would exceed an AWS quota.
    Refused(Refusal),
    /// It is not attached to this gateway (or has no uid).
    NotAttached,
}

/// How much of the REST API's quotas the admitted Webhooks use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Routes (admitted Webhooks).
    pub routes: usize,
    /// Resources: every path segment once, and `/`.
    pub resources: usize,
    /// Authorizers (one per Cognito or Lambda Webhook).
    pub authorizers: usize,
    /// The resource policy's size as AWS stores it, at most.
    pub policy_chars: usize,
}

/// One attached Webhook, as far as the gateway cares.
#[derive(Debug, Clone)]
struct Entry {
    uid: String,
    key: String,
    path: String,
    admission: Admission,
    throttle: Option<(f64, i32)>,
    source_ips: Vec<String>,
    authorizer: Option<String>,
}

/// The index of one gateway's Webhooks.
#[derive(Debug, Clone)]
pub struct GatewayIndex {
    gateway: String,
    /// Oldest first.
    entries: Vec<Entry>,
}

/// The name of a Webhook's authorizer in its gateway's REST API.
pub fn authorizer_name(namespace: &str, name: &str) -> String {
    format!("{namespace}-{name}")
}

fn key_of(webhook: &Webhook) -> String {
    format!(
        "{}/{}",
        webhook.metadata.namespace.as_deref().unwrap_or_default(),
        webhook.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Every Webhook that holds, or asks for, a route, with its gateway: those whose
/// status names a gateway, and `candidate` (a Webhook being validated, which has no
/// status yet) on the gateway it resolved to, in place of its own older entry.
pub fn attachments<'a>(
    webhooks: impl IntoIterator<Item = &'a Webhook>,
    candidate: Option<(&str, &'a Webhook)>,
) -> Vec<(String, &'a Webhook)> {
    let candidate_uid = candidate.and_then(|(_, w)| w.metadata.uid.as_deref());
    let mut attached: Vec<(String, &Webhook)> = webhooks
        .into_iter()
        .filter(|w| candidate_uid.is_none() || w.metadata.uid.as_deref() != candidate_uid)
        .filter_map(|w| Some((w.status.as_ref()?.gateway.clone()?, w)))
        .collect();
    if let Some((gateway, webhook)) = candidate {
        attached.push((gateway.to_owned(), webhook));
    }
    attached
}

impl GatewayIndex {
    /// The index of `gateway`, from every attachment (of every gateway: usage plans
    /// are counted per account).
    ///
    /// A path belongs to the oldest Webhook (in [`quotas::seniority`] order) on the gateway that is not being deleted
    /// (a deleting one does not keep a newer one waiting), or, when every claimant is
    /// being deleted, to the oldest of those: its route is still there until its
    /// cleanup removes it, so its throttle and source-IP limits stay until it is gone.
    /// Quotas are then checked over the path owners only, oldest first.
    pub fn build(gateway: &str, attached: &[(String, &Webhook)], quotas: &Quotas) -> Self {
        let mut ordered: Vec<&(String, &Webhook)> = attached
            .iter()
            .filter(|(_, w)| w.metadata.uid.is_some())
            .collect();
        ordered.sort_by(|(_, a), (_, b)| {
            quotas::seniority(a)
                .partial_cmp(&quotas::seniority(b))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        // (gateway, path) → owner, live claimants first.
        let mut owners: BTreeMap<(&str, &str), &Webhook> = BTreeMap::new();
        for deleting in [false, true] {
            for (gw, webhook) in &ordered {
                if webhook.metadata.deletion_timestamp.is_some() == deleting {
                    owners
                        .entry((gw.as_str(), webhook.spec.path.as_str()))
                        .or_insert(webhook);
                }
            }
        }
        let is_owner = |gw: &str, webhook: &Webhook| {
            owners
                .get(&(gw, webhook.spec.path.as_str()))
                .is_some_and(|owner| owner.metadata.uid == webhook.metadata.uid)
        };
        let owning: Vec<(String, &Webhook)> = ordered
            .iter()
            .filter(|(gw, w)| is_owner(gw, w))
            .map(|(gw, w)| (gw.clone(), *w))
            .collect();
        let refused = quotas::refusals(&owning, quotas);
        let entries = ordered
            .iter()
            .filter(|(gw, _)| gw == gateway)
            .filter_map(|(gw, webhook)| {
                let uid = webhook.metadata.uid.clone()?;
                let admission = if !is_owner(gw, webhook) {
                    let owner = owners.get(&(gw.as_str(), webhook.spec.path.as_str()))?;
                    Admission::PathTaken {
                        owner: key_of(owner),
                    }
                } else if let Some(refusal) = refused.get(&uid) {
                    Admission::Refused(refusal.clone())
                } else {
                    Admission::Admitted
                };
                let auth = &webhook.spec.auth;
                Some(Entry {
                    key: key_of(webhook),
                    path: webhook.spec.path.clone(),
                    admission,
                    throttle: webhook
                        .spec
                        .throttling
                        .as_ref()
                        .map(|t| (t.rate_limit, t.burst_limit)),
                    source_ips: auth.source_ip_allow_list.clone(),
                    authorizer: matches!(auth.mode, AuthMode::Cognito | AuthMode::Lambda).then(
                        || {
                            authorizer_name(
                                webhook.metadata.namespace.as_deref().unwrap_or_default(),
                                webhook.metadata.name.as_deref().unwrap_or_default(),
                            )
                        },
                    ),
                    uid,
                })
            })
            .collect();
        Self {
            gateway: gateway.to_owned(),
            entries,
        }
    }

    /// The gateway this index is of.
    pub fn gateway(&self) -> &str {
        &self.gateway
    }

    /// Whether `webhook` may have a route on the gateway, and why not.
    pub fn admission(&self, webhook: &Webhook) -> Admission {
        webhook
            .metadata
            .uid
            .as_ref()
            .and_then(|uid| self.entries.iter().find(|e| &e.uid == uid))
            .map_or(Admission::NotAttached, |e| e.admission.clone())
    }

    fn admitted(&self) -> impl Iterator<Item = &Entry> {
        self.entries
            .iter()
            .filter(|e| e.admission == Admission::Admitted)
    }

    /// Attached Webhooks, admitted or not.
    pub fn attached(&self) -> usize {
        self.entries.len()
    }

    /// `namespace/name` and path of each admitted Webhook, oldest first.
    pub fn routes(&self) -> Vec<(String, String)> {
        self.admitted()
            .map(|e| (e.key.clone(), e.path.clone()))
            .collect()
    }

    /// The stage's per-route throttle overrides, `(path, rate, burst)`, by path.
    pub fn route_throttling(&self) -> Vec<(String, f64, i32)> {
        let mut throttles: Vec<(String, f64, i32)> = self
            .admitted()
            .filter_map(|e| {
                e.throttle
                    .map(|(rate, burst)| (e.path.clone(), rate, burst))
            })
            .collect();
        throttles.sort_by(|a, b| a.0.cmp(&b.0));
        throttles
    }

    /// Each admitted route with its source-IP allow list (empty: open).
    pub fn source_ip_lists(&self) -> Vec<(String, Vec<String>)> {
        self.admitted()
            .map(|e| (e.path.clone(), e.source_ips.clone()))
            .collect()
    }

    /// The REST API's resource policy; `None` when no admitted route lists sources.
    pub fn source_ip_policy(&self) -> Option<Value> {
        source_ip_policy(&self.source_ip_lists())
    }

    /// The authorizers the admitted routes use, by name.
    pub fn authorizers(&self) -> BTreeSet<String> {
        self.admitted()
            .filter_map(|e| e.authorizer.clone())
            .collect()
    }

    /// What the admitted routes use of the REST API's quotas.
    pub fn counts(&self) -> Counts {
        let resources: BTreeSet<String> = self
            .admitted()
            .flat_map(|e| quotas::segments(&e.path))
            .collect();
        let lists: Vec<(String, Vec<String>)> = self
            .source_ip_lists()
            .into_iter()
            .filter(|(_, cidrs)| !cidrs.is_empty())
            .collect();
        Counts {
            routes: self.admitted().count(),
            resources: resources.len() + 1,
            authorizers: self.authorizers().len(),
            policy_chars: quotas::policy_chars(&lists),
        }
    }
}

/// Whether `policy` (the REST API's, as last written or read) limits `POST path` to
/// exactly `cidrs`: what a Webhook with a source-IP allow list waits for before it
/// says its route is ready.
pub fn policy_enforces(policy: Option<&Value>, path: &str, cidrs: &[String]) -> bool {
    let resource = format!("execute-api:/*/POST{path}");
    policy
        .and_then(|p| p["Statement"].as_array())
        .is_some_and(|statements| {
            statements.iter().any(|s| {
                s["Effect"] == "Deny"
                    && s["Resource"] == resource.as_str()
                    && s["Condition"]["NotIpAddress"]["aws:SourceIp"]
                        .as_array()
                        .is_some_and(|listed| {
                            listed.len() == cidrs.len()
                                && cidrs.iter().all(|c| listed.iter().any(|l| l == c.as_str()))
                        })
            })
        })
}

/// What of a Webhook its gateway's reconcile depends on: when a watch event leaves
/// this unchanged (the scaler's backlog and replica writes, most status updates),
/// the gateway is not reconciled for it (its removal always counts).
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConcern {
    generation: Option<i64>,
    deleting: bool,
    gateway: Option<String>,
}

impl GatewayConcern {
    /// The concern of `webhook`.
    pub fn of(webhook: &Webhook) -> Self {
        Self {
            generation: webhook.metadata.generation,
            deleting: webhook.metadata.deletion_timestamp.is_some(),
            gateway: webhook.status.as_ref().and_then(|s| s.gateway.clone()),
        }
    }

    /// The gateways a change of the Webhook concerns: the one its status names and
    /// the one its spec names (they differ while it moves).
    pub fn gateways(webhook: &Webhook) -> Vec<String> {
        let mut gateways: Vec<String> = webhook
            .status
            .as_ref()
            .and_then(|s| s.gateway.clone())
            .into_iter()
            .chain(webhook.spec.gateway_ref.as_ref().map(|r| r.name.clone()))
            .collect();
        gateways.dedup();
        gateways
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookline_crds::reasons::{AUTHORIZERS_PER_API_QUOTA, RESOURCES_PER_API_QUOTA};

    fn webhook(name: &str, age: i64, path: &str, spec: Value) -> Webhook {
        let mut spec = spec;
        spec["path"] = path.into();
        spec["worker"] = serde_json::json!({"template": {"spec": {"containers": [{"name": "h", "image": "h"}]}}});
        let mut w: Webhook = serde_json::from_value(serde_json::json!({
            "apiVersion": "hookline.dev/v1alpha1",
            "kind": "Webhook",
            "metadata": {"name": name, "namespace": "team", "uid": format!("uid-{name}")},
            "spec": spec,
        }))
        .expect("a valid Webhook");
        w.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + age).expect("a time"),
        ));
        w
    }

    fn on(gateway: &str, webhook: &Webhook) -> Webhook {
        let mut w = webhook.clone();
        w.status.get_or_insert_with(Default::default).gateway = Some(gateway.to_owned());
        w
    }

    fn deleting(webhook: Webhook) -> Webhook {
        let mut w = webhook;
        w.metadata.deletion_timestamp = w.metadata.creation_timestamp.clone();
        w
    }

    fn index(gateway: &str, webhooks: &[Webhook], quotas: &Quotas) -> GatewayIndex {
        GatewayIndex::build(gateway, &attachments(webhooks, None), quotas)
    }

    fn none() -> Value {
        serde_json::json!({})
    }

    fn ips(cidrs: &[&str]) -> Value {
        serde_json::json!({"auth": {"sourceIpAllowList": cidrs}})
    }

    fn throttled(rate: f64, burst: i32) -> Value {
        serde_json::json!({"throttling": {"rateLimit": rate, "burstLimit": burst}})
    }

    fn lambda() -> Value {
        serde_json::json!({"auth": {"type": "Lambda", "lambda": {"functionArn": "arn:aws:lambda:eu-west-1:1:function:a"}}})
    }

    #[test]
    fn within_one_second_the_webhook_already_serving_keeps_its_path() {
        // Creation times have one-second resolution; "aaa" sorts before "zzz".
        let mut serving = on("gw", &webhook("zzz", 1, "/p", none()));
        serving.status.get_or_insert_with(Default::default).route = Some(hookline_crds::RouteRef {
            rest_api_id: "api".to_owned(),
            resource_id: "r".to_owned(),
        });
        let newcomer = on("gw", &webhook("aaa", 1, "/p", none()));
        let gw = index(
            "gw",
            &[newcomer.clone(), serving.clone()],
            &Quotas::default(),
        );
        assert_eq!(gw.admission(&serving), Admission::Admitted);
        assert_eq!(
            gw.admission(&newcomer),
            Admission::PathTaken {
                owner: "team/zzz".to_owned()
            }
        );
        // Neither serving yet: namespace and name decide, the same way every time.
        let zzz = on("gw", &webhook("zzz", 1, "/p", none()));
        let gw = index("gw", &[zzz.clone(), newcomer.clone()], &Quotas::default());
        assert_eq!(gw.admission(&newcomer), Admission::Admitted);
    }

    #[test]
    fn the_oldest_webhook_owns_a_path() {
        let old = on("gw", &webhook("old", 1, "/p", none()));
        let new = on("gw", &webhook("new", 2, "/p", none()));
        let elsewhere = on("other", &webhook("elsewhere", 0, "/p", none()));
        // Input order does not matter, age does; another gateway's path is its own.
        let all = [new.clone(), elsewhere.clone(), old.clone()];
        let gw = index("gw", &all, &Quotas::default());
        assert_eq!(gw.admission(&old), Admission::Admitted);
        assert_eq!(
            gw.admission(&new),
            Admission::PathTaken {
                owner: "team/old".to_owned()
            }
        );
        assert_eq!(gw.admission(&elsewhere), Admission::NotAttached);
        assert_eq!(
            index("other", &all, &Quotas::default()).admission(&elsewhere),
            Admission::Admitted
        );
        assert_eq!(gw.routes(), vec![("team/old".to_owned(), "/p".to_owned())]);
    }

    #[test]
    fn a_deleting_webhook_keeps_its_path_only_while_nobody_else_claims_it() {
        let old = on(
            "gw",
            &deleting(webhook("old", 1, "/p", ips(&["10.0.0.0/8"]))),
        );
        let new = on("gw", &webhook("new", 2, "/p", none()));
        let both = index("gw", &[old.clone(), new.clone()], &Quotas::default());
        assert_eq!(both.admission(&new), Admission::Admitted);
        assert_eq!(both.source_ip_policy(), None);
        let alone = index("gw", std::slice::from_ref(&old), &Quotas::default());
        assert_eq!(alone.admission(&old), Admission::Admitted);
        assert!(alone.source_ip_policy().is_some(), "limited until gone");
    }

    #[test]
    fn a_candidate_replaces_its_own_entry() {
        let listed = on("old-gw", &webhook("w", 1, "/p", none()));
        let candidate = webhook("w", 1, "/p", none());
        let attached = attachments(std::slice::from_ref(&listed), Some(("gw", &candidate)));
        assert_eq!(attached.len(), 1);
        let gw = GatewayIndex::build("gw", &attached, &Quotas::default());
        assert_eq!(gw.admission(&candidate), Admission::Admitted);
    }

    #[test]
    fn the_policy_lists_the_admitted_routes_with_sources() {
        let a = on("gw", &webhook("a", 1, "/a", ips(&["10.0.0.0/8"])));
        let b = on("gw", &webhook("b", 2, "/b", none()));
        let taken = on("gw", &webhook("taken", 3, "/a", ips(&["192.0.2.0/24"])));
        let gw = index("gw", &[a, b.clone(), taken], &Quotas::default());
        let policy = gw.source_ip_policy();
        assert!(policy_enforces(
            policy.as_ref(),
            "/a",
            &["10.0.0.0/8".to_owned()]
        ));
        assert!(
            !policy_enforces(policy.as_ref(), "/a", &["192.0.2.0/24".to_owned()]),
            "a Webhook that lost the path has no say"
        );
        assert!(!policy_enforces(policy.as_ref(), "/b", &[]));
        // The last list gone: no policy at all.
        assert_eq!(
            index("gw", &[b], &Quotas::default()).source_ip_policy(),
            None
        );
    }

    #[test]
    fn policy_enforcement_needs_the_exact_list() {
        let lists = vec![(
            "/a".to_owned(),
            vec!["10.0.0.0/8".to_owned(), "192.0.2.0/24".to_owned()],
        )];
        let policy = source_ip_policy(&lists);
        let cases: Vec<(&str, Vec<&str>, bool)> = vec![
            ("/a", vec!["192.0.2.0/24", "10.0.0.0/8"], true),
            ("/a", vec!["10.0.0.0/8"], false),
            (
                "/a",
                vec!["10.0.0.0/8", "192.0.2.0/24", "198.51.100.0/24"],
                false,
            ),
            ("/b", vec!["10.0.0.0/8", "192.0.2.0/24"], false),
        ];
        for (path, cidrs, expected) in cases {
            let cidrs: Vec<String> = cidrs.into_iter().map(str::to_owned).collect();
            assert_eq!(
                policy_enforces(policy.as_ref(), path, &cidrs),
                expected,
                "{path} {cidrs:?}"
            );
        }
        assert!(!policy_enforces(None, "/a", &["10.0.0.0/8".to_owned()]));
    }

    #[test]
    fn route_throttles_come_from_the_admitted_webhooks_only() {
        let a = on("gw", &webhook("a", 1, "/a", throttled(5.0, 10)));
        let b = on("gw", &webhook("b", 2, "/b", none()));
        let taken = on("gw", &webhook("taken", 3, "/a", throttled(1.0, 1)));
        let gw = index("gw", &[taken, b.clone(), a], &Quotas::default());
        assert_eq!(gw.route_throttling(), vec![("/a".to_owned(), 5.0, 10)]);
        // The override removed from the spec: none left for the stage.
        assert_eq!(
            index("gw", &[b], &Quotas::default()).route_throttling(),
            vec![]
        );
    }

    #[test]
    fn authorizers_and_counts_follow_the_quota_decisions() {
        let small = Quotas {
            resources_per_api: 4,
            authorizers_per_api: 1,
            ..Quotas::default()
        };
        let x = on("gw", &webhook("x", 1, "/hooks/x", lambda()));
        let y = on("gw", &webhook("y", 2, "/hooks/y", lambda()));
        let z = on("gw", &webhook("z", 3, "/z", none()));
        let w = on("gw", &webhook("w", 4, "/w", none()));
        let gw = index("gw", &[w.clone(), z.clone(), y.clone(), x.clone()], &small);
        assert_eq!(gw.admission(&x), Admission::Admitted);
        assert!(
            matches!(gw.admission(&y), Admission::Refused(r) if r.reason == AUTHORIZERS_PER_API_QUOTA)
        );
        // `/`, /hooks, /hooks/x, /z: y was refused, so its /hooks/y does not count.
        assert_eq!(gw.admission(&z), Admission::Admitted);
        assert!(
            matches!(gw.admission(&w), Admission::Refused(r) if r.reason == RESOURCES_PER_API_QUOTA)
        );
        assert_eq!(gw.authorizers(), BTreeSet::from(["team-x".to_owned()]));
        assert_eq!(
            gw.counts(),
            Counts {
                routes: 2,
                resources: 4,
                authorizers: 1,
                policy_chars: 0
            }
        );
        assert_eq!(gw.attached(), 4);
    }

    #[test]
    fn a_path_conflict_does_not_spend_quota() {
        let one_authorizer = Quotas {
            authorizers_per_api: 1,
            ..Quotas::default()
        };
        let old = on("gw", &webhook("old", 1, "/p", none()));
        let taken = on("gw", &webhook("taken", 2, "/p", lambda()));
        let later = on("gw", &webhook("later", 3, "/q", lambda()));
        let gw = index("gw", &[old, taken, later.clone()], &one_authorizer);
        assert_eq!(gw.admission(&later), Admission::Admitted);
    }

    #[test]
    fn only_what_the_gateway_uses_triggers_it() {
        let w = on("gw", &webhook("w", 1, "/p", none()));
        let mut backlog = w.clone();
        backlog.status.get_or_insert_with(Default::default).backlog = Some(Default::default());
        assert_eq!(GatewayConcern::of(&w), GatewayConcern::of(&backlog));
        let mut spec = w.clone();
        spec.metadata.generation = Some(2);
        for changed in [spec, deleting(w.clone()), on("other", &w)] {
            assert_ne!(GatewayConcern::of(&w), GatewayConcern::of(&changed));
        }
        assert_eq!(GatewayConcern::gateways(&w), vec!["gw".to_owned()]);
    }
}
