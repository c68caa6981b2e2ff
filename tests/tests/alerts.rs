//! The chart's alerting rules, evaluated by Prometheus's own `promtool test rules`
//! on sample series shaped as the operator and the workers export them (through the
//! chart's ServiceMonitor with `honorLabels` and its PodMonitor's `webhook` label):
//! each alert fires when it should, with the labels a team's routing needs, and not
//! when it should not. Every alert links a runbook section that exists.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

const NAMESPACE: &str = "hookline-system";
/// The Kubernetes version the chart is rendered for (the bench's).
const KUBE_VERSION: &str = "1.37.2";

/// The chart's rule groups as rendered with the full example values.
fn rendered_rule_groups() -> Result<Value> {
    let root = hookline_tests::repo_root();
    let helm = hookline_tests::helm_binary()?;
    let output = Command::new(&helm)
        .args(["template", "hookline"])
        .arg(root.join("charts/hookline"))
        .args([
            "--namespace",
            NAMESPACE,
            "--kube-version",
            KUBE_VERSION,
            "-f",
        ])
        .arg(root.join("charts/hookline/ci/full-values.yaml"))
        .args(["--show-only", "templates/prometheusrule.yaml"])
        .output()
        .context("running helm template")?;
    if !output.status.success() {
        bail!(
            "helm template failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let rule: Value = serde_saphyr::from_str(&String::from_utf8(output.stdout)?)
        .context("parsing the rendered PrometheusRule")?;
    Ok(rule["spec"]["groups"].clone())
}

fn promtool_test(dir: &Path, groups: &Value, tests: Value) -> Result<String> {
    // Expressions, `for` and labels are what this checks; annotations are checked
    // by `every_alert_links_a_runbook_section_that_exists` (promtool would want
    // every expanded annotation spelled out in each case).
    let mut groups = groups.clone();
    for group in groups.as_array_mut().context("groups")? {
        for rule in group["rules"].as_array_mut().context("rules")? {
            if let Some(rule) = rule.as_object_mut() {
                rule.remove("annotations");
            }
        }
    }
    let rules = dir.join("rules.json");
    std::fs::write(&rules, serde_json::to_string(&json!({ "groups": groups }))?)?;
    let spec = dir.join("tests.json");
    std::fs::write(
        &spec,
        serde_json::to_string(&json!({
            "rule_files": [rules],
            "evaluation_interval": "1m",
            "tests": tests,
        }))?,
    )?;
    let output = Command::new(hookline_tests::promtool_binary()?)
        .args(["test", "rules"])
        .arg(&spec)
        .output()
        .context("running promtool")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        bail!("promtool test rules failed:\n{text}");
    }
    Ok(text)
}

fn alert(name: &str, at: &str, labels: Value) -> Value {
    json!({ "eval_time": at, "alertname": name, "exp_alerts": [{ "exp_labels": labels }] })
}

fn silent(name: &str, at: &str) -> Value {
    json!({ "eval_time": at, "alertname": name, "exp_alerts": [] })
}

#[test]
fn the_alerts_fire_on_the_series_hookline_exports() -> Result<()> {
    let groups = rendered_rule_groups()?;
    let dir = scratch_dir("rules")?;
    let tests = json!([
        {
            // The operator's per-Webhook series keep the team's namespace (honorLabels).
            "interval": "1m",
            "input_series": [
                { "series": "hookline_webhook_messages{namespace=\"payments\",webhook=\"stripe\",queue=\"dead_letter\",job=\"hookline\"}", "values": "0 0 3x20" },
                { "series": "hookline_webhook_messages{namespace=\"payments\",webhook=\"github\",queue=\"dead_letter\",job=\"hookline\"}", "values": "0x22" },
                { "series": format!("hookline_operator_leader{{namespace=\"{NAMESPACE}\",pod=\"hookline-0\"}}"), "values": "1x22" },
                { "series": format!("hookline_operator_leader{{namespace=\"{NAMESPACE}\",pod=\"hookline-1\"}}"), "values": "0x22" },
                { "series": "hookline_reconciliations_total{kind=\"Webhook\",outcome=\"blocked\"}", "values": "0+2x30" },
            ],
            "alert_rule_test": [
                alert("HooklineDeadLetters", "10m", json!({ "severity": "critical", "namespace": "payments", "webhook": "stripe" })),
                silent("HooklineDeadLetters", "4m"),
                silent("HooklineNoLeader", "15m"),
                silent("HooklineReconcileErrors", "25m"),
            ],
        },
        {
            // Every operator replica gone: no leader series at all.
            "interval": "1m",
            "input_series": [
                { "series": "hookline_webhook_messages{namespace=\"payments\",webhook=\"stripe\",queue=\"main\"}", "values": "0x10" },
            ],
            "alert_rule_test": [
                alert("HooklineNoLeader", "7m", json!({ "severity": "critical", "namespace": NAMESPACE })),
            ],
        },
        {
            // Worker series, labelled with the Webhook by the PodMonitor.
            "interval": "1m",
            "input_series": [
                { "series": "hookline_worker_poll_errors_total{namespace=\"payments\",webhook=\"stripe\",pod=\"stripe-worker-1\"}", "values": "0+6x40" },
                { "series": "hookline_worker_messages_received_total{namespace=\"payments\",webhook=\"stripe\",pod=\"stripe-worker-1\"}", "values": "7x40" },
                { "series": "hookline_worker_poll_errors_total{namespace=\"shipping\",webhook=\"carrier\",pod=\"carrier-worker-1\"}", "values": "0x40" },
                { "series": "hookline_worker_messages_received_total{namespace=\"shipping\",webhook=\"carrier\",pod=\"carrier-worker-1\"}", "values": "0x40" },
                { "series": "hookline_worker_queue_age_seconds{namespace=\"shipping\",webhook=\"carrier\",pod=\"carrier-worker-1\"}", "values": "30+30x40" },
                { "series": "hookline_reconciliations_total{kind=\"WebhookGateway\",outcome=\"aws\"}", "values": "0+1x40" },
            ],
            "alert_rule_test": [
                alert("HooklineWorkerCannotPoll", "20m", json!({ "severity": "critical", "namespace": "payments", "webhook": "stripe", "pod": "stripe-worker-1" })),
                silent("HooklineWorkerCannotPoll", "8m"),
                // 120 s is the full values' backlogAgeSeconds: passed at 4 min, for 10 min.
                alert("HooklineBacklogOld", "16m", json!({ "severity": "critical", "namespace": "shipping", "webhook": "carrier", "pod": "carrier-worker-1" })),
                alert("HooklineReconcileErrors", "30m", json!({ "severity": "critical", "kind": "WebhookGateway", "outcome": "aws" })),
            ],
        },
    ]);
    let out = promtool_test(&dir, &groups, tests)?;
    assert!(out.contains("SUCCESS"), "{out}");
    Ok(())
}

#[test]
fn every_alert_links_a_runbook_section_that_exists() -> Result<()> {
    let groups = rendered_rule_groups()?;
    let docs = std::fs::read_to_string(hookline_tests::repo_root().join("docs/operations.md"))?;
    let anchors: Vec<String> = docs
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let rules = groups[0]["rules"].as_array().context("rules")?;
    assert!(rules.len() >= 7, "{rules:?}");
    for rule in rules {
        let name = rule["alert"].as_str().context("alert name")?;
        let url = rule["annotations"]["runbook_url"]
            .as_str()
            .with_context(|| format!("{name} has no runbook_url"))?;
        let (base, anchor) = url
            .split_once('#')
            .with_context(|| format!("{name}: {url}"))?;
        assert!(base.ends_with("/docs/operations.md"), "{name}: {url}");
        assert_eq!(anchor, name.to_ascii_lowercase(), "{name}: {url}");
        assert!(
            anchors.iter().any(|a| a == anchor),
            "{name}: docs/operations.md has no '### {name}' section"
        );
    }
    Ok(())
}

fn scratch_dir(name: &str) -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("hookline-alerts-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
