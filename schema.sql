-- creditgate schema: migration 0, the one source of truth.
--
-- Embedded by core (`store::SCHEMA_SQL`) and applied on open when
-- `PRAGMA user_version` is 0. Later changes are appended as numbered
-- migrations at the end of this file; no released SQL is ever edited.
--
-- Money is integer micro-credits (1 credit = 1,000,000) everywhere in SQL.
-- Timestamps are Unix milliseconds from the injected clock.

-- A customer account: owns one wallet in the ledger.
CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    plan        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

-- Ledger accounts (TigerBeetle-style): a wallet per account plus system
-- accounts. Balances are materialised here and updated in the same
-- transaction as each transfer. Wallets are credit-normal:
-- available = credits_posted - debits_posted - debits_pending.
CREATE TABLE ledger_accounts (
    id               INTEGER PRIMARY KEY,
    code             TEXT NOT NULL UNIQUE,
    kind             TEXT NOT NULL CHECK (kind IN ('wallet', 'system')),
    account_id       TEXT UNIQUE REFERENCES accounts (id),
    allow_negative   INTEGER NOT NULL DEFAULT 0 CHECK (allow_negative IN (0, 1)),
    debits_posted    INTEGER NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    credits_posted   INTEGER NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    debits_pending   INTEGER NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
    credits_pending  INTEGER NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
    created_at       INTEGER NOT NULL,
    -- The database's own backstop for "no wallet below zero"; the ledger
    -- checks first with a conditional write and a typed error.
    CHECK (allow_negative = 1 OR credits_posted - debits_posted - debits_pending >= 0),
    CHECK ((kind = 'wallet') = (account_id IS NOT NULL))
) STRICT;

-- Immutable transfers. `seq` orders history; `id` is caller-chosen.
-- kind: grant (system:grants -> wallet, posted), hold (wallet -> system:revenue,
-- pending), capture (posts a hold, all or part), release and expire (void a
-- hold), refund (system:revenue -> wallet, posted, reverses a capture);
-- migration 9 adds reversal (wallet -> system:grants, posted, takes back a grant).
-- `amount` of a release/expire is the voided hold amount.
-- `chain` is SHA-256 over the previous row's chain and this row's fields, so
-- `ledger verify` detects an update or delete even if the triggers are dropped.
CREATE TABLE transfers (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL
                    CHECK (kind IN ('grant', 'hold', 'capture', 'release', 'expire', 'refund')),
    debit_account   INTEGER NOT NULL REFERENCES ledger_accounts (id),
    credit_account  INTEGER NOT NULL REFERENCES ledger_accounts (id),
    amount          INTEGER NOT NULL CHECK (amount > 0),
    pending_id      TEXT REFERENCES transfers (id),
    refund_of       TEXT REFERENCES transfers (id),
    deadline        INTEGER,
    memo            TEXT NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    chain           BLOB NOT NULL,
    CHECK (debit_account <> credit_account),
    CHECK ((kind IN ('capture', 'release', 'expire')) = (pending_id IS NOT NULL)),
    CHECK ((kind = 'refund') = (refund_of IS NOT NULL)),
    CHECK (deadline IS NULL OR kind = 'hold')
) STRICT;

-- A hold resolves at most once, as a database fact.
CREATE UNIQUE INDEX transfers_one_resolution_per_hold
    ON transfers (pending_id) WHERE pending_id IS NOT NULL;
CREATE INDEX transfers_refund_of ON transfers (refund_of) WHERE refund_of IS NOT NULL;
CREATE INDEX transfers_debit_account ON transfers (debit_account, seq);
CREATE INDEX transfers_credit_account ON transfers (credit_account, seq);

CREATE TRIGGER transfers_are_never_updated BEFORE UPDATE ON transfers
BEGIN
    SELECT RAISE(ABORT, 'transfers are immutable');
END;
CREATE TRIGGER transfers_are_never_deleted BEFORE DELETE ON transfers
BEGIN
    SELECT RAISE(ABORT, 'transfers are immutable');
END;

-- Open holds: a hold's row lives here from its hold transfer until its
-- resolution (capture, release or expire) and is deleted in that same
-- transaction. Derived state, cross-checked by `ledger verify`; it exists so
-- the expiry sweep and pending sums do not scan every transfer.
CREATE TABLE open_holds (
    transfer_id     TEXT PRIMARY KEY REFERENCES transfers (id),
    wallet          INTEGER NOT NULL REFERENCES ledger_accounts (id),
    amount          INTEGER NOT NULL CHECK (amount > 0),
    deadline        INTEGER
) STRICT, WITHOUT ROWID;
CREATE INDEX open_holds_deadline ON open_holds (deadline) WHERE deadline IS NOT NULL;

INSERT INTO ledger_accounts (code, kind, allow_negative, created_at)
VALUES ('system:grants', 'system', 1, 0),
       ('system:revenue', 'system', 0, 0);

-- ---------------------------------------------------------------------------
-- Price catalogs (module `pricing`): immutable versions, exactly one active.
-- ---------------------------------------------------------------------------
CREATE TABLE price_versions (
    version      TEXT PRIMARY KEY,
    catalog      TEXT NOT NULL,        -- the validated catalog, as JSON
    digest       TEXT NOT NULL,        -- SHA-256 of `catalog`
    imported_at  INTEGER NOT NULL,
    active       INTEGER NOT NULL DEFAULT 0 CHECK (active IN (0, 1)),
    retired      INTEGER NOT NULL DEFAULT 0 CHECK (retired IN (0, 1)),
    CHECK (NOT (active = 1 AND retired = 1))
) STRICT;
CREATE UNIQUE INDEX price_versions_one_active ON price_versions (active) WHERE active = 1;
CREATE TRIGGER price_versions_catalog_is_immutable BEFORE UPDATE OF catalog, digest, version ON price_versions
BEGIN
    SELECT RAISE(ABORT, 'a price version is immutable');
END;

-- ---------------------------------------------------------------------------
-- Generation jobs (module `jobs`): the idempotent state machine.
-- ---------------------------------------------------------------------------
CREATE TABLE jobs (
    id                 TEXT PRIMARY KEY,            -- job_<hex>, the task_id
    account_id         TEXT NOT NULL REFERENCES accounts (id),
    request_id         TEXT NOT NULL,
    fingerprint        TEXT NOT NULL,               -- SHA-256 of the normalised request
    request            TEXT NOT NULL,               -- the normalised request, JSON
    product            TEXT NOT NULL,
    model              TEXT NOT NULL,
    price_version      TEXT NOT NULL REFERENCES price_versions (version),
    estimate_micros    INTEGER NOT NULL CHECK (estimate_micros >= 0),
    estimate           TEXT NOT NULL,               -- the priced estimate with breakdown, JSON
    hold_id            TEXT UNIQUE REFERENCES transfers (id),  -- NULL only for a free job
    usage_event_id     TEXT NOT NULL UNIQUE,
    provider           TEXT NOT NULL,
    upstream_model     TEXT NOT NULL,
    provider_task_id   TEXT,
    status             TEXT NOT NULL
                       CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'canceled', 'expired')),
    submit_attempts    INTEGER NOT NULL DEFAULT 0,
    submit_started_at  INTEGER,                     -- set before a provider submit, for crash reconciliation
    polls              INTEGER NOT NULL DEFAULT 0,
    poll_errors        INTEGER NOT NULL DEFAULT 0,
    next_run_at        INTEGER NOT NULL,
    lease_until        INTEGER,
    deadline           INTEGER NOT NULL,
    output_token       TEXT NOT NULL,               -- unguessable part of output URLs
    outputs            TEXT,                        -- JSON array of {url, mime}
    seed               INTEGER,
    error_code         TEXT,
    error_message      TEXT,
    charged_micros     INTEGER,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    finished_at        INTEGER,
    UNIQUE (account_id, request_id),
    CHECK ((hold_id IS NULL) = (estimate_micros = 0)),
    CHECK ((status IN ('succeeded', 'failed', 'canceled', 'expired')) = (finished_at IS NOT NULL)),
    CHECK ((status = 'succeeded') = (charged_micros IS NOT NULL))
) STRICT;
CREATE INDEX jobs_due ON jobs (next_run_at) WHERE status IN ('pending', 'running');
CREATE INDEX jobs_deadline ON jobs (deadline) WHERE status IN ('pending', 'running');
CREATE INDEX jobs_account_created ON jobs (account_id, created_at);
CREATE INDEX jobs_status_created ON jobs (status, created_at);

-- One usage event per charge: links a succeeded job to its capture (a free
-- job's event has no transfer).
CREATE TABLE usage_events (
    id           TEXT PRIMARY KEY,
    job_id       TEXT NOT NULL UNIQUE REFERENCES jobs (id),
    account_id   TEXT NOT NULL REFERENCES accounts (id),
    transfer_id  TEXT UNIQUE REFERENCES transfers (id),
    amount       INTEGER NOT NULL CHECK (amount >= 0),
    model        TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    CHECK ((transfer_id IS NULL) = (amount = 0))
) STRICT;
-- ===========================================================================
-- Identity (core/src/identity): API keys, agents, nonces, tokens.
-- No secret is stored: API keys, access and refresh tokens and registration
-- codes are kept only as their SHA-256 (32 bytes), found by a unique index.
-- ===========================================================================

-- An agent: an ed25519 identity (one per public key), bound by its owner to
-- an account. `allowed_scopes` is a space-separated sorted list, or NULL for
-- "any scope but admin". An agent that signs in through an external identity
-- provider (see `external_identities` below) has no public key and cannot
-- sign requests. Written by identity/agents.rs alone.
CREATE TABLE agents (
    id                       TEXT PRIMARY KEY,
    public_key               BLOB UNIQUE CHECK (public_key IS NULL OR length(public_key) = 32),
    name                     TEXT NOT NULL,
    version                  TEXT NOT NULL,
    registration_code_hash   BLOB NOT NULL UNIQUE CHECK (length(registration_code_hash) = 32),
    registration_expires_at  INTEGER NOT NULL,
    account_id               TEXT REFERENCES accounts (id),
    allowed_scopes           TEXT CHECK (allowed_scopes IS NULL OR allowed_scopes <> ''),
    bound_at                 INTEGER,
    created_at               INTEGER NOT NULL,
    CHECK ((account_id IS NULL) = (bound_at IS NULL)),
    CHECK (account_id IS NOT NULL OR allowed_scopes IS NULL)
) STRICT;
CREATE INDEX agents_account ON agents (account_id) WHERE account_id IS NOT NULL;

-- Nonces of signed agent requests, single use per agent, remembered until
-- `expires_at` (the request's timestamp plus the acceptance window).
-- Written by identity/agents.rs alone.
CREATE TABLE agent_nonces (
    agent_id    TEXT NOT NULL REFERENCES agents (id),
    nonce       TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (agent_id, nonce)
) STRICT, WITHOUT ROWID;
CREATE INDEX agent_nonces_expires_at ON agent_nonces (expires_at);

-- API keys: `cg_live_…` made by an owner (agent_id NULL) or `cg_agent_…`
-- made by an agent. `scopes` is a space-separated sorted list.
-- Written by identity/keys.rs alone.
CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    agent_id      TEXT REFERENCES agents (id),
    name          TEXT NOT NULL,
    secret_hash   BLOB NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
    scopes        TEXT NOT NULL CHECK (scopes <> ''),
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    last_used_at  INTEGER,
    revoked_at    INTEGER
) STRICT;
CREATE INDEX api_keys_account ON api_keys (account_id, created_at);
CREATE INDEX api_keys_agent ON api_keys (agent_id, created_at) WHERE agent_id IS NOT NULL;

-- A token family: one agent token exchange and every access and refresh
-- token rotated from it; revoked as a whole (`revoked_reason` says why).
-- Written by identity/tokens.rs alone, as are the two token tables below.
CREATE TABLE token_families (
    id              TEXT PRIMARY KEY,
    agent_id        TEXT NOT NULL REFERENCES agents (id),
    account_id      TEXT NOT NULL REFERENCES accounts (id),
    key_id          TEXT NOT NULL REFERENCES api_keys (id),
    scopes          TEXT NOT NULL CHECK (scopes <> ''),
    created_at      INTEGER NOT NULL,
    revoked_at      INTEGER,
    revoked_reason  TEXT,
    CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL))
) STRICT;

CREATE TABLE access_tokens (
    token_hash  BLOB PRIMARY KEY CHECK (length(token_hash) = 32),
    family_id   TEXT NOT NULL REFERENCES token_families (id),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX access_tokens_expires_at ON access_tokens (expires_at);

-- A refresh token is used once (`used_at`); presenting it again revokes
-- its family.
CREATE TABLE refresh_tokens (
    token_hash  BLOB PRIMARY KEY CHECK (length(token_hash) = 32),
    family_id   TEXT NOT NULL REFERENCES token_families (id),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
) STRICT, WITHOUT ROWID;
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);

-- ===========================================================================
-- External identities (core/src/identity/external.rs): agents that sign in
-- with an identity token of an external provider ("Sign in with Moltbook").
-- ===========================================================================

-- One row per (provider, external id): the creditgate agent a verified
-- external identity maps to, created on its first exchange; the agent row
-- (no public key) carries the binding to an account like any other agent.
-- `name` and `karma` are the provider's latest answer, kept for operators;
-- no identity token is stored. Written by identity/external.rs alone.
CREATE TABLE external_identities (
    provider          TEXT NOT NULL CHECK (provider <> ''),
    external_id       TEXT NOT NULL CHECK (external_id <> ''),
    agent_id          TEXT NOT NULL UNIQUE REFERENCES agents (id),
    name              TEXT NOT NULL,
    karma             INTEGER,
    owner_handle      TEXT,
    created_at        INTEGER NOT NULL,
    last_verified_at  INTEGER NOT NULL,
    PRIMARY KEY (provider, external_id)
) STRICT, WITHOUT ROWID;

-- ===========================================================================
-- Later migrations, appended in order and never edited once released. Each
-- starts at a line `-- @migration N: what it does`; store.rs splits this
-- file there (everything above the first one is migration 0) and applies
-- migration N to a database whose `PRAGMA user_version` is N.
-- ===========================================================================

-- @migration 1: index jobs for listing by creation time only.
--
-- `jobs_status_created` was rewritten by every status change (three per
-- job: pending, running, and its end), which the load benchmark paid for
-- on the single writer. Listing all jobs now walks `jobs_created` (written
-- once, at insert) newest first and filters by status as it goes; an
-- account's jobs keep `jobs_account_created`.
DROP INDEX jobs_status_created;
CREATE INDEX jobs_created ON jobs (created_at);

-- @migration 2: real upstreams: provider state, lookup by upstream task id,
-- upstream cancels sent by workers, deduplicated webhook deliveries, kept
-- media files.
--
-- `provider_state` is the adapter's opaque JSON (status and result URLs,
-- ComfyUI's client id, kie.ai's per-family endpoint); `usage` is what a success actually used, JSON;
-- `pending_outputs` holds a finished job's remote outputs while copying them
-- into the media store failed for now (JSON), for a later try. A webhook
-- finds its job by (provider, provider_task_id).
ALTER TABLE jobs ADD COLUMN provider_state TEXT;
ALTER TABLE jobs ADD COLUMN usage TEXT;
ALTER TABLE jobs ADD COLUMN pending_outputs TEXT;
CREATE INDEX jobs_provider_task ON jobs (provider, provider_task_id)
    WHERE provider_task_id IS NOT NULL;

-- Upstream cancels still to send (module `jobs`): an agent's cancel is
-- recorded here in its own transaction and sent by a worker, best effort,
-- never on the HTTP thread.
CREATE TABLE provider_cancels (
    job_id      TEXT PRIMARY KEY REFERENCES jobs (id),
    provider    TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_at     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX provider_cancels_due ON provider_cancels (next_at);

-- Upstream webhook deliveries already applied (module `jobs`), by the
-- provider instance and the delivery's own id (Replicate's `webhook-id`
-- repeats on retries): a repeat changes nothing. Kept for a week (upstreams
-- retry for hours), then pruned by the worker.
CREATE TABLE provider_deliveries (
    provider     TEXT NOT NULL,
    delivery_id  TEXT NOT NULL CHECK (delivery_id <> ''),
    job_id       TEXT REFERENCES jobs (id),
    received_at  INTEGER NOT NULL,
    PRIMARY KEY (provider, delivery_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX provider_deliveries_received ON provider_deliveries (received_at);

-- Outputs kept in the media store (module `media`): files beside the
-- database, one row each, removed after the retention period. `path` is
-- relative to the media directory; `upstream_url` is where it came from,
-- for the operator (never shown to agents).
CREATE TABLE media_files (
    job_id        TEXT NOT NULL REFERENCES jobs (id),
    idx           INTEGER NOT NULL CHECK (idx >= 0),
    path          TEXT NOT NULL UNIQUE,
    mime          TEXT NOT NULL,
    bytes         INTEGER NOT NULL CHECK (bytes >= 0),
    sha256        BLOB NOT NULL CHECK (length(sha256) = 32),
    upstream_url  TEXT,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    removed_at    INTEGER,
    PRIMARY KEY (job_id, idx)
) STRICT, WITHOUT ROWID;
CREATE INDEX media_files_expiry ON media_files (expires_at) WHERE removed_at IS NULL;

-- @migration 3: plan tiers: daily caps per product, counted per account per
-- UTC day (module `plans`).
--
-- A plan caps how many jobs of a catalog product (`image`, `video`,
-- `chat`, ...) an account on it may start per UTC day; a product with no
-- `plan_caps` row is unlimited, and an account whose `plan` names no plan
-- row has no caps at all. `is_default` marks the plan an account created
-- without one is put on (at most one, by a partial unique index; none
-- shipped). `plan_usage` counts accepted submits per account, product and
-- day (days since the Unix epoch, UTC), written in the same transaction as
-- the job's hold. Shipped plans carry the timestamp 0: a migration has no
-- clock. The three shipped plans are reference 002's tiers.
CREATE TABLE plans (
    name        TEXT PRIMARY KEY CHECK (name <> ''),
    is_default  INTEGER NOT NULL DEFAULT 0 CHECK (is_default IN (0, 1)),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX plans_one_default ON plans (is_default) WHERE is_default = 1;

CREATE TABLE plan_caps (
    plan        TEXT NOT NULL REFERENCES plans (name),
    product     TEXT NOT NULL CHECK (product <> ''),
    daily_max   INTEGER NOT NULL CHECK (daily_max >= 0),
    PRIMARY KEY (plan, product)
) STRICT, WITHOUT ROWID;

CREATE TABLE plan_usage (
    account_id  TEXT NOT NULL REFERENCES accounts (id),
    product     TEXT NOT NULL,
    day         INTEGER NOT NULL,
    used        INTEGER NOT NULL CHECK (used >= 0),
    PRIMARY KEY (account_id, product, day)
) STRICT, WITHOUT ROWID;

INSERT INTO plans (name, created_at, updated_at) VALUES
    ('free', 0, 0), ('pro', 0, 0), ('enterprise', 0, 0);
INSERT INTO plan_caps (plan, product, daily_max) VALUES
    ('free', 'image', 10), ('free', 'video', 2), ('free', 'chat', 50),
    ('pro', 'image', 200), ('pro', 'video', 50);

-- Until now an account created without a plan was put on `free`, a name
-- with no meaning. Now that `free` has caps, those accounts move to `none`
-- (no plan row, so no caps: nothing changes for them).
UPDATE accounts SET plan = 'none' WHERE plan = 'free';

-- @migration 4: redemption codes (module `codes`).
--
-- A code grants `amount_micros` credits to each account that redeems it,
-- at most `uses_max` times in all and, when `once_per_account`, once per
-- account. Only the SHA-256 of its secret is stored. A redemption takes a
-- use with one conditional UPDATE (`uses < uses_max`, not revoked, not
-- expired) and inserts its row and its grant transfer in the same
-- transaction; `once_key` (the account id for a once-per-account code,
-- else the use's number) makes a second redemption by the same account a
-- constraint violation even if the code path above it were wrong.
CREATE TABLE redemption_codes (
    id                TEXT PRIMARY KEY,
    secret_hash       BLOB NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
    amount_micros     INTEGER NOT NULL CHECK (amount_micros > 0),
    uses_max          INTEGER NOT NULL CHECK (uses_max > 0),
    uses              INTEGER NOT NULL DEFAULT 0 CHECK (uses >= 0 AND uses <= uses_max),
    once_per_account  INTEGER NOT NULL CHECK (once_per_account IN (0, 1)),
    expires_at        INTEGER,
    memo              TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    revoked_at        INTEGER
) STRICT;

CREATE TABLE code_redemptions (
    code_id      TEXT NOT NULL REFERENCES redemption_codes (id),
    use_number   INTEGER NOT NULL CHECK (use_number >= 1),
    account_id   TEXT NOT NULL REFERENCES accounts (id),
    once_key     TEXT NOT NULL,
    transfer_id  TEXT NOT NULL UNIQUE REFERENCES transfers (id),
    redeemed_at  INTEGER NOT NULL,
    PRIMARY KEY (code_id, use_number),
    UNIQUE (code_id, once_key)
) STRICT, WITHOUT ROWID;
CREATE INDEX code_redemptions_account ON code_redemptions (account_id, redeemed_at);

-- @migration 5: spend caps per API key (module `spendcaps`).
--
-- A key may carry a cap on the credits its jobs hold per UTC day and per
-- UTC month (`key_spend_caps`; NULL is no cap on that period). Once a key
-- has caps, each job it submits counts its hold against the key's day and
-- month (`key_spend`) in the same transaction as the hold, refused past a
-- cap; `key_spend_jobs` remembers what each job counted and where, so a
-- job that ends unpaid gives its share back, and a success charged less
-- than its hold gives back the difference, to the periods it was counted
-- in. Counting starts when a key is first capped.
CREATE TABLE key_spend_caps (
    key_id          TEXT PRIMARY KEY REFERENCES api_keys (id),
    daily_micros    INTEGER CHECK (daily_micros IS NULL OR daily_micros >= 0),
    monthly_micros  INTEGER CHECK (monthly_micros IS NULL OR monthly_micros >= 0),
    updated_at      INTEGER NOT NULL,
    CHECK (daily_micros IS NOT NULL OR monthly_micros IS NOT NULL)
) STRICT;

CREATE TABLE key_spend (
    key_id        TEXT NOT NULL REFERENCES api_keys (id),
    period        TEXT NOT NULL,
    spent_micros  INTEGER NOT NULL CHECK (spent_micros >= 0),
    PRIMARY KEY (key_id, period)
) STRICT, WITHOUT ROWID;

CREATE TABLE key_spend_jobs (
    job_id          TEXT PRIMARY KEY REFERENCES jobs (id),
    key_id          TEXT NOT NULL REFERENCES api_keys (id),
    day_period      TEXT NOT NULL,
    month_period    TEXT NOT NULL,
    counted_micros  INTEGER NOT NULL CHECK (counted_micros >= 0)
) STRICT, WITHOUT ROWID;

-- @migration 6: top-ups through payment rails (module `payments`).
--
-- A top-up is opened before the rail is called (`open`), carries the
-- rail's checkout id once it answered, and is credited once, by the grant
-- `topup_<id>`, when a verified event says it was paid (`credited`), or
-- marked `failed` when the rail refused to open it. `payment_events` keeps
-- every verified event id per rail, inserted in the same transaction as
-- what the event did: a replayed or retried event finds its id and
-- changes nothing more.
CREATE TABLE topups (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL REFERENCES accounts (id),
    rail            TEXT NOT NULL CHECK (rail IN ('stripe')),
    credits_micros  INTEGER NOT NULL CHECK (credits_micros > 0),
    amount_minor    INTEGER NOT NULL CHECK (amount_minor > 0),
    currency        TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('open', 'credited', 'failed')),
    external_id     TEXT UNIQUE,
    checkout_url    TEXT,
    transfer_id     TEXT UNIQUE REFERENCES transfers (id),
    created_at      INTEGER NOT NULL,
    credited_at     INTEGER,
    CHECK ((status = 'credited') = (transfer_id IS NOT NULL))
) STRICT;
CREATE INDEX topups_account ON topups (account_id, created_at);

CREATE TABLE payment_events (
    rail         TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    kind         TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    topup_id     TEXT REFERENCES topups (id),
    received_at  INTEGER NOT NULL,
    PRIMARY KEY (rail, event_id)
) STRICT, WITHOUT ROWID;

-- @migration 7: outgoing webhooks (module `outbox`).
--
-- An operator's endpoint receives the events it subscribes to (`events`,
-- comma-separated: job.finished, balance.low, topup.credited,
-- code.redeemed). Its signing secret is not stored: it is derived from
-- the server's signing key (environment only) and the endpoint's id.
-- A delivery is inserted in the same transaction as its event (the
-- outbox), then sent by a worker outside any transaction, retried with
-- capped exponential backoff until delivered or out of attempts.
-- `low_balance_marks` remembers which accounts are below an endpoint's
-- threshold, so a crossing is one event, not one per request.
CREATE TABLE webhook_endpoints (
    id                      TEXT PRIMARY KEY,
    url                     TEXT NOT NULL,
    events                  TEXT NOT NULL,
    low_balance_micros      INTEGER CHECK (low_balance_micros IS NULL OR low_balance_micros >= 0),
    created_at              INTEGER NOT NULL,
    removed_at              INTEGER
) STRICT;

CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,
    endpoint_id      TEXT NOT NULL REFERENCES webhook_endpoints (id),
    event_type       TEXT NOT NULL,
    payload          TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  INTEGER NOT NULL,
    last_status      INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    delivered_at     INTEGER
) STRICT;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';

CREATE TABLE low_balance_marks (
    endpoint_id  TEXT NOT NULL REFERENCES webhook_endpoints (id),
    account_id   TEXT NOT NULL REFERENCES accounts (id),
    PRIMARY KEY (endpoint_id, account_id)
) STRICT, WITHOUT ROWID;

-- @migration 8: x402 top-ups (module `payments`).
--
-- `topups` gains the rail `x402`, the status `settling` (the facilitator
-- was asked to settle and has not answered that it did: the payment may
-- have moved, so it is settled again, never dropped), the payment payload
-- kept for that retry (`rail_payload`) and the rail's settlement (the
-- transaction). SQLite cannot widen a CHECK in place, so the table is
-- rebuilt; migrations run with foreign keys off and are checked with
-- `foreign_key_check` before they commit.
CREATE TABLE topups_v8 (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL REFERENCES accounts (id),
    rail            TEXT NOT NULL CHECK (rail IN ('stripe', 'x402')),
    credits_micros  INTEGER NOT NULL CHECK (credits_micros > 0),
    amount_minor    INTEGER NOT NULL CHECK (amount_minor > 0),
    currency        TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('open', 'settling', 'credited', 'failed')),
    external_id     TEXT UNIQUE,
    checkout_url    TEXT,
    transfer_id     TEXT UNIQUE REFERENCES transfers (id),
    created_at      INTEGER NOT NULL,
    credited_at     INTEGER,
    rail_payload    TEXT,
    settlement      TEXT,
    CHECK ((status = 'credited') = (transfer_id IS NOT NULL))
) STRICT;
INSERT INTO topups_v8 (id, account_id, rail, credits_micros, amount_minor, currency, status,
                       external_id, checkout_url, transfer_id, created_at, credited_at)
    SELECT id, account_id, rail, credits_micros, amount_minor, currency, status,
           external_id, checkout_url, transfer_id, created_at, credited_at
      FROM topups;
DROP TABLE topups;
ALTER TABLE topups_v8 RENAME TO topups;
CREATE INDEX topups_account ON topups (account_id, created_at);
CREATE INDEX topups_settling ON topups (created_at) WHERE status = 'settling';
CREATE INDEX payment_events_topup ON payment_events (topup_id) WHERE topup_id IS NOT NULL;

-- @migration 9: reversals (module `ledger`).
--
-- A reversal takes back (part of) a grant: wallet -> system:grants,
-- posted, `refund_of` naming the grant. A Stripe refund or dispute of a
-- credited top-up posts one. The reversals of a grant never exceed it. A
-- reversal takes a wallet below zero only if the wallet is flagged
-- `allow_negative`; otherwise it takes what is there and the rest is
-- recorded on the top-up (`unrecovered_micros`) for the operator. The
-- table is rebuilt to widen its CHECKs, keeping every row, its `seq`, its
-- chain hash and the AUTOINCREMENT sequence.
CREATE TABLE transfers_v9 (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL
                    CHECK (kind IN ('grant', 'hold', 'capture', 'release', 'expire', 'refund',
                                    'reversal')),
    debit_account   INTEGER NOT NULL REFERENCES ledger_accounts (id),
    credit_account  INTEGER NOT NULL REFERENCES ledger_accounts (id),
    amount          INTEGER NOT NULL CHECK (amount > 0),
    pending_id      TEXT REFERENCES transfers (id),
    refund_of       TEXT REFERENCES transfers (id),
    deadline        INTEGER,
    memo            TEXT NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    chain           BLOB NOT NULL,
    CHECK (debit_account <> credit_account),
    CHECK ((kind IN ('capture', 'release', 'expire')) = (pending_id IS NOT NULL)),
    CHECK ((kind IN ('refund', 'reversal')) = (refund_of IS NOT NULL)),
    CHECK (deadline IS NULL OR kind = 'hold')
) STRICT;
INSERT INTO transfers_v9 (seq, id, kind, debit_account, credit_account, amount, pending_id,
                          refund_of, deadline, memo, created_at, chain)
    SELECT seq, id, kind, debit_account, credit_account, amount, pending_id,
           refund_of, deadline, memo, created_at, chain
      FROM transfers ORDER BY seq;
UPDATE sqlite_sequence
   SET seq = (SELECT seq FROM sqlite_sequence WHERE name = 'transfers')
 WHERE name = 'transfers_v9';
DROP TABLE transfers;
ALTER TABLE transfers_v9 RENAME TO transfers;
CREATE UNIQUE INDEX transfers_one_resolution_per_hold
    ON transfers (pending_id) WHERE pending_id IS NOT NULL;
CREATE INDEX transfers_refund_of ON transfers (refund_of) WHERE refund_of IS NOT NULL;
CREATE INDEX transfers_debit_account ON transfers (debit_account, seq);
CREATE INDEX transfers_credit_account ON transfers (credit_account, seq);
CREATE TRIGGER transfers_are_never_updated BEFORE UPDATE ON transfers
BEGIN
    SELECT RAISE(ABORT, 'transfers are immutable');
END;
CREATE TRIGGER transfers_are_never_deleted BEFORE DELETE ON transfers
BEGIN
    SELECT RAISE(ABORT, 'transfers are immutable');
END;

ALTER TABLE topups ADD COLUMN reversed_micros INTEGER NOT NULL DEFAULT 0
    CHECK (reversed_micros >= 0);
ALTER TABLE topups ADD COLUMN unrecovered_micros INTEGER NOT NULL DEFAULT 0
    CHECK (unrecovered_micros >= 0);
-- The payment that paid a Stripe top-up (its payment intent), which
-- refunds and disputes name.
ALTER TABLE topups ADD COLUMN payment_ref TEXT;
CREATE UNIQUE INDEX topups_payment_ref ON topups (payment_ref) WHERE payment_ref IS NOT NULL;

-- @migration 10: saved payment methods and auto top-up (module
-- `autotopup`).
--
-- A payment method is saved when Stripe reports a payment made with
-- `setup_future_usage=off_session` (the first card top-up): its customer
-- and method ids, never card data. An account's auto top-up buys
-- `amount_micros` (or the shortfall, if more) when a hold would fail or a
-- capture leaves the balance below `threshold_micros`, at most once per
-- `window_ms`: the window is claimed (`last_charge_at`) in the same write
-- that stores the charge's top-up (`origin` `auto`), the durable intent a
-- sender charges with the top-up id as Stripe's `Idempotency-Key`, so a
-- crash or a retry never charges twice.
CREATE TABLE payment_methods (
    account_id  TEXT PRIMARY KEY REFERENCES accounts (id),
    rail        TEXT NOT NULL CHECK (rail IN ('stripe')),
    customer    TEXT NOT NULL,
    method      TEXT NOT NULL,
    saved_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE auto_topups (
    account_id        TEXT PRIMARY KEY REFERENCES accounts (id),
    threshold_micros  INTEGER NOT NULL CHECK (threshold_micros >= 0),
    amount_micros     INTEGER NOT NULL CHECK (amount_micros > 0),
    window_ms         INTEGER NOT NULL CHECK (window_ms > 0),
    last_charge_at    INTEGER,
    updated_at        INTEGER NOT NULL
) STRICT;

ALTER TABLE topups ADD COLUMN origin TEXT NOT NULL DEFAULT 'payer'
    CHECK (origin IN ('payer', 'auto', 'saved'));
CREATE INDEX topups_charges_open ON topups (created_at)
    WHERE status = 'open' AND origin != 'payer' AND external_id IS NULL;

-- @migration 11: promotional credits that expire (module `ledger`).
--
-- A promotional grant is a grant with a bucket: its credits are spent
-- before paid ones (the soonest-expiring bucket first) and what is left at
-- `expires_at` is taken back by a `reversal` of the grant (an expiry is a
-- transfer, never an edit). A hold draws from the buckets first
-- (`hold_draws`, one row per bucket it took from, deleted with its
-- resolution); a capture spends the draws first, and what a capture or a
-- release does not spend returns to the buckets it came from. A bucket's
-- amount is always available + held + spent + expired.
CREATE TABLE grant_buckets (
    grant_id    TEXT PRIMARY KEY REFERENCES transfers (id),
    wallet      INTEGER NOT NULL REFERENCES ledger_accounts (id),
    expires_at  INTEGER NOT NULL,
    amount      INTEGER NOT NULL CHECK (amount > 0),
    available   INTEGER NOT NULL CHECK (available >= 0),
    held        INTEGER NOT NULL DEFAULT 0 CHECK (held >= 0),
    spent       INTEGER NOT NULL DEFAULT 0 CHECK (spent >= 0),
    expired     INTEGER NOT NULL DEFAULT 0 CHECK (expired >= 0),
    CHECK (available + held + spent + expired = amount)
) STRICT, WITHOUT ROWID;
CREATE INDEX grant_buckets_of_wallet ON grant_buckets (wallet, expires_at)
    WHERE available > 0 OR held > 0;
CREATE INDEX grant_buckets_due ON grant_buckets (expires_at) WHERE available > 0;

CREATE TABLE hold_draws (
    hold_id   TEXT NOT NULL REFERENCES transfers (id),
    grant_id  TEXT NOT NULL REFERENCES grant_buckets (grant_id),
    amount    INTEGER NOT NULL CHECK (amount > 0),
    PRIMARY KEY (hold_id, grant_id)
) STRICT, WITHOUT ROWID;

-- @migration 12: running jobs are polled from a schedule in memory (module
-- `gate::schedule`), rebuilt from their stored `next_run_at` on start, so
-- a poll answering "still running" writes nothing. The due index keeps
-- pending jobs only: their claim stays durable (a submission is marked
-- before it is sent). Running jobs are found through `jobs_deadline`.
DROP INDEX jobs_due;
CREATE INDEX jobs_due ON jobs (next_run_at) WHERE status = 'pending';

-- @migration 13: fewer B-trees per job (issue 16). Three unique indexes
-- guarded what the ids' derivation already guarantees, and every new job
-- and every charge paid a page for each:
-- - `jobs.hold_id` is always `hold:<job id>` (now a CHECK), unique because
--   the job id is;
-- - `jobs.usage_event_id` names the job's usage event, whose own primary
--   key and one-event-per-job (`usage_events.job_id` UNIQUE) remain;
-- - `usage_events.transfer_id` is its job's capture, `capture:<job id>`
--   (now a CHECK), unique because `job_id` is.
-- (The transfers' AUTOINCREMENT stays: `ledger verify` reads its sequence
-- to see transfers deleted from the end of the chain.)
-- Both tables are rebuilt keeping every row. On a large database this
-- copies every job once, at the first start after the upgrade.
CREATE TABLE jobs_v13 (
    id                 TEXT PRIMARY KEY,
    account_id         TEXT NOT NULL REFERENCES accounts (id),
    request_id         TEXT NOT NULL,
    fingerprint        TEXT NOT NULL,
    request            TEXT NOT NULL,
    product            TEXT NOT NULL,
    model              TEXT NOT NULL,
    price_version      TEXT NOT NULL REFERENCES price_versions (version),
    estimate_micros    INTEGER NOT NULL CHECK (estimate_micros >= 0),
    estimate           TEXT NOT NULL,
    hold_id            TEXT REFERENCES transfers (id)
                       CHECK (hold_id IS NULL OR hold_id = 'hold:' || id),
    usage_event_id     TEXT NOT NULL,
    provider           TEXT NOT NULL,
    upstream_model     TEXT NOT NULL,
    provider_task_id   TEXT,
    status             TEXT NOT NULL
                       CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'canceled', 'expired')),
    submit_attempts    INTEGER NOT NULL DEFAULT 0,
    submit_started_at  INTEGER,
    polls              INTEGER NOT NULL DEFAULT 0,
    poll_errors        INTEGER NOT NULL DEFAULT 0,
    next_run_at        INTEGER NOT NULL,
    lease_until        INTEGER,
    deadline           INTEGER NOT NULL,
    output_token       TEXT NOT NULL,
    outputs            TEXT,
    seed               INTEGER,
    error_code         TEXT,
    error_message      TEXT,
    charged_micros     INTEGER,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    finished_at        INTEGER,
    provider_state     TEXT,
    usage              TEXT,
    pending_outputs    TEXT,
    UNIQUE (account_id, request_id),
    CHECK ((hold_id IS NULL) = (estimate_micros = 0)),
    CHECK ((status IN ('succeeded', 'failed', 'canceled', 'expired')) = (finished_at IS NOT NULL)),
    CHECK ((status = 'succeeded') = (charged_micros IS NOT NULL))
) STRICT;
INSERT INTO jobs_v13 (id, account_id, request_id, fingerprint, request, product, model,
        price_version, estimate_micros, estimate, hold_id, usage_event_id, provider,
        upstream_model, provider_task_id, status, submit_attempts, submit_started_at, polls,
        poll_errors, next_run_at, lease_until, deadline, output_token, outputs, seed,
        error_code, error_message, charged_micros, created_at, updated_at, finished_at,
        provider_state, usage, pending_outputs)
    SELECT id, account_id, request_id, fingerprint, request, product, model,
        price_version, estimate_micros, estimate, hold_id, usage_event_id, provider,
        upstream_model, provider_task_id, status, submit_attempts, submit_started_at, polls,
        poll_errors, next_run_at, lease_until, deadline, output_token, outputs, seed,
        error_code, error_message, charged_micros, created_at, updated_at, finished_at,
        provider_state, usage, pending_outputs
      FROM jobs ORDER BY rowid;
DROP TABLE jobs;
ALTER TABLE jobs_v13 RENAME TO jobs;
CREATE INDEX jobs_due ON jobs (next_run_at) WHERE status = 'pending';
CREATE INDEX jobs_deadline ON jobs (deadline) WHERE status IN ('pending', 'running');
CREATE INDEX jobs_account_created ON jobs (account_id, created_at);
CREATE INDEX jobs_created ON jobs (created_at);
CREATE INDEX jobs_provider_task ON jobs (provider, provider_task_id)
    WHERE provider_task_id IS NOT NULL;

CREATE TABLE usage_events_v13 (
    id           TEXT PRIMARY KEY,
    job_id       TEXT NOT NULL UNIQUE REFERENCES jobs (id),
    account_id   TEXT NOT NULL REFERENCES accounts (id),
    transfer_id  TEXT REFERENCES transfers (id)
                 CHECK (transfer_id IS NULL OR transfer_id = 'capture:' || job_id),
    amount       INTEGER NOT NULL CHECK (amount >= 0),
    model        TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    CHECK ((transfer_id IS NULL) = (amount = 0))
) STRICT;
INSERT INTO usage_events_v13 (id, job_id, account_id, transfer_id, amount, model, created_at)
    SELECT id, job_id, account_id, transfer_id, amount, model, created_at
      FROM usage_events ORDER BY rowid;
DROP TABLE usage_events;
ALTER TABLE usage_events_v13 RENAME TO usage_events;

-- @migration 14: CHECKs that build no temporary table (issue 16). SQLite
-- compiles `x IN (a, b, c, ...)` with more than two values into a
-- temporary B-tree, built afresh each time the constraint is checked: on
-- every transfer written and every job inserted or moved to another
-- status, about a dozen per job, ~10% of a job's writer time. The same
-- constraints written as `x = a OR x = b OR ...` compile to comparisons.
-- Nothing stored changes, so the constraint text is edited in place, by
-- SQLite's documented procedure for changes that do not touch the stored
-- rows (`writable_schema`; RESET reloads the schema), and the schema
-- cookie is bumped by creating and dropping a table, which also refuses
-- the migration if any old text is left.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema
   SET sql = replace(replace(sql,
       'CHECK (kind IN (''grant'', ''hold'', ''capture'', ''release'', ''expire'', ''refund'',
                                    ''reversal''))',
       'CHECK (kind = ''grant'' OR kind = ''hold'' OR kind = ''capture''
                           OR kind = ''release'' OR kind = ''expire'' OR kind = ''refund''
                           OR kind = ''reversal'')'),
       'CHECK ((kind IN (''capture'', ''release'', ''expire'')) = (pending_id IS NOT NULL))',
       'CHECK ((kind = ''capture'' OR kind = ''release'' OR kind = ''expire'')
           = (pending_id IS NOT NULL))')
 WHERE type = 'table' AND name = 'transfers';
UPDATE sqlite_schema
   SET sql = replace(replace(sql,
       'CHECK (status IN (''pending'', ''running'', ''succeeded'', ''failed'', ''canceled'', ''expired''))',
       'CHECK (status = ''pending'' OR status = ''running'' OR status = ''succeeded''
                              OR status = ''failed'' OR status = ''canceled'' OR status = ''expired'')'),
       'CHECK ((status IN (''succeeded'', ''failed'', ''canceled'', ''expired'')) = (finished_at IS NOT NULL))',
       'CHECK ((status = ''succeeded'' OR status = ''failed'' OR status = ''canceled''
            OR status = ''expired'') = (finished_at IS NOT NULL))')
 WHERE type = 'table' AND name = 'jobs';
PRAGMA writable_schema = RESET;
CREATE TABLE migration_14 (edited INTEGER NOT NULL CHECK (edited = 1));
INSERT INTO migration_14
    SELECT count(*) = 2 FROM sqlite_schema
     WHERE type = 'table' AND name IN ('jobs', 'transfers')
       AND sql NOT LIKE '%kind IN (''grant''%'
       AND sql NOT LIKE '%kind IN (''capture''%'
       AND sql NOT LIKE '%status IN (''pending''%'
       AND sql NOT LIKE '%status IN (''succeeded''%'
       AND sql LIKE '% OR %';
DROP TABLE migration_14;

-- @migration 15: the owner's console (module `identity::sessions`). A
-- session opened by signing in with an operator key: its secret is kept
-- only as SHA-256; it ends at sign-out (`ended_at`), after a while idle
-- (`last_seen_at`), at `expires_at`, or when its key is revoked.
CREATE TABLE console_sessions (
    id            TEXT PRIMARY KEY,
    secret_hash   BLOB NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
    key_id        TEXT NOT NULL REFERENCES api_keys (id),
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    ended_at      INTEGER,
    CHECK (expires_at > created_at)
) STRICT;
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
-- The console pages accounts in creation order, and lists agents waiting
-- to be bound and the latest bound.
CREATE INDEX accounts_created ON accounts (created_at, id);
CREATE INDEX agents_unbound ON agents (registration_expires_at) WHERE account_id IS NULL;
CREATE INDEX agents_bound ON agents (bound_at) WHERE bound_at IS NOT NULL;
