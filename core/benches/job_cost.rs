//! Writer cost of one job's whole life (run with
//! `cargo bench -p creditgate --bench job_cost`), against what SQLite
//! itself needs for it, measured in the same run.
//!
//! The load benchmark (appliance) showed the single writer, not fsync, as
//! the limit of durable submits: this measures what each job costs it, with
//! fsync taken out (`synchronous=NORMAL`) and no HTTP:
//! - **submit**: `Gate::submit` (idempotency check, plan count, hold, job
//!   row, ...), one write each from one thread; in the second mode from 32
//!   threads at once, so the writer group-commits them as under load;
//! - **hand over**: the worker steps (32 jobs each) that submit each job to
//!   the fixture provider (claim, then record it running);
//! - **polls to the end**: the worker steps that poll it (claim, poll,
//!   reschedule) until it succeeds (capture and usage event).
//!
//! The **reference** is bare rusqlite with the gate's pragmas doing only a
//! job's irreducible durable writes, batched the same way: per submit the
//! idempotency lookup, the job insert, the hold transfer insert and the
//! conditional wallet debit (one transaction each, or 32 per transaction
//! in the second mode); per hand-over step of 32 the update to running
//! with the provider's task id; per finishing step of 32 the job update
//! with its outputs, the capture transfer, two balance updates and the
//! usage insert. Each phase prints its ratio to its reference (issue 16's
//! targets: whole life at most 2.5x, every phase at most 3x; grouped whole
//! life at most 3x). Bounded: `JOBS` jobs, one round per mode.

use std::sync::Arc;
use std::time::{Duration, Instant};

use creditgate::{Gate, ManualClock, NewAccount, StoreOptions, Synchronous};
use rust_decimal::Decimal;
use serde_json::json;

/// Jobs per measurement.
const JOBS: usize = 4_000;
/// Rounds of "advance the clock past the next poll, run the worker".
const POLL_ROUNDS_MAX: usize = 10;
/// Interleaved rounds; each phase's median is reported.
const ROUNDS: usize = 3;
/// Jobs one worker step takes (the appliance's `WORKER_BATCH_MAX`).
const WORKER_BATCH: usize = 32;

/// What a phase is measured in: micro-seconds of wall time, or pages
/// appended to the write-ahead log (exact: the same count in every run).
trait Meter {
    /// A phase starts.
    fn start(&mut self);
    /// The phase that started last ended after `jobs` jobs: its cost per job.
    fn per_job(&mut self, jobs: usize) -> f64;
}

/// Wall time.
struct Timer(Instant);

impl Meter for Timer {
    fn start(&mut self) {
        self.0 = Instant::now();
    }

    fn per_job(&mut self, jobs: usize) -> f64 {
        self.0.elapsed().as_secs_f64() * 1e6 / jobs as f64
    }
}

/// WAL frames (one per page written) of the database at a path: each
/// phase starts with the log checkpointed and truncated, and is small
/// enough that no automatic checkpoint runs inside it.
struct WalPages(std::path::PathBuf);

impl WalPages {
    fn frames(&self) -> u64 {
        let mut wal = self.0.as_os_str().to_owned();
        wal.push("-wal");
        let bytes = std::fs::metadata(wal).map_or(0, |m| m.len());
        // A 32-byte header, then a 24-byte header and a 4 KiB page a frame.
        bytes.saturating_sub(32) / (24 + 4096)
    }
}

impl Meter for WalPages {
    fn start(&mut self) {
        let conn = rusqlite::Connection::open(&self.0).expect("open for a checkpoint");
        let busy: i64 = conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
            .expect("checkpoint");
        assert_eq!(busy, 0, "the log was checkpointed and truncated");
        assert_eq!(self.frames(), 0);
    }

    fn per_job(&mut self, jobs: usize) -> f64 {
        self.frames() as f64 / jobs as f64
    }
}

/// Jobs of the page count (few enough that a phase never reaches the
/// automatic checkpoint's 8,192 pages).
const PAGE_JOBS: usize = 256;

/// Cost per job of each phase.
struct Phases {
    submit: f64,
    hand_over: f64,
    finish: f64,
}

impl Phases {
    fn whole(&self) -> f64 {
        self.submit + self.hand_over + self.finish
    }

    /// Each phase's median over `rounds`.
    fn median<'a>(rounds: impl Iterator<Item = &'a Phases>) -> Phases {
        let rounds: Vec<&Phases> = rounds.collect();
        let of = |pick: fn(&Phases) -> f64| {
            let mut values: Vec<f64> = rounds.iter().map(|p| pick(p)).collect();
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        Phases {
            submit: of(|p| p.submit),
            hand_over: of(|p| p.hand_over),
            finish: of(|p| p.finish),
        }
    }
}

/// The request and the priced estimate a job row carries, about the size
/// the gate stores.
const REQUEST_JSON: &str = r#"{"request_id":"cost-0000","model":"z-image","product":"image","prompt":"a benchmark","units":{},"input_image_urls":[],"count":null}"#;

fn estimate_json() -> String {
    format!(
        r#"{{"model":"z-image","product":"image","price_version":"2026-02-02-v1","micros":20000000,"breakdown":[{{"item":"base","micros":20000000}}],"pad":"{}"}}"#,
        "x".repeat(320)
    )
}

/// Bare rusqlite doing a job's irreducible writes, submits `group` per
/// transaction, worker phases `WORKER_BATCH` per transaction.
fn reference(dir: &std::path::Path, group: usize, jobs: usize, meter: &mut dyn Meter) -> Phases {
    let conn = rusqlite::Connection::open(dir.join(format!("reference-{group}.db"))).expect("open");
    // The gate's pragmas (core/src/store.rs), fsync off as for the gate.
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))
        .expect("wal");
    conn.pragma_update(None, "synchronous", "NORMAL")
        .expect("sync");
    conn.pragma_update(None, "cache_size", -8 * 1024)
        .expect("cache");
    conn.pragma_update(None, "foreign_keys", true).expect("fk");
    conn.pragma_update(None, "temp_store", "MEMORY")
        .expect("temp");
    conn.pragma_update(None, "wal_autocheckpoint", 8_192)
        .expect("checkpoint");
    conn.set_prepared_statement_cache_capacity(256);
    conn.execute_batch(
        "CREATE TABLE ledger_accounts (
             id INTEGER PRIMARY KEY,
             credits_posted INTEGER NOT NULL, debits_posted INTEGER NOT NULL,
             debits_pending INTEGER NOT NULL, credits_pending INTEGER NOT NULL);
         CREATE TABLE transfers (
             seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
             debit INTEGER NOT NULL, credit INTEGER NOT NULL, amount INTEGER NOT NULL,
             pending_id TEXT, created_at INTEGER NOT NULL);
         CREATE TABLE jobs (
             id TEXT PRIMARY KEY, account_id TEXT NOT NULL, request_id TEXT NOT NULL,
             request TEXT NOT NULL, estimate TEXT NOT NULL, status TEXT NOT NULL,
             task_id TEXT, outputs TEXT, created_at INTEGER NOT NULL,
             UNIQUE (account_id, request_id));
         CREATE TABLE usage_events (
             id TEXT PRIMARY KEY, job_id TEXT NOT NULL, micros INTEGER NOT NULL);
         INSERT INTO ledger_accounts VALUES (1, 1000000000000000, 0, 0, 0), (2, 0, 0, 0, 0);",
    )
    .expect("schema");
    let estimate = estimate_json();
    let amount: i64 = 20_000_000;
    let in_batches = |size: usize, mut each: Box<dyn FnMut(usize) + '_>| {
        let mut i = 0;
        while i < jobs {
            conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
            for k in i..(i + size).min(jobs) {
                each(k);
            }
            conn.execute_batch("COMMIT").expect("commit");
            i += size;
        }
    };

    meter.start();
    in_batches(
        group,
        Box::new(|i| {
            let (job, request_id) = (format!("job_{i:012}"), format!("cost-{i}"));
            let known: Option<String> = conn
                .prepare_cached("SELECT id FROM jobs WHERE account_id = 'a' AND request_id = ?1")
                .expect("prepare")
                .query_row([&request_id], |row| row.get(0))
                .ok();
            assert!(known.is_none());
            conn.prepare_cached(
                "INSERT INTO jobs (id, account_id, request_id, request, estimate, status, created_at)
                 VALUES (?1, 'a', ?2, ?3, ?4, 'pending', ?5)",
            )
            .expect("prepare")
            .execute(rusqlite::params![job, request_id, REQUEST_JSON, estimate, i as i64])
            .expect("job");
            conn.prepare_cached(
                "INSERT INTO transfers (id, kind, debit, credit, amount, created_at)
                 VALUES (?1, 'hold', 1, 2, ?2, ?3)",
            )
            .expect("prepare")
            .execute(rusqlite::params![format!("hold:{job}"), amount, i as i64])
            .expect("hold");
            let debited = conn
                .prepare_cached(
                    "UPDATE ledger_accounts SET debits_pending = debits_pending + ?1
                      WHERE id = 1 AND credits_posted - debits_posted - debits_pending >= ?1",
                )
                .expect("prepare")
                .execute([amount])
                .expect("debit");
            assert_eq!(debited, 1);
        }),
    );
    let submit = meter.per_job(jobs);

    meter.start();
    in_batches(
        WORKER_BATCH,
        Box::new(|i| {
            conn.prepare_cached("UPDATE jobs SET status = 'running', task_id = ?2 WHERE id = ?1")
                .expect("prepare")
                .execute(rusqlite::params![
                    format!("job_{i:012}"),
                    format!("task-{i}")
                ])
                .expect("running");
        }),
    );
    let hand_over = meter.per_job(jobs);

    let outputs =
        r#"[{"url":"http://127.0.0.1:8080/v1/files/job/token/0/output.png","mime":"image/png"}]"#;
    meter.start();
    in_batches(
        WORKER_BATCH,
        Box::new(|i| {
            let job = format!("job_{i:012}");
            conn.prepare_cached("UPDATE jobs SET status = 'succeeded', outputs = ?2 WHERE id = ?1")
                .expect("prepare")
                .execute(rusqlite::params![job, outputs])
                .expect("succeeded");
            conn.prepare_cached(
                "INSERT INTO transfers (id, kind, debit, credit, amount, pending_id, created_at)
                 VALUES (?1, 'capture', 1, 2, ?2, ?3, ?4)",
            )
            .expect("prepare")
            .execute(rusqlite::params![
                format!("capture:{job}"),
                amount,
                format!("hold:{job}"),
                i as i64
            ])
            .expect("capture");
            conn.prepare_cached(
                "UPDATE ledger_accounts SET debits_pending = debits_pending - ?1,
                        debits_posted = debits_posted + ?1 WHERE id = 1",
            )
            .expect("prepare")
            .execute([amount])
            .expect("wallet");
            conn.prepare_cached(
                "UPDATE ledger_accounts SET credits_posted = credits_posted + ?1 WHERE id = 2",
            )
            .expect("prepare")
            .execute([amount])
            .expect("revenue");
            conn.prepare_cached(
                "INSERT INTO usage_events (id, job_id, micros) VALUES (?1, ?2, ?3)",
            )
            .expect("prepare")
            .execute(rusqlite::params![format!("use_{i:012}"), job, amount])
            .expect("usage");
        }),
    );
    let finish = meter.per_job(jobs);
    Phases {
        submit,
        hand_over,
        finish,
    }
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

/// A fresh gate with the Rynjer catalog and a funded account.
fn fresh_gate(dir: &std::path::Path, name: &str) -> (Gate, Arc<ManualClock>, String) {
    let mut options = StoreOptions::new(dir.join(name));
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
    (gate, clock, account.id)
}

fn submit_body(i: usize) -> serde_json::Value {
    json!({"request_id": format!("cost-{i}"), "model": "z-image", "prompt": "a benchmark"})
}

/// The gate's phases: submits from `threads` threads at once (1: one
/// write each; 32: group-committed by the writer), then the worker.
fn gate_phases(
    dir: &std::path::Path,
    threads: usize,
    jobs: usize,
    meter: &mut dyn Meter,
) -> (Phases, f64) {
    let (gate, clock, account) = fresh_gate(dir, &format!("gate-{threads}.db"));
    let gate = Arc::new(gate);
    meter.start();
    if threads == 1 {
        for i in 0..jobs {
            gate.submit(&account, &submit_body(i)).expect("submit");
        }
    } else {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (gate, account) = (gate.clone(), account.clone());
                std::thread::spawn(move || {
                    for i in (t..jobs).step_by(threads) {
                        gate.submit(&account, &submit_body(i)).expect("submit");
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("submitter");
        }
    }
    let submit = meter.per_job(jobs);

    meter.start();
    assert_eq!(drain(&gate), jobs, "every job handed to the provider");
    let hand_over = meter.per_job(jobs);

    meter.start();
    let mut polls = 0;
    for _ in 0..POLL_ROUNDS_MAX {
        clock.advance(Duration::from_secs(15));
        polls += drain(&gate);
        if succeeded(&gate) == jobs {
            break;
        }
    }
    let finish = meter.per_job(jobs);
    assert_eq!(succeeded(&gate), jobs, "every job succeeded");
    let report = gate.verify_ledger().expect("verify");
    assert!(report.is_ok(), "ledger verifies: {report:?}");
    (
        Phases {
            submit,
            hand_over,
            finish,
        },
        polls as f64 / jobs as f64,
    )
}

fn print_mode(title: &str, gate: &Phases, reference: &Phases, polls: f64, whole_target: f64) {
    println!("{title}");
    println!(
        "  {:<44} {:>9} {:>11} {:>7}",
        "phase", "gate us", "reference", "ratio"
    );
    for (name, ours, theirs) in [
        ("submit", gate.submit, reference.submit),
        (
            "hand over (claim, submit, record running)",
            gate.hand_over,
            reference.hand_over,
        ),
        (
            "polls to the end (the last captures)",
            gate.finish,
            reference.finish,
        ),
        ("whole life", gate.whole(), reference.whole()),
    ] {
        println!(
            "  {name:<44} {ours:>9.1} {theirs:>11.1} {:>6.1}x",
            ours / theirs
        );
    }
    println!(
        "  ({polls:.1} worker polls per job; targets: every phase <= 3x, whole life <= {whole_target}x)"
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    // `JOB_COST_ONLY=pages`: the exact page counts alone (256 jobs each),
    // also the run to count instructions in under callgrind (BENCHMARKS.md).
    if std::env::var("JOB_COST_ONLY").as_deref() == Ok("pages") {
        print_pages();
        return;
    }
    // Interleaved rounds (so a noisy neighbour hits every measurement
    // alike), each phase's median reported.
    let mut rounds = Vec::with_capacity(ROUNDS);
    let (mut polls_one, mut polls_grouped) = (0.0, 0.0);
    for round in 0..ROUNDS {
        let dir = tempfile::tempdir().expect("tempdir");
        let timer = &mut Timer(Instant::now());
        let one_by_one = reference(dir.path(), 1, JOBS, timer);
        let grouped = reference(dir.path(), WORKER_BATCH, JOBS, timer);
        let (gate_one, polls) = gate_phases(dir.path(), 1, JOBS, timer);
        polls_one = polls;
        let (gate_grouped, polls) = gate_phases(dir.path(), WORKER_BATCH, JOBS, timer);
        polls_grouped = polls;
        eprintln!(
            "round {round}: whole life {:.1}/{:.1} us, grouped {:.1}/{:.1} us",
            gate_one.whole(),
            one_by_one.whole(),
            gate_grouped.whole(),
            grouped.whole()
        );
        rounds.push([one_by_one, grouped, gate_one, gate_grouped]);
    }
    let median = |which: usize| Phases::median(rounds.iter().map(|r| &r[which]));
    let (one_by_one, grouped, gate_one, gate_grouped) =
        (median(0), median(1), median(2), median(3));
    println!(
        "writer cost per job, {JOBS} jobs, synchronous=NORMAL, no HTTP, median of {ROUNDS} rounds"
    );
    print_mode(
        "mode 1: one submit per transaction (one thread)",
        &gate_one,
        &one_by_one,
        polls_one,
        2.5,
    );
    print_mode(
        "mode 2: submits group-committed 32 at a time (32 threads at the gate)",
        &gate_grouped,
        &grouped,
        polls_grouped,
        3.0,
    );
    print_pages();
}

/// The same phases counted in pages written to the log, one submit per
/// transaction: exact, so a change of one page shows in every run.
fn print_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let theirs = reference(
        dir.path(),
        1,
        PAGE_JOBS,
        &mut WalPages(dir.path().join("reference-1.db")),
    );
    let (ours, _) = gate_phases(
        dir.path(),
        1,
        PAGE_JOBS,
        &mut WalPages(dir.path().join("gate-1.db")),
    );
    println!("pages written to the log per job ({PAGE_JOBS} jobs, one submit per transaction)");
    println!("  {:<44} {:>9} {:>11}", "phase", "gate", "reference");
    for (name, ours, theirs) in [
        ("submit", ours.submit, theirs.submit),
        ("hand over", ours.hand_over, theirs.hand_over),
        ("polls to the end", ours.finish, theirs.finish),
        ("whole life", ours.whole(), theirs.whole()),
    ] {
        println!("  {name:<44} {ours:>9.2} {theirs:>11.2}");
    }
}
