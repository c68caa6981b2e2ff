//! AWS names derived from Kubernetes names (pure). Names are stable for a resource,
//! readable, within each service's limits, and prefixed per cluster (`--name-prefix`)
//! so two clusters in one account do not collide. Ownership is still decided by the
//! uid tag, never by the name.

use aws_lc_rs::digest;

/// Longest SQS base name: 80 characters less `-dlq.fifo`.
pub const MAX_QUEUE_BASE: usize = 71;
/// IAM role names.
pub const MAX_ROLE: usize = 64;

/// `text`, cut to `max` characters with a short hash of the whole when it is longer,
/// so two long names that share a prefix stay distinct.
fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let suffix = short_hash(text);
    let keep = max - suffix.len() - 1;
    format!("{}-{suffix}", text[..keep].trim_end_matches('-'))
}

/// Characters SQS and IAM accept: letters, digits, `-`, `_`. Kubernetes names may
/// also hold `.`.
fn safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Eight hex characters of SHA-256 of `text`.
fn short_hash(text: &str) -> String {
    digest::digest(&digest::SHA256, text.as_bytes()).as_ref()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `<prefix>-<namespace>-<name>` made safe, cut to fit, and ended by a hash of
/// `namespace/name`: `a-b/c` and `a/b-c` read alike but must not share a queue.
fn namespaced(prefix: &str, namespace: &str, name: &str, max: usize) -> String {
    let hash = short_hash(&format!("{namespace}/{name}"));
    let readable = safe(&format!("{prefix}-{namespace}-{name}"));
    let keep = readable.len().min(max - hash.len() - 1);
    format!("{}-{hash}", readable[..keep].trim_end_matches('-'))
}

/// Base name of a webhook's queue pair (`<base>.fifo`, `<base>-dlq.fifo`).
pub fn queue_base(prefix: &str, namespace: &str, name: &str) -> String {
    namespaced(prefix, namespace, name, MAX_QUEUE_BASE)
}

/// The API Gateway → SQS role of a gateway.
pub fn gateway_role(prefix: &str, gateway: &str) -> String {
    bounded(&safe(&format!("{prefix}-gw-{gateway}")), MAX_ROLE)
}

/// The IRSA role of one namespace's workers, under the `/hookline/` path like the
/// gateway roles (the operator's policy allows `PREFIX-ns-*` there).
pub fn namespace_role(prefix: &str, namespace: &str) -> String {
    bounded(&safe(&format!("{prefix}-ns-{namespace}")), MAX_ROLE)
}

/// The REST API name of a gateway.
pub fn gateway_api(prefix: &str, gateway: &str) -> String {
    bounded(&format!("{prefix}-{gateway}"), 128)
}

/// The access-log group of a gateway.
pub fn gateway_log_group(prefix: &str, gateway: &str) -> String {
    format!("/hookline/{prefix}/gateways/{gateway}")
}

/// The API key (and usage plan) of a webhook.
pub fn webhook_api_key(prefix: &str, namespace: &str, name: &str) -> String {
    namespaced(prefix, namespace, name, 128)
}

/// The partition (`aws`, `aws-cn`, `aws-us-gov`, ...) an ARN belongs to. ARNs that
/// AWS returns are the only source: the partition follows from the credentials'
/// account, and a region name does not always tell it.
pub fn partition_of(arn: &str) -> Option<&str> {
    let mut parts = arn.split(':');
    match (parts.next(), parts.next()) {
        (Some("arn"), Some(partition)) if !partition.is_empty() => Some(partition),
        _ => None,
    }
}

/// The ARN pattern of every queue under `prefix` in `partition` and `region` (any
/// account), which a gateway's role may send to.
pub fn queue_arn_pattern(partition: &str, region: &str, prefix: &str) -> String {
    format!("arn:{partition}:sqs:{region}:*:{prefix}-*")
}

/// The TXT record proving which cluster and gateway own a hostname.
pub fn owner_record_name(hostname: &str) -> String {
    format!("_hookline.{hostname}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_readable() {
        assert!(queue_base("hl", "payments", "stripe").starts_with("hl-payments-stripe-"));
        assert!(queue_base("hl", "team.a", "web.hook").starts_with("hl-team-a-web-hook-"));
        assert_eq!(
            queue_base("hl", "payments", "stripe").len(),
            "hl-payments-stripe-".len() + 8
        );
        assert_eq!(gateway_role("hl", "public"), "hl-gw-public");
    }

    #[test]
    fn long_names_stay_within_limits_and_distinct() {
        let ns = "a".repeat(63);
        let a = queue_base("hl", &ns, &"x".repeat(60));
        let b = queue_base("hl", &ns, &format!("{}y", "x".repeat(59)));
        assert!(
            a.len() <= MAX_QUEUE_BASE && b.len() <= MAX_QUEUE_BASE,
            "{a} {b}"
        );
        assert_ne!(a, b);
        assert_eq!(a, queue_base("hl", &ns, &"x".repeat(60)), "stable");
        assert!(gateway_role("hl", &"g".repeat(253)).len() <= MAX_ROLE);
    }

    #[test]
    fn the_partition_comes_from_the_arn() {
        for (arn, partition) in [
            ("arn:aws:iam::123456789012:role/hookline/hl-gw-a", "aws"),
            (
                "arn:aws-cn:iam::123456789012:role/hookline/hl-gw-a",
                "aws-cn",
            ),
            ("arn:aws-us-gov:sqs:us-gov-west-1:1:hl-a.fifo", "aws-us-gov"),
        ] {
            assert_eq!(partition_of(arn), Some(partition), "{arn}");
        }
        assert_eq!(partition_of("hl-a.fifo"), None);
        assert_eq!(partition_of("arn::sqs:x"), None);
        assert_eq!(
            queue_arn_pattern("aws-cn", "cn-north-1", "hl"),
            "arn:aws-cn:sqs:cn-north-1:*:hl-*"
        );
    }

    #[test]
    fn namespace_and_name_boundaries_do_not_collide() {
        assert_ne!(queue_base("hl", "a-b", "c"), queue_base("hl", "a", "b-c"));
    }
}
