//! The fal.ai adapter: fal's queue API (submit, status, result, cancel)
//! over the shared HTTP client, `Authorization: Key <FAL_KEY>`, and the pure
//! functions that verify and read fal's signed webhooks (the appliance's
//! webhook route calls them). Owns no table.
//!
//! The flow: `POST {base}/{owner}/{app}[/{path}]` with the model input (and
//! `?fal_webhook=<url>` when webhooks are on) answers `request_id`,
//! `status_url`, `response_url` and `cancel_url`. Those URLs drop the
//! sub-path of the model id, so they are kept in the job's provider state
//! and used as given, never rebuilt. A poll reads `status_url`
//! (`IN_QUEUE`, `IN_PROGRESS`, `COMPLETED`: only these three exist; the
//! official clients reject any other, and so do we), then `response_url`
//! once completed: the model's JSON (`images[].url`, `image.url`,
//! `video.url`, `audio_file.url`, `audio.url`), or the model's error status
//! and body when it failed. Cancel is `PUT cancel_url`.
//!
//! Error mapping (fal's answer → ours):
//!
//! | fal | ours |
//! | --- | --- |
//! | 401, 403 | `provider_auth_failed` (permanent) |
//! | `X-Fal-Retryable: true` | not sent (retried) |
//! | `X-Fal-Retryable: false` | `upstream_rejected` (permanent) |
//! | 408, 409, 429, 5xx before acceptance (`request_timeout`, `startup_timeout` 504, `runner_scheduling_failure` 503, ...) | not sent, honouring `Retry-After` |
//! | other 4xx on submit (`{"detail": [{loc, msg, type}]}` validation) | `upstream_rejected`, its `msg`s summarised |
//! | a 2xx submit answer that does not parse | outcome unknown |
//! | a status other than the three | `invalid_provider_answer` (permanent) |
//! | status or result 404 | `upstream_lost` (the request is gone or expired) |
//! | a completed request whose result is a 4xx validation error | failed `upstream_rejected` |
//! | a completed request canceled before its end (`error_type: client_cancelled`) | failed `canceled_upstream` |
//! | a completed request whose result is another error | failed `generation_failed` |
//!
//! A 500 on submit is read as "not sent" like every 5xx before acceptance
//! (fal's queue answered no request id, so no task exists; fal does not
//! bill server errors). Not idempotent: fal takes no idempotency key and
//! cannot be asked by our id, so an uncertain submission is never
//! resubmitted and [`Provider::reconcile`] stays unsupported.
//!
//! Webhooks: fal signs `request_id + "\n" + user_id + "\n" + timestamp +
//! "\n" + hex(sha256(body))` with Ed25519; the keys are published as a JWKS
//! of `OKP`/`Ed25519` keys with a base64url `x` (at
//! `https://rest.alpha.fal.ai/.well-known/jwks.json` as fal's examples
//! fetch it). [`verify_webhook`], [`webhook_message`], [`parse_jwks`] and
//! [`parse_webhook`] are pure: fetching and caching the JWKS is the
//! caller's.
//!
//! Not confirmed from fal's public docs (marked where used): the shape of
//! `ALREADY_COMPLETED`/`NOT_FOUND` cancel answers (read by status code and
//! body alike), and a documented cheap authenticated read for `check()`
//! (none found: see [`FalProvider::check`]).

use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::config::{required_credential, Credential, ProviderConfig};
use super::http::{summary, Answer, Auth, HttpClient, Method};
use super::{
    check_task_id, Artifact, CheckReport, Completion, PollStatus, Provider, ProviderError,
    ProviderJob, Submission,
};
use crate::error::Result;

/// The longest upstream model id (`owner/app[/path]`), in characters.
pub const MODEL_ID_CHARS_MAX: usize = 256;
/// Segments of a model id, at most (`owner`, `app` and a path of up to
/// six segments).
pub const MODEL_ID_SEGMENTS_MAX: usize = 8;
/// Validation messages read from one error answer, at most.
pub const DETAIL_ITEMS_MAX: usize = 8;
/// Keys read from one JWKS, at most.
pub const JWKS_KEYS_MAX: usize = 32;
/// The largest JWKS document read, in bytes.
pub const JWKS_BYTES_MAX: usize = 64 * 1024;
/// The largest webhook body read, in bytes.
pub const WEBHOOK_BODY_BYTES_MAX: usize = 32 * 1024 * 1024;
/// fal's documented clock skew for webhook timestamps, in seconds.
pub const WEBHOOK_TOLERANCE_SECS_DEFAULT: i64 = 300;

/// The request id `check()` asks about: one that never exists (see
/// [`FalProvider::check`]).
const CHECK_REQUEST_ID: &str = "00000000-0000-0000-0000-000000000000";
/// The app `check()` asks under (any public app: the request is unknown).
const CHECK_APP: &str = "fal-ai/flux";

/// The fal.ai queue adapter.
#[derive(Debug)]
pub struct FalProvider {
    client: HttpClient,
    timeout_ms: i64,
    concurrency: usize,
}

impl FalProvider {
    /// An adapter for `config`'s fal instance. The credential (`FAL_KEY`)
    /// is required.
    pub fn new(config: &ProviderConfig, credential: Option<Credential>) -> Result<Self> {
        let credential = required_credential(config, credential, "its key (FAL_KEY)")?;
        Ok(FalProvider {
            client: HttpClient::new(config, Auth::Key(credential))?,
            timeout_ms: config.timeout_ms,
            concurrency: config.concurrency,
        })
    }
}

/// The URLs a submission answered, kept as the job's provider state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueUrls {
    /// fal's request id.
    pub request_id: String,
    /// Where the request's status is read.
    pub status_url: String,
    /// Where its result is read.
    pub response_url: String,
    /// Where it is canceled.
    pub cancel_url: String,
}

impl QueueUrls {
    /// As provider state.
    pub fn to_state(&self) -> Value {
        json!({
            "request_id": self.request_id,
            "status_url": self.status_url,
            "response_url": self.response_url,
            "cancel_url": self.cancel_url,
        })
    }

    /// From provider state, or why not.
    pub fn from_state(state: Option<&Value>) -> std::result::Result<QueueUrls, String> {
        let state = state.ok_or("the job keeps no fal queue URLs")?;
        let field = |name: &str| {
            state
                .get(name)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| format!("the job's fal state has no {name}"))
        };
        Ok(QueueUrls {
            request_id: field("request_id")?,
            status_url: field("status_url")?,
            response_url: field("response_url")?,
            cancel_url: field("cancel_url")?,
        })
    }
}

/// Checks an upstream model id (`owner/app[/path]`): two to
/// [`MODEL_ID_SEGMENTS_MAX`] non-empty segments of letters, digits, `-`,
/// `_` and `.` (no `..`), within [`MODEL_ID_CHARS_MAX`].
pub fn check_model_id(model: &str) -> std::result::Result<(), String> {
    let segments: Vec<&str> = model.split('/').collect();
    let ok_segment = |s: &&str| {
        !s.is_empty()
            && *s != "."
            && *s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    if model.chars().count() > MODEL_ID_CHARS_MAX
        || !(2..=MODEL_ID_SEGMENTS_MAX).contains(&segments.len())
        || !segments.iter().all(ok_segment)
    {
        return Err(format!(
            "the fal model id must be owner/app[/path] (letters, digits, '-', '_', '.'; \
             at most {MODEL_ID_SEGMENTS_MAX} segments and {MODEL_ID_CHARS_MAX} characters)"
        ));
    }
    Ok(())
}

/// The model input fal is sent for `job`: `prompt`, `num_images` (from the
/// priced count), `image_size` (a `WxH` resolution as `{width, height}`) or
/// else `resolution`, `aspect_ratio`, `duration` (in seconds, as a string), `image_url` and
/// `image_urls` (input images), and `seed`. fal's models differ in which
/// they take; they ignore fields they do not know.
pub fn model_input(job: &ProviderJob<'_>) -> Value {
    let mut input = Map::new();
    if let Some(prompt) = job.prompt {
        input.insert("prompt".into(), json!(prompt));
    }
    let units = job.units;
    if let Some(count) = units.count {
        input.insert("num_images".into(), json!(count));
    }
    if let Some(resolution) = &units.resolution {
        match parse_dimensions(resolution) {
            Some((width, height)) => {
                input.insert(
                    "image_size".into(),
                    json!({"width": width, "height": height}),
                );
            }
            None => {
                input.insert("resolution".into(), json!(resolution));
            }
        }
    }
    if let Some(aspect_ratio) = &units.aspect_ratio {
        input.insert("aspect_ratio".into(), json!(aspect_ratio));
    }
    if let Some(duration) = units.duration {
        // fal's video models declare `duration` as a string enum ("5",
        // "10"); a number would fail their validation.
        input.insert("duration".into(), json!(duration.to_string()));
    }
    if let Some(first) = job.input_image_urls.first() {
        input.insert("image_url".into(), json!(first));
        input.insert("image_urls".into(), json!(job.input_image_urls));
    }
    input.insert("seed".into(), json!(job.seed));
    Value::Object(input)
}

/// `1024x768` → `(1024, 768)`.
fn parse_dimensions(text: &str) -> Option<(u32, u32)> {
    let (w, h) = text.split_once(['x', 'X', '*'])?;
    let w: u32 = w.trim().parse().ok()?;
    let h: u32 = h.trim().parse().ok()?;
    (w > 0 && h > 0).then_some((w, h))
}

/// Percent-encodes `text` for a query value (everything but RFC 3986's
/// unreserved characters).
pub fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The human part of a fal error body: the `msg`s of a validation
/// `detail` list (with the last `loc` element), or a flat `detail` string
/// with its `error_type`; summarised.
pub fn error_message(body: &Value) -> String {
    let detail = body.get("detail");
    let text = match detail {
        Some(Value::Array(items)) => items
            .iter()
            .take(DETAIL_ITEMS_MAX)
            .map(|item| {
                let msg = item.get("msg").and_then(Value::as_str).unwrap_or("invalid");
                let field = item
                    .get("loc")
                    .and_then(Value::as_array)
                    .and_then(|loc| loc.last())
                    .map(|last| match last {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    });
                match field {
                    Some(field) => format!("{field}: {msg}"),
                    None => msg.to_owned(),
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
        Some(Value::String(text)) => match body.get("error_type").and_then(Value::as_str) {
            Some(kind) => format!("{text} ({kind})"),
            None => text.clone(),
        },
        _ => body
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
    };
    summary(&text)
}

/// Reads a refusal of a call that was not accepted (submit, status,
/// cancel): see the module's table. `X-Fal-Retryable` decides first,
/// credentials excepted.
pub fn refusal(answer: &Answer) -> ProviderError {
    let message = answer
        .json()
        .map(|body| error_message(&body))
        .unwrap_or_else(|_| "no readable reason".to_owned());
    if matches!(answer.status, 401 | 403) {
        return answer.refusal(&message);
    }
    match answer
        .header("x-fal-retryable")
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        Some("true") => ProviderError::NotSent {
            message: format!("fal answered HTTP {} (retryable): {message}", answer.status),
            retry_after_ms: answer.retry_after_ms,
        },
        Some("false") => ProviderError::permanent(
            "upstream_rejected",
            format!(
                "fal refused the request (HTTP {}, not retryable): {message}",
                answer.status
            ),
        ),
        _ => answer.refusal(&message),
    }
}

/// Reads a submit answer: the queue URLs, or why not.
pub fn parse_submit(body: &Value) -> std::result::Result<QueueUrls, String> {
    let field = |name: &str| {
        body.get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty() && v.chars().count() <= super::OUTPUT_URL_CHARS_MAX)
            .map(str::to_owned)
            .ok_or_else(|| format!("fal's submit answer has no usable {name}"))
    };
    let urls = QueueUrls {
        request_id: field("request_id")?,
        status_url: field("status_url")?,
        response_url: field("response_url")?,
        cancel_url: field("cancel_url")?,
    };
    check_task_id(&urls.request_id)?;
    Ok(urls)
}

/// What a status answer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueStatus {
    /// Waiting for a runner.
    InQueue,
    /// Running.
    InProgress,
    /// Done (succeeded or failed: the result tells).
    Completed,
}

/// Reads a status answer's `status`: only fal's three values.
pub fn parse_status(body: &Value) -> std::result::Result<QueueStatus, String> {
    match body.get("status").and_then(Value::as_str) {
        Some("IN_QUEUE") => Ok(QueueStatus::InQueue),
        Some("IN_PROGRESS") => Ok(QueueStatus::InProgress),
        Some("COMPLETED") => Ok(QueueStatus::Completed),
        Some(other) => Err(format!(
            "fal answered an unknown queue status {:?}",
            summary(other)
        )),
        None => Err("fal's status answer has no status".to_owned()),
    }
}

/// Reads a model's result JSON into a completion: every `images[]`, and
/// `image`, `video`, `audio_file`, `audio` objects with a `url` (and
/// `content_type` where given); `seed` where it fits.
pub fn parse_result(body: &Value) -> std::result::Result<Completion, String> {
    let mut artifacts = Vec::new();
    let file = |value: &Value| -> Option<Artifact> {
        let url = value.get("url")?.as_str()?.to_owned();
        let mime = value
            .get("content_type")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .map(str::to_owned);
        Some(Artifact::Remote { url, mime })
    };
    if let Some(images) = body.get("images").and_then(Value::as_array) {
        for image in images.iter().take(super::PROVIDER_OUTPUTS_MAX + 1) {
            artifacts.push(file(image).ok_or("an image in fal's result has no url")?);
        }
    }
    for key in ["image", "video", "audio_file", "audio"] {
        if let Some(value) = body.get(key).filter(|v| v.is_object()) {
            artifacts.push(file(value).ok_or_else(|| format!("fal's {key} has no url"))?);
        }
    }
    if artifacts.is_empty() {
        return Err("fal's result names no image, video or audio file".to_owned());
    }
    let completion = Completion {
        artifacts,
        seed: body.get("seed").and_then(Value::as_i64),
        usage: None,
    };
    completion.check()?;
    Ok(completion)
}

/// Reads the answer of a completed request's `response_url`: the result,
/// or the model's failure. 429 and a 5xx without fal's error body are a
/// passing fault of the gateway (retried as a poll error).
pub fn read_result(answer: &Answer) -> std::result::Result<PollStatus, ProviderError> {
    if answer.is_success() {
        let body = answer
            .json()
            .map_err(|reason| ProviderError::permanent("invalid_provider_answer", reason))?;
        return parse_result(&body)
            .map(PollStatus::Succeeded)
            .map_err(|reason| ProviderError::permanent("invalid_provider_answer", reason));
    }
    let body = answer.json().ok();
    let is_fal_error = body.as_ref().is_some_and(|b| b.get("detail").is_some());
    match answer.status {
        401 | 403 => Err(answer.refusal("")),
        404 => Err(ProviderError::permanent(
            "upstream_lost",
            "fal no longer has this request's result (results are kept for a limited time)",
        )),
        408 | 429 => Err(answer.refusal("the result could not be read now")),
        500..=599 if !is_fal_error => Err(answer.refusal("the result could not be read now")),
        status => {
            let message = body.as_ref().map(error_message).unwrap_or_default();
            let validation = body
                .as_ref()
                .and_then(|b| b.get("detail"))
                .is_some_and(Value::is_array);
            let canceled = body
                .as_ref()
                .and_then(|b| b.get("error_type"))
                .and_then(Value::as_str)
                == Some("client_cancelled");
            Ok(PollStatus::Failed {
                code: if canceled {
                    "canceled_upstream".to_owned()
                } else if validation && (400..500).contains(&status) {
                    "upstream_rejected".to_owned()
                } else {
                    "generation_failed".to_owned()
                },
                message: format!("the fal model failed (HTTP {status}): {message}"),
            })
        }
    }
}

impl Provider for FalProvider {
    fn submit(&self, job: &ProviderJob<'_>) -> std::result::Result<Submission, ProviderError> {
        check_model_id(job.upstream_model)
            .map_err(|reason| ProviderError::permanent("provider_misconfigured", reason))?;
        let mut path = format!("/{}", job.upstream_model);
        if let Some(webhook) = job.webhook_url.as_deref() {
            path.push_str("?fal_webhook=");
            path.push_str(&query_escape(webhook));
        }
        let answer = self.client.post_json(&path, &model_input(job), &[])?;
        if !answer.is_success() {
            return Err(refusal(&answer));
        }
        // Accepted from here on: a body we cannot read may still be a
        // queued request.
        let body = answer
            .json()
            .map_err(|message| ProviderError::OutcomeUnknown { message })?;
        let urls =
            parse_submit(&body).map_err(|message| ProviderError::OutcomeUnknown { message })?;
        // Our key goes only to the instance's own host: a queue URL
        // elsewhere could never be followed.
        if [&urls.status_url, &urls.response_url, &urls.cancel_url]
            .iter()
            .any(|url| !self.client.same_origin(url))
        {
            return Err(ProviderError::permanent(
                "invalid_provider_answer",
                format!(
                    "fal accepted request {} but answered a queue URL on another host",
                    urls.request_id
                ),
            ));
        }
        Ok(Submission::Accepted {
            task_id: urls.request_id.clone(),
            state: Some(urls.to_state()),
        })
    }

    fn poll(&self, job: &ProviderJob<'_>) -> std::result::Result<PollStatus, ProviderError> {
        let urls = QueueUrls::from_state(job.provider_state)
            .map_err(|reason| ProviderError::permanent("invalid_provider_answer", reason))?;
        let answer = self.client.get(&urls.status_url)?;
        if answer.status == 404 {
            return Err(ProviderError::permanent(
                "upstream_lost",
                "fal does not know this request any more",
            ));
        }
        if !answer.is_success() {
            return Err(refusal(&answer));
        }
        let body = answer.json().map_err(ProviderError::not_sent)?;
        match parse_status(&body)
            .map_err(|reason| ProviderError::permanent("invalid_provider_answer", reason))?
        {
            QueueStatus::InQueue | QueueStatus::InProgress => Ok(PollStatus::Running),
            QueueStatus::Completed => read_result(&self.client.get(&urls.response_url)?),
        }
    }

    fn cancel(&self, job: &ProviderJob<'_>) -> std::result::Result<(), ProviderError> {
        let urls = QueueUrls::from_state(job.provider_state)
            .map_err(|reason| ProviderError::permanent("invalid_provider_answer", reason))?;
        let answer = self.client.call(Method::Put, &urls.cancel_url, None, &[])?;
        // 202 CANCELLATION_REQUESTED; ALREADY_COMPLETED (400) and NOT_FOUND
        // (404) mean there is nothing left to stop. (The statuses of the
        // last two are from fal's clients, not confirmed in its API docs;
        // the body's `status` is read too.)
        let said = answer
            .json()
            .ok()
            .and_then(|b| b.get("status").and_then(Value::as_str).map(str::to_owned));
        if answer.is_success()
            || matches!(answer.status, 400 | 404)
            || matches!(
                said.as_deref(),
                Some("CANCELLATION_REQUESTED" | "ALREADY_COMPLETED" | "NOT_FOUND")
            )
        {
            return Ok(());
        }
        Err(refusal(&answer))
    }

    fn idempotent_submit(&self) -> bool {
        false
    }

    /// fal documents no account or key read on the queue host. The check
    /// asks the status of a request id that never exists: fal answers 401
    /// or 403 when the key is refused, and otherwise (404, or any answer
    /// past authentication) the key was accepted. That the queue checks
    /// the key before looking the request up is what fal's gateway does in
    /// practice, not a documented promise.
    fn check(&self) -> std::result::Result<CheckReport, ProviderError> {
        let path = format!("/{CHECK_APP}/requests/{CHECK_REQUEST_ID}/status");
        let answer = match self.client.get(&path) {
            Ok(answer) => answer,
            Err(err) => {
                return Ok(CheckReport {
                    reachable: false,
                    auth_ok: None,
                    upstream_credits: None,
                    detail: err.to_string(),
                })
            }
        };
        let auth_ok = match answer.status {
            401 | 403 => Some(false),
            200..=299 | 404 => Some(true),
            _ => None,
        };
        Ok(CheckReport {
            reachable: true,
            auth_ok,
            upstream_credits: None,
            detail: format!(
                "GET the status of an unknown request: HTTP {} ({})",
                answer.status,
                match auth_ok {
                    Some(true) => "key accepted",
                    Some(false) => "key refused",
                    None => "undecided",
                }
            ),
        })
    }

    fn call_timeout_ms(&self) -> i64 {
        self.timeout_ms
    }

    fn concurrency(&self) -> usize {
        self.concurrency
    }
}

/// fal's webhook headers, as received.
#[derive(Debug, Clone, Copy)]
pub struct WebhookHeaders<'a> {
    /// `X-Fal-Webhook-Request-Id`.
    pub request_id: &'a str,
    /// `X-Fal-Webhook-User-Id`.
    pub user_id: &'a str,
    /// `X-Fal-Webhook-Timestamp` (Unix seconds).
    pub timestamp: &'a str,
    /// `X-Fal-Webhook-Signature` (hex).
    pub signature: &'a str,
}

/// A verified webhook: which request, and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    /// fal's request id (our job's provider task id).
    pub request_id: String,
    /// What a poll would have found.
    pub status: PollStatus,
}

/// The message fal signs: `request_id + "\n" + user_id + "\n" + timestamp
/// + "\n" + hex(sha256(body))`.
pub fn webhook_message(request_id: &str, user_id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let digest = hex::encode(Sha256::digest(body));
    format!("{request_id}\n{user_id}\n{timestamp}\n{digest}").into_bytes()
}

/// Verifies a fal webhook against `keys` (from [`parse_jwks`]) and reads
/// it: the timestamp within `tolerance_secs` of `now_secs` (fal allows 5
/// minutes, [`WEBHOOK_TOLERANCE_SECS_DEFAULT`]), an Ed25519 signature by
/// one of the keys over [`webhook_message`], and a body whose `request_id`
/// is the header's. The error says what failed, never a key or the body.
pub fn verify_webhook(
    keys: &[VerifyingKey],
    headers: WebhookHeaders<'_>,
    body: &[u8],
    now_secs: i64,
    tolerance_secs: i64,
) -> std::result::Result<WebhookEvent, String> {
    if headers.request_id.is_empty() || headers.user_id.is_empty() {
        return Err("the webhook lacks its request or user id header".to_owned());
    }
    if body.len() > WEBHOOK_BODY_BYTES_MAX {
        return Err(format!(
            "the webhook body is larger than {WEBHOOK_BODY_BYTES_MAX} bytes"
        ));
    }
    let timestamp: i64 = headers
        .timestamp
        .trim()
        .parse()
        .map_err(|_| "the webhook timestamp is not a number of seconds".to_owned())?;
    if (now_secs - timestamp).abs() > tolerance_secs {
        return Err(format!(
            "the webhook timestamp is more than {tolerance_secs} s away from now"
        ));
    }
    let signature = hex::decode(headers.signature.trim())
        .ok()
        .and_then(|bytes| <[u8; 64]>::try_from(bytes.as_slice()).ok())
        .map(|bytes| Signature::from_bytes(&bytes))
        .ok_or("the webhook signature is not 64 hex-encoded bytes")?;
    if keys.is_empty() {
        return Err("no fal signing key is known".to_owned());
    }
    let message = webhook_message(headers.request_id, headers.user_id, headers.timestamp, body);
    if !keys
        .iter()
        .any(|key| key.verify_strict(&message, &signature).is_ok())
    {
        return Err("the webhook signature does not verify with fal's keys".to_owned());
    }
    let event = parse_webhook(body)?;
    if event.request_id != headers.request_id {
        return Err("the webhook body names another request than its header".to_owned());
    }
    Ok(event)
}

/// Reads a fal webhook body `{request_id, status: "OK"|"ERROR", payload,
/// error}`: `OK` with a payload is the result, `ERROR` a failure
/// (`upstream_rejected` for a validation error, else `generation_failed`).
/// An `OK` whose payload fal could not serialise (`payload: null`,
/// `payload_error`) reads as [`PollStatus::Running`]: the result is at
/// `response_url`, and the next poll fetches it.
pub fn parse_webhook(body: &[u8]) -> std::result::Result<WebhookEvent, String> {
    let body: Value =
        serde_json::from_slice(body).map_err(|_| "the webhook body is not JSON".to_owned())?;
    let request_id = body
        .get("request_id")
        .and_then(Value::as_str)
        .ok_or("the webhook body has no request_id")?
        .to_owned();
    check_task_id(&request_id)?;
    let payload = body.get("payload").filter(|p| !p.is_null());
    let status = match body.get("status").and_then(Value::as_str) {
        Some("OK") => match payload {
            Some(payload) => PollStatus::Succeeded(parse_result(payload)?),
            None => PollStatus::Running,
        },
        Some("ERROR") => {
            let error = body.get("error").and_then(Value::as_str).unwrap_or("");
            let detail = payload.map(error_message).unwrap_or_default();
            let validation = payload
                .and_then(|p| p.get("detail"))
                .is_some_and(Value::is_array);
            PollStatus::Failed {
                code: if validation {
                    "upstream_rejected"
                } else {
                    "generation_failed"
                }
                .to_owned(),
                message: summary(&format!("the fal model failed: {error}: {detail}")),
            }
        }
        _ => return Err("the webhook status is neither OK nor ERROR".to_owned()),
    };
    Ok(WebhookEvent { request_id, status })
}

/// Reads fal's JWKS (`{"keys": [{"kty": "OKP", "crv": "Ed25519", "x":
/// <base64url>}, ...]}`) into verifying keys; keys of another type are
/// skipped, and a set without one Ed25519 key is an error.
pub fn parse_jwks(json: &str) -> std::result::Result<Vec<VerifyingKey>, String> {
    use base64::Engine;
    if json.len() > JWKS_BYTES_MAX {
        return Err(format!("the JWKS is larger than {JWKS_BYTES_MAX} bytes"));
    }
    let doc: Value = serde_json::from_str(json).map_err(|_| "the JWKS is not JSON".to_owned())?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("the JWKS has no keys list")?;
    let mut out = Vec::new();
    for key in keys.iter().take(JWKS_KEYS_MAX) {
        let kty = key.get("kty").and_then(Value::as_str);
        let crv = key.get("crv").and_then(Value::as_str);
        if kty != Some("OKP") || crv != Some("Ed25519") {
            continue;
        }
        let x = key
            .get("x")
            .and_then(Value::as_str)
            .ok_or("an Ed25519 key of the JWKS has no x")?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(x.trim_end_matches('='))
            .map_err(|_| "an Ed25519 key's x is not base64url".to_owned())?;
        let bytes = <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| "an Ed25519 key's x is not 32 bytes".to_owned())?;
        out.push(
            VerifyingKey::from_bytes(&bytes)
                .map_err(|_| "an Ed25519 key of the JWKS is not a valid point".to_owned())?,
        );
    }
    if out.is_empty() {
        return Err("the JWKS holds no Ed25519 key".to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str, headers: &[(&str, &str)]) -> Answer {
        Answer {
            status,
            retry_after_ms: None,
            content_type: Some("application/json".into()),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_owned()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn model_ids_are_owner_app_and_an_optional_path() {
        assert!(check_model_id("fal-ai/flux/dev").is_ok());
        assert!(check_model_id("fal-ai/flux-pro/v1.1-ultra").is_ok());
        assert!(check_model_id("flux").is_err());
        assert!(check_model_id("fal-ai//dev").is_err());
        assert!(check_model_id("fal-ai/../admin").is_err());
        assert!(check_model_id("fal-ai/flux?x=1").is_err());
    }

    #[test]
    fn validation_errors_are_summarised_from_their_msgs() {
        let body: Value = serde_json::from_str(
            r#"{"detail":[{"loc":["body","prompt"],"msg":"field required","type":"value_error.missing"},
                          {"loc":["body","num_images"],"msg":"ensure this value is less than 5","type":"x"}]}"#,
        )
        .expect("json");
        assert_eq!(
            error_message(&body),
            "prompt: field required; num_images: ensure this value is less than 5"
        );
        let infra: Value = serde_json::from_str(
            r#"{"detail":"Request timed out","error_type":"request_timeout"}"#,
        )
        .expect("json");
        assert_eq!(error_message(&infra), "Request timed out (request_timeout)");
    }

    #[test]
    fn the_retry_hint_decides_before_the_status() {
        let body = r#"{"detail":[{"loc":["body"],"msg":"busy","type":"x"}]}"#;
        let err = refusal(&answer(422, body, &[("X-Fal-Retryable", "true")]));
        assert!(matches!(err, ProviderError::NotSent { .. }), "{err:?}");
        let err = refusal(&answer(503, body, &[("X-Fal-Retryable", "false")]));
        assert!(
            matches!(&err, ProviderError::Permanent { code, .. } if code == "upstream_rejected"),
            "{err:?}"
        );
        let err = refusal(&answer(422, body, &[]));
        assert!(
            matches!(&err, ProviderError::Permanent { code, .. } if code == "upstream_rejected"),
            "{err:?}"
        );
        let err = refusal(&answer(401, "{}", &[("X-Fal-Retryable", "true")]));
        assert!(
            matches!(&err, ProviderError::Permanent { code, .. } if code == "provider_auth_failed"),
            "{err:?}"
        );
        for status in [408, 409, 429, 502, 503, 504] {
            let err = refusal(&answer(
                status,
                r#"{"detail":"x","error_type":"runner_scheduling_failure"}"#,
                &[],
            ));
            assert!(
                matches!(err, ProviderError::NotSent { .. }),
                "{status}: {err:?}"
            );
        }
    }

    #[test]
    fn only_three_statuses_exist() {
        let read = |s: &str| parse_status(&serde_json::from_str(s).expect("json"));
        assert_eq!(
            read(r#"{"status":"IN_QUEUE","queue_position":3}"#),
            Ok(QueueStatus::InQueue)
        );
        assert_eq!(
            read(r#"{"status":"IN_PROGRESS"}"#),
            Ok(QueueStatus::InProgress)
        );
        assert_eq!(
            read(r#"{"status":"COMPLETED"}"#),
            Ok(QueueStatus::Completed)
        );
        assert!(read(r#"{"status":"FAILED"}"#).is_err());
        assert!(read(r#"{}"#).is_err());
    }

    #[test]
    fn results_name_images_videos_and_audio() {
        let body: Value = serde_json::from_str(
            r#"{"images":[{"url":"https://v3.fal.media/a.png","content_type":"image/png","width":1024},
                          {"url":"https://v3.fal.media/b.jpg"}],"seed":196619188014358660}"#,
        )
        .expect("json");
        let completion = parse_result(&body).expect("parses");
        assert_eq!(completion.artifacts.len(), 2);
        assert_eq!(completion.artifacts[0].mime(), Some("image/png"));
        assert_eq!(completion.seed, Some(196_619_188_014_358_660));
        let video: Value = serde_json::from_str(
            r#"{"video":{"url":"https://v3.fal.media/v.mp4","content_type":"video/mp4"}}"#,
        )
        .expect("json");
        assert_eq!(parse_result(&video).expect("video").artifacts.len(), 1);
        let audio: Value =
            serde_json::from_str(r#"{"audio_file":{"url":"https://v3.fal.media/a.wav"}}"#)
                .expect("json");
        assert_eq!(parse_result(&audio).expect("audio").artifacts.len(), 1);
        assert!(parse_result(&serde_json::json!({"text": "hi"})).is_err());
        assert!(parse_result(&serde_json::json!({"images": [{"file": "x"}]})).is_err());
    }

    #[test]
    fn a_failed_model_answers_at_its_response_url() {
        let failed = read_result(&answer(
            422,
            r#"{"detail":[{"loc":["body","prompt"],"msg":"field required","type":"x"}]}"#,
            &[],
        ))
        .expect("a failure");
        assert!(
            matches!(&failed, PollStatus::Failed { code, message } if code == "upstream_rejected" && message.contains("prompt: field required")),
            "{failed:?}"
        );
        let failed = read_result(&answer(
            500,
            r#"{"detail":"The runner crashed","error_type":"runner_server_error"}"#,
            &[],
        ))
        .expect("a failure");
        assert!(matches!(&failed, PollStatus::Failed { code, .. } if code == "generation_failed"));
        let passing = read_result(&answer(502, "<html>bad gateway</html>", &[]));
        assert!(
            matches!(passing, Err(ProviderError::NotSent { .. })),
            "{passing:?}"
        );
    }

    #[test]
    fn webhook_urls_are_escaped() {
        assert_eq!(
            query_escape("https://gw.example/v1/providers/fal/webhook?a=b&c"),
            "https%3A%2F%2Fgw.example%2Fv1%2Fproviders%2Ffal%2Fwebhook%3Fa%3Db%26c"
        );
    }
}
