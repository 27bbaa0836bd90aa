//! The worker fails per job, never per batch, and never dies (issue 11
//! section 2), and a full disk is its own error that the store recovers
//! from (section 8): a job whose stored data does not decode fails alone;
//! a storage error recording one answer leaves that job and commits the
//! others, and a submission's answer is never lost nor asked for twice;
//! provider answers are validated; a panicking provider fails its job
//! alone; worker health says when steps keep failing; cancel reads the
//! status inside its write. `ledger verify` passes after each.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::RYNJER;
use creditgate::jobs::Output;
use creditgate::providers::fixture::{FixtureProvider, Scenarios};
use creditgate::providers::{
    Artifact, Completion, PollStatus, Provider, ProviderError, ProviderJob, ProviderRegistry,
    Submission,
};
use creditgate::{Error, Gate, JobStatus, ManualClock, Synchronous};
use rust_decimal::Decimal;
use serde_json::json;

/// z-image costs 20 credits.
const JOB_MICROS: i64 = 20_000_000;

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    gate: Arc<Gate>,
    clock: Arc<ManualClock>,
    account: String,
}

fn fixture(provider: Option<Arc<dyn Provider>>) -> Fixture {
    let common::Fixture {
        dir,
        path,
        clock,
        mut gate,
        ..
    } = common::open(common::Setup {
        synchronous: Synchronous::Normal,
        catalog: Some(RYNJER),
        ..common::Setup::default()
    });
    if let Some(provider) = provider {
        let mut registry = ProviderRegistry::new();
        registry.insert("fixture", provider);
        gate = gate.with_providers(registry);
    }
    let account = common::account(&gate, "agent", Decimal::from(1_000));
    Fixture {
        _dir: dir,
        path,
        gate: Arc::new(gate),
        clock,
        account,
    }
}

impl Fixture {
    fn submit(&self, request_id: &str, prompt: &str) -> creditgate::Job {
        self.gate
            .submit(
                &self.account,
                &json!({"request_id": request_id, "model": "z-image", "prompt": prompt}),
            )
            .expect("submit")
            .job
    }

    fn status(&self, request_id: &str) -> JobStatus {
        self.gate
            .job_for(&self.account, request_id)
            .expect("job")
            .status
    }

    fn raw(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(&self.path).expect("raw connection")
    }

    /// Puts back the index `[drop-index]` dropped: storage works again.
    fn restore_due_index(&self) {
        self.gate
            .store_for_tests()
            .write(|tx| {
                Ok(tx.execute_batch(
                    "CREATE INDEX jobs_due ON jobs (next_run_at) WHERE status = 'pending'",
                )?)
            })
            .expect("restore the index");
    }

    /// Runs `n` worker steps, each one simulated second after the last.
    fn steps(&self, n: usize) {
        for _ in 0..n {
            self.clock.advance(Duration::from_secs(1));
            self.gate.run_due_work(64).expect("step");
        }
    }

    fn pending_micros(&self) -> i64 {
        self.gate.balance(&self.account).expect("balance").pending
    }

    fn assert_verified(&self) {
        common::assert_verified(&self.gate);
    }
}

/// The fixture provider, counting submissions per job, with behaviours
/// chosen by prompt markers: `[panic]` panics on submit, `[bad:...]`
/// answers something invalid, `[drop-index]` breaks the next write,
/// `[owner-cancels]` has the job's owner cancel it while it is submitted,
/// `[stateful]` accepts it with a provider state (as fal's queue URLs).
#[derive(Debug)]
struct Scripted {
    inner: FixtureProvider,
    submits: Mutex<HashMap<String, usize>>,
    /// The task ids the provider was asked to cancel.
    cancels: Mutex<Vec<Option<String>>>,
    gate: Mutex<Option<std::sync::Weak<Gate>>>,
    /// The account `[owner-cancels]` cancels as.
    owner: Mutex<Option<String>>,
    /// The provider state each cancel was given.
    cancel_states: Mutex<Vec<Option<serde_json::Value>>>,
}

impl Scripted {
    fn new() -> Arc<Scripted> {
        Arc::new(Scripted {
            inner: FixtureProvider::new(Scenarios::shipped()),
            submits: Mutex::new(HashMap::new()),
            cancels: Mutex::new(Vec::new()),
            gate: Mutex::new(None),
            owner: Mutex::new(None),
            cancel_states: Mutex::new(Vec::new()),
        })
    }

    fn submits(&self, job_id: &str) -> usize {
        self.submits
            .lock()
            .expect("lock")
            .get(job_id)
            .copied()
            .unwrap_or(0)
    }
}

/// The provider state `[stateful]` accepts a job with.
fn stateful_state(job_id: &str) -> serde_json::Value {
    json!({"cancel_url": format!("https://upstream.example/requests/{job_id}/cancel")})
}

fn output(url: String, mime: &str) -> Artifact {
    Artifact::Hosted(Output {
        url,
        mime: mime.to_owned(),
        file: None,
    })
}

fn completed(task_id: &str, artifacts: Vec<Artifact>) -> Submission {
    Submission::Completed {
        task_id: task_id.to_owned(),
        completion: Completion::of(artifacts),
    }
}

impl Provider for Scripted {
    fn submit(&self, job: &ProviderJob<'_>) -> Result<Submission, ProviderError> {
        *self
            .submits
            .lock()
            .expect("lock")
            .entry(job.job_id.to_owned())
            .or_default() += 1;
        let prompt = job.prompt.unwrap_or("");
        let good = || output("https://cdn.example/x.png".into(), "image/png");
        if prompt.contains("[panic]") {
            panic!("provider bug on {}", job.job_id);
        }
        if prompt.contains("[drop-index]") {
            let gate = self.gate.lock().expect("lock").clone();
            let gate = gate.and_then(|g| g.upgrade()).expect("gate");
            gate.store_for_tests()
                .write(|tx| Ok(tx.execute_batch("DROP INDEX jobs_due")?))
                .expect("drop index");
        }
        if prompt.contains("[owner-cancels]") {
            let gate = self.gate.lock().expect("lock").clone();
            let gate = gate.and_then(|g| g.upgrade()).expect("gate");
            let owner = self.owner.lock().expect("lock").clone().expect("owner");
            gate.cancel(&owner, job.job_id).expect("cancel");
        }
        if prompt.contains("[stateful]") {
            return Ok(Submission::Accepted {
                task_id: format!("st_{}", job.job_id),
                state: Some(stateful_state(job.job_id)),
            });
        }
        match prompt {
            "[bad:empty-task-id]" => Ok(Submission::Accepted {
                task_id: "  ".into(),
                state: None,
            }),
            "[bad:long-task-id]" => Ok(Submission::Accepted {
                task_id: "t".repeat(10_000),
                state: None,
            }),
            "[bad:no-outputs]" => Ok(completed("t1", vec![])),
            "[bad:too-many-outputs]" => Ok(completed("t2", (0..17).map(|_| good()).collect())),
            "[bad:long-url]" => Ok(completed(
                "t3",
                vec![output(
                    format!("https://cdn.example/{}", "u".repeat(5_000)),
                    "image/png",
                )],
            )),
            "[bad:empty-mime]" => Ok(completed(
                "t4",
                vec![output("https://cdn.example/x".into(), "")],
            )),
            _ => self.inner.submit(job),
        }
    }

    fn poll(&self, job: &ProviderJob<'_>) -> Result<PollStatus, ProviderError> {
        self.inner.poll(job)
    }

    fn cancel(&self, job: &ProviderJob<'_>) -> Result<(), ProviderError> {
        self.cancels
            .lock()
            .expect("lock")
            .push(job.provider_task_id.map(str::to_owned));
        self.cancel_states
            .lock()
            .expect("lock")
            .push(job.provider_state.cloned());
        self.inner.cancel(job)
    }

    fn idempotent_submit(&self) -> bool {
        // As strict as a real upstream without idempotency keys: a
        // submission asked twice would be a second task.
        false
    }
}

#[test]
fn a_job_whose_stored_request_does_not_decode_fails_alone() {
    let fx = fixture(None);
    let (a, b, c) = (
        fx.submit("a", "x"),
        fx.submit("b", "x"),
        fx.submit("c", "x"),
    );
    fx.raw()
        .execute(
            "UPDATE jobs SET request = '{not json' WHERE id = ?1",
            [&b.id],
        )
        .expect("corrupt b");

    let report = fx.gate.run_due_work(64).expect("the step goes on");
    assert_eq!(fx.status("a"), JobStatus::Running, "{report:?}");
    assert_eq!(fx.status("c"), JobStatus::Running, "{report:?}");
    let failed = fx.gate.job(&b.id).expect("b");
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(failed.error_code.as_deref(), Some("internal"));
    assert_eq!(fx.pending_micros(), 2 * JOB_MICROS, "b's hold was released");
    assert_eq!(report.faults.len(), 1, "{report:?}");
    assert_eq!(report.faults[0].job_id, b.id);
    assert!(report.faults[0].detail.contains("does not decode"));
    assert!(a.id != c.id);
    fx.assert_verified();
}

#[test]
fn a_job_whose_row_does_not_decode_fails_alone_and_never_stalls_the_worker() {
    let fx = fixture(None);
    fx.submit("a", "x");
    let b = fx.submit("b", "x");
    fx.submit("c", "x");
    fx.raw()
        .execute("UPDATE jobs SET outputs = 'garbage' WHERE id = ?1", [&b.id])
        .expect("corrupt b's row");

    let report = fx.gate.run_due_work(64).expect("the step goes on");
    assert_eq!(
        (fx.status("a"), fx.status("c")),
        (JobStatus::Running, JobStatus::Running),
        "{report:?}"
    );
    let failed = fx.gate.job(&b.id).expect("b reads again");
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(failed.error_code.as_deref(), Some("internal"));
    assert_eq!(fx.pending_micros(), 2 * JOB_MICROS, "b's hold was released");
    assert_eq!(report.faults.len(), 1, "{report:?}");
    // The worker keeps working: the others finish.
    fx.steps(30);
    assert_eq!(fx.status("a"), JobStatus::Succeeded);
    fx.assert_verified();
}

#[test]
fn a_storage_error_recording_one_answer_leaves_that_job_and_commits_the_others() {
    let provider = Scripted::new();
    let fx = fixture(Some(provider.clone()));
    let a = fx.submit("a", "x");
    let b = fx.submit("b", "x");
    let c = fx.submit("c", "x");
    // Recording b's answer fails in SQLite (as an I/O error would).
    fx.raw()
        .execute_batch(&format!(
            "CREATE TRIGGER refuse_b BEFORE UPDATE OF status ON jobs WHEN OLD.id = '{}'
             BEGIN SELECT RAISE(ABORT, 'simulated storage failure'); END;",
            b.id
        ))
        .expect("trigger");

    let report = fx.gate.run_due_work(64).expect("the other answers commit");
    assert_eq!((report.submitted, report.left), (3, 1), "{report:?}");
    assert_eq!(
        (fx.status("a"), fx.status("b"), fx.status("c")),
        (JobStatus::Running, JobStatus::Pending, JobStatus::Running)
    );
    assert_eq!(report.faults.len(), 1);
    assert_eq!(report.faults[0].job_id, b.id);

    fx.raw()
        .execute_batch("DROP TRIGGER refuse_b")
        .expect("storage is back");
    fx.steps(1);
    let b_now = fx.gate.job(&b.id).expect("b");
    assert_eq!(b_now.status, JobStatus::Running, "b's kept answer recorded");
    assert_eq!(b_now.provider_task_id, Some(format!("fx_{}", b.id)));
    assert_eq!(
        [
            provider.submits(&a.id),
            provider.submits(&b.id),
            provider.submits(&c.id)
        ],
        [1, 1, 1],
        "an accepted submission is never asked for twice"
    );
    fx.steps(30);
    assert_eq!(fx.status("b"), JobStatus::Succeeded);
    fx.assert_verified();
}

#[test]
fn an_accepted_answer_is_kept_when_the_whole_record_write_fails() {
    let provider = Scripted::new();
    let fx = fixture(Some(provider.clone()));
    *provider.gate.lock().expect("lock") = Some(Arc::downgrade(&fx.gate));
    let a = fx.submit("a", "x");
    let b = fx.submit("b", "[drop-index] x");

    // The record write needs the dropped index: it fails as a whole.
    let err = fx
        .gate
        .run_due_work(64)
        .expect_err("the record write fails");
    assert_eq!(err.code(), "storage_error", "{err}");
    assert_eq!(
        (fx.status("a"), fx.status("b")),
        (JobStatus::Pending, JobStatus::Pending)
    );

    fx.restore_due_index();
    // Past the lease of the failed step (derived from the providers' call
    // timeouts).
    fx.clock
        .advance(Duration::from_millis(fx.gate.lease_ms() as u64 + 1_000));
    fx.gate.run_due_work(64).expect("step");
    for job in [&a, &b] {
        let now = fx.gate.job(&job.id).expect("job");
        assert_eq!(
            now.status,
            JobStatus::Running,
            "{} recorded from memory",
            job.id
        );
        assert_eq!(now.provider_task_id, Some(format!("fx_{}", job.id)));
        assert_eq!(provider.submits(&job.id), 1, "never submitted twice");
    }
    fx.assert_verified();
}

#[test]
fn a_kept_answer_of_a_job_canceled_meanwhile_cancels_its_upstream_task() {
    let provider = Scripted::new();
    let fx = fixture(Some(provider.clone()));
    *provider.gate.lock().expect("lock") = Some(Arc::downgrade(&fx.gate));
    let a = fx.submit("a", "[drop-index] x");
    fx.gate
        .run_due_work(64)
        .expect_err("the record write fails");
    fx.restore_due_index();
    // Its owner cancels it while the upstream's answer is only in memory.
    assert_eq!(
        fx.gate.cancel(&fx.account, "a").expect("cancel").status,
        JobStatus::Canceled
    );
    fx.steps(1);
    assert_eq!(
        provider.cancels.lock().expect("lock").clone(),
        [Some(format!("fx_{}", a.id))],
        "the upstream task nobody will collect is canceled"
    );
    assert_eq!(fx.status("a"), JobStatus::Canceled);
    assert_eq!(provider.submits(&a.id), 1);
    fx.assert_verified();
}

#[test]
fn a_kept_answer_of_a_job_canceled_meanwhile_is_canceled_with_its_provider_state() {
    let provider = Scripted::new();
    let fx = fixture(Some(provider.clone()));
    *provider.gate.lock().expect("lock") = Some(Arc::downgrade(&fx.gate));
    let a = fx.submit("a", "[drop-index] [stateful] x");
    fx.gate
        .run_due_work(64)
        .expect_err("the record write fails");
    fx.restore_due_index();
    fx.gate.cancel(&fx.account, "a").expect("cancel");
    fx.steps(1);
    // fal, say, cancels by the URL its submission answered: the cancel
    // needs the state the answer kept in memory carried.
    assert_eq!(
        provider.cancels.lock().expect("lock").clone(),
        [Some(format!("st_{}", a.id))]
    );
    assert_eq!(
        provider.cancel_states.lock().expect("lock").clone(),
        [Some(stateful_state(&a.id))]
    );
    assert_eq!(provider.submits(&a.id), 1);
    fx.assert_verified();
}

#[test]
fn a_job_canceled_while_its_submission_is_in_flight_cancels_the_accepted_task() {
    let provider = Scripted::new();
    let fx = fixture(Some(provider.clone()));
    *provider.gate.lock().expect("lock") = Some(Arc::downgrade(&fx.gate));
    *provider.owner.lock().expect("lock") = Some(fx.account.clone());
    let a = fx.submit("a", "[owner-cancels] [stateful] x");
    // The submission is accepted after its owner canceled the job: the
    // answer is superseded, and the task nobody will collect is canceled,
    // with the state the provider needs for it.
    fx.steps(2);
    assert_eq!(fx.status("a"), JobStatus::Canceled);
    assert_eq!(
        provider.cancels.lock().expect("lock").clone(),
        [Some(format!("st_{}", a.id))]
    );
    assert_eq!(
        provider.cancel_states.lock().expect("lock").clone(),
        [Some(stateful_state(&a.id))]
    );
    assert_eq!(provider.submits(&a.id), 1);
    assert_eq!(fx.pending_micros(), 0);
    fx.steps(1);
    assert_eq!(provider.cancels.lock().expect("lock").len(), 1, "sent once");
    fx.assert_verified();
}

#[test]
fn provider_answers_are_validated_and_a_bad_one_fails_its_job() {
    let fx = fixture(Some(Scripted::new()));
    let bad = [
        "[bad:empty-task-id]",
        "[bad:long-task-id]",
        "[bad:no-outputs]",
        "[bad:too-many-outputs]",
        "[bad:long-url]",
        "[bad:empty-mime]",
    ];
    for (i, prompt) in bad.iter().enumerate() {
        fx.submit(&format!("bad-{i}"), prompt);
    }
    fx.submit("good", "x");

    let report = fx.gate.run_due_work(64).expect("step");
    assert_eq!(report.faults.len(), bad.len(), "{report:?}");
    for (i, prompt) in bad.iter().enumerate() {
        let job = fx
            .gate
            .job_for(&fx.account, &format!("bad-{i}"))
            .expect("job");
        assert_eq!(job.status, JobStatus::Failed, "{prompt}");
        assert_eq!(
            job.error_code.as_deref(),
            Some("invalid_provider_answer"),
            "{prompt}"
        );
        assert!(job.outputs.is_empty(), "{prompt}");
        assert!(job.provider_task_id.is_none(), "{prompt}");
    }
    assert_eq!(fx.status("good"), JobStatus::Running);
    assert_eq!(
        fx.pending_micros(),
        JOB_MICROS,
        "the bad ones were released"
    );
    fx.assert_verified();
}

#[test]
fn a_panicking_provider_fails_its_job_alone_and_the_worker_goes_on() {
    let fx = fixture(Some(Scripted::new()));
    fx.submit("a", "x");
    let b = fx.submit("b", "[panic] x");
    fx.submit("c", "x");

    let report = fx.gate.run_due_work(64).expect("no panic escapes the step");
    assert_eq!(
        (fx.status("a"), fx.status("b"), fx.status("c")),
        (JobStatus::Running, JobStatus::Failed, JobStatus::Running)
    );
    assert_eq!(report.faults.len(), 1);
    assert_eq!(report.faults[0].job_id, b.id, "the fault names the job");
    assert!(report.faults[0].detail.contains("panicked"));
    assert_eq!(
        fx.gate.job(&b.id).expect("b").error_code.as_deref(),
        Some("internal")
    );
    fx.assert_verified();
}

#[test]
fn worker_health_stops_saying_ok_while_steps_keep_failing_and_says_why() {
    let fx = fixture(None);
    fx.submit("a", "x");
    assert!(fx.gate.worker_health().is_ok());
    fx.gate
        .store_for_tests()
        .write(|tx| Ok(tx.execute_batch("DROP INDEX jobs_due")?))
        .expect("break the worker's query");
    for _ in 0..creditgate::FAILING_STEPS_UNHEALTHY {
        assert!(fx.gate.run_due_work(64).is_err());
    }
    let health = fx.gate.worker_health();
    assert!(!health.is_ok(), "{health:?}");
    let why = health.last_failure.clone().unwrap_or_default();
    assert!(why.contains("jobs_due"), "{why}");
    let err = health.check().expect_err("failing");
    assert_eq!(err.code(), "workers_failing");
    assert!(err.to_string().contains("jobs_due"), "{err}");

    fx.restore_due_index();
    fx.clock.advance(Duration::from_secs(61));
    fx.gate.run_due_work(64).expect("step");
    assert!(fx.gate.worker_health().is_ok());
    assert_eq!(fx.status("a"), JobStatus::Running);
}

#[test]
fn cancel_reads_the_status_inside_its_write() {
    let fx = fixture(None);
    let job = fx.submit("r", "[slow] x");
    let store_queued = |n: u64| {
        let gate = fx.gate.clone();
        move || {
            while gate.write_stats().queued < n {
                std::thread::yield_now();
            }
        }
    };
    // Hold the writer until the job's start and the cancel are queued
    // behind it, so the cancel reads `pending` and then, in its write,
    // finds the job running.
    let wait_for_two = store_queued(2);
    let ops_before = fx.gate.write_stats().ops;
    let blocker = {
        let gate = fx.gate.clone();
        std::thread::spawn(move || {
            gate.store_for_tests().write(move |_| {
                wait_for_two();
                Ok(())
            })
        })
    };
    while fx.gate.write_stats().ops <= ops_before {
        std::thread::yield_now();
    }
    let starter = {
        let (gate, id) = (fx.gate.clone(), job.id.clone());
        std::thread::spawn(move || {
            gate.store_for_tests().write(move |tx| {
                Ok(tx.execute(
                    "UPDATE jobs SET status = 'running', provider_task_id = 'fx_' || id
                     WHERE id = ?1",
                    [&id],
                )?)
            })
        })
    };
    store_queued(1)();
    assert_eq!(
        fx.status("r"),
        JobStatus::Pending,
        "the cancel will read pending"
    );
    let canceled = fx.gate.cancel(&fx.account, "r");
    blocker.join().expect("blocker").expect("blocker write");
    starter.join().expect("starter").expect("start");
    let canceled = canceled.expect("a job that started meanwhile is still cancellable");
    assert_eq!(canceled.status, JobStatus::Canceled);
    assert_eq!(fx.pending_micros(), 0, "released");
    fx.assert_verified();
}

#[test]
fn a_second_cancel_answers_the_canceled_job() {
    let fx = fixture(None);
    fx.submit("r", "[slow] x");
    let first = fx.gate.cancel(&fx.account, "r").expect("cancel");
    let second = fx.gate.cancel(&fx.account, "r").expect("cancel again");
    assert_eq!(second, first);
    assert_eq!(second.status, JobStatus::Canceled);
    assert_eq!(fx.pending_micros(), 0);
    fx.assert_verified();
}

/// Makes the writer's database unable to grow (as a full disk does): SQLite
/// answers `SQLITE_FULL`. Returns the page limit set.
fn fill_the_disk(gate: &Gate) -> i64 {
    gate.store_for_tests()
        .write(|tx| {
            let pages: i64 = tx.pragma_query_value(None, "page_count", |r| r.get(0))?;
            Ok(tx.pragma_update_and_check(None, "max_page_count", pages, |r| r.get(0))?)
        })
        .expect("limit pages")
}

#[test]
fn a_full_disk_refuses_submits_with_insufficient_storage_and_recovers_when_space_returns() {
    let fx = fixture(None);
    fx.gate
        .grant("plenty", &fx.account, Decimal::from(100_000), "")
        .expect("grant");
    let acknowledged = fx.submit("before", "x");
    fill_the_disk(&fx.gate);
    let mut refused = None;
    let mut kept = vec![acknowledged.id.clone()];
    for i in 0..500 {
        let body = json!({
            "request_id": format!("full-{i}"),
            "model": "z-image",
            "prompt": "x".repeat(2_000),
        });
        match fx.gate.submit(&fx.account, &body) {
            Ok(done) => kept.push(done.job.id),
            Err(err) => {
                refused = Some((i, err));
                break;
            }
        }
    }
    let (at, err) = refused.expect("the disk fills up");
    assert!(matches!(err, Error::StorageFull { .. }), "{err}");
    assert_eq!(err.code(), "insufficient_storage");
    // Nothing of the refused submit was kept; everything acknowledged is.
    assert!(fx.gate.job_for(&fx.account, &format!("full-{at}")).is_err());
    for id in &kept {
        assert_eq!(fx.gate.job(id).expect("kept").status, JobStatus::Pending);
    }

    // Space returns: the same store takes writes again by itself.
    fx.gate
        .store_for_tests()
        .write(|tx| Ok(tx.pragma_update(None, "max_page_count", 1_073_741_823)?))
        .expect("space back");
    let retried = fx
        .gate
        .submit(
            &fx.account,
            &json!({"request_id": format!("full-{at}"), "model": "z-image", "prompt": "x".repeat(2_000)}),
        )
        .expect("a refused submit may be retried once space returns");
    assert!(!retried.replayed);
    fx.gate.run_due_work(64).expect("the worker runs");
    assert_eq!(fx.status("before"), JobStatus::Running);
    fx.assert_verified();
}

#[test]
fn a_stored_catalog_that_no_longer_validates_is_a_server_fault_not_invalid_request() {
    let fx = fixture(None);
    fx.raw()
        .execute_batch(
            "DROP TRIGGER price_versions_catalog_is_immutable;
             UPDATE price_versions SET catalog = '{\"models\": 7}';",
        )
        .expect("tamper with the stored catalog");
    // A fresh gate: catalogs are cached once parsed.
    let gate = common::open_gate(&fx.path, fx.clock.clone(), Synchronous::Normal);
    let err = gate
        .estimate_body(&json!({"model": "z-image"}))
        .expect_err("the catalog does not validate");
    assert_eq!(err.code(), "internal", "{err}");
    assert!(err.is_server_fault(), "{err}");
    assert!(matches!(err, Error::CorruptData { .. }), "{err}");
}
