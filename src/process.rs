//! Process-level settings the binary applies at start: transparent huge
//! pages off, a lower priority for the pipeline's threads and the lowest
//! for background work; and the resident set, for whoever reports it. Here rather than in `main.rs` so that `main` stays
//! configuration and a call to `app::run`. Linux only; elsewhere they do
//! nothing.

/// Transparent huge pages off for this process. mimalloc asks the kernel
/// for them (madvise) and the kernel then backs partly used 2 MiB ranges
/// whole: 118 MiB of a 448 MiB peak in the 1,000,000-user memory scenario,
/// against 265 MiB at the same load without them (BENCHMARKS.md, "Memory").
/// Also covers kernels set to use them everywhere (`always`).
pub fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes plain integers and only sets a
        // flag of this process; no memory is passed to the kernel.
        let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if rc != 0 {
            eprintln!(
                "warning: could not disable transparent huge pages: {}",
                std::io::Error::last_os_error()
            );
        }
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
        if rc != 0 {
            eprintln!(
                "warning: could not lower a thread's priority: {}",
                std::io::Error::last_os_error()
            );
        }
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
