//! A Postgres cluster of the suite's own: `initdb` into a temporary directory, started and
//! restarted with `pg_ctl` (as the `postgres` user when the suite runs as root), on a port of
//! its own. Nothing else uses it, so it can be restarted, killed and filled up.

use std::path::{Path, PathBuf};
use std::process::Command;

use sqlx::{Connection, Executor, PgConnection};

use crate::Result;

pub struct PrivatePg {
    pub dir: PathBuf,
    pub port: u16,
    /// Extra `-c name=value` settings for the server.
    pub settings: String,
    bindir: PathBuf,
    /// The data directory (under `dir`, or elsewhere: a small file system for the full-disk
    /// scenario).
    data: PathBuf,
}

impl PrivatePg {
    /// A new cluster in a fresh temporary directory, started.
    pub async fn start() -> Result<PrivatePg> {
        let dir = std::env::temp_dir().join(format!("reeltime-chaos-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let data = dir.join("data");
        PrivatePg::start_in(dir, data, &[], "").await
    }

    /// A new cluster whose data directory is `data` (which may not exist yet), with extra
    /// `initdb` arguments and settings.
    pub async fn start_in(
        dir: PathBuf,
        data: PathBuf,
        initdb_args: &[&str],
        settings: &str,
    ) -> Result<PrivatePg> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?;
        let bindir = server::embedded_pg::find_bindir()?;
        let pg = PrivatePg {
            port: super::free_port()?,
            dir,
            settings: settings.to_owned(),
            bindir,
            data,
        };
        if let Some(parent) = pg.data.parent() {
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o777))?;
        }
        let initdb = pg.bindir.join("initdb");
        let mut args = vec![
            "-D".to_owned(),
            pg.data.display().to_string(),
            "-U".into(),
            "postgres".into(),
            "-A".into(),
            "trust".into(),
            "--locale=C".into(),
        ];
        args.extend(initdb_args.iter().map(|a| a.to_string()));
        pg.run(&initdb, &args)?;
        pg.pg_ctl(&["start", "-w", "-t", "60"])?;
        Ok(pg)
    }

    fn run(&self, program: &Path, args: &[String]) -> Result<()> {
        let mut command = if unsafe { libc::geteuid() } == 0 {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        let output = command.args(args).output()?;
        if !output.status.success() {
            return Err(format!(
                "{} {}: {}",
                program.display(),
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            )
            .into());
        }
        Ok(())
    }

    /// `pg_ctl <args>` on this cluster, with its options.
    pub fn pg_ctl(&self, args: &[&str]) -> Result<()> {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend([
            "-D".into(),
            self.data.display().to_string(),
            "-l".into(),
            self.dir.join("postgres.log").display().to_string(),
            "-o".into(),
            format!(
                "-h 127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=600 -c shared_buffers=64MB {}",
                self.port,
                self.dir.display(),
                self.settings
            ),
        ]);
        self.run(&self.bindir.join("pg_ctl"), &all)
    }

    /// Restart with a `fast` or `immediate` shutdown.
    pub fn restart(&self, mode: &str) -> Result<()> {
        self.pg_ctl(&["restart", "-w", "-t", "60", "-m", mode])
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A fresh database; its URL.
    pub async fn database(&self, name: &str) -> Result<String> {
        let mut admin = PgConnection::connect(&self.url("postgres")).await?;
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                "drop database if exists {name} with (force)"
            )))
            .await?;
        admin
            .execute(sqlx::AssertSqlSafe(format!("create database {name}")))
            .await?;
        Ok(self.url(name))
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
