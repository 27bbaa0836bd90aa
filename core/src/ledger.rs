//! The double-entry credit ledger, after TigerBeetle's accounts and
//! transfers. This module alone writes `ledger_accounts`, `transfers`,
//! `open_holds`, and the promotional credits' `grant_buckets` and
//! `hold_draws`; everything else asks it.
//!
//! Invariants it keeps (and `verify` checks from the outside):
//! - every movement is an immutable transfer between two ledger accounts, and
//!   the materialised balances change in the same transaction;
//! - debits equal credits, posted and pending separately;
//! - a wallet never goes below zero unless flagged: the check and the debit
//!   are one conditional `UPDATE ... WHERE available >= amount`;
//! - a hold resolves at most once (a unique index), and a capture never
//!   exceeds its hold or arrives at or after its deadline;
//! - a transfer id replayed with the same fields returns the first transfer;
//!   with other fields it is [`Error::ExistsWithDifferentFields`].
//!
//! Functions here take an open write transaction and `now`; the facade
//! composes them. Amounts are micro-credits.
//!
//! Three identifiers, three names:
//! - an **account id** (`account_id: &str`, `acct_…`): the customer account
//!   of `accounts.rs`, the only one callers pass in;
//! - a **ledger code** (`&str`: `wallet:<account id>`, [`GRANTS_CODE`],
//!   [`REVENUE_CODE`]): the stable name of a ledger account (a customer's
//!   wallet or a system account), what a [`Transfer`] shows as
//!   `debit_code`/`credit_code`;
//! - a **ledger row** (`LedgerRow`, an `i64`): the `ledger_accounts` row id
//!   the `transfers` columns point at; internal, never handed out.

use rusqlite::{params, OptionalExtension};

use crate::store::{ReadOnly, Tx};
use sha2::{Digest, Sha256};

use crate::clock::UnixMillis;
use crate::error::{Error, Result};
use crate::ids::validate_caller_id;
use crate::money::{AMOUNT_MICROS_MAX, BALANCE_MICROS_MAX};

/// The ledger code of the system account that funds grants (may go
/// negative: it is the system's equity side).
pub const GRANTS_CODE: &str = "system:grants";
/// The ledger code of the system account that receives holds (pending) and
/// captures (posted).
pub const REVENUE_CODE: &str = "system:revenue";

/// The row id of a `ledger_accounts` row, as the `transfers` columns
/// `debit_account` and `credit_account` store it. Not an account id and not
/// a ledger code: it never leaves this module but through the chain hash.
pub(crate) type LedgerRow = i64;

/// The longest memo kept on a transfer.
pub const MEMO_CHARS_MAX: usize = 512;
/// Holds the expiry sweep resolves in one call, at most.
pub const EXPIRE_BATCH_MAX: usize = 256;
/// Entries in one page of history, at most.
pub const HISTORY_PAGE_MAX: usize = 200;

/// What a transfer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferKind {
    /// A top-up: `system:grants` -> wallet, posted.
    Grant,
    /// A reservation: wallet -> `system:revenue`, pending.
    Hold,
    /// Posts all or part of a hold; the rest returns to the wallet.
    Capture,
    /// Voids a hold at the caller's request.
    Release,
    /// Voids a hold whose deadline passed.
    Expire,
    /// Reverses (part of) a capture: `system:revenue` -> wallet, posted.
    Refund,
    /// Takes back (part of) a grant: wallet -> `system:grants`, posted (a
    /// refunded or disputed top-up).
    Reversal,
}

impl TransferKind {
    /// The kind's name in the database and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            TransferKind::Grant => "grant",
            TransferKind::Hold => "hold",
            TransferKind::Capture => "capture",
            TransferKind::Release => "release",
            TransferKind::Expire => "expire",
            TransferKind::Refund => "refund",
            TransferKind::Reversal => "reversal",
        }
    }

    fn parse(name: &str) -> Option<TransferKind> {
        Some(match name {
            "grant" => TransferKind::Grant,
            "hold" => TransferKind::Hold,
            "capture" => TransferKind::Capture,
            "release" => TransferKind::Release,
            "expire" => TransferKind::Expire,
            "refund" => TransferKind::Refund,
            "reversal" => TransferKind::Reversal,
            _ => return None,
        })
    }
}

/// One immutable transfer, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// Position in the ledger (1, 2, 3, ... with no gaps).
    pub seq: i64,
    /// The caller-chosen unique id.
    pub id: String,
    /// What it does.
    pub kind: TransferKind,
    /// The ledger code of the debited ledger account (`wallet:<account id>`
    /// or `system:*`).
    pub debit_code: String,
    /// The ledger code of the credited ledger account.
    pub credit_code: String,
    /// Micro-credits moved (for a release or expiry: the voided hold amount).
    pub amount: i64,
    /// For captures, releases and expiries: the hold resolved.
    pub pending_id: Option<String>,
    /// For refunds: the capture reversed.
    pub refund_of: Option<String>,
    /// For holds: when the hold expires, if ever.
    pub deadline: Option<UnixMillis>,
    /// Free text from the caller.
    pub memo: String,
    /// When it was recorded.
    pub created_at: UnixMillis,
}

/// A transfer and whether this call created it or replayed an earlier one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferOutcome {
    /// The transfer (the first one, on a replay).
    pub transfer: Transfer,
    /// True if the id existed with the same fields and nothing moved now.
    pub replayed: bool,
}

/// A wallet's balance in micro-credits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Balance {
    /// What may be spent or held now: `posted - pending`.
    pub available: i64,
    /// Reserved by open holds.
    pub pending: i64,
    /// Settled: credits posted minus debits posted.
    pub posted: i64,
}

/// The ledger code of an account's wallet.
pub fn wallet_code(account_id: &str) -> String {
    format!("wallet:{account_id}")
}

/// Creates the wallet of a new account.
pub(crate) fn create_wallet(
    tx: &Tx<'_>,
    account_id: &str,
    allow_negative: bool,
    now: UnixMillis,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO ledger_accounts (code, kind, account_id, allow_negative, created_at)
         VALUES (?1, 'wallet', ?2, ?3, ?4)",
    )?
    .execute(params![
        wallet_code(account_id),
        account_id,
        allow_negative,
        now
    ])?;
    Ok(())
}

/// Sets whether an account's wallet may go below zero (postpaid; and so
/// whether a refund or dispute of a top-up may take it below zero). A
/// wallet below zero cannot be made prepaid until it is not.
pub(crate) fn set_allow_negative(tx: &Tx<'_>, account_id: &str, allow: bool) -> Result<()> {
    let wallet = wallet_row(tx, account_id)?;
    let available: i64 = tx
        .prepare_cached(
            "SELECT credits_posted - debits_posted - debits_pending FROM ledger_accounts
              WHERE id = ?1",
        )?
        .query_row([wallet], |row| row.get(0))?;
    if !allow && available < 0 {
        return Err(Error::invalid(
            "allow_negative",
            format!(
                "the wallet is {} credits below zero: grant credits first",
                crate::money::to_credits(-available)
            ),
        ));
    }
    tx.prepare_cached("UPDATE ledger_accounts SET allow_negative = ?2 WHERE id = ?1")?
        .execute(params![wallet, allow])?;
    Ok(())
}

/// A transfer about to be written.
struct NewTransfer<'a> {
    id: &'a str,
    kind: TransferKind,
    debit: LedgerRow,
    credit: LedgerRow,
    // The two rows' ledger codes, known to every caller, so that the
    // written transfer is returned without reading it back.
    debit_code: String,
    credit_code: String,
    amount: i64,
    pending_id: Option<&'a str>,
    refund_of: Option<&'a str>,
    deadline: Option<UnixMillis>,
    memo: &'a str,
}

/// Credits an account's wallet from `system:grants`.
pub(crate) fn grant(
    tx: &Tx<'_>,
    id: &str,
    account_id: &str,
    amount: i64,
    memo: &str,
    now: UnixMillis,
) -> Result<TransferOutcome> {
    validate(id, amount, memo)?;
    let wallet = wallet_row(tx, account_id)?;
    let new = NewTransfer {
        id,
        kind: TransferKind::Grant,
        debit: row_of_code(tx, GRANTS_CODE)?,
        credit: wallet,
        debit_code: GRANTS_CODE.to_owned(),
        credit_code: wallet_code(account_id),
        amount,
        pending_id: None,
        refund_of: None,
        deadline: None,
        memo,
    };
    if let Some(outcome) = replay(tx, &new)? {
        return Ok(outcome);
    }
    post(tx, new.debit, new.credit, amount)?;
    insert(tx, &new, now)
}

/// Reserves `amount` of a wallet until captured, released or expired at
/// `deadline`. Refused with [`Error::InsufficientCredits`] if the wallet's
/// available balance (open holds included) does not cover it.
pub(crate) fn hold(
    tx: &Tx<'_>,
    id: &str,
    account_id: &str,
    amount: i64,
    deadline: Option<UnixMillis>,
    memo: &str,
    now: UnixMillis,
) -> Result<TransferOutcome> {
    let hold = NewHold {
        id,
        account_id,
        amount,
        deadline,
        memo,
    };
    hold_checked(tx, &hold, now, true)
}

/// [`hold`] for an id minted in the calling transaction (a new job's
/// `hold:<job id>`), which no earlier transfer can have: the replay lookup
/// is skipped, and the transfers' unique id still refuses a collision.
pub(crate) fn hold_minted(
    tx: &Tx<'_>,
    hold: &NewHold<'_>,
    now: UnixMillis,
) -> Result<TransferOutcome> {
    hold_checked(tx, hold, now, false)
}

/// A hold's arguments, as [`hold`] takes them.
pub(crate) struct NewHold<'a> {
    pub(crate) id: &'a str,
    pub(crate) account_id: &'a str,
    pub(crate) amount: i64,
    pub(crate) deadline: Option<UnixMillis>,
    pub(crate) memo: &'a str,
}

fn hold_checked(
    tx: &Tx<'_>,
    hold: &NewHold<'_>,
    now: UnixMillis,
    may_replay: bool,
) -> Result<TransferOutcome> {
    let &NewHold {
        id,
        account_id,
        amount,
        deadline,
        memo,
    } = hold;
    validate(id, amount, memo)?;
    let wallet = wallet_row(tx, account_id)?;
    let new = NewTransfer {
        id,
        kind: TransferKind::Hold,
        debit: wallet,
        credit: row_of_code(tx, REVENUE_CODE)?,
        debit_code: wallet_code(account_id),
        credit_code: REVENUE_CODE.to_owned(),
        amount,
        pending_id: None,
        refund_of: None,
        deadline,
        memo,
    };
    if may_replay {
        if let Some(outcome) = replay(tx, &new)? {
            return Ok(outcome);
        }
    }
    // After the replay check: a retried hold whose deadline has since
    // passed still returns its first result.
    if deadline.is_some_and(|deadline| deadline <= now) {
        return Err(Error::invalid("deadline", "must be in the future"));
    }
    // Promotional credits past their expiry are taken back first, so a
    // hold never spends them, whenever the sweep last ran; the live ones
    // are what it draws from (one read of the wallet's buckets).
    let live = expire_buckets_of(tx, wallet, now)?;
    debit_if_covered(tx, RESERVE_SQL, wallet, amount)?;
    let changed = tx
        .prepare_cached(
            "UPDATE ledger_accounts SET credits_pending = credits_pending + ?2 WHERE id = ?1",
        )?
        .execute(params![new.credit, amount])?;
    assert_eq!(changed, 1, "a hold credits exactly one ledger account");
    let outcome = insert(tx, &new, now)?;
    tx.prepare_cached(
        "INSERT INTO open_holds (transfer_id, wallet, amount, deadline) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![id, wallet, amount, deadline])?;
    draw_from_buckets(tx, live, id, amount)?;
    Ok(outcome)
}

/// Posts `amount` of hold `hold_id` (at most the hold); the rest of the
/// hold returns to the wallet. Refused at or after the hold's deadline.
pub(crate) fn capture(
    tx: &Tx<'_>,
    id: &str,
    hold_id: &str,
    amount: i64,
    now: UnixMillis,
) -> Result<TransferOutcome> {
    validate(id, amount, "")?;
    let hold = load_hold(tx, hold_id, "capture")?;
    let new = NewTransfer {
        id,
        kind: TransferKind::Capture,
        debit: hold.debit,
        credit: hold.credit,
        debit_code: hold.debit_code.clone(),
        credit_code: hold.credit_code.clone(),
        amount,
        pending_id: Some(hold_id),
        refund_of: None,
        deadline: None,
        memo: "",
    };
    if let Some(outcome) = replay(tx, &new)? {
        return Ok(outcome);
    }
    ensure_open(tx, hold_id)?;
    if hold.deadline.is_some_and(|deadline| now >= deadline) {
        return Err(Error::HoldExpired {
            hold_id: hold_id.to_owned(),
        });
    }
    if amount > hold.amount {
        return Err(Error::CaptureExceedsHold {
            requested_micros: amount,
            held_micros: hold.amount,
        });
    }
    resolve_pending(tx, &hold, hold_id)?;
    settle_draws(tx, hold_id, amount)?;
    post(tx, hold.debit, hold.credit, amount)?;
    insert(tx, &new, now)
}

/// Voids hold `hold_id`: the whole amount returns to the wallet.
pub(crate) fn release(
    tx: &Tx<'_>,
    id: &str,
    hold_id: &str,
    now: UnixMillis,
) -> Result<TransferOutcome> {
    void(tx, id, hold_id, TransferKind::Release, now)
}

/// Expires up to [`EXPIRE_BATCH_MAX`] open holds whose deadline is at or
/// before `now`, each with the deterministic id `expire:<hold id>`.
pub(crate) fn expire_due(tx: &Tx<'_>, now: UnixMillis) -> Result<Vec<TransferOutcome>> {
    let due: Vec<String> = {
        let mut stmt = tx.prepare_cached(
            "SELECT transfer_id FROM open_holds
             WHERE deadline IS NOT NULL AND deadline <= ?1
             ORDER BY deadline, transfer_id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![now, EXPIRE_BATCH_MAX as i64], |row| row.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    due.iter()
        .map(|hold_id| {
            let id = format!("expire:{hold_id}");
            void(tx, &id, hold_id, TransferKind::Expire, now)
        })
        .collect()
}

/// Reverses `amount` of capture `charge_id` back to the wallet it came
/// from; all refunds of one capture never exceed it.
pub(crate) fn refund(
    tx: &Tx<'_>,
    id: &str,
    charge_id: &str,
    amount: i64,
    memo: &str,
    now: UnixMillis,
) -> Result<TransferOutcome> {
    validate(id, amount, memo)?;
    let charge = find_transfer(tx, charge_id)?.ok_or_else(|| Error::NotFound {
        what: "transfer",
        id: charge_id.to_owned(),
    })?;
    if charge.kind != TransferKind::Capture {
        return Err(Error::WrongTransferKind {
            id: charge_id.to_owned(),
            kind: charge.kind.as_str().to_owned(),
            operation: "refund",
        });
    }
    let new = NewTransfer {
        id,
        kind: TransferKind::Refund,
        debit: row_of_code(tx, &charge.credit_code)?,
        credit: row_of_code(tx, &charge.debit_code)?,
        debit_code: charge.credit_code.clone(),
        credit_code: charge.debit_code.clone(),
        amount,
        pending_id: None,
        refund_of: Some(charge_id),
        deadline: None,
        memo,
    };
    if let Some(outcome) = replay(tx, &new)? {
        return Ok(outcome);
    }
    let refunded: i64 = tx
        .prepare_cached("SELECT coalesce(sum(amount), 0) FROM transfers WHERE refund_of = ?1")?
        .query_row([charge_id], |row| row.get(0))?;
    let refundable = charge.amount - refunded;
    if amount > refundable {
        return Err(Error::RefundExceedsCharge {
            requested_micros: amount,
            refundable_micros: refundable,
        });
    }
    post(tx, new.debit, new.credit, amount)?;
    insert(tx, &new, now)
}

/// Takes back up to `amount` of grant `grant_id` from the wallet it
/// credited; all reversals of one grant never exceed it. A wallet flagged
/// `allow_negative` gives the whole amount, below zero if need be; any
/// other gives at most what is available, and `Ok(None)` means nothing was
/// there. Returns the transfer posted (its amount may be less than asked).
pub(crate) fn reverse_grant(
    tx: &Tx<'_>,
    id: &str,
    grant_id: &str,
    amount: i64,
    memo: &str,
    now: UnixMillis,
) -> Result<Option<TransferOutcome>> {
    validate(id, amount, memo)?;
    if let Some(existing) = find_transfer(tx, id)? {
        return Ok(Some(TransferOutcome {
            transfer: existing,
            replayed: true,
        }));
    }
    let grant = find_transfer(tx, grant_id)?.ok_or_else(|| Error::NotFound {
        what: "transfer",
        id: grant_id.to_owned(),
    })?;
    let promotional: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM grant_buckets WHERE grant_id = ?1)")?
        .query_row([grant_id], |row| row.get(0))?;
    // A promotional grant is taken back only by its expiry.
    if grant.kind != TransferKind::Grant || promotional {
        return Err(Error::WrongTransferKind {
            id: grant_id.to_owned(),
            kind: grant.kind.as_str().to_owned(),
            operation: "reversal",
        });
    }
    let wallet = row_of_code(tx, &grant.credit_code)?;
    let reversed: i64 = tx
        .prepare_cached("SELECT coalesce(sum(amount), 0) FROM transfers WHERE refund_of = ?1")?
        .query_row([grant_id], |row| row.get(0))?;
    let (allow_negative, available): (bool, i64) = tx
        .prepare_cached(
            "SELECT allow_negative, credits_posted - debits_posted - debits_pending
               FROM ledger_accounts WHERE id = ?1",
        )?
        .query_row([wallet], |row| Ok((row.get(0)?, row.get(1)?)))?;
    let mut taken = amount.min(grant.amount - reversed);
    if !allow_negative {
        // Only paid credits: promotional ones are not what was refunded.
        let paid = available - promotional_available(tx, wallet)?;
        taken = taken.min(paid.max(0));
    }
    if taken <= 0 {
        return Ok(None);
    }
    let new = NewTransfer {
        id,
        kind: TransferKind::Reversal,
        debit: wallet,
        credit: row_of_code(tx, GRANTS_CODE)?,
        debit_code: grant.credit_code.clone(),
        credit_code: GRANTS_CODE.to_owned(),
        amount: taken,
        pending_id: None,
        refund_of: Some(grant_id),
        deadline: None,
        memo,
    };
    post(tx, new.debit, new.credit, taken)?;
    insert(tx, &new, now).map(Some)
}

/// Grants `amount` of promotional credits to an account's wallet, to be
/// spent before paid ones and taken back at `expires_at`: a grant and its
/// bucket. A replay with another expiry is
/// [`Error::ExistsWithDifferentFields`].
pub(crate) fn grant_expiring(
    tx: &Tx<'_>,
    id: &str,
    account_id: &str,
    amount: i64,
    expires_at: UnixMillis,
    memo: &str,
    now: UnixMillis,
) -> Result<TransferOutcome> {
    // A replay answers the first grant whenever it comes (its expiry may
    // have passed since); only a new grant must expire in the future.
    if expires_at <= now && find_transfer(tx, id)?.is_none() {
        return Err(Error::invalid("expires_at", "must be in the future"));
    }
    let outcome = grant(tx, id, account_id, amount, memo, now)?;
    if outcome.replayed {
        let kept: Option<UnixMillis> = tx
            .prepare_cached("SELECT expires_at FROM grant_buckets WHERE grant_id = ?1")?
            .query_row([id], |row| row.get(0))
            .optional()?;
        if kept != Some(expires_at) {
            return Err(Error::ExistsWithDifferentFields {
                id: id.to_owned(),
                field: "expires_at",
            });
        }
        return Ok(outcome);
    }
    tx.prepare_cached(
        "INSERT INTO grant_buckets (grant_id, wallet, expires_at, amount, available)
         VALUES (?1, ?2, ?3, ?4, ?4)",
    )?
    .execute(params![id, wallet_row(tx, account_id)?, expires_at, amount])?;
    Ok(outcome)
}

/// A wallet's promotional credits not held or spent.
fn promotional_available(tx: &Tx<'_>, wallet: LedgerRow) -> Result<i64> {
    Ok(tx
        .prepare_cached(
            "SELECT coalesce(sum(available), 0) FROM grant_buckets
              WHERE wallet = ?1 AND (available > 0 OR held > 0)",
        )?
        .query_row([wallet], |row| row.get(0))?)
}

/// Takes back what is left of a bucket by a reversal of its grant.
fn expire_bucket(
    tx: &Tx<'_>,
    grant_id: &str,
    wallet: LedgerRow,
    left: i64,
    expired_before: i64,
    now: UnixMillis,
) -> Result<()> {
    let id = format!("expiry:{grant_id}:{expired_before}");
    let new = NewTransfer {
        id: &id,
        kind: TransferKind::Reversal,
        debit: wallet,
        credit: row_of_code(tx, GRANTS_CODE)?,
        debit_code: code_of_row(tx, wallet)?,
        credit_code: GRANTS_CODE.to_owned(),
        amount: left,
        pending_id: None,
        refund_of: Some(grant_id),
        deadline: None,
        memo: "promotional credits expired",
    };
    post(tx, new.debit, new.credit, left)?;
    insert(tx, &new, now)?;
    let changed = tx
        .prepare_cached(
            "UPDATE grant_buckets SET available = available - ?2, expired = expired + ?2
              WHERE grant_id = ?1 AND available = ?2",
        )?
        .execute(params![grant_id, left])?;
    assert_eq!(changed, 1, "a bucket expires what it has left");
    Ok(())
}

/// Takes back the expired buckets of one wallet; returns its live ones
/// (grant id, available), soonest expiring first.
fn expire_buckets_of(
    tx: &Tx<'_>,
    wallet: LedgerRow,
    now: UnixMillis,
) -> Result<Vec<(String, i64)>> {
    let buckets: Vec<(String, i64, i64, UnixMillis)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT grant_id, available, expired, expires_at FROM grant_buckets
              WHERE wallet = ?1 AND (available > 0 OR held > 0) AND available > 0
              ORDER BY expires_at, grant_id",
        )?;
        let rows = stmt.query_map([wallet], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut live = Vec::with_capacity(buckets.len());
    for (grant_id, left, expired, expires_at) in buckets {
        if expires_at <= now {
            expire_bucket(tx, &grant_id, wallet, left, expired, now)?;
        } else {
            live.push((grant_id, left));
        }
    }
    Ok(live)
}

/// Takes back up to [`EXPIRE_BATCH_MAX`] expired buckets of any wallet;
/// returns how many.
pub(crate) fn expire_grants_due(tx: &Tx<'_>, now: UnixMillis) -> Result<usize> {
    let due: Vec<(String, LedgerRow, i64, i64)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT grant_id, wallet, available, expired FROM grant_buckets
              WHERE available > 0 AND expires_at <= ?1
              ORDER BY expires_at, grant_id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![now, EXPIRE_BATCH_MAX as i64], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for (grant_id, wallet, left, expired) in &due {
        expire_bucket(tx, grant_id, *wallet, *left, *expired, now)?;
    }
    Ok(due.len())
}

/// Draws a new hold of `amount` from a wallet's `live` buckets (soonest
/// expiring first); what they do not cover is paid credits.
fn draw_from_buckets(
    tx: &Tx<'_>,
    live: Vec<(String, i64)>,
    hold_id: &str,
    amount: i64,
) -> Result<()> {
    let buckets = live;
    let mut need = amount;
    for (grant_id, available) in buckets {
        if need == 0 {
            break;
        }
        let take = need.min(available);
        need -= take;
        tx.prepare_cached(
            "UPDATE grant_buckets SET available = available - ?2, held = held + ?2
              WHERE grant_id = ?1",
        )?
        .execute(params![grant_id, take])?;
        tx.prepare_cached(
            "INSERT INTO hold_draws (hold_id, grant_id, amount) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![hold_id, grant_id, take])?;
    }
    Ok(())
}

/// Resolves a hold's draws: `spent` micro-credits of them are spent
/// (soonest-expiring bucket first), the rest returns to the buckets they
/// came from.
fn settle_draws(tx: &Tx<'_>, hold_id: &str, spent: i64) -> Result<()> {
    let draws: Vec<(String, i64)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT d.grant_id, d.amount FROM hold_draws d
               JOIN grant_buckets b ON b.grant_id = d.grant_id
              WHERE d.hold_id = ?1
              ORDER BY b.expires_at, b.grant_id",
        )?;
        let rows = stmt.query_map([hold_id], |row| Ok((row.get(0)?, row.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    if draws.is_empty() {
        return Ok(());
    }
    let mut to_spend = spent;
    for (grant_id, drawn) in draws {
        let spend = to_spend.min(drawn);
        to_spend -= spend;
        tx.prepare_cached(
            "UPDATE grant_buckets SET held = held - ?2, spent = spent + ?3,
                    available = available + ?2 - ?3
              WHERE grant_id = ?1",
        )?
        .execute(params![grant_id, drawn, spend])?;
    }
    tx.prepare_cached("DELETE FROM hold_draws WHERE hold_id = ?1")?
        .execute([hold_id])?;
    Ok(())
}

/// A wallet's promotional credits not yet spent or expired, by bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromoBucket {
    /// The grant that made it.
    pub grant_id: String,
    /// When what is left of it is taken back.
    pub expires_at: UnixMillis,
    /// Micro-credits it granted.
    pub amount: i64,
    /// Micro-credits available now.
    pub available: i64,
    /// Micro-credits held by open holds.
    pub held: i64,
}

/// The live promotional buckets of an account, soonest expiring first.
pub(crate) fn promo_buckets(conn: &ReadOnly<'_>, account_id: &str) -> Result<Vec<PromoBucket>> {
    let mut stmt = conn.prepare_cached(
        "SELECT b.grant_id, b.expires_at, b.amount, b.available, b.held
           FROM grant_buckets b JOIN ledger_accounts a ON a.id = b.wallet
          WHERE a.account_id = ?1 AND (b.available > 0 OR b.held > 0)
          ORDER BY b.expires_at, b.grant_id",
    )?;
    let rows = stmt.query_map([account_id], |row| {
        Ok(PromoBucket {
            grant_id: row.get(0)?,
            expires_at: row.get(1)?,
            amount: row.get(2)?,
            available: row.get(3)?,
            held: row.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The balance of an account's wallet.
pub(crate) fn balance(conn: &ReadOnly<'_>, account_id: &str) -> Result<Balance> {
    conn.prepare_cached(
        "SELECT credits_posted - debits_posted, debits_pending
         FROM ledger_accounts WHERE account_id = ?1",
    )?
    .query_row([account_id], |row| {
        let posted: i64 = row.get(0)?;
        let pending: i64 = row.get(1)?;
        Ok(Balance {
            available: posted - pending,
            pending,
            posted,
        })
    })
    .optional()?
    .ok_or_else(|| Error::NotFound {
        what: "account",
        id: account_id.to_owned(),
    })
}

/// One page of an account's transfers, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// The transfers, newest first.
    pub transfers: Vec<Transfer>,
    /// Pass this back to get the next (older) page; `None` at the end.
    pub next_cursor: Option<String>,
}

/// Transfers that touched an account's wallet, newest first, `limit` (at
/// most [`HISTORY_PAGE_MAX`]) at a time, continuing after `cursor`.
pub(crate) fn history(
    conn: &ReadOnly<'_>,
    account_id: &str,
    cursor: Option<&str>,
    limit: usize,
) -> Result<HistoryPage> {
    let limit = limit.clamp(1, HISTORY_PAGE_MAX);
    let wallet: i64 = conn
        .prepare_cached("SELECT id FROM ledger_accounts WHERE account_id = ?1")?
        .query_row([account_id], |row| row.get(0))
        .optional()?
        .ok_or_else(|| Error::NotFound {
            what: "account",
            id: account_id.to_owned(),
        })?;
    let before = match cursor {
        None => i64::MAX,
        Some(cursor) => decode_cursor(cursor)?,
    };
    // Each side walks its own (account, seq) index from `before` down and
    // stops after a page: a busy wallet's page costs a page, never a sort
    // of its whole history (an `OR` over the two columns did).
    let mut stmt = conn.prepare_cached(&format!(
        "{TRANSFER_SELECT} WHERE t.seq IN (
             SELECT seq FROM (SELECT seq FROM transfers INDEXED BY transfers_debit_account
                               WHERE debit_account = ?1 AND seq < ?2
                               ORDER BY seq DESC LIMIT ?3)
             UNION
             SELECT seq FROM (SELECT seq FROM transfers INDEXED BY transfers_credit_account
                               WHERE credit_account = ?1 AND seq < ?2
                               ORDER BY seq DESC LIMIT ?3))
         ORDER BY t.seq DESC LIMIT ?3"
    ))?;
    let transfers = stmt
        .query_map(params![wallet, before, limit as i64 + 1], transfer_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(page_of(transfers, limit))
}

/// A page of `limit` from `transfers` (read one beyond `limit`, to know
/// whether more follow).
fn page_of(mut transfers: Vec<Transfer>, limit: usize) -> HistoryPage {
    let next_cursor = if transfers.len() > limit {
        transfers.truncate(limit);
        transfers.last().map(|last| encode_cursor(last.seq))
    } else {
        None
    };
    HistoryPage {
        transfers,
        next_cursor,
    }
}

/// A transfer by id.
pub(crate) fn find_transfer(conn: &ReadOnly<'_>, id: &str) -> Result<Option<Transfer>> {
    let mut stmt = conn.prepare_cached(&format!("{TRANSFER_SELECT} WHERE t.id = ?1"))?;
    Ok(stmt.query_row([id], transfer_from_row).optional()?)
}

/// Every transfer, newest first, `limit` (at most [`HISTORY_PAGE_MAX`]) at
/// a time, continuing after `cursor` (a [`HistoryPage::next_cursor`]): the
/// whole ledger's history, walked by its sequence.
pub(crate) fn recent(
    conn: &ReadOnly<'_>,
    cursor: Option<&str>,
    limit: usize,
) -> Result<HistoryPage> {
    let limit = limit.clamp(1, HISTORY_PAGE_MAX);
    let before = cursor.map(decode_cursor).transpose()?.unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(&format!(
        "{TRANSFER_SELECT} WHERE t.seq < ?1 ORDER BY t.seq DESC LIMIT ?2"
    ))?;
    let transfers = stmt
        .query_map(params![before, limit as i64 + 1], transfer_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(page_of(transfers, limit))
}

/// Credits granted and refunded per UTC day since `since` (refunds by the
/// product of the job they were for, `""` for grants and transfers of no
/// job), read over the newest `newest` transfers at most; and whether that
/// bound cut the window short. (What was spent is counted from the usage
/// events, one per charged job, without a join: `jobs::daily_spend`.)
pub(crate) fn daily_totals(
    conn: &ReadOnly<'_>,
    since: UnixMillis,
    newest: usize,
) -> Result<(Vec<DailyTotal>, bool)> {
    let mut stmt = conn.prepare_cached(
        "SELECT day, kind, product, sum(amount) FROM (
             SELECT t.created_at / 86400000 AS day, t.kind AS kind,
                    CASE t.kind WHEN 'refund' THEN coalesce(
                        (SELECT product FROM jobs WHERE id = substr(t.refund_of, 9)), '')
                    ELSE '' END AS product,
                    t.amount AS amount
               FROM (SELECT created_at, kind, refund_of, amount
                       FROM transfers ORDER BY seq DESC LIMIT ?2) t
              WHERE t.created_at >= ?1 AND (t.kind = 'grant' OR t.kind = 'refund'))
          GROUP BY day, kind, product ORDER BY day, kind, product",
    )?;
    let rows = stmt.query_map(params![since, newest as i64], |row| {
        let kind: String = row.get(1)?;
        Ok(DailyTotal {
            day: row.get(0)?,
            kind: TransferKind::parse(&kind).unwrap_or(TransferKind::Grant),
            product: row.get(2)?,
            micros: row.get(3)?,
        })
    })?;
    let totals = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    let (read, oldest): (i64, Option<i64>) = conn
        .prepare_cached(
            "SELECT count(*), min(created_at) FROM (
                 SELECT created_at FROM transfers ORDER BY seq DESC LIMIT ?1)",
        )?
        .query_row([newest as i64], |row| Ok((row.get(0)?, row.get(1)?)))?;
    let capped = read as usize >= newest && oldest.is_some_and(|oldest| oldest >= since);
    Ok((totals, capped))
}

/// Credits of one kind moved on one UTC day for one product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyTotal {
    /// Whole days since the Unix epoch (UTC).
    pub day: i64,
    /// Grant, capture (spent) or refund.
    pub kind: TransferKind,
    /// The product of the job it was for; empty for grants and transfers
    /// of no job.
    pub product: String,
    /// Micro-credits.
    pub micros: i64,
}

// Cursors are opaque to callers: a version letter and the position, in hex.
fn encode_cursor(seq: i64) -> String {
    hex::encode(format!("h1:{seq}"))
}

fn decode_cursor(cursor: &str) -> Result<i64> {
    let bad = || Error::invalid("cursor", "not a cursor this server issued");
    let bytes = hex::decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    text.strip_prefix("h1:")
        .and_then(|seq| seq.parse::<i64>().ok())
        .filter(|seq| *seq > 0)
        .ok_or_else(bad)
}

const TRANSFER_SELECT: &str = "SELECT t.seq, t.id, t.kind, d.code, c.code, t.amount, t.pending_id,
        t.refund_of, t.deadline, t.memo, t.created_at
    FROM transfers t
    JOIN ledger_accounts d ON d.id = t.debit_account
    JOIN ledger_accounts c ON c.id = t.credit_account";

fn transfer_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Transfer> {
    let kind: String = row.get(2)?;
    Ok(Transfer {
        seq: row.get(0)?,
        id: row.get(1)?,
        kind: TransferKind::parse(&kind).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                2,
                rusqlite::types::Type::Text,
                format!("unknown transfer kind {kind}").into(),
            )
        })?,
        debit_code: row.get(3)?,
        credit_code: row.get(4)?,
        amount: row.get(5)?,
        pending_id: row.get(6)?,
        refund_of: row.get(7)?,
        deadline: row.get(8)?,
        memo: row.get(9)?,
        created_at: row.get(10)?,
    })
}

fn validate(id: &str, amount: i64, memo: &str) -> Result<()> {
    validate_caller_id("transfer_id", id)?;
    if amount <= 0 {
        return Err(Error::InvalidAmount(crate::money::AmountError::Zero));
    }
    if amount > AMOUNT_MICROS_MAX {
        return Err(Error::InvalidAmount(crate::money::AmountError::TooLarge));
    }
    if memo.chars().count() > MEMO_CHARS_MAX {
        return Err(Error::invalid(
            "memo",
            format!("must be at most {MEMO_CHARS_MAX} characters"),
        ));
    }
    Ok(())
}

/// The ledger row of an account's wallet.
fn wallet_row(tx: &Tx<'_>, account_id: &str) -> Result<LedgerRow> {
    tx.prepare_cached("SELECT id FROM ledger_accounts WHERE account_id = ?1")?
        .query_row([account_id], |row| row.get(0))
        .optional()?
        .ok_or_else(|| Error::NotFound {
            what: "account",
            id: account_id.to_owned(),
        })
}

/// The ledger code of a ledger row.
fn code_of_row(tx: &Tx<'_>, row: LedgerRow) -> Result<String> {
    let mut stmt = tx.prepare_cached("SELECT code FROM ledger_accounts WHERE id = ?1")?;
    Ok(stmt.query_row([row], |row| row.get(0))?)
}

/// The ledger row of a ledger code.
fn row_of_code(tx: &Tx<'_>, code: &str) -> Result<LedgerRow> {
    let mut stmt = tx.prepare_cached("SELECT id FROM ledger_accounts WHERE code = ?1")?;
    Ok(stmt.query_row([code], |row| row.get(0))?)
}

fn insufficient(tx: &Tx<'_>, wallet: LedgerRow, required: i64) -> Error {
    let available = tx
        .prepare_cached(
            "SELECT credits_posted - debits_posted - debits_pending FROM ledger_accounts WHERE id = ?1",
        )
        .and_then(|mut stmt| stmt.query_row([wallet], |row| row.get::<_, i64>(0)));
    match available {
        Ok(available) => Error::InsufficientCredits {
            required_micros: required,
            available_micros: available,
            suggestion: None,
        },
        Err(err) => Error::storage(err),
    }
}

/// Reserves `amount` of a ledger account's available balance (a hold).
const RESERVE_SQL: &str = "UPDATE ledger_accounts SET debits_pending = debits_pending + ?2
         WHERE id = ?1
           AND (allow_negative = 1 OR credits_posted - debits_posted - debits_pending >= ?2)";
/// Debits `amount` posted from a ledger account's available balance.
const DEBIT_POSTED_SQL: &str = "UPDATE ledger_accounts SET debits_posted = debits_posted + ?2
         WHERE id = ?1
           AND (allow_negative = 1 OR credits_posted - debits_posted - debits_pending >= ?2)";

/// Runs one of the conditional debits above: the balance is checked and
/// written in one statement, so no reader sees it in between; a balance
/// that does not cover `amount` is [`Error::InsufficientCredits`].
fn debit_if_covered(tx: &Tx<'_>, sql: &str, row: LedgerRow, amount: i64) -> Result<()> {
    let changed = tx.prepare_cached(sql)?.execute(params![row, amount])?;
    assert!(changed <= 1, "ledger account ids are unique");
    if changed != 1 {
        return Err(insufficient(tx, row, amount));
    }
    Ok(())
}

/// Moves `amount` posted from `debit` to `credit`: the debit side is
/// checked and written in one conditional statement, the credit side
/// refuses to pass a wallet's maximum balance.
fn post(tx: &Tx<'_>, debit: LedgerRow, credit: LedgerRow, amount: i64) -> Result<()> {
    debit_if_covered(tx, DEBIT_POSTED_SQL, debit, amount)?;
    let credited = tx
        .prepare_cached(
            "UPDATE ledger_accounts SET credits_posted = credits_posted + ?2
         WHERE id = ?1 AND (kind = 'system' OR credits_posted - debits_posted + ?2 <= ?3)",
        )?
        .execute(params![credit, amount, BALANCE_MICROS_MAX])?;
    assert!(credited <= 1, "ledger account ids are unique");
    if credited != 1 {
        return Err(Error::BalanceLimit);
    }
    Ok(())
}

/// An open or resolved hold, as the resolving operations need it.
struct HoldRow {
    debit: LedgerRow,
    credit: LedgerRow,
    debit_code: String,
    credit_code: String,
    amount: i64,
    deadline: Option<UnixMillis>,
}

fn load_hold(tx: &Tx<'_>, hold_id: &str, operation: &'static str) -> Result<HoldRow> {
    let row = tx
        .prepare_cached(
            "SELECT t.kind, t.debit_account, t.credit_account, t.amount, t.deadline, d.code, c.code
               FROM transfers t
               JOIN ledger_accounts d ON d.id = t.debit_account
               JOIN ledger_accounts c ON c.id = t.credit_account
              WHERE t.id = ?1",
        )?
        .query_row([hold_id], |row| {
            Ok((
                row.get::<_, String>(0)?,
                HoldRow {
                    debit: row.get(1)?,
                    credit: row.get(2)?,
                    amount: row.get(3)?,
                    deadline: row.get(4)?,
                    debit_code: row.get(5)?,
                    credit_code: row.get(6)?,
                },
            ))
        })
        .optional()?;
    match row {
        None => Err(Error::NotFound {
            what: "hold",
            id: hold_id.to_owned(),
        }),
        Some((kind, hold)) if kind == "hold" => Ok(hold),
        Some((kind, _)) => Err(Error::WrongTransferKind {
            id: hold_id.to_owned(),
            kind,
            operation,
        }),
    }
}

fn ensure_open(tx: &Tx<'_>, hold_id: &str) -> Result<()> {
    let resolved_by: Option<String> = tx
        .prepare_cached("SELECT id FROM transfers WHERE pending_id = ?1")?
        .query_row([hold_id], |row| row.get(0))
        .optional()?;
    match resolved_by {
        Some(resolved_by) => Err(Error::HoldAlreadyResolved {
            hold_id: hold_id.to_owned(),
            resolved_by,
        }),
        None => Ok(()),
    }
}

/// Removes a hold's pending amounts from both sides and its open-hold row.
fn resolve_pending(tx: &Tx<'_>, hold: &HoldRow, hold_id: &str) -> Result<()> {
    let removed = tx
        .prepare_cached("DELETE FROM open_holds WHERE transfer_id = ?1")?
        .execute([hold_id])?;
    assert_eq!(
        removed, 1,
        "an unresolved hold has exactly one open_holds row"
    );
    let debit_side = tx
        .prepare_cached(
            "UPDATE ledger_accounts SET debits_pending = debits_pending - ?2 WHERE id = ?1",
        )?
        .execute(params![hold.debit, hold.amount])?;
    assert_eq!(debit_side, 1, "a hold's debit account exists");
    let credit_side = tx
        .prepare_cached(
            "UPDATE ledger_accounts SET credits_pending = credits_pending - ?2 WHERE id = ?1",
        )?
        .execute(params![hold.credit, hold.amount])?;
    assert_eq!(credit_side, 1, "a hold's credit account exists");
    Ok(())
}

fn void(
    tx: &Tx<'_>,
    id: &str,
    hold_id: &str,
    kind: TransferKind,
    now: UnixMillis,
) -> Result<TransferOutcome> {
    validate_caller_id("transfer_id", id)?;
    let operation = kind.as_str();
    let hold = load_hold(tx, hold_id, operation)?;
    let new = NewTransfer {
        id,
        kind,
        debit: hold.debit,
        credit: hold.credit,
        debit_code: hold.debit_code.clone(),
        credit_code: hold.credit_code.clone(),
        amount: hold.amount,
        pending_id: Some(hold_id),
        refund_of: None,
        deadline: None,
        memo: "",
    };
    if let Some(outcome) = replay(tx, &new)? {
        return Ok(outcome);
    }
    ensure_open(tx, hold_id)?;
    resolve_pending(tx, &hold, hold_id)?;
    settle_draws(tx, hold_id, 0)?;
    insert(tx, &new, now)
}

/// If `new.id` exists: the first transfer when every field matches, else
/// [`Error::ExistsWithDifferentFields`] naming the first that differs.
fn replay(tx: &Tx<'_>, new: &NewTransfer<'_>) -> Result<Option<TransferOutcome>> {
    let existing = tx
        .prepare_cached(
            "SELECT kind, debit_account, credit_account, amount, pending_id, refund_of, deadline, memo
             FROM transfers WHERE id = ?1",
        )?
        .query_row(
            [new.id],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, LedgerRow>(1)?,
                    row.get::<_, LedgerRow>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, Option<String>>(4)?,
                    row.get::<_, Option<String>>(5)?,
                    row.get::<_, Option<i64>>(6)?,
                    row.get::<_, String>(7)?,
                ))
            },
        )
        .optional()?;
    let Some((kind, debit, credit, amount, pending_id, refund_of, deadline, memo)) = existing
    else {
        return Ok(None);
    };
    let differs = |field: &'static str| Error::ExistsWithDifferentFields {
        id: new.id.to_owned(),
        field,
    };
    if kind != new.kind.as_str() {
        return Err(differs("kind"));
    }
    if debit != new.debit {
        return Err(differs("debit_account"));
    }
    if credit != new.credit {
        return Err(differs("credit_account"));
    }
    if amount != new.amount {
        return Err(differs("amount"));
    }
    if pending_id.as_deref() != new.pending_id {
        return Err(differs("pending_id"));
    }
    if refund_of.as_deref() != new.refund_of {
        return Err(differs("refund_of"));
    }
    if deadline != new.deadline {
        return Err(differs("deadline"));
    }
    if memo != new.memo {
        return Err(differs("memo"));
    }
    let transfer = find_transfer(tx, new.id)?.ok_or_else(|| Error::NotFound {
        what: "transfer",
        id: new.id.to_owned(),
    })?;
    Ok(Some(TransferOutcome {
        transfer,
        replayed: true,
    }))
}

/// The chain hash of a transfer: SHA-256 over the previous chain value and
/// the row's fields, each length-prefixed so no two rows encode alike.
pub(crate) fn chain_hash(previous: &[u8], row: &ChainFields<'_>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    field(&row.seq.to_le_bytes());
    field(row.id.as_bytes());
    field(row.kind.as_bytes());
    field(&row.debit.to_le_bytes());
    field(&row.credit.to_le_bytes());
    field(&row.amount.to_le_bytes());
    field(row.pending_id.unwrap_or("\u{0}").as_bytes());
    field(row.refund_of.unwrap_or("\u{0}").as_bytes());
    field(&row.deadline.map_or([0xff; 8], i64::to_le_bytes));
    field(row.memo.as_bytes());
    field(&row.created_at.to_le_bytes());
    hasher.finalize().into()
}

/// The fields of a transfer row the chain covers.
pub(crate) struct ChainFields<'a> {
    pub(crate) seq: i64,
    pub(crate) id: &'a str,
    pub(crate) kind: &'a str,
    pub(crate) debit: LedgerRow,
    pub(crate) credit: LedgerRow,
    pub(crate) amount: i64,
    pub(crate) pending_id: Option<&'a str>,
    pub(crate) refund_of: Option<&'a str>,
    pub(crate) deadline: Option<i64>,
    pub(crate) memo: &'a str,
    pub(crate) created_at: i64,
}

fn insert(tx: &Tx<'_>, new: &NewTransfer<'_>, now: UnixMillis) -> Result<TransferOutcome> {
    let last: Option<(i64, Vec<u8>)> = tx
        .prepare_cached("SELECT seq, chain FROM transfers ORDER BY seq DESC LIMIT 1")?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let (last_seq, previous) = last.unwrap_or((0, Vec::new()));
    let seq = last_seq + 1;
    let chain = chain_hash(
        &previous,
        &ChainFields {
            seq,
            id: new.id,
            kind: new.kind.as_str(),
            debit: new.debit,
            credit: new.credit,
            amount: new.amount,
            pending_id: new.pending_id,
            refund_of: new.refund_of,
            deadline: new.deadline,
            memo: new.memo,
            created_at: now,
        },
    );
    tx.prepare_cached(
        "INSERT INTO transfers (seq, id, kind, debit_account, credit_account, amount, pending_id,
                                refund_of, deadline, memo, created_at, chain)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        seq,
        new.id,
        new.kind.as_str(),
        new.debit,
        new.credit,
        new.amount,
        new.pending_id,
        new.refund_of,
        new.deadline,
        new.memo,
        now,
        chain.as_slice()
    ])?;
    // Built from what was written, not read back: a test compares the two.
    let transfer = Transfer {
        seq,
        id: new.id.to_owned(),
        kind: new.kind,
        debit_code: new.debit_code.clone(),
        credit_code: new.credit_code.clone(),
        amount: new.amount,
        pending_id: new.pending_id.map(str::to_owned),
        refund_of: new.refund_of.map(str::to_owned),
        deadline: new.deadline,
        memo: new.memo.to_owned(),
        created_at: now,
    };
    Ok(TransferOutcome {
        transfer,
        replayed: false,
    })
}
