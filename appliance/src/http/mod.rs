//! The HTTP shim: our own request and response types, the router, the
//! handlers, the error-to-status table and the tiny_http server loop. A
//! handler parses, authenticates, calls one `Gate` method and renders; all
//! business rules live in the core. [`handle`] is testable without a socket;
//! a panic inside it becomes a logged 500, never a dead thread.

pub mod docs;
pub mod handlers;
pub mod router;
pub mod server;
pub mod status;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use creditgate::Gate;
use serde_json::Value;

/// A request body may be at most this large.
pub const BODY_BYTES_MAX: usize = 64 * 1024;
/// JSON nesting accepted in a body, at most (serde_json's own limit is 128).
pub const JSON_DEPTH_MAX: usize = 32;
/// The longest `X-Request-Id` a client may choose; longer ones are replaced.
pub const REQUEST_ID_CHARS_MAX: usize = 64;

/// What every handler can reach.
#[derive(Debug)]
pub struct State {
    /// The facade.
    pub gate: Arc<Gate>,
    /// The public base URL (for docs and links).
    pub public_base_url: String,
}

/// An HTTP request, read off the wire (or built by a test).
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string, without `?`.
    pub query: String,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// This request's id (from `X-Request-Id` or minted).
    pub request_id: String,
}

impl Request {
    /// The first header called `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Its content type.
    pub content_type: &'static str,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, value: &Value) -> Response {
        Response {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: value.to_string().into_bytes(),
        }
    }

    /// A response with a fixed body.
    pub fn bytes(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body,
        }
    }
}

/// Handles one request. Never panics: a panic in a handler is caught,
/// logged with the request id, and answered with a 500 envelope.
pub fn handle(state: &State, request: &Request) -> Response {
    match catch_unwind(AssertUnwindSafe(|| router::dispatch(state, request))) {
        Ok(response) => response,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            eprintln!(
                "request_id={} panic in handler for {} {}: {what}",
                request.request_id, request.method, request.path
            );
            status::internal_error()
        }
    }
}
