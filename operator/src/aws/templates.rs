//! The mapping template that turns a webhook request into an SQS `SendMessage`
//! call (pure functions, no I/O).
//!
//! API Gateway's AWS integration posts the rendered template, form-encoded, to the
//! SQS query API. It uses only the Velocity subset that both API Gateway and the
//! emulators run: `$input.body`, `$input.params('name')`, `$input.path('$.a.b')` and
//! `$util.urlEncode(...)`; no `#if` or `#foreach`. Header names are lowercase:
//! HTTP/2 sends them so, and the emulator matches only lowercase names.
//!
//! The message format is `hookline_worker::wire`'s: one attribute per forwarded
//! header, `Header.<name>`, its value behind a `:` marker so an absent header is
//! not an empty (refused) attribute.

use hookline_worker::wire::{HEADER_ATTRIBUTE_PREFIX, HEADER_VALUE_MARKER, MAX_FORWARDED_HEADERS};

/// Where the message group id comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupKey {
    /// One fixed group.
    Constant(String),
    /// A request header (absent: group `h:`).
    Header(String),
    /// A field of the JSON body (absent: group `b:`).
    BodyField(String),
}

/// Where the deduplication id comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DedupKey {
    /// The queue's content-based deduplication (SHA-256 of the body).
    ContentBased,
    /// A request header. A request without it is refused (400): an empty id would
    /// make SQS treat every such request as a duplicate of the first.
    Header(String),
}

/// What a route's template needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTemplate {
    /// Message group.
    pub group: GroupKey,
    /// Deduplication id.
    pub dedup: DedupKey,
    /// Headers to forward, any case (at most [`MAX_FORWARDED_HEADERS`]).
    pub headers: Vec<String>,
}

/// A template the operator cannot build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// SQS carries at most ten attributes per message.
    #[error("{0} headers to forward; at most {MAX_FORWARDED_HEADERS} fit in one SQS message")]
    TooManyHeaders(usize),
}

/// Content types a route accepts; others get `415` (passthrough `NEVER`). Binary
/// bodies do not survive the text template and are not accepted.
pub const CONTENT_TYPES: [&str; 5] = [
    "application/json",
    "application/x-www-form-urlencoded",
    "text/plain",
    "application/xml",
    "text/xml",
];

/// The form body of the SQS call, as a Velocity template.
pub fn request_template(route: &RouteTemplate) -> Result<String, TemplateError> {
    let mut headers: Vec<String> = route
        .headers
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    headers.sort();
    headers.dedup();
    if headers.len() > MAX_FORWARDED_HEADERS {
        return Err(TemplateError::TooManyHeaders(headers.len()));
    }
    let marker = form_encode(&HEADER_VALUE_MARKER.to_string());
    let mut parts = vec![
        "Action=SendMessage".to_owned(),
        "MessageBody=$util.urlEncode($input.body)".to_owned(),
    ];
    parts.push(match &route.group {
        GroupKey::Constant(value) => format!("MessageGroupId={}", form_encode(value)),
        GroupKey::Header(name) => format!(
            "MessageGroupId=h{marker}$util.urlEncode($input.params('{}'))",
            name.to_ascii_lowercase()
        ),
        GroupKey::BodyField(path) => {
            format!("MessageGroupId=b{marker}$util.urlEncode($input.path('{path}'))")
        }
    });
    if let DedupKey::Header(name) = &route.dedup {
        parts.push(format!(
            "MessageDeduplicationId=$util.urlEncode($input.params('{}'))",
            name.to_ascii_lowercase()
        ));
    }
    for (i, header) in headers.iter().enumerate() {
        let n = i + 1;
        parts.push(format!(
            "MessageAttribute.{n}.Name={}",
            form_encode(&format!("{HEADER_ATTRIBUTE_PREFIX}{header}"))
        ));
        parts.push(format!("MessageAttribute.{n}.Value.DataType=String"));
        parts.push(format!(
            "MessageAttribute.{n}.Value.StringValue={marker}$util.urlEncode($input.params('{header}'))"
        ));
    }
    Ok(parts.join("&"))
}

/// Percent-encodes everything but ASCII letters and digits. Besides form safety,
/// this keeps `$` and `#` of a constant from reading as Velocity.
pub fn form_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The API Gateway URI of an SQS queue, from the queue's ARN.
pub fn sqs_integration_uri(queue_arn: &str) -> Option<String> {
    // arn:aws:sqs:<region>:<account>:<name>
    let mut parts = queue_arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("sqs"), Some(region), Some(account), Some(name)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    Some(format!(
        "arn:{partition}:apigateway:{region}:sqs:path/{account}/{name}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(group: GroupKey, dedup: DedupKey, headers: &[&str]) -> RouteTemplate {
        RouteTemplate {
            group,
            dedup,
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
        }
    }

    #[test]
    fn templates_by_grouping_and_dedup() {
        let cases = [
            (
                route(
                    GroupKey::Constant("all".into()),
                    DedupKey::ContentBased,
                    &[],
                ),
                "Action=SendMessage&MessageBody=$util.urlEncode($input.body)&MessageGroupId=all",
            ),
            (
                route(
                    GroupKey::Header("X-Shopify-Shop-Domain".into()),
                    DedupKey::Header("X-Shopify-Webhook-Id".into()),
                    &[],
                ),
                "Action=SendMessage&MessageBody=$util.urlEncode($input.body)\
                 &MessageGroupId=h%3A$util.urlEncode($input.params('x-shopify-shop-domain'))\
                 &MessageDeduplicationId=$util.urlEncode($input.params('x-shopify-webhook-id'))",
            ),
            (
                route(
                    GroupKey::BodyField("$.data.object.customer".into()),
                    DedupKey::ContentBased,
                    &["Stripe-Signature"],
                ),
                "Action=SendMessage&MessageBody=$util.urlEncode($input.body)\
                 &MessageGroupId=b%3A$util.urlEncode($input.path('$.data.object.customer'))\
                 &MessageAttribute.1.Name=Header%2Estripe%2Dsignature\
                 &MessageAttribute.1.Value.DataType=String\
                 &MessageAttribute.1.Value.StringValue=%3A$util.urlEncode($input.params('stripe-signature'))",
            ),
        ];
        for (route, expected) in cases {
            assert_eq!(request_template(&route).unwrap(), expected);
        }
    }

    #[test]
    fn headers_are_lowercased_deduplicated_and_numbered() {
        let t = request_template(&route(
            GroupKey::Constant("g".into()),
            DedupKey::ContentBased,
            &["User-Agent", "content-type", "user-agent"],
        ))
        .unwrap();
        assert!(
            t.contains("MessageAttribute.1.Name=Header%2Econtent%2Dtype"),
            "{t}"
        );
        assert!(
            t.contains("MessageAttribute.2.Name=Header%2Euser%2Dagent"),
            "{t}"
        );
        assert!(!t.contains("MessageAttribute.3."), "{t}");
    }

    #[test]
    fn a_constant_cannot_inject_velocity_or_form_fields() {
        let t = request_template(&route(
            GroupKey::Constant("$input.body&Action=DeleteQueue#x".into()),
            DedupKey::ContentBased,
            &[],
        ))
        .unwrap();
        assert!(
            t.ends_with("MessageGroupId=%24input%2Ebody%26Action%3DDeleteQueue%23x"),
            "{t}"
        );
    }

    #[test]
    fn at_most_nine_headers() {
        let many: Vec<String> = (0..10).map(|i| format!("x-h{i}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let err = request_template(&route(
            GroupKey::Constant("g".into()),
            DedupKey::ContentBased,
            &refs,
        ));
        assert_eq!(err, Err(TemplateError::TooManyHeaders(10)));
    }

    #[test]
    fn the_integration_uri_follows_from_the_queue_arn() {
        assert_eq!(
            sqs_integration_uri("arn:aws:sqs:eu-west-1:123456789012:hl-payments-stripe.fifo")
                .as_deref(),
            Some("arn:aws:apigateway:eu-west-1:sqs:path/123456789012/hl-payments-stripe.fifo")
        );
        assert_eq!(sqs_integration_uri("arn:aws:sns:eu-west-1:1:x"), None);
        assert_eq!(
            sqs_integration_uri("arn:aws-cn:sqs:cn-north-1:123456789012:hl-a.fifo").as_deref(),
            Some("arn:aws-cn:apigateway:cn-north-1:sqs:path/123456789012/hl-a.fifo")
        );
        assert_eq!(
            sqs_integration_uri("arn:aws-us-gov:sqs:us-gov-west-1:123456789012:hl-a.fifo")
                .as_deref(),
            Some("arn:aws-us-gov:apigateway:us-gov-west-1:sqs:path/123456789012/hl-a.fifo")
        );
    }
}
