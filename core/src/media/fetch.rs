//! The media store's downloads of remote outputs (cargo feature `http`):
//! its own ureq agent, apart from the adapters' client because the rules
//! differ. An output URL is an upstream's signed link, so no credential is
//! ever sent with it (no `Authorization`, no cookie, and a URL carrying
//! user info is refused); redirects (CDNs answer them) are followed, at
//! most [`REDIRECTS_MAX`]; only `http` and `https`. The body is handed to
//! the store as a stream, never read whole into memory. Owns no table.
//!
//! How an answer is read:
//! - 2xx: the file.
//! - 404, 410, any other 4xx but 408/425/429, a 3xx not followed, too many
//!   redirects, a URL that is not usable: [`OUTPUT_UNAVAILABLE`],
//!   permanent (the upstream will not serve it again).
//! - 408, 425, 429, 5xx, DNS, connect, TLS, timeouts, a reset or a body
//!   that breaks off: transient.

use std::io::Read;
use std::time::Duration;

use super::{printable, KeepError, OUTPUT_UNAVAILABLE};

/// Redirects followed per download, at most.
pub const REDIRECTS_MAX: u32 = 5;

/// An agent for downloads.
pub(crate) struct Fetcher {
    agent: ureq::Agent,
}

/// An answer whose body is still to be read.
pub(crate) struct Download {
    /// The `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The `Content-Length`, if any.
    pub length: Option<u64>,
    /// The body, streamed.
    pub body: Box<dyn Read>,
}

impl Fetcher {
    /// An agent whose connection setup takes at most `connect_timeout`.
    pub(crate) fn new(connect_timeout: Duration) -> Fetcher {
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(connect_timeout))
            .max_redirects(REDIRECTS_MAX)
            .max_redirects_will_error(true)
            .http_status_as_error(false)
            .user_agent(concat!("creditgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Fetcher { agent }
    }

    /// `GET url`, the whole download (redirects, headers and body) within
    /// `timeout`.
    pub(crate) fn open(&self, url: &str, timeout: Duration) -> Result<Download, KeepError> {
        check_url(url)?;
        let response = self
            .agent
            .get(url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .call()
            .map_err(|err| classify(&err))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(refusal(status));
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header("content-type");
        let length = header("content-length").and_then(|v| v.trim().parse().ok());
        Ok(Download {
            content_type,
            length,
            body: Box::new(response.into_body().into_reader()),
        })
    }
}

/// Only `http(s)` URLs without user info.
fn check_url(url: &str) -> Result<(), KeepError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| unavailable("the output URL is not http(s)"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() {
        return Err(unavailable("the output URL names no host"));
    }
    if authority.contains('@') {
        return Err(unavailable(
            "the output URL carries user credentials, which are never sent",
        ));
    }
    Ok(())
}

fn unavailable(message: &str) -> KeepError {
    KeepError::permanent(OUTPUT_UNAVAILABLE, message)
}

/// The error of a status that is not a success.
fn refusal(status: u16) -> KeepError {
    match status {
        408 | 425 | 429 | 500..=599 => {
            KeepError::transient(format!("the output's host answered HTTP {status}"))
        }
        404 | 410 => KeepError::permanent(
            OUTPUT_UNAVAILABLE,
            format!("the output is gone from its upstream (HTTP {status})"),
        ),
        _ => KeepError::permanent(
            OUTPUT_UNAVAILABLE,
            format!("the output's host refused it (HTTP {status})"),
        ),
    }
}

/// Sorts a transport failure.
fn classify(err: &ureq::Error) -> KeepError {
    match err {
        ureq::Error::TooManyRedirects | ureq::Error::RedirectFailed => KeepError::permanent(
            OUTPUT_UNAVAILABLE,
            format!("the output URL redirected more than {REDIRECTS_MAX} times, or nowhere"),
        ),
        ureq::Error::BadUri(_) | ureq::Error::Http(_) | ureq::Error::InvalidProxyUrl => {
            unavailable("the output URL is not usable")
        }
        ureq::Error::HostNotFound => KeepError::transient("the output's host was not found"),
        ureq::Error::Timeout(_) => KeepError::transient("the download timed out"),
        ureq::Error::Io(io) => KeepError::transient(format!("the download failed: {}", io.kind())),
        other => KeepError::transient(format!(
            "the download failed: {}",
            printable(&other.to_string())
        )),
    }
}

/// The error of a body that broke off while being read (a reset, a
/// timeout, fewer bytes than announced).
pub(crate) fn broken_off(err: &std::io::Error) -> KeepError {
    KeepError::transient(format!("the download broke off: {}", err.kind()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_urls_are_fetched() {
        assert!(check_url("https://cdn.example/a.png").is_ok());
        assert!(check_url("http://10.0.0.5:8188/view?x=1").is_ok());
        for bad in [
            "ftp://x/a",
            "file:///etc/passwd",
            "https://user:pw@cdn.example/a.png",
            "https:///a",
        ] {
            let err = check_url(bad).expect_err(bad);
            assert!(
                matches!(&err, KeepError::Permanent { code, .. } if code == OUTPUT_UNAVAILABLE),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn statuses_sort_into_transient_and_gone() {
        for status in [408, 425, 429, 500, 502, 503, 504] {
            assert!(
                matches!(refusal(status), KeepError::Transient { .. }),
                "{status}"
            );
        }
        for status in [301, 400, 401, 403, 404, 410] {
            assert!(
                matches!(refusal(status), KeepError::Permanent { .. }),
                "{status}"
            );
        }
    }
}
