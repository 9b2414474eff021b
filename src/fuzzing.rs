//! Entry points for the fuzz targets in `fuzz/` (and nothing else): the
//! internal decoders of the embedded log and store, reached without making
//! their modules public. Hidden from the docs; not a stable API.

use crate::log::embedded::segment;
use crate::log::NewRecord;
use std::collections::HashMap;

pub use crate::store::embedded::keys::{
    bucket, decode_bucket, decode_rejection, decode_user_stats, encode_rejection,
    encode_user_stats, DecodedBucket, POS_REJECTION,
};

/// Bytes of a segment frame header (`[u32 len][u32 crc]`).
pub const SEGMENT_HEADER: usize = segment::HEADER;

/// A decoded segment record body (the fields of the log's own record).
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentRecord {
    pub offset: u64,
    pub key: String,
    pub payload: Vec<u8>,
    pub properties: HashMap<String, String>,
    pub published_at_ms: i64,
}

/// Decodes a segment record body (the bytes after the frame header), as
/// reading and recovery do.
pub fn decode_segment_body(body: &[u8]) -> Result<SegmentRecord, String> {
    let r = segment::decode_body(body).map_err(|e| e.to_string())?;
    Ok(SegmentRecord {
        offset: r.offset,
        key: r.key,
        payload: r.payload,
        properties: r.properties,
        published_at_ms: r.published_at_ms,
    })
}

/// Encodes `record` as a whole frame (header and body), as the writer does.
pub fn encode_segment_frame(record: &SegmentRecord) -> Result<Vec<u8>, String> {
    let new = NewRecord {
        key: record.key.clone(),
        payload: record.payload.clone(),
        properties: record.properties.clone(),
    };
    let mut buf = Vec::new();
    segment::encode_frame(&mut buf, record.offset, &new, record.published_at_ms)
        .map_err(|e| e.to_string())?;
    Ok(buf)
}
