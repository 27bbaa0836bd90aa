//! The process's one `log` sink: what libraries report through the `log`
//! facade (the HTTP server's accept loop: skipped connections, descriptor
//! exhaustion, a lost listener) goes to stderr, one line each. Without a
//! sink installed those reports were dropped. And the access log: one line
//! per answered request, formatted into a bounded in-memory buffer and
//! written to stderr by a flusher every [`ACCESS_LOG_FLUSH`], when the
//! buffer fills, and at shutdown, so a request costs no write system call
//! of its own (a formatted `eprintln!` per request was 3.5% of the loaded
//! server's CPU).

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use log::{Level, LevelFilter, Log, Metadata, Record};

/// How often the access log's buffer is written out.
pub const ACCESS_LOG_FLUSH: Duration = Duration::from_millis(100);
/// The access log's buffer, at most: a fuller one is written out at once by
/// the request that filled it (never dropped).
pub const ACCESS_LOG_BUFFER_BYTES_MAX: usize = 64 * 1024;

/// The buffered lines, and the lock that keeps written chunks in order.
struct AccessLog {
    lines: Mutex<Vec<u8>>,
    writing: Mutex<()>,
}

static ACCESS_LOG: AccessLog = AccessLog {
    lines: Mutex::new(Vec::new()),
    writing: Mutex::new(()),
};

/// Appends one access-log line (a newline is added).
pub fn access_line(line: std::fmt::Arguments<'_>) {
    let full = {
        let mut lines = ACCESS_LOG.lines.lock().unwrap_or_else(|p| p.into_inner());
        let _ = lines.write_fmt(line);
        lines.push(b'\n');
        lines.len() >= ACCESS_LOG_BUFFER_BYTES_MAX
    };
    if full {
        flush_access_log();
    }
}

/// Writes the buffered access-log lines to stderr, in order. Errors are
/// ignored: a closed stderr must not take the server down.
pub fn flush_access_log() {
    let _writing = ACCESS_LOG.writing.lock().unwrap_or_else(|p| p.into_inner());
    let chunk = {
        let mut lines = ACCESS_LOG.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.is_empty() {
            return;
        }
        std::mem::take(&mut *lines)
    };
    let _ = std::io::stderr().lock().write_all(&chunk);
}

struct StderrLog;

static STDERR_LOG: StderrLog = StderrLog;

impl Log for StderrLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= Level::Warn
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!(
                "creditgate: {} {}: {}",
                record.level().as_str().to_ascii_lowercase(),
                record.target(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

/// Installs the stderr sink (warnings and errors). Idempotent.
pub fn install() {
    if log::set_logger(&STDERR_LOG).is_ok() {
        log::set_max_level(LevelFilter::Warn);
    }
}
