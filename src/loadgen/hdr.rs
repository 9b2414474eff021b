//! The run's latency histograms as HdrHistogram files, for the standard
//! tools (HistogramLogAnalyzer, HistogramLogProcessor, hdr-plot, the Java,
//! Python and Rust `hdrhistogram` libraries):
//! - an interval log (`.hlog`): the `StartTime`/`BaseTime` header, the
//!   legend, then one line per report interval (a second) with that
//!   interval's histogram, V2 deflate-compressed and base64-encoded;
//! - a percentile distribution (`.hgrm`): the text that Java's
//!   `AbstractHistogram.outputPercentileDistribution` prints, column for
//!   column, so that tools reading that text read this one.
//!
//! Values are recorded in microseconds (`probe::hist`). The `.hgrm`
//! divides them by [`US_PER_MS`] (milliseconds, as the summary and the
//! JSON report give them); the `.hlog` keeps them as recorded
//! (HistogramLogProcessor: `-outputValueUnitRatio 1000` for milliseconds).

use anyhow::anyhow;
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

/// Recorded microseconds per millisecond, the unit of the `.hgrm` values.
pub const US_PER_MS: f64 = 1000.0;

/// Percentile steps per half of the distance to 100 %, as in Java's
/// default output (`outputPercentileDistribution(out, 5, ratio)`).
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// The legend line of HdrHistogram's interval log format.
const LEGEND: &str =
    "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n";

/// One latency's per-interval histograms, as the body of an interval log.
/// Each interval is serialized when it closes: a few hundred bytes of
/// text, where the histogram itself holds about 180 KiB of counters, so
/// an hour's run keeps a few MiB instead of gigabytes.
#[derive(Default)]
pub struct IntervalLog {
    body: Vec<u8>,
    serializer: V2DeflateSerializer,
}

impl IntervalLog {
    /// Appends the interval that started `start` after the run's start
    /// and lasted `length`.
    pub fn push(
        &mut self,
        h: &Histogram<u64>,
        start: Duration,
        length: Duration,
    ) -> anyhow::Result<()> {
        // A builder with no header writes nothing: only the interval line.
        let mut w =
            IntervalLogWriterBuilder::new().begin_log_with(&mut self.body, &mut self.serializer)?;
        w.write_histogram(h, start, length, None)
            .map_err(|e| anyhow!("writing an interval histogram: {e}"))?;
        Ok(())
    }

    /// The whole log: a comment, the format version, `StartTime` and
    /// `BaseTime` (both the run's start: the interval timestamps count
    /// from it), the legend, then the intervals.
    pub fn to_bytes(&self, started: SystemTime, comment: &str) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.body.len() + 512);
        let mut serializer = V2DeflateSerializer::new();
        IntervalLogWriterBuilder::new()
            .add_comment(comment)
            .add_comment("[Histogram log format version 1.3]")
            .with_start_time(started)
            .with_base_time(started)
            .begin_log_with(&mut out, &mut serializer)?;
        out.extend_from_slice(LEGEND.as_bytes());
        out.extend_from_slice(&self.body);
        Ok(out)
    }
}

/// One step of Java's `PercentileIterator`: the highest value equivalent
/// to the one reached, the percentile level iterated to (0 to 100), and
/// the count of values up to it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub value: u64,
    pub percentile: f64,
    pub total: u64,
}

/// The steps of Java's `PercentileIterator` over `h`, in its arithmetic
/// (percent, not quantiles; the same tick formula), so that the levels and
/// the values they land on are Java's to the last bit: the crate's own
/// quantile iterator steps in quantiles and can land one bucket apart at
/// an exact boundary. Levels advance in `ticks` equal steps per half of
/// the remaining distance to 100 %; a bucket may take several levels; the
/// last bucket takes one, then a final step at 100 % repeats it.
pub fn percentile_steps(h: &Histogram<u64>, ticks: u32) -> Vec<Step> {
    let total = h.len();
    let mut out = Vec::new();
    if total == 0 {
        return out;
    }
    let (mut level, mut running, mut last) = (0.0f64, 0u64, 0u64);
    for v in h.iter_recorded() {
        running += v.count_at_value();
        last = v.value_iterated_to();
        while 100.0 * running as f64 / total as f64 >= level {
            out.push(Step {
                value: last,
                percentile: level,
                total: running,
            });
            let halvings = ((100.0 / (100.0 - level)).ln() / 2f64.ln()) as u32;
            let reporting_ticks = u64::from(ticks) << (halvings + 1).min(62);
            level += 100.0 / reporting_ticks as f64;
            if running == total {
                break;
            }
        }
    }
    out.push(Step {
        value: last,
        percentile: 100.0,
        total,
    });
    out
}

/// The percentile distribution of `h` in the text of Java's
/// `outputPercentileDistribution(out, ticks, scale)`: values divided by
/// `scale`, with as many decimals as the histogram has significant digits,
/// then the mean, standard deviation, max, count and bucket layout.
pub fn percentile_distribution(h: &Histogram<u64>, ticks: u32, scale: f64) -> String {
    let digits = usize::from(h.sigfig());
    let mut out = format!(
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    for s in percentile_steps(h, ticks) {
        let value = java_fixed(s.value as f64 / scale, digits);
        let p = s.percentile / 100.0;
        let _ = write!(out, "{value:>12} {} {:>10}", java_fixed(p, 12), s.total);
        if s.percentile != 100.0 {
            let _ = write!(out, " {:>14}", java_fixed(1.0 / (1.0 - p), 2));
        }
        out.push('\n');
    }
    let (mean, stdev) = mean_and_stdev(h);
    let _ = writeln!(
        out,
        "#[Mean    = {:>12}, StdDeviation   = {:>12}]",
        java_fixed(mean / scale, digits),
        java_fixed(stdev / scale, digits)
    );
    let _ = writeln!(
        out,
        "#[Max     = {:>12}, Total count    = {:>12}]",
        java_fixed(h.max() as f64 / scale, digits),
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        sub_bucket_count(h.sigfig())
    );
    out
}

/// Java's `getMean` and `getStdDeviation`: each bucket counts at its
/// median equivalent value, summed before dividing (the crate divides
/// each term, which can differ in the last digit).
fn mean_and_stdev(h: &Histogram<u64>) -> (f64, f64) {
    let n = h.len();
    if n == 0 {
        return (0.0, 0.0);
    }
    let mid = |v: u64| h.median_equivalent(v) as f64;
    let sum: f64 = h
        .iter_recorded()
        .map(|v| mid(v.value_iterated_to()) * v.count_at_value() as f64)
        .sum();
    let mean = sum / n as f64;
    let squares: f64 = h
        .iter_recorded()
        .map(|v| {
            let d = mid(v.value_iterated_to()) - mean;
            d * d * v.count_at_value() as f64
        })
        .sum();
    (mean, (squares / n as f64).sqrt())
}

/// Sub-buckets per bucket for `sigfig` significant digits (Java's
/// `subBucketCount`: the power of two that holds 2 × 10^sigfig).
fn sub_bucket_count(sigfig: u8) -> u64 {
    let largest = 2.0 * 10f64.powi(i32::from(sigfig));
    let magnitude = (largest.log2().ceil() as u32).max(1);
    1u64 << magnitude
}

/// `v` with `decimals` digits after the point, as Java's `%.Nf` writes it:
/// the shortest decimal that reads back as `v`, rounded half up. Rust's
/// `{:.N}` rounds the exact binary value half to even instead, so
/// 0.9998779296875 (1 − 2⁻¹³, a level of the distribution) at 12 digits
/// ends in 7 there and in 8 in Java. Finite, non-negative values only
/// (others as Rust writes them).
pub fn java_fixed(v: f64, decimals: usize) -> String {
    if !v.is_finite() || v < 0.0 {
        return format!("{v:.decimals$}");
    }
    // Shortest digits d1 d2 ... and exponent: v = d1.d2... × 10^exp.
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let mut digits: Vec<u8> = mantissa
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|c| c - b'0')
        .collect();
    // `int_len` digits before the point; at least one (a leading 0).
    let mut int_len = exp + 1;
    if int_len < 1 {
        let zeros = (1 - int_len) as usize;
        digits.splice(0..0, std::iter::repeat_n(0, zeros));
        int_len = 1;
    }
    let keep = int_len as usize + decimals;
    if digits.len() <= keep {
        digits.resize(keep + 1, 0);
    }
    let round_up = digits[keep] >= 5;
    digits.truncate(keep);
    if round_up {
        let mut i = keep;
        loop {
            if i == 0 {
                digits.insert(0, 1);
                int_len += 1;
                break;
            }
            i -= 1;
            if digits[i] == 9 {
                digits[i] = 0;
            } else {
                digits[i] += 1;
                break;
            }
        }
    }
    let text = |d: &[u8]| d.iter().map(|d| char::from(b'0' + d)).collect::<String>();
    let (int, frac) = digits.split_at(int_len as usize);
    // Zeros put in front above, never past the first digit of the integer part.
    let int = text(int);
    let int = match int.trim_start_matches('0') {
        "" => "0".to_string(),
        s => s.to_string(),
    };
    if decimals == 0 {
        int
    } else {
        format!("{int}.{}", text(frac))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::{engine::general_purpose::STANDARD, Engine as _};
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;

    /// The generator's own histogram: 1 µs .. 1 h, 3 significant digits.
    fn hist() -> Histogram<u64> {
        Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap()
    }

    #[test]
    fn java_fixed_rounds_half_up_on_the_shortest_decimal() {
        assert_eq!(java_fixed(0.9998779296875, 12), "0.999877929688");
        assert_eq!(java_fixed(2.675, 2), "2.68");
        assert_eq!(java_fixed(0.125, 2), "0.13");
        assert_eq!(java_fixed(0.0, 3), "0.000");
        assert_eq!(java_fixed(0.001, 3), "0.001");
        assert_eq!(java_fixed(0.0004, 3), "0.000");
        assert_eq!(java_fixed(0.0005, 3), "0.001");
        assert_eq!(java_fixed(9.9996, 3), "10.000");
        assert_eq!(java_fixed(99.5, 0), "100");
        assert_eq!(java_fixed(1.0 / (1.0 - 0.3), 2), "1.43");
        assert_eq!(java_fixed(10007.0 / 1000.0, 3), "10.007");
        assert_eq!(java_fixed(1234567.0, 2), "1234567.00");
    }

    /// Values 1..=10000 µs once each. Below 2048 every value has a bucket
    /// of its own; 2048..4095 share buckets two wide, 4096..8191 four
    /// wide, 8192 and up eight wide, and a step names the highest value of
    /// its bucket. So: 10 % is reached at 1000 (1000 values); 30 % needs
    /// 3000 values, and the bucket 3000-3001 brings the count to 3001; 50 %
    /// the bucket 5000-5003; 77.5 % (past 75 %, steps of 2.5) 7750, in the
    /// bucket 7748-7751. Near the end the levels step by 2⁻¹³ × 100 %
    /// over the bucket 9992-9999 (99.99 %): 99.98779296875 %, 1 − 2⁻¹³,
    /// is 8192 in 1/(1-p), and Java rounds its 13th digit, a 5, up.
    /// The last bucket (10000-10007, with one value) takes one level,
    /// 99.990234375 %, then the final step at 100 %. The mean counts each
    /// value at the middle of its bucket (rounded up): 5000.898 µs where
    /// the values' own is 5000.5 (1 µs more per 2-wide bucket, 2 per 4-wide,
    /// 4 per 8-wide: 1024 + 2048 + 904 + 4 over 10,000 values).
    #[test]
    fn the_percentile_distribution_is_javas_text() {
        let mut h = hist();
        for v in 1..=10_000 {
            h.record(v).unwrap();
        }
        let text = percentile_distribution(&h, TICKS_PER_HALF_DISTANCE, US_PER_MS);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines[1], "");
        assert_eq!(
            lines[2],
            "       0.001 0.000000000000          1           1.00"
        );
        for want in [
            "       1.000 0.100000000000       1000           1.11",
            "       3.001 0.300000000000       3001           1.43",
            "       5.003 0.500000000000       5003           2.00",
            "       7.751 0.775000000000       7751           4.44",
            "       9.999 0.999877929688       9999        8192.00",
        ] {
            assert!(lines.contains(&want), "no line {want:?} in\n{text}");
        }
        let n = lines.len();
        assert_eq!(
            &lines[n - 5..],
            &[
                "      10.007 0.999902343750      10000       10240.00",
                "      10.007 1.000000000000      10000",
                "#[Mean    =        5.001, StdDeviation   =        2.887]",
                "#[Max     =       10.007, Total count    =        10000]",
                "#[Buckets =           22, SubBuckets     =         2048]",
            ]
        );
        // Every level once, rising; the counts never fall.
        let steps = percentile_steps(&h, TICKS_PER_HALF_DISTANCE);
        assert!(steps.windows(2).all(|w| w[0].percentile < w[1].percentile));
        assert!(steps.windows(2).all(|w| w[0].total <= w[1].total));
    }

    #[test]
    fn an_empty_histogram_has_a_header_and_a_footer() {
        let text = percentile_distribution(&hist(), TICKS_PER_HALF_DISTANCE, US_PER_MS);
        assert_eq!(text.lines().count(), 5, "{text}");
        assert!(text.contains("#[Max     =        0.000, Total count    =            0]"));
    }

    #[test]
    fn the_interval_log_reads_back_with_the_same_counts() {
        // Given three one-second intervals of known values
        let started = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_800_000_123);
        let mut log = IntervalLog::default();
        let mut written = Vec::new();
        for i in 0..3u64 {
            let mut h = hist();
            for v in 1..=(100 * (i + 1)) {
                h.record(v * 37 + i).unwrap();
            }
            let start = Duration::from_millis(1000 * i + 5);
            log.push(&h, start, Duration::from_millis(1000)).unwrap();
            written.push(h);
        }
        let bytes = log.to_bytes(started, "tracking loadgen: ack").unwrap();
        let text = std::str::from_utf8(&bytes).unwrap();
        // Then the header is the format's
        let head: Vec<&str> = text.lines().take(5).collect();
        assert_eq!(
            head,
            [
                "#tracking loadgen: ack",
                "#[Histogram log format version 1.3]",
                "#[StartTime: 1764800000.123 (seconds since epoch)]",
                "#[BaseTime: 1764800000.123 (seconds since epoch)]",
                LEGEND.trim_end(),
            ]
        );
        assert!(text.lines().nth(5).unwrap().starts_with("0.005,1.000,"));
        // And the crate's parser finds the times and each histogram
        let mut deserializer = Deserializer::new();
        let mut intervals = Vec::new();
        for entry in IntervalLogIterator::new(&bytes) {
            match entry.unwrap() {
                LogEntry::StartTime(t) | LogEntry::BaseTime(t) => {
                    assert_eq!(t, Duration::from_millis(1_764_800_000_123));
                }
                LogEntry::Interval(i) => intervals.push(i),
            }
        }
        assert_eq!(intervals.len(), 3);
        for (i, (got, want)) in intervals.iter().zip(&written).enumerate() {
            assert_eq!(
                got.start_timestamp(),
                Duration::from_millis(1000 * i as u64 + 5)
            );
            assert_eq!(got.duration(), Duration::from_secs(1));
            assert_eq!(got.max(), want.max() as f64);
            let raw = STANDARD.decode(got.encoded_histogram()).unwrap();
            let h: Histogram<u64> = deserializer.deserialize(&mut raw.as_slice()).unwrap();
            assert_eq!(h.len(), want.len());
            assert_eq!(
                h.iter_recorded()
                    .map(|v| (v.value_iterated_to(), v.count_at_value()))
                    .collect::<Vec<_>>(),
                want.iter_recorded()
                    .map(|v| (v.value_iterated_to(), v.count_at_value()))
                    .collect::<Vec<_>>()
            );
        }
    }
}
