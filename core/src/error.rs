//! The core's one error type. Every refusal the core can make is a variant
//! here with a stable machine code ([`Error::error_code`], an [`ErrorCode`]);
//! each code has one [`ErrorKind`] in one table ([`ErrorCode::kind`]), from
//! which shells derive both the HTTP status and whether the fault is the
//! server's (and so logged). The appliance never invents an error of its own.
//! Operating errors return `Err`; broken invariants are bugs and assert.

use crate::money::{to_credits, AmountError};

/// What sort of failure an error is. Shells derive everything they do
/// with an error from its kind (the HTTP status, whether to log it), with
/// at most a few exact overrides by code. Deliberately exhaustive: a new
/// kind must be placed in every shell's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed, out of bounds or not applicable.
    Invalid,
    /// The caller is not authenticated (or its credential is not valid).
    Unauthorized,
    /// The caller is authenticated but may not do this.
    Forbidden,
    /// The thing asked for does not exist (or is not the caller's).
    NotFound,
    /// The request conflicts with the current state (a replay with other
    /// fields, a finished job, a resolved hold, ...).
    Conflict,
    /// The thing asked for existed and is gone for good (a kept output
    /// past its retention period).
    Gone,
    /// The caller hit a limit: rate, size, time or credits.
    Limited,
    /// An upstream service failed or answered unusably.
    Upstream,
    /// A part of the server is not available or not configured (no
    /// catalog, no provider, the store shutting down); retrying may help.
    Unavailable,
    /// The server's storage is full (`SQLITE_FULL`, `ENOSPC`): nothing of
    /// the refused write was kept, acknowledged work stays durable, and the
    /// server recovers by itself once space returns.
    StorageFull,
    /// A server fault: storage errors, stored data that no longer decodes,
    /// broken configuration, bugs.
    Internal,
}

impl ErrorKind {
    /// Whether an error of this kind is the server's fault rather than the
    /// caller's: shells log these with the request they answered.
    pub fn is_server_fault(self) -> bool {
        match self {
            ErrorKind::Upstream
            | ErrorKind::Unavailable
            | ErrorKind::StorageFull
            | ErrorKind::Internal => true,
            ErrorKind::Invalid
            | ErrorKind::Unauthorized
            | ErrorKind::Forbidden
            | ErrorKind::NotFound
            | ErrorKind::Conflict
            | ErrorKind::Gone
            | ErrorKind::Limited => false,
        }
    }
}

/// Declares [`ErrorCode`], its wire names, its kinds and [`ERROR_CODES`]
/// from one table, so the list of codes cannot drift from the enum.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = $code:literal, $kind:ident;)*) => {
        /// A stable machine code: the `data.error` of the API and the
        /// `error` of the CLI's `--json`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as it appears on the wire (`insufficient_credits`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            /// The kind of failure this code reports.
            pub fn kind(self) -> ErrorKind {
                match self {
                    $(ErrorCode::$variant => ErrorKind::$kind,)*
                }
            }
        }

        /// Every machine code [`Error::code`] can return (a pricing error's
        /// codes included), as strings: [`ErrorCode::ALL`] by name.
        pub const ERROR_CODES: &[&str] = &[$($code,)*];
    };
}

error_codes! {
    /// A request field is missing, malformed or out of bounds (`field`).
    InvalidRequest = "invalid_request", Invalid;
    /// An amount is negative, zero, too precise or too large.
    InvalidAmount = "invalid_amount", Invalid;
    /// The thing asked for does not exist.
    NotFound = "not_found", NotFound;
    /// The wallet does not cover the price (`required`, `available`, `suggestion`).
    InsufficientCredits = "insufficient_credits", Limited;
    /// A request id was reused with a different request.
    IdempotencyConflict = "idempotency_conflict", Conflict;
    /// A job cannot change that way (it is finished).
    InvalidTransition = "invalid_transition", Conflict;
    /// The model's provider is not configured.
    ProviderUnavailable = "provider_unavailable", Unavailable;
    /// A catalog routes a model to a provider instance that is not
    /// configured (`model`, `provider`).
    ProviderNotConfigured = "provider_not_configured", Invalid;
    /// A transfer id was replayed with other fields (`field`).
    ExistsWithDifferentFields = "exists_with_different_fields", Conflict;
    /// The hold is already captured, released or expired.
    HoldAlreadyResolved = "hold_already_resolved", Conflict;
    /// The hold passed its deadline.
    HoldExpired = "hold_expired", Conflict;
    /// A capture above the hold.
    CaptureExceedsHold = "capture_exceeds_hold", Invalid;
    /// A refund above what is left of the charge.
    RefundExceedsCharge = "refund_exceeds_charge", Invalid;
    /// A transfer of a kind the operation does not take.
    WrongTransferKind = "wrong_transfer_kind", Invalid;
    /// No model has this id (`close_matches`).
    UnknownModel = "unknown_model", Invalid;
    /// An option value the model does not allow (`allowed`).
    InvalidOption = "invalid_option", Invalid;
    /// A server fault: stored data that no longer decodes, a stored catalog
    /// that no longer validates, a bug.
    Internal = "internal", Internal;
    /// A catalog failed validation (`path`).
    InvalidCatalog = "invalid_catalog", Invalid;
    /// A pinned price version is unknown or retired (`active_price_version`).
    UnknownPriceVersion = "unknown_price_version", Invalid;
    /// Another catalog under an existing version.
    PriceVersionConflict = "price_version_conflict", Conflict;
    /// No catalog imported yet.
    NoPriceCatalog = "no_price_catalog", Unavailable;
    /// A credit would push a wallet past its maximum.
    BalanceLimit = "balance_limit", Conflict;
    /// The database was written by a newer build.
    SchemaTooNew = "schema_too_new", Internal;
    /// No valid credential.
    Unauthorized = "unauthorized", Unauthorized;
    /// The token is past its expiry.
    TokenExpired = "token_expired", Unauthorized;
    /// A scope is not granted (`scope`).
    Forbidden = "forbidden", Forbidden;
    /// A signature does not verify.
    InvalidSignature = "invalid_signature", Unauthorized;
    /// A signed request's timestamp is too far from the server's clock.
    StaleTimestamp = "stale_timestamp", Unauthorized;
    /// An upstream webhook whose signature does not verify (`provider`).
    WebhookUnverified = "webhook_unverified", Unauthorized;
    /// A signed request's nonce was already used.
    NonceReused = "nonce_reused", Unauthorized;
    /// A refresh token was presented twice; its family is revoked.
    RefreshTokenReused = "refresh_token_reused", Unauthorized;
    /// A registration code expired before it was bound.
    RegistrationExpired = "registration_expired", Invalid;
    /// The agent is not bound to an account yet (`agent_id`).
    AgentNotBound = "agent_not_bound", Forbidden;
    /// A console form without its session's CSRF token.
    CsrfTokenInvalid = "csrf_token_invalid", Forbidden;
    /// The agent is bound differently already.
    AgentAlreadyBound = "agent_already_bound", Conflict;
    /// An identity provider refused the token (`provider`, `reason`).
    IdentityRefused = "identity_refused", Unauthorized;
    /// An upstream could not be reached or answered unusably (`upstream`).
    UpstreamUnavailable = "upstream_unavailable", Upstream;
    /// The request body is too large (`limit_bytes`).
    PayloadTooLarge = "payload_too_large", Limited;
    /// Too many requests (`retry_after`, seconds).
    RateLimited = "rate_limited", Limited;
    /// The account's plan allows no more jobs of this product today
    /// (`plan`, `product`, `limit`, `used`, `reset_at`).
    PlanLimitReached = "plan_limit_reached", Limited;
    /// The request body did not arrive in time.
    RequestTimeout = "request_timeout", Limited;
    /// The route does not take this method.
    MethodNotAllowed = "method_not_allowed", Invalid;
    /// The request line or a header is malformed or not ASCII.
    BadRequest = "bad_request", Invalid;
    /// The request line (path and query) is too long.
    UriTooLong = "uri_too_long", Limited;
    /// The `Expect` header asks for something the server does not do.
    ExpectationFailed = "expectation_failed", Invalid;
    /// A header line or the whole header block is too large.
    HeaderTooLarge = "header_too_large", Limited;
    /// The server holds as many connections as it may; retry shortly.
    ServerBusy = "server_busy", Unavailable;
    /// SQLite failed (I/O, corruption, an unexpected constraint).
    StorageError = "storage_error", Internal;
    /// The store cannot take requests now (shutting down, no connection).
    StorageUnavailable = "storage_unavailable", Unavailable;
    /// The server's storage is full; nothing of the request was kept.
    InsufficientStorage = "insufficient_storage", StorageFull;
    /// The job workers keep failing (`/healthz`; `reason`, `failing_steps`).
    WorkersFailing = "workers_failing", Unavailable;
    /// A kept output passed its retention period and was removed.
    OutputExpired = "output_expired", Gone;
    /// The operator has not turned this feature on, or it is not built yet
    /// (`feature`): an honest refusal, never a pretended success.
    NotConfigured = "not_configured", Forbidden;
    /// No redemption code has this secret, or it was revoked.
    CodeInvalid = "code_invalid", NotFound;
    /// The redemption code passed its expiry (`code_id`).
    CodeExpired = "code_expired", Gone;
    /// Every use of the redemption code is taken (`code_id`).
    CodeUsedUp = "code_used_up", Conflict;
    /// This account already redeemed this once-per-account code (`code_id`).
    CodeAlreadyRedeemed = "code_already_redeemed", Conflict;
    /// The key's spend cap for the day or month would be passed
    /// (`period`, `limit`, `spent`, `reset_at`).
    SpendCapReached = "spend_cap_reached", Limited;
    /// An x402 payment (`PAYMENT-SIGNATURE`) was refused: malformed, not
    /// what was offered, or refused by the facilitator (`reason`).
    PaymentInvalid = "payment_invalid", Invalid;
    /// Credits must be paid for first: the `PAYMENT-REQUIRED` header says
    /// how (`credits`).
    PaymentRequired = "payment_required", Limited;
    /// No payment method is saved for charges without the payer present.
    PaymentMethodNotReady = "payment_method_not_ready", Conflict;
    /// The rail refused the charge (a declined card): nothing was paid.
    PaymentDeclined = "payment_declined", Limited;
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

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
    #[error(
        "insufficient credits: {} credits required, {} available",
        to_credits(*required_micros),
        to_credits(*available_micros)
    )]
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
    /// An upstream webhook did not verify: nothing was changed.
    #[error("webhook of provider {provider} not verified: {reason}")]
    WebhookUnverified {
        /// The provider instance it came for.
        provider: String,
        /// Why (no secret in it).
        reason: String,
    },
    /// A catalog (imported, activated or in force) routes a model to a
    /// provider instance this gate does not have.
    #[error(
        "model {model} names provider {provider}, which is not configured \
         (add it to the providers file)"
    )]
    ProviderNotConfigured {
        /// The model.
        model: String,
        /// The provider instance it names.
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
    #[error(
        "a capture of {} credits exceeds the hold of {} credits",
        to_credits(*requested_micros),
        to_credits(*held_micros)
    )]
    CaptureExceedsHold {
        /// Micro-credits asked for.
        requested_micros: i64,
        /// Micro-credits the hold reserved.
        held_micros: i64,
    },
    /// Refunds of a charge would exceed the charge.
    #[error(
        "a refund of {} credits exceeds the {} credits still refundable",
        to_credits(*requested_micros),
        to_credits(*refundable_micros)
    )]
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
    /// A feature this server does not offer: the operator has not turned
    /// it on (self-registration, a default model) or it is not built yet
    /// (top-ups).
    #[error("{feature}: not configured on this server; {hint}")]
    NotConfigured {
        /// What is not configured (`self-registration`, `top-ups`, ...).
        feature: String,
        /// What the caller or the operator can do instead.
        hint: String,
    },
    /// The caller is authenticated but its scopes do not include `scope`.
    #[error("forbidden: the scope {scope} is not granted")]
    Forbidden {
        /// The scope that was needed (or asked for) and is not granted.
        scope: String,
    },
    /// A console form was posted without its session's CSRF token (or with
    /// another's): it did not come from a page of this session, so
    /// nothing was changed.
    #[error("the form's CSRF token is missing or not this session's: nothing was changed")]
    CsrfTokenInvalid,
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
    /// A kept output's retention period passed: its file is removed (or
    /// about to be) and its link answers this for good.
    #[error("output {index} of job {job_id} is no longer kept: its retention period passed")]
    OutputExpired {
        /// The job.
        job_id: String,
        /// The output's index.
        index: usize,
    },
    /// No redemption code has this secret, or it was revoked: which of the
    /// two is not told, so a guess learns nothing.
    #[error("this code is not valid")]
    CodeInvalid,
    /// The redemption code passed its expiry.
    #[error("code {code_id} has expired")]
    CodeExpired {
        /// The code's id (never its secret).
        code_id: String,
    },
    /// Every use of the redemption code is taken.
    #[error("code {code_id} has no uses left")]
    CodeUsedUp {
        /// The code's id.
        code_id: String,
    },
    /// The account already redeemed this once-per-account code.
    #[error("code {code_id} was already redeemed by this account")]
    CodeAlreadyRedeemed {
        /// The code's id.
        code_id: String,
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
    /// The job workers' last steps failed (health checks answer this).
    #[error("the job workers are failing ({failing_steps} steps in a row): {reason}")]
    WorkersFailing {
        /// Failing steps in a row.
        failing_steps: u64,
        /// The last failure.
        reason: String,
    },
    /// The writer thread has stopped (the store is shutting down).
    #[error("the store's writer has stopped")]
    WriterStopped,
    /// The caller is going faster than its rate limit.
    #[error("rate limited: retry after {} s", retry_after_ms.div_ceil(1_000))]
    RateLimited {
        /// When a request will be admitted again.
        retry_after_ms: u64,
    },
    /// The account's plan caps the jobs of this product per UTC day, and
    /// today's are used up. Nothing was held or counted.
    #[error(
        "plan {plan} allows {limit} {product} jobs a day and {used} were started today; \
         the count starts again at {}",
        crate::clock::format_rfc3339(*reset_at)
    )]
    PlanLimitReached {
        /// The account's plan.
        plan: String,
        /// The catalog product capped.
        product: String,
        /// The cap: jobs of the product per UTC day.
        limit: u64,
        /// Jobs of the product counted today.
        used: u64,
        /// When the count starts again: the next UTC midnight.
        reset_at: crate::clock::UnixMillis,
    },
    /// The job would take the key's holds this UTC day or month past the
    /// cap its owner set on it.
    #[error(
        "this key's {period} spend cap of {} credits would be passed ({} credits spent); it resets at {}",
        to_credits(*cap_micros),
        to_credits(*spent_micros),
        crate::clock::format_rfc3339(*reset_at)
    )]
    SpendCapReached {
        /// The key.
        key_id: String,
        /// `day` or `month`.
        period: &'static str,
        /// The cap, in micro-credits.
        cap_micros: i64,
        /// What the key's jobs hold or were charged in the period so far.
        spent_micros: i64,
        /// When the period's count starts again.
        reset_at: crate::clock::UnixMillis,
    },
    /// An x402 payment was refused; nothing was credited.
    #[error("the payment was refused: {reason}")]
    PaymentInvalid {
        /// Why (never a secret).
        reason: String,
    },
    /// Credits are to be paid for over x402 before this answers.
    #[error(
        "pay {} credits with x402: sign the PAYMENT-REQUIRED header's offer and send it as PAYMENT-SIGNATURE",
        to_credits(*credits_micros)
    )]
    PaymentRequired {
        /// The micro-credits asked for.
        credits_micros: i64,
    },
    /// No payment method is saved for off-session charges.
    #[error(
        "no saved off-session payment method is configured: pay one card top-up first \
         (POST /v1/credits/topup), which saves it"
    )]
    PaymentMethodNotReady,
    /// The rail refused to charge the saved method.
    #[error("the payment was declined: {reason}")]
    PaymentDeclined {
        /// The rail's reason (no card data, no secret).
        reason: String,
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
    /// The request line or a header is malformed or not ASCII (raised by
    /// shells, before routing).
    #[error("the request line or a header is malformed or not ASCII")]
    MalformedRequest,
    /// The request line is longer than the shell accepts.
    #[error("the request line (path and query) is too long")]
    UriTooLong,
    /// An `Expect` header other than `100-continue`.
    #[error("the Expect header asks for something this server does not do")]
    ExpectationFailed,
    /// A header line or the header block is larger than the shell accepts.
    #[error("a header line or the request's headers are too large")]
    HeaderTooLarge,
    /// The shell holds as many open connections as it may.
    #[error("the server has too many open connections; retry shortly")]
    ServerBusy,
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
    /// SQLite failed (I/O, corruption, a constraint the core did not
    /// expect). A full disk is [`Error::StorageFull`] instead, and stored
    /// values that do not decode are [`Error::CorruptData`].
    #[error("storage error: {0}")]
    Storage(StorageError),
    /// The disk (or the database's size limit) is full: the write was not
    /// kept. The store recovers by itself once space returns.
    #[error("the server's storage is full: {detail}")]
    StorageFull {
        /// SQLite's reason.
        detail: String,
    },
    /// Data the core stored no longer decodes (a job's request, a stored
    /// catalog that no longer validates, a column of the wrong type): the
    /// row was changed behind the core's back. A server fault.
    #[error("stored data does not decode: {detail}")]
    CorruptData {
        /// What did not decode, and why.
        detail: String,
    },
    /// Something the core relies on is broken (a setting SQLite refused, a
    /// value that cannot be encoded, a panic in a worker step). A server
    /// fault; `detail` is for the operator's log.
    #[error("internal error: {detail}")]
    Internal {
        /// What went wrong.
        detail: String,
    },
    /// No connection could be had from the pool.
    #[error("connection pool error: {0}")]
    Pool(StorageError),
}

/// What the storage engine said when it failed: opaque, so that the
/// engine (SQLite, its driver and its connection pool) is no part of the
/// API. It
/// displays the engine's message and hands the engine's error on as its
/// [`std::error::Error::source`].
pub struct StorageError(StorageCause);

/// The engine's own error, kept for its message and as the source.
enum StorageCause {
    Sqlite(rusqlite::Error),
    Pool(r2d2::Error),
}

impl StorageError {
    fn cause(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        match &self.0 {
            StorageCause::Sqlite(err) => err,
            StorageCause::Pool(err) => err,
        }
    }
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self.cause(), f)
    }
}

impl std::fmt::Debug for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.cause(), f)
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.cause())
    }
}

impl Error {
    /// The stable machine code of this error: the `data.error` of the API.
    /// One arm per variant.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Error::InvalidRequest { .. } => ErrorCode::InvalidRequest,
            Error::InvalidAmount(_) => ErrorCode::InvalidAmount,
            Error::NotFound { .. } => ErrorCode::NotFound,
            Error::InsufficientCredits { .. } => ErrorCode::InsufficientCredits,
            Error::IdempotencyConflict { .. } => ErrorCode::IdempotencyConflict,
            Error::InvalidTransition { .. } => ErrorCode::InvalidTransition,
            Error::ProviderUnavailable { .. } => ErrorCode::ProviderUnavailable,
            Error::ProviderNotConfigured { .. } => ErrorCode::ProviderNotConfigured,
            Error::ExistsWithDifferentFields { .. } => ErrorCode::ExistsWithDifferentFields,
            Error::HoldAlreadyResolved { .. } => ErrorCode::HoldAlreadyResolved,
            Error::HoldExpired { .. } => ErrorCode::HoldExpired,
            Error::CaptureExceedsHold { .. } => ErrorCode::CaptureExceedsHold,
            Error::RefundExceedsCharge { .. } => ErrorCode::RefundExceedsCharge,
            Error::WrongTransferKind { .. } => ErrorCode::WrongTransferKind,
            Error::Estimate(inner) => inner.code(),
            Error::InvalidCatalog(_) => ErrorCode::InvalidCatalog,
            Error::UnknownPriceVersion { .. } => ErrorCode::UnknownPriceVersion,
            Error::PriceVersionConflict { .. } => ErrorCode::PriceVersionConflict,
            Error::NoPriceCatalog => ErrorCode::NoPriceCatalog,
            Error::Unauthorized { .. } => ErrorCode::Unauthorized,
            Error::TokenExpired => ErrorCode::TokenExpired,
            Error::Forbidden { .. } => ErrorCode::Forbidden,
            Error::CsrfTokenInvalid => ErrorCode::CsrfTokenInvalid,
            Error::NotConfigured { .. } => ErrorCode::NotConfigured,
            Error::InvalidSignature => ErrorCode::InvalidSignature,
            Error::WebhookUnverified { .. } => ErrorCode::WebhookUnverified,
            Error::StaleTimestamp { .. } => ErrorCode::StaleTimestamp,
            Error::NonceReused => ErrorCode::NonceReused,
            Error::RefreshTokenReused => ErrorCode::RefreshTokenReused,
            Error::RegistrationExpired => ErrorCode::RegistrationExpired,
            Error::AgentNotBound { .. } => ErrorCode::AgentNotBound,
            Error::AgentAlreadyBound { .. } => ErrorCode::AgentAlreadyBound,
            Error::IdentityRefused { .. } => ErrorCode::IdentityRefused,
            Error::UpstreamUnavailable { .. } => ErrorCode::UpstreamUnavailable,
            Error::IdentityProviderNotConfigured { .. } => ErrorCode::NotFound,
            Error::OutputExpired { .. } => ErrorCode::OutputExpired,
            Error::CodeInvalid => ErrorCode::CodeInvalid,
            Error::CodeExpired { .. } => ErrorCode::CodeExpired,
            Error::CodeUsedUp { .. } => ErrorCode::CodeUsedUp,
            Error::CodeAlreadyRedeemed { .. } => ErrorCode::CodeAlreadyRedeemed,
            Error::BalanceLimit => ErrorCode::BalanceLimit,
            Error::SchemaTooNew { .. } => ErrorCode::SchemaTooNew,
            Error::Database { .. } => ErrorCode::StorageUnavailable,
            Error::RateLimited { .. } => ErrorCode::RateLimited,
            Error::PlanLimitReached { .. } => ErrorCode::PlanLimitReached,
            Error::SpendCapReached { .. } => ErrorCode::SpendCapReached,
            Error::PaymentInvalid { .. } => ErrorCode::PaymentInvalid,
            Error::PaymentRequired { .. } => ErrorCode::PaymentRequired,
            Error::PaymentMethodNotReady => ErrorCode::PaymentMethodNotReady,
            Error::PaymentDeclined { .. } => ErrorCode::PaymentDeclined,
            Error::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            Error::RequestTimeout => ErrorCode::RequestTimeout,
            Error::MalformedRequest => ErrorCode::BadRequest,
            Error::UriTooLong => ErrorCode::UriTooLong,
            Error::ExpectationFailed => ErrorCode::ExpectationFailed,
            Error::HeaderTooLarge => ErrorCode::HeaderTooLarge,
            Error::ServerBusy => ErrorCode::ServerBusy,
            Error::NoRoute { .. } => ErrorCode::NotFound,
            Error::MethodNotAllowed { .. } => ErrorCode::MethodNotAllowed,
            Error::CommitFailed { .. } => ErrorCode::StorageError,
            Error::WriterStopped => ErrorCode::StorageUnavailable,
            Error::WorkersFailing { .. } => ErrorCode::WorkersFailing,
            Error::Storage(_) => ErrorCode::StorageError,
            Error::StorageFull { .. } => ErrorCode::InsufficientStorage,
            Error::CorruptData { .. } | Error::Internal { .. } => ErrorCode::Internal,
            Error::Pool(_) => ErrorCode::StorageUnavailable,
        }
    }

    /// The machine code as a string (`insufficient_credits`).
    pub fn code(&self) -> &'static str {
        self.error_code().as_str()
    }

    /// The kind of failure, from the code's row in the one table.
    pub fn kind(&self) -> ErrorKind {
        self.error_code().kind()
    }

    /// Whether the fault is the server's (storage, a provider, an upstream,
    /// corrupt data) rather than the caller's: shells log these. Derived
    /// from [`Error::kind`].
    pub fn is_server_fault(&self) -> bool {
        self.kind().is_server_fault()
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

    pub(crate) fn internal(detail: impl Into<String>) -> Self {
        Error::Internal {
            detail: detail.into(),
        }
    }

    pub(crate) fn corrupt(detail: impl Into<String>) -> Self {
        Error::CorruptData {
            detail: detail.into(),
        }
    }

    /// A SQLite failure as [`Error::Storage`], unclassified (the `?`
    /// conversion classifies; this is for callers that already did).
    pub(crate) fn storage(err: rusqlite::Error) -> Self {
        Error::Storage(StorageError(StorageCause::Sqlite(err)))
    }

    /// A failure to get a pooled connection: [`Error::Pool`].
    pub(crate) fn pool(err: r2d2::Error) -> Self {
        Error::Pool(StorageError(StorageCause::Pool(err)))
    }
}

/// Whether SQLite failed because the disk (or the database's page limit)
/// is full: `SQLITE_FULL`, which SQLite also answers for `ENOSPC`.
pub(crate) fn is_disk_full(err: &rusqlite::Error) -> bool {
    matches!(
        err,
        rusqlite::Error::SqliteFailure(inner, _)
            if inner.code == rusqlite::ErrorCode::DiskFull
    )
}

/// Classifies a SQLite error: a full disk is [`Error::StorageFull`], a
/// stored value that does not decode is [`Error::CorruptData`], the rest
/// [`Error::Storage`]. Crate-internal: the conversion behind `?` on the
/// core's SQL. A trait impl cannot be private, so it is hidden from the
/// documentation and no part of the API: embedders never see a rusqlite
/// error, and a rusqlite upgrade may remove it.
#[doc(hidden)]
impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        match err {
            _ if is_disk_full(&err) => Error::StorageFull {
                detail: err.to_string(),
            },
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::IntegralValueOutOfRange(..) => Error::CorruptData {
                detail: err.to_string(),
            },
            other => Error::storage(other),
        }
    }
}

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
            Error::ProviderNotConfigured {
                model: "m".into(),
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
            Error::OutputExpired {
                job_id: "j".into(),
                index: 0,
            },
            Error::SpendCapReached {
                key_id: "key_x".into(),
                period: "day",
                cap_micros: 5_000_000,
                spent_micros: 4_000_000,
                reset_at: 0,
            },
            Error::PaymentInvalid { reason: "r".into() },
            Error::PaymentRequired {
                credits_micros: 1_000_000,
            },
            Error::PaymentMethodNotReady,
            Error::PaymentDeclined { reason: "r".into() },
            Error::CodeInvalid,
            Error::CodeExpired {
                code_id: "code_x".into(),
            },
            Error::CodeUsedUp {
                code_id: "code_x".into(),
            },
            Error::CodeAlreadyRedeemed {
                code_id: "code_x".into(),
            },
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
            Error::NotConfigured {
                feature: "top-ups".into(),
                hint: "ask the operator".into(),
            },
            Error::InvalidSignature,
            Error::WebhookUnverified {
                provider: "p".into(),
                reason: "r".into(),
            },
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
            Error::CsrfTokenInvalid,
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
            Error::PlanLimitReached {
                plan: "free".into(),
                product: "image".into(),
                limit: 10,
                used: 10,
                reset_at: 86_400_000,
            },
            Error::RequestTimeout,
            Error::MalformedRequest,
            Error::UriTooLong,
            Error::ExpectationFailed,
            Error::HeaderTooLarge,
            Error::ServerBusy,
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
            Error::StorageFull {
                detail: "database or disk is full".into(),
            },
            Error::CorruptData { detail: "d".into() },
            Error::Internal { detail: "d".into() },
            Error::WorkersFailing {
                failing_steps: 3,
                reason: "r".into(),
            },
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
        let names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names, ERROR_CODES, "one list");
    }

    #[test]
    fn messages_speak_credits_and_seconds() {
        let short = Error::InsufficientCredits {
            required_micros: 40_000_000,
            available_micros: 16_500,
            suggestion: None,
        };
        assert_eq!(
            short.to_string(),
            "insufficient credits: 40 credits required, 0.0165 available"
        );
        let over = Error::CaptureExceedsHold {
            requested_micros: 2_500_000,
            held_micros: 2_000_000,
        };
        assert_eq!(
            over.to_string(),
            "a capture of 2.5 credits exceeds the hold of 2 credits"
        );
        let refund = Error::RefundExceedsCharge {
            requested_micros: 3_000_000,
            refundable_micros: 1_000_000,
        };
        assert!(refund.to_string().contains("3 credits"), "{refund}");
        assert!(!refund.to_string().contains("micro"), "{refund}");
        // `retry_after` is in seconds, and so is the message.
        let limited = Error::RateLimited {
            retry_after_ms: 1_200,
        };
        assert_eq!(limited.to_string(), "rate limited: retry after 2 s");
    }

    #[test]
    fn a_full_disk_is_its_own_kind_and_decode_failures_are_server_faults() {
        let full = Error::from(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        ));
        assert_eq!(full.code(), "insufficient_storage");
        assert_eq!(full.kind(), ErrorKind::StorageFull);
        let corrupt = Error::from(rusqlite::Error::InvalidColumnType(
            3,
            "estimate".into(),
            rusqlite::types::Type::Integer,
        ));
        assert_eq!(corrupt.code(), "internal");
        assert!(corrupt.is_server_fault());
        let other = Error::from(rusqlite::Error::QueryReturnedNoRows);
        assert_eq!(other.code(), "storage_error");
    }
}
