//! Saved cards and auto top-up through the gate, against a Stripe double:
//! a checkout's `payment_intent.succeeded` saves the card; a submit that
//! lacks credits buys the auto top-up once per window and goes on; a
//! capture below the threshold leaves a durable intent the sender charges;
//! a lost answer is asked again under the same idempotency key (one
//! charge), and Stripe's event credits it once whichever comes first; a
//! declined card and a missing card move nothing; `ledger verify` holds.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use creditgate::payments::stripe::{
    ChargeAnswer, CheckoutSession, CreditPack, Secret, StripeApi, StripeSettings,
};
use creditgate::{Error, EventOutcome, Gate, TopUpStatus};
use hmac::{Hmac, Mac};
use rust_decimal::Decimal;
use serde_json::json;
use sha2::Sha256;

const WEBHOOK_SECRET: &str = "whsec_auto";
const CREDIT: i64 = 1_000_000;

/// How the double answers a charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Charging {
    Succeed,
    Decline,
    /// Charges, then the answer is lost (a transport error).
    LoseTheAnswer,
}

/// Stripe as a double: one charge per idempotency key, counted.
#[derive(Debug)]
struct Stripe {
    charging: Mutex<Charging>,
    charges: Mutex<HashMap<String, String>>,
    calls: Mutex<usize>,
}

impl Stripe {
    fn new() -> Arc<Stripe> {
        Arc::new(Stripe {
            charging: Mutex::new(Charging::Succeed),
            charges: Mutex::default(),
            calls: Mutex::new(0),
        })
    }

    fn set(&self, charging: Charging) {
        *self.charging.lock().expect("mode") = charging;
    }

    /// Distinct charges made (money moved).
    fn charged(&self) -> usize {
        self.charges.lock().expect("charges").len()
    }
}

impl StripeApi for Stripe {
    fn create_checkout_session(
        &self,
        _form: &[(String, String)],
        idempotency_key: &str,
    ) -> creditgate::Result<CheckoutSession> {
        Ok(CheckoutSession {
            id: format!("cs_{idempotency_key}"),
            url: format!("https://checkout.test/{idempotency_key}"),
        })
    }

    fn create_payment_intent(
        &self,
        form: &[(String, String)],
        idempotency_key: &str,
    ) -> creditgate::Result<ChargeAnswer> {
        *self.calls.lock().expect("calls") += 1;
        let mode = *self.charging.lock().expect("mode");
        if mode == Charging::Decline {
            return Ok(ChargeAnswer::Declined {
                message: "Your card was declined.".into(),
            });
        }
        assert!(
            form.iter().any(|(k, v)| k == "off_session" && v == "true"),
            "charged off-session"
        );
        let mut charges = self.charges.lock().expect("charges");
        let count = charges.len();
        let id = charges
            .entry(idempotency_key.to_owned())
            .or_insert_with(|| format!("pi_auto_{count}"))
            .clone();
        if mode == Charging::LoseTheAnswer {
            return Err(Error::UpstreamUnavailable {
                upstream: "stripe",
                detail: "timed out".into(),
            });
        }
        Ok(ChargeAnswer::Succeeded { payment_intent: id })
    }
}

fn settings() -> StripeSettings {
    StripeSettings {
        api_base: "https://api.stripe.test".into(),
        secret_key: Secret::new("sk_test_auto"),
        webhook_secret: Secret::new(WEBHOOK_SECRET),
        currency: "usd".into(),
        minor_per_credit: Decimal::ONE,
        success_url: "https://gate.test/done".into(),
        cancel_url: "https://gate.test/cancel".into(),
        packs: vec![CreditPack::parse("starter=100:900").expect("pack")],
    }
}

fn deliver(gate: &Gate, body: &str) -> EventOutcome {
    let t = gate.clock().now() / 1000;
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).expect("key");
    mac.update(format!("{t}.{body}").as_bytes());
    let header = format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()));
    gate.apply_stripe_event(&header, body.as_bytes())
        .expect("delivered")
}

/// A paid card top-up of `credits` whose payment saved card `pm_1`.
fn pay_and_save_card(gate: &Gate, account: &str, credits: i64) {
    let topup = gate
        .open_topup(account, Decimal::from(credits))
        .expect("open");
    let session = json!({"id": format!("evt_cs_{}", topup.id), "type": "checkout.session.completed",
        "data": {"object": {"client_reference_id": topup.id, "payment_status": "paid",
                            "amount_total": credits, "currency": "usd",
                            "payment_intent": format!("pi_{}", topup.id)}}});
    assert!(matches!(
        deliver(gate, &session.to_string()),
        EventOutcome::Credited { .. }
    ));
    let intent = json!({"id": format!("evt_pi_{}", topup.id), "type": "payment_intent.succeeded",
        "data": {"object": {"id": format!("pi_{}", topup.id), "amount_received": credits,
                            "currency": "usd", "customer": "cus_1", "payment_method": "pm_1",
                            "setup_future_usage": "off_session",
                            "metadata": {"topup_id": topup.id}}}});
    assert_eq!(
        deliver(gate, &intent.to_string()),
        EventOutcome::Recorded {
            reason: "method_saved".into()
        },
        "the checkout credited it; its payment saved the card"
    );
}

struct Fx {
    fx: common::Fixture,
    gate: Arc<Gate>,
    stripe: Arc<Stripe>,
    account: String,
    principal: creditgate::Principal,
}

fn fx() -> Fx {
    let fx = common::open(common::Setup {
        catalog: Some(common::RYNJER),
        ..common::Setup::default()
    });
    let stripe = Stripe::new();
    let gate = Arc::new(
        common::open_gate(&fx.path, fx.clock.clone(), creditgate::Synchronous::Full)
            .with_stripe(settings(), stripe.clone()),
    );
    let account = common::account(&gate, "agent", Decimal::ZERO);
    let (_, secret) = gate
        .create_api_key(&account, "k", &common::strings(&["image"]), None)
        .expect("key");
    let principal = gate.authenticate(&secret).expect("principal");
    Fx {
        fx,
        gate,
        stripe,
        account,
        principal,
    }
}

fn submit(fx: &Fx, request_id: &str) -> creditgate::Result<creditgate::Submitted> {
    fx.gate.submit_for(
        &fx.principal,
        &json!({"request_id": request_id, "model": "z-image", "prompt": "a cat"}),
    )
}

fn available(fx: &Fx) -> i64 {
    fx.gate.balance(&fx.account).expect("balance").available
}

#[test]
fn a_short_submit_buys_the_auto_top_up_once_per_window_and_goes_on() {
    let fx = fx();
    // No card yet: an honest refusal, nothing charged.
    assert_eq!(
        common::code(fx.gate.charge_saved_method(&fx.account, Decimal::from(5))),
        "payment_method_not_ready"
    );
    pay_and_save_card(&fx.gate, &fx.account, 10);
    fx.gate
        .set_auto_topup(&fx.account, Decimal::from(5), Decimal::from(50), 3_600_000)
        .expect("auto top-up on");
    // A z-image job holds 20; 10 are there: the submit buys 50 and goes on.
    let submitted = submit(&fx, "r1").expect("accepted after buying");
    let outcome = submitted.auto_topup.expect("tried");
    assert!(outcome.applied, "{outcome:?}");
    assert_eq!(fx.stripe.charged(), 1);
    assert_eq!(available(&fx), 40 * CREDIT, "10 + 50 - 20 held");
    // Within the window a second shortfall buys nothing more.
    for i in 0..2 {
        submit(&fx, &format!("more{i}")).expect("covered");
    }
    assert_eq!(available(&fx), 0);
    match submit(&fx, "r5") {
        Err(Error::InsufficientCredits { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(fx.stripe.charged(), 1, "one charge per window");
    // The next window buys again.
    fx.fx.clock.advance(Duration::from_secs(3_601));
    assert!(
        submit(&fx, "r5")
            .expect("bought again")
            .auto_topup
            .expect("tried")
            .applied
    );
    assert_eq!(fx.stripe.charged(), 2);
    common::assert_verified(&fx.gate);
}

#[test]
fn concurrent_short_submits_charge_once() {
    let fx = fx();
    pay_and_save_card(&fx.gate, &fx.account, 10);
    fx.gate
        .set_auto_topup(&fx.account, Decimal::ZERO, Decimal::from(30), 3_600_000)
        .expect("on");
    let gate = fx.gate.clone();
    let principal = fx.principal.clone();
    let results = common::race(&gate, 8, move |gate, i| {
        gate.submit_for(
            &principal,
            &json!({"request_id": format!("c{i}"), "model": "z-image", "prompt": "a cat"}),
        )
    });
    let accepted = results.iter().filter(|r| r.is_ok()).count() as i64;
    assert_eq!(fx.stripe.charged(), 1, "{results:?}");
    // 10 + 30 covers at most two jobs of 20: the one that bought, and one
    // that came after the credit; the rest were refused, nothing more bought.
    assert!((1..=2).contains(&accepted), "{results:?}");
    assert_eq!(available(&fx), 40 * CREDIT - accepted * 20 * CREDIT);
    common::assert_verified(&fx.gate);
}

#[test]
fn a_capture_below_the_threshold_leaves_an_intent_the_sender_charges_once() {
    let fx = fx();
    pay_and_save_card(&fx.gate, &fx.account, 25);
    fx.gate
        .set_auto_topup(&fx.account, Decimal::from(10), Decimal::from(40), 3_600_000)
        .expect("on");
    submit(&fx, "job").expect("held");
    for _ in 0..30 {
        fx.fx.clock.advance(Duration::from_secs(2));
        fx.gate.run_due_work(16).expect("step");
        if fx
            .gate
            .job_for(&fx.account, "job")
            .expect("job")
            .status
            .is_terminal()
        {
            break;
        }
    }
    assert!(available(&fx) < 10 * CREDIT, "the capture left it below 10");
    let intents = fx.gate.topups(Some(&fx.account), 10).expect("list");
    assert_eq!(intents[0].origin, "auto");
    assert_eq!(
        intents[0].status,
        TopUpStatus::Open,
        "stored before any call"
    );
    assert_eq!(fx.stripe.charged(), 0);
    // The answer of the first charge is lost; asking again is the same
    // charge (one idempotency key), credited once.
    fx.stripe.set(Charging::LoseTheAnswer);
    fx.fx.clock.advance(Duration::from_secs(10));
    assert_eq!(fx.gate.run_unanswered_charges(5_000).expect("sender"), 0);
    fx.stripe.set(Charging::Succeed);
    assert_eq!(fx.gate.run_unanswered_charges(5_000).expect("sender"), 1);
    assert_eq!(fx.gate.run_unanswered_charges(5_000).expect("sender"), 0);
    assert_eq!(fx.stripe.charged(), 1);
    let before = available(&fx);
    // Stripe's own event for that payment credits nothing more.
    let intent_id = fx.gate.topups(Some(&fx.account), 1).expect("list")[0]
        .external_id
        .clone()
        .expect("payment id");
    let event = json!({"id": "evt_late", "type": "payment_intent.succeeded",
        "data": {"object": {"id": intent_id, "amount_received": 40, "currency": "usd",
                            "customer": "cus_1", "payment_method": "pm_1",
                            "metadata": {"topup_id": intents[0].id}}}});
    assert!(matches!(
        deliver(&fx.gate, &event.to_string()),
        EventOutcome::Recorded { .. }
    ));
    assert_eq!(available(&fx), before);
    common::assert_verified(&fx.gate);
}

#[test]
fn stripe_s_event_credits_a_charge_whose_answer_was_lost_once() {
    let fx = fx();
    pay_and_save_card(&fx.gate, &fx.account, 5);
    fx.stripe.set(Charging::LoseTheAnswer);
    assert_eq!(
        common::code(fx.gate.charge_saved_method(&fx.account, Decimal::from(20))),
        "upstream_unavailable"
    );
    let charge = fx.gate.topups(Some(&fx.account), 1).expect("list")[0].clone();
    assert_eq!(
        (charge.origin.as_str(), charge.status),
        ("saved", TopUpStatus::Open)
    );
    let event = json!({"id": "evt_pi_lost", "type": "payment_intent.succeeded",
        "data": {"object": {"id": "pi_auto_0", "amount_received": 20, "currency": "usd",
                            "customer": "cus_1", "payment_method": "pm_1",
                            "metadata": {"topup_id": charge.id}}}});
    assert!(matches!(
        deliver(&fx.gate, &event.to_string()),
        EventOutcome::Credited { .. }
    ));
    assert_eq!(
        deliver(&fx.gate, &event.to_string()),
        EventOutcome::Duplicate
    );
    assert_eq!(available(&fx), 25 * CREDIT);
    // The sender finds nothing left to ask.
    fx.stripe.set(Charging::Succeed);
    fx.fx.clock.advance(Duration::from_secs(60));
    assert_eq!(fx.gate.run_unanswered_charges(5_000).expect("sender"), 0);
    assert_eq!(available(&fx), 25 * CREDIT);
    common::assert_verified(&fx.gate);
}

#[test]
fn a_declined_card_moves_nothing_and_says_so() {
    let fx = fx();
    pay_and_save_card(&fx.gate, &fx.account, 10);
    fx.gate
        .set_auto_topup(&fx.account, Decimal::from(5), Decimal::from(50), 3_600_000)
        .expect("on");
    fx.stripe.set(Charging::Decline);
    match fx.gate.charge_saved_method(&fx.account, Decimal::from(5)) {
        Err(Error::PaymentDeclined { reason }) => assert!(reason.contains("declined")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        submit(&fx, "short"),
        Err(Error::InsufficientCredits { .. })
    ));
    assert_eq!(available(&fx), 10 * CREDIT);
    let listed = fx.gate.topups(Some(&fx.account), 10).expect("list");
    assert!(listed
        .iter()
        .filter(|t| t.origin != "payer")
        .all(|t| t.status == TopUpStatus::Failed));
    // Bad settings are refused, naming the field.
    assert_eq!(
        common::code(
            fx.gate
                .set_auto_topup(&fx.account, Decimal::ONE, Decimal::ONE, 1_000)
        ),
        "invalid_request"
    );
    assert_eq!(
        common::code(fx.gate.set_auto_topup(
            &fx.account,
            Decimal::ONE,
            Decimal::new(15, 1),
            3_600_000
        )),
        "invalid_request",
        "1.5 credits is not a whole number of cents"
    );
    common::assert_verified(&fx.gate);
}
