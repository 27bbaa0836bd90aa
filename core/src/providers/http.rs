//! The one HTTP client the adapters share (ureq over rustls, only with the
//! cargo feature `http`). It owns how a call is bounded (timeouts per
//! phase, an answer read to at most a set number of bytes, no redirect
//! followed with a credential) and how a failed call is sorted into the
//! three cases the worker acts on ([`ProviderError`]): it did not reach the
//! upstream, its outcome is unknown, or it was refused for good. Owns no
//! table.
//!
//! Invariant: no error made here carries the credential, a request body or
//! a raw answer body; [`summary`] gives at most a short, printable excerpt
//! of an upstream's own message for the operator.

use std::io::Read;
use std::time::Duration;

use serde_json::Value;

use super::config::{Credential, ProviderConfig};
use super::ProviderError;
use crate::error::{Error, Result};

/// The most of an API answer read, by default, in bytes (an OpenAI image
/// answer with several `b64_json` images is the largest expected).
pub const ANSWER_BYTES_MAX_DEFAULT: u64 = 64 * 1024 * 1024;
/// The longest excerpt of an upstream message kept in an error.
pub const SUMMARY_CHARS_MAX: usize = 200;
/// The longest `Retry-After` honoured, in milliseconds (a longer hint is
/// capped: the job's own deadline decides when to give up).
pub const RETRY_AFTER_MS_MAX: i64 = 10 * 60 * 1000;

/// How the credential travels.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `Authorization: Bearer <secret>` (OpenAI, Replicate, kie.ai).
    Bearer(Credential),
    /// `Authorization: Key <secret>` (fal).
    Key(Credential),
    /// No credential (a local ComfyUI, a local vLLM).
    None,
}

impl Auth {
    fn header(&self) -> Option<String> {
        match self {
            Auth::Bearer(secret) => Some(format!("Bearer {}", secret.expose())),
            Auth::Key(secret) => Some(format!("Key {}", secret.expose())),
            Auth::None => None,
        }
    }
}

/// An upstream's answer: its status, its retry hint and its body, read to
/// at most the client's limit.
#[derive(Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// `Retry-After`, in milliseconds, capped at [`RETRY_AFTER_MS_MAX`].
    pub retry_after_ms: Option<i64>,
    /// The `Content-Type`, if any.
    pub content_type: Option<String>,
    /// Every response header (lowercase names), for adapters that read one
    /// of their own (`X-Fal-Retryable`).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer")
            .field("status", &self.status)
            .field("retry_after_ms", &self.retry_after_ms)
            .field("body_bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl Answer {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON, or why not (without the body).
    pub fn json(&self) -> std::result::Result<Value, String> {
        serde_json::from_slice(&self.body).map_err(|err| {
            format!(
                "the upstream answered HTTP {} with a body that is not JSON ({err})",
                self.status
            )
        })
    }

    /// A response header by name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The usual reading of a status that is not a success, for a call that
    /// was *not* accepted: 408, 409, 425, 429 and 5xx are
    /// [`ProviderError::NotSent`] (honouring `Retry-After`), 401 and 403
    /// are `provider_auth_failed`, anything else `upstream_rejected` with
    /// `message`. Adapters with their own vocabulary map first and fall
    /// back to this.
    pub fn refusal(&self, message: &str) -> ProviderError {
        match self.status {
            408 | 409 | 425 | 429 | 500..=599 => ProviderError::NotSent {
                message: format!("the upstream answered HTTP {}: {message}", self.status),
                retry_after_ms: self.retry_after_ms,
            },
            401 | 403 => ProviderError::permanent(
                "provider_auth_failed",
                format!(
                    "the upstream refused our credential (HTTP {}); the operator must fix it",
                    self.status
                ),
            ),
            status => ProviderError::permanent(
                "upstream_rejected",
                format!("the upstream refused the request (HTTP {status}): {message}"),
            ),
        }
    }
}

/// A short, printable excerpt of an upstream message: at most
/// [`SUMMARY_CHARS_MAX`] characters, control characters dropped.
pub fn summary(text: &str) -> String {
    let clean: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(SUMMARY_CHARS_MAX)
        .collect();
    if clean.trim().is_empty() {
        "no reason given".to_owned()
    } else {
        clean.trim().to_owned()
    }
}

/// Reads `Retry-After` (delta seconds; an HTTP date is not honoured and
/// reads as absent), capped at [`RETRY_AFTER_MS_MAX`].
pub fn retry_after_ms(value: &str) -> Option<i64> {
    let seconds: f64 = value.trim().parse().ok()?;
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    // Whole milliseconds; the float is a header's text, not money.
    let ms = (seconds * 1000.0).ceil();
    Some(if ms > RETRY_AFTER_MS_MAX as f64 {
        RETRY_AFTER_MS_MAX
    } else {
        ms as i64
    })
}

/// A bounded HTTP client for one provider instance.
pub struct HttpClient {
    agent: ureq::Agent,
    base_url: String,
    auth: Auth,
    answer_bytes_max: u64,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("base_url", &self.base_url)
            .field("answer_bytes_max", &self.answer_bytes_max)
            .finish_non_exhaustive()
    }
}

/// An HTTP method the adapters use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET: a read, always safe to repeat.
    Get,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// DELETE.
    Delete,
}

impl HttpClient {
    /// A client for `config`'s instance (its base URL, timeouts) sending
    /// `auth`. A missing base URL is [`Error::InvalidRequest`].
    pub fn new(config: &ProviderConfig, auth: Auth) -> Result<HttpClient> {
        let base_url = config.base_url().ok_or_else(|| {
            Error::invalid(
                &format!("providers.{}.base_url", config.name),
                "this instance needs a base URL",
            )
        })?;
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(config.timeout_ms as u64)))
            .timeout_connect(Some(Duration::from_millis(
                config.connect_timeout_ms as u64,
            )))
            // A redirect is answered, not followed: it could carry our
            // credential to another host.
            .max_redirects(0)
            .http_status_as_error(false)
            .user_agent(concat!("creditgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(HttpClient {
            agent,
            base_url,
            auth,
            answer_bytes_max: ANSWER_BYTES_MAX_DEFAULT,
        })
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `path` under the base URL, or `path` itself when it is a full URL
    /// (fal's and Replicate's answers name their own status URLs).
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}/{}", self.base_url, path.trim_start_matches('/'))
        }
    }

    /// Whether `url` is on this instance's host (a URL an upstream answered
    /// gets our credential only then).
    pub fn same_origin(&self, url: &str) -> bool {
        let origin = |url: &str| {
            let rest = url.split_once("://").map(|(scheme, rest)| (scheme, rest));
            rest.map(|(scheme, rest)| {
                let host = rest.split(['/', '?', '#']).next().unwrap_or("");
                format!("{scheme}://{}", host.to_ascii_lowercase())
            })
        };
        origin(url).is_some() && origin(url) == origin(&self.base_url)
    }

    /// Sends one request and reads the answer. `headers` are added as
    /// given; the credential goes only to the instance's own origin.
    pub fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> std::result::Result<Answer, ProviderError> {
        let url = self.url(path);
        let auth = if self.same_origin(&url) {
            self.auth.header()
        } else {
            None
        };
        let mut builder = match method {
            Method::Get => ureq::http::Request::get(&url),
            Method::Post => ureq::http::Request::post(&url),
            Method::Put => ureq::http::Request::put(&url),
            Method::Delete => ureq::http::Request::delete(&url),
        }
        .header("Accept", "application/json");
        if let Some(auth) = &auth {
            builder = builder.header("Authorization", auth);
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let payload = match body {
            Some(body) => {
                builder = builder.header("Content-Type", "application/json");
                serde_json::to_vec(body).map_err(|err| {
                    ProviderError::permanent("internal", format!("request not encodable: {err}"))
                })?
            }
            None => Vec::new(),
        };
        let request = builder.body(payload).map_err(|_| {
            ProviderError::permanent(
                "provider_misconfigured",
                "the request could not be built (a bad URL or header)",
            )
        })?;
        let response = self
            .agent
            .run(request)
            .map_err(|err| classify(&err, method))?;
        let status = response.status().as_u16();
        let mut headers = Vec::new();
        for (name, value) in response.headers() {
            if let Ok(value) = value.to_str() {
                headers.push((name.as_str().to_ascii_lowercase(), value.to_owned()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        let retry_after = header("retry-after").and_then(|value| retry_after_ms(&value));
        let content_type = header("content-type");
        let mut body = Vec::new();
        let mut reader = response
            .into_body()
            .into_reader()
            .take(self.answer_bytes_max + 1);
        reader
            .read_to_end(&mut body)
            .map_err(|err| lost_answer(method, &format!("reading the answer failed: {err}")))?;
        if body.len() as u64 > self.answer_bytes_max {
            return Err(lost_answer(
                method,
                &format!(
                    "the upstream's answer is larger than {} bytes",
                    self.answer_bytes_max
                ),
            ));
        }
        Ok(Answer {
            status,
            retry_after_ms: retry_after,
            content_type,
            headers,
            body,
        })
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> std::result::Result<Answer, ProviderError> {
        self.call(Method::Get, path, None, &[])
    }

    /// `POST path` with a JSON body.
    pub fn post_json(
        &self,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> std::result::Result<Answer, ProviderError> {
        self.call(Method::Post, path, Some(body), headers)
    }
}

/// The error for an answer lost after the request went out: for a read
/// (GET) nothing happened upstream, so it is safe to ask again.
fn lost_answer(method: Method, message: &str) -> ProviderError {
    if method == Method::Get {
        ProviderError::not_sent(message.to_owned())
    } else {
        ProviderError::OutcomeUnknown {
            message: message.to_owned(),
        }
    }
}

/// Sorts a transport failure: anything before the request could have been
/// sent (DNS, connect, TLS) is [`ProviderError::NotSent`]; a failure after
/// it may have been received is [`ProviderError::OutcomeUnknown`] unless
/// the method is a read.
fn classify(err: &ureq::Error, method: Method) -> ProviderError {
    use ureq::Timeout;
    match err {
        ureq::Error::HostNotFound => ProviderError::not_sent("the upstream's host was not found"),
        ureq::Error::ConnectionFailed => {
            ProviderError::not_sent("the connection to the upstream failed")
        }
        ureq::Error::Tls(reason) => {
            ProviderError::not_sent(format!("the TLS handshake failed: {reason}"))
        }
        ureq::Error::Timeout(Timeout::Resolve | Timeout::Connect) => {
            ProviderError::not_sent("connecting to the upstream timed out")
        }
        ureq::Error::Timeout(_) => lost_answer(method, "the upstream did not answer in time"),
        ureq::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::AddrNotAvailable
            | std::io::ErrorKind::NotFound => {
                ProviderError::not_sent(format!("the upstream is not reachable: {}", io.kind()))
            }
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                lost_answer(method, "the upstream did not answer in time")
            }
            kind => lost_answer(method, &format!("the connection failed mid-call: {kind}")),
        },
        ureq::Error::BadUri(_) | ureq::Error::Http(_) | ureq::Error::InvalidProxyUrl => {
            ProviderError::permanent(
                "provider_misconfigured",
                "the upstream URL is not usable; the operator must fix the providers file",
            )
        }
        ureq::Error::RedirectFailed | ureq::Error::TooManyRedirects => ProviderError::permanent(
            "provider_misconfigured",
            "the upstream answered a redirect; the operator must fix the base URL",
        ),
        _ => lost_answer(method, "the call failed in transit"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_caps() {
        assert_eq!(retry_after_ms("2"), Some(2_000));
        assert_eq!(retry_after_ms(" 0.5 "), Some(500));
        assert_eq!(retry_after_ms("999999"), Some(RETRY_AFTER_MS_MAX));
        assert_eq!(retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(retry_after_ms("-1"), None);
    }

    #[test]
    fn summaries_are_short_and_printable() {
        let long = "x".repeat(1_000);
        assert_eq!(summary(&long).chars().count(), SUMMARY_CHARS_MAX);
        assert_eq!(summary("a\u{7}b\nc"), "abc");
        assert_eq!(summary("  "), "no reason given");
    }

    #[test]
    fn a_refused_connection_is_not_sent_and_the_credential_stays_home() {
        // Nothing listens on a port we just bound and dropped.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let mut config = ProviderConfig::new("x", super::super::config::ProviderKind::Openai);
        config.base_url = Some(format!("http://127.0.0.1:{port}"));
        let client = HttpClient::new(&config, Auth::Bearer(Credential::new("sekrit"))).expect("ok");
        let err = client
            .post_json("/v1/images/generations", &serde_json::json!({}), &[])
            .expect_err("refused");
        assert!(matches!(err, ProviderError::NotSent { .. }), "{err:?}");
        assert!(!err.to_string().contains("sekrit"));
        assert!(client.same_origin(&format!("http://127.0.0.1:{port}/x")));
        assert!(!client.same_origin("http://127.0.0.2/x"));
        assert!(!client.same_origin(&format!("https://127.0.0.1:{port}/x")));
    }
}
