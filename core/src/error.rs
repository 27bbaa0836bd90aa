//! The core's one error type. Every refusal the core can make is a variant
//! here with a stable machine code ([`Error::code`]); the appliance maps each
//! code to an HTTP status in one table and never invents an error of its own.
//! Operating errors return `Err`; broken invariants are bugs and assert.

use crate::money::AmountError;

/// Everything the core can refuse or fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A request field is missing, malformed or out of its bounds.
    #[error("invalid {field}: {message}")]
    InvalidRequest {
        /// The offending field, as the caller named it.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// An amount was negative, zero, finer than a micro-credit or too large.
    #[error("invalid amount: {0}")]
    InvalidAmount(#[from] AmountError),
    /// The thing asked for does not exist (or belongs to another account).
    #[error("{what} not found: {id}")]
    NotFound {
        /// The kind of thing: `account`, `transfer`, `hold`, ...
        what: &'static str,
        /// The id that was asked for.
        id: String,
    },
    /// The wallet's available balance does not cover the amount.
    #[error("insufficient credits: {required_micros} micro-credits required, {available_micros} available")]
    InsufficientCredits {
        /// Micro-credits the operation needs.
        required_micros: i64,
        /// Micro-credits available in the wallet.
        available_micros: i64,
        /// What the caller could do instead (a cheaper model that fits).
        suggestion: Option<String>,
    },
    /// The request id was used before with a different request.
    #[error("request_id {request_id} was already used with a different request")]
    IdempotencyConflict {
        /// The reused request id.
        request_id: String,
    },
    /// A job cannot move between these states (it is finished, or changed
    /// meanwhile).
    #[error("job {job_id} is {from} and cannot become {to}")]
    InvalidTransition {
        /// The job.
        job_id: String,
        /// Its current status.
        from: &'static str,
        /// The status asked for.
        to: &'static str,
    },
    /// The model's provider is not configured on this gate.
    #[error("provider {provider} is not configured")]
    ProviderUnavailable {
        /// The provider named by the catalog.
        provider: String,
    },
    /// A transfer id was replayed with fields that differ from the first use.
    #[error("transfer {id} exists with a different {field}")]
    ExistsWithDifferentFields {
        /// The replayed transfer id.
        id: String,
        /// The first field that differs.
        field: &'static str,
    },
    /// The hold was already captured, released or expired.
    #[error("hold {hold_id} is already resolved by {resolved_by}")]
    HoldAlreadyResolved {
        /// The hold.
        hold_id: String,
        /// The transfer that resolved it.
        resolved_by: String,
    },
    /// A capture arrived at or after the hold's deadline.
    #[error("hold {hold_id} passed its deadline")]
    HoldExpired {
        /// The hold.
        hold_id: String,
    },
    /// A capture asked for more than the hold reserved.
    #[error("capture of {requested_micros} exceeds the hold of {held_micros} micro-credits")]
    CaptureExceedsHold {
        /// Micro-credits asked for.
        requested_micros: i64,
        /// Micro-credits the hold reserved.
        held_micros: i64,
    },
    /// Refunds of a charge would exceed the charge.
    #[error("refund of {requested_micros} exceeds the {refundable_micros} micro-credits still refundable")]
    RefundExceedsCharge {
        /// Micro-credits asked for.
        requested_micros: i64,
        /// Micro-credits of the charge not yet refunded.
        refundable_micros: i64,
    },
    /// The referenced transfer is of a kind the operation does not accept
    /// (for example refunding a grant, or capturing something that is not a hold).
    #[error("transfer {id} is a {kind}, which {operation} does not accept")]
    WrongTransferKind {
        /// The referenced transfer.
        id: String,
        /// Its kind.
        kind: String,
        /// The operation that refused it.
        operation: &'static str,
    },
    /// A request cannot be priced (unknown model, option not allowed, ...).
    #[error("{0}")]
    Estimate(#[from] crate::pricing::EstimateError),
    /// A catalog failed validation on import; nothing of it was stored.
    #[error("invalid catalog at {}: {}", .0.path, .0.message)]
    InvalidCatalog(#[from] crate::pricing::CatalogError),
    /// The requested price version does not exist or is retired.
    #[error("price version {requested} is {}; the active version is {}", if *retired { "retired" } else { "unknown" }, active.as_deref().unwrap_or("(none)"))]
    UnknownPriceVersion {
        /// The version asked for.
        requested: String,
        /// Whether it exists but is retired.
        retired: bool,
        /// The version requests are priced with now.
        active: Option<String>,
    },
    /// A different catalog was already imported under this version.
    #[error("price version {version} already exists with a different catalog; import a new version instead")]
    PriceVersionConflict {
        /// The version.
        version: String,
    },
    /// No catalog has been imported yet.
    #[error("no price catalog has been imported")]
    NoPriceCatalog,
    /// The caller could not be authenticated: no credential, an unknown,
    /// revoked or expired API key, an unknown agent, a revoked token family,
    /// or a credential that is not the one this operation needs. `reason` is
    /// for logs and never contains the credential.
    #[error("unauthorized: {reason}")]
    Unauthorized {
        /// Why, in a few words (never the credential itself).
        reason: &'static str,
    },
    /// An access or refresh token is past its expiry.
    #[error("the token has expired")]
    TokenExpired,
    /// The caller is authenticated but its scopes do not include `scope`.
    #[error("forbidden: the scope {scope} is not granted")]
    Forbidden {
        /// The scope that was needed (or asked for) and is not granted.
        scope: String,
    },
    /// A signed request's signature is malformed or does not verify over
    /// this method, path and body with the agent's public key.
    #[error("the signature does not verify")]
    InvalidSignature,
    /// A signed request's `timestamp` is further than
    /// [`crate::identity::signing::SIGNED_REQUEST_SKEW_SECS_MAX`] from the
    /// server clock, in either direction.
    #[error(
        "timestamp {timestamp} is more than {skew_max_secs} s from the server time {now_secs}"
    )]
    StaleTimestamp {
        /// The request's timestamp (Unix seconds).
        timestamp: i64,
        /// The server clock (Unix seconds).
        now_secs: i64,
        /// The allowed skew either side (seconds).
        skew_max_secs: i64,
    },
    /// A signed request's `nonce` was already used by this agent.
    #[error("the nonce was already used")]
    NonceReused,
    /// A refresh token was presented a second time: its whole token family
    /// has been revoked.
    #[error("the refresh token was already used; its token family is revoked")]
    RefreshTokenReused,
    /// A registration code passed its expiry before it was bound.
    #[error("registration code expired; register the agent again for a new one")]
    RegistrationExpired,
    /// The agent has not been bound to an account by its owner yet.
    #[error("agent {agent_id} is not bound to an account yet")]
    AgentNotBound {
        /// The agent.
        agent_id: String,
    },
    /// The agent is already bound to another account (or to the same one
    /// with other allowed scopes).
    #[error("agent {agent_id} is already bound with a different {field}")]
    AgentAlreadyBound {
        /// The agent.
        agent_id: String,
        /// What differs: `account_id` or `allowed_scopes`.
        field: &'static str,
    },
    /// An external identity provider (Moltbook) refused the identity token
    /// presented to an exchange: invalid, expired, meant for another
    /// audience, or for an agent it does not know.
    #[error("the {provider} identity token was refused: {reason}")]
    IdentityRefused {
        /// The provider that refused it (`moltbook`).
        provider: &'static str,
        /// The provider's machine reason when it gave a well-formed one
        /// (`identity_token_expired`, `invalid_token`, ...), else `refused`.
        /// Never the token itself.
        reason: String,
    },
    /// An upstream service the operation depends on (an identity
    /// provider's verifier) could not be reached, timed out, failed, or
    /// answered something that is not its protocol. Never a success.
    #[error("{upstream} did not answer usably: {detail}")]
    UpstreamUnavailable {
        /// The upstream (`moltbook`).
        upstream: &'static str,
        /// What went wrong, for the operator's log (no credential in it).
        detail: String,
    },
    /// No verifier is configured on this gate for the identity provider
    /// asked for, so its exchange is off.
    #[error("the {provider} identity exchange is not enabled on this gate")]
    IdentityProviderNotConfigured {
        /// The provider (`moltbook`).
        provider: String,
    },
    /// A credit would push a wallet past [`crate::money::BALANCE_MICROS_MAX`].
    #[error("balance would exceed its maximum")]
    BalanceLimit,
    /// The database file cannot be used: missing (when it must exist), a
    /// directory, in a missing folder, read-only, or not a creditgate
    /// database. Nothing was created or changed.
    #[error("{}", .problem.describe(.path))]
    Database {
        /// The database path, as given.
        path: std::path::PathBuf,
        /// What is wrong with it.
        problem: crate::store::OpenProblem,
    },
    /// The database was written by a newer creditgate.
    #[error("database schema version {found} is newer than this build supports ({supported}); upgrade creditgate")]
    SchemaTooNew {
        /// The version in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// The batch holding this write could not be committed; nothing of it
    /// was kept.
    #[error("the write could not be committed: {message}")]
    CommitFailed {
        /// SQLite's reason.
        message: String,
    },
    /// The writer thread has stopped (the store is shutting down).
    #[error("the store's writer has stopped")]
    WriterStopped,
    /// The caller is going faster than its rate limit.
    #[error("rate limited: retry after {retry_after_ms} ms")]
    RateLimited {
        /// When a request will be admitted again.
        retry_after_ms: u64,
    },
    /// A request body exceeded the shell's limit (raised by shells such as
    /// the HTTP appliance, kept here so every refusal has one table).
    #[error("the request body exceeds {limit_bytes} bytes")]
    PayloadTooLarge {
        /// The limit.
        limit_bytes: usize,
    },
    /// A request body did not arrive in time (raised by shells).
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    /// No route answers this path (raised by shells).
    #[error("no route for {method} {path}")]
    NoRoute {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
    },
    /// The route exists but not for this method (raised by shells).
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
    },
    /// SQLite failed (disk, corruption, a constraint the core did not expect).
    #[error("storage error: {0}")]
    Storage(#[from] rusqlite::Error),
    /// No connection could be had from the pool.
    #[error("connection pool error: {0}")]
    Pool(#[from] r2d2::Error),
}

impl Error {
    /// The stable machine code of this error: the `data.error` of the API.
    /// One arm per variant; the appliance maps codes to statuses.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidRequest { .. } => "invalid_request",
            Error::InvalidAmount(_) => "invalid_amount",
            Error::NotFound { .. } => "not_found",
            Error::InsufficientCredits { .. } => "insufficient_credits",
            Error::IdempotencyConflict { .. } => "idempotency_conflict",
            Error::InvalidTransition { .. } => "invalid_transition",
            Error::ProviderUnavailable { .. } => "provider_unavailable",
            Error::ExistsWithDifferentFields { .. } => "exists_with_different_fields",
            Error::HoldAlreadyResolved { .. } => "hold_already_resolved",
            Error::HoldExpired { .. } => "hold_expired",
            Error::CaptureExceedsHold { .. } => "capture_exceeds_hold",
            Error::RefundExceedsCharge { .. } => "refund_exceeds_charge",
            Error::WrongTransferKind { .. } => "wrong_transfer_kind",
            Error::Estimate(inner) => inner.code(),
            Error::InvalidCatalog(_) => "invalid_catalog",
            Error::UnknownPriceVersion { .. } => "unknown_price_version",
            Error::PriceVersionConflict { .. } => "price_version_conflict",
            Error::NoPriceCatalog => "no_price_catalog",
            Error::Unauthorized { .. } => "unauthorized",
            Error::TokenExpired => "token_expired",
            Error::Forbidden { .. } => "forbidden",
            Error::InvalidSignature => "invalid_signature",
            Error::StaleTimestamp { .. } => "stale_timestamp",
            Error::NonceReused => "nonce_reused",
            Error::RefreshTokenReused => "refresh_token_reused",
            Error::RegistrationExpired => "registration_expired",
            Error::AgentNotBound { .. } => "agent_not_bound",
            Error::AgentAlreadyBound { .. } => "agent_already_bound",
            Error::IdentityRefused { .. } => "identity_refused",
            Error::UpstreamUnavailable { .. } => "upstream_unavailable",
            Error::IdentityProviderNotConfigured { .. } => "not_found",
            Error::BalanceLimit => "balance_limit",
            Error::SchemaTooNew { .. } => "schema_too_new",
            Error::Database { .. } => "storage_unavailable",
            Error::RateLimited { .. } => "rate_limited",
            Error::PayloadTooLarge { .. } => "payload_too_large",
            Error::RequestTimeout => "request_timeout",
            Error::NoRoute { .. } => "not_found",
            Error::MethodNotAllowed { .. } => "method_not_allowed",
            Error::CommitFailed { .. } => "storage_error",
            Error::WriterStopped => "storage_unavailable",
            Error::Storage(_) => "storage_error",
            Error::Pool(_) => "storage_unavailable",
        }
    }

    /// Whether the fault is the server's (storage, a provider, an upstream)
    /// rather than the caller's: shells log these.
    pub fn is_server_fault(&self) -> bool {
        matches!(
            self,
            Error::Storage(_)
                | Error::ProviderUnavailable { .. }
                | Error::UpstreamUnavailable { .. }
                | Error::Pool(_)
                | Error::SchemaTooNew { .. }
                | Error::Database { .. }
                | Error::CommitFailed { .. }
                | Error::WriterStopped
        )
    }

    pub(crate) fn unauthorized(reason: &'static str) -> Self {
        Error::Unauthorized { reason }
    }

    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Self {
        Error::InvalidRequest {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// Every machine code [`Error::code`] can return (a pricing error's codes
/// included), so a shell can check it maps each to a status.
pub const ERROR_CODES: &[&str] = &[
    "invalid_request",
    "invalid_amount",
    "not_found",
    "insufficient_credits",
    "idempotency_conflict",
    "invalid_transition",
    "provider_unavailable",
    "exists_with_different_fields",
    "hold_already_resolved",
    "hold_expired",
    "capture_exceeds_hold",
    "refund_exceeds_charge",
    "wrong_transfer_kind",
    "unknown_model",
    "invalid_option",
    "internal",
    "invalid_catalog",
    "unknown_price_version",
    "price_version_conflict",
    "no_price_catalog",
    "balance_limit",
    "schema_too_new",
    "unauthorized",
    "token_expired",
    "forbidden",
    "invalid_signature",
    "stale_timestamp",
    "nonce_reused",
    "refresh_token_reused",
    "registration_expired",
    "agent_not_bound",
    "agent_already_bound",
    "identity_refused",
    "upstream_unavailable",
    "payload_too_large",
    "rate_limited",
    "request_timeout",
    "method_not_allowed",
    "storage_error",
    "storage_unavailable",
];

/// The core's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::EstimateError;

    #[test]
    fn every_variant_has_a_listed_code() {
        let samples = vec![
            Error::invalid("f", "m"),
            Error::InvalidAmount(AmountError::Zero),
            Error::NotFound {
                what: "job",
                id: "j".into(),
            },
            Error::InsufficientCredits {
                required_micros: 1,
                available_micros: 0,
                suggestion: None,
            },
            Error::IdempotencyConflict {
                request_id: "r".into(),
            },
            Error::InvalidTransition {
                job_id: "j".into(),
                from: "succeeded",
                to: "canceled",
            },
            Error::ProviderUnavailable {
                provider: "p".into(),
            },
            Error::ExistsWithDifferentFields {
                id: "t".into(),
                field: "amount",
            },
            Error::HoldAlreadyResolved {
                hold_id: "h".into(),
                resolved_by: "c".into(),
            },
            Error::HoldExpired {
                hold_id: "h".into(),
            },
            Error::CaptureExceedsHold {
                requested_micros: 2,
                held_micros: 1,
            },
            Error::RefundExceedsCharge {
                requested_micros: 2,
                refundable_micros: 1,
            },
            Error::WrongTransferKind {
                id: "t".into(),
                kind: "grant".into(),
                operation: "refund",
            },
            Error::Estimate(EstimateError::UnknownModel {
                model: "m".into(),
                close_matches: vec![],
            }),
            Error::Estimate(EstimateError::InvalidOption {
                option: "count".into(),
                value: "3".into(),
                allowed: vec![],
            }),
            Error::UnknownPriceVersion {
                requested: "v".into(),
                retired: false,
                active: None,
            },
            Error::PriceVersionConflict {
                version: "v".into(),
            },
            Error::NoPriceCatalog,
            Error::BalanceLimit,
            Error::SchemaTooNew {
                found: 2,
                supported: 1,
            },
            Error::Unauthorized { reason: "r" },
            Error::TokenExpired,
            Error::Forbidden {
                scope: "video".into(),
            },
            Error::InvalidSignature,
            Error::NonceReused,
            Error::RefreshTokenReused,
            Error::RegistrationExpired,
            Error::StaleTimestamp {
                timestamp: 0,
                now_secs: 1_000,
                skew_max_secs: 300,
            },
            Error::AgentNotBound {
                agent_id: "a".into(),
            },
            Error::AgentAlreadyBound {
                agent_id: "a".into(),
                field: "account_id",
            },
            Error::IdentityRefused {
                provider: "moltbook",
                reason: "invalid_token".into(),
            },
            Error::UpstreamUnavailable {
                upstream: "moltbook",
                detail: "timed out".into(),
            },
            Error::IdentityProviderNotConfigured {
                provider: "moltbook".into(),
            },
            Error::PayloadTooLarge { limit_bytes: 1 },
            Error::RateLimited { retry_after_ms: 1 },
            Error::RequestTimeout,
            Error::NoRoute {
                method: "GET".into(),
                path: "/x".into(),
            },
            Error::MethodNotAllowed {
                method: "PUT".into(),
                path: "/x".into(),
            },
            Error::CommitFailed {
                message: "m".into(),
            },
            Error::WriterStopped,
            Error::Database {
                path: "x.db".into(),
                problem: crate::store::OpenProblem::Missing,
            },
        ];
        for err in samples {
            assert!(
                ERROR_CODES.contains(&err.code()),
                "{} is not listed",
                err.code()
            );
            assert!(!err.to_string().is_empty());
        }
    }
}
