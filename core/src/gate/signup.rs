//! Self-registration: an agent that creates its own account and API key
//! (KiwiWhale's `agent_register.php`), off unless the operator turns it on
//! ([`SelfRegistration`]). Rate-limited per client address, in memory, and
//! atomic: the account, its wallet, its key and its welcome grant (a ledger
//! transfer, when the operator configured one) are one write. Also the
//! operator's map from a product to its default model, for dialects whose
//! requests name no model (AgentName's `type`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use crate::accounts::{self, Account, NewAccount};
use crate::clock::UnixMillis;
use crate::error::{Error, Result};
use crate::identity::keys::{self, NewKey};
use crate::identity::ApiKeyInfo;
use crate::ledger;

use super::Gate;

/// The memo of a welcome grant.
pub const WELCOME_MEMO: &str = "welcome grant (self-registration)";

/// How agents may register themselves, when the operator allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelfRegistration {
    /// Micro-credits granted to each new account (0: none, the account
    /// starts empty).
    pub welcome_micros: i64,
    /// Registrations per client address per clock hour (0: no limit).
    pub per_address_per_hour: u32,
}

/// A self-registered account and its one key (the secret, seen only now).
#[derive(Debug, Clone)]
pub struct Registered {
    /// The new account.
    pub account: Account,
    /// Its key, without the secret.
    pub key: ApiKeyInfo,
    /// The key's secret.
    pub secret: String,
    /// Its balance now: the welcome grant, or 0.
    pub credits_micros: i64,
}

/// The operator's default model per product (`image` → `z-image`).
pub type DefaultModels = BTreeMap<String, String>;

impl Gate {
    /// Whether agents may register themselves here.
    pub fn self_registration(&self) -> Option<SelfRegistration> {
        self.settings.self_registration
    }

    /// Registers an agent's own account named `name`, from the client at
    /// `client_address`: a new account on the default plan, a key with
    /// every product scope, and the welcome grant if any, in one write.
    /// [`Error::NotConfigured`] when self-registration is off,
    /// [`Error::RateLimited`] when the address registered too often.
    pub fn self_register(&self, name: &str, client_address: &str) -> Result<Registered> {
        let Some(policy) = self.settings.self_registration else {
            return Err(Error::NotConfigured {
                feature: "self-registration".into(),
                hint: "ask the operator for an API key".into(),
            });
        };
        self.admit_address(client_address, policy)?;
        let scopes = self.product_scopes()?;
        let new = NewAccount::named(name.trim());
        let now = self.clock.now();
        let registered = self.store.write(move |tx| {
            let mut new = new.clone();
            new.plan = crate::plans::default_plan(tx)?;
            let account = accounts::insert(tx, &new, now)?;
            ledger::create_wallet(tx, &account.id, false, now)?;
            let key = NewKey::validate(&account.id, None, "name", &new.name, &scopes, None)?;
            let (key, secret) = keys::insert(tx, &key, now)?;
            if policy.welcome_micros > 0 {
                let transfer_id = format!("welcome_{}", account.id);
                ledger::grant(
                    tx,
                    &transfer_id,
                    &account.id,
                    policy.welcome_micros,
                    WELCOME_MEMO,
                    now,
                )?;
            }
            Ok(Registered {
                account,
                key,
                secret,
                credits_micros: policy.welcome_micros.max(0),
            })
        })?;
        Ok(registered)
    }

    /// Takes one registration from `client_address`'s hourly allowance.
    fn admit_address(&self, client_address: &str, policy: SelfRegistration) -> Result<()> {
        if policy.per_address_per_hour == 0 {
            return Ok(());
        }
        self.signup_limiter.admit(
            client_address,
            policy.per_address_per_hour,
            self.clock.now(),
        )
    }

    /// The model a request that names only a product runs on: the
    /// operator's choice for `product`, else the first model of that
    /// product in the active catalog. [`Error::NotConfigured`] when the
    /// operator's choice is not a model of that product in the active
    /// catalog, or the catalog has none.
    pub fn default_model(&self, product: &str) -> Result<String> {
        let catalog = self.catalog(None)?;
        let of_product = |model: &str| {
            catalog
                .models
                .iter()
                .any(|spec| spec.model == model && spec.product == product)
        };
        match self.settings.default_models.get(product) {
            Some(model) if of_product(model) => Ok(model.clone()),
            Some(model) => Err(Error::NotConfigured {
                feature: format!("the default {product} model"),
                hint: format!(
                    "{model} is not a model of product {product} in price version {}; the operator \
                     names another with --default-model {product}=MODEL",
                    catalog.price_version
                ),
            }),
            None => catalog
                .models
                .iter()
                .find(|spec| spec.product == product)
                .map(|spec| spec.model.clone())
                .ok_or_else(|| Error::NotConfigured {
                    feature: format!("the default {product} model"),
                    hint: format!(
                        "price version {} sells no {product} model",
                        catalog.price_version
                    ),
                }),
        }
    }
}

/// Self-registrations per client address per clock hour, in memory (a
/// restart forgets them), tracking at most [`ADDRESSES_TRACKED_MAX`]
/// addresses (beyond it, those of past hours are forgotten).
#[derive(Debug, Default)]
pub(crate) struct SignupLimiter {
    /// Address → (the hour it last registered in, registrations then).
    counts: Mutex<HashMap<String, (i64, u32)>>,
}

/// Client addresses tracked at most.
pub const ADDRESSES_TRACKED_MAX: usize = 100_000;
const HOUR_MS: i64 = 3_600_000;

impl SignupLimiter {
    /// Counts one registration of `address` at `now`, or refuses with
    /// [`Error::RateLimited`] until the next hour when it made `per_hour`
    /// already this hour.
    fn admit(&self, address: &str, per_hour: u32, now: UnixMillis) -> Result<()> {
        let hour = now.div_euclid(HOUR_MS);
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if counts.len() >= ADDRESSES_TRACKED_MAX && !counts.contains_key(address) {
            counts.retain(|_, (seen, _)| *seen == hour);
            if counts.len() >= ADDRESSES_TRACKED_MAX {
                counts.clear();
            }
        }
        let entry = counts.entry(address.to_owned()).or_insert((hour, 0));
        if entry.0 != hour {
            *entry = (hour, 0);
        }
        if entry.1 >= per_hour {
            let next_hour = (hour + 1) * HOUR_MS;
            return Err(Error::RateLimited {
                retry_after_ms: u64::try_from(next_hour - now).unwrap_or(0),
            });
        }
        entry.1 += 1;
        Ok(())
    }
}
