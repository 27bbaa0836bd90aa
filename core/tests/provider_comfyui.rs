//! The ComfyUI adapter against the ComfyUI stand-in: templates loaded at
//! construction, submission with our prompt id, old and new refusals,
//! polling to `/view` URLs, reconciliation on new and old servers, a cancel
//! that never stops someone else's prompt, `check()`, and the shared
//! failure cases (429, 5xx, a timeout after sending, malformed JSON, auth).
#![cfg(feature = "http")]

use std::path::PathBuf;
use std::time::Duration;

use creditgate::pricing::BilledUnits;
use creditgate::providers::comfyui::{prompt_id_for, ComfyUiProvider};
use creditgate::providers::config::{Credential, ProviderConfig, ProviderKind};
use creditgate::providers::http::{Auth, HttpClient};
use creditgate::providers::{
    Artifact, PollStatus, Provider, ProviderError, ProviderJob, Reconciled, Submission,
};
use creditgate_standins::comfyui::{ComfyUi, Phase, PNG};
use creditgate_standins::Reply;
use serde_json::{json, Value};

const SECRET: &str = "proxy-sekrit-123";

fn shipped_workflows() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/workflows")
}

fn config(base_url: &str, workflows: &std::path::Path) -> ProviderConfig {
    let mut config = ProviderConfig::new("box", ProviderKind::Comfyui);
    config.base_url = Some(base_url.to_owned());
    config.workflows_dir = Some(workflows.display().to_string());
    config.timeout_ms = 2_000;
    config.concurrency = 1;
    config
}

fn adapter(comfy: &ComfyUi) -> ComfyUiProvider {
    ComfyUiProvider::new(&config(comfy.base_url(), &shipped_workflows()), None).expect("provider")
}

struct Job {
    id: String,
    model: String,
    prompt: String,
    units: BilledUnits,
    images: Vec<String>,
    task: Option<String>,
    state: Option<Value>,
}

impl Job {
    fn new(id: &str) -> Job {
        Job {
            id: id.to_owned(),
            model: "sdxl-basic".to_owned(),
            prompt: "a red fox".to_owned(),
            units: BilledUnits::default(),
            images: Vec::new(),
            task: None,
            state: None,
        }
    }

    fn view(&self) -> ProviderJob<'_> {
        ProviderJob {
            job_id: &self.id,
            model: "comfy/sdxl",
            upstream_model: &self.model,
            product: "image",
            prompt: Some(&self.prompt),
            units: &self.units,
            input_image_urls: &self.images,
            provider_task_id: self.task.as_deref(),
            submit_attempts: 1,
            resubmission: false,
            polls: 0,
            poll_errors: 0,
            seed: 1234,
            output_url_base: "http://gate/v1/files/x/t".to_owned(),
            provider_state: self.state.as_ref(),
            webhook_url: None,
        }
    }

    fn record(&mut self, submission: Submission) {
        match submission {
            Submission::Accepted { task_id, state } => {
                self.task = Some(task_id);
                self.state = state;
            }
            other => panic!("accepted expected, got {other:?}"),
        }
    }
}

fn permanent(err: &ProviderError) -> (&str, &str) {
    match err {
        ProviderError::Permanent { code, message } => (code, message),
        other => panic!("permanent expected, got {other:?}"),
    }
}

fn last_prompt_body(comfy: &ComfyUi) -> Value {
    comfy
        .server()
        .seen()
        .into_iter()
        .rev()
        .find(|s| s.method == "POST" && s.url == "/prompt")
        .expect("a POST /prompt")
        .json()
}

#[test]
fn the_shipped_sdxl_template_loads() {
    let comfy = ComfyUi::start(true);
    let provider = adapter(&comfy);
    assert!(provider.template_names().any(|name| name == "sdxl-basic"));
    // Loading reads no network.
    assert!(comfy.server().seen().is_empty());
}

#[test]
fn a_prompt_runs_to_a_view_url_that_serves_the_image() {
    let comfy = ComfyUi::start(true);
    let provider = adapter(&comfy);
    let mut job = Job::new("job_success");
    job.units.resolution = Some("832x1216".to_owned());
    let submission = provider.submit(&job.view()).expect("submitted");
    let ours = prompt_id_for("job_success");
    assert_eq!(
        submission,
        Submission::Accepted {
            task_id: ours.clone(),
            state: Some(json!({"prompt_id": ours, "client_id": provider.client_id()})),
        }
    );
    job.record(submission);

    let body = last_prompt_body(&comfy);
    assert_eq!(body["prompt_id"], json!(ours));
    assert_eq!(body["client_id"], json!(provider.client_id()));
    let graph = &body["prompt"];
    assert_eq!(graph["6"]["inputs"]["text"], json!("a red fox"));
    assert_eq!(graph["7"]["inputs"]["text"], json!(""));
    assert_eq!(graph["3"]["inputs"]["seed"], json!(1234));
    assert_eq!(graph["5"]["inputs"]["width"], json!(832));
    assert_eq!(graph["5"]["inputs"]["height"], json!(1216));
    assert_eq!(
        graph["4"]["inputs"]["ckpt_name"],
        json!("sd_xl_base_1.0.safetensors")
    );
    assert!(comfy.server().seen()[0].header("authorization").is_none());

    // First poll: it starts running. Second: done.
    assert_eq!(
        provider.poll(&job.view()).expect("poll"),
        PollStatus::Running
    );
    let PollStatus::Succeeded(done) = provider.poll(&job.view()).expect("poll") else {
        panic!("succeeded expected")
    };
    let [Artifact::Remote { url, mime }] = done.artifacts.as_slice() else {
        panic!("one remote artifact: {:?}", done.artifacts)
    };
    assert_eq!(
        url,
        &format!(
            "{}/view?filename=creditgate_00001_.png&subfolder=&type=output",
            comfy.base_url()
        )
    );
    assert_eq!(mime.as_deref(), Some("image/png"));
    let client = HttpClient::new(&config(comfy.base_url(), &shipped_workflows()), Auth::None)
        .expect("client");
    let answer = client.get(url).expect("view");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, PNG);
}

#[test]
fn view_urls_encode_names_and_subfolders() {
    let comfy = ComfyUi::start(true);
    comfy.set(|b| {
        b.output_filename = "fox & hound #1=ok?.png".to_owned();
        b.output_subfolder = "runs/día 1".to_owned();
    });
    let provider = adapter(&comfy);
    let mut job = Job::new("job_names");
    job.record(provider.submit(&job.view()).expect("submitted"));
    comfy.advance();
    comfy.advance();
    let PollStatus::Succeeded(done) = provider.poll(&job.view()).expect("poll") else {
        panic!("succeeded")
    };
    let Artifact::Remote { url, .. } = &done.artifacts[0] else {
        panic!("remote")
    };
    assert!(
        url.ends_with(
            "/view?filename=fox%20%26%20hound%20%231%3Dok%3F.png&subfolder=runs%2Fd%C3%ADa%201&type=output"
        ),
        "{url}"
    );
    let client = HttpClient::new(&config(comfy.base_url(), &shipped_workflows()), Auth::None)
        .expect("client");
    assert_eq!(
        client.get(url).expect("view").status,
        200,
        "the stand-in found the file"
    );
}

#[test]
fn a_prompt_with_quotes_and_braces_reaches_comfyui_as_one_string() {
    let comfy = ComfyUi::start(true);
    let provider = adapter(&comfy);
    let mut job = Job::new("job_nasty");
    job.prompt =
        r#"a "fox"}, "99": {"class_type": "Evil", "inputs": {}}, "x": "{{seed}}"#.to_owned();
    provider.submit(&job.view()).expect("submitted");
    let graph = &last_prompt_body(&comfy)["prompt"];
    assert_eq!(graph["6"]["inputs"]["text"], json!(job.prompt));
    assert_eq!(
        graph.as_object().expect("graph").len(),
        7,
        "no node was injected"
    );
    assert!(graph.get("99").is_none());
}

#[test]
fn a_model_without_a_template_is_unavailable_and_the_path_stays_private() {
    let comfy = ComfyUi::start(true);
    let provider = adapter(&comfy);
    let mut job = Job::new("job_missing");
    job.model = "flux-dev".to_owned();
    let err = provider.submit(&job.view()).expect_err("no template");
    let (code, message) = permanent(&err);
    assert_eq!(code, "model_unavailable");
    assert!(message.contains("\"flux-dev\""), "{message}");
    assert!(!message.contains("fixtures"), "{message}");
    assert!(!message.contains(".json"), "{message}");
    assert_eq!(comfy.server().count("POST", "/prompt"), 0);
    job.model = "../sdxl-basic".to_owned();
    let err = provider.submit(&job.view()).expect_err("no template");
    assert_eq!(permanent(&err).0, "model_unavailable");
}

#[test]
fn bad_templates_refuse_the_instance_at_construction() {
    let comfy = ComfyUi::start(true);
    for (name, text, why) in [
        (
            "ui-format.json",
            r#"{"nodes": [], "links": []}"#,
            "ui-format.json",
        ),
        ("broken.json", "{", "not JSON"),
        (
            "typo.json",
            r#"{"1": {"class_type": "X", "inputs": {"t": "{{prompt }} x"}}}"#,
            "whole string",
        ),
        (
            "has space.json",
            r#"{"1": {"class_type": "X", "inputs": {}}}"#,
            "cannot be a model id",
        ),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(name), text).expect("write");
        let err =
            ComfyUiProvider::new(&config(comfy.base_url(), dir.path()), None).expect_err(name);
        assert!(err.to_string().contains(why), "{name}: {err}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let big = format!(
        r#"{{"1": {{"class_type": "X", "inputs": {{"t": "{}"}}}}}}"#,
        "x".repeat(1024 * 1024)
    );
    std::fs::write(dir.path().join("big.json"), big).expect("write");
    let err = ComfyUiProvider::new(&config(comfy.base_url(), dir.path()), None).expect_err("big");
    assert!(err.to_string().contains("larger than"), "{err}");

    let dir = tempfile::tempdir().expect("tempdir");
    for i in 0..=creditgate::providers::comfyui::TEMPLATES_MAX {
        std::fs::write(
            dir.path().join(format!("t{i}.json")),
            r#"{"1": {"class_type": "X", "inputs": {}}}"#,
        )
        .expect("write");
    }
    let err = ComfyUiProvider::new(&config(comfy.base_url(), dir.path()), None).expect_err("many");
    assert!(err.to_string().contains("more than"), "{err}");

    let mut no_dir = config(comfy.base_url(), dir.path());
    no_dir.workflows_dir = None;
    let err = ComfyUiProvider::new(&no_dir, None).expect_err("no folder");
    assert!(err.to_string().contains("workflows_dir"), "{err}");
    let missing = config(comfy.base_url(), &dir.path().join("nowhere"));
    assert!(ComfyUiProvider::new(&missing, None).is_err());
}

#[test]
fn an_image_template_without_an_input_is_refused_before_sending() {
    let comfy = ComfyUi::start(true);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("img2img.json"),
        r#"{"1": {"class_type": "LoadImageFromUrl", "inputs": {"url": "{{image}}"}},
            "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}"}}}"#,
    )
    .expect("write");
    let provider =
        ComfyUiProvider::new(&config(comfy.base_url(), dir.path()), None).expect("provider");
    let mut job = Job::new("job_img");
    job.model = "img2img".to_owned();
    let err = provider.submit(&job.view()).expect_err("no image");
    assert_eq!(permanent(&err).0, "unsupported_input");
    assert_eq!(comfy.server().count("POST", "/prompt"), 0);
    job.images = vec!["https://cdn.example/in.png".to_owned()];
    provider.submit(&job.view()).expect("submitted");
    assert_eq!(
        last_prompt_body(&comfy)["prompt"]["1"]["inputs"]["url"],
        json!("https://cdn.example/in.png")
    );
}

#[test]
fn old_and_new_refusals_are_summarised_as_upstream_rejected() {
    for new in [false, true] {
        let comfy = ComfyUi::start(new);
        comfy.set(|b| b.reject_with = Some("Value not in list".to_owned()));
        let provider = adapter(&comfy);
        let err = provider
            .submit(&Job::new("job_reject").view())
            .expect_err("refused");
        let (code, message) = permanent(&err);
        assert_eq!(code, "upstream_rejected", "new={new}");
        assert!(
            message.starts_with("Prompt outputs failed validation"),
            "{message}"
        );
        assert!(
            message.contains("KSampler: Value not in list (ckpt_name:"),
            "new={new}: {message}"
        );
        assert!(
            !message.contains("extra_info") && !message.contains('{'),
            "{message}"
        );
    }
    // The oldest shape: `{"error": "no prompt", "node_errors": []}`.
    let comfy = ComfyUi::start(false);
    comfy.script(
        "POST",
        "/prompt",
        Reply::json(400, &json!({"error": "no prompt", "node_errors": []})),
    );
    let err = adapter(&comfy)
        .submit(&Job::new("j").view())
        .expect_err("refused");
    assert_eq!(permanent(&err), ("upstream_rejected", "no prompt"));
}

#[test]
fn a_failed_execution_is_generation_failed_with_the_node_and_message() {
    let comfy = ComfyUi::start(true);
    comfy.set(|b| b.fail_with = Some("CUDA out of memory".to_owned()));
    let provider = adapter(&comfy);
    let mut job = Job::new("job_fail");
    job.record(provider.submit(&job.view()).expect("submitted"));
    assert_eq!(
        provider.poll(&job.view()).expect("poll"),
        PollStatus::Running
    );
    assert_eq!(
        provider.poll(&job.view()).expect("poll"),
        PollStatus::Failed {
            code: "generation_failed".to_owned(),
            message: "KSampler failed: CUDA out of memory".to_owned(),
        }
    );
}

#[test]
fn a_prompt_deleted_from_the_queue_is_abandoned() {
    let comfy = ComfyUi::start(true);
    comfy.set(|b| b.auto_advance = false);
    let provider = adapter(&comfy);
    let mut job = Job::new("job_deleted");
    job.record(provider.submit(&job.view()).expect("submitted"));
    assert_eq!(
        provider.poll(&job.view()).expect("poll"),
        PollStatus::Running
    );
    comfy.remove(job.task.as_deref().expect("task"));
    assert!(matches!(
        provider.poll(&job.view()).expect("poll"),
        PollStatus::Abandoned { message } if message.contains("deleted from the ComfyUI queue")
    ));
}

#[test]
fn an_old_server_assigns_its_own_id_and_polls_by_it() {
    let comfy = ComfyUi::start(false);
    let provider = adapter(&comfy);
    let mut job = Job::new("job_old");
    job.record(provider.submit(&job.view()).expect("submitted"));
    let task = job.task.clone().expect("task");
    assert_ne!(task, prompt_id_for("job_old"), "old servers ignore our id");
    assert_eq!(job.state.as_ref().expect("state")["prompt_id"], json!(task));
    assert_eq!(
        provider.poll(&job.view()).expect("poll"),
        PollStatus::Running
    );
    assert!(matches!(
        provider.poll(&job.view()).expect("poll"),
        PollStatus::Succeeded(_)
    ));
    assert_eq!(comfy.server().count("GET", &format!("/history/{task}")), 2);
}

#[test]
fn reconcile_finds_a_lost_submission_on_a_new_server() {
    let comfy = ComfyUi::start(true);
    comfy.set(|b| {
        b.prompt_delay = Duration::from_millis(500);
        b.auto_advance = false;
    });
    let mut cfg = config(comfy.base_url(), &shipped_workflows());
    cfg.timeout_ms = 200;
    let provider = ComfyUiProvider::new(&cfg, None).expect("provider");
    let job = Job::new("job_lost");
    let err = provider.submit(&job.view()).expect_err("timed out");
    assert!(
        matches!(err, ProviderError::OutcomeUnknown { .. }),
        "{err:?}"
    );
    assert!(!provider.idempotent_submit());

    let ours = prompt_id_for("job_lost");
    let found = provider.reconcile(&job.view()).expect("reconciled");
    assert_eq!(
        found,
        Reconciled::Found(Submission::Accepted {
            task_id: ours.clone(),
            state: Some(json!({"prompt_id": ours, "client_id": provider.client_id()})),
        })
    );
    // Still found once it finished (history, not queue).
    comfy.advance();
    comfy.advance();
    assert!(matches!(
        provider.reconcile(&job.view()),
        Ok(Reconciled::Found(_))
    ));
    // A job that never reached the server is absent.
    assert_eq!(
        provider
            .reconcile(&Job::new("job_never").view())
            .expect("reconciled"),
        Reconciled::Absent
    );
    // The version was asked once.
    assert_eq!(comfy.server().count("GET", "/system_stats"), 1);
}

#[test]
fn reconcile_is_unsupported_on_an_old_server_or_one_without_a_version() {
    let comfy = ComfyUi::start(false);
    let provider = adapter(&comfy);
    let job = Job::new("job_old_lost");
    provider.submit(&job.view()).expect("submitted");
    assert_eq!(
        provider.reconcile(&job.view()).expect("asked"),
        Reconciled::Unsupported
    );
    assert_eq!(comfy.server().count("GET", "/history"), 0);

    let comfy = ComfyUi::start(true);
    comfy.set(|b| b.version = None);
    let provider = adapter(&comfy);
    assert_eq!(
        provider.reconcile(&job.view()).expect("asked"),
        Reconciled::Unsupported
    );
}

#[test]
fn cancel_deletes_our_pending_prompt_and_interrupts_nothing() {
    for new in [false, true] {
        let comfy = ComfyUi::start(new);
        comfy.set(|b| b.auto_advance = false);
        let provider = adapter(&comfy);
        let foreign = comfy.add_foreign(true);
        let mut job = Job::new("job_pending");
        job.record(provider.submit(&job.view()).expect("submitted"));
        provider.cancel(&job.view()).expect("cancelled");
        assert_eq!(
            comfy.deleted(),
            vec![job.task.clone().expect("task")],
            "new={new}"
        );
        assert!(comfy.interrupts().is_empty(), "new={new}");
        let phases: Vec<_> = comfy
            .prompts()
            .into_iter()
            .map(|p| (p.id, p.phase))
            .collect();
        assert_eq!(
            phases,
            vec![(foreign, Phase::Running)],
            "someone else's runs on"
        );
    }
}

#[test]
fn cancel_interrupts_our_running_prompt_by_id_on_a_new_server() {
    let comfy = ComfyUi::start(true);
    comfy.set(|b| b.auto_advance = false);
    let provider = adapter(&comfy);
    let mut job = Job::new("job_running");
    job.record(provider.submit(&job.view()).expect("submitted"));
    comfy.advance();
    provider.cancel(&job.view()).expect("cancelled");
    assert_eq!(comfy.interrupts(), vec![job.task.clone()]);
    assert_eq!(comfy.prompts()[0].phase, Phase::Interrupted);
    assert!(matches!(
        provider.poll(&job.view()).expect("poll"),
        PollStatus::Failed { message, .. } if message.contains("interrupted")
    ));
}

#[test]
fn cancel_on_an_old_server_interrupts_only_when_ours_is_the_one_running() {
    // Ours running: the bare interrupt is safe.
    let comfy = ComfyUi::start(false);
    comfy.set(|b| b.auto_advance = false);
    let provider = adapter(&comfy);
    let mut job = Job::new("job_old_running");
    job.record(provider.submit(&job.view()).expect("submitted"));
    comfy.advance();
    provider.cancel(&job.view()).expect("cancelled");
    assert_eq!(comfy.interrupts(), vec![None]);
    assert_eq!(comfy.prompts()[0].phase, Phase::Interrupted);

    // Someone else's running, ours already finished: nothing is sent.
    let comfy = ComfyUi::start(false);
    comfy.set(|b| b.auto_advance = false);
    let provider = adapter(&comfy);
    let mut job = Job::new("job_old_done");
    job.record(provider.submit(&job.view()).expect("submitted"));
    comfy.advance();
    comfy.advance();
    let foreign = comfy.add_foreign(true);
    provider.cancel(&job.view()).expect("nothing to cancel");
    assert!(
        comfy.interrupts().is_empty(),
        "no interrupt on an old server"
    );
    assert!(comfy.deleted().is_empty());
    let running: Vec<_> = comfy
        .prompts()
        .into_iter()
        .filter(|p| p.phase == Phase::Running)
        .map(|p| p.id)
        .collect();
    assert_eq!(running, vec![foreign]);
}

#[test]
fn a_job_never_submitted_cancels_without_a_call() {
    let comfy = ComfyUi::start(true);
    adapter(&comfy)
        .cancel(&Job::new("job_none").view())
        .expect("nothing to do");
    assert!(comfy.server().seen().is_empty());
}

#[test]
fn check_reports_the_version_and_free_vram() {
    let comfy = ComfyUi::start(true);
    let report = adapter(&comfy).check().expect("checked");
    assert!(report.reachable);
    assert_eq!(report.auth_ok, None);
    assert_eq!(report.upstream_credits, None);
    assert!(
        report.detail.contains("ComfyUI 0.3.60"),
        "{}",
        report.detail
    );
    assert!(
        report.detail.contains("takes our prompt ids"),
        "{}",
        report.detail
    );
    assert!(
        report.detail.contains("20480 of 24564 MiB VRAM free"),
        "{}",
        report.detail
    );
    assert!(report.detail.contains("RTX 4090"), "{}", report.detail);
}

#[test]
fn a_429_is_not_sent_with_its_retry_hint_and_a_5xx_is_not_sent() {
    let comfy = ComfyUi::start(true);
    let provider = adapter(&comfy);
    comfy.script(
        "POST",
        "/prompt",
        Reply::json(429, &json!({"error": "busy"})).header("Retry-After", "3"),
    );
    let err = provider
        .submit(&Job::new("job_429").view())
        .expect_err("429");
    assert_eq!(
        err,
        ProviderError::NotSent {
            message: "the upstream answered HTTP 429: the prompt was refused".to_owned(),
            retry_after_ms: Some(3_000),
        }
    );
    comfy.script("POST", "/prompt", Reply::json(502, &json!({})));
    let err = provider
        .submit(&Job::new("job_502").view())
        .expect_err("502");
    assert!(matches!(err, ProviderError::NotSent { .. }), "{err:?}");
    comfy.script("GET", "/history/", Reply::json(500, &json!({})));
    let mut job = Job::new("job_poll_500");
    job.task = Some("abc".to_owned());
    let err = provider.poll(&job.view()).expect_err("500");
    assert!(matches!(err, ProviderError::NotSent { .. }), "{err:?}");
    assert_eq!(comfy.prompts().len(), 0, "nothing was queued");
}

#[test]
fn malformed_answers_are_outcome_unknown_on_submit_and_not_sent_on_poll() {
    let comfy = ComfyUi::start(true);
    let provider = adapter(&comfy);
    comfy.script(
        "POST",
        "/prompt",
        Reply::bytes(200, "application/json", b"{\"prompt_".to_vec()),
    );
    let err = provider
        .submit(&Job::new("job_bad").view())
        .expect_err("malformed");
    assert!(
        matches!(err, ProviderError::OutcomeUnknown { .. }),
        "{err:?}"
    );
    comfy.script(
        "GET",
        "/history/",
        Reply::bytes(200, "application/json", b"<html>".to_vec()),
    );
    let mut job = Job::new("job_bad_poll");
    job.task = Some("abc".to_owned());
    let err = provider.poll(&job.view()).expect_err("malformed");
    assert!(matches!(err, ProviderError::NotSent { .. }), "{err:?}");
}

#[test]
fn a_credential_goes_as_bearer_to_the_proxy_and_never_into_errors() {
    let comfy = ComfyUi::start(true);
    comfy.set(|b| b.bearer = Some(SECRET.to_owned()));
    let cfg = config(comfy.base_url(), &shipped_workflows());
    let provider = ComfyUiProvider::new(&cfg, Some(Credential::new(SECRET))).expect("provider");
    let mut job = Job::new("job_auth");
    job.record(provider.submit(&job.view()).expect("submitted"));
    let seen = &comfy.server().seen()[0];
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {SECRET}").as_str())
    );

    let wrong = ComfyUiProvider::new(&cfg, Some(Credential::new("wrong-sekrit"))).expect("p");
    let err = wrong
        .submit(&Job::new("job_auth2").view())
        .expect_err("401");
    assert_eq!(permanent(&err).0, "provider_auth_failed");
    assert!(!err.to_string().contains("sekrit"), "{err}");
    assert!(!format!("{wrong:?}").contains("sekrit"));
    let report = wrong.check().expect("checked");
    assert_eq!(report.auth_ok, Some(false));
    assert!(!report.detail.contains("sekrit"));
}

#[test]
fn the_api_prefix_and_concurrency_are_as_configured() {
    let comfy = ComfyUi::start(true);
    let mut cfg = config(&format!("{}/api", comfy.base_url()), &shipped_workflows());
    cfg.concurrency = 2;
    cfg.timeout_ms = 1_500;
    let provider = ComfyUiProvider::new(&cfg, None).expect("provider");
    assert_eq!(provider.concurrency(), 2);
    assert_eq!(provider.call_timeout_ms(), 1_500);
    provider
        .submit(&Job::new("job_api").view())
        .expect("submitted under /api");
    assert_eq!(comfy.server().count("POST", "/api/prompt"), 1);
}
