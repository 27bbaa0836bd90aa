//! Providers: the upstream services that run generations. This module owns
//! the [`Provider`] trait (submit, poll, reconcile, cancel, check), the
//! typed errors that say whether a failed call reached the upstream
//! ([`ProviderError`]), what an answer carries ([`Submission`],
//! [`Completion`], [`Artifact`], [`Usage`]) and the [`ProviderRegistry`]
//! that maps a catalog's provider names to running instances. It knows no
//! job table and no ledger: the facade's worker asks a provider and
//! records the answer.
//!
//! [`fixture`] is the deterministic, offline provider. [`config`] reads the
//! operator's providers file (pure: no I/O). The HTTP adapters for real
//! upstreams (`openai`, `fal`, `replicate`, `comfyui`, `kie`, over the
//! shared client in `http`) are built only with the cargo feature `http`,
//! so an embedder can take the core without an HTTP client.
//!
//! Invariant: a provider's answer is input like any other. Task ids,
//! artifacts and failure codes are checked before they are recorded, and a
//! provider never puts a credential or a raw upstream body in an error:
//! adapters summarise.

#[cfg(feature = "http")]
pub mod comfyui;
pub mod config;
#[cfg(feature = "http")]
pub mod fal;
pub mod fixture;
#[cfg(feature = "http")]
pub mod hooks;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "http")]
pub mod kie;
#[cfg(feature = "http")]
pub mod openai;
pub mod registry;
#[cfg(feature = "http")]
pub mod replicate;

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
    /// The opaque state the adapter answered with the submission, if any.
    pub provider_state: Option<&'a serde_json::Value>,
    /// The public URL upstream webhooks for this provider instance reach
    /// (`<public>/v1/providers/<instance>/webhook`), when webhooks are on.
    pub webhook_url: Option<String>,
}

/// One output as a provider answered it, before it is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Artifact {
    /// A file at an upstream URL, copied into the media store before the
    /// job succeeds (upstream URLs expire).
    Remote {
        /// The upstream URL (recorded for the operator, never shown to
        /// agents once the file is kept).
        url: String,
        /// The media type the upstream announced, if any.
        mime: Option<String>,
    },
    /// Bytes the upstream answered inline (`b64_json`, a data URL, a chat
    /// reply), bounded by [`ARTIFACT_INLINE_BYTES_MAX`].
    Inline {
        /// The content.
        bytes: Vec<u8>,
        /// Its media type.
        mime: String,
    },
    /// An output creditgate already serves itself (the fixture's samples).
    Hosted(Output),
}

/// The most bytes one inline artifact may carry.
pub const ARTIFACT_INLINE_BYTES_MAX: usize = 32 * 1024 * 1024;

impl Artifact {
    /// Its media type, where known.
    pub fn mime(&self) -> Option<&str> {
        match self {
            Artifact::Remote { mime, .. } => mime.as_deref(),
            Artifact::Inline { mime, .. } => Some(mime),
            Artifact::Hosted(output) => Some(&output.mime),
        }
    }

    fn check(&self, index: usize) -> Result<(), String> {
        let check_mime = |mime: &str| {
            let chars = mime.chars().count();
            if chars == 0 || chars > OUTPUT_MIME_CHARS_MAX {
                return Err(format!(
                    "output {index}: a media type of {chars} characters \
                     (1 to {OUTPUT_MIME_CHARS_MAX})"
                ));
            }
            Ok(())
        };
        let check_url = |url: &str| {
            let chars = url.chars().count();
            if chars == 0 || chars > OUTPUT_URL_CHARS_MAX {
                return Err(format!(
                    "output {index}: a URL of {chars} characters (1 to {OUTPUT_URL_CHARS_MAX})"
                ));
            }
            Ok(())
        };
        match self {
            Artifact::Remote { url, mime } => {
                check_url(url)?;
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(format!("output {index}: not an http(s) URL"));
                }
                if let Some(mime) = mime {
                    check_mime(mime)?;
                }
                Ok(())
            }
            Artifact::Inline { bytes, mime } => {
                if bytes.len() > ARTIFACT_INLINE_BYTES_MAX {
                    return Err(format!(
                        "output {index}: {} inline bytes (at most {ARTIFACT_INLINE_BYTES_MAX})",
                        bytes.len()
                    ));
                }
                check_mime(mime)
            }
            Artifact::Hosted(output) => {
                check_url(&output.url)?;
                check_mime(&output.mime)
            }
        }
    }
}

/// What a generation actually used, where the upstream says (for models
/// priced by usage).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// Input (prompt) tokens.
    pub input_tokens: Option<u64>,
    /// Output (completion) tokens.
    pub output_tokens: Option<u64>,
    /// Seconds of media generated (video, audio), in milliseconds.
    pub media_ms: Option<u64>,
}

/// A finished generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// What was generated, as the provider answered it.
    pub artifacts: Vec<Artifact>,
    /// The seed used, where known.
    pub seed: Option<i64>,
    /// What it used, where the upstream says.
    pub usage: Option<Usage>,
}

impl Completion {
    /// A completion of `artifacts` with no seed and no usage.
    pub fn of(artifacts: Vec<Artifact>) -> Completion {
        Completion {
            artifacts,
            seed: None,
            usage: None,
        }
    }

    /// Checks a provider's result before it is recorded: at least one and
    /// at most [`PROVIDER_OUTPUTS_MAX`] artifacts, each with a non-empty
    /// `http(s)` URL within [`OUTPUT_URL_CHARS_MAX`] or inline bytes within
    /// [`ARTIFACT_INLINE_BYTES_MAX`], and a media type, where given, within
    /// [`OUTPUT_MIME_CHARS_MAX`].
    pub fn check(&self) -> Result<(), String> {
        let count = self.artifacts.len();
        if count == 0 || count > PROVIDER_OUTPUTS_MAX {
            return Err(format!(
                "the provider answered {count} outputs (1 to {PROVIDER_OUTPUTS_MAX})"
            ));
        }
        for (index, artifact) in self.artifacts.iter().enumerate() {
            artifact.check(index)?;
        }
        Ok(())
    }

    /// Whether every artifact is already served by creditgate (nothing to
    /// copy into the media store).
    pub fn is_hosted(&self) -> bool {
        self.artifacts
            .iter()
            .all(|artifact| matches!(artifact, Artifact::Hosted(_)))
    }
}

/// What a submission returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submission {
    /// The provider queued it under this task id.
    Accepted {
        /// The provider's id for the task.
        task_id: String,
        /// Opaque state the adapter needs later (status and result URLs,
        /// ComfyUI's client id, kie's per-family endpoint), kept on the job
        /// and handed back in [`ProviderJob::provider_state`]; at most
        /// [`PROVIDER_STATE_BYTES_MAX`] bytes as JSON.
        state: Option<serde_json::Value>,
    },
    /// The provider answered synchronously.
    Completed {
        /// The provider's id for the task.
        task_id: String,
        /// The result.
        completion: Completion,
    },
}

/// The most bytes a job's provider state may take, as JSON.
pub const PROVIDER_STATE_BYTES_MAX: usize = 8 * 1024;

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
    /// It ended without running and will never run (Replicate's `aborted`,
    /// a ComfyUI prompt deleted from the queue): nothing was billed.
    Abandoned {
        /// Why.
        message: String,
    },
}

/// What asking the upstream about a submission of uncertain outcome found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconciled {
    /// The upstream has it: record this as the submission's answer.
    Found(Submission),
    /// The upstream does not have it: submitting is safe.
    Absent,
    /// The upstream cannot be asked by our id.
    Unsupported,
}

/// Why a provider call did not answer, in the three cases that decide what
/// happens next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The request certainly did not start a task (connection refused, DNS,
    /// a 429, a 5xx before acceptance, maintenance): safe to send again,
    /// after `retry_after_ms` when the upstream said.
    #[error("provider not reached: {message}")]
    NotSent {
        /// What happened.
        message: String,
        /// The upstream's own retry hint (`Retry-After`), in milliseconds.
        retry_after_ms: Option<i64>,
    },
    /// The request may have reached the upstream and its answer was lost (a
    /// timeout after sending, a connection reset mid-answer). A submission
    /// is sent again only to an idempotent upstream; otherwise it is
    /// reconciled or failed as `submission_uncertain`.
    #[error("provider answer lost: {message}")]
    OutcomeUnknown {
        /// What happened.
        message: String,
    },
    /// Retrying will not help; the job fails with this code (one of ours:
    /// adapters map upstream codes) and reason.
    #[error("provider refused: {code}: {message}")]
    Permanent {
        /// A machine code.
        code: String,
        /// The reason, summarised (never a raw upstream body).
        message: String,
    },
}

impl ProviderError {
    /// A [`ProviderError::NotSent`] without a retry hint.
    pub fn not_sent(message: impl Into<String>) -> ProviderError {
        ProviderError::NotSent {
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// A [`ProviderError::Permanent`].
    pub fn permanent(code: &str, message: impl Into<String>) -> ProviderError {
        ProviderError::Permanent {
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// This error with `secret` (a credential an upstream echoed) blotted
    /// out of its message.
    pub fn redacted(self, secret: &str) -> ProviderError {
        match self {
            ProviderError::NotSent {
                message,
                retry_after_ms,
            } => ProviderError::NotSent {
                message: redact(message, secret),
                retry_after_ms,
            },
            ProviderError::OutcomeUnknown { message } => ProviderError::OutcomeUnknown {
                message: redact(message, secret),
            },
            ProviderError::Permanent { code, message } => ProviderError::Permanent {
                code,
                message: redact(message, secret),
            },
        }
    }
}

/// `text` with `secret` blotted out (an empty secret changes nothing).
pub fn redact(text: String, secret: &str) -> String {
    if secret.is_empty() || !text.contains(secret) {
        text
    } else {
        text.replace(secret, "<redacted>")
    }
}

/// What a provider's cheapest read found (`creditgate providers check`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// The upstream answered at all.
    pub reachable: bool,
    /// The credential was accepted (`None` where the upstream takes none).
    pub auth_ok: Option<bool>,
    /// The upstream account's credits or balance, where the API tells, as
    /// the upstream words it.
    pub upstream_credits: Option<String>,
    /// What was asked and what it said, in a line (no secret in it).
    pub detail: String,
}

/// An upstream callback whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    /// The delivery's own id (Replicate's `webhook-id`; else derived from
    /// the task and its status), on which repeats are deduplicated.
    pub delivery_id: String,
    /// The provider's task id it is about.
    pub task_id: String,
}

/// The most bytes of an upstream callback read.
pub const WEBHOOK_BODY_BYTES_MAX: usize = 1024 * 1024;

/// How long a provider call may take, by default, in milliseconds.
pub const CALL_TIMEOUT_MS_DEFAULT: i64 = 60_000;
/// Concurrent calls to one provider instance, by default.
pub const CONCURRENCY_DEFAULT: usize = 8;

/// An upstream that runs generations. Calls block (each bounded by the
/// provider's own timeout) and are made outside any transaction.
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// Hands the job to the provider.
    fn submit(&self, job: &ProviderJob<'_>) -> Result<Submission, ProviderError>;
    /// Asks how a submitted job is doing.
    fn poll(&self, job: &ProviderJob<'_>) -> Result<PollStatus, ProviderError>;
    /// Asks the provider to stop a job (best effort).
    fn cancel(&self, job: &ProviderJob<'_>) -> Result<(), ProviderError>;
    /// Whether submitting the same job twice yields one task (the job id is
    /// an idempotency key). Jobs whose submission is uncertain after a crash
    /// or a lost answer are resubmitted only to such providers.
    fn idempotent_submit(&self) -> bool;
    /// Asks the upstream, by our job id, whether a submission of uncertain
    /// outcome reached it. Most upstreams cannot be asked.
    fn reconcile(&self, _job: &ProviderJob<'_>) -> Result<Reconciled, ProviderError> {
        Ok(Reconciled::Unsupported)
    }
    /// The cheapest read that shows the upstream is reachable and the
    /// credential works.
    fn check(&self) -> Result<CheckReport, ProviderError> {
        Ok(CheckReport {
            reachable: true,
            auth_ok: None,
            upstream_credits: None,
            detail: "nothing to check".to_owned(),
        })
    }
    /// The longest one call may take, in milliseconds; a claimed job's
    /// lease is derived from it.
    fn call_timeout_ms(&self) -> i64 {
        CALL_TIMEOUT_MS_DEFAULT
    }
    /// Calls in flight at once, at most.
    fn concurrency(&self) -> usize {
        CONCURRENCY_DEFAULT
    }
    /// Whether calls are answered in this process without I/O (the
    /// fixture): the worker then makes them in turn, without a thread each.
    fn in_process(&self) -> bool {
        false
    }
    /// Whether this instance's upstream is told to call our webhook
    /// (`ProviderJob::webhook_url` is then set).
    fn webhooks(&self) -> bool {
        false
    }
    /// Verifies an upstream callback (`headers` with lowercase names, the
    /// raw `body`, the time `now_ms`) and says which task it is about; the
    /// reason it did not verify otherwise (no secret in it).
    fn verify_webhook(
        &self,
        _headers: &[(String, String)],
        _body: &[u8],
        _now_ms: i64,
    ) -> Result<WebhookEvent, String> {
        Err("this provider instance takes no webhooks".to_owned())
    }
}

/// Providers by the names catalogs use.
#[derive(Debug, Clone, Default)]
pub struct ProviderRegistry {
    providers: BTreeMap<String, Arc<dyn Provider>>,
    /// The largest output each instance may hand back, where configured.
    download_bytes_max: BTreeMap<String, u64>,
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

    /// Bounds the outputs kept from the instance `name` to `bytes` each.
    pub fn set_download_bytes_max(&mut self, name: &str, bytes: u64) {
        self.download_bytes_max.insert(name.to_owned(), bytes);
    }

    /// The largest output the instance `name` may hand back (no bound of
    /// its own: `u64::MAX`, the media store's bound applies).
    pub fn download_bytes_max(&self, name: &str) -> u64 {
        self.download_bytes_max
            .get(name)
            .copied()
            .unwrap_or(u64::MAX)
    }

    /// The provider registered under `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Provider>> {
        self.providers.get(name)
    }

    /// The registered names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.providers.keys().map(String::as_str)
    }

    /// The longest call timeout of any registered provider.
    pub fn longest_call_timeout_ms(&self) -> i64 {
        self.providers
            .values()
            .map(|provider| provider.call_timeout_ms())
            .max()
            .unwrap_or(CALL_TIMEOUT_MS_DEFAULT)
    }
}
