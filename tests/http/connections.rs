//! The HTTP connections end to end: the API token and the internal
//! listener, and keep-alive connections on the front and ingest runtimes.

use crate::common;

use alpes_tracking::app;
use common::http::{assert_error, call, get, get_until, post, start};
use common::{command, wait_for};
use std::net::SocketAddr;
use std::time::Duration;

#[tokio::test]
async fn api_token_guards_reads_and_the_internal_listener_serves_operations() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::service_config(dir.path());
    cfg.api_token = Some("s3cret-token".into());
    cfg.internal_listen = Some("127.0.0.1:0".parse().unwrap());
    let svc = app::start(cfg).await.expect("service starts");
    let (addr, internal) = (svc.addr, svc.internal_addr.expect("internal listener"));
    let with = |token: &'static str| vec![("Authorization", token)];
    let get_as = |a, path: &str, h| call(a, "GET", path.to_string(), h, vec![]);

    // Reads need the token; a wrong or malformed one is refused the same way.
    for (headers, status) in [
        (vec![], 401),
        (with("Bearer wrong-token!"), 401),
        (with("Bearer s3cret-tokeN"), 401),
        (with("s3cret-token"), 401),
        (with("Basic czNjcmV0LXRva2Vu"), 401),
        (with("Bearer s3cret-token"), 200),
    ] {
        for path in [
            "/tracking/stats/daily",
            "/tracking/interactions",
            "/tracking/stats/status",
        ] {
            let r = get_as(addr, path, headers.clone()).await;
            assert_eq!(r.status, status, "{path} {headers:?}: {}", r.body);
            if status == 401 {
                assert_error(&r, 401, "unauthorized");
                assert!(!r.body.contains("s3cret"), "the token leaked: {}", r.body);
            }
        }
    }
    let r = get_as(addr, "/tracking/users/u-1/stats", vec![]).await;
    assert_error(&r, 401, "unauthorized");
    // Ingest, health and readiness stay open on the public listener.
    assert_eq!(get(addr, "/tracking/health").await.status, 200);
    assert_eq!(
        post(
            addr,
            &command(None, "u-1", "click", "c-1", "2026-11-29T10:00:00Z")
        )
        .await
        .status,
        202
    );
    // Metrics moved to the internal listener, which serves nothing else.
    assert_error(&get(addr, "/metrics").await, 404, "not_found");
    let m = get(internal, "/metrics").await;
    assert_eq!(m.status, 200);
    assert!(m.body.contains("tracking_http_requests_total"));
    assert_eq!(get(internal, "/tracking/health").await.status, 200);
    get_until(internal, "/tracking/ready", |r| r.status == 200).await;
    assert_error(
        &get(internal, "/tracking/stats/daily").await,
        404,
        "not_found",
    );
    let r = call(
        internal,
        "POST",
        "/tracking/interactions".into(),
        vec![],
        vec![],
    )
    .await;
    assert_error(&r, 404, "not_found");
    svc.stop().await.expect("clean stop");
}

/// Sends `requests` pipelined on one connection (the last one closes it)
/// and returns the status codes of the responses, in order.
fn pipelined(addr: SocketAddr, requests: &[(&str, &str, String)]) -> Vec<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut bytes = Vec::new();
    for (i, (method, path, body)) in requests.iter().enumerate() {
        let close = if i + 1 == requests.len() {
            "close"
        } else {
            "keep-alive"
        };
        bytes.extend_from_slice(
            format!(
                "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: {close}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
    s.write_all(&bytes).expect("send");
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    raw.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| raw.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

/// Connections are served on the front thread or handed to the ingest
/// runtime by their first byte; either way every request on a keep-alive
/// connection is answered, whatever its method, and the posts persist.
#[tokio::test(flavor = "multi_thread")]
async fn keep_alive_connections_are_served_whichever_method_comes_first() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path()).await;
    let addr = svc.addr;
    let post = |id: &str| {
        let body = command(Some(id), "u-keep", "click", "c-1", "2026-11-30T10:00:00Z");
        ("POST", "/tracking/interactions", body)
    };
    let get_on = |path: &'static str| ("GET", path, String::new());
    let statuses = tokio::task::spawn_blocking(move || {
        (
            pipelined(
                addr,
                &[
                    get_on("/tracking/health"),
                    post("k-1"),
                    get_on("/tracking/interactions?limit=1"),
                ],
            ),
            pipelined(
                addr,
                &[post("k-2"), get_on("/tracking/health"), post("k-3")],
            ),
        )
    })
    .await
    .unwrap();
    assert_eq!(statuses, (vec![200, 202, 200], vec![202, 200, 202]));
    let events = tokio::task::spawn_blocking(move || {
        wait_for("three events of u-keep", Duration::from_secs(20), || {
            let e = common::user_events(addr, "u-keep");
            (e.len() == 3).then_some(e)
        })
    })
    .await
    .unwrap();
    let mut ids: Vec<_> = events.into_iter().map(|(id, _)| id).collect();
    ids.sort();
    assert_eq!(ids, ["k-1", "k-2", "k-3"]);

    // The two HTTP runtimes are there, by thread name.
    let names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .map(|n| n.trim().to_string())
                .collect()
        })
        .unwrap_or_default();
    if !names.is_empty() {
        assert!(names.iter().any(|n| n == "http-front"), "{names:?}");
        assert!(
            names.iter().any(|n| n.starts_with("http-ingest")),
            "{names:?}"
        );
    }
    // And the operators' view of the same: connections by runtime.
    let metrics = get(addr, "/metrics").await.body;
    for runtime in ["front", "ingest"] {
        let line = format!("tracking_http_connections_total{{runtime=\"{runtime}\"}}");
        assert!(metrics.contains(&line), "no {line} in /metrics");
    }
    svc.stop().await.expect("clean stop");
}
