//! Top-ups through Stripe, against an in-process stand-in of its API: a
//! top-up is opened before the rail is called, credited once and only by
//! a verified event (bad signatures, stale timestamps, replays, reordered
//! and concurrent deliveries, a restart in between, amounts that do not
//! match), and `ledger verify` holds.

mod common;

use std::sync::{Arc, Mutex};

use creditgate::payments::stripe::{
    ChargeAnswer, CheckoutSession, CreditPack, Secret, StripeApi, StripeSettings,
};
use creditgate::{EventOutcome, Gate, TopUpStatus};
use hmac::{Hmac, Mac};
use rust_decimal::Decimal;
use serde_json::json;
use sha2::Sha256;

const WEBHOOK_SECRET: &str = "whsec_test_secret";

/// Stripe's API as a test double: records each form, answers a session or
/// a refusal.
#[derive(Debug, Default)]
struct FakeStripe {
    forms: Mutex<Vec<Vec<(String, String)>>>,
    refuse: bool,
}

impl StripeApi for FakeStripe {
    fn create_checkout_session(
        &self,
        form: &[(String, String)],
        idempotency_key: &str,
    ) -> creditgate::Result<CheckoutSession> {
        self.forms.lock().expect("forms").push(form.to_vec());
        if self.refuse {
            return Err(creditgate::Error::UpstreamUnavailable {
                upstream: "stripe",
                detail: "refused".into(),
            });
        }
        Ok(CheckoutSession {
            id: format!("cs_test_{idempotency_key}"),
            url: format!("https://checkout.stripe.test/{idempotency_key}"),
        })
    }

    fn create_payment_intent(
        &self,
        _form: &[(String, String)],
        _idempotency_key: &str,
    ) -> creditgate::Result<ChargeAnswer> {
        Ok(ChargeAnswer::Declined {
            message: "no saved cards in these tests".into(),
        })
    }
}

fn settings() -> StripeSettings {
    StripeSettings {
        api_base: "https://api.stripe.test".into(),
        secret_key: Secret::new("sk_test_key"),
        webhook_secret: Secret::new(WEBHOOK_SECRET),
        currency: "usd".into(),
        minor_per_credit: Decimal::ONE,
        success_url: "https://gate.test/done".into(),
        cancel_url: "https://gate.test/cancel".into(),
        packs: vec![CreditPack::parse("starter=100:900").expect("pack")],
    }
}

fn with_stripe(gate: Gate, api: Arc<FakeStripe>) -> Gate {
    gate.with_stripe(settings(), api)
}

/// `Stripe-Signature` of `body` signed at `t` (seconds) with `secret`.
fn signature(secret: &str, t: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn paid_event(event_id: &str, topup_id: &str, amount: i64) -> String {
    json!({
        "id": event_id,
        "type": "checkout.session.completed",
        "data": {"object": {
            "id": format!("cs_test_{topup_id}"),
            "client_reference_id": topup_id,
            "payment_status": "paid",
            "amount_total": amount,
            "currency": "usd",
            "payment_intent": format!("pi_{topup_id}"),
        }},
    })
    .to_string()
}

fn now_secs(gate: &Gate) -> i64 {
    gate.clock().now() / 1000
}

#[test]
fn without_a_rail_a_top_up_is_an_honest_refusal() {
    let fx = common::fresh();
    let account = common::account(&fx.gate, "agent", Decimal::ZERO);
    assert_eq!(
        common::code(fx.gate.open_topup(&account, Decimal::from(5))),
        "not_configured"
    );
    assert_eq!(
        common::code(fx.gate.apply_stripe_event("t=1,v1=00", b"{}")),
        "not_configured"
    );
}

#[test]
fn a_paid_checkout_credits_its_top_up_once_whatever_arrives_again() {
    let fx = common::fresh();
    let account = common::account(&fx.gate, "agent", Decimal::ZERO);
    let api = Arc::new(FakeStripe::default());
    let common::Fixture {
        dir,
        path,
        clock,
        gate,
        ..
    } = fx;
    let gate = with_stripe(gate, api.clone());
    let topup = gate.open_topup(&account, Decimal::from(25)).expect("open");
    assert_eq!(topup.status, TopUpStatus::Open);
    assert_eq!(topup.amount_minor, 25);
    assert_eq!(
        topup.checkout_url.as_deref(),
        Some(format!("https://checkout.stripe.test/{}", topup.id).as_str())
    );
    let form = api.forms.lock().expect("forms")[0].clone();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .expect(name)
    };
    assert_eq!(field("client_reference_id"), topup.id);
    assert_eq!(field("line_items[0][price_data][unit_amount]"), "25");
    assert_eq!(
        field("payment_intent_data[setup_future_usage]"),
        "off_session"
    );
    assert!(
        !form.iter().any(|(_, v)| v.contains("sk_test")),
        "no key in the form"
    );
    assert_eq!(gate.balance(&account).expect("balance").available, 0);

    let body = paid_event("evt_1", &topup.id, 25);
    let header = signature(WEBHOOK_SECRET, now_secs(&gate), &body);
    match gate
        .apply_stripe_event(&header, body.as_bytes())
        .expect("apply")
    {
        EventOutcome::Credited { topup_id, .. } => assert_eq!(topup_id, topup.id),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        gate.balance(&account).expect("balance").available,
        25_000_000
    );
    // The same event again, after a restart: nothing more.
    drop(gate);
    let gate = with_stripe(
        common::open_gate(&path, clock.clone(), creditgate::Synchronous::Full),
        api.clone(),
    );
    assert_eq!(
        gate.apply_stripe_event(&header, body.as_bytes())
            .expect("replay"),
        EventOutcome::Duplicate
    );
    // Another event about the same payment (async success after completed).
    let again = json!({
        "id": "evt_2",
        "type": "checkout.session.async_payment_succeeded",
        "data": {"object": {"client_reference_id": topup.id, "amount_total": 25, "currency": "usd"}},
    })
    .to_string();
    let header = signature(WEBHOOK_SECRET, now_secs(&gate), &again);
    assert_eq!(
        gate.apply_stripe_event(&header, again.as_bytes())
            .expect("second event"),
        EventOutcome::Recorded {
            reason: "already_credited".into()
        }
    );
    assert_eq!(
        gate.balance(&account).expect("balance").available,
        25_000_000
    );
    assert_eq!(
        gate.topup(&account, &topup.id).expect("topup").status,
        TopUpStatus::Credited
    );
    common::assert_verified(&gate);
    drop(dir);
}

#[test]
fn concurrent_deliveries_of_one_event_credit_once() {
    let fx = common::fresh();
    let account = common::account(&fx.gate, "agent", Decimal::ZERO);
    let gate = Arc::new(with_stripe(fx.gate, Arc::new(FakeStripe::default())));
    let topup = gate.open_topup(&account, Decimal::from(7)).expect("open");
    let body = paid_event("evt_race", &topup.id, 7);
    let header = signature(WEBHOOK_SECRET, now_secs(&gate), &body);
    let answers = common::race(&gate, 20, move |gate, _| {
        gate.apply_stripe_event(&header, body.as_bytes())
            .expect("apply")
    });
    let credited = answers
        .iter()
        .filter(|a| matches!(a, EventOutcome::Credited { .. }))
        .count();
    assert_eq!(credited, 1, "{answers:?}");
    assert!(answers
        .iter()
        .all(|a| matches!(a, EventOutcome::Credited { .. } | EventOutcome::Duplicate)));
    assert_eq!(
        gate.balance(&account).expect("balance").available,
        7_000_000
    );
    common::assert_verified(&gate);
}

#[test]
fn unverified_stale_mismatched_and_unknown_events_move_nothing() {
    let fx = common::fresh();
    let account = common::account(&fx.gate, "agent", Decimal::ZERO);
    let gate = with_stripe(fx.gate, Arc::new(FakeStripe::default()));
    let topup = gate.open_topup(&account, Decimal::from(10)).expect("open");
    let body = paid_event("evt_1", &topup.id, 10);
    let now = now_secs(&gate);
    for header in [
        signature("whsec_wrong", now, &body),
        signature(WEBHOOK_SECRET, now - 301, &body),
        signature(WEBHOOK_SECRET, now + 301, &body),
        "garbage".to_owned(),
    ] {
        assert_eq!(
            common::code(gate.apply_stripe_event(&header, body.as_bytes())),
            "webhook_unverified",
            "{header}"
        );
    }
    // The refused deliveries did not record the id: the genuine one works.
    let cheaper = paid_event("evt_cheap", &topup.id, 1);
    let header = signature(WEBHOOK_SECRET, now, &cheaper);
    assert_eq!(
        gate.apply_stripe_event(&header, cheaper.as_bytes())
            .expect("mismatch"),
        EventOutcome::Recorded {
            reason: "amount_mismatch".into()
        }
    );
    let unknown = paid_event("evt_unknown", "top_nope", 10);
    let header = signature(WEBHOOK_SECRET, now, &unknown);
    assert_eq!(
        gate.apply_stripe_event(&header, unknown.as_bytes())
            .expect("unknown"),
        EventOutcome::Recorded {
            reason: "unknown_topup".into()
        }
    );
    let refund =
        json!({"id": "evt_refund", "type": "charge.refunded", "data": {"object": {}}}).to_string();
    let header = signature(WEBHOOK_SECRET, now, &refund);
    assert_eq!(
        gate.apply_stripe_event(&header, refund.as_bytes())
            .expect("refund"),
        EventOutcome::Recorded {
            reason: "ignored".into()
        },
        "a refund naming no payment is recorded and moves nothing"
    );
    assert_eq!(gate.balance(&account).expect("balance").available, 0);
    let header = signature(WEBHOOK_SECRET, now, &body);
    assert!(matches!(
        gate.apply_stripe_event(&header, body.as_bytes())
            .expect("genuine"),
        EventOutcome::Credited { .. }
    ));
    common::assert_verified(&gate);
}

#[test]
fn a_refused_checkout_fails_its_top_up_and_bad_amounts_are_refused_first() {
    let fx = common::fresh();
    let account = common::account(&fx.gate, "agent", Decimal::ZERO);
    let api = Arc::new(FakeStripe {
        refuse: true,
        ..FakeStripe::default()
    });
    let gate = with_stripe(fx.gate, api.clone());
    assert_eq!(
        common::code(gate.open_topup(&account, Decimal::from(5))),
        "upstream_unavailable"
    );
    for credits in ["0", "-1", "0.5", "1000000000"] {
        assert_ne!(
            common::code(gate.open_topup(&account, credits.parse().expect("decimal"))),
            "upstream_unavailable",
            "{credits} reached Stripe"
        );
    }
    assert_eq!(
        common::code(gate.open_topup("acct_nope", Decimal::from(5))),
        "not_found"
    );
    assert_eq!(api.forms.lock().expect("forms").len(), 1);
    common::assert_verified(&gate);
}

/// A `charge.refunded` (total refunded so far) or `charge.dispute.created`
/// (amount disputed) of the payment of `topup_id`.
fn taken_back_event(event_id: &str, kind: &str, topup_id: &str, amount: i64) -> String {
    let object = if kind == "charge.refunded" {
        json!({"object": "charge", "payment_intent": format!("pi_{topup_id}"),
               "amount": 100, "amount_refunded": amount})
    } else {
        json!({"object": "dispute", "payment_intent": format!("pi_{topup_id}"),
               "amount": amount, "charge": "ch_1"})
    };
    json!({"id": event_id, "type": kind, "data": {"object": object}}).to_string()
}

/// Pays a 100-credit top-up of `account` for 100 cents.
fn paid_topup(gate: &Gate, account: &str) -> String {
    let topup = gate.open_topup(account, Decimal::from(100)).expect("open");
    let body = paid_event(&format!("evt_paid_{}", topup.id), &topup.id, 100);
    let header = signature(WEBHOOK_SECRET, now_secs(gate), &body);
    gate.apply_stripe_event(&header, body.as_bytes())
        .expect("paid");
    topup.id
}

fn deliver(gate: &Gate, body: &str) -> EventOutcome {
    let header = signature(WEBHOOK_SECRET, now_secs(gate), body);
    gate.apply_stripe_event(&header, body.as_bytes())
        .expect("delivered")
}

#[test]
fn refunds_reverse_a_top_up_once_and_never_inflate_totals_new_api_4211() {
    let fx = common::fresh();
    let account = common::account(&fx.gate, "agent", Decimal::ZERO);
    let gate = with_stripe(fx.gate, Arc::new(FakeStripe::default()));
    let topup = paid_topup(&gate, &account);
    let available = |gate: &Gate| gate.balance(&account).expect("balance").available;
    assert_eq!(available(&gate), 100_000_000);

    // A partial refund of 30 cents takes back 30 credits.
    let partial = taken_back_event("evt_r1", "charge.refunded", &topup, 30);
    assert_eq!(
        deliver(&gate, &partial),
        EventOutcome::Reversed {
            topup_id: topup.clone(),
            reversed_micros: 30_000_000,
            unrecovered_micros: 0
        }
    );
    assert_eq!(available(&gate), 70_000_000);
    // The same event again, and another event with the same total: nothing.
    assert_eq!(deliver(&gate, &partial), EventOutcome::Duplicate);
    let same_total = taken_back_event("evt_r1b", "charge.refund.updated", &topup, 30);
    assert!(matches!(
        deliver(&gate, &same_total),
        EventOutcome::Recorded { .. }
    ));
    let same_total = taken_back_event("evt_r2", "charge.refunded", &topup, 30);
    assert_eq!(
        deliver(&gate, &same_total),
        EventOutcome::Recorded {
            reason: "already_reversed".into()
        }
    );
    // The rest refunded: the total is 100, so 70 more, never 100 more.
    let full = taken_back_event("evt_r3", "charge.refunded", &topup, 100);
    assert!(matches!(
        deliver(&gate, &full),
        EventOutcome::Reversed {
            reversed_micros: 70_000_000,
            ..
        }
    ));
    assert_eq!(available(&gate), 0);
    let stored = gate.topup(&account, &topup).expect("topup");
    assert_eq!(stored.reversed_micros, 100_000_000);
    assert_eq!(stored.unrecovered_micros, 0);
    // A dispute after a full refund takes nothing more.
    let dispute = taken_back_event("evt_d1", "charge.dispute.created", &topup, 100);
    assert!(matches!(
        deliver(&gate, &dispute),
        EventOutcome::Recorded { .. }
    ));
    assert_eq!(available(&gate), 0);
    common::assert_verified(&gate);
    // What the top-up records as reversed is checked against the ledger.
    rusqlite::Connection::open(&fx.path)
        .expect("raw")
        .execute("UPDATE topups SET reversed_micros = 1", [])
        .expect("tamper");
    let report = gate.verify_ledger().expect("verify");
    assert!(
        report.violations.iter().any(|v| v.check == "topups"),
        "{:#?}",
        report.violations
    );
}

#[test]
fn a_dispute_takes_what_the_wallet_holds_and_records_the_rest_unless_flagged() {
    let fx = common::fresh();
    let spent = common::account(&fx.gate, "spent", Decimal::ZERO);
    let postpaid = fx
        .gate
        .create_account(&creditgate::NewAccount {
            allow_negative: true,
            ..creditgate::NewAccount::named("postpaid")
        })
        .expect("postpaid")
        .id;
    let gate = with_stripe(fx.gate, Arc::new(FakeStripe::default()));
    let available = |gate: &Gate, account: &str| gate.balance(account).expect("balance").available;
    for account in [&spent, &postpaid] {
        paid_topup(&gate, account);
        // 80 of the 100 credits are spent.
        let hold = format!("hold-{account}");
        gate.hold(&hold, account, Decimal::from(80), None, "job")
            .expect("hold");
        gate.capture(&format!("cap-{account}"), &hold, Decimal::from(80))
            .expect("capture");
    }
    let topup_of = |account: &str| gate.topups(Some(account), 1).expect("list")[0].id.clone();

    let dispute = taken_back_event(
        "evt_d_spent",
        "charge.dispute.created",
        &topup_of(&spent),
        100,
    );
    assert_eq!(
        deliver(&gate, &dispute),
        EventOutcome::Reversed {
            topup_id: topup_of(&spent),
            reversed_micros: 20_000_000,
            unrecovered_micros: 80_000_000
        }
    );
    assert_eq!(available(&gate, &spent), 0, "never below zero unflagged");
    let stored = gate.topups(Some(&spent), 1).expect("list")[0].clone();
    assert_eq!(stored.unrecovered_micros, 80_000_000, "not silently");

    let dispute = taken_back_event(
        "evt_d_post",
        "charge.dispute.created",
        &topup_of(&postpaid),
        100,
    );
    assert!(matches!(
        deliver(&gate, &dispute),
        EventOutcome::Reversed {
            reversed_micros: 100_000_000,
            unrecovered_micros: 0,
            ..
        }
    ));
    assert_eq!(
        available(&gate, &postpaid),
        -80_000_000,
        "the flag allows it"
    );
    // A refund naming a payment we never saw changes nothing.
    let stranger = taken_back_event("evt_x", "charge.refunded", "top_unknown", 10);
    assert_eq!(
        deliver(&gate, &stranger),
        EventOutcome::Recorded {
            reason: "unknown_payment".into()
        }
    );
    common::assert_verified(&gate);
}

#[test]
fn a_pack_is_sold_at_its_own_price_and_an_unknown_one_is_refused() {
    let fx = common::fresh();
    let account = common::account(&fx.gate, "agent", Decimal::ZERO);
    let api = Arc::new(FakeStripe::default());
    let gate = with_stripe(fx.gate, api.clone());
    let topup = gate.open_topup_pack(&account, "starter").expect("pack");
    assert_eq!(
        (topup.credits_micros, topup.amount_minor),
        (100_000_000, 900)
    );
    let form = api.forms.lock().expect("forms")[0].clone();
    assert!(form.iter().any(
        |(k, v)| k == "line_items[0][price_data][product_data][name]"
            && v.starts_with("starter: 100")
    ));
    match gate.open_topup_pack(&account, "mega") {
        Err(creditgate::Error::InvalidRequest { field, message }) => {
            assert_eq!(field, "pack");
            assert!(message.contains("starter"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let body = paid_event("evt_pack", &topup.id, 900);
    let header = signature(WEBHOOK_SECRET, now_secs(&gate), &body);
    assert!(matches!(
        gate.apply_stripe_event(&header, body.as_bytes())
            .expect("paid"),
        EventOutcome::Credited { .. }
    ));
    assert_eq!(
        gate.balance(&account).expect("balance").available,
        100_000_000
    );
    assert!(creditgate::payments::stripe::CreditPack::parse("Bad Name=1:1").is_err());
    assert!(creditgate::payments::stripe::CreditPack::parse("x=0:1").is_err());
    assert!(creditgate::payments::stripe::CreditPack::parse("x=1:0").is_err());
    common::assert_verified(&gate);
}

#[test]
fn the_negative_flag_is_explicit_and_never_dropped_while_below_zero() {
    let fx = common::fresh();
    let account = common::account(&fx.gate, "agent", Decimal::ZERO);
    assert_eq!(
        common::code(fx.gate.hold("h0", &account, Decimal::from(5), None, "job")),
        "insufficient_credits"
    );
    fx.gate
        .set_allow_negative(&account, true)
        .expect("postpaid");
    fx.gate
        .hold("h1", &account, Decimal::from(5), None, "job")
        .expect("overdraws");
    assert_eq!(
        fx.gate.balance(&account).expect("balance").available,
        -5_000_000
    );
    assert_eq!(
        common::code(fx.gate.set_allow_negative(&account, false)),
        "invalid_request",
        "not while below zero"
    );
    fx.gate.release("r1", "h1").expect("release");
    fx.gate
        .set_allow_negative(&account, false)
        .expect("prepaid again");
    assert_eq!(
        common::code(fx.gate.hold("h2", &account, Decimal::from(5), None, "job")),
        "insufficient_credits"
    );
    common::assert_verified(&fx.gate);
}
