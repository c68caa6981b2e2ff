//! The product's mapping templates rendered by the real Apache Velocity, under every
//! behaviour AWS may have (Velocity 1.7 or 2.x, case-sensitive or case-insensitive
//! header lookups: AWS documents neither), then read back the way SQS and the worker
//! read them: the rendered text is parsed as the `application/x-www-form-urlencoded`
//! `SendMessage` call SQS receives, checked against SQS's documented limits, and
//! turned into the `Message` that `Delivery::from_sqs` decodes.

use anyhow::{Context, Result, anyhow, bail};
use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName};
use hookline_operator::aws::templates::{
    DedupKey, GROUP_VALUE_MAX, GroupKey, Handshake, ROUTE_RESPONSES, RouteTemplate, TemplateError,
    handshake_template, request_template,
};
use hookline_tests::velocity::{
    BEHAVIOURS, Behaviour, Engine, HeaderCase, Rendered, Request, render, render_all,
};
use hookline_worker::Delivery;
use std::collections::{BTreeMap, BTreeSet, HashMap};

// ---------------------------------------------------------------------------------
// Reading a rendered template as SQS does.

/// A `SendMessage` call as SQS reads the form body.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SendMessage {
    body: String,
    group_id: Option<String>,
    dedup_id: Option<String>,
    /// Attribute name → (data type, string value).
    attributes: BTreeMap<String, (String, String)>,
}

/// Decodes `application/x-www-form-urlencoded` as the URL standard does (`&`, then
/// the first `=`, `+` is a space, `%XX` a byte), refusing what a server may read
/// differently: raw whitespace, a `%` not followed by two hex digits, a repeated
/// field, bytes that are not UTF-8.
fn parse_form(text: &str) -> Result<Vec<(String, String)>> {
    if let Some(c) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
        bail!("raw {c:?} in the form body (it would become part of a field): {text:?}");
    }
    let decode = |part: &str| -> Result<String> {
        let bytes = part.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = bytes
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or_else(|| anyhow!("a stray '%' in form field {part:?}"))?;
                    out.push(hex);
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).with_context(|| format!("form field {part:?} is not UTF-8"))
    };
    let mut fields = Vec::new();
    let mut seen = BTreeSet::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (name, value) = (decode(name)?, decode(value)?);
        if !seen.insert(name.clone()) {
            bail!("form field {name:?} appears twice: {text:?}");
        }
        fields.push((name, value));
    }
    Ok(fields)
}

/// The call, checked against what SQS accepts (SQS model: MessageGroupId and
/// MessageDeduplicationId "alphanumeric characters and punctuation", at most 128;
/// attribute names of letters, digits, `_ - .`; at most 10 attributes; bodies and
/// values of XML characters). An empty dedup id is returned as is: SQS refuses it,
/// and the caller decides whether that was the point.
fn send_message(rendered: &str) -> Result<SendMessage> {
    let mut body = None;
    let mut call = SendMessage {
        body: String::new(),
        group_id: None,
        dedup_id: None,
        attributes: BTreeMap::new(),
    };
    let mut numbered: BTreeMap<u32, BTreeMap<String, String>> = BTreeMap::new();
    for (name, value) in parse_form(rendered)? {
        match name.as_str() {
            "Action" if value == "SendMessage" => {}
            "MessageBody" => body = Some(value),
            "MessageGroupId" => call.group_id = Some(value),
            "MessageDeduplicationId" => call.dedup_id = Some(value),
            _ => {
                let rest = name
                    .strip_prefix("MessageAttribute.")
                    .ok_or_else(|| anyhow!("unexpected form field {name}={value}"))?;
                let (n, part) = rest
                    .split_once('.')
                    .ok_or_else(|| anyhow!("unexpected form field {name}"))?;
                let n: u32 = n.parse().with_context(|| format!("form field {name}"))?;
                if !["Name", "Value.DataType", "Value.StringValue"].contains(&part) {
                    bail!("unexpected form field {name}");
                }
                numbered
                    .entry(n)
                    .or_default()
                    .insert(part.to_owned(), value);
            }
        }
    }
    call.body = body.ok_or_else(|| anyhow!("no MessageBody in {rendered:?}"))?;
    check_xml_text("MessageBody", &call.body)?;
    if call.body.is_empty() {
        bail!("SQS refuses an empty MessageBody");
    }
    let group = call
        .group_id
        .as_deref()
        .ok_or_else(|| anyhow!("no MessageGroupId (a FIFO queue needs one)"))?;
    check_sqs_id("MessageGroupId", group)?;
    if let Some(dedup) = call.dedup_id.as_deref().filter(|d| !d.is_empty()) {
        check_sqs_id("MessageDeduplicationId", dedup)?;
    }
    if numbered.len() > 10 {
        bail!(
            "{} message attributes; SQS takes at most 10",
            numbered.len()
        );
    }
    for (i, (n, parts)) in numbered.into_iter().enumerate() {
        if usize::try_from(n)? != i + 1 {
            bail!("message attributes are not numbered 1, 2, …: {n} at position {i}");
        }
        let (Some(name), Some(data_type), Some(value)) = (
            parts.get("Name"),
            parts.get("Value.DataType"),
            parts.get("Value.StringValue"),
        ) else {
            bail!("message attribute {n} lacks a part: {parts:?}");
        };
        check_attribute_name(name)?;
        if data_type != "String" {
            bail!("attribute {name} has data type {data_type}");
        }
        if value.is_empty() {
            bail!("attribute {name} is empty (SQS refuses empty values)");
        }
        check_xml_text(name, value)?;
        if call
            .attributes
            .insert(name.clone(), (data_type.clone(), value.clone()))
            .is_some()
        {
            bail!("attribute {name} appears twice");
        }
    }
    Ok(call)
}

fn check_sqs_id(what: &str, id: &str) -> Result<()> {
    if id.is_empty() || id.chars().count() > 128 {
        bail!(
            "{what} {id:?} is {} characters; SQS takes 1 to 128",
            id.chars().count()
        );
    }
    if let Some(c) = id.chars().find(|c| !c.is_ascii_graphic()) {
        bail!("{what} {id:?} holds {c:?}; SQS takes only ASCII letters, digits and punctuation");
    }
    Ok(())
}

fn check_attribute_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 256
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..");
    if valid {
        Ok(())
    } else {
        bail!("{name:?} is not a valid SQS message attribute name")
    }
}

fn check_xml_text(what: &str, text: &str) -> Result<()> {
    let allowed = |c: char| {
        matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}')
            || c >= '\u{10000}'
    };
    match text.chars().find(|c| !allowed(*c)) {
        Some(c) => bail!("{what} holds {c:?}, which SQS refuses (not an XML character)"),
        None => Ok(()),
    }
}

/// The message SQS would deliver for the call, as the worker receives it.
fn message(call: &SendMessage) -> Result<Message> {
    let mut attributes = HashMap::new();
    for (name, (data_type, value)) in &call.attributes {
        attributes.insert(
            name.clone(),
            MessageAttributeValue::builder()
                .data_type(data_type)
                .string_value(value)
                .build()?,
        );
    }
    let mut builder = Message::builder()
        .message_id("00000000-0000-4000-8000-000000000001")
        .receipt_handle("receipt")
        .body(&call.body)
        .attributes(
            MessageSystemAttributeName::MessageGroupId,
            call.group_id.clone().unwrap_or_default(),
        )
        .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "1")
        .set_message_attributes(Some(attributes));
    if let Some(dedup) = &call.dedup_id {
        builder = builder.attributes(MessageSystemAttributeName::MessageDeduplicationId, dedup);
    }
    Ok(builder.build())
}

/// What Java's `URLEncoder.encode(s, UTF_8)` (API Gateway's `$util.urlEncode`) writes.
fn java_url_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'*' | b'_' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The group id the template promises for a header or body-field key: the prefix,
/// then the URL-encoded key cut to [`GROUP_VALUE_MAX`] characters.
fn expected_group(prefix: &str, key: &str) -> String {
    let encoded = java_url_encode(key);
    let cut: String = encoded.chars().take(GROUP_VALUE_MAX).collect();
    format!("{prefix}{cut}")
}

// ---------------------------------------------------------------------------------
// Senders and routes.

/// How a sender spells header names on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spelling {
    /// As the provider writes them over HTTP/1.1 (`X-GitHub-Delivery`).
    Provider,
    /// Go's `http.CanonicalHeaderKey` (`X-Github-Delivery`), as a Go proxy forwards them.
    GoCanonical,
    /// HTTP/2: always lowercase.
    Lowercase,
}

const SPELLINGS: [Spelling; 3] = [
    Spelling::Provider,
    Spelling::GoCanonical,
    Spelling::Lowercase,
];

fn spell(name: &str, spelling: Spelling) -> String {
    match spelling {
        Spelling::Provider => name.to_owned(),
        Spelling::Lowercase => name.to_ascii_lowercase(),
        Spelling::GoCanonical => name
            .to_ascii_lowercase()
            .split('-')
            .map(|word| {
                let mut chars = word.chars();
                chars.next().map_or_else(String::new, |first| {
                    first.to_ascii_uppercase().to_string() + chars.as_str()
                })
            })
            .collect::<Vec<_>>()
            .join("-"),
    }
}

/// A provider's webhook: the headers it sends (names as it writes them), its body,
/// and the route a team would declare for it.
struct Provider {
    name: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    body: &'static str,
    group: GroupKey,
    dedup: DedupKey,
    forwarded: Vec<&'static str>,
}

const COMMON: [(&str, &str); 4] = [
    ("Content-Type", "application/json; charset=utf-8"),
    (
        "User-Agent",
        "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    ),
    ("Host", "hooks.example.com"),
    ("X-Forwarded-For", "192.0.2.1"),
];

fn providers() -> Vec<Provider> {
    vec![
        Provider {
            name: "Stripe",
            headers: vec![(
                "Stripe-Signature",
                "t=1492774577,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd",
            )],
            body: r#"{"id":"evt_1","type":"invoice.paid","data":{"object":{"customer":"cus_NffrFeUfNV2Hib"}}}"#,
            group: GroupKey::BodyField("$.data.object.customer".into()),
            dedup: DedupKey::ContentBased,
            forwarded: vec!["content-type", "stripe-signature", "user-agent"],
        },
        Provider {
            name: "GitHub",
            headers: vec![
                ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
                ("X-GitHub-Event", "push"),
                ("X-GitHub-Hook-ID", "292430182"),
                (
                    "X-Hub-Signature-256",
                    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
                ),
            ],
            body: r#"{"ref":"refs/heads/main","repository":{"full_name":"octo/hello"}}"#,
            group: GroupKey::Header("X-GitHub-Hook-ID".into()),
            dedup: DedupKey::Header("X-GitHub-Delivery".into()),
            forwarded: vec![
                "content-type",
                "user-agent",
                "x-github-delivery",
                "x-github-event",
                "x-github-hook-id",
                "x-hub-signature-256",
            ],
        },
        Provider {
            name: "Shopify",
            headers: vec![
                (
                    "X-Shopify-Hmac-Sha256",
                    "XWmrwMey6OsLMeiZKwP4FppHH3cmAiiJJAweH5Jo4bM=",
                ),
                ("X-Shopify-Shop-Domain", "shop.myshopify.com"),
                (
                    "X-Shopify-Webhook-Id",
                    "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
                ),
                ("X-Shopify-Topic", "orders/create"),
            ],
            body: r#"{"id":820982911946154508,"email":"jon@example.com"}"#,
            group: GroupKey::Header("X-Shopify-Shop-Domain".into()),
            dedup: DedupKey::Header("X-Shopify-Webhook-Id".into()),
            forwarded: vec![
                "content-type",
                "user-agent",
                "x-shopify-hmac-sha256",
                "x-shopify-shop-domain",
                "x-shopify-topic",
                "x-shopify-webhook-id",
            ],
        },
    ]
}

impl Provider {
    /// The route as `desired::route_template` builds it, with the group and dedup
    /// header names as the team wrote them (as the provider spells them, or lowercase).
    fn route(&self, lowercase_names: bool) -> RouteTemplate {
        let name = |n: &String| {
            if lowercase_names {
                n.to_ascii_lowercase()
            } else {
                n.clone()
            }
        };
        RouteTemplate {
            group: match &self.group {
                GroupKey::Header(n) => GroupKey::Header(name(n)),
                other => other.clone(),
            },
            dedup: match &self.dedup {
                DedupKey::Header(n) => DedupKey::Header(name(n)),
                other => other.clone(),
            },
            headers: self.forwarded.iter().map(|h| (*h).to_owned()).collect(),
            query: false,
        }
    }

    /// All the headers of one delivery, spelled as `spelling` writes them.
    fn sent(&self, spelling: Spelling) -> Vec<(String, String)> {
        self.headers
            .iter()
            .chain(COMMON.iter())
            .map(|(n, v)| (spell(n, spelling), (*v).to_owned()))
            .collect()
    }

    fn request(&self, template: &str, behaviour: Behaviour, spelling: Spelling) -> Request {
        let mut request = Request::new(template, behaviour).body(self.body);
        request.headers = self.sent(spelling);
        request
    }

    fn value_of(&self, header: &str) -> Option<&'static str> {
        self.headers
            .iter()
            .chain(COMMON.iter())
            .find(|(n, _)| n.eq_ignore_ascii_case(header))
            .map(|(_, v)| *v)
    }
}

/// What is wrong with one rendered delivery of `provider` through `route`, compared
/// with what the sender sent (an empty list: nothing).
fn problems(provider: &Provider, route: &RouteTemplate, rendered: &Rendered) -> Vec<String> {
    let call = match send_message(&rendered.output) {
        Ok(call) => call,
        Err(e) => return vec![format!("{e:#}")],
    };
    let delivery = match message(&call).map(Delivery::from_sqs) {
        Ok(Ok(delivery)) => delivery,
        Ok(Err(e)) => return vec![format!("the worker cannot read the message: {e}")],
        Err(e) => return vec![format!("building the message: {e:#}")],
    };
    let mut problems = Vec::new();
    if delivery.body != provider.body.as_bytes() {
        problems.push(format!("body {:?} is not the one sent", delivery.body));
    }
    for header in &route.headers {
        let got: Vec<_> = delivery
            .headers
            .get_all(header.as_str())
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        let want: Vec<String> = provider
            .value_of(header)
            .map(str::to_owned)
            .into_iter()
            .collect();
        if got != want {
            problems.push(format!(
                "header {header}: the worker got {got:?}, the sender sent {want:?}"
            ));
        }
    }
    let want_group = match &route.group {
        GroupKey::Header(name) => expected_group("h:", provider.value_of(name).unwrap_or("")),
        GroupKey::BodyField(path) => {
            let body: serde_json::Value = serde_json::from_str(provider.body).unwrap_or_default();
            let field = path
                .trim_start_matches("$.")
                .split('.')
                .try_fold(&body, |v, k| v.get(k));
            let raw = field.and_then(serde_json::Value::as_str).unwrap_or("");
            expected_group("b:", raw)
        }
        GroupKey::Constant(value) => value.clone(),
    };
    if delivery.group_id != want_group {
        problems.push(format!(
            "group {:?}, expected {want_group:?}",
            delivery.group_id
        ));
    }
    let want_dedup = match &route.dedup {
        DedupKey::Header(name) => Some(java_url_encode(provider.value_of(name).unwrap_or(""))),
        DedupKey::ContentBased => None,
    };
    if call.dedup_id != want_dedup {
        problems.push(format!(
            "dedup id {:?}, expected {want_dedup:?}",
            call.dedup_id
        ));
    }
    problems
}

/// Renders every request in one JVM; a refusal by the engine is an error.
fn render_each(requests: &[Request]) -> Result<Vec<Rendered>> {
    render_all(requests)?
        .into_iter()
        .zip(requests)
        .map(|(rendered, request)| {
            rendered.with_context(|| format!("headers: {:?}", request.headers))
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// The harness models the behaviours it claims to.

#[test]
fn the_bench_renders_each_behaviour_as_its_velocity_does() {
    let t = "#set($x = 'kept')#set($x = $input.params().header.get('nope'))[$x]\
             [$!input.params().header.get('stripe-signature')]\
             [$input.params('x-id')][$input.path('$.o')][$input.path('$.l[1]')]\
             [$input.json('$.o.a')][$util.urlEncode('a b/é')][$util.base64Encode('hi')]";
    let requests: Vec<Request> = BEHAVIOURS
        .iter()
        .map(|b| {
            Request::new(t, *b)
                .header("Stripe-Signature", "sig")
                .header("x-id", "from-header")
                .query("x-id", "from-query")
                .body(r#"{"o":{"a":"b","n":1},"l":[1,2]}"#)
        })
        .collect();
    let rendered = render_each(&requests).unwrap();
    for (behaviour, rendered) in BEHAVIOURS.iter().zip(&rendered) {
        // 1.7 leaves a `#set` target unchanged when the value is null; 2.x sets null.
        let kept = match behaviour.engine {
            Engine::V1_7 => "[kept]",
            Engine::V2 => "[$x]",
        };
        let signature = match behaviour.header_case {
            HeaderCase::Sensitive => "[]",
            HeaderCase::Insensitive => "[sig]",
        };
        assert_eq!(
            rendered.output,
            format!("{kept}{signature}[from-query][{{a=b, n=1}}][2][\"b\"][a+b%2F%C3%A9][aGk=]"),
            "{behaviour}"
        );
    }
    // One request at a time too; what Velocity refuses is an error, not an output.
    for behaviour in BEHAVIOURS {
        let one = render(&Request::new("$util.escapeJavaScript(\"it's\")", behaviour)).unwrap();
        assert_eq!(one.output, r"it\'s", "{behaviour}");
        let refused = render(&Request::new("#if(", behaviour));
        assert!(refused.is_err(), "{behaviour}: {refused:?}");
    }
}

// ---------------------------------------------------------------------------------
// The request template.

#[test]
fn every_sender_spelling_gives_the_same_headers_group_and_dedup_id() {
    let providers = providers();
    let mut cases = Vec::new();
    for provider in &providers {
        for lowercase_names in [false, true] {
            let route = provider.route(lowercase_names);
            let template = request_template(&route).unwrap();
            for behaviour in BEHAVIOURS {
                for spelling in SPELLINGS {
                    cases.push((
                        provider,
                        route.clone(),
                        behaviour,
                        spelling,
                        lowercase_names,
                        provider.request(&template, behaviour, spelling),
                    ));
                }
            }
        }
    }
    let requests: Vec<Request> = cases.iter().map(|c| c.5.clone()).collect();
    let rendered = render_each(&requests).unwrap();
    let mut failures = Vec::new();
    let mut outputs: BTreeMap<(&str, bool), BTreeSet<&str>> = BTreeMap::new();
    for ((provider, route, behaviour, spelling, lowercase_names, _), rendered) in
        cases.iter().zip(&rendered)
    {
        for p in problems(provider, route, rendered) {
            failures.push(format!(
                "{} ({behaviour}; sender {spelling:?}; route names {}): {p}",
                provider.name,
                if *lowercase_names {
                    "lowercase"
                } else {
                    "as the provider writes them"
                }
            ));
        }
        outputs
            .entry((provider.name, *lowercase_names))
            .or_default()
            .insert(&rendered.output);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Not only equal after decoding: the very same SQS call, whoever sent it and
    // however AWS looks headers up.
    for ((provider, lowercase_names), outputs) in outputs {
        assert_eq!(
            outputs.len(),
            1,
            "{provider} (lowercase names: {lowercase_names}): {outputs:#?}"
        );
    }
}

#[test]
fn the_query_string_changes_nothing() {
    let providers = providers();
    let mut requests = Vec::new();
    let mut labels = Vec::new();
    for provider in &providers {
        let template = request_template(&provider.route(false)).unwrap();
        for behaviour in BEHAVIOURS {
            for spelling in [Spelling::Provider, Spelling::Lowercase] {
                let plain = provider.request(&template, behaviour, spelling);
                let mut forged = plain.clone();
                for (name, value) in [
                    ("x-github-delivery", "evil"),
                    ("stripe-signature", "evil"),
                    ("x-github-hook-id", "evil"),
                    ("X-Shopify-Webhook-Id", "evil"),
                    ("x-shopify-shop-domain", "evil"),
                ] {
                    forged.query.insert(name.to_owned(), value.to_owned());
                }
                // Without the headers, the query string must not stand in for them.
                let mut headerless = forged.clone();
                headerless.headers.retain(|(n, _)| {
                    !provider
                        .headers
                        .iter()
                        .any(|(h, _)| h.eq_ignore_ascii_case(n))
                });
                labels.push(format!("{} ({behaviour}; {spelling:?})", provider.name));
                requests.extend([plain, forged, headerless]);
            }
        }
    }
    let rendered = render_each(&requests).unwrap();
    for (label, triple) in labels.iter().zip(rendered.chunks(3)) {
        assert_eq!(
            triple[0].output, triple[1].output,
            "{label}: the query string changed the call"
        );
        let headerless = send_message(&triple[2].output);
        let text = format!("{headerless:?}");
        assert!(
            !text.contains("evil"),
            "{label}: the query string stood in for a header: {text}"
        );
    }
}

#[test]
fn group_ids_from_awkward_keys_are_valid_and_deterministic() {
    let long: String = "k".repeat(150) + &"é".repeat(150);
    let long_b: String = "q".repeat(300);
    // Header keys (as sent) and body-field keys (the JSON value, and how Java prints it).
    let header_keys: Vec<String> = vec![
        "acme corp".into(),
        "Zürich ☃".into(),
        r#"{"shop":"a b"}"#.into(),
        long.clone(),
        long_b.clone(),
        "acme corq".into(),
        // `|` joins the lookups before the pick; `+` and `%` are what encoding writes.
        "a|b".into(),
        "50% + tax".into(),
    ];
    let body_keys: Vec<(String, &str)> = vec![
        (serde_json::json!("acme corp").to_string(), "acme corp"),
        (serde_json::json!("Zürich ☃").to_string(), "Zürich ☃"),
        (r#"{"id":1,"name":"x y"}"#.into(), "{id=1, name=x y}"),
        (serde_json::json!(long).to_string(), long.as_str()),
        (serde_json::json!(long_b).to_string(), long_b.as_str()),
        ("42".into(), "42"),
        ("[1,2]".into(), "[1, 2]"),
    ];
    let header_route = RouteTemplate {
        group: GroupKey::Header("X-Tenant".into()),
        dedup: DedupKey::ContentBased,
        headers: vec![],
        query: false,
    };
    let body_route = RouteTemplate {
        group: GroupKey::BodyField("$.data.key".into()),
        dedup: DedupKey::ContentBased,
        headers: vec![],
        query: false,
    };
    let header_template = request_template(&header_route).unwrap();
    let body_template = request_template(&body_route).unwrap();
    let mut requests = Vec::new();
    let mut expected = Vec::new();
    for behaviour in BEHAVIOURS {
        for key in &header_keys {
            for spelling in SPELLINGS {
                // Twice each: the same key must give the same group.
                for _ in 0..2 {
                    requests.push(
                        Request::new(&header_template, behaviour)
                            .header(spell("X-Tenant", spelling), key.as_str())
                            .body("{}"),
                    );
                    expected.push((
                        behaviour,
                        format!("header {key:?}"),
                        expected_group("h:", key),
                    ));
                }
            }
        }
        for (json, printed) in &body_keys {
            for _ in 0..2 {
                requests.push(
                    Request::new(&body_template, behaviour)
                        .body(format!(r#"{{"data":{{"key":{json}}}}}"#)),
                );
                expected.push((
                    behaviour,
                    format!("body {json}"),
                    expected_group("b:", printed),
                ));
            }
        }
        requests.push(Request::new(&body_template, behaviour).body(r#"{"data":{}}"#));
        expected.push((behaviour, "body without the field".into(), "b:".into()));
    }
    let rendered = render_each(&requests).unwrap();
    let mut groups: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for ((behaviour, key, want), rendered) in expected.iter().zip(&rendered) {
        let call = send_message(&rendered.output)
            .unwrap_or_else(|e| panic!("{behaviour}, {key}: SQS would refuse the call: {e:#}"));
        let group = call.group_id.unwrap_or_default();
        assert_eq!(&group, want, "{behaviour}, {key}");
        groups
            .entry((behaviour.to_string(), group))
            .or_default()
            .insert(key.clone());
    }
    // Different keys, different groups (each of these differs within the kept prefix).
    for ((behaviour, group), keys) in &groups {
        assert_eq!(
            keys.len(),
            1,
            "{behaviour}: keys {keys:?} share group {group:?}"
        );
    }
}

#[test]
fn an_absent_dedup_header_gives_an_empty_dedup_id_which_sqs_refuses() {
    let route = RouteTemplate {
        group: GroupKey::Constant("all".into()),
        dedup: DedupKey::Header("X-GitHub-Delivery".into()),
        headers: vec!["x-github-delivery".into()],
        query: false,
    };
    let template = request_template(&route).unwrap();
    let requests: Vec<Request> = BEHAVIOURS
        .iter()
        .map(|b| {
            Request::new(&template, *b)
                .header("X-GitHub-Event", "ping")
                .body("{}")
        })
        .collect();
    for (behaviour, rendered) in BEHAVIOURS.iter().zip(render_each(&requests).unwrap()) {
        let call = send_message(&rendered.output).unwrap();
        // Present and empty: SQS answers 400 (MessageDeduplicationId must be 1 to
        // 128 characters, and the queue is not content-based), so the sender learns
        // at once instead of every such delivery deduplicating against the first.
        assert_eq!(
            call.dedup_id.as_deref(),
            Some(""),
            "{behaviour}: {}",
            rendered.output
        );
        assert_eq!(
            call.attributes["Header.x-github-delivery"].1, "%",
            "{behaviour}"
        );
    }
}

#[test]
fn the_query_reaches_the_worker_for_the_presets_that_sign_the_url() -> Result<()> {
    let route = RouteTemplate {
        group: GroupKey::Constant("all".into()),
        dedup: DedupKey::ContentBased,
        headers: vec!["x-twilio-signature".into(), "content-type".into()],
        query: true,
    };
    let template = request_template(&route)?;
    // Decoded values, as API Gateway hands them to the template; named in sorted
    // order because the bench's map keeps that order.
    let query = [
        (
            "bodySHA256",
            "5ccde7145dfb8f56479710896586cb9d5911809d83afbe34627818790db0aec9",
        ),
        ("next", "https://app.example.com/a b?c=d&e=%41|"),
        ("note", "caf\u{e9} \u{2713}"),
    ];
    let mut requests = Vec::new();
    for behaviour in BEHAVIOURS {
        let plain = Request::new(&template, behaviour)
            .header("X-Twilio-Signature", "c2lnbmF0dXJl")
            .header("Content-Type", "application/json")
            .body("{}");
        let with_query = query.iter().fold(plain.clone(), |request, (name, value)| {
            request.query(*name, *value)
        });
        requests.extend([with_query, plain]);
    }
    let rendered = render_each(&requests)?;
    for (behaviour, pair) in BEHAVIOURS.iter().zip(rendered.chunks(2)) {
        let call = send_message(&pair[0].output)?;
        let delivery = Delivery::from_sqs(message(&call)?)?;
        let want: Vec<(String, String)> = query
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(delivery.query, want, "{behaviour}: {}", pair[0].output);
        assert_eq!(
            delivery
                .headers
                .get("x-twilio-signature")
                .map(|v| v.as_bytes()),
            Some(&b"c2lnbmF0dXJl"[..]),
            "{behaviour}"
        );
        let call = send_message(&pair[1].output)?;
        assert_eq!(call.attributes["Hookline-Query"].1, "%", "{behaviour}");
        assert!(
            Delivery::from_sqs(message(&call)?)?.query.is_empty(),
            "{behaviour}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// The integration responses.

/// SQS's query-protocol error body.
fn sqs_error(code: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?><ErrorResponse xmlns=\"http://queue.amazonaws.com/doc/2012-11-05/\">\
         <Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message><Detail/></Error>\
         <RequestId>8f5a2c1e-3b7d-5f4e-9a6b-2c1d0e9f8a7b</RequestId></ErrorResponse>"
    )
}

#[test]
fn sqs_errors_reach_the_caller_as_413_400_or_503() {
    let response = |status: &str| {
        ROUTE_RESPONSES
            .iter()
            .find(|r| r.status == status)
            .unwrap_or_else(|| panic!("no {status} response"))
    };
    let cases: [(&str, String, u16, &str); 7] = [
        (
            "a body over 1 MiB",
            sqs_error(
                "InvalidParameterValue",
                "One or more parameters are invalid. Reason: Message must be shorter than 1048576 bytes.",
            ),
            413,
            "rejected",
        ),
        (
            "an invalid group id",
            sqs_error(
                "InvalidParameterValue",
                "Value a b for parameter MessageGroupId is invalid. Reason: MessageGroupId can only include alphanumeric and punctuation characters. 1 to 128 in length.",
            ),
            400,
            "rejected",
        ),
        (
            "no dedup id on a queue without content-based dedup",
            sqs_error(
                "InvalidParameterValue",
                "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
            ),
            400,
            "rejected",
        ),
        (
            "a missing parameter",
            sqs_error(
                "MissingParameter",
                "The request must contain the parameter MessageGroupId.",
            ),
            400,
            "rejected",
        ),
        (
            "KMS throttling (400)",
            sqs_error("KMS.ThrottlingException", "Rate exceeded"),
            503,
            "unavailable",
        ),
        (
            "throttling",
            sqs_error("ThrottlingException", "Rate exceeded"),
            503,
            "unavailable",
        ),
        (
            "a queue being repaired",
            sqs_error(
                "AWS.SimpleQueueService.NonExistentQueue",
                "The specified queue does not exist for this wsdl version.",
            ),
            503,
            "unavailable",
        ),
    ];
    let template = response("400").template;
    let mut requests = Vec::new();
    for behaviour in BEHAVIOURS {
        for (_, body, _, _) in &cases {
            requests.push(Request::new(template, behaviour).body(body.as_str()));
        }
        for status in ["200", "413", "503"] {
            requests
                .push(Request::new(response(status).template, behaviour).body(sqs_error("X", "y")));
        }
    }
    let rendered = render_each(&requests).unwrap();
    let per_behaviour = cases.len() + 3;
    for (behaviour, rendered) in BEHAVIOURS.iter().zip(rendered.chunks(per_behaviour)) {
        for ((what, _, status, word), rendered) in cases.iter().zip(rendered) {
            // No override: the method response of the matched pattern, 400.
            let got = rendered.status_override.unwrap_or(400);
            assert_eq!(got, *status, "{behaviour}, {what}: {}", rendered.output);
            let json: serde_json::Value =
                serde_json::from_str(&rendered.output).unwrap_or_else(|e| {
                    panic!("{behaviour}, {what}: not JSON ({e}): {}", rendered.output)
                });
            assert_eq!(json["status"], *word, "{behaviour}, {what}");
        }
        for (status, rendered) in ["200", "413", "503"].iter().zip(&rendered[cases.len()..]) {
            assert_eq!(rendered.status_override, None, "{behaviour}, {status}");
            let json: serde_json::Value = serde_json::from_str(&rendered.output).unwrap();
            let word = match *status {
                "200" => "accepted",
                "413" => "rejected",
                _ => "unavailable",
            };
            assert_eq!(json["status"], word, "{behaviour}, {status}");
        }
    }
}

// ---------------------------------------------------------------------------------
// The template before the fix, to show what these checks catch.

/// `request_template` of main at 560609d for two routes, verbatim from that
/// version's own unit test (`templates_by_grouping_and_dedup`): Shopify (group and
/// dedup from headers) and Stripe (group from the body, the signature forwarded).
const OLD_SHOPIFY: &str = "Action=SendMessage&MessageBody=$util.urlEncode($input.body)\
    &MessageGroupId=h%3A$util.urlEncode($input.params('x-shopify-shop-domain'))\
    &MessageDeduplicationId=$util.urlEncode($input.params('x-shopify-webhook-id'))";
const OLD_STRIPE: &str = "Action=SendMessage&MessageBody=$util.urlEncode($input.body)\
    &MessageGroupId=b%3A$util.urlEncode($input.path('$.data.object.customer'))\
    &MessageAttribute.1.Name=Header%2Estripe%2Dsignature\
    &MessageAttribute.1.Value.DataType=String\
    &MessageAttribute.1.Value.StringValue=%3A$util.urlEncode($input.params('stripe-signature'))";

#[test]
fn the_old_template_loses_title_case_headers_where_lookups_are_case_sensitive() {
    let providers = providers();
    let stripe = &providers[0];
    let shopify = &providers[2];
    let old = [
        (
            stripe,
            RouteTemplate {
                group: stripe.group.clone(),
                dedup: DedupKey::ContentBased,
                headers: vec!["stripe-signature".into()],
                query: false,
            },
            OLD_STRIPE,
        ),
        (
            shopify,
            RouteTemplate {
                group: shopify.group.clone(),
                dedup: shopify.dedup.clone(),
                headers: vec![],
                query: false,
            },
            OLD_SHOPIFY,
        ),
    ];
    let mut cases = Vec::new();
    for (provider, route, template) in &old {
        for behaviour in BEHAVIOURS {
            for spelling in SPELLINGS {
                cases.push((
                    *provider,
                    route,
                    behaviour,
                    spelling,
                    provider.request(template, behaviour, spelling),
                ));
            }
        }
    }
    let requests: Vec<Request> = cases.iter().map(|c| c.4.clone()).collect();
    let rendered = render_each(&requests).unwrap();
    let mut failing = BTreeSet::new();
    for ((provider, route, behaviour, spelling, _), rendered) in cases.iter().zip(&rendered) {
        let found = problems(provider, route, rendered);
        if !found.is_empty() {
            failing.insert(format!(
                "{} ({behaviour}; sender {spelling:?}): {}",
                provider.name,
                found.join("; ")
            ));
        }
    }
    // Exactly the Title-Case (and Go-canonical) senders under case-sensitive lookups.
    let expected: BTreeSet<String> = [
        "Shopify (Velocity 1.7, case-sensitive headers; sender Provider)",
        "Shopify (Velocity 1.7, case-sensitive headers; sender GoCanonical)",
        "Shopify (Velocity 2, case-sensitive headers; sender Provider)",
        "Shopify (Velocity 2, case-sensitive headers; sender GoCanonical)",
        "Stripe (Velocity 1.7, case-sensitive headers; sender Provider)",
        "Stripe (Velocity 1.7, case-sensitive headers; sender GoCanonical)",
        "Stripe (Velocity 2, case-sensitive headers; sender Provider)",
        "Stripe (Velocity 2, case-sensitive headers; sender GoCanonical)",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let labels: BTreeSet<String> = failing
        .iter()
        .map(|f| {
            f.split_once("): ")
                .map_or(f.clone(), |(l, _)| format!("{l})"))
        })
        .collect();
    assert_eq!(labels, expected, "{failing:#?}");
    // What those failures are: no signature (every message to the DLQ), an empty
    // dedup id (400 on every delivery), one group `h:` for all shops.
    let all = failing.iter().cloned().collect::<Vec<_>>().join("\n");
    assert!(
        all.contains("header stripe-signature: the worker got [], the sender sent"),
        "{all}"
    );
    assert!(all.contains("dedup id Some(\"\")"), "{all}");
    assert!(all.contains("group \"h:\""), "{all}");

    // And the query string overrode the header there, under every behaviour.
    let forged: Vec<Request> = BEHAVIOURS
        .iter()
        .map(|b| {
            shopify
                .request(OLD_SHOPIFY, *b, Spelling::Lowercase)
                .query("x-shopify-webhook-id", "evil")
        })
        .collect();
    for (behaviour, rendered) in BEHAVIOURS.iter().zip(render_each(&forged).unwrap()) {
        let call = send_message(&rendered.output).unwrap();
        assert_eq!(call.dedup_id.as_deref(), Some("evil"), "{behaviour}");
    }
}

// ---------------------------------------------------------------------------------
// The GET handshakes (integration response templates of the MOCK GET method).

/// A verify token with everything a string literal or the URL encoding could trip
/// on: a quote, `$`, `#`, a backslash, a double quote, a Velocity directive, a
/// space, `~`, `*`, non-ASCII text.
const AWKWARD_TOKEN: &str = r##"it's $tok#en\"#end ~*é"##;

fn meta_request(template: &str, behaviour: Behaviour, query: &[(&str, &str)]) -> Request {
    query.iter().fold(
        Request::new(template, behaviour),
        |request, (name, value)| request.query(*name, *value),
    )
}

#[test]
fn meta_answers_the_challenge_only_for_subscribe_with_the_right_token() {
    let challenge = "1158201444";
    /// What, the query, the status override expected, the body expected.
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Option<u16>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "the right token",
            vec![
                ("hub.mode", "subscribe"),
                ("hub.verify_token", AWKWARD_TOKEN),
                ("hub.challenge", challenge),
            ],
            None,
            challenge,
        ),
        (
            "another token",
            vec![
                ("hub.mode", "subscribe"),
                ("hub.verify_token", "it's"),
                ("hub.challenge", challenge),
            ],
            Some(403),
            "",
        ),
        (
            "the token URL-encoded (what the template compares, not the value)",
            vec![
                ("hub.mode", "subscribe"),
                (
                    "hub.verify_token",
                    "it%27s+%24tok%23en%5C%22%23end+%7E*%C3%A9",
                ),
                ("hub.challenge", challenge),
            ],
            Some(403),
            "",
        ),
        (
            "no token",
            vec![("hub.mode", "subscribe"), ("hub.challenge", challenge)],
            Some(403),
            "",
        ),
        (
            "another mode",
            vec![
                ("hub.mode", "unsubscribe"),
                ("hub.verify_token", AWKWARD_TOKEN),
                ("hub.challenge", challenge),
            ],
            Some(403),
            "",
        ),
        (
            "no challenge",
            vec![
                ("hub.mode", "subscribe"),
                ("hub.verify_token", AWKWARD_TOKEN),
            ],
            Some(403),
            "",
        ),
        ("nothing at all", vec![], Some(403), ""),
    ];
    let template = handshake_template(&Handshake::Meta {
        verify_token: AWKWARD_TOKEN.to_owned(),
    })
    .unwrap();
    let mut requests = Vec::new();
    for behaviour in BEHAVIOURS {
        for (_, query, _, _) in &cases {
            requests.push(meta_request(&template, behaviour, query));
        }
    }
    // The token sent as a header of the same name is not the query parameter.
    for behaviour in BEHAVIOURS {
        requests.push(
            meta_request(
                &template,
                behaviour,
                &[("hub.mode", "subscribe"), ("hub.challenge", challenge)],
            )
            .header("hub.verify_token", AWKWARD_TOKEN),
        );
    }
    let rendered = render_each(&requests).unwrap();
    let (per_case, by_header) = rendered.split_at(cases.len() * BEHAVIOURS.len());
    for (behaviour, rendered) in BEHAVIOURS.iter().zip(per_case.chunks(cases.len())) {
        for ((what, _, status, body), rendered) in cases.iter().zip(rendered) {
            assert_eq!(
                rendered.status_override, *status,
                "{behaviour}, {what}: {rendered:?}"
            );
            assert_eq!(rendered.output, *body, "{behaviour}, {what}");
        }
    }
    for (behaviour, rendered) in BEHAVIOURS.iter().zip(by_header) {
        assert_eq!(
            rendered.status_override,
            Some(403),
            "{behaviour}: {rendered:?}"
        );
    }
}

#[test]
fn dropbox_echoes_the_challenge_and_nothing_when_there_is_none() {
    let template = handshake_template(&Handshake::Dropbox).unwrap();
    let challenge = "Zfsd8R0mQ_$x#set($a = 1)<b>";
    let mut requests = Vec::new();
    for behaviour in BEHAVIOURS {
        requests.push(Request::new(template.as_str(), behaviour).query("challenge", challenge));
        requests.push(Request::new(template.as_str(), behaviour));
    }
    let rendered = render_each(&requests).unwrap();
    for (behaviour, rendered) in BEHAVIOURS.iter().zip(rendered.chunks(2)) {
        assert_eq!(rendered[0].output, challenge, "{behaviour}");
        assert_eq!(rendered[0].status_override, None, "{behaviour}");
        assert_eq!(rendered[1].output, "", "{behaviour}");
    }
}

#[test]
fn a_verify_token_that_cannot_be_a_literal_is_refused() {
    for token in ["", "line\nbreak", "tab\there", &"x".repeat(257)] {
        assert_eq!(
            handshake_template(&Handshake::Meta {
                verify_token: token.to_owned(),
            }),
            Err(TemplateError::InvalidVerifyToken),
            "{token:?}"
        );
    }
}
