//! `tracking check`: the fault suite's judge.
//!
//! Compares the manifest a run wrote (`tracking loadgen --manifest`: every
//! message the broker acknowledged, in send order) with the event store and
//! the dead-letter topic, and reports `lost`, `duplicated`, `unexpected`,
//! `dead-lettered` (and the dead letters that should not be there), per-user
//! sequence gaps and order, plus the projection recount of `tracking
//! verify`. With `--wait` it re-reads the store until nothing is lost (the
//! workers may still be catching up after a fault) or the time is up.

mod analysis;
mod dlq;

pub use analysis::{analyse, DeadLetter, Findings, Seen};

use crate::config::StoreArgs;
use crate::store::JournalRecord;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The manifest written by `tracking loadgen --manifest`.
    #[arg(long)]
    pub manifest: PathBuf,
    /// Read the dead-letter topic of this Pulsar broker too.
    #[arg(long)]
    pub pulsar_url: Option<String>,
    /// The commands topic (the dead-letter topic defaults to `<topic>-DLQ`).
    #[arg(long, default_value = "persistent://public/default/commands.tracking")]
    pub topic: String,
    /// The dead-letter topic, if not `<topic>-DLQ`.
    #[arg(long)]
    pub dlq_topic: Option<String>,
    /// Re-read the store until nothing is lost, for at most this long.
    #[arg(long, default_value = "0s", value_parser = crate::config::parse_duration)]
    pub wait: Duration,
    /// Where to write the findings as JSON.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// Runs the check; an error (exit 1) unless it passed.
pub async fn check(args: &CheckArgs) -> anyhow::Result<()> {
    let sent = crate::loadgen::read_manifest(&args.manifest)?;
    anyhow::ensure!(
        !sent.is_empty(),
        "{} holds no messages",
        args.manifest.display()
    );
    let store = crate::verify::open(&args.store).await?;
    let deadline = Instant::now() + args.wait;
    let (mut findings, mut journal);
    loop {
        journal = Vec::new();
        store
            .visit_journal(&mut |r| {
                if let JournalRecord::Event(e) = r {
                    let event = e.into_event();
                    journal.push(Seen {
                        user: event.user_id,
                        seq: event.seq,
                        id: event.interaction_id,
                    });
                }
            })
            .await
            .context("reading the journal")?;
        findings = analyse(&sent, &journal, None);
        if findings.lost == 0 || Instant::now() >= deadline {
            break;
        }
        eprintln!(
            "check: {} of {} events stored, {} missing; waiting",
            findings.events, findings.expected, findings.lost
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let dlq = match &args.pulsar_url {
        Some(url) => {
            let topic = args
                .dlq_topic
                .clone()
                .unwrap_or_else(|| format!("{}-DLQ", args.topic));
            Some(dlq::read_all(url, &topic).await?)
        }
        None => None,
    };
    findings = analyse(&sent, &journal, dlq.as_deref());
    let verified = crate::verify::check(&store).await?;
    findings.verify_differences = verified.differences.len() as u64;
    for d in verified.differences.iter().take(5) {
        findings.examples.push(format!("verify: {d}"));
    }
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_vec_pretty(&findings)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    for e in &findings.examples {
        println!("  {e}");
    }
    println!("{}", findings.line());
    if findings.passed() {
        Ok(())
    } else {
        anyhow::bail!("the check failed (see above)")
    }
}
