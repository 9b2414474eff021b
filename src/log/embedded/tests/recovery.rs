//! Crash and recovery: confirmed records survive, a torn tail is cut,
//! corruption in a sealed segment is reported, and consumed segments go.

use super::*;
use std::os::unix::fs::FileExt;

/// A one-partition log whose segments roll after every record.
async fn one_record_segments(dir: &std::path::Path) -> Arc<EmbeddedLog> {
    let options = EmbeddedLogOptions {
        segment_bytes: 1,
        ..Default::default()
    };
    EmbeddedLog::open_with(dir, 1, options).await.unwrap()
}

#[tokio::test]
async fn confirmed_records_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), 2).await.unwrap();
    let mut confirmed: BTreeMap<(u32, u64), String> = BTreeMap::new();
    for batch in 0..3 {
        let records: Vec<NewRecord> = (0..50)
            .map(|i| rec(&format!("u{i}"), &format!("b{batch}-{i}")))
            .collect();
        let appended = within(log.append(records.clone())).await.unwrap();
        for (r, a) in records.iter().zip(appended) {
            confirmed.insert(
                (a.partition, a.offset),
                String::from_utf8_lossy(&r.payload).into_owned(),
            );
        }
    }
    drop(log); // no close: like a crash (of the process)
    let log = EmbeddedLog::open(dir.path(), 2).await.unwrap();
    let mut found = BTreeMap::new();
    for p in 0..2 {
        let n = confirmed.keys().filter(|k| k.0 == p).count();
        assert_eq!(log.high_water_mark(p), Some(n as u64));
        let (mut source, _) = log.open(p).await.unwrap();
        for d in read_n(&mut source, n).await {
            found.insert((p, d.id), text(&d));
        }
    }
    assert_eq!(found, confirmed);
}

#[tokio::test]
async fn a_torn_tail_is_truncated_and_confirmed_records_kept() {
    let mut frame = Vec::new();
    encode_frame(&mut frame, 5, 5, &rec("k", "never confirmed"), 0).unwrap();
    let mut bad_crc = frame.clone();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0xff;
    let tails: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"\xde\xad\xbe\xef garbage".to_vec()),
        ("half a record", frame[..frame.len() / 2].to_vec()),
        ("half a header", frame[..3].to_vec()),
        ("bad crc", bad_crc),
        ("zeros", vec![0; 4096]),
    ];
    // A crash tears the last group where the writer had put it: right
    // after the data, and before the zeros written ahead of it, if any.
    let cases = tails.into_iter().flat_map(|(what, tail)| {
        let ahead = [tail.clone(), vec![0; crate::segfile::ZERO_AHEAD as usize]].concat();
        [(what, tail), (what, ahead)]
    });
    for (what, tail) in cases {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path(), 1).await.unwrap();
        within(log.append((0..5).map(|i| rec("k", &format!("p{i}"))).collect()))
            .await
            .unwrap();
        // A clean stop cuts the zeros written ahead: the file ends at its data.
        within(log.close()).await.unwrap();
        drop(log);
        let seg = segment_path(&dir.path().join("partition-0"), 0);
        let good_len = fs::metadata(&seg).unwrap().len();
        let file = OpenOptions::new().write(true).open(&seg).unwrap();
        file.write_all_at(&tail, good_len).unwrap();
        drop(file);

        let log = EmbeddedLog::open(dir.path(), 1).await.unwrap();
        assert_eq!(log.high_water_mark(0), Some(5), "{what}");
        assert_eq!(fs::metadata(&seg).unwrap().len(), good_len, "{what}");
        let (mut source, _) = log.open(0).await.unwrap();
        let got = read_n(&mut source, 5).await;
        assert_eq!(
            got.iter().map(text).collect::<Vec<_>>(),
            ["p0", "p1", "p2", "p3", "p4"],
            "{what}"
        );
        let at = within(log.append(vec![rec("k", "p5")])).await.unwrap();
        assert_eq!(at[0].offset, 5, "{what}");
        assert_eq!(text(&read_n(&mut source, 1).await[0]), "p5", "{what}");
        within(log.close()).await.unwrap();
    }
}

/// A log of one-record segments holding `p0`, `p1` and `p2`.
async fn three_one_record_segments(dir: &std::path::Path) -> Arc<EmbeddedLog> {
    let log = one_record_segments(dir).await;
    for i in 0..3 {
        within(log.append(vec![rec("k", &format!("p{i}"))]))
            .await
            .unwrap();
    }
    log
}

#[tokio::test]
async fn the_zeros_written_ahead_end_at_a_seal_and_are_cut_at_open_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let log = three_one_record_segments(dir.path()).await;
    let part = dir.path().join("partition-0");
    let bases = list_segments(&part).unwrap();
    assert_eq!(bases, [0, 1, 2]);
    // Sealed segments end at their one frame; the active one has zeros ahead.
    let mut frame = Vec::new();
    encode_frame(&mut frame, 0, 0, &rec("k", "p0"), 0).unwrap();
    let len = |base| fs::metadata(segment_path(&part, base)).unwrap().len();
    let active = len(2);
    assert!(len(0) < 2 * frame.len() as u64 && len(1) < 2 * frame.len() as u64);
    assert!(active > crate::segfile::ZERO_AHEAD, "{active}");
    // A crash: no clean stop cuts them.
    drop(log);
    let log = one_record_segments(dir.path()).await;
    assert_eq!(log.high_water_mark(0), Some(3));
    assert!(len(2) < active);
    let (mut source, _) = log.open(0).await.unwrap();
    let got = read_n(&mut source, 3).await;
    assert_eq!(got.iter().map(text).collect::<Vec<_>>(), ["p0", "p1", "p2"]);
    within(log.close()).await.unwrap();
}

#[tokio::test]
async fn corruption_inside_a_sealed_segment_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let log = three_one_record_segments(dir.path()).await;
    drop(log);
    let seg = segment_path(&dir.path().join("partition-0"), 0);
    let mut data = fs::read(&seg).unwrap();
    let last = data.len() - 1;
    data[last] ^= 0xff;
    fs::write(&seg, data).unwrap();
    let log = one_record_segments(dir.path()).await;
    let (mut source, _) = log.open(0).await.unwrap();
    let err = within(source.next_batch(10)).await.unwrap_err();
    assert!(
        matches!(err, LogError::Corrupt(_)) && !err.is_retryable(),
        "{err}"
    );
}

#[tokio::test]
async fn segments_roll_and_consumed_ones_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let part_dir = dir.path().join("partition-0");
    let log = one_record_segments(dir.path()).await;
    let (mut source, acker) = log.open(0).await.unwrap();
    for i in 0..10u64 {
        let at = within(log.append(vec![rec("k", &format!("p{i}"))]))
            .await
            .unwrap();
        assert_eq!(at[0].offset, i);
        if i == 4 {
            // The reader follows the writer across rolls.
            assert_eq!(ids(&read_n(&mut source, 5).await), [0, 1, 2, 3, 4]);
        }
    }
    assert_eq!(
        list_segments(&part_dir).unwrap(),
        (0..10).collect::<Vec<u64>>()
    );
    assert_eq!(ids(&read_n(&mut source, 5).await), [5, 6, 7, 8, 9]);
    acker.ack(&(0..7).collect::<Vec<u64>>()).await.unwrap();
    acker.commit().await.unwrap();
    assert_eq!(log.committed_offset(0), Some(7));
    assert_eq!(list_segments(&part_dir).unwrap(), [7, 8, 9]);
    acker.ack(&[7, 8, 9]).await.unwrap();
    acker.commit().await.unwrap();
    assert_eq!(
        list_segments(&part_dir).unwrap(),
        [9],
        "the active segment is kept"
    );
    drop((source, acker, log));

    let log = one_record_segments(dir.path()).await;
    let (mut source, _) = log.open(0).await.unwrap();
    assert_idle(&mut source).await;
    within(log.append(vec![rec("k", "p10"), rec("k", "p11")]))
        .await
        .unwrap();
    assert_eq!(list_segments(&part_dir).unwrap(), [9, 10]);
    assert_eq!(
        read_n(&mut source, 2)
            .await
            .iter()
            .map(text)
            .collect::<Vec<_>>(),
        ["p10", "p11"]
    );
}
