//! The console's pages: each reads or changes through one or two `Gate`
//! calls and renders with `html`. A page answers [`Answer`]: a page to
//! show, or where to go after a change (303, so a reload never posts
//! twice). Every list is bounded and pages with a cursor; every change is
//! a POST whose CSRF token `console` has already checked.

use creditgate::clock::format_rfc3339;
use creditgate::identity::sessions::ConsoleSession;
use creditgate::{Error, Gate, Job, JobFilter, JobStatus, NewAccount, Transfer};
use serde_json::Value;

use super::html::{page, Html, Section};
use crate::render;

/// Accounts, jobs or transfers on one page.
pub const PAGE_ROWS: usize = 50;
/// Fields of a form or query string read, at most.
pub const FORM_FIELDS_MAX: usize = 64;

/// What a page answers.
#[derive(Debug)]
pub enum Answer {
    /// A page: its status and HTML.
    Page(u16, String),
    /// Go there (303 See Other).
    Redirect(String),
}

/// A form body or a query string, decoded (`+` is a space, `%XX` a byte),
/// at most [`FORM_FIELDS_MAX`] fields.
#[derive(Debug, Default, Clone)]
pub struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    /// Decodes `application/x-www-form-urlencoded` text; `bad_request` for
    /// too many fields or bytes that are not UTF-8 once decoded.
    pub fn parse(text: &[u8]) -> Result<Form, Error> {
        let mut fields = Vec::new();
        for pair in text.split(|b| *b == b'&').filter(|pair| !pair.is_empty()) {
            if fields.len() == FORM_FIELDS_MAX {
                return Err(invalid("form", format!("at most {FORM_FIELDS_MAX} fields")));
            }
            let (name, value) = match pair.iter().position(|b| *b == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &b""[..]),
            };
            fields.push((decode(name)?, decode(value)?));
        }
        Ok(Form { fields })
    }

    /// Decodes a `multipart/form-data` body with `boundary`: each part's
    /// `name` and its content as text (a file's too: the console uploads
    /// only JSON), at most [`FORM_FIELDS_MAX`] parts.
    pub fn parse_multipart(body: &[u8], boundary: &str) -> Result<Form, Error> {
        let bad = || invalid("form", "a malformed multipart form");
        let delimiter = format!("--{boundary}");
        let mut fields = Vec::new();
        let mut rest = body;
        let first = find(rest, delimiter.as_bytes()).ok_or_else(bad)?;
        rest = &rest[first + delimiter.len()..];
        loop {
            if rest.starts_with(b"--") {
                break;
            }
            rest = rest.strip_prefix(b"\r\n").ok_or_else(bad)?;
            let head_end = find(rest, b"\r\n\r\n").ok_or_else(bad)?;
            let head = std::str::from_utf8(&rest[..head_end]).map_err(|_| bad())?;
            rest = &rest[head_end + 4..];
            let end = find(rest, format!("\r\n{delimiter}").as_bytes()).ok_or_else(bad)?;
            let content = &rest[..end];
            rest = &rest[end + 2 + delimiter.len()..];
            let name = head
                .lines()
                .find(|line| {
                    line.to_ascii_lowercase()
                        .starts_with("content-disposition:")
                })
                .and_then(|line| {
                    line.split(';')
                        .map(str::trim)
                        .find_map(|param| param.strip_prefix("name="))
                })
                .map(|name| name.trim_matches('"').to_owned())
                .ok_or_else(bad)?;
            if fields.len() == FORM_FIELDS_MAX {
                return Err(invalid("form", format!("at most {FORM_FIELDS_MAX} fields")));
            }
            let text = String::from_utf8(content.to_vec())
                .map_err(|_| invalid(&name, "must be UTF-8 text"))?;
            fields.push((name, text));
        }
        Ok(Form { fields })
    }

    /// The first value of `name`, if any.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The first value of `name`, trimmed, or `None` when absent or blank.
    pub fn filled(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// [`Form::filled`], or `invalid_request` naming the field.
    pub fn required(&self, name: &str) -> Result<&str, Error> {
        self.filled(name)
            .ok_or_else(|| invalid(name, "is required"))
    }

    /// The words of `name` (split at blanks and commas): scopes.
    pub fn words(&self, name: &str) -> Vec<String> {
        self.get(name)
            .unwrap_or("")
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|word| !word.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// A path segment, percent-decoded.
pub fn decode_segment(segment: &str) -> Result<String, Error> {
    decode(segment.replace('+', "%2B").as_bytes())
}

/// An `invalid_request` naming `field`.
pub fn invalid(field: &str, message: impl Into<String>) -> Error {
    Error::InvalidRequest {
        field: field.to_owned(),
        message: message.into(),
    }
}

fn decode(bytes: &[u8]) -> Result<String, Error> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| invalid("form", "fields must be UTF-8 text"))
}

/// What every page of a signed-in operator is given.
pub struct Ctx<'a> {
    /// The facade.
    pub gate: &'a Gate,
    /// The operator's session.
    pub session: &'a ConsoleSession,
    /// The query string, decoded.
    pub query: &'a Form,
    /// The posted form, decoded (empty for a GET).
    pub form: &'a Form,
}

impl Ctx<'_> {
    fn show(&self, title: &str, section: Section, body: &Html) -> Result<Answer, Error> {
        Ok(Answer::Page(
            200,
            page(title, section, Some(&self.session.csrf_token), body),
        ))
    }

    fn csrf(&self) -> &str {
        &self.session.csrf_token
    }
}

fn when(at: i64) -> String {
    format_rfc3339(at)
}

fn credits(micros: i64) -> String {
    render::credits(micros).to_string()
}

/// `GET /console`: the last day's jobs by status.
pub fn overview(ctx: &Ctx) -> Result<Answer, Error> {
    let overview = ctx.gate.console_overview()?;
    let mut body = Html::new();
    body.element("h2", "Jobs of the last 24 hours");
    if overview.jobs_by_status.is_empty() {
        body.element("p", "No jobs in the last 24 hours.");
    } else {
        body.raw("<table><caption>Jobs by status</caption>")
            .head_row(&["status", "jobs"])
            .raw("<tbody>");
        for (status, count) in &overview.jobs_by_status {
            body.raw("<tr><td>")
                .link(
                    &format!("/console/jobs?status={}", status.as_str()),
                    status.as_str(),
                )
                .raw("</td>")
                .element("td", &count.to_string())
                .raw("</tr>");
        }
        body.raw("</tbody></table>");
        if overview.jobs_capped {
            body.element(
                "p",
                &format!(
                    "Counted over the newest {} jobs of the day.",
                    overview.jobs_counted
                ),
            );
        }
    }
    let failing: Vec<(&str, u64)> = overview
        .jobs_by_provider
        .iter()
        .filter(|(_, status, count)| *status == JobStatus::Failed && *count > 0)
        .map(|(provider, _, count)| (provider.as_str(), *count))
        .collect();
    body.element("h2", "Failing providers");
    if failing.is_empty() {
        body.element("p", "No job failed in the last 24 hours.");
    } else {
        body.raw("<table><caption>Failed jobs of the last 24 hours by provider</caption>")
            .head_row(&["provider", "failed jobs"])
            .raw("<tbody>");
        for (provider, count) in failing {
            body.row(&[provider, &count.to_string()]);
        }
        body.raw("</tbody></table><p>")
            .link("/console/providers", "The providers")
            .raw("</p>");
    }
    let below = ctx.gate.wallets_below_threshold(PAGE_ROWS)?;
    body.element("h2", "Wallets below their auto top-up threshold");
    if below.is_empty() {
        body.element("p", "None.");
    } else {
        body.raw("<table>")
            .head_row(&["account", "available", "threshold"])
            .raw("<tbody>");
        for (account, available, threshold) in &below {
            body.raw("<tr><td>")
                .link(&format!("/console/accounts/{account}"), account)
                .raw("</td>")
                .element("td", &credits(*available))
                .element("td", &credits(*threshold))
                .raw("</tr>");
        }
        body.raw("</tbody></table>");
    }
    money_chart(&mut body, &overview);
    ctx.show("Overview", Section::Overview, &body)
}

/// Colours of the chart's series: grants, refunds, then spending by
/// product in turn.
const GRANT_COLOUR: &str = "#2b7bb9";
const REFUND_COLOUR: &str = "#b95c2b";
const PRODUCT_COLOURS: [&str; 6] = [
    "#2e8b57", "#8e44ad", "#c0392b", "#d4a017", "#16a085", "#555555",
];

/// The last 30 days' credits granted, spent (by product) and refunded: an
/// inline SVG bar chart and, beside it, the same numbers as a table.
fn money_chart(body: &mut Html, overview: &creditgate::Overview) {
    use creditgate::TransferKind;
    let days = creditgate::OVERVIEW_DAYS;
    let mut products: Vec<&str> = overview
        .daily
        .iter()
        .filter(|t| t.kind == TransferKind::Capture)
        .map(|t| t.product.as_str())
        .collect();
    products.sort_unstable();
    products.dedup();
    let total = |day: i64, kind: TransferKind, product: Option<&str>| -> i64 {
        overview
            .daily
            .iter()
            .filter(|t| t.day == day && t.kind == kind && product.is_none_or(|p| p == t.product))
            .map(|t| t.micros)
            .sum()
    };
    let day_list: Vec<i64> = (0..days).map(|d| overview.first_day + d).collect();
    let peak = day_list
        .iter()
        .flat_map(|&day| {
            [
                total(day, TransferKind::Grant, None),
                total(day, TransferKind::Capture, None),
                total(day, TransferKind::Refund, None),
            ]
        })
        .max()
        .unwrap_or(0)
        .max(1);
    let (width, height, column) = (30 * 24 + 40, 220_i64, 24_i64);
    let bar = |micros: i64| micros * (height - 20) / peak;
    let date = |day: i64| format_rfc3339(day * creditgate::plans::DAY_MS)[..10].to_owned();

    body.element("h2", "Credits of the last 30 days");
    body.raw("<figure><svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-labelledby=\"money-title\"")
        .attr("viewBox", &format!("0 0 {width} {}", height + 20))
        .attr("width", &width.to_string())
        .attr("height", &(height + 20).to_string())
        .raw("><title id=\"money-title\">Credits granted, spent by product and refunded per day; the table below has the numbers</title>");
    for (index, &day) in day_list.iter().enumerate() {
        let x0 = 30 + index as i64 * column;
        let mut rect = |x: i64, y: i64, h: i64, colour: &str, label: String| {
            if h <= 0 {
                return;
            }
            body.raw("<rect")
                .attr("x", &x.to_string())
                .attr("y", &y.to_string())
                .attr("width", "6")
                .attr("height", &h.to_string())
                .attr("fill", colour)
                .raw("><title>")
                .text(&label)
                .raw("</title></rect>");
        };
        let granted = total(day, TransferKind::Grant, None);
        rect(
            x0,
            height - bar(granted),
            bar(granted),
            GRANT_COLOUR,
            format!("{} granted {}", date(day), credits(granted)),
        );
        let mut top = height;
        for (p, product) in products.iter().enumerate() {
            let spent = total(day, TransferKind::Capture, Some(product));
            let h = bar(spent);
            top -= h;
            rect(
                x0 + 7,
                top,
                h,
                PRODUCT_COLOURS[p % PRODUCT_COLOURS.len()],
                format!("{} spent on {} {}", date(day), product, credits(spent)),
            );
        }
        let refunded = total(day, TransferKind::Refund, None);
        rect(
            x0 + 14,
            height - bar(refunded),
            bar(refunded),
            REFUND_COLOUR,
            format!("{} refunded {}", date(day), credits(refunded)),
        );
        if index % 7 == 0 {
            body.raw("<text font-size=\"10\"")
                .attr("x", &x0.to_string())
                .attr("y", &(height + 14).to_string())
                .raw(">")
                .text(&date(day)[5..])
                .raw("</text>");
        }
    }
    body.raw("<line x1=\"28\" x2=\"28\" y1=\"0\"")
        .attr("y2", &height.to_string())
        .raw(" stroke=\"#888\"/></svg><figcaption>Granted (")
        .raw("<span class=\"swatch-grant\">blue</span>), spent by product (");
    for (p, product) in products.iter().enumerate() {
        if p > 0 {
            body.raw(", ");
        }
        let name = if product.is_empty() {
            "no job"
        } else {
            product
        };
        body.text(&format!(
            "{name}: {}",
            PRODUCT_COLOURS[p % PRODUCT_COLOURS.len()]
        ));
    }
    body.raw("), refunded (<span class=\"swatch-refund\">orange</span>).</figcaption></figure>");

    let mut head = vec!["day".to_owned(), "granted".to_owned()];
    head.extend(
        products
            .iter()
            .map(|p| format!("spent: {}", if p.is_empty() { "no job" } else { p })),
    );
    head.push("refunded".to_owned());
    let head: Vec<&str> = head.iter().map(String::as_str).collect();
    body.raw("<table><caption>Credits per day (the chart's numbers)</caption>")
        .head_row(&head)
        .raw("<tbody>");
    for &day in day_list.iter().rev() {
        let mut cells = vec![date(day), credits(total(day, TransferKind::Grant, None))];
        cells.extend(
            products
                .iter()
                .map(|p| credits(total(day, TransferKind::Capture, Some(p)))),
        );
        cells.push(credits(total(day, TransferKind::Refund, None)));
        let cells: Vec<&str> = cells.iter().map(String::as_str).collect();
        body.row(&cells);
    }
    body.raw("</tbody></table>");
    if overview.daily_capped {
        body.element(
            "p",
            &format!(
                "Counted over the newest {} transfers: older days of the window are not complete.",
                creditgate::OVERVIEW_TRANSFERS_MAX
            ),
        );
    }
}

/// `GET /console/accounts`: accounts in creation order, and a form to
/// create one.
pub fn accounts(ctx: &Ctx) -> Result<Answer, Error> {
    let after = ctx.query.filled("after");
    let accounts = ctx.gate.accounts_page(after, PAGE_ROWS + 1)?;
    let mut body = Html::new();
    body.element("h2", "Create an account")
        .post_form("/console/accounts", ctx.csrf())
        .input("text", "name", "Name", "", true)
        .submit("Create account");
    body.element("h2", "Accounts");
    body.raw("<table>")
        .head_row(&["account", "name", "plan", "created"])
        .raw("<tbody>");
    for account in accounts.iter().take(PAGE_ROWS) {
        body.raw("<tr><td>")
            .link(&format!("/console/accounts/{}", account.id), &account.id)
            .raw("</td>")
            .element("td", &account.name)
            .element("td", &account.plan)
            .element("td", &when(account.created_at))
            .raw("</tr>");
    }
    body.raw("</tbody></table>");
    if accounts.len() > PAGE_ROWS {
        let last = &accounts[PAGE_ROWS - 1].id;
        body.raw("<p>")
            .link(&format!("/console/accounts?after={last}"), "Next page")
            .raw("</p>");
    }
    ctx.show("Accounts", Section::Accounts, &body)
}

/// `POST /console/accounts`: creates an account and shows it.
pub fn create_account(ctx: &Ctx) -> Result<Answer, Error> {
    let name = ctx.form.required("name")?;
    let account = ctx.gate.create_account(&NewAccount::named(name))?;
    Ok(Answer::Redirect(format!(
        "/console/accounts/{}",
        account.id
    )))
}

/// `GET /console/accounts/{id}`: its balance, a grant form, its keys and
/// its latest transfers.
pub fn account(ctx: &Ctx, id: &str) -> Result<Answer, Error> {
    let account = ctx.gate.account(id)?;
    let balance = ctx.gate.balance(id)?;
    let keys = ctx.gate.list_api_keys(id)?;
    let history = ctx
        .gate
        .history(id, ctx.query.filled("history"), PAGE_ROWS)?;
    let base = format!("/console/accounts/{id}");
    let mut body = Html::new();
    if let Some(granted) = ctx.query.filled("granted") {
        body.notice(&format!("Granted: transfer {granted}."), false);
    }
    if let Some(revoked) = ctx.query.filled("revoked") {
        body.notice(&format!("Key {revoked} is revoked."), false);
    }
    body.raw("<dl><dt>Name</dt><dd>")
        .text(&account.name)
        .raw("</dd><dt>Plan</dt><dd>")
        .text(&account.plan)
        .raw("</dd><dt>Created</dt><dd>")
        .text(&when(account.created_at))
        .raw("</dd></dl>");
    body.raw("<table><caption>Balance (credits)</caption>")
        .head_row(&["available", "pending", "posted"])
        .raw("<tbody>")
        .row(&[
            &credits(balance.available),
            &credits(balance.pending),
            &credits(balance.posted),
        ])
        .raw("</tbody></table>");

    let mut plans: Vec<(String, String)> = ctx
        .gate
        .plans()?
        .into_iter()
        .map(|plan| (plan.name.clone(), plan.name))
        .collect();
    plans.push((
        creditgate::plans::NO_PLAN.to_owned(),
        "none (no caps)".to_owned(),
    ));
    body.post_form(&format!("{base}/plan"), ctx.csrf())
        .select("plan", "Plan", &plans, &account.plan)
        .submit("Change plan");

    body.element("h2", "Grant credits")
        .post_form(&format!("{base}/grants"), ctx.csrf())
        // Minted with the page: posting this form twice grants once.
        .hidden("grant_id", &creditgate::ids::random_id("console-grant-"))
        .input("text", "credits", "Credits", "", true)
        .input("text", "memo", "Memo", "", false)
        .submit("Grant");

    body.element("h2", "API keys");
    body.raw("<table>")
        .head_row(&[
            "key",
            "name",
            "scopes",
            "created",
            "expires",
            "last used",
            "",
        ])
        .raw("<tbody>");
    for key in &keys {
        body.raw("<tr>")
            .element("td", &key.id)
            .element("td", &key.name)
            .element("td", &key.scopes.join(" "))
            .element("td", &when(key.created_at))
            .element(
                "td",
                &key.expires_at.map(when).unwrap_or_else(|| "never".into()),
            )
            .element(
                "td",
                &key.last_used_at.map(when).unwrap_or_else(|| "never".into()),
            )
            .raw("<td>");
        match key.revoked_at {
            Some(at) => {
                body.text(&format!("revoked {}", when(at)));
            }
            None => {
                body.action(
                    &format!("{base}/keys/{}/revoke", key.id),
                    ctx.csrf(),
                    "Revoke",
                    &format!("Revoke key {}", key.id),
                );
            }
        }
        body.raw("</td></tr>");
    }
    body.raw("</tbody></table>");
    body.element("h3", "Create a key")
        .post_form(&format!("{base}/keys"), ctx.csrf())
        .input("text", "name", "Name", "console", true)
        .input(
            "text",
            "scopes",
            "Scopes (space-separated: image video chat admin ...)",
            &ctx.gate.product_scopes()?.join(" "),
            true,
        )
        .input(
            "number",
            "expires_in_days",
            "Expires in days (blank: never)",
            "",
            false,
        )
        .submit("Create key");

    body.element("h2", "Agents");
    let agents = ctx.gate.agents_of(id, PAGE_ROWS)?;
    if agents.is_empty() {
        body.element("p", "No agent is bound to this account.");
    } else {
        body.raw("<table>")
            .head_row(&["agent", "name", "scopes", "bound"])
            .raw("<tbody>");
        for agent in &agents {
            body.row(&[
                &agent.id,
                &agent.name,
                &agent
                    .allowed_scopes
                    .as_ref()
                    .map(|scopes| scopes.join(" "))
                    .unwrap_or_default(),
                &agent.bound_at.map(when).unwrap_or_default(),
            ]);
        }
        body.raw("</tbody></table>");
    }

    body.element("h2", "Transfers");
    transfer_table(&mut body, &history.transfers);
    if let Some(next) = &history.next_cursor {
        body.raw("<p>")
            .link(&format!("{base}?history={next}"), "Older transfers")
            .raw("</p>");
    }
    ctx.show(
        &format!("Account {}", account.name),
        Section::Accounts,
        &body,
    )
}

/// `POST /console/accounts/{id}/grants`: grants credits, once per grant id.
pub fn grant(ctx: &Ctx, id: &str) -> Result<Answer, Error> {
    let grant_id = ctx.form.required("grant_id")?;
    let amount = ctx.form.required("credits")?;
    let amount = creditgate::money::parse_credits(amount).map_err(|_| {
        invalid(
            "credits",
            "must be a number of credits (at most 6 decimals)",
        )
    })?;
    let memo = ctx.form.get("memo").unwrap_or("").trim();
    let outcome = ctx.gate.grant(grant_id, id, amount, memo)?;
    Ok(Answer::Redirect(format!(
        "/console/accounts/{id}?granted={}",
        outcome.transfer.id
    )))
}

/// `POST /console/accounts/{id}/keys`: creates a key and shows its secret,
/// once (a page, never a redirect: the secret must not be in a URL).
pub fn create_key(ctx: &Ctx, id: &str) -> Result<Answer, Error> {
    let name = ctx.form.filled("name").unwrap_or("console");
    let scopes: Vec<String> = ctx.form.words("scopes");
    let expires_in_days = match ctx.form.filled("expires_in_days") {
        None => None,
        Some(days) => Some(
            days.parse::<u32>()
                .map_err(|_| invalid("expires_in_days", "must be a whole number of days"))?,
        ),
    };
    let (info, secret) = ctx
        .gate
        .create_api_key(id, name, &scopes, expires_in_days)?;
    let mut body = Html::new();
    body.notice("Copy the key now: it is shown only once.", false)
        .secret("new-key", &format!("Key {}", info.id), &secret)
        .raw("<p>Scopes: ")
        .text(&info.scopes.join(" "))
        .raw("</p><p>")
        .link(&format!("/console/accounts/{id}"), "Back to the account")
        .raw("</p>");
    ctx.show("Key created", Section::Accounts, &body)
}

/// `POST /console/accounts/{id}/keys/{key}/revoke`.
pub fn revoke_key(ctx: &Ctx, id: &str, key_id: &str) -> Result<Answer, Error> {
    ctx.gate.revoke_account_api_key(id, key_id)?;
    Ok(Answer::Redirect(format!(
        "/console/accounts/{id}?revoked={key_id}"
    )))
}

/// `GET /console/jobs`: jobs newest first, filtered by account, status and
/// model, a page at a time.
pub fn jobs(ctx: &Ctx) -> Result<Answer, Error> {
    let status = match ctx.query.filled("status") {
        None => None,
        Some(name) => {
            Some(JobStatus::parse(name).ok_or_else(|| invalid("status", "is not a job status"))?)
        }
    };
    let filter = JobFilter {
        account_id: ctx.query.filled("account").map(str::to_owned),
        status,
        model: ctx.query.filled("model").map(str::to_owned),
        before: ctx.query.filled("before").map(str::to_owned),
        limit: PAGE_ROWS,
    };
    let page = ctx.gate.jobs_page(&filter)?;
    let jobs = &page.jobs;
    let mut body = Html::new();
    let mut statuses = vec![(String::new(), "any".to_owned())];
    statuses.extend(
        JobStatus::ALL
            .iter()
            .map(|s| (s.as_str().to_owned(), s.as_str().to_owned())),
    );
    body.get_form("/console/jobs")
        .input(
            "text",
            "account",
            "Account",
            filter.account_id.as_deref().unwrap_or(""),
            false,
        )
        .select(
            "status",
            "Status",
            &statuses,
            status.map_or("", JobStatus::as_str),
        )
        .input(
            "text",
            "model",
            "Model",
            filter.model.as_deref().unwrap_or(""),
            false,
        )
        .submit("Filter");
    body.raw("<table>")
        .head_row(&[
            "job", "status", "model", "account", "estimate", "charged", "created",
        ])
        .raw("<tbody>");
    for job in jobs {
        body.raw("<tr><td>")
            .link(&format!("/console/jobs/{}", job.id), &job.id)
            .raw("</td>")
            .element("td", job.status.as_str())
            .element("td", &job.model)
            .element("td", &job.account_id)
            .element("td", &credits(job.estimate_micros))
            .element("td", &job.charged_micros.map(credits).unwrap_or_default())
            .element("td", &when(job.created_at))
            .raw("</tr>");
    }
    body.raw("</tbody></table>");
    if page.scan_stopped {
        body.element(
            "p",
            &format!(
                "Searched {} jobs for this filter; older jobs were not searched yet.",
                creditgate::jobs::JOBS_SCAN_MAX
            ),
        );
    }
    if let Some(before) = &page.next_before {
        let mut next = format!("/console/jobs?before={before}");
        for (name, value) in [
            ("account", filter.account_id.as_deref()),
            ("status", status.map(JobStatus::as_str)),
            ("model", filter.model.as_deref()),
        ] {
            if let Some(value) = value {
                next.push_str(&format!("&{name}={}", encode(value)));
            }
        }
        let label = if page.scan_stopped {
            "Search older jobs"
        } else {
            "Older jobs"
        };
        body.raw("<p>").link(&next, label).raw("</p>");
    }
    ctx.show("Jobs", Section::Jobs, &body)
}

/// `GET /console/jobs/{id}`: a job's request, estimate, timeline, ledger
/// transfers and outputs.
pub fn job(ctx: &Ctx, id: &str) -> Result<Answer, Error> {
    let job = ctx.gate.job(id)?;
    let mut body = Html::new();
    body.raw("<dl><dt>Status</dt><dd id=\"job-status\">")
        .text(job.status.as_str())
        .raw("</dd><dt>Account</dt><dd>")
        .link(
            &format!("/console/accounts/{}", job.account_id),
            &job.account_id,
        )
        .raw("</dd><dt>Request id</dt><dd>")
        .text(&job.request_id)
        .raw("</dd><dt>Model</dt><dd>")
        .text(&format!(
            "{} ({}), {} on {}",
            job.model, job.product, job.upstream_model, job.provider
        ))
        .raw("</dd><dt>Price version</dt><dd>")
        .text(&job.price_version)
        .raw("</dd>");
    if let Some(code) = &job.error_code {
        body.raw("<dt>Error</dt><dd>").text(&format!(
            "{code}: {}",
            job.error_message.as_deref().unwrap_or("")
        ));
        body.raw("</dd>");
    }
    body.raw("</dl>");
    timeline(&mut body, &job);
    body.element("h2", "Estimate")
        .raw("<p>")
        .text(&format!("{} credits", credits(job.estimate_micros)))
        .raw("</p><pre>")
        .text(&pretty(&job.estimate))
        .raw("</pre>");
    body.element("h2", "Ledger transfers");
    let transfers: Vec<Transfer> = ledger_ids(&job)
        .iter()
        .filter_map(|id| ctx.gate.transfer(id).ok())
        .collect();
    if transfers.is_empty() {
        body.element("p", "None: this job held nothing.");
    } else {
        transfer_table(&mut body, &transfers);
    }
    body.element("h2", "Outputs");
    if job.outputs.is_empty() {
        body.element("p", "None yet.");
    }
    for (index, output) in job.outputs.iter().enumerate() {
        let label = format!("Output {} ({})", index + 1, output.mime);
        body.raw("<figure>");
        if output.mime.starts_with("image/") {
            body.raw("<img")
                .attr("src", &output.url)
                .attr("alt", &label)
                .raw(">");
        } else if output.mime.starts_with("video/") {
            body.raw("<video controls")
                .attr("src", &output.url)
                .attr("aria-label", &label)
                .raw("></video>");
        } else if output.mime.starts_with("audio/") {
            body.raw("<audio controls")
                .attr("src", &output.url)
                .attr("aria-label", &label)
                .raw("></audio>");
        }
        body.raw("<figcaption>")
            .link(&output.url, &label)
            .raw("</figcaption></figure>");
    }
    body.element("h2", "Request")
        .raw("<pre>")
        .text(&pretty(&job.request))
        .raw("</pre>");
    ctx.show(&format!("Job {}", job.id), Section::Jobs, &body)
}

/// The ids the ledger gives a job's transfers: its hold, and whichever of
/// capture, release or expiry resolved it.
fn ledger_ids(job: &Job) -> Vec<String> {
    let Some(hold) = &job.hold_id else {
        return Vec::new();
    };
    vec![
        hold.clone(),
        format!("capture:{}", job.id),
        format!("release:{}", job.id),
        format!("expire:{hold}"),
    ]
}

fn timeline(body: &mut Html, job: &Job) {
    body.raw("<table><caption>Timeline</caption>")
        .head_row(&["when", "what"])
        .raw("<tbody>")
        .row(&[&when(job.created_at), "accepted: the estimate held"]);
    if let Some(at) = job.submit_started_at {
        body.row(&[
            &when(at),
            &format!(
                "sent to {} ({} attempt(s))",
                job.provider, job.submit_attempts
            ),
        ]);
    }
    if job.polls > 0 {
        body.row(&[
            "",
            &format!("polled {} time(s), {} error(s)", job.polls, job.poll_errors),
        ]);
    }
    match job.finished_at {
        Some(at) => body.row(&[&when(at), &format!("finished: {}", job.status.as_str())]),
        None => body.row(&[
            &when(job.updated_at),
            &format!("now {}", job.status.as_str()),
        ]),
    };
    body.raw("</tbody></table>");
}

fn transfer_table(body: &mut Html, transfers: &[Transfer]) {
    body.raw("<table>")
        .head_row(&["transfer", "kind", "from", "to", "credits", "memo", "when"])
        .raw("<tbody>");
    for t in transfers {
        body.row(&[
            &t.id,
            t.kind.as_str(),
            &t.debit_code,
            &t.credit_code,
            &credits(t.amount),
            &t.memo,
            &when(t.created_at),
        ]);
    }
    body.raw("</tbody></table>");
}

/// `GET /console/ledger`: every transfer, newest first, and `ledger
/// verify` on demand.
pub fn ledger(ctx: &Ctx) -> Result<Answer, Error> {
    let page = ctx
        .gate
        .ledger_page(ctx.query.filled("before"), PAGE_ROWS)?;
    let mut body = Html::new();
    body.element("h2", "Verify")
        .element(
            "p",
            "Replays every transfer: balances, the hash chain, holds and their resolutions.",
        )
        .post_form("/console/ledger/verify", ctx.csrf())
        .submit("Verify the ledger");
    body.element("h2", "Transfers");
    transfer_table(&mut body, &page.transfers);
    if let Some(next) = &page.next_cursor {
        body.raw("<p>")
            .link(&format!("/console/ledger?before={next}"), "Older transfers")
            .raw("</p>");
    }
    ctx.show("Ledger", Section::Ledger, &body)
}

/// `POST /console/ledger/verify`: the verification's result.
pub fn verify(ctx: &Ctx) -> Result<Answer, Error> {
    let report = ctx.gate.verify_ledger()?;
    let mut body = Html::new();
    if report.violations.is_empty() {
        body.notice(
            &format!(
                "The ledger verifies: {} transfers, {} ledger accounts, {} open holds.",
                report.transfers, report.accounts, report.open_holds
            ),
            false,
        );
    } else {
        body.notice(
            &format!(
                "The ledger does NOT verify: {} violation(s).",
                report.violations.len() + report.violations_omitted
            ),
            true,
        );
        body.raw("<ul>");
        for violation in &report.violations {
            body.element("li", &format!("{}: {}", violation.check, violation.detail));
        }
        body.raw("</ul>");
    }
    body.raw("<p>")
        .link("/console/ledger", "Back to the ledger")
        .raw("</p>");
    ctx.show("Ledger verification", Section::Ledger, &body)
}

/// `GET /console/agents`: agents waiting to be bound (with the form that
/// binds one by the code it printed) and the latest bound.
pub fn agents(ctx: &Ctx) -> Result<Answer, Error> {
    let (pending, bound) = ctx.gate.agents_overview(PAGE_ROWS)?;
    let mut body = Html::new();
    if let Some(agent) = ctx.query.filled("bound") {
        body.notice(&format!("Agent {agent} is bound."), false);
    }
    if let Some(revoked) = ctx.query.filled("revoked") {
        body.notice(
            &format!("Revoked {revoked} key(s) and their tokens."),
            false,
        );
    }
    body.element("h2", "Bind an agent")
        .element(
            "p",
            "An agent that registered shows its owner a registration code: \
             bind it to an account with the scopes it may use.",
        )
        .post_form("/console/agents", ctx.csrf())
        .input("text", "code", "Registration code", "", true)
        .input("text", "account", "Account", "", true)
        .input(
            "text",
            "scopes",
            "Allowed scopes (space-separated; blank: every product)",
            "",
            false,
        )
        .submit("Bind");
    body.element("h2", "Waiting to be bound");
    if pending.is_empty() {
        body.element("p", "No agent is waiting.");
    } else {
        body.raw("<table>")
            .head_row(&["agent", "name", "version", "registered", "code expires"])
            .raw("<tbody>");
        for agent in &pending {
            body.row(&[
                &agent.id,
                &agent.name,
                &agent.version,
                &when(agent.created_at),
                &when(agent.registration_expires_at),
            ]);
        }
        body.raw("</tbody></table>");
    }
    body.element("h2", "Bound agents");
    body.raw("<table>")
        .head_row(&["agent", "name", "account", "scopes", "bound", ""])
        .raw("<tbody>");
    for agent in &bound {
        let account = agent.account_id.as_deref().unwrap_or("");
        body.raw("<tr>")
            .element("td", &agent.id)
            .element("td", &agent.name)
            .raw("<td>")
            .link(&format!("/console/accounts/{account}"), account)
            .raw("</td>")
            .element(
                "td",
                &agent
                    .allowed_scopes
                    .as_ref()
                    .map(|scopes| scopes.join(" "))
                    .unwrap_or_default(),
            )
            .element("td", &agent.bound_at.map(when).unwrap_or_default())
            .raw("<td>")
            .action(
                &format!("/console/agents/{}/revoke-keys", agent.id),
                ctx.csrf(),
                "Revoke its keys",
                &format!("Revoke every key of agent {}", agent.id),
            )
            .raw("</td></tr>");
    }
    body.raw("</tbody></table>");
    ctx.show("Agents", Section::Agents, &body)
}

/// `POST /console/agents`: binds an agent by its registration code.
pub fn bind_agent(ctx: &Ctx) -> Result<Answer, Error> {
    let code = ctx.form.required("code")?;
    let account = ctx.form.required("account")?;
    let scopes: Vec<String> = ctx.form.words("scopes");
    let scopes = (!scopes.is_empty()).then_some(scopes);
    let agent = ctx.gate.bind_agent(code, account, scopes)?;
    Ok(Answer::Redirect(format!(
        "/console/agents?bound={}",
        agent.id
    )))
}

/// `POST /console/agents/{id}/revoke-keys`: revokes every key the agent
/// created, and with them its tokens.
pub fn revoke_agent_keys(ctx: &Ctx, id: &str) -> Result<Answer, Error> {
    let revoked = ctx.gate.revoke_agent_keys(id)?;
    Ok(Answer::Redirect(format!(
        "/console/agents?revoked={revoked}"
    )))
}

/// `GET /console/prices`: the price versions (the active one marked) and
/// the form that imports a catalog file.
pub fn prices(ctx: &Ctx) -> Result<Answer, Error> {
    let versions = ctx.gate.price_versions()?;
    let mut body = Html::new();
    body.element("h2", "Import a catalog")
        .raw("<form method=\"post\" action=\"/console/prices\" enctype=\"multipart/form-data\">")
        .hidden("csrf", ctx.csrf())
        .raw("<p><label for=\"f-catalog\">Catalog file (JSON)</label> ")
        .raw("<input type=\"file\" id=\"f-catalog\" name=\"catalog\" accept=\".json,application/json\" required></p>")
        .submit("Import");
    body.element("h2", "Versions");
    body.raw("<table>")
        .head_row(&["version", "state", "models", "imported", "digest"])
        .raw("<tbody>");
    for version in &versions {
        let state = version_state(version, "imported");
        body.raw("<tr><td>")
            .link(
                &format!("/console/prices/{}", encode(&version.version)),
                &version.version,
            )
            .raw("</td>")
            .element("td", state)
            .element("td", &version.models.to_string())
            .element("td", &when(version.imported_at))
            .element("td", &version.digest.chars().take(16).collect::<String>())
            .raw("</tr>");
    }
    body.raw("</tbody></table>");
    ctx.show("Prices", Section::Prices, &body)
}

/// A price version's state in words (`pending` for one neither active
/// nor retired).
fn version_state(
    version: &creditgate::pricing::versions::PriceVersionInfo,
    pending: &'static str,
) -> &'static str {
    if version.active {
        "active"
    } else if version.retired {
        "retired"
    } else {
        pending
    }
}

/// `POST /console/prices` (a multipart form): imports the catalog file.
pub fn import_prices(ctx: &Ctx) -> Result<Answer, Error> {
    let catalog = ctx
        .form
        .get("catalog")
        .filter(|text| !text.trim().is_empty())
        .ok_or_else(|| invalid("catalog", "choose a catalog file"))?;
    let imported = ctx.gate.import_catalog(catalog)?;
    Ok(Answer::Redirect(format!(
        "/console/prices/{}?imported={}",
        encode(&imported.version),
        if imported.created { "new" } else { "again" }
    )))
}

/// `GET /console/prices/{version}`: the version against the active one,
/// model by model, with activate and retire.
pub fn price_version(ctx: &Ctx, version: &str) -> Result<Answer, Error> {
    let versions = ctx.gate.price_versions()?;
    let info = versions
        .iter()
        .find(|v| v.version == version)
        .ok_or_else(|| Error::NotFound {
            what: "price version",
            id: version.to_owned(),
        })?;
    let compared = ctx.gate.compare_with_active(version)?;
    let models: Vec<String> = ctx
        .gate
        .catalog(Some(version))?
        .models
        .iter()
        .map(|m| m.model.clone())
        .collect();
    let mut body = Html::new();
    match ctx.query.filled("imported") {
        Some("new") => {
            body.notice("Imported.", false);
        }
        Some(_) => {
            body.notice("This catalog was imported before: nothing changed.", false);
        }
        None => {}
    }
    let state = version_state(info, "imported, not active");
    body.raw("<p>State: <strong id=\"version-state\">")
        .text(state)
        .raw("</strong></p>");
    let base = format!("/console/prices/{}", encode(version));
    if !info.active && !info.retired {
        body.post_form(&format!("{base}/activate"), ctx.csrf())
            .submit("Activate this version");
        body.post_form(&format!("{base}/retire"), ctx.csrf())
            .raw("<p><input type=\"checkbox\" id=\"f-confirm\" name=\"confirm\" value=\"yes\" required> ")
            .raw("<label for=\"f-confirm\">I understand that retiring a version cannot be undone: \
                  it can never be activated again.</label></p>")
            .submit("Retire this version");
    }
    let against = match &compared {
        Some((active, _)) => format!("Models against the active version {active}"),
        None => "Models".to_owned(),
    };
    body.element("h2", &against);
    body.raw("<table>")
        .head_row(&["model", "change", "fields that differ"])
        .raw("<tbody>");
    match &compared {
        Some((_, changes)) => {
            for change in changes {
                body.row(&[
                    &change.model,
                    change.kind.as_str(),
                    &change.fields.join(", "),
                ]);
            }
        }
        None => {
            for model in &models {
                body.row(&[model, "", ""]);
            }
        }
    }
    body.raw("</tbody></table>");
    ctx.show(&format!("Price version {version}"), Section::Prices, &body)
}

/// `POST /console/prices/{version}/activate`.
pub fn activate_prices(ctx: &Ctx, version: &str) -> Result<Answer, Error> {
    ctx.gate.activate_price_version(version)?;
    Ok(Answer::Redirect(format!(
        "/console/prices/{}",
        encode(version)
    )))
}

/// `POST /console/prices/{version}/retire`: only with the confirmation
/// ticked.
pub fn retire_prices(ctx: &Ctx, version: &str) -> Result<Answer, Error> {
    if ctx.form.get("confirm") != Some("yes") {
        return Err(invalid(
            "confirm",
            "tick the box that says retiring cannot be undone",
        ));
    }
    ctx.gate.retire_price_version(version)?;
    Ok(Answer::Redirect(format!(
        "/console/prices/{}",
        encode(version)
    )))
}

/// `GET /console/codes`: redemption codes (the newest first), a form to
/// create one and a revoke button on each live one.
pub fn codes(ctx: &Ctx) -> Result<Answer, Error> {
    let codes = ctx.gate.codes()?;
    let mut body = Html::new();
    if let Some(revoked) = ctx.query.filled("revoked") {
        body.notice(&format!("Code {revoked} is revoked."), false);
    }
    body.element("h2", "Create a code")
        .post_form("/console/codes", ctx.csrf())
        .input("text", "credits", "Credits per redemption", "", true)
        .input("number", "uses", "Redemptions in all", "1", true)
        .input(
            "number",
            "expires_in_days",
            "Expires in days (blank: never)",
            "",
            false,
        )
        .input("text", "memo", "Memo", "", false)
        .raw("<p><input type=\"checkbox\" id=\"f-once\" name=\"once_per_account\" value=\"yes\"> ")
        .raw("<label for=\"f-once\">Once per account</label></p>")
        .submit("Create code");
    body.element("h2", "Codes");
    body.raw("<table>")
        .head_row(&[
            "code",
            "credits",
            "used",
            "once per account",
            "expires",
            "memo",
            "",
        ])
        .raw("<tbody>");
    for code in &codes {
        body.raw("<tr>")
            .element("td", &code.id)
            .element("td", &credits(code.amount_micros))
            .element("td", &format!("{} of {}", code.uses, code.uses_max))
            .element("td", if code.once_per_account { "yes" } else { "no" })
            .element(
                "td",
                &code.expires_at.map(when).unwrap_or_else(|| "never".into()),
            )
            .element("td", &code.memo)
            .raw("<td>");
        match code.revoked_at {
            Some(at) => {
                body.text(&format!("revoked {}", when(at)));
            }
            None => {
                body.action(
                    &format!("/console/codes/{}/revoke", code.id),
                    ctx.csrf(),
                    "Revoke",
                    &format!("Revoke code {}", code.id),
                );
            }
        }
        body.raw("</td></tr>");
    }
    body.raw("</tbody></table>");
    ctx.show("Redemption codes", Section::Codes, &body)
}

/// `POST /console/codes`: creates a code and shows its secret, once.
pub fn create_code(ctx: &Ctx) -> Result<Answer, Error> {
    let amount = creditgate::money::parse_credits(ctx.form.required("credits")?)
        .ok()
        .and_then(|credits| creditgate::money::to_micros(credits).ok())
        .ok_or_else(|| {
            invalid(
                "credits",
                "must be a number of credits (at most 6 decimals)",
            )
        })?;
    let uses_max = ctx
        .form
        .required("uses")?
        .parse::<u32>()
        .map_err(|_| invalid("uses", "must be a whole number"))?;
    let expires_at = match ctx.form.filled("expires_in_days") {
        None => None,
        Some(days) => {
            let days = days
                .parse::<i64>()
                .ok()
                .filter(|days| (1..=3650).contains(days))
                .ok_or_else(|| invalid("expires_in_days", "must be from 1 to 3650 days"))?;
            Some(ctx.gate.clock().now() + days * creditgate::plans::DAY_MS)
        }
    };
    let new = creditgate::NewCode {
        amount_micros: amount,
        uses_max,
        once_per_account: ctx.form.get("once_per_account") == Some("yes"),
        expires_at,
        memo: ctx.form.get("memo").unwrap_or("").trim().to_owned(),
    };
    let (code, secret) = ctx.gate.create_code(&new)?;
    let mut body = Html::new();
    body.notice("Copy the code now: it is shown only once.", false)
        .secret("new-code", &format!("Code {}", code.id), &secret)
        .raw("<p>")
        .link("/console/codes", "Back to the codes")
        .raw("</p>");
    ctx.show("Code created", Section::Codes, &body)
}

/// `POST /console/codes/{id}/revoke`.
pub fn revoke_code(ctx: &Ctx, id: &str) -> Result<Answer, Error> {
    ctx.gate.revoke_code(id)?;
    Ok(Answer::Redirect(format!("/console/codes?revoked={id}")))
}

/// `POST /console/accounts/{id}/plan`: puts the account on a plan.
pub fn set_plan(ctx: &Ctx, id: &str) -> Result<Answer, Error> {
    ctx.gate.set_account_plan(id, ctx.form.required("plan")?)?;
    Ok(Answer::Redirect(format!("/console/accounts/{id}")))
}

/// `GET /console/webhooks`: outgoing webhook endpoints (add, remove) and
/// their latest deliveries (by status; replay one).
pub fn webhooks(ctx: &Ctx) -> Result<Answer, Error> {
    let endpoints = ctx.gate.webhook_endpoints()?;
    let status = ctx.query.filled("status");
    let deliveries = ctx.gate.webhook_deliveries(status)?;
    let mut body = Html::new();
    for (field, said) in [
        ("replayed", "Delivery {} will be sent again."),
        ("removed", "Endpoint {} is removed."),
    ] {
        if let Some(id) = ctx.query.filled(field) {
            body.notice(&said.replace("{}", id), false);
        }
    }
    body.element("h2", "Add an endpoint")
        .post_form("/console/webhooks", ctx.csrf())
        .input("url", "url", "URL (https://...)", "", true)
        .input(
            "text",
            "events",
            &format!(
                "Events (space-separated: {})",
                creditgate::outbox::EVENT_TYPES.join(" ")
            ),
            &creditgate::outbox::EVENT_TYPES.join(" "),
            true,
        )
        .input(
            "text",
            "low_balance",
            "Low-balance threshold in credits (balance.low)",
            "",
            false,
        )
        .submit("Add endpoint");
    body.element("h2", "Endpoints");
    body.raw("<table>")
        .head_row(&["endpoint", "URL", "events", "low balance", "created", ""])
        .raw("<tbody>");
    for endpoint in &endpoints {
        body.raw("<tr>")
            .element("td", &endpoint.id)
            .element("td", &endpoint.url)
            .element("td", &endpoint.events.join(" "))
            .element(
                "td",
                &endpoint.low_balance_micros.map(credits).unwrap_or_default(),
            )
            .element("td", &when(endpoint.created_at))
            .raw("<td>");
        match endpoint.removed_at {
            Some(at) => {
                body.text(&format!("removed {}", when(at)));
            }
            None => {
                body.action(
                    &format!("/console/webhooks/{}/remove", endpoint.id),
                    ctx.csrf(),
                    "Remove",
                    &format!("Remove endpoint {}", endpoint.id),
                );
            }
        }
        body.raw("</td></tr>");
    }
    body.raw("</tbody></table>");
    body.element("h2", "Deliveries");
    let statuses: Vec<(String, String)> = ["", "pending", "delivered", "failed"]
        .iter()
        .map(|s| {
            (
                s.to_string(),
                if s.is_empty() { "any" } else { s }.to_owned(),
            )
        })
        .collect();
    body.get_form("/console/webhooks")
        .select("status", "Status", &statuses, status.unwrap_or(""))
        .submit("Filter");
    body.raw("<table>")
        .head_row(&[
            "delivery",
            "event",
            "URL",
            "status",
            "attempts",
            "last answer",
            "created",
            "",
        ])
        .raw("<tbody>");
    for delivery in deliveries.iter().take(PAGE_ROWS) {
        let answer = match (&delivery.last_status, &delivery.last_error) {
            (Some(code), _) => code.to_string(),
            (None, Some(error)) => error.clone(),
            (None, None) => String::new(),
        };
        body.raw("<tr>")
            .element("td", &delivery.id)
            .element("td", &delivery.event_type)
            .element("td", &delivery.url)
            .element("td", &delivery.status)
            .element("td", &delivery.attempts.to_string())
            .element("td", &answer)
            .element("td", &when(delivery.created_at))
            .raw("<td>")
            .action(
                &format!("/console/webhooks/deliveries/{}/replay", delivery.id),
                ctx.csrf(),
                "Send again",
                &format!("Send delivery {} again", delivery.id),
            )
            .raw("</td></tr>");
    }
    body.raw("</tbody></table>");
    ctx.show("Webhooks", Section::Webhooks, &body)
}

/// `POST /console/webhooks`: adds an endpoint and shows its signing
/// secret.
pub fn add_webhook(ctx: &Ctx) -> Result<Answer, Error> {
    let low_balance_micros = match ctx.form.filled("low_balance") {
        None => None,
        Some(text) => Some(
            creditgate::money::parse_credits(text)
                .ok()
                .and_then(|credits| creditgate::money::to_micros(credits).ok())
                .ok_or_else(|| invalid("low_balance", "must be a number of credits"))?,
        ),
    };
    let new = creditgate::outbox::NewEndpoint {
        url: ctx.form.required("url")?.to_owned(),
        events: ctx.form.words("events"),
        low_balance_micros,
    };
    let (endpoint, secret) = ctx.gate.add_webhook_endpoint(&new)?;
    let mut body = Html::new();
    body.notice(
        "Keep the signing secret: the endpoint checks each delivery with it.",
        false,
    )
    .secret(
        "new-secret",
        &format!("Signing secret of {}", endpoint.id),
        &secret,
    )
    .raw("<p>")
    .link("/console/webhooks", "Back to the webhooks")
    .raw("</p>");
    ctx.show("Endpoint added", Section::Webhooks, &body)
}

/// `POST /console/webhooks/{id}/remove`.
pub fn remove_webhook(ctx: &Ctx, id: &str) -> Result<Answer, Error> {
    ctx.gate.remove_webhook_endpoint(id)?;
    Ok(Answer::Redirect(format!("/console/webhooks?removed={id}")))
}

/// `POST /console/webhooks/deliveries/{id}/replay`.
pub fn replay_delivery(ctx: &Ctx, id: &str) -> Result<Answer, Error> {
    ctx.gate.replay_webhook_delivery(id)?;
    Ok(Answer::Redirect(format!("/console/webhooks?replayed={id}")))
}

/// `GET /console/providers`: each provider instance with the last day's
/// jobs by status, the workers' health, and a check on demand.
pub fn providers(ctx: &Ctx) -> Result<Answer, Error> {
    let overview = ctx.gate.console_overview()?;
    let health = ctx.gate.worker_health();
    let mut body = Html::new();
    if health.is_ok() {
        body.notice("The workers are stepping normally.", false);
    } else {
        body.notice(
            &format!(
                "The workers failed their last {} steps: {}",
                health.failing_steps,
                health.last_failure.as_deref().unwrap_or("")
            ),
            true,
        );
    }
    body.element("h2", "Instances and the last day's jobs");
    let mut head = vec!["provider"];
    head.extend(JobStatus::ALL.iter().map(|s| s.as_str()));
    body.raw("<table>").head_row(&head).raw("<tbody>");
    for name in ctx.gate.providers().names() {
        let mut cells = vec![name.to_owned()];
        cells.extend(JobStatus::ALL.iter().map(|status| {
            overview
                .jobs_by_provider
                .iter()
                .find(|(p, s, _)| p == name && s == status)
                .map_or(0, |(_, _, count)| *count)
                .to_string()
        }));
        let cells: Vec<&str> = cells.iter().map(String::as_str).collect();
        body.row(&cells);
    }
    body.raw("</tbody></table>");
    body.element("h2", "Check")
        .element(
            "p",
            "Asks each provider its cheapest question (models, account or system \
             stats): reachable, credential accepted, upstream credits where told.",
        )
        .post_form("/console/providers/check", ctx.csrf())
        .submit("Check the providers now");
    ctx.show("Providers", Section::Providers, &body)
}

/// `POST /console/providers/check`: what each provider answered (the calls
/// are the appliance's, each bounded by its provider's timeout).
pub fn check_providers(ctx: &Ctx) -> Result<Answer, Error> {
    let checked = crate::providers::check(ctx.gate.providers());
    let mut body = Html::new();
    body.raw("<table><caption>Provider check</caption>")
        .head_row(&[
            "provider",
            "reachable",
            "credential",
            "upstream credits",
            "detail",
        ])
        .raw("<tbody>");
    for check in &checked {
        match &check.outcome {
            Ok(report) => body.row(&[
                &check.name,
                if report.reachable { "yes" } else { "no" },
                match report.auth_ok {
                    Some(true) => "accepted",
                    Some(false) => "refused",
                    None => "none needed",
                },
                report.upstream_credits.as_deref().unwrap_or(""),
                &report.detail,
            ]),
            Err(err) => body.row(&[&check.name, "no", "", "", &err.to_string()]),
        };
    }
    body.raw("</tbody></table><p>")
        .link("/console/providers", "Back to the providers")
        .raw("</p>");
    ctx.show("Provider check", Section::Providers, &body)
}

/// JSON text, indented (as stored if it does not parse).
fn pretty(json: &str) -> String {
    serde_json::from_str::<Value>(json)
        .ok()
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or_else(|| json.to_owned())
}

/// A query-string value, percent-encoded.
fn encode(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_plus_and_percent_and_refuse_what_is_not_text() {
        let form = Form::parse(b"name=a+b%20c&memo=%3Cscript%3E&empty=&bad=%zz").expect("form");
        assert_eq!(form.get("name"), Some("a b c"));
        assert_eq!(form.get("memo"), Some("<script>"));
        assert_eq!(form.filled("empty"), None);
        assert_eq!(form.get("bad"), Some("%zz"));
        assert!(Form::parse(b"x=%ff%fe").is_err());
        let many = vec!["a=1"; FORM_FIELDS_MAX + 1].join("&");
        assert!(Form::parse(many.as_bytes()).is_err());
        assert_eq!(encode("a b&c"), "a%20b%26c");
        assert_eq!(
            decode_segment("2026-02-02%2Bv1+x").expect("segment"),
            "2026-02-02+v1+x"
        );
    }

    #[test]
    fn multipart_forms_give_their_fields_and_files_as_text() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nt0k\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"catalog\"; filename=\"c.json\"\r\n\
Content-Type: application/json\r\n\r\n{\"a\":\r\n1}\r\n--XyZ--\r\n";
        let form = Form::parse_multipart(body, "XyZ").expect("multipart");
        assert_eq!(form.get("csrf"), Some("t0k"));
        assert_eq!(form.get("catalog"), Some("{\"a\":\r\n1}"));
        assert!(Form::parse_multipart(b"--XyZ\r\nno head", "XyZ").is_err());
        assert!(Form::parse_multipart(b"garbage", "XyZ").is_err());
    }
}
