//! Test-only setup shared by the HTTP layer's unit tests: a gate over a
//! fresh database on a manual clock with the shipped catalog, and the
//! server state a socket-free `handle` serves around it.

use std::path::Path;
use std::sync::Arc;

use creditgate::{Gate, ManualClock, NewAccount, StoreOptions};
use serde_json::Value;

use super::handle;
use super::request::{Request, State};

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

/// A new account named `name`: its id.
pub fn account(gate: &Gate, name: &str) -> String {
    gate.create_account(&NewAccount::named(name))
        .expect("account")
        .id
}

/// `request`'s answer from the socket-free `handle`: its status and JSON.
pub fn answer(state: &State, request: &Request) -> (u16, Value) {
    let response = handle(state, request);
    let value = serde_json::from_slice(&response.body).expect("json");
    (response.status, value)
}
