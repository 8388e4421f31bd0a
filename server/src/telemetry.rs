//! Logging: `tracing` to standard error, filtered by `RUST_LOG`.

use tracing_subscriber::{fmt, EnvFilter};

/// Install the global subscriber. Safe to call more than once (later calls do nothing), so
/// tests can call it from every `spawn_app`.
pub fn init(filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|err| {
        eprintln!("RUST_LOG: {err}; using \"info\"");
        EnvFilter::new("info")
    });
    let _ = fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}
