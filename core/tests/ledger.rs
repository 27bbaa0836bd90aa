//! Ledger behaviour through the facade: every transfer kind, every refusal,
//! replays, concurrency, and tampering caught by `verify`. Each test opens a
//! fresh database and ends by checking `verify_ledger`.

mod common;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use common::{assert_verified, fresh, race, Fixture, Setup, START};
use creditgate::{Error, Gate, NewAccount, Synchronous, TransferKind};
use rust_decimal::Decimal;

fn credits(text: &str) -> Decimal {
    Decimal::from_str(text).expect("decimal literal")
}

/// A new account funded with `funded` credits.
fn account(gate: &Gate, funded: &str) -> String {
    common::account(gate, "test", credits(funded))
}

/// Every row of every table, so a refused operation can be shown to change
/// nothing at all.
fn snapshot(fx: &Fixture) -> String {
    let conn = fx.raw();
    let mut out = String::new();
    for table in [
        "accounts",
        "ledger_accounts",
        "transfers",
        "open_holds",
        "sqlite_sequence",
    ] {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY 1"))
            .expect("prepare dump");
        let columns = stmt.column_count();
        let mut rows = stmt.query([]).expect("dump");
        while let Some(row) = rows.next().expect("row") {
            out.push_str(table);
            for i in 0..columns {
                let value: rusqlite::types::Value = row.get(i).expect("value");
                out.push_str(&format!(" {value:?}"));
            }
            out.push('\n');
        }
    }
    out
}

/// Runs `op`, expects it to be refused with `code`, and checks that the
/// database is exactly as it was before.
fn check_refused<T: std::fmt::Debug>(
    fx: &Fixture,
    code: &str,
    op: impl FnOnce(&Gate) -> creditgate::Result<T>,
) -> Error {
    let before = snapshot(fx);
    let err = op(&fx.gate).expect_err("operation must be refused");
    assert_eq!(err.code(), code, "unexpected error {err}");
    assert_eq!(
        before,
        snapshot(fx),
        "a refused operation changed the database"
    );
    err
}

#[test]
fn grant_hold_capture_release_move_exactly_what_they_say() {
    let fx = fresh();
    let acct = account(&fx.gate, "100");
    let balance = |g: &Gate| g.balance(&acct).expect("balance");
    assert_eq!(balance(&fx.gate).available, 100_000_000);

    let hold = fx
        .gate
        .hold("h1", &acct, credits("30"), None, "job 1")
        .expect("hold");
    assert_eq!(hold.transfer.kind, TransferKind::Hold);
    let b = balance(&fx.gate);
    assert_eq!(
        (b.available, b.pending, b.posted),
        (70_000_000, 30_000_000, 100_000_000)
    );

    // Partial capture: 0.0165 is charged, the rest of the hold returns.
    fx.gate
        .capture("c1", "h1", credits("0.0165"))
        .expect("capture");
    let b = balance(&fx.gate);
    assert_eq!(
        (b.available, b.pending, b.posted),
        (99_983_500, 0, 99_983_500)
    );

    fx.gate
        .hold("h2", &acct, credits("50"), None, "")
        .expect("hold 2");
    fx.gate.release("r2", "h2").expect("release");
    let b = balance(&fx.gate);
    assert_eq!((b.available, b.pending), (99_983_500, 0));
    assert_verified(&fx.gate);
}

/// Every kind of transfer returns exactly the row a later read finds:
/// the written transfer is built from what was inserted, not read back.
#[test]
fn every_new_transfer_is_exactly_the_row_read_back() {
    let fx = fresh();
    let acct = account(&fx.gate, "100");
    let outcomes = [
        fx.gate
            .grant("g", &acct, credits("5"), "top")
            .expect("grant"),
        fx.gate
            .hold("h1", &acct, credits("30"), Some(START + 60_000), "job 1")
            .expect("hold"),
        fx.gate.capture("c1", "h1", credits("7")).expect("capture"),
        fx.gate
            .refund("f1", "c1", credits("2"), "bad")
            .expect("refund"),
        fx.gate
            .hold("h2", &acct, credits("3"), None, "")
            .expect("hold 2"),
        fx.gate.release("r2", "h2").expect("release"),
    ];
    for outcome in outcomes {
        assert!(!outcome.replayed);
        let read = fx.gate.transfer(&outcome.transfer.id).expect("read back");
        assert_eq!(outcome.transfer, read);
    }
    assert_verified(&fx.gate);
}

#[test]
fn refusals_change_nothing() {
    let fx = fresh();
    let acct = account(&fx.gate, "10");
    fx.gate
        .hold("h1", &acct, credits("4"), Some(START + 60_000), "")
        .expect("hold");

    let err = check_refused(&fx, "insufficient_credits", |g| {
        g.hold("h2", &acct, credits("6.000001"), None, "")
    });
    assert!(matches!(
        err,
        Error::InsufficientCredits {
            required_micros: 6_000_001,
            available_micros: 6_000_000,
            ..
        }
    ));
    check_refused(&fx, "capture_exceeds_hold", |g| {
        g.capture("c1", "h1", credits("4.000001"))
    });
    check_refused(&fx, "invalid_amount", |g| {
        g.grant("g", &acct, credits("-1"), "")
    });
    check_refused(&fx, "invalid_amount", |g| {
        g.grant("g", &acct, credits("0"), "")
    });
    check_refused(&fx, "invalid_amount", |g| {
        g.grant("g", &acct, credits("0.0000001"), "")
    });
    check_refused(&fx, "invalid_amount", |g| {
        g.grant("g", &acct, credits("1000000001"), "")
    });
    check_refused(&fx, "not_found", |g| {
        g.grant("g", "acct_nobody", credits("1"), "")
    });
    check_refused(&fx, "not_found", |g| {
        g.capture("c", "no-such-hold", credits("1"))
    });
    check_refused(&fx, "wrong_transfer_kind", |g| {
        g.capture("c", &format!("seed-{acct}"), credits("1"))
    });
    check_refused(&fx, "invalid_request", |g| {
        g.grant("", &acct, credits("1"), "")
    });
    check_refused(&fx, "invalid_request", |g| {
        g.grant("has space", &acct, credits("1"), "")
    });
    check_refused(&fx, "invalid_request", |g| {
        g.grant("g", &acct, credits("1"), &"m".repeat(513))
    });
    check_refused(&fx, "invalid_request", |g| {
        g.hold("h3", &acct, credits("1"), Some(START), "")
    });

    // At the deadline a capture is refused although no sweep has run yet.
    fx.clock.advance(Duration::from_secs(60));
    check_refused(&fx, "hold_expired", |g| g.capture("c1", "h1", credits("1")));
    assert_verified(&fx.gate);
}

#[test]
fn a_hold_resolves_at_most_once() {
    let fx = fresh();
    let acct = account(&fx.gate, "10");
    fx.gate
        .hold("h1", &acct, credits("5"), None, "")
        .expect("hold");
    fx.gate
        .capture("capture:job1", "h1", credits("5"))
        .expect("capture");

    // Retrying the same resolution is a replay; nothing moves.
    let again = fx
        .gate
        .capture("capture:job1", "h1", credits("5"))
        .expect("replay");
    assert!(again.replayed);
    let err = check_refused(&fx, "hold_already_resolved", |g| {
        g.release("release:job1", "h1")
    });
    assert!(
        matches!(err, Error::HoldAlreadyResolved { ref resolved_by, .. } if resolved_by == "capture:job1")
    );
    check_refused(&fx, "hold_already_resolved", |g| {
        g.capture("capture:other", "h1", credits("1"))
    });
    assert_eq!(
        fx.gate.balance(&acct).expect("balance").available,
        5_000_000
    );
    assert_verified(&fx.gate);
}

#[test]
fn replay_returns_the_first_transfer_and_different_fields_are_refused() {
    let fx = fresh();
    let acct = account(&fx.gate, "0");
    let first = fx
        .gate
        .grant("g1", &acct, credits("7"), "top-up")
        .expect("grant");
    fx.clock.advance(Duration::from_secs(5));
    let second = fx
        .gate
        .grant("g1", &acct, credits("7"), "top-up")
        .expect("replay");
    assert!(!first.replayed && second.replayed);
    assert_eq!(
        first.transfer, second.transfer,
        "the first result, timestamp included"
    );
    assert_eq!(fx.gate.balance(&acct).expect("balance").posted, 7_000_000);

    let check_field =
        |field: &str, op: &dyn Fn(&Gate) -> creditgate::Result<creditgate::TransferOutcome>| {
            let err = check_refused(&fx, "exists_with_different_fields", op);
            assert!(
                matches!(err, Error::ExistsWithDifferentFields { field: f, .. } if f == field),
                "expected field {field}, got {err}"
            );
        };
    check_field("amount", &|g| g.grant("g1", &acct, credits("8"), "top-up"));
    check_field("memo", &|g| g.grant("g1", &acct, credits("7"), "other"));
    check_field("kind", &|g| {
        g.hold("g1", &acct, credits("7"), None, "top-up")
    });
    let other = account(&fx.gate, "0");
    check_field("credit_account", &|g| {
        g.grant("g1", &other, credits("7"), "top-up")
    });
    assert_verified(&fx.gate);
}

#[test]
fn expiry_releases_due_holds_with_deterministic_ids() {
    let fx = fresh();
    let acct = account(&fx.gate, "10");
    fx.gate
        .hold("soon", &acct, credits("3"), Some(START + 1_000), "")
        .expect("hold soon");
    fx.gate
        .hold("later", &acct, credits("4"), Some(START + 10_000), "")
        .expect("hold later");
    fx.gate
        .hold("never", &acct, credits("1"), None, "")
        .expect("hold never");

    assert!(fx.gate.expire_due_holds().expect("sweep").is_empty());
    fx.clock.advance(Duration::from_millis(1_000));
    let expired = fx.gate.expire_due_holds().expect("sweep");
    let ids: Vec<_> = expired.iter().map(|o| o.transfer.id.as_str()).collect();
    assert_eq!(ids, ["expire:soon"]);
    assert_eq!(
        fx.gate.balance(&acct).expect("balance").available,
        5_000_000
    );
    check_refused(&fx, "hold_already_resolved", |g| g.release("r", "soon"));

    fx.clock.advance(Duration::from_secs(3600));
    let expired = fx.gate.expire_due_holds().expect("sweep");
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].transfer.kind, TransferKind::Expire);
    let b = fx.gate.balance(&acct).expect("balance");
    assert_eq!((b.available, b.pending), (9_000_000, 1_000_000));
    assert_verified(&fx.gate);
}

#[test]
fn refunds_never_exceed_the_charge() {
    let fx = fresh();
    let acct = account(&fx.gate, "20");
    fx.gate
        .hold("h", &acct, credits("10"), None, "")
        .expect("hold");
    fx.gate.capture("c", "h", credits("8")).expect("capture");
    fx.gate
        .refund("f1", "c", credits("5"), "bad output")
        .expect("refund 1");
    let err = check_refused(&fx, "refund_exceeds_charge", |g| {
        g.refund("f2", "c", credits("3.5"), "")
    });
    assert!(matches!(
        err,
        Error::RefundExceedsCharge {
            refundable_micros: 3_000_000,
            ..
        }
    ));
    fx.gate
        .refund("f2", "c", credits("3"), "")
        .expect("refund rest");
    check_refused(&fx, "wrong_transfer_kind", |g| {
        g.refund("f3", "h", credits("1"), "")
    });
    assert_eq!(
        fx.gate.balance(&acct).expect("balance").available,
        20_000_000
    );
    assert_verified(&fx.gate);
}

#[test]
fn an_account_flagged_to_allow_it_may_go_negative() {
    let fx = fresh();
    let postpaid = fx
        .gate
        .create_account(&NewAccount {
            name: "postpaid".into(),
            plan: Some("enterprise".into()),
            allow_negative: true,
        })
        .expect("account");
    fx.gate
        .hold("h", &postpaid.id, credits("25"), None, "")
        .expect("hold beyond zero");
    fx.gate.capture("c", "h", credits("25")).expect("capture");
    assert_eq!(
        fx.gate.balance(&postpaid.id).expect("balance").available,
        -25_000_000
    );
    assert_verified(&fx.gate);
}

#[test]
fn history_pages_newest_first_with_an_opaque_cursor() {
    let fx = fresh();
    let acct = account(&fx.gate, "0");
    let other = account(&fx.gate, "1");
    for i in 0..7 {
        fx.gate
            .grant(&format!("g{i}"), &acct, credits("1"), "")
            .expect("grant");
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = fx.gate.history(&acct, cursor.as_deref(), 3).expect("page");
        assert!(page.transfers.len() <= 3);
        seen.extend(page.transfers.iter().map(|t| t.id.clone()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ["g6", "g5", "g4", "g3", "g2", "g1", "g0"]);
    assert_eq!(
        fx.gate
            .history(&other, None, 10)
            .expect("other")
            .transfers
            .len(),
        1,
        "history is per account"
    );
    let err = fx
        .gate
        .history(&acct, Some("zz"), 3)
        .expect_err("bad cursor");
    assert_eq!(err.code(), "invalid_request");
    assert_eq!(
        fx.gate
            .history("acct_x", None, 3)
            .expect_err("no account")
            .code(),
        "not_found"
    );
}

#[test]
fn concurrent_holds_never_overdraw_the_wallet() {
    let fx = fresh();
    let acct = account(&fx.gate, "500");
    let gate = Arc::new(fx.gate);
    let holder = acct.clone();
    let (ok, refused) = race(&gate, 16, move |gate, thread| {
        let (mut ok, mut refused) = (0, 0);
        for i in 0..100 {
            match gate.hold(&format!("t{thread}-{i}"), &holder, Decimal::ONE, None, "") {
                Ok(_) => ok += 1,
                Err(Error::InsufficientCredits { .. }) => refused += 1,
                Err(other) => panic!("unexpected error: {other}"),
            }
        }
        (ok, refused)
    })
    .into_iter()
    .fold((0, 0), |acc, r| (acc.0 + r.0, acc.1 + r.1));
    assert_eq!((ok, refused), (500, 1100));
    let b = gate.balance(&acct).expect("balance");
    assert_eq!((b.available, b.pending), (0, 500_000_000));
    assert_verified(&gate);
}

#[test]
fn one_transfer_id_from_eight_threads_moves_once() {
    let fx = fresh();
    let acct = account(&fx.gate, "0");
    let gate = Arc::new(fx.gate);
    let granted = acct.clone();
    let outcomes = race(&gate, 8, move |gate, _| {
        gate.grant("same-id", &granted, credits("3"), "")
            .expect("grant or replay")
    });
    assert_eq!(outcomes.iter().filter(|o| !o.replayed).count(), 1);
    assert!(outcomes.windows(2).all(|w| w[0].transfer == w[1].transfer));
    assert_eq!(gate.balance(&acct).expect("balance").posted, 3_000_000);
    let err = gate
        .grant("same-id", &acct, credits("4"), "")
        .expect_err("differs");
    assert!(matches!(
        err,
        Error::ExistsWithDifferentFields {
            field: "amount",
            ..
        }
    ));
    assert_verified(&gate);
}

fn tamper(fx: &Fixture, sql: &str) {
    let conn = fx.raw();
    conn.execute_batch(sql).expect("tamper");
}

fn violations(gate: &Gate) -> Vec<(String, String)> {
    gate.verify_ledger()
        .expect("verify runs")
        .violations
        .into_iter()
        .map(|v| (v.check.to_owned(), v.detail))
        .collect()
}

#[test]
fn tampering_with_a_balance_is_named_by_verify() {
    let fx = fresh();
    let acct = account(&fx.gate, "10");
    assert_verified(&fx.gate);
    tamper(
        &fx,
        &format!("UPDATE ledger_accounts SET credits_posted = credits_posted + 1000000 WHERE account_id = '{acct}'"),
    );
    let found = violations(&fx.gate);
    assert!(
        found
            .iter()
            .any(|(check, detail)| check == "balance_replay" && detail.contains(&acct)),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|(check, _)| check == "debits_equal_credits"),
        "{found:?}"
    );
}

#[test]
fn tampering_with_a_transfer_is_named_by_verify() {
    let fx = fresh();
    let acct = account(&fx.gate, "10");
    fx.gate.grant("g2", &acct, credits("5"), "").expect("grant");
    fx.gate.grant("g3", &acct, credits("5"), "").expect("grant");
    let conn = fx.raw();
    let refused = conn.execute("UPDATE transfers SET amount = 1 WHERE id = 'g2'", []);
    assert!(refused.is_err(), "the trigger refuses updates to transfers");
    let refused = conn.execute("DELETE FROM transfers WHERE id = 'g2'", []);
    assert!(refused.is_err(), "the trigger refuses deletes of transfers");
    drop(conn);
    assert_verified(&fx.gate);

    tamper(
        &fx,
        "DROP TRIGGER transfers_are_never_updated;
         UPDATE transfers SET amount = 1 WHERE id = 'g2';",
    );
    let found = violations(&fx.gate);
    assert!(
        found
            .iter()
            .any(|(check, detail)| check == "transfers_immutable" && detail.contains("g2")),
        "{found:?}"
    );
    assert!(found
        .iter()
        .any(|(check, detail)| check == "transfers_immutable" && detail.contains("triggers")));
}

#[test]
fn deleting_the_newest_transfer_is_named_by_verify() {
    let fx = fresh();
    let acct = account(&fx.gate, "10");
    fx.gate.grant("g2", &acct, credits("5"), "").expect("grant");
    tamper(
        &fx,
        "DROP TRIGGER transfers_are_never_deleted;
         DELETE FROM transfers WHERE id = 'g2';
         CREATE TRIGGER transfers_are_never_deleted BEFORE DELETE ON transfers
         BEGIN SELECT RAISE(ABORT, 'transfers are immutable'); END;",
    );
    let found = violations(&fx.gate);
    assert!(
        found
            .iter()
            .any(|(check, detail)| check == "transfers_immutable" && detail.contains("missing")),
        "{found:?}"
    );
}

#[test]
fn a_negative_wallet_and_a_lost_open_hold_are_named_by_verify() {
    let fx = fresh();
    let acct = account(&fx.gate, "10");
    fx.gate
        .hold("h", &acct, credits("2"), None, "")
        .expect("hold");
    tamper(&fx, "DELETE FROM open_holds");
    let found = violations(&fx.gate);
    assert!(found
        .iter()
        .any(|(c, d)| c == "pending_equals_open_holds" && d.contains(&acct)));
    assert!(found
        .iter()
        .any(|(c, d)| c == "open_holds_match_transfers" && d.contains("hold h")));

    let fx = fresh();
    let acct = account(&fx.gate, "1");
    tamper(
        &fx,
        &format!("PRAGMA ignore_check_constraints = ON;
          UPDATE ledger_accounts SET debits_posted = debits_posted + 5000000 WHERE account_id = '{acct}'"),
    );
    let found = violations(&fx.gate);
    assert!(
        found
            .iter()
            .any(|(c, d)| c == "wallet_below_zero" && d.contains(&acct)),
        "{found:?}"
    );
}

#[test]
fn a_synchronous_normal_store_works_the_same() {
    let fx = common::open(Setup {
        synchronous: Synchronous::Normal,
        ..Setup::default()
    });
    let gate = fx.gate;
    let acct = account(&gate, "1");
    assert_eq!(gate.balance(&acct).expect("balance").available, 1_000_000);
    assert_verified(&gate);
}

#[test]
fn refused_operations_in_a_batch_roll_back_alone() {
    let fx = fresh();
    let acct = account(&fx.gate, "5");
    let gate = Arc::new(fx.gate);
    let before = gate.write_stats();
    // Keep the writer busy until six operations are queued, so that they
    // run as one batch (one transaction, one fsync).
    let blocker = {
        let gate = gate.clone();
        std::thread::spawn(move || {
            let observer = gate.clone();
            gate.store_for_tests().write(move |_tx| {
                while observer.write_stats().queued < 6 {
                    std::thread::yield_now();
                }
                Ok(())
            })
        })
    };
    while gate.write_stats().ops == before.ops {
        std::thread::yield_now();
    }
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let (gate, acct) = (gate.clone(), acct.clone());
            std::thread::spawn(move || match i {
                0..=3 => gate.hold(&format!("b{i}"), &acct, credits("1"), None, ""),
                4 => gate.hold("too-big", &acct, credits("10"), None, ""),
                _ => gate.grant(&format!("seed-{acct}"), &acct, credits("6"), "seed"),
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    blocker.join().expect("blocker").expect("blocker op");
    for (i, result) in results.iter().enumerate() {
        match i {
            0..=3 => assert!(result.is_ok(), "hold {i}: {result:?}"),
            4 => assert_eq!(
                result.as_ref().expect_err("refused").code(),
                "insufficient_credits"
            ),
            _ => assert_eq!(
                result.as_ref().expect_err("refused").code(),
                "exists_with_different_fields"
            ),
        }
    }
    let after = gate.write_stats();
    assert_eq!(
        (after.batches - before.batches, after.ops - before.ops),
        (2, 7),
        "the six ran as one batch"
    );
    let b = gate.balance(&acct).expect("balance");
    assert_eq!((b.available, b.pending), (1_000_000, 4_000_000));
    assert_verified(&gate);
}
