//! Writer cost of one job's whole life (run with
//! `cargo bench -p creditgate --bench job_cost`).
//!
//! The load benchmark (appliance) showed the single writer, not fsync, as
//! the limit of durable submits: this measures what each job costs it, with
//! fsync taken out (`synchronous=NORMAL`) and no HTTP, from one thread:
//! - **baseline**: bare rusqlite inserting one job-sized row (about the
//!   size of a job's stored request and estimate) per transaction;
//! - **submit**: `Gate::submit` (idempotency check, hold, job row);
//! - **hand over**: the worker step that submits each job to the fixture
//!   provider (claim, then record it running);
//! - **polls to the end**: the worker steps that poll it (claim, poll,
//!   reschedule) until it succeeds (capture and usage event).
//!
//! Prints microseconds per job for each and the ratio of the whole life to
//! the baseline. Bounded: `JOBS` jobs, one round.

use std::sync::Arc;
use std::time::{Duration, Instant};

use creditgate::{Gate, ManualClock, NewAccount, StoreOptions, Synchronous};
use rust_decimal::Decimal;
use serde_json::json;

/// Jobs per measurement.
const JOBS: usize = 4_000;
/// Rounds of "advance the clock past the next poll, run the worker".
const POLL_ROUNDS_MAX: usize = 10;
/// Jobs one worker step takes (the appliance's `WORKER_BATCH_MAX`).
const WORKER_BATCH: usize = 32;

fn baseline(dir: &std::path::Path) -> f64 {
    let conn = rusqlite::Connection::open(dir.join("bare.db")).expect("open");
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))
        .expect("wal");
    conn.pragma_update(None, "synchronous", "NORMAL")
        .expect("sync");
    conn.execute_batch("CREATE TABLE t (id TEXT PRIMARY KEY, body TEXT NOT NULL)")
        .expect("table");
    let body = "x".repeat(900);
    let started = Instant::now();
    for i in 0..JOBS {
        conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
        conn.prepare_cached("INSERT INTO t (id, body) VALUES (?1, ?2)")
            .expect("prepare")
            .execute(rusqlite::params![format!("job_{i:012}"), body])
            .expect("insert");
        conn.execute_batch("COMMIT").expect("commit");
    }
    micros_per_job(started)
}

fn micros_per_job(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1e6 / JOBS as f64
}

/// How many jobs have succeeded.
fn succeeded(gate: &Gate) -> usize {
    gate.store_for_tests()
        .read(|conn| {
            Ok(conn.query_row(
                "SELECT count(*) FROM jobs WHERE status = 'succeeded'",
                [],
                |row| row.get::<_, i64>(0),
            )?)
        })
        .expect("count") as usize
}

/// Runs worker steps until none does anything; returns how many jobs
/// the steps reported as handled.
fn drain(gate: &Gate) -> usize {
    let mut handled = 0;
    loop {
        let report = gate.run_due_work(WORKER_BATCH).expect("work");
        let step = report.submitted + report.polled;
        if step == 0 {
            return handled;
        }
        handled += step;
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let base = baseline(dir.path());

    let mut options = StoreOptions::new(dir.path().join("gate.db"));
    options.synchronous = Synchronous::Normal;
    let clock = Arc::new(ManualClock::new(1_790_000_000_000));
    let gate = Gate::open(&options, clock.clone()).expect("open");
    gate.import_catalog(include_str!("../../fixtures/catalogs/rynjer.json"))
        .expect("catalog");
    let account = gate
        .create_account(&NewAccount::named("bench"))
        .expect("account");
    gate.grant("seed", &account.id, Decimal::from(10_000_000), "")
        .expect("grant");

    let started = Instant::now();
    for i in 0..JOBS {
        let body =
            json!({"request_id": format!("cost-{i}"), "model": "z-image", "prompt": "a benchmark"});
        gate.submit(&account.id, &body).expect("submit");
    }
    let submit = micros_per_job(started);

    let started = Instant::now();
    assert_eq!(drain(&gate), JOBS, "every job handed to the provider");
    let hand_over = micros_per_job(started);

    let started = Instant::now();
    let mut polls = 0;
    for _ in 0..POLL_ROUNDS_MAX {
        clock.advance(Duration::from_secs(15));
        polls += drain(&gate);
        if succeeded(&gate) == JOBS {
            break;
        }
    }
    let finish = micros_per_job(started);
    assert_eq!(succeeded(&gate), JOBS, "every job succeeded");

    let report = gate.verify_ledger().expect("verify");
    assert!(report.is_ok(), "ledger verifies: {report:?}");
    let total = submit + hand_over + finish;
    println!("writer cost per job, {JOBS} jobs, one thread, synchronous=NORMAL, no HTTP");
    println!("baseline (one job-sized row per transaction): {base:>8.1} us");
    println!("submit:                                       {submit:>8.1} us");
    println!("hand over (claim, submit, record running):    {hand_over:>8.1} us");
    println!(
        "polls to the end ({:.1} per job; the last captures): {finish:>8.1} us",
        polls as f64 / JOBS as f64
    );
    println!(
        "whole life:                                   {total:>8.1} us  ({:.1}x baseline)",
        total / base
    );
}
