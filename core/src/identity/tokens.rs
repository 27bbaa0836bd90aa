//! Access and refresh tokens of the agent token exchange. This file alone
//! writes `token_families`, `access_tokens` and `refresh_tokens`.
//!
//! An exchange (an agent API key plus a signed request) opens a **token
//! family** and issues its first pair: an access token (`cg_at_…`, lives
//! [`ACCESS_TOKEN_TTL_SECS`]) and a refresh token (`cg_rt_…`, lives
//! [`REFRESH_TOKEN_TTL_SECS`]). Both are opaque random strings, stored only
//! as SHA-256. A refresh token is usable once: using it marks it used and
//! issues the next pair in the same family. Presenting a used one again
//! means two parties hold it, so the whole family (every access and refresh
//! token descended from that exchange) is revoked at once.
//!
//! An external identity exchange (Moltbook, `external.rs`) opens a family
//! with an access token alone (`issue_access`): its agent re-exchanges a
//! fresh identity token instead of refreshing, so the provider is asked
//! again at least every [`ACCESS_TOKEN_TTL_SECS`].
//!
//! A token is only as good as the key it was exchanged for: authentication
//! and refresh also require that key to be unrevoked and unexpired.
//! Expired rows are kept [`TOKEN_RETENTION_SECS`] (so an expired token
//! still reads `token_expired`, not unknown) and then pruned a bounded
//! batch at a time on each issue.

use rusqlite::{params, OptionalExtension};

use crate::clock::UnixMillis;
use crate::error::{Error, Result};
use crate::store::{ReadOnly, Tx};

use super::keys::{self, ApiKeyInfo};
use super::{constant_time_eq, mint_secret, scopes, secret_hash, Principal, Via, BEARER_CHARS_MAX};

/// The prefix of access tokens.
pub const ACCESS_TOKEN_PREFIX: &str = "cg_at_";
/// The prefix of refresh tokens.
pub const REFRESH_TOKEN_PREFIX: &str = "cg_rt_";
/// The prefix of token family ids.
pub const FAMILY_ID_PREFIX: &str = "tfam_";
/// The token type the exchange reports.
pub const TOKEN_TYPE: &str = "Bearer";
/// How long an access token lives, in seconds (15 minutes).
pub const ACCESS_TOKEN_TTL_SECS: u64 = 900;
/// How long a refresh token lives unused, in seconds (30 days).
pub const REFRESH_TOKEN_TTL_SECS: u64 = 30 * 86_400;
/// How long expired token rows are kept before pruning, in seconds.
pub const TOKEN_RETENTION_SECS: i64 = 86_400;
/// Expired token rows deleted per issue, at most (per table).
pub const TOKEN_PRUNE_BATCH_MAX: usize = 64;

/// A token pair, as the exchange and the refresh return it. The tokens are
/// shown here once and kept nowhere.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenGrant {
    /// The bearer access token (`cg_at_…`).
    pub access_token: String,
    /// Always [`TOKEN_TYPE`].
    pub token_type: &'static str,
    /// Seconds the access token lives: [`ACCESS_TOKEN_TTL_SECS`].
    pub expires_in: u64,
    /// The single-use refresh token (`cg_rt_…`).
    pub refresh_token: String,
    /// Seconds the refresh token lives unused: [`REFRESH_TOKEN_TTL_SECS`].
    pub refresh_expires_in: u64,
    /// The agent the tokens act as.
    pub agent_id: String,
    /// The account they act for.
    pub account_id: String,
    /// Granted scopes, sorted.
    pub scopes: Vec<String>,
    /// The token family (`tfam_…`).
    pub family_id: String,
}

impl std::fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenGrant")
            .field("access_token", &"<redacted>")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &"<redacted>")
            .field("refresh_expires_in", &self.refresh_expires_in)
            .field("agent_id", &self.agent_id)
            .field("account_id", &self.account_id)
            .field("scopes", &self.scopes)
            .field("family_id", &self.family_id)
            .finish()
    }
}

/// An access token without a refresh token, as an external identity
/// exchange returns it. The token is shown here once and kept nowhere.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessGrant {
    /// The bearer access token (`cg_at_…`).
    pub access_token: String,
    /// Always [`TOKEN_TYPE`].
    pub token_type: &'static str,
    /// Seconds the access token lives: [`ACCESS_TOKEN_TTL_SECS`].
    pub expires_in: u64,
    /// When it expires.
    pub expires_at: UnixMillis,
    /// The agent the token acts as.
    pub agent_id: String,
    /// The account it acts for.
    pub account_id: String,
    /// Granted scopes, sorted.
    pub scopes: Vec<String>,
    /// The token family (`tfam_…`).
    pub family_id: String,
}

impl std::fmt::Debug for AccessGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessGrant")
            .field("access_token", &"<redacted>")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("expires_at", &self.expires_at)
            .field("agent_id", &self.agent_id)
            .field("account_id", &self.account_id)
            .field("scopes", &self.scopes)
            .field("family_id", &self.family_id)
            .finish()
    }
}

/// A token family as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Family {
    id: String,
    agent_id: String,
    account_id: String,
    key_id: String,
    scopes: Vec<String>,
    revoked_at: Option<UnixMillis>,
}

/// What presenting a refresh token did.
#[derive(Debug)]
pub(crate) enum Refreshed {
    /// It was fresh: here is the next pair.
    Rotated(TokenGrant),
    /// It was already used: its family is now revoked (the caller commits
    /// that and refuses with [`Error::RefreshTokenReused`]).
    Reused,
}

const FAMILY_COLUMNS: &str = "f.id, f.agent_id, f.account_id, f.key_id, f.scopes, f.revoked_at";

fn family_from_row(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Family> {
    Ok(Family {
        id: row.get(at)?,
        agent_id: row.get(at + 1)?,
        account_id: row.get(at + 2)?,
        key_id: row.get(at + 3)?,
        scopes: scopes::decode(&row.get::<_, String>(at + 4)?),
        revoked_at: row.get(at + 5)?,
    })
}

/// Opens a token family for an agent `key` (usable, the caller checked)
/// with `scopes` (within the key's, the caller checked) and issues its
/// first pair.
pub(crate) fn issue(
    tx: &Tx<'_>,
    key: &ApiKeyInfo,
    scopes: &[String],
    now: UnixMillis,
) -> Result<TokenGrant> {
    let family = open_family(tx, key, scopes, now)?;
    mint_pair(tx, &family, now)
}

/// Opens a token family for an agent `key` (usable, the caller checked)
/// with `scopes` (within the key's, the caller checked) and issues its
/// access token alone: the family has no refresh token.
pub(crate) fn issue_access(
    tx: &Tx<'_>,
    key: &ApiKeyInfo,
    scopes: &[String],
    now: UnixMillis,
) -> Result<AccessGrant> {
    let family = open_family(tx, key, scopes, now)?;
    let (access_token, expires_at) = mint_access(tx, &family, now)?;
    Ok(AccessGrant {
        access_token,
        token_type: TOKEN_TYPE,
        expires_in: ACCESS_TOKEN_TTL_SECS,
        expires_at,
        agent_id: family.agent_id,
        account_id: family.account_id,
        scopes: family.scopes,
        family_id: family.id,
    })
}

/// Inserts a new family for `key` and prunes a batch of expired tokens.
fn open_family(
    tx: &Tx<'_>,
    key: &ApiKeyInfo,
    scopes: &[String],
    now: UnixMillis,
) -> Result<Family> {
    let agent_id = key
        .agent_id
        .clone()
        .expect("tokens are issued only for agent keys");
    let family = Family {
        id: tx.new_id(FAMILY_ID_PREFIX),
        agent_id,
        account_id: key.account_id.clone(),
        key_id: key.id.clone(),
        scopes: scopes.to_vec(),
        revoked_at: None,
    };
    tx.prepare_cached(
        "INSERT INTO token_families (id, agent_id, account_id, key_id, scopes, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        family.id,
        family.agent_id,
        family.account_id,
        family.key_id,
        scopes::encode(&family.scopes),
        now
    ])?;
    prune(tx, now)?;
    Ok(family)
}

/// Mints and stores (hashed) an access token of `family`; returns it and
/// its expiry.
fn mint_access(tx: &Tx<'_>, family: &Family, now: UnixMillis) -> Result<(String, UnixMillis)> {
    let access_token = mint_secret(ACCESS_TOKEN_PREFIX);
    let expires_at = now + ACCESS_TOKEN_TTL_SECS as i64 * 1_000;
    tx.prepare_cached(
        "INSERT INTO access_tokens (token_hash, family_id, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        &secret_hash(&access_token)[..],
        family.id,
        now,
        expires_at
    ])?;
    Ok((access_token, expires_at))
}

fn mint_pair(tx: &Tx<'_>, family: &Family, now: UnixMillis) -> Result<TokenGrant> {
    let (access_token, _) = mint_access(tx, family, now)?;
    let refresh_token = mint_secret(REFRESH_TOKEN_PREFIX);
    tx.prepare_cached(
        "INSERT INTO refresh_tokens (token_hash, family_id, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        &secret_hash(&refresh_token)[..],
        family.id,
        now,
        now + REFRESH_TOKEN_TTL_SECS as i64 * 1_000
    ])?;
    Ok(TokenGrant {
        access_token,
        token_type: TOKEN_TYPE,
        expires_in: ACCESS_TOKEN_TTL_SECS,
        refresh_token,
        refresh_expires_in: REFRESH_TOKEN_TTL_SECS,
        agent_id: family.agent_id.clone(),
        account_id: family.account_id.clone(),
        scopes: family.scopes.clone(),
        family_id: family.id.clone(),
    })
}

/// Deletes a bounded batch of token rows expired for longer than
/// [`TOKEN_RETENTION_SECS`].
fn prune(tx: &Tx<'_>, now: UnixMillis) -> Result<()> {
    let before = now - TOKEN_RETENTION_SECS * 1_000;
    for table in ["access_tokens", "refresh_tokens"] {
        tx.prepare_cached(&format!(
            "DELETE FROM {table} WHERE token_hash IN
                 (SELECT token_hash FROM {table} WHERE expires_at < ?1 LIMIT ?2)"
        ))?
        .execute(params![before, TOKEN_PRUNE_BATCH_MAX as i64])?;
    }
    Ok(())
}

/// Presents a refresh token at `now`: rotates it, or (if already used)
/// revokes its family. Unknown tokens, revoked families and unusable keys
/// are [`Error::Unauthorized`]; an expired refresh token is
/// [`Error::TokenExpired`]. Refusals write nothing; only
/// [`Refreshed::Reused`] writes the revocation.
pub(crate) fn refresh(tx: &Tx<'_>, token: &str, now: UnixMillis) -> Result<Refreshed> {
    let token = token.trim();
    if !token.starts_with(REFRESH_TOKEN_PREFIX) || token.len() > BEARER_CHARS_MAX {
        return Err(Error::unauthorized("not a refresh token"));
    }
    let wanted = secret_hash(token);
    let found = tx
        .prepare_cached(&format!(
            "SELECT r.token_hash, r.expires_at, r.used_at, {FAMILY_COLUMNS}
             FROM refresh_tokens r JOIN token_families f ON f.id = r.family_id
             WHERE r.token_hash = ?1"
        ))?
        .query_row([&wanted[..]], |row| {
            Ok((
                row.get::<_, Vec<u8>>(0)?,
                row.get::<_, UnixMillis>(1)?,
                row.get::<_, Option<UnixMillis>>(2)?,
                family_from_row(row, 3)?,
            ))
        })
        .optional()?;
    let (expires_at, used_at, family) = match found {
        Some((stored, expires_at, used_at, family)) if constant_time_eq(&stored, &wanted) => {
            (expires_at, used_at, family)
        }
        _ => return Err(Error::unauthorized("unknown refresh token")),
    };
    if family.revoked_at.is_some() {
        return Err(Error::unauthorized("the token family is revoked"));
    }
    if used_at.is_some() {
        let changed = tx
            .prepare_cached(
                "UPDATE token_families SET revoked_at = ?2, revoked_reason = 'refresh_token_reused'
                 WHERE id = ?1 AND revoked_at IS NULL",
            )?
            .execute(params![family.id, now])?;
        assert_eq!(
            changed, 1,
            "an unrevoked family we just read is revoked once"
        );
        return Ok(Refreshed::Reused);
    }
    if now >= expires_at {
        return Err(Error::TokenExpired);
    }
    usable_key(tx, &family.key_id, now)?;
    let changed = tx
        .prepare_cached(
            "UPDATE refresh_tokens SET used_at = ?2 WHERE token_hash = ?1 AND used_at IS NULL",
        )?
        .execute(params![&wanted[..], now])?;
    assert_eq!(
        changed, 1,
        "an unused refresh token we just read is used once"
    );
    prune(tx, now)?;
    Ok(Refreshed::Rotated(mint_pair(tx, &family, now)?))
}

fn usable_key(conn: &ReadOnly<'_>, key_id: &str, now: UnixMillis) -> Result<ApiKeyInfo> {
    let key = keys::get(conn, key_id)?
        .ok_or_else(|| Error::unauthorized("the token's API key is gone"))?;
    key.ensure_usable(now)?;
    Ok(key)
}

/// Authenticates an access token at `now`. A revoked family or an
/// unusable key is [`Error::Unauthorized`]; an expired token is
/// [`Error::TokenExpired`].
pub(crate) fn authenticate(conn: &ReadOnly<'_>, token: &str, now: UnixMillis) -> Result<Principal> {
    let wanted = secret_hash(token);
    let found = conn
        .prepare_cached(&format!(
            "SELECT a.token_hash, a.expires_at, {FAMILY_COLUMNS}
             FROM access_tokens a JOIN token_families f ON f.id = a.family_id
             WHERE a.token_hash = ?1"
        ))?
        .query_row([&wanted[..]], |row| {
            Ok((
                row.get::<_, Vec<u8>>(0)?,
                row.get::<_, UnixMillis>(1)?,
                family_from_row(row, 2)?,
            ))
        })
        .optional()?;
    let (expires_at, family) = match found {
        Some((stored, expires_at, family)) if constant_time_eq(&stored, &wanted) => {
            (expires_at, family)
        }
        _ => return Err(Error::unauthorized("unknown access token")),
    };
    if family.revoked_at.is_some() {
        return Err(Error::unauthorized("the token family is revoked"));
    }
    usable_key(conn, &family.key_id, now)?;
    if now >= expires_at {
        return Err(Error::TokenExpired);
    }
    Ok(Principal {
        account_id: family.account_id,
        scopes: family.scopes,
        via: Via::AccessToken {
            agent_id: family.agent_id,
            family_id: family.id,
            key_id: family.key_id,
            expires_at,
        },
    })
}
