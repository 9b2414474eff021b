//! Upgrades of the embedded store's on-disk format, at open, in order
//! (1 to 2, then 2 to 3). Each is resumable: a crash midway loses
//! nothing, and the next open goes on from what the last one recorded.

mod v2;
mod v3;

pub(super) use v2::v1_to_v2;
pub(super) use v3::v2_to_v3;
