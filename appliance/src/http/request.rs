//! What a handler is given, and the plumbing to read it: our [`Request`]
//! type, the server's [`State`], a route's path [`Params`], the [`Call`]
//! that bundles them with the authenticated caller, and the parsers of the
//! request's parts (the bearer credential, a query parameter, a JSON body,
//! the Moltbook identity header). Below the router and the handlers, which
//! both use it; it names no other module of the HTTP layer.

use std::sync::Arc;

use creditgate::identity::{bearer_credential, Principal};
use creditgate::{Error, Gate};
use serde_json::Value;

/// JSON nesting accepted in a body, at most (serde_json's own limit is 128).
pub const JSON_DEPTH_MAX: usize = 32;

/// The header a Moltbook agent presents its identity token in (lowercase,
/// as [`Request::header`] looks headers up).
pub const MOLTBOOK_IDENTITY_HEADER: &str = "x-moltbook-identity";

/// What every handler can reach.
#[derive(Debug)]
pub struct State {
    /// The facade.
    pub gate: Arc<Gate>,
    /// The public base URL (for docs and links).
    pub public_base_url: String,
}

/// An HTTP request, read off the wire (or built by a test).
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string, without `?`.
    pub query: String,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// This request's id (from `X-Request-Id` or minted).
    pub request_id: String,
    /// The peer's IP address (empty when unknown): the connection's, not
    /// a header's, so a client cannot choose it.
    pub client_address: String,
}

impl Request {
    /// The first header called `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The value of the query parameter `name` (as sent, not decoded).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.split('&').find_map(|pair| {
            pair.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('='))
        })
    }

    /// The bearer credential of the `Authorization` header (the core's one
    /// parser of the scheme), or `unauthorized` when there is none.
    pub fn bearer(&self) -> Result<&str, Error> {
        self.header("authorization")
            .and_then(bearer_credential)
            .ok_or(Error::Unauthorized {
                reason: "missing Authorization: Bearer <api key or access token>",
            })
    }

    /// The JSON body: required, UTF-8, nested at most [`JSON_DEPTH_MAX`]
    /// deep. Every refusal is `invalid_request` naming `body`.
    pub fn json_body(&self) -> Result<Value, Error> {
        let invalid = |message: String| Error::InvalidRequest {
            field: "body".into(),
            message,
        };
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Err(invalid("a JSON object is required".into()));
        }
        if nesting_depth(&self.body) > JSON_DEPTH_MAX {
            return Err(invalid(format!(
                "JSON nests deeper than {JSON_DEPTH_MAX} levels"
            )));
        }
        serde_json::from_slice(&self.body)
            .map_err(|err| invalid(format!("is not valid JSON: {err}")))
    }

    /// The identity token of `POST /auth/moltbook/exchange`: the
    /// `X-Moltbook-Identity` header when it is present and not blank (the
    /// body is then not read at all), else `identity_token` of a JSON body.
    /// `None` when neither gives one (the core refuses it as
    /// `unauthorized`); a body that is not JSON, or an `identity_token`
    /// that is not a string, is `invalid_request`.
    pub fn identity_token(&self) -> Result<Option<String>, Error> {
        if let Some(token) = self
            .header(MOLTBOOK_IDENTITY_HEADER)
            .filter(|token| !token.trim().is_empty())
        {
            return Ok(Some(token.to_owned()));
        }
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        match &self.json_body()?["identity_token"] {
            Value::Null => Ok(None),
            Value::String(token) => Ok(Some(token.clone())),
            _ => Err(Error::InvalidRequest {
                field: "identity_token".into(),
                message: "must be a string".into(),
            }),
        }
    }
}

/// Path parameters, by name, in pattern order.
pub type Params = Vec<(&'static str, String)>;

/// One routed request as its handler sees it.
#[derive(Debug)]
pub struct Call<'a> {
    /// The server's state.
    pub state: &'a State,
    /// The request.
    pub request: &'a Request,
    /// The route's path parameters.
    pub params: Params,
    /// The authenticated caller, on a bearer route.
    pub principal: Option<Principal>,
    /// The x402 payment the request carried, paid before the handler.
    pub payment: Option<creditgate::X402Receipt>,
}

impl Call<'_> {
    /// The facade.
    pub fn gate(&self) -> &Gate {
        &self.state.gate
    }

    /// The path parameter `name` (empty if the pattern has none).
    pub fn param(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(key, _)| *key == name)
            .map_or("", |(_, value)| value.as_str())
    }

    /// Runs a signed agent operation of the gate on this request: the
    /// core verifies the signature over its method, path and JSON body.
    pub fn signed<T>(
        &self,
        op: impl FnOnce(&Gate, &str, &str, &Value) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let body = self.request.json_body()?;
        op(self.gate(), &self.request.method, &self.request.path, &body)
    }

    /// The caller of a bearer route (the router guarantees one).
    pub fn caller(&self) -> Result<&Principal, Error> {
        self.principal.as_ref().ok_or(Error::Unauthorized {
            reason: "a credential is required",
        })
    }
}

/// The string member `field` of a JSON body, or `invalid_request` naming it.
pub fn required_str<'a>(body: &'a Value, field: &str) -> Result<&'a str, Error> {
    body[field].as_str().ok_or_else(|| Error::InvalidRequest {
        field: field.to_owned(),
        message: "is required (a string)".into(),
    })
}

/// `body` as a JSON object whose members are all among `members`: an
/// unknown member is refused by name, never ignored.
pub fn object_with_members<'a>(
    body: &'a Value,
    members: &[&str],
) -> Result<&'a serde_json::Map<String, Value>, Error> {
    let object = body.as_object().ok_or_else(|| Error::InvalidRequest {
        field: "body".to_owned(),
        message: "must be a JSON object".into(),
    })?;
    if let Some(unknown) = object.keys().find(|key| !members.contains(&key.as_str())) {
        return Err(Error::InvalidRequest {
            field: unknown.clone(),
            message: "is not a known field".into(),
        });
    }
    Ok(object)
}

/// The deepest nesting of arrays and objects in a JSON text (strings
/// skipped), computed without parsing so hostile input costs one pass.
fn nesting_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_depth_skips_strings() {
        assert_eq!(nesting_depth(br#"{"a":[1,{"b":"[[[["}]}"#), 3);
        assert_eq!(nesting_depth(b"[[[[]]]]"), 4);
        assert_eq!(nesting_depth(br#""\"[""#), 0);
    }

    #[test]
    fn the_bearer_credential_needs_the_scheme_and_a_credential() {
        let with = |value: &str| Request {
            headers: vec![("authorization".into(), value.into())],
            ..Request::default()
        };
        assert_eq!(with("Bearer cg_live_x").bearer().ok(), Some("cg_live_x"));
        assert_eq!(with("bearer  cg_live_x ").bearer().ok(), Some("cg_live_x"));
        for refused in ["cg_live_x", "Basic abc", "Bearer", "Bearer   ", "Beareré x"] {
            let err = with(refused).bearer().expect_err(refused);
            assert_eq!(err.code(), "unauthorized", "{refused}");
            assert!(err.to_string().contains("missing Authorization"), "{err}");
        }
        assert!(Request::default().bearer().is_err());
    }

    #[test]
    fn a_query_parameter_matches_its_whole_name() {
        let request = Request {
            query: "x_price_version=a&price_version=v2".into(),
            ..Request::default()
        };
        assert_eq!(request.query_param("price_version"), Some("v2"));
        assert_eq!(request.query_param("version"), None);
    }
}
