//! # creditgate: the core of a self-hostable credits gateway
//!
//! A synchronous, deterministic library: a double-entry credit ledger with
//! holds, captures and releases, over SQLite, and the identities that spend
//! from it (API keys, ed25519-signed agents, short-lived tokens; see
//! [`identity`]). It has **no networking code** and **takes no timestamps
//! from the OS** in its logic: time comes from the [`Clock`] you hand to
//! [`Gate::open`], so tests and embedders can drive it with a
//! [`ManualClock`]. The `creditgate` binary (crate
//! `creditgate-appliance`) wraps it with a CLI and HTTP.
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
pub mod clock;
pub mod error;
pub mod identity;
pub mod ids;
pub mod ledger;
pub mod money;
pub mod store;
pub mod verify;

use std::sync::Arc;

use rust_decimal::Decimal;
use serde_json::Value;

use identity::keys::{NewKey, Owner};
use identity::signing;
use identity::tokens::Refreshed;
use identity::{agents, keys, scopes, tokens, Credential};
use store::Tx;

pub use accounts::{Account, NewAccount};
pub use clock::{Clock, ManualClock, SystemClock, UnixMillis};
pub use error::{Error, Result};
pub use identity::{
    verify_signed_request, Agent, AgentRegistration, ApiKeyInfo, CreatedAgentKey, Principal,
    SignedFields, TokenGrant, Via,
};
pub use ledger::{Balance, HistoryPage, Transfer, TransferKind, TransferOutcome};
pub use store::{Store, StoreOptions, Synchronous};
pub use verify::{VerifyReport, Violation};

/// The facade embedders hold: one store, one clock, every operation.
#[derive(Debug)]
pub struct Gate {
    store: Store,
    clock: Arc<dyn Clock>,
}

impl Gate {
    /// Opens (creating and migrating if needed) the database of `options`.
    pub fn open(options: &StoreOptions, clock: Arc<dyn Clock>) -> Result<Gate> {
        Ok(Gate {
            store: Store::open(options)?,
            clock,
        })
    }

    /// The clock this gate reads.
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// The underlying store (for backups and for tests that inspect SQL).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Creates an account and its wallet, atomically.
    pub fn create_account(&self, new: &NewAccount) -> Result<Account> {
        let now = self.clock.now();
        let new = new.clone();
        self.store.write(move |tx| {
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

impl Gate {
    // ----- identity: API keys ---------------------------------------------

    /// Creates an API key (`cg_live_…`) for an account with `scopes` (at
    /// least one; `admin` for owner operations), optionally expiring after
    /// `expires_in_days`. Returns the key and its secret: the only time the
    /// secret is seen; only its hash is kept.
    pub fn create_api_key(
        &self,
        account_id: &str,
        name: &str,
        scopes: &[String],
        expires_in_days: Option<u32>,
    ) -> Result<(ApiKeyInfo, String)> {
        let now = self.clock.now();
        let new = NewKey::validate(account_id, None, "name", name, scopes, expires_in_days)?;
        self.store.write(move |tx| {
            accounts::get(tx, &new.account_id)?;
            keys::insert(tx, &new, now)
        })
    }

    /// An account's keys (its agents' included), oldest first, without
    /// secrets.
    pub fn list_api_keys(&self, account_id: &str) -> Result<Vec<ApiKeyInfo>> {
        self.store.read(|conn| {
            accounts::get(conn, account_id)?;
            keys::list_for_account(conn, account_id)
        })
    }

    /// One of an account's keys; another account's key is `not_found`.
    pub fn api_key(&self, account_id: &str, key_id: &str) -> Result<ApiKeyInfo> {
        self.store
            .read(|conn| keys::get_owned(conn, Owner::Account(account_id), key_id))
    }

    /// Revokes a key, whoever owns it (the operator's CLI). Idempotent;
    /// effective on the very next [`Gate::authenticate`], and for the
    /// access tokens exchanged for it too.
    pub fn revoke_api_key(&self, key_id: &str) -> Result<ApiKeyInfo> {
        let now = self.clock.now();
        let key_id = key_id.to_owned();
        self.store
            .write(move |tx| keys::revoke(tx, Owner::Operator, &key_id, now))
    }

    /// Revokes one of an account's keys (an admin route acting for that
    /// account); another account's key is `not_found`. Idempotent.
    pub fn revoke_account_api_key(&self, account_id: &str, key_id: &str) -> Result<ApiKeyInfo> {
        let now = self.clock.now();
        let (account_id, key_id) = (account_id.to_owned(), key_id.to_owned());
        self.store
            .write(move |tx| keys::revoke(tx, Owner::Account(&account_id), &key_id, now))
    }

    /// Authenticates a bearer credential (the bare secret or a whole
    /// `Authorization` header value): an API key or an access token.
    /// Refusals: [`Error::Unauthorized`] (missing, unknown, revoked or
    /// expired key; revoked token family), [`Error::TokenExpired`]. Marks
    /// a key's `last_used_at` at most once per
    /// [`identity::keys::LAST_USED_INTERVAL_SECS`].
    pub fn authenticate(&self, bearer: &str) -> Result<Principal> {
        let now = self.clock.now();
        let authenticated = self
            .store
            .read(|conn| identity::authenticate(conn, bearer, now))?;
        if let Some(key_id) = authenticated.touch_key {
            self.store.write(move |tx| keys::touch(tx, &key_id, now))?;
        }
        Ok(authenticated.principal)
    }

    // ----- identity: the agent flow -----------------------------------------

    /// `POST /api/v1/agents/register`: an agent registers its ed25519
    /// `public_key` (hex) with `agent_name` and `agent_version`, signing
    /// the request with that same key. Returns its id and a registration
    /// code for its owner to bind (expiring after
    /// [`identity::agents::REGISTRATION_TTL_SECS`]). Registering a known key
    /// again rotates its code.
    pub fn register_agent(
        &self,
        method: &str,
        path: &str,
        body: &Value,
    ) -> Result<AgentRegistration> {
        let now = self.clock.now();
        let public_key = signing::parse_public_key(signing::string_field(body, "public_key")?)?;
        let signed = verify_signed_request(method, path, body, &public_key)?;
        signing::check_timestamp(signed.timestamp, now)?;
        let new = agents::NewAgent::validate(
            public_key,
            signing::string_field(body, "agent_name")?,
            signing::string_field(body, "agent_version")?,
        )?;
        self.store
            .write(move |tx| agents::register(tx, &new, &signed, now))
    }

    /// The owner binds a registration code to an account, allowing the
    /// agent's keys `allowed_scopes` (`None`: any scope but `admin`).
    /// Unknown code: `not_found`; unbound past its expiry:
    /// [`Error::RegistrationExpired`]; binding again to the same account
    /// with the same scopes returns the binding; otherwise
    /// [`Error::AgentAlreadyBound`].
    pub fn bind_agent(
        &self,
        registration_code: &str,
        account_id: &str,
        allowed_scopes: Option<Vec<String>>,
    ) -> Result<Agent> {
        let now = self.clock.now();
        let (code, account_id) = (registration_code.trim().to_owned(), account_id.to_owned());
        self.store.write(move |tx| {
            accounts::get(tx, &account_id)?;
            agents::bind(tx, &code, &account_id, allowed_scopes.as_deref(), now)
        })
    }

    /// An agent by id.
    pub fn agent(&self, agent_id: &str) -> Result<Agent> {
        self.store
            .read(|conn| agents::get(conn, agent_id))?
            .ok_or_else(|| Error::NotFound {
                what: "agent",
                id: agent_id.to_owned(),
            })
    }

    /// `POST /api/v1/agents/keys/create` (signed: `agent_id`,
    /// `registration_code`, `key_name`, `scopes`, optional
    /// `expires_in_days`): the agent creates an API key (`cg_agent_…`) for
    /// the account it is bound to. Refusals after the signature verified:
    /// a code that is not this agent's (`unauthorized`), an unbound agent
    /// ([`Error::AgentNotBound`], or [`Error::RegistrationExpired`] if its
    /// code expired), scopes beyond the binding ([`Error::Forbidden`]).
    pub fn agent_create_key(
        &self,
        method: &str,
        path: &str,
        body: &Value,
    ) -> Result<CreatedAgentKey> {
        let now = self.clock.now();
        let (agent_id, signed) = self.verify_agent_request(method, path, body, now)?;
        let code = signing::string_field(body, "registration_code")?.to_owned();
        let requested = signing::optional_strings_field(body, "scopes")?
            .ok_or_else(|| Error::invalid("scopes", "is required"))?;
        let mut draft = NewKey::validate(
            "",
            Some(&agent_id),
            "key_name",
            signing::string_field(body, "key_name")?,
            &requested,
            signing::optional_u32_field(body, "expires_in_days")?,
        )?;
        let agent = agent_id.clone();
        self.signed_write(
            &agent_id,
            signed,
            now,
            move |conn| {
                agents::check_registration_code(conn, &agent, &code)?;
                let agent = agents::get(conn, &agent)?
                    .ok_or_else(|| Error::unauthorized("unknown agent"))?;
                draft.account_id = agents::bound_account(&agent, now)?.to_owned();
                if let Some(scope) = agent.first_disallowed(&draft.scopes) {
                    return Err(Error::Forbidden {
                        scope: scope.to_owned(),
                    });
                }
                Ok(draft)
            },
            move |tx, new| {
                let (info, secret) = keys::insert(tx, &new, now)?;
                Ok(CreatedAgentKey {
                    key_id: info.id,
                    api_key: secret,
                    scopes: info.scopes,
                    expires_at: info.expires_at,
                })
            },
        )
    }

    /// `POST /api/v1/agents/auth/token` (bearer: the agent's API key;
    /// signed: `agent_id`, optional `scopes`, default the key's): exchanges
    /// the key for an access token
    /// ([`identity::tokens::ACCESS_TOKEN_TTL_SECS`]) and a single-use
    /// refresh token, in a new token family. A key that is not this
    /// agent's is `unauthorized`; scopes beyond the key's are
    /// [`Error::Forbidden`].
    pub fn issue_token(
        &self,
        bearer_api_key: &str,
        method: &str,
        path: &str,
        body: &Value,
    ) -> Result<TokenGrant> {
        let now = self.clock.now();
        let (agent_id, signed) = self.verify_agent_request(method, path, body, now)?;
        let requested = signing::optional_strings_field(body, "scopes")?
            .map(|list| scopes::normalize("scopes", &list))
            .transpose()?;
        let secret = match identity::credential(bearer_api_key)? {
            Credential::ApiKey(secret) => secret.to_owned(),
            Credential::AccessToken(_) => {
                return Err(Error::unauthorized("an agent API key is required"))
            }
        };
        let agent = agent_id.clone();
        self.signed_write(
            &agent_id,
            signed,
            now,
            move |conn| {
                let key = keys::find_usable(conn, &secret, now)?;
                if key.agent_id.as_deref() != Some(agent.as_str()) {
                    return Err(Error::unauthorized("the API key is not this agent's"));
                }
                let granted = requested.unwrap_or_else(|| key.scopes.clone());
                if let Some(scope) = scopes::first_uncovered(&key.scopes, &granted) {
                    return Err(Error::Forbidden {
                        scope: scope.to_owned(),
                    });
                }
                Ok((key, granted))
            },
            move |tx, (key, granted)| {
                keys::touch(tx, &key.id, now)?;
                tokens::issue(tx, &key, &granted, now)
            },
        )
    }

    /// `POST /api/v1/agents/auth/refresh`: rotates a refresh token into a
    /// new pair of the same family. A refresh token presented twice revokes
    /// its whole family and is [`Error::RefreshTokenReused`]; an expired one
    /// is [`Error::TokenExpired`]; unknown ones, revoked families and
    /// unusable keys are `unauthorized`.
    pub fn refresh_token(&self, refresh_token: &str) -> Result<TokenGrant> {
        let now = self.clock.now();
        let token = refresh_token.to_owned();
        // The revocation of a reused token's family must commit, so the
        // refusal travels inside `Ok`.
        self.store
            .write(move |tx| match tokens::refresh(tx, &token, now)? {
                Refreshed::Rotated(grant) => Ok(Ok(grant)),
                Refreshed::Reused => Ok(Err(Error::RefreshTokenReused)),
            })?
    }

    /// `POST /api/v1/agents/keys/list` (signed: `agent_id`): the keys this
    /// agent created, without secrets.
    pub fn agent_list_keys(
        &self,
        method: &str,
        path: &str,
        body: &Value,
    ) -> Result<Vec<ApiKeyInfo>> {
        let now = self.clock.now();
        let (agent_id, signed) = self.verify_agent_request(method, path, body, now)?;
        let agent = agent_id.clone();
        self.signed_write(
            &agent_id,
            signed,
            now,
            move |conn| keys::list_for_agent(conn, &agent),
            |_tx, list| Ok(list),
        )
    }

    /// `POST /api/v1/agents/keys/revoke` (signed: `agent_id`, `key_id`):
    /// revokes one of this agent's keys (idempotent); any other key is
    /// `not_found`.
    pub fn agent_revoke_key(&self, method: &str, path: &str, body: &Value) -> Result<ApiKeyInfo> {
        let now = self.clock.now();
        let (agent_id, signed) = self.verify_agent_request(method, path, body, now)?;
        let key_id = signing::id_field(body, "key_id")?.to_owned();
        let agent = agent_id.clone();
        self.signed_write(
            &agent_id,
            signed,
            now,
            move |conn| {
                keys::get_owned(conn, Owner::Agent(&agent), &key_id)?;
                Ok((agent, key_id))
            },
            move |tx, (agent, key_id)| keys::revoke(tx, Owner::Agent(&agent), &key_id, now),
        )
    }

    /// Authenticates a signed agent request up to its nonce: the agent
    /// named by `agent_id` (unknown: `unauthorized`), its signature over
    /// method, path and body, and the timestamp's freshness. Runs outside
    /// the writer (ed25519 verification is the costly part).
    fn verify_agent_request(
        &self,
        method: &str,
        path: &str,
        body: &Value,
        now: UnixMillis,
    ) -> Result<(String, SignedFields)> {
        let agent_id = signing::id_field(body, "agent_id")?.to_owned();
        let public_key = self
            .store
            .read(|conn| agents::verifying_key(conn, &agent_id))?;
        let signed = verify_signed_request(method, path, body, &public_key)?;
        signing::check_timestamp(signed.timestamp, now)?;
        Ok((agent_id, signed))
    }

    /// Runs a verified signed agent request in one write: records its
    /// nonce first, then `check` (reads only: it gets a `&Connection`, so it
    /// cannot call a writer) may refuse, then `apply` writes. A refusal by
    /// `check` still commits the spent nonce, and nothing else, so a signed
    /// request is single use whatever its outcome; a failure in `apply`
    /// rolls everything back.
    fn signed_write<P, T>(
        &self,
        agent_id: &str,
        signed: SignedFields,
        now: UnixMillis,
        check: impl FnOnce(&rusqlite::Connection) -> Result<P> + Send + 'static,
        apply: impl FnOnce(&Tx<'_>, P) -> Result<T> + Send + 'static,
    ) -> Result<T>
    where
        T: Send + 'static,
    {
        let agent_id = agent_id.to_owned();
        self.store.write(move |tx| {
            agents::consume_nonce(tx, &agent_id, &signed, now)?;
            match check(tx) {
                Err(refusal) => Ok(Err(refusal)),
                Ok(plan) => apply(tx, plan).map(Ok),
            }
        })?
    }
}

/// Owned copies of three borrowed strings, for a write that runs on the
/// writer thread.
fn owned3(a: &str, b: &str, c: &str) -> (String, String, String) {
    (a.to_owned(), b.to_owned(), c.to_owned())
}
