//! Black-box tests of saved cards and auto top-up through the real binary
//! and KiwiWhale's endpoints, against the Stripe stand-in: no card is an
//! honest `payment_method_not_ready`; the setup Checkout's payment saves
//! the card; `agent_topup.php` charges it off-session; a generate that
//! lacks credits buys the owner's auto top-up (`auto_topup_applied`); a
//! declined card is `payment_declined` and moves nothing; `ledger verify`
//! after each.

use creditgate_standins::stripe::{
    paid_event, saved_card_event, signature, StripeStandIn, DECLINED_METHOD,
};
use creditgate_tests::{raw_http, HttpResponse, Sandbox, Server};
use serde_json::{json, Value};

const SECRET_KEY: &str = "sk_test_auto_topup";
const WEBHOOK_SECRET: &str = "whsec_auto_topup";

fn serve_with_stripe(sb: &Sandbox, stand_in: &StripeStandIn) -> Server {
    sb.serve_env(
        &[],
        &[
            ("CREDITGATE_STRIPE_SECRET_KEY", SECRET_KEY),
            ("CREDITGATE_STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("CREDITGATE_STRIPE_API_BASE", stand_in.server.base_url()),
            (
                "CREDITGATE_STRIPE_SUCCESS_URL",
                "https://agents.example/paid",
            ),
        ],
    )
}

fn deliver(server: &Server, body: &str) -> HttpResponse {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64;
    let request = format!(
        "POST /v1/payments/stripe/webhook HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nStripe-Signature: {}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        server.addr,
        signature(WEBHOOK_SECRET, now, body),
        body.len()
    );
    raw_http(&server.addr, request.as_bytes())
}

fn post(server: &Server, path: &str, key: &str, body: &Value) -> HttpResponse {
    server.post_with_headers(path, key, &[], &body.to_string())
}

fn account_with_key(sb: &Sandbox, name: &str) -> (String, String) {
    let account = sb.account(name);
    let key = sb.ok(&["keys", "create", "--account", &account, "--scope", "image"])["key"]
        .as_str()
        .expect("key")
        .to_owned();
    (account, key)
}

/// The setup Checkout of `credits`, paid, its card (`method`) saved.
fn set_up_card(server: &Server, key: &str, credits: i64, method: &str) {
    let setup = post(
        server,
        "/api/v1/agent_setup_payment.php",
        key,
        &json!({"credits": credits}),
    );
    assert_eq!(setup.status, 200, "{}", setup.json());
    let topup_id = setup.json()["topup_id"].as_str().expect("id").to_owned();
    assert!(setup.json()["checkout_url"].as_str().is_some());
    let paid = deliver(
        server,
        &paid_event(&format!("evt_paid_{topup_id}"), &topup_id, credits, "usd"),
    );
    assert_eq!(paid.json()["outcome"], "credited");
    let saved = deliver(
        server,
        &saved_card_event(
            &format!("evt_pi_{topup_id}"),
            &topup_id,
            credits,
            "cus_agent",
            method,
        ),
    );
    assert_eq!(saved.json()["outcome"], "method_saved");
}

fn credits_of(server: &Server, key: &str) -> Value {
    server.get("/api/v1/credits.php", key).json()["credits"].clone()
}

fn verify(sb: &Sandbox) {
    let run = sb.run(&["ledger", "verify"]);
    assert_eq!(run.code, 0, "ledger verify: {}{}", run.stdout, run.stderr);
}

#[test]
fn a_saved_card_tops_up_on_request_and_automatically() {
    let sb = Sandbox::new(env!("CARGO_BIN_EXE_creditgate"));
    let stand_in = StripeStandIn::start(SECRET_KEY);
    let (account, key) = account_with_key(&sb, "agent");
    let server = serve_with_stripe(&sb, &stand_in);

    let not_ready = post(
        &server,
        "/api/v1/agent_topup.php",
        &key,
        &json!({"credits": 10}),
    );
    assert_eq!(not_ready.status, 409, "{}", not_ready.json());
    assert_eq!(not_ready.json()["error"], "payment_method_not_ready");
    let confirm = post(
        &server,
        "/api/v1/agent_confirm_payment_method.php",
        &key,
        &json!({}),
    );
    assert_eq!(confirm.json()["ready"], false);

    set_up_card(&server, &key, 5, "pm_card_visa");
    let confirm = post(
        &server,
        "/api/v1/agent_confirm_payment_method.php",
        &key,
        &json!({}),
    );
    assert_eq!(confirm.json()["ready"], true);
    let bought = post(
        &server,
        "/api/v1/agent_topup.php",
        &key,
        &json!({"credits": 10}),
    );
    assert_eq!(bought.status, 200, "{}", bought.json());
    assert_eq!(bought.json()["credits_added"], json!(10));
    assert_eq!(credits_of(&server, &key), json!(15));
    let charges = stand_in
        .server
        .seen()
        .into_iter()
        .filter(|seen| seen.url == "/v1/payment_intents")
        .collect::<Vec<_>>();
    assert_eq!(charges.len(), 1);
    let form = String::from_utf8_lossy(&charges[0].body).into_owned();
    assert!(
        form.contains("off_session=true") && form.contains("customer=cus_agent"),
        "{form}"
    );

    // The owner turns auto top-up on; a generate that lacks credits buys it.
    sb.ok(&[
        "accounts",
        "auto-topup",
        &account,
        "--threshold",
        "1",
        "--amount",
        "30",
    ]);
    let shown = sb.ok(&["accounts", "auto-topup", &account]);
    assert_eq!(shown["auto_topup"]["amount"], json!(30));
    assert_eq!(shown["payment_method"]["method"], "pm_card_visa");
    let generate = |request_id: &str| {
        post(
            &server,
            "/api/v1/generate.php",
            &key,
            &json!({"model": "z-image", "prompt": "a dog", "request_id": request_id}),
        )
    };
    // z-image costs 20: 15 is short, so the first submit buys 30.
    let first = generate("g1");
    assert_eq!(first.status, 200, "{}", first.json());
    assert_eq!(first.json()["auto_topup_applied"], true);
    let second = generate("g2");
    assert_eq!(second.status, 200, "{}", second.json());
    assert_eq!(second.json()["auto_topup_applied"], false, "25 covered it");
    let third = generate("g3");
    assert_eq!(third.status, 402, "one charge per window: {}", third.json());
    let listed = sb.ok(&["topups", "list", "--account", &account]);
    let origins: Vec<&str> = listed["topups"]
        .as_array()
        .expect("topups")
        .iter()
        .map(|topup| topup["origin"].as_str().expect("origin"))
        .collect();
    assert_eq!(origins, ["auto", "saved", "payer"]);
    drop(server);
    verify(&sb);
}

#[test]
fn a_declined_card_is_said_and_moves_nothing() {
    let sb = Sandbox::new(env!("CARGO_BIN_EXE_creditgate"));
    let stand_in = StripeStandIn::start(SECRET_KEY);
    let (_, key) = account_with_key(&sb, "declined");
    let server = serve_with_stripe(&sb, &stand_in);
    set_up_card(&server, &key, 5, DECLINED_METHOD);
    let refused = post(
        &server,
        "/api/v1/agent_topup.php",
        &key,
        &json!({"credits": 10}),
    );
    assert_eq!(refused.status, 402, "{}", refused.json());
    assert_eq!(refused.json()["error"], "payment_declined");
    assert_eq!(credits_of(&server, &key), json!(5));
    let bad = post(
        &server,
        "/api/v1/agent_topup.php",
        &key,
        &json!({"credits": -1}),
    );
    assert_eq!(bad.status, 400);
    drop(server);
    verify(&sb);
}
