//! The Moltbook identity exchange through the facade, against a local
//! stand-in for Moltbook's verifier (a std `TcpListener` on 127.0.0.1:0
//! speaking its protocol and recording what it received): valid tokens
//! become access tokens that authenticate and expire, refusals and an
//! unusable verifier never succeed and record nothing, an unbound agent
//! gets a registration code its owner binds, one Moltbook agent is always
//! one creditgate agent, and no token is stored (the one test that greps
//! the database files for every secret is in `identity.rs`). Every wait is
//! bounded.

// The stand-in is spoken to by the HTTP verifier, which needs the feature.
#![cfg(feature = "http")]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{strings, RYNJER, START};
use creditgate::identity::external::MOLTBOOK_PROVIDER;
use creditgate::identity::moltbook_client::VERIFY_RESPONSE_BYTES_MAX;
use creditgate::identity::tokens::ACCESS_TOKEN_TTL_SECS;
use creditgate::{
    AccessGrant, AgentRegistration, Error, ExchangeOutcome, Gate, ManualClock, MoltbookConfig,
    MoltbookVerifier, NewAccount, Via,
};
use rust_decimal::Decimal;
use serde_json::{json, Value};

/// The products of the rynjer catalog: what "any scope but admin" grants.
const PRODUCTS: &[&str] = &["chat", "image", "music", "video"];
/// The verify call's timeout in these tests: generous, for a loaded machine.
const TEST_TIMEOUT_MS: u64 = 5_000;
/// The stand-in's delay for the `slow` token.
const SLOW_REPLY_MS: u64 = 3_000;
/// The timeout the slow test gives the verifier.
const SLOW_TEST_TIMEOUT_MS: u64 = 300;
/// The longest the stand-in runs, whatever happens.
const STAND_IN_LIFETIME_MS: u64 = 60_000;
/// The largest request the stand-in reads.
const STAND_IN_REQUEST_BYTES_MAX: usize = 64 * 1024;

// ----- the stand-in ----------------------------------------------------------

/// One request the stand-in received.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    /// Names lowercased.
    headers: Vec<(String, String)>,
    body: Value,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A stand-in for Moltbook's verifier. Its answer depends on the token:
/// `ok-<id>` (valid, agent `<id>` named `Bot <id>`), `renamed-<id>` (valid,
/// named `Renamed <id>`), `bad-token` (401 invalid_token), `stale-token` (200,
/// valid false, identity_token_expired), `boom` (500), `garbage` (200, not
/// JSON), `huge` (200, a valid answer padded past the read limit),
/// `redirect` (302 elsewhere), `ratelimited` (429), `slow` (valid after
/// [`SLOW_REPLY_MS`]).
struct StandIn {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StandIn {
    fn start() -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the stand-in");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (received, stop) = (received.clone(), stop.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_millis(STAND_IN_LIFETIME_MS);
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let received = received.clone();
                            // Own thread per connection, so a slow answer
                            // holds up nothing else; each ends by itself.
                            std::thread::spawn(move || serve(stream, &received));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        StandIn {
            addr,
            received,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/api/v1/agents/verify-identity", self.addr)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(stream: TcpStream, received: &Mutex<Vec<Received>>) {
    stream.set_nonblocking(false).expect("blocking");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let mut headers = Vec::new();
    let mut read = request_line.len();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(n) => read += n,
        }
        assert!(
            read < STAND_IN_REQUEST_BYTES_MAX,
            "request headers too large"
        );
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse().ok())
        .expect("the verifier call has a Content-Length");
    assert!(
        length < STAND_IN_REQUEST_BYTES_MAX,
        "request body too large"
    );
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let body: Value = serde_json::from_slice(&body).expect("the verifier call sends JSON");
    let token = body["token"].as_str().unwrap_or("").to_owned();
    received.lock().expect("lock").push(Received {
        method,
        path,
        headers,
        body,
    });
    let (status, extra, payload) = answer(&token);
    let mut stream = stream;
    let head = format!(
        "HTTP/1.1 {status} Stand-In\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        payload.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&payload);
    let _ = stream.flush();
}

fn valid(id: &str, name: &str) -> Value {
    json!({ "success": true, "valid": true, "agent": {
        "id": id, "name": name, "description": "a test agent", "karma": 420,
        "avatar_url": "https://example.invalid/a.png", "is_claimed": true,
        "created_at": "2026-01-01T00:00:00Z", "follower_count": 42,
        "stats": { "posts": 156, "comments": 892 },
        "owner": { "x_handle": format!("owner_{id}"), "x_name": "Owner", "x_verified": true,
                   "x_follower_count": 10000 } } })
}

/// The stand-in's answer to `token`: status, extra header lines, body.
fn answer(token: &str) -> (u16, String, Vec<u8>) {
    let json = |status: u16, value: Value| (status, String::new(), value.to_string().into_bytes());
    if let Some(id) = token.strip_prefix("ok-") {
        return json(200, valid(id, &format!("Bot {id}")));
    }
    if let Some(id) = token.strip_prefix("renamed-") {
        return json(200, valid(id, &format!("Renamed {id}")));
    }
    match token {
        "bad-token" => json(
            401,
            json!({"success": false, "valid": false, "error": "invalid_token", "hint": "mint a new one"}),
        ),
        "stale-token" => json(
            200,
            json!({"success": false, "valid": false, "error": "identity_token_expired"}),
        ),
        "boom" => json(500, json!({"error": "internal"})),
        "garbage" => (
            200,
            String::new(),
            b"<html>not the protocol</html>".to_vec(),
        ),
        "huge" => {
            let mut value = valid("huge-1", "Huge");
            value["padding"] = json!("x".repeat(VERIFY_RESPONSE_BYTES_MAX as usize + 1));
            json(200, value)
        }
        "redirect" => (
            302,
            "Location: http://elsewhere.invalid/verify\r\n".to_owned(),
            Vec::new(),
        ),
        "ratelimited" => json(
            429,
            json!({"success": false, "error": "rate_limit_exceeded"}),
        ),
        "slow" => {
            std::thread::sleep(Duration::from_millis(SLOW_REPLY_MS));
            json(200, valid("slow-1", "Slow"))
        }
        _ => json(400, json!({"success": false, "error": "invalid_token"})),
    }
}

// ----- the gate ---------------------------------------------------------------

struct Fixture {
    _dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    gate: Gate,
    stand_in: StandIn,
    /// The configured default account, if any.
    default_account: Option<String>,
}

/// How a fixture's verifier is configured.
struct Setup {
    default_account: bool,
    app_key: Option<&'static str>,
    audience: Option<&'static str>,
    timeout_ms: u64,
    /// Point the verifier here instead of at the stand-in.
    url: Option<String>,
}

impl Default for Setup {
    fn default() -> Setup {
        Setup {
            default_account: false,
            app_key: None,
            audience: None,
            timeout_ms: TEST_TIMEOUT_MS,
            url: None,
        }
    }
}

fn fixture(setup: Setup) -> Fixture {
    let common::Fixture {
        dir,
        clock,
        gate: plain,
        ..
    } = common::open(common::Setup {
        catalog: Some(RYNJER),
        ..common::Setup::default()
    });
    let stand_in = StandIn::start();
    let default_account = setup.default_account.then(|| {
        plain
            .create_account(&NewAccount::named("moltbook pool"))
            .expect("account")
            .id
    });
    let mut config = MoltbookConfig::new(setup.url.unwrap_or_else(|| stand_in.url()));
    config.app_key = setup.app_key.map(str::to_owned);
    config.audience = setup.audience.map(str::to_owned);
    config.timeout_ms = setup.timeout_ms;
    config.connect_timeout_ms = setup.timeout_ms;
    let verifier = MoltbookVerifier::new(config).expect("verifier");
    let gate = plain.with_identity_verifier(Arc::new(verifier), default_account.clone());
    Fixture {
        _dir: dir,
        clock,
        gate,
        stand_in,
        default_account,
    }
}

impl Fixture {
    fn granted(&self, token: &str) -> AccessGrant {
        match self.gate.moltbook_exchange(token).expect(token) {
            ExchangeOutcome::Granted(grant) => grant,
            other => panic!("{token}: expected a grant, got {other:?}"),
        }
    }

    fn not_bound(&self, token: &str) -> AgentRegistration {
        match self.gate.moltbook_exchange(token).expect(token) {
            ExchangeOutcome::NotBound(registration) => registration,
            other => panic!("{token}: expected not bound, got {other:?}"),
        }
    }

    fn count(&self, table: &str) -> i64 {
        self.gate
            .store_for_tests()
            .read(|conn| {
                Ok(
                    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                        row.get(0)
                    })?,
                )
            })
            .expect("count")
    }

    /// No agent, identity, key or token was recorded.
    fn assert_recorded_nothing(&self) {
        for table in ["agents", "external_identities", "api_keys", "access_tokens"] {
            assert_eq!(self.count(table), 0, "{table}");
        }
    }

    fn advance_secs(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }
}

// ----- tests ------------------------------------------------------------------

#[test]
fn a_valid_token_becomes_an_access_token_that_authenticates_and_expires() {
    let fx = fixture(Setup {
        default_account: true,
        app_key: Some("moltdev_test_key"),
        audience: Some("gate.test"),
        ..Setup::default()
    });
    let grant = fx.granted("ok-agent-1");
    let account = fx.default_account.clone().expect("default account");
    assert_eq!(grant.account_id, account);
    assert_eq!(grant.scopes, strings(PRODUCTS), "every product, not admin");
    assert_eq!(grant.token_type, "Bearer");
    assert_eq!(grant.expires_in, 900);
    assert_eq!(grant.expires_in, ACCESS_TOKEN_TTL_SECS);
    assert!(grant.access_token.starts_with("cg_at_"));

    // What the verifier was sent.
    let received = fx.stand_in.received();
    assert_eq!(received.len(), 1);
    let call = &received[0];
    assert_eq!(call.method, "POST");
    assert_eq!(call.path, "/api/v1/agents/verify-identity");
    assert_eq!(
        call.body,
        json!({"token": "ok-agent-1", "audience": "gate.test"})
    );
    assert_eq!(call.header("x-moltbook-app-key"), Some("moltdev_test_key"));
    assert_eq!(call.header("content-type"), Some("application/json"));

    // The token authenticates as the agent, for the account, with the scopes.
    let principal = fx.gate.authenticate(&grant.access_token).expect("auth");
    assert_eq!(principal.account_id, account);
    assert_eq!(principal.scopes, strings(PRODUCTS));
    assert!(principal.require_scope("image").is_ok());
    assert_eq!(
        principal
            .require_scope("admin")
            .expect_err("no admin")
            .code(),
        "forbidden"
    );
    assert_eq!(principal.agent_id(), Some(grant.agent_id.as_str()));
    assert!(
        matches!(&principal.via, Via::AccessToken { family_id, .. } if *family_id == grant.family_id)
    );
    let header = format!("Bearer {}", grant.access_token);
    assert!(fx.gate.authenticate(&header).is_ok());

    // The agent is a bound agent without a public key.
    let agent = fx.gate.agent(&grant.agent_id).expect("agent");
    assert_eq!(agent.account_id.as_deref(), Some(account.as_str()));
    assert_eq!(agent.public_key, None);
    assert_eq!(agent.name, "Bot agent-1");
    let mapped = fx
        .gate
        .external_identity(MOLTBOOK_PROVIDER, "agent-1")
        .expect("read")
        .expect("mapped");
    assert_eq!(mapped.agent_id, grant.agent_id);
    assert_eq!(mapped.karma, Some(420));
    assert_eq!(mapped.owner_handle.as_deref(), Some("owner_agent-1"));

    // It lives exactly 900 s on the injected clock.
    fx.advance_secs(ACCESS_TOKEN_TTL_SECS - 1);
    assert!(fx.gate.authenticate(&grant.access_token).is_ok());
    fx.advance_secs(1);
    let expired = fx
        .gate
        .authenticate(&grant.access_token)
        .expect_err("expired");
    assert!(matches!(expired, Error::TokenExpired), "{expired:?}");
    assert_eq!(expired.code(), "token_expired");
}

#[test]
fn without_an_app_key_or_audience_neither_is_sent() {
    let fx = fixture(Setup {
        default_account: true,
        ..Setup::default()
    });
    fx.granted("ok-plain");
    let received = fx.stand_in.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body, json!({"token": "ok-plain"}));
    assert_eq!(received[0].header("x-moltbook-app-key"), None);
}

#[test]
fn refused_tokens_are_identity_refused_and_record_nothing() {
    let fx = fixture(Setup {
        default_account: true,
        ..Setup::default()
    });
    for (token, reason) in [
        ("bad-token", "invalid_token"),
        ("stale-token", "identity_token_expired"),
    ] {
        let err = fx.gate.moltbook_exchange(token).expect_err(token);
        assert_eq!(err.code(), "identity_refused", "{token}");
        assert!(
            matches!(&err, Error::IdentityRefused { provider: "moltbook", reason: r } if r == reason),
            "{token}: {err:?}"
        );
        assert!(!err.to_string().contains(token), "the token is not echoed");
    }
    // A blank or malformed token is refused before any call.
    assert_eq!(
        fx.gate.moltbook_exchange("  ").expect_err("blank").code(),
        "unauthorized"
    );
    assert_eq!(
        fx.gate
            .moltbook_exchange("two words")
            .expect_err("malformed")
            .code(),
        "identity_refused"
    );
    assert_eq!(fx.stand_in.received().len(), 2, "only two calls were made");
    fx.assert_recorded_nothing();
}

#[test]
fn an_unusable_verifier_is_upstream_unavailable_never_a_success() {
    let fx = fixture(Setup {
        default_account: true,
        ..Setup::default()
    });
    for token in ["boom", "garbage", "huge", "redirect", "ratelimited"] {
        let err = fx.gate.moltbook_exchange(token).expect_err(token);
        assert_eq!(err.code(), "upstream_unavailable", "{token}: {err}");
        assert!(err.is_server_fault(), "{token}");
    }
    assert_eq!(fx.stand_in.received().len(), 5);

    // Nothing listens on a port just released: connection refused.
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let unreachable = fixture(Setup {
        default_account: true,
        url: Some(format!("http://127.0.0.1:{port}/verify")),
        ..Setup::default()
    });
    let err = unreachable
        .gate
        .moltbook_exchange("ok-agent-1")
        .expect_err("unreachable");
    assert_eq!(err.code(), "upstream_unavailable", "{err}");

    fx.assert_recorded_nothing();
    unreachable.assert_recorded_nothing();
}

#[test]
fn a_slow_verifier_times_out_as_upstream_unavailable() {
    let fx = fixture(Setup {
        default_account: true,
        timeout_ms: SLOW_TEST_TIMEOUT_MS,
        ..Setup::default()
    });
    let started = Instant::now();
    let err = fx.gate.moltbook_exchange("slow").expect_err("slow");
    assert_eq!(err.code(), "upstream_unavailable", "{err}");
    assert!(
        started.elapsed() < Duration::from_millis(SLOW_REPLY_MS),
        "gave up at the timeout, not after the answer: {:?}",
        started.elapsed()
    );
    assert_eq!(fx.count("agents"), 0);
}

#[test]
fn an_unbound_agent_gets_a_registration_code_its_owner_binds() {
    let fx = fixture(Setup::default());
    let first = fx.not_bound("ok-agent-7");
    assert!(first.registration_code.starts_with("cg_reg_"));
    let agent = fx.gate.agent(&first.agent_id).expect("agent");
    assert_eq!(agent.account_id, None);
    assert_eq!(
        fx.count("access_tokens"),
        0,
        "no token for an unbound agent"
    );

    // Exchanging again rotates the code: the first one no longer binds.
    let second = fx.not_bound("ok-agent-7");
    assert_eq!(second.agent_id, first.agent_id, "the same agent");
    assert_ne!(second.registration_code, first.registration_code);
    let owner = common::account(&fx.gate, "owner", Decimal::ZERO);
    assert_eq!(
        fx.gate
            .bind_agent(&first.registration_code, &owner, None)
            .expect_err("rotated away")
            .code(),
        "not_found"
    );

    // The owner binds the current code, allowing image only.
    let bound = fx
        .gate
        .bind_agent(&second.registration_code, &owner, Some(strings(&["image"])))
        .expect("bind");
    assert_eq!(bound.id, first.agent_id);

    let grant = fx.granted("ok-agent-7");
    assert_eq!(grant.agent_id, first.agent_id);
    assert_eq!(grant.account_id, owner);
    assert_eq!(grant.scopes, strings(&["image"]), "the binding's scopes");
    let principal = fx.gate.authenticate(&grant.access_token).expect("auth");
    assert_eq!(principal.account_id, owner);
    assert_eq!(
        principal.require_scope("video").expect_err("video").code(),
        "forbidden"
    );
}

#[test]
fn the_code_of_an_unbound_agent_expires_and_the_next_exchange_renews_it() {
    let fx = fixture(Setup::default());
    let first = fx.not_bound("ok-agent-8");
    fx.advance_secs(creditgate::identity::agents::REGISTRATION_TTL_SECS as u64);
    let owner = common::account(&fx.gate, "owner", Decimal::ZERO);
    assert_eq!(
        fx.gate
            .bind_agent(&first.registration_code, &owner, None)
            .expect_err("expired")
            .code(),
        "registration_expired"
    );
    let renewed = fx.not_bound("ok-agent-8");
    fx.gate
        .bind_agent(&renewed.registration_code, &owner, None)
        .expect("bind the renewed code");
    assert_eq!(fx.granted("ok-agent-8").account_id, owner);
}

#[test]
fn one_moltbook_agent_is_always_one_creditgate_agent() {
    let fx = fixture(Setup {
        default_account: true,
        ..Setup::default()
    });
    let first = fx.granted("ok-agent-2");
    let again = fx.granted("renamed-agent-2");
    assert_eq!(again.agent_id, first.agent_id);
    assert_ne!(again.access_token, first.access_token);
    assert_ne!(again.family_id, first.family_id);
    // Both tokens work: a new exchange does not end the earlier one.
    assert!(fx.gate.authenticate(&first.access_token).is_ok());
    assert!(fx.gate.authenticate(&again.access_token).is_ok());
    assert_eq!(
        fx.gate.agent(&first.agent_id).expect("agent").name,
        "Renamed agent-2",
        "the provider's latest name"
    );
    let other = fx.granted("ok-agent-3");
    assert_ne!(other.agent_id, first.agent_id);
    assert_eq!(fx.count("agents"), 2);
    assert_eq!(fx.count("external_identities"), 2);
    // One exchange key per agent, reused by every exchange.
    let keys = fx
        .gate
        .list_api_keys(fx.default_account.as_deref().expect("account"))
        .expect("keys");
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().all(|key| key.name == "moltbook exchange"));
}

#[test]
fn revoking_the_exchange_key_ends_its_tokens_at_once() {
    let fx = fixture(Setup {
        default_account: true,
        ..Setup::default()
    });
    let grant = fx.granted("ok-agent-4");
    let principal = fx.gate.authenticate(&grant.access_token).expect("auth");
    let Via::AccessToken { key_id, .. } = principal.via else {
        panic!("an access token");
    };
    let key = fx
        .gate
        .api_key(fx.default_account.as_deref().expect("account"), &key_id)
        .expect("the exchange key");
    assert_eq!(key.agent_id.as_deref(), Some(grant.agent_id.as_str()));
    assert!(key.last_used_at.is_some());
    fx.gate.revoke_api_key(&key_id).expect("revoke");
    assert_eq!(
        fx.gate
            .authenticate(&grant.access_token)
            .expect_err("revoked")
            .code(),
        "unauthorized"
    );
    // The next exchange asks Moltbook again and starts a new key.
    let next = fx.granted("ok-agent-4");
    assert_eq!(next.agent_id, grant.agent_id);
    let principal = fx.gate.authenticate(&next.access_token).expect("auth");
    assert!(matches!(principal.via, Via::AccessToken { key_id: new, .. } if new != key_id));
}

#[test]
fn a_moltbook_agent_cannot_use_the_signed_agent_flow() {
    let fx = fixture(Setup {
        default_account: true,
        ..Setup::default()
    });
    let grant = fx.granted("ok-agent-5");
    let body = json!({
        "agent_id": grant.agent_id, "timestamp": START / 1_000, "nonce": "n-1",
        "signature": "00".repeat(64),
    });
    let err = fx
        .gate
        .agent_list_keys("POST", "/api/v1/agents/keys/list", &body)
        .expect_err("no key to sign with");
    assert_eq!(err.code(), "unauthorized");
}

#[test]
fn the_exchange_is_off_unless_configured() {
    let fx = common::fresh();
    let err = fx.gate.moltbook_exchange("ok-agent-1").expect_err("off");
    assert_eq!(err.code(), "not_found");
    assert!(
        matches!(&err, Error::IdentityProviderNotConfigured { provider } if provider == "moltbook")
    );
}

#[test]
fn a_missing_default_account_or_catalog_records_nothing() {
    let fx = common::fresh();
    let stand_in = StandIn::start();
    let verifier = MoltbookVerifier::new(MoltbookConfig::new(stand_in.url())).expect("verifier");
    let gate = fx
        .gate
        .with_identity_verifier(Arc::new(verifier), Some("acct_missing".to_owned()));
    let err = gate
        .moltbook_exchange("ok-agent-1")
        .expect_err("no account");
    assert_eq!(err.code(), "not_found");
    // With the account but no catalog there are no product scopes to grant.
    let account = gate
        .create_account(&NewAccount::named("pool"))
        .expect("account");
    let verifier = MoltbookVerifier::new(MoltbookConfig::new(stand_in.url())).expect("verifier");
    let gate = gate.with_identity_verifier(Arc::new(verifier), Some(account.id));
    let err = gate
        .moltbook_exchange("ok-agent-1")
        .expect_err("no catalog");
    assert_eq!(err.code(), "no_price_catalog");
    let agents: i64 = gate
        .store_for_tests()
        .read(|conn| Ok(conn.query_row("SELECT count(*) FROM agents", [], |r| r.get(0))?))
        .expect("count");
    assert_eq!(agents, 0, "both refusals rolled back");
}
