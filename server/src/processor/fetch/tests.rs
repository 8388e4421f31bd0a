use super::*;
use std::path::PathBuf;
use tokio::io::AsyncReadExt;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn settings(allow_private: bool) -> FetchSettings {
    FetchSettings {
        own_key: None,
        allow_private,
        max_bytes: 1024 * 1024,
        timeout: Duration::from_secs(10),
        trusted_prefixes: Vec::new(),
    }
}

fn fetcher(allow_private: bool) -> Fetcher {
    Fetcher::new(settings(allow_private)).unwrap()
}

/// A server answering every GET with `response`.
async fn serving(response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(response)
        .mount(&server)
        .await;
    server
}

fn temp_path() -> PathBuf {
    std::env::temp_dir().join(format!("reeltime-fetch-test-{}", uuid::Uuid::new_v4()))
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn is_public_table() {
    for public in [
        "8.8.8.8",
        "1.1.1.1",
        "2606:4700::1111",
        "2a00:1450:4001::200e",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
    ] {
        assert!(is_public(ip(public)), "{public} should be public");
    }
    for private in [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "100.127.255.255",
        "0.0.0.0",
        "0.1.2.3",
        "192.0.0.8",
        "192.0.2.1",
        "198.18.0.1",
        "198.19.255.255",
        "198.51.100.1",
        "203.0.113.1",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "fe80::1",
        "fd00::1",
        "fc00::1",
        "ff02::1",
        "2001:db8::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::127.0.0.1",
        "64:ff9b::a00:1",
        "64:ff9b:1::1",
        "2002:7f00:1::",
    ] {
        assert!(!is_public(ip(private)), "{private} should not be public");
    }
    // Just outside the private ranges.
    for public in ["172.32.0.1", "100.128.0.1", "198.20.0.1", "11.0.0.1"] {
        assert!(is_public(ip(public)), "{public} should be public");
    }
}

#[test]
fn check_url_refuses_other_schemes_readably() {
    let fetcher = fetcher(false);
    let ftp = fetcher.check_url("ftp://example.com/clip.mp4").unwrap_err();
    assert!(matches!(ftp, FetchError::Invalid(_)));
    assert_eq!(
        ftp.to_string(),
        "the input URL's scheme ftp: is not supported; the built-in processor fetches http \
         and https URLs only"
    );
    let s3 = fetcher.check_url("s3://bucket/clip.mp4").unwrap_err();
    assert!(matches!(s3, FetchError::Invalid(_)));
    assert!(s3.to_string().contains("s3:// inputs need Ittybit itself"));
    let garbage = fetcher.check_url("not a url").unwrap_err();
    assert!(matches!(garbage, FetchError::Invalid(_)));
    assert!(garbage
        .to_string()
        .starts_with("the input is not a valid URL"));
}

#[test]
fn check_url_refuses_userinfo() {
    let fetcher = fetcher(true);
    for input in [
        "https://user:secret@example.com/clip.mp4",
        "https://user@example.com/clip.mp4",
    ] {
        let err = fetcher.check_url(input).unwrap_err();
        assert!(matches!(err, FetchError::Invalid(_)), "{input}");
        assert!(!err.to_string().contains("secret"));
    }
}

#[test]
fn check_url_refuses_private_literals_unless_allowed() {
    let err = fetcher(false).check_url("http://127.0.0.1/x").unwrap_err();
    match &err {
        FetchError::Refused { host, address } => {
            assert_eq!(host, "127.0.0.1");
            assert_eq!(*address, ip("127.0.0.1"));
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    assert!(err
        .to_string()
        .contains("REELTIME_PROCESSOR_ALLOW_PRIVATE=true"));
    assert!(fetcher(true).check_url("http://127.0.0.1/x").is_ok());

    let v6 = fetcher(false).check_url("http://[::1]/").unwrap_err();
    assert!(matches!(v6, FetchError::Refused { address, .. } if address == ip("::1")));
    // Unusual spellings of an address are normalised by the URL parser first.
    let hex = fetcher(false).check_url("http://0x7f.1/x").unwrap_err();
    assert!(matches!(hex, FetchError::Refused { .. }));
    let mapped = fetcher(false)
        .check_url("http://[::ffff:a9fe:a9fe]/")
        .unwrap_err();
    assert!(matches!(mapped, FetchError::Refused { .. }));

    // Public literals and host names pass (names are checked when resolved).
    assert!(fetcher(false).check_url("https://8.8.8.8/clip.mp4").is_ok());
    assert!(fetcher(false)
        .check_url(" https://example.com/clip.mp4 ")
        .is_ok());
}

#[test]
fn check_url_allows_trusted_prefixes() {
    let fetcher = Fetcher::new(FetchSettings {
        own_key: None,
        trusted_prefixes: vec!["http://127.0.0.1:3000/samples/".to_owned()],
        ..settings(false)
    })
    .unwrap();
    assert!(fetcher
        .check_url("http://127.0.0.1:3000/samples/clip.mp4")
        .is_ok());
    // Dot segments are resolved before the comparison.
    assert!(matches!(
        fetcher.check_url("http://127.0.0.1:3000/samples/../admin"),
        Err(FetchError::Refused { .. })
    ));
    assert!(matches!(
        fetcher.check_url("http://127.0.0.1:3001/samples/clip.mp4"),
        Err(FetchError::Refused { .. })
    ));
}

#[test]
fn trusted_prefixes_are_normalised() {
    let fetcher = Fetcher::new(FetchSettings {
        own_key: None,
        trusted_prefixes: vec!["HTTP://127.0.0.1:3000".to_owned(), "nonsense".to_owned()],
        ..settings(false)
    })
    .unwrap();
    assert!(fetcher.check_url("http://127.0.0.1:3000/clip.mp4").is_ok());
    assert!(matches!(
        fetcher.check_url("http://127.0.0.1:30001/clip.mp4"),
        Err(FetchError::Refused { .. })
    ));
}

#[test]
fn redirect_targets() {
    for allowed in [
        "https://example.com/x",
        "http://8.8.8.8/x",
        "https://[2606:4700::1111]/",
    ] {
        assert!(
            redirect_target_allowed(&Url::parse(allowed).unwrap()).is_ok(),
            "{allowed}"
        );
    }
    for refused in [
        "http://127.0.0.1/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:10.0.0.1]/",
        "http://[fe80::1]/",
    ] {
        let err = redirect_target_allowed(&Url::parse(refused).unwrap()).unwrap_err();
        assert!(matches!(err, GuardError::NotPublic { .. }), "{refused}");
        assert!(matches!(FetchError::from(err), FetchError::Refused { .. }));
    }
    let file = redirect_target_allowed(&Url::parse("file:///etc/passwd").unwrap()).unwrap_err();
    assert!(matches!(&file, GuardError::Scheme(scheme) if scheme == "file"));
    assert_eq!(
        FetchError::from(file).to_string(),
        "the input URL redirected to a file: URL; the built-in processor follows redirects \
         to http and https URLs only"
    );
}

#[test]
fn messages_and_retryability() {
    assert_eq!(
        FetchError::Status(404).to_string(),
        "the input URL answered HTTP 404"
    );
    assert_eq!(
        FetchError::TooLarge {
            max_bytes: 500 * 1024 * 1024
        }
        .to_string(),
        "the input is larger than the 500 MB limit (REELTIME_PROCESSOR_MAX_INPUT_MB)"
    );
    assert_eq!(
        FetchError::TooLarge { max_bytes: 1000 }.to_string(),
        "the input is larger than the 1000-byte limit (REELTIME_PROCESSOR_MAX_INPUT_MB)"
    );
    assert!(FetchError::Timeout.is_retryable());
    assert!(FetchError::Network {
        plain: "closed",
        detail: "connection reset".to_owned()
    }
    .is_retryable());
    assert!(FetchError::Status(503).is_retryable());
    assert!(FetchError::Status(429).is_retryable());
    assert!(!FetchError::Status(404).is_retryable());
    assert!(!FetchError::TooLarge { max_bytes: 1 }.is_retryable());
    assert!(!FetchError::Refused {
        host: "localhost".to_owned(),
        address: ip("127.0.0.1")
    }
    .is_retryable());
}

#[tokio::test]
async fn download_writes_the_exact_bytes() {
    let server = MockServer::start().await;
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    Mock::given(method("GET"))
        .and(path("/clip.mp4"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(body.clone()))
        .mount(&server)
        .await;
    let dest = temp_path();
    let written = fetcher(true)
        .download(&format!("{}/clip.mp4", server.uri()), &dest)
        .await
        .unwrap();
    assert_eq!(written, body.len() as u64);
    assert_eq!(tokio::fs::read(&dest).await.unwrap(), body);
    tokio::fs::remove_file(&dest).await.unwrap();
}

#[tokio::test]
async fn download_reports_the_status_and_leaves_no_file() {
    let server = serving(ResponseTemplate::new(404)).await;
    let dest = temp_path();
    let err = fetcher(true)
        .download(&format!("{}/missing.mp4", server.uri()), &dest)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Status(404)), "{err:?}");
    assert!(!err.is_retryable());
    assert!(!dest.exists());
}

#[tokio::test]
async fn download_refuses_a_declared_length_over_the_limit() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(vec![7u8; 2000]))
        .mount(&server)
        .await;
    let fetcher = Fetcher::new(FetchSettings {
        own_key: None,
        max_bytes: 1000,
        ..settings(true)
    })
    .unwrap();
    let dest = temp_path();
    let err = fetcher
        .download(&format!("{}/big.mp4", server.uri()), &dest)
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::TooLarge { max_bytes: 1000 }),
        "{err:?}"
    );
    assert!(!dest.exists());
}

/// wiremock always sends Content-Length, so this serves a chunked body by hand to reach the
/// limit while streaming, after the file was created.
#[tokio::test]
async fn download_stops_a_chunked_body_over_the_limit_and_deletes_the_file() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 4096];
        let _ = socket.read(&mut request).await.unwrap();
        socket
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        let chunk = [b'x'; 600];
        for _ in 0..3 {
            let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
            frame.extend_from_slice(&chunk);
            frame.extend_from_slice(b"\r\n");
            // The client may hang up once it has seen enough.
            if socket.write_all(&frame).await.is_err() {
                return;
            }
        }
        let _ = socket.write_all(b"0\r\n\r\n").await;
    });
    let fetcher = Fetcher::new(FetchSettings {
        own_key: None,
        max_bytes: 1000,
        ..settings(true)
    })
    .unwrap();
    let dest = temp_path();
    let err = fetcher
        .download(&format!("http://127.0.0.1:{port}/stream"), &dest)
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::TooLarge { max_bytes: 1000 }),
        "{err:?}"
    );
    assert!(!dest.exists());
    server.await.unwrap();
}

#[tokio::test]
async fn download_refuses_names_that_resolve_to_loopback() {
    let server = serving(ResponseTemplate::new(200).set_body_bytes(b"secret".to_vec())).await;
    let port = server.address().port();
    let dest = temp_path();
    let err = fetcher(false)
        .download(
            &format!("http://localhost:{port}/private-path?token=abc"),
            &dest,
        )
        .await
        .unwrap_err();
    match &err {
        FetchError::Refused { host, address } => {
            assert_eq!(host, "localhost");
            assert!(address.is_loopback());
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("localhost"), "{text}");
    // The address stays in the log: the job's error is shown to every viewer.
    assert!(
        text.contains("a private, loopback or link-local address"),
        "{text}"
    );
    assert!(
        !text.contains("127.0.0.1") && !text.contains("::1"),
        "{text}"
    );
    assert!(!text.contains("private-path"), "{text}");
    assert!(!text.contains("token"), "{text}");
    assert!(!dest.exists());
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn download_reports_network_failures_without_the_url() {
    let port = crate::net_error::closed_port();
    let dest = temp_path();
    let err = fetcher(true)
        .download(&format!("http://127.0.0.1:{port}/clip.mp4?sig=abc"), &dest)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Network { .. }), "{err:?}");
    assert!(err.is_retryable());
    let text = err.to_string();
    assert_eq!(text, "the input URL's server refused the connection");
    let technical = err.technical().expect("a network failure keeps its detail");
    assert!(
        technical
            .to_ascii_lowercase()
            .contains("connection refused"),
        "{technical}"
    );
    assert!(
        !technical.contains("clip.mp4") && !technical.contains("sig="),
        "{technical}"
    );
    assert!(
        !text.contains("clip.mp4") && !text.contains("sig="),
        "{text}"
    );
    assert!(!dest.exists());
}

#[tokio::test]
async fn download_gives_up_after_too_many_redirects() {
    let server = serving(ResponseTemplate::new(302).insert_header("Location", "/loop")).await;
    let dest = temp_path();
    let err = fetcher(true)
        .download(&format!("{}/loop", server.uri()), &dest)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Redirect(_)), "{err:?}");
    assert!(err.to_string().contains("more than 5 times"));
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        MAX_REDIRECTS + 1
    );
    assert!(!dest.exists());
}

#[tokio::test]
async fn download_fetches_trusted_prefixes_without_following_redirects() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/samples/clip.mp4"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(b"sample".to_vec()))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/samples/moved.mp4"))
        .respond_with(ResponseTemplate::new(302).insert_header("Location", "/samples/clip.mp4"))
        .mount(&server)
        .await;
    let fetcher = Fetcher::new(FetchSettings {
        own_key: None,
        trusted_prefixes: vec![format!("{}/samples/", server.uri())],
        ..settings(false)
    })
    .unwrap();

    let dest = temp_path();
    let written = fetcher
        .download(&format!("{}/samples/clip.mp4", server.uri()), &dest)
        .await
        .unwrap();
    assert_eq!(written, 6);
    assert_eq!(tokio::fs::read(&dest).await.unwrap(), b"sample");
    tokio::fs::remove_file(&dest).await.unwrap();

    let err = fetcher
        .download(&format!("{}/samples/moved.mp4", server.uri()), &dest)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Status(302)), "{err:?}");
    assert!(!dest.exists());

    // The same server outside the prefix is refused.
    let err = fetcher
        .download(&format!("{}/other.mp4", server.uri()), &dest)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Refused { .. }), "{err:?}");
}

#[test]
fn network_failures_read_in_plain_words() {
    let cases = [
        (
            "error sending request: client error (Connect): dns error: failed to lookup address information: Name or service not known",
            "the input URL's host could not be found: check the address",
        ),
        (
            "error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)",
            "the input URL's server refused the connection",
        ),
        (
            "error sending request: client error (Connect): invalid peer certificate: UnknownIssuer",
            "the input URL's server has an invalid or untrusted HTTPS certificate",
        ),
        (
            "error decoding response body: connection closed before message completed",
            "the input URL's server closed the connection before the whole file arrived",
        ),
        ("something new", "the input could not be downloaded because of a network error; try again later"),
    ];
    for (detail, plain) in cases {
        assert_eq!(
            plain_network_reason(crate::net_error::cause_of(detail)),
            plain,
            "{detail}"
        );
    }
}
