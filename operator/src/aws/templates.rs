//! The mapping template that turns a webhook request into an SQS `SendMessage`
//! call, and the integration responses that turn SQS's answer into the caller's
//! status (pure functions, no I/O).
//!
//! API Gateway's AWS integration posts the rendered template, form-encoded, to the
//! SQS query API. What AWS does is only partly documented, so the template is
//! written to be right under every reading of it (docs/emulators.md has the
//! sources):
//!
//! - **Headers only.** `$input.params('x')` searches the path, then the query
//!   string, then the headers, so `?x-github-delivery=…` would set the dedup id.
//!   Values are read from `$input.params().header` instead.
//! - **Any header case.** AWS says header names are processed case-sensitively
//!   (for Lambda and HTTP integrations; whether that covers `AWS` integrations is
//!   not documented). HTTP/1.1 senders write `Stripe-Signature` or
//!   `X-GitHub-Delivery`, HTTP/2 sends lowercase. Each header is looked up under
//!   every spelling a sender may use ([`spellings`]), each result is URL-encoded
//!   (so it holds no `|`), the results are joined with `|`, and Java's
//!   `String.replaceAll` keeps the first non-empty one. Where lookups are
//!   case-insensitive every spelling finds the same value and one copy is kept;
//!   where they are case-sensitive exactly the one the sender used is found.
//! - **Values SQS accepts.** Message group and deduplication ids allow only
//!   ASCII letters, digits and punctuation, at most 128 characters. A group taken
//!   from a header or body field is the URL-encoded value (always in that set),
//!   cut to [`GROUP_VALUE_MAX`] characters: a deterministic function of the key;
//!   keys that share that prefix share a group, which keeps their order and costs
//!   only parallelism. A dedup id is never cut (two deliveries would collide):
//!   one longer than 128 characters is refused by SQS with 400.
//! - **No `#if` where an engine without it must run the route.** MiniStack (the
//!   bench's emulator that serves custom domains) models a small Velocity subset
//!   with no `#if` and no Java methods, and leaves a `#set` target unchanged when
//!   the right-hand side is unknown to it, as Velocity 1.7 does for null. Each
//!   value is therefore set twice: first from the lowercase spelling with
//!   `$util.urlEncode` alone, then by the `replaceAll` pick, which MiniStack skips.
//!   On AWS the second `#set` always has a non-null value and wins. The request
//!   template has no `#if`; the error responses use it (they only shape the
//!   caller's status and message).
//! - **Media types with parameters.** Stripe sends `application/json;
//!   charset=utf-8`. Whether AWS selects the `application/json` template for it is
//!   not documented, and LocalStack matches the Content-Type exactly, so each
//!   accepted type is registered bare and with the usual `charset` spellings
//!   ([`request_templates`]).
//!
//! The message format is `hookline_contract::wire`'s (the worker reads it back):
//! one attribute per forwarded header, `Header.<name>`, whose value is
//! [`ENCODED_HEADER_VALUE_MARKER`] followed by the URL-encoded header value (the
//! marker alone: absent), so an absent header is not an empty (refused) attribute.

use hookline_contract::wire::{
    ENCODED_HEADER_VALUE_MARKER, MAX_FORWARDED_HEADERS, QUERY_ATTRIBUTE, header_attribute_name,
};
use std::collections::HashMap;

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
    /// Headers to forward, any case (at most [`MAX_FORWARDED_HEADERS`], less one
    /// with `query`).
    pub headers: Vec<String>,
    /// Whether to forward the query string ([`QUERY_ATTRIBUTE`]): for the presets
    /// that sign the URL the provider called.
    pub query: bool,
}

/// A template the operator cannot build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// SQS carries at most ten attributes per message.
    #[error(
        "{0} headers and the query to forward; at most {MAX_FORWARDED_HEADERS} fit in one SQS message"
    )]
    TooManyHeaders(usize),
    /// Header names are spliced into the template; the CRD admits only these.
    #[error("header name {0:?} is not letters, digits and '-'")]
    InvalidHeaderName(String),
    /// The verify token is spliced into the handshake template as a string literal.
    #[error(
        "the handshake verify token must be 1 to {VERIFY_TOKEN_MAX} printable characters (no control characters or line breaks)"
    )]
    InvalidVerifyToken,
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

/// The `charset` parameters registered beside each bare content type, as senders
/// write them (Stripe: `application/json; charset=utf-8`).
const CHARSET_SUFFIXES: [&str; 4] = [
    "; charset=utf-8",
    "; charset=UTF-8",
    ";charset=utf-8",
    ";charset=UTF-8",
];

/// How many characters of the URL-encoded key a header or body-field group keeps,
/// so that `h:`/`b:` plus the key stays within SQS's 128.
pub const GROUP_VALUE_MAX: usize = 120;

/// The header map, read once. MiniStack has no `.header` map and keeps the first
/// `#set` (its flat map of lowercase headers, query and path); on AWS and
/// LocalStack the second replaces it with the headers alone.
const HEADERS: &str = "#set($hlHeaders = $input.params())#set($hlHeaders = $input.params().header)";

/// Velocity that sets `$hlQuery` to the request's query parameters as
/// `name=value` pairs, each URL-encoded, joined with `&`, in the order of
/// `$input.params().querystring` (a map of decoded values: REST APIs give templates
/// nothing closer to the raw query string). Needs `#foreach`, which MiniStack does
/// not run (docs/emulators.md).
const QUERY: &str = "#set($hlQuery = '')\
     #set($hlQueryMap = $input.params().querystring)\
     #foreach($hlName in $hlQueryMap.keySet())\
     #set($hlQuery = \"$hlQuery&$util.urlEncode($hlName)=$util.urlEncode($hlQueryMap.get($hlName))\")\
     #end\
     #set($hlQuery = $hlQuery.replaceAll('^&', ''))";

/// The request templates of a route: `template` under each accepted content type,
/// bare and with the usual `charset` parameters.
pub fn request_templates(template: &str) -> HashMap<String, String> {
    CONTENT_TYPES
        .iter()
        .flat_map(|t| {
            std::iter::once((*t).to_owned())
                .chain(CHARSET_SUFFIXES.iter().map(move |s| format!("{t}{s}")))
        })
        .map(|t| (t, template.to_owned()))
        .collect()
}

/// The spellings a header is looked up under: as configured, as its provider
/// writes it, in canonical Title-Case (what Go, Java and Ruby clients send over
/// HTTP/1.1) and in lowercase (HTTP/2), without repeats.
pub fn spellings(name: &str) -> Vec<String> {
    let lower = name.to_ascii_lowercase();
    let mut out: Vec<String> = Vec::with_capacity(4);
    for spelling in [
        name.to_owned(),
        provider_spelling(&lower),
        title_case(&lower),
        lower,
    ] {
        if !out.contains(&spelling) {
            out.push(spelling);
        }
    }
    out
}

/// How a provider writes a header when it is not plain Title-Case.
fn provider_spelling(lower: &str) -> String {
    match lower {
        "x-github-hook-id" => "X-GitHub-Hook-ID".to_owned(),
        "x-github-hook-installation-target-id" => "X-GitHub-Hook-Installation-Target-ID".to_owned(),
        _ => match lower.strip_prefix("x-github-") {
            Some(rest) => format!("X-GitHub-{}", title_case(rest)),
            None => title_case(lower),
        },
    }
}

fn title_case(lower: &str) -> String {
    lower
        .split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Velocity that sets `$var` to the URL-encoded value of header `name`, found
/// under any of its [`spellings`] (empty when absent). See the module docs.
fn pick_header(var: &str, name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let spellings = spellings(name);
    let mut out = String::new();
    let mut encoded = Vec::with_capacity(spellings.len());
    for (i, spelling) in spellings.iter().enumerate() {
        out.push_str(&format!(
            "#set(${var}_{i} = \"$!hlHeaders.get('{spelling}')\")"
        ));
        encoded.push(format!("$util.urlEncode(${var}_{i})"));
    }
    let lowercase = spellings.iter().position(|s| *s == lower).unwrap_or(0);
    out.push_str(&format!(
        "#set(${var} = \"$util.urlEncode(${var}_{lowercase})\")"
    ));
    out.push_str(&format!("#set(${var}_all = \"{}\")", encoded.join("|")));
    out.push_str(&format!(
        "#set(${var} = ${var}_all.replaceAll('^[|]+', '').replaceAll('[|].*$', ''))"
    ));
    out
}

/// Velocity that cuts `$var` to [`GROUP_VALUE_MAX`] characters (engines without
/// Java string methods keep it whole).
fn cut_group(var: &str) -> String {
    format!("#set(${var} = ${var}.replaceAll('(?<=^.{{{GROUP_VALUE_MAX}}}).+$', ''))")
}

fn check_name(name: &str) -> Result<(), TemplateError> {
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(TemplateError::InvalidHeaderName(name.to_owned()))
    }
}

/// The form body of the SQS call, as a Velocity template (one line: a stray
/// newline would become part of a form field).
pub fn request_template(route: &RouteTemplate) -> Result<String, TemplateError> {
    let mut headers: Vec<String> = route
        .headers
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    headers.sort();
    headers.dedup();
    if headers.len() + usize::from(route.query) > MAX_FORWARDED_HEADERS {
        return Err(TemplateError::TooManyHeaders(headers.len()));
    }
    for name in headers.iter().chain(match (&route.group, &route.dedup) {
        (GroupKey::Header(g), DedupKey::Header(d)) => vec![g, d],
        (GroupKey::Header(g), _) => vec![g],
        (_, DedupKey::Header(d)) => vec![d],
        _ => vec![],
    }) {
        check_name(name)?;
    }

    let marker = form_encode(&ENCODED_HEADER_VALUE_MARKER.to_string());
    let mut sets = String::from(HEADERS);
    let mut fields = vec![
        "Action=SendMessage".to_owned(),
        "MessageBody=$util.urlEncode($input.body)".to_owned(),
    ];
    match &route.group {
        GroupKey::Constant(value) => fields.push(format!("MessageGroupId={}", form_encode(value))),
        GroupKey::Header(name) => {
            sets.push_str(&pick_header("hlGroup", name));
            sets.push_str(&cut_group("hlGroup"));
            fields.push("MessageGroupId=h%3A$util.urlEncode($hlGroup)".to_owned());
        }
        GroupKey::BodyField(path) => {
            // `path` is `$.a.b` (the CRD's pattern): safe inside single quotes.
            sets.push_str(&format!(
                "#set($hlGroupRaw = \"$!input.path('{path}')\")\
                 #set($hlGroup = \"$util.urlEncode($hlGroupRaw)\")"
            ));
            sets.push_str(&cut_group("hlGroup"));
            fields.push("MessageGroupId=b%3A$util.urlEncode($hlGroup)".to_owned());
        }
    }
    if let DedupKey::Header(name) = &route.dedup {
        sets.push_str(&pick_header("hlDedup", name));
        fields.push("MessageDeduplicationId=$util.urlEncode($hlDedup)".to_owned());
    }
    for (i, header) in headers.iter().enumerate() {
        let n = i + 1;
        let var = format!("hlHeader{n}");
        sets.push_str(&pick_header(&var, header));
        fields.push(format!(
            "MessageAttribute.{n}.Name={}",
            form_encode(&header_attribute_name(header))
        ));
        fields.push(format!("MessageAttribute.{n}.Value.DataType=String"));
        fields.push(format!(
            "MessageAttribute.{n}.Value.StringValue={marker}$util.urlEncode(${var})"
        ));
    }
    if route.query {
        let n = headers.len() + 1;
        sets.push_str(QUERY);
        fields.push(format!(
            "MessageAttribute.{n}.Name={}",
            form_encode(QUERY_ATTRIBUTE)
        ));
        fields.push(format!("MessageAttribute.{n}.Value.DataType=String"));
        fields.push(format!(
            "MessageAttribute.{n}.Value.StringValue={marker}$util.urlEncode($hlQuery)"
        ));
    }
    Ok(sets + &fields.join("&"))
}

/// One integration response of a route: the method response status, the
/// `selectionPattern` matched against SQS's HTTP status (none: the default), and
/// the response template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteResponse {
    /// Method response status code.
    pub status: &'static str,
    /// Pattern on SQS's status code; `None` for the default (success) response.
    pub selection_pattern: Option<&'static str>,
    /// `application/json` response template.
    pub template: &'static str,
}

/// How SQS's answer reaches the caller. Only a request SQS refuses for what it
/// holds is final (400, or 413 for one too large); everything else makes the
/// provider retry (503): SQS answers throttling (`RequestThrottled`, `OverLimit`)
/// and IAM denials (a policy still propagating) with 403, a missing queue (being
/// repaired) with 400 or 404, and its own failures with 5xx. The 400 template
/// tells the final cases from the rest by SQS's error code; an engine without
/// `#if` (MiniStack) answers every 400 as 400.
pub const ROUTE_RESPONSES: [RouteResponse; 4] = [
    RouteResponse {
        status: "200",
        selection_pattern: None,
        template: r#"{"status":"accepted"}"#,
    },
    RouteResponse {
        status: "400",
        selection_pattern: Some("400"),
        template: concat!(
            "#set($hlError = $input.body)",
            "#if($hlError.contains('must be shorter than'))",
            "#set($context.responseOverride.status = 413)",
            r#"{"status":"rejected","message":"the request is larger than one SQS message holds (1 MiB, forwarded headers included)"}"#,
            "#elseif($hlError.contains('InvalidParameterValue') || $hlError.contains('InvalidMessageContents') || $hlError.contains('MissingParameter'))",
            r#"{"status":"rejected","message":"the request could not be queued"}"#,
            "#else",
            "#set($context.responseOverride.status = 503)",
            r#"{"status":"unavailable","message":"try again later"}"#,
            "#end",
        ),
    },
    RouteResponse {
        status: "413",
        // SQS never answers 413: this entry only declares the method response
        // that the 400 template overrides to.
        selection_pattern: Some("413"),
        template: r#"{"status":"rejected","message":"the request is larger than one SQS message holds (1 MiB, forwarded headers included)"}"#,
    },
    RouteResponse {
        status: "503",
        selection_pattern: Some("40[1-9]|4[1-9][0-9]|5[0-9][0-9]"),
        template: r#"{"status":"unavailable","message":"try again later"}"#,
    },
];

/// A provider's `GET` verification handshake, as the route answers it: a `GET`
/// method on the Webhook's resource with a `MOCK` integration, whose integration
/// response renders [`handshake_template`]. The request never reaches the queue.
#[derive(Clone, PartialEq, Eq)]
pub enum Handshake {
    /// Meta (WhatsApp, Messenger, Instagram): `hub.mode=subscribe` and
    /// `hub.verify_token` equal to this token get `hub.challenge` back; anything
    /// else gets 403.
    Meta {
        /// The verify token configured in the Meta app.
        verify_token: String,
    },
    /// Dropbox: the `challenge` query parameter echoed back.
    Dropbox,
}

/// Keeps the verify token out of logs and error messages (it is a shared secret,
/// if a low-value one), and so out of the steady-state fingerprint, which hashes a
/// plan's `Debug` (`controller::steady::fingerprint`): a new token is seen by
/// `Checks::route_matches`, which reads the `GET` and compares its template.
impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Meta { .. } => f.write_str("Meta { verify_token: <redacted> }"),
            Self::Dropbox => f.write_str("Dropbox"),
        }
    }
}

/// The longest verify token accepted: the template holds it, and API Gateway caps
/// a mapping template's size; no provider asks for more.
pub const VERIFY_TOKEN_MAX: usize = 256;

/// The `MOCK` integration's request template: it only picks the integration
/// response (200); the handshake's answer is rendered by [`handshake_template`].
pub const HANDSHAKE_REQUEST_TEMPLATE: &str = r#"{"statusCode": 200}"#;

/// The headers of a handshake's answer: the method response declares each
/// (`method.response.header.<name>`), the integration response maps it to this
/// static value. The challenge is echoed as plain text, never sniffed as HTML (what
/// Dropbox's documentation asks for: the challenge is whatever the caller sent).
pub const HANDSHAKE_HEADERS: [(&str, &str); 2] = [
    ("method.response.header.Content-Type", "'text/plain'"),
    ("method.response.header.X-Content-Type-Options", "'nosniff'"),
];

/// `#set` of a query parameter, defaulting to `''`: Velocity 1.7 leaves a `#set`
/// target unchanged when the value is null (absent), 2.x sets it to null, and
/// `$!` renders both as nothing.
fn query_value(variable: &str, parameter: &str) -> String {
    format!(
        "#set(${variable} = '')#set(${variable} = $input.params().querystring.get('{parameter}'))"
    )
}

/// What Java's `URLEncoder.encode(text, "UTF-8")` (API Gateway's `$util.urlEncode`)
/// makes of `text`: letters, digits and `.-*_` kept, a space as `+`, every other
/// UTF-8 byte as `%XX` (uppercase).
fn java_url_encode(text: &str) -> String {
    const KEPT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'.')
        .remove(b'-')
        .remove(b'*')
        .remove(b'_');
    // A literal `%20` in `text` is `%2520` here, so only spaces become `+`.
    percent_encoding::utf8_percent_encode(text, KEPT)
        .to_string()
        .replace("%20", "+")
}

/// The integration response template that answers `handshake`, from the query
/// string only (`$input.params()` would also read headers of the same name).
pub fn handshake_template(handshake: &Handshake) -> Result<String, TemplateError> {
    match handshake {
        Handshake::Meta { verify_token } => {
            if verify_token.is_empty()
                || verify_token.chars().count() > VERIFY_TOKEN_MAX
                || verify_token.chars().any(char::is_control)
            {
                return Err(TemplateError::InvalidVerifyToken);
            }
            // The token is compared URL-encoded: its encoding holds only letters,
            // digits and `.-*_+%`, so it needs no escaping as a string literal (how a
            // quote is escaped inside one differs between Velocity engines:
            // LocalStack's refuses Velocity's doubled quote).
            Ok(format!(
                "{}{}{}#if(\"$!hlMode\" == 'subscribe' && $util.urlEncode(\"$!hlToken\") == '{}' && \"$!hlChallenge\" != '')$!hlChallenge#else#set($context.responseOverride.status = 403)#end",
                query_value("hlMode", "hub.mode"),
                query_value("hlToken", "hub.verify_token"),
                query_value("hlChallenge", "hub.challenge"),
                java_url_encode(verify_token),
            ))
        }
        // No `#if`: an engine without it (MiniStack) answers this one too.
        Handshake::Dropbox => Ok(format!(
            "{}$!hlChallenge",
            query_value("hlChallenge", "challenge")
        )),
    }
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

    #[test]
    fn verify_tokens_are_url_encoded_as_java_does() {
        assert_eq!(
            java_url_encode("it's $ecret~ a*b.c-d_e%20é"),
            "it%27s+%24ecret%7E+a*b.c-d_e%2520%C3%A9"
        );
    }

    fn route(group: GroupKey, dedup: DedupKey, headers: &[&str]) -> RouteTemplate {
        RouteTemplate {
            group,
            dedup,
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            query: false,
        }
    }

    #[test]
    fn a_constant_group_with_content_dedup_needs_no_lookup() {
        let t = request_template(&route(
            GroupKey::Constant("all".into()),
            DedupKey::ContentBased,
            &[],
        ))
        .unwrap();
        assert_eq!(
            t,
            format!(
                "{HEADERS}Action=SendMessage&MessageBody=$util.urlEncode($input.body)&MessageGroupId=all"
            )
        );
        assert!(!t.contains('\n'), "{t}");
    }

    #[test]
    fn headers_come_from_the_header_map_never_the_query_string() {
        let t = request_template(&route(
            GroupKey::Header("X-Shopify-Shop-Domain".into()),
            DedupKey::Header("X-GitHub-Delivery".into()),
            &["Stripe-Signature"],
        ))
        .unwrap();
        assert!(t.starts_with(HEADERS), "{t}");
        assert!(!t.contains("$input.params('"), "{t}");
        assert!(t.contains("$!hlHeaders.get('X-GitHub-Delivery')"), "{t}");
        assert!(t.contains("$!hlHeaders.get('x-github-delivery')"), "{t}");
        assert!(t.contains("$!hlHeaders.get('Stripe-Signature')"), "{t}");
        assert!(t.contains("$!hlHeaders.get('stripe-signature')"), "{t}");
        assert!(
            t.contains("MessageGroupId=h%3A$util.urlEncode($hlGroup)"),
            "{t}"
        );
        assert!(
            t.contains("MessageDeduplicationId=$util.urlEncode($hlDedup)"),
            "{t}"
        );
        assert!(
            t.ends_with(
                "MessageAttribute.1.Name=Header%2Estripe%2Dsignature\
                 &MessageAttribute.1.Value.DataType=String\
                 &MessageAttribute.1.Value.StringValue=%25$util.urlEncode($hlHeader1)"
            ),
            "{t}"
        );
    }

    #[test]
    fn a_lookup_falls_back_to_lowercase_then_picks_the_first_spelling_found() {
        let v = pick_header("v", "X-Hub-Signature-256");
        assert_eq!(
            v,
            "#set($v_0 = \"$!hlHeaders.get('X-Hub-Signature-256')\")\
             #set($v_1 = \"$!hlHeaders.get('x-hub-signature-256')\")\
             #set($v = \"$util.urlEncode($v_1)\")\
             #set($v_all = \"$util.urlEncode($v_0)|$util.urlEncode($v_1)\")\
             #set($v = $v_all.replaceAll('^[|]+', '').replaceAll('[|].*$', ''))"
        );
    }

    #[test]
    fn spellings_cover_http1_senders_and_http2() {
        assert_eq!(
            spellings("stripe-signature"),
            ["stripe-signature", "Stripe-Signature"]
        );
        assert_eq!(
            spellings("x-github-delivery"),
            [
                "x-github-delivery",
                "X-GitHub-Delivery",
                "X-Github-Delivery"
            ]
        );
        assert_eq!(
            spellings("X-Shopify-Hmac-Sha256"),
            ["X-Shopify-Hmac-Sha256", "x-shopify-hmac-sha256"]
        );
        assert_eq!(
            spellings("X-GitHub-Hook-ID"),
            ["X-GitHub-Hook-ID", "X-Github-Hook-Id", "x-github-hook-id"]
        );
        assert_eq!(spellings("webhook-id"), ["webhook-id", "Webhook-Id"]);
    }

    #[test]
    fn groups_from_headers_and_bodies_are_encoded_and_cut() {
        for group in [
            GroupKey::Header("X-Repo".into()),
            GroupKey::BodyField("$.data.object.customer".into()),
        ] {
            let t = request_template(&route(group, DedupKey::ContentBased, &[])).unwrap();
            assert!(
                t.contains("#set($hlGroup = $hlGroup.replaceAll('(?<=^.{120}).+$', ''))"),
                "{t}"
            );
        }
        let t = request_template(&route(
            GroupKey::BodyField("$.data.object.customer".into()),
            DedupKey::ContentBased,
            &[],
        ))
        .unwrap();
        assert!(
            t.contains("#set($hlGroupRaw = \"$!input.path('$.data.object.customer')\")"),
            "{t}"
        );
        assert!(
            t.contains("MessageGroupId=b%3A$util.urlEncode($hlGroup)"),
            "{t}"
        );
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
    fn a_header_name_cannot_inject_velocity() {
        let err = request_template(&route(
            GroupKey::Header("x')#set($a = 1)".into()),
            DedupKey::ContentBased,
            &[],
        ));
        assert!(
            matches!(err, Err(TemplateError::InvalidHeaderName(_))),
            "{err:?}"
        );
    }

    #[test]
    fn the_query_is_one_more_attribute_after_the_headers() {
        let mut r = route(
            GroupKey::Constant("g".into()),
            DedupKey::ContentBased,
            &["x-twilio-signature", "content-type"],
        );
        r.query = true;
        let t = request_template(&r).unwrap();
        assert!(t.contains(QUERY), "{t}");
        assert!(
            t.ends_with(
                "MessageAttribute.3.Name=Hookline%2DQuery\
                 &MessageAttribute.3.Value.DataType=String\
                 &MessageAttribute.3.Value.StringValue=%25$util.urlEncode($hlQuery)"
            ),
            "{t}"
        );
        assert!(!t.contains('\n'), "{t}");
        r.query = false;
        assert!(!request_template(&r).unwrap().contains("hlQuery"));

        let nine: Vec<String> = (0..9).map(|i| format!("x-h{i}")).collect();
        let refs: Vec<&str> = nine.iter().map(String::as_str).collect();
        let mut full = route(
            GroupKey::Constant("g".into()),
            DedupKey::ContentBased,
            &refs,
        );
        assert!(request_template(&full).is_ok());
        full.query = true;
        assert_eq!(
            request_template(&full),
            Err(TemplateError::TooManyHeaders(9)),
            "nine headers and the query are ten attributes, with none left for the worker"
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
    fn media_types_are_registered_with_their_charset_spellings() {
        let t = request_templates("T");
        assert_eq!(t.len(), CONTENT_TYPES.len() * 5);
        for key in [
            "application/json",
            "application/json; charset=utf-8",
            "application/json; charset=UTF-8",
            "application/json;charset=utf-8",
            "text/plain;charset=UTF-8",
        ] {
            assert_eq!(t.get(key).map(String::as_str), Some("T"), "{key}");
        }
    }

    #[test]
    fn only_400_is_final_and_other_sqs_errors_are_retried() {
        let matches = |pattern: &str, status: &str| {
            regex_lite::Regex::new(&format!("^(?:{pattern})$"))
                .unwrap()
                .is_match(status)
        };
        let pattern_of = |s: &str| {
            ROUTE_RESPONSES
                .iter()
                .find(|r| r.status == s)
                .and_then(|r| r.selection_pattern)
                .unwrap()
        };
        for status in ["401", "403", "404", "429", "500", "503", "599"] {
            assert!(matches(pattern_of("503"), status), "{status}");
            assert!(!matches(pattern_of("400"), status), "{status}");
        }
        assert!(matches(pattern_of("400"), "400"));
        assert!(!matches(pattern_of("503"), "400"));
        assert!(!matches(pattern_of("503"), "200"));
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
