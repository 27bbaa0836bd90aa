//! Black-box tests of the AgentName (reference 002) and KiwiWhale
//! (reference 004) surfaces of `creditgate serve` on the fixture provider:
//! each reference's examples run verbatim, their error envelopes and
//! statuses, plan caps through AgentName, self-registration with its
//! welcome grant and per-address limit, the top-up refusals; and one
//! scenario (success, provider failure, replay, insufficient credits) run
//! through every dialect moving exactly the same money. `ledger verify`
//! holds after each.

use std::time::{Duration, Instant};

use creditgate_tests::{HttpResponse, Sandbox, Server};
use serde_json::{json, Value};

const FIXTURE_REPLY: &str = include_str!("../../fixtures/media/reply.txt");

fn sandbox() -> Sandbox {
    Sandbox::new(env!("CARGO_BIN_EXE_creditgate"))
}

fn catalog(name: &str) -> String {
    format!("{}/../fixtures/catalogs/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn stop_and_verify(sb: &Sandbox, server: Server) {
    drop(server);
    let run = sb.run(&["ledger", "verify"]);
    assert_eq!(run.code, 0, "ledger verify: {}{}", run.stdout, run.stderr);
}

/// POSTs the JSON text `body` exactly as written.
fn post_text(server: &Server, path: &str, key: &str, body: &str) -> HttpResponse {
    server.post_with_headers(path, key, &[], body)
}

/// Asks `probe` every 20 ms until it gives a value, for at most 10 s.
fn eventually<T>(mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A new account with `credits` and an admin key for it.
fn funded_key(sb: &Sandbox, name: &str, credits: &str, plan: Option<&str>) -> String {
    let mut args = vec!["accounts", "create", "--name", name];
    if let Some(plan) = plan {
        args.extend(["--plan", plan]);
    }
    let account = sb.ok(&args)["id"].as_str().expect("id").to_owned();
    if credits != "0" {
        sb.ok(&[
            "credits",
            "grant",
            "--account",
            &account,
            "--amount",
            credits,
            "--memo",
            "test",
        ]);
    }
    sb.ok(&[
        "keys",
        "create",
        "--account",
        &account,
        "--name",
        name,
        "--scope",
        "admin",
    ])["key"]
        .as_str()
        .expect("key")
        .to_owned()
}

fn available(server: &Server, key: &str) -> String {
    server.get("/v1/credits/balance", key).json()["data"]["available"].to_string()
}

/// Polls AgentName's status route until the job leaves `queued` and
/// `processing`.
fn agentname_final(server: &Server, key: &str, job_id: &str) -> Value {
    eventually(|| {
        let status = server.get(&format!("/api/status/{job_id}"), key).json();
        (!matches!(status["status"].as_str(), Some("queued" | "processing"))).then_some(status)
    })
}

/// Polls KiwiWhale's jobs route until the job is final.
fn kiwiwhale_final(server: &Server, key: &str, job_id: &str) -> Value {
    eventually(|| {
        let job = server
            .get(&format!("/api/v1/jobs.php?job_id={job_id}"), key)
            .json();
        (!matches!(job["status"].as_str(), Some("queued" | "processing"))).then_some(job)
    })
}

/// Reference 002's three examples, verbatim: an image, a video and a chat
/// message; each job is charged its catalog price once.
#[test]
fn agentname_reference_examples_run_verbatim() {
    let sb = sandbox();
    let server = sb.serve(&[
        "--poll-interval-ms",
        "20",
        "--default-model",
        "image=z-image",
        "--default-model",
        "video=sora-2",
        "--default-model",
        "chat=gpt-4o-mini",
    ]);
    let key = funded_key(&sb, "agentname", "1000", None);

    let image = post_text(
        &server,
        "/api/generate",
        &key,
        r#"{
"prompt": "A futuristic city at night",
"type": "image",
"aspect_ratio": "16:9"
}"#,
    );
    assert_eq!(image.status, 200, "{}", image.json());
    let queued = image.json();
    assert_eq!(queued["status"], "queued");
    let job_id = queued["jobId"].as_str().expect("jobId").to_owned();
    let done = agentname_final(&server, &key, &job_id);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["type"], "image");
    let url = done["url"].as_str().expect("url");
    let file = server.request(
        "GET",
        url.strip_prefix(&server.base()).expect("ours"),
        None,
        None,
    );
    assert_eq!(file.status, 200);
    assert_eq!(file.header("content-type"), Some("image/png"));
    // It ran on the operator's default image model.
    let rynjer = server.get(&format!("/v1/generate/{job_id}"), &key).json();
    assert_eq!(rynjer["data"]["model"], "z-image");

    let video = post_text(
        &server,
        "/api/generate",
        &key,
        r#"{
"prompt": "Ocean waves at sunset",
"type": "video",
"duration": 10,
"aspect_ratio": "16:9"
}"#,
    );
    assert_eq!(video.status, 200, "{}", video.json());
    let video_id = video.json()["jobId"].as_str().expect("jobId").to_owned();
    assert_eq!(
        agentname_final(&server, &key, &video_id)["status"],
        "completed"
    );

    let chat = post_text(
        &server,
        "/api/chat",
        &key,
        r#"{
"message": "What can you help me with?"
}"#,
    );
    assert_eq!(chat.status, 200, "{}", chat.json());
    let reply = chat.json();
    assert_eq!(reply["reply"], FIXTURE_REPLY);
    let stamp = reply["timestamp"].as_str().expect("timestamp");
    assert!(stamp.starts_with("20") && stamp.ends_with('Z'), "{stamp}");

    // Prices from the catalog, charged once each.
    let price = |body: Value| {
        server.post("/v1/credits/estimate", &key, &body).json()["data"]["credits"].to_string()
    };
    let image_price = price(json!({"model": "z-image", "aspect_ratio": "16:9"}));
    let video_price = price(json!({"model": "sora-2", "duration": 10, "aspect_ratio": "16:9"}));
    let chat_price = price(json!({"model": "gpt-4o-mini"}));
    let spent: f64 = [image_price, video_price, chat_price]
        .iter()
        .map(|p| p.parse::<f64>().expect("number"))
        .sum();
    let left: f64 = available(&server, &key).parse().expect("number");
    assert!(
        (1000.0 - spent - left).abs() < 1e-9,
        "spent {spent}, left {left}"
    );

    // The operator's defaults are listed for agents.
    let llms =
        String::from_utf8(server.request("GET", "/llms.txt", None, None).body).expect("utf-8");
    assert!(
        llms.contains("  - image: z-image") && llms.contains("  - video: sora-2"),
        "{llms}"
    );
    stop_and_verify(&sb, server);
}

/// AgentName's envelope `{"error", "code"}` with only its five statuses,
/// our machine code kept in `reason`; a failure of the provider, a replay
/// by `Idempotency-Key`, and a plan's daily cap with its headers.
#[test]
fn agentname_errors_use_the_reference_statuses_and_plans_cap_per_day() {
    let sb = sandbox();
    let server = sb.serve(&[
        "--poll-interval-ms",
        "20",
        "--default-model",
        "image=z-image",
    ]);
    let key = funded_key(&sb, "rich", "1000", None);
    let check = |response: &HttpResponse, status: u16, reason: &str| {
        let body = response.json();
        assert_eq!(response.status, status, "{body}");
        assert_eq!(body["code"], status, "{body}");
        assert_eq!(body["reason"], reason, "{body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    };
    check(
        &post_text(
            &server,
            "/api/generate",
            "nope",
            r#"{"prompt":"x","type":"image"}"#,
        ),
        401,
        "unauthorized",
    );
    check(
        &post_text(&server, "/api/generate", &key, r#"{"prompt":"x"}"#),
        400,
        "invalid_request",
    );
    check(
        &post_text(
            &server,
            "/api/generate",
            &key,
            r#"{"prompt":"x","type":"music"}"#,
        ),
        400,
        "invalid_request",
    );
    check(
        &post_text(
            &server,
            "/api/generate",
            &key,
            r#"{"prompt":"x","type":"image","model":"m"}"#,
        ),
        400,
        "invalid_request",
    );
    check(
        &post_text(
            &server,
            "/api/generate",
            &key,
            r#"{"prompt":"x","type":"image","duration":5}"#,
        ),
        400,
        "invalid_request",
    );
    check(&server.get("/api/status/job_nope", &key), 404, "not_found");
    let poor = funded_key(&sb, "poor", "0", None);
    check(
        &post_text(
            &server,
            "/api/generate",
            &poor,
            r#"{"prompt":"x","type":"image"}"#,
        ),
        400,
        "insufficient_credits",
    );
    check(
        &post_text(&server, "/api/chat", &poor, r#"{"message":"hi"}"#),
        400,
        "insufficient_credits",
    );
    // A method the route does not take is HTTP's own 405.
    assert_eq!(
        server
            .request("DELETE", "/api/chat", Some(&key), None)
            .status,
        405
    );

    // The provider fails the job: failed, with the reason, and no charge.
    let before = available(&server, &key);
    let failing = post_text(
        &server,
        "/api/generate",
        &key,
        r#"{"prompt":"[fail] x","type":"image"}"#,
    );
    let failed = agentname_final(&server, &key, failing.json()["jobId"].as_str().expect("id"));
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["reason"], "generation_failed");
    assert_eq!(available(&server, &key), before);
    let chat = post_text(&server, "/api/chat", &key, r#"{"message":"[fail] hi"}"#);
    check(&chat, 502, "generation_failed");
    assert!(chat.json()["jobId"].is_string());
    assert_eq!(available(&server, &key), before);

    // The same Idempotency-Key is the same job, charged once.
    let body = r#"{"prompt":"a fox","type":"image"}"#;
    let headers = [("Idempotency-Key", "an-replay-1")];
    let first = server
        .post_with_headers("/api/generate", &key, &headers, body)
        .json();
    let again = server
        .post_with_headers("/api/generate", &key, &headers, body)
        .json();
    assert_eq!(first["jobId"], again["jobId"]);
    agentname_final(&server, &key, first["jobId"].as_str().expect("id"));
    let other = server.post_with_headers(
        "/api/generate",
        &key,
        &headers,
        r#"{"prompt":"a cat","type":"image"}"#,
    );
    check(&other, 409, "idempotency_conflict");
    let malformed = server.post_with_headers(
        "/api/generate",
        &key,
        &[("Idempotency-Key", "a\u{7f}b")],
        body,
    );
    check(&malformed, 400, "invalid_request");

    // Reference 002's Free plan: 2 videos a day; the third is 429.
    let free = funded_key(&sb, "free", "1000", Some("free"));
    for left in ["1", "0"] {
        let ok = post_text(
            &server,
            "/api/generate",
            &free,
            r#"{"prompt":"waves","type":"video"}"#,
        );
        assert_eq!(ok.status, 200, "{}", ok.json());
        assert_eq!(ok.header("x-ratelimit-limit"), Some("2"));
        assert_eq!(ok.header("x-ratelimit-remaining"), Some(left));
    }
    let capped = post_text(
        &server,
        "/api/generate",
        &free,
        r#"{"prompt":"waves","type":"video"}"#,
    );
    check(&capped, 429, "plan_limit_reached");
    assert_eq!(capped.header("x-ratelimit-remaining"), Some("0"));
    assert!(capped.header("x-ratelimit-reset").is_some());
    assert!(capped.header("retry-after").is_some());
    // Images are counted apart.
    assert_eq!(
        post_text(
            &server,
            "/api/generate",
            &free,
            r#"{"prompt":"x","type":"image"}"#
        )
        .status,
        200
    );
    stop_and_verify(&sb, server);
}

#[test]
fn a_default_model_that_is_not_of_its_product_stops_serve() {
    let sb = sandbox();
    let run = sb.run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--default-model",
        "image=veo3",
    ]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("--default-model image") && run.stderr.contains("veo3"),
        "{}",
        run.stderr
    );
    let run = sb.run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--default-model",
        "image",
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("PRODUCT=MODEL"), "{}", run.stderr);
}

/// Reference 004's walkthrough, verbatim: register, models, generate,
/// poll, use `outputs[0].url`; the welcome grant is a ledger transfer.
#[test]
fn kiwiwhale_reference_walkthrough_runs_verbatim() {
    let sb = sandbox();
    let kiwi = catalog("kiwiwhale.json");
    let server = sb.serve(&[
        "--poll-interval-ms",
        "20",
        "--catalog",
        &kiwi,
        "--self-registration",
        "--welcome-credits",
        "1",
    ]);
    let registered = server.request(
        "POST",
        "/api/v1/agent_register.php",
        None,
        Some("{\n\"name\": \"Dog Image Agent\"\n}"),
    );
    assert_eq!(registered.status, 200, "{}", registered.json());
    let body = registered.json();
    assert_eq!(body["success"], true);
    assert_eq!(body["account_type"], "agent");
    assert_eq!(body["credits"].to_string(), "1");
    let api_key = body["api_key"].as_str().expect("api_key").to_owned();
    let user_id = body["user_id"].as_str().expect("user_id").to_owned();

    let credits = server.get("/api/v1/credits.php", &api_key).json();
    assert_eq!(credits["credits"].to_string(), "1");
    assert_eq!(credits["account_type"], "agent");

    let models = server.get("/api/v1/models.php", &api_key);
    assert_eq!(models.status, 200);
    let listing = models.json();
    assert_eq!(listing["success"], true);
    let entries = listing["models"].as_array().expect("models");
    assert_eq!(listing["count"].as_u64(), Some(entries.len() as u64));
    let entry = |model: &str| {
        entries
            .iter()
            .find(|m| m["public_model"] == model)
            .unwrap_or_else(|| panic!("{model} listed"))
            .clone()
    };
    // Exact decimals, as the reference's table prints them.
    assert_eq!(
        entry("gpt-image-2/image-transform")["cost_credits"].to_string(),
        "0.3165"
    );
    assert_eq!(entry("z-image/turbo")["cost_credits"].to_string(), "0.02");
    let z = entry("z-image");
    assert_eq!(z["product_id"], "z-image");
    assert_eq!(z["category"], "text-to-image");
    assert!(z["schema"]["properties"]["prompt"].is_object(), "{z}");

    let generated = post_text(
        &server,
        "/api/v1/generate.php",
        &api_key,
        "{\n\"model\": \"z-image\",\n\"prompt\": \"a realistic dog sitting in a park\"\n}",
    );
    assert_eq!(generated.status, 200, "{}", generated.json());
    let queued = generated.json();
    assert_eq!(queued["status"], "queued");
    assert_eq!(queued["auto_topup_applied"], false);
    assert_eq!(queued["auto_topup_message"], "");
    let job_id = queued["job_id"].as_str().expect("job_id").to_owned();
    let job = kiwiwhale_final(&server, &api_key, &job_id);
    assert_eq!(job["status"], "completed", "{job}");
    assert!(job["seed"].is_i64() || job["seed"].is_u64(), "{job}");
    let url = job["outputs"][0]["url"].as_str().expect("outputs[0].url");
    assert_eq!(job["outputs"][0]["mime"], "image/png");
    let file = server.request(
        "GET",
        url.strip_prefix(&server.base()).expect("ours"),
        None,
        None,
    );
    assert_eq!(file.status, 200);
    let price = z["cost_credits"].to_string().parse::<f64>().expect("price");
    let left: f64 = server.get("/api/v1/credits.php", &api_key).json()["credits"]
        .to_string()
        .parse()
        .expect("credits");
    assert!(
        (1.0 - price - left).abs() < 1e-9,
        "price {price}, left {left}"
    );

    // The welcome grant is a ledger transfer on the new account.
    let history = sb.ok(&["credits", "history", "--account", &user_id]);
    let text = history.to_string();
    assert!(text.contains("welcome grant"), "{text}");
    stop_and_verify(&sb, server);
}

/// KiwiWhale's errors: `INSUFFICIENT_CREDITS`, `Unknown or inactive
/// model`, the honest top-up refusals, self-registration off and limited
/// per address, inputs it cannot carry, and a model's own prompt member.
#[test]
fn kiwiwhale_errors_and_refusals_are_its_own_and_honest() {
    let sb = sandbox();
    let kiwi = catalog("kiwiwhale.json");
    sb.ok(&["prices", "import", &catalog("rynjer.json")]);
    let server = sb.serve(&["--poll-interval-ms", "20", "--catalog", &kiwi]);
    let check = |response: &HttpResponse, status: u16, error: &str, code: &str| {
        let body = response.json();
        assert_eq!(response.status, status, "{body}");
        assert_eq!(body["success"], false, "{body}");
        assert_eq!(body["error"], error, "{body}");
        assert_eq!(body["code"], code, "{body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    };
    // Self-registration is off unless the operator turns it on.
    check(
        &server.request(
            "POST",
            "/api/v1/agent_register.php",
            None,
            Some(r#"{"name":"x"}"#),
        ),
        403,
        "not_configured",
        "not_configured",
    );
    let poor = funded_key(&sb, "poor", "0.01", None);
    let refused = post_text(
        &server,
        "/api/v1/generate.php",
        &poor,
        r#"{"model":"z-image","prompt":"a dog"}"#,
    );
    check(
        &refused,
        402,
        "INSUFFICIENT_CREDITS",
        "insufficient_credits",
    );
    assert!(refused.json()["message"]
        .as_str()
        .expect("message")
        .starts_with("Not enough credits"));
    // Unknown, and a model of a price version that is not active.
    for model in ["z-imagee", "nano-banana-pro"] {
        let body = json!({"model": model, "prompt": "a dog"}).to_string();
        check(
            &post_text(&server, "/api/v1/generate.php", &poor, &body),
            400,
            "Unknown or inactive model",
            "unknown_model",
        );
    }
    check(
        &post_text(
            &server,
            "/api/v1/agent_topup.php",
            &poor,
            r#"{"credits": 10}"#,
        ),
        403,
        "not_configured",
        "not_configured",
    );
    check(
        &post_text(&server, "/api/v1/agent_setup_payment.php", &poor, "{}"),
        403,
        "not_configured",
        "not_configured",
    );
    let confirmed = post_text(
        &server,
        "/api/v1/agent_confirm_payment_method.php",
        &poor,
        "{}",
    );
    assert_eq!(confirmed.status, 200);
    assert_eq!(
        confirmed.json()["ready"],
        false,
        "no card can be saved here"
    );
    check(
        &server.get("/api/v1/credits.php", "nope"),
        401,
        "unauthorized",
        "unauthorized",
    );
    check(
        &server.get("/api/v1/jobs.php", &poor),
        400,
        "invalid_request",
        "invalid_request",
    );
    check(
        &server.get("/api/v1/jobs.php?job_id=job_nope", &poor),
        404,
        "not_found",
        "not_found",
    );
    // An input it cannot carry is refused by name, never dropped.
    let rich = funded_key(&sb, "rich", "100", None);
    let video = r#"{"model":"ffmpeg/extract-frame","video_url":"https://example.com/v.mp4"}"#;
    let refused = post_text(&server, "/api/v1/generate.php", &rich, video);
    check(&refused, 403, "not_configured", "not_configured");
    assert!(refused.json()["message"]
        .as_str()
        .expect("m")
        .contains("video_url"));
    // Text-to-speech takes its prompt as `text`, chat as `messages`.
    let tts = post_text(
        &server,
        "/api/v1/generate.php",
        &rich,
        r#"{"model":"kiwiwhale/s2-pro/tts","text":"hello there"}"#,
    );
    assert_eq!(tts.status, 200, "{}", tts.json());
    assert_eq!(
        kiwiwhale_final(&server, &rich, tts.json()["job_id"].as_str().expect("id"))["status"],
        "completed"
    );
    let wrong = post_text(
        &server,
        "/api/v1/generate.php",
        &rich,
        r#"{"model":"kiwiwhale/s2-pro/tts","prompt":"hello"}"#,
    );
    check(&wrong, 400, "invalid_request", "invalid_request");
    let chat = json!({"model": "gpt-5-mini/chat", "messages": [{"role": "user", "content": "hi"}]});
    let chat = post_text(&server, "/api/v1/generate.php", &rich, &chat.to_string());
    assert_eq!(chat.status, 200, "{}", chat.json());
    // A request_id makes a generate idempotent.
    let body = r#"{"model":"z-image","prompt":"a dog","request_id":"kw-replay-1"}"#;
    let first = post_text(&server, "/api/v1/generate.php", &rich, body).json();
    let again = post_text(&server, "/api/v1/generate.php", &rich, body).json();
    assert_eq!(first["job_id"], again["job_id"]);
    stop_and_verify(&sb, server);

    // On, with a limit of 2 per address per hour: the third is 429.
    let server = sb.serve(&[
        "--catalog",
        &kiwi,
        "--self-registration",
        "--registrations-per-hour",
        "2",
    ]);
    for _ in 0..2 {
        let ok = server.request("POST", "/api/v1/agent_register.php", None, Some("{}"));
        assert_eq!(ok.status, 200, "{}", ok.json());
        assert_eq!(ok.json()["credits"].to_string(), "0");
    }
    let limited = server.request("POST", "/api/v1/agent_register.php", None, Some("{}"));
    check(&limited, 429, "rate_limited", "rate_limited");
    assert!(limited.header("retry-after").is_some());
    stop_and_verify(&sb, server);
}

/// One scenario through each dialect: a provider failure, a success, a
/// replay of the success's request id, a request the wallet cannot
/// cover, and (Rynjer's alone) a cancel. Each account starts with 30 credits and ends with the same
/// balance; a request id carried by one dialect is the same job in
/// another.
#[test]
fn one_scenario_moves_the_same_money_through_every_dialect() {
    let sb = sandbox();
    let server = sb.serve(&[
        "--poll-interval-ms",
        "20",
        "--default-model",
        "image=z-image",
    ]);
    let mut balances = Vec::new();

    // Rynjer.
    let key = funded_key(&sb, "rynjer", "30", None);
    let generate = |id: &str, prompt: &str| {
        server.post(
            "/v1/generate",
            &key,
            &json!({"request_id": id, "model": "z-image", "prompt": prompt}),
        )
    };
    let poll = |id: &str| {
        eventually(|| {
            let job = server.get(&format!("/v1/generate/{id}"), &key).json()["data"].clone();
            matches!(job["status"].as_str(), Some("succeeded" | "failed")).then_some(job)
        })
    };
    assert_eq!(generate("f-1", "[fail] a fox").status, 200);
    assert_eq!(poll("f-1")["status"], "failed");
    assert_eq!(generate("s-1", "a fox").status, 200);
    assert_eq!(poll("s-1")["status"], "succeeded");
    assert_eq!(generate("s-1", "a fox").json()["data"]["replayed"], true);
    assert_eq!(generate("n-1", "another").status, 402);
    // Rynjer alone has a cancel: it releases the hold at once.
    let hanging = server.post(
        "/v1/generate",
        &key,
        &json!({"request_id": "c-1", "model": "google/nano-banana", "prompt": "[hang] x"}),
    );
    assert_eq!(hanging.status, 200, "{}", hanging.json());
    let canceled = server.request("POST", "/v1/generate/c-1/cancel", Some(&key), Some("{}"));
    assert_eq!(
        canceled.json()["data"]["status"],
        "canceled",
        "{}",
        canceled.json()
    );
    balances.push(("rynjer", available(&server, &key)));

    // OpenAI.
    let key = funded_key(&sb, "openai", "30", None);
    let image = |id: &str, prompt: &str| {
        let body = json!({"model": "z-image", "prompt": prompt}).to_string();
        server.post_with_headers(
            "/v1/images/generations",
            &key,
            &[("Idempotency-Key", id)],
            &body,
        )
    };
    assert_eq!(image("f-1", "[fail] a fox").status, 502);
    let success = image("s-1", "a fox");
    assert_eq!(success.status, 200, "{}", success.json());
    let replay = image("s-1", "a fox");
    assert_eq!(replay.status, 200);
    assert_eq!(image("n-1", "another").status, 402);
    // The request id carried by OpenAI is the same job through Rynjer.
    let same = server.post(
        "/v1/generate",
        &key,
        &json!({"request_id": "s-1", "model": "z-image", "prompt": "a fox"}),
    );
    assert_eq!(same.json()["data"]["replayed"], true, "{}", same.json());
    balances.push(("openai", available(&server, &key)));

    // AgentName.
    let key = funded_key(&sb, "agentname", "30", None);
    let generate = |id: &str, prompt: &str| {
        let body = json!({"prompt": prompt, "type": "image"}).to_string();
        server.post_with_headers("/api/generate", &key, &[("Idempotency-Key", id)], &body)
    };
    let failing = generate("f-1", "[fail] a fox").json();
    assert_eq!(
        agentname_final(&server, &key, failing["jobId"].as_str().expect("id"))["status"],
        "failed"
    );
    let first = generate("s-1", "a fox").json();
    assert_eq!(
        agentname_final(&server, &key, first["jobId"].as_str().expect("id"))["status"],
        "completed"
    );
    assert_eq!(generate("s-1", "a fox").json()["jobId"], first["jobId"]);
    let refused = generate("n-1", "another");
    assert_eq!(
        (refused.status, refused.json()["reason"].clone()),
        (400, json!("insufficient_credits"))
    );
    balances.push(("agentname", available(&server, &key)));

    // KiwiWhale (over the same catalog: its surface serves the active one).
    let key = funded_key(&sb, "kiwiwhale", "30", None);
    let generate = |id: &str, prompt: &str| {
        let body = json!({"model": "z-image", "prompt": prompt, "request_id": id}).to_string();
        post_text(&server, "/api/v1/generate.php", &key, &body)
    };
    let failing = generate("f-1", "[fail] a fox").json();
    assert_eq!(
        kiwiwhale_final(&server, &key, failing["job_id"].as_str().expect("id"))["status"],
        "failed"
    );
    let first = generate("s-1", "a fox").json();
    assert_eq!(
        kiwiwhale_final(&server, &key, first["job_id"].as_str().expect("id"))["status"],
        "completed"
    );
    assert_eq!(generate("s-1", "a fox").json()["job_id"], first["job_id"]);
    assert_eq!(generate("n-1", "another").status, 402);
    balances.push(("kiwiwhale", available(&server, &key)));

    let (_, expected) = &balances[0];
    assert_eq!(expected, "10", "30 less one z-image at 20");
    for (dialect, balance) in &balances {
        assert_eq!(balance, expected, "{dialect}: {balances:?}");
    }
    stop_and_verify(&sb, server);
}
