//! Gate operations on saved payment methods and auto top-up: setting it,
//! charging a saved method (asked for, or automatically when a hold would
//! fail or a capture leaves the balance below the threshold), and the
//! sender that charges what a crash or a lost answer left unanswered.
//!
//! A charge is a durable intent before it is a call: its top-up (origin
//! `auto` or `saved`) is stored first, for an automatic one in the same
//! write that claims the account's window, then Stripe is asked with the
//! top-up id as its `Idempotency-Key`, so asking again (a retry, the
//! sender after a crash) is the same charge, never a second one. It is
//! credited from Stripe's answer (the API, reached with our key) or from
//! its signed `payment_intent.succeeded` event, whichever comes first:
//! once, by the top-up's conditional status and the payment's id as its
//! event.

use rust_decimal::Decimal;

use crate::autotopup::{self, AutoTopUp, AutoTopUpSettings, SavedMethod};
use crate::clock::UnixMillis;
use crate::error::{Error, Result};
use crate::gate::payments::{credit_topup, StripeRail, TOP_UPS_FEATURE};
use crate::gate::Gate;
use crate::money;
use crate::payments::stripe::{self, ChargeAnswer};
use crate::payments::{self, TopUp, TopUpStatus};
use crate::store::Tx;

/// Charges [`Gate::run_unanswered_charges`] asks again in one call, at most.
pub const CHARGE_AGAIN_BATCH_MAX: usize = 16;
/// How long after it was opened a charge left unanswered is asked again:
/// inside Stripe's 24 hours of idempotency, so asking again can never be a
/// second charge. Later, Stripe's own event is what can still credit it.
pub const CHARGE_AGAIN_FOR_MS: i64 = 23 * 60 * 60 * 1000;

/// What an automatic top-up did for a request that lacked credits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoTopUpOutcome {
    /// Whether credits were bought (and the request went on).
    pub applied: bool,
    /// What happened, for the agent (empty when applied).
    pub message: String,
}

/// An account's saved method and auto top-up, as the owner sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoTopUpState {
    /// The saved method, if any.
    pub method: Option<SavedMethod>,
    /// The auto top-up, if on.
    pub auto_topup: Option<AutoTopUp>,
}

impl Gate {
    /// Turns on (or changes) `account_id`'s auto top-up: below
    /// `threshold` credits, or when a hold would fail, buy `amount`
    /// credits with the saved method, at most once per `window_ms`. With
    /// Stripe configured the amount must cost a whole number of minor
    /// units. It charges only once a method is saved (the first card
    /// top-up saves it).
    pub fn set_auto_topup(
        &self,
        account_id: &str,
        threshold: Decimal,
        amount: Decimal,
        window_ms: i64,
    ) -> Result<AutoTopUp> {
        let settings = AutoTopUpSettings {
            threshold_micros: money::to_micros(threshold)?,
            amount_micros: money::positive_micros(amount)?,
            window_ms,
        };
        settings.check()?;
        // Where Stripe is configured (the server; not the CLI), the amount
        // must cost a whole number of minor units now, not at charge time.
        if let Some(rail) = &self.stripe {
            stripe::amount_minor(settings.amount_micros, rail.settings().minor_per_credit)?;
        }
        let now = self.clock.now();
        let account = account_id.to_owned();
        self.store.write(move |tx| {
            crate::accounts::get(tx, &account)?;
            autotopup::set(tx, &account, &settings, now)?;
            autotopup::get(tx, &account)?
                .ok_or_else(|| Error::internal("an auto top-up set and not found"))
        })
    }

    /// Turns `account_id`'s auto top-up off; `false` when it was off.
    pub fn clear_auto_topup(&self, account_id: &str) -> Result<bool> {
        let account = account_id.to_owned();
        self.store.write(move |tx| autotopup::clear(tx, &account))
    }

    /// Forgets `account_id`'s saved payment method; `false` when none.
    pub fn forget_payment_method(&self, account_id: &str) -> Result<bool> {
        let account = account_id.to_owned();
        self.store
            .write(move |tx| autotopup::forget_method(tx, &account))
    }

    /// `account_id`'s saved method and auto top-up.
    pub fn auto_topup_state(&self, account_id: &str) -> Result<AutoTopUpState> {
        self.store.read(|conn| {
            crate::accounts::get(conn, account_id)?;
            Ok(AutoTopUpState {
                method: autotopup::saved_method(conn, account_id)?,
                auto_topup: autotopup::get(conn, account_id)?,
            })
        })
    }

    /// Buys `credits` for `account_id` now with its saved method, without
    /// the payer (KiwiWhale's `agent_topup.php`, an owner's request).
    /// Refusals: `not_configured` (no Stripe), `payment_method_not_ready`
    /// (nothing saved), `payment_declined` (nothing paid),
    /// `upstream_unavailable` (Stripe could not be asked or did not answer:
    /// the charge is asked again under the same key, never twice).
    pub fn charge_saved_method(&self, account_id: &str, credits: Decimal) -> Result<TopUp> {
        let rail = self.stripe_rail()?;
        let micros = money::positive_micros(credits)?;
        let amount_minor = stripe::amount_minor(micros, rail.settings().minor_per_credit)?;
        let now = self.clock.now();
        let (account, currency) = (account_id.to_owned(), rail.settings().currency.clone());
        let (topup, method) = self.store.write(move |tx| {
            crate::accounts::get(tx, &account)?;
            let method =
                autotopup::saved_method(tx, &account)?.ok_or(Error::PaymentMethodNotReady)?;
            let topup = open_charge(tx, &account, micros, amount_minor, &currency, "saved", now)?;
            Ok((topup, method))
        })?;
        self.charge(rail, topup, &method)
    }

    /// For a request of `account_id` refused for want of
    /// `shortfall_micros`: buys the auto top-up's amount now if it is on,
    /// a method is saved, the amount covers the shortfall and the window
    /// is open. `None` when there is nothing to try.
    pub(crate) fn auto_topup_for(
        &self,
        account_id: &str,
        shortfall_micros: i64,
    ) -> Option<AutoTopUpOutcome> {
        let rail = self.stripe.as_ref()?;
        let state = self.auto_topup_state(account_id).ok()?;
        let settings = state.auto_topup?.settings;
        let declined = |message: String| {
            Some(AutoTopUpOutcome {
                applied: false,
                message,
            })
        };
        let Some(method) = state.method else {
            return declined(Error::PaymentMethodNotReady.to_string());
        };
        if settings.amount_micros < shortfall_micros {
            return declined(format!(
                "the auto top-up of {} credits does not cover the {} needed",
                money::to_credits(settings.amount_micros),
                money::to_credits(shortfall_micros)
            ));
        }
        let now = self.clock.now();
        let account = account_id.to_owned();
        let currency = rail.settings().currency.clone();
        let minor_per_credit = rail.settings().minor_per_credit;
        let opened = self.store.write(move |tx| {
            if !autotopup::claim_window(tx, &account, now)? {
                return Ok(None);
            }
            let amount_minor = stripe::amount_minor(settings.amount_micros, minor_per_credit)?;
            open_charge(
                tx,
                &account,
                settings.amount_micros,
                amount_minor,
                &currency,
                "auto",
                now,
            )
            .map(Some)
        });
        match opened {
            Ok(Some(topup)) => match self.charge(rail, topup, &method) {
                Ok(topup) if topup.status == TopUpStatus::Credited => Some(AutoTopUpOutcome {
                    applied: true,
                    message: String::new(),
                }),
                Ok(_) => declined("the automatic payment is not complete yet".into()),
                Err(err) => declined(err.to_string()),
            },
            Ok(None) => declined("an automatic top-up was already made in this window".into()),
            Err(err) => declined(err.to_string()),
        }
    }

    /// Asks Stripe again for charges of saved methods that a crash or a
    /// lost answer left unanswered for longer than `after_ms` (within
    /// `CHARGE_AGAIN_FOR_MS`), under their original idempotency keys.
    /// Returns how many it credited.
    pub fn run_unanswered_charges(&self, after_ms: i64) -> Result<usize> {
        let Some(rail) = self.stripe.as_ref() else {
            return Ok(0);
        };
        let now = self.clock.now();
        let due = self.store.read(|conn| {
            payments::unanswered_charges(
                conn,
                now - CHARGE_AGAIN_FOR_MS,
                now.saturating_sub(after_ms),
                CHARGE_AGAIN_BATCH_MAX,
            )
        })?;
        let mut credited = 0;
        for topup in due {
            let account = topup.account_id.clone();
            let Some(method) = self
                .store
                .read(|conn| autotopup::saved_method(conn, &account))?
            else {
                let id = topup.id.clone();
                self.store.write(move |tx| payments::mark_failed(tx, &id))?;
                continue;
            };
            if let Ok(topup) = self.charge(rail, topup, &method) {
                credited += usize::from(topup.status == TopUpStatus::Credited);
            }
        }
        Ok(credited)
    }

    /// Asks Stripe to charge `method` for an open `topup` and applies the
    /// answer.
    fn charge(&self, rail: &StripeRail, topup: TopUp, method: &SavedMethod) -> Result<TopUp> {
        let form = stripe::payment_intent_form(
            &topup.currency,
            topup.amount_minor,
            &topup.id,
            &method.customer,
            &method.method,
        );
        let answer = rail.api().create_payment_intent(&form, &topup.id)?;
        let now = self.clock.now();
        let id = topup.id.clone();
        // A refusal is returned after the write that records it commits.
        let recorded: Result<std::result::Result<TopUp, Error>> = self.store.write(move |tx| {
            let topup = payments::get(tx, &id)?;
            Ok(match answer {
                ChargeAnswer::Succeeded { payment_intent } => {
                    payments::attach_payment_intent(tx, &id, &payment_intent)?;
                    let first =
                        payments::first_sighting(tx, stripe::RAIL, &payment_intent, "charge", now)?;
                    if first && topup.status == TopUpStatus::Open {
                        credit_topup(tx, &topup, &payment_intent, now)?;
                    }
                    Ok(payments::get(tx, &id)?)
                }
                ChargeAnswer::Pending { payment_intent, .. } => {
                    payments::attach_payment_intent(tx, &id, &payment_intent)?;
                    Ok(payments::get(tx, &id)?)
                }
                ChargeAnswer::Declined { message } => {
                    payments::mark_failed(tx, &id)?;
                    Err(Error::PaymentDeclined { reason: message })
                }
            })
        });
        recorded?
    }

    fn stripe_rail(&self) -> Result<&StripeRail> {
        self.stripe.as_ref().ok_or_else(|| Error::NotConfigured {
            feature: TOP_UPS_FEATURE.into(),
            hint: "the operator has not connected a payment provider".into(),
        })
    }
}

/// Opens a charge of a saved method (`auto` or `saved`).
fn open_charge(
    tx: &Tx<'_>,
    account_id: &str,
    credits_micros: i64,
    amount_minor: i64,
    currency: &str,
    origin: &str,
    now: UnixMillis,
) -> Result<TopUp> {
    payments::open(
        tx,
        &payments::NewTopUp {
            account_id,
            rail: stripe::RAIL,
            credits_micros,
            amount_minor,
            currency,
            origin,
        },
        now,
    )
}

/// After a capture of `account_id` (in its transaction): when its balance
/// fell below its auto top-up's threshold, a method is saved and the
/// window is open, opens the charge: a durable intent the sender
/// ([`Gate::run_unanswered_charges`]) charges. Nothing otherwise.
pub(crate) fn after_capture(
    tx: &Tx<'_>,
    account_id: &str,
    minor_per_credit: Option<Decimal>,
    currency: &str,
    now: UnixMillis,
) -> Result<()> {
    let Some(minor_per_credit) = minor_per_credit else {
        return Ok(());
    };
    let Some(auto) = autotopup::get(tx, account_id)? else {
        return Ok(());
    };
    let available = crate::ledger::balance(tx, account_id)?.available;
    if available >= auto.settings.threshold_micros
        || autotopup::saved_method(tx, account_id)?.is_none()
        || !autotopup::claim_window(tx, account_id, now)?
    {
        return Ok(());
    }
    let amount_minor = stripe::amount_minor(auto.settings.amount_micros, minor_per_credit)?;
    open_charge(
        tx,
        account_id,
        auto.settings.amount_micros,
        amount_minor,
        currency,
        "auto",
        now,
    )?;
    Ok(())
}
