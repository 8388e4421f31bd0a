use super::*;
use secrecy::ExposeSecret;
use std::collections::HashMap;

fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Settings::from_lookup(|name| map.get(name).cloned())
}

#[test]
fn defaults_run_out_of_the_box() {
    let s = settings(&[]).unwrap();
    assert_eq!(s.host.to_string(), "127.0.0.1");
    assert_eq!(s.port, 3000);
    assert!(s.database_url.is_none());
    assert_eq!(s.data_dir, PathBuf::from(".reeltime"));
    assert_eq!(s.public_url_or(3000), "http://127.0.0.1:3000");
    assert!(s.processor.enabled && s.processor.sample_clip);
    assert!(!s.processor.allow_private);
    assert!(s.processor.workers >= 1);
    assert_eq!(s.processor.max_input_bytes, 2048 * 1024 * 1024);
}

#[test]
fn processor_switches_read_on_and_off() {
    let s = settings(&[
        ("REELTIME_PROCESSOR", "off"),
        ("REELTIME_PROCESSOR_ALLOW_PRIVATE", "true"),
        ("REELTIME_PROCESSOR_WORKERS", "3"),
    ])
    .unwrap();
    assert!(!s.processor.enabled);
    assert!(s.processor.allow_private);
    assert_eq!(s.processor.workers, 3);
    let err = settings(&[("REELTIME_PROCESSOR", "maybe")]).err().unwrap();
    assert_eq!(err.name, "REELTIME_PROCESSOR");
    // None here: `reeltime worker` processes run the jobs.
    let s = settings(&[("REELTIME_PROCESSOR_WORKERS", "0")]).unwrap();
    assert_eq!(s.processor.workers, 0);
    let err = settings(&[("REELTIME_PROCESSOR_WORKERS", "-1")])
        .err()
        .unwrap();
    assert_eq!(err.name, "REELTIME_PROCESSOR_WORKERS");
}

#[test]
fn bad_values_name_their_variable() {
    let err = settings(&[("REELTIME_PORT", "eighty")]).err().unwrap();
    assert_eq!(err.name, "REELTIME_PORT");
    assert!(err.to_string().starts_with("REELTIME_PORT: \"eighty\""));
    let err = settings(&[("REELTIME_HOST", "localhost:3000")])
        .err()
        .unwrap();
    assert_eq!(err.name, "REELTIME_HOST");
    let err = settings(&[("REELTIME_PUBLIC_URL", "ftp://x")])
        .err()
        .unwrap();
    assert_eq!(err.name, "REELTIME_PUBLIC_URL");
    let err = settings(&[("REELTIME_DB_MAX_CONNECTIONS", "0")])
        .err()
        .unwrap();
    assert_eq!(err.name, "REELTIME_DB_MAX_CONNECTIONS");
}

#[test]
fn a_bad_database_url_is_not_echoed() {
    let err = settings(&[("DATABASE_URL", "mysql://u:hunter2@h/db")])
        .err()
        .unwrap();
    assert_eq!(err.name, "DATABASE_URL");
    assert!(!err.to_string().contains("hunter2"));
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let s = settings(&[
        ("DATABASE_URL", "postgres://u:hunter2@h/db"),
        ("ITTYBIT_API_KEY", "key-hunter3"),
        (
            "ITTYBIT_WEBHOOK_SECRET",
            "whsec-hunter4-0123456789abcdef0123456789",
        ),
    ])
    .unwrap();
    let debug = format!("{s:?}");
    assert!(
        !debug.contains("hunter3") && !debug.contains("hunter4"),
        "{debug}"
    );
    assert_eq!(
        s.database_url.as_ref().unwrap().expose_secret(),
        "postgres://u:hunter2@h/db"
    );
    assert!(!format!("{s:?}").contains("hunter2"));
}

#[test]
fn help_lists_every_variable_with_its_default() {
    let help = help_text();
    for v in VARIABLES {
        assert!(
            help.contains(v.name) && help.contains(v.default),
            "{}",
            v.name
        );
    }
}

#[test]
fn a_short_webhook_secret_is_refused() {
    let err = settings(&[("ITTYBIT_WEBHOOK_SECRET", "whsec_short")])
        .err()
        .unwrap();
    assert_eq!(err.name, "ITTYBIT_WEBHOOK_SECRET");
    assert!(err.to_string().contains("at least 32"), "{err}");
    assert!(
        !err.to_string().contains("whsec_short"),
        "the secret is not echoed"
    );
}

#[test]
fn every_interface_needs_a_public_url_and_ipv6_gets_brackets() {
    let err = settings(&[("REELTIME_HOST", "0.0.0.0")]).err().unwrap();
    assert_eq!(err.name, "REELTIME_PUBLIC_URL");
    assert!(settings(&[
        ("REELTIME_HOST", "0.0.0.0"),
        ("REELTIME_PUBLIC_URL", "https://reeltime.example.com/")
    ])
    .is_ok());
    let s = settings(&[("REELTIME_HOST", "::1")]).unwrap();
    assert_eq!(s.public_url_or(3000), "http://[::1]:3000");
}
