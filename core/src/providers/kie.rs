//! The kie.ai adapter (asynchronous: submit, then poll): [`KieProvider`]
//! submits a job to one of kie's three model families, polls it to the
//! end, and reads kie's callbacks ([`parse_callback`],
//! [`verify_callback_signature`]; the webhook route that calls them lives in
//! the appliance). Base URL `https://api.kie.ai` (the kind's default),
//! `Authorization: Bearer <key>`.
//!
//! Families, chosen from the upstream model id and kept in the job's
//! provider state as `{"family": "market"|"veo"|"suno"}` (a job without
//! state falls back to deriving it again):
//!
//! | family | models | submit | poll |
//! | --- | --- | --- | --- |
//! | market | everything else (`nano-banana-pro`, ...) | `POST /api/v1/jobs/createTask` `{model, callBackUrl?, input: {prompt, image_urls?, aspect_ratio?, resolution?, duration?}}` | `GET /api/v1/jobs/recordInfo?taskId=` → `state` `waiting`/`queuing`/`generating`/`success`/`fail`, `resultJson` a JSON *string* `{"resultUrls": [...]}`, `failCode`, `failMsg` |
//! | veo | `veo3`, `veo3_fast` | `POST /api/v1/veo/generate` `{prompt, model, imageUrls?, aspect_ratio?, callBackUrl?}` | `GET /api/v1/veo/record-info?taskId=` → `successFlag` 0 running, 1 success, 2/3 failed; `response.resultUrls` |
//! | suno | `V5`, `V4_5PLUS`, `V4_5ALL`, `V4_5`, `V4`, `V3_5` | `POST /api/v1/generate` `{prompt, model, customMode: false, instrumental: false, callBackUrl?}` | `GET /api/v1/generate/record-info?taskId=` → `status` `PENDING`/`TEXT_SUCCESS`/`FIRST_SUCCESS` (running), `SUCCESS`, `*_FAILED`, `CALLBACK_EXCEPTION`, `SENSITIVE_WORD_ERROR`; `response.sunoData[].audioUrl` |
//!
//! Only what the job priced is sent (no option is invented); a priced
//! `count` above 1 is refused (`unsupported_input`: kie names that field
//! differently per model, and an agent must not pay for outputs it never
//! gets). The market
//! families' input field names differ per model on kie's side, and the
//! adapter sends the common ones above (not confirmed for every model).
//! `callBackUrl` is sent only when webhooks are on (kie's Suno docs mark it
//! required; without it kie may refuse a Suno job, which then fails as
//! `upstream_rejected`: turn webhooks on for Suno models).
//!
//! Every answer is `{"code", "msg", "data"}`, and the HTTP status may be 200
//! while `code` says otherwise: `code` is read first, the HTTP status when
//! the body has none. Mapping:
//!
//! | kie code | ours |
//! | --- | --- |
//! | 200 | ok |
//! | 401, 403 | Permanent `provider_auth_failed` |
//! | 402 (our kie account is out of credits) | Permanent `provider_unavailable`: the agent is not charged, and nothing is recorded against the model |
//! | 400, 404, 422, other 4xx | Permanent `upstream_rejected` |
//! | 429 | NotSent, honouring `Retry-After` |
//! | 455 (maintenance), 500, other 5xx | NotSent (a createTask that answers 500 did not create a task) |
//! | 501 (generation failed) | Permanent `generation_failed` |
//! | 505 (model disabled) | Permanent `model_unavailable` |
//! | a 2xx submit answer without a readable task id | OutcomeUnknown |
//!
//! A task that ends failed polls as [`PollStatus::Failed`] with
//! `generation_failed` (Suno's `SENSITIVE_WORD_ERROR`: `content_rejected`).
//! kie has no cancel endpoint: [`Provider::cancel`] does nothing (a task
//! already created runs, and is billed, to its end). Submission is not
//! idempotent and kie cannot be asked by our id: reconcile is unsupported.
//! [`Provider::check`] reads `GET /api/v1/chat/credit` (`data`: our credits).
//!
//! Callbacks: kie's docs spell the task id `taskId` or `data.task_id`
//! (both read); a signed callback carries `X-Webhook-Signature`, the base64
//! HMAC-SHA256 of `taskId + "." + timestamp` under the instance's webhook
//! secret (where the timestamp travels is the webhook route's business;
//! not confirmed beyond the summary in kie's callback docs).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::config::{required_credential, Credential, ProviderConfig};
use super::http::{summary, Answer, Auth, HttpClient};
use super::{
    check_task_id, Artifact, CheckReport, Completion, PollStatus, Provider, ProviderError,
    ProviderJob, Reconciled, Submission, Usage, PROVIDER_OUTPUTS_MAX,
};
use crate::error::Result;

/// The most bytes a callback body may have to be read.
pub const CALLBACK_BYTES_MAX: usize = 1024 * 1024;
/// The longest `resultJson` string read, in bytes.
pub const RESULT_JSON_BYTES_MAX: usize = 256 * 1024;
/// The longest media a Suno answer may report, in milliseconds (a day:
/// anything longer is not a real duration).
pub const SUNO_MEDIA_MS_MAX: u64 = 24 * 60 * 60 * 1000;

/// A kie model family: which endpoints a job goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// The market API (`jobs/createTask`, `jobs/recordInfo`).
    Market,
    /// Veo 3 (`veo/generate`, `veo/record-info`).
    Veo,
    /// Suno (`generate`, `generate/record-info`).
    Suno,
}

impl Family {
    /// The family that serves `upstream_model`.
    pub fn of_model(upstream_model: &str) -> Family {
        if matches!(upstream_model, "veo3" | "veo3_fast") {
            return Family::Veo;
        }
        // Suno's versions: V3_5, V4, V4_5, V4_5PLUS, V4_5ALL, V5, ...
        let suno = upstream_model.strip_prefix('V').is_some_and(|rest| {
            let rest = rest
                .strip_suffix("PLUS")
                .or_else(|| rest.strip_suffix("ALL"))
                .unwrap_or(rest);
            !rest.is_empty()
                && rest.starts_with(|c: char| c.is_ascii_digit())
                && rest.bytes().all(|b| b.is_ascii_digit() || b == b'_')
        });
        if suno {
            Family::Suno
        } else {
            Family::Market
        }
    }

    /// Its name in provider state.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Market => "market",
            Family::Veo => "veo",
            Family::Suno => "suno",
        }
    }

    /// The family named `name` in provider state.
    pub fn parse(name: &str) -> Option<Family> {
        match name {
            "market" => Some(Family::Market),
            "veo" => Some(Family::Veo),
            "suno" => Some(Family::Suno),
            _ => None,
        }
    }

    fn submit_path(self) -> &'static str {
        match self {
            Family::Market => "/api/v1/jobs/createTask",
            Family::Veo => "/api/v1/veo/generate",
            Family::Suno => "/api/v1/generate",
        }
    }

    fn poll_path(self) -> &'static str {
        match self {
            Family::Market => "/api/v1/jobs/recordInfo",
            Family::Veo => "/api/v1/veo/record-info",
            Family::Suno => "/api/v1/generate/record-info",
        }
    }

    /// The family a job was submitted to: its provider state, else derived
    /// from its upstream model.
    pub fn of_job(job: &ProviderJob<'_>) -> Family {
        job.provider_state
            .and_then(|state| state.get("family"))
            .and_then(Value::as_str)
            .and_then(Family::parse)
            .unwrap_or_else(|| Family::of_model(job.upstream_model))
    }
}

/// An adapter for one kie.ai account.
#[derive(Debug)]
pub struct KieProvider {
    client: HttpClient,
    credential: Credential,
    timeout_ms: i64,
    concurrency: usize,
}

impl KieProvider {
    /// An adapter for `config`'s account. kie takes a key: without one this
    /// is [`crate::Error::InvalidRequest`].
    pub fn new(config: &ProviderConfig, credential: Option<Credential>) -> Result<Self> {
        let credential = required_credential(config, credential, "its API key")?;
        Ok(KieProvider {
            client: HttpClient::new(config, Auth::Bearer(credential.clone()))?,
            credential,
            timeout_ms: config.timeout_ms,
            concurrency: config.concurrency,
        })
    }

    fn redact(&self, err: ProviderError) -> ProviderError {
        err.redacted(self.credential.expose())
    }

    fn submit_inner(
        &self,
        job: &ProviderJob<'_>,
    ) -> std::result::Result<Submission, ProviderError> {
        let family = Family::of_model(job.upstream_model);
        let body = submit_body(family, job)?;
        let answer = self.client.post_json(family.submit_path(), &body, &[])?;
        let data = read_envelope(&answer, true)?;
        let task_id = data
            .get("taskId")
            .or_else(|| data.get("task_id"))
            .and_then(Value::as_str)
            .ok_or_else(|| ProviderError::OutcomeUnknown {
                message: "kie accepted the task but its answer has no task id".to_owned(),
            })?;
        check_task_id(task_id).map_err(|message| ProviderError::OutcomeUnknown { message })?;
        Ok(Submission::Accepted {
            task_id: task_id.to_owned(),
            state: Some(json!({"family": family.as_str()})),
        })
    }

    fn poll_inner(&self, job: &ProviderJob<'_>) -> std::result::Result<PollStatus, ProviderError> {
        let task_id = job.provider_task_id.ok_or_else(|| {
            ProviderError::permanent("internal", "a kie job is polled before it has a task id")
        })?;
        let family = Family::of_job(job);
        let path = format!("{}?taskId={}", family.poll_path(), query_escape(task_id));
        let answer = self.client.get(&path)?;
        let data = read_envelope(&answer, false)?;
        match family {
            Family::Market => market_status(&data),
            Family::Veo => veo_status(&data),
            Family::Suno => suno_status(&data),
        }
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn query_escape(text: &str) -> String {
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

fn prompt_of<'a>(job: &ProviderJob<'a>) -> std::result::Result<&'a str, ProviderError> {
    match job.prompt {
        Some(prompt) if !prompt.trim().is_empty() => Ok(prompt),
        _ => Err(ProviderError::permanent(
            "prompt_required",
            "a kie generation needs a prompt",
        )),
    }
}

/// The body of `job`'s submission to `family`.
pub fn submit_body(
    family: Family,
    job: &ProviderJob<'_>,
) -> std::result::Result<Value, ProviderError> {
    let prompt = prompt_of(job)?;
    let units = job.units;
    if units.count.is_some_and(|count| count > 1) {
        // kie's request field for several outputs differs per model and is
        // not documented for most: an agent would pay for outputs it never
        // gets, so the job is refused rather than sent with one.
        return Err(ProviderError::permanent(
            "unsupported_input",
            "this kie model makes one output per task; ask for one",
        ));
    }
    let mut body = match family {
        Family::Market => {
            let mut input = json!({"prompt": prompt});
            if !job.input_image_urls.is_empty() {
                input["image_urls"] = json!(job.input_image_urls);
            }
            if let Some(ratio) = &units.aspect_ratio {
                input["aspect_ratio"] = json!(ratio);
            }
            if let Some(resolution) = &units.resolution {
                input["resolution"] = json!(resolution);
            }
            if let Some(duration) = units.duration {
                // kie's market video models take the duration as a string
                // ("5", "10"); not confirmed for every model.
                input["duration"] = json!(duration.to_string());
            }
            json!({"model": job.upstream_model, "input": input})
        }
        Family::Veo => {
            let mut body = json!({"prompt": prompt, "model": job.upstream_model});
            if !job.input_image_urls.is_empty() {
                body["imageUrls"] = json!(job.input_image_urls);
            }
            if let Some(ratio) = &units.aspect_ratio {
                body["aspect_ratio"] = json!(ratio);
            }
            body
        }
        Family::Suno => json!({
            "prompt": prompt,
            "model": job.upstream_model,
            "customMode": false,
            "instrumental": false,
        }),
    };
    if let Some(url) = job.webhook_url.as_deref() {
        body["callBackUrl"] = json!(url);
    }
    Ok(body)
}

/// The envelope's `code`: the body's own (a number or a numeric string),
/// else the HTTP status.
fn envelope_code(answer: &Answer, body: Option<&Value>) -> u16 {
    let code = body
        .and_then(|b| b.get("code"))
        .and_then(|code| match code {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        });
    match code {
        Some(code) if code <= u64::from(u16::MAX) => code as u16,
        _ => answer.status,
    }
}

/// Maps a kie code that is not 200 (the module header's table).
pub fn code_error(code: u16, msg: &str, retry_after_ms: Option<i64>) -> ProviderError {
    let said = summary(msg);
    match code {
        401 | 403 => ProviderError::permanent(
            "provider_auth_failed",
            format!("kie refused our credential (code {code}); the operator must fix it"),
        ),
        402 => ProviderError::permanent(
            "provider_unavailable",
            "our kie account is out of credits; the operator must top it up",
        ),
        429 => ProviderError::NotSent {
            message: format!("kie is rate limiting us: {said}"),
            retry_after_ms,
        },
        455 => ProviderError::NotSent {
            message: format!("kie is under maintenance: {said}"),
            retry_after_ms,
        },
        501 => ProviderError::permanent("generation_failed", format!("kie: {said}")),
        505 => ProviderError::permanent(
            "model_unavailable",
            format!("kie has disabled this model: {said}"),
        ),
        408 | 409 | 425 | 500..=599 => ProviderError::NotSent {
            message: format!("kie answered code {code}: {said}"),
            retry_after_ms,
        },
        _ => ProviderError::permanent(
            "upstream_rejected",
            format!("kie refused the request (code {code}): {said}"),
        ),
    }
}

/// Reads kie's `{"code", "msg", "data"}` envelope and answers its `data`,
/// or the mapped error. `submitting`: a 2xx whose body cannot be read is
/// then OutcomeUnknown (a task may exist); on a poll it is NotSent (asking
/// again is safe).
fn read_envelope(answer: &Answer, submitting: bool) -> std::result::Result<Value, ProviderError> {
    let body = answer.json().ok();
    let Some(value) = body.filter(Value::is_object) else {
        if !answer.is_success() {
            return Err(answer.refusal("kie's answer carried no readable envelope"));
        }
        let message = format!(
            "kie answered HTTP {} with a body that is not its envelope",
            answer.status
        );
        return Err(if submitting {
            ProviderError::OutcomeUnknown { message }
        } else {
            ProviderError::not_sent(message)
        });
    };
    let code = envelope_code(answer, Some(&value));
    if code != 200 {
        let msg = value.get("msg").and_then(Value::as_str).unwrap_or("");
        return Err(code_error(code, msg, answer.retry_after_ms));
    }
    if !answer.is_success() {
        // The body says 200 but the HTTP status does not: trust neither.
        return Err(answer.refusal("kie's status and envelope disagree"));
    }
    Ok(value.get("data").cloned().unwrap_or(Value::Null))
}

/// The media type an output URL's extension names, if a common one.
pub fn mime_of_url(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
    let mime = match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        _ => return None,
    };
    Some(mime.to_owned())
}

fn bad_answer(message: impl Into<String>) -> ProviderError {
    ProviderError::permanent(
        "upstream_bad_answer",
        format!("kie's result could not be read: {}", message.into()),
    )
}

/// Remote artifacts for `urls`, bounded by [`PROVIDER_OUTPUTS_MAX`].
fn artifacts_of(urls: &[Value]) -> std::result::Result<Vec<Artifact>, ProviderError> {
    if urls.is_empty() || urls.len() > PROVIDER_OUTPUTS_MAX {
        return Err(bad_answer(format!(
            "{} result URLs (1 to {PROVIDER_OUTPUTS_MAX})",
            urls.len()
        )));
    }
    urls.iter()
        .map(|url| {
            let url = url
                .as_str()
                .ok_or_else(|| bad_answer("a result URL that is not text"))?;
            Ok(Artifact::Remote {
                url: url.to_owned(),
                mime: mime_of_url(url),
            })
        })
        .collect()
}

fn succeeded(
    artifacts: Vec<Artifact>,
    usage: Option<Usage>,
) -> std::result::Result<PollStatus, ProviderError> {
    let completion = Completion {
        artifacts,
        seed: None,
        usage,
    };
    completion.check().map_err(bad_answer)?;
    Ok(PollStatus::Succeeded(completion))
}

/// Reads the market API's `resultJson`, a JSON *string* holding
/// `{"resultUrls": [...]}` (an already-decoded object is read too).
pub fn parse_result_json(result: &Value) -> std::result::Result<Vec<Value>, ProviderError> {
    let decoded = match result {
        Value::String(text) => {
            if text.len() > RESULT_JSON_BYTES_MAX {
                return Err(bad_answer(format!(
                    "resultJson is larger than {RESULT_JSON_BYTES_MAX} bytes"
                )));
            }
            serde_json::from_str::<Value>(text)
                .map_err(|err| bad_answer(format!("resultJson is not JSON ({err})")))?
        }
        Value::Object(_) => result.clone(),
        _ => return Err(bad_answer("no resultJson")),
    };
    decoded
        .get("resultUrls")
        .and_then(Value::as_array)
        .cloned()
        .ok_or_else(|| bad_answer("resultJson has no resultUrls"))
}

fn failed(code: &str, message: Option<&Value>, fallback: &str) -> PollStatus {
    let text = message.and_then(Value::as_str).unwrap_or(fallback);
    PollStatus::Failed {
        code: code.to_owned(),
        message: summary(text),
    }
}

/// Reads a market `recordInfo` record.
pub fn market_status(data: &Value) -> std::result::Result<PollStatus, ProviderError> {
    match data.get("state").and_then(Value::as_str) {
        Some("waiting" | "queuing" | "generating") => Ok(PollStatus::Running),
        Some("success") => {
            let urls = parse_result_json(data.get("resultJson").unwrap_or(&Value::Null))?;
            succeeded(artifacts_of(&urls)?, None)
        }
        Some("fail") => Ok(failed(
            "generation_failed",
            data.get("failMsg"),
            "kie reports the generation failed",
        )),
        Some(other) => Err(bad_answer(format!("an unknown state {:?}", summary(other)))),
        None => Err(bad_answer("no state")),
    }
}

/// Reads a Veo `record-info` record.
pub fn veo_status(data: &Value) -> std::result::Result<PollStatus, ProviderError> {
    match data.get("successFlag").and_then(Value::as_i64) {
        Some(0) => Ok(PollStatus::Running),
        Some(1) => {
            let urls = data
                .pointer("/response/resultUrls")
                .and_then(Value::as_array)
                .ok_or_else(|| bad_answer("no response.resultUrls"))?;
            succeeded(artifacts_of(urls)?, None)
        }
        Some(2 | 3) => Ok(failed(
            "generation_failed",
            data.get("errorMessage"),
            "kie reports the video generation failed",
        )),
        Some(other) => Err(bad_answer(format!("an unknown successFlag {other}"))),
        None => Err(bad_answer("no successFlag")),
    }
}

/// Audio artifacts and their total duration from Suno's tracks (either
/// `audioUrl` or the callbacks' `audio_url`).
fn suno_tracks(tracks: &[Value]) -> std::result::Result<PollStatus, ProviderError> {
    let mut urls = Vec::with_capacity(tracks.len());
    let mut media_ms: u64 = 0;
    for track in tracks {
        let url = track
            .get("audioUrl")
            .or_else(|| track.get("audio_url"))
            .cloned()
            .ok_or_else(|| bad_answer("a track without an audio URL"))?;
        urls.push(url);
        // Seconds as kie reports them (198.44): a duration, not money.
        if let Some(secs) = track.get("duration").and_then(Value::as_f64) {
            if secs.is_finite() && secs > 0.0 {
                media_ms = media_ms.saturating_add((secs * 1000.0).round() as u64);
            }
        }
    }
    let usage = (media_ms > 0 && media_ms <= SUNO_MEDIA_MS_MAX).then_some(Usage {
        media_ms: Some(media_ms),
        ..Usage::default()
    });
    succeeded(artifacts_of(&urls)?, usage)
}

/// Reads a Suno `record-info` record.
pub fn suno_status(data: &Value) -> std::result::Result<PollStatus, ProviderError> {
    let status = data.get("status").and_then(Value::as_str);
    match status {
        Some("PENDING" | "TEXT_SUCCESS" | "FIRST_SUCCESS") => Ok(PollStatus::Running),
        Some("SUCCESS") => {
            let tracks = data
                .pointer("/response/sunoData")
                .and_then(Value::as_array)
                .ok_or_else(|| bad_answer("no response.sunoData"))?;
            suno_tracks(tracks)
        }
        Some("SENSITIVE_WORD_ERROR") => Ok(failed(
            "content_rejected",
            data.get("errorMessage"),
            "kie's content filter refused the prompt",
        )),
        Some(s) if s.ends_with("_FAILED") || s == "CALLBACK_EXCEPTION" => Ok(failed(
            "generation_failed",
            data.get("errorMessage"),
            "kie reports the music generation failed",
        )),
        Some(other) => Err(bad_answer(format!(
            "an unknown status {:?}",
            summary(other)
        ))),
        None => Err(bad_answer("no status")),
    }
}

/// Reads a kie callback body: the task id (`taskId`, `data.taskId` or
/// `data.task_id`) and what it says, as a poll would answer it. A callback
/// whose envelope `code` is not 200 is a failure (`generation_failed`,
/// or the code's mapping for 402/505). The error says what is wrong, never
/// the body.
pub fn parse_callback(body: &[u8]) -> std::result::Result<(String, PollStatus), String> {
    if body.len() > CALLBACK_BYTES_MAX {
        return Err(format!(
            "the callback is larger than {CALLBACK_BYTES_MAX} bytes"
        ));
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|err| format!("the callback is not JSON ({err})"))?;
    let data = value.get("data").cloned().unwrap_or(Value::Null);
    let task_id = value
        .get("taskId")
        .or_else(|| data.get("taskId"))
        .or_else(|| data.get("task_id"))
        .and_then(Value::as_str)
        .ok_or("the callback names no task (taskId or data.task_id)")?
        .to_owned();
    check_task_id(&task_id)?;
    let code = match value.get("code") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    let msg = value.get("msg").and_then(Value::as_str).unwrap_or("");
    if let Some(code) = code.filter(|&code| code != 200) {
        let code = u16::try_from(code).unwrap_or(u16::MAX);
        let outcome = match code_error(code, msg, None) {
            ProviderError::Permanent { code, message } if code != "upstream_rejected" => {
                PollStatus::Failed { code, message }
            }
            _ => PollStatus::Failed {
                code: "generation_failed".to_owned(),
                message: summary(if msg.is_empty() {
                    "kie reports the generation failed"
                } else {
                    msg
                }),
            },
        };
        return Ok((task_id, outcome));
    }
    let unreadable = |err: ProviderError| match err {
        ProviderError::Permanent { message, .. }
        | ProviderError::NotSent { message, .. }
        | ProviderError::OutcomeUnknown { message } => message,
    };
    let outcome = if data.get("state").is_some() {
        market_status(&data).map_err(unreadable)?
    } else if let Some(kind) = data.get("callbackType").and_then(Value::as_str) {
        match kind {
            "text" | "first" => PollStatus::Running,
            "complete" => {
                let tracks = data
                    .get("data")
                    .and_then(Value::as_array)
                    .ok_or("a Suno callback without tracks")?;
                suno_tracks(tracks).map_err(unreadable)?
            }
            _ => failed(
                "generation_failed",
                value.get("msg"),
                "kie reports the music generation failed",
            ),
        }
    } else if let Some(urls) = data
        .pointer("/info/resultUrls")
        .or_else(|| data.pointer("/response/resultUrls"))
        .and_then(Value::as_array)
    {
        succeeded(artifacts_of(urls).map_err(unreadable)?, None).map_err(unreadable)?
    } else if data.get("successFlag").is_some() {
        veo_status(&data).map_err(unreadable)?
    } else {
        return Err("the callback's data is of no known kie family".to_owned());
    };
    Ok((task_id, outcome))
}

/// Whether `signature_b64` (the `X-Webhook-Signature` header) is the base64
/// HMAC-SHA256 of `task_id + "." + timestamp` under `secret`; compared in
/// constant time. An empty secret verifies nothing.
pub fn verify_callback_signature(
    secret: &[u8],
    task_id: &str,
    timestamp: &str,
    signature_b64: &str,
) -> bool {
    if secret.is_empty() {
        return false;
    }
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(signature_b64.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(task_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.verify_slice(&given).is_ok()
}

impl Provider for KieProvider {
    fn submit(&self, job: &ProviderJob<'_>) -> std::result::Result<Submission, ProviderError> {
        self.submit_inner(job).map_err(|err| self.redact(err))
    }

    fn poll(&self, job: &ProviderJob<'_>) -> std::result::Result<PollStatus, ProviderError> {
        self.poll_inner(job).map_err(|err| self.redact(err))
    }

    /// kie has no cancel endpoint: nothing is sent, and a created task runs
    /// (and is billed by kie) to its end.
    fn cancel(&self, _job: &ProviderJob<'_>) -> std::result::Result<(), ProviderError> {
        Ok(())
    }

    fn idempotent_submit(&self) -> bool {
        false
    }

    fn reconcile(&self, _job: &ProviderJob<'_>) -> std::result::Result<Reconciled, ProviderError> {
        Ok(Reconciled::Unsupported)
    }

    fn check(&self) -> std::result::Result<CheckReport, ProviderError> {
        let answer = match self.client.get("/api/v1/chat/credit") {
            Ok(answer) => answer,
            Err(err) => {
                return Ok(CheckReport {
                    reachable: false,
                    auth_ok: None,
                    upstream_credits: None,
                    detail: match self.redact(err) {
                        ProviderError::NotSent { message, .. }
                        | ProviderError::OutcomeUnknown { message }
                        | ProviderError::Permanent { message, .. } => {
                            format!("GET /api/v1/chat/credit: {message}")
                        }
                    },
                })
            }
        };
        let report = match read_envelope(&answer, false) {
            Ok(data) => {
                let credits = match &data {
                    Value::Number(n) => Some(n.to_string()),
                    Value::String(s) => Some(summary(s)),
                    _ => None,
                };
                CheckReport {
                    reachable: true,
                    auth_ok: Some(true),
                    detail: match &credits {
                        Some(c) => format!("GET /api/v1/chat/credit: {c} credits"),
                        None => "GET /api/v1/chat/credit: answered without a balance".to_owned(),
                    },
                    upstream_credits: credits,
                }
            }
            Err(ProviderError::Permanent { code, message }) if code == "provider_auth_failed" => {
                CheckReport {
                    reachable: true,
                    auth_ok: Some(false),
                    upstream_credits: None,
                    detail: format!("GET /api/v1/chat/credit: {message}"),
                }
            }
            Err(err) => CheckReport {
                reachable: true,
                auth_ok: None,
                upstream_credits: None,
                detail: format!("GET /api/v1/chat/credit: {}", self.redact(err)),
            },
        };
        Ok(report)
    }

    fn call_timeout_ms(&self) -> i64 {
        self.timeout_ms
    }

    fn concurrency(&self) -> usize {
        self.concurrency
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_come_from_the_model_id() {
        assert_eq!(Family::of_model("veo3"), Family::Veo);
        assert_eq!(Family::of_model("veo3_fast"), Family::Veo);
        for suno in ["V5", "V4_5PLUS", "V4_5ALL", "V4_5", "V4", "V3_5"] {
            assert_eq!(Family::of_model(suno), Family::Suno, "{suno}");
        }
        for market in [
            "nano-banana-pro",
            "google/nano-banana",
            "Vidu",
            "V",
            "VPLUS",
        ] {
            assert_eq!(Family::of_model(market), Family::Market, "{market}");
        }
    }

    #[test]
    fn result_json_is_a_string_holding_json() {
        let urls =
            parse_result_json(&json!("{\"resultUrls\":[\"https://x/a.png\"]}")).expect("reads");
        assert_eq!(urls, vec![json!("https://x/a.png")]);
        assert!(parse_result_json(&json!("{not json")).is_err());
        assert!(parse_result_json(&json!("{\"other\":1}")).is_err());
    }

    #[test]
    fn codes_map_to_ours() {
        let code = |c: u16| match code_error(c, "m", Some(5)) {
            ProviderError::Permanent { code, .. } => code,
            ProviderError::NotSent { retry_after_ms, .. } => {
                assert_eq!(retry_after_ms, Some(5));
                "not_sent".to_owned()
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(code(401), "provider_auth_failed");
        assert_eq!(code(402), "provider_unavailable");
        assert_eq!(code(404), "upstream_rejected");
        assert_eq!(code(422), "upstream_rejected");
        assert_eq!(code(429), "not_sent");
        assert_eq!(code(455), "not_sent");
        assert_eq!(code(500), "not_sent");
        assert_eq!(code(501), "generation_failed");
        assert_eq!(code(505), "model_unavailable");
    }

    #[test]
    fn task_ids_are_escaped_in_the_query() {
        assert_eq!(query_escape("abc-1_2.3~"), "abc-1_2.3~");
        assert_eq!(query_escape("a&b=c d"), "a%26b%3Dc%20d");
    }

    #[test]
    fn url_extensions_name_media_types() {
        assert_eq!(
            mime_of_url("https://x/a.MP4?t=1").as_deref(),
            Some("video/mp4")
        );
        assert_eq!(
            mime_of_url("https://x/a.mp3").as_deref(),
            Some("audio/mpeg")
        );
        assert_eq!(mime_of_url("https://x/a"), None);
    }
}
