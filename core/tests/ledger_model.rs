//! Property test: random sequences of grants, promotional grants that
//! expire, holds, partial and full captures, releases, expiries (of holds
//! and of promotional credits), refunds and replays over several accounts.
//! After every step `verify` passes and every balance, and every account's
//! promotional credits, equal a plain in-memory model of what the ledger
//! promises (promotional credits spent first, soonest-expiring first, and
//! returned by what a hold does not spend to the buckets they came from).

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
    Promo {
        account: usize,
        micros: i64,
        ttl_ms: i64,
    },
    SweepPromos,
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
        (0..ACCOUNTS, 1..20_000_000i64, 1..6_000i64).prop_map(|(account, micros, ttl_ms)| {
            Op::Promo {
                account,
                micros,
                ttl_ms,
            }
        }),
        Just(Op::SweepPromos),
    ]
}

/// A promotional grant's bucket, as the model keeps it.
#[derive(Debug)]
struct ModelBucket {
    grant_id: String,
    account: usize,
    expires_at: i64,
    available: i64,
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
    /// (bucket index, micro-credits) drawn, soonest-expiring first.
    draws: Vec<(usize, i64)>,
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
    buckets: Vec<ModelBucket>,
    now: i64,
}

impl Model {
    fn available(&self, account: usize) -> i64 {
        self.posted[account] - self.pending[account]
    }

    /// Indexes of `account`'s buckets with credits available, soonest
    /// expiring first (ties by grant id), as the ledger orders them.
    fn live_buckets(&self, account: usize) -> Vec<usize> {
        let mut live: Vec<usize> = (0..self.buckets.len())
            .filter(|&b| self.buckets[b].account == account && self.buckets[b].available > 0)
            .collect();
        live.sort_by(|&a, &b| {
            let (a, b) = (&self.buckets[a], &self.buckets[b]);
            (a.expires_at, &a.grant_id).cmp(&(b.expires_at, &b.grant_id))
        });
        live
    }

    /// Takes back what is left of `account`'s expired buckets (every
    /// account's with `None`); how many buckets expired.
    fn expire_buckets(&mut self, account: Option<usize>) -> usize {
        let mut expired = 0;
        for bucket in &mut self.buckets {
            if account.is_none_or(|a| a == bucket.account)
                && bucket.available > 0
                && bucket.expires_at <= self.now
            {
                self.posted[bucket.account] -= bucket.available;
                bucket.available = 0;
                expired += 1;
            }
        }
        expired
    }

    /// Resolves hold `h`'s draws: `spent` of them spent soonest-expiring
    /// first, the rest back to their buckets.
    fn settle_draws(&mut self, h: usize, mut spent: i64) {
        for (bucket, drawn) in std::mem::take(&mut self.holds[h].draws) {
            let spend = spent.min(drawn);
            spent -= spend;
            self.buckets[bucket].available += drawn - spend;
        }
    }

    fn promotional(&self, account: usize) -> i64 {
        self.buckets
            .iter()
            .filter(|b| b.account == account)
            .map(|b| b.available)
            .sum()
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
                // The hold first takes back its wallet's expired promotional
                // credits; a refused hold rolls that back with it.
                let posted_before = model.posted[account];
                let left_before: Vec<i64> = model.buckets.iter().map(|b| b.available).collect();
                model.expire_buckets(Some(account));
                if model.available(account) >= m {
                    result.expect("hold fits");
                    model.pending[account] += m;
                    let mut need = m;
                    let mut draws = Vec::new();
                    for b in model.live_buckets(account) {
                        if need == 0 {
                            break;
                        }
                        let take = need.min(model.buckets[b].available);
                        model.buckets[b].available -= take;
                        need -= take;
                        draws.push((b, take));
                    }
                    model.holds.push(ModelHold {
                        id: id.clone(),
                        account,
                        micros: m,
                        deadline,
                        state: HoldState::Open,
                        draws,
                    });
                    let acct = ids[account].clone();
                    last = Some(Box::new(move |g| {
                        g.hold(&id, &acct, micros(m), deadline, "")
                    }));
                } else {
                    prop_assert_eq!(result.expect_err("overdraw").code(), "insufficient_credits");
                    model.posted[account] = posted_before;
                    for (bucket, left) in model.buckets.iter_mut().zip(left_before) {
                        bucket.available = left;
                    }
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
                        let (account, held, hold_id) = (h.account, h.micros, h.id.clone());
                        model.pending[account] -= held;
                        model.posted[account] -= amount;
                        model.settle_draws(hold, amount);
                        model.captures.push(ModelCapture {
                            id: id.clone(),
                            account,
                            micros: amount,
                            refunded: 0,
                        });
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
                    let (account, held, hold_id) = (h.account, h.micros, h.id.clone());
                    model.pending[account] -= held;
                    model.settle_draws(hold, 0);
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
                for h in 0..model.holds.len() {
                    let hold = &mut model.holds[h];
                    if hold.state == HoldState::Open
                        && hold.deadline.is_some_and(|d| d <= model.now)
                    {
                        hold.state = HoldState::Resolved;
                        let (account, held) = (hold.account, hold.micros);
                        expected.push(format!("expire:{}", hold.id));
                        model.pending[account] -= held;
                        model.settle_draws(h, 0);
                    }
                }
                let mut got: Vec<String> = expired.into_iter().map(|o| o.transfer.id).collect();
                got.sort();
                expected.sort();
                prop_assert_eq!(got, expected);
            }
            Op::Promo {
                account,
                micros: m,
                ttl_ms,
            } => {
                let id = format!("p{step}");
                let expires_at = model.now + ttl_ms;
                gate.grant_promotional(&id, &ids[account], micros(m), expires_at, "")
                    .expect("promotional grant");
                model.posted[account] += m;
                model.buckets.push(ModelBucket {
                    grant_id: id.clone(),
                    account,
                    expires_at,
                    available: m,
                });
                let acct = ids[account].clone();
                last = Some(Box::new(move |g| {
                    g.grant_promotional(&id, &acct, micros(m), expires_at, "")
                }));
            }
            Op::SweepPromos => {
                let swept = gate.expire_promotional_credits().expect("sweep");
                prop_assert_eq!(swept, model.expire_buckets(None));
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
            let promotional: i64 = gate
                .promotional_credits(id)
                .expect("buckets")
                .iter()
                .map(|bucket| bucket.available)
                .sum();
            prop_assert_eq!(
                promotional,
                model.promotional(i),
                "promotional credits of account {} after step {}",
                i,
                step
            );
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
