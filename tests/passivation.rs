//! Memory stays bounded however many distinct users pass through: with
//! 100,000 users and a cap of 1,000 live aggregates, the number alive never
//! exceeds the cap, and every command still becomes exactly one event.

mod common;

use alpes_tracking::actors::PipelineConfig;
use alpes_tracking::app::{self, ServiceConfig};
use alpes_tracking::log::NewRecord;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const USERS: usize = 100_000;
const CAP: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_aggregates_stay_under_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServiceConfig {
        shutdown_grace: Duration::from_secs(30),
        pipeline: PipelineConfig {
            max_live_aggregates: CAP,
            ..PipelineConfig::default()
        },
        ..ServiceConfig::local(dir.path())
    };
    let svc = app::start(config).await.unwrap();

    // Feed the log directly (in-process), in chunks.
    for chunk in (0..USERS).collect::<Vec<_>>().chunks(5_000) {
        let records = chunk
            .iter()
            .map(|i| NewRecord {
                key: format!("p-{i}"),
                payload: common::command(
                    Some(&format!("pv-{i}")),
                    &format!("p-{i}"),
                    "view",
                    "c-p",
                    "2026-11-29T10:00:00Z",
                )
                .into_bytes(),
                properties: HashMap::new(),
            })
            .collect();
        svc.log.append(records).await.unwrap();
    }

    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let stats = svc
            .store
            .daily_stats(&alpes_tracking::store::StatsQuery {
                from: chrono::NaiveDate::from_ymd_opt(2026, 11, 29).unwrap(),
                to: chrono::NaiveDate::from_ymd_opt(2026, 11, 29).unwrap(),
                campaign_id: Some("c-p".into()),
                interaction_type: None,
            })
            .await
            .unwrap();
        if stats.first().is_some_and(|s| s.count == USERS as u64) {
            assert_eq!(stats[0].unique_users, USERS as u64);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not all persisted in time: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (live, peak) = svc.health.aggregates();
    assert!(
        peak <= CAP,
        "peak of {peak} live aggregates exceeds the cap of {CAP}"
    );
    assert!(
        peak >= CAP / 2,
        "the cap was hardly reached ({peak}): the test proves nothing"
    );
    assert!(live <= CAP);
    svc.stop().await.unwrap();
}
