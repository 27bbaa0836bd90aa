//! creditgate addition: the bounds a server puts on what one client can make
//! it hold (connections, threads, header bytes, header time, unread body
//! bytes), and the per-connection state that lets a request close its
//! connection or leave its unread body to the connection's own thread.

use std::io::{Read, Result as IoResult};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Renders the body of a response the server itself sends before a request
/// reaches the application (400, 408, 414, 431, 503, ...): the status code
/// and a short reason in, `(content type, body)` out.
pub type RefusalBody = fn(u16, &str) -> (&'static str, Vec<u8>);

/// What one client may make the server hold. Every field has a bound; the
/// defaults are generous enough for ordinary use.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections at once (each holds one thread while it is open).
    /// A connection beyond this is answered 503 and closed at once.
    pub connections_max: usize,
    /// Bytes of the request line (method, target, version); beyond: 414.
    pub request_line_bytes_max: usize,
    /// Bytes of one header line; beyond: 431.
    pub header_line_bytes_max: usize,
    /// Bytes of the whole header block; beyond: 431.
    pub header_block_bytes_max: usize,
    /// From a request's first byte, its request line and headers must have
    /// arrived within this; beyond: 408 and the connection closes. (A slow
    /// client is noticed at its next read, so the bound is this plus at
    /// most one `read_timeout`.)
    pub header_deadline: Duration,
    /// Set on every accepted socket: a read that waits longer fails (an
    /// idle keep-alive connection is closed after this).
    pub read_timeout: Option<Duration>,
    /// Set on every accepted socket: a write that waits longer fails.
    pub write_timeout: Option<Duration>,
    /// Bytes of a request's unread body that the connection thread reads
    /// and throws away to keep the connection usable; a request that left
    /// more unread closes its connection instead. Never buffered whole.
    pub unread_body_drain_bytes_max: usize,
    /// The body of the server's own refusals; `None` sends them empty.
    pub refusal_body: Option<RefusalBody>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections_max: 1024,
            request_line_bytes_max: 8 * 1024,
            header_line_bytes_max: 8 * 1024,
            header_block_bytes_max: 64 * 1024,
            header_deadline: Duration::from_secs(30),
            read_timeout: None,
            write_timeout: None,
            unread_body_drain_bytes_max: 64 * 1024,
            refusal_body: None,
        }
    }
}

/// Shared between a connection's thread and the requests it hands out.
#[derive(Debug, Default)]
pub(crate) struct ConnectionState {
    /// Set when no further request may be read from this connection: the
    /// response said `Connection: close`, or a body was left in a state
    /// where the next request cannot be found.
    close: AtomicBool,
    /// Bytes of the last request's body that its reader left unread.
    unread_body_bytes: AtomicUsize,
    /// While a request's head is being read: when it must have arrived.
    head_deadline: Mutex<Option<Instant>>,
}

impl ConnectionState {
    pub(crate) fn close(&self) {
        self.close.store(true, Ordering::SeqCst);
    }

    pub(crate) fn closing(&self) -> bool {
        self.close.load(Ordering::SeqCst)
    }

    pub(crate) fn leave_unread(&self, bytes: usize) {
        self.unread_body_bytes.store(bytes, Ordering::SeqCst);
    }

    pub(crate) fn take_unread(&self) -> usize {
        self.unread_body_bytes.swap(0, Ordering::SeqCst)
    }

    pub(crate) fn set_head_deadline(&self, deadline: Option<Instant>) {
        *self.head_deadline.lock().unwrap_or_else(|e| e.into_inner()) = deadline;
    }

    fn head_deadline_passed(&self) -> bool {
        self.head_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|deadline| Instant::now() >= deadline)
    }
}

/// Sits between the socket and its buffer: a read from the socket while a
/// request head's deadline has passed fails with `TimedOut`. Only socket
/// reads (buffer refills) pay for the check.
pub(crate) struct DeadlineReader<R> {
    inner: R,
    state: Arc<ConnectionState>,
}

impl<R> DeadlineReader<R> {
    pub(crate) fn new(inner: R, state: Arc<ConnectionState>) -> Self {
        DeadlineReader { inner, state }
    }
}

impl<R: Read> Read for DeadlineReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        if self.state.head_deadline_passed() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request head did not arrive in time",
            ));
        }
        self.inner.read(buf)
    }
}

/// Counts open connections; the count drops when the guard does (also when
/// a connection's thread panics).
pub(crate) struct ConnectionSlot {
    open: Arc<AtomicUsize>,
}

impl ConnectionSlot {
    /// A slot if fewer than `max` connections are open.
    pub(crate) fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<ConnectionSlot> {
        open.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            if n < max {
                Some(n + 1)
            } else {
                None
            }
        })
        .ok()
        .map(|_| ConnectionSlot { open: open.clone() })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}
