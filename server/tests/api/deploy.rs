//! The deployment files: the example environment file is a valid configuration, and the
//! binary started with a broken one exits non-zero with a line naming the problem (what
//! `systemctl status` shows).

use server::config::Settings;

/// docs/deploy/reeltime.env as variables (comments and blank lines skipped).
fn example_env() -> Vec<(String, String)> {
    include_str!("../../../docs/deploy/reeltime.env")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, value) = l.split_once('=').expect("NAME=value");
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

#[test]
fn the_example_environment_file_is_a_valid_configuration() {
    let env = example_env();
    let settings =
        Settings::from_lookup(|name| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()))
            .expect("docs/deploy/reeltime.env is valid");
    assert_eq!(
        settings.public_url.as_deref(),
        Some("https://reeltime.example.com")
    );
    assert!(!settings.trusted_proxies.is_empty());
}

/// Run the binary with the example file, changed by `set`; its exit code and standard error.
fn run_with(set: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_reeltime"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (name, value) in example_env() {
        command.env(name, value);
    }
    let data =
        std::env::temp_dir().join(format!("reeltime-deploy-{}", uuid::Uuid::new_v4().simple()));
    command
        .env("REELTIME_DATA_DIR", &data)
        .env("REELTIME_PORT", "0");
    for (name, value) in set {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    let _ = std::fs::remove_dir_all(&data);
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_misconfigured_service_exits_non_zero_saying_why() {
    let (code, stderr) = run_with(&[("REELTIME_TRUSTED_PROXIES", "nginx")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("REELTIME_TRUSTED_PROXIES") && stderr.contains("\"nginx\""),
        "{stderr}"
    );

    let (code, stderr) = run_with(&[("REELTIME_HOST", "0.0.0.0"), ("REELTIME_PUBLIC_URL", "")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("REELTIME_PUBLIC_URL"), "{stderr}");

    let (code, stderr) = run_with(&[("REELTIME_METRICS_TOKEN", "short")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("REELTIME_METRICS_TOKEN"), "{stderr}");

    // Nothing listens on port 1: the database is out of reach.
    let (code, stderr) = run_with(&[("DATABASE_URL", "postgres://reeltime@127.0.0.1:1/reeltime")]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("could not connect to the database"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("change-me"),
        "the password was echoed: {stderr}"
    );
}
