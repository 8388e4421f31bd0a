//! `reeltime user …`, through the real binary, on an app's database.

use std::process::Stdio;

use reqwest::StatusCode;
use tokio::io::AsyncWriteExt;

use crate::helpers::{browser, spawn_app, test_database_url, TestApp};

/// Run `reeltime user <args>` with `stdin` as its input; (success, stdout, stderr).
async fn user(app: &TestApp, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_reeltime"))
        .arg("user")
        .args(args)
        .env("DATABASE_URL", test_database_url(app))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let output = child.wait_with_output().await.unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn sign_in(app: &TestApp, email: &str, password: &str) -> StatusCode {
    let response = browser(&app.address)
        .post(app.url("/login"))
        .form(&[("email", email), ("password", password), ("next", "/")])
        .send()
        .await
        .unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    if location == "/" {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    }
}

#[tokio::test]
async fn operators_manage_accounts_from_the_command_line() {
    let app = spawn_app().await;
    let (ok, out, err) = user(
        &app,
        &["add", "cli@example.com", "--role", "viewer"],
        "a long enough password\n",
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(out, "Added cli@example.com as viewer.\n");
    assert_eq!(
        sign_in(&app, "cli@example.com", "a long enough password").await,
        StatusCode::OK
    );

    let (ok, out, _) = user(&app, &["list"], "").await;
    assert!(ok);
    assert!(out.contains("cli@example.com  viewer\n"), "{out}");

    let (ok, _, err) = user(&app, &["add", "cli@example.com"], "another long password\n").await;
    assert!(!ok);
    assert!(err.contains("already an account"), "{err}");
    let (ok, _, err) = user(&app, &["add", "short@example.com"], "short\n").await;
    assert!(!ok && err.contains("at least 10 characters"), "{err}");

    let (ok, _, _) = user(
        &app,
        &["reset-password", "cli@example.com"],
        "a brand new password\n",
    )
    .await;
    assert!(ok);
    assert_eq!(
        sign_in(&app, "cli@example.com", "a long enough password").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        sign_in(&app, "cli@example.com", "a brand new password").await,
        StatusCode::OK
    );

    let (ok, out, _) = user(&app, &["disable", "cli@example.com"], "").await;
    assert!(ok && out.starts_with("Disabled"), "{out}");
    assert_eq!(
        sign_in(&app, "cli@example.com", "a brand new password").await,
        StatusCode::UNAUTHORIZED
    );

    let (ok, _, err) = user(&app, &["frobnicate"], "").await;
    assert!(!ok && err.contains("Usage: reeltime user add"), "{err}");
}
