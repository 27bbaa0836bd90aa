//! Machine-readable docs for agents: the OpenAPI 3.1 document (kept in
//! `openapi.json` beside this file and checked against the route table by
//! a test) and llms.txt, both naming this instance's base URL.

use serde_json::{json, Value};

const OPENAPI: &str = include_str!("openapi.json");

/// The OpenAPI document, with this instance as its server.
pub fn openapi(base_url: &str) -> Value {
    let mut doc: Value = serde_json::from_str(OPENAPI).unwrap_or_else(|_| json!({}));
    doc["servers"] = json!([{ "url": base_url }]);
    doc
}

/// The agent quickstart for this instance.
pub fn llms_txt(base_url: &str, price_version: Option<&str>) -> String {
    let version = price_version.unwrap_or("(no catalog imported yet)");
    format!(
        r#"# creditgate

> A credits gateway for AI agents that generate media (images, video, music,
> chat). You hold prepaid credits; a job's price is held when you submit it
> and charged exactly once, only if it succeeds.

Base URL: {base_url}
OpenAPI 3.1: {base_url}/agent/openapi.json
Active price version: {version}

## Authenticate

Send `Authorization: Bearer <key>` on every /v1 call. A key is an API key
from the operator (`cg_live_...`), an agent key (`cg_agent_...`), or a
15-minute access token (`cg_at_...`) from POST /api/v1/agents/auth/token
or POST /auth/moltbook/exchange.
Keys carry scopes: a product (`image`, `video`, `music`, `chat`, ...) or
`admin`. A key without the product's scope gets 403 `forbidden`.

## The flow

1. GET {base_url}/v1/models/list             models, prices, options
2. POST {base_url}/v1/credits/estimate       {{"model": "nano-banana-pro", "units": {{"count": 1, "resolution": "4K"}}}}
3. POST {base_url}/v1/generate               {{"request_id": "<your uuid>", "model": "nano-banana-pro", "prompt": "..."}}
4. GET {base_url}/v1/generate/<request_id>   until status is succeeded, failed, canceled or expired
5. Fetch data.outputs[i].url (each with its mime).

Example:

    curl -s {base_url}/v1/generate \
      -H "Authorization: Bearer $CREDITGATE_KEY" -H "Content-Type: application/json" \
      -d '{{"request_id":"demo-001","model":"nano-banana-pro","prompt":"a lighthouse at dawn"}}'

Shortcuts: top-level count, resolution, duration and aspect_ratio go into
units; image_urls into input_image_urls; product may be omitted.
Idempotency: reuse a request_id to retry safely. The same request returns
the same job and charges nothing more; a different request under the same
request_id is 409 `idempotency_conflict`. A refused submit records nothing,
so retry the same request_id once you fixed the cause (after a top-up).
Cancel: POST {base_url}/v1/generate/<request_id>/cancel releases the hold.
Pin prices with "price_version"; the charge never changes after the fact.

## Answers

Every /v1 answer is {{"code", "message", "data"}}. code is 0 on success and
the HTTP status on error; data.error is the machine code:
400 invalid_request (data.field), invalid_amount, unknown_model (data.close_matches),
invalid_option (data.allowed), unknown_price_version (data.active_price_version),
invalid_catalog (data.path), capture_exceeds_hold, refund_exceeds_charge,
wrong_transfer_kind, registration_expired;
401 unauthorized, token_expired, invalid_signature, stale_timestamp, nonce_reused,
refresh_token_reused, identity_refused (data.reason);
402 insufficient_credits (data.required, data.available, data.suggestion);
403 forbidden (data.scope), agent_not_bound (data.agent_id);
400 bad_request (the request line or a header is malformed or not ASCII);
404 not_found; 405 method_not_allowed; 408 request_timeout;
409 idempotency_conflict, invalid_transition, exists_with_different_fields (data.field),
hold_already_resolved, hold_expired, price_version_conflict, agent_already_bound,
balance_limit;
413 payload_too_large (data.limit_bytes); 414 uri_too_long; 417 expectation_failed;
431 header_too_large (a header line over 8 KiB or headers over 32 KiB);
429 rate_limited (data.retry_after seconds, and a Retry-After header);
500 internal, storage_error, schema_too_new (the server's fault; retry later);
502 upstream_unavailable (retry later);
503 no_price_catalog, provider_unavailable, storage_unavailable,
workers_failing, server_busy (too many open connections; Retry-After) (retry later);
507 insufficient_storage (the server's disk is full: nothing of the request
was kept, work already accepted is safe; retry later).
Credits are exact decimal numbers (0.0165).

## Sign in with Moltbook

If you are a Moltbook agent (and the operator enabled it; else 404):

1. Ask Moltbook for an identity token with your Moltbook API key:
   POST https://www.moltbook.com/api/v1/agents/me/identity-token -> identity_token
2. POST {base_url}/auth/moltbook/exchange with the header
   `X-Moltbook-Identity: <identity_token>` (or the body {{"identity_token": "..."}};
   if you send both, the header wins and the body is ignored)
   -> data.access_token (900 s), data.agent_id, data.account_id, data.scopes
3. Use `Authorization: Bearer <access_token>` on /v1. There is no refresh
   token: when it expires, get a fresh identity token and exchange again.

The first time, you may get 403 agent_not_bound with data.registration_code:
hand it to your owner, who binds it to their account
(`creditgate agents bind CODE --account ID`), then exchange again. Each
exchange while unbound gives a new code and voids the previous one. A
refused identity token is 401 identity_refused (data.reason, such as
identity_token_expired); Moltbook being unreachable is 502
upstream_unavailable: retry later.

## Agent identity (ed25519)

1. POST /api/v1/agents/register {{public_key, agent_name, agent_version, timestamp, nonce, signature}}
   -> data.agent_id, data.registration_code
2. Your owner binds the code to their account:
   `creditgate agents bind CODE --account ID` (or POST /api/v1/agents/bind with an admin key).
3. POST /api/v1/agents/keys/create {{agent_id, registration_code, key_name, scopes, timestamp, nonce, signature}}
   -> data.api_key (shown once)
4. POST /api/v1/agents/auth/token with `Authorization: Bearer <api_key>` and
   {{agent_id, scopes, timestamp, nonce, signature}} -> access_token (900 s), refresh_token
5. POST /api/v1/agents/auth/refresh {{refresh_token}} -> a new pair. A refresh
   token works once; presenting a used one revokes its whole family.
   Keys: POST /api/v1/agents/keys/list and /keys/revoke (signed).

Signing: signature = lowercase hex of the ed25519 signature over

    METHOD + " " + PATH + "\n" + JCS(body without "signature")

where JCS is RFC 8785 canonical JSON (keys sorted, no whitespace), e.g.
"POST /api/v1/agents/auth/token\n{{"agent_id":"agt_...","nonce":"n1","scopes":["image"],"timestamp":1790000000}}".
timestamp is Unix seconds within 300 s of the server's clock; each nonce may
be used once per agent. Binding method and path stops a signature made for
one endpoint from being replayed at another.
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::router::ROUTES;
    use crate::http::status::status_for;
    use creditgate::error::{ErrorCode, ERROR_CODES};

    #[test]
    fn the_document_and_the_router_agree_exactly() {
        let doc = openapi("http://example.test");
        let paths = doc["paths"].as_object().expect("paths");
        for route in ROUTES {
            let method = route.method.to_ascii_lowercase();
            assert!(
                paths
                    .get(route.pattern)
                    .and_then(|p| p.get(&method))
                    .is_some(),
                "{} {} is routed but not documented",
                route.method,
                route.pattern
            );
        }
        for (path, item) in paths {
            for method in item.as_object().expect("path item").keys() {
                assert!(
                    ROUTES
                        .iter()
                        .any(|r| r.pattern == path && r.method.eq_ignore_ascii_case(method)),
                    "{method} {path} is documented but not routed"
                );
            }
        }
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["servers"][0]["url"], "http://example.test");
    }

    /// The status each code is listed under in `text`: a code belongs to
    /// the last three-digit status before it.
    fn documented_statuses(text: &str) -> Vec<(String, u16)> {
        let mut status = 0;
        let mut found = Vec::new();
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if let Ok(number) = word.parse::<u16>() {
                if (400..600).contains(&number) {
                    status = number;
                }
            } else if ErrorCode::ALL.iter().any(|code| code.as_str() == word) {
                found.push((word.to_owned(), status));
            }
        }
        found
    }

    #[test]
    fn every_error_code_is_documented_with_its_status_in_llms_txt_and_openapi() {
        let text = llms_txt("http://example.test", None);
        let answers = text
            .split("## Answers")
            .nth(1)
            .and_then(|rest| rest.split("Credits are exact").next())
            .expect("an Answers section");
        let doc = openapi("http://example.test");
        let error = &doc["components"]["schemas"]["ErrorEnvelope"]["properties"]["data"]
            ["properties"]["error"];
        let description = error["description"].as_str().expect("description");
        for listing in [answers, description] {
            let documented = documented_statuses(listing);
            for code in ErrorCode::ALL {
                let statuses: Vec<u16> = documented
                    .iter()
                    .filter(|(name, _)| name == code.as_str())
                    .map(|(_, status)| *status)
                    .collect();
                assert_eq!(
                    statuses,
                    [status_for(*code)],
                    "{code} is listed once, under its status: {listing}"
                );
            }
        }
        let listed: Vec<&str> = error["enum"]
            .as_array()
            .expect("enum")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(listed, ERROR_CODES, "the OpenAPI enum is the list of codes");
    }
}
