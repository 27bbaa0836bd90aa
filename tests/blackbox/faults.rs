//! Black-box tests of how `creditgate serve` behaves when its own data or
//! workers fail (issue 11 sections 2 and 3): a server fault answers 500
//! `internal` and is logged with the request id the client got; `/healthz`
//! stops saying ok while the workers keep failing, says why, and recovers
//! with them, and the workers never die.

use std::time::{Duration, Instant};

use creditgate_tests::{raw_http, Sandbox, Server};
use serde_json::{json, Value};

/// How long a test waits for the server to notice, at most.
const NOTICE_WAIT_MAX: Duration = Duration::from_secs(20);

fn start() -> (Sandbox, Server, String) {
    let sb = Sandbox::new(env!("CARGO_BIN_EXE_creditgate"));
    let server = sb.serve(&["--poll-interval-ms", "20", "--workers", "2"]);
    let key = server.demo_key.clone().expect("first run prints a key");
    (sb, server, key)
}

/// Waits until `done` holds, at most [`NOTICE_WAIT_MAX`].
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + NOTICE_WAIT_MAX;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {NOTICE_WAIT_MAX:?}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn job_status(server: &Server, key: &str, request_id: &str) -> String {
    server
        .get(&format!("/v1/generate/{request_id}"), key)
        .json()["data"]["status"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn a_server_fault_is_a_500_logged_with_the_request_id_the_client_got() {
    let (sb, server, key) = start();
    let body = json!({"request_id": "r1", "model": "z-image", "prompt": "x"});
    assert_eq!(server.post("/v1/generate", &key, &body).status, 200);
    wait_until("the job succeeds", || {
        job_status(&server, &key, "r1") == "succeeded"
    });
    // The stored row is damaged behind the server's back.
    rusqlite::Connection::open(sb.db())
        .expect("raw open")
        .execute("UPDATE jobs SET outputs = 'garbage'", [])
        .expect("tamper");

    let request = format!(
        "GET /v1/generate/r1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Authorization: Bearer {key}\r\nX-Request-Id: probe-500\r\n\r\n"
    );
    let answer = raw_http(&server.addr, request.as_bytes());
    let envelope: Value = answer.json();
    assert_eq!(answer.status, 500, "{envelope}");
    assert_eq!(
        envelope["data"]["error"], "internal",
        "never invalid_request"
    );
    assert!(
        !envelope["message"]
            .as_str()
            .unwrap_or("")
            .contains("garbage"),
        "no internals: {envelope}"
    );
    assert_eq!(answer.header("x-request-id"), Some("probe-500"));
    wait_until("the fault is logged with the request id", || {
        server
            .stderr()
            .lines()
            .any(|line| line.contains("request_id=probe-500") && line.contains("decode"))
    });
}

#[test]
fn healthz_says_why_while_the_workers_keep_failing_and_recovers_with_them() {
    let (sb, server, key) = start();
    assert_eq!(server.request("GET", "/healthz", None, None).status, 200);
    let raw = rusqlite::Connection::open(sb.db()).expect("raw open");
    // The workers' due-jobs query names this index: every step now fails.
    raw.execute_batch("DROP INDEX jobs_due")
        .expect("break the workers");

    let mut failing = Value::Null;
    wait_until("healthz reports the failing workers", || {
        let answer = server.request("GET", "/healthz", None, None);
        failing = answer.json();
        answer.status == 503
    });
    assert_eq!(failing["data"]["error"], "workers_failing", "{failing}");
    assert!(
        failing["data"]["reason"]
            .as_str()
            .is_some_and(|why| why.contains("jobs_due")),
        "{failing}"
    );
    // Submits are still taken meanwhile.
    let body = json!({"request_id": "later", "model": "z-image", "prompt": "x"});
    assert_eq!(server.post("/v1/generate", &key, &body).status, 200);

    raw.execute_batch("CREATE INDEX jobs_due ON jobs (next_run_at) WHERE status = 'pending'")
        .expect("repair");
    wait_until("healthz is ok again", || {
        server.request("GET", "/healthz", None, None).status == 200
    });
    // The workers never died: the job submitted meanwhile runs.
    wait_until("the job submitted meanwhile succeeds", || {
        job_status(&server, &key, "later") == "succeeded"
    });
    assert!(server.stderr().contains("worker step failed"));
}
