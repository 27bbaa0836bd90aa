//! The facade: [`Gate`], the one type embedders hold. Every operation goes
//! through it; where an operation spans two concepts it composes their
//! modules inside one `Store::write`, so both effects commit or neither does.
//! It reads the clock once per operation and passes `now` down.
//!
//! Submodules add the operations of one area each: [`pricing`] (catalogs
//! and estimates), [`generate`] (submit, read, cancel jobs), [`work`]
//! (the worker step), [`media`] (kept outputs: serving, the retention
//! sweep), `identity` (keys, agents, tokens), `external` (the external
//! identity exchange, "Sign in with Moltbook"), [`plans`] (plan tiers
//! and where an account stands against them) and [`console`] (the owner's
//! console: sessions and the views its pages read).

pub mod autotopup;
pub mod codes;
pub mod console;
mod decide;
mod external;
pub mod generate;
mod identity;
pub mod media;
pub mod outbox;
pub mod payments;
pub mod plans;
mod pricing;
pub mod schedule;
pub mod signup;
pub mod spendcaps;
pub mod waiting;
pub mod webhooks;
pub mod work;
pub mod x402;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use rust_decimal::Decimal;

use crate::accounts::{self, Account, NewAccount};
use crate::clock::{Clock, UnixMillis};
use crate::error::{Error, Result};
use crate::identity::IdentityVerifier;
use crate::ids::IdSource;
use crate::jobs::Job;
use crate::ledger::{self, Balance, HistoryPage, Transfer, TransferOutcome};
use crate::media::MediaStore;
use crate::money;
use crate::pricing::Catalog;
use crate::providers::fixture::Scenarios;
use crate::providers::ProviderRegistry;
use crate::ratelimit::{Quota, RateLimit, RateLimiter};
use crate::store::{Store, StoreOptions, WriteStats};
use crate::verify::{self, VerifyReport};

/// How long a job may take before it expires, by default: 30 minutes.
pub const JOB_DEADLINE_MS_DEFAULT: i64 = 30 * 60 * 1000;
/// How much longer than its job a hold lives, by default: 10 minutes. The
/// job machine releases first; the ledger's own expiry is only a backstop.
pub const HOLD_GRACE_MS_DEFAULT: i64 = 10 * 60 * 1000;

/// Gate settings beyond the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateSettings {
    /// The public base URL output links are built on (no trailing slash).
    pub public_base_url: String,
    /// How long a job may take before it expires.
    pub job_deadline_ms: i64,
    /// How much longer than its job a hold lives.
    pub hold_grace_ms: i64,
    /// The first poll's delay after a submission, and the backoff's base.
    pub poll_interval_ms_min: i64,
    /// The longest wait between polls.
    pub poll_interval_ms_max: i64,
    /// The longest wait before a submission is retried.
    pub submit_backoff_ms_max: i64,
    /// Requests per caller, for [`Gate::admit`] (off by default).
    pub rate_limit: RateLimit,
    /// Whether and how agents may register themselves (off by default).
    pub self_registration: Option<signup::SelfRegistration>,
    /// The operator's default model per product, for requests that name
    /// only a product ([`Gate::default_model`]).
    pub default_models: signup::DefaultModels,
}

impl Default for GateSettings {
    fn default() -> Self {
        GateSettings {
            public_base_url: "http://127.0.0.1:8080".to_owned(),
            job_deadline_ms: JOB_DEADLINE_MS_DEFAULT,
            hold_grace_ms: HOLD_GRACE_MS_DEFAULT,
            poll_interval_ms_min: work::POLL_INTERVAL_MS_MIN,
            poll_interval_ms_max: work::POLL_INTERVAL_MS_MAX,
            submit_backoff_ms_max: work::SUBMIT_BACKOFF_MS_MAX,
            rate_limit: RateLimit {
                per_sec: 0,
                burst: 0,
            },
            self_registration: None,
            default_models: signup::DefaultModels::new(),
        }
    }
}

/// The facade embedders hold: one store, one clock, every operation.
#[derive(Debug)]
pub struct Gate {
    store: Store,
    clock: Arc<dyn Clock>,
    /// Parsed catalogs by version. Versions are immutable, so entries never
    /// go stale.
    catalogs: RwLock<HashMap<String, Arc<Catalog>>>,
    providers: ProviderRegistry,
    settings: GateSettings,
    limiter: RateLimiter,
    /// Self-registrations per client address.
    signup_limiter: signup::SignupLimiter,
    /// Failed console sign-ins per client address.
    sign_ins: crate::identity::sessions::SignInThrottle,
    /// External identity providers whose exchange is on, at most one per
    /// provider name; none by default.
    identity_providers: Vec<IdentityProvider>,
    /// Submission answers the worker could not record yet.
    unrecorded: work::Unrecorded,
    /// When each running job is polled next.
    schedule: schedule::PollSchedule,
    /// Calls in flight per provider instance.
    slots: work::ProviderSlots,
    /// How the worker steps have been going.
    step_health: work::StepHealth,
    /// Where job changes are announced to callers waiting for a job.
    job_events: waiting::JobEvents,
    /// Where outputs are kept before a job succeeds (none: outputs are
    /// recorded as the provider gave them).
    media: Option<Arc<dyn MediaStore>>,
    /// How long kept outputs are served after their job succeeded.
    media_retention_ms: i64,
    /// Top-ups through Stripe, when configured.
    stripe: Option<payments::StripeRail>,
    x402: Option<x402::X402Rail>,
    /// The key outgoing webhooks are signed with, when configured.
    webhook_key: Option<crate::secret::Secret>,
}

/// An external identity provider configured on a gate: how its tokens are
/// verified and where its first-seen agents are bound.
#[derive(Debug, Clone)]
struct IdentityProvider {
    verifier: Arc<dyn IdentityVerifier>,
    default_account: Option<String>,
}

impl Gate {
    /// Opens (creating and migrating if needed) the database of `options`.
    pub fn open(options: &StoreOptions, clock: Arc<dyn Clock>) -> Result<Gate> {
        let store = Store::open(options)?;
        let schedule = schedule::PollSchedule::default();
        schedule.rebuild(store.read(crate::jobs::running)?);
        Ok(Gate {
            store,
            schedule,
            clock,
            catalogs: RwLock::new(HashMap::new()),
            providers: ProviderRegistry::fixture(Scenarios::shipped()),
            settings: GateSettings::default(),
            limiter: RateLimiter::new(GateSettings::default().rate_limit),
            signup_limiter: signup::SignupLimiter::default(),
            sign_ins: crate::identity::sessions::SignInThrottle::default(),
            identity_providers: Vec::new(),
            unrecorded: work::Unrecorded::default(),
            slots: work::ProviderSlots::default(),
            step_health: work::StepHealth::default(),
            job_events: waiting::JobEvents::default(),
            media: None,
            media_retention_ms: media::MEDIA_RETENTION_MS_DEFAULT,
            stripe: None,
            x402: None,
            webhook_key: None,
        })
    }

    /// Turns on the identity exchange of `verifier`'s provider (replacing
    /// any verifier of the same provider). An agent seen for the first time
    /// is bound to `default_account` at once when it is set (any scope but
    /// admin); otherwise the exchange answers a registration code for its
    /// owner to bind. Off by default. The account is checked on each
    /// exchange (a missing one is `not_found`).
    pub fn with_identity_verifier(
        mut self,
        verifier: Arc<dyn IdentityVerifier>,
        default_account: Option<String>,
    ) -> Gate {
        let provider = verifier.provider();
        self.identity_providers
            .retain(|known| known.verifier.provider() != provider);
        self.identity_providers.push(IdentityProvider {
            verifier,
            default_account,
        });
        self
    }

    /// Replaces where the random bits of minted ids (accounts, jobs, usage
    /// events, keys, agents, token families) come from: the OS by default;
    /// a [`SeededIds`](crate::ids::SeededIds) makes a test's ids replay.
    /// Secrets always take the OS's randomness.
    pub fn with_id_source(mut self, ids: Arc<dyn IdSource>) -> Gate {
        self.store.set_id_source(ids);
        self
    }

    /// Replaces the providers (by default: the fixture provider with the
    /// shipped scenarios, under the name `fixture`).
    pub fn with_providers(mut self, providers: ProviderRegistry) -> Gate {
        self.providers = providers;
        self
    }

    /// Replaces the settings.
    pub fn with_settings(mut self, settings: GateSettings) -> Gate {
        self.limiter = RateLimiter::new(settings.rate_limit);
        self.settings = settings;
        self
    }

    /// Admits one request of an authenticated caller under the rate limit
    /// of the settings (per credential: an API key or a token family) and
    /// says where the caller stands (`None` when the rate limit is off), or
    /// refuses with [`Error::RateLimited`].
    pub fn admit(&self, principal: &crate::identity::Principal) -> Result<Option<Quota>> {
        let caller = match &principal.via {
            crate::identity::Via::Key { key_id, .. } => key_id.as_str(),
            crate::identity::Via::AccessToken { family_id, .. } => family_id.as_str(),
        };
        self.limiter.admit(caller, self.clock.now())
    }

    /// Where the caller of a refused request stands, for a refusal by a
    /// limit with numbers: [`Error::RateLimited`] (the rate limit's burst,
    /// none left, available again after the wait) or
    /// [`Error::PlanLimitReached`] (the plan's cap, none left, the next UTC
    /// midnight). `None` for every other error.
    pub fn quota_of_refusal(&self, err: &Error) -> Option<Quota> {
        match err {
            Error::RateLimited { retry_after_ms } => Some(
                self.limiter
                    .refused_quota(*retry_after_ms, self.clock.now()),
            ),
            Error::PlanLimitReached {
                limit, reset_at, ..
            } => Some(Quota {
                limit: *limit,
                remaining: 0,
                reset_at: *reset_at,
            }),
            _ => None,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &GateSettings {
        &self.settings
    }

    /// The base URL of a job's outputs: `<public>/v1/files/<job>/<token>`.
    pub fn output_url_base(&self, job: &Job) -> String {
        format!(
            "{}/v1/files/{}/{}",
            self.settings.public_base_url.trim_end_matches('/'),
            job.id,
            job.output_token
        )
    }

    /// Where upstream webhooks of provider instance `provider` reach us:
    /// `<public>/v1/providers/<provider>/webhook`.
    pub fn webhook_url(&self, provider: &str) -> String {
        format!(
            "{}/v1/providers/{provider}/webhook",
            self.settings.public_base_url.trim_end_matches('/')
        )
    }

    /// The clock this gate reads.
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// Copies the database, consistent as of one instant, to `dest`, which
    /// must not exist yet (else [`Error::InvalidRequest`] on `dest`). Writes
    /// that go on meanwhile are either wholly in the copy or not at all.
    pub fn backup(&self, dest: &Path) -> Result<()> {
        self.store.backup(dest)
    }

    /// The write path's counters (batches, operations, queued), for
    /// benchmarks and health checks.
    pub fn write_stats(&self) -> WriteStats {
        self.store.write_stats()
    }

    /// The underlying store, for the workspace's own tests that inspect or
    /// tamper with SQL. Built only with the `test-support` feature, which
    /// only dev-dependencies turn on: no part of the API.
    #[cfg(feature = "test-support")]
    #[doc(hidden)]
    pub fn store_for_tests(&self) -> &Store {
        &self.store
    }

    /// Creates an account and its wallet, atomically. An account created
    /// without a plan is put on the default plan the operator named
    /// ([`Gate::set_default_plan`]), or on [`accounts::DEFAULT_PLAN`] (no
    /// caps) when none is named.
    pub fn create_account(&self, new: &NewAccount) -> Result<Account> {
        let now = self.clock.now();
        let mut new = new.clone();
        self.store.write(move |tx| {
            if new.plan.is_none() {
                new.plan = crate::plans::default_plan(tx)?;
            }
            let account = accounts::insert(tx, &new, now)?;
            ledger::create_wallet(tx, &account.id, new.allow_negative, now)?;
            Ok(account)
        })
    }

    /// An account by id.
    pub fn account(&self, id: &str) -> Result<Account> {
        self.store.read(|conn| accounts::get(conn, id))
    }

    /// Every account, oldest first (at most [`accounts::ACCOUNTS_LIST_MAX`]).
    pub fn list_accounts(&self) -> Result<Vec<Account>> {
        self.store.read(accounts::list)
    }

    /// Tops up an account's wallet by `amount` credits. Idempotent on
    /// `transfer_id`.
    pub fn grant(
        &self,
        transfer_id: &str,
        account_id: &str,
        amount: Decimal,
        memo: &str,
    ) -> Result<TransferOutcome> {
        let micros = money::positive_micros(amount)?;
        let now = self.clock.now();
        let (id, account, memo) = owned3(transfer_id, account_id, memo);
        self.store
            .write(move |tx| ledger::grant(tx, &id, &account, micros, &memo, now))
    }

    /// Sets whether `account_id`'s wallet may go below zero: a postpaid
    /// account, whose holds may overdraw and which a refund or dispute of
    /// a top-up may take below zero (otherwise what the wallet lacks is
    /// recorded as unrecovered). Refused for a wallet below zero.
    pub fn set_allow_negative(&self, account_id: &str, allow: bool) -> Result<()> {
        let account = account_id.to_owned();
        self.store
            .write(move |tx| ledger::set_allow_negative(tx, &account, allow))
    }

    /// Grants `amount` promotional credits to an account's wallet: spent
    /// before paid credits (the soonest-expiring first), and what is left
    /// at `expires_at` is taken back by a transfer. Idempotent on
    /// `transfer_id`.
    pub fn grant_promotional(
        &self,
        transfer_id: &str,
        account_id: &str,
        amount: Decimal,
        expires_at: UnixMillis,
        memo: &str,
    ) -> Result<TransferOutcome> {
        let micros = money::positive_micros(amount)?;
        let now = self.clock.now();
        let (id, account, memo) = owned3(transfer_id, account_id, memo);
        self.store.write(move |tx| {
            let outcome =
                ledger::grant_expiring(tx, &id, &account, micros, expires_at, &memo, now)?;
            if !outcome.replayed {
                outbox::balance_moved(tx, &account, now)?;
            }
            Ok(outcome)
        })
    }

    /// Takes back promotional credits past their expiry (one batch of at
    /// most [`ledger::EXPIRE_BATCH_MAX`]); returns how many buckets
    /// expired. A hold also takes back its own wallet's first, so this
    /// sweep only keeps balances honest between holds.
    pub fn expire_promotional_credits(&self) -> Result<usize> {
        let now = self.clock.now();
        self.store
            .write(move |tx| ledger::expire_grants_due(tx, now))
    }

    /// An account's promotional credits not yet spent or expired, soonest
    /// expiring first (the paid credits are the balance's available less
    /// their available).
    pub fn promotional_credits(&self, account_id: &str) -> Result<Vec<ledger::PromoBucket>> {
        self.store.read(|conn| {
            accounts::get(conn, account_id)?;
            ledger::promo_buckets(conn, account_id)
        })
    }

    /// Reserves `amount` credits of an account's wallet until captured,
    /// released, or expired at `deadline`. Idempotent on `transfer_id`.
    pub fn hold(
        &self,
        transfer_id: &str,
        account_id: &str,
        amount: Decimal,
        deadline: Option<UnixMillis>,
        memo: &str,
    ) -> Result<TransferOutcome> {
        let micros = money::positive_micros(amount)?;
        let now = self.clock.now();
        let (id, account, memo) = owned3(transfer_id, account_id, memo);
        self.store
            .write(move |tx| ledger::hold(tx, &id, &account, micros, deadline, &memo, now))
    }

    /// Posts `amount` credits of hold `hold_id`; the rest returns to the
    /// wallet. Idempotent on `transfer_id`.
    pub fn capture(
        &self,
        transfer_id: &str,
        hold_id: &str,
        amount: Decimal,
    ) -> Result<TransferOutcome> {
        let micros = money::positive_micros(amount)?;
        let now = self.clock.now();
        let (id, hold) = (transfer_id.to_owned(), hold_id.to_owned());
        self.store
            .write(move |tx| ledger::capture(tx, &id, &hold, micros, now))
    }

    /// Voids hold `hold_id`. Idempotent on `transfer_id`.
    pub fn release(&self, transfer_id: &str, hold_id: &str) -> Result<TransferOutcome> {
        let now = self.clock.now();
        let (id, hold) = (transfer_id.to_owned(), hold_id.to_owned());
        self.store
            .write(move |tx| ledger::release(tx, &id, &hold, now))
    }

    /// Expires the holds whose deadline the clock has reached (a bounded
    /// batch; call again while it returns [`ledger::EXPIRE_BATCH_MAX`]).
    pub fn expire_due_holds(&self) -> Result<Vec<TransferOutcome>> {
        let now = self.clock.now();
        self.store.write(move |tx| ledger::expire_due(tx, now))
    }

    /// Refunds `amount` credits of capture `charge_id` to its wallet.
    /// Idempotent on `transfer_id`.
    pub fn refund(
        &self,
        transfer_id: &str,
        charge_id: &str,
        amount: Decimal,
        memo: &str,
    ) -> Result<TransferOutcome> {
        let micros = money::positive_micros(amount)?;
        let now = self.clock.now();
        let (id, charge, memo) = owned3(transfer_id, charge_id, memo);
        self.store
            .write(move |tx| ledger::refund(tx, &id, &charge, micros, &memo, now))
    }

    /// An account's balance (micro-credits).
    pub fn balance(&self, account_id: &str) -> Result<Balance> {
        self.store.read(|conn| ledger::balance(conn, account_id))
    }

    /// A page of an account's transfers, newest first.
    pub fn history(
        &self,
        account_id: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<HistoryPage> {
        self.store
            .read(|conn| ledger::history(conn, account_id, cursor, limit))
    }

    /// A transfer by id.
    pub fn transfer(&self, id: &str) -> Result<Transfer> {
        self.store
            .read(|conn| ledger::find_transfer(conn, id))?
            .ok_or_else(|| Error::NotFound {
                what: "transfer",
                id: id.to_owned(),
            })
    }

    /// Checks every ledger invariant against the database.
    pub fn verify_ledger(&self) -> Result<VerifyReport> {
        self.store.read(verify::verify)
    }
}

/// Owned copies of three borrowed strings, for a write that runs on the
/// writer thread.
fn owned3(a: &str, b: &str, c: &str) -> (String, String, String) {
    (a.to_owned(), b.to_owned(), c.to_owned())
}

/// What the crate's own tests start from.
#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::Arc;

    use super::Gate;
    use crate::accounts::NewAccount;
    use crate::clock::ManualClock;
    use crate::store::StoreOptions;

    /// A gate over a fresh database named `name` in `dir`, with the Rynjer
    /// catalog and an account holding 100 credits: the gate, its clock and
    /// the account id.
    pub(crate) fn funded_gate(
        dir: &std::path::Path,
        name: &str,
    ) -> (Gate, Arc<ManualClock>, String) {
        let clock = Arc::new(ManualClock::new(1_790_000_000_000));
        let gate = Gate::open(&StoreOptions::new(dir.join(name)), clock.clone()).expect("open");
        gate.import_catalog(include_str!("../../../fixtures/catalogs/rynjer.json"))
            .expect("catalog");
        let account = gate
            .create_account(&NewAccount::named("a"))
            .expect("account")
            .id;
        gate.grant("seed", &account, 100.into(), "").expect("grant");
        (gate, clock, account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::ids::SeededIds;

    /// Opens a gate minting ids from `seed`, creates an account and a key,
    /// and returns (account id, key id, key secret).
    fn mint(seed: u64) -> (String, String, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let gate = Gate::open(
            &StoreOptions::new(dir.path().join("ids.db")),
            Arc::new(ManualClock::new(1_790_000_000_000)),
        )
        .expect("open")
        .with_id_source(Arc::new(SeededIds::new(seed)));
        let account = gate
            .create_account(&NewAccount::named("ids"))
            .expect("account");
        let (key, secret) = gate
            .create_api_key(&account.id, "k", &["admin".to_owned()], None)
            .expect("key");
        (account.id, key.id, secret)
    }

    #[test]
    fn a_seeded_id_source_replays_the_ids_but_never_the_secrets() {
        let (first, again, other) = (mint(7), mint(7), mint(8));
        assert_eq!(
            (&first.0, &first.1),
            (&again.0, &again.1),
            "same seed, same ids"
        );
        assert_ne!(first.0, other.0, "another seed, other ids");
        assert_ne!(first.2, again.2, "secrets take the OS's randomness");
    }
}
