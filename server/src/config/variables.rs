//! Every variable Reeltime reads, with its default and what it does: `reeltime --help` prints
//! this list, and [`super::Settings::from_lookup`] takes each default from it.

/// A variable Reeltime reads: its name, its default, and what it does.
pub struct Variable {
    pub name: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

pub const VARIABLES: &[Variable] = &[
    Variable {
        name: "REELTIME_HOST",
        default: "127.0.0.1",
        help: "Address to listen on (0.0.0.0 for every interface).",
    },
    Variable {
        name: "REELTIME_PORT",
        default: "3000",
        help: "Port to listen on; 0 picks a free one.",
    },
    Variable {
        name: "DATABASE_URL",
        default: "(unset: embedded Postgres)",
        help: "Postgres to use, e.g. postgres://user:pass@host:5432/db?sslmode=require. \
               Unset, Reeltime runs its own Postgres in REELTIME_DATA_DIR.",
    },
    Variable {
        name: "REELTIME_DATA_DIR",
        default: ".reeltime",
        help: "Where Reeltime keeps its files; the embedded Postgres lives in <dir>/postgres.",
    },
    Variable {
        name: "REELTIME_STORAGE_URL",
        default: "(unset: <data dir>/processor on this machine)",
        help: "Where outputs are kept: s3://<bucket>/<prefix> for any S3-compatible store \
               (credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION or the \
               machine's role), or file:///<folder>. Every instance must name the same store \
               to serve each other's outputs.",
    },
    Variable {
        name: "REELTIME_STORAGE_ENDPOINT",
        default: "(unset: AWS)",
        help: "The URL of an S3-compatible service (MinIO, Cloudflare R2, Supabase Storage), \
               e.g. http://minio.internal:9000; AWS_ENDPOINT_URL is read too.",
    },
    Variable {
        name: "REELTIME_PUBLIC_URL",
        default: "http://<host>:<port>",
        help: "The URL people and webhooks reach this server at. Required when listening on \
               every interface (0.0.0.0 or ::); https makes cookies Secure and sends HSTS.",
    },
    Variable {
        name: "REELTIME_DB_MAX_CONNECTIONS",
        default: "10",
        help: "Largest number of pooled database connections.",
    },
    Variable {
        name: "REELTIME_EVENTS_BUFFER",
        default: "1024",
        help: "How many changes a live client may fall behind before it is sent a reset.",
    },
    Variable {
        name: "REELTIME_CHANGE_RETENTION_SECS",
        default: "86400",
        help: "How long the change log keeps entries for clients to resume from, in seconds.",
    },
    Variable {
        name: "ITTYBIT_API_KEY",
        default: "(unset: the built-in processor)",
        help: "Ittybit API key; with it, pending jobs are sent to Ittybit. Unset, they go to \
               the built-in processor (ffmpeg), served by this server at /ittybit-local.",
    },
    Variable {
        name: "ITTYBIT_API_URL",
        default: "https://api.ittybit.com",
        help: "Ittybit's base URL.",
    },
    Variable {
        name: "ITTYBIT_API_VERSION",
        default: "(unset: the account default)",
        help: "Sent as Accept-Version, e.g. 2024-08-21.",
    },
    Variable {
        name: "ITTYBIT_WEBHOOK_SECRET",
        default: "(unset: refused, or random for the built-in processor)",
        help: "The secret Ittybit signs webhooks with (HMAC-SHA256); at least 32 bytes.",
    },
    Variable {
        name: "ITTYBIT_TIMEOUT_SECS",
        default: "30",
        help: "How long one call to Ittybit may take.",
    },
    Variable {
        name: "REELTIME_DISPATCH_MAX_ATTEMPTS",
        default: "8",
        help: "Calls to Ittybit per job before a job that keeps failing transiently is failed.",
    },
    Variable {
        name: "REELTIME_DISPATCH_BACKOFF_MS",
        default: "2000",
        help: "First retry delay; it doubles per attempt (with jitter), up to 10 minutes.",
    },
    Variable {
        name: "REELTIME_DISPATCH_LEASE_SECS",
        default: "120",
        help: "How long a claimed job is left to its dispatcher before another may retry it.",
    },
    Variable {
        name: "REELTIME_DISPATCH_CONCURRENCY",
        default: "8",
        help: "How many calls to Ittybit (or the built-in processor) one instance makes at once.",
    },
    Variable {
        name: "REELTIME_RECONCILE_AFTER_SECS",
        default: "600",
        help: "A queued or processing job with no news for this long is read back from Ittybit.",
    },
    Variable {
        name: "REELTIME_PROCESSOR",
        default: "on",
        help: "on: run the built-in processor when ITTYBIT_API_KEY is unset; off: never \
               (jobs then stay pending until an instance that dispatches picks them up).",
    },
    Variable {
        name: "REELTIME_PROCESSOR_WORKERS",
        default: "(the number of CPU cores)",
        help: "Jobs the built-in processor runs at once in this process; the rest wait in its \
               queue. 0: none here, `reeltime worker` processes run them.",
    },
    Variable {
        name: "REELTIME_PROCESSOR_ALLOW_PRIVATE",
        default: "false",
        help: "true lets the built-in processor fetch inputs from private, loopback and \
               link-local addresses (it fetches whatever URL people submit).",
    },
    Variable {
        name: "REELTIME_PROCESSOR_MAX_INPUT_MB",
        default: "2048",
        help: "Largest input the built-in processor downloads, in megabytes.",
    },
    Variable {
        name: "REELTIME_PROCESSOR_MAX_DURATION_SECS",
        default: "7200",
        help: "Longest input the built-in processor accepts, in seconds.",
    },
    Variable {
        name: "REELTIME_PROCESSOR_FFMPEG",
        default: "ffmpeg",
        help: "The ffmpeg program the built-in processor runs (a name on PATH or a path).",
    },
    Variable {
        name: "REELTIME_PROCESSOR_FFPROBE",
        default: "ffprobe",
        help: "The ffprobe program the built-in processor runs (a name on PATH or a path).",
    },
    Variable {
        name: "REELTIME_PROCESSOR_LEASE_SECS",
        default: "30",
        help: "How long a job stays its worker's without a heartbeat; a job whose worker died \
               is taken by another this long after its last heartbeat.",
    },
    Variable {
        name: "REELTIME_PROCESSOR_TIME_LIMIT_SECS",
        default: "(unset: 300 s plus 10x the input's length, 40x for VP9, 2x for audio)",
        help: "The longest one ffmpeg run may take, in seconds; then it is stopped and the \
               job fails.",
    },
    Variable {
        name: "REELTIME_PROCESSOR_STALL_SECS",
        default: "120",
        help: "An ffmpeg that reports no progress for this many seconds is stopped and its \
               job fails as stalled.",
    },
    Variable {
        name: "REELTIME_PROCESSOR_USER",
        default: "(when run as root: nobody)",
        help: "The unprivileged user ffmpeg and ffprobe run as when the server runs as root.",
    },
    Variable {
        name: "REELTIME_PROCESSOR_NICE",
        default: "10",
        help: "The CPU priority (nice, 0-19) of ffmpeg and ffprobe, so the dashboard stays \
               responsive while every core transcodes.",
    },
    Variable {
        name: "REELTIME_PROCESSOR_IDLE_CPU",
        default: "on",
        help: "Run ffmpeg and ffprobe in the idle CPU class (SCHED_IDLE): they use only CPU \
               time the dashboard and the database leave, so pages answer as fast as on an \
               idle machine; off: they compete, niced.",
    },
    Variable {
        name: "REELTIME_PROCESSOR_MEMORY_MB",
        default: "4096",
        help: "The most memory (address space) one ffmpeg or ffprobe may map, in megabytes.",
    },
    Variable {
        name: "REELTIME_PROCESSOR_THREADS",
        default: "(unset: ffmpeg's own, from the number of cores)",
        help: "The most threads one ffmpeg uses to decode, and to encode.",
    },
    Variable {
        name: "REELTIME_MIN_FREE_DISK_MB",
        default: "1024",
        help: "Free space (MB) the data directory's disk keeps for the embedded Postgres: \
               below it the built-in processor fails new jobs and /readyz warns; 0: no floor.",
    },
    Variable {
        name: "REELTIME_SAMPLE_CLIP",
        default: "on",
        help: "on: write a 10 s 1080p test clip into <data dir>/samples at start (once) and \
               offer it on the empty dashboard; off: don't.",
    },
    Variable {
        name: "REELTIME_SESSION_HOURS",
        default: "168",
        help: "A session ends after this many hours without use (people sign in again).",
    },
    Variable {
        name: "REELTIME_SIGN_INS_PER_MINUTE",
        default: "10",
        help: "Sign-in attempts allowed per account per minute (three times as many per client \
               address); more are answered 429 with Retry-After.",
    },
    Variable {
        name: "REELTIME_SUBMISSIONS_PER_MINUTE",
        default: "60",
        help: "Jobs one person may submit per minute.",
    },
    Variable {
        name: "REELTIME_STREAMS_PER_USER",
        default: "20",
        help: "Live event streams (open dashboards, scripts) one person may hold open at once.",
    },
    Variable {
        name: "REELTIME_KEEP_JOBS_DAYS",
        default: "30",
        help: "Finished jobs are deleted after this many days.",
    },
    Variable {
        name: "REELTIME_KEEP_OUTPUTS_DAYS",
        default: "30",
        help: "The built-in processor deletes its output files after this many days.",
    },
    Variable {
        name: "REELTIME_KEEP_DELIVERIES_DAYS",
        default: "30",
        help: "The log of webhook deliveries keeps this many days.",
    },
    Variable {
        name: "REELTIME_METRICS_TOKEN",
        default: "(unset: admins' sessions and tokens only)",
        help: "A bearer token (32 bytes or more) that may read GET /metrics and nothing else, \
               for Prometheus.",
    },
    Variable {
        name: "REELTIME_TRUSTED_PROXIES",
        default: "(none)",
        help: "Reverse proxies whose X-Forwarded-For is believed: addresses or networks, \
               comma-separated (e.g. 127.0.0.1,::1). From anyone else it is ignored.",
    },
    Variable {
        name: "LEPTOS_SITE_ROOT",
        default: "target/site",
        help: "Folder holding the built browser bundle (pkg/) and public assets.",
    },
    Variable {
        name: "RUST_LOG",
        default: "info,sqlx=warn,tower_http=info",
        help: "Log filter (tracing-subscriber EnvFilter syntax).",
    },
];
