//! The `media_files` table: one row per kept output, written in the
//! worker's success transaction (`record`), marked removed by the
//! retention sweep (`expire_due`, which hands back the paths for the
//! caller to delete outside the transaction) and read to serve a file
//! (`find`) or show a job's files to the operator (`for_job`). This
//! module alone writes `media_files`. Nothing here touches the ledger.

use rusqlite::{params, OptionalExtension};

use super::KeptFile;
use crate::clock::UnixMillis;
use crate::error::{Error, Result};
use crate::store::{ReadOnly, Tx};

/// Rows one sweep marks, at most.
pub const SWEEP_BATCH_MAX: usize = 1_000;

/// A kept file as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRow {
    /// The job.
    pub job_id: String,
    /// The output's index in the job.
    pub idx: usize,
    /// Where it is, relative to the store's directory.
    pub path: String,
    /// Its media type.
    pub mime: String,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256.
    pub sha256: [u8; 32],
    /// Where it came from (operators only; `None` for inline outputs).
    pub upstream_url: Option<String>,
    /// When it was kept.
    pub created_at: UnixMillis,
    /// When its retention ends.
    pub expires_at: UnixMillis,
    /// When the sweep removed it, if it did.
    pub removed_at: Option<UnixMillis>,
}

impl MediaRow {
    /// Whether it can still be served at `now`: not removed, not expired.
    pub fn is_live(&self, now: UnixMillis) -> bool {
        self.removed_at.is_none() && now < self.expires_at
    }
}

/// Records job `job_id`'s kept `files`, output `i` at index `i`, kept until
/// `expires_at`. The worker calls it in the success transaction, with
/// `expires_at` = now + the gate's retention.
// Until the worker (gate/work.rs) keeps outputs, only the test hook calls it.
pub(crate) fn record(
    tx: &Tx<'_>,
    job_id: &str,
    files: &[KeptFile],
    now: UnixMillis,
    expires_at: UnixMillis,
) -> Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO media_files (job_id, idx, path, mime, bytes, sha256, upstream_url, \
         created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for (idx, file) in files.iter().enumerate() {
        let bytes = i64::try_from(file.bytes)
            .map_err(|_| Error::internal(format!("a kept file of {} bytes", file.bytes)))?;
        insert.execute(params![
            job_id,
            idx as i64,
            file.path,
            file.mime,
            bytes,
            &file.sha256[..],
            file.upstream_url,
            now,
            expires_at
        ])?;
    }
    Ok(())
}

/// Marks at most `limit` (capped at [`SWEEP_BATCH_MAX`]) files whose
/// retention ended by `now` as removed, oldest first, and returns their
/// paths for the caller to delete once the transaction committed.
pub(crate) fn expire_due(tx: &Tx<'_>, now: UnixMillis, limit: usize) -> Result<Vec<String>> {
    let limit = limit.min(SWEEP_BATCH_MAX) as i64;
    let mut stmt = tx.prepare_cached(
        "UPDATE media_files SET removed_at = ?1 WHERE (job_id, idx) IN ( \
             SELECT job_id, idx FROM media_files INDEXED BY media_files_expiry \
             WHERE removed_at IS NULL AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2) \
         RETURNING path",
    )?;
    let paths = stmt
        .query_map(params![now, limit], |row| row.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(paths)
}

const COLUMNS: &str = "job_id, idx, path, mime, bytes, sha256, upstream_url, created_at, \
                       expires_at, removed_at";

/// Output `idx` of job `job_id`, if it was kept (removed or not).
pub(crate) fn find(conn: &ReadOnly<'_>, job_id: &str, idx: usize) -> Result<Option<MediaRow>> {
    let sql = format!("SELECT {COLUMNS} FROM media_files WHERE job_id = ?1 AND idx = ?2");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![job_id, idx as i64], from_row)
        .optional()?)
}

/// Every kept file of job `job_id`, by index.
pub(crate) fn for_job(conn: &ReadOnly<'_>, job_id: &str) -> Result<Vec<MediaRow>> {
    let sql = format!("SELECT {COLUMNS} FROM media_files WHERE job_id = ?1 ORDER BY idx");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt
        .query_map([job_id], from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<MediaRow> {
    let sha: Vec<u8> = row.get(5)?;
    let sha256: [u8; 32] = sha.as_slice().try_into().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            5,
            rusqlite::types::Type::Blob,
            "a SHA-256 of another length".into(),
        )
    })?;
    let idx: i64 = row.get(1)?;
    let bytes: i64 = row.get(4)?;
    let to_usize = |value: i64, column: usize| {
        usize::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(column, value))
    };
    Ok(MediaRow {
        job_id: row.get(0)?,
        idx: to_usize(idx, 1)?,
        path: row.get(2)?,
        mime: row.get(3)?,
        bytes: to_usize(bytes, 4)? as u64,
        sha256,
        upstream_url: row.get(6)?,
        created_at: row.get(7)?,
        expires_at: row.get(8)?,
        removed_at: row.get(9)?,
    })
}
