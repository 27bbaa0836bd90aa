//! Plan tiers: named plans with a daily cap per catalog product, and the
//! daily counters that enforce them. This module alone writes `plans`,
//! `plan_caps` and `plan_usage`.
//!
//! A plan caps how many jobs of a product (`image`, `video`, `chat`, ...:
//! products are catalog data, so caps are kept by product name) an account
//! may start per UTC day. A product the plan does not cap is unlimited; an
//! account whose plan names no plan row ([`NO_PLAN`] included) has no caps.
//! A submit counts one job of its account for the product and day with
//! `take` (every accepted job, capped or not, so a cap set mid-day sees
//! the whole day), in the same transaction as the job's hold, so concurrent
//! submits cannot overshoot a cap, a refused submit (its transaction rolled
//! back) counts nothing, and a replay (answered before the count) counts
//! nothing again. Slots are not given back when a job fails or is canceled:
//! a cap counts accepted jobs. Days are UTC days of the injected clock.

use std::collections::BTreeMap;

use rusqlite::{params, OptionalExtension};

use crate::clock::UnixMillis;
use crate::error::{Error, Result};
use crate::store::{ReadOnly, Tx};

/// The longest plan name (the same bound as an account's plan).
pub const PLAN_NAME_CHARS_MAX: usize = 64;
/// The longest product name a cap may name.
pub const PRODUCT_CHARS_MAX: usize = 64;
/// Products one plan may cap, at most.
pub const CAPS_PER_PLAN_MAX: usize = 100;
/// Plans listed in one call, at most.
pub const PLANS_LIST_MAX: usize = 1_000;
/// The plan name that means "no plan": an account on it has no caps, and no
/// plan may take the name. Accounts created without a plan, while no
/// default plan is named, are put on it.
pub const NO_PLAN: &str = "none";
/// One UTC day.
pub const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// A plan as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Its name (`free`, `pro`, `enterprise`, or an operator's own).
    pub name: String,
    /// Jobs per UTC day, by product; a product not in it is unlimited.
    pub caps: BTreeMap<String, u64>,
    /// Whether accounts created without a plan are put on it.
    pub is_default: bool,
    /// When it was created (0 for the shipped plans: a migration has no clock).
    pub created_at: UnixMillis,
    /// When it was last changed.
    pub updated_at: UnixMillis,
}

/// A change to a plan: created if missing, then each cap set (`Some`) or
/// removed (`None`, unlimited). Caps not named keep their value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanEdit {
    /// The plan's name.
    pub name: String,
    /// Daily caps to set (`Some(n)`) or remove (`None`), by product.
    pub caps: Vec<(String, Option<u64>)>,
}

/// Where an account stands against one capped product today: what the
/// `X-RateLimit-*` headers of a plan cap say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanUsage {
    /// The cap: jobs of the product per UTC day.
    pub limit: u64,
    /// Jobs of the product counted today (this submit's included).
    pub used: u64,
    /// When the count starts again: the next UTC midnight.
    pub reset_at: UnixMillis,
}

impl PlanUsage {
    /// Jobs still allowed today.
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }
}

/// The UTC day of `at`: whole days since the Unix epoch.
pub fn day_of(at: UnixMillis) -> i64 {
    at.div_euclid(DAY_MS)
}

/// The UTC midnight after `at`, when a day's counts start again.
pub fn next_midnight(at: UnixMillis) -> UnixMillis {
    (day_of(at) + 1) * DAY_MS
}

/// Checks a plan name: 1 to [`PLAN_NAME_CHARS_MAX`] characters, no
/// surrounding blanks, not [`NO_PLAN`].
pub fn check_plan_name(name: &str) -> Result<()> {
    if name.trim() != name || name.is_empty() || name.chars().count() > PLAN_NAME_CHARS_MAX {
        return Err(Error::invalid(
            "plan",
            format!("must be 1 to {PLAN_NAME_CHARS_MAX} characters without surrounding blanks"),
        ));
    }
    if name == NO_PLAN {
        return Err(Error::invalid(
            "plan",
            format!("{NO_PLAN} means no plan and cannot be a plan's name"),
        ));
    }
    Ok(())
}

/// Counts one job of `product` for `account_id` today, on its plan `plan`,
/// or refuses with [`Error::PlanLimitReached`] when the plan's cap for the
/// product is used up. Every accepted job is counted, capped or not, so a
/// cap set (or a plan changed) during the day sees the day's whole count.
/// The first count of a day drops the account's older counts of the
/// product. Answers `None` when the product is not capped. Runs inside the
/// submit's transaction: the single writer makes the read and the count
/// one step.
pub(crate) fn take(
    tx: &Tx<'_>,
    plan: &str,
    account_id: &str,
    product: &str,
    now: UnixMillis,
) -> Result<Option<PlanUsage>> {
    let limit = cap(tx, plan, product)?;
    let day = day_of(now);
    // Counted first, in one statement: a refusal below rolls the count
    // back with the submit's transaction.
    let counted: i64 = tx
        .prepare_cached(
            "INSERT INTO plan_usage (account_id, product, day, used) VALUES (?1, ?2, ?3, 1)
             ON CONFLICT (account_id, product, day) DO UPDATE SET used = used + 1
             RETURNING used",
        )?
        .query_row(params![account_id, product, day], |row| row.get(0))?;
    let used = u64::try_from(counted - 1).map_err(|_| Error::corrupt("a negative plan count"))?;
    let reset_at = next_midnight(now);
    if let Some(limit) = limit.filter(|limit| used >= *limit) {
        return Err(Error::PlanLimitReached {
            plan: plan.to_owned(),
            product: product.to_owned(),
            limit,
            used,
            reset_at,
        });
    }
    if used == 0 {
        tx.prepare_cached(
            "DELETE FROM plan_usage WHERE account_id = ?1 AND product = ?2 AND day < ?3",
        )?
        .execute(params![account_id, product, day])?;
    }
    Ok(limit.map(|limit| PlanUsage {
        limit,
        used: used + 1,
        reset_at,
    }))
}

/// Where `account_id` on `plan` stands today for `product`, counting
/// nothing; `None` when the product is not capped.
pub(crate) fn usage(
    conn: &ReadOnly<'_>,
    plan: &str,
    account_id: &str,
    product: &str,
    now: UnixMillis,
) -> Result<Option<PlanUsage>> {
    let Some(limit) = cap(conn, plan, product)? else {
        return Ok(None);
    };
    Ok(Some(PlanUsage {
        limit,
        used: used_on(conn, account_id, product, day_of(now))?,
        reset_at: next_midnight(now),
    }))
}

/// The daily cap `plan` sets on `product`, if any.
fn cap(conn: &ReadOnly<'_>, plan: &str, product: &str) -> Result<Option<u64>> {
    let cap: Option<i64> = conn
        .prepare_cached("SELECT daily_max FROM plan_caps WHERE plan = ?1 AND product = ?2")?
        .query_row(params![plan, product], |row| row.get(0))
        .optional()?;
    cap.map(|n| u64::try_from(n).map_err(|_| Error::corrupt(format!("plan cap {n}"))))
        .transpose()
}

/// Jobs of `product` counted for `account_id` on `day`.
fn used_on(conn: &ReadOnly<'_>, account_id: &str, product: &str, day: i64) -> Result<u64> {
    let used: Option<i64> = conn
        .prepare_cached(
            "SELECT used FROM plan_usage WHERE account_id = ?1 AND product = ?2 AND day = ?3",
        )?
        .query_row(params![account_id, product, day], |row| row.get(0))
        .optional()?;
    u64::try_from(used.unwrap_or(0)).map_err(|_| Error::corrupt("a negative plan count"))
}

/// Creates or changes a plan (see [`PlanEdit`]) and returns it.
pub(crate) fn edit(tx: &Tx<'_>, edit: &PlanEdit, now: UnixMillis) -> Result<Plan> {
    check_plan_name(&edit.name)?;
    for (product, limit) in &edit.caps {
        if product.trim() != product
            || product.is_empty()
            || product.chars().count() > PRODUCT_CHARS_MAX
        {
            return Err(Error::invalid(
                "cap",
                format!("a product name must be 1 to {PRODUCT_CHARS_MAX} characters"),
            ));
        }
        if limit.is_some_and(|n| i64::try_from(n).is_err()) {
            return Err(Error::invalid("cap", "is too large"));
        }
    }
    tx.prepare_cached(
        "INSERT INTO plans (name, created_at, updated_at) VALUES (?1, ?2, ?2)
         ON CONFLICT (name) DO UPDATE SET updated_at = ?2",
    )?
    .execute(params![edit.name, now])?;
    for (product, limit) in &edit.caps {
        match limit {
            Some(n) => tx
                .prepare_cached(
                    "INSERT INTO plan_caps (plan, product, daily_max) VALUES (?1, ?2, ?3)
                     ON CONFLICT (plan, product) DO UPDATE SET daily_max = ?3",
                )?
                .execute(params![edit.name, product, *n as i64])?,
            None => tx
                .prepare_cached("DELETE FROM plan_caps WHERE plan = ?1 AND product = ?2")?
                .execute(params![edit.name, product])?,
        };
    }
    let plan = get(tx, &edit.name)?;
    if plan.caps.len() > CAPS_PER_PLAN_MAX {
        return Err(Error::invalid(
            "cap",
            format!("a plan caps at most {CAPS_PER_PLAN_MAX} products"),
        ));
    }
    Ok(plan)
}

/// Makes `name` the default plan (or, with `None`, names none).
pub(crate) fn set_default(tx: &Tx<'_>, name: Option<&str>, now: UnixMillis) -> Result<()> {
    if let Some(name) = name {
        get(tx, name)?;
    }
    tx.prepare_cached("UPDATE plans SET is_default = 0, updated_at = ?1 WHERE is_default = 1")?
        .execute([now])?;
    if let Some(name) = name {
        let changed = tx
            .prepare_cached("UPDATE plans SET is_default = 1, updated_at = ?2 WHERE name = ?1")?
            .execute(params![name, now])?;
        assert_eq!(changed, 1, "the plan was just read");
    }
    Ok(())
}

/// The default plan's name, if the operator named one.
pub(crate) fn default_plan(conn: &ReadOnly<'_>) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT name FROM plans WHERE is_default = 1")?
        .query_row([], |row| row.get(0))
        .optional()?)
}

/// A plan by name.
pub(crate) fn get(conn: &ReadOnly<'_>, name: &str) -> Result<Plan> {
    let row: Option<(String, i64, UnixMillis, UnixMillis)> = conn
        .prepare_cached(
            "SELECT name, is_default, created_at, updated_at FROM plans WHERE name = ?1",
        )?
        .query_row([name], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .optional()?;
    let (name, is_default, created_at, updated_at) = row.ok_or_else(|| Error::NotFound {
        what: "plan",
        id: name.to_owned(),
    })?;
    let mut caps = BTreeMap::new();
    let mut stmt =
        conn.prepare_cached("SELECT product, daily_max FROM plan_caps WHERE plan = ?1 LIMIT ?2")?;
    let rows = stmt.query_map(params![name, CAPS_PER_PLAN_MAX as i64 + 1], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
    })?;
    for row in rows {
        let (product, max) = row?;
        let max = u64::try_from(max).map_err(|_| Error::corrupt(format!("plan cap {max}")))?;
        caps.insert(product, max);
    }
    Ok(Plan {
        name,
        caps,
        is_default: is_default == 1,
        created_at,
        updated_at,
    })
}

/// Every plan by name, at most [`PLANS_LIST_MAX`].
pub(crate) fn list(conn: &ReadOnly<'_>) -> Result<Vec<Plan>> {
    let names: Vec<String> = conn
        .prepare_cached("SELECT name FROM plans ORDER BY name LIMIT ?1")?
        .query_map([PLANS_LIST_MAX as i64], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    names.iter().map(|name| get(conn, name)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_and_reset_at_the_next_midnight() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(DAY_MS - 1), 0);
        assert_eq!(day_of(DAY_MS), 1);
        assert_eq!(next_midnight(DAY_MS - 1), DAY_MS);
        assert_eq!(next_midnight(DAY_MS), 2 * DAY_MS);
        assert_eq!(day_of(-1), -1, "before the epoch still counts by days");
    }

    #[test]
    fn plan_names_are_checked() {
        assert!(check_plan_name("free").is_ok());
        assert!(check_plan_name("").is_err());
        assert!(check_plan_name(" free").is_err());
        assert!(check_plan_name(NO_PLAN).is_err());
        assert!(check_plan_name(&"p".repeat(PLAN_NAME_CHARS_MAX + 1)).is_err());
    }
}
