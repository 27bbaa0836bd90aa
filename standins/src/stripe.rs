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

/// The `checkout.session.completed` event Stripe sends when a session of
/// `amount_total` for top-up `reference` is paid.
pub fn paid_event(event_id: &str, reference: &str, amount_total: i64, currency: &str) -> String {
    json!({
        "id": event_id, "object": "event", "type": "checkout.session.completed",
        "data": {"object": {
            "object": "checkout.session", "client_reference_id": reference,
            "payment_status": "paid", "amount_total": amount_total, "currency": currency,
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
