//! `cargo fuzz run submission_parser`: see `reeltime::fuzzing::submission_parser`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| reeltime::fuzzing::submission_parser(data));
