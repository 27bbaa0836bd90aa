//! Gate operations on x402 top-ups: paying for credits inside a request
//! (`PAYMENT-SIGNATURE`), offering to (`PAYMENT-REQUIRED` on a refusal for
//! want of credits), and settling again what a facilitator left unsaid.
//!
//! The order of writes makes a payment credited at most once and never
//! lost: the top-up is stored with the payment, keyed by its nonce, before
//! the facilitator is asked; it is marked `settling` before `/settle` is
//! called; the credit and the payment's key as a first-seen event commit
//! together. A settlement whose answer never came (a timeout, a crash, a
//! kill) stays `settling` and is settled again, by the payer's retry with
//! the same signature or by [`Gate::settle_stuck_x402`]; a facilitator
//! answers a settled payment again with its transaction, and the key makes
//! the second credit nothing.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gate::payments::credit_topup;
use crate::gate::Gate;
use crate::payments::x402::{self, Facilitator, Payment, Settlement, X402Settings};
use crate::payments::{self, TopUp, TopUpStatus};

/// x402 as configured on a gate.
#[derive(Debug, Clone)]
pub(crate) struct X402Rail {
    settings: X402Settings,
    facilitator: Arc<dyn Facilitator>,
}

/// Top-ups [`Gate::settle_stuck_x402`] settles again in one call, at most.
pub const SETTLE_AGAIN_BATCH_MAX: usize = 32;
/// How long after it was opened a top-up left settling is settled again:
/// long past any payer's authorization window, after which a facilitator
/// can no longer settle it and it is the operator's to look at.
pub const SETTLE_AGAIN_FOR_MS: i64 = 24 * 60 * 60 * 1000;

/// A paid x402 top-up: what was credited and the `PAYMENT-RESPONSE` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct X402Receipt {
    /// The top-up, credited.
    pub topup: TopUp,
    /// Whether this call credited it (`false`: an earlier one did).
    pub newly_credited: bool,
    /// The `PAYMENT-RESPONSE` header's value.
    pub payment_response: String,
}

impl Gate {
    /// Turns on x402 top-ups with `settings`, settling through
    /// `facilitator` (`x402::HttpFacilitator` in production).
    pub fn with_x402(mut self, settings: X402Settings, facilitator: Arc<dyn Facilitator>) -> Gate {
        self.x402 = Some(X402Rail {
            settings,
            facilitator,
        });
        self
    }

    /// Whether x402 top-ups are configured.
    pub fn x402_configured(&self) -> bool {
        self.x402.is_some()
    }

    /// The `PAYMENT-REQUIRED` header to send with `err`, when x402 is
    /// configured and the refusal is one a payment answers: want of
    /// credits (the shortfall, at least the smallest top-up), a payment
    /// asked for, or a payment refused (the smallest top-up).
    pub fn payment_required_header(&self, err: &Error, resource_url: &str) -> Option<String> {
        let rail = self.x402.as_ref()?;
        let settings = &rail.settings;
        let micros = match err {
            Error::InsufficientCredits {
                required_micros,
                available_micros,
                ..
            } => x402::ask_for(settings, required_micros.saturating_sub(*available_micros))?,
            Error::PaymentRequired { credits_micros } => *credits_micros,
            Error::PaymentInvalid { .. } => settings.min_topup_micros,
            _ => return None,
        };
        x402::payment_required_header(settings, micros, resource_url, err.code())
    }

    /// The micro-credits an x402 top-up of `credits_micros` is offered
    /// for, checked against the bounds: `payment_required` carries it.
    pub fn x402_offer(&self, credits_micros: i64) -> Result<Error> {
        let rail = self.x402.as_ref().ok_or_else(not_configured)?;
        let settings = &rail.settings;
        if credits_micros < settings.min_topup_micros || credits_micros > settings.max_topup_micros
        {
            return Err(Error::invalid(
                "credits",
                format!(
                    "must be from {} to {} for an x402 top-up",
                    crate::money::to_credits(settings.min_topup_micros),
                    crate::money::to_credits(settings.max_topup_micros)
                ),
            ));
        }
        x402::atomic_for(settings, credits_micros)
            .map_err(|reason| Error::invalid("credits", &reason))?;
        Ok(Error::PaymentRequired { credits_micros })
    }

    /// Pays for credits of `account_id` with a `PAYMENT-SIGNATURE` header:
    /// read, verified and settled through the facilitator, credited once
    /// per payment. The same signature again answers the same receipt and
    /// credits nothing more. Refusals: `payment_invalid` (nothing moved),
    /// `upstream_unavailable` (the facilitator could not be asked, or did
    /// not answer a settlement: send the same signature again).
    pub fn pay_with_x402(&self, account_id: &str, header: &str) -> Result<X402Receipt> {
        let rail = self.x402.as_ref().ok_or_else(not_configured)?;
        let payment = x402::read_payment(&rail.settings, header)?;
        let key = payment.key.clone();
        let known = self
            .store
            .read(|conn| payments::by_external_id(conn, &key))?;
        let was_known = known.is_some();
        let topup = match known {
            Some(topup) if topup.account_id != account_id => {
                return Err(Error::PaymentInvalid {
                    reason: "this payment was made for another account".into(),
                })
            }
            Some(topup) => topup,
            None => {
                // Verified before anything is stored under its key: a
                // forged payload naming a real payment's nonce is refused
                // here and cannot take that nonce from it.
                let request = x402::facilitator_request(&payment);
                let (status, body) = rail.facilitator.verify(&request)?;
                if let Err(reason) = x402::read_verify(status, &body)? {
                    return Err(Error::PaymentInvalid { reason });
                }
                self.open_settling(rail, account_id, &payment)?
            }
        };
        let settled_before = match topup.status {
            TopUpStatus::Credited => return receipt(topup, false),
            TopUpStatus::Failed => {
                return Err(Error::PaymentInvalid {
                    reason: "this payment was refused before; sign a new one".into(),
                })
            }
            TopUpStatus::Open => false,
            // Settling before this call: an earlier settlement of it went
            // unanswered (or is under way on another thread).
            TopUpStatus::Settling => was_known,
        };
        self.settle(rail, topup, &payment, settled_before)
    }

    /// Stores a verified payment as a top-up of `account_id`, already
    /// `settling` (the facilitator is asked next), keyed by the payment;
    /// the top-up already stored under that key when another call got
    /// there first.
    fn open_settling(&self, rail: &X402Rail, account_id: &str, payment: &Payment) -> Result<TopUp> {
        let now = self.clock.now();
        let (account, payment) = (account_id.to_owned(), payment.clone());
        let currency = rail.settings.asset_name.clone();
        self.store.write(move |tx| {
            if let Some(topup) = payments::by_external_id(tx, &payment.key)? {
                return Ok(topup);
            }
            crate::accounts::get(tx, &account)?;
            let topup = payments::open(
                tx,
                &payments::NewTopUp {
                    account_id: &account,
                    rail: x402::RAIL,
                    credits_micros: payment.micros,
                    amount_minor: payment.atomic,
                    currency: &currency,
                    origin: "payer",
                },
                now,
            )?;
            payments::attach_payment(tx, &topup.id, &payment.key, &payment.payload.to_string())?;
            payments::mark_settling(tx, &topup.id)?;
            payments::get(tx, &topup.id)
        })
    }

    /// Settles again, through the facilitator, x402 top-ups left
    /// `settling` for longer than `after_ms` (a settlement whose answer
    /// never came: a timeout, a crash). Returns how many it credited. A
    /// facilitator that still cannot be reached leaves them for the next
    /// call.
    pub fn settle_stuck_x402(&self, after_ms: i64) -> Result<usize> {
        let Some(rail) = self.x402.as_ref() else {
            return Ok(0);
        };
        let now = self.clock.now();
        let (not_before, before) = (now - SETTLE_AGAIN_FOR_MS, now.saturating_sub(after_ms));
        let stuck = self.store.read(|conn| {
            payments::settling(conn, x402::RAIL, not_before, before, SETTLE_AGAIN_BATCH_MAX)
        })?;
        let mut credited = 0;
        for (topup, payload) in stuck {
            let header = base64_of(&payload);
            let Ok(payment) = x402::read_payment(&rail.settings, &header) else {
                continue;
            };
            if let Ok(receipt) = self.settle(rail, topup, &payment, true) {
                credited += usize::from(receipt.newly_credited);
            }
        }
        Ok(credited)
    }

    /// Asks the facilitator to settle a `settling` top-up and credits it
    /// on success. `settled_before`: an earlier settlement of it went
    /// unanswered, so a refusal now cannot tell whether that one moved the
    /// money.
    fn settle(
        &self,
        rail: &X402Rail,
        topup: TopUp,
        payment: &Payment,
        settled_before: bool,
    ) -> Result<X402Receipt> {
        let request = x402::facilitator_request(payment);
        let answer = rail
            .facilitator
            .settle(&request)
            .and_then(|(status, body)| x402::read_settle(status, &body))
            .map_err(|err| Error::UpstreamUnavailable {
                upstream: "x402 facilitator",
                detail: format!(
                    "settlement unconfirmed ({err}); the payment may have settled: send the \
                     same PAYMENT-SIGNATURE again, it is credited once"
                ),
            })?;
        let settlement = match answer {
            Ok(settlement) => settlement,
            Err(reason) => {
                // After an unanswered settlement, a refusal cannot tell
                // whether that one moved the money: the top-up stays
                // settling (and visible to the operator), never dropped.
                if !settled_before {
                    let id = topup.id.clone();
                    self.store.write(move |tx| payments::mark_failed(tx, &id))?;
                }
                return Err(Error::PaymentInvalid {
                    reason: format!("the facilitator did not settle it: {reason}"),
                });
            }
        };
        let now = self.clock.now();
        let network = rail.settings.network.clone();
        let key = payment.key.clone();
        let credited = self.store.write(move |tx| {
            let topup = payments::get(tx, &topup.id)?;
            let recorded = serde_json::json!({
                "transaction": settlement.transaction,
                "network": settlement.network,
                "payer": settlement.payer,
                "amount": settlement.atomic.map(|a| a.to_string()),
            })
            .to_string();
            if !payments::first_sighting(tx, x402::RAIL, &key, "settle", now)? {
                return Ok(Some((topup, false)));
            }
            payments::record_settlement(tx, &topup.id, &recorded)?;
            let mismatch = settlement
                .atomic
                .is_some_and(|atomic| atomic != topup.amount_minor)
                || (!settlement.network.is_empty() && settlement.network != network);
            if mismatch {
                // Recorded and committed for the operator: the money moved,
                // but not as offered, so no credit is made of it.
                payments::set_outcome(tx, x402::RAIL, &key, "amount_mismatch", Some(&topup.id))?;
                payments::mark_failed(tx, &topup.id)?;
                return Ok(None);
            }
            credit_topup(tx, &topup, &key, now)?;
            Ok(Some((payments::get(tx, &topup.id)?, true)))
        })?;
        match credited {
            Some((topup, newly)) => receipt(topup, newly),
            None => Err(Error::PaymentInvalid {
                reason: "the facilitator settled another amount or network than the one \
                         offered; nothing was credited and the operator has the record"
                    .into(),
            }),
        }
    }
}

fn receipt(topup: TopUp, newly_credited: bool) -> Result<X402Receipt> {
    let settlement: Settlement = topup
        .settlement
        .as_deref()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        .map(|value| Settlement {
            transaction: value["transaction"].as_str().unwrap_or("").to_owned(),
            network: value["network"].as_str().unwrap_or("").to_owned(),
            payer: value["payer"].as_str().unwrap_or("").to_owned(),
            atomic: None,
        })
        .ok_or_else(|| Error::CorruptData {
            detail: format!("x402 top-up {} is credited without a settlement", topup.id),
        })?;
    Ok(X402Receipt {
        payment_response: x402::payment_response_header(&settlement),
        topup,
        newly_credited,
    })
}

fn base64_of(payload: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(payload)
}

fn not_configured() -> Error {
    Error::NotConfigured {
        feature: "x402 top-ups".into(),
        hint: "the operator has not configured an x402 facilitator; ask them for credits or a \
               redemption code"
            .into(),
    }
}
