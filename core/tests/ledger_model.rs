//! Property test: random sequences of grants, holds, partial and full
//! captures, releases, expiries, refunds and replays over several accounts.
//! After every step `verify` passes and every balance equals a plain
//! in-memory model of what the ledger promises.

mod common;

use std::time::Duration;

use common::Setup;
use creditgate::{Gate, NewAccount, Synchronous};
use proptest::prelude::*;
use rust_decimal::Decimal;

const ACCOUNTS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Grant {
        account: usize,
        micros: i64,
    },
    Hold {
        account: usize,
        micros: i64,
        ttl_ms: Option<i64>,
    },
    Capture {
        hold: usize,
        per_mille: i64,
    },
    Release {
        hold: usize,
    },
    Refund {
        capture: usize,
        micros: i64,
    },
    Advance {
        ms: i64,
    },
    Expire,
    ReplayLast,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..ACCOUNTS, 1..40_000_000i64).prop_map(|(account, micros)| Op::Grant { account, micros }),
        (0..ACCOUNTS, 1..25_000_000i64, prop::option::of(1..5_000i64)).prop_map(
            |(account, micros, ttl_ms)| Op::Hold {
                account,
                micros,
                ttl_ms
            }
        ),
        (0..16usize, 0..1_100i64).prop_map(|(hold, per_mille)| Op::Capture { hold, per_mille }),
        (0..16usize).prop_map(|hold| Op::Release { hold }),
        (0..8usize, 1..20_000_000i64).prop_map(|(capture, micros)| Op::Refund { capture, micros }),
        (1..3_000i64).prop_map(|ms| Op::Advance { ms }),
        Just(Op::Expire),
        Just(Op::ReplayLast),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum HoldState {
    Open,
    Resolved,
}

#[derive(Debug)]
struct ModelHold {
    id: String,
    account: usize,
    micros: i64,
    deadline: Option<i64>,
    state: HoldState,
}

#[derive(Debug)]
struct ModelCapture {
    id: String,
    account: usize,
    micros: i64,
    refunded: i64,
}

#[derive(Debug, Default)]
struct Model {
    posted: [i64; ACCOUNTS],
    pending: [i64; ACCOUNTS],
    holds: Vec<ModelHold>,
    captures: Vec<ModelCapture>,
    now: i64,
}

impl Model {
    fn available(&self, account: usize) -> i64 {
        self.posted[account] - self.pending[account]
    }
}

fn micros(m: i64) -> Decimal {
    Decimal::new(m, 6)
}

/// The last successful call, replayed verbatim: it must change nothing.
type Replay = Box<dyn Fn(&Gate) -> creditgate::Result<creditgate::TransferOutcome>>;

/// Runs `ops` on a fresh gate whose ids come from `seed`, so a failing
/// case replays with the same ids.
fn run(seed: u64, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let fx = common::open(Setup {
        synchronous: Synchronous::Normal,
        start: 0,
        ids_seed: Some(seed),
        ..Setup::default()
    });
    let (gate, clock) = (&fx.gate, &fx.clock);
    let ids: Vec<String> = (0..ACCOUNTS)
        .map(|_| {
            gate.create_account(&NewAccount::named("m"))
                .expect("account")
                .id
        })
        .collect();
    let mut model = Model::default();
    let mut last: Option<Replay> = None;

    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Grant { account, micros: m } => {
                let id = format!("g{step}");
                gate.grant(&id, &ids[account], micros(m), "")
                    .expect("grant");
                model.posted[account] += m;
                let acct = ids[account].clone();
                last = Some(Box::new(move |g| g.grant(&id, &acct, micros(m), "")));
            }
            Op::Hold {
                account,
                micros: m,
                ttl_ms,
            } => {
                let id = format!("h{step}");
                let deadline = ttl_ms.map(|ttl| model.now + ttl);
                let result = gate.hold(&id, &ids[account], micros(m), deadline, "");
                if model.available(account) >= m {
                    result.expect("hold fits");
                    model.pending[account] += m;
                    model.holds.push(ModelHold {
                        id: id.clone(),
                        account,
                        micros: m,
                        deadline,
                        state: HoldState::Open,
                    });
                    let acct = ids[account].clone();
                    last = Some(Box::new(move |g| {
                        g.hold(&id, &acct, micros(m), deadline, "")
                    }));
                } else {
                    prop_assert_eq!(result.expect_err("overdraw").code(), "insufficient_credits");
                }
            }
            Op::Capture { hold, per_mille } => {
                let Some(h) = model.holds.get_mut(hold) else {
                    continue;
                };
                let amount = (h.micros * per_mille / 1_000).max(1);
                let id = format!("c{step}");
                let result = gate.capture(&id, &h.id, micros(amount));
                let expired = h.deadline.is_some_and(|d| model.now >= d);
                let expected = if h.state == HoldState::Resolved {
                    Some("hold_already_resolved")
                } else if expired {
                    Some("hold_expired")
                } else if amount > h.micros {
                    Some("capture_exceeds_hold")
                } else {
                    None
                };
                match expected {
                    Some(code) => prop_assert_eq!(result.expect_err("refused").code(), code),
                    None => {
                        result.expect("capture");
                        h.state = HoldState::Resolved;
                        model.pending[h.account] -= h.micros;
                        model.posted[h.account] -= amount;
                        model.captures.push(ModelCapture {
                            id: id.clone(),
                            account: h.account,
                            micros: amount,
                            refunded: 0,
                        });
                        let hold_id = h.id.clone();
                        last = Some(Box::new(move |g| g.capture(&id, &hold_id, micros(amount))));
                    }
                }
            }
            Op::Release { hold } => {
                let Some(h) = model.holds.get_mut(hold) else {
                    continue;
                };
                let id = format!("r{step}");
                let result = gate.release(&id, &h.id);
                if h.state == HoldState::Resolved {
                    prop_assert_eq!(
                        result.expect_err("resolved").code(),
                        "hold_already_resolved"
                    );
                } else {
                    result.expect("release");
                    h.state = HoldState::Resolved;
                    model.pending[h.account] -= h.micros;
                    let hold_id = h.id.clone();
                    last = Some(Box::new(move |g| g.release(&id, &hold_id)));
                }
            }
            Op::Refund { capture, micros: m } => {
                let Some(c) = model.captures.get_mut(capture) else {
                    continue;
                };
                let id = format!("f{step}");
                let result = gate.refund(&id, &c.id, micros(m), "");
                if c.refunded + m > c.micros {
                    prop_assert_eq!(
                        result.expect_err("too much").code(),
                        "refund_exceeds_charge"
                    );
                } else {
                    result.expect("refund");
                    c.refunded += m;
                    model.posted[c.account] += m;
                    let charge = c.id.clone();
                    last = Some(Box::new(move |g| g.refund(&id, &charge, micros(m), "")));
                }
            }
            Op::Advance { ms } => {
                clock.advance(Duration::from_millis(ms as u64));
                model.now += ms;
            }
            Op::Expire => {
                let expired = gate.expire_due_holds().expect("sweep");
                let mut expected: Vec<String> = Vec::new();
                for h in model.holds.iter_mut() {
                    if h.state == HoldState::Open && h.deadline.is_some_and(|d| d <= model.now) {
                        h.state = HoldState::Resolved;
                        model.pending[h.account] -= h.micros;
                        expected.push(format!("expire:{}", h.id));
                    }
                }
                let mut got: Vec<String> = expired.into_iter().map(|o| o.transfer.id).collect();
                got.sort();
                expected.sort();
                prop_assert_eq!(got, expected);
            }
            Op::ReplayLast => {
                if let Some(replay) = &last {
                    let outcome = replay(gate).expect("a replay is not an error");
                    prop_assert!(outcome.replayed);
                }
            }
        }
        for (i, id) in ids.iter().enumerate() {
            let b = gate.balance(id).expect("balance");
            prop_assert_eq!(
                (b.posted, b.pending),
                (model.posted[i], model.pending[i]),
                "account {} after step {}",
                i,
                step
            );
            prop_assert!(b.available >= 0);
        }
        let report = gate.verify_ledger().expect("verify");
        prop_assert!(
            report.is_ok(),
            "verify after step {}: {:?}",
            step,
            report.violations
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn ledger_matches_its_model(seed in any::<u64>(), ops in prop::collection::vec(op(), 1..40)) {
        run(seed, ops)?;
    }
}
