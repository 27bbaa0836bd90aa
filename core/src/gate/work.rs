//! The worker step: hands pending jobs to their providers, polls running
//! ones with backoff, retries transient provider errors a bounded number of
//! times, and expires jobs past their deadline. [`Gate::run_due_work`] is
//! one step: the appliance calls it from worker threads, an embedder or a
//! test calls it while moving a manual clock. Provider calls happen outside
//! any transaction; each answer is then recorded with its ledger effect in
//! one transaction, guarded by the status the job had when claimed.
//!
//! Crash safety: a job is leased before a provider call and marked as
//! possibly submitted; after a restart [`Gate::recover`] drops every lease
//! and the next step resumes every live job. A job whose submission may have
//! reached its provider is resubmitted only to a provider whose submission
//! is idempotent on the job id; otherwise it fails with its hold released,
//! never submitted twice.
//!
//! Failure is per job, never per batch: a job whose stored data does not
//! decode, or whose provider panics or answers something invalid (checked
//! like any input), fails alone with its hold released; a job whose answer
//! cannot be recorded (a storage error, a full disk) is left for a later
//! step while the others commit, and a submission's answer is kept in
//! memory ([`UNRECORDED_ANSWERS_MAX`] at most) so an upstream that accepted
//! a job is never asked twice. Each is a [`JobFault`] in the step's report
//! for the operator's log, and steps that keep failing make
//! [`Gate::worker_health`] say so.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::clock::UnixMillis;
use crate::error::{Error, Result};
use crate::gate::generate::{finish_unpaid, release_hold, seed_of};
use crate::gate::Gate;
use crate::jobs::{self, Change, Job, JobStatus, Output, Reschedule};
use crate::ledger;
use crate::pricing::Estimate;
use crate::providers::{
    check_task_id, Artifact, Completion, PollStatus, ProviderError, ProviderJob, Submission,
    FAILURE_CODE_CHARS_MAX,
};
use crate::request::GenerateRequest;
use crate::store::Tx;

/// How long a worker holds a claimed job before another may take it.
pub const LEASE_MS: i64 = 60_000;
/// How long a job whose answer could not be recorded (a storage error)
/// waits before a worker tries again.
pub const RECORD_RETRY_MS: i64 = 1_000;
/// Submissions tried before a job fails, at most.
pub const SUBMIT_ATTEMPTS_MAX: i64 = 5;
/// Transient poll errors tolerated before a job fails, at most.
pub const POLL_ERRORS_MAX: i64 = 10;
/// The first poll's delay after a submission, and the backoff's base, by
/// default (see [`crate::GateSettings`]).
pub const POLL_INTERVAL_MS_MIN: i64 = 1_000;
/// The longest wait between polls, by default.
pub const POLL_INTERVAL_MS_MAX: i64 = 15_000;
/// The longest wait before a submission is retried, by default.
pub const SUBMIT_BACKOFF_MS_MAX: i64 = 30_000;
/// Submission answers kept in memory because they could not be recorded
/// yet, at most. When full, pending jobs are not submitted (they are given
/// back, unsubmitted) until earlier answers are recorded.
pub const UNRECORDED_ANSWERS_MAX: usize = 1_024;
/// Consecutive failing worker steps after which [`Gate::worker_health`]
/// stops saying ok.
pub const FAILING_STEPS_UNHEALTHY: u64 = 3;

/// What one worker step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkReport {
    /// Jobs handed to a provider.
    pub submitted: usize,
    /// Jobs polled.
    pub polled: usize,
    /// Jobs that succeeded (and were charged).
    pub succeeded: usize,
    /// Jobs that failed (hold released).
    pub failed: usize,
    /// Jobs that expired (hold released).
    pub expired: usize,
    /// Provider calls that failed transiently and were rescheduled.
    pub retried: usize,
    /// Answers not recorded because the job changed meanwhile (canceled).
    pub superseded: usize,
    /// Answers that could not be recorded (a storage error): their jobs
    /// are left for a later step, a submission's answer kept in memory.
    pub left: usize,
    /// What went wrong with single jobs (stored data that does not decode,
    /// an answer that could not be recorded, a provider that panicked or
    /// answered something invalid), for the operator's log.
    pub faults: Vec<JobFault>,
    /// The earliest time a live job needs a worker again.
    pub next_due: Option<UnixMillis>,
}

/// A job the worker step could not handle normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFault {
    /// The job.
    pub job_id: String,
    /// What happened (no secret in it).
    pub detail: String,
}

/// How the worker steps have been going, for a health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerHealth {
    /// Worker steps in a row that failed or reported a fault.
    pub failing_steps: u64,
    /// The last failure, if the last step failed.
    pub last_failure: Option<String>,
}

impl WorkerHealth {
    /// Ok unless the last [`FAILING_STEPS_UNHEALTHY`] steps or more failed.
    pub fn is_ok(&self) -> bool {
        self.failing_steps < FAILING_STEPS_UNHEALTHY
    }

    /// `Ok` when healthy, else [`Error::WorkersFailing`] saying why.
    pub fn check(&self) -> Result<()> {
        if self.is_ok() {
            return Ok(());
        }
        Err(Error::WorkersFailing {
            failing_steps: self.failing_steps,
            reason: self
                .last_failure
                .clone()
                .unwrap_or_else(|| "unknown".to_owned()),
        })
    }
}

/// The gate's record of worker steps, behind [`Gate::worker_health`].
#[derive(Debug, Default)]
pub(crate) struct StepHealth {
    failing_steps: AtomicU64,
    last_failure: Mutex<Option<String>>,
}

impl StepHealth {
    fn record(&self, outcome: &Result<WorkReport>) {
        let failure = match outcome {
            Ok(report) => report.faults.first().map(|fault| {
                format!(
                    "{} job fault(s), e.g. job {}: {}",
                    report.faults.len(),
                    fault.job_id,
                    fault.detail
                )
            }),
            Err(err) => Some(format!("worker step failed: {err}")),
        };
        let mut last = lock(&self.last_failure);
        match failure {
            None => {
                self.failing_steps.store(0, Ordering::SeqCst);
                *last = None;
            }
            Some(failure) => {
                self.failing_steps.fetch_add(1, Ordering::SeqCst);
                *last = Some(failure);
            }
        }
    }

    fn snapshot(&self) -> WorkerHealth {
        let last = lock(&self.last_failure);
        WorkerHealth {
            failing_steps: self.failing_steps.load(Ordering::SeqCst),
            last_failure: last.clone(),
        }
    }
}

/// Submission answers that could not be recorded yet, by job id: used
/// instead of submitting again when the job is next claimed, so an upstream
/// that accepted a job is never asked twice nor its task id lost.
#[derive(Debug, Default)]
pub(crate) struct Unrecorded {
    answers: Mutex<HashMap<String, Decision>>,
}

impl Unrecorded {
    fn take(&self, job_id: &str) -> Option<Decision> {
        lock(&self.answers).remove(job_id)
    }

    fn keep(&self, job_id: String, decision: Decision) {
        lock(&self.answers).insert(job_id, decision);
    }

    fn is_full(&self) -> bool {
        lock(&self.answers).len() >= UNRECORDED_ANSWERS_MAX
    }

    fn job_ids(&self) -> Vec<String> {
        lock(&self.answers).keys().cloned().collect()
    }
}

/// Locks a mutex whose holder cannot leave it inconsistent (plain inserts
/// and removals), even if another thread panicked holding it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Exponential backoff from `base`, doubling per step, capped at `max`.
fn backoff(base: i64, step: i64, max: i64) -> i64 {
    let shift = step.clamp(0, 16) as u32;
    base.saturating_mul(1_i64 << shift).min(max)
}

/// The text of a caught panic.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// What the first write of a step found.
struct Claim {
    expired: Vec<(Job, JobStatus)>,
    superseded: usize,
    claimed: Vec<Job>,
    faults: Vec<JobFault>,
    finished_unrecorded: Vec<Job>,
    next_due: Option<UnixMillis>,
}

impl Gate {
    /// Drops every worker lease: call once when starting workers, so jobs
    /// claimed by a process that died are resumed at once. Returns how many
    /// leases were dropped.
    pub fn recover(&self) -> Result<usize> {
        self.store.write(jobs::release_leases)
    }

    /// How the worker steps have been going: ok unless the last
    /// [`FAILING_STEPS_UNHEALTHY`] steps failed or reported job faults.
    pub fn worker_health(&self) -> WorkerHealth {
        self.step_health.snapshot()
    }

    /// Runs one worker step over at most `limit` due jobs (see the module
    /// documentation) in two writes: the first expires overdue jobs (and
    /// the ledger's overdue holds) and claims due jobs; then the provider
    /// calls happen, outside any transaction; then the second records every
    /// answer, each job under its own nested savepoint, so one job that
    /// changed meanwhile (canceled) or whose record fails does not undo the
    /// others.
    ///
    /// Failures are per job: a job whose stored data does not decode, or
    /// whose provider panics or answers something invalid, fails alone
    /// (`internal` or `invalid_provider_answer`, hold released); a job whose
    /// answer cannot be recorded is left for a later step. Each is reported
    /// in [`WorkReport::faults`]. A panic anywhere else in the step is
    /// caught and returned as [`Error::Internal`] naming the claimed jobs.
    pub fn run_due_work(&self, limit: usize) -> Result<WorkReport> {
        let claimed_ids = Mutex::new(Vec::new());
        let outcome = match catch_unwind(AssertUnwindSafe(|| self.step(limit, &claimed_ids))) {
            Ok(outcome) => outcome,
            Err(panic) => Err(Error::internal(format!(
                "worker step panicked (jobs: [{}]): {}",
                lock(&claimed_ids).join(", "),
                panic_text(panic.as_ref())
            ))),
        };
        self.step_health.record(&outcome);
        outcome
    }

    fn step(&self, limit: usize, claimed_ids: &Mutex<Vec<String>>) -> Result<WorkReport> {
        let mut report = WorkReport::default();
        let now = self.clock.now();
        let remembered = self.unrecorded.job_ids();
        let claim = self.store.write(move |tx| {
            let Expiry {
                expired,
                superseded,
                mut faults,
            } = expire_overdue(tx, now)?;
            // The ledger's own backstop: holds past their deadline whose job
            // somehow did not release them.
            ledger::expire_due(tx, now)?;
            let claimed = jobs::claim_due(tx, now, now + LEASE_MS, limit)?;
            for (job_id, err) in claimed.undecodable {
                faults.push(fail_undecodable(tx, &job_id, &err, now)?);
            }
            // Jobs whose submission answer is still in memory but which
            // finished meanwhile (canceled, expired): the answer is void.
            let mut finished_unrecorded = Vec::new();
            for job_id in remembered {
                match jobs::get(tx, &job_id) {
                    Ok(job) if job.status.is_terminal() => finished_unrecorded.push(job),
                    Ok(_) => {}
                    Err(Error::NotFound { .. } | Error::CorruptData { .. }) => {}
                    Err(other) => return Err(other),
                }
            }
            let next_due = if claimed.jobs.is_empty() {
                jobs::next_due(tx)?
            } else {
                None
            };
            Ok(Claim {
                expired,
                superseded,
                claimed: claimed.jobs,
                faults,
                finished_unrecorded,
                next_due,
            })
        })?;
        report.superseded += claim.superseded;
        report.next_due = claim.next_due;
        report.faults = claim.faults;
        report.failed += report.faults.len();
        for (job, from) in claim.expired {
            report.expired += 1;
            if from == JobStatus::Running {
                self.cancel_at_provider(&job);
            }
        }
        for mut job in claim.finished_unrecorded {
            // The provider may be running a task nobody will collect.
            if let Some(task_id) = self.unrecorded.take(&job.id).and_then(Decision::task_id) {
                job.provider_task_id = Some(task_id);
                self.cancel_at_provider(&job);
            }
        }
        let claimed = claim.claimed;
        if claimed.is_empty() {
            return Ok(report);
        }
        lock(claimed_ids).extend(claimed.iter().map(|job| job.id.clone()));
        let mut decisions = Vec::with_capacity(claimed.len());
        for job in &claimed {
            let remembered = match job.status {
                JobStatus::Pending => self.unrecorded.take(&job.id),
                _ => None,
            };
            let decision = match remembered {
                Some(decision) => decision,
                None if job.status == JobStatus::Pending && self.unrecorded.is_full() => {
                    Decision::Defer
                }
                None => self.decide_caught(job, &mut report),
            };
            decisions.push((job.id.clone(), job.status, decision));
        }
        // A copy of every submission's answer, kept if it cannot be recorded.
        let answers: Vec<(String, Decision)> = decisions
            .iter()
            .filter(|(_, from, decision)| {
                *from == JobStatus::Pending && decision.is_submission_answer()
            })
            .map(|(id, _, decision)| (id.clone(), decision.clone()))
            .collect();
        let now = self.clock.now();
        let first_poll = self.settings.poll_interval_ms_min;
        // A panic in this write (re-raised here by the store) must not lose
        // the answers either.
        let recorded = catch_unwind(AssertUnwindSafe(|| {
            self.store.write(move |tx| {
                let mut applied = Vec::with_capacity(decisions.len());
                for (id, from, decision) in decisions {
                    let outcome = tx.nested(|tx| {
                        catch_unwind(AssertUnwindSafe(|| {
                            apply(tx, &id, from, decision, now, first_poll)
                        }))
                        .unwrap_or_else(|panic| {
                            Err(Error::internal(format!(
                                "recording the answer panicked: {}",
                                panic_text(panic.as_ref())
                            )))
                        })
                    });
                    let outcome = match outcome {
                        Ok(done) => done,
                        Err(Error::InvalidTransition { .. }) => Applied::Superseded,
                        // SQLite gave the whole transaction up: nothing of this
                        // write can be kept.
                        Err(err) if !tx.is_open() => return Err(err),
                        Err(err) => {
                            // Left for a later step; if even this fails, the
                            // lease runs out instead.
                            let _ =
                                tx.nested(|tx| jobs::lease_until(tx, &id, now + RECORD_RETRY_MS));
                            Applied::Left(err.to_string())
                        }
                    };
                    applied.push((id, outcome));
                }
                Ok((applied, jobs::next_due(tx)?))
            })
        }))
        .unwrap_or_else(|panic| {
            Err(Error::internal(format!(
                "recording answers panicked: {}",
                panic_text(panic.as_ref())
            )))
        });
        let (applied, next_due) = match recorded {
            Ok(recorded) => recorded,
            Err(err) => {
                for (id, answer) in answers {
                    self.unrecorded.keep(id, answer);
                }
                return Err(err);
            }
        };
        report.next_due = next_due;
        let mut answers: HashMap<String, Decision> = answers.into_iter().collect();
        for (job_id, outcome) in applied {
            match outcome {
                Applied::Succeeded => report.succeeded += 1,
                Applied::Failed => report.failed += 1,
                Applied::Expired => report.expired += 1,
                Applied::Superseded => report.superseded += 1,
                Applied::Running | Applied::Rescheduled | Applied::Deferred => {}
                Applied::Left(detail) => {
                    report.left += 1;
                    if let Some(answer) = answers.remove(&job_id) {
                        self.unrecorded.keep(job_id.clone(), answer);
                    }
                    report.faults.push(JobFault {
                        job_id,
                        detail: format!("its answer could not be recorded: {detail}"),
                    });
                }
            }
        }
        Ok(report)
    }

    /// Asks the job's provider to stop it; failures are ignored (the job is
    /// already finished on our side and nothing more will be charged).
    pub(crate) fn cancel_at_provider(&self, job: &Job) {
        if let (Some(provider), Ok(context)) =
            (self.providers.get(&job.provider), JobContext::of(job))
        {
            let _ = catch_unwind(AssertUnwindSafe(|| {
                provider.cancel(&context.provider_job(self, job))
            }));
        }
    }

    /// [`Gate::decide`] for one job, failing that job alone if its stored
    /// data does not decode or its provider panics.
    fn decide_caught(&self, job: &Job, report: &mut WorkReport) -> Decision {
        let fault = match catch_unwind(AssertUnwindSafe(|| self.decide(job, report))) {
            Ok(Ok(decision)) => return decision,
            Ok(Err(err)) => err.to_string(),
            Err(panic) => format!("the provider panicked: {}", panic_text(panic.as_ref())),
        };
        report.faults.push(JobFault {
            job_id: job.id.clone(),
            detail: fault.clone(),
        });
        Decision::fail("internal", fault)
    }

    /// Asks a claimed job's provider the next question (submit or poll) and
    /// decides what to record. No database access. Fails only if the job's
    /// stored data does not decode.
    fn decide(&self, job: &Job, report: &mut WorkReport) -> Result<Decision> {
        let context = JobContext::of(job)?;
        let Some(provider) = self.providers.get(&job.provider).cloned() else {
            return Ok(Decision::fail(
                "provider_unavailable",
                format!("provider {} is not configured", job.provider),
            ));
        };
        let call = context.provider_job(self, job);
        let settings = &self.settings;
        Ok(match job.status {
            JobStatus::Pending => {
                report.submitted += 1;
                if call.resubmission && !provider.idempotent_submit() {
                    return Ok(Decision::fail(
                        "submission_uncertain",
                        "a submission may have reached the provider before a restart, \
                         and it cannot be retried safely",
                    ));
                }
                match provider.submit(&call) {
                    Ok(Submission::Accepted { task_id, state }) => match check_task_id(&task_id) {
                        Ok(()) => Decision::Running {
                            task_id,
                            state: state.map(|s| s.to_string()),
                        },
                        Err(reason) => invalid_answer(job, reason, report),
                    },
                    Ok(Submission::Completed {
                        task_id,
                        completion,
                    }) => match check_task_id(&task_id).and_then(|()| completion.check()) {
                        Ok(()) => Decision::Succeed {
                            task_id: Some(task_id),
                            completion,
                        },
                        Err(reason) => invalid_answer(job, reason, report),
                    },
                    Err(
                        ProviderError::NotSent { message, .. }
                        | ProviderError::OutcomeUnknown { message },
                    ) => {
                        if job.submit_attempts >= SUBMIT_ATTEMPTS_MAX {
                            return Ok(Decision::fail("provider_unavailable", message));
                        }
                        report.retried += 1;
                        Decision::Retry {
                            delay_ms: backoff(
                                settings.poll_interval_ms_min,
                                job.submit_attempts - 1,
                                settings.submit_backoff_ms_max,
                            ),
                            add_polls: 0,
                            add_poll_errors: 0,
                            message: Some(message),
                        }
                    }
                    Err(ProviderError::Permanent { code, message }) => {
                        Decision::fail(&code, message)
                    }
                }
            }
            JobStatus::Running => {
                report.polled += 1;
                match provider.poll(&call) {
                    Ok(PollStatus::Running) => Decision::Retry {
                        delay_ms: backoff(
                            settings.poll_interval_ms_min,
                            job.polls + 1,
                            settings.poll_interval_ms_max,
                        ),
                        add_polls: 1,
                        add_poll_errors: 0,
                        message: None,
                    },
                    Ok(PollStatus::Succeeded(completion)) => match completion.check() {
                        Ok(()) => Decision::Succeed {
                            task_id: None,
                            completion,
                        },
                        Err(reason) => invalid_answer(job, reason, report),
                    },
                    Ok(PollStatus::Failed { code, message }) => Decision::fail(&code, message),
                    Ok(PollStatus::Abandoned { message }) => {
                        Decision::fail("upstream_aborted", message)
                    }
                    Err(
                        ProviderError::NotSent { message, .. }
                        | ProviderError::OutcomeUnknown { message },
                    ) => {
                        if job.poll_errors + 1 >= POLL_ERRORS_MAX {
                            return Ok(Decision::fail("provider_unavailable", message));
                        }
                        report.retried += 1;
                        Decision::Retry {
                            delay_ms: backoff(
                                settings.poll_interval_ms_min,
                                job.poll_errors + 1,
                                settings.poll_interval_ms_max,
                            ),
                            add_polls: 0,
                            add_poll_errors: 1,
                            message: Some(message),
                        }
                    }
                    Err(ProviderError::Permanent { code, message }) => {
                        Decision::fail(&code, message)
                    }
                }
            }
            // Claims take live jobs only; a terminal one is left alone.
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled | JobStatus::Expired => {
                Decision::Defer
            }
        })
    }
}

/// A provider answered something that cannot be recorded: the job fails
/// with `invalid_provider_answer`, reported as a fault.
fn invalid_answer(job: &Job, reason: String, report: &mut WorkReport) -> Decision {
    report.faults.push(JobFault {
        job_id: job.id.clone(),
        detail: format!("invalid provider answer: {reason}"),
    });
    Decision::fail("invalid_provider_answer", reason)
}

/// Fails a claimed job whose row does not decode and releases its hold,
/// under its own nested savepoint; returns the fault to report.
fn fail_undecodable(tx: &Tx<'_>, job_id: &str, err: &Error, now: UnixMillis) -> Result<JobFault> {
    let detail = format!("its stored data does not decode: {err}");
    let message = "the job's stored data does not decode; it was failed and its hold released";
    tx.nested(|tx| {
        if let Some(Some(hold_id)) = jobs::fail_undecodable(tx, job_id, message, now)? {
            release_hold(tx, job_id, &hold_id, now)?;
        }
        Ok(())
    })?;
    Ok(JobFault {
        job_id: job_id.to_owned(),
        detail,
    })
}

/// What expiring overdue jobs did.
struct Expiry {
    /// The expired jobs, with the status each had.
    expired: Vec<(Job, JobStatus)>,
    /// Overdue jobs that changed meanwhile and were left alone.
    superseded: usize,
    /// Overdue rows that did not decode (failed instead).
    faults: Vec<JobFault>,
}

/// Expires up to [`jobs::EXPIRE_JOBS_BATCH_MAX`] overdue live jobs
/// (releasing their holds), each under its own nested savepoint.
fn expire_overdue(tx: &Tx<'_>, now: UnixMillis) -> Result<Expiry> {
    let overdue = jobs::overdue(tx, now)?;
    let mut expired = Vec::with_capacity(overdue.len());
    let mut faults = Vec::new();
    let mut superseded = 0;
    for job_id in &overdue {
        let job = match jobs::get(tx, job_id) {
            Ok(job) => job,
            Err(err @ Error::CorruptData { .. }) => {
                faults.push(fail_undecodable(tx, job_id, &err, now)?);
                continue;
            }
            Err(other) => return Err(other),
        };
        let change = Change {
            error_code: Some("expired".into()),
            error_message: Some("the job passed its deadline before it finished".into()),
            ..Change::default()
        };
        match tx
            .nested(|tx| finish_unpaid(tx, &job.id, job.status, JobStatus::Expired, change, now))
        {
            Ok(done) => expired.push((done, job.status)),
            Err(Error::InvalidTransition { .. }) => superseded += 1,
            Err(other) => return Err(other),
        }
    }
    Ok(Expiry {
        expired,
        superseded,
        faults,
    })
}

/// What a provider's answer means for a job.
#[derive(Debug, Clone)]
pub(crate) enum Decision {
    /// The provider accepted it: pending becomes running.
    Running {
        task_id: String,
        state: Option<String>,
    },
    /// Done: capture and succeed (from pending when the provider answered
    /// synchronously, with its task id).
    Succeed {
        task_id: Option<String>,
        completion: Completion,
    },
    /// Failed: release.
    Fail { code: String, message: String },
    /// Ask again later.
    Retry {
        delay_ms: i64,
        add_polls: i64,
        add_poll_errors: i64,
        message: Option<String>,
    },
    /// Not asked: give the claimed job back, unsubmitted.
    Defer,
}

impl Decision {
    /// A failure; a provider's code that is not a short machine code is
    /// replaced by `provider_failed` (it is stored and shown to agents).
    fn fail(code: &str, message: impl Into<String>) -> Decision {
        let machine = !code.is_empty()
            && code.len() <= FAILURE_CODE_CHARS_MAX
            && code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
        Decision::Fail {
            code: if machine { code } else { "provider_failed" }.to_owned(),
            message: message.into(),
        }
    }

    /// Whether this answer came from (or stands for) a submission, and so
    /// must not be lost if it cannot be recorded.
    fn is_submission_answer(&self) -> bool {
        !matches!(self, Decision::Defer)
    }

    /// The provider's task id this answer carries, if any.
    fn task_id(self) -> Option<String> {
        match self {
            Decision::Running { task_id, .. } => Some(task_id),
            Decision::Succeed { task_id, .. } => task_id,
            Decision::Fail { .. } | Decision::Retry { .. } | Decision::Defer => None,
        }
    }
}

/// How a decision ended up recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Applied {
    Running,
    Rescheduled,
    Deferred,
    Succeeded,
    Failed,
    Expired,
    Superseded,
    /// Not recorded (why): left for a later step.
    Left(String),
}

/// Records one decision for a job still in `from`, with its ledger effect.
fn apply(
    tx: &Tx<'_>,
    job_id: &str,
    from: JobStatus,
    decision: Decision,
    now: UnixMillis,
    first_poll_ms: i64,
) -> Result<Applied> {
    let to_running = |task_id: String, state: Option<String>| {
        let change = Change {
            provider_task_id: Some(task_id),
            provider_state: state,
            next_run_at: Some(now + first_poll_ms),
            ..Change::default()
        };
        jobs::transition(
            tx,
            job_id,
            JobStatus::Pending,
            JobStatus::Running,
            change,
            now,
        )
    };
    match decision {
        Decision::Running { task_id, state } => {
            to_running(task_id, state)?;
            Ok(Applied::Running)
        }
        Decision::Succeed {
            task_id,
            completion,
        } => {
            if let Some(task_id) = task_id {
                to_running(task_id, None)?;
            }
            Ok(match settle_success(tx, job_id, completion, now)? {
                JobStatus::Succeeded => Applied::Succeeded,
                _ => Applied::Expired,
            })
        }
        Decision::Fail { code, message } => {
            let change = Change {
                error_code: Some(code),
                error_message: Some(message),
                ..Change::default()
            };
            finish_unpaid(tx, job_id, from, JobStatus::Failed, change, now)?;
            Ok(Applied::Failed)
        }
        Decision::Retry {
            delay_ms,
            add_polls,
            add_poll_errors,
            message,
        } => {
            let plan = Reschedule {
                next_run_at: now + delay_ms,
                add_polls,
                add_poll_errors,
                error_message: message,
                provider_state: None,
            };
            jobs::reschedule(tx, job_id, from, &plan, now)?;
            Ok(Applied::Rescheduled)
        }
        Decision::Defer => {
            if from == JobStatus::Pending {
                jobs::unclaim(tx, job_id, now + first_poll_ms, now)?;
            }
            Ok(Applied::Deferred)
        }
    }
}

/// The success transaction; returns the status the job ended in.
fn settle_success(
    tx: &Tx<'_>,
    job_id: &str,
    completion: Completion,
    now: UnixMillis,
) -> Result<JobStatus> {
    let job = jobs::get(tx, job_id)?;
    let capture_id = format!("capture:{job_id}");
    if let Some(hold_id) = &job.hold_id {
        match ledger::capture(tx, &capture_id, hold_id, job.estimate_micros, now) {
            Ok(_) => {}
            Err(Error::HoldExpired { .. } | Error::HoldAlreadyResolved { .. }) => {
                let change = Change {
                    error_code: Some("expired".into()),
                    error_message: Some("the result arrived after the job's hold expired".into()),
                    ..Change::default()
                };
                finish_unpaid(
                    tx,
                    job_id,
                    JobStatus::Running,
                    JobStatus::Expired,
                    change,
                    now,
                )?;
                return Ok(JobStatus::Expired);
            }
            Err(other) => return Err(other),
        }
    }
    let change = Change {
        outputs: Some(outputs_of(&completion)),
        seed: completion.seed,
        charged_micros: Some(job.estimate_micros),
        ..Change::default()
    };
    let succeeded = jobs::transition(
        tx,
        job_id,
        JobStatus::Running,
        JobStatus::Succeeded,
        change,
        now,
    )?;
    let transfer = succeeded.hold_id.as_ref().map(|_| capture_id.as_str());
    jobs::record_usage(tx, &succeeded, transfer, succeeded.estimate_micros, now)?;
    Ok(JobStatus::Succeeded)
}

/// The outputs a completion records as they are: served ones, and remote
/// ones under their upstream URLs (a gate without a media store).
fn outputs_of(completion: &Completion) -> Vec<Output> {
    completion
        .artifacts
        .iter()
        .filter_map(|artifact| match artifact {
            Artifact::Hosted(output) => Some(output.clone()),
            Artifact::Remote { url, mime } => Some(Output {
                url: url.clone(),
                mime: mime
                    .clone()
                    .unwrap_or_else(|| "application/octet-stream".to_owned()),
                file: None,
            }),
            Artifact::Inline { .. } => None,
        })
        .collect()
}

/// A job's stored request and estimate, decoded for a provider call.
struct JobContext {
    request: GenerateRequest,
    estimate: Estimate,
    provider_state: Option<serde_json::Value>,
}

impl JobContext {
    fn of(job: &Job) -> Result<JobContext> {
        let corrupt = |what: &str, err: serde_json::Error| {
            Error::corrupt(format!(
                "stored {what} of {} does not decode: {err}",
                job.id
            ))
        };
        Ok(JobContext {
            request: serde_json::from_str(&job.request).map_err(|e| corrupt("request", e))?,
            estimate: serde_json::from_str(&job.estimate).map_err(|e| corrupt("estimate", e))?,
            provider_state: job
                .provider_state
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| corrupt("provider state", e))?,
        })
    }

    fn provider_job<'a>(&'a self, gate: &'a Gate, job: &'a Job) -> ProviderJob<'a> {
        ProviderJob {
            job_id: &job.id,
            model: &job.model,
            upstream_model: &job.upstream_model,
            product: &job.product,
            prompt: self.request.prompt.as_deref(),
            units: &self.estimate.units,
            input_image_urls: &self.request.input_image_urls,
            provider_task_id: job.provider_task_id.as_deref(),
            submit_attempts: job.submit_attempts,
            // Claiming counted this attempt; an earlier one may have landed.
            resubmission: job.submit_attempts > 1 && job.provider_task_id.is_none(),
            polls: job.polls,
            poll_errors: job.poll_errors,
            seed: seed_of(&job.fingerprint),
            output_url_base: gate.output_url_base(job),
            provider_state: self.provider_state.as_ref(),
            webhook_url: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_too_many_unrecorded_answers_a_pending_job_is_given_back_unsubmitted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = std::sync::Arc::new(crate::ManualClock::new(1_790_000_000_000));
        let gate = Gate::open(
            &crate::StoreOptions::new(dir.path().join("cap.db")),
            clock.clone(),
        )
        .expect("open");
        gate.import_catalog(include_str!("../../../fixtures/catalogs/rynjer.json"))
            .expect("catalog");
        let account = gate
            .create_account(&crate::NewAccount::named("a"))
            .expect("account")
            .id;
        gate.grant("seed", &account, 100.into(), "").expect("grant");
        for i in 0..UNRECORDED_ANSWERS_MAX {
            gate.unrecorded
                .keep(format!("job_elsewhere_{i}"), Decision::Defer);
        }
        let body = serde_json::json!({"request_id": "r", "model": "z-image", "prompt": "x"});
        let job = gate.submit(&account, &body).expect("submit").job;

        let report = gate.run_due_work(8).expect("step");
        assert_eq!(report.submitted, 0, "not handed to the provider");
        let after = gate.job(&job.id).expect("job");
        assert_eq!(after.status, JobStatus::Pending);
        assert_eq!(
            (
                after.submit_attempts,
                after.submit_started_at,
                after.lease_until
            ),
            (0, None, None),
            "it does not look as if a submission may have happened"
        );

        // Room again: it is submitted, as a first submission.
        lock(&gate.unrecorded.answers).clear();
        clock.advance(std::time::Duration::from_secs(2));
        let report = gate.run_due_work(8).expect("step");
        assert_eq!(report.submitted, 1);
        assert_eq!(gate.job(&job.id).expect("job").status, JobStatus::Running);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let steps: Vec<i64> = (0..7).map(|s| backoff(1_000, s, 15_000)).collect();
        assert_eq!(steps, [1_000, 2_000, 4_000, 8_000, 15_000, 15_000, 15_000]);
        assert_eq!(backoff(1_000, 99, 30_000), 30_000);
    }
}
