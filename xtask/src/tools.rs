//! The programs the build runs: cargo itself, and the npm tools scripts/lib.sh installs into
//! `.tools/npm` (wasm-opt, esbuild, lightningcss). Each runs with the terminal as its output,
//! and a failure stops the build with the program's name.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use anyhow::{bail, Context, Result};

/// Runs cargo (the one that runs this task) in the workspace; its output goes to the terminal.
pub fn cargo(root: &Path, args: &[&str]) -> Result<()> {
    Background::cargo(root, args)?.wait()
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
        let mut command = Command::new(cargo);
        command.args(args).current_dir(root);
        Background::spawn(command, format!("cargo {}", args.join(" ")))
    }

    /// Starts `command`, named `what` in errors.
    fn spawn(mut command: Command, what: String) -> Result<Background> {
        let child = command
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        Ok(Background {
            child: Some(child),
            what,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_run_is_an_error_that_names_it() {
        let err = Background::spawn(Command::new("false"), "false".into())
            .unwrap()
            .wait()
            .unwrap_err();
        assert!(err.to_string().starts_with("false failed"), "{err}");
    }

    #[test]
    fn a_run_dropped_before_its_end_is_stopped() {
        let mut sleep = Command::new("sleep");
        sleep.arg("60");
        let run = Background::spawn(sleep, "sleep 60".into()).unwrap();
        let pid = run.child.as_ref().unwrap().id();
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        drop(run);
        // Killed and reaped, so the process is gone (not even a zombie).
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }
}
