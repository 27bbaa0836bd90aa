//! Black-box tests of issue 13's real upstreams, through the real binary:
//! for every adapter kind (OpenAI-compatible, kie.ai, fal, Replicate,
//! ComfyUI) a `creditgate serve` is pointed at that upstream's local
//! stand-in by a providers file, a small catalog (derived from the shipped
//! one) routes one model to it, and an agent drives `/v1/generate` with the
//! first-run demo key. Shown: success with outputs kept on our server (they
//! are still served after the upstream's own URL answers 404), upstream
//! failure, retry after a 429 with `Retry-After`, a submission that times
//! out (reconciled where the upstream can be asked by our id, else
//! `submission_uncertain`, never submitted twice), cancel (at once, hold
//! released, the upstream cancel sent by a worker where the API has one),
//! webhook-first and poll-first (fal, Replicate, kie.ai), and `kill -9`
//! between an upstream's acceptance and our record. `ledger verify` passes
//! after every test.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use creditgate_standins::comfyui::ComfyUi;
use creditgate_standins::fal::{FalStandIn, Fault as FalFault, Outcome as FalOutcome};
use creditgate_standins::kie::{KieStandIn, Trouble as KieTrouble};
use creditgate_standins::openai::{OpenAiStandIn, Trouble as OpenAiTrouble};
use creditgate_standins::replicate::{End, Fault as ReplicateFault, ReplicateStandIn};
use creditgate_standins::{Reply, StandIn};
use creditgate_tests::{raw_http, HttpResponse, Sandbox, Server};
use serde_json::{json, Value};

/// The shipped catalog; each test routes one of its models to a stand-in.
const SHIPPED_CATALOG: &str = include_str!("../../fixtures/catalogs/rynjer.json");
/// The shipped ComfyUI workflow templates (`sdxl-basic`).
const WORKFLOWS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/workflows");
/// What the first-run demo account starts with.
const DEMO_CREDITS: i64 = 200;
/// Every instance's call timeout: short, so a timed-out submit is quick.
const TIMEOUT_MS: i64 = 1_500;
/// A stand-in answer slower than [`TIMEOUT_MS`].
const SLOWER_THAN_TIMEOUT: Duration = Duration::from_millis(2_500);
/// Polls every 50 ms (backing off from there): jobs finish by polling.
const POLL_FAST: &str = "50";
/// The first poll a minute after submission: only a webhook (or nothing)
/// can finish a job within a test.
const POLL_NEVER: &str = "60000";
/// The longest a test waits for a job (or a stand-in) to get somewhere.
const WAIT_MAX: Duration = Duration::from_secs(10);
/// An agent's cancel answers within this, whatever the upstream does
/// (shorter than [`TIMEOUT_MS`]: it never waits for an upstream call).
const CANCEL_ANSWER_MAX: Duration = Duration::from_millis(1_000);

const OPENAI_KEY: &str = "sk-test-openai-0123456789";
const KIE_KEY: &str = "kie-test-key-0123456789";
const FAL_KEY: &str = "fal-test-id:fal-test-secret-0123";
const REPLICATE_TOKEN: &str = "r8_test_token_0123456789";
/// kie.ai's webhook HMAC key.
const KIE_HOOK_SECRET: &str = "kie-hook-secret-0123456789";
/// Replicate's `whsec_` signing secret (base64 of the key bytes).
const REPLICATE_HOOK_SECRET: &str = "whsec_cmVwbGljYXRlLWhvb2stc2VjcmV0LWJ5dGVz";
/// Every credential, none of which may ever reach an agent.
const SECRETS: [&str; 6] = [
    OPENAI_KEY,
    KIE_KEY,
    FAL_KEY,
    REPLICATE_TOKEN,
    KIE_HOOK_SECRET,
    REPLICATE_HOOK_SECRET,
];

// ---- the rig: a sandbox, a server routed to a stand-in, the demo key ----

/// One catalog model routed to a provider instance.
#[derive(Clone, Copy)]
struct Route {
    /// The provider instance (and the providers file's key).
    instance: &'static str,
    /// The shipped catalog's model the agent asks for.
    model: &'static str,
    /// What the upstream calls it.
    upstream: &'static str,
    /// Its price for one image, in credits (the shipped catalog's).
    price: i64,
}

const OPENAI: Route = Route {
    instance: "oai",
    model: "gpt4o_image",
    upstream: "dall-e-3",
    price: 10,
};
const KIE: Route = Route {
    instance: "kie",
    model: "nano-banana-pro",
    upstream: "nano-banana-pro",
    price: 20,
};
const FAL: Route = Route {
    instance: "fal",
    model: "z-image",
    upstream: "fal-ai/flux/dev",
    price: 20,
};
const REPLICATE: Route = Route {
    instance: "replicate",
    model: "qwen/text-to-image",
    upstream: "black-forest-labs/flux-schnell",
    price: 15,
};
const COMFYUI: Route = Route {
    instance: "comfy",
    model: "google/nano-banana",
    upstream: "sdxl-basic",
    price: 8,
};

/// A sandbox with a server whose catalog routes `route.model` to one
/// provider instance, and the demo key (200 credits).
struct Rig {
    sb: Sandbox,
    server: Option<Server>,
    key: String,
    route: Route,
    /// `serve`'s arguments after the first start (no `--catalog`: the
    /// database keeps it).
    restart_args: Vec<String>,
    env: Vec<(String, String)>,
}

/// The shipped catalog cut down to `route`'s model, routed to its instance
/// under a price version of its own.
fn catalog_for(route: Route) -> String {
    let mut catalog: Value = serde_json::from_str(SHIPPED_CATALOG).expect("shipped catalog");
    catalog["price_version"] = json!(format!("2026-12-01-upstreams-{}", route.instance));
    let models: Vec<Value> = catalog["models"]
        .as_array()
        .expect("models")
        .iter()
        .filter(|m| m["model"] == route.model)
        .cloned()
        .map(|mut m| {
            m["provider"] = json!(route.instance);
            m["upstream_model"] = json!(route.upstream);
            m
        })
        .collect();
    assert_eq!(models.len(), 1, "{} is in the shipped catalog", route.model);
    catalog["models"] = Value::Array(models);
    catalog.to_string()
}

impl Rig {
    /// Starts `serve` with a providers file holding `config` as
    /// `route.instance`, the catalog of [`catalog_for`], `poll_ms` and the
    /// environment `env` (credentials, webhook secrets).
    fn start(route: Route, config: Value, poll_ms: &str, env: &[(&str, &str)]) -> Rig {
        Rig::start_with(route, config, &["--poll-interval-ms", poll_ms], env)
    }

    /// [`Rig::start`] with `serve` arguments `extra` (`--poll-interval-ms`
    /// among them).
    fn start_with(route: Route, config: Value, extra: &[&str], env: &[(&str, &str)]) -> Rig {
        let sb = Sandbox::new(env!("CARGO_BIN_EXE_creditgate"));
        let providers = sb.write(
            "providers.json",
            &json!({"providers": {route.instance: config}}).to_string(),
        );
        let catalog = sb.write("catalog.json", &catalog_for(route));
        let providers = providers.to_str().expect("utf-8 path").to_owned();
        let restart_args: Vec<String> = ["--providers", &providers, "--workers", "2"]
            .iter()
            .chain(extra)
            .map(|s| (*s).to_owned())
            .collect();
        let mut args: Vec<&str> = restart_args.iter().map(String::as_str).collect();
        let catalog = catalog.to_str().expect("utf-8 path");
        args.extend(["--catalog", catalog]);
        let server = sb.serve_env(&args, env);
        let key = server.demo_key.clone().expect("the first run prints a key");
        Rig {
            sb,
            server: Some(server),
            key,
            route,
            restart_args,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("a running server")
    }

    /// `POST /v1/generate` of `route.model`; the job's task id.
    fn generate(&self, request_id: &str, prompt: &str) -> String {
        let answer = self.server().post(
            "/v1/generate",
            &self.key,
            &json!({"request_id": request_id, "model": self.route.model, "prompt": prompt}),
        );
        let body = answer.json();
        assert_eq!(answer.status, 200, "{body}");
        assert_eq!(body["data"]["credits"], json!(self.route.price), "{body}");
        body["data"]["task_id"]
            .as_str()
            .expect("a task id")
            .to_owned()
    }

    /// Generates `request_id` and waits until it is finished; its view.
    fn run_to_end(&self, request_id: &str) -> Value {
        self.generate(request_id, "a lighthouse at dawn");
        self.wait_terminal(request_id)
    }

    /// Runs `request_id` to its end through one throttled submission: it
    /// succeeds, charged once, no sooner than the 1 s `Retry-After` said.
    fn assert_retry_after_honoured(&self, request_id: &str) {
        let asked = Instant::now();
        let done = self.run_to_end(request_id);
        self.assert_charged_once(&done);
        assert!(
            asked.elapsed() >= Duration::from_millis(950),
            "Retry-After honoured"
        );
    }

    /// The agent's view of a job.
    fn job(&self, request_id: &str) -> Value {
        let answer = self
            .server()
            .get(&format!("/v1/generate/{request_id}"), &self.key);
        assert_eq!(answer.status, 200, "{:?}", answer.json());
        answer.json()["data"].clone()
    }

    /// Polls the agent's view until the job is terminal (bounded).
    fn wait_terminal(&self, request_id: &str) -> Value {
        let mut last = Value::Null;
        let done = wait_for(WAIT_MAX, || {
            last = self.job(request_id);
            ["succeeded", "failed", "canceled", "expired"]
                .contains(&last["status"].as_str().unwrap_or(""))
        });
        assert!(
            done,
            "{request_id} is not finished after {WAIT_MAX:?}: {last}"
        );
        last
    }

    /// Polls the agent's view until the job is running (submitted).
    fn wait_running(&self, request_id: &str) {
        let mut last = Value::Null;
        let running = wait_for(WAIT_MAX, || {
            last = self.job(request_id);
            last["status"] == "running"
        });
        assert!(running, "{request_id} never ran: {last}");
    }

    /// `(available, pending)` credits of the demo account.
    fn balance(&self) -> (i64, i64) {
        let body = self.server().get("/v1/credits/balance", &self.key).json();
        let number = |field: &str| {
            body["data"][field]
                .as_i64()
                .unwrap_or_else(|| panic!("integer {field}: {body}"))
        };
        (number("available"), number("pending"))
    }

    /// The operator's view of a job (`creditgate jobs show`).
    fn operator_view(&self, task_id: &str) -> Value {
        self.sb.ok(&["jobs", "show", task_id])
    }

    /// The job succeeded, charged its price once, and moved exactly that.
    fn assert_charged_once(&self, done: &Value) {
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(done["charged"], json!(self.route.price), "{done}");
        assert_eq!(self.balance(), (DEMO_CREDITS - self.route.price, 0));
    }

    /// The job failed (or was canceled) without a charge, hold released.
    fn assert_unpaid(&self, done: &Value, status: &str) {
        assert_eq!(done["status"], status, "{done}");
        assert_eq!(done["charged"], json!(0), "{done}");
        assert_eq!(self.balance(), (DEMO_CREDITS, 0));
        assert_no_secret(done);
        assert_no_secret(&self.operator_view(done["task_id"].as_str().expect("task id")));
    }

    /// The job failed with `code`, unpaid.
    fn assert_failed(&self, done: &Value, code: &str) {
        self.assert_unpaid(done, "failed");
        assert_eq!(done["error"]["code"], code, "{done}");
    }

    /// Cancels the job: the answer comes at once and the hold is released
    /// by then.
    fn cancel_at_once(&self, request_id: &str) -> Value {
        let asked = Instant::now();
        let answer = self.server().request(
            "POST",
            &format!("/v1/generate/{request_id}/cancel"),
            Some(&self.key),
            Some(""),
        );
        let took = asked.elapsed();
        let body = answer.json();
        assert_eq!(answer.status, 200, "{body}");
        assert_eq!(body["data"]["status"], "canceled", "{body}");
        assert!(
            took < CANCEL_ANSWER_MAX,
            "the cancel took {took:?}: it must not wait for the upstream"
        );
        assert_eq!(self.balance(), (DEMO_CREDITS, 0), "the hold is released");
        body["data"].clone()
    }

    /// Every output is a link on our server serving `bytes` as `mime`;
    /// the operator's view names the upstream URL each came from (returned).
    fn assert_outputs_kept(&self, done: &Value, mime: &str, bytes: &[u8]) -> Vec<String> {
        let outputs = done["outputs"].as_array().expect("outputs");
        assert!(!outputs.is_empty(), "{done}");
        for output in outputs {
            self.assert_served(output, mime, bytes);
        }
        let task_id = done["task_id"].as_str().expect("task id");
        let view = self.operator_view(task_id);
        let kept = view["kept_files"].as_array().expect("kept files");
        assert_eq!(kept.len(), outputs.len(), "{view}");
        kept.iter()
            .map(|file| {
                file["upstream_url"]
                    .as_str()
                    .expect("upstream url")
                    .to_owned()
            })
            .collect()
    }

    fn assert_served(&self, output: &Value, mime: &str, bytes: &[u8]) {
        let url = output["url"].as_str().expect("url");
        let base = format!("{}/v1/files/", self.server().base());
        assert!(url.starts_with(&base), "{url} is not on our server");
        let path = url.strip_prefix(&self.server().base()).expect("ours");
        let file = self.server().request("GET", path, None, None);
        assert_eq!(file.status, 200, "{url}");
        assert_eq!(file.header("content-type"), Some(mime), "{url}");
        assert_eq!(file.body, bytes, "{url} serves the upstream's bytes");
    }

    /// Kills the server with SIGKILL (no shutdown of any kind).
    fn kill_9(&mut self) {
        let server = self.server.take().expect("running");
        let status = std::process::Command::new("kill")
            .args(["-9", &server.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        drop(server); // reaps it
    }

    /// Starts `serve` again on the same database and providers.
    fn restart(&mut self) {
        let args: Vec<&str> = self.restart_args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let server = self.sb.serve_env(&args, &env);
        assert!(server.demo_key.is_none(), "not a first run");
        self.server = Some(server);
    }

    /// Stops the server and checks what it leaves: the ledger verifies, and
    /// no credential is in its log or its database files.
    fn finish(mut self) {
        let log = self.server.as_ref().map(Server::stderr).unwrap_or_default();
        drop(self.server.take());
        let run = self.sb.run(&["ledger", "verify"]);
        assert_eq!(run.code, 0, "ledger verify: {}{}", run.stdout, run.stderr);
        for secret in SECRETS {
            assert!(!log.contains(secret), "a credential in the log: {log}");
        }
        let db = self.sb.db();
        for path in [db.clone(), db.with_extension("db-wal")] {
            let bytes = std::fs::read(&path).unwrap_or_default();
            for secret in SECRETS {
                let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
                assert!(!found, "a credential in {}", path.display());
            }
        }
    }
}

/// Calls `done` every 20 ms until it is true or `within` passed; whether
/// it became true.
fn wait_for(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_no_secret(value: &Value) {
    let text = value.to_string();
    for secret in SECRETS {
        assert!(!text.contains(secret), "a credential leaked: {text}");
    }
}

/// `GET` of an absolute `http://host:port/path` URL (a stand-in's).
fn get_url(url: &str) -> HttpResponse {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (addr, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    raw_http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// The stand-in expires its outputs: every upstream URL of the job now
/// answers 404, and our links still serve the kept bytes.
fn expire_upstream(
    rig: &Rig,
    stand_in: &StandIn,
    prefix: &str,
    done: &Value,
    upstream: &[String],
    mime: &str,
    bytes: &[u8],
) {
    stand_in.expire(prefix);
    for url in upstream {
        assert!(url.starts_with(stand_in.base_url()), "{url}");
        assert_eq!(get_url(url).status, 404, "{url} expired upstream");
    }
    for output in done["outputs"].as_array().expect("outputs") {
        rig.assert_served(output, mime, bytes);
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Posts an upstream callback to our webhook route for `instance`.
fn post_webhook(
    server: &Server,
    instance: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> HttpResponse {
    let mut head = format!(
        "POST /v1/providers/{instance}/webhook HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        server.addr,
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    raw_http(&server.addr, &request)
}

/// A verified delivery: 200, applied or not as `applied` says.
fn assert_delivered(answer: &HttpResponse, applied: bool) {
    let body = answer.json();
    assert_eq!(answer.status, 200, "{body}");
    assert_eq!(body["received"], json!(true), "{body}");
    assert_eq!(body["applied"], json!(applied), "{body}");
}

/// A forged delivery: 401 `webhook_unverified`, and the job is exactly as
/// it was (not even made due).
fn assert_forged_changes_nothing(rig: &Rig, task_id: &str, answer: &HttpResponse, before: &Value) {
    let body = answer.json();
    assert_eq!(answer.status, 401, "{body}");
    assert_eq!(body["data"]["error"], "webhook_unverified", "{body}");
    assert_eq!(
        &rig.operator_view(task_id),
        before,
        "a forged callback changed the job"
    );
}

/// A late or repeated delivery of a finished job: harmless (the job, its
/// charge and the balance are as they were).
fn assert_harmless(rig: &Rig, task_id: &str, answer: &HttpResponse, before: &Value, applied: bool) {
    assert_delivered(answer, applied);
    assert_eq!(
        &rig.operator_view(task_id),
        before,
        "the callback changed a finished job"
    );
    assert_eq!(rig.balance(), (DEMO_CREDITS - rig.route.price, 0));
}

// ---- per-upstream configuration ----------------------------------------

/// The success scenario every adapter runs: the job succeeds, is charged
/// once, its outputs are kept on our server, and they keep serving the same
/// bytes after the upstream's own URLs (under `expired_prefix`) answer 404.
/// Returns the upstream URLs the operator sees.
fn assert_success_outlives_upstream(
    rig: &Rig,
    upstream_server: &StandIn,
    expired_prefix: &str,
    request_id: &str,
    png: &[u8],
) -> Vec<String> {
    rig.generate(request_id, "a lighthouse at dawn");
    let done = rig.wait_terminal(request_id);
    rig.assert_charged_once(&done);
    let upstream = rig.assert_outputs_kept(&done, "image/png", png);
    expire_upstream(
        rig,
        upstream_server,
        expired_prefix,
        &done,
        &upstream,
        "image/png",
        png,
    );
    upstream
}

/// A signed callback, and a forgery of it.
struct Callback<'a> {
    instance: &'a str,
    headers: &'a [(&'a str, String)],
    forged_headers: &'a [(&'a str, String)],
    body: &'a [u8],
}

/// The webhook-first scenario: the forgery changes nothing (the operator's
/// `view` of job `task` stays as it was); the signed callback finishes the
/// job long before a poll could, charged once with its outputs kept; and
/// delivering it again is harmless.
fn assert_callback_finishes(
    rig: &Rig,
    task: &str,
    request_id: &str,
    view: &Value,
    callback: &Callback<'_>,
    png: &[u8],
) {
    let forged = post_webhook(
        rig.server(),
        callback.instance,
        callback.forged_headers,
        callback.body,
    );
    assert_forged_changes_nothing(rig, task, &forged, view);
    let delivered = Instant::now();
    assert_delivered(
        &post_webhook(
            rig.server(),
            callback.instance,
            callback.headers,
            callback.body,
        ),
        true,
    );
    let done = rig.wait_terminal(request_id);
    assert!(
        delivered.elapsed() < WAIT_MAX,
        "finished by the callback, not a poll"
    );
    rig.assert_charged_once(&done);
    rig.assert_outputs_kept(&done, "image/png", png);
    let finished = rig.operator_view(task);
    let again = post_webhook(
        rig.server(),
        callback.instance,
        callback.headers,
        callback.body,
    );
    assert_harmless(rig, task, &again, &finished, false);
}

fn openai_config(stand_in: &OpenAiStandIn) -> Value {
    json!({"kind": "openai", "base_url": stand_in.api_url(), "credential_env": "CG_TEST_OPENAI_KEY",
           "timeout_ms": TIMEOUT_MS, "connect_timeout_ms": 1000})
}

fn start_openai(stand_in: &OpenAiStandIn, poll_ms: &str) -> Rig {
    Rig::start(
        OPENAI,
        openai_config(stand_in),
        poll_ms,
        &[("CG_TEST_OPENAI_KEY", OPENAI_KEY)],
    )
}

fn openai_submits(stand_in: &OpenAiStandIn) -> usize {
    stand_in.server.count("POST", "/v1/images/generations")
}

fn kie_config(stand_in: &KieStandIn, webhooks: bool, timeout_ms: i64) -> Value {
    let mut config = json!({"kind": "kie", "base_url": stand_in.base_url(),
        "credential_env": "CG_TEST_KIE_KEY", "timeout_ms": timeout_ms, "connect_timeout_ms": 1000});
    if webhooks {
        config["webhook"] = json!({"secret_env": "CG_TEST_KIE_HOOK"});
    }
    config
}

fn start_kie(stand_in: &KieStandIn, poll_ms: &str, webhooks: bool) -> Rig {
    Rig::start(
        KIE,
        kie_config(stand_in, webhooks, TIMEOUT_MS),
        poll_ms,
        &[
            ("CG_TEST_KIE_KEY", KIE_KEY),
            ("CG_TEST_KIE_HOOK", KIE_HOOK_SECRET),
        ],
    )
}

const KIE_CREATE: &str = "/api/v1/jobs/createTask";
const KIE_RECORD: &str = "/api/v1/jobs/recordInfo";

fn kie_submits(stand_in: &KieStandIn) -> usize {
    stand_in.server.count("POST", KIE_CREATE)
}

/// fal's signing key for these tests, and the JWKS that publishes it.
fn fal_signing_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[7; 32])
}

/// A stand-in of fal's JWKS endpoint publishing [`fal_signing_key`].
fn fal_jwks() -> StandIn {
    use base64::Engine as _;
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(fal_signing_key().verifying_key().to_bytes());
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "test", "use": "sig",
                                "alg": "EdDSA", "x": x}]});
    StandIn::start(1, move |_| Reply::json(200, &jwks))
}

fn fal_config(stand_in: &FalStandIn, jwks: Option<&StandIn>) -> Value {
    let mut config = json!({"kind": "fal", "base_url": stand_in.base_url(),
        "credential_env": "CG_TEST_FAL_KEY", "timeout_ms": TIMEOUT_MS, "connect_timeout_ms": 1000});
    if let Some(jwks) = jwks {
        config["webhook"] =
            json!({"jwks_url": format!("{}/.well-known/jwks.json", jwks.base_url())});
    }
    config
}

fn start_fal(stand_in: &FalStandIn, poll_ms: &str, jwks: Option<&StandIn>) -> Rig {
    Rig::start(
        FAL,
        fal_config(stand_in, jwks),
        poll_ms,
        &[("CG_TEST_FAL_KEY", FAL_KEY)],
    )
}

fn fal_submits(stand_in: &FalStandIn) -> usize {
    stand_in.server.count("POST", "/fal-ai/flux")
}

fn replicate_config(stand_in: &ReplicateStandIn, webhooks: bool) -> Value {
    let mut config = json!({"kind": "replicate", "base_url": stand_in.base_url(),
        "credential_env": "CG_TEST_REPLICATE_TOKEN", "timeout_ms": TIMEOUT_MS,
        "connect_timeout_ms": 1000});
    if webhooks {
        config["webhook"] = json!({"secret_env": "CG_TEST_REPLICATE_HOOK"});
    }
    config
}

fn start_replicate(stand_in: &ReplicateStandIn, poll_ms: &str, webhooks: bool) -> Rig {
    Rig::start(
        REPLICATE,
        replicate_config(stand_in, webhooks),
        poll_ms,
        &[
            ("CG_TEST_REPLICATE_TOKEN", REPLICATE_TOKEN),
            ("CG_TEST_REPLICATE_HOOK", REPLICATE_HOOK_SECRET),
        ],
    )
}

fn replicate_submits(stand_in: &ReplicateStandIn) -> usize {
    stand_in.server.count("POST", "/models/")
}

fn comfyui_config(stand_in: &ComfyUi, timeout_ms: i64) -> Value {
    json!({"kind": "comfyui", "base_url": stand_in.base_url(), "workflows_dir": WORKFLOWS_DIR,
           "concurrency": 2, "timeout_ms": timeout_ms, "connect_timeout_ms": 1000})
}

fn start_comfyui(stand_in: &ComfyUi, poll_ms: &str) -> Rig {
    Rig::start(COMFYUI, comfyui_config(stand_in, TIMEOUT_MS), poll_ms, &[])
}

fn comfyui_submits(stand_in: &ComfyUi) -> usize {
    stand_in.server().count("POST", "/prompt")
}

// ---- OpenAI-compatible ---------------------------------------------------

#[test]
fn openai_success_keeps_the_output_past_its_upstream_url() {
    let stand_in = OpenAiStandIn::start(Some(OPENAI_KEY));
    let rig = start_openai(&stand_in, POLL_FAST);
    let png = creditgate_standins::openai::PNG;
    assert_success_outlives_upstream(&rig, &stand_in.server, "/files/", "oai-ok", png);
    assert_eq!(openai_submits(&stand_in), 1);
    rig.finish();
}

#[test]
fn openai_failure_releases_the_hold() {
    let stand_in = OpenAiStandIn::start(Some(OPENAI_KEY));
    let rig = start_openai(&stand_in, POLL_FAST);
    stand_in.push(OpenAiTrouble::ContentPolicy);
    let done = rig.run_to_end("oai-fail");
    rig.assert_failed(&done, "content_rejected");
    // An upstream whose refusal repeats the key it was sent: neither the
    // agent nor the operator ever sees it.
    stand_in.push(OpenAiTrouble::EchoAuth(400));
    let task = rig.generate("oai-echo", "a lighthouse at dawn");
    let done = rig.wait_terminal("oai-echo");
    rig.assert_failed(&done, "upstream_rejected");
    assert_no_secret(&rig.operator_view(&task));
    assert_eq!(openai_submits(&stand_in), 2);
    rig.finish();
}

#[test]
fn openai_retries_after_429_honouring_retry_after() {
    let stand_in = OpenAiStandIn::start(Some(OPENAI_KEY));
    let rig = start_openai(&stand_in, POLL_FAST);
    stand_in.push(OpenAiTrouble::RateLimited {
        retry_after_secs: 1,
    });
    rig.assert_retry_after_honoured("oai-429");
    assert_eq!(openai_submits(&stand_in), 2, "one 429, one accepted");
    rig.finish();
}

#[test]
fn openai_timeout_fails_as_submission_uncertain_submitted_once() {
    let stand_in = OpenAiStandIn::start(Some(OPENAI_KEY));
    let rig = start_openai(&stand_in, POLL_FAST);
    stand_in.push(OpenAiTrouble::Slow(SLOWER_THAN_TIMEOUT));
    let done = rig.run_to_end("oai-slow");
    rig.assert_failed(&done, "submission_uncertain");
    assert_eq!(openai_submits(&stand_in), 1, "never submitted twice");
    rig.finish();
}

#[test]
fn openai_cancel_mid_call_answers_at_once_and_releases() {
    let stand_in = OpenAiStandIn::start(Some(OPENAI_KEY));
    let rig = start_openai(&stand_in, POLL_FAST);
    // The generation is in flight (slow, within the timeout) when the
    // agent cancels; OpenAI's images API has no cancel to send.
    let slow = Duration::from_millis(1_000);
    stand_in.push(OpenAiTrouble::Slow(slow));
    rig.generate("oai-cancel", "a lighthouse at dawn");
    assert!(wait_for(WAIT_MAX, || openai_submits(&stand_in) == 1));
    rig.cancel_at_once("oai-cancel");
    // The late answer arrives meanwhile and is superseded: still canceled,
    // nothing charged.
    let changed = wait_for(slow + Duration::from_millis(200), || {
        rig.job("oai-cancel")["status"] != "canceled"
    });
    assert!(!changed, "{}", rig.job("oai-cancel"));
    let done = rig.job("oai-cancel");
    rig.assert_unpaid(&done, "canceled");
    assert_eq!(openai_submits(&stand_in), 1);
    rig.finish();
}

// ---- kie.ai --------------------------------------------------------------

#[test]
fn kie_success_keeps_the_output_past_its_upstream_url() {
    let stand_in = KieStandIn::start(KIE_KEY);
    let rig = start_kie(&stand_in, POLL_FAST, false);
    let png = creditgate_standins::openai::PNG;
    assert_success_outlives_upstream(&rig, &stand_in.server, "/files/", "kie-ok", png);
    assert_eq!(kie_submits(&stand_in), 1);
    rig.finish();
}

#[test]
fn kie_failure_releases_the_hold() {
    let stand_in = KieStandIn::start(KIE_KEY);
    let rig = start_kie(&stand_in, POLL_FAST, false);
    // The stand-in fails a task whose prompt says so.
    rig.generate("kie-fail", "this one will fail");
    let done = rig.wait_terminal("kie-fail");
    rig.assert_failed(&done, "generation_failed");
    assert_eq!(kie_submits(&stand_in), 1);
    rig.finish();
}

#[test]
fn kie_output_gone_before_download_fails_unpaid_and_tells_the_operator() {
    let stand_in = KieStandIn::start(KIE_KEY);
    let rig = start_kie(&stand_in, POLL_FAST, false);
    // The stand-in's output URLs answer 404 for a prompt that says `dead`.
    let task = rig.generate("kie-dead", "a dead link");
    let done = rig.wait_terminal("kie-dead");
    rig.assert_failed(&done, "output_unavailable");
    let view = rig.operator_view(&task);
    assert!(
        view["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("may have billed")),
        "{view}"
    );
    assert_eq!(kie_submits(&stand_in), 1);
    rig.finish();
}

#[test]
fn kie_retries_after_429_honouring_retry_after() {
    let stand_in = KieStandIn::start(KIE_KEY);
    let rig = start_kie(&stand_in, POLL_FAST, false);
    stand_in.push(KieTrouble::RateLimited {
        retry_after_secs: 1,
    });
    rig.assert_retry_after_honoured("kie-429");
    assert_eq!(kie_submits(&stand_in), 2, "one 429, one accepted");
    rig.finish();
}

#[test]
fn kie_timeout_fails_as_submission_uncertain_submitted_once() {
    let stand_in = KieStandIn::start(KIE_KEY);
    let rig = start_kie(&stand_in, POLL_FAST, false);
    stand_in.push(KieTrouble::Slow(SLOWER_THAN_TIMEOUT));
    let done = rig.run_to_end("kie-slow");
    rig.assert_failed(&done, "submission_uncertain");
    assert_eq!(kie_submits(&stand_in), 1, "never submitted twice");
    rig.finish();
}

#[test]
fn kie_cancel_answers_at_once_and_releases() {
    let stand_in = KieStandIn::start(KIE_KEY);
    let rig = start_kie(&stand_in, POLL_NEVER, false);
    rig.generate("kie-cancel", "a lighthouse at dawn");
    rig.wait_running("kie-cancel");
    let canceled = rig.cancel_at_once("kie-cancel");
    rig.assert_unpaid(&canceled, "canceled");
    // kie.ai has no cancel: nothing but the one submission reaches it.
    let more = wait_for(Duration::from_millis(700), || {
        stand_in.server.seen().len() > 1
    });
    assert!(!more, "{:?}", stand_in.server.seen());
    rig.finish();
}

/// What kie.ai would sign and post to the task's callback URL, and the
/// task moved to its end (kie calls back once a task ended; the stand-in
/// moves a task on when it is read).
fn kie_callback(
    stand_in: &KieStandIn,
    task_id: &str,
    secret: &str,
) -> (Vec<(&'static str, String)>, Vec<u8>) {
    let read = get_url_with_bearer(
        &format!("{}{KIE_RECORD}?taskId={task_id}", stand_in.base_url()),
        KIE_KEY,
    );
    assert_eq!(read.status, 200);
    let body = stand_in.callback_for(task_id).to_string().into_bytes();
    let timestamp = now_secs().to_string();
    let signature = creditgate_standins::kie::sign(secret.as_bytes(), task_id, &timestamp);
    (
        vec![
            ("X-Webhook-Timestamp", timestamp),
            ("X-Webhook-Signature", signature),
        ],
        body,
    )
}

fn get_url_with_bearer(url: &str, bearer: &str) -> HttpResponse {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (addr, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    raw_http(
        addr,
        format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {bearer}\r\n\
             Connection: close\r\n\r\n"
        )
        .as_bytes(),
    )
}

/// Decodes `%XX` escapes (a query parameter's value).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("utf-8")
}

/// The callback URL a submission told the upstream: our webhook route.
fn assert_callback_url(rig: &Rig, told: Option<&str>) {
    let expected = format!(
        "{}/v1/providers/{}/webhook",
        rig.server().base(),
        rig.route.instance
    );
    assert_eq!(told, Some(expected.as_str()));
}

#[test]
fn kie_webhook_first_finishes_the_job_and_forgeries_change_nothing() {
    let stand_in = KieStandIn::start(KIE_KEY);
    let rig = start_kie(&stand_in, POLL_NEVER, true);
    let task = rig.generate("kie-hook", "a lighthouse at dawn");
    rig.wait_running("kie-hook");
    let created = stand_in.server.seen()[0].json();
    assert_callback_url(&rig, created["callBackUrl"].as_str());
    let view = rig.operator_view(&task);
    let task_id = view["provider_task_id"].as_str().expect("kie task id");

    let (headers, body) = kie_callback(&stand_in, task_id, KIE_HOOK_SECRET);
    let (forged_headers, _) = kie_callback(&stand_in, task_id, "not-the-secret");
    let callback = Callback {
        instance: KIE.instance,
        headers: &headers,
        forged_headers: &forged_headers,
        body: &body,
    };
    assert_callback_finishes(
        &rig,
        &task,
        "kie-hook",
        &view,
        &callback,
        creditgate_standins::openai::PNG,
    );
    assert_eq!(kie_submits(&stand_in), 1);
    rig.finish();
}

#[test]
fn kie_poll_first_then_a_late_callback_changes_nothing() {
    let stand_in = KieStandIn::start(KIE_KEY);
    let rig = start_kie(&stand_in, POLL_FAST, true);
    let task = rig.generate("kie-poll", "a lighthouse at dawn");
    let done = rig.wait_terminal("kie-poll");
    rig.assert_charged_once(&done);
    let finished = rig.operator_view(&task);
    let task_id = finished["provider_task_id"].as_str().expect("kie task id");
    let (headers, body) = kie_callback(&stand_in, task_id, KIE_HOOK_SECRET);
    let late = post_webhook(rig.server(), KIE.instance, &headers, &body);
    assert_harmless(&rig, &task, &late, &finished, true);
    rig.finish();
}

// ---- fal -------------------------------------------------------------------

#[test]
fn fal_success_keeps_the_output_past_its_upstream_url() {
    let stand_in = FalStandIn::start(FAL_KEY);
    let rig = start_fal(&stand_in, POLL_FAST, None);
    let png = creditgate_standins::fal::PNG_1X1;
    assert_success_outlives_upstream(&rig, &stand_in.server, "/files/", "fal-ok", png);
    assert_eq!(fal_submits(&stand_in), 1);
    rig.finish();
}

#[test]
fn fal_failure_releases_the_hold() {
    let stand_in = FalStandIn::start(FAL_KEY);
    let rig = start_fal(&stand_in, POLL_FAST, None);
    stand_in.with(|s| s.next_outcome = FalOutcome::ValidationError);
    let done = rig.run_to_end("fal-fail");
    rig.assert_failed(&done, "upstream_rejected");
    assert_eq!(fal_submits(&stand_in), 1);
    rig.finish();
}

#[test]
fn fal_retries_after_429_honouring_retry_after() {
    let stand_in = FalStandIn::start(FAL_KEY);
    let rig = start_fal(&stand_in, POLL_FAST, None);
    stand_in.with(|s| s.submit_faults.push_back(FalFault::throttled(1)));
    rig.assert_retry_after_honoured("fal-429");
    assert_eq!(fal_submits(&stand_in), 2, "one 429, one accepted");
    rig.finish();
}

#[test]
fn fal_timeout_fails_as_submission_uncertain_submitted_once() {
    let stand_in = FalStandIn::start(FAL_KEY);
    let rig = start_fal(&stand_in, POLL_FAST, None);
    stand_in.with(|s| {
        s.submit_faults
            .push_back(FalFault::Slow(SLOWER_THAN_TIMEOUT))
    });
    let done = rig.run_to_end("fal-slow");
    rig.assert_failed(&done, "submission_uncertain");
    assert_eq!(fal_submits(&stand_in), 1, "never submitted twice");
    rig.finish();
}

#[test]
fn fal_cancel_answers_at_once_then_cancels_upstream() {
    let stand_in = FalStandIn::start(FAL_KEY);
    let rig = start_fal(&stand_in, POLL_FAST, None);
    stand_in.with(|s| s.queue_polls = 1_000);
    rig.generate("fal-cancel", "a lighthouse at dawn");
    rig.wait_running("fal-cancel");
    let canceled = rig.cancel_at_once("fal-cancel");
    rig.assert_unpaid(&canceled, "canceled");
    assert!(
        wait_for(WAIT_MAX, || stand_in
            .with(|s| s.requests.values().any(|r| r.canceled))),
        "fal's cancel was sent: {:?}",
        stand_in.server.seen()
    );
    assert_eq!(stand_in.server.count("PUT", "/fal-ai/flux/requests/"), 1);
    rig.assert_unpaid(&rig.job("fal-cancel"), "canceled");
    rig.finish();
}

#[test]
fn fal_cancel_while_the_submission_is_in_flight_cancels_the_accepted_request() {
    let stand_in = FalStandIn::start(FAL_KEY);
    let rig = start_fal(&stand_in, POLL_FAST, None);
    // fal accepts the request but answers slowly (within the timeout); the
    // agent cancels before the answer is back.
    stand_in.with(|s| {
        s.queue_polls = 1_000;
        s.submit_faults
            .push_back(FalFault::Slow(Duration::from_millis(1_000)));
    });
    rig.generate("fal-early-cancel", "a lighthouse at dawn");
    assert!(wait_for(WAIT_MAX, || fal_submits(&stand_in) == 1));
    let canceled = rig.cancel_at_once("fal-early-cancel");
    rig.assert_unpaid(&canceled, "canceled");
    // Once the submission's answer names the request, a worker cancels it
    // at fal: nobody will collect it.
    assert!(
        wait_for(WAIT_MAX, || stand_in
            .with(|s| s.requests.values().any(|r| r.canceled))),
        "the accepted request was never canceled at fal: {:?}",
        stand_in.server.seen()
    );
    assert_eq!(stand_in.server.count("PUT", "/fal-ai/flux/requests/"), 1);
    assert_eq!(fal_submits(&stand_in), 1);
    rig.assert_unpaid(&rig.job("fal-early-cancel"), "canceled");
    rig.finish();
}

#[test]
fn fal_job_past_its_deadline_expires_unpaid_and_is_canceled_upstream() {
    let stand_in = FalStandIn::start(FAL_KEY);
    let rig = Rig::start_with(
        FAL,
        fal_config(&stand_in, None),
        &["--poll-interval-ms", POLL_FAST, "--job-deadline-secs", "1"],
        &[("CG_TEST_FAL_KEY", FAL_KEY)],
    );
    stand_in.with(|s| s.queue_polls = 1_000);
    let done = rig.run_to_end("fal-late");
    rig.assert_unpaid(&done, "expired");
    assert!(
        wait_for(WAIT_MAX, || stand_in
            .with(|s| s.requests.values().any(|r| r.canceled))),
        "the expired job's request was canceled at fal: {:?}",
        stand_in.server.seen()
    );
    assert_eq!(fal_submits(&stand_in), 1);
    rig.finish();
}

/// A fal callback for `request_id` signed by `key`, as fal posts it.
fn fal_callback(
    base_url: &str,
    request_id: &str,
    key: &ed25519_dalek::SigningKey,
) -> (Vec<(&'static str, String)>, Vec<u8>) {
    use ed25519_dalek::Signer as _;
    use sha2::Digest as _;
    let body = json!({"request_id": request_id, "gateway_request_id": request_id, "status": "OK",
        "payload": {"images": [{"url": format!("{base_url}/files/{request_id}-0.png"),
                                "content_type": "image/png", "width": 8, "height": 8}],
                    "seed": 42}})
    .to_string()
    .into_bytes();
    let timestamp = now_secs().to_string();
    let user_id = "fal-user-1";
    let message = format!(
        "{request_id}\n{user_id}\n{timestamp}\n{}",
        hex::encode(sha2::Sha256::digest(&body))
    );
    let signature = hex::encode(key.sign(message.as_bytes()).to_bytes());
    (
        vec![
            ("X-Fal-Webhook-Request-Id", request_id.to_owned()),
            ("X-Fal-Webhook-User-Id", user_id.to_owned()),
            ("X-Fal-Webhook-Timestamp", timestamp),
            ("X-Fal-Webhook-Signature", signature),
        ],
        body,
    )
}

#[test]
fn fal_webhook_first_finishes_the_job_and_forgeries_change_nothing() {
    let stand_in = FalStandIn::start(FAL_KEY);
    let jwks = fal_jwks();
    let rig = start_fal(&stand_in, POLL_NEVER, Some(&jwks));
    // fal calls back when the request completed: the next status read says so.
    stand_in.with(|s| {
        s.queue_polls = 0;
        s.progress_polls = 0;
    });
    let task = rig.generate("fal-hook", "a lighthouse at dawn");
    rig.wait_running("fal-hook");
    let view = rig.operator_view(&task);
    let request_id = view["provider_task_id"].as_str().expect("fal request id");
    // fal takes the callback URL as the `fal_webhook` query parameter.
    let told = stand_in.with(|s| s.requests[request_id].webhook.clone());
    assert_callback_url(&rig, told.as_deref().map(percent_decode).as_deref());

    let (headers, body) = fal_callback(stand_in.base_url(), request_id, &fal_signing_key());
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let (forged_headers, _) = fal_callback(stand_in.base_url(), request_id, &stranger);
    let callback = Callback {
        instance: FAL.instance,
        headers: &headers,
        forged_headers: &forged_headers,
        body: &body,
    };
    assert_callback_finishes(
        &rig,
        &task,
        "fal-hook",
        &view,
        &callback,
        creditgate_standins::fal::PNG_1X1,
    );
    assert_eq!(fal_submits(&stand_in), 1);
    rig.finish();
}

#[test]
fn fal_poll_first_then_a_late_callback_changes_nothing() {
    let stand_in = FalStandIn::start(FAL_KEY);
    let jwks = fal_jwks();
    let rig = start_fal(&stand_in, POLL_FAST, Some(&jwks));
    let task = rig.generate("fal-poll", "a lighthouse at dawn");
    let done = rig.wait_terminal("fal-poll");
    rig.assert_charged_once(&done);
    let finished = rig.operator_view(&task);
    let request_id = finished["provider_task_id"]
        .as_str()
        .expect("fal request id");
    let (headers, body) = fal_callback(stand_in.base_url(), request_id, &fal_signing_key());
    let late = post_webhook(rig.server(), FAL.instance, &headers, &body);
    assert_harmless(&rig, &task, &late, &finished, true);
    rig.finish();
}

// ---- Replicate -------------------------------------------------------------

#[test]
fn replicate_success_keeps_the_output_past_its_upstream_url() {
    let stand_in = ReplicateStandIn::start(REPLICATE_TOKEN);
    let rig = start_replicate(&stand_in, POLL_FAST, false);
    let png = creditgate_standins::fal::PNG_1X1;
    assert_success_outlives_upstream(&rig, &stand_in.server, "/files/", "rep-ok", png);
    assert_eq!(replicate_submits(&stand_in), 1);
    rig.finish();
}

#[test]
fn replicate_failure_releases_the_hold() {
    let stand_in = ReplicateStandIn::start(REPLICATE_TOKEN);
    let rig = start_replicate(&stand_in, POLL_FAST, false);
    stand_in.with(|s| s.next_end = End::Failed("CUDA out of memory".into()));
    let done = rig.run_to_end("rep-fail");
    rig.assert_failed(&done, "generation_failed");
    assert_eq!(replicate_submits(&stand_in), 1);
    rig.finish();
}

#[test]
fn replicate_retries_after_429_honouring_retry_after() {
    let stand_in = ReplicateStandIn::start(REPLICATE_TOKEN);
    let rig = start_replicate(&stand_in, POLL_FAST, false);
    stand_in.with(|s| s.create_faults.push_back(ReplicateFault::throttled(1)));
    rig.assert_retry_after_honoured("rep-429");
    assert_eq!(replicate_submits(&stand_in), 2, "one 429, one accepted");
    rig.finish();
}

#[test]
fn replicate_timeout_fails_as_submission_uncertain_submitted_once() {
    let stand_in = ReplicateStandIn::start(REPLICATE_TOKEN);
    let rig = start_replicate(&stand_in, POLL_FAST, false);
    stand_in.with(|s| {
        s.create_faults
            .push_back(ReplicateFault::Slow(SLOWER_THAN_TIMEOUT))
    });
    let done = rig.run_to_end("rep-slow");
    rig.assert_failed(&done, "submission_uncertain");
    assert_eq!(replicate_submits(&stand_in), 1, "never submitted twice");
    rig.finish();
}

#[test]
fn replicate_cancel_answers_at_once_then_cancels_upstream() {
    let stand_in = ReplicateStandIn::start(REPLICATE_TOKEN);
    let rig = start_replicate(&stand_in, POLL_FAST, false);
    // Replicate is slow to answer the cancel: the agent's cancel must not
    // wait for it (a worker sends it).
    stand_in.with(|s| {
        s.processing_polls = 1_000;
        s.cancel_faults
            .push_back(ReplicateFault::Slow(SLOWER_THAN_TIMEOUT));
    });
    let task = rig.generate("rep-cancel", "a lighthouse at dawn");
    rig.wait_running("rep-cancel");
    let canceled = rig.cancel_at_once("rep-cancel");
    rig.assert_unpaid(&canceled, "canceled");
    let view = rig.operator_view(&task);
    let prediction = view["provider_task_id"].as_str().expect("prediction id");
    let cancel_route = format!("/predictions/{prediction}/cancel");
    assert!(
        wait_for(WAIT_MAX, || stand_in.server.count("POST", &cancel_route)
            == 1),
        "Replicate's cancel was sent: {:?}",
        stand_in.server.seen()
    );
    rig.assert_unpaid(&rig.job("rep-cancel"), "canceled");
    rig.finish();
}

/// A Standard Webhooks signature of `body` under `secret` (`whsec_...`).
fn replicate_signature(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> String {
    use base64::Engine as _;
    use hmac::Mac as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let key = engine
        .decode(secret.trim_start_matches("whsec_"))
        .expect("base64 secret");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", engine.encode(mac.finalize().into_bytes()))
}

/// Replicate's callback of a prediction (its whole JSON, read from the
/// stand-in as Replicate would send it) signed under `secret`.
fn replicate_callback(
    stand_in: &ReplicateStandIn,
    prediction: &str,
    delivery: &str,
    secret: &str,
) -> (Vec<(&'static str, String)>, Vec<u8>) {
    let read = get_url_with_bearer(
        &format!("{}/predictions/{prediction}", stand_in.base_url()),
        REPLICATE_TOKEN,
    );
    assert_eq!(read.status, 200);
    let body = read.body;
    let timestamp = now_secs().to_string();
    let signature = replicate_signature(secret, delivery, &timestamp, &body);
    (
        vec![
            ("webhook-id", delivery.to_owned()),
            ("webhook-timestamp", timestamp),
            ("webhook-signature", signature),
        ],
        body,
    )
}

#[test]
fn replicate_webhook_first_finishes_the_job_and_forgeries_change_nothing() {
    let stand_in = ReplicateStandIn::start(REPLICATE_TOKEN);
    let rig = start_replicate(&stand_in, POLL_NEVER, true);
    // Replicate calls back when the prediction ended: reads say so.
    stand_in.with(|s| {
        s.starting_polls = 0;
        s.processing_polls = 0;
    });
    let task = rig.generate("rep-hook", "a lighthouse at dawn");
    rig.wait_running("rep-hook");
    let created = stand_in.server.seen()[0].json();
    assert_callback_url(&rig, created["webhook"].as_str());
    let view = rig.operator_view(&task);
    let prediction = view["provider_task_id"].as_str().expect("prediction id");

    let (headers, body) =
        replicate_callback(&stand_in, prediction, "msg_first", REPLICATE_HOOK_SECRET);
    let (forged_headers, _) = replicate_callback(
        &stand_in,
        prediction,
        "msg_forged",
        "whsec_bm90LXRoZS1yZWFsLXNlY3JldA==",
    );
    let callback = Callback {
        instance: REPLICATE.instance,
        headers: &headers,
        forged_headers: &forged_headers,
        body: &body,
    };
    // Replicate retries a delivery under the same webhook-id.
    assert_callback_finishes(
        &rig,
        &task,
        "rep-hook",
        &view,
        &callback,
        creditgate_standins::fal::PNG_1X1,
    );
    assert_eq!(replicate_submits(&stand_in), 1);
    rig.finish();
}

#[test]
fn replicate_poll_first_then_a_late_callback_changes_nothing() {
    let stand_in = ReplicateStandIn::start(REPLICATE_TOKEN);
    let rig = start_replicate(&stand_in, POLL_FAST, true);
    let task = rig.generate("rep-poll", "a lighthouse at dawn");
    let done = rig.wait_terminal("rep-poll");
    rig.assert_charged_once(&done);
    let finished = rig.operator_view(&task);
    let prediction = finished["provider_task_id"]
        .as_str()
        .expect("prediction id");
    let (headers, body) =
        replicate_callback(&stand_in, prediction, "msg_late", REPLICATE_HOOK_SECRET);
    let late = post_webhook(rig.server(), REPLICATE.instance, &headers, &body);
    assert_harmless(&rig, &task, &late, &finished, true);
    rig.finish();
}

// ---- ComfyUI ---------------------------------------------------------------

#[test]
fn comfyui_success_keeps_the_output_past_its_upstream_url() {
    let stand_in = ComfyUi::start(true);
    let rig = start_comfyui(&stand_in, POLL_FAST);
    let png = creditgate_standins::comfyui::PNG;
    let upstream =
        assert_success_outlives_upstream(&rig, stand_in.server(), "/view", "comfy-ok", png);
    assert!(
        upstream.iter().all(|url| url.contains("/view?")),
        "{upstream:?}"
    );
    assert_eq!(comfyui_submits(&stand_in), 1);
    rig.finish();
}

#[test]
fn comfyui_failure_releases_the_hold() {
    let stand_in = ComfyUi::start(true);
    let rig = start_comfyui(&stand_in, POLL_FAST);
    stand_in.set(|b| b.fail_with = Some("CUDA out of memory".into()));
    let done = rig.run_to_end("comfy-fail");
    rig.assert_failed(&done, "generation_failed");
    assert_eq!(comfyui_submits(&stand_in), 1);
    rig.finish();
}

#[test]
fn comfyui_retries_after_429_honouring_retry_after() {
    let stand_in = ComfyUi::start(true);
    let rig = start_comfyui(&stand_in, POLL_FAST);
    stand_in.script(
        "POST",
        "/prompt",
        Reply::json(429, &json!({"error": "busy"})).header("Retry-After", "1"),
    );
    rig.assert_retry_after_honoured("comfy-429");
    assert_eq!(comfyui_submits(&stand_in), 2, "one 429, one accepted");
    rig.finish();
}

#[test]
fn comfyui_timeout_is_reconciled_by_our_prompt_id_and_succeeds_submitted_once() {
    let stand_in = ComfyUi::start(true);
    let rig = start_comfyui(&stand_in, POLL_FAST);
    stand_in.set(|b| b.prompt_delay = SLOWER_THAN_TIMEOUT);
    let done = rig.run_to_end("comfy-slow");
    rig.assert_charged_once(&done);
    rig.assert_outputs_kept(&done, "image/png", creditgate_standins::comfyui::PNG);
    assert_eq!(
        comfyui_submits(&stand_in),
        1,
        "reconciled, never submitted twice"
    );
    assert_eq!(stand_in.prompts().len(), 1);
    rig.finish();
}

#[test]
fn comfyui_old_style_timeout_cannot_be_reconciled_and_fails_as_submission_uncertain() {
    // A server older than v0.3.45 ignores our prompt id: it cannot be asked
    // whether it has the prompt.
    let stand_in = ComfyUi::start(false);
    let rig = start_comfyui(&stand_in, POLL_FAST);
    stand_in.set(|b| b.prompt_delay = SLOWER_THAN_TIMEOUT);
    let done = rig.run_to_end("comfy-old-slow");
    rig.assert_failed(&done, "submission_uncertain");
    assert_eq!(comfyui_submits(&stand_in), 1, "never submitted twice");
    rig.finish();
}

#[test]
fn comfyui_cancel_answers_at_once_then_interrupts_only_ours() {
    let stand_in = ComfyUi::start(true);
    stand_in.set(|b| b.auto_advance = false);
    let rig = start_comfyui(&stand_in, POLL_FAST);
    rig.generate("comfy-cancel", "a lighthouse at dawn");
    rig.wait_running("comfy-cancel");
    stand_in.advance(); // ours starts running on the box
    let ours = stand_in.prompts()[0].id.clone();
    let canceled = rig.cancel_at_once("comfy-cancel");
    rig.assert_unpaid(&canceled, "canceled");
    assert!(
        wait_for(WAIT_MAX, || !stand_in.interrupts().is_empty()),
        "the interrupt was sent: {:?}",
        stand_in.server().seen()
    );
    assert_eq!(stand_in.interrupts(), vec![Some(ours)]);
    rig.assert_unpaid(&rig.job("comfy-cancel"), "canceled");
    rig.finish();
}

// ---- kill -9 between an upstream's acceptance and our record -------------

/// How long the stand-in holds its answer to an accepted submission.
const ACCEPTED_BUT_SLOW: Duration = Duration::from_secs(3);
/// A call timeout longer than [`ACCEPTED_BUT_SLOW`]: the worker is still
/// waiting when the server is killed.
const PATIENT_TIMEOUT_MS: i64 = 10_000;

/// The job is listed by the operator, in a terminal state.
fn assert_listed(rig: &Rig, task_id: &str, status: &str) {
    let listed = rig.sb.ok(&["jobs", "list"]);
    let job = listed["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .find(|job| job["task_id"] == task_id)
        .unwrap_or_else(|| panic!("{task_id} was lost: {listed}"))
        .clone();
    assert_eq!(job["status"], status, "{job}");
}

#[test]
fn kill_9_while_kie_holds_its_answer_fails_uncertain_and_never_submits_twice() {
    let stand_in = KieStandIn::start(KIE_KEY);
    let mut rig = Rig::start(
        KIE,
        kie_config(&stand_in, false, PATIENT_TIMEOUT_MS),
        POLL_FAST,
        &[("CG_TEST_KIE_KEY", KIE_KEY)],
    );
    stand_in.push(KieTrouble::Slow(ACCEPTED_BUT_SLOW));
    let task = rig.generate("kie-k9", "a lighthouse at dawn");
    assert!(wait_for(WAIT_MAX, || kie_submits(&stand_in) == 1));
    rig.kill_9();
    rig.restart();
    let done = rig.wait_terminal("kie-k9");
    rig.assert_failed(&done, "submission_uncertain");
    assert_eq!(
        kie_submits(&stand_in),
        1,
        "no second submit after the restart"
    );
    assert_listed(&rig, &task, "failed");
    rig.finish();
}

#[test]
fn kill_9_while_comfyui_holds_its_answer_reconciles_and_charges_once() {
    let stand_in = ComfyUi::start(true);
    stand_in.set(|b| b.prompt_delay = ACCEPTED_BUT_SLOW);
    let mut rig = Rig::start(
        COMFYUI,
        comfyui_config(&stand_in, PATIENT_TIMEOUT_MS),
        POLL_FAST,
        &[],
    );
    let task = rig.generate("comfy-k9", "a lighthouse at dawn");
    assert!(wait_for(WAIT_MAX, || comfyui_submits(&stand_in) == 1));
    rig.kill_9();
    rig.restart();
    let done = rig.wait_terminal("comfy-k9");
    rig.assert_charged_once(&done);
    rig.assert_outputs_kept(&done, "image/png", creditgate_standins::comfyui::PNG);
    assert_eq!(
        comfyui_submits(&stand_in),
        1,
        "reconciled, not submitted again"
    );
    assert_listed(&rig, &task, "succeeded");
    rig.finish();
}

#[test]
fn a_kept_output_answers_410_past_its_retention_and_the_sweep_removes_its_file() {
    let stand_in = OpenAiStandIn::start(Some(OPENAI_KEY));
    let mut rig = start_openai(&stand_in, POLL_FAST);
    let done = rig.run_to_end("oai-kept");
    rig.assert_charged_once(&done);
    let png = creditgate_standins::openai::PNG;
    rig.assert_outputs_kept(&done, "image/png", png);
    let link = done["outputs"][0]["url"]
        .as_str()
        .expect("a link")
        .to_owned();
    let media = rig.sb.dir().join("media");
    let files = |dir: &std::path::Path| -> usize {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| {
                        if e.path().is_dir() {
                            std::fs::read_dir(e.path()).map_or(0, |d| d.count())
                        } else {
                            1
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    };
    assert_eq!(files(&media), 1, "the output is kept beside the database");

    // Its retention passes (the clock cannot be moved in a real server:
    // the record's expiry is moved instead).
    let conn = rusqlite::Connection::open(rig.sb.db()).expect("open the database");
    conn.execute("UPDATE media_files SET expires_at = 0", [])
        .expect("expire the kept file");
    drop(conn);
    let gone = get_url(&link);
    assert_eq!(gone.status, 410, "{:?}", gone.json());
    assert_eq!(gone.json()["data"]["error"], "output_expired");

    // The first worker sweeps expired media as it starts.
    rig.kill_9();
    rig.restart();
    assert!(
        wait_for(WAIT_MAX, || files(&media) == 0),
        "the expired file is removed"
    );
    // The restarted server listens elsewhere: the same path, its address.
    let path = &link[link.find("/v1/files/").expect("a files link")..];
    let again = get_url(&format!("{}{path}", rig.server().base()));
    assert_eq!(again.status, 410, "and its link stays gone");
    rig.finish();
}
