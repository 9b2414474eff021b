//! Reads a whole dead-letter topic from the beginning (a fresh exclusive
//! subscription, removed afterwards) until it stays quiet.

use super::DeadLetter;
use crate::loadgen::ID_PROPERTY;
use anyhow::Context;
use futures::StreamExt;
use pulsar::consumer::InitialPosition;
use pulsar::{ConsumerOptions, SubType};
use std::time::Duration;

/// Silence after which the topic is taken as read.
const QUIET: Duration = Duration::from_secs(5);

pub async fn read_all(url: &str, topic: &str) -> anyhow::Result<Vec<DeadLetter>> {
    let client = crate::log::pulsar::build_client(&crate::log::pulsar::PulsarOptions::new(url))
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let mut consumer = client
        .consumer()
        .with_topic(topic)
        .with_subscription(format!("check-{}", uuid::Uuid::new_v4().simple()))
        .with_subscription_type(SubType::Exclusive)
        .with_options(ConsumerOptions::default().with_initial_position(InitialPosition::Earliest))
        .build::<Vec<u8>>()
        .await
        .with_context(|| format!("subscribing to {topic}"))?;
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(QUIET, consumer.next()).await {
            Ok(Some(Ok(m))) => {
                let prop = |k: &str| {
                    m.payload
                        .metadata
                        .properties
                        .iter()
                        .find(|kv| kv.key == k)
                        .map(|kv| kv.value.clone())
                };
                out.push(DeadLetter {
                    id: prop(ID_PROPERTY),
                    reason: prop("reason"),
                });
                let _ = consumer.ack(&m).await;
            }
            Ok(Some(Err(e))) => return Err(e).context("reading the dead-letter topic"),
            Ok(None) | Err(_) => break,
        }
        if out.len() % 1000 == 0 {
            eprint!("\rcheck: {} dead letters read", out.len());
        }
    }
    let _ = consumer.unsubscribe().await;
    let _ = consumer.close().await;
    Ok(out)
}
