//! `chaos [--full]`: the fault and load suite. Every scenario runs the release server
//! (`REELTIME_BIN`, default `target/release/reeltime`) against a Postgres cluster of the
//! suite's own (initdb'd in a temporary directory and started with `pg_ctl`, so it can be
//! restarted and filled up without touching any other database), and checks the claim in its
//! name; the figures go to standard output as a Markdown table for `docs/reliability.md`.
//!
//! The short form (the default) is sized to run in a few minutes inside `scripts/test.sh`;
//! `--full` runs the sizes of issue 14 (and the 10-minute idle-client soak). `--only NAME`
//! runs one scenario. The command exits non-zero when any scenario fails.

mod clients;
mod disk;
mod dispatch;
mod feed;
mod pg;

use std::time::{Duration, Instant};

use crate::Result;

/// How big each scenario is.
#[derive(Clone, Copy, Debug)]
pub struct Size {
    pub full: bool,
}

impl Size {
    /// `short` in the short form, `full` in the full one.
    pub fn pick<T>(self, short: T, full: T) -> T {
        if self.full {
            full
        } else {
            short
        }
    }
}

/// One scenario's outcome: what was done, how many, what was lost.
pub struct Outcome {
    pub scenario: &'static str,
    pub done: String,
    pub figures: String,
    pub lost: String,
    pub passed: bool,
}

type Scenario = (
    &'static str,
    bool,
    fn(Size) -> futures::future::BoxFuture<'static, Result<Outcome>>,
);

const SCENARIOS: &[Scenario] = &[
    ("sigkill", false, |s| Box::pin(feed::sigkill(s))),
    ("postgres-restart", false, |s| {
        Box::pin(feed::postgres_restart(s))
    }),
    ("ittybit-outage", false, |s| {
        Box::pin(dispatch::ittybit_outage(s))
    }),
    ("callbacks", false, |s| Box::pin(dispatch::callbacks(s))),
    ("lost-webhook", false, |s| {
        Box::pin(dispatch::lost_webhook(s))
    }),
    ("two-instances", false, |s| {
        Box::pin(dispatch::two_instances(s))
    }),
    ("reconnect-storm", false, |s| {
        Box::pin(feed::reconnect_storm(s))
    }),
    ("idle-clients", true, |s| Box::pin(feed::idle_clients(s))),
    ("full-disk", false, |s| Box::pin(disk::full_disk(s))),
    ("schemathesis", false, |s| {
        Box::pin(dispatch::schemathesis(s))
    }),
];

pub async fn chaos(args: &[String]) -> Result<()> {
    let size = Size {
        full: args.iter().any(|a| a == "--full"),
    };
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    crate::raise_open_file_limit();
    let started = Instant::now();
    let mut outcomes = Vec::new();
    for (name, full_only, run) in SCENARIOS {
        if only.as_deref().is_some_and(|o| o != *name)
            || (*full_only && !size.full && only.is_none())
        {
            continue;
        }
        println!("\n== {name}");
        let began = Instant::now();
        let outcome = match run(size).await {
            Ok(outcome) => outcome,
            Err(err) => Outcome {
                scenario: name,
                done: "did not complete".into(),
                figures: String::new(),
                lost: format!("error: {err}"),
                passed: false,
            },
        };
        println!(
            "{} {name} in {:.0} s: {} | {} | {}",
            if outcome.passed { "PASS" } else { "FAIL" },
            began.elapsed().as_secs_f64(),
            outcome.done,
            outcome.figures,
            outcome.lost
        );
        outcomes.push(outcome);
    }
    println!(
        "\n| scenario | what was done | figures | lost / wrong | result |\n| --- | --- | --- | --- | --- |"
    );
    for o in &outcomes {
        println!(
            "| {} | {} | {} | {} | {} |",
            o.scenario,
            o.done,
            o.figures,
            o.lost,
            if o.passed { "pass" } else { "FAIL" }
        );
    }
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    println!(
        "\n{} scenarios in {:.0} s ({}): {} passed, {} failed",
        outcomes.len(),
        started.elapsed().as_secs_f64(),
        if size.full { "full" } else { "short" },
        outcomes.len() - failed,
        failed
    );
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}

/// A free TCP port on loopback (for a server that must come back on the same address).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Poll `check` every 50 ms until it gives `Some`, or fail after `within` naming `what`.
pub async fn wait_for<T, F, Fut>(within: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            return Err(format!("{what}: not within {within:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
