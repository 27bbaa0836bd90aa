//! The owner's console sessions and the throttle on failed sign-ins. This
//! file alone writes `console_sessions`.
//!
//! An operator signs in to the console with an API key holding the
//! `operator` scope (the box's own, which only the CLI grants). Signing in
//! opens a **session**: an opaque random secret (`cg_cs_…`) the browser
//! keeps in an `HttpOnly` cookie, stored here only as its SHA-256. A
//! session ends at the first of: sign-out, [`SESSION_IDLE_SECS`] without a
//! request, [`SESSION_ABSOLUTE_SECS`] after sign-in, or its key being
//! revoked or expiring (checked on every request, so a key revoked from the
//! CLI, another process, ends its sessions at once).
//!
//! Every form of a session carries its **CSRF token**, derived from the
//! session secret by a keyed hash ([`csrf_token`]): nothing more is stored,
//! a token is good for its session only, and a forged cross-site post,
//! which cannot read the page, cannot know it.
//!
//! Failed sign-ins are counted per client address in memory
//! ([`SignInThrottle`]): past [`SIGN_IN_FAILURES_MAX`] in
//! [`SIGN_IN_WINDOW_SECS`], every attempt from that address is refused
//! without looking at the key until the window ends.

use std::collections::HashMap;
use std::sync::Mutex;

use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::clock::UnixMillis;
use crate::error::{Error, Result};
use crate::store::{ReadOnly, Tx};

use super::{constant_time_eq, mint_secret, secret_hash};

/// The prefix of console session secrets.
pub const SESSION_PREFIX: &str = "cg_cs_";
/// A session ends after this long without a request.
pub const SESSION_IDLE_SECS: i64 = 30 * 60;
/// A session ends this long after sign-in, however busy.
pub const SESSION_ABSOLUTE_SECS: i64 = 12 * 60 * 60;
/// A session's `last_seen_at` is written at most this often (a page view is
/// a read; the idle clock need not be exact to the second).
pub const SESSION_TOUCH_SECS: i64 = 60;
/// Ended and expired sessions are kept this long, then pruned.
pub const SESSION_RETENTION_SECS: i64 = 7 * 24 * 60 * 60;
/// Sessions pruned per sign-in, at most.
pub const SESSION_PRUNE_BATCH: i64 = 100;
/// Failed sign-ins one client address may make per window.
pub const SIGN_IN_FAILURES_MAX: u32 = 10;
/// The window failed sign-ins are counted in.
pub const SIGN_IN_WINDOW_SECS: i64 = 10 * 60;
/// Client addresses the throttle tracks at most; past it, finished
/// windows are forgotten first, then the whole table.
pub const SIGN_IN_ADDRESSES_MAX: usize = 10_000;

/// The length of a session secret: the prefix and 64 hex digits.
const SESSION_SECRET_CHARS: usize = SESSION_PREFIX.len() + 64;

/// A live console session, as a request sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// The session's id (`cses_…`): it names the session in logs, never
    /// the secret.
    pub id: String,
    /// The operator key it was opened with.
    pub key_id: String,
    /// The account that key belongs to.
    pub account_id: String,
    /// When it was opened.
    pub created_at: UnixMillis,
    /// When it ends if nothing else ends it first (the absolute expiry).
    pub expires_at: UnixMillis,
    /// The token every form of this session must carry.
    pub csrf_token: String,
}

/// A session just opened: the session and its secret, for the cookie.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The session.
    pub session: ConsoleSession,
    /// Its secret, handed out once (only its hash is stored).
    pub secret: crate::secret::Secret,
}

/// The CSRF token of a session: a keyed SHA-256 of its secret, in hex.
pub fn csrf_token(secret: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"creditgate console csrf v1\0");
    hasher.update(secret.as_bytes());
    hex::encode(hasher.finalize())
}

/// Whether `presented` is the CSRF token of `session` (constant time).
pub fn csrf_matches(session: &ConsoleSession, presented: &str) -> bool {
    constant_time_eq(session.csrf_token.as_bytes(), presented.as_bytes())
}

/// Opens a session for `key_id` (of `account_id`, already authenticated
/// and checked for the operator scope) and prunes a bounded batch of
/// finished ones.
pub(crate) fn open(
    tx: &Tx<'_>,
    key_id: &str,
    account_id: &str,
    now: UnixMillis,
) -> Result<SignedIn> {
    prune(tx, now)?;
    let secret = mint_secret(SESSION_PREFIX);
    let id = tx.new_id("cses_");
    let expires_at = now + SESSION_ABSOLUTE_SECS * 1000;
    tx.prepare_cached(
        "INSERT INTO console_sessions (id, secret_hash, key_id, created_at, last_seen_at,
                                       expires_at)
         VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
    )?
    .execute(params![
        id,
        secret_hash(&secret).as_slice(),
        key_id,
        now,
        expires_at
    ])?;
    Ok(SignedIn {
        session: ConsoleSession {
            id,
            key_id: key_id.to_owned(),
            account_id: account_id.to_owned(),
            created_at: now,
            expires_at,
            csrf_token: csrf_token(&secret),
        },
        secret: crate::secret::Secret::new(secret),
    })
}

/// What [`find`] read: the session, and whether its `last_seen_at` is old
/// enough to be written again.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub(crate) session: ConsoleSession,
    pub(crate) touch: bool,
}

/// The live session of `secret`, or [`Error::Unauthorized`] (unknown,
/// signed out, idle too long, past its absolute expiry, or its key revoked
/// or expired). Reads only; the caller writes the touch.
pub(crate) fn find(conn: &ReadOnly<'_>, secret: &str, now: UnixMillis) -> Result<Found> {
    let refused = || Error::Unauthorized {
        reason: "no console session: sign in again",
    };
    if secret.len() != SESSION_SECRET_CHARS || !secret.starts_with(SESSION_PREFIX) {
        return Err(refused());
    }
    let hash = secret_hash(secret);
    type Row = (
        String,
        Vec<u8>,
        String,
        String,
        i64,
        i64,
        i64,
        Option<i64>,
        Option<i64>,
        Option<i64>,
    );
    let row: Option<Row> = conn
        .prepare_cached(
            "SELECT s.id, s.secret_hash, s.key_id, k.account_id, s.created_at, s.last_seen_at,
                    s.expires_at, s.ended_at, k.revoked_at, k.expires_at
               FROM console_sessions s JOIN api_keys k ON k.id = s.key_id
              WHERE s.secret_hash = ?1",
        )?
        .query_row([hash.as_slice()], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
                row.get(6)?,
                row.get(7)?,
                row.get(8)?,
                row.get(9)?,
            ))
        })
        .optional()?;
    let Some((
        id,
        stored,
        key_id,
        account_id,
        created_at,
        last_seen_at,
        expires_at,
        ended_at,
        key_revoked_at,
        key_expires_at,
    )) = row
    else {
        return Err(refused());
    };
    let live = constant_time_eq(&stored, &hash)
        && ended_at.is_none()
        && now < expires_at
        && now < last_seen_at + SESSION_IDLE_SECS * 1000
        && key_revoked_at.is_none()
        && key_expires_at.is_none_or(|at| now < at);
    if !live {
        return Err(refused());
    }
    Ok(Found {
        session: ConsoleSession {
            id,
            key_id,
            account_id,
            created_at,
            expires_at,
            csrf_token: csrf_token(secret),
        },
        touch: now >= last_seen_at + SESSION_TOUCH_SECS * 1000,
    })
}

/// Moves a session's idle clock to `now`.
pub(crate) fn touch(tx: &Tx<'_>, session_id: &str, now: UnixMillis) -> Result<()> {
    tx.prepare_cached(
        "UPDATE console_sessions SET last_seen_at = max(last_seen_at, ?2)
          WHERE id = ?1 AND ended_at IS NULL",
    )?
    .execute(params![session_id, now])?;
    Ok(())
}

/// Ends the session of `secret` (signing out); ending an unknown or ended
/// one does nothing.
pub(crate) fn end(tx: &Tx<'_>, secret: &str, now: UnixMillis) -> Result<bool> {
    let changed = tx
        .prepare_cached(
            "UPDATE console_sessions SET ended_at = ?2
              WHERE secret_hash = ?1 AND ended_at IS NULL",
        )?
        .execute(params![secret_hash(secret).as_slice(), now])?;
    Ok(changed == 1)
}

/// Deletes up to [`SESSION_PRUNE_BATCH`] sessions finished more than
/// [`SESSION_RETENTION_SECS`] ago.
fn prune(tx: &Tx<'_>, now: UnixMillis) -> Result<()> {
    let before = now - SESSION_RETENTION_SECS * 1000;
    tx.prepare_cached(
        "DELETE FROM console_sessions WHERE id IN (
             SELECT id FROM console_sessions INDEXED BY console_sessions_expiry
              WHERE expires_at < ?1 LIMIT ?2)",
    )?
    .execute(params![before, SESSION_PRUNE_BATCH])?;
    Ok(())
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    window_start: UnixMillis,
}

/// Failed console sign-ins per client address, in memory (a restart
/// forgets them), bounded to [`SIGN_IN_ADDRESSES_MAX`] addresses.
#[derive(Debug, Default)]
pub struct SignInThrottle {
    failures: Mutex<HashMap<String, Failures>>,
}

impl SignInThrottle {
    /// `Ok` if `address` may try to sign in at `now`, else
    /// [`Error::RateLimited`] saying when it may again.
    pub fn check(&self, address: &str, now: UnixMillis) -> Result<()> {
        let failures = self.lock();
        match failures.get(address) {
            Some(f)
                if f.count >= SIGN_IN_FAILURES_MAX
                    && now < f.window_start + SIGN_IN_WINDOW_SECS * 1000 =>
            {
                let wait = f.window_start + SIGN_IN_WINDOW_SECS * 1000 - now;
                Err(Error::RateLimited {
                    retry_after_ms: u64::try_from(wait).unwrap_or(0),
                })
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed sign-in from `address` at `now`.
    pub fn failed(&self, address: &str, now: UnixMillis) {
        let window = SIGN_IN_WINDOW_SECS * 1000;
        let mut failures = self.lock();
        if failures.len() >= SIGN_IN_ADDRESSES_MAX && !failures.contains_key(address) {
            failures.retain(|_, f| now < f.window_start + window);
            if failures.len() >= SIGN_IN_ADDRESSES_MAX {
                failures.clear();
            }
        }
        let entry = failures.entry(address.to_owned()).or_insert(Failures {
            count: 0,
            window_start: now,
        });
        if now >= entry.window_start + window {
            *entry = Failures {
                count: 0,
                window_start: now,
            };
        }
        entry.count = entry.count.saturating_add(1);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failures>> {
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_refuses_past_the_failures_of_a_window_and_forgets_after_it() {
        let throttle = SignInThrottle::default();
        let start = 1_000_000;
        for _ in 0..SIGN_IN_FAILURES_MAX {
            throttle.check("10.0.0.1", start).expect("may try");
            throttle.failed("10.0.0.1", start);
        }
        let refused = throttle.check("10.0.0.1", start + 1_000);
        assert!(
            matches!(refused, Err(Error::RateLimited { retry_after_ms }) if retry_after_ms == (SIGN_IN_WINDOW_SECS * 1000 - 1_000) as u64),
            "{refused:?}"
        );
        throttle.check("10.0.0.2", start).expect("another address");
        throttle
            .check("10.0.0.1", start + SIGN_IN_WINDOW_SECS * 1000)
            .expect("a new window");
        throttle.failed("10.0.0.1", start + SIGN_IN_WINDOW_SECS * 1000);
        throttle
            .check("10.0.0.1", start + SIGN_IN_WINDOW_SECS * 1000)
            .expect("one failure of the new window");
    }

    #[test]
    fn a_csrf_token_is_its_session_s_alone() {
        let a = csrf_token("cg_cs_a");
        assert_eq!(a, csrf_token("cg_cs_a"));
        assert_ne!(a, csrf_token("cg_cs_b"));
        assert_eq!(a.len(), 64);
        assert!(!a.contains("cg_cs_a"), "the token never shows the secret");
    }
}
