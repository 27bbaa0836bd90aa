//! Black-box tests of outgoing webhooks through the real binary: an
//! operator's endpoint receives `job.finished`, `code.redeemed` and one
//! `balance.low` per crossing, signed per Standard Webhooks with the secret
//! `webhooks add` printed; a receiver that answers 500 is retried until it
//! takes the delivery; one that hangs never slows a submit; deliveries are
//! listed and replayed from the CLI; `ledger verify` holds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use creditgate_standins::{Reply, Seen, StandIn};
use creditgate_tests::{Sandbox, Server};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

const SIGNING_KEY: &str = "a-signing-key-of-at-least-32-bytes-long";

fn sandbox() -> Sandbox {
    Sandbox::new(env!("CARGO_BIN_EXE_creditgate"))
}

fn ok_with_key(sb: &Sandbox, args: &[&str]) -> Value {
    let run = sb
        .command(&[&["--json"], args].concat())
        .env("CREDITGATE_WEBHOOK_SIGNING_KEY", SIGNING_KEY)
        .output()
        .expect("run");
    assert_eq!(
        run.status.code(),
        Some(0),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_slice(&run.stdout).expect("json")
}

fn serve(sb: &Sandbox) -> Server {
    sb.serve_env(
        &[
            "--poll-interval-ms",
            "20",
            "--webhook-retry-ms",
            "100",
            "--rate-limit-per-sec",
            "0",
        ],
        &[("CREDITGATE_WEBHOOK_SIGNING_KEY", SIGNING_KEY)],
    )
}

/// Whether `seen` carries a valid Standard Webhooks signature under
/// `secret` (`whsec_<base64>`).
fn signed_by(seen: &Seen, secret: &str) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").expect("prefix"))
        .expect("base64");
    let (Some(id), Some(timestamp), Some(signature)) = (
        seen.header("webhook-id"),
        seen.header("webhook-timestamp"),
        seen.header("webhook-signature"),
    ) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("key");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(&seen.body);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    signature == format!("v1,{expected}")
}

/// Waits until `count(seen)` reaches `n`.
fn wait_for(receiver: &StandIn, n: usize, what: &str) -> Vec<Seen> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = receiver.seen();
        if seen.len() >= n {
            return seen;
        }
        assert!(Instant::now() < deadline, "{what}: only {seen:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn events(seen: &[Seen]) -> Vec<(String, Value)> {
    seen.iter()
        .map(|s| {
            let body = s.json();
            (
                body["type"].as_str().unwrap_or("").to_owned(),
                body["data"].clone(),
            )
        })
        .collect()
}

#[test]
fn events_are_delivered_signed_retried_and_once_per_crossing() {
    let sb = sandbox();
    // The receiver refuses its first delivery (500), then takes them all.
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let receiver = StandIn::start(2, move |_| {
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::json(500, &json!({"error": "busy"}))
        } else {
            Reply::json(200, &json!({"ok": true}))
        }
    });
    let added = ok_with_key(
        &sb,
        &[
            "webhooks",
            "add",
            &format!("{}/hook", receiver.base_url()),
            "--event",
            "job.finished",
            "--event",
            "code.redeemed",
            "--event",
            "balance.low",
            "--low-balance",
            "15",
        ],
    );
    let secret = added["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(
        ok_with_key(
            &sb,
            &["webhooks", "secret", added["id"].as_str().expect("id")]
        )["secret"],
        json!(secret),
        "the secret is derived again, not stored"
    );
    let db = std::fs::read(sb.db()).expect("db");
    assert!(!db.windows(secret.len()).any(|w| w == secret.as_bytes()));

    let account = sb.account("agent");
    sb.ok(&["credits", "grant", "--account", &account, "--amount", "50"]);
    let key = sb.ok(&["keys", "create", "--account", &account, "--scope", "image"])["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let code = sb.ok(&["codes", "create", "--amount", "20"])["secret"]
        .as_str()
        .expect("code")
        .to_owned();
    let server = serve(&sb);
    let generate = |id: &str| {
        server.post(
            "/v1/generate",
            &key,
            &json!({"request_id": id, "model": "z-image", "prompt": "a cat"}),
        )
    };
    assert_eq!(generate("one").status, 200); // 50 -> 30: above 15
    assert_eq!(generate("two").status, 200); // 30 -> 10: below, once
    assert_eq!(generate("three").status, 402); // refused: no event
                                               // Two job.finished and one balance.low, the first retried once.
    let seen = wait_for(&receiver, 4, "three deliveries and a retry");
    assert_eq!(
        server
            .post("/v1/credits/redeem", &key, &json!({"code": code}))
            .status,
        200
    ); // 10 -> 30: the mark clears; code.redeemed
    let seen = wait_for(&receiver, seen.len() + 1, "code.redeemed");
    assert!(
        seen.iter().all(|s| signed_by(s, &secret)),
        "every delivery is signed"
    );
    assert!(!seen.iter().any(|s| signed_by(s, "whsec_AAAA")));
    // Five requests: four events, the refused first one sent again under
    // the same webhook-id.
    assert_eq!(seen.len(), 5);
    let mut by_id: std::collections::BTreeMap<String, (String, Value)> = Default::default();
    for (s, event) in seen.iter().zip(events(&seen)) {
        by_id.insert(s.header("webhook-id").expect("id").to_owned(), event);
    }
    assert_eq!(by_id.len(), 4);
    let of = |kind: &str| -> Vec<Value> {
        by_id
            .values()
            .filter(|(k, _)| k == kind)
            .map(|(_, d)| d.clone())
            .collect()
    };
    let finished = of("job.finished");
    assert_eq!(finished.len(), 2);
    assert!(
        finished
            .iter()
            .all(|d| d["status"] == "succeeded" && d["charged"] == json!(20)),
        "{finished:?}"
    );
    let low = of("balance.low");
    assert_eq!(low.len(), 1, "one event per crossing");
    assert_eq!(low[0]["available"], json!(10));
    assert_eq!(low[0]["threshold"], json!(15));
    let redeemed = of("code.redeemed");
    assert_eq!(redeemed.len(), 1);
    assert_eq!(redeemed[0]["credits"], json!(20));
    drop(server);
    let listed = ok_with_key(&sb, &["webhooks", "deliveries"]);
    let deliveries = listed["deliveries"].as_array().expect("deliveries");
    assert_eq!(deliveries.len(), 4);
    assert!(
        deliveries.iter().all(|d| d["status"] == "delivered"),
        "{listed}"
    );
    assert!(deliveries.iter().any(|d| d["attempts"] == 2));
    // A replay sends one again, with the same id.
    let replayed = deliveries[0]["id"].as_str().expect("id").to_owned();
    ok_with_key(&sb, &["webhooks", "replay", &replayed]);
    let server = serve(&sb);
    let seen = wait_for(&receiver, calls.load(Ordering::SeqCst) + 1, "the replay");
    assert_eq!(
        seen.last().and_then(|s| s.header("webhook-id")),
        Some(replayed.as_str())
    );
    drop(server);
    let run = sb.run(&["ledger", "verify"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
}

#[test]
fn a_hanging_receiver_never_slows_a_submit() {
    let sb = sandbox();
    let receiver = StandIn::start(1, |_| {
        Reply::json(200, &json!({})).after(Duration::from_secs(3))
    });
    ok_with_key(
        &sb,
        &[
            "webhooks",
            "add",
            receiver.base_url(),
            "--event",
            "job.finished",
        ],
    );
    let account = sb.account("agent");
    sb.ok(&["credits", "grant", "--account", &account, "--amount", "500"]);
    let key = sb.ok(&["keys", "create", "--account", &account, "--scope", "image"])["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let server = serve(&sb);
    let mut slowest = Duration::ZERO;
    for i in 0..6 {
        let started = Instant::now();
        let answer = server.post(
            "/v1/generate",
            &key,
            &json!({"request_id": format!("r{i}"), "model": "z-image", "prompt": "a cat"}),
        );
        assert_eq!(answer.status, 200);
        slowest = slowest.max(started.elapsed());
        std::thread::sleep(Duration::from_millis(300));
    }
    // The receiver takes 3 s a delivery; the submits never wait for it.
    assert!(slowest < Duration::from_millis(1_500), "{slowest:?}");
    drop(server);
    let run = sb.run(&["ledger", "verify"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
}

#[test]
fn the_operator_is_told_clearly_what_is_wrong() {
    let sb = sandbox();
    // Without the signing key: an honest refusal naming the variable.
    let run = sb.run(&[
        "webhooks",
        "add",
        "http://x.test/h",
        "--event",
        "job.finished",
    ]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("CREDITGATE_WEBHOOK_SIGNING_KEY"),
        "{}",
        run.stderr
    );
    for args in [
        vec!["webhooks", "add", "ftp://x.test", "--event", "job.finished"],
        vec!["webhooks", "add", "http://x.test", "--event", "job.started"],
        vec!["webhooks", "add", "http://x.test", "--event", "balance.low"],
        vec!["webhooks", "remove", "whe_nope"],
        vec!["webhooks", "replay", "msg_nope"],
    ] {
        let run = sb
            .command(&args)
            .env("CREDITGATE_WEBHOOK_SIGNING_KEY", SIGNING_KEY)
            .output()
            .expect("run");
        assert_eq!(run.status.code(), Some(1), "{args:?}");
        assert!(!String::from_utf8_lossy(&run.stderr).contains(SIGNING_KEY));
    }
}
