//! Command-line configuration: every flag has an environment fallback
//! (`TRACKING_*`, plus the original system's `PULSAR_URL`,
//! `TOPIC_COMMANDS_TRACKING` and `SUBSCRIPTION_NAME`).

use crate::actors::PipelineConfig;
use crate::app::ServiceConfig;
use crate::log::pulsar::{PulsarOptions, Secret, DEFAULT_RECEIVER_QUEUE};
use crate::store::scylladb::ScyllaConfig;
use clap::{Args, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where the data lives (every command takes these).
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Directory of the embedded command log and event store.
    #[arg(long, env = "TRACKING_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// ScyllaDB (or Cassandra) contact points, `host:port,...`: the events
    /// and projections live there, shared by the fleet, instead of in the
    /// embedded store. The command log is chosen independently.
    #[arg(long, env = "SCYLLA_NODES")]
    pub scylla_nodes: Option<String>,
    /// Keyspace of the ScyllaDB store.
    #[arg(long, env = "SCYLLA_KEYSPACE", default_value = "tracking")]
    pub scylla_keyspace: String,
    /// Consistency level of reads and writes (`local_quorum`, `quorum`, or
    /// `one` for a single node). Must read its own writes: with a
    /// replication factor above 1 use a quorum.
    #[arg(long, env = "SCYLLA_CONSISTENCY", default_value = "local_quorum", value_parser = crate::store::scylladb::parse_consistency)]
    pub scylla_consistency: scylla::statement::Consistency,
    /// User name (password authentication).
    #[arg(long, env = "SCYLLA_USERNAME")]
    pub scylla_username: Option<String>,
    /// File holding the password (or the SCYLLA_PASSWORD variable; never a flag).
    #[arg(long, env = "SCYLLA_PASSWORD_FILE")]
    pub scylla_password_file: Option<PathBuf>,
    /// PEM file of the CA that signs the nodes' certificates: turns TLS on.
    #[arg(long, env = "SCYLLA_TLS_CA")]
    pub scylla_tls_ca: Option<PathBuf>,
    /// Timeout of one request (the driver retries idempotent ones).
    #[arg(long, env = "SCYLLA_REQUEST_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub scylla_request_timeout: Duration,
    /// How long a daily/status statistics answer is reused by this worker
    /// (0s: never). Those reads sum per-user rows; a dashboard polling many
    /// times a second then costs one read a second.
    #[arg(long, env = "SCYLLA_STATS_CACHE", default_value = "1s", value_parser = parse_duration)]
    pub scylla_stats_cache: Duration,
}

impl StoreArgs {
    /// The ScyllaDB store's settings, when `--scylla-nodes` is set.
    pub fn scylla(&self) -> anyhow::Result<Option<ScyllaConfig>> {
        let Some(nodes) = &self.scylla_nodes else {
            return Ok(None);
        };
        let mut cfg = ScyllaConfig::new(nodes, &self.scylla_keyspace);
        if cfg.nodes.is_empty() {
            anyhow::bail!("--scylla-nodes/SCYLLA_NODES is set but names no host");
        }
        crate::store::scylladb::schema::check_keyspace(&self.scylla_keyspace)?;
        cfg.consistency = self.scylla_consistency;
        cfg.username = self.scylla_username.clone();
        let from_env = std::env::var("SCYLLA_PASSWORD").ok();
        cfg.password = secret(
            from_env,
            self.scylla_password_file.as_deref(),
            "ScyllaDB password",
        )?;
        if cfg.password.is_some() && cfg.username.is_none() {
            anyhow::bail!("a ScyllaDB password is set but no --scylla-username");
        }
        cfg.tls_ca = self.scylla_tls_ca.clone();
        cfg.request_timeout = self.scylla_request_timeout;
        cfg.stats_cache_ttl = self.scylla_stats_cache;
        Ok(Some(cfg))
    }
}

/// `tracking schema ...`.
#[derive(Debug, Clone, Args)]
pub struct SchemaArgs {
    #[command(subcommand)]
    pub action: SchemaAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum SchemaAction {
    /// Applies the CQL migrations of `schema/` the keyspace lacks, in order
    /// (idempotent; refuses a keyspace newer than this build).
    Apply {
        /// Replication of the keyspace when it is created:
        /// `SimpleStrategy:<rf>` or `NetworkTopologyStrategy:<dc>=<rf>,...`.
        #[arg(long, env = "SCYLLA_REPLICATION", default_value = "SimpleStrategy:1")]
        replication: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Prints the keyspace's schema version and whether this build can use it.
    Status {
        #[command(flatten)]
        store: StoreArgs,
    },
}

impl SchemaAction {
    pub fn store(&self) -> &StoreArgs {
        match self {
            Self::Apply { store, .. } | Self::Status { store } => store,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address of the HTTP endpoint (API, health, readiness, metrics).
    #[arg(long, env = "TRACKING_LISTEN", default_value = "127.0.0.1:8010")]
    pub listen: SocketAddr,
    /// A second listener serving only health, readiness and metrics, never
    /// behind the API token (for probes and Prometheus); `/metrics` then
    /// leaves the public listener.
    #[arg(long, env = "TRACKING_INTERNAL_LISTEN")]
    pub internal_listen: Option<SocketAddr>,
    /// Worker threads of the HTTP ingest runtime (connections that start
    /// with a `POST`), apart from the pipeline's. Reads, health, readiness
    /// and metrics have a front thread of their own besides these, so that
    /// they answer quickly while ingest and the pipeline are busy.
    #[arg(long, env = "TRACKING_HTTP_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub http_threads: u16,
    /// Worker threads of the pipeline's runtime, which runs every actor
    /// (default: half the CPUs the process may use, at least one).
    #[arg(long, env = "TRACKING_PIPELINE_THREADS", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub pipeline_threads: Option<u16>,
    /// Nice value (0 to 19) of the pipeline's threads (runtime workers, the
    /// blocking pool, the embedded log's writers; the embedded store's
    /// flush and compaction workers always run at 19, the lowest). The
    /// HTTP threads keep the process's own, so reads are answered ahead of
    /// the pipeline when the CPU is saturated (19 measured a lower read
    /// tail than 10 at the same ingest). 0 turns it off.
    #[arg(long, env = "TRACKING_PIPELINE_NICE", default_value_t = 19, value_parser = clap::value_parser!(u8).range(0..=19))]
    pub pipeline_nice: u8,
    /// Bearer token the read endpoints require (`Authorization: Bearer
    /// <token>`); unset: open. Never logged.
    #[arg(long, env = "TRACKING_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// File holding the API token (alternative to --api-token).
    #[arg(long, env = "TRACKING_API_TOKEN_FILE", conflicts_with = "api_token")]
    pub api_token_file: Option<PathBuf>,
    /// Partitions of the embedded command log, fixed once the log exists:
    /// unset, an existing log keeps its count and a new one gets 1; a
    /// count other than an existing log's is refused.
    #[arg(long, env = "TRACKING_PARTITIONS", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub partitions: Option<u32>,
    /// Least time between two syncs (`fdatasync`) of an embedded command
    /// log partition (e.g. 2ms, 0 for none). Under load the commands that
    /// arrive meanwhile are synced together; a command may wait this long
    /// more before it is accepted. Fewer syncs cost the disk (and, on a
    /// virtual machine, the host) less.
    #[arg(long, env = "TRACKING_LOG_SYNC_INTERVAL", default_value = "2ms", value_parser = parse_sync_interval)]
    pub log_sync_interval: Duration,
    /// Open the embedded command log even if a partition holds damaged
    /// records (a bad frame followed by sound ones), keeping the sound
    /// records and skipping the damaged ones, each counted as a rejected
    /// command. Without it the service refuses to start and names the
    /// records at risk.
    #[arg(long, env = "TRACKING_LOG_SKIP_DAMAGED")]
    pub log_skip_damaged: bool,
    /// Deliver again every command the embedded log still holds, once: the
    /// answer to a store that lost acknowledged data (restored from an
    /// older backup, deleted, its journal cut short), which the service
    /// otherwise refuses. What the store still has is found as duplicates.
    #[arg(long, env = "TRACKING_LOG_REPLAY_RETAINED")]
    pub log_replay_retained: bool,
    /// Time allowed to drain on SIGTERM/SIGINT (e.g. 25s, 500ms, 1m).
    #[arg(long, env = "TRACKING_SHUTDOWN_GRACE", default_value = "25s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Unacknowledged deliveries per partition (flow control).
    #[arg(long, env = "TRACKING_MAX_IN_FLIGHT", default_value_t = 4096)]
    pub max_in_flight: usize,
    /// Live per-user aggregates per process (memory bound: about 10 KiB each).
    #[arg(long, env = "TRACKING_MAX_LIVE_AGGREGATES", default_value_t = 5_000)]
    pub max_live_aggregates: usize,
    /// Idle time after which an aggregate is passivated.
    #[arg(long, env = "TRACKING_AGGREGATE_IDLE", default_value = "60s", value_parser = parse_duration)]
    pub aggregate_idle: Duration,
    /// How often the ScyllaDB store's followers fold what the command log
    /// acknowledged into the indexes and statistics (their staleness;
    /// each fold asks the broker's admin API where the subscription
    /// stands, about 5 ms of broker CPU).
    #[arg(long, env = "TRACKING_FOLD_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub fold_interval: Duration,
    /// Deliveries of a command that keeps failing before it is dead-lettered.
    #[arg(long, env = "TRACKING_MAX_DELIVERIES", default_value_t = 5)]
    pub max_deliveries: u32,
    /// Most events per group commit.
    #[arg(long, env = "TRACKING_MAX_WRITE_BATCH", default_value_t = 8192)]
    pub max_write_batch: usize,
    /// Log format: text or json.
    #[arg(long, env = "TRACKING_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Pulsar service URL (the original's PULSAR_URL), `pulsar://host:6650`
    /// or `pulsar+ssl://host:6651`. Set: Pulsar mode (commands from the
    /// commands topic, events to the events topic). Unset: the embedded log.
    #[arg(long, env = "PULSAR_URL")]
    pub pulsar_url: Option<String>,
    /// Token (JWT) for Pulsar token authentication. Never logged.
    #[arg(long, env = "PULSAR_TOKEN", hide_env_values = true)]
    pub pulsar_token: Option<Secret>,
    /// File holding the Pulsar token (instead of --pulsar-token).
    #[arg(long, env = "PULSAR_TOKEN_FILE", conflicts_with = "pulsar_token")]
    pub pulsar_token_file: Option<PathBuf>,
    /// PEM file of the CA to trust for `pulsar+ssl://`.
    #[arg(long, env = "PULSAR_TLS_CA_FILE")]
    pub pulsar_tls_ca_file: Option<PathBuf>,
    /// Accept any broker certificate. Refused by this build (rustls always
    /// verifies); present so that setting it fails loudly.
    #[arg(long, env = "PULSAR_TLS_ALLOW_INSECURE")]
    pub pulsar_tls_allow_insecure: bool,
    /// Events topic (Pulsar mode): InteractionTracked events and the
    /// answers to BuildInteractionsInfo.
    #[arg(
        long,
        env = "TOPIC_EVENTS_TRACKING",
        default_value = "persistent://public/default/events.tracking"
    )]
    pub topic_events: String,
    /// Dead-letter topic (Pulsar mode); default `<commands topic>-DLQ`.
    #[arg(long, env = "TRACKING_DEAD_LETTER_TOPIC")]
    pub dead_letter_topic: Option<String>,
    /// Durable subscription on the dead-letter topic that keeps dead letters
    /// until someone handles them (Pulsar trims a topic nobody subscribes
    /// to); empty: none (then set a retention policy on the topic).
    #[arg(
        long,
        env = "TRACKING_DEAD_LETTER_SUBSCRIPTION",
        default_value = "dead-letters"
    )]
    pub dead_letter_subscription: String,
    /// Receiver queue (flow permits) of each partition consumer (Pulsar mode).
    #[arg(long, env = "TRACKING_PULSAR_RECEIVER_QUEUE", default_value_t = DEFAULT_RECEIVER_QUEUE)]
    pub pulsar_receiver_queue: u32,
    /// The broker's admin API (`http://host:8080`, `https://host:8443`): how
    /// far the subscription is acknowledged, which the ScyllaDB store's
    /// followers read up to. Default: the service URL's host on the
    /// standard admin port.
    #[arg(long, env = "PULSAR_ADMIN_URL")]
    pub pulsar_admin_url: Option<String>,
    /// Commands topic (the original's TOPIC_COMMANDS_TRACKING).
    #[arg(
        long,
        env = "TOPIC_COMMANDS_TRACKING",
        default_value = "persistent://public/default/commands.tracking"
    )]
    pub topic_commands: String,
    /// Subscription name (the original's SUBSCRIPTION_NAME).
    #[arg(long, env = "SUBSCRIPTION_NAME", default_value = "tracking")]
    pub subscription: String,
}

impl RunArgs {
    pub fn service_config(&self) -> anyhow::Result<ServiceConfig> {
        if self.max_in_flight == 0 || self.max_write_batch == 0 || self.max_deliveries == 0 {
            anyhow::bail!(
                "--max-in-flight, --max-write-batch and --max-deliveries must be at least 1"
            );
        }
        let api_token = secret(
            self.api_token.clone(),
            self.api_token_file.as_deref(),
            "API token",
        )?
        .map(|t| t.trim().to_owned());
        if api_token.as_deref().is_some_and(str::is_empty) {
            anyhow::bail!("the API token is empty (--api-token / --api-token-file)");
        }
        Ok(ServiceConfig {
            api_token,
            internal_listen: self.internal_listen,
            http_threads: usize::from(self.http_threads),
            listen: self.listen,
            data_dir: self.store.data_dir.clone(),
            scylla: self.store.scylla()?,
            partitions: self.partitions,
            log_settings: crate::app::LogSettings {
                sync_interval: self.log_sync_interval,
                skip_damaged: self.log_skip_damaged,
                replay_retained: self.log_replay_retained,
            },
            shutdown_grace: self.shutdown_grace,
            pulsar: self.pulsar_options()?,
            pipeline: PipelineConfig {
                max_in_flight: self.max_in_flight,
                max_live_aggregates: self
                    .max_live_aggregates
                    .max(self.partitions.unwrap_or(crate::app::DEFAULT_PARTITIONS) as usize),
                aggregate_idle: self.aggregate_idle,
                max_deliveries: self.max_deliveries,
                max_write_batch: self.max_write_batch,
                fold_interval: self.fold_interval.max(Duration::from_millis(10)),
                ..PipelineConfig::default()
            },
        })
    }
}

impl RunArgs {
    /// Pulsar mode's options, when `--pulsar-url` is set.
    pub fn pulsar_options(&self) -> anyhow::Result<Option<PulsarOptions>> {
        let Some(url) = &self.pulsar_url else {
            return Ok(None);
        };
        if !(url.starts_with("pulsar://") || url.starts_with("pulsar+ssl://")) {
            anyhow::bail!("--pulsar-url must start with pulsar:// or pulsar+ssl://");
        }
        let token = match &self.pulsar_token {
            Some(t) => Some(t.clone()),
            None => secret(None, self.pulsar_token_file.as_deref(), "Pulsar token")?
                .map(|raw| Secret::new(raw.trim())),
        };
        if self.pulsar_tls_allow_insecure {
            anyhow::bail!(
                "--pulsar-tls-allow-insecure is not supported by this build (rustls always verifies \
                 the broker's certificate); trust its CA with --pulsar-tls-ca-file"
            );
        }
        let mut o = PulsarOptions::new(url.clone());
        o.commands_topic = self.topic_commands.clone();
        o.events_topic = self.topic_events.clone();
        o.dead_letter_topic = self.dead_letter_topic.clone();
        o.dead_letter_subscription = self.dead_letter_subscription.clone();
        o.subscription = self.subscription.clone();
        o.token = token;
        o.tls_ca_file = self.pulsar_tls_ca_file.clone();
        o.receiver_queue = self.pulsar_receiver_queue.max(1);
        o.admin_url = self.pulsar_admin_url.clone();
        Ok(Some(o))
    }
}

/// Worker threads of the pipeline's runtime when none are asked for: half
/// the CPUs this process may use (`available_parallelism` counts a
/// cgroup's CPU quota), at least one. The actors are about half of an
/// event's CPU; the rest runs on threads of its own (the store's writes
/// and applies on the blocking pool, the log's writers, the index
/// checkpoint, HTTP). A worker more than the actors need is one more
/// thread parked and woken at each hand-off: on two CPUs, one worker cost
/// less CPU per event than two and drained the same peak rate
/// (docs/performance.md).
pub fn default_pipeline_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// A secret given directly (flag or variable), else read from a file (its
/// trailing line break dropped); `what` names it in the error, never the
/// value.
fn secret(
    direct: Option<String>,
    file: Option<&std::path::Path>,
    what: &str,
) -> anyhow::Result<Option<String>> {
    match (direct, file) {
        (Some(v), None) => Ok(Some(v)),
        (_, Some(path)) => {
            let raw = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading the {what} file {}: {e}", path.display()))?;
            Ok(Some(raw.trim_end_matches(['\r', '\n']).to_owned()))
        }
        (None, None) => Ok(None),
    }
}

/// A sync interval: a duration of at most 1 s (every command under load
/// may wait that long before it is accepted).
pub(crate) fn parse_sync_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d > Duration::from_secs(1) {
        return Err(format!(
            "a sync interval of {s:?} would hold every command that long; at most 1s (e.g. 2ms)"
        ));
    }
    Ok(d)
}

/// Parses `250ms`, `25s`, `2m`, `1h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (e.g. 500ms, 25s, 2m)"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown unit {other:?} in {s:?} (ms, s, m, h)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("invalid duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The worker's flags alone (the whole command line is in `cli`).
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn pipeline_threads_default_to_half_the_cpus_and_zero_is_refused() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert!((1..=cpus).contains(&default_pipeline_threads()));
        let cli = Cli::try_parse_from(["tracking", "--pipeline-threads", "3"]).unwrap();
        assert_eq!(cli.run.pipeline_threads, Some(3));
        assert!(Cli::try_parse_from(["tracking", "--pipeline-threads", "0"]).is_err());
        assert_eq!(
            Cli::try_parse_from(["tracking"])
                .unwrap()
                .run
                .pipeline_threads,
            None
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("25s"), Ok(Duration::from_secs(25)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_sync_interval("2ms"), Ok(Duration::from_millis(2)));
        assert_eq!(parse_sync_interval("0"), Ok(Duration::ZERO));
        assert!(parse_sync_interval("2").unwrap_err().contains("at most 1s"));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn pulsar_flags_make_pulsar_options() {
        let cli = Cli::try_parse_from([
            "tracking",
            "--pulsar-url",
            "pulsar://127.0.0.1:6650",
            "--pulsar-token",
            "tok-secret",
            "--topic-commands",
            "persistent://t/n/cmds",
        ])
        .unwrap();
        let o = cli.run.service_config().unwrap().pulsar.unwrap();
        assert_eq!(o.dead_letter_topic(), "persistent://t/n/cmds-DLQ");
        assert_eq!(o.token.as_ref().map(Secret::expose), Some("tok-secret"));
        assert!(!format!("{:?}", cli.run).contains("tok-secret"));
        let cli = Cli::try_parse_from(["tracking", "--pulsar-url", "http://x"]).unwrap();
        assert!(cli.run.service_config().is_err());
        let cli = Cli::try_parse_from(["tracking"]).unwrap();
        assert!(cli.run.service_config().unwrap().pulsar.is_none());
    }
}
