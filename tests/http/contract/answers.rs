//! The service's answers, every status reachable on demand, against the
//! spec.

use super::checker::Contract;
use super::client::{exchange, get, get_until, post, raw, Answer};
use super::concrete;
use crate::common;

use alpes_tracking::app::{self, open_store, ServiceConfig};
use alpes_tracking::http::ROUTES;
use common::faulty::FaultyStore;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;

fn canonical(id: Option<&str>, user: &str, kind: &str, occurred: &str) -> String {
    let mut v = json!({
        "user_id": user, "interaction_type": kind,
        "target": {"id": "post-9", "type": "post"},
        "campaign_id": "c-1", "affiliate_id": "a-7", "occurred_at": occurred,
    });
    if let Some(id) = id {
        v["interaction_id"] = json!(id);
    }
    v.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_services_answers_match_the_spec() {
    let contract = Contract::load();
    let c = &contract;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FaultyStore::new(open_store(dir.path()).unwrap()));
    let svc = app::start_with_store(ServiceConfig::local(dir.path()), Some(store.clone()))
        .await
        .expect("service starts");
    let addr = svc.addr;

    // Probes.
    c.conforms("health", &get(addr, "/tracking/health").await);
    c.conforms(
        "ready",
        &get_until(addr, "/tracking/ready", |a| a.status == 200).await,
    );

    // Ingest, every format, with and without an id.
    let today = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let day = &today[..10];
    let accepted = [
        canonical(Some("ct-1"), "u-1", "click", &today),
        canonical(Some("ct-2"), "u-1", "like", &today),
        canonical(None, "u-2", "view", &today),
        json!({"interaction_type": "click", "target_element_id": "post-42",
            "target_element_type": "post", "campaign_id": "camp-7", "timestamp": today})
        .to_string(),
        json!({"type": "create_interaction", "user_id": 123, "interaction": "like",
            "timestamp": today})
        .to_string(),
    ];
    for body in &accepted {
        c.request_is_valid("post_interaction", body);
        let a = post(addr, body).await;
        assert_eq!(a.status, 202, "{}", a.body);
        c.conforms("post_interaction", &a);
    }

    // Reads with data.
    let one = get_until(addr, "/tracking/interactions/ct-2", |a| a.status == 200).await;
    c.conforms("get_interaction", &one);
    let page = get(addr, "/tracking/interactions?limit=1").await;
    assert!(page.json()["next_cursor"].is_string(), "{}", page.body);
    c.conforms("list_interactions", &page);
    let cursor = page.json()["next_cursor"].as_str().unwrap().to_string();
    let next = get(
        addr,
        &format!("/tracking/interactions?limit=1&cursor={cursor}"),
    )
    .await;
    c.conforms("list_interactions", &next);
    let mine = get(addr, "/tracking/users/u-1/interactions?limit=1").await;
    assert_eq!(mine.json()["items"].as_array().map(Vec::len), Some(1));
    c.conforms("user_interactions", &mine);
    let stats = get_until(addr, "/tracking/users/u-1/stats", |a| {
        a.status == 200 && a.json()["total"] == 2
    })
    .await;
    c.conforms("user_stats", &stats);
    let has_items = |a: &Answer| a.json()["items"].as_array().is_some_and(|i| i.len() >= 2);
    let daily = format!("/tracking/stats/daily?from={day}&to={day}");
    c.conforms("stats_daily", &get_until(addr, &daily, has_items).await);
    let filtered = format!("{daily}&campaign_id=c-1&interaction_type=LIKE");
    c.conforms("stats_daily", &get(addr, &filtered).await);
    let status = |a: &Answer| a.json()["items"][0]["accepted"] == 5;
    c.conforms(
        "stats_status",
        &get_until(addr, "/tracking/stats/status", status).await,
    );
    let metrics = get(addr, "/metrics").await;
    assert!(metrics.body.contains("tracking_http_requests_total"));
    c.conforms("metrics", &metrics);

    // Every operation: an undecodable query (400), a head over the limit (431).
    let huge = "a".repeat(200_000);
    for route in ROUTES {
        let id = route.operation.name();
        let path = concrete(route.path, "ct-1");
        let a = exchange(addr, raw(route.method, &format!("{path}?%zz"), &[], b"")).await;
        assert_eq!(a.status, 400, "{id}: {}", a.body);
        c.conforms(id, &a);
        let a = exchange(addr, raw(route.method, &path, &[("X-Big", &huge)], b"")).await;
        assert_eq!(a.status, 431, "{id}: {}", a.body);
        c.conforms(id, &a);
    }

    // Reads: bad parameters (400), nothing there (404).
    for (id, path) in [
        ("list_interactions", "/tracking/interactions?limit=0"),
        ("list_interactions", "/tracking/interactions?cursor=x"),
        ("get_interaction", "/tracking/interactions/%FF"),
        (
            "user_interactions",
            "/tracking/users/u-1/interactions?limit=1001",
        ),
        ("user_stats", "/tracking/users//stats"),
        ("stats_daily", "/tracking/stats/daily?from=2026-13-01"),
        ("stats_daily", "/tracking/stats/daily?interaction_type=hug"),
        (
            "stats_status",
            "/tracking/stats/status?from=2020-01-01&to=2026-01-01",
        ),
    ] {
        let a = get(addr, path).await;
        assert_eq!(a.status, 400, "{path}: {}", a.body);
        c.conforms(id, &a);
    }
    c.conforms(
        "get_interaction",
        &get(addr, "/tracking/interactions/nope").await,
    );
    c.conforms(
        "user_stats",
        &get(addr, "/tracking/users/nobody/stats").await,
    );

    // Ingest refusals, one per code a client can cause.
    let long = "u".repeat(300);
    for (body, code) in [
        (canonical(None, "u-1", "share", &today), "invalid_interaction_type"),
        (canonical(None, "   ", "click", &today), "missing_user"),
        (canonical(None, &long, "click", &today), "field_too_long"),
        (
            canonical(None, "u-1", "click", "2099-01-01T00:00:00Z"),
            "occurred_in_future",
        ),
        (
            canonical(None, "u-1", "click", "1969-12-31T23:59:59Z"),
            "occurred_too_long_ago",
        ),
        (
            r#"{"interaction_type":"click","target_element_id":"","target_element_type":"post","campaign_id":"c"}"#.into(),
            "missing_target",
        ),
        (
            r#"{"interaction_type":"click","target_element_id":"p","target_element_type":"post"}"#.into(),
            "missing_campaign",
        ),
        ("{nope".into(), "malformed"),
        (r#"{"type":"delete_everything"}"#.into(), "unknown_command"),
    ] {
        let a = post(addr, &body).await;
        assert_eq!((a.status, a.json()["error"]["code"].as_str()), (400, Some(code)), "{}", a.body);
        c.conforms("post_interaction", &a);
    }
    let chunked = [
        ("Content-Type", "application/json"),
        ("Transfer-Encoding", "chunked"),
    ];
    let mut bad_chunk = raw("POST", "/tracking/interactions", &chunked, b"");
    // Without the Content-Length `raw` adds: chunked framing only.
    let text = String::from_utf8(bad_chunk)
        .unwrap()
        .replace("Content-Length: 0\r\n", "");
    bad_chunk = format!("{text}zz\r\nnope\r\n0\r\n\r\n").into_bytes();
    let a = exchange(addr, bad_chunk).await;
    assert_eq!(a.json()["error"]["code"], "bad_body", "{}", a.body);
    c.conforms("post_interaction", &a);
    // 409: the id of u-1's click, for another user, or with other content.
    for (body, code) in [
        (
            canonical(Some("ct-1"), "u-9", "click", &today),
            "conflicting_interaction_id",
        ),
        (
            canonical(Some("ct-1"), "u-1", "view", &today),
            "interaction_id_reused",
        ),
    ] {
        get_until(addr, "/tracking/interactions/ct-1", |a| a.status == 200).await;
        let a = post(addr, &body).await;
        assert_eq!(a.json()["error"]["code"], code, "{}", a.body);
        c.conforms("post_interaction", &a);
    }
    // 413, declared and sent; 415.
    let declared = raw(
        "POST",
        "/tracking/interactions",
        &[("Content-Type", "application/json")],
        b"{}",
    );
    let declared = String::from_utf8(declared)
        .unwrap()
        .replace("Content-Length: 2", "Content-Length: 10485760");
    c.conforms(
        "post_interaction",
        &exchange(addr, declared.into_bytes()).await,
    );
    c.conforms(
        "post_interaction",
        &post(addr, &" ".repeat(70 * 1024)).await,
    );
    let csv = raw(
        "POST",
        "/tracking/interactions",
        &[("Content-Type", "text/csv")],
        b"a,b",
    );
    c.conforms("post_interaction", &exchange(addr, csv).await);

    // Whatever the path: 405, 404, an unparsable request, HTTP/2.
    for route in ROUTES {
        let a = exchange(addr, raw("DELETE", &concrete(route.path, "x"), &[], b"")).await;
        c.conforms_to("MethodNotAllowed", 405, &a);
    }
    c.conforms_to("NotFound", 404, &get(addr, "/tracking/nothing").await);
    let garbage = exchange(addr, b"\x16\x03\x01 not http\r\n\r\n".to_vec()).await;
    c.conforms_to("BadRequest", 400, &garbage);
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    c.conforms_to(
        "HttpVersionNotSupported",
        505,
        &exchange(addr, preface).await,
    );

    // A store that needs a restart: liveness, readiness and ingest say so.
    store.broken.store(true, Ordering::SeqCst);
    for id in ["health", "ready"] {
        let a = get(addr, &format!("/tracking/{id}")).await;
        assert_eq!(a.status, 503, "{id}: {}", a.body);
        c.conforms(id, &a);
    }
    let a = post(addr, &canonical(None, "u-1", "click", &today)).await;
    assert_eq!(a.status, 503, "{}", a.body);
    c.conforms("post_interaction", &a);
    store.broken.store(false, Ordering::SeqCst);
    svc.stop().await.ok();

    // With a token and an internal listener.
    let dir = tempfile::tempdir().unwrap();
    let config = ServiceConfig {
        api_token: Some("s3cret".into()),
        internal_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..ServiceConfig::local(dir.path())
    };
    let svc = app::start(config).await.expect("service starts");
    let (addr, internal) = (svc.addr, svc.internal_addr.expect("internal listener"));
    for route in ROUTES.iter().filter(|r| r.operation.guarded()) {
        let a = get(addr, &concrete(route.path, "x")).await;
        assert_eq!(a.status, 401, "{}", a.body);
        c.conforms(route.operation.name(), &a);
    }
    let authorized = raw(
        "GET",
        "/tracking/stats/status",
        &[("Authorization", "Bearer s3cret")],
        b"",
    );
    c.conforms("stats_status", &exchange(addr, authorized).await);
    c.conforms("metrics", &get(addr, "/metrics").await);
    c.conforms("metrics", &get(internal, "/metrics").await);
    c.conforms("health", &get(internal, "/tracking/health").await);
    c.conforms(
        "ready",
        &get_until(internal, "/tracking/ready", |a| a.status == 200).await,
    );
    for path in ["/tracking/stats/daily", "/tracking/nothing"] {
        c.conforms_to("NotFound", 404, &get(internal, path).await);
    }
    svc.stop().await.ok();

    contract.assert_coverage();
}
