//! Spend caps per API key: the credits a key's jobs may hold per UTC day
//! and per UTC month, as an agent's owner sets them to stop a runaway
//! agent. This module alone writes `key_spend_caps`, `key_spend` and
//! `key_spend_jobs`.
//!
//! A capped key's submit counts its job's hold against the key's day and
//! month with `take`, in the same transaction as the hold, so concurrent
//! submits cannot pass a cap together (the bug of LiteLLM #34732, where
//! budgets were checked outside the write and bypassed under load); a
//! refused submit rolls back and counts nothing. `give_back` returns a
//! job's share when it ends unpaid (all of it) or is charged less than it
//! held (the difference), to the periods it was counted in. Counting
//! starts when a key is first capped: spend before that is not known here.

use rusqlite::{params, OptionalExtension};

use crate::clock::{format_rfc3339, utc_month, UnixMillis, UTC_DAY_MS};
use crate::error::{Error, Result};
use crate::store::{ReadOnly, Tx};

/// A key's caps, in micro-credits; `None` is no cap on that period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpendCaps {
    /// Credits the key's jobs may hold per UTC day.
    pub daily_micros: Option<i64>,
    /// Credits the key's jobs may hold per UTC calendar month.
    pub monthly_micros: Option<i64>,
}

/// Where a key stands against its caps now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpend {
    /// The key.
    pub key_id: String,
    /// Its caps (both `None`: it has none, and nothing is counted).
    pub caps: SpendCaps,
    /// Micro-credits counted today (live holds and charges).
    pub spent_today_micros: i64,
    /// Micro-credits counted this month.
    pub spent_this_month_micros: i64,
    /// When today's count starts again (the next UTC midnight).
    pub day_resets_at: UnixMillis,
    /// When this month's count starts again (the first of next month).
    pub month_resets_at: UnixMillis,
}

/// The period names and ends of `now`: (day, its end, month, its end).
fn periods(now: UnixMillis) -> (String, UnixMillis, String, UnixMillis) {
    let day_start = now.div_euclid(UTC_DAY_MS) * UTC_DAY_MS;
    let day = format!("day:{}", &format_rfc3339(day_start)[..10]);
    let (month, _, month_end) = utc_month(now);
    (
        day,
        day_start + UTC_DAY_MS,
        format!("month:{month}"),
        month_end,
    )
}

/// Sets a key's caps (both `None` removes them: nothing is counted from
/// then on). The key must exist (the gate checks).
pub(crate) fn set(tx: &Tx<'_>, key_id: &str, caps: SpendCaps, now: UnixMillis) -> Result<()> {
    for (field, cap) in [
        ("daily", caps.daily_micros),
        ("monthly", caps.monthly_micros),
    ] {
        if cap.is_some_and(|micros| micros < 0) {
            return Err(Error::invalid(field, "must be zero or more credits"));
        }
    }
    if caps == SpendCaps::default() {
        tx.prepare_cached("DELETE FROM key_spend_caps WHERE key_id = ?1")?
            .execute([key_id])?;
        return Ok(());
    }
    tx.prepare_cached(
        "INSERT INTO key_spend_caps (key_id, daily_micros, monthly_micros, updated_at)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (key_id) DO UPDATE SET daily_micros = ?2, monthly_micros = ?3,
                                            updated_at = ?4",
    )?
    .execute(params![key_id, caps.daily_micros, caps.monthly_micros, now])?;
    Ok(())
}

/// A key's caps (default: none).
pub(crate) fn caps_of(conn: &ReadOnly<'_>, key_id: &str) -> Result<SpendCaps> {
    Ok(conn
        .prepare_cached(
            "SELECT daily_micros, monthly_micros FROM key_spend_caps WHERE key_id = ?1",
        )?
        .query_row([key_id], |row| {
            Ok(SpendCaps {
                daily_micros: row.get(0)?,
                monthly_micros: row.get(1)?,
            })
        })
        .optional()?
        .unwrap_or_default())
}

fn spent(conn: &ReadOnly<'_>, key_id: &str, period: &str) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT spent_micros FROM key_spend WHERE key_id = ?1 AND period = ?2")?
        .query_row([key_id, period], |row| row.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Where a key stands now.
pub(crate) fn spend(conn: &ReadOnly<'_>, key_id: &str, now: UnixMillis) -> Result<KeySpend> {
    let (day, day_end, month, month_end) = periods(now);
    Ok(KeySpend {
        key_id: key_id.to_owned(),
        caps: caps_of(conn, key_id)?,
        spent_today_micros: spent(conn, key_id, &day)?,
        spent_this_month_micros: spent(conn, key_id, &month)?,
        day_resets_at: day_end,
        month_resets_at: month_end,
    })
}

/// Counts job `job_id`'s hold of `micros` against key `key_id`'s day and
/// month, or refuses with [`Error::SpendCapReached`] when it would pass a
/// cap. A key without caps counts nothing.
pub(crate) fn take(
    tx: &Tx<'_>,
    key_id: &str,
    job_id: &str,
    micros: i64,
    now: UnixMillis,
) -> Result<()> {
    let caps = caps_of(tx, key_id)?;
    if caps == SpendCaps::default() || micros == 0 {
        return Ok(());
    }
    let (day, day_end, month, month_end) = periods(now);
    let checks = [
        ("day", &day, caps.daily_micros, day_end),
        ("month", &month, caps.monthly_micros, month_end),
    ];
    for (period, name, cap, reset_at) in checks {
        let spent = spent(tx, key_id, name)?;
        if let Some(cap) = cap {
            if spent.saturating_add(micros) > cap {
                return Err(Error::SpendCapReached {
                    key_id: key_id.to_owned(),
                    period,
                    cap_micros: cap,
                    spent_micros: spent,
                    reset_at,
                });
            }
        }
    }
    for name in [&day, &month] {
        tx.prepare_cached(
            "INSERT INTO key_spend (key_id, period, spent_micros) VALUES (?1, ?2, ?3)
             ON CONFLICT (key_id, period) DO UPDATE SET spent_micros = spent_micros + ?3",
        )?
        .execute(params![key_id, name, micros])?;
    }
    tx.prepare_cached(
        "INSERT INTO key_spend_jobs (job_id, key_id, day_period, month_period, counted_micros)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![job_id, key_id, day, month, micros])?;
    Ok(())
}

/// Gives back what job `job_id` counted beyond `kept_micros` (0 when it
/// ended unpaid, its charge when it succeeded) to the periods it was
/// counted in. A job that counted nothing is no change.
pub(crate) fn give_back(tx: &Tx<'_>, job_id: &str, kept_micros: i64) -> Result<()> {
    let counted: Option<(String, String, String, i64)> = tx
        .prepare_cached(
            "SELECT key_id, day_period, month_period, counted_micros
               FROM key_spend_jobs WHERE job_id = ?1",
        )?
        .query_row([job_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .optional()?;
    let Some((key_id, day, month, counted)) = counted else {
        return Ok(());
    };
    let back = counted - kept_micros.clamp(0, counted);
    if back == 0 {
        return Ok(());
    }
    let changed = tx
        .prepare_cached(
            "UPDATE key_spend SET spent_micros = spent_micros - ?3
              WHERE key_id = ?1 AND period IN (?2, ?4)",
        )?
        .execute(params![key_id, day, back, month])?;
    assert_eq!(changed, 2, "a counted job's periods are missing");
    tx.prepare_cached("UPDATE key_spend_jobs SET counted_micros = ?2 WHERE job_id = ?1")?
        .execute(params![job_id, counted - back])?;
    Ok(())
}
