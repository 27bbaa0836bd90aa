//! Redemption codes through the gate: a code grants its amount once per
//! use, never beyond its uses under concurrency (one-api #2399, new-api
//! #4302), once per account when it says so, not after its expiry or
//! revocation; refusals move nothing; only the secret's hash is stored; and
//! `ledger verify` checks every redemption against its grant.

mod common;

use std::sync::Arc;

use creditgate::{Error, NewCode};
use rust_decimal::Decimal;

const CREDIT: i64 = 1_000_000;

fn code(amount_credits: i64, uses_max: u32, once_per_account: bool) -> NewCode {
    NewCode {
        amount_micros: amount_credits * CREDIT,
        uses_max,
        once_per_account,
        expires_at: None,
        memo: "launch".into(),
    }
}

fn available(gate: &creditgate::Gate, account: &str) -> i64 {
    gate.balance(account).expect("balance").available
}

#[test]
fn a_code_grants_its_amount_and_only_its_hash_is_stored() {
    let fx = common::fresh();
    let account = common::account(&fx.gate, "agent", Decimal::ZERO);
    let (created, secret) = fx.gate.create_code(&code(5, 3, true)).expect("create");
    assert!(secret.starts_with("cg_code_"));
    assert_eq!((created.uses, created.uses_max), (0, 3));
    let redeemed = fx.gate.redeem_code(&account, &secret).expect("redeem");
    assert_eq!(redeemed.redemption.amount_micros, 5 * CREDIT);
    assert_eq!(redeemed.redemption.use_number, 1);
    assert_eq!(available(&fx.gate, &account), 5 * CREDIT);
    assert_eq!(fx.gate.code(&created.id).expect("code").uses, 1);
    assert_eq!(fx.gate.redemptions(&account).expect("list").len(), 1);
    // The secret is nowhere in the database file, only its hash.
    let bytes = std::fs::read(&fx.path).expect("db");
    let wal = std::fs::read(fx.path.with_extension("db-wal")).unwrap_or_default();
    for file in [&bytes, &wal] {
        assert!(
            !file.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the code's secret is stored in plaintext"
        );
    }
    common::assert_verified(&fx.gate);
}

/// one-api PR #2399: a code redeemed by many at once was granted more
/// times than it had uses. Forty accounts race for a ten-use code.
#[test]
fn redeem_code_once_one_api_2399() {
    let fx = common::fresh();
    let gate = Arc::new(fx.gate);
    let accounts: Vec<String> = (0..40)
        .map(|i| common::account(&gate, &format!("agent {i}"), Decimal::ZERO))
        .collect();
    let (created, secret) = gate.create_code(&code(2, 10, true)).expect("create");
    let accounts = Arc::new(accounts);
    let racers = accounts.clone();
    let answers = common::race(&gate, 40, move |gate, i| {
        gate.redeem_code(&racers[i], &secret).map(|r| r.redemption)
    });
    let granted = answers.iter().filter(|a| a.is_ok()).count();
    assert_eq!(granted, 10, "{answers:?}");
    for refused in answers.iter().filter_map(|a| a.as_ref().err()) {
        assert_eq!(refused.code(), "code_used_up", "{refused}");
    }
    let mut uses: Vec<u32> = answers
        .iter()
        .filter_map(|a| a.as_ref().ok().map(|r| r.use_number))
        .collect();
    uses.sort_unstable();
    assert_eq!(uses, (1..=10).collect::<Vec<_>>());
    let credited: i64 = accounts.iter().map(|a| available(&gate, a)).sum();
    assert_eq!(credited, 10 * 2 * CREDIT);
    assert_eq!(gate.code(&created.id).expect("code").uses, 10);
    common::assert_verified(&gate);
}

/// new-api PR #4302: one account redeeming a code many times at once got
/// several grants. Forty concurrent redemptions by one account of a
/// once-per-account code with uses to spare grant once.
#[test]
fn redeem_code_once_per_account_new_api_4302() {
    let fx = common::fresh();
    let gate = Arc::new(fx.gate);
    let account = common::account(&gate, "agent", Decimal::ZERO);
    let (created, secret) = gate.create_code(&code(3, 100, true)).expect("create");
    let racer = account.clone();
    let answers = common::race(&gate, 40, move |gate, _| {
        gate.redeem_code(&racer, &secret).map(|r| r.redemption)
    });
    assert_eq!(answers.iter().filter(|a| a.is_ok()).count(), 1);
    for refused in answers.iter().filter_map(|a| a.as_ref().err()) {
        assert_eq!(refused.code(), "code_already_redeemed", "{refused}");
    }
    assert_eq!(available(&gate, &account), 3 * CREDIT);
    assert_eq!(gate.code(&created.id).expect("code").uses, 1);
    common::assert_verified(&gate);
}

#[test]
fn a_repeatable_code_may_be_redeemed_again_by_one_account_up_to_its_uses() {
    let fx = common::fresh();
    let account = common::account(&fx.gate, "agent", Decimal::ZERO);
    let (_, secret) = fx.gate.create_code(&code(1, 2, false)).expect("create");
    fx.gate.redeem_code(&account, &secret).expect("first");
    fx.gate.redeem_code(&account, &secret).expect("second");
    assert_eq!(
        common::code(fx.gate.redeem_code(&account, &secret)),
        "code_used_up"
    );
    assert_eq!(available(&fx.gate, &account), 2 * CREDIT);
    common::assert_verified(&fx.gate);
}

#[test]
fn expired_revoked_and_unknown_codes_are_refused_and_move_nothing() {
    let fx = common::fresh();
    let account = common::account(&fx.gate, "agent", Decimal::ONE);
    let in_an_hour = common::START + 3_600_000;
    let (expiring, expiring_secret) = fx
        .gate
        .create_code(&NewCode {
            expires_at: Some(in_an_hour),
            ..code(5, 10, true)
        })
        .expect("create");
    let (revoked, revoked_secret) = fx.gate.create_code(&code(5, 10, true)).expect("create");
    fx.gate.revoke_code(&revoked.id).expect("revoke");
    let before = available(&fx.gate, &account);
    fx.advance_secs(3_600);
    match fx.gate.redeem_code(&account, &expiring_secret) {
        Err(Error::CodeExpired { code_id }) => assert_eq!(code_id, expiring.id),
        other => panic!("{other:?}"),
    }
    for secret in [
        revoked_secret.as_str(),
        "cg_code_00",
        "not a code",
        "",
        &format!("cg_code_{}", "f".repeat(10_000)),
    ] {
        assert_eq!(
            common::code(fx.gate.redeem_code(&account, secret)),
            "code_invalid"
        );
    }
    // A revoked code's refusal does not reveal that it existed.
    let message = fx
        .gate
        .redeem_code(&account, &revoked_secret)
        .expect_err("refused")
        .to_string();
    assert!(!message.contains(&revoked.id), "{message}");
    assert_eq!(available(&fx.gate, &account), before);
    assert_eq!(fx.gate.code(&expiring.id).expect("code").uses, 0);
    assert_eq!(fx.gate.code(&revoked.id).expect("code").uses, 0);
    assert!(fx.gate.redemptions(&account).expect("list").is_empty());
    common::assert_verified(&fx.gate);
}

#[test]
fn a_code_is_checked_before_it_is_stored() {
    let fx = common::fresh();
    let refusals = [
        (code(0, 1, true), "invalid_amount"),
        (code(1, 0, true), "invalid_request"),
        (
            code(1, creditgate::codes::CODE_USES_MAX + 1, true),
            "invalid_request",
        ),
        (
            NewCode {
                expires_at: Some(common::START),
                ..code(1, 1, true)
            },
            "invalid_request",
        ),
        (
            NewCode {
                memo: "m".repeat(creditgate::codes::CODE_MEMO_CHARS_MAX + 1),
                ..code(1, 1, true)
            },
            "invalid_request",
        ),
    ];
    for (new, expected) in refusals {
        assert_eq!(common::code(fx.gate.create_code(&new)), expected, "{new:?}");
    }
    assert!(fx.gate.codes().expect("list").is_empty());
}

#[test]
fn ledger_verify_finds_a_use_counted_without_its_redemption() {
    let fx = common::fresh();
    let account = common::account(&fx.gate, "agent", Decimal::ZERO);
    let (created, secret) = fx.gate.create_code(&code(1, 5, true)).expect("create");
    fx.gate.redeem_code(&account, &secret).expect("redeem");
    common::assert_verified(&fx.gate);
    fx.raw()
        .execute(
            "UPDATE redemption_codes SET uses = 3 WHERE id = ?1",
            [&created.id],
        )
        .expect("tamper");
    let report = fx.gate.verify_ledger().expect("verify");
    assert!(
        report.violations.iter().any(|v| v.check == "code_uses"),
        "{:?}",
        report.violations
    );
}
