//! Where pending jobs go, chosen once from the settings: Ittybit with an API key, else the
//! built-in processor in this process, else nowhere (jobs wait for an instance that
//! dispatches them).

use secrecy::SecretString;

use crate::config::Settings;
use crate::ittybit::IttybitConfig;
use crate::processor::LocalSettings;

/// Where pending jobs go.
pub enum Backend {
    /// Ittybit itself; its webhooks are verified with the secret, and refused without one.
    Ittybit {
        client: IttybitConfig,
        webhook_secret: Option<SecretString>,
    },
    /// The built-in processor, started in this process.
    Local(Box<LocalSettings>),
    /// Nowhere: jobs stay pending.
    Off,
}

impl Backend {
    /// Ittybit when `ITTYBIT_API_KEY` is set, else the built-in processor unless
    /// `REELTIME_PROCESSOR=off`.
    pub fn choose(settings: &Settings) -> Backend {
        let ittybit = &settings.ittybit;
        match &ittybit.api_key {
            Some(api_key) => Backend::Ittybit {
                client: IttybitConfig {
                    service: "Ittybit",
                    base_url: ittybit.api_url.clone(),
                    api_key: api_key.clone(),
                    api_version: ittybit.api_version.clone(),
                    timeout: ittybit.timeout,
                },
                webhook_secret: ittybit.webhook_secret.clone(),
            },
            None if settings.processor.enabled => {
                Backend::Local(Box::new(local_settings(settings)))
            }
            None => Backend::Off,
        }
    }
}

/// The built-in processor's settings, as a server or a `reeltime worker` runs it.
pub fn local_settings(settings: &Settings) -> LocalSettings {
    let local = &settings.processor;
    LocalSettings {
        workers: local.workers,
        data_dir: settings.data_dir.clone(),
        storage: settings.storage.clone(),
        allow_private: local.allow_private,
        max_input_bytes: local.max_input_bytes,
        max_duration: local.max_duration,
        time_limit: local.bounds.time_limit,
        stall: local.bounds.stall,
        lease: local.bounds.lease,
        confine: local.bounds.confine.clone(),
        sample_clip: local.sample_clip,
        ffmpeg: local.ffmpeg.clone(),
        ffprobe: local.ffprobe.clone(),
        min_free_disk: local.min_free_disk_mb.saturating_mul(1024 * 1024),
        webhook_secret: settings.ittybit.webhook_secret.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn choose(vars: &[(&str, &str)]) -> Backend {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        let settings = Settings::from_lookup(|name| map.get(name).map(|v| v.to_string())).unwrap();
        Backend::choose(&settings)
    }

    #[test]
    fn an_api_key_means_ittybit_else_the_built_in_processor_unless_it_is_off() {
        assert!(matches!(
            choose(&[("ITTYBIT_API_KEY", "k")]),
            Backend::Ittybit { .. }
        ));
        assert!(matches!(choose(&[]), Backend::Local(_)));
        assert!(matches!(
            choose(&[("REELTIME_PROCESSOR", "off")]),
            Backend::Off
        ));
        assert!(matches!(
            choose(&[("ITTYBIT_API_KEY", "k"), ("REELTIME_PROCESSOR", "off")]),
            Backend::Ittybit { .. }
        ));
    }
}
