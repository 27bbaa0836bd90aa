//! The media store seam: where a job's outputs are kept before it
//! succeeds, because every upstream's URLs expire. This module owns the
//! [`MediaStore`] trait the worker calls (outside any transaction) to copy a
//! completion's [`Artifact`]s, what a kept file is ([`KeptFile`]) and why
//! keeping failed ([`KeepError`]). It will own the `media_files` table.
//!
//! A gate without a media store (an embedder's choice) records remote
//! outputs under their upstream URLs as they are, and fails a job whose
//! outputs came inline (there is nowhere to serve them from).

use crate::providers::Artifact;

/// A file copied into the media store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptFile {
    /// Where it is, relative to the store's directory.
    pub path: String,
    /// The file name agents see in its link (`0.png`).
    pub name: String,
    /// Its media type, checked against the product.
    pub mime: String,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256.
    pub sha256: [u8; 32],
    /// Where it came from, for the operator (`None` for inline outputs).
    pub upstream_url: Option<String>,
}

/// Why outputs could not be kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeepError {
    /// Worth trying again (a timeout, a 5xx, a reset connection).
    #[error("keeping the outputs failed for now: {message}")]
    Transient {
        /// What happened (no secret, no body).
        message: String,
    },
    /// Trying again will not help (a 404, an output larger than allowed, a
    /// content type that is not the product's): the job fails, its hold is
    /// released, and the operator is told the upstream may have billed.
    #[error("the outputs cannot be kept: {code}: {message}")]
    Permanent {
        /// A machine code (`output_unavailable`, `output_too_large`,
        /// `output_type_mismatch`, `media_store_failed`).
        code: String,
        /// What happened.
        message: String,
    },
}

/// What the worker asks of a media store.
pub trait MediaStore: Send + Sync + std::fmt::Debug {
    /// Copies `artifacts` (none of them [`Artifact::Hosted`]) of job
    /// `job_id`, a `product` job, into the store, in order: all of them or
    /// none (a failure removes what this call wrote). Blocks; bounded in
    /// bytes and time by the store's own limits.
    fn keep(
        &self,
        job_id: &str,
        product: &str,
        artifacts: &[Artifact],
    ) -> Result<Vec<KeptFile>, KeepError>;

    /// The longest one [`MediaStore::keep`] may take, in milliseconds; a
    /// claimed job's lease covers it.
    fn keep_timeout_ms(&self) -> i64;
}
