//! `cargo xtask build`: the release site (`target/site`) and server (`target/release/reeltime`),
//! built without cargo-leptos.
//!
//! Why: cargo-leptos takes 12-17 minutes to install on two cores (it carries a JS minifier, a
//! CSS compiler, a file watcher and a reload server), and the README's two commands only ever
//! ran `cargo leptos build --release --precompress`. This task does that build with the
//! libraries and tools made for each step: the wasm-bindgen library at the pinned version,
//! wasm-opt (npm's binaryen), esbuild for the JS, lightningcss for the CSS, and flate2/brotli
//! for the precompressed copies. `[workspace.metadata.leptos]` stays for people who use
//! `cargo leptos watch` while they work.
//!
//! Invariants, the same as cargo-leptos' so that either tool's site serves alike:
//! - the site root is emptied first, so no file of an older build is served;
//! - `pkg/reeltime.<hash>.{js,wasm,css}` are named by their content (MD5, URL-safe base64)
//!   and the hashes written to the site root's `hash.txt` (`js: …`, `wasm: …`, `css: …`),
//!   which the server reads at start (server/src/site.rs) to link the names and serve them
//!   immutable;
//! - every file in the site has `.gz` and `.br` copies beside it, made after hashing;
//! - the server is built from the same sources in the same run. Its release build starts
//!   first, as a second cargo, and the bundle's steps run meanwhile: the two use different
//!   profile directories (so neither waits on the other's lock), and on two cores the server
//!   build alone leaves a core idle for much of its last minutes (one crate, then linking).

mod bundle;
mod site;
mod tools;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use site::{HASH_FILE, OUTPUT_NAME, PKG};

const USAGE: &str = "usage: cargo xtask build [--site-only]

  build          the browser bundle into target/site (hashed, precompressed) and, at the
                 same time, the release server, target/release/reeltime
  --site-only    the browser bundle only";

fn main() {
    if let Err(err) = run(std::env::args().skip(1).collect()) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

fn run(args: Vec<String>) -> Result<()> {
    let (command, flags) = args
        .split_first()
        .map_or(("", &[][..]), |(c, f)| (c.as_str(), f));
    if command != "build" {
        bail!("{USAGE}");
    }
    let site_only = match flags {
        [] => false,
        [flag] if flag == "--site-only" => true,
        _ => bail!("{USAGE}"),
    };
    let root = workspace_root()?;
    let started = Instant::now();
    let site_root = root.join("target/site");
    site::empty(&site_root)?;
    let pkg = site_root.join(PKG);
    std::fs::create_dir_all(&pkg).with_context(|| format!("creating {}", pkg.display()))?;

    // Started first and awaited last (see the invariants above); dropped, it is stopped.
    let server = if site_only {
        None
    } else {
        step("release server, alongside: cargo build --release -p server --bin reeltime");
        Some(tools::Background::cargo(
            &root,
            &["build", "--release", "-p", "server", "--bin", "reeltime"],
        )?)
    };

    step("browser bundle: cargo build -p frontend (wasm32, profile wasm-release)");
    let wasm = bundle::compile(&root)?;
    step("wasm-bindgen, wasm-opt -Oz, esbuild --minify");
    bundle::bind(&root, &wasm, &pkg)?;
    step("stylesheet (lightningcss) and public files");
    site::stylesheet(
        &root,
        &root.join("style/main.css"),
        &pkg.join(format!("{OUTPUT_NAME}.css")),
    )?;
    site::copy_assets(&root.join("public"), &site_root)?;
    step("content hashes and precompressed copies");
    let hashes = site::hash_bundle(&pkg)?;
    std::fs::write(site_root.join(HASH_FILE), hashes.to_string())?;
    site::precompress(&site_root)?;
    println!(
        "    site built in {:.0?}: {}",
        started.elapsed(),
        site_root.display()
    );

    if let Some(server) = server {
        step("waiting for the release server's build");
        server.wait()?;
        println!("    done in {:.0?}", started.elapsed());
    }
    Ok(())
}

fn step(what: &str) {
    println!("\n==> {what}");
}

/// The workspace this task belongs to (the parent of `xtask/`).
fn workspace_root() -> Result<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .context("xtask/ has no parent folder")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anything_but_build_is_refused_with_the_usage() {
        for args in [vec![], vec!["dist"], vec!["build", "--release"]] {
            let err = run(args.into_iter().map(String::from).collect()).unwrap_err();
            assert!(
                err.to_string().starts_with("usage: cargo xtask build"),
                "{err}"
            );
        }
    }
}
