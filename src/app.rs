//! Glue: opens the log and the store, starts the actor tree and the HTTP
//! endpoint, and runs until shutdown (then drains). `main` only parses the
//! configuration and calls [`run`]; tests call it too, on port 0.

use crate::actors::subscribers::Subscribers;
use crate::actors::supervisor::{RootSupervisor, SupervisorArgs, SupervisorMsg};
use crate::actors::{Names, PipelineConfig};
use crate::health::Health;
use crate::http::{self, AppState};
use crate::internal_events;
use crate::log::embedded::{EmbeddedLog, EmbeddedLogOptions};
use crate::log::pulsar::{PulsarLog, PulsarOptions, PulsarSink};
use crate::log::{CommandLog, EventSink};
use crate::process;
use crate::store::embedded::EmbeddedStore;
use crate::store::scylladb::{ScyllaConfig, ScyllaStore};
use crate::store::EventStore;
use anyhow::Context;
use ractor::Actor;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

/// Partitions of a new embedded command log. Each partition's writer
/// fsyncs its own groups, so each partition added makes the groups smaller
/// and the fsyncs per command more, for no parallelism that counts: the
/// aggregates are actors of their own on every core, and the store has a
/// single writer. On the two cores a worker is sized for, one partition
/// costs less CPU per command over HTTP than two and halves the syncs,
/// which the reads' tail under ingest follows (docs/performance.md,
/// "Reads under ingest").
pub const DEFAULT_PARTITIONS: u32 = 1;

/// What `run` needs.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Partitions of the embedded command log: `None` keeps an existing
    /// log's count and gives a new one [`DEFAULT_PARTITIONS`].
    pub partitions: Option<u32>,
    pub shutdown_grace: Duration,
    pub pipeline: PipelineConfig,
    /// Pulsar mode: the commands topic replaces the embedded log, and
    /// events go out on the events topic. `None`: the embedded log.
    pub pulsar: Option<PulsarOptions>,
    /// The ScyllaDB store; `None`: the embedded store under `data_dir`.
    pub scylla: Option<ScyllaConfig>,
    /// Bearer token the read endpoints require (`None`: open).
    pub api_token: Option<String>,
    /// A separate listener for health, readiness and metrics.
    pub internal_listen: Option<SocketAddr>,
    /// Worker threads of the HTTP runtime (apart from the pipeline's).
    pub http_threads: usize,
    /// How often the embedded command log may sync, and what it may do at
    /// open with data it cannot trust (default: refuse to start and say
    /// what is at risk).
    pub log_settings: LogSettings,
}

impl ServiceConfig {
    /// The embedded default on `data_dir`, listening on 127.0.0.1 port 0
    /// (the OS picks; `Running::addr` says which): the default partitions, the
    /// default pipeline, one HTTP thread, 20 s to drain. What the tests and
    /// the in-process load generator start from, changing what they need
    /// with `ServiceConfig { field, ..ServiceConfig::local(dir) }`.
    pub fn local(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            partitions: None,
            shutdown_grace: Duration::from_secs(20),
            pipeline: PipelineConfig::default(),
            pulsar: None,
            scylla: None,
            api_token: None,
            internal_listen: None,
            http_threads: 1,
            log_settings: LogSettings::default(),
        }
    }
}

/// The embedded command log's settings: how often it may sync, and the
/// operator's answers to its refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSettings {
    /// Least time between two syncs of a partition (see
    /// `EmbeddedLogOptions::sync_interval`).
    pub sync_interval: Duration,
    /// Keep the sound records after damaged ones and skip the damaged ones
    /// (each counted as a rejected command).
    pub skip_damaged: bool,
    /// Deliver again every record the log retains (after the store lost
    /// acknowledged data; what it still holds is found as duplicates).
    pub replay_retained: bool,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            sync_interval: crate::log::embedded::DEFAULT_SYNC_INTERVAL,
            skip_damaged: false,
            replay_retained: false,
        }
    }
}

/// Opens the embedded store under the data dir.
///
/// The store starts its flush and compaction workers while it opens, so it
/// opens on a thread of its own at the lowest priority
/// ([`process::BACKGROUND_NICE`]): they inherit it. Compaction is
/// background work that may wait for idle CPU; when it ran at the
/// pipeline's priority, its bursts took both cores from the actors and
/// showed as the end-to-end latency's spikes.
pub fn open_store(data_dir: &std::path::Path) -> anyhow::Result<Arc<dyn EventStore>> {
    let dir = data_dir.join("store");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let opened = {
        let dir = dir.clone();
        std::thread::Builder::new()
            .name("store-open".into())
            .spawn(move || {
                process::lower_thread_priority(process::BACKGROUND_NICE);
                EmbeddedStore::open(&dir)
            })
            .context("starting a thread to open the event store")?
            .join()
            .map_err(|_| anyhow::anyhow!("the thread opening the event store panicked"))?
    };
    let store = opened.with_context(|| format!("opening the event store in {}", dir.display()))?;
    Ok(Arc::new(store))
}

/// Opens the configured store: ScyllaDB when `scylla` is set, else the
/// embedded store under the data dir.
pub async fn open_configured_store(
    data_dir: &std::path::Path,
    scylla: Option<&ScyllaConfig>,
) -> anyhow::Result<Arc<dyn EventStore>> {
    match scylla {
        // Off the async threads: opening replays the store's journal.
        None => {
            let dir = data_dir.to_path_buf();
            tokio::task::spawn_blocking(move || open_store(&dir))
                .await
                .context("opening the event store")?
        }
        Some(cfg) => {
            let store = ScyllaStore::connect(cfg).await.with_context(|| {
                format!(
                    "opening the ScyllaDB store at {} (keyspace {})",
                    cfg.nodes.join(","),
                    cfg.keyspace
                )
            })?;
            Ok(Arc::new(store))
        }
    }
}

/// Opens the embedded command log under the data dir.
pub async fn open_log(
    data_dir: &std::path::Path,
    partitions: Option<u32>,
    settings: LogSettings,
) -> anyhow::Result<Arc<dyn CommandLog>> {
    let dir = data_dir.join("log");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let partitions = match partitions {
        Some(p) => p,
        None => crate::log::embedded::existing_partitions(&dir)
            .with_context(|| format!("reading the command log's meta in {}", dir.display()))?
            .unwrap_or(DEFAULT_PARTITIONS),
    };
    let options = EmbeddedLogOptions {
        sync_interval: settings.sync_interval,
        skip_damaged: settings.skip_damaged,
        replay_retained: settings.replay_retained,
        ..EmbeddedLogOptions::default()
    };
    let log = EmbeddedLog::open_with(&dir, partitions, options)
        .await
        .with_context(|| format!("opening the command log in {}", dir.display()))?;
    Ok(log)
}

/// The command log of the configuration, and the events sink in Pulsar mode.
pub async fn open_transport(
    config: &ServiceConfig,
    health: &Arc<Health>,
) -> anyhow::Result<(Arc<dyn CommandLog>, Option<Arc<PulsarSink>>)> {
    match &config.pulsar {
        None => Ok((
            open_log(&config.data_dir, config.partitions, config.log_settings).await?,
            None,
        )),
        Some(options) => {
            let log = PulsarLog::connect(options.clone(), health.clone())
                .await
                .with_context(|| format!("connecting to Pulsar at {}", options.url))?;
            log.ensure_dead_letter_subscription()
                .await
                .context("creating the dead-letter topic's retention subscription")?;
            let sink = log.events_sink();
            Ok((log, Some(sink)))
        }
    }
}

/// A running service, for tests: its address, its log and store, and a
/// handle to stop it.
pub struct Running {
    pub addr: SocketAddr,
    /// The internal listener (health, readiness, metrics), if configured.
    pub internal_addr: Option<SocketAddr>,
    /// Registry names of this instance's actors (tests look actors up).
    pub names: Names,
    /// The writer's subscribers: an observer of committed records (the
    /// load generator's latency probe, tests) adds itself here.
    pub subscribers: Subscribers,
    pub health: Arc<Health>,
    pub log: Arc<dyn CommandLog>,
    pub store: Arc<dyn EventStore>,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Graceful stop (as SIGTERM would); returns what `run` returned.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.done.await.context("service task panicked")?
    }
}

/// Starts the service in the background (binds first, so `addr` is known).
pub async fn start(config: ServiceConfig) -> anyhow::Result<Running> {
    start_with_store(config, None).await
}

/// Like [`start`], on a given store (tests wrap the embedded store, e.g.
/// to inject failures); `None` opens the embedded store of the data dir.
pub async fn start_with_store(
    config: ServiceConfig,
    store: Option<Arc<dyn EventStore>>,
) -> anyhow::Result<Running> {
    let (listener, parts) = Parts::open(&config, store).await?;
    let addr = listener.local_addr()?;
    let internal_addr = match &parts.internal {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let (health, log, store, names, subscribers) = (
        parts.health.clone(),
        parts.log.clone(),
        parts.store.clone(),
        parts.names.clone(),
        parts.subscribers.clone(),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        serve(config, listener, parts, async {
            let _ = stopped.await;
        })
        .await
    });
    Ok(Running {
        addr,
        internal_addr,
        names,
        subscribers,
        health,
        log,
        store,
        stop: Some(stop),
        done,
    })
}

/// The ScyllaDB settings.
fn scylla_of(config: &ServiceConfig) -> Option<ScyllaConfig> {
    config.scylla.clone()
}

async fn bind_internal(config: &ServiceConfig) -> anyhow::Result<Option<TcpListener>> {
    match config.internal_listen {
        None => Ok(None),
        Some(a) => {
            Ok(Some(TcpListener::bind(a).await.with_context(|| {
                format!("binding the internal listener {a}")
            })?))
        }
    }
}

/// The fold lease that stands for "the one worker on its own command log"
/// (not a partition of any log).
const SINGLE_LOG_LEASE: u32 = i32::MAX as u32;

/// A store that appends without a condition relies on one consumer at a
/// time holding a user's commands: with the embedded command log, that is
/// one log on the whole store (a fleet shares a Pulsar topic). The worker
/// takes a lease in the log's name at start (refusing to start while
/// another log holds it; the same log, restarted, takes it back at once)
/// and renews it while it runs.
async fn hold_single_log(store: &Arc<dyn EventStore>, instance: u64) -> anyhow::Result<()> {
    let Some(fold) = store.folding() else {
        return Ok(());
    };
    if store.journal_guard() != crate::store::JournalGuard::Deterministic {
        return Ok(());
    }
    let owner = format!("embedded-log-{instance}");
    let ttl = std::time::Duration::from_secs(30);
    if !fold.lease(SINGLE_LOG_LEASE, &owner, ttl).await? {
        anyhow::bail!(
            "another worker with an embedded command log runs on this ScyllaDB keyspace: \
             a shared store takes its commands from one log (a fleet shares a Pulsar topic: \
             --pulsar-url); stop the other worker, or wait {}s after it stopped",
            ttl.as_secs()
        );
    }
    let store = store.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(ttl / 3);
        loop {
            tick.tick().await;
            let Some(fold) = store.folding() else { return };
            match fold.lease(SINGLE_LOG_LEASE, &owner, ttl).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::error!("another worker took this store's single-log lease; two workers with their own command logs must not share a ScyllaDB keyspace");
                    return;
                }
                Err(e) => internal_events::store_error("single_log_lease", &e),
            }
        }
    });
    Ok(())
}

/// Runs the service until `shutdown` completes, then drains.
pub async fn run(config: ServiceConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let (listener, parts) = Parts::open(&config, None).await?;
    serve(config, listener, parts, shutdown).await
}

/// Refuses a store that lost what the command log witnessed it holding when
/// offsets were committed for good (deleted, restored from an older backup,
/// its journal cut short): those commands would never be delivered again.
/// Then has every later commit witness the store's durable head. A log
/// created now beside a store that holds data is reported: if an older log
/// was deleted, what it had accepted and not yet delivered is gone.
fn witness_the_store(
    store: &Arc<dyn EventStore>,
    log: &dyn CommandLog,
    data_dir: &std::path::Path,
) -> anyhow::Result<()> {
    let Some(head) = store.durable_head() else {
        return Ok(());
    };
    if let Some(witnessed) = log.witnessed_store_head().filter(|&w| w > head) {
        anyhow::bail!(
            "the event store in {dir}/store is behind the command log: its journal ends at \
             position {head}, but the log's committed offsets were recorded when it had \
             reached {witnessed}, so {lost} acknowledged events or rejections are gone from \
             the store (deleted, restored from an older backup, or its journal cut short) and \
             the log would never deliver their commands again. Restore the newest backup of \
             the store; or start once with --log-replay-retained to deliver again every \
             command the log still holds (what the store still has is found as duplicates; \
             commands whose log segments were already deleted cannot come back)",
            dir = data_dir.display(),
            lost = witnessed - head,
        );
    }
    if log.created_now() && head > 0 {
        tracing::warn!(
            store_head = head,
            "the command log was created now, but the event store already holds {head} \
             positions: if an earlier command log was deleted, the commands it had accepted \
             and not yet processed are lost"
        );
    }
    let weak = Arc::downgrade(store);
    let witnessed = log.witness_store(Arc::new(move || match weak.upgrade() {
        Some(s) => Ok(s.make_durable().map_err(|e| e.to_string())?.unwrap_or(0)),
        None => Err("the store was closed".to_string()),
    }));
    // Every acknowledgement is made final only after `make_durable`:
    // the store's commits need not wait for their own sync.
    if witnessed {
        store.defer_syncs();
    }
    Ok(())
}

/// What a running service is made of, opened before it starts.
struct Parts {
    health: Arc<Health>,
    log: Arc<dyn CommandLog>,
    sink: Option<Arc<PulsarSink>>,
    store: Arc<dyn EventStore>,
    names: Names,
    subscribers: Subscribers,
    /// The internal listener (health, readiness, metrics), bound.
    internal: Option<TcpListener>,
}

impl Parts {
    /// Binds the listeners, opens the store (unless given) and the
    /// command log: everything that can fail before the service starts.
    async fn open(
        config: &ServiceConfig,
        store: Option<Arc<dyn EventStore>>,
    ) -> anyhow::Result<(TcpListener, Parts)> {
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let internal = bind_internal(config).await?;
        let store = match store {
            Some(s) => s,
            None => open_configured_store(&config.data_dir, scylla_of(config).as_ref()).await?,
        };
        let health = Arc::new(Health::default());
        let (log, sink) = open_transport(config, &health).await?;
        if let Some(instance) = log.instance() {
            hold_single_log(&store, instance).await?;
        }
        witness_the_store(&store, log.as_ref(), &config.data_dir)?;
        let parts = Parts {
            health,
            log,
            sink,
            store,
            names: Names::new(),
            subscribers: Subscribers::default(),
            internal,
        };
        Ok((listener, parts))
    }
}

async fn serve(
    config: ServiceConfig,
    listener: TcpListener,
    parts: Parts,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let Parts {
        health,
        log,
        sink,
        store,
        names,
        subscribers,
        internal,
    } = parts;
    let metrics = internal_events::install_metrics()?;
    let upkeep = {
        let (m, store) = (metrics.clone(), store.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(internal_events::upkeep_interval());
            loop {
                tick.tick().await;
                if let Some(m) = store.memory() {
                    internal_events::store_memory_sampled(
                        m.write_buffer_bytes,
                        m.cache_bytes,
                        m.pending_flushes,
                    );
                }
                m.run_upkeep();
            }
        })
    };
    internal_events::ready(false);
    let addr = listener.local_addr()?;
    let mode = if config.pulsar.is_some() {
        "pulsar"
    } else {
        "embedded"
    };
    tracing::info!(data_dir = %config.data_dir.display(), partitions = log.partitions(), log = mode, "listening on http://{addr}");

    let (http_stop, http_stop_rx) = watch::channel(false);
    let state = AppState {
        log: log.clone(),
        store: store.clone(),
        health: health.clone(),
        metrics,
        access: http::Access {
            api_token: config.api_token.as_deref().map(Arc::from),
            internal_listener: internal.is_some(),
        },
        requests: internal_events::HttpRequests::register(http::Operation::PostInteraction.name()),
    };
    let mut listeners = vec![(listener, http::Listener::Public)];
    if let Some(l) = internal {
        if let Ok(a) = l.local_addr() {
            tracing::info!("internal listener (health, readiness, metrics) on http://{a}");
        }
        listeners.push((l, http::Listener::Internal));
    }
    let http_threads =
        http::HttpThreads::spawn(listeners, state, http_stop_rx, config.http_threads)
            .context("starting the HTTP threads")?;

    let args = SupervisorArgs {
        log: log.clone(),
        store: store.clone(),
        health: health.clone(),
        config: config.pipeline.clone(),
        names,
        subscribers,
        sink: sink.clone().map(|s| s as Arc<dyn EventSink>),
    };
    let (supervisor, supervisor_done) = Actor::spawn(None, RootSupervisor, args)
        .await
        .context("starting the actor tree")?;
    tracing::info!("ready");

    let mut supervisor_done = supervisor_done;
    let escalated = tokio::select! {
        _ = shutdown => None,
        r = &mut supervisor_done => Some(r),
    };
    let result = match escalated {
        Some(r) => {
            health.set_draining();
            Err(anyhow::anyhow!("the actor tree stopped: {r:?}"))
        }
        None => {
            tracing::info!(grace = ?config.shutdown_grace, "shutting down: draining");
            health.set_draining();
            let drained = supervisor
                .call(SupervisorMsg::Drain, Some(config.shutdown_grace))
                .await;
            supervisor.stop(None);
            let _ = tokio::time::timeout(Duration::from_secs(5), supervisor_done).await;
            match drained {
                Ok(ractor::rpc::CallResult::Success(())) => Ok(()),
                other => Err(anyhow::anyhow!(
                    "drain did not finish within the grace period: {other:?}"
                )),
            }
        }
    };
    let _ = http_stop.send(true);
    http_threads.stopped().await;
    upkeep.abort();
    log.close().await.context("closing the command log")?;
    if let Some(sink) = &sink {
        sink.close().await;
    }
    store.flush().await.context("flushing the store")?;
    tracing::info!(ok = result.is_ok(), "stopped");
    result
}
