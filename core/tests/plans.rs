//! Plan tiers through the facade: the shipped plans, caps per product,
//! the cap race (exactly the cap accepted of many concurrent submits),
//! replays and refusals that count nothing, the UTC day rollover on a
//! manual clock, unknown plans without caps, plan edits, the default plan.

mod common;

use std::sync::Arc;

use common::{assert_verified, open, race, Fixture, Setup, RYNJER};
use creditgate::plans::DAY_MS;
use creditgate::{Error, NewAccount, PlanEdit, Quota};
use rust_decimal::Decimal;
use serde_json::{json, Value};

/// `google/nano-banana` (an image) costs 8 credits, `sora-2` (a video) 10.
const IMAGE: &str = "google/nano-banana";
const VIDEO: &str = "sora-2";

fn fixture() -> Fixture {
    open(Setup {
        catalog: Some(RYNJER),
        ..Setup::default()
    })
}

/// An account on `plan` (none: created without one) holding `credits`.
fn account_on(fx: &Fixture, plan: Option<&str>, credits: i64) -> String {
    let account = fx
        .gate
        .create_account(&NewAccount {
            name: "planned".into(),
            plan: plan.map(str::to_owned),
            allow_negative: false,
        })
        .expect("account");
    if credits > 0 {
        fx.gate
            .grant(
                &format!("seed-{}", account.id),
                &account.id,
                Decimal::from(credits),
                "seed",
            )
            .expect("grant");
    }
    account.id
}

fn body(request_id: &str, model: &str) -> Value {
    json!({"request_id": request_id, "model": model, "prompt": "a lighthouse"})
}

fn submit(
    fx: &Fixture,
    account: &str,
    request_id: &str,
    model: &str,
) -> creditgate::Result<creditgate::Submitted> {
    fx.gate.submit(account, &body(request_id, model))
}

/// The next UTC midnight after the fixture's clock.
fn midnight(fx: &Fixture) -> i64 {
    use creditgate::Clock;
    (fx.clock.now() / DAY_MS + 1) * DAY_MS
}

#[test]
fn the_shipped_plans_are_reference_002s_tiers() {
    let fx = fixture();
    let plans = fx.gate.plans().expect("plans");
    let caps: Vec<(String, Vec<(String, u64)>)> = plans
        .iter()
        .map(|p| (p.name.clone(), p.caps.clone().into_iter().collect()))
        .collect();
    let owned = |items: &[(&str, u64)]| -> Vec<(String, u64)> {
        items.iter().map(|(p, n)| ((*p).to_owned(), *n)).collect()
    };
    assert_eq!(
        caps,
        vec![
            ("enterprise".to_owned(), owned(&[])),
            (
                "free".to_owned(),
                owned(&[("chat", 50), ("image", 10), ("video", 2)])
            ),
            ("pro".to_owned(), owned(&[("image", 200), ("video", 50)])),
        ]
    );
    assert!(plans.iter().all(|p| !p.is_default), "no default shipped");
}

#[test]
fn each_product_has_its_own_cap_and_the_refusal_says_when_it_resets() {
    let fx = fixture();
    let acct = account_on(&fx, Some("free"), 1_000);
    for i in 0..10 {
        let submitted = submit(&fx, &acct, &format!("img{i}"), IMAGE).expect("within the cap");
        assert_eq!(
            submitted.quota,
            Some(Quota {
                limit: 10,
                remaining: 9 - i,
                reset_at: midnight(&fx)
            })
        );
    }
    match submit(&fx, &acct, "img10", IMAGE) {
        Err(Error::PlanLimitReached {
            plan,
            product,
            limit,
            used,
            reset_at,
        }) => {
            assert_eq!((plan.as_str(), product.as_str()), ("free", "image"));
            assert_eq!((limit, used, reset_at), (10, 10, midnight(&fx)));
        }
        other => panic!("{other:?}"),
    }
    // Videos count apart: two, then refused.
    submit(&fx, &acct, "vid0", VIDEO).expect("video 1");
    submit(&fx, &acct, "vid1", VIDEO).expect("video 2");
    assert_eq!(
        submit(&fx, &acct, "vid2", VIDEO)
            .expect_err("video 3")
            .code(),
        "plan_limit_reached"
    );
    // Nothing of the refusals was held or recorded.
    assert!(fx.gate.job_for(&acct, "img10").is_err());
    let balance = fx.gate.balance(&acct).expect("balance");
    assert_eq!(balance.pending, (10 * 8 + 2 * 10) * 1_000_000);
    // A pro account's chat is unlimited: no quota.
    let pro = account_on(&fx, Some("pro"), 10);
    assert_eq!(fx.gate.plan_quota(&pro, "chat").expect("quota"), None);
    assert_eq!(
        fx.gate.plan_quota(&pro, "image").expect("quota"),
        Some(Quota {
            limit: 200,
            remaining: 200,
            reset_at: midnight(&fx)
        })
    );
    assert_verified(&fx.gate);
}

#[test]
fn forty_concurrent_submits_against_a_cap_of_ten_accept_exactly_ten() {
    let fx = fixture();
    let acct = account_on(&fx, Some("free"), 1_000);
    let gate = Arc::new(fx.gate);
    let submitter = acct.clone();
    let results = race(&gate, 40, move |gate, i| {
        gate.submit(&submitter, &body(&format!("r{i}"), IMAGE))
    });
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(accepted, 10);
    for err in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            matches!(err, Error::PlanLimitReached { used: 10, .. }),
            "{err}"
        );
    }
    let balance = gate.balance(&acct).expect("balance");
    assert_eq!(
        (balance.pending, balance.available),
        (80_000_000, 920_000_000),
        "ten holds, none for the refused"
    );
    assert_eq!(
        gate.plan_quota(&acct, "image")
            .expect("quota")
            .map(|q| q.remaining),
        Some(0)
    );
    assert_verified(&gate);
}

#[test]
fn a_replay_and_a_refused_submit_count_nothing() {
    let fx = fixture();
    let acct = account_on(&fx, Some("free"), 9);
    let first = submit(&fx, &acct, "same", IMAGE).expect("first");
    let again = submit(&fx, &acct, "same", IMAGE).expect("replay");
    assert!(again.replayed);
    assert_eq!(first.quota.map(|q| q.remaining), Some(9));
    assert_eq!(
        again.quota.map(|q| q.remaining),
        Some(9),
        "not counted again"
    );
    // One credit left: the next image is refused for credits, and counts nothing.
    assert_eq!(
        submit(&fx, &acct, "poor", IMAGE)
            .expect_err("1 credit")
            .code(),
        "insufficient_credits"
    );
    assert_eq!(
        fx.gate
            .plan_quota(&acct, "image")
            .expect("quota")
            .map(|q| q.remaining),
        Some(9)
    );
    assert_verified(&fx.gate);
}

#[test]
fn a_canceled_job_keeps_its_slot_and_the_count_starts_again_at_utc_midnight() {
    let fx = fixture();
    let acct = account_on(&fx, Some("free"), 1_000);
    submit(&fx, &acct, "v0", VIDEO).expect("video 1");
    submit(&fx, &acct, "v1", VIDEO).expect("video 2");
    fx.gate.cancel(&acct, "v1").expect("cancel");
    assert_eq!(
        submit(&fx, &acct, "v2", VIDEO).expect_err("cap").code(),
        "plan_limit_reached",
        "a cap counts accepted jobs: a canceled one gives nothing back"
    );
    let reset = midnight(&fx);
    fx.clock.set(reset - 1);
    assert_eq!(
        submit(&fx, &acct, "v2", VIDEO)
            .expect_err("still today")
            .code(),
        "plan_limit_reached"
    );
    fx.clock.set(reset);
    let next = submit(&fx, &acct, "v2", VIDEO).expect("a new day");
    assert_eq!(
        next.quota,
        Some(Quota {
            limit: 2,
            remaining: 1,
            reset_at: reset + DAY_MS
        })
    );
    assert_verified(&fx.gate);
}

#[test]
fn an_account_without_a_known_plan_has_no_caps() {
    let fx = fixture();
    let unplanned = account_on(&fx, None, 1_000);
    assert_eq!(
        fx.gate.account(&unplanned).expect("account").plan,
        creditgate::plans::NO_PLAN
    );
    let unknown = account_on(&fx, Some("gold"), 1_000);
    for acct in [&unplanned, &unknown] {
        for i in 0..12 {
            let submitted = submit(&fx, acct, &format!("i{i}"), IMAGE).expect("no cap");
            assert_eq!(submitted.quota, None);
        }
    }
    let enterprise = account_on(&fx, Some("enterprise"), 1_000);
    for i in 0..12 {
        submit(&fx, &enterprise, &format!("i{i}"), IMAGE).expect("unlimited");
    }
    assert_verified(&fx.gate);
}

#[test]
fn a_plan_edit_takes_effect_on_the_next_submit() {
    let fx = fixture();
    let acct = account_on(&fx, Some("free"), 1_000);
    for i in 0..3 {
        submit(&fx, &acct, &format!("a{i}"), IMAGE).expect("within the cap");
    }
    let plan = fx
        .gate
        .edit_plan(&PlanEdit {
            name: "free".into(),
            caps: vec![("image".into(), Some(3))],
        })
        .expect("edit");
    assert_eq!(plan.caps.get("video"), Some(&2), "caps not named are kept");
    assert_eq!(
        submit(&fx, &acct, "a3", IMAGE)
            .expect_err("the new cap")
            .code(),
        "plan_limit_reached"
    );
    fx.gate
        .edit_plan(&PlanEdit {
            name: "free".into(),
            caps: vec![("image".into(), None)],
        })
        .expect("unlimited");
    submit(&fx, &acct, "a3", IMAGE).expect("no image cap any more");
    // A new plan, and an account moved onto it keeps today's count (the
    // uncapped job counted too).
    fx.gate
        .edit_plan(&PlanEdit {
            name: "tiny".into(),
            caps: vec![("image".into(), Some(4))],
        })
        .expect("new plan");
    fx.gate.set_account_plan(&acct, "tiny").expect("set plan");
    assert_eq!(
        submit(&fx, &acct, "a4", IMAGE)
            .expect_err("four counted today: the cap of 4 is used up")
            .code(),
        "plan_limit_reached",
    );
    assert_eq!(
        fx.gate
            .edit_plan(&PlanEdit {
                name: "none".into(),
                caps: vec![]
            })
            .map(|_| ())
            .expect_err("reserved")
            .code(),
        "invalid_request"
    );
    assert_verified(&fx.gate);
}

#[test]
fn the_default_plan_applies_to_accounts_created_without_one() {
    let fx = fixture();
    assert_eq!(
        fx.gate
            .set_default_plan(Some("gold"))
            .expect_err("unknown")
            .code(),
        "not_found"
    );
    fx.gate.set_default_plan(Some("free")).expect("default");
    let acct = account_on(&fx, None, 1_000);
    assert_eq!(fx.gate.account(&acct).expect("account").plan, "free");
    assert!(fx.gate.plan("free").expect("plan").is_default);
    fx.gate.set_default_plan(Some("pro")).expect("another");
    assert!(
        !fx.gate.plan("free").expect("plan").is_default,
        "one default"
    );
    fx.gate.set_default_plan(None).expect("none");
    let later = account_on(&fx, None, 0);
    assert_eq!(fx.gate.account(&later).expect("account").plan, "none");
    assert_eq!(
        fx.gate.account(&acct).expect("account").plan,
        "free",
        "kept"
    );
}
