//! The process's one `log` sink: what libraries report through the `log`
//! facade (the HTTP server's accept loop: skipped connections, descriptor
//! exhaustion, a lost listener) goes to stderr, one line each. Without a
//! sink installed those reports were dropped.

use log::{Level, LevelFilter, Log, Metadata, Record};

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
