//! The kie.ai adapter against its local stand-in: its three model families
//! (market, Veo, Suno) through success and failure, `resultJson` read as a
//! JSON string, the family kept in provider state, kie's envelope codes
//! (402 = our account is empty, 501, 505, 455, 429 with `Retry-After`)
//! read even under HTTP 200, timeouts and malformed answers on submit and
//! poll, an output URL that 404s, the credential sent and never shown, the
//! no-op cancel, the credit check, and the callback reader and signature.
#![cfg(feature = "http")]

use std::io::{Read, Write};
use std::time::Duration;

use creditgate::pricing::BilledUnits;
use creditgate::providers::config::{Credential, ProviderConfig, ProviderKind};
use creditgate::providers::kie::{parse_callback, verify_callback_signature, KieProvider};
use creditgate::providers::{
    Artifact, Completion, PollStatus, Provider, ProviderError, ProviderJob, Reconciled, Submission,
    Usage,
};
use creditgate_standins::kie::{sign, KieStandIn, Trouble};
use serde_json::{json, Value};

const KEY: &str = "kie-test-secret-key-777";

fn provider(stand_in: &KieStandIn, key: &str, timeout_ms: i64) -> KieProvider {
    let mut config = ProviderConfig::new("kie", ProviderKind::Kie);
    config.base_url = Some(stand_in.base_url().to_owned());
    config.timeout_ms = timeout_ms;
    config.connect_timeout_ms = 1_000;
    KieProvider::new(&config, Some(Credential::new(key))).expect("an adapter")
}

fn job<'a>(upstream_model: &'a str, prompt: &'a str, units: &'a BilledUnits) -> ProviderJob<'a> {
    ProviderJob {
        job_id: "job_kie_1",
        model: "m",
        upstream_model,
        product: "image",
        prompt: Some(prompt),
        units,
        input_image_urls: &[],
        provider_task_id: None,
        submit_attempts: 1,
        resubmission: false,
        polls: 0,
        poll_errors: 0,
        seed: 7,
        output_url_base: "http://h/v1/files/job_kie_1/t".into(),
        provider_state: None,
        webhook_url: None,
    }
}

/// Submits `j` and answers its task id and state.
fn accepted(provider: &KieProvider, j: &ProviderJob<'_>) -> (String, Value) {
    match provider.submit(j) {
        Ok(Submission::Accepted {
            task_id,
            state: Some(state),
        }) => (task_id, state),
        other => panic!("expected an accepted task with state, got {other:?}"),
    }
}

/// Polls until the task is no longer running (at most a few polls).
fn poll_to_end(provider: &KieProvider, j: &ProviderJob<'_>) -> PollStatus {
    assert_eq!(
        provider.poll(j),
        Ok(PollStatus::Running),
        "one running answer first"
    );
    let end = provider.poll(j).expect("a poll");
    assert_ne!(end, PollStatus::Running);
    end
}

fn succeeded(status: PollStatus) -> Completion {
    match status {
        PollStatus::Succeeded(done) => done,
        other => panic!("expected success, got {other:?}"),
    }
}

fn failed_code(status: PollStatus) -> String {
    match status {
        PollStatus::Failed { code, .. } => code,
        other => panic!("expected failure, got {other:?}"),
    }
}

fn permanent_code<T: std::fmt::Debug>(result: Result<T, ProviderError>) -> String {
    match result {
        Err(ProviderError::Permanent { code, .. }) => code,
        other => panic!("expected a permanent refusal, got {other:?}"),
    }
}

/// The status a plain GET of `url` answers.
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

fn remote_url(done: &Completion) -> (&str, Option<&str>) {
    match &done.artifacts[0] {
        Artifact::Remote { url, mime } => (url, mime.as_deref()),
        other => panic!("a remote artifact: {other:?}"),
    }
}

#[test]
fn a_market_task_sends_its_options_and_reads_result_json_as_a_string() {
    let stand_in = KieStandIn::start(KEY);
    let provider = provider(&stand_in, KEY, 5_000);
    let units = BilledUnits {
        resolution: Some("2K".into()),
        aspect_ratio: Some("16:9".into()),
        ..BilledUnits::default()
    };
    let inputs = vec!["https://example.com/in.png".to_owned()];
    let mut j = job("nano-banana-pro", "a lighthouse", &units);
    j.input_image_urls = &inputs;
    j.webhook_url = Some("https://gate.example/v1/providers/kie/webhook".to_owned());
    let (task_id, state) = accepted(&provider, &j);
    assert_eq!(state, json!({"family": "market"}));
    let seen = stand_in.server.seen();
    assert_eq!(seen[0].url, "/api/v1/jobs/createTask");
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    let body = seen[0].json();
    assert_eq!(body["model"], "nano-banana-pro");
    assert_eq!(
        body["callBackUrl"],
        "https://gate.example/v1/providers/kie/webhook"
    );
    assert_eq!(body["input"]["prompt"], "a lighthouse");
    assert_eq!(body["input"]["image_urls"], json!(inputs));
    assert_eq!(body["input"]["aspect_ratio"], "16:9");
    assert_eq!(body["input"]["resolution"], "2K");

    j.provider_task_id = Some(&task_id);
    j.provider_state = Some(&state);
    let done = succeeded(poll_to_end(&provider, &j));
    let (url, mime) = remote_url(&done);
    assert_eq!(mime, Some("image/png"));
    assert_eq!(http_status(url), 200, "the stand-in serves its outputs");
    assert!(stand_in
        .server
        .seen()
        .iter()
        .any(|s| s.url == format!("/api/v1/jobs/recordInfo?taskId={task_id}")));
}

#[test]
fn a_failed_market_task_is_generation_failed_with_kies_reason() {
    let stand_in = KieStandIn::start(KEY);
    let provider = provider(&stand_in, KEY, 5_000);
    let units = BilledUnits::default();
    let mut j = job("nano-banana-pro", "please fail", &units);
    let (task_id, state) = accepted(&provider, &j);
    j.provider_task_id = Some(&task_id);
    j.provider_state = Some(&state);
    match poll_to_end(&provider, &j) {
        PollStatus::Failed { code, message } => {
            assert_eq!(code, "generation_failed");
            assert!(message.contains("could not be generated"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn veo_goes_to_its_own_endpoints_through_success_and_failure() {
    let stand_in = KieStandIn::start(KEY);
    let provider = provider(&stand_in, KEY, 5_000);
    let units = BilledUnits {
        aspect_ratio: Some("9:16".into()),
        ..BilledUnits::default()
    };
    let mut j = job("veo3_fast", "a wave", &units);
    let (task_id, state) = accepted(&provider, &j);
    assert_eq!(state, json!({"family": "veo"}));
    let body = stand_in.server.seen()[0].json();
    assert_eq!(stand_in.server.seen()[0].url, "/api/v1/veo/generate");
    assert_eq!(body["aspect_ratio"], "9:16");
    assert!(
        body.get("callBackUrl").is_none(),
        "no webhook, no callback URL"
    );
    j.provider_task_id = Some(&task_id);
    j.provider_state = Some(&state);
    let done = succeeded(poll_to_end(&provider, &j));
    assert_eq!(remote_url(&done).1, Some("video/mp4"));
    assert_eq!(stand_in.server.count("GET", "/api/v1/veo/record-info"), 2);

    let mut j = job("veo3", "this will fail", &units);
    let (task_id, _) = accepted(&provider, &j);
    // No provider state (a job recorded before it was kept): the family is
    // derived from the model again.
    j.provider_task_id = Some(&task_id);
    assert_eq!(failed_code(poll_to_end(&provider, &j)), "generation_failed");
}

#[test]
fn the_family_in_provider_state_decides_the_poll_endpoint() {
    let stand_in = KieStandIn::start(KEY);
    let provider = provider(&stand_in, KEY, 5_000);
    let units = BilledUnits::default();
    let (task_id, state) = accepted(&provider, &job("veo3", "a wave", &units));
    // The catalog's upstream id changed since; the kept state still says veo.
    let mut j = job("some-market-model", "a wave", &units);
    j.provider_task_id = Some(&task_id);
    j.provider_state = Some(&state);
    succeeded(poll_to_end(&provider, &j));
    assert_eq!(stand_in.server.count("GET", "/api/v1/jobs/recordInfo"), 0);
}

#[test]
fn suno_goes_to_its_own_endpoints_through_success_failure_and_the_content_filter() {
    let stand_in = KieStandIn::start(KEY);
    let provider = provider(&stand_in, KEY, 5_000);
    let units = BilledUnits::default();
    let mut j = job("V4_5PLUS", "a sea shanty", &units);
    j.product = "music";
    let (task_id, state) = accepted(&provider, &j);
    assert_eq!(state, json!({"family": "suno"}));
    let body = stand_in.server.seen()[0].json();
    assert_eq!(stand_in.server.seen()[0].url, "/api/v1/generate");
    assert_eq!(body["customMode"], false);
    assert_eq!(body["instrumental"], false);
    assert_eq!(body["model"], "V4_5PLUS");
    j.provider_task_id = Some(&task_id);
    j.provider_state = Some(&state);
    let done = succeeded(poll_to_end(&provider, &j));
    assert_eq!(remote_url(&done).1, Some("audio/mpeg"));
    assert_eq!(
        done.usage,
        Some(Usage {
            media_ms: Some(12_500),
            ..Usage::default()
        })
    );

    for (prompt, code) in [
        ("please fail", "generation_failed"),
        ("something sensitive", "content_rejected"),
    ] {
        let mut j = job("V5", prompt, &units);
        let (task_id, state) = accepted(&provider, &j);
        j.provider_task_id = Some(&task_id);
        j.provider_state = Some(&state);
        assert_eq!(failed_code(poll_to_end(&provider, &j)), code, "{prompt}");
    }
}

#[test]
fn a_priced_count_above_one_is_refused_before_any_call() {
    let stand_in = KieStandIn::start(KEY);
    let provider = provider(&stand_in, KEY, 5_000);
    let units = BilledUnits {
        count: Some(2),
        ..BilledUnits::default()
    };
    assert_eq!(
        permanent_code(provider.submit(&job("nano-banana-pro", "x", &units))),
        "unsupported_input"
    );
    assert!(stand_in.server.seen().is_empty());
}

#[test]
fn a_402_means_our_kie_account_is_empty_provider_unavailable() {
    let stand_in = KieStandIn::start(KEY);
    let provider = provider(&stand_in, KEY, 5_000);
    let units = BilledUnits::default();
    // kie answers HTTP 200 and says 402 in its envelope.
    stand_in.push(Trouble::Code(402));
    assert_eq!(
        permanent_code(provider.submit(&job("nano-banana-pro", "x", &units))),
        "provider_unavailable"
    );
    // Nothing is kept about the model: the next submission goes out.
    assert!(provider
        .submit(&job("nano-banana-pro", "x", &units))
        .is_ok());
}

#[test]
fn envelope_codes_are_read_under_http_200() {
    let stand_in = KieStandIn::start(KEY);
    let provider = provider(&stand_in, KEY, 5_000);
    let units = BilledUnits::default();
    for (code, ours) in [
        (501, "generation_failed"),
        (505, "model_unavailable"),
        (422, "upstream_rejected"),
        (404, "upstream_rejected"),
    ] {
        stand_in.push(Trouble::Code(code));
        assert_eq!(
            permanent_code(provider.submit(&job("nano-banana-pro", "x", &units))),
            ours,
            "{code}"
        );
    }
    for code in [455, 500] {
        stand_in.push(Trouble::Code(code));
        assert!(
            matches!(
                provider.submit(&job("nano-banana-pro", "x", &units)),
                Err(ProviderError::NotSent { .. })
            ),
            "{code}: not accepted, safe to send again"
        );
    }
}

#[test]
fn a_429_is_not_sent_with_the_retry_hint_and_an_http_5xx_is_not_sent() {
    let stand_in = KieStandIn::start(KEY);
    let provider = provider(&stand_in, KEY, 5_000);
    let units = BilledUnits::default();
    stand_in.push(Trouble::RateLimited {
        retry_after_secs: 3,
    });
    match provider.submit(&job("veo3", "x", &units)) {
        Err(ProviderError::NotSent { retry_after_ms, .. }) => {
            assert_eq!(retry_after_ms, Some(3_000))
        }
        other => panic!("{other:?}"),
    }
    stand_in.push(Trouble::Http(503));
    assert!(matches!(
        provider.submit(&job("veo3", "x", &units)),
        Err(ProviderError::NotSent { .. })
    ));
}

#[test]
fn a_timeout_is_outcome_unknown_on_submit_and_not_sent_on_poll() {
    let stand_in = KieStandIn::start(KEY);
    let fast = provider(&stand_in, KEY, 300);
    let units = BilledUnits::default();
    stand_in.push(Trouble::Slow(Duration::from_millis(700)));
    assert!(matches!(
        fast.submit(&job("nano-banana-pro", "x", &units)),
        Err(ProviderError::OutcomeUnknown { .. })
    ));
    assert!(!fast.idempotent_submit());
    let (task_id, state) = accepted(&fast, &job("nano-banana-pro", "x", &units));
    let mut j = job("nano-banana-pro", "x", &units);
    j.provider_task_id = Some(&task_id);
    j.provider_state = Some(&state);
    stand_in.push(Trouble::Slow(Duration::from_millis(700)));
    assert!(matches!(fast.poll(&j), Err(ProviderError::NotSent { .. })));
}

#[test]
fn a_malformed_answer_is_outcome_unknown_on_submit_and_not_sent_on_poll() {
    let stand_in = KieStandIn::start(KEY);
    let provider = provider(&stand_in, KEY, 5_000);
    let units = BilledUnits::default();
    stand_in.push(Trouble::MalformedJson);
    assert!(matches!(
        provider.submit(&job("V5", "x", &units)),
        Err(ProviderError::OutcomeUnknown { .. })
    ));
    stand_in.push(Trouble::NoTaskId);
    assert!(matches!(
        provider.submit(&job("V5", "x", &units)),
        Err(ProviderError::OutcomeUnknown { .. })
    ));
    let (task_id, state) = accepted(&provider, &job("V5", "x", &units));
    let mut j = job("V5", "x", &units);
    j.provider_task_id = Some(&task_id);
    j.provider_state = Some(&state);
    stand_in.push(Trouble::MalformedJson);
    assert!(matches!(
        provider.poll(&j),
        Err(ProviderError::NotSent { .. })
    ));
    // An unknown task is kie's 422, a permanent refusal.
    j.provider_task_id = Some("suno_task_9999");
    assert_eq!(permanent_code(provider.poll(&j)), "upstream_rejected");
}

#[test]
fn an_output_url_that_404s_is_handed_back_for_the_download_to_find() {
    let stand_in = KieStandIn::start(KEY);
    let provider = provider(&stand_in, KEY, 5_000);
    let units = BilledUnits::default();
    let mut j = job("nano-banana-pro", "a dead link", &units);
    let (task_id, state) = accepted(&provider, &j);
    j.provider_task_id = Some(&task_id);
    j.provider_state = Some(&state);
    let done = succeeded(poll_to_end(&provider, &j));
    assert_eq!(http_status(remote_url(&done).0), 404);
}

#[test]
fn a_refused_key_is_provider_auth_failed_and_never_shown() {
    let stand_in = KieStandIn::start("the-right-key");
    let provider = provider(&stand_in, KEY, 5_000);
    let units = BilledUnits::default();
    let result = provider.submit(&job("nano-banana-pro", "x", &units));
    assert!(!format!("{result:?}").contains(KEY));
    assert_eq!(permanent_code(result), "provider_auth_failed");
    let report = provider.check().expect("a report");
    assert!(report.reachable);
    assert_eq!(report.auth_ok, Some(false));
    assert!(!format!("{report:?}").contains(KEY));
}

#[test]
fn cancel_sends_nothing_before_or_after_start_and_the_task_runs_on() {
    let stand_in = KieStandIn::start(KEY);
    let provider = provider(&stand_in, KEY, 5_000);
    let units = BilledUnits::default();
    let mut j = job("nano-banana-pro", "x", &units);
    assert_eq!(provider.cancel(&j), Ok(()), "before start");
    let (task_id, state) = accepted(&provider, &j);
    j.provider_task_id = Some(&task_id);
    j.provider_state = Some(&state);
    let before = stand_in.server.seen().len();
    assert_eq!(provider.cancel(&j), Ok(()), "after start");
    assert_eq!(stand_in.server.seen().len(), before, "no cancel endpoint");
    succeeded(poll_to_end(&provider, &j));
    assert_eq!(provider.reconcile(&j), Ok(Reconciled::Unsupported));
}

#[test]
fn check_reads_our_kie_credits() {
    let stand_in = KieStandIn::start(KEY);
    let provider = provider(&stand_in, KEY, 5_000);
    let report = provider.check().expect("a report");
    assert!(report.reachable);
    assert_eq!(report.auth_ok, Some(true));
    assert_eq!(report.upstream_credits.as_deref(), Some("1234.5"));
    assert_eq!(stand_in.server.seen()[0].url, "/api/v1/chat/credit");
    stand_in.set_credits(json!(0));
    assert_eq!(
        provider
            .check()
            .expect("a report")
            .upstream_credits
            .as_deref(),
        Some("0")
    );
}

#[test]
fn callbacks_are_read_in_both_task_id_spellings_and_every_family() {
    let stand_in = KieStandIn::start(KEY);
    let provider = provider(&stand_in, KEY, 5_000);
    let units = BilledUnits::default();
    // Suno's callback spells it data.task_id, with snake_case audio_url.
    let (suno, _) = accepted(&provider, &job("V5", "a song", &units));
    let body = stand_in.callback_for(&suno);
    assert!(body["data"].get("task_id").is_some());
    let (id, status) = parse_callback(body.to_string().as_bytes()).expect("reads");
    assert_eq!(id, suno);
    assert_eq!(remote_url(&succeeded(status)).1, Some("audio/mpeg"));
    // The market's and Veo's spell it data.taskId.
    for model in ["nano-banana-pro", "veo3"] {
        let (task, _) = accepted(&provider, &job(model, "x", &units));
        let body = stand_in.callback_for(&task);
        let (id, status) = parse_callback(body.to_string().as_bytes()).expect("reads");
        assert_eq!(id, task);
        succeeded(status);
    }
    // A top-level taskId, and a failure told by the envelope code.
    let (veo_fail, _) = accepted(&provider, &job("veo3", "please fail", &units));
    let mut body = stand_in.callback_for(&veo_fail);
    body["taskId"] = json!(veo_fail);
    body["data"] = Value::Null;
    let (id, status) = parse_callback(body.to_string().as_bytes()).expect("reads");
    assert_eq!(id, veo_fail);
    assert_eq!(failed_code(status), "generation_failed");
    // A Suno "first track" callback is not the end.
    let partial = json!({"code": 200, "msg": "First track done",
        "data": {"callbackType": "first", "task_id": "t1", "data": []}});
    assert_eq!(
        parse_callback(partial.to_string().as_bytes()),
        Ok(("t1".to_owned(), PollStatus::Running))
    );
    // Unreadable callbacks are refused, saying why.
    assert!(parse_callback(b"not json").is_err());
    assert!(
        parse_callback(br#"{"code": 200, "data": {"state": "success"}}"#)
            .expect_err("no task id")
            .contains("task")
    );
}

#[test]
fn a_callback_signature_verifies_and_a_bad_one_does_not() {
    let secret = b"whk-secret";
    let signature = sign(secret, "task_42", "1790000000");
    assert!(verify_callback_signature(
        secret,
        "task_42",
        "1790000000",
        &signature
    ));
    assert!(!verify_callback_signature(
        secret,
        "task_42",
        "1790000001",
        &signature
    ));
    assert!(!verify_callback_signature(
        secret,
        "task_43",
        "1790000000",
        &signature
    ));
    assert!(!verify_callback_signature(
        b"other",
        "task_42",
        "1790000000",
        &signature
    ));
    assert!(!verify_callback_signature(
        secret,
        "task_42",
        "1790000000",
        "not base64!"
    ));
    assert!(!verify_callback_signature(
        b"",
        "task_42",
        "1790000000",
        &signature
    ));
}
