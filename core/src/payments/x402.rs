//! x402 (version 2) as a top-up rail: an agent with a crypto wallet pays
//! for credits inside the HTTP exchange, with no browser and no card. This
//! module holds the settings an operator gives, the pure parts of the
//! protocol (the `PAYMENT-REQUIRED` and `PAYMENT-RESPONSE` headers, reading
//! a `PAYMENT-SIGNATURE`, checking what it accepted against what we offer,
//! reading a facilitator's answers) and, with the `http` feature, the
//! client of a facilitator's `POST /verify` and `POST /settle`.
//!
//! Only the `exact` scheme is offered: the payer signs a transfer of
//! exactly the amount asked, which becomes exactly that many credits at
//! the operator's rate ([`X402Settings::atomic_per_credit`]). Amounts are
//! whole atomic units of the asset (USDC has six decimals); the amounts we
//! ask for are rounded up to ones that make a whole number of micro-credits,
//! so no conversion ever rounds.
//!
//! A payment is keyed by its nonce (EIP-3009's `authorization.nonce`, with
//! the network and the payer; a digest of the payload for schemes without
//! one): the gate credits each key once.

use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::money::{AMOUNT_MICROS_MAX, MICROS_PER_CREDIT};

pub use crate::secret::Secret;

/// The rail's name in `topups.rail` and `payment_events.rail`.
pub const RAIL: &str = "x402";
/// The protocol version spoken.
pub const X402_VERSION: u64 = 2;
/// The one scheme offered.
pub const SCHEME: &str = "exact";
/// The longest `PAYMENT-SIGNATURE` header read (base64 of a JSON payload;
/// an `exact` EVM payment is under 2 KiB, and the appliance refuses any
/// header line over 8 KiB before this).
pub const PAYMENT_HEADER_CHARS_MAX: usize = 8_000;
/// The largest answer read from a facilitator.
pub const FACILITATOR_RESPONSE_BYTES_MAX: u64 = 64 * 1024;
/// The longest string taken from a payload or a facilitator's answer
/// (addresses, nonces, transaction hashes, reasons).
pub const FIELD_CHARS_MAX: usize = 256;

/// How an operator sells credits through x402.
#[derive(Debug, Clone, PartialEq)]
pub struct X402Settings {
    /// The facilitator's base URL (`https://x402.org/facilitator`; a stand-in
    /// in tests): `/verify` and `/settle` are under it.
    pub facilitator_url: String,
    /// A bearer token for facilitators that want one.
    pub facilitator_token: Option<Secret>,
    /// The network, as CAIP-2 (`eip155:8453` is Base).
    pub network: String,
    /// The asset's address on that network (the USDC contract).
    pub asset: String,
    /// The asset's short name, kept as a top-up's currency (`usdc`).
    pub asset_name: String,
    /// The operator's address that receives payments.
    pub pay_to: String,
    /// Atomic units of the asset one credit costs (`10000`: a cent of USDC).
    pub atomic_per_credit: i64,
    /// The least a payment may credit, in micro-credits: a shortfall below
    /// it is asked for as this much.
    pub min_topup_micros: i64,
    /// The most one payment may credit, in micro-credits.
    pub max_topup_micros: i64,
    /// How long the payer's authorization must stay valid, in seconds.
    pub max_timeout_seconds: u64,
    /// The scheme's `extra` (the asset's EIP-712 domain: `{"name": "USD
    /// Coin", "version": "2"}`).
    pub extra: Value,
}

impl X402Settings {
    /// Checks the settings an operator gave; the reason names the setting.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.atomic_per_credit <= 0 {
            return Err("the price of a credit in atomic units must be positive".into());
        }
        if self.min_topup_micros <= 0 || self.min_topup_micros > self.max_topup_micros {
            return Err("the smallest top-up must be positive and at most the largest".into());
        }
        if self.max_topup_micros > AMOUNT_MICROS_MAX {
            return Err("the largest top-up is above the largest amount".into());
        }
        for (name, value) in [
            ("network", &self.network),
            ("asset", &self.asset),
            ("pay-to address", &self.pay_to),
            ("asset name", &self.asset_name),
        ] {
            if value.is_empty() || value.len() > FIELD_CHARS_MAX {
                return Err(format!(
                    "the {name} must be 1 to {FIELD_CHARS_MAX} characters"
                ));
            }
        }
        if !self.network.contains(':') {
            return Err("the network must be a CAIP-2 id (eip155:8453)".into());
        }
        atomic_for(self, self.max_topup_micros).map(|_| ())
    }

    /// The smallest step of atomic units that is a whole number of
    /// micro-credits.
    fn atomic_step(&self) -> i128 {
        let rate = i128::from(self.atomic_per_credit);
        rate / gcd(rate, i128::from(MICROS_PER_CREDIT))
    }
}

fn gcd(a: i128, b: i128) -> i128 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The atomic units to ask for `micros` micro-credits: rounded up to a
/// whole number of micro-credits' worth, so it converts back exactly.
pub fn atomic_for(settings: &X402Settings, micros: i64) -> std::result::Result<i64, String> {
    let rate = i128::from(settings.atomic_per_credit);
    let raw = (i128::from(micros) * rate + i128::from(MICROS_PER_CREDIT) - 1)
        / i128::from(MICROS_PER_CREDIT);
    let step = settings.atomic_step();
    let rounded = (raw + step - 1) / step * step;
    i64::try_from(rounded).map_err(|_| "the amount in atomic units is too large".to_owned())
}

/// The micro-credits `atomic` units buy, or `None` unless that is a whole,
/// positive number.
pub fn micros_for(settings: &X402Settings, atomic: i64) -> Option<i64> {
    let product = i128::from(atomic) * i128::from(MICROS_PER_CREDIT);
    let rate = i128::from(settings.atomic_per_credit);
    (atomic > 0 && product % rate == 0)
        .then(|| i64::try_from(product / rate).ok())
        .flatten()
}

/// What a payment for `micros` must meet: one `accepts` entry.
pub fn requirements(settings: &X402Settings, atomic: i64) -> Value {
    json!({
        "scheme": SCHEME,
        "network": settings.network,
        "amount": atomic.to_string(),
        "asset": settings.asset,
        "payTo": settings.pay_to,
        "maxTimeoutSeconds": settings.max_timeout_seconds,
        "extra": settings.extra,
    })
}

/// The micro-credits to ask for when `shortfall_micros` are missing: at
/// least the smallest top-up, at most the largest (`None` when even the
/// largest would not cover it).
pub fn ask_for(settings: &X402Settings, shortfall_micros: i64) -> Option<i64> {
    let micros = shortfall_micros.max(settings.min_topup_micros);
    (micros <= settings.max_topup_micros).then_some(micros)
}

/// The `PAYMENT-REQUIRED` header: base64 of `{x402Version, error, resource,
/// accepts}` asking for `micros` micro-credits' worth, for `resource_url`.
pub fn payment_required_header(
    settings: &X402Settings,
    micros: i64,
    resource_url: &str,
    error: &str,
) -> Option<String> {
    let atomic = atomic_for(settings, micros).ok()?;
    let body = json!({
        "x402Version": X402_VERSION,
        "error": error,
        "resource": {
            "url": resource_url,
            "description": "credits for this account",
            "mimeType": "application/json",
        },
        "accepts": [requirements(settings, atomic)],
    });
    Some(base64::engine::general_purpose::STANDARD.encode(body.to_string()))
}

/// A `PAYMENT-SIGNATURE` read and checked against what we offer: not yet
/// verified by the facilitator.
#[derive(Debug, Clone, PartialEq)]
pub struct Payment {
    /// The decoded payload, as sent on to the facilitator.
    pub payload: Value,
    /// The requirements we would have issued for its amount (what the
    /// facilitator checks it against: ours, not the payer's copy).
    pub requirements: Value,
    /// The amount, in atomic units.
    pub atomic: i64,
    /// The micro-credits it buys.
    pub micros: i64,
    /// What makes it unique: network, payer and nonce (or a digest).
    pub key: String,
}

/// Reads a `PAYMENT-SIGNATURE` header: base64 JSON of a version-2 payment
/// payload whose `accepted` requirements are ours (scheme, network, asset,
/// payee) for an amount within bounds that converts exactly. The refusal
/// is `payment_invalid` with the reason.
pub fn read_payment(settings: &X402Settings, header: &str) -> Result<Payment> {
    let refuse = |reason: &str| Error::PaymentInvalid {
        reason: reason.to_owned(),
    };
    if header.len() > PAYMENT_HEADER_CHARS_MAX {
        return Err(refuse("the PAYMENT-SIGNATURE header is too long"));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(header.trim())
        .map_err(|_| refuse("the PAYMENT-SIGNATURE header is not base64"))?;
    let payload: Value = serde_json::from_slice(&bytes)
        .map_err(|_| refuse("the PAYMENT-SIGNATURE header is not base64 of JSON"))?;
    if payload["x402Version"].as_u64() != Some(X402_VERSION) {
        return Err(refuse("only x402Version 2 is accepted"));
    }
    let accepted = &payload["accepted"];
    fn text(value: &Value) -> Option<&str> {
        value
            .as_str()
            .filter(|text| !text.is_empty() && text.len() <= FIELD_CHARS_MAX)
    }
    if text(&accepted["scheme"]) != Some(SCHEME) {
        return Err(refuse("the accepted scheme is not exact"));
    }
    if text(&accepted["network"]) != Some(settings.network.as_str()) {
        return Err(refuse("the accepted network is not the one offered"));
    }
    let same =
        |value: &Value, ours: &str| text(value).is_some_and(|v| v.eq_ignore_ascii_case(ours));
    if !same(&accepted["asset"], &settings.asset) {
        return Err(refuse("the accepted asset is not the one offered"));
    }
    if !same(&accepted["payTo"], &settings.pay_to) {
        return Err(refuse("the accepted payee is not this server's"));
    }
    let atomic = text(&accepted["amount"])
        .filter(|amount| amount.len() <= 18 && amount.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|amount| amount.parse::<i64>().ok())
        .ok_or_else(|| refuse("the accepted amount is not a whole number of atomic units"))?;
    let micros = micros_for(settings, atomic)
        .ok_or_else(|| refuse("the amount is not a whole number of micro-credits"))?;
    if micros < settings.min_topup_micros || micros > settings.max_topup_micros {
        return Err(refuse("the amount is outside the top-up bounds"));
    }
    let inner = &payload["payload"];
    if !inner.is_object() {
        return Err(refuse("the payment has no payload"));
    }
    let authorization = &inner["authorization"];
    if let Some(value) = authorization.get("value") {
        if text(value) != Some(atomic.to_string().as_str()) {
            return Err(refuse(
                "the signed amount does not match the accepted amount",
            ));
        }
    }
    let key = match (text(&authorization["from"]), text(&authorization["nonce"])) {
        (Some(from), Some(nonce)) => {
            format!("{}:{}:{}", settings.network, from, nonce).to_ascii_lowercase()
        }
        _ => format!(
            "{}:sha256:{}",
            settings.network,
            hex::encode(Sha256::digest(inner.to_string().as_bytes()))
        ),
    };
    Ok(Payment {
        requirements: requirements(settings, atomic),
        payload,
        atomic,
        micros,
        key,
    })
}

/// The body of a `/verify` or `/settle` call for `payment`.
pub fn facilitator_request(payment: &Payment) -> Value {
    json!({
        "x402Version": X402_VERSION,
        "paymentPayload": payment.payload,
        "paymentRequirements": payment.requirements,
    })
}

/// A settlement the facilitator reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// The transaction on the network.
    pub transaction: String,
    /// The network it is on.
    pub network: String,
    /// Who paid.
    pub payer: String,
    /// The atomic units it moved, when the facilitator says (else the
    /// amount asked).
    pub atomic: Option<i64>,
}

/// What a facilitator answered: `Ok` with what it did, or `Err` with the
/// reason it refused.
pub type Answer<T> = std::result::Result<T, String>;

fn reason_of(value: &Value, field: &str) -> String {
    value[field]
        .as_str()
        .unwrap_or("no reason given")
        .chars()
        .take(FIELD_CHARS_MAX)
        .collect()
}

/// Reads a `/verify` answer (`{isValid, invalidReason, payer}`). Pure.
pub fn read_verify(status: u16, body: &[u8]) -> Result<Answer<()>> {
    let value = facilitator_json(status, body)?;
    match value["isValid"].as_bool() {
        Some(true) => Ok(Ok(())),
        Some(false) => Ok(Err(reason_of(&value, "invalidReason"))),
        None => Err(unusable("answered /verify without isValid")),
    }
}

/// Reads a `/settle` answer (`{success, errorReason, payer, transaction,
/// network, amount}`). Pure.
pub fn read_settle(status: u16, body: &[u8]) -> Result<Answer<Settlement>> {
    let value = facilitator_json(status, body)?;
    let field = |name: &str| {
        value[name]
            .as_str()
            .filter(|text| text.len() <= FIELD_CHARS_MAX)
            .unwrap_or("")
            .to_owned()
    };
    match value["success"].as_bool() {
        Some(true) => {
            let transaction = field("transaction");
            if transaction.is_empty() {
                return Err(unusable("settled without a transaction"));
            }
            let atomic = match &value["amount"] {
                Value::Null => None,
                amount => Some(
                    amount
                        .as_str()
                        .and_then(|text| text.parse::<i64>().ok())
                        .ok_or_else(|| unusable("settled an amount that is not a number"))?,
                ),
            };
            Ok(Ok(Settlement {
                transaction,
                network: field("network"),
                payer: field("payer"),
                atomic,
            }))
        }
        Some(false) => Ok(Err(reason_of(&value, "errorReason"))),
        None => Err(unusable("answered /settle without success")),
    }
}

fn unusable(detail: &str) -> Error {
    Error::UpstreamUnavailable {
        upstream: "x402 facilitator",
        detail: detail.to_owned(),
    }
}

fn facilitator_json(status: u16, body: &[u8]) -> Result<Value> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| unusable(&format!("answered {status} with a body that is not JSON")))?;
    // A refusal comes as 200 or 400 with the reason in the body; anything
    // else is the facilitator's failure.
    if !(200..300).contains(&status) && status != 400 && status != 402 {
        return Err(unusable(&format!("answered {status}")));
    }
    Ok(value)
}

/// The `PAYMENT-RESPONSE` header for a settlement: base64 of `{success,
/// transaction, network, payer}`.
pub fn payment_response_header(settlement: &Settlement) -> String {
    let body = json!({
        "success": true,
        "transaction": settlement.transaction,
        "network": settlement.network,
        "payer": settlement.payer,
    });
    base64::engine::general_purpose::STANDARD.encode(body.to_string())
}

/// A facilitator as the gate uses it: a trait, so tests and embedders can
/// put their own behind it. Each call returns the HTTP status and body.
pub trait Facilitator: Send + Sync + std::fmt::Debug {
    /// `POST /verify` with `body`.
    fn verify(&self, body: &Value) -> Result<(u16, Vec<u8>)>;
    /// `POST /settle` with `body`. An `Err` means the outcome is unknown:
    /// the payment may have settled.
    fn settle(&self, body: &Value) -> Result<(u16, Vec<u8>)>;
}

/// A facilitator over HTTP (ureq), at the settings' URL.
#[cfg(feature = "http")]
#[derive(Debug)]
pub struct HttpFacilitator {
    base: String,
    token: Option<Secret>,
    http: ureq::Agent,
}

#[cfg(feature = "http")]
impl HttpFacilitator {
    /// A client for `settings`' facilitator, with `timeout` per call.
    pub fn new(settings: &X402Settings, timeout: std::time::Duration) -> HttpFacilitator {
        let http = super::stripe::rail_agent(timeout);
        HttpFacilitator {
            base: settings.facilitator_url.trim_end_matches('/').to_owned(),
            token: settings.facilitator_token.clone(),
            http,
        }
    }

    fn post(&self, operation: &str, body: &Value) -> Result<(u16, Vec<u8>)> {
        let mut request = self
            .http
            .post(&format!("{}/{operation}", self.base))
            .header("Content-Type", "application/json");
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {}", token.expose()));
        }
        let response = request
            .send(body.to_string().as_bytes())
            .map_err(|err| unusable(&format!("/{operation}: {}", super::stripe::kind_of(&err))))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .with_config()
            .limit(FACILITATOR_RESPONSE_BYTES_MAX)
            .read_to_vec()
            .map_err(|err| {
                unusable(&format!(
                    "/{operation} answer unreadable: {}",
                    super::stripe::kind_of(&err)
                ))
            })?;
        Ok((status, body))
    }
}

#[cfg(feature = "http")]
impl Facilitator for HttpFacilitator {
    fn verify(&self, body: &Value) -> Result<(u16, Vec<u8>)> {
        self.post("verify", body)
    }

    fn settle(&self, body: &Value) -> Result<(u16, Vec<u8>)> {
        self.post("settle", body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(atomic_per_credit: i64) -> X402Settings {
        X402Settings {
            facilitator_url: "http://127.0.0.1:1".into(),
            facilitator_token: None,
            network: "eip155:84532".into(),
            asset: "0xAsset".into(),
            asset_name: "usdc".into(),
            pay_to: "0xPayee".into(),
            atomic_per_credit,
            min_topup_micros: MICROS_PER_CREDIT,
            max_topup_micros: 1_000 * MICROS_PER_CREDIT,
            max_timeout_seconds: 60,
            extra: json!({"name": "USDC", "version": "2"}),
        }
    }

    fn header(value: &Value) -> String {
        base64::engine::general_purpose::STANDARD.encode(value.to_string())
    }

    fn payment(amount: &str, value: &str) -> Value {
        json!({
            "x402Version": 2,
            "accepted": {"scheme": "exact", "network": "eip155:84532", "amount": amount,
                         "asset": "0xasset", "payTo": "0xPAYEE"},
            "payload": {"signature": "0xsig", "authorization": {
                "from": "0xPayer", "to": "0xPayee", "value": value, "nonce": "0xN1"}},
        })
    }

    #[test]
    fn asked_amounts_convert_back_exactly() {
        for rate in [1, 7, 10_000, 1_000_000, 3_000_000, 10_000_000] {
            let settings = settings(rate);
            for micros in [1, 999_999, 1_000_000, 1_234_567, 50_000_000] {
                let atomic = atomic_for(&settings, micros).expect("atomic");
                let back = micros_for(&settings, atomic).expect("exact");
                assert!(
                    back >= micros,
                    "rate {rate}: {micros} -> {atomic} -> {back}"
                );
                assert!(
                    micros_for(&settings, atomic - settings.atomic_step() as i64)
                        .is_none_or(|less| less < micros),
                    "the smallest exact amount is asked"
                );
            }
        }
        assert_eq!(
            micros_for(&settings(10_000_000), 1),
            None,
            "0.1 micro-credit"
        );
    }

    #[test]
    fn a_payment_must_accept_what_we_offer() {
        let settings = settings(10_000);
        let ok = read_payment(&settings, &header(&payment("10000", "10000"))).expect("ok");
        assert_eq!((ok.atomic, ok.micros), (10_000, MICROS_PER_CREDIT));
        assert_eq!(ok.key, "eip155:84532:0xpayer:0xn1");
        assert_eq!(
            ok.requirements["payTo"], "0xPayee",
            "ours, not the payer's copy"
        );
        let refusals = [
            (payment("10000", "20000"), "signed amount"),
            (payment("100", "100"), "outside the top-up bounds"),
            (payment("1e4", "1e4"), "whole number of atomic"),
            (
                {
                    let mut p = payment("10000", "10000");
                    p["accepted"]["payTo"] = json!("0xSomeoneElse");
                    p
                },
                "payee",
            ),
            (
                {
                    let mut p = payment("10000", "10000");
                    p["accepted"]["network"] = json!("eip155:1");
                    p
                },
                "network",
            ),
            (
                {
                    let mut p = payment("10000", "10000");
                    p["x402Version"] = json!(1);
                    p
                },
                "x402Version 2",
            ),
        ];
        for (value, reason) in refusals {
            match read_payment(&settings, &header(&value)) {
                Err(Error::PaymentInvalid { reason: got }) => {
                    assert!(got.contains(reason), "{got} should say {reason}")
                }
                other => panic!("{reason}: {other:?}"),
            }
        }
        for garbage in [
            "!!",
            &"A".repeat(PAYMENT_HEADER_CHARS_MAX + 1),
            "bm90IGpzb24=",
        ] {
            assert!(matches!(
                read_payment(&settings, garbage),
                Err(Error::PaymentInvalid { .. })
            ));
        }
    }

    #[test]
    fn the_required_header_is_base64_json_of_version_2() {
        let settings = settings(10_000);
        let encoded = payment_required_header(
            &settings,
            1_500_000,
            "http://x/v1/generate",
            "insufficient_credits",
        )
        .expect("header");
        let decoded: Value = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .expect("base64"),
        )
        .expect("json");
        assert_eq!(decoded["x402Version"], 2);
        assert_eq!(decoded["accepts"][0]["amount"], "15000");
        assert_eq!(decoded["accepts"][0]["scheme"], "exact");
        assert_eq!(decoded["resource"]["url"], "http://x/v1/generate");
        assert_eq!(ask_for(&settings, 10), Some(MICROS_PER_CREDIT));
        assert_eq!(ask_for(&settings, 2_000 * MICROS_PER_CREDIT), None);
    }

    #[test]
    fn facilitator_answers_are_read_strictly() {
        assert_eq!(
            read_verify(200, br#"{"isValid":true,"payer":"0xP"}"#).expect("ok"),
            Ok(())
        );
        assert_eq!(
            read_verify(
                400,
                br#"{"isValid":false,"invalidReason":"insufficient_funds"}"#
            )
            .expect("ok"),
            Err("insufficient_funds".into())
        );
        assert!(read_verify(500, b"{}").is_err());
        assert!(
            read_settle(200, br#"{"success":true}"#).is_err(),
            "no transaction"
        );
        assert!(matches!(
            read_settle(
                200,
                br#"{"success":true,"transaction":"0xT","network":"n","payer":"p"}"#
            ),
            Ok(Ok(Settlement { atomic: None, .. }))
        ));
        assert!(read_settle(200, b"<html>").is_err());
    }
}
