//! The load test report: JSON (figures, the per-second timeline, and what
//! ran where), with the chart (`chart`) and the HdrHistogram files
//! (`hdr`) written beside it.

use super::chart::{svg, Spectrum};
use super::hdr::{self, IntervalLog};
use super::machine::{Build, Machine};
use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;

/// Percentiles of a latency histogram recorded in microseconds, in ms.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// One second of the run.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Second {
    pub t: u64,
    /// The schedule's mean rate over this second (commands/s): what it
    /// had due in the second, per second of it that it covered.
    pub target_rate: f64,
    pub sent: u64,
    pub acked: u64,
    pub persisted: u64,
    pub errors: u64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub e2e_p50_ms: f64,
    pub e2e_p99_ms: f64,
    /// Busy share of all the machine's cores in this second, in percent
    /// (the generator's own work included; Linux only).
    pub cpu_busy_pct: Option<f64>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    pub mode: String,
    /// The arguments joined by spaces (quoting lost: `args` has them exact).
    pub command: String,
    /// The exact command line, one argument each.
    pub args: Vec<String>,
    /// The binary that ran.
    pub build: Build,
    /// When the schedule started, UTC, RFC 3339.
    pub started_at: String,
    /// The machine it ran on (the generator shares it with the service
    /// in-process).
    pub machine: Machine,
    pub seed: u64,
    pub users: u64,
    pub distribution: String,
    pub campaign_id: String,
    pub duration_s: f64,
    pub sent: u64,
    pub valid: u64,
    pub invalid: u64,
    pub duplicates: u64,
    /// Undecodable messages (log targets only).
    pub poison: u64,
    /// Appends retried after a failure (log targets: broker down).
    pub retries: u64,
    pub acked: u64,
    pub errors: u64,
    pub dropped: u64,
    /// Commands acknowledged during the sending phase, per second of it.
    pub achieved_rate: f64,
    /// Events persisted per second from the first send to the last event.
    pub persisted_rate: f64,
    /// From intended send time to the acknowledgement (202 / durable append).
    pub ack_latency: Latency,
    /// From intended send time to the event in the journal (in-process only).
    pub e2e_latency: Option<Latency>,
    pub read_latency: Option<Latency>,
    pub reads_failed: u64,
    pub expected_events: u64,
    pub counted_events: u64,
    /// False when nothing could be counted here (a Pulsar target without
    /// `--url`): `tracking check` compares the manifest with the store.
    pub counts_checked: bool,
    pub expected_rejected: Option<u64>,
    pub counted_rejected: Option<u64>,
    pub check_passed: bool,
    /// Why the check failed, one sentence each (empty when it passed).
    pub check_problems: Vec<String>,
    pub peak_rss_mib: Option<f64>,
    /// Median of the seconds' `cpu_busy_pct` while sending: whether the
    /// machine had room left at this rate (a latency tail on saturated
    /// cores is queueing for them).
    pub cpu_busy_pct_median: Option<f64>,
    pub timeline: Vec<Second>,
}

/// What the final check found wrong: every acknowledged valid command is
/// one event (none lost), no more events than valid commands were sent
/// (none duplicated), the rejections match, and every send was answered
/// without an error. A send that failed may or may not have reached the
/// log, so the store may hold anything between the acknowledged valid
/// commands (`expected_events`) and every valid one sent (`valid`); the
/// run still fails, but the problem says how many of them the store holds
/// rather than calling that a miscount.
pub fn check_problems(r: &Report, unanswered: u64, limits: &Limits) -> Vec<String> {
    let mut out = Vec::new();
    let scheduled = r.sent + r.dropped;
    if r.dropped > 0 && r.dropped as f64 > limits.max_drop_share * scheduled as f64 {
        out.push(format!(
            "{} of {scheduled} scheduled sends were dropped ({:.2} %, at most {:.2} % allowed): \
             the target did not keep up with the rate, and the latencies leave the dropped sends out",
            r.dropped,
            100.0 * r.dropped as f64 / scheduled as f64,
            100.0 * limits.max_drop_share
        ));
    }
    let latencies = [
        ("acknowledgement", Some(&r.ack_latency), limits.max_p99_ms),
        ("end-to-end", r.e2e_latency.as_ref(), limits.max_e2e_p99_ms),
    ];
    for (what, latency, max) in latencies {
        if let (Some(l), Some(max)) = (latency, max) {
            if l.count > 0 && l.p99_ms > max {
                out.push(format!(
                    "{what} p99 {:.1} ms is above the {max:.1} ms allowed",
                    l.p99_ms
                ));
            }
        }
    }
    if r.counts_checked {
        if r.counted_events < r.expected_events {
            out.push(format!(
                "{} acknowledged events are missing from the store ({} of {} counted)",
                r.expected_events - r.counted_events,
                r.counted_events,
                r.expected_events
            ));
        }
        if r.counted_events > r.valid {
            out.push(format!(
                "the store holds {} events more than the {} valid commands sent",
                r.counted_events - r.valid,
                r.valid
            ));
        }
        if let (Some(e), Some(c)) = (r.expected_rejected, r.counted_rejected) {
            if e != c {
                out.push(format!("{c} rejections counted, {e} expected"));
            }
        }
    }
    if r.errors > 0 {
        let held = if r.counts_checked && (r.expected_events..=r.valid).contains(&r.counted_events)
        {
            format!(
                "; the store holds {} of them, so nothing was lost or duplicated",
                r.counted_events - r.expected_events
            )
        } else {
            String::new()
        };
        out.push(format!(
            "{} sends failed (no answer, or an error status){held}",
            r.errors
        ));
    }
    if unanswered > 0 {
        out.push(format!(
            "{unanswered} sends were still unanswered at the end"
        ));
    }
    out
}

/// Thresholds that fail a run besides the counts (`--max-drop-share`,
/// `--max-p99`, `--max-e2e-p99`).
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// Largest share of scheduled sends that may be dropped (0: none).
    pub max_drop_share: f64,
    pub max_p99_ms: Option<f64>,
    pub max_e2e_p99_ms: Option<f64>,
}

/// A latency histogram of the whole run and its per-interval log, written
/// beside the report as `<report>.<name>.hgrm` and `<report>.<name>.hlog`.
pub struct LatencyFiles<'a> {
    /// `ack` or `e2e`: the file names' part.
    pub name: &'a str,
    /// What it measures, for the log's comment and the chart's legend.
    pub title: &'a str,
    pub color: &'a str,
    pub whole: &'a Histogram<u64>,
    pub intervals: &'a IntervalLog,
}

/// Writes the JSON report, the SVG chart beside it, and each latency's
/// percentile distribution (`.hgrm`) and interval log (`.hlog`).
pub fn write_report(
    path: &std::path::Path,
    r: &Report,
    started: std::time::SystemTime,
    latencies: &[LatencyFiles],
) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, serde_json::to_vec_pretty(r)?)
        .with_context(|| format!("writing {}", path.display()))?;
    let mut spectra = Vec::new();
    for l in latencies {
        let hgrm = path.with_extension(format!("{}.hgrm", l.name));
        let text =
            hdr::percentile_distribution(l.whole, hdr::TICKS_PER_HALF_DISTANCE, hdr::US_PER_MS);
        std::fs::write(&hgrm, text).with_context(|| format!("writing {}", hgrm.display()))?;
        let hlog = path.with_extension(format!("{}.hlog", l.name));
        let comment = format!(
            "tracking loadgen {} ({}): {} latency in microseconds, one histogram per second",
            r.build.version, r.build.revision, l.title
        );
        let bytes = l.intervals.to_bytes(started, &comment)?;
        std::fs::write(&hlog, bytes).with_context(|| format!("writing {}", hlog.display()))?;
        spectra.push(Spectrum {
            name: l.title,
            color: l.color,
            points: hdr::percentile_steps(l.whole, hdr::TICKS_PER_HALF_DISTANCE)
                .iter()
                .filter(|s| s.percentile < 100.0)
                .map(|s| (s.percentile, s.value as f64 / hdr::US_PER_MS))
                .collect(),
            max_ms: l.whole.max() as f64 / hdr::US_PER_MS,
        });
    }
    let chart = path.with_extension("svg");
    std::fs::write(&chart, svg(r, &spectra))
        .with_context(|| format!("writing {}", chart.display()))?;
    Ok(())
}

/// Prints the summary of a run.
pub fn summary(r: &Report, path: &std::path::Path) {
    let l = |x: &Latency| {
        format!(
            "p50 {:.2} ms, p90 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.2}",
            x.p50_ms, x.p90_ms, x.p99_ms, x.p999_ms, x.max_ms
        )
    };
    println!("mode:        {}", r.mode);
    println!("sent:        {} ({} valid, {} invalid, {} duplicates, {} poison) in {:.1} s; acked {}, errors {}, retries {}, dropped {}", r.sent, r.valid, r.invalid, r.duplicates, r.poison, r.duration_s, r.acked, r.errors, r.retries, r.dropped);
    println!(
        "throughput:  {:.0}/s acknowledged, {:.0}/s persisted",
        r.achieved_rate, r.persisted_rate
    );
    println!("ack latency: {}", l(&r.ack_latency));
    if let Some(e) = &r.e2e_latency {
        println!("end-to-end:  {}", l(e));
    }
    if let Some(e) = &r.read_latency {
        println!("reads:       {} ({} failed)", l(e), r.reads_failed);
    }
    if let Some(cpu) = r.cpu_busy_pct_median {
        println!("machine CPU: {cpu:.0} % busy while sending (median of the seconds, all cores, generator included)");
    }
    if let Some(rss) = r.peak_rss_mib {
        println!("peak RSS:    {rss:.0} MiB (this process: service and generator)");
    }
    if !r.counts_checked {
        println!(
            "check:       {} (every send acknowledged; counts not read here: run `tracking check` with the manifest)",
            if r.check_passed { "PASSED" } else { "FAILED" },
        );
        println!("report:      {} (+ .svg, .hgrm, .hlog)", path.display());
        return;
    }
    println!(
        "check:       {} (events {} of {} expected{})",
        if r.check_passed { "PASSED" } else { "FAILED" },
        r.counted_events,
        r.expected_events,
        match (r.expected_rejected, r.counted_rejected) {
            (Some(e), Some(c)) => format!("; rejected {c} of {e} expected"),
            _ => String::new(),
        }
    );
    for p in &r.check_problems {
        println!("             - {p}");
    }
    println!("report:      {} (+ .svg, .hgrm, .hlog)", path.display());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(valid: u64, errors: u64, counted: u64) -> Report {
        Report {
            valid,
            errors,
            expected_events: valid - errors,
            counted_events: counted,
            counts_checked: true,
            ..Report::default()
        }
    }

    #[test]
    fn a_clean_run_has_no_problems() {
        assert!(check_problems(&report(100, 0, 100), 0, &Limits::default()).is_empty());
    }

    #[test]
    fn lost_and_duplicated_events_are_named() {
        let lost = check_problems(&report(100, 0, 97), 0, &Limits::default());
        assert_eq!(lost.len(), 1);
        assert!(
            lost[0].starts_with("3 acknowledged events are missing"),
            "{lost:?}"
        );
        let dup = check_problems(&report(100, 0, 102), 0, &Limits::default());
        assert_eq!(dup.len(), 1);
        assert!(
            dup[0].contains("2 events more than the 100 valid"),
            "{dup:?}"
        );
    }

    #[test]
    fn failed_sends_fail_the_run_without_being_called_a_miscount() {
        // 35 sends got no answer; 20 of them reached the log anyway.
        let p = check_problems(&report(30_000, 35, 29_985), 0, &Limits::default());
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("35 sends failed"), "{p:?}");
        assert!(p[0].contains("holds 20 of them"), "{p:?}");
        // Fewer than the acknowledged ones: a loss, named as such.
        let p = check_problems(&report(30_000, 35, 29_900), 0, &Limits::default());
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("missing from the store"), "{p:?}");
        assert!(!p[1].contains("holds"), "{p:?}");
    }

    #[test]
    fn rejections_and_unanswered_sends_are_named() {
        let mut r = report(10, 0, 10);
        r.expected_rejected = Some(3);
        r.counted_rejected = Some(2);
        let p = check_problems(&r, 4, &Limits::default());
        assert_eq!(
            p,
            vec![
                "2 rejections counted, 3 expected".to_string(),
                "4 sends were still unanswered at the end".to_string(),
            ]
        );
    }

    #[test]
    fn dropped_sends_fail_the_run_unless_a_share_is_allowed() {
        // Given a run that dropped 30 of 1,000 scheduled sends
        let mut r = report(970, 0, 970);
        r.sent = 970;
        r.dropped = 30;
        // Then it fails by default, naming the share
        let p = check_problems(&r, 0, &Limits::default());
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("30 of 1000 scheduled sends were dropped (3.00 %"),
            "{p:?}"
        );
        // And passes when 5 % may be dropped, fails again at 2 %
        let allow = |share| Limits {
            max_drop_share: share,
            ..Limits::default()
        };
        assert!(check_problems(&r, 0, &allow(0.05)).is_empty());
        assert_eq!(check_problems(&r, 0, &allow(0.02)).len(), 1);
    }

    #[test]
    fn latency_thresholds_fail_the_run_above_them() {
        let mut r = report(100, 0, 100);
        r.ack_latency = Latency {
            count: 100,
            p99_ms: 80.0,
            ..Latency::default()
        };
        let limits = Limits {
            max_p99_ms: Some(50.0),
            max_e2e_p99_ms: Some(10.0),
            ..Limits::default()
        };
        // No end-to-end latency measured: only the acknowledgement is judged.
        assert_eq!(
            check_problems(&r, 0, &limits),
            vec!["acknowledgement p99 80.0 ms is above the 50.0 ms allowed".to_string()]
        );
        r.ack_latency.p99_ms = 20.0;
        assert!(check_problems(&r, 0, &limits).is_empty());
    }

    #[test]
    fn uncounted_targets_only_check_the_answers() {
        let mut r = report(10, 0, 0);
        r.counts_checked = false;
        assert!(check_problems(&r, 0, &Limits::default()).is_empty());
        r.errors = 1;
        assert_eq!(
            check_problems(&r, 0, &Limits::default()),
            vec!["1 sends failed (no answer, or an error status)".to_string()]
        );
    }
}
