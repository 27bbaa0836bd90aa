//! The AgentName dialect (reference 002), under `/api`: `POST
//! /api/generate` (`type` `image` or `video`, with `aspect_ratio` and
//! `duration`) answering `{"jobId", "status"}`, `GET /api/status/{jobId}`
//! in the reference's vocabulary, `POST /api/chat {"message"}` answering
//! `{"reply", "timestamp"}` synchronously, and its OpenAPI document at
//! `GET /agentname/openapi.json`. Bearer keys, like every dialect.
//!
//! Its requests name no model: each product runs on the operator's default
//! model for it (`serve --default-model image=MODEL`, else the active
//! catalog's first model of the product; `Gate::default_model`), priced by
//! the catalog like any job, chat per message. Errors are `{"error":
//! message, "code": status}` with the reference's five statuses (400, 401,
//! 429, 500, 502): every other status of the one table folds into the
//! nearest of them (402 → 400; 403 → 401; 503, 504 → 502; 507 → 500),
//! except HTTP's own 404, 405, 408, 409, 413, 414, 417 and 431, and
//! `reason` keeps our machine code, so an agent can still
//! tell an empty wallet from a bad field. A request id comes from
//! `Idempotency-Key` (without one, each call is a new job).

use std::time::Duration;

use creditgate::clock::format_rfc3339;
use creditgate::error::ErrorCode;
use creditgate::pricing::RequestedUnits;
use creditgate::request::GenerateRequest;
use creditgate::{Error, Job, JobStatus};
use serde_json::{json, Map, Value};

use super::shared::{output_bytes, request_id, submit_and_wait, Ended};
use crate::http::docs;
use crate::http::request::{object_with_members, Call};
use crate::http::response::Response;
use crate::http::status::{public_message, status_for};

/// The prefix of a request id minted for a call without `Idempotency-Key`.
pub const MINTED_REQUEST_ID_PREFIX: &str = "an_";
/// The longest `POST /api/chat` waits for its reply, in seconds; past it
/// the answer is a 502 naming the job, which goes on.
pub const CHAT_WAIT_SECS_MAX: u64 = 120;
/// The members `POST /api/generate` takes.
const GENERATE_MEMBERS: &[&str] = &["prompt", "type", "aspect_ratio", "duration"];

type Handled = Result<Response, Error>;

/// The reference's status for a status of the one table. The protocol's
/// own refusals (405 with `Allow`, 408, 413, 414, 417, 431) keep theirs:
/// they are about HTTP, not this API, and clients handle them as such.
fn reference_status(code: ErrorCode) -> u16 {
    let status = status_for(code);
    match status {
        // An operator's missing default model: the backend cannot serve it.
        _ if code == ErrorCode::NotConfigured => 502,
        405 | 408 | 413 | 414 | 417 | 431 => status,
        401 | 403 => 401,
        // Kept: every HTTP client knows them, and a schema-valid request
        // for a job that is not there is not a malformed one.
        404 | 409 | 429 => status,
        400..=499 => 400,
        502..=504 => 502,
        _ => 500,
    }
}

/// An error answer in AgentName's shape; `job` names the job a
/// synchronous call's refusal is about.
fn envelope(status: u16, message: &str, reason: &str, job: Option<&Job>) -> Response {
    let mut body = json!({ "error": message, "code": status, "reason": reason });
    if let Some(job) = job {
        body["jobId"] = json!(job.id);
    }
    Response::json(status, &body)
}

/// The error answer of a core error.
pub fn error(err: &Error) -> Response {
    let status = reference_status(err.error_code());
    let mut response = envelope(status, &public_message(err), err.code(), None);
    if let Error::RateLimited { retry_after_ms } = err {
        response
            .headers
            .push(("Retry-After", retry_after_ms.div_ceil(1000).to_string()));
    }
    response
}

/// `POST /api/generate`.
pub fn generate(call: &Call) -> Handled {
    let body = call.request.json_body()?;
    let object = object_with_members(&body, GENERATE_MEMBERS)?;
    let prompt = text(object, "prompt")?.ok_or_else(|| invalid("prompt", "is required"))?;
    let product = match text(object, "type")? {
        Some(kind @ ("image" | "video")) => kind,
        Some(_) => return Err(invalid("type", "must be \"image\" or \"video\"")),
        None => return Err(invalid("type", "is required (\"image\" or \"video\")")),
    };
    let duration = match object.get("duration") {
        None | Some(Value::Null) => None,
        Some(seconds) => Some(
            seconds
                .as_u64()
                .and_then(|s| u32::try_from(s).ok())
                .filter(|s| *s > 0)
                .ok_or_else(|| invalid("duration", "must be a positive whole number of seconds"))?,
        ),
    };
    if product == "image" && duration.is_some() {
        return Err(invalid("duration", "applies to videos only"));
    }
    let request = GenerateRequest {
        request_id: Some(request_id(call, MINTED_REQUEST_ID_PREFIX)?),
        model: call.gate().default_model(product)?,
        product: Some(product.to_owned()),
        prompt: Some(prompt.to_owned()),
        units: RequestedUnits {
            aspect_ratio: text(object, "aspect_ratio")?.map(str::to_owned),
            duration,
            ..RequestedUnits::default()
        },
        input_image_urls: Vec::new(),
        price_version: None,
    };
    let submitted = call.gate().submit_request_for(call.caller()?, request)?;
    let answer = json!({ "jobId": submitted.job.id, "status": vocabulary(submitted.job.status) });
    Ok(Response::json(200, &answer).with_quota(submitted.quota.as_ref()))
}

/// `GET /api/status/{jobId}` (a job id, or the request id it was sent
/// with).
pub fn status(call: &Call) -> Handled {
    let account = &call.caller()?.account_id;
    let job = call.gate().job_for(account, call.param("jobId"))?;
    Ok(Response::json(200, &job_view(&job)))
}

/// `POST /api/chat`: the reply, once the job has it.
pub fn chat(call: &Call) -> Handled {
    let body = call.request.json_body()?;
    let object = object_with_members(&body, &["message"])?;
    let message = text(object, "message")?.ok_or_else(|| invalid("message", "is required"))?;
    let request = GenerateRequest {
        request_id: Some(request_id(call, MINTED_REQUEST_ID_PREFIX)?),
        model: call.gate().default_model("chat")?,
        product: Some("chat".into()),
        prompt: Some(message.to_owned()),
        units: RequestedUnits::default(),
        input_image_urls: Vec::new(),
        price_version: None,
    };
    let (ended, quota) = submit_and_wait(call, request, Duration::from_secs(CHAT_WAIT_SECS_MAX))?;
    let response = match ended {
        Ended::Succeeded(job) => {
            let reply = String::from_utf8_lossy(&output_bytes(call, &job, 0)?).into_owned();
            let at = job.finished_at.unwrap_or(job.updated_at);
            Response::json(
                200,
                &json!({ "reply": reply, "timestamp": format_rfc3339(at) }),
            )
        }
        Ended::Canceled(job) | Ended::Failed(job) => {
            let message = format!(
                "job {} {}: {}",
                job.id,
                vocabulary(job.status),
                job.error_message.as_deref().unwrap_or("no reason given")
            );
            let reason = job.error_code.as_deref().unwrap_or("job_failed");
            envelope(502, &message, reason, Some(&job))
        }
        Ended::StillRunning(job) => {
            let message = format!(
                "the reply is not ready after {CHAT_WAIT_SECS_MAX} s; job {id} goes on: \
                 GET /api/status/{id}",
                id = job.id
            );
            envelope(502, &message, "job_still_running", Some(&job))
        }
    };
    Ok(response.with_quota(quota.as_ref()))
}

/// A job as `GET /api/status` shows it: `status` in the reference's
/// vocabulary (`queued`, `processing`, `completed`, `failed`), `url` the
/// first output of a completed job and `outputs` all of them, `error` why
/// a failed one failed.
fn job_view(job: &Job) -> Value {
    let mut view = json!({
        "jobId": job.id,
        "status": vocabulary(job.status),
        "type": job.product,
        "createdAt": format_rfc3339(job.created_at),
    });
    if job.status == JobStatus::Succeeded {
        let urls: Vec<&str> = job.outputs.iter().map(|o| o.url.as_str()).collect();
        view["url"] = json!(urls.first());
        view["outputs"] = json!(urls);
        view["completedAt"] = json!(job.finished_at.map(format_rfc3339));
    }
    if job.status.is_terminal() && job.status != JobStatus::Succeeded {
        view["error"] = json!(job.error_message.as_deref().unwrap_or(job.status.as_str()));
        view["reason"] = json!(job.error_code.as_deref().unwrap_or(job.status.as_str()));
    }
    view
}

/// The reference's word for a job status: `queued` until a provider has
/// it, `processing` while it runs, `completed`, or `failed` (which
/// includes canceled and expired; `reason` tells them apart).
fn vocabulary(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Pending => "queued",
        JobStatus::Running => "processing",
        JobStatus::Succeeded => "completed",
        JobStatus::Failed | JobStatus::Canceled | JobStatus::Expired => "failed",
    }
}

/// `invalid_request` naming `field`.
fn invalid(field: &str, message: &str) -> Error {
    Error::InvalidRequest {
        field: field.to_owned(),
        message: message.to_owned(),
    }
}

/// The string member `field`, if present.
fn text<'a>(object: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, Error> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(invalid(field, "must be a string")),
    }
}

/// `GET /agentname/openapi.json`: this dialect's OpenAPI document.
pub fn openapi(call: &Call) -> Handled {
    let gate = call.gate();
    let mut defaults = Vec::new();
    if let Ok(catalog) = gate.catalog(None) {
        for product in ["image", "video"] {
            let Ok(model) = gate.default_model(product) else {
                continue;
            };
            if let Some(spec) = catalog.models.iter().find(|spec| spec.model == model) {
                defaults.push((product, spec.clone()));
            }
        }
    }
    Ok(Response::json(
        200,
        &docs::agentname_openapi(&call.state.public_base_url, &defaults),
    ))
}
