//! The Rynjer dialect's envelope (references 000 and 001; CONTRACTS.md
//! §6): `{code, message, data}` with `code` 0 on success and the HTTP
//! status on error, `data.error` the machine code; the agent identity
//! routes add `success`. Statuses come from the one table
//! (`http::status`), messages from its public-message rule.

use creditgate::Error;
use serde_json::{json, Value};

use crate::http::response::Response;
use crate::http::status::{public_message, status_for};

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
