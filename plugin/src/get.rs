//! `kubectl hookline get`: one line per Webhook, read live from the cluster and AWS.

use anyhow::{Context as _, Result};
use futures::StreamExt as _;
use hookline_crds::{QueueRef, Webhook};
use kube::api::{Api, ListParams};
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use crate::context::{Ctx, depth, name, queue_name};
use crate::table;

/// Webhooks looked at in parallel: each costs two to four AWS reads.
const PARALLEL: usize = 8;

pub async fn run(ctx: &Ctx, all_namespaces: bool, out: &mut impl Write) -> Result<ExitCode> {
    let api: Api<Webhook> = if all_namespaces {
        Api::all(ctx.kube.clone())
    } else {
        Api::namespaced(ctx.kube.clone(), &ctx.namespace)
    };
    let webhooks = api
        .list(&ListParams::default())
        .await
        .context("listing Webhooks")?
        .items;
    if webhooks.is_empty() {
        let scope = if all_namespaces {
            "any namespace".to_owned()
        } else {
            format!("namespace {} (-A looks in all)", ctx.namespace)
        };
        eprintln!("No Webhooks in {scope}.");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Row> = futures::stream::iter(webhooks.iter().map(|w| row(ctx, w)))
        .buffered(PARALLEL)
        .collect()
        .await;
    let mut headers = vec![
        "NAME",
        "READY",
        "URL",
        "BACKLOG",
        "OLDEST",
        "DLQ",
        "LAST ERROR",
    ];
    if all_namespaces {
        headers.insert(0, "NAMESPACE");
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut cells = vec![
                r.name.clone(),
                r.ready.clone(),
                r.url.clone(),
                r.backlog.clone(),
                r.oldest.clone(),
                r.dead_letters.clone(),
                table::preview(&r.last_error, 80),
            ];
            if all_namespaces {
                cells.insert(0, r.namespace.clone());
            }
            cells
        })
        .collect();
    table::write(out, &headers, &cells)?;
    // AWS failures are the same for every row as a rule; each is said once.
    let mut problems: Vec<&String> = rows.iter().flat_map(|r| &r.problems).collect();
    problems.sort();
    problems.dedup();
    for problem in problems {
        eprintln!("warning: {problem}");
        if let Some(hint) = crate::hints::aws_hint(problem) {
            eprintln!("  hint: {hint}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One Webhook's line; `?` where AWS did not answer (the reason is in `problems`).
struct Row {
    namespace: String,
    name: String,
    ready: String,
    url: String,
    backlog: String,
    oldest: String,
    dead_letters: String,
    last_error: String,
    problems: Vec<String>,
}

async fn row(ctx: &Ctx, webhook: &Webhook) -> Row {
    let status = webhook.status.clone().unwrap_or_default();
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
    let mut row = Row {
        namespace: webhook.metadata.namespace.clone().unwrap_or_default(),
        name: name(webhook).to_owned(),
        ready: match ready {
            Some(c) if c.status == "True" => "True".to_owned(),
            Some(c) => format!("{} ({})", c.status, c.reason),
            None => "Unknown".to_owned(),
        },
        url: status.url.clone().unwrap_or_else(|| "-".to_owned()),
        backlog: "-".to_owned(),
        oldest: "-".to_owned(),
        dead_letters: "-".to_owned(),
        last_error: match ready {
            Some(c) if c.status != "True" => c.message.clone(),
            _ => "-".to_owned(),
        },
        problems: Vec::new(),
    };
    let (Some(queue), Some(dead_letter)) = (&status.queue, &status.dead_letter_queue) else {
        return row;
    };
    let sqs = ctx.sqs(queue);
    match depth(&sqs, queue).await {
        Ok(0) => row.backlog = "0".to_owned(),
        Ok(n) => {
            row.backlog = n.to_string();
            match oldest(ctx, queue).await {
                Ok(Some(age)) => row.oldest = table::age(age),
                Ok(None) => {}
                Err(e) => {
                    row.oldest = "?".to_owned();
                    row.problems.push(e);
                }
            }
        }
        Err(e) => {
            row.backlog = "?".to_owned();
            row.problems.push(e);
        }
    }
    match depth(&sqs, dead_letter).await {
        Ok(n) => {
            row.dead_letters = n.to_string();
            if n > 0 && row.last_error == "-" {
                match latest_reason(&sqs, dead_letter).await {
                    Ok(reason) => row.last_error = reason,
                    Err(e) => row.problems.push(e),
                }
            }
        }
        Err(e) => {
            row.dead_letters = "?".to_owned();
            row.problems.push(e);
        }
    }
    row
}

/// SQS publishes the age of a queue's oldest message only to CloudWatch
/// (`AWS/SQS` `ApproximateAgeOfOldestMessage`, one point a minute while the queue
/// is active); the newest point of the last 15 minutes, or `None` without one.
async fn oldest(ctx: &Ctx, queue: &QueueRef) -> Result<Option<Duration>, String> {
    use aws_sdk_cloudwatch::primitives::DateTime;
    use aws_sdk_cloudwatch::types::{Dimension, Statistic};
    let now = SystemTime::now();
    let points = ctx
        .cloudwatch(queue)
        .get_metric_statistics()
        .namespace("AWS/SQS")
        .metric_name("ApproximateAgeOfOldestMessage")
        .dimensions(
            Dimension::builder()
                .name("QueueName")
                .value(queue_name(queue))
                .build(),
        )
        .start_time(DateTime::from(now - Duration::from_secs(15 * 60)))
        .end_time(DateTime::from(now))
        .period(60)
        .statistics(Statistic::Maximum)
        .send()
        .await
        .map_err(|e| {
            format!(
                "reading the age of the oldest message of {} from CloudWatch: {}",
                queue_name(queue),
                aws_sdk_cloudwatch::error::DisplayErrorContext(e)
            )
        })?
        .datapoints
        .unwrap_or_default();
    Ok(points
        .iter()
        .filter_map(|p| Some((p.timestamp?, p.maximum?)))
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, seconds)| Duration::from_secs_f64(seconds.max(0.0))))
}

/// The reason of the newest dead letter among the first a look sees.
async fn latest_reason(
    sqs: &aws_sdk_sqs::Client,
    dead_letter: &QueueRef,
) -> Result<String, String> {
    let look = hookline_worker::dead_letters::look(sqs, &dead_letter.url, 10).await?;
    Ok(look
        .letters
        .iter()
        .max_by_key(|l| l.dead_since)
        .map(crate::dlq::reason)
        .unwrap_or_else(|| "-".to_owned()))
}
