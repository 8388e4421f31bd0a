//! The built-in processor's bounds and confinement, from `REELTIME_PROCESSOR_*` (issue 10):
//! the lease, the time limit and stall watchdog, and how ffmpeg is confined.

use std::time::Duration;

use crate::processor::confine::{Confinement, RunAs};

use super::{at_least_one, parse, switch, ConfigError};

/// The user ffmpeg runs as when the server runs as root and none is set.
pub const DEFAULT_USER: &str = "nobody";

/// Bounds on the processor's runs.
#[derive(Clone, Debug)]
pub struct ProcessorBounds {
    pub lease: Duration,
    pub time_limit: Option<Duration>,
    pub stall: Duration,
    pub confine: Confinement,
}

/// Read the bounds: `var` is a variable's value if set, `value` its value or its default.
pub(super) fn bounds(
    var: &dyn Fn(&str) -> Option<String>,
    value: &dyn Fn(&str) -> String,
    running_as_root: bool,
) -> Result<ProcessorBounds, ConfigError> {
    let whole = |name: &'static str| -> Result<u64, ConfigError> {
        at_least_one(name, parse(name, value(name), "a whole number")?)
    };
    let secs = |name: &'static str| whole(name).map(Duration::from_secs);
    let time_limit = match var("REELTIME_PROCESSOR_TIME_LIMIT_SECS") {
        None => None,
        Some(text) => Some(Duration::from_secs(at_least_one(
            "REELTIME_PROCESSOR_TIME_LIMIT_SECS",
            parse("REELTIME_PROCESSOR_TIME_LIMIT_SECS", text, "a whole number")?,
        )?)),
    };
    let run_as = match (var("REELTIME_PROCESSOR_USER"), running_as_root) {
        (Some(name), false) => {
            return Err(ConfigError {
                name: "REELTIME_PROCESSOR_USER",
                problem: format!(
                    "is {name:?}, but only a server running as root can run ffmpeg as \
                     another user; unset it"
                ),
            })
        }
        (None, false) => None,
        (name, true) => {
            let name = name.unwrap_or_else(|| DEFAULT_USER.to_owned());
            let user = RunAs::named(&name).ok_or_else(|| ConfigError {
                name: "REELTIME_PROCESSOR_USER",
                problem: format!("there is no user named {name:?} on this machine"),
            })?;
            if user.uid == 0 {
                return Err(ConfigError {
                    name: "REELTIME_PROCESSOR_USER",
                    problem: format!("{name:?} is root; name an unprivileged user"),
                });
            }
            Some(user)
        }
    };
    let nice: i32 = parse(
        "REELTIME_PROCESSOR_NICE",
        value("REELTIME_PROCESSOR_NICE"),
        "a whole number from 0 to 19",
    )?;
    if !(0..=19).contains(&nice) {
        return Err(ConfigError {
            name: "REELTIME_PROCESSOR_NICE",
            problem: format!("{nice} is not from 0 to 19"),
        });
    }
    let memory_mb = whole("REELTIME_PROCESSOR_MEMORY_MB")?;
    if memory_mb < 256 {
        return Err(ConfigError {
            name: "REELTIME_PROCESSOR_MEMORY_MB",
            problem: format!("{memory_mb} MB is too little for ffmpeg; use at least 256"),
        });
    }
    // Unset, ffmpeg sizes its own thread pools from the core count (x264 uses 1.5 threads a
    // core and lookahead threads): an explicit `-threads 2` on a 2-core machine made the
    // processor bench's encode 8 % slower.
    let threads = var("REELTIME_PROCESSOR_THREADS")
        .map(|text| {
            at_least_one(
                "REELTIME_PROCESSOR_THREADS",
                parse("REELTIME_PROCESSOR_THREADS", text, "a whole number")?,
            )
            .map(|n| n as usize)
        })
        .transpose()?;
    Ok(ProcessorBounds {
        lease: secs("REELTIME_PROCESSOR_LEASE_SECS")?,
        time_limit,
        stall: secs("REELTIME_PROCESSOR_STALL_SECS")?,
        confine: Confinement {
            run_as,
            nice,
            idle_cpu: switch(
                "REELTIME_PROCESSOR_IDLE_CPU",
                value("REELTIME_PROCESSOR_IDLE_CPU"),
            )?,
            memory_bytes: Some(memory_mb.saturating_mul(1024 * 1024)),
            threads,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(vars: &[(&str, &str)], root: bool) -> Result<ProcessorBounds, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let var = |name: &str| map.get(name).cloned();
        let value = |name: &str| {
            map.get(name).cloned().unwrap_or_else(|| {
                super::super::VARIABLES
                    .iter()
                    .find(|v| v.name == name)
                    .map(|v| v.default.to_owned())
                    .unwrap()
            })
        };
        bounds(&var, &value, root)
    }

    #[test]
    fn the_defaults_confine_ffmpeg_and_bound_its_runs() {
        let b = read(&[], false).unwrap();
        assert_eq!(b.lease, Duration::from_secs(30));
        assert_eq!(b.stall, Duration::from_secs(120));
        assert_eq!(b.time_limit, None);
        assert_eq!(b.confine.nice, 10);
        assert_eq!(b.confine.memory_bytes, Some(4096 << 20));
        assert_eq!(
            b.confine.run_as, None,
            "not root: ffmpeg runs as the server"
        );
        let as_root = read(&[], true).unwrap();
        assert_eq!(as_root.confine.run_as, RunAs::named("nobody"));
    }

    #[test]
    fn bad_values_are_refused_by_name() {
        let problem = |vars: &[(&str, &str)], root| read(vars, root).unwrap_err().to_string();
        assert!(
            problem(&[("REELTIME_PROCESSOR_USER", "nobody")], false).starts_with(
                "REELTIME_PROCESSOR_USER: is \"nobody\", but only a server running as root"
            )
        );
        assert_eq!(
            problem(&[("REELTIME_PROCESSOR_USER", "no-such-user")], true),
            "REELTIME_PROCESSOR_USER: there is no user named \"no-such-user\" on this machine"
        );
        assert!(problem(&[("REELTIME_PROCESSOR_USER", "root")], true).contains("is root"));
        assert!(problem(&[("REELTIME_PROCESSOR_NICE", "25")], false).contains("not from 0 to 19"));
        assert!(problem(&[("REELTIME_PROCESSOR_MEMORY_MB", "10")], false).contains("too little"));
        assert!(problem(&[("REELTIME_PROCESSOR_STALL_SECS", "0")], false).contains("at least 1"));
        let fixed = read(&[("REELTIME_PROCESSOR_TIME_LIMIT_SECS", "90")], false).unwrap();
        assert_eq!(fixed.time_limit, Some(Duration::from_secs(90)));
    }
}
