//! The OpenAI-compatible adapter: one [`OpenAiProvider`] serves every
//! server that speaks OpenAI's REST dialect (OpenAI, OpenRouter, xAI, vLLM,
//! Ollama, LocalAI), told apart only by the instance's base URL. The base
//! URL **includes the API version prefix**: `https://api.openai.com/v1`
//! (the kind's default), `https://openrouter.ai/api/v1`,
//! `https://api.x.ai/v1`, `http://gpu-box:8000/v1` (vLLM),
//! `http://localhost:11434/v1` (Ollama). The adapter appends only
//! `images/generations`, `chat/completions` and `models`. A credential is
//! optional (a local vLLM takes none): with one it goes as
//! `Authorization: Bearer`.
//!
//! It owns how a job becomes one of two synchronous calls, and how their
//! answers and refusals are read:
//!
//! - product `image`: `POST images/generations` `{model, prompt, n, size?,
//!   response_format: "url"}`. GPT image models (`gpt-image-*`, also behind
//!   a router prefix such as `openai/gpt-image-1`) return only `b64_json`
//!   and refuse `response_format`, so it is left out for them. `n` is the
//!   job's priced `count` (1 when the model prices no count); `size` is the
//!   priced `resolution` when it is OpenAI-shaped (`1024x1024`, `auto`),
//!   otherwise left to the server's default (no other option is sent: what
//!   is not priced is not asked for). `data[].url` becomes
//!   [`Artifact::Remote`], `data[].b64_json` [`Artifact::Inline`] (decoded,
//!   bounded by [`ARTIFACT_INLINE_BYTES_MAX`], its type sniffed from the PNG,
//!   JPEG or WebP magic); `usage.{input_tokens, output_tokens}` becomes
//!   [`Usage`]. The task id is our job id (image answers carry no id).
//! - product `chat`: `POST chat/completions` `{model, messages: [{role:
//!   user, content: prompt}]}` (input images, if any, as `image_url` parts).
//!   `max_tokens` is not sent: the pricing units carry none today. The
//!   reply text becomes an inline `text/plain; charset=utf-8` artifact;
//!   `usage.{prompt_tokens, completion_tokens}` becomes [`Usage`]; the task
//!   id is the answer's `id` (our job id when it has none).
//! - any other product: `unsupported_product`.
//!
//! Both calls answer synchronously, so [`Provider::submit`] returns
//! [`Submission::Completed`] and [`Provider::poll`] is never asked (it
//! answers `internal`). A POST may have created, and billed, a generation
//! before its answer was lost, and OpenAI takes no idempotency key we could
//! ask it by: submission is not idempotent and reconcile is unsupported.
//! There is no job to cancel: [`Provider::cancel`] does nothing.
//! [`Provider::check`] lists `GET models`.
//!
//! Error mapping (bodies `{"error": {"message", "type", "param", "code"}}`,
//! older vLLM's flat `{"object": "error", "message", "type", "code"}`, and
//! Ollama's `{"error": "text"}` are all read):
//!
//! | upstream | ours |
//! | --- | --- |
//! | 401, 403 | Permanent `provider_auth_failed` |
//! | 429 with code or type `insufficient_quota` | Permanent `provider_unavailable` (our account is out of money; the agent is not charged) |
//! | other 429 | NotSent, honouring `Retry-After` |
//! | 400 with code or type `content_policy_violation` or code `moderation_blocked` | Permanent `content_rejected` |
//! | other 400, 404, 422 | Permanent `upstream_rejected` |
//! | 408, 409, 425, 5xx | NotSent |
//! | a 2xx answer that cannot be read, on a submit | OutcomeUnknown (it may have been generated and billed) |
//! | a `b64_json` image over [`ARTIFACT_INLINE_BYTES_MAX`] | Permanent `output_too_large` |
//! | a chat reply stopped by the content filter, or a `refusal` | Permanent `content_rejected` |
//!
//! Not confirmed against official docs (marked where used): that GPT image
//! models answer a 400 to `response_format` (OpenAI's reference says only
//! that `url` is unsupported for them), and `moderation_blocked` as the code
//! of a GPT image model's safety refusal.

use base64::Engine as _;
use serde_json::{json, Value};

use super::config::{Credential, ProviderConfig};
use super::http::{summary, Answer, Auth, HttpClient};
use super::{
    check_task_id, Artifact, CheckReport, Completion, PollStatus, Provider, ProviderError,
    ProviderJob, Reconciled, Submission, Usage, ARTIFACT_INLINE_BYTES_MAX, PROVIDER_OUTPUTS_MAX,
};
use crate::error::Result;

/// The media type of a chat reply.
pub const CHAT_MIME: &str = "text/plain; charset=utf-8";
/// The media type of an inline image whose magic is none of PNG, JPEG or
/// WebP (the media store's content check decides whether it is kept).
pub const UNKNOWN_MIME: &str = "application/octet-stream";
/// The longest `size` sent, in characters (`1024x1024`, `auto`).
pub const SIZE_CHARS_MAX: usize = 16;

/// An adapter for one OpenAI-compatible server.
#[derive(Debug)]
pub struct OpenAiProvider {
    client: HttpClient,
    credential: Option<Credential>,
    timeout_ms: i64,
    concurrency: usize,
}

impl OpenAiProvider {
    /// An adapter for `config`'s server (its base URL includes `/v1`),
    /// sending `credential`, if any, as a bearer token. A missing base URL
    /// is [`crate::error::Error::InvalidRequest`].
    pub fn new(config: &ProviderConfig, credential: Option<Credential>) -> Result<Self> {
        let auth = match &credential {
            Some(secret) => Auth::Bearer(secret.clone()),
            None => Auth::None,
        };
        Ok(OpenAiProvider {
            client: HttpClient::new(config, auth)?,
            credential,
            timeout_ms: config.timeout_ms,
            concurrency: config.concurrency,
        })
    }

    /// `text` with the credential, should an upstream echo it, blotted out.
    fn redact(&self, text: String) -> String {
        match &self.credential {
            Some(secret) => super::redact(text, secret.expose()),
            None => text,
        }
    }

    fn redact_error(&self, err: ProviderError) -> ProviderError {
        match &self.credential {
            Some(secret) => err.redacted(secret.expose()),
            None => err,
        }
    }

    fn submit_inner(
        &self,
        job: &ProviderJob<'_>,
    ) -> std::result::Result<Submission, ProviderError> {
        let (path, body) = match job.product {
            "image" => ("images/generations", image_request(job)?),
            "chat" => ("chat/completions", chat_request(job)?),
            other => {
                return Err(ProviderError::permanent(
                    "unsupported_product",
                    format!("an OpenAI-compatible server does not make the product {other:?}"),
                ))
            }
        };
        let answer = self.client.post_json(path, &body, &[])?;
        if !answer.is_success() {
            return Err(refusal(&answer));
        }
        let value = answer
            .json()
            .map_err(|message| ProviderError::OutcomeUnknown { message })?;
        let unreadable = |message: String| ProviderError::OutcomeUnknown {
            message: format!("the upstream's answer could not be read: {message}"),
        };
        match job.product {
            "image" => {
                let completion = parse_image_answer(&value)?;
                completion.check().map_err(unreadable)?;
                Ok(Submission::Completed {
                    task_id: job.job_id.to_owned(),
                    completion,
                })
            }
            _ => {
                let (id, completion) = parse_chat_answer(&value)?;
                completion.check().map_err(unreadable)?;
                let task_id = id
                    .filter(|id| check_task_id(id).is_ok())
                    .unwrap_or_else(|| job.job_id.to_owned());
                Ok(Submission::Completed {
                    task_id,
                    completion,
                })
            }
        }
    }
}

/// Whether `model` is one of OpenAI's GPT image models (`gpt-image-1`,
/// `gpt-image-1-mini`, ..., also behind a router prefix such as
/// `openai/gpt-image-1`), which answer only `b64_json`.
pub fn is_gpt_image_model(model: &str) -> bool {
    let name = model.rsplit('/').next().unwrap_or(model);
    name.to_ascii_lowercase().starts_with("gpt-image")
}

/// Whether `resolution` is a size an OpenAI-style server takes (`WxH` or
/// `auto`).
fn openai_size(resolution: &str) -> Option<&str> {
    let r = resolution.trim();
    if r.is_empty() || r.len() > SIZE_CHARS_MAX {
        return None;
    }
    if r == "auto" {
        return Some(r);
    }
    let (w, h) = r.split_once('x')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(w) && digits(h)).then_some(r)
}

fn prompt_of<'a>(job: &ProviderJob<'a>) -> std::result::Result<&'a str, ProviderError> {
    match job.prompt {
        Some(prompt) if !prompt.trim().is_empty() => Ok(prompt),
        _ => Err(ProviderError::permanent(
            "prompt_required",
            "an OpenAI-compatible generation needs a prompt",
        )),
    }
}

/// The body of `POST images/generations` for `job`.
pub fn image_request(job: &ProviderJob<'_>) -> std::result::Result<Value, ProviderError> {
    let prompt = prompt_of(job)?;
    if !job.input_image_urls.is_empty() {
        return Err(ProviderError::permanent(
            "unsupported_input",
            "input images need the images/edits endpoint, which this adapter does not call",
        ));
    }
    let n = job.units.count.unwrap_or(1);
    if n == 0 || n as usize > PROVIDER_OUTPUTS_MAX {
        return Err(ProviderError::permanent(
            "upstream_rejected",
            format!("asked for {n} images (1 to {PROVIDER_OUTPUTS_MAX})"),
        ));
    }
    let mut body = json!({
        "model": job.upstream_model,
        "prompt": prompt,
        "n": n,
    });
    if let Some(size) = job.units.resolution.as_deref().and_then(openai_size) {
        body["size"] = json!(size);
    }
    // GPT image models always answer b64_json; sending the parameter is
    // refused by them (not confirmed: the reference only says `url` is
    // unsupported for them), so it is left out.
    if !is_gpt_image_model(job.upstream_model) {
        body["response_format"] = json!("url");
    }
    Ok(body)
}

/// The body of `POST chat/completions` for `job`.
pub fn chat_request(job: &ProviderJob<'_>) -> std::result::Result<Value, ProviderError> {
    let prompt = prompt_of(job)?;
    let content = if job.input_image_urls.is_empty() {
        json!(prompt)
    } else {
        let mut parts = vec![json!({"type": "text", "text": prompt})];
        for url in job.input_image_urls {
            parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
        }
        Value::Array(parts)
    };
    Ok(json!({
        "model": job.upstream_model,
        "messages": [{"role": "user", "content": content}],
    }))
}

/// The media type of an image from its first bytes: PNG, JPEG or WebP.
pub fn sniff_image_mime(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// Decodes one `b64_json` image, refusing one whose decoded size would
/// pass [`ARTIFACT_INLINE_BYTES_MAX`] before decoding it.
pub fn decode_inline_image(b64: &str) -> std::result::Result<Artifact, ProviderError> {
    let b64 = b64.trim();
    // Decoded bytes are at most 3/4 of the encoded length.
    if b64.len() / 4 * 3 > ARTIFACT_INLINE_BYTES_MAX + 3 {
        return Err(ProviderError::permanent(
            "output_too_large",
            format!("an inline image is larger than {ARTIFACT_INLINE_BYTES_MAX} bytes"),
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|err| ProviderError::OutcomeUnknown {
            message: format!("an inline image is not valid base64 ({err})"),
        })?;
    if bytes.len() > ARTIFACT_INLINE_BYTES_MAX {
        return Err(ProviderError::permanent(
            "output_too_large",
            format!("an inline image is larger than {ARTIFACT_INLINE_BYTES_MAX} bytes"),
        ));
    }
    let mime = sniff_image_mime(&bytes).unwrap_or(UNKNOWN_MIME).to_owned();
    Ok(Artifact::Inline { bytes, mime })
}

fn token_count(usage: &Value, key: &str) -> Option<u64> {
    usage.get(key).and_then(Value::as_u64)
}

/// Reads an `images/generations` answer: `data[]` of `url` or `b64_json`,
/// and `usage` where given. An answer without images is
/// [`ProviderError::OutcomeUnknown`] (it may have been billed).
pub fn parse_image_answer(value: &Value) -> std::result::Result<Completion, ProviderError> {
    let lost = |message: &str| ProviderError::OutcomeUnknown {
        message: format!("the upstream's image answer could not be read: {message}"),
    };
    let data = value
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| lost("no `data` list"))?;
    if data.is_empty() || data.len() > PROVIDER_OUTPUTS_MAX {
        return Err(lost(&format!(
            "{} images (1 to {PROVIDER_OUTPUTS_MAX})",
            data.len()
        )));
    }
    let mut artifacts = Vec::with_capacity(data.len());
    for item in data {
        if let Some(b64) = item.get("b64_json").and_then(Value::as_str) {
            artifacts.push(decode_inline_image(b64)?);
        } else if let Some(url) = item.get("url").and_then(Value::as_str) {
            artifacts.push(Artifact::Remote {
                url: url.to_owned(),
                mime: None,
            });
        } else {
            return Err(lost("an image with neither `url` nor `b64_json`"));
        }
    }
    let usage = value.get("usage").filter(|u| u.is_object()).map(|u| Usage {
        input_tokens: token_count(u, "input_tokens"),
        output_tokens: token_count(u, "output_tokens"),
        media_ms: None,
    });
    Ok(Completion {
        artifacts,
        seed: None,
        usage,
    })
}

/// Reads a `chat/completions` answer: the first choice's text (a string,
/// or text parts) and `usage` where given; answers the upstream's `id`
/// too. A reply stopped by the content filter, or a model's `refusal`, is
/// `content_rejected`.
pub fn parse_chat_answer(
    value: &Value,
) -> std::result::Result<(Option<String>, Completion), ProviderError> {
    let lost = |message: &str| ProviderError::OutcomeUnknown {
        message: format!("the upstream's chat answer could not be read: {message}"),
    };
    let choice = value
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|choices| choices.first())
        .ok_or_else(|| lost("no choices"))?;
    let message = choice.get("message").ok_or_else(|| lost("no message"))?;
    let refused = choice.get("finish_reason").and_then(Value::as_str) == Some("content_filter")
        || message
            .get("refusal")
            .and_then(Value::as_str)
            .is_some_and(|r| !r.is_empty());
    let text = match message.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        Some(Value::Null) | None if refused => String::new(),
        _ => return Err(lost("a message without text content")),
    };
    if refused && text.is_empty() {
        return Err(ProviderError::permanent(
            "content_rejected",
            "the upstream declined the prompt (content filter or refusal)",
        ));
    }
    if text.len() > ARTIFACT_INLINE_BYTES_MAX {
        return Err(ProviderError::permanent(
            "output_too_large",
            format!("the reply is larger than {ARTIFACT_INLINE_BYTES_MAX} bytes"),
        ));
    }
    let usage = value.get("usage").filter(|u| u.is_object()).map(|u| Usage {
        input_tokens: token_count(u, "prompt_tokens"),
        output_tokens: token_count(u, "completion_tokens"),
        media_ms: None,
    });
    let id = value.get("id").and_then(Value::as_str).map(str::to_owned);
    Ok((
        id,
        Completion {
            artifacts: vec![Artifact::Inline {
                bytes: text.into_bytes(),
                mime: CHAT_MIME.to_owned(),
            }],
            seed: None,
            usage,
        },
    ))
}

/// An upstream error body's `(message, type, code)`, from the nested
/// `{"error": {...}}`, the flat vLLM `{"object": "error", ...}`, or
/// Ollama's `{"error": "text"}`; codes that are numbers read as text.
pub fn error_fields(body: &[u8]) -> (String, String, String) {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    match value.get("error") {
        Some(Value::Object(_)) => {
            let error = &value["error"];
            (
                text(error.get("message")),
                text(error.get("type")),
                text(error.get("code")),
            )
        }
        Some(Value::String(message)) => (message.clone(), String::new(), String::new()),
        _ => (
            text(value.get("message")),
            text(value.get("type")),
            text(value.get("code")),
        ),
    }
}

/// Maps a refused answer to our error (the module header's table).
pub fn refusal(answer: &Answer) -> ProviderError {
    let (message, kind, code) = error_fields(&answer.body);
    let said = summary(&message);
    let is = |what: &str| code == what || kind == what;
    match answer.status {
        429 if is("insufficient_quota") => ProviderError::permanent(
            "provider_unavailable",
            "the upstream account is out of quota; the operator must top it up",
        ),
        400 if is("content_policy_violation") || code == "moderation_blocked" => {
            ProviderError::permanent(
                "content_rejected",
                format!("the upstream's content policy refused the prompt: {said}"),
            )
        }
        400 | 404 | 422 => ProviderError::permanent(
            "upstream_rejected",
            format!(
                "the upstream refused the request (HTTP {}): {said}",
                answer.status
            ),
        ),
        _ => answer.refusal(&said),
    }
}

impl Provider for OpenAiProvider {
    fn submit(&self, job: &ProviderJob<'_>) -> std::result::Result<Submission, ProviderError> {
        self.submit_inner(job).map_err(|err| self.redact_error(err))
    }

    /// Never needed: every answer is synchronous.
    fn poll(&self, _job: &ProviderJob<'_>) -> std::result::Result<PollStatus, ProviderError> {
        Err(ProviderError::permanent(
            "internal",
            "an OpenAI-compatible job completes at submission; there is nothing to poll",
        ))
    }

    /// Nothing to stop: a synchronous call is over when it answers.
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
        let answer = match self.client.get("models") {
            Ok(answer) => answer,
            Err(err) => {
                return Ok(CheckReport {
                    reachable: false,
                    auth_ok: None,
                    upstream_credits: None,
                    detail: self.redact(format!("GET models: {err}")),
                })
            }
        };
        let report = match answer.status {
            200..=299 => {
                let models = answer
                    .json()
                    .ok()
                    .and_then(|v| v.get("data").and_then(Value::as_array).map(Vec::len));
                CheckReport {
                    reachable: true,
                    auth_ok: Some(true),
                    upstream_credits: None,
                    detail: match models {
                        Some(n) => format!("GET models: {n} models"),
                        None => "GET models: answered, but not a model list".to_owned(),
                    },
                }
            }
            401 | 403 => CheckReport {
                reachable: true,
                auth_ok: Some(false),
                upstream_credits: None,
                detail: format!("GET models: HTTP {} (credential refused)", answer.status),
            },
            status => CheckReport {
                reachable: true,
                auth_ok: None,
                upstream_credits: None,
                detail: format!("GET models: HTTP {status}"),
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
    fn gpt_image_models_are_told_apart_behind_a_router_prefix() {
        assert!(is_gpt_image_model("gpt-image-1"));
        assert!(is_gpt_image_model("openai/gpt-image-1-mini"));
        assert!(!is_gpt_image_model("dall-e-3"));
        assert!(!is_gpt_image_model("grok-2-image"));
    }

    #[test]
    fn only_openai_shaped_sizes_are_sent() {
        assert_eq!(openai_size("1024x1536"), Some("1024x1536"));
        assert_eq!(openai_size("auto"), Some("auto"));
        assert_eq!(openai_size("4K"), None);
        assert_eq!(openai_size("x1024"), None);
        assert_eq!(openai_size("1024x1024x1024x1024"), None);
    }

    #[test]
    fn magic_numbers_name_the_image_type() {
        assert_eq!(
            sniff_image_mime(b"\x89PNG\r\n\x1a\nrest"),
            Some("image/png")
        );
        assert_eq!(
            sniff_image_mime(&[0xFF, 0xD8, 0xFF, 0xE0]),
            Some("image/jpeg")
        );
        assert_eq!(
            sniff_image_mime(b"RIFF\0\0\0\0WEBPVP8 "),
            Some("image/webp")
        );
        assert_eq!(sniff_image_mime(b"GIF89a"), None);
    }

    #[test]
    fn error_bodies_of_every_dialect_are_read() {
        assert_eq!(
            error_fields(
                br#"{"error": {"message": "m", "type": "t", "param": null, "code": "c"}}"#
            ),
            ("m".into(), "t".into(), "c".into())
        );
        assert_eq!(
            error_fields(
                br#"{"object": "error", "message": "m", "type": "BadRequestError", "code": 400}"#
            ),
            ("m".into(), "BadRequestError".into(), "400".into())
        );
        assert_eq!(
            error_fields(br#"{"error": "model not found"}"#),
            ("model not found".into(), String::new(), String::new())
        );
        assert_eq!(
            error_fields(b"<html>"),
            (String::new(), String::new(), String::new())
        );
    }

    #[test]
    fn a_chat_refusal_is_content_rejected_and_a_reply_is_text() {
        let refused = json!({"choices": [{"message": {"role": "assistant", "content": null,
            "refusal": "no"}, "finish_reason": "stop"}]});
        assert!(matches!(
            parse_chat_answer(&refused),
            Err(ProviderError::Permanent { code, .. }) if code == "content_rejected"
        ));
        let parts = json!({"id": "c1", "choices": [{"message": {"role": "assistant",
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}}]});
        let (id, done) = parse_chat_answer(&parts).expect("reads");
        assert_eq!(id.as_deref(), Some("c1"));
        assert_eq!(
            done.artifacts,
            vec![Artifact::Inline {
                bytes: b"ab".to_vec(),
                mime: CHAT_MIME.into()
            }]
        );
        assert_eq!(done.usage, None);
    }

    #[test]
    fn an_oversized_inline_image_is_refused_before_decoding() {
        let b64 = "A".repeat((ARTIFACT_INLINE_BYTES_MAX / 3 + 2) * 4);
        assert!(matches!(
            decode_inline_image(&b64),
            Err(ProviderError::Permanent { code, .. }) if code == "output_too_large"
        ));
    }
}
