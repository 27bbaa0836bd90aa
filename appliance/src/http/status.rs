//! The one table from core errors to HTTP statuses, shared by every
//! dialect (each dialect's envelope is its module's under `dialects`), and
//! what a caller is told of an error ([`public_message`]). A status derives
//! from the error's kind (the core's one table of codes and kinds), with a
//! few exact overrides by code; whether to log an error derives from the
//! same kind, so the two cannot disagree.

use creditgate::error::{ErrorCode, ErrorKind};
use creditgate::Error;

/// The HTTP status of a kind of error. Exhaustive: a new kind does not
/// compile until it has a status here.
fn status_of_kind(kind: ErrorKind) -> u16 {
    match kind {
        ErrorKind::Invalid => 400,
        ErrorKind::Unauthorized => 401,
        ErrorKind::Forbidden => 403,
        ErrorKind::NotFound => 404,
        ErrorKind::Conflict => 409,
        ErrorKind::Gone => 410,
        ErrorKind::Limited => 429,
        ErrorKind::Internal => 500,
        ErrorKind::Upstream => 502,
        ErrorKind::Unavailable => 503,
        ErrorKind::StorageFull => 507,
    }
}

/// The HTTP status of a core error code: its kind's status, or one of a
/// few exact overrides (a limit with a status of its own, a method).
pub fn status_for(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::InsufficientCredits
        | ErrorCode::PaymentInvalid
        | ErrorCode::PaymentRequired
        | ErrorCode::PaymentDeclined => 402,
        ErrorCode::MethodNotAllowed => 405,
        ErrorCode::RequestTimeout => 408,
        ErrorCode::PayloadTooLarge => 413,
        ErrorCode::UriTooLong => 414,
        ErrorCode::ExpectationFailed => 417,
        ErrorCode::HeaderTooLarge => 431,
        other => status_of_kind(other.kind()),
    }
}

/// What the caller is told of an error: the error itself, except that a
/// server fault does not leak internals.
pub fn public_message(err: &Error) -> String {
    match err.kind() {
        ErrorKind::Upstream => match err {
            Error::UpstreamUnavailable { upstream, .. } => {
                format!("{upstream} could not be reached or answered unusably; retry later")
            }
            _ => "an upstream service failed; retry later".to_owned(),
        },
        ErrorKind::Unavailable => match err {
            Error::NoPriceCatalog
            | Error::ProviderUnavailable { .. }
            | Error::WorkersFailing { .. }
            | Error::ServerBusy => err.to_string(),
            _ => "the service is unavailable for a moment; retry later".to_owned(),
        },
        ErrorKind::StorageFull => "the server's storage is full, so nothing of this request \
             was kept; work already acknowledged is safe. Retry later"
            .to_owned(),
        ErrorKind::Internal => "internal error; the operator's log has the details".to_owned(),
        ErrorKind::Invalid
        | ErrorKind::Unauthorized
        | ErrorKind::Forbidden
        | ErrorKind::NotFound
        | ErrorKind::Conflict
        | ErrorKind::Gone
        | ErrorKind::Limited => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_keeps_its_status_and_a_server_fault_is_exactly_a_5xx() {
        let expected: &[(&str, u16)] = &[
            ("invalid_request", 400),
            ("invalid_amount", 400),
            ("not_found", 404),
            ("insufficient_credits", 402),
            ("idempotency_conflict", 409),
            ("invalid_transition", 409),
            ("provider_unavailable", 503),
            ("exists_with_different_fields", 409),
            ("hold_already_resolved", 409),
            ("hold_expired", 409),
            ("capture_exceeds_hold", 400),
            ("refund_exceeds_charge", 400),
            ("wrong_transfer_kind", 400),
            ("unknown_model", 400),
            ("invalid_option", 400),
            ("internal", 500),
            ("invalid_catalog", 400),
            ("unknown_price_version", 400),
            ("price_version_conflict", 409),
            ("no_price_catalog", 503),
            ("balance_limit", 409),
            ("schema_too_new", 500),
            ("unauthorized", 401),
            ("token_expired", 401),
            ("forbidden", 403),
            ("not_configured", 403),
            ("invalid_signature", 401),
            ("webhook_unverified", 401),
            ("provider_not_configured", 400),
            ("stale_timestamp", 401),
            ("nonce_reused", 401),
            ("refresh_token_reused", 401),
            ("registration_expired", 400),
            ("agent_not_bound", 403),
            ("csrf_token_invalid", 403),
            ("agent_already_bound", 409),
            ("identity_refused", 401),
            ("upstream_unavailable", 502),
            ("payload_too_large", 413),
            ("rate_limited", 429),
            ("plan_limit_reached", 429),
            ("request_timeout", 408),
            ("method_not_allowed", 405),
            ("bad_request", 400),
            ("uri_too_long", 414),
            ("expectation_failed", 417),
            ("header_too_large", 431),
            ("server_busy", 503),
            ("storage_error", 500),
            ("storage_unavailable", 503),
            ("insufficient_storage", 507),
            ("workers_failing", 503),
            ("output_expired", 410),
            ("code_invalid", 404),
            ("code_expired", 410),
            ("code_used_up", 409),
            ("code_already_redeemed", 409),
            ("spend_cap_reached", 429),
            ("payment_invalid", 402),
            ("payment_required", 402),
            ("payment_method_not_ready", 409),
            ("payment_declined", 402),
        ];
        assert_eq!(ErrorCode::ALL.len(), expected.len(), "a code without a row");
        for code in ErrorCode::ALL {
            let row = expected.iter().find(|(name, _)| *name == code.as_str());
            let status = status_for(*code);
            assert_eq!(Some(status), row.map(|r| r.1), "{code}");
            // One table: what is logged as the server's fault is what
            // answers 5xx, and nothing else.
            assert_eq!(code.kind().is_server_fault(), status >= 500, "{code}");
        }
    }
}
