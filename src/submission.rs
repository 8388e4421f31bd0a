//! A job submission as a person or a client sends it, and its validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::job::{JobKind, Preset};
use crate::media_url::MediaUrl;

/// What the form and `POST /api/jobs` send. Fields are plain strings so that every mistake
/// becomes a readable field error rather than a deserialisation failure.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobSubmission {
    pub input_url: String,
    /// A preset id; the default preset when absent.
    #[serde(default)]
    pub preset: Option<String>,
    /// Optional; when given it must be the preset's kind.
    #[serde(default)]
    pub kind: Option<String>,
}

/// A valid submission, ready to insert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewJob {
    pub input_url: MediaUrl,
    pub preset: Preset,
}

impl NewJob {
    pub fn kind(&self) -> JobKind {
        self.preset.kind()
    }

    pub fn options(&self) -> serde_json::Value {
        self.preset.options()
    }
}

/// Validation failures, by field name, each with a message meant for a person.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldErrors(pub BTreeMap<String, String>);

impl FieldErrors {
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0
            .entry(field.to_owned())
            .or_insert_with(|| message.into());
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for (field, message) in &self.0 {
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            write!(f, "{field}: {message}")?;
        }
        Ok(())
    }
}

impl JobSubmission {
    pub fn validate(&self) -> Result<NewJob, FieldErrors> {
        let mut errors = FieldErrors::default();

        let input_url = MediaUrl::parse(&self.input_url)
            .map_err(|err| errors.add("input_url", err.to_string()))
            .ok();

        let preset = match self.preset.as_deref().map(str::trim) {
            None | Some("") => Some(Preset::DEFAULT),
            Some(id) => Preset::from_id(id).or_else(|| {
                let known: Vec<_> = Preset::ALL.iter().map(|p| p.id()).collect();
                errors.add(
                    "preset",
                    format!(
                        "Unknown preset {id:?}; choose one of: {}.",
                        known.join(", ")
                    ),
                );
                None
            }),
        };

        if let Some(kind) = self
            .kind
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty())
        {
            match kind.parse::<JobKind>() {
                Err(_) => {
                    let known: Vec<_> = JobKind::ALL.iter().map(|k| k.as_str()).collect();
                    errors.add(
                        "kind",
                        format!("Unknown kind {kind:?}; use one of: {}.", known.join(", ")),
                    );
                }
                Ok(kind) => {
                    if let Some(preset) = preset.filter(|p| p.kind() != kind) {
                        errors.add(
                            "kind",
                            format!(
                                "The preset {:?} makes {}, not {kind}.",
                                preset.id(),
                                preset.kind()
                            ),
                        );
                    }
                }
            }
        }

        match (input_url, preset) {
            (Some(input_url), Some(preset)) if errors.is_empty() => {
                Ok(NewJob { input_url, preset })
            }
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submission(url: &str) -> JobSubmission {
        JobSubmission {
            input_url: url.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_url_alone_gets_the_default_preset() {
        let job = submission("https://example.com/a.mp4").validate().unwrap();
        assert_eq!(job.preset, Preset::DEFAULT);
        assert_eq!(job.kind(), JobKind::Video);
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let errors = JobSubmission {
            input_url: "nope".into(),
            preset: Some("4k_hologram".into()),
            kind: Some("hologram".into()),
        }
        .validate()
        .unwrap_err();
        assert!(errors.get("input_url").is_some());
        assert!(errors
            .get("preset")
            .unwrap()
            .contains("video_1280_mp4_high"));
        assert!(errors.get("kind").unwrap().contains("video"));
    }

    #[test]
    fn kind_must_match_the_preset() {
        let mut s = submission("https://example.com/a.mp4");
        s.kind = Some("audio".into());
        let errors = s.validate().unwrap_err();
        assert!(errors.get("kind").unwrap().contains("makes video"));
        s.kind = Some("video".into());
        assert!(s.validate().is_ok());
    }

    #[test]
    fn errors_serialize_as_a_plain_map() {
        let errors = submission("").validate().unwrap_err();
        let json = serde_json::to_value(&errors).unwrap();
        assert!(json["input_url"].is_string());
    }
}
