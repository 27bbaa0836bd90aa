//! JCS: RFC 8785 canonical JSON, the byte string agents sign. Owns the one
//! serialisation of a `serde_json::Value` that the signer and the verifier
//! must agree on, byte for byte:
//! - object members sorted by their names' UTF-16 code units (not UTF-8
//!   bytes: the two orders differ past U+FFFF), no whitespace anywhere;
//! - strings escaped minimally as ECMAScript's `JSON.stringify` does (`"`,
//!   `\`, and the C0 controls; `\b \t \n \f \r` in their short forms, the
//!   rest as `\u00xx` in lowercase hex; everything else literal);
//! - numbers as IEEE 754 doubles in ECMAScript's shortest round-trip form
//!   (`1e+30`, `0.002`, `333333333.3333333`, `-0` as `0`).
//!
//! Invariant: where a canonical form would have to guess, it refuses rather
//! than sign something the client did not mean: a number that overflows a
//! double, a non-zero literal that underflows to zero, and an integer
//! literal beyond ±(2^53 − 1) (where languages with big integers and
//! JavaScript would sign different text) are errors, as is nesting deeper
//! than [`JCS_DEPTH_MAX`].

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

use crate::error::{Error, Result};

/// Arrays and objects nested deeper than this are refused.
pub const JCS_DEPTH_MAX: usize = 64;

/// The largest integer literal magnitude accepted: 2^53 − 1, the largest
/// integer every double represents exactly (JavaScript's
/// `Number.MAX_SAFE_INTEGER`).
pub const JCS_SAFE_INTEGER_MAX: u64 = (1 << 53) - 1;

/// The canonical form of `value` (RFC 8785), as UTF-8 bytes.
pub fn canonicalize(value: &Value) -> Result<Vec<u8>> {
    let mut out = String::new();
    write_value(&mut out, value, 0)?;
    Ok(out.into_bytes())
}

/// The canonical form of `value` (RFC 8785), as a string.
pub fn canonical_string(value: &Value) -> Result<String> {
    let mut out = String::new();
    write_value(&mut out, value, 0)?;
    Ok(out)
}

fn refuse(message: impl Into<String>) -> Error {
    Error::invalid("body", message)
}

fn write_value(out: &mut String, value: &Value, depth: usize) -> Result<()> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => out.push_str(&number_text(number)?),
        Value::String(text) => write_string(out, text),
        Value::Array(items) => {
            if depth >= JCS_DEPTH_MAX {
                return Err(refuse(format!("nested deeper than {JCS_DEPTH_MAX} levels")));
            }
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_value(out, item, depth + 1)?;
            }
            out.push(']');
        }
        Value::Object(members) => {
            if depth >= JCS_DEPTH_MAX {
                return Err(refuse(format!("nested deeper than {JCS_DEPTH_MAX} levels")));
            }
            write_object(out, members, depth)?;
        }
    }
    Ok(())
}

fn write_object(out: &mut String, members: &Map<String, Value>, depth: usize) -> Result<()> {
    let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
    sorted.sort_by(|(a, _), (b, _)| utf16_order(a, b));
    out.push('{');
    for (index, (name, value)) in sorted.into_iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        write_string(out, name);
        out.push(':');
        write_value(out, value, depth + 1)?;
    }
    out.push('}');
    Ok(())
}

/// Orders two strings by their UTF-16 code units, as RFC 8785 §3.2.3 asks.
pub fn utf16_order(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

fn write_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A JSON number's canonical text, or a refusal where it would be a guess.
fn number_text(number: &Number) -> Result<String> {
    // With serde_json's `arbitrary_precision` this is the literal as sent.
    let literal = number.to_string();
    let value: f64 = literal
        .parse()
        .map_err(|_| refuse(format!("number {literal} is not a JSON number")))?;
    if !value.is_finite() {
        return Err(refuse(format!("number {literal} does not fit a double")));
    }
    let integer_literal = !literal.contains(['.', 'e', 'E']);
    if integer_literal && value.abs() > JCS_SAFE_INTEGER_MAX as f64 {
        return Err(refuse(format!(
            "integer {literal} is beyond ±{JCS_SAFE_INTEGER_MAX}, which a double cannot hold exactly"
        )));
    }
    let mantissa = literal.split(['e', 'E']).next().unwrap_or_default();
    if value == 0.0 && mantissa.bytes().any(|b| matches!(b, b'1'..=b'9')) {
        return Err(refuse(format!("number {literal} underflows a double")));
    }
    format_number(value)
}

/// ECMAScript's `Number.prototype.toString` for a finite double: the
/// shortest digits that round-trip, laid out per ECMA-262 §6.1.6.1.20.
/// Non-finite values are refused (JSON has none).
pub fn format_number(value: f64) -> Result<String> {
    if !value.is_finite() {
        return Err(refuse("NaN and infinities have no JSON form"));
    }
    if value == 0.0 {
        // Both +0 and -0.
        return Ok("0".to_owned());
    }
    // Rust's `{:e}` is the shortest round-trip form: `-3.333333333333333e8`.
    let scientific = format!("{:e}", value.abs());
    let (mantissa, exponent) = scientific
        .split_once('e')
        .expect("LowerExp output always has an exponent");
    let exponent: i64 = exponent
        .parse()
        .expect("LowerExp output has an integer exponent");
    let mut digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut exponent = exponent;
    // `{:e}` finds the fewest digits, but on a tie between two candidates
    // of that length it may not pick the closer (or even) one, as
    // ECMAScript asks; exact formatting at that length rounds to nearest,
    // ties to even, and is used whenever it still round-trips.
    if digits.len() > 1 {
        let nearest = format!("{:.*e}", digits.len() - 1, value.abs());
        if nearest.parse::<f64>() == Ok(value.abs()) {
            let (mantissa, nearest_exponent) = nearest
                .split_once('e')
                .expect("LowerExp output always has an exponent");
            digits = mantissa.chars().filter(|c| *c != '.').collect();
            exponent = nearest_exponent
                .parse()
                .expect("LowerExp output has an integer exponent");
        }
    }
    let k = digits.len() as i64;
    // value = 0.d1d2...dk × 10^n
    let n = exponent + 1;
    let mut out = String::new();
    if value < 0.0 {
        out.push('-');
    }
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.push_str(&"0".repeat((n - k) as usize));
    } else if 0 < n && n <= 21 {
        out.push_str(&digits[..n as usize]);
        out.push('.');
        out.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.push_str(&"0".repeat((-n) as usize));
        out.push_str(&digits);
    } else {
        let e = n - 1;
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if e < 0 { '-' } else { '+' });
        out.push_str(&e.abs().to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        let value: Value = serde_json::from_str(input).expect("test input is JSON");
        assert_eq!(
            canonical_string(&value).expect("canonical"),
            expected,
            "{input}"
        );
    }

    fn refused(input: &str) {
        let value: Value = serde_json::from_str(input).expect("test input is JSON");
        let err = canonical_string(&value).expect_err(input);
        assert_eq!(err.code(), "invalid_request", "{input}");
    }

    #[test]
    fn rfc8785_section_3_2_2_example() {
        check(
            r#"{
              "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
              "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
              "literals": [null, true, false]
            }"#,
            "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],\"string\":\"€$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}",
        );
    }

    #[test]
    fn rfc8785_section_3_2_3_sorts_by_utf16_code_units() {
        check(
            r#"{
              "\u20ac": "Euro Sign",
              "\r": "Carriage Return",
              "\ufb33": "Hebrew Letter Dalet With Dagesh",
              "1": "One",
              "\ud83d\ude00": "Emoji: Grinning Face",
              "\u0080": "Control",
              "\u00f6": "Latin Small Letter O With Diaeresis"
            }"#,
            "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
             \"ö\":\"Latin Small Letter O With Diaeresis\",\"€\":\"Euro Sign\",\
             \"😀\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}",
        );
    }

    #[test]
    fn rfc8785_appendix_b_numbers() {
        let cases: &[(u64, &str)] = &[
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for &(bits, expected) in cases {
            let value = f64::from_bits(bits);
            assert_eq!(
                format_number(value).expect("finite"),
                expected,
                "{bits:016x}"
            );
        }
        for bits in [
            0x7fffffffffffffff_u64,
            0x7ff0000000000000,
            0xfff0000000000000,
        ] {
            assert!(format_number(f64::from_bits(bits)).is_err(), "{bits:016x}");
        }
    }

    #[test]
    fn every_formatted_double_round_trips_in_at_most_17_digits() {
        // A deterministic xorshift over raw bit patterns: subnormals, huge
        // and tiny exponents, ties.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..100_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let value = f64::from_bits(state);
            if !value.is_finite() {
                continue;
            }
            let text = format_number(value).expect("finite");
            let back: f64 = text.parse().expect("JSON number");
            assert_eq!(back, value, "{text} for {state:016x}");
            let significant = text
                .split(['e', 'E'])
                .next()
                .unwrap_or_default()
                .replace(['-', '.'], "");
            let significant = significant.trim_start_matches('0').trim_end_matches('0');
            assert!(significant.len() <= 17, "{text} for {state:016x}");
        }
    }

    #[test]
    fn layout_boundaries_follow_ecmascript() {
        check(
            "[1, -1, 100, 1e21, 1e20, 123e-9, 1e-6, 1.5e-7, 0.5, -0]",
            "[1,-1,100,1e+21,100000000000000000000,1.23e-7,0.000001,1.5e-7,0.5,0]",
        );
        check(
            "[9007199254740991, -9007199254740991, 1742291400]",
            "[9007199254740991,-9007199254740991,1742291400]",
        );
    }

    #[test]
    fn escapes_are_minimal() {
        check(
            r#""\u0000\u0001\b\t\n\u000b\f\r\u001f \u007f\u2028/""#,
            "\"\\u0000\\u0001\\b\\t\\n\\u000b\\f\\r\\u001f \u{7f}\u{2028}/\"",
        );
    }

    #[test]
    fn whitespace_and_nesting_vanish() {
        check(
            r#" { "b" : [ { "d" : 1 , "c" : 2 } ] , "a" : { } , "e": [] } "#,
            r#"{"a":{},"b":[{"c":2,"d":1}],"e":[]}"#,
        );
    }

    #[test]
    fn refuses_what_it_would_have_to_guess() {
        refused("1e400");
        refused("-1e400");
        refused("1e-400");
        refused("9007199254740992");
        refused("-12345678901234567890");
        refused(r#"{"a": [123456789012345678901234567890]}"#);
        // Zero written with an exponent is still zero, not an underflow.
        check("0e-400", "0");
    }

    #[test]
    fn refuses_nesting_past_the_limit() {
        let mut value = Value::Null;
        for _ in 0..=JCS_DEPTH_MAX {
            value = Value::Array(vec![value]);
        }
        assert!(canonical_string(&value).is_err());
        let mut value = Value::Null;
        for _ in 0..JCS_DEPTH_MAX {
            value = Value::Array(vec![value]);
        }
        assert!(canonical_string(&value).is_ok());
    }
}
