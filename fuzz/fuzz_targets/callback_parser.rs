//! `cargo fuzz run callback_parser`: see `reeltime::fuzzing::callback_parser`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| reeltime::fuzzing::callback_parser(data));
