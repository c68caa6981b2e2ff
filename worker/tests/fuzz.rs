//! Property tests of the signature verifiers: for every preset (and the four
//! shapes of the generic HMAC), with proptest-generated header maps, bodies,
//! secrets and clocks,
//! - no input panics a verifier, through the API or through an SQS message;
//! - no forgery is accepted: a random signature, another secret's, a valid one over
//!   a body changed by one bit or truncated or extended, moved to another timestamp,
//!   id or URL, or outside the tolerance window;
//! - what [`sign`] produces (or, for Discord and SendGrid, the provider's private
//!   key) is always accepted, also in the header-name case and value encodings the
//!   gateway may hand over, and next to other signatures while a secret rotates.
//!
//! `PROPTEST_CASES` sets the cases per preset and property (256 for forgeries, 128
//! for acceptance, 32 for the no-panic one, whose inputs are costly to generate);
//! `HOOKLINE_FAULT_SEED` replays a run (its seed is printed first). docs/security.md
//! says how to run it longer.

#![expect(
    clippy::expect_used,
    reason = "test helpers outside #[test] functions: a failed expectation fails the test"
)]

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hookline_contract::signature::header;
use hookline_contract::wire::{
    ENCODED_HEADER_VALUE_MARKER, HEADER_ATTRIBUTE_PREFIX, HEADER_VALUE_MARKER,
};
use hookline_worker::Delivery;
use hookline_worker::signature::{
    DigestEncoding, GenericHmac, Preset, PresetName, SignRequest, Signed, Verifier, sign,
};
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TOLERANCE: u64 = 300;
const URL: &str = "https://hooks.example.com/hookline/callbacks";

/// The seed of this run: `HOOKLINE_FAULT_SEED` when set, else the clock's.
fn seed() -> u64 {
    let seed = std::env::var("HOOKLINE_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
    eprintln!("HOOKLINE_FAULT_SEED={seed}");
    seed
}

/// `PROPTEST_CASES` when set, else `cases`: what `make test` can afford.
fn runner(seed: u64, cases: u32) -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    TestRunner::new(Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    })
}

/// Every configurable preset: the 24 names, the generic HMAC in its four shapes.
fn presets() -> Vec<Preset> {
    let mut all = Vec::new();
    for name in PresetName::ALL {
        if name == PresetName::GenericHmac {
            for (encoding, prefix) in [
                (DigestEncoding::Hex, None),
                (DigestEncoding::Hex, Some("sha256=")),
                (DigestEncoding::Base64, None),
                (DigestEncoding::Base64, Some("v1=")),
            ] {
                all.push(Preset::GenericHmac(GenericHmac {
                    header: "X-Team-Signature".to_owned(),
                    encoding,
                    prefix: prefix.map(str::to_owned),
                }));
            }
        } else {
            all.push(Preset::new(name, None).expect("only the generic HMAC has settings"));
        }
    }
    all
}

fn label(preset: &Preset) -> String {
    match preset {
        Preset::GenericHmac(g) => format!(
            "generic-hmac({:?}, {:?})",
            g.encoding,
            g.prefix.as_deref().unwrap_or("")
        ),
        p => p.name().as_str().to_owned(),
    }
}

/// How a preset writes its signature, from the providers' documentation (not from
/// the verifier): the header, the digest's encoding and length in bytes. Every
/// format ends with the digest, which lets a test replace it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Encoding {
    Hex,
    Base64,
    /// GitLab: the secret itself.
    Token,
}

fn signature_format(preset: &Preset) -> (String, Encoding, usize) {
    let sha1 = 20;
    let sha256 = 32;
    let (name, encoding, len) = match preset {
        Preset::Stripe => (header::STRIPE_SIGNATURE, Encoding::Hex, sha256),
        Preset::GitHub => (header::GITHUB_SIGNATURE, Encoding::Hex, sha256),
        Preset::Shopify => (header::SHOPIFY_HMAC, Encoding::Base64, sha256),
        Preset::Slack => (header::SLACK_SIGNATURE, Encoding::Hex, sha256),
        Preset::StandardWebhooks => (header::WEBHOOK_SIGNATURE, Encoding::Base64, sha256),
        Preset::GenericHmac(g) => {
            let encoding = match g.encoding {
                DigestEncoding::Hex => Encoding::Hex,
                DigestEncoding::Base64 => Encoding::Base64,
            };
            return (g.header.to_ascii_lowercase(), encoding, sha256);
        }
        Preset::Typeform => (header::TYPEFORM_SIGNATURE, Encoding::Base64, sha256),
        Preset::Bitbucket | Preset::Jira => (header::HUB_SIGNATURE, Encoding::Hex, sha256),
        Preset::Intercom => (header::HUB_SIGNATURE, Encoding::Hex, sha1),
        Preset::Sentry => (header::SENTRY_SIGNATURE, Encoding::Hex, sha256),
        Preset::Linear => (header::LINEAR_SIGNATURE, Encoding::Hex, sha256),
        Preset::Vercel => (header::VERCEL_SIGNATURE, Encoding::Hex, sha1),
        Preset::PagerDuty => (header::PAGERDUTY_SIGNATURE, Encoding::Hex, sha256),
        Preset::Paddle => (header::PADDLE_SIGNATURE, Encoding::Hex, sha256),
        Preset::Calendly => (header::CALENDLY_SIGNATURE, Encoding::Hex, sha256),
        Preset::Zoom => (header::ZOOM_SIGNATURE, Encoding::Hex, sha256),
        Preset::Twitch => (header::TWITCH_SIGNATURE, Encoding::Hex, sha256),
        Preset::GitLab => (header::GITLAB_TOKEN, Encoding::Token, 0),
        Preset::Discord => (header::DISCORD_SIGNATURE, Encoding::Hex, 64),
        // DER: its length varies; the forgery tests replace the whole value.
        Preset::SendGrid => (header::SENDGRID_SIGNATURE, Encoding::Base64, 0),
        Preset::Twilio => (header::TWILIO_SIGNATURE, Encoding::Base64, sha1),
        Preset::Square => (header::SQUARE_SIGNATURE, Encoding::Base64, sha256),
        Preset::HubSpot => (header::HUBSPOT_SIGNATURE_V3, Encoding::Base64, sha256),
    };
    (name.to_owned(), encoding, len)
}

/// Where a preset carries its signed timestamp.
#[derive(Clone, Copy, Debug)]
enum Timestamp {
    /// A header of its own, in Unix seconds.
    Header(&'static str),
    /// A header of its own, in Unix milliseconds (HubSpot).
    Millis(&'static str),
    /// A header of its own, RFC 3339 (Twitch).
    Rfc3339(&'static str),
    /// A `key=` field inside the signature header.
    Field(&'static str),
}

fn timestamp(preset: &Preset) -> Option<Timestamp> {
    Some(match preset {
        Preset::Stripe | Preset::Calendly => Timestamp::Field("t="),
        Preset::Paddle => Timestamp::Field("ts="),
        Preset::Slack => Timestamp::Header(header::SLACK_TIMESTAMP),
        Preset::StandardWebhooks => Timestamp::Header(header::WEBHOOK_TIMESTAMP),
        Preset::Zoom => Timestamp::Header(header::ZOOM_TIMESTAMP),
        Preset::Discord => Timestamp::Header(header::DISCORD_TIMESTAMP),
        Preset::SendGrid => Timestamp::Header(header::SENDGRID_TIMESTAMP),
        Preset::Twitch => Timestamp::Rfc3339(header::TWITCH_TIMESTAMP),
        Preset::HubSpot => Timestamp::Millis(header::HUBSPOT_TIMESTAMP),
        _ => return None,
    })
}

fn id_header(preset: &Preset) -> Option<&'static str> {
    match preset {
        Preset::StandardWebhooks => Some(header::WEBHOOK_ID),
        Preset::Twitch => Some(header::TWITCH_MESSAGE_ID),
        _ => None,
    }
}

fn public_key_preset(preset: &Preset) -> bool {
    matches!(preset, Preset::Discord | Preset::SendGrid)
}

/// The secret as configured for `preset`, from random bytes.
fn secret_text(preset: &Preset, raw: &[u8]) -> Vec<u8> {
    match preset {
        Preset::StandardWebhooks => format!("whsec_{}", BASE64.encode(raw)).into_bytes(),
        // GitLab's token travels in a header: printable ASCII.
        Preset::GitLab => hex::encode(raw).into_bytes(),
        _ => raw.to_vec(),
    }
}

/// A key pair for the public-key presets and what the worker is configured with.
enum Signer {
    Ed25519(Ed25519KeyPair),
    Ecdsa(EcdsaKeyPair),
}

impl Signer {
    fn new(preset: &Preset, seed: &[u8; 32]) -> Self {
        match preset {
            Preset::Discord => Self::Ed25519(
                Ed25519KeyPair::from_seed_unchecked(seed).expect("any 32 bytes seed a key"),
            ),
            // ECDSA keys come from the system RNG: the properties do not depend on
            // which key it is.
            _ => Self::Ecdsa(
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("a P-256 key"),
            ),
        }
    }

    fn public(&self) -> Vec<u8> {
        match self {
            Self::Ed25519(k) => hex::encode(k.public_key().as_ref()).into_bytes(),
            Self::Ecdsa(k) => {
                let der = k.public_key().as_der().expect("SPKI DER");
                BASE64.encode(der.as_ref()).into_bytes()
            }
        }
    }

    /// The provider's headers for `body` at `unix`.
    fn sign(&self, body: &[u8], unix: u64) -> Vec<(String, String)> {
        let t = unix.to_string();
        let signed = [t.as_bytes(), body].concat();
        match self {
            Self::Ed25519(k) => vec![
                (
                    header::DISCORD_SIGNATURE.to_owned(),
                    hex::encode(k.sign(&signed).as_ref()),
                ),
                (header::DISCORD_TIMESTAMP.to_owned(), t),
            ],
            Self::Ecdsa(k) => {
                let sig = k.sign(&SystemRandom::new(), &signed).expect("signing");
                vec![
                    (
                        header::SENDGRID_SIGNATURE.to_owned(),
                        BASE64.encode(sig.as_ref()),
                    ),
                    (header::SENDGRID_TIMESTAMP.to_owned(), t),
                ]
            }
        }
    }
}

/// Header (name, value) pairs, in order.
type Headers = Vec<(String, String)>;

/// One signed request and the verifier that should accept it.
struct Case {
    verifier: Verifier,
    headers: Vec<(String, String)>,
    query: Vec<(String, String)>,
    body: Vec<u8>,
    unix: u64,
}

/// Signs `body` at `unix` with the key `raw` seeds, for `preset`.
fn signed_case(preset: &Preset, raw: &[u8; 32], body: &[u8], unix: u64, id: &str) -> Case {
    let (secret, Signed { headers, query }) = if public_key_preset(preset) {
        let signer = Signer::new(preset, raw);
        (
            signer.public(),
            Signed {
                headers: signer.sign(body, unix),
                query: Vec::new(),
            },
        )
    } else {
        let secret = secret_text(preset, raw);
        let request = SignRequest {
            body,
            id,
            url: URL,
            now: UNIX_EPOCH + Duration::from_secs(unix),
        };
        let signed = sign(preset, &secret, request).expect("every symmetric preset signs");
        (secret, signed)
    };
    Case {
        verifier: verifier(preset, &[secret], URL),
        headers,
        query,
        body: body.to_vec(),
        unix,
    }
}

fn verifier(preset: &Preset, secrets: &[Vec<u8>], url: &str) -> Verifier {
    Verifier::new(preset.clone(), secrets, Duration::from_secs(TOLERANCE))
        .expect("a valid secret")
        .with_public_url(Some(url.to_owned()))
}

fn header_map(pairs: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            map.append(name, value);
        }
    }
    map
}

fn at(unix: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix)
}

impl Case {
    fn check(&self, headers: &[(String, String)], body: &[u8], now: u64) -> bool {
        self.verifier
            .verify_request(&header_map(headers), body, &self.query, at(now))
            .is_ok()
    }

    fn with_header(&self, name: &str, f: impl Fn(&str) -> String) -> Vec<(String, String)> {
        self.headers
            .iter()
            .map(|(n, v)| {
                let v = if n == name { f(v) } else { v.clone() };
                (n.clone(), v)
            })
            .collect()
    }
}

/// The digest at the end of `value` replaced by `digest`, encoded as the preset
/// writes it.
fn replace_digest(value: &str, encoding: Encoding, len: usize, digest: &[u8]) -> String {
    let (encoded_len, encoded) = match encoding {
        Encoding::Hex => (2 * len, hex::encode(digest)),
        Encoding::Base64 => (len.div_ceil(3) * 4, BASE64.encode(digest)),
        Encoding::Token => (value.len(), hex::encode(digest)),
    };
    let keep = value.len().saturating_sub(encoded_len);
    format!("{}{encoded}", &value[..keep])
}

/// The inputs of a signed request: a key seed, a body, a signing time, an id.
fn request_inputs() -> impl Strategy<Value = ([u8; 32], Vec<u8>, u64, String)> {
    (
        any::<[u8; 32]>(),
        body(),
        1_000_000_000u64..4_000_000_000,
        "[a-zA-Z0-9_]{1,24}".prop_map(String::from),
    )
}

/// Bodies: random bytes (a few large), JSON-ish, form-encoded, and ones that end or
/// start with digits, zeros or whitespace (what sits next to a timestamp).
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..256),
        // Large ones from a seed: a 64 KiB vector of proptest values is slow to build.
        1 => (4096usize..65_536, any::<u64>()).prop_map(|(n, seed)| pseudo_random(n, seed)),
        2 => "\\{\"id\":\"[a-z0-9]{0,12}\",\"n\":[0-9]{1,6}\\}".prop_map(String::into_bytes),
        2 => "([a-zA-Z]{1,6}=([a-zA-Z0-9+]|%[0-9A-Fa-f]{2}){0,8}&?){1,5}".prop_map(String::into_bytes),
        1 => "[ 0+]{1,3}\\{\"a\":[0-9]{1,4}\\}[ 0+]{1,3}".prop_map(String::into_bytes),
    ]
}

/// `n` bytes of xorshift64 from `seed`.
fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Runs `property` over every preset, printing the time each took.
fn for_every_preset<S: Strategy>(
    what: &str,
    cases: u32,
    strategy: impl Fn(&Preset) -> S,
    property: impl Fn(&Preset, S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let seed = seed();
    let mut failures = Vec::new();
    for preset in presets() {
        let started = Instant::now();
        let mut runner = runner(seed, cases);
        let result = runner.run(&strategy(&preset), |input| property(&preset, input));
        eprintln!(
            "{what}: {:<34} {} cases in {:>6.2?}",
            label(&preset),
            runner.config().cases,
            started.elapsed()
        );
        if let Err(e) = result {
            failures.push(format!("{}: {e}", label(&preset)));
        }
    }
    assert!(
        failures.is_empty(),
        "{what} failed (HOOKLINE_FAULT_SEED={seed}):\n{}",
        failures.join("\n")
    );
}

#[test]
fn what_is_signed_is_accepted() {
    for_every_preset(
        "accepted",
        128,
        |_| {
            (
                request_inputs(),
                -(TOLERANCE as i64)..=TOLERANCE as i64,
                any::<u64>(),
            )
        },
        |preset, ((raw, body, unix, id), skew, variant)| {
            let case = signed_case(preset, &raw, &body, unix, &id);
            let now = unix.saturating_add_signed(skew);
            prop_assert!(case.check(&case.headers, &body, now), "as signed");

            // Through an SQS message: header names in any case, values in the
            // gateway's encoded form or the raw one, the body as SQS holds it.
            let text = String::from_utf8_lossy(&body).into_owned();
            let resigned = signed_case(preset, &raw, text.as_bytes(), unix, &id);
            let delivery = delivery(&resigned, &text, variant, now);
            prop_assert_eq!(
                resigned.verifier.verify_delivery(&delivery).map(|_| ()),
                Ok(())
            );

            // Variants of the value a provider or proxy may send.
            let (name, encoding, _) = signature_format(preset);
            if encoding == Encoding::Hex {
                let upper = case.with_header(&name, |v| {
                    // The digest only: a prefix such as `sha256=` is case-sensitive.
                    let split = v.len() - v.rsplit(['=', ',']).next().map_or(0, str::len);
                    format!("{}{}", &v[..split], v[split..].to_ascii_uppercase())
                });
                prop_assert!(case.check(&upper, &body, now), "uppercase hex");
            }
            let padded = case.with_header(&name, |v| format!("{v} "));
            if !matches!(preset, Preset::GitLab) {
                // GitLab's token is compared as sent.
                prop_assert!(case.check(&padded, &body, now), "a trailing space");
            }
            // Rotation: another secret's signature next to the right one, and a
            // verifier holding two secrets.
            if let Some(list) = rotation_list(preset, &case, &name) {
                prop_assert!(case.check(&list, &body, now), "a list with the valid one");
            }
            if !public_key_preset(preset) {
                let mut other = raw;
                other[0] ^= 1;
                let two = verifier(
                    preset,
                    &[secret_text(preset, &other), secret_text(preset, &raw)],
                    URL,
                );
                let ok = two
                    .verify_request(&header_map(&case.headers), &body, &case.query, at(now))
                    .is_ok();
                prop_assert!(ok, "two secrets, the second right");
            }
            Ok(())
        },
    );
}

/// The signature header holding another signature before the valid one, for the
/// schemes that allow several.
fn rotation_list(preset: &Preset, case: &Case, name: &str) -> Option<Vec<(String, String)>> {
    let decoy_hex = "ab".repeat(32);
    let decoy_b64 = BASE64.encode([7u8; 32]);
    let prepend = |f: &dyn Fn(&str) -> String| Some(case.with_header(name, f));
    match preset {
        Preset::Stripe | Preset::Calendly => prepend(&|v| {
            let (t, rest) = v.split_once(',').unwrap_or((v, ""));
            format!("{t}, v1={decoy_hex}, v0={decoy_hex},{rest}")
        }),
        Preset::Paddle => prepend(&|v| {
            let (t, rest) = v.split_once(';').unwrap_or((v, ""));
            format!("{t};h1={decoy_hex};{rest}")
        }),
        Preset::PagerDuty => prepend(&|v| format!("v1={decoy_hex}, v2=zz,{v}")),
        Preset::StandardWebhooks => prepend(&|v| format!("v1,{decoy_b64} v2,xyz {v}")),
        _ => None,
    }
}

/// `case` as an SQS message: `variant` picks header-name case and value form.
fn delivery(case: &Case, body: &str, variant: u64, now: u64) -> Delivery {
    let mut attributes = HashMap::new();
    for (i, (name, value)) in case.headers.iter().enumerate() {
        let bits = variant >> (2 * (i % 32));
        let name = match bits & 1 {
            0 => name.to_ascii_uppercase(),
            _ => name
                .char_indices()
                .map(|(j, c)| {
                    if j % 2 == 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect(),
        };
        let value = match (bits >> 1) & 1 {
            0 => format!("{HEADER_VALUE_MARKER}{value}"),
            _ => format!(
                "{ENCODED_HEADER_VALUE_MARKER}{}",
                percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC)
            ),
        };
        attributes.insert(format!("{HEADER_ATTRIBUTE_PREFIX}{name}"), string(&value));
    }
    if !case.query.is_empty() {
        let query: Vec<String> = case.query.iter().map(|(n, v)| format!("{n}={v}")).collect();
        attributes.insert(
            hookline_contract::wire::QUERY_ATTRIBUTE.to_owned(),
            string(&hookline_contract::wire::raw_query_value(&query.join("&"))),
        );
    }
    message(body, attributes, now)
}

fn string(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("a String attribute")
}

fn message(body: &str, attributes: HashMap<String, MessageAttributeValue>, now: u64) -> Delivery {
    let message = aws_sdk_sqs::types::Message::builder()
        .message_id("m-fuzz")
        .receipt_handle("r-fuzz")
        .body(body)
        .attributes(MessageSystemAttributeName::MessageGroupId, "g")
        .attributes(
            MessageSystemAttributeName::SentTimestamp,
            (u128::from(now) * 1000).to_string(),
        )
        .set_message_attributes(Some(attributes))
        .build();
    Delivery::from_sqs(message).expect("a FIFO message")
}

/// What a forger can try with one valid request in hand.
#[derive(Debug, Clone)]
enum Forgery {
    /// Random bytes in place of the digest.
    RandomDigest(Vec<u8>),
    /// The body with one bit flipped.
    FlipBit(usize),
    /// The body cut to this many bytes (less than its length).
    Truncate(usize),
    /// The body with these bytes appended.
    Extend(Vec<u8>),
    /// The body with its first `n` bytes dropped.
    DropFront(usize),
    /// The signed timestamp moved by this many seconds (never 0), within tolerance.
    MoveTimestamp(i64),
    /// A signed timestamp spelled differently, the body adjusted so that the
    /// concatenation the provider signed is unchanged where the scheme has no
    /// separator (Discord, SendGrid, HubSpot).
    Resplit(u8),
    /// Another id.
    MoveId(String),
    /// Verified as if sent to another public URL.
    OtherUrl(String),
    /// Checked this many seconds beyond the tolerance, either way.
    Late(i64),
    /// Signed with another key.
    OtherKey([u8; 32]),
}

fn forgery() -> impl Strategy<Value = Forgery> {
    let tolerance = TOLERANCE as i64;
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..80).prop_map(Forgery::RandomDigest),
        any::<usize>().prop_map(Forgery::FlipBit),
        any::<usize>().prop_map(Forgery::Truncate),
        proptest::collection::vec(any::<u8>(), 1..16).prop_map(Forgery::Extend),
        (1usize..4).prop_map(Forgery::DropFront),
        prop_oneof![-tolerance..0, 1..=tolerance].prop_map(Forgery::MoveTimestamp),
        (0u8..6).prop_map(Forgery::Resplit),
        "[a-zA-Z0-9_]{0,4}".prop_map(Forgery::MoveId),
        prop_oneof![
            Just(format!("{URL}x")),
            Just(format!("{URL}?a=1")),
            Just("https://hooks.example.org/hookline/callbacks".to_owned()),
            Just(URL.replace("https", "http")),
        ]
        .prop_map(Forgery::OtherUrl),
        prop_oneof![1i64..1_000_000, -1_000_000i64..0].prop_map(Forgery::Late),
        any::<[u8; 32]>().prop_map(Forgery::OtherKey),
    ]
}

#[test]
fn forgeries_are_refused() {
    for_every_preset(
        "refused",
        256,
        |_| (request_inputs(), forgery()),
        |preset, ((raw, body, unix, id), forgery)| {
            let case = signed_case(preset, &raw, &body, unix, &id);
            let (name, encoding, len) = signature_format(preset);
            let refused = |headers: &[(String, String)], body: &[u8], now: u64| {
                !case.check(headers, body, now)
            };
            match forgery {
                Forgery::RandomDigest(digest) => {
                    let headers = match (encoding, len) {
                        // SendGrid's DER signature has no fixed length.
                        (Encoding::Base64, 0) => {
                            case.with_header(&name, |_| BASE64.encode(&digest))
                        }
                        _ => {
                            let mut digest = digest;
                            if len > 0 {
                                digest.resize(len, 0x5a);
                            }
                            case.with_header(&name, |v| replace_digest(v, encoding, len, &digest))
                        }
                    };
                    if headers != case.headers {
                        prop_assert!(refused(&headers, &body, unix), "random digest");
                    }
                }
                Forgery::FlipBit(bit) if signs_body(preset) && !body.is_empty() => {
                    let mut changed = body.clone();
                    let bit = bit % (8 * body.len());
                    changed[bit / 8] ^= 1 << (bit % 8);
                    prop_assert!(
                        refused(&case.headers, &changed, unix)
                            || same_form(preset, &body, &changed),
                        "one bit flipped"
                    );
                }
                Forgery::Truncate(n) if signs_body(preset) && !body.is_empty() => {
                    let changed = &body[..n % body.len()];
                    prop_assert!(
                        refused(&case.headers, changed, unix) || same_form(preset, &body, changed),
                        "truncated"
                    );
                }
                Forgery::Extend(extra) if signs_body(preset) => {
                    let changed = [&body[..], &extra].concat();
                    prop_assert!(
                        refused(&case.headers, &changed, unix)
                            || same_form(preset, &body, &changed),
                        "extended"
                    );
                }
                Forgery::DropFront(n) if signs_body(preset) && body.len() >= n => {
                    let changed = &body[n..];
                    prop_assert!(
                        refused(&case.headers, changed, unix) || same_form(preset, &body, changed),
                        "front dropped"
                    );
                }
                Forgery::MoveTimestamp(by) => {
                    if let Some(ts) = timestamp(preset) {
                        let moved = move_timestamp(&case, ts, by);
                        prop_assert!(refused(&moved, &body, unix), "timestamp moved by {by}s");
                    }
                }
                Forgery::Resplit(how) => {
                    if let Some((headers, changed)) = resplit(preset, &case, how) {
                        prop_assert!(
                            refused(&headers, &changed, unix),
                            "timestamp re-spelled over the same signed bytes: {headers:?}"
                        );
                    }
                }
                Forgery::MoveId(suffix) => {
                    if let Some(id_name) = id_header(preset) {
                        let moved = case.with_header(id_name, |v| format!("{v}{suffix}x"));
                        prop_assert!(refused(&moved, &body, unix), "id moved");
                    }
                }
                Forgery::OtherUrl(url) if preset.name().signs_url() => {
                    let secret = secret_text(preset, &raw);
                    let other = verifier(preset, &[secret], &url);
                    let ok = other
                        .verify_request(&header_map(&case.headers), &body, &case.query, at(unix))
                        .is_ok();
                    prop_assert!(!ok, "another URL");
                }
                Forgery::Late(by) if timestamp(preset).is_some() => {
                    let beyond = (TOLERANCE as i64 + 1) * by.signum() + by;
                    let now = unix.saturating_add_signed(beyond);
                    prop_assert!(refused(&case.headers, &body, now), "{beyond}s off");
                }
                Forgery::OtherKey(other) if other != raw => {
                    let forged = signed_case(preset, &other, &body, unix, &id);
                    prop_assert!(refused(&forged.headers, &body, unix), "another key");
                }
                _ => {}
            }
            Ok(())
        },
    );
}

/// Whether the scheme signs the body. GitLab's token signs nothing; the
/// verifier has no way to tell a changed body, by design of GitLab's scheme.
fn signs_body(preset: &Preset) -> bool {
    !matches!(preset, Preset::GitLab)
}

/// Twilio signs a form body's decoded fields, sorted, not its bytes: two bodies
/// with the same fields (`%4a` and `%4A`, fields reordered) are the same request.
/// Decoded here independently of the verifier, as bytes.
fn same_form(preset: &Preset, a: &[u8], b: &[u8]) -> bool {
    if !matches!(preset, Preset::Twilio) || serde_json::from_slice::<serde_json::Value>(a).is_ok() {
        return false;
    }
    let fields = |body: &[u8]| {
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = body
            .split(|b| *b == b'&')
            .filter(|p| !p.is_empty())
            .map(|part| {
                let (name, value) = match part.iter().position(|b| *b == b'=') {
                    Some(i) => (&part[..i], &part[i + 1..]),
                    None => (part, &b""[..]),
                };
                let decode = |raw: &[u8]| -> Vec<u8> {
                    let spaced: Vec<u8> = raw
                        .iter()
                        .map(|b| if *b == b'+' { b' ' } else { *b })
                        .collect();
                    percent_encoding::percent_decode(&spaced).collect()
                };
                (decode(name), decode(value))
            })
            .collect();
        fields.sort();
        fields.dedup();
        fields
            .into_iter()
            .flat_map(|(n, v)| [n, v].concat())
            .collect::<Vec<u8>>()
    };
    fields(a) == fields(b)
}

fn move_timestamp(case: &Case, ts: Timestamp, by: i64) -> Vec<(String, String)> {
    let moved = case.unix.saturating_add_signed(by);
    match ts {
        Timestamp::Header(name) => case.with_header(name, |_| moved.to_string()),
        Timestamp::Millis(name) => case.with_header(name, |v| {
            let ms: u64 = v.parse().unwrap_or(0);
            ms.saturating_add_signed(by.saturating_mul(1000))
                .to_string()
        }),
        // A second off cannot be written without a date library; a fraction
        // changes the signed text and keeps the instant.
        Timestamp::Rfc3339(name) => case.with_header(name, |v| v.replace('Z', ".5Z")),
        Timestamp::Field(key) => case
            .headers
            .iter()
            .map(|(n, v)| {
                let v = v.replacen(&format!("{key}{}", case.unix), &format!("{key}{moved}"), 1);
                (n.clone(), v)
            })
            .collect(),
    }
}

/// For the schemes that sign a timestamp next to the body without a separator:
/// the same signed bytes, split differently between the timestamp header and the
/// body, in a spelling (`+`, leading `0`, spaces) that still reads as a time within
/// tolerance. `None` where the body does not allow it.
fn resplit(preset: &Preset, case: &Case, how: u8) -> Option<(Headers, Vec<u8>)> {
    let body = &case.body;
    match timestamp(preset)? {
        // Signed as timestamp then body: a byte moves from the body's front.
        Timestamp::Header(name) if matches!(preset, Preset::Discord | Preset::SendGrid) => {
            let first = *body.first()?;
            if !(first == b' ' || first == b'\t') || how % 2 == 1 {
                return None;
            }
            let moved = case.with_header(name, |v| format!("{v}{}", first as char));
            Some((moved, body[1..].to_vec()))
        }
        // Signed as body then timestamp: a byte moves from the body's end.
        Timestamp::Millis(name) => {
            let last = *body.last()?;
            if !matches!(last, b'0' | b'+' | b' ') {
                return None;
            }
            let moved = case.with_header(name, |v| format!("{}{v}", last as char));
            Some((moved, body[..body.len() - 1].to_vec()))
        }
        _ => None,
    }
}

#[test]
fn no_input_panics_a_verifier() {
    for_every_preset(
        // Its inputs are the costly ones to generate (~10 ms a case unoptimised).
        "no panic",
        32,
        |preset| {
            (
                request_inputs(),
                headers_like(preset),
                query(),
                any::<i64>(),
                any::<u64>(),
            )
        },
        |preset, ((raw, body, unix, id), headers, query, now, variant)| {
            let case = signed_case(preset, &raw, &body, unix, &id);
            let now = now.unsigned_abs() % (1 << 40);
            let pairs: Vec<(String, String)> = headers
                .iter()
                .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned()))
                .collect();
            // Straight to the API, with the raw bytes (obs-text included).
            let mut map = HeaderMap::new();
            for (name, value) in &headers {
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_bytes(value),
                ) {
                    map.append(n, v);
                }
            }
            let _ = case.verifier.verify_request(&map, &body, &query, at(now));
            let _ = case.verifier.verify_request(&map, &body, &[], at(unix));
            // Through an SQS message, as the worker reads one.
            let fuzzed = Case {
                headers: pairs,
                query,
                ..case
            };
            let text = String::from_utf8_lossy(&body).into_owned();
            let delivery = delivery(&fuzzed, &text, variant, now);
            let _ = fuzzed.verifier.verify_delivery(&delivery);
            Ok(())
        },
    );
}

/// Header maps shaped like a preset's: its own header names (any case, some
/// repeated, some missing) with values that are mutations of well-formed ones.
fn headers_like(preset: &Preset) -> impl Strategy<Value = Vec<(String, Vec<u8>)>> + use<> {
    let mut names: Vec<String> = vec![signature_format(preset).0];
    if let Some(Timestamp::Header(n) | Timestamp::Millis(n) | Timestamp::Rfc3339(n)) =
        timestamp(preset)
    {
        names.push(n.to_owned());
    }
    names.extend(id_header(preset).map(str::to_owned));
    names.push("content-type".to_owned());
    let name = proptest::sample::select(names).prop_flat_map(|n| {
        prop_oneof![
            Just(n.clone()),
            Just(n.to_ascii_uppercase()),
            Just(format!("{n} ")),
            Just(format!("x-{n}")),
        ]
    });
    proptest::collection::vec((name, header_value()), 0..8)
}

/// Values: well-formed pieces glued with separators, broken in the ways a
/// verifier might trip on.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    let number = prop_oneof![
        Just("-9223372036854775808".to_owned()),
        Just("9223372036854775807".to_owned()),
        Just("18446744073709551615".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("-1".to_owned()),
        Just("+1700000000".to_owned()),
        Just(" 1700000000 ".to_owned()),
        Just("1e9".to_owned()),
        Just("0000000000000000000001700000000".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
    ];
    let time = prop_oneof![
        Just("2019-11-16T10:11:12.634234626Z".to_owned()),
        Just("9999-12-31T23:59:60+23:59".to_owned()),
        Just("0000-01-01T00:00:00-23:59".to_owned()),
        Just("2019-11-16T10:11:12.Z".to_owned()),
        Just("2019-11-16T10:11:12+1:00".to_owned()),
        Just("2019-02-31T10:11:12Z".to_owned()),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,12})?(Z|[+-][0-9]{2}:[0-9]{2})?"
            .prop_map(String::from),
    ];
    let digest = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..70).prop_map(hex::encode),
        proptest::collection::vec(any::<u8>(), 1..70).prop_map(|b| hex::encode(b)[1..].to_owned()),
        proptest::collection::vec(any::<u8>(), 0..70).prop_map(|b| BASE64.encode(b)),
        proptest::collection::vec(any::<u8>(), 1..70).prop_map(|b| {
            let text = BASE64.encode(b);
            text[..text.len() - 1].to_owned()
        }),
        "[A-Za-z0-9+/=_-]{0,90}".prop_map(String::from),
    ];
    let piece = prop_oneof![
        number,
        time,
        digest,
        "(t|v0|v1|v9|ts|h1|h2|sha1|sha256|SHA256|V1)".prop_map(String::from),
        Just(String::new()),
    ];
    let glued = proptest::collection::vec(
        (piece, "(=|,|;| |, |,,|==|:)".prop_map(String::from)),
        0..12,
    )
    .prop_map(|parts| {
        parts
            .into_iter()
            .flat_map(|(p, s)| [p, s])
            .collect::<String>()
            .into_bytes()
    });
    prop_oneof![
        6 => glued,
        // Anything, obs-text and control bytes included (invalid ones are dropped
        // on the way, as the worker drops them).
        2 => proptest::collection::vec(any::<u8>(), 0..64),
        // Huge: many signatures.
        1 => (1usize..2000).prop_map(|n| format!("t=1700000000{}", ",v1=00".repeat(n)).into_bytes()),
        1 => Just(vec![b'a'; 100_000]),
    ]
}

fn query() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec(
        (
            prop_oneof![
                Just("bodySHA256".to_owned()),
                "[a-z%+]{0,6}".prop_map(String::from)
            ],
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..40).prop_map(hex::encode),
                any::<String>(),
            ],
        ),
        0..4,
    )
}

/// Twilio signs a form body's fields as decoded bytes: escapes of bytes that are
/// not UTF-8 must not collapse to the same replacement character, or a body with
/// `%F8` would verify with the signature made for `%F9`.
#[test]
fn twilio_fields_that_are_not_utf8_stay_distinct() {
    let secret = b"twilio auth token".to_vec();
    let unix = 1_764_637_323;
    let signed = sign(
        &Preset::Twilio,
        &secret,
        SignRequest {
            body: b"Body=%F8",
            id: "",
            url: URL,
            now: at(unix),
        },
    )
    .expect("Twilio signs");
    let v = verifier(&Preset::Twilio, &[secret], URL);
    let headers = header_map(&signed.headers);
    assert_eq!(
        v.verify_request(&headers, b"Body=%F8", &signed.query, at(unix)),
        Ok(())
    );
    assert!(
        v.verify_request(&headers, b"Body=%F9", &signed.query, at(unix))
            .is_err(),
        "%F9 verified with %F8's signature"
    );
}

/// Discord, SendGrid and HubSpot sign a timestamp next to the body with nothing
/// between them: a timestamp header that reads as the same instant in another
/// spelling (a leading `0`, `+` or space) would let a byte move between body and
/// header under the same signature. HubSpot first.
#[test]
fn a_hubspot_timestamp_must_be_plain_digits() {
    let unix = 1_764_637_323u64;
    // Body then timestamp. A body ending in `0` signed; the forger moves that `0`
    // in front of the timestamp.
    let secret = b"hubspot app secret".to_vec();
    let signed = sign(
        &Preset::HubSpot,
        &secret,
        SignRequest {
            body: b"{\"a\":10}0",
            id: "",
            url: URL,
            now: at(unix),
        },
    )
    .expect("HubSpot signs");
    let v = verifier(&Preset::HubSpot, &[secret], URL);
    let forged: Vec<(String, String)> = signed
        .headers
        .iter()
        .map(|(n, value)| {
            let value = if n == header::HUBSPOT_TIMESTAMP {
                format!("0{value}")
            } else {
                value.clone()
            };
            (n.clone(), value)
        })
        .collect();
    assert_eq!(
        v.verify_request(&header_map(&signed.headers), b"{\"a\":10}0", &[], at(unix)),
        Ok(())
    );
    assert!(
        v.verify_request(&header_map(&forged), b"{\"a\":10}", &[], at(unix))
            .is_err(),
        "HubSpot accepted the body's last byte moved into its timestamp"
    );
}

/// Discord: timestamp then body. A body starting with a space signed; the space
/// moves behind the timestamp.
#[test]
fn a_discord_timestamp_must_be_plain_digits() {
    let unix = 1_764_637_323u64;
    let key = Signer::new(&Preset::Discord, &[9; 32]);
    let v = verifier(&Preset::Discord, &[key.public()], URL);
    let signed = key.sign(b" {\"type\":1}", unix);
    let forged: Vec<(String, String)> = signed
        .iter()
        .map(|(n, value)| {
            let value = if n == header::DISCORD_TIMESTAMP {
                format!("{value} ")
            } else {
                value.clone()
            };
            (n.clone(), value)
        })
        .collect();
    assert_eq!(
        v.verify_request(&header_map(&signed), b" {\"type\":1}", &[], at(unix)),
        Ok(())
    );
    assert!(
        v.verify_request(&header_map(&forged), b"{\"type\":1}", &[], at(unix))
            .is_err(),
        "Discord accepted the body's first byte moved into its timestamp"
    );
}
