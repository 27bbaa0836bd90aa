//! Test-only setup shared by the HTTP layer's unit tests: a gate over a
//! fresh database on a manual clock with the shipped catalog, and the
//! server state a socket-free `handle` serves around it.

use std::path::Path;
use std::sync::Arc;

use creditgate::{Gate, ManualClock, StoreOptions};

use super::request::State;

/// The instant the tests' clock starts at (Unix milliseconds).
pub const TEST_NOW_MS: i64 = 1_790_000_000_000;

/// A gate over a fresh database `name` in `dir`, on a manual clock, with
/// the shipped catalog active.
pub fn gate(dir: &Path, name: &str) -> Gate {
    let gate = Gate::open(
        &StoreOptions::new(dir.join(name)),
        Arc::new(ManualClock::new(TEST_NOW_MS)),
    )
    .expect("open");
    gate.import_catalog(crate::serve::SHIPPED_CATALOG)
        .expect("catalog");
    gate
}

/// The state around `gate`.
pub fn state(gate: Gate) -> State {
    State {
        gate: Arc::new(gate),
        public_base_url: "http://127.0.0.1:8080".into(),
    }
}
