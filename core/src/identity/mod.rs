//! Identity and auth (CONTRACTS.md §4): API keys, agents and their ed25519
//! identity flow, external identities (Moltbook), access and refresh tokens,
//! scopes, and the one `authenticate` (through
//! [`Gate::authenticate`](crate::Gate::authenticate)) that turns a bearer
//! credential into a [`Principal`].
//!
//! Tables, each written by one file here alone: `api_keys` (`keys.rs`);
//! `agents` and `agent_nonces` (`agents.rs`); `token_families`,
//! `access_tokens` and `refresh_tokens` (`tokens.rs`);
//! `external_identities` (`external.rs`, with the `IdentityVerifier`
//! trait); `console_sessions` (`sessions.rs`, the owner's console, with
//! the throttle on failed sign-ins). `moltbook_client.rs` holds Moltbook's protocol and, with the
//! cargo feature `http`, the core's one network client, the
//! Moltbook verifier. `jcs.rs`, `signing.rs` and `scopes.rs` are pure and
//! own no table.
//!
//! Invariants:
//! - no secret (API key, access token, refresh token, registration code,
//!   console session) is
//!   ever stored, logged or put in an error: only its SHA-256, looked up by
//!   an index and then compared in constant time (`constant_time_eq`, the
//!   crate's one, with `subtle`); an external identity token and the
//!   Moltbook app key are not kept at all, not even hashed;
//! - revocation and expiry are checked on every `authenticate` against the
//!   injected clock, so they take effect on the very next request;
//! - another account's or agent's things are `not_found`, never `forbidden`.
//!
//! Functions here take `now` and a connection or write transaction; the
//! facade (`Gate`) composes them, one `Store::write` per operation.

pub mod agents;
pub mod external;
pub mod jcs;
pub mod keys;
pub mod moltbook_client;
pub mod scopes;
pub mod sessions;
pub mod signing;
pub mod tokens;

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::UnixMillis;
use crate::error::{Error, Result};
use crate::store::ReadOnly;

pub use agents::{Agent, AgentRegistration};
pub use external::{ExchangeOutcome, ExternalIdentity, IdentityVerifier, VerifiedIdentity};
pub use keys::{ApiKeyInfo, CreatedAgentKey};
pub use moltbook_client::MoltbookConfig;
#[cfg(feature = "http")]
pub use moltbook_client::MoltbookVerifier;
pub use scopes::{ADMIN_SCOPE, OPERATOR_SCOPE};
pub use signing::{verify_signed_request, SignedFields};
pub use tokens::{AccessGrant, TokenGrant};

/// Random bytes in every minted secret (API keys, tokens, codes).
pub const SECRET_BYTES: usize = 32;
/// The longest bearer credential looked at; longer ones are refused
/// unhashed.
pub const BEARER_CHARS_MAX: usize = 256;

/// Who is calling, once authenticated: the account it acts for, what it may
/// do, and through which credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The account every operation of this caller is confined to.
    pub account_id: String,
    /// Granted scopes, sorted; [`ADMIN_SCOPE`] implies every other.
    pub scopes: Vec<String>,
    /// The credential presented.
    pub via: Via,
}

/// The credential a [`Principal`] authenticated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// An API key.
    Key {
        /// The key's id (`key_…`), never its secret.
        key_id: String,
        /// The agent that created it, for agent keys.
        agent_id: Option<String>,
    },
    /// A short-lived access token from the agent token exchange.
    AccessToken {
        /// The agent it was issued to.
        agent_id: String,
        /// Its token family (`tfam_…`): every token descended from one
        /// issue; revoked together.
        family_id: String,
        /// The agent API key it was exchanged for.
        key_id: String,
        /// When it expires.
        expires_at: UnixMillis,
    },
}

impl Principal {
    /// The API key behind this caller: the key itself, or the agent key an
    /// access token was exchanged for. Its spend caps apply.
    pub fn key_id(&self) -> &str {
        match &self.via {
            Via::Key { key_id, .. } | Via::AccessToken { key_id, .. } => key_id,
        }
    }

    /// Whether this caller holds `scope` (or [`ADMIN_SCOPE`]).
    pub fn has_scope(&self, scope: &str) -> bool {
        scopes::covers(&self.scopes, scope)
    }

    /// `Ok` if this caller holds `scope` (or [`ADMIN_SCOPE`]), else
    /// [`Error::Forbidden`] naming it.
    pub fn require_scope(&self, scope: &str) -> Result<()> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(Error::Forbidden {
                scope: scope.to_owned(),
            })
        }
    }

    /// The agent behind this caller, if it is one.
    pub fn agent_id(&self) -> Option<&str> {
        match &self.via {
            Via::Key { agent_id, .. } => agent_id.as_deref(),
            Via::AccessToken { agent_id, .. } => Some(agent_id),
        }
    }
}

/// The result of `authenticate`: the principal, and the key whose
/// `last_used_at` is due for an update (at most once per
/// [`keys::LAST_USED_INTERVAL_SECS`]), which the facade writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// Who is calling.
    pub principal: Principal,
    /// A key to mark used now, if its mark is stale.
    pub touch_key: Option<String>,
}

/// What kind of credential a bearer string is, by its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Credential<'a> {
    /// `cg_live_…` or `cg_agent_…`.
    ApiKey(&'a str),
    /// `cg_at_…`.
    AccessToken(&'a str),
}

/// The one parser of the bearer scheme: the credential of an
/// `Authorization` value `Bearer <credential>` (scheme in any case, blanks
/// around the credential ignored), or `None` when the value does not use
/// the scheme or carries no credential. Shells that read the header use
/// it; `credential` uses it to accept a whole header value too.
pub fn bearer_credential(value: &str) -> Option<&str> {
    let value = value.trim();
    // `get` rather than slicing: the input is untrusted and byte 7 need not
    // be a character boundary.
    let (scheme, rest) = (value.get(..7)?, value.get(7..)?);
    let credential = rest.trim_start();
    (scheme.eq_ignore_ascii_case("bearer ") && !credential.is_empty()).then_some(credential)
}

/// Classifies a bearer credential: accepts the bare secret or a whole
/// `Authorization` header value (`Bearer <secret>`).
pub(crate) fn credential(bearer: &str) -> Result<Credential<'_>> {
    let secret = bearer_credential(bearer).unwrap_or_else(|| bearer.trim());
    if secret.is_empty() {
        return Err(Error::unauthorized("no credential"));
    }
    if secret.len() > BEARER_CHARS_MAX {
        return Err(Error::unauthorized("malformed credential"));
    }
    if secret.starts_with(keys::ACCOUNT_KEY_PREFIX) || secret.starts_with(keys::AGENT_KEY_PREFIX) {
        Ok(Credential::ApiKey(secret))
    } else if secret.starts_with(tokens::ACCESS_TOKEN_PREFIX) {
        Ok(Credential::AccessToken(secret))
    } else {
        Err(Error::unauthorized("not an API key or access token"))
    }
}

/// Authenticates a bearer API key or access token at `now`. An unknown,
/// revoked or expired key, or a token of a revoked family or whose key is
/// no longer usable, is [`Error::Unauthorized`]; an expired access token is
/// [`Error::TokenExpired`].
pub(crate) fn authenticate(
    conn: &ReadOnly<'_>,
    bearer: &str,
    now: UnixMillis,
) -> Result<Authenticated> {
    match credential(bearer)? {
        Credential::ApiKey(secret) => {
            let key = keys::find_usable(conn, secret, now)?;
            let touch_key = keys::last_used_is_stale(&key, now).then(|| key.id.clone());
            Ok(Authenticated {
                principal: key.principal(),
                touch_key,
            })
        }
        Credential::AccessToken(secret) => Ok(Authenticated {
            principal: tokens::authenticate(conn, secret, now)?,
            touch_key: None,
        }),
    }
}

/// A fresh secret: `prefix` and [`SECRET_BYTES`] random bytes in hex.
pub(crate) fn mint_secret(prefix: &str) -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// The SHA-256 of a secret: the only form of it that is stored.
pub(crate) fn secret_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The one constant-time comparison of the crate: equality that takes the
/// same time wherever the inputs differ (only a length mismatch answers
/// early). A stored hash is found by an index, then confirmed here, and an
/// output token is checked here, so their bytes never decide by timing.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_classified_by_prefix() {
        let key = format!("{}{}", keys::ACCOUNT_KEY_PREFIX, "ab".repeat(32));
        assert_eq!(credential(&key).expect("key"), Credential::ApiKey(&key));
        assert_eq!(
            credential(&format!("Bearer {key}")).expect("header"),
            Credential::ApiKey(key.as_str())
        );
        assert_eq!(
            credential(&format!("bearer  {key} ")).expect("header"),
            Credential::ApiKey(key.as_str())
        );
        let token = mint_secret(tokens::ACCESS_TOKEN_PREFIX);
        assert_eq!(
            credential(&token).expect("token"),
            Credential::AccessToken(&token)
        );
        for bad in [
            "",
            "Bearer ",
            "sk-something",
            "Beareré x",
            "ééééé",
            &mint_secret(tokens::REFRESH_TOKEN_PREFIX),
        ] {
            assert_eq!(
                credential(bad).expect_err(bad).code(),
                "unauthorized",
                "{bad}"
            );
        }
        let long = format!(
            "{}{}",
            keys::ACCOUNT_KEY_PREFIX,
            "a".repeat(BEARER_CHARS_MAX)
        );
        assert_eq!(credential(&long).expect_err("long").code(), "unauthorized");
    }

    #[test]
    fn secrets_are_random_and_hash_compares_exactly() {
        let a = mint_secret("cg_live_");
        let b = mint_secret("cg_live_");
        assert_ne!(a, b);
        assert_eq!(a.len(), "cg_live_".len() + 2 * SECRET_BYTES);
        assert!(constant_time_eq(&secret_hash(&a), &secret_hash(&a)));
        assert!(!constant_time_eq(&secret_hash(&a), &secret_hash(&b)));
        assert!(!constant_time_eq(&secret_hash(&a), &[]));
    }

    #[test]
    fn require_scope_admin_implies_all() {
        let principal = |scopes: &[&str]| Principal {
            account_id: "acct_x".into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            via: Via::Key {
                key_id: "key_x".into(),
                agent_id: None,
            },
        };
        assert!(principal(&["image"]).require_scope("image").is_ok());
        let err = principal(&["image"])
            .require_scope("video")
            .expect_err("no video");
        assert!(matches!(&err, Error::Forbidden { scope } if scope == "video"));
        assert_eq!(err.code(), "forbidden");
        assert!(principal(&["admin"]).require_scope("video").is_ok());
        assert!(principal(&["admin"]).require_scope("admin").is_ok());
        assert!(principal(&["image"]).require_scope("admin").is_err());
    }
}
