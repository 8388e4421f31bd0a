use std::process::ExitCode;

use server::config::{help_text, Settings};
use server::startup::{shutdown_signal, Application};
use server::telemetry;
use server::{cli, worker_process};

/// jemalloc, not glibc's malloc (decision 016). Connecting 10,000 dashboards allocates tens of
/// megabytes that live only while each request is checked (sessions, the gate, the pool's
/// queue); glibc keeps those pages after they are freed, so they stay in the resident set for as
/// long as the idle streams do. jemalloc returns them within about a second.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main` (its `malloc_conf`, under the prefix tikv-jemalloc-sys
/// builds it with): a background thread purges freed pages, dirty ones after 1 s and without
/// the "muzzy" stage, so memory freed in a burst leaves the resident set without waiting for the
/// next allocation. `_RJEM_MALLOC_CONF` in the environment still overrides each option.
#[export_name = "_rjem_malloc_conf"]
#[used]
static MALLOC_CONF: Option<&u8> =
    Some(&b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0"[0]);

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("-h" | "--help") => {
            print!("{}", help_text());
            return ExitCode::SUCCESS;
        }
        Some("-V" | "--version") => {
            println!("reeltime {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some("user") => return user(&args[1..]).await,
        Some("worker") => return worker().await,
        Some("serve") | None => {}
        Some(other) => {
            eprintln!("reeltime: unknown argument {other:?}\n\n{}", help_text());
            return ExitCode::from(2);
        }
    }

    let settings = match load_settings() {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    telemetry::init(&settings.log_filter);
    raise_open_file_limit();

    // The embedded Postgres (if any) is started, and restarted, from a thread of its own that
    // lives as long as the server: Linux ties its parent-death signal to that thread.
    let app = match Application::build(&settings).await {
        Ok(app) => app,
        Err(err) => {
            tracing::error!("could not start: {err}");
            eprintln!("reeltime: could not start: {err}");
            return ExitCode::FAILURE;
        }
    };
    // Listening for signals before saying we run: a signal right after is a clean stop.
    let shutdown = shutdown_signal();
    let url = settings.public_url_or(app.port());
    if let Some(link) = app.setup_link() {
        // On standard output only: the link is a one-time secret, and logs travel further.
        println!(
            "No account exists yet. Open this link to create the first admin (it works once, \
             for 24 hours):\n  {link}"
        );
    }
    tracing::info!("Reeltime is running at {url}");
    println!("Reeltime is running at {url}");

    match app.run_until_stopped(shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("server error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The settings from the environment, or exit code 2 with the bad variable named.
fn load_settings() -> Result<Settings, ExitCode> {
    Settings::from_env().map_err(|err| {
        eprintln!("reeltime: configuration error: {err}");
        ExitCode::from(2)
    })
}

/// `reeltime worker`: processor workers only, no web server.
async fn worker() -> ExitCode {
    let settings = match load_settings() {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    telemetry::init(&settings.log_filter);
    match worker_process::run(&settings, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("the worker stopped: {err}");
            eprintln!("reeltime worker: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `reeltime user …`.
async fn user(args: &[String]) -> ExitCode {
    let settings = match load_settings() {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    match cli::user(&settings, args).await {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!("reeltime user: {problem}");
            ExitCode::FAILURE
        }
    }
}

/// Every live dashboard holds a connection open: allow as many as the system lets us.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            let wanted = limit.rlim_max;
            limit.rlim_cur = wanted;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                tracing::debug!(open_files = wanted, "raised the open-file limit");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// The options in `MALLOC_CONF` reached jemalloc: a misspelt symbol would leave its defaults
    /// (no background thread, 10 s decay) without an error.
    #[test]
    fn jemalloc_runs_with_the_options_main_sets() {
        // mallctl initialises jemalloc itself if nothing has allocated yet.
        assert!(tikv_jemalloc_ctl::opt::background_thread::read().unwrap());
        assert!(tikv_jemalloc_ctl::background_thread::read().unwrap());
        // SAFETY: both options are `ssize_t`, the type read.
        let (dirty, muzzy) = unsafe {
            (
                tikv_jemalloc_ctl::raw::read::<isize>(b"opt.dirty_decay_ms\0").unwrap(),
                tikv_jemalloc_ctl::raw::read::<isize>(b"opt.muzzy_decay_ms\0").unwrap(),
            )
        };
        assert_eq!((dirty, muzzy), (1000, 0));
    }
}
