//! Soak benchmark: leaves `creditgate serve` up for minutes under mixed
//! traffic with idle gaps longer than its read timeout, and reports errors,
//! RSS and threads over time. Run with
//! `cargo bench -p creditgate-appliance --bench soak`
//! (`SOAK_SECS=600` for ten minutes; default 120). Not a CI test.
//!
//! Each cycle is `TRAFFIC` of mixed requests from `CLIENTS` threads
//! (submits, polls, balances, estimates, model lists, plus hostile ones: a
//! huge declared body, bad JSON, a slow head, bytes that are not ASCII, an
//! idle connection), then an idle `GAP`. Loopback only, bounded in time.
//! Goal (printed, not asserted): no connection refused or reset, no 5xx,
//! and RSS at the end within 1.5x of RSS after the first cycle.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Client threads during traffic.
const CLIENTS: usize = 8;
/// Traffic per cycle.
const TRAFFIC: Duration = Duration::from_secs(5);
/// Idle time per cycle: longer than the server's read timeout.
const GAP: Duration = Duration::from_secs(3);
/// The server's read timeout (ms).
const READ_TIMEOUT_MS: &str = "1000";
/// How long one request may take before it counts as an error.
const REQUEST_WAIT_MAX: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    refused_as_expected: AtomicU64,
    server_errors: AtomicU64,
    connection_errors: AtomicU64,
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let soak_secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_creditgate"))
        .arg("--db")
        .arg(dir.path().join("soak.db"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--poll-interval-ms",
            "50",
        ])
        .args(["--read-timeout-ms", READ_TIMEOUT_MS])
        .args(["--rate-limit-per-sec", "0"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(std::env::temp_dir().join("soak-serve.log")).expect("log"))
        .spawn()
        .expect("start serve");
    let (addr, key, account) = {
        let stdout = child.stdout.take().expect("stdout");
        let mut key = String::new();
        let mut addr = String::new();
        let mut account = String::new();
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let line = line.expect("line");
            if let Some(a) = line.split_whitespace().find(|w| w.starts_with("acct_")) {
                account = a.to_owned();
            }
            if let Some(k) = line.split_whitespace().find(|w| w.starts_with("cg_live_")) {
                key = k
                    .trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                    .to_owned();
            }
            if let Some(a) = line.strip_prefix("creditgate listening on http://") {
                addr = a.trim().to_owned();
                break;
            }
        }
        // Keep reading, so the server never writes to a closed pipe.
        std::thread::spawn(move || lines.for_each(drop));
        (addr, key, account)
    };
    // Enough credits that every submit of the soak is accepted.
    let granted = Command::new(env!("CARGO_BIN_EXE_creditgate"))
        .arg("--db")
        .arg(dir.path().join("soak.db"))
        .args(["credits", "grant", "--account", &account])
        .args(["--amount", "100000000", "--memo", "soak"])
        .output()
        .expect("grant");
    assert!(granted.status.success(), "grant: {granted:?}");
    let pid = child.id();
    let counts = Arc::new(Counts::default());
    let started = Instant::now();
    let mut first_cycle_rss = None;
    let mut max_rss = 0.0f64;
    println!("  t(s)   ok  refused  5xx  conn-err  RSS(MB)  threads");
    let mut cycle = 0u64;
    while started.elapsed() < Duration::from_secs(soak_secs) {
        let traffic_end = Instant::now() + TRAFFIC;
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let (addr, key, counts) = (addr.clone(), key.clone(), counts.clone());
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while Instant::now() < traffic_end {
                        one_request(&addr, &key, client, cycle, n, &counts);
                        n += 1;
                    }
                })
            })
            .collect();
        for client in clients {
            let _ = client.join();
        }
        std::thread::sleep(GAP);
        let rss = proc_field(pid, "VmRSS") / 1024.0;
        let threads = proc_field(pid, "Threads");
        first_cycle_rss.get_or_insert(rss);
        max_rss = max_rss.max(rss);
        println!(
            "{:6.0} {:5} {:8} {:4} {:9} {:8.1} {:8.0}",
            started.elapsed().as_secs_f64(),
            counts.ok.load(Ordering::Relaxed),
            counts.refused_as_expected.load(Ordering::Relaxed),
            counts.server_errors.load(Ordering::Relaxed),
            counts.connection_errors.load(Ordering::Relaxed),
            rss,
            threads
        );
        cycle += 1;
    }
    let end_rss = proc_field(pid, "VmRSS") / 1024.0;
    let first = first_cycle_rss.unwrap_or(end_rss);
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "soak: {} s, {} cycles; 5xx {}, connection errors {}; RSS after first cycle {:.1} MB, max {:.1} MB, end {:.1} MB; end/first ratio {:.2} (goal <= 1.5)",
        soak_secs,
        cycle,
        counts.server_errors.load(Ordering::Relaxed),
        counts.connection_errors.load(Ordering::Relaxed),
        first,
        max_rss,
        end_rss,
        end_rss / first
    );
}

fn proc_field(pid: u32, field: &str) -> f64 {
    creditgate_tests::proc_status(pid, field).map_or(0.0, |n| n as f64)
}

/// Sends one request of the mix and counts how it went.
fn one_request(addr: &str, key: &str, client: usize, cycle: u64, n: u64, counts: &Counts) {
    let id = format!("soak-{cycle}-{client}-{n}");
    let auth = format!("Authorization: Bearer {key}\r\n");
    let (request, expected_refusal): (Vec<u8>, Option<u16>) = match n % 10 {
        0..=2 => {
            let body = format!(
                r#"{{"request_id":"{id}","model":"nano-banana-pro","prompt":"soak {n}"}}"#
            );
            (post("/v1/generate", &auth, &body), None)
        }
        3 | 4 => (
            get(&format!("/v1/generate/soak-{cycle}-{client}-{}", n - 3), &auth),
            None,
        ),
        5 => (get("/v1/credits/balance", &auth), None),
        6 => (
            post(
                "/v1/credits/estimate",
                &auth,
                r#"{"model":"nano-banana-pro","units":{"count":1}}"#,
            ),
            None,
        ),
        7 => (get("/v1/models/list", &auth), None),
        8 => match (n / 10) % 4 {
            0 => (
                format!("POST /v1/generate HTTP/1.1\r\nHost: s\r\n{auth}Content-Length: 100000000000\r\n\r\n{{")
                    .into_bytes(),
                Some(413),
            ),
            1 => (post("/v1/generate", &auth, "{not json"), Some(400)),
            2 => (b"GET /v1/\xff HTTP/1.1\r\nHost: s\r\n\r\n".to_vec(), Some(400)),
            _ => {
                // A client that connects and says nothing.
                let _ = TcpStream::connect(addr).map(|s| {
                    std::thread::sleep(Duration::from_millis(20));
                    drop(s)
                });
                counts.refused_as_expected.fetch_add(1, Ordering::Relaxed);
                return;
            }
        },
        _ => (get("/healthz", ""), None),
    };
    match exchange(addr, &request) {
        Some(status) if Some(status) == expected_refusal => {
            counts.refused_as_expected.fetch_add(1, Ordering::Relaxed);
        }
        Some(status) if status >= 500 => {
            counts.server_errors.fetch_add(1, Ordering::Relaxed);
        }
        // 4xx other than expected (a poll before the job exists, ...) are
        // the client's business, not the server's health.
        Some(_) => {
            counts.ok.fetch_add(1, Ordering::Relaxed);
        }
        None => {
            counts.connection_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn get(path: &str, auth: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: s\r\n{auth}Connection: close\r\n\r\n").into_bytes()
}

fn post(path: &str, auth: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: s\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One request on a fresh connection; the status, or `None` if the
/// connection failed or no answer came.
fn exchange(addr: &str, request: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(REQUEST_WAIT_MAX)).ok()?;
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
}
