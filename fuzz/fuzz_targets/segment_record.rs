//! Fuzz target: the embedded log's segment record body decoder (what
//! reading and tail recovery run on bytes from disk). No panic, no
//! unbounded allocation; an accepted body re-frames into a frame whose
//! header is right and whose body decodes to the same record.
#![no_main]

use alpes_tracking::fuzzing::{decode_segment_body, encode_segment_frame, SEGMENT_HEADER};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(record) = decode_segment_body(data) else {
        return;
    };
    let frame = encode_segment_frame(&record).expect("a decoded record encodes");
    let (header, body) = frame.split_at(SEGMENT_HEADER);
    let len = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().unwrap());
    assert_eq!(len, body.len());
    assert_eq!(crc, crc32fast_hash(body));
    assert_eq!(decode_segment_body(body).expect("re-decodes"), record);
});

/// CRC-32 (IEEE), bitwise: the fuzz crate does not depend on crc32fast.
fn crc32fast_hash(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & 0u32.wrapping_sub(crc & 1));
        }
    }
    !crc
}
