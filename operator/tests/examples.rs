//! Every example in `examples/` works end to end, on both data planes: applied to
//! the bench API server as written (only its namespace changed), its queue pair,
//! route and worker environment are what the operator derives from the applied
//! object (`desired.rs`, through the same AWS adapters), and an event signed as the
//! provider signs it, posted through the route, lands in the queue, passes the
//! worker's verification (the `hookline-worker` binary, configured with the env the
//! operator writes into the sidecar) and reaches the example's own handler
//! (`examples/handler.py`, run as its container's command says); a forged event
//! does not.
//!
//! The operator's reconcile loop itself is covered by operator.rs; here each
//! example is what varies (ordering, deduplication, signature preset, API key).
//! The bench has no kubelet, so the worker and the handler run as local processes.
//!
//! Needs `target/debug/hookline-worker` (`cargo test --workspace` builds it) and python3.

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use hookline_crds::{AuthMode, SignaturePreset, Webhook, WebhookGateway};
use hookline_operator::aws::prelude::*;
use hookline_operator::aws::{
    ApiGatewayRestApis, ApiSpec, AwsClients, IamRoles, RateLimits, RetryPolicy, RoleSpec,
    RouteAuth, RouteSpec, SqsQueues,
};
use hookline_operator::desired::{self, Settings, WORKER_CONTAINER};
use hookline_tests::process::{Supervised, free_port};
use hookline_tests::util::{post, wait_for};
use hookline_tests::{Bench, EmulatorKind, data_plane_test, repo_root};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const STAGE: &str = "live";

fn hmac(secret: &str, message: &str) -> Vec<u8> {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    aws_lc_rs::hmac::sign(&key, message.as_bytes())
        .as_ref()
        .to_vec()
}

/// The headers and body a provider sends for event `id`, signed with `secret` the
/// way the example's preset verifies.
fn signed_event(
    webhook: &Webhook,
    id: &str,
    secret: &str,
) -> Result<(Vec<(String, String)>, String)> {
    let signature = webhook
        .spec
        .signature
        .as_ref()
        .context("every example verifies a signature")?;
    let mut headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
    let body;
    match signature.preset {
        SignaturePreset::Stripe => {
            body = format!(
                r#"{{"id":"{id}","type":"invoice.paid","data":{{"object":{{"customer":"cus_1"}}}}}}"#
            );
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs();
            let v1 = hex::encode(hmac(secret, &format!("{t}.{body}")));
            headers.push(("Stripe-Signature".to_owned(), format!("t={t},v1={v1}")));
        }
        SignaturePreset::GitHub => {
            body = format!(
                r#"{{"id":"{id}","action":"opened","repository":{{"full_name":"acme/shop"}}}}"#
            );
            headers.push(("X-GitHub-Event".to_owned(), "issues".to_owned()));
            headers.push(("X-GitHub-Delivery".to_owned(), format!("delivery-{id}")));
            headers.push((
                "X-Hub-Signature-256".to_owned(),
                format!("sha256={}", hex::encode(hmac(secret, &body))),
            ));
        }
        SignaturePreset::Shopify => {
            body = format!(r#"{{"id":"{id}","total_price":"9.99"}}"#);
            headers.push((
                "X-Shopify-Shop-Domain".to_owned(),
                "acme.myshopify.com".to_owned(),
            ));
            headers.push(("X-Shopify-Webhook-Id".to_owned(), format!("wh-{id}")));
            headers.push((
                "X-Shopify-Hmac-Sha256".to_owned(),
                base64::engine::general_purpose::STANDARD.encode(hmac(secret, &body)),
            ));
        }
        SignaturePreset::GenericHmac => {
            let generic = signature
                .generic_hmac
                .as_ref()
                .context("genericHmac settings")?;
            body = format!(r#"{{"id":"{id}","kind":"order.created"}}"#);
            let digest = hmac(secret, &body);
            let encoded = match generic.encoding {
                hookline_crds::DigestEncoding::Hex => hex::encode(digest),
                hookline_crds::DigestEncoding::Base64 => {
                    base64::engine::general_purpose::STANDARD.encode(digest)
                }
            };
            headers.push((
                generic.header.clone(),
                format!("{}{encoded}", generic.prefix.clone().unwrap_or_default()),
            ));
        }
        other => bail!("no example uses {other:?}; sign it here when one does"),
    }
    Ok((headers, body))
}

/// The sidecar's environment as the operator writes it, made local: secret files
/// from `secrets`, the handler on `handler_port`, metrics on a free port.
fn worker_env(
    webhook: &Webhook,
    deployment: &k8s_openapi::api::apps::v1::Deployment,
    secrets: &Path,
    handler_port: u16,
) -> Result<Vec<(String, String)>> {
    let pod = deployment
        .spec
        .template
        .spec
        .as_ref()
        .context("the worker Deployment's pod")?;
    let sidecar = pod
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == WORKER_CONTAINER)
        .context("the worker sidecar")?;
    let mut env = Vec::new();
    for var in sidecar.env.iter().flatten() {
        let value = var.value.clone().unwrap_or_default();
        let value = match var.name.as_str() {
            "HOOKLINE_SIGNATURE_SECRET_FILES" => value
                .split(',')
                .map(|file| {
                    let key = file.rsplit('/').next().unwrap_or_default();
                    secrets.join(key).display().to_string()
                })
                .collect::<Vec<_>>()
                .join(","),
            "HOOKLINE_HANDLER_URL" => format!(
                "http://127.0.0.1:{handler_port}{}",
                webhook.spec.worker.handler.path
            ),
            "HOOKLINE_METRICS_ADDR" => format!("127.0.0.1:{}", free_port()?),
            _ => value,
        };
        env.push((var.name.clone(), value));
    }
    env.push(("AWS_ACCESS_KEY_ID".to_owned(), "test".to_owned()));
    env.push(("AWS_SECRET_ACCESS_KEY".to_owned(), "test".to_owned()));
    env.push(("HOOKLINE_LOG_FORMAT".to_owned(), "text".to_owned()));
    Ok(env)
}

/// The handler as its container runs it: the same command, a file under a
/// ConfigMap volume's mount read from `examples/` (where examples/README.md creates
/// the ConfigMap from), the port made free. A file under no mount is not in the
/// image (`python:3.12-slim`), so the pod would fail: so does this.
fn handler_command(webhook: &Webhook, port: u16) -> Result<(String, Vec<String>)> {
    let pod = webhook
        .spec
        .worker
        .template
        .spec
        .as_ref()
        .context("the example's pod template")?;
    let container = pod.containers.first().context("the handler container")?;
    let mut command = container.command.clone().context("the handler's command")?;
    let program = command.remove(0);
    let examples = repo_root().join("examples");
    let mut args = Vec::new();
    for arg in command {
        if arg == webhook.spec.worker.handler.port.to_string() {
            args.push(port.to_string());
            continue;
        }
        if !arg.starts_with('/') {
            args.push(arg);
            continue;
        }
        let mount = container
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| arg.starts_with(&format!("{}/", m.mount_path.trim_end_matches('/'))))
            .with_context(|| {
                format!("{arg} is under no volume mount: the image has no such file")
            })?;
        let from_config_map = pod
            .volumes
            .iter()
            .flatten()
            .any(|v| v.name == mount.name && v.config_map.is_some());
        if !from_config_map {
            bail!("{arg} is mounted from no ConfigMap");
        }
        let file = arg.rsplit('/').next().unwrap_or_default();
        args.push(examples.join(file).display().to_string());
    }
    Ok((program, args))
}

data_plane_test!(every_example_delivers_a_signed_event);

async fn every_example_delivers_a_signed_event(kind: EmulatorKind) -> Result<()> {
    let bench = Bench::shared().await?;
    let aws = bench.data_plane(kind).await?;
    let client = bench.kube.client().await?;
    let clients = AwsClients::new(
        &aws.sdk_config().await,
        &RateLimits::unlimited(),
        RetryPolicy::default(),
    );
    let worker_binary = repo_root().join("target/debug/hookline-worker");
    if !worker_binary.is_file() {
        bail!(
            "{} is not built; `cargo test --workspace` builds it",
            worker_binary.display()
        );
    }
    let id = format!("{}{}", std::process::id(), kind.name());
    let prefix = format!("ex{}", std::process::id() % 100_000);
    let settings = Settings {
        name_prefix: prefix.clone(),
        region: hookline_tests::aws::REGION.to_owned(),
        worker_image: "hookline-worker:test".to_owned(),
        aws_endpoint_url: Some(aws.endpoint().to_owned()),
        irsa_oidc_provider_arn: None,
    };
    let mut gateway: WebhookGateway = serde_saphyr::from_str(&std::fs::read_to_string(
        repo_root().join("crds/samples/webhookgateway.yaml"),
    )?)?;
    gateway.metadata.uid = Some(format!("uid-gateway-{id}"));
    let queues = SqsQueues::new(clients.sqs.clone(), clients.caller.clone());
    let apis = ApiGatewayRestApis::new(clients.apigateway.clone(), clients.caller.clone());
    let owner = desired::gateway_owner(&gateway);
    // One REST API for every example, as one gateway holds them all.
    let api = apis
        .ensure_api(
            &ApiSpec {
                name: format!("hookline-ex-{id}"),
                tags: BTreeMap::new(),
                owner: owner.clone(),
            },
            None,
        )
        .await?;
    let role = IamRoles::new(clients.iam.clone(), clients.caller.clone())
        .ensure(&RoleSpec {
            name: format!("hookline-ex-{id}"),
            region: settings.region.clone(),
            queue_prefix: prefix.clone(),
            owner,
        })
        .await?;
    let scratch = bench.workdir().join(format!("examples-{}", kind.name()));

    let mut examples: Vec<_> = std::fs::read_dir(repo_root().join("examples"))?
        .filter_map(|e| e.ok().map(|e| e.path().join("webhook.yaml")))
        .filter(|p| p.is_file())
        .collect();
    examples.sort();
    assert!(examples.len() >= 4, "{examples:?}");
    let mut delivered = Vec::new();
    for path in &examples {
        let example = path
            .parent()
            .and_then(Path::file_name)
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let what = format!("{kind:?} example {example}");
        let mut object: Value = serde_saphyr::from_str(&std::fs::read_to_string(path)?)
            .with_context(|| format!("parsing {}", path.display()))?;
        let namespace = bench.kube.namespace(&client, &example).await?;
        object["metadata"]["namespace"] = json!(namespace);
        let webhooks: Api<Webhook> = Api::namespaced(client.clone(), &namespace);
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        // As written, with the schema's defaults filled in by the API server.
        let webhook = webhooks
            .patch(
                &name,
                &PatchParams::apply("examples-test"),
                &Patch::Apply(&object),
            )
            .await
            .with_context(|| format!("{what}: applying {}", path.display()))?;
        let signature = webhook.spec.signature.clone().context("a signature")?;

        // The team's Secret, and the files the kubelet would mount from it.
        let dir = scratch.join(&example);
        std::fs::create_dir_all(&dir)?;
        let mut data = BTreeMap::new();
        for key in &signature.secret_ref.keys {
            let value = format!("{key}-{example}-{id}");
            std::fs::write(dir.join(key), &value)?;
            data.insert(key.clone(), value);
        }
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": signature.secret_ref.name},
            "stringData": data,
        }))?;
        Api::<Secret>::namespaced(client.clone(), &namespace)
            .create(&PostParams::default(), &secret)
            .await?;

        // Queue pair and route, as the operator derives them from the applied object.
        let pair = queues
            .ensure_pair(&desired::queue_pair(&webhook, &gateway, &settings))
            .await
            .with_context(|| format!("{what}: the queue pair"))?;
        let auth = if webhook.spec.auth.mode == AuthMode::ApiKey {
            RouteAuth::ApiKey
        } else {
            RouteAuth::None
        };
        apis.ensure_route(
            &api,
            &RouteSpec {
                path: webhook.spec.path.clone(),
                queue_arn: pair.queue.arn.clone(),
                role_arn: role.clone(),
                template: desired::route_template(&webhook),
                auth: auth.clone(),
                handshake: None,
            },
        )
        .await
        .with_context(|| format!("{what}: the route"))?;
        apis.deploy(&api.id, STAGE).await?;
        let mut headers_extra = Vec::new();
        if matches!(auth, RouteAuth::ApiKey) {
            let key = format!("key-{example}-{id}-0123456789abcdef");
            apis.ensure_api_key(
                &hookline_operator::names::webhook_api_key(&prefix, &namespace, &name),
                &key,
                &api.id,
                STAGE,
                &desired::webhook_owner(&webhook),
            )
            .await
            .with_context(|| format!("{what}: the API key"))?;
            headers_extra.push(("x-api-key".to_owned(), key));
        }

        // The handler and the worker, as the pod would run them.
        let handler_port = free_port()?;
        let (program, args) = handler_command(&webhook, handler_port)?;
        let handler = Supervised::spawn(
            &format!("{example} handler"),
            Path::new(&program),
            &args,
            &[],
            bench
                .workdir()
                .join(format!("{example}-{}-handler.log", kind.name())),
        )?;
        let deployment = desired::worker_deployment(&webhook, &pair, &settings, None);
        let env = worker_env(&webhook, &deployment, &dir, handler_port)?;
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let worker = std::sync::Mutex::new(Supervised::spawn(
            &format!("{example} worker"),
            &worker_binary,
            ["run"],
            &env,
            bench
                .workdir()
                .join(format!("{example}-{}-worker.log", kind.name())),
        )?);

        // A forged event first, then a genuine one in the same group: when the genuine
        // one is handled, the forged one has been judged (order per group).
        let key = signature.secret_ref.keys.first().context("a key")?;
        let invoke = format!(
            "/restapis/{}/{STAGE}/_user_request_{}",
            api.id, webhook.spec.path
        );
        for (event, secret) in [
            (format!("evt_forged_{example}"), "not-the-secret".to_owned()),
            (format!("evt_{example}"), data[key].clone()),
        ] {
            let (mut headers, body) = signed_event(&webhook, &event, &secret)?;
            headers.extend(headers_extra.iter().cloned());
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let (status, answer) = post(aws.port(), "127.0.0.1", &invoke, &headers, &body).await?;
            assert_eq!(status, 200, "{what}: POST {event}: {answer}");
        }
        let genuine = format!("event=evt_{example}");
        let waited = wait_for(
            &format!("{what}: the signed event at the handler"),
            Duration::from_secs(60),
            || async {
                worker
                    .lock()
                    .map_err(|_| anyhow::anyhow!("the worker's lock"))?
                    .check_running()?;
                Ok(std::fs::read_to_string(handler.log_path())?.contains(&genuine))
            },
        )
        .await;
        if let Err(e) = waited {
            bail!(
                "{e:#}\nworker log:\n{}\nhandler log:\n{}",
                worker.lock().map(|w| w.log_tail(30)).unwrap_or_default(),
                handler.log_tail(30)
            );
        }
        let handled = std::fs::read_to_string(handler.log_path())?;
        assert!(
            !handled.contains("evt_forged"),
            "{what}: a forged event reached the handler:\n{handled}"
        );
        delivered.push(example);
    }
    assert_eq!(delivered.len(), examples.len());
    Ok(())
}
