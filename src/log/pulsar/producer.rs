//! Producers: one lazily created producer per topic (commands, dead
//! letters, events), shared behind a mutex, recreated after a failure.
//!
//! [`TopicProducer::publish`] sends every message without waiting (the
//! crate pipelines them), then waits for every send receipt: it returns
//! `Ok` only once the broker confirmed all of them, in order. Any failure
//! drops the producer (the next publish creates a new one, on a fresh
//! connection) and is reported as `LogError::Unavailable` (retryable).
//! Keyed messages to a partitioned topic are routed like the Java client
//! does ([`super::partition_for_key`]).

use super::{partition_for_key, unavailable, Shared};
use crate::internal_events as ev;
use crate::log::{EventSink, LogError, OutboundMessage};
use async_trait::async_trait;
use pulsar::producer::{Message, ProducerOptions};
use pulsar::routing_policy::{CustomRoutingPolicy, RoutingPolicy};
use pulsar::{Producer, TokioExecutor};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Messages sent before waiting for their receipts.
const PUBLISH_CHUNK: usize = 256;

/// Longest wait for the broker's receipts of one publish.
const RECEIPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Routes keyed messages like the Java client (murmur3, sign bit cleared).
struct JavaKeyHash;

impl CustomRoutingPolicy for JavaKeyHash {
    fn route(&self, message: &Message, num_producers: usize) -> usize {
        match &message.partition_key {
            Some(key) => partition_for_key(key, num_producers as u32) as usize,
            None => 0,
        }
    }
}

/// A producer for one topic, created on first use.
#[derive(Clone)]
pub struct TopicProducer {
    shared: Arc<Shared>,
    topic: String,
    inner: Arc<Mutex<Option<Producer<TokioExecutor>>>>,
}

impl TopicProducer {
    pub(crate) fn new(shared: Arc<Shared>, topic: String) -> Self {
        Self {
            shared,
            topic,
            inner: Arc::new(Mutex::new(None)),
        }
    }

    /// Publishes in order; returns once the broker confirmed every message.
    /// At most `PUBLISH_CHUNK` messages are in flight at once (the crate
    /// answers SlowDown when a connection's queue is full).
    pub async fn publish(&self, mut messages: Vec<OutboundMessage>) -> Result<(), LogError> {
        while !messages.is_empty() {
            let rest = messages.split_off(messages.len().min(PUBLISH_CHUNK));
            self.publish_chunk(messages).await?;
            messages = rest;
        }
        Ok(())
    }

    async fn publish_chunk(&self, messages: Vec<OutboundMessage>) -> Result<(), LogError> {
        let started = Instant::now();
        let mut guard = self.inner.lock().await;
        if guard.is_none() {
            let client = self.shared.client().await;
            let producer = client
                .producer()
                .with_topic(self.topic.clone())
                .with_options(ProducerOptions {
                    routing_policy: Some(RoutingPolicy::Custom(Arc::new(JavaKeyHash))),
                    ..ProducerOptions::default()
                })
                .build()
                .await
                .map_err(unavailable)?;
            *guard = Some(producer);
        }
        let Some(producer) = guard.as_mut() else {
            return Err(LogError::Unavailable("no producer".into()));
        };
        let mut receipts = Vec::with_capacity(messages.len());
        let mut failed = None;
        for m in messages {
            let message = Message {
                payload: m.payload,
                properties: m.properties,
                partition_key: Some(m.key).filter(|k| !k.is_empty()),
                ..Message::default()
            };
            match producer.send_non_blocking(message).await {
                Ok(r) => receipts.push(r),
                Err(e) => {
                    failed = Some(unavailable(e));
                    break;
                }
            }
        }
        // Release the producer for other publishers while we wait.
        if failed.is_some() {
            *guard = None;
        }
        drop(guard);
        if let Some(e) = failed {
            return Err(e);
        }
        let all = futures::future::try_join_all(receipts);
        let result = match tokio::time::timeout(RECEIPT_TIMEOUT, all).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(LogError::Unavailable("no send receipt in time".into())),
        };
        match &result {
            Ok(()) => ev::pulsar_published(&self.topic_label(), started.elapsed()),
            Err(e) => {
                ev::pulsar_publish_failed(&self.topic_label(), e);
                // Recreate on the next publish (possibly on a fresh connection).
                *self.inner.lock().await = None;
            }
        }
        result
    }

    /// A bounded label for metrics: the topic's short name.
    fn topic_label(&self) -> String {
        self.topic
            .rsplit('/')
            .next()
            .unwrap_or(&self.topic)
            .to_string()
    }

    pub async fn close(&self) {
        if let Some(mut p) = self.inner.lock().await.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), p.close()).await;
        }
    }
}

/// The events topic as an [`EventSink`].
pub struct PulsarSink {
    producer: TopicProducer,
}

impl PulsarSink {
    pub(crate) fn new(producer: TopicProducer) -> Self {
        Self { producer }
    }

    pub async fn close(&self) {
        self.producer.close().await;
    }
}

#[async_trait]
impl EventSink for PulsarSink {
    async fn publish(&self, messages: Vec<OutboundMessage>) -> Result<(), LogError> {
        self.producer.publish(messages).await
    }
}
