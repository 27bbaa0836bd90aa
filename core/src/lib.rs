//! # creditgate: the core of a self-hostable credits gateway
//!
//! A synchronous, deterministic library: a double-entry credit ledger with
//! holds, captures and releases, over SQLite, and the identities that spend
//! from it (API keys, ed25519-signed agents, Moltbook agents, short-lived
//! tokens; see [`identity`]). It **takes no timestamps from the OS** in its
//! logic: time comes from the [`Clock`] you hand to [`Gate::open`], so
//! tests and embedders can drive it with a [`ManualClock`]. Its only
//! networking is one outgoing call: the Moltbook identity verifier
//! (`MoltbookVerifier`, built only with the cargo feature `http`,
//! so an embedder that needs no network call has no HTTP client or TLS
//! stack), made only when an embedder configures it with
//! [`Gate::with_identity_verifier`]. The `creditgate` binary (crate
//! `creditgate-appliance`) turns the feature on and wraps the core with a
//! CLI and HTTP.
//!
//! Cargo features (none on by default): `http` (the Moltbook
//! verifier over HTTP, ureq with rustls) and `test-support` (hidden hooks
//! for the workspace's own tests; never for embedders).
//!
//! [`Gate`] is the facade and the API boundary: every operation goes through
//! it, and it composes the concept modules inside one write transaction.
//!
//! ```
//! use std::sync::Arc;
//! use creditgate::{Gate, ManualClock, NewAccount, StoreOptions};
//! use rust_decimal::Decimal;
//!
//! let dir = tempfile::tempdir()?;
//! let gate = Gate::open(&StoreOptions::new(dir.path().join("g.db")), Arc::new(ManualClock::new(0)))?;
//! let account = gate.create_account(&NewAccount::named("demo"))?;
//! gate.grant("grant-1", &account.id, Decimal::from(100), "welcome")?;
//! let hold = gate.hold("hold-1", &account.id, Decimal::new(165, 4), None, "job")?;
//! gate.capture("capture-1", &hold.transfer.id, Decimal::new(165, 4))?;
//! assert_eq!(gate.balance(&account.id)?.available, 99_983_500);
//! assert!(gate.verify_ledger()?.is_ok());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod accounts;
pub mod autotopup;
pub mod clock;
pub mod codes;
pub mod error;
pub mod identity;
pub mod ids;
pub mod jobs;
pub mod ledger;
pub mod media;
pub mod money;
pub mod outbox;
pub mod payments;
pub mod plans;
pub mod pricing;
pub mod providers;
pub mod ratelimit;
pub mod request;
pub mod secret;
pub mod spendcaps;
pub mod verify;

mod gate;
mod store;

pub use accounts::{Account, NewAccount};
pub use autotopup::{AutoTopUp, AutoTopUpSettings, SavedMethod};
pub use clock::{Clock, ManualClock, SystemClock, UnixMillis};
pub use codes::{Code, NewCode, Redemption};
pub use error::{Error, Result, StorageError};
pub use gate::autotopup::{AutoTopUpOutcome, AutoTopUpState};
pub use gate::codes::Redeemed;
pub use gate::console::{
    Overview, OVERVIEW_DAYS, OVERVIEW_JOBS_MAX, OVERVIEW_TRANSFERS_MAX, OVERVIEW_WINDOW_MS,
};
pub use gate::generate::{OutputFile, Submitted};
pub use gate::media::{
    KeptOutput, ServedOutput, MEDIA_RETENTION_MS_DEFAULT, MEDIA_RETENTION_MS_MAX,
};
pub use gate::payments::TOPUPS_LIST_MAX;
pub use gate::schedule::RUNNING_JOBS_MAX;
pub use gate::signup::{DefaultModels, Registered, SelfRegistration};
pub use gate::waiting::{Waited, JOB_WAITERS_MAX, JOB_WAIT_MS_MAX};
pub use gate::webhooks::WebhookReceipt;
pub use gate::work::{JobFault, WorkReport, WorkerHealth, BUSY_RETRY_MS, FAILING_STEPS_UNHEALTHY};
pub use gate::x402::X402Receipt;
pub use gate::{Gate, GateSettings};
#[cfg(feature = "http")]
pub use identity::MoltbookVerifier;
pub use identity::{
    verify_signed_request, AccessGrant, Agent, AgentRegistration, ApiKeyInfo, CreatedAgentKey,
    ExchangeOutcome, IdentityVerifier, MoltbookConfig, Principal, SignedFields, TokenGrant,
    VerifiedIdentity, Via,
};
pub use ids::{IdSource, OsIds, SeededIds};
pub use jobs::{Job, JobFilter, JobStatus, JobsPage};
pub use ledger::{Balance, HistoryPage, PromoBucket, Transfer, TransferKind, TransferOutcome};
pub use payments::{EventOutcome, TopUp, TopUpStatus};
pub use plans::{Plan, PlanEdit, PlanUsage};
pub use ratelimit::Quota;
pub use spendcaps::{KeySpend, SpendCaps};
pub use store::{OpenMode, OpenProblem, StoreOptions, Synchronous, WriteStats, READ_POOL_SIZE_MAX};
pub use verify::{VerifyReport, Violation};
