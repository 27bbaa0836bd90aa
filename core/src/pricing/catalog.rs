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

use std::collections::BTreeMap;
use std::fmt;

use rust_decimal::Decimal;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::CREDIT_DECIMALS;

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
    /// A JSON Schema (`"type": "object"`) of the generate request, agreeing
    /// with `options` and `input_images`.
    pub input_schema: Map<String, Value>,
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
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
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

// ---------------------------------------------------------------------------
// Shape errors: serde says what, these functions find where.

/// Finds the field a serde error is about by descending the document with the
/// same types; falls back to serde's own message (with line and column).
fn locate_shape_error(json: &str, error: &serde_json::Error) -> CatalogError {
    match serde_json::from_str::<Value>(json) {
        Err(syntax) => CatalogError::new("", format!("not valid JSON: {syntax}")),
        Ok(value) => {
            locate_in_catalog(&value).unwrap_or_else(|| CatalogError::new("", error.to_string()))
        }
    }
}

/// Deserializes `value` as `T`, keeping only the message on failure.
fn check<T: DeserializeOwned>(value: &Value) -> Result<(), String> {
    T::deserialize(value).map(|_| ()).map_err(|e| e.to_string())
}

/// Reads `value` as a price or multiplier, keeping only the message.
fn check_decimal(value: &Value) -> Result<(), String> {
    super::decimal_json::deserialize(value)
        .map(|_| ())
        .map_err(|e: serde_json::Error| e.to_string())
}

fn at(path: &str, result: Result<(), String>) -> Option<CatalogError> {
    result.err().map(|message| CatalogError::new(path, message))
}

/// The members one JSON object of the format may and must have.
struct Shape<'a> {
    /// What the object is, for messages ("a model").
    what: &'a str,
    /// Every member it may have.
    known: &'a [&'a str],
    /// The members it must have.
    required: &'a [&'a str],
}

/// Finds the first bad member of an object: not an object, an unknown
/// member, a member `field` finds fault with, or a missing member.
fn locate_in_object(
    value: &Value,
    path: &str,
    shape: &Shape<'_>,
    field: impl Fn(&str, &Value, &str) -> Option<CatalogError>,
) -> Option<CatalogError> {
    let Some(object) = value.as_object() else {
        return Some(CatalogError::new(
            path,
            format!("{} is a JSON object, not {}", shape.what, json_kind(value)),
        ));
    };
    for (key, item) in object {
        let item_path = join(path, key);
        if !shape.known.contains(&key.as_str()) {
            return Some(CatalogError::new(
                item_path,
                format!(
                    "unknown field in {}; expected one of: {}",
                    shape.what,
                    shape.known.join(", ")
                ),
            ));
        }
        if let Some(error) = field(key, item, &item_path) {
            return Some(error);
        }
    }
    shape
        .required
        .iter()
        .find(|key| !object.contains_key(**key))
        .map(|key| CatalogError::new(join(path, key), "missing required field"))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn locate_in_array(
    value: &Value,
    path: &str,
    each: impl Fn(&Value, &str) -> Option<CatalogError>,
) -> Option<CatalogError> {
    let Some(items) = value.as_array() else {
        return Some(CatalogError::new(
            path,
            format!("expected an array, not {}", json_kind(value)),
        ));
    };
    items
        .iter()
        .enumerate()
        .find_map(|(i, item)| each(item, &format!("{path}[{i}]")))
}

const CATALOG_FIELDS: [&str; 3] = ["price_version", "currency", "models"];

fn locate_in_catalog(value: &Value) -> Option<CatalogError> {
    let shape = Shape {
        what: "a catalog",
        known: &CATALOG_FIELDS,
        required: &CATALOG_FIELDS,
    };
    locate_in_object(value, "", &shape, |key, item, path| match key {
        "models" => locate_in_array(item, path, locate_in_model),
        _ => at(path, check::<String>(item)),
    })
}

fn locate_in_model(value: &Value, path: &str) -> Option<CatalogError> {
    let shape = Shape {
        what: "a model",
        known: &[
            "model",
            "product",
            "category",
            "provider",
            "upstream_model",
            "prompt",
            "unit",
            "base_price",
            "options",
            "price_rules",
            "input_images",
            "note",
            "input_schema",
        ],
        required: &[
            "model",
            "product",
            "category",
            "provider",
            "upstream_model",
            "unit",
            "base_price",
            "input_schema",
        ],
    };
    let located = locate_in_object(value, path, &shape, |key, item, path| match key {
        "unit" => at(path, check::<PriceUnit>(item)),
        "prompt" => at(path, check::<PromptRule>(item)),
        "base_price" => at(path, check_decimal(item)),
        "input_images" => at(path, check::<InputImages>(item)),
        "input_schema" => at(path, check::<Map<String, Value>>(item)),
        "options" => locate_in_options(item, path),
        "price_rules" => locate_in_array(item, path, locate_in_rule),
        _ => at(path, check::<String>(item)),
    });
    located.or_else(|| at(path, check::<ModelSpec>(value)))
}

fn locate_in_options(value: &Value, path: &str) -> Option<CatalogError> {
    let names = OptionName::ALL.map(OptionName::as_str);
    let shape = Shape {
        what: "options",
        known: &names,
        required: &[],
    };
    locate_in_object(value, path, &shape, |_, item, path| {
        let shape = Shape {
            what: "an option",
            known: &["allowed", "default"],
            required: &["allowed", "default"],
        };
        locate_in_object(item, path, &shape, |key, item, path| match key {
            "allowed" => locate_in_array(item, path, |v, p| at(p, check::<OptionValue>(v))),
            _ => at(path, check::<OptionValue>(item)),
        })
    })
}

fn locate_in_rule(value: &Value, path: &str) -> Option<CatalogError> {
    let shape = Shape {
        what: "a price rule",
        known: &["option", "equals", "when", "price", "multiplier"],
        required: &[],
    };
    let located = locate_in_object(value, path, &shape, |key, item, path| match key {
        "option" => at(path, check::<OptionName>(item)),
        "equals" => at(path, check::<OptionValue>(item)),
        "when" => at(path, check::<WhenCondition>(item)),
        _ => at(path, check_decimal(item)),
    });
    located.or_else(|| at(path, check::<PriceRule>(value)))
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------------------
// Semantic validation of a well-shaped catalog.

fn validate_catalog(catalog: &Catalog) -> Result<(), CatalogError> {
    check_price_version(&catalog.price_version)
        .map_err(|message| CatalogError::new("price_version", message))?;
    if catalog.currency != CURRENCY {
        return Err(CatalogError::new(
            "currency",
            format!("the currency is \"{CURRENCY}\""),
        ));
    }
    if catalog.models.is_empty() {
        return Err(CatalogError::new(
            "models",
            "a catalog lists at least one model",
        ));
    }
    if catalog.models.len() > CATALOG_MODELS_MAX {
        return Err(CatalogError::new(
            "models",
            format!(
                "{} models, more than CATALOG_MODELS_MAX ({CATALOG_MODELS_MAX})",
                catalog.models.len()
            ),
        ));
    }
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, spec) in catalog.models.iter().enumerate() {
        let path = format!("models[{i}]");
        validate_model(spec, &path)?;
        if let Some(first) = seen.insert(spec.model.as_str(), i) {
            return Err(CatalogError::new(
                format!("{path}.model"),
                format!("duplicate model id `{}` (also models[{first}])", spec.model),
            ));
        }
    }
    Ok(())
}

/// Checks `text` against a length bound and a character rule, naming `what`.
fn check_chars(
    text: &str,
    what: &str,
    chars_max: usize,
    first_ok: impl Fn(char) -> bool,
    rest_ok: impl Fn(char) -> bool,
    rule: &str,
) -> Result<(), String> {
    let count = text.chars().count();
    if count == 0 {
        return Err(format!("{what} is empty"));
    }
    if count > chars_max {
        return Err(format!(
            "{what} has {count} characters, more than {chars_max}"
        ));
    }
    let mut chars = text.chars();
    let first_good = chars.next().is_some_and(&first_ok);
    if !first_good || !chars.all(rest_ok) {
        return Err(format!("{what} `{text}` must be {rule}"));
    }
    Ok(())
}

fn check_price_version(text: &str) -> Result<(), String> {
    check_chars(
        text,
        "the price version",
        PRICE_VERSION_CHARS_MAX,
        |c| c.is_ascii_alphanumeric(),
        |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'),
        "ASCII letters, digits, `.`, `_` and `-`, starting with a letter or digit",
    )
}

fn check_model_id(text: &str) -> Result<(), String> {
    check_chars(
        text,
        "the model id",
        MODEL_ID_CHARS_MAX,
        |c| c.is_ascii_alphanumeric(),
        |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'),
        "ASCII letters, digits, `.`, `_`, `-` and `/`, starting with a letter or digit",
    )
}

fn check_name(text: &str, what: &str) -> Result<(), String> {
    check_chars(
        text,
        what,
        NAME_CHARS_MAX,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit(),
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'),
        "lowercase ASCII letters, digits, `_` and `-`, starting with a letter or digit",
    )
}

fn check_upstream_model(text: &str) -> Result<(), String> {
    check_chars(
        text,
        "the upstream model",
        UPSTREAM_MODEL_CHARS_MAX,
        |c| c.is_ascii_graphic(),
        |c| c.is_ascii_graphic(),
        "printable ASCII without spaces",
    )
}

fn check_price(price: Decimal, path: &str) -> Result<(), CatalogError> {
    if price.is_sign_negative() {
        return Err(CatalogError::new(
            path,
            format!("the price {price} is negative"),
        ));
    }
    if price > Decimal::from(PRICE_CREDITS_MAX) {
        return Err(CatalogError::new(
            path,
            format!("the price {price} is more than PRICE_CREDITS_MAX ({PRICE_CREDITS_MAX})"),
        ));
    }
    if price.normalize().scale() > CREDIT_DECIMALS {
        return Err(CatalogError::new(
            path,
            format!(
                "the price {price} is finer than a micro-credit (more than {CREDIT_DECIMALS} decimal places)"
            ),
        ));
    }
    Ok(())
}

fn check_multiplier(multiplier: Decimal, path: &str) -> Result<(), CatalogError> {
    if multiplier <= Decimal::ZERO {
        return Err(CatalogError::new(
            path,
            format!("the multiplier {multiplier} is not positive (a free case is a `price` of 0)"),
        ));
    }
    if multiplier > Decimal::from(MULTIPLIER_MAX) {
        return Err(CatalogError::new(
            path,
            format!("the multiplier {multiplier} is more than MULTIPLIER_MAX ({MULTIPLIER_MAX})"),
        ));
    }
    if multiplier.normalize().scale() > MULTIPLIER_DECIMALS_MAX {
        return Err(CatalogError::new(
            path,
            format!(
                "the multiplier {multiplier} has more than {MULTIPLIER_DECIMALS_MAX} decimal places"
            ),
        ));
    }
    Ok(())
}

fn validate_model(spec: &ModelSpec, path: &str) -> Result<(), CatalogError> {
    let field = |name: &str| format!("{path}.{name}");
    check_model_id(&spec.model).map_err(|m| CatalogError::new(field("model"), m))?;
    check_name(&spec.product, "the product").map_err(|m| CatalogError::new(field("product"), m))?;
    check_name(&spec.category, "the category")
        .map_err(|m| CatalogError::new(field("category"), m))?;
    check_name(&spec.provider, "the provider")
        .map_err(|m| CatalogError::new(field("provider"), m))?;
    check_upstream_model(&spec.upstream_model)
        .map_err(|m| CatalogError::new(field("upstream_model"), m))?;
    check_price(spec.base_price, &field("base_price"))?;

    for (name, option) in &spec.options {
        validate_option(*name, option, &format!("{path}.options.{name}"))?;
    }
    if spec.options.contains_key(&OptionName::Count) && spec.unit != PriceUnit::Image {
        return Err(CatalogError::new(
            field("options.count"),
            format!(
                "`count` multiplies only unit `image`; a `{}` model cannot offer it",
                spec.unit
            ),
        ));
    }
    if spec.unit == PriceUnit::Second && !spec.options.contains_key(&OptionName::Duration) {
        return Err(CatalogError::new(
            field("options"),
            "a model priced per `second` needs a `duration` option",
        ));
    }

    let images = spec.input_images;
    if images.min > images.max || images.max > INPUT_IMAGES_MAX {
        return Err(CatalogError::new(
            field("input_images"),
            format!("needs min <= max <= INPUT_IMAGES_MAX ({INPUT_IMAGES_MAX})"),
        ));
    }

    validate_rules(spec, path)?;

    let note_chars = spec.note.chars().count();
    if note_chars > NOTE_CHARS_MAX {
        return Err(CatalogError::new(
            field("note"),
            format!(
                "the note has {note_chars} characters, more than NOTE_CHARS_MAX ({NOTE_CHARS_MAX})"
            ),
        ));
    }
    if spec.note.chars().any(char::is_control) {
        return Err(CatalogError::new(
            field("note"),
            "the note contains a control character",
        ));
    }

    validate_input_schema(spec, &field("input_schema"))
}

fn validate_option(name: OptionName, option: &OptionSpec, path: &str) -> Result<(), CatalogError> {
    if option.allowed.is_empty() {
        return Err(CatalogError::new(
            format!("{path}.allowed"),
            "an option allows at least one value",
        ));
    }
    if option.allowed.len() > OPTION_VALUES_MAX {
        return Err(CatalogError::new(
            format!("{path}.allowed"),
            format!("more than OPTION_VALUES_MAX ({OPTION_VALUES_MAX}) values"),
        ));
    }
    for (k, value) in option.allowed.iter().enumerate() {
        let value_path = format!("{path}.allowed[{k}]");
        check_option_value(name, value).map_err(|m| CatalogError::new(&value_path, m))?;
        if option
            .allowed
            .iter()
            .take(k)
            .any(|earlier| earlier == value)
        {
            return Err(CatalogError::new(
                value_path,
                format!("duplicate value `{value}`"),
            ));
        }
    }
    check_option_value(name, &option.default)
        .map_err(|m| CatalogError::new(format!("{path}.default"), m))?;
    if !option.allowed.contains(&option.default) {
        return Err(CatalogError::new(
            format!("{path}.default"),
            format!(
                "the default `{}` is not among the allowed values ({})",
                option.default,
                list(&option.allowed)
            ),
        ));
    }
    Ok(())
}

/// Joins values for a message: `1, 2, 4, 8`.
pub(crate) fn list(values: &[OptionValue]) -> String {
    values
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_option_value(name: OptionName, value: &OptionValue) -> Result<(), String> {
    match (name, value) {
        (OptionName::Count, OptionValue::Int(n)) if (1..=COUNT_MAX).contains(n) => Ok(()),
        (OptionName::Count, OptionValue::Int(n)) => {
            Err(format!("count {n} is outside 1..={COUNT_MAX}"))
        }
        (OptionName::Duration, OptionValue::Int(n)) if (1..=DURATION_SECONDS_MAX).contains(n) => {
            Ok(())
        }
        (OptionName::Duration, OptionValue::Int(n)) => Err(format!(
            "duration {n} s is outside 1..={DURATION_SECONDS_MAX} s"
        )),
        (OptionName::Resolution | OptionName::AspectRatio, OptionValue::Text(text)) => check_chars(
            text,
            "the value",
            OPTION_VALUE_CHARS_MAX,
            |c| c.is_ascii_alphanumeric(),
            |c| c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '_' | '-'),
            "ASCII letters, digits, `:`, `.`, `_` and `-`",
        ),
        (OptionName::Count | OptionName::Duration, OptionValue::Text(text)) => {
            Err(format!("`{name}` values are integers, not text (`{text}`)"))
        }
        (OptionName::Resolution | OptionName::AspectRatio, OptionValue::Int(n)) => {
            Err(format!("`{name}` values are text, not integers ({n})"))
        }
    }
}

fn validate_rules(spec: &ModelSpec, path: &str) -> Result<(), CatalogError> {
    if spec.price_rules.len() > PRICE_RULES_MAX {
        return Err(CatalogError::new(
            format!("{path}.price_rules"),
            format!("more than PRICE_RULES_MAX ({PRICE_RULES_MAX}) rules"),
        ));
    }
    // The option of the first fixed-price rule, and where it was.
    let mut fixed_option: Option<(OptionName, usize)> = None;
    for (j, rule) in spec.price_rules.iter().enumerate() {
        let rule_path = format!("{path}.price_rules[{j}]");
        match &rule.condition {
            RuleCondition::OptionEquals { option, value } => {
                let Some(declared) = spec.options.get(option) else {
                    return Err(CatalogError::new(
                        format!("{rule_path}.option"),
                        format!("the model offers no option `{option}`"),
                    ));
                };
                if !declared.allowed.contains(value) {
                    return Err(CatalogError::new(
                        format!("{rule_path}.equals"),
                        format!(
                            "`{value}` is not an allowed value of `{option}` ({})",
                            list(&declared.allowed)
                        ),
                    ));
                }
                if *value == declared.default {
                    return Err(CatalogError::new(
                        format!("{rule_path}.equals"),
                        format!(
                            "`{value}` is the default of `{option}`: the default request is priced by base_price, so fold this rule into it"
                        ),
                    ));
                }
            }
            RuleCondition::InputImages => {
                if spec.input_images.max == 0 {
                    return Err(CatalogError::new(
                        format!("{rule_path}.when"),
                        "the model takes no input images (input_images.max is 0)",
                    ));
                }
                if spec.input_images.min > 0 {
                    return Err(CatalogError::new(
                        format!("{rule_path}.when"),
                        "the model always takes input images (input_images.min > 0), so this rule always applies: fold it into base_price",
                    ));
                }
            }
        }
        match (rule.effect, &rule.condition) {
            (RuleEffect::Price(price), RuleCondition::OptionEquals { option, .. }) => {
                check_price(price, &format!("{rule_path}.price"))?;
                match fixed_option {
                    None => fixed_option = Some((*option, j)),
                    Some((first, k)) if first != *option => {
                        return Err(CatalogError::new(
                            format!("{rule_path}.option"),
                            format!(
                                "fixed-price rules of one model all name one option, so at most one matches (price_rules[{k}] names `{first}`)"
                            ),
                        ))
                    }
                    Some(_) => {}
                }
            }
            (RuleEffect::Price(_), RuleCondition::InputImages) => {
                return Err(CatalogError::new(
                    format!("{rule_path}.price"),
                    "an input-images rule is a multiplier; fixed prices key on one option",
                ))
            }
            (RuleEffect::Multiplier(multiplier), _) => {
                check_multiplier(multiplier, &format!("{rule_path}.multiplier"))?;
            }
        }
        if let Some(k) = spec
            .price_rules
            .iter()
            .take(j)
            .position(|earlier| earlier.condition == rule.condition)
        {
            return Err(CatalogError::new(
                rule_path,
                format!("same condition as price_rules[{k}]: one rule per condition"),
            ));
        }
    }
    Ok(())
}

/// Checks that the input schema is an object schema that describes exactly
/// the model's options (`properties.units.properties`, with `enum` and
/// `default`) and input images (`properties.input_image_urls`).
fn validate_input_schema(spec: &ModelSpec, path: &str) -> Result<(), CatalogError> {
    let schema = &spec.input_schema;
    if schema.get("type") != Some(&Value::String("object".into())) {
        return Err(CatalogError::new(
            format!("{path}.type"),
            "the input schema is `\"type\": \"object\"`",
        ));
    }
    let empty = Map::new();
    let props_path = format!("{path}.properties");
    let props = object_at(schema.get("properties"), &props_path)?.unwrap_or(&empty);

    let units_path = format!("{props_path}.units.properties");
    let units = match props.get("units") {
        None => None,
        Some(units) => object_at(units.get("properties"), &units_path)?,
    }
    .unwrap_or(&empty);
    for (name, option) in &spec.options {
        let option_path = format!("{units_path}.{name}");
        let Some(described) = units.get(name.as_str()) else {
            return Err(CatalogError::new(
                option_path,
                "missing: the schema describes every option",
            ));
        };
        let listed: Option<Vec<OptionValue>> = described
            .get("enum")
            .and_then(|values| Vec::<OptionValue>::deserialize(values).ok());
        if listed.as_ref() != Some(&option.allowed) {
            return Err(CatalogError::new(
                format!("{option_path}.enum"),
                format!(
                    "must list the allowed values, in order: [{}]",
                    list(&option.allowed)
                ),
            ));
        }
        let default = described
            .get("default")
            .and_then(|value| OptionValue::deserialize(value).ok());
        if default.as_ref() != Some(&option.default) {
            return Err(CatalogError::new(
                format!("{option_path}.default"),
                format!("must be the option's default, {}", option.default),
            ));
        }
    }
    if let Some(extra) = units.keys().find(|key| match OptionName::from_name(key) {
        Some(name) => !spec.options.contains_key(&name),
        None => true,
    }) {
        return Err(CatalogError::new(
            format!("{units_path}.{extra}"),
            "describes a unit option the model does not offer",
        ));
    }

    let urls_path = format!("{props_path}.input_image_urls");
    let images = spec.input_images;
    match props.get("input_image_urls") {
        None if images.max == 0 => {}
        None => {
            return Err(CatalogError::new(
                urls_path,
                "missing: the model takes input images",
            ))
        }
        Some(_) if images.max == 0 => {
            return Err(CatalogError::new(
                urls_path,
                "the model takes no input images (input_images.max is 0)",
            ))
        }
        Some(urls) => {
            let min_items = urls.get("minItems").map_or(Some(0), Value::as_u64);
            if min_items != Some(u64::from(images.min)) {
                return Err(CatalogError::new(
                    format!("{urls_path}.minItems"),
                    format!("must be input_images.min ({})", images.min),
                ));
            }
            if urls.get("maxItems").and_then(Value::as_u64) != Some(u64::from(images.max)) {
                return Err(CatalogError::new(
                    format!("{urls_path}.maxItems"),
                    format!("must be input_images.max ({})", images.max),
                ));
            }
        }
    }
    let required = schema
        .get("required")
        .and_then(Value::as_array)
        .is_some_and(|names| names.iter().any(|name| name == "input_image_urls"));
    if required != (images.min > 0) {
        return Err(CatalogError::new(
            format!("{path}.required"),
            format!(
                "`input_image_urls` is required exactly when input_images.min > 0 (it is {})",
                images.min
            ),
        ));
    }
    Ok(())
}

/// The object at an optional schema member, or an error if it is not one.
fn object_at<'a>(
    value: Option<&'a Value>,
    path: &str,
) -> Result<Option<&'a Map<String, Value>>, CatalogError> {
    match value {
        None => Ok(None),
        Some(Value::Object(object)) => Ok(Some(object)),
        Some(other) => Err(CatalogError::new(
            path,
            format!("expected an object, not {}", json_kind(other)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    const RYNJER: &str = include_str!("../../../fixtures/catalogs/rynjer.json");
    const KIWIWHALE: &str = include_str!("../../../fixtures/catalogs/kiwiwhale.json");

    /// A small valid catalog that every error case below mutates.
    const BASE: &str = r#"{
      "price_version": "test-1",
      "currency": "credits",
      "models": [{
        "model": "img",
        "product": "image",
        "category": "text-to-image",
        "provider": "fixture",
        "upstream_model": "img",
        "unit": "image",
        "base_price": 20,
        "options": {
          "count": {"allowed": [1, 2, 4, 8], "default": 1},
          "resolution": {"allowed": ["1K", "2K", "4K"], "default": "1K"}
        },
        "price_rules": [
          {"option": "resolution", "equals": "4K", "price": 40},
          {"when": "input_images", "multiplier": 1.5}
        ],
        "input_images": {"min": 0, "max": 2},
        "note": "4K = 40",
        "input_schema": {
          "type": "object",
          "required": ["prompt"],
          "properties": {
            "prompt": {"type": "string"},
            "units": {"type": "object", "properties": {
              "count": {"type": "integer", "enum": [1, 2, 4, 8], "default": 1},
              "resolution": {"type": "string", "enum": ["1K", "2K", "4K"], "default": "1K"}
            }},
            "input_image_urls": {"type": "array", "minItems": 0, "maxItems": 2}
          }
        }
      }]
    }"#;

    fn json(text: &str) -> Value {
        serde_json::from_str(text).expect("test JSON")
    }

    fn dec(text: &str) -> Decimal {
        Decimal::from_str(text).expect("test decimal")
    }

    /// Sets (or, with `None`, removes) the member at a JSON pointer.
    fn edit(doc: &mut Value, pointer: &str, new: Option<&str>) {
        let (parent, key) = pointer.rsplit_once('/').expect("pointer has a parent");
        let parent = doc.pointer_mut(parent).expect("parent exists");
        match (parent, new) {
            (Value::Object(object), Some(text)) => {
                object.insert(key.to_string(), json(text));
            }
            (Value::Object(object), None) => {
                object.remove(key);
            }
            (Value::Array(items), Some(text)) => {
                let index: usize = key.parse().expect("array index");
                if index == items.len() {
                    items.push(json(text));
                } else {
                    items[index] = json(text);
                }
            }
            (Value::Array(items), None) => {
                items.remove(key.parse().expect("array index"));
            }
            _ => panic!("cannot edit {pointer}"),
        }
    }

    /// Applies edits to BASE and expects a refusal at `path` whose message
    /// contains `fragment`.
    fn check_error(edits: &[(&str, Option<&str>)], path: &str, fragment: &str) {
        let mut doc = json(BASE);
        for (pointer, new) in edits {
            edit(&mut doc, pointer, *new);
        }
        let text = serde_json::to_string(&doc).expect("serialize");
        match parse_catalog(&text) {
            Ok(_) => panic!("accepted; expected an error at {path}: {fragment}"),
            Err(error) => {
                assert_eq!(error.path, path, "{error}");
                assert!(
                    error.message.contains(fragment),
                    "message `{}` lacks `{fragment}`",
                    error.message
                );
            }
        }
    }

    fn check_ok(edits: &[(&str, Option<&str>)]) -> Catalog {
        let mut doc = json(BASE);
        for (pointer, new) in edits {
            edit(&mut doc, pointer, *new);
        }
        let text = serde_json::to_string(&doc).expect("serialize");
        parse_catalog(&text).unwrap_or_else(|e| panic!("refused: {e}"))
    }

    #[test]
    fn base_catalog_parses_into_typed_rules() {
        let catalog = check_ok(&[]);
        let spec = catalog.model("img").expect("listed");
        assert_eq!(spec.unit, PriceUnit::Image);
        assert_eq!(
            spec.price_rules,
            vec![
                PriceRule {
                    condition: RuleCondition::OptionEquals {
                        option: OptionName::Resolution,
                        value: OptionValue::Text("4K".into()),
                    },
                    effect: RuleEffect::Price(dec("40")),
                },
                PriceRule {
                    condition: RuleCondition::InputImages,
                    effect: RuleEffect::Multiplier(dec("1.5")),
                },
            ]
        );
        assert_eq!(catalog.model("IMG"), None);
    }

    #[test]
    fn prices_stay_exact_through_a_round_trip() {
        let catalog = check_ok(&[("/models/0/base_price", Some("0.0165"))]);
        let spec = &catalog.models[0];
        assert_eq!(spec.base_price.to_string(), "0.0165");
        let text = serde_json::to_string(&catalog).expect("serialize");
        assert!(text.contains(r#""base_price":0.0165"#), "{text}");
        assert!(
            text.contains(r#"{"option":"resolution","equals":"4K","price":40}"#),
            "{text}"
        );
        assert!(
            text.contains(r#"{"when":"input_images","multiplier":1.5}"#),
            "{text}"
        );
        assert_eq!(parse_catalog(&text), Ok(catalog));
    }

    #[test]
    fn shipped_catalogs_parse_and_round_trip() {
        for text in [RYNJER, KIWIWHALE] {
            let catalog = parse_catalog(text).unwrap_or_else(|e| panic!("{e}"));
            let again = serde_json::to_string_pretty(&catalog).expect("serialize");
            assert_eq!(parse_catalog(&again), Ok(catalog));
        }
    }

    /// The Rynjer tables of references 000/001: id, credits, note.
    const RYNJER_TABLE: [(&str, &str, &str, &str); 20] = [
        ("google/nano-banana", "image", "8", "fast draft"),
        ("nano-banana-pro", "image", "20", "4K = 40"),
        ("gpt4o_image", "image", "10", ""),
        ("qwen/text-to-image", "image", "15", ""),
        ("qwen/image-to-image", "image", "15", ""),
        ("xai/grok-imagine-image", "image", "20", ""),
        ("xai/grok-imagine-image/edit", "image", "20", ""),
        ("z-image", "image", "20", ""),
        ("sora-2", "video", "10", "720p baseline"),
        ("sora-2-pro", "video", "330", ""),
        ("veo3_fast", "video", "50", ""),
        ("veo3", "video", "280", "1080p = 350"),
        ("doubao-seedance-1.0-pro-fast", "video", "40", ""),
        ("wan-2.6", "video", "20", "1080p = 300"),
        ("fal-ai/ltx-2/image-to-video", "video", "50", ""),
        ("xai/grok-imagine-video/text-to-video", "video", "10", ""),
        ("V5", "music", "35", ""),
        ("V4_5PLUS", "music", "30", ""),
        ("V4_5", "music", "25", ""),
        ("V4", "music", "20", ""),
    ];

    #[test]
    fn rynjer_catalog_lists_every_reference_model_exactly() {
        let catalog = parse_catalog(RYNJER).expect("valid");
        assert_eq!(catalog.price_version, "2026-02-02-v1");
        for (id, product, credits, note) in RYNJER_TABLE {
            let spec = catalog.model(id).unwrap_or_else(|| panic!("{id} missing"));
            assert_eq!(spec.product, product, "{id}");
            assert_eq!(spec.base_price, dec(credits), "{id}");
            assert!(spec.note.starts_with(note), "{id}: note `{}`", spec.note);
            assert_eq!(spec.provider, "fixture", "{id}");
            assert_eq!(spec.upstream_model, id, "{id}");
            if product == "image" {
                let count = &spec.options[&OptionName::Count];
                let counts = [1, 2, 4, 8].map(OptionValue::Int).to_vec();
                assert_eq!(count.allowed, counts, "{id}");
            }
        }
        let chat: Vec<&str> = catalog
            .models
            .iter()
            .filter(|spec| spec.product == "chat")
            .map(|spec| spec.model.as_str())
            .collect();
        assert_eq!(chat, ["gpt-4o-mini", "gpt-4o"]);
        assert_eq!(catalog.models.len(), RYNJER_TABLE.len() + chat.len());
    }

    /// The price table of reference 004: public model, category, cost.
    const KIWIWHALE_TABLE: [(&str, &str, &str); 19] = [
        ("ffmpeg-api/merge-audio-video", "tools", "0.2000"),
        ("ffmpeg/extract-frame", "tools", "0.4000"),
        ("ffmpeg/merge-videos", "tools", "0.8000"),
        ("ffmpeg/normalize-compose", "tools", "0.8000"),
        ("gpt-5-mini/chat", "chat", "0.0100"),
        ("gpt-5.5/chat", "chat", "0.0500"),
        ("gpt-image-2/image-edit", "image-to-image", "0.4000"),
        ("gpt-image-2/image-transform", "image-to-image", "0.3165"),
        ("gpt-image-2/text-to-image", "text-to-image", "0.2000"),
        ("kiwiwhale/audio-analysis", "tools", "0.0500"),
        ("kiwiwhale/s2-pro/tts", "text-to-audio", "0.0500"),
        ("kiwiwhale/seedance-2.0-fast", "image-to-video", "1.1250"),
        ("kiwiwhale/upload", "tools", "0.0000"),
        ("kling-v1/ai-multi-shot", "image-to-image", "0.8000"),
        (
            "seedance-2.0/reference-to-video",
            "image-to-video",
            "1.4900",
        ),
        ("seedvr/upscale/image", "tools", "0.0500"),
        ("tools/web-search", "tools", "0.0500"),
        ("wan-2.1/text-to-image", "text-to-image", "0.0600"),
        ("z-image/turbo", "text-to-image", "0.0200"),
    ];

    #[test]
    fn kiwiwhale_catalog_keeps_every_fractional_price_as_written() {
        let catalog = parse_catalog(KIWIWHALE).expect("valid");
        for (id, category, cost) in KIWIWHALE_TABLE {
            let spec = catalog.model(id).unwrap_or_else(|| panic!("{id} missing"));
            assert_eq!(spec.category, category, "{id}");
            assert_eq!(spec.base_price.to_string(), cost, "{id}");
            assert_eq!(spec.provider, "fixture", "{id}");
        }
        // The models.php example response prices `z-image` at 0.05.
        let z_image = catalog.model("z-image").expect("z-image");
        assert_eq!(z_image.base_price.to_string(), "0.05");
        assert_eq!(catalog.models.len(), KIWIWHALE_TABLE.len() + 1);
    }

    #[test]
    fn document_level_errors() {
        let not_json = parse_catalog("{\"price_version\": ").expect_err("refused");
        assert_eq!(not_json.path, "");
        assert!(not_json.message.contains("not valid JSON"), "{not_json}");

        let huge = " ".repeat(CATALOG_BYTES_MAX + 1);
        let too_big = parse_catalog(&huge).expect_err("refused");
        assert_eq!(too_big.path, "");
        assert!(too_big.message.contains("CATALOG_BYTES_MAX"), "{too_big}");

        let array = parse_catalog("[]").expect_err("refused");
        assert_eq!(
            (array.path.as_str(), array.to_string().as_str()),
            (
                "",
                "invalid catalog: a catalog is a JSON object, not an array"
            )
        );
    }

    #[test]
    fn catalog_level_errors() {
        check_error(&[("/extra", Some("1"))], "extra", "unknown field");
        check_error(&[("/models", None)], "models", "missing");
        check_error(&[("/models", Some("[]"))], "models", "at least one model");
        check_error(&[("/models", Some("{}"))], "models", "expected an array");
        check_error(
            &[("/price_version", Some("\"2026 02\""))],
            "price_version",
            "must be",
        );
        check_error(
            &[("/price_version", Some("\"\""))],
            "price_version",
            "empty",
        );
        check_error(
            &[("/price_version", Some("\"-v1\""))],
            "price_version",
            "must be",
        );
        check_error(
            &[("/price_version", Some("7"))],
            "price_version",
            "invalid type",
        );
        check_error(&[("/currency", Some("\"usd\""))], "currency", "credits");
        let mut doc = json(BASE);
        let model = doc.pointer("/models/0").expect("model").clone();
        let models: Vec<Value> = (0..=CATALOG_MODELS_MAX)
            .map(|i| {
                let mut m = model.clone();
                m["model"] = Value::String(format!("m{i}"));
                m
            })
            .collect();
        doc["models"] = Value::Array(models);
        let error = parse_catalog(&doc.to_string()).expect_err("refused");
        assert_eq!(error.path, "models");
        assert!(error.message.contains("CATALOG_MODELS_MAX"), "{error}");
    }

    #[test]
    fn model_field_errors() {
        check_error(
            &[("/models/0/colour", Some("1"))],
            "models[0].colour",
            "unknown field",
        );
        check_error(
            &[("/models/0/base_price", None)],
            "models[0].base_price",
            "missing",
        );
        check_error(
            &[("/models/0/input_schema", None)],
            "models[0].input_schema",
            "missing",
        );
        check_error(
            &[("/models/0/base_price", Some("\"20\""))],
            "models[0].base_price",
            "invalid type",
        );
        check_error(
            &[("/models/0/base_price", Some("-1"))],
            "models[0].base_price",
            "negative",
        );
        check_error(
            &[("/models/0/base_price", Some("0.0000001"))],
            "models[0].base_price",
            "finer than a micro-credit",
        );
        check_error(
            &[("/models/0/base_price", Some("1000000.5"))],
            "models[0].base_price",
            "PRICE_CREDITS_MAX",
        );
        check_error(
            &[("/models/0/base_price", Some("1e400"))],
            "models[0].base_price",
            "out of range",
        );
        check_error(
            &[("/models/0/unit", Some("\"minute\""))],
            "models[0].unit",
            "unknown variant",
        );
        check_error(
            &[("/models/0/model", Some("\"nano banana\""))],
            "models[0].model",
            "must be",
        );
        check_error(
            &[("/models/0/model", Some("\"\""))],
            "models[0].model",
            "empty",
        );
        let long_id = format!("\"{}\"", "a".repeat(MODEL_ID_CHARS_MAX + 1));
        check_error(
            &[("/models/0/model", Some(&long_id))],
            "models[0].model",
            "more than 128",
        );
        check_error(
            &[("/models/0/product", Some("\"Image\""))],
            "models[0].product",
            "lowercase",
        );
        check_error(
            &[("/models/0/category", Some("\"text to image\""))],
            "models[0].category",
            "lowercase",
        );
        check_error(
            &[("/models/0/provider", Some("\"\""))],
            "models[0].provider",
            "empty",
        );
        check_error(
            &[("/models/0/upstream_model", Some("\"a b\""))],
            "models[0].upstream_model",
            "printable",
        );
        let long_note = format!("\"{}\"", "n".repeat(NOTE_CHARS_MAX + 1));
        check_error(
            &[("/models/0/note", Some(&long_note))],
            "models[0].note",
            "NOTE_CHARS_MAX",
        );
        check_error(
            &[("/models/0/note", Some("\"a\\u0007b\""))],
            "models[0].note",
            "control",
        );
        check_error(
            &[("/models/0/input_images", Some(r#"{"min": 3, "max": 2}"#))],
            "models[0].input_images",
            "min <= max",
        );
        check_error(
            &[("/models/0/input_images", Some(r#"{"min": 0, "max": 17}"#))],
            "models[0].input_images",
            "INPUT_IMAGES_MAX",
        );
        check_error(
            &[("/models/0/input_images", Some(r#"{"least": 0}"#))],
            "models[0].input_images",
            "unknown field",
        );
        check_error(
            &[("/models/1", Some("3"))],
            "models[1]",
            "a model is a JSON object",
        );
    }

    #[test]
    fn duplicate_model_ids_are_refused() {
        let mut doc = json(BASE);
        let model = doc.pointer("/models/0").expect("model").clone();
        edit(&mut doc, "/models/1", Some(&model.to_string()));
        let error = parse_catalog(&doc.to_string()).expect_err("refused");
        assert_eq!(error.path, "models[1].model");
        assert!(
            error
                .message
                .contains("duplicate model id `img` (also models[0])"),
            "{error}"
        );
    }

    #[test]
    fn option_errors() {
        check_error(
            &[(
                "/models/0/options/quality",
                Some(r#"{"allowed": ["hd"], "default": "hd"}"#),
            )],
            "models[0].options.quality",
            "unknown field in options; expected one of: count, resolution, duration, aspect_ratio",
        );
        check_error(
            &[("/models/0/options/count/default", Some("3"))],
            "models[0].options.count.default",
            "not among the allowed values (1, 2, 4, 8)",
        );
        check_error(
            &[("/models/0/options/count/allowed/0", Some("\"1\""))],
            "models[0].options.count.allowed[0]",
            "integers, not text",
        );
        check_error(
            &[("/models/0/options/count/allowed/0", Some("1.5"))],
            "models[0].options.count.allowed[0]",
            "not an integer",
        );
        check_error(
            &[("/models/0/options/count/allowed/0", Some("0"))],
            "models[0].options.count.allowed[0]",
            "outside 1..=64",
        );
        check_error(
            &[("/models/0/options/count/allowed/1", Some("1"))],
            "models[0].options.count.allowed[1]",
            "duplicate value `1`",
        );
        check_error(
            &[("/models/0/options/count/allowed", Some("[]"))],
            "models[0].options.count.allowed",
            "at least one value",
        );
        check_error(
            &[("/models/0/options/count/allowed/0", Some("true"))],
            "models[0].options.count.allowed[0]",
            "not a boolean",
        );
        check_error(
            &[("/models/0/options/resolution/allowed/0", Some("4"))],
            "models[0].options.resolution.allowed[0]",
            "text, not integers",
        );
        check_error(
            &[("/models/0/options/resolution/allowed/0", Some("\"1 K\""))],
            "models[0].options.resolution.allowed[0]",
            "must be",
        );
        check_error(
            &[("/models/0/options/count/default", None)],
            "models[0].options.count.default",
            "missing",
        );
        check_error(
            &[("/models/0/options/count/extra", Some("1"))],
            "models[0].options.count.extra",
            "unknown field",
        );
        check_error(
            &[(
                "/models/0/options/duration",
                Some(r#"{"allowed": [0], "default": 0}"#),
            )],
            "models[0].options.duration.allowed[0]",
            "outside 1..=3600",
        );
        check_error(
            &[("/models/0/unit", Some("\"video\""))],
            "models[0].options.count",
            "only unit `image`",
        );
        check_error(
            &[
                ("/models/0/unit", Some("\"second\"")),
                ("/models/0/options/count", None),
                (
                    "/models/0/input_schema/properties/units/properties/count",
                    None,
                ),
            ],
            "models[0].options",
            "needs a `duration` option",
        );
    }

    #[test]
    fn price_rule_errors() {
        // (rule 0 replaced by, error path, message fragment)
        let cases: [(&str, &str, &str); 16] = [
            (
                r#"{"option": "duration", "equals": 5, "price": 1}"#,
                "models[0].price_rules[0].option",
                "offers no option `duration`",
            ),
            (
                r#"{"option": "resolution", "equals": "8K", "price": 1}"#,
                "models[0].price_rules[0].equals",
                "not an allowed value of `resolution` (1K, 2K, 4K)",
            ),
            (
                r#"{"option": "resolution", "equals": "1K", "price": 1}"#,
                "models[0].price_rules[0].equals",
                "the default of `resolution`",
            ),
            (
                r#"{"option": "resolution", "equals": "2K", "multiplier": 0}"#,
                "models[0].price_rules[0].multiplier",
                "not positive",
            ),
            (
                r#"{"option": "resolution", "equals": "2K", "multiplier": -1.5}"#,
                "models[0].price_rules[0].multiplier",
                "not positive",
            ),
            (
                r#"{"option": "resolution", "equals": "2K", "multiplier": 1.0000001}"#,
                "models[0].price_rules[0].multiplier",
                "more than 6 decimal places",
            ),
            (
                r#"{"option": "resolution", "equals": "2K", "multiplier": 101}"#,
                "models[0].price_rules[0].multiplier",
                "MULTIPLIER_MAX",
            ),
            (
                r#"{"option": "resolution", "equals": "2K", "multiplier": "1.5"}"#,
                "models[0].price_rules[0].multiplier",
                "invalid type",
            ),
            (
                r#"{"option": "resolution", "equals": "2K", "price": 0.00000001}"#,
                "models[0].price_rules[0].price",
                "finer than a micro-credit",
            ),
            (
                r#"{"option": "resolution", "equals": "2K", "price": 1, "multiplier": 2}"#,
                "models[0].price_rules[0]",
                "not both",
            ),
            (
                r#"{"option": "resolution", "equals": "2K"}"#,
                "models[0].price_rules[0]",
                "needs an effect",
            ),
            (
                r#"{"option": "resolution", "price": 1}"#,
                "models[0].price_rules[0]",
                "needs `equals`",
            ),
            (
                r#"{"price": 1}"#,
                "models[0].price_rules[0]",
                "needs a condition",
            ),
            (
                r#"{"when": "input_images", "option": "resolution", "equals": "2K", "price": 1}"#,
                "models[0].price_rules[0]",
                "not both",
            ),
            (
                r#"{"option": "resolution", "equals": "2K", "factor": 2}"#,
                "models[0].price_rules[0].factor",
                "unknown field",
            ),
            (
                r#"{"when": "night", "multiplier": 2}"#,
                "models[0].price_rules[0].when",
                "unknown variant",
            ),
        ];
        for (rule, path, fragment) in cases {
            check_error(&[("/models/0/price_rules/0", Some(rule))], path, fragment);
        }
        check_error(
            &[(
                "/models/0/price_rules/1",
                Some(r#"{"when": "input_images", "price": 5}"#),
            )],
            "models[0].price_rules[1].price",
            "a multiplier",
        );
        check_error(
            &[
                ("/models/0/input_images", None),
                ("/models/0/input_schema/properties/input_image_urls", None),
            ],
            "models[0].price_rules[1].when",
            "takes no input images",
        );
        check_error(
            &[
                ("/models/0/input_images", Some(r#"{"min": 1, "max": 2}"#)),
                (
                    "/models/0/input_schema/properties/input_image_urls/minItems",
                    Some("1"),
                ),
                (
                    "/models/0/input_schema/required",
                    Some(r#"["prompt", "input_image_urls"]"#),
                ),
            ],
            "models[0].price_rules[1].when",
            "always takes input images",
        );
        check_error(
            &[(
                "/models/0/price_rules/2",
                Some(r#"{"option": "count", "equals": 2, "price": 30}"#),
            )],
            "models[0].price_rules[2].option",
            "all name one option",
        );
        check_error(
            &[(
                "/models/0/price_rules/2",
                Some(r#"{"option": "resolution", "equals": "4K", "multiplier": 2}"#),
            )],
            "models[0].price_rules[2]",
            "same condition as price_rules[0]",
        );
        check_error(
            &[(
                "/models/0/price_rules/2",
                Some(r#"{"when": "input_images", "multiplier": 2}"#),
            )],
            "models[0].price_rules[2]",
            "same condition as price_rules[1]",
        );
        check_error(
            &[("/models/0/price_rules", Some("{}"))],
            "models[0].price_rules",
            "expected an array",
        );
        // Several fixed prices on one option, and multipliers on others, are fine.
        check_ok(&[
            (
                "/models/0/price_rules/2",
                Some(r#"{"option": "resolution", "equals": "2K", "price": 30}"#),
            ),
            (
                "/models/0/price_rules/3",
                Some(r#"{"option": "count", "equals": 8, "multiplier": 0.9}"#),
            ),
        ]);
    }

    #[test]
    fn input_schema_errors() {
        let units = "/models/0/input_schema/properties/units/properties";
        check_error(
            &[("/models/0/input_schema/type", Some("\"array\""))],
            "models[0].input_schema.type",
            "\"object\"",
        );
        check_error(
            &[("/models/0/input_schema", Some("[]"))],
            "models[0].input_schema",
            "invalid type",
        );
        check_error(
            &[("/models/0/input_schema/properties", Some("[]"))],
            "models[0].input_schema.properties",
            "expected an object",
        );
        check_error(
            &[(&format!("{units}/count"), None)],
            "models[0].input_schema.properties.units.properties.count",
            "describes every option",
        );
        check_error(
            &[(&format!("{units}/count/enum"), Some("[1, 2, 4]"))],
            "models[0].input_schema.properties.units.properties.count.enum",
            "[1, 2, 4, 8]",
        );
        check_error(
            &[(&format!("{units}/count/enum"), Some("[\"1\", 2, 4, 8]"))],
            "models[0].input_schema.properties.units.properties.count.enum",
            "allowed values",
        );
        check_error(
            &[(&format!("{units}/count/default"), Some("2"))],
            "models[0].input_schema.properties.units.properties.count.default",
            "default, 1",
        );
        check_error(
            &[(&format!("{units}/duration"), Some("{}"))],
            "models[0].input_schema.properties.units.properties.duration",
            "does not offer",
        );
        check_error(
            &[(&format!("{units}/seed"), Some("{}"))],
            "models[0].input_schema.properties.units.properties.seed",
            "does not offer",
        );
        check_error(
            &[("/models/0/input_schema/properties/input_image_urls", None)],
            "models[0].input_schema.properties.input_image_urls",
            "missing",
        );
        check_error(
            &[(
                "/models/0/input_schema/properties/input_image_urls/maxItems",
                Some("3"),
            )],
            "models[0].input_schema.properties.input_image_urls.maxItems",
            "input_images.max (2)",
        );
        check_error(
            &[(
                "/models/0/input_schema/properties/input_image_urls/minItems",
                Some("1"),
            )],
            "models[0].input_schema.properties.input_image_urls.minItems",
            "input_images.min (0)",
        );
        check_error(
            &[(
                "/models/0/input_schema/required",
                Some(r#"["input_image_urls"]"#),
            )],
            "models[0].input_schema.required",
            "exactly when",
        );
        check_error(
            &[
                ("/models/0/price_rules/1", None),
                ("/models/0/input_images", None),
            ],
            "models[0].input_schema.properties.input_image_urls",
            "takes no input images",
        );
        // minItems may be left out when it is 0.
        check_ok(&[(
            "/models/0/input_schema/properties/input_image_urls/minItems",
            None,
        )]);
    }

    #[test]
    fn truncated_or_corrupted_documents_never_panic() {
        let document = RYNJER.trim_end();
        let mut positions: Vec<usize> = (0..document.len()).step_by(61).collect();
        positions.push(document.len() - 1);
        for cut in positions
            .into_iter()
            .filter(|&i| document.is_char_boundary(i))
        {
            assert!(
                parse_catalog(&document[..cut]).is_err(),
                "prefix of {cut} bytes"
            );
            let mut flipped = document.to_string();
            let end = cut + document[cut..].chars().next().map_or(0, char::len_utf8);
            flipped.replace_range(cut..end, "7");
            let _ = parse_catalog(&flipped);
        }
    }
}
