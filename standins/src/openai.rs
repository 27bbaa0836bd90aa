//! A stand-in for an OpenAI-compatible server, under `/v1` like the real
//! ones (so an adapter's base URL is `<stand-in>/v1`):
//! `POST /v1/images/generations` (`url` or `b64_json`; GPT image models
//! always `b64_json` with `usage`, and a 400 if sent `response_format`),
//! `POST /v1/chat/completions` (an echo reply with `usage`), `GET
//! /v1/models`, and the image files its URLs name under `/files/`.
//! `Authorization: Bearer <key>` is checked when a key is set (a 401 that,
//! like OpenAI's, echoes the key it was given). Tests script misbehaviour
//! with [`OpenAiStandIn::push`]: each request takes the next queued
//! [`Trouble`], if any, before it is answered.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::{Reply, Seen, StandIn};

/// A tiny valid PNG (1x1), the stand-in's every image.
pub const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0xF8, 0xCF, 0xC0, 0xF0,
    0x1F, 0x00, 0x05, 0x00, 0x01, 0xFF, 0x89, 0x99, 0x3D, 0x1D, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

/// One scripted misbehaviour, taken by the next request.
#[derive(Debug, Clone)]
pub enum Trouble {
    /// 429 `rate_limit_exceeded` with `Retry-After: <secs>`.
    RateLimited {
        /// Seconds, as the header says.
        retry_after_secs: u32,
    },
    /// 429 `insufficient_quota` (the account is out of money).
    InsufficientQuota,
    /// A 400 from the safety system (`content_policy_violation`).
    ContentPolicy,
    /// This status with an OpenAI-style error body.
    Status(u16),
    /// This status with an error message that repeats the `Authorization`
    /// header it was sent (an upstream that echoes a key).
    EchoAuth(u16),
    /// This status with older vLLM's flat error body.
    FlatError(u16),
    /// The normal answer, after this delay (a slow upstream).
    Slow(Duration),
    /// 200 with a body that is not JSON.
    MalformedJson,
    /// Image URLs that answer 404 (an expired output).
    DeadUrls,
    /// A `b64_json` image of this many bytes (an oversized output).
    OversizedImage(usize),
}

#[derive(Default)]
struct Script {
    troubles: VecDeque<Trouble>,
    dead_urls: bool,
}

/// A running OpenAI-compatible stand-in.
pub struct OpenAiStandIn {
    /// The server (its requests, its base URL).
    pub server: StandIn,
    script: Arc<Mutex<Script>>,
}

impl OpenAiStandIn {
    /// Starts one that wants `key` as a bearer token (none: no auth, like a
    /// local vLLM).
    pub fn start(key: Option<&str>) -> OpenAiStandIn {
        let script = Arc::new(Mutex::new(Script::default()));
        let key = key.map(str::to_owned);
        let shared = script.clone();
        let server = StandIn::start(4, move |seen| answer(seen, key.as_deref(), &shared));
        OpenAiStandIn { server, script }
    }

    /// The base URL an adapter is configured with (`.../v1`).
    pub fn api_url(&self) -> String {
        format!("{}/v1", self.server.base_url())
    }

    /// Queues a misbehaviour for the next request.
    pub fn push(&self, trouble: Trouble) {
        self.script
            .lock()
            .expect("lock")
            .troubles
            .push_back(trouble);
    }
}

fn error(status: u16, message: &str, kind: &str, code: Value) -> Reply {
    Reply::json(
        status,
        &json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
    )
}

fn answer(seen: &Seen, key: Option<&str>, script: &Mutex<Script>) -> Reply {
    let path = seen.url.split('?').next().unwrap_or("");
    if let Some(name) = path.strip_prefix("/files/") {
        return if name.starts_with("dead-") {
            Reply::json(404, &json!({"error": "not found"}))
        } else {
            Reply::bytes(200, "image/png", PNG.to_vec())
        };
    }
    if let Some(key) = key {
        let given = seen
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or("");
        if given != key {
            return error(
                401,
                &format!("Incorrect API key provided: {given}."),
                "invalid_request_error",
                json!("invalid_api_key"),
            );
        }
    }
    let trouble = script.lock().expect("lock").troubles.pop_front();
    let mut delay = Duration::ZERO;
    let mut oversized = None;
    match trouble {
        Some(Trouble::RateLimited { retry_after_secs }) => {
            return error(
                429,
                "Rate limit reached for requests",
                "requests",
                json!("rate_limit_exceeded"),
            )
            .header("Retry-After", &retry_after_secs.to_string());
        }
        Some(Trouble::InsufficientQuota) => {
            return error(
                429,
                "You exceeded your current quota, please check your plan and billing details.",
                "insufficient_quota",
                json!("insufficient_quota"),
            );
        }
        Some(Trouble::ContentPolicy) => {
            return error(
                400,
                "Your request was rejected as a result of our safety system.",
                "invalid_request_error",
                json!("content_policy_violation"),
            );
        }
        Some(Trouble::Status(status)) => {
            return error(
                status,
                "The server had an error",
                "server_error",
                Value::Null,
            );
        }
        Some(Trouble::EchoAuth(status)) => {
            let given = seen.header("authorization").unwrap_or("");
            return error(
                status,
                &format!("Bad request sent with {given}"),
                "invalid_request_error",
                Value::Null,
            );
        }
        Some(Trouble::FlatError(status)) => {
            return Reply::json(
                status,
                &json!({"object": "error", "message": "The model `nope` does not exist.",
                        "type": "NotFoundError", "param": null, "code": status}),
            );
        }
        Some(Trouble::Slow(after)) => delay = after,
        Some(Trouble::MalformedJson) => {
            return Reply::bytes(200, "application/json", b"{\"data\": [".to_vec());
        }
        Some(Trouble::DeadUrls) => script.lock().expect("lock").dead_urls = true,
        Some(Trouble::OversizedImage(bytes)) => oversized = Some(bytes),
        None => {}
    }
    let body = seen.json();
    let reply = match (seen.method.as_str(), path) {
        ("GET", "/v1/models") => Reply::json(
            200,
            &json!({"object": "list", "data": [
                {"id": "gpt-image-1", "object": "model", "created": 1, "owned_by": "system"},
                {"id": "dall-e-3", "object": "model", "created": 1, "owned_by": "system"},
                {"id": "gpt-4o-mini", "object": "model", "created": 1, "owned_by": "system"}]}),
        ),
        ("POST", "/v1/images/generations") => {
            let dead = std::mem::take(&mut script.lock().expect("lock").dead_urls);
            images(seen, &body, dead, oversized)
        }
        ("POST", "/v1/chat/completions") => chat(&body),
        _ => error(404, "Unknown route", "invalid_request_error", Value::Null),
    };
    reply.after(delay)
}

fn images(seen: &Seen, body: &Value, dead: bool, oversized: Option<usize>) -> Reply {
    let model = body["model"].as_str().unwrap_or("");
    let prompt = body["prompt"].as_str().unwrap_or("");
    if model.is_empty() || prompt.is_empty() {
        return error(
            400,
            "Missing required parameter.",
            "invalid_request_error",
            Value::Null,
        );
    }
    let n = body["n"].as_u64().unwrap_or(1);
    let gpt_image = model.starts_with("gpt-image");
    if gpt_image && body.get("response_format").is_some() {
        return error(
            400,
            "Unknown parameter: 'response_format'.",
            "invalid_request_error",
            json!("unknown_parameter"),
        );
    }
    let b64 = gpt_image || body["response_format"] == "b64_json";
    let engine = base64::engine::general_purpose::STANDARD;
    let data: Vec<Value> = (0..n)
        .map(|i| {
            if let Some(bytes) = oversized {
                json!({"b64_json": engine.encode(vec![0u8; bytes])})
            } else if b64 {
                json!({"b64_json": engine.encode(PNG)})
            } else {
                let host = seen.header("host").unwrap_or("127.0.0.1");
                let name = if dead { "dead" } else { "img" };
                json!({"url": format!("http://{host}/files/{name}-{i}.png")})
            }
        })
        .collect();
    let mut answer = json!({"created": 1_700_000_000, "data": data});
    if gpt_image {
        answer["usage"] = json!({"input_tokens": prompt.split_whitespace().count(),
            "output_tokens": 272 * n, "total_tokens": 0,
            "input_tokens_details": {"text_tokens": 0, "image_tokens": 0}});
    }
    Reply::json(200, &answer)
}

fn chat(body: &Value) -> Reply {
    let prompt = body["messages"][0]["content"].as_str().unwrap_or("");
    let reply = format!("echo: {prompt}");
    let prompt_tokens = prompt.split_whitespace().count();
    let completion_tokens = reply.split_whitespace().count();
    Reply::json(
        200,
        &json!({"id": "chatcmpl-standin-1", "object": "chat.completion", "created": 1_700_000_000,
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}),
    )
}
