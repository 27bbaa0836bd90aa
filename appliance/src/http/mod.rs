//! The HTTP shim: our own request and response types, the router, the
//! handlers, the error-to-status table and the tiny_http server loop. A
//! handler parses, authenticates, calls one `Gate` method and renders; all
//! business rules live in the core. [`handle`] is testable without a socket;
//! a panic inside it becomes a logged 500, never a dead thread.
//!
//! The modules form no cycle: `server` → this file's [`handle`] →
//! `router` → `dialects` → `handlers`, `dialects::openai` → `docs`,
//! `dialects::rynjer` → `status` → `request`, `response` (and the crate's
//! `render`); the appliance's tidy test checks the order.

pub mod admin;
pub mod console;
pub mod dialects;
pub mod docs;
pub mod handlers;
pub mod request;
pub mod response;
pub mod router;
pub mod server;
pub mod status;
#[cfg(test)]
pub mod test_support;

use std::panic::{catch_unwind, AssertUnwindSafe};

use request::{Request, State};
use response::Response;

/// A request body may be at most this large.
pub const BODY_BYTES_MAX: usize = 64 * 1024;
/// An upstream's callback may be this large (`POST
/// /v1/providers/{instance}/webhook`): the core's own bound.
#[cfg(test)]
pub const WEBHOOK_BODY_BYTES_MAX: usize = creditgate::providers::WEBHOOK_BODY_BYTES_MAX;
/// The longest `X-Request-Id` a client may choose; longer ones are replaced.
pub const REQUEST_ID_CHARS_MAX: usize = 64;

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
            dialects::internal_error(router::dialect_of(&request.path))
        }
    }
}
