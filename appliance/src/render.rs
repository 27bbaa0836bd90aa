//! Rendering core values: the one place that knows their JSON shapes, for
//! the HTTP answers and the CLI's `--json` alike (a job, a balance, a key,
//! a token grant, an error's machine part, ...), and the CLI's text for
//! people. Where the HTTP layer and the CLI show the same thing they use
//! the same view here. Credits are written as exact JSON numbers (`20`,
//! `0.0165`), never through floats; timestamps as RFC 3339. The envelope
//! around an HTTP answer is `http::status`'s.

use creditgate::clock::format_rfc3339;
use creditgate::identity::{AccessGrant, Agent, AgentRegistration, CreatedAgentKey, TokenGrant};
use creditgate::media::MediaRow;
use creditgate::money::to_credits;
use creditgate::plans::Plan;
use creditgate::pricing::versions::PriceVersionInfo;
use creditgate::pricing::{Estimate, Listing};
use creditgate::{
    Account, Balance, Error, Gate, HistoryPage, Job, Submitted, Transfer, TransferKind,
    VerifyReport,
};
use serde_json::{json, Value};

/// Micro-credits as an exact JSON number of credits.
pub fn credits(micros: i64) -> Value {
    creditgate::money::credits_json(micros)
}

/// An outgoing webhook endpoint (never its secret, unless the caller adds
/// it).
pub fn webhook_endpoint(endpoint: &creditgate::outbox::Endpoint) -> Value {
    json!({
        "id": endpoint.id,
        "url": endpoint.url,
        "events": endpoint.events,
        "low_balance": endpoint.low_balance_micros.map(credits),
        "created_at": format_rfc3339(endpoint.created_at),
        "removed_at": endpoint.removed_at.map(format_rfc3339),
    })
}

/// An endpoint in one line for people.
pub fn webhook_endpoint_line(endpoint: &creditgate::outbox::Endpoint) -> String {
    format!(
        "{}  {}  {}{}",
        endpoint.id,
        endpoint.url,
        endpoint.events.join(","),
        if endpoint.removed_at.is_some() {
            "  (removed)"
        } else {
            ""
        }
    )
}

/// A webhook delivery.
pub fn webhook_delivery(delivery: &creditgate::outbox::Delivery) -> Value {
    json!({
        "id": delivery.id,
        "endpoint_id": delivery.endpoint_id,
        "event": delivery.event_type,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": format_rfc3339(delivery.next_attempt_at),
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        "created_at": format_rfc3339(delivery.created_at),
        "payload": serde_json::from_str::<Value>(&delivery.payload).unwrap_or(Value::Null),
    })
}

/// A delivery in one line for people.
pub fn webhook_delivery_line(delivery: &creditgate::outbox::Delivery) -> String {
    format!(
        "{}  {}  {}  {} attempt(s){}",
        delivery.id,
        delivery.event_type,
        delivery.status,
        delivery.attempts,
        delivery
            .last_error
            .as_ref()
            .map(|error| format!("  last: {error}"))
            .unwrap_or_default()
    )
}

/// An account's saved card and auto top-up (never more of the card than
/// the rail's ids).
pub fn auto_topup(state: &creditgate::AutoTopUpState) -> Value {
    json!({
        "payment_method": state.method.as_ref().map(|method| json!({
            "rail": method.rail,
            "customer": method.customer,
            "method": method.method,
            "saved_at": format_rfc3339(method.saved_at),
        })),
        "auto_topup": state.auto_topup.as_ref().map(|auto| json!({
            "threshold": credits(auto.settings.threshold_micros),
            "amount": credits(auto.settings.amount_micros),
            "window_minutes": auto.settings.window_ms / 60_000,
            "last_charge_at": auto.last_charge_at.map(format_rfc3339),
        })),
    })
}

/// An account's saved card and auto top-up, for people.
pub fn auto_topup_text(account_id: &str, state: &creditgate::AutoTopUpState) -> String {
    let card = match &state.method {
        Some(method) => format!("a card is saved ({} {})", method.rail, method.method),
        None => "no card is saved yet (the account's first card top-up saves one)".to_owned(),
    };
    let auto = match &state.auto_topup {
        Some(auto) => format!(
            "auto top-up: below {} credits, buy {} credits, at most once per {} minutes",
            creditgate::money::to_credits(auto.settings.threshold_micros),
            creditgate::money::to_credits(auto.settings.amount_micros),
            auto.settings.window_ms / 60_000
        ),
        None => "auto top-up is off".to_owned(),
    };
    format!("{account_id}: {card}; {auto}")
}

/// A top-up in one line, for the operator's listing.
pub fn topup_line(topup: &creditgate::TopUp) -> String {
    format!(
        "{}  {}  {} {} credits for {} {} ({})  {}",
        topup.id,
        topup.account_id,
        topup.rail,
        creditgate::money::to_credits(topup.credits_micros),
        topup.amount_minor,
        topup.currency,
        topup.status.as_str(),
        format_rfc3339(topup.created_at)
    )
}

/// A top-up (the rail's checkout id and URL once it answered).
pub fn topup(topup: &creditgate::TopUp) -> Value {
    json!({
        "topup_id": topup.id,
        "rail": topup.rail,
        "origin": topup.origin,
        "status": topup.status.as_str(),
        "credits": credits(topup.credits_micros),
        "amount_minor": topup.amount_minor,
        "currency": topup.currency,
        "checkout_url": topup.checkout_url,
        "transaction": topup.settlement.as_deref()
            .and_then(|text| serde_json::from_str::<Value>(text).ok())
            .map(|settlement| settlement["transaction"].clone()),
        "reversed": credits(topup.reversed_micros),
        "unrecovered": credits(topup.unrecovered_micros),
        "created_at": format_rfc3339(topup.created_at),
        "credited_at": topup.credited_at.map(format_rfc3339),
    })
}

/// What a rail's event did, in one word.
pub fn event_outcome(outcome: &creditgate::EventOutcome) -> String {
    match outcome {
        creditgate::EventOutcome::Credited { .. } => "credited".into(),
        creditgate::EventOutcome::Reversed {
            unrecovered_micros: 0,
            ..
        } => "reversed".into(),
        creditgate::EventOutcome::Reversed { .. } => "reversed_partially".into(),
        creditgate::EventOutcome::Duplicate => "duplicate".into(),
        creditgate::EventOutcome::Recorded { reason } => reason.clone(),
    }
}

/// A key's spend caps and what it spent.
pub fn key_spend(spend: &creditgate::KeySpend) -> Value {
    json!({
        "key_id": spend.key_id,
        "daily_cap": spend.caps.daily_micros.map(credits),
        "monthly_cap": spend.caps.monthly_micros.map(credits),
        "spent_today": credits(spend.spent_today_micros),
        "spent_this_month": credits(spend.spent_this_month_micros),
        "day_resets_at": format_rfc3339(spend.day_resets_at),
        "month_resets_at": format_rfc3339(spend.month_resets_at),
    })
}

/// A key's caps and spend, in one line for people.
pub fn key_spend_line(spend: &creditgate::KeySpend) -> String {
    let cap = |micros: Option<i64>| micros.map_or("no cap".to_owned(), |m| credits(m).to_string());
    if spend.caps == creditgate::SpendCaps::default() {
        return format!("key {} has no spend caps", spend.key_id);
    }
    format!(
        "key {}: today {} of {}, this month {} of {}",
        spend.key_id,
        credits(spend.spent_today_micros),
        cap(spend.caps.daily_micros),
        credits(spend.spent_this_month_micros),
        cap(spend.caps.monthly_micros),
    )
}

/// A redemption code (never its secret, which is not stored).
pub fn code(code: &creditgate::Code) -> Value {
    json!({
        "id": code.id,
        "credits": credits(code.amount_micros),
        "uses": code.uses,
        "uses_max": code.uses_max,
        "once_per_account": code.once_per_account,
        "expires_at": code.expires_at.map(format_rfc3339),
        "memo": code.memo,
        "created_at": format_rfc3339(code.created_at),
        "revoked_at": code.revoked_at.map(format_rfc3339),
    })
}

/// A code's terms, in one line for people.
pub fn code_line(code: &creditgate::Code) -> String {
    let mut line = format!(
        "{} credits, {}/{} used, {}",
        credits(code.amount_micros),
        code.uses,
        code.uses_max,
        if code.once_per_account {
            "once per account"
        } else {
            "repeatable"
        }
    );
    if let Some(at) = code.expires_at {
        line.push_str(&format!(", expires {}", format_rfc3339(at)));
    }
    if code.revoked_at.is_some() {
        line.push_str(", revoked");
    }
    if !code.memo.is_empty() {
        line.push_str(&format!(" ({})", code.memo));
    }
    line
}

/// A redemption and the balance after it.
pub fn redeemed(redeemed: &creditgate::Redeemed) -> Value {
    json!({
        "code_id": redeemed.redemption.code_id,
        "credits": credits(redeemed.redemption.amount_micros),
        "transfer_id": redeemed.redemption.transfer_id,
        "balance": balance(&redeemed.balance),
    })
}

/// An account.
pub fn account(account: &Account) -> Value {
    json!({
        "id": account.id,
        "name": account.name,
        "plan": account.plan,
        "created_at": format_rfc3339(account.created_at),
    })
}

/// A plan: its name, its daily caps by product (a product not listed is
/// unlimited), whether it is the default.
pub fn plan(plan: &Plan) -> Value {
    json!({
        "name": plan.name,
        "caps": plan.caps,
        "default": plan.is_default,
        "created_at": format_rfc3339(plan.created_at),
        "updated_at": format_rfc3339(plan.updated_at),
    })
}

/// A plan on one line for people: `free  image=10 video=2 (default)`.
pub fn plan_line(plan: &Plan) -> String {
    let caps = if plan.caps.is_empty() {
        "unlimited".to_owned()
    } else {
        plan.caps
            .iter()
            .map(|(product, cap)| format!("{product}={cap}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let default = if plan.is_default { " (default)" } else { "" };
    format!("{}\t{caps}{default}", plan.name)
}

/// A balance: available, pending and posted credits. The HTTP answer adds
/// `currency`, the CLI the `account_id`.
pub fn balance(balance: &Balance) -> Value {
    json!({
        "available": credits(balance.available),
        "pending": credits(balance.pending),
        "posted": credits(balance.posted),
    })
}

/// Adds a balance's buckets to its view: `paid` and `promotional`
/// available credits, and `expiring`: what of each promotional grant is
/// left (available or held) and when it is taken back.
pub fn add_buckets(view: &mut Value, balance: &Balance, buckets: &[creditgate::PromoBucket]) {
    let promotional: i64 = buckets.iter().map(|bucket| bucket.available).sum();
    view["paid"] = credits(balance.available - promotional);
    view["promotional"] = credits(promotional);
    view["expiring"] = json!(buckets
        .iter()
        .map(|bucket| json!({
            "credits": credits(bucket.available + bucket.held),
            "expires_at": format_rfc3339(bucket.expires_at),
        }))
        .collect::<Vec<_>>());
}

/// An account's balance, as the CLI shows it.
pub fn account_balance(account_id: &str, balance: &Balance) -> Value {
    let mut view = self::balance(balance);
    view["account_id"] = json!(account_id);
    view
}

/// A transfer.
pub fn transfer(transfer: &Transfer) -> Value {
    json!({
        "id": transfer.id,
        "seq": transfer.seq,
        "kind": transfer.kind.as_str(),
        "debit_account": transfer.debit_code,
        "credit_account": transfer.credit_code,
        "amount": credits(transfer.amount),
        "pending_id": transfer.pending_id,
        "refund_of": transfer.refund_of,
        "deadline": transfer.deadline.map(format_rfc3339),
        "memo": transfer.memo,
        "created_at": format_rfc3339(transfer.created_at),
    })
}

/// Lines for people, or `empty` when there are none (an empty list says
/// so rather than printing nothing).
pub fn lines_or(lines: impl Iterator<Item = String>, empty: &str) -> String {
    let lines: Vec<String> = lines.collect();
    if lines.is_empty() {
        empty.to_owned()
    } else {
        lines.join("\n")
    }
}

/// How a transfer moved an account's credits, for people: `in` (a grant
/// or refund), `held` (reserved for a job), `out` (a capture: charged; a
/// reversal: taken back after a refunded or disputed top-up), `released`
/// (a hold voided or expired; the credits are available again).
fn direction(kind: TransferKind) -> &'static str {
    match kind {
        TransferKind::Grant | TransferKind::Refund => "in",
        TransferKind::Hold => "held",
        TransferKind::Capture | TransferKind::Reversal => "out",
        TransferKind::Release | TransferKind::Expire => "released",
    }
}

/// A page of an account's history as a table (time, direction, credits,
/// kind, memo), newest first, with the command for the next page when
/// there is one. `continued` says whether this page follows a cursor.
pub fn history_table(account_id: &str, page: &HistoryPage, continued: bool) -> String {
    if page.transfers.is_empty() {
        return if continued {
            format!("no more transfers for {account_id}")
        } else {
            format!("no transfers for {account_id} yet")
        };
    }
    let rows: Vec<[String; 5]> = page
        .transfers
        .iter()
        .map(|t| {
            [
                format_rfc3339(t.created_at),
                direction(t.kind).to_owned(),
                to_credits(t.amount).to_string(),
                t.kind.as_str().to_owned(),
                t.memo.replace(['\n', '\r', '\t'], " "),
            ]
        })
        .collect();
    let header = ["TIME", "DIRECTION", "CREDITS", "KIND", "MEMO"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |row: &[String; 5]| {
        // Credits align right; the memo, last, is not padded.
        format!(
            "{:<w0$}  {:<w1$}  {:>w2$}  {:<w3$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
        )
        .trim_end()
        .to_owned()
    };
    let mut out: Vec<String> = std::iter::once(&header).chain(&rows).map(line).collect();
    if let Some(cursor) = &page.next_cursor {
        out.push(format!(
            "more: creditgate credits history --account {account_id} --cursor {cursor}"
        ));
    }
    out.join("\n")
}

/// Why the database could not be opened, said once: the core's
/// [`Error::Database`] names the path itself; other errors get it added.
pub fn open_error(path: &std::path::Path, err: &Error) -> String {
    match err {
        Error::Database { .. } => err.to_string(),
        _ => format!("cannot use the database {}: {err}", path.display()),
    }
}

/// A price version.
pub fn price_version(info: &PriceVersionInfo) -> Value {
    json!({
        "price_version": info.version,
        "active": info.active,
        "retired": info.retired,
        "models": info.models,
        "imported_at": format_rfc3339(info.imported_at),
        "digest": info.digest,
    })
}

/// An estimate: `credits` (the total), `breakdown` and `price_version`.
pub fn estimate(estimate: &Estimate) -> Value {
    // `Estimate` serialises credits as exact JSON numbers.
    serde_json::to_value(estimate).unwrap_or_else(|_| json!({}))
}

/// Who a job is shown to.
#[derive(Clone, Copy)]
pub enum JobReader<'a> {
    /// The agent that submitted it (`POST /v1/generate`, its poll and
    /// cancel; reference 001's poll shape): `charged` is 0 until charged.
    Owner,
    /// An operator (`creditgate jobs`): also the account, the hold, the
    /// provider's bookkeeping and the deadline, never the output token;
    /// `charged` is null until charged.
    Operator(&'a Gate),
}

/// A job, as `reader` sees it.
pub fn job(job: &Job, reader: JobReader<'_>) -> Value {
    let mut view = json!({
        "request_id": job.request_id,
        "task_id": job.id,
        "provider_task_id": job.provider_task_id,
        "status": job.status.as_str(),
        "model": job.model,
        "product": job.product,
        "outputs": job.outputs.iter().map(|o| json!({"url": o.url, "mime": o.mime})).collect::<Vec<_>>(),
        "seed": job.seed,
        "credits": credits(job.estimate_micros),
        "price_version": job.price_version,
        "usage_event_id": job.usage_event_id,
        "error": job.error_code.as_ref().map(|code| json!({"code": code, "message": job.error_message})),
        "created_at": format_rfc3339(job.created_at),
        "finished_at": job.finished_at.map(format_rfc3339),
    });
    // What a success used (tokens, media seconds), where the upstream said.
    if let Some(usage) = job
        .usage
        .as_deref()
        .and_then(|u| serde_json::from_str::<Value>(u).ok())
    {
        view["usage"] = usage;
    }
    match reader {
        JobReader::Owner => view["charged"] = credits(job.charged_micros.unwrap_or(0)),
        JobReader::Operator(gate) => {
            let estimate: Value = serde_json::from_str(&job.estimate).unwrap_or(Value::Null);
            for (name, value) in [
                ("id", json!(job.id)),
                ("account_id", json!(job.account_id)),
                ("estimate", estimate),
                ("charged", json!(job.charged_micros.map(credits))),
                ("hold_id", json!(job.hold_id)),
                ("provider", json!(job.provider)),
                ("upstream_model", json!(job.upstream_model)),
                ("submit_attempts", json!(job.submit_attempts)),
                ("polls", json!(job.polls)),
                ("output_url_base", json!(gate.output_url_base(job))),
                ("deadline", json!(format_rfc3339(job.deadline))),
                ("updated_at", json!(format_rfc3339(job.updated_at))),
            ] {
                view[name] = value;
            }
            // Where each kept output came from: the operator's alone.
            if let Ok(files) = gate.kept_files(&job.id) {
                if !files.is_empty() {
                    view["kept_files"] = files.iter().map(kept_file).collect();
                }
            }
        }
    }
    view
}

/// A kept output file, for the operator: where it lies, where it came
/// from, and until when it is served.
pub fn kept_file(file: &MediaRow) -> Value {
    json!({
        "index": file.idx,
        "path": file.path,
        "mime": file.mime,
        "bytes": file.bytes,
        "sha256": file.sha256.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        "upstream_url": file.upstream_url,
        "created_at": format_rfc3339(file.created_at),
        "expires_at": format_rfc3339(file.expires_at),
        "removed_at": file.removed_at.map(format_rfc3339),
    })
}

/// A submission's answer: the owner's view of its job and whether it
/// replayed an earlier one.
pub fn submitted(submitted: &Submitted) -> Value {
    let mut view = job(&submitted.job, JobReader::Owner);
    view["replayed"] = json!(submitted.replayed);
    // Only when the account lacked credits and an auto top-up bought them.
    if let Some(auto) = &submitted.auto_topup {
        view["auto_topup"] = json!({ "applied": auto.applied, "message": auto.message });
    }
    view
}

/// The models listing (`GET /v1/models/list`): the core's serialised
/// [`Listing`], each model with `credits`, the price of its default
/// request, as the reference's tables list it.
pub fn models(listing: &Listing) -> Value {
    let mut view = serde_json::to_value(listing).unwrap_or(Value::Null);
    if let Some(models) = view["models"].as_array_mut() {
        for model in models {
            model["credits"] = model["default_credits"].clone();
        }
    }
    view
}

/// An agent's registration: its id and the code its owner binds (shown
/// once), until when.
pub fn registration(registration: &AgentRegistration) -> Value {
    json!({
        "agent_id": registration.agent_id,
        "registration_code": registration.registration_code,
        "expires_at": format_rfc3339(registration.expires_at),
    })
}

/// A bound agent: its account and the scopes its keys may carry.
pub fn agent(agent: &Agent) -> Value {
    json!({
        "agent_id": agent.id,
        "account_id": agent.account_id,
        "allowed_scopes": agent.allowed_scopes,
    })
}

/// A key an agent created: its secret, shown once.
pub fn created_agent_key(created: &CreatedAgentKey) -> Value {
    json!({
        "key_id": created.key_id,
        "api_key": created.api_key,
        "scopes": created.scopes,
        "expires_at": created.expires_at.map(format_rfc3339),
    })
}

/// A token grant as an agent receives it: the access token (`Bearer`, for
/// `expires_in` seconds), who it acts as and for, its scopes, and the
/// refresh token where one was issued (the agent flow; the Moltbook
/// exchange issues none).
pub fn token(access: &AccessGrant) -> Value {
    token_view(TokenView {
        access_token: &access.access_token,
        token_type: access.token_type,
        expires_in: access.expires_in,
        refresh_token: None,
        agent_id: &access.agent_id,
        account_id: &access.account_id,
        scopes: &access.scopes,
    })
}

/// [`token`] of the agent flow's grant, with its refresh token.
pub fn token_with_refresh(grant: &TokenGrant) -> Value {
    token_view(TokenView {
        access_token: &grant.access_token,
        token_type: grant.token_type,
        expires_in: grant.expires_in,
        refresh_token: Some(&grant.refresh_token),
        agent_id: &grant.agent_id,
        account_id: &grant.account_id,
        scopes: &grant.scopes,
    })
}

/// The fields of a token grant, whichever flow issued it.
struct TokenView<'a> {
    access_token: &'a str,
    token_type: &'a str,
    expires_in: u64,
    refresh_token: Option<&'a str>,
    agent_id: &'a str,
    account_id: &'a str,
    scopes: &'a [String],
}

/// The one shape of a token grant.
fn token_view(grant: TokenView<'_>) -> Value {
    let mut view = json!({
        "access_token": grant.access_token,
        "token_type": grant.token_type,
        "expires_in": grant.expires_in,
        "agent_id": grant.agent_id,
        "account_id": grant.account_id,
        "scopes": grant.scopes,
    });
    if let Some(refresh_token) = grant.refresh_token {
        view["refresh_token"] = json!(refresh_token);
    }
    view
}

/// An API key, without its secret.
pub fn key(key: &creditgate::ApiKeyInfo) -> Value {
    json!({
        "key_id": key.id,
        "name": key.name,
        "account_id": key.account_id,
        "agent_id": key.agent_id,
        "scopes": key.scopes,
        "created_at": format_rfc3339(key.created_at),
        "expires_at": key.expires_at.map(format_rfc3339),
        "revoked_at": key.revoked_at.map(format_rfc3339),
        "last_used_at": key.last_used_at.map(format_rfc3339),
    })
}

/// A list of API keys, without their secrets: `{"keys": [...]}`.
pub fn keys(keys: &[creditgate::ApiKeyInfo]) -> Value {
    json!({ "keys": keys.iter().map(key).collect::<Vec<_>>() })
}

/// A verification report.
pub fn verify_report(report: &VerifyReport) -> Value {
    json!({
        "ok": report.is_ok(),
        "damaged": report.damaged,
        "transfers": report.transfers,
        "accounts": report.accounts,
        "open_holds": report.open_holds,
        "violations": report.violations.iter().map(|v| json!({
            "check": v.check,
            "detail": v.detail,
        })).collect::<Vec<_>>(),
        "violations_omitted": report.violations_omitted,
    })
}

/// A verification report for people: one line when the ledger is sound;
/// else what failed (a damaged file, or the count of violations) and one
/// line per violation.
pub fn verify_text(report: &VerifyReport) -> String {
    let summary = format!(
        "{} transfers, {} ledger accounts, {} open holds",
        report.transfers, report.accounts, report.open_holds
    );
    if report.is_ok() {
        return format!("ledger ok: {summary}");
    }
    let problems = report.violations.len() + report.violations_omitted;
    let headline = if report.damaged {
        format!(
            "ledger verify FAILED: the database file is damaged ({problems} problem(s) found by SQLite's integrity check); the ledger was not checked. Restore the last copy made with `creditgate backup`."
        )
    } else {
        format!("ledger verify FAILED: {problems} violation(s) in {summary}")
    };
    std::iter::once(headline)
        .chain(
            report
                .violations
                .iter()
                .map(|v| format!("  {}: {}", v.check, v.detail)),
        )
        .collect::<Vec<_>>()
        .join("\n")
}

/// A core error as `{error, message}` plus the fields an agent needs to act.
pub fn error(err: &Error) -> Value {
    let mut body = error_data(err);
    body["message"] = json!(err.to_string());
    body
}

/// The machine part of an error: `error` (the code) and the fields an agent
/// needs to act on it (`field`, `required`/`available`/`suggestion`,
/// `close_matches`, ...). The CLI and the HTTP envelope both use it.
pub fn error_data(err: &Error) -> Value {
    let mut body = json!({ "error": err.code() });
    match err {
        Error::InvalidRequest { field, .. } => body["field"] = json!(field),
        Error::InsufficientCredits {
            required_micros,
            available_micros,
            suggestion,
        } => {
            body["required"] = credits(*required_micros);
            body["available"] = credits(*available_micros);
            body["suggestion"] = json!(suggestion
                .as_deref()
                .unwrap_or("Use a cheaper model or ask the owner to top up."));
        }
        Error::ExistsWithDifferentFields { field, .. } => body["field"] = json!(field),
        Error::UnknownPriceVersion { active, .. } => body["active_price_version"] = json!(active),
        Error::InvalidCatalog(inner) => body["path"] = json!(inner.path),
        Error::Forbidden { scope } => body["scope"] = json!(scope),
        Error::AgentNotBound { agent_id } => body["agent_id"] = json!(agent_id),
        Error::IdentityRefused { provider, reason } => {
            body["provider"] = json!(provider);
            body["reason"] = json!(reason);
        }
        Error::UpstreamUnavailable { upstream, .. } => body["upstream"] = json!(upstream),
        Error::PayloadTooLarge { limit_bytes } => body["limit_bytes"] = json!(limit_bytes),
        Error::WorkersFailing {
            failing_steps,
            reason,
        } => {
            body["failing_steps"] = json!(failing_steps);
            body["reason"] = json!(reason);
        }
        Error::RateLimited { retry_after_ms } => {
            body["retry_after"] = json!(retry_after_ms.div_ceil(1000));
        }
        Error::PlanLimitReached {
            plan,
            product,
            limit,
            used,
            reset_at,
        } => {
            body["plan"] = json!(plan);
            body["product"] = json!(product);
            body["limit"] = json!(limit);
            body["used"] = json!(used);
            body["reset_at"] = json!(creditgate::clock::format_rfc3339(*reset_at));
        }
        Error::SpendCapReached {
            period,
            cap_micros,
            spent_micros,
            reset_at,
            ..
        } => {
            body["period"] = json!(period);
            body["limit"] = credits(*cap_micros);
            body["spent"] = credits(*spent_micros);
            body["reset_at"] = json!(creditgate::clock::format_rfc3339(*reset_at));
        }
        Error::Estimate(inner) => {
            if let Some(field) = inner.field() {
                body["field"] = json!(field);
            }
            match inner {
                creditgate::pricing::EstimateError::UnknownModel { close_matches, .. } => {
                    body["close_matches"] = json!(close_matches);
                }
                creditgate::pricing::EstimateError::InvalidOption { allowed, .. } => {
                    body["allowed"] = json!(allowed);
                }
                _ => {}
            }
        }
        _ => {}
    }
    body
}

/// `providers check`: one line per provider instance, and its JSON.
pub fn provider_checks(checked: &[crate::providers::Checked]) -> (Value, String) {
    let mut lines = Vec::with_capacity(checked.len());
    let mut items = Vec::with_capacity(checked.len());
    for check in checked {
        match &check.outcome {
            Ok(report) => {
                let auth = match report.auth_ok {
                    Some(true) => "auth ok",
                    Some(false) => "auth REFUSED",
                    None => "no auth",
                };
                let credits = report
                    .upstream_credits
                    .as_deref()
                    .map(|credits| format!("; upstream credits {credits}"))
                    .unwrap_or_default();
                lines.push(format!(
                    "{}\t{}\t{auth}{credits}\t{}",
                    check.name,
                    if report.reachable {
                        "reachable"
                    } else {
                        "UNREACHABLE"
                    },
                    report.detail
                ));
                items.push(json!({
                    "provider": check.name,
                    "ok": check.is_ok(),
                    "reachable": report.reachable,
                    "auth_ok": report.auth_ok,
                    "upstream_credits": report.upstream_credits,
                    "detail": report.detail,
                }));
            }
            Err(err) => {
                lines.push(format!("{}\tUNREACHABLE\t{err}", check.name));
                items.push(json!({
                    "provider": check.name,
                    "ok": false,
                    "reachable": false,
                    "error": err.to_string(),
                }));
            }
        }
    }
    (json!({ "providers": items }), lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::http::test_support;

    fn keys(view: &Value) -> BTreeSet<&str> {
        view.as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect()
    }

    /// One job view, two readers: the owner's poll shape and the operator's
    /// listing, each with exactly the fields it had when they were two
    /// functions, and `charged` 0 for the owner, null for the operator,
    /// until the job is charged.
    #[test]
    fn the_owner_and_the_operator_each_see_their_job_fields() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gate = test_support::gate(dir.path(), "render.db");
        let account = test_support::account(&gate, "a");
        gate.grant("seed", &account, 100.into(), "").expect("grant");
        let body = json!({"request_id": "r1", "model": "z-image", "prompt": "x"});
        let answer = gate.submit(&account, &body).expect("submit");
        let owner = job(&answer.job, JobReader::Owner);
        let shared = [
            "request_id",
            "task_id",
            "provider_task_id",
            "status",
            "model",
            "product",
            "outputs",
            "seed",
            "credits",
            "charged",
            "price_version",
            "usage_event_id",
            "error",
            "created_at",
            "finished_at",
        ];
        assert_eq!(keys(&owner), BTreeSet::from(shared));
        assert_eq!(owner["charged"], json!(0));
        let operator = job(&answer.job, JobReader::Operator(&gate));
        let mut all = BTreeSet::from(shared);
        all.extend([
            "id",
            "account_id",
            "estimate",
            "hold_id",
            "provider",
            "upstream_model",
            "submit_attempts",
            "polls",
            "output_url_base",
            "deadline",
            "updated_at",
        ]);
        assert_eq!(keys(&operator), all);
        assert_eq!(operator["charged"], Value::Null);
        assert_eq!(submitted(&answer)["replayed"], json!(false));
    }
}
