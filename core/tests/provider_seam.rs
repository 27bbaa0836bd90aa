//! The provider seam of issue 13: a failed call says which of three it was
//! and the worker acts on it (not sent: retried as a first submission,
//! honouring `Retry-After`; outcome unknown: reconciled or failed as
//! `submission_uncertain`; permanent: failed), calls run concurrently up to
//! each provider's limit, the lease covers the slowest call, an agent's
//! cancel never calls the upstream on its own thread, and outputs are kept
//! (or, without a media store, recorded as they are). `ledger verify`
//! passes after each.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use common::RYNJER;
use creditgate::media::{KeepError, KeptFile, MediaStore};
use creditgate::providers::{
    Artifact, Completion, PollStatus, Provider, ProviderError, ProviderJob, ProviderRegistry,
    Reconciled, Submission, Usage, WebhookEvent,
};
use creditgate::{Clock, Gate, JobStatus, ManualClock, Synchronous};
use rust_decimal::Decimal;
use serde_json::json;

/// A non-idempotent provider scripted by prompt markers, counting calls.
#[derive(Debug, Default)]
struct Upstream {
    submits: Mutex<HashMap<String, u32>>,
    reconciles: Mutex<u32>,
    cancels: Mutex<Vec<String>>,
    /// Jobs the upstream has (by our job id), as a reconcile finds them.
    has: Mutex<Vec<String>>,
    concurrency: usize,
    timeout_ms: i64,
    barrier: Option<Arc<Barrier>>,
    cancel_fails: Mutex<u32>,
    /// When set, each submit reads its job's lease from this database.
    db_path: Mutex<Option<std::path::PathBuf>>,
    leases_seen: Mutex<Vec<Option<i64>>>,
}

impl Upstream {
    fn new() -> Upstream {
        Upstream {
            concurrency: 8,
            timeout_ms: 60_000,
            ..Upstream::default()
        }
    }

    fn submits(&self, job_id: &str) -> u32 {
        self.submits
            .lock()
            .expect("lock")
            .get(job_id)
            .copied()
            .unwrap_or(0)
    }
}

impl Provider for Upstream {
    fn submit(&self, job: &ProviderJob<'_>) -> Result<Submission, ProviderError> {
        let n = {
            let mut submits = self.submits.lock().expect("lock");
            let n = submits.entry(job.job_id.to_owned()).or_default();
            *n += 1;
            *n
        };
        if let Some(barrier) = &self.barrier {
            barrier.wait();
        }
        if let Some(path) = self.db_path.lock().expect("lock").as_ref() {
            let conn = rusqlite::Connection::open(path).expect("open");
            let lease: Option<i64> = conn
                .query_row(
                    "SELECT lease_until FROM jobs WHERE id = ?1",
                    [job.job_id],
                    |r| r.get(0),
                )
                .expect("lease");
            self.leases_seen.lock().expect("lock").push(lease);
        }
        let prompt = job.prompt.unwrap_or("");
        if prompt.contains("[dns-once]") && n == 1 {
            return Err(ProviderError::not_sent("the upstream's host was not found"));
        }
        if prompt.contains("[throttled]") && n == 1 {
            return Err(ProviderError::NotSent {
                message: "HTTP 429".into(),
                retry_after_ms: Some(20_000),
            });
        }
        if prompt.contains("[lost]") {
            // The upstream took it; the answer was lost on the way back.
            if prompt.contains("[accepted]") {
                self.has.lock().expect("lock").push(job.job_id.to_owned());
            }
            if n == 1 || prompt.contains("[always]") {
                return Err(ProviderError::OutcomeUnknown {
                    message: "the upstream did not answer in time".into(),
                });
            }
        }
        if prompt.contains("[sync-remote]") {
            return Ok(Submission::Completed {
                task_id: format!("up_{}", job.job_id),
                completion: Completion::of(vec![Artifact::Remote {
                    url: "https://cdn.example/out.png".into(),
                    mime: Some("image/png".into()),
                }]),
            });
        }
        if prompt.contains("[usage]") {
            let mut completion = Completion::of(vec![Artifact::Remote {
                url: "https://cdn.example/reply.txt".into(),
                mime: Some("text/plain".into()),
            }]);
            completion.usage = Some(Usage {
                input_tokens: Some(1_000),
                output_tokens: Some(200),
                media_ms: None,
            });
            return Ok(Submission::Completed {
                task_id: format!("up_{}", job.job_id),
                completion,
            });
        }
        if prompt.contains("[sync-inline]") {
            return Ok(Submission::Completed {
                task_id: format!("up_{}", job.job_id),
                completion: Completion::of(vec![Artifact::Inline {
                    bytes: b"\x89PNG\r\n\x1a\n".to_vec(),
                    mime: "image/png".into(),
                }]),
            });
        }
        Ok(Submission::Accepted {
            task_id: format!("up_{}", job.job_id),
            state: Some(json!({ "status_url": format!("https://up/{}", job.job_id) })),
        })
    }

    fn poll(&self, job: &ProviderJob<'_>) -> Result<PollStatus, ProviderError> {
        let prompt = job.prompt.unwrap_or("");
        assert_eq!(
            job.provider_state,
            Some(&json!({ "status_url": format!("https://up/{}", job.job_id) })),
            "the adapter's state comes back"
        );
        if prompt.contains("[aborted]") {
            return Ok(PollStatus::Abandoned {
                message: "the deadline passed before it started".into(),
            });
        }
        if prompt.contains("[hang]") {
            return Ok(PollStatus::Running);
        }
        Ok(PollStatus::Succeeded(Completion::of(vec![
            Artifact::Remote {
                url: "https://cdn.example/out.png".into(),
                mime: Some("image/png".into()),
            },
        ])))
    }

    fn cancel(&self, job: &ProviderJob<'_>) -> Result<(), ProviderError> {
        let mut fails = self.cancel_fails.lock().expect("lock");
        if *fails > 0 {
            *fails -= 1;
            return Err(ProviderError::not_sent("connection refused"));
        }
        self.cancels
            .lock()
            .expect("lock")
            .push(job.provider_task_id.unwrap_or("").to_owned());
        Ok(())
    }

    fn idempotent_submit(&self) -> bool {
        false
    }

    fn reconcile(&self, job: &ProviderJob<'_>) -> Result<Reconciled, ProviderError> {
        *self.reconciles.lock().expect("lock") += 1;
        let prompt = job.prompt.unwrap_or("");
        if prompt.contains("[unaskable]") {
            return Ok(Reconciled::Unsupported);
        }
        if self
            .has
            .lock()
            .expect("lock")
            .iter()
            .any(|id| id == job.job_id)
        {
            return Ok(Reconciled::Found(Submission::Accepted {
                task_id: format!("up_{}", job.job_id),
                state: Some(json!({ "status_url": format!("https://up/{}", job.job_id) })),
            }));
        }
        Ok(Reconciled::Absent)
    }

    fn call_timeout_ms(&self) -> i64 {
        self.timeout_ms
    }

    fn verify_webhook(
        &self,
        headers: &[(String, String)],
        body: &[u8],
        _now_ms: i64,
    ) -> Result<WebhookEvent, String> {
        let signed = headers
            .iter()
            .any(|(name, value)| name == "x-test-signature" && value == "good");
        if !signed {
            return Err("the signature does not verify".into());
        }
        let body: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        Ok(WebhookEvent {
            delivery_id: body["delivery"].as_str().unwrap_or("").to_owned(),
            task_id: body["task"].as_str().unwrap_or("").to_owned(),
        })
    }

    fn concurrency(&self) -> usize {
        self.concurrency
    }
}

struct Fx {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    gate: Gate,
    clock: Arc<ManualClock>,
    account: String,
    upstream: Arc<Upstream>,
}

fn fx_with(upstream: Upstream, media: Option<Arc<dyn MediaStore>>) -> Fx {
    let common::Fixture {
        dir,
        path,
        clock,
        gate,
        ..
    } = common::open(common::Setup {
        synchronous: Synchronous::Normal,
        catalog: Some(RYNJER),
        ..common::Setup::default()
    });
    let upstream = Arc::new(upstream);
    let mut registry = ProviderRegistry::new();
    registry.insert("fixture", upstream.clone());
    let mut gate = gate.with_providers(registry);
    if let Some(media) = media {
        gate = gate
            .with_media_store(media, 24 * 3600 * 1000)
            .expect("a media store");
    }
    let account = common::account(&gate, "agent", Decimal::from(1_000));
    Fx {
        _dir: dir,
        path,
        gate,
        clock,
        account,
        upstream,
    }
}

fn fx() -> Fx {
    fx_with(Upstream::new(), None)
}

impl Fx {
    fn submit(&self, request_id: &str, prompt: &str) -> creditgate::Job {
        self.gate
            .submit(
                &self.account,
                &json!({"request_id": request_id, "model": "z-image", "prompt": prompt}),
            )
            .expect("submit")
            .job
    }

    fn job(&self, job: &creditgate::Job) -> creditgate::Job {
        self.gate.job(&job.id).expect("job")
    }

    fn step_after(&self, ms: u64) -> creditgate::WorkReport {
        self.clock.advance(Duration::from_millis(ms));
        self.gate.run_due_work(64).expect("step")
    }

    fn pending_micros(&self) -> i64 {
        self.gate.balance(&self.account).expect("balance").pending
    }
}

#[test]
fn a_submission_that_never_left_is_sent_again_even_to_a_non_idempotent_upstream() {
    // Before: the first DNS error marked the job "possibly submitted", and
    // the next try failed it as submission_uncertain.
    let fx = fx();
    let job = fx.submit("r", "[dns-once] a cat");
    let report = fx.step_after(0);
    assert_eq!(report.retried, 1, "{report:?}");
    let after = fx.job(&job);
    assert_eq!(after.status, JobStatus::Pending);
    assert_eq!(after.submit_started_at, None, "certainly not submitted");
    fx.step_after(60_000);
    let after = fx.job(&job);
    assert_eq!(
        after.status,
        JobStatus::Running,
        "{:?}",
        after.error_message
    );
    assert_eq!(fx.upstream.submits(&job.id), 2);
    assert_eq!(*fx.upstream.reconciles.lock().expect("lock"), 0);
    common::assert_verified(&fx.gate);
}

#[test]
fn retry_after_is_honoured_over_a_shorter_backoff() {
    let fx = fx();
    let job = fx.submit("r", "[throttled] a cat");
    let before = fx.clock.now();
    fx.step_after(0);
    let after = fx.job(&job);
    assert_eq!(after.status, JobStatus::Pending);
    assert_eq!(
        after.next_run_at,
        before + 20_000,
        "the upstream asked for 20 s"
    );
    fx.step_after(19_000);
    assert_eq!(fx.upstream.submits(&job.id), 1, "not before the hint");
    fx.step_after(1_000);
    assert_eq!(fx.job(&job).status, JobStatus::Running);
}

#[test]
fn a_lost_answer_is_reconciled_found_absent_or_failed_as_uncertain() {
    let fx = fx();
    // The upstream has it: the job runs on the found task, submitted once.
    let found = fx.submit("found", "[lost] [accepted] [always] [hang] a cat");
    // The upstream does not have it: submitted again, as a first submission.
    let absent = fx.submit("absent", "[lost] [hang] a cat");
    // The upstream cannot be asked: failed, hold released.
    let unaskable = fx.submit("unaskable", "[lost] [unaskable] a cat");
    fx.step_after(0);
    let f = fx.job(&found);
    assert_eq!(f.status, JobStatus::Running);
    assert_eq!(f.provider_task_id, Some(format!("up_{}", found.id)));
    assert_eq!(fx.upstream.submits(&found.id), 1, "never submitted twice");
    let u = fx.job(&unaskable);
    assert_eq!(u.status, JobStatus::Failed);
    assert_eq!(u.error_code.as_deref(), Some("submission_uncertain"));
    assert_eq!(fx.job(&absent).status, JobStatus::Pending);
    fx.step_after(60_000);
    assert_eq!(fx.job(&absent).status, JobStatus::Running);
    assert_eq!(fx.upstream.submits(&absent.id), 2);
    // Two jobs still hold; the unaskable one was released.
    assert_eq!(fx.pending_micros(), 2 * 20_000_000);
    common::assert_verified(&fx.gate);
}

#[test]
fn after_a_crash_a_possibly_submitted_job_is_reconciled_not_resubmitted() {
    let fx = fx();
    let job = fx.submit("r", "a cat");
    // A worker claimed it and died before recording the answer: the
    // upstream has it.
    let id = job.id.clone();
    fx.gate
        .store_for_tests()
        .write(move |tx| {
            Ok(tx.execute(
                "UPDATE jobs SET submit_attempts = 1, submit_started_at = 1 WHERE id = ?1",
                [&id],
            )?)
        })
        .expect("simulate the crash");
    fx.upstream.has.lock().expect("lock").push(job.id.clone());
    fx.gate.recover().expect("recover");
    fx.step_after(0);
    let after = fx.job(&job);
    assert_eq!(after.status, JobStatus::Running);
    assert_eq!(fx.upstream.submits(&job.id), 0, "asked, not submitted");
    assert_eq!(*fx.upstream.reconciles.lock().expect("lock"), 1);
}

#[test]
fn an_upstream_that_ended_a_job_unrun_fails_it_unbilled() {
    let fx = fx();
    let job = fx.submit("r", "[aborted] a cat");
    fx.step_after(0);
    fx.step_after(2_000);
    let after = fx.job(&job);
    assert_eq!(after.status, JobStatus::Failed);
    assert_eq!(after.error_code.as_deref(), Some("upstream_aborted"));
    assert_eq!(fx.pending_micros(), 0);
    common::assert_verified(&fx.gate);
}

#[test]
fn an_agents_cancel_is_recorded_at_once_and_sent_upstream_by_a_worker() {
    let fx = fx();
    *fx.upstream.cancel_fails.lock().expect("lock") = 1;
    let job = fx.submit("r", "[hang] a cat");
    fx.step_after(0);
    assert_eq!(fx.job(&job).status, JobStatus::Running);
    let canceled = fx.gate.cancel(&fx.account, "r").expect("cancel");
    assert_eq!(canceled.status, JobStatus::Canceled);
    assert_eq!(fx.pending_micros(), 0, "released at once");
    assert!(
        fx.upstream.cancels.lock().expect("lock").is_empty(),
        "nothing sent on the caller's thread"
    );
    // The first send fails (connection refused): tried again later.
    fx.step_after(0);
    assert!(fx.upstream.cancels.lock().expect("lock").is_empty());
    fx.step_after(31_000);
    assert_eq!(
        fx.upstream.cancels.lock().expect("lock").clone(),
        vec![format!("up_{}", job.id)]
    );
    // Sent once: a later step sends nothing more.
    fx.step_after(31_000);
    assert_eq!(fx.upstream.cancels.lock().expect("lock").len(), 1);
    common::assert_verified(&fx.gate);
}

#[test]
fn calls_run_concurrently_up_to_the_providers_limit() {
    // Two submissions meet at a barrier: they can only both return if they
    // run at the same time.
    let upstream = Upstream {
        barrier: Some(Arc::new(Barrier::new(2))),
        concurrency: 2,
        ..Upstream::new()
    };
    let fx = fx_with(upstream, None);
    let jobs: Vec<_> = (0..3)
        .map(|i| fx.submit(&format!("r{i}"), "a cat"))
        .collect();
    let report = fx.step_after(0);
    assert_eq!(report.submitted, 2, "two slots: {report:?}");
    let running = jobs
        .iter()
        .filter(|job| fx.job(job).status == JobStatus::Running)
        .count();
    assert_eq!(running, 2);
    let waiting: Vec<_> = jobs
        .iter()
        .map(|job| fx.job(job))
        .filter(|job| job.status == JobStatus::Pending)
        .collect();
    assert_eq!(waiting.len(), 1);
    assert_eq!(
        waiting[0].submit_attempts, 0,
        "given back, not counted as a try"
    );
    assert_eq!(
        waiting[0].next_run_at,
        fx.clock.now() + creditgate::BUSY_RETRY_MS,
        "looked at again shortly, not after a whole poll interval"
    );
}

#[test]
fn the_fixture_provider_takes_a_whole_step_without_a_slot_limit() {
    // The fixture does no I/O: a step hands it every job it claims.
    let common::Fixture {
        dir: _dir,
        clock,
        gate,
        ..
    } = common::open(common::Setup {
        synchronous: Synchronous::Normal,
        catalog: Some(RYNJER),
        ..common::Setup::default()
    });
    let account = common::account(&gate, "agent", Decimal::from(10_000));
    for i in 0..64 {
        let body = json!({"request_id": format!("r{i}"), "model": "z-image", "prompt": "x"});
        gate.submit(&account, &body).expect("submit");
    }
    clock.advance(Duration::from_millis(1));
    let report = gate.run_due_work(64).expect("step");
    assert_eq!(report.submitted, 64, "{report:?}");
}

#[test]
fn the_lease_outlasts_the_slowest_providers_calls() {
    let upstream = Upstream {
        timeout_ms: 300_000,
        ..Upstream::new()
    };
    let fx = fx_with(upstream, None);
    *fx.upstream.db_path.lock().expect("lock") = Some(fx.path.clone());
    assert!(
        fx.gate.lease_ms() >= 2 * 300_000,
        "a reconcile and a submission fit: {}",
        fx.gate.lease_ms()
    );
    fx.submit("r", "a cat");
    let claimed_at = fx.clock.now();
    fx.step_after(0);
    // Read while the call ran: the job was leased past two slow calls.
    let seen = fx.upstream.leases_seen.lock().expect("lock").clone();
    assert_eq!(seen, vec![Some(claimed_at + fx.gate.lease_ms())]);
}

#[test]
fn without_a_media_store_remote_outputs_are_recorded_as_they_are_and_inline_ones_fail() {
    let fx = fx();
    let remote = fx.submit("remote", "[sync-remote] a cat");
    let inline = fx.submit("inline", "[sync-inline] a cat");
    fx.step_after(0);
    let r = fx.job(&remote);
    assert_eq!(r.status, JobStatus::Succeeded);
    assert_eq!(r.outputs[0].url, "https://cdn.example/out.png");
    assert_eq!(r.provider_task_id, Some(format!("up_{}", remote.id)));
    let i = fx.job(&inline);
    assert_eq!(i.status, JobStatus::Failed);
    assert_eq!(i.error_code.as_deref(), Some("output_not_kept"));
    common::assert_verified(&fx.gate);
}

/// A media store whose downloads fail for now `transient` times, then keep.
#[derive(Debug)]
struct FlakyStore {
    transient: Mutex<u32>,
    kept: Mutex<u32>,
    /// Every kept file at this path (to make one job's record fail).
    fixed_path: Option<String>,
    removed: Mutex<Vec<String>>,
}

impl MediaStore for FlakyStore {
    fn keep(
        &self,
        job_id: &str,
        _product: &str,
        artifacts: &[Artifact],
    ) -> Result<Vec<KeptFile>, KeepError> {
        let mut transient = self.transient.lock().expect("lock");
        if *transient > 0 {
            *transient -= 1;
            return Err(KeepError::Transient {
                message: "the CDN answered 503".into(),
            });
        }
        *self.kept.lock().expect("lock") += 1;
        Ok(artifacts
            .iter()
            .enumerate()
            .map(|(index, artifact)| KeptFile {
                path: self
                    .fixed_path
                    .clone()
                    .unwrap_or_else(|| format!("{job_id}/{index}.png")),
                name: format!("{index}.png"),
                mime: "image/png".into(),
                bytes: 8,
                sha256: [7; 32],
                upstream_url: match artifact {
                    Artifact::Remote { url, .. } => Some(url.clone()),
                    _ => None,
                },
            })
            .collect())
    }

    fn keep_timeout_ms(&self) -> i64 {
        120_000
    }

    fn local_path(&self, _path: &str) -> Option<std::path::PathBuf> {
        None
    }

    fn remove(&self, path: &str) -> std::io::Result<()> {
        self.removed.lock().expect("lock").push(path.to_owned());
        Ok(())
    }
}

#[test]
fn a_download_that_fails_for_now_is_collected_later_without_asking_the_upstream_again() {
    let store = Arc::new(FlakyStore {
        transient: Mutex::new(2),
        kept: Mutex::new(0),
        fixed_path: None,
        removed: Mutex::new(Vec::new()),
    });
    let fx = fx_with(Upstream::new(), Some(store.clone()));
    assert!(
        fx.gate.lease_ms() >= 2 * 60_000 + 120_000,
        "the lease covers keeping"
    );
    let job = fx.submit("r", "[sync-remote] a cat");
    fx.step_after(0);
    let after = fx.job(&job);
    assert_eq!(
        after.status,
        JobStatus::Running,
        "{:?}",
        after.error_message
    );
    assert!(after.pending_outputs.is_some());
    fx.step_after(60_000);
    assert_eq!(fx.job(&job).status, JobStatus::Running);
    fx.step_after(60_000);
    let done = fx.job(&job);
    assert_eq!(
        done.status,
        JobStatus::Succeeded,
        "{:?}",
        done.error_message
    );
    assert_eq!(
        fx.upstream.submits(&job.id),
        1,
        "the upstream was asked once"
    );
    assert!(
        done.outputs[0].url.ends_with("/0/0.png") && done.outputs[0].url.contains("/v1/files/"),
        "{}",
        done.outputs[0].url
    );
    assert_eq!(*store.kept.lock().expect("lock"), 1);
    common::assert_verified(&fx.gate);
}

#[test]
fn a_verified_webhook_makes_its_job_due_once_and_an_unverified_one_changes_nothing() {
    let fx = fx();
    let job = fx.submit("r", "a cat");
    fx.step_after(0);
    let running = fx.job(&job);
    assert_eq!(running.status, JobStatus::Running);
    let task = running.provider_task_id.clone().expect("task");
    let body = json!({"delivery": "d1", "task": task}).to_string();
    let signed = vec![("x-test-signature".to_owned(), "good".to_owned())];
    let forged = vec![("x-test-signature".to_owned(), "forged".to_owned())];

    let err = fx
        .gate
        .provider_webhook("fixture", &forged, body.as_bytes())
        .expect_err("unverified");
    assert_eq!(err.code(), "webhook_unverified");
    assert_eq!(
        fx.job(&job).next_run_at,
        running.next_run_at,
        "nothing changed"
    );
    let missing = fx.gate.provider_webhook("nope", &signed, body.as_bytes());
    assert_eq!(common::code(missing), "not_found");

    // Webhook first: the job is due at once; the next step polls it and
    // records the answer as any poll would.
    let now = fx.clock.now();
    let receipt = fx
        .gate
        .provider_webhook("fixture", &signed, body.as_bytes())
        .expect("verified");
    assert_eq!(receipt.job_id.as_deref(), Some(job.id.as_str()));
    assert!(receipt.applied);
    assert_eq!(fx.job(&job).next_run_at, now);
    let again = fx
        .gate
        .provider_webhook("fixture", &signed, body.as_bytes())
        .expect("a repeat");
    assert!(!again.applied, "a repeated delivery applies nothing");
    let report = fx.step_after(0);
    assert_eq!(report.succeeded, 1, "{report:?}");
    assert_eq!(fx.job(&job).status, JobStatus::Succeeded);

    // A late delivery for a finished job changes nothing.
    let late = json!({"delivery": "d2", "task": task}).to_string();
    let receipt = fx
        .gate
        .provider_webhook("fixture", &signed, late.as_bytes())
        .expect("verified");
    assert!(receipt.applied);
    let done = fx.job(&job);
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(done.charged_micros, Some(20_000_000), "charged once");
    common::assert_verified(&fx.gate);
}

#[test]
fn a_model_priced_by_usage_holds_its_cap_and_charges_what_was_used_once() {
    let fx = fx();
    let mut catalog: serde_json::Value = serde_json::from_str(RYNJER).expect("catalog");
    catalog["price_version"] = json!("usage-v1");
    for model in catalog["models"].as_array_mut().expect("models") {
        if model["model"] == "gpt-4o-mini" {
            model["base_price"] = json!(2);
            model["usage_price"] = json!({"input_per_1k_tokens": 0.5, "output_per_1k_tokens": 1.5});
        }
    }
    let imported = fx
        .gate
        .import_catalog(&catalog.to_string())
        .expect("a usage price imports");
    fx.gate
        .activate_price_version(&imported.version)
        .expect("activate");
    let body = json!({"request_id": "u", "model": "gpt-4o-mini", "prompt": "[usage] hi"});
    let job = fx.gate.submit(&fx.account, &body).expect("submit").job;
    assert_eq!(job.estimate_micros, 2_000_000, "the cap is held");
    fx.step_after(0);
    let done = fx.job(&job);
    assert_eq!(
        done.status,
        JobStatus::Succeeded,
        "{:?}",
        done.error_message
    );
    // 1,000 input tokens at 0.5 and 200 output tokens at 1.5 per 1,000.
    assert_eq!(done.charged_micros, Some(800_000));
    let usage: serde_json::Value =
        serde_json::from_str(done.usage.as_deref().expect("usage shown")).expect("json");
    assert_eq!(usage["input_tokens"], 1_000);
    let balance = fx.gate.balance(&fx.account).expect("balance");
    assert_eq!(balance.pending, 0, "the rest of the hold went back");
    assert_eq!(balance.available, 1_000_000_000 - 800_000);
    common::assert_verified(&fx.gate);

    // A usage price of nothing at all is refused.
    let mut bad = catalog.clone();
    bad["price_version"] = json!("usage-v2");
    for model in bad["models"].as_array_mut().expect("models") {
        if model["model"] == "gpt-4o-mini" {
            model["usage_price"] = json!({});
        }
    }
    let err = fx
        .gate
        .import_catalog(&bad.to_string())
        .expect_err("refused");
    assert!(err.to_string().contains("usage_price"), "{err}");
}

#[test]
fn a_catalog_routed_to_an_unconfigured_provider_is_refused_naming_both() {
    let fx = fx();
    let mut catalog: serde_json::Value = serde_json::from_str(RYNJER).expect("catalog");
    catalog["price_version"] = json!("routed-v1");
    catalog["models"][0]["provider"] = json!("kie");
    let err = fx
        .gate
        .import_catalog(&catalog.to_string())
        .expect_err("kie is not configured");
    assert_eq!(err.code(), "provider_not_configured");
    let model = catalog["models"][0]["model"]
        .as_str()
        .expect("id")
        .to_owned();
    assert!(
        err.to_string().contains(&model) && err.to_string().contains("kie"),
        "{err}"
    );
    assert_eq!(
        fx.gate.price_versions().expect("versions").len(),
        1,
        "nothing stored"
    );
}

#[test]
fn fewer_images_than_were_priced_are_charged_as_delivered() {
    // An upstream that ignores `num_images` and answers one image of four.
    let fx = fx();
    let body = json!({"request_id": "r", "model": "z-image", "prompt": "[sync-remote] a cat",
                      "count": 4});
    let job = fx.gate.submit(&fx.account, &body).expect("submit").job;
    assert_eq!(job.estimate_micros, 80_000_000, "four images held");
    fx.step_after(0);
    let done = fx.job(&job);
    assert_eq!(
        done.status,
        JobStatus::Succeeded,
        "{:?}",
        done.error_message
    );
    assert_eq!(done.outputs.len(), 1);
    assert_eq!(done.charged_micros, Some(20_000_000), "one image charged");
    let balance = fx.gate.balance(&fx.account).expect("balance");
    assert_eq!(balance.pending, 0);
    assert_eq!(balance.available, 1_000_000_000 - 20_000_000);
    common::assert_verified(&fx.gate);
}

#[test]
fn the_files_of_an_answer_left_for_a_later_step_are_not_removed() {
    // Both jobs' files land at one path: the second record fails (the path
    // is unique), so that answer is left for later, remembered with its
    // files, which must stay on disk.
    let store = Arc::new(FlakyStore {
        transient: Mutex::new(0),
        kept: Mutex::new(0),
        fixed_path: Some("shared/0.png".into()),
        removed: Mutex::new(Vec::new()),
    });
    let fx = fx_with(Upstream::new(), Some(store.clone()));
    let a = fx.submit("a", "[sync-remote] a cat");
    let b = fx.submit("b", "[sync-remote] a dog");
    let report = fx.step_after(0);
    assert_eq!(report.succeeded, 1, "{report:?}");
    assert_eq!(report.left, 1, "{report:?}");
    let statuses = [fx.job(&a).status, fx.job(&b).status];
    assert!(statuses.contains(&JobStatus::Succeeded) && statuses.contains(&JobStatus::Pending));
    assert!(
        store.removed.lock().expect("lock").is_empty(),
        "a remembered answer's files stay (and here they are the other job's too)"
    );
    common::assert_verified(&fx.gate);
}
