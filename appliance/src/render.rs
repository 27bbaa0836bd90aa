//! Rendering core values for people and for `--json`. Credits are written as
//! exact JSON numbers (`20`, `0.0165`), never through floats; timestamps as
//! RFC 3339. The only module of the binary that knows output shapes.

use creditgate::clock::format_rfc3339;
use creditgate::money::to_credits;
use creditgate::pricing::versions::PriceVersionInfo;
use creditgate::pricing::Estimate;
use creditgate::{
    Account, Balance, Error, Gate, HistoryPage, Job, Transfer, TransferKind, VerifyReport,
};
use serde_json::{json, Number, Value};

/// Micro-credits as an exact JSON number of credits.
pub fn credits(micros: i64) -> Value {
    let text = to_credits(micros).to_string();
    // `Decimal`'s display is always a valid JSON number, and with
    // serde_json's arbitrary_precision it is kept digit for digit.
    text.parse::<Number>()
        .map_or(Value::String(text), Value::Number)
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

/// A balance: available, pending and posted credits.
pub fn balance(account_id: &str, balance: &Balance) -> Value {
    json!({
        "account_id": account_id,
        "available": credits(balance.available),
        "pending": credits(balance.pending),
        "posted": credits(balance.posted),
    })
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
/// or refund), `held` (reserved for a job), `out` (a capture: charged),
/// `released` (a hold voided or expired; the credits are available again).
pub fn direction(kind: TransferKind) -> &'static str {
    match kind {
        TransferKind::Grant | TransferKind::Refund => "in",
        TransferKind::Hold => "held",
        TransferKind::Capture => "out",
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

/// A job as operators see it (the CLI): everything but the output token.
pub fn job(gate: &Gate, job: &Job) -> Value {
    let estimate: Value = serde_json::from_str(&job.estimate).unwrap_or(Value::Null);
    json!({
        "id": job.id,
        "task_id": job.id,
        "account_id": job.account_id,
        "request_id": job.request_id,
        "status": job.status.as_str(),
        "product": job.product,
        "model": job.model,
        "price_version": job.price_version,
        "estimate": estimate,
        "credits": credits(job.estimate_micros),
        "charged": job.charged_micros.map(credits),
        "hold_id": job.hold_id,
        "usage_event_id": job.usage_event_id,
        "provider": job.provider,
        "provider_task_id": job.provider_task_id,
        "submit_attempts": job.submit_attempts,
        "polls": job.polls,
        "outputs": job.outputs.iter().map(|o| json!({"url": o.url, "mime": o.mime})).collect::<Vec<_>>(),
        "output_url_base": gate.output_url_base(job),
        "seed": job.seed,
        "error": job.error_code.as_ref().map(|code| json!({"code": code, "message": job.error_message})),
        "deadline": format_rfc3339(job.deadline),
        "created_at": format_rfc3339(job.created_at),
        "updated_at": format_rfc3339(job.updated_at),
        "finished_at": job.finished_at.map(format_rfc3339),
    })
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
