//! Key and value encodings of the embedded store (layout: see the parent
//! module docs). Integers are big-endian so byte order is numeric order;
//! strings inside composite keys carry a `u16` big-endian length prefix so a
//! component never runs into the next one (a string that ends a key is
//! stored raw).

use crate::domain::{InteractionType, Rejection};
use crate::store::{StoreError, UserStats};
use chrono::{DateTime, Datelike, NaiveDate};

/// Tag of the checkpoint row in a projection keyspace.
pub const CHECKPOINT: &[u8] = &[0x00];
/// Tag of the aggregate rows in a projection keyspace.
pub const ROW: u8 = 0x01;
/// Tag of the unique-user membership rows in the daily-stats keyspace.
pub const MEMBER: u8 = 0x02;
/// Tags of the journal's records (and, in format 2, of the position
/// index values that held them).
pub const POS_EVENT: u8 = 0x01;
pub const POS_REJECTION: u8 = 0x02;
/// An event in the compact encoding (the one written; `POS_EVENT`, named
/// fields, is read from older journals).
pub const POS_EVENT_COMPACT: u8 = 0x03;

pub fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("malformed {what}"))
}

/// Appends a length-prefixed string.
pub fn put_str(buf: &mut Vec<u8>, s: &str) -> Result<(), StoreError> {
    let len = u16::try_from(s.len())
        .map_err(|_| StoreError::Corrupt(format!("key component of {} bytes", s.len())))?;
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Reads a length-prefixed string, returning it and the rest.
pub fn take_str<'a>(buf: &'a [u8], what: &str) -> Result<(&'a str, &'a [u8]), StoreError> {
    let (len, rest) = buf.split_first_chunk::<2>().ok_or_else(|| corrupt(what))?;
    let len = usize::from(u16::from_be_bytes(*len));
    if rest.len() < len {
        return Err(corrupt(what));
    }
    let (s, rest) = rest.split_at(len);
    let s = std::str::from_utf8(s).map_err(|_| corrupt(what))?;
    Ok((s, rest))
}

pub fn u64_at(buf: &[u8], at: usize, what: &str) -> Result<u64, StoreError> {
    buf.get(at..at + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| corrupt(what))
}

/// A day as 4 bytes that sort like the dates.
pub fn day(d: NaiveDate) -> [u8; 4] {
    ((d.num_days_from_ce() as u32) ^ 0x8000_0000).to_be_bytes()
}

pub fn take_day<'a>(buf: &'a [u8], what: &str) -> Result<(NaiveDate, &'a [u8]), StoreError> {
    let (d, rest) = buf.split_first_chunk::<4>().ok_or_else(|| corrupt(what))?;
    let days = (u32::from_be_bytes(*d) ^ 0x8000_0000) as i32;
    let d = NaiveDate::from_num_days_from_ce_opt(days).ok_or_else(|| corrupt(what))?;
    Ok((d, rest))
}

pub fn type_byte(t: InteractionType) -> u8 {
    match t {
        InteractionType::Click => 0,
        InteractionType::View => 1,
        InteractionType::Like => 2,
    }
}

fn type_of(b: u8) -> Option<InteractionType> {
    InteractionType::ALL
        .into_iter()
        .find(|t| type_byte(*t) == b)
}

/// Journal key: `len user | user | seq`.
pub fn journal_key(user: &str, seq: u64) -> Result<Vec<u8>, StoreError> {
    let mut k = Vec::with_capacity(user.len() + 10);
    journal_key_into(&mut k, user, seq)?;
    Ok(k)
}

/// [`journal_key`], appended to `buf`.
pub fn journal_key_into(buf: &mut Vec<u8>, user: &str, seq: u64) -> Result<(), StoreError> {
    put_str(buf, user)?;
    buf.extend_from_slice(&seq.to_be_bytes());
    Ok(())
}

/// By-target key: `len target | target | day | pos`.
pub fn target_key(target: &str, d: NaiveDate, pos: u64) -> Result<Vec<u8>, StoreError> {
    let mut k = Vec::with_capacity(target.len() + 14);
    target_key_into(&mut k, target, d, pos)?;
    Ok(k)
}

/// [`target_key`], appended to `buf`.
pub fn target_key_into(
    buf: &mut Vec<u8>,
    target: &str,
    d: NaiveDate,
    pos: u64,
) -> Result<(), StoreError> {
    put_str(buf, target)?;
    buf.extend_from_slice(&day(d));
    buf.extend_from_slice(&pos.to_be_bytes());
    Ok(())
}

/// The position at the end of a by-target key.
pub fn target_key_pos(key: &[u8]) -> Result<u64, StoreError> {
    let at = key
        .len()
        .checked_sub(8)
        .ok_or_else(|| corrupt("by-target key"))?;
    u64_at(key, at, "by-target key")
}

/// Daily bucket: `day | type | 0x00` (no campaign) or `day | type | 0x01 len campaign`.
pub fn bucket(
    d: NaiveDate,
    t: InteractionType,
    campaign: Option<&str>,
    tag: u8,
) -> Result<Vec<u8>, StoreError> {
    let mut k = Vec::with_capacity(10 + campaign.map_or(0, str::len));
    k.push(tag);
    k.extend_from_slice(&day(d));
    k.push(type_byte(t));
    match campaign {
        None => k.push(0),
        Some(c) => {
            k.push(1);
            put_str(&mut k, c)?;
        }
    }
    Ok(k)
}

pub type DecodedBucket = (NaiveDate, InteractionType, Option<String>);

/// Decodes a daily row key (with its tag).
pub fn decode_bucket(key: &[u8]) -> Result<DecodedBucket, StoreError> {
    const W: &str = "daily-stats key";
    let rest = key.get(1..).ok_or_else(|| corrupt(W))?;
    let (d, rest) = take_day(rest, W)?;
    let (&t, rest) = rest.split_first().ok_or_else(|| corrupt(W))?;
    let t = type_of(t).ok_or_else(|| corrupt(W))?;
    let campaign = match rest.split_first() {
        Some((0, [])) => None,
        // The campaign ends the key: bytes after it mean a malformed key.
        Some((1, rest)) => match take_str(rest, W)? {
            (c, []) => Some(c.to_owned()),
            _ => return Err(corrupt(W)),
        },
        _ => return Err(corrupt(W)),
    };
    Ok((d, t, campaign))
}

/// A projection row key: `tag | day`.
pub fn day_row(d: NaiveDate) -> [u8; 5] {
    let [a, b, c, e] = day(d);
    [ROW, a, b, c, e]
}

/// Two counters (daily: count, unique users; status: accepted, rejected).
pub fn pair(a: u64, b: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&a.to_be_bytes());
    v[8..].copy_from_slice(&b.to_be_bytes());
    v
}

pub fn take_pair(v: &[u8], what: &str) -> Result<(u64, u64), StoreError> {
    Ok((u64_at(v, 0, what)?, u64_at(v, 8, what)?))
}

/// The length of a user stats value.
pub const USER_ROW_LEN: usize = 64;

/// A user stats value, held inline (no heap slice) where it is cached.
pub type UserRow = [u8; USER_ROW_LEN];

/// User stats value: 5 counters, then first and last instants (secs, nanos).
pub fn encode_user_stats(s: &UserStats) -> UserRow {
    let mut v = [0u8; USER_ROW_LEN];
    let counters = [s.total, s.clicks, s.views, s.likes, s.last_seq];
    for (at, n) in (0..).step_by(8).zip(counters) {
        v[at..at + 8].copy_from_slice(&n.to_be_bytes());
    }
    for (at, t) in [(40, s.first_occurred_at), (52, s.last_occurred_at)] {
        v[at..at + 8].copy_from_slice(&t.timestamp().to_be_bytes());
        v[at + 8..at + 12].copy_from_slice(&t.timestamp_subsec_nanos().to_be_bytes());
    }
    v
}

pub fn decode_user_stats(user_id: &str, v: &[u8]) -> Result<UserStats, StoreError> {
    const W: &str = "user stats";
    let n = |i: usize| u64_at(v, i * 8, W);
    let t = |at: usize| {
        let secs = u64_at(v, at, W)? as i64;
        let nanos = v
            .get(at + 8..at + 12)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .ok_or_else(|| corrupt(W))?;
        DateTime::from_timestamp(secs, nanos).ok_or_else(|| corrupt(W))
    };
    Ok(UserStats {
        user_id: user_id.to_owned(),
        total: n(0)?,
        clicks: n(1)?,
        views: n(2)?,
        likes: n(3)?,
        last_seq: n(4)?,
        first_occurred_at: t(40)?,
        last_occurred_at: t(52)?,
    })
}

/// A rejection as a tagged record: `POS_REJECTION`, then its encoding.
pub fn encode_rejection(r: &Rejection) -> Result<Vec<u8>, StoreError> {
    let mut v = vec![POS_REJECTION];
    encode_rejection_into(&mut v, r)?;
    Ok(v)
}

/// Appends a rejection's encoding (rmp-serde, named) to `buf`.
pub fn encode_rejection_into(buf: &mut Vec<u8>, r: &Rejection) -> Result<(), StoreError> {
    rmp_serde::encode::write_named(buf, r)
        .map_err(|e| StoreError::Codec(crate::domain::event::EventCodecError::Encode(e)))
}

pub fn decode_rejection(v: &[u8]) -> Result<Rejection, StoreError> {
    rmp_serde::from_slice(v)
        .map_err(|e| StoreError::Codec(crate::domain::event::EventCodecError::Decode(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_sort_like_dates() {
        let a = NaiveDate::from_ymd_opt(-5, 1, 1).unwrap();
        let b = NaiveDate::from_ymd_opt(1999, 12, 31).unwrap();
        let c = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap();
        assert!(day(a) < day(b) && day(b) < day(c));
        assert_eq!(take_day(&day(a), "t").unwrap().0, a);
    }

    #[test]
    fn buckets_round_trip_and_keys_do_not_collide() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
        for c in [None, Some(""), Some("c\u{0}x")] {
            let k = bucket(d, InteractionType::Like, c, ROW).unwrap();
            assert_eq!(
                decode_bucket(&k).unwrap(),
                (d, InteractionType::Like, c.map(Into::into))
            );
        }
        let prefix_a = &journal_key("a", 1).unwrap()[..3];
        assert!(!journal_key("ab", 1).unwrap().starts_with(prefix_a));
        assert!(put_str(&mut Vec::new(), &"x".repeat(70_000)).is_err());
        assert_eq!(
            target_key_pos(&target_key("t", d, 42).unwrap()).unwrap(),
            42
        );
    }

    /// Found by the `store_rows` fuzz target: a row key with bytes after
    /// its campaign decoded as if they were not there (the no-campaign
    /// branch already refused trailing bytes).
    #[test]
    fn bucket_with_trailing_bytes_is_malformed() {
        let key = [1, 128, 11, 74, 109, 0, 1, 0, 3, 99, 45, 49, 126];
        assert!(decode_bucket(&key).is_err());
        assert!(decode_bucket(&key[..12]).is_ok());
        assert!(decode_bucket(&[1, 128, 11, 74, 109, 0, 0, 7]).is_err());
    }
}
