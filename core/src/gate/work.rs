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
    /// documentation) in two writes: the first expires overdue jobs (and
    /// the ledger's overdue holds) and claims due jobs; then the provider
    /// calls happen, outside any transaction; then the second records every
    /// answer, each job under its own nested savepoint, so one job that
    /// changed meanwhile (canceled) does not undo the others.
    pub fn run_due_work(&self, limit: usize) -> Result<WorkReport> {
        let mut report = WorkReport::default();
        let now = self.clock.now();
        let step = self.store.write(move |tx| {
            let (expired, superseded) = expire_overdue(tx, now)?;
            // The ledger's own backstop: holds past their deadline whose job
            // somehow did not release them.
            ledger::expire_due(tx, now)?;
            let claimed = jobs::claim_due(tx, now, now + LEASE_MS, limit)?;
            let next_due = if claimed.is_empty() {
                jobs::next_due(tx)?
            } else {
                None
            };
            Ok((expired, superseded, claimed, next_due))
        })?;
        let (expired, superseded, claimed, next_due) = step;
        report.superseded += superseded;
        report.next_due = next_due;
        for (job, from) in expired {
            report.expired += 1;
            if from == JobStatus::Running {
                self.cancel_at_provider(&job);
            }
        }
        if claimed.is_empty() {
            return Ok(report);
        }
        let mut decisions = Vec::with_capacity(claimed.len());
        for job in &claimed {
            decisions.push((job.id.clone(), job.status, self.decide(job, &mut report)?));
        }
        let now = self.clock.now();
        let first_poll = self.settings.poll_interval_ms_min;
        let (applied, next_due) = self.store.write(move |tx| {
            let applied = decisions
                .into_iter()
                .map(|(id, from, decision)| {
                    match tx.nested(|tx| apply(tx, &id, from, decision, now, first_poll)) {
                        Err(Error::InvalidTransition { .. }) => Ok(Applied::Superseded),
                        other => other,
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            Ok((applied, jobs::next_due(tx)?))
        })?;
        report.next_due = next_due;
        for outcome in applied {
            match outcome {
                Applied::Succeeded => report.succeeded += 1,
                Applied::Failed => report.failed += 1,
                Applied::Expired => report.expired += 1,
                Applied::Superseded => report.superseded += 1,
                Applied::Running | Applied::Rescheduled => {}
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
            let _ = provider.cancel(&context.provider_job(self, job));
        }
    }

    /// Asks a claimed job's provider the next question (submit or poll) and
    /// decides what to record. No database access.
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
                    Ok(Submission::Accepted { task_id }) => Decision::Running { task_id },
                    Ok(Submission::Completed {
                        task_id,
                        completion,
                    }) => Decision::Succeed {
                        task_id: Some(task_id),
                        completion,
                    },
                    Err(ProviderError::Transient { message }) => {
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
                    Ok(PollStatus::Succeeded(completion)) => Decision::Succeed {
                        task_id: None,
                        completion,
                    },
                    Ok(PollStatus::Failed { code, message }) => Decision::fail(&code, message),
                    Err(ProviderError::Transient { message }) => {
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
            terminal => unreachable!("claimed jobs are live, not {terminal:?}"),
        })
    }
}

/// Expires up to [`jobs::EXPIRE_JOBS_BATCH_MAX`] overdue live jobs
/// (releasing their holds), each under its own nested savepoint. Returns
/// the expired jobs with the status they had, and how many changed
/// meanwhile and were left alone.
fn expire_overdue(tx: &Tx<'_>, now: UnixMillis) -> Result<(Vec<(Job, JobStatus)>, usize)> {
    let overdue = jobs::overdue(tx, now)?;
    let mut expired = Vec::with_capacity(overdue.len());
    for job in &overdue {
        let change = Change {
            error_code: Some("expired".into()),
            error_message: Some("the job passed its deadline before it finished".into()),
            ..Change::default()
        };
        match tx
            .nested(|tx| finish_unpaid(tx, &job.id, job.status, JobStatus::Expired, change, now))
        {
            Ok(done) => expired.push((done, job.status)),
            Err(Error::InvalidTransition { .. }) => {}
            Err(other) => return Err(other),
        }
    }
    let superseded = overdue.len() - expired.len();
    Ok((expired, superseded))
}

/// What a provider's answer means for a job.
#[derive(Debug)]
enum Decision {
    /// The provider accepted it: pending becomes running.
    Running { task_id: String },
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
}

impl Decision {
    fn fail(code: &str, message: impl Into<String>) -> Decision {
        Decision::Fail {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// How a decision ended up recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applied {
    Running,
    Rescheduled,
    Succeeded,
    Failed,
    Expired,
    Superseded,
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
    let to_running = |task_id: String| {
        let change = Change {
            provider_task_id: Some(task_id),
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
        Decision::Running { task_id } => {
            to_running(task_id)?;
            Ok(Applied::Running)
        }
        Decision::Succeed {
            task_id,
            completion,
        } => {
            if let Some(task_id) = task_id {
                to_running(task_id)?;
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
            };
            jobs::reschedule(tx, job_id, from, &plan, now)?;
            Ok(Applied::Rescheduled)
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
