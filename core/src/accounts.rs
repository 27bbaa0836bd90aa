//! Customer accounts: the owners of wallets (and later of keys, agents and
//! jobs). This module alone writes the `accounts` table; the wallet that
//! goes with each account is the ledger's, created in the same transaction
//! by the facade.

use rusqlite::{params, OptionalExtension};

use crate::store::{ReadOnly, Tx};

use crate::clock::UnixMillis;
use crate::error::{Error, Result};

/// The longest account name.
pub const ACCOUNT_NAME_CHARS_MAX: usize = 200;
/// The longest plan name.
pub const PLAN_CHARS_MAX: usize = 64;
/// Accounts listed in one call, at most.
pub const ACCOUNTS_LIST_MAX: usize = 10_000;
/// The plan of an account created without one while the operator names no
/// default plan: `none`, which no plan may be named (`plans::NO_PLAN`), so
/// such an account has no daily caps.
pub const DEFAULT_PLAN: &str = "none";

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// `acct_` and 32 hex digits.
    pub id: String,
    /// A human name.
    pub name: String,
    /// The plan name (free text: a name with no plan row means no caps).
    pub plan: String,
    /// When it was created.
    pub created_at: UnixMillis,
}

/// What a new account needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAccount {
    /// A human name, 1 to [`ACCOUNT_NAME_CHARS_MAX`] characters.
    pub name: String,
    /// The plan; the default plan the operator named, or [`DEFAULT_PLAN`],
    /// when `None`.
    pub plan: Option<String>,
    /// Whether its wallet may go below zero (postpaid accounts).
    pub allow_negative: bool,
}

impl NewAccount {
    /// A prepaid account on the default plan.
    pub fn named(name: impl Into<String>) -> Self {
        NewAccount {
            name: name.into(),
            plan: None,
            allow_negative: false,
        }
    }
}

/// Inserts a new account row and returns it.
pub(crate) fn insert(tx: &Tx<'_>, new: &NewAccount, now: UnixMillis) -> Result<Account> {
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > ACCOUNT_NAME_CHARS_MAX {
        return Err(Error::invalid(
            "name",
            format!("must be 1 to {ACCOUNT_NAME_CHARS_MAX} characters"),
        ));
    }
    let plan = check_plan(new.plan.as_deref().unwrap_or(DEFAULT_PLAN))?;
    let account = Account {
        id: tx.new_id("acct_"),
        name: name.to_owned(),
        plan: plan.to_owned(),
        created_at: now,
    };
    tx.prepare_cached("INSERT INTO accounts (id, name, plan, created_at) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![
            account.id,
            account.name,
            account.plan,
            account.created_at
        ])?;
    Ok(account)
}

/// Puts an account on plan `plan` (free text, as at creation) and returns it.
pub(crate) fn set_plan(tx: &Tx<'_>, id: &str, plan: &str) -> Result<Account> {
    let plan = check_plan(plan)?;
    let changed = tx
        .prepare_cached("UPDATE accounts SET plan = ?2 WHERE id = ?1")?
        .execute(params![id, plan])?;
    if changed == 0 {
        return Err(Error::NotFound {
            what: "account",
            id: id.to_owned(),
        });
    }
    get(tx, id)
}

/// A plan name, trimmed, 1 to [`PLAN_CHARS_MAX`] characters.
fn check_plan(plan: &str) -> Result<&str> {
    let plan = plan.trim();
    if plan.is_empty() || plan.chars().count() > PLAN_CHARS_MAX {
        return Err(Error::invalid(
            "plan",
            format!("must be 1 to {PLAN_CHARS_MAX} characters"),
        ));
    }
    Ok(plan)
}

/// An account by id.
pub(crate) fn get(conn: &ReadOnly<'_>, id: &str) -> Result<Account> {
    conn.prepare_cached("SELECT id, name, plan, created_at FROM accounts WHERE id = ?1")?
        .query_row([id], from_row)
        .optional()?
        .ok_or_else(|| Error::NotFound {
            what: "account",
            id: id.to_owned(),
        })
}

/// Accounts in creation order, at most [`ACCOUNTS_LIST_MAX`].
pub(crate) fn list(conn: &ReadOnly<'_>) -> Result<Vec<Account>> {
    let mut stmt = conn.prepare(
        "SELECT id, name, plan, created_at FROM accounts ORDER BY created_at, id LIMIT ?1",
    )?;
    let rows = stmt.query_map([ACCOUNTS_LIST_MAX as i64], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Accounts in creation order after the account `after` (a page's cursor:
/// the last id of the page before), at most `limit` (capped at
/// [`ACCOUNTS_LIST_MAX`]), through the `accounts_created` index.
pub(crate) fn page(conn: &ReadOnly<'_>, after: Option<&str>, limit: usize) -> Result<Vec<Account>> {
    let limit = limit.clamp(1, ACCOUNTS_LIST_MAX) as i64;
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, plan, created_at FROM accounts INDEXED BY accounts_created
          WHERE ?1 IS NULL OR (created_at, id) > (SELECT created_at, id FROM accounts WHERE id = ?1)
          ORDER BY created_at, id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after, limit], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: row.get(0)?,
        name: row.get(1)?,
        plan: row.get(2)?,
        created_at: row.get(3)?,
    })
}
