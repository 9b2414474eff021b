//! Contract: appends, conflicts, positions and journal reads.

use super::*;

pub async fn append_and_read_back(store: &dyn EventStore) {
    let fx = Fx::new();
    let u = fx.name("u");
    assert_eq!(store.last_seq(&u).await.unwrap(), 0);
    let evs = vec![fx.ev(&u, 1, Click), fx.ev(&u, 2, View), fx.ev(&u, 3, Like)];
    let out = write(store, fx.groups(vec![fx.group(&u, 0, evs.clone())])).await;
    let first = appended(&out.groups[0]);
    assert_eq!(store.last_seq(&u).await.unwrap(), 3);
    let back = store.user_events(&u, 0, 100).await.unwrap();
    assert_stored(store, &back, first, &evs);
    fx.fold(store).await; // a store that indexes ids behind the journal
    let one = store.interaction(&evs[1].interaction_id).await.unwrap();
    assert_eq!(one, Some(back[1].clone()));
    assert_eq!(store.interaction(&fx.name("nope")).await.unwrap(), None);
    let owners = store
        .interaction_owners(&[evs[2].interaction_id.clone(), fx.name("nope")])
        .await
        .unwrap();
    assert_eq!(owners, vec![Some(u.clone()), None]);
    if checkpointed(store) {
        assert!(store.head().await.unwrap() >= first + 2);
    }

    // An event without the v2 fields reads back as written.
    let mut old = fx.ev(&u, 4, Click);
    (old.schema_version, old.affiliate_id, old.recorded_at) = (1, None, None);
    let out = write(store, fx.groups(vec![fx.group(&u, 3, vec![old.clone()])])).await;
    let pos = appended(&out.groups[0]);
    assert!(pos > back[2].pos);
    assert_eq!(store.last_seq(&u).await.unwrap(), 4);
    assert_stored(
        store,
        &store.user_events(&u, 3, 10).await.unwrap(),
        pos,
        &[old],
    );
}

pub async fn seq_mismatch_writes_nothing(store: &dyn EventStore) {
    let fx = Fx::new();
    let (u, v, w) = (fx.name("u"), fx.name("v"), fx.name("w"));
    write(
        store,
        fx.groups(vec![fx.group(
            &u,
            0,
            vec![fx.ev(&u, 1, Click), fx.ev(&u, 2, Click)],
        )]),
    )
    .await;

    let stale = fx.ev(&u, 2, Like);
    let ahead = fx.ev(&u, 6, Like);
    let fresh_v = fx.ev(&v, 1, View);
    let unknown = fx.ev(&w, 4, View);
    let out = write(
        store,
        fx.groups(vec![
            fx.group(&u, 1, vec![stale.clone()]),
            fx.group(&v, 0, vec![fresh_v.clone()]),
            fx.group(&u, 5, vec![ahead.clone()]),
            fx.group(&w, 3, vec![unknown.clone()]),
        ]),
    )
    .await;
    let mismatch =
        |expected, actual| GroupOutcome::Conflict(AppendConflict::SeqMismatch { expected, actual });
    assert_eq!(out.groups[0], mismatch(1, 2));
    appended(&out.groups[1]);
    assert_eq!(out.groups[2], mismatch(5, 2));
    assert_eq!(out.groups[3], mismatch(3, 0));
    for ev in [&stale, &ahead, &unknown] {
        assert_eq!(store.interaction(&ev.interaction_id).await.unwrap(), None);
    }
    assert_eq!(store.user_events(&u, 0, 10).await.unwrap().len(), 2);
    assert_eq!(store.last_seq(&u).await.unwrap(), 2);
    assert_eq!(store.last_seq(&v).await.unwrap(), 1);
    assert_eq!(store.last_seq(&w).await.unwrap(), 0);

    // Within one batch, a later group of the same user sees the earlier one.
    let (e3, e4, e5, e5b) = (
        fx.ev(&u, 3, Click),
        fx.ev(&u, 4, Click),
        fx.ev(&u, 5, Click),
        fx.ev(&u, 5, View),
    );
    let out = write(
        store,
        fx.groups(vec![
            fx.group(&u, 2, vec![e3]),
            fx.group(&u, 3, vec![e4]),
            fx.group(&u, 4, vec![e5]),
            fx.group(&u, 4, vec![e5b.clone()]),
        ]),
    )
    .await;
    let p: Vec<u64> = out.groups[..3].iter().map(appended).collect();
    assert!(p[0] < p[1] && p[1] < p[2], "{p:?}");
    assert_eq!(out.groups[3], mismatch(4, 5));
    assert_eq!(store.interaction(&e5b.interaction_id).await.unwrap(), None);
    assert_eq!(store.last_seq(&u).await.unwrap(), 5);
}

/// A group the store numbers ([`Numbering::Store`]) follows the user's
/// last seq as it is when written, earlier groups of the same batch
/// included; a taken id still refuses it whole; its events must come as
/// `1, 2, ...`.
pub async fn store_numbering_follows_the_last_seq(store: &dyn EventStore) {
    let fx = Fx::new();
    let (u, v) = (fx.name("u"), fx.name("v"));
    let first = vec![fx.ev(&u, 1, Click), fx.ev(&u, 2, View)];
    write(store, fx.groups(vec![fx.group(&u, 0, first.clone())])).await;

    // Given u at seq 2 and v new, when three numbered groups and one with
    // a taken id are written in one batch,
    let (a, b) = (fx.ev(&u, 1, Like), fx.ev(&u, 2, Click));
    let (c, w) = (fx.ev(&u, 1, View), fx.ev(&v, 1, Like));
    let mut taken = fx.ev(&u, 1, Click);
    taken.interaction_id = first[0].interaction_id.clone();
    let out = write(
        store,
        fx.groups(vec![
            fx.numbered(&u, vec![a.clone(), b.clone()]),
            fx.numbered(&v, vec![w.clone()]),
            fx.numbered(&u, vec![taken]),
            fx.numbered(&u, vec![c.clone()]),
        ]),
    )
    .await;
    // then each follows what is stored and appended before it,
    let seqs: Vec<Option<u64>> = out
        .groups
        .iter()
        .map(|g| match g {
            GroupOutcome::Appended { first_seq, .. } => Some(*first_seq),
            GroupOutcome::Conflict(_) => None,
        })
        .collect();
    assert_eq!(seqs, [Some(3), Some(1), None, Some(5)]);
    assert_eq!(
        out.groups[2],
        GroupOutcome::Conflict(AppendConflict::InteractionIdTaken {
            interaction_id: first[0].interaction_id.clone(),
            owner: u.clone(),
        })
    );
    // and is stored, indexed and read back under the numbers it got.
    let back = store.user_events(&u, 0, 100).await.unwrap();
    let got: Vec<(u64, &str)> = back
        .iter()
        .map(|e| (e.event.seq, e.event.interaction_id.as_str()))
        .collect();
    let want: Vec<(u64, &str)> = [&first[0], &first[1], &a, &b, &c]
        .iter()
        .zip(1..)
        .map(|(e, seq)| (seq, e.interaction_id.as_str()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(store.last_seq(&u).await.unwrap(), 5);
    assert_eq!(store.user_events(&u, 4, 10).await.unwrap().len(), 1);
    assert_eq!(store.last_seq(&v).await.unwrap(), 1);
    fx.fold(store).await;
    let one = store.interaction(&b.interaction_id).await.unwrap().unwrap();
    assert_eq!(one.event.seq, 4);

    // A numbered group whose events do not come as 1, 2, ... is a caller
    // bug: refused whole, nothing written.
    let bad = fx.numbered(&u, vec![fx.ev(&u, 6, Click)]);
    refused_as_a_caller_bug(store, &fx, bad, 5).await;
}

/// Writes `group` alone and expects the whole batch refused as a caller
/// bug (`Corrupt`), its user still at `last_seq`.
async fn refused_as_a_caller_bug(
    store: &dyn EventStore,
    fx: &Fx,
    group: AppendGroup,
    last_seq: u64,
) {
    let user = group.user_id.clone();
    let err = store
        .write(fx.groups(vec![group]).into())
        .await
        .unwrap_err();
    assert!(
        matches!(err, crate::store::StoreError::Corrupt(_)),
        "{err:?}"
    );
    assert_eq!(store.last_seq(&user).await.unwrap(), last_seq);
}

/// A deterministic store writes groups as decided (every writer of a user
/// must write the same rows): a group asking it to number the events is
/// a caller bug, refused whole with nothing written.
pub async fn a_group_to_number_is_refused(store: &dyn EventStore) {
    let fx = Fx::new();
    let u = fx.name("u");
    let numbered = fx.numbered(&u, vec![fx.ev(&u, 1, Click)]);
    refused_as_a_caller_bug(store, &fx, numbered, 0).await;
}

pub async fn duplicate_interaction_id_is_a_conflict(store: &dyn EventStore) {
    let fx = Fx::new();
    let [a, b, c, d, e, f] = ["a", "b", "c", "d", "e", "f"].map(|n| fx.name(n));
    let taken = |id: &str, owner: &str| {
        GroupOutcome::Conflict(AppendConflict::InteractionIdTaken {
            interaction_id: id.to_owned(),
            owner: owner.to_owned(),
        })
    };
    let x = fx.ev(&a, 1, Click);
    write(store, fx.groups(vec![fx.group(&a, 0, vec![x.clone()])])).await;

    // Across users, across batches.
    let mut bx = fx.ev(&b, 1, Click);
    bx.interaction_id = x.interaction_id.clone();
    let out = write(store, fx.groups(vec![fx.group(&b, 0, vec![bx])])).await;
    assert_eq!(out.groups[0], taken(&x.interaction_id, &a));
    assert_eq!(store.last_seq(&b).await.unwrap(), 0);
    let owner = store.interaction(&x.interaction_id).await.unwrap().unwrap();
    assert_eq!(owner.event.user_id, a);

    // Across groups of one batch, within one group, and a partly new group.
    let y = fx.ev(&c, 1, Like);
    let mut dy = fx.ev(&d, 1, Like);
    dy.interaction_id = y.interaction_id.clone();
    let (e1, mut e2) = (fx.ev(&e, 1, View), fx.ev(&e, 2, View));
    e2.interaction_id = e1.interaction_id.clone();
    let (w, mut fx2) = (fx.ev(&f, 1, View), fx.ev(&f, 2, View));
    fx2.interaction_id = x.interaction_id.clone();
    let out = write(
        store,
        fx.groups(vec![
            fx.group(&c, 0, vec![y.clone()]),
            fx.group(&d, 0, vec![dy]),
            fx.group(&e, 0, vec![e1.clone(), e2]),
            fx.group(&f, 0, vec![w.clone(), fx2]),
        ]),
    )
    .await;
    appended(&out.groups[0]);
    assert_eq!(out.groups[1], taken(&y.interaction_id, &c));
    assert_eq!(out.groups[2], taken(&e1.interaction_id, &e));
    assert_eq!(out.groups[3], taken(&x.interaction_id, &a));
    for user in [&d, &e, &f] {
        assert_eq!(store.last_seq(user).await.unwrap(), 0);
    }
    assert_eq!(store.interaction(&e1.interaction_id).await.unwrap(), None);
    assert_eq!(store.interaction(&w.interaction_id).await.unwrap(), None);
}

pub async fn rejections_are_idempotent(store: &dyn EventStore) {
    let fx = Fx::new();
    let h0 = head0(store).await;
    let (r1, r2) = (
        fx.rejection("r1", fx.at(0, 1)),
        fx.rejection("r2", fx.at(0, 2)),
    );
    let out = write(store, fx.batch(vec![], vec![r1.clone()])).await;
    let p1 = out.rejections[0].unwrap();
    let out = write(
        store,
        fx.batch(vec![], vec![r1.clone(), r2.clone(), r2.clone()]),
    )
    .await;
    assert_eq!(out.rejections[0], None);
    let p2 = out.rejections[1].unwrap();
    assert!(p2 > p1);
    assert_eq!(out.rejections[2], None);
    let own = own_records(store, &fx, h0).await;
    let got: Vec<(u64, &Rejection)> = own
        .iter()
        .map(|r| match r {
            JournalRecord::Rejection(r) => (r.pos, &r.rejection),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(got, vec![(p1, &r1), (p2, &r2)]);
}

pub async fn positions_increase_and_scan_returns_all(store: &dyn EventStore) {
    let fx = Fx::new();
    let (u, v) = (fx.name("u"), fx.name("v"));
    let h0 = store.head().await.unwrap();
    let (eu, ev) = (
        vec![fx.ev(&u, 1, Click), fx.ev(&u, 2, View)],
        vec![fx.ev(&v, 1, Like)],
    );
    let r = fx.rejection("r", fx.at(0, 3));
    let out = write(
        store,
        fx.batch(
            vec![fx.group(&u, 0, eu.clone()), fx.group(&v, 0, ev.clone())],
            vec![r.clone()],
        ),
    )
    .await;
    let (pu, pv, pr) = (
        appended(&out.groups[0]),
        appended(&out.groups[1]),
        out.rejections[0].unwrap(),
    );
    assert!(pv > pu + 1 && pr > pv, "{pu} {pv} {pr}");
    assert!(store.head().await.unwrap() >= pr);

    let mut expected: Vec<JournalRecord> = stored(pu, &eu)
        .into_iter()
        .chain(stored(pv, &ev))
        .map(JournalRecord::Event)
        .collect();
    expected.push(JournalRecord::Rejection(crate::store::StoredRejection {
        pos: pr,
        rejection: r,
    }));
    assert_eq!(own_records(store, &fx, h0).await, expected);

    // Everything after h0 comes in strictly increasing position order.
    let all = store.scan(h0, usize::MAX).await.unwrap();
    assert!(all.windows(2).all(|w| w[0].pos() < w[1].pos()));
    assert!(all.first().is_some_and(|r| r.pos() > h0));
    assert!(store.scan(h0, 0).await.unwrap().is_empty());

    // A later commit gets later positions; scanning after a position skips it.
    let out = write(
        store,
        fx.groups(vec![fx.group(&u, 2, vec![fx.ev(&u, 3, Click)])]),
    )
    .await;
    assert!(appended(&out.groups[0]) > pr);
    let after = own_records(store, &fx, pr).await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].pos(), appended(&out.groups[0]));
}

pub async fn recent_by_target_and_pagination(store: &dyn EventStore) {
    let fx = Fx::new();
    let u = fx.name("u");
    let mut evs: Vec<_> = (1..=5).map(|s| fx.ev(&u, s, Click)).collect();
    for e in &mut evs[2..4] {
        e.occurred_at = fx.at(1, 10);
    }
    let out = write(
        store,
        fx.batch(
            vec![fx.group(&u, 0, evs.clone())],
            vec![fx.rejection("r", fx.at(0, 1))],
        ),
    )
    .await;
    let p = appended(&out.groups[0]);
    let rp = out.rejections[0].unwrap();
    fx.fold(store).await; // a store that lists events behind the journal
    let s = store.user_events(&u, 0, 100).await.unwrap();
    assert_stored(store, &s, p, &evs);

    // Newest first, below a position, skipping rejections.
    let rev = |idx: &[usize]| idx.iter().map(|i| s[*i].clone()).collect::<Vec<_>>();
    assert_eq!(
        store.recent(Some(s[4].pos + 1), 3).await.unwrap(),
        rev(&[4, 3, 2])
    );
    assert_eq!(store.recent(Some(s[2].pos), 2).await.unwrap(), rev(&[1, 0]));
    if checkpointed(store) {
        // Positions are commit order: the rejection came after the events.
        let below_rejection = store.recent(Some(rp + 1), 1).await.unwrap();
        assert!(below_rejection[0].pos >= p + 4 && below_rejection[0].pos < rp);
    }
    if checkpointed(store) {
        // (A store that lists by recording time lists the last days only:
        // these events were recorded in the 19th century.)
        let newest = store.recent(None, 1).await.unwrap();
        assert!(newest[0].pos >= s[4].pos);
    }
    assert!(store.recent(None, 0).await.unwrap().is_empty());

    // By target: days inclusive, in (day, position) order, limited.
    let t = fx.name("target");
    let (d0, d1) = (fx.d(0), fx.d(1));
    let bt = |from, to, limit| store.by_target(&t, from, to, limit);
    assert_eq!(bt(d0, d1, 100).await.unwrap(), rev(&[0, 1, 4, 2, 3]));
    assert_eq!(bt(d1, d1, 100).await.unwrap(), rev(&[2, 3]));
    assert_eq!(bt(d0, d1, 2).await.unwrap(), rev(&[0, 1]));
    assert!(bt(d1, d0, 100).await.unwrap().is_empty());
    let other = store.by_target(&fx.name("other"), d0, d1, 100).await;
    assert!(other.unwrap().is_empty());

    // User events in pages.
    let page = |after, limit| store.user_events(&u, after, limit);
    assert_eq!(page(0, 2).await.unwrap(), rev(&[0, 1]));
    assert_eq!(page(2, 2).await.unwrap(), rev(&[2, 3]));
    assert_eq!(page(4, 2).await.unwrap(), rev(&[4]));
    assert!(page(5, 2).await.unwrap().is_empty());
    assert!(page(0, 0).await.unwrap().is_empty());
}

pub async fn cursors_start_at_zero_and_move(store: &dyn EventStore) {
    let fx = Fx::new();
    let name = fx.name("cursor");
    assert_eq!(store.cursor(&name).await.unwrap(), 0);
    store.set_cursor(&name, 42).await.unwrap();
    assert_eq!(store.cursor(&name).await.unwrap(), 42);
    store.set_cursor(&name, 7).await.unwrap();
    assert_eq!(store.cursor(&name).await.unwrap(), 7);
}

/// A worker that lost a user while committing (a rebalance, a pause)
/// finishes its commit late, after the user's new worker wrote the same
/// commands: nothing changes, nothing is counted twice.
pub async fn a_commit_written_again_changes_nothing(store: &dyn EventStore) {
    let _shared = PROJECTIONS.read().await;
    let fx = Fx::new();
    let u = fx.name("u");
    let evs = vec![fx.ev(&u, 1, Click), fx.ev(&u, 2, View)];
    let batch = fx.batch(
        vec![fx.group(&u, 0, evs.clone())],
        vec![fx.rejection("r", fx.at(0, 3))],
    );
    let first = write(store, batch.clone()).await;
    let again = write(store, batch).await;
    assert_eq!(first.groups, again.groups);
    assert_eq!(store.last_seq(&u).await.unwrap(), 2);
    let back = store.user_events(&u, 0, 10).await.unwrap();
    assert_stored(store, &back, appended(&first.groups[0]), &evs);
    catch_up_all(store, &fx).await;
    let own = own_records(store, &fx, 0).await;
    assert_eq!(own.len(), 3);
    assert_eq!(
        snapshot(store, &fx, std::slice::from_ref(&u)).await,
        recount(&own, std::slice::from_ref(&u))
    );
}

/// A late commit of a user's earlier commands (a paused worker resuming)
/// after later ones: the user's head, seqs and statistics stay where the
/// later commit put them.
pub async fn a_late_commit_never_moves_a_user_back(store: &dyn EventStore) {
    let fx = Fx::new();
    let u = fx.name("u");
    let early = fx.group(&u, 0, vec![fx.ev(&u, 1, Click), fx.ev(&u, 2, Click)]);
    let later = fx.group(&u, 2, vec![fx.ev(&u, 3, Like)]);
    write(store, fx.groups(vec![early.clone()])).await;
    write(store, fx.groups(vec![later])).await;
    write(store, fx.groups(vec![early])).await;
    assert_eq!(store.last_seq(&u).await.unwrap(), 3);
    let stats = store.user_stats(&u).await.unwrap().unwrap();
    assert_eq!((stats.total, stats.likes, stats.last_seq), (3, 1, 3));
    let seqs: Vec<u64> = store
        .user_events(&u, 0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.event.seq)
        .collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    let view = store
        .view(&u, &[fx.name("i0"), fx.name("new")], &[])
        .await
        .unwrap();
    assert_eq!(view.last_seq, 3);
}
