//! Gate operations on generation jobs: the idempotent submit (normalise,
//! price, count against the account's plan cap, hold and record in one
//! transaction), reading a job, cancelling it, and listing jobs. Every status change commits with its ledger effect.

use std::sync::Arc;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::accounts;
use crate::error::{Error, Result};
use crate::gate::Gate;
use crate::identity::{self, Principal};
use crate::ids::random_id;
use crate::jobs::{self, Change, Job, JobFilter, JobStatus, NewJob};
use crate::ledger;
use crate::money::to_credits;
use crate::plans;
use crate::pricing::{self, Catalog, Estimate, EstimateRequest, RequestedUnits};
use crate::ratelimit::Quota;
use crate::request::{normalize, GenerateRequest};
use crate::spendcaps;
use crate::store::Tx;

/// The result of a submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The job (the first one, on a replay).
    pub job: Job,
    /// True when the request id was seen before with the same request:
    /// nothing more was held or charged.
    pub replayed: bool,
    /// Where the account stands today against its plan's cap on the job's
    /// product (this job counted), for `X-RateLimit-*` headers; `None` when
    /// its plan does not cap the product.
    pub quota: Option<Quota>,
    /// The automatic top-up this submit made, when the account lacked
    /// credits and has auto top-up on: `applied` (credits bought, the job
    /// accepted). `None` when none was tried.
    pub auto_topup: Option<crate::gate::autotopup::AutoTopUpOutcome>,
}

/// What pricing and routing decided for a request, before the write.
struct Prepared {
    catalog: Arc<Catalog>,
    estimate: Estimate,
    provider: String,
    upstream_model: String,
}

impl Gate {
    /// Submits a generate request (the JSON body of `POST /v1/generate`) for
    /// `account_id`. In one transaction: the idempotency check on
    /// `request_id`, one job of the product counted against the account's
    /// plan cap for today (over it: [`Error::PlanLimitReached`]), the hold
    /// of the estimate, and the pending job. The same `request_id` with the
    /// same request returns the same job and holds and counts nothing more;
    /// with another request it is [`Error::IdempotencyConflict`]. Any
    /// refusal records nothing (nor counts), so the caller may retry the
    /// same `request_id` once the cause is fixed.
    pub fn submit(&self, account_id: &str, body: &Value) -> Result<Submitted> {
        self.submit_checked(account_id, None, body)
    }

    /// [`Gate::submit`] for an authenticated caller: the job is the
    /// caller's account's, and the caller must hold the scope of the
    /// model's product (`image`, `video`, ...; `admin` holds all). A missing
    /// scope is [`Error::Forbidden`] and records nothing.
    pub fn submit_for(&self, principal: &Principal, body: &Value) -> Result<Submitted> {
        self.submit_checked(&principal.account_id, Some(principal), body)
    }

    /// [`Gate::submit_for`] of a request a dialect decoded itself (an
    /// OpenAI-style call, an AgentName `type`): checked as
    /// [`GenerateRequest::validate`] says, then the same idempotent submit,
    /// so a request id means the same job whichever dialect carried it.
    pub fn submit_request_for(
        &self,
        principal: &Principal,
        request: GenerateRequest,
    ) -> Result<Submitted> {
        request.validate()?;
        self.submit_typed(&principal.account_id, Some(principal), request)
    }

    fn submit_checked(
        &self,
        account_id: &str,
        principal: Option<&Principal>,
        body: &Value,
    ) -> Result<Submitted> {
        self.submit_typed(account_id, principal, normalize(body)?)
    }

    /// Submits once; a refusal for want of credits of an account with auto
    /// top-up on buys its amount and submits again, once.
    fn submit_typed(
        &self,
        account_id: &str,
        principal: Option<&Principal>,
        request: GenerateRequest,
    ) -> Result<Submitted> {
        let again = self.stripe.is_some().then(|| request.clone());
        match self.submit_once(account_id, principal, request) {
            Err(Error::InsufficientCredits {
                required_micros,
                available_micros,
                suggestion,
            }) => {
                let short = Error::InsufficientCredits {
                    required_micros,
                    available_micros,
                    suggestion,
                };
                let Some(request) = again else {
                    return Err(short);
                };
                match self.auto_topup_for(account_id, required_micros - available_micros) {
                    Some(outcome) if outcome.applied => {
                        let mut submitted = self.submit_once(account_id, principal, request)?;
                        submitted.auto_topup = Some(outcome);
                        Ok(submitted)
                    }
                    _ => Err(short),
                }
            }
            other => other,
        }
    }

    fn submit_once(
        &self,
        account_id: &str,
        principal: Option<&Principal>,
        request: GenerateRequest,
    ) -> Result<Submitted> {
        let request_id = request
            .request_id
            .clone()
            .ok_or_else(|| Error::invalid("request_id", "is required"))?;
        let fingerprint = request.fingerprint();
        let request_json = serde_json::to_string(&request)
            .map_err(|err| Error::internal(format!("a request cannot be encoded: {err}")))?;
        // Pricing reads immutable catalogs, so it is done before the write;
        // its error is raised inside, after the idempotency check, so that a
        // replay still answers even if its model has since gone.
        let prepared = self.prepare(&request);
        if let (Some(principal), Ok(prepared)) = (principal, &prepared) {
            principal.require_scope(&prepared.estimate.product)?;
        }
        let now = self.clock.now();
        let deadline = now + self.settings.job_deadline_ms;
        let hold_deadline = deadline + self.settings.hold_grace_ms;
        let account_id = account_id.to_owned();
        let spending_key = principal.map(|principal| principal.key_id().to_owned());
        self.store.write(move |tx| {
            let spending_key = spending_key.as_deref();
            if let Some(existing) = jobs::find_by_request(tx, &account_id, &request_id)? {
                if existing.fingerprint == fingerprint {
                    let account = accounts::get(tx, &account_id)?;
                    let quota =
                        plans::usage(tx, &account.plan, &account_id, &existing.product, now)?
                            .map(super::plans::quota_of);
                    return Ok(Submitted {
                        job: existing,
                        replayed: true,
                        quota,
                        auto_topup: None,
                    });
                }
                return Err(Error::IdempotencyConflict { request_id });
            }
            let prepared = prepared?;
            // The account must exist (a free job holds nothing), and its
            // plan may cap the product: counted here, in the hold's
            // transaction, so concurrent submits cannot pass the cap.
            let account = accounts::get(tx, &account_id)?;
            let quota = plans::take(
                tx,
                &account.plan,
                &account_id,
                &prepared.estimate.product,
                now,
            )?
            .map(super::plans::quota_of);
            let job_id = tx.new_sortable_id("job_", now);
            let micros = prepared.estimate.micros;
            let hold_id = (micros > 0).then(|| format!("hold:{job_id}"));
            if let Some(hold_id) = &hold_id {
                let memo = format!("{} {}", prepared.estimate.model, request_id);
                let hold = ledger::NewHold {
                    id: hold_id,
                    account_id: &account_id,
                    amount: micros,
                    deadline: Some(hold_deadline),
                    memo: &memo,
                };
                let held = ledger::hold_minted(tx, &hold, now);
                if let Err(Error::InsufficientCredits {
                    required_micros,
                    available_micros,
                    ..
                }) = held
                {
                    return Err(Error::InsufficientCredits {
                        required_micros,
                        available_micros,
                        suggestion: Some(suggest(&prepared, available_micros)),
                    });
                }
                held?;
            }
            let new = NewJob {
                id: job_id,
                account_id: account_id.clone(),
                request_id,
                fingerprint,
                request: request_json,
                product: prepared.estimate.product.clone(),
                model: prepared.estimate.model.clone(),
                price_version: prepared.estimate.price_version.clone(),
                estimate_micros: micros,
                estimate: serde_json::to_string(&prepared.estimate).map_err(|err| {
                    Error::internal(format!("an estimate cannot be encoded: {err}"))
                })?,
                hold_id,
                usage_event_id: tx.new_sortable_id("use_", now),
                provider: prepared.provider,
                upstream_model: prepared.upstream_model,
                deadline,
                // An unguessable capability (a secret): the OS's
                // randomness, never the gate's IdSource.
                output_token: random_id(""),
            };
            let job = jobs::insert(tx, new, now)?;
            // A capped key counts the hold against its day and month here,
            // in the hold's transaction: past a cap the whole submit rolls
            // back.
            if let Some(key_id) = spending_key {
                spendcaps::take(tx, key_id, &job.id, micros, now)?;
            }
            if job.hold_id.is_some() {
                super::outbox::balance_moved(tx, &account_id, now)?;
            }
            Ok(Submitted {
                job,
                replayed: false,
                quota,
                auto_topup: None,
            })
        })
    }

    /// Prices and routes a request; checks what the model requires.
    fn prepare(&self, request: &GenerateRequest) -> Result<Prepared> {
        let catalog = self.catalog(request.price_version.as_deref())?;
        let estimate = pricing::estimate(&catalog, &request.estimate_request())?;
        let spec = catalog.model(&estimate.model).ok_or_else(|| {
            Error::internal(format!(
                "model {} was priced but is missing from its catalog",
                estimate.model
            ))
        })?;
        if spec.needs_prompt()
            && request
                .prompt
                .as_deref()
                .is_none_or(|p| p.trim().is_empty())
        {
            return Err(Error::invalid(
                "prompt",
                format!("is required for {} ({})", spec.model, spec.category),
            ));
        }
        if self.providers.get(&spec.provider).is_none() {
            return Err(Error::ProviderUnavailable {
                provider: spec.provider.clone(),
            });
        }
        Ok(Prepared {
            provider: spec.provider.clone(),
            upstream_model: spec.upstream_model.clone(),
            catalog: catalog.clone(),
            estimate,
        })
    }

    /// An account's job by its request id (or its task id). Another
    /// account's job is `not_found`, so its existence does not leak.
    pub fn job_for(&self, account_id: &str, request_or_task_id: &str) -> Result<Job> {
        self.store.read(|conn| {
            if let Some(job) = jobs::find_by_request(conn, account_id, request_or_task_id)? {
                return Ok(job);
            }
            match jobs::get(conn, request_or_task_id) {
                Ok(job) if job.account_id == account_id => Ok(job),
                _ => Err(Error::NotFound {
                    what: "job",
                    id: request_or_task_id.to_owned(),
                }),
            }
        })
    }

    /// A job by id (operators; no account check).
    pub fn job(&self, job_id: &str) -> Result<Job> {
        let job = self.store.read(|conn| jobs::get(conn, job_id))?;
        Ok(self.with_unwritten_polls(job))
    }

    /// Jobs, newest first.
    pub fn jobs(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        let jobs = self.store.read(|conn| jobs::list(conn, filter))?;
        Ok(jobs
            .into_iter()
            .map(|job| self.with_unwritten_polls(job))
            .collect())
    }

    /// A running job as its poll counters are, counting the polls the
    /// schedule holds that are not written yet.
    pub(crate) fn with_unwritten_polls(&self, mut job: Job) -> Job {
        if job.status == JobStatus::Running {
            let unwritten = self.schedule.unwritten(&job.id);
            job.polls += unwritten.polls;
            job.poll_errors += unwritten.poll_errors;
        }
        job
    }

    /// Cancels an account's live job and releases its hold, in one
    /// transaction; then asks the provider to stop (best effort). The job's
    /// status is read inside that transaction, so a job that started
    /// running meanwhile is still canceled. Canceling a canceled job again
    /// answers it as it is; another finished job is
    /// [`Error::InvalidTransition`]; another account's is `not_found`.
    pub fn cancel(&self, account_id: &str, request_or_task_id: &str) -> Result<Job> {
        // Ids and ownership never change: resolving them outside is safe.
        let job_id = self.job_for(account_id, request_or_task_id)?.id;
        let now = self.clock.now();
        let canceled = self.store.write(move |tx| {
            let current = jobs::get(tx, &job_id)?;
            let from = current.status;
            if from == JobStatus::Canceled {
                return Ok(current);
            }
            let change = Change {
                error_code: Some("canceled".into()),
                error_message: Some("canceled by its owner".into()),
                ..Change::default()
            };
            let canceled = finish_unpaid(tx, &job_id, from, JobStatus::Canceled, change, now)?;
            if from == JobStatus::Running {
                // Sent by a worker, best effort: never on the caller's thread.
                jobs::queue_upstream_cancel(tx, &canceled, now)?;
            }
            Ok(canceled)
        })?;
        self.job_events.notify();
        Ok(canceled)
    }
}

/// Moves a live job to a terminal status other than success and releases
/// its hold in the same transaction.
pub(crate) fn finish_unpaid(
    tx: &Tx<'_>,
    job_id: &str,
    from: JobStatus,
    to: JobStatus,
    change: Change,
    now: crate::clock::UnixMillis,
) -> Result<Job> {
    assert!(
        to.is_terminal() && to != JobStatus::Succeeded,
        "an unpaid end"
    );
    let job = jobs::transition(tx, job_id, from, to, change, now)?;
    if let Some(hold_id) = &job.hold_id {
        release_hold(tx, &job.id, hold_id, now)?;
    }
    spendcaps::give_back(tx, &job.id, 0)?;
    super::outbox::job_finished(tx, &job, now)?;
    if job.hold_id.is_some() {
        super::outbox::balance_moved(tx, &job.account_id, now)?;
    }
    Ok(job)
}

/// Releases a job's hold with the deterministic id `release:<job>`. A hold
/// the ledger already expired (its backstop sweep) is already released.
pub(crate) fn release_hold(
    tx: &Tx<'_>,
    job_id: &str,
    hold_id: &str,
    now: crate::clock::UnixMillis,
) -> Result<()> {
    match ledger::release(tx, &format!("release:{job_id}"), hold_id, now) {
        Ok(_) => Ok(()),
        Err(Error::HoldAlreadyResolved { resolved_by, .. })
            if resolved_by == format!("expire:{hold_id}") =>
        {
            Ok(())
        }
        Err(other) => Err(other),
    }
}

/// The most expensive model of the same product whose default request fits
/// the available balance, as advice; or a plain top-up hint.
fn suggest(prepared: &Prepared, available_micros: i64) -> String {
    let product = &prepared.estimate.product;
    let fits = prepared
        .catalog
        .models
        .iter()
        .filter(|spec| &spec.product == product && spec.model != prepared.estimate.model)
        .filter_map(|spec| {
            let request = EstimateRequest {
                product: None,
                model: spec.model.clone(),
                units: RequestedUnits::default(),
                input_image_urls: Vec::new(),
            };
            pricing::estimate(&prepared.catalog, &request).ok()
        })
        .filter(|estimate| estimate.micros <= available_micros)
        .max_by_key(|estimate| estimate.micros);
    match fits {
        Some(estimate) => format!(
            "Use a cheaper model such as {} ({} credits), or ask the owner to top up.",
            estimate.model,
            to_credits(estimate.micros)
        ),
        None => format!(
            "Ask the owner to top up: {} credits are required and {} are available.",
            to_credits(prepared.estimate.micros),
            to_credits(available_micros.max(0))
        ),
    }
}

/// The deterministic seed of a request: the first 4 bytes of the SHA-256 of
/// its fingerprint, so the same request gets the same seed.
pub(crate) fn seed_of(fingerprint: &str) -> i64 {
    let digest = Sha256::digest(fingerprint.as_bytes());
    i64::from(u32::from_be_bytes([
        digest[0], digest[1], digest[2], digest[3],
    ]))
}

/// A job output the appliance serves itself (fixture outputs).
#[derive(Debug, Clone, Copy)]
pub struct OutputFile {
    /// Its media type.
    pub mime: &'static str,
    /// Its bytes.
    pub bytes: &'static [u8],
}

impl Gate {
    /// The file behind output `index` of a succeeded job, if `token` is the
    /// job's output token (compared in constant time): the unguessable URL
    /// is the credential. Anything else is `not_found`.
    pub fn output_file(&self, job_id: &str, token: &str, index: usize) -> Result<OutputFile> {
        let not_found = || Error::NotFound {
            what: "output",
            id: format!("{job_id}/{index}"),
        };
        let job = self
            .store
            .read(|conn| jobs::get(conn, job_id))
            .map_err(|_| not_found())?;
        if !identity::constant_time_eq(job.output_token.as_bytes(), token.as_bytes())
            || job.status != JobStatus::Succeeded
        {
            return Err(not_found());
        }
        let output = job.outputs.get(index).ok_or_else(not_found)?;
        let sample = output
            .file
            .as_deref()
            .and_then(crate::providers::fixture::sample_file)
            .ok_or_else(not_found)?;
        Ok(OutputFile {
            mime: sample.mime,
            bytes: sample.bytes,
        })
    }
}
