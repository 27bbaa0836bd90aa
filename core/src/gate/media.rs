//! The gate's side of kept outputs: turning a media store on
//! ([`Gate::with_media_store`]), serving a job's output files through their
//! unguessable links ([`Gate::served_output`], [`Gate::kept_output`]: a
//! fixture sample from the binary, or a kept file from disk, or
//! [`Error::OutputExpired`] once its retention passed), the retention sweep
//! ([`Gate::sweep_media`]) and the operator's list of a job's kept files
//! ([`Gate::kept_files`]). The worker keeps and records the files (in
//! `work.rs`). Media never touches the ledger.

use std::path::PathBuf;
use std::sync::Arc;

use crate::clock::UnixMillis;
use crate::error::{Error, Result};
use crate::gate::generate::OutputFile;
use crate::gate::Gate;
use crate::identity;
use crate::jobs::{self, JobStatus};
use crate::media::records::{self, MediaRow};
#[cfg(feature = "test-support")]
use crate::media::KeptFile;
use crate::media::MediaStore;

/// How long kept outputs are served, by default: 7 days.
pub const MEDIA_RETENTION_MS_DEFAULT: i64 = 7 * 24 * 60 * 60 * 1000;
/// The longest retention a gate takes: 10 years (a bound, not a policy).
pub const MEDIA_RETENTION_MS_MAX: i64 = 3_650 * 24 * 60 * 60 * 1000;

/// A kept output file, to be streamed from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptOutput {
    /// Where it lies on disk.
    pub path: PathBuf,
    /// Its media type.
    pub mime: String,
    /// Its size, as recorded (a file on disk of another size is damaged).
    pub bytes: u64,
    /// When its retention ends (its link then answers `output_expired`).
    pub expires_at: UnixMillis,
}

/// What an output link serves.
#[derive(Debug, Clone)]
pub enum ServedOutput {
    /// A fixture sample, embedded in the binary.
    Sample(OutputFile),
    /// A file kept in the media store.
    Kept(KeptOutput),
}

impl Gate {
    /// Turns on keeping outputs in `store`, each served for `retention_ms`
    /// after its job succeeded (1 ms to [`MEDIA_RETENTION_MS_MAX`], else
    /// [`Error::InvalidRequest`] on `media_retention`). Off by default: a
    /// gate without a store records remote outputs under their upstream
    /// URLs.
    pub fn with_media_store(
        mut self,
        store: Arc<dyn MediaStore>,
        retention_ms: i64,
    ) -> Result<Gate> {
        if !(1..=MEDIA_RETENTION_MS_MAX).contains(&retention_ms) {
            return Err(Error::invalid(
                "media_retention",
                format!(
                    "must be 1 ms to {} days",
                    MEDIA_RETENTION_MS_MAX / 86_400_000
                ),
            ));
        }
        self.media = Some(store);
        self.media_retention_ms = retention_ms;
        Ok(self)
    }

    /// The media store, when one is on.
    pub fn media_store(&self) -> Option<&Arc<dyn MediaStore>> {
        self.media.as_ref()
    }

    /// How long kept outputs are served, in milliseconds.
    pub fn media_retention_ms(&self) -> i64 {
        self.media_retention_ms
    }

    /// What output `index` of a succeeded job serves, if `token` is the
    /// job's output token (compared in constant time): the unguessable URL
    /// is the credential. A kept file past its retention (or removed) is
    /// [`Error::OutputExpired`]; anything else not served is `not_found`.
    pub fn served_output(&self, job_id: &str, token: &str, index: usize) -> Result<ServedOutput> {
        let not_found = || Error::NotFound {
            what: "output",
            id: format!("{job_id}/{index}"),
        };
        let now = self.clock.now();
        let read = self.store.read(|conn| {
            let job = jobs::get(conn, job_id)?;
            let row = records::find(conn, job_id, index)?;
            Ok((job, row))
        });
        let (job, row) = match read {
            Ok(found) => found,
            Err(Error::NotFound { .. }) => return Err(not_found()),
            Err(err) => return Err(err),
        };
        if !identity::constant_time_eq(job.output_token.as_bytes(), token.as_bytes())
            || job.status != JobStatus::Succeeded
        {
            return Err(not_found());
        }
        let output = job.outputs.get(index).ok_or_else(not_found)?;
        if let Some(name) = output.file.as_deref() {
            let sample = crate::providers::fixture::sample_file(name).ok_or_else(not_found)?;
            return Ok(ServedOutput::Sample(OutputFile {
                mime: sample.mime,
                bytes: sample.bytes,
            }));
        }
        // An output without a row is a remote one recorded under its
        // upstream URL: never ours to serve.
        let row = row.ok_or_else(not_found)?;
        if !row.is_live(now) {
            return Err(Error::OutputExpired {
                job_id: job_id.to_owned(),
                index,
            });
        }
        let path = self
            .media
            .as_ref()
            .and_then(|store| store.local_path(&row.path))
            .ok_or_else(|| {
                Error::internal(format!(
                    "output {index} of job {job_id} was kept, but no media store serves {}",
                    row.path
                ))
            })?;
        Ok(ServedOutput::Kept(KeptOutput {
            path,
            mime: row.mime,
            bytes: row.bytes,
            expires_at: row.expires_at,
        }))
    }

    /// The kept file behind output `index` of a succeeded job, as
    /// [`Gate::served_output`] decides; a fixture sample is `not_found`
    /// here.
    pub fn kept_output(&self, job_id: &str, token: &str, index: usize) -> Result<KeptOutput> {
        match self.served_output(job_id, token, index)? {
            ServedOutput::Kept(kept) => Ok(kept),
            ServedOutput::Sample(_) => Err(Error::NotFound {
                what: "output",
                id: format!("{job_id}/{index}"),
            }),
        }
    }

    /// Every file kept for job `job_id` (removed ones too), by index: for
    /// the operator, with each file's upstream URL.
    pub fn kept_files(&self, job_id: &str) -> Result<Vec<MediaRow>> {
        self.store.read(|conn| records::for_job(conn, job_id))
    }

    /// Removes up to `limit` kept files whose retention passed: marks their
    /// rows removed (one transaction), then deletes the files (a file
    /// already gone is fine) and their job folders once empty. Returns how
    /// many rows it marked; call again while that is `limit`. Without a
    /// media store it does nothing. A file that cannot be deleted is
    /// [`Error::Internal`] after every other was tried: its row stays
    /// marked, so its link answers `output_expired` all the same.
    pub fn sweep_media(&self, limit: usize) -> Result<usize> {
        let Some(store) = self.media.clone() else {
            return Ok(0);
        };
        let now = self.clock.now();
        let paths = self
            .store
            .write(move |tx| records::expire_due(tx, now, limit))?;
        let mut failures = paths
            .iter()
            .filter_map(|path| store.remove(path).err().map(|err| (path, err)));
        if let Some((path, err)) = failures.next() {
            let more = failures.count();
            return Err(Error::internal(format!(
                "the expired media file {path} could not be deleted ({err}){}",
                if more > 0 {
                    format!(", nor {more} other(s)")
                } else {
                    String::new()
                }
            )));
        }
        Ok(paths.len())
    }

    /// Records `files` as job `job_id`'s kept outputs now, as the worker's
    /// success transaction does, for the workspace's own tests of serving
    /// and sweeping. Built only with the `test-support` feature: no part of
    /// the API.
    #[cfg(feature = "test-support")]
    #[doc(hidden)]
    pub fn record_kept_for_tests(&self, job_id: &str, files: &[KeptFile]) -> Result<()> {
        let now = self.clock.now();
        let expires_at = now.saturating_add(self.media_retention_ms);
        let (job_id, files) = (job_id.to_owned(), files.to_vec());
        self.store
            .write(move |tx| records::record(tx, &job_id, &files, now, expires_at))
    }
}
