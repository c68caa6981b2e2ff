//! No Secret value ever reaches a log, an Event or a status: the real operator and
//! worker processes (hookline_tests::stack) run with distinctive secret values,
//! at debug (every line the default level writes, and more), through deliveries
//! that succeed, fail verification, fail in the handler and get dead-lettered,
//! and a reconcile error about a Secret; then every log line, every Event of the
//! namespace and the Webhooks' status are searched for each value, raw and in its
//! base64, hex and URL-encoded forms.

use anyhow::{Context as _, Result};
use base64::Engine as _;
use hookline_crds::Webhook;
use hookline_tests::EmulatorKind;
use hookline_tests::stack::Stack;
use hookline_tests::util::wait_for;
use hookline_worker::signature::{Preset, SignRequest, sign};
use hookline_worker::wire::header_attributes;
use k8s_openapi::api::core::v1::{Event, Namespace, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

const NAMESPACE: &str = "payments";
const SIGNING: &str = "hlSIGN/7f3a+9c1e=current-secret";
const ROTATED: &str = "hlROT8/2b8d+4e6f=rotated-secret";
const API_KEY: &str = "hlAPIKEY5e8c1d2b9a7f4e3c6d0a";
/// The Meta handshake's verify token: refused for its control character, which
/// makes a reconcile error about its Secret. Searched by its first 12 characters,
/// whose base64 is a prefix of the whole token's.
const VERIFY_TOKEN: &str = "hlVERIFY7c2e9a\u{1}tok";
const VERIFY_TOKEN_MARK: &str = "hlVERIFY7c2e";
const AWS_SECRET: &str = "hlAWS/Secret+Key7f3a9c1e0b2d4e6f8a0b1c";

/// Each secret in the forms a careless line might carry it.
fn forms(value: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    vec![
        value.to_owned(),
        b64.encode(value),
        url.encode(value),
        hex::encode(value),
        hex::encode_upper(value),
        percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC)
            .to_string(),
        format!("{:?}", value.as_bytes()),
    ]
}

fn webhook(name: &str, api_key_secret: &str) -> serde_json::Value {
    let mut webhook = json!({
        "apiVersion": "hookline.dev/v1alpha1",
        "kind": "Webhook",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "gatewayRef": {"name": "public"},
            "path": format!("/payments/{name}"),
            "auth": {"type": "ApiKey", "apiKey": {"secretRef": {"name": api_key_secret, "key": "api-key"}}},
            "signature": {"preset": "Stripe", "secretRef": {"name": "stripe-signing", "keys": ["current", "rotated"]}},
            "delivery": {"maxReceiveCount": 1, "visibilityTimeoutSeconds": 5},
            "worker": {"template": {"spec": {"containers": [{"name": "handler", "image": "handler:1"}]}}}
        }
    });
    if name == "broken" {
        webhook["spec"]["handshake"] = json!({"type": "Meta", "verifyTokenSecretRef": {"name": "verify-token", "key": "token"}});
    }
    webhook
}

/// A handler that answers 500 to bodies containing `"fail"` and 200 to the rest,
/// counting what it saw. Plain HTTP/1.1 on a socket: one request per connection
/// is all the worker needs.
async fn handler(seen: Arc<AtomicUsize>) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    // Headers, bounded.
                    for _ in 0..200 {
                        line.clear();
                        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length.min(1 << 20)];
                    if reader.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    seen.fetch_add(1, Ordering::SeqCst);
                    let status = if String::from_utf8_lossy(&body).contains("\"fail\"") {
                        "500 Internal Server Error"
                    } else {
                        "200 OK"
                    };
                    let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                    if reader.get_mut().write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(url)
}

#[tokio::test]
async fn no_secret_value_reaches_logs_events_or_status() -> Result<()> {
    let started = std::time::Instant::now();
    let mut stack = Stack::start_with(
        EmulatorKind::MiniStack,
        &[("RUST_LOG", "debug"), ("AWS_SECRET_ACCESS_KEY", AWS_SECRET)],
    )
    .await?;
    stack.gateway().await?;
    let ns: Namespace = serde_json::from_value(
        json!({"metadata": {"name": NAMESPACE, "labels": {"hookline.dev/webhooks": "allowed"}}}),
    )?;
    Api::<Namespace>::all(stack.client.clone())
        .patch(
            NAMESPACE,
            &PatchParams::apply("secrets-test"),
            &Patch::Apply(&ns),
        )
        .await?;
    let signing: Secret = serde_json::from_value(json!({
        "metadata": {"name": "stripe-signing", "namespace": NAMESPACE},
        "stringData": {"current": SIGNING, "rotated": ROTATED},
    }))?;
    Api::<Secret>::namespaced(stack.client.clone(), NAMESPACE)
        .patch(
            "stripe-signing",
            &PatchParams::apply("secrets-test"),
            &Patch::Apply(&signing),
        )
        .await?;
    let webhook_ready = stack
        .webhook(
            webhook("stripe", "stripe-api-key"),
            ("stripe-api-key", "api-key", API_KEY),
        )
        .await?;

    // A reconcile error about a Secret: a verify token the route cannot carry.
    stack
        .put_secret(NAMESPACE, ("verify-token", "token", VERIFY_TOKEN))
        .await?;
    let webhooks: Api<Webhook> = Api::namespaced(stack.client.clone(), NAMESPACE);
    webhooks
        .patch(
            "broken",
            &PatchParams::apply("secrets-test"),
            &Patch::Apply(&webhook("broken", "stripe-api-key")),
        )
        .await?;
    wait_for(
        "the broken Webhook's condition naming its Secret",
        Duration::from_secs(90),
        || async {
            let status = webhooks.get("broken").await?.status.unwrap_or_default();
            Ok(status
                .conditions
                .iter()
                .any(|c| c.status == "False" && c.message.contains("verify-token")))
        },
    )
    .await?;

    // The worker at debug, with both signing secrets (the second a rotation).
    let seen = Arc::new(AtomicUsize::new(0));
    let handler_url = handler(seen.clone()).await?;
    let dir = stack.bench.workdir().to_owned();
    let (current_file, rotated_file) = (dir.join("current"), dir.join("rotated"));
    std::fs::write(&current_file, SIGNING)?;
    std::fs::write(&rotated_file, ROTATED)?;
    let files = format!("{},{}", current_file.display(), rotated_file.display());
    let worker = stack.worker(
        &webhook_ready,
        &handler_url,
        ("stripe", &current_file),
        &[
            ("HOOKLINE_SIGNATURE_SECRET_FILES", files.as_str()),
            ("RUST_LOG", "debug"),
            ("AWS_SECRET_ACCESS_KEY", AWS_SECRET),
            ("HOOKLINE_MAX_RECEIVE_COUNT", "1"),
            ("HOOKLINE_BACKOFF_INITIAL_SECONDS", "1"),
            ("HOOKLINE_BACKOFF_MAX_SECONDS", "1"),
        ],
    )?;

    // Deliveries: signed with the current and the rotated secret (handled), with
    // a wrong secret (refused), and one the handler fails (dead-lettered).
    let queue = webhook_ready
        .status
        .as_ref()
        .and_then(|s| s.queue.as_ref())
        .context("the queue")?
        .url
        .clone();
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let cases: [(&str, &[u8]); 4] = [
        ("ok-current", SIGNING.as_bytes()),
        ("ok-rotated", ROTATED.as_bytes()),
        ("forged", b"not-the-secret"),
        ("fail", SIGNING.as_bytes()),
    ];
    for (i, (kind, secret)) in cases.iter().enumerate() {
        let body = json!({"id": format!("evt_{i}"), "type": kind}).to_string();
        let signed = sign(
            &Preset::Stripe,
            secret,
            SignRequest {
                body: body.as_bytes(),
                id: "",
                url: "",
                now: SystemTime::now(),
            },
        )?;
        let headers: Vec<(&str, &str)> = signed
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .chain([("x-api-key", API_KEY)])
            .collect();
        sqs.send_message()
            .queue_url(&queue)
            .message_body(&body)
            .message_group_id(format!("g{i}"))
            .message_deduplication_id(format!("d{i}"))
            .set_message_attributes(Some(header_attributes(&headers)))
            .send()
            .await
            .context("sending a delivery")?;
    }
    let dead_letter = webhook_ready
        .status
        .as_ref()
        .and_then(|s| s.dead_letter_queue.as_ref())
        .context("the DLQ")?
        .url
        .clone();
    wait_for(
        "the refused and the failed delivery in the DLQ",
        Duration::from_secs(90),
        || async {
            let attrs = sqs
                .get_queue_attributes()
                .queue_url(&dead_letter)
                .attribute_names(
                    aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages,
                )
                .send()
                .await?;
            let n: usize = attrs
                .attributes()
                .and_then(|a| {
                    a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                })
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            Ok(n >= 2 && seen.load(Ordering::SeqCst) >= 3)
        },
    )
    .await
    .with_context(|| format!("worker log:\n{}", worker.log_tail(40)))?;

    // Everything the processes wrote, every Event, every status.
    let mut haystacks: Vec<(String, String)> = Vec::new();
    for path in [stack.operator().log_path(), worker.log_path()] {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        eprintln!("{}: {} lines", path.display(), text.lines().count());
        haystacks.push((path.display().to_string(), text));
    }
    let events = Api::<Event>::namespaced(stack.client.clone(), NAMESPACE)
        .list(&ListParams::default())
        .await?;
    eprintln!("{} Events in {NAMESPACE}", events.items.len());
    haystacks.push(("Events".to_owned(), serde_json::to_string(&events.items)?));
    let all = webhooks.list(&ListParams::default()).await?;
    let statuses: Vec<_> = all.items.iter().map(|w| &w.status).collect();
    haystacks.push((
        "Webhook status".to_owned(),
        serde_json::to_string(&statuses)?,
    ));

    // Controls: the paths ran and were logged where the search looks.
    let logs = format!("{}{}", haystacks[0].1, haystacks[1].1);
    for expected in ["verify-token", "signature does not match"] {
        assert!(
            logs.contains(expected),
            "no {expected:?} in the logs searched"
        );
    }

    let mut leaks = Vec::new();
    for secret in [SIGNING, ROTATED, API_KEY, VERIFY_TOKEN_MARK, AWS_SECRET] {
        for form in forms(secret) {
            for (place, text) in &haystacks {
                if let Some(line) = text.lines().find(|l| l.contains(&form)) {
                    leaks.push(format!("{secret:?} as {form:?} in {place}: {line}"));
                }
            }
        }
    }
    eprintln!(
        "searched {} places for 5 secrets in {} forms each; {} s in all",
        haystacks.len(),
        forms(SIGNING).len(),
        started.elapsed().as_secs()
    );
    assert!(
        leaks.is_empty(),
        "secret values leaked:\n{}",
        leaks.join("\n")
    );
    Ok(())
}
