//! The `tracking` binary: parses the configuration and calls the library.

use alpes_tracking::config::{Cli, Command};
use alpes_tracking::{app, verify};
use clap::Parser;
use std::process::ExitCode;

/// mimalloc: the pipeline allocates many small, short-lived objects across
/// threads, where glibc's malloc showed up at ~20% of the CPU in profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = match &cli.command {
        Some(Command::Run(r)) => r.log_format.clone(),
        _ => cli.run.log_format.clone(),
    };
    init_tracing(&log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
    app::run(config, shutdown_signal()).await
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

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRACKING_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,fjall=warn,lsm_tree=warn,scylla=warn")
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
