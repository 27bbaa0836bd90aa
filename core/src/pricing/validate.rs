//! Semantic validation of a well-shaped catalog: every rule of
//! `fixtures/catalogs/README.md` that the types alone do not enforce (names
//! and their characters, price ranges and precision, option defaults among
//! the allowed values, price rules that name declared options and never a
//! default, at most one fixed price per request, an `input_schema` that
//! agrees with the options and input images).
//!
//! Invariant: [`validate_catalog`] refuses with the path of the first
//! offending field; it never changes the catalog.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::catalog::{
    Catalog, CatalogError, ModelSpec, OptionName, OptionSpec, OptionValue, PriceUnit,
    RuleCondition, RuleEffect, CATALOG_MODELS_MAX, COUNT_MAX, CURRENCY, DURATION_SECONDS_MAX,
    INPUT_IMAGES_MAX, MODEL_ID_CHARS_MAX, MULTIPLIER_DECIMALS_MAX, MULTIPLIER_MAX, NAME_CHARS_MAX,
    NOTE_CHARS_MAX, OPTION_VALUES_MAX, OPTION_VALUE_CHARS_MAX, PRICE_CREDITS_MAX, PRICE_RULES_MAX,
    PRICE_VERSION_CHARS_MAX, UPSTREAM_MODEL_CHARS_MAX,
};
use super::shape::json_kind;
use super::CREDIT_DECIMALS;

/// Checks every semantic rule of the format on a catalog serde has read.
pub(super) fn validate_catalog(catalog: &Catalog) -> Result<(), CatalogError> {
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
    if let Some(usage) = &spec.usage_price {
        check_price(
            usage.input_per_1k_tokens,
            &field("usage_price.input_per_1k_tokens"),
        )?;
        check_price(
            usage.output_per_1k_tokens,
            &field("usage_price.output_per_1k_tokens"),
        )?;
        check_price(usage.per_second, &field("usage_price.per_second"))?;
        if usage.input_per_1k_tokens.is_zero()
            && usage.output_per_1k_tokens.is_zero()
            && usage.per_second.is_zero()
        {
            return Err(CatalogError::new(
                field("usage_price"),
                "a usage price needs at least one non-zero price",
            ));
        }
    }

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
fn list(values: &[OptionValue]) -> String {
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
