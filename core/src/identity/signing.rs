//! Signed agent requests (CONTRACTS.md §4): the message an agent signs, its
//! verification, and the freshness rule. Pure: no clock read, no table.
//!
//! The signed message is
//! `METHOD + " " + PATH + "\n" + JCS(body without "signature")`, where JCS
//! is RFC 8785 ([`super::jcs`]), signed with ed25519 and sent as 128
//! lowercase hex digits in the body's `signature`. The body also carries
//! `timestamp` (Unix seconds, within [`SIGNED_REQUEST_SKEW_SECS_MAX`] of the
//! server clock either side) and `nonce` (single use per agent; the facade
//! records it). Binding method and path stops a signature made for one
//! endpoint from being replayed at another. `PATH` is the request path as
//! sent, without the query string.
//!
//! Verification uses `verify_strict` (no small-order keys, no malleable
//! signatures).

use ed25519_dalek::{Signature, VerifyingKey, SIGNATURE_LENGTH};
use serde_json::Value;

use crate::clock::UnixMillis;
use crate::error::{Error, Result};
use crate::ids::validate_caller_id;

use super::jcs;

/// How far a signed request's `timestamp` may be from the server clock,
/// either side, in seconds.
pub const SIGNED_REQUEST_SKEW_SECS_MAX: i64 = 300;
/// The longest nonce accepted.
pub const NONCE_CHARS_MAX: usize = 128;
/// The body field that carries the signature (and is left out of the
/// signed message).
pub const SIGNATURE_FIELD: &str = "signature";

/// The replay-protection fields of a signed request whose signature
/// verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedFields {
    /// `timestamp`, Unix seconds.
    pub timestamp: i64,
    /// `nonce`, 1 to [`NONCE_CHARS_MAX`] printable ASCII characters.
    pub nonce: String,
}

/// The bytes an agent signs for a request: `METHOD + " " + PATH + "\n" +
/// JCS(body without "signature")`. `body` must be a JSON object.
pub fn signed_message(method: &str, path: &str, body: &Value) -> Result<Vec<u8>> {
    // Whitespace or controls in either would make the message ambiguous.
    for (field, text) in [("method", method), ("path", path)] {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_graphic() || b >= 0x80) {
            return Err(Error::invalid(
                field,
                "must be non-empty, without spaces or control characters",
            ));
        }
    }
    let members = body
        .as_object()
        .ok_or_else(|| Error::invalid("body", "must be a JSON object"))?;
    let mut unsigned = members.clone();
    unsigned.remove(SIGNATURE_FIELD);
    let mut message = format!("{method} {path}\n").into_bytes();
    message.extend(jcs::canonicalize(&Value::Object(unsigned))?);
    Ok(message)
}

/// Verifies a signed request against `public_key` and returns its
/// `timestamp` and `nonce`. Pure: freshness ([`check_timestamp`]) and nonce
/// reuse are the caller's, since they need the clock and the database.
///
/// A missing or mistyped `timestamp`/`nonce`/`signature` is
/// [`Error::InvalidRequest`]; a signature that is not 128 lowercase hex
/// digits or does not verify is [`Error::InvalidSignature`].
pub fn verify_signed_request(
    method: &str,
    path: &str,
    body: &Value,
    public_key: &VerifyingKey,
) -> Result<SignedFields> {
    let fields = SignedFields {
        timestamp: integer_field(body, "timestamp")?,
        nonce: nonce_field(body)?,
    };
    let signature = match body.get(SIGNATURE_FIELD) {
        None | Some(Value::Null) => return Err(Error::invalid(SIGNATURE_FIELD, "is required")),
        Some(Value::String(text)) => parse_signature(text)?,
        Some(_) => return Err(Error::InvalidSignature),
    };
    let message = signed_message(method, path, body)?;
    public_key
        .verify_strict(&message, &signature)
        .map_err(|_| Error::InvalidSignature)?;
    Ok(fields)
}

/// `Ok` if `timestamp` (Unix seconds) is within
/// [`SIGNED_REQUEST_SKEW_SECS_MAX`] of `now`, either side; else
/// [`Error::StaleTimestamp`].
pub fn check_timestamp(timestamp: i64, now: UnixMillis) -> Result<()> {
    let skew_millis = (i128::from(timestamp) * 1_000 - i128::from(now)).abs();
    if skew_millis <= i128::from(SIGNED_REQUEST_SKEW_SECS_MAX) * 1_000 {
        Ok(())
    } else {
        Err(Error::StaleTimestamp {
            timestamp,
            now_secs: now.div_euclid(1_000),
            skew_max_secs: SIGNED_REQUEST_SKEW_SECS_MAX,
        })
    }
}

/// Parses an agent's public key: 64 lowercase hex digits (else
/// `invalid_request` naming `public_key`, a refusal the OpenAPI document
/// states as a pattern) of a valid, not small-order ed25519 point. Whether
/// 32 bytes are such a point no schema can say, so a key that is not is
/// [`Error::InvalidSignature`]: no signature can verify against it.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey> {
    let bad = |message: &str| Error::invalid("public_key", message);
    let bytes = lowercase_hex(text).ok_or_else(|| bad("must be 64 lowercase hex digits"))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| bad("must be 64 lowercase hex digits (32 bytes)"))?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| Error::InvalidSignature)?;
    if key.is_weak() {
        return Err(Error::InvalidSignature);
    }
    Ok(key)
}

fn parse_signature(text: &str) -> Result<Signature> {
    let bytes = lowercase_hex(text).ok_or(Error::InvalidSignature)?;
    let bytes: [u8; SIGNATURE_LENGTH] = bytes.try_into().map_err(|_| Error::InvalidSignature)?;
    Ok(Signature::from_bytes(&bytes))
}

fn lowercase_hex(text: &str) -> Option<Vec<u8>> {
    if text
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        hex::decode(text).ok()
    } else {
        None
    }
}

/// A required string field of a request body.
pub(crate) fn string_field<'a>(body: &'a Value, name: &str) -> Result<&'a str> {
    match body.get(name) {
        None | Some(Value::Null) => Err(Error::invalid(name, "is required")),
        Some(Value::String(text)) => Ok(text),
        Some(_) => Err(Error::invalid(name, "must be a string")),
    }
}

/// A required id field (an agent id, a key id): bounded printable ASCII.
pub(crate) fn id_field<'a>(body: &'a Value, name: &str) -> Result<&'a str> {
    let id = string_field(body, name)?;
    validate_caller_id(name, id)?;
    Ok(id)
}

/// The value of a JSON number that is an integer as JSON Schema counts
/// them: `7`, and also `7.0` or `7e0` (what some encoders write for an
/// integral double). Exact, without floats; `None` for a fraction or a
/// value beyond `i64`.
fn integral(number: &serde_json::Number) -> Option<i64> {
    use rust_decimal::prelude::ToPrimitive;
    use std::str::FromStr;
    if let Some(n) = number.as_i64() {
        return Some(n);
    }
    // With serde_json's `arbitrary_precision` this is the literal as sent.
    let literal = number.to_string();
    let value = rust_decimal::Decimal::from_str(&literal)
        .or_else(|_| rust_decimal::Decimal::from_scientific(&literal))
        .ok()?;
    if value.fract().is_zero() {
        value.to_i64()
    } else {
        None
    }
}

/// A required integer field.
pub(crate) fn integer_field(body: &Value, name: &str) -> Result<i64> {
    match body.get(name) {
        None | Some(Value::Null) => Err(Error::invalid(name, "is required")),
        Some(Value::Number(number)) => {
            integral(number).ok_or_else(|| Error::invalid(name, "must be an integer"))
        }
        Some(_) => Err(Error::invalid(name, "must be an integer")),
    }
}

/// An optional positive integer field that fits a `u32`.
pub(crate) fn optional_u32_field(body: &Value, name: &str) -> Result<Option<u32>> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => integral(number)
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| Error::invalid(name, "must be a non-negative integer")),
        Some(_) => Err(Error::invalid(name, "must be an integer")),
    }
}

/// An optional array of strings (scopes).
pub(crate) fn optional_strings_field(body: &Value, name: &str) -> Result<Option<Vec<String>>> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| Error::invalid(name, "must be an array of strings"))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(_) => Err(Error::invalid(name, "must be an array of strings")),
    }
}

fn nonce_field(body: &Value) -> Result<String> {
    let nonce = string_field(body, "nonce")?;
    if nonce.is_empty()
        || nonce.len() > NONCE_CHARS_MAX
        || !nonce.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(Error::invalid(
            "nonce",
            format!("must be 1 to {NONCE_CHARS_MAX} printable ASCII characters without spaces"),
        ));
    }
    Ok(nonce.to_owned())
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};
    use serde_json::json;

    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    /// `body` with its `signature` for `method` and `path`, as an agent
    /// client makes it (the server never signs).
    fn signed(method: &str, path: &str, mut body: Value) -> Value {
        let message = signed_message(method, path, &body).expect("sign");
        let signature = hex::encode(key().sign(&message).to_bytes());
        body[SIGNATURE_FIELD] = Value::String(signature);
        body
    }

    #[test]
    fn the_message_is_method_path_and_canonical_body_without_signature() {
        let body = json!({"nonce": "n1", "timestamp": 1742291400, "agent_id": "agent_x", "signature": "ff"});
        let message = signed_message("POST", "/api/v1/agents/keys/list", &body).expect("message");
        assert_eq!(
            String::from_utf8(message).expect("utf-8"),
            "POST /api/v1/agents/keys/list\n{\"agent_id\":\"agent_x\",\"nonce\":\"n1\",\"timestamp\":1742291400}"
        );
    }

    #[test]
    fn method_and_path_cannot_smuggle_separators() {
        let body = json!({"timestamp": 5, "nonce": "abc"});
        for (method, path) in [
            ("POST", "/a\n{}"),
            ("POST /a", "/b"),
            ("", "/p"),
            ("POST", ""),
        ] {
            assert_eq!(
                signed_message(method, path, &body).map_err(|e| e.code()),
                Err("invalid_request"),
                "{method:?} {path:?}"
            );
        }
        assert!(signed_message("POST", "/v1/ünïcode", &body).is_ok());
    }

    #[test]
    fn a_signed_body_verifies_and_yields_its_fields() {
        let body = signed(
            "POST",
            "/p",
            json!({"timestamp": 5, "nonce": "abc", "x": [1, 2]}),
        );
        let fields =
            verify_signed_request("POST", "/p", &body, &key().verifying_key()).expect("ok");
        assert_eq!(
            fields,
            SignedFields {
                timestamp: 5,
                nonce: "abc".into()
            }
        );
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let body = signed(
            "POST",
            "/p",
            json!({"timestamp": 5, "nonce": "abc", "x": 1}),
        );
        let public = key().verifying_key();
        let check = |method: &str, path: &str, body: &Value| {
            verify_signed_request(method, path, body, &public)
                .map(|_| ())
                .map_err(|e| e.code())
        };
        assert_eq!(check("POST", "/q", &body), Err("invalid_signature"));
        assert_eq!(check("GET", "/p", &body), Err("invalid_signature"));
        let mut changed = body.clone();
        changed["x"] = json!(2);
        assert_eq!(check("POST", "/p", &changed), Err("invalid_signature"));
        let mut upper = body.clone();
        upper["signature"] = json!(body["signature"].as_str().expect("hex").to_uppercase());
        assert_eq!(check("POST", "/p", &upper), Err("invalid_signature"));
        let mut short = body.clone();
        short["signature"] = json!("abcd");
        assert_eq!(check("POST", "/p", &short), Err("invalid_signature"));
        let other = SigningKey::from_bytes(&[8u8; 32]).verifying_key();
        assert!(matches!(
            verify_signed_request("POST", "/p", &body, &other),
            Err(Error::InvalidSignature)
        ));
        // Key order and whitespace do not matter: the canonical form is signed.
        let reordered: Value = serde_json::from_str(&format!(
            "{{ \"x\" : 1, \"signature\": {}, \"nonce\": \"abc\", \"timestamp\": 5 }}",
            body["signature"]
        ))
        .expect("json");
        assert_eq!(check("POST", "/p", &reordered), Ok(()));
    }

    #[test]
    fn missing_fields_are_invalid_requests() {
        let public = key().verifying_key();
        for (body, field) in [
            (json!({"nonce": "a", "signature": "00"}), "timestamp"),
            (json!({"timestamp": 1, "signature": "00"}), "nonce"),
            (json!({"timestamp": 1, "nonce": "a"}), "signature"),
            (
                json!({"timestamp": 1.5, "nonce": "a", "signature": "00"}),
                "timestamp",
            ),
            (
                json!({"timestamp": 1, "nonce": "a b", "signature": "00"}),
                "nonce",
            ),
        ] {
            match verify_signed_request("POST", "/p", &body, &public) {
                Err(Error::InvalidRequest { field: got, .. }) => assert_eq!(got, field),
                other => panic!("{body}: {other:?}"),
            }
        }
        assert!(matches!(
            verify_signed_request("POST", "/p", &json!([1]), &public),
            Err(Error::InvalidRequest { .. })
        ));
    }

    #[test]
    fn timestamps_are_fresh_within_the_window_either_side() {
        let now = 1_000_000_500; // millis
        let now_secs = 1_000_000;
        assert!(check_timestamp(now_secs, now).is_ok());
        assert!(check_timestamp(now_secs - SIGNED_REQUEST_SKEW_SECS_MAX + 1, now).is_ok());
        assert!(check_timestamp(now_secs + SIGNED_REQUEST_SKEW_SECS_MAX, now).is_ok());
        assert_eq!(
            check_timestamp(now_secs - SIGNED_REQUEST_SKEW_SECS_MAX - 1, now).map_err(|e| e.code()),
            Err("stale_timestamp")
        );
        assert_eq!(
            check_timestamp(now_secs + SIGNED_REQUEST_SKEW_SECS_MAX + 1, now).map_err(|e| e.code()),
            Err("stale_timestamp")
        );
        assert!(check_timestamp(i64::MAX, now).is_err());
        assert!(check_timestamp(i64::MIN, now).is_err());
    }

    #[test]
    fn integers_may_be_written_as_integral_decimals() {
        let body: Value = serde_json::from_str(
            r#"{"a": 7, "b": -168838473.0, "c": 1e3, "d": 1.5, "e": 1e40, "f": "7"}"#,
        )
        .expect("json");
        assert_eq!(integer_field(&body, "a").ok(), Some(7));
        assert_eq!(integer_field(&body, "b").ok(), Some(-168_838_473));
        assert_eq!(integer_field(&body, "c").ok(), Some(1_000));
        for refused in ["d", "e", "f", "missing"] {
            assert!(integer_field(&body, refused).is_err(), "{refused}");
        }
        assert_eq!(optional_u32_field(&body, "c").ok(), Some(Some(1_000)));
        assert!(optional_u32_field(&body, "b").is_err());
    }

    #[test]
    fn public_keys_are_checked() {
        let good = hex::encode(key().verifying_key().to_bytes());
        assert!(parse_public_key(&good).is_ok());
        assert!(parse_public_key(&good.to_uppercase()).is_err());
        assert!(parse_public_key(&good[..62]).is_err());
        assert!(parse_public_key("zz").is_err());
        assert_eq!(
            parse_public_key("zz").map_err(|e| e.code()).err(),
            Some("invalid_request")
        );
        // The identity point is small-order: well-formed, but no signature
        // can verify against it.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            parse_public_key(&hex::encode(identity))
                .map_err(|e| e.code())
                .err(),
            Some("invalid_signature")
        );
    }
}
