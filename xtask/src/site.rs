//! The site root around the bundle: the stylesheet, the public files, content-hashed names
//! and the precompressed copies the server sends to browsers that accept them.

use std::fmt;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use base64ct::{Base64UrlUnpadded, Encoding};
use md5::{Digest, Md5};

use crate::tools::tool;

/// The bundle's name: `pkg/reeltime.js`, `.wasm`, `.css` (server/src/site.rs' `OUTPUT_NAME`).
pub const OUTPUT_NAME: &str = "reeltime";
/// The bundle's folder under the site root (server/src/site.rs' `PKG`).
pub const PKG: &str = "pkg";
/// The hash file in the site root, which the server reads (server/src/site.rs' `HASH_FILE`).
pub const HASH_FILE: &str = "hash.txt";

/// Removes everything in the site root (creating it if it is missing).
pub fn empty(site_root: &Path) -> Result<()> {
    if site_root.exists() {
        std::fs::remove_dir_all(site_root)
            .with_context(|| format!("emptying {}", site_root.display()))?;
    }
    std::fs::create_dir_all(site_root).with_context(|| format!("creating {}", site_root.display()))
}

/// Minifies the stylesheet for the browsers of the `defaults` browserslist query (the
/// workspace's `browserquery`), adding prefixes where they still need them.
pub fn stylesheet(root: &Path, source: &Path, dest: &Path) -> Result<()> {
    tool(
        root,
        "lightningcss",
        &[
            "--minify".as_ref(),
            "--targets".as_ref(),
            "defaults".as_ref(),
            source.as_os_str(),
            "-o".as_ref(),
            dest.as_os_str(),
        ],
    )
}

/// Copies the public files into the site root, folders included. `pkg/` and `index.html` are
/// the bundle's and are never taken from there.
pub fn copy_assets(from: &Path, to: &Path) -> Result<()> {
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if name == PKG || name == "index.html" {
            continue;
        }
        let (source, dest) = (entry.path(), to.join(&name));
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&dest)?;
            copy_assets(&source, &dest)?;
        } else {
            std::fs::copy(&source, &dest)
                .with_context(|| format!("copying {}", source.display()))?;
        }
    }
    Ok(())
}

/// The bundle's content hashes, as `hash.txt` holds them.
#[derive(Debug, PartialEq)]
pub struct Hashes {
    pub js: String,
    pub wasm: String,
    pub css: String,
}

impl fmt::Display for Hashes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "js: {}", self.js)?;
        writeln!(f, "wasm: {}", self.wasm)?;
        writeln!(f, "css: {}", self.css)
    }
}

/// A file's content hash: MD5, URL-safe base64 without padding (22 characters), as
/// cargo-leptos names files, so both tools give the same bytes the same name.
pub fn content_hash(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(&Md5::digest(bytes))
}

/// Renames `pkg/reeltime.{wasm,css,js}` to `reeltime.<hash>.<ext>`. The module and the
/// stylesheet go first and the glue is rewritten to name the module's new file before its own
/// hash is taken, so every name matches its file's final bytes.
pub fn hash_bundle(pkg: &Path) -> Result<Hashes> {
    let wasm = rename_by_hash(pkg, "wasm")?;
    let css = rename_by_hash(pkg, "css")?;
    let glue_path = pkg.join(format!("{OUTPUT_NAME}.js"));
    let glue = std::fs::read_to_string(&glue_path).context("reading the JS glue")?;
    let glue = glue.replace(
        &format!("{OUTPUT_NAME}.wasm"),
        &format!("{OUTPUT_NAME}.{wasm}.wasm"),
    );
    std::fs::write(&glue_path, glue)?;
    let js = rename_by_hash(pkg, "js")?;
    Ok(Hashes { js, wasm, css })
}

fn rename_by_hash(pkg: &Path, ext: &str) -> Result<String> {
    let path = pkg.join(format!("{OUTPUT_NAME}.{ext}"));
    let hash =
        content_hash(&std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?);
    std::fs::rename(&path, pkg.join(format!("{OUTPUT_NAME}.{hash}.{ext}")))?;
    Ok(hash)
}

/// Writes `<file>.gz` (best compression) and `<file>.br` (quality 11, 4 MiB window) beside
/// every file under `dir`, skipping files that are such copies already.
pub fn precompress(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            precompress(&path)?;
            continue;
        }
        if matches!(path.extension().and_then(|e| e.to_str()), Some("gz" | "br")) {
            continue;
        }
        let bytes = std::fs::read(&path)?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&bytes)?;
        std::fs::write(with_suffix(&path, "gz"), gz.finish()?)?;
        let mut br = Vec::new();
        brotli::BrotliCompress(
            &mut &bytes[..],
            &mut br,
            &brotli::enc::BrotliEncoderParams::default(),
        )?;
        std::fs::write(with_suffix(&path, "br"), br)?;
    }
    Ok(())
}

fn with_suffix(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    name.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-{name}-{}", std::process::id()));
        empty(&dir).unwrap();
        dir
    }

    #[test]
    fn the_hash_is_the_md5_in_url_safe_base64() {
        // md5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(content_hash(b""), "1B2M2Y8AsgTpgAmY7PhCfg");
        assert_eq!(content_hash(b"a").len(), 22);
    }

    #[test]
    fn the_bundle_is_named_by_its_final_content_and_the_glue_names_the_new_module() {
        let pkg = scratch("hash");
        std::fs::write(pkg.join("reeltime.wasm"), b"\0asm module").unwrap();
        std::fs::write(pkg.join("reeltime.css"), b"body{}").unwrap();
        std::fs::write(pkg.join("reeltime.js"), b"fetch('reeltime.wasm')").unwrap();

        let hashes = hash_bundle(&pkg).unwrap();

        assert_eq!(hashes.wasm, content_hash(b"\0asm module"));
        assert_eq!(hashes.css, content_hash(b"body{}"));
        let glue = std::fs::read_to_string(pkg.join(format!("reeltime.{}.js", hashes.js))).unwrap();
        assert_eq!(glue, format!("fetch('reeltime.{}.wasm')", hashes.wasm));
        assert_eq!(hashes.js, content_hash(glue.as_bytes()));
        assert!(pkg.join(format!("reeltime.{}.wasm", hashes.wasm)).exists());
        assert!(!pkg.join("reeltime.wasm").exists());
        assert_eq!(
            hashes.to_string(),
            format!(
                "js: {}\nwasm: {}\ncss: {}\n",
                hashes.js, hashes.wasm, hashes.css
            )
        );
        std::fs::remove_dir_all(pkg).unwrap();
    }

    #[test]
    fn every_file_gets_copies_that_decompress_to_it_and_copies_get_none() {
        let site = scratch("compress");
        std::fs::create_dir_all(site.join("pkg")).unwrap();
        let text = "a stylesheet ".repeat(500);
        std::fs::write(site.join("pkg/reeltime.css"), &text).unwrap();
        std::fs::write(site.join("favicon.svg"), "<svg/>").unwrap();

        precompress(&site).unwrap();
        precompress(&site).unwrap();

        let mut gunzipped = String::new();
        flate2::read::GzDecoder::new(&std::fs::read(site.join("pkg/reeltime.css.gz")).unwrap()[..])
            .read_to_string(&mut gunzipped)
            .unwrap();
        assert_eq!(gunzipped, text);
        let mut unbrotli = Vec::new();
        brotli::BrotliDecompress(
            &mut &std::fs::read(site.join("pkg/reeltime.css.br")).unwrap()[..],
            &mut unbrotli,
        )
        .unwrap();
        assert_eq!(unbrotli, text.as_bytes());
        assert!(site.join("favicon.svg.br").exists());
        assert!(!site.join("favicon.svg.gz.gz").exists());
        assert!(!site.join("pkg/reeltime.css.br.gz").exists());
        std::fs::remove_dir_all(site).unwrap();
    }

    #[test]
    fn public_files_are_copied_with_their_folders_but_never_over_the_bundle() {
        let (public, site) = (scratch("public"), scratch("site"));
        std::fs::create_dir_all(public.join("img")).unwrap();
        std::fs::create_dir_all(public.join("pkg")).unwrap();
        std::fs::write(public.join("favicon.svg"), "<svg/>").unwrap();
        std::fs::write(public.join("img/logo.png"), "png").unwrap();
        std::fs::write(public.join("pkg/reeltime.js"), "stale").unwrap();
        std::fs::write(public.join("index.html"), "<html>").unwrap();

        copy_assets(&public, &site).unwrap();

        assert_eq!(
            std::fs::read_to_string(site.join("img/logo.png")).unwrap(),
            "png"
        );
        assert!(site.join("favicon.svg").exists());
        assert!(!site.join("pkg").exists());
        assert!(!site.join("index.html").exists());
        std::fs::remove_dir_all(public).unwrap();
        std::fs::remove_dir_all(site).unwrap();
    }
}
