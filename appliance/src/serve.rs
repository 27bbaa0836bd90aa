//! `creditgate serve`: opens the gate, makes a fresh database usable (the
//! shipped catalog, and on first run a demo account whose key is printed
//! once), turns on the Moltbook exchange when configured, opens the media
//! store (outputs kept beside the database), starts the job workers (one
//! of them also sweeps expired media) and the HTTP server, and shuts both
//! down gracefully on SIGINT or SIGTERM.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use creditgate::media::{FileMediaStore, MediaSettings};
use creditgate::providers::fixture::Scenarios;
use creditgate::{
    Clock, Gate, GateSettings, MoltbookConfig, MoltbookVerifier, NewAccount, StoreOptions,
    SystemClock,
};
use rust_decimal::Decimal;

use crate::http::request::State;
use crate::http::server::{self, ServerConfig};

/// The catalog a fresh database gets.
pub const SHIPPED_CATALOG: &str = include_str!("../../fixtures/catalogs/rynjer.json");
/// The model the first-run curl line uses when the catalog has it.
pub const FIRST_CALL_MODEL: &str = "nano-banana-pro";
/// Credits the first-run demo account starts with.
pub const DEMO_CREDITS: i64 = 200;
/// Jobs one worker step takes, at most.
pub const WORKER_BATCH_MAX: usize = 32;
/// The longest a worker sleeps between steps.
pub const WORKER_IDLE_MS_MAX: i64 = 500;
/// Job worker threads, at most.
pub const WORKERS_MAX: usize = 64;
/// How often the first worker removes expired media.
pub const MEDIA_SWEEP_INTERVAL_MS: u64 = 60_000;
/// How long the webhook thread waits when nothing was due.
pub const WEBHOOK_IDLE_MS: u64 = 200;
/// How long a charge of a saved card waits before the sender asks Stripe
/// for it: an auto top-up a capture opened is charged a few seconds later,
/// and one a request is charging itself is left to that request meanwhile
/// (were both to ask, the one idempotency key makes it one charge).
pub const CHARGE_AGAIN_AFTER_MS: i64 = 5_000;
/// Expired media files one sweep removes, at most.
pub const MEDIA_SWEEP_BATCH_MAX: usize = 1_000;

/// What `serve` was told.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The database.
    pub store: StoreOptions,
    /// The default model per product (`--default-model`).
    pub default_models: creditgate::DefaultModels,
    /// Whether and how agents may register themselves.
    pub self_registration: Option<creditgate::SelfRegistration>,
    /// Where to listen.
    pub listen: String,
    /// Job worker threads.
    pub workers: usize,
    /// HTTP handler threads.
    pub http_threads: usize,
    /// A catalog to import and activate on start.
    pub catalog: Option<PathBuf>,
    /// A fixture scenario file.
    pub scenarios: Option<PathBuf>,
    /// The providers file (none: only the fixture provider).
    pub providers: Option<PathBuf>,
    /// The public base URL (default: `http://<listen address>`).
    pub public_url: Option<String>,
    /// Socket read timeout.
    pub read_timeout: Duration,
    /// Open HTTP connections, at most.
    pub max_connections: usize,
    /// How long a job may run before it expires.
    pub job_deadline: Duration,
    /// The first poll's delay (later ones back off up to 15 times it).
    pub poll_interval: Duration,
    /// Requests per credential.
    pub rate_limit: creditgate::ratelimit::RateLimit,
    /// "Sign in with Moltbook", as configured (raw; validated on start).
    pub moltbook: MoltbookOptions,
    /// Card top-ups through Stripe, as configured (raw; validated on start).
    pub stripe: StripeOptions,
    /// Top-ups through x402, as configured (raw; validated on start).
    pub x402: X402Options,
    /// The outgoing webhooks' signing key (environment only; none: nothing
    /// is sent).
    pub webhook_signing_key: Option<String>,
    /// The first retry's delay of a failed delivery (doubling after).
    pub webhook_retry: Duration,
    /// The media store.
    pub media: MediaOptions,
}

/// Where and how long outputs are kept.
#[derive(Debug, Clone)]
pub struct MediaOptions {
    /// `--media-dir` (default: `media/` beside the database).
    pub dir: Option<PathBuf>,
    /// `--media-retention-days` (at least 1).
    pub retention_days: u64,
    /// `--media-max-bytes`: the store's quota.
    pub store_bytes_max: u64,
}

/// The Moltbook flags of `serve`, as given. The exchange is on when
/// `verify_url` is set; the other three need it.
#[derive(Clone, Default)]
pub struct MoltbookOptions {
    /// `--moltbook-verify-url`.
    pub verify_url: Option<String>,
    /// `--moltbook-app-key` (a secret).
    pub app_key: Option<String>,
    /// `--moltbook-audience`.
    pub audience: Option<String>,
    /// `--moltbook-default-account`.
    pub default_account: Option<String>,
}

impl std::fmt::Debug for MoltbookOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MoltbookOptions")
            .field("verify_url", &self.verify_url)
            .field("app_key", &self.app_key.as_ref().map(|_| "<redacted>"))
            .field("audience", &self.audience)
            .field("default_account", &self.default_account)
            .finish()
    }
}

/// The Stripe settings of `serve`, as given. Top-ups are on when the
/// secret key is set (from `CREDITGATE_STRIPE_SECRET_KEY`).
#[derive(Clone, Default)]
pub struct StripeOptions {
    /// The secret API key (environment only).
    pub secret_key: Option<String>,
    /// The webhook signing secret (environment only).
    pub webhook_secret: Option<String>,
    /// `--stripe-api-base`.
    pub api_base: String,
    /// `--stripe-currency`.
    pub currency: String,
    /// `--stripe-minor-per-credit`.
    pub minor_per_credit: String,
    /// `--stripe-success-url`.
    pub success_url: Option<String>,
    /// `--stripe-cancel-url`.
    pub cancel_url: Option<String>,
    /// `--stripe-pack`, as given.
    pub packs: Vec<String>,
}

impl std::fmt::Debug for StripeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeOptions")
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("api_base", &self.api_base)
            .field("currency", &self.currency)
            .field("minor_per_credit", &self.minor_per_credit)
            .field("success_url", &self.success_url)
            .field("cancel_url", &self.cancel_url)
            .field("packs", &self.packs)
            .finish()
    }
}

/// The x402 settings of `serve`, as given. x402 top-ups are on when the
/// facilitator URL is set.
#[derive(Clone, Default)]
pub struct X402Options {
    /// `--x402-facilitator-url`.
    pub facilitator_url: Option<String>,
    /// The facilitator's bearer token (environment only).
    pub facilitator_token: Option<String>,
    /// `--x402-pay-to`.
    pub pay_to: Option<String>,
    /// `--x402-network`.
    pub network: String,
    /// `--x402-asset`.
    pub asset: String,
    /// `--x402-asset-name`.
    pub asset_name: String,
    /// `--x402-asset-domain` (`name/version`).
    pub asset_domain: String,
    /// `--x402-atomic-per-credit`.
    pub atomic_per_credit: i64,
    /// `--x402-min-credits`.
    pub min_credits: String,
    /// `--x402-max-credits`.
    pub max_credits: String,
    /// `--x402-timeout-secs`.
    pub timeout: Duration,
}

impl std::fmt::Debug for X402Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X402Options")
            .field("facilitator_url", &self.facilitator_url)
            .field(
                "facilitator_token",
                &self.facilitator_token.as_ref().map(|_| "<redacted>"),
            )
            .field("pay_to", &self.pay_to)
            .field("network", &self.network)
            .field("asset", &self.asset)
            .field("atomic_per_credit", &self.atomic_per_credit)
            .finish_non_exhaustive()
    }
}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(options: ServeOptions) -> anyhow::Result<()> {
    let scenarios = match &options.scenarios {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read scenario file {}", path.display()))?;
            Scenarios::parse(&text).map_err(anyhow::Error::msg)?
        }
        None => Scenarios::shipped(),
    };
    // Bind first: the public URL defaults to the address really bound.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .context("cannot install signal handlers")?;
    }
    // Bound once here and handed to the server, so the address cannot be
    // taken between learning it and serving on it.
    let listener = std::net::TcpListener::bind(&options.listen)
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let addr = listener.local_addr()?;
    let public_url = options
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let poll_ms = i64::try_from(options.poll_interval.as_millis()).unwrap_or(i64::MAX);
    let settings = GateSettings {
        public_base_url: public_url.trim_end_matches('/').to_owned(),
        job_deadline_ms: i64::try_from(options.job_deadline.as_millis()).unwrap_or(i64::MAX),
        poll_interval_ms_min: poll_ms,
        poll_interval_ms_max: poll_ms.saturating_mul(15),
        submit_backoff_ms_max: poll_ms.saturating_mul(30),
        rate_limit: options.rate_limit,
        default_models: options.default_models.clone(),
        self_registration: options.self_registration,
        ..GateSettings::default()
    };
    let providers = crate::providers::load(options.providers.as_deref(), &scenarios)?;
    eprintln!(
        "creditgate: providers: {}",
        providers.names().collect::<Vec<_>>().join(", ")
    );
    let gate = Gate::open(&options.store, Arc::new(SystemClock))
        .map_err(|err| anyhow::anyhow!(crate::render::open_error(&options.store.path, &err)))?
        .with_providers(providers)
        .with_settings(settings.clone());
    let gate = with_media(gate, &options)?;
    let gate = with_stripe(gate, &options.stripe)?;
    let gate = with_x402(gate, &options.x402)?;
    let gate = match &options.webhook_signing_key {
        Some(key) => gate
            .with_webhook_signing_key(creditgate::payments::stripe::Secret::new(key.clone()))
            .context("CREDITGATE_WEBHOOK_SIGNING_KEY")?,
        None => gate,
    };
    let gate = Arc::new(with_moltbook(gate, &options.moltbook)?);
    prepare_catalog(&gate, options.catalog.as_deref())?;
    check_default_models(&gate, &options.default_models)?;
    // Every price version still honoured must route to a configured
    // provider: refuse to start rather than answer 503 to every job.
    gate.check_provider_routes().context(
        "cannot serve the catalogs in force with these providers \
         (pass the providers file with --providers, or import a catalog that routes to them)",
    )?;
    first_run(&gate, &settings.public_base_url)?;
    let resumed = gate.recover()?;
    if resumed > 0 {
        eprintln!("creditgate: resumed {resumed} job(s) left by a previous run");
    }

    let workers: Vec<JoinHandle<()>> = (0..options.workers.clamp(1, WORKERS_MAX))
        .map(|i| {
            let (gate, stop) = (gate.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || work(&gate, &stop, i == 0))
        })
        .collect::<std::io::Result<_>>()?;

    let sender = {
        let (gate, stop) = (gate.clone(), stop.clone());
        let first_retry_ms = i64::try_from(options.webhook_retry.as_millis()).unwrap_or(i64::MAX);
        let settle_again_ms =
            i64::try_from(options.x402.timeout.as_millis().saturating_mul(2)).unwrap_or(i64::MAX);
        std::thread::Builder::new()
            .name("webhooks".into())
            .spawn(move || send_webhooks(&gate, &stop, first_retry_ms, settle_again_ms))?
    };
    if options.webhook_signing_key.is_none() && !gate.webhook_endpoints()?.is_empty() {
        eprintln!(
            "creditgate: warning: webhook endpoints are configured but              CREDITGATE_WEBHOOK_SIGNING_KEY is not set: deliveries wait unsent"
        );
    }

    let state = Arc::new(State {
        gate: gate.clone(),
        public_base_url: settings.public_base_url.clone(),
    });
    let config = ServerConfig {
        threads: options.http_threads,
        read_timeout: options.read_timeout,
        header_deadline: options.read_timeout,
        connections_max: options.max_connections,
        body_deadline: options.read_timeout * 2,
        access_log: true,
    };
    let running = server::start(state, listener, &config)
        .with_context(|| format!("cannot serve on {addr}"))?;
    // Write errors are ignored: a supervisor that closed our stdout must not
    // take the server down (println! panics on a closed pipe).
    let mut stdout = std::io::stdout();
    let _ = writeln!(
        stdout,
        "database {}; public URL {}",
        options.store.path.display(),
        settings.public_base_url
    );
    let _ = writeln!(
        stdout,
        "creditgate listening on http://{}",
        running.local_addr()
    );
    let _ = stdout.flush();

    let mut lost = None;
    while !stop.load(Ordering::SeqCst) {
        if let Some(why) = running.failure() {
            lost = Some(why);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if lost.is_some() {
        eprintln!("creditgate: cannot accept connections any more; stopping");
    } else {
        eprintln!("creditgate: shutting down (finishing in-flight requests)");
    }
    stop.store(true, Ordering::SeqCst);
    running.shutdown();
    for worker in workers {
        let _ = worker.join();
    }
    let _ = sender.join();
    match lost {
        // Exit non-zero so a supervisor restarts us rather than leave a
        // process that is up but deaf.
        Some(why) => anyhow::bail!("the listener on {addr} is lost: {why}"),
        None => {
            eprintln!("creditgate: stopped");
            Ok(())
        }
    }
}

/// Opens the media store (`--media-dir`, or `media/` beside the database)
/// and turns it on with its retention.
fn with_media(gate: Gate, options: &ServeOptions) -> anyhow::Result<Gate> {
    let mut settings = MediaSettings::beside(&options.store.path);
    if let Some(dir) = &options.media.dir {
        settings.dir = dir.clone();
    }
    settings.store_bytes_max = options.media.store_bytes_max;
    let dir = settings.dir.clone();
    let store = FileMediaStore::open(settings)
        .map_err(|err| anyhow::anyhow!("--media-dir {}: {err}", dir.display()))?;
    let days = i64::try_from(options.media.retention_days).unwrap_or(i64::MAX);
    gate.with_media_store(Arc::new(store), days.saturating_mul(86_400_000))
        .map_err(|err| anyhow::anyhow!("--media-retention-days: {err}"))
}

/// Turns on card top-ups through Stripe when its secret key is set, after
/// checking the rest of its settings; says so on stderr (never a secret).
fn with_stripe(gate: Gate, stripe: &StripeOptions) -> anyhow::Result<Gate> {
    let Some(secret_key) = &stripe.secret_key else {
        if stripe.webhook_secret.is_some() {
            anyhow::bail!(
                "CREDITGATE_STRIPE_WEBHOOK_SECRET is set but CREDITGATE_STRIPE_SECRET_KEY is not"
            );
        }
        return Ok(gate);
    };
    let webhook_secret = stripe.webhook_secret.clone().context(
        "CREDITGATE_STRIPE_SECRET_KEY is set: CREDITGATE_STRIPE_WEBHOOK_SECRET (the webhook \
         endpoint's signing secret, whsec_...) is needed too",
    )?;
    let success_url = stripe.success_url.clone().context(
        "Stripe top-ups need --stripe-success-url (CREDITGATE_STRIPE_SUCCESS_URL): where Stripe \
         sends a payer after paying",
    )?;
    let minor_per_credit = creditgate::money::parse_credits(&stripe.minor_per_credit)
        .ok()
        .filter(|rate| *rate > rust_decimal::Decimal::ZERO)
        .context("--stripe-minor-per-credit must be a positive number")?;
    let currency = stripe.currency.to_ascii_lowercase();
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_lowercase()) {
        anyhow::bail!("--stripe-currency must be a three-letter ISO 4217 code (usd, eur, ...)");
    }
    for (flag, url) in [
        ("--stripe-api-base", Some(&stripe.api_base)),
        ("--stripe-success-url", Some(&success_url)),
        ("--stripe-cancel-url", stripe.cancel_url.as_ref()),
    ] {
        if url.is_some_and(|url| !url.starts_with("https://") && !url.starts_with("http://")) {
            anyhow::bail!("{flag} must be an http(s) URL");
        }
    }
    let mut packs: Vec<creditgate::payments::stripe::CreditPack> = Vec::new();
    for text in stripe.packs.iter().filter(|text| !text.trim().is_empty()) {
        let pack = creditgate::payments::stripe::CreditPack::parse(text.trim())
            .map_err(|reason| anyhow::anyhow!("--stripe-pack: {reason}"))?;
        if packs.iter().any(|known| known.name == pack.name) {
            anyhow::bail!("--stripe-pack: {} is named twice", pack.name);
        }
        packs.push(pack);
    }
    if packs.len() > creditgate::payments::stripe::PACKS_MAX {
        anyhow::bail!(
            "--stripe-pack: at most {} packs",
            creditgate::payments::stripe::PACKS_MAX
        );
    }
    let settings = creditgate::payments::stripe::StripeSettings {
        packs,
        api_base: stripe.api_base.clone(),
        secret_key: creditgate::payments::stripe::Secret::new(secret_key.clone()),
        webhook_secret: creditgate::payments::stripe::Secret::new(webhook_secret),
        currency,
        minor_per_credit,
        cancel_url: stripe
            .cancel_url
            .clone()
            .unwrap_or_else(|| success_url.clone()),
        success_url,
    };
    eprintln!(
        "creditgate: card top-ups through Stripe are on ({} per credit in {}; API {})",
        settings.minor_per_credit, settings.currency, settings.api_base
    );
    let api = creditgate::payments::stripe::HttpStripe::new(&settings);
    Ok(gate.with_stripe(settings, Arc::new(api)))
}

/// Turns on x402 top-ups when a facilitator URL is set, after checking
/// the rest of their settings; says so on stderr (never the token).
fn with_x402(gate: Gate, x402: &X402Options) -> anyhow::Result<Gate> {
    use creditgate::payments::x402::{HttpFacilitator, Secret, X402Settings};
    let Some(facilitator_url) = &x402.facilitator_url else {
        if x402.pay_to.is_some() {
            anyhow::bail!(
                "--x402-pay-to is set but --x402-facilitator-url is not: x402 top-ups need both"
            );
        }
        return Ok(gate);
    };
    if !(facilitator_url.starts_with("https://") || facilitator_url.starts_with("http://")) {
        anyhow::bail!("--x402-facilitator-url must be an http(s) URL");
    }
    let pay_to = x402.pay_to.clone().context(
        "x402 top-ups need --x402-pay-to (CREDITGATE_X402_PAY_TO): the address that receives \
         payments",
    )?;
    let credits = |flag: &str, text: &str| -> anyhow::Result<i64> {
        creditgate::money::parse_credits(text)
            .ok()
            .and_then(|credits| creditgate::money::positive_micros(credits).ok())
            .with_context(|| format!("{flag} must be a positive number of credits"))
    };
    let (name, version) = x402
        .asset_domain
        .split_once('/')
        .context("--x402-asset-domain must be name/version (USD Coin/2)")?;
    let settings = X402Settings {
        facilitator_url: facilitator_url.trim_end_matches('/').to_owned(),
        facilitator_token: x402.facilitator_token.clone().map(Secret::new),
        network: x402.network.clone(),
        asset: x402.asset.clone(),
        asset_name: x402.asset_name.to_ascii_lowercase(),
        pay_to,
        atomic_per_credit: x402.atomic_per_credit,
        min_topup_micros: credits("--x402-min-credits", &x402.min_credits)?,
        max_topup_micros: credits("--x402-max-credits", &x402.max_credits)?,
        max_timeout_seconds: 300,
        extra: serde_json::json!({"name": name, "version": version}),
    };
    settings
        .check()
        .map_err(|reason| anyhow::anyhow!("x402 settings: {reason}"))?;
    eprintln!(
        "creditgate: x402 top-ups on ({} atomic units of {} on {} per credit, facilitator {})",
        settings.atomic_per_credit, settings.asset_name, settings.network, settings.facilitator_url
    );
    let facilitator = HttpFacilitator::new(&settings, x402.timeout);
    Ok(gate.with_x402(settings, Arc::new(facilitator)))
}

/// Turns on the Moltbook exchange if a verify URL is configured, after
/// validating every Moltbook flag and that the default account exists.
fn with_moltbook(gate: Gate, moltbook: &MoltbookOptions) -> anyhow::Result<Gate> {
    let Some(verify_url) = &moltbook.verify_url else {
        let dependent = [
            ("--moltbook-app-key", moltbook.app_key.is_some()),
            ("--moltbook-audience", moltbook.audience.is_some()),
            (
                "--moltbook-default-account",
                moltbook.default_account.is_some(),
            ),
        ];
        if let Some((flag, _)) = dependent.iter().find(|(_, given)| *given) {
            anyhow::bail!("{flag} needs --moltbook-verify-url (CREDITGATE_MOLTBOOK_VERIFY_URL)");
        }
        return Ok(gate);
    };
    let mut config = MoltbookConfig::new(verify_url.clone());
    config.app_key = moltbook.app_key.clone();
    config.audience = moltbook.audience.clone();
    let verifier = MoltbookVerifier::new(config).context("invalid Moltbook configuration")?;
    if let Some(account) = &moltbook.default_account {
        gate.account(account)
            .with_context(|| format!("--moltbook-default-account {account}"))?;
    }
    eprintln!(
        "creditgate: Sign in with Moltbook is on (verifier {}; {})",
        verifier.config().verify_url,
        match &moltbook.default_account {
            Some(account) => format!("new agents are bound to {account}"),
            None => "owners bind new agents' registration codes".to_owned(),
        }
    );
    Ok(gate.with_identity_verifier(Arc::new(verifier), moltbook.default_account.clone()))
}

/// Refuses to start when an operator's default model is not a model of
/// its product in the active catalog, saying which.
fn check_default_models(gate: &Gate, defaults: &creditgate::DefaultModels) -> anyhow::Result<()> {
    for product in defaults.keys() {
        gate.default_model(product)
            .map_err(|err| anyhow::anyhow!("--default-model {product}: {err}"))?;
    }
    Ok(())
}

/// Imports and activates `catalog` if given; else imports the shipped
/// catalog into a database that has none.
fn prepare_catalog(gate: &Gate, catalog: Option<&std::path::Path>) -> anyhow::Result<()> {
    match catalog {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read catalog {}", path.display()))?;
            let imported = gate.import_catalog(&text)?;
            gate.activate_price_version(&imported.version)?;
            eprintln!("creditgate: price version {} is active", imported.version);
        }
        None => {
            if gate.active_price_version()?.is_none() {
                let imported = gate.import_catalog(SHIPPED_CATALOG)?;
                eprintln!(
                    "creditgate: imported the shipped catalog, price version {}",
                    imported.version
                );
            }
        }
    }
    Ok(())
}

/// `println!` that ignores a closed stdout: the key is lost to a reader
/// that went away, but the server is not (`println!` would panic).
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// On a database without accounts: a demo account with starter credits and
/// a key with the active catalog's product scopes (never `admin`), printed
/// once with a curl line that works as printed.
fn first_run(gate: &Gate, base_url: &str) -> anyhow::Result<()> {
    if !gate.list_accounts()?.is_empty() {
        return Ok(());
    }
    let account = gate.create_account(&NewAccount::named("demo"))?;
    gate.grant(
        "demo-starter-credits",
        &account.id,
        Decimal::from(DEMO_CREDITS),
        "starter credits",
    )?;
    let scopes = gate.product_scopes()?;
    let (_, key) = gate.create_api_key(&account.id, "demo", &scopes, None)?;
    say!(
        "creditgate: first run: created the demo account {} with {DEMO_CREDITS} credits.",
        account.id
    );
    say!("Its API key, shown only now (store it): {key}");
    say!(
        "It may generate with every product of the catalog ({}), not administer.",
        scopes.join(", ")
    );
    let model = first_call_model(gate)?;
    say!("Try it:");
    say!(
        "  curl -s {base_url}/v1/generate -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' -d '{{\"request_id\":\"first-call-1\",\"model\":\"{model}\",\"prompt\":\"a lighthouse at dawn\"}}'"
    );
    say!("  curl -s {base_url}/v1/generate/first-call-1 -H 'Authorization: Bearer {key}'");
    Ok(())
}

/// The model of the first-run curl line, so that it works as printed with
/// any catalog: [`FIRST_CALL_MODEL`] if the active catalog prices it, else
/// its first image model that needs no input image, else its first model
/// that needs none.
fn first_call_model(gate: &Gate) -> anyhow::Result<String> {
    let catalog = gate.catalog(None)?;
    let without_images = || catalog.models.iter().filter(|m| m.input_images.min == 0);
    let chosen = catalog
        .model(FIRST_CALL_MODEL)
        .or_else(|| without_images().find(|m| m.product == "image"))
        .or_else(|| without_images().next())
        .or_else(|| catalog.models.first())
        .context("the active catalog lists no model")?;
    Ok(chosen.model.clone())
}

/// The outgoing webhooks' thread: sends due deliveries, then waits a
/// moment; a receiver that hangs holds this thread only. Once a second it
/// also settles again x402 payments whose settlement went unanswered for
/// `settle_again_after_ms` (twice the facilitator timeout: no request is
/// still waiting on it).
fn send_webhooks(gate: &Gate, stop: &AtomicBool, first_retry_ms: i64, settle_again_after_ms: i64) {
    let sender = creditgate::outbox::HttpWebhookSender::new(Duration::from_secs(10));
    let mut last_settle_again = std::time::Instant::now();
    while !stop.load(Ordering::SeqCst) {
        let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // x402 settlements left unanswered are settled again here: a
            // facilitator that hangs holds this thread, never a request's.
            if last_settle_again.elapsed() >= Duration::from_secs(1) {
                last_settle_again = std::time::Instant::now();
                if let Err(err) = gate.settle_stuck_x402(settle_again_after_ms) {
                    eprintln!("creditgate: x402 settle-again step failed: {err}");
                }
                // Charges of saved cards a crash or a lost answer left
                // unanswered (and auto top-ups a capture opened).
                if let Err(err) = gate.run_unanswered_charges(CHARGE_AGAIN_AFTER_MS) {
                    eprintln!("creditgate: saved-card charge step failed: {err}");
                }
            }
            gate.run_due_deliveries(&sender, first_retry_ms)
        }));
        let pause = match step {
            Ok(Ok(sent)) if sent > 0 => 0,
            Ok(Ok(_)) => WEBHOOK_IDLE_MS,
            Ok(Err(err)) => {
                eprintln!("creditgate: webhook step failed: {err}");
                WEBHOOK_IDLE_MS
            }
            Err(_) => {
                eprintln!("creditgate: webhook step panicked; going on");
                WEBHOOK_IDLE_MS
            }
        };
        std::thread::sleep(Duration::from_millis(pause));
    }
}

/// One job worker: steps until stopped, sleeping until the next job is due
/// (bounded, so new submissions are picked up promptly); the one that
/// `sweeps_media` also removes expired media once a minute. Never dies: a
/// failed step, a job fault or a panic is logged (with the job ids) and the
/// worker goes on; `/healthz` reports workers that keep failing.
fn work(gate: &Gate, stop: &AtomicBool, sweeps_media: bool) {
    let mut last_sweep: Option<std::time::Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        let sweep_due = last_sweep
            .is_none_or(|at| at.elapsed() >= Duration::from_millis(MEDIA_SWEEP_INTERVAL_MS));
        if sweeps_media && sweep_due {
            last_sweep = Some(std::time::Instant::now());
            if let Err(err) = gate.sweep_media(MEDIA_SWEEP_BATCH_MAX) {
                eprintln!("creditgate: media sweep: {err}");
            }
            // Promotional credits past their expiry (a hold takes back its
            // own wallet's anyway; this keeps every balance honest).
            if let Err(err) = gate.expire_promotional_credits() {
                eprintln!("creditgate: promotional expiry sweep: {err}");
            }
        }
        // The core catches panics of a step itself; this is the last guard.
        let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            gate.run_due_work(WORKER_BATCH_MAX)
        }));
        let pause = match step {
            Ok(Ok(report)) => {
                for fault in &report.faults {
                    eprintln!("creditgate: worker: job {}: {}", fault.job_id, fault.detail);
                }
                let now = SystemClock.now();
                report.next_due.map_or(WORKER_IDLE_MS_MAX, |due| {
                    (due - now).clamp(10, WORKER_IDLE_MS_MAX)
                })
            }
            Ok(Err(err)) => {
                eprintln!("creditgate: worker step failed: {err}");
                WORKER_IDLE_MS_MAX
            }
            Err(_) => {
                eprintln!("creditgate: worker step panicked; going on");
                WORKER_IDLE_MS_MAX
            }
        };
        std::thread::sleep(Duration::from_millis(pause as u64));
    }
}
