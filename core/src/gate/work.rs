//! The worker step: claim → call → record. It hands pending jobs to their
//! providers, polls running ones with backoff, keeps finished jobs' outputs
//! in the media store, sends queued upstream cancels, and expires jobs past
//! their deadline. [`Gate::run_due_work`] is one step: the appliance calls
//! it from worker threads, an embedder or a test calls it while moving a
//! manual clock. What an answer means is decided by the pure functions of
//! [`super::decide`]; this module makes the calls and records the answers.
//!
//! - **Claim** (one write): expire overdue jobs, lease due pending ones for
//!   longer than any call can take ([`Gate::lease_ms`], derived from the
//!   providers' timeouts, so a slow upstream is never mistaken for a crashed
//!   worker), and take due upstream cancels. Due running jobs are taken from
//!   the poll schedule in memory ([`super::schedule`]) and read, not
//!   written: an answer that changes nothing stored ("still running") goes
//!   back to the schedule without a write.
//! - **Call** (no transaction open): each job's call runs on its own thread,
//!   at most [`Provider::concurrency`](crate::providers::Provider) at once
//!   per provider instance across every worker; a job over its provider's
//!   limit is given back for a moment, not asked.
//! - **Record** (one write): every answer, each job under its own nested
//!   savepoint guarded by the status the job had when claimed, with its
//!   ledger effect.
//!
//! Crash safety: a pending job is marked as possibly submitted before its
//! call, and the mark is cleared only when a submission certainly did not
//! reach the provider. After a restart [`Gate::recover`] drops every lease;
//! a possibly submitted job is resubmitted only to a provider whose
//! submission is idempotent on the job id, otherwise the provider is asked
//! whether it has it (reconciled), and the job fails as
//! `submission_uncertain` (hold released) only when it cannot be asked:
//! never submitted twice.
//!
//! Failure is per job, never per batch: a job whose stored data does not
//! decode, or whose provider panics or answers something invalid (checked
//! like any input), fails alone with its hold released; a job whose answer
//! cannot be recorded (a storage error, a full disk) is left for a later
//! step while the others commit, and its answer is kept in memory
//! ([`UNRECORDED_ANSWERS_MAX`] at most) so an upstream that accepted a job
//! is never asked twice. Each is a [`JobFault`] in the step's report for
//! the operator's log, and steps that keep failing make
//! [`Gate::worker_health`] say so.

use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::clock::UnixMillis;
use crate::error::{Error, Result};
use crate::gate::decide::{
    self, after_keep, after_poll, after_reconcile, after_submit, Counters, Decision, KeepContext,
    Step, Timing,
};
use crate::gate::generate::{finish_unpaid, release_hold, seed_of};
use crate::gate::schedule::{Unwritten, RUNNING_JOBS_MAX};
use crate::gate::Gate;
use crate::jobs::{self, Change, Job, JobStatus, Output, Reschedule};
use crate::ledger;
use crate::pricing::Estimate;
use crate::providers::{Artifact, Completion, Provider, ProviderError, ProviderJob, Usage};
use crate::request::GenerateRequest;
use crate::store::Tx;

/// How much longer than its longest call a claimed job's lease lasts, for
/// the recording around it.
pub const LEASE_MARGIN_MS: i64 = 30_000;
/// How long a job whose answer could not be recorded (a storage error)
/// waits before a worker tries again.
pub const RECORD_RETRY_MS: i64 = 1_000;
/// The first poll's delay after a submission, and the backoff's base, by
/// default (see [`crate::GateSettings`]).
pub const POLL_INTERVAL_MS_MIN: i64 = 1_000;
/// The longest wait between polls, by default.
pub const POLL_INTERVAL_MS_MAX: i64 = 15_000;
/// The longest wait before a submission is retried, by default.
pub const SUBMIT_BACKOFF_MS_MAX: i64 = 30_000;
/// How long a job over its provider's concurrency limit waits before a
/// worker looks at it again.
pub const BUSY_RETRY_MS: i64 = 100;
/// How long an upstream cancel that failed waits before it is sent again.
pub const CANCEL_RETRY_MS: i64 = 30_000;
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

/// The text of a caught panic.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// Calls in flight per provider instance, across every worker thread of a
/// gate: a call takes a slot of its provider or is not made.
#[derive(Debug, Default)]
pub(crate) struct ProviderSlots {
    busy: Mutex<HashMap<String, usize>>,
}

/// One taken slot, given back when dropped.
struct Slot<'a> {
    slots: &'a ProviderSlots,
    provider: String,
}

impl ProviderSlots {
    fn take(&self, provider: &str, limit: usize) -> Option<Slot<'_>> {
        let mut busy = lock(&self.busy);
        let count = busy.entry(provider.to_owned()).or_default();
        if *count >= limit.max(1) {
            return None;
        }
        *count += 1;
        Some(Slot {
            slots: self,
            provider: provider.to_owned(),
        })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut busy = lock(&self.slots.busy);
        if let Some(count) = busy.get_mut(&self.provider) {
            *count = count.saturating_sub(1);
        }
    }
}

/// A finished job's remote outputs, kept on the job while copying them
/// failed for now (`jobs.pending_outputs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingOutputs {
    outputs: Vec<PendingOutput>,
    seed: Option<i64>,
    usage: Option<Usage>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingOutput {
    url: String,
    mime: Option<String>,
}

impl PendingOutputs {
    /// The remote outputs of `completion`, if every output is remote.
    fn of(completion: &Completion) -> Option<String> {
        let outputs = completion
            .artifacts
            .iter()
            .map(|artifact| match artifact {
                Artifact::Remote { url, mime } => Some(PendingOutput {
                    url: url.clone(),
                    mime: mime.clone(),
                }),
                Artifact::Inline { .. } | Artifact::Hosted(_) => None,
            })
            .collect::<Option<Vec<_>>>()?;
        serde_json::to_string(&PendingOutputs {
            outputs,
            seed: completion.seed,
            usage: completion.usage,
        })
        .ok()
    }

    fn completion(self) -> Completion {
        Completion {
            artifacts: self
                .outputs
                .into_iter()
                .map(|o| Artifact::Remote {
                    url: o.url,
                    mime: o.mime,
                })
                .collect(),
            seed: self.seed,
            usage: self.usage,
        }
    }
}

/// Which call a claimed job needed, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallKind {
    Submitted,
    Polled,
    Collected,
    /// Not asked (no slot, no provider, a remembered answer).
    None,
}

/// What calling for one claimed job came to.
struct Called {
    job_id: String,
    from: JobStatus,
    possibly_sent: bool,
    decision: Decision,
    kind: CallKind,
    fault: Option<JobFault>,
}

/// The running jobs a step took from the schedule, read.
#[derive(Default)]
struct Polled {
    jobs: Vec<Job>,
    /// Each one's polls not yet written.
    unwritten: HashMap<String, Unwritten>,
    /// Rows that do not decode (they left the schedule), to fail.
    undecodable: Vec<(String, Error)>,
}

/// When a running job's answer is only remembered, not written (it is
/// still running, or it could not be asked now): its next poll and the
/// polls it adds; `None` when the answer must be recorded.
fn unwritten_answer(decision: &Decision, now: UnixMillis) -> Option<(UnixMillis, Unwritten)> {
    match decision {
        Decision::Retry {
            delay_ms,
            add_polls,
            add_poll_errors,
            message: None,
            not_sent: _,
        } => Some((
            now.saturating_add(*delay_ms),
            Unwritten {
                polls: *add_polls,
                poll_errors: *add_poll_errors,
            },
        )),
        Decision::Defer { delay_ms } => Some((
            now.saturating_add((*delay_ms).max(BUSY_RETRY_MS)),
            Unwritten::default(),
        )),
        _ => None,
    }
}

/// The earlier of two optional times.
fn earliest(a: Option<UnixMillis>, b: Option<UnixMillis>) -> Option<UnixMillis> {
    a.into_iter().chain(b).min()
}

/// What the first write of a step found.
struct Claim {
    expired: usize,
    superseded: usize,
    claimed: Vec<Job>,
    possibly_sent: HashSet<String>,
    faults: Vec<JobFault>,
    finished_unrecorded: Vec<Job>,
    cancels: Vec<Job>,
    next_due: Option<UnixMillis>,
}

impl Gate {
    /// Drops every worker lease and rebuilds the poll schedule of running
    /// jobs from their rows: call once when starting workers, so jobs
    /// claimed by a process that died are resumed at once. Returns how many
    /// leases were dropped.
    pub fn recover(&self) -> Result<usize> {
        let released = self.store.write(jobs::release_leases)?;
        self.schedule.rebuild(self.store.read(jobs::running)?);
        Ok(released)
    }

    /// How the worker steps have been going: ok unless the last
    /// [`FAILING_STEPS_UNHEALTHY`] steps failed or reported job faults.
    pub fn worker_health(&self) -> WorkerHealth {
        self.step_health.snapshot()
    }

    /// How long a worker holds a claimed job: longer than its calls can
    /// take (a reconcile and a submission, each bounded by the slowest
    /// provider's timeout, and keeping its outputs), plus
    /// `LEASE_MARGIN_MS` (30 s).
    pub fn lease_ms(&self) -> i64 {
        let keep = self
            .media
            .as_ref()
            .map_or(0, |store| store.keep_timeout_ms().max(0));
        self.providers
            .longest_call_timeout_ms()
            .max(0)
            .saturating_mul(2)
            .saturating_add(keep)
            .saturating_add(LEASE_MARGIN_MS)
    }

    fn timing(&self) -> Timing {
        Timing {
            poll_min_ms: self.settings.poll_interval_ms_min,
            poll_max_ms: self.settings.poll_interval_ms_max,
            submit_max_ms: self.settings.submit_backoff_ms_max,
        }
    }

    /// Runs one worker step over at most `limit` due jobs (see the module
    /// documentation): one write claims, the calls run outside any
    /// transaction, one write records every answer, each job under its own
    /// nested savepoint, so one job that changed meanwhile (canceled) or
    /// whose record fails does not undo the others.
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
        // A running job this step took and did not put back (an error or a
        // panic on the way) is polled again shortly; for the others this
        // does nothing.
        let retry_at = self.clock.now().saturating_add(RECORD_RETRY_MS);
        for id in lock(&claimed_ids).iter() {
            self.schedule.put_back(id, retry_at, Unwritten::default());
        }
        outcome
    }

    /// Reads the running jobs taken from the schedule. A job no longer
    /// running (it ended meanwhile) or past its deadline (the claim's
    /// expiry ends it) leaves the schedule; a row that does not decode is
    /// returned apart, to be failed.
    fn read_polled(&self, polled: Vec<(String, Unwritten)>, now: UnixMillis) -> Result<Polled> {
        if polled.is_empty() {
            return Ok(Polled::default());
        }
        let read = self.store.read(|conn| {
            let mut found = Vec::with_capacity(polled.len());
            for (id, more) in &polled {
                found.push((id.clone(), *more, jobs::get(conn, id)));
            }
            Ok(found)
        });
        let found = match read {
            Ok(found) => found,
            Err(err) => {
                for (id, _) in &polled {
                    self.schedule
                        .put_back(id, now + RECORD_RETRY_MS, Unwritten::default());
                }
                return Err(err);
            }
        };
        let mut out = Polled::default();
        let mut failed = None;
        for (id, more, job) in found {
            match job {
                Ok(mut job) if job.status == JobStatus::Running && job.deadline > now => {
                    // The polls made since its last write count for the backoff.
                    job.polls += more.polls;
                    job.poll_errors += more.poll_errors;
                    out.unwritten.insert(id, more);
                    out.jobs.push(job);
                }
                Ok(_) | Err(Error::NotFound { .. }) => self.schedule.remove(&id),
                Err(err @ Error::CorruptData { .. }) => {
                    self.schedule.remove(&id);
                    out.undecodable.push((id, err));
                }
                // Storage trouble: polled again shortly.
                Err(other) => {
                    self.schedule
                        .put_back(&id, now + RECORD_RETRY_MS, Unwritten::default());
                    failed.get_or_insert(other);
                }
            }
        }
        // The step fails (and says why) only if nothing could be read.
        match failed {
            Some(err) if out.jobs.is_empty() && out.undecodable.is_empty() => Err(err),
            _ => Ok(out),
        }
    }

    fn step(&self, limit: usize, claimed_ids: &Mutex<Vec<String>>) -> Result<WorkReport> {
        let mut report = WorkReport::default();
        let now = self.clock.now();
        let remembered = self.unrecorded.job_ids();
        let lease_until = now.saturating_add(self.lease_ms());
        // Running jobs due, from the schedule in memory (no write): at most
        // half the step while pending jobs may be waiting, more below if
        // they are not. No pending job starts while the schedule is full.
        let mut polled = self.schedule.take_due(now, limit.div_ceil(2));
        lock(claimed_ids).extend(polled.iter().map(|(id, _)| id.clone()));
        let pending_limit = limit
            .saturating_sub(polled.len())
            .min(RUNNING_JOBS_MAX.saturating_sub(self.schedule.len()));
        let claim = self.store.write(move |tx| {
            let Expiry {
                expired,
                superseded,
                mut faults,
            } = expire_overdue(tx, now)?;
            // The ledger's own backstop: holds past their deadline whose job
            // somehow did not release them.
            ledger::expire_due(tx, now)?;
            jobs::prune_deliveries(tx, now)?;
            let claimed = jobs::claim_due(tx, now, lease_until, pending_limit)?;
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
            let cancels = jobs::claim_upstream_cancels(
                tx,
                now,
                CANCEL_RETRY_MS,
                jobs::UPSTREAM_CANCELS_BATCH_MAX,
            )?;
            let next_due = if claimed.jobs.is_empty() {
                jobs::next_due(tx)?
            } else {
                None
            };
            Ok(Claim {
                expired,
                superseded,
                claimed: claimed.jobs,
                possibly_sent: claimed.possibly_sent,
                faults,
                finished_unrecorded,
                cancels,
                next_due,
            })
        })?;
        if claim.expired > 0 || !claim.faults.is_empty() {
            self.job_events.notify();
        }
        report.superseded += claim.superseded;
        report.expired += claim.expired;
        report.next_due = claim.next_due;
        report.faults = claim.faults;
        report.failed += report.faults.len();
        for mut job in claim.finished_unrecorded {
            // The provider may be running a task nobody will collect: cancel
            // it, with the state its answer carried (fal cancels by the URL
            // its submission answered).
            let Some(answer) = self.unrecorded.take(&job.id) else {
                continue;
            };
            if let Decision::Running { state, .. } = &answer {
                job.provider_state = state.clone();
            }
            if let Some(task_id) = answer.task_id() {
                job.provider_task_id = Some(task_id);
                let _ = self.cancel_upstream(&job);
            }
        }
        let room = limit.saturating_sub(polled.len() + claim.claimed.len());
        if claim.claimed.len() < pending_limit && room > 0 {
            let more = self.schedule.take_due(now, room);
            lock(claimed_ids).extend(more.iter().map(|(id, _)| id.clone()));
            polled.extend(more);
        }
        let Polled {
            jobs: running,
            unwritten,
            undecodable,
        } = self.read_polled(polled, now)?;
        // (Rows that do not decode are failed in the record write below.)
        if claim.claimed.is_empty()
            && claim.cancels.is_empty()
            && running.is_empty()
            && undecodable.is_empty()
        {
            report.next_due = earliest(report.next_due, self.schedule.next_due());
            return Ok(report);
        }
        lock(claimed_ids).extend(claim.claimed.iter().map(|job| job.id.clone()));
        let mut claimed = claim.claimed;
        claimed.extend(running);
        let (called, cancels_done) = self.call_all(&claimed, &claim.possibly_sent, &claim.cancels);
        let called_at = self.clock.now();
        // The rows as claimed: a success's bookkeeping reads their fixed
        // fields (account, hold, estimate) instead of reading the row again.
        let mut claimed: HashMap<String, Job> = claimed
            .into_iter()
            .map(|job| (job.id.clone(), job))
            .collect();
        let mut decisions = Vec::with_capacity(called.len());
        for called in called {
            match called.kind {
                CallKind::Submitted => report.submitted += 1,
                CallKind::Polled => report.polled += 1,
                CallKind::Collected | CallKind::None => {}
            }
            if matches!(
                called.decision,
                Decision::Retry {
                    message: Some(_),
                    ..
                }
            ) {
                report.retried += 1;
            }
            report.faults.extend(called.fault);
            if called.from == JobStatus::Running {
                if let Some((due, more)) = unwritten_answer(&called.decision, called_at) {
                    // Still running: remembered, not written.
                    self.schedule.put_back(&called.job_id, due, more);
                    continue;
                }
            }
            decisions.push((
                called.job_id,
                called.from,
                called.possibly_sent,
                called.decision,
            ));
        }
        // A copy of every submission's answer, kept if it cannot be recorded.
        let answers: Vec<(String, Decision)> = decisions
            .iter()
            .filter(|(_, from, _, decision)| {
                *from == JobStatus::Pending && !matches!(decision, Decision::Defer { .. })
            })
            .map(|(id, _, _, decision)| (id.clone(), decision.clone()))
            .collect();
        // Files kept for answers that may not get recorded: removed unless
        // their success commits (or the answer is remembered for later).
        let kept_files: HashMap<String, Vec<String>> = decisions
            .iter()
            .filter_map(|(id, _, _, decision)| match decision {
                Decision::Kept { files, .. } if !files.is_empty() => {
                    Some((id.clone(), files.iter().map(|f| f.path.clone()).collect()))
                }
                _ => None,
            })
            .collect();
        let now = called_at;
        if decisions.is_empty() && cancels_done.is_empty() && undecodable.is_empty() {
            // Every poll answered "still running": nothing to write.
            let stored = self.store.read(jobs::next_due)?;
            report.next_due = earliest(stored, self.schedule.next_due());
            return Ok(report);
        }
        let running_ids: HashSet<String> = unwritten.keys().cloned().collect();
        let first_poll = self.settings.poll_interval_ms_min;
        let retention_ms = self.media_retention_ms;
        let charges_with = self.stripe.as_ref().map(|rail| {
            (
                rail.settings().minor_per_credit,
                rail.settings().currency.clone(),
            )
        });
        // A panic in this write (re-raised here by the store) must not lose
        // the answers either.
        let recorded = catch_unwind(AssertUnwindSafe(|| {
            self.store.write(move |tx| {
                for job_id in &cancels_done {
                    jobs::finish_upstream_cancel(tx, job_id)?;
                }
                let mut undecodable_faults = Vec::with_capacity(undecodable.len());
                for (job_id, err) in &undecodable {
                    undecodable_faults.push(fail_undecodable(tx, job_id, err, now)?);
                }
                let mut applied = Vec::with_capacity(decisions.len());
                for (id, from, possibly_sent, decision) in decisions {
                    // A task the provider accepted for a job that finished
                    // meanwhile (canceled while its submission was in flight).
                    let accepted = match (&decision, from) {
                        (Decision::Running { task_id, state }, JobStatus::Pending) => {
                            Some((task_id.clone(), state.clone()))
                        }
                        _ => None,
                    };
                    let record = Record {
                        from,
                        possibly_sent,
                        now,
                        first_poll_ms: first_poll,
                        retention_ms,
                        charges_with: charges_with.clone(),
                        unwritten: unwritten.get(&id).copied().unwrap_or_default(),
                        claimed: claimed.remove(&id),
                    };
                    let outcome = tx.nested(|tx| {
                        catch_unwind(AssertUnwindSafe(|| apply(tx, &id, decision, record)))
                            .unwrap_or_else(|panic| {
                                Err(Error::internal(format!(
                                    "recording the answer panicked: {}",
                                    panic_text(panic.as_ref())
                                )))
                            })
                    });
                    let outcome = match outcome {
                        Ok(done) => done,
                        Err(Error::InvalidTransition { .. }) => {
                            if let Some((task_id, state)) = accepted {
                                // Its upstream cancel, sent by a worker later
                                // (best effort, like any upstream cancel).
                                let orphaned = tx.nested(|tx| {
                                    jobs::cancel_orphaned_task(
                                        tx,
                                        &id,
                                        &task_id,
                                        state.as_deref(),
                                        now,
                                    )
                                });
                                if let Err(err) = orphaned {
                                    if !tx.is_open() {
                                        return Err(err);
                                    }
                                }
                            }
                            Applied::Superseded
                        }
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
                Ok((applied, undecodable_faults, jobs::next_due(tx)?))
            })
        }))
        .unwrap_or_else(|panic| {
            Err(Error::internal(format!(
                "recording answers panicked: {}",
                panic_text(panic.as_ref())
            )))
        });
        let (applied, undecodable_faults, next_due) = match recorded {
            Ok(recorded) => {
                // Callers waiting for these jobs re-read them.
                self.job_events.notify();
                recorded
            }
            Err(err) => {
                for id in &running_ids {
                    self.schedule
                        .put_back(id, now + RECORD_RETRY_MS, Unwritten::default());
                }
                for (id, answer) in answers {
                    self.unrecorded.keep(id, answer);
                }
                self.remove_unremembered(&kept_files, |_| true);
                return Err(err);
            }
        };
        let succeeded: HashSet<String> = applied
            .iter()
            .filter(|(_, outcome)| *outcome == Applied::Succeeded)
            .map(|(id, _)| id.clone())
            .collect();
        report.failed += undecodable_faults.len();
        report.faults.extend(undecodable_faults);
        let mut answers: HashMap<String, Decision> = answers.into_iter().collect();
        for (job_id, outcome) in applied {
            let was_running = running_ids.contains(&job_id);
            match &outcome {
                Applied::Running(due) => self.schedule.insert(&job_id, *due),
                Applied::Rescheduled(due) if was_running => self.schedule.insert(&job_id, *due),
                Applied::Left(_) if was_running => {
                    self.schedule
                        .put_back(&job_id, now + RECORD_RETRY_MS, Unwritten::default())
                }
                Applied::Rescheduled(_) | Applied::Deferred | Applied::Left(_) => {}
                Applied::Succeeded | Applied::Failed | Applied::Expired | Applied::Superseded => {
                    self.schedule.remove(&job_id)
                }
            }
            match outcome {
                Applied::Succeeded => report.succeeded += 1,
                Applied::Failed => report.failed += 1,
                Applied::Expired => report.expired += 1,
                // Its accepted task's upstream cancel, if any, was queued in
                // the record write.
                Applied::Superseded => report.superseded += 1,
                Applied::Running(_) | Applied::Rescheduled(_) | Applied::Deferred => {}
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
        // After the answers left for later are remembered: their files stay.
        self.remove_unremembered(&kept_files, |job_id| !succeeded.contains(job_id));
        report.next_due = earliest(next_due, self.schedule.next_due());
        Ok(report)
    }

    /// Removes the kept files of the jobs `unrecorded_success` picks whose
    /// answer is not remembered for a later step (best effort: a file left
    /// behind is only disk, never served without its record).
    fn remove_unremembered(
        &self,
        kept_files: &HashMap<String, Vec<String>>,
        unrecorded_success: impl Fn(&str) -> bool,
    ) {
        let Some(store) = &self.media else {
            return;
        };
        let remembered: HashSet<String> = self.unrecorded.job_ids().into_iter().collect();
        for (job_id, paths) in kept_files {
            if unrecorded_success(job_id) && !remembered.contains(job_id) {
                for path in paths {
                    let _ = store.remove(path);
                }
            }
        }
    }

    /// Makes every claimed job's call and sends every taken upstream
    /// cancel, each on its own thread when there is more than one, and
    /// returns the decisions and the jobs whose cancel is done with.
    fn call_all(
        &self,
        claimed: &[Job],
        possibly_sent: &HashSet<String>,
        cancels: &[Job],
    ) -> (Vec<Called>, Vec<String>) {
        let mut called = Vec::with_capacity(claimed.len());
        let mut calls = Vec::new();
        for job in claimed {
            let sent = possibly_sent.contains(&job.id);
            let mut not_asked = |decision: Decision, fault: Option<JobFault>| {
                called.push(Called {
                    job_id: job.id.clone(),
                    from: job.status,
                    possibly_sent: sent,
                    decision,
                    kind: CallKind::None,
                    fault,
                })
            };
            if job.status == JobStatus::Pending {
                if let Some(answer) = self.unrecorded.take(&job.id) {
                    not_asked(answer, None);
                    continue;
                }
                if self.unrecorded.is_full() {
                    not_asked(
                        Decision::Defer {
                            delay_ms: self.settings.poll_interval_ms_min,
                        },
                        None,
                    );
                    continue;
                }
            }
            let Some(provider) = self.providers.get(&job.provider).cloned() else {
                not_asked(
                    Decision::fail(
                        "provider_unavailable",
                        format!("provider {} is not configured", job.provider),
                    ),
                    None,
                );
                continue;
            };
            match self.slots.take(&job.provider, provider.concurrency()) {
                Some(slot) => calls.push((job, sent, provider, slot)),
                None => not_asked(busy(job.status), None),
            }
        }
        // In-process providers (the fixture) do no I/O: called here, in
        // turn, without a thread each.
        let (inline, calls): (Vec<_>, Vec<_>) = calls
            .into_iter()
            .partition(|(_, _, provider, _)| provider.in_process());
        for (job, sent, provider, _slot) in inline {
            called.push(self.call_caught(job, sent, provider.as_ref()));
        }
        let one = calls.len() + cancels.len() <= 1;
        let mut cancels_done = Vec::new();
        if one {
            for (job, sent, provider, _slot) in calls {
                called.push(self.call_caught(job, sent, provider.as_ref()));
            }
            for job in cancels {
                if self.cancel_upstream(job) {
                    cancels_done.push(job.id.clone());
                }
            }
        } else {
            std::thread::scope(|scope| {
                let jobs: Vec<_> = calls
                    .into_iter()
                    .map(|(job, sent, provider, slot)| {
                        scope.spawn(move || {
                            let _slot = slot;
                            self.call_caught(job, sent, provider.as_ref())
                        })
                    })
                    .collect();
                let sends: Vec<_> = cancels
                    .iter()
                    .map(|job| scope.spawn(move || (job.id.clone(), self.cancel_upstream(job))))
                    .collect();
                for handle in jobs {
                    // call_caught catches the provider's panics itself.
                    if let Ok(done) = handle.join() {
                        called.push(done);
                    }
                }
                for handle in sends {
                    if let Ok((job_id, true)) = handle.join() {
                        cancels_done.push(job_id);
                    }
                }
            });
        }
        (called, cancels_done)
    }

    /// Sends a job's upstream cancel; true when it is done with (sent, or
    /// refused for good), false to try again later.
    fn cancel_upstream(&self, job: &Job) -> bool {
        let Some(provider) = self.providers.get(&job.provider) else {
            return true;
        };
        let Ok(context) = JobContext::of(job) else {
            return true;
        };
        let call = context.provider_job(self, job, false, provider.webhooks());
        match catch_unwind(AssertUnwindSafe(|| provider.cancel(&call))) {
            Ok(Ok(())) | Ok(Err(ProviderError::Permanent { .. })) | Err(_) => true,
            Ok(Err(_)) => false,
        }
    }

    /// [`Gate::call`] for one job, failing that job alone if its stored
    /// data does not decode or its provider (or media store) panics.
    fn call_caught(&self, job: &Job, possibly_sent: bool, provider: &dyn Provider) -> Called {
        let kind = match (job.status, &job.pending_outputs) {
            (JobStatus::Pending, _) => CallKind::Submitted,
            (_, Some(_)) => CallKind::Collected,
            _ => CallKind::Polled,
        };
        let (decision, fault) =
            match catch_unwind(AssertUnwindSafe(|| self.call(job, possibly_sent, provider))) {
                Ok(Ok(decision)) => {
                    let fault = decision.is_invalid_answer().then(|| JobFault {
                        job_id: job.id.clone(),
                        detail: match &decision {
                            Decision::Fail { message, .. } => {
                                format!("invalid provider answer: {message}")
                            }
                            _ => "invalid provider answer".to_owned(),
                        },
                    });
                    (decision, fault)
                }
                Ok(Err(err)) => {
                    let detail = err.to_string();
                    (
                        Decision::fail("internal", detail.clone()),
                        Some(JobFault {
                            job_id: job.id.clone(),
                            detail,
                        }),
                    )
                }
                Err(panic) => {
                    let detail = format!("the provider panicked: {}", panic_text(panic.as_ref()));
                    (
                        Decision::fail("internal", detail.clone()),
                        Some(JobFault {
                            job_id: job.id.clone(),
                            detail,
                        }),
                    )
                }
            };
        Called {
            job_id: job.id.clone(),
            from: job.status,
            possibly_sent,
            decision,
            kind,
            fault,
        }
    }

    /// Asks a claimed job's provider the next question (submit, reconcile
    /// or poll), keeps a finished job's outputs, and decides what to
    /// record. No database access. Fails only if the job's stored data does
    /// not decode.
    fn call(&self, job: &Job, possibly_sent: bool, provider: &dyn Provider) -> Result<Decision> {
        let context = JobContext::of(job)?;
        let counters = Counters::of(job);
        let timing = self.timing();
        let call = context.provider_job(self, job, possibly_sent, provider.webhooks());
        let decision = match job.status {
            JobStatus::Pending => {
                let idempotent = provider.idempotent_submit();
                if possibly_sent && !idempotent {
                    let why =
                        "an earlier submission's outcome is unknown (a restart or a lost answer)";
                    after_reconcile(provider.reconcile(&call), why, counters, timing)
                } else {
                    match after_submit(provider.submit(&call), counters, idempotent, timing) {
                        Step::Decided(decision) => decision,
                        Step::Reconcile { message } => after_reconcile(
                            provider.reconcile(&call),
                            &format!("the submission's answer was lost: {message}"),
                            counters,
                            timing,
                        ),
                    }
                }
            }
            JobStatus::Running => match &job.pending_outputs {
                Some(pending) => {
                    let pending: PendingOutputs = serde_json::from_str(pending).map_err(|err| {
                        Error::corrupt(format!(
                            "stored pending outputs of {} do not decode: {err}",
                            job.id
                        ))
                    })?;
                    Decision::Succeed {
                        task_id: None,
                        completion: pending.completion(),
                    }
                }
                None => after_poll(provider.poll(&call), counters, timing),
            },
            // Claims take live jobs only; a terminal one is left alone.
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled | JobStatus::Expired => {
                Decision::Defer { delay_ms: 0 }
            }
        };
        Ok(match decision {
            Decision::Succeed {
                task_id,
                completion,
            } => match self.keep(job, task_id, completion, counters, timing) {
                Decision::Kept {
                    task_id,
                    outputs,
                    files,
                    seed,
                    usage,
                    charge_micros: _,
                } => Decision::Kept {
                    // The least of what was used and what was delivered.
                    charge_micros: [
                        self.usage_charge(job, usage.as_ref()),
                        self.delivery_charge(job, context.estimate.units.count, outputs.len()),
                    ]
                    .into_iter()
                    .flatten()
                    .min(),
                    task_id,
                    outputs,
                    files,
                    seed,
                    usage,
                },
                other => other,
            },
            other => other,
        })
    }

    /// What a success costs by its usage, for a model priced by usage whose
    /// upstream said what it used; `None` (the estimate, which is the hold)
    /// otherwise.
    fn usage_charge(&self, job: &Job, usage: Option<&Usage>) -> Option<i64> {
        let usage = usage?;
        let catalog = self.catalog_version(&job.price_version).ok()?;
        let model = catalog.models.iter().find(|m| m.model == job.model)?;
        let price = model.usage_price.as_ref()?;
        Some(price.charge_micros(
            usage.input_tokens.unwrap_or(0),
            usage.output_tokens.unwrap_or(0),
            usage.media_ms.unwrap_or(0),
            job.estimate_micros,
        ))
    }

    /// What a success costs when the upstream delivered fewer images than
    /// were priced (`count` 4, three images): the estimate scaled to what
    /// was delivered, rounded up to the micro-credit; `None` when all were
    /// delivered or the model is not priced per image.
    fn delivery_charge(&self, job: &Job, priced: Option<u32>, delivered: usize) -> Option<i64> {
        let priced = i128::from(priced?);
        let delivered = i128::try_from(delivered).ok()?;
        if delivered >= priced || priced == 0 {
            return None;
        }
        let catalog = self.catalog_version(&job.price_version).ok()?;
        let model = catalog.models.iter().find(|m| m.model == job.model)?;
        if model.unit != crate::pricing::PriceUnit::Image {
            return None;
        }
        let scaled = (i128::from(job.estimate_micros) * delivered + priced - 1) / priced;
        i64::try_from(scaled).ok()
    }

    /// Keeps a finished job's outputs: served ones as they are; the others
    /// copied into the media store, or, on a gate without one, remote ones
    /// recorded under their upstream URLs.
    fn keep(
        &self,
        job: &Job,
        task_id: Option<String>,
        completion: Completion,
        counters: Counters,
        timing: Timing,
    ) -> Decision {
        let hosted: Vec<Output> = completion
            .artifacts
            .iter()
            .filter_map(|artifact| match artifact {
                Artifact::Hosted(output) => Some(output.clone()),
                _ => None,
            })
            .collect();
        if hosted.len() == completion.artifacts.len() {
            return Decision::Kept {
                task_id,
                outputs: hosted,
                files: Vec::new(),
                seed: completion.seed,
                usage: completion.usage,
                charge_micros: None,
            };
        }
        if !hosted.is_empty() {
            return Decision::fail(
                decide::INVALID_ANSWER,
                "the provider mixed outputs it serves with outputs to keep",
            );
        }
        let Some(store) = &self.media else {
            return match unkept_outputs(&completion) {
                Some(outputs) => Decision::Kept {
                    task_id,
                    outputs,
                    files: Vec::new(),
                    seed: completion.seed,
                    usage: completion.usage,
                    charge_micros: None,
                },
                None => Decision::fail(
                    "output_not_kept",
                    format!(
                        "the provider answered its outputs inline and no media store is \
                         configured to keep them ({})",
                        decide::UPSTREAM_MAY_HAVE_BILLED
                    ),
                ),
            };
        };
        let kept = store.keep_at_most(
            &job.id,
            &job.product,
            &completion.artifacts,
            self.providers.download_bytes_max(&job.provider),
        );
        let context = KeepContext {
            task_id,
            pending_outputs: PendingOutputs::of(&completion),
            completion,
            output_url_base: self.output_url_base(job),
        };
        after_keep(kept, context, counters, timing)
    }
}

/// The outputs a gate without a media store records: remote ones under
/// their upstream URLs; `None` if any came inline.
fn unkept_outputs(completion: &Completion) -> Option<Vec<Output>> {
    completion
        .artifacts
        .iter()
        .map(|artifact| match artifact {
            Artifact::Remote { url, mime } => Some(Output {
                url: url.clone(),
                mime: mime
                    .clone()
                    .unwrap_or_else(|| "application/octet-stream".to_owned()),
                file: None,
            }),
            Artifact::Hosted(output) => Some(output.clone()),
            Artifact::Inline { .. } => None,
        })
        .collect()
}

/// A job over its provider's concurrency limit: not asked, looked at again
/// shortly (a pending one given back unsubmitted).
fn busy(status: JobStatus) -> Decision {
    match status {
        JobStatus::Pending => Decision::Defer {
            delay_ms: BUSY_RETRY_MS,
        },
        _ => Decision::Retry {
            delay_ms: BUSY_RETRY_MS,
            add_polls: 0,
            add_poll_errors: 0,
            message: None,
            not_sent: false,
        },
    }
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
    /// How many expired.
    expired: usize,
    /// Overdue jobs that changed meanwhile and were left alone.
    superseded: usize,
    /// Overdue rows that did not decode (failed instead).
    faults: Vec<JobFault>,
}

/// Expires up to [`jobs::EXPIRE_JOBS_BATCH_MAX`] overdue live jobs
/// (releasing their holds, queueing the upstream cancel of those the
/// provider has), each under its own nested savepoint.
fn expire_overdue(tx: &Tx<'_>, now: UnixMillis) -> Result<Expiry> {
    let overdue = jobs::overdue(tx, now)?;
    let mut expired = 0;
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
        let done = tx.nested(|tx| {
            let done = finish_unpaid(tx, &job.id, job.status, JobStatus::Expired, change, now)?;
            if job.status == JobStatus::Running {
                jobs::queue_upstream_cancel(tx, &done, now)?;
            }
            Ok(done)
        });
        match done {
            Ok(_) => expired += 1,
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

/// How a decision ended up recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Applied {
    /// Now running, first polled at this time.
    Running(UnixMillis),
    /// Still live, next looked at at this time.
    Rescheduled(UnixMillis),
    Deferred,
    Succeeded,
    Failed,
    Expired,
    Superseded,
    /// Not recorded (why): left for a later step.
    Left(String),
}

/// The circumstances of one answer's record.
struct Record {
    /// The status the job had when claimed.
    from: JobStatus,
    /// Whether an earlier submission may have reached the provider.
    possibly_sent: bool,
    now: UnixMillis,
    first_poll_ms: i64,
    /// How long kept outputs are served.
    retention_ms: i64,
    /// What an auto top-up charges in (the price of a credit in minor
    /// units, the currency), when Stripe is configured.
    charges_with: Option<(rust_decimal::Decimal, String)>,
    /// Polls of a running job not written yet, written with this answer.
    unwritten: Unwritten,
    /// The job as claimed (its fixed fields: account, hold, estimate).
    claimed: Option<Job>,
}

/// Records one decision for a job still in `record.from`, with its ledger
/// effect.
fn apply(tx: &Tx<'_>, job_id: &str, decision: Decision, record: Record) -> Result<Applied> {
    let now = record.now;
    let to_running = |task_id: String, change: Change| {
        let first_poll = change.next_run_at.unwrap_or(now + record.first_poll_ms);
        let change = Change {
            provider_task_id: Some(task_id),
            next_run_at: Some(first_poll),
            ..change
        };
        jobs::transition_quiet(
            tx,
            job_id,
            JobStatus::Pending,
            JobStatus::Running,
            change,
            now,
        )
        .map(|()| first_poll)
    };
    let unwritten = record.unwritten;
    match decision {
        Decision::Running { task_id, state } => {
            let change = Change {
                provider_state: state,
                ..Change::default()
            };
            Ok(Applied::Running(to_running(task_id, change)?))
        }
        Decision::Succeed { .. } => Err(Error::internal(
            "a success reached recording before its outputs were kept",
        )),
        Decision::Kept {
            task_id,
            outputs,
            files,
            seed,
            usage,
            charge_micros,
        } => {
            if let Some(task_id) = task_id {
                to_running(task_id, Change::default())?;
            }
            let kept = Kept {
                outputs,
                files,
                seed,
                usage,
                charge_micros,
                retention_ms: record.retention_ms,
                charges_with: record.charges_with.clone(),
                unwritten,
            };
            Ok(
                match settle_success(tx, job_id, kept, record.claimed, now)? {
                    JobStatus::Succeeded => Applied::Succeeded,
                    _ => Applied::Expired,
                },
            )
        }
        Decision::Collect {
            task_id,
            pending_outputs,
            delay_ms,
            message,
        } => {
            if let Some(task_id) = task_id.filter(|_| record.from == JobStatus::Pending) {
                let change = Change {
                    pending_outputs: Some(pending_outputs),
                    error_message: Some(message),
                    next_run_at: Some(now + delay_ms),
                    ..Change::default()
                };
                return Ok(Applied::Running(to_running(task_id, change)?));
            }
            let plan = Reschedule {
                next_run_at: now + delay_ms,
                add_polls: unwritten.polls,
                add_poll_errors: 1 + unwritten.poll_errors,
                error_message: Some(message),
                pending_outputs: Some(pending_outputs),
                ..Reschedule::default()
            };
            jobs::reschedule(tx, job_id, JobStatus::Running, &plan, now)?;
            Ok(Applied::Rescheduled(plan.next_run_at))
        }
        Decision::Fail { code, message } => {
            let change = Change {
                error_code: Some(code),
                error_message: Some(message),
                add_polls: unwritten.polls,
                add_poll_errors: unwritten.poll_errors,
                ..Change::default()
            };
            finish_unpaid(tx, job_id, record.from, JobStatus::Failed, change, now)?;
            Ok(Applied::Failed)
        }
        Decision::Retry {
            delay_ms,
            add_polls,
            add_poll_errors,
            message,
            not_sent,
        } => {
            let plan = Reschedule {
                next_run_at: now + delay_ms,
                add_polls: add_polls + unwritten.polls,
                add_poll_errors: add_poll_errors + unwritten.poll_errors,
                error_message: message,
                not_sent: not_sent && record.from == JobStatus::Pending,
                ..Reschedule::default()
            };
            jobs::reschedule(tx, job_id, record.from, &plan, now)?;
            Ok(Applied::Rescheduled(plan.next_run_at))
        }
        Decision::Defer { delay_ms } => {
            match record.from {
                JobStatus::Pending => {
                    jobs::unclaim(tx, job_id, now + delay_ms, record.possibly_sent, now)?;
                }
                JobStatus::Running => {
                    jobs::lease_until(tx, job_id, now + delay_ms.max(BUSY_RETRY_MS))?;
                }
                _ => {}
            }
            Ok(Applied::Deferred)
        }
    }
}

/// A success with its outputs kept.
struct Kept {
    outputs: Vec<Output>,
    files: Vec<crate::media::KeptFile>,
    seed: Option<i64>,
    usage: Option<Usage>,
    charge_micros: Option<i64>,
    retention_ms: i64,
    charges_with: Option<(rust_decimal::Decimal, String)>,
    unwritten: Unwritten,
}

/// The success transaction; returns the status the job ended in.
fn settle_success(
    tx: &Tx<'_>,
    job_id: &str,
    kept: Kept,
    claimed: Option<Job>,
    now: UnixMillis,
) -> Result<JobStatus> {
    // Only fields fixed at submission are read (the status change below is
    // guarded by the status), so the claimed copy serves.
    let job = match claimed {
        Some(job) => job,
        None => jobs::get(tx, job_id)?,
    };
    let capture_id = format!("capture:{job_id}");
    // Never above the hold; the rest of the hold returns to the wallet. A
    // held success costs at least one micro-credit: a capture moves money.
    let floor = i64::from(job.hold_id.is_some()).min(job.estimate_micros);
    let charge = kept
        .charge_micros
        .unwrap_or(job.estimate_micros)
        .clamp(floor, job.estimate_micros);
    if let Some(hold_id) = &job.hold_id {
        match ledger::capture(tx, &capture_id, hold_id, charge, now) {
            Ok(_) => {}
            Err(Error::HoldExpired { .. } | Error::HoldAlreadyResolved { .. }) => {
                let change = Change {
                    error_code: Some("expired".into()),
                    error_message: Some("the result arrived after the job's hold expired".into()),
                    add_polls: kept.unwritten.polls,
                    add_poll_errors: kept.unwritten.poll_errors,
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
    let usage = kept
        .usage
        .map(|usage| serde_json::to_string(&usage))
        .transpose()
        .map_err(|err| Error::internal(format!("usage cannot be encoded: {err}")))?;
    let change = Change {
        outputs: Some(kept.outputs),
        seed: kept.seed,
        charged_micros: Some(charge),
        usage,
        add_polls: kept.unwritten.polls,
        add_poll_errors: kept.unwritten.poll_errors,
        ..Change::default()
    };
    jobs::transition_quiet(
        tx,
        job_id,
        JobStatus::Running,
        JobStatus::Succeeded,
        change,
        now,
    )?;
    // What the bookkeeping below reads of the job (ids, account, model,
    // status, charge), as just written: not read back.
    let succeeded = Job {
        status: JobStatus::Succeeded,
        charged_micros: Some(charge),
        finished_at: Some(now),
        ..job
    };
    record_kept_files(tx, job_id, &kept.files, now, kept.retention_ms)?;
    crate::spendcaps::give_back(tx, job_id, charge)?;
    super::outbox::job_finished(tx, &succeeded, now)?;
    if succeeded.hold_id.is_some() {
        super::outbox::balance_moved(tx, &succeeded.account_id, now)?;
        if let Some((minor_per_credit, currency)) = &kept.charges_with {
            super::autotopup::after_capture(
                tx,
                &succeeded.account_id,
                Some(*minor_per_credit),
                currency,
                now,
            )?;
        }
    }
    let transfer = succeeded.hold_id.as_ref().map(|_| capture_id.as_str());
    jobs::record_usage(tx, &succeeded, transfer, charge, now)?;
    Ok(JobStatus::Succeeded)
}

/// Records the files a success kept (none for served or unkept outputs),
/// served until `retention_ms` from now.
fn record_kept_files(
    tx: &Tx<'_>,
    job_id: &str,
    files: &[crate::media::KeptFile],
    now: UnixMillis,
    retention_ms: i64,
) -> Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    crate::media::records::record(tx, job_id, files, now, now.saturating_add(retention_ms))
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

    fn provider_job<'a>(
        &'a self,
        gate: &'a Gate,
        job: &'a Job,
        resubmission: bool,
        webhooks: bool,
    ) -> ProviderJob<'a> {
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
            resubmission,
            polls: job.polls,
            poll_errors: job.poll_errors,
            seed: seed_of(&job.fingerprint),
            output_url_base: gate.output_url_base(job),
            provider_state: self.provider_state.as_ref(),
            webhook_url: webhooks.then(|| gate.webhook_url(&job.provider)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_pending_job_starts_while_the_poll_schedule_is_full() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (gate, clock, account) = crate::gate::test_support::funded_gate(dir.path(), "full.db");
        let far = crate::clock::Clock::now(clock.as_ref()) + 3_600_000;
        gate.schedule.rebuild(
            (0..RUNNING_JOBS_MAX)
                .map(|i| (format!("job_elsewhere_{i}"), far))
                .collect(),
        );
        let body = serde_json::json!({"request_id": "r", "model": "z-image", "prompt": "x"});
        let job = gate.submit(&account, &body).expect("submit").job;

        let report = gate.run_due_work(8).expect("step");
        assert_eq!(report.submitted, 0, "not handed to the provider");
        let after = gate.job(&job.id).expect("job");
        assert_eq!(
            (after.status, after.submit_attempts, after.lease_until),
            (JobStatus::Pending, 0, None),
            "not even claimed"
        );

        gate.schedule.remove("job_elsewhere_0");
        let report = gate.run_due_work(8).expect("step");
        assert_eq!(report.submitted, 1, "room for one");
        assert_eq!(gate.job(&job.id).expect("job").status, JobStatus::Running);
    }

    #[test]
    fn with_too_many_unrecorded_answers_a_pending_job_is_given_back_unsubmitted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (gate, clock, account) = crate::gate::test_support::funded_gate(dir.path(), "cap.db");
        for i in 0..UNRECORDED_ANSWERS_MAX {
            gate.unrecorded.keep(
                format!("job_elsewhere_{i}"),
                Decision::Defer { delay_ms: 0 },
            );
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
}
