//! The one table from core error codes to HTTP statuses, and the v1
//! envelope: `{code, message, data}` with `code` 0 on success and the HTTP
//! status on error, `data.error` the machine code (CONTRACTS.md §6).

use creditgate::Error;
use serde_json::{json, Value};

use super::Response;

/// The HTTP status of a core error code. Every code in
/// `creditgate::error::ERROR_CODES` has a row (a test checks it).
pub fn status_for(code: &str) -> u16 {
    match code {
        "invalid_request"
        | "invalid_amount"
        | "unknown_model"
        | "invalid_option"
        | "unknown_price_version"
        | "invalid_catalog"
        | "capture_exceeds_hold"
        | "refund_exceeds_charge"
        | "wrong_transfer_kind"
        | "registration_expired" => 400,
        "unauthorized"
        | "invalid_signature"
        | "stale_timestamp"
        | "nonce_reused"
        | "token_expired"
        | "refresh_token_reused"
        | "identity_refused" => 401,
        "insufficient_credits" => 402,
        // An unbound agent is known but may not act for any account yet.
        "forbidden" | "agent_not_bound" => 403,
        "not_found" => 404,
        "method_not_allowed" => 405,
        "request_timeout" => 408,
        "idempotency_conflict"
        | "exists_with_different_fields"
        | "invalid_transition"
        | "price_version_conflict"
        | "hold_already_resolved"
        | "hold_expired"
        | "agent_already_bound"
        | "balance_limit" => 409,
        "payload_too_large" => 413,
        "rate_limited" => 429,
        "no_price_catalog" | "provider_unavailable" | "storage_unavailable" => 503,
        "bad_gateway" | "upstream_unavailable" => 502,
        // "storage_error", "schema_too_new", "internal" and anything new.
        _ => 500,
    }
}

/// The success envelope.
pub fn ok(data: Value) -> Response {
    Response::json(200, &json!({ "code": 0, "message": "ok", "data": data }))
}

/// The error envelope of a core error, with the fields an agent needs to
/// act on it (`field`, `required`/`available`/`suggestion`, ...).
pub fn error(err: &Error) -> Response {
    error_with(err, json!({}))
}

/// The error envelope of a core error with `extra` fields merged into its
/// `data` (for a refusal that carries something an `Error` may not hold,
/// such as the registration code of an unbound Moltbook agent).
/// [`error`] with extra `data` members (e.g. a registration code).
pub fn error_with(err: &Error, extra: Value) -> Response {
    let code = err.code();
    let status = status_for(code);
    let mut data = crate::render::error_data(err);
    if let Value::Object(extra) = extra {
        for (key, value) in extra {
            data[key] = value;
        }
    }
    // Server faults do not leak internals to the caller.
    let message = if let Error::UpstreamUnavailable { upstream, .. } = err {
        format!("{upstream} could not be reached or answered unusably; retry later")
    } else if status >= 500
        && !matches!(
            err,
            Error::NoPriceCatalog | Error::ProviderUnavailable { .. }
        )
    {
        "internal error; the operator's log has the details".to_owned()
    } else {
        err.to_string()
    };
    let mut response = Response::json(
        status,
        &json!({ "code": status, "message": message, "data": data }),
    );
    if let Error::RateLimited { retry_after_ms } = err {
        response
            .headers
            .push(("Retry-After", retry_after_ms.div_ceil(1000).to_string()));
    }
    response
}

/// A 500 for a caught panic.
pub fn internal_error() -> Response {
    Response::json(
        500,
        &json!({ "code": 500, "message": "internal error; the operator's log has the details",
                 "data": { "error": "internal" } }),
    )
}

pub use crate::render::credits;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_code_has_a_deliberate_status() {
        let server_faults = ["storage_error", "schema_too_new", "internal"];
        for code in creditgate::error::ERROR_CODES {
            let status = status_for(code);
            if server_faults.contains(code) {
                assert_eq!(status, 500, "{code}");
            } else {
                assert_ne!(status, 500, "{code} falls through to 500");
            }
        }
    }

    #[test]
    fn moltbook_refusals_carry_what_an_agent_acts_on_and_no_internals() {
        let response = error_with(
            &Error::AgentNotBound {
                agent_id: "agent_1".into(),
            },
            json!({ "registration_code": "cg_reg_x" }),
        );
        assert_eq!(response.status, 403);
        let body: Value = serde_json::from_slice(&response.body).expect("json");
        assert_eq!(body["code"], 403);
        assert_eq!(body["data"]["error"], "agent_not_bound");
        assert_eq!(body["data"]["agent_id"], "agent_1");
        assert_eq!(body["data"]["registration_code"], "cg_reg_x");

        let response = error(&Error::IdentityRefused {
            provider: "moltbook",
            reason: "identity_token_expired".into(),
        });
        assert_eq!(response.status, 401);
        let body: Value = serde_json::from_slice(&response.body).expect("json");
        assert_eq!(body["data"]["reason"], "identity_token_expired");

        let response = error(&Error::UpstreamUnavailable {
            upstream: "moltbook",
            detail: "transport error: 10.0.0.7:443 refused".into(),
        });
        assert_eq!(response.status, 502);
        let text = String::from_utf8(response.body).expect("utf-8");
        assert!(text.contains("upstream_unavailable") && text.contains("retry later"));
        assert!(!text.contains("10.0.0.7"), "no internals: {text}");
    }

    #[test]
    fn the_error_envelope_carries_the_machine_code_and_a_non_zero_code() {
        let response = error(&Error::InsufficientCredits {
            required_micros: 50_000_000,
            available_micros: 10_000_000,
            suggestion: None,
        });
        assert_eq!(response.status, 402);
        let body: Value = serde_json::from_slice(&response.body).expect("json");
        assert_eq!(body["code"], 402);
        assert_eq!(body["data"]["error"], "insufficient_credits");
        assert_eq!(body["data"]["required"].to_string(), "50");
        assert_eq!(body["data"]["available"].to_string(), "10");
        assert!(body["data"]["suggestion"].is_string());
    }
}
