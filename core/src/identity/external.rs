//! External identities ("Sign in with Moltbook"): the [`IdentityVerifier`]
//! abstraction every provider's verifier implements, the identity-token
//! check made before any call, and the `external_identities` table that
//! maps a verified external agent to a creditgate agent. This file alone
//! writes `external_identities`. It does no I/O: Moltbook's protocol and
//! its HTTP client are in [`super::moltbook_client`].

use rusqlite::{params, OptionalExtension};

use crate::clock::UnixMillis;
use crate::error::{Error, Result};
use crate::store::{ReadOnly, Tx};

use super::agents::AgentRegistration;
use super::tokens::AccessGrant;

/// The provider name Moltbook identities are stored under.
pub const MOLTBOOK_PROVIDER: &str = "moltbook";
/// The longest identity token forwarded to a verifier; longer ones are
/// refused without a call.
pub const IDENTITY_TOKEN_CHARS_MAX: usize = 8_192;

/// What a verifier vouches for: one external agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedIdentity {
    /// The provider's id of the agent (Moltbook: a UUID).
    pub external_id: String,
    /// Its display name, cleaned: no control characters, at most
    /// [`AGENT_NAME_CHARS_MAX`](super::agents::AGENT_NAME_CHARS_MAX) characters (the id when it has none).
    pub name: String,
    /// Its karma, if the provider said.
    pub karma: Option<i64>,
    /// Its owner's handle (Moltbook: `owner.x_handle`), if the provider said.
    pub owner_handle: Option<String>,
}

/// Verifies identity tokens of one external provider. Implementations do
/// their I/O in [`IdentityVerifier::verify`], which the gate calls outside
/// its writer; a refusal is [`Error::IdentityRefused`], an unusable
/// provider [`Error::UpstreamUnavailable`]; neither may ever be `Ok`.
pub trait IdentityVerifier: std::fmt::Debug + Send + Sync {
    /// The provider name identities are stored under (`moltbook`).
    fn provider(&self) -> &'static str;

    /// Asks the provider whether `identity_token` is valid and whose it is.
    fn verify(&self, identity_token: &str) -> Result<VerifiedIdentity>;
}

/// Checks an identity token before it is sent anywhere: present (else
/// [`Error::Unauthorized`]), at most [`IDENTITY_TOKEN_CHARS_MAX`] and
/// without whitespace or control characters (else
/// [`Error::IdentityRefused`] with reason `malformed_token`). Returns it
/// trimmed.
pub fn check_token<'a>(provider: &'static str, identity_token: &'a str) -> Result<&'a str> {
    let token = identity_token.trim();
    if token.is_empty() {
        return Err(Error::unauthorized("no identity token"));
    }
    if token.len() > IDENTITY_TOKEN_CHARS_MAX || token.chars().any(char_is_bad) {
        return Err(Error::IdentityRefused {
            provider,
            reason: "malformed_token".to_owned(),
        });
    }
    Ok(token)
}

/// Whether `c` may not appear in a token or a configuration value.
pub(crate) fn char_is_bad(c: char) -> bool {
    c.is_control() || c.is_whitespace()
}

/// What an exchange of an external identity token gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeOutcome {
    /// The agent is bound to an account: an access token for it.
    Granted(AccessGrant),
    /// The agent is not bound and no default account is configured: a
    /// fresh registration code (shown once; any earlier one stops working)
    /// for its owner to bind (`creditgate agents bind CODE --account ID`).
    /// Shells answer it as [`Error::AgentNotBound`] carrying the code,
    /// which an `Error` itself must never hold.
    NotBound(AgentRegistration),
}

/// A stored mapping of an external identity to a creditgate agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalIdentity {
    /// The provider (`moltbook`).
    pub provider: String,
    /// The provider's id of the agent.
    pub external_id: String,
    /// The creditgate agent it maps to.
    pub agent_id: String,
    /// The provider's latest name for it.
    pub name: String,
    /// Its latest karma, if the provider said.
    pub karma: Option<i64>,
    /// Its owner's handle, if the provider said.
    pub owner_handle: Option<String>,
    /// When it was first exchanged.
    pub created_at: UnixMillis,
    /// When the provider last vouched for it.
    pub last_verified_at: UnixMillis,
}

const COLUMNS: &str =
    "provider, external_id, agent_id, name, karma, owner_handle, created_at, last_verified_at";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ExternalIdentity> {
    Ok(ExternalIdentity {
        provider: row.get(0)?,
        external_id: row.get(1)?,
        agent_id: row.get(2)?,
        name: row.get(3)?,
        karma: row.get(4)?,
        owner_handle: row.get(5)?,
        created_at: row.get(6)?,
        last_verified_at: row.get(7)?,
    })
}

/// The mapping of `provider`'s agent `external_id`, if it was exchanged
/// before.
pub(crate) fn find(
    conn: &ReadOnly<'_>,
    provider: &str,
    external_id: &str,
) -> Result<Option<ExternalIdentity>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM external_identities WHERE provider = ?1 AND external_id = ?2"
        ))?
        .query_row([provider, external_id], from_row)
        .optional()?)
}

/// Records a first-seen identity as mapping to the new agent `agent_id`.
pub(crate) fn insert(
    tx: &Tx<'_>,
    provider: &str,
    verified: &VerifiedIdentity,
    agent_id: &str,
    now: UnixMillis,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO external_identities
             (provider, external_id, agent_id, name, karma, owner_handle, created_at, last_verified_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
    )?
    .execute(params![
        provider,
        verified.external_id,
        agent_id,
        verified.name,
        verified.karma,
        verified.owner_handle,
        now
    ])?;
    Ok(())
}

/// Records the provider's latest answer for a known identity.
pub(crate) fn record_verification(
    tx: &Tx<'_>,
    provider: &str,
    verified: &VerifiedIdentity,
    now: UnixMillis,
) -> Result<()> {
    let changed = tx
        .prepare_cached(
            "UPDATE external_identities
             SET name = ?3, karma = ?4, owner_handle = ?5, last_verified_at = ?6
             WHERE provider = ?1 AND external_id = ?2",
        )?
        .execute(params![
            provider,
            verified.external_id,
            verified.name,
            verified.karma,
            verified.owner_handle,
            now
        ])?;
    assert_eq!(changed, 1, "only a known identity is re-verified");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_before_any_call() {
        assert_eq!(
            check_token("moltbook", "  ").expect_err("empty").code(),
            "unauthorized"
        );
        assert_eq!(check_token("moltbook", " eyJ.a.b ").expect("ok"), "eyJ.a.b");
        for bad in ["a b", "a\u{7}b", &"x".repeat(IDENTITY_TOKEN_CHARS_MAX + 1)] {
            assert_eq!(
                check_token("moltbook", bad).expect_err(bad).code(),
                "identity_refused"
            );
        }
    }
}
