//! The fal adapter against the fal stand-in: the queue flow (submit,
//! status, result, cancel) using the URLs fal answers, the error mapping
//! (429, 5xx, `X-Fal-Retryable`, validation, auth), timeouts, malformed
//! answers, `check()`, and the pure webhook verification (Ed25519 over
//! fal's message, JWKS keys).
#![cfg(feature = "http")]

use std::time::Duration;

use creditgate::pricing::BilledUnits;
use creditgate::providers::config::{Credential, ProviderConfig, ProviderKind};
use creditgate::providers::fal::{
    parse_jwks, parse_webhook, verify_webhook, webhook_message, FalProvider, WebhookHeaders,
};
use creditgate::providers::{
    Artifact, PollStatus, Provider, ProviderError, ProviderJob, Reconciled, Submission,
};
use creditgate_standins::fal::{FalStandIn, Fault, Outcome};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};

const KEY: &str = "fal-secret-key-123";

fn config(base: &str, timeout_ms: i64) -> ProviderConfig {
    let mut config = ProviderConfig::new("fal", ProviderKind::Fal);
    config.base_url = Some(base.to_owned());
    config.credential_env = Some("FAL_KEY".into());
    config.timeout_ms = timeout_ms;
    config
}

fn provider(stand: &FalStandIn) -> FalProvider {
    FalProvider::new(&config(stand.base_url(), 5_000), Some(Credential::new(KEY))).expect("new")
}

struct JobData {
    units: BilledUnits,
    inputs: Vec<String>,
    state: Option<Value>,
    task_id: Option<String>,
    webhook: Option<String>,
    model: String,
}

impl JobData {
    fn new(model: &str) -> JobData {
        JobData {
            units: BilledUnits {
                count: Some(2),
                resolution: Some("1024x768".into()),
                ..BilledUnits::default()
            },
            inputs: Vec::new(),
            state: None,
            task_id: None,
            webhook: None,
            model: model.to_owned(),
        }
    }

    fn job(&self) -> ProviderJob<'_> {
        ProviderJob {
            job_id: "job_1",
            model: "flux-dev",
            upstream_model: &self.model,
            product: "image",
            prompt: Some("a red fox"),
            units: &self.units,
            input_image_urls: &self.inputs,
            provider_task_id: self.task_id.as_deref(),
            submit_attempts: 1,
            resubmission: false,
            polls: 0,
            poll_errors: 0,
            seed: 7,
            output_url_base: "http://gw/v1/files/job_1".into(),
            provider_state: self.state.as_ref(),
            webhook_url: self.webhook.clone(),
        }
    }

    fn accept(&mut self, submission: Submission) {
        match submission {
            Submission::Accepted { task_id, state } => {
                self.task_id = Some(task_id);
                self.state = state;
            }
            other => panic!("expected an acceptance, got {other:?}"),
        }
    }
}

fn poll_until_done(provider: &FalProvider, data: &JobData) -> PollStatus {
    for _ in 0..10 {
        match provider.poll(&data.job()).expect("poll") {
            PollStatus::Running => continue,
            done => return done,
        }
    }
    panic!("never finished")
}

fn assert_no_secret(err: &ProviderError) {
    let text = format!("{err} {err:?}");
    assert!(!text.contains(KEY), "the key leaked: {text}");
}

#[test]
fn a_request_runs_through_the_queue_using_the_urls_fal_answered() {
    let stand = FalStandIn::start(KEY);
    let provider = provider(&stand);
    let mut data = JobData::new("fal-ai/flux/dev");
    data.inputs = vec!["https://example.com/in.png".into()];
    data.accept(provider.submit(&data.job()).expect("submit"));
    let state = data.state.clone().expect("state kept");
    let status_url = state["status_url"].as_str().expect("status url");
    // The sub-path (`/dev`) is dropped from the queue URLs, as fal does.
    assert!(status_url.ends_with(&format!(
        "/fal-ai/flux/requests/{}/status",
        data.task_id.as_deref().expect("id")
    )));
    assert!(!status_url.contains("/dev/"));
    assert_eq!(
        provider.poll(&data.job()).expect("queued"),
        PollStatus::Running
    );
    assert_eq!(
        provider.poll(&data.job()).expect("in progress"),
        PollStatus::Running
    );
    let PollStatus::Succeeded(completion) = provider.poll(&data.job()).expect("done") else {
        panic!("expected success");
    };
    assert_eq!(completion.artifacts.len(), 1);
    assert_eq!(completion.seed, Some(42));
    assert!(
        matches!(&completion.artifacts[0], Artifact::Remote { url, mime } if url.starts_with(stand.base_url()) && mime.as_deref() == Some("image/png"))
    );
    // What was sent: the whole model id on submit, the input from the job,
    // the key on every call; then only the URLs fal answered.
    let seen = stand.server.seen();
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].url, "/fal-ai/flux/dev");
    let input = seen[0].json();
    assert_eq!(input["prompt"], "a red fox");
    assert_eq!(input["num_images"], 2);
    assert_eq!(input["image_size"], json!({"width": 1024, "height": 768}));
    assert_eq!(input["image_url"], "https://example.com/in.png");
    assert_eq!(input["seed"], 7);
    for request in &seen {
        assert_eq!(
            request.header("authorization"),
            Some(format!("Key {KEY}").as_str())
        );
    }
    let id = data.task_id.as_deref().expect("id");
    assert_eq!(
        seen.iter()
            .skip(1)
            .map(|s| s.url.clone())
            .collect::<Vec<_>>(),
        vec![
            format!("/fal-ai/flux/requests/{id}/status"),
            format!("/fal-ai/flux/requests/{id}/status"),
            format!("/fal-ai/flux/requests/{id}/status"),
            format!("/fal-ai/flux/requests/{id}"),
        ]
    );
    assert!(!provider.idempotent_submit());
    assert_eq!(provider.reconcile(&data.job()), Ok(Reconciled::Unsupported));
}

#[test]
fn polls_follow_the_kept_urls_and_never_rebuild_them() {
    let stand = FalStandIn::start(KEY);
    let provider = provider(&stand);
    let mut data = JobData::new("fal-ai/flux/dev");
    data.accept(provider.submit(&data.job()).expect("submit"));
    // Point the kept status URL elsewhere on the same host: the adapter
    // must ask exactly there (here a request fal does not know).
    let mut state = data.state.clone().expect("state");
    state["status_url"] = json!(format!(
        "{}/fal-ai/other/requests/nope/status",
        stand.base_url()
    ));
    data.state = Some(state);
    let err = provider.poll(&data.job()).expect_err("unknown request");
    assert!(
        matches!(&err, ProviderError::Permanent { code, .. } if code == "upstream_lost"),
        "{err:?}"
    );
    assert_eq!(
        stand.server.seen().last().expect("seen").url,
        "/fal-ai/other/requests/nope/status"
    );
}

#[test]
fn the_webhook_url_is_passed_escaped_as_fal_webhook() {
    let stand = FalStandIn::start(KEY);
    let provider = provider(&stand);
    let mut data = JobData::new("fal-ai/flux/dev");
    data.webhook = Some("https://gw.example/v1/providers/fal/webhook".into());
    data.accept(provider.submit(&data.job()).expect("submit"));
    let url = &stand.server.seen()[0].url;
    assert_eq!(
        url,
        "/fal-ai/flux/dev?fal_webhook=https%3A%2F%2Fgw.example%2Fv1%2Fproviders%2Ffal%2Fwebhook"
    );
}

#[test]
fn a_model_that_fails_answers_its_error_at_the_response_url() {
    let stand = FalStandIn::start(KEY);
    let provider = provider(&stand);
    stand.with(|s| s.next_outcome = Outcome::ValidationError);
    let mut data = JobData::new("fal-ai/flux/dev");
    data.accept(provider.submit(&data.job()).expect("submit"));
    let done = poll_until_done(&provider, &data);
    assert!(
        matches!(&done, PollStatus::Failed { code, message } if code == "upstream_rejected" && message.contains("prompt: field required")),
        "{done:?}"
    );
}

#[test]
fn videos_and_outputs_that_404_are_handed_on_as_remote_artifacts() {
    let stand = FalStandIn::start(KEY);
    let provider = provider(&stand);
    stand.with(|s| s.next_outcome = Outcome::Video);
    let mut data = JobData::new("fal-ai/kling-video/v2/master/text-to-video");
    data.units = BilledUnits {
        duration: Some(5),
        aspect_ratio: Some("16:9".into()),
        ..BilledUnits::default()
    };
    data.accept(provider.submit(&data.job()).expect("submit"));
    let input = stand.server.seen()[0].json();
    assert_eq!(input["duration"], "5", "fal's video models take a string");
    assert_eq!(input["aspect_ratio"], "16:9");
    assert_eq!(input.get("num_images"), None);
    let PollStatus::Succeeded(video) = poll_until_done(&provider, &data) else {
        panic!("video");
    };
    assert_eq!(video.artifacts[0].mime(), Some("video/mp4"));
    stand.with(|s| s.next_outcome = Outcome::MissingImage);
    let mut data = JobData::new("fal-ai/flux/dev");
    data.accept(provider.submit(&data.job()).expect("submit"));
    let PollStatus::Succeeded(missing) = poll_until_done(&provider, &data) else {
        panic!("missing");
    };
    // The adapter does not download: the media store meets the 404.
    let Artifact::Remote { url, .. } = &missing.artifacts[0] else {
        panic!("remote");
    };
    assert!(url.contains("/files/missing-"));
}

#[test]
fn a_429_is_not_sent_with_its_retry_hint() {
    let stand = FalStandIn::start(KEY);
    let provider = provider(&stand);
    stand.with(|s| s.submit_faults.push_back(Fault::throttled(3)));
    let data = JobData::new("fal-ai/flux/dev");
    let err = provider.submit(&data.job()).expect_err("throttled");
    assert!(
        matches!(&err, ProviderError::NotSent { message, retry_after_ms: Some(3_000) } if message.contains("HTTP 429")),
        "{err:?}"
    );
    assert_no_secret(&err);
    assert!(stand.with(|s| s.requests.is_empty()));
}

#[test]
fn infrastructure_errors_before_acceptance_are_not_sent() {
    let stand = FalStandIn::start(KEY);
    let provider = provider(&stand);
    for (status, kind) in [
        (503, "runner_scheduling_failure"),
        (504, "startup_timeout"),
        (504, "request_timeout"),
        (502, "runner_incomplete_response"),
        (500, "internal_error"),
    ] {
        stand.with(|s| s.submit_faults.push_back(Fault::infra(status, kind)));
        let err = provider
            .submit(&JobData::new("fal-ai/flux/dev").job())
            .expect_err("refused");
        assert!(
            matches!(&err, ProviderError::NotSent { message, .. } if message.contains(kind)),
            "{status} {kind}: {err:?}"
        );
    }
}

#[test]
fn the_retryable_header_decides_a_validation_error() {
    let stand = FalStandIn::start(KEY);
    let provider = provider(&stand);
    stand.with(|s| {
        s.submit_faults
            .push_back(Fault::validation(422, "model is warming up", Some(true)));
        s.submit_faults
            .push_back(Fault::validation(422, "field required", None));
        s.submit_faults
            .push_back(Fault::validation(503, "prompt flagged", Some(false)));
    });
    let data = JobData::new("fal-ai/flux/dev");
    let err = provider.submit(&data.job()).expect_err("retryable");
    assert!(matches!(err, ProviderError::NotSent { .. }), "{err:?}");
    let err = provider.submit(&data.job()).expect_err("validation");
    assert!(
        matches!(&err, ProviderError::Permanent { code, message } if code == "upstream_rejected" && message.contains("prompt: field required")),
        "{err:?}"
    );
    let err = provider.submit(&data.job()).expect_err("not retryable");
    assert!(
        matches!(&err, ProviderError::Permanent { code, .. } if code == "upstream_rejected"),
        "{err:?}"
    );
}

#[test]
fn a_timeout_after_sending_is_outcome_unknown_and_a_slow_poll_is_not_sent() {
    let stand = FalStandIn::start(KEY);
    let provider =
        FalProvider::new(&config(stand.base_url(), 300), Some(Credential::new(KEY))).expect("new");
    stand.with(|s| {
        s.submit_faults
            .push_back(Fault::Slow(Duration::from_millis(600)))
    });
    let mut data = JobData::new("fal-ai/flux/dev");
    let err = provider.submit(&data.job()).expect_err("timed out");
    assert!(
        matches!(err, ProviderError::OutcomeUnknown { .. }),
        "{err:?}"
    );
    assert_no_secret(&err);
    data.accept(provider.submit(&data.job()).expect("submit"));
    stand.with(|s| {
        s.status_faults
            .push_back(Fault::Slow(Duration::from_millis(600)))
    });
    let err = provider.poll(&data.job()).expect_err("timed out");
    assert!(
        matches!(err, ProviderError::NotSent { .. }),
        "a read is safe to repeat: {err:?}"
    );
}

#[test]
fn malformed_answers() {
    let stand = FalStandIn::start(KEY);
    let provider = provider(&stand);
    stand.with(|s| s.submit_faults.push_back(Fault::Malformed));
    let mut data = JobData::new("fal-ai/flux/dev");
    let err = provider.submit(&data.job()).expect_err("malformed");
    assert!(
        matches!(err, ProviderError::OutcomeUnknown { .. }),
        "an accepted body that does not parse: {err:?}"
    );
    data.accept(provider.submit(&data.job()).expect("submit"));
    stand.with(|s| {
        s.status_faults
            .push_back(Fault::StatusValue("FAILED".into()))
    });
    let err = provider.poll(&data.job()).expect_err("unknown status");
    assert!(
        matches!(&err, ProviderError::Permanent { code, .. } if code == "invalid_provider_answer"),
        "{err:?}"
    );
}

#[test]
fn a_refused_key_is_an_auth_failure_that_never_shows_the_key() {
    let stand = FalStandIn::start("another-key");
    let provider = provider(&stand);
    let err = provider
        .submit(&JobData::new("fal-ai/flux/dev").job())
        .expect_err("refused");
    assert!(
        matches!(&err, ProviderError::Permanent { code, .. } if code == "provider_auth_failed"),
        "{err:?}"
    );
    assert_no_secret(&err);
    let report = provider.check().expect("check");
    assert!(report.reachable);
    assert_eq!(report.auth_ok, Some(false));
    assert!(!report.detail.contains(KEY));
}

#[test]
fn check_reads_an_unknown_request_and_says_the_key_is_accepted() {
    let stand = FalStandIn::start(KEY);
    let report = provider(&stand).check().expect("check");
    assert!(report.reachable);
    assert_eq!(report.auth_ok, Some(true), "{report:?}");
    let seen = stand.server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert!(seen[0].url.ends_with("/status"));
    // Nothing listening: unreachable, not an error.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let down = FalProvider::new(
        &config(&format!("http://127.0.0.1:{port}"), 1_000),
        Some(Credential::new(KEY)),
    )
    .expect("new");
    let report = down.check().expect("check");
    assert!(!report.reachable);
}

#[test]
fn cancel_before_and_after_the_end_is_ok() {
    let stand = FalStandIn::start(KEY);
    let provider = provider(&stand);
    let mut data = JobData::new("fal-ai/flux/dev");
    data.accept(provider.submit(&data.job()).expect("submit"));
    provider.cancel(&data.job()).expect("cancel while queued");
    let seen = stand.server.seen();
    let cancel = seen.last().expect("cancel");
    assert_eq!(cancel.method, "PUT");
    assert!(cancel.url.ends_with(&format!(
        "/fal-ai/flux/requests/{}/cancel",
        data.task_id.as_deref().expect("id")
    )));
    // Already completed (400 ALREADY_COMPLETED) and unknown (404 NOT_FOUND).
    provider.cancel(&data.job()).expect("already completed");
    let mut state = data.state.clone().expect("state");
    state["cancel_url"] = json!(format!(
        "{}/fal-ai/flux/requests/gone/cancel",
        stand.base_url()
    ));
    data.state = Some(state);
    provider.cancel(&data.job()).expect("not found");
}

#[test]
fn cancel_after_start_ends_the_request_as_canceled_upstream() {
    let stand = FalStandIn::start(KEY);
    let provider = provider(&stand);
    let mut data = JobData::new("fal-ai/flux/dev");
    data.accept(provider.submit(&data.job()).expect("submit"));
    assert_eq!(
        provider.poll(&data.job()).expect("queued"),
        PollStatus::Running
    );
    assert_eq!(
        provider.poll(&data.job()).expect("running"),
        PollStatus::Running
    );
    provider.cancel(&data.job()).expect("cancel while running");
    let done = provider.poll(&data.job()).expect("completed");
    assert!(
        matches!(&done, PollStatus::Failed { code, .. } if code == "canceled_upstream"),
        "{done:?}"
    );
}

#[test]
fn missing_state_and_bad_model_ids_are_refused_without_a_call() {
    let stand = FalStandIn::start(KEY);
    let provider = provider(&stand);
    let data = JobData::new("fal-ai/flux/dev");
    let err = provider.poll(&data.job()).expect_err("no state");
    assert!(
        matches!(&err, ProviderError::Permanent { code, .. } if code == "invalid_provider_answer")
    );
    let err = provider
        .submit(&JobData::new("fal-ai/../x").job())
        .expect_err("bad id");
    assert!(
        matches!(&err, ProviderError::Permanent { code, .. } if code == "provider_misconfigured")
    );
    assert!(stand.server.seen().is_empty());
    assert!(FalProvider::new(&config(stand.base_url(), 1_000), None).is_err());
}

// ---- webhooks -------------------------------------------------------------

fn signing_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn jwks_of(keys: &[&SigningKey]) -> String {
    use base64::Engine;
    let keys: Vec<Value> = keys
        .iter()
        .map(|k| {
            json!({"kty": "OKP", "crv": "Ed25519", "kid": "k", "use": "sig", "alg": "EdDSA",
                   "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k.verifying_key().to_bytes())})
        })
        .collect();
    json!({"keys": keys}).to_string()
}

const NOW: i64 = 1_764_583_200;

fn webhook_body() -> Vec<u8> {
    json!({"request_id": "req-0001", "gateway_request_id": "req-0001", "status": "OK",
           "payload": {"images": [{"url": "https://v3.fal.media/files/a.png", "content_type": "image/png"}], "seed": 9}})
    .to_string()
    .into_bytes()
}

fn sign(key: &SigningKey, timestamp: &str, body: &[u8]) -> String {
    hex::encode(
        key.sign(&webhook_message("req-0001", "user-1", timestamp, body))
            .to_bytes(),
    )
}

#[test]
fn a_signed_webhook_verifies_and_reads_as_a_poll_would() {
    let key = signing_key(1);
    let keys = parse_jwks(&jwks_of(&[&signing_key(2), &key])).expect("jwks");
    let body = webhook_body();
    let timestamp = NOW.to_string();
    let signature = sign(&key, &timestamp, &body);
    let headers = WebhookHeaders {
        request_id: "req-0001",
        user_id: "user-1",
        timestamp: &timestamp,
        signature: &signature,
    };
    let event = verify_webhook(&keys, headers, &body, NOW + 10, 300).expect("verifies");
    assert_eq!(event.request_id, "req-0001");
    let PollStatus::Succeeded(completion) = event.status else {
        panic!("success");
    };
    assert_eq!(completion.seed, Some(9));
    // The message is fal's: id, user, timestamp, hex sha256 of the body.
    let message = String::from_utf8(webhook_message("r", "u", "1", b"{}")).expect("utf8");
    assert_eq!(
        message,
        "r\nu\n1\n44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
}

fn headers<'a>(signature: &'a str, timestamp: &'a str) -> WebhookHeaders<'a> {
    WebhookHeaders {
        request_id: "req-0001",
        user_id: "user-1",
        timestamp,
        signature,
    }
}

#[test]
fn webhooks_with_a_bad_signature_a_wrong_key_or_a_stale_timestamp_are_refused() {
    let key = signing_key(1);
    let keys = parse_jwks(&jwks_of(&[&key])).expect("jwks");
    let body = webhook_body();
    let ts = NOW.to_string();
    let good = sign(&key, &ts, &body);
    assert!(verify_webhook(&keys, headers(&good, &ts), &body, NOW, 300).is_ok());
    // Tampered body.
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    assert!(verify_webhook(&keys, headers(&good, &ts), &tampered, NOW, 300).is_err());
    // Flipped signature byte.
    let mut bad = hex::decode(&good).expect("hex");
    bad[0] ^= 1;
    let bad = hex::encode(bad);
    assert!(verify_webhook(&keys, headers(&bad, &ts), &body, NOW, 300).is_err());
    // Not hex.
    assert!(verify_webhook(&keys, headers("zz", &ts), &body, NOW, 300).is_err());
    // Signed by a key fal does not publish.
    let other = sign(&signing_key(3), &ts, &body);
    let err = verify_webhook(&keys, headers(&other, &ts), &body, NOW, 300).expect_err("wrong key");
    assert!(err.contains("does not verify"), "{err}");
    // Stale and future timestamps, properly signed.
    let old = (NOW - 301).to_string();
    let signed_old = sign(&key, &old, &body);
    let err =
        verify_webhook(&keys, headers(&signed_old, &old), &body, NOW, 300).expect_err("stale");
    assert!(err.contains("away from now"), "{err}");
    let future = (NOW + 400).to_string();
    let signed_future = sign(&key, &future, &body);
    assert!(verify_webhook(&keys, headers(&signed_future, &future), &body, NOW, 300).is_err());
    // The header names another request than the body.
    let signature = hex::encode(
        key.sign(&webhook_message("req-9999", "user-1", &ts, &body))
            .to_bytes(),
    );
    let other_id = WebhookHeaders {
        request_id: "req-9999",
        user_id: "user-1",
        timestamp: &ts,
        signature: &signature,
    };
    assert!(verify_webhook(&keys, other_id, &body, NOW, 300).is_err());
    // No keys known.
    assert!(verify_webhook(&[], headers(&good, &ts), &body, NOW, 300).is_err());
}

#[test]
fn jwks_documents_are_read_for_their_ed25519_keys() {
    let key = signing_key(5);
    let mixed = json!({"keys": [
        {"kty": "RSA", "n": "abc", "e": "AQAB"},
        {"kty": "OKP", "crv": "X25519", "x": "AAAA"},
        serde_json::from_str::<Value>(&jwks_of(&[&key])).expect("json")["keys"][0].clone(),
    ]})
    .to_string();
    let keys = parse_jwks(&mixed).expect("one key");
    assert_eq!(keys, vec![key.verifying_key()]);
    assert!(parse_jwks(r#"{"keys": []}"#).is_err());
    assert!(parse_jwks(r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "c2hvcnQ"}]}"#).is_err());
    assert!(parse_jwks("not json").is_err());
    assert!(parse_jwks(r#"{"no": "keys"}"#).is_err());
}

#[test]
fn webhook_bodies_map_ok_and_error() {
    let failed = parse_webhook(
        json!({"request_id": "r1", "status": "ERROR", "error": "Invalid status code: 422",
               "payload": {"detail": [{"loc": ["body", "prompt"], "msg": "field required", "type": "x"}]}})
        .to_string()
        .as_bytes(),
    )
    .expect("reads");
    assert!(
        matches!(&failed.status, PollStatus::Failed { code, message } if code == "upstream_rejected" && message.contains("field required")),
        "{failed:?}"
    );
    let unserialisable = parse_webhook(
        json!({"request_id": "r1", "status": "OK", "payload": null, "payload_error": "too big"})
            .to_string()
            .as_bytes(),
    )
    .expect("reads");
    assert_eq!(
        unserialisable.status,
        PollStatus::Running,
        "left to the poll"
    );
    assert!(parse_webhook(br#"{"request_id": "r1", "status": "MAYBE"}"#).is_err());
    assert!(parse_webhook(b"[").is_err());
}
