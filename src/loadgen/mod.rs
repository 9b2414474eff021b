//! `tracking loadgen`: an open-model load generator with a report.
//!
//! Commands are scheduled at a fixed arrival rate (per stage); every
//! latency is counted from the command's *intended* send time, so a slow
//! service shows up as latency instead of silently slowing the generator
//! (no coordinated omission). Two targets:
//! - in-process (default): the service runs in this process on a data dir
//!   and the generator appends to its embedded log directly; end-to-end
//!   latency (intended send → event in the journal) is measured by tailing
//!   the journal;
//! - `--url`: a running service over HTTP (`POST /tracking/interactions`),
//!   acknowledgement latency (→ 202).
//!
//! At the end it waits until everything sent is persisted and checks that
//! the counts in the store equal what was sent minus invalid commands and
//! duplicates, then writes the JSON report (with the build, start time,
//! machine and arguments of the run), an SVG chart, and the latencies as
//! HdrHistogram files (`.hgrm` percentile distributions, `.hlog` interval
//! logs: `hdr`).

mod chart;
mod feed;
mod hdr;
mod http;
mod machine;
mod poison;
mod probe;
mod reads;
mod report;
mod run;
mod workload;

pub use feed::{read_manifest, Sent};
pub use report::Report;
pub use workload::{Distribution, Mix, Workload, ID_PROPERTY};

use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// One stage of the schedule: a rate (or a linear ramp) for a duration.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub from_rate: f64,
    pub to_rate: f64,
    pub duration: Duration,
}

impl Stage {
    /// Commands due `t` into the stage.
    fn due(&self, t: f64) -> f64 {
        let d = self.duration.as_secs_f64().max(1e-9);
        let t = t.clamp(0.0, d);
        self.from_rate * t + (self.to_rate - self.from_rate) * t * t / (2.0 * d)
    }
    fn rate_at(&self, t: f64) -> f64 {
        let d = self.duration.as_secs_f64().max(1e-9);
        self.from_rate + (self.to_rate - self.from_rate) * (t / d).clamp(0.0, 1.0)
    }
}

/// Cumulative commands due `t` seconds into the schedule, and the rate then.
fn due(stages: &[Stage], t: f64) -> (f64, f64) {
    let mut acc = 0.0;
    let mut start = 0.0;
    for s in stages {
        let d = s.duration.as_secs_f64();
        if t < start + d {
            return (acc + s.due(t - start), s.rate_at(t - start));
        }
        acc += s.due(d);
        start += d;
    }
    (acc, 0.0)
}

/// The target rate of second `t` of the run (from `t - 1` to `t`): the
/// commands the schedule has due in it, per second of it that the
/// schedule covers. So the last second of a schedule that ends within it
/// (or at its end) has the schedule's rate, as the seconds before it, not
/// the rate at the instant the second closed, which is 0 there (the
/// schedule is over); the seconds of the drain after it have 0.
fn target_rate(stages: &[Stage], t: u64) -> f64 {
    let total: f64 = stages.iter().map(|s| s.duration.as_secs_f64()).sum();
    let from = (t as f64 - 1.0).max(0.0);
    let to = (t as f64).min(total);
    if to <= from {
        return 0.0;
    }
    (due(stages, to).0 - due(stages, from).0) / (to - from)
}

/// Parses `400/m`, `1000/s`, `1000` (per second).
fn parse_rate(s: &str) -> Result<f64, String> {
    let (n, unit) = s.split_once('/').unwrap_or((s, "s"));
    let n: f64 = n
        .trim()
        .parse()
        .map_err(|_| format!("invalid rate {s:?}"))?;
    let per = match unit.trim() {
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        u => return Err(format!("invalid rate unit {u:?} in {s:?}")),
    };
    if !(n >= 0.0 && n.is_finite()) {
        return Err(format!("invalid rate {s:?}"));
    }
    Ok(n / per)
}

/// Parses `RATE:DURATION` or `RATE..RATE:DURATION` (a ramp), e.g.
/// `400/m:10m`, `800/m..20000/s:2m`.
pub fn parse_stage(s: &str) -> Result<Stage, String> {
    let (rates, duration) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("expected RATE:DURATION, got {s:?}"))?;
    let duration = crate::config::parse_duration(duration)?;
    let (from, to) = match rates.split_once("..") {
        Some((a, b)) => (parse_rate(a)?, parse_rate(b)?),
        None => {
            let r = parse_rate(rates)?;
            (r, r)
        }
    };
    Ok(Stage {
        from_rate: from,
        to_rate: to,
        duration,
    })
}

#[derive(Debug, Clone, Args)]
pub struct LoadgenArgs {
    /// Send over HTTP to a running service (e.g. http://127.0.0.1:8010).
    /// Without it, the service runs in this process and the generator
    /// appends to its embedded log directly.
    #[arg(long)]
    pub url: Option<String>,
    /// Publish to a Pulsar commands topic instead (a keyed producer, the
    /// key is the user; in send order, failed sends retried). `--url` then
    /// names a worker to read counts (and stats) from, if any.
    #[arg(long, conflicts_with = "data_dir")]
    pub pulsar_url: Option<String>,
    /// The commands topic (with `--pulsar-url`).
    #[arg(long, default_value = "persistent://public/default/commands.tracking")]
    pub topic: String,
    /// Write every acknowledged message (id, user, kind) as JSON lines, in
    /// send order (with `--pulsar-url`), for `tracking check`.
    #[arg(long, requires = "pulsar_url")]
    pub manifest: Option<PathBuf>,
    /// Share of poison messages (undecodable: malformed, unknown command,
    /// oversize, wrong encoding); with `--pulsar-url`.
    #[arg(long, default_value_t = 0.0, requires = "pulsar_url")]
    pub poison: f64,
    /// Data dir of the in-process service (default: a fresh temporary dir).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Partitions of the in-process service's log (default: the service's,
    /// 1 for a new log).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub partitions: Option<u32>,
    /// Live aggregates of the in-process service.
    #[arg(long, default_value_t = 5_000)]
    pub max_live_aggregates: usize,
    /// Worker threads of the in-process service's pipeline runtime (its
    /// `--pipeline-threads`; default: half the CPUs, at least one). A
    /// service over `--url` or Pulsar has its own setting, so refused there.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256),
          conflicts_with_all = ["url", "pulsar_url"])]
    pub pipeline_threads: Option<u16>,
    /// Least time between two syncs of a partition of the in-process
    /// service's log (its `--log-sync-interval`).
    #[arg(long, default_value = "2ms", value_parser = crate::config::parse_sync_interval)]
    pub log_sync_interval: std::time::Duration,
    /// Constant rate (commands/s, or `400/m`), after `--ramp`.
    #[arg(long, default_value = "1000", value_parser = parse_rate)]
    pub rate: f64,
    /// Duration at `--rate`.
    #[arg(long, default_value = "30s", value_parser = crate::config::parse_duration)]
    pub duration: Duration,
    /// Linear ramp from 0 to `--rate` before the constant part.
    #[arg(long, default_value = "0s", value_parser = crate::config::parse_duration)]
    pub ramp: Duration,
    /// Explicit stages (repeatable), replacing rate/duration/ramp:
    /// `RATE:DURATION` or `RATE..RATE:DURATION`.
    #[arg(long = "stage", value_parser = parse_stage)]
    pub stages: Vec<Stage>,
    /// Distinct users.
    #[arg(long, default_value_t = 10_000)]
    pub users: u64,
    /// User distribution: uniform, sequential (round robin), zipf, zipf:<exponent>.
    #[arg(long, default_value = "uniform")]
    pub distribution: Distribution,
    /// Interaction type weights.
    #[arg(long, default_value = "click=50,view=40,like=10")]
    pub mix: Mix,
    /// Share of invalid commands (rule violations).
    #[arg(long, default_value_t = 0.0)]
    pub invalid: f64,
    /// Share of duplicates (an earlier command resent with the same id).
    #[arg(long, default_value_t = 0.0)]
    pub duplicates: f64,
    /// Seed of the workload (same seed, same commands).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// HTTP connections (with `--url`).
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Concurrent reads of `GET /tracking/stats/daily` per second during the run (0: none).
    #[arg(long, default_value_t = 0.0)]
    pub read_rate: f64,
    /// Commands scheduled but not yet acknowledged beyond which new ones are
    /// dropped (and counted) instead of queued without limit.
    #[arg(long, default_value_t = 200_000)]
    pub max_outstanding: usize,
    /// How long to wait for everything to be persisted after sending.
    #[arg(long, default_value = "120s", value_parser = crate::config::parse_duration)]
    pub drain_timeout: Duration,
    /// Where to write the JSON report (the SVG chart goes beside it).
    #[arg(long, default_value = "loadtest/results/report.json")]
    pub report: PathBuf,
    /// Fail (exit 1) unless the final check passes: nothing lost or
    /// doubled, every send answered, and the limits below. `--check=false`
    /// reports the problems and exits 0 (a run probing saturation).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub check: bool,
    /// Share of scheduled sends that may be dropped (the target fell
    /// behind the rate by more than `--max-outstanding`) before the run
    /// fails; dropped sends are not in the latency percentiles.
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub max_drop_share: f64,
    /// Fail when the acknowledgement latency's p99 is above this.
    #[arg(long, value_parser = crate::config::parse_duration)]
    pub max_p99: Option<Duration>,
    /// Fail when the end-to-end (persisted) latency's p99 is above this.
    #[arg(long, value_parser = crate::config::parse_duration)]
    pub max_e2e_p99: Option<Duration>,
}

fn parse_share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a share between 0 and 1")),
    }
}

impl LoadgenArgs {
    /// The thresholds that fail a run besides the counts.
    pub fn limits(&self) -> report::Limits {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        report::Limits {
            max_drop_share: self.max_drop_share,
            max_p99_ms: self.max_p99.map(ms),
            max_e2e_p99_ms: self.max_e2e_p99.map(ms),
        }
    }

    pub fn stages(&self) -> Vec<Stage> {
        if !self.stages.is_empty() {
            return self.stages.clone();
        }
        let mut s = Vec::new();
        if !self.ramp.is_zero() {
            s.push(Stage {
                from_rate: 0.0,
                to_rate: self.rate,
                duration: self.ramp,
            });
        }
        s.push(Stage {
            from_rate: self.rate,
            to_rate: self.rate,
            duration: self.duration,
        });
        s
    }

    pub fn http_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| anyhow::anyhow!("--url must start with http:// (got {url})"))?;
        let hostport = rest.split('/').next().unwrap_or(rest);
        use std::net::ToSocketAddrs;
        let addr = hostport
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| anyhow::anyhow!("cannot resolve {hostport}"))?;
        Ok(Some(addr))
    }
}

/// Runs the load test (the `loadgen` subcommand).
pub async fn loadgen(args: LoadgenArgs) -> anyhow::Result<()> {
    let report = run::run(&args).await?;
    if !args.check && !report.check_passed {
        eprintln!(
            "the final check found problems (not failing: --check=false): {}",
            report.check_problems.join("; ")
        );
    }
    if args.check && !report.check_passed {
        anyhow::bail!(
            "the final check failed: {}",
            report.check_problems.join("; ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_parse_and_integrate() {
        let s = parse_stage("400/m:10m").unwrap();
        assert!((s.from_rate - 400.0 / 60.0).abs() < 1e-9);
        assert_eq!(s.duration, Duration::from_secs(600));
        assert!((s.due(600.0) - 4000.0).abs() < 1e-6);
        let ramp = parse_stage("0..1000/s:10s").unwrap();
        assert!(
            (ramp.due(10.0) - 5000.0).abs() < 1e-6,
            "a linear ramp sends half"
        );
        assert!((ramp.rate_at(5.0) - 500.0).abs() < 1e-9);
        assert!(parse_stage("fast:10s").is_err());
        assert!(parse_stage("100/s").is_err());
    }

    #[test]
    fn the_last_second_of_the_schedule_has_its_target_rate() {
        let stage = |s: &str| parse_stage(s).unwrap();
        // A schedule ending on a second: the last second is a full one.
        let flat = [stage("100/s:30s")];
        assert_eq!(target_rate(&flat, 30), 100.0);
        assert_eq!(target_rate(&flat, 31), 0.0, "the drain has no target");
        // Ending within a second: its scheduled half has the same rate.
        let partial = [stage("100/s:2500ms")];
        let rates: Vec<f64> = (1..=4).map(|t| target_rate(&partial, t)).collect();
        assert_eq!(rates, [100.0, 100.0, 100.0, 0.0]);
        // A ramp: each second's mean rate (what its acknowledgements show).
        let ramp = [stage("0..100/s:10s"), stage("100/s:5s")];
        assert!((target_rate(&ramp, 1) - 5.0).abs() < 1e-9);
        assert!((target_rate(&ramp, 10) - 95.0).abs() < 1e-9);
        assert!((target_rate(&ramp, 15) - 100.0).abs() < 1e-9);
    }
}
