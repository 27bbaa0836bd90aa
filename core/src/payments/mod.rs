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
            TopUpStatus::Credited => "credited",
            TopUpStatus::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Option<TopUpStatus> {
        [
            TopUpStatus::Open,
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
    /// The rail (`stripe`).
    pub rail: String,
    /// Micro-credits it grants once paid.
    pub credits_micros: i64,
    /// What the payer pays, in the currency's minor unit (cents).
    pub amount_minor: i64,
    /// The currency (ISO 4217, lower case).
    pub currency: String,
    /// Where it stands.
    pub status: TopUpStatus,
    /// The rail's checkout id, once the rail answered.
    pub external_id: Option<String>,
    /// Where the payer pays, once the rail answered.
    pub checkout_url: Option<String>,
    /// When it was opened.
    pub created_at: UnixMillis,
    /// When it was credited.
    pub credited_at: Option<UnixMillis>,
}

/// What a verified rail event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventOutcome {
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

/// Opens a top-up of `credits_micros` for `amount_minor` of `currency`.
pub(crate) fn open(
    tx: &Tx<'_>,
    account_id: &str,
    rail: &str,
    credits_micros: i64,
    amount_minor: i64,
    currency: &str,
    now: UnixMillis,
) -> Result<TopUp> {
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
    };
    tx.prepare_cached(
        "INSERT INTO topups (id, account_id, rail, credits_micros, amount_minor, currency,
                             status, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'open', ?7)",
    )?
    .execute(params![
        topup.id,
        topup.account_id,
        topup.rail,
        topup.credits_micros,
        topup.amount_minor,
        topup.currency,
        topup.created_at,
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

/// Marks an open top-up failed: the rail refused to open it.
pub(crate) fn mark_failed(tx: &Tx<'_>, topup_id: &str) -> Result<()> {
    tx.prepare_cached("UPDATE topups SET status = 'failed' WHERE id = ?1 AND status = 'open'")?
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
                             status, external_id, checkout_url, created_at, credited_at";

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
        },
        status,
    ))
}

/// A top-up by id, or `not_found`.
pub(crate) fn get(conn: &ReadOnly<'_>, topup_id: &str) -> Result<TopUp> {
    let found = conn
        .prepare_cached(&format!("SELECT {TOPUP_COLUMNS} FROM topups WHERE id = ?1"))?
        .query_row([topup_id], from_row)
        .optional()?;
    let (mut topup, status) = found.ok_or_else(|| Error::NotFound {
        what: "top-up",
        id: topup_id.to_owned(),
    })?;
    topup.status = TopUpStatus::parse(&status).ok_or_else(|| Error::CorruptData {
        detail: format!("top-up {topup_id} has status {status}"),
    })?;
    Ok(topup)
}
