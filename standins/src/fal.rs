//! A stand-in of fal.ai's queue API (`queue.fal.run`): submit
//! `POST /{owner}/{app}[/{path}]` answering `request_id`, `status_url`,
//! `response_url` and `cancel_url` (which drop the sub-path, as fal's do),
//! status `GET /{owner}/{app}/requests/{id}/status` moving `IN_QUEUE` →
//! `IN_PROGRESS` → `COMPLETED` over polls (HTTP 202 until complete, 200
//! then), result `GET /{owner}/{app}/requests/{id}`, cancel
//! `PUT /{owner}/{app}/requests/{id}/cancel`, all behind
//! `Authorization: Key <key>`. Outputs are served by the stand-in itself
//! under `/files/` (`/files/missing-*` 404s, `/files/big-*` is oversized).
//!
//! Misbehaviour is scripted through [`FalScript`]: faults for the next
//! submits or polls (a status with fal's error body and headers, a slow
//! answer, malformed JSON, an unknown status value), and the outcome of
//! the next request (images, a video, a model validation error, an output
//! URL that 404s).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::{Reply, Seen, StandIn};

/// The bytes of an oversized output served under `/files/big-*`.
pub const BIG_OUTPUT_BYTES: usize = 4 * 1024 * 1024;

/// A scripted misbehaviour, used once.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer this status with this JSON body and these headers.
    Status(u16, Value, Vec<(String, String)>),
    /// Answer normally, after this delay.
    Slow(Duration),
    /// Answer 200 with a body that is not JSON.
    Malformed,
    /// (Status polls only) answer 200 with this status value.
    StatusValue(String),
}

impl Fault {
    /// fal's 429 with a `Retry-After` of `secs`.
    pub fn throttled(secs: u32) -> Fault {
        Fault::Status(
            429,
            json!({"detail": "Too many concurrent requests"}),
            vec![("Retry-After".into(), secs.to_string())],
        )
    }

    /// An infrastructure error (`{"detail", "error_type"}`) with fal's
    /// `X-Fal-Error-Type` header.
    pub fn infra(status: u16, error_type: &str) -> Fault {
        Fault::Status(
            status,
            json!({"detail": "The request could not be processed", "error_type": error_type}),
            vec![("X-Fal-Error-Type".into(), error_type.into())],
        )
    }

    /// A validation error (`{"detail": [{loc, msg, type}]}`) with
    /// `X-Fal-Retryable` set to `retryable`, when given.
    pub fn validation(status: u16, msg: &str, retryable: Option<bool>) -> Fault {
        let mut headers = Vec::new();
        if let Some(retryable) = retryable {
            headers.push(("X-Fal-Retryable".into(), retryable.to_string()));
        }
        Fault::Status(
            status,
            json!({"detail": [{"loc": ["body", "prompt"], "msg": msg, "type": "value_error"}]}),
            headers,
        )
    }
}

/// What a request produces once completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// This many PNG images, served by the stand-in.
    Images(usize),
    /// One MP4 video.
    Video,
    /// One image whose URL 404s.
    MissingImage,
    /// One oversized image.
    BigImage,
    /// The model refuses its input: 422 with a validation body at the
    /// result URL.
    ValidationError,
}

/// The stand-in's script and memory, shared with the test.
#[derive(Debug)]
pub struct FalScript {
    /// Faults for the next submits, in order.
    pub submit_faults: VecDeque<Fault>,
    /// Faults for the next status polls, in order.
    pub status_faults: VecDeque<Fault>,
    /// Faults for the next result reads, in order.
    pub result_faults: VecDeque<Fault>,
    /// What the next submitted request produces.
    pub next_outcome: Outcome,
    /// Status polls answered `IN_QUEUE` before `IN_PROGRESS`.
    pub queue_polls: u32,
    /// Status polls answered `IN_PROGRESS` before `COMPLETED`.
    pub progress_polls: u32,
    /// Requests by id.
    pub requests: BTreeMap<String, Request>,
    next_id: u64,
}

/// A request the stand-in holds.
#[derive(Debug, Clone)]
pub struct Request {
    /// `owner/app`, as the queue URLs name it.
    pub app: String,
    /// The whole model id submitted (with its path).
    pub model: String,
    /// The input it was sent.
    pub input: Value,
    /// The `fal_webhook` it was sent, if any (as received, escaped).
    pub webhook: Option<String>,
    /// Status polls so far.
    pub polls: u32,
    /// Whether a cancel arrived before it completed.
    pub canceled: bool,
    /// What it produces.
    pub outcome: Outcome,
}

impl Default for FalScript {
    fn default() -> Self {
        FalScript {
            submit_faults: VecDeque::new(),
            status_faults: VecDeque::new(),
            result_faults: VecDeque::new(),
            next_outcome: Outcome::Images(1),
            queue_polls: 1,
            progress_polls: 1,
            requests: BTreeMap::new(),
            next_id: 0,
        }
    }
}

impl Request {
    fn completed(&self, script_queue: u32, script_progress: u32) -> bool {
        self.canceled || self.polls > script_queue + script_progress
    }
}

/// A running fal stand-in.
pub struct FalStandIn {
    /// The server (its base URL, the requests it saw).
    pub server: StandIn,
    /// Its script, to change between calls.
    pub script: Arc<Mutex<FalScript>>,
}

impl FalStandIn {
    /// Starts a stand-in accepting `Authorization: Key <key>`.
    pub fn start(key: &str) -> FalStandIn {
        let script = Arc::new(Mutex::new(FalScript::default()));
        let shared = script.clone();
        let key = format!("Key {key}");
        let server = StandIn::start(4, move |seen| handle(&shared, &key, seen));
        FalStandIn { server, script }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> &str {
        self.server.base_url()
    }

    /// Runs `f` on the script.
    pub fn with<R>(&self, f: impl FnOnce(&mut FalScript) -> R) -> R {
        f(&mut self.script.lock().expect("lock"))
    }
}

fn fault_reply(fault: Fault, normal: impl FnOnce() -> Reply) -> Reply {
    match fault {
        Fault::Status(status, body, headers) => {
            let mut reply = Reply::json(status, &body);
            for (name, value) in headers {
                reply = reply.header(&name, &value);
            }
            reply
        }
        Fault::Slow(delay) => normal().after(delay),
        Fault::Malformed => Reply::bytes(200, "application/json", b"{\"request_id\": ".to_vec()),
        Fault::StatusValue(value) => Reply::json(200, &json!({"status": value})),
    }
}

fn handle(script: &Mutex<FalScript>, key: &str, seen: &Seen) -> Reply {
    let host = seen.header("host").unwrap_or("127.0.0.1").to_owned();
    let base = format!("http://{host}");
    let (path, query) = seen.url.split_once('?').unwrap_or((&seen.url, ""));
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if seen.method == "GET" && segments.first() == Some(&"files") {
        return file(segments.get(1).copied().unwrap_or(""));
    }
    if seen.header("authorization") != Some(key) {
        return Reply::json(
            401,
            &json!({"detail": "Invalid Key Authorization header format or wrong key"}),
        );
    }
    let mut script = script.lock().expect("lock");
    let requests_at = segments.iter().position(|s| *s == "requests");
    match (seen.method.as_str(), requests_at) {
        ("POST", None) if segments.len() >= 2 => {
            let normal = {
                script.next_id += 1;
                let id = format!("req-{:04}", script.next_id);
                let app = format!("{}/{}", segments[0], segments[1]);
                let webhook = query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("fal_webhook="))
                    .map(str::to_owned);
                let outcome = script.next_outcome.clone();
                let request = Request {
                    app: app.clone(),
                    model: segments.join("/"),
                    input: seen.json(),
                    webhook,
                    polls: 0,
                    canceled: false,
                    outcome,
                };
                let answer = json!({
                    "request_id": id,
                    "gateway_request_id": id,
                    "status": "IN_QUEUE",
                    "queue_position": 0,
                    "status_url": format!("{base}/{app}/requests/{id}/status"),
                    "response_url": format!("{base}/{app}/requests/{id}"),
                    "cancel_url": format!("{base}/{app}/requests/{id}/cancel"),
                });
                (id, request, answer)
            };
            match script.submit_faults.pop_front() {
                Some(fault @ (Fault::Status(..) | Fault::Malformed | Fault::StatusValue(_))) => {
                    // A refused submit queues nothing; a malformed answer
                    // to an accepted one still queued it.
                    if matches!(fault, Fault::Malformed) {
                        script.requests.insert(normal.0, normal.1);
                    }
                    fault_reply(fault, || Reply::json(200, &json!({})))
                }
                Some(Fault::Slow(delay)) => {
                    script.requests.insert(normal.0, normal.1);
                    Reply::json(200, &normal.2).after(delay)
                }
                None => {
                    script.requests.insert(normal.0, normal.1);
                    Reply::json(200, &normal.2)
                }
            }
        }
        (method, Some(at)) if at == 2 && segments.len() >= 4 => {
            let app = format!("{}/{}", segments[0], segments[1]);
            let id = segments[3].to_owned();
            let tail = segments.get(4).copied();
            let (queue, progress) = (script.queue_polls, script.progress_polls);
            let Some(request) = script.requests.get(&id).filter(|r| r.app == app).cloned() else {
                return match (method, tail) {
                    ("PUT", Some("cancel")) => Reply::json(404, &json!({"status": "NOT_FOUND"})),
                    _ => Reply::json(404, &json!({"detail": "Request not found"})),
                };
            };
            match (method, tail) {
                ("GET", Some("status")) => {
                    let fault = script.status_faults.pop_front();
                    let polls = {
                        let r = script.requests.get_mut(&id).expect("present");
                        r.polls += 1;
                        r.polls
                    };
                    let normal = || {
                        let response_url = format!("{base}/{app}/requests/{id}");
                        if request.canceled || polls > queue + progress {
                            Reply::json(
                                200,
                                &json!({"status": "COMPLETED", "response_url": response_url,
                                        "metrics": {"inference_time": 1.5}}),
                            )
                        } else if polls > queue {
                            Reply::json(
                                202,
                                &json!({"status": "IN_PROGRESS", "response_url": response_url,
                                        "logs": []}),
                            )
                        } else {
                            Reply::json(
                                202,
                                &json!({"status": "IN_QUEUE", "queue_position": 0,
                                        "response_url": response_url}),
                            )
                        }
                    };
                    match fault {
                        Some(fault) => fault_reply(fault, normal),
                        None => normal(),
                    }
                }
                ("GET", None) => {
                    let fault = script.result_faults.pop_front();
                    let normal = || result(&base, &id, &request, queue, progress);
                    match fault {
                        Some(fault) => fault_reply(fault, normal),
                        None => normal(),
                    }
                }
                ("PUT", Some("cancel")) => {
                    if request.completed(queue, progress) {
                        Reply::json(400, &json!({"status": "ALREADY_COMPLETED"}))
                    } else {
                        script.requests.get_mut(&id).expect("present").canceled = true;
                        Reply::json(202, &json!({"status": "CANCELLATION_REQUESTED"}))
                    }
                }
                _ => Reply::json(405, &json!({"detail": "Method not allowed"})),
            }
        }
        _ => Reply::json(404, &json!({"detail": "Not found"})),
    }
}

fn result(base: &str, id: &str, request: &Request, queue: u32, progress: u32) -> Reply {
    if !request.completed(queue, progress) {
        return Reply::json(400, &json!({"detail": "Request is still in progress"}));
    }
    if request.canceled {
        return Reply::json(
            400,
            &json!({"detail": "Request was cancelled", "error_type": "client_cancelled"}),
        );
    }
    let image = |name: String| {
        json!({"url": format!("{base}/files/{name}"), "content_type": "image/png",
               "width": 8, "height": 8})
    };
    match &request.outcome {
        Outcome::Images(n) => Reply::json(
            200,
            &json!({"images": (0..*n).map(|i| image(format!("{id}-{i}.png"))).collect::<Vec<_>>(),
                    "seed": 42, "has_nsfw_concepts": [false], "prompt": request.input.get("prompt")}),
        ),
        Outcome::Video => Reply::json(
            200,
            &json!({"video": {"url": format!("{base}/files/{id}.mp4"), "content_type": "video/mp4"}}),
        ),
        Outcome::MissingImage => Reply::json(
            200,
            &json!({"images": [image(format!("missing-{id}.png"))], "seed": 1}),
        ),
        Outcome::BigImage => Reply::json(
            200,
            &json!({"images": [image(format!("big-{id}.png"))], "seed": 1}),
        ),
        Outcome::ValidationError => Reply::json(
            422,
            &json!({"detail": [{"loc": ["body", "prompt"], "msg": "field required",
                                "type": "value_error.missing"}]}),
        ),
    }
}

/// A tiny PNG (1×1): enough for a content sniffer (its checksums are
/// not meant to be checked).
pub const PNG_1X1: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

/// Serves an output file: `missing-*` 404s, `big-*` is
/// [`BIG_OUTPUT_BYTES`] long, `*.mp4` a video, anything else a PNG.
pub fn file(name: &str) -> Reply {
    if name.starts_with("missing-") || name.is_empty() {
        return Reply::bytes(404, "text/plain", b"not found".to_vec());
    }
    if name.starts_with("big-") {
        let mut bytes = PNG_1X1.to_vec();
        bytes.resize(BIG_OUTPUT_BYTES, 0);
        return Reply::bytes(200, "image/png", bytes);
    }
    if name.ends_with(".mp4") {
        // An ISO BMFF header is enough for a content sniffer.
        let mut bytes = vec![0, 0, 0, 0x18];
        bytes.extend_from_slice(b"ftypmp42");
        bytes.resize(64, 0);
        return Reply::bytes(200, "video/mp4", bytes);
    }
    Reply::bytes(200, "image/png", PNG_1X1.to_vec())
}
