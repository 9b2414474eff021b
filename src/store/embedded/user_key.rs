//! A user id as the key of the store's in-memory maps of users (the seq
//! cache, the warm rows and memberships), held inline when short.
//!
//! A lookup in a map keyed by `Box<str>` follows the key's pointer to
//! compare it: with a few hundred thousand users in random order that is
//! a cache miss per lookup, several lookups per event. Ids of up to
//! [`INLINE`] bytes (most of them) are kept in the map's slot itself; a
//! longer one goes to the heap as before.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

/// The longest id held inline: the key is then 24 bytes, as a `String`.
const INLINE: usize = 22;

#[derive(Clone)]
pub enum UserKey {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

impl UserKey {
    pub fn as_str(&self) -> &str {
        match self {
            // Copied from a `&str` whole (`From`), so always UTF-8: the
            // check is a formality over a few ASCII bytes.
            UserKey::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            UserKey::Heap(s) => s,
        }
    }
}

impl From<&str> for UserKey {
    fn from(s: &str) -> Self {
        match u8::try_from(s.len()) {
            Ok(len) if s.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..s.len()].copy_from_slice(s.as_bytes());
                UserKey::Inline { len, bytes }
            }
            _ => UserKey::Heap(s.into()),
        }
    }
}

/// Hashes and compares as the `str` it holds, so a map keyed by it is
/// looked up by `&str` (the `Borrow` contract).
impl Borrow<str> for UserKey {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl Hash for UserKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialEq for UserKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for UserKey {}

impl std::fmt::Debug for UserKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Map;

    #[test]
    fn short_and_long_ids_are_found_by_str_and_kept_whole() {
        // Given ids below, at and above the inline length, and multi-byte ones
        let ids = [
            "",
            "u-1",
            "user-0123456789abcdef0",
            "user-0123456789abcdef01",
            "a much longer user id that goes to the heap",
            "ユーザー七",
        ];
        let mut m: Map<UserKey, usize> = Map::default();
        for (i, id) in ids.iter().enumerate() {
            m.insert(UserKey::from(*id), i);
        }
        // Then each is found by its `&str`, and holds it unchanged
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(m.get(*id), Some(&i), "{id}");
            assert_eq!(UserKey::from(*id).as_str(), *id);
        }
        assert!(matches!(UserKey::from(ids[2]), UserKey::Inline { .. }));
        assert!(matches!(UserKey::from(ids[3]), UserKey::Heap(_)));
        assert_eq!(m.get("u-2"), None);
        assert_eq!(std::mem::size_of::<UserKey>(), 24);
    }
}
