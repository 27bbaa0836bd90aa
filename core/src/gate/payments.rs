//! Gate operations on top-ups: opening one through a rail (Stripe's
//! Checkout), and applying a rail's verified event exactly once. The rail
//! is called outside any transaction, between the write that opens the
//! top-up and the write that records where it is paid; an event's effect
//! (the grant, the top-up's status) and its id commit together.

use std::sync::Arc;

use rust_decimal::Decimal;

use crate::error::{Error, Result};
use crate::gate::Gate;
use crate::ledger;
use crate::money;
use crate::payments::stripe::{self, StripeApi, StripeEvent, StripeSettings};
use crate::payments::{self, EventOutcome, TopUp, TopUpStatus};

/// Stripe as configured on a gate: its settings and its API.
#[derive(Debug, Clone)]
pub(crate) struct StripeRail {
    settings: StripeSettings,
    api: Arc<dyn StripeApi>,
}

impl StripeRail {
    /// Its settings.
    pub(crate) fn settings(&self) -> &StripeSettings {
        &self.settings
    }

    /// Its API.
    pub(crate) fn api(&self) -> &dyn StripeApi {
        self.api.as_ref()
    }
}

/// Top-ups one listing shows, at most.
pub const TOPUPS_LIST_MAX: usize = 500;

/// The feature a refusal names when no rail is configured.
pub const TOP_UPS_FEATURE: &str = "card top-ups";

impl Gate {
    /// Turns on top-ups through Stripe with `settings`, calling `api`
    /// (`stripe::HttpStripe` in production, a stand-in in tests).
    pub fn with_stripe(mut self, settings: StripeSettings, api: Arc<dyn StripeApi>) -> Gate {
        self.stripe = Some(StripeRail { settings, api });
        self
    }

    /// Whether a top-up rail is configured.
    pub fn top_ups_configured(&self) -> bool {
        self.stripe.is_some()
    }

    /// Opens a top-up of `credits` for `account_id` through Stripe: the
    /// top-up is stored, then a Checkout Session is created for it; its
    /// URL is where the payer pays. Nothing is credited until Stripe's
    /// verified event says it was paid. [`Error::NotConfigured`] without a
    /// rail; a refused creation marks the top-up failed and answers
    /// `upstream_unavailable`.
    pub fn open_topup(&self, account_id: &str, credits: Decimal) -> Result<TopUp> {
        let rail = self.checkout_rail()?;
        let credits_micros = money::positive_micros(credits)?;
        let amount_minor = stripe::amount_minor(credits_micros, rail.settings.minor_per_credit)?;
        self.open_checkout(rail, account_id, credits_micros, amount_minor, None)
    }

    /// [`Gate::open_topup`] of one of the operator's credit packs, at its
    /// own price; an unknown pack is `invalid_request` naming the packs.
    pub fn open_topup_pack(&self, account_id: &str, pack: &str) -> Result<TopUp> {
        let rail = self.checkout_rail()?;
        let found = rail
            .settings
            .packs
            .iter()
            .find(|candidate| candidate.name == pack)
            .ok_or_else(|| {
                let names: Vec<&str> = rail
                    .settings
                    .packs
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect();
                Error::invalid(
                    "pack",
                    if names.is_empty() {
                        "this server sells no packs; ask for an amount of credits".to_owned()
                    } else {
                        format!("is not one of {}", names.join(", "))
                    },
                )
            })?;
        self.open_checkout(
            rail,
            account_id,
            found.credits_micros,
            found.amount_minor,
            Some(&found.name),
        )
    }

    /// What top-ups cost: the currency, the price of a credit in minor
    /// units, and the packs. `not_configured` without Stripe.
    pub fn topup_prices(&self) -> Result<&StripeSettings> {
        Ok(&self.checkout_rail()?.settings)
    }

    fn checkout_rail(&self) -> Result<&StripeRail> {
        self.stripe.as_ref().ok_or_else(|| Error::NotConfigured {
            feature: TOP_UPS_FEATURE.into(),
            hint: "the operator has not connected a payment provider; ask them for credits \
                   or a redemption code"
                .into(),
        })
    }

    fn open_checkout(
        &self,
        rail: &StripeRail,
        account_id: &str,
        credits_micros: i64,
        amount_minor: i64,
        pack: Option<&str>,
    ) -> Result<TopUp> {
        let now = self.clock.now();
        let (account, currency) = (account_id.to_owned(), rail.settings.currency.clone());
        let topup = self.store.write(move |tx| {
            crate::accounts::get(tx, &account)?;
            payments::open(
                tx,
                &payments::NewTopUp {
                    account_id: &account,
                    rail: stripe::RAIL,
                    credits_micros,
                    amount_minor,
                    currency: &currency,
                    origin: "payer",
                },
                now,
            )
        })?;
        let label = match pack {
            Some(pack) => format!("{pack}: {}", money::to_credits(credits_micros)),
            None => money::to_credits(credits_micros).to_string(),
        };
        let form =
            stripe::checkout_form(&rail.settings, &topup.id, account_id, &label, amount_minor);
        let id = topup.id.clone();
        match rail.api.create_checkout_session(&form, &topup.id) {
            Ok(session) => self
                .store
                .write(move |tx| payments::attach_checkout(tx, &id, &session.id, &session.url)),
            Err(err) => {
                self.store.write(move |tx| payments::mark_failed(tx, &id))?;
                Err(err)
            }
        }
    }

    /// A top-up of `account_id` by id (another account's is `not_found`).
    pub fn topup(&self, account_id: &str, topup_id: &str) -> Result<TopUp> {
        let topup = self.store.read(|conn| payments::get(conn, topup_id))?;
        if topup.account_id != account_id {
            return Err(Error::NotFound {
                what: "top-up",
                id: topup_id.to_owned(),
            });
        }
        Ok(topup)
    }

    /// Top-ups of `account_id` (every account's with `None`), newest
    /// first, at most `limit` (bounded by [`TOPUPS_LIST_MAX`]): for the
    /// operator, to see what was paid, what failed and what is still
    /// settling.
    pub fn topups(&self, account_id: Option<&str>, limit: usize) -> Result<Vec<TopUp>> {
        let limit = limit.clamp(1, TOPUPS_LIST_MAX);
        self.store
            .read(|conn| payments::list(conn, account_id, limit))
    }

    /// Applies a Stripe webhook: `signature` is its `Stripe-Signature`
    /// header and `body` its raw body. Unverified: `webhook_unverified`,
    /// nothing changes. Verified: its id is recorded with its effect in one
    /// write, so a replay does nothing more; a paid Checkout Session whose
    /// amount and currency match its top-up credits it once.
    pub fn apply_stripe_event(&self, signature: &str, body: &[u8]) -> Result<EventOutcome> {
        let rail = self.stripe.as_ref().ok_or_else(|| Error::NotConfigured {
            feature: TOP_UPS_FEATURE.into(),
            hint: "no Stripe webhook secret is configured".into(),
        })?;
        let now = self.clock.now();
        stripe::verify_signature(signature, body, &rail.settings.webhook_secret, now).map_err(
            |reason| Error::WebhookUnverified {
                provider: stripe::RAIL.into(),
                reason,
            },
        )?;
        let parsed = stripe::parse_event(body)?;
        self.store.write(move |tx| {
            if !payments::first_sighting(tx, stripe::RAIL, &parsed.id, &parsed.kind, now)? {
                return Ok(EventOutcome::Duplicate);
            }
            let recorded = |reason: &str, topup: Option<&str>| -> Result<EventOutcome> {
                payments::set_outcome(tx, stripe::RAIL, &parsed.id, reason, topup)?;
                Ok(EventOutcome::Recorded {
                    reason: reason.to_owned(),
                })
            };
            let (topup_id, amount_minor, currency, payment_intent) = match &parsed.event {
                StripeEvent::SessionPaid {
                    topup_id,
                    amount_minor,
                    currency,
                    payment_intent,
                } => (topup_id, *amount_minor, currency, payment_intent),
                StripeEvent::Reversal {
                    payment_intent,
                    amount_minor,
                    ..
                } => {
                    let Some(topup) = payments::by_payment_ref(tx, payment_intent)? else {
                        return recorded("unknown_payment", None);
                    };
                    return reverse_topup(tx, &topup, &parsed.id, *amount_minor, now);
                }
                StripeEvent::PaymentSucceeded {
                    topup_id,
                    payment_intent,
                    amount_minor,
                    currency,
                    saved,
                } => {
                    let topup = match topup_id {
                        Some(id) => payments::get(tx, id).ok(),
                        None => payments::by_payment_ref(tx, payment_intent)?,
                    };
                    let Some(topup) = topup else {
                        return recorded("unknown_payment", None);
                    };
                    if let Some((customer, method)) = saved {
                        crate::autotopup::save_method(
                            tx,
                            &topup.account_id,
                            stripe::RAIL,
                            customer,
                            method,
                            now,
                        )?;
                    }
                    let saved_reason = if saved.is_some() {
                        "method_saved"
                    } else {
                        "ignored"
                    };
                    // A charge of a saved method whose API answer was lost
                    // (or still processing) is credited by its event; a
                    // checkout is credited by the session's own event.
                    if topup.origin == "payer" || topup.status != TopUpStatus::Open {
                        return recorded(saved_reason, Some(&topup.id));
                    }
                    if topup.amount_minor != *amount_minor
                        || !topup.currency.eq_ignore_ascii_case(currency)
                    {
                        return recorded("amount_mismatch", Some(&topup.id));
                    }
                    payments::attach_payment_intent(tx, &topup.id, payment_intent)?;
                    let transfer_id = credit_topup(tx, &topup, &parsed.id, now)?;
                    return Ok(EventOutcome::Credited {
                        topup_id: topup.id,
                        transfer_id,
                    });
                }
                StripeEvent::Other { .. } => return recorded("ignored", None),
            };
            let topup = match payments::get(tx, topup_id) {
                Ok(topup) => topup,
                Err(Error::NotFound { .. }) => return recorded("unknown_topup", None),
                Err(other) => return Err(other),
            };
            if topup.amount_minor != amount_minor || !topup.currency.eq_ignore_ascii_case(currency)
            {
                return recorded("amount_mismatch", Some(&topup.id));
            }
            if topup.status == TopUpStatus::Credited {
                return recorded("already_credited", Some(&topup.id));
            }
            let transfer_id = credit_topup(tx, &topup, &parsed.id, now)?;
            if let Some(payment_intent) = payment_intent {
                payments::set_payment_ref(tx, &topup.id, payment_intent)?;
            }
            Ok(EventOutcome::Credited {
                topup_id: topup.id,
                transfer_id,
            })
        })
    }
}

/// Credits an uncredited `topup` in `tx` because of the rail's verified
/// `event_id` (already recorded as first seen): the grant `topup_<id>`,
/// the top-up marked credited, the event's outcome, the webhook events.
/// The one place a paid top-up becomes credits, for every rail.
pub(super) fn credit_topup(
    tx: &crate::store::Tx<'_>,
    topup: &TopUp,
    event_id: &str,
    now: crate::clock::UnixMillis,
) -> Result<String> {
    let transfer_id = format!("topup_{}", topup.id);
    let memo = format!("top-up {} ({})", topup.id, topup.rail);
    ledger::grant(
        tx,
        &transfer_id,
        &topup.account_id,
        topup.credits_micros,
        &memo,
        now,
    )?;
    let credited = payments::mark_credited(tx, &topup.id, &transfer_id, now)?;
    assert!(credited, "a top-up credited twice");
    payments::set_outcome(tx, &topup.rail, event_id, "credited", Some(&topup.id))?;
    let data = serde_json::json!({
        "topup_id": topup.id,
        "account_id": topup.account_id,
        "rail": topup.rail,
        "credits": crate::money::credits_json(topup.credits_micros),
    });
    crate::outbox::emit(tx, crate::outbox::TOPUP_CREDITED, &data, now)?;
    super::outbox::balance_moved(tx, &topup.account_id, now)?;
    Ok(transfer_id)
}

/// Takes back from a credited top-up's wallet what a refund or dispute of
/// `taken_minor` (of its `amount_minor`, a total so far) is worth, less
/// what earlier ones took: one reversal of its grant, at most what the
/// wallet holds unless it is flagged `allow_negative`; the rest is
/// recorded on the top-up as unrecovered, never dropped silently.
fn reverse_topup(
    tx: &crate::store::Tx<'_>,
    topup: &TopUp,
    event_id: &str,
    taken_minor: i64,
    now: crate::clock::UnixMillis,
) -> Result<EventOutcome> {
    let Some(grant_id) = topup_grant(topup) else {
        payments::set_outcome(tx, &topup.rail, event_id, "not_credited", Some(&topup.id))?;
        return Ok(EventOutcome::Recorded {
            reason: "not_credited".into(),
        });
    };
    let worth = i128::from(topup.credits_micros) * i128::from(taken_minor.min(topup.amount_minor))
        / i128::from(topup.amount_minor);
    let worth = i64::try_from(worth).unwrap_or(topup.credits_micros);
    let due = worth - topup.reversed_micros - topup.unrecovered_micros;
    if due <= 0 {
        payments::set_outcome(
            tx,
            &topup.rail,
            event_id,
            "already_reversed",
            Some(&topup.id),
        )?;
        return Ok(EventOutcome::Recorded {
            reason: "already_reversed".into(),
        });
    }
    let reversal_id = format!(
        "reversal_{}_{}",
        topup.id,
        topup.reversed_micros + topup.unrecovered_micros
    );
    let memo = format!("refund or dispute of top-up {} ({})", topup.id, topup.rail);
    let taken = ledger::reverse_grant(tx, &reversal_id, &grant_id, due, &memo, now)?
        .map_or(0, |outcome| outcome.transfer.amount);
    let unrecovered = due - taken;
    payments::record_reversal(tx, &topup.id, taken, unrecovered)?;
    let outcome = if unrecovered == 0 {
        "reversed"
    } else {
        "reversed_partially"
    };
    payments::set_outcome(tx, &topup.rail, event_id, outcome, Some(&topup.id))?;
    if taken > 0 {
        super::outbox::balance_moved(tx, &topup.account_id, now)?;
    }
    Ok(EventOutcome::Reversed {
        topup_id: topup.id.clone(),
        reversed_micros: taken,
        unrecovered_micros: unrecovered,
    })
}

/// The grant that credited a top-up, once credited.
fn topup_grant(topup: &TopUp) -> Option<String> {
    (topup.status == TopUpStatus::Credited).then(|| format!("topup_{}", topup.id))
}
