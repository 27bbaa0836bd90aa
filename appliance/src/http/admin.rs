//! The operator's HTTP API under `/v1/admin/`: the money-in operations the
//! CLI has (grants, top-ups, codes, auto top-up, key spend caps, webhook
//! endpoints), for a key with the `operator` scope, which only the CLI
//! grants and no account's `admin` key implies. Each handler parses,
//! checks the scope, calls one gate method and renders, in the Rynjer
//! envelope; every refusal moves nothing.

use creditgate::identity::OPERATOR_SCOPE;
use creditgate::{Error, Gate};
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use super::dialects::rynjer::ok;
use super::request::{object_with_members, Call};
use super::response::Response;
use crate::render;

/// What an admin handler answers.
type Handled = Result<Response, Error>;

/// The gate, for a caller holding the operator scope.
fn operator<'a>(call: &'a Call) -> Result<&'a Gate, Error> {
    call.caller()?.require_scope(OPERATOR_SCOPE)?;
    Ok(call.gate())
}

/// A number member of `object` as credits (`None` when absent).
fn credits_of(object: &Map<String, Value>, field: &str) -> Result<Option<Decimal>, Error> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) if value.is_number() => creditgate::money::parse_credits(&value.to_string())
            .map(Some)
            .map_err(|_| invalid(field, "must be a number of credits (at most 6 decimals)")),
        Some(_) => Err(invalid(field, "must be a number of credits")),
    }
}

/// A whole-number member of `object` within `range` (`None` when absent).
fn whole_of(
    object: &Map<String, Value>,
    field: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<u64>, Error> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .filter(|n| range.contains(n))
            .map(Some)
            .ok_or_else(|| {
                invalid(
                    field,
                    &format!(
                        "must be a whole number from {} to {}",
                        range.start(),
                        range.end()
                    ),
                )
            }),
    }
}

fn text_of<'a>(object: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, Error> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(invalid(field, "must be a string")),
    }
}

fn required<T>(value: Option<T>, field: &str) -> Result<T, Error> {
    value.ok_or_else(|| invalid(field, "is required"))
}

fn invalid(field: &str, message: &str) -> Error {
    Error::InvalidRequest {
        field: field.to_owned(),
        message: message.to_owned(),
    }
}

/// `POST /v1/admin/grants` `{"account_id", "credits", "memo"?, "grant_id"?,
/// "expires_in_days"?}`: credits an account (promotional with an expiry).
/// With a `grant_id`, safe to retry.
pub fn grant(call: &Call) -> Handled {
    let gate = operator(call)?;
    let body = call.request.json_body()?;
    let object = object_with_members(
        &body,
        &[
            "account_id",
            "credits",
            "memo",
            "grant_id",
            "expires_in_days",
        ],
    )?;
    let account_id = required(text_of(object, "account_id")?, "account_id")?;
    let credits = required(credits_of(object, "credits")?, "credits")?;
    let memo = text_of(object, "memo")?.unwrap_or("");
    let grant_id = match text_of(object, "grant_id")? {
        Some(id) => id.to_owned(),
        None => creditgate::ids::random_id("grant_"),
    };
    let outcome = match whole_of(object, "expires_in_days", 1..=3_650)? {
        Some(days) => {
            let expires_at = gate.clock().now() + days as i64 * creditgate::plans::DAY_MS;
            gate.grant_promotional(&grant_id, account_id, credits, expires_at, memo)?
        }
        None => gate.grant(&grant_id, account_id, credits, memo)?,
    };
    let balance = gate.balance(account_id)?;
    Ok(ok(json!({
        "transfer": render::transfer(&outcome.transfer),
        "replayed": outcome.replayed,
        "balance": render::balance(&balance),
    })))
}

/// `GET /v1/admin/topups?account_id=&limit=`: top-ups, newest first.
pub fn topups(call: &Call) -> Handled {
    let gate = operator(call)?;
    let limit = match call.request.query_param("limit") {
        None => 50,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=creditgate::TOPUPS_LIST_MAX).contains(n))
            .ok_or_else(|| invalid("limit", "must be a whole number from 1 to 500"))?,
    };
    let topups = gate.topups(call.request.query_param("account_id"), limit)?;
    Ok(ok(json!({
        "topups": topups.iter().map(render::topup).collect::<Vec<_>>(),
    })))
}

/// `GET /v1/admin/codes`: redemption codes, newest first (never secrets).
pub fn codes(call: &Call) -> Handled {
    let codes = operator(call)?.codes()?;
    Ok(ok(
        json!({ "codes": codes.iter().map(render::code).collect::<Vec<_>>() }),
    ))
}

/// `POST /v1/admin/codes` `{"credits", "uses"?, "expires_in_days"?,
/// "repeatable"?, "memo"?}`: a new code; its secret is in this answer only.
pub fn create_code(call: &Call) -> Handled {
    let gate = operator(call)?;
    let body = call.request.json_body()?;
    let object = object_with_members(
        &body,
        &["credits", "uses", "expires_in_days", "repeatable", "memo"],
    )?;
    let credits = required(credits_of(object, "credits")?, "credits")?;
    let uses = whole_of(
        object,
        "uses",
        1..=u64::from(creditgate::codes::CODE_USES_MAX),
    )?
    .unwrap_or(1);
    let repeatable = match object.get("repeatable") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(flag)) => *flag,
        Some(_) => return Err(invalid("repeatable", "must be true or false")),
    };
    let now = gate.clock().now();
    let new = creditgate::NewCode {
        amount_micros: creditgate::money::positive_micros(credits)?,
        uses_max: u32::try_from(uses).unwrap_or(u32::MAX),
        once_per_account: !repeatable,
        expires_at: whole_of(object, "expires_in_days", 1..=3_650)?
            .map(|days| now + days as i64 * creditgate::plans::DAY_MS),
        memo: text_of(object, "memo")?.unwrap_or("").to_owned(),
    };
    let (code, secret) = gate.create_code(&new)?;
    let mut view = render::code(&code);
    view["secret"] = json!(secret);
    Ok(ok(view))
}

/// `POST /v1/admin/codes/{code_id}/revoke`: the code redeems no more.
pub fn revoke_code(call: &Call) -> Handled {
    let code = operator(call)?.revoke_code(call.param("code_id"))?;
    Ok(ok(render::code(&code)))
}

/// `GET /v1/admin/accounts/{account_id}/auto_topup`: the saved card and
/// the auto top-up of an account.
pub fn auto_topup(call: &Call) -> Handled {
    let state = operator(call)?.auto_topup_state(call.param("account_id"))?;
    Ok(ok(render::auto_topup(&state)))
}

/// `POST /v1/admin/accounts/{account_id}/auto_topup` `{"threshold",
/// "amount", "window_minutes"?}` or `{"off": true}`.
pub fn set_auto_topup(call: &Call) -> Handled {
    let gate = operator(call)?;
    let account_id = call.param("account_id");
    let body = call.request.json_body()?;
    let object = object_with_members(&body, &["threshold", "amount", "window_minutes", "off"])?;
    if object.get("off") == Some(&Value::Bool(true)) {
        if object.len() > 1 {
            return Err(invalid("off", "comes alone"));
        }
        gate.auto_topup_state(account_id)?;
        gate.clear_auto_topup(account_id)?;
    } else {
        if object.contains_key("off") {
            return Err(invalid("off", "must be true, alone"));
        }
        let threshold = required(credits_of(object, "threshold")?, "threshold")?;
        let amount = required(credits_of(object, "amount")?, "amount")?;
        let minutes = whole_of(object, "window_minutes", 1..=44_640)?.unwrap_or(60);
        gate.set_auto_topup(account_id, threshold, amount, minutes as i64 * 60_000)?;
    }
    Ok(ok(render::auto_topup(&gate.auto_topup_state(account_id)?)))
}

/// `GET /v1/admin/keys/{key_id}/caps`: a key's spend caps and spend.
pub fn key_caps(call: &Call) -> Handled {
    let spend = operator(call)?.key_spend(call.param("key_id"))?;
    Ok(ok(render::key_spend(&spend)))
}

/// `POST /v1/admin/keys/{key_id}/caps` `{"daily"?, "monthly"?}` (credits;
/// null or absent: no cap of that period).
pub fn set_key_caps(call: &Call) -> Handled {
    let gate = operator(call)?;
    let body = call.request.json_body()?;
    let object = object_with_members(&body, &["daily", "monthly"])?;
    let micros = |field: &str| -> Result<Option<i64>, Error> {
        credits_of(object, field)?
            .map(|credits| creditgate::money::positive_micros(credits).map_err(Error::from))
            .transpose()
    };
    let caps = creditgate::SpendCaps {
        daily_micros: micros("daily")?,
        monthly_micros: micros("monthly")?,
    };
    let spend = gate.set_key_spend_caps(call.param("key_id"), caps)?;
    Ok(ok(render::key_spend(&spend)))
}

/// `GET /v1/admin/webhooks`: the endpoints.
pub fn webhooks(call: &Call) -> Handled {
    let endpoints = operator(call)?.webhook_endpoints()?;
    Ok(ok(json!({
        "endpoints": endpoints.iter().map(render::webhook_endpoint).collect::<Vec<_>>(),
    })))
}

/// `POST /v1/admin/webhooks` `{"url", "events", "low_balance"?}`: a new
/// endpoint; its signing secret is in this answer.
pub fn add_webhook(call: &Call) -> Handled {
    let gate = operator(call)?;
    let body = call.request.json_body()?;
    let object = object_with_members(&body, &["url", "events", "low_balance"])?;
    let url = required(text_of(object, "url")?, "url")?;
    let events = match object.get("events") {
        Some(Value::Array(events)) if events.len() <= creditgate::outbox::EVENT_TYPES.len() * 2 => {
            events
                .iter()
                .map(|event| {
                    event
                        .as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| invalid("events", "must be event names"))
                })
                .collect::<Result<Vec<_>, _>>()?
        }
        _ => return Err(invalid("events", "is required: a list of event names")),
    };
    let low_balance_micros = credits_of(object, "low_balance")?
        .map(|credits| creditgate::money::to_micros(credits).map_err(Error::from))
        .transpose()?;
    let (endpoint, secret) = gate.add_webhook_endpoint(&creditgate::outbox::NewEndpoint {
        url: url.to_owned(),
        events,
        low_balance_micros,
    })?;
    let mut view = render::webhook_endpoint(&endpoint);
    view["secret"] = json!(secret);
    Ok(ok(view))
}

/// `POST /v1/admin/webhooks/{endpoint_id}/remove`: no more deliveries.
pub fn remove_webhook(call: &Call) -> Handled {
    let endpoint = operator(call)?.remove_webhook_endpoint(call.param("endpoint_id"))?;
    Ok(ok(render::webhook_endpoint(&endpoint)))
}
