//! Black-box tests of spend caps per API key through the real binary: the
//! operator caps a key with `keys caps`, concurrent generates over HTTP
//! stop exactly at the cap (LiteLLM #34732) with 429 `spend_cap_reached`
//! and `Retry-After` in every dialect, a failed job gives its share back,
//! and `ledger verify` holds.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use creditgate_tests::{HttpResponse, Sandbox, Server};
use serde_json::{json, Value};

fn sandbox() -> Sandbox {
    Sandbox::new(env!("CARGO_BIN_EXE_creditgate"))
}

fn generate(server: &Server, key: &str, request_id: &str, prompt: &str) -> HttpResponse {
    server.post(
        "/v1/generate",
        key,
        &json!({"request_id": request_id, "model": "z-image", "prompt": prompt}),
    )
}

fn spend(sb: &Sandbox, key_id: &str) -> Value {
    sb.ok(&["keys", "caps", key_id])
}

/// A key (id and secret) of a new account granted 1,000 credits.
fn funded_key(sb: &Sandbox) -> (String, String) {
    let account = sb.account("agent");
    sb.ok(&[
        "credits",
        "grant",
        "--account",
        &account,
        "--amount",
        "1000",
    ]);
    let created = sb.ok(&["keys", "create", "--account", &account, "--scope", "image"]);
    (
        created["id"].as_str().expect("id").to_owned(),
        created["key"].as_str().expect("key").to_owned(),
    )
}

#[test]
fn spend_cap_holds_over_http_litellm_34732() {
    let sb = sandbox();
    let (key_id, key) = funded_key(&sb);
    let capped = sb.ok(&["keys", "caps", &key_id, "--daily", "60", "--monthly", "500"]);
    assert_eq!(capped["daily_cap"], json!(60));
    assert_eq!(capped["spent_today"], json!(0));
    let server = sb.serve(&[
        "--rate-limit-per-sec",
        "0",
        "--http-threads",
        "16",
        "--poll-interval-ms",
        "20",
    ]);
    let barrier = Barrier::new(12);
    let answers: Vec<HttpResponse> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..12)
            .map(|i| {
                let (barrier, server, key) = (&barrier, &server, &key);
                scope.spawn(move || {
                    barrier.wait();
                    generate(server, key, &format!("r{i}"), "a cat")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    // z-image holds 20: three fit a cap of 60.
    assert_eq!(answers.iter().filter(|a| a.status == 200).count(), 3);
    for refused in answers.iter().filter(|a| a.status != 200) {
        let body = refused.json();
        assert_eq!(refused.status, 429, "{body}");
        assert_eq!(body["data"]["error"], "spend_cap_reached");
        assert_eq!(body["data"]["period"], "day");
        assert_eq!(body["data"]["limit"], json!(60));
        assert_eq!(body["data"]["spent"], json!(60));
        assert!(refused.header("retry-after").is_some(), "{body}");
    }
    // Other dialects answer the same refusal in their own envelope.
    let openai = server.post(
        "/v1/images/generations",
        &key,
        &json!({"model": "z-image", "prompt": "a cat"}),
    );
    assert_eq!(openai.status, 429);
    assert_eq!(openai.json()["error"]["code"], "spend_cap_reached");
    assert_eq!(spend(&sb, &key_id)["spent_today"], json!(60));
    drop(server);
    let run = sb.run(&["ledger", "verify"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
}

#[test]
fn a_failed_job_gives_its_share_back() {
    let sb = sandbox();
    let (key_id, key) = funded_key(&sb);
    sb.ok(&["keys", "caps", &key_id, "--daily", "20"]);
    let server = sb.serve(&["--poll-interval-ms", "20"]);
    assert_eq!(generate(&server, &key, "fails", "[fail] a cat").status, 200);
    assert_eq!(generate(&server, &key, "next", "a cat").status, 429);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let job = server.get("/v1/generate/fails", &key).json();
        if job["data"]["status"] == "failed" {
            break;
        }
        assert!(Instant::now() < deadline, "never failed: {job}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(generate(&server, &key, "next", "a cat").status, 200);
    drop(server);
    assert_eq!(spend(&sb, &key_id)["spent_today"], json!(20));
    // Clearing the caps, and the operator's refusals.
    let cleared = sb.ok(&["keys", "caps", &key_id, "--clear"]);
    assert!(cleared["daily_cap"].is_null(), "{cleared}");
    for (args, exit) in [
        (vec!["keys", "caps", "key_nope"], 1),
        (vec!["keys", "caps", &key_id, "--daily", "-1"], 1),
        (vec!["keys", "caps", &key_id, "--daily", "1", "--clear"], 2),
    ] {
        let run = sb.run(&args);
        assert_eq!(run.code, exit, "{args:?}: {}{}", run.stdout, run.stderr);
    }
    let run = sb.run(&["ledger", "verify"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
}
