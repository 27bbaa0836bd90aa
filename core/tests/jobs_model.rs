//! Property test of jobs and money together: random submits (with reused
//! request ids, so replays and conflicts happen), cancels, worker steps and
//! clock moves over two accounts and every fixture path. After every step
//! `ledger verify` passes and each wallet equals what its jobs say: posted
//! = granted − the charges of succeeded jobs, pending = the estimates of
//! live jobs; and no job is ever charged twice or charged without success.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Setup, RYNJER};
use creditgate::{JobFilter, JobStatus, NewAccount, Synchronous};
use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::json;

const GRANT_CREDITS: i64 = 120;
const MODELS: &[&str] = &["google/nano-banana", "z-image", "veo3_fast", "V4", "sora-2"];
const PROMPTS: &[&str] = &[
    "x",
    "[fail] x",
    "[reject] x",
    "[transient] x",
    "[flaky] x",
    "[slow] x",
    "[hang] x",
];

#[derive(Debug, Clone)]
enum Op {
    Submit {
        account: usize,
        request: u8,
        model: usize,
        prompt: usize,
    },
    Cancel {
        account: usize,
        request: u8,
    },
    Work,
    Advance {
        secs: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, 0..6u8, 0..MODELS.len(), 0..PROMPTS.len())
            .prop_map(|(account, request, model, prompt)| Op::Submit { account, request, model, prompt }),
        1 => (0..2usize, 0..6u8).prop_map(|(account, request)| Op::Cancel { account, request }),
        3 => Just(Op::Work),
        2 => (1..400u64).prop_map(|secs| Op::Advance { secs }),
    ]
}

/// Runs `ops` on a fresh gate whose ids come from `seed`, so a failing
/// case replays with the same ids.
fn run(seed: u64, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let fx = common::open(Setup {
        synchronous: Synchronous::Normal,
        catalog: Some(RYNJER),
        ids_seed: Some(seed),
        ..Setup::default()
    });
    let (gate, clock) = (&fx.gate, &fx.clock);
    let accounts: Vec<String> = (0..2)
        .map(|i| {
            let id = gate
                .create_account(&NewAccount::named("m"))
                .expect("account")
                .id;
            gate.grant(&format!("g{i}"), &id, Decimal::from(GRANT_CREDITS), "")
                .expect("grant");
            id
        })
        .collect();
    // The first body each (account, request id) was accepted with.
    let mut accepted: HashMap<(usize, u8), serde_json::Value> = HashMap::new();

    for op in ops {
        match op {
            Op::Submit {
                account,
                request,
                model,
                prompt,
            } => {
                let body = json!({"request_id": format!("r{request}"), "model": MODELS[model], "prompt": PROMPTS[prompt]});
                match gate.submit(&accounts[account], &body) {
                    Ok(submitted) => {
                        if let Some(first) = accepted.get(&(account, request)) {
                            prop_assert!(submitted.replayed, "a second acceptance of r{}", request);
                            prop_assert_eq!(first, &body);
                        } else {
                            prop_assert!(!submitted.replayed);
                            accepted.insert((account, request), body);
                        }
                    }
                    Err(err) => {
                        let code = err.code();
                        match accepted.get(&(account, request)) {
                            Some(first) => {
                                prop_assert_eq!(code, "idempotency_conflict");
                                prop_assert_ne!(first, &body);
                            }
                            None => prop_assert_eq!(code, "insufficient_credits"),
                        }
                    }
                }
            }
            Op::Cancel { account, request } => {
                match gate.cancel(&accounts[account], &format!("r{request}")) {
                    Ok(job) => prop_assert_eq!(job.status, JobStatus::Canceled),
                    Err(err) => prop_assert!(
                        ["not_found", "invalid_transition"].contains(&err.code()),
                        "{}",
                        err
                    ),
                }
            }
            Op::Work => {
                gate.run_due_work(64).expect("worker step");
            }
            Op::Advance { secs } => clock.advance(Duration::from_secs(secs)),
        }

        let report = gate.verify_ledger().expect("verify");
        prop_assert!(report.is_ok(), "{:?}", report.violations);
        for (i, account) in accounts.iter().enumerate() {
            let jobs = gate
                .jobs(&JobFilter {
                    account_id: Some(account.clone()),
                    status: None,
                    limit: 500,
                    ..JobFilter::default()
                })
                .expect("jobs");
            let charged: i64 = jobs.iter().filter_map(|j| j.charged_micros).sum();
            let held: i64 = jobs
                .iter()
                .filter(|j| !j.status.is_terminal())
                .map(|j| j.estimate_micros)
                .sum();
            for job in &jobs {
                prop_assert_eq!(
                    job.charged_micros.is_some(),
                    job.status == JobStatus::Succeeded
                );
                if let Some(charge) = job.charged_micros {
                    prop_assert_eq!(charge, job.estimate_micros, "charged exactly the estimate");
                }
            }
            let balance = gate.balance(account).expect("balance");
            prop_assert_eq!(
                balance.posted,
                GRANT_CREDITS * 1_000_000 - charged,
                "account {}",
                i
            );
            prop_assert_eq!(balance.pending, held, "account {}", i);
            prop_assert!(balance.available >= 0);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn jobs_and_wallets_agree_after_every_step(seed in any::<u64>(), ops in prop::collection::vec(op(), 1..50)) {
        run(seed, ops)?;
    }
}
