//! Top-ups through Stripe, against an in-process stand-in of its API: a
//! top-up is opened before the rail is called, credited once and only by
//! a verified event (bad signatures, stale timestamps, replays, reordered
//! and concurrent deliveries, a restart in between, amounts that do not
//! match), and `ledger verify` holds.

mod common;

use std::sync::{Arc, Mutex};

use creditgate::payments::stripe::{CheckoutSession, Secret, StripeApi, StripeSettings};
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
            reason: "reversal_for_the_operator".into()
        }
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
