//! Generation jobs through the facade, driven by the worker step and a
//! manual clock: every fixture scenario path ends in the right state with
//! the right ledger effect; idempotency under concurrency; exact
//! admission under a tight wallet; price pinning; cancel; restart.
//! `ledger verify` passes after every test that moves money.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{assert_verified, race, Fixture, Setup, KIWIWHALE, RYNJER, START};
use creditgate::{Error, Gate, JobStatus, Synchronous};
use rust_decimal::Decimal;
use serde_json::{json, Value};

/// Worker steps a test may take before it gives up: time moves one second
/// per step, so this also bounds the simulated time.
const STEPS_MAX: usize = 4_000;

fn fresh() -> Fixture {
    common::open(Setup {
        synchronous: Synchronous::Normal,
        catalog: Some(RYNJER),
        ..Setup::default()
    })
}

fn account(gate: &Gate, credits: i64) -> String {
    common::account(gate, "agent", Decimal::from(credits))
}

fn available(gate: &Gate, account: &str) -> i64 {
    gate.balance(account).expect("balance").available
}

/// Runs worker steps, one simulated second apart, until `done` or the step
/// bound; returns the steps taken.
fn drive(fx: &Fixture, done: impl Fn(&Gate) -> bool) -> usize {
    for step in 0..STEPS_MAX {
        fx.gate.run_due_work(64).expect("worker step");
        if done(&fx.gate) {
            return step;
        }
        fx.clock.advance(Duration::from_secs(1));
    }
    panic!("not done after {STEPS_MAX} steps");
}

fn run_to_end(fx: &Fixture, account: &str, request_id: &str) -> creditgate::Job {
    drive(fx, |g| {
        g.job_for(account, request_id)
            .expect("job")
            .status
            .is_terminal()
    });
    fx.gate.job_for(account, request_id).expect("job")
}

fn generate(fx: &Fixture, account: &str, body: Value) -> creditgate::Submitted {
    fx.gate.submit(account, &body).expect("submit")
}

#[test]
fn success_after_polls_captures_exactly_the_estimate() {
    let fx = fresh();
    let acct = account(&fx.gate, 100);
    let submitted = generate(
        &fx,
        &acct,
        json!({
            "request_id": "r1", "model": "nano-banana-pro", "prompt": "a lighthouse", "count": 2, "resolution": "4K"
        }),
    );
    let job = &submitted.job;
    assert_eq!(
        (job.status, job.estimate_micros),
        (JobStatus::Pending, 80_000_000)
    );
    assert_eq!(job.price_version, "2026-02-02-v1");
    let b = fx.gate.balance(&acct).expect("balance");
    assert_eq!(
        (b.available, b.pending),
        (20_000_000, 80_000_000),
        "the estimate is held"
    );

    let done = run_to_end(&fx, &acct, "r1");
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(done.charged_micros, Some(80_000_000));
    assert_eq!(done.outputs.len(), 2, "count 2 gives two images");
    assert!(done.outputs.iter().all(|o| o.mime == "image/png"));
    assert!(done.outputs[0].url.contains(&done.output_token));
    assert!(done.seed.is_some());
    assert_eq!(
        done.provider_task_id.as_deref(),
        Some(format!("fx_{}", done.id).as_str())
    );
    let b = fx.gate.balance(&acct).expect("balance");
    assert_eq!(
        (b.available, b.pending, b.posted),
        (20_000_000, 0, 20_000_000)
    );
    let capture = fx
        .gate
        .transfer(&format!("capture:{}", done.id))
        .expect("capture");
    assert_eq!(capture.amount, 80_000_000);
    assert_verified(&fx.gate);
}

#[test]
fn every_scenario_path_ends_with_the_right_ledger_effect() {
    let fx = fresh();
    let acct = account(&fx.gate, 10_000);
    // (prompt marker, model, expected status, expected error code)
    let cases = [
        ("a cat", "google/nano-banana", JobStatus::Succeeded, None),
        (
            "[fail] a cat",
            "google/nano-banana",
            JobStatus::Failed,
            Some("generation_failed"),
        ),
        (
            "[reject] a cat",
            "google/nano-banana",
            JobStatus::Failed,
            Some("invalid_input"),
        ),
        (
            "[transient] a cat",
            "google/nano-banana",
            JobStatus::Succeeded,
            None,
        ),
        (
            "[flaky] a cat",
            "google/nano-banana",
            JobStatus::Succeeded,
            None,
        ),
        (
            "[slow] a cat",
            "google/nano-banana",
            JobStatus::Succeeded,
            None,
        ),
        ("a wave", "veo3", JobStatus::Succeeded, None),
        ("a song", "V5", JobStatus::Succeeded, None),
        (
            "[hang] a cat",
            "google/nano-banana",
            JobStatus::Expired,
            Some("expired"),
        ),
    ];
    for (i, (prompt, model, status, code)) in cases.iter().enumerate() {
        let before = fx.gate.balance(&acct).expect("balance");
        let request_id = format!("case-{i}");
        let submitted = generate(
            &fx,
            &acct,
            json!({"request_id": request_id, "model": model, "prompt": prompt}),
        );
        let estimate = submitted.job.estimate_micros;
        let job = run_to_end(&fx, &acct, &request_id);
        assert_eq!(job.status, *status, "{prompt} on {model}: {job:?}");
        assert_eq!(job.error_code.as_deref(), *code, "{prompt}");
        let after = fx.gate.balance(&acct).expect("balance");
        let charged = if *status == JobStatus::Succeeded {
            estimate
        } else {
            0
        };
        assert_eq!(
            after.posted,
            before.posted - charged,
            "{prompt}: charged exactly once"
        );
        assert_eq!(after.pending, 0, "{prompt}: no hold left open");
        assert_verified(&fx.gate);
    }
}

#[test]
fn outputs_match_the_product() {
    let fx = fresh();
    let acct = account(&fx.gate, 10_000);
    for (model, mime) in [
        ("veo3", "video/mp4"),
        ("V4", "audio/wav"),
        ("gpt-4o-mini", "text/plain; charset=utf-8"),
    ] {
        generate(
            &fx,
            &acct,
            json!({"request_id": model, "model": model, "prompt": "x"}),
        );
        let job = run_to_end(&fx, &acct, model);
        assert_eq!(job.outputs.len(), 1);
        assert_eq!(job.outputs[0].mime, mime, "{model}");
    }
    assert_verified(&fx.gate);
}

#[test]
fn thirty_two_identical_submits_make_one_job_and_one_hold() {
    let fx = fresh();
    let acct = account(&fx.gate, 100);
    let gate = Arc::new(fx.gate);
    let submitter = acct.clone();
    let answers = race(&gate, 32, move |gate, _| {
        gate.submit(
            &submitter,
            &json!({"request_id": "same", "model": "veo3_fast", "prompt": "waves"}),
        )
        .expect("submit")
    });
    assert_eq!(answers.iter().filter(|a| !a.replayed).count(), 1);
    assert!(
        answers.windows(2).all(|w| w[0].job == w[1].job),
        "32 identical answers"
    );
    let b = gate.balance(&acct).expect("balance");
    assert_eq!(
        (b.available, b.pending),
        (50_000_000, 50_000_000),
        "one hold of 50"
    );
    assert_eq!(
        gate.jobs(&creditgate::JobFilter {
            limit: 100,
            ..Default::default()
        })
        .expect("list")
        .len(),
        1
    );
    assert_verified(&gate);
}

#[test]
fn a_reused_request_id_with_another_request_is_a_conflict_and_charges_nothing() {
    let fx = fresh();
    let acct = account(&fx.gate, 100);
    generate(
        &fx,
        &acct,
        json!({"request_id": "r", "model": "z-image", "prompt": "a"}),
    );
    let before = fx.gate.balance(&acct).expect("balance");
    let err = fx
        .gate
        .submit(
            &acct,
            &json!({"request_id": "r", "model": "z-image", "prompt": "b"}),
        )
        .expect_err("conflict");
    assert_eq!(err.code(), "idempotency_conflict");
    assert_eq!(fx.gate.balance(&acct).expect("balance"), before);
    // The same request in another spelling (shortcuts) is the same request.
    let again = fx
        .gate
        .submit(
            &acct,
            &json!({"request_id": "r", "model": "z-image", "prompt": "a", "units": {}}),
        )
        .expect("replay");
    assert!(again.replayed);
    // Request ids are scoped to the account.
    let other = account(&fx.gate, 100);
    assert!(
        !generate(
            &fx,
            &other,
            json!({"request_id": "r", "model": "z-image", "prompt": "b"})
        )
        .replayed
    );
    assert_verified(&fx.gate);
}

#[test]
fn a_wallet_for_n_jobs_admits_exactly_n_of_4n_concurrent_submits() {
    const N: usize = 6;
    let fx = fresh();
    // veo3_fast costs 50: a wallet of 300 holds exactly six.
    let acct = account(&fx.gate, 50 * N as i64);
    let gate = Arc::new(fx.gate);
    let submitter = acct.clone();
    let results = race(&gate, 4 * N, move |gate, i| {
        gate.submit(
            &submitter,
            &json!({"request_id": format!("r{i}"), "model": "veo3_fast", "prompt": "x"}),
        )
    });
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!((accepted, refused.len()), (N, 3 * N));
    for err in refused {
        match err {
            Error::InsufficientCredits {
                required_micros,
                available_micros,
                suggestion,
            } => {
                assert_eq!((*required_micros, *available_micros), (50_000_000, 0));
                assert!(suggestion.as_deref().is_some_and(|s| s.contains("top up")));
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(gate.balance(&acct).expect("balance").available, 0);
    assert_verified(&gate);
}

#[test]
fn a_refused_submit_records_nothing_and_may_be_retried_after_a_top_up() {
    let fx = fresh();
    let acct = account(&fx.gate, 30);
    let body = json!({"request_id": "big", "model": "veo3", "prompt": "sunrise"});
    let err = fx.gate.submit(&acct, &body).expect_err("too expensive");
    match &err {
        Error::InsufficientCredits { suggestion, .. } => {
            let suggestion = suggestion.as_deref().expect("a suggestion");
            // The most expensive video that fits 30 credits is sora-2 or
            // xai at 10, or wan-2.6 at 20.
            assert!(suggestion.contains("wan-2.6"), "{suggestion}");
        }
        other => panic!("{other}"),
    }
    assert!(fx.gate.job_for(&acct, "big").is_err(), "nothing recorded");
    fx.gate
        .grant("topup", &acct, Decimal::from(300), "")
        .expect("top up");
    let submitted = fx
        .gate
        .submit(&acct, &body)
        .expect("the same request_id now works");
    assert!(!submitted.replayed);
    assert_verified(&fx.gate);
}

#[test]
fn a_job_is_charged_the_price_of_the_version_it_was_held_under() {
    let fx = fresh();
    let acct = account(&fx.gate, 1_000);
    generate(
        &fx,
        &acct,
        json!({"request_id": "pinned", "model": "veo3", "prompt": "x"}),
    );
    let v2 = RYNJER
        .replacen("\"base_price\": 280", "\"base_price\": 290", 1)
        .replacen("2026-02-02-v1", "2026-03-01-v2", 1);
    fx.gate.import_catalog(&v2).expect("v2");
    fx.gate
        .activate_price_version("2026-03-01-v2")
        .expect("activate");
    let job = run_to_end(&fx, &acct, "pinned");
    assert_eq!(
        (job.status, job.charged_micros),
        (JobStatus::Succeeded, Some(280_000_000))
    );
    assert_eq!(job.price_version, "2026-02-02-v1");
    generate(
        &fx,
        &acct,
        json!({"request_id": "new", "model": "veo3", "prompt": "x"}),
    );
    assert_eq!(
        fx.gate.job_for(&acct, "new").expect("job").estimate_micros,
        290_000_000
    );
    // An agent may still pin the old version explicitly.
    let old = generate(
        &fx,
        &acct,
        json!({"request_id": "old", "model": "veo3", "prompt": "x", "price_version": "2026-02-02-v1"}),
    );
    assert_eq!(old.job.estimate_micros, 280_000_000);
    assert_verified(&fx.gate);
}

#[test]
fn cancel_releases_the_hold_and_only_the_owner_can_cancel() {
    let fx = fresh();
    let acct = account(&fx.gate, 100);
    let stranger = account(&fx.gate, 100);
    generate(
        &fx,
        &acct,
        json!({"request_id": "p", "model": "z-image", "prompt": "x"}),
    );
    generate(
        &fx,
        &acct,
        json!({"request_id": "r", "model": "z-image", "prompt": "[slow] x"}),
    );
    fx.gate.run_due_work(64).expect("step");
    assert_eq!(
        fx.gate.job_for(&acct, "r").expect("job").status,
        JobStatus::Running
    );
    // Canceling the pending one too: both release.
    assert_eq!(
        fx.gate
            .cancel(&stranger, "r")
            .expect_err("not yours")
            .code(),
        "not_found"
    );
    assert_eq!(
        fx.gate
            .job_for(&stranger, "r")
            .expect_err("not yours")
            .code(),
        "not_found"
    );
    let canceled = fx.gate.cancel(&acct, "r").expect("cancel running");
    assert_eq!(canceled.status, JobStatus::Canceled);
    generate(
        &fx,
        &acct,
        json!({"request_id": "q", "model": "z-image", "prompt": "[hang] x"}),
    );
    let q = fx.gate.cancel(&acct, "q").expect("cancel pending");
    assert_eq!(q.status, JobStatus::Canceled);

    let done = run_to_end(&fx, &acct, "p");
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(
        fx.gate.cancel(&acct, "p").expect_err("finished").code(),
        "invalid_transition"
    );
    // Further worker steps never revive a canceled job.
    drive(&fx, |_| true);
    assert_eq!(
        fx.gate.job_for(&acct, "r").expect("job").status,
        JobStatus::Canceled
    );
    assert_eq!(
        available(&fx.gate, &acct),
        80_000_000,
        "only the succeeded job was charged"
    );
    assert_verified(&fx.gate);
}

#[test]
fn a_restart_resumes_every_live_job() {
    let fx = fresh();
    let acct = account(&fx.gate, 1_000);
    for i in 0..5 {
        generate(
            &fx,
            &acct,
            json!({"request_id": format!("j{i}"), "model": "veo3_fast", "prompt": "x"}),
        );
    }
    fx.gate.run_due_work(2).expect("step: two submitted");
    // Simulate a worker that died holding a lease: lease everything far out.
    {
        let conn = fx.raw();
        conn.execute("UPDATE jobs SET lease_until = ?1", [START + 3_600_000])
            .expect("lease");
    }
    let fx = fx.reopen();
    assert_eq!(fx.gate.recover().expect("recover"), 5);
    drive(&fx, |g| {
        (0..5).all(|i| {
            g.job_for(&acct, &format!("j{i}"))
                .expect("job")
                .status
                .is_terminal()
        })
    });
    for i in 0..5 {
        let job = fx.gate.job_for(&acct, &format!("j{i}")).expect("job");
        assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
        assert_eq!(job.submit_attempts, 1, "no job was submitted twice");
    }
    assert_eq!(fx.gate.balance(&acct).expect("balance").posted, 750_000_000);
    assert_verified(&fx.gate);
}

#[test]
fn a_free_model_runs_without_a_hold() {
    let fx = fresh();
    fx.gate.import_catalog(KIWIWHALE).expect("kiwi");
    let listing = fx.gate.models(Some("kiwiwhale-2026-01")).expect("listing");
    let free = listing
        .models
        .iter()
        .find(|m| m.base_price.is_zero())
        .expect("KiwiWhale lists a free model");
    let acct = account(&fx.gate, 0);
    let body = json!({"request_id": "free", "model": free.model, "prompt": "x", "price_version": "kiwiwhale-2026-01"});
    let submitted = generate(&fx, &acct, body);
    assert_eq!(
        (submitted.job.estimate_micros, submitted.job.hold_id.clone()),
        (0, None)
    );
    let job = run_to_end(&fx, &acct, "free");
    assert_eq!(
        (job.status, job.charged_micros),
        (JobStatus::Succeeded, Some(0))
    );
    assert_verified(&fx.gate);
}

#[test]
fn bad_submits_are_refused_with_the_field() {
    let fx = fresh();
    let acct = account(&fx.gate, 100);
    let check = |body: Value, code: &str| {
        let err = fx.gate.submit(&acct, &body).expect_err("refused");
        assert_eq!(err.code(), code, "{body}: {err}");
    };
    check(
        json!({"model": "z-image", "prompt": "x"}),
        "invalid_request",
    );
    check(
        json!({"request_id": "a", "model": "z-image"}),
        "invalid_request",
    );
    check(
        json!({"request_id": "a", "model": "nope", "prompt": "x"}),
        "unknown_model",
    );
    check(
        json!({"request_id": "a", "model": "nano-banana-pro", "prompt": "x", "count": 3}),
        "invalid_option",
    );
    check(
        json!({"request_id": "a", "model": "veo3", "prompt": "x", "price_version": "old"}),
        "unknown_price_version",
    );
    check(
        json!({"request_id": "a", "model": "veo3", "product": "image", "prompt": "x"}),
        "invalid_request",
    );
    assert_eq!(
        fx.gate
            .submit(
                "acct_missing",
                &json!({"request_id": "a", "model": "z-image", "prompt": "x"})
            )
            .expect_err("no account")
            .code(),
        "not_found"
    );
    assert_eq!(available(&fx.gate, &acct), 100_000_000);
    assert_verified(&fx.gate);
}

#[test]
fn verify_names_a_job_charged_without_success() {
    let fx = fresh();
    let acct = account(&fx.gate, 100);
    generate(
        &fx,
        &acct,
        json!({"request_id": "t", "model": "z-image", "prompt": "x"}),
    );
    let job = run_to_end(&fx, &acct, "t");
    assert_eq!(job.status, JobStatus::Succeeded);
    let conn = fx.raw();
    conn.execute(
        "UPDATE jobs SET status = 'failed', charged_micros = NULL, error_code = 'x' WHERE id = ?1",
        [&job.id],
    )
    .expect("tamper");
    let report = fx.gate.verify_ledger().expect("verify");
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.check == "unsuccessful_job_not_charged" && v.detail.contains(&job.id)),
        "{:?}",
        report.violations
    );
}

/// The fixture provider, claiming its submissions are not idempotent.
#[derive(Debug)]
struct NotIdempotent(creditgate::providers::fixture::FixtureProvider);

impl creditgate::providers::Provider for NotIdempotent {
    fn submit(
        &self,
        job: &creditgate::providers::ProviderJob<'_>,
    ) -> Result<creditgate::providers::Submission, creditgate::providers::ProviderError> {
        self.0.submit(job)
    }
    fn poll(
        &self,
        job: &creditgate::providers::ProviderJob<'_>,
    ) -> Result<creditgate::providers::PollStatus, creditgate::providers::ProviderError> {
        self.0.poll(job)
    }
    fn cancel(
        &self,
        job: &creditgate::providers::ProviderJob<'_>,
    ) -> Result<(), creditgate::providers::ProviderError> {
        self.0.cancel(job)
    }
    fn idempotent_submit(&self) -> bool {
        false
    }
}

#[test]
fn an_uncertain_submission_is_resubmitted_only_to_an_idempotent_provider() {
    use creditgate::providers::{fixture, ProviderRegistry};
    for idempotent in [true, false] {
        let fx = fresh();
        let acct = account(&fx.gate, 100);
        generate(
            &fx,
            &acct,
            json!({"request_id": "u", "model": "z-image", "prompt": "x"}),
        );
        // A worker claimed the job and may have submitted it, then died.
        {
            let conn = fx.raw();
            conn.execute(
                "UPDATE jobs SET submit_attempts = 1, submit_started_at = ?1, lease_until = ?2",
                [START, START + 3_600_000],
            )
            .expect("simulate the crash");
        }
        let mut fx = fx.reopen();
        if !idempotent {
            let mut registry = ProviderRegistry::new();
            registry.insert(
                "fixture",
                Arc::new(NotIdempotent(fixture::FixtureProvider::new(
                    fixture::Scenarios::shipped(),
                ))),
            );
            fx.gate = fx.gate.with_providers(registry);
        }
        fx.gate.recover().expect("recover");
        let job = run_to_end(&fx, &acct, "u");
        if idempotent {
            assert_eq!(job.status, JobStatus::Succeeded);
            assert_eq!(
                job.provider_task_id,
                Some(format!("fx_{}", job.id)),
                "the same task"
            );
            assert_eq!(available(&fx.gate, &acct), 80_000_000);
        } else {
            assert_eq!(job.status, JobStatus::Failed);
            assert_eq!(job.error_code.as_deref(), Some("submission_uncertain"));
            assert_eq!(
                available(&fx.gate, &acct),
                100_000_000,
                "released, never charged"
            );
        }
        assert_verified(&fx.gate);
    }
}

/// A fixture provider that, while submitting a job whose prompt says
/// `[cancel-during-submit]`, has its owner cancel that job: the answer then
/// arrives for a job that changed meanwhile.
#[derive(Debug)]
struct CancelsDuringSubmit {
    inner: creditgate::providers::fixture::FixtureProvider,
    gate: Arc<std::sync::OnceLock<std::sync::Weak<Gate>>>,
    account: Arc<std::sync::OnceLock<String>>,
}

impl creditgate::providers::Provider for CancelsDuringSubmit {
    fn submit(
        &self,
        job: &creditgate::providers::ProviderJob<'_>,
    ) -> Result<creditgate::providers::Submission, creditgate::providers::ProviderError> {
        if job
            .prompt
            .is_some_and(|p| p.contains("[cancel-during-submit]"))
        {
            let gate = self
                .gate
                .get()
                .and_then(std::sync::Weak::upgrade)
                .expect("gate");
            gate.cancel(self.account.get().expect("account"), job.job_id)
                .expect("cancel");
        }
        self.inner.submit(job)
    }
    fn poll(
        &self,
        job: &creditgate::providers::ProviderJob<'_>,
    ) -> Result<creditgate::providers::PollStatus, creditgate::providers::ProviderError> {
        self.inner.poll(job)
    }
    fn cancel(
        &self,
        job: &creditgate::providers::ProviderJob<'_>,
    ) -> Result<(), creditgate::providers::ProviderError> {
        self.inner.cancel(job)
    }
    fn idempotent_submit(&self) -> bool {
        true
    }
}

#[test]
fn an_answer_for_a_job_canceled_meanwhile_is_dropped_and_the_others_recorded() {
    use creditgate::providers::{fixture, ProviderRegistry};
    let fx = fresh();
    let slot = Arc::new(std::sync::OnceLock::new());
    let account_slot = Arc::new(std::sync::OnceLock::new());
    let mut registry = ProviderRegistry::new();
    registry.insert(
        "fixture",
        Arc::new(CancelsDuringSubmit {
            inner: fixture::FixtureProvider::new(fixture::Scenarios::shipped()),
            gate: slot.clone(),
            account: account_slot.clone(),
        }),
    );
    let gate = Arc::new(fx.gate.with_providers(registry));
    slot.set(Arc::downgrade(&gate)).expect("set once");
    let acct = account(&gate, 100);
    account_slot.set(acct.clone()).expect("set once");
    for (id, prompt) in [("a", "x"), ("b", "[cancel-during-submit] x"), ("c", "x")] {
        gate.submit(
            &acct,
            &json!({"request_id": id, "model": "z-image", "prompt": prompt}),
        )
        .expect("submit");
    }
    let report = gate.run_due_work(64).expect("step");
    assert_eq!((report.submitted, report.superseded), (3, 1), "{report:?}");
    let status = |id: &str| gate.job_for(&acct, id).expect("job").status;
    assert_eq!(
        (status("a"), status("b"), status("c")),
        (JobStatus::Running, JobStatus::Canceled, JobStatus::Running)
    );
    let b = gate.balance(&acct).expect("balance");
    assert_eq!(
        (b.available, b.pending),
        (60_000_000, 40_000_000),
        "b's hold was released"
    );
    assert_verified(&gate);
}
