//! The HTTP endpoint (hyper 1, HTTP/1.1): ingest, reads, health, readiness
//! and Prometheus metrics.
//!
//! Hardening: at most `MAX_CONNECTIONS` connections, half of them at most
//! from one client address, with spare connections that answer the probes
//! when the cap is full (`admission`); a header read timeout (also closing
//! idle connections), a body read timeout and the 64 KiB body limit. Access: an optional bearer token for the read endpoints, and an
//! optional internal listener for health, readiness and metrics. Every error is JSON `{"error":{"code":..,"message":..}}`,
//! the HTTP parser's own refusals included (`refusals`); a bad request is a
//! 4xx, never a 5xx or a panic.

mod admission;
mod ingest;
mod query;
mod refusals;
mod routes;
mod runtime;

pub use routes::{resolve, Operation, Resolved, Route, ROUTES};
pub use runtime::{HttpThreads, FRONT_SLICE};

use crate::health::Health;
use crate::internal_events::{HttpRequests, HttpRuntime};
use crate::log::CommandLog;
use crate::store::EventStore;
use admission::{Admission, Admitter, Ticket};
use bytes_body::Body;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::watch;

mod bytes_body {
    pub type Body = http_body_util::Full<hyper::body::Bytes>;
}

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// Time allowed to send the request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to send the request body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// What the handlers need.
#[derive(Clone)]
pub struct AppState {
    pub log: Arc<dyn CommandLog>,
    pub store: Arc<dyn EventStore>,
    pub health: Arc<Health>,
    pub metrics: PrometheusHandle,
    pub access: Access,
    /// The accepted commands' series, registered once.
    pub requests: HttpRequests,
}

/// Who may call what, on which listener.
#[derive(Clone, Default)]
pub struct Access {
    /// When set, the read endpoints need `Authorization: Bearer <token>`
    /// (health, readiness, metrics and ingest do not).
    pub api_token: Option<Arc<str>>,
    /// Health, readiness and metrics are served on a separate internal
    /// listener: the public one then does not serve metrics.
    pub internal_listener: bool,
}

/// Which listener a request came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// The API (and health/readiness).
    Public,
    /// Health, readiness and metrics only, without the token.
    Internal,
}

impl Access {
    /// Whether the request carries the token (constant-time comparison).
    pub fn authorized(&self, headers: &hyper::HeaderMap) -> bool {
        let Some(token) = &self.api_token else {
            return true;
        };
        let Some(given) = headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let (a, b) = (given.trim().as_bytes(), token.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// Serves until `shutdown` turns true; then stops accepting (connections in
/// progress finish on their own). With `ingest`, a public connection whose
/// first request is a `POST` is served on that runtime instead (see
/// `runtime`).
pub async fn serve(
    listener: TcpListener,
    role: Listener,
    state: AppState,
    mut shutdown: watch::Receiver<bool>,
    ingest: Option<Handle>,
) {
    crate::internal_events::http_routes_registered(
        routes::ROUTES
            .iter()
            .filter(|r| r.operation.served_on(role, state.access.internal_listener))
            .map(|r| r.operation.name()),
    );
    let admitter = Admitter::default();
    let ingest = ingest.filter(|_| role == Listener::Public);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let permit = match admitter.admit(peer.ip()) {
            Admission::Full(ticket) => ticket,
            Admission::Spare(ticket) => {
                tokio::spawn(probe_only(stream, role, state.clone(), ticket));
                continue;
            }
            Admission::Refused(why) => {
                tokio::spawn(admission::refuse(stream, why));
                continue;
            }
        };
        let state = state.clone();
        let ingest = ingest.clone();
        tokio::spawn(async move {
            let Some(ingest) = ingest else {
                return connection(stream, role, state, HttpRuntime::Front, permit).await;
            };
            match opening(&stream).await {
                // A silent client: what hyper's header timeout would do.
                None => {}
                Some(o) if o.http2 => admission::refuse_http2(stream).await,
                Some(o) if o.first == b'P' => hand_over(stream, &ingest, role, state, permit),
                Some(_) => connection(stream, role, state, HttpRuntime::Front, permit).await,
            }
        });
    }
}

/// Moves a connection to the ingest runtime (re-registered with that
/// runtime's reactor) and serves it there.
fn hand_over(stream: TcpStream, ingest: &Handle, role: Listener, state: AppState, permit: Ticket) {
    let std = match stream.into_std() {
        Ok(std) => std,
        Err(e) => return tracing::debug!(error = %e, "cannot hand a connection over"),
    };
    ingest.spawn(async move {
        match TcpStream::from_std(std) {
            Ok(s) => connection(s, role, state, HttpRuntime::Ingest, permit).await,
            Err(e) => tracing::debug!(error = %e, "cannot hand a connection over"),
        }
    });
}

/// How a connection opens, from one peek at its first bytes (left for
/// hyper to read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Opening {
    /// The first byte (`P`: a `POST`; the other methods served here start
    /// otherwise).
    first: u8,
    /// The HTTP/2 preface (`PRI * HTTP/2.0`), which this HTTP/1.1 server
    /// answers with a 505 instead of a silent close.
    http2: bool,
}

/// The connection's opening, once its first bytes arrived; `None` if the
/// client sent nothing within `HEADER_TIMEOUT` or closed.
async fn opening(stream: &TcpStream) -> Option<Opening> {
    let mut head = [0u8; 8];
    match tokio::time::timeout(HEADER_TIMEOUT, stream.peek(&mut head)).await {
        Ok(Ok(n)) if n > 0 => Some(Opening {
            first: head[0],
            http2: n == head.len() && &head == b"PRI * HT",
        }),
        _ => None,
    }
}

/// Serves a connection admitted beyond the cap: one request, whose head
/// must come within `SPARE_HEADER_TIMEOUT`; health, readiness and metrics
/// are answered, everything else gets a 503.
async fn probe_only(stream: TcpStream, role: Listener, state: AppState, _ticket: Ticket) {
    crate::internal_events::http_connection(HttpRuntime::Front);
    let state = Arc::new(state);
    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
        let state = Arc::clone(&state);
        async move {
            if routes::is_probe(&req) {
                return handle(state, role, req).await;
            }
            Ok::<_, Infallible>(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "the server is at its connection limit; retry",
            ))
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(admission::SPARE_HEADER_TIMEOUT)
        .keep_alive(false)
        .max_buf_size(16 * 1024)
        .serve_connection(TokioIo::new(refusals::JsonRefusals::new(stream)), service);
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "spare connection ended with an error");
    }
}

/// Serves one connection (HTTP/1.1, keep-alive) until it ends; its
/// `ticket` (a place under `MAX_CONNECTIONS`) is given back then.
async fn connection(
    stream: TcpStream,
    role: Listener,
    state: AppState,
    on: HttpRuntime,
    _ticket: Ticket,
) {
    crate::internal_events::http_connection(on);
    // One reference count per request, not one per field of the state.
    let state = Arc::new(state);
    let service = service_fn(move |req| handle(Arc::clone(&state), role, req));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(refusals::JsonRefusals::new(stream)), service);
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

async fn handle(
    state: Arc<AppState>,
    role: Listener,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let (route, response) = routes::route(&state, role, req).await;
    state.requests.answered(
        route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    Ok(response)
}

/// A JSON response.
pub fn json<T: serde::Serialize + ?Sized>(status: StatusCode, body: &T) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// The error JSON: `{"error":{"code":..,"message":..}}`. A 503 (draining,
/// a log or store that cannot take the request, the connection cap) also
/// says when to retry: every 503 here is a state that lasts seconds, and
/// a load balancer or client sends the retry elsewhere or a little later.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response<Body> {
    let mut r = json(
        status,
        &serde_json::json!({"error": {"code": code, "message": message.into()}}),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from_static(RETRY_AFTER_SECONDS),
        );
    }
    r
}

/// The `Retry-After` of every 503, in seconds.
pub const RETRY_AFTER_SECONDS: &str = "1";

#[cfg(test)]
mod tests {
    use super::{error, opening};
    use hyper::StatusCode;

    #[test]
    fn every_503_says_when_to_retry_and_other_errors_do_not() {
        let r = error(StatusCode::SERVICE_UNAVAILABLE, "draining", "x");
        assert_eq!(r.headers()[hyper::header::RETRY_AFTER], "1");
        let r = error(StatusCode::BAD_REQUEST, "malformed", "x");
        assert!(r.headers().get(hyper::header::RETRY_AFTER).is_none());
    }
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn the_first_byte_routes_and_is_left_for_hyper_to_read() {
        for (sent, want) in [
            (&b"POST /x"[..], b'P'),
            (b"GET /x", b'G'),
            (b"HEAD /", b'H'),
        ] {
            let (mut client, server) = pair().await;
            client.write_all(sent).await.unwrap();
            assert_eq!(opening(&server).await.map(|o| o.first), Some(want));
            // Peeked, not consumed.
            let mut buf = vec![0u8; sent.len()];
            server.readable().await.unwrap();
            assert_eq!(server.try_read(&mut buf).unwrap(), sent.len());
            assert_eq!(buf, sent);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_or_closed_client_gives_no_first_byte() {
        let (_client, server) = pair().await;
        assert_eq!(opening(&server).await, None, "silent past the timeout");
        let (client, server) = pair().await;
        drop(client);
        assert_eq!(opening(&server).await, None, "closed");
    }
}
