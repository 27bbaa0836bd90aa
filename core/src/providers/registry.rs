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
        let (credential, _webhook_secret) = credentials(config, lookup)?;
        let provider: Arc<dyn Provider> = match config.kind {
            ProviderKind::Fixture => Arc::new(FixtureProvider::new(scenarios.clone())),
            kind => adapter(kind, config, credential, _webhook_secret, base_dir)?,
        };
        registry.insert(name, provider);
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
    _credential: Option<super::config::Credential>,
    _webhook_secret: Option<super::config::Credential>,
    _base_dir: &Path,
) -> Result<Arc<dyn Provider>> {
    Err(Error::invalid(
        &format!("providers.{}.kind", config.name),
        format!("MERGE: {}", kind.as_str()),
    ))
}
