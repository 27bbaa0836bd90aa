//! Moltbook's identity protocol and the core's one network client: the
//! configuration of its verifier ([`MoltbookConfig`]), the pure reading of
//! its answer ([`interpret_moltbook_answer`]) and, with the cargo feature
//! `http` (the appliance turns it on), `MoltbookVerifier`, the
//! `IdentityVerifier` (see [`super::external`]) that asks Moltbook over
//! HTTP (ureq, rustls). Without the feature the core builds without an
//! HTTP client or TLS stack; embedders then bring their own verifier
//! through the trait. Owns no table.
//!
//! The verifier makes a single `POST` to the configured verify URL with
//! `{"token", "audience"?}` and an optional `X-Moltbook-App-Key`, bounded by
//! [`MOLTBOOK_TIMEOUT_MS_DEFAULT`] (connect:
//! [`MOLTBOOK_CONNECT_TIMEOUT_MS_DEFAULT`]), reading at most
//! [`VERIFY_RESPONSE_BYTES_MAX`] of the answer and following no redirect.
//! It runs outside the store's writer and is only built when configured.
//!
//! Invariants:
//! - only HTTP 200 with `success: true` and `valid: true` and a usable
//!   `agent.id` is a success; any other 4xx or negative answer is
//!   [`Error::IdentityRefused`]; a network failure, a timeout, a redirect,
//!   a 5xx, a 429, an `invalid_app_key` refusal (our configuration, not the
//!   caller's token) or an answer that is not the protocol is
//!   [`Error::UpstreamUnavailable`], never a success;
//! - the identity token and the app key are never stored, logged or put in
//!   an error, and [`MoltbookConfig`]'s `Debug` redacts the app key.

#[cfg(feature = "http")]
use std::time::Duration;

#[cfg(feature = "http")]
use serde_json::json;
use serde_json::Value;

use crate::error::{Error, Result};

use super::agents::AGENT_NAME_CHARS_MAX;
use super::external::{char_is_bad, VerifiedIdentity, MOLTBOOK_PROVIDER};
#[cfg(feature = "http")]
use super::external::{check_token, IdentityVerifier};

/// Moltbook's own verify endpoint (the `www` host, so no redirect strips
/// the app key header), for operators to configure; never a default.
pub const MOLTBOOK_VERIFY_URL: &str = "https://www.moltbook.com/api/v1/agents/verify-identity";
/// The header Moltbook's app key travels in.
pub const MOLTBOOK_APP_KEY_HEADER: &str = "X-Moltbook-App-Key";
/// The longest external agent id accepted from a verifier.
pub const EXTERNAL_ID_CHARS_MAX: usize = 128;
/// The longest owner handle kept from a verifier's answer.
pub const OWNER_HANDLE_CHARS_MAX: usize = 100;
/// The longest provider reason passed on in [`Error::IdentityRefused`].
pub const REFUSAL_REASON_CHARS_MAX: usize = 64;
/// The most of a verifier's answer that is read, in bytes; a longer answer
/// is [`Error::UpstreamUnavailable`].
pub const VERIFY_RESPONSE_BYTES_MAX: u64 = 64 * 1024;
/// The whole verify call, connect to last byte, by default, in milliseconds.
pub const MOLTBOOK_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Connection setup (DNS, TCP, TLS) of the verify call, by default, in
/// milliseconds.
pub const MOLTBOOK_CONNECT_TIMEOUT_MS_DEFAULT: u64 = 5_000;
/// The longest verify URL, app key or audience accepted in configuration.
pub const CONFIG_VALUE_CHARS_MAX: usize = 2_048;

/// How to reach Moltbook's verifier.
#[derive(Clone, PartialEq, Eq)]
pub struct MoltbookConfig {
    /// The verify endpoint (`http://` or `https://`), e.g.
    /// [`MOLTBOOK_VERIFY_URL`] or a local stand-in.
    pub verify_url: String,
    /// Sent as `X-Moltbook-App-Key` when set. A secret: never shown.
    pub app_key: Option<String>,
    /// Sent as `audience` when set: tokens minted for another audience are
    /// refused by Moltbook.
    pub audience: Option<String>,
    /// The whole call, in milliseconds.
    pub timeout_ms: u64,
    /// Connection setup, in milliseconds.
    pub connect_timeout_ms: u64,
}

impl MoltbookConfig {
    /// A configuration with no app key, no audience and the default
    /// timeouts.
    pub fn new(verify_url: impl Into<String>) -> MoltbookConfig {
        MoltbookConfig {
            verify_url: verify_url.into(),
            app_key: None,
            audience: None,
            timeout_ms: MOLTBOOK_TIMEOUT_MS_DEFAULT,
            connect_timeout_ms: MOLTBOOK_CONNECT_TIMEOUT_MS_DEFAULT,
        }
    }
}

impl std::fmt::Debug for MoltbookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MoltbookConfig")
            .field("verify_url", &self.verify_url)
            .field("app_key", &self.app_key.as_ref().map(|_| "<redacted>"))
            .field("audience", &self.audience)
            .field("timeout_ms", &self.timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .finish()
    }
}

#[cfg(feature = "http")]
/// The [`IdentityVerifier`] of Moltbook: `POST <verify_url>` with
/// `{"token": ..., "audience": ...}` (audience only when configured).
pub struct MoltbookVerifier {
    config: MoltbookConfig,
    http: ureq::Agent,
}

#[cfg(feature = "http")]
impl std::fmt::Debug for MoltbookVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MoltbookVerifier")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "http")]
impl MoltbookVerifier {
    /// Validates `config` (an `http(s)://` URL without whitespace, a
    /// printable app key and audience, positive timeouts) and builds the
    /// verifier. A bad value is [`Error::InvalidRequest`] naming it.
    pub fn new(config: MoltbookConfig) -> Result<MoltbookVerifier> {
        let url = config.verify_url.trim();
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"));
        let scheme_ok = rest.is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
        if !scheme_ok || url.len() > CONFIG_VALUE_CHARS_MAX || url.chars().any(char_is_bad) {
            return Err(Error::invalid(
                "moltbook_verify_url",
                format!("must be an http:// or https:// URL of at most {CONFIG_VALUE_CHARS_MAX} characters, without spaces"),
            ));
        }
        for (field, value) in [
            ("moltbook_app_key", &config.app_key),
            ("moltbook_audience", &config.audience),
        ] {
            if let Some(value) = value {
                if value.is_empty()
                    || value.len() > CONFIG_VALUE_CHARS_MAX
                    || value.chars().any(char_is_bad)
                {
                    return Err(Error::invalid(
                        field,
                        format!("must be 1 to {CONFIG_VALUE_CHARS_MAX} printable characters without spaces"),
                    ));
                }
            }
        }
        if config.timeout_ms == 0 || config.connect_timeout_ms == 0 {
            return Err(Error::invalid("moltbook_timeout", "must be positive"));
        }
        let http = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(config.timeout_ms)))
            .timeout_connect(Some(Duration::from_millis(config.connect_timeout_ms)))
            // A redirect is answered, not followed: it could lead to another
            // host (with our app key) and means the URL is misconfigured.
            .max_redirects(0)
            .http_status_as_error(false)
            .user_agent(concat!("creditgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let config = MoltbookConfig {
            verify_url: url.to_owned(),
            ..config
        };
        Ok(MoltbookVerifier { config, http })
    }

    /// The configuration in force.
    pub fn config(&self) -> &MoltbookConfig {
        &self.config
    }
}

#[cfg(feature = "http")]
impl IdentityVerifier for MoltbookVerifier {
    fn provider(&self) -> &'static str {
        MOLTBOOK_PROVIDER
    }

    fn verify(&self, identity_token: &str) -> Result<VerifiedIdentity> {
        let token = check_token(MOLTBOOK_PROVIDER, identity_token)?;
        let mut body = json!({ "token": token });
        if let Some(audience) = &self.config.audience {
            body["audience"] = json!(audience);
        }
        let mut request = self
            .http
            .post(&self.config.verify_url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json");
        if let Some(key) = &self.config.app_key {
            request = request.header(MOLTBOOK_APP_KEY_HEADER, key);
        }
        let unavailable = |detail: String| Error::UpstreamUnavailable {
            upstream: MOLTBOOK_PROVIDER,
            detail,
        };
        let response = request
            .send(body.to_string().as_bytes())
            .map_err(|err| unavailable(transport_detail(&err)))?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .with_config()
            .limit(VERIFY_RESPONSE_BYTES_MAX)
            .read_to_vec()
            .map_err(|err| match err {
                ureq::Error::BodyExceedsLimit(_) => unavailable(format!(
                    "answered more than {VERIFY_RESPONSE_BYTES_MAX} bytes"
                )),
                other => unavailable(transport_detail(&other)),
            })?;
        interpret_moltbook_answer(status, &bytes)
    }
}

#[cfg(feature = "http")]
/// What went wrong in transport, in words for the operator's log.
fn transport_detail(err: &ureq::Error) -> String {
    match err {
        ureq::Error::Timeout(which) => format!("timed out ({which:?})"),
        ureq::Error::HostNotFound => "the host was not found".to_owned(),
        ureq::Error::ConnectionFailed => "the connection failed".to_owned(),
        other => format!("transport error: {other}"),
    }
}

/// Interprets the verifier's answer: HTTP `status` and the (bounded) body.
/// Pure, so every branch is tested without a socket.
pub fn interpret_moltbook_answer(status: u16, body: &[u8]) -> Result<VerifiedIdentity> {
    let unavailable = |detail: String| Error::UpstreamUnavailable {
        upstream: MOLTBOOK_PROVIDER,
        detail,
    };
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let reason = parsed
        .as_ref()
        .and_then(|value| value.get("error"))
        .and_then(Value::as_str)
        .filter(|reason| is_machine_reason(reason));
    match status {
        200 => {}
        300..=399 => {
            return Err(unavailable(format!(
                "redirected (HTTP {status}); configure the final verify URL"
            )))
        }
        429 => return Err(unavailable("rate limited (HTTP 429)".to_owned())),
        400..=499 if reason == Some("invalid_app_key") => {
            return Err(unavailable(format!(
                "refused our app key (HTTP {status}); check the configured Moltbook app key"
            )))
        }
        400..=499 => {
            return Err(Error::IdentityRefused {
                provider: MOLTBOOK_PROVIDER,
                reason: reason.unwrap_or("refused").to_owned(),
            })
        }
        _ => return Err(unavailable(format!("answered HTTP {status}"))),
    }
    let Some(answer) = parsed.as_ref().filter(|value| value.is_object()) else {
        return Err(unavailable(
            "answered HTTP 200 with a body that is not a JSON object".to_owned(),
        ));
    };
    let yes = |field: &str| answer.get(field) == Some(&Value::Bool(true));
    if !(yes("success") && yes("valid")) {
        if reason == Some("invalid_app_key") {
            return Err(unavailable(
                "refused our app key; check the configured Moltbook app key".to_owned(),
            ));
        }
        return Err(Error::IdentityRefused {
            provider: MOLTBOOK_PROVIDER,
            reason: reason.unwrap_or("invalid_token").to_owned(),
        });
    }
    let agent = &answer["agent"];
    let external_id = match &agent["id"] {
        Value::String(id) => id.trim().to_owned(),
        Value::Number(id) => id.to_string(),
        _ => String::new(),
    };
    if external_id.is_empty()
        || external_id.chars().count() > EXTERNAL_ID_CHARS_MAX
        || external_id.chars().any(char_is_bad)
    {
        return Err(unavailable(
            "answered valid without a usable agent.id".to_owned(),
        ));
    }
    let name = clean_text(agent["name"].as_str().unwrap_or(""), AGENT_NAME_CHARS_MAX);
    let name = if name.is_empty() {
        external_id.chars().take(AGENT_NAME_CHARS_MAX).collect()
    } else {
        name
    };
    let owner_handle = agent["owner"]["x_handle"]
        .as_str()
        .map(|handle| clean_text(handle, OWNER_HANDLE_CHARS_MAX))
        .filter(|handle| !handle.is_empty());
    Ok(VerifiedIdentity {
        external_id,
        name,
        karma: agent["karma"].as_i64(),
        owner_handle,
    })
}

/// A provider's machine reason worth passing on: `[a-z0-9_]{1,64}`.
fn is_machine_reason(reason: &str) -> bool {
    !reason.is_empty()
        && reason.len() <= REFUSAL_REASON_CHARS_MAX
        && reason
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Text from a provider made safe to keep: control characters dropped,
/// trimmed, at most `max` characters.
fn clean_text(text: &str, max: usize) -> String {
    let kept: String = text.chars().filter(|c| !c.is_control()).collect();
    kept.trim()
        .chars()
        .take(max)
        .collect::<String>()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(status: u16, body: &str, expected: std::result::Result<&str, &str>) {
        let got = interpret_moltbook_answer(status, body.as_bytes());
        match (got, expected) {
            (Ok(identity), Ok(id)) => assert_eq!(identity.external_id, id, "{status} {body}"),
            (Err(err), Err(code)) => assert_eq!(err.code(), code, "{status} {body}: {err}"),
            (got, expected) => panic!("{status} {body}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn only_a_valid_200_answer_is_a_success() {
        let valid = r#"{"success":true,"valid":true,"agent":{"id":"a-1","name":"CoolBot"}}"#;
        check(200, valid, Ok("a-1"));
        check(
            200,
            r#"{"success":true,"valid":true,"agent":{"id":42}}"#,
            Ok("42"),
        );
        check(
            200,
            r#"{"success":true,"valid":false,"error":"identity_token_expired"}"#,
            Err("identity_refused"),
        );
        check(
            200,
            r#"{"success":false,"valid":true,"agent":{"id":"a"}}"#,
            Err("identity_refused"),
        );
        check(
            200,
            r#"{"success":"true","valid":1,"agent":{"id":"a"}}"#,
            Err("identity_refused"),
        );
        check(
            401,
            r#"{"success":false,"error":"invalid_token"}"#,
            Err("identity_refused"),
        );
        check(404, "not json", Err("identity_refused"));
        check(
            403,
            r#"{"error":"invalid_app_key"}"#,
            Err("upstream_unavailable"),
        );
        check(
            200,
            r#"{"success":false,"valid":false,"error":"invalid_app_key"}"#,
            Err("upstream_unavailable"),
        );
        check(
            429,
            r#"{"error":"rate_limit_exceeded"}"#,
            Err("upstream_unavailable"),
        );
        check(500, valid, Err("upstream_unavailable"));
        check(503, "", Err("upstream_unavailable"));
        check(302, "", Err("upstream_unavailable"));
        check(201, valid, Err("upstream_unavailable"));
        check(200, "<html>garbage</html>", Err("upstream_unavailable"));
        check(200, "[1,2]", Err("upstream_unavailable"));
        check(
            200,
            r#"{"success":true,"valid":true}"#,
            Err("upstream_unavailable"),
        );
        check(
            200,
            r#"{"success":true,"valid":true,"agent":{"id":""}}"#,
            Err("upstream_unavailable"),
        );
        check(
            200,
            r#"{"success":true,"valid":true,"agent":{"id":"a b"}}"#,
            Err("upstream_unavailable"),
        );
    }

    #[test]
    fn refusal_reasons_are_passed_on_only_when_well_formed() {
        let reason = |body: &str| match interpret_moltbook_answer(401, body.as_bytes()) {
            Err(Error::IdentityRefused { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            reason(r#"{"error":"audience_mismatch"}"#),
            "audience_mismatch"
        );
        assert_eq!(reason(r#"{"error":"Bad <script>"}"#), "refused");
        assert_eq!(
            reason(&format!(r#"{{"error":"{}"}}"#, "a".repeat(65))),
            "refused"
        );
        assert_eq!(reason("{}"), "refused");
    }

    #[test]
    fn names_and_optional_fields_are_cleaned() {
        let body = json!({"success": true, "valid": true, "agent": {
            "id": "uuid-1", "name": format!(" Cool\u{0}Bot {}", "x".repeat(200)), "karma": 420,
            "owner": {"x_handle": "owner\n", "x_verified": true}}});
        let identity = interpret_moltbook_answer(200, body.to_string().as_bytes()).expect("valid");
        assert!(identity.name.starts_with("CoolBot x"));
        assert_eq!(identity.name.chars().count(), AGENT_NAME_CHARS_MAX);
        assert_eq!(identity.karma, Some(420));
        assert_eq!(identity.owner_handle.as_deref(), Some("owner"));
        let bare = json!({"success": true, "valid": true, "agent": {"id": "uuid-2"}});
        let identity = interpret_moltbook_answer(200, bare.to_string().as_bytes()).expect("valid");
        assert_eq!(identity.name, "uuid-2");
        assert_eq!((identity.karma, identity.owner_handle), (None, None));
    }

    #[cfg(feature = "http")]
    #[test]
    fn configuration_is_validated_and_the_app_key_never_shown() {
        let bad_urls = [
            "",
            "ftp://x",
            "www.moltbook.com",
            "https://a b",
            "http://x\ny",
            "https://",
            "http:///path",
        ];
        for url in bad_urls {
            let err = MoltbookVerifier::new(MoltbookConfig::new(url)).expect_err(url);
            assert!(
                matches!(&err, Error::InvalidRequest { field, .. } if field == "moltbook_verify_url"),
                "{url}"
            );
        }
        let mut config = MoltbookConfig::new(MOLTBOOK_VERIFY_URL);
        config.app_key = Some(String::new());
        assert!(MoltbookVerifier::new(config.clone()).is_err());
        config.app_key = Some("moltdev_secret".into());
        config.audience = Some("gate.example".into());
        let verifier = MoltbookVerifier::new(config).expect("valid");
        let shown = format!("{verifier:?}");
        assert!(!shown.contains("moltdev_secret"), "{shown}");
        assert!(shown.contains("gate.example"));
        assert_eq!(verifier.provider(), "moltbook");
    }
}
