//! Pricing: the price catalog format and its validation ([`catalog`]), the
//! estimator that turns a request into credits ([`mod@estimate`]), the model
//! listing ([`mod@listing`]), and the one rounding rule ([`round_credits`]).
//!
//! [`versions`] keeps imported catalogs as immutable price versions in the
//! database (it alone writes `price_versions`, exactly one of which is
//! active). Everything else here is pure: no SQL, no clock, no floats. Money is `rust_decimal::Decimal`, read
//! from JSON numbers exactly (serde_json's `arbitrary_precision`), so a price
//! of `0.0165` stays `0.0165`. A price is computed exactly and rounded once,
//! at the end of an estimate, to the micro-credit, half up; the conversion
//! to integer micro-credits is `crate::money`'s. The format and the
//! algorithm are documented in `fixtures/catalogs/README.md`.
//!
//! Invariant: every price this module hands out (`Estimate::credits`) is
//! non-negative, has at most [`CREDIT_DECIMALS`] decimal places and equals
//! its `micros` exactly.

pub mod catalog;
pub mod estimate;
pub mod listing;
mod shape;
mod validate;
pub mod versions;

pub use catalog::{
    parse_catalog, Catalog, CatalogError, InputImages, ModelSpec, OptionName, OptionSpec,
    OptionValue, PriceRule, PriceUnit, PromptRule, RuleCondition, RuleEffect, UsagePrice,
};
pub use estimate::{
    close_matches, estimate, estimate_before_upload, BilledUnits, BreakdownLine, Estimate,
    EstimateError, EstimateRequest, RequestedUnits, Step,
};
pub use listing::{listing, Listing, ListingEntry};

use rust_decimal::{Decimal, RoundingStrategy};

/// Decimal places of a micro-credit (1 credit = 1,000,000 micro-credits):
/// the finest amount a price may name and an estimate rounds to.
pub const CREDIT_DECIMALS: u32 = 6;

/// Rounds a credit amount to the micro-credit, half up (a midpoint rounds away
/// from zero: `0.0000005` becomes `0.000001`), and normalises it (`40.000000`
/// becomes `40`). This is the only rounding an estimate performs.
pub fn round_credits(credits: Decimal) -> Decimal {
    credits
        .round_dp_with_strategy(CREDIT_DECIMALS, RoundingStrategy::MidpointAwayFromZero)
        .normalize()
}

/// Serde helpers that read a `Decimal` from a JSON number exactly and write
/// it back as a JSON number (never a string, never a float).
mod decimal_json {
    use rust_decimal::Decimal;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::str::FromStr;

    /// Significant digits a `Decimal` holds without rounding.
    const SIGNIFICANT_DIGITS_MAX: usize = 28;

    /// Parses the text of a JSON number into a `Decimal`, or explains why it
    /// cannot be held exactly. Never rounds.
    pub(crate) fn parse(text: &str) -> Result<Decimal, String> {
        let mantissa = text.split(['e', 'E']).next().unwrap_or(text);
        let digits = mantissa.trim_start_matches('-');
        let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
        let int_sig = int_part.trim_start_matches('0');
        let frac_sig = frac_part.trim_end_matches('0');
        if frac_sig.len() > SIGNIFICANT_DIGITS_MAX
            || int_sig.len() + frac_sig.len() > SIGNIFICANT_DIGITS_MAX
        {
            return Err(format!(
                "the number `{text}` has more digits than can be held exactly"
            ));
        }
        Decimal::from_str(text)
            .or_else(|_| Decimal::from_scientific(text))
            .map_err(|_| format!("the number `{text}` is out of range"))
    }

    /// Serializes a `Decimal` as a JSON number.
    pub(crate) fn serialize<S: Serializer>(
        value: &Decimal,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        rust_decimal::serde::arbitrary_precision::serialize(value, serializer)
    }

    /// Deserializes a `Decimal` from a JSON number (a string is refused).
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Decimal, D::Error> {
        let number = serde_json::Number::deserialize(deserializer)?;
        parse(number.as_str()).map_err(D::Error::custom)
    }

    /// The same for an optional field (`#[serde(default)]` supplies `None`).
    pub(crate) mod option {
        use rust_decimal::Decimal;
        use serde::{Deserializer, Serializer};

        /// Serializes `Some` as a JSON number and `None` as `null`.
        pub(crate) fn serialize<S: Serializer>(
            value: &Option<Decimal>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            rust_decimal::serde::arbitrary_precision_option::serialize(value, serializer)
        }

        /// Deserializes a present field as a JSON number.
        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Decimal>, D::Error> {
            super::deserialize(deserializer).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn dec(text: &str) -> Decimal {
        Decimal::from_str(text).expect("test literal")
    }

    #[test]
    fn rounding_is_half_up_at_the_micro() {
        for (input, rounded) in [
            ("0.0000005", "0.000001"),
            ("0.00000049999", "0"),
            ("0.0000015", "0.000002"),
            ("0.0000025", "0.000003"),
            ("1.2345675", "1.234568"),
            ("1.23456749", "1.234567"),
            ("40.000000", "40"),
            ("-0.0000005", "-0.000001"),
        ] {
            assert_eq!(round_credits(dec(input)).to_string(), rounded, "{input}");
        }
    }

    #[test]
    fn json_numbers_parse_exactly_or_not_at_all() {
        assert_eq!(decimal_json::parse("0.0165"), Ok(dec("0.0165")));
        assert_eq!(decimal_json::parse("1.5e-3"), Ok(dec("0.0015")));
        assert_eq!(decimal_json::parse("2E2"), Ok(dec("200")));
        assert_eq!(
            decimal_json::parse("0.10000000000000000000000000000000000"),
            Ok(dec("0.1"))
        );
        for bad in [
            "1e400",
            "1e-400",
            "1e99999999999999999999",
            "0.00000000000000000000000000001",
            "100000.0000000000000000000000001",
            "99999999999999999999999999999",
        ] {
            assert!(decimal_json::parse(bad).is_err(), "{bad}");
        }
    }
}
