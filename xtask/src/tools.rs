//! The programs the build runs: cargo itself, and the npm tools scripts/lib.sh installs into
//! `.tools/npm` (wasm-opt, esbuild, lightningcss). Each runs with the terminal as its output,
//! and a failure stops the build with the program's name.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use anyhow::{bail, Context, Result};

/// Runs cargo (the one that runs this task) in the workspace; its output goes to the terminal.
pub fn cargo(root: &Path, args: &[&str]) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(args)
        .current_dir(root)
        .status()
        .context("starting cargo")?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// A cargo run in the background, its output going to the terminal too. Stopped if dropped
/// before [`Background::wait`], so a failed bundle step does not leave a build running.
pub struct Background {
    child: Option<Child>,
    what: String,
}

impl Background {
    /// Starts cargo (the one that runs this task) in the workspace with `args`.
    pub fn cargo(root: &Path, args: &[&str]) -> Result<Background> {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let child = Command::new(cargo)
            .args(args)
            .current_dir(root)
            .spawn()
            .context("starting cargo")?;
        Ok(Background {
            child: Some(child),
            what: format!("cargo {}", args.join(" ")),
        })
    }

    /// Waits for it to end; an error if it failed.
    pub fn wait(mut self) -> Result<()> {
        let mut child = self.child.take().expect("waited once");
        let status = child
            .wait()
            .with_context(|| format!("waiting for {}", self.what))?;
        if !status.success() {
            bail!("{} failed ({status})", self.what);
        }
        Ok(())
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs a tool from npm's `.tools/npm` (installed by scripts/lib.sh), else from PATH.
pub fn tool(root: &Path, name: &str, args: &[&std::ffi::OsStr]) -> Result<()> {
    let local = root.join(".tools/npm/node_modules/.bin").join(name);
    let program = if local.exists() {
        local
    } else {
        PathBuf::from(name)
    };
    let status = Command::new(&program)
        .args(args)
        .status()
        .with_context(|| {
            format!(
                "starting {name} (install it with `source scripts/lib.sh && ensure_build_tools`)"
            )
        })?;
    if !status.success() {
        bail!("{name} failed ({status})");
    }
    Ok(())
}
