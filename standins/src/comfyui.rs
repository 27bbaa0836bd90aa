//! A stand-in ComfyUI server: a queue of prompts (pending -> running ->
//! done, one step per [`ComfyUi::advance`] or, when `auto_advance` is on,
//! per `GET /history/{id}`), and the routes creditgate uses, each also
//! under `/api/` as on real servers: `POST /prompt`, `GET /history/{id}`,
//! `GET /queue`, `POST /queue {"delete"|"clear"}`, `POST /interrupt`,
//! `GET /view` (a small PNG), `GET /system_stats`.
//!
//! A "new" server (the default of [`ComfyUi::start`] with `new = true`)
//! answers v0.3.60, honours a client `prompt_id`, refuses a prompt with
//! `error` as an object `{type, message, details, extra_info}` and
//! interrupts only the named prompt on `POST /interrupt {"prompt_id"}`. An
//! old one answers v0.3.40, assigns its own ids, refuses with `error` as a
//! string and interrupts whatever runs. Each trait is a field of
//! [`Behaviour`]. It misbehaves on demand: one-shot scripted replies per
//! route ([`ComfyUi::script`]), a slow `POST /prompt` that still queues the
//! prompt (`prompt_delay`), failed executions (`fail_with`), refused
//! workflows (`reject_with`), a Bearer-checking proxy (`bearer`), an
//! oversized `/view` (`view_bytes`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::{Reply, Seen, StandIn};

/// A 1x1 transparent PNG, what `/view` serves.
pub const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0A, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE,
    0x42, 0x60, 0x82,
];

/// How the stand-in behaves; change it with [`ComfyUi::set`].
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// `system.comfyui_version` (`None`: left out, as very old servers do).
    pub version: Option<String>,
    /// Refusals carry `error` as an object (newer servers) or a string.
    pub object_errors: bool,
    /// A client `prompt_id` is used as the prompt's id.
    pub honour_prompt_id: bool,
    /// `POST /interrupt {"prompt_id"}` interrupts only that prompt.
    pub interrupt_by_id: bool,
    /// Each `GET /history/{id}` first advances the queue one step.
    pub auto_advance: bool,
    /// Prompts that finish fail with this `execution_error` message.
    pub fail_with: Option<String>,
    /// `POST /prompt` refuses every workflow with this node error message
    /// (on the graph's first node).
    pub reject_with: Option<String>,
    /// Prompts save this file name.
    pub output_filename: String,
    /// ... in this subfolder.
    pub output_subfolder: String,
    /// `POST /prompt` queues the prompt, then answers after this long.
    pub prompt_delay: Duration,
    /// Every request needs `Authorization: Bearer <this>` (a proxy).
    pub bearer: Option<String>,
    /// `/view` serves this many bytes instead of the PNG.
    pub view_bytes: Option<usize>,
}

impl Behaviour {
    /// A new (v0.3.60) or old (v0.3.40) server's behaviour.
    pub fn of(new: bool) -> Behaviour {
        Behaviour {
            version: Some(if new { "0.3.60" } else { "0.3.40" }.to_owned()),
            object_errors: new,
            honour_prompt_id: new,
            interrupt_by_id: new,
            auto_advance: true,
            fail_with: None,
            reject_with: None,
            output_filename: "creditgate_00001_.png".to_owned(),
            output_subfolder: String::new(),
            prompt_delay: Duration::ZERO,
            bearer: None,
            view_bytes: None,
        }
    }
}

/// Where a prompt is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Queued.
    Pending,
    /// Running.
    Running,
    /// Finished, saving this file (name, subfolder).
    Saved(String, String),
    /// Failed with this message.
    Failed(String),
    /// Interrupted.
    Interrupted,
}

/// A prompt the stand-in holds.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// Its id.
    pub id: String,
    /// Its queue number.
    pub number: u64,
    /// The graph as submitted.
    pub graph: Value,
    /// The client id it came with.
    pub client_id: Option<String>,
    /// Where it is.
    pub phase: Phase,
}

#[derive(Debug)]
struct State {
    behaviour: Behaviour,
    prompts: Vec<Prompt>,
    numbers: u64,
    scripted: VecDeque<(String, String, Reply)>,
    interrupts: Vec<Option<String>>,
    deleted: Vec<String>,
}

impl State {
    fn advance(&mut self) {
        let outcome = match &self.behaviour.fail_with {
            Some(message) => Phase::Failed(message.clone()),
            None => Phase::Saved(
                self.behaviour.output_filename.clone(),
                self.behaviour.output_subfolder.clone(),
            ),
        };
        if let Some(running) = self.prompts.iter_mut().find(|p| p.phase == Phase::Running) {
            running.phase = outcome;
        } else if let Some(pending) = self.prompts.iter_mut().find(|p| p.phase == Phase::Pending) {
            pending.phase = Phase::Running;
        }
    }

    fn add(
        &mut self,
        id: Option<String>,
        graph: Value,
        client_id: Option<String>,
    ) -> (String, u64) {
        self.numbers += 1;
        let number = self.numbers;
        let id = id.unwrap_or_else(|| format!("{number:08x}-0000-4000-8000-{number:012x}"));
        self.prompts.push(Prompt {
            id: id.clone(),
            number,
            graph,
            client_id,
            phase: Phase::Pending,
        });
        (id, number)
    }
}

/// A running ComfyUI stand-in.
pub struct ComfyUi {
    server: StandIn,
    state: Arc<Mutex<State>>,
}

impl ComfyUi {
    /// Starts a new-style (`new`) or old-style server.
    pub fn start(new: bool) -> ComfyUi {
        let state = Arc::new(Mutex::new(State {
            behaviour: Behaviour::of(new),
            prompts: Vec::new(),
            numbers: 0,
            scripted: VecDeque::new(),
            interrupts: Vec::new(),
            deleted: Vec::new(),
        }));
        let shared = state.clone();
        let server = StandIn::start(4, move |seen| handle(&shared, seen));
        ComfyUi { server, state }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The harness (base URL, requests seen).
    pub fn server(&self) -> &StandIn {
        &self.server
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> &str {
        self.server.base_url()
    }

    /// Changes the behaviour.
    pub fn set(&self, change: impl FnOnce(&mut Behaviour)) {
        change(&mut self.state().behaviour);
    }

    /// Answers the next `method` request whose path (without `/api`)
    /// starts with `prefix` with `reply`, once, instead of the route.
    pub fn script(&self, method: &str, prefix: &str, reply: Reply) {
        self.state()
            .scripted
            .push_back((method.to_owned(), prefix.to_owned(), reply));
    }

    /// One step of the queue: the running prompt finishes, or else the
    /// first pending one starts.
    pub fn advance(&self) {
        self.state().advance();
    }

    /// Queues someone else's prompt (running if `running`), returning its id.
    pub fn add_foreign(&self, running: bool) -> String {
        let mut state = self.state();
        let (id, _) = state.add(None, json!({}), Some("someone-else".to_owned()));
        if running {
            if let Some(p) = state.prompts.iter_mut().find(|p| p.id == id) {
                p.phase = Phase::Running;
            }
        }
        id
    }

    /// Removes a prompt from the queue and history, as an operator would.
    pub fn remove(&self, id: &str) {
        self.state().prompts.retain(|p| p.id != id);
    }

    /// Every prompt held, in submission order.
    pub fn prompts(&self) -> Vec<Prompt> {
        self.state().prompts.clone()
    }

    /// Every `POST /interrupt`, with the `prompt_id` it named, if any.
    pub fn interrupts(&self) -> Vec<Option<String>> {
        self.state().interrupts.clone()
    }

    /// Every id `POST /queue {"delete"}` removed.
    pub fn deleted(&self) -> Vec<String> {
        self.state().deleted.clone()
    }
}

/// Decodes `%XX` and `+` in a query value.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 3 <= bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(url: &str, key: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k) == key).then(|| decode(v))
    })
}

fn refusal(object: bool, kind: &str, message: &str, node_errors: Value) -> Reply {
    let error = if object {
        json!({"type": kind, "message": message, "details": "", "extra_info": {}})
    } else {
        json!(message)
    };
    Reply::json(400, &json!({"error": error, "node_errors": node_errors}))
}

fn history_entry(prompt: &Prompt) -> Option<Value> {
    let (outputs, status) = match &prompt.phase {
        Phase::Pending | Phase::Running => return None,
        Phase::Saved(filename, subfolder) => (
            json!({"9": {"images": [{"filename": filename, "subfolder": subfolder, "type": "output"}]}}),
            json!({"status_str": "success", "completed": true, "messages": [
                ["execution_start", {"prompt_id": prompt.id}],
                ["execution_success", {"prompt_id": prompt.id}]]}),
        ),
        Phase::Failed(message) => (
            json!({}),
            json!({"status_str": "error", "completed": false, "messages": [
                ["execution_start", {"prompt_id": prompt.id}],
                ["execution_error", {"prompt_id": prompt.id, "node_id": "3",
                    "node_type": "KSampler", "exception_message": message,
                    "exception_type": "RuntimeError", "traceback": ["line 1"]}]]}),
        ),
        Phase::Interrupted => (
            json!({}),
            json!({"status_str": "error", "completed": false, "messages": [
                ["execution_start", {"prompt_id": prompt.id}],
                ["execution_interrupted", {"prompt_id": prompt.id, "node_id": "3"}]]}),
        ),
    };
    Some(json!({
        "prompt": [prompt.number, prompt.id, prompt.graph, {"client_id": prompt.client_id}, ["9"]],
        "outputs": outputs,
        "status": status,
        "meta": {}
    }))
}

fn handle(state: &Mutex<State>, seen: &Seen) -> Reply {
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    let full = seen.url.strip_prefix("/api").unwrap_or(&seen.url);
    let path = full.split('?').next().unwrap_or("");
    if let Some(at) = state
        .scripted
        .iter()
        .position(|(method, prefix, _)| *method == seen.method && path.starts_with(prefix.as_str()))
    {
        if let Some((_, _, reply)) = state.scripted.remove(at) {
            return reply;
        }
    }
    let behaviour = state.behaviour.clone();
    if let Some(token) = &behaviour.bearer {
        if seen.header("authorization") != Some(&format!("Bearer {token}")) {
            return Reply::json(401, &json!({"error": "unauthorized"}));
        }
    }
    match (seen.method.as_str(), path) {
        ("GET", "/system_stats") => {
            let mut system = json!({"os": "posix", "ram_total": 68_719_476_736u64,
                "ram_free": 34_359_738_368u64, "python_version": "3.12.3",
                "pytorch_version": "2.5.1+cu124", "embedded_python": false, "argv": ["main.py"]});
            if let Some(version) = &behaviour.version {
                system["comfyui_version"] = json!(version);
            }
            Reply::json(
                200,
                &json!({"system": system, "devices": [{
                "name": "cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync", "type": "cuda",
                "index": 0, "vram_total": 25_757_220_864u64, "vram_free": 21_474_836_480u64,
                "torch_vram_total": 0, "torch_vram_free": 0}]}),
            )
        }
        ("POST", "/prompt") => {
            let body = seen.json();
            let Some(graph) = body.get("prompt").filter(|g| g.is_object()).cloned() else {
                return refusal(behaviour.object_errors, "no_prompt", "no prompt", json!([]));
            };
            if let Some(message) = &behaviour.reject_with {
                let node = graph
                    .as_object()
                    .and_then(|g| g.iter().next())
                    .map(|(id, node)| (id.clone(), node.get("class_type").cloned()));
                let (id, class) = node.unwrap_or_default();
                let node_errors = json!({id: {"errors": [{"type": "value_not_in_list",
                    "message": message, "details": "ckpt_name: 'missing.safetensors' not in []",
                    "extra_info": {"input_name": "ckpt_name"}}],
                    "dependent_outputs": ["9"], "class_type": class}});
                return refusal(
                    behaviour.object_errors,
                    "prompt_outputs_failed_validation",
                    "Prompt outputs failed validation",
                    node_errors,
                );
            }
            let client_id = body
                .get("client_id")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let theirs = body
                .get("prompt_id")
                .and_then(Value::as_str)
                .filter(|_| behaviour.honour_prompt_id)
                .map(str::to_owned);
            let (id, number) = state.add(theirs, graph, client_id);
            Reply::json(
                200,
                &json!({"prompt_id": id, "number": number, "node_errors": {}}),
            )
            .after(behaviour.prompt_delay)
        }
        ("GET", "/history") => {
            let mut all = serde_json::Map::new();
            for prompt in &state.prompts {
                if let Some(entry) = history_entry(prompt) {
                    all.insert(prompt.id.clone(), entry);
                }
            }
            Reply::json(200, &Value::Object(all))
        }
        ("GET", history) if history.starts_with("/history/") => {
            let id = decode(&history["/history/".len()..]);
            if behaviour.auto_advance {
                state.advance();
            }
            let entry = state
                .prompts
                .iter()
                .find(|p| p.id == id)
                .and_then(history_entry);
            Reply::json(200, &entry.map_or_else(|| json!({}), |e| json!({id: e})))
        }
        ("GET", "/queue") => {
            let item =
                |p: &Prompt| json!([p.number, p.id, p.graph, {"client_id": p.client_id}, ["9"]]);
            let of = |phase: Phase| -> Vec<Value> {
                state
                    .prompts
                    .iter()
                    .filter(|p| p.phase == phase)
                    .map(item)
                    .collect()
            };
            Reply::json(
                200,
                &json!({"queue_running": of(Phase::Running), "queue_pending": of(Phase::Pending)}),
            )
        }
        ("POST", "/queue") => {
            let body = seen.json();
            if body.get("clear").and_then(Value::as_bool) == Some(true) {
                state.prompts.retain(|p| p.phase != Phase::Pending);
            }
            for id in body
                .get("delete")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(id) = id.as_str() else { continue };
                let before = state.prompts.len();
                state
                    .prompts
                    .retain(|p| !(p.id == id && p.phase == Phase::Pending));
                if state.prompts.len() < before {
                    state.deleted.push(id.to_owned());
                }
            }
            Reply::bytes(200, "text/plain", Vec::new())
        }
        ("POST", "/interrupt") => {
            let named = seen
                .json()
                .get("prompt_id")
                .and_then(Value::as_str)
                .map(str::to_owned);
            state.interrupts.push(named.clone());
            let only = named.filter(|_| behaviour.interrupt_by_id);
            if let Some(running) = state
                .prompts
                .iter_mut()
                .find(|p| p.phase == Phase::Running && only.as_ref().is_none_or(|id| *id == p.id))
            {
                running.phase = Phase::Interrupted;
            }
            Reply::bytes(200, "text/plain", Vec::new())
        }
        ("GET", "/view") => {
            let filename = query(full, "filename").unwrap_or_default();
            let subfolder = query(full, "subfolder").unwrap_or_default();
            let kind = query(full, "type").unwrap_or_default();
            let saved = Phase::Saved(filename, subfolder);
            let known = kind == "output" && state.prompts.iter().any(|p| p.phase == saved);
            if !known {
                return Reply::bytes(404, "text/plain", b"404: Not Found".to_vec());
            }
            match behaviour.view_bytes {
                Some(bytes) => Reply::bytes(200, "image/png", vec![0u8; bytes]),
                None => Reply::bytes(200, "image/png", PNG.to_vec()),
            }
        }
        _ => Reply::bytes(404, "text/plain", b"404: Not Found".to_vec()),
    }
}
