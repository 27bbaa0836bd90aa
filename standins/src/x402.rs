//! A stand-in for an x402 (version 2) facilitator: `POST /verify` and
//! `POST /settle`, each taking `{x402Version, paymentPayload,
//! paymentRequirements}` and answering `{isValid, invalidReason, payer}` or
//! `{success, errorReason, payer, transaction, network}` as the protocol
//! documents. It stands in for the chain too: a payment's "signature" is
//! valid when it is [`signature_of`] its authorization, a payer named
//! `0xbroke` has no funds, and a settled nonce cannot be used by another
//! payment. Settling the same payment again answers the same transaction
//! (the idempotent facilitator a careful server relies on after a lost
//! answer). A test can make it hang after settling, fail, or report
//! another amount, and can build the `PAYMENT-SIGNATURE` a wallet would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::{Reply, Seen, StandIn};

/// How the stand-in misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// As documented.
    Honest,
    /// Settles, then answers only after this long (longer than the
    /// server's timeout: the answer is lost, the money moved).
    HangAfterSettling(Duration),
    /// Answers 500 to everything.
    Down,
    /// Settles and reports this amount instead of the one asked.
    ReportAmount(i64),
}

/// A running facilitator stand-in.
pub struct FacilitatorStandIn {
    /// The server.
    pub server: StandIn,
    mode: Arc<Mutex<Mode>>,
    settled: Arc<Mutex<HashMap<String, String>>>,
}

/// The "signature" a valid payment carries over its authorization.
pub fn signature_of(authorization: &Value) -> String {
    let digest = Sha256::digest(
        format!(
            "{}|{}|{}|{}",
            authorization["from"].as_str().unwrap_or(""),
            authorization["to"].as_str().unwrap_or(""),
            authorization["value"].as_str().unwrap_or(""),
            authorization["nonce"].as_str().unwrap_or("")
        )
        .as_bytes(),
    );
    format!(
        "0x{}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// Decodes a `PAYMENT-REQUIRED` header.
pub fn decode(header: &str) -> Value {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(header)
        .expect("base64");
    serde_json::from_slice(&bytes).expect("JSON")
}

/// The `PAYMENT-SIGNATURE` a wallet at `from` sends to pay the first offer
/// of a `PAYMENT-REQUIRED` header, with `nonce`.
pub fn pay(payment_required: &str, from: &str, nonce: &str) -> String {
    let required = decode(payment_required);
    let accepted = required["accepts"][0].clone();
    let authorization = json!({
        "from": from,
        "to": accepted["payTo"],
        "value": accepted["amount"],
        "validAfter": "0",
        "validBefore": "9999999999",
        "nonce": nonce,
    });
    let payload = json!({
        "x402Version": 2,
        "resource": required["resource"],
        "accepted": accepted,
        "payload": {"signature": signature_of(&authorization), "authorization": authorization},
    });
    base64::engine::general_purpose::STANDARD.encode(payload.to_string())
}

/// Whether `payload` pays `requirements`: the reason it does not.
fn check(
    payload: &Value,
    requirements: &Value,
    settled: &HashMap<String, String>,
) -> Option<String> {
    let inner = &payload["payload"];
    let authorization = &inner["authorization"];
    if inner["signature"].as_str() != Some(signature_of(authorization).as_str()) {
        return Some("invalid_exact_evm_payload_signature".into());
    }
    if authorization["to"] != requirements["payTo"]
        || authorization["value"] != requirements["amount"]
    {
        return Some("invalid_exact_evm_payload_recipient_mismatch".into());
    }
    if authorization["from"] == "0xbroke" {
        return Some("insufficient_funds".into());
    }
    let nonce = authorization["nonce"].as_str().unwrap_or("");
    if settled.contains_key(nonce) {
        return Some("invalid_exact_evm_payload_authorization_nonce_used".into());
    }
    None
}

impl FacilitatorStandIn {
    /// Starts an honest facilitator on `network`.
    pub fn start(network: &str) -> FacilitatorStandIn {
        let mode = Arc::new(Mutex::new(Mode::Honest));
        // nonce -> transaction
        let settled: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let network = network.to_owned();
        let (mode_in, settled_in) = (mode.clone(), settled.clone());
        let server = StandIn::start(8, move |seen: &Seen| {
            let mode = *mode_in.lock().expect("mode");
            if mode == Mode::Down {
                return Reply::json(500, &json!({"error": "facilitator down"}));
            }
            let body = seen.json();
            let (payload, requirements) = (&body["paymentPayload"], &body["paymentRequirements"]);
            let authorization = &payload["payload"]["authorization"];
            let payer = authorization["from"].clone();
            let nonce = authorization["nonce"].as_str().unwrap_or("").to_owned();
            let mut settled = settled_in.lock().expect("settled");
            match (seen.method.as_str(), seen.url.as_str()) {
                ("POST", "/verify") => match check(payload, requirements, &settled) {
                    None => Reply::json(200, &json!({"isValid": true, "payer": payer})),
                    Some(reason) => Reply::json(
                        200,
                        &json!({"isValid": false, "invalidReason": reason, "payer": payer}),
                    ),
                },
                ("POST", "/settle") => {
                    let transaction = match settled.get(&nonce) {
                        // The same payment settled before: the same answer.
                        Some(transaction)
                            if payload["payload"]["signature"]
                                == json!(signature_of(authorization)) =>
                        {
                            transaction.clone()
                        }
                        _ => {
                            if let Some(reason) = check(payload, requirements, &settled) {
                                return Reply::json(
                                    200,
                                    &json!({"success": false, "errorReason": reason,
                                            "payer": payer, "transaction": "",
                                            "network": network}),
                                );
                            }
                            let transaction = format!(
                                "0x{}",
                                Sha256::digest(nonce.as_bytes())
                                    .iter()
                                    .map(|b| format!("{b:02x}"))
                                    .collect::<String>()
                            );
                            settled.insert(nonce.clone(), transaction.clone());
                            transaction
                        }
                    };
                    let mut answer = json!({"success": true, "payer": payer,
                                            "transaction": transaction, "network": network});
                    match mode {
                        Mode::ReportAmount(amount) => {
                            answer["amount"] = json!(amount.to_string());
                            Reply::json(200, &answer)
                        }
                        Mode::HangAfterSettling(delay) => Reply::json(200, &answer).after(delay),
                        _ => Reply::json(200, &answer),
                    }
                }
                _ => Reply::json(404, &json!({"error": "not found"})),
            }
        });
        FacilitatorStandIn {
            server,
            mode,
            settled,
        }
    }

    /// Changes how it behaves from now on.
    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().expect("mode") = mode;
    }

    /// How many distinct payments it settled (moved money for).
    pub fn settlements(&self) -> usize {
        self.settled.lock().expect("settled").len()
    }

    /// Its base URL.
    pub fn url(&self) -> &str {
        self.server.base_url()
    }
}
