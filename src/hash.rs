//! Hash maps for the hot paths: keys (delivery ids, user ids, index keys)
//! looked up several times per event, where SipHash's cost shows in a
//! profile. foldhash, seeded per map (`fast::RandomState`), keeps the
//! maps' iteration order unpredictable from outside as SipHash does.

use std::collections::{HashMap, HashSet};

pub type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
pub type Set<K> = HashSet<K, foldhash::fast::RandomState>;
