//! Reaching the cluster: contact points, consistency, credentials and TLS
//! (`ScyllaConfig`), and the errors of opening the store.

use super::schema;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::retry::DefaultRetryPolicy;
use scylla::statement::{Consistency, SerialConsistency};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How to reach the cluster. Its `Debug` shows the password as `***`
/// (the service's configuration, which holds it, is printable).
#[derive(Clone)]
pub struct ScyllaConfig {
    /// Contact points, `host:port`.
    pub nodes: Vec<String>,
    pub keyspace: String,
    /// LOCAL_QUORUM by default; ONE only on a single node (a worker must
    /// read every commit acknowledged before: a user's head, fresh).
    pub consistency: Consistency,
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM file of the CA that signs the nodes' certificates: enables TLS.
    pub tls_ca: Option<PathBuf>,
    pub request_timeout: Duration,
    /// How long a daily or status statistics answer is reused (many reads
    /// a second of one dashboard become one). Zero: never reused.
    pub stats_cache_ttl: Duration,
}

impl ScyllaConfig {
    pub fn new(nodes: &str, keyspace: &str) -> Self {
        ScyllaConfig {
            nodes: nodes
                .split(',')
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect(),
            keyspace: keyspace.to_owned(),
            consistency: Consistency::LocalQuorum,
            username: None,
            password: None,
            tls_ca: None,
            request_timeout: Duration::from_secs(5),
            stats_cache_ttl: Duration::from_secs(1),
        }
    }
}

impl std::fmt::Debug for ScyllaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScyllaConfig")
            .field("nodes", &self.nodes)
            .field("keyspace", &self.keyspace)
            .field("consistency", &self.consistency)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls_ca", &self.tls_ca)
            .field("request_timeout", &self.request_timeout)
            .field("stats_cache_ttl", &self.stats_cache_ttl)
            .finish()
    }
}

/// Parses `one`, `quorum`, `local_quorum`, `all`, ... (case-insensitive).
pub fn parse_consistency(s: &str) -> Result<Consistency, String> {
    Ok(match s.to_ascii_lowercase().replace('-', "_").as_str() {
        "one" => Consistency::One,
        "two" => Consistency::Two,
        "three" => Consistency::Three,
        "quorum" => Consistency::Quorum,
        "all" => Consistency::All,
        "local_quorum" => Consistency::LocalQuorum,
        "each_quorum" => Consistency::EachQuorum,
        "local_one" => Consistency::LocalOne,
        other => return Err(format!("unknown consistency level {other:?}")),
    })
}

/// Errors opening the store (not retryable by the store itself: the caller
/// decides; a refused schema version never goes away by retrying).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("no ScyllaDB contact points given")]
    NoNodes,
    #[error("connecting to ScyllaDB at {nodes}: {source}")]
    Session {
        nodes: String,
        source: Box<scylla::errors::NewSessionError>,
    },
    #[error("TLS CA file {path}: {message}")]
    Tls { path: PathBuf, message: String },
    #[error(transparent)]
    Schema(#[from] schema::SchemaError),
    #[error("preparing statements: {0}")]
    Prepare(#[from] scylla::errors::PrepareError),
}

/// Opens the CQL driver's connection pool to the cluster (without checking the schema).
pub async fn session(cfg: &ScyllaConfig) -> Result<Session, ConnectError> {
    if cfg.nodes.is_empty() {
        return Err(ConnectError::NoNodes);
    }
    let profile = ExecutionProfile::builder()
        .consistency(cfg.consistency)
        .serial_consistency(Some(SerialConsistency::LocalSerial))
        .request_timeout(Some(cfg.request_timeout))
        .retry_policy(Arc::new(DefaultRetryPolicy::new()))
        .build();
    let mut builder = liveness(SessionBuilder::new(), cfg)
        .known_nodes(&cfg.nodes)
        .connection_timeout(Duration::from_secs(5))
        .default_execution_profile_handle(profile.into_handle());
    if let Some(user) = &cfg.username {
        builder = builder.user(user, cfg.password.clone().unwrap_or_default());
    }
    if let Some(path) = &cfg.tls_ca {
        builder = builder.tls_context(Some(tls_config(path)?));
    }
    builder
        .build()
        .await
        .map_err(|source| ConnectError::Session {
            nodes: cfg.nodes.join(","),
            source: Box::new(source),
        })
}

/// How often each connection to a node is asked whether the node answers
/// (a CQL OPTIONS request; one small frame per connection).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);

/// A node that accepts requests but never answers them (frozen, or cut off
/// without a reset) keeps its connections open: the driver goes on choosing
/// it until a keepalive goes unanswered for the keepalive timeout, and with
/// the driver's defaults (every 30 s, 30 s) that stalled every worker for
/// about 45 s with a quorum still up (RELIABILITY.md, "A three-node
/// Cassandra cluster"). A node that answers nothing within the request
/// timeout is treated as down: its connections close and requests go to the
/// others until it answers again.
fn liveness(builder: SessionBuilder, cfg: &ScyllaConfig) -> SessionBuilder {
    builder
        .keepalive_interval(KEEPALIVE_INTERVAL)
        .keepalive_timeout(cfg.request_timeout)
}

fn tls_config(path: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, ConnectError> {
    crate::tls::client_config(Some(path)).map_err(|message| ConnectError::Tls {
        path: path.to_path_buf(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_not_printed() {
        let mut cfg = ScyllaConfig::new("10.0.0.1:9042", "tracking");
        cfg.username = Some("tracking".into());
        cfg.password = Some("pw-zz-secret".into());
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("pw-zz-secret"), "{shown}");
        assert!(
            shown.contains("***") && shown.contains("10.0.0.1:9042"),
            "{shown}"
        );
    }

    #[test]
    fn a_node_that_answers_nothing_within_the_request_timeout_is_left() {
        let mut cfg = ScyllaConfig::new("127.0.0.2:9042,127.0.0.3:9042", "ks");
        cfg.request_timeout = Duration::from_secs(3);
        let b = liveness(SessionBuilder::new(), &cfg);
        assert_eq!(b.config.keepalive_timeout, Some(Duration::from_secs(3)));
        assert_eq!(b.config.keepalive_interval, Some(KEEPALIVE_INTERVAL));
        // Detected within the request timeout plus one interval, not the
        // driver's default of up to a minute.
        assert!(KEEPALIVE_INTERVAL < cfg.request_timeout);
    }
}
