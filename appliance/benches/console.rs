//! The owner's console on a large database (issue 17), run with
//! `cargo bench -p creditgate-appliance --bench console`.
//!
//! Seeds a database with `SEEDED_JOBS` jobs spread over the last 30 days
//! (every status, several models and accounts) and `SEEDED_TRANSFERS`
//! grants and captures, starts the real `creditgate serve` on it, signs in
//! with an operator key and fetches every console page `ROUNDS` times over
//! loopback, one request at a time. For each page it prints the median
//! and the worst time of a whole answer (request written to last byte
//! read), against the target of 50 ms of server time, and beside
//! it the same server's answer for its static style sheet measured in the
//! same run: what a request costs that renders nothing. Not asserted.
//! `ledger verify`, which replays the whole ledger on demand, is not a
//! page and not measured here.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Jobs in the database.
const SEEDED_JOBS: i64 = 1_000_000;
/// Grants and captures in the ledger.
const SEEDED_TRANSFERS: i64 = 200_000;
/// Fetches of each page.
const ROUNDS: usize = 20;
/// The target: server time per page, at most.
const TARGET_MS: f64 = 50.0;
/// How long the server may take to start.
const STARTUP_MAX: Duration = Duration::from_secs(300);
/// 30 days in milliseconds: the seeded jobs' spread.
const SPREAD_MS: i64 = 30 * 24 * 60 * 60 * 1000;

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let bin = env!("CARGO_BIN_EXE_creditgate");
    let dir = tempfile::tempdir().expect("tempdir");
    // `CONSOLE_BENCH_DB=path` keeps the seeded database there (and seeds a
    // fresh one each run all the same).
    let db = std::env::var_os("CONSOLE_BENCH_DB")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.path().join("console.db"));
    for stale in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{stale}", db.display()));
    }
    let seeding = Instant::now();
    let (account, operator, job) = seed(bin, &db);
    eprintln!(
        "seeded {SEEDED_JOBS} jobs and {SEEDED_TRANSFERS} transfers in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );
    let server = Server::start(bin, &db);
    let cookie = server.sign_in(&operator);
    let pages = [
        "/console".to_owned(),
        "/console/accounts".to_owned(),
        format!("/console/accounts/{account}"),
        "/console/agents".to_owned(),
        "/console/jobs".to_owned(),
        "/console/jobs?status=failed".to_owned(),
        "/console/jobs?model=seed-model-3".to_owned(),
        format!("/console/jobs?account={account}&status=running"),
        format!("/console/jobs/{job}"),
        "/console/ledger".to_owned(),
        "/console/prices".to_owned(),
        "/console/prices/2026-02-02-v1".to_owned(),
    ];
    let baseline = server.time("/console/style.css", None);
    println!();
    println!(
        "console pages on {SEEDED_JOBS} jobs and {SEEDED_TRANSFERS} transfers, {ROUNDS} fetches each, one at a time, loopback"
    );
    println!(
        "{:<48} {:>10} {:>10} {:>9}",
        "page", "median ms", "worst ms", "status"
    );
    println!(
        "{:<48} {:>10.2} {:>10.2} {:>9}",
        "(static style sheet, the same server)", baseline.median, baseline.worst, baseline.status
    );
    let mut over = Vec::new();
    for page in &pages {
        let timing = server.time(page, Some(&cookie));
        println!(
            "{:<48} {:>10.2} {:>10.2} {:>9}",
            page, timing.median, timing.worst, timing.status
        );
        if timing.median > TARGET_MS || timing.status != 200 {
            over.push(page.clone());
        }
    }
    println!();
    println!(
        "target: every page's median under {TARGET_MS} ms of server time; {}",
        if over.is_empty() {
            "all met".to_owned()
        } else {
            format!("not met by {over:?}")
        }
    );
}

/// Creates the accounts, the operator key and the catalog through the
/// CLI, then bulk-inserts jobs and transfers (the benchmark needs their
/// volume, not their history; `ledger verify` is not run on it). Returns an
/// account, the operator key and one job's id.
fn seed(bin: &str, db: &std::path::Path) -> (String, String, String) {
    let mut accounts = Vec::new();
    for i in 0..20 {
        let created = cli(
            bin,
            db,
            &["accounts", "create", "--name", &format!("seed {i}")],
        );
        accounts.push(created["id"].as_str().expect("id").to_owned());
    }
    let operator = cli(
        bin,
        db,
        &[
            "keys",
            "create",
            "--account",
            &accounts[0],
            "--scope",
            "operator",
        ],
    )["key"]
        .as_str()
        .expect("key")
        .to_owned();
    cli(
        bin,
        db,
        &[
            "prices",
            "import",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../fixtures/catalogs/rynjer.json"
            ),
        ],
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let conn = rusqlite::Connection::open(db).expect("open");
    // The seeded captures resolve holds that are not seeded.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF; PRAGMA foreign_keys = OFF; BEGIN",
    )
    .expect("begin");
    let statuses = [
        "succeeded",
        "succeeded",
        "succeeded",
        "failed",
        "canceled",
        "expired",
    ];
    {
        let mut insert = conn
            .prepare(
                "INSERT INTO jobs (id, account_id, request_id, fingerprint, request, product, model,
                    price_version, estimate_micros, estimate, hold_id, usage_event_id, provider,
                    upstream_model, status, next_run_at, deadline, output_token, charged_micros,
                    created_at, updated_at, finished_at)
                 VALUES (?1, ?2, ?3, ?4, '{\"prompt\":\"seeded\"}', 'image', ?5, '2026-02-02-v1',
                    0, '{}', NULL, ?6, 'fixture', ?5, ?7, ?8, ?8, ?4, ?9, ?8, ?8, ?10)",
            )
            .expect("prepare");
        let mut usage = conn
            .prepare(
                "INSERT INTO usage_events (id, job_id, account_id, transfer_id, amount, model,
                                           created_at)
                 VALUES (?1, ?2, ?3, NULL, 0, ?4, ?5)",
            )
            .expect("prepare");
        for i in 0..SEEDED_JOBS {
            let created = now - SPREAD_MS + i * SPREAD_MS / SEEDED_JOBS;
            let status = statuses[(i % statuses.len() as i64) as usize];
            let succeeded = status == "succeeded";
            insert
                .execute(rusqlite::params![
                    format!("job_{created:012x}{i:020x}"),
                    accounts[(i % accounts.len() as i64) as usize],
                    format!("seed-{i}"),
                    format!("{i:064x}"),
                    format!("seed-model-{}", i % 7),
                    format!("use_seed{i:012}"),
                    status,
                    created,
                    succeeded.then_some(0_i64),
                    Some(created + 1_000),
                ])
                .expect("seed a job");
            if succeeded && i % 10 == 0 {
                usage
                    .execute(rusqlite::params![
                        format!("use_seed{i:012}"),
                        format!("job_{created:012x}{i:020x}"),
                        accounts[(i % accounts.len() as i64) as usize],
                        format!("seed-model-{}", i % 7),
                        created,
                    ])
                    .expect("seed a usage event");
            }
        }
    }
    {
        let (grants, revenue): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT id FROM ledger_accounts WHERE code = 'system:grants'),
                        (SELECT id FROM ledger_accounts WHERE code = 'system:revenue')",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .expect("system accounts");
        let wallet: i64 = conn
            .query_row(
                "SELECT id FROM ledger_accounts WHERE account_id = ?1",
                [&accounts[0]],
                |row| row.get(0),
            )
            .expect("wallet");
        let mut insert = conn
            .prepare(
                "INSERT INTO transfers (id, kind, debit_account, credit_account, amount,
                                        pending_id, memo, created_at, chain)
                 VALUES (?1, ?2, ?3, ?4, 1000000, ?5, '', ?6, x'00')",
            )
            .expect("prepare");
        for i in 0..SEEDED_TRANSFERS {
            let created = now - SPREAD_MS + i * SPREAD_MS / SEEDED_TRANSFERS;
            let (id, kind, debit, credit, pending) = if i % 2 == 0 {
                (format!("seed-grant-{i}"), "grant", grants, wallet, None)
            } else {
                (
                    format!("capture:seed-{i}"),
                    "capture",
                    wallet,
                    revenue,
                    Some(format!("hold:job_seed{i}")),
                )
            };
            insert
                .execute(rusqlite::params![id, kind, debit, credit, pending, created])
                .expect("seed a transfer");
        }
    }
    conn.execute_batch("COMMIT; PRAGMA wal_checkpoint(TRUNCATE);")
        .expect("commit");
    let job: String = conn
        .query_row(
            "SELECT id FROM jobs ORDER BY created_at DESC LIMIT 1",
            [],
            |row| row.get(0),
        )
        .expect("a job");
    (accounts[0].clone(), operator, job)
}

fn cli(bin: &str, db: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let output = Command::new(bin)
        .arg("--db")
        .arg(db)
        .arg("--json")
        .args(args)
        .output()
        .expect("run the CLI");
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON")
}

struct Server {
    child: Child,
    addr: String,
}

struct Timing {
    median: f64,
    worst: f64,
    status: u16,
}

impl Server {
    fn start(bin: &str, db: &std::path::Path) -> Server {
        let mut child = Command::new(bin)
            .arg("--db")
            .arg(db)
            .args(["serve", "--listen", "127.0.0.1:0", "--workers", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start creditgate");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + STARTUP_MAX;
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).expect("the server started");
            if let Some(addr) = line.strip_prefix("creditgate listening on http://") {
                break addr.trim().to_owned();
            }
        };
        std::thread::spawn(move || while rx.recv().is_ok() {});
        Server { child, addr }
    }

    /// One request; its status, its headers (lowercased) and the time to
    /// its last byte.
    fn fetch(&self, request: &str) -> (u16, String, Duration) {
        let started = Instant::now();
        let mut stream = TcpStream::connect(&self.addr).expect("connect");
        stream.write_all(request.as_bytes()).expect("write");
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).expect("read");
        let took = started.elapsed();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let head = text
            .split("\r\n\r\n")
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        (status, head, took)
    }

    fn sign_in(&self, key: &str) -> String {
        let body = format!("key={key}");
        let (status, head, _) = self.fetch(&format!(
            "POST /console/sign-in HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        ));
        assert_eq!(status, 303, "signed in");
        head.lines()
            .find_map(|line| line.strip_prefix("set-cookie: "))
            .and_then(|cookie| cookie.split(';').next())
            .expect("a session cookie")
            .to_owned()
    }

    fn time(&self, path: &str, cookie: Option<&str>) -> Timing {
        let cookie = cookie
            .map(|c| format!("Cookie: {c}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{cookie}\r\n",
            self.addr
        );
        let mut times = Vec::with_capacity(ROUNDS);
        let mut status = 0;
        for _ in 0..ROUNDS {
            let (answered, _, took) = self.fetch(&request);
            status = answered;
            times.push(took.as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        Timing {
            median: times[times.len() / 2],
            worst: times[times.len() - 1],
            status,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
