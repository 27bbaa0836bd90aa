//! The shared setup of the core's integration tests: a fresh database in
//! a temporary folder behind a `Gate` on a `ManualClock`, the reference
//! catalogs, funded accounts, the raw connection tests tamper through, and
//! the `ledger verify` check every money-moving test ends with. Each test
//! file (`mod common;`) uses the part it needs.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use creditgate::{Gate, ManualClock, NewAccount, StoreOptions, Synchronous};
use rust_decimal::Decimal;

/// The instant every fixture's clock starts at (ms since the epoch).
pub const START: i64 = 1_790_000_000_000;
/// The reference catalogs.
pub const RYNJER: &str = include_str!("../../../fixtures/catalogs/rynjer.json");
pub const KIWIWHALE: &str = include_str!("../../../fixtures/catalogs/kiwiwhale.json");

/// How a fixture's database is opened.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    pub synchronous: Synchronous,
    /// The clock's first instant.
    pub start: i64,
    /// A catalog imported (and so active) before the test starts.
    pub catalog: Option<&'static str>,
    /// Ids from a seeded source (a failing property case replays with the
    /// same ids); `None` takes the OS's randomness.
    pub ids_seed: Option<u64>,
}

impl Default for Setup {
    fn default() -> Setup {
        Setup {
            synchronous: Synchronous::Full,
            start: START,
            catalog: None,
            ids_seed: None,
        }
    }
}

/// A gate over a fresh database file that lives as long as the fixture.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    /// The database file.
    pub path: PathBuf,
    pub clock: Arc<ManualClock>,
    pub gate: Gate,
    pub setup: Setup,
}

/// A fresh database with the default setup: full sync, no catalog.
pub fn fresh() -> Fixture {
    open(Setup::default())
}

/// A fresh database opened as `setup` says.
pub fn open(setup: Setup) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gate.db");
    let clock = Arc::new(ManualClock::new(setup.start));
    let fx = Fixture::around(dir, path, clock, setup);
    if let Some(catalog) = setup.catalog {
        fx.gate.import_catalog(catalog).expect("catalog");
    }
    fx
}

/// A gate over the database at `path`.
pub fn open_gate(
    path: &std::path::Path,
    clock: Arc<ManualClock>,
    synchronous: Synchronous,
) -> Gate {
    let mut options = StoreOptions::new(path);
    options.synchronous = synchronous;
    Gate::open(&options, clock).expect("open")
}

impl Fixture {
    /// A gate over the database at `path`, which `dir` keeps.
    fn around(
        dir: tempfile::TempDir,
        path: PathBuf,
        clock: Arc<ManualClock>,
        setup: Setup,
    ) -> Fixture {
        let mut gate = open_gate(&path, clock.clone(), setup.synchronous);
        if let Some(seed) = setup.ids_seed {
            gate = gate.with_id_source(Arc::new(creditgate::SeededIds::new(seed)));
        }
        Fixture {
            dir,
            path,
            clock,
            gate,
            setup,
        }
    }

    /// Closes the gate and opens the same database again, as a restart does.
    pub fn reopen(self) -> Fixture {
        let Fixture {
            dir,
            path,
            clock,
            gate,
            setup,
        } = self;
        drop(gate);
        Fixture::around(dir, path, clock, setup)
    }

    /// A connection of its own to the database file, past the gate.
    pub fn raw(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(&self.path).expect("raw open")
    }

    pub fn advance_secs(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }
}

/// A new account named `name`, granted `credits` (when above zero) by the
/// grant `seed-<account id>`.
pub fn account(gate: &Gate, name: &str, credits: Decimal) -> String {
    let account = gate
        .create_account(&NewAccount::named(name))
        .expect("create account");
    if credits > Decimal::ZERO {
        gate.grant(
            &format!("seed-{}", account.id),
            &account.id,
            credits,
            "seed",
        )
        .expect("seed grant");
    }
    account.id
}

/// `ledger verify` finds nothing wrong.
pub fn assert_verified(gate: &Gate) {
    let report = gate.verify_ledger().expect("verify runs");
    assert!(report.is_ok(), "ledger verify: {:#?}", report.violations);
}

pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The machine code of a refusal.
pub fn code<T: std::fmt::Debug>(result: creditgate::Result<T>) -> &'static str {
    result.expect_err("expected a refusal").code()
}

/// Runs `run(gate, i)` for `i` in `0..threads`, each on its own thread,
/// all released at once by a barrier; their answers in `i` order.
pub fn race<T: Send + 'static>(
    gate: &Arc<Gate>,
    threads: usize,
    run: impl Fn(&Gate, usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(threads));
    let run = Arc::new(run);
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let (gate, barrier, run) = (gate.clone(), barrier.clone(), run.clone());
            std::thread::spawn(move || {
                barrier.wait();
                run(&gate, i)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect()
}
