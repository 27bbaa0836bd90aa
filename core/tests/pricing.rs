//! Price catalogs through the facade: every price of the references
//! (table-driven from `fixtures/catalogs/expected_prices.json`), versions
//! (import, replay, conflict, activate, retire, pin), and malformed catalogs
//! refused with the path of the offending field and nothing stored.

mod common;

use std::str::FromStr;

use common::{fresh, KIWIWHALE, RYNJER};
use creditgate::pricing::{parse_catalog, EstimateRequest, PromptRule};
use creditgate::Error;
use rust_decimal::Decimal;
use serde_json::Value;

const EXPECTED: &str = include_str!("../../fixtures/catalogs/expected_prices.json");

fn version_of(catalog: &str) -> String {
    let value: Value = serde_json::from_str(catalog).expect("catalog JSON");
    value["price_version"].as_str().expect("version").to_owned()
}

#[test]
fn every_reference_price_is_estimated_exactly() {
    let fx = fresh();
    let gate = &fx.gate;
    gate.import_catalog(RYNJER).expect("import rynjer");
    gate.import_catalog(KIWIWHALE).expect("import kiwiwhale");
    let cases: Vec<Value> = serde_json::from_str(EXPECTED).expect("expected prices");
    assert!(cases.len() >= 60, "the table covers every model");
    for case in cases {
        let catalog = match case["catalog"].as_str() {
            Some("rynjer.json") => RYNJER,
            Some("kiwiwhale.json") => KIWIWHALE,
            other => panic!("unknown catalog {other:?}"),
        };
        let request: EstimateRequest =
            serde_json::from_value(case["request"].clone()).expect("request parses");
        let version = version_of(catalog);
        let estimate = gate
            .estimate(&request, Some(&version))
            .unwrap_or_else(|err| panic!("{case}: {err}"));
        let expected =
            Decimal::from_str(case["credits"].as_str().expect("credits")).expect("decimal");
        assert_eq!(estimate.credits, expected, "{case}");
        assert_eq!(
            estimate.micros,
            creditgate::money::to_micros(expected).expect("micros")
        );
        assert_eq!(estimate.price_version, version);
    }
}

#[test]
fn the_named_rules_of_the_references_hold() {
    let fx = fresh();
    let gate = &fx.gate;
    gate.import_catalog(RYNJER).expect("import");
    let price = |body: &str| -> String {
        let request: EstimateRequest = serde_json::from_str(body).expect("request");
        gate.estimate(&request, None)
            .expect("estimate")
            .credits
            .to_string()
    };
    assert_eq!(
        price(r#"{"model":"nano-banana-pro","units":{"resolution":"4K"}}"#),
        "40"
    );
    assert_eq!(
        price(r#"{"model":"veo3","units":{"resolution":"1080p"}}"#),
        "350"
    );
    assert_eq!(
        price(r#"{"model":"wan-2.6","units":{"resolution":"1080p"}}"#),
        "300"
    );
    for (count, total) in [(1, "20"), (2, "40"), (4, "80"), (8, "160")] {
        assert_eq!(
            price(&format!(
                r#"{{"model":"nano-banana-pro","units":{{"count":{count}}}}}"#
            )),
            total
        );
    }
    assert_eq!(
        price(r#"{"model":"nano-banana-pro","units":{"count":4,"resolution":"4K"}}"#),
        "160"
    );
    assert_eq!(
        price(r#"{"model":"wan-2.6","input_image_urls":["https://example.com/a.png"]}"#),
        "30",
        "image-to-video x1.5"
    );
    assert_eq!(price(r#"{"model":"V4_5PLUS"}"#), "30");
}

#[test]
fn estimates_refuse_what_the_model_does_not_allow() {
    let fx = fresh();
    let gate = &fx.gate;
    gate.import_catalog(RYNJER).expect("import");
    let refuse = |body: &str, code: &str| -> Error {
        let request: EstimateRequest = serde_json::from_str(body).expect("request");
        let err = gate.estimate(&request, None).expect_err("refused");
        assert_eq!(err.code(), code, "{body}: {err}");
        err
    };
    let err = refuse(
        r#"{"model":"nano-banana-pro","units":{"count":3}}"#,
        "invalid_option",
    );
    assert!(
        err.to_string().contains('8'),
        "lists the allowed counts: {err}"
    );
    let err = refuse(r#"{"model":"nano-banana"}"#, "unknown_model");
    match err {
        Error::Estimate(creditgate::pricing::EstimateError::UnknownModel {
            close_matches, ..
        }) => {
            assert!(close_matches
                .iter()
                .any(|m| m == "nano-banana-pro" || m == "google/nano-banana"));
        }
        other => panic!("{other:?}"),
    }
    refuse(r#"{"model":"veo3","product":"image"}"#, "invalid_request");
}

#[test]
fn versions_are_immutable_and_exactly_one_is_active() {
    let fx = fresh();
    let gate = &fx.gate;
    let request: EstimateRequest = serde_json::from_str(r#"{"model":"veo3"}"#).expect("request");
    assert_eq!(
        gate.estimate(&request, None)
            .expect_err("no catalog")
            .code(),
        "no_price_catalog"
    );

    let first = gate.import_catalog(RYNJER).expect("import");
    assert!(
        first.created && first.active,
        "the first version becomes active"
    );
    let again = gate.import_catalog(RYNJER).expect("replay");
    assert!(!again.created, "the same catalog again is a replay");

    // A changed price under the same version is refused; under a new one it
    // is a new version, not active until activated.
    let changed = RYNJER.replacen("\"base_price\": 280", "\"base_price\": 290", 1);
    assert_ne!(changed, RYNJER, "the fixture has veo3 at 280");
    assert_eq!(
        gate.import_catalog(&changed).expect_err("conflict").code(),
        "price_version_conflict"
    );
    let v2 = changed.replacen("2026-02-02-v1", "2026-03-01-v2", 1);
    let second = gate.import_catalog(&v2).expect("import v2");
    assert!(second.created && !second.active);
    assert_eq!(
        gate.estimate(&request, None).expect("v1").credits,
        Decimal::from(280)
    );
    assert_eq!(
        gate.estimate(&request, Some("2026-03-01-v2"))
            .expect("pinned v2")
            .credits,
        Decimal::from(290)
    );

    gate.activate_price_version("2026-03-01-v2")
        .expect("activate");
    assert_eq!(
        gate.estimate(&request, None).expect("v2").credits,
        Decimal::from(290)
    );
    assert_eq!(
        gate.estimate(&request, Some("2026-02-02-v1"))
            .expect("pinned v1 still honoured")
            .credits,
        Decimal::from(280)
    );
    let active: Vec<_> = gate
        .price_versions()
        .expect("list")
        .into_iter()
        .filter(|v| v.active)
        .map(|v| v.version)
        .collect();
    assert_eq!(active, ["2026-03-01-v2"]);

    gate.retire_price_version("2026-02-02-v1").expect("retire");
    let err = gate
        .estimate(&request, Some("2026-02-02-v1"))
        .expect_err("retired");
    assert_eq!(err.code(), "unknown_price_version");
    assert!(
        err.to_string().contains("2026-03-01-v2"),
        "names the active version: {err}"
    );
    let err = gate
        .estimate(&request, Some("1999-01-01"))
        .expect_err("unknown");
    assert!(
        matches!(err, Error::UnknownPriceVersion { ref active, retired: false, .. } if active.as_deref() == Some("2026-03-01-v2"))
    );
    assert_eq!(
        gate.activate_price_version("2026-02-02-v1")
            .expect_err("retired")
            .code(),
        "unknown_price_version"
    );
    assert_eq!(
        gate.retire_price_version("2026-03-01-v2")
            .expect_err("active")
            .code(),
        "invalid_request"
    );
}

#[test]
fn a_malformed_catalog_is_refused_with_its_path_and_nothing_is_stored() {
    let fx = fresh();
    let gate = &fx.gate;
    let mut value: Value = serde_json::from_str(RYNJER).expect("json");
    value["models"][3]["price_rules"] =
        serde_json::json!([{"option": "resolution", "equals": "4K", "multiplier": -2}]);
    let err = gate
        .import_catalog(&value.to_string())
        .expect_err("refused");
    match &err {
        Error::InvalidCatalog(inner) => assert!(inner.path.starts_with("models[3]"), "{inner:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(err.code(), "invalid_catalog");
    assert!(
        gate.price_versions().expect("list").is_empty(),
        "nothing imported"
    );

    let err = gate
        .import_catalog("{\"price_version\": 5}")
        .expect_err("refused");
    assert_eq!(err.code(), "invalid_catalog");
    assert!(gate.price_versions().expect("list").is_empty());
}

#[test]
fn the_listing_names_every_model_with_its_price() {
    let fx = fresh();
    let gate = &fx.gate;
    gate.import_catalog(RYNJER).expect("import");
    let listing = gate.models(None).expect("listing");
    assert_eq!(listing.price_version, "2026-02-02-v1");
    assert_eq!(listing.currency, "credits");
    let names: Vec<_> = listing.models.iter().map(|m| m.model.as_str()).collect();
    for model in [
        "google/nano-banana",
        "nano-banana-pro",
        "sora-2-pro",
        "V5",
        "V4",
        "xai/grok-imagine-video/text-to-video",
    ] {
        assert!(names.contains(&model), "{model} listed");
    }
}

/// Removes `prompt` from every model: a catalog as stored before the field.
fn without_prompt(catalog: &str) -> String {
    let mut doc: Value = serde_json::from_str(catalog).expect("catalog JSON");
    for model in doc["models"].as_array_mut().expect("models") {
        model.as_object_mut().expect("model").remove("prompt");
    }
    doc.to_string()
}

#[test]
fn needs_prompt_is_the_catalogs_prompt_field() {
    for text in [RYNJER, KIWIWHALE] {
        let catalog = parse_catalog(text).expect("shipped catalog");
        let stored = parse_catalog(&without_prompt(text))
            .expect("a catalog stored without `prompt` still loads");
        for (spec, old) in catalog.models.iter().zip(&stored.models) {
            assert!(spec.prompt.is_some(), "{} states `prompt`", spec.model);
            assert_eq!(old.prompt, None);
            assert_eq!(spec.needs_prompt(), old.needs_prompt(), "{}", spec.model);
        }
    }
    // The field decides, not the category.
    let mut doc: Value = serde_json::from_str(RYNJER).expect("catalog JSON");
    assert_eq!(doc["models"][0]["category"], "text-to-image");
    doc["models"][0]["prompt"] = "optional".into();
    let optional = parse_catalog(&doc.to_string()).expect("valid");
    assert_eq!(optional.models[0].prompt, Some(PromptRule::Optional));
    assert!(!optional.models[0].needs_prompt());
    doc["models"][0]["prompt"] = "maybe".into();
    let error = parse_catalog(&doc.to_string()).expect_err("refused");
    assert_eq!(error.path, "models[0].prompt");
    assert!(error.message.contains("unknown variant"), "{error}");
}
