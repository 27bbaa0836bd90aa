//! Running jobs are polled from a schedule in memory (issue 16): a poll
//! that answers "still running" writes nothing (neither the job row nor
//! anything else: the WAL does not grow), the polls counted meanwhile are
//! written with the job's next change, and a restart rebuilds the schedule
//! from the stored rows, so no running job is forgotten. (An upstream's
//! notice making a running job due at once is in `provider_seam.rs`.)
//! `ledger verify` passes after each.

mod common;

use std::time::Duration;

use common::RYNJER;
use creditgate::JobStatus;
use rust_decimal::Decimal;
use serde_json::json;

/// Bytes in the database's write-ahead log.
fn wal_bytes(path: &std::path::Path) -> u64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
}

/// The job's stored poll count and last update, read past the gate.
fn stored(path: &std::path::Path, job_id: &str) -> (i64, i64, String) {
    let conn = rusqlite::Connection::open(path).expect("raw");
    conn.query_row(
        "SELECT polls, updated_at, status FROM jobs WHERE id = ?1",
        [job_id],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )
    .expect("row")
}

fn step(fx: &common::Fixture) -> creditgate::WorkReport {
    fx.clock.advance(Duration::from_secs(20));
    fx.gate.run_due_work(32).expect("step")
}

#[test]
fn a_poll_that_answers_still_running_writes_nothing_and_its_count_is_written_at_the_end() {
    let fx = common::open(common::Setup {
        catalog: Some(RYNJER),
        ..common::Setup::default()
    });
    let account = common::account(&fx.gate, "agent", Decimal::from(100));
    // "[slow]" jobs answer "still running" to five polls, then succeed.
    let body = json!({"request_id": "slow", "model": "z-image", "prompt": "a [slow] one"});
    let job = fx.gate.submit(&account, &body).expect("submit").job;
    assert_eq!(step(&fx).submitted, 1);
    let (polls, running_since, status) = stored(&fx.path, &job.id);
    assert_eq!((polls, status.as_str()), (0, "running"));

    for poll in 1..=5 {
        let wal_before = wal_bytes(&fx.path);
        let report = step(&fx);
        assert_eq!((report.polled, report.succeeded), (1, 0), "poll {poll}");
        assert_eq!(
            wal_bytes(&fx.path),
            wal_before,
            "poll {poll} answered still running: nothing was written"
        );
        assert_eq!(
            stored(&fx.path, &job.id),
            (0, running_since, "running".to_owned()),
            "the row is untouched"
        );
        let seen = fx.gate.job(&job.id).expect("job");
        assert_eq!(
            seen.polls, poll,
            "the gate counts the polls not yet written"
        );
        assert!(report.next_due.is_some(), "the next poll is due");
    }

    let report = step(&fx);
    assert_eq!(report.succeeded, 1);
    let (polls, _, status) = stored(&fx.path, &job.id);
    assert_eq!(
        (polls, status.as_str()),
        (5, "succeeded"),
        "the polls are written with the success"
    );
    assert_eq!(fx.gate.job(&job.id).expect("job").polls, 5);
    assert_eq!(step(&fx).polled, 0, "a finished job leaves the schedule");
    assert!(fx.gate.verify_ledger().expect("verify").is_ok());
}

#[test]
fn a_restart_rebuilds_the_schedule_and_every_running_job_finishes() {
    let fx = common::open(common::Setup {
        catalog: Some(RYNJER),
        ..common::Setup::default()
    });
    let account = common::account(&fx.gate, "agent", Decimal::from(1_000));
    let mut ids = Vec::new();
    for i in 0..10 {
        let body =
            json!({"request_id": format!("r{i}"), "model": "z-image", "prompt": "a [slow] one"});
        ids.push(fx.gate.submit(&account, &body).expect("submit").job.id);
    }
    assert_eq!(step(&fx).submitted, 10);
    assert_eq!(step(&fx).polled, 10);
    assert_eq!(step(&fx).polled, 10);

    // The process stops: the polls not written are lost, the jobs are not.
    let fx = fx.reopen();
    fx.gate.recover().expect("recover");
    let mut succeeded = 0;
    for _ in 0..10 {
        succeeded += step(&fx).succeeded;
    }
    assert_eq!(succeeded, 10, "every running job was polled to its end");
    for id in &ids {
        let job = fx.gate.job(id).expect("job");
        assert_eq!(job.status, JobStatus::Succeeded);
        assert_eq!(job.polls, 5, "five polls after the restart");
    }
    assert!(fx.gate.verify_ledger().expect("verify").is_ok());
}
