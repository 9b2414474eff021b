//! `tracking verify` and `tracking rebuild`: the projections checked
//! against, or recomputed from, the journal (the source of truth).
//!
//! Verify never writes. A projection that is behind the journal (the
//! service was killed before it caught up; it catches up at the next start)
//! is reported and compared up to its checkpoint, so a lag is not mistaken
//! for a difference.

use crate::config::StoreArgs;
use crate::store::projections::Recount;
use crate::store::{EventStore, ProjectionKind, ProjectionMode, StatsQuery};
use anyhow::Context;
use chrono::NaiveDate;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

const CHUNK: usize = 8192;
/// Differences printed per projection (all are counted).
const SHOWN: usize = 20;

/// What verification found.
#[derive(Debug, Default)]
pub struct Report {
    pub records: u64,
    pub events: u64,
    pub differences: Vec<String>,
    pub notes: Vec<String>,
}

fn progress(what: &str, n: u64, head: Option<u64>) {
    if n.is_multiple_of(100_000) || Some(n) == head {
        let mut err = std::io::stderr();
        let _ = match head {
            Some(head) => write!(err, "\r{what}: {n}/{head} journal records"),
            None => write!(err, "\r{what}: {n} journal records"),
        };
        let _ = err.flush();
    }
}

/// Compares every projection with its recomputation from the journal.
pub async fn check(store: &Arc<dyn EventStore>) -> anyhow::Result<Report> {
    if store.projection_mode() == ProjectionMode::Folded {
        return check_folded(store).await;
    }
    let head = store.head().await?;
    let mut report = Report::default();
    let mut checkpoints = BTreeMap::new();
    for kind in ProjectionKind::ALL {
        let cp = store.checkpoint(kind).await?;
        if cp < head {
            report.notes.push(format!(
                "projection {} is {} records behind the journal (it catches up when the service starts); compared up to its checkpoint {cp}",
                kind.as_str(),
                head - cp
            ));
        }
        if cp > head {
            report.differences.push(format!(
                "projection {} checkpoint {cp} is beyond the journal head {head}",
                kind.as_str()
            ));
        }
        checkpoints.insert(kind.as_str(), (kind, cp.min(head)));
    }
    // One recount per distinct checkpoint (usually just one).
    let mut recounts: BTreeMap<u64, Recount> = checkpoints
        .values()
        .map(|(_, cp)| (*cp, Recount::default()))
        .collect();
    let mut full = Recount::default();
    let mut after = 0;
    loop {
        let records = store.scan(after, CHUNK).await?;
        let Some(last) = records.last() else { break };
        after = last.pos();
        for r in &records {
            full.add(r);
            for (cp, recount) in recounts.iter_mut() {
                if r.pos() <= *cp {
                    recount.add(r);
                }
            }
            report.records += 1;
            progress("verifying", report.records, Some(head));
        }
    }
    eprintln!();
    report.events = full.events() as u64;
    report.differences.extend(full.journal_violations());

    for (kind, cp) in checkpoints.values() {
        let Some(expected) = recounts.get(cp) else {
            continue;
        };
        compare(store, expected, [*kind], &mut report).await?;
    }
    Ok(report)
}

/// A store that folds its projections behind the journal: the users'
/// statistics (kept with each commit) equal the recount of the whole
/// journal; the daily and status statistics equal the recount of each
/// partition's records up to its follower's checkpoint (a note says how
/// far behind a follower is; run it with the workers stopped or drained).
async fn check_folded(store: &Arc<dyn EventStore>) -> anyhow::Result<Report> {
    let Some(fold) = store.folding() else {
        anyhow::bail!("the store does not fold its projections");
    };
    let mut report = Report::default();
    let mut full = Recount::unordered();
    let mut folded = Recount::unordered();
    // A user's journal is what its head covers: an event above it is a
    // commit cut short (its command was not acknowledged and comes again).
    let heads: std::collections::HashMap<String, u64> = store
        .all_user_stats()
        .await?
        .into_iter()
        .map(|u| (u.user_id, u.last_seq))
        .collect();
    let mut cut_short = 0u64;
    for p in fold.partitions().await? {
        let cp = fold.checkpoint(p).await?;
        let mut after = None;
        let mut behind = 0u64;
        loop {
            let page = fold
                .read(p, after, crate::log::Position::MAX, CHUNK)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.position);
            for r in &page {
                if let crate::store::JournalRecord::Event(e) = &r.record {
                    if heads.get(&e.event.user_id).is_none_or(|s| e.event.seq > *s) {
                        cut_short += 1;
                        continue;
                    }
                }
                full.add(&r.record);
                if cp.position.is_some_and(|c| r.position <= c) {
                    folded.add(&r.record);
                } else {
                    behind += 1;
                }
                report.records += 1;
                progress("verifying", report.records, None);
            }
        }
        if behind > 0 {
            report.notes.push(format!(
                "partition {p}: the follower is {behind} records behind the journal (it catches up while a worker runs); its statistics are compared up to its checkpoint"
            ));
        }
    }
    eprintln!();
    if cut_short > 0 {
        report.notes.push(format!(
            "{cut_short} journal events above their user's head: commits cut short (a worker stopped between the journal and the user's rows); their commands are delivered again and finish them"
        ));
    }
    report.events = full.events() as u64;
    report.differences.extend(full.journal_violations());
    compare(store, &full, [ProjectionKind::UserStats], &mut report).await?;
    compare(
        store,
        &folded,
        [ProjectionKind::DailyStats, ProjectionKind::Status],
        &mut report,
    )
    .await?;
    Ok(report)
}

/// Compares projections with a recount, adding differences to the report.
async fn compare(
    store: &Arc<dyn EventStore>,
    expected: &Recount,
    kinds: impl IntoIterator<Item = ProjectionKind>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let all_days = StatsQuery {
        from: NaiveDate::MIN,
        to: NaiveDate::MAX,
        campaign_id: None,
        interaction_type: None,
    };
    for kind in kinds {
        let mut diffs = Vec::new();
        match kind {
            ProjectionKind::DailyStats => {
                let stored = store.daily_stats(&all_days).await?;
                diff_sets(&mut diffs, "daily_stats", expected.daily(), stored);
            }
            ProjectionKind::Status => {
                let stored = store.status_stats(NaiveDate::MIN, NaiveDate::MAX).await?;
                diff_sets(&mut diffs, "status", expected.status(), stored);
            }
            ProjectionKind::UserStats => {
                let mut stored = store.all_user_stats().await?;
                stored.sort_by(|a, b| a.user_id.cmp(&b.user_id));
                let mut want: Vec<_> = expected.users().values().cloned().collect();
                want.sort_by(|a, b| a.user_id.cmp(&b.user_id));
                let key = |u: &crate::store::UserStats| format!("{u:?}");
                diff_sets(
                    &mut diffs,
                    "user_stats",
                    want.iter().map(key).collect(),
                    stored.iter().map(key).collect(),
                );
            }
        }
        let total = diffs.len();
        report.differences.extend(diffs.into_iter().take(SHOWN));
        if total > SHOWN {
            report.differences.push(format!(
                "... and {} more differences in {}",
                total - SHOWN,
                kind.as_str()
            ));
        }
    }
    Ok(())
}

fn diff_sets<T: std::fmt::Debug + Ord>(
    out: &mut Vec<String>,
    name: &str,
    mut expected: Vec<T>,
    mut stored: Vec<T>,
) {
    expected.sort();
    stored.sort();
    let (mut i, mut k) = (0, 0);
    while i < expected.len() || k < stored.len() {
        match (expected.get(i), stored.get(k)) {
            (Some(e), Some(s)) if e == s => {
                i += 1;
                k += 1;
            }
            (Some(e), Some(s)) if e < s => {
                out.push(format!("{name}: missing or different: expected {e:?}"));
                i += 1;
            }
            (Some(_), Some(s)) | (None, Some(s)) => {
                out.push(format!("{name}: unexpected row {s:?}"));
                k += 1;
            }
            (Some(e), None) => {
                out.push(format!("{name}: missing row {e:?}"));
                i += 1;
            }
            (None, None) => break,
        }
    }
}

pub(crate) async fn open(args: &StoreArgs) -> anyhow::Result<Arc<dyn EventStore>> {
    match args.scylla()? {
        Some(mut cfg) => {
            cfg.stats_cache_ttl = std::time::Duration::ZERO;
            crate::app::open_configured_store(&args.data_dir, Some(&cfg)).await
        }
        None => {
            // A check must not pass on a wrong path: never create a store here.
            let dir = args.data_dir.join("store");
            if !dir.is_dir() {
                anyhow::bail!(
                    "no event store at {}: is --data-dir the service's data dir? \
                     (verify and rebuild read an existing store, they never create one)",
                    dir.display()
                );
            }
            crate::app::open_store(&args.data_dir)
                .context("is the service still running on this data dir?")
        }
    }
}

/// `tracking verify`: prints the report; an error when anything differs.
pub async fn verify(args: &StoreArgs) -> anyhow::Result<()> {
    let store = open(args).await?;
    let report = check(&store).await?;
    for n in &report.notes {
        println!("note: {n}");
    }
    for d in &report.differences {
        println!("DIFF {d}");
    }
    println!(
        "verified {} journal records ({} events): {} differences",
        report.records,
        report.events,
        report.differences.len()
    );
    if report.differences.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} differences between the projections and the journal",
            report.differences.len()
        )
    }
}

/// Recomputes every projection from the journal, with a progress line.
pub async fn rebuild_store(store: &Arc<dyn EventStore>) -> anyhow::Result<u64> {
    if let Some(fold) = store.folding() {
        let parts = fold.partitions().await?;
        for p in &parts {
            fold.refold(*p).await?;
        }
        eprintln!(
            "{} partition(s) of the journal will be folded again from the start by the workers' followers",
            parts.len()
        );
        return Ok(0);
    }
    let head = store.head().await?;
    let mut applied = 0;
    for kind in ProjectionKind::ALL {
        store.reset(kind).await?;
        let mut after = 0;
        let mut n = 0;
        loop {
            let records = store.scan(after, CHUNK).await?;
            let Some(last) = records.last() else { break };
            after = last.pos();
            store.apply(kind, &records).await?;
            n += records.len() as u64;
            let mut err = std::io::stderr();
            let _ = write!(
                err,
                "\rrebuilding {}: {n}/{head} journal records",
                kind.as_str()
            );
            let _ = err.flush();
        }
        eprintln!();
        applied += n;
    }
    store.flush().await?;
    Ok(applied)
}

/// `tracking rebuild`.
pub async fn rebuild(args: &StoreArgs) -> anyhow::Result<()> {
    let store = open(args).await?;
    rebuild_store(&store).await?;
    println!(
        "rebuilt {} projections from the journal",
        ProjectionKind::ALL.len()
    );
    Ok(())
}

/// `tracking schema apply|status`.
pub async fn schema(args: &crate::config::SchemaArgs) -> anyhow::Result<()> {
    use crate::config::SchemaAction;
    use crate::store::scylladb::schema;
    let cfg = args.action.store().scylla()?.context(
        "`tracking schema` needs the ScyllaDB contact points: --scylla-nodes or SCYLLA_NODES",
    )?;
    let session = crate::store::scylladb::session(&cfg).await?;
    let ks = &cfg.keyspace;
    match &args.action {
        SchemaAction::Apply { replication, .. } => {
            let applied =
                schema::apply(&session, ks, replication, &mut |line| eprintln!("{line}")).await?;
            println!(
                "keyspace {ks}: schema version {} ({} migration(s) applied now)",
                schema::current(),
                applied.len()
            );
        }
        SchemaAction::Status { .. } => {
            let found = schema::applied_version(&session, ks).await?;
            println!(
                "keyspace {ks}: schema version {found}; this build needs {}",
                schema::current()
            );
            schema::check(&session, ks).await?;
        }
    }
    Ok(())
}
