//! Black-box tests of redemption codes through the real binary: the
//! operator's `codes create|list|revoke`, agents' `POST /v1/credits/redeem`
//! racing for a code's last uses over HTTP (one-api #2399, new-api #4302),
//! refusals in the envelope that move nothing, the secret printed once and
//! stored nowhere; `ledger verify` after each.

use std::sync::Barrier;

use creditgate_tests::{HttpResponse, Sandbox, Server};
use serde_json::{json, Value};

fn sandbox() -> Sandbox {
    Sandbox::new(env!("CARGO_BIN_EXE_creditgate"))
}

/// Stops `server`, then checks the ledger it leaves.
fn stop_and_verify(sb: &Sandbox, server: Server) {
    drop(server);
    let run = sb.run(&["ledger", "verify"]);
    assert_eq!(run.code, 0, "ledger verify: {}{}", run.stdout, run.stderr);
}

/// A new account and a key for it (no product scope is needed to redeem).
fn account_with_key(sb: &Sandbox, name: &str) -> (String, String) {
    let account = sb.account(name);
    let key = sb.ok(&["keys", "create", "--account", &account, "--scope", "image"])["key"]
        .as_str()
        .expect("key")
        .to_owned();
    (account, key)
}

fn redeem(server: &Server, key: &str, code: &str) -> HttpResponse {
    server.post("/v1/credits/redeem", key, &json!({ "code": code }))
}

fn error_of(response: &HttpResponse) -> String {
    response.json()["data"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Each of `keys` redeems `code` at once (released by one barrier).
fn race(server: &Server, keys: &[String], code: &str) -> Vec<HttpResponse> {
    let barrier = Barrier::new(keys.len());
    std::thread::scope(|scope| {
        let handles: Vec<_> = keys
            .iter()
            .map(|key| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    redeem(server, key, code)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    })
}

#[test]
fn redeem_code_once_over_http_one_api_2399() {
    let sb = sandbox();
    let created = sb.ok(&[
        "codes", "create", "--amount", "2.5", "--uses", "10", "--memo", "launch",
    ]);
    let secret = created["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("cg_code_"), "{created}");
    assert_eq!(created["uses_max"], 10);
    assert_eq!(created["once_per_account"], true);
    let listed = sb.ok(&["codes", "list"]);
    assert!(
        !listed.to_string().contains(&secret),
        "a listing shows no secret"
    );
    assert_eq!(listed["codes"][0]["id"], created["id"]);

    let keys: Vec<String> = (0..40)
        .map(|i| account_with_key(&sb, &format!("agent {i}")).1)
        .collect();
    let server = sb.serve(&["--rate-limit-per-sec", "0", "--http-threads", "16"]);
    let answers = race(&server, &keys, &secret);
    let granted: Vec<&HttpResponse> = answers.iter().filter(|a| a.status == 200).collect();
    assert_eq!(granted.len(), 10);
    for answer in answers.iter().filter(|a| a.status != 200) {
        assert_eq!(answer.status, 409, "{}", answer.json());
        assert_eq!(error_of(answer), "code_used_up");
    }
    let first = granted[0].json();
    assert_eq!(first["data"]["credits"], json!(2.5));
    assert_eq!(first["data"]["code_id"], created["id"]);
    let credited: f64 = keys
        .iter()
        .map(|key| {
            server.get("/v1/credits/balance", key).json()["data"]["available"]
                .as_f64()
                .expect("available")
        })
        .sum();
    assert_eq!(credited, 25.0);
    let listed = sb.ok(&["codes", "list"]);
    assert_eq!(listed["codes"][0]["uses"], 10);
    // The secret is nowhere in the database files.
    for file in ["creditgate.db", "creditgate.db-wal"] {
        let bytes = std::fs::read(sb.dir().join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the code's secret is stored in {file}"
        );
    }
    stop_and_verify(&sb, server);
}

#[test]
fn redeem_code_once_per_account_over_http_new_api_4302() {
    let sb = sandbox();
    let secret = sb.ok(&["codes", "create", "--amount", "3", "--uses", "100"])["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let repeatable = sb.ok(&[
        "codes",
        "create",
        "--amount",
        "1",
        "--uses",
        "2",
        "--repeatable",
    ])["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let (_, key) = account_with_key(&sb, "agent");
    let server = sb.serve(&["--rate-limit-per-sec", "0", "--http-threads", "16"]);
    let answers = race(&server, &vec![key.clone(); 20], &secret);
    assert_eq!(answers.iter().filter(|a| a.status == 200).count(), 1);
    for answer in answers.iter().filter(|a| a.status != 200) {
        assert_eq!(answer.status, 409, "{}", answer.json());
        assert_eq!(error_of(answer), "code_already_redeemed");
    }
    // A repeatable code: the same account, up to its uses.
    assert_eq!(redeem(&server, &key, &repeatable).status, 200);
    assert_eq!(redeem(&server, &key, &repeatable).status, 200);
    assert_eq!(
        error_of(&redeem(&server, &key, &repeatable)),
        "code_used_up"
    );
    let balance = server.get("/v1/credits/balance", &key).json();
    assert_eq!(balance["data"]["available"], json!(5));
    stop_and_verify(&sb, server);
}

#[test]
fn refusals_are_clear_and_move_nothing() {
    let sb = sandbox();
    let created = sb.ok(&["codes", "create", "--amount", "5"]);
    let secret = created["secret"].as_str().expect("secret").to_owned();
    let id = created["id"].as_str().expect("id").to_owned();
    let revoked = sb.ok(&["codes", "revoke", &id]);
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    let (_, key) = account_with_key(&sb, "agent");
    let server = sb.serve(&[]);
    let refusals: [(Value, u16, &str); 6] = [
        (json!({ "code": secret }), 404, "code_invalid"),
        (json!({ "code": "cg_code_nope" }), 404, "code_invalid"),
        (json!({ "code": "x".repeat(5_000) }), 404, "code_invalid"),
        (json!({}), 400, "invalid_request"),
        (json!({ "code": 7 }), 400, "invalid_request"),
        (
            json!({ "code": "cg_code_x", "amount": 100 }),
            400,
            "invalid_request",
        ),
    ];
    for (body, status, code) in refusals {
        let answer = server.post("/v1/credits/redeem", &key, &body);
        assert_eq!(answer.status, status, "{body}: {}", answer.json());
        assert_eq!(error_of(&answer), code, "{body}");
        assert!(!answer.json()["message"].as_str().unwrap_or("").is_empty());
    }
    // The revoked code's refusal does not say it ever existed.
    let answer = redeem(&server, &key, &secret);
    assert!(!answer.json().to_string().contains(&id));
    let unauthenticated = server.request(
        "POST",
        "/v1/credits/redeem",
        None,
        Some(&json!({ "code": secret }).to_string()),
    );
    assert_eq!(unauthenticated.status, 401);
    let balance = server.get("/v1/credits/balance", &key).json();
    assert_eq!(balance["data"]["available"], json!(0));
    drop(server);
    // The operator's refusals: exit 1 for a bad amount or an unknown code,
    // 2 for a flag clap refuses.
    for (args, exit) in [
        (vec!["codes", "create", "--amount", "0"], 1),
        (vec!["codes", "create", "--amount", "-5"], 1),
        (vec!["codes", "revoke", "code_nope"], 1),
        (vec!["codes", "create", "--amount", "1", "--uses", "0"], 2),
    ] {
        let run = sb.run(&args);
        assert_eq!(run.code, exit, "{args:?}: {}{}", run.stdout, run.stderr);
    }
    stop_and_verify(&sb, sb.serve(&[]));
}
