//! Instrumentation: every metric and the log line that goes with it, as
//! named events, so handlers stay readable and names stay consistent.
//!
//! Names follow Prometheus conventions (`_total` counters, `_seconds`
//! histograms, bounded labels). No user id, interaction id or payload is
//! ever a label; ids appear only in debug logs.

mod http;
mod log_limit;
mod pipeline;
mod process;
mod store;

pub use http::HttpRequests;
pub use pipeline::{Aggregates, EndToEnd, InFlight, Processing};
pub use process::exposition as process_exposition;
pub use store::{
    fold_failed, fold_lease, folded, store_error, store_journal_lost, store_migration, Migration,
};

use crate::domain::RejectReason;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::Mutex;
use std::time::Duration;

pub const RECEIVED: &str = "tracking_commands_received_total";
pub const PERSISTED: &str = "tracking_events_persisted_total";
pub const REJECTED: &str = "tracking_commands_rejected_total";
pub const DUPLICATES: &str = "tracking_commands_duplicate_total";
pub const REDELIVERED: &str = "tracking_commands_redelivered_total";
pub const DEAD_LETTERED: &str = "tracking_commands_dead_lettered_total";
pub const RETRIES: &str = "tracking_commands_retried_total";
pub const E2E_LATENCY: &str = "tracking_end_to_end_latency_seconds";
pub const PROCESSING: &str = "tracking_processing_duration_seconds";
pub const STORE_WRITE: &str = "tracking_store_write_duration_seconds";
pub const STORE_BATCH: &str = "tracking_store_write_batch_events";
pub const STORE_ERRORS: &str = "tracking_store_errors_total";
pub const WRITES_ABANDONED: &str = "tracking_writes_abandoned_total";
pub const LIVE_AGGREGATES: &str = "tracking_live_aggregates";
pub const IN_FLIGHT: &str = "tracking_in_flight_messages";
pub const ACTOR_RESTARTS: &str = "tracking_actor_restarts_total";
pub const AGGREGATE_FAILURES: &str = "tracking_aggregate_failures_total";
pub const PASSIVATED: &str = "tracking_aggregates_passivated_total";
pub const PROJECTION_LAG: &str = "tracking_projection_lag_records";
pub const APPENDED: &str = "tracking_log_appended_total";
pub const HTTP_REQUESTS: &str = "tracking_http_requests_total";
pub const HTTP_DURATION: &str = "tracking_http_request_duration_seconds";
pub const HTTP_CONNECTIONS: &str = "tracking_http_connections_total";
pub const READY: &str = "tracking_ready";
pub const PULSAR_RECONNECTS: &str = "tracking_pulsar_reconnects_total";
pub const PULSAR_PUBLISH: &str = "tracking_pulsar_publish_duration_seconds";
pub const PULSAR_PUBLISH_ERRORS: &str = "tracking_pulsar_publish_errors_total";
pub const EVENTS_PUBLISHED: &str = "tracking_events_published_total";
pub const REROUTED: &str = "tracking_commands_rerouted_total";
pub const STORE_FOLDED: &str = "tracking_store_folded_records_total";
pub const FOLD_LEASES: &str = "tracking_store_fold_leases";
pub const STORE_WRITE_BUFFER: &str = "tracking_store_write_buffer_bytes";
pub const STORE_CACHE: &str = "tracking_store_block_cache_bytes";
pub const STORE_PENDING_FLUSHES: &str = "tracking_store_pending_flushes";
pub const BUILD_INFO: &str = "tracking_build_info";

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0];

static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// Installs the Prometheus recorder once per process and returns its handle
/// (tests start several services in one process, at the same time; they
/// share it). Serialized by a lock: a second caller waits for the first
/// installation instead of racing it and failing.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let mut slot = HANDLE
        .lock()
        .map_err(|_| anyhow::anyhow!("metrics lock poisoned"))?;
    if let Some(h) = slot.as_ref() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(STORE_BATCH.to_string()),
            BATCH_BUCKETS,
        )?
        .install_recorder()
        .map_err(|e| anyhow::anyhow!("installing the metrics recorder: {e}"))?;
    *slot = Some(handle.clone());
    drop(slot);
    describe();
    register_initial_series();
    Ok(handle)
}

/// Exports every counter of an event that may never happen in a healthy
/// process (dead letters, restarts, store errors, ...) at 0 from the start,
/// for the label values known here. Two reasons: a series that does not
/// exist yet cannot be told apart from a worker that is not scraped, and
/// `increase()`/`rate()` in an alert only see the first event if the series
/// existed (at 0) before it. `.ci/check-deploy.sh` relies on it too: every
/// metric the dashboard and the alerts use must be in a fresh worker's
/// `/metrics`.
fn register_initial_series() {
    for name in [
        PERSISTED,
        DUPLICATES,
        REDELIVERED,
        RETRIES,
        AGGREGATE_FAILURES,
        APPENDED,
    ] {
        counter!(name).increment(0);
    }
    for reason in RejectReason::ALL {
        counter!(REJECTED, "reason" => reason.as_str()).increment(0);
        counter!(DEAD_LETTERED, "reason" => reason.as_str()).increment(0);
    }
    for op in ["write", "read", "projection_apply", "projection_catch_up"] {
        counter!(STORE_ERRORS, "op" => op).increment(0);
    }
    for actor in ["writer", "projector", "consumer"] {
        counter!(ACTOR_RESTARTS, "actor" => actor).increment(0);
    }
    for cause in ["idle", "cap"] {
        counter!(PASSIVATED, "cause" => cause).increment(0);
    }
    gauge!(LIVE_AGGREGATES).increment(0.0);
    gauge!(BUILD_INFO, "version" => crate::VERSION, "revision" => crate::REVISION).set(1.0);
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        RECEIVED,
        "Commands taken from the command log, by wire format."
    );
    describe_counter!(
        PERSISTED,
        "InteractionTracked events durably appended to the journal."
    );
    describe_counter!(
        REJECTED,
        "Commands refused, by reason (recorded in the status projection)."
    );
    describe_counter!(
        DUPLICATES,
        "Commands whose interaction id was already an event (idempotent skip)."
    );
    describe_counter!(
        REDELIVERED,
        "Deliveries dispatched again after a failure or a restart."
    );
    describe_counter!(
        DEAD_LETTERED,
        "Commands given up on and dead-lettered, by reason."
    );
    describe_counter!(
        RETRIES,
        "Batches retried after a transient (retryable) failure."
    );
    describe_histogram!(
        E2E_LATENCY,
        Unit::Seconds,
        "From publication of the command to the stage."
    );
    describe_histogram!(
        PROCESSING,
        Unit::Seconds,
        "Time an aggregate spends on a batch of commands."
    );
    describe_histogram!(
        STORE_WRITE,
        Unit::Seconds,
        "Duration of one group commit to the store."
    );
    describe_histogram!(STORE_BATCH, "Events per group commit.");
    describe_counter!(STORE_ERRORS, "Failed store operations, by operation.");
    describe_counter!(
        WRITES_ABANDONED,
        "Write requests left out of a group commit because their caller had stopped (its aggregate or consumer stopped; the delivery comes again)."
    );
    describe_counter!(
        REROUTED,
        "Commands published again to their user's partition, keyed by the user (they reached another partition, or were keyed otherwise), by the partition they reached."
    );
    describe_counter!(
        STORE_FOLDED,
        "Journal records folded into the indexes and statistics, by command-log partition (ScyllaDB store)."
    );
    describe_gauge!(
        FOLD_LEASES,
        "Command-log partitions whose follower this worker is (ScyllaDB store)."
    );
    describe_gauge!(LIVE_AGGREGATES, "Per-user aggregate actors alive.");
    describe_gauge!(
        IN_FLIGHT,
        "Deliveries taken from the log and not yet acknowledged, by partition."
    );
    describe_counter!(
        ACTOR_RESTARTS,
        "Actors restarted by their supervisor, by actor kind."
    );
    describe_counter!(
        AGGREGATE_FAILURES,
        "Per-user aggregates that panicked or failed."
    );
    describe_counter!(
        PASSIVATED,
        "Aggregates passivated (state dropped: stopped when idle, rebound to a new user at the cap), by cause."
    );
    describe_gauge!(
        PROJECTION_LAG,
        "Journal records not yet applied to a projection."
    );
    describe_counter!(
        APPENDED,
        "Commands appended to the command log by this process."
    );
    describe_counter!(HTTP_REQUESTS, "HTTP requests, by route and status class.");
    describe_counter!(
        HTTP_CONNECTIONS,
        "HTTP connections served, by runtime: front (reads, health, metrics) or ingest (first request a POST)."
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "HTTP request duration, by route."
    );
    describe_counter!(
        PULSAR_RECONNECTS,
        "Pulsar partition consumers recreated after a lost connection."
    );
    describe_histogram!(
        PULSAR_PUBLISH,
        Unit::Seconds,
        "Time from sending to the broker's receipts, by topic."
    );
    describe_counter!(
        PULSAR_PUBLISH_ERRORS,
        "Failed publishes to Pulsar (retried), by topic."
    );
    describe_counter!(
        EVENTS_PUBLISHED,
        "InteractionTracked events published to the events topic."
    );
    describe_gauge!(
        READY,
        "1 when the worker is ready (consuming), 0 otherwise."
    );
    describe_gauge!(
        STORE_WRITE_BUFFER,
        Unit::Bytes,
        "Embedded store: memtables (active and sealed), by payload size, and the index entries held in memory until the next index checkpoint."
    );
    describe_gauge!(
        STORE_CACHE,
        Unit::Bytes,
        "Embedded store: block cache in use."
    );
    describe_gauge!(
        STORE_PENDING_FLUSHES,
        "Embedded store: sealed memtables waiting to be flushed."
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the labels say which build runs (version, git revision)."
    );
}

/// The store's memory gauges, sampled at each metrics upkeep (the
/// process's own memory is in the `process_*` series of each scrape).
pub fn store_memory_sampled(write_buffer_bytes: u64, cache_bytes: u64, pending_flushes: u64) {
    gauge!(STORE_WRITE_BUFFER).set(write_buffer_bytes as f64);
    gauge!(STORE_CACHE).set(cache_bytes as f64);
    gauge!(STORE_PENDING_FLUSHES).set(pending_flushes as f64);
}

/// Drains histogram buffers; call periodically.
pub fn upkeep_interval() -> Duration {
    Duration::from_secs(5)
}

pub fn commands_received(format: &'static str, n: u64) {
    counter!(RECEIVED, "format" => format).increment(n);
}

/// The reason only: a rejection's detail may quote the payload (a decoder
/// error, an unknown type), so it goes to the dead-letter topic and the
/// rejection record, never to the logs.
pub fn command_rejected(reason: RejectReason) {
    counter!(REJECTED, "reason" => reason.as_str()).increment(1);
    tracing::debug!(reason = reason.as_str(), "command rejected");
}

/// Called once per aggregate batch, mostly with 0: the series exists from
/// the start ([`register_initial_series`]), so a 0 skips the registry
/// lookup.
pub fn commands_duplicate(n: u64) {
    if n > 0 {
        counter!(DUPLICATES).increment(n);
    }
}

pub fn events_persisted(n: u64) {
    counter!(PERSISTED).increment(n);
}

/// A command that reached the wrong partition (or was keyed by something
/// other than its user) was published again to its user's partition.
pub fn rerouted(partition: u32) {
    counter!(REROUTED, "partition" => partition.to_string()).increment(1);
}

pub fn redelivered(partition: u32, n: u64) {
    counter!(REDELIVERED).increment(n);
    tracing::debug!(partition, n, "redelivering");
}

pub fn dead_lettered(reason: RejectReason, partition: u32) {
    counter!(DEAD_LETTERED, "reason" => reason.as_str()).increment(1);
    tracing::warn!(reason = reason.as_str(), partition, "command dead-lettered");
}

/// A dead letter published to the Pulsar DLQ. `too_many_deliveries` is
/// already counted by [`dead_lettered`] where the consumer gives up.
pub fn pulsar_dead_lettered(reason: &str) {
    if reason != RejectReason::TooManyDeliveries.as_str() {
        counter!(DEAD_LETTERED, "reason" => reason.to_string()).increment(1);
    }
    tracing::info!(reason, "command published to the dead-letter topic");
}

pub fn pulsar_reconnect(partition: u32, reason: &str) {
    counter!(PULSAR_RECONNECTS).increment(1);
    tracing::warn!(partition, reason, "Pulsar consumer reconnecting");
}

pub fn pulsar_published(topic: &str, elapsed: Duration) {
    histogram!(PULSAR_PUBLISH, "topic" => topic.to_string()).record(elapsed.as_secs_f64());
}

pub fn pulsar_publish_failed(topic: &str, error: &dyn std::fmt::Display) {
    counter!(PULSAR_PUBLISH_ERRORS, "topic" => topic.to_string()).increment(1);
    tracing::warn!(topic, %error, "publishing to Pulsar failed");
}

pub fn events_published(n: u64) {
    counter!(EVENTS_PUBLISHED).increment(n);
}

/// Logged at most once per partition per [`log_limit::WINDOW`] (an outage
/// retries every delivery); `suppressed` counts those not logged since.
pub fn retry_scheduled(partition: u32, n: usize, delay: Duration, error: &dyn std::fmt::Display) {
    counter!(RETRIES).increment(1);
    if let Some(suppressed) = log_limit::allow("retry_scheduled", u64::from(partition)) {
        tracing::warn!(partition, n, delay_ms = delay.as_millis() as u64, %error, suppressed, "transient failure, retrying later");
    }
}

/// A group commit this long is logged: callers wait for it without a
/// timer, so a slow store shows here (and as a full in-flight window).
pub const SLOW_COMMIT_SECONDS: f64 = 5.0;

pub fn store_write(seconds: f64, events: usize) {
    histogram!(STORE_WRITE).record(seconds);
    histogram!(STORE_BATCH).record(events as f64);
    if seconds >= SLOW_COMMIT_SECONDS {
        tracing::warn!(
            seconds,
            events,
            "slow group commit: the store is behind; deliveries wait (at most --max-in-flight per partition)"
        );
    }
}

/// Requests the writer left out: their callers stopped (an aggregate
/// stopped with its consumer) while the requests waited in its mailbox.
pub fn writes_abandoned(n: usize) {
    counter!(WRITES_ABANDONED).increment(n as u64);
    tracing::warn!(
        n,
        "write requests whose caller stopped were left out of the commit (their deliveries come again)"
    );
}

pub fn actor_restarted(kind: &'static str, error: &str) {
    counter!(ACTOR_RESTARTS, "actor" => kind).increment(1);
    tracing::error!(actor = kind, error, "actor failed; restarting");
}

pub fn actor_failed_draining(kind: &'static str, error: &str) {
    tracing::error!(
        actor = kind,
        error,
        "actor failed while draining; not restarted"
    );
}

pub fn aggregate_failed(partition: u32, error: &str) {
    counter!(AGGREGATE_FAILURES).increment(1);
    tracing::error!(
        partition,
        error,
        "user aggregate failed; its commands will be redelivered"
    );
}

pub fn projection_lag(projection: &'static str, records: u64) {
    gauge!(PROJECTION_LAG, "projection" => projection).set(records as f64);
}

/// The routes' 2xx and 5xx request series at 0, so that the error-ratio
/// alerts (`rate()` of the 5xx share) see a worker's very first 5xx.
pub fn http_routes_registered(routes: impl IntoIterator<Item = &'static str>) {
    for route in routes {
        for class in ["2xx", "5xx"] {
            counter!(HTTP_REQUESTS, "route" => route, "status" => class).increment(0);
        }
    }
}

pub fn http_request(route: &'static str, status: u16, seconds: f64) {
    let class = match status {
        200..=299 => "2xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    };
    counter!(HTTP_REQUESTS, "route" => route, "status" => class).increment(1);
    histogram!(HTTP_DURATION, "route" => route).record(seconds);
}

/// hyper refused a request it could not parse (400, 414, 431) before any
/// route saw it; counted as the route `unparsed`.
pub fn http_refused_unparsed(status: u16) {
    http_request("unparsed", status, 0.0);
}

/// Which HTTP runtime serves a connection (see `http::runtime`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpRuntime {
    Front,
    Ingest,
}

/// A connection was accepted and is served on `runtime`.
pub fn http_connection(runtime: HttpRuntime) {
    let runtime = match runtime {
        HttpRuntime::Front => "front",
        HttpRuntime::Ingest => "ingest",
    };
    counter!(HTTP_CONNECTIONS, "runtime" => runtime).increment(1);
}

pub fn ready(is_ready: bool) {
    gauge!(READY).set(if is_ready { 1.0 } else { 0.0 });
}

/// What a recorder of its own renders once `record` has run against it:
/// the handles' tests compare it with the series the lookups by name write.
#[cfg(test)]
fn rendered(record: impl FnOnce()) -> String {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let render = recorder.handle();
    metrics::with_local_recorder(&recorder, record);
    render.render()
}
