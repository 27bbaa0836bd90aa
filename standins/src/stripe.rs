//! A stand-in for Stripe's API as a top-up rail uses it: `POST
//! /v1/checkout/sessions` (form-encoded, `Authorization: Bearer sk_...`,
//! `Idempotency-Key` answering the same session again), Stripe's error
//! body for a bad key or a missing field, and the signing of webhook
//! events as Stripe does it (`Stripe-Signature: t=..,v1=<hex HMAC-SHA256
//! of "t.body">`), so a test can deliver what Stripe would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::{Reply, Seen, StandIn};

/// A running Stripe stand-in.
pub struct StripeStandIn {
    /// The server.
    pub server: StandIn,
}

/// The decoded pairs of a form body.
pub fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    let decode = |text: &str| {
        let bytes = text.replace('+', " ").into_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                if let Ok(b) = u8::from_str_radix(hex, 16) {
                    out.push(b);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

impl StripeStandIn {
    /// Starts a stand-in accepting `secret_key`.
    pub fn start(secret_key: &str) -> StripeStandIn {
        let secret_key = secret_key.to_owned();
        let sessions: Arc<Mutex<HashMap<String, Value>>> = Arc::default();
        let intents: Arc<Mutex<HashMap<String, (u16, Value)>>> = Arc::default();
        let base: Arc<Mutex<String>> = Arc::default();
        let base_for_handler = base.clone();
        let server = StandIn::start(4, move |seen: &Seen| {
            if seen.header("authorization") != Some(&format!("Bearer {secret_key}")) {
                return Reply::json(
                    401,
                    &json!({"error": {"type": "invalid_request_error",
                                      "message": "Invalid API Key provided: sk_****"}}),
                );
            }
            if seen.method == "POST" && seen.url == "/v1/payment_intents" {
                return payment_intent(&seen.body, seen.header("idempotency-key"), &intents);
            }
            if seen.method != "POST" || seen.url != "/v1/checkout/sessions" {
                return Reply::json(
                    404,
                    &json!({"error": {"type": "invalid_request_error",
                                      "message": "Unrecognized request URL"}}),
                );
            }
            let form: HashMap<String, String> = form_pairs(&seen.body).into_iter().collect();
            let field = |name: &str| form.get(name).cloned();
            let (Some(reference), Some(amount), Some(currency), Some(_success)) = (
                field("client_reference_id"),
                field("line_items[0][price_data][unit_amount]")
                    .and_then(|amount| amount.parse::<i64>().ok()),
                field("line_items[0][price_data][currency]"),
                field("success_url"),
            ) else {
                return Reply::json(
                    400,
                    &json!({"error": {"type": "invalid_request_error",
                                      "message": "Missing required param"}}),
                );
            };
            let key = seen.header("idempotency-key").unwrap_or("").to_owned();
            let mut sessions = sessions.lock().expect("sessions");
            let count = sessions.len();
            let base = base_for_handler.lock().expect("base").clone();
            let session = sessions
                .entry(if key.is_empty() {
                    format!("#{count}")
                } else {
                    key
                })
                .or_insert_with(|| {
                    let id = format!("cs_test_{count:04}");
                    json!({
                        "id": id, "object": "checkout.session",
                        "url": format!("{base}/pay/{id}"),
                        "client_reference_id": reference,
                        "amount_total": amount, "currency": currency,
                        "payment_status": "unpaid",
                        "metadata": {"topup_id": field("metadata[topup_id]")},
                    })
                })
                .clone();
            Reply::json(200, &session)
        });
        *base.lock().expect("base") = server.base_url().to_owned();
        StripeStandIn { server }
    }

    /// The forms of every creation asked for, decoded, in order.
    pub fn forms(&self) -> Vec<Value> {
        self.server
            .seen()
            .iter()
            .filter(|seen| seen.method == "POST")
            .map(|seen| seen.body.clone())
            .map(|body| json!(form_pairs(&body)))
            .collect()
    }
}

/// A method whose off-session charges are declined, as Stripe's test card
/// `pm_card_chargeDeclined` is.
pub const DECLINED_METHOD: &str = "pm_card_chargeDeclined";

/// `POST /v1/payment_intents` (confirm, off-session): succeeded, or 402
/// `card_declined` for [`DECLINED_METHOD`]; the same idempotency key
/// answers the same intent again (one charge).
fn payment_intent(
    body: &[u8],
    key: Option<&str>,
    intents: &Mutex<HashMap<String, (u16, Value)>>,
) -> Reply {
    let form: HashMap<String, String> = form_pairs(body).into_iter().collect();
    let mut intents = intents.lock().expect("intents");
    let count = intents.len();
    let key = key.map_or_else(|| format!("#{count}"), str::to_owned);
    let (status, answer) = intents
        .entry(key)
        .or_insert_with(|| {
            let id = format!("pi_test_{count:04}");
            let field = |name: &str| form.get(name).cloned().unwrap_or_default();
            if field("payment_method") == DECLINED_METHOD {
                (
                    402,
                    json!({"error": {"type": "card_error", "code": "card_declined",
                                     "decline_code": "generic_decline",
                                     "message": "Your card was declined.",
                                     "payment_intent": {"id": id, "status": "requires_payment_method"}}}),
                )
            } else {
                (
                    200,
                    json!({"id": id, "object": "payment_intent", "status": "succeeded",
                           "amount": field("amount").parse::<i64>().unwrap_or(0),
                           "amount_received": field("amount").parse::<i64>().unwrap_or(0),
                           "currency": field("currency"), "customer": field("customer"),
                           "payment_method": field("payment_method"),
                           "metadata": {"topup_id": field("metadata[topup_id]")}}),
                )
            }
        })
        .clone();
    Reply::json(status, &answer)
}

/// The `payment_intent.succeeded` event of a checkout's payment made with
/// `setup_future_usage=off_session`: it saves `method` of `customer`.
pub fn saved_card_event(
    event_id: &str,
    reference: &str,
    amount: i64,
    customer: &str,
    method: &str,
) -> String {
    json!({
        "id": event_id, "object": "event", "type": "payment_intent.succeeded",
        "data": {"object": {
            "object": "payment_intent", "id": format!("pi_{reference}"),
            "amount_received": amount, "currency": "usd", "customer": customer,
            "payment_method": method, "setup_future_usage": "off_session",
            "metadata": {"topup_id": reference},
        }},
    })
    .to_string()
}

/// The `checkout.session.completed` event Stripe sends when a session of
/// `amount_total` for top-up `reference` is paid.
pub fn paid_event(event_id: &str, reference: &str, amount_total: i64, currency: &str) -> String {
    json!({
        "id": event_id, "object": "event", "type": "checkout.session.completed",
        "data": {"object": {
            "object": "checkout.session", "client_reference_id": reference,
            "payment_status": "paid", "amount_total": amount_total, "currency": currency,
            "payment_intent": format!("pi_{reference}"),
        }},
    })
    .to_string()
}

/// The `charge.refunded` event Stripe sends when `amount_refunded` (the
/// total so far) of the payment of top-up `reference` was refunded.
pub fn refunded_event(event_id: &str, reference: &str, amount_refunded: i64) -> String {
    json!({
        "id": event_id, "object": "event", "type": "charge.refunded",
        "data": {"object": {
            "object": "charge", "payment_intent": format!("pi_{reference}"),
            "amount_refunded": amount_refunded, "refunded": true,
        }},
    })
    .to_string()
}

/// Stripe's `Stripe-Signature` header of `body`, signed at `t` (Unix
/// seconds) with the endpoint secret.
pub fn signature(secret: &str, t: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(format!("{t}.{body}").as_bytes());
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}
