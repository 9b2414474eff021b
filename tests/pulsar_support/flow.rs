//! Flow helpers of the Pulsar tests: publishing commands per user in
//! order, waiting for readiness, checking per-user order, reading metrics
//! and the HTTP API, and restarting the broker with the script.

use super::{eventually, options, track};
use alpes_tracking::app;
use alpes_tracking::health::Health;
use alpes_tracking::log::pulsar::PulsarLog;
use alpes_tracking::log::{CommandLog, NewRecord};
use std::sync::Arc;
use std::time::Duration;

pub const OCCURRED: &str = "2026-11-29T10:00:00Z";
pub const WAIT: Duration = Duration::from_secs(120);

pub fn record(key: &str, payload: Vec<u8>, props: &[(&str, &str)]) -> NewRecord {
    NewRecord {
        key: key.to_string(),
        payload,
        properties: props
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// Waits until the service is ready (its consumers subscribed).
pub async fn ready(w: app::Running) -> app::Running {
    let health = w.health.clone();
    eventually("readiness", WAIT, || {
        let health = health.clone();
        async move { health.is_ready().then_some(()) }
    })
    .await;
    w
}

pub async fn producer(cmds: &str, events: &str) -> Arc<PulsarLog> {
    PulsarLog::connect(options(cmds, events), Arc::new(Health::default()))
        .await
        .expect("producer")
}

/// Publishes `per_user` commands for each of `users` users, in rounds so
/// that each user's commands are published in order (`u<i>-<k>` ids).
pub async fn publish_users(log: &PulsarLog, prefix: &str, users: usize, per_user: usize) {
    publish_users_from(log, prefix, users, 0, per_user).await
}

/// Like [`publish_users`], for the commands `from..to` of each user.
pub async fn publish_users_from(
    log: &PulsarLog,
    prefix: &str,
    users: usize,
    from: usize,
    to: usize,
) {
    for k in from..to {
        let batch = (0..users)
            .map(|u| {
                let user = format!("{prefix}{u}");
                let id = format!("{user}-{k:05}");
                record(&user, track(&user, &id, "post-1", OCCURRED), &[])
            })
            .collect();
        log.append(batch).await.expect("publish");
    }
}

/// Checks a user's events: seq 1..=n gap-free, ids in publication order.
pub fn assert_in_order(user: &str, events: &[alpes_tracking::store::StoredEvent], n: usize) {
    assert_eq!(events.len(), n, "{user}: {} events", events.len());
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.event.seq, i as u64 + 1, "{user}: seq gap");
        assert_eq!(
            e.event.interaction_id,
            format!("{user}-{i:05}"),
            "{user}: order"
        );
    }
}

/// Reads a counter from the worker's Prometheus metrics (0 if absent).
pub fn metric(addr: std::net::SocketAddr, name: &str) -> f64 {
    let body = crate::common::get(addr, "/metrics").body;
    body.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A user's interaction ids through the HTTP API of a worker.
pub fn http_user_ids(addr: std::net::SocketAddr, user: &str) -> Vec<(u64, String)> {
    let r = crate::common::get(
        addr,
        &format!("/tracking/users/{user}/interactions?limit=1000"),
    );
    r.json()["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| {
                    (
                        i["seq"].as_u64().unwrap_or(0),
                        i["interaction_id"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `compose/native/pulsar.sh <args>` (restarts the shared broker).
pub fn broker(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/compose/native/pulsar.sh");
    let status = std::process::Command::new(script)
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run pulsar.sh");
    assert!(status.success(), "pulsar.sh {args:?} failed");
}
