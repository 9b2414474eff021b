//! The run: schedule, send, tail the journal, report progress, drain, check.

use super::feed::{self, Batch};
use super::http::Conn;
use super::machine::{Build, Machine};
use super::probe::{
    median, progress, rss_mib, Hists, Observer, Pending, Shared, Timeline, OBSERVER_KEY,
};
use super::reads;
use super::report::{check_problems, summary, write_report, Latency, Report};
use super::workload::{Kind, Workload};
use super::{due, target_rate, LoadgenArgs};
use crate::actors::PipelineConfig;
use crate::app::{self, Running, ServiceConfig};
use crate::log::NewRecord;
use crate::store::StatsQuery;
use anyhow::Context;
use chrono::{Duration as Days, Utc};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

enum Target {
    InProcess {
        svc: Running,
        created: Option<std::path::PathBuf>,
    },
    Http(SocketAddr),
    /// A Pulsar topic fed in order; counts read from a worker, if named.
    Log {
        read: Option<SocketAddr>,
    },
}

pub async fn run(args: &LoadgenArgs) -> anyhow::Result<Report> {
    let stages = args.stages();
    let total: f64 = stages.iter().map(|s| s.duration.as_secs_f64()).sum();
    let mut pulsar_log = None;
    let target = match (args.http_addr()?, &args.pulsar_url) {
        (read, Some(url)) => {
            let mut o = crate::log::pulsar::PulsarOptions::new(url.clone());
            o.commands_topic = args.topic.clone();
            let log = crate::log::pulsar::PulsarLog::connect(o, Default::default())
                .await
                .with_context(|| format!("connecting to {url}"))?;
            pulsar_log = Some(log as Arc<dyn crate::log::CommandLog>);
            Target::Log { read }
        }
        (Some(addr), None) => Target::Http(addr),
        (None, None) => {
            let (dir, created) = match &args.data_dir {
                Some(d) => (d.clone(), None),
                None => {
                    let d = std::env::temp_dir().join(format!(
                        "tracking-loadgen-{}-{}",
                        std::process::id(),
                        Utc::now().timestamp_millis()
                    ));
                    (d.clone(), Some(d))
                }
            };
            let config = ServiceConfig {
                partitions: args.partitions,
                shutdown_grace: Duration::from_secs(60),
                pipeline: PipelineConfig {
                    max_live_aggregates: args.max_live_aggregates,
                    ..PipelineConfig::default()
                },
                log_settings: app::LogSettings {
                    sync_interval: args.log_sync_interval,
                    ..app::LogSettings::default()
                },
                ..ServiceConfig::local(dir)
            };
            Target::InProcess {
                svc: app::start(config)
                    .await
                    .context("starting the in-process service")?,
                created,
            }
        }
    };
    let read_addr = match &target {
        Target::Http(a) => Some(*a),
        Target::InProcess { svc, .. } => Some(svc.addr),
        Target::Log { read } => *read,
    };
    let campaign = format!("lg{}x{:x}", args.seed, Utc::now().timestamp_millis());
    let mut workload = Workload::new(
        args.seed,
        args.users,
        &args.distribution,
        args.mix.clone(),
        args.invalid,
        args.duplicates,
        campaign.clone(),
    )
    .with_poison(args.poison);
    // Only the in-process target follows the journal (an observer of the
    // committed records): end-to-end latency and the pending sends.
    let in_process = matches!(target, Target::InProcess { .. });
    let shared = Arc::new(Shared {
        hists: Mutex::new(Hists::new()),
        pending: Mutex::new(Pending::new(workload.id_prefix())),
        ..Shared::default()
    });
    let mode = match &target {
        Target::Http(a) => format!("http {a}"),
        Target::InProcess { .. } => "in-process (embedded log fed directly)".to_string(),
        Target::Log { .. } => format!("pulsar {} (keyed producer, in order)", args.topic),
    };
    eprintln!(
        "loadgen: {mode}; {} stage(s), {total:.0} s; campaign {campaign}",
        stages.len()
    );

    // Senders.
    let (tx, rx) = tokio::sync::mpsc::channel::<(Vec<u8>, Instant)>(args.max_outstanding.max(1));
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut tasks = Vec::new();
    if let Target::Http(addr) = &target {
        for _ in 0..args.connections.max(1) {
            let (rx, shared, addr) = (rx.clone(), shared.clone(), *addr);
            tasks.push(tokio::spawn(async move {
                let mut conn = Conn::new(addr);
                loop {
                    let job = rx.lock().await.recv().await;
                    let Some((body, intended)) = job else { return };
                    match conn.request("POST", "/tracking/interactions", &body).await {
                        Ok((202 | 400, _)) => shared.ack(1, &[intended]),
                        _ => {
                            shared.errors.fetch_add(1, Relaxed);
                        }
                    }
                    shared.outstanding.fetch_sub(1, Relaxed);
                }
            }));
        }
    }
    let mut ordered = None;
    if let Some(log) = pulsar_log {
        let (tx, task) = feed::spawn(log, shared.clone(), args.manifest.as_deref())?;
        ordered = Some(tx);
        tasks.push(task);
    }
    // End-to-end probe (in-process): an observer of committed records.
    let mut observer = None;
    if let Target::InProcess { svc, .. } = &target {
        let (actor, _) = ractor::Actor::spawn(None, Observer, shared.clone())
            .await
            .context("starting the latency observer")?;
        svc.subscribers.subscribe(OBSERVER_KEY, actor.get_derived());
        observer = Some((actor, svc.subscribers.clone()));
    }
    // Reads under load, on a thread of their own (see `reads`).
    let mut reader = None;
    if let (true, Some(read_addr)) = (args.read_rate > 0.0, read_addr) {
        let today = Utc::now().date_naive();
        let path = format!(
            "/tracking/stats/daily?from={}&to={}&campaign_id={campaign}",
            today - Days::days(1),
            today + Days::days(1)
        );
        reader = Some(
            reads::spawn(read_addr, path, args.read_rate, shared.clone())
                .context("starting the read probe")?,
        );
    }

    // The schedule.
    let (mut valid, mut invalid, mut duplicates, mut poison) = (0u64, 0u64, 0u64, 0u64);
    let mut peak_rss = 0.0f64;
    let start = Instant::now();
    let started = std::time::SystemTime::now();
    let started_at =
        chrono::DateTime::<Utc>::from(started).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut timeline = Timeline::new(start);
    let mut generated = 0u64;
    let mut last_tick = start;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let append_slots = Arc::new(tokio::sync::Semaphore::new(256));
    loop {
        tick.tick().await;
        let now = Instant::now();
        let t = now.duration_since(start).as_secs_f64();
        let (cum, _) = due(&stages, t.min(total));
        let n = (cum as u64).saturating_sub(generated);
        if n > 0 {
            let mut records = Vec::with_capacity(n as usize);
            let mut intended = Vec::with_capacity(n as usize);
            let mut batch = Batch::new();
            for i in 0..n {
                let at = last_tick
                    + now
                        .duration_since(last_tick)
                        .mul_f64((i + 1) as f64 / n as f64);
                let occurred = Utc::now();
                let g = workload.next(occurred);
                match g.kind {
                    Kind::Valid => valid += 1,
                    Kind::Invalid => invalid += 1,
                    Kind::Duplicate => duplicates += 1,
                    Kind::Poison => poison += 1,
                }
                if shared.outstanding.load(Relaxed) as usize >= args.max_outstanding {
                    shared.dropped.fetch_add(1, Relaxed);
                    if g.kind == Kind::Valid {
                        valid -= 1;
                    }
                    continue;
                }
                shared.outstanding.fetch_add(1, Relaxed);
                shared.sent.fetch_add(1, Relaxed);
                // Only where the observer removes them again.
                if g.kind == Kind::Valid && in_process {
                    if let Ok(mut p) = shared.pending.lock() {
                        p.insert(g.seq, at);
                    }
                }
                match &target {
                    Target::Http(_) => {
                        if tx.try_send((g.body, at)).is_err() {
                            shared.dropped.fetch_add(1, Relaxed);
                            shared.outstanding.fetch_sub(1, Relaxed);
                        }
                    }
                    Target::InProcess { svc, .. } => {
                        records.push(feed::ingest_record(
                            &*svc.log,
                            &g.interaction_id,
                            g.user_id,
                            g.body,
                        ));
                        intended.push(at);
                    }
                    Target::Log { .. } => {
                        let record = NewRecord {
                            key: g.user_id,
                            payload: g.body,
                            properties: g.properties,
                        };
                        batch.push(record, at, g.interaction_id, g.kind);
                    }
                }
            }
            generated += n;
            if let (Some(tx), false) = (&ordered, batch.is_empty()) {
                let k = batch.records.len() as u64;
                if tx.send(batch).is_err() {
                    shared.errors.fetch_add(k, Relaxed);
                    shared.outstanding.fetch_sub(k, Relaxed);
                }
            }
            if let (Target::InProcess { svc, .. }, false) = (&target, records.is_empty()) {
                let (log, shared) = (svc.log.clone(), shared.clone());
                let slot = append_slots.clone().acquire_owned().await;
                tokio::spawn(async move {
                    let _slot = slot;
                    let k = records.len() as u64;
                    match log.append(records).await {
                        Ok(_) => shared.ack(k, &intended),
                        Err(_) => {
                            shared.errors.fetch_add(k, Relaxed);
                        }
                    }
                    shared.outstanding.fetch_sub(k, Relaxed);
                });
            }
        }
        last_tick = now;
        if t >= timeline.next as f64 {
            let rate = target_rate(&stages, timeline.next);
            progress(timeline.close(&shared, rate), &shared);
            peak_rss = peak_rss.max(rss_mib());
        }
        if t >= total {
            break;
        }
    }
    let sending = start.elapsed().as_secs_f64();
    // Acknowledged while sending (not after): the rate the service kept up with.
    let acked_while_sending = shared.acked.load(Relaxed);
    drop(tx);
    drop(ordered);
    eprintln!();

    // Drain: everything acknowledged, then everything persisted and counted.
    let deadline = Instant::now() + args.drain_timeout;
    let today = Utc::now().date_naive();
    let query = StatsQuery {
        from: today - Days::days(1),
        to: today + Days::days(1),
        campaign_id: Some(campaign.clone()),
        interaction_type: None,
    };
    let mut counted;
    let mut counted_rejected = None;
    loop {
        let acked_all = shared.outstanding.load(Relaxed) == 0;
        let expected = expected_events(&shared, valid);
        counted = match &target {
            Target::InProcess { svc, .. } => svc
                .store
                .daily_stats(&query)
                .await
                .map(|v| v.iter().map(|s| s.count).sum())
                .unwrap_or(0),
            Target::Http(addr) | Target::Log { read: Some(addr) } => {
                http_count(*addr, &query).await.unwrap_or(0)
            }
            // Counted afterwards by `tracking check` against the store.
            Target::Log { read: None } => expected,
        };
        if let Target::InProcess {
            svc,
            created: Some(_),
        } = &target
        {
            let status = svc
                .store
                .status_stats(query.from, query.to)
                .await
                .unwrap_or_default();
            counted_rejected = Some(status.iter().map(|s| s.rejected).sum::<u64>());
        }
        let pending_empty =
            !in_process || shared.pending.lock().map(|p| p.is_empty()).unwrap_or(false);
        if timeline.next as f64 <= start.elapsed().as_secs_f64() {
            let rate = target_rate(&stages, timeline.next);
            progress(timeline.close(&shared, rate), &shared);
        }
        if acked_all && pending_empty && counted >= expected {
            break;
        }
        if Instant::now() > deadline {
            eprintln!(
                "\nloadgen: gave up waiting after {:?} ({counted} of {expected} events counted)",
                args.drain_timeout
            );
            break;
        }
        tokio::time::sleep(drain_poll(&target)).await;
    }
    // From the first send until everything was counted in the store.
    let persisted_span = start.elapsed().as_secs_f64().max(1e-9);
    shared.stop.store(true, Relaxed);
    eprintln!();
    for t in tasks {
        t.abort();
    }
    if let Some(r) = reader {
        // It ends within 100 ms of `stop`.
        let _ = tokio::task::spawn_blocking(move || r.join()).await;
    }
    if let Some((o, subscribers)) = observer {
        subscribers.unsubscribe(OBSERVER_KEY);
        o.stop(None);
    }
    peak_rss = peak_rss.max(rss_mib());

    let expected = expected_events(&shared, valid);
    let acked = shared.acked.load(Relaxed);
    let Timeline {
        seconds: timeline,
        mut intervals,
        ..
    } = timeline;
    intervals.finish(&shared);
    // Everything that records has stopped (a send still in flight after a
    // drain timeout finds the histograms gone and records nothing).
    let hists = std::mem::take(&mut *shared.hists.lock().unwrap_or_else(|e| e.into_inner()));
    let ack_latency = hists.ack.as_ref().map(Latency::of).unwrap_or_default();
    let e2e_latency = hists.e2e.as_ref().map(Latency::of);
    let read_latency = hists.read.as_ref().map(Latency::of);
    let counts_checked = !matches!(target, Target::Log { read: None });
    let expected_rejected = match &target {
        Target::InProcess {
            created: Some(_), ..
        } => Some(invalid),
        _ => None,
    };
    let mut report = Report {
        mode,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        args: std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        build: Build::current(),
        started_at,
        machine: Machine::current(),
        seed: args.seed,
        users: args.users,
        distribution: format!("{:?}", args.distribution),
        campaign_id: campaign,
        duration_s: sending,
        sent: shared.sent.load(Relaxed),
        valid,
        invalid,
        duplicates,
        poison,
        retries: shared.retries.load(Relaxed),
        acked,
        errors: shared.errors.load(Relaxed),
        dropped: shared.dropped.load(Relaxed),
        achieved_rate: acked_while_sending as f64 / sending.max(1e-9),
        persisted_rate: if counts_checked {
            counted as f64 / persisted_span
        } else {
            0.0
        },
        ack_latency,
        e2e_latency: if in_process { e2e_latency } else { None },
        read_latency: if args.read_rate > 0.0 {
            read_latency
        } else {
            None
        },
        reads_failed: shared.reads_failed.load(Relaxed),
        expected_events: expected,
        counted_events: if counts_checked { counted } else { 0 },
        counts_checked,
        expected_rejected,
        counted_rejected: if expected_rejected.is_some() {
            counted_rejected
        } else {
            None
        },
        check_passed: false,
        check_problems: Vec::new(),
        peak_rss_mib: in_process.then_some(peak_rss),
        cpu_busy_pct_median: median(
            timeline
                .iter()
                .filter(|s| s.target_rate > 0.0)
                .filter_map(|s| s.cpu_busy_pct),
        ),
        timeline,
    };
    report.check_problems =
        check_problems(&report, shared.outstanding.load(Relaxed), &args.limits());
    report.check_passed = report.check_problems.is_empty();
    let files = hists.files(&intervals, in_process);
    write_report(&args.report, &report, started, &files)?;
    summary(&report, &args.report);
    if let Target::InProcess { svc, created } = target {
        svc.stop().await?;
        if let Some(dir) = created {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    Ok(report)
}

/// How often the drain counts what is persisted. In process it is a
/// lookup in the embedded projections. Over HTTP it is the service's
/// `GET /tracking/stats/daily`, which on the ScyllaDB store sums every
/// user's row of the day (tens of thousands of rows under load): counted
/// every 20 ms, the generator read them 50 times a second from the store
/// it measures. 250 ms makes the persisted rate at most a quarter of a
/// second late, under 1 % of a 30 s run.
fn drain_poll(target: &Target) -> Duration {
    match target {
        Target::InProcess { .. } => Duration::from_millis(20),
        _ => Duration::from_millis(250),
    }
}

/// Events the store must hold: valid first sends that were acknowledged
/// (a valid command whose send failed may or may not be in).
fn expected_events(shared: &Shared, valid: u64) -> u64 {
    valid.saturating_sub(shared.errors.load(Relaxed))
}

async fn http_count(addr: SocketAddr, q: &StatsQuery) -> anyhow::Result<u64> {
    let path = format!(
        "/tracking/stats/daily?from={}&to={}&campaign_id={}",
        q.from,
        q.to,
        q.campaign_id.as_deref().unwrap_or("")
    );
    let (status, body) = Conn::new(addr).request("GET", &path, b"").await?;
    anyhow::ensure!(status == 200, "stats answered {status}");
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    Ok(v["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["count"].as_u64()).sum())
        .unwrap_or(0))
}
