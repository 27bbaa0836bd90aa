//! Waiting for a job (for synchronous surfaces): a waiter wakes when the
//! worker records the job's end or its owner cancels it, not by polling;
//! a live job is answered as it is when the wait runs out; waiters are
//! bounded.

mod common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::RYNJER;
use creditgate::{Error, JobStatus, Synchronous, Waited, JOB_WAITERS_MAX};
use rust_decimal::Decimal;
use serde_json::json;

struct Fx {
    _dir: tempfile::TempDir,
    gate: Arc<creditgate::Gate>,
    clock: Arc<creditgate::ManualClock>,
    account: String,
}

fn fx() -> Fx {
    let common::Fixture {
        dir, clock, gate, ..
    } = common::open(common::Setup {
        synchronous: Synchronous::Normal,
        catalog: Some(RYNJER),
        ..common::Setup::default()
    });
    let account = common::account(&gate, "agent", Decimal::from(1_000));
    Fx {
        _dir: dir,
        gate: Arc::new(gate),
        clock,
        account,
    }
}

impl Fx {
    fn submit(&self, request_id: &str, prompt: &str) -> creditgate::Job {
        self.gate
            .submit(
                &self.account,
                &json!({"request_id": request_id, "model": "z-image", "prompt": prompt}),
            )
            .expect("submit")
            .job
    }

    /// Steps the worker until `request_id` is finished (fixture: a poll or
    /// two), moving the manual clock.
    fn run_to_end(&self, request_id: &str) {
        for _ in 0..20 {
            self.clock.advance(Duration::from_secs(2));
            self.gate.run_due_work(16).expect("step");
            let job = self.gate.job_for(&self.account, request_id).expect("job");
            if job.status.is_terminal() {
                return;
            }
        }
        panic!("{request_id} never finished");
    }
}

#[test]
fn a_finished_job_is_answered_at_once_and_a_live_one_as_it_is_when_the_wait_runs_out() {
    let fx = fx();
    fx.submit("done", "a cat");
    fx.run_to_end("done");
    let started = Instant::now();
    match fx
        .gate
        .wait_for_job(&fx.account, "done", Duration::from_secs(30))
        .expect("wait")
    {
        Waited::Finished(job) => assert_eq!(job.status, JobStatus::Succeeded),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(1), "no waiting");

    fx.submit("live", "[hang] a cat");
    let waited = fx
        .gate
        .wait_for_job(&fx.account, "live", Duration::from_millis(50))
        .expect("wait");
    assert!(matches!(waited, Waited::StillRunning(job) if job.status == JobStatus::Pending));
    let other = common::account(&fx.gate, "other", Decimal::from(1));
    assert_eq!(
        common::code(
            fx.gate
                .wait_for_job(&other, "live", Duration::from_millis(10))
        ),
        "not_found"
    );
}

#[test]
fn a_waiter_wakes_when_the_worker_records_the_end() {
    let fx = fx();
    fx.submit("r", "a cat");
    let gate = fx.gate.clone();
    let account = fx.account.clone();
    let waiter = std::thread::spawn(move || {
        let started = Instant::now();
        let waited = gate.wait_for_job(&account, "r", Duration::from_secs(30));
        (waited, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(50));
    fx.run_to_end("r");
    let (waited, took) = waiter.join().expect("waiter");
    match waited.expect("wait") {
        Waited::Finished(job) => assert_eq!(job.status, JobStatus::Succeeded),
        other => panic!("{other:?}"),
    }
    assert!(
        took < Duration::from_secs(10),
        "woken by the record, not by the 30 s bound: {took:?}"
    );
}

#[test]
fn waiters_are_bounded_and_a_cancel_wakes_them_all() {
    let fx = fx();
    fx.submit("r", "[hang] a cat");
    let ready = Arc::new(Barrier::new(JOB_WAITERS_MAX + 1));
    let waiters: Vec<_> = (0..JOB_WAITERS_MAX)
        .map(|_| {
            let (gate, account, ready) = (fx.gate.clone(), fx.account.clone(), ready.clone());
            std::thread::spawn(move || {
                ready.wait();
                gate.wait_for_job(&account, "r", Duration::from_secs(30))
            })
        })
        .collect();
    ready.wait();
    // Every slot taken: wait for the count rather than probing, since a
    // probe holds a slot for its own short wait and could turn a late
    // waiter away (the race that once failed this test on a slow machine).
    let deadline = Instant::now() + Duration::from_secs(30);
    while fx.gate.job_waiters() < JOB_WAITERS_MAX {
        assert!(Instant::now() < deadline, "the waiters never all waited");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(fx.gate.job_waiters(), JOB_WAITERS_MAX);
    assert!(
        matches!(
            fx.gate
                .wait_for_job(&fx.account, "r", Duration::from_millis(1)),
            Err(Error::ServerBusy)
        ),
        "the waiters are not bounded"
    );
    let started = Instant::now();
    fx.gate.cancel(&fx.account, "r").expect("cancel");
    for waiter in waiters {
        match waiter.join().expect("waiter").expect("wait") {
            Waited::Finished(job) => assert_eq!(job.status, JobStatus::Canceled),
            other => panic!("{other:?}"),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    // Their slots are free again.
    assert_eq!(fx.gate.job_waiters(), 0);
    assert!(fx
        .gate
        .wait_for_job(&fx.account, "r", Duration::from_millis(1))
        .is_ok());
    common::assert_verified(&fx.gate);
}
