//! The price catalog: its JSON format, its types, and [`parse_catalog`], the
//! only way in, which refuses any document that is not entirely valid.
//!
//! Invariant: a [`Catalog`] returned by [`parse_catalog`] keeps every rule of
//! `fixtures/catalogs/README.md`: unique model ids, known units, prices that
//! are non-negative whole micro-credits, option defaults among their allowed
//! values, price rules that name declared options and values (never a
//! default, so `base_price` is always the price of the default request), at
//! most one fixed-price rule that can match any request, and an
//! `input_schema` that agrees with the options. Every refusal carries the
//! path of the offending field (`models[3].price_rules[0].multiplier`).
//!
//! The types here are the format's only field list: a shape error is
//! located by `pricing::shape`, which reads the document again through
//! them; the semantic rules are `pricing::validate`'s.

use std::collections::BTreeMap;
use std::fmt;

use rust_decimal::Decimal;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::shape::{deserialize_located, json_kind};
use super::validate::validate_catalog;

/// Largest catalog document [`parse_catalog`] reads, in bytes.
pub const CATALOG_BYTES_MAX: usize = 1024 * 1024;
/// Most models one catalog may list.
pub const CATALOG_MODELS_MAX: usize = 1_000;
/// Longest `price_version`, in characters.
pub const PRICE_VERSION_CHARS_MAX: usize = 64;
/// Longest model id, in characters.
pub const MODEL_ID_CHARS_MAX: usize = 128;
/// Longest `upstream_model`, in characters.
pub const UPSTREAM_MODEL_CHARS_MAX: usize = 256;
/// Longest `product`, `category` or `provider`, in characters.
pub const NAME_CHARS_MAX: usize = 64;
/// Longest `note`, in characters.
pub const NOTE_CHARS_MAX: usize = 500;
/// Most allowed values of one option.
pub const OPTION_VALUES_MAX: usize = 32;
/// Longest text option value (`"1080p"`, `"16:9"`), in characters.
pub const OPTION_VALUE_CHARS_MAX: usize = 32;
/// Largest allowed `count` value.
pub const COUNT_MAX: u32 = 64;
/// Largest allowed `duration` value, in seconds.
pub const DURATION_SECONDS_MAX: u32 = 3_600;
/// Most price rules of one model.
pub const PRICE_RULES_MAX: usize = 32;
/// Largest `input_images.max`.
pub const INPUT_IMAGES_MAX: u32 = 16;
/// Largest price of one unit (a `base_price` or a rule's `price`), in credits.
pub const PRICE_CREDITS_MAX: u32 = 1_000_000;
/// Largest multiplier a price rule may apply.
pub const MULTIPLIER_MAX: u32 = 100;
/// Most decimal places of a multiplier.
pub const MULTIPLIER_DECIMALS_MAX: u32 = 6;
/// The only currency a catalog may name.
pub const CURRENCY: &str = "credits";

/// A validated price catalog: one price version of every model it lists.
///
/// `Deserialize` reads the raw shape only; use [`parse_catalog`], which also
/// validates. `Serialize` writes the same format back (prices as JSON
/// numbers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// The version jobs record (`"2026-02-02-v1"`): letters, digits, `.`,
    /// `_` and `-`, starting with a letter or digit.
    pub price_version: String,
    /// Always `"credits"`.
    pub currency: String,
    /// The models, in listing order; ids are unique.
    pub models: Vec<ModelSpec>,
}

impl ModelSpec {
    /// Whether a generate request for this model needs a prompt that is not
    /// blank: the model's `prompt` field. A model stored before the field
    /// existed (no `prompt`) keeps the rule that held then: text-to-* models
    /// and chat need one.
    pub fn needs_prompt(&self) -> bool {
        match self.prompt {
            Some(rule) => rule == PromptRule::Required,
            None => self.category.starts_with("text-to") || self.product == "chat",
        }
    }
}

/// Whether a generate request for a model must carry a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptRule {
    /// A prompt that is not blank is required.
    Required,
    /// A prompt may be sent or left out.
    Optional,
}

impl Catalog {
    /// The model with exactly this id (ids are case-sensitive), if listed.
    pub fn model(&self, id: &str) -> Option<&ModelSpec> {
        self.models.iter().find(|spec| spec.model == id)
    }
}

/// One model: what it is, who serves it, and how it is priced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// The id agents send (`"nano-banana-pro"`, `"fal-ai/ltx-2/image-to-video"`).
    pub model: String,
    /// The product, which is also the key scope (`image`, `video`, `music`,
    /// `chat`, ...): lowercase data, not a closed set.
    pub product: String,
    /// The category (`text-to-image`, `image-to-video`, ...): lowercase data.
    pub category: String,
    /// The provider that runs the model (`fixture`, `fal`, ...).
    pub provider: String,
    /// The model id the provider knows it by.
    pub upstream_model: String,
    /// Whether a generate request needs a prompt; absent only in catalogs
    /// stored before the field existed (see [`ModelSpec::needs_prompt`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<PromptRule>,
    /// What one `base_price` buys.
    pub unit: PriceUnit,
    /// Credits per unit for the default request.
    #[serde(with = "super::decimal_json")]
    pub base_price: Decimal,
    /// The options a request may set, with their allowed values and defaults.
    #[serde(default)]
    pub options: BTreeMap<OptionName, OptionSpec>,
    /// Rules that change the price for some option values or for input images.
    #[serde(default)]
    pub price_rules: Vec<PriceRule>,
    /// How many input images a request must and may carry (default none).
    #[serde(default)]
    pub input_images: InputImages,
    /// Free text shown in the listing.
    #[serde(default)]
    pub note: String,
    /// Prices by what a job actually used (tokens, seconds), when the
    /// upstream reports it: the estimate above is then the most a job may
    /// cost (what is held), and success charges the usage price, never more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_price: Option<UsagePrice>,
    /// A JSON Schema (`"type": "object"`) of the generate request, agreeing
    /// with `options` and `input_images`.
    pub input_schema: Map<String, Value>,
}

/// A price by usage. Every field is credits; a field left out is zero.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsagePrice {
    /// Credits per 1,000 input (prompt) tokens.
    #[serde(
        default,
        with = "super::decimal_json",
        skip_serializing_if = "Decimal::is_zero"
    )]
    pub input_per_1k_tokens: Decimal,
    /// Credits per 1,000 output (completion or image) tokens.
    #[serde(
        default,
        with = "super::decimal_json",
        skip_serializing_if = "Decimal::is_zero"
    )]
    pub output_per_1k_tokens: Decimal,
    /// Credits per second of generated media.
    #[serde(
        default,
        with = "super::decimal_json",
        skip_serializing_if = "Decimal::is_zero"
    )]
    pub per_second: Decimal,
}

impl UsagePrice {
    /// What a job that used `input_tokens`, `output_tokens` and `media_ms`
    /// costs, in micro-credits, rounded up to the micro-credit and never
    /// above `cap_micros` (the hold).
    pub fn charge_micros(
        &self,
        input_tokens: u64,
        output_tokens: u64,
        media_ms: u64,
        cap_micros: i64,
    ) -> i64 {
        let per = |price: Decimal, amount: u64, unit: u64| {
            price
                .checked_mul(Decimal::from(amount))
                .and_then(|total| total.checked_div(Decimal::from(unit)))
        };
        let credits = [
            per(self.input_per_1k_tokens, input_tokens, 1_000),
            per(self.output_per_1k_tokens, output_tokens, 1_000),
            per(self.per_second, media_ms, 1_000),
        ]
        .into_iter()
        .try_fold(Decimal::ZERO, |sum, part| {
            part.and_then(|p| sum.checked_add(p))
        });
        let micros = credits
            .and_then(|credits| credits.checked_mul(Decimal::from(crate::money::MICROS_PER_CREDIT)))
            .map(|micros| micros.ceil());
        match micros.and_then(|micros| i64::try_from(micros).ok()) {
            Some(micros) => micros.clamp(0, cap_micros.max(0)),
            // Beyond any representable amount: the cap.
            None => cap_micros.max(0),
        }
    }
}

/// What one unit of a model's price buys, and so what multiplies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PriceUnit {
    /// One output image: the `count` option multiplies the price.
    #[serde(rename = "image")]
    Image,
    /// One video clip, whatever its duration: a flat price per request.
    #[serde(rename = "video")]
    Video,
    /// One second of output: the `duration` option (required) multiplies the
    /// price.
    #[serde(rename = "second")]
    Second,
    /// One music generation: a flat price per request.
    #[serde(rename = "track")]
    Track,
    /// One call (chat completion, tool): a flat price per request.
    #[serde(rename = "request")]
    Request,
    /// 1,000 tokens: an estimate prices one such block (see the README).
    #[serde(rename = "1k_tokens")]
    Tokens1k,
}

impl PriceUnit {
    /// The name used in the JSON format.
    pub fn as_str(self) -> &'static str {
        match self {
            PriceUnit::Image => "image",
            PriceUnit::Video => "video",
            PriceUnit::Second => "second",
            PriceUnit::Track => "track",
            PriceUnit::Request => "request",
            PriceUnit::Tokens1k => "1k_tokens",
        }
    }
}

impl fmt::Display for PriceUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name of a request option: the four fields of a request's `units`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptionName {
    /// How many outputs (integer); multiplies the price of `image` models.
    Count,
    /// Output resolution (text: `"1K"`, `"4K"`, `"720p"`, `"1080p"`).
    Resolution,
    /// Output duration in seconds (integer); multiplies `second` models.
    Duration,
    /// Output aspect ratio (text: `"16:9"`).
    AspectRatio,
}

impl OptionName {
    /// Every option name, in `units` order.
    pub const ALL: [OptionName; 4] = [
        OptionName::Count,
        OptionName::Resolution,
        OptionName::Duration,
        OptionName::AspectRatio,
    ];

    /// The name used in the JSON format and in a request's `units`.
    pub fn as_str(self) -> &'static str {
        match self {
            OptionName::Count => "count",
            OptionName::Resolution => "resolution",
            OptionName::Duration => "duration",
            OptionName::AspectRatio => "aspect_ratio",
        }
    }

    /// The option with this JSON name, if any.
    pub fn from_name(name: &str) -> Option<OptionName> {
        OptionName::ALL
            .into_iter()
            .find(|option| option.as_str() == name)
    }

    /// Whether this option's values are integers (`count`, `duration`)
    /// rather than text.
    pub fn is_integer(self) -> bool {
        matches!(self, OptionName::Count | OptionName::Duration)
    }
}

impl fmt::Display for OptionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One value of an option: an integer (`count`, `duration`) or text
/// (`resolution`, `aspect_ratio`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum OptionValue {
    /// A non-negative integer, written as a JSON number.
    Int(u32),
    /// Text, written as a JSON string.
    Text(String),
}

impl<'de> Deserialize<'de> for OptionValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Through `Value`, because serde's untagged enums cannot read
        // arbitrary-precision numbers.
        match Value::deserialize(deserializer)? {
            Value::Number(number) => number
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(OptionValue::Int)
                .ok_or_else(|| {
                    D::Error::custom(format!(
                        "option value `{number}` is not an integer in 0..={}",
                        u32::MAX
                    ))
                }),
            Value::String(text) => Ok(OptionValue::Text(text)),
            other => Err(D::Error::custom(format!(
                "an option value is an integer or a string, not {}",
                json_kind(&other)
            ))),
        }
    }
}

impl fmt::Display for OptionValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionValue::Int(n) => write!(f, "{n}"),
            OptionValue::Text(text) => f.write_str(text),
        }
    }
}

/// The values a request may choose for one option, and the one it gets when
/// it chooses none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionSpec {
    /// The allowed values, in listing order, without duplicates.
    pub allowed: Vec<OptionValue>,
    /// The value used when a request leaves the option out; one of `allowed`.
    pub default: OptionValue,
}

/// How many input images (`input_image_urls`) a request must and may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputImages {
    /// Fewest input images (1 for image-to-video and edit models).
    pub min: u32,
    /// Most input images (0: the model takes none).
    pub max: u32,
}

/// A price rule: when its condition holds, its effect changes the price.
///
/// In JSON a rule is flat: `{"option": "resolution", "equals": "4K",
/// "price": 40}`, `{"option": "resolution", "equals": "1080p",
/// "multiplier": 1.8}` or `{"when": "input_images", "multiplier": 1.5}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawPriceRule", into = "RawPriceRule")]
pub struct PriceRule {
    /// When the rule applies.
    pub condition: RuleCondition,
    /// What it does to the price.
    pub effect: RuleEffect,
}

/// When a price rule applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RuleCondition {
    /// The request's value of `option` (explicit or default) is `value`.
    OptionEquals {
        /// The option the rule looks at.
        option: OptionName,
        /// The value that triggers the rule.
        value: OptionValue,
    },
    /// The request carries at least one input image.
    InputImages,
}

/// What a price rule does to the price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleEffect {
    /// Replaces the per-unit price (before multipliers, count and duration).
    Price(Decimal),
    /// Multiplies the per-unit price.
    Multiplier(Decimal),
}

/// Conditions a rule can name with `when`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum WhenCondition {
    /// At least one input image.
    InputImages,
}

/// The flat JSON shape of a [`PriceRule`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPriceRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    option: Option<OptionName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    equals: Option<OptionValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    when: Option<WhenCondition>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::decimal_json::option"
    )]
    price: Option<Decimal>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::decimal_json::option"
    )]
    multiplier: Option<Decimal>,
}

impl TryFrom<RawPriceRule> for PriceRule {
    type Error = String;

    fn try_from(raw: RawPriceRule) -> Result<Self, String> {
        let condition = match (raw.option, raw.equals, raw.when) {
            (Some(option), Some(value), None) => RuleCondition::OptionEquals { option, value },
            (None, None, Some(WhenCondition::InputImages)) => RuleCondition::InputImages,
            (Some(_), None, None) => return Err("a rule with `option` needs `equals`".into()),
            (None, Some(_), None) => return Err("a rule with `equals` needs `option`".into()),
            (None, None, None) => {
                return Err("a rule needs a condition: `option` and `equals`, or `when`".into())
            }
            _ => return Err("a rule has either `option` and `equals`, or `when`, not both".into()),
        };
        let effect = match (raw.price, raw.multiplier) {
            (Some(price), None) => RuleEffect::Price(price),
            (None, Some(multiplier)) => RuleEffect::Multiplier(multiplier),
            (None, None) => return Err("a rule needs an effect: `price` or `multiplier`".into()),
            (Some(_), Some(_)) => {
                return Err("a rule has either `price` or `multiplier`, not both".into())
            }
        };
        Ok(PriceRule { condition, effect })
    }
}

impl From<PriceRule> for RawPriceRule {
    fn from(rule: PriceRule) -> Self {
        let (option, equals, when) = match rule.condition {
            RuleCondition::OptionEquals { option, value } => (Some(option), Some(value), None),
            RuleCondition::InputImages => (None, None, Some(WhenCondition::InputImages)),
        };
        let (price, multiplier) = match rule.effect {
            RuleEffect::Price(price) => (Some(price), None),
            RuleEffect::Multiplier(multiplier) => (None, Some(multiplier)),
        };
        RawPriceRule {
            option,
            equals,
            when,
            price,
            multiplier,
        }
    }
}

/// Why a catalog was refused: where (`path`, empty for the whole document)
/// and what.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogError {
    /// The offending field, as `models[3].price_rules[0].multiplier`; empty
    /// when the whole document is at fault (not JSON, too large).
    pub path: String,
    /// What is wrong, for a human.
    pub message: String,
}

impl CatalogError {
    pub(super) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        CatalogError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "invalid catalog: {}", self.message)
        } else {
            write!(f, "invalid catalog at {}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for CatalogError {}

/// Parses and validates a catalog document. Nothing invalid gets through:
/// see the module invariant and `fixtures/catalogs/README.md`.
pub fn parse_catalog(json: &str) -> Result<Catalog, CatalogError> {
    if json.len() > CATALOG_BYTES_MAX {
        return Err(CatalogError::new(
            "",
            format!(
                "the document is {} bytes, more than CATALOG_BYTES_MAX ({CATALOG_BYTES_MAX})",
                json.len()
            ),
        ));
    }
    let catalog: Catalog = match serde_json::from_str(json) {
        Ok(catalog) => catalog,
        Err(error) => return Err(locate_shape_error(json, &error)),
    };
    validate_catalog(&catalog)?;
    Ok(catalog)
}

/// Finds the field a serde error is about by reading the document again
/// with the same types, tracking the path; falls back to serde's own
/// message (with line and column) for what only the text shows (a
/// duplicate member).
fn locate_shape_error(json: &str, error: &serde_json::Error) -> CatalogError {
    match serde_json::from_str::<Value>(json) {
        Err(syntax) => CatalogError::new("", format!("not valid JSON: {syntax}")),
        Ok(value) => match deserialize_located::<Catalog>(&value) {
            Err(located) => located,
            Ok(_) => CatalogError::new("", error.to_string()),
        },
    }
}
