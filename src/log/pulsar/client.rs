//! Options of Pulsar mode and the construction of the client: service URL
//! (`pulsar://` or `pulsar+ssl://`), token authentication, TLS trust, and
//! short connection retries (the driver does its own reconnecting, so a
//! dead broker is noticed in seconds rather than after the crate's long
//! default back-off). Secrets are wrapped in [`Secret`], whose `Debug`
//! never shows them.

use super::{unavailable, DEFAULT_RECEIVER_QUEUE};
use crate::log::LogError;
use pulsar::{
    Authentication, ConnectionRetryOptions, OperationRetryOptions, Pulsar, TokioExecutor,
};
use std::path::PathBuf;
use std::time::Duration;

/// Frames queued per broker connection (all partitions of a process share
/// one connection to a broker).
const OUTBOUND_CHANNEL: usize = 10_000;

/// A secret string (a token): printed as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

/// Everything Pulsar mode needs (from the command line).
#[derive(Debug, Clone)]
pub struct PulsarOptions {
    /// `pulsar://host:6650` or `pulsar+ssl://host:6651`.
    pub url: String,
    pub commands_topic: String,
    pub events_topic: String,
    /// Dead-letter topic; `<commands_topic>-DLQ` when `None`.
    pub dead_letter_topic: Option<String>,
    /// Durable subscription created on the dead-letter topic so that its
    /// messages are retained until someone handles them (a topic without
    /// subscriptions is trimmed: dead letters would silently vanish at the
    /// next ledger roll-over, e.g. a broker restart). Empty: none.
    pub dead_letter_subscription: String,
    pub subscription: String,
    /// JWT for token authentication.
    pub token: Option<Secret>,
    /// PEM file of the CA (chain) to trust for `pulsar+ssl://`.
    pub tls_ca_file: Option<PathBuf>,
    /// Accept any server certificate (tests only).
    pub tls_allow_insecure: bool,
    /// Receiver queue (flow permits) per partition consumer.
    pub receiver_queue: u32,
    /// Silence after which the driver probes the connection.
    pub probe_interval: Duration,
    /// The broker's admin API (`http://` or `https://`), for the
    /// subscription's acknowledged position; `None`: derived from `url`.
    pub admin_url: Option<String>,
}

impl PulsarOptions {
    /// Options with the defaults of the original system.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            commands_topic: "persistent://public/default/commands.tracking".into(),
            events_topic: "persistent://public/default/events.tracking".into(),
            dead_letter_topic: None,
            dead_letter_subscription: "dead-letters".into(),
            subscription: "tracking".into(),
            token: None,
            tls_ca_file: None,
            tls_allow_insecure: false,
            receiver_queue: DEFAULT_RECEIVER_QUEUE,
            probe_interval: Duration::from_secs(5),
            admin_url: None,
        }
    }

    pub fn admin_url(&self) -> String {
        self.admin_url
            .clone()
            .unwrap_or_else(|| super::admin::default_admin_url(&self.url))
    }

    pub fn dead_letter_topic(&self) -> String {
        self.dead_letter_topic
            .clone()
            .unwrap_or_else(|| format!("{}-DLQ", self.commands_topic))
    }
}

/// Builds a client. Fails with `Unavailable` when the broker cannot be
/// reached (retryable) and with `Corrupt`-free configuration errors as
/// `Unavailable` too (the message says which: for a connection refused
/// the crate does not retry, the step that failed, from
/// [`super::diagnose::probe`]).
pub async fn build(o: &PulsarOptions) -> Result<Pulsar<TokioExecutor>, LogError> {
    let tls = o.url.starts_with("pulsar+ssl://");
    if o.tls_allow_insecure {
        // The rustls backend of the crate always verifies certificates.
        return Err(LogError::Unavailable(
            "--pulsar-tls-allow-insecure is not supported by this build (rustls verifies \
             certificates); trust the broker's CA with --pulsar-tls-ca-file instead"
                .into(),
        ));
    }
    // The crate builds its TLS settings from rustls' process default.
    crate::tls::install_process_provider();
    let mut b = Pulsar::builder(o.url.clone(), TokioExecutor)
        .with_connection_retry_options(ConnectionRetryOptions {
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            max_retries: 3,
            connection_timeout: Duration::from_secs(5),
            keep_alive: Duration::from_secs(10),
            ..ConnectionRetryOptions::default()
        })
        .with_operation_retry_options(OperationRetryOptions {
            operation_timeout: Duration::from_secs(10),
            retry_delay: Duration::from_millis(500),
            max_retries: Some(5),
        })
        // Messages queued per connection before the crate answers SlowDown
        // (default 100): publishes pipeline up to `PUBLISH_CHUNK` at once.
        .with_outbound_channel_size(OUTBOUND_CHANNEL);
    if let Some(token) = &o.token {
        b = b.with_auth(Authentication {
            name: "token".into(),
            data: token.expose().as_bytes().to_vec(),
        });
    }
    if let Some(ca) = &o.tls_ca_file {
        if !tls {
            tracing::warn!("--pulsar-tls-ca-file is set but the URL is not pulsar+ssl://");
        }
        b = b
            .with_certificate_chain_file(ca)
            .map_err(|e| LogError::Unavailable(format!("reading {}: {e}", ca.display())))?;
    }
    match b.build().await {
        Ok(client) => Ok(client),
        // The crate says only "fatal error when connecting" for what it
        // does not retry (an untrusted certificate, a refused token): the
        // probe finds which step fails.
        Err(e) if e.to_string().contains("fatal error when connecting") => {
            match super::diagnose::probe(o).await {
                Some(why) => Err(LogError::Unavailable(format!("{e}: {why}"))),
                None => Err(unavailable(e)),
            }
        }
        Err(e) => Err(unavailable(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_not_printed() {
        let mut o = PulsarOptions::new("pulsar://x:6650");
        o.token = Some(Secret::new("eyJhbGciOi.secret"));
        let shown = format!("{o:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("***"));
        assert_eq!(
            o.dead_letter_topic(),
            "persistent://public/default/commands.tracking-DLQ"
        );
    }
}
