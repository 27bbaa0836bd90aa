//! Black-box tests of x402 top-ups through the real binary against the
//! facilitator stand-in: an honest refusal when x402 is not configured; a
//! generate refused for want of credits carries a `PAYMENT-REQUIRED` offer,
//! and the same request retried with its `PAYMENT-SIGNATURE` is paid,
//! credited and run, answering `PAYMENT-RESPONSE`; `/v1/credits/x402`
//! buys credits once per payment; a forged payment moves nothing; kill -9
//! while a settlement's answer is lost credits it once on restart; `ledger
//! verify` after each.

use std::time::{Duration, Instant};

use creditgate_standins::x402::{self as standin, FacilitatorStandIn, Mode};
use creditgate_tests::{HttpResponse, Sandbox, Server};
use serde_json::{json, Value};

const NETWORK: &str = "eip155:84532";

fn sandbox() -> Sandbox {
    Sandbox::new(env!("CARGO_BIN_EXE_creditgate"))
}

fn serve_with_x402(sb: &Sandbox, facilitator: &FacilitatorStandIn, timeout_secs: &str) -> Server {
    sb.serve_env(
        &["--x402-timeout-secs", timeout_secs],
        &[
            ("CREDITGATE_X402_FACILITATOR_URL", facilitator.url()),
            ("CREDITGATE_X402_PAY_TO", "0xOperatorWallet"),
            ("CREDITGATE_X402_NETWORK", NETWORK),
        ],
    )
}

fn key_of_empty_account(sb: &Sandbox) -> String {
    let account = sb.account("agent");
    sb.ok(&["keys", "create", "--account", &account, "--scope", "image"])["key"]
        .as_str()
        .expect("key")
        .to_owned()
}

fn generate(server: &Server, key: &str, payment: Option<&str>) -> HttpResponse {
    let body = json!({"request_id": "r-1", "model": "z-image", "prompt": "a cat"}).to_string();
    let headers: Vec<(&str, &str)> = payment
        .map(|p| ("PAYMENT-SIGNATURE", p))
        .into_iter()
        .collect();
    server.post_with_headers("/v1/generate", key, &headers, &body)
}

fn buy(server: &Server, key: &str, credits: i64, payment: Option<&str>) -> HttpResponse {
    let body = json!({"credits": credits}).to_string();
    let headers: Vec<(&str, &str)> = payment
        .map(|p| ("PAYMENT-SIGNATURE", p))
        .into_iter()
        .collect();
    server.post_with_headers("/v1/credits/x402", key, &headers, &body)
}

fn available(server: &Server, key: &str) -> Value {
    server.get("/v1/credits/balance", key).json()["data"]["available"].clone()
}

fn verify(sb: &Sandbox) {
    let run = sb.run(&["ledger", "verify"]);
    assert_eq!(run.code, 0, "ledger verify: {}{}", run.stdout, run.stderr);
}

#[test]
fn without_x402_buying_is_an_honest_refusal_and_no_offer_is_made() {
    let sb = sandbox();
    let key = key_of_empty_account(&sb);
    let server = sb.serve(&[]);
    let refused = buy(&server, &key, 5, None);
    assert_eq!(refused.status, 403, "{}", refused.json());
    assert_eq!(refused.json()["data"]["error"], "not_configured");
    let short = generate(&server, &key, None);
    assert_eq!(short.status, 402);
    assert_eq!(short.header("payment-required"), None);
    let paid = generate(&server, &key, Some("e30="));
    assert_eq!(paid.json()["data"]["error"], "not_configured");
    drop(server);
    verify(&sb);
}

#[test]
fn a_refused_generate_is_paid_by_its_retry_and_runs() {
    let sb = sandbox();
    let facilitator = FacilitatorStandIn::start(NETWORK);
    let key = key_of_empty_account(&sb);
    let server = serve_with_x402(&sb, &facilitator, "5");
    let short = generate(&server, &key, None);
    assert_eq!(short.status, 402, "{}", short.json());
    assert_eq!(short.json()["data"]["error"], "insufficient_credits");
    let offer = short
        .header("payment-required")
        .expect("an offer")
        .to_owned();
    let decoded = standin::decode(&offer);
    assert_eq!(decoded["x402Version"], 2);
    assert_eq!(decoded["accepts"][0]["payTo"], "0xOperatorWallet");
    assert_eq!(decoded["accepts"][0]["network"], NETWORK);
    assert!(decoded["resource"]["url"]
        .as_str()
        .expect("url")
        .ends_with("/v1/generate"));

    // A forged payment is refused with a new offer, and moves nothing.
    let mut forged = standin::decode(&standin::pay(&offer, "0xPayer", "0xn1"));
    forged["payload"]["signature"] = json!("0x00");
    let forged = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(forged.to_string())
    };
    let refused = generate(&server, &key, Some(&forged));
    assert_eq!(refused.status, 402);
    assert_eq!(refused.json()["data"]["error"], "payment_invalid");
    assert!(refused.header("payment-required").is_some());
    assert_eq!(available(&server, &key), json!(0));

    let payment = standin::pay(&offer, "0xPayer", "0xn1");
    let accepted = generate(&server, &key, Some(&payment));
    assert_eq!(accepted.status, 200, "{}", accepted.json());
    let response = standin::decode(accepted.header("payment-response").expect("receipt"));
    assert_eq!(response["success"], true);
    // The same request and payment again: the same job, no second credit.
    let again = generate(&server, &key, Some(&payment));
    assert_eq!(again.status, 200);
    assert_eq!(facilitator.settlements(), 1);
    drop(server);
    verify(&sb);
}

#[test]
fn credits_are_bought_once_per_payment() {
    let sb = sandbox();
    let facilitator = FacilitatorStandIn::start(NETWORK);
    let key = key_of_empty_account(&sb);
    let server = serve_with_x402(&sb, &facilitator, "5");
    let asked = buy(&server, &key, 5, None);
    assert_eq!(asked.status, 402, "{}", asked.json());
    assert_eq!(asked.json()["data"]["error"], "payment_required");
    let offer = asked.header("payment-required").expect("offer").to_owned();
    assert_eq!(standin::decode(&offer)["accepts"][0]["amount"], "50000");
    let payment = standin::pay(&offer, "0xPayer", "0xbuy");
    let bought = buy(&server, &key, 5, Some(&payment));
    assert_eq!(bought.status, 200, "{}", bought.json());
    let data = bought.json()["data"].clone();
    assert_eq!(data["newly_credited"], true);
    assert_eq!(data["topup"]["rail"], "x402");
    assert_eq!(data["topup"]["status"], "credited");
    assert!(data["topup"]["transaction"]
        .as_str()
        .is_some_and(|t| t.starts_with("0x")));
    assert_eq!(data["balance"]["available"], json!(5));
    assert!(bought.header("payment-response").is_some());
    let again = buy(&server, &key, 5, Some(&payment));
    assert_eq!(again.json()["data"]["newly_credited"], false);
    assert_eq!(available(&server, &key), json!(5));
    // The operator sees it.
    let listed = sb.ok(&["topups", "list"]);
    assert_eq!(listed["topups"][0]["status"], "credited");
    drop(server);
    verify(&sb);
}

#[test]
fn a_settlement_lost_to_kill_9_is_credited_once_after_restart() {
    let sb = sandbox();
    let facilitator = FacilitatorStandIn::start(NETWORK);
    let key = key_of_empty_account(&sb);
    let server = serve_with_x402(&sb, &facilitator, "1");
    let offer = buy(&server, &key, 7, None)
        .header("payment-required")
        .expect("offer")
        .to_owned();
    // The facilitator settles, then its answer comes too late.
    facilitator.set_mode(Mode::HangAfterSettling(Duration::from_secs(4)));
    let payment = standin::pay(&offer, "0xPayer", "0xkill");
    let lost = buy(&server, &key, 7, Some(&payment));
    assert_eq!(lost.status, 502, "{}", lost.json());
    assert_eq!(facilitator.settlements(), 1, "the money moved");
    assert_eq!(available(&server, &key), json!(0));
    server.kill();

    facilitator.set_mode(Mode::Honest);
    let server = serve_with_x402(&sb, &facilitator, "1");
    // The payer never retries: the server settles it again by itself.
    let deadline = Instant::now() + Duration::from_secs(20);
    while available(&server, &key) != json!(7) {
        assert!(Instant::now() < deadline, "never credited");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A late retry of the payer finds it credited; nothing more.
    assert_eq!(
        buy(&server, &key, 7, Some(&payment)).json()["data"]["newly_credited"],
        false
    );
    assert_eq!(available(&server, &key), json!(7));
    assert_eq!(facilitator.settlements(), 1);
    drop(server);
    verify(&sb);
}
