//! Console sessions through the facade: only an operator key signs in;
//! a session ends at sign-out, when idle, at its absolute expiry and when
//! its key is revoked; failed sign-ins are throttled per address; its
//! CSRF token is its own; no secret is stored. And the overview's wallets
//! below their auto top-up threshold.

mod common;

use common::{account, code, fresh, strings};
use creditgate::identity::sessions::{
    csrf_matches, SESSION_ABSOLUTE_SECS, SESSION_IDLE_SECS, SIGN_IN_FAILURES_MAX,
};
use rust_decimal::Decimal;

fn key(fx: &common::Fixture, account: &str, scopes: &[&str]) -> (String, String) {
    let (info, secret) = fx
        .gate
        .create_api_key(account, "console", &strings(scopes), None)
        .expect("key");
    (info.id, secret)
}

#[test]
fn only_an_operator_key_signs_in_and_the_session_holds_no_secret() {
    let fx = fresh();
    let house = account(&fx.gate, "house", Decimal::ZERO);
    let (_, operator) = key(&fx, &house, &["operator"]);
    let (_, admin) = key(&fx, &house, &["admin"]);
    assert_eq!(
        code(fx.gate.console_sign_in(&admin, "10.0.0.1")),
        "forbidden"
    );
    assert_eq!(
        code(fx.gate.console_sign_in("cg_live_nope", "10.0.0.1")),
        "unauthorized"
    );
    let signed_in = fx
        .gate
        .console_sign_in(&operator, "10.0.0.1")
        .expect("operator signs in");
    let secret = signed_in.secret.expose().to_owned();
    let session = fx.gate.console_session(&secret).expect("live");
    assert_eq!(session, signed_in.session);
    assert!(csrf_matches(&session, &signed_in.session.csrf_token));
    assert!(!csrf_matches(&session, "0".repeat(64).as_str()));
    // Only the hash is stored: the secret's text is nowhere in the file.
    let raw = fx.raw();
    let stored: i64 = raw
        .query_row(
            "SELECT count(*) FROM console_sessions WHERE instr(CAST(secret_hash AS TEXT), ?1) > 0
                OR instr(id, ?1) > 0",
            [&secret],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(stored, 0);

    fx.gate.console_sign_out(&secret).expect("sign out");
    assert_eq!(code(fx.gate.console_session(&secret)), "unauthorized");
    fx.gate.console_sign_out(&secret).expect("twice is fine");
}

#[test]
fn a_session_ends_idle_at_its_absolute_expiry_and_with_its_key() {
    let fx = fresh();
    let house = account(&fx.gate, "house", Decimal::ZERO);
    let (key_id, operator) = key(&fx, &house, &["operator"]);
    let open = |fx: &common::Fixture| {
        fx.gate
            .console_sign_in(&operator, "10.0.0.1")
            .expect("sign in")
            .secret
            .expose()
            .to_owned()
    };

    let idle = open(&fx);
    fx.advance_secs(SESSION_IDLE_SECS as u64 - 1);
    fx.gate.console_session(&idle).expect("not idle yet");
    fx.advance_secs(SESSION_IDLE_SECS as u64 - 1);
    fx.gate
        .console_session(&idle)
        .expect("a request moved its idle clock");
    fx.advance_secs(SESSION_IDLE_SECS as u64);
    assert_eq!(code(fx.gate.console_session(&idle)), "unauthorized");

    let busy = open(&fx);
    let mut elapsed = 0;
    while elapsed + 600 < SESSION_ABSOLUTE_SECS {
        fx.advance_secs(600);
        elapsed += 600;
        fx.gate.console_session(&busy).expect("busy and young");
    }
    fx.advance_secs((SESSION_ABSOLUTE_SECS - elapsed) as u64);
    assert_eq!(
        code(fx.gate.console_session(&busy)),
        "unauthorized",
        "however busy, a session ends at its absolute expiry"
    );

    let revoked = open(&fx);
    fx.gate.revoke_api_key(&key_id).expect("revoke");
    assert_eq!(code(fx.gate.console_session(&revoked)), "unauthorized");
    assert_eq!(
        code(fx.gate.console_sign_in(&operator, "10.0.0.2")),
        "unauthorized"
    );
}

#[test]
fn failed_sign_ins_are_throttled_per_address() {
    let fx = fresh();
    let house = account(&fx.gate, "house", Decimal::ZERO);
    let (_, operator) = key(&fx, &house, &["operator"]);
    for _ in 0..SIGN_IN_FAILURES_MAX {
        assert_eq!(
            code(fx.gate.console_sign_in("cg_live_guess", "10.0.0.9")),
            "unauthorized"
        );
    }
    assert_eq!(
        code(fx.gate.console_sign_in(&operator, "10.0.0.9")),
        "rate_limited",
        "even the right key, from a throttled address"
    );
    fx.gate
        .console_sign_in(&operator, "10.0.0.10")
        .expect("another address");
    fx.advance_secs(10 * 60);
    fx.gate
        .console_sign_in(&operator, "10.0.0.9")
        .expect("after the window");
}

#[test]
fn the_overview_names_wallets_below_their_auto_top_up_threshold() {
    let fx = fresh();
    let low = account(&fx.gate, "low", Decimal::from(3));
    let high = account(&fx.gate, "high", Decimal::from(50));
    let off = account(&fx.gate, "off", Decimal::ZERO);
    for acct in [&low, &high] {
        fx.gate
            .set_auto_topup(acct, Decimal::from(10), Decimal::from(20), 60_000)
            .expect("auto top-up");
    }
    let below = fx.gate.wallets_below_threshold(50).expect("below");
    assert_eq!(
        below,
        vec![(low, 3_000_000, 10_000_000)],
        "not {high}, nor {off} (no top-up)"
    );
}
