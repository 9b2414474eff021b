//! Hash maps for the hot paths: keys (delivery ids, user ids, index keys)
//! looked up several times per event, where SipHash's cost shows in a
//! profile. foldhash, seeded per map (`fast::RandomState`), keeps the
//! maps' iteration order unpredictable from outside as SipHash does.
//!
//! [`InlineStr`] is the key of the big maps of users (their last seqs, the
//! projections' warm rows, a consumer's queues and live aggregates): a
//! user id held in the map's own slot, not behind a pointer, so that
//! comparing a probed slot's key costs no second cache miss.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

pub type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
pub type Set<K> = HashSet<K, foldhash::fast::RandomState>;

/// The longest string an [`InlineStr`] holds in place (24 bytes in all,
/// a `String`'s size: numeric ids and short names fit, a UUID is boxed).
/// Every slot of a map pays for the key's size, empty ones too, so a
/// longer inline key would grow the maps' memory more than the strings
/// it saves.
const INLINE: usize = 22;

/// A string key held in place when it is short, else boxed. Hashes and
/// compares as the `str` it holds, so a map keyed by it is looked up
/// with a `&str`.
///
/// A map of a hundred thousand users is far bigger than the CPU's caches:
/// with `Box<str>` keys a lookup misses the cache on the slot and again on
/// the string it points to (in a profile of the embedded pipeline with
/// 100,000 users, those comparisons were over a microsecond per event).
#[derive(Clone)]
pub struct InlineStr(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Boxed(Box<str>),
}

impl InlineStr {
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // The bytes are a copy of a `str` cut at its length
            // (`From<&str>`): always UTF-8, the fallback is never taken.
            Repr::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Repr::Boxed(s) => s,
        }
    }
}

impl From<&str> for InlineStr {
    fn from(s: &str) -> Self {
        match u8::try_from(s.len()) {
            Ok(len) if s.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..s.len()].copy_from_slice(s.as_bytes());
                Self(Repr::Inline { len, bytes })
            }
            _ => Self(Repr::Boxed(s.into())),
        }
    }
}

impl Borrow<str> for InlineStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl Hash for InlineStr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl PartialEq for InlineStr {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for InlineStr {}

impl std::fmt::Debug for InlineStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_strings_are_found_by_str() {
        // Given keys on both sides of the inline length, multi-byte
        // characters across it included
        let keys = [
            String::new(),
            "lg-u12345".to_string(),
            "x".repeat(INLINE),
            "x".repeat(INLINE + 1),
            format!("{}é", "x".repeat(INLINE - 1)), // 23 bytes: boxed
            "6f1c2a4e-8b7d-4e41-8d2a-5f3c71e0a9b4".to_string(), // boxed
        ];
        let mut map: Map<InlineStr, usize> = Map::default();
        for (i, k) in keys.iter().enumerate() {
            map.insert(InlineStr::from(k.as_str()), i);
        }
        // Then each is found by its `&str`, holds it whole, and no other
        // string finds anything
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(map.get(k.as_str()), Some(&i), "{k:?}");
            assert_eq!(InlineStr::from(k.as_str()).as_str(), k);
        }
        assert_eq!(map.len(), keys.len());
        assert_eq!(map.get("lg-u1234"), None);
        assert_eq!(map.get("x".repeat(INLINE + 2).as_str()), None);
    }

    #[test]
    fn a_short_key_is_held_in_place() {
        assert_eq!(std::mem::size_of::<InlineStr>(), INLINE + 2);
        assert!(matches!(InlineStr::from("lg-u1").0, Repr::Inline { .. }));
        assert!(matches!(
            InlineStr::from("x".repeat(INLINE + 1).as_str()).0,
            Repr::Boxed(_)
        ));
    }
}
