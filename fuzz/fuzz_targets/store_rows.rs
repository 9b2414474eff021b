//! Fuzz target: the embedded store's row decoders (daily-stats keys, user
//! stats values, rejection values). Byte 0 picks the decoder, the rest is
//! the row. No panic; what decodes encodes back to the same bytes (keys,
//! user stats) or to a value that decodes the same (rejections).
#![no_main]

use alpes_tracking::fuzzing::{
    bucket, decode_bucket, decode_rejection, decode_user_stats, encode_rejection,
    encode_user_stats, POS_REJECTION,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, row)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            if let Ok((day, ty, campaign)) = decode_bucket(row) {
                let again = bucket(day, ty, campaign.as_deref(), row[0]).expect("re-encodes");
                assert_eq!(again, row);
            }
        }
        1 => {
            if let Ok(stats) = decode_user_stats("u-1", row) {
                assert_eq!(encode_user_stats(&stats), row[..64]);
            }
        }
        _ => {
            if let Ok(r) = decode_rejection(row) {
                let v = encode_rejection(&r).expect("a decoded rejection encodes");
                assert_eq!(v[0], POS_REJECTION);
                assert_eq!(decode_rejection(&v[1..]).expect("re-decodes"), r);
            }
        }
    }
});
