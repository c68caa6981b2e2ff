//! The Grafana dashboard the chart ships (`charts/hookline/dashboards/hookline.json`,
//! `dashboard.enabled`): rendered only when asked for, with the sidecar's label; a
//! well-formed dashboard with the panels issue 16 lists; every metric its queries
//! name is one that the real `hookline-operator` and `hookline-worker` export on
//! `/metrics` (started on the bench and scraped); and every query parses as PromQL
//! and returns data from series shaped as the chart's ServiceMonitor and PodMonitor
//! deliver them (`promtool check rules` and `promtool test rules`).
//!
//! Needs `target/debug/hookline-operator` and `hookline-worker`, which
//! `cargo test --workspace` builds.

use anyhow::{Context, Result, bail};
use hookline_tests::process::{Supervised, free_port, wait_until};
use hookline_tests::stack::workspace_binary;
use hookline_tests::{Bench, repo_root};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const NAMESPACE: &str = "hookline-system";
/// The Kubernetes version the chart is rendered for (the bench's).
const KUBE_VERSION: &str = "1.37.2";

fn chart() -> PathBuf {
    repo_root().join("charts/hookline")
}

fn dashboard() -> Result<Value> {
    let path = chart().join("dashboards/hookline.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// `helm template` of the chart with `extra` arguments, parsed into its objects.
fn render(extra: &[&str]) -> Result<Vec<Value>> {
    let output = Command::new(hookline_tests::helm_binary()?)
        .args(["template", "hookline"])
        .arg(chart())
        .args(["--namespace", NAMESPACE, "--kube-version", KUBE_VERSION])
        .args(extra)
        .output()
        .context("running helm template")?;
    if !output.status.success() {
        bail!(
            "helm template failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8(output.stdout)?;
    let mut objects = Vec::new();
    for document in text.split("\n---") {
        let value: Value =
            serde_saphyr::from_str(document).with_context(|| format!("parsing:\n{document}"))?;
        if !value.is_null() {
            objects.push(value);
        }
    }
    Ok(objects)
}

fn dashboard_config_maps(objects: &[Value]) -> Vec<&Value> {
    objects
        .iter()
        .filter(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "hookline-dashboard")
        .collect()
}

#[test]
fn the_chart_ships_the_dashboard_only_when_enabled() -> Result<()> {
    let full = chart().join("ci/full-values.yaml");
    let full = full.to_str().context("values path")?;
    assert!(
        dashboard_config_maps(&render(&["--set", "fullnameOverride=hookline"])?).is_empty(),
        "the dashboard is off by default"
    );

    let objects = render(&["-f", full])?;
    let maps = dashboard_config_maps(&objects);
    let [map] = maps.as_slice() else {
        bail!("expected one dashboard ConfigMap, got {}", maps.len());
    };
    assert_eq!(map["metadata"]["namespace"], NAMESPACE);
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(map["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(map["metadata"]["annotations"]["grafana_folder"], "Hookline");
    let text = map["data"]["hookline.json"]
        .as_str()
        .context("no hookline.json in the ConfigMap")?;
    let shipped: Value = serde_json::from_str(text).context("the shipped dashboard is no JSON")?;
    assert_eq!(
        shipped,
        dashboard()?,
        "the ConfigMap carries dashboards/hookline.json"
    );

    // Another sidecar label and namespace.
    let objects = render(&[
        "--set",
        "fullnameOverride=hookline",
        "--set",
        "dashboard.enabled=true",
        "--set",
        "dashboard.namespace=monitoring",
        "--set",
        "dashboard.label=example.com/dashboard",
        "--set",
        "dashboard.labelValue=hookline",
    ])?;
    let maps = dashboard_config_maps(&objects);
    let [map] = maps.as_slice() else {
        bail!("expected one dashboard ConfigMap, got {}", maps.len());
    };
    assert_eq!(map["metadata"]["namespace"], "monitoring");
    assert_eq!(
        map["metadata"]["labels"]["example.com/dashboard"],
        "hookline"
    );
    assert!(map["metadata"]["labels"]["grafana_dashboard"].is_null());
    assert!(map["metadata"]["annotations"].is_null());
    Ok(())
}

/// The panels that are not rows.
fn panels(dashboard: &Value) -> Result<Vec<&Value>> {
    Ok(dashboard["panels"]
        .as_array()
        .context("no panels")?
        .iter()
        .filter(|p| p["type"] != "row")
        .collect())
}

/// Every PromQL expression of the dashboard: `(where, expression)`, the template
/// variables' `label_values` selectors included.
fn expressions(dashboard: &Value) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for panel in panels(dashboard)? {
        let title = panel["title"].as_str().context("a panel without title")?;
        for target in panel["targets"].as_array().context("targets")? {
            let expr = target["expr"]
                .as_str()
                .with_context(|| format!("panel {title}: a target without expr"))?;
            let reference = target["refId"].as_str().unwrap_or_default();
            out.push((format!("panel {title:?} {reference}"), expr.to_owned()));
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .context("no templating")?
    {
        if variable["type"] != "query" {
            continue;
        }
        let name = variable["name"].as_str().unwrap_or_default();
        let query = variable["query"]["query"]
            .as_str()
            .with_context(|| format!("variable {name} has no query"))?;
        let selector = query
            .strip_prefix("label_values(")
            .and_then(|rest| rest.rsplit_once(','))
            .map(|(selector, _label)| selector.trim())
            .with_context(|| format!("variable {name}: not label_values(selector, label)"))?;
        out.push((format!("variable {name}"), selector.to_owned()));
    }
    Ok(out)
}

#[test]
fn the_dashboard_has_the_variables_and_panels_of_issue_16() -> Result<()> {
    let dashboard = dashboard()?;
    assert!(
        dashboard["schemaVersion"].as_u64() >= Some(39),
        "{}",
        dashboard["schemaVersion"]
    );
    assert!(dashboard["uid"].is_string());
    let variables = dashboard["templating"]["list"]
        .as_array()
        .context("no templating")?;
    let variable = |name: &str| variables.iter().find(|v| v["name"] == name);
    let source = variable("datasource").context("no datasource variable")?;
    assert_eq!(source["type"], "datasource");
    assert_eq!(source["query"], "prometheus");
    for (name, label) in [("namespace", "namespace"), ("webhook", "webhook")] {
        let v = variable(name).with_context(|| format!("no {name} variable"))?;
        assert_eq!(v["type"], "query");
        let query = v["query"]["query"].as_str().unwrap_or_default();
        assert!(
            query.starts_with("label_values(") && query.ends_with(&format!(", {label})")),
            "{name}: {query}"
        );
    }
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().context("no panels")? {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(ids.insert(panel["id"].as_u64()), "duplicate id: {title}");
        for key in ["h", "w", "x", "y"] {
            assert!(panel["gridPos"][key].is_u64(), "{title}: gridPos.{key}");
        }
    }
    for panel in panels(&dashboard)? {
        let title = panel["title"].as_str().unwrap_or_default();
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{title} does not use the datasource variable"
        );
        for target in panel["targets"].as_array().context("targets")? {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
        }
    }
    // What issue 16 asks the dashboard to show, by the metric that shows it.
    let used: BTreeSet<String> = expressions(&dashboard)?
        .iter()
        .flat_map(|(_, expr)| metric_names(expr))
        .collect();
    for (what, metric) in [
        ("backlog", "hookline_webhook_messages"),
        ("oldest message age", "hookline_worker_queue_age_seconds"),
        ("deliveries", "hookline_worker_messages_handled_total"),
        ("handler failures", "hookline_worker_messages_retried_total"),
        (
            "signature failures",
            "hookline_worker_verification_failures_total",
        ),
        (
            "handler latency",
            "hookline_worker_handler_duration_seconds_bucket",
        ),
        ("AWS calls", "hookline_aws_calls_total"),
        ("scaling decisions", "hookline_scale_events_total"),
        ("replicas", "hookline_webhook_replicas"),
    ] {
        assert!(used.contains(metric), "no panel shows {what} ({metric})");
    }
    let all = expressions(&dashboard)?;
    assert!(
        all.iter()
            .any(|(_, e)| e.contains("hookline_aws_calls_total{outcome=\"throttled\"}")),
        "no panel shows AWS throttles"
    );
    assert!(
        all.iter().any(|(_, e)| e.contains("queue=\"dead_letter\"")),
        "no panel shows the dead-letter depth"
    );
    Ok(())
}

/// Metric names an expression selects: identifiers outside label matchers, range
/// brackets and strings that are no function, aggregation, keyword or grouping label.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Blank out strings, `{…}` and `[…]`, keeping the braces as separators.
    let mut skeleton = String::with_capacity(expr.len());
    let mut chars = expr.chars().peekable();
    let mut depth_brace = 0usize;
    let mut depth_bracket = 0usize;
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                // A string: skip to its closing quote (escapes included).
                while let Some(d) = chars.next() {
                    if d == '\\' && c != '`' {
                        chars.next();
                    } else if d == c {
                        break;
                    }
                }
                skeleton.push(' ');
            }
            '{' => {
                depth_brace += 1;
                skeleton.push(' ');
            }
            '}' => {
                depth_brace = depth_brace.saturating_sub(1);
                skeleton.push(' ');
            }
            '[' => {
                depth_bracket += 1;
                skeleton.push(' ');
            }
            ']' => {
                depth_bracket = depth_bracket.saturating_sub(1);
                skeleton.push(' ');
            }
            _ if depth_brace > 0 || depth_bracket > 0 => skeleton.push(' '),
            _ => skeleton.push(c),
        }
    }
    // Tokens: identifiers, numbers with their unit (`5m`, `0.99`), single characters.
    let mut tokens = Vec::new();
    let mut rest = skeleton.as_str();
    while let Some(c) = rest.chars().next() {
        let len = if c.is_ascii_alphabetic() || c == '_' || c == ':' || c == '$' {
            rest.find(|d: char| !(d.is_ascii_alphanumeric() || d == '_' || d == ':' || d == '$'))
                .unwrap_or(rest.len())
        } else if c.is_ascii_digit() || c == '.' {
            rest.find(|d: char| !(d.is_ascii_alphanumeric() || d == '.'))
                .unwrap_or(rest.len())
        } else {
            c.len_utf8()
        };
        let (token, tail) = rest.split_at(len);
        if !token.trim().is_empty() {
            tokens.push(token);
        }
        rest = tail;
    }
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    // Aggregations too: `sum by (…) (…)` puts no `(` right after `sum`.
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "count",
        "count_values",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "limitk",
        "limit_ratio",
    ];
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < tokens.len() {
        let token = tokens[i];
        let next = tokens.get(i + 1).copied();
        let is_ident = token
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
        if GROUPING.contains(&token.to_ascii_lowercase().as_str()) && next == Some("(") {
            // Skip the label list.
            while i < tokens.len() && tokens[i] != ")" {
                i += 1;
            }
        } else if is_ident
            && next != Some("(")
            && !KEYWORDS.contains(&token.to_ascii_lowercase().as_str())
        {
            names.insert(token.to_owned());
        }
        i += 1;
    }
    names
}

#[test]
fn metric_names_are_found_where_promql_puts_them() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (namespace, le) (rate(a_bucket{x="y{z}", w=~"$webhook"}[$__rate_interval] offset 5m))) / on (namespace) group_left (pod) b_total > bool 0 or vector(1) unless c"#,
    );
    assert_eq!(
        names,
        BTreeSet::from(["a_bucket".into(), "b_total".into(), "c".into()])
    );
}

/// Metric families a `/metrics` page (OpenMetrics, from prometheus-client) declares:
/// name → type. Declared families count even with no series yet (a Webhook's series
/// appear once it exists).
fn families(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.trim().to_owned()))
        .collect()
}

/// Whether `name`, as a query names it, is a series of one of `families`
/// (`_total` of a counter; `_bucket`, `_sum`, `_count` of a histogram).
fn is_exported(name: &str, families: &BTreeMap<String, String>) -> bool {
    let of = |suffix: &str, kinds: &[&str]| {
        name.strip_suffix(suffix)
            .and_then(|base| families.get(base))
            .is_some_and(|kind| kinds.contains(&kind.as_str()))
    };
    families
        .get(name)
        .is_some_and(|kind| matches!(kind.as_str(), "gauge" | "unknown"))
        || of("_total", &["counter"])
        || of("_bucket", &["histogram"])
        || of("_sum", &["histogram", "summary"])
        || of("_count", &["histogram", "summary"])
}

/// The body of `GET /metrics` on 127.0.0.1:`port` (HTTP/1.0, so the server closes).
async fn scrape(port: u16) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response.split_once("\r\n\r\n").context("no HTTP body")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        bail!("GET /metrics: {head}");
    }
    Ok(body.to_owned())
}

/// Waits until `process` serves `/metrics` on `port`.
async fn serving(process: &mut Supervised, port: u16) -> Result<()> {
    wait_until(
        process,
        "serving /metrics",
        Duration::from_secs(60),
        move || async move { scrape(port).await.is_ok() },
    )
    .await
}

/// Names the dashboard queries (and the promtool test's sample series carry) that
/// none of `families` exports: `where: name`.
fn not_exported(dashboard: &Value, families: &BTreeMap<String, String>) -> Result<Vec<String>> {
    let mut unknown = Vec::new();
    for (place, expr) in expressions(dashboard)? {
        let names = metric_names(&expr);
        if names.is_empty() {
            bail!("{place} selects no metric: {expr}");
        }
        for name in names {
            if !is_exported(&name, families) {
                unknown.push(format!("{place}: {name}"));
            }
        }
    }
    for series in sample_series() {
        let name = series["series"]
            .as_str()
            .and_then(|s| s.split('{').next())
            .unwrap_or_default()
            .to_owned();
        if !is_exported(&name, families) {
            unknown.push(format!("sample series: {name}"));
        }
    }
    Ok(unknown)
}

/// What a platform team and an app team set up: a zone, a gateway, a namespace with
/// a signing Secret and a Webhook whose worker the scaler sizes one replica per
/// message. Returns the namespace.
async fn one_webhook(bench: &Bench, client: &kube::Client) -> Result<String> {
    use hookline_crds::{Webhook, WebhookGateway};
    use k8s_openapi::api::core::v1::{Namespace, Secret};
    use kube::api::{Api, Patch, PatchParams, PostParams};

    let id = std::process::id();
    let zone = format!("dash{id}.example.com");
    aws_sdk_route53::Client::new(&bench.aws.sdk_config().await)
        .create_hosted_zone()
        .name(&zone)
        .caller_reference(&zone)
        .send()
        .await
        .with_context(|| format!("creating the hosted zone {zone}"))?;
    let ns = bench.kube.namespace(client, "dash").await?;
    Api::<Namespace>::all(client.clone())
        .patch(
            &ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"hookline.dev/webhooks": "allowed"}}})),
        )
        .await?;
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "stripe-webhook"}, "stringData": {"secret": "whsec_test"}}),
    )?;
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &secret)
        .await?;
    let gateway = format!("dash-{id}");
    let object: WebhookGateway = serde_json::from_value(json!({
        "apiVersion": "hookline.dev/v1alpha1",
        "kind": "WebhookGateway",
        "metadata": {"name": gateway},
        "spec": {
            "hostname": format!("hooks.{zone}"),
            "hostedZone": {"name": zone},
            "allowedNamespaces": {"from": "Selector", "selector": {"matchLabels": {"hookline.dev/webhooks": "allowed"}}}
        }
    }))?;
    Api::<WebhookGateway>::all(client.clone())
        .create(&PostParams::default(), &object)
        .await?;
    let webhook: Webhook = serde_json::from_value(json!({
        "apiVersion": "hookline.dev/v1alpha1",
        "kind": "Webhook",
        "metadata": {"name": "stripe", "namespace": ns},
        "spec": {
            "gatewayRef": {"name": gateway},
            "path": "/payments/stripe",
            "signature": {"preset": "Stripe", "secretRef": {"name": "stripe-webhook"}},
            "worker": {
                "template": {"spec": {"containers": [{"name": "handler", "image": "handler:1"}]}},
                "scaling": {"minReplicas": 0, "maxReplicas": 5, "targetBacklogPerReplica": 1, "scaleDownDelaySeconds": 0}
            }
        }
    }))?;
    Api::<Webhook>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &webhook)
        .await?;
    Ok(ns)
}

/// Plays the kubelet once the operator made the worker Deployment (it reports its
/// pods ready), then queues two messages: the scaler reads the backlog into the
/// Webhook's status and scales the worker up.
async fn give_the_scaler_work(bench: &Bench, client: &kube::Client, ns: &str) -> Result<()> {
    use hookline_crds::Webhook;
    use hookline_tests::util::wait_for;
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Api, Patch, PatchParams};

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    wait_for(
        "the worker Deployment",
        Duration::from_secs(120),
        || async { Ok(deployments.get_opt("stripe-worker").await?.is_some()) },
    )
    .await?;
    deployments
        .patch_status(
            "stripe-worker",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 1}})),
        )
        .await?;
    let webhooks: Api<Webhook> = Api::namespaced(client.clone(), ns);
    let queue_url = || async {
        Ok::<_, anyhow::Error>(
            webhooks
                .get("stripe")
                .await?
                .status
                .and_then(|s| s.queue)
                .map(|q| q.url),
        )
    };
    wait_for(
        "the Webhook's queue in status",
        Duration::from_secs(60),
        || async { Ok(queue_url().await?.is_some()) },
    )
    .await?;
    let queue_url = queue_url().await?.context("no queue URL")?;
    let sqs = aws_sdk_sqs::Client::new(&bench.aws.sdk_config().await);
    for n in 0..2 {
        sqs.send_message()
            .queue_url(&queue_url)
            .message_body(format!("{{\"n\":{n}}}"))
            .message_group_id(format!("group-{n}"))
            .message_deduplication_id(format!("dashboard-{n}"))
            .send()
            .await
            .context("queueing a message")?;
    }
    Ok(())
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_is_one_the_binaries_export() -> Result<()> {
    let (operator, worker) = (
        workspace_binary("hookline-operator")?,
        workspace_binary("hookline-worker")?,
    );
    let dashboard = dashboard()?;
    let bench = Bench::shared().await?;
    let aws = &bench.aws;
    let workdir = bench.workdir();

    // The worker declares all its metrics at start: it drains a real queue of its own.
    let sqs = aws_sdk_sqs::Client::new(&aws.sdk_config().await);
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("hl-dashboard-{}.fifo", std::process::id()))
        .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .context("creating the worker's queue")?
        .queue_url
        .context("CreateQueue returned no URL")?;
    let worker_port = free_port()?;
    let mut worker = Supervised::spawn(
        "hookline-worker",
        &worker,
        ["run"],
        &[
            ("AWS_ENDPOINT_URL", aws.endpoint()),
            ("AWS_REGION", hookline_tests::aws::REGION),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("HOOKLINE_QUEUE_URL", &queue_url),
            ("HOOKLINE_METRICS_ADDR", &format!("127.0.0.1:{worker_port}")),
            ("HOOKLINE_LOG_FORMAT", "text"),
        ],
        workdir.join("dashboard-worker.log"),
    )?;
    serving(&mut worker, worker_port).await?;
    let worker_families = families(&scrape(worker_port).await?);
    drop(worker);
    assert!(
        worker_families.contains_key("hookline_worker_messages_received"),
        "the worker declares no Hookline metric: {worker_families:?}"
    );

    // The operator's series exist once there is something to count: a reconciled
    // gateway and Webhook (AWS calls, reconciles, backlog, replicas) and a rescale.
    let client = bench.kube.client().await?;
    let ns = one_webhook(bench, &client).await?;
    let operator_port = free_port()?;
    let mut operator = Supervised::spawn(
        "hookline-operator",
        &operator,
        std::iter::empty::<&str>(),
        &[
            (
                "KUBECONFIG",
                bench.kube.kubeconfig_path().to_str().context("path")?,
            ),
            ("AWS_ENDPOINT_URL", aws.endpoint()),
            ("AWS_REGION", hookline_tests::aws::REGION),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("HOOKLINE_LEADER_ELECTION", "false"),
            ("HOOKLINE_SCALER_INTERVAL_SECONDS", "1"),
            (
                "HOOKLINE_METRICS_ADDR",
                &format!("127.0.0.1:{operator_port}"),
            ),
            ("HOOKLINE_LOG_FORMAT", "text"),
        ],
        workdir.join("dashboard-operator.log"),
    )?;
    serving(&mut operator, operator_port).await?;
    give_the_scaler_work(bench, &client, &ns).await?;

    let mut unknown = Vec::new();
    let mut exported = BTreeMap::new();
    for _ in 0..120 {
        operator.check_running()?;
        exported = worker_families.clone();
        exported.extend(families(&scrape(operator_port).await?));
        unknown = not_exported(&dashboard, &exported)?;
        if unknown.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        unknown.is_empty(),
        "queried but not exported by hookline-operator or hookline-worker: {unknown:#?}\n\
         exported: {:?}\noperator log: {}",
        exported.keys().collect::<Vec<_>>(),
        operator.log_path().display()
    );
    drop(operator);
    Ok(())
}

/// Series as Prometheus stores them after scraping through the chart's monitors:
/// the operator's per-Webhook series keep the team's `namespace` (ServiceMonitor
/// `honorLabels`), its own series carry the release namespace and pod; the workers'
/// carry their pod's namespace and pod and the PodMonitor's `webhook` label.
fn sample_series() -> Vec<Value> {
    let operator = format!(r#"job="hookline",pod="hookline-0",namespace="{NAMESPACE}""#);
    let team = r#"job="hookline",pod="hookline-0",namespace="payments",webhook="stripe""#;
    let worker = r#"job="payments/hookline-workers",pod="stripe-worker-1",container="hookline-worker",namespace="payments",webhook="stripe""#;
    let mut series = vec![
        (
            format!(r#"hookline_webhook_messages{{{team},queue="main"}}"#),
            "5x20",
        ),
        (
            format!(r#"hookline_webhook_messages{{{team},queue="dead_letter"}}"#),
            "0 0 3x18",
        ),
        (
            format!(r#"hookline_webhook_replicas{{{team},state="desired"}}"#),
            "2x20",
        ),
        (
            format!(r#"hookline_webhook_replicas{{{team},state="ready"}}"#),
            "1x20",
        ),
        (
            format!(r#"hookline_scale_events_total{{{team},direction="up"}}"#),
            "0+1x20",
        ),
        (format!(r#"hookline_operator_leader{{{operator}}}"#), "1x20"),
        (
            format!(r#"hookline_reconciles_in_flight{{{operator},kind="Webhook"}}"#),
            "1x20",
        ),
        (
            format!(r#"hookline_reconciliations_total{{{operator},kind="Webhook",outcome="ok"}}"#),
            "0+2x20",
        ),
        (
            format!(
                r#"hookline_reconcile_duration_seconds_bucket{{{operator},kind="Webhook",le="0.1"}}"#
            ),
            "0+1x20",
        ),
        (
            format!(
                r#"hookline_reconcile_duration_seconds_bucket{{{operator},kind="Webhook",le="+Inf"}}"#
            ),
            "0+2x20",
        ),
        (
            format!(r#"hookline_worker_queue_age_seconds{{{worker}}}"#),
            "30x20",
        ),
        (
            format!(r#"hookline_worker_messages_in_flight{{{worker}}}"#),
            "2x20",
        ),
        (
            format!(r#"hookline_worker_handler_duration_seconds_bucket{{{worker},le="0.05"}}"#),
            "0+3x20",
        ),
        (
            format!(r#"hookline_worker_handler_duration_seconds_bucket{{{worker},le="0.5"}}"#),
            "0+5x20",
        ),
        (
            format!(r#"hookline_worker_handler_duration_seconds_bucket{{{worker},le="+Inf"}}"#),
            "0+5x20",
        ),
        (
            format!(r#"hookline_worker_handler_duration_seconds_sum{{{worker}}}"#),
            "0+1x20",
        ),
        (
            format!(r#"hookline_worker_handler_duration_seconds_count{{{worker}}}"#),
            "0+5x20",
        ),
    ];
    for outcome in ["ok", "throttled", "not_found", "conflict"] {
        series.push((
            format!(
                r#"hookline_aws_calls_total{{{operator},service="sqs",operation="GetQueueAttributes",outcome="{outcome}"}}"#
            ),
            "0+3x20",
        ));
    }
    for counter in [
        "messages_received",
        "messages_handled",
        "messages_retried",
        "messages_failed",
        "verification_failures",
        "messages_given_up",
        "holds_lapsed",
        "extensions_refused",
        "poll_errors",
        "delete_errors",
        "stale_deletes",
        "secret_reload_errors",
    ] {
        series.push((
            format!(r#"hookline_worker_{counter}_total{{{worker}}}"#),
            "0+4x20",
        ));
    }
    series
        .into_iter()
        .map(|(series, values)| json!({ "series": series, "values": values }))
        .collect()
}

/// A Grafana expression as Prometheus would receive it: `$__rate_interval` and
/// the variables filled in (one Webhook chosen).
fn as_sent(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$namespace", "payments")
        .replace("$webhook", "stripe")
}

fn promtool(dir: &Path, args: &[&str], file: &Path) -> Result<String> {
    let output = Command::new(hookline_tests::promtool_binary()?)
        .current_dir(dir)
        .args(args)
        .arg(file)
        .output()
        .context("running promtool")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        bail!("promtool {} failed:\n{text}", args.join(" "));
    }
    Ok(text)
}

#[test]
fn every_query_parses_and_finds_the_series_the_monitors_deliver() -> Result<()> {
    let expressions = expressions(&dashboard()?)?;
    // Failures name queries by number; this says which panel each one is.
    let listing = || {
        expressions
            .iter()
            .enumerate()
            .map(|(n, (place, expr))| format!("query_{n}: {place}: {expr}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    // One recording rule per query: `promtool check rules` parses each one.
    let mut rules = Vec::new();
    let mut tests = Vec::new();
    for (n, (_, expr)) in expressions.iter().enumerate() {
        let record = format!("hookline_dashboard:query_{n}");
        rules.push(json!({ "record": record, "expr": as_sent(expr) }));
        // Data for every query: an empty panel means a wrong metric, label or filter.
        tests.push(json!({
            "expr": format!("count({record}) > bool 0"),
            "eval_time": "15m",
            "exp_samples": [{ "labels": "{}", "value": 1 }],
        }));
    }
    let dir = std::env::temp_dir().join(format!("hookline-dashboard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let rules_file = dir.join("dashboard-rules.json");
    std::fs::write(
        &rules_file,
        serde_json::to_string(&json!({
            "groups": [{ "name": "dashboard", "rules": rules }],
        }))?,
    )?;
    let checked = promtool(&dir, &["check", "rules"], &rules_file).with_context(listing)?;
    assert!(checked.contains("SUCCESS"), "{checked}");

    let spec = dir.join("dashboard-tests.json");
    std::fs::write(
        &spec,
        serde_json::to_string(&json!({
            "rule_files": [rules_file],
            "evaluation_interval": "1m",
            "tests": [{
                "interval": "1m",
                "input_series": sample_series(),
                "promql_expr_test": tests,
            }],
        }))?,
    )?;
    let tested = promtool(&dir, &["test", "rules"], &spec).with_context(listing)?;
    assert!(tested.contains("SUCCESS"), "{tested}");
    Ok(())
}
