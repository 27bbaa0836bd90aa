//! Black-box tests of card top-ups through the real binary against a
//! stand-in of Stripe's API: an honest refusal when Stripe is not
//! configured, a Checkout Session opened for a top-up, the wallet credited
//! once and only by a signed event (a bad signature, a replay, kill -9
//! between Stripe's delivery and a retry), no secret in any answer or log
//! line, and `ledger verify` after each.

use creditgate_standins::stripe::{paid_event, refunded_event, signature, StripeStandIn};
use creditgate_tests::{raw_http, HttpResponse, Sandbox, Server};
use serde_json::json;

const SECRET_KEY: &str = "sk_test_4eC39HqLyjWDarjtT1zdp7dc";
const WEBHOOK_SECRET: &str = "whsec_test_creditgate";

fn sandbox() -> Sandbox {
    Sandbox::new(env!("CARGO_BIN_EXE_creditgate"))
}

fn stripe_env(stand_in: &StripeStandIn) -> Vec<(&'static str, String)> {
    vec![
        ("CREDITGATE_STRIPE_SECRET_KEY", SECRET_KEY.to_owned()),
        (
            "CREDITGATE_STRIPE_WEBHOOK_SECRET",
            WEBHOOK_SECRET.to_owned(),
        ),
        (
            "CREDITGATE_STRIPE_API_BASE",
            stand_in.server.base_url().to_owned(),
        ),
        (
            "CREDITGATE_STRIPE_SUCCESS_URL",
            "https://agents.example/paid".to_owned(),
        ),
        (
            "CREDITGATE_STRIPE_PACKS",
            "starter=100:900,pro=1000:7900".to_owned(),
        ),
    ]
}

fn serve_with_stripe(sb: &Sandbox, stand_in: &StripeStandIn) -> Server {
    let env = stripe_env(stand_in);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    sb.serve_env(&[], &env)
}

/// POSTs a Stripe event with its `Stripe-Signature`.
fn deliver(server: &Server, signature: &str, body: &str) -> HttpResponse {
    let request = format!(
        "POST /v1/payments/stripe/webhook HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nStripe-Signature: {signature}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        server.addr,
        body.len()
    );
    raw_http(&server.addr, request.as_bytes())
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64
}

fn account_with_key(sb: &Sandbox) -> (String, String) {
    let account = sb.account("agent");
    let key = sb.ok(&["keys", "create", "--account", &account, "--scope", "image"])["key"]
        .as_str()
        .expect("key")
        .to_owned();
    (account, key)
}

fn verify(sb: &Sandbox) {
    let run = sb.run(&["ledger", "verify"]);
    assert_eq!(run.code, 0, "ledger verify: {}{}", run.stdout, run.stderr);
}

#[test]
fn without_stripe_a_top_up_is_an_honest_refusal() {
    let sb = sandbox();
    let (_, key) = account_with_key(&sb);
    let server = sb.serve(&[]);
    let refused = server.post("/v1/credits/topup", &key, &json!({"credits": 10}));
    assert_eq!(refused.status, 403, "{}", refused.json());
    assert_eq!(refused.json()["data"]["error"], "not_configured");
    let body = paid_event("evt_1", "top_x", 10, "usd");
    let webhook = deliver(
        &server,
        &signature(WEBHOOK_SECRET, now_secs(), &body),
        &body,
    );
    assert_eq!(webhook.status, 403);
    drop(server);
    verify(&sb);
}

#[test]
fn a_paid_checkout_credits_once_even_across_kill_9() {
    let sb = sandbox();
    let stand_in = StripeStandIn::start(SECRET_KEY);
    let (_, key) = account_with_key(&sb);
    let server = serve_with_stripe(&sb, &stand_in);
    let opened = server.post("/v1/credits/topup", &key, &json!({"credits": 25}));
    assert_eq!(opened.status, 200, "{}", opened.json());
    let data = opened.json()["data"].clone();
    let topup_id = data["topup_id"].as_str().expect("id").to_owned();
    assert_eq!(data["status"], "open");
    assert_eq!(data["amount_minor"], 25);
    assert!(data["checkout_url"]
        .as_str()
        .is_some_and(|url| url.starts_with(stand_in.server.base_url())));
    let forms = stand_in.forms();
    assert_eq!(forms.len(), 1);
    assert!(forms[0].to_string().contains(&topup_id));
    let seen = stand_in.server.seen();
    assert_eq!(seen[0].header("idempotency-key"), Some(topup_id.as_str()));
    assert_eq!(
        server.get("/v1/credits/balance", &key).json()["data"]["available"],
        json!(0)
    );

    // A forged delivery is refused and moves nothing.
    let body = paid_event("evt_paid_1", &topup_id, 25, "usd");
    let forged = deliver(
        &server,
        &signature("whsec_forged", now_secs(), &body),
        &body,
    );
    assert_eq!(forged.status, 401);
    assert_eq!(forged.json()["data"]["error"], "webhook_unverified");
    // The genuine one credits; Stripe never hears back (kill -9), so it
    // retries after the restart: credited once.
    let header = signature(WEBHOOK_SECRET, now_secs(), &body);
    let credited = deliver(&server, &header, &body);
    assert_eq!(credited.status, 200, "{}", credited.json());
    assert_eq!(credited.json()["outcome"], "credited");
    let log = server.stderr();
    server.kill();
    let server = serve_with_stripe(&sb, &stand_in);
    let retried = deliver(&server, &header, &body);
    assert_eq!(retried.status, 200);
    assert_eq!(retried.json()["outcome"], "duplicate");
    assert_eq!(
        server.get("/v1/credits/balance", &key).json()["data"]["available"],
        json!(25)
    );
    let status = server.get(&format!("/v1/credits/topup/{topup_id}"), &key);
    assert_eq!(status.json()["data"]["status"], "credited");
    // No secret in the log or the database.
    let log = log + &server.stderr();
    for secret in [SECRET_KEY, WEBHOOK_SECRET] {
        assert!(!log.contains(secret), "a secret in the log");
        let db = std::fs::read(sb.db()).expect("db");
        assert!(
            !db.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "a secret in the database"
        );
    }
    drop(server);
    verify(&sb);
}

#[test]
fn a_crash_before_the_event_loses_nothing_and_bad_requests_are_refused() {
    let sb = sandbox();
    let stand_in = StripeStandIn::start(SECRET_KEY);
    let (_, key) = account_with_key(&sb);
    let server = serve_with_stripe(&sb, &stand_in);
    let opened = server.post("/v1/credits/topup", &key, &json!({"credits": 3}));
    let topup_id = opened.json()["data"]["topup_id"]
        .as_str()
        .expect("id")
        .to_owned();
    for (body, field) in [
        (json!({}), "credits"),
        (json!({"credits": "3"}), "credits"),
        (json!({"credits": 0.5}), "credits"),
        (json!({"credits": 3, "coupon": "x"}), "coupon"),
    ] {
        let refused = server.post("/v1/credits/topup", &key, &body);
        assert_eq!(refused.status, 400, "{body}: {}", refused.json());
        assert_eq!(refused.json()["data"]["field"], field, "{body}");
    }
    // Killed before Stripe's event arrives: the top-up was stored before
    // Stripe was called, so the event after the restart still credits it.
    server.kill();
    let server = serve_with_stripe(&sb, &stand_in);
    let body = paid_event("evt_paid_2", &topup_id, 3, "usd");
    let credited = deliver(
        &server,
        &signature(WEBHOOK_SECRET, now_secs(), &body),
        &body,
    );
    assert_eq!(credited.json()["outcome"], "credited");
    // Another account's top-up is not found.
    let (_, other) = account_with_key(&sb);
    let hidden = server.get(&format!("/v1/credits/topup/{topup_id}"), &other);
    assert_eq!(hidden.status, 404);
    drop(server);
    verify(&sb);
}

#[test]
fn serve_refuses_a_half_configured_stripe_without_printing_it() {
    let sb = sandbox();
    let run = sb
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .env("CREDITGATE_STRIPE_SECRET_KEY", SECRET_KEY)
        .output()
        .expect("run");
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("CREDITGATE_STRIPE_WEBHOOK_SECRET"),
        "{stderr}"
    );
    assert!(!stderr.contains(SECRET_KEY), "{stderr}");
}

#[test]
fn a_refund_takes_the_credits_back_once() {
    let sb = sandbox();
    let stand_in = StripeStandIn::start(SECRET_KEY);
    let (account, key) = account_with_key(&sb);
    let server = serve_with_stripe(&sb, &stand_in);
    let opened = server.post("/v1/credits/topup", &key, &json!({"credits": 10}));
    let topup_id = opened.json()["data"]["topup_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let paid = paid_event("evt_paid_r", &topup_id, 10, "usd");
    let credited = deliver(
        &server,
        &signature(WEBHOOK_SECRET, now_secs(), &paid),
        &paid,
    );
    assert_eq!(credited.json()["outcome"], "credited");
    // 4 of the 10 cents refunded, then the event again, then the rest.
    let partial = refunded_event("evt_refund_1", &topup_id, 4);
    let header = signature(WEBHOOK_SECRET, now_secs(), &partial);
    assert_eq!(
        deliver(&server, &header, &partial).json()["outcome"],
        "reversed"
    );
    assert_eq!(
        deliver(&server, &header, &partial).json()["outcome"],
        "duplicate"
    );
    let balance = |server: &Server| {
        server.get("/v1/credits/balance", &key).json()["data"]["available"].clone()
    };
    assert_eq!(balance(&server), json!(6));
    let full = refunded_event("evt_refund_2", &topup_id, 10);
    let header = signature(WEBHOOK_SECRET, now_secs(), &full);
    assert_eq!(
        deliver(&server, &header, &full).json()["outcome"],
        "reversed"
    );
    assert_eq!(balance(&server), json!(0));
    let status = server
        .get(&format!("/v1/credits/topup/{topup_id}"), &key)
        .json();
    assert_eq!(status["data"]["reversed"], json!(10));
    let history = sb.ok(&["credits", "history", "--account", &account]);
    assert!(history.to_string().contains("reversal"), "{history}");
    drop(server);
    verify(&sb);
}

#[test]
fn packs_are_listed_and_sold_at_their_price() {
    let sb = sandbox();
    let stand_in = StripeStandIn::start(SECRET_KEY);
    let (_, key) = account_with_key(&sb);
    let server = serve_with_stripe(&sb, &stand_in);
    let prices = server.get("/v1/credits/topup", &key);
    assert_eq!(prices.status, 200, "{}", prices.json());
    assert_eq!(prices.json()["data"]["packs"][1]["name"], "pro");
    assert_eq!(prices.json()["data"]["packs"][1]["amount_minor"], 7900);
    assert_eq!(prices.json()["data"]["minor_per_credit"], json!(1));
    let opened = server.post("/v1/credits/topup", &key, &json!({"pack": "pro"}));
    assert_eq!(opened.status, 200, "{}", opened.json());
    assert_eq!(opened.json()["data"]["amount_minor"], 7900);
    assert_eq!(opened.json()["data"]["credits"], json!(1000));
    for body in [
        json!({"pack": "nope"}),
        json!({"pack": "pro", "credits": 5}),
        json!({"pack": 3}),
    ] {
        let refused = server.post("/v1/credits/topup", &key, &body);
        assert_eq!(refused.status, 400, "{body}: {}", refused.json());
    }
    drop(server);
    let bad = sb
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .env("CREDITGATE_STRIPE_SECRET_KEY", SECRET_KEY)
        .env("CREDITGATE_STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env(
            "CREDITGATE_STRIPE_SUCCESS_URL",
            "https://agents.example/paid",
        )
        .env("CREDITGATE_STRIPE_PACKS", "starter=lots:900")
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("--stripe-pack"), "{stderr}");
    verify(&sb);
}
