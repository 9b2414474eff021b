//! The Pulsar command log: the commands topic of an Apache Pulsar cluster,
//! consumed with a Key_Shared subscription (the original system's setup).
//!
//! - [`PulsarLog::connect`] builds the client (token auth, TLS), discovers
//!   the partitions of the commands topic (a non-partitioned topic is one
//!   partition) and keeps them: [`CommandLog::partitions`].
//! - [`CommandLog::open`] starts a driver task for `<topic>-partition-<p>`
//!   ([`source`]): it owns the consumer, hands deliveries to the
//!   [`PartitionSource`], applies acks, probes the connection and
//!   recreates the consumer when the broker goes away (counting reconnects
//!   and turning readiness to 503 meanwhile).
//! - [`CommandLog::append`] publishes to the commands topic keyed by the
//!   user key and returns once the broker confirmed (send receipt); the
//!   partition is chosen like the Java client does for keyed messages
//!   (`murmur3_32(key) & i32::MAX % partitions`), so every producer routes a
//!   user to the same partition.
//! - `Acker::dead_letter` publishes the original payload to the dead-letter
//!   topic ([`dlq_properties`]); [`PulsarSink`] publishes outbound events.
//!
//! Errors: broker and connection failures map to `LogError::Unavailable`
//! (retryable); a closed log is `LogError::Closed`.

mod admin;
mod client;
mod diagnose;
mod producer;
mod source;

pub use client::{build as build_client, PulsarOptions, Secret};
pub use producer::PulsarSink;

use crate::health::Health;
use crate::log::{
    Acker, Appended, CommandLog, Delivery, LogError, NewRecord, PartitionSource, Position,
};
use async_trait::async_trait;
use producer::TopicProducer;
use pulsar::consumer::InitialPosition;
use pulsar::{ConsumerOptions, Pulsar, SubType, TokioExecutor};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Messages a partition's driver takes from the broker at once (the
/// consumer's receiver queue / flow permits), as the original did.
pub const DEFAULT_RECEIVER_QUEUE: u32 = 1000;

pub(crate) fn unavailable(e: impl std::fmt::Display) -> LogError {
    LogError::Unavailable(e.to_string())
}

/// Shared by the log, its partition drivers and its producers.
pub(crate) struct Shared {
    pub options: PulsarOptions,
    pub health: Arc<Health>,
    client: tokio::sync::RwLock<Arc<Pulsar<TokioExecutor>>>,
    pub closed: AtomicBool,
    /// Deliveries seen per partition and message (in this process), for
    /// `Delivery::redelivery_count` (the crate does not expose the broker's
    /// count): a lower bound, like the embedded log's.
    pub seen: Vec<Mutex<HashMap<String, u32>>>,
}

impl Shared {
    pub async fn client(&self) -> Arc<Pulsar<TokioExecutor>> {
        self.client.read().await.clone()
    }

    /// Replaces the client (after repeated connection failures: the crate's
    /// connection pool may hold a dead connection).
    pub async fn rebuild_client(&self) -> Result<(), LogError> {
        let fresh = client::build(&self.options).await?;
        *self.client.write().await = Arc::new(fresh);
        Ok(())
    }
}

/// The Pulsar command log (see the module docs).
pub struct PulsarLog {
    shared: Arc<Shared>,
    /// Partition topics (`<topic>-partition-<p>`, or the topic itself).
    topics: Vec<String>,
    commands: TopicProducer,
    dead_letters: TopicProducer,
    admin: admin::Admin,
}

impl PulsarLog {
    /// Connects, discovers the partitions of the commands topic.
    pub async fn connect(
        options: PulsarOptions,
        health: Arc<Health>,
    ) -> Result<Arc<PulsarLog>, LogError> {
        let client = client::build(&options).await?;
        let admin = admin::Admin::new(
            &options.admin_url(),
            options.token.clone(),
            options.tls_ca_file.as_deref(),
        )?;
        let found = client
            .lookup_partitioned_topic(options.commands_topic.clone())
            .await
            .map_err(unavailable)?;
        let mut topics: Vec<String> = found.into_iter().map(|(t, _)| t).collect();
        if topics.is_empty() {
            topics.push(options.commands_topic.clone());
        }
        // The crate answers in partition order; make sure of it.
        topics.sort_by_key(|t| partition_index(t));
        tracing::info!(topic = %options.commands_topic, partitions = topics.len(), subscription = %options.subscription, "Pulsar commands topic");
        let shared = Arc::new(Shared {
            seen: topics.iter().map(|_| Mutex::default()).collect(),
            client: tokio::sync::RwLock::new(Arc::new(client)),
            closed: AtomicBool::new(false),
            health,
            options,
        });
        Ok(Arc::new(PulsarLog {
            commands: TopicProducer::new(shared.clone(), shared.options.commands_topic.clone()),
            dead_letters: TopicProducer::new(shared.clone(), shared.options.dead_letter_topic()),
            topics,
            shared,
            admin,
        }))
    }

    /// Makes sure the dead-letter topic has its retention subscription
    /// (idempotent: subscribing to an existing durable subscription and
    /// closing the consumer leaves it as it was, backlog included).
    pub async fn ensure_dead_letter_subscription(&self) -> Result<(), LogError> {
        let o = &self.shared.options;
        if o.dead_letter_subscription.is_empty() {
            return Ok(());
        }
        let topic = o.dead_letter_topic();
        let client = self.shared.client().await;
        let consumer = client
            .consumer()
            .with_topic(topic.clone())
            .with_subscription(o.dead_letter_subscription.clone())
            .with_subscription_type(SubType::Shared)
            .with_options(
                ConsumerOptions::default()
                    .with_receiver_queue_size(1)
                    .with_initial_position(InitialPosition::Earliest),
            )
            .build::<Vec<u8>>();
        let mut consumer = tokio::time::timeout(Duration::from_secs(20), consumer)
            .await
            .map_err(|_| LogError::Unavailable(format!("subscribing to {topic} timed out")))?
            .map_err(unavailable)?;
        let _ = consumer.close().await;
        tracing::info!(%topic, subscription = %o.dead_letter_subscription, "dead letters retained by a durable subscription");
        Ok(())
    }

    /// A sink publishing to the events topic over this log's client.
    pub fn events_sink(&self) -> Arc<PulsarSink> {
        Arc::new(PulsarSink::new(TopicProducer::new(
            self.shared.clone(),
            self.shared.options.events_topic.clone(),
        )))
    }
}

/// `3` for `...-partition-3`, 0 for a non-partitioned topic.
fn partition_index(topic: &str) -> u32 {
    topic
        .rsplit_once("-partition-")
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0)
}

/// The partition of a keyed message, as the Java client routes it
/// (`Murmur3_32Hash`: murmur3 x86 32-bit, seed 0, sign bit cleared).
pub fn partition_for_key(key: &str, partitions: u32) -> u32 {
    if partitions <= 1 {
        return 0;
    }
    (murmur3_32(key.as_bytes()) & 0x7fff_ffff) % partitions
}

fn murmur3_32(data: &[u8]) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h: u32 = 0;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut k: u32 = 0;
        for (i, b) in rest.iter().enumerate() {
            k |= u32::from(*b) << (8 * i);
        }
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// The properties of a dead letter: the original's, plus why and where from.
pub fn dlq_properties(
    delivery: &Delivery,
    topic: &str,
    reason: &str,
    detail: &str,
) -> HashMap<String, String> {
    let mut props = delivery.properties.clone();
    props.insert("reason".into(), reason.into());
    if !detail.is_empty() {
        props.insert("detail".into(), detail.chars().take(512).collect());
    }
    let id = delivery
        .identity
        .rsplit(':')
        .take(3)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join(":");
    props.insert("original_message_id".into(), id);
    props.insert("original_topic".into(), topic.into());
    props.insert(
        "redelivery_count".into(),
        delivery.redelivery_count.to_string(),
    );
    props
}

#[async_trait]
impl CommandLog for PulsarLog {
    fn partitions(&self) -> u32 {
        self.topics.len() as u32
    }

    async fn append(&self, records: Vec<NewRecord>) -> Result<Vec<Appended>, LogError> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(LogError::Closed);
        }
        let n = self.topics.len() as u32;
        let partitions: Vec<u32> = records
            .iter()
            .map(|r| partition_for_key(&r.key, n))
            .collect();
        let messages = records
            .into_iter()
            .map(|r| crate::log::OutboundMessage {
                key: r.key,
                payload: r.payload,
                properties: r.properties,
            })
            .collect();
        self.commands.publish(messages).await?;
        Ok(partitions
            .into_iter()
            .map(|partition| Appended {
                partition,
                offset: 0,
            })
            .collect())
    }

    async fn open(
        &self,
        partition: u32,
    ) -> Result<(Box<dyn PartitionSource>, Arc<dyn Acker>), LogError> {
        let topic = self
            .topics
            .get(partition as usize)
            .ok_or(LogError::NoSuchPartition(partition))?
            .clone();
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(LogError::Closed);
        }
        let (source, acker) = source::open(
            self.shared.clone(),
            partition,
            topic,
            self.dead_letters.clone(),
        )
        .await?;
        Ok((Box::new(source), Arc::new(acker)))
    }

    fn partition_of(&self, key: &str) -> u32 {
        partition_for_key(key, self.topics.len() as u32)
    }

    /// The subscription's mark-delete position on the partition (from the
    /// broker's admin API: the binary protocol's answer is not exposed by
    /// the client crate): every entry at or below it is acknowledged.
    async fn acked_through(&self, partition: u32) -> Result<Option<Position>, LogError> {
        let topic = self
            .topics
            .get(partition as usize)
            .ok_or(LogError::NoSuchPartition(partition))?;
        let mark = self
            .admin
            .mark_delete(topic, &self.shared.options.subscription)
            .await?;
        Ok(mark.and_then(|(ledger, entry)| {
            // `L:-1`: nothing of ledger L, everything before it.
            if entry >= 0 {
                Some(Position::end_of_entry(ledger, entry as u64))
            } else {
                ledger
                    .checked_sub(1)
                    .map(|l| Position::end_of_entry(l, u64::MAX >> crate::log::BATCH_BITS))
            }
        }))
    }

    async fn close(&self) -> Result<(), LogError> {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.commands.close().await;
        self.dead_letters.close().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_matches_reference_vectors() {
        assert_eq!(murmur3_32(b""), 0);
        assert_eq!(murmur3_32(b"hello"), 0x248b_fa47);
        assert_eq!(murmur3_32(b"Hello, world!"), 0xc036_3e43);
        assert_eq!(
            murmur3_32(b"The quick brown fox jumps over the lazy dog"),
            0x2e4f_f723
        );
    }

    #[test]
    fn partition_topics_sort_by_index() {
        assert_eq!(partition_index("persistent://a/b/t-partition-12"), 12);
        assert_eq!(partition_index("persistent://a/b/t"), 0);
        assert!(partition_for_key("u-1", 4) < 4);
        assert_eq!(partition_for_key("u-1", 1), 0);
    }

    #[test]
    fn dead_letter_properties_keep_the_originals() {
        let mut properties = HashMap::new();
        properties.insert("name".to_string(), "TrackInteraction".to_string());
        let d = Delivery {
            partition: 1,
            id: 7,
            key: Some("u".into()),
            payload: b"{".to_vec(),
            properties,
            published_at_ms: 0,
            redelivery_count: 2,
            identity: "pulsar:persistent://public/default/t-partition-1:10:20:-1".into(),
            position: crate::log::Position::new(10, 20, 0),
        };
        let p = dlq_properties(
            &d,
            "persistent://public/default/t-partition-1",
            "malformed",
            "x",
        );
        assert_eq!(p["reason"], "malformed");
        assert_eq!(p["name"], "TrackInteraction");
        assert_eq!(p["original_message_id"], "10:20:-1");
        assert_eq!(p["redelivery_count"], "2");
        assert_eq!(
            p["original_topic"],
            "persistent://public/default/t-partition-1"
        );
    }
}
