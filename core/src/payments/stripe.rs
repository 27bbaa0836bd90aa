//! Stripe as a top-up rail: the settings an operator gives, the pure parts
//! of the protocol (the amount of a top-up, the Checkout Session form, the
//! `Stripe-Signature` check, reading an event), and, with the `http`
//! feature, the client that creates Checkout Sessions with ureq at a
//! configurable base URL.
//!
//! Only a verified webhook credits a wallet: `Stripe-Signature: t=<unix>,
//! v1=<hex>` where v1 is HMAC-SHA256 under the endpoint secret over
//! `t + "." + body`, within [`SIGNATURE_TOLERANCE_SECS`] of our clock.
//! Secrets live in [`Secret`]s, whose `Debug` prints nothing of them.

use hmac::{Hmac, Mac};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::Value;
use sha2::Sha256;

use crate::clock::UnixMillis;
use crate::error::{Error, Result};
use crate::identity::constant_time_eq;

/// The rail's name in `topups.rail` and `payment_events.rail`.
pub const RAIL: &str = "stripe";
/// How far a signature's timestamp may be from our clock (Stripe's
/// libraries use the same).
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;
/// The largest amount one Checkout Session may carry, in minor units
/// (Stripe's eight digits).
pub const AMOUNT_MINOR_MAX: i64 = 99_999_999;
/// The longest `Stripe-Signature` header looked at.
pub const SIGNATURE_HEADER_CHARS_MAX: usize = 1_024;
/// The largest answer read from Stripe's API.
pub const API_RESPONSE_BYTES_MAX: u64 = 256 * 1024;

pub use crate::secret::Secret;

/// How an operator sells credits through Stripe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeSettings {
    /// Stripe's API base (`https://api.stripe.com`; a stand-in in tests).
    pub api_base: String,
    /// The secret API key (`sk_...`).
    pub secret_key: Secret,
    /// The webhook endpoint's signing secret (`whsec_...`).
    pub webhook_secret: Secret,
    /// The currency charged (ISO 4217, lower case: `usd`).
    pub currency: String,
    /// What one credit costs, in the currency's minor unit (`1`: a cent).
    pub minor_per_credit: Decimal,
    /// Where Stripe sends the payer after paying.
    pub success_url: String,
    /// Where Stripe sends the payer who gives up.
    pub cancel_url: String,
    /// Credit packs the operator sells at a price of their own (a
    /// discount), besides any amount at `minor_per_credit`.
    pub packs: Vec<CreditPack>,
}

/// The most packs an operator may offer.
pub const PACKS_MAX: usize = 32;

/// A credit pack: so many credits for a fixed price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditPack {
    /// Its name, `[a-z0-9_-]{1,32}` (`starter`).
    pub name: String,
    /// The micro-credits it grants.
    pub credits_micros: i64,
    /// Its price in the currency's minor unit.
    pub amount_minor: i64,
}

impl CreditPack {
    /// Reads `name=credits:price_minor` (`starter=100:900`: 100 credits for
    /// 9.00); the error says what is wrong.
    pub fn parse(text: &str) -> std::result::Result<CreditPack, String> {
        let usage =
            || format!("{text:?} is not name=credits:price_in_minor_units (starter=100:900)");
        let (name, rest) = text.split_once('=').ok_or_else(usage)?;
        let (credits, price) = rest.split_once(':').ok_or_else(usage)?;
        let well_named = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !well_named {
            return Err(format!(
                "pack name {name:?} must be 1 to 32 of a-z, 0-9, _ and -"
            ));
        }
        let credits_micros = crate::money::parse_credits(credits)
            .ok()
            .and_then(|credits| crate::money::positive_micros(credits).ok())
            .ok_or_else(|| {
                format!("pack {name}: {credits:?} is not a positive number of credits")
            })?;
        let amount_minor = price
            .parse::<i64>()
            .ok()
            .filter(|amount| (1..=AMOUNT_MINOR_MAX).contains(amount))
            .ok_or_else(|| format!("pack {name}: {price:?} is not a price in minor units"))?;
        Ok(CreditPack {
            name: name.to_owned(),
            credits_micros,
            amount_minor,
        })
    }
}

/// The price of `credits_micros` in minor units: refused unless it is a
/// whole, positive number of minor units within Stripe's bound.
pub fn amount_minor(credits_micros: i64, minor_per_credit: Decimal) -> Result<i64> {
    let amount = Decimal::from(credits_micros) / Decimal::from(1_000_000) * minor_per_credit;
    if amount <= Decimal::ZERO || amount.fract() != Decimal::ZERO {
        return Err(Error::invalid(
            "credits",
            format!(
                "must cost a whole number of minor units ({minor_per_credit} per credit), \
                 more than zero"
            ),
        ));
    }
    let minor = amount
        .to_i64()
        .filter(|minor| *minor <= AMOUNT_MINOR_MAX)
        .ok_or_else(|| {
            Error::invalid(
                "credits",
                format!("must cost at most {AMOUNT_MINOR_MAX} minor units"),
            )
        })?;
    Ok(minor)
}

/// The Checkout Session form of a top-up (form-encoded by the client):
/// one line of `amount_minor` of the currency, the top-up's id as
/// `client_reference_id` and in the metadata, and the payment method saved
/// for later off-session charges.
pub fn checkout_form(
    settings: &StripeSettings,
    topup_id: &str,
    account_id: &str,
    credits: &str,
    amount_minor: i64,
) -> Vec<(String, String)> {
    let pair = |k: &str, v: String| (k.to_owned(), v);
    vec![
        pair("mode", "payment".into()),
        // A customer, so the saved method can be charged later.
        pair("customer_creation", "always".into()),
        pair("success_url", settings.success_url.clone()),
        pair("cancel_url", settings.cancel_url.clone()),
        pair("client_reference_id", topup_id.into()),
        pair("metadata[topup_id]", topup_id.into()),
        pair("metadata[account_id]", account_id.into()),
        pair("line_items[0][quantity]", "1".into()),
        pair(
            "line_items[0][price_data][currency]",
            settings.currency.clone(),
        ),
        pair(
            "line_items[0][price_data][unit_amount]",
            amount_minor.to_string(),
        ),
        pair(
            "line_items[0][price_data][product_data][name]",
            format!("{credits} credits"),
        ),
        pair(
            "payment_intent_data[setup_future_usage]",
            "off_session".into(),
        ),
        pair("payment_intent_data[metadata][topup_id]", topup_id.into()),
    ]
}

/// The PaymentIntent form of a charge of a saved method, without the payer
/// present: confirmed at once, off-session, carrying the top-up id.
pub fn payment_intent_form(
    currency: &str,
    amount_minor: i64,
    topup_id: &str,
    customer: &str,
    method: &str,
) -> Vec<(String, String)> {
    let pair = |k: &str, v: String| (k.to_owned(), v);
    vec![
        pair("amount", amount_minor.to_string()),
        pair("currency", currency.to_owned()),
        pair("customer", customer.to_owned()),
        pair("payment_method", method.to_owned()),
        pair("off_session", "true".into()),
        pair("confirm", "true".into()),
        pair("metadata[topup_id]", topup_id.to_owned()),
    ]
}

/// What Stripe answered to an off-session charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeAnswer {
    /// Paid (`status: succeeded`).
    Succeeded {
        /// The PaymentIntent (`pi_...`).
        payment_intent: String,
    },
    /// Not paid yet (`processing`, or the bank wants the customer:
    /// `requires_action`): Stripe's event will say.
    Pending {
        /// The PaymentIntent.
        payment_intent: String,
        /// Its status.
        status: String,
    },
    /// Refused (a declined card, a method that needs the customer): nothing
    /// was paid.
    Declined {
        /// Stripe's message, naming no secret.
        message: String,
    },
}

/// Stripe's error message in an error answer, bounded (it names what
/// Stripe refused, never our key), or `otherwise`.
fn error_message(value: &Value, otherwise: &str) -> String {
    value["error"]["message"]
        .as_str()
        .unwrap_or(otherwise)
        .chars()
        .take(200)
        .collect()
}

/// Reads Stripe's answer to an off-session PaymentIntent. Pure.
pub fn interpret_charge_answer(status: u16, body: &[u8]) -> Result<ChargeAnswer> {
    let unavailable = |detail: String| Error::UpstreamUnavailable {
        upstream: RAIL,
        detail,
    };
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| unavailable(format!("answered {status} with a body that is not JSON")))?;
    let text = |value: &Value| {
        value
            .as_str()
            .filter(|text| !text.is_empty() && text.len() <= super::RAIL_TEXT_CHARS_MAX)
            .map(str::to_owned)
    };
    if status == 402 || (status == 400 && value["error"]["type"] == "card_error") {
        return Ok(ChargeAnswer::Declined {
            message: error_message(&value, "the card was declined"),
        });
    }
    if !(200..300).contains(&status) {
        return Err(unavailable(format!(
            "refused the charge ({status}): {}",
            error_message(&value, "no message")
        )));
    }
    let payment_intent =
        text(&value["id"]).ok_or_else(|| unavailable("answered a payment without an id".into()))?;
    match value["status"].as_str() {
        Some("succeeded") => Ok(ChargeAnswer::Succeeded { payment_intent }),
        Some("requires_payment_method") | Some("canceled") => Ok(ChargeAnswer::Declined {
            message: "the saved payment method was refused".into(),
        }),
        Some(other) => Ok(ChargeAnswer::Pending {
            payment_intent,
            status: other.chars().take(64).collect(),
        }),
        None => Err(unavailable("answered a payment without a status".into())),
    }
}

/// `application/x-www-form-urlencoded` of `pairs`.
pub fn form_encode(pairs: &[(String, String)]) -> String {
    let encode = |text: &str| {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_owned(),
                other => format!("%{other:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Checks a `Stripe-Signature` header over `body` under `secret` at `now`:
/// a `t` within the tolerance and a `v1` that is the HMAC of `t.body`
/// (any of several `v1`s, as when Stripe rolls a secret). The reason of a
/// refusal names no secret.
pub fn verify_signature(
    header: &str,
    body: &[u8],
    secret: &Secret,
    now: UnixMillis,
) -> std::result::Result<(), String> {
    if header.len() > SIGNATURE_HEADER_CHARS_MAX {
        return Err("the signature header is too long".into());
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => signatures.push(value),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or("no timestamp (t=) in the signature header")?;
    if signatures.is_empty() {
        return Err("no v1 signature in the signature header".into());
    }
    if (now.div_euclid(1000) - timestamp).abs() > SIGNATURE_TOLERANCE_SECS {
        return Err(format!(
            "the signature's timestamp is more than {SIGNATURE_TOLERANCE_SECS} s from ours"
        ));
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .map_err(|_| "the webhook secret cannot key an HMAC".to_owned())?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    let matches = signatures.iter().any(|signature| {
        hex::decode(signature).is_ok_and(|given| constant_time_eq(&given, &expected))
    });
    if matches {
        Ok(())
    } else {
        Err("no v1 signature matches".into())
    }
}

/// What an event is about, as far as top-ups go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StripeEvent {
    /// A Checkout Session was paid (`checkout.session.completed` with
    /// `payment_status: paid`, or `checkout.session.async_payment_succeeded`).
    SessionPaid {
        /// Our top-up (`client_reference_id`, else `metadata.topup_id`).
        topup_id: String,
        /// What was paid, in minor units.
        amount_minor: i64,
        /// In which currency.
        currency: String,
        /// The payment intent that paid it (`pi_...`), which later refunds
        /// and disputes name.
        payment_intent: Option<String>,
    },
    /// Money went back or is contested (`charge.refunded`: the total
    /// refunded so far; `charge.dispute.created`: the amount disputed).
    Reversal {
        /// The event's type.
        kind: String,
        /// The payment intent whose charge it is.
        payment_intent: String,
        /// How much of the payment is taken back, in minor units (a total
        /// so far, not an increment).
        amount_minor: i64,
    },
    /// A PaymentIntent was paid (`payment_intent.succeeded`): a charge of
    /// a saved method, or the payment behind a checkout; it may save its
    /// method for later off-session charges.
    PaymentSucceeded {
        /// Our top-up (`metadata.topup_id`), when it names one.
        topup_id: Option<String>,
        /// The PaymentIntent.
        payment_intent: String,
        /// What it received, in minor units.
        amount_minor: i64,
        /// In which currency.
        currency: String,
        /// The customer and method to save, when it was set up for
        /// off-session use (or charged off-session).
        saved: Option<(String, String)>,
    },
    /// Anything else (a session completed but not paid yet, other types).
    Other {
        /// The event's type.
        kind: String,
    },
}

/// A verified event: its id, its type, and what it means for top-ups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedEvent {
    /// Stripe's event id (`evt_...`), unique per event.
    pub id: String,
    /// Its type (`checkout.session.completed`).
    pub kind: String,
    /// What it means here.
    pub event: StripeEvent,
}

/// Reads a verified event's body.
pub fn parse_event(body: &[u8]) -> Result<ParsedEvent> {
    let invalid = |message: &str| Error::invalid("event", message);
    let value: Value =
        serde_json::from_slice(body).map_err(|_| invalid("is not a JSON Stripe event"))?;
    let text = |value: &Value| {
        value
            .as_str()
            .filter(|text| !text.is_empty() && text.len() <= super::RAIL_TEXT_CHARS_MAX)
            .map(str::to_owned)
    };
    let id = text(&value["id"]).ok_or_else(|| invalid("has no id"))?;
    let kind = text(&value["type"]).ok_or_else(|| invalid("has no type"))?;
    let object = &value["data"]["object"];
    let paid = match kind.as_str() {
        "checkout.session.completed" => object["payment_status"] == "paid",
        "checkout.session.async_payment_succeeded" => true,
        _ => false,
    };
    let event = if paid {
        StripeEvent::SessionPaid {
            topup_id: text(&object["client_reference_id"])
                .or_else(|| text(&object["metadata"]["topup_id"]))
                .ok_or_else(|| invalid("names no top-up (client_reference_id)"))?,
            amount_minor: object["amount_total"]
                .as_i64()
                .ok_or_else(|| invalid("has no amount_total"))?,
            currency: text(&object["currency"]).ok_or_else(|| invalid("has no currency"))?,
            payment_intent: text(&object["payment_intent"]),
        }
    } else if kind == "payment_intent.succeeded" {
        let off_session = object["setup_future_usage"] == "off_session"
            || object["metadata"]["topup_id"].is_string() && object["customer"].is_string();
        let saved = match (text(&object["customer"]), text(&object["payment_method"])) {
            (Some(customer), Some(method)) if off_session => Some((customer, method)),
            _ => None,
        };
        match (
            text(&object["id"]),
            object["amount_received"].as_i64(),
            text(&object["currency"]),
        ) {
            (Some(payment_intent), Some(amount_minor), Some(currency)) => {
                StripeEvent::PaymentSucceeded {
                    topup_id: text(&object["metadata"]["topup_id"]),
                    payment_intent,
                    amount_minor,
                    currency,
                    saved,
                }
            }
            _ => StripeEvent::Other { kind: kind.clone() },
        }
    } else if matches!(kind.as_str(), "charge.refunded" | "charge.dispute.created") {
        // A refund's charge carries the total refunded so far; a dispute,
        // the amount disputed. Either names its payment intent.
        let amount = if kind == "charge.refunded" {
            &object["amount_refunded"]
        } else {
            &object["amount"]
        };
        // One naming no payment or no amount is recorded and moves
        // nothing (refusing it would only make Stripe retry it for days).
        match (
            text(&object["payment_intent"]),
            amount.as_i64().filter(|amount| *amount > 0),
        ) {
            (Some(payment_intent), Some(amount_minor)) => StripeEvent::Reversal {
                kind: kind.clone(),
                payment_intent,
                amount_minor,
            },
            _ => StripeEvent::Other { kind: kind.clone() },
        }
    } else {
        StripeEvent::Other { kind: kind.clone() }
    };
    Ok(ParsedEvent { id, kind, event })
}

/// A Checkout Session Stripe created: its id and where the payer pays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutSession {
    /// `cs_...`.
    pub id: String,
    /// The hosted payment page.
    pub url: String,
}

/// Stripe's API as the gate uses it: a trait, so tests and embedders can
/// put their own behind it.
pub trait StripeApi: Send + Sync + std::fmt::Debug {
    /// Creates a Checkout Session from `form`; `idempotency_key` makes a
    /// retried creation the same session.
    fn create_checkout_session(
        &self,
        form: &[(String, String)],
        idempotency_key: &str,
    ) -> Result<CheckoutSession>;

    /// Creates and confirms an off-session PaymentIntent from `form`;
    /// `idempotency_key` makes a retried charge the same charge. An `Err`
    /// means Stripe could not be asked or answered unusably: the charge
    /// may have happened, and is asked again under the same key.
    fn create_payment_intent(
        &self,
        form: &[(String, String)],
        idempotency_key: &str,
    ) -> Result<ChargeAnswer>;
}

/// Reads Stripe's answer to a Checkout Session creation. Pure.
pub fn interpret_checkout_answer(status: u16, body: &[u8]) -> Result<CheckoutSession> {
    let unavailable = |detail: String| Error::UpstreamUnavailable {
        upstream: RAIL,
        detail,
    };
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| unavailable(format!("answered {status} with a body that is not JSON")))?;
    if !(200..300).contains(&status) {
        return Err(unavailable(format!(
            "refused the checkout ({status}): {}",
            error_message(&value, "no message")
        )));
    }
    match (value["id"].as_str(), value["url"].as_str()) {
        (Some(id), Some(url)) if !id.is_empty() && url.starts_with("http") => Ok(CheckoutSession {
            id: id.to_owned(),
            url: url.to_owned(),
        }),
        _ => Err(unavailable("answered a session without id or url".into())),
    }
}

/// Stripe's API over HTTP (ureq), at the settings' base URL.
#[cfg(feature = "http")]
#[derive(Debug)]
pub struct HttpStripe {
    base: String,
    secret_key: Secret,
    http: ureq::Agent,
}

#[cfg(feature = "http")]
impl HttpStripe {
    /// A client for `settings`' API base and key, with short timeouts.
    pub fn new(settings: &StripeSettings) -> HttpStripe {
        let http = rail_agent(std::time::Duration::from_secs(20));
        HttpStripe {
            base: settings.api_base.trim_end_matches('/').to_owned(),
            secret_key: settings.secret_key.clone(),
            http,
        }
    }
}

#[cfg(feature = "http")]
impl HttpStripe {
    /// POSTs `form` to `path` with the key and `idempotency_key`; the
    /// status and body (bounded).
    fn post_form(
        &self,
        path: &str,
        form: &[(String, String)],
        idempotency_key: &str,
    ) -> Result<(u16, Vec<u8>)> {
        let unavailable = |detail: String| Error::UpstreamUnavailable {
            upstream: RAIL,
            detail,
        };
        let response = self
            .http
            .post(&format!("{}{path}", self.base))
            .header(
                "Authorization",
                &format!("Bearer {}", self.secret_key.expose()),
            )
            .header("Idempotency-Key", idempotency_key)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send(form_encode(form).as_bytes())
            .map_err(|err| unavailable(format!("could not be reached: {}", kind_of(&err))))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .with_config()
            .limit(API_RESPONSE_BYTES_MAX)
            .read_to_vec()
            .map_err(|err| unavailable(format!("answer unreadable: {}", kind_of(&err))))?;
        Ok((status, body))
    }
}

#[cfg(feature = "http")]
impl StripeApi for HttpStripe {
    fn create_payment_intent(
        &self,
        form: &[(String, String)],
        idempotency_key: &str,
    ) -> Result<ChargeAnswer> {
        let (status, body) = self.post_form("/v1/payment_intents", form, idempotency_key)?;
        interpret_charge_answer(status, &body)
    }

    fn create_checkout_session(
        &self,
        form: &[(String, String)],
        idempotency_key: &str,
    ) -> Result<CheckoutSession> {
        let (status, body) = self.post_form("/v1/checkout/sessions", form, idempotency_key)?;
        interpret_checkout_answer(status, &body)
    }
}

/// The HTTP client of a payment rail: `timeout` per call, 5 s to connect,
/// no redirects (a rail's API never redirects; a redirect would carry our
/// credential elsewhere), statuses read rather than raised.
#[cfg(feature = "http")]
pub(super) fn rail_agent(timeout: std::time::Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .timeout_connect(Some(std::time::Duration::from_secs(5)))
        .max_redirects(0)
        .http_status_as_error(false)
        .user_agent(concat!("creditgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// A transport error in words that carry nothing of the request.
#[cfg(feature = "http")]
pub(super) fn kind_of(err: &ureq::Error) -> String {
    match err {
        ureq::Error::Timeout(which) => format!("timed out ({which:?})"),
        ureq::Error::HostNotFound => "the host was not found".into(),
        ureq::Error::ConnectionFailed => "the connection failed".into(),
        ureq::Error::BodyExceedsLimit(_) => "the answer was too large".into(),
        _ => "a transport error".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, t: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn a_signature_verifies_within_the_tolerance_only() {
        let secret = Secret::new("whsec_test");
        let body = br#"{"id":"evt_1"}"#;
        let now = 1_800_000_000_000;
        let t = now / 1000;
        assert!(verify_signature(&sign("whsec_test", t, body), body, &secret, now).is_ok());
        // A second v1 (a rolled secret) is fine when one matches.
        let rolled = format!("{},v1=00ff", sign("whsec_test", t, body));
        assert!(verify_signature(&rolled, body, &secret, now).is_ok());
        let refusals = [
            sign("whsec_other", t, body),
            sign("whsec_test", t - SIGNATURE_TOLERANCE_SECS - 1, body),
            sign("whsec_test", t + SIGNATURE_TOLERANCE_SECS + 1, body),
            format!("t={t}"),
            "v1=abcd".to_owned(),
            String::new(),
            "x".repeat(SIGNATURE_HEADER_CHARS_MAX + 1),
        ];
        for header in refusals {
            assert!(
                verify_signature(&header, body, &secret, now).is_err(),
                "{header}"
            );
        }
        // Another body under the same signature.
        let header = sign("whsec_test", t, body);
        assert!(verify_signature(&header, br#"{"id":"evt_2"}"#, &secret, now).is_err());
    }

    #[test]
    fn amounts_are_whole_minor_units() {
        let cent = Decimal::ONE;
        assert_eq!(amount_minor(5_000_000, cent).expect("5 credits"), 5);
        assert_eq!(amount_minor(2_500_000, Decimal::from(10)).expect("2.5"), 25);
        assert!(amount_minor(1_500_000, cent).is_err(), "1.5 cents");
        assert!(amount_minor(0, cent).is_err());
        assert!(
            amount_minor(1_000_000_000_000_000, cent).is_err(),
            "too much"
        );
    }

    #[test]
    fn events_are_read_for_what_they_pay() {
        let paid = br#"{"id":"evt_1","type":"checkout.session.completed","data":{"object":
            {"client_reference_id":"top_1","payment_status":"paid","amount_total":500,"currency":"usd"}}}"#;
        assert_eq!(
            parse_event(paid).expect("paid").event,
            StripeEvent::SessionPaid {
                topup_id: "top_1".into(),
                amount_minor: 500,
                currency: "usd".into(),
                payment_intent: None,
            }
        );
        let unpaid = br#"{"id":"evt_2","type":"checkout.session.completed","data":{"object":
            {"client_reference_id":"top_1","payment_status":"unpaid"}}}"#;
        assert!(matches!(
            parse_event(unpaid).expect("unpaid").event,
            StripeEvent::Other { .. }
        ));
        let refund = br#"{"id":"evt_3","type":"charge.refunded","data":{"object":
            {"payment_intent":"pi_1","amount":500,"amount_refunded":200}}}"#;
        assert_eq!(
            parse_event(refund).expect("refund").event,
            StripeEvent::Reversal {
                kind: "charge.refunded".into(),
                payment_intent: "pi_1".into(),
                amount_minor: 200,
            }
        );
        let dispute = br#"{"id":"evt_5","type":"charge.dispute.created","data":{"object":
            {"payment_intent":"pi_1","amount":500,"charge":"ch_1"}}}"#;
        assert!(matches!(
            parse_event(dispute).expect("dispute").event,
            StripeEvent::Reversal {
                amount_minor: 500,
                ..
            }
        ));
        let nameless = br#"{"id":"evt_6","type":"charge.refunded","data":{"object":{}}}"#;
        assert!(matches!(
            parse_event(nameless).expect("recorded").event,
            StripeEvent::Other { .. }
        ));
        for bad in [&b"not json"[..], br#"{"type":"x"}"#, br#"{"id":"evt_4"}"#] {
            assert!(parse_event(bad).is_err());
        }
    }

    #[test]
    fn the_form_is_encoded_and_a_secret_never_prints() {
        assert_eq!(
            form_encode(&[("a[b]".into(), "x y&z".into())]),
            "a%5Bb%5D=x+y%26z"
        );
        let secret = Secret::new("sk_live_abc");
        assert!(!format!("{secret:?}").contains("abc"));
        assert_eq!(
            interpret_checkout_answer(200, br#"{"id":"cs_1","url":"https://pay.test/cs_1"}"#)
                .expect("session")
                .id,
            "cs_1"
        );
        assert!(interpret_checkout_answer(402, br#"{"error":{"message":"no"}}"#).is_err());
        assert!(interpret_checkout_answer(200, b"<html>").is_err());
    }
}
