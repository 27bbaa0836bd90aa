//! Gate operations on external identities: the exchange of a provider's
//! identity token ("Sign in with Moltbook") for one of our access tokens.
//! The provider is asked outside the writer; everything the answer implies
//! (the agent and its mapping on first sight, its binding to a default
//! account, its exchange key, the token) is then one write.

use crate::accounts;
use crate::error::{Error, Result};
use crate::gate::Gate;
use crate::identity::external::{self, ExchangeOutcome, ExternalIdentity, MOLTBOOK_PROVIDER};
use crate::identity::keys::{self, NewKey};
use crate::identity::{agents, tokens};

impl Gate {
    /// `POST /auth/moltbook/exchange`: verifies a Moltbook identity token
    /// with the configured verifier and answers one of our access tokens
    /// (15 minutes, no refresh token: exchange a fresh identity token
    /// instead). See [`Gate::exchange_identity`].
    pub fn moltbook_exchange(&self, identity_token: &str) -> Result<ExchangeOutcome> {
        self.exchange_identity(MOLTBOOK_PROVIDER, identity_token)
    }

    /// Whether the identity exchange of `provider` (`moltbook`) is on.
    pub fn identity_exchange_enabled(&self, provider: &str) -> bool {
        self.identity_providers
            .iter()
            .any(|known| known.verifier.provider() == provider)
    }

    /// The stored mapping of `provider`'s agent `external_id` to a
    /// creditgate agent, if it was exchanged before.
    pub fn external_identity(
        &self,
        provider: &str,
        external_id: &str,
    ) -> Result<Option<ExternalIdentity>> {
        self.store
            .read(|conn| external::find(conn, provider, external_id))
    }

    /// Exchanges an identity token of `provider` for an access token.
    ///
    /// The provider's verifier is asked first (no verifier configured:
    /// [`Error::IdentityProviderNotConfigured`]; a refusal:
    /// [`Error::IdentityRefused`]; an unusable provider:
    /// [`Error::UpstreamUnavailable`]). A verified agent maps to one
    /// creditgate agent, created on its first exchange. An unbound agent is
    /// bound to the provider's default account if one is configured;
    /// otherwise the answer is [`ExchangeOutcome::NotBound`] with a fresh
    /// registration code for the owner to bind. A bound agent gets an access
    /// token with its binding's allowed scopes, or, when the binding allows
    /// "any but admin", every product of the active catalog
    /// ([`Error::NoPriceCatalog`] if none is imported).
    pub fn exchange_identity(
        &self,
        provider: &str,
        identity_token: &str,
    ) -> Result<ExchangeOutcome> {
        let configured = self
            .identity_providers
            .iter()
            .find(|known| known.verifier.provider() == provider)
            .ok_or_else(|| Error::IdentityProviderNotConfigured {
                provider: provider.to_owned(),
            })?;
        let verified = configured.verifier.verify(identity_token)?;
        let provider = configured.verifier.provider();
        let default_account = configured.default_account.clone();
        let products = match self.active_price_version()? {
            Some(_) => Some(self.product_scopes()?),
            None => None,
        };
        let key_name = format!("{provider} exchange");
        let now = self.clock.now();
        self.store.write(move |tx| {
            let (agent_id, fresh) = match external::find(tx, provider, &verified.external_id)? {
                Some(known) => {
                    external::record_verification(tx, provider, &verified, now)?;
                    agents::rename(tx, &known.agent_id, &verified.name)?;
                    (known.agent_id, None)
                }
                None => {
                    let registration = agents::insert_external(tx, &verified.name, now)?;
                    external::insert(tx, provider, &verified, &registration.agent_id, now)?;
                    (registration.agent_id.clone(), Some(registration))
                }
            };
            let mut agent = agents::get(tx, &agent_id)?.expect("the mapped agent exists");
            if agent.account_id.is_none() {
                let Some(account_id) = &default_account else {
                    let registration = match fresh {
                        Some(registration) => registration,
                        None => agents::rotate_registration(tx, &agent_id, now)?,
                    };
                    return Ok(ExchangeOutcome::NotBound(registration));
                };
                accounts::get(tx, account_id)?;
                agent = agents::bind_without_code(tx, &agent_id, account_id, now)?;
            }
            let account_id = agent.account_id.clone().expect("a bound agent");
            let granted = match &agent.allowed_scopes {
                Some(allowed) => allowed.clone(),
                None => products
                    .filter(|products| !products.is_empty())
                    .ok_or(Error::NoPriceCatalog)?,
            };
            let key = match keys::find_exchange_key(tx, &agent_id, &key_name, &granted, now)? {
                Some(key) => key,
                None => {
                    let new = NewKey::validate(
                        &account_id,
                        Some(&agent_id),
                        "name",
                        &key_name,
                        &granted,
                        None,
                    )?;
                    // The secret is dropped here: nobody ever holds it.
                    keys::insert(tx, &new, now)?.0
                }
            };
            assert_eq!(
                key.scopes, granted,
                "the exchange key carries the granted scopes"
            );
            keys::touch(tx, &key.id, now)?;
            let grant = tokens::issue_access(tx, &key, &granted, now)?;
            assert_eq!(
                grant.account_id, account_id,
                "the token acts for the binding"
            );
            Ok(ExchangeOutcome::Granted(grant))
        })
    }
}
