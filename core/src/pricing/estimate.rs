//! The estimator: a request (model, units, input images) and a catalog in,
//! credits and a breakdown of every step out. The model listing that
//! `/v1/models/list` renders is [`mod@super::listing`]'s.
//!
//! Invariant: a price is computed exactly (every multiplication is checked
//! to lose no digit) and rounded once, at the end, to the micro-credit, half
//! up ([`round_credits`]); so `Estimate::credits` always converts to
//! `Estimate::micros` exactly. No input makes this module panic: a catalog
//! that was not checked by `parse_catalog` yields an error, never a crash.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::catalog::{
    Catalog, ModelSpec, OptionName, OptionValue, PriceRule, PriceUnit, RuleCondition, RuleEffect,
    MODEL_ID_CHARS_MAX,
};
use super::round_credits;
use crate::error::ErrorCode;
use crate::money::to_micros;

/// Most close matches an `UnknownModel` error suggests.
pub const CLOSE_MATCHES_MAX: usize = 3;

/// The options a request sets: the Rynjer `units` object. Each is checked
/// against the model's allowed values; one left out takes the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestedUnits {
    /// How many outputs (multiplies `image` models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Output resolution (`"1K"`, `"1080p"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    /// Output duration in seconds (multiplies `second` models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u32>,
    /// Output aspect ratio (`"16:9"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<String>,
}

impl RequestedUnits {
    /// The value the request set for `option`, if any.
    pub fn get(&self, option: OptionName) -> Option<OptionValue> {
        match option {
            OptionName::Count => self.count.map(OptionValue::Int),
            OptionName::Resolution => self.resolution.clone().map(OptionValue::Text),
            OptionName::Duration => self.duration.map(OptionValue::Int),
            OptionName::AspectRatio => self.aspect_ratio.clone().map(OptionValue::Text),
        }
    }
}

/// What to price: the pricing-relevant part of a generate request, already
/// normalised (top-level shortcuts moved into `units`, `image_urls` into
/// `input_image_urls`). Deserializing ignores other members (a generate body
/// carries `prompt`, `request_id`, `price_version`, ...); choosing the catalog
/// for a `price_version` is the caller's job. Unknown `units` members are
/// refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EstimateRequest {
    /// The product the caller expects (`image`, `video`, ...); inferred from
    /// the model when left out, refused when it disagrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// The model id, exactly as listed (case-sensitive).
    pub model: String,
    /// The options.
    #[serde(default)]
    pub units: RequestedUnits,
    /// Input images; their number is checked against the model's
    /// `input_images`, and some models price image-to-video differently.
    #[serde(default)]
    pub input_image_urls: Vec<String>,
}

/// The options an estimate priced: the request's values with the model's
/// defaults filled in; an option the model does not offer stays `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BilledUnits {
    /// The count priced, if the model offers `count`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// The resolution priced, if the model offers `resolution`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    /// The duration priced, in seconds, if the model offers `duration`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<u32>,
    /// The aspect ratio, if the model offers `aspect_ratio`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<String>,
}

/// The kind of step a breakdown line records, in the order they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// The model's base price per unit.
    Base,
    /// A fixed-price rule replaced the per-unit price.
    FixedPrice,
    /// A multiplier rule multiplied the per-unit price.
    Multiplier,
    /// The image count multiplied the price (unit `image`).
    Count,
    /// The duration multiplied the price (unit `second`).
    Duration,
    /// The total was rounded once to the micro-credit, half up.
    Round,
}

/// One step of an estimate: what happened and the running total after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakdownLine {
    /// The kind of step.
    pub step: Step,
    /// What the step was, for a human (`"resolution = 4K"`).
    pub detail: String,
    /// The multiplier, count or duration applied, if the step multiplies.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::decimal_json::option"
    )]
    pub factor: Option<Decimal>,
    /// The running total in credits after this step.
    #[serde(with = "super::decimal_json")]
    pub subtotal: Decimal,
}

/// A priced request. It serializes with credits as JSON numbers and reads
/// back the same (a job can record it and load it again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Estimate {
    /// The model priced.
    pub model: String,
    /// Its product (the request's, or inferred).
    pub product: String,
    /// The catalog's price version.
    pub price_version: String,
    /// The total in credits, rounded to the micro-credit and normalised
    /// (`40`, `0.0165`); a JSON number.
    #[serde(with = "super::decimal_json")]
    pub credits: Decimal,
    /// The same total in micro-credits, as the ledger holds it.
    pub micros: i64,
    /// Every step from the base price to the rounded total.
    pub breakdown: Vec<BreakdownLine>,
    /// The options priced, defaults filled in.
    pub units: BilledUnits,
    /// How many input images were priced.
    pub input_images: u32,
}

/// Why a request cannot be priced. Each maps to a `400` with [`code`] as
/// `data.error` (see [`EstimateError::code`]).
///
/// [`code`]: EstimateError::code
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EstimateError {
    /// No model has this id; `close_matches` are the nearest ids (up to
    /// [`CLOSE_MATCHES_MAX`], nearest first).
    #[error("unknown model `{model}`{}", did_you_mean(close_matches))]
    UnknownModel {
        /// The id asked for.
        model: String,
        /// The nearest listed ids by edit distance.
        close_matches: Vec<String>,
    },
    /// The request sets an option to a value the model does not allow, or an
    /// option the model does not offer (then `allowed` is empty).
    #[error("invalid {option} `{value}`{}", allowed_values(allowed))]
    InvalidOption {
        /// The option (`count`, `resolution`, `duration`, `aspect_ratio`).
        option: String,
        /// The value asked for.
        value: String,
        /// The values the model allows, in catalog order.
        allowed: Vec<String>,
    },
    /// The request names a product that is not the model's.
    #[error("model `{model}` is a {expected} model, not {product}")]
    ProductMismatch {
        /// The model asked for.
        model: String,
        /// The product the request named.
        product: String,
        /// The model's product.
        expected: String,
    },
    /// The request carries fewer or more input images than the model takes.
    #[error("model `{model}` takes {min} to {max} input images, not {given}")]
    InvalidInputImages {
        /// The model asked for.
        model: String,
        /// How many the request carries.
        given: usize,
        /// Fewest the model takes.
        min: u32,
        /// Most the model takes.
        max: u32,
    },
    /// The price is above what the ledger takes in one amount
    /// (`crate::money::AMOUNT_MICROS_MAX`), or cannot be computed without
    /// losing digits.
    #[error("the price of `{model}` with these options is out of range")]
    PriceOutOfRange {
        /// The model asked for.
        model: String,
    },
    /// The catalog entry cannot price any request (possible only for a
    /// catalog built without `parse_catalog`): a server fault.
    #[error("the catalog entry of `{model}` is inconsistent: {message}")]
    InconsistentCatalog {
        /// The model asked for.
        model: String,
        /// What is wrong with its entry.
        message: String,
    },
}

fn did_you_mean(close_matches: &[String]) -> String {
    if close_matches.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", close_matches.join(", "))
    }
}

fn allowed_values(allowed: &[String]) -> String {
    if allowed.is_empty() {
        "; the model does not offer this option".to_string()
    } else {
        format!("; allowed: {}", allowed.join(", "))
    }
}

impl EstimateError {
    /// The machine code for `data.error`: `unknown_model`, `invalid_option`,
    /// `invalid_request` (see [`EstimateError::field`]) or, for a server
    /// fault, `internal`.
    pub fn code(&self) -> ErrorCode {
        match self {
            EstimateError::UnknownModel { .. } => ErrorCode::UnknownModel,
            EstimateError::InvalidOption { .. } => ErrorCode::InvalidOption,
            EstimateError::ProductMismatch { .. }
            | EstimateError::InvalidInputImages { .. }
            | EstimateError::PriceOutOfRange { .. } => ErrorCode::InvalidRequest,
            EstimateError::InconsistentCatalog { .. } => ErrorCode::Internal,
        }
    }

    /// The request field at fault, for `invalid_request`'s `field`.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            EstimateError::UnknownModel { .. } => Some("model"),
            EstimateError::InvalidOption { .. } | EstimateError::PriceOutOfRange { .. } => {
                Some("units")
            }
            EstimateError::ProductMismatch { .. } => Some("product"),
            EstimateError::InvalidInputImages { .. } => Some("input_image_urls"),
            EstimateError::InconsistentCatalog { .. } => None,
        }
    }
}

/// Prices a request against a catalog.
///
/// Start from `base_price`; a fixed-price rule whose option value matches
/// replaces it; every matching multiplier rule multiplies it; unit `image`
/// multiplies by `count`, unit `second` by `duration`; the total is rounded
/// once to the micro-credit, half up. Every step is a breakdown line.
pub fn estimate(catalog: &Catalog, req: &EstimateRequest) -> Result<Estimate, EstimateError> {
    price_request(catalog, req, false)
}

/// Prices a request an agent may send before it uploads its input images
/// (`POST /v1/credits/estimate`): a request that carries no input images is
/// priced with the fewest the model takes (`input_images.min`), so an
/// image-to-image or image-to-video model answers the price of its cheapest
/// valid request; `Estimate::input_images` says how many were priced. A
/// request that carries images is priced exactly like [`estimate`], which a
/// submission always uses, so a job still needs its images.
pub fn estimate_before_upload(
    catalog: &Catalog,
    req: &EstimateRequest,
) -> Result<Estimate, EstimateError> {
    price_request(catalog, req, true)
}

fn price_request(
    catalog: &Catalog,
    req: &EstimateRequest,
    images_may_follow: bool,
) -> Result<Estimate, EstimateError> {
    let Some(spec) = catalog.model(&req.model) else {
        return Err(EstimateError::UnknownModel {
            model: req.model.clone(),
            close_matches: close_matches(catalog, &req.model),
        });
    };
    if let Some(product) = &req.product {
        if *product != spec.product {
            return Err(EstimateError::ProductMismatch {
                model: spec.model.clone(),
                product: product.clone(),
                expected: spec.product.clone(),
            });
        }
    }
    let chosen = resolve_options(spec, &req.units)?;
    let given = req.input_image_urls.len();
    let images = spec.input_images;
    let input_images = match u32::try_from(given) {
        Ok(0) if images_may_follow => images.min,
        Ok(n) if (images.min..=images.max).contains(&n) => n,
        _ => {
            return Err(EstimateError::InvalidInputImages {
                model: spec.model.clone(),
                given,
                min: images.min,
                max: images.max,
            })
        }
    };
    let (total, mut breakdown) = price(spec, &chosen, input_images)?;
    let credits = round_credits(total);
    breakdown.push(BreakdownLine {
        step: Step::Round,
        detail: "rounded once to the micro-credit (0.000001), half up".to_string(),
        factor: None,
        subtotal: credits,
    });
    let micros = to_micros(credits).map_err(|_| EstimateError::PriceOutOfRange {
        model: spec.model.clone(),
    })?;
    Ok(Estimate {
        model: spec.model.clone(),
        product: spec.product.clone(),
        price_version: catalog.price_version.clone(),
        credits,
        micros,
        breakdown,
        units: billed_units(&chosen),
        input_images,
    })
}

/// Checks each requested option against the model's and fills in defaults.
fn resolve_options(
    spec: &ModelSpec,
    units: &RequestedUnits,
) -> Result<BTreeMap<OptionName, OptionValue>, EstimateError> {
    let mut chosen = BTreeMap::new();
    for name in OptionName::ALL {
        let declared = spec.options.get(&name);
        let value = match (units.get(name), declared) {
            (Some(value), Some(option)) if option.allowed.contains(&value) => value,
            (Some(value), declared) => {
                return Err(EstimateError::InvalidOption {
                    option: name.as_str().to_string(),
                    value: value.to_string(),
                    allowed: declared
                        .map(|option| option.allowed.iter().map(ToString::to_string).collect())
                        .unwrap_or_default(),
                })
            }
            (None, Some(option)) => option.default.clone(),
            (None, None) => continue,
        };
        chosen.insert(name, value);
    }
    Ok(chosen)
}

fn billed_units(chosen: &BTreeMap<OptionName, OptionValue>) -> BilledUnits {
    let int = |name| match chosen.get(&name) {
        Some(OptionValue::Int(n)) => Some(*n),
        _ => None,
    };
    let text = |name| match chosen.get(&name) {
        Some(OptionValue::Text(text)) => Some(text.clone()),
        _ => None,
    };
    BilledUnits {
        count: int(OptionName::Count),
        resolution: text(OptionName::Resolution),
        duration: int(OptionName::Duration),
        aspect_ratio: text(OptionName::AspectRatio),
    }
}

/// Multiplies two decimals exactly, or returns `None` if the exact product
/// does not fit a `Decimal` (where `Decimal`'s own multiplication would
/// silently round).
fn exact_mul(a: Decimal, b: Decimal) -> Option<Decimal> {
    let (a, b) = (a.normalize(), b.normalize());
    let mantissa = a.mantissa().checked_mul(b.mantissa())?;
    Decimal::try_from_i128_with_scale(mantissa, a.scale() + b.scale())
        .ok()
        .map(|product| product.normalize())
}

/// The exact, unrounded price of a resolved request, with its breakdown.
fn price(
    spec: &ModelSpec,
    chosen: &BTreeMap<OptionName, OptionValue>,
    input_images: u32,
) -> Result<(Decimal, Vec<BreakdownLine>), EstimateError> {
    let out_of_range = || EstimateError::PriceOutOfRange {
        model: spec.model.clone(),
    };
    let base_detail = match spec.unit {
        PriceUnit::Tokens1k => {
            "base price per 1k_tokens (the estimate covers 1,000 tokens)".to_string()
        }
        unit => format!("base price per {unit}"),
    };
    let mut total = spec.base_price;
    let mut breakdown = vec![BreakdownLine {
        step: Step::Base,
        detail: base_detail,
        factor: None,
        subtotal: total,
    }];

    let matches = |rule: &PriceRule| match &rule.condition {
        RuleCondition::OptionEquals { option, value } => chosen.get(option) == Some(value),
        RuleCondition::InputImages => input_images > 0,
    };
    let describe = |condition: &RuleCondition| match condition {
        RuleCondition::OptionEquals { option, value } => format!("{option} = {value}"),
        RuleCondition::InputImages => format!("input images ({input_images})"),
    };
    // Fixed prices first (a valid catalog lets at most one match; otherwise
    // the first in catalog order wins), then every matching multiplier.
    let fixed = spec.price_rules.iter().find_map(|rule| match rule.effect {
        RuleEffect::Price(price) if matches(rule) => Some((rule, price)),
        _ => None,
    });
    if let Some((rule, fixed_price)) = fixed {
        total = fixed_price;
        breakdown.push(BreakdownLine {
            step: Step::FixedPrice,
            detail: format!(
                "{}: fixed price per {}",
                describe(&rule.condition),
                spec.unit
            ),
            factor: None,
            subtotal: total,
        });
    }
    for rule in spec.price_rules.iter().filter(|rule| matches(rule)) {
        if let RuleEffect::Multiplier(multiplier) = rule.effect {
            total = exact_mul(total, multiplier).ok_or_else(out_of_range)?;
            breakdown.push(BreakdownLine {
                step: Step::Multiplier,
                detail: describe(&rule.condition),
                factor: Some(multiplier),
                subtotal: total,
            });
        }
    }

    let inconsistent = |message: &str| EstimateError::InconsistentCatalog {
        model: spec.model.clone(),
        message: message.to_string(),
    };
    let (step, factor, detail) = match (spec.unit, chosen.get(&OptionName::Count)) {
        (PriceUnit::Image, Some(OptionValue::Int(count))) => {
            (Step::Count, *count, format!("count = {count}"))
        }
        (PriceUnit::Image, None) => (
            Step::Count,
            1,
            "count = 1 (the model offers no count)".into(),
        ),
        (PriceUnit::Image, Some(OptionValue::Text(_))) => {
            return Err(inconsistent("its count option has text values"))
        }
        (PriceUnit::Second, _) => match chosen.get(&OptionName::Duration) {
            Some(OptionValue::Int(seconds)) => {
                (Step::Duration, *seconds, format!("duration = {seconds} s"))
            }
            _ => {
                return Err(inconsistent(
                    "unit `second` needs an integer duration option",
                ))
            }
        },
        _ => return Ok((total, breakdown)),
    };
    total = exact_mul(total, Decimal::from(factor)).ok_or_else(out_of_range)?;
    breakdown.push(BreakdownLine {
        step,
        detail,
        factor: Some(Decimal::from(factor)),
        subtotal: total,
    });
    Ok((total, breakdown))
}

/// The listed ids nearest to `id`, nearest first, at most
/// [`CLOSE_MATCHES_MAX`]: by edit distance, ignoring case, where matching the
/// last `/` segment of an id (`nano-banana` for `google/nano-banana`) counts
/// as one edit. Ids further than a third of the query's length (at least 2)
/// are not suggested.
pub fn close_matches(catalog: &Catalog, id: &str) -> Vec<String> {
    let query: Vec<char> = id.to_lowercase().chars().collect();
    if query.is_empty() || query.len() > MODEL_ID_CHARS_MAX {
        return Vec::new();
    }
    let threshold = (query.len() / 3).max(2);
    let mut scored: Vec<(usize, &str)> = catalog
        .models
        .iter()
        .filter_map(|spec| {
            let candidate = spec.model.to_lowercase();
            let last = candidate.rsplit('/').next().unwrap_or(&candidate);
            let whole: Vec<char> = candidate.chars().collect();
            let tail: Vec<char> = last.chars().collect();
            let distance =
                edit_distance(&query, &whole).min(edit_distance(&query, &tail).saturating_add(1));
            (distance <= threshold).then_some((distance, spec.model.as_str()))
        })
        .collect();
    scored.sort_unstable();
    scored
        .into_iter()
        .take(CLOSE_MATCHES_MAX)
        .map(|(_, id)| id.to_string())
        .collect()
}

/// Levenshtein distance between two strings of characters.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// Credits for the request that sets no option on `spec` (defaults, fewest
/// input images), rounded; `None` when that request cannot be priced (only
/// for a catalog built without `parse_catalog`).
pub(super) fn default_credits(spec: &ModelSpec) -> Option<Decimal> {
    let defaults: BTreeMap<OptionName, OptionValue> = spec
        .options
        .iter()
        .map(|(name, option)| (*name, option.default.clone()))
        .collect();
    price(spec, &defaults, spec.input_images.min)
        .ok()
        .map(|(total, _)| round_credits(total))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::pricing::catalog::{parse_catalog, OptionSpec};
    use crate::pricing::listing::listing;
    use std::str::FromStr;

    const RYNJER: &str = include_str!("../../../fixtures/catalogs/rynjer.json");
    const KIWIWHALE: &str = include_str!("../../../fixtures/catalogs/kiwiwhale.json");
    const EXPECTED: &str = include_str!("../../../fixtures/catalogs/expected_prices.json");

    /// Models that exercise every unit and rule kind.
    pub(in crate::pricing) const TEST_CATALOG: &str = r#"{
      "price_version": "t-1", "currency": "credits",
      "models": [
        {"model": "img", "product": "image", "category": "text-to-image", "provider": "fixture",
         "upstream_model": "img", "unit": "image", "base_price": 20,
         "options": {"count": {"allowed": [1, 2, 4, 8], "default": 1},
                     "resolution": {"allowed": ["1K", "2K", "4K"], "default": "1K"}},
         "price_rules": [{"option": "resolution", "equals": "4K", "price": 40},
                         {"option": "resolution", "equals": "2K", "multiplier": 1.25}],
         "input_schema": {"type": "object", "properties": {"units": {"properties": {
            "count": {"enum": [1, 2, 4, 8], "default": 1},
            "resolution": {"enum": ["1K", "2K", "4K"], "default": "1K"}}}}}},
        {"model": "clip", "product": "video", "category": "text-to-video", "provider": "fixture",
         "upstream_model": "clip", "unit": "video", "base_price": 20,
         "options": {"resolution": {"allowed": ["720p", "1080p"], "default": "720p"}},
         "price_rules": [{"option": "resolution", "equals": "1080p", "price": 300},
                         {"when": "input_images", "multiplier": 1.5}],
         "input_images": {"min": 0, "max": 1},
         "input_schema": {"type": "object", "properties": {
            "units": {"properties": {"resolution": {"enum": ["720p", "1080p"], "default": "720p"}}},
            "input_image_urls": {"maxItems": 1}}}},
        {"model": "per-second", "product": "video", "category": "text-to-video", "provider": "fixture",
         "upstream_model": "ps", "unit": "second", "base_price": 0.0165,
         "options": {"duration": {"allowed": [5, 10, 3600], "default": 5},
                     "aspect_ratio": {"allowed": ["16:9", "9:16"], "default": "16:9"}},
         "price_rules": [{"option": "aspect_ratio", "equals": "9:16", "multiplier": 1.8}],
         "input_schema": {"type": "object", "properties": {"units": {"properties": {
            "duration": {"enum": [5, 10, 3600], "default": 5},
            "aspect_ratio": {"enum": ["16:9", "9:16"], "default": "16:9"}}}}}},
        {"model": "tiny", "product": "image", "category": "image-to-image", "provider": "fixture",
         "upstream_model": "tiny", "unit": "image", "base_price": 0.000003,
         "options": {"count": {"allowed": [1, 3], "default": 1}},
         "price_rules": [{"when": "input_images", "multiplier": 1.5}],
         "input_images": {"min": 0, "max": 1},
         "input_schema": {"type": "object", "properties": {
            "units": {"properties": {"count": {"enum": [1, 3], "default": 1}}},
            "input_image_urls": {"maxItems": 1}}}},
        {"model": "chat-1k", "product": "chat", "category": "chat", "provider": "fixture",
         "upstream_model": "c", "unit": "1k_tokens", "base_price": 0.002,
         "input_schema": {"type": "object"}},
        {"model": "song", "product": "music", "category": "text-to-music", "provider": "fixture",
         "upstream_model": "song", "unit": "track", "base_price": 35, "input_schema": {"type": "object"}},
        {"model": "huge", "product": "video", "category": "text-to-video", "provider": "fixture",
         "upstream_model": "huge", "unit": "second", "base_price": 1000000,
         "options": {"duration": {"allowed": [1, 3600], "default": 1},
                     "resolution": {"allowed": ["a", "b"], "default": "a"},
                     "aspect_ratio": {"allowed": ["a", "b"], "default": "a"}},
         "price_rules": [{"option": "resolution", "equals": "b", "multiplier": 100},
                         {"option": "aspect_ratio", "equals": "b", "multiplier": 100}],
         "input_schema": {"type": "object", "properties": {"units": {"properties": {
            "duration": {"enum": [1, 3600], "default": 1},
            "resolution": {"enum": ["a", "b"], "default": "a"},
            "aspect_ratio": {"enum": ["a", "b"], "default": "a"}}}}}}
      ]
    }"#;

    fn dec(text: &str) -> Decimal {
        Decimal::from_str(text).expect("test decimal")
    }

    fn catalog(text: &str) -> Catalog {
        parse_catalog(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn request(model: &str, units: &str, images: usize) -> EstimateRequest {
        EstimateRequest {
            product: None,
            model: model.to_string(),
            units: serde_json::from_str(units).expect("units"),
            input_image_urls: vec!["https://example.com/in.png".to_string(); images],
        }
    }

    /// Prices a request on TEST_CATALOG and checks credits and micros.
    fn check(model: &str, units: &str, images: usize, credits: &str) -> Estimate {
        let estimate = estimate(&catalog(TEST_CATALOG), &request(model, units, images))
            .unwrap_or_else(|e| panic!("{model} {units}: {e}"));
        assert_eq!(estimate.credits, dec(credits), "{model} {units} {images}");
        assert_eq!(estimate.micros, to_micros(dec(credits)).expect("micros"),);
        estimate
    }

    fn check_err(model: &str, units: &str, images: usize) -> EstimateError {
        match estimate(&catalog(TEST_CATALOG), &request(model, units, images)) {
            Ok(estimate) => panic!("{model} {units}: priced at {}", estimate.credits),
            Err(error) => error,
        }
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Case {
        catalog: String,
        request: EstimateRequest,
        credits: String,
    }

    #[test]
    fn expected_prices_table() {
        let rynjer = catalog(RYNJER);
        let kiwiwhale = catalog(KIWIWHALE);
        let cases: Vec<Case> = serde_json::from_str(EXPECTED).expect("table");
        assert!(cases.len() >= 70, "{} cases", cases.len());
        for case in cases {
            let catalog = match case.catalog.as_str() {
                "rynjer.json" => &rynjer,
                "kiwiwhale.json" => &kiwiwhale,
                other => panic!("unknown catalog {other}"),
            };
            let expected = dec(&case.credits);
            let got = estimate(catalog, &case.request)
                .unwrap_or_else(|e| panic!("{:?}: {e}", case.request));
            assert_eq!(got.credits, expected, "{:?}", case.request);
            assert_eq!(got.micros, to_micros(expected).expect("micros"),);
            assert_eq!(got.price_version, catalog.price_version);
        }
    }

    #[test]
    fn expected_prices_cover_every_shipped_model() {
        let cases: Vec<Case> = serde_json::from_str(EXPECTED).expect("table");
        for (name, text) in [("rynjer.json", RYNJER), ("kiwiwhale.json", KIWIWHALE)] {
            for spec in catalog(text).models {
                assert!(
                    cases
                        .iter()
                        .any(|case| case.catalog == name && case.request.model == spec.model),
                    "{name}: {} has no expected price",
                    spec.model
                );
            }
        }
    }

    #[test]
    fn every_estimate_path() {
        check("img", "{}", 0, "20");
        check("img", r#"{"count": 4}"#, 0, "80");
        check("img", r#"{"resolution": "4K", "count": 8}"#, 0, "320");
        check("img", r#"{"resolution": "2K", "count": 2}"#, 0, "50");
        check("clip", "{}", 0, "20");
        check("clip", "{}", 1, "30");
        check("clip", r#"{"resolution": "1080p"}"#, 0, "300");
        check("clip", r#"{"resolution": "1080p"}"#, 1, "450");
        check("per-second", "{}", 0, "0.0825");
        check("per-second", r#"{"duration": 10}"#, 0, "0.165");
        check(
            "per-second",
            r#"{"duration": 10, "aspect_ratio": "9:16"}"#,
            0,
            "0.297",
        );
        check("per-second", r#"{"duration": 3600}"#, 0, "59.4");
        check("chat-1k", "{}", 0, "0.002");
        check("song", "{}", 0, "35");
        check("huge", "{}", 0, "1000000");
        check("huge", r#"{"resolution": "b"}"#, 0, "100000000");
    }

    #[test]
    fn rounding_happens_once_half_up_at_the_micro() {
        // 0.000003 x 1.5 = 0.0000045: half up gives 0.000005 (half-even would give 0.000004).
        let one = check("tiny", "{}", 1, "0.000005");
        assert_eq!(one.micros, 5);
        // 0.000003 x 1.5 x 3 = 0.0000135 -> 0.000014: rounding once, at the end,
        // not per image (3 x 0.000005 would be 0.000015).
        let three = check("tiny", r#"{"count": 3}"#, 1, "0.000014");
        let steps: Vec<(Step, String)> = three
            .breakdown
            .iter()
            .map(|line| (line.step, line.subtotal.to_string()))
            .collect();
        assert_eq!(
            steps,
            [
                (Step::Base, "0.000003".to_string()),
                (Step::Multiplier, "0.0000045".to_string()),
                (Step::Count, "0.0000135".to_string()),
                (Step::Round, "0.000014".to_string()),
            ]
        );
    }

    #[test]
    fn breakdown_names_each_step() {
        let estimate = check("clip", r#"{"resolution": "1080p"}"#, 1, "450");
        let lines: Vec<(Step, &str, Option<String>, String)> = estimate
            .breakdown
            .iter()
            .map(|l| {
                (
                    l.step,
                    l.detail.as_str(),
                    l.factor.map(|f| f.to_string()),
                    l.subtotal.to_string(),
                )
            })
            .collect();
        assert_eq!(
            lines,
            [
                (Step::Base, "base price per video", None, "20".to_string()),
                (
                    Step::FixedPrice,
                    "resolution = 1080p: fixed price per video",
                    None,
                    "300".to_string()
                ),
                (
                    Step::Multiplier,
                    "input images (1)",
                    Some("1.5".to_string()),
                    "450".to_string()
                ),
                (
                    Step::Round,
                    "rounded once to the micro-credit (0.000001), half up",
                    None,
                    "450".to_string()
                ),
            ]
        );
        assert_eq!(
            estimate.units,
            BilledUnits {
                resolution: Some("1080p".into()),
                ..BilledUnits::default()
            }
        );
        assert_eq!(estimate.input_images, 1);
        let per_second = check("per-second", "{}", 0, "0.0825");
        assert_eq!(per_second.units.duration, Some(5));
        assert_eq!(per_second.units.aspect_ratio.as_deref(), Some("16:9"));
        assert_eq!(per_second.breakdown[1].detail, "duration = 5 s");
        let tokens = check("chat-1k", "{}", 0, "0.002");
        assert!(tokens.breakdown[0].detail.contains("covers 1,000 tokens"));
    }

    #[test]
    fn estimates_render_credits_as_json_numbers() {
        let estimate = check("per-second", "{}", 0, "0.0825");
        let text = serde_json::to_string(&estimate).expect("serialize");
        assert!(
            text.contains(r#""credits":0.0825,"micros":82500"#),
            "{text}"
        );
        assert!(
            text.contains(r#""step":"base","detail":"base price per second","subtotal":0.0165"#),
            "{text}"
        );
        assert!(
            text.contains(r#""units":{"duration":5,"aspect_ratio":"16:9"}"#),
            "{text}"
        );
        let back: Estimate = serde_json::from_str(&text).expect("reads back");
        assert_eq!(back, estimate);
        let big = check("img", r#"{"resolution": "4K"}"#, 0, "40");
        let text = serde_json::to_string(&big).expect("serialize");
        assert!(text.contains(r#""credits":40,"#), "{text}");
    }

    #[test]
    fn invalid_options_list_the_allowed_values() {
        assert_eq!(
            check_err("img", r#"{"count": 3}"#, 0),
            EstimateError::InvalidOption {
                option: "count".into(),
                value: "3".into(),
                allowed: vec!["1".into(), "2".into(), "4".into(), "8".into()],
            }
        );
        let error = check_err("clip", r#"{"count": 1}"#, 0);
        assert_eq!(
            error,
            EstimateError::InvalidOption {
                option: "count".into(),
                value: "1".into(),
                allowed: vec![],
            }
        );
        assert_eq!(
            error.to_string(),
            "invalid count `1`; the model does not offer this option"
        );
        let error = check_err("song", r#"{"resolution": "1080p"}"#, 0);
        assert_eq!(
            (error.code().as_str(), error.field()),
            ("invalid_option", Some("units"))
        );
        assert_eq!(
            check_err("img", r#"{"resolution": "4k"}"#, 0).to_string(),
            "invalid resolution `4k`; allowed: 1K, 2K, 4K"
        );
        assert!(matches!(
            check_err("per-second", r#"{"duration": 6}"#, 0),
            EstimateError::InvalidOption { .. }
        ));
        assert!(serde_json::from_str::<RequestedUnits>(r#"{"resolutoin": "1K"}"#).is_err());
    }

    #[test]
    fn input_images_are_counted_against_the_model() {
        let error = check_err("img", "{}", 1);
        assert_eq!(
            error,
            EstimateError::InvalidInputImages {
                model: "img".into(),
                given: 1,
                min: 0,
                max: 0
            }
        );
        assert_eq!(
            (error.code().as_str(), error.field()),
            ("invalid_request", Some("input_image_urls"))
        );
        assert!(matches!(
            check_err("clip", "{}", 2),
            EstimateError::InvalidInputImages { given: 2, .. }
        ));
        let rynjer = catalog(RYNJER);
        let error = estimate(&rynjer, &request("fal-ai/ltx-2/image-to-video", "{}", 0))
            .expect_err("needs an image");
        assert_eq!(
            error.to_string(),
            "model `fal-ai/ltx-2/image-to-video` takes 1 to 1 input images, not 0"
        );
    }

    #[test]
    fn an_estimate_before_upload_prices_the_fewest_input_images() {
        let rynjer = catalog(RYNJER);
        let model = "fal-ai/ltx-2/image-to-video";
        let before = estimate_before_upload(&rynjer, &request(model, "{}", 0))
            .expect("priced before the upload");
        let with_image = estimate(&rynjer, &request(model, "{}", 1)).expect("priced");
        assert_eq!(
            before, with_image,
            "the price of the cheapest valid request"
        );
        assert_eq!(before.input_images, 1);
        // A submission prices with `estimate`, which still needs the image.
        assert!(matches!(
            estimate(&rynjer, &request(model, "{}", 0)),
            Err(EstimateError::InvalidInputImages { given: 0, .. })
        ));
        // Too many images are refused either way; a model taking none is
        // priced with none.
        assert!(matches!(
            estimate_before_upload(&rynjer, &request(model, "{}", 2)),
            Err(EstimateError::InvalidInputImages { given: 2, .. })
        ));
        let plain = estimate_before_upload(&rynjer, &request("wan-2.6", "{}", 0)).expect("ok");
        assert_eq!(
            plain,
            estimate(&rynjer, &request("wan-2.6", "{}", 0)).expect("ok")
        );
    }

    #[test]
    fn product_is_inferred_or_checked() {
        let catalog = catalog(TEST_CATALOG);
        let mut req = request("img", "{}", 0);
        assert_eq!(
            estimate(&catalog, &req).map(|e| e.product),
            Ok("image".to_string())
        );
        req.product = Some("image".into());
        assert!(estimate(&catalog, &req).is_ok());
        req.product = Some("video".into());
        let error = estimate(&catalog, &req).expect_err("mismatch");
        assert_eq!(
            error,
            EstimateError::ProductMismatch {
                model: "img".into(),
                product: "video".into(),
                expected: "image".into()
            }
        );
        assert_eq!(error.field(), Some("product"));
    }

    #[test]
    fn unknown_models_suggest_close_matches() {
        let rynjer = catalog(RYNJER);
        let suggest = |id: &str| match estimate(&rynjer, &request(id, "{}", 0)) {
            Err(EstimateError::UnknownModel {
                model,
                close_matches,
            }) => {
                assert_eq!(model, id);
                close_matches
            }
            other => panic!("{id}: {other:?}"),
        };
        assert_eq!(
            suggest("nano-banana-pr"),
            ["nano-banana-pro", "google/nano-banana"]
        );
        assert_eq!(suggest("nano-banana")[0], "google/nano-banana");
        assert_eq!(suggest("v5"), ["V5", "V4", "V4_5"]);
        assert_eq!(suggest("veo3-fast"), ["veo3_fast"]);
        assert_eq!(suggest("image-to-video"), ["fal-ai/ltx-2/image-to-video"]);
        assert_eq!(suggest("midjourney"), Vec::<String>::new());
        assert_eq!(suggest(""), Vec::<String>::new());
        assert_eq!(suggest(&"x".repeat(10_000)), Vec::<String>::new());
        let error = estimate(&rynjer, &request("sora2", "{}", 0)).expect_err("unknown");
        assert_eq!(
            error.to_string(),
            "unknown model `sora2`; did you mean sora-2?"
        );
        assert_eq!(
            (error.code().as_str(), error.field()),
            ("unknown_model", Some("model"))
        );
    }

    #[test]
    fn out_of_range_prices_are_errors_not_panics() {
        // 1,000,000 x 3600 s is above the ledger's largest amount.
        assert_eq!(
            check_err("huge", r#"{"duration": 3600}"#, 0),
            EstimateError::PriceOutOfRange {
                model: "huge".into()
            }
        );
        let error = check_err(
            "huge",
            r#"{"duration": 3600, "resolution": "b", "aspect_ratio": "b"}"#,
            0,
        );
        assert_eq!(
            error,
            EstimateError::PriceOutOfRange {
                model: "huge".into()
            }
        );
        assert_eq!(exact_mul(Decimal::MAX, dec("2")), None);
        assert_eq!(
            exact_mul(dec("0.0000000000000001"), dec("0.0000000000000001")),
            None
        );
        assert_eq!(
            exact_mul(dec("1.5"), dec("0.000003")),
            Some(dec("0.0000045"))
        );
    }

    #[test]
    fn unvalidated_catalogs_give_errors_not_panics() {
        let mut broken = catalog(TEST_CATALOG);
        for spec in &mut broken.models {
            spec.options.clear();
            spec.price_rules.push(PriceRule {
                condition: RuleCondition::InputImages,
                effect: RuleEffect::Price(Decimal::MAX),
            });
        }
        let error = estimate(&broken, &request("per-second", "{}", 0)).expect_err("no duration");
        assert_eq!(error.code().as_str(), "internal");
        assert!(matches!(error, EstimateError::InconsistentCatalog { .. }));
        let listed = listing(&broken);
        assert_eq!(listed.models[2].default_credits, None);
        let mut bad_count = catalog(TEST_CATALOG);
        bad_count.models[0].options.insert(
            OptionName::Count,
            OptionSpec {
                allowed: vec![OptionValue::Text("x".into())],
                default: OptionValue::Text("x".into()),
            },
        );
        assert!(matches!(
            estimate(&bad_count, &request("img", "{}", 0)),
            Err(EstimateError::InconsistentCatalog { .. })
        ));
    }

    #[test]
    fn requests_deserialize_with_defaults() {
        let req: EstimateRequest =
            serde_json::from_str(r#"{"model": "img", "price_version": "2026-02-02-v1"}"#)
                .expect("request");
        assert_eq!(
            req,
            EstimateRequest {
                model: "img".into(),
                ..EstimateRequest::default()
            }
        );
        assert!(serde_json::from_str::<EstimateRequest>(
            r#"{"model": "img", "units": {"count": -1}}"#
        )
        .is_err());
        assert!(serde_json::from_str::<EstimateRequest>(
            r#"{"model": "img", "units": {"count": "2"}}"#
        )
        .is_err());
    }
}
