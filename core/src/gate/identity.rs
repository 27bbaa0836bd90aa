//! Gate operations on identities: API keys, authentication, and the
//! ed25519 agent flow (register, bind, keys, token exchange and refresh).
//! Signatures are verified outside the writer; each signed operation is one
//! write that spends its nonce, runs read-only checks, then writes.

use serde_json::Value;

use crate::accounts;
use crate::clock::UnixMillis;
use crate::error::{Error, Result};
use crate::gate::Gate;
use crate::identity::keys::{NewKey, Owner};
use crate::identity::signing;
use crate::identity::tokens::Refreshed;
use crate::identity::{
    self, agents, keys, scopes, tokens, verify_signed_request, Agent, AgentRegistration,
    ApiKeyInfo, CreatedAgentKey, Credential, Principal, SignedFields, TokenGrant,
};
use crate::store::{ReadOnly, Tx};

impl Gate {
    // ----- identity: API keys ---------------------------------------------

    /// The product scopes of the active catalog (every product it prices,
    /// never `admin`): what "every product" means wherever a credential is
    /// made without explicit scopes (a key created without scopes, the
    /// first-run demo key, an identity exchange of an agent bound without
    /// them). [`Error::NoPriceCatalog`] if no catalog was imported.
    pub fn product_scopes(&self) -> Result<Vec<String>> {
        let catalog = self.catalog(None)?;
        Ok(scopes::product_scopes(
            catalog.models.iter().map(|model| model.product.as_str()),
        ))
    }

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

    /// [`Gate::bind_agent`] for an authenticated owner: binds to the
    /// caller's own account, and only an `admin`-scoped caller may bind
    /// ([`Error::Forbidden`] otherwise).
    pub fn bind_agent_as(
        &self,
        principal: &Principal,
        registration_code: &str,
        allowed_scopes: Option<Vec<String>>,
    ) -> Result<Agent> {
        principal.require_scope(identity::ADMIN_SCOPE)?;
        self.bind_agent(registration_code, &principal.account_id, allowed_scopes)
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
    /// nonce first, then `check` (reads only: it gets a `ReadOnly`, so a
    /// write there does not compile) may refuse, then `apply` writes. A refusal by
    /// `check` still commits the spent nonce, and nothing else, so a signed
    /// request is single use whatever its outcome; a failure in `apply`
    /// rolls everything back.
    fn signed_write<P, T>(
        &self,
        agent_id: &str,
        signed: SignedFields,
        now: UnixMillis,
        check: impl FnOnce(&ReadOnly<'_>) -> Result<P> + Send + 'static,
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
