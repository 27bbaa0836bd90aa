//! The route table: every route the server answers, with its method, path
//! pattern, whether it needs a bearer credential, its dialect (the wire
//! language every error of the route is rendered in) and its handler. Each
//! dialect's OpenAPI document is checked against its routes in this table
//! (every route documented, every documented path routed), so it cannot
//! drift. `HEAD` is answered on
//! every `GET` route by its `GET` handler; the server sends the headers
//! without the body. The router names the handlers; they never name it:
//! what both need of a request is `request`'s.

use creditgate::Error;

use super::admin::{self};
use super::console;
use super::dialects::{self, agentname, kiwiwhale, openai, Dialect};
use super::handlers::{self, Handled};
use super::request::{Call, Params, Request, State};
use super::response::Response;

/// Whether a route needs a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Anyone may call it.
    Public,
    /// `Authorization: Bearer <api key or access token>` is required.
    Bearer,
}

/// A handler: parse, call one gate method, render.
pub type Handler = fn(&Call) -> Handled;

/// One route.
pub struct Route {
    /// The HTTP method.
    pub method: &'static str,
    /// The path pattern; `{name}` matches one segment.
    pub pattern: &'static str,
    /// Who may call it.
    pub auth: Auth,
    /// Its wire language: its errors are rendered in its envelope.
    pub dialect: Dialect,
    /// What answers it.
    pub handler: Handler,
}

/// Every route, in the order they are matched.
pub const ROUTES: &[Route] = &[
    Route {
        method: "POST",
        pattern: "/v1/generate",
        auth: Auth::Bearer,
        dialect: Dialect::Rynjer,
        handler: handlers::generate,
    },
    Route {
        method: "GET",
        pattern: "/v1/generate/{request_id}",
        auth: Auth::Bearer,
        dialect: Dialect::Rynjer,
        handler: handlers::poll,
    },
    Route {
        method: "POST",
        pattern: "/v1/generate/{request_id}/cancel",
        auth: Auth::Bearer,
        dialect: Dialect::Rynjer,
        handler: handlers::cancel,
    },
    Route {
        method: "GET",
        pattern: "/v1/credits/balance",
        auth: Auth::Bearer,
        dialect: Dialect::Rynjer,
        handler: handlers::balance,
    },
    Route {
        method: "POST",
        pattern: "/v1/credits/redeem",
        auth: Auth::Bearer,
        dialect: Dialect::Rynjer,
        handler: handlers::redeem,
    },
    Route {
        method: "POST",
        pattern: "/v1/credits/topup",
        auth: Auth::Bearer,
        dialect: Dialect::Rynjer,
        handler: handlers::topup,
    },
    Route {
        method: "GET",
        pattern: "/v1/credits/topup/{topup_id}",
        auth: Auth::Bearer,
        dialect: Dialect::Rynjer,
        handler: handlers::topup_status,
    },
    Route {
        method: "GET",
        pattern: "/v1/credits/topup",
        auth: Auth::Bearer,
        dialect: Dialect::Rynjer,
        handler: handlers::topup_prices,
    },
    Route {
        method: "POST",
        pattern: "/v1/credits/x402",
        auth: Auth::Bearer,
        dialect: Dialect::Rynjer,
        handler: handlers::x402_topup,
    },
    Route {
        method: "POST",
        pattern: "/v1/admin/grants",
        auth: Auth::Bearer,
        dialect: Dialect::Rynjer,
        handler: admin::grant,
    },
    Route {
        method: "GET",
        pattern: "/v1/admin/topups",
        auth: Auth::Bearer,
        dialect: Dialect::Rynjer,
        handler: admin::topups,
    },
    Route {
        method: "GET",
        pattern: "/v1/admin/codes",
        auth: Auth::Bearer,
        dialect: Dialect::Rynjer,
        handler: admin::codes,
    },
    Route {
        method: "POST",
        pattern: "/v1/admin/codes",
        auth: Auth::Bearer,
        dialect: Dialect::Rynjer,
        handler: admin::create_code,
    },
    Route {
        method: "POST",
        pattern: "/v1/admin/codes/{code_id}/revoke",
        auth: Auth::Bearer,
        dialect: Dialect::Rynjer,
        handler: admin::revoke_code,
    },
    Route {
        method: "GET",
        pattern: "/v1/admin/accounts/{account_id}/auto_topup",
        auth: Auth::Bearer,
        dialect: Dialect::Rynjer,
        handler: admin::auto_topup,
    },
    Route {
        method: "POST",
        pattern: "/v1/admin/accounts/{account_id}/auto_topup",
        auth: Auth::Bearer,
        dialect: Dialect::Rynjer,
        handler: admin::set_auto_topup,
    },
    Route {
        method: "GET",
        pattern: "/v1/admin/keys/{key_id}/caps",
        auth: Auth::Bearer,
        dialect: Dialect::Rynjer,
        handler: admin::key_caps,
    },
    Route {
        method: "POST",
        pattern: "/v1/admin/keys/{key_id}/caps",
        auth: Auth::Bearer,
        dialect: Dialect::Rynjer,
        handler: admin::set_key_caps,
    },
    Route {
        method: "GET",
        pattern: "/v1/admin/webhooks",
        auth: Auth::Bearer,
        dialect: Dialect::Rynjer,
        handler: admin::webhooks,
    },
    Route {
        method: "POST",
        pattern: "/v1/admin/webhooks",
        auth: Auth::Bearer,
        dialect: Dialect::Rynjer,
        handler: admin::add_webhook,
    },
    Route {
        method: "POST",
        pattern: "/v1/admin/webhooks/{endpoint_id}/remove",
        auth: Auth::Bearer,
        dialect: Dialect::Rynjer,
        handler: admin::remove_webhook,
    },
    Route {
        method: "POST",
        pattern: "/v1/payments/stripe/webhook",
        auth: Auth::Public,
        dialect: Dialect::Rynjer,
        handler: handlers::stripe_webhook,
    },
    Route {
        method: "POST",
        pattern: "/v1/credits/estimate",
        auth: Auth::Bearer,
        dialect: Dialect::Rynjer,
        handler: handlers::estimate,
    },
    Route {
        method: "GET",
        pattern: "/v1/models/list",
        auth: Auth::Bearer,
        dialect: Dialect::Rynjer,
        handler: handlers::models,
    },
    Route {
        method: "GET",
        pattern: "/v1/files/{job_id}/{token}/{index}/{name}",
        auth: Auth::Public,
        dialect: Dialect::Rynjer,
        handler: handlers::file,
    },
    Route {
        method: "POST",
        pattern: "/v1/providers/{instance}/webhook",
        auth: Auth::Public,
        dialect: Dialect::Rynjer,
        handler: handlers::provider_webhook,
    },
    Route {
        method: "POST",
        pattern: "/api/v1/agents/register",
        auth: Auth::Public,
        dialect: Dialect::Rynjer,
        handler: handlers::agent_register,
    },
    Route {
        method: "POST",
        pattern: "/api/v1/agents/bind",
        auth: Auth::Bearer,
        dialect: Dialect::Rynjer,
        handler: handlers::agent_bind,
    },
    Route {
        method: "POST",
        pattern: "/api/v1/agents/keys/create",
        auth: Auth::Public,
        dialect: Dialect::Rynjer,
        handler: handlers::agent_key_create,
    },
    Route {
        method: "POST",
        pattern: "/api/v1/agents/keys/list",
        auth: Auth::Public,
        dialect: Dialect::Rynjer,
        handler: handlers::agent_keys_list,
    },
    Route {
        method: "POST",
        pattern: "/api/v1/agents/keys/revoke",
        auth: Auth::Public,
        dialect: Dialect::Rynjer,
        handler: handlers::agent_key_revoke,
    },
    Route {
        method: "POST",
        pattern: "/api/v1/agents/auth/token",
        auth: Auth::Public,
        dialect: Dialect::Rynjer,
        handler: handlers::agent_token,
    },
    Route {
        method: "POST",
        pattern: "/api/v1/agents/auth/refresh",
        auth: Auth::Public,
        dialect: Dialect::Rynjer,
        handler: handlers::agent_refresh,
    },
    Route {
        method: "POST",
        pattern: "/auth/moltbook/exchange",
        auth: Auth::Public,
        dialect: Dialect::Rynjer,
        handler: handlers::moltbook_exchange,
    },
    Route {
        method: "GET",
        pattern: "/agent/openapi.json",
        auth: Auth::Public,
        dialect: Dialect::Rynjer,
        handler: handlers::openapi,
    },
    Route {
        method: "GET",
        pattern: "/llms.txt",
        auth: Auth::Public,
        dialect: Dialect::Rynjer,
        handler: handlers::llms,
    },
    Route {
        method: "GET",
        pattern: "/agent/llms.txt",
        auth: Auth::Public,
        dialect: Dialect::Rynjer,
        handler: handlers::llms,
    },
    Route {
        method: "GET",
        pattern: "/healthz",
        auth: Auth::Public,
        dialect: Dialect::Rynjer,
        handler: handlers::health,
    },
    Route {
        method: "GET",
        pattern: "/v1/models",
        auth: Auth::Bearer,
        dialect: Dialect::OpenAi,
        handler: openai::models,
    },
    Route {
        method: "POST",
        pattern: "/v1/images/generations",
        auth: Auth::Bearer,
        dialect: Dialect::OpenAi,
        handler: openai::images,
    },
    Route {
        method: "POST",
        pattern: "/v1/chat/completions",
        auth: Auth::Bearer,
        dialect: Dialect::OpenAi,
        handler: openai::chat,
    },
    Route {
        method: "GET",
        pattern: "/openai/openapi.json",
        auth: Auth::Public,
        dialect: Dialect::OpenAi,
        handler: openai::openapi,
    },
    Route {
        method: "POST",
        pattern: "/api/generate",
        auth: Auth::Bearer,
        dialect: Dialect::AgentName,
        handler: agentname::generate,
    },
    Route {
        method: "GET",
        pattern: "/api/status/{jobId}",
        auth: Auth::Bearer,
        dialect: Dialect::AgentName,
        handler: agentname::status,
    },
    Route {
        method: "POST",
        pattern: "/api/chat",
        auth: Auth::Bearer,
        dialect: Dialect::AgentName,
        handler: agentname::chat,
    },
    Route {
        method: "GET",
        pattern: "/agentname/openapi.json",
        auth: Auth::Public,
        dialect: Dialect::AgentName,
        handler: agentname::openapi,
    },
    Route {
        method: "POST",
        pattern: "/api/v1/agent_register.php",
        auth: Auth::Public,
        dialect: Dialect::KiwiWhale,
        handler: kiwiwhale::register,
    },
    Route {
        method: "GET",
        pattern: "/api/v1/credits.php",
        auth: Auth::Bearer,
        dialect: Dialect::KiwiWhale,
        handler: kiwiwhale::balance,
    },
    Route {
        method: "GET",
        pattern: "/api/v1/models.php",
        auth: Auth::Bearer,
        dialect: Dialect::KiwiWhale,
        handler: kiwiwhale::models,
    },
    Route {
        method: "POST",
        pattern: "/api/v1/generate.php",
        auth: Auth::Bearer,
        dialect: Dialect::KiwiWhale,
        handler: kiwiwhale::generate,
    },
    Route {
        method: "GET",
        pattern: "/api/v1/jobs.php",
        auth: Auth::Bearer,
        dialect: Dialect::KiwiWhale,
        handler: kiwiwhale::job,
    },
    Route {
        method: "POST",
        pattern: "/api/v1/agent_topup.php",
        auth: Auth::Bearer,
        dialect: Dialect::KiwiWhale,
        handler: kiwiwhale::topup,
    },
    Route {
        method: "POST",
        pattern: "/api/v1/agent_setup_payment.php",
        auth: Auth::Bearer,
        dialect: Dialect::KiwiWhale,
        handler: kiwiwhale::payment_setup,
    },
    Route {
        method: "POST",
        pattern: "/api/v1/agent_confirm_payment_method.php",
        auth: Auth::Bearer,
        dialect: Dialect::KiwiWhale,
        handler: kiwiwhale::confirm_payment_method,
    },
    Route {
        method: "GET",
        pattern: "/kiwiwhale/openapi.json",
        auth: Auth::Public,
        dialect: Dialect::KiwiWhale,
        handler: kiwiwhale::openapi,
    },
];

/// Matches `path` against `pattern`, returning the parameters.
fn match_path(pattern: &'static str, path: &str) -> Option<Params> {
    let mut params = Vec::new();
    let mut want = pattern.split('/');
    let mut have = path.split('/');
    loop {
        match (want.next(), have.next()) {
            (None, None) => return Some(params),
            (Some(w), Some(h)) => {
                if let Some(name) = w.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
                    if h.is_empty() {
                        return None;
                    }
                    params.push((name, percent_decode(h)?));
                } else if w != h {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

/// Decodes `%XX` escapes in a path segment (request ids may hold
/// characters a client escapes); `None` for a malformed escape or a result
/// that is not UTF-8, which then matches no route.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Finds the route, authenticates, runs the handler, renders errors. An
/// answer to an authenticated caller carries the `X-RateLimit-*` headers
/// of the limit the core says it stands against: a refusal's own (a plan
/// cap, the rate limit), the handler's (a plan cap on generate), else the
/// rate limit's.
pub fn dispatch(state: &State, request: &Request) -> Response {
    // The console's HTML pages (and `/`) are not API routes: their own
    // session, forms and error pages.
    if let Some(response) = console::dispatch(state, request) {
        return response;
    }
    let mut admitted = None;
    let mut paid = None;
    let mut response = answer(state, request, &mut admitted, &mut paid);
    if let Some(receipt) = paid {
        response
            .headers
            .push(("PAYMENT-RESPONSE", receipt.payment_response));
    }
    response
}

/// Routes `request` and renders what it answered or refused.
fn answer(
    state: &State,
    request: &Request,
    admitted: &mut Option<creditgate::Quota>,
    paid: &mut Option<creditgate::X402Receipt>,
) -> Response {
    match route(state, request, admitted, paid) {
        Ok(response) => response.with_quota(admitted.as_ref()),
        Err(err) => {
            if err.is_server_fault() {
                eprintln!("request_id={} error: {err}", request.request_id);
            }
            let quota = state.gate.quota_of_refusal(&err);
            let mut response =
                dialects::error(dialect_of(&request.path), &err).with_quota(quota.as_ref());
            let resets_at = match (&err, &quota) {
                (Error::PlanLimitReached { .. }, Some(quota)) => Some(quota.reset_at),
                (Error::SpendCapReached { reset_at, .. }, _) => Some(*reset_at),
                _ => None,
            };
            if let Some(reset_at) = resets_at {
                let wait_ms = reset_at.saturating_sub(state.gate.clock().now());
                response.headers.push((
                    "Retry-After",
                    u64::try_from(wait_ms)
                        .unwrap_or(0)
                        .div_ceil(1000)
                        .to_string(),
                ));
            }
            let resource = format!("{}{}", state.public_base_url, request.path);
            if let Some(offer) = state.gate.payment_required_header(&err, &resource) {
                response.headers.push(("PAYMENT-REQUIRED", offer));
            }
            if matches!(err, Error::MethodNotAllowed { .. }) {
                response
                    .headers
                    .push(("Allow", allowed_methods(&request.path)));
            }
            response.with_quota(admitted.as_ref())
        }
    }
}

/// The dialect of the first route whose pattern matches `path` (whatever
/// its method), Rynjer's for a path no route matches: every error of a
/// request, routed or not, is rendered in it.
pub fn dialect_of(path: &str) -> Dialect {
    ROUTES
        .iter()
        .find(|route| match_path(route.pattern, path).is_some())
        .map_or(Dialect::Rynjer, |route| route.dialect)
}

/// Routes whose bodies may be larger than the server's usual bound, with
/// their own: an upstream's callback carries a whole prediction (with its
/// logs) that it would otherwise retry forever.
const LARGER_BODIES: &[(&str, &str, usize)] = &[
    (
        "POST",
        "/v1/providers/{instance}/webhook",
        creditgate::providers::WEBHOOK_BODY_BYTES_MAX,
    ),
    (
        "POST",
        "/v1/payments/stripe/webhook",
        creditgate::providers::WEBHOOK_BODY_BYTES_MAX,
    ),
    // The console's catalog import: a whole catalog file.
    ("POST", "/console/prices", console::CONSOLE_UPLOAD_BYTES_MAX),
];

/// The bound of its own a request to `method path` has on its body, if
/// any (the server's usual one applies otherwise), read before routing.
pub fn body_bytes_max(method: &str, path: &str) -> Option<usize> {
    LARGER_BODIES
        .iter()
        .find(|(m, pattern, _)| *m == method && match_path(pattern, path).is_some())
        .map(|(_, _, bytes)| *bytes)
}

/// The methods the route table answers on `path`, for `Allow` (`HEAD`
/// wherever `GET` is).
fn allowed_methods(path: &str) -> String {
    let mut methods: Vec<&str> = Vec::new();
    for route in ROUTES
        .iter()
        .filter(|route| match_path(route.pattern, path).is_some())
    {
        let implied = (route.method == "GET").then_some("HEAD");
        for method in std::iter::once(route.method).chain(implied) {
            if !methods.contains(&method) {
                methods.push(method);
            }
        }
    }
    methods.join(", ")
}

/// The route method that answers `method`: `HEAD` is answered as `GET`.
fn routed_method(method: &str) -> &str {
    if method == "HEAD" {
        "GET"
    } else {
        method
    }
}

/// Routes `request`; `admitted` gets where an authenticated caller stands
/// against the rate limit once admitted, and `paid` the receipt of the x402
/// payment (`PAYMENT-SIGNATURE`) it carried, paid before its handler runs,
/// so a submit refused for want of credits can be retried with a payment.
fn route(
    state: &State,
    request: &Request,
    admitted: &mut Option<creditgate::Quota>,
    paid: &mut Option<creditgate::X402Receipt>,
) -> Result<Response, Error> {
    let mut path_matched = false;
    let method = routed_method(&request.method);
    for route in ROUTES {
        let Some(params) = match_path(route.pattern, &request.path) else {
            continue;
        };
        path_matched = true;
        if route.method != method {
            continue;
        }
        let principal = match route.auth {
            Auth::Public => None,
            Auth::Bearer => {
                let principal = state.gate.authenticate(request.bearer()?)?;
                *admitted = state.gate.admit(&principal)?;
                if let Some(payment) = request.header("payment-signature") {
                    *paid = Some(state.gate.pay_with_x402(&principal.account_id, payment)?);
                }
                Some(principal)
            }
        };
        return (route.handler)(&Call {
            state,
            request,
            params,
            principal,
            payment: paid.clone(),
        });
    }
    let (method, path) = (request.method.clone(), request.path.clone());
    Err(if path_matched {
        Error::MethodNotAllowed { method, path }
    } else {
        Error::NoRoute { method, path }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::test_support;

    #[test]
    fn only_upstream_callbacks_may_carry_larger_bodies() {
        assert_eq!(
            body_bytes_max("POST", "/v1/providers/replicate/webhook"),
            Some(crate::http::WEBHOOK_BODY_BYTES_MAX)
        );
        const { assert!(crate::http::WEBHOOK_BODY_BYTES_MAX > crate::http::BODY_BYTES_MAX) };
        for (method, path) in [
            ("POST", "/v1/generate"),
            ("GET", "/v1/providers/replicate/webhook"),
            ("POST", "/v1/providers/replicate/webhook/extra"),
        ] {
            assert_eq!(body_bytes_max(method, path), None);
        }
    }

    /// A gate with the shipped catalog and an admin key, in `dir`.
    fn state(dir: &std::path::Path) -> (State, String) {
        let gate = test_support::gate(dir, "router.db");
        let account = test_support::account(&gate, "a");
        let (_, key) = gate
            .create_api_key(&account, "k", &["admin".to_owned()], None)
            .expect("key");
        let state = test_support::state(gate);
        (state, key)
    }

    #[test]
    fn head_is_answered_on_every_get_route_as_get() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (state, key) = state(dir.path());
        let call = |method: &str, path: &str| {
            dispatch(
                &state,
                &Request {
                    method: method.into(),
                    path: path.into(),
                    headers: vec![("authorization".into(), format!("Bearer {key}"))],
                    ..Request::default()
                },
            )
        };
        let mut checked = 0;
        for route in ROUTES.iter().filter(|route| route.method == "GET") {
            let path = route
                .pattern
                .split('/')
                .map(|seg| if seg.starts_with('{') { "x" } else { seg })
                .collect::<Vec<_>>()
                .join("/");
            let (get, head) = (call("GET", &path), call("HEAD", &path));
            assert_ne!(head.status, 405, "HEAD {path} is refused");
            assert_eq!(
                (head.status, head.content_type),
                (get.status, get.content_type),
                "HEAD {path} answers as GET"
            );
            checked += 1;
        }
        assert!(checked >= 7, "every GET route walked");
        let refused = call("DELETE", "/v1/credits/balance");
        assert_eq!(refused.status, 405);
        assert!(refused
            .headers
            .iter()
            .any(|(name, value)| *name == "Allow" && value == "GET, HEAD"));
    }

    #[test]
    fn every_error_of_a_route_is_rendered_in_its_dialect() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (state, _) = state(dir.path());
        let answer = |method: &str, path: &str| {
            let response = dispatch(
                &state,
                &Request {
                    method: method.into(),
                    path: path.into(),
                    ..Request::default()
                },
            );
            let body: serde_json::Value = serde_json::from_slice(&response.body).expect("json");
            (response.status, body)
        };
        for route in ROUTES.iter().filter(|route| route.auth == Auth::Bearer) {
            let (status, body) = answer(route.method, route.pattern);
            assert_eq!(status, 401, "{} {}", route.method, route.pattern);
            match route.dialect {
                Dialect::Rynjer => assert_eq!(body["data"]["error"], "unauthorized", "{body}"),
                Dialect::OpenAi => {
                    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
                    assert_eq!(body["error"]["type"], "authentication_error", "{body}");
                }
                Dialect::AgentName => {
                    assert_eq!(body["code"], 401, "{body}");
                    assert_eq!(body["reason"], "unauthorized", "{body}");
                    assert!(body["error"].is_string(), "{body}");
                }
                Dialect::KiwiWhale => {
                    assert_eq!(body["success"], false, "{body}");
                    assert_eq!(body["error"], "unauthorized", "{body}");
                    assert_eq!(body["code"], "unauthorized", "{body}");
                }
            }
        }
        let (status, body) = answer("DELETE", "/v1/chat/completions");
        assert_eq!(
            (status, &body["error"]["code"]),
            (405, &"method_not_allowed".into())
        );
        let (status, body) = answer("GET", "/v1/nothing-here");
        assert_eq!((status, &body["data"]["error"]), (404, &"not_found".into()));
        assert_eq!(dialect_of("/v1/models"), Dialect::OpenAi);
        assert_eq!(dialect_of("/v1/models/list"), Dialect::Rynjer);
        assert_eq!(dialect_of("/api/status/job_1"), Dialect::AgentName);
        assert_eq!(dialect_of("/api/v1/jobs.php"), Dialect::KiwiWhale);
        assert_eq!(dialect_of("/api/v1/agents/register"), Dialect::Rynjer);
    }

    #[test]
    fn patterns_match_whole_segments() {
        assert_eq!(
            match_path("/v1/generate/{request_id}", "/v1/generate/abc"),
            Some(vec![("request_id", "abc".to_owned())])
        );
        assert_eq!(
            match_path("/v1/generate/{request_id}", "/v1/generate/"),
            None
        );
        assert_eq!(
            match_path("/v1/generate/{request_id}", "/v1/generate/a/b"),
            None
        );
        assert_eq!(match_path("/v1/generate", "/v1/generate"), Some(vec![]));
        assert_eq!(match_path("/v1/generate", "/v1/generatex"), None);
        assert_eq!(
            match_path("/v1/generate/{request_id}", "/v1/generate/a%2Fb%3F"),
            Some(vec![("request_id", "a/b?".to_owned())])
        );
        assert_eq!(
            match_path("/v1/generate/{request_id}", "/v1/generate/a%zz"),
            None
        );
    }
}
