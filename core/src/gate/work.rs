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

use crate::clock::UnixMillis;
use crate::error::{Error, Result};
use crate::gate::generate::{finish_unpaid, seed_of};
use crate::gate::Gate;
use crate::jobs::{self, Change, Job, JobStatus, Reschedule};
use crate::ledger;
use crate::pricing::Estimate;
use crate::providers::{Completion, PollStatus, ProviderError, ProviderJob, Submission};
use crate::request::GenerateRequest;
use crate::store::Tx;

/// How long a worker holds a claimed job before another may take it.
pub const LEASE_MS: i64 = 60_000;
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

/// What one worker step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
    /// The earliest time a live job needs a worker again.
    pub next_due: Option<UnixMillis>,
}

/// Exponential backoff from `base`, doubling per step, capped at `max`.
fn backoff(base: i64, step: i64, max: i64) -> i64 {
    let shift = step.clamp(0, 16) as u32;
    base.saturating_mul(1_i64 << shift).min(max)
}

impl Gate {
    /// Drops every worker lease: call once when starting workers, so jobs
    /// claimed by a process that died are resumed at once. Returns how many
    /// leases were dropped.
    pub fn recover(&self) -> Result<usize> {
        self.store.write(jobs::release_leases)
    }

    /// Runs one worker step over at most `limit` due jobs (see the module
    /// documentation).
    pub fn run_due_work(&self, limit: usize) -> Result<WorkReport> {
        let mut report = WorkReport::default();
        let now = self.clock.now();
        self.expire_overdue(now, &mut report)?;
        // The ledger's own backstop: holds past their deadline whose job
        // somehow did not release them.
        self.store.write(move |tx| ledger::expire_due(tx, now))?;

        let claimed = self
            .store
            .write(move |tx| jobs::claim_due(tx, now, now + LEASE_MS, limit))?;
        for job in claimed {
            match self.advance(&job, &mut report) {
                Ok(()) => {}
                Err(Error::InvalidTransition { .. }) => report.superseded += 1,
                Err(other) => return Err(other),
            }
        }
        report.next_due = self.store.read(jobs::next_due)?;
        Ok(report)
    }

    fn expire_overdue(&self, now: UnixMillis, report: &mut WorkReport) -> Result<()> {
        let overdue = self.store.read(|conn| jobs::overdue(conn, now))?;
        for job in overdue {
            let (id, from) = (job.id.clone(), job.status);
            let expired = self.store.write(move |tx| {
                let change = Change {
                    error_code: Some("expired".into()),
                    error_message: Some("the job passed its deadline before it finished".into()),
                    ..Change::default()
                };
                finish_unpaid(tx, &id, from, JobStatus::Expired, change, now)
            });
            match expired {
                Ok(job) => {
                    report.expired += 1;
                    if from == JobStatus::Running {
                        self.cancel_at_provider(&job);
                    }
                }
                Err(Error::InvalidTransition { .. }) => report.superseded += 1,
                Err(other) => return Err(other),
            }
        }
        Ok(())
    }

    /// Asks the job's provider to stop it; failures are ignored (the job is
    /// already finished on our side and nothing more will be charged).
    pub(crate) fn cancel_at_provider(&self, job: &Job) {
        if let (Some(provider), Ok(context)) =
            (self.providers.get(&job.provider), JobContext::of(job))
        {
            let _ = provider.cancel(&context.provider_job(self, job));
        }
    }

    /// Takes one claimed job one step further.
    fn advance(&self, job: &Job, report: &mut WorkReport) -> Result<()> {
        let context = JobContext::of(job)?;
        let Some(provider) = self.providers.get(&job.provider).cloned() else {
            let reason = format!("provider {} is not configured", job.provider);
            return self.fail(job, "provider_unavailable", &reason, report);
        };
        let call = context.provider_job(self, job);
        match job.status {
            JobStatus::Pending => {
                report.submitted += 1;
                if call.resubmission && !provider.idempotent_submit() {
                    let reason = "a submission may have reached the provider before a restart, \
                                  and it cannot be retried safely";
                    return self.fail(job, "submission_uncertain", reason, report);
                }
                match provider.submit(&call) {
                    Ok(Submission::Accepted { task_id }) => self.record_running(job, task_id),
                    Ok(Submission::Completed {
                        task_id,
                        completion,
                    }) => {
                        self.record_running(job, task_id)?;
                        self.record_success(job, completion, report)
                    }
                    Err(ProviderError::Transient { message }) => {
                        if job.submit_attempts >= SUBMIT_ATTEMPTS_MAX {
                            return self.fail(job, "provider_unavailable", &message, report);
                        }
                        report.retried += 1;
                        let delay = backoff(
                            self.settings.poll_interval_ms_min,
                            job.submit_attempts - 1,
                            self.settings.submit_backoff_ms_max,
                        );
                        self.reschedule(job, delay, 0, 0, Some(message))
                    }
                    Err(ProviderError::Permanent { code, message }) => {
                        self.fail(job, &code, &message, report)
                    }
                }
            }
            JobStatus::Running => {
                report.polled += 1;
                match provider.poll(&call) {
                    Ok(PollStatus::Running) => {
                        let delay = backoff(
                            self.settings.poll_interval_ms_min,
                            job.polls + 1,
                            self.settings.poll_interval_ms_max,
                        );
                        self.reschedule(job, delay, 1, 0, None)
                    }
                    Ok(PollStatus::Succeeded(completion)) => {
                        self.record_success(job, completion, report)
                    }
                    Ok(PollStatus::Failed { code, message }) => {
                        self.fail(job, &code, &message, report)
                    }
                    Err(ProviderError::Transient { message }) => {
                        if job.poll_errors + 1 >= POLL_ERRORS_MAX {
                            return self.fail(job, "provider_unavailable", &message, report);
                        }
                        report.retried += 1;
                        let delay = backoff(
                            self.settings.poll_interval_ms_min,
                            job.poll_errors + 1,
                            self.settings.poll_interval_ms_max,
                        );
                        self.reschedule(job, delay, 0, 1, Some(message))
                    }
                    Err(ProviderError::Permanent { code, message }) => {
                        self.fail(job, &code, &message, report)
                    }
                }
            }
            terminal => unreachable!("claimed jobs are live, not {terminal:?}"),
        }
    }

    fn record_running(&self, job: &Job, task_id: String) -> Result<()> {
        let now = self.clock.now();
        let first_poll = self.settings.poll_interval_ms_min;
        let id = job.id.clone();
        self.store.write(move |tx| {
            let change = Change {
                provider_task_id: Some(task_id),
                next_run_at: Some(now + first_poll),
                ..Change::default()
            };
            jobs::transition(tx, &id, JobStatus::Pending, JobStatus::Running, change, now)
        })?;
        Ok(())
    }

    /// Success: the job succeeds, its hold is captured for exactly the
    /// estimate, and its usage event is written, in one transaction. If the
    /// ledger refuses the capture (the hold passed its deadline) the job
    /// expires instead and nothing is charged.
    fn record_success(
        &self,
        job: &Job,
        completion: Completion,
        report: &mut WorkReport,
    ) -> Result<()> {
        let now = self.clock.now();
        let id = job.id.clone();
        let succeeded = self
            .store
            .write(move |tx| settle_success(tx, &id, completion, now));
        match succeeded {
            Ok(JobStatus::Succeeded) => report.succeeded += 1,
            Ok(_) => report.expired += 1,
            Err(err) => return Err(err),
        }
        Ok(())
    }

    fn fail(&self, job: &Job, code: &str, message: &str, report: &mut WorkReport) -> Result<()> {
        let now = self.clock.now();
        let (id, from) = (job.id.clone(), job.status);
        let change = Change {
            error_code: Some(code.to_owned()),
            error_message: Some(message.to_owned()),
            ..Change::default()
        };
        self.store
            .write(move |tx| finish_unpaid(tx, &id, from, JobStatus::Failed, change, now))?;
        report.failed += 1;
        Ok(())
    }

    fn reschedule(
        &self,
        job: &Job,
        delay_ms: i64,
        add_polls: i64,
        add_poll_errors: i64,
        error_message: Option<String>,
    ) -> Result<()> {
        let now = self.clock.now();
        let (id, status) = (job.id.clone(), job.status);
        let plan = Reschedule {
            next_run_at: now + delay_ms,
            add_polls,
            add_poll_errors,
            error_message,
        };
        self.store
            .write(move |tx| jobs::reschedule(tx, &id, status, &plan, now))?;
        Ok(())
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
        outputs: Some(completion.outputs),
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

/// A job's stored request and estimate, decoded for a provider call.
struct JobContext {
    request: GenerateRequest,
    estimate: Estimate,
}

impl JobContext {
    fn of(job: &Job) -> Result<JobContext> {
        let corrupt = |what: &str, err: serde_json::Error| {
            Error::invalid(
                what,
                format!("stored {what} of {} does not decode: {err}", job.id),
            )
        };
        Ok(JobContext {
            request: serde_json::from_str(&job.request).map_err(|e| corrupt("request", e))?,
            estimate: serde_json::from_str(&job.estimate).map_err(|e| corrupt("estimate", e))?,
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let steps: Vec<i64> = (0..7).map(|s| backoff(1_000, s, 15_000)).collect();
        assert_eq!(steps, [1_000, 2_000, 4_000, 8_000, 15_000, 15_000, 15_000]);
        assert_eq!(backoff(1_000, 99, 30_000), 30_000);
    }
}
