//! The HTTP API end to end, in-process on port 0, on the embedded default.

use crate::common;

use common::command;
use common::http::{assert_error, call, get, get_until, post, start};

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
    get_until(addr, "/tracking/ready", |r| r.status == 200).await;

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

    let one = get_until(addr, "/tracking/interactions/id-1", |r| r.status == 200)
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
    get_until(addr, &format!("/tracking/interactions/{generated}"), |r| {
        r.status == 200
    })
    .await;
    let orig = get_until(
        addr,
        &format!("/tracking/interactions/{original_id}"),
        |r| r.status == 200,
    )
    .await
    .json();
    assert_eq!(orig["user_id"], original_id.as_str());
    assert_eq!(orig["target"]["id"], "post-42");
    get_until(addr, "/tracking/users/123/interactions", |r| {
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
    let stats = get_until(
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
    let status = get_until(addr, "/tracking/stats/status", |r| {
        r.json()["items"].as_array().is_some_and(|a| {
            a.iter()
                .map(|i| i["accepted"].as_u64().unwrap_or(0))
                .sum::<u64>()
                == 4
        })
    })
    .await;
    assert_eq!(status.status, 200);
    let stats = get_until(addr, "/tracking/users/u-1/stats", |r| {
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
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "tracking_build_info{",
        // At 0 before any failure (the 5xx-ratio alerts' rate() sees the
        // first one); no test of this binary fails a read.
        "tracking_http_requests_total{route=\"user_stats\",status=\"5xx\"}",
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
    get_until(svc.addr, "/tracking/users/same-user/stats", |r| {
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
    let e = get_until(svc.addr, "/tracking/interactions/r-20", |r| r.status == 200)
        .await
        .json();
    assert_eq!(e["seq"], 21, "the sequence continues after a restart");
    get_until(
        svc.addr,
        "/tracking/stats/daily?from=2026-11-28&to=2026-11-28",
        |r| r.json()["items"][0]["count"] == 21,
    )
    .await;
    svc.stop().await.expect("graceful stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_fields_never_reach_the_command_log() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path()).await;
    let addr = svc.addr;
    // Ten commands carrying a 60 KB field no format reads.
    let junk = "j".repeat(60_000);
    for i in 0..10 {
        let body = format!(
            r#"{{"interaction_id":"junk-{i}","user_id":"u-j","interaction_type":"click","target":{{"id":"p","type":"post"}},"campaign_id":"c-j","occurred_at":"2026-11-29T10:00:00Z","notes":"{junk}"}}"#
        );
        let r = post(addr, &body).await;
        assert_eq!(r.status, 202, "{}", r.body);
    }
    // The log holds the commands, not the junk (600 KB were sent). Its
    // segments' data, without the zeros kept ahead of it.
    fn bytes_under(p: &std::path::Path) -> u64 {
        std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| match e.file_type().unwrap().is_dir() {
                true => bytes_under(&e.path()),
                false => {
                    let data = std::fs::read(e.path()).unwrap();
                    data.iter()
                        .rposition(|&b| b != 0)
                        .map_or(0, |i| i as u64 + 1)
                }
            })
            .sum()
    }
    let logged = bytes_under(&dir.path().join("log"));
    assert!(logged < 20_000, "the command log holds {logged} bytes");
    get_until(addr, "/tracking/interactions/junk-9", |r| r.status == 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_decided_id_reused_by_another_user_or_with_other_content_gets_409() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path()).await;
    let addr = svc.addr;
    let first = command(
        Some("owned-1"),
        "u-a",
        "click",
        "c-1",
        "2026-11-29T10:00:00Z",
    );
    assert_eq!(post(addr, &first).await.status, 202);
    get_until(addr, "/tracking/interactions/owned-1", |r| r.status == 200).await;

    // Given the id is decided for u-a, when u-b sends it, then 409 (not a
    // 202 followed by a rejection in the pipeline).
    let other_user = command(
        Some("owned-1"),
        "u-b",
        "click",
        "c-1",
        "2026-11-29T10:00:00Z",
    );
    assert_error(
        &post(addr, &other_user).await,
        409,
        "conflicting_interaction_id",
    );
    // When u-a sends it with other content, then 409 naming the fields
    // (not a 202 whose content is silently dropped).
    let changed = command(
        Some("owned-1"),
        "u-a",
        "like",
        "c-2",
        "2026-11-29T10:00:00Z",
    );
    let r = post(addr, &changed).await;
    assert_error(&r, 409, "interaction_id_reused");
    let message = r.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        message.contains("interaction_type") && message.contains("campaign_id"),
        "{message}"
    );
    // When u-a retries the same content, then 202: a retry is harmless.
    assert_eq!(post(addr, &first).await.status, 202);
    // A command without a time of its own is stamped on arrival: its retry
    // is still a retry.
    let untimed = r#"{"interaction_id":"untimed-1","user_id":"u-a","interaction_type":"view","target":{"id":"post-9","type":"post"},"campaign_id":"c-1"}"#;
    assert_eq!(post(addr, untimed).await.status, 202);
    get_until(addr, "/tracking/interactions/untimed-1", |r| {
        r.status == 200
    })
    .await;
    assert_eq!(post(addr, untimed).await.status, 202);

    // Then u-a holds exactly its two events and u-b none.
    let retried = command(Some("after"), "u-a", "click", "c-1", "2026-11-29T11:00:00Z");
    assert_eq!(post(addr, &retried).await.status, 202);
    let events = get_until(addr, "/tracking/users/u-a/interactions", |r| {
        r.json()["items"].as_array().is_some_and(|a| a.len() == 3)
    })
    .await;
    let seqs: Vec<u64> = events.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.len(), 3, "{seqs:?}");
    let b = get(addr, "/tracking/users/u-b/interactions").await;
    assert!(
        b.status == 404 || b.json()["items"].as_array().is_some_and(Vec::is_empty),
        "{}",
        b.body
    );
    let held = get(addr, "/tracking/interactions/owned-1").await.json();
    assert_eq!(
        (held["user_id"].as_str(), held["interaction_type"].as_str()),
        (Some("u-a"), Some("click"))
    );
    svc.stop().await.expect("graceful stop");
}
