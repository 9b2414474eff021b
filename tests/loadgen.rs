//! The load generator, black-box: a short run in-process and one over HTTP
//! against the real binary; both must pass their own end check and write
//! the JSON report and the chart.

mod common;

use common::{tracking, Worker};

fn read_report(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("report written");
    serde_json::from_str(&text).expect("report is JSON")
}

#[test]
fn in_process_run_counts_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("r.json");
    let (code, out, err) = tracking(&[
        "loadgen",
        "--rate",
        "400",
        "--duration",
        "2s",
        "--users",
        "50",
        "--distribution",
        "zipf",
        "--invalid",
        "0.1",
        "--duplicates",
        "0.1",
        "--seed",
        "7",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("check:       PASSED"), "{out}");
    let r = read_report(&report);
    assert_eq!(r["check_passed"], true);
    assert_eq!(r["sent"], 800);
    let (valid, invalid, dups) = (
        r["valid"].as_u64().unwrap(),
        r["invalid"].as_u64().unwrap(),
        r["duplicates"].as_u64().unwrap(),
    );
    assert_eq!(valid + invalid + dups, 800);
    assert!(invalid > 0 && dups > 0);
    assert_eq!(r["counted_events"].as_u64(), Some(valid));
    assert_eq!(r["counted_rejected"].as_u64(), Some(invalid));
    assert!(r["e2e_latency"]["p99_ms"].as_f64().unwrap() > 0.0);
    assert!(r["timeline"].as_array().unwrap().len() >= 2);
    // The machine's CPU while sending (Linux: /proc/stat).
    if cfg!(target_os = "linux") {
        let cpu = r["cpu_busy_pct_median"]
            .as_f64()
            .expect("cpu_busy_pct_median");
        assert!((0.0..=100.0).contains(&cpu), "{cpu}");
        assert!(r["timeline"][1]["cpu_busy_pct"].as_f64().is_some());
    }
    let svg = std::fs::read_to_string(report.with_extension("svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<path d=\"M"));
    assert!(svg.contains("latency (ms, log scale)") && svg.contains("99.9%"));
    assert!(err.contains("sent="), "no progress line: {err}");
    // What ran where: the build, the start, the machine, the arguments.
    assert_eq!(r["build"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(!r["build"]["revision"].as_str().unwrap().is_empty());
    let started = r["started_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(started).is_ok() && started.ends_with('Z'),
        "{started}"
    );
    assert!(r["machine"]["cpus"].as_u64().unwrap() >= 1);
    let args = r["args"].as_array().unwrap();
    assert_eq!(args[1], "loadgen");
    assert_eq!(args.last().unwrap().as_str(), report.to_str());
    // The HdrHistogram files: the intervals add up to the whole run.
    for (name, latency) in [("ack", "ack_latency"), ("e2e", "e2e_latency")] {
        let count = r[latency]["count"].as_u64().unwrap();
        let log = std::fs::read(report.with_extension(format!("{name}.hlog"))).unwrap();
        assert_eq!(interval_counts(&log), count, "{name}");
        let hgrm = std::fs::read_to_string(report.with_extension(format!("{name}.hgrm"))).unwrap();
        assert!(hgrm.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"));
        assert!(
            hgrm.contains(&format!("Total count    = {count:>12}]")),
            "{hgrm}"
        );
    }
}

/// The values counted in all the intervals of an interval log, read with
/// the `hdrhistogram` crate's parser and deserializer.
fn interval_counts(log: &[u8]) -> u64 {
    use base64::Engine as _;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    let mut d = hdrhistogram::serialization::Deserializer::new();
    let mut n = 0;
    for e in IntervalLogIterator::new(log) {
        if let LogEntry::Interval(i) = e.expect("a well-formed interval log") {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(i.encoded_histogram())
                .unwrap();
            let h: hdrhistogram::Histogram<u64> = d.deserialize(&mut raw.as_slice()).unwrap();
            n += h.len();
        }
    }
    n
}

#[test]
fn http_run_against_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let worker = Worker::start(&tmp.path().join("data"), &[]);
    let report = tmp.path().join("h.json");
    let url = format!("http://{}", worker.addr);
    let (code, out, err) = tracking(&[
        "loadgen",
        "--url",
        &url,
        "--rate",
        "300",
        "--duration",
        "2s",
        "--users",
        "100",
        "--invalid",
        "0.05",
        "--duplicates",
        "0.05",
        "--connections",
        "4",
        "--read-rate",
        "50",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let r = read_report(&report);
    assert_eq!(r["check_passed"], true, "{out}");
    assert_eq!(r["errors"], 0);
    // 50 reads/s for at least the 2 s of load, every one answered.
    let reads = r["read_latency"]["count"].as_u64().unwrap();
    assert!(reads >= 80, "{reads} reads in a 2 s run at 50/s");
    assert_eq!(r["reads_failed"], 0);
    drop(worker);
}

#[test]
fn a_latency_limit_fails_the_run_and_check_false_only_reports_it() {
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("r.json");
    let args = |check: &'static str| {
        vec![
            "loadgen".to_string(),
            "--rate".into(),
            "200".into(),
            "--duration".into(),
            "1s".into(),
            "--users".into(),
            "20".into(),
            // No acknowledgement takes no time at all.
            "--max-p99".into(),
            "0ms".into(),
            format!("--check={check}"),
            "--report".into(),
            report.to_str().unwrap().to_string(),
        ]
    };
    let run = |check| {
        let a = args(check);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        tracking(&a)
    };
    let (code, out, err) = run("true");
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("acknowledgement p99"), "{err}");
    assert_eq!(read_report(&report)["check_passed"], false);
    let (code, out, err) = run("false");
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("not failing: --check=false"), "{err}");
}
