//! `kubectl hookline dlq`: a Webhook's dead letters, looked at, moved back or purged.

use anyhow::{Context as _, Result, bail};
use aws_sdk_sqs::error::DisplayErrorContext;
use hookline_worker::dead_letters::{self, DeadLetter};
use hookline_worker::{RedriveReport, Selection};
use std::io::{IsTerminal as _, Write};
use std::process::ExitCode;
use std::time::UNIX_EPOCH;

use crate::cli::Dlq;
use crate::context::Ctx;
use crate::table;

/// A redrive longer than this shows a progress bar (on a terminal).
const PROGRESS_FROM: u64 = 20;

pub async fn run(ctx: &Ctx, command: Dlq, out: &mut impl Write) -> Result<ExitCode> {
    match command {
        Dlq::List { webhook, limit } => list(ctx, &webhook, limit, out).await,
        Dlq::Show {
            webhook,
            message_id,
        } => show(ctx, &webhook, &message_id, out).await,
        Dlq::Redrive {
            webhook,
            groups,
            ids,
        } => {
            let selection = if !groups.is_empty() {
                Selection::Groups(groups.into_iter().collect())
            } else if !ids.is_empty() {
                Selection::Ids(ids.into_iter().collect())
            } else {
                Selection::All
            };
            redrive(ctx, &webhook, &selection, out).await
        }
        Dlq::Purge { webhook, yes } => purge(ctx, &webhook, yes, out).await,
    }
}

/// Why a dead letter is there: the worker's words, or SQS's move.
pub fn reason(letter: &DeadLetter) -> String {
    letter.reason.clone().unwrap_or_else(|| {
        "moved by SQS after maxReceiveCount deliveries (the worker recorded no reason: it was not running, or stopped mid-delivery)".to_owned()
    })
}

async fn list(ctx: &Ctx, webhook: &str, limit: usize, out: &mut impl Write) -> Result<ExitCode> {
    let webhook = ctx.webhook(webhook).await?;
    let queues = ctx.queues(&webhook)?;
    let look = dead_letters::look(
        &ctx.sqs(&queues.dead_letter),
        &queues.dead_letter.url,
        limit,
    )
    .await
    .map_err(anyhow::Error::msg)?;
    if look.letters.is_empty() {
        writeln!(out, "The dead-letter queue is empty.")?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = look
        .letters
        .iter()
        .map(|l| {
            vec![
                l.message_id.clone(),
                l.group_id.clone(),
                table::since(l.dead_since),
                l.receive_count.to_string(),
                table::preview(&reason(l), 60),
                table::preview(&l.body, 40),
            ]
        })
        .collect();
    table::write(
        out,
        &["ID", "GROUP", "DEAD FOR", "RECEIVES", "REASON", "BODY"],
        &rows,
    )?;
    let shown = look.letters.len() as u64;
    if look.depth > shown {
        writeln!(
            out,
            "\n{shown} of about {} dead letters shown: SQS hands out at most ten of a group at a time, oldest first (--limit shows more groups; a redrive reaches the rest).",
            look.depth
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(ctx: &Ctx, webhook: &str, id: &str, out: &mut impl Write) -> Result<ExitCode> {
    let webhook = ctx.webhook(webhook).await?;
    let queues = ctx.queues(&webhook)?;
    let look = dead_letters::look(&ctx.sqs(&queues.dead_letter), &queues.dead_letter.url, 1000)
        .await
        .map_err(anyhow::Error::msg)?;
    let Some(letter) = look.letters.iter().find(|l| l.message_id == id) else {
        bail!(
            "no dead letter {id} among the {} SQS hands out now (the first ten of each group); `kubectl hookline dlq list` shows their ids",
            look.letters.len()
        );
    };
    let millis = |t: Option<std::time::SystemTime>| {
        t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or_else(
                || "-".to_owned(),
                |d| format!("{} (epoch ms)", d.as_millis()),
            )
    };
    writeln!(out, "Message ID:  {}", letter.message_id)?;
    writeln!(out, "Group:       {}", letter.group_id)?;
    writeln!(out, "Queued at:   {}", millis(letter.queued_at))?;
    writeln!(
        out,
        "Dead since:  {} ({} ago)",
        millis(letter.dead_since),
        table::since(letter.dead_since)
    )?;
    writeln!(out, "Receives:    {}", letter.receive_count)?;
    writeln!(out, "Reason:      {}", reason(letter))?;
    writeln!(out, "Headers:")?;
    for (name, value) in &letter.headers {
        writeln!(out, "  {name}: {value}")?;
    }
    writeln!(out, "Body ({} bytes):", letter.body.len())?;
    writeln!(out, "{}", letter.body)?;
    Ok(ExitCode::SUCCESS)
}

async fn redrive(
    ctx: &Ctx,
    webhook: &str,
    selection: &Selection,
    out: &mut impl Write,
) -> Result<ExitCode> {
    let webhook = ctx.webhook(webhook).await?;
    let queues = ctx.queues(&webhook)?;
    let sqs = ctx.sqs(&queues.dead_letter);
    let terminal = std::io::stderr().is_terminal();
    let mut progress = |report: &RedriveReport, depth: u64| {
        if terminal && depth >= PROGRESS_FROM {
            eprint!("\r{}", bar(report.moved, depth));
        }
    };
    let report = hookline_worker::redrive_selected(
        &sqs,
        &queues.dead_letter.url,
        &queues.queue.url,
        selection,
        &mut progress,
    )
    .await;
    if terminal {
        eprintln!();
    }
    let report = report.context("redriving")?;
    writeln!(
        out,
        "Moved {} dead letter(s) back to the queue, in order per group.",
        report.moved
    )?;
    if report.skipped > 0 {
        writeln!(
            out,
            "Left {} of other groups or ids in place.",
            report.skipped
        )?;
    }
    if report.left > 0 {
        writeln!(
            out,
            "Left {} that failed again while the redrive ran; run it again once they are fixed.",
            report.left
        )?;
    }
    if !report.not_found.is_empty() {
        writeln!(
            out,
            "Not found: {}. SQS hands out a group's dead letters oldest first, ten at a time: redrive the group (--group) to reach one further back.",
            report.not_found.join(", ")
        )?;
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `[#########...........]  45/100`
fn bar(done: u64, total: u64) -> String {
    const WIDTH: u64 = 30;
    let filled = (done.min(total) * WIDTH)
        .checked_div(total)
        .unwrap_or(WIDTH);
    format!(
        "[{}{}] {done}/{total}",
        "#".repeat(filled as usize),
        ".".repeat((WIDTH - filled) as usize)
    )
}

async fn purge(ctx: &Ctx, webhook: &str, yes: bool, out: &mut impl Write) -> Result<ExitCode> {
    let webhook = ctx.webhook(webhook).await?;
    let queues = ctx.queues(&webhook)?;
    let sqs = ctx.sqs(&queues.dead_letter);
    let look = dead_letters::look(&sqs, &queues.dead_letter.url, 0)
        .await
        .map_err(anyhow::Error::msg)?;
    if !yes {
        bail!(
            "the dead-letter queue is not empty: it holds about {} message(s), and a purge deletes them for good. Look at them with `kubectl hookline dlq list`, move them back with `dlq redrive`, or run again with --yes",
            look.depth
        );
    }
    sqs.purge_queue()
        .queue_url(&queues.dead_letter.url)
        .send()
        .await
        .map_err(|e| {
            let text = DisplayErrorContext(e).to_string();
            if text.contains("PurgeQueueInProgress") {
                anyhow::anyhow!("SQS allows one purge per queue every 60 seconds and one is running: try again in a minute ({text})")
            } else {
                anyhow::anyhow!("purging the dead-letter queue: {text}")
            }
        })?;
    writeln!(
        out,
        "Purged the dead-letter queue (about {} message(s)); SQS may take up to 60 seconds to finish.",
        look.depth
    )?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_with_progress() {
        assert_eq!(bar(0, 10), format!("[{}] 0/10", ".".repeat(30)));
        assert_eq!(
            bar(5, 10),
            format!("[{}{}] 5/10", "#".repeat(15), ".".repeat(15))
        );
        assert_eq!(bar(12, 10), format!("[{}] 12/10", "#".repeat(30)));
        assert_eq!(bar(0, 0), format!("[{}] 0/0", "#".repeat(30)));
    }
}
