//! Entry points for the fuzz targets in `fuzz/` (and nothing else): the
//! internal decoders of the embedded log and store, reached without making
//! their modules public. Hidden from the docs; not a stable API.

use crate::log::embedded::segment;
use crate::log::NewRecord;

pub use crate::store::embedded::keys::{
    bucket, decode_bucket, decode_rejection, decode_user_stats, encode_rejection,
    encode_user_stats, DecodedBucket, POS_REJECTION,
};

/// Bytes of a segment frame header (`[u32 len][u32 crc]`).
pub const SEGMENT_HEADER: usize = segment::HEADER;

/// A decoded segment record body (the log's own type).
pub use segment::Record as SegmentRecord;

pub fn decode_segment_body(body: &[u8]) -> Result<SegmentRecord, String> {
    segment::decode_body(body).map_err(|e| e.to_string())
}

/// Encodes `record` as a whole frame (header and body), as the writer does.
pub fn encode_segment_frame(record: &SegmentRecord) -> Result<Vec<u8>, String> {
    let new = NewRecord {
        key: record.key.clone(),
        payload: record.payload.clone(),
        properties: record.properties.clone(),
    };
    let mut buf = Vec::new();
    segment::encode_frame(
        &mut buf,
        record.offset,
        record.group.unwrap_or(record.offset),
        &new,
        record.published_at_ms,
    )
    .map_err(|e| e.to_string())?;
    Ok(buf)
}
