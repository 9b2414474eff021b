//! Feeding a command log (a Pulsar topic) in send order, with a manifest.
//!
//! One task appends the generator's batches one after another, so the
//! broker receives every user's commands in the order they were generated
//! (a keyed producer: the key is the user). A failed append (broker down,
//! restarting) is retried with a back-off until it succeeds or the run
//! gives up: resending is safe because commands carry their interaction id.
//! Each acknowledged message is written to the manifest (JSON lines, in
//! send order) for `tracking check`, which compares it with the store and
//! the dead-letter topic.
//!
//! The in-process service's log is fed what the HTTP ingest would append
//! ([`ingest_record`]).

use super::probe::Shared;
use super::workload::Kind;
use crate::log::{CommandLog, NewRecord};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The record the HTTP ingest would append for `body`: on a log that
/// holds decoded commands (the embedded one), the command decoded once,
/// here, as the ingest does ([`NewRecord::decided`]); otherwise, and for a
/// payload that does not decode (poison, refused by the pipeline), the
/// body as it is. `id` is the generator's id of the command (the message
/// identity, as the ingest's generated id is).
pub(super) fn ingest_record(
    log: &dyn CommandLog,
    id: &str,
    user_id: String,
    body: Vec<u8>,
) -> NewRecord {
    use crate::domain::codec::{decode_command, Command, MessageMeta};
    if log.holds_decided_commands() {
        let meta = MessageMeta {
            key: Some(&user_id),
            properties: None,
            identity: id,
            published_at: chrono::Utc::now(),
        };
        if let Ok(Command::Track(cmd)) = decode_command(&body, &meta) {
            if let Ok(record) = NewRecord::decided(&cmd) {
                return record;
            }
        }
    }
    NewRecord {
        key: user_id,
        payload: body,
        properties: Default::default(),
    }
}

/// One line of the manifest: a message the broker acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// The interaction id (or, for poison, the generator's id property).
    pub id: String,
    pub user: String,
    /// `valid`, `duplicate` (an earlier valid id resent), `invalid` (a rule
    /// violation) or `poison` (undecodable).
    pub kind: String,
}

/// A batch of the schedule: records, their intended send times, manifest lines.
pub(super) struct Batch {
    pub records: Vec<NewRecord>,
    pub intended: Vec<Instant>,
    pub sent: Vec<Sent>,
}

impl Batch {
    pub fn new() -> Self {
        Self {
            records: Vec::new(),
            intended: Vec::new(),
            sent: Vec::new(),
        }
    }
    pub fn push(&mut self, record: NewRecord, at: Instant, id: String, kind: Kind) {
        self.sent.push(Sent {
            id,
            user: record.key.clone(),
            kind: kind.as_str().to_string(),
        });
        self.records.push(record);
        self.intended.push(at);
    }
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// Starts the ordered sender; the manifest (if any) is written as batches
/// are acknowledged. Dropping the sender side ends the task once the queue
/// is empty; `shared.stop` makes it give up on a failing append.
pub(super) fn spawn(
    log: Arc<dyn CommandLog>,
    shared: Arc<Shared>,
    manifest: Option<&Path>,
) -> anyhow::Result<(mpsc::UnboundedSender<Batch>, tokio::task::JoinHandle<()>)> {
    let mut out = match manifest {
        Some(p) => {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            Some(BufWriter::new(
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
            ))
        }
        None => None,
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<Batch>();
    let task = tokio::spawn(async move {
        while let Some(batch) = rx.recv().await {
            let k = batch.records.len() as u64;
            let mut backoff = Duration::from_millis(100);
            loop {
                match log.append(batch.records.clone()).await {
                    Ok(_) => {
                        shared.ack(k, &batch.intended);
                        if let Some(w) = out.as_mut() {
                            for s in &batch.sent {
                                if let Ok(line) = serde_json::to_string(s) {
                                    let _ = writeln!(w, "{line}");
                                }
                            }
                        }
                        break;
                    }
                    Err(e) if !shared.stop.load(Relaxed) => {
                        shared.retries.fetch_add(k, Relaxed);
                        tracing::debug!(error = %e, "append failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                    Err(_) => {
                        shared.errors.fetch_add(k, Relaxed);
                        break;
                    }
                }
            }
            shared.outstanding.fetch_sub(k, Relaxed);
        }
        if let Some(mut w) = out {
            let _ = w.flush();
        }
        let _ = log.close().await;
    });
    Ok((tx, task))
}

/// Reads a manifest written by [`spawn`].
pub fn read_manifest(path: &Path) -> anyhow::Result<Vec<Sent>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| {
                format!("{}: line {} is not a manifest entry", path.display(), i + 1)
            })
        })
        .collect()
}
