//! What a first visit to the dashboard downloads (issue 16): the stylesheet, the JS and the
//! WASM its HTML links, each as the server sends it for `Accept-Encoding: gzip` and for `br`
//! (the precompressed files `cargo xtask build` writes), summed, with
//! the `Cache-Control` each carries (a hashed name is kept a year, so a repeat visit downloads
//! none of it). Needs the release build's site (`target/site`); the HTML itself is reported
//! beside the sum, not in it.

use super::*;

/// The issue's targets for the sum: 0.8 × the seed's React dashboard (gzip), and brotli.
const TARGET_GZIP: usize = 100_000;
const TARGET_BR: usize = 85_000;

pub(crate) async fn first_load() -> Result<()> {
    on_fresh_server(&[], async |server, database_url| {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(database_url)
            .await?;
        let cookie = pages::viewer_cookie(server, &pool).await?;
        pool.close().await;
        let (head, html) = get(server, "/", &cookie, "identity").await?;
        if status_of(&head)? != 200 {
            return Err(format!("GET /: {head}").into());
        }
        let html = String::from_utf8_lossy(&html).into_owned();
        let files = bundle_files(&html);
        if files.is_empty() {
            return Err("the dashboard links no /pkg/ files: is the release site built?".into());
        }
        println!("## What a first visit to the dashboard downloads");
        println!();
        println!("| file | gzip B | brotli B | Cache-Control |");
        println!("| --- | ---: | ---: | --- |");
        let (mut gzip, mut br) = (0, 0);
        for file in &files {
            let mut sizes = Vec::new();
            let mut cache = String::new();
            for encoding in ["gzip", "br"] {
                let (head, body) = get(server, file, &cookie, encoding).await?;
                if status_of(&head)? != 200 {
                    return Err(format!("GET {file}: {head}").into());
                }
                if header_values(&head, "content-encoding").next() != Some(encoding) {
                    println!("({file} is not sent {encoding}-compressed)");
                }
                cache = header_values(&head, "cache-control")
                    .next()
                    .unwrap_or("none")
                    .to_owned();
                sizes.push(body.len());
            }
            gzip += sizes[0];
            br += sizes[1];
            println!("| `{file}` | {} | {} | {cache} |", sizes[0], sizes[1]);
        }
        let verdict = |size: usize, target: usize| if size <= target { "met" } else { "missed" };
        println!("| **sum** | **{gzip}** | **{br}** | |");
        println!();
        println!(
            "Targets: gzip ≤ {TARGET_GZIP} B ({}), brotli ≤ {TARGET_BR} B ({}). The HTML: {} B \
             uncompressed.",
            verdict(gzip, TARGET_GZIP),
            verdict(br, TARGET_BR),
            html.len()
        );
        Ok(())
    })
    .await
}

/// The bundle's files the page links (`"/pkg/…"` attributes), in order, once each.
fn bundle_files(html: &str) -> Vec<String> {
    let mut files: Vec<String> = Vec::new();
    for part in html.split("\"/pkg/").skip(1) {
        if let Some(end) = part.find('"') {
            let file = format!("/pkg/{}", &part[..end]);
            if !files.contains(&file) {
                files.push(file);
            }
        }
    }
    files
}

/// `GET path` with `encoding` accepted; the head and the body's bytes as sent.
async fn get(
    server: &Server,
    path: &str,
    cookie: &str,
    encoding: &str,
) -> Result<(String, Vec<u8>)> {
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {}\r\nCookie: {cookie}\r\nAccept-Encoding: {encoding}\r\n\r\n",
        server.address
    );
    exchange_bytes(&server.address, request.as_bytes())
        .await
        .map_err(|err| format!("GET {path}: {err}").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_is_read_from_the_links() {
        let html = r#"<link rel="stylesheet" href="/pkg/reeltime.a.css"><link rel="modulepreload" href="/pkg/reeltime.b.js"><link rel="preload" href="/pkg/reeltime.c.wasm"><script>import("/pkg/reeltime.b.js")</script>"#;
        assert_eq!(
            bundle_files(html),
            [
                "/pkg/reeltime.a.css",
                "/pkg/reeltime.b.js",
                "/pkg/reeltime.c.wasm"
            ]
        );
    }
}
