//! A raw HTTP/1.1 client that keeps the headers (the contract checks
//! them), one request per connection.

use crate::common;

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// An answer: status, headers (names lower case) and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// A request, `Connection: close`, with a `Content-Length`.
pub fn raw(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// Sends `bytes` on a fresh connection and reads the answer until close.
pub async fn exchange(addr: SocketAddr, bytes: Vec<u8>) -> Answer {
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        // The server may answer (and close) before everything is written.
        let _ = s.write_all(&bytes);
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        let text = String::from_utf8_lossy(&got).to_string();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no answer: {text:?}"));
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status: {head:?}"));
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Answer {
            status,
            headers,
            body: body.to_string(),
        }
    })
    .await
    .expect("client thread")
}

pub async fn get(addr: SocketAddr, path: &str) -> Answer {
    exchange(addr, raw("GET", path, &[], b"")).await
}

pub async fn post(addr: SocketAddr, body: &str) -> Answer {
    let headers = [("Content-Type", "application/json")];
    let bytes = raw("POST", "/tracking/interactions", &headers, body.as_bytes());
    exchange(addr, bytes).await
}

/// GETs `path` until `ok` holds for the answer (20 s at most).
pub async fn get_until(addr: SocketAddr, path: &str, ok: impl Fn(&Answer) -> bool) -> Answer {
    common::eventually(path, Duration::from_secs(20), || async {
        let a = get(addr, path).await;
        ok(&a).then_some(a)
    })
    .await
}
