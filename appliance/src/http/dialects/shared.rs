//! What several dialects do alike, so no handler is copied: a
//! synchronous call's submit and wait (in the core, woken by the worker,
//! never polling), the request id of a call that may carry
//! `Idempotency-Key`, the bytes of an output, and a chat's `messages` made
//! into one prompt (OpenAI's and KiwiWhale's), within bounds the
//! documents state.

use std::time::Duration;

use creditgate::ids::{random_id, validate_caller_id};
use creditgate::request::GenerateRequest;
use creditgate::{Error, Job, JobStatus, Quota, ServedOutput, Waited};
use serde_json::Value;

use crate::http::request::Call;

/// The header whose value becomes the request id (lowercase), in the
/// dialects whose bodies carry none.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// The request id of a call in a dialect whose body carries none: its
/// `Idempotency-Key` exactly as sent (a malformed one is refused, naming
/// the header), else a fresh id starting with `prefix` (each call a new
/// job).
pub fn request_id(call: &Call, prefix: &str) -> Result<String, Error> {
    match call.request.header(IDEMPOTENCY_KEY_HEADER) {
        Some(key) => {
            validate_caller_id("Idempotency-Key", key)?;
            Ok(key.to_owned())
        }
        None => Ok(random_id(prefix)),
    }
}

/// How a synchronous call's job ended, or that it has not yet.
#[derive(Debug)]
pub enum Ended {
    /// It succeeded: its outputs are ready.
    Succeeded(Job),
    /// It was canceled meanwhile.
    Canceled(Job),
    /// It failed or expired (`error_code`, `error_message`).
    Failed(Job),
    /// It is still running at the wait's bound, and goes on.
    StillRunning(Job),
}

/// Submits `request` for the caller and waits up to `wait` for its job in
/// the core (woken by the worker's record, never polling): how it ended,
/// with the plan quota the submit counted against.
pub fn submit_and_wait(
    call: &Call,
    request: GenerateRequest,
    wait: Duration,
) -> Result<(Ended, Option<Quota>), Error> {
    let principal = call.caller()?;
    let gate = call.gate();
    let submitted = gate.submit_request_for(principal, request)?;
    let waited = gate.wait_for_job(&principal.account_id, &submitted.job.id, wait)?;
    let ended = match waited {
        Waited::Finished(job) => match job.status {
            JobStatus::Succeeded => Ended::Succeeded(job),
            JobStatus::Canceled => Ended::Canceled(job),
            _ => Ended::Failed(job),
        },
        Waited::StillRunning(job) => Ended::StillRunning(job),
    };
    Ok((ended, submitted.quota))
}

/// The bytes of a succeeded job's output `index`, read through the gate
/// (a fixture sample, or a kept file; bounded by the media store's
/// per-file limit).
pub fn output_bytes(call: &Call, job: &Job, index: usize) -> Result<Vec<u8>, Error> {
    match call
        .gate()
        .served_output(&job.id, &job.output_token, index)?
    {
        ServedOutput::Sample(file) => Ok(file.bytes.to_vec()),
        ServedOutput::Kept(kept) => std::fs::read(&kept.path).map_err(|err| Error::Internal {
            detail: format!("kept output {} cannot be read: {err}", kept.path.display()),
        }),
    }
}

/// A JSON number that is a whole non-negative number: `3` or, as JSON
/// Schema counts integers, `3.0` (a client that writes numbers as floats
/// is not refused). `None` for anything else, and for a float beyond 2^53,
/// where floats stop being exact.
pub fn whole_number(value: &Value) -> Option<u64> {
    const EXACT_MAX: u64 = 1 << 53;
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|n| n.fract() == 0.0 && (0.0..=EXACT_MAX as f64).contains(n))
            .map(|n| n as u64)
    })
}

/// Chat messages per request, at most.
pub const CHAT_MESSAGES_MAX: usize = 8;
/// Characters of one message's role, at most.
pub const CHAT_ROLE_CHARS_MAX: usize = 32;
/// Characters of one message's string content, at most.
pub const CHAT_CONTENT_CHARS_MAX: usize = 1_000;
/// Text parts of one message's array content, at most (OpenAI's form).
pub const CHAT_PARTS_MAX: usize = 4;
/// Characters of one text part, at most.
pub const CHAT_PART_CHARS_MAX: usize = 240;

// The joined prompt of the largest messages fits the core's bound.
const _: () = assert!(
    CHAT_MESSAGES_MAX * (CHAT_ROLE_CHARS_MAX + 4 + CHAT_CONTENT_CHARS_MAX)
        <= creditgate::request::PROMPT_CHARS_MAX
);
// The parts of one content, joined by new lines, fit a string content's.
const _: () = assert!(CHAT_PARTS_MAX * (CHAT_PART_CHARS_MAX + 1) <= CHAT_CONTENT_CHARS_MAX);

/// Whether a message's content may be an array of text parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parts {
    /// `[{"type": "text", "text"}]` as well as a string (OpenAI).
    Allowed,
    /// A string only (KiwiWhale).
    Refused,
}

/// The prompt of a chat's `messages`: a lone user message is its content;
/// otherwise each message is a `role: content` paragraph, in order. Every
/// role and content must have something besides white space and stay
/// within the bounds above; text parts are joined by new lines.
pub fn messages_prompt(messages: &Value, parts: Parts) -> Result<String, Error> {
    let refuse = |message: String| Error::InvalidRequest {
        field: "messages".into(),
        message,
    };
    let messages = messages
        .as_array()
        .filter(|messages| (1..=CHAT_MESSAGES_MAX).contains(&messages.len()))
        .ok_or_else(|| {
            refuse(format!(
                "must be an array of 1 to {CHAT_MESSAGES_MAX} {{role, content}}"
            ))
        })?;
    let mut paragraphs = Vec::with_capacity(messages.len());
    for message in messages {
        let role = bounded(message["role"].as_str(), CHAT_ROLE_CHARS_MAX).ok_or_else(|| {
            refuse(format!(
                "every role must be a string of 1 to {CHAT_ROLE_CHARS_MAX} characters, not blank"
            ))
        })?;
        let content = match (&message["content"], parts) {
            (Value::String(text), _) => bounded(Some(text), CHAT_CONTENT_CHARS_MAX)
                .map(str::to_owned)
                .ok_or_else(|| {
                    refuse(format!(
                        "every content must be 1 to {CHAT_CONTENT_CHARS_MAX} characters, not blank"
                    ))
                })?,
            (Value::Array(items), Parts::Allowed) => text_parts(items).ok_or_else(|| {
                refuse(format!(
                    "array content must be 1 to {CHAT_PARTS_MAX} {{\"type\": \"text\", \"text\"}} \
                     of 1 to {CHAT_PART_CHARS_MAX} characters, not blank"
                ))
            })?,
            _ => return Err(refuse("every message needs a string content".into())),
        };
        paragraphs.push((role, content));
    }
    Ok(match paragraphs.as_slice() {
        [("user", content)] => content.clone(),
        _ => paragraphs
            .iter()
            .map(|(role, content)| format!("{role}: {content}"))
            .collect::<Vec<_>>()
            .join("\n\n"),
    })
}

/// The text of an array content's parts, joined by new lines; `None`
/// when any part is not a bounded, non-blank text part.
fn text_parts(items: &[Value]) -> Option<String> {
    if !(1..=CHAT_PARTS_MAX).contains(&items.len()) {
        return None;
    }
    let texts = items
        .iter()
        .map(|part| match part["type"].as_str() {
            Some("text") => bounded(part["text"].as_str(), CHAT_PART_CHARS_MAX),
            _ => None,
        })
        .collect::<Option<Vec<&str>>>()?;
    Some(texts.join("\n"))
}

/// `text` when it has something besides white space and is at most `max`
/// characters.
fn bounded(text: Option<&str>, max: usize) -> Option<&str> {
    text.filter(|text| !text.trim().is_empty() && text.chars().count() <= max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn whole_numbers_may_be_written_as_floats() {
        assert_eq!(whole_number(&json!(3)), Some(3));
        assert_eq!(whole_number(&json!(3.0)), Some(3));
        assert_eq!(whole_number(&json!(u64::MAX)), Some(u64::MAX));
        for refused in [
            json!(3.5),
            json!(-1),
            json!(-1.0),
            json!(1e300),
            json!("3"),
            Value::Null,
        ] {
            assert_eq!(whole_number(&refused), None, "{refused}");
        }
    }

    #[test]
    fn a_lone_user_message_is_the_prompt_and_a_conversation_is_paragraphs() {
        let lone = json!([{"role": "user", "content": "a cat"}]);
        assert_eq!(
            messages_prompt(&lone, Parts::Refused).expect("prompt"),
            "a cat"
        );
        let talk = json!([
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "cat"}]},
        ]);
        assert_eq!(
            messages_prompt(&talk, Parts::Allowed).expect("prompt"),
            "system: be brief\n\nuser: a\ncat"
        );
        assert!(messages_prompt(&talk, Parts::Refused).is_err());
    }

    #[test]
    fn messages_beyond_their_bounds_are_refused() {
        let message = |role: &str, content: Value| json!({"role": role, "content": content});
        let refused = [
            json!([]),
            json!("a cat"),
            Value::Array(vec![message("user", json!("hi")); CHAT_MESSAGES_MAX + 1]),
            json!([message(" ", json!("hi"))]),
            json!([message(&"r".repeat(CHAT_ROLE_CHARS_MAX + 1), json!("hi"))]),
            json!([message("user", json!(" \n "))]),
            json!([message(
                "user",
                json!("x".repeat(CHAT_CONTENT_CHARS_MAX + 1))
            )]),
            json!([message("user", json!([]))]),
            json!([message(
                "user",
                Value::Array(vec![
                    json!({"type": "text", "text": "a"});
                    CHAT_PARTS_MAX + 1
                ])
            )]),
            json!([message(
                "user",
                json!([{"type": "text", "text": "x".repeat(CHAT_PART_CHARS_MAX + 1)}])
            )]),
            json!([message(
                "user",
                json!([{"type": "image_url", "image_url": {"url": "http://x.test"}}])
            )]),
            json!([{"role": "user"}]),
        ];
        for messages in refused {
            assert!(
                messages_prompt(&messages, Parts::Allowed).is_err(),
                "{messages}"
            );
        }
        let largest = Value::Array(vec![
            message(
                &"r".repeat(CHAT_ROLE_CHARS_MAX),
                json!("x".repeat(CHAT_CONTENT_CHARS_MAX))
            );
            CHAT_MESSAGES_MAX
        ]);
        let prompt = messages_prompt(&largest, Parts::Allowed).expect("the largest fits");
        assert!(prompt.chars().count() <= creditgate::request::PROMPT_CHARS_MAX);
    }
}
