//! Black-box tests that the served contract matches the server: an
//! estimate needs no input images (an agent estimates before it uploads),
//! `HEAD` answers on every `GET` route, and `/agent/openapi.json` names the
//! live catalog's models and leaves out the routes that are off. The
//! exhaustive check is schemathesis against a real `serve`
//! (`.ci/schemathesis.sh`); these pin the pieces of it that were broken.

use creditgate_tests::Sandbox;
use serde_json::{json, Value};

fn sandbox() -> Sandbox {
    Sandbox::new(env!("CARGO_BIN_EXE_creditgate"))
}

#[test]
fn an_estimate_needs_no_input_images_but_a_job_does() {
    let sb = sandbox();
    let server = sb.serve(&["--poll-interval-ms", "20"]);
    let key = server.demo_key.clone().expect("first run prints a key");
    let image = "https://example.com/in.png";
    for model in ["fal-ai/ltx-2/image-to-video", "qwen/image-to-image"] {
        let before = server.post(
            "/v1/credits/estimate",
            &key,
            &json!({ "model": model, "prompt": "make it move" }),
        );
        let body = before.json();
        assert_eq!(before.status, 200, "{model}: {body}");
        assert_eq!(body["data"]["input_images"], json!(1), "{body}");
        let with_image = server
            .post(
                "/v1/credits/estimate",
                &key,
                &json!({ "model": model, "input_image_urls": [image] }),
            )
            .json();
        assert_eq!(
            body["data"]["credits"], with_image["data"]["credits"],
            "{model}: the price of the request with its image"
        );
        let refused = server.post(
            "/v1/generate",
            &key,
            &json!({ "request_id": format!("{model}-no-image"), "model": model, "prompt": "p" }),
        );
        let refusal = refused.json();
        assert_eq!(refused.status, 400, "{model}: {refusal}");
        assert_eq!(refusal["data"]["field"], json!("input_image_urls"));
        let accepted = server.post(
            "/v1/generate",
            &key,
            &json!({ "request_id": format!("{model}-image"), "model": model,
                     "prompt": "p", "image_urls": [image] }),
        );
        assert_eq!(accepted.status, 200, "{}", accepted.json());
        assert_eq!(
            accepted.json()["data"]["credits"],
            body["data"]["credits"],
            "charged what the estimate said"
        );
    }
    drop(server);
    let verify = sb.run(&["ledger", "verify"]);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
}

#[test]
fn head_answers_every_get_route_without_a_body() {
    let sb = sandbox();
    let server = sb.serve(&[]);
    let key = server.demo_key.clone().expect("first run prints a key");
    let doc = server
        .request("GET", "/agent/openapi.json", None, None)
        .json();
    let mut walked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        if item.get("get").is_none() {
            continue;
        }
        let concrete = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "x" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        let get = server.request("GET", &concrete, Some(&key), None);
        let head = server.request("HEAD", &concrete, Some(&key), None);
        assert_eq!(head.status, get.status, "HEAD {concrete}");
        assert_ne!(head.status, 405, "HEAD {concrete}");
        assert!(head.body.is_empty(), "HEAD {concrete} sent a body");
        assert_eq!(
            head.header("content-type"),
            get.header("content-type"),
            "HEAD {concrete}"
        );
        assert_eq!(
            head.header("content-length"),
            get.header("content-length"),
            "HEAD {concrete} announces what GET sends"
        );
        walked += 1;
    }
    assert!(walked >= 7, "every GET route walked ({walked})");
    let refused = server.request("DELETE", "/healthz", None, None);
    assert_eq!(refused.status, 405);
    assert_eq!(refused.header("allow"), Some("GET, HEAD"));
}

fn served_document(args: &[&str]) -> (Value, Value) {
    let sb = sandbox();
    let server = sb.serve(args);
    let key = server.demo_key.clone().expect("first run prints a key");
    let doc = server
        .request("GET", "/agent/openapi.json", None, None)
        .json();
    let models = server.get("/v1/models/list", &key).json();
    (doc, models)
}

#[test]
fn the_served_document_names_the_live_models_and_only_routes_that_are_on() {
    let (doc, listing) = served_document(&[]);
    let listed: Vec<&Value> = listing["data"]["models"]
        .as_array()
        .expect("models")
        .iter()
        .map(|m| &m["model"])
        .collect();
    for schema in ["GenerateRequest", "EstimateRequest"] {
        let documented: Vec<&Value> = doc["components"]["schemas"][schema]["oneOf"]
            .as_array()
            .unwrap_or_else(|| panic!("{schema} has one schema per model"))
            .iter()
            .map(|branch| &branch["properties"]["model"]["const"])
            .collect();
        assert_eq!(documented, listed, "{schema}");
    }
    assert_eq!(
        doc["paths"]["/v1/models/list"]["get"]["parameters"][0]["schema"]["enum"],
        json!([listing["data"]["price_version"]])
    );
    let links = &doc["paths"]["/v1/generate"]["post"]["responses"]["200"]["links"];
    assert_eq!(links["poll"]["operationId"], json!("poll"));
    assert_eq!(links["cancel"]["operationId"], json!("cancel"));
    assert!(
        doc["paths"].get("/auth/moltbook/exchange").is_none(),
        "the Moltbook exchange is off, so it is not documented"
    );
    let (on, _) = served_document(&["--moltbook-verify-url", "http://127.0.0.1:9/verify"]);
    assert!(on["paths"]["/auth/moltbook/exchange"]["post"].is_object());
}
