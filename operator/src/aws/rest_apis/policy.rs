//! The REST API's resource policy (pure): the source-IP allow lists as a policy, and
//! its comparison with the form AWS stores it in.

use serde_json::{Value, json};

/// The resource policy that limits routes to source CIDRs: everything may be
/// invoked, except a listed route from outside its list. `None` without lists.
pub fn source_ip_policy(routes: &[(String, Vec<String>)]) -> Option<Value> {
    let mut statements = vec![json!({
        "Effect": "Allow",
        "Principal": "*",
        "Action": "execute-api:Invoke",
        "Resource": "execute-api:/*"
    })];
    let mut routes: Vec<_> = routes
        .iter()
        .filter(|(_, cidrs)| !cidrs.is_empty())
        .collect();
    if routes.is_empty() {
        return None;
    }
    routes.sort();
    for (path, cidrs) in routes {
        statements.push(json!({
            "Effect": "Deny",
            "Principal": "*",
            "Action": "execute-api:Invoke",
            "Resource": format!("execute-api:/*/POST{path}"),
            "Condition": {"NotIpAddress": {"aws:SourceIp": cidrs}}
        }));
    }
    Some(json!({"Version": "2012-10-17", "Statement": statements}))
}

/// API Gateway returns the policy JSON-escaped (`{\"Version\":…}`); reads both forms.
pub(super) fn decode_policy(text: &str) -> Option<Value> {
    serde_json::from_str::<Value>(text)
        .ok()
        .filter(Value::is_object)
        .or_else(|| {
            let unescaped: String = serde_json::from_str(&format!("\"{text}\"")).ok()?;
            serde_json::from_str(&unescaped).ok()
        })
}

/// Whether the policy API Gateway stores for `api_id` (`stored`, as decoded) is
/// `desired`. AWS does not keep a resource policy as written: it expands the
/// `execute-api:/…` shorthand to `arn:PARTITION:execute-api:REGION:ACCOUNT:API/…`,
/// writes a one-element array as a single value, and may reorder keys; compared as
/// written, the two never match and every resync would update the policy and
/// redeploy. Both sides are normalised first (see [`normalise_policy`]).
pub fn policies_match(desired: Option<&Value>, stored: Option<&Value>, api_id: &str) -> bool {
    match (desired, stored) {
        (None, None) => true,
        (Some(desired), Some(stored)) => {
            normalise_policy(desired, api_id) == normalise_policy(stored, api_id)
        }
        _ => false,
    }
}

/// A policy in one canonical form: `Statement` always an array, sorted; in every
/// statement `Action`/`NotAction`/`Resource`/`NotResource` and every principal and
/// condition value a sorted array of strings; this API's expanded ARNs written back
/// as the `execute-api:/` shorthand; `{"AWS": "*"}` as `"*"`.
pub fn normalise_policy(policy: &Value, api_id: &str) -> Value {
    let Some(object) = policy.as_object() else {
        return policy.clone();
    };
    let mut out = serde_json::Map::new();
    for (key, value) in object {
        if key == "Statement" {
            let mut statements: Vec<Value> = as_list(value)
                .iter()
                .map(|s| normalise_statement(s, api_id))
                .collect();
            statements.sort_by_key(Value::to_string);
            out.insert(key.clone(), Value::Array(statements));
        } else {
            out.insert(key.clone(), value.clone());
        }
    }
    Value::Object(out)
}

fn as_list(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    }
}

/// A sorted, de-duplicated array of strings (numbers and booleans as AWS prints them).
fn string_set(value: &Value, rewrite: impl Fn(&str) -> String) -> Value {
    let mut items: Vec<String> = as_list(value)
        .iter()
        .map(|v| match v {
            Value::String(s) => rewrite(s),
            other => rewrite(&other.to_string()),
        })
        .collect();
    items.sort();
    items.dedup();
    Value::Array(items.into_iter().map(Value::String).collect())
}

fn normalise_statement(statement: &Value, api_id: &str) -> Value {
    let Some(object) = statement.as_object() else {
        return statement.clone();
    };
    let shorthand = |resource: &str| execute_api_shorthand(resource, api_id);
    let mut out = serde_json::Map::new();
    for (key, value) in object {
        let normalised = match key.as_str() {
            "Action" | "NotAction" => string_set(value, str::to_owned),
            "Resource" | "NotResource" => string_set(value, shorthand),
            "Principal" | "NotPrincipal" => match value {
                Value::Object(principals) => {
                    let anyone = principals.len() == 1
                        && principals
                            .get("AWS")
                            .is_some_and(|aws| string_set(aws, str::to_owned) == json!(["*"]));
                    if anyone {
                        json!("*")
                    } else {
                        Value::Object(
                            principals
                                .iter()
                                .map(|(k, v)| (k.clone(), string_set(v, str::to_owned)))
                                .collect(),
                        )
                    }
                }
                other => other.clone(),
            },
            "Condition" => match value {
                Value::Object(operators) => Value::Object(
                    operators
                        .iter()
                        .map(|(operator, keys)| {
                            let keys = match keys {
                                Value::Object(keys) => Value::Object(
                                    keys.iter()
                                        .map(|(k, v)| (k.clone(), string_set(v, str::to_owned)))
                                        .collect(),
                                ),
                                other => other.clone(),
                            };
                            (operator.clone(), keys)
                        })
                        .collect(),
                ),
                other => other.clone(),
            },
            _ => value.clone(),
        };
        out.insert(key.clone(), normalised);
    }
    Value::Object(out)
}

/// `arn:PARTITION:execute-api:REGION:ACCOUNT:API_ID/rest` → `execute-api:/rest` for
/// this API; any other text unchanged.
fn execute_api_shorthand(resource: &str, api_id: &str) -> String {
    let parts: Vec<&str> = resource.splitn(6, ':').collect();
    if let [arn, _partition, "execute-api", _region, _account, tail] = parts.as_slice()
        && *arn == "arn"
        && let Some(rest) = tail.strip_prefix(api_id)
        && (rest.is_empty() || rest.starts_with('/'))
    {
        return format!("execute-api:{}", if rest.is_empty() { "/" } else { rest });
    }
    resource.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ip_policy_denies_listed_routes_from_elsewhere() {
        assert_eq!(source_ip_policy(&[("/a".into(), vec![])]), None);
        let policy = source_ip_policy(&[
            ("/stripe".into(), vec!["3.18.12.63/32".into()]),
            ("/open".into(), vec![]),
        ])
        .unwrap();
        let statements = policy["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 2);
        assert_eq!(statements[1]["Resource"], "execute-api:/*/POST/stripe");
        assert_eq!(
            statements[1]["Condition"]["NotIpAddress"]["aws:SourceIp"][0],
            "3.18.12.63/32"
        );
    }

    #[test]
    fn policies_read_back_in_either_form() {
        let policy = json!({"Version": "2012-10-17", "Statement": []});
        assert_eq!(decode_policy(&policy.to_string()), Some(policy.clone()));
        let escaped = policy.to_string().replace('"', "\\\"");
        assert_eq!(decode_policy(&escaped), Some(policy));
    }

    /// The policy Hookline writes against the forms AWS stores it in (shapes from
    /// GetRestApi outputs: expanded ARNs, single values for one-element arrays).
    #[test]
    fn policies_match_what_aws_stores() {
        let desired = source_ip_policy(&[
            ("/stripe".into(), vec!["3.18.12.63/32".into()]),
            (
                "/github".into(),
                vec!["192.30.252.0/22".into(), "185.199.108.0/22".into()],
            ),
        ]);
        let arn = "arn:aws:execute-api:us-west-2:767553057089:u1hp5d8r0b";
        let stored = json!({
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "execute-api:Invoke",
                    "Resource": format!("{arn}/*")
                },
                {
                    "Condition": {"NotIpAddress": {"aws:SourceIp": ["185.199.108.0/22", "192.30.252.0/22"]}},
                    "Resource": format!("{arn}/*/POST/github"),
                    "Action": "execute-api:Invoke",
                    "Principal": {"AWS": "*"},
                    "Effect": "Deny"
                },
                {
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": ["execute-api:Invoke"],
                    "Resource": [format!("{arn}/*/POST/stripe")],
                    "Condition": {"NotIpAddress": {"aws:SourceIp": "3.18.12.63/32"}}
                }
            ]
        });
        let cases: [(&str, Option<Value>, Option<Value>, bool); 7] = [
            (
                "as AWS stores it",
                desired.clone(),
                Some(stored.clone()),
                true,
            ),
            ("as written", desired.clone(), desired.clone(), true),
            ("no policy either side", None, None, true),
            ("policy to remove", None, Some(stored.clone()), false),
            ("policy to add", desired.clone(), None, false),
            (
                "another API's ARN",
                desired.clone(),
                Some(json!(
                    stored.to_string().replace("u1hp5d8r0b", "zzzzzzzzzz")
                ))
                .and_then(|v| v.as_str().and_then(|t| serde_json::from_str(t).ok())),
                false,
            ),
            (
                "a CIDR changed",
                desired.clone(),
                Some(json!(
                    stored.to_string().replace("3.18.12.63/32", "3.18.12.64/32")
                ))
                .and_then(|v| v.as_str().and_then(|t| serde_json::from_str(t).ok())),
                false,
            ),
        ];
        for (name, desired, stored, expected) in cases {
            assert_eq!(
                policies_match(desired.as_ref(), stored.as_ref(), "u1hp5d8r0b"),
                expected,
                "{name}"
            );
        }
        assert_eq!(
            execute_api_shorthand(
                "arn:aws-cn:execute-api:cn-north-1:1:u1hp5d8r0b",
                "u1hp5d8r0b"
            ),
            "execute-api:/"
        );
        assert_eq!(
            execute_api_shorthand("arn:aws:execute-api:r:1:u1hp5d8r0bX/*", "u1hp5d8r0b"),
            "arn:aws:execute-api:r:1:u1hp5d8r0bX/*",
            "a longer id is another API"
        );
    }
}
