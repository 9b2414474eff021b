//! The read probe: `GET /tracking/stats/daily` at a fixed rate while the
//! load runs, each on a new connection, latency counted from the read's
//! intended time (open model).
//!
//! It runs on a thread and a runtime of its own. On the generator's shared
//! runtime a read waited behind thousands of ingest sends per second and a
//! 1 ms polling tick before it was even sent, and that wait (the
//! generator's, on a 2-core machine it shares with the worker) was counted
//! as the service's latency. Here each read starts at its intended instant,
//! and the probe's threads wake promptly (`probe_slice`).

use super::http::Conn;
use super::probe::{Hists, Shared};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

/// At most this many reads in flight: past it the probe waits, and the
/// wait counts (latency is from the intended time).
const MAX_IN_FLIGHT: usize = 64;
/// How often a probe waiting for its next read looks at `stop`.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// Starts the probe; it runs until `shared.stop` is set.
pub(super) fn spawn(
    addr: SocketAddr,
    path: String,
    rate: f64,
    shared: Arc<Shared>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("loadgen-reads")
        .on_thread_start(probe_slice)
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("loadgen-read-clock".into())
        .spawn(move || {
            probe_slice();
            run(&runtime, addr, path.into(), rate, &shared)
        })
}

/// The probe's threads ask for a short time slice (as the service's front
/// thread does, `http::FRONT_SLICE`): on a machine the generator's senders
/// keep busy, a response that arrived otherwise waited for a sender's
/// slice to end before the probe saw it, and that wait was counted as the
/// service's latency. It gives the probe no more CPU, only a prompt
/// wake-up, as it would have on a machine of its own.
fn probe_slice() {
    crate::process::request_short_slice(crate::http::FRONT_SLICE);
}

/// Starts each read at its intended instant. The clock is this thread's
/// own sleep (the kernel's high-resolution timers: tens of microseconds
/// late), not tokio's timer wheel, which rounds every deadline up to the
/// next millisecond: that rounding alone was 0.5 ms on average, counted as
/// the service's latency.
fn run(
    runtime: &tokio::runtime::Runtime,
    addr: SocketAddr,
    path: Arc<str>,
    rate: f64,
    shared: &Arc<Shared>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let start = Instant::now();
    let mut n = 0u64;
    while !shared.stop.load(Relaxed) {
        n += 1;
        let intended = start + Duration::from_secs_f64(n as f64 / rate);
        // In steps, so that a slow rate still notices `stop` quickly.
        loop {
            let now = Instant::now();
            if now >= intended {
                break;
            }
            if shared.stop.load(Relaxed) {
                return;
            }
            std::thread::sleep((intended - now).min(STOP_CHECK));
        }
        let Ok(slot) = runtime.block_on(slots.clone().acquire_owned()) else {
            return;
        };
        let (shared, path) = (shared.clone(), path.clone());
        runtime.spawn(async move {
            let _slot = slot;
            let mut c = Conn::new(addr);
            match c.request("GET", &path, b"").await {
                Ok((200, _)) => {
                    if let Ok(mut h) = shared.hists.lock() {
                        Hists::record(&mut h.read, intended);
                    }
                }
                _ => {
                    shared.reads_failed.fetch_add(1, Relaxed);
                }
            }
        });
    }
}
