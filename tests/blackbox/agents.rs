//! Black-box tests of identity over HTTP and the CLI: the ed25519 agent
//! flow of reference 001 signed by an independent test client (its own
//! canonical JSON and ed25519 calls), its refusals, scopes, owner binding by
//! CLI and by the admin route, and key revocation taking effect at once.

use std::time::{SystemTime, UNIX_EPOCH};

use creditgate_tests::{text_at, HttpResponse, Sandbox, Server};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};

fn sandbox() -> Sandbox {
    Sandbox::new(env!("CARGO_BIN_EXE_creditgate"))
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A test agent: an ed25519 key and a nonce counter.
struct Agent {
    key: SigningKey,
    nonce: std::cell::Cell<u32>,
}

impl Agent {
    fn new(seed: u8) -> Agent {
        Agent {
            key: SigningKey::from_bytes(&[seed; 32]),
            nonce: std::cell::Cell::new(0),
        }
    }

    fn public_hex(&self) -> String {
        hex(self.key.verifying_key().as_bytes())
    }

    /// Adds timestamp, nonce and the signature over
    /// `METHOD + " " + PATH + "\n" + canonical JSON`. serde_json's map is
    /// ordered by key and prints compactly: for the ASCII keys used here
    /// that is RFC 8785's form.
    fn sign(&self, method: &str, path: &str, mut body: Value, timestamp: i64) -> Value {
        self.nonce.set(self.nonce.get() + 1);
        body["timestamp"] = json!(timestamp);
        body["nonce"] = json!(format!("nonce-{}-{}", self.nonce.get(), timestamp));
        let message = format!(
            "{method} {path}\n{}",
            serde_json::to_string(&body).expect("json")
        );
        body["signature"] = json!(hex(&self.key.sign(message.as_bytes()).to_bytes()));
        body
    }

    fn post(&self, server: &Server, path: &str, bearer: Option<&str>, body: Value) -> HttpResponse {
        let signed = self.sign("POST", path, body, now_secs());
        server.request("POST", path, bearer, Some(&signed.to_string()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn error_code(response: &HttpResponse) -> (u16, String) {
    let body = response.json();
    (
        response.status,
        body["data"]["error"].as_str().unwrap_or("").to_owned(),
    )
}

/// An admin key for `account`, made the way the README says (the first-run
/// demo key is not one).
fn admin_key(sb: &Sandbox, account: &str) -> String {
    sb.ok(&["keys", "create", "--account", account, "--scope", "admin"])["key"]
        .as_str()
        .expect("key")
        .to_owned()
}

/// Binds the agent of registration `code` to `account` with the CLI,
/// allowing the `image` scope only; the command's JSON answer.
fn bind_for_image(sb: &Sandbox, code: &str, account: &str) -> Value {
    sb.ok(&[
        "agents",
        "bind",
        code,
        "--account",
        account,
        "--scope",
        "image",
    ])
}

#[test]
fn the_whole_agent_flow_over_http() {
    let sb = sandbox();
    let server = sb.serve(&["--poll-interval-ms", "20"]);
    let account = sb.first_account();
    let admin_key = admin_key(&sb, &account);
    let agent = Agent::new(7);

    // 1. Register (self-signed with the key being registered).
    let registered = agent.post(
        &server,
        "/api/v1/agents/register",
        None,
        json!({"public_key": agent.public_hex(), "agent_name": "Demo Agent", "agent_version": "0.1.0"}),
    );
    let body = registered.json();
    assert_eq!(registered.status, 200, "{body}");
    assert_eq!(body["success"], json!(true));
    let agent_id = text_at(&body, "/data/agent_id");
    let code = text_at(&body, "/data/registration_code");
    assert!(body["data"]["expires_at"].is_string());

    // Before binding, key creation is refused.
    let early = agent.post(
        &server,
        "/api/v1/agents/keys/create",
        None,
        json!({"agent_id": agent_id, "registration_code": code, "key_name": "k", "scopes": ["image"]}),
    );
    assert_eq!(error_code(&early), (403, "agent_not_bound".to_owned()));

    // 2. The owner binds the code (CLI), allowing image only.
    let bound = bind_for_image(&sb, &code, &account);
    assert_eq!(bound["agent_id"], json!(agent_id));

    // 3. Keys: beyond the binding is forbidden; image is fine.
    let too_much = agent.post(
        &server,
        "/api/v1/agents/keys/create",
        None,
        json!({"agent_id": agent_id, "registration_code": code, "key_name": "k", "scopes": ["image", "video"]}),
    );
    assert_eq!(error_code(&too_much), (403, "forbidden".to_owned()));
    let created = agent.post(
        &server,
        "/api/v1/agents/keys/create",
        None,
        json!({"agent_id": agent_id, "registration_code": code, "key_name": "demo-key", "scopes": ["image"], "expires_in_days": 90}),
    );
    let created = created.json();
    assert_eq!(created["success"], json!(true), "{created}");
    let api_key = text_at(&created, "/data/api_key");
    let key_id = text_at(&created, "/data/key_id");
    assert_eq!(created["data"]["scopes"], json!(["image"]));

    // 4. Exchange the key for an access token.
    let token = agent.post(
        &server,
        "/api/v1/agents/auth/token",
        Some(&api_key),
        json!({"agent_id": agent_id, "scopes": ["image"]}),
    );
    let token = token.json();
    assert_eq!(token["code"], 0, "{token}");
    assert_eq!(token["data"]["token_type"], "Bearer");
    assert_eq!(token["data"]["expires_in"], 900);
    assert_eq!(token["data"]["account_id"], json!(account));
    let access = text_at(&token, "/data/access_token");
    let refresh = text_at(&token, "/data/refresh_token");

    // The access token spends from the owner's account, within its scope.
    let job = server.post(
        "/v1/generate",
        &access,
        &json!({"request_id": "agent-1", "model": "z-image", "prompt": "x"}),
    );
    assert_eq!(job.status, 200, "{}", job.json());
    let video = server.post(
        "/v1/generate",
        &access,
        &json!({"request_id": "agent-2", "model": "veo3_fast", "prompt": "x"}),
    );
    assert_eq!(error_code(&video), (403, "forbidden".to_owned()));
    assert_eq!(
        server.get("/v1/generate/agent-1", &admin_key).json()["data"]["request_id"],
        "agent-1"
    );

    // 5. Refresh rotates; a reused refresh token revokes the family.
    let rotated = server.request(
        "POST",
        "/api/v1/agents/auth/refresh",
        None,
        Some(&json!({"refresh_token": refresh}).to_string()),
    );
    assert_eq!(rotated.status, 200, "{}", rotated.json());
    let new_access = text_at(&rotated.json(), "/data/access_token");
    assert_eq!(server.get("/v1/credits/balance", &new_access).status, 200);
    let reused = server.request(
        "POST",
        "/api/v1/agents/auth/refresh",
        None,
        Some(&json!({"refresh_token": refresh}).to_string()),
    );
    assert_eq!(
        error_code(&reused),
        (401, "refresh_token_reused".to_owned())
    );
    assert_eq!(
        error_code(&server.get("/v1/credits/balance", &new_access)).0,
        401,
        "the family is revoked"
    );

    // 6. List and revoke the agent's keys; the revoked key stops at once.
    let listed = agent
        .post(
            &server,
            "/api/v1/agents/keys/list",
            None,
            json!({"agent_id": agent_id}),
        )
        .json();
    assert_eq!(
        listed["data"]["keys"][0]["key_id"],
        json!(key_id),
        "{listed}"
    );
    assert!(
        listed.to_string().find(&api_key).is_none(),
        "no secret in a listing"
    );
    let revoked = agent.post(
        &server,
        "/api/v1/agents/keys/revoke",
        None,
        json!({"agent_id": agent_id, "key_id": key_id}),
    );
    assert_eq!(revoked.status, 200, "{}", revoked.json());
    let after = agent.post(
        &server,
        "/api/v1/agents/auth/token",
        Some(&api_key),
        json!({"agent_id": agent_id}),
    );
    assert_eq!(error_code(&after), (401, "unauthorized".to_owned()));
}

#[test]
fn signed_requests_are_refused_for_every_flaw() {
    let sb = sandbox();
    let server = sb.serve(&[]);
    let agent = Agent::new(9);
    let path = "/api/v1/agents/register";
    let body = json!({"public_key": agent.public_hex(), "agent_name": "A", "agent_version": "1"});

    // A signature made for another path.
    let elsewhere = agent.sign("POST", "/api/v1/agents/keys/list", body.clone(), now_secs());
    let response = server.request("POST", path, None, Some(&elsewhere.to_string()));
    assert_eq!(error_code(&response), (401, "invalid_signature".to_owned()));
    // A tampered body.
    let mut tampered = agent.sign("POST", path, body.clone(), now_secs());
    tampered["agent_name"] = json!("B");
    assert_eq!(
        error_code(&server.request("POST", path, None, Some(&tampered.to_string()))),
        (401, "invalid_signature".to_owned())
    );
    // Stale and future timestamps.
    for skew in [-301, 301] {
        let stale = agent.sign("POST", path, body.clone(), now_secs() + skew);
        assert_eq!(
            error_code(&server.request("POST", path, None, Some(&stale.to_string()))),
            (401, "stale_timestamp".to_owned())
        );
    }
    // A replayed nonce.
    let signed = agent.sign("POST", path, body.clone(), now_secs());
    assert_eq!(
        server
            .request("POST", path, None, Some(&signed.to_string()))
            .status,
        200
    );
    let replay = server.request("POST", path, None, Some(&signed.to_string()));
    assert_eq!(error_code(&replay), (401, "nonce_reused".to_owned()));
    // An unknown registration code cannot be bound.
    let bind = sb.json(&["agents", "bind", "cg_reg_nope", "--account", "acct_x"]);
    assert_eq!(bind.code, 1);
}

#[test]
fn keys_from_the_cli_work_until_revoked_and_bind_needs_admin() {
    let sb = sandbox();
    let server = sb.serve(&[]);
    let account = sb.account("cli");
    sb.ok(&["credits", "grant", "--account", &account, "--amount", "50"]);
    let created = sb.ok(&[
        "keys",
        "create",
        "--account",
        &account,
        "--scope",
        "image",
        "--name",
        "laptop",
    ]);
    let key = text_at(&created, "/key");
    let key_id = text_at(&created, "/id");
    assert!(key.starts_with("cg_live_"));
    let balance = server.get("/v1/credits/balance", &key).json();
    assert_eq!(balance["data"]["available"], json!(50));

    let listed = sb.ok(&["keys", "list", "--account", &account]);
    assert_eq!(listed["keys"][0]["key_id"], json!(key_id));
    assert!(
        !listed.to_string().contains(&key),
        "a listing never shows a secret"
    );

    // A key without admin cannot bind agents over HTTP.
    let bind = server.post(
        "/api/v1/agents/bind",
        &key,
        &json!({"registration_code": "cg_reg_x"}),
    );
    assert_eq!(error_code(&bind), (403, "forbidden".to_owned()));

    sb.ok(&["keys", "revoke", &key_id]);
    assert_eq!(
        error_code(&server.get("/v1/credits/balance", &key)),
        (401, "unauthorized".to_owned())
    );
    // Revoking twice is fine.
    sb.ok(&["keys", "revoke", &key_id]);
}

#[test]
fn the_owner_binds_an_agent_with_an_admin_key_over_http() {
    let sb = sandbox();
    let server = sb.serve(&[]);
    let account = sb.first_account();
    let admin = admin_key(&sb, &account);
    let agent = Agent::new(11);
    let registered = agent
        .post(
            &server,
            "/api/v1/agents/register",
            None,
            json!({"public_key": agent.public_hex(), "agent_name": "B", "agent_version": "2"}),
        )
        .json();
    let code = text_at(&registered, "/data/registration_code");
    let bound = server.post(
        "/api/v1/agents/bind",
        &admin,
        &json!({"registration_code": code, "allowed_scopes": ["music"]}),
    );
    assert_eq!(bound.status, 200, "{}", bound.json());
    assert_eq!(bound.json()["data"]["allowed_scopes"], json!(["music"]));
    let unknown = server.post(
        "/api/v1/agents/bind",
        &admin,
        &json!({"registration_code": "cg_reg_unknown"}),
    );
    assert_eq!(error_code(&unknown).0, 404);
}

/// A stand-in for Moltbook's verify endpoint on 127.0.0.1:0: the token
/// `good-token` is valid for agent `mb-agent-1`; anything else is refused.
/// Serves at most `requests` requests, then stops.
fn moltbook_stand_in(requests: usize) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let (status, answer) = if request["token"] == "good-token" {
                (
                    "200 OK",
                    json!({"success": true, "valid": true, "agent": {"id": "mb-agent-1", "name": "CoolBot", "karma": 420}}),
                )
            } else {
                (
                    "401 Unauthorized",
                    json!({"success": false, "valid": false, "error": "invalid_token"}),
                )
            };
            let text = answer.to_string();
            let _ = reader.get_mut().write_all(
                format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}", text.len())
                    .as_bytes(),
            );
        }
    });
    format!("http://{addr}/api/v1/agents/verify-identity")
}

#[test]
fn sign_in_with_moltbook_binds_then_grants_a_token() {
    let sb = sandbox();
    let verify_url = moltbook_stand_in(8);
    let server = sb.serve(&["--moltbook-verify-url", &verify_url]);
    let account = sb.first_account();
    let exchange = |token: &str| {
        let request = format!(
            "POST /auth/moltbook/exchange HTTP/1.1\r\nHost: x\r\nX-Moltbook-Identity: {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        creditgate_tests::raw_http(&server.addr, request.as_bytes())
    };
    let refused = exchange("forged-token");
    assert_eq!(error_code(&refused), (401, "identity_refused".to_owned()));

    let unbound = exchange("good-token");
    assert_eq!(error_code(&unbound), (403, "agent_not_bound".to_owned()));
    let code = text_at(&unbound.json(), "/data/registration_code");
    bind_for_image(&sb, &code, &account);

    let granted = exchange("good-token");
    let body = granted.json();
    assert_eq!(granted.status, 200, "{body}");
    assert_eq!(body["data"]["expires_in"], 900);
    assert_eq!(body["data"]["account_id"], json!(account));
    let token = text_at(&body, "/data/access_token");
    assert_eq!(server.get("/v1/credits/balance", &token).status, 200);
    let video = server.post(
        "/v1/generate",
        &token,
        &json!({"request_id": "mb-1", "model": "veo3_fast", "prompt": "x"}),
    );
    assert_eq!(error_code(&video), (403, "forbidden".to_owned()));
}
