//! The OpenAI-compatible adapter against its local stand-in: images by URL
//! and by `b64_json` (with usage), chat with usage, every refusal mapped to
//! our three-way error (429 with `Retry-After`, `insufficient_quota`, the
//! content policy, 5xx, vLLM's flat errors), a timeout after sending, a
//! malformed answer, an oversized inline image, an output URL that 404s,
//! the credential sent and never shown, cancel and check.
#![cfg(feature = "http")]

use std::io::{Read, Write};
use std::time::Duration;

use creditgate::pricing::BilledUnits;
use creditgate::providers::config::{Credential, ProviderConfig, ProviderKind};
use creditgate::providers::openai::{OpenAiProvider, CHAT_MIME};
use creditgate::providers::{
    Artifact, Provider, ProviderError, ProviderJob, Reconciled, Submission, Usage,
    ARTIFACT_INLINE_BYTES_MAX,
};
use creditgate_standins::openai::{OpenAiStandIn, Trouble, PNG};

const KEY: &str = "sk-test-very-secret-4242";

fn provider(stand_in: &OpenAiStandIn, key: Option<&str>, timeout_ms: i64) -> OpenAiProvider {
    let mut config = ProviderConfig::new("oai", ProviderKind::Openai);
    config.base_url = Some(stand_in.api_url());
    config.timeout_ms = timeout_ms;
    config.connect_timeout_ms = 1_000;
    OpenAiProvider::new(&config, key.map(Credential::new)).expect("an adapter")
}

fn job<'a>(
    product: &'a str,
    upstream_model: &'a str,
    prompt: &'a str,
    units: &'a BilledUnits,
) -> ProviderJob<'a> {
    ProviderJob {
        job_id: "job_oai_1",
        model: "m",
        upstream_model,
        product,
        prompt: Some(prompt),
        units,
        input_image_urls: &[],
        provider_task_id: None,
        submit_attempts: 1,
        resubmission: false,
        polls: 0,
        poll_errors: 0,
        seed: 7,
        output_url_base: "http://h/v1/files/job_oai_1/t".into(),
        provider_state: None,
        webhook_url: None,
    }
}

fn permanent_code(result: Result<Submission, ProviderError>) -> (String, String) {
    match result {
        Err(ProviderError::Permanent { code, message }) => (code, message),
        other => panic!("expected a permanent refusal, got {other:?}"),
    }
}

/// The status a plain GET of `url` answers (no HTTP client crate in tests).
fn http_status(url: &str) -> u16 {
    let rest = url.strip_prefix("http://").expect("http");
    let (host, path) = rest.split_at(rest.find('/').expect("a path"));
    let mut stream = std::net::TcpStream::connect(host).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line")
}

#[test]
fn an_image_by_url_sends_count_size_and_response_format_with_the_bearer_key() {
    let stand_in = OpenAiStandIn::start(Some(KEY));
    let provider = provider(&stand_in, Some(KEY), 5_000);
    let units = BilledUnits {
        count: Some(2),
        resolution: Some("1024x1024".into()),
        ..BilledUnits::default()
    };
    let submitted = provider
        .submit(&job("image", "dall-e-3", "a red fox", &units))
        .expect("completed");
    let Submission::Completed {
        task_id,
        completion,
    } = submitted
    else {
        panic!("a synchronous answer: {submitted:?}");
    };
    assert_eq!(
        task_id, "job_oai_1",
        "image answers carry no id: our job id"
    );
    assert_eq!(completion.artifacts.len(), 2);
    for artifact in &completion.artifacts {
        let Artifact::Remote { url, .. } = artifact else {
            panic!("a URL: {artifact:?}");
        };
        assert_eq!(http_status(url), 200, "the stand-in serves its outputs");
    }
    assert_eq!(completion.usage, None, "DALL-E answers no usage");
    let seen = stand_in.server.seen();
    let post = &seen[0];
    assert_eq!(post.url, "/v1/images/generations");
    assert_eq!(
        post.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    let body = post.json();
    assert_eq!(body["model"], "dall-e-3");
    assert_eq!(body["prompt"], "a red fox");
    assert_eq!(body["n"], 2);
    assert_eq!(body["size"], "1024x1024");
    assert_eq!(body["response_format"], "url");
}

#[test]
fn a_gpt_image_answer_is_decoded_inline_with_its_usage_and_no_response_format_is_sent() {
    let stand_in = OpenAiStandIn::start(Some(KEY));
    let provider = provider(&stand_in, Some(KEY), 5_000);
    let units = BilledUnits {
        resolution: Some("4K".into()),
        ..BilledUnits::default()
    };
    let Ok(Submission::Completed { completion, .. }) =
        provider.submit(&job("image", "gpt-image-1", "two cats at dusk", &units))
    else {
        panic!("completed");
    };
    assert_eq!(
        completion.artifacts,
        vec![Artifact::Inline {
            bytes: PNG.to_vec(),
            mime: "image/png".into()
        }]
    );
    assert_eq!(
        completion.usage,
        Some(Usage {
            input_tokens: Some(4),
            output_tokens: Some(272),
            media_ms: None
        })
    );
    let body = stand_in.server.seen()[0].json();
    assert!(body.get("response_format").is_none(), "{body}");
    assert!(
        body.get("size").is_none(),
        "a non-OpenAI size is not sent: {body}"
    );
    assert_eq!(body["n"], 1, "no priced count: one image");
}

#[test]
fn a_chat_reply_is_inline_text_with_its_usage_and_the_answers_id() {
    let stand_in = OpenAiStandIn::start(Some(KEY));
    let provider = provider(&stand_in, Some(KEY), 5_000);
    let units = BilledUnits::default();
    let Ok(Submission::Completed {
        task_id,
        completion,
    }) = provider.submit(&job("chat", "gpt-4o-mini", "hello there", &units))
    else {
        panic!("completed");
    };
    assert_eq!(task_id, "chatcmpl-standin-1");
    assert_eq!(
        completion.artifacts,
        vec![Artifact::Inline {
            bytes: b"echo: hello there".to_vec(),
            mime: CHAT_MIME.into()
        }]
    );
    assert_eq!(
        completion.usage,
        Some(Usage {
            input_tokens: Some(2),
            output_tokens: Some(3),
            media_ms: None
        })
    );
    let body = stand_in.server.seen()[0].json();
    assert_eq!(stand_in.server.seen()[0].url, "/v1/chat/completions");
    assert_eq!(body["messages"][0]["role"], "user");
    assert_eq!(body["messages"][0]["content"], "hello there");
    assert!(
        body.get("max_tokens").is_none(),
        "no priced unit carries it"
    );
}

#[test]
fn insufficient_quota_is_provider_unavailable_not_a_retry() {
    let stand_in = OpenAiStandIn::start(Some(KEY));
    let provider = provider(&stand_in, Some(KEY), 5_000);
    stand_in.push(Trouble::InsufficientQuota);
    let units = BilledUnits::default();
    let (code, _) = permanent_code(provider.submit(&job("image", "dall-e-3", "x", &units)));
    assert_eq!(code, "provider_unavailable");
}

#[test]
fn a_429_is_not_sent_with_the_retry_hint_and_a_5xx_is_not_sent() {
    let stand_in = OpenAiStandIn::start(Some(KEY));
    let provider = provider(&stand_in, Some(KEY), 5_000);
    let units = BilledUnits::default();
    stand_in.push(Trouble::RateLimited {
        retry_after_secs: 7,
    });
    assert_eq!(
        provider
            .submit(&job("chat", "gpt-4o-mini", "x", &units))
            .map_err(|err| match err {
                ProviderError::NotSent { retry_after_ms, .. } => retry_after_ms,
                other => panic!("{other:?}"),
            }),
        Err(Some(7_000))
    );
    stand_in.push(Trouble::Status(503));
    assert!(matches!(
        provider.submit(&job("chat", "gpt-4o-mini", "x", &units)),
        Err(ProviderError::NotSent { .. })
    ));
    // The next one goes through.
    assert!(provider
        .submit(&job("chat", "gpt-4o-mini", "x", &units))
        .is_ok());
}

#[test]
fn a_content_policy_refusal_is_content_rejected_and_other_400s_upstream_rejected() {
    let stand_in = OpenAiStandIn::start(Some(KEY));
    let provider = provider(&stand_in, Some(KEY), 5_000);
    let units = BilledUnits::default();
    stand_in.push(Trouble::ContentPolicy);
    let (code, _) = permanent_code(provider.submit(&job("image", "dall-e-3", "x", &units)));
    assert_eq!(code, "content_rejected");
    stand_in.push(Trouble::Status(400));
    let (code, _) = permanent_code(provider.submit(&job("image", "dall-e-3", "x", &units)));
    assert_eq!(code, "upstream_rejected");
}

#[test]
fn vllms_flat_error_body_is_read() {
    let stand_in = OpenAiStandIn::start(None);
    let provider = provider(&stand_in, None, 5_000);
    let units = BilledUnits::default();
    stand_in.push(Trouble::FlatError(404));
    let (code, message) = permanent_code(provider.submit(&job("chat", "nope", "x", &units)));
    assert_eq!(code, "upstream_rejected");
    assert!(message.contains("does not exist"), "{message}");
    assert!(
        stand_in.server.seen()[0].header("authorization").is_none(),
        "no credential, no header"
    );
}

#[test]
fn a_timeout_after_sending_is_outcome_unknown() {
    let stand_in = OpenAiStandIn::start(Some(KEY));
    let provider = provider(&stand_in, Some(KEY), 300);
    stand_in.push(Trouble::Slow(Duration::from_millis(700)));
    let units = BilledUnits::default();
    assert!(matches!(
        provider.submit(&job("image", "dall-e-3", "x", &units)),
        Err(ProviderError::OutcomeUnknown { .. })
    ));
    assert!(!provider.idempotent_submit(), "a POST may have billed");
}

#[test]
fn a_malformed_2xx_answer_is_outcome_unknown() {
    let stand_in = OpenAiStandIn::start(Some(KEY));
    let provider = provider(&stand_in, Some(KEY), 5_000);
    stand_in.push(Trouble::MalformedJson);
    let units = BilledUnits::default();
    assert!(matches!(
        provider.submit(&job("chat", "gpt-4o-mini", "x", &units)),
        Err(ProviderError::OutcomeUnknown { .. })
    ));
}

#[test]
fn an_oversized_inline_image_is_output_too_large() {
    let stand_in = OpenAiStandIn::start(Some(KEY));
    let provider = provider(&stand_in, Some(KEY), 30_000);
    stand_in.push(Trouble::OversizedImage(ARTIFACT_INLINE_BYTES_MAX + 1));
    let units = BilledUnits::default();
    let (code, _) = permanent_code(provider.submit(&job("image", "gpt-image-1", "x", &units)));
    assert_eq!(code, "output_too_large");
}

#[test]
fn an_output_url_that_404s_is_handed_back_for_the_download_to_find() {
    let stand_in = OpenAiStandIn::start(Some(KEY));
    let provider = provider(&stand_in, Some(KEY), 5_000);
    stand_in.push(Trouble::DeadUrls);
    let units = BilledUnits::default();
    let Ok(Submission::Completed { completion, .. }) =
        provider.submit(&job("image", "dall-e-3", "x", &units))
    else {
        panic!("completed");
    };
    let Artifact::Remote { url, .. } = &completion.artifacts[0] else {
        panic!("a URL");
    };
    assert_eq!(http_status(url), 404);
}

#[test]
fn a_refused_key_is_provider_auth_failed_and_never_shown() {
    let stand_in = OpenAiStandIn::start(Some("sk-the-right-one"));
    let provider = provider(&stand_in, Some(KEY), 5_000);
    let units = BilledUnits::default();
    let result = provider.submit(&job("chat", "gpt-4o-mini", "x", &units));
    let text = format!("{result:?}");
    let (code, message) = permanent_code(result);
    assert_eq!(code, "provider_auth_failed");
    assert!(!text.contains(KEY) && !message.contains(KEY), "{text}");
    let report = provider.check().expect("a report");
    assert_eq!(report.auth_ok, Some(false));
    assert!(!report.detail.contains(KEY));
}

#[test]
fn an_upstream_message_that_echoes_the_key_is_redacted() {
    let stand_in = OpenAiStandIn::start(Some(KEY));
    let provider = provider(&stand_in, Some(KEY), 5_000);
    stand_in.push(Trouble::EchoAuth(400));
    let units = BilledUnits::default();
    let (code, message) = permanent_code(provider.submit(&job("chat", "gpt-4o-mini", "x", &units)));
    assert_eq!(code, "upstream_rejected");
    assert!(!message.contains(KEY), "{message}");
    assert!(message.contains("<redacted>"), "{message}");
}

#[test]
fn other_products_are_refused_before_any_call() {
    let stand_in = OpenAiStandIn::start(Some(KEY));
    let provider = provider(&stand_in, Some(KEY), 5_000);
    let units = BilledUnits::default();
    let (code, _) = permanent_code(provider.submit(&job("video", "sora-2", "x", &units)));
    assert_eq!(code, "unsupported_product");
    assert!(stand_in.server.seen().is_empty());
}

#[test]
fn cancel_does_nothing_poll_is_an_internal_error_and_reconcile_is_unsupported() {
    let stand_in = OpenAiStandIn::start(Some(KEY));
    let provider = provider(&stand_in, Some(KEY), 5_000);
    let units = BilledUnits::default();
    let j = job("chat", "gpt-4o-mini", "x", &units);
    assert_eq!(provider.cancel(&j), Ok(()));
    assert!(matches!(
        provider.poll(&j),
        Err(ProviderError::Permanent { ref code, .. }) if code == "internal"
    ));
    assert_eq!(provider.reconcile(&j), Ok(Reconciled::Unsupported));
    assert!(stand_in.server.seen().is_empty(), "none of them calls out");
}

#[test]
fn check_lists_the_models_and_reports_an_unreachable_server() {
    let stand_in = OpenAiStandIn::start(Some(KEY));
    let provider = provider(&stand_in, Some(KEY), 5_000);
    let report = provider.check().expect("a report");
    assert!(report.reachable);
    assert_eq!(report.auth_ok, Some(true));
    assert!(report.detail.contains("3 models"), "{}", report.detail);
    assert_eq!(stand_in.server.seen()[0].url, "/v1/models");

    let mut config = ProviderConfig::new("gone", ProviderKind::Openai);
    // A port nothing listens on (bound then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    config.base_url = Some(format!("http://127.0.0.1:{port}/v1"));
    let gone = OpenAiProvider::new(&config, None).expect("adapter");
    let report = gone.check().expect("a report");
    assert!(!report.reachable);
}
