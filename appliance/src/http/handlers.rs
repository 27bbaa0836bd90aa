//! Route handlers: each parses its input, calls one `Gate` method and
//! renders the v1 envelope. No business rule lives here: scopes, ownership,
//! prices and idempotency are the core's.

use creditgate::clock::format_rfc3339;
use creditgate::identity::Principal;
use creditgate::{Error, ExchangeOutcome, Job};
use serde_json::{json, Value};

use super::router::Params;
use super::status::{self, credits, ok};
use super::{docs, Request, Response, State, JSON_DEPTH_MAX};

type Handled = Result<Response, Error>;

/// The principal of a bearer route (the router guarantees one).
fn caller(principal: Option<&Principal>) -> Result<&Principal, Error> {
    principal.ok_or(Error::Unauthorized {
        reason: "a credential is required",
    })
}

fn param<'a>(params: &'a Params, name: &str) -> &'a str {
    params
        .iter()
        .find(|(key, _)| *key == name)
        .map_or("", |(_, value)| value.as_str())
}

/// Parses a JSON body: required, UTF-8, nested at most [`JSON_DEPTH_MAX`]
/// deep. Every refusal is `invalid_request` naming `body`.
pub fn json_body(request: &Request) -> Result<Value, Error> {
    let invalid = |message: String| Error::InvalidRequest {
        field: "body".into(),
        message,
    };
    if request.body.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid("a JSON object is required".into()));
    }
    if nesting_depth(&request.body) > JSON_DEPTH_MAX {
        return Err(invalid(format!(
            "JSON nests deeper than {JSON_DEPTH_MAX} levels"
        )));
    }
    serde_json::from_slice(&request.body)
        .map_err(|err| invalid(format!("is not valid JSON: {err}")))
}

/// The deepest nesting of arrays and objects in a JSON text (strings
/// skipped), computed without parsing so hostile input costs one pass.
fn nesting_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The string member `field` of a JSON body, or `invalid_request` naming it.
fn required_str<'a>(body: &'a Value, field: &str) -> Result<&'a str, Error> {
    body[field].as_str().ok_or_else(|| Error::InvalidRequest {
        field: field.to_owned(),
        message: "is required (a string)".into(),
    })
}

/// A job as its owner polls it (reference 001's poll shape).
pub fn job_view(job: &Job) -> Value {
    json!({
        "request_id": job.request_id,
        "task_id": job.id,
        "provider_task_id": job.provider_task_id,
        "status": job.status.as_str(),
        "model": job.model,
        "product": job.product,
        "outputs": job.outputs.iter().map(|o| json!({"url": o.url, "mime": o.mime})).collect::<Vec<_>>(),
        "seed": job.seed,
        "credits": credits(job.estimate_micros),
        "charged": credits(job.charged_micros.unwrap_or(0)),
        "price_version": job.price_version,
        "usage_event_id": job.usage_event_id,
        "error": job.error_code.as_ref().map(|code| json!({"code": code, "message": job.error_message})),
        "created_at": format_rfc3339(job.created_at),
        "finished_at": job.finished_at.map(format_rfc3339),
    })
}

/// `POST /v1/generate`.
pub fn generate(
    state: &State,
    request: &Request,
    _: &Params,
    principal: Option<&Principal>,
) -> Handled {
    let body = json_body(request)?;
    let submitted = state.gate.submit_for(caller(principal)?, &body)?;
    let mut data = job_view(&submitted.job);
    data["replayed"] = json!(submitted.replayed);
    Ok(ok(data))
}

/// `GET /v1/generate/{request_id}`.
pub fn poll(state: &State, _: &Request, params: &Params, principal: Option<&Principal>) -> Handled {
    let job = state
        .gate
        .job_for(&caller(principal)?.account_id, param(params, "request_id"))?;
    Ok(ok(job_view(&job)))
}

/// `POST /v1/generate/{request_id}/cancel`.
pub fn cancel(
    state: &State,
    _: &Request,
    params: &Params,
    principal: Option<&Principal>,
) -> Handled {
    let job = state
        .gate
        .cancel(&caller(principal)?.account_id, param(params, "request_id"))?;
    Ok(ok(job_view(&job)))
}

/// `GET /v1/credits/balance`.
pub fn balance(state: &State, _: &Request, _: &Params, principal: Option<&Principal>) -> Handled {
    let principal = caller(principal)?;
    let balance = state.gate.balance(&principal.account_id)?;
    Ok(ok(json!({
        "currency": "credits",
        "available": credits(balance.available),
        "pending": credits(balance.pending),
        "posted": credits(balance.posted),
    })))
}

/// `POST /v1/credits/estimate`.
pub fn estimate(
    state: &State,
    request: &Request,
    _: &Params,
    principal: Option<&Principal>,
) -> Handled {
    caller(principal)?;
    let estimate = state.gate.estimate_body(&json_body(request)?)?;
    Ok(ok(crate::render::estimate(&estimate)))
}

/// `GET /v1/models/list` (optionally `?price_version=`).
pub fn models(
    state: &State,
    request: &Request,
    _: &Params,
    principal: Option<&Principal>,
) -> Handled {
    caller(principal)?;
    let version = request
        .query
        .split('&')
        .find_map(|pair| pair.strip_prefix("price_version="));
    let listing = state.gate.models(version)?;
    let mut data = serde_json::to_value(&listing).unwrap_or(Value::Null);
    if let Some(models) = data["models"].as_array_mut() {
        for model in models {
            // `credits` is the price of the default request, as the
            // reference's tables list it.
            model["credits"] = model["default_credits"].clone();
        }
    }
    Ok(ok(data))
}

/// `GET /v1/files/{job_id}/{token}/{index}/{name}`: an output, through its
/// unguessable URL.
pub fn file(state: &State, _: &Request, params: &Params, _: Option<&Principal>) -> Handled {
    let index = param(params, "index")
        .parse::<usize>()
        .map_err(|_| Error::NotFound {
            what: "output",
            id: param(params, "index").to_owned(),
        })?;
    let file = state
        .gate
        .output_file(param(params, "job_id"), param(params, "token"), index)?;
    let mut response = Response::bytes(200, file.mime, file.bytes.to_vec());
    response
        .headers
        .push(("Cache-Control", "private, max-age=3600".to_owned()));
    Ok(response)
}

/// The envelope of the agent identity routes (`success` plus `data`, as
/// reference 001 shows them, with the v1 `code` for uniformity).
fn agent_ok(data: Value) -> Response {
    Response::json(
        200,
        &json!({ "success": true, "code": 0, "message": "ok", "data": data }),
    )
}

/// `POST /api/v1/agents/register`.
pub fn agent_register(
    state: &State,
    request: &Request,
    _: &Params,
    _: Option<&Principal>,
) -> Handled {
    let body = json_body(request)?;
    let registration = state
        .gate
        .register_agent(&request.method, &request.path, &body)?;
    Ok(agent_ok(json!({
        "agent_id": registration.agent_id,
        "registration_code": registration.registration_code,
        "expires_at": format_rfc3339(registration.expires_at),
    })))
}

/// `POST /api/v1/agents/bind` (admin): the owner binds a registration code
/// to the caller's account.
pub fn agent_bind(
    state: &State,
    request: &Request,
    _: &Params,
    principal: Option<&Principal>,
) -> Handled {
    let principal = caller(principal)?;
    let body = json_body(request)?;
    let code = required_str(&body, "registration_code")?;
    let scopes = match &body["allowed_scopes"] {
        Value::Null => None,
        Value::Array(items) => Some(
            items
                .iter()
                .map(|s| s.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or(Error::InvalidRequest {
                    field: "allowed_scopes".into(),
                    message: "must be an array of strings".into(),
                })?,
        ),
        _ => {
            return Err(Error::InvalidRequest {
                field: "allowed_scopes".into(),
                message: "must be an array of strings".into(),
            })
        }
    };
    let agent = state.gate.bind_agent_as(principal, code, scopes)?;
    Ok(agent_ok(json!({
        "agent_id": agent.id,
        "account_id": agent.account_id,
        "allowed_scopes": agent.allowed_scopes,
    })))
}

/// `POST /api/v1/agents/keys/create` (signed).
pub fn agent_key_create(
    state: &State,
    request: &Request,
    _: &Params,
    _: Option<&Principal>,
) -> Handled {
    let body = json_body(request)?;
    let created = state
        .gate
        .agent_create_key(&request.method, &request.path, &body)?;
    Ok(agent_ok(json!({
        "key_id": created.key_id,
        "api_key": created.api_key,
        "scopes": created.scopes,
        "expires_at": created.expires_at.map(format_rfc3339),
    })))
}

/// `POST /api/v1/agents/keys/list` (signed).
pub fn agent_keys_list(
    state: &State,
    request: &Request,
    _: &Params,
    _: Option<&Principal>,
) -> Handled {
    let body = json_body(request)?;
    let keys = state
        .gate
        .agent_list_keys(&request.method, &request.path, &body)?;
    Ok(agent_ok(
        json!({ "keys": keys.iter().map(crate::render::key).collect::<Vec<_>>() }),
    ))
}

/// `POST /api/v1/agents/keys/revoke` (signed).
pub fn agent_key_revoke(
    state: &State,
    request: &Request,
    _: &Params,
    _: Option<&Principal>,
) -> Handled {
    let body = json_body(request)?;
    let key = state
        .gate
        .agent_revoke_key(&request.method, &request.path, &body)?;
    Ok(agent_ok(crate::render::key(&key)))
}

fn token_view(grant: &creditgate::identity::TokenGrant) -> Value {
    json!({
        "access_token": grant.access_token,
        "token_type": "Bearer",
        "expires_in": grant.expires_in,
        "refresh_token": grant.refresh_token,
        "agent_id": grant.agent_id,
        "account_id": grant.account_id,
        "scopes": grant.scopes,
    })
}

/// `POST /api/v1/agents/auth/token` (bearer: the agent's API key; signed).
pub fn agent_token(state: &State, request: &Request, _: &Params, _: Option<&Principal>) -> Handled {
    let key = super::router::bearer(request)?;
    let body = json_body(request)?;
    let grant = state
        .gate
        .issue_token(key, &request.method, &request.path, &body)?;
    Ok(ok(token_view(&grant)))
}

/// `POST /api/v1/agents/auth/refresh`.
pub fn agent_refresh(
    state: &State,
    request: &Request,
    _: &Params,
    _: Option<&Principal>,
) -> Handled {
    let body = json_body(request)?;
    let token = required_str(&body, "refresh_token")?;
    let grant = state.gate.refresh_token(token)?;
    Ok(ok(token_view(&grant)))
}

/// The header a Moltbook agent presents its identity token in (lowercase,
/// as [`Request::header`] looks headers up).
pub const MOLTBOOK_IDENTITY_HEADER: &str = "x-moltbook-identity";

/// The identity token of `POST /auth/moltbook/exchange`: the
/// `X-Moltbook-Identity` header when it is present and not blank (the body
/// is then not read at all), else `identity_token` of a JSON body. `None`
/// when neither gives one (the core refuses it as `unauthorized`); a body
/// that is not JSON, or an `identity_token` that is not a string, is
/// `invalid_request`.
pub fn identity_token(request: &Request) -> Result<Option<String>, Error> {
    if let Some(token) = request
        .header(MOLTBOOK_IDENTITY_HEADER)
        .filter(|token| !token.trim().is_empty())
    {
        return Ok(Some(token.to_owned()));
    }
    if request.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match &json_body(request)?["identity_token"] {
        Value::Null => Ok(None),
        Value::String(token) => Ok(Some(token.clone())),
        _ => Err(Error::InvalidRequest {
            field: "identity_token".into(),
            message: "must be a string".into(),
        }),
    }
}

/// `POST /auth/moltbook/exchange`: a Moltbook identity token for a
/// 15-minute access token. An agent not yet bound (and no default account
/// configured) gets 403 `agent_not_bound` with a `registration_code` for
/// its owner to bind.
pub fn moltbook_exchange(
    state: &State,
    request: &Request,
    _: &Params,
    _: Option<&Principal>,
) -> Handled {
    let token = identity_token(request)?;
    match state
        .gate
        .moltbook_exchange(token.as_deref().unwrap_or(""))?
    {
        ExchangeOutcome::Granted(grant) => Ok(ok(json!({
            "access_token": grant.access_token,
            "token_type": grant.token_type,
            "expires_in": grant.expires_in,
            "agent_id": grant.agent_id,
            "account_id": grant.account_id,
            "scopes": grant.scopes,
        }))),
        ExchangeOutcome::NotBound(registration) => Ok(status::error_with(
            &Error::AgentNotBound {
                agent_id: registration.agent_id.clone(),
            },
            json!({
                "registration_code": registration.registration_code,
                "expires_at": format_rfc3339(registration.expires_at),
                "hint": "ask your owner to bind the registration_code to their account \
                         (creditgate agents bind CODE --account ID, or POST /api/v1/agents/bind \
                         with an admin key), then exchange again",
            }),
        )),
    }
}

/// `GET /agent/openapi.json`: the document as this instance is now (its
/// honoured catalogs, the routes that are on).
pub fn openapi(state: &State, _: &Request, _: &Params, _: Option<&Principal>) -> Handled {
    let live = docs::Live {
        catalogs: state.gate.honoured_catalogs()?,
        moltbook: state
            .gate
            .identity_exchange_enabled(creditgate::identity::external::MOLTBOOK_PROVIDER),
    };
    Ok(Response::json(
        200,
        &docs::openapi(&state.public_base_url, &live),
    ))
}

/// `GET /llms.txt` and `GET /agent/llms.txt`.
pub fn llms(state: &State, _: &Request, _: &Params, _: Option<&Principal>) -> Handled {
    let text = docs::llms_txt(
        &state.public_base_url,
        state.gate.active_price_version()?.as_deref(),
    );
    Ok(Response::bytes(
        200,
        "text/plain; charset=utf-8",
        text.into_bytes(),
    ))
}

/// `GET /healthz`: the database answers and the job workers are not
/// failing (else 503 `workers_failing` with the reason).
pub fn health(state: &State, _: &Request, _: &Params, _: Option<&Principal>) -> Handled {
    state.gate.worker_health().check()?;
    let version = state.gate.active_price_version()?;
    Ok(ok(json!({ "status": "ok", "price_version": version })))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use creditgate::identity::{IdentityVerifier, VerifiedIdentity};
    use creditgate::{Gate, ManualClock, NewAccount, StoreOptions};

    use super::*;

    /// A verifier that vouches for any token as the agent named by it, and
    /// remembers the tokens it was asked about.
    #[derive(Debug, Default)]
    struct Vouching {
        asked: Mutex<Vec<String>>,
    }

    impl IdentityVerifier for Vouching {
        fn provider(&self) -> &'static str {
            "moltbook"
        }

        fn verify(&self, identity_token: &str) -> creditgate::Result<VerifiedIdentity> {
            let token = creditgate::identity::external::check_token("moltbook", identity_token)?;
            self.asked.lock().expect("lock").push(token.to_owned());
            Ok(VerifiedIdentity {
                external_id: token.to_owned(),
                name: token.to_owned(),
                karma: None,
                owner_handle: None,
            })
        }
    }

    fn exchange(state: &State, header: Option<&str>, body: &str) -> (u16, Value) {
        let mut request = Request {
            method: "POST".into(),
            path: "/auth/moltbook/exchange".into(),
            body: body.as_bytes().to_vec(),
            ..Request::default()
        };
        if let Some(token) = header {
            request
                .headers
                .push((MOLTBOOK_IDENTITY_HEADER.into(), token.into()));
        }
        let response = super::super::handle(state, &request);
        let value = serde_json::from_slice(&response.body).expect("json");
        (response.status, value)
    }

    #[test]
    fn the_identity_header_wins_over_the_body() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = Gate::open(
            &StoreOptions::new(dir.path().join("h.db")),
            Arc::new(ManualClock::new(1_790_000_000_000)),
        )
        .expect("open");
        plain
            .import_catalog(crate::serve::SHIPPED_CATALOG)
            .expect("catalog");
        let account = plain
            .create_account(&NewAccount::named("pool"))
            .expect("account")
            .id;
        let verifier = Arc::new(Vouching::default());
        let gate = plain.with_identity_verifier(verifier.clone(), Some(account.clone()));
        let state = State {
            gate: Arc::new(gate),
            public_base_url: "http://127.0.0.1:8080".into(),
        };
        let asked = || verifier.asked.lock().expect("lock").clone();

        let body = r#"{"identity_token":"from-body"}"#;
        let (status, both) = exchange(&state, Some("from-header"), body);
        assert_eq!(status, 200, "{both}");
        assert_eq!(asked(), ["from-header"], "the header wins");
        assert_eq!(both["code"], 0);
        assert_eq!(both["data"]["token_type"], "Bearer");
        assert_eq!(both["data"]["expires_in"], 900);
        assert_eq!(both["data"]["account_id"], account.as_str());
        assert!(both["data"]["access_token"].is_string());
        assert!(both["data"]["scopes"].is_array());

        // With the header, the body is not read: even a broken one.
        assert_eq!(exchange(&state, Some("from-header"), "{not json").0, 200);
        // A blank header does not count: the body is used.
        let (status, _) = exchange(&state, Some("  "), body);
        assert_eq!(status, 200);
        assert_eq!(asked().last().map(String::as_str), Some("from-body"));

        let (status, none) = exchange(&state, None, "");
        assert_eq!(
            (status, none["data"]["error"].as_str()),
            (401, Some("unauthorized"))
        );
        let (status, wrong) = exchange(&state, None, r#"{"identity_token": 7}"#);
        assert_eq!(
            (status, wrong["data"]["field"].as_str()),
            (400, Some("identity_token"))
        );
    }

    /// A gate with the shipped catalog and an account with a key for
    /// images, behind a state the socket-free `handle` serves.
    fn served() -> (tempfile::TempDir, State, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let gate = Gate::open(
            &StoreOptions::new(dir.path().join("s.db")),
            Arc::new(ManualClock::new(1_790_000_000_000)),
        )
        .expect("open");
        gate.import_catalog(crate::serve::SHIPPED_CATALOG)
            .expect("catalog");
        let account = gate
            .create_account(&NewAccount::named("agent"))
            .expect("account")
            .id;
        gate.grant("seed", &account, 100_000.into(), "")
            .expect("grant");
        let (_, key) = gate
            .create_api_key(&account, "k", &["image".to_owned()], None)
            .expect("key");
        let state = State {
            gate: Arc::new(gate),
            public_base_url: "http://127.0.0.1:8080".into(),
        };
        (dir, state, key)
    }

    fn call(state: &State, method: &str, path: &str, key: &str, body: &str) -> (u16, Value) {
        let request = Request {
            method: method.into(),
            path: path.into(),
            headers: vec![("authorization".into(), format!("Bearer {key}"))],
            body: body.as_bytes().to_vec(),
            request_id: "req-test".into(),
            ..Request::default()
        };
        let response = super::super::handle(state, &request);
        let value = serde_json::from_slice(&response.body).expect("json");
        (response.status, value)
    }

    #[test]
    fn a_full_disk_answers_507_insufficient_storage_and_submits_succeed_when_space_returns() {
        let (_dir, state, key) = served();
        let store = state.gate.store_for_tests();
        store
            .write(|tx| {
                let pages: i64 = tx.pragma_query_value(None, "page_count", |r| r.get(0))?;
                Ok(tx.pragma_update(None, "max_page_count", pages)?)
            })
            .expect("fill the disk");
        let body = |i: usize| {
            json!({"request_id": format!("r{i}"), "model": "z-image", "prompt": "x".repeat(2_000)})
                .to_string()
        };
        let mut refused = None;
        for i in 0..500 {
            let (status, answer) = call(&state, "POST", "/v1/generate", &key, &body(i));
            if status != 200 {
                refused = Some((i, status, answer));
                break;
            }
        }
        let (at, status, answer) = refused.expect("the disk fills up");
        assert_eq!(status, 507, "{answer}");
        assert_eq!(answer["code"], 507);
        assert_eq!(answer["data"]["error"], "insufficient_storage");

        store
            .write(|tx| Ok(tx.pragma_update(None, "max_page_count", 1_073_741_823)?))
            .expect("space returns");
        let (status, answer) = call(&state, "POST", "/v1/generate", &key, &body(at));
        assert_eq!(status, 200, "the server recovered by itself: {answer}");
        assert!(state.gate.verify_ledger().expect("verify").is_ok());
    }

    #[test]
    fn healthz_says_why_while_the_workers_keep_failing() {
        let (_dir, state, _) = served();
        assert_eq!(call(&state, "GET", "/healthz", "", "").0, 200);
        state
            .gate
            .store_for_tests()
            .write(|tx| Ok(tx.execute_batch("DROP INDEX jobs_due")?))
            .expect("break the worker's query");
        for _ in 0..creditgate::FAILING_STEPS_UNHEALTHY {
            assert!(state.gate.run_due_work(8).is_err());
        }
        let (status, answer) = call(&state, "GET", "/healthz", "", "");
        assert_eq!(status, 503, "{answer}");
        assert_eq!(answer["data"]["error"], "workers_failing");
        assert!(
            answer["data"]["reason"]
                .as_str()
                .is_some_and(|why| why.contains("jobs_due")),
            "{answer}"
        );
        assert!(answer["message"]
            .as_str()
            .unwrap_or("")
            .contains("jobs_due"));
    }

    #[test]
    fn nesting_depth_skips_strings() {
        assert_eq!(nesting_depth(br#"{"a":[1,{"b":"[[[["}]}"#), 3);
        assert_eq!(nesting_depth(b"[[[[]]]]"), 4);
        assert_eq!(nesting_depth(br#""\"[""#), 0);
    }
}
