//! A user id as a key of the in-memory caches ([`super::seqs`],
//! [`super::warm`]), held inline when short.
//!
//! Each event looks its user up in several caches of every user seen
//! recently (a hundred thousand and more): the slot is a cache miss, and
//! with a heap string for a key, comparing the key is a second one. A user
//! id of up to [`INLINE`] bytes (the platform's ids, and a UUID's 36
//! characters, fit) sits in the slot itself; a longer one goes to the heap
//! as before. Hashes and compares as the `str` it holds, so maps keyed by
//! it are looked up by `&str`.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

/// The longest id held inline.
pub const INLINE: usize = 38;

#[derive(Clone)]
pub enum UserKey {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

impl UserKey {
    pub fn as_str(&self) -> &str {
        match self {
            // Built only from a `&str` cut at its length (`From`), so the
            // bytes are UTF-8; the fallback is never taken.
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
                let mut bytes = [0u8; INLINE];
                bytes[..s.len()].copy_from_slice(s.as_bytes());
                UserKey::Inline { len, bytes }
            }
            _ => UserKey::Heap(Box::from(s)),
        }
    }
}

impl Borrow<str> for UserKey {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl Hash for UserKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As the `str` it holds: `Borrow<str>` requires equal hashes.
        self.as_str().hash(state)
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
    fn short_and_long_ids_are_found_by_str_and_held_where_they_fit() {
        // Given ids around the inline length, and an empty and a multibyte one
        let long = "u".repeat(INLINE + 1);
        let fits = "é".repeat(INLINE / 2);
        let ids = ["", "u-1", fits.as_str(), &long[..INLINE], long.as_str()];
        let mut map: Map<UserKey, usize> = Map::default();
        for (i, id) in ids.iter().enumerate() {
            map.insert(UserKey::from(*id), i);
        }
        // Then each is found by its `str`, a prefix of one is not, and
        // only the longest went to the heap
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(map.get(*id), Some(&i), "{id:?}");
            assert_eq!(UserKey::from(*id).as_str(), *id);
        }
        assert_eq!(map.get("u-"), None);
        assert_eq!(map.len(), ids.len());
        let heap: Vec<&str> = map
            .keys()
            .filter(|k| matches!(k, UserKey::Heap(_)))
            .map(UserKey::as_str)
            .collect();
        assert_eq!(heap, vec![long.as_str()]);
    }
}
