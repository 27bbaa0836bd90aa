//! The tiny_http loop: a bounded pool of handler threads over one listener.
//! It turns wire requests into our [`Request`], bounds what a client can
//! make us hold (body size, body arrival time, socket read timeout so a
//! half-sent request cannot pin a handler), stamps every response and log
//! line with an `X-Request-Id`, writes a one-line access log, and stops
//! gracefully: in-flight requests finish, then the threads end.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use creditgate::clock::format_rfc3339;
use creditgate::ids::random_id;
use creditgate::{Clock, Error, SystemClock};

use super::{handle, status, Request, Response, State, BODY_BYTES_MAX, REQUEST_ID_CHARS_MAX};

/// Handler threads, at most.
pub const HTTP_THREADS_MAX: usize = 256;
/// How often an idle handler thread checks for shutdown.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Handler threads (1..=[`HTTP_THREADS_MAX`]).
    pub threads: usize,
    /// A socket read that waits longer than this fails (slow clients).
    pub read_timeout: Duration,
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
}

impl RunningServer {
    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets in-flight requests finish, joins the threads.
    pub fn shutdown(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// Starts the handler threads on an already bound `listener`.
pub fn start(
    state: Arc<State>,
    listener: TcpListener,
    config: &ServerConfig,
) -> std::io::Result<RunningServer> {
    // Accepted sockets inherit these on Linux: a client that stops sending
    // mid-request fails its read instead of holding a thread forever.
    let socket = socket2::SockRef::from(&listener);
    socket.set_read_timeout(Some(config.read_timeout))?;
    socket.set_write_timeout(Some(config.read_timeout))?;
    let addr = listener.local_addr()?;
    let server = Arc::new(
        tiny_http::Server::from_listener(listener, None)
            .map_err(|err| std::io::Error::other(err.to_string()))?,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let threads = (0..config.threads.clamp(1, HTTP_THREADS_MAX))
        .map(|i| {
            let (server, stop, state, config) =
                (server.clone(), stop.clone(), state.clone(), config.clone());
            std::thread::Builder::new()
                .name(format!("http-{i}"))
                .spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        match server.recv_timeout(IDLE_POLL) {
                            Ok(Some(request)) => serve_one(&state, &config, request),
                            Ok(None) => {}
                            Err(_) => break,
                        }
                    }
                })
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    Ok(RunningServer {
        server,
        stop,
        threads,
        addr,
    })
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

/// Reads a body of at most [`BODY_BYTES_MAX`] bytes within `deadline`.
fn read_body(
    reader: &mut dyn Read,
    declared: Option<usize>,
    deadline: Duration,
) -> Result<Vec<u8>, Error> {
    if declared.is_some_and(|length| length > BODY_BYTES_MAX) {
        return Err(Error::PayloadTooLarge {
            limit_bytes: BODY_BYTES_MAX,
        });
    }
    let started = Instant::now();
    let mut body = Vec::with_capacity(declared.unwrap_or(0).min(BODY_BYTES_MAX));
    let mut chunk = [0u8; 8192];
    loop {
        if started.elapsed() > deadline {
            return Err(Error::RequestTimeout);
        }
        match reader.read(&mut chunk) {
            Ok(0) => return Ok(body),
            Ok(n) => {
                if body.len() + n > BODY_BYTES_MAX {
                    return Err(Error::PayloadTooLarge {
                        limit_bytes: BODY_BYTES_MAX,
                    });
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
    };
    let response = match read_body(wire.as_reader(), declared, config.body_deadline) {
        Ok(body) => {
            request.body = body;
            handle(state, &request)
        }
        Err(err) => status::error(&err),
    };
    let (code, bytes) = (response.status, response.body.len());
    send(wire, response, &id);
    if config.access_log {
        eprintln!(
            "{} {} {} {} {} {}B {}ms",
            format_rfc3339(SystemClock.now()),
            id,
            request.method,
            request.path,
            code,
            bytes,
            started.elapsed().as_millis()
        );
    }
}

fn send(wire: tiny_http::Request, response: Response, request_id: &str) {
    let mut out = tiny_http::Response::from_data(response.body).with_status_code(response.status);
    let mut headers = vec![
        ("Content-Type", response.content_type.to_owned()),
        ("X-Request-Id", request_id.to_owned()),
        ("X-Content-Type-Options", "nosniff".to_owned()),
    ];
    if response.status == 413 || response.status == 408 {
        // The rest of the body is not read: do not reuse the connection.
        headers.push(("Connection", "close".to_owned()));
    }
    headers.extend(response.headers);
    for (name, value) in headers {
        if let Ok(header) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            out.add_header(header);
        }
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
        let big = vec![b'x'; BODY_BYTES_MAX + 1];
        let err =
            read_body(&mut big.as_slice(), None, Duration::from_secs(5)).expect_err("too big");
        assert_eq!(err.code(), "payload_too_large");
        let err = read_body(
            &mut [].as_slice(),
            Some(BODY_BYTES_MAX + 1),
            Duration::from_secs(5),
        )
        .expect_err("declared too big");
        assert_eq!(err.code(), "payload_too_large");
        let ok = read_body(&mut b"{}".as_slice(), Some(2), Duration::from_secs(5)).expect("small");
        assert_eq!(ok, b"{}");
    }

    #[test]
    fn request_ids_are_kept_when_sane() {
        assert_eq!(request_id(Some("abc-123")), "abc-123");
        assert!(request_id(Some("has space")).starts_with("req_"));
        assert!(request_id(Some(&"x".repeat(65))).starts_with("req_"));
        assert!(request_id(None).starts_with("req_"));
    }
}
