//! Typed settings, read from the environment.
//!
//! Every variable is listed in [`VARIABLES`], which `reeltime --help` prints; a bad value stops
//! start-up with a message that names the variable.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

pub use processor::{ProcessorBounds, DEFAULT_USER};
pub use variables::{Variable, VARIABLES};

mod processor;
mod storage;
mod variables;

/// Ittybit: where it is, how to call it, how to verify it, and how hard to try.
#[derive(Clone)]
pub struct IttybitSettings {
    pub api_key: Option<SecretString>,
    pub api_url: String,
    pub api_version: Option<String>,
    pub webhook_secret: Option<SecretString>,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub backoff: Duration,
    pub lease: Duration,
    pub reconcile_after: Duration,
    /// Calls to the service one instance makes at once.
    pub dispatch_concurrency: usize,
}

/// The built-in processor's settings.
#[derive(Clone, Debug)]
pub struct LocalProcessorSettings {
    /// Whether it runs when no API key is set.
    pub enabled: bool,
    pub workers: usize,
    pub allow_private: bool,
    pub max_input_bytes: u64,
    pub max_duration: Duration,
    pub sample_clip: bool,
    pub ffmpeg: String,
    pub ffprobe: String,
    /// The lease, the time limits and how ffmpeg is confined.
    pub bounds: ProcessorBounds,
    /// Below this much free space (in MB) on the data directory no new job starts; 0: no floor.
    pub min_free_disk_mb: u64,
}

/// Accounts and access.
#[derive(Clone, Debug)]
pub struct AccessSettings {
    pub session_idle: Duration,
    pub sign_ins_per_minute: u32,
    pub submissions_per_minute: u32,
    pub streams_per_user: usize,
}

/// How long things are kept.
#[derive(Clone, Debug)]
pub struct Retention {
    pub jobs: Duration,
    pub outputs: Duration,
    pub deliveries: Duration,
}

/// The shortest webhook secret accepted: an HMAC key should be as long as the hash.
pub const MIN_WEBHOOK_SECRET_BYTES: usize = 32;

#[derive(Clone)]
pub struct Settings {
    pub host: IpAddr,
    pub port: u16,
    pub database_url: Option<SecretString>,
    pub data_dir: PathBuf,
    /// Without a trailing slash.
    pub public_url: Option<String>,
    pub db_max_connections: u32,
    pub events_buffer: usize,
    pub ittybit: IttybitSettings,
    pub processor: LocalProcessorSettings,
    pub change_retention: Duration,
    pub access: AccessSettings,
    pub retention: Retention,
    pub site_root: PathBuf,
    pub log_filter: String,
    /// Whose `X-Forwarded-For` is believed.
    pub trusted_proxies: crate::proxy::TrustedProxies,
    /// Reads `/metrics` (and nothing else).
    pub metrics_token: Option<SecretString>,
    /// Where files (the built-in processor's outputs) are kept.
    pub storage: crate::storage::StorageSettings,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field(
                "database_url",
                &self.database_url.as_ref().map(|_| "[redacted]"),
            )
            .field("data_dir", &self.data_dir)
            .field("public_url", &self.public_url)
            .field("db_max_connections", &self.db_max_connections)
            .field("events_buffer", &self.events_buffer)
            .field(
                "ittybit_api_key",
                &self.ittybit.api_key.as_ref().map(|_| "[redacted]"),
            )
            .field("ittybit_api_url", &self.ittybit.api_url)
            .field(
                "ittybit_webhook_secret",
                &self.ittybit.webhook_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("processor", &self.processor)
            .field("change_retention", &self.change_retention)
            .field("access", &self.access)
            .field("retention", &self.retention)
            .field("site_root", &self.site_root)
            .field("trusted_proxies", &self.trusted_proxies)
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "[redacted]"),
            )
            .field("storage", &self.storage)
            .finish()
    }
}

/// A variable whose value could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {problem}")]
pub struct ConfigError {
    pub name: &'static str,
    pub problem: String,
}

impl Settings {
    /// Settings from the process environment.
    pub fn from_env() -> Result<Settings, ConfigError> {
        Settings::from_lookup(|name| std::env::var(name).ok())
    }

    /// Settings from any source of variables (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let var = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        // The variable's value, or its documented default.
        let value = |name: &str| {
            var(name).unwrap_or_else(|| {
                VARIABLES
                    .iter()
                    .find(|v| v.name == name)
                    .map(|v| v.default.to_owned())
                    .unwrap_or_default()
            })
        };
        let whole = |name: &'static str| parse::<u64>(name, value(name), "a whole number");
        let duration_secs = |name: &'static str| whole(name).map(|s| Duration::from_secs(s.max(1)));

        let database_url = match var("DATABASE_URL") {
            None => None,
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Some(SecretString::from(url))
            }
            Some(_) => {
                // The value may hold a password: never echo it.
                return Err(ConfigError {
                    name: "DATABASE_URL",
                    problem: "must start with postgres:// or postgresql://".into(),
                });
            }
        };
        let webhook_secret = var("ITTYBIT_WEBHOOK_SECRET");
        if let Some(secret) = &webhook_secret {
            if secret.len() < MIN_WEBHOOK_SECRET_BYTES {
                return Err(ConfigError {
                    name: "ITTYBIT_WEBHOOK_SECRET",
                    problem: format!(
                        "is {} bytes long; use at least {MIN_WEBHOOK_SECRET_BYTES} \
                         (e.g. `openssl rand -hex 32`)",
                        secret.len()
                    ),
                });
            }
        }
        let days = |name: &'static str| {
            at_least_one(name, whole(name)?).map(|d| Duration::from_secs(d.saturating_mul(86_400)))
        };
        let access = AccessSettings {
            session_idle: Duration::from_secs(
                at_least_one("REELTIME_SESSION_HOURS", whole("REELTIME_SESSION_HOURS")?)?
                    .saturating_mul(3600),
            ),
            sign_ins_per_minute: at_least_one(
                "REELTIME_SIGN_INS_PER_MINUTE",
                whole("REELTIME_SIGN_INS_PER_MINUTE")?,
            )?
            .min(u64::from(u32::MAX)) as u32,
            submissions_per_minute: at_least_one(
                "REELTIME_SUBMISSIONS_PER_MINUTE",
                whole("REELTIME_SUBMISSIONS_PER_MINUTE")?,
            )?
            .min(u64::from(u32::MAX)) as u32,
            streams_per_user: at_least_one(
                "REELTIME_STREAMS_PER_USER",
                whole("REELTIME_STREAMS_PER_USER")?,
            )? as usize,
        };
        let retention = Retention {
            jobs: days("REELTIME_KEEP_JOBS_DAYS")?,
            outputs: days("REELTIME_KEEP_OUTPUTS_DAYS")?,
            deliveries: days("REELTIME_KEEP_DELIVERIES_DAYS")?,
        };
        let ittybit = IttybitSettings {
            api_key: var("ITTYBIT_API_KEY").map(SecretString::from),
            api_url: http_url("ITTYBIT_API_URL", value("ITTYBIT_API_URL"))?,
            api_version: var("ITTYBIT_API_VERSION"),
            webhook_secret: webhook_secret.map(SecretString::from),
            timeout: duration_secs("ITTYBIT_TIMEOUT_SECS")?,
            max_attempts: at_least_one(
                "REELTIME_DISPATCH_MAX_ATTEMPTS",
                whole("REELTIME_DISPATCH_MAX_ATTEMPTS")?,
            )? as u32,
            backoff: Duration::from_millis(whole("REELTIME_DISPATCH_BACKOFF_MS")?),
            lease: duration_secs("REELTIME_DISPATCH_LEASE_SECS")?,
            reconcile_after: duration_secs("REELTIME_RECONCILE_AFTER_SECS")?,
            dispatch_concurrency: at_least_one(
                "REELTIME_DISPATCH_CONCURRENCY",
                whole("REELTIME_DISPATCH_CONCURRENCY")?,
            )? as usize,
        };
        let workers = match var("REELTIME_PROCESSOR_WORKERS") {
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
            // 0: this instance runs none; `reeltime worker` processes run the jobs.
            Some(n) => parse::<u64>("REELTIME_PROCESSOR_WORKERS", n, "a whole number")? as usize,
        };
        let processor = LocalProcessorSettings {
            enabled: switch("REELTIME_PROCESSOR", value("REELTIME_PROCESSOR"))?,
            workers,
            allow_private: switch(
                "REELTIME_PROCESSOR_ALLOW_PRIVATE",
                value("REELTIME_PROCESSOR_ALLOW_PRIVATE"),
            )?,
            max_input_bytes: at_least_one(
                "REELTIME_PROCESSOR_MAX_INPUT_MB",
                whole("REELTIME_PROCESSOR_MAX_INPUT_MB")?,
            )?
            .saturating_mul(1024 * 1024),
            max_duration: duration_secs("REELTIME_PROCESSOR_MAX_DURATION_SECS")?,
            sample_clip: switch("REELTIME_SAMPLE_CLIP", value("REELTIME_SAMPLE_CLIP"))?,
            ffmpeg: value("REELTIME_PROCESSOR_FFMPEG"),
            ffprobe: value("REELTIME_PROCESSOR_FFPROBE"),
            bounds: processor::bounds(&var, &value, crate::unix_user::is_root())?,
            min_free_disk_mb: whole("REELTIME_MIN_FREE_DISK_MB")?,
        };
        let host: IpAddr = parse("REELTIME_HOST", value("REELTIME_HOST"), "an IP address")?;
        let public_url = var("REELTIME_PUBLIC_URL")
            .map(|url| http_url("REELTIME_PUBLIC_URL", url))
            .transpose()?;
        if host.is_unspecified() && public_url.is_none() {
            return Err(ConfigError {
                name: "REELTIME_PUBLIC_URL",
                problem: format!(
                    "must be set when listening on every interface (REELTIME_HOST={host}): \
                     it is the address people, webhooks and the browser's security checks use, \
                     e.g. https://reeltime.example.com"
                ),
            });
        }
        let trusted_proxies = crate::proxy::TrustedProxies::parse(
            &var("REELTIME_TRUSTED_PROXIES").unwrap_or_default(),
        )
        .map_err(|problem| ConfigError {
            name: "REELTIME_TRUSTED_PROXIES",
            problem,
        })?;
        let metrics_token = var("REELTIME_METRICS_TOKEN");
        if let Some(token) = &metrics_token {
            if token.len() < MIN_WEBHOOK_SECRET_BYTES {
                return Err(ConfigError {
                    name: "REELTIME_METRICS_TOKEN",
                    problem: format!(
                        "is {} bytes long; use at least {MIN_WEBHOOK_SECRET_BYTES} \
                         (e.g. openssl rand -hex 32)",
                        token.len()
                    ),
                });
            }
        }
        let data_dir = PathBuf::from(value("REELTIME_DATA_DIR"));
        let storage = storage::storage(&var, &data_dir)?;
        Ok(Settings {
            host,
            port: parse(
                "REELTIME_PORT",
                value("REELTIME_PORT"),
                "a port number (0-65535)",
            )?,
            database_url,
            data_dir,
            public_url,
            db_max_connections: at_least_one(
                "REELTIME_DB_MAX_CONNECTIONS",
                whole("REELTIME_DB_MAX_CONNECTIONS")?,
            )? as u32,
            events_buffer: at_least_one("REELTIME_EVENTS_BUFFER", whole("REELTIME_EVENTS_BUFFER")?)?
                as usize,
            change_retention: Duration::from_secs(parse(
                "REELTIME_CHANGE_RETENTION_SECS",
                value("REELTIME_CHANGE_RETENTION_SECS"),
                "a whole number of seconds",
            )?),
            ittybit,
            processor,
            access,
            retention,
            site_root: value("LEPTOS_SITE_ROOT").into(),
            log_filter: value("RUST_LOG"),
            trusted_proxies,
            metrics_token: metrics_token.map(SecretString::from),
            storage,
        })
    }

    /// The public base URL, defaulting to the listening address.
    pub fn public_url_or(&self, port: u16) -> String {
        self.public_url.clone().unwrap_or_else(|| {
            let address = std::net::SocketAddr::new(self.host, port);
            format!("http://{address}")
        })
    }
}

fn parse<T: std::str::FromStr>(
    name: &'static str,
    value: String,
    expected: &str,
) -> Result<T, ConfigError> {
    value.parse().map_err(|_| ConfigError {
        name,
        problem: format!("{value:?} is not {expected}"),
    })
}

/// `on`/`off` (also `true`/`false`, `1`/`0`, `yes`/`no`).
fn switch(name: &'static str, value: String) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "on" | "true" | "1" | "yes" => Ok(true),
        "off" | "false" | "0" | "no" => Ok(false),
        _ => Err(ConfigError {
            name,
            problem: format!("{value:?} is not on or off"),
        }),
    }
}

fn at_least_one(name: &'static str, value: u64) -> Result<u64, ConfigError> {
    if value == 0 {
        return Err(ConfigError {
            name,
            problem: "must be at least 1".into(),
        });
    }
    Ok(value)
}

/// An http(s) URL with a host, without a trailing slash.
fn http_url(name: &'static str, url: String) -> Result<String, ConfigError> {
    let ok = url::Url::parse(&url)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
    if !ok {
        return Err(ConfigError {
            name,
            problem: format!("{url:?} is not an http(s) URL"),
        });
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// The text of `reeltime --help`.
pub fn help_text() -> String {
    let mut out = String::from(
        "Reeltime: a live media-processing dashboard.\n\n\
         Usage: reeltime [serve]               run the server\n\
         \x20      reeltime worker              run only processor workers (no web server),\n\
         \x20                                   joining the web instances through DATABASE_URL\n\
         \x20                                   and REELTIME_STORAGE_URL\n\
         \x20      reeltime user <command>      manage accounts (reeltime user --help)\n\
         \x20      reeltime --help | --version\n\n\
         Configuration comes from environment variables:\n\n",
    );
    let width = VARIABLES.iter().map(|v| v.name.len()).max().unwrap_or(0);
    for v in VARIABLES {
        out.push_str(&format!(
            "  {:width$}  {}\n  {:width$}  default: {}\n",
            v.name, v.help, "", v.default
        ));
    }
    out
}

#[cfg(test)]
mod tests;
