//! Stand-in servers for the upstreams creditgate talks to, for offline
//! tests: each module follows one upstream's documented API (routes,
//! statuses, auth header, error bodies) closely enough to exercise an
//! adapter's every path, and can be told to misbehave (429 with
//! `Retry-After`, 5xx, a slow answer, malformed JSON, an output URL that
//! 404s, an oversized output). [`StandIn`] is the shared harness: a real
//! HTTP server on `127.0.0.1:0` on its own thread that records every
//! request it saw.
//!
//! These are test tools: they hold no limits of their own beyond what a
//! test needs, and are never built into the binary.

pub mod comfyui;
pub mod fal;
pub mod kie;
pub mod openai;
pub mod replicate;
pub mod stripe;
pub mod x402;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A request a stand-in received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The method (`GET`, `POST`, ...).
    pub method: String,
    /// The path with its query.
    pub url: String,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Seen {
    /// A header by (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The body as JSON (`Null` if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// What a stand-in answers.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Wait this long before answering (a slow upstream).
    pub delay: Duration,
}

impl Reply {
    /// A JSON answer.
    pub fn json(status: u16, body: &serde_json::Value) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
            delay: Duration::ZERO,
        }
    }

    /// Raw bytes with a content type.
    pub fn bytes(status: u16, content_type: &str, body: Vec<u8>) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body,
            delay: Duration::ZERO,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Answers after `delay`.
    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// A running stand-in: answers each request with its handler, on a pool
/// of threads, until dropped.
pub struct StandIn {
    base_url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    gone: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    server: Arc<tiny_http::Server>,
    threads: Vec<JoinHandle<()>>,
}

impl StandIn {
    /// Starts a stand-in whose `handler` answers every request, with
    /// `threads` requests served at once.
    pub fn start<F>(threads: usize, handler: F) -> StandIn
    where
        F: Fn(&Seen) -> Reply + Send + Sync + 'static,
    {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind a stand-in"));
        let port = server.server_addr().to_ip().expect("an IP address").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let gone: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(handler);
        let threads = (0..threads.max(1))
            .map(|_| {
                let (server, seen, gone, stop, handler) = (
                    server.clone(),
                    seen.clone(),
                    gone.clone(),
                    stop.clone(),
                    handler.clone(),
                );
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let Ok(Some(mut request)) = server.recv_timeout(Duration::from_millis(50))
                        else {
                            continue;
                        };
                        let mut body = Vec::new();
                        let _ = request.as_reader().read_to_end(&mut body);
                        let got = Seen {
                            method: request.method().as_str().to_owned(),
                            url: request.url().to_owned(),
                            headers: request
                                .headers()
                                .iter()
                                .map(|h| {
                                    (
                                        h.field.as_str().as_str().to_ascii_lowercase(),
                                        h.value.as_str().to_owned(),
                                    )
                                })
                                .collect(),
                            body,
                        };
                        seen.lock().expect("lock").push(got.clone());
                        let expired = gone
                            .lock()
                            .expect("lock")
                            .iter()
                            .any(|prefix| got.url.starts_with(prefix.as_str()));
                        let reply = if expired {
                            Reply::bytes(404, "text/plain", b"gone".to_vec())
                        } else {
                            handler(&got)
                        };
                        if !reply.delay.is_zero() {
                            std::thread::sleep(reply.delay);
                        }
                        let mut response = tiny_http::Response::from_data(reply.body)
                            .with_status_code(reply.status);
                        for (name, value) in &reply.headers {
                            if let Ok(header) =
                                tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
                            {
                                response.add_header(header);
                            }
                        }
                        let _ = request.respond(response);
                    }
                })
            })
            .collect();
        StandIn {
            base_url: format!("http://127.0.0.1:{port}"),
            seen,
            gone,
            stop,
            server,
            threads,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Every request seen so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// From now on, every request whose path starts with `prefix` answers
    /// 404 instead of reaching the handler (an upstream's output URL that
    /// expired after it was downloaded).
    pub fn expire(&self, prefix: &str) {
        self.gone.lock().expect("lock").push(prefix.to_owned());
    }

    /// How many requests hit `method` on a path starting with `prefix`.
    pub fn count(&self, method: &str, prefix: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.method == method && s.url.starts_with(prefix))
            .count()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
