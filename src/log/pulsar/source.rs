//! One partition of the commands topic: a driver task owning the Key_Shared
//! consumer, the [`PartitionSource`] it feeds and the [`Acker`] it obeys.
//!
//! The driver loop:
//! - takes messages from the consumer, numbers them (`Delivery::id`, in
//!   arrival order), remembers their broker message ids, and sends them on
//!   a bounded channel to the source (a full channel stops taking messages,
//!   so the broker's flow permits, `receiver_queue`, are the only buffer);
//! - applies acks (individual acks by message id); `commit` waits until
//!   the acks sent so far reached the broker (a round trip through the
//!   consumer engine, then a consumer-stats request on its connection,
//!   answered after the acks sent before it; not a ping: the crate keeps
//!   one ping per connection, and partitions share connections);
//! - after `probe_interval` without a message, asks the broker for the
//!   consumer's stats; a failed or slow answer, two answers in a row that
//!   show a backlog but no flow permits for us (a silent consumer), an error from the stream or its end means the
//!   consumer is dead: it is dropped and recreated (back-off, the client
//!   rebuilt after repeated failures), each time counted in
//!   `tracking_pulsar_reconnects_total`, with readiness 503 until it is
//!   back. Messages of the dead consumer that were not acked come back
//!   from the broker. Acks are individual acks of the subscription, so an
//!   ack of a message received by a previous consumer is still sent (by
//!   the current one), and acks that arrive while disconnected are kept and
//!   sent after the reconnect: a command persisted just before a reconnect
//!   or a drain is not delivered again.

use super::producer::TopicProducer;
use super::{dlq_properties, unavailable, Shared};
use crate::internal_events as ev;
use crate::log::{Acker, Delivery, LogError, OutboundMessage, PartitionSource};
use async_trait::async_trait;
use futures::StreamExt;
use pulsar::consumer::InitialPosition;
use pulsar::proto::MessageIdData;
use pulsar::{Consumer, ConsumerOptions, SubType, TokioExecutor};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

type PulsarConsumer = Consumer<Vec<u8>, TokioExecutor>;

enum Cmd {
    Ack(Vec<u64>),
    Flush(oneshot::Sender<Result<(), LogError>>),
}

/// Opens the partition: creates the consumer (so configuration and
/// connection errors surface here), then starts the driver.
pub(crate) async fn open(
    shared: Arc<Shared>,
    partition: u32,
    topic: String,
    dead_letters: TopicProducer,
) -> Result<(PulsarSource, PulsarAcker), LogError> {
    let consumer = subscribe(&shared, partition, &topic).await?;
    let (out_tx, out_rx) = mpsc::channel(shared.options.receiver_queue.max(1) as usize);
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let driver = Driver {
        shared: shared.clone(),
        partition,
        topic: topic.clone(),
        out: out_tx,
        cmds: cmd_rx,
        pending: HashMap::new(),
        deferred: Vec::new(),
        next_id: 1,
        generation: 0,
        lost: false,
    };
    tokio::spawn(driver.run(consumer));
    Ok((
        PulsarSource { rx: out_rx },
        PulsarAcker {
            cmds: cmd_tx,
            topic,
            dead_letters,
        },
    ))
}

async fn subscribe(
    shared: &Shared,
    partition: u32,
    topic: &str,
) -> Result<PulsarConsumer, LogError> {
    let o = &shared.options;
    let client = shared.client().await;
    let consumer = client
        .consumer()
        .with_topic(topic)
        .with_subscription(o.subscription.clone())
        .with_subscription_type(SubType::KeyShared)
        .with_consumer_name(format!(
            "tracking-{}-p{partition}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ))
        .with_batch_size(o.receiver_queue.max(1))
        .with_options(
            ConsumerOptions::default()
                .with_receiver_queue_size(o.receiver_queue.max(1))
                // A subscription created now starts at the oldest retained
                // message: commands published before the first worker
                // subscribed are not skipped (the original used Latest).
                .with_initial_position(InitialPosition::Earliest),
        )
        .build::<Vec<u8>>();
    tokio::time::timeout(Duration::from_secs(20), consumer)
        .await
        .map_err(|_| LogError::Unavailable(format!("subscribing to {topic} timed out")))?
        .map_err(unavailable)
}

/// A consumer that receives nothing although the subscription has a
/// backlog and we have room, while the broker holds no flow permits for
/// it: the client lost its permits (a known failure after reconnects).
fn starved(stats: &[pulsar::proto::CommandConsumerStatsResponse]) -> bool {
    stats
        .iter()
        .any(|s| s.available_permits == Some(0) && s.msg_backlog.unwrap_or(0) > 0)
}

fn key_of(id: &MessageIdData) -> String {
    format!(
        "{}:{}:{}",
        id.ledger_id,
        id.entry_id,
        id.batch_index.unwrap_or(-1)
    )
}

/// The message's place in its partition (a batch index of -1 or none:
/// not batched, index 0).
pub(crate) fn position_of(id: &MessageIdData) -> crate::log::Position {
    let index = id.batch_index.unwrap_or(0).max(0) as u64;
    crate::log::Position::new(id.ledger_id, id.entry_id, index)
}

struct Driver {
    shared: Arc<Shared>,
    partition: u32,
    topic: String,
    out: mpsc::Sender<Delivery>,
    cmds: mpsc::UnboundedReceiver<Cmd>,
    /// Delivery id -> (generation, broker id) of deliveries not yet acked.
    pending: HashMap<u64, (u64, MessageIdData)>,
    /// Acks not yet sent (they arrived while disconnected, or their send
    /// failed): sent first by the next consumer.
    deferred: Vec<MessageIdData>,
    next_id: u64,
    generation: u64,
    /// Counted as disconnected in `Health` (until reconnected or stopped).
    lost: bool,
}

enum Exit {
    /// The consumer looks dead: recreate it.
    Reconnect(String),
    /// The source or the acker is gone, or the log closed: stop.
    Stop,
}

impl Driver {
    async fn run(mut self, first: PulsarConsumer) {
        self.run_inner(first).await;
        self.set_lost(false);
    }

    fn set_lost(&mut self, lost: bool) {
        if lost != self.lost {
            self.lost = lost;
            if lost {
                self.shared.health.broker_lost();
            } else {
                self.shared.health.broker_restored();
            }
        }
    }

    async fn run_inner(&mut self, first: PulsarConsumer) {
        let mut consumer = Some(first);
        let mut failures: u32 = 0;
        loop {
            let mut c = match consumer.take() {
                Some(c) => c,
                None => {
                    if self.stopping() {
                        return;
                    }
                    match subscribe(&self.shared, self.partition, &self.topic).await {
                        Ok(c) => {
                            failures = 0;
                            self.set_lost(false);
                            tracing::info!(
                                partition = self.partition,
                                "Pulsar consumer reconnected"
                            );
                            c
                        }
                        Err(e) => {
                            failures += 1;
                            tracing::warn!(partition = self.partition, error = %e, failures, "Pulsar consumer cannot reconnect yet");
                            if failures.is_multiple_of(3) {
                                if let Err(e) = self.shared.rebuild_client().await {
                                    tracing::warn!(error = %e, "rebuilding the Pulsar client failed");
                                }
                            }
                            let delay = Duration::from_millis(200 << failures.min(5));
                            if self.idle_for(delay).await {
                                return;
                            }
                            continue;
                        }
                    }
                }
            };
            self.generation += 1;
            match self.serve(&mut c).await {
                Exit::Stop => {
                    let _ = tokio::time::timeout(Duration::from_secs(5), c.close()).await;
                    return;
                }
                Exit::Reconnect(why) => {
                    tracing::warn!(partition = self.partition, reason = %why, "Pulsar consumer lost; recreating it");
                    ev::pulsar_reconnect(self.partition, &why);
                    self.set_lost(true);
                    // Unacked messages of the dead consumer come back.
                    self.pending.clear();
                    let _ = tokio::time::timeout(Duration::from_secs(2), c.close()).await;
                }
            }
        }
    }

    fn stopping(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst) || self.out.is_closed()
    }

    /// Waits `delay` while answering commands (acks of a dead consumer are
    /// dropped, flushes fail). Returns true if the driver should stop.
    async fn idle_for(&mut self, delay: Duration) -> bool {
        let deadline = tokio::time::sleep(delay);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => return self.stopping(),
                cmd = self.cmds.recv() => match cmd {
                    None => return true,
                    Some(Cmd::Ack(ids)) => {
                        // Kept for the next consumer (see the module docs).
                        for id in ids {
                            if let Some((_, mid)) = self.pending.remove(&id) {
                                self.forget(&mid);
                                self.deferred.push(mid);
                            }
                        }
                    }
                    Some(Cmd::Flush(reply)) => {
                        let _ = reply.send(Err(LogError::Unavailable("broker disconnected".into())));
                    }
                },
            }
        }
    }

    async fn serve(&mut self, c: &mut PulsarConsumer) -> Exit {
        while let Some(mid) = self.deferred.pop() {
            if let Err(e) = c.ack_with_id(&self.topic, mid.clone()).await {
                self.deferred.push(mid);
                return Exit::Reconnect(format!("deferred ack failed: {e}"));
            }
        }
        let probe_every = self.shared.options.probe_interval;
        let mut probe = tokio::time::interval(probe_every);
        probe.tick().await;
        let mut heard = true;
        // False once the source is gone (draining or stopped): take no more
        // messages, but keep applying acks until the acker is dropped too,
        // so that what was persisted before the drain is acknowledged.
        let mut reading = !self.out.is_closed();
        // A delivery the source has no room for yet. The driver never
        // blocks on the source: acks and flushes must keep flowing while
        // the consumer's window is full (the consumer may be waiting for
        // a flush before it releases permits).
        let mut waiting: Option<Delivery> = None;
        let out = self.out.clone();
        // Consecutive probes that found the consumer starved (see `starved`).
        let mut starving = 0u32;
        loop {
            tokio::select! {
                biased;
                cmd = self.cmds.recv() => match cmd {
                    None => return Exit::Stop,
                    Some(Cmd::Ack(ids)) => {
                        for id in ids {
                            if let Some((_generation, mid)) = self.pending.remove(&id) {
                                self.forget(&mid);
                                if let Err(e) = c.ack_with_id(&self.topic, mid.clone()).await {
                                    self.deferred.push(mid);
                                    return Exit::Reconnect(format!("ack failed: {e}"));
                                }
                            }
                        }
                    }
                    Some(Cmd::Flush(reply)) => {
                        let r = tokio::time::timeout(Duration::from_secs(10), c.get_stats()).await;
                        match r {
                            Ok(Ok(_)) => { let _ = reply.send(Ok(())); }
                            Ok(Err(e)) => {
                                let _ = reply.send(Err(unavailable(&e)));
                                return Exit::Reconnect(format!("flush failed: {e}"));
                            }
                            Err(_) => {
                                // A slow broker is not a dead consumer (the
                                // silence probe below catches those):
                                // recreating it would redeliver everything
                                // unacknowledged and make the broker slower.
                                let _ = reply.send(Err(LogError::Unavailable("flush timed out".into())));
                            }
                        }
                    }
                },
                room = out.reserve(), if waiting.is_some() => match room {
                    Ok(room) => {
                        if let Some(d) = waiting.take() {
                            room.send(d);
                        }
                    }
                    Err(_) => {
                        // Not delivered, not acked: the broker redelivers it.
                        waiting = None;
                        reading = false;
                    }
                },
                msg = c.next(), if reading && waiting.is_none() => match msg {
                    None => return Exit::Reconnect("consumer stream ended".into()),
                    Some(Err(e)) => return Exit::Reconnect(format!("consumer error: {e}")),
                    Some(Ok(m)) => {
                        heard = true;
                        let d = self.delivery(m);
                        match out.try_send(d) {
                            Ok(()) => {}
                            Err(mpsc::error::TrySendError::Full(d)) => waiting = Some(d),
                            Err(mpsc::error::TrySendError::Closed(_)) => reading = false,
                        }
                    }
                },
                _ = probe.tick() => {
                    if self.shared.closed.load(Ordering::SeqCst) {
                        return Exit::Stop;
                    }
                    reading = reading && !self.out.is_closed();
                    if !heard && reading && waiting.is_none() {
                        match tokio::time::timeout(probe_every, c.get_stats()).await {
                            Ok(Ok(stats)) => {
                                if starved(&stats) {
                                    starving += 1;
                                    if starving >= 2 {
                                        return Exit::Reconnect("silent consumer: backlog but no permits".into());
                                    }
                                } else {
                                    starving = 0;
                                }
                            }
                            Ok(Err(e)) => return Exit::Reconnect(format!("probe failed: {e}")),
                            Err(_) => return Exit::Reconnect("probe timed out".into()),
                        }
                    } else {
                        starving = 0;
                    }
                    heard = false;
                }
            }
        }
    }

    fn forget(&self, mid: &MessageIdData) {
        if let Some(seen) = self.shared.seen.get(self.partition as usize) {
            if let Ok(mut seen) = seen.lock() {
                seen.remove(&key_of(mid));
            }
        }
    }

    fn delivery(&mut self, m: pulsar::consumer::Message<Vec<u8>>) -> Delivery {
        let mid = m.message_id().clone();
        let key = key_of(&mid);
        let redelivery_count = match self.shared.seen.get(self.partition as usize) {
            Some(seen) => match seen.lock() {
                Ok(mut seen) => {
                    let n = seen.entry(key.clone()).or_insert(0);
                    *n += 1;
                    *n - 1
                }
                Err(_) => 0,
            },
            None => 0,
        };
        let meta = &m.payload.metadata;
        let properties: HashMap<String, String> = meta
            .properties
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect();
        let id = self.next_id;
        self.next_id += 1;
        let position = position_of(&mid);
        self.pending.insert(id, (self.generation, mid));
        Delivery {
            partition: self.partition,
            id,
            key: meta.partition_key.clone().filter(|k| !k.is_empty()),
            properties,
            published_at_ms: meta.publish_time as i64,
            redelivery_count,
            identity: format!("pulsar:{}:{key}", self.topic),
            position,
            payload: m.payload.data,
        }
    }
}

/// The read side: what the driver delivered.
pub struct PulsarSource {
    rx: mpsc::Receiver<Delivery>,
}

#[async_trait]
impl PartitionSource for PulsarSource {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Delivery>, LogError> {
        let Some(first) = self.rx.recv().await else {
            return Err(LogError::Closed);
        };
        let mut batch = vec![first];
        while batch.len() < max {
            match self.rx.try_recv() {
                Ok(d) => batch.push(d),
                Err(_) => break,
            }
        }
        Ok(batch)
    }
}

/// The ack side: forwards acks to the driver; publishes dead letters.
pub struct PulsarAcker {
    cmds: mpsc::UnboundedSender<Cmd>,
    topic: String,
    dead_letters: TopicProducer,
}

#[async_trait]
impl Acker for PulsarAcker {
    async fn ack(&self, ids: &[u64]) -> Result<(), LogError> {
        self.cmds
            .send(Cmd::Ack(ids.to_vec()))
            .map_err(|_| LogError::Closed)
    }

    /// Periodic: nothing to wait for. The acks went out on the consumer's
    /// connection as they came; confirming them with a broker round trip
    /// every tick would stall the consumer actor whenever the broker is slow
    /// (seen under overload: 10 s stalls, then reconnects and mass
    /// redeliveries). A lost ack only means a redelivery, answered
    /// `Duplicate`. [`Acker::flush`] (drain, stop) does confirm.
    async fn commit(&self) -> Result<(), LogError> {
        Ok(())
    }

    async fn flush(&self) -> Result<(), LogError> {
        let (tx, rx) = oneshot::channel();
        if self.cmds.send(Cmd::Flush(tx)).is_err() {
            return Ok(()); // the driver is gone: nothing left to flush
        }
        // A failed flush is not the consumer's failure: the driver is
        // reconnecting, and acks that did not arrive only mean redeliveries
        // (answered as duplicates).
        if let Ok(Err(e)) = rx.await {
            tracing::debug!(topic = %self.topic, error = %e, "acks not confirmed by the broker");
        }
        Ok(())
    }

    async fn dead_letter(
        &self,
        delivery: &Delivery,
        reason: &str,
        detail: &str,
    ) -> Result<(), LogError> {
        let message = OutboundMessage {
            key: delivery.key.clone().unwrap_or_default(),
            payload: delivery.payload.clone(),
            properties: dlq_properties(delivery, &self.topic, reason, detail),
        };
        self.dead_letters.publish(vec![message]).await?;
        ev::pulsar_dead_lettered(reason);
        Ok(())
    }
}
