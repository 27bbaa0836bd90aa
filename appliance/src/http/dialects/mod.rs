//! The wire languages the server speaks. Every route names its
//! [`Dialect`]; the router renders every error of a route (an
//! authentication failure, the rate limit, the handler's refusal) in that
//! dialect's envelope, through the one status table (`http::status`). Each
//! dialect is one module: `rynjer` (the v1 envelope of the references
//! 000 and 001), `openai` (the OpenAI-compatible surface), `agentname`
//! (reference 002, under `/api`) and `kiwiwhale` (reference 004, under
//! `/api/v1/*.php`), each with its decoders, renderers and envelope. What
//! several dialects do alike is `shared`'s.

pub mod agentname;
pub mod kiwiwhale;
pub mod openai;
pub mod rynjer;
pub mod shared;

use creditgate::Error;

use super::response::Response;

/// A route's wire language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Rynjer's `{code, message, data}` (CONTRACTS.md §6).
    Rynjer,
    /// OpenAI's `{"error": {message, type, param, code}}`.
    OpenAi,
    /// AgentName's `{"error", "code": status}` (reference 002).
    AgentName,
    /// KiwiWhale's `{"success": false, "error", "message"}` (reference 004).
    KiwiWhale,
}

/// The error answer of `err` in `dialect`'s envelope.
pub fn error(dialect: Dialect, err: &Error) -> Response {
    match dialect {
        Dialect::Rynjer => rynjer::error(err),
        Dialect::OpenAi => openai::error(err),
        Dialect::AgentName => agentname::error(err),
        Dialect::KiwiWhale => kiwiwhale::error(err),
    }
}

/// The 500 of a caught panic in `dialect`'s envelope.
pub fn internal_error(dialect: Dialect) -> Response {
    match dialect {
        Dialect::Rynjer => rynjer::internal_error(),
        Dialect::OpenAi | Dialect::AgentName | Dialect::KiwiWhale => error(
            dialect,
            &Error::Internal {
                detail: "a handler panicked".into(),
            },
        ),
    }
}
