//! Building the running providers from the operator's providers file: one
//! instance per entry, its credential read through the lookup the caller
//! hands in (the environment, in the appliance), never from the file.
//! Owns no table.
//!
//! The fixture provider is always there under `fixture` (agent builders
//! test offline against it) unless the file defines an instance of that
//! name itself.
//!
//! Invariant: every instance with a credential is wrapped in [`Redacting`],
//! so whatever an adapter answers (an error, a failed generation's reason,
//! a check's detail) has the credential blotted out should the upstream
//! echo it: by construction, not by each adapter's care.

use std::path::Path;
use std::sync::Arc;

use super::config::{credentials, ProviderKind, ProvidersFile};
use super::fixture::{FixtureProvider, Scenarios};
use super::{
    CheckReport, PollStatus, Provider, ProviderError, ProviderJob, ProviderRegistry, Reconciled,
    Submission,
};
use crate::error::{Error, Result};

/// Builds the registry of `file`'s instances. `base_dir` is the providers
/// file's folder (relative `workflows_dir`s are resolved against it);
/// `lookup` reads an environment variable; `scenarios` drive the fixture
/// instances. A missing credential, an unusable setting or a kind this
/// build lacks is [`Error::InvalidRequest`] naming the instance.
pub fn build(
    file: &ProvidersFile,
    base_dir: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    scenarios: &Scenarios,
) -> Result<ProviderRegistry> {
    let mut registry = ProviderRegistry::fixture(scenarios.clone());
    for (name, config) in &file.instances {
        let (credential, webhook_secret) = credentials(config, lookup)?;
        let secret = credential.clone();
        let mut provider: Arc<dyn Provider> = match config.kind {
            ProviderKind::Fixture => Arc::new(FixtureProvider::new(scenarios.clone())),
            kind => adapter(kind, config, credential, webhook_secret, base_dir)?,
        };
        if let Some(secret) = secret {
            provider = Arc::new(Redacting {
                inner: provider,
                secret,
            });
        }
        registry.insert(name, provider);
        registry.set_download_bytes_max(name, config.download_bytes_max);
    }
    Ok(registry)
}

/// An instance whose every answer has its credential blotted out.
pub struct Redacting {
    inner: Arc<dyn Provider>,
    secret: super::config::Credential,
}

impl std::fmt::Debug for Redacting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redacting")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl Redacting {
    fn error(&self, err: ProviderError) -> ProviderError {
        err.redacted(self.secret.expose())
    }

    fn text(&self, text: String) -> String {
        super::redact(text, self.secret.expose())
    }

    fn status(&self, status: PollStatus) -> PollStatus {
        match status {
            PollStatus::Failed { code, message } => PollStatus::Failed {
                code,
                message: self.text(message),
            },
            PollStatus::Abandoned { message } => PollStatus::Abandoned {
                message: self.text(message),
            },
            other => other,
        }
    }
}

impl Provider for Redacting {
    fn submit(&self, job: &ProviderJob<'_>) -> std::result::Result<Submission, ProviderError> {
        self.inner.submit(job).map_err(|err| self.error(err))
    }
    fn poll(&self, job: &ProviderJob<'_>) -> std::result::Result<PollStatus, ProviderError> {
        self.inner
            .poll(job)
            .map(|status| self.status(status))
            .map_err(|err| self.error(err))
    }
    fn cancel(&self, job: &ProviderJob<'_>) -> std::result::Result<(), ProviderError> {
        self.inner.cancel(job).map_err(|err| self.error(err))
    }
    fn idempotent_submit(&self) -> bool {
        self.inner.idempotent_submit()
    }
    fn reconcile(&self, job: &ProviderJob<'_>) -> std::result::Result<Reconciled, ProviderError> {
        self.inner.reconcile(job).map_err(|err| self.error(err))
    }
    fn check(&self) -> std::result::Result<CheckReport, ProviderError> {
        self.inner
            .check()
            .map(|report| CheckReport {
                detail: self.text(report.detail),
                ..report
            })
            .map_err(|err| self.error(err))
    }
    fn call_timeout_ms(&self) -> i64 {
        self.inner.call_timeout_ms()
    }
    fn concurrency(&self) -> usize {
        self.inner.concurrency()
    }
    fn in_process(&self) -> bool {
        self.inner.in_process()
    }
    fn webhooks(&self) -> bool {
        self.inner.webhooks()
    }
    fn verify_webhook(
        &self,
        headers: &[(String, String)],
        body: &[u8],
        now_ms: i64,
    ) -> std::result::Result<super::WebhookEvent, String> {
        self.inner
            .verify_webhook(headers, body, now_ms)
            .map_err(|reason| self.text(reason))
    }
}

#[cfg(not(feature = "http"))]
fn adapter(
    kind: ProviderKind,
    config: &super::config::ProviderConfig,
    _credential: Option<super::config::Credential>,
    _webhook_secret: Option<super::config::Credential>,
    _base_dir: &Path,
) -> Result<Arc<dyn Provider>> {
    Err(Error::invalid(
        &format!("providers.{}.kind", config.name),
        format!(
            "this build has no HTTP client: {} needs the cargo feature `http`",
            kind.as_str()
        ),
    ))
}

#[cfg(feature = "http")]
fn adapter(
    kind: ProviderKind,
    config: &super::config::ProviderConfig,
    credential: Option<super::config::Credential>,
    webhook_secret: Option<super::config::Credential>,
    base_dir: &Path,
) -> Result<Arc<dyn Provider>> {
    use super::{comfyui, fal, kie, openai, replicate};
    let inner: Arc<dyn Provider> = match kind {
        ProviderKind::Openai => Arc::new(openai::OpenAiProvider::new(config, credential)?),
        ProviderKind::Fal => Arc::new(fal::FalProvider::new(config, credential)?),
        ProviderKind::Replicate => Arc::new(replicate::ReplicateProvider::new(config, credential)?),
        ProviderKind::Kie => Arc::new(kie::KieProvider::new(config, credential)?),
        ProviderKind::Comfyui => {
            // Workflow folders are relative to the providers file.
            let mut config = config.clone();
            config.workflows_dir = config.workflows_dir.map(|dir| {
                let path = Path::new(&dir);
                if path.is_absolute() {
                    dir
                } else {
                    base_dir.join(path).to_string_lossy().into_owned()
                }
            });
            Arc::new(comfyui::ComfyUiProvider::new(&config, credential)?)
        }
        ProviderKind::Fixture => {
            return Err(Error::internal(
                "the fixture kind is built without an adapter",
            ))
        }
    };
    super::hooks::Hooked::wrap(inner, config, webhook_secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::config::Credential;

    /// An upstream that repeats the key it was sent in everything it says.
    #[derive(Debug)]
    struct Echo;

    const KEY: &str = "sk-live-0123456789";

    impl Provider for Echo {
        fn submit(&self, _: &ProviderJob<'_>) -> std::result::Result<Submission, ProviderError> {
            Err(ProviderError::permanent(
                "provider_auth_failed",
                format!("Incorrect API key provided: {KEY}"),
            ))
        }
        fn poll(&self, _: &ProviderJob<'_>) -> std::result::Result<PollStatus, ProviderError> {
            Ok(PollStatus::Failed {
                code: "generation_failed".into(),
                message: format!("run by {KEY} failed"),
            })
        }
        fn cancel(&self, _: &ProviderJob<'_>) -> std::result::Result<(), ProviderError> {
            Err(ProviderError::not_sent(format!("no such key {KEY}")))
        }
        fn idempotent_submit(&self) -> bool {
            false
        }
        fn check(&self) -> std::result::Result<CheckReport, ProviderError> {
            Ok(CheckReport {
                reachable: true,
                auth_ok: Some(false),
                upstream_credits: None,
                detail: format!("key {KEY} refused"),
            })
        }
    }

    #[test]
    fn every_answer_of_a_wrapped_instance_has_its_key_blotted_out() {
        let wrapped = Redacting {
            inner: Arc::new(Echo),
            secret: Credential::new(KEY),
        };
        let units = crate::pricing::BilledUnits::default();
        let job = ProviderJob {
            job_id: "job_1",
            model: "m",
            upstream_model: "m",
            product: "image",
            prompt: None,
            units: &units,
            input_image_urls: &[],
            provider_task_id: Some("t"),
            submit_attempts: 1,
            resubmission: false,
            polls: 0,
            poll_errors: 0,
            seed: 1,
            output_url_base: String::new(),
            provider_state: None,
            webhook_url: None,
        };
        let said = [
            format!("{:?}", wrapped.submit(&job)),
            format!("{:?}", wrapped.poll(&job)),
            format!("{:?}", wrapped.cancel(&job)),
            format!("{:?}", wrapped.check()),
        ];
        for text in &said {
            assert!(!text.contains(KEY), "{text}");
            assert!(text.contains("<redacted>"), "{text}");
        }
    }
}
