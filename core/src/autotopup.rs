//! Saved payment methods and auto top-up settings. This module alone
//! writes `payment_methods` and `auto_topups`; the charges themselves are
//! top-ups (`payments`), opened by the gate.
//!
//! A saved method is a rail's customer and method ids, never card data. An
//! auto top-up's window is claimed by one conditional update
//! (`claim_window`), in the same write that stores the charge's top-up:
//! concurrent submits and captures claim it once per window.

use rusqlite::{params, OptionalExtension};

use crate::clock::UnixMillis;
use crate::error::{Error, Result};
use crate::store::{ReadOnly, Tx};

/// The shortest window between two automatic charges of an account.
pub const WINDOW_MS_MIN: i64 = 60_000;
/// The longest window between two automatic charges of an account.
pub const WINDOW_MS_MAX: i64 = 31 * 24 * 60 * 60 * 1000;
/// The longest customer or method id kept from a rail.
pub const RAIL_ID_CHARS_MAX: usize = 255;

/// A payment method saved for charges without the payer present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedMethod {
    /// The account it pays for.
    pub account_id: String,
    /// The rail (`stripe`).
    pub rail: String,
    /// The rail's customer (`cus_...`).
    pub customer: String,
    /// The rail's payment method (`pm_...`).
    pub method: String,
    /// When it was saved.
    pub saved_at: UnixMillis,
}

/// An account's auto top-up: when to buy and how much.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoTopUpSettings {
    /// Charge when the available balance falls below this (micro-credits),
    /// or when a hold would fail.
    pub threshold_micros: i64,
    /// Micro-credits bought per charge.
    pub amount_micros: i64,
    /// At most one charge per this many milliseconds.
    pub window_ms: i64,
}

/// An account's auto top-up as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoTopUp {
    /// The account.
    pub account_id: String,
    /// Its settings.
    pub settings: AutoTopUpSettings,
    /// When its window was last claimed by a charge.
    pub last_charge_at: Option<UnixMillis>,
}

impl AutoTopUpSettings {
    /// Checks the bounds; the error names the field.
    pub fn check(&self) -> Result<()> {
        if self.threshold_micros < 0 {
            return Err(Error::invalid("threshold", "must not be negative"));
        }
        if self.amount_micros <= 0 {
            return Err(Error::invalid("amount", "must be positive"));
        }
        if !(WINDOW_MS_MIN..=WINDOW_MS_MAX).contains(&self.window_ms) {
            return Err(Error::invalid("window", "must be from a minute to 31 days"));
        }
        Ok(())
    }
}

/// Saves (or replaces) the method an account's off-session charges use.
pub(crate) fn save_method(
    tx: &Tx<'_>,
    account_id: &str,
    rail: &str,
    customer: &str,
    method: &str,
    now: UnixMillis,
) -> Result<()> {
    for (field, id) in [("customer", customer), ("method", method)] {
        if id.is_empty() || id.len() > RAIL_ID_CHARS_MAX {
            return Err(Error::invalid(field, "is not a usable rail id"));
        }
    }
    tx.prepare_cached(
        "INSERT INTO payment_methods (account_id, rail, customer, method, saved_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (account_id) DO UPDATE SET
             rail = excluded.rail, customer = excluded.customer,
             method = excluded.method, saved_at = excluded.saved_at",
    )?
    .execute(params![account_id, rail, customer, method, now])?;
    Ok(())
}

/// The method saved for an account, if any.
pub(crate) fn saved_method(conn: &ReadOnly<'_>, account_id: &str) -> Result<Option<SavedMethod>> {
    Ok(conn
        .prepare_cached(
            "SELECT account_id, rail, customer, method, saved_at
               FROM payment_methods WHERE account_id = ?1",
        )?
        .query_row([account_id], |row| {
            Ok(SavedMethod {
                account_id: row.get(0)?,
                rail: row.get(1)?,
                customer: row.get(2)?,
                method: row.get(3)?,
                saved_at: row.get(4)?,
            })
        })
        .optional()?)
}

/// Forgets an account's saved method; `false` when there was none.
pub(crate) fn forget_method(tx: &Tx<'_>, account_id: &str) -> Result<bool> {
    Ok(tx
        .prepare_cached("DELETE FROM payment_methods WHERE account_id = ?1")?
        .execute([account_id])?
        == 1)
}

/// Sets an account's auto top-up (checked first).
pub(crate) fn set(
    tx: &Tx<'_>,
    account_id: &str,
    settings: &AutoTopUpSettings,
    now: UnixMillis,
) -> Result<()> {
    settings.check()?;
    tx.prepare_cached(
        "INSERT INTO auto_topups (account_id, threshold_micros, amount_micros, window_ms,
                                  updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (account_id) DO UPDATE SET
             threshold_micros = excluded.threshold_micros,
             amount_micros = excluded.amount_micros,
             window_ms = excluded.window_ms, updated_at = excluded.updated_at",
    )?
    .execute(params![
        account_id,
        settings.threshold_micros,
        settings.amount_micros,
        settings.window_ms,
        now
    ])?;
    Ok(())
}

/// Turns an account's auto top-up off; `false` when it was not on.
pub(crate) fn clear(tx: &Tx<'_>, account_id: &str) -> Result<bool> {
    Ok(tx
        .prepare_cached("DELETE FROM auto_topups WHERE account_id = ?1")?
        .execute([account_id])?
        == 1)
}

/// An account's auto top-up, if on.
pub(crate) fn get(conn: &ReadOnly<'_>, account_id: &str) -> Result<Option<AutoTopUp>> {
    Ok(conn
        .prepare_cached(
            "SELECT threshold_micros, amount_micros, window_ms, last_charge_at
               FROM auto_topups WHERE account_id = ?1",
        )?
        .query_row([account_id], |row| {
            Ok(AutoTopUp {
                account_id: account_id.to_owned(),
                settings: AutoTopUpSettings {
                    threshold_micros: row.get(0)?,
                    amount_micros: row.get(1)?,
                    window_ms: row.get(2)?,
                },
                last_charge_at: row.get(3)?,
            })
        })
        .optional()?)
}

/// Accounts with auto top-up whose available balance is below their
/// threshold, the furthest below first, at most `limit`: (account,
/// available, threshold) in micro-credits. Reads every auto top-up
/// setting (one row per account that turned it on).
pub(crate) fn below_threshold(
    conn: &ReadOnly<'_>,
    limit: usize,
) -> Result<Vec<(String, i64, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT a.account_id, l.credits_posted - l.debits_posted - l.debits_pending AS available,
                a.threshold_micros
           FROM auto_topups a JOIN ledger_accounts l ON l.account_id = a.account_id
          WHERE l.credits_posted - l.debits_posted - l.debits_pending < a.threshold_micros
          ORDER BY available - a.threshold_micros LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit as i64], |row| {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Claims the account's charge window at `now`: `true` for the one write
/// that finds it open (no charge within the window), which must then open
/// the charge in the same transaction.
pub(crate) fn claim_window(tx: &Tx<'_>, account_id: &str, now: UnixMillis) -> Result<bool> {
    Ok(tx
        .prepare_cached(
            "UPDATE auto_topups SET last_charge_at = ?2
              WHERE account_id = ?1
                AND (last_charge_at IS NULL OR last_charge_at <= ?2 - window_ms)",
        )?
        .execute(params![account_id, now])?
        == 1)
}
