//! `tracking probe`: one HTTP/1.1 GET of the worker's liveness
//! (`/tracking/health`) or readiness (`/tracking/ready`) endpoint, success
//! on a 2xx answer. It is the container image's HEALTHCHECK and compose's
//! readiness check: the runtime image has no shell and no HTTP client, so
//! the binary probes itself.
//!
//! Invariants: one request on one fresh connection, bounded as a whole by
//! `--timeout` (connect, request, status line and a bounded body excerpt),
//! so a hung worker fails the probe instead of hanging it; plain `http://`
//! only (the probe runs beside the worker, on loopback); a failure is one
//! [`ProbeError`] whose text fits on one line (what `docker inspect` and
//! `kubectl describe` show).

use clap::Args;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// The worker's port when neither a URL nor a listen address is given
/// (the default of `tracking run --listen`).
const DEFAULT_PORT: u16 = 8010;
/// Longest body excerpt kept for a failure message.
const EXCERPT: usize = 200;

/// Arguments of `tracking probe`.
#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    /// URL to GET (http:// only). Default: http://127.0.0.1:PORT/tracking/health,
    /// PORT being the one of --internal-listen, else of --listen, else 8010.
    #[arg(long, conflicts_with = "ready")]
    pub url: Option<String>,
    /// Probe readiness (/tracking/ready) instead of liveness, at the default
    /// URL's address.
    #[arg(long)]
    pub ready: bool,
    /// Longest wait for the whole exchange (connect, request, answer).
    #[arg(long, default_value = "2s", value_parser = crate::config::parse_duration)]
    pub timeout: Duration,
    /// The worker's listen address (read from the same variable as `run`),
    /// for the default URL.
    #[arg(long, env = "TRACKING_LISTEN", hide_env_values = true)]
    pub listen: Option<SocketAddr>,
    /// The worker's internal listener (health, readiness, metrics), which
    /// the default URL prefers when set.
    #[arg(long, env = "TRACKING_INTERNAL_LISTEN", hide_env_values = true)]
    pub internal_listen: Option<SocketAddr>,
}

/// Why a probe failed. None is retried by the probe itself: the container
/// runtime or the kubelet repeats probes on its own schedule.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The URL is not `http://host[:port][/path]`.
    #[error("bad URL {url:?}: {why}")]
    BadUrl { url: String, why: &'static str },
    /// Nothing listens there (the worker is not running, or listens on
    /// another address or port).
    #[error("GET {url}: connection refused (no worker listening at {authority})")]
    Refused { url: String, authority: String },
    /// Any other failure to connect (no route, unknown host).
    #[error("GET {url}: cannot connect to {authority}: {source}")]
    Connect {
        url: String,
        authority: String,
        #[source]
        source: std::io::Error,
    },
    /// No complete answer within the timeout (a hung or overloaded worker).
    #[error("GET {url}: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    /// The connection broke or the answer was not HTTP/1.1.
    #[error("GET {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: hyper::Error,
    },
    /// An answer other than 2xx (readiness says 503 while starting,
    /// draining, or while the store fails).
    #[error("GET {url}: {status}: {excerpt}")]
    Status {
        url: String,
        status: hyper::StatusCode,
        excerpt: String,
    },
}

/// A successful probe: the 2xx status and the start of the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthy {
    pub status: hyper::StatusCode,
    pub excerpt: String,
}

/// A parsed `http://` URL: what to connect to, the Host header, the path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// Host as given, without IPv6 brackets (what `connect` resolves).
    host: String,
    port: u16,
    /// `host:port` as written in the URL (brackets kept): the Host header.
    authority: String,
    path: String,
}

fn parse_url(url: &str) -> Result<Target, ProbeError> {
    let bad = |why| ProbeError::BadUrl {
        url: url.to_owned(),
        why,
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("expected http:// (the probe talks to the local worker)"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
        };
        (h, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| bad("bad port"))?,
        None => 80,
    };
    Ok(Target {
        host: host.to_owned(),
        port,
        authority: authority.to_owned(),
        path: path.to_owned(),
    })
}

/// The URL the probe GETs: `--url`, else the loopback (or the specific
/// address the worker binds) at the port of its listener.
pub fn url_of(args: &ProbeArgs) -> String {
    if let Some(url) = &args.url {
        return url.clone();
    }
    let path = if args.ready {
        "/tracking/ready"
    } else {
        "/tracking/health"
    };
    let listen = args
        .internal_listen
        .or(args.listen)
        .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_PORT)));
    // A worker bound to every interface answers on loopback; one bound to
    // a single address answers only there.
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}{path}", SocketAddr::new(ip, listen.port()))
}

/// One GET of `url`, bounded by `timeout`: `Ok` on a 2xx answer.
pub async fn probe(url: &str, timeout: Duration) -> Result<Healthy, ProbeError> {
    let target = parse_url(url)?;
    tokio::time::timeout(timeout, exchange(url, &target))
        .await
        .map_err(|_| ProbeError::Timeout {
            url: url.to_owned(),
            timeout,
        })?
}

async fn exchange(url: &str, t: &Target) -> Result<Healthy, ProbeError> {
    let tcp = tokio::net::TcpStream::connect((t.host.as_str(), t.port))
        .await
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::ConnectionRefused {
                ProbeError::Refused {
                    url: url.to_owned(),
                    authority: t.authority.clone(),
                }
            } else {
                ProbeError::Connect {
                    url: url.to_owned(),
                    authority: t.authority.clone(),
                    source,
                }
            }
        })?;
    let http = |source| ProbeError::Http {
        url: url.to_owned(),
        source,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(http)?;
    // The connection task ends with the exchange (or with the runtime,
    // when the timeout drops the request).
    tokio::spawn(async move {
        let _ = conn.await;
    });
    // The request is built from parts checked above: it cannot be refused.
    let mut req = hyper::Request::new(Empty::<Bytes>::new());
    *req.uri_mut() = t.path.parse().map_err(|_| ProbeError::BadUrl {
        url: url.to_owned(),
        why: "bad path",
    })?;
    if let Ok(host) = hyper::header::HeaderValue::from_str(&t.authority) {
        req.headers_mut().insert(hyper::header::HOST, host);
    }
    req.headers_mut().insert(
        hyper::header::USER_AGENT,
        hyper::header::HeaderValue::from_static("tracking-probe"),
    );
    let response = sender.send_request(req).await.map_err(http)?;
    let status = response.status();
    let excerpt = excerpt(response.into_body()).await.map_err(http)?;
    if status.is_success() {
        Ok(Healthy { status, excerpt })
    } else {
        Err(ProbeError::Status {
            url: url.to_owned(),
            status,
            excerpt,
        })
    }
}

/// The first [`EXCERPT`] bytes of the body, on one line; the rest is not
/// read (a large body neither slows the probe nor fills its memory).
async fn excerpt(mut body: hyper::body::Incoming) -> Result<String, hyper::Error> {
    let mut kept = Vec::new();
    while kept.len() < EXCERPT {
        match body.frame().await {
            Some(frame) => {
                if let Ok(data) = frame?.into_data() {
                    kept.extend_from_slice(&data);
                }
            }
            None => break,
        }
    }
    let cut = kept.len() > EXCERPT;
    kept.truncate(EXCERPT);
    let mut text = String::from_utf8_lossy(&kept)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if cut {
        text.push_str(" ...");
    }
    Ok(text)
}

/// `tracking probe`: the probe on a single-threaded runtime (no worker
/// threads for one request). Prints one line: on stdout when healthy, on
/// stderr with the reason otherwise.
pub fn main(args: &ProbeArgs) -> std::process::ExitCode {
    let url = url_of(args);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("probe: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(probe(&url, args.timeout)) {
        Ok(h) => {
            println!("GET {url}: {}", h.status);
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("probe failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests;
