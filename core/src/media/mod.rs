//! The media store: where a job's outputs are kept before it succeeds,
//! because every upstream's URLs expire. This module owns the
//! [`MediaStore`] trait the worker calls (outside any transaction) to copy a
//! completion's [`Artifact`]s, what a kept file is ([`KeptFile`]), why
//! keeping failed ([`KeepError`]), which media types a product may answer
//! ([`check_type`], with [`sniff`] for an upstream that names none), and
//! the `media_files` table (in [`records`], its one writer).
//!
//! [`files`] is the store the appliance runs, [`FileMediaStore`]: files
//! beside the database, bounded per file, in total and in time. `fetch`
//! (cargo feature `http`) downloads a remote output for it.
//!
//! A gate without a media store (an embedder's choice) records remote
//! outputs under their upstream URLs as they are, and fails a job whose
//! outputs came inline (there is nowhere to serve them from).

#[cfg(feature = "http")]
mod fetch;
pub mod files;
pub mod records;

use std::path::PathBuf;

use crate::providers::Artifact;

pub use files::{FileMediaStore, MediaSettings};
pub use records::MediaRow;

/// The machine code of an output the upstream no longer serves (404, 410,
/// another refusal, a redirect loop).
pub const OUTPUT_UNAVAILABLE: &str = "output_unavailable";
/// The machine code of an output larger than the store takes per file.
pub const OUTPUT_TOO_LARGE: &str = "output_too_large";
/// The machine code of an output whose media type is not its product's.
pub const OUTPUT_TYPE_MISMATCH: &str = "output_type_mismatch";
/// The machine code of a store that cannot keep a file for a reason of its
/// own (a remote output in a build without an HTTP client, an artifact the
/// store is not meant to be given).
pub const MEDIA_STORE_FAILED: &str = "media_store_failed";

/// A file copied into the media store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptFile {
    /// Where it is, relative to the store's directory (`<job>/<idx>.png`).
    pub path: String,
    /// The file name agents see in its link (`0.png`).
    pub name: String,
    /// Its media type, checked against the product.
    pub mime: String,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256.
    pub sha256: [u8; 32],
    /// Where it came from, for the operator (`None` for inline outputs).
    pub upstream_url: Option<String>,
}

/// Why outputs could not be kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeepError {
    /// Worth trying again (a timeout, a 5xx, a reset connection, a full
    /// store or disk).
    #[error("keeping the outputs failed for now: {message}")]
    Transient {
        /// What happened (no secret, no body).
        message: String,
    },
    /// Trying again will not help (a 404, an output larger than allowed, a
    /// content type that is not the product's): the job fails, its hold is
    /// released, and the operator is told the upstream may have billed.
    #[error("the outputs cannot be kept: {code}: {message}")]
    Permanent {
        /// A machine code ([`OUTPUT_UNAVAILABLE`], [`OUTPUT_TOO_LARGE`],
        /// [`OUTPUT_TYPE_MISMATCH`], [`MEDIA_STORE_FAILED`]).
        code: String,
        /// What happened.
        message: String,
    },
}

impl KeepError {
    /// A [`KeepError::Transient`].
    pub fn transient(message: impl Into<String>) -> KeepError {
        KeepError::Transient {
            message: message.into(),
        }
    }

    /// A [`KeepError::Permanent`] with machine code `code`.
    pub fn permanent(code: &str, message: impl Into<String>) -> KeepError {
        KeepError::Permanent {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// What the worker asks of a media store, and what the gate asks of it to
/// serve and remove kept files.
pub trait MediaStore: Send + Sync + std::fmt::Debug {
    /// Copies `artifacts` (none of them [`Artifact::Hosted`]) of job
    /// `job_id`, a `product` job, into the store, in order: all of them or
    /// none (a failure removes what this call wrote). Blocks; bounded in
    /// bytes and time by the store's own limits.
    fn keep(
        &self,
        job_id: &str,
        product: &str,
        artifacts: &[Artifact],
    ) -> Result<Vec<KeptFile>, KeepError>;

    /// [`MediaStore::keep`] with each file at most `bytes_max` (the
    /// provider instance's `download_bytes_max`) as well as the store's own
    /// bound. A store without a bound of its own keeps as `keep` does.
    fn keep_at_most(
        &self,
        job_id: &str,
        product: &str,
        artifacts: &[Artifact],
        bytes_max: u64,
    ) -> Result<Vec<KeptFile>, KeepError> {
        let _ = bytes_max;
        self.keep(job_id, product, artifacts)
    }

    /// The longest one [`MediaStore::keep`] may take, in milliseconds; a
    /// claimed job's lease covers it.
    fn keep_timeout_ms(&self) -> i64;

    /// Where the kept file `path` (a [`KeptFile::path`]) lies on this
    /// machine's disk, for serving it; `None` for a path that cannot be one
    /// of the store's (absolute, or climbing out of its directory).
    fn local_path(&self, path: &str) -> Option<PathBuf>;

    /// Deletes the kept file `path` (and its job's folder once empty). A
    /// file already gone is no error. For the retention sweep, and for a
    /// worker whose success could not be recorded after a keep.
    fn remove(&self, path: &str) -> std::io::Result<()>;
}

/// A media type without parameters, lowercased (`image/png`).
pub fn essence(mime: &str) -> String {
    mime.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Whether `mime` says nothing about the content: absent, empty, or a
/// generic byte stream.
pub fn is_generic(mime: Option<&str>) -> bool {
    match mime.map(essence) {
        None => true,
        Some(m) => matches!(
            m.as_str(),
            "" | "application/octet-stream" | "binary/octet-stream" | "application/binary"
        ),
    }
}

/// Bytes of a file's head [`sniff`] reads, at most.
pub const SNIFF_BYTES_MAX: usize = 16;

/// The media type of a file from its first bytes, for the formats upstreams
/// answer: PNG, JPEG, WebP, GIF, MP4 (and M4A), WebM, WAV, MP3, Ogg.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    if at(0, b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if at(0, b"\xff\xd8\xff") {
        Some("image/jpeg")
    } else if at(0, b"RIFF") && at(8, b"WEBP") {
        Some("image/webp")
    } else if at(0, b"GIF87a") || at(0, b"GIF89a") {
        Some("image/gif")
    } else if at(0, b"RIFF") && at(8, b"WAVE") {
        Some("audio/wav")
    } else if at(4, b"ftyp") {
        // An ISO media file; the M4A/M4B brands are audio, the rest video.
        if at(8, b"M4A ") || at(8, b"M4B ") {
            Some("audio/mp4")
        } else {
            Some("video/mp4")
        }
    } else if at(0, b"\x1a\x45\xdf\xa3") {
        Some("video/webm")
    } else if at(0, b"OggS") {
        Some("audio/ogg")
    } else if at(0, b"ID3")
        || (head.len() >= 2 && head[0] == 0xff && matches!(head[1], 0xfb | 0xf3 | 0xf2))
    {
        Some("audio/mpeg")
    } else {
        None
    }
}

/// The media type families a product's outputs may have: `image` answers
/// `image/*`, `video` `video/*`, `music` and `audio` `audio/*`, `chat` and
/// `text` `text/*`. Any other product (`tools`, whose models answer
/// images, videos, sounds or text) takes any of those or JSON.
fn allowed(product: &str) -> &'static [&'static str] {
    match product {
        "image" => &["image/"],
        "video" => &["video/"],
        "music" | "audio" => &["audio/"],
        "chat" | "text" => &["text/"],
        _ => &["image/", "video/", "audio/", "text/", "application/json"],
    }
}

/// Decides the media type of an output of a `product` job from what the
/// upstream announced and the file's first bytes: the announced type,
/// unless it is missing or generic, then the sniffed one. A type that is
/// not the product's, or none at all, is [`OUTPUT_TYPE_MISMATCH`].
pub fn check_type(
    product: &str,
    announced: Option<&str>,
    head: &[u8],
) -> Result<String, KeepError> {
    let mime = if is_generic(announced) {
        match sniff(head) {
            Some(sniffed) => sniffed.to_owned(),
            None => {
                return Err(KeepError::permanent(
                    OUTPUT_TYPE_MISMATCH,
                    format!(
                        "a {product} output with no media type, whose bytes are no known format"
                    ),
                ))
            }
        }
    } else {
        essence(announced.unwrap_or(""))
    };
    if allowed(product)
        .iter()
        .any(|family| mime.starts_with(family) || mime == *family)
        && mime.len() <= crate::providers::OUTPUT_MIME_CHARS_MAX
        && mime
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/+-.".contains(&b))
    {
        Ok(mime)
    } else {
        Err(KeepError::permanent(
            OUTPUT_TYPE_MISMATCH,
            format!("a {product} output of type {}", printable(&mime)),
        ))
    }
}

/// At most 100 printable characters of an upstream's text, for a message.
pub(crate) fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(100).collect()
}

/// The file extension of a media type (`png`), `bin` when unknown.
pub fn extension(mime: &str) -> &'static str {
    match essence(mime).as_str() {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpg",
        "image/webp" => "webp",
        "image/gif" => "gif",
        "image/avif" => "avif",
        "image/svg+xml" => "svg",
        "video/mp4" => "mp4",
        "video/webm" => "webm",
        "video/quicktime" => "mov",
        "audio/wav" | "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => "wav",
        "audio/mpeg" | "audio/mp3" => "mp3",
        "audio/ogg" => "ogg",
        "audio/mp4" | "audio/x-m4a" => "m4a",
        "audio/flac" | "audio/x-flac" => "flac",
        "text/plain" => "txt",
        "text/markdown" => "md",
        "text/csv" => "csv",
        "application/json" => "json",
        _ => "bin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing_knows_the_formats_upstreams_answer() {
        let cases: &[(&[u8], &str)] = &[
            (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "image/png"),
            (b"\xff\xd8\xff\xe0\0\x10JFIF", "image/jpeg"),
            (b"RIFF\x10\0\0\0WEBPVP8 ", "image/webp"),
            (b"GIF89a\x01\0", "image/gif"),
            (b"\0\0\0\x20ftypisom\0\0", "video/mp4"),
            (b"\0\0\0\x20ftypM4A \0\0", "audio/mp4"),
            (b"\x1a\x45\xdf\xa3\x01\0", "video/webm"),
            (b"RIFF\x24\0\0\0WAVEfmt ", "audio/wav"),
            (b"ID3\x04\0\0", "audio/mpeg"),
            (b"\xff\xfb\x90\x64", "audio/mpeg"),
            (b"OggS\0\x02", "audio/ogg"),
        ];
        for (head, mime) in cases {
            assert_eq!(sniff(head), Some(*mime), "{mime}");
        }
        assert_eq!(sniff(b"<html>"), None);
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(b"RIFF"), None, "too short to tell");
    }

    #[test]
    fn a_type_is_checked_against_the_product_and_sniffed_when_generic() {
        let png = b"\x89PNG\r\n\x1a\n";
        assert_eq!(
            check_type("image", Some("image/png"), b"").unwrap(),
            "image/png"
        );
        assert_eq!(
            check_type("image", Some("IMAGE/PNG; q=1"), b"").unwrap(),
            "image/png"
        );
        assert_eq!(check_type("image", None, png).unwrap(), "image/png");
        assert_eq!(
            check_type("image", Some("binary/octet-stream"), png).unwrap(),
            "image/png"
        );
        assert_eq!(
            check_type("chat", Some("text/plain"), b"").unwrap(),
            "text/plain"
        );
        assert_eq!(
            check_type("music", Some("audio/mpeg"), b"").unwrap(),
            "audio/mpeg"
        );
        assert_eq!(
            check_type("tools", Some("video/mp4"), b"").unwrap(),
            "video/mp4"
        );
        for (product, announced, head) in [
            ("image", Some("text/html"), &b""[..]),
            ("video", Some("image/png"), &b""[..]),
            ("image", Some("application/octet-stream"), &b"<html>"[..]),
            ("image", None, &b"\0\0\0\x20ftypisom"[..]),
            ("chat", Some("application/x-sh"), &b""[..]),
            ("image", Some("image/png\"<x>"), &b""[..]),
        ] {
            let err = check_type(product, announced, head).expect_err("refused");
            assert!(
                matches!(&err, KeepError::Permanent { code, .. } if code == OUTPUT_TYPE_MISMATCH),
                "{product} {announced:?}: {err:?}"
            );
        }
    }

    #[test]
    fn extensions_follow_the_type() {
        assert_eq!(extension("image/png"), "png");
        assert_eq!(extension("audio/x-wav"), "wav");
        assert_eq!(extension("text/plain; charset=utf-8"), "txt");
        assert_eq!(extension("application/x-unknown"), "bin");
    }
}
