//! The OpenAI-compatible dialect, under `/v1` beside Rynjer's routes (the
//! paths do not collide): `GET /v1/models`, `POST /v1/images/generations`,
//! `POST /v1/chat/completions` (non-streaming and SSE), and its OpenAPI
//! document at `GET /openai/openapi.json`. Its decoders turn a body into
//! the core's typed [`GenerateRequest`], its handlers submit it through the
//! same idempotent submit as every dialect and wait synchronously for the
//! job in the core (`Gate::wait_for_job`, woken by the worker, bounded by
//! [`JOB_WAIT_SECS_MAX`]), and its renderers answer in OpenAI's shapes.
//! Errors are `{"error": {message, type, param, code}}` with the one
//! status table's statuses, `code` our machine code.
//!
//! Choices (CONTRACTS.md §6): `Idempotency-Key` is the request id; without
//! one each call is a new job (a minted request id). A job still running
//! at the bound answers 504 `job_still_running` naming its task id (the job
//! goes on: `GET /v1/generate/{task_id}`, or the same call with the same
//! `Idempotency-Key` waits again). A chat's prompt is its messages as text
//! (a lone user message is its content; otherwise one `role: content`
//! paragraph per message). A streamed chat is sent once the whole answer is
//! known (not incremental).

use base64::Engine as _;
use creditgate::pricing::{OptionName, OptionValue, RequestedUnits};
use creditgate::request::GenerateRequest;
use creditgate::{Error, Job, Quota};
use serde_json::{json, Value};

use super::shared::{
    messages_prompt, output_bytes, request_id, submit_and_wait, whole_number, Ended, Parts,
};

use crate::http::docs;
use crate::http::request::{required_str, Call};
use crate::http::response::Response;
use crate::http::status::{public_message, status_for};

/// The longest a synchronous call waits for its job, in seconds; past it
/// the answer is 504 `job_still_running` and the job goes on.
pub const JOB_WAIT_SECS_MAX: u64 = 120;
/// The prefix of a request id minted for a call without `Idempotency-Key`.
pub const MINTED_REQUEST_ID_PREFIX: &str = "oai_";
/// `owned_by` of every listed model.
pub const OWNED_BY: &str = "creditgate";
/// The machine code of a job still running at the wait's bound.
pub const STILL_RUNNING_CODE: &str = "job_still_running";

/// What an OpenAI handler answers.
type Handled = Result<Response, Error>;

/// The OpenAI `type` of an error answered with `status`.
fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "insufficient_quota",
        403 => "permission_error",
        429 => "rate_limit_error",
        500.. => "server_error",
        _ => "invalid_request_error",
    }
}

/// An error answer in OpenAI's shape.
fn envelope(status: u16, message: &str, param: Option<&str>, code: &str) -> Response {
    Response::json(
        status,
        &json!({ "error": {
            "message": message,
            "type": error_type(status),
            "param": param,
            "code": code,
        }}),
    )
}

/// The error answer of a core error: its status from the one table, its
/// public message (no internals for a server fault), `param` the field a
/// refusal names, `code` the machine code.
pub fn error(err: &Error) -> Response {
    let status = status_for(err.error_code());
    let data = crate::render::error_data(err);
    let mut response = envelope(
        status,
        &public_message(err),
        data["field"].as_str(),
        err.code(),
    );
    if let Error::RateLimited { retry_after_ms } = err {
        response
            .headers
            .push(("Retry-After", retry_after_ms.div_ceil(1000).to_string()));
    }
    response
}

/// `GET /v1/models`: the active catalog's models.
pub fn models(call: &Call) -> Handled {
    call.caller()?;
    let gate = call.gate();
    let listing = gate.models(None)?;
    let created = gate
        .price_versions()?
        .iter()
        .find(|info| info.version == listing.price_version)
        .map_or(0, |info| info.imported_at / 1000);
    let data: Vec<Value> = listing
        .models
        .iter()
        .map(|entry| {
            json!({ "id": entry.model, "object": "model", "created": created, "owned_by": OWNED_BY })
        })
        .collect();
    Ok(Response::json(
        200,
        &json!({ "object": "list", "data": data }),
    ))
}

/// How an image answer carries each image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ImageFormat {
    /// Our `/v1/files/...` link.
    Url,
    /// The bytes, base64.
    B64Json,
}

/// `POST /v1/images/generations`.
pub fn images(call: &Call) -> Handled {
    let body = call.request.json_body()?;
    let format = match optional_str(&body, "response_format")? {
        None | Some("url") => ImageFormat::Url,
        Some("b64_json") => ImageFormat::B64Json,
        Some(_) => return Err(invalid("response_format", "must be url or b64_json")),
    };
    let request = decode_image(call, &body)?;
    let (job, quota) = match run(call, request)? {
        Ok(done) => done,
        Err(answer) => return Ok(answer),
    };
    let mut data = Vec::new();
    for (index, output) in job.outputs.iter().enumerate() {
        data.push(match format {
            ImageFormat::Url => json!({ "url": output.url }),
            ImageFormat::B64Json => json!({
                "b64_json": base64::engine::general_purpose::STANDARD
                    .encode(output_bytes(call, &job, index)?)
            }),
        });
    }
    let answer = json!({ "created": job.created_at / 1000, "data": data });
    Ok(Response::json(200, &answer).with_quota(quota.as_ref()))
}

/// The typed request of an images body. `n` is `units.count` when the
/// model has a count option, left out when it is the model's default (so
/// the request is the one another dialect would send), and must be 1 for a
/// model without one; `size` is `units.resolution` only when the model
/// offers that resolution (else the model's default). A model of another
/// product, or one that needs input images, is refused here: this route
/// carries neither.
fn decode_image(call: &Call, body: &Value) -> Result<GenerateRequest, Error> {
    let model = required_str(body, "model")?;
    let prompt = required_str(body, "prompt")?;
    let n = match &body["n"] {
        Value::Null => None,
        n => Some(
            whole_number(n)
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| invalid("n", "must be a positive integer"))?,
        ),
    };
    let size = optional_str(body, "size")?;
    let catalog = call.gate().catalog(None)?;
    let (count, resolution) = match catalog.models.iter().find(|spec| spec.model == model) {
        // The core refuses an unknown model, with the closest names.
        None => (n, None),
        Some(spec) => {
            if spec.product != "image" {
                return Err(invalid(
                    "model",
                    &format!("{model} is a {} model, not an image model", spec.product),
                ));
            }
            if spec.input_images.min > 0 {
                return Err(invalid(
                    "model",
                    &format!("{model} needs input images, which this route does not carry"),
                ));
            }
            let count = match (spec.options.get(&OptionName::Count), n) {
                (_, None) => None,
                (Some(option), Some(n)) if option.default == OptionValue::Int(n) => None,
                (Some(_), Some(n)) => Some(n),
                (None, Some(1)) => None,
                (None, Some(_)) => return Err(invalid("n", &format!("{model} makes 1 image"))),
            };
            let resolution = size.filter(|size| {
                spec.options
                    .get(&OptionName::Resolution)
                    .is_some_and(|option| {
                        option.allowed.contains(&OptionValue::Text((*size).into()))
                    })
            });
            (count, resolution.map(str::to_owned))
        }
    };
    Ok(GenerateRequest {
        request_id: Some(request_id(call, MINTED_REQUEST_ID_PREFIX)?),
        model: model.to_owned(),
        product: Some("image".into()),
        prompt: Some(prompt.to_owned()),
        units: RequestedUnits {
            count,
            resolution,
            ..RequestedUnits::default()
        },
        input_image_urls: Vec::new(),
        price_version: None,
    })
}

/// `POST /v1/chat/completions`, answered whole or as server-sent events.
pub fn chat(call: &Call) -> Handled {
    let body = call.request.json_body()?;
    let stream = optional_bool(&body, "stream")?;
    let include_usage = match &body["stream_options"] {
        Value::Null => false,
        options @ Value::Object(_) => optional_bool(options, "include_usage")?,
        _ => return Err(invalid("stream_options", "must be an object")),
    };
    let max_tokens = &body["max_tokens"];
    if !max_tokens.is_null()
        && whole_number(max_tokens)
            .and_then(|n| u32::try_from(n).ok())
            .is_none()
    {
        return Err(invalid(
            "max_tokens",
            "must be an integer from 0 to 4294967295",
        ));
    }
    let model = required_str(&body, "model")?;
    let request = GenerateRequest {
        request_id: Some(request_id(call, MINTED_REQUEST_ID_PREFIX)?),
        model: model.to_owned(),
        product: Some("chat".into()),
        prompt: Some(messages_prompt(&body["messages"], Parts::Allowed)?),
        units: RequestedUnits::default(),
        input_image_urls: Vec::new(),
        price_version: None,
    };
    let (job, quota) = match run(call, request)? {
        Ok(done) => done,
        Err(answer) => return Ok(answer),
    };
    let reply = String::from_utf8_lossy(&output_bytes(call, &job, 0)?).into_owned();
    let usage = chat_usage(&job);
    let id = format!("chatcmpl-{}", job.id);
    let created = job.created_at / 1000;
    let response = if stream {
        let chunk = |choices: Value, usage: Option<&Value>| {
            let mut chunk = json!({
                "id": id, "object": "chat.completion.chunk", "created": created,
                "model": job.model, "choices": choices,
            });
            if let Some(usage) = usage {
                chunk["usage"] = usage.clone();
            }
            format!("data: {chunk}\n\n")
        };
        let mut text = chunk(
            json!([{ "index": 0, "delta": { "role": "assistant", "content": reply },
                     "finish_reason": null }]),
            None,
        );
        text.push_str(&chunk(
            json!([{ "index": 0, "delta": {}, "finish_reason": "stop" }]),
            None,
        ));
        if include_usage {
            text.push_str(&chunk(json!([]), Some(&usage)));
        }
        text.push_str("data: [DONE]\n\n");
        let mut response = Response::bytes(200, "text/event-stream", text.into_bytes());
        response.headers.push(("Cache-Control", "no-cache".into()));
        response
    } else {
        Response::json(
            200,
            &json!({
                "id": id, "object": "chat.completion", "created": created, "model": job.model,
                "choices": [{ "index": 0,
                              "message": { "role": "assistant", "content": reply },
                              "finish_reason": "stop" }],
                "usage": usage,
            }),
        )
    };
    Ok(response.with_quota(quota.as_ref()))
}

/// A chat's `usage`: the job's, when the upstream said what it used, else
/// zeros.
fn chat_usage(job: &Job) -> Value {
    let used: Value = job
        .usage
        .as_deref()
        .and_then(|usage| serde_json::from_str(usage).ok())
        .unwrap_or(Value::Null);
    let prompt = used["input_tokens"].as_u64().unwrap_or(0);
    let completion = used["output_tokens"].as_u64().unwrap_or(0);
    json!({ "prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion })
}

/// Submits `request` for the caller and waits for its job: the succeeded
/// job with the plan quota it counted against, or the answer to give
/// instead (the job failed, was canceled or expired, or is still running).
fn run(
    call: &Call,
    request: GenerateRequest,
) -> Result<Result<(Job, Option<Quota>), Response>, Error> {
    let (ended, quota) = submit_and_wait(
        call,
        request,
        std::time::Duration::from_secs(JOB_WAIT_SECS_MAX),
    )?;
    let refused = match ended {
        Ended::Succeeded(job) => return Ok(Ok((job, quota))),
        Ended::Canceled(job) => envelope(
            409,
            &format!("job {} was canceled", job.id),
            None,
            "job_canceled",
        ),
        Ended::Failed(job) => envelope(
            502,
            &format!(
                "job {} {}: {}",
                job.id,
                job.status.as_str(),
                job.error_message.as_deref().unwrap_or("no reason given")
            ),
            None,
            job.error_code.as_deref().unwrap_or("job_failed"),
        ),
        Ended::StillRunning(job) => envelope(
            504,
            &format!(
                "job {id} (request id {rid}) is still running after {JOB_WAIT_SECS_MAX} s and goes \
                 on: fetch it with GET /v1/generate/{id}, or repeat this call with the same \
                 Idempotency-Key to wait again",
                id = job.id,
                rid = job.request_id
            ),
            None,
            STILL_RUNNING_CODE,
        ),
    };
    Ok(Err(refused.with_quota(quota.as_ref())))
}

/// `invalid_request` naming `field`.
fn invalid(field: &str, message: &str) -> Error {
    Error::InvalidRequest {
        field: field.to_owned(),
        message: message.to_owned(),
    }
}

/// The string member `field`, if present.
fn optional_str<'a>(body: &'a Value, field: &str) -> Result<Option<&'a str>, Error> {
    match &body[field] {
        Value::Null => Ok(None),
        Value::String(text) => Ok(Some(text)),
        _ => Err(invalid(field, "must be a string")),
    }
}

/// The boolean member `field` (absent: false).
fn optional_bool(body: &Value, field: &str) -> Result<bool, Error> {
    match &body[field] {
        Value::Null => Ok(false),
        Value::Bool(flag) => Ok(*flag),
        _ => Err(invalid(field, "must be a boolean")),
    }
}

/// `GET /openai/openapi.json`: this dialect's OpenAPI document.
pub fn openapi(call: &Call) -> Handled {
    Ok(Response::json(
        200,
        &docs::openai_openapi(
            &call.state.public_base_url,
            call.gate().catalog(None).ok().as_deref(),
        ),
    ))
}
