//! What several dialects do alike, so no handler is copied: a
//! synchronous call's submit and wait (in the core, woken by the worker,
//! never polling), the request id of a call that may carry
//! `Idempotency-Key`, and the bytes of an output.

use std::time::Duration;

use creditgate::ids::random_id;
use creditgate::request::GenerateRequest;
use creditgate::{Error, Job, JobStatus, Quota, ServedOutput, Waited};

use crate::http::request::Call;

/// The header whose value becomes the request id (lowercase), in the
/// dialects whose bodies carry none.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// The request id of a call in a dialect whose body carries none: its
/// `Idempotency-Key`, else a fresh id starting with `prefix` (each call a
/// new job).
pub fn request_id(call: &Call, prefix: &str) -> String {
    call.request
        .header(IDEMPOTENCY_KEY_HEADER)
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .map_or_else(|| random_id(prefix), str::to_owned)
}

/// How a synchronous call's job ended, or that it has not yet.
#[derive(Debug)]
pub enum Ended {
    /// It succeeded: its outputs are ready.
    Succeeded(Job),
    /// It was canceled meanwhile.
    Canceled(Job),
    /// It failed or expired (`error_code`, `error_message`).
    Failed(Job),
    /// It is still running at the wait's bound, and goes on.
    StillRunning(Job),
}

/// Submits `request` for the caller and waits up to `wait` for its job in
/// the core (woken by the worker's record, never polling): how it ended,
/// with the plan quota the submit counted against.
pub fn submit_and_wait(
    call: &Call,
    request: GenerateRequest,
    wait: Duration,
) -> Result<(Ended, Option<Quota>), Error> {
    let principal = call.caller()?;
    let gate = call.gate();
    let submitted = gate.submit_request_for(principal, request)?;
    let waited = gate.wait_for_job(&principal.account_id, &submitted.job.id, wait)?;
    let ended = match waited {
        Waited::Finished(job) => match job.status {
            JobStatus::Succeeded => Ended::Succeeded(job),
            JobStatus::Canceled => Ended::Canceled(job),
            _ => Ended::Failed(job),
        },
        Waited::StillRunning(job) => Ended::StillRunning(job),
    };
    Ok((ended, submitted.quota))
}

/// The bytes of a succeeded job's output `index`, read through the gate
/// (a fixture sample, or a kept file; bounded by the media store's
/// per-file limit).
pub fn output_bytes(call: &Call, job: &Job, index: usize) -> Result<Vec<u8>, Error> {
    match call
        .gate()
        .served_output(&job.id, &job.output_token, index)?
    {
        ServedOutput::Sample(file) => Ok(file.bytes.to_vec()),
        ServedOutput::Kept(kept) => std::fs::read(&kept.path).map_err(|err| Error::Internal {
            detail: format!("kept output {} cannot be read: {err}", kept.path.display()),
        }),
    }
}
