//! The KiwiWhale dialect (reference 004), under `/api/v1/*.php`:
//! `agent_register.php` (self-registration, off unless the operator turns
//! it on), `credits.php`, `models.php`, `generate.php`, `jobs.php?job_id=`,
//! and the top-up endpoints over the operator's Stripe (a Checkout that
//! saves the card, then off-session charges of it; generate's
//! `auto_topup_applied` says when a submit bought the auto top-up). Its
//! OpenAPI document is at `GET /kiwiwhale/openapi.json`. Bearer
//! keys, like every dialect.
//!
//! Errors are `{"success": false, "error", "message", "code"}` with the one
//! table's statuses: `error` is the reference's word where it has one
//! (`INSUFFICIENT_CREDITS`, `Unknown or inactive model`,
//! `payment_method_not_ready`), else our machine code, which `code` always
//! carries. Choices (CONTRACTS.md §6): a generate body's `request_id` (or
//! `Idempotency-Key`) makes it idempotent, and without one each call is a
//! new job; a model's single text input (`text`, `query`, `messages`) is
//! its prompt; inputs other than a prompt and images (`video_url`,
//! `audio_url`, ...) are refused as not supported, never dropped.

use creditgate::pricing::{OptionName, RequestedUnits};
use creditgate::request::GenerateRequest;
use creditgate::{Error, Job, JobStatus};
use serde_json::{json, Map, Value};

use super::shared::{messages_prompt, request_id, Parts};
use crate::http::docs;
use crate::http::request::{object_with_members, Call};
use crate::http::response::Response;
use crate::http::status::{public_message, status_for};
use crate::render::{self, credits};

/// The prefix of a request id minted for a call without one.
pub const MINTED_REQUEST_ID_PREFIX: &str = "kw_";
/// What every API-key caller is, in the reference's words.
pub const ACCOUNT_TYPE: &str = "agent";
/// The name of a self-registered account whose body names none.
pub const DEFAULT_AGENT_NAME: &str = "agent";
/// The longest name a self-registered agent may give, in characters.
pub const AGENT_NAME_CHARS_MAX: usize = 64;
/// The reference's word for an unknown model (its whole `error`).
pub const UNKNOWN_MODEL: &str = "Unknown or inactive model";

/// Inputs some KiwiWhale models take that creditgate cannot carry to a
/// provider yet: refused by name rather than silently dropped.
const UNSUPPORTED_INPUTS: &[&str] = &[
    "video_url",
    "video_urls",
    "audio_url",
    "file_url",
    "time_seconds",
];
type Handled = Result<Response, Error>;

/// An error answer in KiwiWhale's shape.
pub fn error(err: &Error) -> Response {
    let status = status_for(err.error_code());
    let word = match err.code() {
        "insufficient_credits" => "INSUFFICIENT_CREDITS",
        "unknown_model" => UNKNOWN_MODEL,
        other => other,
    };
    let message = match err {
        Error::InsufficientCredits { .. } => format!(
            "Not enough credits to run this request. {}",
            public_message(err)
        ),
        _ => public_message(err),
    };
    let mut body =
        json!({ "success": false, "error": word, "message": message, "code": err.code() });
    let data = render::error_data(err);
    for name in ["field", "required", "available", "close_matches", "allowed"] {
        if !data[name].is_null() {
            body[name] = data[name].clone();
        }
    }
    let mut response = Response::json(status, &body);
    if let Error::RateLimited { retry_after_ms } = err {
        response
            .headers
            .push(("Retry-After", retry_after_ms.div_ceil(1000).to_string()));
    }
    response
}

/// `POST /api/v1/agent_register.php`: a new agent account and its key,
/// shown once.
pub fn register(call: &Call) -> Handled {
    let name = match call.request.body.iter().all(u8::is_ascii_whitespace) {
        true => DEFAULT_AGENT_NAME.to_owned(),
        false => {
            let body = call.request.json_body()?;
            let object = object_with_members(&body, &["name"])?;
            let name = text(object, "name")?.unwrap_or(DEFAULT_AGENT_NAME);
            if name.chars().count() > AGENT_NAME_CHARS_MAX {
                return Err(invalid(
                    "name",
                    &format!("must be at most {AGENT_NAME_CHARS_MAX} characters"),
                ));
            }
            name.to_owned()
        }
    };
    let registered = call
        .gate()
        .self_register(&name, &call.request.client_address)?;
    Ok(Response::json(
        200,
        &json!({
            "success": true,
            "account_type": ACCOUNT_TYPE,
            "user_id": registered.account.id,
            "api_key": registered.secret,
            "credits": credits(registered.credits_micros),
        }),
    ))
}

/// `GET /api/v1/credits.php`: the credits available now.
pub fn balance(call: &Call) -> Handled {
    let balance = call.gate().balance(&call.caller()?.account_id)?;
    Ok(Response::json(
        200,
        &json!({ "success": true, "credits": credits(balance.available),
                 "account_type": ACCOUNT_TYPE }),
    ))
}

/// `GET /api/v1/models.php`: the active catalog's models, each with its
/// default request's exact price and its input schema.
pub fn models(call: &Call) -> Handled {
    call.caller()?;
    let listing = call.gate().models(None)?;
    let models: Vec<Value> = listing
        .models
        .iter()
        .map(|entry| {
            json!({
                "product_id": entry.model,
                "public_model": entry.model,
                "category": entry.category,
                "cost_credits": entry.default_credits.map_or(Value::Null, |price| {
                    price.to_string().parse::<serde_json::Number>().map_or(Value::Null, Value::Number)
                }),
                "schema": entry.input_schema,
            })
        })
        .collect();
    Ok(Response::json(
        200,
        &json!({ "success": true, "count": models.len(), "models": models }),
    ))
}

/// `POST /api/v1/generate.php`.
pub fn generate(call: &Call) -> Handled {
    let body = call.request.json_body()?;
    let request = decode_generate(call, object_of(&body)?)?;
    let submitted = call.gate().submit_request_for(call.caller()?, request)?;
    let answer = json!({
        "success": true,
        "status": "queued",
        "job_id": submitted.job.id,
        "request_id": submitted.job.request_id,
        "cost_credits": credits(submitted.job.estimate_micros),
        // Whether this submit bought the account's auto top-up (it lacked
        // credits, had a saved card and auto top-up on).
        "auto_topup_applied": submitted.auto_topup.as_ref().is_some_and(|a| a.applied),
        "auto_topup_message": submitted
            .auto_topup
            .as_ref()
            .map_or("", |a| a.message.as_str()),
    });
    Ok(Response::json(200, &answer).with_quota(submitted.quota.as_ref()))
}

/// The typed request of a generate body: `model`, `request_id`, the
/// model's prompt member (`prompt`, or `text`, `query` or `messages` where
/// its schema names one), its options, and `input_image_urls`.
fn decode_generate(call: &Call, object: &Map<String, Value>) -> Result<GenerateRequest, Error> {
    if let Some(unsupported) = object
        .keys()
        .find(|key| UNSUPPORTED_INPUTS.contains(&key.as_str()))
    {
        return Err(Error::NotConfigured {
            feature: format!("the input {unsupported}"),
            hint: "this server carries a prompt and input images to providers, not other \
                   inputs yet; choose a model that needs only those"
                .into(),
        });
    }
    let model = text(object, "model")?.ok_or_else(|| invalid("model", "is required"))?;
    let catalog = call.gate().catalog(None)?;
    let Some(spec) = catalog.models.iter().find(|spec| spec.model == model) else {
        // The core refuses it as unknown, with the closest names.
        return Ok(GenerateRequest {
            request_id: Some(request_id(call, MINTED_REQUEST_ID_PREFIX)?),
            model: model.to_owned(),
            product: None,
            prompt: None,
            units: RequestedUnits::default(),
            input_image_urls: Vec::new(),
            price_version: None,
        });
    };
    let member = docs::kiwiwhale_prompt_member(spec);
    let options: Vec<&str> = OptionName::ALL.iter().map(|name| name.as_str()).collect();
    if let Some(unknown) = object.keys().find(|key| {
        let key = key.as_str();
        !matches!(key, "model" | "request_id" | "input_image_urls")
            && key != member
            && !options.contains(&key)
    }) {
        return Err(invalid(
            unknown,
            &format!("is not a known field (this model's prompt goes in {member})"),
        ));
    }
    let prompt = match member {
        "messages" => match object.get(member) {
            None | Some(Value::Null) => None,
            Some(messages) => Some(messages_prompt(messages, Parts::Refused)?),
        },
        _ => text(object, member)?.map(str::to_owned),
    };
    let images = match object.get("input_image_urls") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(urls)) => urls
            .iter()
            .map(|url| url.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid("input_image_urls", "must be an array of URLs"))?,
        Some(_) => return Err(invalid("input_image_urls", "must be an array of URLs")),
    };
    // The body's request_id wins over the Idempotency-Key header, which is
    // checked all the same.
    let header_id = request_id(call, MINTED_REQUEST_ID_PREFIX)?;
    let id = text(object, "request_id")?.map_or(header_id, str::to_owned);
    let request = GenerateRequest {
        request_id: Some(id),
        model: model.to_owned(),
        product: None,
        prompt,
        units: RequestedUnits {
            count: positive(object, "count")?,
            duration: positive(object, "duration")?,
            resolution: text(object, "resolution")?.map(str::to_owned),
            aspect_ratio: text(object, "aspect_ratio")?.map(str::to_owned),
        },
        input_image_urls: images,
        price_version: None,
    };
    request.validate()?;
    Ok(request)
}

/// `GET /api/v1/jobs.php?job_id=`: a job in the reference's vocabulary.
pub fn job(call: &Call) -> Handled {
    let account = &call.caller()?.account_id;
    let id = call
        .request
        .query_param("job_id")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| invalid("job_id", "is required (?job_id=...)"))?;
    let job = call.gate().job_for(account, id)?;
    Ok(Response::json(200, &job_view(&job)))
}

/// A job as `jobs.php` shows it.
fn job_view(job: &Job) -> Value {
    let mut view = json!({
        "success": true,
        "job_id": job.id,
        "request_id": job.request_id,
        "model": job.model,
        "status": vocabulary(job.status),
        "outputs": job.outputs.iter()
            .map(|o| json!({ "url": o.url, "mime": o.mime }))
            .collect::<Vec<_>>(),
        "seed": job.seed,
        "cost_credits": credits(job.charged_micros.unwrap_or(job.estimate_micros)),
    });
    if job.status.is_terminal() && job.status != JobStatus::Succeeded {
        view["error"] = json!(job.error_code.as_deref().unwrap_or(job.status.as_str()));
        view["message"] = json!(job.error_message.as_deref().unwrap_or(""));
        view["cost_credits"] = credits(job.charged_micros.unwrap_or(0));
    }
    view
}

/// The reference's word for a job status (`completed` is one it names as
/// final; the failures keep ours).
fn vocabulary(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Pending => "queued",
        JobStatus::Running => "processing",
        JobStatus::Succeeded => "completed",
        JobStatus::Failed => "failed",
        JobStatus::Canceled => "canceled",
        JobStatus::Expired => "expired",
    }
}

/// `POST /api/v1/agent_topup.php` `{"credits"}`: buys credits now with
/// the account's saved card, without the payer. No card saved:
/// `payment_method_not_ready`; declined: `payment_declined`; Stripe not
/// connected: `not_configured`.
pub fn topup(call: &Call) -> Handled {
    let account_id = &call.caller()?.account_id;
    let body = call.request.json_body()?;
    let asked = credits_member(object_of(&body)?)?;
    let topup = call.gate().charge_saved_method(account_id, asked)?;
    let balance = call.gate().balance(account_id)?;
    Ok(Response::json(
        200,
        &json!({
            "success": true,
            "status": topup.status.as_str(),
            "topup_id": topup.id,
            "credits_added": if topup.status == creditgate::TopUpStatus::Credited {
                credits(topup.credits_micros)
            } else {
                json!(0)
            },
            "credits": credits(balance.available),
        }),
    ))
}

/// `POST /api/v1/agent_setup_payment.php` `{"credits"}` (default 5): opens
/// a card top-up whose Checkout saves the card for off-session charges;
/// the owner pays once at `checkout_url`.
pub fn payment_setup(call: &Call) -> Handled {
    let account_id = &call.caller()?.account_id;
    let body = if call.request.body.is_empty() {
        Value::Null
    } else {
        call.request.json_body()?
    };
    let asked = match body.as_object() {
        Some(object) if object.contains_key("credits") => credits_member(object)?,
        _ => rust_decimal::Decimal::from(SETUP_CREDITS_DEFAULT),
    };
    let topup = call.gate().open_topup(account_id, asked)?;
    Ok(Response::json(
        200,
        &json!({
            "success": true,
            "checkout_url": topup.checkout_url,
            "topup_id": topup.id,
            "message": "Pay once at checkout_url: the card is saved for off-session top-ups.",
        }),
    ))
}

/// `POST /api/v1/agent_confirm_payment_method.php`: whether a card is
/// saved for off-session charges yet.
pub fn confirm_payment_method(call: &Call) -> Handled {
    let account_id = &call.caller()?.account_id;
    if !call.request.body.is_empty() {
        object_of(&call.request.json_body()?)?;
    }
    let state = call.gate().auto_topup_state(account_id)?;
    let ready = state.method.is_some();
    Ok(Response::json(
        200,
        &json!({
            "success": true,
            "ready": ready,
            "message": if ready { "" } else { "No saved off-session payment method is configured." },
        }),
    ))
}

/// The credits a payment setup buys when its body names none.
const SETUP_CREDITS_DEFAULT: i64 = 5;

/// The positive `credits` member of a body.
fn credits_member(object: &Map<String, Value>) -> Result<rust_decimal::Decimal, Error> {
    object
        .get("credits")
        .filter(|credits| credits.is_number())
        .and_then(|credits| creditgate::money::parse_credits(&credits.to_string()).ok())
        .filter(|credits| *credits > rust_decimal::Decimal::ZERO)
        .ok_or_else(|| invalid("credits", "is required: a positive number of credits"))
}

/// The body as a JSON object.
fn object_of(body: &Value) -> Result<&Map<String, Value>, Error> {
    body.as_object()
        .ok_or_else(|| invalid("body", "must be a JSON object"))
}

/// `invalid_request` naming `field`.
fn invalid(field: &str, message: &str) -> Error {
    Error::InvalidRequest {
        field: field.to_owned(),
        message: message.to_owned(),
    }
}

/// The string member `field`, if present.
fn text<'a>(object: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, Error> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(invalid(field, "must be a string")),
    }
}

/// The positive integer member `field`, if present.
fn positive(object: &Map<String, Value>, field: &str) -> Result<Option<u32>, Error> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| invalid(field, "must be a positive integer")),
    }
}

/// `GET /kiwiwhale/openapi.json`: this dialect's OpenAPI document.
pub fn openapi(call: &Call) -> Handled {
    Ok(Response::json(
        200,
        &docs::kiwiwhale_openapi(
            &call.state.public_base_url,
            call.gate().catalog(None).ok().as_deref(),
        ),
    ))
}
