//! Ledger throughput benchmark (run with `cargo bench -p creditgate`).
//!
//! Prints, in one run and at the same pragmas (WAL, `synchronous=FULL`):
//! - the baseline: a bare rusqlite loop doing one small insert per
//!   transaction;
//! - hold+capture pairs per second through the core facade, from one thread
//!   and from several at once;
//! - the ratio of each to the baseline (goal: >= 0.5).
//!
//! Bounded in count and time; loopback and disk only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use creditgate::{Gate, ManualClock, NewAccount, StoreOptions};
use rust_decimal::Decimal;

/// Operations per measurement, at most.
const OPS_MAX: usize = 4_000;
/// Time per measurement, at most.
const MEASURE_TIME_MAX: Duration = Duration::from_secs(2);
/// Threads in the concurrent measurement.
const THREADS: usize = 8;

fn bare_inserts(dir: &std::path::Path, round: usize) -> f64 {
    let conn = rusqlite::Connection::open(dir.join(format!("bare{round}.db"))).expect("open");
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))
        .expect("wal");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("sync");
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
        .expect("table");
    let started = Instant::now();
    let mut done = 0;
    while done < OPS_MAX && started.elapsed() < MEASURE_TIME_MAX {
        conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
        conn.execute("INSERT INTO t (v) VALUES (?1)", [done as i64])
            .expect("insert");
        conn.execute_batch("COMMIT").expect("commit");
        done += 1;
    }
    done as f64 / started.elapsed().as_secs_f64()
}

fn gate(dir: &std::path::Path, name: &str) -> (Gate, String) {
    let mut options = StoreOptions::new(dir.join(name));
    if std::env::var_os("BENCH_SYNC_NORMAL").is_some() {
        options.synchronous = creditgate::Synchronous::Normal;
    }
    let gate = Gate::open(&options, Arc::new(ManualClock::new(1_790_000_000_000))).expect("open");
    let account = gate
        .create_account(&NewAccount::named("bench"))
        .expect("account");
    gate.grant("seed", &account.id, Decimal::from(1_000_000), "")
        .expect("grant");
    (gate, account.id)
}

fn pairs(gate: &Gate, account: &str, prefix: &str, count: usize, deadline: Instant) -> usize {
    let price = Decimal::new(165, 4);
    let mut done = 0;
    while done < count && Instant::now() < deadline {
        let hold = format!("{prefix}h{done}");
        gate.hold(&hold, account, Decimal::from(2), None, "")
            .expect("hold");
        gate.capture(&format!("{prefix}c{done}"), &hold, price)
            .expect("capture");
        done += 1;
    }
    done
}

/// Rounds of (baseline, one thread, threads), interleaved so that disk
/// noise hits all three alike; the median of each is reported.
const ROUNDS: usize = 3;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn one_thread(dir: &std::path::Path, round: usize) -> f64 {
    let (gate, account) = gate(dir, &format!("single{round}.db"));
    let started = Instant::now();
    let done = pairs(
        &gate,
        &account,
        "s",
        OPS_MAX / 2,
        started + MEASURE_TIME_MAX,
    );
    let rate = done as f64 / started.elapsed().as_secs_f64();
    assert!(gate.verify_ledger().expect("verify").is_ok());
    rate
}

fn many_threads(dir: &std::path::Path, round: usize) -> (f64, f64) {
    let (shared, account) = gate(dir, &format!("threads{round}.db"));
    let shared = Arc::new(shared);
    let started = Instant::now();
    let deadline = started + MEASURE_TIME_MAX;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (gate, account) = (shared.clone(), account.clone());
            std::thread::spawn(move || {
                pairs(
                    &gate,
                    &account,
                    &format!("t{t}-"),
                    OPS_MAX / 2 / THREADS,
                    deadline,
                )
            })
        })
        .collect();
    let done: usize = handles.into_iter().map(|h| h.join().expect("thread")).sum();
    let rate = done as f64 / started.elapsed().as_secs_f64();
    assert!(shared.verify_ledger().expect("verify").is_ok());
    let stats = shared.write_stats();
    (rate, stats.ops as f64 / stats.batches.max(1) as f64)
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut base, mut single, mut threaded, mut per_commit) = (vec![], vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        base.push(bare_inserts(dir.path(), round));
        single.push(one_thread(dir.path(), round));
        let (rate, ops) = many_threads(dir.path(), round);
        threaded.push(rate);
        per_commit.push(ops);
    }
    let (base, single, threaded, per_commit) = (
        median(base),
        median(single),
        median(threaded),
        median(per_commit),
    );
    println!("ledger benchmark: medians of {ROUNDS} interleaved rounds, WAL + synchronous=FULL");
    println!("baseline  bare rusqlite, 1 insert per transaction  {base:>8.0} commits/s");
    println!(
        "core      hold+capture pairs, 1 thread              {single:>8.0} pairs/s  ratio {:.2}  ({:.0} ledger ops/s)",
        single / base,
        single * 2.0
    );
    println!(
        "core      hold+capture pairs, {THREADS} threads             {threaded:>8.0} pairs/s  ratio {:.2}  ({per_commit:.1} ops per commit)",
        threaded / base
    );
}
