//! Process-level settings the binary applies at start: transparent huge
//! pages off, a lower priority for the pipeline's threads and the lowest
//! for background work; and a deadline on a stop once it has begun. Also
//! two readings for whoever reports them: the process's resident set and
//! the machine's CPU times. Here rather than in `main.rs` so that `main`
//! stays configuration and a call to `app::run`. Linux only; elsewhere
//! the settings do nothing and the readings are `None`.

/// Transparent huge pages off for this process. mimalloc asks the kernel
/// for them (madvise) and the kernel then backs partly used 2 MiB ranges
/// whole: 118 MiB of a 448 MiB peak in the 1,000,000-user memory scenario,
/// against 265 MiB at the same load without them (`loadtest/scenarios/memory.sh`).
/// Also covers kernels set to use them everywhere (`always`).
pub fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes plain integers and only sets a
        // flag of this process; no memory is passed to the kernel.
        let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        warn_on_failure(rc != 0, "disable transparent huge pages");
    }
}

/// Prints a warning with the OS error if a system call failed. A warning,
/// not an error: the service runs without these settings.
#[cfg(target_os = "linux")]
fn warn_on_failure(failed: bool, what: &str) {
    if failed {
        eprintln!(
            "warning: could not {what}: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// How long past its grace a stop may take before the process ends
/// itself ([`exit_if_stuck`]): after the drain's grace, the supervisor's
/// stop (at most 5 s) and the closing of the log, the sink and the store
/// take well under it.
const STUCK_STOP_MARGIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Ends the process with exit code 70 (`EX_SOFTWARE`) if it is still
/// running [`STUCK_STOP_MARGIN`] past `grace` from now: called when a stop
/// begins (SIGTERM, SIGINT), so a stop always ends. A task that never
/// yields can hold a runtime's only worker thread, and then no timeout on
/// that runtime can fire (the Pulsar client's consumer engine retries a
/// flow message on a dead connection without waiting: a worker paused
/// past the broker's keepalive, `loadtest/faults/pause.sh`, can meet it).
/// The check runs on its own OS thread for that reason. Ending the
/// process here is a crash as far as the data goes, which loses nothing
/// acknowledged: what was not acknowledged is delivered again.
pub fn exit_if_stuck(grace: std::time::Duration) {
    let after = grace + STUCK_STOP_MARGIN;
    on_stuck(after, move || {
        eprintln!(
            "error: the stop did not finish within {after:?}; exiting now \
             (nothing acknowledged is lost: what was not acknowledged is delivered again)"
        );
        std::process::exit(70);
    });
}

/// Runs `stuck` on a thread of its own `after` from now, unless the
/// process has ended by then.
fn on_stuck(after: std::time::Duration, stuck: impl FnOnce() + Send + 'static) {
    let started = std::thread::Builder::new()
        .name("stop-deadline".into())
        .spawn(move || {
            std::thread::sleep(after);
            stuck();
        });
    if let Err(e) = started {
        eprintln!("warning: no deadline on this stop (cannot start its thread: {e})");
    }
}

/// The nice value of background work that may wait for idle CPU: the
/// embedded store's flush and compaction workers (see `app::open_store`).
pub const BACKGROUND_NICE: u8 = 19;

/// Raises the calling thread's nice value; threads it starts inherit it.
/// The main thread keeps its own: it starts the HTTP runtime's threads,
/// while the log writers and the actors start on the pipeline runtime's
/// threads, and the store's workers on a thread at [`BACKGROUND_NICE`]
/// (see `app::open_store`).
pub fn lower_thread_priority(nice: u8) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain integers; on Linux, PRIO_PROCESS with `who` 0 sets
        // the calling thread's nice value only. Raising it needs no privilege.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, libc::c_int::from(nice)) };
        warn_on_failure(rc != 0, "lower a thread's priority");
    }
}

/// Asks the kernel for a short time slice for the calling thread (Linux
/// 6.12 and later, EEVDF: `sched_attr.sched_runtime` of a normal thread).
/// A thread with a shorter slice gets an earlier deadline, so when it
/// wakes up it runs ahead of threads that are using up long slices, without
/// any more CPU share (its nice value stays as it is). Needs no privilege;
/// older kernels ignore the field. Per thread: each thread that should have
/// it calls this (a runtime's `on_thread_start`).
pub fn request_short_slice(slice: std::time::Duration) {
    #[cfg(target_os = "linux")]
    {
        #[repr(C)]
        #[derive(Default)]
        struct SchedAttr {
            size: u32,
            policy: u32,
            flags: u64,
            nice: i32,
            priority: u32,
            runtime: u64,
            deadline: u64,
            period: u64,
        }
        // SAFETY: getpriority takes plain integers.
        let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let attr = SchedAttr {
            size: std::mem::size_of::<SchedAttr>() as u32,
            policy: libc::SCHED_OTHER as u32,
            nice,
            runtime: u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX),
            ..SchedAttr::default()
        };
        // SAFETY: `attr` is a valid sched_attr (the first, 48-byte layout,
        // SCHED_ATTR_SIZE_VER0, its size in `size`) that lives across the
        // call; pid 0 is the calling thread; flags 0.
        let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
        warn_on_failure(rc != 0, "request a short time slice");
    }
}

/// The process's resident set in bytes (`VmRSS` of `/proc/self/status`,
/// which the kernel gives in KiB whatever the page size); `None` where it
/// cannot be read. Read by the metrics upkeep and the load generator.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The machine's CPU time so far, from the first line of `/proc/stat` (all
/// cores, in clock ticks): what was busy and what was not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    pub busy: u64,
    pub idle: u64,
}

impl CpuTimes {
    /// `/proc/stat` now; `None` where it cannot be read (not Linux).
    pub fn read() -> Option<CpuTimes> {
        Self::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// Parses the aggregate `cpu` line: user nice system idle iowait irq
    /// softirq steal (guest time is already inside user and nice).
    /// Idle and iowait count as not busy; steal counts as busy, since
    /// this machine could not have used it.
    pub fn parse(stat: &str) -> Option<CpuTimes> {
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        let [user, nice, system, idle, iowait, irq, softirq] = v.get(..7)?.try_into().ok()?;
        let steal = v.get(7).copied().unwrap_or(0);
        Some(CpuTimes {
            busy: user + nice + system + irq + softirq + steal,
            idle: idle + iowait,
        })
    }

    /// The busy share of all cores between `earlier` and `self`, in
    /// percent; `None` if no time passed.
    pub fn busy_pct_since(&self, earlier: &CpuTimes) -> Option<f64> {
        let busy = self.busy.checked_sub(earlier.busy)?;
        let total = busy + self.idle.checked_sub(earlier.idle)?;
        (total > 0).then(|| 100.0 * busy as f64 / total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::CpuTimes;

    /// The calling thread's slice in ns as the scheduler's debug file shows
    /// it (`se.slice`), where the kernel has that file.
    #[cfg(target_os = "linux")]
    fn own_slice_ns() -> Option<u64> {
        let sched = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
        let line = sched.lines().find(|l| l.starts_with("se.slice"))?;
        line.split(':').nth(1)?.trim().parse().ok()
    }

    /// Custom slices for normal threads came with Linux 6.12.
    #[cfg(target_os = "linux")]
    fn kernel_has_custom_slices() -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut parts = release.trim().split(['.', '-']);
        let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        (major, minor) >= (6, 12)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_short_slice_is_granted_to_the_calling_thread_only_and_keeps_its_nice() {
        if !kernel_has_custom_slices() || own_slice_ns().is_none() {
            eprintln!("skipped: no custom slices or no /proc/thread-self/sched here");
            return;
        }
        let before = own_slice_ns();
        let (slice, nice) = std::thread::spawn(|| {
            super::lower_thread_priority(5);
            super::request_short_slice(std::time::Duration::from_micros(300));
            // SAFETY: plain integers.
            let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            (own_slice_ns(), nice)
        })
        .join()
        .unwrap();
        assert_eq!(slice, Some(300_000));
        assert_eq!(nice, 5, "the nice value must stay what it was");
        assert_eq!(own_slice_ns(), before, "other threads keep theirs");
    }

    #[test]
    fn a_stop_still_running_at_its_deadline_is_ended_and_not_before() {
        // Given a deadline 200 ms away
        let (tx, rx) = std::sync::mpsc::channel();
        let started = std::time::Instant::now();
        super::on_stuck(std::time::Duration::from_millis(200), move || {
            let _ = tx.send(started.elapsed());
        });
        // Then nothing happens at once, and the action runs once it passed
        assert!(rx.try_recv().is_err(), "ran before its deadline");
        let ran_after = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the deadline's action ran");
        assert!(
            ran_after >= std::time::Duration::from_millis(200),
            "{ran_after:?}"
        );
    }

    #[test]
    fn cpu_times_parse_the_aggregate_line_and_give_the_busy_share() {
        let a =
            CpuTimes::parse("cpu  100 5 50 800 20 3 2 10 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n").unwrap();
        assert_eq!(
            a,
            CpuTimes {
                busy: 170,
                idle: 820
            }
        );
        let b = CpuTimes::parse("cpu  160 5 70 820 20 3 2 10 0 0\n").unwrap();
        // 80 busy ticks out of 100.
        assert_eq!(b.busy_pct_since(&a), Some(80.0));
        assert_eq!(a.busy_pct_since(&a), None);
        assert_eq!(a.busy_pct_since(&b), None);
        // Older kernels print no steal column.
        assert_eq!(
            CpuTimes::parse("cpu 1 2 3 4 5 6 7\n"),
            Some(CpuTimes { busy: 19, idle: 9 })
        );
        assert_eq!(CpuTimes::parse("cpu0 1 2 3\n"), None);
        assert_eq!(CpuTimes::parse("cpu  1 x 3 4 5 6 7 8\n"), None);
    }
}
