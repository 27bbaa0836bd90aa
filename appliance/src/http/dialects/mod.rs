//! The wire languages the server speaks. Every route names its
//! [`Dialect`]; the router renders every error of a route (an
//! authentication failure, the rate limit, the handler's refusal) in that
//! dialect's envelope, through the one status table (`http::status`). Each
//! dialect is one module: `rynjer` (the v1 envelope of the references
//! 000 and 001), and `openai` (the OpenAI-compatible surface: its
//! decoders, renderers, handlers and `{"error": {...}}` envelope).

pub mod openai;
pub mod rynjer;

use creditgate::Error;

use super::response::Response;

/// A route's wire language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Rynjer's `{code, message, data}` (CONTRACTS.md §6).
    Rynjer,
    /// OpenAI's `{"error": {message, type, param, code}}`.
    OpenAi,
}

/// The error answer of `err` in `dialect`'s envelope.
pub fn error(dialect: Dialect, err: &Error) -> Response {
    match dialect {
        Dialect::Rynjer => rynjer::error(err),
        Dialect::OpenAi => openai::error(err),
    }
}

/// The 500 of a caught panic in `dialect`'s envelope.
pub fn internal_error(dialect: Dialect) -> Response {
    match dialect {
        Dialect::Rynjer => rynjer::internal_error(),
        Dialect::OpenAi => openai::error(&Error::Internal {
            detail: "a handler panicked".into(),
        }),
    }
}
