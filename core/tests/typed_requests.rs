//! A dialect that decodes its own wire language hands the core a typed
//! request: it is checked as strictly as Rynjer's JSON, and a request id
//! means the same job whichever dialect carried it (one fingerprint).

mod common;

use creditgate::pricing::RequestedUnits;
use creditgate::request::GenerateRequest;
use rust_decimal::Decimal;
use serde_json::json;

#[test]
fn a_typed_request_and_its_rynjer_body_are_one_job_charged_once() {
    let fx = common::open(common::Setup {
        catalog: Some(common::RYNJER),
        ..common::Setup::default()
    });
    let gate = &fx.gate;
    let account = common::account(gate, "agent", Decimal::from(100));
    let (_, key) = gate
        .create_api_key(&account, "k", &["image".to_owned()], None)
        .expect("key");
    let principal = gate.authenticate(&key).expect("principal");
    let typed = GenerateRequest {
        request_id: Some("same-1".into()),
        model: "z-image".into(),
        product: None,
        prompt: Some("a cat".into()),
        units: RequestedUnits {
            count: Some(2),
            ..RequestedUnits::default()
        },
        input_image_urls: Vec::new(),
        price_version: None,
    };
    let first = gate
        .submit_request_for(&principal, typed.clone())
        .expect("typed");
    assert!(!first.replayed);
    let body = json!({"request_id": "same-1", "model": "z-image", "prompt": "a cat", "count": 2});
    let again = gate.submit_for(&principal, &body).expect("rynjer");
    assert!(again.replayed, "one request id, one job, whichever dialect");
    assert_eq!(again.job.id, first.job.id);
    let other = json!({"request_id": "same-1", "model": "z-image", "prompt": "a dog", "count": 2});
    assert_eq!(
        common::code(gate.submit_for(&principal, &other)),
        "idempotency_conflict"
    );
    assert_eq!(gate.balance(&account).expect("balance").pending, 40_000_000);

    let refused = |request: GenerateRequest, field: &str| {
        let err = gate
            .submit_request_for(&principal, request)
            .expect_err("refused");
        assert_eq!(err.code(), "invalid_request", "{err}");
        assert!(err.to_string().contains(field), "{field}: {err}");
    };
    let base = GenerateRequest {
        request_id: Some("bad".into()),
        ..typed
    };
    refused(
        GenerateRequest {
            units: RequestedUnits {
                count: Some(0),
                ..RequestedUnits::default()
            },
            ..base.clone()
        },
        "units.count",
    );
    refused(
        GenerateRequest {
            input_image_urls: vec!["file:///etc/passwd".into()],
            ..base.clone()
        },
        "input_image_urls",
    );
    refused(
        GenerateRequest {
            prompt: Some("x".repeat(creditgate::request::PROMPT_CHARS_MAX + 1)),
            ..base.clone()
        },
        "prompt",
    );
    refused(
        GenerateRequest {
            model: " ".into(),
            ..base
        },
        "model",
    );
    common::assert_verified(gate);
}
