//! `kubectl hookline send-test`: the first check after applying a Webhook. A sample
//! event signed as its provider signs (preset and Secret) goes to the public URL;
//! then the queues say whether the worker handled it or dead-lettered it.
//!
//! SQS cannot say which message was deleted, so "handled" means: the gateway
//! accepted the event, the queue then drained, and the dead-letter queue gained no
//! message with the event's body. On a queue with other traffic that may not happen
//! within `--wait`; the command then says what it saw.

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use hookline_crds::{AuthMode, DedupSource, GroupSource, Webhook};
use hookline_worker::signature::{Preset, SignRequest, called_url, sign};
use http_body_util::{BodyExt as _, Full};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::cli::SendTest;
use crate::context::{Ctx, Queues, depth, name};

/// The group a sample event is sent in, when the Webhook takes groups from the request.
pub const TEST_GROUP: &str = "hookline-send-test";

pub async fn run(ctx: &Ctx, options: SendTest, out: &mut impl Write) -> Result<ExitCode> {
    let webhook = ctx.webhook(&options.webhook).await?;
    let status = webhook.status.clone().unwrap_or_default();
    let Some(url) = status.url.clone() else {
        bail!(
            "Webhook {} has no public URL yet; `kubectl describe webhook -n {} {}` says what it waits for",
            name(&webhook),
            ctx.namespace,
            name(&webhook)
        );
    };
    let id = format!("hookline-test-{:016x}", fastrand::u64(..));
    let body = match &options.event {
        Some(path) => {
            std::fs::read(path).with_context(|| format!("reading the event {}", path.display()))?
        }
        None => sample_event(&webhook, &id).into_bytes(),
    };
    let (headers, query) = request_headers(ctx, &webhook, (&body, &url), &id).await?;
    let url = called_url(&url, &query);
    if options.event.is_some() && webhook.spec.deduplication.source == DedupSource::ContentBased {
        writeln!(
            out,
            "note: the queue deduplicates by content: the same body sent again within 5 minutes is accepted and dropped"
        )?;
    }
    let queues = ctx.queues(&webhook).ok();
    let before = match &queues {
        Some(q) => Some(depths(ctx, q).await?),
        None => None,
    };
    let (code, answer) = post(&url, options.via.as_deref(), &headers, body.clone()).await?;
    writeln!(out, "POST {url}: {code} {}", answer.trim())?;
    if !(200..300).contains(&code) {
        writeln!(out, "{}", status_hint(code))?;
        return Ok(ExitCode::FAILURE);
    }
    match (queues, before, options.wait) {
        (Some(queues), Some(before), wait) if wait > 0 => {
            follow(
                ctx,
                &webhook,
                &queues,
                before,
                &body,
                Duration::from_secs(wait),
                out,
            )
            .await
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Request headers, and query parameters for the URL.
type Headers = (Vec<(String, String)>, Vec<(String, String)>);

/// A small JSON event; where the Webhook groups by a body field, that field holds
/// [`TEST_GROUP`], so the event waits behind nobody's messages.
fn sample_event(webhook: &Webhook, id: &str) -> String {
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut event = serde_json::json!({
        "id": id,
        "type": "hookline.test",
        "created": created,
        "data": {"object": {"note": "sent by kubectl hookline send-test"}},
    });
    let ordering = &webhook.spec.ordering;
    if ordering.source == GroupSource::BodyField
        && let Some(path) = ordering
            .body_field
            .as_deref()
            .and_then(|f| f.strip_prefix("$."))
        && !path.contains('[')
    {
        let mut at = &mut event;
        for key in path.split('.') {
            if !at.get(key).is_some_and(serde_json::Value::is_object) {
                at[key] = serde_json::json!({});
            }
            at = &mut at[key];
        }
        *at = serde_json::json!(TEST_GROUP);
    }
    event.to_string()
}

/// Content type, the group and deduplication headers the Webhook reads, its API
/// key, and the provider's signature; and the query parameters the signature adds.
async fn request_headers(
    ctx: &Ctx,
    webhook: &Webhook,
    (body, url): (&[u8], &str),
    id: &str,
) -> Result<Headers> {
    let mut query = Vec::new();
    let spec = &webhook.spec;
    let mut headers = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        (
            "user-agent".to_owned(),
            concat!("kubectl-hookline/", env!("CARGO_PKG_VERSION"), " send-test").to_owned(),
        ),
    ];
    if let Some(header) = &spec.ordering.header {
        headers.push((header.clone(), TEST_GROUP.to_owned()));
    }
    if let Some(header) = &spec.deduplication.header {
        headers.push((header.clone(), id.to_owned()));
    }
    match spec.auth.mode {
        AuthMode::None => {}
        AuthMode::ApiKey => {
            if let Some(api_key) = &spec.auth.api_key {
                let key =
                    secret_value(ctx, &api_key.secret_ref.name, Some(&api_key.secret_ref.key))
                        .await?;
                headers.push((
                    "x-api-key".to_owned(),
                    String::from_utf8_lossy(&key).into_owned(),
                ));
            }
        }
        AuthMode::Cognito | AuthMode::Lambda => bail!(
            "Webhook {} authenticates callers with {:?} at the gateway; send-test cannot obtain that token. Send a test event from the provider instead",
            name(webhook),
            spec.auth.mode
        ),
    }
    if let Some(signature) = &spec.signature {
        let preset = Preset::new(signature.preset_name(), signature.generic_hmac_settings())
            .context("the Webhook's signature settings")?;
        let secret = secret_value(
            ctx,
            &signature.secret_ref.name,
            signature.secret_ref.keys.first(),
        )
        .await?;
        let request = SignRequest {
            body,
            id,
            url,
            now: SystemTime::now(),
        };
        let signed = sign(&preset, &secret, request)
            .with_context(|| format!("signing as {}", preset.name()))?;
        headers.extend(signed.headers);
        query = signed.query;
    }
    Ok((headers, query))
}

/// A value of the Secret `name`: `key`'s, or the first key's when none is named.
async fn secret_value(ctx: &Ctx, name: &str, key: Option<&String>) -> Result<Vec<u8>> {
    let secret = Api::<Secret>::namespaced(ctx.kube.clone(), &ctx.namespace)
        .get(name)
        .await
        .with_context(|| format!("reading the Secret {name} in namespace {}", ctx.namespace))?;
    let data = secret.data.unwrap_or_default();
    let found = match key {
        Some(key) => data.get(key),
        None => data.values().next(),
    };
    found.map(|v| v.0.clone()).with_context(|| {
        format!(
            "the Secret {name} has no key {}",
            key.map_or("at all", String::as_str)
        )
    })
}

/// POSTs `body` to `url`, or to `via` with `url`'s Host and path.
async fn post(
    url: &str,
    via: Option<&str>,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Result<(u16, String)> {
    let public: http::Uri = url
        .parse()
        .with_context(|| format!("the Webhook's URL {url}"))?;
    let host = public
        .authority()
        .map(|a| a.to_string())
        .context("a URL with a host")?;
    let path = public.path_and_query().map_or("/", |p| p.as_str());
    let target: http::Uri = match via {
        Some(base) => format!("{}{path}", base.trim_end_matches('/'))
            .parse()
            .with_context(|| format!("--via {base}"))?,
        None => public.clone(),
    };
    let mut request = http::Request::post(target).header(http::header::HOST, host);
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .context("building the request")?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .context("reading the system's CA certificates")?
        .https_or_http()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(connector);
    let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
        .await
        .context("no answer within 30 s")?
        .with_context(|| format!("POST {url}"))?;
    let code = response.status().as_u16();
    let answer = response
        .into_body()
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    Ok((code, answer))
}

fn status_hint(code: u16) -> &'static str {
    match code {
        403 => {
            "The gateway refused the caller: an API key, a source-IP allow list or a resource policy; `kubectl describe webhook` shows the auth settings."
        }
        404 => {
            "No route at this path: the route may not be deployed yet (READY in `kubectl hookline get`), or the path differs."
        }
        413 => "The event is larger than one SQS message holds (1 MiB with its forwarded headers).",
        429 => "The stage's throttling limit refused it; providers retry such answers.",
        400 => {
            "The gateway refused the request as malformed (for instance a missing deduplication header)."
        }
        _ => {
            "Not accepted; providers retry 5xx answers. `kubectl describe webhook` and the gateway's conditions say more."
        }
    }
}

/// Messages in the queue and in the dead-letter queue (each visible plus in flight).
async fn depths(ctx: &Ctx, queues: &Queues) -> Result<(u64, u64)> {
    let sqs = ctx.sqs(&queues.queue);
    Ok((
        depth(&sqs, &queues.queue)
            .await
            .map_err(anyhow::Error::msg)?,
        depth(&sqs, &queues.dead_letter)
            .await
            .map_err(anyhow::Error::msg)?,
    ))
}

async fn follow(
    ctx: &Ctx,
    webhook: &Webhook,
    queues: &Queues,
    (_, dead_before): (u64, u64),
    body: &[u8],
    wait: Duration,
    out: &mut impl Write,
) -> Result<ExitCode> {
    let started = Instant::now();
    let sqs = ctx.sqs(&queues.dead_letter);
    let body = String::from_utf8_lossy(body);
    let mut last = (0, 0);
    // One read of both depths a second, bounded by `wait`.
    while started.elapsed() < wait {
        tokio::time::sleep(Duration::from_secs(1)).await;
        last = depths(ctx, queues).await?;
        let (queued, dead) = last;
        if dead > dead_before {
            let look = hookline_worker::dead_letters::look(&sqs, &queues.dead_letter.url, 100)
                .await
                .map_err(anyhow::Error::msg)?;
            if let Some(letter) = look.letters.iter().find(|l| l.body == body) {
                writeln!(
                    out,
                    "Dead-lettered after {:.0}s: {}",
                    started.elapsed().as_secs_f64(),
                    crate::dlq::reason(letter)
                )?;
                writeln!(
                    out,
                    "`kubectl hookline dlq show -n {} {} {}` shows it.",
                    ctx.namespace,
                    name(webhook),
                    letter.message_id
                )?;
                return Ok(ExitCode::FAILURE);
            }
        }
        if queued == 0 {
            writeln!(
                out,
                "Handled after {:.0}s: the worker took it from the queue, and the dead-letter queue did not get it.",
                started.elapsed().as_secs_f64()
            )?;
            return Ok(ExitCode::SUCCESS);
        }
    }
    let ready = webhook
        .status
        .as_ref()
        .and_then(|s| s.replicas.as_ref())
        .map_or(0, |r| r.ready);
    writeln!(
        out,
        "Not handled within {}s: {} message(s) still in the queue; the worker has {ready} ready replica(s). With other traffic the queue may never drain in this time: the worker's logs (`kubectl logs -n {} deploy/{}-worker -c hookline-worker`) show each delivery.",
        wait.as_secs(),
        last.0,
        ctx.namespace,
        name(webhook)
    )?;
    Ok(ExitCode::FAILURE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(ordering: serde_json::Value) -> Webhook {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "hookline.dev/v1alpha1",
            "kind": "Webhook",
            "metadata": {"name": "w", "namespace": "n"},
            "spec": {
                "path": "/w",
                "ordering": ordering,
                "worker": {"template": {"spec": {"containers": [{"name": "h", "image": "h"}]}}}
            }
        }))
        .unwrap()
    }

    #[test]
    fn the_sample_event_carries_the_test_group_in_the_grouping_field() {
        let event = sample_event(
            &webhook(
                serde_json::json!({"type": "BodyField", "bodyField": "$.data.object.customer"}),
            ),
            "id-1",
        );
        let event: serde_json::Value = serde_json::from_str(&event).unwrap();
        assert_eq!(event["data"]["object"]["customer"], TEST_GROUP);
        assert_eq!(
            event["data"]["object"]["note"],
            "sent by kubectl hookline send-test"
        );
        assert_eq!(event["id"], "id-1");

        let event = sample_event(
            &webhook(serde_json::json!({"type": "BodyField", "bodyField": "$.account"})),
            "id-2",
        );
        let event: serde_json::Value = serde_json::from_str(&event).unwrap();
        assert_eq!(event["account"], TEST_GROUP);
    }
}
