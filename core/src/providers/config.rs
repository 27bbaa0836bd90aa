//! The operator's providers file: which provider instances exist, of which
//! kind, where they live, which environment variable holds each one's
//! credential, their timeouts, concurrency and webhook settings. Parsing is
//! pure (no I/O, no environment): the appliance reads the file and the
//! environment and hands them in. Owns no table.
//!
//! Invariant: no secret is ever in this file. A provider names the
//! *variable* its credential is in ([`ProviderConfig::credential_env`]);
//! the value is read at startup into a [`Credential`], whose `Debug` and
//! `Display` never show it.
//!
//! ```json
//! { "providers": {
//!     "kie":   { "kind": "kie", "base_url": "https://api.kie.ai",
//!                "credential_env": "KIE_API_KEY", "timeout_ms": 60000 },
//!     "comfy": { "kind": "comfyui", "base_url": "http://10.0.0.5:8188",
//!                "workflows_dir": "workflows", "concurrency": 1 } } }
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::{Error, Result};

/// The most bytes a providers file may have.
pub const PROVIDERS_FILE_BYTES_MAX: usize = 256 * 1024;
/// Provider instances in one file, at most.
pub const PROVIDER_INSTANCES_MAX: usize = 64;
/// The longest instance name, in characters.
pub const INSTANCE_NAME_CHARS_MAX: usize = 64;
/// The longest base URL, path or variable name in the file, in characters.
pub const CONFIG_VALUE_CHARS_MAX: usize = 2_048;
/// The longest call timeout an instance may set, in milliseconds (Replicate
/// holds a `Prefer: wait` request open for up to 60 s; ComfyUI boxes can be
/// slow to answer a large `/view`).
pub const TIMEOUT_MS_MAX: i64 = 10 * 60 * 1000;
/// The most concurrent calls an instance may allow.
pub const CONCURRENCY_MAX: usize = 256;
/// The longest output download, in bytes, by default (512 MiB: a long
/// video).
pub const DOWNLOAD_BYTES_MAX_DEFAULT: u64 = 512 * 1024 * 1024;

/// The kinds of provider creditgate can talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Any OpenAI-compatible server (OpenAI, OpenRouter, xAI, vLLM, Ollama,
    /// LocalAI), chosen by base URL.
    Openai,
    /// fal.ai's queue API.
    Fal,
    /// Replicate's predictions API.
    Replicate,
    /// A ComfyUI server (a hobbyist's own GPU box).
    Comfyui,
    /// kie.ai's task API.
    Kie,
    /// The deterministic offline fixture provider.
    Fixture,
}

impl ProviderKind {
    /// The kind's name as the file spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Fal => "fal",
            ProviderKind::Replicate => "replicate",
            ProviderKind::Comfyui => "comfyui",
            ProviderKind::Kie => "kie",
            ProviderKind::Fixture => "fixture",
        }
    }

    /// Whether this kind needs a credential to work at all.
    pub fn needs_credential(self) -> bool {
        matches!(
            self,
            ProviderKind::Fal | ProviderKind::Replicate | ProviderKind::Kie
        )
    }
}

/// How an instance's upstream webhooks are verified. Present means on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The variable holding the signing secret (Replicate's `whsec_...`,
    /// kie.ai's HMAC key).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Where fal's signing keys are published (a JWKS URL).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Signatures older or newer than this are refused, in seconds.
    #[serde(default = "default_tolerance_secs")]
    pub tolerance_secs: i64,
}

fn default_tolerance_secs() -> i64 {
    300
}

/// One provider instance.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Its name, as catalogs' `provider` fields name it (filled from the
    /// file's key).
    #[serde(skip)]
    pub name: String,
    /// What it speaks.
    pub kind: ProviderKind,
    /// Where it lives (`https://api.kie.ai`, `http://10.0.0.5:8188`); the
    /// kind's public default when left out.
    #[serde(default)]
    pub base_url: Option<String>,
    /// The environment variable holding its credential.
    #[serde(default)]
    pub credential_env: Option<String>,
    /// The longest one call may take, connect to last byte.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: i64,
    /// The longest connection setup may take.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: i64,
    /// Calls in flight at once, at most.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// The largest output this instance may hand back, in bytes.
    #[serde(default = "default_download_bytes_max")]
    pub download_bytes_max: u64,
    /// Upstream webhooks, when on.
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    /// ComfyUI: the folder holding workflow templates, one
    /// `<upstream model>.json` each (relative to the providers file).
    #[serde(default)]
    pub workflows_dir: Option<String>,
    /// Replicate: how long a create may wait for the result
    /// (`Prefer: wait=N`), in seconds; 0 turns it off.
    #[serde(default)]
    pub wait_secs: Option<u32>,
}

fn default_timeout_ms() -> i64 {
    super::CALL_TIMEOUT_MS_DEFAULT
}

fn default_connect_timeout_ms() -> i64 {
    10_000
}

fn default_concurrency() -> usize {
    super::CONCURRENCY_DEFAULT
}

fn default_download_bytes_max() -> u64 {
    DOWNLOAD_BYTES_MAX_DEFAULT
}

impl ProviderConfig {
    /// An instance of `kind` called `name` with every default.
    pub fn new(name: &str, kind: ProviderKind) -> ProviderConfig {
        ProviderConfig {
            name: name.to_owned(),
            kind,
            base_url: None,
            credential_env: None,
            timeout_ms: default_timeout_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
            concurrency: default_concurrency(),
            download_bytes_max: default_download_bytes_max(),
            webhook: None,
            workflows_dir: None,
            wait_secs: None,
        }
    }

    /// The base URL in force: the configured one without a trailing slash,
    /// or the kind's public default (none for ComfyUI, which is always
    /// someone's own box).
    pub fn base_url(&self) -> Option<String> {
        let default = match self.kind {
            ProviderKind::Openai => Some("https://api.openai.com/v1"),
            ProviderKind::Fal => Some("https://queue.fal.run"),
            ProviderKind::Replicate => Some("https://api.replicate.com/v1"),
            ProviderKind::Kie => Some("https://api.kie.ai"),
            ProviderKind::Comfyui | ProviderKind::Fixture => None,
        };
        self.base_url
            .as_deref()
            .map(|url| url.trim_end_matches('/').to_owned())
            .or_else(|| default.map(str::to_owned))
    }

    fn validate(&self) -> Result<()> {
        let field = |what: &str| format!("providers.{}.{what}", self.name);
        if let Some(url) = &self.base_url {
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            if !rest.is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
                || url.len() > CONFIG_VALUE_CHARS_MAX
                || url.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(Error::invalid(
                    &field("base_url"),
                    "must be an http:// or https:// URL without spaces",
                ));
            }
        }
        if self.kind == ProviderKind::Comfyui && self.base_url.is_none() {
            return Err(Error::invalid(
                &field("base_url"),
                "a comfyui instance needs the base URL of its server",
            ));
        }
        for (what, value) in [
            ("credential_env", &self.credential_env),
            (
                "webhook.secret_env",
                &self.webhook.as_ref().and_then(|w| w.secret_env.clone()),
            ),
        ] {
            if let Some(value) = value {
                if !is_env_name(value) {
                    return Err(Error::invalid(
                        &field(what),
                        "must name an environment variable (letters, digits and _), \
                         not hold a secret",
                    ));
                }
            }
        }
        if self.kind.needs_credential() && self.credential_env.is_none() {
            return Err(Error::invalid(
                &field("credential_env"),
                format!(
                    "a {} instance needs the name of the variable holding its key",
                    self.kind.as_str()
                ),
            ));
        }
        if !(1..=TIMEOUT_MS_MAX).contains(&self.timeout_ms)
            || !(1..=TIMEOUT_MS_MAX).contains(&self.connect_timeout_ms)
        {
            return Err(Error::invalid(
                &field("timeout_ms"),
                format!("timeouts must be 1 to {TIMEOUT_MS_MAX} ms"),
            ));
        }
        if !(1..=CONCURRENCY_MAX).contains(&self.concurrency) {
            return Err(Error::invalid(
                &field("concurrency"),
                format!("must be 1 to {CONCURRENCY_MAX}"),
            ));
        }
        if self.download_bytes_max == 0 {
            return Err(Error::invalid(
                &field("download_bytes_max"),
                "must be positive",
            ));
        }
        if let Some(webhook) = &self.webhook {
            if !(1..=3_600).contains(&webhook.tolerance_secs) {
                return Err(Error::invalid(
                    &field("webhook.tolerance_secs"),
                    "must be 1 to 3600",
                ));
            }
            if let Some(jwks) = &webhook.jwks_url {
                if !(jwks.starts_with("https://") || jwks.starts_with("http://"))
                    || jwks.len() > CONFIG_VALUE_CHARS_MAX
                {
                    return Err(Error::invalid(
                        &field("webhook.jwks_url"),
                        "must be an http:// or https:// URL",
                    ));
                }
            }
            let signed = match self.kind {
                ProviderKind::Fal => webhook.jwks_url.is_some(),
                ProviderKind::Replicate | ProviderKind::Kie => webhook.secret_env.is_some(),
                _ => false,
            };
            if !signed {
                return Err(Error::invalid(
                    &field("webhook"),
                    match self.kind {
                        ProviderKind::Fal => "fal webhooks need jwks_url (fal's signing keys)",
                        ProviderKind::Replicate | ProviderKind::Kie => {
                            "webhooks need secret_env (the variable holding the signing secret)"
                        }
                        _ => "this kind sends no webhooks",
                    },
                ));
            }
        }
        if self.workflows_dir.is_some() && self.kind != ProviderKind::Comfyui {
            return Err(Error::invalid(
                &field("workflows_dir"),
                "only comfyui instances take workflow templates",
            ));
        }
        if self.wait_secs.is_some_and(|secs| secs > 60) {
            return Err(Error::invalid(
                &field("wait_secs"),
                "Replicate holds a request open for 60 s at most",
            ));
        }
        Ok(())
    }
}

/// Whether `name` looks like an environment variable's name (so a pasted
/// secret is refused rather than written down).
fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShape {
    providers: BTreeMap<String, ProviderConfig>,
}

/// A parsed, validated providers file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProvidersFile {
    /// The instances, by name.
    pub instances: BTreeMap<String, ProviderConfig>,
}

impl ProvidersFile {
    /// Parses and validates a providers file. Every fault is
    /// [`Error::InvalidRequest`] naming the field.
    pub fn parse(json: &str) -> Result<ProvidersFile> {
        if json.len() > PROVIDERS_FILE_BYTES_MAX {
            return Err(Error::invalid(
                "providers",
                format!("the file is larger than {PROVIDERS_FILE_BYTES_MAX} bytes"),
            ));
        }
        let shape: FileShape = serde_json::from_str(json)
            .map_err(|err| Error::invalid("providers", format!("not a providers file: {err}")))?;
        if shape.providers.len() > PROVIDER_INSTANCES_MAX {
            return Err(Error::invalid(
                "providers",
                format!("at most {PROVIDER_INSTANCES_MAX} instances"),
            ));
        }
        let mut instances = BTreeMap::new();
        for (name, mut config) in shape.providers {
            let good_name = !name.is_empty()
                && name.len() <= INSTANCE_NAME_CHARS_MAX
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                });
            if !good_name {
                return Err(Error::invalid(
                    "providers",
                    format!(
                        "instance names are 1 to {INSTANCE_NAME_CHARS_MAX} of a-z, 0-9, - and _ \
                         ({name:?} is not)"
                    ),
                ));
            }
            config.name = name.clone();
            config.validate()?;
            instances.insert(name, config);
        }
        Ok(ProvidersFile { instances })
    }

    /// The instance called `name`.
    pub fn get(&self, name: &str) -> Option<&ProviderConfig> {
        self.instances.get(name)
    }
}

/// A credential read from the environment. Never shown: `Debug` and
/// `Display` redact it; only an adapter reads it, to put it in a header.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential(String);

impl Credential {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Credential {
        Credential(secret.into())
    }

    /// The secret, for the one header it goes into.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(<redacted>)")
    }
}

impl std::fmt::Display for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The credential an adapter cannot work without: present and not blank,
/// else [`Error::InvalidRequest`] on `credential_env` saying `what` it is.
pub fn required_credential(
    config: &ProviderConfig,
    credential: Option<Credential>,
    what: &str,
) -> Result<Credential> {
    match credential {
        Some(credential) if !credential.expose().trim().is_empty() => Ok(credential),
        Some(_) => Err(Error::invalid(
            &format!("providers.{}.credential_env", config.name),
            format!("the variable holding {what} is empty"),
        )),
        None => Err(Error::invalid(
            &format!("providers.{}.credential_env", config.name),
            format!(
                "a {} instance needs {what} in the named variable",
                config.kind.as_str()
            ),
        )),
    }
}

/// Reads `config`'s credential (and webhook secret) through `lookup` (the
/// environment, in the appliance). A named variable that is unset or empty
/// is [`Error::InvalidRequest`] naming the variable, never its value.
pub fn credentials(
    config: &ProviderConfig,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(Option<Credential>, Option<Credential>)> {
    let read = |what: &str, var: &Option<String>| -> Result<Option<Credential>> {
        match var {
            None => Ok(None),
            Some(var) => match lookup(var) {
                Some(value) if !value.trim().is_empty() => {
                    Ok(Some(Credential::new(value.trim().to_owned())))
                }
                _ => Err(Error::invalid(
                    &format!("providers.{}.{what}", config.name),
                    format!("the environment variable {var} is not set"),
                )),
            },
        }
    };
    let credential = read("credential_env", &config.credential_env)?;
    let secret = read(
        "webhook.secret_env",
        &config.webhook.as_ref().and_then(|w| w.secret_env.clone()),
    )?;
    Ok((credential, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_with_two_instances_of_one_kind_parses() {
        let file = ProvidersFile::parse(
            r#"{"providers": {
                "comfy-a": {"kind": "comfyui", "base_url": "http://10.0.0.5:8188/"},
                "comfy-b": {"kind": "comfyui", "base_url": "http://10.0.0.6:8188", "concurrency": 1},
                "kie": {"kind": "kie", "credential_env": "KIE_API_KEY",
                        "webhook": {"secret_env": "KIE_WEBHOOK_SECRET"}}
            }}"#,
        )
        .expect("parses");
        assert_eq!(file.instances.len(), 3);
        let a = file.get("comfy-a").expect("a");
        assert_eq!(a.name, "comfy-a");
        assert_eq!(a.base_url().as_deref(), Some("http://10.0.0.5:8188"));
        assert_eq!(file.get("comfy-b").expect("b").concurrency, 1);
        let kie = file.get("kie").expect("kie");
        assert_eq!(kie.base_url().as_deref(), Some("https://api.kie.ai"));
        assert_eq!(kie.webhook.as_ref().expect("on").tolerance_secs, 300);
    }

    #[test]
    fn bad_files_are_refused_naming_the_field() {
        let refused = |json: &str, needle: &str| {
            let err = ProvidersFile::parse(json).expect_err(json).to_string();
            assert!(err.contains(needle), "{json}: {err}");
        };
        refused(
            r#"{"providers": {"x": {"kind": "midjourney"}}}"#,
            "unknown variant",
        );
        refused(
            r#"{"providers": {"X!": {"kind": "fixture"}}}"#,
            "instance names",
        );
        refused(
            r#"{"providers": {"k": {"kind": "kie"}}}"#,
            "providers.k.credential_env",
        );
        refused(
            r#"{"providers": {"k": {"kind": "kie", "credential_env": "sk-live-abc123"}}}"#,
            "not hold a secret",
        );
        refused(
            r#"{"providers": {"c": {"kind": "comfyui"}}}"#,
            "providers.c.base_url",
        );
        refused(
            r#"{"providers": {"o": {"kind": "openai", "base_url": "ftp://x"}}}"#,
            "providers.o.base_url",
        );
        refused(
            r#"{"providers": {"o": {"kind": "openai", "timeout_ms": 0}}}"#,
            "timeouts",
        );
        refused(
            r#"{"providers": {"o": {"kind": "openai", "concurrency": 100000}}}"#,
            "concurrency",
        );
        refused(
            r#"{"providers": {"f": {"kind": "fal", "credential_env": "FAL_KEY", "webhook": {}}}}"#,
            "jwks_url",
        );
        refused(
            r#"{"providers": {"o": {"kind": "openai", "colour": 1}}}"#,
            "unknown field",
        );
        refused(&" ".repeat(PROVIDERS_FILE_BYTES_MAX + 1), "larger than");
    }

    #[test]
    fn credentials_come_from_the_environment_and_never_show() {
        let file = ProvidersFile::parse(
            r#"{"providers": {"k": {"kind": "kie", "credential_env": "KIE_API_KEY"}}}"#,
        )
        .expect("parses");
        let config = file.get("k").expect("k");
        let unset = credentials(config, &|_| None).expect_err("unset");
        assert!(unset.to_string().contains("KIE_API_KEY"), "{unset}");
        let lookup = |var: &str| (var == "KIE_API_KEY").then(|| "sekrit-value".to_owned());
        let (credential, secret) = credentials(config, &lookup).expect("set");
        let credential = credential.expect("some");
        assert_eq!(credential.expose(), "sekrit-value");
        assert!(secret.is_none());
        assert!(!format!("{credential:?} {credential}").contains("sekrit"));
    }
}
