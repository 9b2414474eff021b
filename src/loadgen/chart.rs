//! The report's chart, one SVG of three panels: throughput per second
//! (target, acknowledged, persisted), latency per second (p50 and p99 of
//! the acknowledgement and of the end-to-end path), and the latency by
//! percentile over the whole run (the percentile spectrum, on
//! HdrHistogram's 1/(1-p) axis: 0 %, 90 %, 99 %, 99.9 % equally spaced).
//! Latency is on a log scale, so a tail a hundred times the median stays
//! readable beside it. Every axis has ticks, tick labels and one label.

use super::report::Report;
use std::fmt::Write;

/// The latency of one path by percentile: (percentile level in %, ms),
/// levels below 100 % (the 1/(1-p) axis cannot place 100 %).
pub struct Spectrum<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub points: Vec<(f64, f64)>,
    pub max_ms: f64,
}

const WIDTH: f64 = 960.0;
const TITLE: f64 = 46.0;
const PANEL: f64 = 300.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 52.0;
/// Width of a character of the 12 px sans-serif, for laying out legends.
const CHAR: f64 = 6.8;

enum Scale {
    Linear {
        max: f64,
    },
    /// Decades `lo` to `hi` (powers of ten).
    Log {
        lo: i32,
        hi: i32,
    },
}

impl Scale {
    /// Where `v` falls, 0 (start) to 1 (end); `None` off a log scale.
    fn at(&self, v: f64) -> Option<f64> {
        match *self {
            Scale::Linear { max } => Some(v / max),
            Scale::Log { lo, hi } => {
                (v > 0.0).then(|| (v.log10() - f64::from(lo)) / f64::from(hi - lo))
            }
        }
    }
}

struct Axis {
    scale: Scale,
    ticks: Vec<(f64, String)>,
    label: &'static str,
}

struct Series<'a> {
    name: String,
    color: &'a str,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

/// A number as a tick label: no trailing zeros, no exponent.
fn number(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// A linear axis from 0 past `max` in steps of 1, 2 or 5 × 10^k, about
/// five of them.
fn linear(max: f64, label: &'static str) -> Axis {
    let max = if max > 0.0 { max } else { 1.0 };
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let n = (max / step).ceil().max(1.0) as u32;
    let ticks = (0..=n)
        .map(|i| (f64::from(i) * step, number(f64::from(i) * step)))
        .collect();
    Axis {
        scale: Scale::Linear {
            max: f64::from(n) * step,
        },
        ticks,
        label,
    }
}

/// A log axis over the decades holding `values` (positive ones; 1 when
/// there are none), labelled at each decade, and at 2 and 5 as well when
/// it spans two decades or less.
fn log(values: impl Iterator<Item = f64>, label: &'static str) -> Axis {
    let (mut min, mut max) = (f64::INFINITY, 0.0f64);
    for v in values.filter(|v| *v > 0.0 && v.is_finite()) {
        min = min.min(v);
        max = max.max(v);
    }
    if max == 0.0 {
        (min, max) = (1.0, 1.0);
    }
    let lo = min.log10().floor() as i32;
    let hi = (max.log10().ceil() as i32).max(lo + 1);
    let mut ticks = Vec::new();
    for k in lo..=hi {
        let decade = 10f64.powi(k);
        ticks.push((decade, number(decade)));
        if hi - lo <= 2 && k < hi {
            ticks.push((2.0 * decade, number(2.0 * decade)));
            ticks.push((5.0 * decade, number(5.0 * decade)));
        }
    }
    Axis {
        scale: Scale::Log { lo, hi },
        ticks,
        label,
    }
}

/// The percentile axis: x = log10(1/(1-p)), labelled 0 %, 90 %, 99 %, ...
/// up to the first level past every point (99 % at least).
fn percentile_axis(points: impl Iterator<Item = f64>) -> Axis {
    let nines = points
        .map(|p| (1.0 / (1.0 - p / 100.0)).log10())
        .fold(2.0f64, f64::max)
        .ceil() as i32;
    let ticks = (0..=nines)
        .map(|k| {
            let label = match k {
                0 => "0%".to_string(),
                1 => "90%".to_string(),
                2 => "99%".to_string(),
                k => format!("99.{}%", "9".repeat(k as usize - 2)),
            };
            (f64::from(k), label)
        })
        .collect();
    Axis {
        scale: Scale::Linear {
            max: f64::from(nines),
        },
        ticks,
        label: "percentile",
    }
}

/// The plot area of panel `k`: left, top, width, height.
fn frame(k: usize) -> (f64, f64, f64, f64) {
    let top = TITLE + k as f64 * PANEL + TOP;
    (LEFT, top, WIDTH - LEFT - RIGHT, PANEL - TOP - BOTTOM)
}

/// Draws one panel: grid, axes with ticks and labels, the series, and the
/// title with the legend beside it.
fn panel(out: &mut String, k: usize, title: &str, x: &Axis, y: &Axis, series: &[Series]) {
    let (x0, y0, w, h) = frame(k);
    let px = |v: f64| x.scale.at(v).map(|f| x0 + w * f);
    let py = |v: f64| y.scale.at(v).map(|f| y0 + h - h * f);
    for (v, label) in &y.ticks {
        let Some(yy) = py(*v) else { continue };
        let _ = write!(
            out,
            r##"<line x1="{x0}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#e3e3e3"/><line x1="{:.1}" y1="{yy:.1}" x2="{x0}" y2="{yy:.1}" stroke="black"/><text x="{:.1}" y="{yy:.1}" dy="0.35em" text-anchor="end">{label}</text>"##,
            x0 + w,
            x0 - 5.0,
            x0 - 8.0
        );
    }
    for (v, label) in &x.ticks {
        let Some(xx) = px(*v) else { continue };
        let _ = write!(
            out,
            r##"<line x1="{xx:.1}" y1="{y0}" x2="{xx:.1}" y2="{:.1}" stroke="#e3e3e3"/><line x1="{xx:.1}" y1="{:.1}" x2="{xx:.1}" y2="{:.1}" stroke="black"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            y0 + h,
            y0 + h,
            y0 + h + 5.0,
            y0 + h + 19.0
        );
    }
    let _ = write!(
        out,
        r#"<path d="M{x0},{y0} V{:.1} H{:.1}" fill="none" stroke="black"/>"#,
        y0 + h,
        x0 + w
    );
    let _ = write!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        x0 + w / 2.0,
        y0 + h + 40.0,
        x.label
    );
    let (lx, ly) = (22.0, y0 + h / 2.0);
    let _ = write!(
        out,
        r#"<text x="{lx}" y="{ly:.1}" text-anchor="middle" transform="rotate(-90 {lx} {ly:.1})">{}</text>"#,
        y.label
    );
    for s in series {
        let mut d = String::new();
        let mut pen_down = false;
        for (xv, yv) in &s.points {
            match (px(*xv), py(*yv)) {
                (Some(a), Some(b)) => {
                    let _ = write!(d, "{}{a:.1},{b:.1} ", if pen_down { "L" } else { "M" });
                    pen_down = true;
                }
                _ => pen_down = false,
            }
        }
        let dash = if s.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = write!(
            out,
            r#"<path d="{}" fill="none" stroke="{}" stroke-width="1.6"{dash}/>"#,
            d.trim_end(),
            s.color
        );
    }
    let title_y = y0 - TOP + 22.0;
    let _ = write!(
        out,
        r#"<text x="{x0}" y="{title_y:.1}" font-weight="bold">{title}</text>"#
    );
    // Legend: right-aligned on the title's line.
    let mut right = x0 + w;
    for s in series.iter().rev() {
        let left = right - 24.0 - CHAR * s.name.chars().count() as f64;
        let dash = if s.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = write!(
            out,
            r#"<line x1="{left:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="{title_y:.1}">{}</text>"#,
            title_y - 4.0,
            left + 18.0,
            title_y - 4.0,
            s.color,
            left + 22.0,
            s.name
        );
        right = left - 14.0;
    }
}

/// Renders the chart of a run.
pub fn svg(r: &Report, spectra: &[Spectrum]) -> String {
    let height = TITLE + 3.0 * PANEL;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">"#
    );
    out.push_str(r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = write!(
        out,
        r#"<text x="{LEFT}" y="20" font-size="14" font-weight="bold">tracking loadgen: {}, {:.1} s of sending</text>"#,
        escape(&r.mode),
        r.duration_s,
    );
    let _ = write!(
        out,
        r##"<text x="{LEFT}" y="38" fill="#444444">{} ({}, {} build), started {}, {} CPUs</text>"##,
        escape(&r.build.version),
        escape(&r.build.revision),
        escape(&r.build.profile),
        escape(&r.started_at),
        r.machine.cpus
    );
    let t_max = r.timeline.last().map_or(1, |s| s.t).max(1) as f64;
    let time = || linear(t_max, "time since the start (s)");
    let at = |f: fn(&super::report::Second) -> f64| -> Vec<(f64, f64)> {
        r.timeline.iter().map(|s| (s.t as f64, f(s))).collect()
    };
    // The target line ends with the schedule: the drain has none.
    let target: Vec<(f64, f64)> = r
        .timeline
        .iter()
        .filter(|s| (s.t as f64) < r.duration_s + 1.0)
        .map(|s| (s.t as f64, s.target_rate))
        .collect();
    let throughput = vec![
        Series {
            name: "acknowledged".into(),
            color: "#1f77b4",
            dashed: false,
            points: at(|s| s.acked as f64),
        },
        Series {
            name: "persisted".into(),
            color: "#2ca02c",
            dashed: false,
            points: at(|s| s.persisted as f64),
        },
        // Last: drawn over the acknowledgements that usually match it.
        Series {
            name: "target".into(),
            color: "#444444",
            dashed: true,
            points: target,
        },
    ];
    let max = throughput
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    let y = linear(max * 1.05, "commands per second");
    panel(
        &mut out,
        0,
        "Throughput per second",
        &time(),
        &y,
        &throughput,
    );
    sending_end(&mut out, 0, &time(), r.duration_s);

    let mut latency = vec![
        Series {
            name: "ack p50".into(),
            color: "#9ecae1",
            dashed: false,
            points: at(|s| s.ack_p50_ms),
        },
        Series {
            name: "ack p99".into(),
            color: "#1f77b4",
            dashed: false,
            points: at(|s| s.ack_p99_ms),
        },
        Series {
            name: "end-to-end p50".into(),
            color: "#a1d99b",
            dashed: false,
            points: at(|s| s.e2e_p50_ms),
        },
        Series {
            name: "end-to-end p99".into(),
            color: "#2ca02c",
            dashed: false,
            points: at(|s| s.e2e_p99_ms),
        },
    ];
    latency.retain(|s| s.points.iter().any(|p| p.1 > 0.0));
    let y = log(
        latency.iter().flat_map(|s| s.points.iter().map(|p| p.1)),
        "latency (ms, log scale)",
    );
    panel(
        &mut out,
        1,
        "Latency per second (from the intended send time)",
        &time(),
        &y,
        &latency,
    );
    sending_end(&mut out, 1, &time(), r.duration_s);

    let spectrum: Vec<Series> = spectra
        .iter()
        .filter(|s| !s.points.is_empty())
        .map(|s| Series {
            name: format!("{} (max {} ms)", s.name, number_3(s.max_ms)),
            color: s.color,
            dashed: false,
            points: s
                .points
                .iter()
                .map(|(p, ms)| ((1.0 / (1.0 - p / 100.0)).log10(), *ms))
                .collect(),
        })
        .collect();
    let x = percentile_axis(spectra.iter().flat_map(|s| s.points.iter().map(|p| p.0)));
    let y = log(
        spectra.iter().flat_map(|s| s.points.iter().map(|p| p.1)),
        "latency (ms, log scale)",
    );
    panel(
        &mut out,
        2,
        "Latency by percentile, whole run",
        &x,
        &y,
        &spectrum,
    );
    out.push_str("</svg>\n");
    out
}

/// A dotted vertical line where the schedule ended (the drain follows).
fn sending_end(out: &mut String, k: usize, x: &Axis, at: f64) {
    let (x0, y0, w, h) = frame(k);
    let Some(f) = x.scale.at(at).filter(|f| *f < 0.98) else {
        return;
    };
    let xx = x0 + w * f;
    let _ = write!(
        out,
        r##"<line x1="{xx:.1}" y1="{y0}" x2="{xx:.1}" y2="{:.1}" stroke="#555555" stroke-dasharray="2 3"/><text x="{:.1}" y="{:.1}" fill="#555555">drain</text>"##,
        y0 + h,
        xx + 4.0,
        y0 + 14.0
    );
}

/// Three significant decimals at most, for a legend.
fn number_3(v: f64) -> String {
    number((v * 1000.0).round() / 1000.0)
}

/// Text for an SVG text node.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_axes_step_by_one_two_or_five() {
        let a = linear(930.0, "x");
        let values: Vec<f64> = a.ticks.iter().map(|t| t.0).collect();
        assert_eq!(values, [0.0, 200.0, 400.0, 600.0, 800.0, 1000.0]);
        assert_eq!(a.ticks[5].1, "1000");
        let b = linear(0.7, "x");
        assert_eq!(b.ticks[1].1, "0.2");
        let c = linear(0.0, "x");
        assert!(c.ticks.len() >= 2);
    }

    #[test]
    fn log_axes_cover_the_decades_of_the_values() {
        let a = log([0.35, 42.0, 0.0].into_iter(), "ms");
        let labels: Vec<&str> = a.ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(labels, ["0.1", "1", "10", "100"]);
        let b = log([1.2, 7.0].into_iter(), "ms");
        let labels: Vec<&str> = b.ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(labels, ["1", "2", "5", "10"]);
        assert_eq!(b.scale.at(0.0), None, "zero has no place on a log scale");
    }

    #[test]
    fn the_percentile_axis_is_labelled_in_nines() {
        let a = percentile_axis([0.0, 50.0, 99.95].into_iter());
        let labels: Vec<&str> = a.ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%"]);
    }
}
