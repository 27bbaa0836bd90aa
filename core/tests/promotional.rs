//! Promotional credits that expire, through the gate: spent before paid
//! credits and the soonest-expiring first, across holds and captures; a
//! release (or what a capture does not spend) returns to the buckets it
//! came from; expiry is a reversal transfer at that time, never an edit,
//! and never takes paid credits; `ledger verify` checks the buckets and
//! catches a tampered one.

mod common;

use std::time::Duration;

use creditgate::{Clock, Error, TransferKind};
use rust_decimal::Decimal;

const CREDIT: i64 = 1_000_000;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// An account with 10 paid credits, 5 promotional expiring in two days
/// (`late`) and 5 expiring in one (`soon`).
fn funded(fx: &common::Fixture) -> String {
    let account = common::account(&fx.gate, "agent", Decimal::from(10));
    let now = fx.clock.now();
    fx.gate
        .grant_promotional(
            "late",
            &account,
            Decimal::from(5),
            now + 2 * DAY_MS,
            "welcome",
        )
        .expect("late");
    fx.gate
        .grant_promotional("soon", &account, Decimal::from(5), now + DAY_MS, "promo")
        .expect("soon");
    account
}

/// (grant id, available, held) of each live bucket, soonest first.
fn buckets(fx: &common::Fixture, account: &str) -> Vec<(String, i64, i64)> {
    fx.gate
        .promotional_credits(account)
        .expect("buckets")
        .into_iter()
        .map(|b| (b.grant_id, b.available / CREDIT, b.held / CREDIT))
        .collect()
}

fn available(fx: &common::Fixture, account: &str) -> i64 {
    fx.gate.balance(account).expect("balance").available / CREDIT
}

#[test]
fn promotional_credits_are_spent_first_soonest_expiring_first() {
    let fx = common::fresh();
    let account = funded(&fx);
    assert_eq!(available(&fx, &account), 20);
    fx.gate
        .hold("h1", &account, Decimal::from(7), None, "job")
        .expect("hold");
    assert_eq!(
        buckets(&fx, &account),
        [("soon".into(), 0, 5), ("late".into(), 3, 2)]
    );
    // A capture of 6 spends soon's 5 and 1 of late; late's other drawn
    // credit returns to it.
    fx.gate
        .capture("c1", "h1", Decimal::from(6))
        .expect("capture");
    assert_eq!(buckets(&fx, &account), [("late".into(), 4, 0)]);
    assert_eq!(available(&fx, &account), 14, "10 paid + 4 promotional");
    common::assert_verified(&fx.gate);
}

#[test]
fn a_release_returns_credits_to_the_buckets_they_came_from() {
    let fx = common::fresh();
    let account = funded(&fx);
    fx.gate
        .hold("h1", &account, Decimal::from(12), None, "job")
        .expect("hold");
    assert_eq!(
        buckets(&fx, &account),
        [("soon".into(), 0, 5), ("late".into(), 0, 5)],
        "10 promotional drawn, 2 paid"
    );
    fx.gate.release("r1", "h1").expect("release");
    assert_eq!(
        buckets(&fx, &account),
        [("soon".into(), 5, 0), ("late".into(), 5, 0)]
    );
    assert_eq!(available(&fx, &account), 20);
    common::assert_verified(&fx.gate);
}

#[test]
fn expiry_is_a_transfer_at_that_time_and_never_takes_paid_credits() {
    let fx = common::fresh();
    let account = funded(&fx);
    fx.clock.advance(Duration::from_millis(DAY_MS as u64));
    assert_eq!(fx.gate.expire_promotional_credits().expect("sweep"), 1);
    assert_eq!(fx.gate.expire_promotional_credits().expect("again"), 0);
    assert_eq!(available(&fx, &account), 15);
    let history = fx.gate.history(&account, None, 10).expect("history");
    let expiry = history
        .transfers
        .iter()
        .find(|t| t.kind == TransferKind::Reversal)
        .expect("an expiry transfer");
    assert_eq!(expiry.refund_of.as_deref(), Some("soon"));
    assert_eq!(expiry.amount, 5 * CREDIT);
    // Past late's expiry, a hold takes it back first (before any sweep)
    // and cannot spend it: only the 10 paid credits are there.
    fx.clock.advance(Duration::from_millis(DAY_MS as u64));
    match fx
        .gate
        .hold("h-big", &account, Decimal::from(12), None, "job")
    {
        Err(Error::InsufficientCredits {
            available_micros, ..
        }) => assert_eq!(available_micros, 10 * CREDIT),
        other => panic!("{other:?}"),
    }
    fx.gate
        .hold("h-paid", &account, Decimal::from(10), None, "job")
        .expect("the paid credits");
    assert!(buckets(&fx, &account).is_empty());
    assert_eq!(available(&fx, &account), 0);
    common::assert_verified(&fx.gate);
}

#[test]
fn credits_held_over_their_expiry_expire_when_released() {
    let fx = common::fresh();
    let account = funded(&fx);
    fx.gate
        .hold("h1", &account, Decimal::from(3), None, "job")
        .expect("hold");
    fx.clock.advance(Duration::from_millis(DAY_MS as u64 + 1));
    assert_eq!(fx.gate.expire_promotional_credits().expect("sweep"), 1);
    assert_eq!(
        buckets(&fx, &account)[0],
        ("soon".into(), 0, 3),
        "held, not expired"
    );
    fx.gate.release("r1", "h1").expect("release");
    assert_eq!(fx.gate.expire_promotional_credits().expect("sweep"), 1);
    assert_eq!(available(&fx, &account), 15, "10 paid + late's 5");
    common::assert_verified(&fx.gate);
}

#[test]
fn grants_are_idempotent_and_bad_expiries_refused() {
    let fx = common::fresh();
    let account = funded(&fx);
    let now = fx.clock.now();
    let again = fx
        .gate
        .grant_promotional(
            "late",
            &account,
            Decimal::from(5),
            now + 2 * DAY_MS,
            "welcome",
        )
        .expect("replay");
    assert!(again.replayed);
    assert_eq!(
        common::code(fx.gate.grant_promotional(
            "late",
            &account,
            Decimal::from(5),
            now + 3 * DAY_MS,
            "welcome"
        )),
        "exists_with_different_fields"
    );
    assert_eq!(
        common::code(
            fx.gate
                .grant_promotional("past", &account, Decimal::ONE, now, "x")
        ),
        "invalid_request"
    );
    assert_eq!(available(&fx, &account), 20);
    common::assert_verified(&fx.gate);
}

#[test]
fn verify_catches_a_tampered_bucket() {
    let fx = common::fresh();
    let account = funded(&fx);
    fx.gate
        .hold("h1", &account, Decimal::from(3), None, "job")
        .expect("hold");
    fx.raw()
        .execute(
            "UPDATE grant_buckets SET held = held - 1000000, available = available + 1000000
              WHERE grant_id = 'soon'",
            [],
        )
        .expect("tamper");
    let report = fx.gate.verify_ledger().expect("verify");
    assert!(
        report.violations.iter().any(|v| v.check == "promotional"),
        "{:#?}",
        report.violations
    );
}

#[test]
fn a_promotional_grant_replayed_after_its_expiry_answers_the_first() {
    // Found by the ledger's property test: the replay was refused as an
    // expiry in the past, though it moves nothing.
    let fx = common::fresh();
    let account = funded(&fx);
    let expires_at = fx.clock.now() + DAY_MS;
    fx.clock.advance(Duration::from_millis(2 * DAY_MS as u64));
    let again = fx
        .gate
        .grant_promotional("soon", &account, Decimal::from(5), expires_at, "promo")
        .expect("a replay is not an error");
    assert!(again.replayed);
    common::assert_verified(&fx.gate);
}
