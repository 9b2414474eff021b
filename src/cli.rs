//! The command line of the `tracking` binary: the worker (`run`, the
//! default) and the tools (`verify`, `rebuild`, `schema`, `loadgen`,
//! `check`, `probe`). Only `main` uses it; each command's arguments live with the
//! code that runs it (`config` for the worker and the stores, `loadgen`,
//! `check`), so the tools and the configuration never import each other
//! through the command line.

use crate::config::{RunArgs, SchemaArgs, StoreArgs};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "tracking",
    version = crate::LONG_VERSION,
    about = "AlpesPartners Tracking: interaction commands in, events and live statistics out."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of `run` (the default command).
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
// Parsed once at start: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run the service (the default when no command is given).
    Run(RunArgs),
    /// Recompute every projection from the journal and compare; exits 1 on
    /// any difference (and prints it). Run it with the service stopped.
    Verify(StoreArgs),
    /// Recompute the projections from the journal and replace them.
    Rebuild(StoreArgs),
    /// The ScyllaDB schema: `apply` or `status` (needs --scylla-nodes).
    Schema(SchemaArgs),
    /// Generate load (open model) against the in-process service or a URL,
    /// and write a report.
    Loadgen(crate::loadgen::LoadgenArgs),
    /// Compare a load run's manifest with the store and the dead-letter
    /// topic: lost, duplicated, unexpected, dead-lettered, order, recount.
    Check(crate::check::CheckArgs),
    /// One GET of the worker's health (or, with --ready, readiness)
    /// endpoint: exits 0 on 2xx, 1 otherwise with the reason on stderr.
    /// The container image's HEALTHCHECK (it has no shell and no curl).
    Probe(crate::probe::ProbeArgs),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_is_the_default_and_subcommands_parse() {
        let cli = Cli::try_parse_from(["tracking", "--partitions", "8"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.run.partitions, Some(8));
        let cli = Cli::try_parse_from(["tracking", "verify", "--data-dir", "/tmp/x"]).unwrap();
        assert!(
            matches!(cli.command, Some(Command::Verify(s)) if s.data_dir == std::path::Path::new("/tmp/x"))
        );
        assert!(Cli::try_parse_from(["tracking", "--partitions", "0"]).is_err());
        let cli = Cli::try_parse_from(["tracking"]).unwrap();
        assert_eq!((cli.run.http_threads, cli.run.pipeline_nice), (1, 19));
        assert!(Cli::try_parse_from(["tracking", "--pipeline-nice", "20"]).is_err());
        assert!(Cli::try_parse_from(["tracking", "--http-threads", "0"]).is_err());
        let cli = Cli::try_parse_from(["tracking", "probe", "--ready", "--timeout", "1s"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Probe(p)) if p.ready));
        let cli = Cli::try_parse_from(["tracking", "loadgen", "--pipeline-threads", "2"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Loadgen(l)) if l.pipeline_threads == Some(2)));
        assert!(Cli::try_parse_from(["tracking", "loadgen", "--pipeline-threads", "0"]).is_err());
        let over_http = [
            "tracking",
            "loadgen",
            "--pipeline-threads",
            "2",
            "--url",
            "http://x",
        ];
        assert!(Cli::try_parse_from(over_http).is_err());
    }
}
