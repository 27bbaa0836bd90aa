//! Machine-readable docs for agents: the OpenAPI 3.1 document and
//! llms.txt, both naming this instance's base URL.
//!
//! The document is `openapi.json` beside this file (checked against the
//! route table by a test) completed at serve time from what this instance
//! really accepts: the generate and estimate bodies become one schema per
//! model of every honoured price version (its options' allowed values, its
//! input images, whether it needs a prompt), `price_version` an enum of the
//! honoured versions, and routes that are off (the Moltbook exchange when no
//! verifier is configured) are left out. The document is exactly as strict
//! as the server: CI fuzzes a real `serve` against it with schemathesis
//! (`.ci/schemathesis.sh`).

use std::sync::Arc;

use creditgate::pricing::{Catalog, ModelSpec, OptionName, OptionValue};
use creditgate::request::{INPUT_URLS_MAX, PROMPT_CHARS_MAX, URL_CHARS_MAX};
use serde_json::{json, Map, Value};

use super::dialects::shared::{
    CHAT_CONTENT_CHARS_MAX, CHAT_MESSAGES_MAX, CHAT_PARTS_MAX, CHAT_PART_CHARS_MAX,
    CHAT_ROLE_CHARS_MAX,
};

const OPENAPI: &str = include_str!("openapi.json");
const OPENAI_OPENAPI: &str = include_str!("openai_openapi.json");
const AGENTNAME_OPENAPI: &str = include_str!("agentname_openapi.json");
const KIWIWHALE_OPENAPI: &str = include_str!("kiwiwhale_openapi.json");

/// The path of the Moltbook exchange, documented only when it is on.
pub const MOLTBOOK_EXCHANGE_PATH: &str = "/auth/moltbook/exchange";

/// What the served document depends on at serve time.
#[derive(Debug, Clone, Default)]
pub struct Live {
    /// The catalogs a request may be priced with, each with whether it is
    /// the active one (`Gate::honoured_catalogs`).
    pub catalogs: Vec<(Arc<Catalog>, bool)>,
    /// Whether the Moltbook exchange is configured.
    pub moltbook: bool,
}

/// The OpenAPI document of this instance: `base_url` as its server, the
/// request schemas of `live`'s catalogs, and only the routes that are on.
pub fn openapi(base_url: &str, live: &Live) -> Value {
    let mut doc: Value = serde_json::from_str(OPENAPI).unwrap_or_else(|_| json!({}));
    doc["servers"] = json!([{ "url": base_url }]);
    if !live.moltbook {
        if let Some(paths) = doc["paths"].as_object_mut() {
            paths.remove(MOLTBOOK_EXCHANGE_PATH);
        }
        if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
            for unused in [
                "MoltbookExchangeRequest",
                "MoltbookAccessGrant",
                "AgentNotBoundEnvelope",
            ] {
                schemas.remove(unused);
            }
        }
    }
    if !live.catalogs.is_empty() {
        let schemas = &mut doc["components"]["schemas"];
        schemas["GenerateRequest"] = request_schema(&live.catalogs, Purpose::Generate);
        schemas["EstimateRequest"] = request_schema(&live.catalogs, Purpose::Estimate);
        let versions: Vec<&str> = live
            .catalogs
            .iter()
            .map(|(catalog, _)| catalog.price_version.as_str())
            .collect();
        if let Some(parameters) =
            doc["paths"]["/v1/models/list"]["get"]["parameters"].as_array_mut()
        {
            for parameter in parameters {
                if parameter["name"] == "price_version" {
                    parameter["schema"] = json!({ "type": "string", "enum": versions });
                }
            }
        }
    }
    doc
}

/// The OpenAI dialect's OpenAPI document (`openai_openapi.json` beside
/// this file, checked against that dialect's routes by a test), with
/// `base_url` as its server and, given the active catalog, its request
/// bodies completed from it: one images body per image model this route
/// can run (no input images), with its counts, and the chat models.
pub fn openai_openapi(base_url: &str, catalog: Option<&Catalog>) -> Value {
    let mut doc = static_document(OPENAI_OPENAPI, base_url);
    let Some(catalog) = catalog else {
        return doc;
    };
    let schemas = &mut doc["components"]["schemas"];
    let branches: Vec<Value> = catalog
        .models
        .iter()
        .filter(|spec| spec.product == "image" && spec.input_images.min == 0)
        .map(openai_image_branch)
        .collect();
    schemas["ImageRequest"] = json!({
        "description": "One schema per image model of the active catalog that needs no \
                        input image (GET /v1/models).",
        "oneOf": branches,
    });
    let chat_models: Vec<&str> = catalog
        .models
        .iter()
        .filter(|spec| spec.product == "chat")
        .map(|spec| spec.model.as_str())
        .collect();
    let chat = &mut schemas["ChatRequest"]["properties"];
    chat["model"] = json!({ "enum": chat_models });
    chat["messages"] = messages_schema(true);
    doc
}

/// The OpenAI images body of one image model: `n` one of its counts (or
/// 1 alone without a count option), `size` free (used as the resolution
/// only when the model offers it).
fn openai_image_branch(spec: &ModelSpec) -> Value {
    let counts: Vec<Value> = match spec.options.get(&OptionName::Count) {
        Some(option) => option
            .allowed
            .iter()
            .filter_map(|value| match value {
                OptionValue::Int(n) if *n > 0 => Some(json!(n)),
                _ => None,
            })
            .chain([Value::Null])
            .collect(),
        None => vec![json!(1), Value::Null],
    };
    json!({
        "title": spec.model,
        "type": "object",
        "required": ["model", "prompt"],
        "properties": {
            "model": { "const": spec.model },
            "prompt": prompt_schema(true),
            "n": { "enum": counts },
            "size": { "type": ["string", "null"] },
            "response_format": { "enum": ["url", "b64_json", null] },
        },
    })
}

/// A dialect's static document (a `<dialect>_openapi.json` beside this
/// file, checked against that dialect's routes by a test), with `base_url`
/// as its server.
fn static_document(text: &str, base_url: &str) -> Value {
    let mut doc: Value = serde_json::from_str(text).unwrap_or_else(|_| json!({}));
    doc["servers"] = json!([{ "url": base_url }]);
    doc
}

/// Which body a request schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// `POST /v1/generate`: `request_id` required, a prompt where the model
    /// needs one, and the model's input images.
    Generate,
    /// `POST /v1/credits/estimate`: `request_id` and `prompt` optional, and
    /// input images may follow (none given prices the fewest).
    Estimate,
}

/// A caller-chosen id: 1 to 128 printable ASCII characters, no spaces
/// (`creditgate::ids::validate_caller_id`).
const CALLER_ID_PATTERN: &str = "^[!-~]{1,128}$";

/// Unicode white space (what Rust's `char::is_whitespace` and `str::trim`
/// know), as the inside of a regular expression class. Spelled out, since
/// `\s` differs between regex dialects.
const WHITE_SPACE_CLASS: &str =
    "\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";

/// The request body schema: one branch per model of every honoured price
/// version (so a value one model refuses is refused by its branch), and the
/// rule that a shortcut and its long form are not both given.
fn request_schema(catalogs: &[(Arc<Catalog>, bool)], purpose: Purpose) -> Value {
    let branches: Vec<Value> = catalogs
        .iter()
        .flat_map(|(catalog, active)| {
            catalog
                .models
                .iter()
                .map(move |spec| model_branch(catalog, spec, *active, purpose))
        })
        .collect();
    let mut not_both: Vec<Value> = OptionName::ALL
        .iter()
        .map(|name| {
            let name = name.as_str();
            json!({ "not": {
                "required": [name, "units"],
                "properties": {
                    name: { "not": { "type": "null" } },
                    "units": {
                        "type": "object",
                        "required": [name],
                        "properties": { name: { "not": { "type": "null" } } }
                    }
                }
            }})
        })
        .collect();
    not_both.push(json!({ "not": {
        "required": ["image_urls", "input_image_urls"],
        "properties": {
            "image_urls": { "type": "array" },
            "input_image_urls": { "type": "array" }
        }
    }}));
    let description = match purpose {
        Purpose::Generate => {
            "One schema per model of this instance's honoured price versions (GET \
             /v1/models/list). Top-level count, resolution, duration and aspect_ratio are \
             shortcuts for units.*, image_urls for input_image_urls: give each one way, not \
             both. product is inferred from the model when omitted; null is the same as \
             leaving a member out. The same request_id with the same request returns the same \
             job and charges nothing more; with a different request it is 409 \
             idempotency_conflict."
        }
        Purpose::Estimate => {
            "The body of a generate request; request_id and prompt are optional, and input \
             images may follow: without input_image_urls the price is that of the fewest \
             input images the model takes (the generate request itself must carry them)."
        }
    };
    let mut schema = json!({
        "type": "object",
        "description": description,
        "oneOf": branches,
        "allOf": not_both,
    });
    if let Some(example) = example(catalogs, purpose) {
        schema["examples"] = json!([example]);
    }
    schema
}

/// A request that works as it stands: the first model of the active
/// catalog that takes no input image, with its defaults.
fn example(catalogs: &[(Arc<Catalog>, bool)], purpose: Purpose) -> Option<Value> {
    let (catalog, _) = catalogs.iter().find(|(_, active)| *active)?;
    let spec = catalog.models.iter().find(|m| m.input_images.min == 0)?;
    Some(match purpose {
        Purpose::Generate => json!({
            "request_id": "example-1",
            "model": spec.model,
            "prompt": "a lighthouse at dawn",
        }),
        Purpose::Estimate => json!({ "model": spec.model }),
    })
}

/// The schema of a request for one model of one price version.
fn model_branch(catalog: &Catalog, spec: &ModelSpec, active: bool, purpose: Purpose) -> Value {
    let mut properties = Map::new();
    let mut required = vec![json!("model")];
    let (id_type, needs_id) = match purpose {
        Purpose::Generate => (json!("string"), true),
        Purpose::Estimate => (json!(["string", "null"]), false),
    };
    properties.insert(
        "request_id".into(),
        json!({ "type": id_type, "pattern": CALLER_ID_PATTERN }),
    );
    if needs_id {
        required.push(json!("request_id"));
    }
    properties.insert("model".into(), json!({ "const": spec.model }));
    properties.insert(
        "product".into(),
        json!({ "enum": [spec.product, null], "description": "Inferred when omitted." }),
    );
    let needs_prompt = purpose == Purpose::Generate && spec.needs_prompt();
    properties.insert("prompt".into(), prompt_schema(needs_prompt));
    if needs_prompt {
        required.push(json!("prompt"));
    }
    let units = option_schemas(spec);
    for (name, schema) in &units {
        properties.insert(name.clone(), schema.clone());
    }
    properties.insert(
        "units".into(),
        json!({ "type": ["object", "null"], "additionalProperties": false, "properties": units }),
    );
    let images = spec.input_images;
    let mut list = image_list_schema(spec);
    if purpose == Purpose::Estimate && images.min >= 2 {
        list["anyOf"] = json!([{ "maxItems": 0 }, { "minItems": images.min }]);
    }
    properties.insert("input_image_urls".into(), list.clone());
    properties.insert("image_urls".into(), list);
    let version = if active {
        json!({ "enum": [catalog.price_version, null] })
    } else {
        required.push(json!("price_version"));
        json!({ "const": catalog.price_version })
    };
    properties.insert("price_version".into(), version);
    let mut branch = json!({
        "title": format!("{} ({})", spec.model, catalog.price_version),
        "type": "object",
        "additionalProperties": false,
        "required": required,
        "properties": properties,
    });
    if purpose == Purpose::Generate && images.min >= 1 {
        let given = |field: &str| {
            json!({
                "required": [field],
                "properties": { field: { "type": "array", "minItems": images.min } }
            })
        };
        branch["anyOf"] = json!([given("input_image_urls"), given("image_urls")]);
    }
    branch
}

/// A prompt: required, with something besides white space, or optional.
fn prompt_schema(required: bool) -> Value {
    if required {
        json!({
            "type": "string",
            "maxLength": PROMPT_CHARS_MAX,
            "pattern": format!("[^{WHITE_SPACE_CLASS}]"),
        })
    } else {
        json!({ "type": ["string", "null"], "maxLength": PROMPT_CHARS_MAX })
    }
}

/// Each option a request may set, by name: the model's allowed values (or
/// null), or null alone for an option the model does not have.
fn option_schemas(spec: &ModelSpec) -> Map<String, Value> {
    OptionName::ALL
        .iter()
        .map(|name| {
            let schema = match spec.options.get(name) {
                Some(option) => {
                    let mut allowed: Vec<Value> = option
                        .allowed
                        .iter()
                        .map(|value| match value {
                            OptionValue::Int(n) => json!(n),
                            OptionValue::Text(text) => json!(text),
                        })
                        .collect();
                    allowed.push(Value::Null);
                    json!({ "enum": allowed })
                }
                None => {
                    json!({ "type": "null", "description": "This model has no such option." })
                }
            };
            (name.as_str().to_owned(), schema)
        })
        .collect()
}

/// A model's list of input image URLs (or null), at most as many as it
/// takes.
fn image_list_schema(spec: &ModelSpec) -> Value {
    json!({
        "type": ["array", "null"],
        "maxItems": (spec.input_images.max as usize).min(INPUT_URLS_MAX),
        "items": {
            "type": "string",
            "maxLength": URL_CHARS_MAX,
            "pattern": format!("^https?://[^{WHITE_SPACE_CLASS}]*$"),
        },
    })
}

/// A non-blank string of at most `max` characters.
fn non_blank(max: usize) -> Value {
    json!({ "type": "string", "minLength": 1, "maxLength": max,
            "pattern": format!("[^{WHITE_SPACE_CLASS}]") })
}

/// A chat's `messages`, as `dialects::shared::messages_prompt` takes them:
/// string contents, and with `parts` OpenAI's arrays of text parts too.
fn messages_schema(parts: bool) -> Value {
    let string = non_blank(CHAT_CONTENT_CHARS_MAX);
    let content = if parts {
        json!({ "oneOf": [string, {
            "type": "array",
            "minItems": 1,
            "maxItems": CHAT_PARTS_MAX,
            "items": {
                "type": "object",
                "required": ["type", "text"],
                "properties": {
                    "type": { "const": "text" },
                    "text": non_blank(CHAT_PART_CHARS_MAX),
                },
            },
        }] })
    } else {
        string
    };
    json!({
        "type": "array",
        "minItems": 1,
        "maxItems": CHAT_MESSAGES_MAX,
        "items": {
            "type": "object",
            "required": ["role", "content"],
            "properties": {
                "role": non_blank(CHAT_ROLE_CHARS_MAX),
                "content": content,
            },
        },
    })
}

/// The AgentName document of this instance: its static part with the
/// generate body completed from the default image and video models
/// (`defaults`, by product): each `type` with the aspect ratios and
/// durations its model allows.
pub fn agentname_openapi(base_url: &str, defaults: &[(&str, ModelSpec)]) -> Value {
    let mut doc = static_document(AGENTNAME_OPENAPI, base_url);
    let branches: Vec<Value> = defaults
        .iter()
        .filter(|(product, _)| matches!(*product, "image" | "video"))
        .map(|(product, spec)| {
            let options = option_schemas(spec);
            let duration = match *product {
                "video" => options["duration"].clone(),
                _ => json!({ "type": "null", "description": "Videos only." }),
            };
            json!({
                "title": format!("{product} ({})", spec.model),
                "type": "object",
                "additionalProperties": false,
                "required": ["prompt", "type"],
                "properties": {
                    "prompt": prompt_schema(true),
                    "type": { "const": product },
                    "aspect_ratio": options["aspect_ratio"],
                    "duration": duration,
                },
            })
        })
        .collect();
    let schemas = &mut doc["components"]["schemas"];
    let examples = schemas["GenerateRequest"]["examples"].take();
    schemas["GenerateRequest"] = json!({
        "description": "One schema per product (image, video), each with the options of the \
                        operator's default model for it.",
        "oneOf": branches,
    });
    if branches_allow_example(&schemas["GenerateRequest"], &examples) {
        schemas["GenerateRequest"]["examples"] = examples;
    }
    schemas["ChatRequest"]["properties"]["message"] = prompt_schema(true);
    doc
}

/// Whether the static example still fits the live branches (an image
/// model without `16:9` would make it a lie).
fn branches_allow_example(schema: &Value, examples: &Value) -> bool {
    let Some(example) = examples.get(0) else {
        return false;
    };
    schema["oneOf"].as_array().is_some_and(|branches| {
        branches.iter().any(|branch| {
            branch["properties"]["type"]["const"] == example["type"]
                && branch["properties"]["aspect_ratio"]["enum"]
                    .as_array()
                    .is_some_and(|allowed| allowed.contains(&example["aspect_ratio"]))
        })
    })
}

/// The member of a KiwiWhale generate body that carries a model's prompt:
/// the first of `messages`, `text` and `query` its input schema names,
/// else `prompt`.
pub fn kiwiwhale_prompt_member(spec: &ModelSpec) -> &'static str {
    ["messages", "text", "query"]
        .into_iter()
        .find(|name| {
            spec.input_schema
                .get("properties")
                .and_then(|properties| properties.get(*name))
                .is_some()
        })
        .unwrap_or("prompt")
}

/// The KiwiWhale document of this instance: its static part with the
/// generate body completed from the active catalog, one schema per model.
pub fn kiwiwhale_openapi(base_url: &str, catalog: Option<&Catalog>) -> Value {
    let mut doc = static_document(KIWIWHALE_OPENAPI, base_url);
    let Some(catalog) = catalog else {
        return doc;
    };
    let branches: Vec<Value> = catalog.models.iter().map(kiwiwhale_branch).collect();
    let schemas = &mut doc["components"]["schemas"];
    let examples = schemas["GenerateRequest"]["examples"].take();
    let fits = catalog.models.iter().any(|spec| {
        spec.model == examples[0]["model"] && kiwiwhale_prompt_member(spec) == "prompt"
    });
    schemas["GenerateRequest"] = json!({
        "description": "One schema per model of the active catalog (GET /api/v1/models.php).",
        "oneOf": branches,
    });
    if fits {
        schemas["GenerateRequest"]["examples"] = examples;
    }
    doc
}

/// The KiwiWhale generate body of one model.
fn kiwiwhale_branch(spec: &ModelSpec) -> Value {
    let member = kiwiwhale_prompt_member(spec);
    let mut properties = option_schemas(spec);
    properties.insert("model".into(), json!({ "const": spec.model }));
    properties.insert(
        "request_id".into(),
        json!({ "type": ["string", "null"], "pattern": CALLER_ID_PATTERN }),
    );
    let mut required = vec![json!("model")];
    if member == "messages" {
        properties.insert(member.into(), messages_schema(false));
    } else {
        properties.insert(member.into(), prompt_schema(spec.needs_prompt()));
    }
    if spec.needs_prompt() {
        required.push(json!(member));
    }
    let images = spec.input_images;
    let mut list = image_list_schema(spec);
    if images.min >= 1 {
        list = json!({ "type": "array", "minItems": images.min,
                       "maxItems": list["maxItems"], "items": list["items"] });
        required.push(json!("input_image_urls"));
    }
    properties.insert("input_image_urls".into(), list);
    json!({
        "title": spec.model,
        "type": "object",
        "additionalProperties": false,
        "required": required,
        "properties": properties,
    })
}

/// The agent quickstart for this instance.
pub fn llms_txt(
    base_url: &str,
    price_version: Option<&str>,
    defaults: &[(&str, String)],
    self_registration: bool,
) -> String {
    let version = price_version.unwrap_or("(no catalog imported yet)");
    let defaults: String = defaults
        .iter()
        .map(|(product, model)| format!("  - {product}: {model}\n"))
        .collect();
    let registration = if self_registration {
        "on: an agent may register itself (rate-limited per address)"
    } else {
        "off on this server (403 not_configured): ask the operator for a key"
    };
    format!(
        r#"# creditgate

> A credits gateway for AI agents that generate media (images, video, music,
> chat). You hold prepaid credits; a job's price is held when you submit it
> and charged exactly once, only if it succeeds.

Base URL: {base_url}
OpenAPI 3.1: {base_url}/agent/openapi.json
Active price version: {version}

## Authenticate

Send `Authorization: Bearer <key>` on every /v1 call. A key is an API key
from the operator (`cg_live_...`), an agent key (`cg_agent_...`), or a
15-minute access token (`cg_at_...`) from POST /api/v1/agents/auth/token
or POST /auth/moltbook/exchange.
Keys carry scopes: a product (`image`, `video`, `music`, `chat`, ...) or
`admin`. A key without the product's scope gets 403 `forbidden`.

## The flow

1. GET {base_url}/v1/models/list             models, prices, options
2. POST {base_url}/v1/credits/estimate       {{"model": "nano-banana-pro", "units": {{"count": 1, "resolution": "4K"}}}}
3. POST {base_url}/v1/generate               {{"request_id": "<your uuid>", "model": "nano-banana-pro", "prompt": "..."}}
4. GET {base_url}/v1/generate/<request_id>   until status is succeeded, failed, canceled or expired
5. Fetch data.outputs[i].url (each with its mime).

Example:

    curl -s {base_url}/v1/generate \
      -H "Authorization: Bearer $CREDITGATE_KEY" -H "Content-Type: application/json" \
      -d '{{"request_id":"demo-001","model":"nano-banana-pro","prompt":"a lighthouse at dawn"}}'

Shortcuts: top-level count, resolution, duration and aspect_ratio go into
units; image_urls into input_image_urls (give each one way, not both);
product may be omitted. /agent/openapi.json has one request schema per
model with its allowed values. Estimate before you upload: an estimate
without input images prices the fewest the model takes; generate needs them.
Idempotency: reuse a request_id to retry safely. The same request returns
the same job and charges nothing more; a different request under the same
request_id is 409 `idempotency_conflict`. A refused submit records nothing,
so retry the same request_id once you fixed the cause (after a top-up).
Cancel: POST {base_url}/v1/generate/<request_id>/cancel releases the hold.
Pin prices with "price_version"; the charge never changes after the fact.

## Credits in

Redeem a code from the operator: POST {base_url}/v1/credits/redeem with
{{"code": "cg_code_..."}}; data.credits is what it granted and data.balance
your wallet after it. A code has a number of uses and may be once per
account or expire: code_invalid (404), code_used_up or code_already_redeemed
(409), code_expired (410) move nothing.

Buy credits by card, where the operator connected Stripe: POST
{base_url}/v1/credits/topup with {{"credits": 25}} answers data.checkout_url
(pay there) and data.topup_id; nothing is credited until Stripe confirms
the payment. Poll GET {base_url}/v1/credits/topup/<topup_id> until its
status is credited. Without Stripe the answer is 403 not_configured.

Pay with a crypto wallet, where the operator configured x402 (version 2):
a 402 insufficient_credits then carries a PAYMENT-REQUIRED header (base64
JSON; accepts[0] is the offer: scheme exact, network, amount in atomic
units, asset, payTo). Sign it and send the same request again with
PAYMENT-SIGNATURE: it is settled, credited and the request runs; the answer
carries PAYMENT-RESPONSE (the transaction). POST {base_url}/v1/credits/x402
with {{"credits": 5}} buys credits outright the same way. A payment is
credited once: sending the same signature again is safe. A 502 while
settling means the answer was lost: send the same signature again.

## Answers

Every /v1 answer is {{"code", "message", "data"}}. code is 0 on success and
the HTTP status on error; data.error is the machine code:
400 invalid_request (data.field), invalid_amount, unknown_model (data.close_matches),
invalid_option (data.allowed), unknown_price_version (data.active_price_version),
invalid_catalog (data.path), capture_exceeds_hold, refund_exceeds_charge,
wrong_transfer_kind, registration_expired, provider_not_configured;
401 unauthorized, token_expired, invalid_signature, stale_timestamp, nonce_reused,
refresh_token_reused, identity_refused (data.reason), webhook_unverified;
402 insufficient_credits (data.required, data.available, data.suggestion; with x402
configured, a PAYMENT-REQUIRED header offers the shortfall), payment_required (pay
with x402 first: the PAYMENT-REQUIRED header), payment_invalid (a PAYMENT-SIGNATURE
was refused; nothing was credited), payment_declined (the saved card was declined;
nothing was charged);
403 forbidden (data.scope), agent_not_bound (data.agent_id), not_configured,
csrf_token_invalid (a console form without its session's token);
400 bad_request (the request line or a header is malformed or not ASCII);
404 not_found, code_invalid (no such redemption code, or it was revoked);
405 method_not_allowed; 408 request_timeout;
410 output_expired (an output link past its retention period: the file is removed),
code_expired (the redemption code passed its expiry);
409 idempotency_conflict, invalid_transition, exists_with_different_fields (data.field),
hold_already_resolved, hold_expired, price_version_conflict, agent_already_bound,
balance_limit, code_used_up (every use of the code is taken), code_already_redeemed
(this account redeemed this once-per-account code already), payment_method_not_ready
(no card is saved for charges without you: pay one card top-up first);
413 payload_too_large (data.limit_bytes); 414 uri_too_long; 417 expectation_failed;
431 header_too_large (a header line over 8 KiB or headers over 32 KiB);
429 rate_limited (data.retry_after seconds, and a Retry-After header),
plan_limit_reached (your plan's daily cap on this product is used up: data.plan,
data.product, data.limit, data.used, data.reset_at, the next UTC midnight; a
Retry-After header in seconds until then), spend_cap_reached (this key's daily or
monthly spend cap, set by its owner, would be passed: data.period, data.limit and
data.spent in credits, data.reset_at; a Retry-After header; a job that fails gives
its share back);
500 internal, storage_error, schema_too_new (the server's fault; retry later);
502 upstream_unavailable (retry later);
503 no_price_catalog, provider_unavailable, storage_unavailable,
workers_failing, server_busy (too many open connections; Retry-After) (retry later);
507 insufficient_storage (the server's disk is full: nothing of the request
was kept, work already accepted is safe; retry later).
Credits are exact decimal numbers (0.0165).
Authenticated answers carry X-RateLimit-Limit, X-RateLimit-Remaining and
X-RateLimit-Reset (Unix seconds): on POST /v1/generate your plan's daily cap
on the model's product (jobs per UTC day) when it has one, otherwise this
credential's rate limit.

## OpenAI-compatible surface

Code written for OpenAI works with base URL {base_url}/v1 and your key as
the API key (`Authorization: Bearer <key>`); same credits, same prices.
OpenAPI 3.1: {base_url}/openai/openapi.json

- `GET /v1/models`: the models of the active catalog.
- `POST /v1/images/generations` `{{model, prompt, n, size, response_format}}`
  (`url`: our /v1/files links; `b64_json`: the bytes). `size` is used as the
  model's resolution when the model offers that value, else ignored.
- `POST /v1/chat/completions` `{{model, messages, max_tokens, stream}}`: the
  messages become the prompt (a lone user message is its content; otherwise
  one `role: content` paragraph each). `stream: true` answers
  `text/event-stream` chunks, then `data: [DONE]`, sent once the whole
  answer is known; `stream_options.include_usage` adds a usage chunk.
  `usage` is the upstream's token counts, zeros when it gave none.
- Synchronous: a call waits up to 120 s for its job. Past that: 504
  `job_still_running` naming the task id; the job goes on (GET
  /v1/generate/{{task_id}}, or repeat the call with the same Idempotency-Key).
- `Idempotency-Key: <id>` is the request id (a retry is the same job, charged
  once); without it every call is a new job.
- Errors: `{{"error": {{"message", "type", "param", "code"}}}}`, `code` the
  machine code below, the same statuses (402 insufficient_credits has type
  `insufficient_quota`, 429 `rate_limit_error`).

## AgentName surface (under /api)

Code written for AgentName works with base URL {base_url}/api and your key.
OpenAPI 3.1: {base_url}/agentname/openapi.json
Requests name no model; each product runs on this server's default model:
{defaults}
- `POST /api/generate` `{{"prompt", "type": "image"|"video", "aspect_ratio",
  "duration"}}` -> `{{"jobId", "status": "queued"}}`.
- `GET /api/status/{{jobId}}` -> `status` `queued`, `processing`, `completed`
  (with `url` and `outputs`) or `failed` (with `error`, and `reason`:
  `canceled`, `expired` or the failure's code).
- `POST /api/chat` `{{"message"}}` -> `{{"reply", "timestamp"}}`, priced per
  message; waits up to 120 s, then 502 naming the `jobId`, which goes on.
- `Idempotency-Key` is the request id; without it each call is a new job.
- Errors: `{{"error", "code": status, "reason": machine code}}` with the
  statuses 400, 401, 429, 500 and 502 (an empty wallet is 400 with reason
  insufficient_credits; a plan's daily cap is 429 plan_limit_reached), and
  HTTP's own 404 (no such job) and 409 (an Idempotency-Key reused with
  another request).

## KiwiWhale surface (under /api/v1/*.php)

OpenAPI 3.1: {base_url}/kiwiwhale/openapi.json
- `POST /api/v1/agent_register.php` `{{"name"}}` -> `api_key` (shown once),
  `user_id`, `credits`. Self-registration is {registration}.
- `GET /api/v1/credits.php`; `GET /api/v1/models.php` (`public_model`,
  `category`, exact `cost_credits`, `schema`).
- `POST /api/v1/generate.php` `{{"model", "prompt"}}` (or the model's own
  prompt member: `text`, `query` or `messages`; `input_image_urls`; its
  options; `request_id` to make it idempotent) -> `{{"status": "queued",
  "job_id", "auto_topup_applied", "auto_topup_message"}}`: applied when the
  submit lacked credits and bought your owner's auto top-up.
- `GET /api/v1/jobs.php?job_id=` until `status` is `completed`, then
  `outputs[0].url`; `failed`, `canceled` and `expired` are final too.
- Errors: `{{"success": false, "error", "message", "code"}}`:
  `INSUFFICIENT_CREDITS` (402), `Unknown or inactive model` (400).
- Top-ups, where the operator connected Stripe (else 403
  `not_configured`): `POST /api/v1/agent_setup_payment.php` `{{"credits": 5}}`
  -> `checkout_url` (your owner pays once; the card is saved);
  `agent_confirm_payment_method.php` -> `ready`; then
  `agent_topup.php` `{{"credits": 10}}` charges the saved card (409
  `payment_method_not_ready` before, 402 `payment_declined`).

## Sign in with Moltbook

If you are a Moltbook agent (and the operator enabled it; else 404):

1. Ask Moltbook for an identity token with your Moltbook API key:
   POST https://www.moltbook.com/api/v1/agents/me/identity-token -> identity_token
2. POST {base_url}/auth/moltbook/exchange with the header
   `X-Moltbook-Identity: <identity_token>` (or the body {{"identity_token": "..."}};
   if you send both, the header wins and the body is ignored)
   -> data.access_token (900 s), data.agent_id, data.account_id, data.scopes
3. Use `Authorization: Bearer <access_token>` on /v1. There is no refresh
   token: when it expires, get a fresh identity token and exchange again.

The first time, you may get 403 agent_not_bound with data.registration_code:
hand it to your owner, who binds it to their account
(`creditgate agents bind CODE --account ID`), then exchange again. Each
exchange while unbound gives a new code and voids the previous one. A
refused identity token is 401 identity_refused (data.reason, such as
identity_token_expired); Moltbook being unreachable is 502
upstream_unavailable: retry later.

## Agent identity (ed25519)

1. POST /api/v1/agents/register {{public_key, agent_name, agent_version, timestamp, nonce, signature}}
   -> data.agent_id, data.registration_code
2. Your owner binds the code to their account:
   `creditgate agents bind CODE --account ID` (or POST /api/v1/agents/bind with an admin key).
3. POST /api/v1/agents/keys/create {{agent_id, registration_code, key_name, scopes, timestamp, nonce, signature}}
   -> data.api_key (shown once)
4. POST /api/v1/agents/auth/token with `Authorization: Bearer <api_key>` and
   {{agent_id, scopes, timestamp, nonce, signature}} -> access_token (900 s), refresh_token
5. POST /api/v1/agents/auth/refresh {{refresh_token}} -> a new pair. A refresh
   token works once; presenting a used one revokes its whole family.
   Keys: POST /api/v1/agents/keys/list and /keys/revoke (signed).

Signing: signature = lowercase hex of the ed25519 signature over

    METHOD + " " + PATH + "\n" + JCS(body without "signature")

where JCS is RFC 8785 canonical JSON (keys sorted, no whitespace), e.g.
"POST /api/v1/agents/auth/token\n{{"agent_id":"agt_...","nonce":"n1","scopes":["image"],"timestamp":1790000000}}".
timestamp is Unix seconds within 300 s of the server's clock; each nonce may
be used once per agent. Binding method and path stops a signature made for
one endpoint from being replayed at another.
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::dialects::Dialect;
    use crate::http::router::{Route, ROUTES};
    use crate::http::status::status_for;
    use creditgate::error::{ErrorCode, ERROR_CODES};

    /// The routes of `dialect`.
    fn routes_of(dialect: Dialect) -> impl Iterator<Item = &'static Route> {
        ROUTES.iter().filter(move |route| route.dialect == dialect)
    }

    /// Each dialect with a static document (OpenAI, AgentName, KiwiWhale):
    /// the document and the dialect's routes agree both ways, and every
    /// `$ref` resolves.
    #[test]
    fn each_dialect_document_and_its_routes_agree_exactly() {
        for dialect in [Dialect::OpenAi, Dialect::AgentName, Dialect::KiwiWhale] {
            a_dialect_document_and_its_routes_agree(dialect);
        }
    }

    fn a_dialect_document_and_its_routes_agree(dialect: Dialect) {
        let doc = match dialect {
            Dialect::OpenAi => openai_openapi("http://example.test", None),
            Dialect::AgentName => agentname_openapi("http://example.test", &[]),
            Dialect::KiwiWhale => kiwiwhale_openapi("http://example.test", None),
            Dialect::Rynjer => unreachable!("Rynjer's document has its own test"),
        };
        let paths = doc["paths"].as_object().expect("paths");
        for route in routes_of(dialect) {
            assert!(
                paths[route.pattern][route.method.to_ascii_lowercase()].is_object(),
                "{} {} is not documented",
                route.method,
                route.pattern
            );
        }
        let mut operations = 0;
        for (path, item) in paths {
            for (method, operation) in item.as_object().expect("path item") {
                assert!(
                    routes_of(dialect)
                        .any(|r| r.pattern == path && r.method.eq_ignore_ascii_case(method)),
                    "{method} {path} is documented but not a {dialect:?} route"
                );
                assert!(
                    operation["responses"]
                        .as_object()
                        .is_some_and(|r| !r.is_empty()),
                    "{method} {path}"
                );
                operations += 1;
            }
        }
        assert_eq!(operations, routes_of(dialect).count(), "{dialect:?}");
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["servers"][0]["url"], "http://example.test");
        let text = doc.to_string();
        for piece in text.split("\"$ref\":\"#/components/").skip(1) {
            let mut name = piece.split('"').next().expect("ref").split('/');
            let (kind, name) = (name.next().expect("kind"), name.next().expect("name"));
            assert!(
                doc["components"][kind][name].is_object(),
                "dangling $ref {kind}/{name}"
            );
        }
    }

    /// The one check of the document against the route table, both ways:
    /// every route is documented exactly when it is on (the Moltbook
    /// exchange only with a verifier), every documented operation is
    /// routed and says what it answers, and every `$ref` resolves.
    #[test]
    fn the_document_and_the_router_agree_exactly() {
        let shipped = Arc::new(
            creditgate::pricing::parse_catalog(crate::serve::SHIPPED_CATALOG).expect("catalog"),
        );
        for (moltbook, catalogs) in [
            (true, Vec::new()),
            (false, Vec::new()),
            (true, vec![(shipped.clone(), true)]),
            (false, vec![(shipped.clone(), true)]),
        ] {
            let live = Live { catalogs, moltbook };
            let doc = openapi("http://example.test", &live);
            let paths = doc["paths"].as_object().expect("paths");
            for route in routes_of(Dialect::Rynjer) {
                let method = route.method.to_ascii_lowercase();
                let documented = paths
                    .get(route.pattern)
                    .and_then(|p| p.get(&method))
                    .is_some();
                let on = moltbook || route.pattern != MOLTBOOK_EXCHANGE_PATH;
                assert_eq!(
                    documented, on,
                    "{} {} is on: {on}, documented: {documented}",
                    route.method, route.pattern
                );
            }
            for (path, item) in paths {
                for (method, operation) in item.as_object().expect("path item") {
                    assert!(
                        routes_of(Dialect::Rynjer)
                            .any(|r| r.pattern == path && r.method.eq_ignore_ascii_case(method)),
                        "{method} {path} is documented but not routed"
                    );
                    assert!(
                        operation["responses"]
                            .as_object()
                            .is_some_and(|r| !r.is_empty()),
                        "{method} {path} has responses"
                    );
                }
            }
            assert_eq!(doc["openapi"], "3.1.0");
            assert_eq!(doc["servers"][0]["url"], "http://example.test");
            // Every $ref resolves, whatever was left out.
            let text = doc.to_string();
            for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
                let name = piece.split('"').next().expect("ref name");
                assert!(
                    doc["components"]["schemas"][name].is_object(),
                    "dangling $ref {name} (moltbook: {moltbook})"
                );
            }
        }
    }

    #[test]
    fn request_schemas_come_from_the_live_catalogs() {
        let catalog = Arc::new(
            creditgate::pricing::parse_catalog(crate::serve::SHIPPED_CATALOG).expect("catalog"),
        );
        let live = Live {
            catalogs: vec![(catalog.clone(), true)],
            moltbook: false,
        };
        let doc = openapi("http://example.test", &live);
        let schemas = &doc["components"]["schemas"];
        let generate = schemas["GenerateRequest"]["oneOf"]
            .as_array()
            .expect("one schema per model");
        let models: Vec<&str> = generate
            .iter()
            .map(|branch| branch["properties"]["model"]["const"].as_str().expect("id"))
            .collect();
        let listed: Vec<&str> = catalog.models.iter().map(|m| m.model.as_str()).collect();
        assert_eq!(models, listed);
        let branch = |schema: &str, model: &str| {
            schemas[schema]["oneOf"]
                .as_array()
                .expect("branches")
                .iter()
                .find(|b| b["properties"]["model"]["const"] == model)
                .cloned()
                .expect("branch")
        };
        let pro = branch("GenerateRequest", "nano-banana-pro");
        assert_eq!(
            pro["properties"]["units"]["properties"]["resolution"]["enum"],
            json!(["1K", "2K", "4K", null])
        );
        assert_eq!(pro["required"], json!(["model", "request_id", "prompt"]));
        // An image-to-video model needs its image to generate, not to
        // estimate.
        let i2v = "fal-ai/ltx-2/image-to-video";
        assert!(branch("GenerateRequest", i2v)["anyOf"].is_array());
        let estimate = branch("EstimateRequest", i2v);
        assert!(estimate["anyOf"].is_null());
        assert_eq!(estimate["required"], json!(["model"]));
        assert_eq!(
            doc["paths"]["/v1/models/list"]["get"]["parameters"][0]["schema"]["enum"],
            json!([catalog.price_version])
        );
    }

    #[test]
    fn the_openai_and_kiwiwhale_bodies_come_from_the_active_catalog() {
        let catalog =
            creditgate::pricing::parse_catalog(crate::serve::SHIPPED_CATALOG).expect("catalog");
        let doc = openai_openapi("http://example.test", Some(&catalog));
        let schemas = &doc["components"]["schemas"];
        let images: Vec<&str> = schemas["ImageRequest"]["oneOf"]
            .as_array()
            .expect("one schema per image model")
            .iter()
            .map(|branch| branch["properties"]["model"]["const"].as_str().expect("id"))
            .collect();
        let runnable: Vec<&str> = catalog
            .models
            .iter()
            .filter(|spec| spec.product == "image" && spec.input_images.min == 0)
            .map(|spec| spec.model.as_str())
            .collect();
        assert!(!runnable.is_empty());
        assert_eq!(images, runnable);
        let chats: Vec<Value> = catalog
            .models
            .iter()
            .filter(|spec| spec.product == "chat")
            .map(|spec| json!(spec.model))
            .collect();
        assert_eq!(
            schemas["ChatRequest"]["properties"]["model"]["enum"],
            Value::Array(chats)
        );
        assert_eq!(
            schemas["ChatRequest"]["properties"]["messages"]["maxItems"],
            json!(CHAT_MESSAGES_MAX)
        );
        let kiwi = kiwiwhale_openapi("http://example.test", Some(&catalog));
        let models: Vec<&str> = kiwi["components"]["schemas"]["GenerateRequest"]["oneOf"]
            .as_array()
            .expect("one schema per model")
            .iter()
            .map(|branch| branch["properties"]["model"]["const"].as_str().expect("id"))
            .collect();
        let listed: Vec<&str> = catalog.models.iter().map(|m| m.model.as_str()).collect();
        assert_eq!(models, listed);
    }

    /// The status each code is listed under in `text`: a code belongs to
    /// the last three-digit status before it.
    fn documented_statuses(text: &str) -> Vec<(String, u16)> {
        let mut status = 0;
        let mut found = Vec::new();
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if let Ok(number) = word.parse::<u16>() {
                if (400..600).contains(&number) {
                    status = number;
                }
            } else if ErrorCode::ALL.iter().any(|code| code.as_str() == word) {
                found.push((word.to_owned(), status));
            }
        }
        found
    }

    #[test]
    fn every_error_code_is_documented_with_its_status_in_llms_txt_and_openapi() {
        let text = llms_txt("http://example.test", None, &[], false);
        let answers = text
            .split("## Answers")
            .nth(1)
            .and_then(|rest| rest.split("Credits are exact").next())
            .expect("an Answers section");
        let doc = openapi("http://example.test", &Live::default());
        let error = &doc["components"]["schemas"]["ErrorEnvelope"]["properties"]["data"]
            ["properties"]["error"];
        let description = error["description"].as_str().expect("description");
        for listing in [answers, description] {
            let documented = documented_statuses(listing);
            for code in ErrorCode::ALL {
                let statuses: Vec<u16> = documented
                    .iter()
                    .filter(|(name, _)| name == code.as_str())
                    .map(|(_, status)| *status)
                    .collect();
                assert_eq!(
                    statuses,
                    [status_for(*code)],
                    "{code} is listed once, under its status: {listing}"
                );
            }
        }
        let listed: Vec<&str> = error["enum"]
            .as_array()
            .expect("enum")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(listed, ERROR_CODES, "the OpenAPI enum is the list of codes");
    }
}
