//! Money in through payment rails: top-ups and the rail events that credit
//! them. This module alone writes `topups` and `payment_events`; the grant
//! a paid top-up makes is the ledger's, composed by the gate in the same
//! write as the event's record.
//!
//! A top-up is opened (its row written) before the rail is called, so a
//! payment can always be matched to it; it is credited at most once, by
//! the grant `topup_<id>` and a conditional update of its status, and only
//! from a verified event. Every verified event's id is inserted in the same
//! transaction as its effect, so a replayed, retried or reordered event
//! credits nothing more. The rails' own protocol is in [`stripe`].

pub mod stripe;
pub mod x402;

use rusqlite::{params, OptionalExtension};

use crate::clock::UnixMillis;
use crate::error::{Error, Result};
use crate::store::{ReadOnly, Tx};

/// The prefix of a top-up's id.
pub const TOPUP_ID_PREFIX: &str = "top_";
/// The longest event id, checkout id or URL kept from a rail.
pub const RAIL_TEXT_CHARS_MAX: usize = 2_048;

/// Where a top-up stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopUpStatus {
    /// Opened; not paid (yet).
    Open,
    /// The rail was asked to settle it and has not said that it did: the
    /// payment may have moved, so it is settled again, never dropped.
    Settling,
    /// Paid and credited, once.
    Credited,
    /// The rail refused to open it; nothing can be paid.
    Failed,
}

impl TopUpStatus {
    /// Its stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TopUpStatus::Open => "open",
            TopUpStatus::Settling => "settling",
            TopUpStatus::Credited => "credited",
            TopUpStatus::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Option<TopUpStatus> {
        [
            TopUpStatus::Open,
            TopUpStatus::Settling,
            TopUpStatus::Credited,
            TopUpStatus::Failed,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }
}

/// A top-up as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopUp {
    /// Its id (`top_...`).
    pub id: String,
    /// The account it credits.
    pub account_id: String,
    /// The rail (`stripe`, `x402`).
    pub rail: String,
    /// Micro-credits it grants once paid.
    pub credits_micros: i64,
    /// What the payer pays, in the currency's minor unit (cents).
    pub amount_minor: i64,
    /// The currency (ISO 4217, lower case).
    pub currency: String,
    /// Where it stands.
    pub status: TopUpStatus,
    /// The rail's id for it: Stripe's checkout id once Stripe answered; an
    /// x402 payment's key (network, payer, nonce).
    pub external_id: Option<String>,
    /// Where the payer pays, once the rail answered.
    pub checkout_url: Option<String>,
    /// When it was opened.
    pub created_at: UnixMillis,
    /// When it was credited.
    pub credited_at: Option<UnixMillis>,
    /// What the rail said of the settlement (x402: the transaction, as
    /// JSON), once it did.
    pub settlement: Option<String>,
    /// Who started it: `payer` (a checkout or an x402 payment), `auto`
    /// (an auto top-up) or `saved` (a charge of the saved method asked for).
    pub origin: String,
    /// Micro-credits taken back from the wallet after a refund or dispute.
    pub reversed_micros: i64,
    /// Micro-credits a refund or dispute should have taken back but the
    /// wallet did not hold (and was not allowed to go below zero for):
    /// the operator's to recover.
    pub unrecovered_micros: i64,
}

/// What a verified rail event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventOutcome {
    /// A refund or dispute of a credited top-up took credits back.
    Reversed {
        /// The top-up.
        topup_id: String,
        /// Micro-credits taken back now.
        reversed_micros: i64,
        /// Micro-credits the wallet did not hold (not allowed below zero):
        /// recorded on the top-up for the operator.
        unrecovered_micros: i64,
    },
    /// It paid a top-up: its credits were granted now.
    Credited {
        /// The top-up.
        topup_id: String,
        /// The grant's transfer id.
        transfer_id: String,
    },
    /// Its id was seen before: nothing more was done.
    Duplicate,
    /// It was recorded and changed nothing (`reason` says why: a kind we do
    /// not act on, a top-up already credited, an amount that does not
    /// match, a refund for the operator to handle).
    Recorded {
        /// Why nothing moved.
        reason: String,
    },
}

/// The parts of a top-up to open.
pub(crate) struct NewTopUp<'a> {
    pub account_id: &'a str,
    pub rail: &'a str,
    pub credits_micros: i64,
    pub amount_minor: i64,
    pub currency: &'a str,
    /// `payer`, `auto` or `saved`.
    pub origin: &'a str,
}

/// Opens a top-up of `credits_micros` for `amount_minor` of `currency`.
pub(crate) fn open(tx: &Tx<'_>, new: &NewTopUp<'_>, now: UnixMillis) -> Result<TopUp> {
    let NewTopUp {
        account_id,
        rail,
        credits_micros,
        amount_minor,
        currency,
        origin,
    } = *new;
    let topup = TopUp {
        id: tx.new_sortable_id(TOPUP_ID_PREFIX, now),
        account_id: account_id.to_owned(),
        rail: rail.to_owned(),
        credits_micros,
        amount_minor,
        currency: currency.to_owned(),
        status: TopUpStatus::Open,
        external_id: None,
        checkout_url: None,
        created_at: now,
        credited_at: None,
        settlement: None,
        origin: origin.to_owned(),
        reversed_micros: 0,
        unrecovered_micros: 0,
    };
    tx.prepare_cached(
        "INSERT INTO topups (id, account_id, rail, credits_micros, amount_minor, currency,
                             status, created_at, origin)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'open', ?7, ?8)",
    )?
    .execute(params![
        topup.id,
        topup.account_id,
        topup.rail,
        topup.credits_micros,
        topup.amount_minor,
        topup.currency,
        topup.created_at,
        topup.origin,
    ])?;
    Ok(topup)
}

/// Records where an open top-up is paid (the rail's checkout id and URL).
pub(crate) fn attach_checkout(
    tx: &Tx<'_>,
    topup_id: &str,
    external_id: &str,
    checkout_url: &str,
) -> Result<TopUp> {
    tx.prepare_cached(
        "UPDATE topups SET external_id = ?2, checkout_url = ?3
          WHERE id = ?1 AND status = 'open'",
    )?
    .execute(params![topup_id, external_id, checkout_url])?;
    get(tx, topup_id)
}

/// Marks an uncredited top-up failed: the rail refused to open or settle
/// it.
pub(crate) fn mark_failed(tx: &Tx<'_>, topup_id: &str) -> Result<()> {
    tx.prepare_cached(
        "UPDATE topups SET status = 'failed' WHERE id = ?1 AND status IN ('open', 'settling')",
    )?
    .execute([topup_id])?;
    Ok(())
}

/// Marks a top-up credited by `transfer_id`; `false` (nothing changed) when
/// it was credited already. The one place a top-up becomes credited.
pub(crate) fn mark_credited(
    tx: &Tx<'_>,
    topup_id: &str,
    transfer_id: &str,
    now: UnixMillis,
) -> Result<bool> {
    let changed = tx
        .prepare_cached(
            "UPDATE topups SET status = 'credited', transfer_id = ?2, credited_at = ?3
              WHERE id = ?1 AND status != 'credited'",
        )?
        .execute(params![topup_id, transfer_id, now])?;
    Ok(changed == 1)
}

/// Inserts a verified event's id; `false` when it was seen before (and so
/// must change nothing more).
pub(crate) fn first_sighting(
    tx: &Tx<'_>,
    rail: &str,
    event_id: &str,
    kind: &str,
    now: UnixMillis,
) -> Result<bool> {
    let inserted = tx
        .prepare_cached(
            "INSERT INTO payment_events (rail, event_id, kind, outcome, received_at)
             VALUES (?1, ?2, ?3, 'received', ?4)
             ON CONFLICT (rail, event_id) DO NOTHING",
        )?
        .execute(params![rail, event_id, kind, now])?;
    Ok(inserted == 1)
}

/// Records what an event did.
pub(crate) fn set_outcome(
    tx: &Tx<'_>,
    rail: &str,
    event_id: &str,
    outcome: &str,
    topup_id: Option<&str>,
) -> Result<()> {
    tx.prepare_cached(
        "UPDATE payment_events SET outcome = ?3, topup_id = ?4 WHERE rail = ?1 AND event_id = ?2",
    )?
    .execute(params![rail, event_id, outcome, topup_id])?;
    Ok(())
}

const TOPUP_COLUMNS: &str = "id, account_id, rail, credits_micros, amount_minor, currency, \
                             status, external_id, checkout_url, created_at, credited_at, \
                             settlement, reversed_micros, unrecovered_micros, origin";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(TopUp, String)> {
    let status: String = row.get(6)?;
    Ok((
        TopUp {
            id: row.get(0)?,
            account_id: row.get(1)?,
            rail: row.get(2)?,
            credits_micros: row.get(3)?,
            amount_minor: row.get(4)?,
            currency: row.get(5)?,
            status: TopUpStatus::Open,
            external_id: row.get(7)?,
            checkout_url: row.get(8)?,
            created_at: row.get(9)?,
            credited_at: row.get(10)?,
            settlement: row.get(11)?,
            reversed_micros: row.get(12)?,
            unrecovered_micros: row.get(13)?,
            origin: row.get(14)?,
        },
        status,
    ))
}

fn decoded((mut topup, status): (TopUp, String)) -> Result<TopUp> {
    topup.status = TopUpStatus::parse(&status).ok_or_else(|| Error::CorruptData {
        detail: format!("top-up {} has status {status}", topup.id),
    })?;
    Ok(topup)
}

/// A top-up by id, or `not_found`.
pub(crate) fn get(conn: &ReadOnly<'_>, topup_id: &str) -> Result<TopUp> {
    let found = conn
        .prepare_cached(&format!("SELECT {TOPUP_COLUMNS} FROM topups WHERE id = ?1"))?
        .query_row([topup_id], from_row)
        .optional()?;
    decoded(found.ok_or_else(|| Error::NotFound {
        what: "top-up",
        id: topup_id.to_owned(),
    })?)
}

/// The top-up a rail knows by `external_id`, if any.
pub(crate) fn by_external_id(conn: &ReadOnly<'_>, external_id: &str) -> Result<Option<TopUp>> {
    conn.prepare_cached(&format!(
        "SELECT {TOPUP_COLUMNS} FROM topups WHERE external_id = ?1"
    ))?
    .query_row([external_id], from_row)
    .optional()?
    .map(decoded)
    .transpose()
}

/// The top-up a payment (Stripe's payment intent) paid, if any.
pub(crate) fn by_payment_ref(conn: &ReadOnly<'_>, payment_ref: &str) -> Result<Option<TopUp>> {
    conn.prepare_cached(&format!(
        "SELECT {TOPUP_COLUMNS} FROM topups WHERE payment_ref = ?1"
    ))?
    .query_row([payment_ref], from_row)
    .optional()?
    .map(decoded)
    .transpose()
}

/// Records the payment that paid a top-up.
pub(crate) fn set_payment_ref(tx: &Tx<'_>, topup_id: &str, payment_ref: &str) -> Result<()> {
    tx.prepare_cached("UPDATE topups SET payment_ref = ?2 WHERE id = ?1")?
        .execute(params![topup_id, payment_ref])?;
    Ok(())
}

/// Charges of saved methods (`auto`, `saved`) opened from `not_before` to
/// before `before` and never answered by the rail (no payment id yet),
/// oldest first, at most `limit`: to be charged (again, under the same
/// idempotency key).
pub(crate) fn unanswered_charges(
    conn: &ReadOnly<'_>,
    not_before: UnixMillis,
    before: UnixMillis,
    limit: usize,
) -> Result<Vec<TopUp>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {TOPUP_COLUMNS} FROM topups
          WHERE status = 'open' AND origin != 'payer' AND external_id IS NULL
            AND created_at < ?2 AND created_at >= ?1
          ORDER BY created_at LIMIT ?3"
    ))?;
    let rows = statement.query_map(params![not_before, before, limit as i64], from_row)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(decoded(row?)?);
    }
    Ok(out)
}

/// Records the rail's payment for a charge (its id is both the top-up's
/// external id and the payment refunds name).
pub(crate) fn attach_payment_intent(tx: &Tx<'_>, topup_id: &str, payment: &str) -> Result<()> {
    tx.prepare_cached(
        "UPDATE topups SET external_id = ?2, payment_ref = ?2 WHERE id = ?1 AND external_id IS NULL",
    )?
    .execute(params![topup_id, payment])?;
    Ok(())
}

/// Adds what a refund or dispute took back (`reversed`) and could not
/// (`unrecovered`) to a top-up.
pub(crate) fn record_reversal(
    tx: &Tx<'_>,
    topup_id: &str,
    reversed: i64,
    unrecovered: i64,
) -> Result<()> {
    tx.prepare_cached(
        "UPDATE topups SET reversed_micros = reversed_micros + ?2,
                           unrecovered_micros = unrecovered_micros + ?3
          WHERE id = ?1 AND status = 'credited'",
    )?
    .execute(params![topup_id, reversed, unrecovered])?;
    Ok(())
}

/// Keeps what a rail needs to settle an open top-up again (its id for the
/// payment and the payment itself).
pub(crate) fn attach_payment(
    tx: &Tx<'_>,
    topup_id: &str,
    external_id: &str,
    payload: &str,
) -> Result<()> {
    tx.prepare_cached(
        "UPDATE topups SET external_id = ?2, rail_payload = ?3 WHERE id = ?1 AND status = 'open'",
    )?
    .execute(params![topup_id, external_id, payload])?;
    Ok(())
}

/// Marks an open top-up as being settled, before the rail is asked.
pub(crate) fn mark_settling(tx: &Tx<'_>, topup_id: &str) -> Result<()> {
    tx.prepare_cached("UPDATE topups SET status = 'settling' WHERE id = ?1 AND status = 'open'")?
        .execute([topup_id])?;
    Ok(())
}

/// Records what the rail said of a settlement.
pub(crate) fn record_settlement(tx: &Tx<'_>, topup_id: &str, settlement: &str) -> Result<()> {
    tx.prepare_cached("UPDATE topups SET settlement = ?2 WHERE id = ?1")?
        .execute(params![topup_id, settlement])?;
    Ok(())
}

/// Top-ups of `rail` left settling, opened from `not_before` to before
/// `before`, oldest first, at most `limit`, with their kept payments.
pub(crate) fn settling(
    conn: &ReadOnly<'_>,
    rail: &str,
    not_before: UnixMillis,
    before: UnixMillis,
    limit: usize,
) -> Result<Vec<(TopUp, String)>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {TOPUP_COLUMNS}, rail_payload FROM topups
          WHERE status = 'settling' AND created_at < ?2 AND created_at >= ?3 AND rail = ?1
          ORDER BY created_at LIMIT ?4"
    ))?;
    let rows = statement.query_map(params![rail, before, not_before, limit as i64], |row| {
        Ok((from_row(row)?, row.get::<_, Option<String>>(15)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (topup, payload) = row?;
        out.push((decoded(topup)?, payload.unwrap_or_default()));
    }
    Ok(out)
}

/// The top-ups of an account (or every account), newest first, at most
/// `limit`.
pub(crate) fn list(
    conn: &ReadOnly<'_>,
    account_id: Option<&str>,
    limit: usize,
) -> Result<Vec<TopUp>> {
    // Two statements, so each reads an index (`topups_account`, the key).
    let mut statement = match account_id {
        Some(_) => conn.prepare_cached(&format!(
            "SELECT {TOPUP_COLUMNS} FROM topups WHERE account_id = ?1
              ORDER BY created_at DESC LIMIT ?2"
        ))?,
        None => conn.prepare_cached(&format!(
            "SELECT {TOPUP_COLUMNS} FROM topups WHERE ?1 IS NULL
              ORDER BY rowid DESC LIMIT ?2"
        ))?,
    };
    let rows = statement.query_map(params![account_id, limit as i64], from_row)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(decoded(row?)?);
    }
    Ok(out)
}
