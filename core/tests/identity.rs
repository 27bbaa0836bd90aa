//! Identity through the facade: API keys, the agent flow driven by a test
//! client with real ed25519 signatures, every refusal, expiry and
//! revocation on the very next `authenticate`, scopes, ownership, and no
//! secret in the database files. Each test opens a fresh database with a
//! `ManualClock` and moves time instead of sleeping.

mod common;

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use common::{code, fresh, strings, Fixture, START};
use common::{Setup, RYNJER};
use creditgate::identity::agents::REGISTRATION_TTL_SECS;
use creditgate::identity::external::MOLTBOOK_PROVIDER;
use creditgate::identity::jcs;
use creditgate::identity::keys::LAST_USED_INTERVAL_SECS;
use creditgate::identity::signing::SIGNED_REQUEST_SKEW_SECS_MAX;
use creditgate::identity::tokens::ACCESS_TOKEN_TTL_SECS;
use creditgate::{
    AgentRegistration, Error, ExchangeOutcome, IdentityVerifier, Principal, TokenGrant,
    VerifiedIdentity, Via,
};
use ed25519_dalek::{Signer, SigningKey};
use rust_decimal::Decimal;
use serde_json::{json, Value};

const REGISTER: &str = "/api/v1/agents/register";
const KEYS_CREATE: &str = "/api/v1/agents/keys/create";
const KEYS_LIST: &str = "/api/v1/agents/keys/list";
const KEYS_REVOKE: &str = "/api/v1/agents/keys/revoke";
const TOKEN: &str = "/api/v1/agents/auth/token";
const POST: &str = "POST";

impl Fixture {
    fn account(&self) -> String {
        common::account(&self.gate, "owner", Decimal::ZERO)
    }

    fn now_secs(&self) -> i64 {
        use creditgate::Clock;
        self.clock.now() / 1_000
    }
}

/// An agent as a client in the wild would be: it holds an ed25519 key and
/// builds the signed message itself (method, space, path, newline, RFC 8785
/// body without `signature`), independently of the server's `signing`.
struct TestAgent {
    key: SigningKey,
    agent_id: String,
    nonces: Cell<u32>,
}

impl TestAgent {
    fn new(seed: u8) -> TestAgent {
        TestAgent {
            key: SigningKey::from_bytes(&[seed; 32]),
            agent_id: String::new(),
            nonces: Cell::new(0),
        }
    }

    fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    fn next_nonce(&self) -> String {
        self.nonces.set(self.nonces.get() + 1);
        format!(
            "nonce-{}-{}",
            self.key.verifying_key().as_bytes()[0],
            self.nonces.get()
        )
    }

    /// `fields` plus `timestamp`, a fresh `nonce` and `agent_id` (once
    /// known), signed for `method` and `path`.
    fn body(&self, fx: &Fixture, method: &str, path: &str, fields: Value) -> Value {
        let mut body = fields;
        if !self.agent_id.is_empty() && body.get("agent_id").is_none() {
            body["agent_id"] = json!(self.agent_id);
        }
        if body.get("timestamp").is_none() {
            body["timestamp"] = json!(fx.now_secs());
        }
        if body.get("nonce").is_none() {
            body["nonce"] = json!(self.next_nonce());
        }
        self.sign(method, path, body)
    }

    fn sign(&self, method: &str, path: &str, mut body: Value) -> Value {
        body.as_object_mut().expect("object").remove("signature");
        let message = format!(
            "{method} {path}\n{}",
            jcs::canonical_string(&body).expect("canonical")
        );
        let signature = self.key.sign(message.as_bytes());
        body["signature"] = json!(hex::encode(signature.to_bytes()));
        body
    }

    fn register_body(&self, fx: &Fixture) -> Value {
        self.body(
            fx,
            POST,
            REGISTER,
            json!({
                "public_key": self.public_key_hex(),
                "agent_name": "Demo Agent",
                "agent_version": "0.1.0",
            }),
        )
    }

    fn register(&mut self, fx: &Fixture) -> AgentRegistration {
        let registration = fx
            .gate
            .register_agent(POST, REGISTER, &self.register_body(fx))
            .expect("register");
        self.agent_id = registration.agent_id.clone();
        registration
    }

    fn create_key_body(&self, fx: &Fixture, code: &str, scopes: &[&str]) -> Value {
        self.body(
            fx,
            POST,
            KEYS_CREATE,
            json!({
                "registration_code": code,
                "key_name": "demo-key",
                "scopes": scopes,
                "expires_in_days": 90,
            }),
        )
    }

    fn create_key(
        &self,
        fx: &Fixture,
        code: &str,
        scopes: &[&str],
    ) -> creditgate::Result<creditgate::CreatedAgentKey> {
        fx.gate
            .agent_create_key(POST, KEYS_CREATE, &self.create_key_body(fx, code, scopes))
    }

    fn token(
        &self,
        fx: &Fixture,
        api_key: &str,
        scopes: &[&str],
    ) -> creditgate::Result<TokenGrant> {
        let body = self.body(fx, POST, TOKEN, json!({ "scopes": scopes }));
        fx.gate
            .issue_token(&format!("Bearer {api_key}"), POST, TOKEN, &body)
    }
}

/// An agent registered and bound to a fresh account, allowed `allowed`.
struct Bound {
    agent: TestAgent,
    code: String,
    account_id: String,
}

fn bound_agent(fx: &Fixture, seed: u8, allowed: Option<&[&str]>) -> Bound {
    let account_id = fx.account();
    bound_agent_to(fx, seed, &account_id, allowed)
}

fn bound_agent_to(fx: &Fixture, seed: u8, account_id: &str, allowed: Option<&[&str]>) -> Bound {
    let mut agent = TestAgent::new(seed);
    let registration = agent.register(fx);
    fx.gate
        .bind_agent(
            &registration.registration_code,
            account_id,
            allowed.map(strings),
        )
        .expect("bind");
    Bound {
        agent,
        code: registration.registration_code,
        account_id: account_id.to_owned(),
    }
}

/// An agent with a key (`image` and `video`) and a token pair.
fn agent_with_tokens(fx: &Fixture, seed: u8) -> (Bound, String, TokenGrant) {
    let bound = bound_agent(fx, seed, Some(&["image", "video"]));
    let key = bound
        .agent
        .create_key(fx, &bound.code, &["image", "video"])
        .expect("create key");
    let grant = bound
        .agent
        .token(fx, &key.api_key, &["image"])
        .expect("token");
    (bound, key.api_key, grant)
}

#[test]
fn the_whole_agent_flow_with_real_signatures() {
    let fx = fresh();
    let account_id = fx.account();

    // 1. Register.
    let mut agent = TestAgent::new(1);
    let registration = agent.register(&fx);
    assert!(registration.agent_id.starts_with("agent_"));
    assert!(registration.registration_code.starts_with("cg_reg_"));
    assert_eq!(
        registration.expires_at,
        START + REGISTRATION_TTL_SECS * 1_000
    );

    // 2. The owner binds the code.
    let bound = fx
        .gate
        .bind_agent(
            &registration.registration_code,
            &account_id,
            Some(strings(&["image", "video"])),
        )
        .expect("bind");
    assert_eq!(bound.account_id.as_deref(), Some(account_id.as_str()));
    assert_eq!(bound.allowed_scopes, Some(strings(&["image", "video"])));
    assert_eq!(bound.public_key, Some(agent.public_key_hex()));

    // 3. The agent creates a long-lived key.
    let key = agent
        .create_key(&fx, &registration.registration_code, &["image"])
        .expect("keys/create");
    assert!(key.key_id.starts_with("key_"));
    assert!(key.api_key.starts_with("cg_agent_"));
    assert_eq!(key.scopes, strings(&["image"]));
    assert_eq!(key.expires_at, Some(START + 90 * 86_400_000));

    // 4. It exchanges the key for a short-lived access token.
    fx.advance_secs(60);
    let grant = agent
        .token(&fx, &key.api_key, &["image"])
        .expect("auth/token");
    assert_eq!(grant.token_type, "Bearer");
    assert_eq!(grant.expires_in, 900);
    assert_eq!(grant.agent_id, agent.agent_id);
    assert_eq!(grant.account_id, account_id);
    assert_eq!(grant.scopes, strings(&["image"]));
    assert!(grant.access_token.starts_with("cg_at_"));
    assert!(grant.refresh_token.starts_with("cg_rt_"));

    // 5. The access token authenticates on /v1/*.
    let principal = fx
        .gate
        .authenticate(&format!("Bearer {}", grant.access_token))
        .expect("authenticate access token");
    assert_eq!(principal.account_id, account_id);
    assert_eq!(principal.scopes, strings(&["image"]));
    assert_eq!(principal.agent_id(), Some(agent.agent_id.as_str()));
    match &principal.via {
        Via::AccessToken {
            agent_id,
            family_id,
            key_id,
            expires_at,
        } => {
            assert_eq!(agent_id, &agent.agent_id);
            assert_eq!(family_id, &grant.family_id);
            assert_eq!(key_id, &key.key_id);
            assert_eq!(*expires_at, fx.now_secs() * 1_000 + 900_000);
        }
        other => panic!("expected an access token, got {other:?}"),
    }
    principal.require_scope("image").expect("image");
    assert_eq!(code(principal.require_scope("video")), "forbidden");

    // 6. Refresh: a new pair in the same family; both access tokens work.
    fx.advance_secs(600);
    let refreshed = fx
        .gate
        .refresh_token(&grant.refresh_token)
        .expect("refresh");
    assert_eq!(refreshed.family_id, grant.family_id);
    assert_ne!(refreshed.access_token, grant.access_token);
    assert_ne!(refreshed.refresh_token, grant.refresh_token);
    assert_eq!(refreshed.scopes, strings(&["image"]));
    fx.gate
        .authenticate(&refreshed.access_token)
        .expect("new access token");
    fx.gate
        .authenticate(&grant.access_token)
        .expect("old access token lives out its 15 minutes");

    // 7. The agent lists its keys: no secrets, just the one key.
    let listed = fx
        .gate
        .agent_list_keys(
            POST,
            KEYS_LIST,
            &agent.body(&fx, POST, KEYS_LIST, json!({})),
        )
        .expect("keys/list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, key.key_id);
    assert_eq!(listed[0].agent_id.as_deref(), Some(agent.agent_id.as_str()));
    assert!(
        listed[0].last_used_at.is_some(),
        "the token exchange used the key"
    );
    // The owner sees the agent's key among the account's.
    let owned = fx.gate.list_api_keys(&account_id).expect("owner list");
    assert_eq!(owned.len(), 1);
    assert_eq!(owned[0].id, key.key_id);

    // 8. The agent revokes its key: the key and every token exchanged for
    // it stop on the very next authenticate.
    let body = agent.body(&fx, POST, KEYS_REVOKE, json!({ "key_id": key.key_id }));
    let revoked = fx
        .gate
        .agent_revoke_key(POST, KEYS_REVOKE, &body)
        .expect("keys/revoke");
    assert_eq!(revoked.revoked_at, Some(fx.now_secs() * 1_000));
    assert_eq!(code(fx.gate.authenticate(&key.api_key)), "unauthorized");
    assert_eq!(
        code(fx.gate.authenticate(&refreshed.access_token)),
        "unauthorized"
    );
    assert_eq!(
        code(fx.gate.refresh_token(&refreshed.refresh_token)),
        "unauthorized"
    );
    // Revoking again is idempotent.
    let body = agent.body(&fx, POST, KEYS_REVOKE, json!({ "key_id": key.key_id }));
    let again = fx
        .gate
        .agent_revoke_key(POST, KEYS_REVOKE, &body)
        .expect("again");
    assert_eq!(again.revoked_at, revoked.revoked_at);
}

#[test]
fn the_signed_message_is_exactly_the_documented_bytes() {
    // A signature over the documented message, built by hand, verifies.
    let fx = fresh();
    let agent = TestAgent::new(2);
    let public_key = agent.public_key_hex();
    let now = fx.now_secs();
    let message = format!(
        "POST /api/v1/agents/register\n{{\"agent_name\":\"Demo Agent\",\"agent_version\":\"0.1.0\",\
         \"nonce\":\"n-1\",\"public_key\":\"{public_key}\",\"timestamp\":{now}}}"
    );
    let signature = hex::encode(agent.key.sign(message.as_bytes()).to_bytes());
    let body: Value = serde_json::from_str(&format!(
        r#"{{ "timestamp": {now}, "signature": "{signature}", "nonce": "n-1",
              "public_key": "{public_key}", "agent_version": "0.1.0", "agent_name": "Demo Agent" }}"#
    ))
    .expect("json");
    fx.gate
        .register_agent(POST, REGISTER, &body)
        .expect("verifies");
}

#[test]
fn a_bad_signature_is_refused_and_spends_nothing() {
    let fx = fresh();
    let Bound {
        agent, code: reg, ..
    } = bound_agent(&fx, 3, None);

    let good = agent.create_key_body(&fx, &reg, &["image"]);
    let mut flipped = good.clone();
    let mut signature = hex::decode(good["signature"].as_str().expect("hex")).expect("hex");
    signature[10] ^= 0x01;
    flipped["signature"] = json!(hex::encode(&signature));
    assert_eq!(
        code(fx.gate.agent_create_key(POST, KEYS_CREATE, &flipped)),
        "invalid_signature"
    );

    // Signed by some other key.
    let impostor = TestAgent::new(99);
    let mut forged = impostor.sign(POST, KEYS_CREATE, good.clone());
    assert_eq!(
        code(fx.gate.agent_create_key(POST, KEYS_CREATE, &forged)),
        "invalid_signature"
    );

    // A field changed after signing.
    forged = good.clone();
    forged["scopes"] = json!(["image", "video"]);
    assert_eq!(
        code(fx.gate.agent_create_key(POST, KEYS_CREATE, &forged)),
        "invalid_signature"
    );

    // Not hex, wrong length, uppercase.
    for bad in [
        "zz",
        "abcd",
        &good["signature"].as_str().expect("hex").to_uppercase(),
    ] {
        let mut body = good.clone();
        body["signature"] = json!(bad);
        assert_eq!(
            code(fx.gate.agent_create_key(POST, KEYS_CREATE, &body)),
            "invalid_signature"
        );
    }

    // A registration signed by a key other than the one registered.
    let mut registration = TestAgent::new(4).register_body(&fx);
    registration["public_key"] = json!(TestAgent::new(5).public_key_hex());
    assert_eq!(
        code(fx.gate.register_agent(POST, REGISTER, &registration)),
        "invalid_signature"
    );

    // Nothing was spent: the genuine request, same nonce, still goes through.
    agent_key_ok(&fx, &good);
}

fn agent_key_ok(fx: &Fixture, body: &Value) {
    fx.gate
        .agent_create_key(POST, KEYS_CREATE, body)
        .expect("the genuine request");
}

#[test]
fn a_signature_made_for_another_path_or_method_is_refused_here() {
    let fx = fresh();
    let (bound, api_key, _) = agent_with_tokens(&fx, 6);
    // Signed for keys/list; its fields would make a valid token request.
    let for_list = bound.agent.body(&fx, POST, KEYS_LIST, json!({}));
    assert_eq!(
        code(fx.gate.issue_token(&api_key, POST, TOKEN, &for_list)),
        "invalid_signature"
    );
    assert_eq!(
        code(fx.gate.agent_list_keys("GET", KEYS_LIST, &for_list)),
        "invalid_signature"
    );
    // At its own endpoint it works.
    fx.gate
        .agent_list_keys(POST, KEYS_LIST, &for_list)
        .expect("at its own path");
}

#[test]
fn a_key_that_is_not_the_agents_is_refused() {
    let fx = fresh();
    let account_id = fx.account();
    let a = bound_agent_to(&fx, 7, &account_id, None);
    let b = bound_agent_to(&fx, 8, &account_id, None);
    let b_key = b
        .agent
        .create_key(&fx, &b.code, &["image"])
        .expect("b's key");
    let a_key = a
        .agent
        .create_key(&fx, &a.code, &["image"])
        .expect("a's key");

    // B's key presented with A's signed request.
    assert_eq!(
        code(a.agent.token(&fx, &b_key.api_key, &["image"])),
        "unauthorized"
    );
    // The owner's account key is not an agent key either.
    let (_, owner_key) = fx
        .gate
        .create_api_key(&account_id, "owner", &strings(&["admin"]), None)
        .expect("owner key");
    assert_eq!(
        code(a.agent.token(&fx, &owner_key, &["image"])),
        "unauthorized"
    );
    // An access token is not an API key; nor is nothing.
    let grant = a
        .agent
        .token(&fx, &a_key.api_key, &["image"])
        .expect("a's token");
    assert_eq!(
        code(a.agent.token(&fx, &grant.access_token, &["image"])),
        "unauthorized"
    );
    assert_eq!(code(a.agent.token(&fx, "", &["image"])), "unauthorized");
    // A registration code that is A's, presented by B.
    assert_eq!(
        code(b.agent.create_key(&fx, &a.code, &["image"])),
        "unauthorized"
    );
    // An unknown agent cannot be authenticated.
    let mut stranger = TestAgent::new(9);
    stranger.agent_id = "agent_00000000000000000000000000000000".into();
    let body = stranger.body(&fx, POST, KEYS_LIST, json!({}));
    assert_eq!(
        code(fx.gate.agent_list_keys(POST, KEYS_LIST, &body)),
        "unauthorized"
    );
}

#[test]
fn a_replayed_nonce_is_refused_even_after_a_refusal() {
    let fx = fresh();
    let Bound {
        agent, code: reg, ..
    } = bound_agent(&fx, 10, Some(&["image"]));

    let body = agent.create_key_body(&fx, &reg, &["image"]);
    agent_key_ok(&fx, &body);
    assert_eq!(
        code(fx.gate.agent_create_key(POST, KEYS_CREATE, &body)),
        "nonce_reused"
    );

    // The same nonce in a new, validly signed body.
    let reused = agent.body(
        &fx,
        POST,
        KEYS_LIST,
        json!({ "nonce": body["nonce"].clone() }),
    );
    assert_eq!(
        code(fx.gate.agent_list_keys(POST, KEYS_LIST, &reused)),
        "nonce_reused"
    );

    // A request refused after its signature verified still spends its nonce.
    let forbidden = agent.create_key_body(&fx, &reg, &["video"]);
    assert_eq!(
        code(fx.gate.agent_create_key(POST, KEYS_CREATE, &forbidden)),
        "forbidden"
    );
    assert_eq!(
        code(fx.gate.agent_create_key(POST, KEYS_CREATE, &forbidden)),
        "nonce_reused"
    );

    // A replayed registration.
    let mut other = TestAgent::new(11);
    let registration = other.register_body(&fx);
    fx.gate
        .register_agent(POST, REGISTER, &registration)
        .expect("first");
    assert_eq!(
        code(fx.gate.register_agent(POST, REGISTER, &registration)),
        "nonce_reused"
    );

    // Nonces are per agent: another agent may use the same string.
    other.agent_id = fx
        .gate
        .register_agent(POST, REGISTER, &other.register_body(&fx))
        .expect("re-register")
        .agent_id;
    let same_string = other.body(
        &fx,
        POST,
        KEYS_LIST,
        json!({ "nonce": body["nonce"].clone() }),
    );
    fx.gate
        .agent_list_keys(POST, KEYS_LIST, &same_string)
        .expect("another agent's nonce space");

    // Once the window has passed, the replay is stale, and the nonce may be
    // forgotten (pruned).
    fx.advance_secs(2 * SIGNED_REQUEST_SKEW_SECS_MAX as u64 + 1);
    assert_eq!(
        code(fx.gate.agent_create_key(POST, KEYS_CREATE, &body)),
        "stale_timestamp"
    );
    let fresh_body = agent.body(
        &fx,
        POST,
        KEYS_LIST,
        json!({ "nonce": body["nonce"].clone() }),
    );
    fx.gate
        .agent_list_keys(POST, KEYS_LIST, &fresh_body)
        .expect("a forgotten nonce with a fresh timestamp");
    // Recording it pruned every nonce whose window had closed.
    let conn = rusqlite::Connection::open(&fx.path).expect("raw open");
    let (remembered, expired): (i64, i64) = conn
        .query_row(
            "SELECT count(*), count(*) FILTER (WHERE expires_at < ?1) FROM agent_nonces",
            [fx.now_secs() * 1_000],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("count nonces");
    assert_eq!(
        (remembered, expired),
        (1, 0),
        "only the fresh nonce is remembered"
    );
}

#[test]
fn stale_and_future_timestamps_are_refused() {
    let fx = fresh();
    let Bound { agent, .. } = bound_agent(&fx, 12, None);
    let now = fx.now_secs();
    let skew = SIGNED_REQUEST_SKEW_SECS_MAX;
    let at = |timestamp: i64| agent.body(&fx, POST, KEYS_LIST, json!({ "timestamp": timestamp }));
    for timestamp in [
        now - skew - 1,
        now + skew + 1,
        now - 86_400,
        now + 86_400,
        0,
    ] {
        assert_eq!(
            code(fx.gate.agent_list_keys(POST, KEYS_LIST, &at(timestamp))),
            "stale_timestamp",
            "{timestamp}"
        );
    }
    for timestamp in [now - skew, now + skew, now] {
        fx.gate
            .agent_list_keys(POST, KEYS_LIST, &at(timestamp))
            .expect("inside the window");
    }
    // A request signed now and held back past the window.
    let held = agent.body(&fx, POST, KEYS_LIST, json!({}));
    fx.advance_secs(skew as u64 + 1);
    assert_eq!(
        code(fx.gate.agent_list_keys(POST, KEYS_LIST, &held)),
        "stale_timestamp"
    );
    // A registration from the future.
    let new_agent = TestAgent::new(13);
    let mut body = new_agent.register_body(&fx);
    body["timestamp"] = json!(fx.now_secs() + skew + 1);
    let body = new_agent.sign(POST, REGISTER, body);
    assert_eq!(
        code(fx.gate.register_agent(POST, REGISTER, &body)),
        "stale_timestamp"
    );
}

#[test]
fn unbound_expired_and_unknown_registration_codes() {
    let fx = fresh();
    let account_id = fx.account();
    let mut agent = TestAgent::new(14);
    let registration = agent.register(&fx);

    // Before binding: no keys.
    let refused = agent.create_key(&fx, &registration.registration_code, &["image"]);
    assert!(
        matches!(&refused, Err(Error::AgentNotBound { agent_id }) if *agent_id == agent.agent_id)
    );
    assert_eq!(code(refused), "agent_not_bound");

    // Unknown code.
    let unknown = fx.gate.bind_agent("cg_reg_nope", &account_id, None);
    assert_eq!(code(unknown), "not_found");
    // Unknown account.
    assert_eq!(
        code(
            fx.gate
                .bind_agent(&registration.registration_code, "acct_nope", None)
        ),
        "not_found"
    );

    // The code expires unbound.
    fx.advance_secs(REGISTRATION_TTL_SECS as u64);
    assert_eq!(
        code(
            fx.gate
                .bind_agent(&registration.registration_code, &account_id, None)
        ),
        "registration_expired"
    );
    assert_eq!(
        code(agent.create_key(&fx, &registration.registration_code, &["image"])),
        "registration_expired"
    );

    // Registering again gives the same agent a fresh code; the old one is gone.
    let again = agent.register(&fx);
    assert_eq!(again.agent_id, registration.agent_id);
    assert_ne!(again.registration_code, registration.registration_code);
    assert_eq!(
        code(
            fx.gate
                .bind_agent(&registration.registration_code, &account_id, None)
        ),
        "not_found"
    );
    fx.gate
        .bind_agent(
            &again.registration_code,
            &account_id,
            Some(strings(&["image"])),
        )
        .expect("bind the fresh code");

    // Binding again to the same account is idempotent, even past expiry;
    // to another account (or other scopes) it is a conflict.
    fx.advance_secs(REGISTRATION_TTL_SECS as u64 * 2);
    let same = fx
        .gate
        .bind_agent(
            &again.registration_code,
            &account_id,
            Some(strings(&["image"])),
        )
        .expect("idempotent");
    assert_eq!(same.account_id.as_deref(), Some(account_id.as_str()));
    let other_account = fx.account();
    let conflict = fx
        .gate
        .bind_agent(&again.registration_code, &other_account, None);
    assert!(matches!(
        conflict,
        Err(Error::AgentAlreadyBound {
            field: "account_id",
            ..
        })
    ));
    assert_eq!(
        code(fx.gate.bind_agent(
            &again.registration_code,
            &account_id,
            Some(strings(&["video"]))
        )),
        "agent_already_bound"
    );
    // Once bound, the code keeps working for key creation.
    agent
        .create_key(&fx, &again.registration_code, &["image"])
        .expect("bound code creates keys");
    // The old code is not this agent's any more.
    assert_eq!(
        code(agent.create_key(&fx, &registration.registration_code, &["image"])),
        "unauthorized"
    );
}

#[test]
fn scopes_beyond_what_the_binding_or_key_allows_are_forbidden() {
    let fx = fresh();
    let limited = bound_agent(&fx, 15, Some(&["image"]));
    let refused = limited
        .agent
        .create_key(&fx, &limited.code, &["image", "video"]);
    assert!(matches!(&refused, Err(Error::Forbidden { scope }) if scope == "video"));
    assert_eq!(
        code(limited.agent.create_key(&fx, &limited.code, &["admin"])),
        "forbidden"
    );

    // No explicit list: any product scope, never admin.
    let open = bound_agent(&fx, 16, None);
    open.agent
        .create_key(&fx, &open.code, &["image", "video", "music", "chat"])
        .expect("product scopes");
    assert_eq!(
        code(open.agent.create_key(&fx, &open.code, &["admin"])),
        "forbidden"
    );
    // Malformed scopes are invalid requests.
    assert_eq!(
        code(open.agent.create_key(&fx, &open.code, &["Image"])),
        "invalid_request"
    );
    assert_eq!(
        code(open.agent.create_key(&fx, &open.code, &[])),
        "invalid_request"
    );

    // A token may not ask for more than its key has.
    let key = limited
        .agent
        .create_key(&fx, &limited.code, &["image"])
        .expect("image key");
    assert_eq!(
        code(limited.agent.token(&fx, &key.api_key, &["video"])),
        "forbidden"
    );
    // Without `scopes`, the token gets the key's.
    let body = limited.agent.body(&fx, POST, TOKEN, json!({}));
    let grant = fx
        .gate
        .issue_token(&key.api_key, POST, TOKEN, &body)
        .expect("default scopes");
    assert_eq!(grant.scopes, strings(&["image"]));
}

#[test]
fn require_scope_image_cannot_do_video_and_admin_can_do_all() {
    let fx = fresh();
    let account_id = fx.account();
    let (_, image) = fx
        .gate
        .create_api_key(&account_id, "image only", &strings(&["image"]), None)
        .expect("image key");
    let (_, admin) = fx
        .gate
        .create_api_key(&account_id, "owner", &strings(&["admin"]), None)
        .expect("admin key");
    let image = fx.gate.authenticate(&image).expect("image principal");
    image.require_scope("image").expect("image");
    let refused = image.require_scope("video");
    assert!(matches!(&refused, Err(Error::Forbidden { scope }) if scope == "video"));
    assert_eq!(code(image.require_scope("admin")), "forbidden");
    let admin: Principal = fx.gate.authenticate(&admin).expect("admin principal");
    for scope in ["image", "video", "music", "chat", "admin"] {
        admin.require_scope(scope).expect(scope);
    }
}

#[test]
fn revocation_takes_effect_on_the_very_next_authenticate() {
    let fx = fresh();
    let account_id = fx.account();
    let (info, secret) = fx
        .gate
        .create_api_key(&account_id, "ci", &strings(&["image", "video"]), None)
        .expect("create key");
    assert!(secret.starts_with("cg_live_"));
    assert_eq!(info.scopes, strings(&["image", "video"]));
    let principal = fx.gate.authenticate(&secret).expect("authenticates");
    assert_eq!(principal.account_id, account_id);
    assert_eq!(
        principal.via,
        Via::Key {
            key_id: info.id.clone(),
            agent_id: None
        }
    );

    let revoked = fx.gate.revoke_api_key(&info.id).expect("revoke");
    assert_eq!(revoked.revoked_at, Some(START));
    let refused = fx.gate.authenticate(&secret);
    assert!(matches!(refused, Err(Error::Unauthorized { .. })));
    // Idempotent: the first revocation time stays.
    fx.advance_secs(10);
    assert_eq!(
        fx.gate.revoke_api_key(&info.id).expect("again").revoked_at,
        Some(START)
    );
    assert_eq!(code(fx.gate.revoke_api_key("key_nope")), "not_found");

    // An agent key revoked by its owner takes its access tokens with it.
    let (bound, api_key, grant) = agent_with_tokens(&fx, 17);
    fx.gate
        .authenticate(&grant.access_token)
        .expect("token works");
    let agent_key = fx
        .gate
        .list_api_keys(&bound.account_id)
        .expect("list")
        .into_iter()
        .find(|key| key.agent_id.is_some())
        .expect("the agent's key");
    fx.gate
        .revoke_account_api_key(&bound.account_id, &agent_key.id)
        .expect("owner revokes the agent's key");
    assert_eq!(code(fx.gate.authenticate(&api_key)), "unauthorized");
    assert_eq!(
        code(fx.gate.authenticate(&grant.access_token)),
        "unauthorized"
    );
    assert_eq!(
        code(bound.agent.token(&fx, &api_key, &["image"])),
        "unauthorized"
    );
}

#[test]
fn expiry_takes_effect_on_the_very_next_authenticate() {
    let fx = fresh();
    let account_id = fx.account();
    let (info, secret) = fx
        .gate
        .create_api_key(&account_id, "short", &strings(&["chat"]), Some(1))
        .expect("create key");
    assert_eq!(info.expires_at, Some(START + 86_400_000));
    fx.advance_secs(86_399);
    fx.gate.authenticate(&secret).expect("one second left");
    fx.advance_secs(1);
    assert_eq!(code(fx.gate.authenticate(&secret)), "unauthorized");

    // An access token dies at 900 s; the refresh token still works.
    let (_, _, grant) = agent_with_tokens(&fx, 18);
    fx.advance_secs(ACCESS_TOKEN_TTL_SECS - 1);
    fx.gate
        .authenticate(&grant.access_token)
        .expect("one second left");
    fx.advance_secs(1);
    let expired = fx.gate.authenticate(&grant.access_token);
    assert!(matches!(expired, Err(Error::TokenExpired)));
    assert_eq!(code(expired), "token_expired");
    let refreshed = fx
        .gate
        .refresh_token(&grant.refresh_token)
        .expect("refresh");
    fx.gate
        .authenticate(&refreshed.access_token)
        .expect("the new access token");
    fx.advance_secs(ACCESS_TOKEN_TTL_SECS + 1);
    assert_eq!(
        code(fx.gate.authenticate(&refreshed.access_token)),
        "token_expired"
    );

    // An expired refresh token is expired too.
    fx.advance_secs(creditgate::identity::tokens::REFRESH_TOKEN_TTL_SECS);
    assert_eq!(
        code(fx.gate.refresh_token(&refreshed.refresh_token)),
        "token_expired"
    );
}

#[test]
fn a_reused_refresh_token_revokes_its_whole_family() {
    let fx = fresh();
    let (bound, api_key, first) = agent_with_tokens(&fx, 19);
    // A second, independent family from the same key.
    let other = bound
        .agent
        .token(&fx, &api_key, &["image"])
        .expect("second family");
    assert_ne!(other.family_id, first.family_id);

    let second = fx
        .gate
        .refresh_token(&first.refresh_token)
        .expect("rotate 1");
    let third = fx
        .gate
        .refresh_token(&second.refresh_token)
        .expect("rotate 2");
    fx.gate
        .authenticate(&third.access_token)
        .expect("latest works");

    // The first refresh token again: someone else holds it.
    let reused = fx.gate.refresh_token(&first.refresh_token);
    assert!(matches!(reused, Err(Error::RefreshTokenReused)));
    // Every token of the family is dead, on the very next call.
    for access in [
        &first.access_token,
        &second.access_token,
        &third.access_token,
    ] {
        assert_eq!(code(fx.gate.authenticate(access)), "unauthorized");
    }
    assert_eq!(
        code(fx.gate.refresh_token(&third.refresh_token)),
        "unauthorized"
    );
    assert_eq!(
        code(fx.gate.refresh_token(&first.refresh_token)),
        "unauthorized"
    );
    // The other family is untouched.
    fx.gate
        .authenticate(&other.access_token)
        .expect("other family");
    fx.gate
        .refresh_token(&other.refresh_token)
        .expect("other family refreshes");
    // Garbage is unauthorized.
    assert_eq!(code(fx.gate.refresh_token("cg_rt_nope")), "unauthorized");
    assert_eq!(
        code(fx.gate.refresh_token(&first.access_token)),
        "unauthorized"
    );
}

#[test]
fn accounts_and_agents_see_only_their_own_keys() {
    let fx = fresh();
    let alice = fx.account();
    let bob = fx.account();
    let (alice_key, _) = fx
        .gate
        .create_api_key(&alice, "alice", &strings(&["image"]), None)
        .expect("alice key");
    fx.gate
        .create_api_key(&bob, "bob", &strings(&["image"]), None)
        .expect("bob key");

    assert_eq!(
        fx.gate.api_key(&alice, &alice_key.id).expect("own").id,
        alice_key.id
    );
    assert_eq!(code(fx.gate.api_key(&bob, &alice_key.id)), "not_found");
    assert_eq!(
        code(fx.gate.revoke_account_api_key(&bob, &alice_key.id)),
        "not_found"
    );
    assert!(fx
        .gate
        .api_key(&alice, &alice_key.id)
        .expect("own")
        .revoked_at
        .is_none());
    let listed: Vec<String> = fx
        .gate
        .list_api_keys(&bob)
        .expect("bob's list")
        .into_iter()
        .map(|key| key.account_id)
        .collect();
    assert_eq!(listed, vec![bob]);
    assert_eq!(code(fx.gate.list_api_keys("acct_nope")), "not_found");

    // Agents: another agent's key is not_found, even in the same account.
    let a = bound_agent_to(&fx, 20, &alice, None);
    let b = bound_agent_to(&fx, 21, &alice, None);
    let a_key = a.agent.create_key(&fx, &a.code, &["image"]).expect("a key");
    b.agent.create_key(&fx, &b.code, &["image"]).expect("b key");
    let body = b
        .agent
        .body(&fx, POST, KEYS_REVOKE, json!({ "key_id": a_key.key_id }));
    assert_eq!(
        code(fx.gate.agent_revoke_key(POST, KEYS_REVOKE, &body)),
        "not_found"
    );
    let body = b
        .agent
        .body(&fx, POST, KEYS_REVOKE, json!({ "key_id": alice_key.id }));
    assert_eq!(
        code(fx.gate.agent_revoke_key(POST, KEYS_REVOKE, &body)),
        "not_found"
    );
    let body = b.agent.body(&fx, POST, KEYS_LIST, json!({}));
    let b_keys = fx
        .gate
        .agent_list_keys(POST, KEYS_LIST, &body)
        .expect("b's list");
    assert_eq!(b_keys.len(), 1);
    assert_eq!(
        b_keys[0].agent_id.as_deref(),
        Some(b.agent.agent_id.as_str())
    );
    fx.gate
        .authenticate(&a_key.api_key)
        .expect("a's key untouched");
}

#[test]
fn last_used_at_is_written_at_most_once_a_minute() {
    let fx = fresh();
    let account_id = fx.account();
    let (info, secret) = fx
        .gate
        .create_api_key(&account_id, "busy", &strings(&["chat"]), None)
        .expect("create");
    assert_eq!(info.last_used_at, None);
    let last_used = || {
        fx.gate
            .api_key(&account_id, &info.id)
            .expect("get")
            .last_used_at
    };
    let writes = || fx.gate.write_stats().ops;

    fx.gate.authenticate(&secret).expect("first use");
    assert_eq!(last_used(), Some(START));
    let before = writes();
    for _ in 0..5 {
        fx.clock.advance(Duration::from_secs(10));
        fx.gate.authenticate(&secret).expect("use");
    }
    assert_eq!(writes(), before, "no write within the interval");
    assert_eq!(last_used(), Some(START));
    fx.clock
        .advance(Duration::from_secs(LAST_USED_INTERVAL_SECS as u64 - 50));
    fx.gate.authenticate(&secret).expect("a minute later");
    assert_eq!(last_used(), Some(START + LAST_USED_INTERVAL_SECS * 1_000));
    assert_eq!(writes(), before + 1);
}

#[test]
fn api_key_input_is_validated() {
    let fx = fresh();
    let account_id = fx.account();
    let create = |name: &str, scopes: &[&str], days: Option<u32>| {
        fx.gate
            .create_api_key(&account_id, name, &strings(scopes), days)
    };
    assert_eq!(code(create("", &["image"], None)), "invalid_request");
    assert_eq!(code(create("k", &[], None)), "invalid_request");
    assert_eq!(code(create("k", &["bad scope"], None)), "invalid_request");
    let long = "x".repeat(33);
    assert_eq!(code(create("k", &[long.as_str()], None)), "invalid_request");
    assert_eq!(code(create("k", &["image"], Some(0))), "invalid_request");
    assert_eq!(
        code(create("k", &["image"], Some(100_000))),
        "invalid_request"
    );
    assert_eq!(
        code(
            fx.gate
                .create_api_key("acct_nope", "k", &strings(&["image"]), None)
        ),
        "not_found"
    );
    let (info, _) = create("  k  ", &["video", "image", "video"], None).expect("valid");
    assert_eq!(info.name, "k");
    assert_eq!(info.scopes, strings(&["image", "video"]));
    for bearer in ["", "Bearer", "cg_live_nope", "sk-whatever", "Basic abc"] {
        assert_eq!(
            code(fx.gate.authenticate(bearer)),
            "unauthorized",
            "{bearer}"
        );
    }
}

/// An identity provider in process: every token is valid and names the
/// same external agent. The gate writes what it writes for Moltbook (the
/// verifier only answers), without a network stand-in.
#[derive(Debug)]
struct TrustingVerifier;

impl IdentityVerifier for TrustingVerifier {
    fn provider(&self) -> &'static str {
        MOLTBOOK_PROVIDER
    }

    fn verify(&self, _identity_token: &str) -> creditgate::Result<VerifiedIdentity> {
        Ok(VerifiedIdentity {
            external_id: "0d4f1c2e-external-agent".to_owned(),
            name: "External Agent".to_owned(),
            karma: None,
            owner_handle: None,
        })
    }
}

/// The one "no secret in the database or its WAL" test: it creates every
/// kind of secret (account key, agent registration code, agent key, access
/// and refresh tokens and their refreshed pair, an external agent's
/// registration code and access token, and the external identity token
/// itself), then greps the database, `-wal` and `-shm` files for each,
/// whole and by its random part, with the writes still in the WAL and
/// again after a checkpoint.
#[test]
fn no_secret_is_readable_in_the_database_or_its_wal() {
    let mut fx = common::open(Setup {
        catalog: Some(RYNJER),
        ..Setup::default()
    });
    fx.gate = fx
        .gate
        .with_identity_verifier(Arc::new(TrustingVerifier), None);
    let account_id = fx.account();
    let mut secrets = Vec::new();
    let (_, account_key) = fx
        .gate
        .create_api_key(&account_id, "owner", &strings(&["admin"]), None)
        .expect("account key");
    fx.gate.authenticate(&account_key).expect("use it");
    secrets.push(account_key);

    let mut agent = TestAgent::new(22);
    let registration = agent.register(&fx);
    fx.gate
        .bind_agent(&registration.registration_code, &account_id, None)
        .expect("bind");
    let key = agent
        .create_key(&fx, &registration.registration_code, &["image"])
        .expect("agent key");
    let grant = agent.token(&fx, &key.api_key, &["image"]).expect("token");
    fx.gate
        .authenticate(&grant.access_token)
        .expect("use token");
    let refreshed = fx
        .gate
        .refresh_token(&grant.refresh_token)
        .expect("refresh");
    secrets.extend([
        registration.registration_code,
        key.api_key,
        grant.access_token,
        grant.refresh_token,
        refreshed.access_token,
        refreshed.refresh_token,
    ]);

    // An external agent: its registration code, then, bound, its token.
    let identity_token = "ok-secret-agent";
    let external = match fx.gate.moltbook_exchange(identity_token).expect("exchange") {
        ExchangeOutcome::NotBound(registration) => registration,
        other => panic!("expected not bound, got {other:?}"),
    };
    fx.gate
        .bind_agent(&external.registration_code, &account_id, None)
        .expect("bind the external agent");
    let external_grant = match fx.gate.moltbook_exchange(identity_token).expect("exchange") {
        ExchangeOutcome::Granted(grant) => grant,
        other => panic!("expected a grant, got {other:?}"),
    };
    fx.gate
        .authenticate(&external_grant.access_token)
        .expect("use the external token");
    secrets.extend([external.registration_code, external_grant.access_token]);
    // The identity token is not a secret of ours, and is not kept at all.
    let needles: Vec<Vec<u8>> = secrets
        .iter()
        .flat_map(|secret| {
            let random = secret.rsplit('_').next().expect("random part");
            [secret.as_bytes().to_vec(), random.as_bytes().to_vec()]
        })
        .chain([identity_token.as_bytes().to_vec()])
        .collect();

    let check_files = |path: &std::path::Path, stage: &str| {
        let mut inspected = 0;
        for suffix in ["", "-wal", "-shm"] {
            let file = format!("{}{suffix}", path.display());
            let Ok(bytes) = std::fs::read(&file) else {
                continue;
            };
            inspected += bytes.len();
            for needle in &needles {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                    "{stage}: a secret is readable in {file}"
                );
            }
        }
        assert!(inspected > 0, "{stage}: the database files exist");
    };
    // With the writes still in the WAL ...
    let wal = std::fs::metadata(format!("{}-wal", fx.path.display())).expect("wal exists");
    assert!(wal.len() > 0, "the writes are in the WAL");
    check_files(&fx.path, "live");
    // ... and after they were checkpointed into the main file.
    let Fixture {
        gate, path, dir, ..
    } = fx;
    drop(gate);
    {
        let conn = rusqlite::Connection::open(&path).expect("raw open");
        conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")
            .expect("checkpoint");
    }
    check_files(&path, "checkpointed");
    // Their hashes are there: the test would see a secret if it were stored
    // (the account key, the agent key and the external agent's exchange key).
    let conn = rusqlite::Connection::open(&path).expect("raw open");
    let stored: i64 = conn
        .query_row("SELECT count(*) FROM api_keys", [], |r| r.get(0))
        .expect("count");
    assert_eq!(stored, 3);
    drop(dir);
}
