//! The broker's admin API, for the one figure the client crate does not
//! expose: how far a subscription is acknowledged on a partition (its
//! mark-delete position, `GET .../internalStats`). The ScyllaDB store's
//! followers read the log's records up to it (every record at or below
//! it is acknowledged, so its effects are committed and final).
//!
//! HTTP/1.1 with hyper's client connection, one request per connection
//! (a few requests a second per partition), over TLS for `https://` (the
//! CA file of `--pulsar-tls-ca-file`, else the webpki roots), with the
//! same token as the binary protocol. The URL comes from
//! `--pulsar-admin-url`, by default the service URL's host on the
//! standard admin port (`pulsar://h:6650` -> `http://h:8080`,
//! `pulsar+ssl://h:6651` -> `https://h:8443`).

use super::client::Secret;
use crate::log::LogError;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Longest wait for one admin request.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The admin endpoint of the cluster.
pub struct Admin {
    https: bool,
    host: String,
    port: u16,
    token: Option<Secret>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// The admin URL that goes with a service URL (see the module docs).
pub fn default_admin_url(service_url: &str) -> String {
    let (scheme, rest, port) = match service_url.strip_prefix("pulsar+ssl://") {
        Some(rest) => ("https", rest, 8443),
        None => (
            "http",
            service_url.strip_prefix("pulsar://").unwrap_or(service_url),
            8080,
        ),
    };
    // The first host of a multi-host URL, without its port.
    let host = rest
        .split([',', '/'])
        .next()
        .unwrap_or("")
        .rsplit_once(':')
        .map_or(rest.split([',', '/']).next().unwrap_or(""), |(h, _)| h);
    format!("{scheme}://{host}:{port}")
}

fn bad(url: &str, why: &str) -> LogError {
    LogError::Unavailable(format!("Pulsar admin URL {url:?}: {why}"))
}

impl Admin {
    pub fn new(url: &str, token: Option<Secret>, ca_file: Option<&Path>) -> Result<Self, LogError> {
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad(url, "expected http:// or https://"));
        };
        let authority = rest.trim_end_matches('/');
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h.to_owned(),
                p.parse::<u16>().map_err(|_| bad(url, "bad port"))?,
            ),
            None => (authority.to_owned(), if https { 443 } else { 80 }),
        };
        if host.is_empty() {
            return Err(bad(url, "no host"));
        }
        let tls = if https {
            Some(tls_config(ca_file)?)
        } else {
            None
        };
        Ok(Admin {
            https,
            host,
            port,
            token,
            tls,
        })
    }

    /// The mark-delete position `(ledger, entry)` of `subscription` on a
    /// partition topic (`persistent://tenant/ns/topic-partition-N`); `None`
    /// when the topic has no such subscription (yet). An entry of -1 means
    /// "nothing of that ledger" (everything before it is acknowledged).
    pub async fn mark_delete(
        &self,
        topic: &str,
        subscription: &str,
    ) -> Result<Option<(u64, i64)>, LogError> {
        let path = topic
            .strip_prefix("persistent://")
            .ok_or_else(|| LogError::Unavailable(format!("not a persistent topic: {topic}")))?;
        let body = self
            .get(&format!("/admin/v2/persistent/{path}/internalStats"))
            .await?;
        parse_mark_delete(&body, subscription)
    }

    async fn get(&self, path: &str) -> Result<Bytes, LogError> {
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            LogError::Unavailable(format!(
                "Pulsar admin {what} {}:{}: {e}",
                self.host, self.port
            ))
        };
        let request = async {
            let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| unavailable("connect", &e))?;
            tcp.set_nodelay(true).ok();
            let mut req = hyper::Request::get(path)
                .header(hyper::header::HOST, format!("{}:{}", self.host, self.port))
                .header(hyper::header::ACCEPT, "application/json");
            if let Some(t) = &self.token {
                req = req.header(
                    hyper::header::AUTHORIZATION,
                    format!("Bearer {}", t.expose()),
                );
            }
            let req = req
                .body(Empty::<Bytes>::new())
                .map_err(|e| unavailable("request", &e))?;
            let response = match &self.tls {
                Some(cfg) if self.https => {
                    let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                        .map_err(|e| unavailable("server name", &e))?;
                    let stream = tokio_rustls::TlsConnector::from(cfg.clone())
                        .connect(name, tcp)
                        .await
                        .map_err(|e| unavailable("TLS", &e))?;
                    send(TokioIo::new(stream), req).await
                }
                _ => send(TokioIo::new(tcp), req).await,
            }
            .map_err(|e| unavailable("GET", &e))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| unavailable("body", &e))?
                .to_bytes();
            if status == hyper::StatusCode::NOT_FOUND {
                return Ok(Bytes::new());
            }
            if !status.is_success() {
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                return Err(unavailable(&format!("GET {path}: {status}"), &text));
            }
            Ok(body)
        };
        tokio::time::timeout(TIMEOUT, request)
            .await
            .map_err(|_| unavailable("GET", &"timed out"))?
    }
}

async fn send<S>(
    io: TokioIo<S>,
    req: hyper::Request<Empty<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await
}

/// The subscription's `markDeletePosition` (`"ledger:entry"`) in an
/// `internalStats` answer; an empty answer (404) is `None`.
fn parse_mark_delete(body: &[u8], subscription: &str) -> Result<Option<(u64, i64)>, LogError> {
    if body.is_empty() {
        return Ok(None);
    }
    let corrupt = |why: String| LogError::Unavailable(format!("Pulsar admin internalStats: {why}"));
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| corrupt(format!("not JSON: {e}")))?;
    let Some(pos) = v
        .get("cursors")
        .and_then(|c| c.get(subscription))
        .and_then(|c| c.get("markDeletePosition"))
        .and_then(|p| p.as_str())
    else {
        return Ok(None);
    };
    let (l, e) = pos
        .split_once(':')
        .ok_or_else(|| corrupt(format!("markDeletePosition {pos:?}")))?;
    let ledger = l
        .parse::<u64>()
        .map_err(|_| corrupt(format!("markDeletePosition {pos:?}")))?;
    let entry = e
        .parse::<i64>()
        .map_err(|_| corrupt(format!("markDeletePosition {pos:?}")))?;
    Ok(Some((ledger, entry)))
}

fn tls_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, LogError> {
    crate::tls::client_config(ca_file)
        .map_err(|m| LogError::Unavailable(format!("Pulsar admin TLS: {m}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn admin_urls_follow_the_service_url() {
        assert_eq!(
            default_admin_url("pulsar://127.0.0.1:6650"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            default_admin_url("pulsar+ssl://broker.example:6651"),
            "https://broker.example:8443"
        );
        assert_eq!(default_admin_url("pulsar://a:6650,b:6650"), "http://a:8080");
        assert!(Admin::new("ftp://x", None, None).is_err());
        assert!(Admin::new("http://:80", None, None).is_err());
    }

    #[test]
    fn mark_delete_is_read_from_internal_stats() {
        let body = br#"{"entriesAddedCounter":3,"cursors":{"tracking":{"markDeletePosition":"12:-1","readPosition":"12:0"},"other":{"markDeletePosition":"12:7"}}}"#;
        assert_eq!(parse_mark_delete(body, "tracking").unwrap(), Some((12, -1)));
        assert_eq!(parse_mark_delete(body, "other").unwrap(), Some((12, 7)));
        assert_eq!(parse_mark_delete(body, "missing").unwrap(), None);
        assert_eq!(parse_mark_delete(b"", "tracking").unwrap(), None);
        assert!(parse_mark_delete(b"<html>", "tracking").is_err());
        assert!(
            parse_mark_delete(br#"{"cursors":{"s":{"markDeletePosition":"x"}}}"#, "s").is_err()
        );
    }

    /// One fake broker answer: the request line and the token are checked,
    /// the body is sent chunked (as Jetty does).
    #[tokio::test]
    async fn a_request_reaches_the_broker_with_the_token() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            let req = String::from_utf8_lossy(&buf[..n]).into_owned();
            let body = r#"{"cursors":{"sub":{"markDeletePosition":"5:9"}}}"#;
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                body.len()
            );
            s.write_all(answer.as_bytes()).await.unwrap();
            req
        });
        let admin = Admin::new(
            &format!("http://127.0.0.1:{port}"),
            Some(Secret::new("tok")),
            None,
        )
        .unwrap();
        let got = admin
            .mark_delete("persistent://public/default/t-partition-2", "sub")
            .await
            .unwrap();
        assert_eq!(got, Some((5, 9)));
        let req = server.await.unwrap();
        assert!(
            req.starts_with(
                "GET /admin/v2/persistent/public/default/t-partition-2/internalStats HTTP/1.1"
            ),
            "{req}"
        );
        assert!(req.contains("authorization: Bearer tok"), "{req}");
    }

    #[tokio::test]
    async fn an_unreachable_broker_is_unavailable() {
        let admin = Admin::new("http://127.0.0.1:9", None, None).unwrap();
        let e = admin
            .mark_delete("persistent://public/default/t", "s")
            .await
            .unwrap_err();
        assert!(e.is_retryable(), "{e}");
    }
}
