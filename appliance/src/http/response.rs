//! Our HTTP response type: a status, a content type, extra headers and a
//! body, in memory or streamed from an open file (a kept output). The server writes it to the wire; what goes in it (the envelope,
//! the status of an error) is `status`'s, the views of core values are
//! `render`'s.

use std::borrow::Cow;
use std::sync::Arc;

use creditgate::Quota;
use serde_json::Value;

/// The header that says a limit's size; its siblings come with it.
const LIMIT_HEADER: &str = "X-RateLimit-Limit";

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Its content type (a kept output's is its own).
    pub content_type: Cow<'static, str>,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// The body (empty when `file` is set).
    pub body: Vec<u8>,
    /// A body streamed from an open file instead, never read whole into
    /// memory.
    pub file: Option<FileBody>,
}

/// A file to stream as a response body: opened by the handler (so a file
/// removed meanwhile still streams whole), with its length for
/// `Content-Length`.
#[derive(Debug, Clone)]
pub struct FileBody {
    /// The open file, read from its start.
    pub file: Arc<std::fs::File>,
    /// Its length in bytes.
    pub len: u64,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, value: &Value) -> Response {
        Response {
            status,
            content_type: Cow::Borrowed("application/json"),
            headers: Vec::new(),
            body: value.to_string().into_bytes(),
            file: None,
        }
    }

    /// A response with a fixed body.
    pub fn bytes(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type: Cow::Borrowed(content_type),
            headers: Vec::new(),
            body,
            file: None,
        }
    }

    /// A response streaming `file` (of `len` bytes).
    pub fn file(status: u16, content_type: String, file: std::fs::File, len: u64) -> Response {
        Response {
            status,
            content_type: Cow::Owned(content_type),
            headers: Vec::new(),
            body: Vec::new(),
            file: Some(FileBody {
                file: Arc::new(file),
                len,
            }),
        }
    }

    /// Adds the `X-RateLimit-Limit`, `-Remaining` and `-Reset` (Unix
    /// seconds, rounded up) headers of `quota`, the numbers the core
    /// computed, unless the response carries them already (a plan cap set
    /// by the handler wins over the rate limit).
    pub fn with_quota(mut self, quota: Option<&Quota>) -> Response {
        let Some(quota) = quota else {
            return self;
        };
        if self.headers.iter().any(|(name, _)| *name == LIMIT_HEADER) {
            return self;
        }
        self.headers.push((LIMIT_HEADER, quota.limit.to_string()));
        self.headers
            .push(("X-RateLimit-Remaining", quota.remaining.to_string()));
        self.headers.push((
            "X-RateLimit-Reset",
            u64::try_from(quota.reset_at)
                .unwrap_or(0)
                .div_ceil(1000)
                .to_string(),
        ));
        self
    }

    /// The body's length in bytes, streamed or not.
    pub fn body_len(&self) -> u64 {
        self.file
            .as_ref()
            .map_or(self.body.len() as u64, |file| file.len)
    }
}
