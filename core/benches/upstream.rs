//! Slow-upstream benchmark (issue 13), run with
//! `cargo bench -p creditgate --features http --bench upstream`.
//!
//! In one run, on loopback only:
//! - **baseline**: [`CONCURRENCY`] client threads call a stand-in
//!   OpenAI-compatible server whose every image generation takes
//!   [`UPSTREAM_DELAY`], [`JOBS`] calls in all: the best any gateway could
//!   do against that upstream at that concurrency;
//! - **creditgate**: [`JOBS`] jobs submitted to a gate whose model is routed
//!   to the same stand-in through the OpenAI adapter (instance concurrency
//!   [`CONCURRENCY`]), run by [`WORKERS`] worker threads until every job
//!   settles, outputs downloaded into a media store;
//! - meanwhile a probe makes a small durable write (a grant) every
//!   [`PROBE_EVERY`] and times it: a worker holding the write transaction
//!   across an upstream call would make a probe wait the whole call.
//!
//! It prints both elapsed times and their ratio, how many jobs succeeded,
//! the probe's p50/p99/max write latency and the max as a fraction of the
//! upstream delay. Targets (not asserted): every job settles and succeeds,
//! ratio <= 1.5, probe max < 0.25 of the upstream delay.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use creditgate::media::{FileMediaStore, MediaSettings};
use creditgate::providers::config::ProvidersFile;
use creditgate::providers::fixture::Scenarios;
use creditgate::providers::registry;
use creditgate::{Gate, GateSettings, NewAccount, StoreOptions, SystemClock};
use creditgate_standins::{Reply, StandIn};
use rust_decimal::Decimal;
use serde_json::json;

/// Jobs in the run.
const JOBS: usize = 1_000;
/// Calls in flight at once: the instance's concurrency, and the baseline's
/// client threads.
const CONCURRENCY: usize = 50;
/// How long the stand-in takes per generation.
const UPSTREAM_DELAY: Duration = Duration::from_secs(2);
/// Worker threads stepping the gate.
const WORKERS: usize = 4;
/// Jobs one worker step takes, at most.
const STEP_JOBS: usize = 32;
/// How often the probe writes.
const PROBE_EVERY: Duration = Duration::from_millis(50);
/// The run gives up after this long.
const RUN_MAX: Duration = Duration::from_secs(600);

const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0xF8, 0xCF, 0xC0, 0xF0,
    0x1F, 0x00, 0x05, 0x00, 0x01, 0xFF, 0x89, 0x99, 0x3D, 0x1D, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

fn slow_upstream() -> StandIn {
    // One thread more than the calls in flight, so the stand-in itself
    // never queues.
    StandIn::start(CONCURRENCY + 8, |seen| {
        if seen.url.starts_with("/files/") {
            return Reply::bytes(200, "image/png", PNG.to_vec());
        }
        let host = seen.header("host").unwrap_or("127.0.0.1").to_owned();
        Reply::json(
            200,
            &json!({"created": 1, "data": [{"url": format!("http://{host}/files/out.png")}]}),
        )
        .after(UPSTREAM_DELAY)
    })
}

fn baseline(upstream: &StandIn) -> Duration {
    let url = format!("{}/v1/images/generations", upstream.base_url());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (url, next) = (url.clone(), next.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .into();
                while next.fetch_add(1, Ordering::SeqCst) < JOBS {
                    let _ = agent
                        .post(&url)
                        .header("Content-Type", "application/json")
                        .send(json!({"model": "dall-e-3", "prompt": "a cat"}).to_string());
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("client");
    }
    started.elapsed()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn main() {
    let upstream = slow_upstream();
    println!(
        "upstream: {JOBS} generations of {} ms each, {CONCURRENCY} at once",
        UPSTREAM_DELAY.as_millis()
    );
    let base = baseline(&upstream);
    println!("baseline (direct calls): {:.1} s", base.as_secs_f64());

    let dir = tempfile::tempdir().expect("tempdir");
    let providers = ProvidersFile::parse(
        &json!({"providers": {"slow": {
            "kind": "openai",
            "base_url": format!("{}/v1", upstream.base_url()),
            "timeout_ms": 10_000,
            "concurrency": CONCURRENCY,
        }}})
        .to_string(),
    )
    .expect("providers file");
    let registry = registry::build(&providers, dir.path(), &|_| None, &Scenarios::shipped())
        .expect("registry");
    let settings = GateSettings {
        poll_interval_ms_min: 100,
        poll_interval_ms_max: 1_000,
        submit_backoff_ms_max: 2_000,
        ..GateSettings::default()
    };
    let media =
        FileMediaStore::open(MediaSettings::new(dir.path().join("media"))).expect("media store");
    let gate = Gate::open(
        &StoreOptions::new(dir.path().join("bench.db")),
        Arc::new(SystemClock),
    )
    .expect("open")
    .with_providers(registry)
    .with_settings(settings)
    .with_media_store(Arc::new(media), 24 * 3600 * 1000)
    .expect("media");
    let mut catalog: serde_json::Value =
        serde_json::from_str(include_str!("../../fixtures/catalogs/rynjer.json")).expect("catalog");
    catalog["price_version"] = json!("bench-upstream");
    for model in catalog["models"].as_array_mut().expect("models") {
        if model["model"] == "z-image" {
            model["provider"] = json!("slow");
            model["upstream_model"] = json!("dall-e-3");
        }
    }
    let imported = gate.import_catalog(&catalog.to_string()).expect("import");
    gate.activate_price_version(&imported.version)
        .expect("activate");
    let account = gate
        .create_account(&NewAccount::named("bench"))
        .expect("account")
        .id;
    gate.grant("seed", &account, Decimal::from(1_000_000), "")
        .expect("grant");
    let probe_account = gate
        .create_account(&NewAccount::named("probe"))
        .expect("account")
        .id;
    for i in 0..JOBS {
        let body = json!({"request_id": format!("r{i}"), "model": "z-image", "prompt": "a cat"});
        gate.submit(&account, &body).expect("submit");
    }

    let gate = Arc::new(gate);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (gate, stop) = (gate.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match gate.run_due_work(STEP_JOBS) {
                        Ok(report) if report.submitted + report.polled > 0 => {}
                        _ => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        })
        .collect();
    let probe = {
        let (gate, stop) = (gate.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut latencies = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let at = Instant::now();
                gate.grant(&format!("probe-{n}"), &probe_account, Decimal::ONE, "probe")
                    .expect("probe write");
                latencies.push(at.elapsed());
                std::thread::sleep(PROBE_EVERY);
            }
            latencies
        })
    };
    let settled = loop {
        let live = gate
            .jobs(&creditgate::JobFilter {
                account_id: Some(account.clone()),
                status: Some(creditgate::JobStatus::Pending),
                limit: 1,
                ..creditgate::JobFilter::default()
            })
            .expect("list")
            .len()
            + gate
                .jobs(&creditgate::JobFilter {
                    account_id: Some(account.clone()),
                    status: Some(creditgate::JobStatus::Running),
                    limit: 1,
                    ..creditgate::JobFilter::default()
                })
                .expect("list")
                .len();
        if live == 0 {
            break true;
        }
        if started.elapsed() > RUN_MAX {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let elapsed = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.join().expect("worker");
    }
    let mut latencies = probe.join().expect("probe");
    latencies.sort();
    let unsuccessful: usize = [
        creditgate::JobStatus::Failed,
        creditgate::JobStatus::Expired,
        creditgate::JobStatus::Canceled,
    ]
    .into_iter()
    .map(|status| {
        gate.jobs(&creditgate::JobFilter {
            account_id: Some(account.clone()),
            status: Some(status),
            limit: creditgate::jobs::JOBS_LIST_MAX,
            ..creditgate::JobFilter::default()
        })
        .expect("list")
        .len()
    })
    .sum();
    let charged = gate.balance(&account).expect("balance");
    let report = gate.verify_ledger().expect("verify");

    println!(
        "creditgate: {} in {:.1} s; {} did not succeed; {} credits still held; ledger verify: {}",
        if settled {
            "every job settled"
        } else {
            "NOT ALL JOBS SETTLED"
        },
        elapsed.as_secs_f64(),
        unsuccessful,
        creditgate::money::to_credits(charged.pending),
        if report.is_ok() { "ok" } else { "VIOLATIONS" },
    );
    println!(
        "ratio creditgate / baseline: {:.2}x",
        elapsed.as_secs_f64() / base.as_secs_f64()
    );
    let max = latencies.last().copied().unwrap_or_default();
    println!(
        "probe writes during the run: {} ; p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms = {:.3} of one upstream call",
        latencies.len(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        max.as_secs_f64() / UPSTREAM_DELAY.as_secs_f64()
    );
}
