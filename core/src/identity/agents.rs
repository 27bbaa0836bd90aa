//! Agents: ed25519 identities that register themselves, are bound to an
//! account by its owner, and then act for it through signed requests; and
//! agents of an external identity provider (Moltbook), which have no public
//! key and sign in by the exchange of `external.rs` instead. This file
//! alone writes `agents` and `agent_nonces`.
//!
//! - One agent per public key: registering a known key again returns the
//!   same `agent_id` with a fresh registration code (the old one stops
//!   working); a binding, once made, stays.
//! - Registration codes are secrets (`cg_reg_…`): with a signature they
//!   authorise key creation, so only their SHA-256 is stored. An unbound
//!   code expires after [`REGISTRATION_TTL_SECS`]; binding is what it is
//!   for, so once bound it keeps working for key creation.
//! - Nonces are single use per agent, remembered until their request's
//!   timestamp leaves the acceptance window (then a replay is refused as
//!   stale anyway); old ones are pruned a bounded batch at a time whenever
//!   a nonce is recorded.

use ed25519_dalek::VerifyingKey;
use rusqlite::{params, OptionalExtension};

use crate::clock::UnixMillis;
use crate::error::{Error, Result};
use crate::store::{ReadOnly, Tx};

use super::signing::{SignedFields, SIGNED_REQUEST_SKEW_SECS_MAX};
use super::{constant_time_eq, mint_secret, scopes, secret_hash, ADMIN_SCOPE};

/// The prefix of agent ids.
pub const AGENT_ID_PREFIX: &str = "agent_";
/// The prefix of registration codes.
pub const REGISTRATION_CODE_PREFIX: &str = "cg_reg_";
/// How long a registration code may wait to be bound, in seconds.
pub const REGISTRATION_TTL_SECS: i64 = 86_400;
/// The longest agent name.
pub const AGENT_NAME_CHARS_MAX: usize = 100;
/// The longest agent version.
pub const AGENT_VERSION_CHARS_MAX: usize = 64;
/// Expired nonces deleted per recorded nonce, at most.
pub const NONCE_PRUNE_BATCH_MAX: usize = 64;

/// An agent as stored (without its registration code, which is not kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// `agent_` and 32 hex digits.
    pub id: String,
    /// Its ed25519 public key, 64 lowercase hex digits; `None` for an agent
    /// of an external identity provider, which cannot sign requests.
    pub public_key: Option<String>,
    /// The name it registered with (an external agent: the provider's
    /// latest name for it).
    pub name: String,
    /// The version it registered with (empty for an external agent).
    pub version: String,
    /// The account it is bound to, once bound.
    pub account_id: Option<String>,
    /// The scopes its keys may carry: `None` means any scope but
    /// [`ADMIN_SCOPE`].
    pub allowed_scopes: Option<Vec<String>>,
    /// When it was bound.
    pub bound_at: Option<UnixMillis>,
    /// When its current registration code stops being bindable.
    pub registration_expires_at: UnixMillis,
    /// When it first registered.
    pub created_at: UnixMillis,
}

impl Agent {
    /// The first of `wanted` its binding does not allow, if any.
    pub fn first_disallowed<'a>(&self, wanted: &'a [String]) -> Option<&'a str> {
        match &self.allowed_scopes {
            Some(allowed) => scopes::first_uncovered(allowed, wanted),
            None => wanted
                .iter()
                .map(String::as_str)
                .find(|scope| *scope == ADMIN_SCOPE),
        }
    }
}

/// The answer to a registration: the code to hand to the owner, shown once.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentRegistration {
    /// The agent's id.
    pub agent_id: String,
    /// The code its owner binds (`cg_reg_…`); not kept anywhere after this.
    pub registration_code: String,
    /// When the code stops being bindable.
    pub expires_at: UnixMillis,
}

impl std::fmt::Debug for AgentRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentRegistration")
            .field("agent_id", &self.agent_id)
            .field("registration_code", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A validated registration request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewAgent {
    pub public_key: VerifyingKey,
    pub name: String,
    pub version: String,
}

impl NewAgent {
    /// Validates the name and version an agent registers with.
    pub(crate) fn validate(
        public_key: VerifyingKey,
        name: &str,
        version: &str,
    ) -> Result<NewAgent> {
        Ok(NewAgent {
            public_key,
            name: bounded_text("agent_name", name, AGENT_NAME_CHARS_MAX)?,
            version: bounded_text("agent_version", version, AGENT_VERSION_CHARS_MAX)?,
        })
    }
}

fn bounded_text(field: &str, text: &str, max: usize) -> Result<String> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > max || text.chars().any(char::is_control) {
        return Err(Error::invalid(
            field,
            format!("must be 1 to {max} characters, no control characters"),
        ));
    }
    Ok(text.to_owned())
}

const AGENT_COLUMNS: &str = "id, public_key, name, version, account_id, allowed_scopes, bound_at, \
                             registration_expires_at, created_at";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Agent> {
    Ok(Agent {
        id: row.get(0)?,
        public_key: row.get::<_, Option<Vec<u8>>>(1)?.map(hex::encode),
        name: row.get(2)?,
        version: row.get(3)?,
        account_id: row.get(4)?,
        allowed_scopes: row
            .get::<_, Option<String>>(5)?
            .map(|text| scopes::decode(&text)),
        bound_at: row.get(6)?,
        registration_expires_at: row.get(7)?,
        created_at: row.get(8)?,
    })
}

/// An agent by id.
pub(crate) fn get(conn: &ReadOnly<'_>, agent_id: &str) -> Result<Option<Agent>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = ?1"))?
        .query_row([agent_id], from_row)
        .optional()?)
}

/// An agent's public key, to verify its signed requests; an unknown agent,
/// or an external one (no key), is [`Error::Unauthorized`] (its request
/// cannot be authenticated).
/// Agents waiting to be bound whose code has not expired, newest first,
/// at most `limit` (through `agents_unbound`).
pub(crate) fn pending(conn: &ReadOnly<'_>, now: UnixMillis, limit: usize) -> Result<Vec<Agent>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {AGENT_COLUMNS} FROM agents INDEXED BY agents_unbound
          WHERE account_id IS NULL AND registration_expires_at > ?1
          ORDER BY registration_expires_at DESC LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![now, limit as i64], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The agents bound to `account_id`, at most `limit` (through
/// `agents_account`).
pub(crate) fn of_account(
    conn: &ReadOnly<'_>,
    account_id: &str,
    limit: usize,
) -> Result<Vec<Agent>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {AGENT_COLUMNS} FROM agents INDEXED BY agents_account
          WHERE account_id = ?1 LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![account_id, limit as i64], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Bound agents, the most recently bound first, at most `limit` (through
/// `agents_bound`).
pub(crate) fn bound(conn: &ReadOnly<'_>, limit: usize) -> Result<Vec<Agent>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {AGENT_COLUMNS} FROM agents INDEXED BY agents_bound
          WHERE bound_at IS NOT NULL ORDER BY bound_at DESC LIMIT ?1"
    ))?;
    let rows = stmt.query_map(params![limit as i64], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn verifying_key(conn: &ReadOnly<'_>, agent_id: &str) -> Result<VerifyingKey> {
    let bytes: Option<Option<Vec<u8>>> = conn
        .prepare_cached("SELECT public_key FROM agents WHERE id = ?1")?
        .query_row([agent_id], |row| row.get(0))
        .optional()?;
    let bytes: [u8; 32] = bytes
        .ok_or_else(|| Error::unauthorized("unknown agent"))?
        .ok_or_else(|| {
            Error::unauthorized("this agent signs in through an external identity provider")
        })?
        .try_into()
        .expect("the schema keeps public keys at 32 bytes");
    Ok(
        VerifyingKey::from_bytes(&bytes)
            .expect("a stored public key was validated at registration"),
    )
}

/// Registers `new` (whose self-signed request verified), or rotates the
/// registration code of the agent that already has its key. Records the
/// request's nonce.
pub(crate) fn register(
    tx: &Tx<'_>,
    new: &NewAgent,
    signed: &SignedFields,
    now: UnixMillis,
) -> Result<AgentRegistration> {
    let public_key = new.public_key.to_bytes();
    let code = mint_secret(REGISTRATION_CODE_PREFIX);
    let expires_at = now + REGISTRATION_TTL_SECS * 1_000;
    let existing: Option<String> = tx
        .prepare_cached("SELECT id FROM agents WHERE public_key = ?1")?
        .query_row([&public_key[..]], |row| row.get(0))
        .optional()?;
    let agent_id = match existing {
        Some(agent_id) => {
            consume_nonce(tx, &agent_id, signed, now)?;
            tx.prepare_cached(
                "UPDATE agents SET name = ?2, version = ?3, registration_code_hash = ?4,
                        registration_expires_at = ?5
                 WHERE id = ?1",
            )?
            .execute(params![
                agent_id,
                new.name,
                new.version,
                &secret_hash(&code)[..],
                expires_at
            ])?;
            agent_id
        }
        None => {
            let agent_id = tx.new_id(AGENT_ID_PREFIX);
            tx.prepare_cached(
                "INSERT INTO agents (id, public_key, name, version, registration_code_hash,
                                     registration_expires_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                agent_id,
                &public_key[..],
                new.name,
                new.version,
                &secret_hash(&code)[..],
                expires_at,
                now
            ])?;
            consume_nonce(tx, &agent_id, signed, now)?;
            agent_id
        }
    };
    Ok(AgentRegistration {
        agent_id,
        registration_code: code,
        expires_at,
    })
}

/// Creates an agent of an external identity provider: no public key, the
/// provider's `name` (validated by the caller), an empty version, and a
/// fresh registration code for its owner to bind (the caller may bind it at
/// once instead, and then discards the code).
pub(crate) fn insert_external(
    tx: &Tx<'_>,
    name: &str,
    now: UnixMillis,
) -> Result<AgentRegistration> {
    let agent_id = tx.new_id(AGENT_ID_PREFIX);
    let code = mint_secret(REGISTRATION_CODE_PREFIX);
    let expires_at = now + REGISTRATION_TTL_SECS * 1_000;
    tx.prepare_cached(
        "INSERT INTO agents (id, public_key, name, version, registration_code_hash,
                             registration_expires_at, created_at)
         VALUES (?1, NULL, ?2, '', ?3, ?4, ?5)",
    )?
    .execute(params![
        agent_id,
        name,
        &secret_hash(&code)[..],
        expires_at,
        now
    ])?;
    Ok(AgentRegistration {
        agent_id,
        registration_code: code,
        expires_at,
    })
}

/// Gives an unbound agent a fresh registration code, valid for
/// [`REGISTRATION_TTL_SECS`] from `now`; the previous code stops working.
/// (An external agent gets one on each exchange until it is bound.)
pub(crate) fn rotate_registration(
    tx: &Tx<'_>,
    agent_id: &str,
    now: UnixMillis,
) -> Result<AgentRegistration> {
    let code = mint_secret(REGISTRATION_CODE_PREFIX);
    let expires_at = now + REGISTRATION_TTL_SECS * 1_000;
    let changed = tx
        .prepare_cached(
            "UPDATE agents SET registration_code_hash = ?2, registration_expires_at = ?3
             WHERE id = ?1 AND account_id IS NULL",
        )?
        .execute(params![agent_id, &secret_hash(&code)[..], expires_at])?;
    assert_eq!(changed, 1, "only an existing unbound agent gets a new code");
    Ok(AgentRegistration {
        agent_id: agent_id.to_owned(),
        registration_code: code,
        expires_at,
    })
}

/// Renames an agent (an external agent follows its provider's name).
pub(crate) fn rename(tx: &Tx<'_>, agent_id: &str, name: &str) -> Result<()> {
    let changed = tx
        .prepare_cached("UPDATE agents SET name = ?2 WHERE id = ?1")?
        .execute(params![agent_id, name])?;
    assert_eq!(changed, 1, "only an existing agent is renamed");
    Ok(())
}

/// Records a signed request's nonce for `agent_id`; [`Error::NonceReused`]
/// if it is remembered. Prunes a bounded batch of forgotten ones.
pub(crate) fn consume_nonce(
    tx: &Tx<'_>,
    agent_id: &str,
    signed: &SignedFields,
    now: UnixMillis,
) -> Result<()> {
    // The request stays acceptable until its timestamp leaves the window.
    let remember_until = signed
        .timestamp
        .saturating_add(SIGNED_REQUEST_SKEW_SECS_MAX)
        .saturating_mul(1_000);
    tx.prepare_cached(
        "DELETE FROM agent_nonces WHERE (agent_id, nonce) IN
             (SELECT agent_id, nonce FROM agent_nonces WHERE expires_at < ?1 LIMIT ?2)",
    )?
    .execute(params![now, NONCE_PRUNE_BATCH_MAX as i64])?;
    let recorded = tx
        .prepare_cached(
            "INSERT INTO agent_nonces (agent_id, nonce, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (agent_id, nonce) DO UPDATE SET expires_at = excluded.expires_at
             WHERE agent_nonces.expires_at < ?4",
        )?
        .execute(params![agent_id, signed.nonce, remember_until, now])?;
    if recorded == 0 {
        return Err(Error::NonceReused);
    }
    Ok(())
}

fn redacted_code_not_found() -> Error {
    Error::NotFound {
        what: "registration_code",
        id: "<redacted>".to_owned(),
    }
}

/// Binds the agent whose registration code is `code` to `account_id`
/// (which the caller checked exists), allowing `allowed_scopes` (`None`:
/// any but admin). Binding again to the same account with the same scopes
/// returns the binding; anything else on a bound agent is
/// [`Error::AgentAlreadyBound`]. An unbound code past its expiry is
/// [`Error::RegistrationExpired`].
pub(crate) fn bind(
    tx: &Tx<'_>,
    code: &str,
    account_id: &str,
    allowed_scopes: Option<&[String]>,
    now: UnixMillis,
) -> Result<Agent> {
    let allowed = allowed_scopes
        .map(|list| scopes::normalize("allowed_scopes", list))
        .transpose()?;
    let wanted = secret_hash(code);
    let found = tx
        .prepare_cached(&format!(
            "SELECT {AGENT_COLUMNS}, registration_code_hash FROM agents
             WHERE registration_code_hash = ?1"
        ))?
        .query_row([&wanted[..]], |row| {
            Ok((from_row(row)?, row.get::<_, Vec<u8>>(9)?))
        })
        .optional()?;
    let agent = match found {
        Some((agent, stored)) if constant_time_eq(&stored, &wanted) => agent,
        _ => return Err(redacted_code_not_found()),
    };
    if agent.account_id.is_none() && now >= agent.registration_expires_at {
        return Err(Error::RegistrationExpired);
    }
    bind_agent(tx, agent, account_id, allowed, now)
}

/// Binds agent `agent_id` to `account_id` (which the caller checked
/// exists) without a registration code, allowing any scope but admin: the
/// configured default account of an external identity provider. The same
/// rules as [`bind`] apply to an agent already bound.
pub(crate) fn bind_without_code(
    tx: &Tx<'_>,
    agent_id: &str,
    account_id: &str,
    now: UnixMillis,
) -> Result<Agent> {
    let agent = get(tx, agent_id)?.ok_or_else(|| Error::NotFound {
        what: "agent",
        id: agent_id.to_owned(),
    })?;
    bind_agent(tx, agent, account_id, None, now)
}

/// Binds a found agent: idempotent for the same account and scopes,
/// [`Error::AgentAlreadyBound`] for others.
fn bind_agent(
    tx: &Tx<'_>,
    agent: Agent,
    account_id: &str,
    allowed: Option<Vec<String>>,
    now: UnixMillis,
) -> Result<Agent> {
    if let Some(bound_to) = &agent.account_id {
        if bound_to != account_id {
            return Err(Error::AgentAlreadyBound {
                agent_id: agent.id,
                field: "account_id",
            });
        }
        if agent.allowed_scopes != allowed {
            return Err(Error::AgentAlreadyBound {
                agent_id: agent.id,
                field: "allowed_scopes",
            });
        }
        return Ok(agent);
    }
    let changed = tx
        .prepare_cached(
            "UPDATE agents SET account_id = ?2, allowed_scopes = ?3, bound_at = ?4
             WHERE id = ?1 AND account_id IS NULL",
        )?
        .execute(params![
            agent.id,
            account_id,
            allowed.as_deref().map(scopes::encode),
            now
        ])?;
    assert_eq!(changed, 1, "an unbound agent we just read binds once");
    let bound = get(tx, &agent.id)?.expect("the agent we bound exists");
    assert_eq!(
        bound.account_id.as_deref(),
        Some(account_id),
        "binding reads back"
    );
    Ok(bound)
}

/// `Ok` if `code` is `agent`'s current registration code (compared in
/// constant time), else [`Error::Unauthorized`].
pub(crate) fn check_registration_code(
    conn: &ReadOnly<'_>,
    agent_id: &str,
    code: &str,
) -> Result<()> {
    let stored: Option<Vec<u8>> = conn
        .prepare_cached("SELECT registration_code_hash FROM agents WHERE id = ?1")?
        .query_row([agent_id], |row| row.get(0))
        .optional()?;
    match stored {
        Some(stored) if constant_time_eq(&stored, &secret_hash(code)) => Ok(()),
        _ => Err(Error::unauthorized(
            "the registration code is not this agent's",
        )),
    }
}

/// `Ok` with the bound account if `agent` is bound; else
/// [`Error::RegistrationExpired`] if its code expired unbound, or
/// [`Error::AgentNotBound`].
pub(crate) fn bound_account(agent: &Agent, now: UnixMillis) -> Result<&str> {
    match &agent.account_id {
        Some(account_id) => Ok(account_id),
        None if now >= agent.registration_expires_at => Err(Error::RegistrationExpired),
        None => Err(Error::AgentNotBound {
            agent_id: agent.id.clone(),
        }),
    }
}
