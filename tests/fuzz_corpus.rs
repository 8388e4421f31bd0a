//! The fuzz corpus as a regression test on stable: every input `cargo fuzz` kept (and the
//! seeds) in `fuzz/corpus/<target>/` and every crash it found in `fuzz/artifacts/<target>/`
//! goes through the target's body again.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut inputs = 0;
    for dir in [
        root.join("corpus").join(target),
        root.join("artifacts").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target} panicked on {}", path.display());
            inputs += 1;
        }
    }
    assert!(inputs > 0, "no corpus for {target} in {}", root.display());
}

#[test]
fn the_callback_parser_corpus_replays_without_a_panic() {
    replay("callback_parser", reeltime::fuzzing::callback_parser);
}

#[test]
fn the_submission_parser_corpus_replays_without_a_panic() {
    replay("submission_parser", reeltime::fuzzing::submission_parser);
}

#[test]
fn the_cursor_corpus_replays_without_a_panic() {
    replay("cursors", reeltime::fuzzing::cursors);
}
