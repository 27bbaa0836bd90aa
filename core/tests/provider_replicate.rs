//! The Replicate adapter against the Replicate stand-in: the model and
//! version routes, `Prefer: wait` answering a finished prediction, polls
//! through the kept `urls.get`, the billing facts of `canceled` vs
//! `aborted`, the error mapping (429, 402, 422, 5xx, auth), timeouts,
//! malformed answers, cancel, `check()`, and the pure Standard Webhooks
//! verification.
#![cfg(feature = "http")]

use std::time::Duration;

use creditgate::pricing::BilledUnits;
use creditgate::providers::config::{Credential, ProviderConfig, ProviderKind};
use creditgate::providers::replicate::{parse_webhook, verify_webhook, ReplicateProvider};
use creditgate::providers::{
    Artifact, PollStatus, Provider, ProviderError, ProviderJob, Reconciled, Submission,
};
use creditgate_standins::replicate::{End, Fault, ReplicateStandIn};
use serde_json::{json, Value};

const TOKEN: &str = "r8_secret_token_456";

fn config(base: &str, timeout_ms: i64, wait_secs: Option<u32>) -> ProviderConfig {
    let mut config = ProviderConfig::new("replicate", ProviderKind::Replicate);
    config.base_url = Some(base.to_owned());
    config.credential_env = Some("REPLICATE_API_TOKEN".into());
    config.timeout_ms = timeout_ms;
    config.wait_secs = wait_secs;
    config
}

fn provider(stand: &ReplicateStandIn, wait_secs: Option<u32>) -> ReplicateProvider {
    ReplicateProvider::new(
        &config(stand.base_url(), 30_000, wait_secs),
        Some(Credential::new(TOKEN)),
    )
    .expect("new")
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
                count: Some(1),
                aspect_ratio: Some("16:9".into()),
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
            model: "flux-schnell",
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

fn poll_until_done(provider: &ReplicateProvider, data: &JobData) -> PollStatus {
    for _ in 0..10 {
        match provider.poll(&data.job()).expect("poll") {
            PollStatus::Running => continue,
            done => return done,
        }
    }
    panic!("never finished")
}

fn run(stand: &ReplicateStandIn, end: End) -> PollStatus {
    let provider = provider(stand, None);
    stand.with(|s| s.next_end = end);
    let mut data = JobData::new("black-forest-labs/flux-schnell");
    data.accept(provider.submit(&data.job()).expect("submit"));
    poll_until_done(&provider, &data)
}

fn assert_no_secret(err: &ProviderError) {
    let text = format!("{err} {err:?}");
    assert!(!text.contains(TOKEN), "the token leaked: {text}");
}

#[test]
fn a_model_prediction_runs_starting_processing_succeeded() {
    let stand = ReplicateStandIn::start(TOKEN);
    let provider = provider(&stand, None);
    let mut data = JobData::new("black-forest-labs/flux-schnell");
    data.inputs = vec!["https://example.com/in.png".into()];
    data.webhook = Some("https://gw.example/v1/providers/replicate/webhook".into());
    data.accept(provider.submit(&data.job()).expect("submit"));
    let id = data.task_id.clone().expect("id");
    let state = data.state.clone().expect("urls kept");
    assert_eq!(
        state["get"],
        format!("{}/predictions/{id}", stand.base_url())
    );
    assert_eq!(
        provider.poll(&data.job()).expect("starting"),
        PollStatus::Running
    );
    assert_eq!(
        provider.poll(&data.job()).expect("processing"),
        PollStatus::Running
    );
    let PollStatus::Succeeded(completion) = provider.poll(&data.job()).expect("done") else {
        panic!("success");
    };
    assert_eq!(
        completion.artifacts,
        vec![Artifact::Remote {
            url: format!("{}/files/out-0.png", stand.base_url()),
            mime: Some("image/png".into())
        }]
    );
    assert_eq!(completion.usage, None, "predict_time is compute, not media");
    let seen = stand.server.seen();
    assert_eq!(seen[0].method, "POST");
    assert_eq!(
        seen[0].url,
        "/models/black-forest-labs/flux-schnell/predictions"
    );
    let body = seen[0].json();
    assert_eq!(body.get("version"), None);
    assert_eq!(body["input"]["prompt"], "a red fox");
    assert_eq!(body["input"]["num_outputs"], 1);
    assert_eq!(body["input"]["aspect_ratio"], "16:9");
    assert_eq!(body["input"]["image"], "https://example.com/in.png");
    assert_eq!(body["input"]["seed"], 7);
    assert_eq!(
        body["webhook"],
        "https://gw.example/v1/providers/replicate/webhook"
    );
    assert_eq!(body["webhook_events_filter"], json!(["completed"]));
    assert_eq!(seen[0].header("cancel-after"), Some("30m"));
    assert_eq!(
        seen[0].header("prefer"),
        None,
        "wait is off unless configured"
    );
    for request in &seen {
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }
    assert!(seen[1..]
        .iter()
        .all(|s| s.url == format!("/predictions/{id}")));
    assert!(!provider.idempotent_submit());
    assert_eq!(provider.reconcile(&data.job()), Ok(Reconciled::Unsupported));
}

#[test]
fn a_versioned_model_goes_to_predictions_with_its_version() {
    let stand = ReplicateStandIn::start(TOKEN);
    let provider = provider(&stand, None);
    let mut data = JobData::new(
        "stability-ai/sdxl:39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b",
    );
    data.accept(provider.submit(&data.job()).expect("submit"));
    let seen = stand.server.seen();
    assert_eq!(seen[0].url, "/predictions");
    assert_eq!(
        seen[0].json()["version"],
        "39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b"
    );
    assert_eq!(
        seen[0].json().get("webhook"),
        None,
        "no webhook unless configured"
    );
    let err = provider
        .submit(&JobData::new("just-a-name").job())
        .expect_err("bad id");
    assert!(
        matches!(&err, ProviderError::Permanent { code, .. } if code == "provider_misconfigured")
    );
    assert_eq!(stand.server.seen().len(), 1, "a bad model id calls nothing");
}

#[test]
fn prefer_wait_can_answer_a_finished_prediction_at_create() {
    let stand = ReplicateStandIn::start(TOKEN);
    let provider = provider(&stand, Some(60));
    // Capped to fit the 30 s call timeout with the margin to spare.
    assert_eq!(provider.wait_secs(), Some(25));
    stand.with(|s| {
        s.next_end = End::Succeeded(json!(["{base}/files/a.webp", "{base}/files/b.webp"]))
    });
    let data = JobData::new("black-forest-labs/flux-schnell");
    let Submission::Completed {
        task_id,
        completion,
    } = provider.submit(&data.job()).expect("submit")
    else {
        panic!("completed at create");
    };
    assert!(task_id.starts_with("pred"));
    assert_eq!(completion.artifacts.len(), 2);
    assert_eq!(completion.artifacts[0].mime(), Some("image/webp"));
    assert_eq!(stand.server.seen()[0].header("prefer"), Some("wait=25"));
    // A prediction that failed within the wait is accepted; the first poll
    // reads the failure.
    stand.with(|s| s.next_end = End::Failed("CUDA out of memory".into()));
    let mut data = JobData::new("black-forest-labs/flux-schnell");
    data.accept(provider.submit(&data.job()).expect("submit"));
    let failed = provider.poll(&data.job()).expect("poll");
    assert!(
        matches!(&failed, PollStatus::Failed { code, message } if code == "generation_failed" && message.contains("CUDA out of memory")),
        "{failed:?}"
    );
    // A wait too long for the timeout is turned off.
    let short = ReplicateProvider::new(
        &config(stand.base_url(), 4_000, Some(10)),
        Some(Credential::new(TOKEN)),
    )
    .expect("new");
    assert_eq!(short.wait_secs(), None);
}

#[test]
fn aborted_is_abandoned_unbilled_and_canceled_is_a_billed_failure() {
    let stand = ReplicateStandIn::start(TOKEN);
    let aborted = run(&stand, End::Aborted);
    assert!(
        matches!(&aborted, PollStatus::Abandoned { message } if message.contains("not billed")),
        "{aborted:?}"
    );
    let canceled = run(&stand, End::Canceled);
    assert!(
        matches!(&canceled, PollStatus::Failed { code, message } if code == "canceled_upstream" && message.contains("bills")),
        "{canceled:?}"
    );
    let removed = run(&stand, End::DataRemoved);
    assert!(
        matches!(&removed, PollStatus::Failed { code, .. } if code == "upstream_expired"),
        "{removed:?}"
    );
    let missing = run(&stand, End::Succeeded(json!("{base}/files/missing-1.png")));
    assert!(
        matches!(&missing, PollStatus::Succeeded(c) if matches!(&c.artifacts[0], Artifact::Remote { url, .. } if url.ends_with("/files/missing-1.png"))),
        "the adapter hands on a URL that 404s; the media store meets it: {missing:?}"
    );
}

#[test]
fn a_429_is_not_sent_with_its_retry_hint() {
    let stand = ReplicateStandIn::start(TOKEN);
    let provider = provider(&stand, None);
    stand.with(|s| s.create_faults.push_back(Fault::throttled(2)));
    let err = provider
        .submit(&JobData::new("a/b").job())
        .expect_err("throttled");
    assert!(
        matches!(&err, ProviderError::NotSent { message, retry_after_ms: Some(2_000) } if message.contains("throttled")),
        "{err:?}"
    );
    assert_no_secret(&err);
    assert!(stand.with(|s| s.predictions.is_empty()));
}

#[test]
fn refusals_map_to_our_codes() {
    let stand = ReplicateStandIn::start(TOKEN);
    let provider = provider(&stand, None);
    stand.with(|s| {
        s.create_faults.push_back(Fault::problem(
            402,
            "Payment required",
            "You have run out of credit",
        ));
        s.create_faults.push_back(Fault::problem(
            422,
            "Input validation failed",
            "prompt is required",
        ));
        s.create_faults
            .push_back(Fault::problem(503, "Service unavailable", "try later"));
        s.create_faults
            .push_back(Fault::problem(500, "Internal server error", "oops"));
    });
    let job = JobData::new("a/b");
    let err = provider.submit(&job.job()).expect_err("402");
    assert!(
        matches!(&err, ProviderError::Permanent { code, .. } if code == "provider_unavailable"),
        "{err:?}"
    );
    let err = provider.submit(&job.job()).expect_err("422");
    assert!(
        matches!(&err, ProviderError::Permanent { code, message } if code == "upstream_rejected" && message.contains("prompt is required")),
        "{err:?}"
    );
    let err = provider.submit(&job.job()).expect_err("503");
    assert!(matches!(err, ProviderError::NotSent { .. }), "{err:?}");
    let err = provider.submit(&job.job()).expect_err("500");
    assert!(matches!(err, ProviderError::NotSent { .. }), "{err:?}");
}

#[test]
fn a_refused_token_is_an_auth_failure_that_never_shows_the_token() {
    let stand = ReplicateStandIn::start("another-token");
    let provider = provider(&stand, None);
    let err = provider
        .submit(&JobData::new("a/b").job())
        .expect_err("refused");
    assert!(
        matches!(&err, ProviderError::Permanent { code, .. } if code == "provider_auth_failed"),
        "{err:?}"
    );
    assert_no_secret(&err);
    let report = provider.check().expect("check");
    assert_eq!(report.auth_ok, Some(false));
    assert!(!report.detail.contains(TOKEN));
}

#[test]
fn check_reads_the_account() {
    let stand = ReplicateStandIn::start(TOKEN);
    let report = provider(&stand, None).check().expect("check");
    assert!(report.reachable);
    assert_eq!(report.auth_ok, Some(true));
    assert!(report.detail.contains("standin"), "{report:?}");
    assert_eq!(stand.server.seen()[0].url, "/account");
}

#[test]
fn a_timeout_after_sending_is_outcome_unknown_and_a_slow_poll_is_not_sent() {
    let stand = ReplicateStandIn::start(TOKEN);
    let provider = ReplicateProvider::new(
        &config(stand.base_url(), 300, None),
        Some(Credential::new(TOKEN)),
    )
    .expect("new");
    stand.with(|s| {
        s.create_faults
            .push_back(Fault::Slow(Duration::from_millis(600)))
    });
    let mut data = JobData::new("a/b");
    let err = provider.submit(&data.job()).expect_err("timed out");
    assert!(
        matches!(err, ProviderError::OutcomeUnknown { .. }),
        "{err:?}"
    );
    assert_no_secret(&err);
    data.accept(provider.submit(&data.job()).expect("submit"));
    stand.with(|s| {
        s.poll_faults
            .push_back(Fault::Slow(Duration::from_millis(600)))
    });
    let err = provider.poll(&data.job()).expect_err("timed out");
    assert!(matches!(err, ProviderError::NotSent { .. }), "{err:?}");
}

#[test]
fn malformed_answers() {
    let stand = ReplicateStandIn::start(TOKEN);
    let provider = provider(&stand, None);
    stand.with(|s| s.create_faults.push_back(Fault::Malformed));
    let mut data = JobData::new("a/b");
    let err = provider.submit(&data.job()).expect_err("malformed");
    assert!(
        matches!(err, ProviderError::OutcomeUnknown { .. }),
        "{err:?}"
    );
    data.accept(provider.submit(&data.job()).expect("submit"));
    stand.with(|s| s.poll_faults.push_back(Fault::StatusValue("queued".into())));
    let err = provider.poll(&data.job()).expect_err("unknown status");
    assert!(
        matches!(&err, ProviderError::Permanent { code, .. } if code == "invalid_provider_answer"),
        "{err:?}"
    );
    stand.with(|s| s.poll_faults.push_back(Fault::Malformed));
    let err = provider.poll(&data.job()).expect_err("not json");
    assert!(
        matches!(err, ProviderError::NotSent { .. }),
        "a poll is asked again: {err:?}"
    );
    stand.with(|s| s.poll_faults.push_back(Fault::throttled(1)));
    let err = provider.poll(&data.job()).expect_err("throttled");
    assert!(
        matches!(
            err,
            ProviderError::NotSent {
                retry_after_ms: Some(1_000),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn cancel_before_and_after_start_and_after_the_end() {
    let stand = ReplicateStandIn::start(TOKEN);
    let provider = provider(&stand, None);
    // Before it started: the cancel is sent to the kept urls.cancel.
    let mut data = JobData::new("a/b");
    data.accept(provider.submit(&data.job()).expect("submit"));
    provider.cancel(&data.job()).expect("cancel");
    let id = data.task_id.clone().expect("id");
    let seen = stand.server.seen();
    let last = seen.last().expect("cancel");
    assert_eq!(
        (last.method.as_str(), last.url.as_str()),
        ("POST", format!("/predictions/{id}/cancel").as_str())
    );
    let after = provider.poll(&data.job()).expect("poll");
    assert!(
        matches!(&after, PollStatus::Failed { code, .. } if code == "canceled_upstream"),
        "{after:?}"
    );
    // After it started.
    let mut data = JobData::new("a/b");
    data.accept(provider.submit(&data.job()).expect("submit"));
    assert_eq!(
        provider.poll(&data.job()).expect("starting"),
        PollStatus::Running
    );
    assert_eq!(
        provider.poll(&data.job()).expect("processing"),
        PollStatus::Running
    );
    provider.cancel(&data.job()).expect("cancel");
    // After the end, and without kept URLs (by id), and for a vanished one.
    let done = poll_until_done(&provider, &data);
    assert!(matches!(done, PollStatus::Failed { .. }));
    data.state = None;
    provider.cancel(&data.job()).expect("finished");
    data.task_id = Some("nonexistent".into());
    provider
        .cancel(&data.job())
        .expect("404 is nothing to stop");
    assert_eq!(
        stand.server.seen().last().expect("seen").url,
        "/predictions/nonexistent/cancel"
    );
}

#[test]
fn a_prediction_that_is_gone_is_lost() {
    let stand = ReplicateStandIn::start(TOKEN);
    let provider = provider(&stand, None);
    let mut data = JobData::new("a/b");
    data.task_id = Some("gone".into());
    let err = provider.poll(&data.job()).expect_err("404");
    assert!(
        matches!(&err, ProviderError::Permanent { code, .. } if code == "upstream_lost"),
        "{err:?}"
    );
    assert!(ReplicateProvider::new(&config(stand.base_url(), 1_000, None), None).is_err());
}

// ---- webhooks -------------------------------------------------------------

const NOW: i64 = 1_764_583_200;
// base64 of b"a shared webhook signing key 32b".
const SECRET: &str = "whsec_YSBzaGFyZWQgd2ViaG9vayBzaWduaW5nIGtleSAzMmI=";

fn sign(id: &str, timestamp: &str, body: &[u8]) -> String {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .expect("b64");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("key");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

fn body() -> Vec<u8> {
    json!({"id": "pred0001", "status": "succeeded", "output": ["https://replicate.delivery/x/out.png"],
           "data_removed": false, "urls": {"get": "https://api.replicate.com/v1/predictions/pred0001",
           "cancel": "https://api.replicate.com/v1/predictions/pred0001/cancel"}})
    .to_string()
    .into_bytes()
}

#[test]
fn a_standard_webhook_verifies_and_reads_as_a_poll_would() {
    let body = body();
    let ts = NOW.to_string();
    let signature = sign("msg_1", &ts, &body);
    assert_eq!(
        verify_webhook(SECRET, "msg_1", &ts, &signature, &body, NOW + 5, 300),
        Ok(())
    );
    let (id, status) = parse_webhook(&body).expect("reads");
    assert_eq!(id, "pred0001");
    assert!(matches!(status, PollStatus::Succeeded(_)));
    // Aborted reads as abandoned, canceled as a billed failure.
    let aborted = parse_webhook(br#"{"id": "p2", "status": "aborted"}"#).expect("reads");
    assert!(matches!(aborted.1, PollStatus::Abandoned { .. }));
    assert!(parse_webhook(br#"{"id": "p2", "status": "weird"}"#).is_err());
}

#[test]
fn several_signatures_any_one_valid_is_enough() {
    let body = body();
    let ts = NOW.to_string();
    let good = sign("msg_1", &ts, &body);
    let rotated = format!("v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= v2,xyz {good}");
    assert_eq!(
        verify_webhook(SECRET, "msg_1", &ts, &rotated, &body, NOW, 300),
        Ok(())
    );
    let none_valid = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= v1,not-base64!";
    assert!(verify_webhook(SECRET, "msg_1", &ts, none_valid, &body, NOW, 300).is_err());
}

#[test]
fn invalid_and_stale_webhooks_are_refused() {
    let body = body();
    let ts = NOW.to_string();
    let good = sign("msg_1", &ts, &body);
    // Another id, a tampered body, a wrong secret.
    assert!(verify_webhook(SECRET, "msg_2", &ts, &good, &body, NOW, 300).is_err());
    let mut tampered = body.clone();
    tampered[5] ^= 1;
    assert!(verify_webhook(SECRET, "msg_1", &ts, &good, &tampered, NOW, 300).is_err());
    let other_secret = "whsec_b3RoZXIgc2VjcmV0IGtleSBvZiAzMiBieXRlcyEh";
    let err = verify_webhook(other_secret, "msg_1", &ts, &good, &body, NOW, 300)
        .expect_err("wrong secret");
    assert!(!err.contains("b3RoZXIg"), "the secret never shows: {err}");
    // Properly signed, but stale or from the future.
    let old = (NOW - 301).to_string();
    let err = verify_webhook(
        SECRET,
        "msg_1",
        &old,
        &sign("msg_1", &old, &body),
        &body,
        NOW,
        300,
    )
    .expect_err("stale");
    assert!(err.contains("away from now"), "{err}");
    let future = (NOW + 301).to_string();
    assert!(verify_webhook(
        SECRET,
        "msg_1",
        &future,
        &sign("msg_1", &future, &body),
        &body,
        NOW,
        300
    )
    .is_err());
    // A signature without its version, a bad timestamp, a bad secret.
    let bare = good.trim_start_matches("v1,");
    assert!(verify_webhook(SECRET, "msg_1", &ts, bare, &body, NOW, 300).is_err());
    assert!(verify_webhook(SECRET, "msg_1", "soon", &good, &body, NOW, 300).is_err());
    assert!(verify_webhook("whsec_!!", "msg_1", &ts, &good, &body, NOW, 300).is_err());
}
