//! Top-ups through x402 against the facilitator stand-in over HTTP: the
//! offer on a refusal for want of credits, a payment verified, settled and
//! credited once per nonce (replays, concurrent retries, a restart), bad
//! signatures and payers refused with nothing moved, a facilitator that
//! hangs after settling (the payment stays `settling` and is credited once
//! by the retry or by the sweep), amounts that do not match, and `ledger
//! verify` after each.
#![cfg(feature = "http")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use creditgate::payments::x402::{HttpFacilitator, X402Settings};
use creditgate::{Error, Gate, TopUpStatus};
use creditgate_standins::x402::{self as standin, FacilitatorStandIn, Mode};
use rust_decimal::Decimal;
use serde_json::json;

const NETWORK: &str = "eip155:84532";

fn settings(url: &str) -> X402Settings {
    X402Settings {
        facilitator_url: url.to_owned(),
        facilitator_token: None,
        network: NETWORK.into(),
        asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e".into(),
        asset_name: "usdc".into(),
        pay_to: "0xOperator".into(),
        // A credit is a cent of USDC (six decimals).
        atomic_per_credit: 10_000,
        min_topup_micros: 1_000_000,
        max_topup_micros: 500 * 1_000_000,
        max_timeout_seconds: 60,
        extra: json!({"name": "USDC", "version": "2"}),
    }
}

fn with_x402(gate: Gate, facilitator: &FacilitatorStandIn, timeout: Duration) -> Gate {
    let settings = settings(facilitator.url());
    let client = HttpFacilitator::new(&settings, timeout);
    gate.with_x402(settings, Arc::new(client))
}

/// The `PAYMENT-REQUIRED` offer for `credits` credits.
fn offer(gate: &Gate, credits: i64) -> String {
    let asked = gate.x402_offer(credits * 1_000_000).expect("offer");
    gate.payment_required_header(&asked, "http://gate.test/v1/credits/x402")
        .expect("a header")
}

#[test]
fn without_a_facilitator_x402_is_an_honest_refusal_and_no_header() {
    let fx = common::fresh();
    let account = common::account(&fx.gate, "agent", Decimal::ZERO);
    assert_eq!(
        common::code(fx.gate.pay_with_x402(&account, "e30=")),
        "not_configured"
    );
    let short = Error::InsufficientCredits {
        required_micros: 5,
        available_micros: 0,
        suggestion: None,
    };
    assert_eq!(fx.gate.payment_required_header(&short, "http://x"), None);
}

#[test]
fn a_refusal_for_want_of_credits_offers_the_shortfall() {
    let fx = common::fresh();
    let facilitator = FacilitatorStandIn::start(NETWORK);
    let gate = with_x402(fx.gate, &facilitator, Duration::from_secs(5));
    let short = Error::InsufficientCredits {
        required_micros: 3_500_000,
        available_micros: 1_000_000,
        suggestion: None,
    };
    let header = gate
        .payment_required_header(&short, "http://gate.test/v1/generate")
        .expect("header");
    let offer = standin::decode(&header);
    assert_eq!(offer["x402Version"], 2);
    assert_eq!(offer["error"], "insufficient_credits");
    assert_eq!(
        offer["accepts"][0]["amount"], "25000",
        "2.5 credits at a cent"
    );
    assert_eq!(offer["accepts"][0]["payTo"], "0xOperator");
    // A shortfall under the smallest top-up is offered as the smallest.
    let tiny = Error::InsufficientCredits {
        required_micros: 10,
        available_micros: 0,
        suggestion: None,
    };
    let offer = standin::decode(&gate.payment_required_header(&tiny, "r").expect("header"));
    assert_eq!(offer["accepts"][0]["amount"], "10000");
    // Out of bounds, no offer is made.
    assert_eq!(
        common::code(gate.x402_offer(501 * 1_000_000)),
        "invalid_request"
    );
}

#[test]
fn a_payment_is_credited_once_per_nonce_whatever_comes_again() {
    let fx = common::fresh();
    let account = common::account(&fx.gate, "agent", Decimal::ZERO);
    let facilitator = FacilitatorStandIn::start(NETWORK);
    let common::Fixture {
        dir,
        path,
        clock,
        gate,
        ..
    } = fx;
    let gate = with_x402(gate, &facilitator, Duration::from_secs(5));
    let payment = standin::pay(&offer(&gate, 12), "0xPayer", "0xnonce1");
    let receipt = gate.pay_with_x402(&account, &payment).expect("paid");
    assert!(receipt.newly_credited);
    assert_eq!(receipt.topup.status, TopUpStatus::Credited);
    assert_eq!(receipt.topup.rail, "x402");
    assert_eq!(receipt.topup.amount_minor, 120_000);
    let response = standin::decode(&receipt.payment_response);
    assert_eq!(response["success"], true);
    assert!(response["transaction"]
        .as_str()
        .expect("tx")
        .starts_with("0x"));
    assert_eq!(
        gate.balance(&account).expect("balance").available,
        12_000_000
    );

    // The same signature again (a client retrying its request): the same
    // receipt, nothing more; after a restart too.
    let again = gate.pay_with_x402(&account, &payment).expect("again");
    assert!(!again.newly_credited);
    assert_eq!(again.payment_response, receipt.payment_response);
    drop(gate);
    let gate = with_x402(
        common::open_gate(&path, clock.clone(), creditgate::Synchronous::Full),
        &facilitator,
        Duration::from_secs(5),
    );
    assert!(
        !gate
            .pay_with_x402(&account, &payment)
            .expect("after restart")
            .newly_credited
    );
    assert_eq!(
        gate.balance(&account).expect("balance").available,
        12_000_000
    );
    assert_eq!(facilitator.settlements(), 1);

    // Another account presenting the same payment gets nothing of it.
    let thief = common::account(&gate, "thief", Decimal::ZERO);
    assert_eq!(
        common::code(gate.pay_with_x402(&thief, &payment)),
        "payment_invalid"
    );
    assert_eq!(gate.balance(&thief).expect("balance").available, 0);
    common::assert_verified(&gate);
    drop(dir);
}

#[test]
fn concurrent_retries_of_one_payment_credit_once() {
    let fx = common::fresh();
    let account = common::account(&fx.gate, "agent", Decimal::ZERO);
    let facilitator = FacilitatorStandIn::start(NETWORK);
    let gate = Arc::new(with_x402(fx.gate, &facilitator, Duration::from_secs(5)));
    let payment = standin::pay(&offer(&gate, 3), "0xPayer", "0xrace");
    let (acct, pay) = (account.clone(), payment.clone());
    let results = common::race(&gate, 16, move |gate, _| gate.pay_with_x402(&acct, &pay));
    let credited = results
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|receipt| receipt.newly_credited))
        .count();
    assert_eq!(credited, 1, "{results:?}");
    assert_eq!(
        gate.balance(&account).expect("balance").available,
        3_000_000
    );
    // Whoever lost the race was told to retry or got the receipt; a retry
    // now answers the receipt.
    assert!(
        !gate
            .pay_with_x402(&account, &payment)
            .expect("retry")
            .newly_credited
    );
    common::assert_verified(&gate);
}

#[test]
fn bad_payments_are_refused_and_move_nothing() {
    let fx = common::fresh();
    let account = common::account(&fx.gate, "agent", Decimal::ZERO);
    let facilitator = FacilitatorStandIn::start(NETWORK);
    let gate = with_x402(fx.gate, &facilitator, Duration::from_secs(5));
    let good = standin::pay(&offer(&gate, 2), "0xPayer", "0xn-bad");
    // A forged signature: the facilitator's /verify refuses it.
    let mut forged = standin::decode(&good);
    forged["payload"]["signature"] = json!("0xdeadbeef");
    let forged = base64_json(&forged);
    match gate.pay_with_x402(&account, &forged) {
        Err(Error::PaymentInvalid { reason }) => {
            assert!(reason.contains("signature"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // A payer without funds.
    let broke = standin::pay(&offer(&gate, 2), "0xbroke", "0xn-broke");
    match gate.pay_with_x402(&account, &broke) {
        Err(Error::PaymentInvalid { reason }) => assert!(reason.contains("insufficient_funds")),
        other => panic!("{other:?}"),
    }
    // A payment that changed what it accepted (a smaller amount signed).
    let mut cheaper = standin::decode(&good);
    cheaper["accepted"]["amount"] = json!("10000");
    assert_eq!(
        common::code(gate.pay_with_x402(&account, &base64_json(&cheaper))),
        "payment_invalid"
    );
    // Paid to someone else.
    let mut elsewhere = standin::decode(&good);
    elsewhere["accepted"]["payTo"] = json!("0xAttacker");
    assert_eq!(
        common::code(gate.pay_with_x402(&account, &base64_json(&elsewhere))),
        "payment_invalid"
    );
    // Not base64 at all.
    assert_eq!(
        common::code(gate.pay_with_x402(&account, "%%%")),
        "payment_invalid"
    );
    assert_eq!(gate.balance(&account).expect("balance").available, 0);
    assert_eq!(facilitator.settlements(), 0);
    // The refused payment with the forged signature stays refused.
    assert_eq!(
        common::code(gate.pay_with_x402(&account, &forged)),
        "payment_invalid"
    );
    // The good one still pays.
    gate.pay_with_x402(&account, &good).expect("good");
    assert_eq!(
        gate.balance(&account).expect("balance").available,
        2_000_000
    );
    common::assert_verified(&gate);
}

#[test]
fn a_facilitator_that_times_out_after_settling_credits_once_by_retry_or_sweep() {
    let fx = common::fresh();
    let account = common::account(&fx.gate, "agent", Decimal::ZERO);
    let facilitator = FacilitatorStandIn::start(NETWORK);
    let common::Fixture {
        dir,
        path,
        clock,
        gate,
        ..
    } = fx;
    let gate = with_x402(gate, &facilitator, Duration::from_millis(300));
    facilitator.set_mode(Mode::HangAfterSettling(Duration::from_millis(1_500)));
    let payment = standin::pay(&offer(&gate, 5), "0xPayer", "0xslow");
    match gate.pay_with_x402(&account, &payment) {
        Err(Error::UpstreamUnavailable { detail, .. }) => {
            assert!(detail.contains("same PAYMENT-SIGNATURE"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(facilitator.settlements(), 1, "the money moved");
    assert_eq!(gate.balance(&account).expect("balance").available, 0);
    let listed = gate.topups(Some(&account), 10).expect("list");
    assert_eq!(listed[0].status, TopUpStatus::Settling);

    // The server restarts (as after kill -9); the payer never comes back:
    // the sweep settles it again and credits it, once.
    facilitator.set_mode(Mode::Honest);
    drop(gate);
    let gate = with_x402(
        common::open_gate(&path, clock.clone(), creditgate::Synchronous::Full),
        &facilitator,
        Duration::from_secs(5),
    );
    assert_eq!(gate.settle_stuck_x402(60_000).expect("too young"), 0);
    clock.advance(Duration::from_secs(61));
    assert_eq!(gate.settle_stuck_x402(60_000).expect("sweep"), 1);
    assert_eq!(gate.settle_stuck_x402(60_000).expect("sweep again"), 0);
    assert_eq!(
        gate.balance(&account).expect("balance").available,
        5_000_000
    );
    // The payer's late retry finds it credited.
    assert!(
        !gate
            .pay_with_x402(&account, &payment)
            .expect("retry")
            .newly_credited
    );
    assert_eq!(
        gate.balance(&account).expect("balance").available,
        5_000_000
    );
    assert_eq!(facilitator.settlements(), 1);
    common::assert_verified(&gate);
    drop(dir);
}

#[test]
fn a_retry_after_a_lost_answer_credits_once() {
    let fx = common::fresh();
    let account = common::account(&fx.gate, "agent", Decimal::ZERO);
    let facilitator = FacilitatorStandIn::start(NETWORK);
    let gate = with_x402(fx.gate, &facilitator, Duration::from_millis(300));
    facilitator.set_mode(Mode::HangAfterSettling(Duration::from_millis(1_000)));
    let payment = standin::pay(&offer(&gate, 4), "0xPayer", "0xlost");
    assert_eq!(
        common::code(gate.pay_with_x402(&account, &payment)),
        "upstream_unavailable"
    );
    facilitator.set_mode(Mode::Honest);
    let receipt = gate.pay_with_x402(&account, &payment).expect("retry");
    assert!(receipt.newly_credited);
    assert_eq!(
        gate.balance(&account).expect("balance").available,
        4_000_000
    );
    common::assert_verified(&gate);
}

#[test]
fn a_facilitator_that_is_down_or_settles_another_amount_credits_nothing() {
    let fx = common::fresh();
    let account = common::account(&fx.gate, "agent", Decimal::ZERO);
    let facilitator = FacilitatorStandIn::start(NETWORK);
    let gate = with_x402(fx.gate, &facilitator, Duration::from_secs(5));
    facilitator.set_mode(Mode::Down);
    let payment = standin::pay(&offer(&gate, 2), "0xPayer", "0xdown");
    assert_eq!(
        common::code(gate.pay_with_x402(&account, &payment)),
        "upstream_unavailable"
    );
    assert!(
        gate.topups(Some(&account), 10).expect("list").is_empty(),
        "nothing is stored of an unverified payment"
    );
    // Up again: the same payment goes through.
    facilitator.set_mode(Mode::Honest);
    gate.pay_with_x402(&account, &payment).expect("paid");
    assert_eq!(
        gate.balance(&account).expect("balance").available,
        2_000_000
    );

    facilitator.set_mode(Mode::ReportAmount(1));
    let odd = standin::pay(&offer(&gate, 2), "0xPayer", "0xodd");
    match gate.pay_with_x402(&account, &odd) {
        Err(Error::PaymentInvalid { reason }) => assert!(reason.contains("another amount")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        gate.balance(&account).expect("balance").available,
        2_000_000
    );
    let listed = gate.topups(Some(&account), 10).expect("list");
    assert_eq!(listed[0].status, TopUpStatus::Failed);
    assert!(listed[0]
        .settlement
        .as_deref()
        .is_some_and(|s| s.contains("transaction")));
    common::assert_verified(&gate);
}

fn base64_json(value: &serde_json::Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(value.to_string())
}
