//! Upstream webhooks, per provider instance (cargo feature `http`): an
//! adapter wrapped with its instance's webhook settings ([`Hooked`]) tells
//! its upstream where to call back and verifies what arrives, each kind by
//! its own documented scheme:
//!
//! - **fal**: Ed25519 over `request_id \n user_id \n timestamp \n
//!   hex(sha256(body))`, keys from the configured JWKS URL, cached for
//!   [`JWKS_CACHE_MS`] and fetched again (at most every
//!   [`JWKS_REFRESH_MIN_MS`]) when a signature does not verify with the
//!   cached keys (fal rotated them);
//! - **Replicate**: Standard Webhooks (`webhook-id`, `webhook-timestamp`,
//!   `webhook-signature`), HMAC-SHA256 under the `whsec_` secret; the
//!   delivery id is `webhook-id`, which repeats on retries;
//! - **kie.ai**: `X-Webhook-Signature`, the base64 HMAC-SHA256 of
//!   `taskId.timestamp` under the secret (kie's `webhookHmacKey`), the
//!   timestamp (Unix seconds) in `X-Webhook-Timestamp`, as kie's "Webhook
//!   Security Verification" page documents; both task id spellings read.
//!
//! A verified callback only names its task: the gate makes the job due and
//! the worker polls it, so one path records every answer. Owns no table.

use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::config::{Credential, ProviderConfig, ProviderKind};
use super::http::{Auth, HttpClient};
use super::{
    fal, kie, replicate, CheckReport, PollStatus, Provider, ProviderError, ProviderJob, Reconciled,
    Submission, WebhookEvent,
};
use crate::error::{Error, Result};

/// How long fetched fal signing keys are trusted before they are fetched
/// again, in milliseconds.
pub const JWKS_CACHE_MS: i64 = 60 * 60 * 1000;
/// The least time between two fetches of fal's signing keys, in
/// milliseconds (a flood of forged callbacks cannot make us hammer fal).
pub const JWKS_REFRESH_MIN_MS: i64 = 60 * 1000;

/// How an instance verifies its upstream's callbacks.
enum Verifier {
    Fal {
        jwks: HttpClient,
        keys: Mutex<Option<(Vec<ed25519_dalek::VerifyingKey>, i64)>>,
    },
    Replicate {
        secret: Credential,
    },
    Kie {
        secret: Credential,
    },
}

/// An adapter with its instance's webhook settings.
pub struct Hooked {
    inner: Arc<dyn Provider>,
    verifier: Verifier,
    tolerance_secs: i64,
}

impl std::fmt::Debug for Hooked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooked")
            .field("inner", &self.inner)
            .field("tolerance_secs", &self.tolerance_secs)
            .finish_non_exhaustive()
    }
}

impl Hooked {
    /// Wraps `inner` with `config`'s webhook settings; `inner` itself when
    /// webhooks are off. `secret` is the instance's webhook secret, read
    /// from the variable its `webhook.secret_env` names.
    pub fn wrap(
        inner: Arc<dyn Provider>,
        config: &ProviderConfig,
        secret: Option<Credential>,
    ) -> Result<Arc<dyn Provider>> {
        let Some(webhook) = &config.webhook else {
            return Ok(inner);
        };
        let field = |what: &str| format!("providers.{}.webhook.{what}", config.name);
        let verifier = match config.kind {
            ProviderKind::Fal => {
                let url = webhook
                    .jwks_url
                    .clone()
                    .ok_or_else(|| Error::invalid(&field("jwks_url"), "fal needs its JWKS URL"))?;
                let mut keys_config = config.clone();
                keys_config.base_url = Some(url);
                Verifier::Fal {
                    jwks: HttpClient::new(&keys_config, Auth::None)?,
                    keys: Mutex::new(None),
                }
            }
            ProviderKind::Replicate => Verifier::Replicate {
                secret: secret.ok_or_else(|| {
                    Error::invalid(&field("secret_env"), "Replicate's whsec_ secret is needed")
                })?,
            },
            ProviderKind::Kie => Verifier::Kie {
                secret: secret.ok_or_else(|| {
                    Error::invalid(&field("secret_env"), "kie.ai's webhook key is needed")
                })?,
            },
            kind => {
                return Err(Error::invalid(
                    &field("kind"),
                    format!("{} sends no webhooks", kind.as_str()),
                ))
            }
        };
        Ok(Arc::new(Hooked {
            inner,
            verifier,
            tolerance_secs: webhook.tolerance_secs,
        }))
    }

    /// fal's keys: the cached ones unless stale (or `refresh` and the last
    /// fetch is older than [`JWKS_REFRESH_MIN_MS`]).
    fn fal_keys(
        jwks: &HttpClient,
        cache: &Mutex<Option<(Vec<ed25519_dalek::VerifyingKey>, i64)>>,
        now_ms: i64,
        refresh: bool,
    ) -> std::result::Result<Vec<ed25519_dalek::VerifyingKey>, String> {
        let mut cache = cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((keys, fetched_at)) = cache.as_ref() {
            let age = now_ms - fetched_at;
            let fresh = age < JWKS_CACHE_MS;
            if (fresh && !refresh) || (refresh && age < JWKS_REFRESH_MIN_MS) {
                return Ok(keys.clone());
            }
        }
        let answer = jwks
            .get(jwks.base_url())
            .map_err(|err| format!("fal's signing keys could not be fetched: {err}"))?;
        if !answer.is_success() {
            return Err(format!(
                "fal's signing keys could not be fetched (HTTP {})",
                answer.status
            ));
        }
        let text = String::from_utf8(answer.body)
            .map_err(|_| "fal's signing keys are not text".to_owned())?;
        let keys = fal::parse_jwks(&text)?;
        *cache = Some((keys.clone(), now_ms));
        Ok(keys)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map_or("", |(_, value)| value.as_str())
}

/// A delivery id for upstreams without one: the task and a digest of the
/// body (a retry of the same callback repeats both).
fn derived_delivery(task_id: &str, body: &[u8]) -> String {
    let digest = hex::encode(Sha256::digest(body));
    format!("{task_id}:{}", &digest[..32])
}

impl Provider for Hooked {
    fn submit(&self, job: &ProviderJob<'_>) -> std::result::Result<Submission, ProviderError> {
        self.inner.submit(job)
    }
    fn poll(&self, job: &ProviderJob<'_>) -> std::result::Result<PollStatus, ProviderError> {
        self.inner.poll(job)
    }
    fn cancel(&self, job: &ProviderJob<'_>) -> std::result::Result<(), ProviderError> {
        self.inner.cancel(job)
    }
    fn idempotent_submit(&self) -> bool {
        self.inner.idempotent_submit()
    }
    fn reconcile(&self, job: &ProviderJob<'_>) -> std::result::Result<Reconciled, ProviderError> {
        self.inner.reconcile(job)
    }
    fn check(&self) -> std::result::Result<CheckReport, ProviderError> {
        self.inner.check()
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
        true
    }

    fn verify_webhook(
        &self,
        headers: &[(String, String)],
        body: &[u8],
        now_ms: i64,
    ) -> std::result::Result<WebhookEvent, String> {
        let now_secs = now_ms.div_euclid(1000);
        match &self.verifier {
            Verifier::Fal { jwks, keys } => {
                let fal_headers = fal::WebhookHeaders {
                    request_id: header(headers, "x-fal-webhook-request-id"),
                    user_id: header(headers, "x-fal-webhook-user-id"),
                    timestamp: header(headers, "x-fal-webhook-timestamp"),
                    signature: header(headers, "x-fal-webhook-signature"),
                };
                let verify = |keys: &[ed25519_dalek::VerifyingKey]| {
                    fal::verify_webhook(keys, fal_headers, body, now_secs, self.tolerance_secs)
                };
                let cached = Self::fal_keys(jwks, keys, now_ms, false)?;
                let event = match verify(&cached) {
                    Ok(event) => event,
                    // Perhaps fal rotated its keys: fetch them once more.
                    Err(_) => verify(&Self::fal_keys(jwks, keys, now_ms, true)?)?,
                };
                Ok(WebhookEvent {
                    delivery_id: derived_delivery(&event.request_id, body),
                    task_id: event.request_id,
                })
            }
            Verifier::Replicate { secret } => {
                let id = header(headers, "webhook-id");
                replicate::verify_webhook(
                    secret.expose(),
                    id,
                    header(headers, "webhook-timestamp"),
                    header(headers, "webhook-signature"),
                    body,
                    now_secs,
                    self.tolerance_secs,
                )?;
                let (task_id, _) = replicate::parse_webhook(body)?;
                Ok(WebhookEvent {
                    delivery_id: id.to_owned(),
                    task_id,
                })
            }
            Verifier::Kie { secret } => {
                let (task_id, _) = kie::parse_callback(body)?;
                let timestamp = header(headers, "x-webhook-timestamp");
                let signed = kie::verify_callback_signature(
                    secret.expose().as_bytes(),
                    &task_id,
                    timestamp,
                    header(headers, "x-webhook-signature"),
                );
                if !signed {
                    return Err("the callback signature does not verify".to_owned());
                }
                let at: i64 = timestamp
                    .trim()
                    .parse()
                    .map_err(|_| "the callback timestamp is not a number".to_owned())?;
                // kie's timestamp may be in seconds or milliseconds.
                let at_secs = if at > 100_000_000_000 { at / 1000 } else { at };
                if (now_secs - at_secs).abs() > self.tolerance_secs {
                    return Err(format!(
                        "the callback timestamp is more than {} s away from now",
                        self.tolerance_secs
                    ));
                }
                Ok(WebhookEvent {
                    delivery_id: derived_delivery(&task_id, body),
                    task_id,
                })
            }
        }
    }
}
