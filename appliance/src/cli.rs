//! The command line of CONTRACTS.md §7: parse, open the gate, call one facade
//! function, render. No business logic lives here.
//!
//! Exit codes: 0 success; 1 the core refused (the error is printed, as JSON
//! with `--json`) or `ledger verify` found violations or damage; 2 the
//! command itself could not run (bad flags, a database that cannot be
//! opened, an input file that cannot be read, a storage failure). Commands
//! that only read open an existing database and never create one.

use creditgate::error::ErrorKind;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use creditgate::ids::random_id;
use creditgate::ledger::HISTORY_PAGE_MAX;
use creditgate::money::parse_credits;
use creditgate::plans::PlanEdit;
use creditgate::providers::fixture::Scenarios;
use creditgate::{
    Gate, JobFilter, JobStatus, NewAccount, OpenProblem, StoreOptions, Synchronous, SystemClock,
};
use serde_json::{json, Value};

use crate::render::{self, JobReader};

#[derive(Debug, Parser)]
#[command(
    name = "creditgate",
    version,
    about = "A self-hostable credits gateway for AI agents"
)]
struct Cli {
    /// The database file (created if missing by commands that write;
    /// commands that only read need it to exist).
    #[arg(
        long,
        global = true,
        env = "CREDITGATE_DB",
        default_value = "./creditgate.db"
    )]
    db: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// SQLite durability: `full` (an acknowledged write survives power loss)
    /// or `normal` (faster; may lose the last writes on power loss).
    #[arg(
        long,
        global = true,
        env = "CREDITGATE_SYNCHRONOUS",
        value_enum,
        default_value = "full"
    )]
    synchronous: SyncArg,
    /// The providers file: which upstream provider instances exist and the
    /// environment variables holding their credentials (see
    /// fixtures/providers/example.json). Without it, every model runs on
    /// the offline fixture provider.
    #[arg(long, global = true, env = "CREDITGATE_PROVIDERS")]
    providers: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SyncArg {
    Full,
    Normal,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server and the job workers.
    Serve(Box<ServeArgs>),
    /// Check the configured upstream providers.
    #[command(subcommand)]
    Providers(ProvidersCommand),
    #[command(flatten)]
    Gate(GateCommand),
}

/// The commands that open the database and run once.
#[derive(Debug, Subcommand)]
enum GateCommand {
    /// Create, list and revoke API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Bind agents to accounts.
    #[command(subcommand)]
    Agents(AgentsCommand),
    /// Create and list accounts; put one on a plan.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// List and edit plan tiers (daily caps per product).
    #[command(subcommand)]
    Plans(PlansCommand),
    /// Grant credits and read balances.
    #[command(subcommand)]
    Credits(CreditsCommand),
    /// Create, list and revoke redemption codes (agents redeem them with
    /// POST /v1/credits/redeem).
    #[command(subcommand)]
    Codes(CodesCommand),
    /// Top-ups paid through the rails (Stripe, x402).
    #[command(subcommand)]
    Topups(TopupsCommand),
    /// Outgoing webhooks: endpoints and their deliveries.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// Check the ledger.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Import, list, activate and retire price catalogs; estimate a request.
    #[command(subcommand)]
    Prices(PricesCommand),
    /// Inspect generation jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Copy the database, consistent as of one instant, to DEST.
    Backup {
        /// Where to write the copy (must not exist).
        dest: PathBuf,
    },
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Where to listen (port 0 picks a free one).
    #[arg(long, env = "CREDITGATE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Job worker threads.
    #[arg(long, env = "CREDITGATE_WORKERS", default_value_t = 2)]
    workers: usize,
    /// HTTP handler threads.
    #[arg(long, env = "CREDITGATE_HTTP_THREADS", default_value_t = 16)]
    http_threads: usize,
    /// A price catalog to import and activate on start (default: the
    /// shipped one, imported into a database that has none).
    #[arg(long, env = "CREDITGATE_CATALOG")]
    catalog: Option<PathBuf>,
    /// A fixture-provider scenario file (default: the shipped one).
    #[arg(long, env = "CREDITGATE_SCENARIOS")]
    scenarios: Option<PathBuf>,
    /// The public base URL for output links and docs (default:
    /// `http://<listen address>`).
    #[arg(long, env = "CREDITGATE_PUBLIC_URL")]
    public_url: Option<String>,
    /// A socket read that waits longer than this fails (slow clients).
    #[arg(long, env = "CREDITGATE_READ_TIMEOUT_MS", default_value_t = 10_000)]
    read_timeout_ms: u64,
    /// Open HTTP connections at most; each holds a thread while open, and
    /// one beyond the bound is answered 503 `server_busy`.
    #[arg(long, env = "CREDITGATE_MAX_CONNECTIONS", default_value_t = 512,
          value_parser = clap::value_parser!(u64).range(1..=16_384))]
    max_connections: u64,
    /// How long a job may run before it expires.
    #[arg(long, env = "CREDITGATE_JOB_DEADLINE_SECS", default_value_t = 1_800)]
    job_deadline_secs: u64,
    /// The first poll's delay after a submission; later polls back off
    /// from it, doubling up to 15 times it.
    #[arg(long, env = "CREDITGATE_POLL_INTERVAL_MS", default_value_t = 1_000)]
    poll_interval_ms: u64,
    /// Requests per second each credential may make, sustained (0: no
    /// limit); beyond it the answer is 429 `rate_limited`.
    #[arg(long, env = "CREDITGATE_RATE_LIMIT_PER_SEC", default_value_t = 100)]
    rate_limit_per_sec: u32,
    /// Requests a credential may make at once after being idle.
    #[arg(long, env = "CREDITGATE_RATE_LIMIT_BURST", default_value_t = 200)]
    rate_limit_burst: u32,
    /// Turns on "Sign in with Moltbook" (POST /auth/moltbook/exchange):
    /// Moltbook's verify endpoint,
    /// `https://www.moltbook.com/api/v1/agents/verify-identity` (or a
    /// stand-in). Off when unset; the route then answers 404.
    #[arg(long, env = "CREDITGATE_MOLTBOOK_VERIFY_URL")]
    moltbook_verify_url: Option<String>,
    /// Sent to the verifier as X-Moltbook-App-Key (a secret: never
    /// printed). Needs --moltbook-verify-url.
    #[arg(long, env = "CREDITGATE_MOLTBOOK_APP_KEY", hide_env_values = true)]
    moltbook_app_key: Option<String>,
    /// Sent to the verifier as `audience` (your domain): identity tokens
    /// minted for another service are refused. Needs --moltbook-verify-url.
    #[arg(long, env = "CREDITGATE_MOLTBOOK_AUDIENCE")]
    moltbook_audience: Option<String>,
    /// Binds every Moltbook agent seen for the first time to this account
    /// (any product scope), so any verified Moltbook agent can spend from
    /// it. Without it, a new agent's exchange answers a registration code
    /// for its owner to bind. Needs --moltbook-verify-url.
    #[arg(long, env = "CREDITGATE_MOLTBOOK_DEFAULT_ACCOUNT")]
    moltbook_default_account: Option<String>,
    /// Stripe's secret API key (`sk_...`): turns on card top-ups (POST
    /// /v1/credits/topup). From the environment only, never a flag, so it
    /// stays out of shell history and `ps`.
    #[arg(skip = std::env::var("CREDITGATE_STRIPE_SECRET_KEY").ok().filter(|k| !k.is_empty()))]
    stripe_secret_key: Option<String>,
    /// The signing secret of the Stripe webhook endpoint
    /// (`/v1/payments/stripe/webhook`), from the environment only.
    #[arg(skip = std::env::var("CREDITGATE_STRIPE_WEBHOOK_SECRET").ok().filter(|k| !k.is_empty()))]
    stripe_webhook_secret: Option<String>,
    /// Stripe's API base URL.
    #[arg(
        long,
        env = "CREDITGATE_STRIPE_API_BASE",
        default_value = "https://api.stripe.com"
    )]
    stripe_api_base: String,
    /// The currency top-ups are charged in (ISO 4217).
    #[arg(long, env = "CREDITGATE_STRIPE_CURRENCY", default_value = "usd")]
    stripe_currency: String,
    /// What one credit costs, in the currency's minor unit (1: a cent).
    #[arg(long, env = "CREDITGATE_STRIPE_MINOR_PER_CREDIT", default_value = "1")]
    stripe_minor_per_credit: String,
    /// Where Stripe sends a payer after paying (needed with Stripe).
    #[arg(long, env = "CREDITGATE_STRIPE_SUCCESS_URL")]
    stripe_success_url: Option<String>,
    /// Where Stripe sends a payer who gives up (default: the success URL).
    #[arg(long, env = "CREDITGATE_STRIPE_CANCEL_URL")]
    stripe_cancel_url: Option<String>,
    /// A credit pack sold at its own price, `name=credits:price_minor`
    /// (`starter=100:900`: 100 credits for 9.00); repeat, or comma-separate
    /// in the variable.
    #[arg(
        long = "stripe-pack",
        env = "CREDITGATE_STRIPE_PACKS",
        value_delimiter = ','
    )]
    stripe_packs: Vec<String>,
    /// An x402 facilitator's URL (`/verify` and `/settle` under it): turns
    /// on x402 top-ups, where an agent pays for credits with a
    /// `PAYMENT-SIGNATURE` header. Needs --x402-pay-to.
    #[arg(long, env = "CREDITGATE_X402_FACILITATOR_URL")]
    x402_facilitator_url: Option<String>,
    /// A bearer token for the facilitator, from the environment only.
    #[arg(skip = std::env::var("CREDITGATE_X402_FACILITATOR_TOKEN").ok().filter(|k| !k.is_empty()))]
    x402_facilitator_token: Option<String>,
    /// The address that receives x402 payments.
    #[arg(long, env = "CREDITGATE_X402_PAY_TO")]
    x402_pay_to: Option<String>,
    /// The network payments are made on (CAIP-2; eip155:8453 is Base,
    /// eip155:84532 Base Sepolia).
    #[arg(long, env = "CREDITGATE_X402_NETWORK", default_value = "eip155:8453")]
    x402_network: String,
    /// The asset paid (its contract address; default: USDC on Base).
    #[arg(
        long,
        env = "CREDITGATE_X402_ASSET",
        default_value = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
    )]
    x402_asset: String,
    /// The asset's short name, kept on top-ups as their currency.
    #[arg(long, env = "CREDITGATE_X402_ASSET_NAME", default_value = "usdc")]
    x402_asset_name: String,
    /// The asset's EIP-712 domain name and version (the scheme's `extra`).
    #[arg(
        long,
        env = "CREDITGATE_X402_ASSET_DOMAIN",
        default_value = "USD Coin/2"
    )]
    x402_asset_domain: String,
    /// Atomic units of the asset one credit costs (10000: a cent of USDC).
    #[arg(long, env = "CREDITGATE_X402_ATOMIC_PER_CREDIT", default_value_t = 10_000,
          value_parser = clap::value_parser!(i64).range(1..))]
    x402_atomic_per_credit: i64,
    /// The fewest credits one x402 payment buys (a smaller shortfall is
    /// offered as this many).
    #[arg(long, env = "CREDITGATE_X402_MIN_CREDITS", default_value = "1")]
    x402_min_credits: String,
    /// The most credits one x402 payment buys.
    #[arg(long, env = "CREDITGATE_X402_MAX_CREDITS", default_value = "1000")]
    x402_max_credits: String,
    /// How long to wait for the facilitator, in seconds (a settlement
    /// unanswered in that time is settled again later, never lost).
    #[arg(long, env = "CREDITGATE_X402_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    x402_timeout_secs: u64,
    /// The first retry's delay of a failed webhook delivery, in
    /// milliseconds (doubling after, at most an hour).
    #[arg(long, env = "CREDITGATE_WEBHOOK_RETRY_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    webhook_retry_ms: u64,
    /// Where jobs' outputs are kept (default: `media/` beside the
    /// database).
    #[arg(long, env = "CREDITGATE_MEDIA_DIR")]
    media_dir: Option<PathBuf>,
    /// Days a kept output is served after its job succeeded; then its link
    /// answers 410 `output_expired` and a worker removes the file.
    #[arg(long, env = "CREDITGATE_MEDIA_RETENTION_DAYS", default_value_t = 7,
          value_parser = clap::value_parser!(u64).range(1..=3_650))]
    media_retention_days: u64,
    /// All kept outputs together, at most, in bytes; a job whose outputs
    /// do not fit waits (until its deadline) for expired ones to go.
    #[arg(long, env = "CREDITGATE_MEDIA_MAX_BYTES",
          default_value_t = creditgate::media::files::STORE_BYTES_MAX_DEFAULT,
          value_parser = clap::value_parser!(u64)
              .range(creditgate::media::files::FILE_BYTES_MAX_DEFAULT..))]
    media_max_bytes: u64,
    /// The model a request that names only a product runs on
    /// (AgentName's `type`), as PRODUCT=MODEL; repeat per product. A
    /// product without one runs on the active catalog's first model of it.
    #[arg(long = "default-model", env = "CREDITGATE_DEFAULT_MODELS",
          value_delimiter = ',', value_parser = parse_default_model)]
    default_models: Vec<(String, String)>,
    /// Lets agents create their own account and key
    /// (POST /api/v1/agent_register.php). Off by default.
    #[arg(long, env = "CREDITGATE_SELF_REGISTRATION")]
    self_registration: bool,
    /// Credits granted to each self-registered account, as a ledger
    /// transfer (default 0: it starts empty). Needs --self-registration.
    #[arg(long, env = "CREDITGATE_WELCOME_CREDITS", default_value = "0",
          requires = "self_registration", value_parser = parse_welcome_credits)]
    welcome_credits: i64,
    /// Self-registrations per client address per hour (0: no limit).
    #[arg(long, env = "CREDITGATE_REGISTRATIONS_PER_HOUR", default_value_t = 5)]
    registrations_per_hour: u32,
}

/// `PRODUCT=MODEL` of `--default-model`.
fn parse_default_model(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((product, model)) if !product.trim().is_empty() && !model.trim().is_empty() => {
            Ok((product.trim().to_owned(), model.trim().to_owned()))
        }
        _ => Err(format!(
            "{text:?} is not PRODUCT=MODEL (e.g. image=z-image)"
        )),
    }
}

/// The micro-credits of `--welcome-credits` (0 or more, exact).
fn parse_welcome_credits(text: &str) -> Result<i64, String> {
    let credits = creditgate::money::parse_credits(text).map_err(|err| err.to_string())?;
    creditgate::money::to_micros(credits)
        .map_err(|err| err.to_string())
        .and_then(|micros| {
            if micros < 0 {
                Err("must not be negative".to_owned())
            } else {
                Ok(micros)
            }
        })
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create an API key; its secret is printed once.
    Create {
        /// The account the key spends from.
        #[arg(long)]
        account: String,
        /// A scope: a product (image, video, music, chat, ...), admin (the
        /// account's owner), or operator (the /v1/admin/* API of the whole
        /// box; only this command grants it).
        /// Repeat for several. Default: every product of the active
        /// catalog (never admin).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// The key expires after this many days.
        #[arg(long)]
        expires_in_days: Option<u32>,
        /// A name to recognise the key by.
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// List an account's keys (never their secrets).
    List {
        /// The account id.
        #[arg(long)]
        account: String,
    },
    /// Revoke a key, effective on its next use.
    Revoke {
        /// The key id (key_...).
        key_id: String,
    },
    /// Show a key's spend caps and what it spent today and this month;
    /// with --daily or --monthly, set them (a cap not named is kept).
    Caps {
        /// The key id (key_...).
        key_id: String,
        /// Credits the key's jobs may hold per UTC day.
        #[arg(long, conflicts_with = "clear", allow_hyphen_values = true)]
        daily: Option<String>,
        /// Credits the key's jobs may hold per UTC month.
        #[arg(long, conflicts_with = "clear", allow_hyphen_values = true)]
        monthly: Option<String>,
        /// Remove both caps (nothing is counted from then on).
        #[arg(long)]
        clear: bool,
    },
}

#[derive(Debug, Subcommand)]
enum AgentsCommand {
    /// Bind an agent's registration code to an account.
    Bind {
        /// The registration code the agent received.
        code: String,
        /// The account the agent will spend from.
        #[arg(long)]
        account: String,
        /// A scope the agent's keys may carry; repeat for several. Default:
        /// any scope but admin.
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AccountsCommand {
    /// Create an account with an empty wallet.
    Create {
        /// A human name for the account.
        #[arg(long)]
        name: String,
        /// The plan name (default: the default plan, if one is named;
        /// else `none`, no caps). A name that is not a plan is kept, with
        /// a warning, and means no caps.
        #[arg(long)]
        plan: Option<String>,
        /// Let the wallet go below zero (postpaid).
        #[arg(long)]
        allow_negative: bool,
    },
    /// List accounts, oldest first.
    List,
    /// Put an account on a plan (effective on its next submit).
    SetPlan {
        /// The account id.
        id: String,
        /// The plan name (`none`: no caps).
        plan: String,
    },
    /// Let an account's wallet go below zero (postpaid: holds may
    /// overdraw, and a refund or dispute of a top-up may take it below
    /// zero), or not (--deny; refused while it is below zero).
    AllowNegative {
        /// The account id.
        id: String,
        /// Make it prepaid again.
        #[arg(long)]
        deny: bool,
    },
    /// Show or set an account's auto top-up: below --threshold credits, or
    /// when a job lacks credits, buy --amount credits with the card its
    /// first card top-up saved, at most once per --window-minutes.
    AutoTopup {
        /// The account id.
        id: String,
        /// Charge when the available balance falls below this many credits.
        #[arg(long, requires = "amount", allow_hyphen_values = true)]
        threshold: Option<String>,
        /// Credits bought per charge.
        #[arg(long, requires = "threshold", allow_hyphen_values = true)]
        amount: Option<String>,
        /// At most one charge per this many minutes.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=44_640))]
        window_minutes: u32,
        /// Turn it off.
        #[arg(long, conflicts_with_all = ["threshold", "amount"])]
        off: bool,
        /// Forget the saved card too.
        #[arg(long, requires = "off")]
        forget_card: bool,
    },
}

#[derive(Debug, Subcommand)]
enum PlansCommand {
    /// List plans and their daily caps.
    List,
    /// Create a plan or change its caps (caps not named are kept).
    Set {
        /// The plan name.
        name: String,
        /// A daily cap, `PRODUCT=N` (jobs per UTC day) or
        /// `PRODUCT=unlimited` (removes the cap). Repeatable.
        #[arg(long = "cap", value_parser = parse_cap)]
        caps: Vec<(String, Option<u64>)>,
    },
    /// Name the plan accounts created without one are put on; `--none`
    /// names none (such accounts then have no caps).
    Default {
        /// The plan name.
        #[arg(required_unless_present = "none")]
        name: Option<String>,
        /// Name no default plan.
        #[arg(long, conflicts_with = "name")]
        none: bool,
    },
}

/// `PRODUCT=N` or `PRODUCT=unlimited`.
fn parse_cap(text: &str) -> Result<(String, Option<u64>), String> {
    let (product, cap) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not PRODUCT=N or PRODUCT=unlimited"))?;
    let cap = match cap {
        "unlimited" => None,
        n => Some(
            n.parse::<u64>()
                .map_err(|_| format!("`{n}` is not a whole number or `unlimited`"))?,
        ),
    };
    Ok((product.to_owned(), cap))
}

#[derive(Debug, Subcommand)]
enum CreditsCommand {
    /// Add credits to an account's wallet.
    Grant(GrantArgs),
    /// Show an account's available, pending and posted credits.
    Balance {
        /// The account id.
        #[arg(long)]
        account: String,
    },
    /// Show an account's transfers, newest first.
    History {
        /// The account id.
        #[arg(long)]
        account: String,
        /// Transfers per page.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// The `next_cursor` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
}

#[derive(Debug, Args)]
struct GrantArgs {
    /// The account id.
    #[arg(long)]
    account: String,
    /// Credits to add: a positive decimal with at most 6 places.
    #[arg(long, allow_hyphen_values = true)]
    amount: String,
    /// A note kept on the transfer.
    #[arg(long, default_value = "")]
    memo: String,
    /// A transfer id, to make the grant safe to retry (random if omitted).
    #[arg(long)]
    id: Option<String>,
    /// Make them promotional credits: spent before paid ones, and what is
    /// left after this many days is taken back.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3_650))]
    expires_in_days: Option<u32>,
}

#[derive(Debug, Subcommand)]
enum WebhooksCommand {
    /// Add an endpoint for --event (repeat: job.finished, balance.low,
    /// topup.credited, code.redeemed); its signing secret is printed.
    Add {
        /// Where deliveries are POSTed.
        url: String,
        /// An event it receives; repeat for several.
        #[arg(long = "event", required = true)]
        events: Vec<String>,
        /// For balance.low: the available credits below which an account's
        /// fall is reported (once per crossing).
        #[arg(long)]
        low_balance: Option<String>,
    },
    /// List endpoints.
    List,
    /// Print an endpoint's signing secret again.
    Secret {
        /// The endpoint id (whe_...).
        endpoint_id: String,
    },
    /// Remove an endpoint; its pending deliveries are dropped.
    Remove {
        /// The endpoint id (whe_...).
        endpoint_id: String,
    },
    /// List deliveries, newest first.
    Deliveries {
        /// Only those pending, delivered or failed.
        #[arg(long)]
        status: Option<String>,
    },
    /// Send a delivery again from its first attempt.
    Replay {
        /// The delivery id (msg_...).
        delivery_id: String,
    },
}

#[derive(Debug, Subcommand)]
enum TopupsCommand {
    /// List top-ups, newest first: what was paid and credited, what failed,
    /// what is still settling.
    List {
        /// Only this account's.
        #[arg(long)]
        account: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50,
              value_parser = clap::value_parser!(u32).range(1..=creditgate::TOPUPS_LIST_MAX as i64))]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
enum CodesCommand {
    /// Create a code worth --amount credits per redemption; its secret is
    /// printed once.
    Create {
        /// Credits each redemption grants: a positive decimal with at most
        /// 6 places.
        #[arg(long, allow_hyphen_values = true)]
        amount: String,
        /// Redemptions in all, at most.
        #[arg(long, default_value_t = 1,
              value_parser = clap::value_parser!(u32).range(1..=i64::from(creditgate::codes::CODE_USES_MAX)))]
        uses: u32,
        /// The code stops being redeemable after this many days.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3_650))]
        expires_in_days: Option<u32>,
        /// Let one account redeem it more than once (by default each
        /// account may redeem it once).
        #[arg(long)]
        repeatable: bool,
        /// A note, shown in listings and on each grant's account.
        #[arg(long, default_value = "")]
        memo: String,
    },
    /// List codes, newest first (never their secrets).
    List,
    /// Revoke a code: it redeems no more; past grants stand.
    Revoke {
        /// The code id (code_...).
        code_id: String,
    },
}

#[derive(Debug, Subcommand)]
enum ProvidersCommand {
    /// Call each configured provider's cheapest read (models list, account,
    /// system stats) and print whether it is reachable, whether its
    /// credential works, and its upstream credits where the API tells.
    Check,
}

#[derive(Debug, Subcommand)]
enum PricesCommand {
    /// Validate a catalog file and store it as a new immutable price version.
    Import {
        /// The catalog (JSON; see fixtures/catalogs/README.md).
        file: PathBuf,
    },
    /// List price versions.
    List,
    /// Make VERSION the active price version.
    Activate {
        /// The price version.
        version: String,
    },
    /// Stop honouring VERSION for new requests (it must not be active).
    Retire {
        /// The price version.
        version: String,
    },
    /// Price a request: the same JSON body as `POST /v1/credits/estimate`,
    /// given inline, as `@FILE`, or `-` for standard input.
    Estimate {
        /// The request body.
        body: String,
    },
}

#[derive(Debug, Subcommand)]
enum JobsCommand {
    /// List jobs, newest first.
    List {
        /// Only this account's jobs.
        #[arg(long)]
        account: Option<String>,
        /// Only jobs in this status (pending, running, succeeded, failed,
        /// canceled, expired).
        #[arg(long)]
        status: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show one job.
    Show {
        /// The job id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum LedgerCommand {
    /// Check the database file (SQLite's integrity and foreign-key checks),
    /// then every ledger invariant; exit 1 naming each problem.
    Verify,
}

/// What a command produced: a JSON object, a text for people, its exit
/// code, and whether the text is an error message (for stderr).
struct Output {
    json: Value,
    text: String,
    exit: u8,
    is_error: bool,
}

impl Output {
    fn ok(json: Value, text: impl Into<String>) -> Output {
        Output {
            json,
            text: text.into(),
            exit: 0,
            is_error: false,
        }
    }
}

/// Parses `args`, runs the command and prints its output.
pub fn run(args: impl IntoIterator<Item = OsString>) -> anyhow::Result<ExitCode> {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return Ok(ExitCode::from(if err.use_stderr() { 2 } else { 0 }));
        }
    };
    let mut options = StoreOptions::new(&cli.db);
    options.synchronous = match cli.synchronous {
        SyncArg::Full => Synchronous::Full,
        SyncArg::Normal => Synchronous::Normal,
    };
    let command = match cli.command {
        Command::Gate(command) => command,
        Command::Providers(ProvidersCommand::Check) => {
            let registry = crate::providers::load(cli.providers.as_deref(), &Scenarios::shipped())?;
            let checked = crate::providers::check(&registry);
            let all_ok = checked.iter().all(crate::providers::Checked::is_ok);
            let (json, text) = render::provider_checks(&checked);
            let output = Output {
                json,
                text,
                // 1: a provider is unreachable or refuses its credential.
                exit: if all_ok { 0 } else { 1 },
                is_error: false,
            };
            return Ok(print(&output, cli.json));
        }
        Command::Serve(args) => {
            crate::serve::run(crate::serve::ServeOptions {
                store: options,
                listen: args.listen,
                workers: args.workers,
                http_threads: args.http_threads,
                catalog: args.catalog,
                scenarios: args.scenarios,
                providers: cli.providers,
                public_url: args.public_url,
                read_timeout: std::time::Duration::from_millis(args.read_timeout_ms.max(1)),
                max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
                job_deadline: std::time::Duration::from_secs(args.job_deadline_secs.max(1)),
                poll_interval: std::time::Duration::from_millis(args.poll_interval_ms.max(1)),
                rate_limit: creditgate::ratelimit::RateLimit {
                    per_sec: args.rate_limit_per_sec,
                    burst: args.rate_limit_burst,
                },
                webhook_signing_key: webhook_signing_key(),
                webhook_retry: std::time::Duration::from_millis(args.webhook_retry_ms),
                stripe: crate::serve::StripeOptions {
                    secret_key: args.stripe_secret_key,
                    webhook_secret: args.stripe_webhook_secret,
                    api_base: args.stripe_api_base,
                    currency: args.stripe_currency,
                    minor_per_credit: args.stripe_minor_per_credit,
                    success_url: args.stripe_success_url,
                    cancel_url: args.stripe_cancel_url,
                    packs: args.stripe_packs,
                },
                x402: crate::serve::X402Options {
                    facilitator_url: args.x402_facilitator_url,
                    facilitator_token: args.x402_facilitator_token,
                    pay_to: args.x402_pay_to,
                    network: args.x402_network,
                    asset: args.x402_asset,
                    asset_name: args.x402_asset_name,
                    asset_domain: args.x402_asset_domain,
                    atomic_per_credit: args.x402_atomic_per_credit,
                    min_credits: args.x402_min_credits,
                    max_credits: args.x402_max_credits,
                    timeout: std::time::Duration::from_secs(args.x402_timeout_secs),
                },
                moltbook: crate::serve::MoltbookOptions {
                    verify_url: args.moltbook_verify_url,
                    app_key: args.moltbook_app_key,
                    audience: args.moltbook_audience,
                    default_account: args.moltbook_default_account,
                },
                media: crate::serve::MediaOptions {
                    dir: args.media_dir,
                    retention_days: args.media_retention_days,
                    store_bytes_max: args.media_max_bytes,
                },
                default_models: args.default_models.into_iter().collect(),
                self_registration: args
                    .self_registration
                    .then_some(creditgate::SelfRegistration {
                        welcome_micros: args.welcome_credits,
                        per_address_per_hour: args.registrations_per_hour,
                    }),
            })?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    if command_only_reads(&command) {
        options = options.existing();
    }
    let verifying = matches!(command, GateCommand::Ledger(LedgerCommand::Verify));
    // Commands that route models to providers check them against the
    // configured ones.
    let routes = matches!(
        command,
        GateCommand::Prices(PricesCommand::Import { .. } | PricesCommand::Activate { .. })
    );
    let registry = if routes {
        Some(crate::providers::load(
            cli.providers.as_deref(),
            &Scenarios::shipped(),
        )?)
    } else {
        None
    };
    let opened = Gate::open(&options, Arc::new(SystemClock))
        .map(|gate| match registry {
            Some(registry) => gate.with_providers(registry),
            None => gate,
        })
        .and_then(|gate| match webhook_signing_key() {
            // The webhook commands show endpoints' secrets, derived from it.
            Some(key) => {
                gate.with_webhook_signing_key(creditgate::payments::stripe::Secret::new(key))
            }
            None => Ok(gate),
        });
    let output = match opened {
        Ok(gate) => match execute(&gate, command) {
            Ok(output) => output,
            Err(failure) => failure.output(),
        },
        Err(err) => {
            // A file too damaged to open is what `ledger verify` looks
            // for: it found damage (1), rather than could not run (2).
            let damaged = matches!(
                &err,
                creditgate::Error::Database {
                    problem: OpenProblem::Damaged { .. },
                    ..
                }
            );
            let mut output = Failure::Open(cli.db, err).output();
            if verifying && damaged {
                output.exit = 1;
            }
            output
        }
    };
    Ok(print(&output, cli.json))
}

/// Prints a command's output (JSON or text) and gives its exit code.
fn print(output: &Output, json: bool) -> ExitCode {
    if json {
        println!("{}", output.json);
    } else if output.is_error {
        eprintln!("{}", output.text);
    } else {
        println!("{}", output.text);
    }
    ExitCode::from(output.exit)
}

/// Whether `command` only reads: it then opens an existing database and
/// never creates one (a mistyped `--db` is an error, not an empty ledger).
fn command_only_reads(command: &GateCommand) -> bool {
    match command {
        GateCommand::Ledger(LedgerCommand::Verify)
        | GateCommand::Accounts(AccountsCommand::List)
        | GateCommand::Plans(PlansCommand::List)
        | GateCommand::Credits(CreditsCommand::Balance { .. } | CreditsCommand::History { .. })
        | GateCommand::Jobs(_)
        | GateCommand::Keys(
            KeysCommand::List { .. }
            | KeysCommand::Caps {
                daily: None,
                monthly: None,
                clear: false,
                ..
            },
        )
        | GateCommand::Codes(CodesCommand::List)
        | GateCommand::Topups(TopupsCommand::List { .. })
        | GateCommand::Accounts(AccountsCommand::AutoTopup {
            threshold: None,
            off: false,
            ..
        })
        | GateCommand::Webhooks(
            WebhooksCommand::List
            | WebhooksCommand::Secret { .. }
            | WebhooksCommand::Deliveries { .. },
        )
        | GateCommand::Prices(PricesCommand::List | PricesCommand::Estimate { .. })
        | GateCommand::Backup { .. } => true,
        GateCommand::Keys(
            KeysCommand::Create { .. } | KeysCommand::Revoke { .. } | KeysCommand::Caps { .. },
        )
        | GateCommand::Agents(_)
        | GateCommand::Accounts(
            AccountsCommand::Create { .. }
            | AccountsCommand::SetPlan { .. }
            | AccountsCommand::AllowNegative { .. }
            | AccountsCommand::AutoTopup { .. },
        )
        | GateCommand::Plans(PlansCommand::Set { .. } | PlansCommand::Default { .. })
        | GateCommand::Credits(CreditsCommand::Grant(_))
        | GateCommand::Codes(CodesCommand::Create { .. } | CodesCommand::Revoke { .. })
        | GateCommand::Webhooks(
            WebhooksCommand::Add { .. }
            | WebhooksCommand::Remove { .. }
            | WebhooksCommand::Replay { .. },
        )
        | GateCommand::Prices(
            PricesCommand::Import { .. }
            | PricesCommand::Activate { .. }
            | PricesCommand::Retire { .. },
        ) => false,
    }
}

/// Why a command did not succeed, and so its exit code: 1 when the core
/// refused, 2 when the command could not run (the database cannot be
/// opened, an input file cannot be read, storage failed).
enum Failure {
    /// The database at this path could not be opened.
    Open(PathBuf, creditgate::Error),
    /// The core refused or failed.
    Core(creditgate::Error),
    /// A file the command reads could not be read.
    Input {
        /// The argument it was given as.
        field: &'static str,
        /// What went wrong, naming the file.
        message: String,
    },
}

impl From<creditgate::Error> for Failure {
    fn from(err: creditgate::Error) -> Self {
        Failure::Core(err)
    }
}

impl Failure {
    fn output(self) -> Output {
        let (json, text, exit) = match self {
            Failure::Open(path, err) => {
                let message = render::open_error(&path, &err);
                let mut json = render::error(&err);
                json["message"] = json!(message);
                (json, message, 2)
            }
            Failure::Core(err) => {
                // The command could not run (storage, the database file, an
                // internal fault) is 2; everything the gate refuses,
                // including "no price catalog yet", is 1.
                let exit = match err.kind() {
                    ErrorKind::StorageFull | ErrorKind::Internal => 2,
                    ErrorKind::Unavailable if !matches!(err, creditgate::Error::NoPriceCatalog) => {
                        2
                    }
                    _ => 1,
                };
                (render::error(&err), err.to_string(), exit)
            }
            Failure::Input { field, message } => (
                json!({ "error": "unreadable_input", "field": field, "message": message }),
                message,
                2,
            ),
        };
        Output {
            json,
            text: format!("error: {text}"),
            exit,
            is_error: true,
        }
    }
}

/// `output` with a warning (on stderr, and as `warning` in the JSON) when
/// `plan` names no plan: kept as given, it means no caps.
fn with_plan_warning(gate: &Gate, plan: &str, mut output: Output) -> Result<Output, Failure> {
    if plan == creditgate::plans::NO_PLAN {
        return Ok(output);
    }
    match gate.plan(plan) {
        Ok(_) => Ok(output),
        Err(creditgate::Error::NotFound { .. }) => {
            let warning = format!(
                "plan {plan} is not a known plan, so the account has no daily caps \
                 (see `creditgate plans list`)"
            );
            eprintln!("warning: {warning}");
            output.json["warning"] = json!(warning);
            Ok(output)
        }
        Err(other) => Err(other.into()),
    }
}

fn execute(gate: &Gate, command: GateCommand) -> Result<Output, Failure> {
    match command {
        GateCommand::Accounts(AccountsCommand::Create {
            name,
            plan,
            allow_negative,
        }) => {
            let account = gate.create_account(&NewAccount {
                name,
                plan,
                allow_negative,
            })?;
            let text = format!(
                "created account {} ({}, plan {})",
                account.id, account.name, account.plan
            );
            Ok(with_plan_warning(
                gate,
                &account.plan,
                Output::ok(render::account(&account), text),
            )?)
        }
        GateCommand::Accounts(AccountsCommand::SetPlan { id, plan }) => {
            let account = gate.set_account_plan(&id, &plan)?;
            let text = format!("account {} is on plan {}", account.id, account.plan);
            Ok(with_plan_warning(
                gate,
                &account.plan,
                Output::ok(render::account(&account), text),
            )?)
        }
        GateCommand::Accounts(AccountsCommand::AllowNegative { id, deny }) => {
            gate.set_allow_negative(&id, !deny)?;
            let text = if deny {
                format!("{id}'s wallet may not go below zero")
            } else {
                format!("{id}'s wallet may go below zero (postpaid)")
            };
            Ok(Output::ok(
                json!({"account_id": id, "allow_negative": !deny}),
                text,
            ))
        }
        GateCommand::Accounts(AccountsCommand::AutoTopup {
            id,
            threshold,
            amount,
            window_minutes,
            off,
            forget_card,
        }) => {
            if off {
                gate.clear_auto_topup(&id)?;
                if forget_card {
                    gate.forget_payment_method(&id)?;
                }
            } else if let (Some(threshold), Some(amount)) = (threshold, amount) {
                let threshold = parse_credits(&threshold).map_err(creditgate::Error::from)?;
                let amount = parse_credits(&amount).map_err(creditgate::Error::from)?;
                gate.set_auto_topup(&id, threshold, amount, i64::from(window_minutes) * 60_000)?;
            }
            let state = gate.auto_topup_state(&id)?;
            Ok(Output::ok(
                render::auto_topup(&state),
                render::auto_topup_text(&id, &state),
            ))
        }
        GateCommand::Plans(PlansCommand::List) => {
            let plans = gate.plans()?;
            let text = render::lines_or(
                plans.iter().map(render::plan_line),
                "no plans (create one with `creditgate plans set NAME --cap image=10`)",
            );
            let json = json!({ "plans": plans.iter().map(render::plan).collect::<Vec<_>>() });
            Ok(Output::ok(json, text))
        }
        GateCommand::Plans(PlansCommand::Set { name, caps }) => {
            let plan = gate.edit_plan(&PlanEdit { name, caps })?;
            Ok(Output::ok(render::plan(&plan), render::plan_line(&plan)))
        }
        GateCommand::Plans(PlansCommand::Default { name, none: _ }) => {
            gate.set_default_plan(name.as_deref())?;
            let text = match &name {
                Some(name) => format!("accounts created without a plan are put on {name}"),
                None => "no default plan: accounts created without a plan have no caps".to_owned(),
            };
            Ok(Output::ok(json!({ "default_plan": name }), text))
        }
        GateCommand::Accounts(AccountsCommand::List) => {
            let accounts = gate.list_accounts()?;
            let text = render::lines_or(
                accounts
                    .iter()
                    .map(|a| format!("{}\t{}\t{}", a.id, a.plan, a.name)),
                "no accounts yet (create one with `creditgate accounts create --name NAME`)",
            );
            let json =
                json!({ "accounts": accounts.iter().map(render::account).collect::<Vec<_>>() });
            Ok(Output::ok(json, text))
        }
        GateCommand::Credits(CreditsCommand::Grant(args)) => grant(gate, args),
        GateCommand::Codes(command) => codes(gate, command),
        GateCommand::Topups(TopupsCommand::List { account, limit }) => {
            let topups = gate.topups(account.as_deref(), limit as usize)?;
            let text = render::lines_or(topups.iter().map(render::topup_line), "no top-ups yet");
            let json = json!({ "topups": topups.iter().map(render::topup).collect::<Vec<_>>() });
            Ok(Output::ok(json, text))
        }
        GateCommand::Webhooks(command) => webhooks(gate, command),
        GateCommand::Credits(CreditsCommand::Balance { account }) => {
            let balance = gate.balance(&account)?;
            let mut json = render::account_balance(&account, &balance);
            let buckets = gate.promotional_credits(&account)?;
            render::add_buckets(&mut json, &balance, &buckets);
            let mut text = format!(
                "available {}  pending {}  posted {}",
                json["available"], json["pending"], json["posted"]
            );
            if !buckets.is_empty() {
                text.push_str(&format!(
                    "  (paid {}, promotional {}; {} expire at {})",
                    json["paid"],
                    json["promotional"],
                    json["expiring"][0]["credits"],
                    json["expiring"][0]["expires_at"].as_str().unwrap_or("")
                ));
            }
            Ok(Output::ok(json, text))
        }
        GateCommand::Credits(CreditsCommand::History {
            account,
            limit,
            cursor,
        }) => {
            let page = gate.history(&account, cursor.as_deref(), limit.min(HISTORY_PAGE_MAX))?;
            let text = render::history_table(&account, &page, cursor.is_some());
            let transfers: Vec<Value> = page.transfers.iter().map(render::transfer).collect();
            let json = json!({ "transfers": transfers, "next_cursor": page.next_cursor });
            Ok(Output::ok(json, text))
        }
        GateCommand::Ledger(LedgerCommand::Verify) => {
            let report = gate.verify_ledger()?;
            let text = render::verify_text(&report);
            Ok(Output {
                json: render::verify_report(&report),
                text,
                exit: if report.is_ok() { 0 } else { 1 },
                is_error: false,
            })
        }
        GateCommand::Prices(command) => prices(gate, command),
        GateCommand::Keys(KeysCommand::Create {
            account,
            scopes,
            expires_in_days,
            name,
        }) => {
            let scopes = if scopes.is_empty() {
                gate.product_scopes()?
            } else {
                scopes
            };
            let (info, secret) = gate.create_api_key(&account, &name, &scopes, expires_in_days)?;
            let mut json = render::key(&info);
            json["id"] = json!(info.id);
            json["key"] = json!(secret);
            let text = format!(
                "created key {} for {} (scopes {}); the key, shown only now:\n{secret}",
                info.id,
                account,
                info.scopes.join(",")
            );
            Ok(Output::ok(json, text))
        }
        GateCommand::Keys(KeysCommand::Caps {
            key_id,
            daily,
            monthly,
            clear,
        }) => {
            let spend = if clear || daily.is_some() || monthly.is_some() {
                let kept = gate.key_spend(&key_id)?.caps;
                let micros = |text: Option<String>, kept: Option<i64>| -> Result<_, Failure> {
                    match text {
                        None => Ok(kept),
                        Some(text) => {
                            let credits = parse_credits(&text).map_err(creditgate::Error::from)?;
                            Ok(Some(
                                creditgate::money::to_micros(credits)
                                    .map_err(creditgate::Error::from)?,
                            ))
                        }
                    }
                };
                let caps = if clear {
                    creditgate::SpendCaps::default()
                } else {
                    creditgate::SpendCaps {
                        daily_micros: micros(daily, kept.daily_micros)?,
                        monthly_micros: micros(monthly, kept.monthly_micros)?,
                    }
                };
                gate.set_key_spend_caps(&key_id, caps)?
            } else {
                gate.key_spend(&key_id)?
            };
            Ok(Output::ok(
                render::key_spend(&spend),
                render::key_spend_line(&spend),
            ))
        }
        GateCommand::Keys(KeysCommand::List { account }) => {
            let keys = gate.list_api_keys(&account)?;
            let text = render::lines_or(
                keys.iter().map(|k| {
                    let state = if k.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    };
                    format!("{}\t{}\t{}\t{}", k.id, k.name, k.scopes.join(","), state)
                }),
                &format!("no keys for {account}"),
            );
            let json = render::keys(&keys);
            Ok(Output::ok(json, text))
        }
        GateCommand::Keys(KeysCommand::Revoke { key_id }) => {
            let info = gate.revoke_api_key(&key_id)?;
            let mut json = render::key(&info);
            json["id"] = json!(info.id);
            Ok(Output::ok(json, format!("revoked key {}", info.id)))
        }
        GateCommand::Agents(AgentsCommand::Bind {
            code,
            account,
            scopes,
        }) => {
            let allowed = (!scopes.is_empty()).then_some(scopes);
            let agent = gate.bind_agent(&code, &account, allowed)?;
            let mut json = render::agent(&agent);
            json["id"] = json!(agent.id);
            Ok(Output::ok(
                json,
                format!("bound agent {} to {}", agent.id, account),
            ))
        }
        GateCommand::Jobs(JobsCommand::List {
            account,
            status,
            limit,
        }) => {
            let status = status
                .map(|name| {
                    JobStatus::parse(&name).ok_or_else(|| creditgate::Error::InvalidRequest {
                        field: "status".into(),
                        message: format!("{name:?} is not a job status"),
                    })
                })
                .transpose()?;
            let jobs = gate.jobs(&JobFilter {
                account_id: account,
                status,
                limit,
                ..JobFilter::default()
            })?;
            let text = render::lines_or(
                jobs.iter().map(|j| {
                    format!(
                        "{}\t{}\t{}\t{}\t{}",
                        j.id,
                        j.status.as_str(),
                        j.model,
                        j.account_id,
                        j.request_id
                    )
                }),
                "no jobs",
            );
            let json = json!({ "jobs": jobs.iter().map(|j| render::job(j, JobReader::Operator(gate))).collect::<Vec<_>>() });
            Ok(Output::ok(json, text))
        }
        GateCommand::Jobs(JobsCommand::Show { id }) => {
            let job = gate.job(&id)?;
            let json = render::job(&job, JobReader::Operator(gate));
            let text = serde_json::to_string_pretty(&json).unwrap_or_default();
            Ok(Output::ok(json, text))
        }
        GateCommand::Backup { dest } => {
            gate.backup(&dest)?;
            let json =
                json!({ "id": dest.display().to_string(), "path": dest.display().to_string() });
            Ok(Output::ok(
                json,
                format!("backup written to {}", dest.display()),
            ))
        }
    }
}

fn grant(gate: &Gate, args: GrantArgs) -> Result<Output, Failure> {
    let amount = parse_credits(&args.amount).map_err(creditgate::Error::from)?;
    let id = args.id.unwrap_or_else(|| random_id("grant_"));
    let outcome = match args.expires_in_days {
        Some(days) => {
            let expires_at = gate.clock().now() + i64::from(days) * creditgate::plans::DAY_MS;
            gate.grant_promotional(&id, &args.account, amount, expires_at, &args.memo)?
        }
        None => gate.grant(&id, &args.account, amount, &args.memo)?,
    };
    let balance = gate.balance(&args.account)?;
    let mut json = render::account_balance(&args.account, &balance);
    render::add_buckets(
        &mut json,
        &balance,
        &gate.promotional_credits(&args.account)?,
    );
    json["id"] = json!(outcome.transfer.id);
    json["amount"] = render::credits(outcome.transfer.amount);
    json["replayed"] = json!(outcome.replayed);
    let text = format!(
        "granted {} to {} ({}); available {}",
        json["amount"],
        args.account,
        if outcome.replayed {
            "replayed, nothing moved"
        } else {
            outcome.transfer.id.as_str()
        },
        json["available"]
    );
    Ok(Output::ok(json, text))
}

/// The outgoing webhooks' signing key, from the environment only.
fn webhook_signing_key() -> Option<String> {
    std::env::var("CREDITGATE_WEBHOOK_SIGNING_KEY")
        .ok()
        .filter(|key| !key.is_empty())
}

fn webhooks(gate: &Gate, command: WebhooksCommand) -> Result<Output, Failure> {
    match command {
        WebhooksCommand::Add {
            url,
            events,
            low_balance,
        } => {
            let low_balance_micros = match low_balance {
                None => None,
                Some(text) => {
                    let credits = parse_credits(&text).map_err(creditgate::Error::from)?;
                    Some(creditgate::money::to_micros(credits).map_err(creditgate::Error::from)?)
                }
            };
            let (endpoint, secret) =
                gate.add_webhook_endpoint(&creditgate::outbox::NewEndpoint {
                    url,
                    events,
                    low_balance_micros,
                })?;
            let mut json = render::webhook_endpoint(&endpoint);
            json["secret"] = json!(secret);
            let text = format!(
                "added endpoint {} for {} ({}); its signing secret:\n{secret}",
                endpoint.id,
                endpoint.url,
                endpoint.events.join(", ")
            );
            Ok(Output::ok(json, text))
        }
        WebhooksCommand::List => {
            let endpoints = gate.webhook_endpoints()?;
            let text = render::lines_or(
                endpoints.iter().map(render::webhook_endpoint_line),
                "no endpoints (add one with `creditgate webhooks add URL --event job.finished`)",
            );
            let json = json!({
                "endpoints": endpoints.iter().map(render::webhook_endpoint).collect::<Vec<_>>()
            });
            Ok(Output::ok(json, text))
        }
        WebhooksCommand::Secret { endpoint_id } => {
            let secret = gate.webhook_endpoint_secret(&endpoint_id)?;
            Ok(Output::ok(
                json!({ "id": endpoint_id, "secret": secret }),
                secret,
            ))
        }
        WebhooksCommand::Remove { endpoint_id } => {
            let endpoint = gate.remove_webhook_endpoint(&endpoint_id)?;
            let text = format!("removed endpoint {}", endpoint.id);
            Ok(Output::ok(render::webhook_endpoint(&endpoint), text))
        }
        WebhooksCommand::Deliveries { status } => {
            let deliveries = gate.webhook_deliveries(status.as_deref())?;
            let text = render::lines_or(
                deliveries.iter().map(render::webhook_delivery_line),
                "no deliveries",
            );
            let json = json!({
                "deliveries": deliveries.iter().map(render::webhook_delivery).collect::<Vec<_>>()
            });
            Ok(Output::ok(json, text))
        }
        WebhooksCommand::Replay { delivery_id } => {
            let delivery = gate.replay_webhook_delivery(&delivery_id)?;
            let text = format!("delivery {} will be sent again", delivery.id);
            Ok(Output::ok(render::webhook_delivery(&delivery), text))
        }
    }
}

fn codes(gate: &Gate, command: CodesCommand) -> Result<Output, Failure> {
    match command {
        CodesCommand::Create {
            amount,
            uses,
            expires_in_days,
            repeatable,
            memo,
        } => {
            let amount = parse_credits(&amount).map_err(creditgate::Error::from)?;
            let amount_micros =
                creditgate::money::positive_micros(amount).map_err(creditgate::Error::from)?;
            let now = gate.clock().now();
            let new = creditgate::NewCode {
                amount_micros,
                uses_max: uses,
                once_per_account: !repeatable,
                expires_at: expires_in_days
                    .map(|days| now + i64::from(days) * creditgate::plans::DAY_MS),
                memo,
            };
            let (code, secret) = gate.create_code(&new)?;
            let mut json = render::code(&code);
            json["secret"] = json!(secret);
            let text = format!(
                "created code {} ({}); the code, shown only now:\n{secret}",
                code.id,
                render::code_line(&code)
            );
            Ok(Output::ok(json, text))
        }
        CodesCommand::List => {
            let codes = gate.codes()?;
            let text = render::lines_or(
                codes
                    .iter()
                    .map(|code| format!("{}  {}", code.id, render::code_line(code))),
                "no codes (create one with `creditgate codes create --amount 5 --uses 10`)",
            );
            let json = json!({ "codes": codes.iter().map(render::code).collect::<Vec<_>>() });
            Ok(Output::ok(json, text))
        }
        CodesCommand::Revoke { code_id } => {
            let code = gate.revoke_code(&code_id)?;
            let text = format!("revoked code {}", code.id);
            Ok(Output::ok(render::code(&code), text))
        }
    }
}

fn prices(gate: &Gate, command: PricesCommand) -> Result<Output, Failure> {
    match command {
        PricesCommand::Import { file } => {
            let text = read_input(&file.display().to_string(), "file")?;
            let outcome = gate.import_catalog(&text)?;
            let json = json!({
                "id": outcome.version,
                "price_version": outcome.version,
                "created": outcome.created,
                "active": outcome.active,
            });
            let text = format!(
                "{} price version {}{}",
                if outcome.created {
                    "imported"
                } else {
                    "already had"
                },
                outcome.version,
                if outcome.active { " (active)" } else { "" }
            );
            Ok(Output::ok(json, text))
        }
        PricesCommand::List => {
            let versions = gate.price_versions()?;
            let text = render::lines_or(
                versions.iter().map(|v| {
                    let state = if v.active {
                        "active"
                    } else if v.retired {
                        "retired"
                    } else {
                        ""
                    };
                    format!("{}\t{} models\t{}", v.version, v.models, state)
                }),
                "no price versions (import one with `creditgate prices import FILE`)",
            );
            let json = json!({ "price_versions": versions.iter().map(render::price_version).collect::<Vec<_>>() });
            Ok(Output::ok(json, text))
        }
        PricesCommand::Activate { version } => {
            gate.activate_price_version(&version)?;
            Ok(Output::ok(
                json!({ "id": version, "price_version": version, "active": true }),
                format!("price version {version} is active"),
            ))
        }
        PricesCommand::Retire { version } => {
            gate.retire_price_version(&version)?;
            Ok(Output::ok(
                json!({ "id": version, "price_version": version, "retired": true }),
                format!("price version {version} is retired"),
            ))
        }
        PricesCommand::Estimate { body } => {
            let text = read_input(&body, "body")?;
            let value: Value =
                serde_json::from_str(&text).map_err(|err| creditgate::Error::InvalidRequest {
                    field: "body".into(),
                    message: format!("is not valid JSON: {err}"),
                })?;
            let estimate = gate.estimate_body(&value)?;
            let json = render::estimate(&estimate);
            let text = format!(
                "{} credits for {} ({}, price version {})",
                json["credits"], estimate.model, estimate.product, estimate.price_version
            );
            Ok(Output::ok(json, text))
        }
    }
}

/// The text of `source`: `-` for standard input, `@PATH` or a path for
/// `file`-like arguments, else the argument itself. A file that cannot be
/// read means the command could not run (exit 2).
fn read_input(source: &str, field: &'static str) -> Result<String, Failure> {
    let unreadable = |err: std::io::Error| Failure::Input {
        field,
        message: format!("cannot read {source}: {err}"),
    };
    if source == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(unreadable)?;
        Ok(text)
    } else if let Some(path) = source.strip_prefix('@') {
        std::fs::read_to_string(path).map_err(unreadable)
    } else if field == "file" {
        std::fs::read_to_string(source).map_err(unreadable)
    } else {
        Ok(source.to_owned())
    }
}
