//! Route handlers: each parses its input, calls one `Gate` method and
//! renders the v1 envelope. No business rule lives here: scopes, ownership,
//! prices and idempotency are the core's.

use creditgate::clock::format_rfc3339;
use creditgate::identity::Principal;
use creditgate::{Error, Job};
use serde_json::{json, Value};

use super::router::Params;
use super::status::{credits, ok};
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
    Ok(ok(serde_json::to_value(&estimate).unwrap_or(Value::Null)))
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
    principal.require_scope("admin")?;
    let body = json_body(request)?;
    let code = body["registration_code"]
        .as_str()
        .ok_or(Error::InvalidRequest {
            field: "registration_code".into(),
            message: "is required".into(),
        })?;
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
    let agent = state.gate.bind_agent(code, &principal.account_id, scopes)?;
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
    let token = body["refresh_token"]
        .as_str()
        .ok_or(Error::InvalidRequest {
            field: "refresh_token".into(),
            message: "is required".into(),
        })?;
    let grant = state.gate.refresh_token(token)?;
    Ok(ok(token_view(&grant)))
}

/// `GET /agent/openapi.json`.
pub fn openapi(state: &State, _: &Request, _: &Params, _: Option<&Principal>) -> Handled {
    Ok(Response::json(200, &docs::openapi(&state.public_base_url)))
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

/// `GET /healthz`: the database answers.
pub fn health(state: &State, _: &Request, _: &Params, _: Option<&Principal>) -> Handled {
    let version = state.gate.active_price_version()?;
    Ok(ok(json!({ "status": "ok", "price_version": version })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_depth_skips_strings() {
        assert_eq!(nesting_depth(br#"{"a":[1,{"b":"[[[["}]}"#), 3);
        assert_eq!(nesting_depth(b"[[[[]]]]"), 4);
        assert_eq!(nesting_depth(br#""\"[""#), 0);
    }
}
