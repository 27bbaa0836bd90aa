//! Generate and estimate requests: normalisation of the JSON body agents
//! send (reference 001) into one canonical [`GenerateRequest`], and its
//! fingerprint for idempotency. Pure: no SQL, no clock.
//!
//! Normalisation: top-level `count`, `resolution`, `duration` and
//! `aspect_ratio` move into `units`; `image_urls` becomes
//! `input_image_urls`; `product` may be omitted (the estimate infers it).
//! A shortcut and its long form are one field spelled two ways: giving both
//! (even equal) is refused, so the OpenAPI document can say exactly what is
//! accepted (a JSON Schema cannot compare two members).
//! Unknown members are refused naming the member, so a typo never silently
//! changes what is generated or charged.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::ids::validate_caller_id;
use crate::pricing::{EstimateRequest, RequestedUnits};

/// The longest prompt accepted, in characters.
pub const PROMPT_CHARS_MAX: usize = 10_000;
/// Input image URLs per request, at most.
pub const INPUT_URLS_MAX: usize = 16;
/// The longest input URL accepted, in bytes.
pub const URL_CHARS_MAX: usize = 2_048;
/// The longest model, product or option value accepted, in bytes.
pub const NAME_CHARS_MAX: usize = 128;

/// A normalised generate (or estimate) request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GenerateRequest {
    /// The caller's idempotency key (required to generate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The model id.
    pub model: String,
    /// The product, if the caller named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// The prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The options.
    #[serde(default)]
    pub units: RequestedUnits,
    /// Input images.
    #[serde(default)]
    pub input_image_urls: Vec<String>,
    /// A pinned price version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_version: Option<String>,
}

const KNOWN_MEMBERS: &[&str] = &[
    "request_id",
    "model",
    "product",
    "prompt",
    "units",
    "count",
    "resolution",
    "duration",
    "aspect_ratio",
    "image_urls",
    "input_image_urls",
    "price_version",
];

const UNIT_MEMBERS: &[&str] = &["count", "resolution", "duration", "aspect_ratio"];

/// Normalises a request body. Every refusal is `invalid_request` naming
/// the offending field.
pub fn normalize(body: &Value) -> Result<GenerateRequest> {
    let object = body
        .as_object()
        .ok_or_else(|| Error::invalid("body", "must be a JSON object"))?;
    if let Some(unknown) = object
        .keys()
        .find(|key| !KNOWN_MEMBERS.contains(&key.as_str()))
    {
        return Err(Error::invalid(unknown, "is not a known field"));
    }
    let request_id = optional_text(object, "request_id")?;
    if let Some(id) = &request_id {
        validate_caller_id("request_id", id)?;
    }
    let model =
        optional_text(object, "model")?.ok_or_else(|| Error::invalid("model", "is required"))?;
    bounded_name("model", &model)?;
    let product = optional_text(object, "product")?;
    if let Some(product) = &product {
        bounded_name("product", product)?;
    }
    let prompt = optional_text(object, "prompt")?;
    if let Some(prompt) = &prompt {
        check_prompt(prompt)?;
    }
    let price_version = optional_text(object, "price_version")?;
    if let Some(version) = &price_version {
        bounded_name("price_version", version)?;
    }
    let units = units(object)?;
    let input_image_urls = image_urls(object)?;
    Ok(GenerateRequest {
        request_id,
        model,
        product,
        prompt,
        units,
        input_image_urls,
        price_version,
    })
}

impl GenerateRequest {
    /// Checks a request a dialect decoded itself (the bounds [`normalize`]
    /// checks as it reads Rynjer's JSON): a valid request id if any, a
    /// model, names and option values of 1 to [`NAME_CHARS_MAX`] bytes, a
    /// prompt of at most [`PROMPT_CHARS_MAX`] characters, positive counts
    /// and durations, and at most [`INPUT_URLS_MAX`] http(s) input URLs.
    /// Every refusal is `invalid_request` naming the field.
    pub fn validate(&self) -> Result<()> {
        if let Some(id) = &self.request_id {
            validate_caller_id("request_id", id)?;
        }
        bounded_name("model", &self.model)?;
        if let Some(product) = &self.product {
            bounded_name("product", product)?;
        }
        if let Some(version) = &self.price_version {
            bounded_name("price_version", version)?;
        }
        if let Some(prompt) = &self.prompt {
            check_prompt(prompt)?;
        }
        for (field, value) in [
            ("units.count", self.units.count),
            ("units.duration", self.units.duration),
        ] {
            if value == Some(0) {
                return Err(Error::invalid(field, "must be a positive integer"));
            }
        }
        for (field, value) in [
            ("units.resolution", &self.units.resolution),
            ("units.aspect_ratio", &self.units.aspect_ratio),
        ] {
            if let Some(value) = value {
                bounded_name(field, value)?;
            }
        }
        if self.input_image_urls.len() > INPUT_URLS_MAX {
            return Err(Error::invalid(
                "input_image_urls",
                format!("must hold at most {INPUT_URLS_MAX} URLs"),
            ));
        }
        for url in &self.input_image_urls {
            check_url("input_image_urls", url)?;
        }
        Ok(())
    }

    /// The pricing-relevant part.
    pub fn estimate_request(&self) -> EstimateRequest {
        EstimateRequest {
            product: self.product.clone(),
            model: self.model.clone(),
            units: self.units.clone(),
            input_image_urls: self.input_image_urls.clone(),
        }
    }

    /// SHA-256 (hex) of the normalised request without its `request_id`
    /// and its `product`: two bodies that normalise alike have the same
    /// fingerprint. The product is left out because the model implies it
    /// (a request naming another product is refused), and dialects differ
    /// in whether they name it (OpenAI's and AgentName's routes do,
    /// Rynjer's and KiwiWhale's bodies need not): one request id then means
    /// the same job whichever dialect carried it. A request that named no
    /// product keeps the fingerprint it had before this rule.
    pub fn fingerprint(&self) -> String {
        let mut canonical = self.clone();
        canonical.request_id = None;
        canonical.product = None;
        // Serialising a struct of strings and integers cannot fail; the
        // field order is the struct's, so the text is canonical.
        let text = serde_json::to_string(&canonical).unwrap_or_default();
        hex::encode(Sha256::digest(text.as_bytes()))
    }
}

fn optional_text(object: &Map<String, Value>, field: &str) -> Result<Option<String>> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(Error::invalid(field, "must be a string")),
    }
}

fn check_prompt(prompt: &str) -> Result<()> {
    if prompt.chars().count() > PROMPT_CHARS_MAX {
        return Err(Error::invalid(
            "prompt",
            format!("must be at most {PROMPT_CHARS_MAX} characters"),
        ));
    }
    Ok(())
}

fn check_url(field: &str, url: &str) -> Result<()> {
    let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
    if !scheme_ok || url.len() > URL_CHARS_MAX || url.chars().any(char::is_whitespace) {
        return Err(Error::invalid(
            field,
            format!("each must be an http(s) URL of at most {URL_CHARS_MAX} bytes"),
        ));
    }
    Ok(())
}

fn bounded_name(field: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() || value.len() > NAME_CHARS_MAX {
        return Err(Error::invalid(
            field,
            format!("must be 1 to {NAME_CHARS_MAX} characters"),
        ));
    }
    Ok(())
}

fn positive_int(field: &str, value: &Value) -> Result<u32> {
    value
        .as_u64()
        .filter(|n| *n >= 1)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| Error::invalid(field, "must be a positive integer"))
}

fn text_value(field: &str, value: &Value) -> Result<String> {
    match value {
        Value::String(text) => {
            bounded_name(field, text)?;
            Ok(text.clone())
        }
        _ => Err(Error::invalid(field, "must be a string")),
    }
}

/// `units` merged with the top-level shortcuts.
fn units(object: &Map<String, Value>) -> Result<RequestedUnits> {
    let nested = match object.get("units") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(units)) => units.clone(),
        Some(_) => return Err(Error::invalid("units", "must be an object")),
    };
    if let Some(unknown) = nested
        .keys()
        .find(|key| !UNIT_MEMBERS.contains(&key.as_str()))
    {
        return Err(Error::invalid(
            &format!("units.{unknown}"),
            "is not a known unit",
        ));
    }
    let pick = |name: &str| -> Result<Option<&Value>> {
        let inner = nested.get(name).filter(|v| !v.is_null());
        let outer = object.get(name).filter(|v| !v.is_null());
        match (inner, outer) {
            (Some(_), Some(_)) => Err(Error::invalid(
                name,
                format!("give {name} at the top level or as units.{name}, not both"),
            )),
            (a, b) => Ok(a.or(b)),
        }
    };
    Ok(RequestedUnits {
        count: pick("count")?
            .map(|v| positive_int("units.count", v))
            .transpose()?,
        resolution: pick("resolution")?
            .map(|v| text_value("units.resolution", v))
            .transpose()?,
        duration: pick("duration")?
            .map(|v| positive_int("units.duration", v))
            .transpose()?,
        aspect_ratio: pick("aspect_ratio")?
            .map(|v| text_value("units.aspect_ratio", v))
            .transpose()?,
    })
}

fn url_list(field: &str, value: &Value) -> Result<Vec<String>> {
    let items = value
        .as_array()
        .ok_or_else(|| Error::invalid(field, "must be an array of URLs"))?;
    if items.len() > INPUT_URLS_MAX {
        return Err(Error::invalid(
            field,
            format!("must hold at most {INPUT_URLS_MAX} URLs"),
        ));
    }
    items
        .iter()
        .map(|item| {
            let url = item
                .as_str()
                .ok_or_else(|| Error::invalid(field, "must be an array of URLs"))?;
            check_url(field, url)?;
            Ok(url.to_owned())
        })
        .collect()
}

fn image_urls(object: &Map<String, Value>) -> Result<Vec<String>> {
    let input = object
        .get("input_image_urls")
        .filter(|v| !v.is_null())
        .map(|v| url_list("input_image_urls", v))
        .transpose()?;
    let short = object
        .get("image_urls")
        .filter(|v| !v.is_null())
        .map(|v| url_list("image_urls", v))
        .transpose()?;
    match (input, short) {
        (Some(_), Some(_)) => Err(Error::invalid(
            "image_urls",
            "give image_urls or input_image_urls, not both",
        )),
        (a, b) => Ok(a.or(b).unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check_refused(body: Value, field: &str) {
        match normalize(&body) {
            Err(Error::InvalidRequest { field: got, .. }) => assert_eq!(got, field, "{body}"),
            other => panic!("expected invalid {field} for {body}, got {other:?}"),
        }
    }

    #[test]
    fn shortcuts_normalise_into_units_and_input_images() {
        let short = normalize(&json!({
            "request_id": "demo-uuid-002", "model": "qwen/text-to-image", "prompt": "p",
            "count": 1, "resolution": "1K", "aspect_ratio": "1:1",
            "image_urls": ["https://example.com/a.png"]
        }))
        .expect("normalises");
        let long = normalize(&json!({
            "request_id": "demo-uuid-002", "model": "qwen/text-to-image", "prompt": "p",
            "units": {"count": 1, "resolution": "1K", "aspect_ratio": "1:1"},
            "input_image_urls": ["https://example.com/a.png"]
        }))
        .expect("normalises");
        assert_eq!(short, long);
        assert_eq!(short.fingerprint(), long.fingerprint());
        assert_eq!(short.units.count, Some(1));
        let other = normalize(&json!({"model": "qwen/text-to-image", "prompt": "q"})).expect("ok");
        assert_ne!(other.fingerprint(), short.fingerprint());
    }

    #[test]
    fn naming_the_product_does_not_change_the_fingerprint() {
        let bare = normalize(&json!({"request_id": "r", "model": "z-image", "prompt": "p"}))
            .expect("normalises");
        let named = GenerateRequest {
            product: Some("image".into()),
            ..bare.clone()
        };
        assert_eq!(bare.fingerprint(), named.fingerprint());
        let other_prompt = GenerateRequest {
            prompt: Some("q".into()),
            ..named
        };
        assert_ne!(bare.fingerprint(), other_prompt.fingerprint());
    }

    #[test]
    fn bad_bodies_name_the_field() {
        check_refused(json!([1]), "body");
        check_refused(json!({"prompt": "x"}), "model");
        check_refused(json!({"model": 7}), "model");
        check_refused(json!({"model": "m", "modle": "x"}), "modle");
        check_refused(json!({"model": "m", "count": 0}), "units.count");
        check_refused(json!({"model": "m", "count": 1.5}), "units.count");
        check_refused(
            json!({"model": "m", "count": 99999999999u64}),
            "units.count",
        );
        check_refused(json!({"model": "m", "count": -1}), "units.count");
        check_refused(
            json!({"model": "m", "count": 2, "units": {"count": 4}}),
            "count",
        );
        // One field spelled two ways is refused even when both agree.
        check_refused(
            json!({"model": "m", "count": 2, "units": {"count": 2}}),
            "count",
        );
        check_refused(
            json!({"model": "m", "image_urls": ["https://e.com/a"],
                   "input_image_urls": ["https://e.com/a"]}),
            "image_urls",
        );
        check_refused(
            json!({"model": "m", "units": {"colour": "red"}}),
            "units.colour",
        );
        check_refused(json!({"model": "m", "units": 3}), "units");
        check_refused(
            json!({"model": "m", "image_urls": ["ftp://x"]}),
            "image_urls",
        );
        check_refused(
            json!({"model": "m", "input_image_urls": "https://x"}),
            "input_image_urls",
        );
        check_refused(
            json!({"model": "m", "request_id": "has space"}),
            "request_id",
        );
        check_refused(
            json!({"model": "m", "prompt": "x".repeat(PROMPT_CHARS_MAX + 1)}),
            "prompt",
        );
        let urls: Vec<String> = (0..=INPUT_URLS_MAX)
            .map(|i| format!("https://e.com/{i}"))
            .collect();
        check_refused(json!({"model": "m", "image_urls": urls}), "image_urls");
    }
}
