//! Redemption codes: an operator's code worth a number of credits, redeemed
//! by agents into their wallets. This module alone writes
//! `redemption_codes` and `code_redemptions`; the grant each redemption
//! makes is the ledger's (the gate composes both in one write).
//!
//! A code's secret is shown once, when it is created, and stored only as
//! its SHA-256. A redemption takes one use with a single conditional
//! `UPDATE` (uses left, not revoked, not expired) that must change one
//! row, never a read followed by a write, so concurrent redemptions of a
//! ten-use code grant exactly ten times (the bug of one-api PR #2399 and
//! new-api PR #4302, where a code could be redeemed several times at once).
//! A once-per-account code is redeemed once per account by a unique index,
//! not only by the check above it.

use rusqlite::{params, OptionalExtension};

use crate::clock::UnixMillis;
use crate::error::{Error, Result};
use crate::identity::{constant_time_eq, mint_secret, secret_hash, BEARER_CHARS_MAX};
use crate::store::{ReadOnly, Tx};

/// The prefix of every code's secret.
pub const CODE_SECRET_PREFIX: &str = "cg_code_";
/// The prefix of a code's id (which is not a secret).
pub const CODE_ID_PREFIX: &str = "code_";
/// Uses one code may have, at most.
pub const CODE_USES_MAX: u32 = 1_000_000;
/// The longest note an operator may keep on a code.
pub const CODE_MEMO_CHARS_MAX: usize = 200;
/// Codes listed in one call, at most (newest first).
pub const CODES_LIST_MAX: usize = 1_000;

/// A new code, as the operator asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCode {
    /// Micro-credits each redemption grants.
    pub amount_micros: i64,
    /// Redemptions in all, at most (1..=[`CODE_USES_MAX`]).
    pub uses_max: u32,
    /// Whether one account may redeem it only once.
    pub once_per_account: bool,
    /// When it stops being redeemable (`None`: never).
    pub expires_at: Option<UnixMillis>,
    /// A note for the operator, shown in listings and on each grant.
    pub memo: String,
}

/// A code as stored (without its secret, which is never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    /// Its id (`code_...`), not a secret.
    pub id: String,
    /// Micro-credits each redemption grants.
    pub amount_micros: i64,
    /// Redemptions in all, at most.
    pub uses_max: u32,
    /// Redemptions so far.
    pub uses: u32,
    /// Whether one account may redeem it only once.
    pub once_per_account: bool,
    /// When it stops being redeemable.
    pub expires_at: Option<UnixMillis>,
    /// The operator's note.
    pub memo: String,
    /// When it was created.
    pub created_at: UnixMillis,
    /// When it was revoked, if it was.
    pub revoked_at: Option<UnixMillis>,
}

/// One redemption taken: the use's number and who took it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redemption {
    /// The code.
    pub code_id: String,
    /// Which use this is (1 for the first).
    pub use_number: u32,
    /// The account credited.
    pub account_id: String,
    /// Micro-credits granted.
    pub amount_micros: i64,
    /// The grant's transfer id (`redeem_<code>_<use>`).
    pub transfer_id: String,
}

impl NewCode {
    /// Checks the operator's request against the bounds.
    pub(crate) fn validate(&self, now: UnixMillis) -> Result<()> {
        if self.amount_micros <= 0 {
            return Err(Error::InvalidAmount(crate::money::AmountError::Zero));
        }
        if !(1..=CODE_USES_MAX).contains(&self.uses_max) {
            return Err(Error::invalid(
                "uses",
                format!("must be from 1 to {CODE_USES_MAX}"),
            ));
        }
        if self.expires_at.is_some_and(|at| at <= now) {
            return Err(Error::invalid("expires_at", "must be in the future"));
        }
        if self.memo.chars().count() > CODE_MEMO_CHARS_MAX {
            return Err(Error::invalid(
                "memo",
                format!("must be at most {CODE_MEMO_CHARS_MAX} characters"),
            ));
        }
        Ok(())
    }
}

/// Stores a new code; its secret, shown only now.
pub(crate) fn insert(tx: &Tx<'_>, new: &NewCode, now: UnixMillis) -> Result<(Code, String)> {
    new.validate(now)?;
    let secret = mint_secret(CODE_SECRET_PREFIX);
    let code = Code {
        id: tx.new_id(CODE_ID_PREFIX),
        amount_micros: new.amount_micros,
        uses_max: new.uses_max,
        uses: 0,
        once_per_account: new.once_per_account,
        expires_at: new.expires_at,
        memo: new.memo.clone(),
        created_at: now,
        revoked_at: None,
    };
    tx.prepare_cached(
        "INSERT INTO redemption_codes (id, secret_hash, amount_micros, uses_max, uses,
                                       once_per_account, expires_at, memo, created_at)
         VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        code.id,
        &secret_hash(&secret)[..],
        code.amount_micros,
        code.uses_max,
        code.once_per_account,
        code.expires_at,
        code.memo,
        code.created_at,
    ])?;
    Ok((code, secret))
}

const CODE_COLUMNS: &str =
    "id, amount_micros, uses_max, uses, once_per_account, expires_at, memo, created_at, revoked_at";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Code> {
    Ok(Code {
        id: row.get(0)?,
        amount_micros: row.get(1)?,
        uses_max: row.get(2)?,
        uses: row.get(3)?,
        once_per_account: row.get(4)?,
        expires_at: row.get(5)?,
        memo: row.get(6)?,
        created_at: row.get(7)?,
        revoked_at: row.get(8)?,
    })
}

/// Every code, newest first (at most [`CODES_LIST_MAX`]).
pub(crate) fn list(conn: &ReadOnly<'_>) -> Result<Vec<Code>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {CODE_COLUMNS} FROM redemption_codes ORDER BY created_at DESC, id LIMIT ?1"
    ))?;
    let rows = stmt.query_map([CODES_LIST_MAX as i64], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A code by id, or `not_found`.
pub(crate) fn get(conn: &ReadOnly<'_>, code_id: &str) -> Result<Code> {
    conn.prepare_cached(&format!(
        "SELECT {CODE_COLUMNS} FROM redemption_codes WHERE id = ?1"
    ))?
    .query_row([code_id], from_row)
    .optional()?
    .ok_or_else(|| Error::NotFound {
        what: "code",
        id: code_id.to_owned(),
    })
}

/// Revokes a code: it redeems no more. Revoking twice is no change.
pub(crate) fn revoke(tx: &Tx<'_>, code_id: &str, now: UnixMillis) -> Result<Code> {
    get(tx, code_id)?;
    tx.prepare_cached(
        "UPDATE redemption_codes SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
    )?
    .execute(params![code_id, now])?;
    get(tx, code_id)
}

/// The live code whose secret is `secret`: [`Error::CodeInvalid`] for an
/// unknown, malformed or revoked one (without telling which).
fn find_by_secret(tx: &Tx<'_>, secret: &str) -> Result<Code> {
    let secret = secret.trim();
    if !secret.starts_with(CODE_SECRET_PREFIX) || secret.len() > BEARER_CHARS_MAX {
        return Err(Error::CodeInvalid);
    }
    let wanted = secret_hash(secret);
    let found = tx
        .prepare_cached(&format!(
            "SELECT {CODE_COLUMNS}, secret_hash FROM redemption_codes WHERE secret_hash = ?1"
        ))?
        .query_row([&wanted[..]], |row| {
            Ok((from_row(row)?, row.get::<_, Vec<u8>>(9)?))
        })
        .optional()?;
    match found {
        Some((code, stored)) if constant_time_eq(&stored, &wanted) && code.revoked_at.is_none() => {
            Ok(code)
        }
        _ => Err(Error::CodeInvalid),
    }
}

/// A use of a code, taken but not yet recorded: the gate grants its
/// credits, then [`record`]s it, in the same transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TakenUse {
    pub(crate) redemption: Redemption,
    /// The account id for a once-per-account code, else the use's number:
    /// unique per code, so the database itself refuses a second
    /// redemption by the same account of a once-per-account code.
    once_key: String,
}

/// Takes one use of the code whose secret is `secret` for `account_id`.
/// Refused, changing nothing, when the code is invalid, expired, used up,
/// or once per account and already redeemed by the account.
pub(crate) fn take_use(
    tx: &Tx<'_>,
    secret: &str,
    account_id: &str,
    now: UnixMillis,
) -> Result<TakenUse> {
    let code = find_by_secret(tx, secret)?;
    if code.expires_at.is_some_and(|at| at <= now) {
        return Err(Error::CodeExpired { code_id: code.id });
    }
    if code.once_per_account && redeemed_by(tx, &code.id, account_id)? {
        return Err(Error::CodeAlreadyRedeemed { code_id: code.id });
    }
    // The one place a use is taken: conditional, so no two redemptions can
    // take the last use, whatever ran between the read above and here.
    let use_number: Option<u32> = tx
        .prepare_cached(
            "UPDATE redemption_codes SET uses = uses + 1
              WHERE id = ?1 AND uses < uses_max AND revoked_at IS NULL
                AND (expires_at IS NULL OR expires_at > ?2)
          RETURNING uses",
        )?
        .query_row(params![code.id, now], |row| row.get(0))
        .optional()?;
    let Some(use_number) = use_number else {
        return Err(Error::CodeUsedUp { code_id: code.id });
    };
    assert!(
        (1..=code.uses_max).contains(&use_number),
        "a use beyond the code's bound"
    );
    let once_key = if code.once_per_account {
        account_id.to_owned()
    } else {
        format!("#{use_number}")
    };
    Ok(TakenUse {
        redemption: Redemption {
            transfer_id: format!("redeem_{}_{use_number}", code.id),
            code_id: code.id,
            use_number,
            account_id: account_id.to_owned(),
            amount_micros: code.amount_micros,
        },
        once_key,
    })
}

/// Records a taken use, after its grant transfer exists.
pub(crate) fn record(tx: &Tx<'_>, taken: &TakenUse, now: UnixMillis) -> Result<()> {
    let r = &taken.redemption;
    let inserted = tx
        .prepare_cached(
            "INSERT INTO code_redemptions (code_id, use_number, account_id, once_key,
                                           transfer_id, redeemed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            r.code_id,
            r.use_number,
            r.account_id,
            taken.once_key,
            r.transfer_id,
            now
        ])?;
    assert_eq!(inserted, 1, "a redemption row not inserted");
    Ok(())
}

/// The redemptions of `account_id`, newest first (at most
/// [`CODES_LIST_MAX`]).
pub(crate) fn redemptions_of(conn: &ReadOnly<'_>, account_id: &str) -> Result<Vec<Redemption>> {
    let mut stmt = conn.prepare_cached(
        "SELECT r.code_id, r.use_number, r.account_id, c.amount_micros, r.transfer_id
           FROM code_redemptions r JOIN redemption_codes c ON c.id = r.code_id
          WHERE r.account_id = ?1 ORDER BY r.redeemed_at DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![account_id, CODES_LIST_MAX as i64], |row| {
        Ok(Redemption {
            code_id: row.get(0)?,
            use_number: row.get(1)?,
            account_id: row.get(2)?,
            amount_micros: row.get(3)?,
            transfer_id: row.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Whether `account_id` redeemed `code_id` already.
fn redeemed_by(tx: &Tx<'_>, code_id: &str, account_id: &str) -> Result<bool> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM code_redemptions WHERE code_id = ?1 AND account_id = ?2")?
        .query_row([code_id, account_id], |_| Ok(()))
        .optional()?
        .is_some())
}
