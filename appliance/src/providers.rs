//! Loading the operator's providers file (`--providers`,
//! `CREDITGATE_PROVIDERS`) into running providers, and `creditgate
//! providers check`. The file is read here (bounded) and parsed and built by
//! the core; credentials come from the environment variables it names.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use creditgate::providers::config::{ProvidersFile, PROVIDERS_FILE_BYTES_MAX};
use creditgate::providers::fixture::Scenarios;
use creditgate::providers::{registry, CheckReport, ProviderError, ProviderRegistry};

/// The providers of `path` (plus the fixture provider), or only the
/// fixture provider when no file is given.
pub fn load(path: Option<&Path>, scenarios: &Scenarios) -> anyhow::Result<ProviderRegistry> {
    let Some(path) = path else {
        return Ok(ProviderRegistry::fixture(scenarios.clone()));
    };
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read providers file {}", path.display()))?;
    let mut text = String::new();
    file.take(PROVIDERS_FILE_BYTES_MAX as u64 + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read providers file {}", path.display()))?;
    let parsed = ProvidersFile::parse(&text)
        .with_context(|| format!("invalid providers file {}", path.display()))?;
    let base_dir = path.parent().unwrap_or_else(|| Path::new("."));
    registry::build(&parsed, base_dir, &|var| std::env::var(var).ok(), scenarios)
        .with_context(|| format!("cannot set up the providers of {}", path.display()))
}

/// One provider's check, for rendering.
pub struct Checked {
    /// The instance name.
    pub name: String,
    /// What the check found, or why it could not ask.
    pub outcome: Result<CheckReport, ProviderError>,
}

impl Checked {
    /// Whether the provider is reachable and its credential (if any) works.
    pub fn is_ok(&self) -> bool {
        self.outcome
            .as_ref()
            .is_ok_and(|report| report.reachable && report.auth_ok != Some(false))
    }
}

/// Calls every provider's cheapest read, one after another (each bounded
/// by its own timeout).
pub fn check(registry: &ProviderRegistry) -> Vec<Checked> {
    registry
        .names()
        .filter_map(|name| {
            registry.get(name).map(|provider| Checked {
                name: name.to_owned(),
                outcome: provider.check(),
            })
        })
        .collect()
}
