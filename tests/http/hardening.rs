//! Bad requests, table-driven, on raw sockets against the real HTTP stack:
//! each gets a 4xx with the error JSON (the HTTP parser's own refusals,
//! 400 and 431, included), never a 500, never
//! a hang (an HTTP/2 preface gets 505 HTTP Version Not Supported, with the
//! error JSON); a client that stops sending its head is disconnected.

use crate::common;

use alpes_tracking::app::{self, ServiceConfig};
use alpes_tracking::http::HEADER_TIMEOUT;
use common::raw_exchange;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn config(dir: &std::path::Path) -> ServiceConfig {
    common::service_config(dir)
}

fn req(method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

fn json_post(body: &[u8]) -> Vec<u8> {
    let headers = [
        ("Content-Type", "application/json".to_string()),
        ("Content-Length", body.len().to_string()),
    ];
    req("POST", "/tracking/interactions", &headers, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_a_4xx_never_a_5xx_or_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let svc = app::start(config(dir.path()))
        .await
        .expect("service starts");
    let addr = svc.addr;
    let huge_header = [("X-Big", "a".repeat(200_000))];
    let big_len = [
        ("Content-Type", "application/json".to_string()),
        ("Content-Length", (10 * 1024 * 1024).to_string()),
    ];
    // (what, raw request, expected status, whether our error JSON is expected)
    let cases: Vec<(&str, Vec<u8>, u16, bool)> = vec![
        ("unknown path", req("GET", "/nope", &[], b""), 404, true),
        (
            "percent-encoded invalid UTF-8 in the path",
            req("GET", "/tracking/interactions/%FF%FE", &[], b""),
            400,
            true,
        ),
        (
            "user segment with invalid UTF-8",
            req("GET", "/tracking/users/%C3%28/stats", &[], b""),
            400,
            true,
        ),
        (
            "method not allowed",
            req("DELETE", "/tracking/interactions", &[], b""),
            405,
            true,
        ),
        (
            "limit not a number",
            req("GET", "/tracking/interactions?limit=abc", &[], b""),
            400,
            true,
        ),
        (
            "negative limit",
            req("GET", "/tracking/interactions?limit=-1", &[], b""),
            400,
            true,
        ),
        (
            "limit over the maximum",
            req("GET", "/tracking/interactions?limit=100000", &[], b""),
            400,
            true,
        ),
        (
            "bad cursor",
            req("GET", "/tracking/interactions?cursor=xyz", &[], b""),
            400,
            true,
        ),
        (
            "impossible day",
            req("GET", "/tracking/stats/daily?from=2026-13-45", &[], b""),
            400,
            true,
        ),
        (
            "reversed day range",
            req(
                "GET",
                "/tracking/stats/daily?from=2026-11-29&to=2026-01-01",
                &[],
                b"",
            ),
            400,
            true,
        ),
        (
            "range over a year",
            req(
                "GET",
                "/tracking/stats/daily?from=2020-01-01&to=2026-01-01",
                &[],
                b"",
            ),
            400,
            true,
        ),
        (
            "a day at the calendar's start (to - 29 days would overflow)",
            req("GET", "/tracking/stats/daily?to=-262143-01-10", &[], b""),
            400,
            true,
        ),
        (
            "a day at the calendar's end, status stats",
            req(
                "GET",
                "/tracking/stats/status?from=262142-12-01&to=262142-12-31",
                &[],
                b"",
            ),
            400,
            true,
        ),
        (
            "a day at the calendar's start, status stats",
            req("GET", "/tracking/stats/status?to=-262143-01-01", &[], b""),
            400,
            true,
        ),
        (
            "occurred_at before 1970",
            json_post(
                br#"{"user_id":"u","interaction_type":"click","target":{"id":"p","type":"post"},"campaign_id":"c","occurred_at":"1969-12-31T23:59:59Z"}"#,
            ),
            400,
            true,
        ),
        (
            "occurred_at at the calendar's start",
            json_post(
                br#"{"user_id":"u","interaction_type":"click","target":{"id":"p","type":"post"},"campaign_id":"c","occurred_at":"-262143-01-10T00:00:00Z"}"#,
            ),
            400,
            true,
        ),
        (
            "whitespace-only user_id",
            json_post(
                br#"{"user_id":"   ","interaction_type":"click","target":{"id":"p","type":"post"},"campaign_id":"c"}"#,
            ),
            400,
            true,
        ),
        (
            "bad percent-encoding in the query",
            req("GET", "/tracking/stats/daily?from=%zz", &[], b""),
            400,
            true,
        ),
        (
            "unknown interaction type filter",
            req(
                "GET",
                "/tracking/stats/daily?interaction_type=hug",
                &[],
                b"",
            ),
            400,
            true,
        ),
        (
            "invalid UTF-8 body",
            json_post(&[b'{', 0xff, 0xfe, b'}']),
            400,
            true,
        ),
        (
            "truncated JSON",
            json_post(b"{\"interaction_type\":"),
            400,
            true,
        ),
        (
            "JSON array instead of an object",
            json_post(b"[1,2,3]"),
            400,
            true,
        ),
        (
            "deeply nested JSON",
            json_post(&[b"[".repeat(10_000), b"]".repeat(10_000)].concat()),
            400,
            true,
        ),
        (
            "body over the limit (declared)",
            req("POST", "/tracking/interactions", &big_len, b"{}"),
            413,
            true,
        ),
        (
            "body over the limit (sent)",
            json_post(&vec![b' '; 70 * 1024]),
            413,
            true,
        ),
        (
            "wrong content type",
            req(
                "POST",
                "/tracking/interactions",
                &[
                    ("Content-Type", "text/plain".into()),
                    ("Content-Length", "2".into()),
                ],
                b"{}",
            ),
            415,
            true,
        ),
        (
            "huge header",
            req("GET", "/tracking/health", &huge_header, b""),
            431,
            true,
        ),
        (
            "garbage request line",
            b"\x16\x03\x01\x02\x00 not http\r\n\r\n".to_vec(),
            400,
            true,
        ),
        (
            "a header line without a colon",
            b"GET /tracking/health HTTP/1.1\r\nHost: t\r\nnot a header\r\n\r\n".to_vec(),
            400,
            true,
        ),
        (
            "an HTTP/2 connection preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            505,
            true,
        ),
        (
            "bad chunked body",
            req(
                "POST",
                "/tracking/interactions",
                &[
                    ("Content-Type", "application/json".into()),
                    ("Transfer-Encoding", "chunked".into()),
                ],
                b"zz\r\nnope\r\n0\r\n\r\n",
            ),
            400,
            true,
        ),
    ];
    let mut failures = Vec::new();
    for (what, bytes, status, json) in cases {
        let started = Instant::now();
        let resp = tokio::task::spawn_blocking(move || {
            raw_exchange(addr, &bytes, Duration::from_secs(15))
        })
        .await
        .unwrap();
        let took = started.elapsed();
        match resp {
            None if !json && status >= 400 => {} // the parser may just close the connection
            None => failures.push(format!("{what}: no response")),
            Some(r) => {
                if r.status != status {
                    failures.push(format!(
                        "{what}: status {} (expected {status}): {}",
                        r.status, r.body
                    ));
                }
                if json {
                    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
                    if !v["error"]["code"].is_string() {
                        failures.push(format!("{what}: no error JSON: {:?}", r.body));
                    }
                }
            }
        }
        if took > Duration::from_secs(5) {
            failures.push(format!("{what}: took {took:?}"));
        }
    }
    // Nothing above broke the service.
    let ok = raw_exchange(
        addr,
        &req("GET", "/tracking/health", &[], b""),
        Duration::from_secs(5),
    );
    assert_eq!(ok.map(|r| r.status), Some(200));
    assert!(failures.is_empty(), "{failures:#?}");
    svc.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stalls_in_its_head_is_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let svc = app::start(config(dir.path()))
        .await
        .expect("service starts");
    let addr = svc.addr;
    let closed_after = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /tracking/health HTTP/1.1\r\nHost: t\r\nX-Slow: ")
            .unwrap();
        s.set_read_timeout(Some(HEADER_TIMEOUT + Duration::from_secs(10)))
            .unwrap();
        let started = Instant::now();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf); // returns when the server closes
        (started.elapsed(), buf)
    })
    .await
    .unwrap();
    let (took, buf) = closed_after;
    assert!(
        took < HEADER_TIMEOUT + Duration::from_secs(5),
        "still open after {took:?}"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(!text.contains(" 200 "), "{text}");
    svc.stop().await.expect("clean stop");
}
