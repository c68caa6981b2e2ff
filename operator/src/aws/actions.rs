//! The IAM actions each AWS call of the operator needs, from AWS's Service
//! Authorization Reference and the services' API references: the one table that the
//! chart's operator policy, `docs/aws-calls.md` and the end-to-end test are checked
//! against. A call site ([`super::Caller::call`]) that is missing here, an entry no
//! call site uses, or an action the chart policy does not allow fails the unit tests
//! below.
//!
//! Resources are examples written with the chart policy's placeholders (`PARTITION`,
//! `REGION`, `ACCOUNT`, `PREFIX`, `ZONE_ID`); `*` means the action takes no resource
//! (the statement must say `"Resource": "*"`).

/// One SDK operation and what IAM must allow for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// Service as [`super::Service::as_str`] names it (`lambda` for the authorizer
    /// permission calls).
    pub service: &'static str,
    /// SDK operation name, as passed to [`super::Caller::call`].
    pub operation: &'static str,
    /// IAM actions the operation needs, each with an example resource it acts on.
    pub needs: &'static [(&'static str, &'static str)],
}

const fn call(
    service: &'static str,
    operation: &'static str,
    needs: &'static [(&'static str, &'static str)],
) -> Call {
    Call {
        service,
        operation,
        needs,
    }
}

const QUEUE: &str = "arn:PARTITION:sqs:REGION:ACCOUNT:PREFIX-payments-stripe-1a2b3c4d.fifo";
const API: &str = "arn:PARTITION:apigateway:REGION::/restapis/a1b2c3";
const METHOD: &str = "arn:PARTITION:apigateway:REGION::/restapis/a1b2c3/resources/r1/methods/POST";
const DOMAIN: &str = "arn:PARTITION:apigateway:REGION::/domainnames/hooks.example.com";
const TAGS: &str = "arn:PARTITION:apigateway:REGION::/tags/arn%3Aaws%3Aapigateway";
const CERT: &str = "arn:PARTITION:acm:REGION:ACCOUNT:certificate/0a1b2c3d";
const ZONE: &str = "arn:PARTITION:route53:::hostedzone/ZONE_ID";
const ROLE: &str = "arn:PARTITION:iam::ACCOUNT:role/hookline/PREFIX-gw-public";
/// A namespace's IRSA worker role (`workerIdentity.irsaRolePerNamespace`).
const NAMESPACE_ROLE: &str = "arn:PARTITION:iam::ACCOUNT:role/hookline/PREFIX-ns-payments";
const API_GATEWAY_SLR: &str = "arn:PARTITION:iam::ACCOUNT:role/aws-service-role/ops.apigateway.amazonaws.com/AWSServiceRoleForAPIGateway";
const LOG_GROUP: &str =
    "arn:PARTITION:logs:REGION:ACCOUNT:log-group:/hookline/PREFIX/gateways/public";
const FUNCTION: &str = "arn:PARTITION:lambda:REGION:ACCOUNT:function:authorizer";

/// Every operation the operator calls. API Gateway's control plane authorizes by
/// HTTP verb on the resource path; a few calls need a second action (tagging on
/// create, passing a role, the resource policy, the service-linked role).
pub const CALLS: &[Call] = &[
    // SQS: CreateQueue with tags needs sqs:TagQueue too (SQS API reference, CreateQueue).
    call(
        "sqs",
        "CreateQueue",
        &[("sqs:CreateQueue", QUEUE), ("sqs:TagQueue", QUEUE)],
    ),
    call("sqs", "GetQueueUrl", &[("sqs:GetQueueUrl", QUEUE)]),
    call(
        "sqs",
        "GetQueueAttributes",
        &[("sqs:GetQueueAttributes", QUEUE)],
    ),
    call(
        "sqs",
        "SetQueueAttributes",
        &[("sqs:SetQueueAttributes", QUEUE)],
    ),
    call("sqs", "ListQueueTags", &[("sqs:ListQueueTags", QUEUE)]),
    call("sqs", "TagQueue", &[("sqs:TagQueue", QUEUE)]),
    call("sqs", "DeleteQueue", &[("sqs:DeleteQueue", QUEUE)]),
    // API Gateway (service prefix apigateway, actions GET/POST/PUT/PATCH/DELETE).
    call(
        "apigateway",
        "GetRestApis",
        &[(
            "apigateway:GET",
            "arn:PARTITION:apigateway:REGION::/restapis",
        )],
    ),
    call(
        "apigateway",
        "CreateRestApi",
        &[
            (
                "apigateway:POST",
                "arn:PARTITION:apigateway:REGION::/restapis",
            ),
            ("apigateway:PUT", TAGS),
        ],
    ),
    call("apigateway", "GetRestApi", &[("apigateway:GET", API)]),
    // Changing `/policy` needs UpdateRestApiPolicy besides PATCH (API Gateway
    // developer guide, "Create and attach an API Gateway resource policy to an API").
    call(
        "apigateway",
        "UpdateRestApi",
        &[
            ("apigateway:PATCH", API),
            ("apigateway:UpdateRestApiPolicy", API),
        ],
    ),
    call("apigateway", "DeleteRestApi", &[("apigateway:DELETE", API)]),
    call(
        "apigateway",
        "GetResources",
        &[(
            "apigateway:GET",
            "arn:PARTITION:apigateway:REGION::/restapis/a1b2c3/resources",
        )],
    ),
    call(
        "apigateway",
        "CreateResource",
        &[(
            "apigateway:POST",
            "arn:PARTITION:apigateway:REGION::/restapis/a1b2c3/resources/r1",
        )],
    ),
    call(
        "apigateway",
        "DeleteResource",
        &[(
            "apigateway:DELETE",
            "arn:PARTITION:apigateway:REGION::/restapis/a1b2c3/resources/r1",
        )],
    ),
    call("apigateway", "GetMethod", &[("apigateway:GET", METHOD)]),
    call("apigateway", "PutMethod", &[("apigateway:PUT", METHOD)]),
    // A parent route's method goes alone: DeleteResource would take its children.
    call(
        "apigateway",
        "DeleteMethod",
        &[("apigateway:DELETE", METHOD)],
    ),
    call(
        "apigateway",
        "UpdateMethod",
        &[("apigateway:PATCH", METHOD)],
    ),
    // An integration with `credentials` passes the gateway role to API Gateway.
    call(
        "apigateway",
        "PutIntegration",
        &[("apigateway:PUT", METHOD), ("iam:PassRole", ROLE)],
    ),
    call(
        "apigateway",
        "PutMethodResponse",
        &[("apigateway:PUT", METHOD)],
    ),
    call(
        "apigateway",
        "PutIntegrationResponse",
        &[("apigateway:PUT", METHOD)],
    ),
    call(
        "apigateway",
        "CreateDeployment",
        &[(
            "apigateway:POST",
            "arn:PARTITION:apigateway:REGION::/restapis/a1b2c3/deployments",
        )],
    ),
    call(
        "apigateway",
        "GetStage",
        &[(
            "apigateway:GET",
            "arn:PARTITION:apigateway:REGION::/restapis/a1b2c3/stages/live",
        )],
    ),
    // Which deployment the stage serves, and whether it holds a route's last change.
    call(
        "apigateway",
        "GetDeployment",
        &[(
            "apigateway:GET",
            "arn:PARTITION:apigateway:REGION::/restapis/a1b2c3/deployments/d1",
        )],
    ),
    call(
        "apigateway",
        "UpdateStage",
        &[(
            "apigateway:PATCH",
            "arn:PARTITION:apigateway:REGION::/restapis/a1b2c3/stages/live",
        )],
    ),
    call(
        "apigateway",
        "GetAuthorizers",
        &[(
            "apigateway:GET",
            "arn:PARTITION:apigateway:REGION::/restapis/a1b2c3/authorizers",
        )],
    ),
    call(
        "apigateway",
        "CreateAuthorizer",
        &[(
            "apigateway:POST",
            "arn:PARTITION:apigateway:REGION::/restapis/a1b2c3/authorizers",
        )],
    ),
    call(
        "apigateway",
        "UpdateAuthorizer",
        &[(
            "apigateway:PATCH",
            "arn:PARTITION:apigateway:REGION::/restapis/a1b2c3/authorizers/au1",
        )],
    ),
    call(
        "apigateway",
        "DeleteAuthorizer",
        &[(
            "apigateway:DELETE",
            "arn:PARTITION:apigateway:REGION::/restapis/a1b2c3/authorizers/au1",
        )],
    ),
    call("apigateway", "GetDomainName", &[("apigateway:GET", DOMAIN)]),
    // The first custom domain of an account creates API Gateway's service-linked
    // role (API Gateway developer guide, "Using service-linked roles for API Gateway").
    call(
        "apigateway",
        "CreateDomainName",
        &[
            (
                "apigateway:POST",
                "arn:PARTITION:apigateway:REGION::/domainnames",
            ),
            ("apigateway:PUT", TAGS),
            ("iam:CreateServiceLinkedRole", API_GATEWAY_SLR),
        ],
    ),
    call(
        "apigateway",
        "UpdateDomainName",
        &[("apigateway:PATCH", DOMAIN)],
    ),
    call(
        "apigateway",
        "DeleteDomainName",
        &[("apigateway:DELETE", DOMAIN)],
    ),
    call(
        "apigateway",
        "GetBasePathMappings",
        &[(
            "apigateway:GET",
            "arn:PARTITION:apigateway:REGION::/domainnames/hooks.example.com/basepathmappings",
        )],
    ),
    call(
        "apigateway",
        "CreateBasePathMapping",
        &[(
            "apigateway:POST",
            "arn:PARTITION:apigateway:REGION::/domainnames/hooks.example.com/basepathmappings",
        )],
    ),
    call(
        "apigateway",
        "GetApiKeys",
        &[(
            "apigateway:GET",
            "arn:PARTITION:apigateway:REGION::/apikeys",
        )],
    ),
    call(
        "apigateway",
        "CreateApiKey",
        &[
            (
                "apigateway:POST",
                "arn:PARTITION:apigateway:REGION::/apikeys",
            ),
            ("apigateway:PUT", TAGS),
        ],
    ),
    call(
        "apigateway",
        "DeleteApiKey",
        &[(
            "apigateway:DELETE",
            "arn:PARTITION:apigateway:REGION::/apikeys/k1",
        )],
    ),
    call(
        "apigateway",
        "GetUsagePlans",
        &[(
            "apigateway:GET",
            "arn:PARTITION:apigateway:REGION::/usageplans",
        )],
    ),
    call(
        "apigateway",
        "CreateUsagePlan",
        &[
            (
                "apigateway:POST",
                "arn:PARTITION:apigateway:REGION::/usageplans",
            ),
            ("apigateway:PUT", TAGS),
        ],
    ),
    call(
        "apigateway",
        "UpdateUsagePlan",
        &[(
            "apigateway:PATCH",
            "arn:PARTITION:apigateway:REGION::/usageplans/p1",
        )],
    ),
    call(
        "apigateway",
        "DeleteUsagePlan",
        &[(
            "apigateway:DELETE",
            "arn:PARTITION:apigateway:REGION::/usageplans/p1",
        )],
    ),
    call(
        "apigateway",
        "CreateUsagePlanKey",
        &[(
            "apigateway:POST",
            "arn:PARTITION:apigateway:REGION::/usageplans/p1/keys",
        )],
    ),
    // The account's CloudWatch role, which access logging needs.
    call(
        "apigateway",
        "GetAccount",
        &[(
            "apigateway:GET",
            "arn:PARTITION:apigateway:REGION::/account",
        )],
    ),
    // ACM: tags on request need AddTagsToCertificate (ACM API reference,
    // RequestCertificate); ListCertificates and RequestCertificate take no resource.
    call(
        "acm",
        "RequestCertificate",
        &[
            ("acm:RequestCertificate", "*"),
            ("acm:AddTagsToCertificate", CERT),
        ],
    ),
    call(
        "acm",
        "DescribeCertificate",
        &[("acm:DescribeCertificate", CERT)],
    ),
    call("acm", "ListCertificates", &[("acm:ListCertificates", "*")]),
    call(
        "acm",
        "ListTagsForCertificate",
        &[("acm:ListTagsForCertificate", CERT)],
    ),
    call(
        "acm",
        "DeleteCertificate",
        &[("acm:DeleteCertificate", CERT)],
    ),
    // Route 53. The chart policy narrows ChangeResourceRecordSets to the gateways'
    // record names and types with `route53:ChangeResourceRecordSetsNormalizedRecordNames`
    // and `…RecordTypes` (Route 53 developer guide, "Using IAM policy conditions for
    // fine-grained access control").
    call(
        "route53",
        "ChangeResourceRecordSets",
        &[("route53:ChangeResourceRecordSets", ZONE)],
    ),
    call(
        "route53",
        "ListResourceRecordSets",
        &[("route53:ListResourceRecordSets", ZONE)],
    ),
    call(
        "route53",
        "GetChange",
        &[("route53:GetChange", "arn:PARTITION:route53:::change/C1")],
    ),
    call(
        "route53",
        "ListHostedZonesByName",
        &[("route53:ListHostedZonesByName", "*")],
    ),
    // IAM: CreateRole with tags needs iam:TagRole (IAM API reference, CreateRole). The
    // same calls make the gateway roles and the namespaces' IRSA worker roles.
    call(
        "iam",
        "GetRole",
        &[("iam:GetRole", ROLE), ("iam:GetRole", NAMESPACE_ROLE)],
    ),
    call(
        "iam",
        "CreateRole",
        &[
            ("iam:CreateRole", ROLE),
            ("iam:TagRole", ROLE),
            ("iam:CreateRole", NAMESPACE_ROLE),
            ("iam:TagRole", NAMESPACE_ROLE),
        ],
    ),
    call(
        "iam",
        "UpdateAssumeRolePolicy",
        &[
            ("iam:UpdateAssumeRolePolicy", ROLE),
            ("iam:UpdateAssumeRolePolicy", NAMESPACE_ROLE),
        ],
    ),
    call(
        "iam",
        "PutRolePolicy",
        &[
            ("iam:PutRolePolicy", ROLE),
            ("iam:PutRolePolicy", NAMESPACE_ROLE),
        ],
    ),
    call(
        "iam",
        "GetRolePolicy",
        &[
            ("iam:GetRolePolicy", ROLE),
            ("iam:GetRolePolicy", NAMESPACE_ROLE),
        ],
    ),
    call(
        "iam",
        "DeleteRolePolicy",
        &[
            ("iam:DeleteRolePolicy", ROLE),
            ("iam:DeleteRolePolicy", NAMESPACE_ROLE),
        ],
    ),
    call(
        "iam",
        "DeleteRole",
        &[("iam:DeleteRole", ROLE), ("iam:DeleteRole", NAMESPACE_ROLE)],
    ),
    // CloudWatch Logs: tags on create need logs:TagResource (Logs API reference,
    // CreateLogGroup).
    call(
        "logs",
        "DescribeLogGroups",
        &[("logs:DescribeLogGroups", "*")],
    ),
    call(
        "logs",
        "CreateLogGroup",
        &[
            ("logs:CreateLogGroup", LOG_GROUP),
            ("logs:TagResource", LOG_GROUP),
        ],
    ),
    call(
        "logs",
        "PutRetentionPolicy",
        &[("logs:PutRetentionPolicy", LOG_GROUP)],
    ),
    call(
        "logs",
        "ListTagsForResource",
        &[("logs:ListTagsForResource", LOG_GROUP)],
    ),
    call(
        "logs",
        "DeleteLogGroup",
        &[("logs:DeleteLogGroup", LOG_GROUP)],
    ),
    // Lambda: API Gateway's right to invoke an authorizer is a statement in the
    // function's resource policy (re:Post "api-gateway-rest-api-lambda-integrations").
    call(
        "lambda",
        "AddPermission",
        &[("lambda:AddPermission", FUNCTION)],
    ),
    call(
        "lambda",
        "RemovePermission",
        &[("lambda:RemovePermission", FUNCTION)],
    ),
    call("lambda", "GetPolicy", &[("lambda:GetPolicy", FUNCTION)]),
];

/// What IAM must allow for `operation` of `service`; `None` for an operation the
/// table does not know (a test keeps every call site in the table).
pub fn needs(service: &str, operation: &str) -> Option<&'static [(&'static str, &'static str)]> {
    CALLS
        .iter()
        .find(|c| c.service == service && c.operation == operation)
        .map(|c| c.needs)
}

/// The table as the Markdown rows of `docs/aws-calls.md`.
pub fn markdown_table() -> String {
    let mut out = String::from("| service | operation | IAM actions |\n| --- | --- | --- |\n");
    for c in CALLS {
        let mut actions: Vec<String> = Vec::new();
        for (action, _) in c.needs {
            let action = format!("`{action}`");
            // An action needed on two kinds of resource is listed once.
            if !actions.contains(&action) {
                actions.push(action);
            }
        }
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            c.service,
            c.operation,
            actions.join(", ")
        ));
    }
    out
}

/// IAM's wildcard match (`*` any run, `?` one character), case-sensitive as for
/// resources. Action names are matched case-insensitively by the caller.
pub fn iam_match(value: &str, pattern: &str) -> bool {
    fn go(v: &[u8], p: &[u8]) -> bool {
        match p.split_first() {
            None => v.is_empty(),
            Some((b'*', rest)) => (0..=v.len()).any(|i| go(&v[i..], rest)),
            Some((b'?', rest)) => !v.is_empty() && go(&v[1..], rest),
            Some((c, rest)) => v.first() == Some(c) && go(&v[1..], rest),
        }
    }
    go(value.as_bytes(), pattern.as_bytes())
}

/// A policy document's statements as (actions, resources), Allow only.
pub fn allowed(policy: &serde_json::Value) -> Vec<(Vec<String>, Vec<String>)> {
    let strings = |v: &serde_json::Value| -> Vec<String> {
        match v {
            serde_json::Value::String(s) => vec![s.clone()],
            serde_json::Value::Array(items) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    };
    policy["Statement"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|s| s["Effect"] == "Allow")
        .map(|s| (strings(&s["Action"]), strings(&s["Resource"])))
        .collect()
}

/// Whether some Allow statement of `statements` grants `action` on `resource`
/// (conditions aside).
pub fn grants(statements: &[(Vec<String>, Vec<String>)], action: &str, resource: &str) -> bool {
    statements.iter().any(|(actions, resources)| {
        actions
            .iter()
            .any(|a| iam_match(&action.to_lowercase(), &a.to_lowercase()))
            && resources.iter().any(|r| iam_match(resource, r))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::Path;

    /// The constant names call sites use for each service.
    const SERVICE_CONSTS: [(&str, &str); 7] = [
        ("SQS", "sqs"),
        ("APIGW", "apigateway"),
        ("ACM", "acm"),
        ("R53", "route53"),
        ("IAM", "iam"),
        ("LOGS", "logs"),
        ("LAMBDA", "lambda"),
    ];

    fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("actions.rs") {
                out.push((
                    path.display().to_string(),
                    std::fs::read_to_string(&path).unwrap(),
                ));
            }
        }
    }

    /// Every `.call(SERVICE, "Operation"` in the operator's sources.
    fn call_sites() -> BTreeSet<(String, String)> {
        let mut files = Vec::new();
        sources(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        let mut found = BTreeSet::new();
        for (path, text) in files {
            for (at, _) in text.match_indices(".call(") {
                let rest = text[at + ".call(".len()..].trim_start();
                let ident: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                let after = rest[ident.len()..].trim_start();
                let Some(after) = after.strip_prefix(',') else {
                    continue; // some other `.call(`
                };
                let Some(quoted) = after.trim_start().strip_prefix('"') else {
                    continue;
                };
                let operation = &quoted[..quoted.find('"').unwrap()];
                let service = SERVICE_CONSTS
                    .iter()
                    .find(|(c, _)| *c == ident)
                    .map(|(_, s)| *s)
                    .unwrap_or_else(|| {
                        panic!("{path}: call through unknown service constant {ident}")
                    });
                found.insert((service.to_owned(), operation.to_owned()));
            }
        }
        found
    }

    fn chart_policy(file: &str) -> serde_json::Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../charts/hookline/files")
            .join(file);
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// The log tells reads from changes by the operation's name
    /// ([`crate::aws::limits::is_read`]); IAM says it independently for API Gateway,
    /// whose actions are HTTP verbs: every call is a read exactly when all it needs is
    /// `GET` (or, elsewhere, actions that get, list or describe).
    #[test]
    fn reads_by_name_are_reads_by_iam() {
        let read_action = |action: &str| {
            let verb = action.split_once(':').map_or(action, |(_, v)| v);
            verb == "GET"
                || ["Get", "List", "Describe"]
                    .iter()
                    .any(|p| verb.starts_with(p))
        };
        for c in CALLS {
            let by_iam = c.needs.iter().all(|(action, _)| read_action(action));
            assert_eq!(
                crate::aws::limits::is_read(c.operation),
                by_iam,
                "{} {}: needs {:?}",
                c.service,
                c.operation,
                c.needs
            );
        }
    }

    #[test]
    fn every_call_site_is_in_the_table_and_every_entry_is_called() {
        let sites = call_sites();
        assert!(sites.len() > 50, "the scan found only {sites:?}");
        let missing: Vec<_> = sites
            .iter()
            .filter(|(s, o)| needs(s, o).is_none())
            .collect();
        assert!(
            missing.is_empty(),
            "calls without IAM actions in aws/actions.rs: {missing:?}"
        );
        let stale: Vec<_> = CALLS
            .iter()
            .filter(|c| !sites.contains(&(c.service.to_owned(), c.operation.to_owned())))
            .map(|c| c.operation)
            .collect();
        assert!(stale.is_empty(), "table entries nothing calls: {stale:?}");
    }

    #[test]
    fn the_chart_policy_allows_every_action_on_its_resource_in_any_partition() {
        for partition in ["aws", "aws-cn", "aws-us-gov"] {
            let text = chart_policy("operator-iam-policy.json")
                .to_string()
                .replace("PARTITION", partition);
            let statements = allowed(&serde_json::from_str(&text).unwrap());
            for c in CALLS {
                for (action, resource) in c.needs {
                    let resource = resource.replace("PARTITION", partition);
                    assert!(
                        grants(&statements, action, &resource),
                        "{partition}: {} {} needs {action} on {resource}",
                        c.service,
                        c.operation
                    );
                }
            }
        }
    }

    #[test]
    fn the_chart_policy_grants_no_action_the_table_does_not_need() {
        let needed: BTreeSet<String> = CALLS
            .iter()
            .flat_map(|c| c.needs.iter().map(|(a, _)| a.to_lowercase()))
            .collect();
        for (actions, _) in allowed(&chart_policy("operator-iam-policy.json")) {
            for action in actions {
                assert!(
                    needed.contains(&action.to_lowercase()),
                    "the chart policy grants {action}, which no call needs"
                );
            }
        }
    }

    #[test]
    fn the_chart_policies_name_no_partition() {
        for file in [
            "operator-iam-policy.json",
            "worker-iam-policy.json",
            "worker-iam-policy-pod-identity.json",
            "keda-iam-policy.json",
            "trust-irsa.json",
        ] {
            let text = chart_policy(file).to_string();
            assert!(!text.contains("arn:aws:"), "{file} hard-codes a partition");
        }
    }

    #[test]
    fn the_docs_list_the_table() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/aws-calls.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let table = markdown_table();
        assert!(
            doc.contains(&table),
            "docs/aws-calls.md is stale; its IAM table should read:\n{table}"
        );
    }

    /// The names and types `ChangeOnlyTheGatewayRecords` allows, with `HOSTNAME`
    /// filled in, against what a gateway writes and what external-dns would own.
    #[test]
    fn the_chart_policy_changes_only_the_gateways_records() {
        let policy = chart_policy("operator-iam-policy.json")
            .to_string()
            .replace("HOSTNAME", "hooks.example.com");
        let policy: serde_json::Value = serde_json::from_str(&policy).unwrap();
        let statements = policy["Statement"].as_array().unwrap();
        let changing: Vec<_> = statements
            .iter()
            .filter(|s| s.to_string().contains("route53:ChangeResourceRecordSets\""))
            .collect();
        assert_eq!(changing.len(), 1, "one statement allows record changes");
        let condition = &changing[0]["Condition"];
        let patterns: Vec<&str> = condition["ForAllValues:StringLike"]
            ["route53:ChangeResourceRecordSetsNormalizedRecordNames"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p.as_str())
            .collect();
        let allowed = |name: &str| patterns.iter().any(|p| iam_match(name, p));
        // What the gateway writes: alias A/AAAA, the ownership TXT, ACM's validation
        // CNAME (names as Route 53 normalizes them: lowercase, no trailing dot).
        for name in [
            "hooks.example.com",
            crate::names::owner_record_name("hooks.example.com").as_str(),
            "_3639ac514e785e898d2646601fa951d5.hooks.example.com",
        ] {
            assert!(allowed(name), "{name} must be writable");
        }
        // What external-dns (or anyone else) owns in the same zone.
        for name in [
            "example.com",
            "api.example.com",
            "www.hooks.example.com",
            "hooks.example.com.evil.com",
            "_hookline.other.example.com",
        ] {
            assert!(!allowed(name), "{name} must not be writable");
        }
        let types =
            condition["ForAllValues:StringEquals"]["route53:ChangeResourceRecordSetsRecordTypes"]
                .as_array()
                .unwrap();
        assert_eq!(types.len(), 4, "A, AAAA, CNAME, TXT only: {types:?}");
    }

    #[test]
    fn iam_wildcards() {
        assert!(iam_match(
            "arn:aws:sqs:r:1:hl-a.fifo",
            "arn:aws:sqs:r:1:hl-*"
        ));
        assert!(!iam_match(
            "arn:aws:sqs:r:1:hx-a.fifo",
            "arn:aws:sqs:r:1:hl-*"
        ));
        assert!(iam_match("anything", "*"));
        assert!(iam_match("arn:aws:x", "arn:aws:?"));
        assert!(!iam_match("arn:aws:xy", "arn:aws:?"));
        assert!(
            !iam_match("ARN:aws:x", "arn:aws:?"),
            "resources are case-sensitive"
        );
    }
}
