//! The one table from core errors to HTTP statuses, and the v1 envelope:
//! `{code, message, data}` with `code` 0 on success and the HTTP status on
//! error, `data.error` the machine code (CONTRACTS.md §6). A status derives
//! from the error's kind (the core's one table of codes and kinds), with a
//! few exact overrides by code; whether to log an error derives from the
//! same kind, so the two cannot disagree.

use creditgate::error::{ErrorCode, ErrorKind};
use creditgate::Error;
use serde_json::{json, Value};

use super::response::Response;

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
        ErrorCode::InsufficientCredits => 402,
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
fn public_message(err: &Error) -> String {
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

/// The success envelope.
pub fn ok(data: Value) -> Response {
    Response::json(200, &json!({ "code": 0, "message": "ok", "data": data }))
}

/// The envelope of the agent identity routes (`success` plus `data`, as
/// reference 001 shows them, with the v1 `code` for uniformity).
pub fn agent_ok(data: Value) -> Response {
    Response::json(
        200,
        &json!({ "success": true, "code": 0, "message": "ok", "data": data }),
    )
}

/// The error envelope of a core error, with the fields an agent needs to
/// act on it (`field`, `required`/`available`/`suggestion`, ...).
pub fn error(err: &Error) -> Response {
    error_with(err, json!({}))
}

/// The error envelope of a core error with `extra` fields merged into its
/// `data` (for a refusal that carries something an `Error` may not hold,
/// such as the registration code of an unbound Moltbook agent).
pub fn error_with(err: &Error, extra: Value) -> Response {
    let status = status_for(err.error_code());
    let mut data = crate::render::error_data(err);
    if let Value::Object(extra) = extra {
        for (key, value) in extra {
            data[key] = value;
        }
    }
    let message = public_message(err);
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
            ("invalid_signature", 401),
            ("webhook_unverified", 401),
            ("provider_not_configured", 400),
            ("stale_timestamp", 401),
            ("nonce_reused", 401),
            ("refresh_token_reused", 401),
            ("registration_expired", 400),
            ("agent_not_bound", 403),
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

    #[test]
    fn server_faults_are_500s_not_the_callers_invalid_request() {
        for err in [
            Error::CorruptData {
                detail: "stored request of job_1 does not decode".into(),
            },
            Error::Internal {
                detail: "could not enable WAL journal mode".into(),
            },
        ] {
            let response = error(&err);
            assert_eq!(response.status, 500, "{err}");
            let body: Value = serde_json::from_slice(&response.body).expect("json");
            assert_eq!(body["data"]["error"], "internal");
            assert!(!body["message"].as_str().unwrap_or("").contains("job_1"));
            assert!(err.is_server_fault());
        }
        // A 503 is a server fault (logged) like every other 5xx; before,
        // the status table and the fault list disagreed on it.
        assert_eq!(error(&Error::NoPriceCatalog).status, 503);
        assert!(Error::NoPriceCatalog.is_server_fault());
    }

    #[test]
    fn a_full_disk_is_507_insufficient_storage_not_a_generic_500() {
        let response = error(&Error::StorageFull {
            detail: "database or disk is full".into(),
        });
        assert_eq!(response.status, 507);
        let body: Value = serde_json::from_slice(&response.body).expect("json");
        assert_eq!(body["code"], 507);
        assert_eq!(body["data"]["error"], "insufficient_storage");
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
