//! Black-box tests of `creditgate prices`: import, list, activate, retire
//! and estimate through the real binary, with `--json` shapes and errors.

use creditgate_tests::{text_at, Sandbox};
use serde_json::json;

fn sandbox() -> Sandbox {
    Sandbox::new(env!("CARGO_BIN_EXE_creditgate"))
}

fn catalog(name: &str) -> String {
    format!("{}/../fixtures/catalogs/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn import_list_activate_and_estimate() {
    let sb = sandbox();
    let imported = sb.ok(&["prices", "import", &catalog("rynjer.json")]);
    assert_eq!(imported["id"], "2026-02-02-v1");
    assert_eq!(imported["active"], json!(true));
    let kiwi = sb.ok(&["prices", "import", &catalog("kiwiwhale.json")]);
    assert_eq!(kiwi["active"], json!(false));

    let listed = sb.ok(&["prices", "list"]);
    let active: Vec<_> = listed["price_versions"]
        .as_array()
        .expect("versions")
        .iter()
        .filter(|v| v["active"] == json!(true))
        .map(|v| v["price_version"].clone())
        .collect();
    assert_eq!(active, [json!("2026-02-02-v1")]);

    let estimate = sb.ok(&["prices", "estimate", r#"{"product":"image","model":"nano-banana-pro","units":{"count":1,"resolution":"4K"},"price_version":"2026-02-02-v1"}"#]);
    assert_eq!(estimate["credits"].to_string(), "40");
    assert_eq!(estimate["price_version"], "2026-02-02-v1");
    assert!(estimate["breakdown"]
        .as_array()
        .is_some_and(|b| b.len() >= 2));

    // KiwiWhale's fractional prices stay exact through the CLI.
    let kiwi_version = text_at(&kiwi, "/id");
    sb.ok(&["prices", "activate", &kiwi_version]);
    let body_path = sb.dir().join("body.json");
    std::fs::write(&body_path, r#"{"model":"z-image"}"#).expect("write body");
    let estimate = sb.ok(&["prices", "estimate", &format!("@{}", body_path.display())]);
    assert_eq!(estimate["price_version"], json!(kiwi_version));
    assert_eq!(estimate["credits"].to_string(), "0.05");
}

#[test]
fn errors_name_what_is_wrong() {
    let sb = sandbox();
    sb.account("no catalog yet");
    let missing = sb.json(&["prices", "estimate", r#"{"model":"veo3"}"#]);
    assert_eq!(
        (missing.code, missing.json["error"].clone()),
        (1, json!("no_price_catalog"))
    );

    sb.ok(&["prices", "import", &catalog("rynjer.json")]);
    let unknown = sb.json(&["prices", "estimate", r#"{"model":"nano-banana-pr"}"#]);
    assert_eq!(unknown.json["error"], "unknown_model");
    assert!(unknown.json["close_matches"]
        .as_array()
        .is_some_and(|m| m.contains(&json!("nano-banana-pro"))));

    let count = sb.json(&[
        "prices",
        "estimate",
        r#"{"model":"nano-banana-pro","count":3}"#,
    ]);
    assert_eq!(count.json["error"], "invalid_option");
    assert_eq!(count.json["allowed"], json!(["1", "2", "4", "8"]));

    let version = sb.json(&["prices", "activate", "nope"]);
    assert_eq!(version.json["error"], "unknown_price_version");
    assert_eq!(version.json["active_price_version"], "2026-02-02-v1");

    let broken = sb.dir().join("broken.json");
    std::fs::write(
        &broken,
        r#"{"price_version":"x1","currency":"credits","models":[{"model":"m"}]}"#,
    )
    .expect("write");
    let refused = sb.json(&["prices", "import", &broken.display().to_string()]);
    assert_eq!(refused.json["error"], "invalid_catalog");
    assert!(
        refused.json["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("models[0]")),
        "{refused:?}"
    );
    assert_eq!(sb.count(&["prices", "list"], "price_versions"), Some(1));

    let bad_json = sb.json(&["prices", "estimate", "{not json"]);
    assert_eq!(
        (
            bad_json.json["error"].clone(),
            bad_json.json["field"].clone()
        ),
        (json!("invalid_request"), json!("body"))
    );
}
