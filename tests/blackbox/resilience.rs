//! Black-box tests of an appliance left running among hostile or careless
//! clients: it keeps accepting when idle and when out of file descriptors,
//! bounds connections, header bytes and header time, refuses huge bodies
//! without buffering them, and answers malformed input with a JSON 400.
//! Each test uses short, configured timeouts, never long sleeps.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use creditgate_tests::{raw_http, HttpResponse, Sandbox, Server};
use serde_json::json;

fn sandbox() -> Sandbox {
    Sandbox::new(env!("CARGO_BIN_EXE_creditgate"))
}

fn assert_refusal(response: &HttpResponse, status: u16, code: &str) {
    let body = response.json();
    assert_eq!(response.status, status, "{body}");
    assert_eq!(body["code"], json!(status), "{body}");
    assert_eq!(body["data"]["error"], json!(code), "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

fn healthz(server: &Server) -> u16 {
    server.request("GET", "/healthz", None, None).status
}

/// Reads until the peer closes or `within` passes; returns what arrived
/// and whether the peer closed.
fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + within;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    while Instant::now() < deadline {
        match stream.read(&mut chunk) {
            Ok(0) => return (bytes, true),
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (bytes, true),
        }
    }
    (bytes, false)
}

#[test]
fn an_idle_server_keeps_accepting_past_its_read_timeout() {
    // The read timeout used to be set on the listening socket; Linux applies
    // it to accept(), and the accept loop took the first idle timeout as
    // fatal: every later connection was refused while the process lived on.
    let sb = sandbox();
    let mut server = sb.serve(&["--read-timeout-ms", "150"]);
    for round in 0..3 {
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(healthz(&server), 200, "round {round}: still served");
    }
    assert!(server.is_running());
}

#[test]
fn out_of_file_descriptors_the_server_recovers_when_they_are_freed() {
    // With a low RLIMIT_NOFILE, holding connections open exhausts the
    // server's descriptors: accept() fails with EMFILE. That used to end
    // the accept loop for good.
    let sb = sandbox();
    let mut server = sb.serve_with_fd_limit(
        64,
        &["--read-timeout-ms", "60000", "--max-connections", "1000"],
    );
    assert_eq!(healthz(&server), 200);
    let held: Vec<TcpStream> = (0..120)
        .filter_map(|_| TcpStream::connect(&server.addr).ok())
        .collect();
    assert!(
        held.len() > 64,
        "enough connections to exhaust 64 descriptors"
    );
    // Let the accept loop run into the limit.
    std::thread::sleep(Duration::from_millis(300));
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut stream = TcpStream::connect(&server.addr)
            .unwrap_or_else(|err| panic!("connect: {err}\n{}", server.stderr()));
        let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (bytes, _) = read_until_closed(&mut stream, Duration::from_secs(2));
        if bytes.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not served after the descriptors were freed: {:?}\n{}",
            String::from_utf8_lossy(&bytes),
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(server.is_running());
    assert!(
        server.stderr().contains("accept"),
        "the skipped accepts are logged: {}",
        server.stderr()
    );
}

#[test]
fn a_huge_declared_content_length_is_refused_without_allocating_it() {
    // The vendored tiny_http drained an unread body into a buffer the size
    // of the declared length: `Content-Length: 100000000000` aborted the
    // process ("memory allocation of 100000000000 bytes failed").
    let sb = sandbox();
    let mut server = sb.serve(&[]);
    let answer = raw_http(
        &server.addr,
        b"POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000000\r\n\r\n{\"request_id\":",
    );
    assert_refusal(&answer, 413, "payload_too_large");
    assert_eq!(answer.header("connection"), Some("close"));
    std::thread::sleep(Duration::from_millis(200));
    assert!(server.is_running(), "the server survived");
    assert_eq!(healthz(&server), 200);
}

/// Bytes each hostile client sends (a body or one header line).
const HOSTILE_BYTES: usize = 50 * 1024 * 1024;
/// What refusing them all may cost the server, at most.
const REFUSAL_RSS_KIB_MAX: u64 = 16 * 1024;

/// Sends `head`, then streams `HOSTILE_BYTES` of filler unless the server
/// closes first; returns the status the server answered, if any.
fn send_hostile(addr: &str, head: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = stream.write_all(head);
    let filler = vec![b'a'; 1024 * 1024];
    for _ in 0..HOSTILE_BYTES / filler.len() {
        if stream.write_all(&filler).is_err() {
            break;
        }
    }
    let (bytes, _) = read_until_closed(&mut stream, Duration::from_secs(5));
    String::from_utf8_lossy(&bytes)
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
}

#[test]
fn refused_bodies_and_giant_headers_cost_bounded_memory() {
    let sb = sandbox();
    let mut server = sb.serve(&[]);
    assert_eq!(healthz(&server), 200);
    let before = server.proc_status("VmRSS").expect("VmRSS");
    let body_head = format!(
        "POST /v1/credits/estimate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {HOSTILE_BYTES}\r\n\r\n"
    );
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (addr, head) = (server.addr.clone(), body_head.clone());
            std::thread::spawn(move || send_hostile(&addr, head.as_bytes()))
        })
        .collect();
    for client in clients {
        let status = client.join().expect("client");
        assert!(
            matches!(status, Some(413) | None),
            "a refused body: {status:?}"
        );
    }
    // One header line of 50 MB.
    let status = send_hostile(&server.addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ");
    assert!(
        matches!(status, Some(431) | None),
        "a giant header: {status:?}"
    );
    assert!(server.is_running());
    assert_eq!(healthz(&server), 200);
    let after = server.proc_status("VmRSS").expect("VmRSS");
    assert!(
        after.saturating_sub(before) < REFUSAL_RSS_KIB_MAX,
        "refusing 250 MB grew the server from {before} kB to {after} kB"
    );
}

#[test]
fn header_lines_and_blocks_have_limits() {
    let sb = sandbox();
    let server = sb.serve(&[]);
    let long_line = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: {}\r\n\r\n",
        "a".repeat(9 * 1024)
    );
    assert_refusal(
        &raw_http(&server.addr, long_line.as_bytes()),
        431,
        "header_too_large",
    );
    let many_lines: String = (0..100)
        .map(|i| format!("X-Header-{i}: {}\r\n", "b".repeat(500)))
        .collect();
    let block = format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many_lines}\r\n");
    assert_refusal(
        &raw_http(&server.addr, block.as_bytes()),
        431,
        "header_too_large",
    );
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "p".repeat(9 * 1024));
    assert_refusal(
        &raw_http(&server.addr, long_target.as_bytes()),
        414,
        "uri_too_long",
    );
    // Headers of an ordinary size still pass.
    let ordinary = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Ok: {}\r\n\r\n",
        "c".repeat(4 * 1024)
    );
    assert_eq!(raw_http(&server.addr, ordinary.as_bytes()).status, 200);
}

#[test]
fn a_slow_header_client_is_cut_at_the_header_deadline() {
    // Each byte arrives well within the read timeout, so only a deadline on
    // the whole head ends this connection; without one it held a thread
    // for as long as the client liked.
    let sb = sandbox();
    let server = sb.serve(&["--read-timeout-ms", "300"]);
    let mut stream = TcpStream::connect(&server.addr).expect("connect");
    let started = Instant::now();
    let mut closed = false;
    let mut answer = Vec::new();
    for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: "
        .iter()
        .chain([b'a'; 200].iter())
    {
        if stream.write_all(&[*byte]).is_err() {
            closed = true;
            break;
        }
        let (bytes, peer_closed) = read_until_closed(&mut stream, Duration::from_millis(100));
        answer.extend_from_slice(&bytes);
        if peer_closed {
            closed = true;
            break;
        }
        if started.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    assert!(
        closed,
        "a slow head is cut off; it lasted {:?}",
        started.elapsed()
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "answered 408: {text:?}");
    assert!(text.contains("request_timeout"), "{text}");
    assert_eq!(healthz(&server), 200);
}

#[test]
fn connections_beyond_the_bound_get_503_and_threads_stay_bounded() {
    let sb = sandbox();
    let server = sb.serve(&["--max-connections", "8", "--read-timeout-ms", "60000"]);
    assert_eq!(healthz(&server), 200);
    let threads_before = server.proc_status("Threads").expect("Threads");
    let held: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(&server.addr).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let refused = raw_http(
        &server.addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_refusal(&refused, 503, "server_busy");
    assert_eq!(refused.header("retry-after"), Some("1"));
    // Many more idle connections: none gets a thread of its own.
    let extra: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect(&server.addr).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let threads_held = server.proc_status("Threads").expect("Threads");
    assert!(
        threads_held <= threads_before + 8 + 4,
        "threads grew from {threads_before} to {threads_held} with 208 idle connections"
    );
    drop(extra);
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    while healthz(&server) != 200 {
        assert!(Instant::now() < deadline, "served again once they closed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bytes_that_are_not_ascii_in_the_path_or_a_header_get_a_400() {
    let sb = sandbox();
    let server = sb.serve(&[]);
    let path = raw_http(
        &server.addr,
        b"GET /v1/models/\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_refusal(&path, 400, "bad_request");
    let header = raw_http(
        &server.addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Name: caf\xc3\r\nConnection: close\r\n\r\n",
    );
    assert_refusal(&header, 400, "bad_request");
    let garbage = raw_http(
        &server.addr,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    );
    assert_refusal(&garbage, 400, "bad_request");
    assert_eq!(healthz(&server), 200);
}

#[test]
fn a_keep_alive_connection_survives_a_refused_small_request() {
    // A request the router refuses without reading all of a small body
    // leaves the connection usable: the rest is drained in bounded chunks.
    let sb = sandbox();
    let server = sb.serve(&["--read-timeout-ms", "2000"]);
    let mut stream = TcpStream::connect(&server.addr).expect("connect");
    let body = "x".repeat(2000);
    let first = format!(
        "POST /no/such/route HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(first.as_bytes()).expect("send");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    let (bytes, closed) = read_until_closed(&mut stream, Duration::from_secs(5));
    assert!(closed);
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(
        text.matches("HTTP/1.1 ").count(),
        2,
        "two answers on one connection: {text}"
    );
    assert!(text.contains("HTTP/1.1 404"), "{text}");
    assert!(text.contains("HTTP/1.1 200"), "{text}");
}

#[test]
fn a_closed_stdout_does_not_take_the_server_down() {
    // A supervisor that stops reading our stdout closes the pipe; the
    // first-run banner and the one after "listening" then failed to print,
    // and println! panicked the main thread, ending the process.
    use std::process::{Command, Stdio};
    let sb = sandbox();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr").port()
    };
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_creditgate"))
        .arg("--db")
        .arg(sb.db())
        .args(["serve", "--listen", &addr])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    drop(child.stdout.take());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut served = false;
    while Instant::now() < deadline && !served {
        if let Ok(mut stream) = TcpStream::connect(&addr) {
            let _ =
                stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let (bytes, _) = read_until_closed(&mut stream, Duration::from_secs(2));
            served = bytes.starts_with(b"HTTP/1.1 200");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let alive = matches!(child.try_wait(), Ok(None));
    let _ = child.kill();
    let _ = child.wait();
    assert!(served && alive, "served {served}, still running {alive}");
}
