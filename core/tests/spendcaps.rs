//! Spend caps per API key through the gate: concurrent submits never pass
//! a cap (LiteLLM #34732), a job that ends unpaid gives its share back, a
//! success keeps its charge counted, the day resets at UTC midnight while
//! the month goes on, and `ledger verify` recomputes every count.

mod common;

use std::sync::Arc;
use std::time::Duration;

use creditgate::{Gate, JobStatus, Principal, SpendCaps};
use rust_decimal::Decimal;
use serde_json::json;

const CREDIT: i64 = 1_000_000;
/// What one `z-image` job holds in the Rynjer catalog.
const Z_IMAGE: i64 = 20 * CREDIT;

struct Fx {
    fx: common::Fixture,
    account: String,
    key_id: String,
    principal: Principal,
}

fn fx(caps: SpendCaps) -> Fx {
    let fx = common::open(common::Setup {
        catalog: Some(common::RYNJER),
        ..common::Setup::default()
    });
    let account = common::account(&fx.gate, "agent", Decimal::from(10_000));
    let (key, secret) = fx
        .gate
        .create_api_key(&account, "runaway", &common::strings(&["image"]), None)
        .expect("key");
    fx.gate.set_key_spend_caps(&key.id, caps).expect("caps");
    let principal = fx.gate.authenticate(&secret).expect("principal");
    Fx {
        fx,
        account,
        key_id: key.id,
        principal,
    }
}

fn body(request_id: &str, prompt: &str) -> serde_json::Value {
    json!({"request_id": request_id, "model": "z-image", "prompt": prompt})
}

fn run_to_end(fx: &Fx, request_id: &str) -> JobStatus {
    for _ in 0..30 {
        fx.fx.clock.advance(Duration::from_secs(2));
        fx.fx.gate.run_due_work(16).expect("step");
        let job = fx.fx.gate.job_for(&fx.account, request_id).expect("job");
        if job.status.is_terminal() {
            return job.status;
        }
    }
    panic!("{request_id} never finished");
}

/// LiteLLM #34732: budgets checked outside the write were bypassed by
/// concurrent requests. Forty submits race against a cap of five jobs.
#[test]
fn spend_cap_holds_under_concurrency_litellm_34732() {
    let Fx {
        fx,
        key_id,
        principal,
        ..
    } = fx(SpendCaps {
        daily_micros: Some(5 * Z_IMAGE),
        monthly_micros: None,
    });
    let gate = Arc::new(fx.gate);
    let principal = Arc::new(principal);
    let answers = common::race(&gate, 40, move |gate: &Gate, i| {
        gate.submit_for(&principal, &body(&format!("r{i}"), "a cat"))
            .map(|submitted| submitted.job.id)
    });
    assert_eq!(answers.iter().filter(|a| a.is_ok()).count(), 5);
    for refused in answers.iter().filter_map(|a| a.as_ref().err()) {
        match refused {
            creditgate::Error::SpendCapReached {
                period,
                cap_micros,
                spent_micros,
                ..
            } => {
                assert_eq!((*period, *cap_micros), ("day", 5 * Z_IMAGE));
                assert_eq!(*spent_micros, 5 * Z_IMAGE);
            }
            other => panic!("{other}"),
        }
    }
    let spend = gate.key_spend(&key_id).expect("spend");
    assert_eq!(spend.spent_today_micros, 5 * Z_IMAGE);
    assert_eq!(spend.spent_this_month_micros, 5 * Z_IMAGE);
    common::assert_verified(&gate);
}

#[test]
fn an_unpaid_end_gives_its_share_back_and_a_success_keeps_its_charge() {
    let fx = fx(SpendCaps {
        daily_micros: Some(2 * Z_IMAGE),
        monthly_micros: None,
    });
    let gate = &fx.fx.gate;
    gate.submit_for(&fx.principal, &body("ok", "a cat"))
        .expect("first");
    gate.submit_for(&fx.principal, &body("fails", "[fail] a cat"))
        .expect("second");
    let refused = gate.submit_for(&fx.principal, &body("third", "a cat"));
    assert_eq!(common::code(refused), "spend_cap_reached");
    assert_eq!(run_to_end(&fx, "ok"), JobStatus::Succeeded);
    assert_eq!(run_to_end(&fx, "fails"), JobStatus::Failed);
    // The failure gave its 20 back; the success keeps its charge.
    assert_eq!(
        gate.key_spend(&fx.key_id)
            .expect("spend")
            .spent_today_micros,
        Z_IMAGE
    );
    gate.submit_for(&fx.principal, &body("third", "a cat"))
        .expect("fits again");
    // A cancel gives back at once.
    gate.cancel(&fx.account, "third").expect("cancel");
    assert_eq!(
        gate.key_spend(&fx.key_id)
            .expect("spend")
            .spent_today_micros,
        Z_IMAGE
    );
    // A replay counts nothing more.
    let replay = gate
        .submit_for(&fx.principal, &body("ok", "a cat"))
        .expect("replay");
    assert!(replay.replayed);
    assert_eq!(
        gate.key_spend(&fx.key_id)
            .expect("spend")
            .spent_today_micros,
        Z_IMAGE
    );
    common::assert_verified(gate);
}

#[test]
fn the_day_resets_at_utc_midnight_and_the_month_goes_on() {
    let fx = fx(SpendCaps {
        daily_micros: Some(Z_IMAGE),
        monthly_micros: Some(2 * Z_IMAGE),
    });
    let gate = &fx.fx.gate;
    gate.submit_for(&fx.principal, &body("d1", "a cat"))
        .expect("day one");
    let refused = gate
        .submit_for(&fx.principal, &body("d1b", "a cat"))
        .expect_err("daily cap");
    let creditgate::Error::SpendCapReached {
        period, reset_at, ..
    } = refused
    else {
        panic!("{refused}")
    };
    assert_eq!(period, "day");
    assert_eq!(reset_at % 86_400_000, 0, "a UTC midnight");
    fx.fx.clock.set(reset_at);
    gate.submit_for(&fx.principal, &body("d2", "a cat"))
        .expect("a new day");
    fx.fx.clock.set(reset_at + 86_400_000);
    let refused = gate
        .submit_for(&fx.principal, &body("d3", "a cat"))
        .expect_err("monthly cap");
    // The fixture's clock starts on 2026-09-21: both days are September's.
    let creditgate::Error::SpendCapReached {
        period, reset_at, ..
    } = refused
    else {
        panic!("{refused}")
    };
    assert_eq!(period, "month");
    assert_eq!(
        creditgate::clock::format_rfc3339(reset_at),
        "2026-10-01T00:00:00.000Z"
    );
    fx.fx.clock.set(reset_at);
    gate.submit_for(&fx.principal, &body("d3", "a cat"))
        .expect("a new month");
    common::assert_verified(gate);
}

#[test]
fn caps_are_per_key_and_checked() {
    let fx = fx(SpendCaps {
        daily_micros: Some(0),
        monthly_micros: None,
    });
    let gate = &fx.fx.gate;
    assert_eq!(
        common::code(gate.submit_for(&fx.principal, &body("r", "a cat"))),
        "spend_cap_reached"
    );
    // Another key of the same account is not capped.
    let (_, other) = gate
        .create_api_key(&fx.account, "other", &common::strings(&["image"]), None)
        .expect("key");
    let other = gate.authenticate(&other).expect("principal");
    gate.submit_for(&other, &body("r", "a cat"))
        .expect("uncapped key");
    // The embedder's own submit (no key) is not capped either.
    gate.submit(&fx.account, &body("s", "a cat"))
        .expect("no key");
    assert_eq!(
        common::code(gate.set_key_spend_caps("key_nope", SpendCaps::default())),
        "not_found"
    );
    assert_eq!(
        common::code(gate.set_key_spend_caps(
            &fx.key_id,
            SpendCaps {
                daily_micros: Some(-1),
                monthly_micros: None
            }
        )),
        "invalid_request"
    );
    // Removing the caps lets the key spend again.
    gate.set_key_spend_caps(&fx.key_id, SpendCaps::default())
        .expect("uncap");
    gate.submit_for(&fx.principal, &body("t", "a cat"))
        .expect("uncapped now");
    common::assert_verified(gate);
}

#[test]
fn ledger_verify_recomputes_a_keys_count() {
    let fx = fx(SpendCaps {
        daily_micros: Some(10 * Z_IMAGE),
        monthly_micros: None,
    });
    fx.fx
        .gate
        .submit_for(&fx.principal, &body("r", "a cat"))
        .expect("submit");
    common::assert_verified(&fx.fx.gate);
    fx.fx
        .raw()
        .execute("UPDATE key_spend SET spent_micros = 1", [])
        .expect("tamper");
    let report = fx.fx.gate.verify_ledger().expect("verify");
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.check == "key_spend_counts"),
        "{:?}",
        report.violations
    );
}
