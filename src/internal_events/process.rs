//! The standard `process_*` series every Prometheus client library
//! exports (CPU seconds, resident and virtual memory, open and maximum
//! file descriptors, start time), rendered at each scrape from `/proc`,
//! so dashboards and alerts written for any process work here unchanged.
//!
//! Rendered as text beside the recorder's output rather than recorded:
//! `process_cpu_seconds_total` is a counter with a fractional value, which
//! the `metrics` crate's integer counters cannot carry. Linux only; an
//! empty string elsewhere, or for any reading `/proc` refuses.

use std::fmt::Write as _;

/// What `/proc/self` says about this process.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub start_time_seconds: f64,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

impl ProcessStats {
    /// Reads `/proc/self`; `None` where it cannot be read.
    pub fn read() -> Option<ProcessStats> {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: sysconf takes a plain integer and reads a constant.
            let (ticks, page) = unsafe {
                (
                    libc::sysconf(libc::_SC_CLK_TCK),
                    libc::sysconf(libc::_SC_PAGESIZE),
                )
            };
            let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
            let boot = std::fs::read_to_string("/proc/stat").ok()?;
            let mut s = Self::parse(
                &stat,
                &boot,
                u64::try_from(ticks).ok()?,
                u64::try_from(page).ok()?,
            )?;
            s.open_fds = std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as u64);
            s.max_fds = std::fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|l| max_open_files(&l));
            Some(s)
        }
        #[cfg(not(target_os = "linux"))]
        None
    }

    /// From `/proc/self/stat` and `/proc/stat` (for the boot time), with
    /// the clock ticks per second and the page size.
    pub fn parse(stat: &str, proc_stat: &str, ticks: u64, page: u64) -> Option<ProcessStats> {
        if ticks == 0 {
            return None;
        }
        // The command name may hold spaces and parentheses: fields start
        // after its last ')'; the first of them is field 3 (the state).
        let fields: Vec<&str> = stat
            .get(stat.rfind(')')? + 1..)?
            .split_whitespace()
            .collect();
        let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
        let (utime, stime) = (field(14)?, field(15)?);
        let start_ticks = field(22)?;
        let boot_time: u64 = proc_stat
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        Some(ProcessStats {
            cpu_seconds: (utime + stime) as f64 / ticks as f64,
            resident_bytes: field(24)? * page,
            virtual_bytes: field(23)?,
            start_time_seconds: boot_time as f64 + start_ticks as f64 / ticks as f64,
            open_fds: None,
            max_fds: None,
        })
    }

    /// The series in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut one = |name: &str, kind: &str, help: &str, value: f64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        one(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            self.cpu_seconds,
        );
        one(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            self.resident_bytes as f64,
        );
        one(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            self.virtual_bytes as f64,
        );
        one(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            self.start_time_seconds,
        );
        if let Some(n) = self.open_fds {
            one(
                "process_open_fds",
                "gauge",
                "Number of open file descriptors.",
                n as f64,
            );
        }
        if let Some(n) = self.max_fds {
            one(
                "process_max_fds",
                "gauge",
                "Maximum number of open file descriptors.",
                n as f64,
            );
        }
        out
    }
}

/// The soft limit of "Max open files" in `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The `process_*` block of a scrape (empty where `/proc` is unreadable).
pub fn exposition() -> String {
    ProcessStats::read().map(|s| s.render()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (tracking (w) x) S 1 4242 4242 0 -1 4194560 5000 0 0 0 \
                        250 50 0 0 20 0 12 0 1000 734003200 12800 18446744073709551615";
    const PROC_STAT: &str = "cpu  1 2 3 4\nbtime 1764770000\nprocesses 99\n";

    #[test]
    fn given_proc_files_then_the_standard_values() {
        let s = ProcessStats::parse(STAT, PROC_STAT, 100, 4096).expect("parsed");
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.resident_bytes, 12800 * 4096);
        assert_eq!(s.virtual_bytes, 734_003_200);
        assert_eq!(s.start_time_seconds, 1_764_770_010.0);
    }

    #[test]
    fn given_a_truncated_stat_then_nothing() {
        assert_eq!(
            ProcessStats::parse("4242 (x) S 1 2", PROC_STAT, 100, 4096),
            None
        );
        assert_eq!(ProcessStats::parse(STAT, "cpu 1 2", 100, 4096), None);
    }

    #[test]
    fn the_limits_file_gives_the_soft_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
    }

    #[test]
    fn the_block_is_typed_prometheus_text() {
        let s = ProcessStats::parse(STAT, PROC_STAT, 100, 4096).unwrap();
        let text = ProcessStats {
            open_fds: Some(12),
            max_fds: None,
            ..s
        }
        .render();
        assert!(text
            .contains("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 3\n"));
        assert!(text.contains("process_open_fds 12\n"));
        assert!(!text.contains("process_max_fds"));
    }

    #[test]
    fn this_process_reads_itself() {
        if cfg!(target_os = "linux") {
            let s = ProcessStats::read().expect("/proc/self");
            assert!(s.resident_bytes > 0 && s.open_fds.unwrap_or(0) > 0);
        }
    }
}
