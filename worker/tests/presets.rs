//! Every signature preset against requests signed by an independent implementation:
//! `signer.py`, written from each provider's documentation with Python's `hmac` and
//! `hashlib` (and `cryptography` for the asymmetric schemes), run from the emulator
//! venv. Each preset: a valid request verifies (its headers in the provider's case
//! and in capitals), a tampered body and a wrong secret are refused, a stale
//! timestamp is refused where the scheme signs one, and with two secrets configured
//! a request signed with either verifies. The presets that sign the URL (Twilio,
//! Square, HubSpot) get the query as the gateway forwards it, decoded, and are also
//! refused for another URL or query.

use anyhow::{Context, Result, bail, ensure};
use hookline_worker::Verifier;
use hookline_worker::signature::{Preset, Rejection};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// When the test's requests reach the queue.
const QUEUED_AT: u64 = 1_750_000_000;
/// When the provider signed them.
const SIGNED_AT: u64 = QUEUED_AT - 20;
const TOLERANCE: Duration = Duration::from_secs(300);
/// Raw bytes as providers send them, non-ASCII included.
const BODY: &str = r#"{"event":"ping","id":"evt_1","note":"caf\u00e9 \u2713 ünï"}"#;
/// A Twilio form body (Twilio's documented example fields and a non-ASCII one).
const TWILIO_FORM: &str = "CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1234&From=%2B12349013030&To=%2B18005551212&Note=caf%C3%A9+%E2%9C%93&Empty=";
/// The Webhook's public URL, as the worker is configured with it.
const PUBLIC_URL: &str = "https://hooks.example.com/hookline/callbacks";

/// A preset with the secrets the signer and the verifier use.
struct Case {
    preset: Preset,
    /// Whether the scheme signs a timestamp the verifier bounds.
    timestamped: bool,
    /// Whether the body is signed: GitLab sends its token, which says who sent the
    /// request and nothing about its body.
    signs_body: bool,
    secret: &'static str,
    other_secret: &'static str,
    /// The request body and its type.
    body: &'static str,
    content_type: &'static str,
    /// The URL the provider is configured with (Twilio appends `bodySHA256` to it
    /// for a JSON body).
    url: &'static str,
}

fn hmac_case(preset: Preset) -> Case {
    Case {
        preset,
        timestamped: false,
        signs_body: true,
        secret: "hookline-test-secret",
        other_secret: "rotated-secret-2",
        body: BODY,
        content_type: "application/json",
        url: PUBLIC_URL,
    }
}

fn timestamped(preset: Preset) -> Case {
    Case {
        timestamped: true,
        ..hmac_case(preset)
    }
}

fn cases() -> Vec<Case> {
    vec![
        hmac_case(Preset::Typeform),
        hmac_case(Preset::Bitbucket),
        hmac_case(Preset::Jira),
        hmac_case(Preset::Sentry),
        hmac_case(Preset::PagerDuty),
        hmac_case(Preset::Linear),
        hmac_case(Preset::Intercom),
        hmac_case(Preset::Vercel),
        timestamped(Preset::Paddle),
        timestamped(Preset::Calendly),
        timestamped(Preset::Zoom),
        timestamped(Preset::Twitch),
        Case {
            signs_body: false,
            ..hmac_case(Preset::GitLab)
        },
        timestamped(Preset::Discord),
        timestamped(Preset::SendGrid),
        // Twilio: a form body, at a URL with a query of the team's, configured with
        // the default port (Twilio's validators accept either spelling).
        Case {
            body: TWILIO_FORM,
            content_type: "application/x-www-form-urlencoded",
            url: "https://hooks.example.com:443/hookline/callbacks?tenant=acme&region=eu-1",
            ..hmac_case(Preset::Twilio)
        },
        // Twilio: a JSON body, whose hash Twilio adds to the URL.
        hmac_case(Preset::Twilio),
        Case {
            url: "https://hooks.example.com/hookline/callbacks?env=prod",
            ..hmac_case(Preset::Square)
        },
        // HubSpot decodes some escapes of the URI before signing: `%3A` and `%2F` here.
        Case {
            url: "https://hooks.example.com/hookline/callbacks?portal=62515&next=https%3A%2F%2Fapp.example.com%2Fx",
            ..timestamped(Preset::HubSpot)
        },
    ]
}

/// What `signer.py` answers for one request: the headers, and per secret the key
/// the verifier is configured with (the public key for asymmetric schemes).
struct Signed {
    headers: Vec<(String, String)>,
    keys: Vec<String>,
    /// The query parameters of the URL the provider called, decoded as the gateway
    /// hands them to the template.
    query: Vec<(String, String)>,
}

/// Signs each request with `signer.py`: one JSON array in, one array out.
fn sign(requests: &[Value]) -> Result<Vec<Signed>> {
    let python = hookline_tests::emulator_venv()?.join("python");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/presets/signer.py");
    let mut child = Command::new(&python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", python.display()))?;
    child
        .stdin
        .take()
        .context("signer stdin")?
        .write_all(serde_json::to_string(requests)?.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("signer.py failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let answers: Vec<Value> = serde_json::from_slice(&out.stdout)?;
    let answers = answers
        .into_iter()
        .map(|answer| {
            let url: String = serde_json::from_value(answer["url"].clone())?;
            let query = url
                .split_once('?')
                .map(|(_, q)| hookline_contract::wire::form_pairs(q.as_bytes()))
                .unwrap_or_default();
            Ok(Signed {
                headers: serde_json::from_value(answer["headers"].clone())?,
                keys: serde_json::from_value(answer["keys"].clone())?,
                query,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    ensure!(answers.len() == requests.len(), "one answer per request");
    Ok(answers)
}

fn request(case: &Case, secrets: &[&str], signed_at: u64) -> Value {
    json!({
        "preset": case.preset.name().as_str(),
        "secrets": secrets,
        "body": case.body,
        "content_type": case.content_type,
        "url": case.url,
        "timestamp": signed_at,
        "message_id": "msg-7f3e",
    })
}

fn header_map(pairs: &[(String, String)], capitals: bool) -> Result<HeaderMap> {
    pairs
        .iter()
        .map(|(name, value)| {
            let name = if capitals {
                name.to_ascii_uppercase()
            } else {
                name.clone()
            };
            Ok((
                HeaderName::from_bytes(name.as_bytes())?,
                HeaderValue::from_str(value)?,
            ))
        })
        .collect()
}

fn verifier(case: &Case, keys: &[String]) -> Result<Verifier> {
    let secrets: Vec<Vec<u8>> = keys.iter().map(|s| s.as_bytes().to_vec()).collect();
    Ok(Verifier::new(case.preset.clone(), &secrets, TOLERANCE)
        .with_context(|| format!("{:?}", case.preset))?
        .with_public_url(Some(PUBLIC_URL.to_owned())))
}

fn at(unix: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix)
}

#[test]
fn every_preset_verifies_what_its_provider_signs() -> Result<()> {
    let cases = cases();
    // Per case: signed with the secret, with the other secret, with both (the
    // schemes that carry several signatures list both), signed too long ago, and
    // signed with a third secret (for its key).
    let mut requests = Vec::new();
    for case in &cases {
        requests.push(request(case, &[case.secret], SIGNED_AT));
        requests.push(request(case, &[case.other_secret], SIGNED_AT));
        requests.push(request(case, &[case.other_secret, case.secret], SIGNED_AT));
        requests.push(request(
            case,
            &[case.secret],
            QUEUED_AT - TOLERANCE.as_secs() - 1,
        ));
        requests.push(request(case, &["not-the-secret"], SIGNED_AT));
    }
    let signed = sign(&requests)?;
    let now = at(QUEUED_AT);
    for (case, signed) in cases.iter().zip(signed.chunks(5)) {
        let name = case.preset.name();
        let body = case.body.as_bytes();
        let [with_secret, with_other, with_both, stale, third] = signed else {
            bail!("five requests per case");
        };
        let one = verifier(case, &with_secret.keys)?;
        let two = verifier(case, &with_both.keys)?;
        let wrong = verifier(case, &third.keys)?;
        for capitals in [false, true] {
            let h = header_map(&with_secret.headers, capitals)?;
            assert_eq!(
                one.verify_request(&h, body, &with_secret.query, now),
                Ok(()),
                "{name}: valid"
            );
            assert_eq!(
                two.verify_request(&h, body, &with_secret.query, now),
                Ok(()),
                "{name}: rotation, old"
            );
        }
        let h = header_map(&with_secret.headers, false)?;
        let mut tampered = body.to_vec();
        tampered[2] ^= 1;
        let want = if case.signs_body {
            Err(Rejection::Mismatch)
        } else {
            Ok(())
        };
        assert_eq!(
            one.verify_request(&h, &tampered, &with_secret.query, now),
            want,
            "{name}: tampered body"
        );
        assert_eq!(
            wrong.verify_request(&h, body, &with_secret.query, now),
            Err(Rejection::Mismatch),
            "{name}: wrong secret"
        );
        let h = header_map(&with_other.headers, false)?;
        assert_eq!(
            two.verify_request(&h, body, &with_other.query, now),
            Ok(()),
            "{name}: rotation, new"
        );
        assert_eq!(
            one.verify_request(&h, body, &with_other.query, now),
            Err(Rejection::Mismatch),
            "{name}: other secret only"
        );
        let h = header_map(&with_both.headers, false)?;
        assert_eq!(
            one.verify_request(&h, body, &with_both.query, now),
            Ok(()),
            "{name}: both signatures"
        );
        let h = header_map(&stale.headers, false)?;
        if case.timestamped {
            assert!(
                matches!(
                    one.verify_request(&h, body, &stale.query, now),
                    Err(Rejection::OutsideTolerance { .. })
                ),
                "{name}: stale timestamp"
            );
            assert_eq!(
                one.verify_request(&h, body, &stale.query, at(QUEUED_AT - TOLERANCE.as_secs())),
                Ok(()),
                "{name}: the same request queued in time"
            );
        } else {
            assert_eq!(
                one.verify_request(&h, body, &stale.query, now),
                Ok(()),
                "{name}: no timestamp"
            );
        }
        assert!(
            matches!(
                one.verify(&HeaderMap::new(), body, now),
                Err(Rejection::MissingHeader(_))
            ),
            "{name}: unsigned"
        );
        if name.signs_url() {
            let h = header_map(&with_secret.headers, false)?;
            let query = &with_secret.query;
            assert!(!query.is_empty(), "{name}: each URL case has a query");
            assert_eq!(
                one.verify_request(&h, body, &query[1..], now),
                Err(Rejection::Mismatch),
                "{name}: another query"
            );
            let elsewhere = Verifier::new(case.preset.clone(), &[case.secret.into()], TOLERANCE)?
                .with_public_url(Some("https://hooks.example.com/hookline/other".to_owned()));
            assert_eq!(
                elsewhere.verify_request(&h, body, query, now),
                Err(Rejection::Mismatch),
                "{name}: another URL"
            );
            let unconfigured =
                Verifier::new(case.preset.clone(), &[case.secret.into()], TOLERANCE)?;
            assert_eq!(
                unconfigured.verify_request(&h, body, query, now),
                Err(Rejection::NoPublicUrl),
                "{name}: no public URL"
            );
        }
    }
    Ok(())
}
