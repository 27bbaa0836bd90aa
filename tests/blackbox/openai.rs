//! Black-box tests of the OpenAI-compatible surface of `creditgate serve`
//! on the fixture provider: the models list, image generation answered as
//! links and as base64, chat whole and streamed (SSE), `Idempotency-Key`
//! replays charged once, and errors in OpenAI's shape (a bad key, an empty
//! wallet, a wrong method); `ledger verify` holds after each.

use base64::Engine as _;
use creditgate_tests::{HttpResponse, Sandbox, Server};
use serde_json::{json, Value};

/// What the fixture's chat models answer.
const FIXTURE_REPLY: &str = include_str!("../../fixtures/media/reply.txt");

fn sandbox() -> Sandbox {
    Sandbox::new(env!("CARGO_BIN_EXE_creditgate"))
}

/// Fast polls so fixture jobs finish in well under a second.
const FAST: &[&str] = &["--poll-interval-ms", "20", "--workers", "2"];

fn start(sb: &Sandbox) -> (Server, String) {
    let server = sb.serve(FAST);
    let key = server.demo_key.clone().expect("first run prints a key");
    (server, key)
}

/// Stops `server`, then checks the ledger it leaves.
fn stop_and_verify(sb: &Sandbox, server: Server) {
    drop(server);
    let run = sb.run(&["ledger", "verify"]);
    assert_eq!(run.code, 0, "ledger verify: {}{}", run.stdout, run.stderr);
}

/// POSTs `body` to `path` with `key` and, if given, an `Idempotency-Key`.
fn post(
    server: &Server,
    path: &str,
    key: &str,
    idempotency: Option<&str>,
    body: &Value,
) -> HttpResponse {
    let headers: Vec<(&str, &str)> = idempotency
        .map(|key| ("Idempotency-Key", key))
        .into_iter()
        .collect();
    server.post_with_headers(path, key, &headers, &body.to_string())
}

/// Asserts an error in OpenAI's shape; its `error` object.
fn assert_openai_error(response: &HttpResponse, status: u16, kind: &str, code: &str) -> Value {
    let body = response.json();
    assert_eq!(response.status, status, "{body}");
    let error = &body["error"];
    assert_eq!(error["type"], kind, "{body}");
    assert_eq!(error["code"], code, "{body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(error.get("param").is_some(), "param is present: {body}");
    error.clone()
}

fn available(server: &Server, key: &str) -> String {
    server.get("/v1/credits/balance", key).json()["data"]["available"].to_string()
}

#[test]
fn models_are_listed_from_the_active_catalog_and_the_dialect_has_its_document() {
    let sb = sandbox();
    let (server, key) = start(&sb);
    let listed = server.get("/v1/models", &key);
    assert_eq!(listed.status, 200);
    let body = listed.json();
    assert_eq!(body["object"], "list");
    let data = body["data"].as_array().expect("data");
    let chat = data
        .iter()
        .find(|m| m["id"] == "gpt-4o-mini")
        .expect("a chat model");
    assert_eq!(chat["object"], "model");
    assert_eq!(chat["owned_by"], "creditgate");
    assert!(chat["created"].as_i64().is_some_and(|t| t > 0), "{chat}");
    assert!(data.iter().any(|m| m["id"] == "z-image"));
    // Rynjer's listing is untouched beside it.
    assert_eq!(server.get("/v1/models/list", &key).json()["code"], 0);
    let doc = server
        .request("GET", "/openai/openapi.json", None, None)
        .json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/v1/chat/completions"]["post"].is_object());
    assert_eq!(doc["servers"][0]["url"], server.base());
    let llms =
        String::from_utf8(server.request("GET", "/llms.txt", None, None).body).expect("utf-8");
    assert!(llms.contains("/v1/chat/completions"), "{llms}");
    stop_and_verify(&sb, server);
}

#[test]
fn images_are_answered_as_our_links_or_as_base64() {
    let sb = sandbox();
    let (server, key) = start(&sb);
    let body = json!({"model": "z-image", "prompt": "a lighthouse", "n": 1, "size": "1024x1024"});
    let linked = post(&server, "/v1/images/generations", &key, None, &body);
    assert_eq!(linked.status, 200, "{}", linked.json());
    let answer = linked.json();
    assert!(answer["created"].as_i64().is_some_and(|t| t > 0));
    let url = answer["data"][0]["url"].as_str().expect("url").to_owned();
    let path = url.strip_prefix(&server.base()).expect("our own link");
    assert!(path.starts_with("/v1/files/"), "{url}");
    let file = server.request("GET", path, None, None);
    assert_eq!(file.status, 200);
    assert!(!file.body.is_empty());

    let mut body = body;
    body["response_format"] = json!("b64_json");
    let inline = post(&server, "/v1/images/generations", &key, None, &body);
    assert_eq!(inline.status, 200, "{}", inline.json());
    let encoded = inline.json()["data"][0]["b64_json"]
        .as_str()
        .expect("b64_json")
        .to_owned();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("base64");
    assert_eq!(bytes, file.body, "the same fixture sample, inline");

    let refused = post(
        &server,
        "/v1/images/generations",
        &key,
        None,
        &json!({"model": "z-image", "prompt": "x", "response_format": "gif"}),
    );
    let error = assert_openai_error(&refused, 400, "invalid_request_error", "invalid_request");
    assert_eq!(error["param"], "response_format");
    let unknown = post(
        &server,
        "/v1/images/generations",
        &key,
        None,
        &json!({"model": "no-such-model", "prompt": "x"}),
    );
    assert_openai_error(&unknown, 400, "invalid_request_error", "unknown_model");
    stop_and_verify(&sb, server);
}

#[test]
fn chat_answers_the_fixture_reply_whole_and_streamed() {
    let sb = sandbox();
    let (server, key) = start(&sb);
    let body = json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        "max_tokens": 64,
    });
    let whole = post(&server, "/v1/chat/completions", &key, None, &body);
    assert_eq!(whole.status, 200, "{}", whole.json());
    let answer = whole.json();
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["model"], "gpt-4o-mini");
    assert!(answer["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("chatcmpl-")));
    let choice = &answer["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], FIXTURE_REPLY);
    for field in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        assert!(answer["usage"][field].is_u64(), "{answer}");
    }

    let mut body = body;
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let streamed = post(&server, "/v1/chat/completions", &key, None, &body);
    assert_eq!(streamed.status, 200);
    assert!(streamed
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/event-stream")));
    let text = String::from_utf8(streamed.body).expect("utf-8");
    let events: Vec<&str> = text
        .split("\n\n")
        .filter(|event| !event.is_empty())
        .map(|event| event.strip_prefix("data: ").expect("a data line"))
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"), "{text}");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|event| serde_json::from_str(event).expect("a JSON chunk"))
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, FIXTURE_REPLY);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "stop"));
    let last = chunks.last().expect("chunks");
    assert_eq!(last["choices"], json!([]), "the usage chunk comes last");
    assert!(last["usage"]["total_tokens"].is_u64());
    stop_and_verify(&sb, server);
}

#[test]
fn an_idempotency_key_replays_the_same_job_and_charges_once() {
    let sb = sandbox();
    let (server, key) = start(&sb);
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "once"}]});
    let before = available(&server, &key);
    let first = post(&server, "/v1/chat/completions", &key, Some("idem-1"), &body);
    assert_eq!(first.status, 200, "{}", first.json());
    let after_one = available(&server, &key);
    assert_ne!(before, after_one, "the first call is charged");
    let again = post(&server, "/v1/chat/completions", &key, Some("idem-1"), &body);
    assert_eq!(again.status, 200);
    assert_eq!(first.json()["id"], again.json()["id"], "the same job");
    assert_eq!(available(&server, &key), after_one, "charged once");
    // The key is the request id: the Rynjer poll finds the same job.
    let job = server.get("/v1/generate/idem-1", &key).json();
    assert_eq!(job["data"]["status"], "succeeded", "{job}");
    // Another request under the same key is a conflict, in OpenAI's shape.
    let other = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "twice"}]});
    let conflict = post(
        &server,
        "/v1/chat/completions",
        &key,
        Some("idem-1"),
        &other,
    );
    assert_openai_error(
        &conflict,
        409,
        "invalid_request_error",
        "idempotency_conflict",
    );
    // Without a key, each call is a new job.
    let (a, b) = (
        post(&server, "/v1/chat/completions", &key, None, &body).json(),
        post(&server, "/v1/chat/completions", &key, None, &body).json(),
    );
    assert_ne!(a["id"], b["id"]);
    stop_and_verify(&sb, server);
}

#[test]
fn refusals_are_in_openai_shape_with_the_status_table() {
    let sb = sandbox();
    let (server, key) = start(&sb);
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let bad = post(&server, "/v1/chat/completions", "cg_live_nope", None, &body);
    assert_openai_error(&bad, 401, "authentication_error", "unauthorized");
    let missing = server.request("GET", "/v1/models", None, None);
    assert_openai_error(&missing, 401, "authentication_error", "unauthorized");

    let poor = sb.account("poor");
    let poor_key = sb.ok(&["keys", "create", "--account", &poor, "--scope", "admin"])["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let empty = post(&server, "/v1/chat/completions", &poor_key, None, &body);
    assert_openai_error(&empty, 402, "insufficient_quota", "insufficient_credits");
    let image = json!({"model": "z-image", "prompt": "x"});
    let empty = post(&server, "/v1/images/generations", &poor_key, None, &image);
    assert_openai_error(&empty, 402, "insufficient_quota", "insufficient_credits");

    let no_messages = post(
        &server,
        "/v1/chat/completions",
        &key,
        None,
        &json!({"model": "gpt-4o"}),
    );
    let error = assert_openai_error(
        &no_messages,
        400,
        "invalid_request_error",
        "invalid_request",
    );
    assert_eq!(error["param"], "messages");
    // The images route runs only image models that need no input image,
    // and a chat's messages are bounded; nothing is charged for a refusal.
    let before = available(&server, &key);
    for (path, body, param) in [
        (
            "/v1/images/generations",
            json!({"model": "gpt-4o", "prompt": "a cat"}),
            "model",
        ),
        (
            "/v1/images/generations",
            json!({"model": "qwen/image-to-image", "prompt": "a cat"}),
            "model",
        ),
        (
            "/v1/images/generations",
            json!({"model": "z-image", "prompt": "a cat", "n": 0}),
            "n",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}],
                   "stream_options": "yes"}),
            "stream_options",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gpt-4o",
                   "messages": vec![json!({"role": "user", "content": "hi"}); 9]}),
            "messages",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "   "}]}),
            "messages",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "messages": [{"role": "user",
                   "content": [{"type": "image_url", "image_url": {"url": "http://x.test/a.png"}}]}]}),
            "messages",
        ),
    ] {
        let refused = post(&server, path, &key, None, &body);
        let error = assert_openai_error(&refused, 400, "invalid_request_error", "invalid_request");
        assert_eq!(error["param"], param, "{body}");
    }
    assert_eq!(available(&server, &key), before);
    let wrong_method = server.request("DELETE", "/v1/models", Some(&key), None);
    assert_openai_error(
        &wrong_method,
        405,
        "invalid_request_error",
        "method_not_allowed",
    );
    // Rynjer's routes keep their envelope.
    let rynjer = server.request("GET", "/v1/credits/balance", Some("cg_live_nope"), None);
    assert_eq!(rynjer.status, 401);
    assert_eq!(rynjer.json()["data"]["error"], "unauthorized");
    stop_and_verify(&sb, server);
}
