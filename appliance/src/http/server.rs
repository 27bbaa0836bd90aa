//! The tiny_http loop: a bounded pool of handler threads over one listener.
//! It turns wire requests into our [`Request`], bounds what a client can
//! make us hold (open connections, header bytes and arrival time, body size
//! and arrival time, per-connection socket timeouts so a half-sent request
//! cannot pin a thread), renders the HTTP layer's own refusals in our
//! envelope, stamps every response and log line with an `X-Request-Id`,
//! writes a one-line access log, reports a lost listener instead of living
//! on deaf, and stops gracefully: in-flight requests finish, then the
//! threads end.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use creditgate::clock::format_rfc3339;
use creditgate::ids::random_id;
use creditgate::{Clock, Error, SystemClock};

use super::dialects::{self, rynjer};
use super::request::{Request, State};
use super::response::Response;
use super::{handle, REQUEST_ID_CHARS_MAX};

/// Handler threads, at most.
pub const HTTP_THREADS_MAX: usize = 256;
/// How often an idle handler thread checks for shutdown.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// Bytes of the request line (method, path and query, version), at most.
pub const REQUEST_LINE_BYTES_MAX: usize = 8 * 1024;
/// Bytes of one header line, at most.
pub const HEADER_LINE_BYTES_MAX: usize = 8 * 1024;
/// Bytes of a request's whole header block, at most.
pub const HEADER_BLOCK_BYTES_MAX: usize = 32 * 1024;
/// Bytes of an unread body the connection reads and throws away to stay
/// usable; a request that leaves more closes its connection.
pub const UNREAD_BODY_DRAIN_BYTES_MAX: usize = 64 * 1024;
/// Open connections, at most, whatever `--max-connections` says.
pub const CONNECTIONS_MAX: usize = 16 * 1024;

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Handler threads (1..=[`HTTP_THREADS_MAX`]).
    pub threads: usize,
    /// A socket read or write that waits longer than this fails (slow
    /// clients); an idle keep-alive connection closes after it.
    pub read_timeout: Duration,
    /// A request's line and headers must arrive within this of its first
    /// byte.
    pub header_deadline: Duration,
    /// Open connections, at most (1..=[`CONNECTIONS_MAX`]); each holds a
    /// thread while open. Beyond: 503 `server_busy`.
    pub connections_max: usize,
    /// A whole body must arrive within this.
    pub body_deadline: Duration,
    /// Write an access log line per request to stderr.
    pub access_log: bool,
}

/// A running server.
pub struct RunningServer {
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    addr: SocketAddr,
    failure: Arc<Mutex<Option<String>>>,
}

impl RunningServer {
    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Why the server can no longer accept connections, once it cannot
    /// (the listener is lost). The process should then say so and exit.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Stops accepting, lets in-flight requests finish, joins the threads.
    pub fn shutdown(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        for thread in self.threads {
            let _ = thread.join();
        }
        // What the last requests logged, after every handler is done.
        crate::logging::flush_access_log();
    }
}

/// Starts the handler threads on an already bound `listener`.
pub fn start(
    state: Arc<State>,
    listener: TcpListener,
    config: &ServerConfig,
) -> std::io::Result<RunningServer> {
    let addr = listener.local_addr()?;
    // Timeouts go on each accepted socket, never on the listener: Linux
    // applies a listener's receive timeout to accept() itself.
    let limits = tiny_http::Limits {
        connections_max: config.connections_max.clamp(1, CONNECTIONS_MAX),
        request_line_bytes_max: REQUEST_LINE_BYTES_MAX,
        header_line_bytes_max: HEADER_LINE_BYTES_MAX,
        header_block_bytes_max: HEADER_BLOCK_BYTES_MAX,
        header_deadline: config.header_deadline,
        read_timeout: Some(config.read_timeout),
        write_timeout: Some(config.read_timeout),
        unread_body_drain_bytes_max: UNREAD_BODY_DRAIN_BYTES_MAX,
        refusal_body: Some(refusal_body),
    };
    let server = Arc::new(
        tiny_http::Server::from_listener_with_limits(listener, None, limits)
            .map_err(|err| std::io::Error::other(err.to_string()))?,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let failure = Arc::new(Mutex::new(None));
    let threads = (0..config.threads.clamp(1, HTTP_THREADS_MAX))
        .map(|i| {
            let (server, stop, state, config, failure) = (
                server.clone(),
                stop.clone(),
                state.clone(),
                config.clone(),
                failure.clone(),
            );
            std::thread::Builder::new()
                .name(format!("http-{i}"))
                .spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        match server.recv_timeout(IDLE_POLL) {
                            Ok(Some(request)) => serve_one(&state, &config, request),
                            Ok(None) => {}
                            Err(err) => {
                                // Only the accept loop reports errors, and
                                // only when the listener is gone for good.
                                eprintln!("creditgate: the listener is lost: {err}");
                                *failure.lock().unwrap_or_else(|p| p.into_inner()) =
                                    Some(err.to_string());
                                stop.store(true, Ordering::SeqCst);
                            }
                        }
                    }
                })
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut threads = threads;
    if config.access_log {
        let stop = stop.clone();
        threads.push(
            std::thread::Builder::new()
                .name("access-log".into())
                .spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        std::thread::sleep(crate::logging::ACCESS_LOG_FLUSH);
                        crate::logging::flush_access_log();
                    }
                })?,
        );
    }
    Ok(RunningServer {
        server,
        stop,
        threads,
        addr,
        failure,
    })
}

/// The body of a refusal the HTTP layer makes itself (before routing), in
/// the envelope, through the one error table.
fn refusal_body(status: u16, _reason: &str) -> (&'static str, Vec<u8>) {
    let err = match status {
        408 => Error::RequestTimeout,
        414 => Error::UriTooLong,
        417 => Error::ExpectationFailed,
        431 => Error::HeaderTooLarge,
        503 => Error::ServerBusy,
        _ => Error::MalformedRequest,
    };
    let response = rynjer::error(&err);
    debug_assert!(response.status == status || status == 400 || status == 505);
    debug_assert_eq!(response.content_type, "application/json");
    ("application/json", response.body)
}

/// Reads a shared open file (`&File` reads, and the response owns it).
struct FileReader(std::sync::Arc<std::fs::File>);

impl std::io::Read for FileReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        (&*self.0).read(buf)
    }
}

fn request_id(incoming: Option<&str>) -> String {
    match incoming {
        Some(id)
            if !id.is_empty()
                && id.len() <= REQUEST_ID_CHARS_MAX
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) =>
        {
            id.to_owned()
        }
        _ => random_id("req_"),
    }
}

/// Reads a body of at most `limit` bytes (the route's: [`super::BODY_BYTES_MAX`]
/// for all but upstream callbacks) within `deadline`.
fn read_body(
    reader: &mut dyn Read,
    declared: Option<usize>,
    deadline: Duration,
    limit: usize,
) -> Result<Vec<u8>, Error> {
    if declared.is_some_and(|length| length > limit) {
        return Err(Error::PayloadTooLarge { limit_bytes: limit });
    }
    let started = Instant::now();
    let mut body = Vec::with_capacity(declared.unwrap_or(0).min(limit));
    let mut chunk = [0u8; 8192];
    loop {
        if started.elapsed() > deadline {
            return Err(Error::RequestTimeout);
        }
        match reader.read(&mut chunk) {
            Ok(0) => return Ok(body),
            Ok(n) => {
                if body.len() + n > limit {
                    return Err(Error::PayloadTooLarge { limit_bytes: limit });
                }
                body.extend_from_slice(&chunk[..n]);
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Err(Error::RequestTimeout),
        }
    }
}

fn serve_one(state: &State, config: &ServerConfig, mut wire: tiny_http::Request) {
    let started = Instant::now();
    let headers: Vec<(String, String)> = wire
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_ascii_lowercase(),
                h.value.as_str().to_owned(),
            )
        })
        .collect();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let id = request_id(find("x-request-id"));
    let url = wire.url().to_owned();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let declared = wire.body_length();
    let mut request = Request {
        method: wire.method().as_str().to_ascii_uppercase(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        body: Vec::new(),
        request_id: id.clone(),
        client_address: wire
            .remote_addr()
            .map_or_else(String::new, |addr| addr.ip().to_string()),
    };
    let limit = super::router::body_bytes_max(&request.method, &request.path)
        .unwrap_or(super::BODY_BYTES_MAX);
    let response = match read_body(wire.as_reader(), declared, config.body_deadline, limit) {
        Ok(body) => {
            request.body = body;
            handle(state, &request)
        }
        Err(err) => dialects::error(super::router::dialect_of(&request.path), &err),
    };
    let (code, bytes) = (response.status, response.body_len());
    send(wire, response, &id);
    if config.access_log {
        crate::logging::access_line(format_args!(
            "{} {} {} {} {} {}B {}ms",
            format_rfc3339(SystemClock.now()),
            id,
            request.method,
            request.path,
            code,
            bytes,
            started.elapsed().as_millis()
        ));
    }
}

fn send(wire: tiny_http::Request, response: Response, request_id: &str) {
    let length = usize::try_from(response.body_len()).ok();
    let body: Box<dyn std::io::Read + Send> = match &response.file {
        // A kept output streams from its open file; `Content-Length` is
        // its length, so the connection stays reusable.
        Some(file) => Box::new(FileReader(file.file.clone()).take(file.len)),
        None => Box::new(std::io::Cursor::new(response.body)),
    };
    let mut out = tiny_http::Response::new(
        tiny_http::StatusCode(response.status),
        Vec::new(),
        body,
        length,
        None,
    );
    let mut headers = vec![
        ("Content-Type", response.content_type.into_owned()),
        ("X-Request-Id", request_id.to_owned()),
        ("X-Content-Type-Options", "nosniff".to_owned()),
    ];
    headers.extend(response.headers);
    for (name, value) in headers {
        if let Ok(header) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            out.add_header(header);
        }
    }
    if response.status == 413 || response.status == 408 {
        // The rest of the body is not read: the connection closes rather
        // than read it (a declared length is never buffered or drained).
        out = out.with_connection_close();
    }
    // A client that went away is not an error worth more than a log line.
    if let Err(err) = wire.respond(out) {
        eprintln!("request_id={request_id} could not send the response: {err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_bounded() {
        use crate::http::BODY_BYTES_MAX;
        let secs = Duration::from_secs(5);
        let big = vec![b'x'; BODY_BYTES_MAX + 1];
        let err = read_body(&mut big.as_slice(), None, secs, BODY_BYTES_MAX).expect_err("too big");
        assert_eq!(err.code(), "payload_too_large");
        let err = read_body(
            &mut [].as_slice(),
            Some(BODY_BYTES_MAX + 1),
            secs,
            BODY_BYTES_MAX,
        )
        .expect_err("declared too big");
        assert_eq!(err.code(), "payload_too_large");
        let ok = read_body(&mut b"{}".as_slice(), Some(2), secs, BODY_BYTES_MAX).expect("small");
        assert_eq!(ok, b"{}");
        // A route with a larger bound (an upstream callback) takes more.
        let ok = read_body(&mut big.as_slice(), None, secs, BODY_BYTES_MAX * 4).expect("larger");
        assert_eq!(ok.len(), BODY_BYTES_MAX + 1);
    }

    #[test]
    fn a_lost_listener_is_reported_not_lived_with() {
        use creditgate::{Gate, ManualClock, StoreOptions};
        let dir = tempfile::tempdir().expect("tempdir");
        let gate = Gate::open(
            &StoreOptions::new(dir.path().join("l.db")),
            Arc::new(ManualClock::new(1_790_000_000_000)),
        )
        .expect("open");
        let state = Arc::new(State {
            gate: Arc::new(gate),
            public_base_url: "http://127.0.0.1:0".into(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let handle = listener.try_clone().expect("clone");
        let config = ServerConfig {
            threads: 2,
            read_timeout: Duration::from_millis(200),
            header_deadline: Duration::from_millis(200),
            connections_max: 8,
            body_deadline: Duration::from_millis(400),
            access_log: false,
        };
        let running = start(state, listener, &config).expect("start");
        assert_eq!(running.failure(), None);
        // Idle past the read timeout: that is not a failure.
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(running.failure(), None, "an idle listener is not lost");
        // Shutting a listening socket down makes accept() fail with EINVAL:
        // the listener is gone for good.
        socket2::SockRef::from(&handle)
            .shutdown(std::net::Shutdown::Both)
            .expect("shutdown");
        let deadline = Instant::now() + Duration::from_secs(5);
        while running.failure().is_none() {
            assert!(Instant::now() < deadline, "the loss is reported");
            std::thread::sleep(Duration::from_millis(20));
        }
        running.shutdown();
    }

    #[test]
    fn request_ids_are_kept_when_sane() {
        assert_eq!(request_id(Some("abc-123")), "abc-123");
        assert!(request_id(Some("has space")).starts_with("req_"));
        assert!(request_id(Some(&"x".repeat(65))).starts_with("req_"));
        assert!(request_id(None).starts_with("req_"));
    }
}
