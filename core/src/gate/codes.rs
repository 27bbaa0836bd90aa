//! Gate operations on redemption codes: the operator creates, lists and
//! revokes them; an account redeems one. A redemption is one write: the
//! code's use taken (conditionally), the grant transfer, and the
//! redemption's row, so a refused redemption moves nothing and a granted
//! one is recorded with its transfer or not at all.

use crate::codes::{self, Code, NewCode, Redemption};
use crate::error::Result;
use crate::gate::Gate;
use crate::ledger::{self, Balance};

/// A redemption and the wallet after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redeemed {
    /// The use taken and its grant.
    pub redemption: Redemption,
    /// The account's balance after the grant.
    pub balance: Balance,
}

impl Gate {
    /// Creates a redemption code; its secret, shown only now (only its
    /// hash is stored).
    pub fn create_code(&self, new: &NewCode) -> Result<(Code, String)> {
        let now = self.clock.now();
        let new = new.clone();
        self.store.write(move |tx| codes::insert(tx, &new, now))
    }

    /// Every code, newest first (at most [`codes::CODES_LIST_MAX`]).
    pub fn codes(&self) -> Result<Vec<Code>> {
        self.store.read(codes::list)
    }

    /// A code by id, or `not_found`.
    pub fn code(&self, code_id: &str) -> Result<Code> {
        self.store.read(|conn| codes::get(conn, code_id))
    }

    /// Revokes a code: it redeems no more (its past grants stand).
    pub fn revoke_code(&self, code_id: &str) -> Result<Code> {
        let now = self.clock.now();
        let id = code_id.to_owned();
        self.store.write(move |tx| codes::revoke(tx, &id, now))
    }

    /// Redeems the code whose secret is `secret` into `account_id`'s
    /// wallet: one use taken, its credits granted, in one write. Refused
    /// with `code_invalid`, `code_expired`, `code_used_up` or
    /// `code_already_redeemed`, moving nothing.
    pub fn redeem_code(&self, account_id: &str, secret: &str) -> Result<Redeemed> {
        let now = self.clock.now();
        let (account, secret) = (account_id.to_owned(), secret.to_owned());
        self.store.write(move |tx| {
            let taken = codes::take_use(tx, &secret, &account, now)?;
            let redemption = &taken.redemption;
            let memo = format!("code {}", redemption.code_id);
            ledger::grant(
                tx,
                &redemption.transfer_id,
                &account,
                redemption.amount_micros,
                &memo,
                now,
            )?;
            codes::record(tx, &taken, now)?;
            let data = serde_json::json!({
                "code_id": redemption.code_id,
                "account_id": account,
                "credits": crate::money::credits_json(redemption.amount_micros),
            });
            crate::outbox::emit(tx, crate::outbox::CODE_REDEEMED, &data, now)?;
            super::outbox::balance_moved(tx, &account, now)?;
            Ok(Redeemed {
                redemption: taken.redemption.clone(),
                balance: ledger::balance(tx, &account)?,
            })
        })
    }

    /// The codes `account_id` redeemed, newest first.
    pub fn redemptions(&self, account_id: &str) -> Result<Vec<Redemption>> {
        self.store
            .read(|conn| codes::redemptions_of(conn, account_id))
    }
}
