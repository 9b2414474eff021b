//! Damage is not a torn write: a bad frame followed by sound frames of
//! later write groups refuses the open (naming the offsets at risk) or, when
//! the operator asks, is skipped with a marker per damaged record; a bad
//! frame inside the last, unsynced group is still a torn tail.

use super::*;
use crate::domain::codec::DAMAGED_RECORD_PROPERTY;
use std::fs;

/// A one-partition log holding `groups` write groups of `per_group`
/// records each (`g<group>-<i>`), closed like a crash.
async fn log_of_groups(dir: &std::path::Path, groups: usize, per_group: usize) {
    let log = EmbeddedLog::open(dir, 1).await.unwrap();
    for g in 0..groups {
        let records = (0..per_group)
            .map(|i| rec("k", &format!("g{g}-{i}")))
            .collect();
        within(log.append(records)).await.unwrap();
    }
    drop(log);
}

/// The byte range of every frame of a segment, in order.
fn frames(data: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 8 <= data.len() {
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        out.push(pos..pos + 8 + len);
        pos += 8 + len;
    }
    out
}

/// Flips a byte in the body of the frame at `offset` of partition 0.
fn damage(dir: &std::path::Path, offset: usize) -> std::path::PathBuf {
    let seg = segment_path(&dir.join("partition-0"), 0);
    let mut data = fs::read(&seg).unwrap();
    let frame = frames(&data)[offset].clone();
    data[frame.start + 8 + 3] ^= 0x5a;
    fs::write(&seg, data).unwrap();
    seg
}

async fn open_with(
    dir: &std::path::Path,
    skip_damaged: bool,
) -> Result<Arc<EmbeddedLog>, LogError> {
    let options = EmbeddedLogOptions {
        skip_damaged,
        ..Default::default()
    };
    EmbeddedLog::open_with(dir, 1, options).await
}

#[tokio::test]
async fn damage_followed_by_later_groups_refuses_the_open_and_names_the_offsets() {
    // Given ten confirmed groups of five records, and one damaged byte in offset 12
    let dir = tempfile::tempdir().unwrap();
    log_of_groups(dir.path(), 10, 5).await;
    let seg = damage(dir.path(), 12);
    let before = fs::read(&seg).unwrap();
    // When the log is opened
    let err = open_with(dir.path(), false)
        .await
        .err()
        .expect("opened a damaged log");
    // Then it refuses, naming the offsets at risk, and changes nothing on disk
    let msg = err.to_string();
    assert!(matches!(err, LogError::Corrupt(_)), "{msg}");
    assert!(msg.contains("offset 12"), "{msg}");
    assert!(
        msg.contains("38 confirmed records at offsets 12..=49"),
        "{msg}"
    );
    assert!(msg.contains("--log-skip-damaged"), "{msg}");
    assert_eq!(fs::read(&seg).unwrap(), before);
}

#[tokio::test]
async fn skipping_damage_keeps_every_sound_record_at_its_offset() {
    // Given the same damaged log
    let dir = tempfile::tempdir().unwrap();
    log_of_groups(dir.path(), 10, 5).await;
    damage(dir.path(), 12);
    // When the operator opens it skipping damaged records
    let log = open_with(dir.path(), true).await.unwrap();
    // Then all 50 offsets are there: 49 records as written, one marker
    assert_eq!(log.high_water_mark(0), Some(50));
    let (mut source, _) = log.open(0).await.unwrap();
    let got = read_n(&mut source, 50).await;
    assert_eq!(ids(&got), (0..50).collect::<Vec<u64>>());
    for d in &got {
        if d.id == 12 {
            assert!(d.properties.contains_key(DAMAGED_RECORD_PROPERTY), "{d:?}");
            assert!(d.payload.is_empty());
        } else {
            let (g, i) = (d.id / 5, d.id % 5);
            assert_eq!(text(d), format!("g{g}-{i}"));
        }
    }
    // And the log goes on from there, and opens cleanly again
    assert_eq!(
        within(log.append(vec![rec("k", "next")])).await.unwrap()[0].offset,
        50
    );
    within(log.close()).await.unwrap();
    drop((source, log));
    let log = open_with(dir.path(), false).await.unwrap();
    assert_eq!(log.high_water_mark(0), Some(51));
}

#[tokio::test]
async fn a_bad_frame_inside_the_last_group_is_a_torn_tail() {
    // Given a last group whose middle page did not reach the disk
    let dir = tempfile::tempdir().unwrap();
    log_of_groups(dir.path(), 10, 5).await;
    damage(dir.path(), 47);
    // When the log is opened (no skipping asked)
    let log = open_with(dir.path(), false).await.unwrap();
    // Then the last group is cut from the bad frame on, as after a crash
    assert_eq!(log.high_water_mark(0), Some(47));
    let (mut source, _) = log.open(0).await.unwrap();
    assert_eq!(
        ids(&read_n(&mut source, 47).await),
        (0..47).collect::<Vec<u64>>()
    );
}

#[tokio::test]
async fn a_marker_is_refused_as_malformed_by_the_decoder() {
    use crate::domain::codec::{decode_command, MessageMeta};
    use crate::domain::RejectReason;
    let props = HashMap::from([(DAMAGED_RECORD_PROPERTY.to_string(), "offset 12".to_string())]);
    let meta = MessageMeta {
        key: None,
        properties: Some(&props),
        identity: "embedded:0:12",
        published_at: chrono::Utc::now(),
    };
    let refused = decode_command(b"", &meta).unwrap_err();
    assert_eq!(refused.reason, RejectReason::Malformed);
    assert!(
        refused.message.contains("damaged on disk"),
        "{}",
        refused.message
    );
}
