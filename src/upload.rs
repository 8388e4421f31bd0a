//! A file people upload to become a job's input: what may be uploaded, and how it is cut into
//! parts. Shared by the server (which enforces it) and the browser (which says so before a
//! byte is sent).
//!
//! A file is sent as parts `0..parts` of [`PART_BYTES`] each, the last one shorter; each part
//! can be sent again after a dropped connection, to any instance, so an upload resumes where
//! it stopped.

use serde::{Deserialize, Serialize};

use crate::submission::FieldErrors;

/// The size of each part but the last.
pub const PART_BYTES: u64 = 8 << 20;
/// The longest file name kept.
pub const MAX_NAME_CHARS: usize = 255;

/// File name endings Reeltime takes as media (when the browser gives no useful type).
const MEDIA_EXTENSIONS: &[&str] = &[
    "mp4", "m4v", "mov", "mkv", "webm", "avi", "mpg", "mpeg", "ts", "mts", "3gp", "flv", "wmv",
    "ogv", "mp3", "m4a", "aac", "wav", "flac", "ogg", "oga", "opus", "wma", "aiff", "aif", "jpg",
    "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff", "heic", "avif",
];

/// An upload as a client announces it: `POST /api/uploads`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewUpload {
    /// The file's name, as the person's computer has it.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its type, if the browser knows one (`video/mp4`); empty or absent otherwise.
    #[serde(default)]
    pub content_type: String,
}

/// An upload that may go ahead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidUpload {
    /// The name with any folders and control characters taken out.
    pub name: String,
    pub size: u64,
    /// The type it is served with (from the browser, else from the name's ending).
    pub content_type: String,
}

impl NewUpload {
    /// Check the upload against what Reeltime accepts, at most `max_bytes` long.
    pub fn validate(&self, max_bytes: u64) -> Result<ValidUpload, FieldErrors> {
        let mut errors = FieldErrors::default();
        let name = clean_name(&self.name);
        if name.is_empty() {
            errors.add("name", "Give the file's name.");
        }
        let ext = name
            .rsplit_once('.')
            .map(|(_, ext)| ext.to_ascii_lowercase())
            .unwrap_or_default();
        let declared = self.content_type.trim().to_ascii_lowercase();
        let media_type = ["video/", "audio/", "image/"]
            .iter()
            .any(|prefix| declared.starts_with(prefix));
        let media_name = MEDIA_EXTENSIONS.contains(&ext.as_str());
        if !name.is_empty() && !media_type && !media_name {
            let seen = if declared.is_empty() {
                String::new()
            } else {
                format!(" (its type is {declared})")
            };
            errors.add(
                "content_type",
                format!("{name} is not a video, audio or image file{seen}."),
            );
        }
        if self.size == 0 {
            errors.add("size", "The file is empty.");
        } else if self.size > max_bytes {
            errors.add(
                "size",
                format!(
                    "The file is {}, over the {} limit.",
                    megabytes(self.size),
                    megabytes(max_bytes)
                ),
            );
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let content_type = if media_type {
            declared
        } else {
            content_type(&ext).to_owned()
        };
        Ok(ValidUpload {
            name,
            size: self.size,
            content_type,
        })
    }
}

/// How many parts a file of `size` bytes is sent in.
pub fn part_count(size: u64) -> u32 {
    u32::try_from(size.div_ceil(PART_BYTES)).unwrap_or(u32::MAX)
}

/// The length part `n` of a `size`-byte file must have; `None` past the last part.
pub fn part_len(size: u64, n: u32) -> Option<u64> {
    let start = u64::from(n).checked_mul(PART_BYTES)?;
    (start < size).then(|| (size - start).min(PART_BYTES))
}

/// The name's last path segment, without control characters, at most [`MAX_NAME_CHARS`].
fn clean_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    last.chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect::<String>()
        .trim()
        .to_owned()
}

fn megabytes(bytes: u64) -> String {
    if bytes >= 1_000_000_000 {
        format!("{:.1} GB", bytes as f64 / 1e9)
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}

/// The media type a file name's ending (`mp4`, `.MOV`) stands for; `application/octet-stream`
/// for an ending Reeltime does not know. Uploads without a type and the processor's outputs
/// are served with it.
pub fn content_type(ext: &str) -> &'static str {
    match ext.trim_start_matches('.').to_ascii_lowercase().as_str() {
        "mp4" | "m4v" => "video/mp4",
        "mov" => "video/quicktime",
        "mkv" => "video/x-matroska",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "m4a" | "aac" => "audio/mp4",
        "wav" => "audio/wav",
        "flac" => "audio/flac",
        "ogg" | "oga" | "opus" => "audio/ogg",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "gif" => "image/gif",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(name: &str, size: u64, content_type: &str) -> NewUpload {
        NewUpload {
            name: name.into(),
            size,
            content_type: content_type.into(),
        }
    }

    #[test]
    fn media_files_pass_by_type_or_by_name() {
        let ok = upload("C:\\\\clips\\\\holiday.MOV", 10, "")
            .validate(100)
            .unwrap();
        assert_eq!(ok.name, "holiday.MOV");
        assert_eq!(ok.content_type, "video/quicktime");
        let ok = upload("recording", 10, "audio/x-m4a")
            .validate(100)
            .unwrap();
        assert_eq!(ok.content_type, "audio/x-m4a");
    }

    #[test]
    fn the_wrong_kind_of_file_and_bad_sizes_say_why() {
        let errors = upload("notes.txt", 10, "text/plain")
            .validate(100)
            .unwrap_err();
        assert_eq!(
            errors.get("content_type"),
            Some("notes.txt is not a video, audio or image file (its type is text/plain).")
        );
        let errors = upload("a.mp4", 0, "video/mp4").validate(100).unwrap_err();
        assert_eq!(errors.get("size"), Some("The file is empty."));
        let errors = upload("a.mp4", 3_200_000_000, "video/mp4")
            .validate(2_147_483_648)
            .unwrap_err();
        assert_eq!(
            errors.get("size"),
            Some("The file is 3.2 GB, over the 2.1 GB limit.")
        );
        let errors = upload("/\u{7}", 10, "video/mp4").validate(100).unwrap_err();
        assert!(errors.get("name").is_some());
    }

    #[test]
    fn a_file_is_cut_into_whole_parts_and_a_short_last_one() {
        assert_eq!(part_count(1), 1);
        assert_eq!(part_count(PART_BYTES), 1);
        assert_eq!(part_count(PART_BYTES + 1), 2);
        assert_eq!(part_len(PART_BYTES + 1, 0), Some(PART_BYTES));
        assert_eq!(part_len(PART_BYTES + 1, 1), Some(1));
        assert_eq!(part_len(PART_BYTES + 1, 2), None);
        assert_eq!(part_len(5, u32::MAX), None);
    }
}
