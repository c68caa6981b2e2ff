//! The docs agree with the code: every Hookline resource written in the README, the
//! docs, the chart README and the examples is accepted by the CRD schema (server-side
//! dry-run with strict field validation on the bench API server); every flag and
//! variable the docs name exists in the binaries' `--help`, with the default they
//! state; the chart sets only variables the operator reads; and every condition
//! reason in `crds/src/lib.rs` has a row in docs/operator.md saying what to do.
//!
//! Needs `target/debug/hookline-operator` and `hookline-worker`, which
//! `cargo test --workspace` builds.

use anyhow::{Context, Result, bail};
use hookline_crds::{Webhook, WebhookGateway};
use hookline_tests::stack::workspace_binary;
use hookline_tests::{Bench, repo_root};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;

/// Markdown files whose YAML and flags users copy.
const DOCS: &[&str] = &[
    "README.md",
    "examples/README.md",
    "charts/hookline/README.md",
    "docs/architecture.md",
    "docs/install-eks.md",
    "docs/on-call.md",
    "docs/operations.md",
    "docs/operator.md",
    "docs/worker.md",
];

/// Flags of other tools (cargo, helm, kubectl, the AWS CLI, external-dns, the demo's `make demo
/// ARGS=…`) the docs use.
const OTHER_TOOLS_FLAGS: &[&str] = &[
    "--all",
    "--approve",
    "--assume-role-policy-document",
    "--caller-reference",
    "--cascade",
    "--cluster",
    "--cluster-name",
    "--clusterrole",
    "--create-namespace",
    "--dns-name",
    "--domain-filter",
    "--dry-run",
    "--emulator",
    "--exclude-domains",
    "--from-file",
    "--from-literal",
    "--help",
    "--keep",
    "--kube-version",
    "--name",
    "--namespace",
    "--no-hooks",
    "--node",
    "--output",
    "--password-stdin",
    "--patch-operations",
    "--platform",
    "--policy",
    "--policy-arn",
    "--policy-document",
    "--policy-name",
    "--push",
    "--query",
    "--region",
    "--release",
    "--repository-name",
    "--rest-api-id",
    "--reuse-values",
    "--role-arn",
    "--role-name",
    "--server-side",
    "--service-account",
    "--serviceaccount",
    "--set",
    "--target",
    "--test",
    "--timeout",
    "--txt-owner-id",
    "--txt-prefix",
    "--type",
    "--username",
    "--wait",
];

fn read(relative: &str) -> Result<String> {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// The bodies of the ```yaml blocks of a Markdown file.
fn yaml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        let fence = line.trim_start();
        match &mut current {
            None if fence.starts_with("```yaml") || fence.starts_with("```yml") => {
                current = Some(String::new());
            }
            Some(block) if fence.starts_with("```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// The Hookline resources among the YAML documents of `text` (`---`-separated).
fn hookline_resources(text: &str, source: &str) -> Result<Vec<Value>> {
    let mut resources = Vec::new();
    for (n, document) in text.split("\n---").enumerate() {
        if document.trim().is_empty() {
            continue;
        }
        let value: Value = serde_saphyr::from_str(document)
            .with_context(|| format!("{source}: YAML document {n} does not parse"))?;
        let is_ours = value["apiVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("hookline.dev/"));
        if is_ours {
            resources.push(value);
        }
    }
    Ok(resources)
}

fn help(binary: &Path, args: &[&str]) -> Result<String> {
    let output = std::process::Command::new(binary)
        .args(args)
        .arg("--help")
        .output()
        .with_context(|| format!("running {} --help", binary.display()))?;
    if !output.status.success() {
        bail!(
            "{} {args:?} --help failed: {}",
            binary.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// One option of a `--help` text: its environment variable and default, if any.
#[derive(Debug, Default, Clone)]
struct HelpOption {
    env: Option<String>,
    default: Option<String>,
}

/// The options of a clap `--help` text, by flag.
fn options(help: &str) -> std::collections::BTreeMap<String, HelpOption> {
    let mut options = std::collections::BTreeMap::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        let trimmed = line.trim_start();
        if let Some(flag) = trimmed
            .split([' ', ',', '='])
            .find(|w| w.starts_with("--"))
            .filter(|_| trimmed.starts_with('-'))
        {
            current = Some(flag.to_owned());
            options.insert(flag.to_owned(), HelpOption::default());
        }
        let Some(flag) = &current else { continue };
        let Some(option) = options.get_mut(flag) else {
            continue;
        };
        if let Some(env) = bracketed(line, "[env: ") {
            option.env = Some(env.trim_end_matches('=').to_owned());
        }
        if let Some(default) = bracketed(line, "[default: ") {
            option.default = Some(default.to_owned());
        }
    }
    options
}

fn bracketed<'a>(line: &'a str, opening: &str) -> Option<&'a str> {
    let start = line.find(opening)? + opening.len();
    let end = line[start..].find(']')? + start;
    let value = &line[start..end];
    // `[env: X=value]` when X is set in this process's environment.
    Some(value.split_once('=').map_or(value, |(name, _)| name))
}

/// Words of `text` that look like `--long-flags`.
fn flags_in(text: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(found) = text[i..].find("--") {
        let start = i + found;
        let before = start.checked_sub(1).map(|b| bytes[b]);
        let mut end = start + 2;
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'-') {
            end += 1;
        }
        let word = text[start..end].trim_end_matches('-');
        if word.len() > 3
            && bytes.get(start + 2).is_some_and(u8::is_ascii_lowercase)
            && !before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            flags.insert(word.to_owned());
        }
        i = end.max(start + 2);
    }
    flags
}

/// Words of `text` that look like `HOOKLINE_SETTINGS` (a trailing `_*` is kept as `_`).
fn hookline_variables(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (start, _) in text.match_indices("HOOKLINE_") {
        let rest = &text[start..];
        let end = rest
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        names.insert(rest[..end].to_owned());
    }
    names
}

#[tokio::test]
async fn documented_resources_pass_the_crd_schema() -> Result<()> {
    let mut sources: Vec<(String, String)> = Vec::new();
    for doc in DOCS {
        for (n, block) in yaml_blocks(&read(doc)?).into_iter().enumerate() {
            sources.push((format!("{doc} yaml block {n}"), block));
        }
    }
    let examples = repo_root().join("examples");
    for entry in std::fs::read_dir(&examples)? {
        let path = entry?.path().join("webhook.yaml");
        if path.is_file() {
            let name = path
                .strip_prefix(repo_root())
                .unwrap_or(&path)
                .display()
                .to_string();
            sources.push((name, std::fs::read_to_string(&path)?));
        }
    }
    for sample in [
        "crds/samples/webhook.yaml",
        "crds/samples/webhookgateway.yaml",
    ] {
        sources.push((sample.to_owned(), read(sample)?));
    }

    let bench = Bench::shared().await?;
    let client = bench.kube.client().await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let dry_run = PatchParams::apply("hookline-docs-test")
        .dry_run()
        .validation_strict();
    let mut checked = 0;
    let mut refused = Vec::new();
    for (source, text) in &sources {
        for resource in hookline_resources(text, source)? {
            let kind = resource["kind"].as_str().unwrap_or_default().to_owned();
            let name = resource["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let api: Api<DynamicObject> = match kind.as_str() {
                "Webhook" => {
                    // Namespaced as written: the namespace must exist for the dry-run.
                    let namespace = resource["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or("default")
                        .to_owned();
                    if namespaces.get_opt(&namespace).await?.is_none() {
                        let object: Namespace =
                            serde_json::from_value(json!({"metadata": {"name": namespace}}))?;
                        namespaces.create(&PostParams::default(), &object).await?;
                    }
                    Api::namespaced_with(
                        client.clone(),
                        &namespace,
                        &ApiResource::erase::<Webhook>(&()),
                    )
                }
                "WebhookGateway" => {
                    Api::all_with(client.clone(), &ApiResource::erase::<WebhookGateway>(&()))
                }
                other => bail!("{source}: unknown Hookline kind {other:?}"),
            };
            match api.patch(&name, &dry_run, &Patch::Apply(&resource)).await {
                Ok(_) => checked += 1,
                Err(e) => refused.push(format!("{source}: {kind} {name}: {e}")),
            }
        }
    }
    assert!(
        refused.is_empty(),
        "documented resources the API server refuses:\n{}",
        refused.join("\n")
    );
    // README (1), the four examples and the two samples at least.
    assert!(checked >= 7, "only {checked} resources found in the docs");
    Ok(())
}

/// Rows of a Markdown settings table: `| flags | env | default | …`.
fn settings_rows(markdown: &str) -> Vec<Vec<String>> {
    markdown
        .lines()
        .filter(|line| line.starts_with("| `--"))
        .map(|line| {
            line.trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().to_owned())
                .collect()
        })
        .collect()
}

#[test]
fn documented_flags_are_the_binaries_flags() -> Result<()> {
    let operator_help = help(&workspace_binary("hookline-operator")?, &[])?;
    let worker = workspace_binary("hookline-worker")?;
    let worker_help = format!(
        "{}\n{}\n{}",
        help(&worker, &[])?,
        help(&worker, &["run"])?,
        help(&worker, &["redrive"])?
    );
    let operator = options(&operator_help);
    let worker_options = options(&worker_help);
    let plugin = workspace_binary("kubectl-hookline")?;
    let mut plugin_help = String::new();
    for command in [
        &["get"][..],
        &["dlq", "list"],
        &["dlq", "show"],
        &["dlq", "redrive"],
        &["dlq", "purge"],
        &["send-test"],
    ] {
        plugin_help.push_str(&help(&plugin, command)?);
    }
    let plugin_options = options(&plugin_help);
    let mut wrong = Vec::new();

    for (doc, binary_options) in [
        ("docs/operator.md", &operator),
        ("docs/worker.md", &worker_options),
    ] {
        let rows = settings_rows(&read(doc)?);
        assert!(rows.len() >= 10, "{doc}: no settings table found");
        for row in rows {
            let flags = flags_in(&row[0]);
            let envs: Vec<String> = row
                .get(1)
                .map(|cell| {
                    cell.split(['`', ',', ' ', '('])
                        .filter(|w| w.chars().next().is_some_and(|c| c.is_ascii_uppercase()))
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            let default = row.get(2).cloned().unwrap_or_default();
            for flag in &flags {
                let Some(option) = binary_options.get(flag) else {
                    wrong.push(format!("{doc}: {flag} is not a flag of the binary"));
                    continue;
                };
                if let Some(env) = &option.env {
                    let prefixes = envs.iter().any(|e| {
                        e == env || (e.ends_with("_*") && env.starts_with(e.trim_end_matches('*')))
                    });
                    if !prefixes {
                        wrong.push(format!(
                            "{doc}: {flag} reads {env}, the table says {envs:?}"
                        ));
                    }
                }
                if let Some(expected) = &option.default
                    && !default.contains(expected.as_str())
                {
                    wrong.push(format!(
                        "{doc}: {flag} defaults to {expected}, the table says {default:?}"
                    ));
                }
            }
        }
    }

    // Anywhere in the docs: a --flag is one of ours or a known tool's, and a
    // HOOKLINE_ variable is one a binary reads.
    let ours: BTreeSet<&String> = operator
        .keys()
        .chain(worker_options.keys())
        .chain(plugin_options.keys())
        .collect();
    let known_vars: BTreeSet<String> = operator
        .values()
        .chain(worker_options.values())
        .filter_map(|o| o.env.clone())
        .collect();
    for doc in DOCS {
        let text = read(doc)?;
        for flag in flags_in(&text) {
            if !ours.contains(&flag) && !OTHER_TOOLS_FLAGS.contains(&flag.as_str()) {
                wrong.push(format!("{doc}: {flag} is no flag of hookline-operator, hookline-worker, kubectl-hookline or a tool the docs use"));
            }
        }
        for var in hookline_variables(&text) {
            let known = if var.ends_with('_') {
                known_vars.iter().any(|k| k.starts_with(&var))
            } else {
                known_vars.contains(&var)
            };
            if !known {
                wrong.push(format!("{doc}: {var} is read by neither binary"));
            }
        }
    }

    // The worker sidecar's metrics port, as the operator writes it, is the one the
    // docs give (the binary's own default differs).
    let desired = read("operator/src/desired.rs")?;
    let port = desired
        .split("pub const WORKER_METRICS_PORT: i32 = ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .context("operator/src/desired.rs has no WORKER_METRICS_PORT")?;
    for (doc, expected) in [
        ("docs/worker.md", format!("`0.0.0.0:{port}`")),
        ("charts/hookline/README.md", format!("port {port}")),
    ] {
        if !read(doc)?.contains(&expected) {
            wrong.push(format!(
                "{doc}: does not give the worker sidecar's metrics port ({expected})"
            ));
        }
    }

    // The chart sets only what the operator reads.
    let deployment = read("charts/hookline/templates/deployment.yaml")?;
    let operator_vars: BTreeSet<String> = operator.values().filter_map(|o| o.env.clone()).collect();
    for line in deployment.lines() {
        let Some(name) = line.trim().strip_prefix("- name: ") else {
            continue;
        };
        let ours = ["HOOKLINE_", "AWS_", "POD_"]
            .iter()
            .any(|prefix| name.starts_with(prefix));
        if ours && !operator_vars.contains(name) {
            wrong.push(format!(
                "charts/hookline/templates/deployment.yaml sets {name}, which the operator does not read"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    Ok(())
}

#[test]
fn every_condition_reason_says_what_to_do() -> Result<()> {
    let source = read("crds/src/lib.rs")?;
    let reasons_module = source
        .split("pub mod reasons {")
        .nth(1)
        .and_then(|rest| rest.split("\n}").next())
        .context("crds/src/lib.rs has no `mod reasons`")?;
    let reasons: Vec<&str> = reasons_module
        .lines()
        .filter_map(|line| line.trim().strip_prefix("pub const "))
        .filter_map(|decl| decl.split('"').nth(1))
        .collect();
    assert!(reasons.len() >= 20, "only {reasons:?} found");

    let operator_md = read("docs/operator.md")?;
    let table = operator_md
        .split("## Conditions and what to do")
        .nth(1)
        .context("docs/operator.md has no section \"Conditions and what to do\"")?;
    let rows: Vec<Vec<&str>> = table
        .lines()
        .take_while(|line| !line.starts_with("## "))
        .filter(|line| line.starts_with('|') && !line.starts_with("| ---"))
        .map(|line| line.trim_matches('|').split('|').map(str::trim).collect())
        .collect();
    let mut missing = Vec::new();
    for reason in &reasons {
        let quoted = format!("`{reason}`");
        let with_condition = format!(" {reason}`");
        let documented = rows.iter().any(|row| {
            row.len() >= 3
                && (row[0].contains(&quoted) || row[0].contains(&with_condition))
                && !row[2].is_empty()
        });
        if !documented {
            missing.push(*reason);
        }
    }
    assert!(
        missing.is_empty(),
        "reasons without a row (reason | meaning | what to do) in docs/operator.md's conditions table: {missing:?}"
    );
    Ok(())
}

/// A `kubectl create secret generic` the docs tell a team to run.
#[derive(Debug)]
struct DocumentedSecret {
    source: String,
    namespace: Option<String>,
    name: String,
    keys: Vec<String>,
}

fn documented_secrets(text: &str, source: &str) -> Vec<DocumentedSecret> {
    let mut secrets = Vec::new();
    // A shell command continued with `\` is one command.
    let joined = text.replace("\\\n", " ");
    for line in joined.lines() {
        let words: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || c == '`')
            .filter(|w| !w.is_empty())
            .collect();
        let Some(at) = words
            .windows(3)
            .position(|w| w[0] == "create" && w[1] == "secret" && w[2] == "generic")
        else {
            continue;
        };
        let Some(name) = words.get(at + 3) else {
            continue;
        };
        let namespace = words
            .windows(2)
            .find(|w| w[0] == "-n" || w[0] == "--namespace")
            .map(|w| w[1].to_owned());
        let keys = words
            .iter()
            .filter_map(|w| {
                w.strip_prefix("--from-literal=")
                    .or_else(|| w.strip_prefix("--from-file="))
            })
            .filter_map(|kv| kv.split('=').next())
            .map(str::to_owned)
            .collect();
        secrets.push(DocumentedSecret {
            source: source.to_owned(),
            namespace,
            name: (*name).to_owned(),
            keys,
        });
    }
    secrets
}

/// Every documented Webhook and every documented `kubectl create secret` agree on the
/// signing Secret's keys (without `secretRef.keys` the worker reads the key `secret`).
#[test]
fn documented_secrets_have_the_keys_webhooks_read() -> Result<()> {
    let mut texts: Vec<(String, String)> = Vec::new();
    for doc in DOCS {
        texts.push(((*doc).to_owned(), read(doc)?));
    }
    for entry in std::fs::read_dir(repo_root().join("examples"))? {
        let path = entry?.path().join("webhook.yaml");
        if path.is_file() {
            let name = format!(
                "examples/{}/webhook.yaml",
                path.parent()
                    .and_then(Path::file_name)
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
            );
            texts.push((name, std::fs::read_to_string(&path)?));
        }
    }
    let mut secrets = Vec::new();
    let mut webhooks = Vec::new();
    for (source, text) in &texts {
        secrets.extend(documented_secrets(text, source));
        let blocks = if source.ends_with(".md") {
            yaml_blocks(text)
        } else {
            vec![text.clone()]
        };
        for block in blocks {
            for resource in hookline_resources(&block, source)? {
                if resource["kind"] == "Webhook" && resource["spec"]["signature"].is_object() {
                    webhooks.push((source.clone(), resource));
                }
            }
        }
    }
    assert!(
        !secrets.is_empty(),
        "no `kubectl create secret` in the docs"
    );
    let mut wrong = Vec::new();
    for secret in &secrets {
        for (source, webhook) in &webhooks {
            let reference = &webhook["spec"]["signature"]["secretRef"];
            let same_namespace = secret.namespace.as_deref().is_none_or(|ns| {
                ns.starts_with('<') || webhook["metadata"]["namespace"].as_str() == Some(ns)
            });
            if reference["name"].as_str() != Some(secret.name.as_str()) || !same_namespace {
                continue;
            }
            let keys: Vec<String> = match reference["keys"].as_array() {
                Some(keys) => keys
                    .iter()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect(),
                None => vec!["secret".to_owned()],
            };
            for key in &keys {
                if !secret.keys.contains(key) {
                    wrong.push(format!(
                        "{source}: Webhook {} reads key {key:?} of Secret {}, but {} creates it with {:?}",
                        webhook["metadata"]["name"], secret.name, secret.source, secret.keys
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    Ok(())
}

/// The examples run as written on a real cluster: the worker pod runs as non-root, so
/// each handler container names a non-root user; a script the command starts from
/// a mounted directory comes from a ConfigMap volume that the docs say how to create
/// from a file in the repository.
#[test]
fn examples_run_as_written() -> Result<()> {
    let readme = read("examples/README.md")?;
    let mut wrong = Vec::new();
    let mut checked = 0;
    for entry in std::fs::read_dir(repo_root().join("examples"))? {
        let path = entry?.path().join("webhook.yaml");
        if !path.is_file() {
            continue;
        }
        let source = path.display().to_string();
        let text = std::fs::read_to_string(&path)?;
        for webhook in hookline_resources(&text, &source)? {
            checked += 1;
            let pod = &webhook["spec"]["worker"]["template"]["spec"];
            let volumes = pod["volumes"].as_array().cloned().unwrap_or_default();
            for container in pod["containers"].as_array().into_iter().flatten() {
                let name = container["name"].as_str().unwrap_or_default();
                let user = container["securityContext"]["runAsUser"]
                    .as_i64()
                    .or_else(|| pod["securityContext"]["runAsUser"].as_i64());
                if user.is_none_or(|u| u <= 0) {
                    wrong.push(format!(
                        "{source}: container {name} sets no non-root runAsUser, and the worker pod runs as non-root"
                    ));
                }
                let mounts = container["volumeMounts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                for arg in container["command"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .filter(|a| a.starts_with('/') && a.ends_with(".py"))
                {
                    let mount = mounts.iter().find(|m| {
                        m["mountPath"].as_str().is_some_and(|p| {
                            arg.starts_with(&format!("{}/", p.trim_end_matches('/')))
                        })
                    });
                    let Some(mount) = mount else {
                        wrong.push(format!(
                            "{source}: container {name} runs {arg}, which no volume mounts (python:3.12-slim has no such file)"
                        ));
                        continue;
                    };
                    let config_map = volumes
                        .iter()
                        .find(|v| v["name"] == mount["name"])
                        .and_then(|v| v["configMap"]["name"].as_str());
                    let Some(config_map) = config_map else {
                        wrong.push(format!(
                            "{source}: {arg} is mounted from no ConfigMap volume"
                        ));
                        continue;
                    };
                    let file = arg.rsplit('/').next().unwrap_or_default();
                    let command =
                        format!("create configmap {config_map} --from-file=examples/{file}");
                    if !readme.contains(&command)
                        || !repo_root().join("examples").join(file).is_file()
                    {
                        wrong.push(format!(
                            "{source}: examples/README.md does not say `kubectl … {command}`, or examples/{file} is missing"
                        ));
                    }
                }
            }
        }
    }
    assert!(checked >= 4, "only {checked} examples found");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    Ok(())
}

/// The `sed` commands of docs/install-eks.md fill every placeholder of the chart's
/// policy files: run as written (with sample values) they give valid JSON with
/// none left.
#[test]
fn install_eks_fills_every_policy_placeholder() -> Result<()> {
    let guide = read("docs/install-eks.md")?;
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in guide.lines() {
        let line = line.trim();
        if current.is_empty() && !line.starts_with("sed ") {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                commands.push(std::mem::take(&mut current));
            }
        }
    }
    assert!(commands.len() >= 3, "sed commands found: {commands:?}");
    let scratch = hookline_tests::Workdir::create()?;
    let files = repo_root().join("charts/hookline/files");
    let placeholders = [
        "PARTITION",
        "REGION",
        "ACCOUNT",
        "ZONE_ID",
        "PREFIX",
        "NAMESPACE",
        "SERVICE_",
        "OIDC_PROVIDER",
        "HOSTNAME",
    ];
    // A placeholder added to a policy file must be added above (and to the guide).
    let not_placeholders = [
        "AAAA", "CNAME", "TXT", "GET", "PUT", "POST", "PATCH", "DELETE",
    ];
    for entry in std::fs::read_dir(&files)? {
        let path = entry?.path();
        let text = std::fs::read_to_string(&path)?;
        let capitals = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.len() >= 3 && w.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
        for word in capitals {
            assert!(
                not_placeholders.contains(&word)
                    || placeholders.iter().any(|p| word.starts_with(p)),
                "{} has a placeholder {word} this test does not know",
                path.display()
            );
        }
    }
    let mut wrong = Vec::new();
    for command in &commands {
        let command = command.replace("charts/hookline/files/", &format!("{}/", files.display()));
        let output = std::process::Command::new("bash")
            .arg("-c")
            .arg(&command)
            .current_dir(scratch.path())
            .envs([
                ("PARTITION", "aws"),
                ("REGION", "eu-west-1"),
                ("ACCOUNT", "123456789012"),
                ("ZONE_ID", "Z0123456789ABC"),
                ("PREFIX", "hl"),
                ("HOST", "hooks.example.com"),
                (
                    "OIDC_PROVIDER",
                    "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE",
                ),
            ])
            .output()
            .context("running bash")?;
        if !output.status.success() {
            wrong.push(format!(
                "{command}: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
            continue;
        }
        let Some(target) = command.rsplit("> ").next().map(str::trim) else {
            continue;
        };
        let rendered = std::fs::read_to_string(scratch.path().join(target))
            .with_context(|| format!("{command} wrote no {target}"))?;
        if let Err(e) = serde_json::from_str::<Value>(&rendered) {
            wrong.push(format!("{target} is not JSON: {e}"));
        }
        for placeholder in placeholders {
            if rendered.contains(placeholder) {
                wrong.push(format!("{target} still holds {placeholder}: {rendered}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    Ok(())
}
