//! Where files are kept (issue 13): `REELTIME_STORAGE_URL` names the store, with
//! `REELTIME_STORAGE_ENDPOINT` for an S3-compatible service and the usual `AWS_*` credentials.

use std::path::Path;

use secrecy::SecretString;

use crate::storage::{S3Settings, StorageSettings};

use super::ConfigError;

const URL: &str = "REELTIME_STORAGE_URL";
const ENDPOINT: &str = "REELTIME_STORAGE_ENDPOINT";

/// Read the store: `var` is a variable's value if set. Unset, files stay in
/// `<data_dir>/processor` (where the built-in processor kept its outputs before there was a
/// setting, so an upgrade finds them).
pub(super) fn storage(
    var: &dyn Fn(&str) -> Option<String>,
    data_dir: &Path,
) -> Result<StorageSettings, ConfigError> {
    let Some(url) = var(URL) else {
        if var(ENDPOINT).is_some() {
            return Err(ConfigError {
                name: ENDPOINT,
                problem: format!("is set, but {URL} is not: set it to s3://<bucket>/<prefix>"),
            });
        }
        return Ok(StorageSettings::Local(data_dir.join("processor")));
    };
    let bad = |problem: String| ConfigError { name: URL, problem };
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(bad(format!(
                "{url:?} names no absolute folder: write file:///path/to/folder"
            )));
        }
        return Ok(StorageSettings::Local(path.into()));
    }
    let Some(rest) = url.strip_prefix("s3://") else {
        return Err(bad(format!(
            "{url:?} is not a store Reeltime knows: write s3://<bucket>/<prefix> for an \
             S3-compatible store or file:///<folder> for this machine's disk"
        )));
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !valid_bucket {
        return Err(bad(format!(
            "{bucket:?} is not a bucket name: 3 to 63 lower-case letters, digits, dots and dashes"
        )));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|part| part == "." || part == "..") {
        return Err(bad(format!("the prefix {prefix:?} may not hold . or ..")));
    }
    let endpoint = match var(ENDPOINT).or_else(|| var("AWS_ENDPOINT_URL")) {
        Some(endpoint) if endpoint.starts_with("http://") || endpoint.starts_with("https://") => {
            Some(endpoint.trim_end_matches('/').to_owned())
        }
        Some(endpoint) => {
            return Err(ConfigError {
                name: ENDPOINT,
                problem: format!("{endpoint:?} must start with http:// or https://"),
            })
        }
        None => None,
    };
    Ok(StorageSettings::S3(S3Settings {
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
        endpoint,
        region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
        access_key_id: var("AWS_ACCESS_KEY_ID"),
        secret_access_key: var("AWS_SECRET_ACCESS_KEY").map(SecretString::from),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<StorageSettings, ConfigError> {
        let lookup = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        storage(&lookup, Path::new("/data"))
    }

    #[test]
    fn unset_keeps_files_where_the_processor_always_did() {
        let StorageSettings::Local(dir) = read(&[]).unwrap() else {
            panic!("not local")
        };
        assert_eq!(dir, Path::new("/data/processor"));
        let StorageSettings::Local(dir) = read(&[(URL, "file:///srv/media")]).unwrap() else {
            panic!("not local")
        };
        assert_eq!(dir, Path::new("/srv/media"));
    }

    #[test]
    fn an_s3_url_names_bucket_prefix_endpoint_and_credentials() {
        let settings = read(&[
            (URL, "s3://media-bucket/reeltime/prod/"),
            (ENDPOINT, "http://127.0.0.1:9000/"),
            ("AWS_ACCESS_KEY_ID", "id"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
        ])
        .unwrap();
        let StorageSettings::S3(s3) = settings else {
            panic!("not s3")
        };
        assert_eq!(s3.bucket, "media-bucket");
        assert_eq!(s3.prefix, "reeltime/prod");
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s3.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s3.access_key_id.as_deref(), Some("id"));
        let StorageSettings::S3(s3) = read(&[(URL, "s3://media")]).unwrap() else {
            panic!("not s3")
        };
        assert_eq!((s3.prefix.as_str(), s3.endpoint), ("", None));
    }

    #[test]
    fn bad_values_say_what_to_write() {
        for (vars, name, words) in [
            (&[(URL, "ftp://x/y")][..], URL, "s3://<bucket>/<prefix>"),
            (&[(URL, "s3://Bad_Bucket/x")][..], URL, "not a bucket name"),
            (&[(URL, "s3://ok-bucket/a/../b")][..], URL, "may not hold"),
            (&[(URL, "file://relative")][..], URL, "absolute"),
            (
                &[(URL, "s3://ok-bucket"), (ENDPOINT, "minio:9000")][..],
                ENDPOINT,
                "http://",
            ),
            (&[(ENDPOINT, "http://minio:9000")][..], ENDPOINT, URL),
        ] {
            let err = read(vars).err().unwrap();
            assert_eq!(err.name, name);
            assert!(err.problem.contains(words), "{err}");
        }
    }
}
