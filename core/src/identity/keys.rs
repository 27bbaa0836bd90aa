//! API keys: random secrets shown once, stored only as a SHA-256 hash, with
//! scopes, an optional expiry, a coarse `last_used_at` and revocation with
//! immediate effect. This file alone writes `api_keys`.
//!
//! A key is `cg_live_` (made by the owner for an account) or `cg_agent_`
//! (made by an agent through the signed flow) followed by 32 random bytes in
//! hex. Its id (`key_…`) is separate from the secret and safe to show.
//! Lookups hash the presented secret, find the row by the hash's unique
//! index and confirm the hash in constant time.
//!
//! An agent of an external identity provider holds no key of its own: its
//! exchange keeps one **exchange key** per agent and scope set (`cg_agent_`,
//! named after the provider, its secret discarded at creation) as the key
//! its token families hang on, so revoking it ends those tokens at once.
//!
//! `last_used_at` is updated at most once per [`LAST_USED_INTERVAL_SECS`]
//! per key (a conditional `UPDATE`), so a busy key costs one write a minute,
//! not one per request; it is therefore accurate to that interval.

use rusqlite::{params, OptionalExtension};

use crate::clock::UnixMillis;
use crate::error::{Error, Result};
use crate::store::{ReadOnly, Tx};

use super::{constant_time_eq, mint_secret, scopes, secret_hash, Principal, Via};

/// The prefix of keys an owner creates for an account.
pub const ACCOUNT_KEY_PREFIX: &str = "cg_live_";
/// The prefix of keys an agent creates through the signed flow.
pub const AGENT_KEY_PREFIX: &str = "cg_agent_";
/// The prefix of key ids.
pub const KEY_ID_PREFIX: &str = "key_";
/// The longest key name.
pub const KEY_NAME_CHARS_MAX: usize = 100;
/// The longest expiry a key may be given, in days.
pub const KEY_EXPIRES_IN_DAYS_MAX: u32 = 3_650;
/// Keys listed in one call, at most.
pub const KEYS_LIST_MAX: usize = 1_000;
/// `last_used_at` is rewritten at most this often per key.
pub const LAST_USED_INTERVAL_SECS: i64 = 60;

const DAY_MILLIS: i64 = 86_400_000;

/// An API key as shown to its owner: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyInfo {
    /// `key_` and 32 hex digits.
    pub id: String,
    /// The account the key acts for.
    pub account_id: String,
    /// The agent that created it (agent keys only).
    pub agent_id: Option<String>,
    /// A human name.
    pub name: String,
    /// Granted scopes, sorted.
    pub scopes: Vec<String>,
    /// When it was created.
    pub created_at: UnixMillis,
    /// When it stops working, if ever.
    pub expires_at: Option<UnixMillis>,
    /// When it last authenticated (to within [`LAST_USED_INTERVAL_SECS`]).
    pub last_used_at: Option<UnixMillis>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<UnixMillis>,
}

impl ApiKeyInfo {
    /// Whether the key has passed its expiry at `now`.
    pub fn is_expired(&self, now: UnixMillis) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    /// The principal this key authenticates as.
    pub fn principal(&self) -> Principal {
        Principal {
            account_id: self.account_id.clone(),
            scopes: self.scopes.clone(),
            via: Via::Key {
                key_id: self.id.clone(),
                agent_id: self.agent_id.clone(),
            },
        }
    }

    /// `Ok` if usable at `now`, else [`Error::Unauthorized`].
    pub(crate) fn ensure_usable(&self, now: UnixMillis) -> Result<()> {
        if self.revoked_at.is_some() {
            Err(Error::unauthorized("the API key is revoked"))
        } else if self.is_expired(now) {
            Err(Error::unauthorized("the API key has expired"))
        } else {
            Ok(())
        }
    }
}

/// The answer to an agent's signed key creation: the secret, shown once.
#[derive(Clone, PartialEq, Eq)]
pub struct CreatedAgentKey {
    /// The new key's id.
    pub key_id: String,
    /// The secret (`cg_agent_…`); not kept anywhere after this.
    pub api_key: String,
    /// Granted scopes, sorted.
    pub scopes: Vec<String>,
    /// When it stops working, if ever.
    pub expires_at: Option<UnixMillis>,
}

impl std::fmt::Debug for CreatedAgentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedAgentKey")
            .field("key_id", &self.key_id)
            .field("api_key", &"<redacted>")
            .field("scopes", &self.scopes)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Whose keys an operation may touch: another owner's key is `not_found`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    /// The operator (CLI): any key.
    Operator,
    /// An account: its own keys, including those its agents created.
    Account(&'a str),
    /// An agent: only the keys it created.
    Agent(&'a str),
}

impl Owner<'_> {
    fn owns(self, key: &ApiKeyInfo) -> bool {
        match self {
            Owner::Operator => true,
            Owner::Account(account) => key.account_id == account,
            Owner::Agent(agent) => key.agent_id.as_deref() == Some(agent),
        }
    }
}

/// A validated request for a new key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewKey {
    /// The account it acts for (checked to exist by the caller).
    pub account_id: String,
    /// The creating agent, for agent keys.
    pub agent_id: Option<String>,
    /// Trimmed name.
    pub name: String,
    /// Normalized scopes.
    pub scopes: Vec<String>,
    /// Days until expiry.
    pub expires_in_days: Option<u32>,
}

impl NewKey {
    /// Validates the caller's fields; `name_field` names the name field as
    /// the caller spelled it (`name`, `key_name`).
    pub(crate) fn validate(
        account_id: &str,
        agent_id: Option<&str>,
        name_field: &str,
        name: &str,
        scopes: &[String],
        expires_in_days: Option<u32>,
    ) -> Result<NewKey> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > KEY_NAME_CHARS_MAX {
            return Err(Error::invalid(
                name_field,
                format!("must be 1 to {KEY_NAME_CHARS_MAX} characters"),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(Error::invalid(
                name_field,
                "must not contain control characters",
            ));
        }
        if let Some(days) = expires_in_days {
            if days == 0 || days > KEY_EXPIRES_IN_DAYS_MAX {
                return Err(Error::invalid(
                    "expires_in_days",
                    format!("must be 1 to {KEY_EXPIRES_IN_DAYS_MAX}"),
                ));
            }
        }
        Ok(NewKey {
            account_id: account_id.to_owned(),
            agent_id: agent_id.map(str::to_owned),
            name: name.to_owned(),
            scopes: scopes::normalize("scopes", scopes)?,
            expires_in_days,
        })
    }
}

/// Inserts a new key and returns it with its secret (the only time the
/// secret exists outside the caller).
pub(crate) fn insert(tx: &Tx<'_>, new: &NewKey, now: UnixMillis) -> Result<(ApiKeyInfo, String)> {
    let prefix = match new.agent_id {
        Some(_) => AGENT_KEY_PREFIX,
        None => ACCOUNT_KEY_PREFIX,
    };
    let secret = mint_secret(prefix);
    let info = ApiKeyInfo {
        id: tx.new_id(KEY_ID_PREFIX),
        account_id: new.account_id.clone(),
        agent_id: new.agent_id.clone(),
        name: new.name.clone(),
        scopes: new.scopes.clone(),
        created_at: now,
        expires_at: new
            .expires_in_days
            .map(|days| now + i64::from(days) * DAY_MILLIS),
        last_used_at: None,
        revoked_at: None,
    };
    tx.prepare_cached(
        "INSERT INTO api_keys (id, account_id, agent_id, name, secret_hash, scopes, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        info.id,
        info.account_id,
        info.agent_id,
        info.name,
        &secret_hash(&secret)[..],
        scopes::encode(&info.scopes),
        info.created_at,
        info.expires_at,
    ])?;
    Ok((info, secret))
}

const KEY_COLUMNS: &str =
    "id, account_id, agent_id, name, scopes, created_at, expires_at, last_used_at, revoked_at";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKeyInfo> {
    Ok(ApiKeyInfo {
        id: row.get(0)?,
        account_id: row.get(1)?,
        agent_id: row.get(2)?,
        name: row.get(3)?,
        scopes: scopes::decode(&row.get::<_, String>(4)?),
        created_at: row.get(5)?,
        expires_at: row.get(6)?,
        last_used_at: row.get(7)?,
        revoked_at: row.get(8)?,
    })
}

/// A key by id, whoever owns it.
pub(crate) fn get(conn: &ReadOnly<'_>, key_id: &str) -> Result<Option<ApiKeyInfo>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1"))?
        .query_row([key_id], from_row)
        .optional()?)
}

/// A key by id if `owner` may see it, else [`Error::NotFound`].
pub(crate) fn get_owned(conn: &ReadOnly<'_>, owner: Owner<'_>, key_id: &str) -> Result<ApiKeyInfo> {
    get(conn, key_id)?
        .filter(|key| owner.owns(key))
        .ok_or_else(|| not_found(key_id))
}

fn not_found(key_id: &str) -> Error {
    Error::NotFound {
        what: "api_key",
        id: key_id.to_owned(),
    }
}

/// An account's keys (its agents' included), oldest first, at most
/// [`KEYS_LIST_MAX`].
pub(crate) fn list_for_account(conn: &ReadOnly<'_>, account_id: &str) -> Result<Vec<ApiKeyInfo>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {KEY_COLUMNS} FROM api_keys WHERE account_id = ?1 ORDER BY created_at, id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![account_id, KEYS_LIST_MAX as i64], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The keys an agent created, oldest first, at most [`KEYS_LIST_MAX`].
pub(crate) fn list_for_agent(conn: &ReadOnly<'_>, agent_id: &str) -> Result<Vec<ApiKeyInfo>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {KEY_COLUMNS} FROM api_keys WHERE agent_id = ?1 ORDER BY created_at, id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![agent_id, KEYS_LIST_MAX as i64], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// `agent_id`'s usable key named `name` with exactly `scopes` (normalized),
/// the oldest if several: an external agent's exchange key.
pub(crate) fn find_exchange_key(
    conn: &ReadOnly<'_>,
    agent_id: &str,
    name: &str,
    scopes: &[String],
    now: UnixMillis,
) -> Result<Option<ApiKeyInfo>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys
             WHERE agent_id = ?1 AND name = ?2 AND scopes = ?3 AND revoked_at IS NULL
               AND (expires_at IS NULL OR expires_at > ?4)
             ORDER BY created_at, id LIMIT 1"
        ))?
        .query_row(
            params![agent_id, name, scopes::encode(scopes), now],
            from_row,
        )
        .optional()?)
}

/// The key whose secret is `secret`, if it is usable at `now`; otherwise
/// [`Error::Unauthorized`] (unknown, revoked or expired alike to the code).
pub(crate) fn find_usable(
    conn: &ReadOnly<'_>,
    secret: &str,
    now: UnixMillis,
) -> Result<ApiKeyInfo> {
    let wanted = secret_hash(secret);
    let found = conn
        .prepare_cached(&format!(
            "SELECT {KEY_COLUMNS}, secret_hash FROM api_keys WHERE secret_hash = ?1"
        ))?
        .query_row([&wanted[..]], |row| {
            Ok((from_row(row)?, row.get::<_, Vec<u8>>(9)?))
        })
        .optional()?;
    let key = match found {
        Some((key, stored)) if constant_time_eq(&stored, &wanted) => key,
        _ => return Err(Error::unauthorized("unknown API key")),
    };
    key.ensure_usable(now)?;
    Ok(key)
}

/// Whether `key`'s `last_used_at` is due for an update at `now`.
pub(crate) fn last_used_is_stale(key: &ApiKeyInfo, now: UnixMillis) -> bool {
    key.last_used_at
        .is_none_or(|at| now - at >= LAST_USED_INTERVAL_SECS * 1_000)
}

/// Marks a key used at `now`, unless it was marked within
/// [`LAST_USED_INTERVAL_SECS`] (the condition is in the `UPDATE`, so
/// concurrent requests write at most once).
pub(crate) fn touch(tx: &Tx<'_>, key_id: &str, now: UnixMillis) -> Result<()> {
    tx.prepare_cached(
        "UPDATE api_keys SET last_used_at = ?2
         WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at <= ?2 - ?3)",
    )?
    .execute(params![key_id, now, LAST_USED_INTERVAL_SECS * 1_000])?;
    Ok(())
}

/// Revokes a key `owner` may see, at `now`; idempotent (a revoked key keeps
/// its first `revoked_at`). Effective on the very next authentication.
/// Revokes every unrevoked key `agent_id` created (its access tokens die
/// with them: a token is only as good as its key); how many.
pub(crate) fn revoke_agent_keys(tx: &Tx<'_>, agent_id: &str, now: UnixMillis) -> Result<usize> {
    Ok(tx
        .prepare_cached(
            "UPDATE api_keys SET revoked_at = ?2 WHERE agent_id = ?1 AND revoked_at IS NULL",
        )?
        .execute(params![agent_id, now])?)
}

pub(crate) fn revoke(
    tx: &Tx<'_>,
    owner: Owner<'_>,
    key_id: &str,
    now: UnixMillis,
) -> Result<ApiKeyInfo> {
    let key = get_owned(tx, owner, key_id)?;
    if key.revoked_at.is_some() {
        return Ok(key);
    }
    let changed = tx
        .prepare_cached("UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL")?
        .execute(params![key_id, now])?;
    assert_eq!(changed, 1, "an unrevoked key we just read is revoked once");
    let revoked = get_owned(tx, owner, key_id)?;
    assert_eq!(revoked.revoked_at, Some(now), "revocation reads back");
    Ok(revoked)
}
