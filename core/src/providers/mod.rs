//! Providers: the upstream services that run generations. This module owns
//! the [`Provider`] trait (submit, poll, cancel), the typed errors that tell
//! a retry from a failure, and the [`ProviderRegistry`] that maps a
//! catalog's provider names to implementations. It knows no job table and no
//! ledger: the facade's worker asks a provider and records the answer.
//!
//! [`fixture`] is the deterministic, offline provider; HTTP adapters for
//! real upstreams come later, each behind the same trait.

pub mod fixture;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::jobs::Output;
use crate::pricing::BilledUnits;

/// Outputs a provider may return for one job, at most.
pub const PROVIDER_OUTPUTS_MAX: usize = crate::jobs::OUTPUTS_MAX;
/// The longest task id a provider may return, in characters.
pub const PROVIDER_TASK_ID_CHARS_MAX: usize = 256;
/// The longest output URL a provider may return, in characters.
pub const OUTPUT_URL_CHARS_MAX: usize = 2_048;
/// The longest output media type a provider may return, in characters.
pub const OUTPUT_MIME_CHARS_MAX: usize = 128;
/// The longest machine code of a provider's failure, in characters.
pub const FAILURE_CODE_CHARS_MAX: usize = 64;

/// A provider's answer is input like any other: checks that a task id is
/// non-empty and within [`PROVIDER_TASK_ID_CHARS_MAX`]. The error says what
/// is wrong (for the job's error message), never the value itself.
pub fn check_task_id(task_id: &str) -> Result<(), String> {
    if task_id.trim().is_empty() {
        return Err("the provider answered an empty task id".to_owned());
    }
    let chars = task_id.chars().count();
    if chars > PROVIDER_TASK_ID_CHARS_MAX {
        return Err(format!(
            "the provider answered a task id of {chars} characters \
             (at most {PROVIDER_TASK_ID_CHARS_MAX})"
        ));
    }
    Ok(())
}

/// What a provider is told about a job.
#[derive(Debug, Clone)]
pub struct ProviderJob<'a> {
    /// Our job id: the idempotency key for providers that accept one.
    pub job_id: &'a str,
    /// The model as the catalog names it.
    pub model: &'a str,
    /// The model id at the provider.
    pub upstream_model: &'a str,
    /// The product (`image`, `video`, `music`, `chat`, ...).
    pub product: &'a str,
    /// The prompt, if any.
    pub prompt: Option<&'a str>,
    /// The options priced, defaults filled in.
    pub units: &'a BilledUnits,
    /// Input images.
    pub input_image_urls: &'a [String],
    /// The provider's task id, once submitted.
    pub provider_task_id: Option<&'a str>,
    /// Submissions tried, this one included.
    pub submit_attempts: i64,
    /// True when an earlier submission may have reached the provider (a
    /// crash or a timeout): only idempotent providers may submit again.
    pub resubmission: bool,
    /// Polls answered "still running" so far.
    pub polls: i64,
    /// Polls that failed transiently so far.
    pub poll_errors: i64,
    /// The seed derived from the request (deterministic).
    pub seed: i64,
    /// Where the job's outputs are served from, for providers whose outputs
    /// the appliance serves itself (`.../v1/files/<job>/<token>`).
    pub output_url_base: String,
}

/// A finished generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// What was generated.
    pub outputs: Vec<Output>,
    /// The seed used, where known.
    pub seed: Option<i64>,
}

impl Completion {
    /// Checks a provider's result before it is recorded: at least one and
    /// at most [`PROVIDER_OUTPUTS_MAX`] outputs, each with a non-empty URL
    /// within [`OUTPUT_URL_CHARS_MAX`] and a non-empty media type within
    /// [`OUTPUT_MIME_CHARS_MAX`].
    pub fn check(&self) -> Result<(), String> {
        let count = self.outputs.len();
        if count == 0 || count > PROVIDER_OUTPUTS_MAX {
            return Err(format!(
                "the provider answered {count} outputs (1 to {PROVIDER_OUTPUTS_MAX})"
            ));
        }
        for (index, output) in self.outputs.iter().enumerate() {
            let url = output.url.chars().count();
            if url == 0 || url > OUTPUT_URL_CHARS_MAX {
                return Err(format!(
                    "output {index}: a URL of {url} characters (1 to {OUTPUT_URL_CHARS_MAX})"
                ));
            }
            let mime = output.mime.chars().count();
            if mime == 0 || mime > OUTPUT_MIME_CHARS_MAX {
                return Err(format!(
                    "output {index}: a media type of {mime} characters \
                     (1 to {OUTPUT_MIME_CHARS_MAX})"
                ));
            }
        }
        Ok(())
    }
}

/// What a submission returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submission {
    /// The provider queued it under this task id.
    Accepted {
        /// The provider's id for the task.
        task_id: String,
    },
    /// The provider answered synchronously.
    Completed {
        /// The provider's id for the task.
        task_id: String,
        /// The result.
        completion: Completion,
    },
}

/// What a poll found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollStatus {
    /// Still queued or generating.
    Running,
    /// Done.
    Succeeded(Completion),
    /// The generation failed.
    Failed {
        /// A machine code.
        code: String,
        /// The provider's reason.
        message: String,
    },
}

/// Why a provider call did not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// Worth retrying later (timeouts, 429, 5xx, maintenance).
    #[error("transient provider error: {message}")]
    Transient {
        /// What happened.
        message: String,
    },
    /// Retrying will not help; the job fails with this reason.
    #[error("provider refused: {code}: {message}")]
    Permanent {
        /// A machine code.
        code: String,
        /// The provider's reason.
        message: String,
    },
}

/// An upstream that runs generations.
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// Hands the job to the provider.
    fn submit(&self, job: &ProviderJob<'_>) -> Result<Submission, ProviderError>;
    /// Asks how a submitted job is doing.
    fn poll(&self, job: &ProviderJob<'_>) -> Result<PollStatus, ProviderError>;
    /// Asks the provider to stop a job (best effort).
    fn cancel(&self, job: &ProviderJob<'_>) -> Result<(), ProviderError>;
    /// Whether submitting the same job twice yields one task (the job id is
    /// an idempotency key). Jobs whose submission is uncertain after a crash
    /// are resubmitted only to such providers.
    fn idempotent_submit(&self) -> bool;
}

/// Providers by the names catalogs use.
#[derive(Debug, Clone, Default)]
pub struct ProviderRegistry {
    providers: BTreeMap<String, Arc<dyn Provider>>,
}

impl ProviderRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        ProviderRegistry::default()
    }

    /// A registry with only the fixture provider, under `fixture`, running
    /// `scenarios`.
    pub fn fixture(scenarios: fixture::Scenarios) -> Self {
        let mut registry = ProviderRegistry::new();
        registry.insert(
            "fixture",
            Arc::new(fixture::FixtureProvider::new(scenarios)),
        );
        registry
    }

    /// Registers `provider` under `name`, replacing any other.
    pub fn insert(&mut self, name: &str, provider: Arc<dyn Provider>) {
        self.providers.insert(name.to_owned(), provider);
    }

    /// The provider registered under `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Provider>> {
        self.providers.get(name)
    }

    /// The registered names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.providers.keys().map(String::as_str)
    }
}
