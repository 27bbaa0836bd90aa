//! Helpers shared by the black-box tests in `tests/blackbox/`: a temporary
//! database and a runner for the real `creditgate` binary that returns its
//! exit code and parsed `--json` output. The tests know the binary only
//! through its command line (and later its HTTP port), never its internals.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub mod webdriver;

/// A temporary directory holding one database, deleted on drop.
pub struct Sandbox {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

/// What one run of the binary produced.
#[derive(Debug)]
pub struct Run {
    /// The process exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output, parsed as JSON when it is JSON, else `Null`.
    pub json: Value,
    /// Standard output as text.
    pub stdout: String,
    /// Standard error as text.
    pub stderr: String,
}

impl Sandbox {
    /// A fresh sandbox for the binary at `bin` (pass
    /// `env!("CARGO_BIN_EXE_creditgate")`).
    pub fn new(bin: &str) -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().expect("create a temporary directory"),
            bin: PathBuf::from(bin),
        }
    }

    /// The database path every command of this sandbox uses.
    pub fn db(&self) -> PathBuf {
        self.dir.path().join("creditgate.db")
    }

    /// The sandbox directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A command for the binary with `--db` set to this sandbox's database.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        command.arg("--db").arg(self.db()).args(args);
        command.env_remove("CREDITGATE_DB");
        command
    }

    /// Runs the binary with `args` and `--json`.
    pub fn json(&self, args: &[&str]) -> Run {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        self.run(&all)
    }

    /// Runs the binary with `args`.
    pub fn run(&self, args: &[&str]) -> Run {
        let output = self
            .command(args)
            .output()
            .expect("run the creditgate binary");
        Run::from(output)
    }

    /// Runs `--json` and expects success; returns the JSON.
    pub fn ok(&self, args: &[&str]) -> Value {
        let run = self.json(args);
        assert_eq!(run.code, 0, "creditgate {args:?} failed: {run:?}");
        run.json
    }

    /// How many items the list `field` of a successful command's JSON holds
    /// (`None` when it is not a list).
    pub fn count(&self, args: &[&str], field: &str) -> Option<usize> {
        self.ok(args)[field].as_array().map(Vec::len)
    }

    /// Creates an account and returns its id.
    pub fn account(&self, name: &str) -> String {
        let created = self.ok(&["accounts", "create", "--name", name]);
        created["id"].as_str().expect("account id").to_owned()
    }

    /// The id of the first account `accounts list` shows (on a first run,
    /// the demo account).
    pub fn first_account(&self) -> String {
        text_at(&self.ok(&["accounts", "list"]), "/accounts/0/id")
    }
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        Run {
            code: output.status.code().unwrap_or(-1),
            json: serde_json::from_str(stdout.trim()).unwrap_or(Value::Null),
            stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// A running `creditgate serve` on an ephemeral port, killed on drop.
pub struct Server {
    child: std::process::Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The demo key printed on first run, if this run printed one.
    pub demo_key: Option<String>,
    /// Every line the server printed on stdout before it listened.
    pub banner: Vec<String>,
    /// The server's stderr, collected by a thread (the access log).
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

/// How long a test waits for the server to say it listens, at most.
pub const STARTUP_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(30);

impl Sandbox {
    /// Starts `creditgate serve --listen 127.0.0.1:0` on this sandbox's
    /// database with extra `args`, and waits until it listens. The child is
    /// reaped by [`Server`]'s drop.
    pub fn serve(&self, args: &[&str]) -> Server {
        let mut command = self.command(&["serve", "--listen", "127.0.0.1:0"]);
        command.args(args);
        start_server(command)
    }

    /// [`Sandbox::serve`] with extra environment variables (a provider's
    /// credential, a webhook secret).
    pub fn serve_env(&self, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = self.command(&["serve", "--listen", "127.0.0.1:0"]);
        command.args(args);
        for (name, value) in env {
            command.env(name, value);
        }
        start_server(command)
    }

    /// Writes `text` to `name` in the sandbox directory; its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir().join(name);
        std::fs::write(&path, text).expect("write a sandbox file");
        path
    }

    /// [`Sandbox::serve`] with the server's open-file limit
    /// (`RLIMIT_NOFILE`) lowered to `fd_limit` (through `sh -c ulimit`).
    pub fn serve_with_fd_limit(&self, fd_limit: u32, args: &[&str]) -> Server {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {fd_limit} && exec \"$0\" \"$@\""))
            .arg(&self.bin)
            .arg("--db")
            .arg(self.db())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("CREDITGATE_DB");
        start_server(command)
    }
}

/// Starts a prepared `serve` command and waits until it listens. The child
/// is reaped by [`Server`]'s drop.
#[allow(clippy::zombie_processes)]
fn start_server(mut command: Command) -> Server {
    use std::io::{BufRead, BufReader, Read};
    {
        command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn().expect("start creditgate serve");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut text) = sink.lock() {
                    text.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = std::time::Instant::now() + STARTUP_WAIT_MAX;
        let mut banner = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "the server did not start: {banner:?} {}",
                        stderr.lock().map(|s| s.clone()).unwrap_or_default()
                    );
                }
            };
            banner.push(line.clone());
            if let Some(addr) = line.strip_prefix("creditgate listening on http://") {
                let demo_key = banner.iter().find_map(|l| {
                    l.split_whitespace()
                        .find(|w| w.starts_with("cg_live_"))
                        .map(|w| {
                            w.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                                .to_owned()
                        })
                });
                // Keep draining stdout so the server never blocks on it.
                std::thread::spawn(move || while rx.recv().is_ok() {});
                return Server {
                    child,
                    addr: addr.trim().to_owned(),
                    demo_key,
                    banner,
                    stderr,
                };
            }
        }
    }
}

/// An HTTP response as the tests see it.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The first header called `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How long one test request may take, at most.
pub const REQUEST_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(20);

/// The string at JSON `pointer` (`/data/access_token`) of `value`.
pub fn text_at(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {value}"))
        .to_owned()
}

/// Percent-encodes a form field (`application/x-www-form-urlencoded`).
pub fn form_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Sends one raw HTTP/1.1 request (with `Connection: close`) and reads the
/// whole response. A deliberately tiny client: the tests need to send
/// malformed and hostile requests a real client would refuse to.
pub fn raw_http(addr: &str, request: &[u8]) -> HttpResponse {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(REQUEST_WAIT_MAX))
        .expect("timeout");
    stream
        .set_write_timeout(Some(REQUEST_WAIT_MAX))
        .expect("timeout");
    // The server may answer (413) before reading everything; ignore a
    // broken pipe and read what it said.
    let _ = stream.write_all(request);
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    parse_response(&bytes)
}

fn parse_response(bytes: &[u8]) -> HttpResponse {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {:?}", String::from_utf8_lossy(bytes)));
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = bytes[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// A chunked HTTP body, joined.
pub fn dechunk_body(bytes: &[u8]) -> Vec<u8> {
    dechunk(bytes)
}

fn dechunk(mut bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = bytes.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&bytes[..line_end]).trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&bytes[start..(start + size).min(bytes.len())]);
        bytes = &bytes[(start + size + 2).min(bytes.len())..];
    }
    out
}

impl Server {
    /// The `curl` line of the first-run banner that calls `/v1/generate`,
    /// and what running it as printed (`sh -c`) wrote to stdout, as JSON.
    pub fn run_banner_curl(&self) -> (String, Value) {
        let curl = self
            .banner
            .iter()
            .find(|l| l.trim_start().starts_with("curl -s") && l.contains("/v1/generate "))
            .expect("a curl line")
            .trim()
            .to_owned();
        let output = Command::new("sh")
            .arg("-c")
            .arg(&curl)
            .output()
            .expect("run curl");
        let answer = serde_json::from_slice(&output.stdout).expect("curl printed JSON");
        (curl, answer)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends a request with an optional bearer credential and JSON body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&str>,
    ) -> HttpResponse {
        let mut text = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if let Some(bearer) = bearer {
            text.push_str(&format!("Authorization: Bearer {bearer}\r\n"));
        }
        let body = body.unwrap_or("");
        if method != "GET" || !body.is_empty() {
            text.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        text.push_str("\r\n");
        text.push_str(body);
        raw_http(&self.addr, text.as_bytes())
    }

    /// POSTs a JSON `body` with a bearer credential and extra `headers`
    /// (`Idempotency-Key`, ...).
    pub fn post_with_headers(
        &self,
        path: &str,
        bearer: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> HttpResponse {
        let mut text = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAuthorization: Bearer \
             {bearer}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("\r\n");
        text.push_str(body);
        raw_http(&self.addr, text.as_bytes())
    }

    /// GET as a browser would: with the console's session `cookie`, if any.
    pub fn page(&self, path: &str, cookie: Option<&str>) -> HttpResponse {
        let mut text = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if let Some(cookie) = cookie {
            text.push_str(&format!("Cookie: {cookie}\r\n"));
        }
        text.push_str("\r\n");
        raw_http(&self.addr, text.as_bytes())
    }

    /// POSTs an HTML form (`application/x-www-form-urlencoded`) as a
    /// browser would, with the console's session `cookie`, if any.
    pub fn form(&self, path: &str, cookie: Option<&str>, fields: &[(&str, &str)]) -> HttpResponse {
        let body = fields
            .iter()
            .map(|(name, value)| format!("{}={}", form_encode(name), form_encode(value)))
            .collect::<Vec<_>>()
            .join("&");
        let mut text = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if let Some(cookie) = cookie {
            text.push_str(&format!("Cookie: {cookie}\r\n"));
        }
        text.push_str("\r\n");
        text.push_str(&body);
        raw_http(&self.addr, text.as_bytes())
    }

    /// GET with a bearer credential; the JSON answer.
    pub fn get(&self, path: &str, bearer: &str) -> HttpResponse {
        self.request("GET", path, Some(bearer), None)
    }

    /// POST JSON with a bearer credential.
    pub fn post(&self, path: &str, bearer: &str, body: &Value) -> HttpResponse {
        self.request("POST", path, Some(bearer), Some(&body.to_string()))
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A field of `/proc/PID/status` (`VmRSS` in kB, `Threads`), as a
    /// number; `None` where there is no such file.
    pub fn proc_status(&self, field: &str) -> Option<u64> {
        proc_status(self.child.id(), field)
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What the server wrote to stderr so far (the access log).
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// A handle on what the server writes to stderr, still readable after
    /// the server is stopped (its collector reads the pipe to its end).
    pub fn stderr_handle(&self) -> std::sync::Arc<std::sync::Mutex<String>> {
        self.stderr.clone()
    }

    /// Sends SIGKILL and waits.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (e.g. `TERM`) and waits for the exit, at most
    /// `within`; returns the exit status if it exited.
    pub fn signal_and_wait(
        mut self,
        signal: &str,
        within: std::time::Duration,
    ) -> Option<std::process::ExitStatus> {
        let _ = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A numeric field of `/proc/PID/status` (`VmRSS` in kB, `Threads`);
/// `None` where there is no such process or file. The benches use it too.
pub fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}
