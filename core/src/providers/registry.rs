//! Building the running providers from the operator's providers file: one
//! instance per entry, its credential read through the lookup the caller
//! hands in (the environment, in the appliance), never from the file.
//! Owns no table.
//!
//! The fixture provider is always there under `fixture` (agent builders
//! test offline against it) unless the file defines an instance of that
//! name itself.

use std::path::Path;
use std::sync::Arc;

use super::config::{credentials, ProviderKind, ProvidersFile};
use super::fixture::{FixtureProvider, Scenarios};
use super::{Provider, ProviderRegistry};
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
        let provider: Arc<dyn Provider> = match config.kind {
            ProviderKind::Fixture => Arc::new(FixtureProvider::new(scenarios.clone())),
            kind => adapter(kind, config, credential, webhook_secret, base_dir)?,
        };
        registry.insert(name, provider);
        registry.set_download_bytes_max(name, config.download_bytes_max);
    }
    Ok(registry)
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
