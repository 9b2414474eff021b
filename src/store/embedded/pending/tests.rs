//! The memory layer alone, and with the LSM behind it: reads, checkpoints,
//! reopens.

use super::super::tests::{batch, rejection};
use super::super::{keys, EmbeddedStore};
use super::entries::{sort_dedup, Entries};
use super::Ix;
use crate::store::{EventStore, JournalRecord, StoredEvent};
use chrono::NaiveDate;
use fjall::Slice;
use std::ops::Bound::{Excluded, Included, Unbounded};

fn keys_of(entries: &[(fjall::Slice, fjall::Slice)]) -> Vec<Vec<u8>> {
    entries.iter().map(|(k, _)| k.to_vec()).collect()
}

#[test]
fn positions_put_out_of_order_are_kept_sorted_and_a_key_put_again_holds_its_last_value() {
    let mut pos = Entries::new(Ix::Pos);
    for (k, v) in [(1u64, "a"), (3, "c"), (2, "b"), (3, "c2")] {
        pos.insert(&k.to_be_bytes(), v.as_bytes());
    }
    let sorted = pos.sorted();
    assert_eq!(
        keys_of(&sorted),
        [1u64, 2, 3].map(|k| k.to_be_bytes().to_vec())
    );
    assert_eq!(
        pos.get(&3u64.to_be_bytes()).map(|v| v.to_vec()),
        Some(b"c2".to_vec())
    );
    let mut out = Vec::new();
    let (two, three) = (2u64.to_be_bytes(), 3u64.to_be_bytes());
    pos.range_into(
        (Excluded(&two[..]), Included(&three[..])),
        (false, 10),
        &mut out,
    );
    assert_eq!(keys_of(&out), [three.to_vec()]);
}

#[test]
fn a_range_within_one_user_reads_that_users_group_in_key_order() {
    let mut journal = Entries::new(Ix::Journal);
    for (user, seq) in [("bo", 2), ("al", 9), ("bo", 1), ("b", 5)] {
        journal.insert(&keys::journal_key(user, seq).unwrap(), b"");
    }
    let (from, to) = (
        keys::journal_key("bo", 0).unwrap(),
        keys::journal_key("bo", u64::MAX).unwrap(),
    );
    let mut out = Vec::new();
    journal.range_into(
        (Included(&from[..]), Included(&to[..])),
        (false, 10),
        &mut out,
    );
    sort_dedup(&mut out);
    let want: Vec<Vec<u8>> = [1, 2]
        .iter()
        .map(|s| keys::journal_key("bo", *s).unwrap())
        .collect();
    assert_eq!(keys_of(&out), want);
    // Across users: every group is looked at.
    let mut all = Vec::new();
    journal.range_into((Unbounded, Unbounded), (false, 1), &mut all);
    assert_eq!(all.len(), 4);
    assert_eq!(keys_of(&journal.sorted()).len(), 4);
}

#[test]
fn a_large_group_put_out_of_order_and_again_is_read_by_key_and_in_order() {
    // Given one hot user's journal keys and one hot target's keys, 500
    // each, put in a scrambled order (7 is coprime with 500), every tenth
    // put again with a new value, with another user's and target's between
    let day = NaiveDate::from_ymd_opt(2026, 12, 4).unwrap();
    let mut journal = Entries::new(Ix::Journal);
    let mut target = Entries::new(Ix::Target);
    let mut new_keys = 0;
    for i in 0..500u64 {
        let n = (i * 7) % 500 + 1;
        for (user, post) in [("hot", "post-hot"), ("cold", "post-cold")] {
            let value = n.to_be_bytes();
            new_keys += usize::from(journal.insert(&keys::journal_key(user, n).unwrap(), &value));
            target.insert(&keys::target_key(post, day, n).unwrap(), &value);
        }
    }
    for n in (10..=500u64).step_by(10) {
        assert!(!journal.insert(&keys::journal_key("hot", n).unwrap(), b"again"));
    }
    // Then each key is new once, and found with its last value
    assert_eq!(new_keys, 1000);
    for n in 1..=500u64 {
        let want: &[u8] = if n % 10 == 0 {
            b"again"
        } else {
            &n.to_be_bytes()
        };
        let got = journal.get(&keys::journal_key("hot", n).unwrap());
        assert_eq!(got.map(|v| v.to_vec()), Some(want.to_vec()), "seq {n}");
        let got = target.get(&keys::target_key("post-hot", day, n).unwrap());
        assert_eq!(got.map(|v| v.to_vec()), Some(n.to_be_bytes().to_vec()));
    }
    assert!(journal
        .get(&keys::journal_key("hot", 501).unwrap())
        .is_none());
    // And the group's last is its largest key, and a read is in key order
    let hot = keys::journal_key("hot", 0).unwrap();
    let prefix = &hot[..hot.len() - 8];
    assert_eq!(
        journal.last_in_group(prefix),
        Some(&keys::journal_key("hot", 500).unwrap()[..])
    );
    for entries in [&journal, &target] {
        let sorted = keys_of(&entries.sorted());
        assert_eq!(sorted.len(), 1000);
        assert!(
            sorted.windows(2).all(|w| w[0] < w[1]),
            "ascending, one per key"
        );
    }
}

#[test]
fn of_equal_keys_the_last_put_is_kept() {
    let mut target = Entries::new(Ix::Target);
    let key = keys::target_key("post-1", NaiveDate::from_ymd_opt(2026, 12, 4).unwrap(), 7).unwrap();
    target.insert(&key, b"old");
    target.insert(&key, b"new");
    let sorted = target.sorted();
    assert_eq!(sorted.len(), 1);
    assert_eq!(sorted[0].1.to_vec(), b"new");
}

#[test]
fn a_commit_counts_the_distinct_entries_held_unsealed_and_a_seal_starts_again() {
    let pending = super::Pending::default();
    let journal = |user: &str, seq| keys::journal_key(user, seq).unwrap();
    let mut first = super::Staged::default();
    first.put(Ix::Pos, &1u64.to_be_bytes(), b"a");
    first.put(Ix::Journal, &journal("al", 1), b"");
    assert_eq!(pending.commit(first).entries, 2);
    // Given keys put again (the same position and journal key), a new
    // key in a group held and one new group,
    let mut again = super::Staged::default();
    again.put(Ix::Pos, &1u64.to_be_bytes(), b"a");
    again.put(Ix::Journal, &journal("al", 1), b"");
    again.put(Ix::Journal, &journal("al", 2), b"");
    again.put(Ix::Journal, &journal("bo", 1), b"");
    // then only the new keys count,
    assert_eq!(pending.commit(again).entries, 4);
    // and a seal hands them all over: the next commit counts from zero.
    let sealed = pending.seal().expect("entries to seal");
    assert_eq!(sealed.len(), 4);
    let mut after = super::Staged::default();
    after.put(Ix::Journal, &journal("al", 3), b"");
    assert_eq!(pending.commit(after).entries, 1);
}

#[test]
fn a_users_last_seq_is_its_largest_journal_seq_held_the_newest_layer_first() {
    let pending = super::Pending::default();
    let journal = |user: &str, seq| keys::journal_key(user, seq).unwrap();
    let seq = |v: Option<Slice>| v.map(|v| keys::u64_at(&v, 0, "seq").unwrap());
    // Given "ab" at seqs 2 and 1 and "b" at 7, sealed, then "ab" at 3,
    let mut first = super::Staged::default();
    for (user, s) in [("ab", 2), ("ab", 1), ("b", 7)] {
        first.put(Ix::Journal, &journal(user, s), b"");
    }
    pending.commit(first);
    let sealed = pending.seal().expect("entries to seal");
    let mut after = super::Staged::default();
    after.put(Ix::Journal, &journal("ab", 3), b"");
    pending.commit(after);
    // a user's entry is the largest seq of the newest layer holding it,
    assert_eq!(seq(pending.get(Ix::LastSeq, b"ab")), Some(3));
    assert_eq!(seq(pending.get(Ix::LastSeq, b"b")), Some(7));
    assert_eq!(pending.get(Ix::LastSeq, b"a"), None, "a prefix of a user");
    assert_eq!(pending.get(Ix::LastSeq, b"c"), None);
    // the sealed layer's entries go to the keyspace in its key order (the
    // raw user: "ab" before "b", unlike the journal's length-prefixed keys),
    let ingested = sealed.last_seqs();
    assert_eq!(keys_of(&ingested), [b"ab".to_vec(), b"b".to_vec()]);
    assert_eq!(seq(Some(ingested[0].1.clone())), Some(2));
    // and a range read keeps the newest of each.
    let all = pending.range(Ix::LastSeq, (Unbounded, Unbounded), (false, usize::MAX));
    let got: Vec<_> = all
        .iter()
        .map(|(k, v)| (k.to_vec(), seq(Some(v.clone()))))
        .collect();
    assert_eq!(got, [(b"ab".to_vec(), Some(3)), (b"b".to_vec(), Some(7))]);
}

fn event_positions(events: &[StoredEvent]) -> Vec<u64> {
    events.iter().map(|e| e.pos).collect()
}

fn positions(records: &[JournalRecord]) -> Vec<u64> {
    records.iter().map(JournalRecord::pos).collect()
}

/// Given ten users' first events ingested into the LSM and their second
/// events held in memory, every reader sees all twenty, once, in order.
async fn split_store() -> (tempfile::TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_without_checkpoints(dir.path()).unwrap();
    store.write(batch(0..10, 0, 1).into()).await.unwrap();
    store.inner.checkpoint_indexes().unwrap();
    store.write(batch(0..10, 1, 1).into()).await.unwrap();
    assert!(store.inner.pos.get(15u64.to_be_bytes()).unwrap().is_none());
    assert!(store
        .inner
        .pending
        .get(Ix::Pos, &15u64.to_be_bytes())
        .is_some());
    (dir, store)
}

async fn assert_reads_see_all_twenty(store: &EmbeddedStore) {
    let all = store.scan(0, usize::MAX).await.unwrap();
    assert_eq!(positions(&all), (1..=20).collect::<Vec<_>>());
    assert_eq!(positions(&store.scan(8, 4).await.unwrap()), [9, 10, 11, 12]);
    let recent = event_positions(&store.recent(None, 100).await.unwrap());
    assert_eq!(recent, (1..=20).rev().collect::<Vec<_>>());
    let before = event_positions(&store.recent(Some(12), 3).await.unwrap());
    assert_eq!(before, [11, 10, 9]);
    let seqs: Vec<u64> = store
        .user_events("user-3", 0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.event.seq)
        .collect();
    assert_eq!(seqs, [1, 2]);
    assert_eq!(store.interaction("user-3-1").await.unwrap().unwrap().pos, 4);
    assert_eq!(
        store.interaction("user-3-2").await.unwrap().unwrap().pos,
        14
    );
    let owners = store
        .interaction_owners(&["user-9-2".into(), "user-9-1".into(), "user-9-3".into()])
        .await
        .unwrap();
    assert_eq!(owners, [Some("user-9".into()), Some("user-9".into()), None]);
    let day = NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
    // Targets: post-(seq % 7), so post-1 holds every first event, post-2 every second.
    let firsts = store.by_target("post-1", day, day, 100).await.unwrap();
    let seconds = store.by_target("post-2", day, day, 100).await.unwrap();
    assert_eq!(event_positions(&firsts), (1..=10).collect::<Vec<_>>());
    assert_eq!(event_positions(&seconds), (11..=20).collect::<Vec<_>>());
}

#[tokio::test]
async fn readers_see_entries_in_memory_and_in_the_lsm_together() {
    let (_dir, store) = split_store().await;
    assert_reads_see_all_twenty(&store).await;
}

/// An entry ingested while a reader had already read the memory layer
/// is met twice by that reader: it is kept once.
#[tokio::test]
async fn an_entry_in_both_layers_is_read_once() {
    let (_dir, store) = split_store().await;
    let s = &store.inner;
    for ix in Ix::ALL {
        for (k, v) in s
            .pending
            .range(ix, (Unbounded, Unbounded), (false, usize::MAX))
        {
            s.index_keyspace(ix).insert(k, v).unwrap();
        }
    }
    assert_reads_see_all_twenty(&store).await;
}

/// A checkpoint moves the entries into the LSM: nothing stays in
/// memory and the reads, and a reopen, see the same.
#[tokio::test]
async fn a_checkpoint_ingests_what_memory_holds_and_a_reopen_reads_it() {
    let (dir, store) = split_store().await;
    store.inner.checkpoint_indexes().unwrap();
    assert!(store
        .inner
        .pending
        .get(Ix::Pos, &15u64.to_be_bytes())
        .is_none());
    assert!(store
        .inner
        .pending
        .range(Ix::Ids, (Unbounded, Unbounded), (false, 9))
        .is_empty());
    let journal_key = keys::journal_key("user-3", 2).unwrap();
    assert!(store.inner.journal.get(journal_key).unwrap().is_some());
    assert_reads_see_all_twenty(&store).await;
    drop(store);
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_reads_see_all_twenty(&store).await;
}

/// The latest events read through rejections held in memory: a
/// reader that skips entries reads all of memory's, not `limit`.
#[tokio::test]
async fn the_latest_events_are_found_behind_rejections_held_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_without_checkpoints(dir.path()).unwrap();
    store.write(batch(0..5, 0, 1).into()).await.unwrap();
    store.inner.checkpoint_indexes().unwrap();
    let mut mixed = batch(0..2, 1, 1);
    mixed.rejections = (0..4).map(|i| rejection(&format!("cmd-{i}"))).collect();
    store.write(mixed.into()).await.unwrap();
    let latest = event_positions(&store.recent(None, 3).await.unwrap());
    assert_eq!(latest, [7, 6, 5]);
    let records = store.scan(5, 3).await.unwrap();
    assert_eq!(positions(&records), [6, 7, 8]);
}

/// Entries in memory when the process dies are derived again at open.
#[tokio::test]
async fn entries_lost_from_memory_are_derived_again_at_open() {
    let (dir, store) = split_store().await;
    drop(store);
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_reads_see_all_twenty(&store).await;
    let next = store.write(batch(3..4, 2, 1).into()).await.unwrap();
    assert_eq!(
        next.groups,
        [crate::store::GroupOutcome::Appended {
            first_pos: 21,
            first_seq: 3
        }]
    );
    let again = store.write(batch(3..4, 1, 1).into()).await.unwrap();
    assert!(!matches!(
        again.groups[0],
        crate::store::GroupOutcome::Appended { .. }
    ));
}

#[test]
fn a_checkpoints_order_is_byte_order_for_keys_alike_in_their_first_16_bytes() {
    // Given keys that differ only past byte 16, keys that are prefixes of
    // others, and keys whose padding is indistinguishable from zero bytes.
    let long = b"0123456789abcdef".to_vec();
    let mut raw: Vec<Vec<u8>> = vec![
        long.clone(),
        [&long[..], b"\x00"].concat(),
        [&long[..], b"z"].concat(),
        [&long[..], b"a", b"\xff"].concat(),
        b"0123".to_vec(),
        b"0123\x00".to_vec(),
        b"".to_vec(),
        b"\xff".to_vec(),
        b"0123456789abcdeE".to_vec(),
    ];
    for ix in [Ix::Ids, Ix::Users] {
        let mut entries = Entries::new(ix);
        for k in raw.iter().rev() {
            entries.insert(k, k);
        }
        // When they are sorted for a checkpoint.
        let sorted = entries.sorted();
        // Then they come in byte order, each with its own value.
        raw.sort();
        assert_eq!(keys_of(&sorted), raw, "{ix:?}");
        assert!(sorted.iter().all(|(k, v)| k == v));
    }
    // The grouped shape: one target's keys differ past byte 16.
    let mut target = Entries::new(Ix::Target);
    let day = NaiveDate::from_ymd_opt(2026, 12, 5).unwrap();
    let mut want = Vec::new();
    for pos in [300u64, 2, 1 << 40, 7] {
        let key = keys::target_key("a-target-id-longer-than-16", day, pos).unwrap();
        target.insert(&key, b"");
        want.push(key);
    }
    want.sort();
    assert_eq!(keys_of(&target.sorted()), want);
}

#[test]
fn a_row_put_again_and_again_counts_once_as_an_entry_and_each_time_as_bytes() {
    // Given one user's stats row replaced by each of many applies,
    let pending = super::Pending::default();
    let mut last = None;
    for n in 0u64..100 {
        let mut apply = super::Staged::default();
        apply.put(Ix::Users, b"\x01al", &n.to_be_bytes());
        last = Some(pending.commit(apply));
    }
    let held = last.unwrap();
    // then it is one entry, holding its newest value,
    assert_eq!(held.entries, 1);
    let value = pending.get(Ix::Users, b"\x01al").unwrap();
    assert_eq!(keys::u64_at(&value, 0, "row").unwrap(), 99);
    // but every put's bytes stay until the layer is dropped and count
    // against the bound, which is passed on bytes alone as on entries.
    assert!(held.bytes >= 100 * (3 + 8));
    let over = |entries, bytes| super::Unsealed { entries, bytes }.over();
    assert!(!over(1, held.bytes));
    assert!(over(1, super::MAX_UNSEALED_BYTES + 1));
    assert!(over(super::MAX_UNSEALED + 1, 0));
    // A checkpoint is due at half of either bound, before a write must
    // ingest.
    let half_full = |entries, bytes| super::Unsealed { entries, bytes }.half_full();
    assert!(!half_full(
        super::MAX_UNSEALED / 2,
        super::MAX_UNSEALED_BYTES / 2
    ));
    assert!(half_full(super::MAX_UNSEALED / 2 + 1, 0));
    assert!(half_full(0, super::MAX_UNSEALED_BYTES / 2 + 1));
    assert!(!over(super::MAX_UNSEALED / 2 + 1, 0));
}

#[test]
fn a_layer_ingested_and_released_is_reused_empty_by_the_next_seal() {
    let pending = super::Pending::default();
    let journal = |user: &str, seq| keys::journal_key(user, seq).unwrap();
    // Given a layer sealed, ingested (its reference dropped) and released,
    let mut first = super::Staged::default();
    first.put(Ix::Journal, &journal("al", 1), b"");
    first.put(Ix::Ids, b"id-1", b"v");
    pending.commit(first);
    drop(pending.seal().expect("entries to seal"));
    pending.release();
    assert!(pending.read().spare.is_some(), "kept for the next seal");
    // when the next entries are written and sealed,
    let mut second = super::Staged::default();
    second.put(Ix::Ids, b"id-2", b"w");
    assert_eq!(pending.commit(second).entries, 1);
    // then nothing of the released layer is read or sealed again.
    assert_eq!(pending.get(Ix::Ids, b"id-1"), None);
    assert_eq!(pending.get(Ix::LastSeq, b"al"), None);
    assert_eq!(
        pending.get(Ix::Ids, b"id-2").map(|v| v.to_vec()),
        Some(b"w".to_vec())
    );
    let sealed = pending.seal().expect("entries to seal");
    assert_eq!(sealed.len(), 1);
    // A layer a reader still holds when it is released is not reused.
    pending.release();
    assert!(pending.read().spare.is_none());
    drop(sealed);
}
