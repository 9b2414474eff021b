//! The HTTP API end to end, in-process on port 0, on the embedded default.

mod common;

use alpes_tracking::app::{self, Running, ServiceConfig};
use common::{command, request, wait_for, Resp};
use std::net::SocketAddr;
use std::time::Duration;

fn config(dir: &std::path::Path) -> ServiceConfig {
    common::service_config(dir)
}

async fn start(dir: &std::path::Path) -> Running {
    app::start(config(dir)).await.expect("service starts")
}

async fn call(
    addr: SocketAddr,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
) -> Resp {
    tokio::task::spawn_blocking(move || {
        request(addr, method, &path, &headers, &body).expect("request")
    })
    .await
    .expect("client thread")
}

async fn get(addr: SocketAddr, path: &str) -> Resp {
    call(addr, "GET", path.to_string(), vec![], vec![]).await
}

async fn post(addr: SocketAddr, body: &str) -> Resp {
    call(
        addr,
        "POST",
        "/tracking/interactions".into(),
        vec![("Content-Type", "application/json")],
        body.as_bytes().to_vec(),
    )
    .await
}

async fn eventually(
    addr: SocketAddr,
    path: &str,
    ok: impl Fn(&Resp) -> bool + Send + 'static,
) -> Resp {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        wait_for(&path.clone(), Duration::from_secs(20), || {
            let r = request(addr, "GET", &path, &[], b"").ok()?;
            ok(&r).then_some(r)
        })
    })
    .await
    .expect("poller")
}

fn assert_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    let v = r.json();
    assert_eq!(v["error"]["code"], code, "{}", r.body);
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ingest_query_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path()).await;
    let addr = svc.addr;

    let health = get(addr, "/tracking/health").await;
    assert_eq!(
        (health.status, health.json()["status"].as_str()),
        (200, Some("ok"))
    );
    eventually(addr, "/tracking/ready", |r| r.status == 200).await;

    // Canonical command with and without an id.
    let r = post(
        addr,
        &command(Some("id-1"), "u-1", "click", "c-1", "2026-11-29T10:00:00Z"),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.json()["interaction_id"], "id-1");
    let r = post(
        addr,
        &command(None, "u-1", "like", "c-1", "2026-11-29T11:00:00Z"),
    )
    .await;
    assert_eq!(r.status, 202);
    let generated = r.json()["interaction_id"].as_str().unwrap().to_string();
    // The original TrackInteraction body (no user: the interaction id is the key).
    let original = r#"{"interaction_type":"view","target_element_id":"post-42","target_element_type":"post","campaign_id":"camp-7","timestamp":"2026-11-29T12:00:00Z"}"#;
    let r = post(addr, original).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let original_id = r.json()["interaction_id"].as_str().unwrap().to_string();
    // The original hand-test command.
    let r = post(addr, r#"{"type":"create_interaction","user_id":123,"interaction":"like","timestamp":"2026-11-29T12:30:00Z"}"#).await;
    assert_eq!(r.status, 202, "{}", r.body);
    // A duplicate (same id) is accepted and becomes no second event.
    let r = post(
        addr,
        &command(Some("id-1"), "u-1", "click", "c-1", "2026-11-29T10:00:00Z"),
    )
    .await;
    assert_eq!(r.status, 202);

    let one = eventually(addr, "/tracking/interactions/id-1", |r| r.status == 200)
        .await
        .json();
    assert_eq!(one["user_id"], "u-1");
    assert_eq!(one["seq"], 1);
    assert_eq!(one["target"]["type"], "post");
    for field in [
        "interaction_id",
        "user_id",
        "seq",
        "interaction_type",
        "target",
        "campaign_id",
        "affiliate_id",
        "occurred_at",
        "recorded_at",
    ] {
        assert!(one.get(field).is_some(), "missing {field}");
    }
    eventually(addr, &format!("/tracking/interactions/{generated}"), |r| {
        r.status == 200
    })
    .await;
    let orig = eventually(
        addr,
        &format!("/tracking/interactions/{original_id}"),
        |r| r.status == 200,
    )
    .await
    .json();
    assert_eq!(orig["user_id"], original_id.as_str());
    assert_eq!(orig["target"]["id"], "post-42");
    eventually(addr, "/tracking/users/123/interactions", |r| {
        r.status == 200 && r.json()["items"].as_array().is_some_and(|a| a.len() == 1)
    })
    .await;

    // User listing in sequence order, paged.
    let page = get(addr, "/tracking/users/u-1/interactions?limit=1")
        .await
        .json();
    assert_eq!(page["items"][0]["seq"], 1);
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a next cursor")
        .to_string();
    let page2 = get(
        addr,
        &format!("/tracking/users/u-1/interactions?limit=1&cursor={cursor}"),
    )
    .await
    .json();
    assert_eq!(page2["items"][0]["seq"], 2);
    assert!(page2["next_cursor"].is_null());
    let recent = get(addr, "/tracking/interactions?limit=10").await.json();
    assert_eq!(recent["items"].as_array().unwrap().len(), 4);

    // Stats (projected asynchronously).
    let stats = eventually(
        addr,
        "/tracking/stats/daily?from=2026-11-29&to=2026-11-29&campaign_id=c-1",
        |r| r.status == 200 && r.json()["items"].as_array().is_some_and(|a| a.len() == 2),
    )
    .await
    .json();
    for item in stats["items"].as_array().unwrap() {
        assert_eq!(item["count"], 1);
        assert_eq!(item["unique_users"], 1);
        assert_eq!(item["day"], "2026-11-29");
    }
    let clicks = get(
        addr,
        "/tracking/stats/daily?from=2026-11-29&to=2026-11-29&interaction_type=click",
    )
    .await
    .json();
    assert_eq!(clicks["items"].as_array().unwrap().len(), 1);
    let status = eventually(addr, "/tracking/stats/status", |r| {
        r.json()["items"].as_array().is_some_and(|a| {
            a.iter()
                .map(|i| i["accepted"].as_u64().unwrap_or(0))
                .sum::<u64>()
                == 4
        })
    })
    .await;
    assert_eq!(status.status, 200);
    let stats = eventually(addr, "/tracking/users/u-1/stats", |r| {
        r.status == 200 && r.json()["total"] == 2
    })
    .await
    .json();
    assert_eq!(
        (stats["clicks"].as_u64(), stats["likes"].as_u64()),
        (Some(1), Some(1))
    );

    // Errors: rules, formats, sizes, content types, paths, methods, queries.
    assert_error(
        &post(
            addr,
            &command(None, "u-1", "share", "c-1", "2026-11-29T10:00:00Z"),
        )
        .await,
        400,
        "invalid_interaction_type",
    );
    assert_error(&post(addr, r#"{"interaction_type":"click","target_element_id":"","target_element_type":"post","campaign_id":"c"}"#).await, 400, "missing_target");
    assert_error(
        &post(
            addr,
            r#"{"interaction_type":"click","target_element_id":"p","target_element_type":"post"}"#,
        )
        .await,
        400,
        "missing_campaign",
    );
    assert_error(&post(addr, "{nope").await, 400, "malformed");
    assert_error(
        &post(addr, &" ".repeat(64 * 1024 + 1)).await,
        413,
        "payload_too_large",
    );
    let r = call(
        addr,
        "POST",
        "/tracking/interactions".into(),
        vec![("Content-Type", "text/csv")],
        b"a,b".to_vec(),
    )
    .await;
    assert_error(&r, 415, "unsupported_media_type");
    assert_error(
        &get(addr, "/tracking/interactions/nope").await,
        404,
        "not_found",
    );
    assert_error(&get(addr, "/tracking/nothing").await, 404, "not_found");
    assert_error(
        &call(
            addr,
            "DELETE",
            "/tracking/interactions/id-1".into(),
            vec![],
            vec![],
        )
        .await,
        405,
        "method_not_allowed",
    );
    assert_error(
        &get(addr, "/tracking/stats/daily?from=yesterday").await,
        400,
        "bad_request",
    );
    assert_error(
        &get(addr, "/tracking/stats/daily?from=2026-12-01&to=2026-11-01").await,
        400,
        "bad_request",
    );
    assert_error(
        &get(addr, "/tracking/stats/daily?interaction_type=share").await,
        400,
        "bad_request",
    );
    assert_error(
        &get(addr, "/tracking/stats/daily?from=2020-01-01&to=2026-01-01").await,
        400,
        "bad_request",
    );
    assert_error(
        &get(addr, "/tracking/users/u-1/interactions?limit=0").await,
        400,
        "bad_request",
    );
    assert_error(
        &get(addr, "/tracking/users/u-1/interactions?cursor=abc").await,
        400,
        "bad_request",
    );
    assert_error(
        &get(addr, "/tracking/interactions/%zz").await,
        400,
        "bad_request",
    );
    // Rejected commands were not appended: still four events.
    let recent = get(addr, "/tracking/interactions?limit=100").await.json();
    assert_eq!(recent["items"].as_array().unwrap().len(), 4);

    // Metrics in the Prometheus text format, with the names dashboards use.
    let m = get(addr, "/metrics").await;
    assert_eq!(m.status, 200);
    for name in [
        "tracking_events_persisted_total",
        "tracking_commands_received_total",
        "tracking_end_to_end_latency_seconds_bucket",
        "tracking_live_aggregates",
        "tracking_http_requests_total",
        "tracking_store_write_buffer_bytes",
        "tracking_store_block_cache_bytes",
        "tracking_process_resident_memory_bytes",
    ] {
        assert!(m.body.contains(name), "metrics lack {name}");
    }
    assert!(!m.body.contains("u-1"), "a user id leaked into the metrics");

    svc.stop().await.expect("graceful stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_keeps_sequence_numbers_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path()).await;
    for i in 0..20 {
        let r = post(
            svc.addr,
            &command(
                Some(&format!("r-{i}")),
                "same-user",
                "view",
                "c-9",
                "2026-11-28T08:00:00Z",
            ),
        )
        .await;
        assert_eq!(r.status, 202);
    }
    eventually(svc.addr, "/tracking/users/same-user/stats", |r| {
        r.status == 200 && r.json()["total"] == 20
    })
    .await;
    svc.stop().await.expect("graceful stop");

    let svc = start(dir.path()).await;
    let r = post(
        svc.addr,
        &command(
            Some("r-20"),
            "same-user",
            "view",
            "c-9",
            "2026-11-28T08:00:00Z",
        ),
    )
    .await;
    assert_eq!(r.status, 202);
    let e = eventually(svc.addr, "/tracking/interactions/r-20", |r| r.status == 200)
        .await
        .json();
    assert_eq!(e["seq"], 21, "the sequence continues after a restart");
    eventually(
        svc.addr,
        "/tracking/stats/daily?from=2026-11-28&to=2026-11-28",
        |r| r.json()["items"][0]["count"] == 21,
    )
    .await;
    svc.stop().await.expect("graceful stop");
}

#[tokio::test]
async fn api_token_guards_reads_and_the_internal_listener_serves_operations() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
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
    eventually(internal, "/tracking/ready", |r| r.status == 200).await;
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
