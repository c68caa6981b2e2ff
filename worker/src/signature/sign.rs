//! Signing a request the way each provider does: what `kubectl hookline send-test`
//! sends so a team can check a Webhook end to end before the provider does.
//!
//! The schemes are the verifier's, mirrored; the tests check every preset by
//! verifying what this signs (the verifier itself is checked against independent
//! vectors in `worker/tests/presets.rs`). The keys come from the same parsing as
//! the verifier's, so a secret the worker would refuse is refused here too.

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{ConfigError, DigestEncoding, Key, Preset, header, keys};

/// Why a request cannot be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The secret is not one the preset accepts.
    #[error(transparent)]
    Secret(#[from] ConfigError),
    /// The Secret holds the provider's public key; only the provider has the
    /// private key that signs.
    #[error(
        "{0} signs with its private key and the Secret holds only the public key: send a test event from {0}'s console instead"
    )]
    PublicKeyOnly(&'static str),
}

/// A request to sign.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The raw body.
    pub body: &'a [u8],
    /// The delivery id the schemes that sign one use (Standard Webhooks, Twitch).
    pub id: &'a str,
    /// The public URL it goes to, without a query (Twilio, Square and HubSpot sign it).
    pub url: &'a str,
    /// When it is signed.
    pub now: SystemTime,
}

/// What signs a request: headers (names lowercase) and query parameters to add to
/// the URL (Twilio carries a JSON body's hash there).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Signed {
    /// Headers to send.
    pub headers: Vec<(String, String)>,
    /// Query parameters, in order, to append to the URL.
    pub query: Vec<(String, String)>,
}

/// Signs `request` for `preset` with `secret`.
pub fn sign(preset: &Preset, secret: &[u8], request: Request<'_>) -> Result<Signed, SignError> {
    let Request { body, id, url, now } = request;
    if matches!(preset, Preset::Discord | Preset::SendGrid) {
        return Err(SignError::PublicKeyOnly(preset.name().as_str()));
    }
    let key = match keys(preset, &[secret.to_vec()])?.into_iter().next() {
        Some(Key::Hmac(key)) => Some(key),
        Some(Key::Token(_)) => None,
        Some(Key::Public(_)) => {
            return Err(SignError::PublicKeyOnly(preset.name().as_str()));
        }
        None => return Err(SignError::Secret(ConfigError::NoSecret)),
    };
    let mac = |signed: &[u8]| -> Vec<u8> {
        key.as_ref()
            .map(|k| hmac::sign(k, signed).as_ref().to_vec())
            .unwrap_or_default()
    };
    let hexed = |signed: &[u8]| hex::encode(mac(signed));
    let based = |signed: &[u8]| BASE64.encode(mac(signed));
    let unix = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let t = unix.to_string();
    let with = |pairs: &[(&str, String)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect()
    };
    let joined = |parts: &[&[u8]]| parts.concat();
    let mut query = Vec::new();
    let headers = match preset {
        Preset::Stripe => with(&[(
            header::STRIPE_SIGNATURE,
            format!("t={t},v1={}", hexed(&joined(&[t.as_bytes(), b".", body]))),
        )]),
        Preset::GitHub => with(&[(header::GITHUB_SIGNATURE, format!("sha256={}", hexed(body)))]),
        Preset::Shopify => with(&[(header::SHOPIFY_HMAC, based(body))]),
        Preset::Slack => with(&[
            (
                header::SLACK_SIGNATURE,
                format!("v0={}", hexed(&joined(&[b"v0:", t.as_bytes(), b":", body]))),
            ),
            (header::SLACK_TIMESTAMP, t.clone()),
        ]),
        Preset::StandardWebhooks => with(&[
            (header::WEBHOOK_ID, id.to_owned()),
            (header::WEBHOOK_TIMESTAMP, t.clone()),
            (
                header::WEBHOOK_SIGNATURE,
                format!(
                    "v1,{}",
                    based(&joined(&[id.as_bytes(), b".", t.as_bytes(), b".", body]))
                ),
            ),
        ]),
        Preset::GenericHmac(generic) => {
            let digest = match generic.encoding {
                DigestEncoding::Hex => hexed(body),
                DigestEncoding::Base64 => based(body),
            };
            vec![(
                generic.header.to_ascii_lowercase(),
                format!("{}{digest}", generic.prefix.as_deref().unwrap_or("")),
            )]
        }
        Preset::Typeform => with(&[(
            header::TYPEFORM_SIGNATURE,
            format!("sha256={}", based(body)),
        )]),
        Preset::Bitbucket | Preset::Jira => {
            with(&[(header::HUB_SIGNATURE, format!("sha256={}", hexed(body)))])
        }
        Preset::Intercom => with(&[(header::HUB_SIGNATURE, format!("sha1={}", hexed(body)))]),
        Preset::Sentry => with(&[(header::SENTRY_SIGNATURE, hexed(body))]),
        Preset::Linear => with(&[(header::LINEAR_SIGNATURE, hexed(body))]),
        Preset::Vercel => with(&[(header::VERCEL_SIGNATURE, hexed(body))]),
        Preset::PagerDuty => with(&[(header::PAGERDUTY_SIGNATURE, format!("v1={}", hexed(body)))]),
        Preset::Paddle => with(&[(
            header::PADDLE_SIGNATURE,
            format!("ts={t};h1={}", hexed(&joined(&[t.as_bytes(), b":", body]))),
        )]),
        Preset::Calendly => with(&[(
            header::CALENDLY_SIGNATURE,
            format!("t={t},v1={}", hexed(&joined(&[t.as_bytes(), b".", body]))),
        )]),
        Preset::Zoom => with(&[
            (
                header::ZOOM_SIGNATURE,
                format!("v0={}", hexed(&joined(&[b"v0:", t.as_bytes(), b":", body]))),
            ),
            (header::ZOOM_TIMESTAMP, t.clone()),
        ]),
        Preset::Twitch => {
            let at = rfc3339(unix);
            with(&[
                (header::TWITCH_MESSAGE_ID, id.to_owned()),
                (header::TWITCH_TIMESTAMP, at.clone()),
                (
                    header::TWITCH_SIGNATURE,
                    format!(
                        "sha256={}",
                        hexed(&joined(&[id.as_bytes(), at.as_bytes(), body]))
                    ),
                ),
            ])
        }
        Preset::GitLab => with(&[(
            header::GITLAB_TOKEN,
            String::from_utf8_lossy(secret).into_owned(),
        )]),
        Preset::Twilio => {
            // A JSON body is signed through its hash in the URL; a form body through
            // its fields sorted by name after the URL. The worker tells them apart by
            // the hash parameter.
            let signed = if serde_json::from_slice::<serde_json::Value>(body).is_ok() {
                let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
                query.push((
                    super::TWILIO_BODY_HASH.to_owned(),
                    hex::encode(hash.as_ref()),
                ));
                super::called_url(url, &query).into_bytes()
            } else {
                let fields = super::twilio_form_fields(body);
                [super::called_url(url, &query).as_bytes(), &fields].concat()
            };
            with(&[(header::TWILIO_SIGNATURE, based(&signed))])
        }
        Preset::Square => with(&[(
            header::SQUARE_SIGNATURE,
            based(&joined(&[url.as_bytes(), body])),
        )]),
        Preset::HubSpot => {
            let millis = now
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis()
                .to_string();
            let uri = super::hubspot_uri(url);
            with(&[
                (
                    header::HUBSPOT_SIGNATURE_V3,
                    based(&joined(&[b"POST", uri.as_bytes(), body, millis.as_bytes()])),
                ),
                (header::HUBSPOT_TIMESTAMP, millis.clone()),
            ])
        }
        Preset::Discord | Preset::SendGrid => {
            return Err(SignError::PublicKeyOnly(preset.name().as_str()));
        }
    };
    Ok(Signed { headers, query })
}

/// `unix` as RFC 3339 in UTC, to the second (`2026-12-02T01:02:03Z`), as Twitch
/// writes its timestamps. Days to a civil date by Howard Hinnant's algorithm.
fn rfc3339(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::{GenericHmac, PresetName, Verified, Verifier};
    use std::time::Duration;

    const URL: &str = "https://hooks.example.com/payments/in";

    fn headers(pairs: &[(String, String)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    http::HeaderValue::from_str(value).unwrap(),
                )
            })
            .collect()
    }

    fn request(body: &[u8]) -> Request<'_> {
        Request {
            body,
            id: "msg_test",
            url: URL,
            now: UNIX_EPOCH + Duration::from_secs(1_764_637_323),
        }
    }

    #[test]
    fn what_is_signed_verifies_for_every_preset_that_can_be_signed() {
        let generic = GenericHmac {
            header: "X-Signature".to_owned(),
            encoding: DigestEncoding::Base64,
            prefix: Some("sha256=".to_owned()),
        };
        for body in [
            &br#"{"id":"evt_test","type":"hookline.test"}"#[..],
            b"b=2&a=1",
        ] {
            let request = request(body);
            for name in PresetName::ALL {
                let preset = Preset::new(name, Some(generic.clone())).unwrap();
                let secret: &[u8] = match name {
                    PresetName::StandardWebhooks => b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                    _ => b"a test secret",
                };
                let signed = match sign(&preset, secret, request) {
                    Ok(signed) => signed,
                    Err(SignError::PublicKeyOnly(_)) => {
                        assert!(
                            matches!(name, PresetName::Discord | PresetName::SendGrid),
                            "{name}"
                        );
                        continue;
                    }
                    Err(e) => panic!("{name}: {e}"),
                };
                let verifier = |secret: &[u8]| {
                    Verifier::new(preset.clone(), &[secret.to_vec()], Duration::from_secs(300))
                        .map(|v| v.with_public_url(Some(URL.to_owned())))
                };
                let check = |v: Verifier| {
                    v.check(&headers(&signed.headers), body, &signed.query, request.now)
                };
                assert_eq!(
                    check(verifier(secret).unwrap()),
                    Ok(Verified::Current),
                    "{name}"
                );
                if let Ok(wrong) = verifier(b"another secret") {
                    assert!(check(wrong).is_err(), "{name}");
                }
            }
        }
    }

    #[test]
    fn a_twilio_form_body_is_signed_by_its_fields_and_json_by_its_hash() {
        let form = sign(&Preset::Twilio, b"token", request(b"b=2&a=1")).unwrap();
        assert!(form.query.is_empty());
        let json = sign(&Preset::Twilio, b"token", request(b"{}")).unwrap();
        assert_eq!(json.query.len(), 1);
        assert_eq!(json.query[0].0, "bodySHA256");
    }

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_764_637_323), "2025-12-02T01:02:03Z");
        assert_eq!(
            super::super::rfc3339_seconds(&rfc3339(1_764_637_323)),
            Some(1_764_637_323)
        );
    }

    #[test]
    fn a_secret_the_worker_refuses_is_refused_here() {
        assert_eq!(
            sign(&Preset::Stripe, b"", request(b"{}")),
            Err(SignError::Secret(ConfigError::EmptySecret(0)))
        );
    }
}
