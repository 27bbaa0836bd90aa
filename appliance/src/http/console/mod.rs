//! The owner's console: HTML pages under `/console`, rendered here on the
//! server (no JavaScript build, no CDN; every action is a plain form), and
//! the index at `/` that points an owner to it and an agent to
//! `/llms.txt`.
//!
//! Signing in takes an API key with the `operator` scope and opens a
//! server-side session (`Gate::console_sign_in`): its secret travels only
//! in the `cg_console` cookie (`HttpOnly`, `SameSite=Strict`, `Path=/console`,
//! `Secure` when the public URL is HTTPS), never in a URL. Every other
//! console route needs a live session: a GET without one is sent to the
//! sign-in page, a POST is refused (401) and changes nothing. Every POST
//! must carry the session's CSRF token or is refused (403) before its page
//! runs. Every answer says `Cache-Control: no-store` and a content
//! security policy that allows nothing but this origin's style sheet and
//! media.

pub mod html;
pub mod pages;

use creditgate::identity::sessions::{csrf_matches, SESSION_ABSOLUTE_SECS};
use creditgate::{Error, Gate};

use self::html::{page, Html, Section};
use self::pages::{decode_segment, invalid, Answer, Ctx, Form};
use super::request::{Request, State};
use super::response::Response;
use super::status::{public_message, status_for};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "cg_console";

/// The content security policy of every console answer.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; \
     img-src 'self' https: data:; media-src 'self' https:; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// The console's answer to `request`, or `None` when the path is not the
/// console's (`/` and `/console/...`).
pub fn dispatch(state: &State, request: &Request) -> Option<Response> {
    let path = request.path.as_str();
    if path == "/" {
        return Some(match method(request) {
            "GET" => secured(index()),
            _ => method_not_allowed(request, "GET, HEAD"),
        });
    }
    if path != "/console" && !path.starts_with("/console/") {
        return None;
    }
    Some(console(state, request))
}

fn method(request: &Request) -> &str {
    if request.method == "HEAD" {
        "GET"
    } else {
        request.method.as_str()
    }
}

fn console(state: &State, request: &Request) -> Response {
    let gate = &state.gate;
    match (method(request), request.path.as_str()) {
        ("GET", "/console/style.css") => {
            let mut response =
                Response::bytes(200, "text/css; charset=utf-8", html::STYLE_CSS.into());
            response
                .headers
                .push(("Cache-Control", "max-age=3600".into()));
            return response;
        }
        ("GET", "/console/sign-in") => return secured(sign_in_page(200, None)),
        ("POST", "/console/sign-in") => return sign_in(state, request),
        _ => {}
    }
    let secret = cookie(request, SESSION_COOKIE);
    let session = match secret.map(|secret| gate.console_session(secret)) {
        Some(Ok(session)) => session,
        Some(Err(err)) if err.is_server_fault() => return error_page(&err, None),
        _ if method(request) == "GET" => return redirect("/console/sign-in"),
        _ => {
            return error_page(
                &Error::Unauthorized {
                    reason: "no console session: sign in again",
                },
                None,
            )
        }
    };
    let query = match Form::parse(request.query.as_bytes()) {
        Ok(query) => query,
        Err(err) => return error_page(&err, Some(&session.csrf_token)),
    };
    let form = if method(request) == "POST" {
        match posted_form(request) {
            Ok(form) => form,
            Err(err) => return error_page(&err, Some(&session.csrf_token)),
        }
    } else {
        Form::default()
    };
    if method(request) == "POST" && !csrf_matches(&session, form.get("csrf").unwrap_or("")) {
        return error_page(&Error::CsrfTokenInvalid, Some(&session.csrf_token));
    }
    if request.path == "/console/sign-out" && method(request) == "POST" {
        return sign_out(gate, secret.unwrap_or_default());
    }
    let ctx = Ctx {
        gate,
        session: &session,
        query: &query,
        form: &form,
    };
    match route(&ctx, method(request), &request.path) {
        Some(Ok(answer)) => answered(answer),
        Some(Err(err)) => error_page(&err, Some(&session.csrf_token)),
        None => error_page(
            &Error::NoRoute {
                method: request.method.clone(),
                path: request.path.clone(),
            },
            Some(&session.csrf_token),
        ),
    }
}

/// The page of `method path`, if there is one.
fn route(ctx: &Ctx, method: &str, path: &str) -> Option<Result<Answer, Error>> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    Some(match (method, segments.as_slice()) {
        ("GET", ["console"]) => pages::overview(ctx),
        ("GET", ["console", "accounts"]) => pages::accounts(ctx),
        ("POST", ["console", "accounts"]) => pages::create_account(ctx),
        ("GET", ["console", "accounts", id]) => pages::account(ctx, id),
        ("POST", ["console", "accounts", id, "grants"]) => pages::grant(ctx, id),
        ("POST", ["console", "accounts", id, "keys"]) => pages::create_key(ctx, id),
        ("POST", ["console", "accounts", id, "keys", key, "revoke"]) => {
            pages::revoke_key(ctx, id, key)
        }
        ("GET", ["console", "jobs"]) => pages::jobs(ctx),
        ("GET", ["console", "jobs", id]) => pages::job(ctx, id),
        ("POST", ["console", "accounts", id, "plan"]) => pages::set_plan(ctx, id),
        ("GET", ["console", "codes"]) => pages::codes(ctx),
        ("POST", ["console", "codes"]) => pages::create_code(ctx),
        ("POST", ["console", "codes", id, "revoke"]) => pages::revoke_code(ctx, id),
        ("GET", ["console", "providers"]) => pages::providers(ctx),
        ("POST", ["console", "providers", "check"]) => pages::check_providers(ctx),
        ("GET", ["console", "webhooks"]) => pages::webhooks(ctx),
        ("POST", ["console", "webhooks"]) => pages::add_webhook(ctx),
        ("POST", ["console", "webhooks", id, "remove"]) => pages::remove_webhook(ctx, id),
        ("POST", ["console", "webhooks", "deliveries", id, "replay"]) => {
            pages::replay_delivery(ctx, id)
        }
        ("GET", ["console", "agents"]) => pages::agents(ctx),
        ("POST", ["console", "agents"]) => pages::bind_agent(ctx),
        ("POST", ["console", "agents", id, "revoke-keys"]) => pages::revoke_agent_keys(ctx, id),
        ("GET", ["console", "prices"]) => pages::prices(ctx),
        ("POST", ["console", "prices"]) => pages::import_prices(ctx),
        ("GET", ["console", "prices", version]) => {
            decode_segment(version).and_then(|version| pages::price_version(ctx, &version))
        }
        ("POST", ["console", "prices", version, "activate"]) => {
            decode_segment(version).and_then(|version| pages::activate_prices(ctx, &version))
        }
        ("POST", ["console", "prices", version, "retire"]) => {
            decode_segment(version).and_then(|version| pages::retire_prices(ctx, &version))
        }
        ("GET", ["console", "ledger"]) => pages::ledger(ctx),
        ("POST", ["console", "ledger", "verify"]) => pages::verify(ctx),
        _ => return None,
    })
}

/// The largest console form: a catalog file with its multipart framing.
pub const CONSOLE_UPLOAD_BYTES_MAX: usize =
    creditgate::pricing::catalog::CATALOG_BYTES_MAX + 64 * 1024;

/// The form of a POST: `application/x-www-form-urlencoded`, or
/// `multipart/form-data` (a file upload).
fn posted_form(request: &Request) -> Result<Form, Error> {
    let content_type = request.header("content-type").unwrap_or("");
    let mut params = content_type.split(';').map(str::trim);
    let media_type = params.next().unwrap_or("");
    if media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Form::parse(&request.body);
    }
    if media_type.eq_ignore_ascii_case("multipart/form-data") {
        let boundary = params
            .find_map(|param| param.strip_prefix("boundary="))
            .map(|b| b.trim_matches('"'))
            .filter(|b| !b.is_empty() && b.len() <= 70)
            .ok_or_else(|| invalid("content-type", "a multipart form names its boundary"))?;
        return Form::parse_multipart(&request.body, boundary);
    }
    Err(invalid(
        "content-type",
        "a console form is application/x-www-form-urlencoded or multipart/form-data",
    ))
}

/// The value of cookie `name`, if the request carries it.
fn cookie<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .headers
        .iter()
        .filter(|(key, _)| key == "cookie")
        .flat_map(|(_, value)| value.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then_some(value)
        })
}

/// `POST /console/sign-in`: an operator key opens a session.
fn sign_in(state: &State, request: &Request) -> Response {
    let key = posted_form(request).and_then(|form| {
        form.filled("key")
            .map(str::to_owned)
            .ok_or_else(|| invalid("key", "is required"))
    });
    let signed_in = key.and_then(|key| state.gate.console_sign_in(&key, &request.client_address));
    match signed_in {
        Ok(signed_in) => {
            let secure = if state.public_base_url.starts_with("https://") {
                "; Secure"
            } else {
                ""
            };
            let mut response = redirect("/console");
            response.headers.push((
                "Set-Cookie",
                format!(
                    "{SESSION_COOKIE}={}; Path=/console; HttpOnly; SameSite=Strict; \
                     Max-Age={SESSION_ABSOLUTE_SECS}{secure}",
                    signed_in.secret.expose()
                ),
            ));
            response
        }
        Err(err) => {
            if err.is_server_fault() {
                eprintln!("request_id={} error: {err}", request.request_id);
            }
            let status = status_for(err.error_code());
            let mut response = secured(sign_in_page(status, Some(&err)));
            if let Error::RateLimited { retry_after_ms } = err {
                response
                    .headers
                    .push(("Retry-After", retry_after_ms.div_ceil(1000).to_string()));
            }
            response
        }
    }
}

/// `POST /console/sign-out`: ends the session and drops the cookie.
fn sign_out(gate: &Gate, secret: &str) -> Response {
    if let Err(err) = gate.console_sign_out(secret) {
        return error_page(&err, None);
    }
    let mut response = redirect("/console/sign-in");
    response.headers.push((
        "Set-Cookie",
        format!("{SESSION_COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0"),
    ));
    response
}

fn sign_in_page(status: u16, refused: Option<&Error>) -> (u16, String) {
    let mut body = Html::new();
    if let Some(err) = refused {
        body.notice(&public_message(err), true);
    }
    body.element(
        "p",
        "Sign in with an API key holding the operator scope \
         (creditgate keys create --account ACCOUNT --scope operator).",
    )
    .raw("<form method=\"post\" action=\"/console/sign-in\">")
    .input("password", "key", "Operator key", "", true)
    .submit("Sign in");
    (status, page("Sign in", Section::SignIn, None, &body))
}

fn index() -> (u16, String) {
    let mut body = Html::new();
    body.raw("<p>This box runs creditgate, a credits gateway for AI agents.</p><ul>")
        .raw("<li>Owners: <a href=\"/console\">the console</a>.</li>")
        .raw("<li>Agents: <a href=\"/llms.txt\">/llms.txt</a> and ")
        .raw("<a href=\"/agent/openapi.json\">/agent/openapi.json</a>.</li></ul>");
    (200, page("creditgate", Section::SignIn, None, &body))
}

fn answered(answer: Answer) -> Response {
    match answer {
        Answer::Page(status, html) => secured((status, html)),
        Answer::Redirect(location) => redirect(&location),
    }
}

fn redirect(location: &str) -> Response {
    let mut response = secured((303, String::new()));
    response.headers.push(("Location", location.to_owned()));
    response
}

fn error_page(err: &Error, csrf: Option<&str>) -> Response {
    let status = status_for(err.error_code());
    let mut body = Html::new();
    body.notice(&public_message(err), true);
    if status == 401 {
        body.raw("<p><a href=\"/console/sign-in\">Sign in</a></p>");
    }
    let title = if status >= 500 {
        "Server error"
    } else {
        "Refused"
    };
    secured((status, page(title, Section::Overview, csrf, &body)))
}

fn method_not_allowed(request: &Request, allow: &str) -> Response {
    let err = Error::MethodNotAllowed {
        method: request.method.clone(),
        path: request.path.clone(),
    };
    let mut response = error_page(&err, None);
    response.headers.push(("Allow", allow.to_owned()));
    response
}

/// An HTML answer with the console's security headers (the server adds
/// `X-Content-Type-Options: nosniff` to every answer).
fn secured((status, html): (u16, String)) -> Response {
    let mut response = Response::bytes(status, "text/html; charset=utf-8", html.into_bytes());
    response.headers.extend([
        (
            "Content-Security-Policy",
            CONTENT_SECURITY_POLICY.to_owned(),
        ),
        ("X-Frame-Options", "DENY".to_owned()),
        ("Referrer-Policy", "same-origin".to_owned()),
        ("Cache-Control", "no-store".to_owned()),
    ]);
    response
}
