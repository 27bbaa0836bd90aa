//! The catalog format through `parse_catalog`: the shipped catalogs parse
//! exactly as written and round-trip, and every refusal is one row of a
//! table: a JSON edit applied to a small valid catalog, the path of the
//! offending field, and a fragment of the message.

use std::str::FromStr;

use creditgate::pricing::catalog::{
    CATALOG_BYTES_MAX, CATALOG_MODELS_MAX, MODEL_ID_CHARS_MAX, NOTE_CHARS_MAX,
};
use creditgate::pricing::{
    estimate, estimate_before_upload, parse_catalog, Catalog, EstimateRequest, ModelSpec,
    OptionName, OptionValue, PriceRule, PriceUnit, RuleCondition, RuleEffect,
};
use rust_decimal::Decimal;
use serde_json::Value;

const RYNJER: &str = include_str!("../../fixtures/catalogs/rynjer.json");
const KIWIWHALE: &str = include_str!("../../fixtures/catalogs/kiwiwhale.json");
const RYNJER_UPSTREAMS: &str = include_str!("../../fixtures/catalogs/rynjer-upstreams.json");

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

/// BASE with `edits` applied, as text.
fn edited(edits: &[(&str, Option<&str>)]) -> String {
    let mut doc = json(BASE);
    for (pointer, new) in edits {
        edit(&mut doc, pointer, *new);
    }
    serde_json::to_string(&doc).expect("serialize")
}

fn accepted(edits: &[(&str, Option<&str>)]) -> Catalog {
    parse_catalog(&edited(edits)).unwrap_or_else(|e| panic!("refused: {e}"))
}

/// One refusal: the edits to BASE, the path of the offending field, and a
/// fragment of the message.
struct Row {
    edits: Vec<(String, Option<String>)>,
    path: &'static str,
    message: &'static str,
}

fn row(edits: &[(&str, Option<&str>)], path: &'static str, message: &'static str) -> Row {
    Row {
        edits: edits
            .iter()
            .map(|(pointer, new)| (pointer.to_string(), new.map(str::to_string)))
            .collect(),
        path,
        message,
    }
}

/// Every refusal the format promises, one row each: (edits, path, message).
#[rustfmt::skip]
fn refusals() -> Vec<Row> {
    let long_id = format!("\"{}\"", "a".repeat(MODEL_ID_CHARS_MAX + 1));
    let long_note = format!("\"{}\"", "n".repeat(NOTE_CHARS_MAX + 1));
    vec![
        row(&[("/extra", Some("1"))], "extra", "unknown field"),
        row(&[("/models", None)], "models", "missing"),
        row(&[("/models", Some("[]"))], "models", "at least one model"),
        row(&[("/models", Some("{}"))], "models", "expected an array"),
        row(&[("/price_version", Some("\"2026 02\""))], "price_version", "must be"),
        row(&[("/price_version", Some("\"\""))], "price_version", "empty"),
        row(&[("/price_version", Some("\"-v1\""))], "price_version", "must be"),
        row(&[("/price_version", Some("7"))], "price_version", "invalid type"),
        row(&[("/currency", Some("\"usd\""))], "currency", "credits"),
        row(&[("/models/0/colour", Some("1"))], "models[0].colour", "unknown field"),
        row(&[("/models/0/base_price", None)], "models[0].base_price", "missing"),
        row(&[("/models/0/input_schema", None)], "models[0].input_schema", "missing"),
        row(&[("/models/0/base_price", Some("\"20\""))], "models[0].base_price", "invalid type"),
        row(&[("/models/0/base_price", Some("-1"))], "models[0].base_price", "negative"),
        row(&[("/models/0/base_price", Some("0.0000001"))], "models[0].base_price", "finer than a micro-credit"),
        row(&[("/models/0/base_price", Some("1000000.5"))], "models[0].base_price", "PRICE_CREDITS_MAX"),
        row(&[("/models/0/base_price", Some("1e400"))], "models[0].base_price", "out of range"),
        row(&[("/models/0/unit", Some("\"minute\""))], "models[0].unit", "unknown variant"),
        row(&[("/models/0/model", Some("\"nano banana\""))], "models[0].model", "must be"),
        row(&[("/models/0/model", Some("\"\""))], "models[0].model", "empty"),
        row(&[("/models/0/model", Some(&long_id))], "models[0].model", "more than 128"),
        row(&[("/models/0/product", Some("\"Image\""))], "models[0].product", "lowercase"),
        row(&[("/models/0/category", Some("\"text to image\""))], "models[0].category", "lowercase"),
        row(&[("/models/0/provider", Some("\"\""))], "models[0].provider", "empty"),
        row(&[("/models/0/upstream_model", Some("\"a b\""))], "models[0].upstream_model", "printable"),
        row(&[("/models/0/note", Some(&long_note))], "models[0].note", "NOTE_CHARS_MAX"),
        row(&[("/models/0/note", Some("\"a\\u0007b\""))], "models[0].note", "control"),
        row(&[("/models/0/input_images", Some(r#"{"min": 3, "max": 2}"#))], "models[0].input_images", "min <= max"),
        row(&[("/models/0/input_images", Some(r#"{"min": 0, "max": 17}"#))], "models[0].input_images", "INPUT_IMAGES_MAX"),
        row(&[("/models/0/input_images", Some(r#"{"least": 0}"#))], "models[0].input_images.least", "unknown field"),
        row(&[("/models/1", Some("3"))], "models[1]", "a model is a JSON object"),
        row(&[("/models/0/options/quality", Some(r#"{"allowed": ["hd"], "default": "hd"}"#))], "models[0].options.quality", "unknown field in options; expected one of: count, resolution, duration, aspect_ratio"),
        row(&[("/models/0/options/count/default", Some("3"))], "models[0].options.count.default", "not among the allowed values (1, 2, 4, 8)"),
        row(&[("/models/0/options/count/allowed/0", Some("\"1\""))], "models[0].options.count.allowed[0]", "integers, not text"),
        row(&[("/models/0/options/count/allowed/0", Some("1.5"))], "models[0].options.count.allowed[0]", "not an integer"),
        row(&[("/models/0/options/count/allowed/0", Some("0"))], "models[0].options.count.allowed[0]", "outside 1..=64"),
        row(&[("/models/0/options/count/allowed/1", Some("1"))], "models[0].options.count.allowed[1]", "duplicate value `1`"),
        row(&[("/models/0/options/count/allowed", Some("[]"))], "models[0].options.count.allowed", "at least one value"),
        row(&[("/models/0/options/count/allowed/0", Some("true"))], "models[0].options.count.allowed[0]", "not a boolean"),
        row(&[("/models/0/options/resolution/allowed/0", Some("4"))], "models[0].options.resolution.allowed[0]", "text, not integers"),
        row(&[("/models/0/options/resolution/allowed/0", Some("\"1 K\""))], "models[0].options.resolution.allowed[0]", "must be"),
        row(&[("/models/0/options/count/default", None)], "models[0].options.count.default", "missing"),
        row(&[("/models/0/options/count/extra", Some("1"))], "models[0].options.count.extra", "unknown field"),
        row(&[("/models/0/options/duration", Some(r#"{"allowed": [0], "default": 0}"#))], "models[0].options.duration.allowed[0]", "outside 1..=3600"),
        row(&[("/models/0/unit", Some("\"video\""))], "models[0].options.count", "only unit `image`"),
        row(&[("/models/0/unit", Some("\"second\"")), ("/models/0/options/count", None), ("/models/0/input_schema/properties/units/properties/count", None)], "models[0].options", "needs a `duration` option"),
        row(&[("/models/0/price_rules/0", Some(r#"{"option": "duration", "equals": 5, "price": 1}"#))], "models[0].price_rules[0].option", "offers no option `duration`"),
        row(&[("/models/0/price_rules/0", Some(r#"{"option": "resolution", "equals": "8K", "price": 1}"#))], "models[0].price_rules[0].equals", "not an allowed value of `resolution` (1K, 2K, 4K)"),
        row(&[("/models/0/price_rules/0", Some(r#"{"option": "resolution", "equals": "1K", "price": 1}"#))], "models[0].price_rules[0].equals", "the default of `resolution`"),
        row(&[("/models/0/price_rules/0", Some(r#"{"option": "resolution", "equals": "2K", "multiplier": 0}"#))], "models[0].price_rules[0].multiplier", "not positive"),
        row(&[("/models/0/price_rules/0", Some(r#"{"option": "resolution", "equals": "2K", "multiplier": -1.5}"#))], "models[0].price_rules[0].multiplier", "not positive"),
        row(&[("/models/0/price_rules/0", Some(r#"{"option": "resolution", "equals": "2K", "multiplier": 1.0000001}"#))], "models[0].price_rules[0].multiplier", "more than 6 decimal places"),
        row(&[("/models/0/price_rules/0", Some(r#"{"option": "resolution", "equals": "2K", "multiplier": 101}"#))], "models[0].price_rules[0].multiplier", "MULTIPLIER_MAX"),
        row(&[("/models/0/price_rules/0", Some(r#"{"option": "resolution", "equals": "2K", "multiplier": "1.5"}"#))], "models[0].price_rules[0].multiplier", "invalid type"),
        row(&[("/models/0/price_rules/0", Some(r#"{"option": "resolution", "equals": "2K", "price": 0.00000001}"#))], "models[0].price_rules[0].price", "finer than a micro-credit"),
        row(&[("/models/0/price_rules/0", Some(r#"{"option": "resolution", "equals": "2K", "price": 1, "multiplier": 2}"#))], "models[0].price_rules[0]", "not both"),
        row(&[("/models/0/price_rules/0", Some(r#"{"option": "resolution", "equals": "2K"}"#))], "models[0].price_rules[0]", "needs an effect"),
        row(&[("/models/0/price_rules/0", Some(r#"{"option": "resolution", "price": 1}"#))], "models[0].price_rules[0]", "needs `equals`"),
        row(&[("/models/0/price_rules/0", Some(r#"{"price": 1}"#))], "models[0].price_rules[0]", "needs a condition"),
        row(&[("/models/0/price_rules/0", Some(r#"{"when": "input_images", "option": "resolution", "equals": "2K", "price": 1}"#))], "models[0].price_rules[0]", "not both"),
        row(&[("/models/0/price_rules/0", Some(r#"{"option": "resolution", "equals": "2K", "factor": 2}"#))], "models[0].price_rules[0].factor", "unknown field"),
        row(&[("/models/0/price_rules/0", Some(r#"{"when": "night", "multiplier": 2}"#))], "models[0].price_rules[0].when", "unknown variant"),
        row(&[("/models/0/price_rules/1", Some(r#"{"when": "input_images", "price": 5}"#))], "models[0].price_rules[1].price", "a multiplier"),
        row(&[("/models/0/input_images", None), ("/models/0/input_schema/properties/input_image_urls", None)], "models[0].price_rules[1].when", "takes no input images"),
        row(&[("/models/0/input_images", Some(r#"{"min": 1, "max": 2}"#)), ("/models/0/input_schema/properties/input_image_urls/minItems", Some("1")), ("/models/0/input_schema/required", Some(r#"["prompt", "input_image_urls"]"#))], "models[0].price_rules[1].when", "always takes input images"),
        row(&[("/models/0/price_rules/2", Some(r#"{"option": "count", "equals": 2, "price": 30}"#))], "models[0].price_rules[2].option", "all name one option"),
        row(&[("/models/0/price_rules/2", Some(r#"{"option": "resolution", "equals": "4K", "multiplier": 2}"#))], "models[0].price_rules[2]", "same condition as price_rules[0]"),
        row(&[("/models/0/price_rules/2", Some(r#"{"when": "input_images", "multiplier": 2}"#))], "models[0].price_rules[2]", "same condition as price_rules[1]"),
        row(&[("/models/0/price_rules", Some("{}"))], "models[0].price_rules", "expected an array"),
        row(&[("/models/0/input_schema/type", Some("\"array\""))], "models[0].input_schema.type", "\"object\""),
        row(&[("/models/0/input_schema", Some("[]"))], "models[0].input_schema", "invalid type"),
        row(&[("/models/0/input_schema/properties", Some("[]"))], "models[0].input_schema.properties", "expected an object"),
        row(&[("/models/0/input_schema/properties/units/properties/count", None)], "models[0].input_schema.properties.units.properties.count", "describes every option"),
        row(&[("/models/0/input_schema/properties/units/properties/count/enum", Some("[1, 2, 4]"))], "models[0].input_schema.properties.units.properties.count.enum", "[1, 2, 4, 8]"),
        row(&[("/models/0/input_schema/properties/units/properties/count/enum", Some("[\"1\", 2, 4, 8]"))], "models[0].input_schema.properties.units.properties.count.enum", "allowed values"),
        row(&[("/models/0/input_schema/properties/units/properties/count/default", Some("2"))], "models[0].input_schema.properties.units.properties.count.default", "default, 1"),
        row(&[("/models/0/input_schema/properties/units/properties/duration", Some("{}"))], "models[0].input_schema.properties.units.properties.duration", "does not offer"),
        row(&[("/models/0/input_schema/properties/units/properties/seed", Some("{}"))], "models[0].input_schema.properties.units.properties.seed", "does not offer"),
        row(&[("/models/0/input_schema/properties/input_image_urls", None)], "models[0].input_schema.properties.input_image_urls", "missing"),
        row(&[("/models/0/input_schema/properties/input_image_urls/maxItems", Some("3"))], "models[0].input_schema.properties.input_image_urls.maxItems", "input_images.max (2)"),
        row(&[("/models/0/input_schema/properties/input_image_urls/minItems", Some("1"))], "models[0].input_schema.properties.input_image_urls.minItems", "input_images.min (0)"),
        row(&[("/models/0/input_schema/required", Some(r#"["input_image_urls"]"#))], "models[0].input_schema.required", "exactly when"),
        row(&[("/models/0/price_rules/1", None), ("/models/0/input_images", None)], "models[0].input_schema.properties.input_image_urls", "takes no input images"),
    ]
}

#[test]
fn every_refusal_names_its_field() {
    let rows = refusals();
    assert_eq!(rows.len(), 83);
    for row in rows {
        let edits: Vec<(&str, Option<&str>)> = row
            .edits
            .iter()
            .map(|(pointer, new)| (pointer.as_str(), new.as_deref()))
            .collect();
        match parse_catalog(&edited(&edits)) {
            Ok(_) => panic!(
                "{edits:?} accepted; expected an error at {}: {}",
                row.path, row.message
            ),
            Err(error) => {
                assert_eq!(error.path, row.path, "{edits:?}: {error}");
                assert!(
                    error.message.contains(row.message),
                    "{edits:?}: message `{}` lacks `{}`",
                    error.message,
                    row.message
                );
            }
        }
    }
}

#[test]
fn edits_that_keep_the_rules_are_accepted() {
    // Several fixed prices on one option, and multipliers on others, are fine.
    accepted(&[
        (
            "/models/0/price_rules/2",
            Some(r#"{"option": "resolution", "equals": "2K", "price": 30}"#),
        ),
        (
            "/models/0/price_rules/3",
            Some(r#"{"option": "count", "equals": 8, "multiplier": 0.9}"#),
        ),
    ]);
    // minItems may be left out when it is 0.
    accepted(&[(
        "/models/0/input_schema/properties/input_image_urls/minItems",
        None,
    )]);
}

#[test]
fn too_many_models_are_refused() {
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
fn base_catalog_parses_into_typed_rules() {
    let catalog = accepted(&[]);
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
    let catalog = accepted(&[("/models/0/base_price", Some("0.0165"))]);
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
    for text in [RYNJER, KIWIWHALE, RYNJER_UPSTREAMS] {
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

#[test]
fn shape_errors_read_as_the_format_describes_itself() {
    let unknown = parse_catalog(&edited(&[("/models/0/colour", Some("1"))])).expect_err("refused");
    assert!(
        unknown
            .message
            .starts_with("unknown field in a model; expected one of: model, product, category,"),
        "{unknown}"
    );
    let missing = parse_catalog(&edited(&[("/models/0/base_price", None)])).expect_err("refused");
    assert_eq!(missing.message, "missing required field");
    let rule =
        parse_catalog(&edited(&[("/models/0/price_rules/0", Some("7"))])).expect_err("refused");
    assert_eq!(
        (rule.path.as_str(), rule.message.as_str()),
        (
            "models[0].price_rules[0]",
            "a price rule is a JSON object, not a number"
        )
    );
    // A member written twice is refused, though no path can name it.
    let twice = BASE.replacen(
        r#""base_price": 20,"#,
        r#""base_price": 20, "base_price": 30,"#,
        1,
    );
    let error = parse_catalog(&twice).expect_err("refused");
    assert_eq!(error.path, "");
    assert!(
        error.message.contains("duplicate field `base_price`"),
        "{error}"
    );
}

/// The Rynjer models the routed catalog leaves out: OpenAI removed Sora 2
/// from its API on 2026-09-24, and no other upstream serves it.
const LEFT_OUT_OF_UPSTREAMS: [&str; 2] = ["sora-2", "sora-2-pro"];

/// The requests an agent can make of `spec`: the default one, each allowed
/// value of each option alone, and one with as many input images as the
/// model takes.
fn requests_of(spec: &ModelSpec) -> Vec<EstimateRequest> {
    let bare = EstimateRequest {
        model: spec.model.clone(),
        ..EstimateRequest::default()
    };
    let mut requests = vec![bare.clone()];
    for (name, option) in &spec.options {
        for value in &option.allowed {
            let mut req = bare.clone();
            match (name, value) {
                (OptionName::Count, OptionValue::Int(n)) => req.units.count = Some(*n),
                (OptionName::Duration, OptionValue::Int(n)) => req.units.duration = Some(*n),
                (OptionName::Resolution, OptionValue::Text(t)) => {
                    req.units.resolution = Some(t.clone());
                }
                (OptionName::AspectRatio, OptionValue::Text(t)) => {
                    req.units.aspect_ratio = Some(t.clone());
                }
                other => panic!("{}: unexpected option {other:?}", spec.model),
            }
            requests.push(req);
        }
    }
    if spec.input_images.max > 0 {
        let mut req = bare;
        req.input_image_urls = (0..spec.input_images.max)
            .map(|i| format!("https://example.com/in-{i}.png"))
            .collect();
        requests.push(req);
    }
    requests
}

#[test]
fn the_upstream_catalog_sells_the_rynjer_models_at_the_rynjer_prices() {
    let fixture = parse_catalog(RYNJER).expect("valid");
    let routed = parse_catalog(RYNJER_UPSTREAMS).expect("valid");
    assert_eq!(routed.price_version, "2026-12-01-upstreams");

    // Every Rynjer model but the Sora ones, in the same order.
    let ids = |catalog: &Catalog| -> Vec<String> {
        catalog.models.iter().map(|m| m.model.clone()).collect()
    };
    let expected: Vec<String> = ids(&fixture)
        .into_iter()
        .filter(|id| !LEFT_OUT_OF_UPSTREAMS.contains(&id.as_str()))
        .collect();
    assert_eq!(ids(&routed), expected);
    for id in LEFT_OUT_OF_UPSTREAMS {
        assert!(fixture.model(id).is_some(), "{id} is a Rynjer model");
    }

    for spec in &routed.models {
        let original = fixture.model(&spec.model).expect("a Rynjer model");
        // Routed to a real upstream, never to the fixture provider.
        assert!(
            ["kie", "fal", "replicate", "openai"].contains(&spec.provider.as_str()),
            "{}: provider {}",
            spec.model,
            spec.provider
        );
        assert!(!spec.upstream_model.is_empty(), "{}", spec.model);
        assert!(
            !spec.note.contains("fixture"),
            "{}: {}",
            spec.model,
            spec.note
        );
        // Everything an agent is sold is the same: only the route and the
        // note's wording differ.
        let mut same = spec.clone();
        same.provider.clone_from(&original.provider);
        same.upstream_model.clone_from(&original.upstream_model);
        same.note.clone_from(&original.note);
        assert_eq!(&same, original, "{}", spec.model);

        for req in requests_of(original) {
            let price = |catalog: &Catalog| {
                let priced = if req.input_image_urls.is_empty() {
                    estimate_before_upload(catalog, &req)
                } else {
                    estimate(catalog, &req)
                };
                let priced = priced.unwrap_or_else(|e| panic!("{req:?}: {e}"));
                (
                    priced.credits,
                    priced.micros,
                    priced.breakdown,
                    priced.units,
                )
            };
            assert_eq!(price(&routed), price(&fixture), "{req:?}");
        }
    }
}
