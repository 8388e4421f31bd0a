//! `cargo fuzz run cursors`: see `reeltime::fuzzing::cursors`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| reeltime::fuzzing::cursors(data));
