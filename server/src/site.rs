//! The built site (`LEPTOS_SITE_ROOT`): the browser bundle under `pkg/` and the public files,
//! and how long a browser may keep each.
//!
//! A release build names the bundle's files by their content (`cargo xtask build`, or
//! cargo-leptos' `hash-files`:
//! `pkg/reeltime.<hash>.js`, `.wasm`, `.css`) and writes the hashes to the site's `hash.txt`,
//! which the pages read to link the right names. A name that carries its content's hash never
//! means other bytes, so browsers keep such a file for a year without asking again
//! (`immutable`); every other file (the public assets, a bundle built without hashes) is
//! revalidated on each use (`no-cache`, answered 304 while unchanged).
//!
//! Invariant: `immutable` is sent only for a file under `pkg/` whose name holds a hash from
//! the hash file this process read at start. A new build is served by a new process.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

/// The hash file's name in the site root (`hash-file-name` in the workspace's Leptos metadata
/// puts it there).
pub const HASH_FILE: &str = "hash.txt";

/// The bundle's directory under the site root, and its files' common name.
pub const PKG: &str = "pkg";
pub const OUTPUT_NAME: &str = "reeltime";

const FOREVER: HeaderValue = HeaderValue::from_static("public, max-age=31536000, immutable");
const REVALIDATE: HeaderValue = HeaderValue::from_static("no-cache");

/// What the site's hash file says, read once at start.
#[derive(Clone, Debug, Default)]
pub struct Site {
    /// Where the hash file is, when the site has one.
    hash_file: Option<PathBuf>,
    /// The hashes by the kind of file they name (`js`, `wasm`, `css`).
    hashes: Arc<[(String, String)]>,
}

impl Site {
    /// Reads `root/hash.txt`. A site without one (a development build, the tests) has plain
    /// names; one that cannot be read is logged and served as if it had none.
    pub fn load(root: &Path) -> Site {
        let path = root.join(HASH_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Site::default(),
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "the site's hash file could not be read; serving the bundle under its plain names");
                return Site::default();
            }
        };
        let hashes: Vec<(String, String)> = text
            .lines()
            .filter_map(|line| line.split_once(':'))
            .map(|(kind, hash)| (kind.trim().to_owned(), hash.trim().to_owned()))
            .filter(|(kind, hash)| !kind.is_empty() && !hash.is_empty())
            .collect();
        Site {
            // Absolute: Leptos resolves the hash file against the executable's folder.
            hash_file: Some(std::path::absolute(&path).unwrap_or(path)),
            hashes: hashes.into(),
        }
    }

    /// The hash file, for Leptos' hydration scripts; `None` when names are plain.
    pub fn hash_file(&self) -> Option<&Path> {
        self.hash_file.as_deref()
    }

    fn hash(&self, kind: &str) -> Option<&str> {
        self.hashes
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, hash)| hash.as_str())
    }

    /// The stylesheet's address.
    pub fn stylesheet(&self) -> String {
        match self.hash("css") {
            Some(hash) => format!("/{PKG}/{OUTPUT_NAME}.{hash}.css"),
            None => format!("/{PKG}/{OUTPUT_NAME}.css"),
        }
    }

    /// How long a browser may keep the file at `path` (a request path).
    pub fn cache_control(&self, path: &str) -> HeaderValue {
        let hashed = path
            .strip_prefix('/')
            .and_then(|path| path.strip_prefix(PKG))
            .and_then(|path| path.strip_prefix('/'))
            .filter(|name| !name.contains('/'))
            .is_some_and(|name| {
                self.hashes
                    .iter()
                    .any(|(_, hash)| name.split('.').any(|part| part == hash))
            });
        if hashed {
            FOREVER
        } else {
            REVALIDATE
        }
    }
}

/// Sets `Cache-Control` on what the site's files answered (not on errors or the not-found page).
pub async fn cache_headers(State(site): State<Site>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    if response.status() == StatusCode::OK
        || response.status() == StatusCode::NOT_MODIFIED
        || response.status() == StatusCode::PARTIAL_CONTENT
    {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, site.cache_control(&path));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A site folder of its own, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Scratch {
            let dir = std::env::temp_dir().join(format!("reeltime-site-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn site_with(hash_txt: &str) -> (Scratch, Site) {
        let dir = Scratch::new();
        std::fs::write(dir.0.join(HASH_FILE), hash_txt).unwrap();
        let site = Site::load(&dir.0);
        (dir, site)
    }

    #[test]
    fn hashed_bundle_files_are_kept_and_everything_else_is_revalidated() {
        let (_dir, site) = site_with("js: Ab-1_x\nwasm: Zz9\ncss: Cc3\n");
        assert_eq!(site.stylesheet(), "/pkg/reeltime.Cc3.css");
        assert_eq!(site.cache_control("/pkg/reeltime.Ab-1_x.js"), FOREVER);
        assert_eq!(site.cache_control("/pkg/reeltime.Zz9.wasm"), FOREVER);
        assert_eq!(site.cache_control("/pkg/reeltime.Cc3.css.br"), FOREVER);
        // A plain name, another folder, a hash that is only part of a name.
        assert_eq!(site.cache_control("/pkg/reeltime.css"), REVALIDATE);
        assert_eq!(site.cache_control("/favicon.svg"), REVALIDATE);
        assert_eq!(site.cache_control("/Cc3.css"), REVALIDATE);
        assert_eq!(site.cache_control("/pkg/snippets/Cc3/x.js"), REVALIDATE);
        assert_eq!(site.cache_control("/pkg/reeltime.Cc3x.css"), REVALIDATE);
        assert!(site.hash_file().unwrap().is_absolute());
    }

    #[test]
    fn without_a_hash_file_names_are_plain_and_revalidated() {
        let dir = Scratch::new();
        let site = Site::load(&dir.0);
        assert_eq!(site.stylesheet(), "/pkg/reeltime.css");
        assert_eq!(site.cache_control("/pkg/reeltime.js"), REVALIDATE);
        assert!(site.hash_file().is_none());
        // A blank or malformed file hashes nothing.
        let (_dir, site) = site_with("\n: x\njs:\n");
        assert_eq!(site.cache_control("/pkg/reeltime.x.js"), REVALIDATE);
        assert_eq!(site.stylesheet(), "/pkg/reeltime.css");
    }
}
