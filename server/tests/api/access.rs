//! Who may reach what: every route of the access table against every kind of caller, and the
//! doors around it (brute force, the setup link, cross-site posts, foreign hosts, headers).

use reeltime::{Role, TokenScope};
use reqwest::{Client, Method, StatusCode};
use serde_json::json;
use server::auth::rules::RULES;

use crate::helpers::{browser, spawn_app_with, TestApp, ADMIN, PASSWORD};

const VIEWER: &str = "viewer@example.com";
const OPERATOR: &str = "operator@example.com";

/// The callers, in the order of each row's letters.
#[derive(Clone, Copy, Debug)]
enum Caller {
    Anonymous,
    Viewer,
    Operator,
    Admin,
    /// The operator's tokens.
    ReadToken,
    WriteToken,
    RevokedToken,
    ExpiredSession,
}

const CALLERS: [Caller; 8] = [
    Caller::Anonymous,
    Caller::Viewer,
    Caller::Operator,
    Caller::Admin,
    Caller::ReadToken,
    Caller::WriteToken,
    Caller::RevokedToken,
    Caller::ExpiredSession,
];

/// Every rule of the access table (its pattern), a request that reaches it, and what each
/// caller gets: `A` let through (whatever the handler then answers), `L` sent to sign in,
/// `U` 401, `F` 403.
const TABLE: &[(&str, &str, &str, &str)] = &[
    //  method  pattern                          request path                          anon viewer operator admin read write revoked expired
    ("GET", "/", "/", "L A A A L L L L"),
    (
        "POST",
        "/api/fn/list_jobs",
        "/api/fn/list_jobs",
        "U A A A A A U U",
    ),
    (
        "POST",
        "/api/fn/job_detail",
        "/api/fn/job_detail",
        "U A A A A A U U",
    ),
    (
        "POST",
        "/api/fn/submit_job",
        "/api/fn/submit_job",
        "U F A A F A U U",
    ),
    (
        "POST",
        "/api/fn/whoami",
        "/api/fn/whoami",
        "A A A A A A A A",
    ),
    (
        "POST",
        "/api/fn/list_tokens",
        "/api/fn/list_tokens",
        "U A A A A A U U",
    ),
    (
        "POST",
        "/api/fn/list_users",
        "/api/fn/list_users",
        "U F F A F F U U",
    ),
    ("GET", "/stats", "/stats", "L A A A L L L L"),
    ("POST", "/api/fn/stats", "/api/fn/stats", "U A A A A A U U"),
    ("GET", "/login", "/login", "A A A A A A A A"),
    ("POST", "/login", "/login", "A A A A A A A A"),
    ("POST", "/logout", "/logout", "L A A A L L L L"),
    ("GET", "/setup", "/setup", "A A A A A A A A"),
    ("POST", "/setup", "/setup", "A A A A A A A A"),
    ("GET", "/account", "/account", "L A A A L L L L"),
    (
        "POST",
        "/account/password",
        "/account/password",
        "L A A A L L L L",
    ),
    (
        "POST",
        "/account/tokens",
        "/account/tokens",
        "L A A A L L L L",
    ),
    (
        "POST",
        "/account/tokens/{id}/revoke",
        "/account/tokens/00000000-0000-0000-0000-000000000000/revoke",
        "L A A A L L L L",
    ),
    ("GET", "/admin/users", "/admin/users", "L F F A L L L L"),
    ("POST", "/admin/users", "/admin/users", "L F F A L L L L"),
    (
        "POST",
        "/admin/users/{id}",
        "/admin/users/00000000-0000-0000-0000-000000000000",
        "L F F A L L L L",
    ),
    ("GET", "/api/jobs", "/api/jobs", "U A A A A A U U"),
    ("GET", "/metrics", "/metrics", "U F F A F F U U"),
    ("POST", "/api/uploads", "/api/uploads", "U F A A F A U U"),
    (
        "GET",
        "/api/uploads/{id}",
        "/api/uploads/00000000-0000-0000-0000-000000000000",
        "U F A A F A U U",
    ),
    (
        "PUT",
        "/api/uploads/{id}/parts/{n}",
        "/api/uploads/00000000-0000-0000-0000-000000000000/parts/0",
        "U F A A F A U U",
    ),
    (
        "POST",
        "/api/uploads/{id}/complete",
        "/api/uploads/00000000-0000-0000-0000-000000000000/complete",
        "U F A A F A U U",
    ),
    (
        "GET",
        "/uploads/{id}/{name}",
        "/uploads/00000000-0000-0000-0000-000000000000/a.mp4",
        "U A A A A A U U",
    ),
    ("POST", "/api/jobs", "/api/jobs", "U F A A F A U U"),
    (
        "GET",
        "/api/jobs/{id}",
        "/api/jobs/00000000-0000-0000-0000-000000000000",
        "U A A A A A U U",
    ),
    (
        "DELETE",
        "/api/jobs/{id}",
        "/api/jobs/00000000-0000-0000-0000-000000000000",
        "U F A A F A U U",
    ),
    (
        "POST",
        "/api/jobs/{id}/cancel",
        "/api/jobs/00000000-0000-0000-0000-000000000000/cancel",
        "U F A A F A U U",
    ),
    (
        "POST",
        "/api/jobs/{id}/retry",
        "/api/jobs/00000000-0000-0000-0000-000000000000/retry",
        "U F A A F A U U",
    ),
    (
        "POST",
        "/api/jobs/bulk",
        "/api/jobs/bulk",
        "U F A A F A U U",
    ),
    (
        "GET",
        "/api/jobs/counts",
        "/api/jobs/counts",
        "U A A A A A U U",
    ),
    ("POST", "/jobs/bulk", "/jobs/bulk", "L F A A L L L L"),
    (
        "POST",
        "/jobs/{id}/{action}",
        "/jobs/00000000-0000-0000-0000-000000000000/cancel",
        "L F A A L L L L",
    ),
    (
        "GET",
        "/api/jobs/{id}/output-link",
        "/api/jobs/00000000-0000-0000-0000-000000000000/output-link",
        "U A A A A A U U",
    ),
    ("GET", "/api/events", "/api/events", "U A A A A A U U"),
    (
        "POST",
        "/api/ittybit/callback",
        "/api/ittybit/callback",
        "U U U U U U U U",
    ),
    (
        "*",
        "/ittybit-local/jobs",
        "/ittybit-local/jobs",
        "U U U U U U U U",
    ),
    (
        "*",
        "/ittybit-local/jobs/{id}",
        "/ittybit-local/jobs/job_x",
        "U U U U U U U U",
    ),
    (
        "*",
        "/ittybit-local/jobs/{id}/cancel",
        "/ittybit-local/jobs/job_x/cancel",
        "U U U U U U U U",
    ),
    (
        "GET",
        "/ittybit-local/files/{name}",
        "/ittybit-local/files/job_x.mp4",
        "U A A A A A U U",
    ),
    (
        "GET",
        "/samples/{*path}",
        "/samples/sample-1080p.mp4",
        "U A A A A A U U",
    ),
    ("GET", "/healthz", "/healthz", "A A A A A A A A"),
    ("GET", "/readyz", "/readyz", "A A A A A A A A"),
    (
        "GET",
        "/api/openapi.json",
        "/api/openapi.json",
        "A A A A A A A A",
    ),
    (
        "GET",
        "/pkg/{*path}",
        "/pkg/reeltime.css",
        "A A A A A A A A",
    ),
    ("GET", "/favicon.svg", "/favicon.svg", "A A A A A A A A"),
    ("GET", "/{*rest}", "/no/such/page", "L A A A L L L L"),
];

/// A caller, ready to send: a client and, for tokens, the `Authorization` value.
struct Ready {
    client: Client,
    bearer: Option<String>,
}

async fn caller(app: &TestApp, who: Caller, tokens: &Tokens) -> Ready {
    let signed_in = |email: &'static str| async move { app.signed_in(email).await.0 };
    let (client, bearer) = match who {
        Caller::Anonymous => (browser(&app.address), None),
        Caller::Viewer => (signed_in(VIEWER).await, None),
        Caller::Operator => (signed_in(OPERATOR).await, None),
        Caller::Admin => (signed_in(ADMIN).await, None),
        Caller::ReadToken => (browser(&app.address), Some(tokens.read.clone())),
        Caller::WriteToken => (browser(&app.address), Some(tokens.write.clone())),
        Caller::RevokedToken => (browser(&app.address), Some(tokens.revoked.clone())),
        Caller::ExpiredSession => {
            let client = signed_in(VIEWER).await;
            sqlx::query!("update sessions set expiry_date = now() - interval '1 minute'")
                .execute(&app.pool)
                .await
                .unwrap();
            (client, None)
        }
    };
    Ready { client, bearer }
}

struct Tokens {
    read: String,
    write: String,
    revoked: String,
}

fn outcome(status: StatusCode, location: Option<&str>) -> char {
    match status {
        StatusCode::UNAUTHORIZED => 'U',
        StatusCode::FORBIDDEN => 'F',
        StatusCode::SEE_OTHER if location.is_some_and(|l| l.starts_with("/login?next=")) => 'L',
        StatusCode::MISDIRECTED_REQUEST => '?',
        _ => 'A',
    }
}

#[tokio::test]
async fn every_route_answers_every_caller_as_the_table_says() {
    // Every rule has a row, and every row a rule: a route added without both fails here.
    for &(method, pattern, _) in RULES {
        assert!(
            TABLE.iter().any(|row| row.0 == method && row.1 == pattern),
            "no access test row for {method} {pattern}"
        );
    }
    assert_eq!(TABLE.len(), RULES.len(), "a test row without a rule");

    let app = spawn_app_with(&[
        ("REELTIME_PROCESSOR", "on"),
        ("REELTIME_SIGN_INS_PER_MINUTE", "10000"),
    ])
    .await;
    app.create_user(VIEWER, Role::Viewer).await;
    app.create_user(OPERATOR, Role::Operator).await;
    let tokens = Tokens {
        read: app.token(OPERATOR, TokenScope::Read).await,
        write: app.token(OPERATOR, TokenScope::Write).await,
        revoked: app.token(OPERATOR, TokenScope::Write).await,
    };
    sqlx::query!(
        "update api_tokens set revoked_at = now() where token_hash = $1",
        server::auth::secrets::sha256(&tokens.revoked)
    )
    .execute(&app.pool)
    .await
    .unwrap();

    let mut wrong = Vec::new();
    for &(method, pattern, path, expected) in TABLE {
        let expected: Vec<char> = expected
            .split(' ')
            .map(|s| s.chars().next().unwrap())
            .collect();
        let method = if method == "*" { "GET" } else { method };
        for (i, who) in CALLERS.into_iter().enumerate() {
            let ready = caller(&app, who, &tokens).await;
            let mut request = ready.client.request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                app.url(path),
            );
            if let Some(token) = &ready.bearer {
                request = request.bearer_auth(token);
            }
            if method == "POST" {
                request = match pattern {
                    "/login" => {
                        request.form(&[("email", VIEWER), ("password", PASSWORD), ("next", "/")])
                    }
                    "/api/jobs" => {
                        request.json(&json!({ "input_url": "https://example.com/a.mp4" }))
                    }
                    _ => request.form(&[("input_url", "https://example.com/a.mp4")]),
                };
            }
            // Only the head: an event stream never ends.
            let response = request.send().await.unwrap();
            let location = response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let got = outcome(response.status(), location.as_deref());
            if got != expected[i] {
                wrong.push(format!(
                    "{method} {path} as {who:?}: expected {}, got {got} ({} {location:?})",
                    expected[i],
                    response.status()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn guessing_passwords_is_slowed_and_the_right_one_works_after_the_wait() {
    let app = spawn_app_with(&[("REELTIME_SIGN_INS_PER_MINUTE", "10")]).await;
    let client = browser(&app.address);
    let attempt = |password: &'static str| {
        let client = client.clone();
        let url = app.url("/login");
        async move {
            client
                .post(url)
                .form(&[("email", ADMIN), ("password", password), ("next", "/")])
                .send()
                .await
                .unwrap()
        }
    };
    let mut refused = None;
    for _ in 0..20 {
        let response = attempt("not the password").await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(response);
            break;
        }
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
    }
    let refused = refused.expect("20 wrong passwords were refused with 429");
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "Retry-After: {wait}");
    assert!(refused
        .text()
        .await
        .unwrap()
        .contains("Too many sign-in attempts"));
    // Even the right password waits its turn...
    assert_eq!(
        attempt(PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // ...and works after the wait.
    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    let response = attempt(PASSWORD).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/");
}

#[tokio::test]
async fn the_setup_link_creates_the_first_admin_once() {
    // A database of its own with no account: the link is what the app printed at start.
    let app = spawn_app_with(&[]).await;
    let link = app
        .setup_link
        .clone()
        .expect("a first start offers a setup link");
    let token = link.split("token=").nth(1).unwrap().to_owned();
    // The helper signed in an admin it created directly; start over with no account.
    sqlx::query!("delete from users")
        .execute(&app.pool)
        .await
        .unwrap();

    let setup = |email: &'static str| {
        let client = browser(&app.address);
        let url = app.url("/setup");
        let token = token.clone();
        async move {
            let response = client
                .post(url)
                .form(&[
                    ("token", token.as_str()),
                    ("email", email),
                    ("password", PASSWORD),
                    ("confirm", PASSWORD),
                ])
                .send()
                .await
                .unwrap();
            (client, response)
        }
    };
    let (first, response) = setup("first@example.com").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/");
    let page = first.get(app.url("/account")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK, "signed in as the new admin");
    assert!(page.text().await.unwrap().contains("first@example.com"));

    let (_, again) = setup("second@example.com").await;
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
    assert!(again.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/setup"));
    let admins = sqlx::query_scalar!(r#"select count(*) as "n!" from users"#)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(admins, 1, "the link worked once");
}

#[tokio::test]
async fn a_cross_site_post_is_refused_and_writes_nothing() {
    let app = spawn_app_with(&[]).await;
    // The admin's own session, but the post comes from another site's page.
    let response = app
        .client
        .post(app.url("/api/jobs"))
        .header("origin", "https://evil.example")
        .json(&json!({ "input_url": "https://example.com/a.mp4" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // A form posted without JavaScript from a page of ours, but without the CSRF token.
    let response = app
        .client
        .post(app.url("/api/fn/submit_job"))
        .header("accept", "text/html")
        .form(&[("input_url", "https://example.com/a.mp4")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.job_count().await, 0);
}

#[tokio::test]
async fn a_foreign_host_is_refused() {
    let app = spawn_app_with(&[]).await;
    // What a DNS-rebinding page sends to a 127.0.0.1 install: its own name.
    let response = app
        .client
        .get(app.url("/api/jobs"))
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST);
}

#[tokio::test]
async fn every_response_carries_the_security_headers_and_pages_a_nonce() {
    let app = spawn_app_with(&[]).await;
    let page = app.client.get(app.url("/")).send().await.unwrap();
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("'wasm-unsafe-eval'") && policy.contains("frame-ancestors 'none'"));
    let nonce = policy
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("the page's policy names a nonce");
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().await.unwrap();
    assert!(
        html.contains(&format!("nonce=\"{nonce}\"")),
        "the hydration scripts carry it"
    );
    let api = app.client.get(app.url("/api/jobs")).send().await.unwrap();
    assert!(api.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .starts_with("default-src 'none'"));
    assert!(
        api.headers().get("strict-transport-security").is_none(),
        "no HSTS over http"
    );
}

#[tokio::test]
async fn a_viewer_reads_but_cannot_submit_and_sees_no_form() {
    let app = spawn_app_with(&[]).await;
    app.create_user(VIEWER, Role::Viewer).await;
    let (viewer, _) = app.signed_in(VIEWER).await;
    let html = viewer
        .get(app.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("submit-form"), "no submit form for a viewer");
    let response = viewer
        .post(app.url("/api/jobs"))
        .json(&json!({ "input_url": "https://example.com/a.mp4" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.job_count().await, 0);
    let admin_html = app.get_text("/").await;
    assert!(admin_html.contains("submit-form"));
}

#[tokio::test]
async fn a_token_is_shown_once_works_until_revoked_and_never_exceeds_its_owner() {
    let app = spawn_app_with(&[]).await;
    app.create_user(VIEWER, Role::Viewer).await;
    let (viewer, csrf) = app.signed_in(VIEWER).await;
    let response = viewer
        .post(app.url("/account/tokens"))
        .header("accept", "text/html")
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", "script"),
            ("scope", "write"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let page = viewer
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = page
        .split("class=\"token-value\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the new token is shown")
        .to_owned();
    assert!(token.starts_with("rt_"));
    let again = viewer
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!again.contains(&token), "shown once");

    let scripted = Client::new();
    let list = scripted
        .get(app.url("/api/jobs"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), StatusCode::OK);
    // A write token of a viewer acts as a viewer.
    let submit = scripted
        .post(app.url("/api/jobs"))
        .bearer_auth(&token)
        .json(&json!({ "input_url": "https://example.com/a.mp4" }))
        .send()
        .await
        .unwrap();
    assert_eq!(submit.status(), StatusCode::FORBIDDEN);
    let used = sqlx::query_scalar!("select last_used_at from api_tokens where name = 'script'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(used.is_some(), "its last use is kept");
    let id = sqlx::query_scalar!("select id from api_tokens where name = 'script'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let revoked = viewer
        .post(app.url(&format!("/account/tokens/{id}/revoke")))
        .header("accept", "text/html")
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::SEE_OTHER);
    let list = scripted
        .get(app.url("/api/jobs"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn disabling_an_account_ends_its_session() {
    let app = spawn_app_with(&[]).await;
    let id = app.create_user(OPERATOR, Role::Operator).await;
    let (operator, _) = app.signed_in(OPERATOR).await;
    assert_eq!(
        operator
            .get(app.url("/api/jobs"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let response = app
        .client
        .post(app.url(&format!("/admin/users/{id}")))
        .header("accept", "text/html")
        .form(&[("csrf", app.csrf.as_str()), ("action", "disable")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        operator
            .get(app.url("/api/jobs"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    // And it cannot sign in again.
    let again = browser(&app.address)
        .post(app.url("/login"))
        .form(&[("email", OPERATOR), ("password", PASSWORD), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert!(again.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/login"));
}

#[tokio::test]
async fn a_person_may_hold_only_so_many_event_streams() {
    let app = spawn_app_with(&[("REELTIME_STREAMS_PER_USER", "2")]).await;
    let open = || app.client.get(app.url("/api/events")).send();
    let first = open().await.unwrap();
    let second = open().await.unwrap();
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    let third = open().await.unwrap();
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(third.headers().contains_key("retry-after"));
    drop(first);
    // The slot comes back when a stream ends.
    crate::helpers::eventually(std::time::Duration::from_secs(10), || async {
        match open().await.unwrap().status() {
            StatusCode::OK => Ok(()),
            other => Err(format!("still {other}")),
        }
    })
    .await;
}

#[tokio::test]
async fn submissions_are_limited_per_person() {
    let app = spawn_app_with(&[("REELTIME_SUBMISSIONS_PER_MINUTE", "3")]).await;
    let mut statuses = Vec::new();
    for n in 0..4 {
        let response = app
            .post_job(json!({ "input_url": format!("https://example.com/{n}.mp4") }))
            .await;
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [201, 201, 201, 429]);
    assert_eq!(app.job_count().await, 3);
}
