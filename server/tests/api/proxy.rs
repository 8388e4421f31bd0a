//! Reeltime behind nginx, as docs/deploy/nginx.conf sets it up: the server binary on loopback,
//! nginx in front terminating TLS with a self-signed certificate, and a client that connects
//! from another loopback address (127.0.0.2) so that its address differs from the proxy's.
//!
//! The site configuration is the documented file itself; only the lines it marks `test:`
//! (names, ports, certificate paths) are swapped. nginx runs in the foreground with a prefix
//! of its own. Without nginx (`scripts/test.sh` installs it) the test says so and passes.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use app::db::users;
use reeltime::Role;
use reqwest::{Client, StatusCode};
use serde_json::json;
use sqlx::{Connection, Executor, PgConnection, PgPool};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::{admin_database_url, eventually, ADMIN, PASSWORD};

const CLIENT_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// The nginx binary, if installed (Debian puts it in /usr/sbin, often off PATH).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"])
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file());
    found
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn scratch(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A fresh database on the test Postgres; its URL.
pub async fn fresh_database() -> String {
    let name = format!("reeltime_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_database_url()).await.unwrap();
    admin
        .execute(sqlx::AssertSqlSafe(format!(r#"create database "{name}""#)))
        .await
        .unwrap();
    let mut url = url::Url::parse(&admin_database_url()).unwrap();
    url.set_path(&name);
    url.to_string()
}

/// The server binary, started with `env`; its standard error goes to `log`.
pub struct Server {
    /// Killed when dropped.
    pub _child: Child,
    pub address: String,
}

pub async fn start_server(env: &[(&str, String)], log: &Path) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_reeltime"));
    command
        .env("REELTIME_PORT", free_port().to_string())
        .env("REELTIME_PROCESSOR", "off")
        .env("REELTIME_SAMPLE_CLIP", "off")
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let address = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("Reeltime is running at ") {
                return url.to_owned();
            }
        }
        panic!(
            "reeltime exited before it was ready:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    })
    .await
    .expect("reeltime started within 60 s");
    // Keep draining stdout so the server never blocks on it.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Server {
        _child: child,
        address,
    }
}

/// docs/deploy/nginx.conf with its `test:` lines swapped.
fn site_config(upstream: u16, http: u16, https: u16, dir: &Path) -> String {
    let documented = include_str!("../../../docs/deploy/nginx.conf");
    documented
        .lines()
        .filter_map(|line| {
            let Some((_, mark)) = line.split_once("# test: ") else {
                return Some(line.to_owned());
            };
            let indent = &line[..line.len() - line.trim_start().len()];
            let swapped = match mark.trim() {
                "upstream" => format!("server 127.0.0.1:{upstream};"),
                "http" => format!("listen 127.0.0.1:{http};"),
                "https" => format!("listen 127.0.0.1:{https} ssl http2;"),
                "name" => "server_name localhost;".to_owned(),
                // Not on 443, the port is part of the public URL's authority.
                "host" => "proxy_set_header Host $host:$server_port;".to_owned(),
                "cert" => format!("ssl_certificate {}/cert.pem;", dir.display()),
                "key" => format!("ssl_certificate_key {}/key.pem;", dir.display()),
                // The IPv6 listeners: loopback v4 is enough for the test.
                "http6" | "https6" => return None,
                other => panic!("nginx.conf marks an unknown test line: {other}"),
            };
            Some(format!("{indent}{swapped}"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// nginx in the foreground with its own prefix, serving `site`.
fn start_nginx(nginx: &Path, dir: &Path, site: &str) -> Child {
    std::fs::write(dir.join("site.conf"), site).unwrap();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    // As root, nginx's workers would switch to www-data, who cannot read this directory.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root;"
    } else {
        ""
    };
    let d = dir.display();
    let main = format!(
        "{user}
daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    include {d}/site.conf;
}}
"
    );
    std::fs::write(dir.join("nginx.conf"), main).unwrap();
    let check = std::process::Command::new(nginx)
        .args(["-t", "-q", "-p"])
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "nginx -t refused the configuration:\n{}{}",
        String::from_utf8_lossy(&check.stderr),
        site
    );
    Command::new(nginx)
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

fn self_signed(dir: &Path) {
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(made.success(), "openssl could not make a certificate");
}

/// Read an event stream until `done` says what it has is enough.
async fn read_until(
    stream: &mut reqwest::Response,
    within: Duration,
    done: impl Fn(&str) -> bool,
) -> String {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + within;
    while !done(&text) {
        match tokio::time::timeout_at(deadline, stream.chunk()).await {
            Ok(Ok(Some(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(other) => panic!("the stream ended ({other:?}) after:\n{text}"),
            Err(_) => panic!("not within {within:?}; the stream said:\n{text}"),
        }
    }
    text
}

/// The `id:` of the event whose data holds `needle`.
fn event_id_with(text: &str, needle: &str) -> Option<String> {
    text.split("\n\n")
        .find(|event| event.contains(needle))
        .and_then(|event| event.lines().find_map(|l| l.strip_prefix("id: ")))
        .map(str::to_owned)
}

#[tokio::test]
async fn through_nginx_pages_submits_live_events_resume_and_the_client_address() {
    let Some(nginx) = find_program("nginx") else {
        eprintln!(
            "SKIPPED: nginx is not installed (scripts/test.sh installs it: apt-get install nginx)"
        );
        return;
    };
    let dir = scratch("reeltime-nginx");
    self_signed(&dir);
    // Its own port, not 0: with a public URL set, the server announces that, not its socket.
    let (http, https, upstream) = (free_port(), free_port(), free_port());
    let public = format!("https://localhost:{https}");
    let database_url = fresh_database().await;
    let log = dir.join("reeltime.log");
    let server = start_server(
        &[
            ("DATABASE_URL", database_url.clone()),
            ("REELTIME_DATA_DIR", dir.join("data").display().to_string()),
            ("REELTIME_PUBLIC_URL", public.clone()),
            // Only nginx's address: the test client's 127.0.0.2 is not a proxy.
            ("REELTIME_TRUSTED_PROXIES", "127.0.0.1".to_owned()),
            ("REELTIME_PORT", upstream.to_string()),
        ],
        &log,
    )
    .await;
    assert_eq!(server.address, public);
    let _nginx = start_nginx(&nginx, &dir, &site_config(upstream, http, https, &dir));

    let pool = PgPool::connect(&database_url).await.unwrap();
    let hash = server::auth::password::hash(PASSWORD.into()).await.unwrap();
    users::create_user(&pool, ADMIN, &hash, Role::Admin)
        .await
        .unwrap();

    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("origin", public.parse().unwrap());
    let client = Client::builder()
        .danger_accept_invalid_certs(true)
        .local_address(IpAddr::V4(CLIENT_ADDRESS))
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .default_headers(headers)
        .build()
        .unwrap();
    let url = |path: &str| format!("{public}{path}");

    // nginx is up once it answers; plain http is sent to https.
    let page = eventually(Duration::from_secs(10), || async {
        client
            .get(url("/login"))
            .send()
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    if page.status() != StatusCode::OK {
        let server = page.headers().get("server").cloned();
        panic!(
            "{server:?} {}\n{}",
            page.text().await.unwrap(),
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
    }
    let redirect = client
        .get(format!("http://127.0.0.1:{http}/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), StatusCode::MOVED_PERMANENTLY);

    // Signing in (the session cookie is Secure: https all the way to the browser), a forged
    // X-Forwarded-For along with it.
    let signed_in = client
        .post(url("/login"))
        .header("x-forwarded-for", "203.0.113.66")
        .form(&[("email", ADMIN), ("password", PASSWORD), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("Secure"), "{cookie}");
    let dashboard = client.get(url("/")).send().await.unwrap();
    assert_eq!(dashboard.status(), StatusCode::OK);
    assert!(dashboard.text().await.unwrap().contains("<form"));

    // The live feed through the proxy, asked for compressed as browsers ask: a submission's
    // event arrives within a second (nothing along the way holds it back to compress).
    let mut stream = client
        .get(url("/api/events"))
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    if stream.status() != StatusCode::OK {
        panic!(
            "{:?} {}",
            stream.headers().clone(),
            stream.text().await.unwrap()
        );
    }
    read_until(&mut stream, Duration::from_secs(5), |t| {
        t.contains("event: reset")
    })
    .await;
    let submitted = Instant::now();
    let created = client
        .post(url("/api/jobs"))
        .json(&json!({ "input_url": "https://example.com/one.mp4" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let first: serde_json::Value = created.json().await.unwrap();
    let first_id = first["id"].as_str().unwrap().to_owned();
    let text = read_until(&mut stream, Duration::from_secs(1), |t| {
        t.contains("event: insert") && t.contains(&first_id)
    })
    .await;
    let latency = submitted.elapsed();
    assert!(latency < Duration::from_secs(1), "{latency:?}");
    let position = event_id_with(&text, &first_id).expect("the insert has an id");
    drop(stream);

    // Missed while away, and resumed with Last-Event-ID through the proxy.
    let second: serde_json::Value = client
        .post(url("/api/jobs"))
        .json(&json!({ "input_url": "https://example.com/two.mp4" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let second_id = second["id"].as_str().unwrap().to_owned();
    let mut resumed = client
        .get(url("/api/events"))
        .header("last-event-id", &position)
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    let text = read_until(&mut resumed, Duration::from_secs(5), |t| {
        t.contains(&second_id)
    })
    .await;
    assert!(
        !text.contains("event: reset"),
        "a reset instead of a resume:\n{text}"
    );
    assert!(!text.contains(&first_id), "sent again:\n{text}");
    drop(resumed);

    // The logs name the client nginx saw, never the proxy's own address nor the forged one.
    let logged = eventually(Duration::from_secs(5), || {
        let log = log.clone();
        async move {
            let text = std::fs::read_to_string(&log).map_err(|e| e.to_string())?;
            if text.contains("client=127.0.0.2") && text.contains("path=/api/jobs") {
                Ok(text)
            } else {
                Err(text)
            }
        }
    })
    .await;
    assert!(
        !logged.contains("client=203.0.113.66"),
        "the forged address was believed"
    );
    let requests: Vec<&str> = logged
        .lines()
        .filter(|l| l.contains("request{") && l.contains("finished processing request"))
        .collect();
    assert!(
        requests.iter().all(|l| l.contains("client=127.0.0.2")),
        "a request logged with another address:\n{}",
        requests.join("\n")
    );
    pool.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
