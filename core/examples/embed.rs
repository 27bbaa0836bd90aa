//! Embedding creditgate: the whole flow through the one facade, offline,
//! with a manual clock. `cargo run -p creditgate --example embed`; the test
//! suite runs it too (`test = true` in core/Cargo.toml).

use std::{sync::Arc, time::Duration};

use creditgate::{Gate, JobStatus, ManualClock, NewAccount, StoreOptions};
use rust_decimal::Decimal;
use serde_json::json;

fn main() -> Result<(), creditgate::Error> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let clock = Arc::new(ManualClock::new(1_790_000_000_000));
    let gate = Gate::open(
        &StoreOptions::new(dir.path().join("embed.db")),
        clock.clone(),
    )?;
    gate.import_catalog(include_str!("../../fixtures/catalogs/rynjer.json"))?;

    let account = gate.create_account(&NewAccount::named("my agent"))?;
    gate.grant(
        "welcome",
        &account.id,
        Decimal::from(100),
        "starter credits",
    )?;
    let body =
        json!({"request_id": "hello-1", "model": "nano-banana-pro", "prompt": "a lighthouse"});
    let submitted = gate.submit(&account.id, &body)?;
    println!(
        "submitted {} holding {} micro-credits",
        submitted.job.id, submitted.job.estimate_micros
    );

    // Drive the worker: the fixture provider answers after a poll or two.
    let mut job = submitted.job;
    for _ in 0..60 {
        gate.run_due_work(16)?;
        job = gate.job_for(&account.id, "hello-1")?;
        if job.status.is_terminal() {
            break;
        }
        clock.advance(Duration::from_secs(1));
    }
    assert_eq!(job.status, JobStatus::Succeeded);
    println!(
        "{} -> {} ({})",
        job.id, job.outputs[0].url, job.outputs[0].mime
    );
    let balance = gate.balance(&account.id)?;
    println!(
        "charged {:?} micro-credits; available {}",
        job.charged_micros, balance.available
    );
    assert_eq!(balance.available, 80_000_000);
    assert!(gate.verify_ledger()?.is_ok());
    Ok(())
}

#[test]
fn the_example_runs() {
    main().expect("the embedding example runs end to end");
}
