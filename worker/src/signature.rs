//! Provider signature verification, before a message reaches the handler.
//!
//! Every scheme here is an HMAC over (part of) the raw request, SHA-256 except for
//! the providers that still sign with SHA-1 (Intercom, Vercel, Twilio), compared in
//! constant time (`aws_lc_rs::hmac::verify`), or GitLab's shared token, compared
//! in constant time as well, or a signature by the provider's private key checked
//! with its public key (Discord's Ed25519, SendGrid's ECDSA P-256). Three presets
//! (Twilio, Square, HubSpot) sign the URL the provider called as well: the worker
//! rebuilds it from its configured public URL and the query the gateway forwarded
//! ([`Verifier::with_public_url`], [`called_url`]). Several secrets may be configured at
//! once so a provider's secret can be rotated without dropping deliveries: a
//! signature valid for any of them passes.
//!
//! The secret set can also be replaced while the worker runs ([`Verifier::rotate`]).
//! A replaced set is retired, not forgotten: it still verifies every message SQS
//! accepted before the change plus the rotation window, judged by the message's
//! `SentTimestamp`. A backlog signed with the old secret therefore verifies however
//! late it is delivered, and a request signed with the old secret that reaches the
//! gateway after the window does not.

use aws_lc_rs::{constant_time, digest, hmac, signature};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::HeaderMap;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::wire::Delivery;
use hookline_contract::signature::header;
/// The presets and their settings are the contract's: the operator configures them.
pub use hookline_contract::signature::{DigestEncoding, GenericHmac, Preset, PresetName};

pub mod sign;
pub use sign::{Request as SignRequest, SignError, Signed, sign};

/// Why a message was not verified. The text never contains a secret or a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The scheme's header is absent.
    #[error("missing header {0}")]
    MissingHeader(String),
    /// A header is present but not in the scheme's format.
    #[error("malformed {0}")]
    Malformed(String),
    /// The signed timestamp is further than the tolerance from when SQS accepted the
    /// message: a replay of an old request, or a provider clock far off.
    #[error(
        "timestamp is {age_seconds}s from when the request was queued, over the {tolerance_seconds}s tolerance"
    )]
    OutsideTolerance {
        /// Distance between the signed timestamp and the time checked against.
        age_seconds: u64,
        /// The configured tolerance.
        tolerance_seconds: u64,
    },
    /// No signature matches any configured secret.
    #[error("signature does not match")]
    Mismatch,
    /// The preset signs the URL the provider called, and no public URL is configured.
    #[error("the preset signs the Webhook's public URL, and none is configured")]
    NoPublicUrl,
}

/// A configuration the verifier cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No secret was given.
    #[error("no signing secret configured")]
    NoSecret,
    /// A Standard Webhooks secret is not `whsec_<base64>` (or plain base64).
    #[error("Standard Webhooks secret #{0} is not base64 after the optional whsec_ prefix")]
    BadStandardWebhooksSecret(usize),
    /// A Discord or SendGrid public key that does not parse as one.
    #[error(
        "public key #{0} is not the preset's key type (hex Ed25519 for Discord, base64 DER P-256 for SendGrid)"
    )]
    BadPublicKey(usize),
    /// A secret is empty: anyone could compute an HMAC with an empty key, so it is
    /// never accepted (it is also what a half-written file looks like).
    #[error("signing secret #{0} is empty")]
    EmptySecret(usize),
}

/// Which secrets a signature matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// One of the secrets configured now.
    Current,
    /// A secret replaced by a rotation, still accepted for this message because SQS
    /// queued it before that rotation's window ended.
    Retired,
}

/// Retired sets are dropped once no message they could verify can still be in a
/// queue: SQS keeps a message at most 14 days (`MessageRetentionPeriod`).
const LONGEST_RETENTION: Duration = Duration::from_secs(14 * 24 * 3600);

/// Bounds memory if a Secret flaps; older sets go first.
const MAX_RETIRED_SETS: usize = 16;

/// One configured secret, ready to check signatures with. Its Debug names the
/// kind only: a GitLab token is the secret itself.
#[expect(
    clippy::large_enum_variant,
    reason = "almost every key is an HMAC key, held in a short Vec: boxing it would add a pointer chase to every check to save memory on the rare public key"
)]
enum Key {
    /// An HMAC key: SHA-256, or SHA-1 for the providers that still sign with it.
    Hmac(hmac::Key),
    /// A shared token the provider sends as it is (GitLab).
    Token(Vec<u8>),
    /// A provider's public key, parsed once (Discord's Ed25519, SendGrid's ECDSA).
    Public(signature::ParsedPublicKey),
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Hmac(_) => "Key::Hmac(..)",
            Self::Token(_) => "Key::Token(..)",
            Self::Public(_) => "Key::Public(..)",
        })
    }
}

impl Key {
    /// Whether `signature` is this key's over `signed`, compared in constant time.
    fn matches(&self, signed: &[u8], signature: &[u8]) -> bool {
        match self {
            Self::Hmac(key) => hmac::verify(key, signed, signature).is_ok(),
            // Only the length can leak, and the provider's token length is no secret.
            Self::Token(token) => constant_time::verify_slices_are_equal(token, signature).is_ok(),
            Self::Public(key) => key.verify_sig(signed, signature).is_ok(),
        }
    }
}

/// The secret sets a [`Verifier`] holds.
#[derive(Debug)]
struct Keyring {
    current: Vec<Key>,
    /// Newest first.
    retired: Vec<Retired>,
}

/// A replaced secret set.
#[derive(Debug)]
struct Retired {
    keys: Vec<Key>,
    /// Messages SQS accepted before this instant still verify with these keys.
    until: SystemTime,
}

/// Verifies messages for one preset and a set of secrets, which
/// [`rotate`](Self::rotate) may replace while messages are being verified.
#[derive(Debug)]
pub struct Verifier {
    preset: Preset,
    keys: RwLock<Keyring>,
    tolerance: Duration,
    rotation_window: Duration,
    /// Where the provider sends requests, without a query: what the URL-signing
    /// presets sign, with each request's query appended.
    public_url: Option<String>,
}

impl Verifier {
    /// `secrets` are the raw secret values as the provider shows them (a Standard
    /// Webhooks `whsec_…` secret is decoded here). `tolerance` bounds the age of
    /// timestamped signatures.
    pub fn new(
        preset: Preset,
        secrets: &[Vec<u8>],
        tolerance: Duration,
    ) -> Result<Self, ConfigError> {
        let current = keys(&preset, secrets)?;
        Ok(Self {
            preset,
            keys: RwLock::new(Keyring {
                current,
                retired: Vec::new(),
            }),
            tolerance,
            rotation_window: Duration::ZERO,
            public_url: None,
        })
    }

    /// The URL the provider sends to, without a query (the Webhook's `status.url`):
    /// Twilio, Square and HubSpot sign it; the other presets ignore it.
    #[must_use]
    pub fn with_public_url(mut self, url: Option<String>) -> Self {
        self.public_url = url;
        self
    }

    /// How long after a [`rotate`](Self::rotate) messages signed with the replaced
    /// secrets are still accepted, counted by when SQS accepted them. Zero (the
    /// default) still accepts everything queued before the rotation.
    #[must_use]
    pub fn with_rotation_window(mut self, window: Duration) -> Self {
        self.rotation_window = window;
        self
    }

    /// The rotation window.
    pub fn rotation_window(&self) -> Duration {
        self.rotation_window
    }

    /// Replaces the secret set, as of `changed_at`. The previous set keeps verifying
    /// messages queued before `changed_at` plus the rotation window; the new set
    /// verifies every message, whenever it was queued (a provider may switch before
    /// the Secret does). Invalid secrets leave the current set untouched. Returns
    /// the instant the previous set stops verifying new messages.
    pub fn rotate(
        &self,
        secrets: &[Vec<u8>],
        changed_at: SystemTime,
    ) -> Result<SystemTime, ConfigError> {
        let current = keys(&self.preset, secrets)?;
        let until = changed_at + self.rotation_window;
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        let previous = std::mem::replace(&mut keys.current, current);
        keys.retired.insert(
            0,
            Retired {
                keys: previous,
                until,
            },
        );
        keys.retired
            .retain(|r| r.until + LONGEST_RETENTION > changed_at);
        keys.retired.truncate(MAX_RETIRED_SETS);
        Ok(until)
    }

    /// Checks a queued request against the time SQS accepted it (its
    /// `SentTimestamp`, set by SQS and not by the sender): a backlog of any age still
    /// verifies, and a replayed request, signed long before it was queued, does not.
    /// Without a `SentTimestamp` it falls back to the current time, the safe side.
    /// The same time also decides which retired secrets still apply.
    pub fn verify_delivery(&self, delivery: &Delivery) -> Result<Verified, Rejection> {
        let queued_at = delivery.sent_at.unwrap_or_else(|| {
            tracing::warn!(message_id = %delivery.message_id, "the message has no SentTimestamp; checking its signature's age against the current time");
            SystemTime::now()
        });
        self.check(
            &delivery.headers,
            &delivery.body,
            &delivery.query,
            queued_at,
        )
    }

    /// Checks one request's headers and raw body as if received at `now`, for a
    /// request without a query string.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), Rejection> {
        self.check(headers, body, &[], now).map(|_| ())
    }

    /// Checks one request with its decoded query parameters, in the order sent, as
    /// if received at `now` (only the presets that sign the URL read them).
    pub fn verify_request(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        query: &[(String, String)],
        now: SystemTime,
    ) -> Result<(), Rejection> {
        self.check(headers, body, query, now).map(|_| ())
    }

    /// The URL the provider called: the public URL and the query, rebuilt.
    fn called(&self, query: &[(String, String)]) -> Result<String, Rejection> {
        let base = self.public_url.as_deref().ok_or(Rejection::NoPublicUrl)?;
        Ok(called_url(base, query))
    }

    fn check(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        query: &[(String, String)],
        now: SystemTime,
    ) -> Result<Verified, Rejection> {
        match &self.preset {
            Preset::Stripe => {
                let header = required(headers, header::STRIPE_SIGNATURE)?;
                let mut timestamp = None;
                let mut signatures = Vec::new();
                for part in header.split(',') {
                    match part.trim().split_once('=') {
                        Some(("t", t)) => timestamp = Some(t),
                        // v0 and other schemes are ignored, as Stripe's own libraries do.
                        Some(("v1", sig)) => signatures.push(decode_hex(sig, "Stripe-Signature")?),
                        _ => {}
                    }
                }
                let timestamp = timestamp.ok_or_else(|| malformed("Stripe-Signature (no t=)"))?;
                if signatures.is_empty() {
                    return Err(malformed("Stripe-Signature (no v1=)"));
                }
                self.check_timestamp(timestamp, "Stripe-Signature", now)?;
                let signed = [timestamp.as_bytes(), b".", body].concat();
                self.any_matches(&signed, &signatures, now)
            }
            Preset::GitHub => {
                let header = required(headers, header::GITHUB_SIGNATURE)?;
                let hex = header
                    .strip_prefix("sha256=")
                    .ok_or_else(|| malformed("X-Hub-Signature-256 (no sha256= prefix)"))?;
                self.any_matches(body, &[decode_hex(hex, "X-Hub-Signature-256")?], now)
            }
            Preset::Shopify => {
                let header = required(headers, header::SHOPIFY_HMAC)?;
                self.any_matches(
                    body,
                    &[decode_base64(header, "X-Shopify-Hmac-Sha256")?],
                    now,
                )
            }
            Preset::Slack => {
                let header = required(headers, header::SLACK_SIGNATURE)?;
                let timestamp = required(headers, header::SLACK_TIMESTAMP)?;
                let hex = header
                    .strip_prefix("v0=")
                    .ok_or_else(|| malformed("X-Slack-Signature (no v0= prefix)"))?;
                self.check_timestamp(timestamp, "X-Slack-Request-Timestamp", now)?;
                let signed = [b"v0:", timestamp.as_bytes(), b":", body].concat();
                self.any_matches(&signed, &[decode_hex(hex, "X-Slack-Signature")?], now)
            }
            Preset::StandardWebhooks => {
                let id = required(headers, header::WEBHOOK_ID)?;
                let timestamp = required(headers, header::WEBHOOK_TIMESTAMP)?;
                let header = required(headers, header::WEBHOOK_SIGNATURE)?;
                self.check_timestamp(timestamp, "webhook-timestamp", now)?;
                let signatures = header
                    .split(' ')
                    .filter_map(|entry| entry.strip_prefix("v1,"))
                    .map(|sig| decode_base64(sig, "webhook-signature"))
                    .collect::<Result<Vec<_>, _>>()?;
                if signatures.is_empty() {
                    return Err(malformed("webhook-signature (no v1, entry)"));
                }
                let signed = [id.as_bytes(), b".", timestamp.as_bytes(), b".", body].concat();
                self.any_matches(&signed, &signatures, now)
            }
            Preset::GenericHmac(generic) => {
                let header = required(headers, &generic.header)?;
                let digest = match &generic.prefix {
                    Some(prefix) => header.strip_prefix(prefix.as_str()).ok_or_else(|| {
                        malformed(&format!("{} (no {prefix} prefix)", generic.header))
                    })?,
                    None => header,
                };
                let expected = match generic.encoding {
                    DigestEncoding::Hex => decode_hex(digest, &generic.header)?,
                    DigestEncoding::Base64 => decode_base64(digest, &generic.header)?,
                };
                self.any_matches(body, &[expected], now)
            }
            Preset::Typeform => {
                let header = required(headers, header::TYPEFORM_SIGNATURE)?;
                let digest = prefixed(header, "sha256=", "Typeform-Signature")?;
                let signature = decode_base64(digest, "Typeform-Signature")?;
                self.any_matches(body, &[signature], now)
            }
            Preset::Bitbucket | Preset::Jira => {
                let header = required(headers, header::HUB_SIGNATURE)?;
                let digest = prefixed(header, "sha256=", "X-Hub-Signature")?;
                self.any_matches(body, &[decode_hex(digest, "X-Hub-Signature")?], now)
            }
            Preset::Intercom => {
                let header = required(headers, header::HUB_SIGNATURE)?;
                let digest = prefixed(header, "sha1=", "X-Hub-Signature")?;
                self.any_matches(body, &[decode_hex(digest, "X-Hub-Signature")?], now)
            }
            Preset::Sentry => {
                let header = required(headers, header::SENTRY_SIGNATURE)?;
                self.any_matches(body, &[decode_hex(header, "Sentry-Hook-Signature")?], now)
            }
            Preset::Linear => {
                let header = required(headers, header::LINEAR_SIGNATURE)?;
                self.any_matches(body, &[decode_hex(header, "Linear-Signature")?], now)
            }
            Preset::Vercel => {
                let header = required(headers, header::VERCEL_SIGNATURE)?;
                self.any_matches(body, &[decode_hex(header, "x-vercel-signature")?], now)
            }
            Preset::Paddle => {
                let header = required(headers, header::PADDLE_SIGNATURE)?;
                let mut timestamp = None;
                let mut signatures = Vec::new();
                for part in header.split(';') {
                    match part.trim().split_once('=') {
                        Some(("ts", t)) => timestamp = Some(t),
                        // Several h1= while a secret is rotated.
                        Some(("h1", sig)) => signatures.push(decode_hex(sig, "Paddle-Signature")?),
                        _ => {}
                    }
                }
                let timestamp = timestamp.ok_or_else(|| malformed("Paddle-Signature (no ts=)"))?;
                if signatures.is_empty() {
                    return Err(malformed("Paddle-Signature (no h1=)"));
                }
                self.check_timestamp(timestamp, "Paddle-Signature", now)?;
                let signed = [timestamp.as_bytes(), b":", body].concat();
                self.any_matches(&signed, &signatures, now)
            }
            Preset::Calendly => {
                let header = required(headers, header::CALENDLY_SIGNATURE)?;
                let mut timestamp = None;
                let mut signatures = Vec::new();
                for part in header.split(',') {
                    match part.trim().split_once('=') {
                        Some(("t", t)) => timestamp = Some(t),
                        Some(("v1", sig)) => {
                            signatures.push(decode_hex(sig, "Calendly-Webhook-Signature")?);
                        }
                        _ => {}
                    }
                }
                let timestamp =
                    timestamp.ok_or_else(|| malformed("Calendly-Webhook-Signature (no t=)"))?;
                if signatures.is_empty() {
                    return Err(malformed("Calendly-Webhook-Signature (no v1=)"));
                }
                self.check_timestamp(timestamp, "Calendly-Webhook-Signature", now)?;
                let signed = [timestamp.as_bytes(), b".", body].concat();
                self.any_matches(&signed, &signatures, now)
            }
            Preset::Zoom => {
                let header = required(headers, header::ZOOM_SIGNATURE)?;
                let timestamp = required(headers, header::ZOOM_TIMESTAMP)?;
                let digest = prefixed(header, "v0=", "x-zm-signature")?;
                self.check_timestamp(timestamp, "x-zm-request-timestamp", now)?;
                let signed = [b"v0:", timestamp.as_bytes(), b":", body].concat();
                self.any_matches(&signed, &[decode_hex(digest, "x-zm-signature")?], now)
            }
            Preset::Twitch => {
                let id = required(headers, header::TWITCH_MESSAGE_ID)?;
                let timestamp = required(headers, header::TWITCH_TIMESTAMP)?;
                let header = required(headers, header::TWITCH_SIGNATURE)?;
                let digest = prefixed(header, "sha256=", "Twitch-Eventsub-Message-Signature")?;
                let signed_at = rfc3339_seconds(timestamp)
                    .ok_or_else(|| malformed("Twitch-Eventsub-Message-Timestamp (not RFC 3339)"))?;
                self.check_age(signed_at, now)?;
                let signed = [id.as_bytes(), timestamp.as_bytes(), body].concat();
                let signature = decode_hex(digest, "Twitch-Eventsub-Message-Signature")?;
                self.any_matches(&signed, &[signature], now)
            }
            Preset::Discord => {
                let header = required(headers, header::DISCORD_SIGNATURE)?;
                let timestamp = required(headers, header::DISCORD_TIMESTAMP)?;
                let signed_at = adjacent_timestamp(timestamp, "X-Signature-Timestamp")?;
                self.check_age(signed_at, now)?;
                let signed = [timestamp.as_bytes(), body].concat();
                self.any_matches(&signed, &[decode_hex(header, "X-Signature-Ed25519")?], now)
            }
            Preset::SendGrid => {
                let header = required(headers, header::SENDGRID_SIGNATURE)?;
                let timestamp = required(headers, header::SENDGRID_TIMESTAMP)?;
                let signed_at =
                    adjacent_timestamp(timestamp, "X-Twilio-Email-Event-Webhook-Timestamp")?;
                self.check_age(signed_at, now)?;
                let signed = [timestamp.as_bytes(), body].concat();
                let signature = decode_base64(header, "X-Twilio-Email-Event-Webhook-Signature")?;
                self.any_matches(&signed, &[signature], now)
            }
            Preset::Twilio => {
                let header = required(headers, header::TWILIO_SIGNATURE)?;
                let signature = decode_base64(header, "X-Twilio-Signature")?;
                let url = self.called(query)?;
                let body_hash = query
                    .iter()
                    .find(|(name, _)| name == TWILIO_BODY_HASH)
                    .map(|(_, hash)| hash);
                let fields = match body_hash {
                    // A JSON body: Twilio signs the URL alone, which carries the
                    // body's hash; without checking it the body could be anything.
                    Some(hash) => {
                        let expected = hex::decode(hash.trim())
                            .map_err(|_| malformed("bodySHA256 (not hex)"))?;
                        let actual = digest::digest(&digest::SHA256, body);
                        if constant_time::verify_slices_are_equal(actual.as_ref(), &expected)
                            .is_err()
                        {
                            return Err(Rejection::Mismatch);
                        }
                        Vec::new()
                    }
                    None => twilio_form_fields(body),
                };
                let candidates: Vec<Vec<u8>> = with_and_without_port(&url)
                    .into_iter()
                    .map(|url| [url.as_bytes(), &fields].concat())
                    .collect();
                self.any_candidate_matches(&candidates, &[signature], now)
            }
            Preset::Square => {
                let header = required(headers, header::SQUARE_SIGNATURE)?;
                let signature = decode_base64(header, "x-square-hmacsha256-signature")?;
                let signed = [self.called(query)?.as_bytes(), body].concat();
                self.any_matches(&signed, &[signature], now)
            }
            Preset::HubSpot => {
                let header = required(headers, header::HUBSPOT_SIGNATURE_V3)?;
                let timestamp = required(headers, header::HUBSPOT_TIMESTAMP)?;
                let signature = decode_base64(header, "X-HubSpot-Signature-v3")?;
                let millis = adjacent_timestamp(timestamp, "X-HubSpot-Request-Timestamp")?;
                self.check_age(millis / 1000, now)?;
                // Routes accept POST only, so that is the method HubSpot signed.
                let uri = hubspot_uri(&self.called(query)?);
                let signed = [b"POST", uri.as_bytes(), body, timestamp.as_bytes()].concat();
                self.any_matches(&signed, &[signature], now)
            }
            Preset::GitLab => {
                let token = required(headers, header::GITLAB_TOKEN)?;
                self.any_matches(b"", &[token.as_bytes().to_vec()], now)
            }
            Preset::PagerDuty => {
                let header = required(headers, header::PAGERDUTY_SIGNATURE)?;
                // One `v1=` per active secret while PagerDuty rotates; other versions
                // are ignored, as PagerDuty's own libraries do.
                let signatures = header
                    .split(',')
                    .filter_map(|entry| entry.trim().strip_prefix("v1="))
                    .map(|sig| decode_hex(sig, "X-PagerDuty-Signature"))
                    .collect::<Result<Vec<_>, _>>()?;
                if signatures.is_empty() {
                    return Err(malformed("X-PagerDuty-Signature (no v1=)"));
                }
                self.any_matches(body, &signatures, now)
            }
        }
    }

    /// `queued_at` picks the retired sets that still apply.
    fn any_matches(
        &self,
        signed: &[u8],
        signatures: &[Vec<u8>],
        queued_at: SystemTime,
    ) -> Result<Verified, Rejection> {
        self.any_candidate_matches(&[signed], signatures, queued_at)
    }

    /// [`any_matches`](Self::any_matches) for a scheme whose signed text has
    /// several accepted spellings (Twilio's URL with and without its port).
    fn any_candidate_matches(
        &self,
        candidates: &[impl AsRef<[u8]>],
        signatures: &[Vec<u8>],
        queued_at: SystemTime,
    ) -> Result<Verified, Rejection> {
        // Stopping at the first spelling that matches tells only which public URL
        // spelling the provider used; each comparison is constant-time.
        let any = |keys: &[Key]| {
            candidates
                .iter()
                .any(|signed| matches_any(keys, signed.as_ref(), signatures))
        };
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        if any(&keys.current) {
            return Ok(Verified::Current);
        }
        let retired = keys
            .retired
            .iter()
            .filter(|r| queued_at < r.until)
            .any(|r| any(&r.keys));
        if retired {
            Ok(Verified::Retired)
        } else {
            Err(Rejection::Mismatch)
        }
    }

    fn check_timestamp(&self, value: &str, header: &str, now: SystemTime) -> Result<(), Rejection> {
        let signed: u64 = value
            .trim()
            .parse()
            .map_err(|_| malformed(&format!("{header} (timestamp)")))?;
        self.check_age(signed, now)
    }

    /// Bounds the distance between a signed Unix time and `now`, either way.
    fn check_age(&self, signed: u64, now: SystemTime) -> Result<(), Rejection> {
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let age = now.abs_diff(signed);
        if age > self.tolerance.as_secs() {
            return Err(Rejection::OutsideTolerance {
                age_seconds: age,
                tolerance_seconds: self.tolerance.as_secs(),
            });
        }
        Ok(())
    }
}

fn keys(preset: &Preset, secrets: &[Vec<u8>]) -> Result<Vec<Key>, ConfigError> {
    if secrets.is_empty() {
        return Err(ConfigError::NoSecret);
    }
    secrets
        .iter()
        .enumerate()
        .map(|(i, secret)| {
            let bytes = if *preset == Preset::StandardWebhooks {
                let text = secret.strip_prefix(b"whsec_").unwrap_or(secret);
                BASE64
                    .decode(text)
                    .map_err(|_| ConfigError::BadStandardWebhooksSecret(i))?
            } else {
                secret.clone()
            };
            if bytes.is_empty() {
                return Err(ConfigError::EmptySecret(i));
            }
            match preset {
                Preset::GitLab => return Ok(Key::Token(bytes)),
                Preset::Discord | Preset::SendGrid => return public_key(preset, &bytes, i),
                _ => {}
            }
            let algorithm = match preset {
                // They still sign with SHA-1; as a MAC it holds (collisions do not help forge one).
                Preset::Intercom | Preset::Vercel | Preset::Twilio => {
                    hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY
                }
                _ => hmac::HMAC_SHA256,
            };
            Ok(Key::Hmac(hmac::Key::new(algorithm, &bytes)))
        })
        .collect()
}

/// A Discord (hex, raw Ed25519) or SendGrid (base64, DER SubjectPublicKeyInfo)
/// public key as the provider's console shows it.
fn public_key(preset: &Preset, text: &[u8], index: usize) -> Result<Key, ConfigError> {
    let bad = ConfigError::BadPublicKey(index);
    let text = text.trim_ascii();
    let (algorithm, bytes): (&'static dyn signature::VerificationAlgorithm, Vec<u8>) = match preset
    {
        Preset::Discord => (
            &signature::ED25519,
            hex::decode(text).map_err(|_| bad.clone())?,
        ),
        _ => (
            &signature::ECDSA_P256_SHA256_ASN1,
            BASE64.decode(text).map_err(|_| bad.clone())?,
        ),
    };
    signature::ParsedPublicKey::new(algorithm, bytes)
        .map(Key::Public)
        .map_err(|_| bad)
}

fn matches_any(keys: &[Key], signed: &[u8], signatures: &[Vec<u8>]) -> bool {
    // Every pair is tried, each compared in constant time.
    keys.iter()
        .flat_map(|key| signatures.iter().map(move |sig| (key, sig)))
        .fold(false, |found, (key, sig)| key.matches(signed, sig) || found)
}

fn required<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, Rejection> {
    headers
        .get(name)
        .ok_or_else(|| Rejection::MissingHeader(name.to_owned()))?
        .to_str()
        .map_err(|_| malformed(name))
}

/// A timestamp that the scheme signs right next to the body, with no separator
/// (Discord and SendGrid: timestamp then body; HubSpot: body then timestamp). Only
/// the provider's own spelling is accepted, digits without a leading zero: were
/// ` 1700000000`, `+1700000000` or `01700000000` read as the same instant, a byte
/// could move between the body and the header under the same signature (a body
/// ending in `0` would verify without it).
fn adjacent_timestamp(value: &str, header: &str) -> Result<u64, Rejection> {
    let canonical = !value.is_empty()
        && value.bytes().all(|b| b.is_ascii_digit())
        && (value == "0" || !value.starts_with('0'));
    canonical
        .then(|| value.parse().ok())
        .flatten()
        .ok_or_else(|| malformed(&format!("{header} (timestamp)")))
}

/// Unix seconds of an RFC 3339 time such as Twitch's `2019-11-16T10:11:12.634234626Z`
/// (a fraction is dropped; `Z` or a `±hh:mm` offset). Hand-rolled: one format, and no
/// date crate in the worker for it.
fn rfc3339_seconds(text: &str) -> Option<u64> {
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    let bytes = text.as_bytes();
    if bytes.len() < 20
        || !separators.iter().all(|&(i, c)| bytes[i] == c)
        || !matches!(bytes[10], b'T' | b't' | b' ')
    {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let end = fraction
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(fraction.len());
        if end == 0 {
            return None;
        }
        rest = &fraction[end..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let zone = rest.get(1..)?;
            let (h, m) = zone.split_once(':')?;
            if h.len() != 2
                || m.len() != 2
                || !(h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()))
            {
                return None;
            }
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
        }
    };
    // Days from the civil date (Howard Hinnant's algorithm), years starting in March.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let unix = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    u64::try_from(unix).ok()
}

/// The query parameter in which Twilio sends the hex SHA-256 of a JSON body.
const TWILIO_BODY_HASH: &str = "bodySHA256";

/// Characters a rebuilt query leaves as they are: RFC 3986's unreserved ones, which
/// no sender escapes. Everything else is escaped, as `%XX` in uppercase.
const QUERY_KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The URL a provider called, rebuilt from the public URL and the decoded query
/// parameters in the order the gateway forwarded them: `name=value` joined with
/// `&`, each part escaped but for [`QUERY_KEEP`]. A query of letters, digits and
/// `-._~` (Twilio's `bodySHA256`, most configured ones) comes out as sent; a
/// provider that wrote an escape differently, or a name twice, does not (the
/// gateway hands templates decoded values only; docs/worker.md).
pub fn called_url(public_url: &str, query: &[(String, String)]) -> String {
    let mut url = public_url.to_owned();
    for (i, (name, value)) in query.iter().enumerate() {
        url.push(if i == 0 { '?' } else { '&' });
        url.extend(percent_encoding::utf8_percent_encode(name, QUERY_KEEP));
        url.push('=');
        url.extend(percent_encoding::utf8_percent_encode(value, QUERY_KEEP));
    }
    url
}

/// Twilio's form fields as it signs them: each name followed by its value, sorted
/// by name and then by value, a repeated pair counted once (as Twilio's validators
/// do: `sorted(set(...))` in twilio-python). Kept as the decoded bytes: replacing
/// escapes that are not UTF-8 (`%F8`, `%F9`) by U+FFFD would make different bodies
/// sign the same; for UTF-8, which is all Twilio sends, byte order is code point
/// order, so the text is Twilio's.
fn twilio_form_fields(body: &[u8]) -> Vec<u8> {
    let mut fields: std::collections::BTreeMap<Vec<u8>, std::collections::BTreeSet<Vec<u8>>> =
        std::collections::BTreeMap::new();
    let decode = |raw: &[u8]| -> Vec<u8> {
        let spaced: Vec<u8> = raw
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        percent_encoding::percent_decode(&spaced).collect()
    };
    for part in body.split(|&b| b == b'&').filter(|part| !part.is_empty()) {
        let (name, value) = match part.iter().position(|&b| b == b'=') {
            Some(i) => (&part[..i], &part[i + 1..]),
            None => (part, &b""[..]),
        };
        fields
            .entry(decode(name))
            .or_default()
            .insert(decode(value));
    }
    fields
        .iter()
        .flat_map(|(name, values)| values.iter().map(move |value| [&name[..], value].concat()))
        .flatten()
        .collect()
}

/// `url` without and with its port, as Twilio's validators try it: Twilio signs
/// the URL as configured, and a URL may be configured either way. A missing port is
/// the scheme's default.
fn with_and_without_port(url: &str) -> [String; 2] {
    let Some((scheme, rest)) = url.split_once("://") else {
        return [url.to_owned(), url.to_owned()];
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    // A port follows the last ':' unless that is inside an IPv6 literal.
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (&authority[..i], Some(&authority[i + 1..])),
        _ => (authority, None),
    };
    let default = if scheme.eq_ignore_ascii_case("https") {
        "443"
    } else {
        "80"
    };
    [
        format!("{scheme}://{host}{tail}"),
        format!("{scheme}://{host}:{}{tail}", port.unwrap_or(default)),
    ]
}

/// The URI as HubSpot signs it (v3): these escapes decoded, every other escape and
/// the query's `?` as they are (HubSpot's "Validating requests", v3).
fn hubspot_uri(url: &str) -> String {
    const DECODED: [(&str, char); 12] = [
        ("3A", ':'),
        ("2F", '/'),
        ("3F", '?'),
        ("40", '@'),
        ("21", '!'),
        ("24", '$'),
        ("27", '\''),
        ("28", '('),
        ("29", ')'),
        ("2A", '*'),
        ("2C", ','),
        ("3B", ';'),
    ];
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let escape = rest.get(i + 1..i + 3);
        match escape.and_then(|e| DECODED.iter().find(|(hex, _)| hex.eq_ignore_ascii_case(e))) {
            Some((_, c)) => {
                out.push(*c);
                rest = &rest[i + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `value` without its scheme `prefix` (e.g. `sha256=`).
fn prefixed<'a>(value: &'a str, prefix: &str, header: &str) -> Result<&'a str, Rejection> {
    value
        .strip_prefix(prefix)
        .ok_or_else(|| malformed(&format!("{header} (no {prefix} prefix)")))
}

fn malformed(what: &str) -> Rejection {
    Rejection::Malformed(what.to_owned())
}

fn decode_hex(text: &str, header: &str) -> Result<Vec<u8>, Rejection> {
    hex::decode(text.trim()).map_err(|_| malformed(&format!("{header} (not hex)")))
}

fn decode_base64(text: &str, header: &str) -> Result<Vec<u8>, Rejection> {
    BASE64
        .decode(text.trim())
        .map_err(|_| malformed(&format!("{header} (not base64)")))
}

#[cfg(test)]
mod tests {
    //! Vectors come from the providers' own documentation where they publish one
    //! (GitHub, Slack, Standard Webhooks); the others were computed with Python's
    //! `hmac` module from the documented algorithm, independently of this code.

    use super::*;
    use http::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    fn at(unix: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(unix)
    }

    fn verifier(preset: Preset, secrets: &[&str]) -> Verifier {
        let secrets: Vec<Vec<u8>> = secrets.iter().map(|s| s.as_bytes().to_vec()).collect();
        Verifier::new(preset, &secrets, Duration::from_secs(300)).unwrap()
    }

    const STRIPE_BODY: &[u8] =
        br#"{"id":"evt_1","object":"event","type":"payment_intent.succeeded"}"#;
    const STRIPE_SIG: &str = "d0969dfdc1e86b7b8fbcb9fd7dc185fe29760f2895fa50fd29da71261e729ca0";
    const STRIPE_SIG_NEW_SECRET: &str =
        "4ac3f9c50722cef1974891ce22a3d20e87c78bbc94e8f9f0d34b57497ef49bc8";

    #[test]
    fn stripe() {
        let v = verifier(Preset::Stripe, &["whsec_hookline_test"]);
        let h = headers(&[(
            "Stripe-Signature",
            &format!("t=1700000000,v1={STRIPE_SIG},v0=ignored"),
        )]);
        assert_eq!(v.verify(&h, STRIPE_BODY, at(1_700_000_100)), Ok(()));
        assert_eq!(
            v.verify(&h, b"{\"id\":\"evt_2\"}", at(1_700_000_100)),
            Err(Rejection::Mismatch),
            "tampered body"
        );
        let wrong = verifier(Preset::Stripe, &["whsec_other"]);
        assert_eq!(
            wrong.verify(&h, STRIPE_BODY, at(1_700_000_100)),
            Err(Rejection::Mismatch),
            "wrong secret"
        );
        assert!(
            matches!(
                v.verify(&h, STRIPE_BODY, at(1_700_000_301)),
                Err(Rejection::OutsideTolerance {
                    age_seconds: 301,
                    ..
                })
            ),
            "stale timestamp"
        );
        assert!(
            matches!(
                v.verify(&h, STRIPE_BODY, at(1_699_999_000)),
                Err(Rejection::OutsideTolerance { .. })
            ),
            "future timestamp"
        );
        let h = headers(&[("Stripe-Signature", &format!("t=1700000001,v1={STRIPE_SIG}"))]);
        assert_eq!(
            v.verify(&h, STRIPE_BODY, at(1_700_000_001)),
            Err(Rejection::Mismatch),
            "timestamp is signed"
        );
    }

    fn queued(sent_at_ms: Option<&str>, signature: &str) -> Delivery {
        let mut message = aws_sdk_sqs::types::Message::builder()
            .message_id("m-1")
            .receipt_handle("r-1")
            .body(std::str::from_utf8(STRIPE_BODY).unwrap())
            .attributes(
                aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId,
                "g",
            )
            .set_message_attributes(Some(crate::wire::header_attributes(&[(
                "Stripe-Signature",
                signature,
            )])));
        if let Some(ms) = sent_at_ms {
            message = message.attributes(
                aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp,
                ms,
            );
        }
        Delivery::from_sqs(message.build()).unwrap()
    }

    #[test]
    fn a_delivery_is_checked_against_when_it_was_queued() {
        let v = verifier(Preset::Stripe, &["whsec_hookline_test"]);
        let signature = format!("t=1700000000,v1={STRIPE_SIG}");
        // Queued 100 s after signing, delivered years later: a backlog, accepted.
        let backlog = queued(Some("1700000100000"), &signature);
        assert_eq!(v.verify_delivery(&backlog), Ok(Verified::Current));
        // Queued 301 s after signing: a replay, refused however soon it is read.
        let replay = queued(Some("1700000301000"), &signature);
        assert!(matches!(
            v.verify_delivery(&replay),
            Err(Rejection::OutsideTolerance {
                age_seconds: 301,
                ..
            })
        ));
        // Without SentTimestamp the current time is used: the 2023 signature is stale.
        let unknown = queued(None, &signature);
        assert!(matches!(
            v.verify_delivery(&unknown),
            Err(Rejection::OutsideTolerance { .. })
        ));
    }

    #[test]
    fn stripe_rotation_accepts_either_secret_and_either_signature() {
        let both = verifier(
            Preset::Stripe,
            &["whsec_hookline_test", "whsec_hookline_new"],
        );
        // During a roll Stripe sends one v1 per active secret.
        let h = headers(&[(
            "Stripe-Signature",
            &format!("t=1700000000,v1={STRIPE_SIG_NEW_SECRET},v1={STRIPE_SIG}"),
        )]);
        assert_eq!(both.verify(&h, STRIPE_BODY, at(1_700_000_000)), Ok(()));
        let h = headers(&[(
            "Stripe-Signature",
            &format!("t=1700000000,v1={STRIPE_SIG_NEW_SECRET}"),
        )]);
        assert_eq!(both.verify(&h, STRIPE_BODY, at(1_700_000_000)), Ok(()));
        let old_only = verifier(Preset::Stripe, &["whsec_hookline_test"]);
        assert_eq!(
            old_only.verify(&h, STRIPE_BODY, at(1_700_000_000)),
            Err(Rejection::Mismatch)
        );
    }

    #[test]
    fn stripe_malformed_headers() {
        let v = verifier(Preset::Stripe, &["whsec_hookline_test"]);
        let now = at(1_700_000_000);
        assert_eq!(
            v.verify(&HeaderMap::new(), STRIPE_BODY, now),
            Err(Rejection::MissingHeader("stripe-signature".into()))
        );
        let h = headers(&[("Stripe-Signature", &format!("v1={STRIPE_SIG}"))]);
        assert!(matches!(
            v.verify(&h, STRIPE_BODY, now),
            Err(Rejection::Malformed(_))
        ));
        let h = headers(&[("Stripe-Signature", "t=1700000000")]);
        assert!(matches!(
            v.verify(&h, STRIPE_BODY, now),
            Err(Rejection::Malformed(_))
        ));
        let h = headers(&[("Stripe-Signature", "t=1700000000,v1=zz")]);
        assert!(matches!(
            v.verify(&h, STRIPE_BODY, now),
            Err(Rejection::Malformed(_))
        ));
    }

    #[test]
    fn github_documented_example() {
        // docs.github.com, "Validating webhook deliveries".
        let v = verifier(Preset::GitHub, &["It's a Secret to Everybody"]);
        let h = headers(&[(
            "X-Hub-Signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )]);
        let now = SystemTime::now();
        assert_eq!(v.verify(&h, b"Hello, World!", now), Ok(()));
        assert_eq!(
            v.verify(&h, b"Hello, World?", now),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            verifier(Preset::GitHub, &["nope"]).verify(&h, b"Hello, World!", now),
            Err(Rejection::Mismatch)
        );
        let rotated = verifier(
            Preset::GitHub,
            &["new secret", "It's a Secret to Everybody"],
        );
        assert_eq!(rotated.verify(&h, b"Hello, World!", now), Ok(()));
        let sha1_only = headers(&[("X-Hub-Signature", "sha1=0123")]);
        assert!(matches!(
            v.verify(&sha1_only, b"Hello, World!", now),
            Err(Rejection::MissingHeader(_))
        ));
    }

    #[test]
    fn shopify() {
        let body = br#"{"id":820982911946154508,"topic":"orders/create"}"#;
        let v = verifier(Preset::Shopify, &["shpss_hookline_test"]);
        let h = headers(&[(
            "X-Shopify-Hmac-Sha256",
            "AtuB38Nktp7vhR4i+UrNSTWD7Bv3ATTPhn5buR9I0yo=",
        )]);
        let now = SystemTime::now();
        assert_eq!(v.verify(&h, body, now), Ok(()));
        assert_eq!(v.verify(&h, b"{}", now), Err(Rejection::Mismatch));
        assert_eq!(
            verifier(Preset::Shopify, &["other"]).verify(&h, body, now),
            Err(Rejection::Mismatch)
        );
        let rotated = verifier(Preset::Shopify, &["other", "shpss_hookline_test"]);
        assert_eq!(rotated.verify(&h, body, now), Ok(()));
    }

    const SLACK_BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";

    #[test]
    fn slack_documented_example() {
        // api.slack.com, "Verifying requests from Slack".
        let v = verifier(Preset::Slack, &["8f742231b10e8888abcd99yyyzzz85a5"]);
        let h = headers(&[
            ("X-Slack-Request-Timestamp", "1531420618"),
            (
                "X-Slack-Signature",
                "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
            ),
        ]);
        assert_eq!(v.verify(&h, SLACK_BODY, at(1_531_420_700)), Ok(()));
        assert_eq!(
            v.verify(&h, &SLACK_BODY[1..], at(1_531_420_700)),
            Err(Rejection::Mismatch)
        );
        assert!(matches!(
            v.verify(&h, SLACK_BODY, at(1_531_421_000)),
            Err(Rejection::OutsideTolerance { .. })
        ));
        assert_eq!(
            verifier(Preset::Slack, &["wrong"]).verify(&h, SLACK_BODY, at(1_531_420_700)),
            Err(Rejection::Mismatch)
        );
        let rotated = verifier(
            Preset::Slack,
            &["new-secret", "8f742231b10e8888abcd99yyyzzz85a5"],
        );
        assert_eq!(rotated.verify(&h, SLACK_BODY, at(1_531_420_700)), Ok(()));
        let missing_ts = headers(&[("X-Slack-Signature", "v0=00")]);
        assert!(matches!(
            v.verify(&missing_ts, SLACK_BODY, at(1_531_420_700)),
            Err(Rejection::MissingHeader(_))
        ));
    }

    #[test]
    fn standard_webhooks_documented_example() {
        // The Standard Webhooks specification's reference test vector.
        let body = br#"{"test": 2432232314}"#;
        let v = verifier(
            Preset::StandardWebhooks,
            &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
        );
        let h = headers(&[
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ]);
        let now = at(1_614_265_330);
        assert_eq!(v.verify(&h, body, now), Ok(()));
        assert_eq!(
            v.verify(&h, br#"{"test": 2432232315}"#, now),
            Err(Rejection::Mismatch)
        );
        assert!(matches!(
            v.verify(&h, body, at(1_614_266_000)),
            Err(Rejection::OutsideTolerance { .. })
        ));
        // Several signatures, space-separated, one per active key.
        let h = headers(&[
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ]);
        assert_eq!(v.verify(&h, body, now), Ok(()));
        let other = verifier(Preset::StandardWebhooks, &["whsec_aGVsbG8gd29ybGQ="]);
        assert_eq!(other.verify(&h, body, now), Err(Rejection::Mismatch));
        let rotated = verifier(
            Preset::StandardWebhooks,
            &[
                "whsec_aGVsbG8gd29ybGQ=",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ],
        );
        assert_eq!(rotated.verify(&h, body, now), Ok(()));
    }

    #[test]
    fn standard_webhooks_secret_must_be_base64() {
        let err = Verifier::new(
            Preset::StandardWebhooks,
            &[b"whsec_not base64!".to_vec()],
            Duration::from_secs(1),
        );
        assert_eq!(err.err(), Some(ConfigError::BadStandardWebhooksSecret(0)));
    }

    #[test]
    fn generic_hmac_hex_and_base64_with_prefix() {
        let now = SystemTime::now();
        let hex = Preset::GenericHmac(GenericHmac {
            header: "X-Signature".into(),
            encoding: DigestEncoding::Hex,
            prefix: Some("sha256=".into()),
        });
        let v = verifier(hex, &["generic-secret"]);
        let h = headers(&[(
            "x-signature",
            "sha256=159bd8b47da36756083c99f1c8010ab600e11f12b81c2d24b40cbde438333b27",
        )]);
        assert_eq!(v.verify(&h, b"hello", now), Ok(()));
        assert_eq!(v.verify(&h, b"hello!", now), Err(Rejection::Mismatch));
        let no_prefix = headers(&[(
            "x-signature",
            "159bd8b47da36756083c99f1c8010ab600e11f12b81c2d24b40cbde438333b27",
        )]);
        assert!(matches!(
            v.verify(&no_prefix, b"hello", now),
            Err(Rejection::Malformed(_))
        ));

        let b64 = Preset::GenericHmac(GenericHmac {
            header: "X-Body-Mac".into(),
            encoding: DigestEncoding::Base64,
            prefix: None,
        });
        let v = verifier(b64, &["old", "generic-secret"]);
        let h = headers(&[("X-Body-Mac", "FZvYtH2jZ1YIPJnxyAEKtgDhHxK4HC0ktAy95DgzOyc=")]);
        assert_eq!(v.verify(&h, b"hello", now), Ok(()));
        assert_eq!(v.verify(&h, b"Hello", now), Err(Rejection::Mismatch));
    }

    #[test]
    fn no_secret_is_a_config_error() {
        assert_eq!(
            Verifier::new(Preset::GitHub, &[], Duration::ZERO).err(),
            Some(ConfigError::NoSecret)
        );
    }

    /// GitHub's documented example, and the same body signed with two other secrets
    /// (computed with Python's `hmac`).
    const GITHUB_OLD: &str = "It's a Secret to Everybody";
    const GITHUB_SIG_OLD: &str = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    const GITHUB_SIG_NEW: &str = "e82415efc3aac26d58147990db281872a9eb819065ab6b085552ccf79c86586b";
    const GITHUB_SIG_THIRD: &str =
        "0b2483c4a66839092ef7f53c265cb4bed832f98dcbb39cb907a0e067fc44361f";

    fn github_check(v: &Verifier, signature: &str, queued_at: u64) -> Result<Verified, Rejection> {
        let h = headers(&[("X-Hub-Signature-256", &format!("sha256={signature}"))]);
        v.check(&h, b"Hello, World!", &[], at(queued_at))
    }

    fn secrets(values: &[&str]) -> Vec<Vec<u8>> {
        values.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn a_rotated_secret_verifies_what_was_queued_before_the_window_ended() {
        let v =
            verifier(Preset::GitHub, &[GITHUB_OLD]).with_rotation_window(Duration::from_secs(60));
        assert_eq!(github_check(&v, GITHUB_SIG_OLD, 900), Ok(Verified::Current));
        let until = v.rotate(&secrets(&["new secret"]), at(1_000)).unwrap();
        assert_eq!(until, at(1_060));
        // A backlog queued before the rotation verifies however late it is read.
        assert_eq!(github_check(&v, GITHUB_SIG_OLD, 900), Ok(Verified::Retired));
        // Within the window the provider may still sign with the old secret.
        assert_eq!(
            github_check(&v, GITHUB_SIG_OLD, 1_059),
            Ok(Verified::Retired)
        );
        // From the end of the window on, the old secret is refused.
        assert_eq!(
            github_check(&v, GITHUB_SIG_OLD, 1_060),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            github_check(&v, GITHUB_SIG_OLD, 90_000),
            Err(Rejection::Mismatch)
        );
        // The new secret verifies everything, also what was queued before the Secret
        // changed (the provider switched first).
        assert_eq!(github_check(&v, GITHUB_SIG_NEW, 900), Ok(Verified::Current));
        assert_eq!(
            github_check(&v, GITHUB_SIG_NEW, 90_000),
            Ok(Verified::Current)
        );
    }

    #[test]
    fn a_zero_window_still_verifies_the_backlog() {
        let v = verifier(Preset::GitHub, &[GITHUB_OLD]);
        assert_eq!(v.rotation_window(), Duration::ZERO);
        v.rotate(&secrets(&["new secret"]), at(1_000)).unwrap();
        assert_eq!(github_check(&v, GITHUB_SIG_OLD, 999), Ok(Verified::Retired));
        assert_eq!(
            github_check(&v, GITHUB_SIG_OLD, 1_000),
            Err(Rejection::Mismatch)
        );
    }

    #[test]
    fn each_rotation_retires_its_own_set_with_its_own_window() {
        let v =
            verifier(Preset::GitHub, &[GITHUB_OLD]).with_rotation_window(Duration::from_secs(60));
        v.rotate(&secrets(&["new secret"]), at(1_000)).unwrap();
        v.rotate(&secrets(&["third secret"]), at(2_000)).unwrap();
        assert_eq!(
            github_check(&v, GITHUB_SIG_OLD, 1_059),
            Ok(Verified::Retired)
        );
        assert_eq!(
            github_check(&v, GITHUB_SIG_OLD, 1_500),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            github_check(&v, GITHUB_SIG_NEW, 2_059),
            Ok(Verified::Retired)
        );
        assert_eq!(
            github_check(&v, GITHUB_SIG_NEW, 2_060),
            Err(Rejection::Mismatch)
        );
        assert_eq!(github_check(&v, GITHUB_SIG_THIRD, 1), Ok(Verified::Current));
    }

    #[test]
    fn an_invalid_secret_set_never_replaces_a_good_one() {
        let v = verifier(Preset::GitHub, &[GITHUB_OLD]);
        assert_eq!(v.rotate(&[], at(1_000)), Err(ConfigError::NoSecret));
        assert_eq!(
            v.rotate(&[b"new secret".to_vec(), Vec::new()], at(1_000)),
            Err(ConfigError::EmptySecret(1))
        );
        assert_eq!(
            github_check(&v, GITHUB_SIG_OLD, 5_000),
            Ok(Verified::Current)
        );
        assert_eq!(
            github_check(&v, GITHUB_SIG_NEW, 5_000),
            Err(Rejection::Mismatch)
        );

        let std = verifier(
            Preset::StandardWebhooks,
            &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
        );
        assert_eq!(
            std.rotate(&secrets(&["whsec_not base64!"]), at(1)),
            Err(ConfigError::BadStandardWebhooksSecret(0))
        );
        assert_eq!(
            std.rotate(&secrets(&["whsec_"]), at(1)),
            Err(ConfigError::EmptySecret(0)),
            "a whsec_ prefix with nothing after it"
        );
    }

    #[test]
    fn an_empty_secret_is_refused_at_start() {
        assert_eq!(
            Verifier::new(
                Preset::GitHub,
                &[b"ok".to_vec(), Vec::new()],
                Duration::ZERO
            )
            .err(),
            Some(ConfigError::EmptySecret(1))
        );
    }

    #[test]
    fn retired_sets_are_dropped_once_no_queue_can_hold_their_messages() {
        let v = verifier(Preset::GitHub, &[GITHUB_OLD]);
        v.rotate(&secrets(&["new secret"]), at(1_000)).unwrap();
        let later = 1_000 + LONGEST_RETENTION.as_secs();
        v.rotate(&secrets(&["third secret"]), at(later)).unwrap();
        assert_eq!(
            github_check(&v, GITHUB_SIG_OLD, 999),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            github_check(&v, GITHUB_SIG_NEW, later - 1),
            Ok(Verified::Retired)
        );
        for n in 0..(2 * MAX_RETIRED_SETS as u64) {
            v.rotate(&secrets(&[&format!("s{n}")]), at(later + n))
                .unwrap();
        }
        let kept = v.keys.read().unwrap().retired.len();
        assert_eq!(kept, MAX_RETIRED_SETS);
    }

    #[test]
    fn a_verifiers_debug_shows_no_secret() {
        let v = verifier(Preset::GitLab, &["gl-token-8e1f"]);
        v.rotate(&secrets(&["gl-token-2c9a"]), at(1)).unwrap();
        let text = format!("{v:?}");
        for secret in ["gl-token-8e1f", "gl-token-2c9a"] {
            let bytes = format!("{:?}", secret.as_bytes());
            let inner = bytes.trim_start_matches('[').trim_end_matches(']');
            assert!(
                !text.contains(secret) && !text.contains(inner),
                "{secret} in {text}"
            );
        }
    }

    #[test]
    fn rejections_never_echo_the_signature() {
        let v = verifier(Preset::GitHub, &["s3cret"]);
        let h = headers(&[("X-Hub-Signature-256", "sha256=not-hex-deadbeef")]);
        let text = v
            .verify(&h, b"x", SystemTime::now())
            .unwrap_err()
            .to_string();
        assert!(
            !text.contains("deadbeef") && !text.contains("s3cret"),
            "{text}"
        );
    }

    #[test]
    fn rfc3339_times_read_as_unix_seconds() {
        // Expected values from Python's datetime.
        let cases = [
            ("2019-11-16T10:11:12.634234626Z", Some(1_573_899_072)),
            ("2019-11-16T10:11:12Z", Some(1_573_899_072)),
            ("2024-02-29T23:59:59z", Some(1_709_251_199)),
            ("2019-11-16T12:11:12+02:00", Some(1_573_899_072)),
            ("2019-11-16T05:11:12.5-05:00", Some(1_573_899_072)),
            ("1970-01-01T00:00:00Z", Some(0)),
            ("2019-11-16T10:11:12", None),
            ("2019-11-16T10:11:12.Z", None),
            ("2019-13-16T10:11:12Z", None),
            ("2019-11-16X10:11:12Z", None),
            ("+019-11-16T10:11:12Z", None),
            ("1573899072", None),
        ];
        for (text, want) in cases {
            assert_eq!(rfc3339_seconds(text), want, "{text}");
        }
    }

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn twilio_documented_example() {
        // twilio.com/docs/usage/security, "Validating signatures from Twilio": the
        // auth token 12345, the URL with its query, the form fields.
        let body = b"CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1234&From=%2B12349013030&To=%2B18005551212";
        let query = pairs(&[("foo", "1"), ("bar", "2")]);
        let h = headers(&[("X-Twilio-Signature", "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")]);
        let now = SystemTime::now();
        for url in [
            "https://mycompany.com/myapp.php",
            "https://mycompany.com:443/myapp.php",
        ] {
            let v = verifier(Preset::Twilio, &["12345"]).with_public_url(Some(url.to_owned()));
            assert_eq!(v.verify_request(&h, body, &query, now), Ok(()), "{url}");
        }
        let v = verifier(Preset::Twilio, &["other", "12345"])
            .with_public_url(Some("https://mycompany.com/myapp.php".to_owned()));
        assert_eq!(v.verify_request(&h, body, &query, now), Ok(()), "rotation");
        assert_eq!(
            v.verify_request(&h, &body[..body.len() - 1], &query, now),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            v.verify_request(&h, body, &query[..1], now),
            Err(Rejection::Mismatch),
            "the query is signed"
        );
        assert_eq!(
            verifier(Preset::Twilio, &["12345"]).verify_request(&h, body, &query, now),
            Err(Rejection::NoPublicUrl)
        );
    }

    #[test]
    fn twilio_json_bodies_are_checked_by_their_hash() {
        // Signed with Python's hmac: the URL alone, which carries the body's hash.
        let body = br#"{"CallSid":"CA1234567890ABCDE","Caller":"+12349013030"}"#;
        let hash = "5ccde7145dfb8f56479710896586cb9d5911809d83afbe34627818790db0aec9";
        let query = pairs(&[("bodySHA256", hash)]);
        let v = verifier(Preset::Twilio, &["12345"])
            .with_public_url(Some("https://example.com/myapp".to_owned()));
        let h = headers(&[("X-Twilio-Signature", "hPXmLwIy3Fgqv1i9KPmH/HhQ6zo=")]);
        let now = SystemTime::now();
        assert_eq!(v.verify_request(&h, body, &query, now), Ok(()));
        // The signature still matches the URL; only the hash catches the change.
        assert_eq!(
            v.verify_request(&h, br#"{"CallSid":"CA0"}"#, &query, now),
            Err(Rejection::Mismatch)
        );
        assert!(matches!(
            v.verify_request(&h, body, &pairs(&[("bodySHA256", "zz")]), now),
            Err(Rejection::Malformed(_))
        ));
    }

    #[test]
    fn urls_are_rebuilt_from_the_forwarded_query() {
        assert_eq!(called_url("https://h/p", &[]), "https://h/p");
        assert_eq!(
            called_url(
                "https://h/p",
                &pairs(&[("a", "1"), ("next", "https://x/y z"), ("k~_.-", "\u{e9}")])
            ),
            "https://h/p?a=1&next=https%3A%2F%2Fx%2Fy%20z&k~_.-=%C3%A9"
        );
        assert_eq!(
            with_and_without_port("https://h.example.com/p?a=1"),
            [
                "https://h.example.com/p?a=1",
                "https://h.example.com:443/p?a=1"
            ]
        );
        assert_eq!(
            with_and_without_port("http://h:8080/p"),
            ["http://h/p", "http://h:8080/p"]
        );
        assert_eq!(
            with_and_without_port("https://[::1]/p"),
            ["https://[::1]/p", "https://[::1]:443/p"]
        );
    }

    #[test]
    fn hubspot_decodes_its_list_of_escapes_only() {
        assert_eq!(
            hubspot_uri(
                "https://h/p?next=https%3A%2F%2Fx%2fy%20z%3d&q=%3F%40%21%24%27%28%29%2A%2C%3B%"
            ),
            "https://h/p?next=https://x/y%20z%3d&q=?@!$'()*,;%"
        );
    }

    #[test]
    fn a_public_key_that_does_not_parse_is_refused() {
        let cases = [
            (Preset::Discord, &b"not hex"[..]),
            (Preset::Discord, &b"00ff"[..]),
            (Preset::SendGrid, &b"bm90IGEga2V5"[..]),
        ];
        for (preset, key) in cases {
            assert_eq!(
                Verifier::new(preset.clone(), &[key.to_vec()], Duration::ZERO).err(),
                Some(ConfigError::BadPublicKey(0)),
                "{preset:?}"
            );
        }
    }
}
