//! The reader's choice of where to read: inline, or on the blocking pool.

use super::super::partition::{reads_tail, Durable, ReadPos, INLINE_TAIL};

#[test]
fn only_an_open_reader_near_the_mark_on_the_active_segment_reads_inline() {
    let mark = Durable {
        next_offset: 10_000,
        seg_base: 9_000,
        seg_len: 1 << 20,
        closed: false,
    };
    let at = |next_offset| ReadPos {
        next_offset,
        seg: None,
    };
    // Given a reader open on the active segment, the tail reads inline,
    assert!(reads_tail(Some(9_000), at(9_990), mark));
    assert!(reads_tail(Some(9_000), at(10_000 - INLINE_TAIL), mark));
    // but not a longer backlog,
    assert!(!reads_tail(Some(9_000), at(10_000 - INLINE_TAIL - 1), mark));
    // nor a reader on an older segment (it may open the next one),
    assert!(!reads_tail(Some(5_000), at(8_999), mark));
    // nor one that has to find its place first.
    assert!(!reads_tail(None, at(9_990), mark));
}
