//! A stand-in for kie.ai: its three model families (market
//! `POST /api/v1/jobs/createTask` + `GET /api/v1/jobs/recordInfo`, Veo
//! `POST /api/v1/veo/generate` + `GET /api/v1/veo/record-info`, Suno
//! `POST /api/v1/generate` + `GET /api/v1/generate/record-info`), the
//! credit read `GET /api/v1/chat/credit`, and the output files its results
//! name (under `/files/`, so a media download can be tested against it).
//! Every answer is kie's `{"code", "msg", "data"}` envelope; `Authorization:
//! Bearer <key>` is checked.
//!
//! A task answers one "running" poll, then ends. Its prompt scripts it:
//! `fail` makes it fail, `sensitive` (Suno) trips the content filter, `dead`
//! makes its output URLs answer 404, `big` makes its output file
//! [`BIG_FILE_BYTES`] long. [`KieStandIn::push`] queues a misbehaviour
//! ([`Trouble`]) for the next API request. [`KieStandIn::callback_for`]
//! and [`sign`] build what kie would post to a callback URL.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::openai::PNG;
use crate::{Reply, Seen, StandIn};

/// The size of an output file whose task's prompt says `big`, in bytes.
pub const BIG_FILE_BYTES: usize = 4 * 1024 * 1024;

/// One scripted misbehaviour, taken by the next API request.
#[derive(Debug, Clone)]
pub enum Trouble {
    /// HTTP 200 with this envelope `code` (kie's usual way of refusing).
    Code(u16),
    /// This HTTP status, with the same envelope code.
    Http(u16),
    /// HTTP 429 with `Retry-After: <secs>`.
    RateLimited {
        /// Seconds, as the header says.
        retry_after_secs: u32,
    },
    /// The normal answer, after this delay.
    Slow(Duration),
    /// HTTP 200 with a body that is not JSON.
    MalformedJson,
    /// A success envelope whose `data` has no task id.
    NoTaskId,
}

#[derive(Debug, Clone)]
struct Task {
    family: &'static str,
    model: String,
    prompt: String,
    polls: u32,
}

struct Script {
    troubles: VecDeque<Trouble>,
    tasks: BTreeMap<String, Task>,
    next: u64,
    credits: Value,
}

/// A running kie.ai stand-in.
pub struct KieStandIn {
    /// The server (its requests, its base URL).
    pub server: StandIn,
    script: Arc<Mutex<Script>>,
}

/// The base64 HMAC-SHA256 of `task_id + "." + timestamp` under `secret`:
/// kie's `X-Webhook-Signature`.
pub fn sign(secret: &[u8], task_id: &str, timestamp: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(format!("{task_id}.{timestamp}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

impl KieStandIn {
    /// Starts one that wants `key` as its bearer token.
    pub fn start(key: &str) -> KieStandIn {
        let script = Arc::new(Mutex::new(Script {
            troubles: VecDeque::new(),
            tasks: BTreeMap::new(),
            next: 0,
            credits: json!(1234.5),
        }));
        let key = key.to_owned();
        let shared = script.clone();
        let server = StandIn::start(4, move |seen| answer(seen, &key, &shared));
        KieStandIn { server, script }
    }

    /// The base URL an adapter is configured with.
    pub fn base_url(&self) -> &str {
        self.server.base_url()
    }

    /// Queues a misbehaviour for the next API request.
    pub fn push(&self, trouble: Trouble) {
        self.script
            .lock()
            .expect("lock")
            .troubles
            .push_back(trouble);
    }

    /// Sets what the credit read answers as `data`.
    pub fn set_credits(&self, credits: Value) {
        self.script.lock().expect("lock").credits = credits;
    }

    /// The body kie would post to the task's callback URL once it ended,
    /// in its family's shape (market: the record; Veo: `data.info`; Suno:
    /// `data.callbackType` with snake_case `task_id` and `audio_url`).
    pub fn callback_for(&self, task_id: &str) -> Value {
        let script = self.script.lock().expect("lock");
        let task = script.tasks.get(task_id).expect("a task").clone();
        let host = self.server.base_url().to_owned();
        let fails = task.prompt.contains("fail") || task.prompt.contains("sensitive");
        match task.family {
            "veo" if fails => json!({"code": 501, "msg": "Video generation failed",
                "data": {"taskId": task_id, "info": null}}),
            "veo" => json!({"code": 200, "msg": "Veo3 video generated successfully.",
                "data": {"taskId": task_id, "info": {"resultUrls": urls(&host, task_id, &task)}}}),
            "suno" if fails => json!({"code": 501, "msg": "Audio generation failed",
                "data": {"callbackType": "error", "task_id": task_id, "data": null}}),
            "suno" => {
                let tracks: Vec<Value> = urls(&host, task_id, &task)
                    .into_iter()
                    .map(|url| json!({"id": "t1", "audio_url": url, "duration": 12.5}))
                    .collect();
                json!({"code": 200, "msg": "All generated successfully.",
                    "data": {"callbackType": "complete", "task_id": task_id, "data": tracks}})
            }
            _ => {
                let mut task = task;
                task.polls = 1;
                json!({"code": 200, "msg": "success",
                    "data": market_record(&host, task_id, &task)})
            }
        }
    }
}

fn envelope(status: u16, code: u16, msg: &str, data: Value) -> Reply {
    Reply::json(status, &json!({"code": code, "msg": msg, "data": data}))
}

fn file_ext(family: &str) -> &'static str {
    match family {
        "veo" => "mp4",
        "suno" => "mp3",
        _ => "png",
    }
}

fn urls(host: &str, task_id: &str, task: &Task) -> Vec<String> {
    let prefix = if task.prompt.contains("dead") {
        "dead-"
    } else if task.prompt.contains("big") {
        "big-"
    } else {
        ""
    };
    vec![format!(
        "{host}/files/{prefix}{task_id}.{}",
        file_ext(task.family)
    )]
}

fn market_record(host: &str, task_id: &str, task: &Task) -> Value {
    let (state, result, fail_msg) = if task.polls == 0 {
        ("generating", String::new(), Value::Null)
    } else if task.prompt.contains("fail") {
        (
            "fail",
            String::new(),
            json!("The image could not be generated"),
        )
    } else {
        let result = json!({"resultUrls": urls(host, task_id, task)}).to_string();
        ("success", result, Value::Null)
    };
    json!({"taskId": task_id, "model": task.model, "state": state,
        "param": json!({"model": task.model}).to_string(), "resultJson": result,
        "failCode": if state == "fail" { json!("500") } else { Value::Null },
        "failMsg": fail_msg, "costTime": 1, "completeTime": 1, "createTime": 1})
}

fn poll(host: &str, task_id: &str, task: &Task) -> Value {
    let running = task.polls == 0;
    let fails = task.prompt.contains("fail");
    match task.family {
        "veo" => {
            let flag = if running {
                0
            } else if fails {
                2
            } else {
                1
            };
            let response = if flag == 1 {
                json!({"taskId": task_id, "resultUrls": urls(host, task_id, task),
                       "originUrls": null, "resolution": "1080p"})
            } else {
                Value::Null
            };
            json!({"taskId": task_id, "successFlag": flag, "response": response,
                "errorCode": if flag == 2 { json!(500) } else { Value::Null },
                "errorMessage": if flag == 2 { json!("Video generation failed") } else { Value::Null },
                "fallbackFlag": false})
        }
        "suno" => {
            let status = if running {
                "TEXT_SUCCESS"
            } else if task.prompt.contains("sensitive") {
                "SENSITIVE_WORD_ERROR"
            } else if fails {
                "GENERATE_AUDIO_FAILED"
            } else {
                "SUCCESS"
            };
            let tracks: Vec<Value> = if status == "SUCCESS" {
                urls(host, task_id, task)
                    .into_iter()
                    .map(|url| {
                        json!({"id": "t1", "audioUrl": url, "streamAudioUrl": url,
                        "title": "Song", "tags": "pop", "duration": 12.5})
                    })
                    .collect()
            } else {
                Vec::new()
            };
            json!({"taskId": task_id, "status": status, "type": "GENERATE",
                "response": {"taskId": task_id, "sunoData": tracks},
                "errorCode": null,
                "errorMessage": if status.ends_with("ERROR") || status.ends_with("FAILED") {
                    json!("The audio could not be generated") } else { Value::Null }})
        }
        _ => market_record(host, task_id, task),
    }
}

fn file(name: &str) -> Reply {
    if name.starts_with("dead-") {
        return Reply::json(404, &json!({"code": 404, "msg": "Not Found", "data": null}));
    }
    let (mime, mut bytes) = match name.rsplit('.').next() {
        Some("mp4") => ("video/mp4", b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom".to_vec()),
        Some("mp3") => ("audio/mpeg", b"ID3\x04\0\0\0\0\0\0".to_vec()),
        _ => ("image/png", PNG.to_vec()),
    };
    if name.starts_with("big-") {
        bytes.resize(BIG_FILE_BYTES, 0);
    }
    Reply::bytes(200, mime, bytes)
}

fn answer(seen: &Seen, key: &str, script: &Mutex<Script>) -> Reply {
    let (path, query) = seen.url.split_once('?').unwrap_or((&seen.url, ""));
    if let Some(name) = path.strip_prefix("/files/") {
        return file(name);
    }
    if seen.header("authorization") != Some(format!("Bearer {key}").as_str()) {
        return envelope(401, 401, "You do not have access permissions", Value::Null);
    }
    let trouble = script.lock().expect("lock").troubles.pop_front();
    let mut delay = Duration::ZERO;
    let mut no_task_id = false;
    match trouble {
        Some(Trouble::Code(code)) => return envelope(200, code, "scripted refusal", Value::Null),
        Some(Trouble::Http(code)) => return envelope(code, code, "scripted refusal", Value::Null),
        Some(Trouble::RateLimited { retry_after_secs }) => {
            return envelope(429, 429, "Too many requests", Value::Null)
                .header("Retry-After", &retry_after_secs.to_string());
        }
        Some(Trouble::Slow(after)) => delay = after,
        Some(Trouble::MalformedJson) => {
            return Reply::bytes(
                200,
                "application/json",
                b"{\"code\": 200, \"data\":".to_vec(),
            )
        }
        Some(Trouble::NoTaskId) => no_task_id = true,
        None => {}
    }
    let host = seen
        .header("host")
        .map(|h| format!("http://{h}"))
        .unwrap_or_default();
    let body = seen.json();
    let reply = match (seen.method.as_str(), path) {
        ("GET", "/api/v1/chat/credit") => {
            let credits = script.lock().expect("lock").credits.clone();
            envelope(200, 200, "success", credits)
        }
        ("POST", "/api/v1/jobs/createTask") => create(script, "market", &body, no_task_id),
        ("POST", "/api/v1/veo/generate") => create(script, "veo", &body, no_task_id),
        ("POST", "/api/v1/generate") => create(script, "suno", &body, no_task_id),
        (
            "GET",
            "/api/v1/jobs/recordInfo" | "/api/v1/veo/record-info" | "/api/v1/generate/record-info",
        ) => {
            let task_id = query
                .split('&')
                .find_map(|pair| pair.strip_prefix("taskId="))
                .unwrap_or("");
            let family = match path {
                "/api/v1/veo/record-info" => "veo",
                "/api/v1/generate/record-info" => "suno",
                _ => "market",
            };
            let mut script = script.lock().expect("lock");
            match script.tasks.get_mut(task_id) {
                Some(task) if task.family == family => {
                    let data = poll(&host, task_id, task);
                    task.polls += 1;
                    envelope(200, 200, "success", data)
                }
                _ => envelope(200, 422, "recordInfo is null", Value::Null),
            }
        }
        _ => envelope(404, 404, "Not Found", Value::Null),
    };
    reply.after(delay)
}

fn create(script: &Mutex<Script>, family: &'static str, body: &Value, no_task_id: bool) -> Reply {
    let model = body["model"].as_str().unwrap_or("").to_owned();
    let prompt = match family {
        "market" => body["input"]["prompt"].as_str(),
        _ => body["prompt"].as_str(),
    }
    .unwrap_or("")
    .to_owned();
    let valid = !model.is_empty()
        && !prompt.is_empty()
        && match family {
            "veo" => model == "veo3" || model == "veo3_fast",
            "suno" => body["customMode"].is_boolean() && body["instrumental"].is_boolean(),
            _ => body["input"].is_object(),
        };
    if !valid {
        return envelope(
            200,
            422,
            "Validation error: a required field is missing",
            Value::Null,
        );
    }
    if no_task_id {
        return envelope(200, 200, "success", json!({}));
    }
    let mut script = script.lock().expect("lock");
    script.next += 1;
    let task_id = format!("{family}_task_{:04}", script.next);
    script.tasks.insert(
        task_id.clone(),
        Task {
            family,
            model,
            prompt,
            polls: 0,
        },
    );
    envelope(200, 200, "success", json!({"taskId": task_id}))
}
