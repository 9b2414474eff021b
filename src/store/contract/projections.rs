//! Contract: projections (apply, checkpoints, stats, reset).

use super::*;

pub async fn apply_is_idempotent_and_matches_recount(store: &dyn EventStore) {
    let _shared = PROJECTIONS.read().await;
    let fx = Fx::new();
    let h0 = head0(store).await;
    let users = write_mix(store, &fx).await;
    catch_up_all(store, &fx).await;

    let own = own_records(store, &fx, h0).await;
    let expected = recount(&own, &users);
    assert_eq!(snapshot(store, &fx, &users).await, expected);
    if !checkpointed(store) {
        // Replays of an inline store's writes: see its own repair tests.
        return;
    }

    // Applying the same records again changes nothing.
    let last = own.last().unwrap().pos();
    for p in ProjectionKind::ALL {
        let cp = store.checkpoint(p).await.unwrap();
        assert!(cp >= last);
        assert_eq!(store.apply(p, &own).await.unwrap(), cp);
        assert_eq!(store.apply(p, &[]).await.unwrap(), cp);
    }
    assert_eq!(snapshot(store, &fx, &users).await, expected);

    // Records straddling the checkpoint: only those above it count.
    let a = &users[0];
    let batch = fx.batch(
        vec![fx.group(a, 3, vec![fx.ev(a, 4, View)])],
        vec![fx.rejection("r3", fx.at(0, 12))],
    );
    let pos = write(store, batch).await.rejections[0].unwrap();
    for p in ProjectionKind::ALL {
        let records = store.scan(h0, usize::MAX).await.unwrap();
        assert!(store.apply(p, &records).await.unwrap() >= pos);
    }
    let own = own_records(store, &fx, h0).await;
    assert_eq!(snapshot(store, &fx, &users).await, recount(&own, &users));
}

pub(crate) fn recount(records: &[JournalRecord], users: &[String]) -> Snapshot {
    let mut recount = Recount::default();
    records.iter().for_each(|r| recount.add(r));
    let stats = users.iter().map(|u| recount.users().get(u).cloned());
    (recount.daily(), recount.status(), stats.collect())
}

pub async fn daily_stats_filters_and_unique_users(store: &dyn EventStore) {
    let _shared = PROJECTIONS.read().await;
    let fx = Fx::new();
    let (a, b) = (fx.name("a"), fx.name("b"));
    let (c1, c2) = (fx.name("c1"), fx.name("c2"));
    let mut ea = [
        fx.ev(&a, 1, Click),
        fx.ev(&a, 2, Click),
        fx.ev(&a, 3, View),
        fx.ev(&a, 4, Click),
    ];
    ea[2].campaign_id = Some(c2.clone());
    ea[3].occurred_at = fx.at(1, 10);
    let mut eb = vec![fx.ev(&b, 1, Click), fx.ev(&b, 2, Like)];
    eb[1].campaign_id = None;
    // Interleaved batches, applied two records per call: a user is counted
    // once per bucket across calls.
    write(store, fx.groups(vec![fx.group(&a, 0, ea[..1].to_vec())])).await;
    write(store, fx.groups(vec![fx.group(&b, 0, eb.clone())])).await;
    write(store, fx.groups(vec![fx.group(&a, 1, ea[1..].to_vec())])).await;
    catch_up(store, &fx, ProjectionKind::DailyStats, 2).await;

    let row = |day, interaction_type, campaign: Option<&String>, count, unique_users| DailyStat {
        day,
        interaction_type,
        campaign_id: campaign.cloned(),
        count,
        unique_users,
    };
    let q = |from, to, campaign_id: Option<&String>, interaction_type| StatsQuery {
        from,
        to,
        campaign_id: campaign_id.cloned(),
        interaction_type,
    };
    let (d0, d1) = (fx.d(0), fx.d(1));
    let all = store.daily_stats(&q(d0, d1, None, None)).await.unwrap();
    assert_eq!(
        all,
        vec![
            row(d0, Click, Some(&c1), 3, 2),
            row(d0, View, Some(&c2), 1, 1),
            row(d0, Like, None, 1, 1),
            row(d1, Click, Some(&c1), 1, 1),
        ]
    );
    let by_campaign = store
        .daily_stats(&q(d0, d1, Some(&c1), None))
        .await
        .unwrap();
    assert_eq!(by_campaign, vec![all[0].clone(), all[3].clone()]);
    let by_type = store
        .daily_stats(&q(d0, d1, None, Some(View)))
        .await
        .unwrap();
    assert_eq!(by_type, vec![all[1].clone()]);
    let both = store
        .daily_stats(&q(d0, d1, Some(&c1), Some(Like)))
        .await
        .unwrap();
    assert!(both.is_empty());
    let one_day = store.daily_stats(&q(d1, d1, None, None)).await.unwrap();
    assert_eq!(one_day, vec![all[3].clone()]);
    assert!(store
        .daily_stats(&q(d1, d0, None, None))
        .await
        .unwrap()
        .is_empty());
}

pub async fn status_counts(store: &dyn EventStore) {
    let _shared = PROJECTIONS.read().await;
    let fx = Fx::new();
    let u = fx.name("u");
    let mut evs = vec![fx.ev(&u, 1, Click), fx.ev(&u, 2, Click), fx.ev(&u, 3, View)];
    // Counted on the day recorded, not the day it occurred.
    evs[1].occurred_at = fx.at(0, 1);
    evs[1].recorded_at = Some(fx.at(1, 1));
    // Without `recorded_at` (v1), the day it occurred.
    evs[2].occurred_at = fx.at(1, 2);
    evs[2].recorded_at = None;
    let r = |n: &str, day| fx.rejection(n, fx.at(day, 5));
    write(
        store,
        fx.batch(
            vec![fx.group(&u, 0, evs)],
            vec![r("r1", 0), r("r2", 0), r("r3", 2)],
        ),
    )
    .await;
    // The same command refused again: counted once.
    let again = fx.batch(vec![], vec![r("r1", 0)]);
    let out = write(store, again).await;
    if store.journal_guard() == JournalGuard::Conditional {
        assert_eq!(out.rejections, vec![None]);
    }
    catch_up(store, &fx, ProjectionKind::Status, 500).await;

    let s = |day, accepted, rejected| StatusStat {
        day,
        accepted,
        rejected,
    };
    let (d0, d1, d2) = (fx.d(0), fx.d(1), fx.d(2));
    assert_eq!(
        store.status_stats(d0, d2).await.unwrap(),
        vec![s(d0, 1, 2), s(d1, 2, 0), s(d2, 0, 1)]
    );
    assert_eq!(store.status_stats(d1, d1).await.unwrap(), vec![s(d1, 2, 0)]);
    assert!(store.status_stats(d2, d0).await.unwrap().is_empty());
}

pub async fn user_stats_fold(store: &dyn EventStore) {
    let _shared = PROJECTIONS.read().await;
    let fx = Fx::new();
    let u = fx.name("u");
    let mut evs = [
        fx.ev(&u, 1, View),
        fx.ev(&u, 2, Click),
        fx.ev(&u, 3, Like),
        fx.ev(&u, 4, Click),
    ];
    evs[0].occurred_at = fx.at(0, 12);
    evs[1].occurred_at = fx.at(0, 8);
    evs[2].occurred_at = fx.at(1, 9);
    evs[3].occurred_at = fx.at(0, 10);
    // Two applies: the second adds to what the first stored.
    write(store, fx.groups(vec![fx.group(&u, 0, evs[..2].to_vec())])).await;
    catch_up(store, &fx, ProjectionKind::UserStats, 500).await;
    write(store, fx.groups(vec![fx.group(&u, 2, evs[2..].to_vec())])).await;
    catch_up(store, &fx, ProjectionKind::UserStats, 500).await;

    let expected = UserStats {
        user_id: u.clone(),
        total: 4,
        clicks: 2,
        views: 1,
        likes: 1,
        last_seq: 4,
        first_occurred_at: fx.at(0, 8),
        last_occurred_at: fx.at(1, 9),
    };
    assert_eq!(store.user_stats(&u).await.unwrap(), Some(expected.clone()));
    assert_eq!(store.user_stats(&fx.name("nobody")).await.unwrap(), None);
    let all = store.all_user_stats().await.unwrap();
    assert!(all.contains(&expected));
}

pub async fn reset_then_reapply(store: &dyn EventStore) {
    let _exclusive = PROJECTIONS.write().await;
    let fx = Fx::new();
    let users = write_mix(store, &fx).await;
    catch_up_all(store, &fx).await;
    let before = snapshot(store, &fx, &users).await;
    assert!(!before.0.is_empty() && !before.1.is_empty());
    assert!(before.2.iter().all(Option::is_some));

    for p in ProjectionKind::ALL {
        store.reset(p).await.unwrap();
        assert_eq!(store.checkpoint(p).await.unwrap(), 0);
    }
    let empty = snapshot(store, &fx, &users).await;
    assert_eq!(empty, (vec![], vec![], vec![None, None]));
    assert!(store.all_user_stats().await.unwrap().is_empty());

    let head = store.head().await.unwrap();
    catch_up_all(store, &fx).await;
    assert_eq!(snapshot(store, &fx, &users).await, before);
    for p in ProjectionKind::ALL {
        assert!(store.checkpoint(p).await.unwrap() >= head);
    }
}
