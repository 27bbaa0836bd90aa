//! Load benchmark of durable submits (issue 7), run with
//! `cargo bench -p creditgate-appliance --bench load`.
//!
//! In one run, on loopback only, bounded in count and time:
//! - **baseline**: a tiny_http server (this binary re-executed with
//!   `--baseline-server`) answering every request with a static JSON body of
//!   the same size as a submit's answer, with as many handler threads;
//! - **creditgate**: the real `creditgate serve` with `synchronous=FULL`,
//!   answering `POST /v1/generate` with fresh request_ids on the fixture
//!   provider (every 2xx is a hold and a job on disk);
//! - the same against a database that already holds `SEEDED_JOBS` jobs.
//!
//! For each it prints requests/s, p50 and p99 latency, non-2xx count, and
//! the server's idle and peak RSS, then the ratios to the baseline.
//! Targets (not asserted): throughput >= 0.20x baseline (issue 16; issue 7 asked 0.40x), p99 <= 5x
//! baseline, with 1M jobs <= 20% slower, idle RSS <= 20 MB, loaded <= 100 MB.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Concurrent client connections.
const CLIENTS: usize = 32;
/// Server handler threads (both servers).
const HTTP_THREADS: usize = 16;
/// How long each measurement runs, at most.
const MEASURE_TIME: Duration = Duration::from_secs(5);
/// Requests per measurement, at most.
const REQUESTS_MAX: u64 = 200_000;
/// Jobs already in the database for the second creditgate run.
const SEEDED_JOBS: i64 = 1_000_000;
/// How long a server may take to start.
const STARTUP_MAX: Duration = Duration::from_secs(120);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--baseline-server") {
        return baseline_server(&args[2], args[3].parse().unwrap_or(450));
    }
    if args.iter().any(|a| a == "--list" || a == "--test") {
        // `cargo test --benches` asks for a listing; nothing to list.
        return;
    }
    // `LOAD_BENCH_ONLY=creditgate` runs the empty-database measurement
    // alone (for profiling); the recorded results always come from a full run.
    let only_creditgate = std::env::var("LOAD_BENCH_ONLY").as_deref() == Ok("creditgate");
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = env!("CARGO_BIN_EXE_creditgate");
    if std::env::var("LOAD_BENCH_SWEEP").as_deref() == Ok("threads") {
        return sweep_threads(bin, dir.path());
    }
    if only_creditgate {
        let (db, key) = prepare_db(bin, &dir.path().join("empty.db"), 0);
        let server = start_creditgate(bin, &db, HTTP_THREADS);
        let m = measure("creditgate", &server, Some(&key));
        println!(
            "{}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms, non-2xx {}, peak RSS {:.1} MB",
            m.name, m.rate, m.p50_ms, m.p99_ms, m.max_ms, m.failures, m.peak_rss_mb
        );
        return;
    }

    let (empty_db, key) = prepare_db(bin, &dir.path().join("empty.db"), 0);
    let (seeded_db, seeded_key) = prepare_db(bin, &dir.path().join("seeded.db"), SEEDED_JOBS);

    // One sample answer, to size the baseline's body alike.
    let probe = start_creditgate(bin, &empty_db, HTTP_THREADS);
    let sample = post_generate(&probe.addr, &key, "probe-0");
    let body_len = sample.len();
    drop(probe);

    let baseline = {
        let server = start_baseline(body_len);
        measure("baseline", &server, None)
    };
    let empty = {
        let server = start_creditgate(bin, &empty_db, HTTP_THREADS);
        measure("creditgate", &server, Some(&key))
    };
    let seeded = {
        let server = start_creditgate(bin, &seeded_db, HTTP_THREADS);
        measure("creditgate, 1M jobs", &server, Some(&seeded_key))
    };

    println!();
    println!("load benchmark: {CLIENTS} clients, {HTTP_THREADS} handler threads, {:?} or {REQUESTS_MAX} requests each, loopback, rate limiting off (--rate-limit-per-sec 0: one key for every client)", MEASURE_TIME);
    println!(
        "{:<22} {:>10} {:>9} {:>9} {:>9} {:>8} {:>10} {:>10}",
        "server", "req/s", "p50 ms", "p99 ms", "max ms", "non-2xx", "idle RSS", "peak RSS"
    );
    for m in [&baseline, &empty, &seeded] {
        println!(
            "{:<22} {:>10.0} {:>9.2} {:>9.2} {:>9.1} {:>8} {:>8.1}MB {:>8.1}MB",
            m.name, m.rate, m.p50_ms, m.p99_ms, m.max_ms, m.failures, m.idle_rss_mb, m.peak_rss_mb
        );
    }
    println!();
    println!(
        "throughput ratio (creditgate / baseline):      {:.2}  (target >= 0.20)",
        empty.rate / baseline.rate
    );
    println!(
        "p99 ratio (creditgate / baseline):             {:.2}  (target <= 5)",
        empty.p99_ms / baseline.p99_ms
    );
    println!(
        "slowdown with {SEEDED_JOBS} jobs:               {:+.1}% (target <= +20%)",
        (empty.rate / seeded.rate - 1.0) * 100.0
    );
    println!(
        "creditgate idle RSS {:.1} MB (target <= 20), peak {:.1} MB (target <= 100)",
        empty.idle_rss_mb,
        empty.peak_rss_mb.max(seeded.peak_rss_mb)
    );
}

struct Measurement {
    name: &'static str,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    failures: u64,
    idle_rss_mb: f64,
    peak_rss_mb: f64,
}

struct Running {
    child: Child,
    addr: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli(bin: &str, db: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let output = Command::new(bin)
        .arg("--db")
        .arg(db)
        .arg("--json")
        .args(args)
        .output()
        .expect("run creditgate");
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("json")
}

/// A database with a funded account and a key; `jobs` finished jobs seeded
/// straight into SQL (free, succeeded jobs: the job table and its indexes
/// at size, which is what a submit touches).
fn prepare_db(bin: &str, db: &std::path::Path, jobs: i64) -> (std::path::PathBuf, String) {
    let account = cli(bin, db, &["accounts", "create", "--name", "bench"])["id"]
        .as_str()
        .expect("id")
        .to_owned();
    cli(
        bin,
        db,
        &[
            "credits",
            "grant",
            "--account",
            &account,
            "--amount",
            "1000000000",
        ],
    );
    let key = cli(
        bin,
        db,
        &["keys", "create", "--account", &account, "--scope", "image"],
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
    if jobs > 0 {
        let conn = rusqlite::Connection::open(db).expect("open");
        conn.execute_batch("PRAGMA journal_mode = WAL; BEGIN")
            .expect("begin");
        let mut insert = conn
            .prepare(
                "INSERT INTO jobs (id, account_id, request_id, fingerprint, request, product, model,
                    price_version, estimate_micros, estimate, hold_id, usage_event_id, provider,
                    upstream_model, status, next_run_at, deadline, output_token, charged_micros,
                    created_at, updated_at, finished_at)
                 VALUES (?1, ?2, ?3, ?4, '{}', 'image', 'z-image', '2026-02-02-v1', 0, '{}', NULL,
                    ?5, 'fixture', 'z-image', 'succeeded', ?6, ?6, ?4, 0, ?6, ?6, ?6)",
            )
            .expect("prepare");
        for i in 0..jobs {
            insert
                .execute(rusqlite::params![
                    format!("job_seed{i:012}"),
                    account,
                    format!("seed-{i}"),
                    format!("{i:064x}"),
                    format!("use_seed{i:012}"),
                    1_790_000_000_000_i64 + i,
                ])
                .expect("seed");
        }
        drop(insert);
        conn.execute_batch("COMMIT; PRAGMA wal_checkpoint(TRUNCATE);")
            .expect("commit");
    }
    (db.to_path_buf(), key)
}

fn wait_listening(child: &mut Child) -> String {
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
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).expect("the server started");
        if let Some(addr) = line
            .strip_prefix("creditgate listening on http://")
            .or_else(|| line.strip_prefix("baseline listening on "))
        {
            std::thread::spawn(move || while rx.recv().is_ok() {});
            return addr.trim().to_owned();
        }
    }
}

/// `LOAD_BENCH_SWEEP=threads`: the baseline once, then creditgate on a
/// fresh database with each handler thread count of `SWEEP_THREADS`, each
/// as a ratio to that baseline (issue 16: what the thread count does).
fn sweep_threads(bin: &str, dir: &std::path::Path) {
    const SWEEP_THREADS: [usize; 5] = [2, 4, 8, 16, 32];
    let (probe_db, probe_key) = prepare_db(bin, &dir.join("probe.db"), 0);
    let probe = start_creditgate(bin, &probe_db, HTTP_THREADS);
    let body_len = post_generate(&probe.addr, &probe_key, "probe-0").len();
    drop(probe);
    let baseline = measure("baseline", &start_baseline(body_len), None);
    println!(
        "baseline ({HTTP_THREADS} threads): {:.0} req/s, p99 {:.2} ms; creditgate with rate limiting off",
        baseline.rate, baseline.p99_ms
    );
    println!(
        "{:>8} {:>10} {:>9} {:>9} {:>8} {:>11} {:>9}",
        "threads", "req/s", "p50 ms", "p99 ms", "non-2xx", "rate ratio", "p99 ratio"
    );
    for threads in SWEEP_THREADS {
        let (db, key) = prepare_db(bin, &dir.join(format!("sweep-{threads}.db")), 0);
        let m = measure(
            "creditgate",
            &start_creditgate(bin, &db, threads),
            Some(&key),
        );
        println!(
            "{threads:>8} {:>10.0} {:>9.2} {:>9.2} {:>8} {:>10.3}x {:>8.2}x",
            m.rate,
            m.p50_ms,
            m.p99_ms,
            m.failures,
            m.rate / baseline.rate,
            m.p99_ms / baseline.p99_ms
        );
    }
}

fn start_creditgate(bin: &str, db: &std::path::Path, http_threads: usize) -> Running {
    let mut child = Command::new(bin)
        .arg("--db")
        .arg(db)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http-threads",
            &http_threads.to_string(),
            "--workers",
            "2",
            // Every client shares one key; the benchmark measures the
            // write path, not the limiter.
            "--rate-limit-per-sec",
            "0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start creditgate");
    let addr = wait_listening(&mut child);
    Running { child, addr }
}

fn start_baseline(body_len: usize) -> Running {
    let mut child = Command::new(std::env::current_exe().expect("self"))
        .args(["--baseline-server", "127.0.0.1:0", &body_len.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start baseline");
    let addr = wait_listening(&mut child);
    Running { child, addr }
}

/// The baseline: tiny_http, `HTTP_THREADS` handlers, a static JSON body.
fn baseline_server(listen: &str, body_len: usize) {
    let server = Arc::new(tiny_http::Server::http(listen).expect("bind"));
    let body = format!(
        "{{\"code\":0,\"message\":\"ok\",\"data\":\"{}\"}}",
        "x".repeat(body_len.saturating_sub(37))
    );
    println!("baseline listening on {}", server.server_addr());
    let _ = std::io::stdout().flush();
    let threads: Vec<_> = (0..HTTP_THREADS)
        .map(|_| {
            let (server, body) = (server.clone(), body.clone());
            std::thread::spawn(move || {
                for mut request in server.incoming_requests() {
                    let mut sink = Vec::new();
                    let _ = request.as_reader().read_to_end(&mut sink);
                    let header = tiny_http::Header::from_bytes("Content-Type", "application/json")
                        .expect("header");
                    let _ = request.respond(
                        tiny_http::Response::from_string(body.clone()).with_header(header),
                    );
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
}

/// A `/proc/PID/status` size field (`VmRSS`, `VmHWM`) in MB; 0 if unreadable.
fn rss_mb(pid: u32, field: &str) -> f64 {
    creditgate_tests::proc_status(pid, field).map_or(0.0, |kb| kb as f64 / 1024.0)
}

/// One keep-alive request; returns the status and body.
fn exchange(stream: &mut BufReader<TcpStream>, request: &[u8]) -> Option<(u16, Vec<u8>)> {
    stream.get_mut().write_all(request).ok()?;
    let mut status_line = String::new();
    stream.read_line(&mut status_line).ok()?;
    let status = status_line.split_whitespace().nth(1)?.parse().ok()?;
    let mut length = 0;
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).ok()?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).ok()?;
    Some((status, body))
}

fn generate_request(addr: &str, key: &str, request_id: &str) -> Vec<u8> {
    let body =
        format!(r#"{{"request_id":"{request_id}","model":"z-image","prompt":"a benchmark"}}"#);
    format!(
        "POST /v1/generate HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn post_generate(addr: &str, key: &str, request_id: &str) -> Vec<u8> {
    let mut stream = BufReader::new(TcpStream::connect(addr).expect("connect"));
    let (status, body) =
        exchange(&mut stream, &generate_request(addr, key, request_id)).expect("answer");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    body
}

fn measure(name: &'static str, server: &Running, key: Option<&str>) -> Measurement {
    let pid = server.child.id();
    std::thread::sleep(Duration::from_millis(300));
    let idle_rss_mb = rss_mb(pid, "VmRSS");
    let sent = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::<u32>::new()));
    let completed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (sent, failures, stop, latencies, completed) =
                (sent.clone(), failures.clone(), stop.clone(), latencies.clone(), completed.clone());
            let (addr, key) = (server.addr.clone(), key.map(str::to_owned));
            std::thread::spawn(move || {
                let mut stream = BufReader::new(TcpStream::connect(&addr).expect("connect"));
                let mut mine = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) && sent.fetch_add(1, Ordering::Relaxed) < REQUESTS_MAX {
                    let request = match &key {
                        Some(key) => generate_request(&addr, key, &format!("load-{c}-{i}")),
                        None => format!("POST /v1/generate HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 2\r\n\r\n{{}}").into_bytes(),
                    };
                    i += 1;
                    let t = Instant::now();
                    match exchange(&mut stream, &request) {
                        Some((status, _)) if (200..300).contains(&status) => {}
                        Some(_) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                        None => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            stream = BufReader::new(TcpStream::connect(&addr).expect("reconnect"));
                        }
                    }
                    mine.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                    completed.fetch_add(1, Ordering::Relaxed);
                }
                latencies.lock().expect("lock").extend(mine);
            })
        })
        .collect();
    let mut peak_rss_mb: f64 = 0.0;
    while started.elapsed() < MEASURE_TIME && sent.load(Ordering::Relaxed) < REQUESTS_MAX {
        std::thread::sleep(Duration::from_millis(100));
        peak_rss_mb = peak_rss_mb.max(rss_mb(pid, "VmRSS"));
    }
    stop.store(true, Ordering::Relaxed);
    // The rate counts what completed inside the window; requests still in
    // flight when it closed are not waited for in it.
    let window = started.elapsed().as_secs_f64();
    let completed_in_window = completed.load(Ordering::Relaxed);
    for client in clients {
        let _ = client.join();
    }
    let mut all = latencies.lock().expect("lock").clone();
    all.sort_unstable();
    let pick = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    Measurement {
        name,
        rate: completed_in_window as f64 / window,
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
        max_ms: all.last().copied().unwrap_or(0) as f64 / 1000.0,
        failures: failures.load(Ordering::Relaxed),
        idle_rss_mb,
        peak_rss_mb: peak_rss_mb.max(rss_mb(pid, "VmHWM")),
    }
}
