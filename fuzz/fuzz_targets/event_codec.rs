//! Fuzz target: `InteractionTracked::decode` and `decode_compact` on
//! arbitrary bytes never panic, and whatever either accepts survives its
//! own encode → decode unchanged.
#![no_main]

use alpes_tracking::domain::InteractionTracked;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ev) = InteractionTracked::decode(data) {
        let bytes = ev.encode().expect("a decoded event encodes");
        let back = InteractionTracked::decode(&bytes).expect("a re-encoded event decodes");
        assert_eq!(back, ev);
    }
    if let Ok(ev) = InteractionTracked::decode_compact(data) {
        let mut bytes = Vec::new();
        ev.encode_compact_into(&mut bytes)
            .expect("a decoded event encodes");
        let back =
            InteractionTracked::decode_compact(&bytes).expect("a re-encoded event decodes");
        assert_eq!(back, ev);
    }
});
