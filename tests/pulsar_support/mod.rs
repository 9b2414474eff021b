//! Helpers of the Pulsar tests: broker addresses from the environment
//! (`eval "$(compose/native/pulsar.sh env)"`), unique topics created through
//! the admin REST API, in-process services in Pulsar mode, a raw client to
//! publish and to read the DLQ and events topics, and a store wrapper that
//! fails on demand.

#![allow(dead_code)]

mod flow;
pub use crate::common::eventually;
pub use flow::*;

use alpes_tracking::actors::PipelineConfig;
use alpes_tracking::app::ServiceConfig;
use alpes_tracking::domain::codec::BuildInteractionsInfo;
use alpes_tracking::log::pulsar::PulsarOptions;
use alpes_tracking::store::*;
use futures::StreamExt;
use pulsar::consumer::InitialPosition;
use pulsar::{Consumer, ConsumerOptions, Pulsar, SubType, TokioExecutor};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

pub const NS: &str = "persistent://public/default";

pub fn pulsar_url() -> String {
    std::env::var("PULSAR_URL").unwrap_or_else(|_| "pulsar://127.0.0.1:6650".into())
}

pub fn admin_addr() -> SocketAddr {
    let url = std::env::var("PULSAR_ADMIN_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let hostport = url.trim_start_matches("http://").trim_end_matches('/');
    hostport
        .parse()
        .unwrap_or_else(|e| panic!("PULSAR_ADMIN_URL {url:?}: {e}"))
}

/// A fresh topic name (short form) for one test.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Creates `persistent://public/default/<short>` with `partitions` partitions.
pub fn create_partitioned(short: &str, partitions: u32) {
    let path = format!("/admin/v2/persistent/public/default/{short}/partitions");
    let r = crate::common::request(
        admin_addr(),
        "PUT",
        &path,
        &[("Content-Type", "application/json")],
        partitions.to_string().as_bytes(),
    )
    .expect("admin API");
    assert!(
        r.status == 204 || r.status == 200,
        "create {short}: {} {}",
        r.status,
        r.body
    );
}

/// Options for a commands topic (created with 4 partitions) and an events topic.
pub fn options(commands: &str, events: &str) -> PulsarOptions {
    let mut o = PulsarOptions::new(pulsar_url());
    o.commands_topic = format!("{NS}/{commands}");
    o.events_topic = format!("{NS}/{events}");
    o.probe_interval = Duration::from_secs(2);
    o
}

pub fn config(dir: &Path, pulsar: PulsarOptions) -> ServiceConfig {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("TRACKING_LOG"))
        .with_test_writer()
        .try_init();
    ServiceConfig {
        shutdown_grace: Duration::from_secs(25),
        pipeline: PipelineConfig {
            retry_base: Duration::from_millis(50),
            retry_max: Duration::from_millis(500),
            ..PipelineConfig::default()
        },
        pulsar: Some(pulsar),
        ..ServiceConfig::local(dir)
    }
}

pub async fn client() -> Pulsar<TokioExecutor> {
    Pulsar::builder(pulsar_url(), TokioExecutor)
        .build()
        .await
        .expect("pulsar client")
}

/// An exclusive subscription from the earliest message of `topic` (full name).
pub async fn reader(
    client: &Pulsar<TokioExecutor>,
    topic: &str,
) -> Consumer<Vec<u8>, TokioExecutor> {
    client
        .consumer()
        .with_topic(topic)
        .with_subscription(unique("test-reader"))
        .with_subscription_type(SubType::Exclusive)
        .with_options(ConsumerOptions::default().with_initial_position(InitialPosition::Earliest))
        .build()
        .await
        .expect("reader")
}

/// A received message: key, properties, payload.
#[derive(Debug, Clone)]
pub struct Got {
    pub key: Option<String>,
    pub properties: HashMap<String, String>,
    pub payload: Vec<u8>,
}

impl Got {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).expect("JSON payload")
    }
}

/// Receives until `n` messages arrived or `timeout` passed.
pub async fn receive(
    c: &mut Consumer<Vec<u8>, TokioExecutor>,
    n: usize,
    timeout: Duration,
) -> Vec<Got> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, c.next()).await {
            Ok(Some(Ok(m))) => {
                let _ = c.ack(&m).await;
                out.push(Got {
                    key: m.payload.metadata.partition_key.clone(),
                    properties: m
                        .payload
                        .metadata
                        .properties
                        .iter()
                        .map(|kv| (kv.key.clone(), kv.value.clone()))
                        .collect(),
                    payload: m.payload.data.clone(),
                });
            }
            Ok(Some(Err(e))) => panic!("receive: {e}"),
            Ok(None) | Err(_) => break,
        }
    }
    out
}

/// Every event of a user, in sequence order.
pub async fn user_events(store: &dyn EventStore, user: &str) -> Vec<StoredEvent> {
    store
        .user_events(user, 0, 100_000)
        .await
        .expect("user events")
}

/// Every event of the journal.
pub async fn all_events(store: &dyn EventStore) -> Vec<StoredEvent> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let records = store.scan(after, 4096).await.expect("scan");
        let Some(last) = records.last() else {
            return out;
        };
        after = last.pos();
        out.extend(records.into_iter().filter_map(|r| match r {
            JournalRecord::Event(e) => Some(e),
            JournalRecord::Rejection(_) => None,
        }));
    }
}

/// A canonical command for `user` with an explicit interaction id.
pub fn track(user: &str, id: &str, target: &str, occurred: &str) -> Vec<u8> {
    serde_json::json!({
        "interaction_id": id,
        "user_id": user,
        "interaction_type": "click",
        "target": {"id": target, "type": "post"},
        "campaign_id": "c-1",
        "occurred_at": occurred,
    })
    .to_string()
    .into_bytes()
}

/// The payload of the original `BuildInteractionsInfo`.
pub fn saga(b: &BuildInteractionsInfo) -> Vec<u8> {
    serde_json::json!({
        "saga_id": b.saga_id,
        "payload": {"post_id": b.post_id, "start_date": b.start_date, "end_date": b.end_date},
    })
    .to_string()
    .into_bytes()
}

/// Starts an in-process worker on the commands and events topics, ready.
pub async fn worker(dir: &Path, cmds: &str, events: &str) -> alpes_tracking::app::Running {
    let running = alpes_tracking::app::start(config(dir, options(cmds, events)))
        .await
        .expect("worker starts");
    ready(running).await
}
