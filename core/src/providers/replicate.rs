//! The Replicate adapter: Replicate's predictions API (create, get,
//! cancel) over the shared HTTP client, `Authorization: Bearer`, and the
//! pure functions that verify and read Replicate's webhooks (Standard
//! Webhooks; the appliance's webhook route calls them). Owns no table.
//!
//! Create: an upstream model `owner/name` goes to `POST
//! /models/{owner}/{name}/predictions {input}` (the model's latest
//! version); `owner/name:version` to `POST /predictions {version, input}`.
//! With webhooks on, `webhook` is our URL and `webhook_events_filter` is
//! `["completed"]`. `Prefer: wait=N` (the instance's `wait_secs`, at most
//! [`PREFER_WAIT_SECS_MAX`] and within the call timeout) holds the request
//! open, so a create can answer a finished prediction
//! ([`Submission::Completed`]). `Cancel-After` sets a deadline
//! ([`CANCEL_AFTER`]): a prediction that never started by then ends
//! `aborted` and is not billed.
//!
//! A prediction's `urls.get` and `urls.cancel` are kept in the job's
//! provider state and used for polls and cancels (`/predictions/{id}` when
//! they are missing or on another host). Statuses: `starting` and
//! `processing` run; `succeeded` gives the output (a URL, a list of URLs,
//! or model-specific text: see [`parse_output`]); `failed` fails the job
//! (`generation_failed`); `canceled` fails it as `canceled_upstream`
//! (Replicate bills the time it ran); `aborted` is
//! [`PollStatus::Abandoned`] (never started, not billed).
//! `metrics.predict_time` is compute time, not media length: no [`Usage`]
//! is reported.
//!
//! Error mapping (Replicate's answer, RFC 7807 `{type, title, status,
//! detail}` → ours):
//!
//! | Replicate | ours |
//! | --- | --- |
//! | 401, 403 | `provider_auth_failed` (permanent) |
//! | 402 (billing) | `provider_unavailable` (permanent: our upstream account must be paid, the agent is not at fault) |
//! | 422 (invalid input) and other 4xx on create | `upstream_rejected`, `detail` summarised |
//! | 408, 409, 429 (with `Retry-After`), 5xx | not sent, honouring `Retry-After` |
//! | a 2xx create answer that does not parse | outcome unknown |
//! | a poll of a prediction that is gone (404) | `upstream_lost` |
//! | an unknown status | `invalid_provider_answer` (permanent) |
//! | `data_removed` without output | failed `upstream_expired` |
//!
//! Not idempotent, and not reconcilable: Replicate takes no idempotency
//! key, and predictions cannot be looked up by our id (they can be listed,
//! but only our id placed in the model's input would identify ours, and a
//! model's input is not ours to extend). [`Provider::reconcile`] stays
//! unsupported.
//!
//! Not confirmed from Replicate's public docs (marked where used): the
//! exact grammar of `Cancel-After` beyond its examples (`1m`, `30m`), and
//! how a model's list-of-text output (language models) is meant to be
//! joined (we concatenate).
//!
//! [`Usage`]: super::Usage

use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;

use super::config::{required_credential, Credential, ProviderConfig};
use super::http::{summary, Answer, Auth, HttpClient};
use super::{
    check_task_id, Artifact, CheckReport, Completion, PollStatus, Provider, ProviderError,
    ProviderJob, Submission,
};
use crate::error::Result;

/// The longest `Prefer: wait` Replicate honours, in seconds.
pub const PREFER_WAIT_SECS_MAX: u32 = 60;
/// Seconds of the call timeout kept free beside `Prefer: wait` (the
/// request's own transfer time).
pub const PREFER_WAIT_MARGIN_SECS: i64 = 5;
/// The deadline every prediction is created with (`Cancel-After`):
/// Replicate itself stops a prediction after 30 minutes running.
pub const CANCEL_AFTER: &str = "30m";
/// The longest upstream model id (`owner/name[:version]`), in characters.
pub const MODEL_ID_CHARS_MAX: usize = 256;
/// Text pieces read from one prediction's output, at most (language models
/// answer a list of tokens).
pub const TEXT_PIECES_MAX: usize = 65_536;
/// The longest text output kept inline, in bytes.
pub const TEXT_OUTPUT_BYTES_MAX: usize = 1024 * 1024;
/// Signatures read from one `webhook-signature` header, at most.
pub const WEBHOOK_SIGNATURES_MAX: usize = 8;
/// The largest webhook body read, in bytes.
pub const WEBHOOK_BODY_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Standard Webhooks' clock skew, in seconds.
pub const WEBHOOK_TOLERANCE_SECS_DEFAULT: i64 = 300;

/// The Replicate predictions adapter.
#[derive(Debug)]
pub struct ReplicateProvider {
    client: HttpClient,
    /// `Prefer: wait=N`, when on (already capped).
    wait_secs: Option<u32>,
    timeout_ms: i64,
    concurrency: usize,
}

impl ReplicateProvider {
    /// An adapter for `config`'s Replicate instance. The credential
    /// (`REPLICATE_API_TOKEN`) is required. `wait_secs` is capped at
    /// [`PREFER_WAIT_SECS_MAX`] and to fit the call timeout with
    /// [`PREFER_WAIT_MARGIN_SECS`] to spare; nothing left turns it off.
    pub fn new(config: &ProviderConfig, credential: Option<Credential>) -> Result<Self> {
        let credential = required_credential(config, credential, "its API token")?;
        let room = config.timeout_ms / 1000 - PREFER_WAIT_MARGIN_SECS;
        let wait_secs = config
            .wait_secs
            .map(|n| i64::from(n.min(PREFER_WAIT_SECS_MAX)).min(room))
            .filter(|n| *n > 0)
            .map(|n| n as u32);
        Ok(ReplicateProvider {
            client: HttpClient::new(config, Auth::Bearer(credential))?,
            wait_secs,
            timeout_ms: config.timeout_ms,
            concurrency: config.concurrency,
        })
    }

    /// `Prefer: wait=N` as sent, when on.
    pub fn wait_secs(&self) -> Option<u32> {
        self.wait_secs
    }

    /// Where a job's prediction is read: its kept `urls.get`, else
    /// `/predictions/{id}`.
    fn get_url(&self, job: &ProviderJob<'_>) -> std::result::Result<String, ProviderError> {
        self.kept_url(job, "get", "")
    }

    fn kept_url(
        &self,
        job: &ProviderJob<'_>,
        key: &str,
        suffix: &str,
    ) -> std::result::Result<String, ProviderError> {
        let kept = job
            .provider_state
            .and_then(|state| state.get(key))
            .and_then(Value::as_str)
            .filter(|url| self.client.same_origin(url));
        if let Some(url) = kept {
            return Ok(url.to_owned());
        }
        let id = job.provider_task_id.ok_or_else(|| {
            ProviderError::permanent(
                "invalid_provider_answer",
                "the job keeps no Replicate prediction id",
            )
        })?;
        if !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ProviderError::permanent(
                "invalid_provider_answer",
                "the Replicate prediction id has characters an id never has",
            ));
        }
        Ok(format!("/predictions/{id}{suffix}"))
    }
}

/// Where a create goes and what it carries besides the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `POST /models/{owner}/{name}/predictions` (the latest version).
    Model {
        /// The owner.
        owner: String,
        /// The model's name.
        name: String,
    },
    /// `POST /predictions {version}`.
    Version(String),
}

impl Route {
    /// The path the create is posted to.
    pub fn path(&self) -> String {
        match self {
            Route::Model { owner, name } => format!("/models/{owner}/{name}/predictions"),
            Route::Version(_) => "/predictions".to_owned(),
        }
    }
}

/// Reads an upstream model id: `owner/name` or `owner/name:version`, each
/// part of letters, digits, `-`, `_` and `.`, within
/// [`MODEL_ID_CHARS_MAX`].
pub fn route(model: &str) -> std::result::Result<Route, String> {
    let bad = || {
        format!(
            "the Replicate model id must be owner/name or owner/name:version \
             (letters, digits, '-', '_', '.'; at most {MODEL_ID_CHARS_MAX} characters)"
        )
    };
    if model.chars().count() > MODEL_ID_CHARS_MAX {
        return Err(bad());
    }
    let part = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let (name_part, version) = match model.split_once(':') {
        Some((name, version)) => (name, Some(version)),
        None => (model, None),
    };
    let (owner, name) = name_part.split_once('/').ok_or_else(bad)?;
    if !part(owner) || !part(name) || version.is_some_and(|v| !part(v)) {
        return Err(bad());
    }
    Ok(match version {
        Some(version) => Route::Version(version.to_owned()),
        None => Route::Model {
            owner: owner.to_owned(),
            name: name.to_owned(),
        },
    })
}

/// The model input Replicate is sent for `job`: `prompt`, `num_outputs`
/// (the priced count), `aspect_ratio`, `resolution`, `duration`, `image`
/// (one input image) or `image_input` (several), and `seed`. Models differ
/// in which they take (an input a model does not declare is ignored).
pub fn model_input(job: &ProviderJob<'_>) -> Value {
    let mut input = Map::new();
    if let Some(prompt) = job.prompt {
        input.insert("prompt".into(), json!(prompt));
    }
    let units = job.units;
    if let Some(count) = units.count {
        input.insert("num_outputs".into(), json!(count));
    }
    if let Some(aspect_ratio) = &units.aspect_ratio {
        input.insert("aspect_ratio".into(), json!(aspect_ratio));
    }
    if let Some(resolution) = &units.resolution {
        input.insert("resolution".into(), json!(resolution));
    }
    if let Some(duration) = units.duration {
        input.insert("duration".into(), json!(duration));
    }
    match job.input_image_urls {
        [] => {}
        [one] => {
            input.insert("image".into(), json!(one));
        }
        many => {
            input.insert("image_input".into(), json!(many));
        }
    }
    input.insert("seed".into(), json!(job.seed));
    Value::Object(input)
}

/// The create's body for `route`.
pub fn create_body(route: &Route, job: &ProviderJob<'_>) -> Value {
    let mut body = Map::new();
    if let Route::Version(version) = route {
        body.insert("version".into(), json!(version));
    }
    body.insert("input".into(), model_input(job));
    if let Some(webhook) = job.webhook_url.as_deref() {
        body.insert("webhook".into(), json!(webhook));
        body.insert("webhook_events_filter".into(), json!(["completed"]));
    }
    Value::Object(body)
}

/// The human part of a Replicate error (`detail`, else `title`),
/// summarised.
pub fn error_message(body: &Value) -> String {
    let text = body
        .get("detail")
        .and_then(Value::as_str)
        .or_else(|| body.get("title").and_then(Value::as_str))
        .unwrap_or("");
    summary(text)
}

/// Reads a refusal (see the module's table).
pub fn refusal(answer: &Answer) -> ProviderError {
    let message = answer
        .json()
        .map(|body| error_message(&body))
        .unwrap_or_else(|_| "no readable reason".to_owned());
    match answer.status {
        402 => ProviderError::permanent(
            "provider_unavailable",
            format!(
                "Replicate refused for billing (HTTP 402): the operator must settle the \
                 upstream account ({message})"
            ),
        ),
        _ => answer.refusal(&message),
    }
}

/// A guess of a media type from a URL's file extension.
pub fn mime_from_url(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let file = path.rsplit('/').next().unwrap_or("");
    let (_, ext) = file.rsplit_once('.')?;
    let mime = match ext.to_ascii_lowercase().as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "ogg" => "audio/ogg",
        "flac" => "audio/flac",
        "m4a" => "audio/mp4",
        "txt" => "text/plain",
        "json" => "application/json",
        _ => return None,
    };
    Some(mime.to_owned())
}

fn is_url(text: &str) -> bool {
    text.starts_with("https://") || text.starts_with("http://")
}

/// Reads a prediction's output: a URL, a list of URLs, objects with a
/// `url`, or text (a string or a list of strings that are not URLs, as
/// language models stream it), kept inline as `text/plain`.
pub fn parse_output(output: &Value) -> std::result::Result<Vec<Artifact>, String> {
    let remote = |url: &str| Artifact::Remote {
        url: url.to_owned(),
        mime: mime_from_url(url),
    };
    let item = |value: &Value| -> Option<Artifact> {
        match value {
            Value::String(s) if is_url(s) => Some(remote(s)),
            Value::Object(map) => map
                .get("url")
                .and_then(Value::as_str)
                .filter(|s| is_url(s))
                .map(remote),
            _ => None,
        }
    };
    match output {
        Value::String(text) if !is_url(text) => text_artifact(text),
        Value::Array(items) if items.is_empty() => Err("the prediction's output is empty".into()),
        Value::Array(items) if items.iter().all(|i| i.as_str().is_some_and(|s| !is_url(s))) => {
            let text: String = items
                .iter()
                .take(TEXT_PIECES_MAX)
                .filter_map(Value::as_str)
                .collect();
            text_artifact(&text)
        }
        Value::Array(items) => items
            .iter()
            .take(super::PROVIDER_OUTPUTS_MAX + 1)
            .map(|i| item(i).ok_or_else(|| "an output item is not a URL".to_owned()))
            .collect(),
        Value::Object(map) => {
            // Model-specific objects: a `url`, or lists of URLs under known
            // names.
            if let Some(found) = item(output) {
                return Ok(vec![found]);
            }
            for key in ["images", "image", "video", "audio", "output"] {
                if let Some(value) = map.get(key) {
                    return parse_output(value);
                }
            }
            Err("the prediction's output names no file".to_owned())
        }
        other => item(other)
            .map(|a| vec![a])
            .ok_or_else(|| "the prediction has no output".to_owned()),
    }
}

fn text_artifact(text: &str) -> std::result::Result<Vec<Artifact>, String> {
    if text.len() > TEXT_OUTPUT_BYTES_MAX {
        return Err(format!(
            "the prediction's text output is larger than {TEXT_OUTPUT_BYTES_MAX} bytes"
        ));
    }
    Ok(vec![Artifact::Inline {
        bytes: text.as_bytes().to_vec(),
        mime: "text/plain; charset=utf-8".to_owned(),
    }])
}

/// A prediction as read: its id, what a poll makes of it, and its kept
/// URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prediction {
    /// Replicate's id.
    pub id: String,
    /// Its state, as a poll reports it.
    pub status: PollStatus,
    /// `urls.get`, `urls.cancel`, as provider state.
    pub state: Value,
}

/// Reads a prediction (an API answer or a webhook body).
pub fn parse_prediction(body: &Value) -> std::result::Result<Prediction, String> {
    let id = body
        .get("id")
        .and_then(Value::as_str)
        .ok_or("the prediction has no id")?
        .to_owned();
    check_task_id(&id)?;
    let url = |key: &str| {
        body.get("urls")
            .and_then(|u| u.get(key))
            .and_then(Value::as_str)
            .filter(|u| u.chars().count() <= super::OUTPUT_URL_CHARS_MAX)
            .map(str::to_owned)
    };
    let state = json!({"get": url("get"), "cancel": url("cancel")});
    let error = || {
        let text = match body.get("error") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        summary(&text)
    };
    let status = match body.get("status").and_then(Value::as_str) {
        Some("starting" | "processing") => PollStatus::Running,
        Some("succeeded") => {
            let output = body.get("output").filter(|o| !o.is_null());
            match output {
                None if body.get("data_removed").and_then(Value::as_bool) == Some(true) => {
                    PollStatus::Failed {
                        code: "upstream_expired".to_owned(),
                        message: "Replicate removed the prediction's output before it was kept"
                            .to_owned(),
                    }
                }
                None => return Err("the succeeded prediction has no output".to_owned()),
                Some(output) => {
                    let completion = Completion::of(parse_output(output)?);
                    completion.check()?;
                    PollStatus::Succeeded(completion)
                }
            }
        }
        Some("failed") => PollStatus::Failed {
            code: "generation_failed".to_owned(),
            message: format!("the Replicate model failed: {}", error()),
        },
        Some("canceled") => PollStatus::Failed {
            code: "canceled_upstream".to_owned(),
            message: "the prediction was canceled at Replicate (a cancel or its deadline) \
                      after it started: Replicate bills the time it ran"
                .to_owned(),
        },
        Some("aborted") => PollStatus::Abandoned {
            message: "the prediction reached its deadline before it started \
                      (aborted at Replicate, not billed)"
                .to_owned(),
        },
        Some(other) => {
            return Err(format!(
                "Replicate answered an unknown prediction status {:?}",
                summary(other)
            ))
        }
        None => return Err("the prediction has no status".to_owned()),
    };
    Ok(Prediction { id, status, state })
}

impl Provider for ReplicateProvider {
    fn submit(&self, job: &ProviderJob<'_>) -> std::result::Result<Submission, ProviderError> {
        let route = route(job.upstream_model)
            .map_err(|reason| ProviderError::permanent("provider_misconfigured", reason))?;
        let wait = self.wait_secs.map(|n| format!("wait={n}"));
        let mut headers = vec![("Cancel-After", CANCEL_AFTER)];
        if let Some(wait) = &wait {
            headers.push(("Prefer", wait.as_str()));
        }
        let answer = self
            .client
            .post_json(&route.path(), &create_body(&route, job), &headers)?;
        if !answer.is_success() {
            return Err(refusal(&answer));
        }
        // Accepted from here on: a body we cannot read may still be a
        // running prediction.
        let body = answer
            .json()
            .map_err(|message| ProviderError::OutcomeUnknown { message })?;
        let id = body.get("id").and_then(Value::as_str).map(str::to_owned);
        let prediction = match parse_prediction(&body) {
            Ok(prediction) => prediction,
            Err(message) => match id {
                // A prediction we can name but not read: a poll reads it
                // again.
                Some(id) if check_task_id(&id).is_ok() => {
                    return Ok(Submission::Accepted {
                        task_id: id,
                        state: None,
                    })
                }
                _ => return Err(ProviderError::OutcomeUnknown { message }),
            },
        };
        Ok(match prediction.status {
            PollStatus::Succeeded(completion) => Submission::Completed {
                task_id: prediction.id,
                completion,
            },
            // Running, or finished some other way within the wait: the
            // first poll records it.
            _ => Submission::Accepted {
                task_id: prediction.id,
                state: Some(prediction.state),
            },
        })
    }

    fn poll(&self, job: &ProviderJob<'_>) -> std::result::Result<PollStatus, ProviderError> {
        let answer = self.client.get(&self.get_url(job)?)?;
        if answer.status == 404 {
            return Err(ProviderError::permanent(
                "upstream_lost",
                "Replicate does not know this prediction any more",
            ));
        }
        if !answer.is_success() {
            return Err(refusal(&answer));
        }
        let body = answer.json().map_err(ProviderError::not_sent)?;
        parse_prediction(&body)
            .map(|p| p.status)
            .map_err(|reason| ProviderError::permanent("invalid_provider_answer", reason))
    }

    fn cancel(&self, job: &ProviderJob<'_>) -> std::result::Result<(), ProviderError> {
        let url = self.kept_url(job, "cancel", "/cancel")?;
        let answer = self.client.post_json(&url, &json!({}), &[])?;
        // A finished or vanished prediction has nothing left to stop.
        if answer.is_success() || matches!(answer.status, 404 | 409) {
            return Ok(());
        }
        Err(refusal(&answer))
    }

    fn idempotent_submit(&self) -> bool {
        false
    }

    /// `GET /account`: the credential's account (`username`, `type`).
    /// Replicate tells no credit balance. A call that does not reach
    /// Replicate reports it unreachable.
    fn check(&self) -> std::result::Result<CheckReport, ProviderError> {
        let answer = match self.client.get("/account") {
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
        let (auth_ok, detail) = match answer.status {
            200..=299 => {
                let body = answer.json().unwrap_or(Value::Null);
                let field = |k: &str| {
                    body.get(k)
                        .and_then(Value::as_str)
                        .map(summary)
                        .unwrap_or_else(|| "?".to_owned())
                };
                (
                    Some(true),
                    format!(
                        "GET /account: {} account {}",
                        field("type"),
                        field("username")
                    ),
                )
            }
            401 | 403 => (
                Some(false),
                format!("GET /account: HTTP {} (token refused)", answer.status),
            ),
            status => (None, format!("GET /account: HTTP {status}")),
        };
        Ok(CheckReport {
            reachable: true,
            auth_ok,
            upstream_credits: None,
            detail,
        })
    }

    fn call_timeout_ms(&self) -> i64 {
        self.timeout_ms
    }

    fn concurrency(&self) -> usize {
        self.concurrency
    }
}

/// Verifies a Replicate webhook (Standard Webhooks): `webhook_timestamp`
/// within `tolerance_secs` of `now_secs`, and one of the space-separated
/// `v1,<base64>` entries of `webhook_signature` equal, compared in constant
/// time, to the HMAC-SHA256 of `id.timestamp.body` keyed by the
/// `whsec_`-prefixed base64 secret. The error says what failed, never the
/// secret or the body.
pub fn verify_webhook(
    secret_whsec: &str,
    webhook_id: &str,
    webhook_timestamp: &str,
    webhook_signature: &str,
    body: &[u8],
    now_secs: i64,
    tolerance_secs: i64,
) -> std::result::Result<(), String> {
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    if webhook_id.is_empty() {
        return Err("the webhook has no webhook-id".to_owned());
    }
    if body.len() > WEBHOOK_BODY_BYTES_MAX {
        return Err(format!(
            "the webhook body is larger than {WEBHOOK_BODY_BYTES_MAX} bytes"
        ));
    }
    let timestamp: i64 = webhook_timestamp
        .trim()
        .parse()
        .map_err(|_| "the webhook timestamp is not a number of seconds".to_owned())?;
    if (now_secs - timestamp).abs() > tolerance_secs {
        return Err(format!(
            "the webhook timestamp is more than {tolerance_secs} s away from now"
        ));
    }
    let key = engine
        .decode(secret_whsec.trim().trim_start_matches("whsec_"))
        .map_err(|_| "the webhook secret is not whsec_ followed by base64".to_owned())?;
    if key.is_empty() {
        return Err("the webhook secret is empty".to_owned());
    }
    let mac = {
        let mut mac = Hmac::<Sha256>::new_from_slice(&key)
            .map_err(|_| "the webhook secret is not usable".to_owned())?;
        mac.update(webhook_id.as_bytes());
        mac.update(b".");
        mac.update(webhook_timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    };
    let matched = webhook_signature
        .split_whitespace()
        .take(WEBHOOK_SIGNATURES_MAX)
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|sig| engine.decode(sig).ok())
        // `verify_slice` compares in constant time.
        .any(|sig| mac.clone().verify_slice(&sig).is_ok());
    if matched {
        Ok(())
    } else {
        Err("no v1 signature of the webhook verifies with the secret".to_owned())
    }
}

/// Reads a Replicate webhook body (the whole prediction): its id and what
/// a poll would have found.
pub fn parse_webhook(body: &[u8]) -> std::result::Result<(String, PollStatus), String> {
    let body: Value =
        serde_json::from_slice(body).map_err(|_| "the webhook body is not JSON".to_owned())?;
    let prediction = parse_prediction(&body)?;
    Ok((prediction.id, prediction.status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_choose_the_route() {
        assert_eq!(
            route("black-forest-labs/flux-schnell"),
            Ok(Route::Model {
                owner: "black-forest-labs".into(),
                name: "flux-schnell".into()
            })
        );
        assert_eq!(
            route("stability-ai/sdxl:39ed52f2a78e934b"),
            Ok(Route::Version("39ed52f2a78e934b".into()))
        );
        assert_eq!(
            route("a/b").map(|r| r.path()),
            Ok("/models/a/b/predictions".into())
        );
        for bad in ["flux", "a/b/c", "a/b:", "/b", "a/..", "a/b?x", "a/b:v:w"] {
            assert!(route(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn outputs_are_urls_lists_or_text() {
        let one = parse_output(&json!("https://replicate.delivery/x/out.png")).expect("one");
        assert_eq!(one[0].mime(), Some("image/png"));
        let many = parse_output(&json!([
            "https://replicate.delivery/a.webp?x=1",
            "https://replicate.delivery/b.mp4"
        ]))
        .expect("many");
        assert_eq!(many.len(), 2);
        assert_eq!(many[0].mime(), Some("image/webp"));
        assert_eq!(many[1].mime(), Some("video/mp4"));
        let text = parse_output(&json!(["Hel", "lo"])).expect("text");
        assert_eq!(
            text[0],
            Artifact::Inline {
                bytes: b"Hello".to_vec(),
                mime: "text/plain; charset=utf-8".into()
            }
        );
        assert!(parse_output(&json!([])).is_err());
        assert!(parse_output(&json!(["https://x/a.png", 3])).is_err());
        assert_eq!(mime_from_url("https://x/a"), None);
    }

    #[test]
    fn statuses_map_with_their_billing_facts() {
        let status = |s: &str| {
            parse_prediction(
                &json!({"id": "p1", "status": s, "output": "https://x/a.png", "error": "boom"}),
            )
            .map(|p| p.status)
        };
        assert_eq!(status("starting"), Ok(PollStatus::Running));
        assert_eq!(status("processing"), Ok(PollStatus::Running));
        assert!(matches!(status("succeeded"), Ok(PollStatus::Succeeded(_))));
        assert!(
            matches!(status("failed"), Ok(PollStatus::Failed { code, message }) if code == "generation_failed" && message.contains("boom"))
        );
        assert!(
            matches!(status("canceled"), Ok(PollStatus::Failed { code, message }) if code == "canceled_upstream" && message.contains("bills"))
        );
        assert!(matches!(
            status("aborted"),
            Ok(PollStatus::Abandoned { .. })
        ));
        assert!(status("queued").is_err());
        let removed = parse_prediction(
            &json!({"id": "p1", "status": "succeeded", "output": null, "data_removed": true}),
        )
        .expect("reads");
        assert!(
            matches!(removed.status, PollStatus::Failed { code, .. } if code == "upstream_expired")
        );
    }

    #[test]
    fn billing_refusals_are_the_operators_problem() {
        let answer = Answer {
            status: 402,
            retry_after_ms: None,
            content_type: None,
            headers: vec![],
            body: br#"{"title":"Payment required","detail":"Add a card","status":402}"#.to_vec(),
        };
        let err = refusal(&answer);
        assert!(
            matches!(&err, ProviderError::Permanent { code, message } if code == "provider_unavailable" && message.contains("Add a card")),
            "{err:?}"
        );
    }
}
