//! Outgoing webhooks through the gate, with a recording sender: an event
//! is in the outbox exactly when what it reports committed (a refused
//! submit emits nothing, a failed job is reported), `balance.low` fires
//! once per crossing, a refused delivery is retried with backoff on the
//! injected clock and failed after its last attempt, and a removed
//! endpoint receives nothing more.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use creditgate::outbox::{NewEndpoint, WebhookSender, DELIVERY_ATTEMPTS_MAX};
use creditgate::secret::Secret;
use creditgate::Gate;
use rust_decimal::Decimal;
use serde_json::{json, Value};

/// Records each send and answers the status it is told to.
#[derive(Debug)]
struct Recorder {
    sent: Mutex<Vec<Value>>,
    status: Mutex<u16>,
}

impl Recorder {
    fn new(status: u16) -> Recorder {
        Recorder {
            sent: Mutex::new(Vec::new()),
            status: Mutex::new(status),
        }
    }

    fn types(&self) -> Vec<String> {
        self.sent
            .lock()
            .expect("sent")
            .iter()
            .map(|body| body["type"].as_str().unwrap_or("").to_owned())
            .collect()
    }
}

impl WebhookSender for Recorder {
    fn send(&self, _url: &str, headers: &[(String, String)], body: &str) -> Result<u16, String> {
        assert!(headers
            .iter()
            .any(|(k, v)| k == "webhook-signature" && v.starts_with("v1,")));
        self.sent
            .lock()
            .expect("sent")
            .push(serde_json::from_str(body).expect("json"));
        Ok(*self.status.lock().expect("status"))
    }
}

fn gate_with_endpoint(events: &[&str], low_balance: Option<i64>) -> (common::Fixture, Gate) {
    let fx = common::open(common::Setup {
        catalog: Some(common::RYNJER),
        ..common::Setup::default()
    });
    let gate = common::open_gate(&fx.path, fx.clock.clone(), creditgate::Synchronous::Full)
        .with_webhook_signing_key(Secret::new("k".repeat(40)))
        .expect("key");
    gate.add_webhook_endpoint(&NewEndpoint {
        url: "http://receiver.test/hook".into(),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        low_balance_micros: low_balance,
    })
    .expect("endpoint");
    (fx, gate)
}

fn run_to_end(fx: &common::Fixture, gate: &Gate, account: &str, request_id: &str) {
    for _ in 0..30 {
        fx.clock.advance(Duration::from_secs(2));
        gate.run_due_work(16).expect("step");
        if gate
            .job_for(account, request_id)
            .expect("job")
            .status
            .is_terminal()
        {
            return;
        }
    }
    panic!("{request_id} never finished");
}

#[test]
fn events_exist_exactly_when_what_they_report_committed() {
    let (fx, gate) = gate_with_endpoint(&["job.finished", "balance.low"], Some(15_000_000));
    let account = common::account(&gate, "agent", Decimal::from(30));
    let submit = |id: &str, prompt: &str| {
        gate.submit(
            &account,
            &json!({"request_id": id, "model": "z-image", "prompt": prompt}),
        )
    };
    submit("fails", "[fail] a cat").expect("held: 30 -> 10, below 15");
    assert_eq!(
        common::code(submit("refused", "a cat")),
        "insufficient_credits"
    );
    run_to_end(&fx, &gate, &account, "fails");
    let recorder = Recorder::new(200);
    gate.run_due_deliveries(&recorder, 1_000).expect("send");
    let sent = recorder.sent.lock().expect("sent").clone();
    assert_eq!(
        recorder.types(),
        ["balance.low", "job.finished"],
        "{sent:?}"
    );
    assert_eq!(sent[1]["data"]["status"], "failed");
    assert_eq!(sent[1]["data"]["request_id"], "fails");
    // The release took the balance back above 15: the next fall is a new
    // crossing.
    submit("again", "[fail] a cat").expect("held again");
    run_to_end(&fx, &gate, &account, "again");
    gate.run_due_deliveries(&recorder, 1_000).expect("send");
    assert_eq!(
        recorder.types(),
        ["balance.low", "job.finished", "balance.low", "job.finished"]
    );
    assert!(gate
        .webhook_deliveries(Some("pending"))
        .expect("list")
        .is_empty());
    common::assert_verified(&gate);
}

#[test]
fn a_refused_delivery_backs_off_then_fails_and_can_be_replayed() {
    let (fx, gate) = gate_with_endpoint(&["job.finished"], None);
    let account = common::account(&gate, "agent", Decimal::from(100));
    gate.submit(
        &account,
        &json!({"request_id": "r", "model": "z-image", "prompt": "a cat"}),
    )
    .expect("submit");
    run_to_end(&fx, &gate, &account, "r");
    let refusing = Recorder::new(500);
    for attempt in 1..=DELIVERY_ATTEMPTS_MAX {
        assert_eq!(gate.run_due_deliveries(&refusing, 1_000).expect("send"), 1);
        // Not due again before its backoff.
        assert_eq!(gate.run_due_deliveries(&refusing, 1_000).expect("send"), 0);
        let wait = creditgate::outbox::retry_delay_ms(attempt, 1_000);
        fx.clock.advance(Duration::from_millis(wait as u64));
    }
    let failed = gate.webhook_deliveries(Some("failed")).expect("list");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].attempts, DELIVERY_ATTEMPTS_MAX);
    assert_eq!(failed[0].last_status, Some(500));
    gate.replay_webhook_delivery(&failed[0].id).expect("replay");
    let taking = Recorder::new(204);
    assert_eq!(gate.run_due_deliveries(&taking, 1_000).expect("send"), 1);
    assert_eq!(
        gate.webhook_deliveries(Some("delivered"))
            .expect("list")
            .len(),
        1
    );
    // A removed endpoint receives nothing more.
    let endpoint = gate.webhook_endpoints().expect("list")[0].id.clone();
    gate.remove_webhook_endpoint(&endpoint).expect("remove");
    gate.submit(
        &account,
        &json!({"request_id": "s", "model": "z-image", "prompt": "a cat"}),
    )
    .expect("submit");
    run_to_end(&fx, &gate, &account, "s");
    assert_eq!(gate.run_due_deliveries(&taking, 1_000).expect("send"), 0);
    common::assert_verified(&gate);
}
