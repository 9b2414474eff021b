//! The `tracking` binary: parses the configuration and calls the library.

use alpes_tracking::cli::{Cli, Command};
use alpes_tracking::{app, config, process, verify};
use clap::Parser;
use std::process::ExitCode;

/// mimalloc: the pipeline allocates many small, short-lived objects across
/// threads, where glibc's malloc showed up at ~20% of the CPU in profiles.
/// The `system-allocator` feature keeps the system's, for heap profilers.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    process::disable_transparent_huge_pages();
    let cli = Cli::parse();
    // The probe is one request: none of the worker's process settings, no
    // logging, a single-threaded runtime of its own.
    if let Some(Command::Probe(args)) = &cli.command {
        return alpes_tracking::probe::main(args);
    }
    // The worker's arguments (`run` is also the default command); the
    // tools have none.
    let worker = match &cli.command {
        None => Some(&cli.run),
        Some(Command::Run(r)) => Some(r),
        Some(_) => None,
    };
    // The embedded store's process holds the memory (its bound); a worker
    // on the shared store keeps mimalloc's default (see the function).
    #[cfg(not(feature = "system-allocator"))]
    if worker.is_none_or(|r| r.store.scylla_nodes.is_none()) {
        return_freed_memory_soon();
    }
    init_tracing(&worker.unwrap_or(&cli.run).log_format);
    // Only a worker lowers its pipeline's priority (the load generator's
    // in-process pipeline competes with nothing of its own).
    let pipeline_nice = worker.map_or(0, |r| r.pipeline_nice);
    // Every command's runtime has the pipeline's worker count (the load
    // generator's its own `--pipeline-threads`), so the load generator's
    // in-process pipeline runs as a worker's would.
    let pipeline_threads = match &cli.command {
        Some(Command::Loadgen(l)) => l.pipeline_threads,
        _ => worker.and_then(|r| r.pipeline_threads),
    }
    .map_or_else(config::default_pipeline_threads, usize::from);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().worker_threads(pipeline_threads);
    if pipeline_nice > 0 {
        builder.on_thread_start(move || process::lower_thread_priority(pipeline_nice));
    }
    let runtime = match builder.build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            None => run(cli.run).await,
            Some(Command::Run(args)) => run(args).await,
            Some(Command::Verify(args)) => verify::verify(&args).await,
            Some(Command::Rebuild(args)) => verify::rebuild(&args).await,
            Some(Command::Schema(args)) => verify::schema(&args).await,
            Some(Command::Loadgen(args)) => alpes_tracking::loadgen::loadgen(args).await,
            Some(Command::Check(args)) => alpes_tracking::check::check(&args).await,
            Some(Command::Probe(_)) => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: alpes_tracking::config::RunArgs) -> anyhow::Result<()> {
    let config = args.service_config()?;
    // Once a stop begins, it ends: by itself within the grace, or by the
    // process exiting a margin later (see `process::exit_if_stuck`).
    let grace = config.shutdown_grace;
    let shutdown = async move {
        shutdown_signal().await;
        process::exit_if_stuck(grace);
    };
    app::run(config, shutdown).await
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(not(feature = "system-allocator"))]
mod mimalloc_options {
    use std::ffi::{c_int, c_long};
    // In the mimalloc static library linked through the `mimalloc` crate
    // (its Rust bindings for options need a crate this project lacks).
    unsafe extern "C" {
        pub fn mi_option_get(option: c_int) -> c_long;
        pub fn mi_option_set(option: c_int, value: c_long);
    }
    /// `mi_option_purge_delay` in mimalloc v3's `mi_option_e`.
    pub const PURGE_DELAY: c_int = 15;
    /// Its default in v3 (ms): checked before changing it, so a different
    /// mimalloc never gets another option changed.
    pub const PURGE_DELAY_DEFAULT: c_long = 1000;
    /// How long (ms) a freed page is kept for reuse before it is returned:
    /// long enough for the allocations a request or a batch makes and
    /// frees, short enough that the 1,000,000-user scenario's peak stays
    /// within a few MiB of where returning at once puts it.
    pub const RETURN_AFTER_MS: c_long = 10;
}

/// mimalloc keeps freed pages for 1 s before returning them to the OS; with
/// many threads freeing memory allocated by others (actors, the store's
/// blocking pool) that held 50 to 60 MiB more at the peak of the
/// 1,000,000-user scenario (`loadtest/scenarios/memory.sh`). Returned at
/// once instead (a delay of 0), a page emptied and filled again within
/// microseconds is unmapped and faulted back in: hyper gives each HTTP/1
/// request a fresh 8 KiB read buffer (it reads ahead while the handler
/// still holds the request's bytes) and frees it when the request is
/// dropped. Under full HTTP load, returning pages (`madvise`) and faulting
/// them back in were about 7 % of an embedded worker's CPU samples.
/// `mimalloc_options::RETURN_AFTER_MS` keeps such pages for reuse and
/// still returns what stays free. Not for a worker on the ScyllaDB store:
/// it has no memory bound of its own, and returning its pages at once cost
/// it about a tenth of its CPU (`loadtest/scenarios/stack-drain.sh`, 128 ->
/// 112 µs per event with mimalloc's default).
#[cfg(not(feature = "system-allocator"))]
fn return_freed_memory_soon() {
    use mimalloc_options::*;
    // SAFETY: both functions take and return plain integers; the option
    // is only changed if it holds v3's default for it.
    unsafe {
        if mi_option_get(PURGE_DELAY) == PURGE_DELAY_DEFAULT {
            mi_option_set(PURGE_DELAY, RETURN_AFTER_MS);
        } else {
            eprintln!("warning: mimalloc purge delay is not its default (MIMALLOC_PURGE_DELAY set?): left as it is");
        }
    }
}

fn init_tracing(format: &str) {
    // `ractor=warn`: ractor's per-actor span (`Actor`, at INFO) is entered
    // and left on every poll of every actor's task, about 0.6 % of the
    // embedded pipeline's samples at 30,000/s; ractor logs nothing this
    // service needs below WARN.
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRACKING_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,fjall=warn,lsm_tree=warn,scylla=warn,ractor=warn")
    });
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
