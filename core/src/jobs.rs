//! Generation jobs: the idempotent job state machine. This module alone
//! writes `jobs` and `usage_events`, and alone changes a job's status, only
//! along the edges of [`JobStatus::can_become`]:
//!
//! ```text
//! pending ──▶ running ──▶ succeeded
//!    │           ├──────▶ failed
//!    ├───────────┼──────▶ canceled
//!    └───────────┴──────▶ expired      (and pending ──▶ failed)
//! ```
//!
//! The ledger effect of a change (capture on success, release otherwise) is
//! the facade's to compose in the same transaction; this module records the
//! job side and refuses any other edge.

use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use crate::clock::UnixMillis;
use crate::error::{Error, Result};
use crate::store::{ReadOnly, Tx};

/// Jobs listed in one call, at most.
pub const JOBS_LIST_MAX: usize = 500;
/// Jobs claimed by one worker step, at most.
pub const CLAIM_BATCH_MAX: usize = 64;
/// Overdue jobs expired by one worker step, at most.
pub const EXPIRE_JOBS_BATCH_MAX: usize = 256;
/// Outputs one job may record, at most.
pub const OUTPUTS_MAX: usize = 16;
/// The longest error message kept on a job.
pub const ERROR_MESSAGE_CHARS_MAX: usize = 1_000;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Accepted and held; not yet handed to its provider.
    Pending,
    /// The provider has it.
    Running,
    /// Done; the hold was captured.
    Succeeded,
    /// The provider (or the submission) failed; the hold was released.
    Failed,
    /// Canceled by its owner; the hold was released.
    Canceled,
    /// Its deadline passed first; the hold was released.
    Expired,
}

impl JobStatus {
    /// Every status, in the order of a job's life.
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Pending,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Canceled,
        JobStatus::Expired,
    ];

    /// The status's name in the database and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Canceled => "canceled",
            JobStatus::Expired => "expired",
        }
    }

    /// Parses a status name.
    pub fn parse(name: &str) -> Option<JobStatus> {
        Some(match name {
            "pending" => JobStatus::Pending,
            "running" => JobStatus::Running,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            "canceled" => JobStatus::Canceled,
            "expired" => JobStatus::Expired,
            _ => return None,
        })
    }

    /// Whether the job is finished (no further change is allowed).
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobStatus::Pending | JobStatus::Running)
    }

    /// The allowed edges of the state machine.
    pub fn can_become(self, next: JobStatus) -> bool {
        use JobStatus::*;
        matches!(
            (self, next),
            (Pending, Running)
                | (Pending, Failed)
                | (Pending, Canceled)
                | (Pending, Expired)
                | (Running, Succeeded)
                | (Running, Failed)
                | (Running, Canceled)
                | (Running, Expired)
        )
    }
}

/// One output of a finished job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// Where to fetch it.
    pub url: String,
    /// Its media type (`image/png`).
    pub mime: String,
    /// For fixture outputs: the sample file served at `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// `job_<hex>`: the `task_id` agents see.
    pub id: String,
    /// The owning account.
    pub account_id: String,
    /// The caller's idempotency key, unique per account.
    pub request_id: String,
    /// SHA-256 of the normalised request.
    pub fingerprint: String,
    /// The normalised request, JSON.
    pub request: String,
    /// The product (`image`, `video`, ...).
    pub product: String,
    /// The model.
    pub model: String,
    /// The price version it was estimated and held under.
    pub price_version: String,
    /// The estimate, in micro-credits: what is held and what success costs.
    pub estimate_micros: i64,
    /// The estimate with its breakdown, JSON.
    pub estimate: String,
    /// The ledger hold reserving the estimate (`None` for a free job).
    pub hold_id: Option<String>,
    /// The usage event that records the charge on success.
    pub usage_event_id: String,
    /// The provider serving the model.
    pub provider: String,
    /// The model id at the provider.
    pub upstream_model: String,
    /// The provider's id for the task, once submitted.
    pub provider_task_id: Option<String>,
    /// The status.
    pub status: JobStatus,
    /// Submissions tried.
    pub submit_attempts: i64,
    /// Set before a submit is attempted: a submission may have happened.
    pub submit_started_at: Option<UnixMillis>,
    /// Polls answered "still running".
    pub polls: i64,
    /// Polls that failed transiently.
    pub poll_errors: i64,
    /// When a worker should next look at it.
    pub next_run_at: UnixMillis,
    /// A worker holds it until then.
    pub lease_until: Option<UnixMillis>,
    /// Past this, it expires.
    pub deadline: UnixMillis,
    /// The unguessable part of its output URLs.
    pub output_token: String,
    /// Outputs, once succeeded.
    pub outputs: Vec<Output>,
    /// The seed used, where known.
    pub seed: Option<i64>,
    /// Why it failed (machine code).
    pub error_code: Option<String>,
    /// Why it failed (for a human).
    pub error_message: Option<String>,
    /// What was charged, once succeeded.
    pub charged_micros: Option<i64>,
    /// When it was accepted.
    pub created_at: UnixMillis,
    /// When it last changed.
    pub updated_at: UnixMillis,
    /// When it reached a terminal status.
    pub finished_at: Option<UnixMillis>,
    /// The provider adapter's opaque state, JSON (see
    /// [`crate::providers::Submission::Accepted`]).
    pub provider_state: Option<String>,
    /// What a success actually used, JSON (input and output tokens, media
    /// seconds), where the upstream said.
    pub usage: Option<String>,
    /// A finished job's remote outputs still to be copied into the media
    /// store (JSON), while a download failed for now.
    pub pending_outputs: Option<String>,
}

/// What a new job records.
#[derive(Debug, Clone)]
pub(crate) struct NewJob {
    pub(crate) id: String,
    pub(crate) account_id: String,
    pub(crate) request_id: String,
    pub(crate) fingerprint: String,
    pub(crate) request: String,
    pub(crate) product: String,
    pub(crate) model: String,
    pub(crate) price_version: String,
    pub(crate) estimate_micros: i64,
    pub(crate) estimate: String,
    pub(crate) hold_id: Option<String>,
    pub(crate) usage_event_id: String,
    pub(crate) provider: String,
    pub(crate) upstream_model: String,
    pub(crate) deadline: UnixMillis,
    pub(crate) output_token: String,
}

/// The columns [`from_row`] reads, in its order (a macro so that every
/// query below is a `const` built at compile time).
macro_rules! job_columns {
    () => {
        "id, account_id, request_id, fingerprint, request, product, model,
    price_version, estimate_micros, estimate, hold_id, usage_event_id, provider, upstream_model,
    provider_task_id, status, submit_attempts, submit_started_at, polls, poll_errors, next_run_at,
    lease_until, deadline, output_token, outputs, seed, error_code, error_message, charged_micros,
    created_at, updated_at, finished_at, provider_state, usage,
    pending_outputs"
    };
}

// The queries the worker runs on every step, and the listings. Each names
// its index (`INDEXED BY`): without statistics SQLite's planner once chose
// the status index for all of them and scanned every live job per step.
// Their plans are checked by a test (no scan, no sort).

/// Due pending jobs, oldest first (running ones are polled from the
/// schedule in memory, `gate::schedule`).
const DUE_SQL: &str = "SELECT id, submit_started_at IS NOT NULL
     FROM jobs INDEXED BY jobs_due
     WHERE status = 'pending' AND next_run_at <= ?1 AND deadline > ?1
       AND (lease_until IS NULL OR lease_until <= ?1)
     ORDER BY next_run_at, rowid LIMIT ?2";
/// Running jobs and their next poll, as stored (to rebuild the schedule).
const RUNNING_SQL: &str = "SELECT id, next_run_at FROM jobs INDEXED BY jobs_deadline
     WHERE status IN ('pending', 'running') AND status = 'running'";
/// Live jobs past their deadline, oldest deadline first (ids only: each is
/// then read alone, so one row that does not decode fails alone).
const OVERDUE_SQL: &str = "SELECT id FROM jobs INDEXED BY jobs_deadline
     WHERE status IN ('pending', 'running') AND deadline <= ?1
     ORDER BY deadline, rowid LIMIT ?2";
/// The earliest next run of a pending job.
const NEXT_RUN_SQL: &str = "SELECT next_run_at FROM jobs INDEXED BY jobs_due
     WHERE status = 'pending' ORDER BY next_run_at LIMIT 1";
/// The earliest deadline of a live job.
const NEXT_DEADLINE_SQL: &str = "SELECT deadline FROM jobs INDEXED BY jobs_deadline
     WHERE status IN ('pending', 'running') ORDER BY deadline LIMIT 1";
/// The earliest upstream cancel still to send.
const NEXT_CANCEL_SQL: &str = "SELECT next_at FROM provider_cancels INDEXED BY provider_cancels_due
     ORDER BY next_at LIMIT 1";
/// An account's jobs, newest first.
const LIST_ACCOUNT_SQL: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs INDEXED BY jobs_account_created
     WHERE account_id = ?1 AND (?2 IS NULL OR status = ?2) AND (?4 IS NULL OR model = ?4)
       AND (?5 IS NULL OR (created_at, rowid) < (SELECT created_at, rowid FROM jobs WHERE id = ?5))
     ORDER BY created_at DESC, rowid DESC LIMIT ?3"
);
/// All jobs, newest first.
const LIST_ALL_SQL: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs INDEXED BY jobs_created
     WHERE ?1 IS NULL AND (?2 IS NULL OR status = ?2) AND (?4 IS NULL OR model = ?4)
       AND (?5 IS NULL OR (created_at, rowid) < (SELECT created_at, rowid FROM jobs WHERE id = ?5))
     ORDER BY created_at DESC, rowid DESC LIMIT ?3"
);

// Statements that return the whole job row (`RETURNING`) instead of
// reading it back, built once at compile time: the write path runs them for
// every job and formatting the SQL each time was wasted work.

/// A job by id.
const GET_SQL: &str = concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = ?1");
/// An account's job by its request id.
const FIND_BY_REQUEST_SQL: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs WHERE account_id = ?1 AND request_id = ?2"
);
/// A new pending job (every column not named takes its default: see
/// [`NewJob::stored`], which a test compares with the row read back).
const INSERT_SQL: &str =
    "INSERT INTO jobs (id, account_id, request_id, fingerprint, request, product, model,
        price_version, estimate_micros, estimate, hold_id, usage_event_id, provider,
        upstream_model, status, next_run_at, deadline, output_token, created_at, updated_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, 'pending', ?15, ?16,
        ?17, ?15, ?15)";
/// A status change, guarded by the status the caller saw.
macro_rules! transition_update {
    () => {
        "UPDATE jobs SET status = ?3,
        provider_task_id = coalesce(?4, provider_task_id),
        outputs = coalesce(?5, outputs),
        seed = coalesce(?6, seed),
        error_code = coalesce(?7, error_code),
        error_message = coalesce(?8, error_message),
        charged_micros = coalesce(?9, charged_micros),
        next_run_at = coalesce(?10, next_run_at),
        provider_state = coalesce(?13, provider_state),
        usage = coalesce(?14, usage),
        pending_outputs = CASE WHEN ?12 THEN NULL ELSE coalesce(?15, pending_outputs) END,
        lease_until = NULL,
        updated_at = ?11,
        finished_at = CASE WHEN ?12 THEN ?11 ELSE NULL END,
        polls = polls + ?16,
        poll_errors = poll_errors + ?17
     WHERE id = ?1 AND status = ?2"
    };
}
/// A status change returning the changed row.
const TRANSITION_SQL: &str = concat!(transition_update!(), " RETURNING ", job_columns!());
/// A status change whose caller needs nothing back: no row is copied out
/// (`RETURNING` stores each row in a temporary table first).
const TRANSITION_QUIET_SQL: &str = transition_update!();
/// Bookkeeping without a status change, guarded by the status.
const RESCHEDULE_SQL: &str =
    "UPDATE jobs SET next_run_at = ?3, polls = polls + ?4, poll_errors = poll_errors + ?5,
        error_message = coalesce(?6, error_message), lease_until = NULL, updated_at = ?7,
        provider_state = coalesce(?8, provider_state),
        pending_outputs = coalesce(?9, pending_outputs),
        submit_started_at = CASE WHEN ?10 THEN NULL ELSE submit_started_at END
     WHERE id = ?1 AND status = ?2";
/// A worker's lease on a due job; a pending job's attempt is counted and
/// marked as possibly submitted.
const LEASE_SQL: &str = concat!(
    "UPDATE jobs SET lease_until = ?2,
        submit_attempts = submit_attempts + (status = 'pending'),
        submit_started_at = CASE WHEN status = 'pending'
            THEN coalesce(submit_started_at, ?3) ELSE submit_started_at END
     WHERE id = ?1
     RETURNING ",
    job_columns!()
);

/// Gives back a claimed pending job without a submission (see [`unclaim`]).
const UNCLAIM_SQL: &str = "UPDATE jobs SET lease_until = NULL, next_run_at = ?2, updated_at = ?3,
        submit_attempts = max(submit_attempts - 1, 0),
        submit_started_at = CASE WHEN ?4 THEN submit_started_at ELSE NULL END
     WHERE id = ?1 AND status = 'pending'";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Job> {
    let status: String = row.get(15)?;
    let outputs: Option<String> = row.get(24)?;
    let bad = |index: usize, message: String| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Text,
            message.into(),
        )
    };
    Ok(Job {
        id: row.get(0)?,
        account_id: row.get(1)?,
        request_id: row.get(2)?,
        fingerprint: row.get(3)?,
        request: row.get(4)?,
        product: row.get(5)?,
        model: row.get(6)?,
        price_version: row.get(7)?,
        estimate_micros: row.get(8)?,
        estimate: row.get(9)?,
        hold_id: row.get(10)?,
        usage_event_id: row.get(11)?,
        provider: row.get(12)?,
        upstream_model: row.get(13)?,
        provider_task_id: row.get(14)?,
        status: JobStatus::parse(&status)
            .ok_or_else(|| bad(15, format!("unknown status {status}")))?,
        submit_attempts: row.get(16)?,
        submit_started_at: row.get(17)?,
        polls: row.get(18)?,
        poll_errors: row.get(19)?,
        next_run_at: row.get(20)?,
        lease_until: row.get(21)?,
        deadline: row.get(22)?,
        output_token: row.get(23)?,
        outputs: match outputs {
            None => Vec::new(),
            Some(text) => serde_json::from_str(&text).map_err(|err| bad(24, err.to_string()))?,
        },
        seed: row.get(25)?,
        error_code: row.get(26)?,
        error_message: row.get(27)?,
        charged_micros: row.get(28)?,
        created_at: row.get(29)?,
        updated_at: row.get(30)?,
        finished_at: row.get(31)?,
        provider_state: row.get(32)?,
        usage: row.get(33)?,
        pending_outputs: row.get(34)?,
    })
}

/// Records a new pending job, due for submission now.
pub(crate) fn insert(tx: &Tx<'_>, new: NewJob, now: UnixMillis) -> Result<Job> {
    let inserted = tx.prepare_cached(INSERT_SQL)?.execute(params![
        new.id,
        new.account_id,
        new.request_id,
        new.fingerprint,
        new.request,
        new.product,
        new.model,
        new.price_version,
        new.estimate_micros,
        new.estimate,
        new.hold_id,
        new.usage_event_id,
        new.provider,
        new.upstream_model,
        now,
        new.deadline,
        new.output_token,
    ])?;
    assert_eq!(inserted, 1, "an insert writes one job");
    // Not read back: the row is exactly what `stored` says (a test reads
    // one back and compares).
    Ok(new.stored(now))
}

impl NewJob {
    /// The row [`insert`] writes at `now`: these fields, every other
    /// column at its default.
    fn stored(self, now: UnixMillis) -> Job {
        Job {
            id: self.id,
            account_id: self.account_id,
            request_id: self.request_id,
            fingerprint: self.fingerprint,
            request: self.request,
            product: self.product,
            model: self.model,
            price_version: self.price_version,
            estimate_micros: self.estimate_micros,
            estimate: self.estimate,
            hold_id: self.hold_id,
            usage_event_id: self.usage_event_id,
            provider: self.provider,
            upstream_model: self.upstream_model,
            provider_task_id: None,
            status: JobStatus::Pending,
            submit_attempts: 0,
            submit_started_at: None,
            polls: 0,
            poll_errors: 0,
            next_run_at: now,
            lease_until: None,
            deadline: self.deadline,
            output_token: self.output_token,
            outputs: Vec::new(),
            seed: None,
            error_code: None,
            error_message: None,
            charged_micros: None,
            created_at: now,
            updated_at: now,
            finished_at: None,
            provider_state: None,
            usage: None,
            pending_outputs: None,
        }
    }
}

/// A job by id.
pub(crate) fn get(conn: &ReadOnly<'_>, id: &str) -> Result<Job> {
    conn.prepare_cached(GET_SQL)?
        .query_row([id], from_row)
        .optional()?
        .ok_or_else(|| Error::NotFound {
            what: "job",
            id: id.to_owned(),
        })
}

/// An account's job by its request id.
pub(crate) fn find_by_request(
    conn: &ReadOnly<'_>,
    account_id: &str,
    request_id: &str,
) -> Result<Option<Job>> {
    Ok(conn
        .prepare_cached(FIND_BY_REQUEST_SQL)?
        .query_row([account_id, request_id], from_row)
        .optional()?)
}

/// Which jobs to list.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only this account's.
    pub account_id: Option<String>,
    /// Only jobs in this status.
    pub status: Option<JobStatus>,
    /// Only jobs of this model.
    pub model: Option<String>,
    /// Only jobs created before this one (a page's cursor: the last job
    /// id of the page before); an unknown id lists nothing.
    pub before: Option<String>,
    /// At most this many (capped at [`JOBS_LIST_MAX`]).
    pub limit: usize,
}

/// Jobs, newest first. Walks an index in creation order (an account's own,
/// or all jobs') and filters by status on the way, so a page costs what it
/// returns plus what it skips, never a sort of the whole table.
pub(crate) fn list(conn: &ReadOnly<'_>, filter: &JobFilter) -> Result<Vec<Job>> {
    let limit = filter.limit.clamp(1, JOBS_LIST_MAX) as i64;
    let status = filter.status.map(JobStatus::as_str);
    let mut stmt = conn.prepare_cached(match filter.account_id {
        Some(_) => LIST_ACCOUNT_SQL,
        None => LIST_ALL_SQL,
    })?;
    let rows = stmt.query_map(
        params![
            filter.account_id,
            status,
            limit,
            filter.model,
            filter.before
        ],
        from_row,
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// How many of the newest jobs created at or after `since` (at most
/// `newest`, walked through `jobs_created`) each provider has in each
/// status: a bounded count, whatever the table's size.
pub(crate) fn recent_counts(
    conn: &ReadOnly<'_>,
    since: UnixMillis,
    newest: usize,
) -> Result<Vec<(String, JobStatus, u64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT provider, status, count(*) FROM (
             SELECT provider, status FROM jobs INDEXED BY jobs_created
              WHERE created_at >= ?1 ORDER BY created_at DESC LIMIT ?2)
          GROUP BY provider, status ORDER BY provider, status",
    )?;
    let rows = stmt.query_map(params![since, newest as i64], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, i64>(2)?,
        ))
    })?;
    let mut counts = Vec::new();
    for row in rows {
        let (provider, status, count) = row?;
        let status = JobStatus::parse(&status)
            .ok_or_else(|| Error::corrupt(format!("a job status {status:?}")))?;
        counts.push((provider, status, u64::try_from(count).unwrap_or(0)));
    }
    Ok(counts)
}

/// Micro-credits charged on one UTC day (whole days since the epoch) for
/// one model.
pub(crate) type DaySpend = (i64, String, i64);

/// Micro-credits charged per UTC day since `since`, by model, from the
/// usage events (one per charged job) of the newest `newest` at most; and
/// whether that bound cut the window short.
pub(crate) fn daily_spend(
    conn: &ReadOnly<'_>,
    since: UnixMillis,
    newest: usize,
) -> Result<(Vec<DaySpend>, bool)> {
    let mut stmt = conn.prepare_cached(
        "SELECT created_at / 86400000 AS day, model, sum(amount), count(*), min(created_at)
           FROM (SELECT created_at, model, amount FROM usage_events ORDER BY rowid DESC LIMIT ?2)
          WHERE created_at >= ?1
          GROUP BY day, model ORDER BY day, model",
    )?;
    let mut counted = 0;
    let rows = stmt.query_map(params![since, newest as i64], |row| {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get::<_, i64>(3)?))
    })?;
    let mut spend = Vec::new();
    for row in rows {
        let (day, model, micros, count) = row?;
        counted += count;
        spend.push((day, model, micros));
    }
    // Every event read fell in the window and there may be more: capped.
    let read: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM (SELECT 1 FROM usage_events ORDER BY rowid DESC LIMIT ?1)",
        )?
        .query_row([newest as i64], |row| row.get(0))?;
    Ok((spend, read as usize >= newest && counted == read))
}

/// Index entries one filtered page walks, at most: a filter that matches
/// rarely answers a short page and where to go on, never a scan of the
/// whole table.
pub const JOBS_SCAN_MAX: usize = 5_000;

/// One page of jobs and where the next one starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobsPage {
    /// The jobs, newest first.
    pub jobs: Vec<Job>,
    /// Pass as [`JobFilter::before`] for the next (older) page; `None` at
    /// the end.
    pub next_before: Option<String>,
    /// Whether the page stopped at [`JOBS_SCAN_MAX`] index entries before
    /// it was full: older jobs were not searched yet.
    pub scan_stopped: bool,
}

/// `SELECT` of a filtered page: `?1` account (or NULL for all), `?2`
/// status, `?3` the page size, `?4` model, `?5` the cursor job, `?6` the
/// scan bound. The scan walks the creation index alone; only the rows it
/// walked are read and filtered.
macro_rules! page_sql {
    ($index:literal, $owner:literal) => {
        concat!(
            "WITH scanned AS (
                 SELECT rowid AS r, created_at AS c FROM jobs INDEXED BY ",
            $index,
            " WHERE ",
            $owner,
            " AND (?5 IS NULL OR (created_at, rowid) <
                           (SELECT created_at, rowid FROM jobs WHERE id = ?5))
                  ORDER BY created_at DESC, rowid DESC LIMIT ?6)
             SELECT ",
            job_columns!(),
            " FROM scanned JOIN jobs ON jobs.rowid = scanned.r
              WHERE (?2 IS NULL OR status = ?2) AND (?4 IS NULL OR model = ?4)
              ORDER BY scanned.c DESC, scanned.r DESC LIMIT ?3"
        )
    };
}

/// The id of the last index entry a page's scan walks and the one after
/// it, if the scan walks its whole bound (`?6`) and more follow.
macro_rules! scan_end_sql {
    ($index:literal, $owner:literal) => {
        concat!(
            "SELECT id FROM jobs INDEXED BY ",
            $index,
            " WHERE ",
            $owner,
            " AND (?5 IS NULL OR (created_at, rowid) <
                           (SELECT created_at, rowid FROM jobs WHERE id = ?5))
              ORDER BY created_at DESC, rowid DESC LIMIT 2 OFFSET ?6 - 1"
        )
    };
}

/// A page of jobs, newest first, by `filter` (its `limit` capped at
/// [`JOBS_LIST_MAX`]), walking at most `scan_max` ([`JOBS_SCAN_MAX`])
/// index entries.
pub(crate) fn page(conn: &ReadOnly<'_>, filter: &JobFilter, scan_max: usize) -> Result<JobsPage> {
    let limit = filter.limit.clamp(1, JOBS_LIST_MAX);
    let scan = scan_max.max(limit + 1);
    let status = filter.status.map(JobStatus::as_str);
    let (page_sql, end_sql) = match filter.account_id {
        Some(_) => (
            page_sql!("jobs_account_created", "account_id = ?1"),
            scan_end_sql!("jobs_account_created", "account_id = ?1"),
        ),
        None => (
            page_sql!("jobs_created", "?1 IS NULL"),
            scan_end_sql!("jobs_created", "?1 IS NULL"),
        ),
    };
    // Both statements number their parameters alike.
    let bound = params![
        filter.account_id,
        status,
        limit as i64 + 1,
        filter.model,
        filter.before,
        scan as i64
    ];
    let mut jobs = conn
        .prepare_cached(page_sql)?
        .query_map(bound, from_row)?
        .collect::<rusqlite::Result<Vec<Job>>>()?;
    if jobs.len() > limit {
        jobs.truncate(limit);
        let next_before = jobs.last().map(|job| job.id.clone());
        return Ok(JobsPage {
            jobs,
            next_before,
            scan_stopped: false,
        });
    }
    let mut end = conn.prepare_cached(end_sql)?;
    let beyond: Vec<String> = end
        .query_map(bound, |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    // The last entry walked, when another follows it.
    let scan_end = (beyond.len() == 2).then(|| beyond[0].clone());
    Ok(JobsPage {
        jobs,
        scan_stopped: scan_end.is_some(),
        next_before: scan_end,
    })
}

/// What a status change records beside the status.
#[derive(Debug, Clone, Default)]
pub(crate) struct Change {
    pub(crate) provider_task_id: Option<String>,
    pub(crate) outputs: Option<Vec<Output>>,
    pub(crate) seed: Option<i64>,
    pub(crate) error_code: Option<String>,
    pub(crate) error_message: Option<String>,
    pub(crate) charged_micros: Option<i64>,
    pub(crate) next_run_at: Option<UnixMillis>,
    pub(crate) provider_state: Option<String>,
    pub(crate) usage: Option<String>,
    pub(crate) pending_outputs: Option<String>,
    /// Polls made since the job's last write (kept in memory meanwhile).
    pub(crate) add_polls: i64,
    /// Transient poll errors made since the job's last write.
    pub(crate) add_poll_errors: i64,
}

/// Moves a job from `from` to `to`, refusing any edge the state machine
/// does not allow and any job not in `from` (it changed meanwhile).
pub(crate) fn transition(
    tx: &Tx<'_>,
    job_id: &str,
    from: JobStatus,
    to: JobStatus,
    change: Change,
    now: UnixMillis,
) -> Result<Job> {
    let changed = run_transition(tx, job_id, from, to, change, now, true)?;
    // RETURNING gives the row whenever one changed.
    Ok(guarded(tx, job_id, changed, to)?.expect("the changed row"))
}

/// [`transition`] for a caller that needs nothing back.
pub(crate) fn transition_quiet(
    tx: &Tx<'_>,
    job_id: &str,
    from: JobStatus,
    to: JobStatus,
    change: Change,
    now: UnixMillis,
) -> Result<()> {
    let changed = run_transition(tx, job_id, from, to, change, now, false)?;
    guarded(tx, job_id, changed, to).map(drop)
}

/// Checks and runs a status change: `None` if no row changed (the job is
/// no longer in `from`), else the changed row when `returning` asks for it.
fn run_transition(
    tx: &Tx<'_>,
    job_id: &str,
    from: JobStatus,
    to: JobStatus,
    change: Change,
    now: UnixMillis,
    returning: bool,
) -> Result<Option<Option<Job>>> {
    if !from.can_become(to) {
        return Err(Error::InvalidTransition {
            job_id: job_id.to_owned(),
            from: from.as_str(),
            to: to.as_str(),
        });
    }
    let outputs = change
        .outputs
        .as_ref()
        .map(|outputs| {
            if outputs.len() > OUTPUTS_MAX {
                return Err(Error::internal(format!(
                    "{} outputs for job {job_id} (at most {OUTPUTS_MAX})",
                    outputs.len()
                )));
            }
            serde_json::to_string(outputs)
                .map_err(|err| Error::internal(format!("outputs cannot be encoded: {err}")))
        })
        .transpose()?;
    let message = change
        .error_message
        .map(|m| m.chars().take(ERROR_MESSAGE_CHARS_MAX).collect::<String>());
    let params = params![
        job_id,
        from.as_str(),
        to.as_str(),
        change.provider_task_id,
        outputs,
        change.seed,
        change.error_code,
        message,
        change.charged_micros,
        change.next_run_at,
        now,
        to.is_terminal(),
        change.provider_state,
        change.usage,
        change.pending_outputs,
        change.add_polls,
        change.add_poll_errors,
    ];
    Ok(if returning {
        tx.prepare_cached(TRANSITION_SQL)?
            .query_row(params, from_row)
            .optional()?
            .map(Some)
    } else {
        let changed = tx.prepare_cached(TRANSITION_QUIET_SQL)?.execute(params)?;
        (changed == 1).then_some(None)
    })
}

/// The outcome of an update guarded by the job's status: the changed row,
/// or [`Error::InvalidTransition`] naming the status the job has instead.
fn guarded<T>(tx: &Tx<'_>, job_id: &str, changed: Option<T>, to: JobStatus) -> Result<T> {
    match changed {
        Some(job) => Ok(job),
        None => Err(Error::InvalidTransition {
            job_id: job_id.to_owned(),
            from: get(tx, job_id)?.status.as_str(),
            to: to.as_str(),
        }),
    }
}

/// Bookkeeping that does not change the status: the next time to look,
/// counters, and the lease. Refused if the job is no longer in `status`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reschedule {
    pub(crate) next_run_at: UnixMillis,
    pub(crate) add_polls: i64,
    pub(crate) add_poll_errors: i64,
    pub(crate) error_message: Option<String>,
    pub(crate) provider_state: Option<String>,
    pub(crate) pending_outputs: Option<String>,
    /// A submission certainly did not reach the provider: the job no longer
    /// counts as possibly submitted.
    pub(crate) not_sent: bool,
}

/// Applies a [`Reschedule`] to a non-terminal job still in `status`.
pub(crate) fn reschedule(
    tx: &Tx<'_>,
    job_id: &str,
    status: JobStatus,
    plan: &Reschedule,
    now: UnixMillis,
) -> Result<()> {
    assert!(!status.is_terminal(), "only live jobs are rescheduled");
    let changed = tx.prepare_cached(RESCHEDULE_SQL)?.execute(params![
        job_id,
        status.as_str(),
        plan.next_run_at,
        plan.add_polls,
        plan.add_poll_errors,
        plan.error_message,
        now,
        plan.provider_state,
        plan.pending_outputs,
        plan.not_sent
    ])?;
    guarded(tx, job_id, (changed == 1).then_some(()), status)
}

/// What a claim found: the jobs leased, and the ids of due jobs whose row
/// no longer decodes (with why), for the caller to fail one by one.
#[derive(Debug, Default)]
pub(crate) struct Claimed {
    pub(crate) jobs: Vec<Job>,
    /// Claimed pending jobs an earlier submission may have reached (a crash,
    /// a lost answer): before this claim they were already marked.
    pub(crate) possibly_sent: std::collections::HashSet<String>,
    pub(crate) undecodable: Vec<(String, Error)>,
}

/// Leases up to `limit` pending jobs that are due and not past their
/// deadline until `lease_until`, each marked as possibly submitted
/// (`submit_started_at`) and its attempt counted before any provider call.
/// (Running jobs are taken from the poll schedule in memory instead.)
/// A row that does not decode is leased too (so it is not claimed again at
/// once) and returned apart; it does not stop the others.
pub(crate) fn claim_due(
    tx: &Tx<'_>,
    now: UnixMillis,
    lease_until: UnixMillis,
    limit: usize,
) -> Result<Claimed> {
    let due: Vec<(String, bool)> = {
        let mut stmt = tx.prepare_cached(DUE_SQL)?;
        let rows = stmt.query_map(params![now, limit.min(CLAIM_BATCH_MAX) as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut claimed = Claimed::default();
    let mut lease = tx.prepare_cached(LEASE_SQL)?;
    for (id, possibly_sent) in due {
        if possibly_sent {
            claimed.possibly_sent.insert(id.clone());
        }
        match lease.query_row(params![id, lease_until, now], from_row) {
            Ok(job) => claimed.jobs.push(job),
            Err(err) => match Error::from(err) {
                corrupt @ Error::CorruptData { .. } => claimed.undecodable.push((id, corrupt)),
                other => return Err(other),
            },
        }
    }
    Ok(claimed)
}

/// Every running job's id and stored next poll (one scan of the live
/// jobs' index), to rebuild the poll schedule from.
pub(crate) fn running(conn: &ReadOnly<'_>) -> Result<Vec<(String, UnixMillis)>> {
    let mut stmt = conn.prepare_cached(RUNNING_SQL)?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The ids of live jobs whose deadline has passed, oldest deadline first.
pub(crate) fn overdue(conn: &ReadOnly<'_>, now: UnixMillis) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(OVERDUE_SQL)?;
    let rows = stmt.query_map(params![now, EXPIRE_JOBS_BATCH_MAX as i64], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Fails a live job whose row no longer decodes, without decoding it:
/// `failed` with the code `internal`. Returns its hold id (for the caller
/// to release), or `None` if it was not live (nothing changed then).
pub(crate) fn fail_undecodable(
    tx: &Tx<'_>,
    job_id: &str,
    message: &str,
    now: UnixMillis,
) -> Result<Option<Option<String>>> {
    let message: String = message.chars().take(ERROR_MESSAGE_CHARS_MAX).collect();
    Ok(tx
        .prepare_cached(
            "UPDATE jobs SET status = 'failed', error_code = 'internal', error_message = ?2,
                outputs = NULL, lease_until = NULL, updated_at = ?3, finished_at = ?3
             WHERE id = ?1 AND status IN ('pending', 'running')
             RETURNING hold_id",
        )?
        .query_row(params![job_id, message, now], |row| row.get(0))
        .optional()?)
}

/// Holds a live job's lease until `until` without any other change: a job
/// whose answer could not be recorded waits that long for the next try.
pub(crate) fn lease_until(tx: &Tx<'_>, job_id: &str, until: UnixMillis) -> Result<()> {
    tx.prepare_cached(
        "UPDATE jobs SET lease_until = ?2 WHERE id = ?1 AND status IN ('pending', 'running')",
    )?
    .execute(params![job_id, until])?;
    Ok(())
}

/// Gives back a pending job claimed but not submitted: the lease dropped,
/// the attempt the claim counted uncounted (so it does not look as if a
/// submission may have happened), next due at `next_run_at`.
pub(crate) fn unclaim(
    tx: &Tx<'_>,
    job_id: &str,
    next_run_at: UnixMillis,
    possibly_sent: bool,
    now: UnixMillis,
) -> Result<()> {
    let changed = tx.prepare_cached(UNCLAIM_SQL)?.execute(params![
        job_id,
        next_run_at,
        now,
        possibly_sent
    ])?;
    guarded(tx, job_id, (changed == 1).then_some(()), JobStatus::Pending)
}

/// The earliest time a stored job needs a worker (a pending job's next
/// run, a live job's deadline, an upstream cancel), if any: three index
/// seeks. Running jobs' polls are due by the schedule in memory instead.
pub(crate) fn next_due(conn: &ReadOnly<'_>) -> Result<Option<UnixMillis>> {
    let first = |sql: &str| -> Result<Option<UnixMillis>> {
        Ok(conn
            .prepare_cached(sql)?
            .query_row([], |row| row.get(0))
            .optional()?)
    };
    Ok(first(NEXT_RUN_SQL)?
        .into_iter()
        .chain(first(NEXT_DEADLINE_SQL)?)
        .chain(first(NEXT_CANCEL_SQL)?)
        .min())
}

/// Releases every lease: after a restart no worker holds anything.
pub(crate) fn release_leases(tx: &Tx<'_>) -> Result<usize> {
    Ok(tx
        .prepare_cached("UPDATE jobs SET lease_until = NULL WHERE lease_until IS NOT NULL AND status IN ('pending', 'running')")?
        .execute([])?)
}

/// Records the usage event of a succeeded job's charge (`transfer_id` is
/// `None` for a free job).
pub(crate) fn record_usage(
    tx: &Tx<'_>,
    job: &Job,
    transfer_id: Option<&str>,
    amount: i64,
    now: UnixMillis,
) -> Result<()> {
    assert_eq!(
        job.status,
        JobStatus::Succeeded,
        "only a success is charged"
    );
    tx.prepare_cached(
        "INSERT INTO usage_events (id, job_id, account_id, transfer_id, amount, model, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        job.usage_event_id,
        job.id,
        job.account_id,
        transfer_id,
        amount,
        job.model,
        now
    ])?;
    Ok(())
}

/// A job by its provider instance and that provider's task id (how an
/// upstream webhook finds its job).
pub(crate) fn find_by_provider_task(
    conn: &ReadOnly<'_>,
    provider: &str,
    task_id: &str,
) -> Result<Option<Job>> {
    Ok(conn
        .prepare_cached(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs INDEXED BY jobs_provider_task
             WHERE provider = ?1 AND provider_task_id = ?2"
        ))?
        .query_row([provider, task_id], from_row)
        .optional()?)
}

/// Makes a live job due now (an upstream said it changed): the next worker
/// step polls it. A job a worker holds is left to it; a finished job is
/// left alone. Returns whether it was nudged.
pub(crate) fn nudge(tx: &Tx<'_>, job_id: &str, now: UnixMillis) -> Result<bool> {
    Ok(tx
        .prepare_cached(
            "UPDATE jobs SET next_run_at = min(next_run_at, ?2), updated_at = ?2
             WHERE id = ?1 AND status IN ('pending', 'running')",
        )?
        .execute(params![job_id, now])?
        == 1)
}

/// How long a webhook delivery id is remembered (upstreams retry for
/// hours, not days).
pub const DELIVERY_RETENTION_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// Delivery records pruned per worker step, at most.
pub const DELIVERIES_PRUNE_BATCH_MAX: i64 = 256;

/// Forgets up to [`DELIVERIES_PRUNE_BATCH_MAX`] delivery ids older than
/// [`DELIVERY_RETENTION_MS`].
pub(crate) fn prune_deliveries(tx: &Tx<'_>, now: UnixMillis) -> Result<usize> {
    Ok(tx
        .prepare_cached(
            "DELETE FROM provider_deliveries WHERE (provider, delivery_id) IN (
                SELECT provider, delivery_id FROM provider_deliveries
                INDEXED BY provider_deliveries_received
                WHERE received_at < ?1 LIMIT ?2)",
        )?
        .execute(params![
            now.saturating_sub(DELIVERY_RETENTION_MS),
            DELIVERIES_PRUNE_BATCH_MAX
        ])?)
}

/// Upstream cancels sent per worker step, at most.
pub const UPSTREAM_CANCELS_BATCH_MAX: usize = 32;
/// Tries to send one upstream cancel before giving up on it.
pub const UPSTREAM_CANCEL_ATTEMPTS_MAX: i64 = 5;

/// Queues the upstream cancel of a job the provider has (a canceled or
/// expired running job), for a worker to send; a second queueing of the
/// same job changes nothing.
pub(crate) fn queue_upstream_cancel(tx: &Tx<'_>, job: &Job, now: UnixMillis) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO provider_cancels (job_id, provider, next_at, created_at)
         VALUES (?1, ?2, ?3, ?3) ON CONFLICT (job_id) DO NOTHING",
    )?
    .execute(params![job.id, job.provider, now])?;
    Ok(())
}

/// Records the provider task of a job that was canceled (or expired) while
/// its submission was in flight, and queues the task's upstream cancel: the
/// provider accepted a job nobody will collect. A job that is not such a
/// job (live, or already holding a task id) is left alone; `false` then.
pub(crate) fn cancel_orphaned_task(
    tx: &Tx<'_>,
    job_id: &str,
    task_id: &str,
    state: Option<&str>,
    now: UnixMillis,
) -> Result<bool> {
    let recorded = tx
        .prepare_cached(
            "UPDATE jobs SET provider_task_id = ?2, provider_state = ?3, updated_at = ?4
             WHERE id = ?1 AND status IN ('canceled', 'expired') AND provider_task_id IS NULL",
        )?
        .execute(params![job_id, task_id, state, now])?
        == 1;
    if recorded {
        queue_upstream_cancel(tx, &get(tx, job_id)?, now)?;
    }
    Ok(recorded)
}

/// Takes up to `limit` due upstream cancels: each is pushed back by
/// `retry_in_ms` and its attempt counted before it is sent, so a crash
/// mid-send retries it later rather than never. Returns the jobs.
pub(crate) fn claim_upstream_cancels(
    tx: &Tx<'_>,
    now: UnixMillis,
    retry_in_ms: i64,
    limit: usize,
) -> Result<Vec<Job>> {
    let ids: Vec<String> = {
        let mut stmt = tx.prepare_cached(
            "SELECT job_id FROM provider_cancels INDEXED BY provider_cancels_due
             WHERE next_at <= ?1 ORDER BY next_at LIMIT ?2",
        )?;
        let rows = stmt.query_map(
            params![now, limit.min(UPSTREAM_CANCELS_BATCH_MAX) as i64],
            |r| r.get(0),
        )?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut jobs = Vec::with_capacity(ids.len());
    for id in ids {
        let attempts: i64 = tx
            .prepare_cached(
                "UPDATE provider_cancels SET attempts = attempts + 1, next_at = ?2
                 WHERE job_id = ?1 RETURNING attempts",
            )?
            .query_row(params![id, now + retry_in_ms], |r| r.get(0))?;
        match get(tx, &id) {
            Ok(job) if attempts <= UPSTREAM_CANCEL_ATTEMPTS_MAX => jobs.push(job),
            // Given up, or its row no longer decodes: drop the cancel.
            Ok(_) | Err(Error::CorruptData { .. }) => finish_upstream_cancel(tx, &id)?,
            Err(other) => return Err(other),
        }
    }
    Ok(jobs)
}

/// Drops a sent (or abandoned) upstream cancel.
pub(crate) fn finish_upstream_cancel(tx: &Tx<'_>, job_id: &str) -> Result<()> {
    tx.prepare_cached("DELETE FROM provider_cancels WHERE job_id = ?1")?
        .execute([job_id])?;
    Ok(())
}

/// Records an upstream webhook delivery by its id; `false` when it was
/// already recorded (a retry: apply nothing).
pub(crate) fn record_delivery(
    tx: &Tx<'_>,
    provider: &str,
    delivery_id: &str,
    job_id: Option<&str>,
    now: UnixMillis,
) -> Result<bool> {
    Ok(tx
        .prepare_cached(
            "INSERT INTO provider_deliveries (provider, delivery_id, job_id, received_at)
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        )?
        .execute(params![provider, delivery_id, job_id, now])?
        == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_and_listing_queries_walk_an_index_without_sorting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::Store::open(&crate::store::StoreOptions::new(
            dir.path().join("plans.db"),
        ))
        .expect("open");
        for sql in [
            DUE_SQL,
            OVERDUE_SQL,
            NEXT_RUN_SQL,
            NEXT_DEADLINE_SQL,
            RUNNING_SQL,
            LIST_ACCOUNT_SQL,
            LIST_ALL_SQL,
        ] {
            let plan: Vec<String> = store
                .read(|conn| {
                    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                    let unbound = vec![rusqlite::types::Null; stmt.parameter_count()];
                    let rows = stmt.query_map(rusqlite::params_from_iter(unbound), |row| {
                        row.get::<_, String>(3)
                    })?;
                    Ok(rows.collect::<rusqlite::Result<_>>()?)
                })
                .expect("plan");
            let plan = plan.join("; ");
            assert!(
                plan.contains("USING INDEX") || plan.contains("USING COVERING INDEX"),
                "{sql}\n{plan}"
            );
            assert!(!plan.contains("TEMP B-TREE"), "{sql}\n{plan}");
        }
    }

    #[test]
    fn a_new_job_is_exactly_the_row_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (gate, _, account) = crate::gate::test_support::funded_gate(dir.path(), "insert.db");
        let body = serde_json::json!({"request_id": "r", "model": "z-image", "prompt": "x"});
        let answered = gate.submit(&account, &body).expect("submit").job;
        let stored = gate
            .store_for_tests()
            .read(|conn| get(conn, &answered.id))
            .expect("read back");
        assert_eq!(answered, stored);
    }

    #[test]
    fn only_the_documented_edges_are_allowed() {
        use JobStatus::*;
        let all = [Pending, Running, Succeeded, Failed, Canceled, Expired];
        let allowed: Vec<(JobStatus, JobStatus)> = all
            .iter()
            .flat_map(|a| all.iter().map(move |b| (*a, *b)))
            .filter(|(a, b)| a.can_become(*b))
            .collect();
        assert_eq!(
            allowed,
            [
                (Pending, Running),
                (Pending, Failed),
                (Pending, Canceled),
                (Pending, Expired),
                (Running, Succeeded),
                (Running, Failed),
                (Running, Canceled),
                (Running, Expired),
            ]
        );
        for status in all {
            assert_eq!(JobStatus::parse(status.as_str()), Some(status));
            if status.is_terminal() {
                assert!(all.iter().all(|next| !status.can_become(*next)));
            }
        }
    }
}
