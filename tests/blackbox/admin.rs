//! Black-box tests of the operator's HTTP API (`/v1/admin/*`) through the
//! real binary: only a key with the `operator` scope (which only the CLI
//! grants) may call it, never an account's `admin` key; grants (retried
//! safely, promotional with an expiry), codes (created, redeemed by an
//! agent, revoked), auto top-up settings, key spend caps, top-ups and
//! webhook endpoints; bad input is a clear 400 that moves nothing; `ledger
//! verify` after.

use creditgate_tests::{HttpResponse, Sandbox, Server};
use serde_json::{json, Value};

fn key(sb: &Sandbox, account: &str, scope: &str) -> (String, String) {
    let created = sb.ok(&["keys", "create", "--account", account, "--scope", scope]);
    (
        created["id"].as_str().expect("id").to_owned(),
        created["key"].as_str().expect("key").to_owned(),
    )
}

fn post(server: &Server, path: &str, key: &str, body: Value) -> HttpResponse {
    server.post(path, key, &body)
}

#[test]
fn the_operator_runs_money_in_over_http_and_no_account_admin_can() {
    let sb = Sandbox::new(env!("CARGO_BIN_EXE_creditgate"));
    let house = sb.account("house");
    let agent = sb.account("agent");
    let (_, operator) = key(&sb, &house, "operator");
    let (_, admin) = key(&sb, &agent, "admin");
    let (agent_key_id, agent_key) = key(&sb, &agent, "image");
    let server = sb.serve_env(
        &[],
        &[(
            "CREDITGATE_WEBHOOK_SIGNING_KEY",
            "an-operator-signing-key-of-32-bytes!!",
        )],
    );

    // An account's admin key is not the operator.
    for (method, path) in [("GET", "/v1/admin/codes"), ("GET", "/v1/admin/topups")] {
        let refused = server.request(method, path, Some(&admin), None);
        assert_eq!(refused.status, 403, "{path}: {}", refused.json());
        assert_eq!(refused.json()["data"]["error"], "forbidden");
    }
    let refused = post(
        &server,
        "/v1/admin/grants",
        &admin,
        json!({"account_id": agent, "credits": 5}),
    );
    assert_eq!(refused.status, 403);

    // Grants: safe to retry with an id; promotional with an expiry.
    let body =
        json!({"account_id": agent, "credits": 25, "grant_id": "welcome-agent", "memo": "hi"});
    let granted = post(&server, "/v1/admin/grants", &operator, body.clone());
    assert_eq!(granted.status, 200, "{}", granted.json());
    assert_eq!(granted.json()["data"]["replayed"], false);
    assert_eq!(
        post(&server, "/v1/admin/grants", &operator, body).json()["data"]["replayed"],
        true
    );
    let promo = post(
        &server,
        "/v1/admin/grants",
        &operator,
        json!({"account_id": agent, "credits": 5, "expires_in_days": 7}),
    );
    assert_eq!(promo.status, 200, "{}", promo.json());
    let balance = server.get("/v1/credits/balance", &agent_key).json()["data"].clone();
    assert_eq!(balance["available"], json!(30));
    assert_eq!(balance["promotional"], json!(5));
    for bad in [
        json!({"account_id": agent}),
        json!({"account_id": agent, "credits": -1}),
        json!({"account_id": agent, "credits": 1, "surprise": true}),
        json!({"account_id": agent, "credits": 1, "expires_in_days": 0}),
    ] {
        let refused = post(&server, "/v1/admin/grants", &operator, bad.clone());
        assert_eq!(refused.status, 400, "{bad}: {}", refused.json());
    }
    let unknown = post(
        &server,
        "/v1/admin/grants",
        &operator,
        json!({"account_id": "acct_nobody", "credits": 1}),
    );
    assert_eq!(unknown.status, 404);

    // Codes: created (the secret once), redeemed by the agent, revoked.
    let code = post(
        &server,
        "/v1/admin/codes",
        &operator,
        json!({"credits": 3, "uses": 2, "memo": "launch"}),
    );
    assert_eq!(code.status, 200, "{}", code.json());
    let secret = code.json()["data"]["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let code_id = code.json()["data"]["id"].as_str().expect("id").to_owned();
    let redeemed = post(
        &server,
        "/v1/credits/redeem",
        &agent_key,
        json!({"code": secret}),
    );
    assert_eq!(redeemed.status, 200, "{}", redeemed.json());
    let listed = server.get("/v1/admin/codes", &operator).json();
    assert!(listed.to_string().contains(&code_id));
    assert!(
        !listed.to_string().contains(&secret),
        "never the secret again"
    );
    let revoked = post(
        &server,
        &format!("/v1/admin/codes/{code_id}/revoke"),
        &operator,
        json!({}),
    );
    assert_eq!(revoked.status, 200, "{}", revoked.json());

    // Auto top-up settings and key caps.
    let path = format!("/v1/admin/accounts/{agent}/auto_topup");
    let set = post(
        &server,
        &path,
        &operator,
        json!({"threshold": 5, "amount": 50, "window_minutes": 30}),
    );
    assert_eq!(set.status, 200, "{}", set.json());
    assert_eq!(set.json()["data"]["auto_topup"]["amount"], json!(50));
    let off = post(&server, &path, &operator, json!({"off": true}));
    assert_eq!(off.json()["data"]["auto_topup"], Value::Null);
    let caps_path = format!("/v1/admin/keys/{agent_key_id}/caps");
    let caps = post(&server, &caps_path, &operator, json!({"daily": 40}));
    assert_eq!(caps.status, 200, "{}", caps.json());
    assert_eq!(
        server.get(&caps_path, &operator).json()["data"]["daily_cap"],
        json!(40)
    );

    // Webhook endpoints and top-ups.
    let hook = post(
        &server,
        "/v1/admin/webhooks",
        &operator,
        json!({"url": "http://127.0.0.1:9/hook", "events": ["topup.credited"]}),
    );
    assert_eq!(hook.status, 200, "{}", hook.json());
    assert!(hook.json()["data"]["secret"]
        .as_str()
        .is_some_and(|s| s.starts_with("whsec_")));
    let hook_id = hook.json()["data"]["id"].as_str().expect("id").to_owned();
    let bad_hook = post(
        &server,
        "/v1/admin/webhooks",
        &operator,
        json!({"url": "http://127.0.0.1:9/hook", "events": ["nope"]}),
    );
    assert_eq!(bad_hook.status, 400);
    let removed = post(
        &server,
        &format!("/v1/admin/webhooks/{hook_id}/remove"),
        &operator,
        json!({}),
    );
    assert_eq!(removed.status, 200, "{}", removed.json());
    let topups = server.get("/v1/admin/topups?limit=5", &operator);
    assert_eq!(topups.status, 200, "{}", topups.json());
    assert_eq!(
        server.get("/v1/admin/topups?limit=0", &operator).status,
        400
    );
    drop(server);
    let verify = sb.run(&["ledger", "verify"]);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
}
