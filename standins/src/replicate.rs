//! A stand-in of Replicate's predictions API (`api.replicate.com/v1`,
//! served at the stand-in's root): create `POST /models/{owner}/{name}/predictions`
//! or `POST /predictions {version, input}` (201, the prediction), get
//! `GET /predictions/{id}` moving `starting` → `processing` → the scripted
//! end over polls, cancel `POST /predictions/{id}/cancel`, and
//! `GET /account`, all behind `Authorization: Bearer <token>` with
//! RFC 7807 error bodies. `Prefer: wait` answers a prediction that is
//! already finished (when the script's `wait_completes` is on), as
//! Replicate's sync mode does. Outputs are served by the stand-in itself
//! under `/files/` (`/files/missing-*` 404s, `/files/big-*` is oversized).
//!
//! Misbehaviour is scripted through [`ReplicateScript`]: faults for the
//! next creates or polls (a status with its body and headers, a slow
//! answer, malformed JSON), and the end of the next prediction
//! (succeeded, failed, canceled, aborted, output removed, an output URL
//! that 404s).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::{Reply, Seen, StandIn};

/// A scripted misbehaviour, used once.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer this status with this JSON body and these headers.
    Status(u16, Value, Vec<(String, String)>),
    /// Answer normally, after this delay.
    Slow(Duration),
    /// Answer 201/200 with a body that is not JSON.
    Malformed,
    /// (Polls only) answer the prediction with this status value.
    StatusValue(String),
}

impl Fault {
    /// Replicate's 429 with `Retry-After: secs`.
    pub fn throttled(secs: u32) -> Fault {
        Fault::Status(
            429,
            json!({"detail": format!("Request was throttled. Expected available in {secs} second."),
                   "status": 429}),
            vec![("Retry-After".into(), secs.to_string())],
        )
    }

    /// An RFC 7807 problem.
    pub fn problem(status: u16, title: &str, detail: &str) -> Fault {
        Fault::Status(
            status,
            json!({"type": "https://replicate.com/docs/reference/http#errors",
                   "title": title, "status": status, "detail": detail}),
            Vec::new(),
        )
    }
}

/// How the next prediction ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// `succeeded` with this output (`{base}` in a string is replaced by
    /// the stand-in's base URL).
    Succeeded(Value),
    /// `failed` with this error.
    Failed(String),
    /// `canceled` (by its deadline, after it started).
    Canceled,
    /// `aborted` (its deadline passed before it started).
    Aborted,
    /// `succeeded`, but the output was removed (`data_removed`).
    DataRemoved,
}

/// The stand-in's script and memory, shared with the test.
#[derive(Debug)]
pub struct ReplicateScript {
    /// Faults for the next creates, in order.
    pub create_faults: VecDeque<Fault>,
    /// Faults for the next polls, in order.
    pub poll_faults: VecDeque<Fault>,
    /// Faults for the next cancels, in order.
    pub cancel_faults: VecDeque<Fault>,
    /// How the next created prediction ends.
    pub next_end: End,
    /// Polls answered `starting` before `processing`.
    pub starting_polls: u32,
    /// Polls answered `processing` before the end.
    pub processing_polls: u32,
    /// Whether a create with `Prefer: wait` answers the finished
    /// prediction.
    pub wait_completes: bool,
    /// Predictions by id.
    pub predictions: BTreeMap<String, Prediction>,
    next_id: u64,
}

/// A prediction the stand-in holds.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// `owner/name` for a model route, else `None`.
    pub model: Option<String>,
    /// The version, for `POST /predictions`.
    pub version: Option<String>,
    /// The create's body.
    pub body: Value,
    /// Polls so far.
    pub polls: u32,
    /// Whether finished at create (sync mode).
    pub finished_at_create: bool,
    /// Set by a cancel.
    pub canceled: bool,
    /// How it ends.
    pub end: End,
}

impl Default for ReplicateScript {
    fn default() -> Self {
        ReplicateScript {
            create_faults: VecDeque::new(),
            poll_faults: VecDeque::new(),
            cancel_faults: VecDeque::new(),
            next_end: End::Succeeded(json!(["{base}/files/out-0.png"])),
            starting_polls: 1,
            processing_polls: 1,
            wait_completes: true,
            predictions: BTreeMap::new(),
            next_id: 0,
        }
    }
}

/// A running Replicate stand-in.
pub struct ReplicateStandIn {
    /// The server (its base URL, the requests it saw).
    pub server: StandIn,
    /// Its script, to change between calls.
    pub script: Arc<Mutex<ReplicateScript>>,
}

impl ReplicateStandIn {
    /// Starts a stand-in accepting `Authorization: Bearer <token>`.
    pub fn start(token: &str) -> ReplicateStandIn {
        let script = Arc::new(Mutex::new(ReplicateScript::default()));
        let shared = script.clone();
        let auth = format!("Bearer {token}");
        let server = StandIn::start(4, move |seen| handle(&shared, &auth, seen));
        ReplicateStandIn { server, script }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> &str {
        self.server.base_url()
    }

    /// Runs `f` on the script.
    pub fn with<R>(&self, f: impl FnOnce(&mut ReplicateScript) -> R) -> R {
        f(&mut self.script.lock().expect("lock"))
    }
}

fn problem(status: u16, title: &str, detail: &str) -> Reply {
    Reply::json(
        status,
        &json!({"type": "https://replicate.com/docs/reference/http#errors",
                "title": title, "status": status, "detail": detail}),
    )
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
        Fault::Malformed => Reply::bytes(201, "application/json", b"{\"id\": \"p".to_vec()),
        Fault::StatusValue(_) => normal(),
    }
}

fn replace_base(value: &Value, base: &str) -> Value {
    match value {
        Value::String(s) => Value::String(s.replace("{base}", base)),
        Value::Array(items) => Value::Array(items.iter().map(|v| replace_base(v, base)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), replace_base(v, base)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The prediction's JSON after `polls` polls (or finished, when `done`).
fn render(base: &str, id: &str, p: &Prediction, script: &ReplicateScript, done: bool) -> Value {
    let status_and_output = if p.canceled {
        ("canceled", Value::Null, Value::Null, false)
    } else if done || p.polls > script.starting_polls + script.processing_polls {
        match &p.end {
            End::Succeeded(output) => ("succeeded", replace_base(output, base), Value::Null, false),
            End::Failed(error) => ("failed", Value::Null, json!(error), false),
            End::Canceled => ("canceled", Value::Null, Value::Null, false),
            End::Aborted => ("aborted", Value::Null, Value::Null, false),
            End::DataRemoved => ("succeeded", Value::Null, Value::Null, true),
        }
    } else if p.polls > script.starting_polls {
        ("processing", Value::Null, Value::Null, false)
    } else {
        ("starting", Value::Null, Value::Null, false)
    };
    let (status, output, error, removed) = status_and_output;
    json!({
        "id": id,
        "model": p.model.clone().unwrap_or_else(|| "owner/versioned".into()),
        "version": p.version.clone().unwrap_or_else(|| "hidden".into()),
        "input": p.body.get("input").cloned().unwrap_or(Value::Null),
        "logs": "",
        "output": output,
        "data_removed": removed,
        "error": error,
        "status": status,
        "created_at": "2026-12-01T10:00:00.000Z",
        "metrics": {"predict_time": 1.25},
        "urls": {
            "get": format!("{base}/predictions/{id}"),
            "cancel": format!("{base}/predictions/{id}/cancel"),
            "stream": format!("{base}/stream/{id}"),
        },
    })
}

fn handle(script: &Mutex<ReplicateScript>, auth: &str, seen: &Seen) -> Reply {
    let host = seen.header("host").unwrap_or("127.0.0.1").to_owned();
    let base = format!("http://{host}");
    let path = seen.url.split('?').next().unwrap_or("");
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if seen.method == "GET" && segments.first() == Some(&"files") {
        return crate::fal::file(segments.get(1).copied().unwrap_or(""));
    }
    if seen.header("authorization") != Some(auth) {
        return problem(
            401,
            "Unauthenticated",
            "You did not pass a valid authentication token",
        );
    }
    let mut script = script.lock().expect("lock");
    match (seen.method.as_str(), segments.as_slice()) {
        ("GET", ["account"]) => Reply::json(
            200,
            &json!({"type": "user", "username": "standin", "name": "Stand In",
                    "github_url": "https://github.com/standin"}),
        ),
        ("POST", ["models", owner, name, "predictions"]) => create(
            &mut script,
            &base,
            seen,
            Some(format!("{owner}/{name}")),
            None,
        ),
        ("POST", ["predictions"]) => {
            let body = seen.json();
            let Some(version) = body.get("version").and_then(Value::as_str) else {
                return problem(422, "Input validation failed", "version is required");
            };
            create(&mut script, &base, seen, None, Some(version.to_owned()))
        }
        ("GET", ["predictions", id]) => {
            let id = (*id).to_owned();
            let fault = script.poll_faults.pop_front();
            let Some(mut p) = script.predictions.get(&id).cloned() else {
                return problem(
                    404,
                    "Not found",
                    "The requested resource could not be found.",
                );
            };
            p.polls += 1;
            script.predictions.insert(id.clone(), p.clone());
            let mut value = render(&base, &id, &p, &script, p.finished_at_create);
            match fault {
                Some(Fault::StatusValue(status)) => {
                    value["status"] = json!(status);
                    Reply::json(200, &value)
                }
                Some(Fault::Malformed) => {
                    Reply::bytes(200, "application/json", b"{\"id\": \"p".to_vec())
                }
                Some(fault) => fault_reply(fault, || Reply::json(200, &value)),
                None => Reply::json(200, &value),
            }
        }
        ("POST", ["predictions", id, "cancel"]) => {
            let id = (*id).to_owned();
            if let Some(fault) = script.cancel_faults.pop_front() {
                return fault_reply(fault, || Reply::json(200, &json!({})));
            }
            let Some(mut p) = script.predictions.get(&id).cloned() else {
                return problem(
                    404,
                    "Not found",
                    "The requested resource could not be found.",
                );
            };
            let finished =
                p.finished_at_create || p.polls > script.starting_polls + script.processing_polls;
            if !finished {
                p.canceled = true;
                script.predictions.insert(id.clone(), p.clone());
            }
            Reply::json(200, &render(&base, &id, &p, &script, p.finished_at_create))
        }
        _ => problem(
            404,
            "Not found",
            "The requested resource could not be found.",
        ),
    }
}

fn create(
    script: &mut ReplicateScript,
    base: &str,
    seen: &Seen,
    model: Option<String>,
    version: Option<String>,
) -> Reply {
    let fault = script.create_faults.pop_front();
    if let Some(fault @ Fault::Status(..)) = fault {
        return fault_reply(fault, || Reply::json(201, &json!({})));
    }
    script.next_id += 1;
    let id = format!("pred{:04}", script.next_id);
    let waits = seen
        .header("prefer")
        .is_some_and(|p| p.trim().starts_with("wait"));
    let prediction = Prediction {
        model,
        version,
        body: seen.json(),
        polls: 0,
        finished_at_create: waits && script.wait_completes,
        canceled: false,
        end: script.next_end.clone(),
    };
    script.predictions.insert(id.clone(), prediction.clone());
    let value = render(
        base,
        &id,
        &prediction,
        script,
        prediction.finished_at_create,
    );
    let normal = || Reply::json(201, &value);
    match fault {
        Some(fault) => fault_reply(fault, normal),
        None => normal(),
    }
}
