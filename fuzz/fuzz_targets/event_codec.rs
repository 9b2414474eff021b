//! Fuzz target: `InteractionTracked::decode` on arbitrary bytes never
//! panics, and whatever it accepts survives encode → decode unchanged.
#![no_main]

use alpes_tracking::domain::InteractionTracked;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ev) = InteractionTracked::decode(data) {
        let bytes = ev.encode().expect("a decoded event encodes");
        let back = InteractionTracked::decode(&bytes).expect("a re-encoded event decodes");
        assert_eq!(back, ev);
    }
});
