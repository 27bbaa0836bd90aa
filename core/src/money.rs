//! Money at the boundary: exact decimal credits outside, integer
//! micro-credits inside (1 credit = 1,000,000 micro-credits). This module
//! owns the one conversion between the two and refuses amounts that are
//! negative, finer than a micro-credit or too large. No floats, ever.

use rust_decimal::Decimal;

/// Micro-credits in one credit.
pub const MICROS_PER_CREDIT: i64 = 1_000_000;

/// The largest single amount the ledger accepts: one billion credits.
/// Keeps every sum of a realistic ledger far from `i64` overflow.
pub const AMOUNT_MICROS_MAX: i64 = 1_000_000_000 * MICROS_PER_CREDIT;

/// The largest balance a wallet may hold: one thousand billion credits.
pub const BALANCE_MICROS_MAX: i64 = 1_000_000_000_000 * MICROS_PER_CREDIT;

/// Why an amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AmountError {
    /// The amount is below zero.
    #[error("amount must not be negative")]
    Negative,
    /// The amount is zero where zero means nothing.
    #[error("amount must be greater than zero")]
    Zero,
    /// The amount has more than six decimal places.
    #[error("amount is finer than a micro-credit (at most 6 decimal places)")]
    TooPrecise,
    /// The amount exceeds [`AMOUNT_MICROS_MAX`].
    #[error("amount exceeds the maximum of 1000000000 credits")]
    TooLarge,
    /// The text is not a plain decimal number.
    #[error("amount is not a decimal number")]
    NotANumber,
}

/// Parses a plain decimal number of credits (`20`, `0.0165`), as typed on
/// a command line. No exponents, no floats.
pub fn parse_credits(text: &str) -> Result<Decimal, AmountError> {
    let text = text.trim();
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'+');
    if !plain {
        return Err(AmountError::NotANumber);
    }
    text.parse::<Decimal>().map_err(|_| AmountError::NotANumber)
}

/// Converts credits to micro-credits exactly, refusing negative, too precise
/// or too large amounts. Zero is allowed here; callers that need a positive
/// amount use [`positive_micros`].
pub fn to_micros(credits: Decimal) -> Result<i64, AmountError> {
    if credits.is_sign_negative() && !credits.is_zero() {
        return Err(AmountError::Negative);
    }
    let scaled = credits
        .checked_mul(Decimal::from(MICROS_PER_CREDIT))
        .ok_or(AmountError::TooLarge)?;
    if scaled.fract() != Decimal::ZERO {
        return Err(AmountError::TooPrecise);
    }
    let micros = i64::try_from(scaled.trunc()).map_err(|_| AmountError::TooLarge)?;
    if micros > AMOUNT_MICROS_MAX {
        return Err(AmountError::TooLarge);
    }
    Ok(micros)
}

/// Like [`to_micros`], but zero is refused too.
pub fn positive_micros(credits: Decimal) -> Result<i64, AmountError> {
    match to_micros(credits)? {
        0 => Err(AmountError::Zero),
        micros => Ok(micros),
    }
}

/// Converts micro-credits to credits, normalised (`20`, not `20.000000`).
pub fn to_credits(micros: i64) -> Decimal {
    Decimal::new(micros, 6).normalize()
}

/// Micro-credits as a JSON number of credits, digit for digit (serde_json's
/// arbitrary precision keeps the decimal exact): how every answer and
/// every webhook renders credits.
pub fn credits_json(micros: i64) -> serde_json::Value {
    let text = to_credits(micros).to_string();
    text.parse::<serde_json::Number>()
        .map_or(serde_json::Value::String(text), serde_json::Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn check(input: &str, expected: Result<i64, AmountError>) {
        let credits = Decimal::from_str(input).expect("test input parses");
        assert_eq!(to_micros(credits), expected, "input {input}");
    }

    #[test]
    fn converts_exactly_and_refuses_bad_amounts() {
        check("20", Ok(20_000_000));
        check("0.0165", Ok(16_500));
        check("0.000001", Ok(1));
        check("0", Ok(0));
        check("-0", Ok(0));
        check("1.5000000", Ok(1_500_000));
        check("0.0000001", Err(AmountError::TooPrecise));
        check("-1", Err(AmountError::Negative));
        check("1000000000", Ok(AMOUNT_MICROS_MAX));
        check("1000000000.000001", Err(AmountError::TooLarge));
        check("79228162514264337593543950335", Err(AmountError::TooLarge));
        assert_eq!(positive_micros(Decimal::ZERO), Err(AmountError::Zero));
        assert_eq!(parse_credits(" 0.0165 "), Ok(Decimal::new(165, 4)));
        assert_eq!(parse_credits("1e3"), Err(AmountError::NotANumber));
        assert_eq!(parse_credits("ten"), Err(AmountError::NotANumber));
        assert_eq!(parse_credits(""), Err(AmountError::NotANumber));
    }

    #[test]
    fn renders_normalised_credits() {
        assert_eq!(to_credits(20_000_000).to_string(), "20");
        assert_eq!(to_credits(16_500).to_string(), "0.0165");
        assert_eq!(to_credits(0).to_string(), "0");
    }
}
