//! Black-box tests of `creditgate serve`: the real binary on an ephemeral
//! port with a temporary database. The first-run key and curl line, the
//! reference's curl examples with only the host changed, every v1 route and
//! its error paths, hostile input, the OpenAPI document against the router,
//! graceful shutdown, slow clients, and a SIGKILL mid-flight.

use std::time::{Duration, Instant};

use creditgate_tests::{raw_http, HttpResponse, Sandbox, Server};
use serde_json::{json, Value};

fn sandbox() -> Sandbox {
    Sandbox::new(env!("CARGO_BIN_EXE_creditgate"))
}

/// Fast polls so fixture jobs finish in well under a second.
const FAST: &[&str] = &["--poll-interval-ms", "20", "--workers", "2"];

fn start(sb: &Sandbox) -> (Server, String) {
    let server = sb.serve(FAST);
    let key = server.demo_key.clone().expect("first run prints a key");
    (server, key)
}

/// Polls a job until it is terminal, at most `within`.
fn wait_terminal(server: &Server, key: &str, request_id: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let answer = server
            .get(&format!("/v1/generate/{request_id}"), key)
            .json();
        let status = answer["data"]["status"].as_str().unwrap_or("").to_owned();
        if ["succeeded", "failed", "canceled", "expired"].contains(&status.as_str()) {
            return answer["data"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "{request_id} still {status} after {within:?}: {answer}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn assert_envelope_error(response: &HttpResponse, status: u16, code: &str) -> Value {
    let body = response.json();
    assert_eq!(response.status, status, "{body}");
    assert_eq!(
        body["code"],
        json!(status),
        "code is the HTTP status: {body}"
    );
    assert_eq!(body["data"]["error"], json!(code), "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(response.header("x-request-id").is_some());
    body
}

fn verify_ledger(sb: &Sandbox) {
    let run = sb.run(&["ledger", "verify"]);
    assert_eq!(run.code, 0, "ledger verify: {}{}", run.stdout, run.stderr);
}

/// Stops `server`, then checks the ledger it leaves.
fn stop_and_verify(sb: &Sandbox, server: Server) {
    drop(server);
    verify_ledger(sb);
}

#[test]
fn the_first_run_curl_line_works_as_printed() {
    let sb = sandbox();
    let (server, key) = start(&sb);
    let (curl, answer) = server.run_banner_curl();
    assert!(
        curl.contains(&key) && curl.contains(&server.base()),
        "{curl}"
    );
    assert_eq!(answer["code"], 0, "{answer}");
    assert_eq!(answer["data"]["status"], "pending");
    let done = wait_terminal(&server, &key, "first-call-1", Duration::from_secs(20));
    assert_eq!(done["status"], "succeeded");

    // A second start on the same database creates no second demo account.
    drop(server);
    let again = sb.serve(FAST);
    assert!(
        again.demo_key.is_none(),
        "the key is printed on the first run only"
    );
    assert_eq!(sb.count(&["accounts", "list"], "accounts"), Some(1));
    stop_and_verify(&sb, again);
}

/// Reference 001's examples, verbatim but for the host.
const REFERENCE_EXAMPLES: &[(&str, &str)] = &[
    (
        "Example 1",
        r#"curl -s https://rynjer.com/v1/models/list \
-H "Authorization: Bearer $RYNJER_ACCESS_TOKEN""#,
    ),
    (
        "Example 2",
        r#"curl -s https://rynjer.com/v1/credits/estimate \
-H "Authorization: Bearer $RYNJER_ACCESS_TOKEN" \
-H "Content-Type: application/json" \
-d '{
"product": "image",
"model": "nano-banana-pro",
"units": {
"count": 1,
"resolution": "1K"
}
}'"#,
    ),
    (
        "Example 3",
        r#"curl -s https://rynjer.com/v1/generate \
-H "Authorization: Bearer $RYNJER_ACCESS_TOKEN" \
-H "Content-Type: application/json" \
-d '{
"request_id": "demo-uuid-001",
"model": "nano-banana-pro",
"prompt": "Studio product shot of a matte black smart speaker on a neutral background, soft commercial lighting, premium ad look"
}'"#,
    ),
    (
        "Example 4",
        r#"curl -s https://rynjer.com/v1/generate/demo-uuid-001 \
-H "Authorization: Bearer $RYNJER_ACCESS_TOKEN""#,
    ),
    (
        "Shortcuts",
        r#"curl -s https://rynjer.com/v1/generate \
-H "Authorization: Bearer $RYNJER_ACCESS_TOKEN" \
-H "Content-Type: application/json" \
-d '{
"request_id": "demo-uuid-002",
"model": "qwen/text-to-image",
"prompt": "Minimal ecommerce hero image for a skincare bottle, front-facing, soft shadow, high-end brand aesthetic",
"count": 1,
"resolution": "1K",
"aspect_ratio": "1:1"
}'"#,
    ),
];

#[test]
fn the_reference_curl_examples_work_with_only_the_host_changed() {
    let sb = sandbox();
    let (server, key) = start(&sb);
    let run = |name: &str, script: &str| -> Value {
        let script = script.replace("https://rynjer.com", &server.base());
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env("RYNJER_ACCESS_TOKEN", &key)
            .output()
            .expect("run curl");
        let answer: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
            panic!(
                "{name}: not JSON: {}",
                String::from_utf8_lossy(&output.stdout)
            )
        });
        assert_eq!(answer["code"], 0, "{name}: {answer}");
        answer["data"].clone()
    };
    let models = run("Example 1", REFERENCE_EXAMPLES[0].1);
    assert_eq!(models["currency"], "credits");
    assert_eq!(models["price_version"], "2026-02-02-v1");
    assert!(models["models"]
        .as_array()
        .is_some_and(|m| m.iter().any(|m| m["model"] == "nano-banana-pro")));
    let estimate = run("Example 2", REFERENCE_EXAMPLES[1].1);
    assert_eq!(estimate["credits"], json!(20));
    assert_eq!(estimate["price_version"], "2026-02-02-v1");
    assert!(estimate["breakdown"].is_array());
    let submitted = run("Example 3", REFERENCE_EXAMPLES[2].1);
    assert_eq!(submitted["status"], "pending");
    assert!(submitted["task_id"]
        .as_str()
        .is_some_and(|t| t.starts_with("job_")));
    assert!(submitted["usage_event_id"].is_string());
    wait_terminal(&server, &key, "demo-uuid-001", Duration::from_secs(20));
    let polled = run("Example 4", REFERENCE_EXAMPLES[3].1);
    assert_eq!(polled["request_id"], "demo-uuid-001");
    assert_eq!(polled["status"], "succeeded");
    assert_eq!(polled["credits"], json!(20));
    assert_eq!(polled["price_version"], "2026-02-02-v1");
    assert_eq!(polled["outputs"][0]["mime"], "image/png");
    assert!(polled["seed"].is_number());
    let shortcut = run("Shortcuts", REFERENCE_EXAMPLES[4].1);
    assert_eq!(shortcut["credits"], json!(15));
    let done = wait_terminal(&server, &key, "demo-uuid-002", Duration::from_secs(20));
    assert_eq!(done["outputs"].as_array().map(Vec::len), Some(1));
    stop_and_verify(&sb, server);
}

#[test]
fn a_job_runs_from_submit_to_its_output_file() {
    let sb = sandbox();
    let (server, key) = start(&sb);
    let body = json!({"request_id": "img-4", "model": "nano-banana-pro", "prompt": "a cat", "units": {"count": 2}});
    let first = server.post("/v1/generate", &key, &body);
    assert_eq!(first.status, 200);
    assert_eq!(first.json()["data"]["credits"], json!(40));
    let replay = server.post("/v1/generate", &key, &body);
    assert_eq!(
        replay.json()["data"]["task_id"],
        first.json()["data"]["task_id"]
    );
    assert_eq!(replay.json()["data"]["replayed"], json!(true));
    let balance = server.get("/v1/credits/balance", &key).json();
    assert_eq!(
        (
            balance["data"]["available"].clone(),
            balance["data"]["pending"].clone()
        ),
        (json!(160), json!(40))
    );

    let done = wait_terminal(&server, &key, "img-4", Duration::from_secs(20));
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["charged"], json!(40));
    let outputs = done["outputs"].as_array().expect("outputs");
    assert_eq!(outputs.len(), 2);
    for output in outputs {
        let url = output["url"].as_str().expect("url");
        let path = url.strip_prefix(&server.base()).expect("served here");
        let file = server.request("GET", path, None, None);
        assert_eq!(file.status, 200);
        assert_eq!(file.header("content-type"), Some("image/png"));
        assert!(file.body.starts_with(b"\x89PNG"));
        // A guessed token finds nothing.
        let mut parts: Vec<String> = path.split('/').map(str::to_owned).collect();
        parts[4] = "0".repeat(parts[4].len());
        assert_eq!(
            server.request("GET", &parts.join("/"), None, None).status,
            404
        );
    }
    let balance = server.get("/v1/credits/balance", &key).json();
    assert_eq!(
        (
            balance["data"]["available"].clone(),
            balance["data"]["pending"].clone(),
            balance["data"]["posted"].clone()
        ),
        (json!(160), json!(0), json!(160))
    );
    // Cancel after success is refused; cancel of a live job releases.
    let refused = server.request("POST", "/v1/generate/img-4/cancel", Some(&key), Some(""));
    assert_envelope_error(&refused, 409, "invalid_transition");
    server.post(
        "/v1/generate",
        &key,
        &json!({"request_id": "hang", "model": "z-image", "prompt": "[hang] x"}),
    );
    let canceled = server.request("POST", "/v1/generate/hang/cancel", Some(&key), Some(""));
    assert_eq!(canceled.json()["data"]["status"], "canceled");
    assert_eq!(
        server.get("/v1/credits/balance", &key).json()["data"]["available"],
        json!(160)
    );
    stop_and_verify(&sb, server);
}

#[test]
fn every_error_path_is_a_json_4xx_and_moves_no_money() {
    let sb = sandbox();
    let (server, key) = start(&sb);
    let account = sb.first_account();
    let image_only = sb.ok(&["keys", "create", "--account", &account, "--scope", "image"])["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let post_raw = |body: &str| server.request("POST", "/v1/generate", Some(&key), Some(body));

    assert_envelope_error(&post_raw("{not json"), 400, "invalid_request");
    assert_envelope_error(&post_raw(""), 400, "invalid_request");
    assert_envelope_error(&post_raw("[1,2]"), 400, "invalid_request");
    assert_envelope_error(
        &post_raw(r#"{"request_id": 5, "model": "z-image", "prompt": "x"}"#),
        400,
        "invalid_request",
    );
    let missing = assert_envelope_error(
        &post_raw(r#"{"request_id": "a", "prompt": "x"}"#),
        400,
        "invalid_request",
    );
    assert_eq!(missing["data"]["field"], "model");
    let huge = assert_envelope_error(
        &post_raw(
            r#"{"request_id": "a", "model": "nano-banana-pro", "prompt": "x", "count": 1e999999}"#,
        ),
        400,
        "invalid_request",
    );
    assert_eq!(huge["data"]["field"], "units.count");
    let deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    assert_envelope_error(&post_raw(&deep), 400, "invalid_request");
    let unknown = assert_envelope_error(
        &post_raw(r#"{"request_id": "a", "model": "nano-banana-pr", "prompt": "x"}"#),
        400,
        "unknown_model",
    );
    assert!(unknown["data"]["close_matches"]
        .as_array()
        .is_some_and(|m| m.contains(&json!("nano-banana-pro"))));
    let option = assert_envelope_error(
        &post_raw(r#"{"request_id": "a", "model": "nano-banana-pro", "prompt": "x", "count": 3}"#),
        400,
        "invalid_option",
    );
    assert_eq!(option["data"]["allowed"], json!(["1", "2", "4", "8"]));
    let version = assert_envelope_error(
        &post_raw(
            r#"{"request_id": "a", "model": "veo3", "prompt": "x", "price_version": "1999"}"#,
        ),
        400,
        "unknown_price_version",
    );
    assert_eq!(version["data"]["active_price_version"], "2026-02-02-v1");
    let poor = assert_envelope_error(
        &post_raw(r#"{"request_id": "a", "model": "sora-2-pro", "prompt": "x"}"#),
        402,
        "insufficient_credits",
    );
    assert_eq!(
        (
            poor["data"]["required"].clone(),
            poor["data"]["available"].clone()
        ),
        (json!(330), json!(200))
    );
    assert!(poor["data"]["suggestion"]
        .as_str()
        .is_some_and(|s| s.contains("veo3_fast") || s.contains("top up")));
    let body = json!({"request_id": "conflict", "model": "z-image", "prompt": "one"});
    assert_eq!(server.post("/v1/generate", &key, &body).status, 200);
    let conflict = server.post(
        "/v1/generate",
        &key,
        &json!({"request_id": "conflict", "model": "z-image", "prompt": "two"}),
    );
    assert_envelope_error(&conflict, 409, "idempotency_conflict");

    // Auth: missing, malformed, unknown; a key without the product's scope.
    assert_envelope_error(
        &server.request("GET", "/v1/credits/balance", None, None),
        401,
        "unauthorized",
    );
    assert_envelope_error(
        &server.get("/v1/credits/balance", "cg_live_nope"),
        401,
        "unauthorized",
    );
    let basic = raw_http(&server.addr, b"GET /v1/credits/balance HTTP/1.1\r\nHost: x\r\nAuthorization: Basic abc\r\nConnection: close\r\n\r\n");
    assert_envelope_error(&basic, 401, "unauthorized");
    let forbidden = server.post(
        "/v1/generate",
        &image_only,
        &json!({"request_id": "v", "model": "veo3_fast", "prompt": "x"}),
    );
    let forbidden = assert_envelope_error(&forbidden, 403, "forbidden");
    assert_eq!(forbidden["data"]["scope"], "video");
    assert_eq!(
        server
            .post(
                "/v1/generate",
                &image_only,
                &json!({"request_id": "i", "model": "z-image", "prompt": "x"})
            )
            .status,
        200
    );

    // Someone else's job is not found, not forbidden.
    let other = sb.account("other");
    let other_key = sb.ok(&["keys", "create", "--account", &other])["key"]
        .as_str()
        .expect("key")
        .to_owned();
    assert_envelope_error(
        &server.get("/v1/generate/conflict", &other_key),
        404,
        "not_found",
    );
    assert_envelope_error(
        &server.request(
            "POST",
            "/v1/generate/conflict/cancel",
            Some(&other_key),
            Some(""),
        ),
        404,
        "not_found",
    );

    // Routing.
    assert_envelope_error(&server.get("/v2/nothing", &key), 404, "not_found");
    let delete = server.request("DELETE", "/v1/generate", Some(&key), None);
    assert_envelope_error(&delete, 405, "method_not_allowed");
    assert_eq!(
        delete.header("allow"),
        Some("POST"),
        "Allow names what the route answers"
    );

    // An oversized body is refused before it is read.
    let big = format!(
        r#"{{"request_id": "big", "model": "z-image", "prompt": "{}"}}"#,
        "x".repeat(70_000)
    );
    assert_envelope_error(&post_raw(&big), 413, "payload_too_large");

    // None of this moved money: 200 - 20 (conflict's first) - 20 (image key's job).
    let balance = server.get("/v1/credits/balance", &key).json();
    let held_or_spent = 200
        - balance["data"]["available"]
            .as_i64()
            .expect("integer credits");
    assert_eq!(
        held_or_spent, 40,
        "only the two accepted jobs hold or spend: {balance}"
    );
    let log = server.stderr();
    assert!(!log.contains("panic"), "{log}");
    stop_and_verify(&sb, server);
}

/// The access-log lines of `path` in `log`.
fn access_lines(log: &str, path: &str) -> usize {
    log.lines()
        .filter(|line| line.contains(&format!(" GET {path} 200 ")))
        .count()
}

#[test]
fn the_access_log_is_written_soon_and_in_full_at_shutdown() {
    let sb = sandbox();
    let (server, key) = start(&sb);
    for _ in 0..50 {
        assert_eq!(server.get("/v1/models/list", &key).status, 200);
    }
    // Buffered, yet written within moments without any more requests.
    let deadline = Instant::now() + Duration::from_secs(5);
    while access_lines(&server.stderr(), "/v1/models/list") < 50 {
        assert!(Instant::now() < deadline, "{}", server.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    // The last request's line is written at shutdown, however soon.
    assert_eq!(server.get("/v1/credits/balance", &key).status, 200);
    let log = server.stderr_handle();
    let status = server.signal_and_wait("TERM", Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = log.lock().map(|s| s.clone()).unwrap_or_default();
        if access_lines(&text, "/v1/credits/balance") == 1 && text.contains("creditgate: stopped") {
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_served_docs_name_this_instance() {
    let sb = sandbox();
    let (server, _key) = start(&sb);
    let doc = server
        .request("GET", "/agent/openapi.json", None, None)
        .json();
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "OpenAPI 3.1"
    );
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    assert_eq!(doc["servers"][0]["url"], json!(server.base()));
    // That it documents exactly the routes (with the Moltbook exchange on
    // and off) and that every `$ref` resolves (with the shipped catalog and
    // without) is the appliance's `the_document_and_the_router_agree_exactly`.
    let llms = server.request("GET", "/llms.txt", None, None);
    let text = String::from_utf8_lossy(&llms.body);
    assert!(
        text.contains(&server.base())
            && text.contains("JCS")
            && text.contains("insufficient_credits")
    );
    assert_eq!(
        server.request("GET", "/agent/llms.txt", None, None).body,
        llms.body
    );
}

#[test]
fn sigterm_finishes_cleanly_and_a_restart_resumes_jobs() {
    let sb = sandbox();
    let (server, key) = start(&sb);
    for i in 0..4 {
        let prompt = if i % 2 == 0 { "[slow] x" } else { "x" };
        let answer = server.post(
            "/v1/generate",
            &key,
            &json!({"request_id": format!("s{i}"), "model": "z-image", "prompt": prompt}),
        );
        assert_eq!(answer.status, 200);
    }
    let status = server
        .signal_and_wait("TERM", Duration::from_secs(20))
        .expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}");
    let server = sb.serve(FAST);
    for i in 0..4 {
        let done = wait_terminal(&server, &key, &format!("s{i}"), Duration::from_secs(30));
        assert_eq!(done["status"], "succeeded", "s{i}: {done}");
    }
    stop_and_verify(&sb, server);
}

#[test]
fn a_sigkill_mid_flight_loses_no_acknowledged_job_and_charges_each_once() {
    let sb = sandbox();
    let (server, key) = start(&sb);
    let mut acknowledged = Vec::new();
    for i in 0..12 {
        let prompt = match i % 3 {
            0 => "[slow] x",
            1 => "[fail] x",
            _ => "x",
        };
        let id = format!("k{i}");
        let answer = server.post(
            "/v1/generate",
            &key,
            &json!({"request_id": id, "model": "google/nano-banana", "prompt": prompt}),
        );
        if answer.status == 200 {
            acknowledged.push((id, prompt));
        }
    }
    assert_eq!(acknowledged.len(), 12);
    std::thread::sleep(Duration::from_millis(60));
    server.kill();
    let jobs = sb.ok(&["jobs", "list"]);
    let live = jobs["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter(|j| j["status"] == "pending" || j["status"] == "running")
        .count();
    assert!(live > 0, "the kill happened mid-flight: {jobs}");

    let server = sb.serve(FAST);
    let mut charged = 0;
    for (id, prompt) in &acknowledged {
        let done = wait_terminal(&server, &key, id, Duration::from_secs(30));
        let expected = if prompt.starts_with("[fail]") {
            "failed"
        } else {
            "succeeded"
        };
        assert_eq!(done["status"], expected, "{id}: {done}");
        if expected == "succeeded" {
            assert_eq!(done["charged"], json!(8));
            charged += 8;
        } else {
            assert_eq!(done["charged"], json!(0));
        }
    }
    let balance = server.get("/v1/credits/balance", &key).json();
    assert_eq!(balance["data"]["posted"], json!(200 - charged), "{balance}");
    assert_eq!(balance["data"]["pending"], json!(0));
    stop_and_verify(&sb, server);
}

#[test]
fn half_sent_requests_do_not_pin_the_handlers() {
    use std::io::Write;
    let sb = sandbox();
    let server = sb.serve(&["--http-threads", "2", "--read-timeout-ms", "300"]);
    let key = server.demo_key.clone().expect("key");
    // More stalled clients than handler threads: each promises a body and
    // sends a few bytes of it.
    let stalled: Vec<_> = (0..4)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(&server.addr).expect("connect");
            let head = format!(
                "POST /v1/credits/estimate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Length: 100\r\n\r\n{{\"mo"
            );
            stream.write_all(head.as_bytes()).expect("send part");
            stream
        })
        .collect();
    let started = Instant::now();
    let answer = server.get("/v1/credits/balance", &key);
    assert_eq!(answer.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered while clients stall"
    );
    drop(stalled);
}

#[test]
fn a_credential_past_its_rate_limit_gets_429_with_retry_after() {
    let sb = sandbox();
    let server = sb.serve(&["--rate-limit-per-sec", "1", "--rate-limit-burst", "2"]);
    let key = server.demo_key.clone().expect("key");
    assert_eq!(server.get("/v1/credits/balance", &key).status, 200);
    assert_eq!(server.get("/v1/credits/balance", &key).status, 200);
    let limited = server.get("/v1/credits/balance", &key);
    let body = assert_envelope_error(&limited, 429, "rate_limited");
    assert_eq!(body["data"]["retry_after"], json!(1));
    assert_eq!(limited.header("retry-after"), Some("1"));
    // Another credential has its own bucket; public routes are not limited.
    let account = sb.first_account();
    let other = sb.ok(&["keys", "create", "--account", &account])["key"]
        .as_str()
        .expect("key")
        .to_owned();
    assert_eq!(server.get("/v1/credits/balance", &other).status, 200);
    assert_eq!(server.request("GET", "/healthz", None, None).status, 200);
}

/// Connections in the burst test: more than tiny_http's four idle pool
/// threads and than the handler threads.
const BURST_CONNECTIONS: usize = 40;

#[test]
fn a_burst_of_keep_alive_connections_is_served_at_once() {
    // Every connection opens at the same moment and stays open (keep-alive
    // holds its pool thread) until all have had their first answer or given
    // up. Before the vendored tiny_http fix, connections that arrived
    // together were queued behind threads promised to others and got no
    // answer until another connection closed; here none closes, so they
    // would give up after the (generous) wait below.
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::{Arc, Barrier};
    let sb = sandbox();
    let server = sb.serve(&["--read-timeout-ms", "60000", "--http-threads", "4"]);
    let opened = Arc::new(Barrier::new(BURST_CONNECTIONS));
    let answered = Arc::new(Barrier::new(BURST_CONNECTIONS));
    let clients: Vec<_> = (0..BURST_CONNECTIONS)
        .map(|_| {
            let (addr, opened, answered) = (server.addr.clone(), opened.clone(), answered.clone());
            std::thread::spawn(move || {
                let stream = std::net::TcpStream::connect(&addr).expect("connect");
                stream
                    .set_read_timeout(Some(Duration::from_secs(15)))
                    .expect("timeout");
                let mut reader = BufReader::new(stream);
                opened.wait();
                let sent = reader
                    .get_mut()
                    .write_all(b"GET /healthz HTTP/1.1\r\nHost: burst\r\n\r\n");
                let mut status_line = String::new();
                let status = sent
                    .and_then(|()| reader.read_line(&mut status_line))
                    .map(|_| status_line.split_whitespace().nth(1).map(str::to_owned));
                // Drain the rest of the answer, then keep the connection open
                // until every client is done.
                let mut rest = [0u8; 512];
                let _ = reader
                    .get_mut()
                    .set_read_timeout(Some(Duration::from_millis(50)));
                let _ = reader.read(&mut rest);
                answered.wait();
                status.ok().flatten()
            })
        })
        .collect();
    let statuses: Vec<Option<String>> = clients
        .into_iter()
        .map(|client| client.join().expect("client thread"))
        .collect();
    let unanswered = statuses
        .iter()
        .filter(|status| status.as_deref() != Some("200"))
        .count();
    assert_eq!(
        unanswered, 0,
        "{unanswered} of {BURST_CONNECTIONS} connections got no answer: {statuses:?}"
    );
}
