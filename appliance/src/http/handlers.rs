//! The Rynjer dialect's route handlers: each parses its input from the
//! [`Call`], calls one `Gate` method and renders the answer with the
//! crate's `render` views in the v1 envelope (`dialects::rynjer`). No
//! business rule lives here: scopes, ownership, prices and idempotency are
//! the core's. Handlers never name the router; the router names them.

use creditgate::identity::external::MOLTBOOK_PROVIDER;
use creditgate::{Error, ExchangeOutcome, Gate, ServedOutput};
use serde_json::{json, Value};

use super::dialects::rynjer::{self, agent_ok, ok};
use super::docs;
use super::request::{object_with_members, required_str, Call};
use super::response::Response;
use crate::render::{self, JobReader};

/// What a handler answers.
pub type Handled = Result<Response, Error>;

/// `POST /v1/generate`.
pub fn generate(call: &Call) -> Handled {
    let body = call.request.json_body()?;
    let submitted = call.gate().submit_for(call.caller()?, &body)?;
    Ok(ok(render::submitted(&submitted)).with_quota(submitted.quota.as_ref()))
}

/// `GET /v1/generate/{request_id}`.
pub fn poll(call: &Call) -> Handled {
    let account = &call.caller()?.account_id;
    let job = call.gate().job_for(account, call.param("request_id"))?;
    Ok(ok(render::job(&job, JobReader::Owner)))
}

/// `POST /v1/generate/{request_id}/cancel`.
pub fn cancel(call: &Call) -> Handled {
    let account = &call.caller()?.account_id;
    let job = call.gate().cancel(account, call.param("request_id"))?;
    Ok(ok(render::job(&job, JobReader::Owner)))
}

/// `GET /v1/credits/balance`.
pub fn balance(call: &Call) -> Handled {
    let account_id = &call.caller()?.account_id;
    let balance = call.gate().balance(account_id)?;
    let promotional = call.gate().promotional_credits(account_id)?;
    let mut data = render::balance(&balance);
    render::add_buckets(&mut data, &balance, &promotional);
    data["currency"] = json!("credits");
    Ok(ok(data))
}

/// `POST /v1/credits/redeem` `{"code"}`: a redemption code's credits into
/// the caller's wallet.
pub fn redeem(call: &Call) -> Handled {
    let body = call.request.json_body()?;
    object_with_members(&body, &["code"])?;
    let code = required_str(&body, "code")?;
    let redeemed = call.gate().redeem_code(&call.caller()?.account_id, code)?;
    Ok(ok(render::redeemed(&redeemed)))
}

/// `POST /v1/credits/topup` `{"credits"}`: opens a top-up through the
/// operator's payment rail; the payer pays at `checkout_url`.
pub fn topup(call: &Call) -> Handled {
    let account_id = &call.caller()?.account_id;
    let body = call.request.json_body()?;
    let object = object_with_members(&body, &["credits", "pack"])?;
    let topup = match (object.get("credits"), object.get("pack")) {
        (None, Some(pack)) => {
            let pack = pack.as_str().ok_or_else(|| Error::InvalidRequest {
                field: "pack".into(),
                message: "must be a pack's name".into(),
            })?;
            call.gate().open_topup_pack(account_id, pack)?
        }
        (Some(_), Some(_)) => {
            return Err(Error::InvalidRequest {
                field: "pack".into(),
                message: "give credits or a pack, not both".into(),
            })
        }
        _ => call.gate().open_topup(account_id, credits_of_body(call)?)?,
    };
    Ok(ok(render::topup(&topup)))
}

/// `GET /v1/credits/topup`: what credits cost by card: the currency, the
/// price of one credit in minor units, and the operator's packs.
pub fn topup_prices(call: &Call) -> Handled {
    call.caller()?;
    let settings = call.gate().topup_prices()?;
    Ok(ok(json!({
        "currency": settings.currency,
        // A number with at most 6 decimals, rendered exactly like credits.
        "minor_per_credit": render::credits(
            creditgate::money::to_micros(settings.minor_per_credit).unwrap_or(0)
        ),
        "packs": settings.packs.iter().map(|pack| json!({
            "name": pack.name,
            "credits": render::credits(pack.credits_micros),
            "amount_minor": pack.amount_minor,
        })).collect::<Vec<_>>(),
    })))
}

/// `POST /v1/credits/x402` `{"credits"}`: buys credits over x402. Without
/// a `PAYMENT-SIGNATURE`, answers 402 `payment_required` with the offer in
/// `PAYMENT-REQUIRED`; with one (paid by the router before this runs), the
/// credited top-up and the balance, and `PAYMENT-RESPONSE`.
pub fn x402_topup(call: &Call) -> Handled {
    let credits = credits_of_body(call)?;
    let account_id = &call.caller()?.account_id;
    let Some(receipt) = &call.payment else {
        let micros = creditgate::money::positive_micros(credits)?;
        return Err(call.gate().x402_offer(micros)?);
    };
    let balance = call.gate().balance(account_id)?;
    Ok(ok(json!({
        "topup": render::topup(&receipt.topup),
        "newly_credited": receipt.newly_credited,
        "balance": render::balance(&balance),
    })))
}

/// The `{"credits"}` body of a top-up: a positive number, nothing else.
fn credits_of_body(call: &Call) -> Result<rust_decimal::Decimal, Error> {
    let body = call.request.json_body()?;
    object_with_members(&body, &["credits"])?;
    Some(&body["credits"])
        .filter(|credits| credits.is_number())
        .and_then(|credits| creditgate::money::parse_credits(&credits.to_string()).ok())
        .ok_or_else(|| Error::InvalidRequest {
            field: "credits".into(),
            message: "is required: a positive number of credits".into(),
        })
}

/// `GET /v1/credits/topup/{topup_id}`: where the caller's top-up stands.
pub fn topup_status(call: &Call) -> Handled {
    let topup = call
        .gate()
        .topup(&call.caller()?.account_id, call.param("topup_id"))?;
    Ok(ok(render::topup(&topup)))
}

/// `POST /v1/payments/stripe/webhook`: Stripe's signed event, applied once.
pub fn stripe_webhook(call: &Call) -> Handled {
    let signature = call.request.header("stripe-signature").unwrap_or("");
    let outcome = call
        .gate()
        .apply_stripe_event(signature, &call.request.body)?;
    if let creditgate::EventOutcome::Reversed {
        topup_id,
        unrecovered_micros,
        ..
    } = &outcome
    {
        if *unrecovered_micros > 0 {
            // The operator's to recover: said in the log, kept on the top-up.
            eprintln!(
                "request_id={} warning: a refund or dispute of top-up {topup_id} could not \
                 take back {} credits (the wallet did not hold them)",
                call.request.request_id,
                creditgate::money::to_credits(*unrecovered_micros)
            );
        }
    }
    Ok(Response::json(
        200,
        &json!({ "received": true, "outcome": render::event_outcome(&outcome) }),
    ))
}

/// `POST /v1/credits/estimate`.
pub fn estimate(call: &Call) -> Handled {
    call.caller()?;
    let estimate = call.gate().estimate_body(&call.request.json_body()?)?;
    Ok(ok(render::estimate(&estimate)))
}

/// `GET /v1/models/list` (optionally `?price_version=`).
pub fn models(call: &Call) -> Handled {
    call.caller()?;
    let listing = call
        .gate()
        .models(call.request.query_param("price_version"))?;
    Ok(ok(render::models(&listing)))
}

/// How long a client may cache an output, at most (a kept one: until its
/// retention ends, if sooner).
pub const OUTPUT_MAX_AGE_SECS_MAX: i64 = 3_600;

/// `GET /v1/files/{job_id}/{token}/{index}/{name}`: an output, through its
/// unguessable URL: a fixture sample from the binary, or a kept file
/// streamed from disk (410 `output_expired` once its retention passed).
pub fn file(call: &Call) -> Handled {
    let index = call
        .param("index")
        .parse::<usize>()
        .map_err(|_| Error::NotFound {
            what: "output",
            id: call.param("index").to_owned(),
        })?;
    let gate = call.gate();
    let served = gate.served_output(call.param("job_id"), call.param("token"), index)?;
    let (mut response, max_age) = match served {
        ServedOutput::Sample(file) => (
            Response::bytes(200, file.mime, file.bytes.to_vec()),
            OUTPUT_MAX_AGE_SECS_MAX,
        ),
        ServedOutput::Kept(kept) => {
            let missing = |err: std::io::Error| match err.kind() {
                std::io::ErrorKind::NotFound => Error::NotFound {
                    what: "output",
                    id: format!("{}/{index}", call.param("job_id")),
                },
                _ => Error::Internal {
                    detail: format!("kept output {} cannot be read: {err}", kept.path.display()),
                },
            };
            let file = std::fs::File::open(&kept.path).map_err(missing)?;
            let len = file.metadata().map_err(missing)?.len();
            if len != kept.bytes {
                return Err(Error::CorruptData {
                    detail: format!(
                        "kept output {} has {len} bytes, {} recorded",
                        kept.path.display(),
                        kept.bytes
                    ),
                });
            }
            let left_secs = (kept.expires_at - gate.clock().now()) / 1_000;
            (
                Response::file(200, kept.mime, file, len),
                left_secs.clamp(0, OUTPUT_MAX_AGE_SECS_MAX),
            )
        }
    };
    response
        .headers
        .push(("Cache-Control", format!("private, max-age={max_age}")));
    // An upstream's file is served from our origin: it may run nothing
    // there (an SVG's or an HTML text's scripts stay inert).
    response.headers.push((
        "Content-Security-Policy",
        "sandbox; default-src 'none'".to_owned(),
    ));
    Ok(response)
}

/// `POST /v1/providers/{instance}/webhook`: an upstream's callback,
/// verified by the provider's own signature scheme (no bearer credential).
pub fn provider_webhook(call: &Call) -> Handled {
    let receipt = call.gate().provider_webhook(
        call.param("instance"),
        &call.request.headers,
        &call.request.body,
    )?;
    Ok(Response::json(
        200,
        &serde_json::json!({ "received": true, "applied": receipt.applied }),
    ))
}

/// `POST /api/v1/agents/register`.
pub fn agent_register(call: &Call) -> Handled {
    let registration = call.signed(Gate::register_agent)?;
    Ok(agent_ok(render::registration(&registration)))
}

/// `POST /api/v1/agents/bind` (admin): the owner binds a registration code
/// to the caller's account.
pub fn agent_bind(call: &Call) -> Handled {
    let principal = call.caller()?;
    let body = call.request.json_body()?;
    let code = required_str(&body, "registration_code")?;
    let not_strings = || Error::InvalidRequest {
        field: "allowed_scopes".into(),
        message: "must be an array of strings".into(),
    };
    let scopes = match &body["allowed_scopes"] {
        Value::Null => None,
        Value::Array(items) => Some(
            items
                .iter()
                .map(|s| s.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(not_strings)?,
        ),
        _ => return Err(not_strings()),
    };
    let agent = call.gate().bind_agent_as(principal, code, scopes)?;
    Ok(agent_ok(render::agent(&agent)))
}

/// `POST /api/v1/agents/keys/create` (signed).
pub fn agent_key_create(call: &Call) -> Handled {
    let created = call.signed(Gate::agent_create_key)?;
    Ok(agent_ok(render::created_agent_key(&created)))
}

/// `POST /api/v1/agents/keys/list` (signed).
pub fn agent_keys_list(call: &Call) -> Handled {
    let keys = call.signed(Gate::agent_list_keys)?;
    Ok(agent_ok(render::keys(&keys)))
}

/// `POST /api/v1/agents/keys/revoke` (signed).
pub fn agent_key_revoke(call: &Call) -> Handled {
    let key = call.signed(Gate::agent_revoke_key)?;
    Ok(agent_ok(render::key(&key)))
}

/// `POST /api/v1/agents/auth/token` (bearer: the agent's API key; signed).
pub fn agent_token(call: &Call) -> Handled {
    let key = call.request.bearer()?;
    let grant =
        call.signed(|gate, method, path, body| gate.issue_token(key, method, path, body))?;
    Ok(ok(render::token_with_refresh(&grant)))
}

/// `POST /api/v1/agents/auth/refresh`.
pub fn agent_refresh(call: &Call) -> Handled {
    let body = call.request.json_body()?;
    let grant = call
        .gate()
        .refresh_token(required_str(&body, "refresh_token")?)?;
    Ok(ok(render::token_with_refresh(&grant)))
}

/// `POST /auth/moltbook/exchange`: a Moltbook identity token for a
/// 15-minute access token. An agent not yet bound (and no default account
/// configured) gets 403 `agent_not_bound` with a `registration_code` for
/// its owner to bind.
pub fn moltbook_exchange(call: &Call) -> Handled {
    let token = call.request.identity_token()?;
    match call
        .gate()
        .moltbook_exchange(token.as_deref().unwrap_or(""))?
    {
        ExchangeOutcome::Granted(grant) => Ok(ok(render::token(&grant))),
        ExchangeOutcome::NotBound(registration) => {
            let mut extra = render::registration(&registration);
            extra["hint"] = json!(
                "ask your owner to bind the registration_code to their account \
                 (creditgate agents bind CODE --account ID, or POST /api/v1/agents/bind \
                 with an admin key), then exchange again"
            );
            let refusal = Error::AgentNotBound {
                agent_id: registration.agent_id,
            };
            Ok(rynjer::error_with(&refusal, extra))
        }
    }
}

/// `GET /agent/openapi.json`: the document as this instance is now (its
/// honoured catalogs, the routes that are on).
pub fn openapi(call: &Call) -> Handled {
    let live = docs::Live {
        catalogs: call.gate().honoured_catalogs()?,
        moltbook: call.gate().identity_exchange_enabled(MOLTBOOK_PROVIDER),
    };
    let doc = docs::openapi(&call.state.public_base_url, &live);
    Ok(Response::json(200, &doc))
}

/// `GET /llms.txt` and `GET /agent/llms.txt`.
pub fn llms(call: &Call) -> Handled {
    let gate = call.gate();
    let version = gate.active_price_version()?;
    let defaults: Vec<(&str, String)> = ["image", "video", "chat"]
        .into_iter()
        .map(|product| {
            let model = gate
                .default_model(product)
                .unwrap_or_else(|err| format!("none ({err})"));
            (product, model)
        })
        .collect();
    let text = docs::llms_txt(
        &call.state.public_base_url,
        version.as_deref(),
        &defaults,
        gate.self_registration().is_some(),
    );
    Ok(Response::bytes(
        200,
        "text/plain; charset=utf-8",
        text.into_bytes(),
    ))
}

/// `GET /healthz`: the database answers and the job workers are not
/// failing (else 503 `workers_failing` with the reason).
pub fn health(call: &Call) -> Handled {
    call.gate().worker_health().check()?;
    let version = call.gate().active_price_version()?;
    Ok(ok(json!({ "status": "ok", "price_version": version })))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::http::handle;
    use crate::http::request::{Request, State, MOLTBOOK_IDENTITY_HEADER};
    use crate::http::test_support;
    use creditgate::identity::{IdentityVerifier, VerifiedIdentity};

    /// A verifier that vouches for any token as the agent named by it, and
    /// remembers the tokens it was asked about.
    #[derive(Debug, Default)]
    struct Vouching {
        asked: Mutex<Vec<String>>,
    }

    impl IdentityVerifier for Vouching {
        fn provider(&self) -> &'static str {
            "moltbook"
        }

        fn verify(&self, identity_token: &str) -> creditgate::Result<VerifiedIdentity> {
            let token = creditgate::identity::external::check_token("moltbook", identity_token)?;
            self.asked.lock().expect("lock").push(token.to_owned());
            Ok(VerifiedIdentity {
                external_id: token.to_owned(),
                name: token.to_owned(),
                karma: None,
                owner_handle: None,
            })
        }
    }

    /// A succeeded fixture job on `clock` whose output 0 is a file kept in
    /// `store` (as the worker records one): (job id, output token).
    fn job_with_kept_output(
        gate: &Gate,
        clock: &creditgate::ManualClock,
        db: &std::path::Path,
        store: &creditgate::media::FileMediaStore,
        bytes: &[u8],
    ) -> (String, String) {
        use creditgate::media::MediaStore;
        let account = test_support::account(gate, "a");
        gate.grant("g", &account, rust_decimal::Decimal::from(100), "")
            .expect("grant");
        let job = gate
            .submit(
                &account,
                &json!({"request_id": "r", "model": "nano-banana-pro", "prompt": "x"}),
            )
            .expect("submit")
            .job;
        for _ in 0..200 {
            gate.run_due_work(8).expect("step");
            clock.advance(std::time::Duration::from_secs(1));
        }
        let job = gate.job(&job.id).expect("job");
        assert_eq!(job.status, creditgate::JobStatus::Succeeded);
        let mut kept = store
            .keep(
                &job.id,
                "image",
                &[creditgate::providers::Artifact::Inline {
                    bytes: bytes.to_vec(),
                    mime: "image/png".into(),
                }],
            )
            .expect("kept");
        let url = format!("{}/0/{}", gate.output_url_base(&job), kept[0].name);
        rusqlite::Connection::open(db)
            .expect("raw")
            .execute(
                "UPDATE jobs SET outputs = ?1 WHERE id = ?2",
                rusqlite::params![
                    json!([{"url": url, "mime": "image/png"}]).to_string(),
                    job.id
                ],
            )
            .expect("tamper: a kept output");
        // As if it had been downloaded: the operator sees where from.
        kept[0].upstream_url = Some("https://cdn.example/signed/x.png?sig=1".into());
        gate.record_kept_for_tests(&job.id, &kept)
            .expect("recorded");
        (job.id, job.output_token)
    }

    #[test]
    fn a_kept_output_streams_from_disk_until_its_retention_passes_then_answers_410() {
        use creditgate::media::{FileMediaStore, MediaSettings};
        use std::io::Read;
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("files.db");
        let clock = Arc::new(creditgate::ManualClock::new(test_support::TEST_NOW_MS));
        let store =
            Arc::new(FileMediaStore::open(MediaSettings::beside(&db)).expect("media store"));
        let day_ms = 86_400_000;
        let gate = Gate::open(&creditgate::StoreOptions::new(&db), clock.clone())
            .expect("open")
            .with_media_store(store.clone(), day_ms)
            .expect("retention");
        gate.import_catalog(crate::serve::SHIPPED_CATALOG)
            .expect("catalog");
        let png = b"\x89PNG\r\n\x1a\n-a-kept-output";
        let (id, token) = job_with_kept_output(&gate, &clock, &db, &store, png);
        let job = gate.job(&id).expect("job");
        let operator = render::job(&job, JobReader::Operator(&gate));
        assert_eq!(
            operator["kept_files"][0]["upstream_url"],
            "https://cdn.example/signed/x.png?sig=1"
        );
        assert_eq!(operator["kept_files"][0]["bytes"], png.len());
        let owner = render::job(&job, JobReader::Owner).to_string();
        assert!(
            !owner.contains("cdn.example"),
            "agents never see it: {owner}"
        );
        assert!(
            owner.contains(&format!("/v1/files/{id}/{token}/0/0.png")),
            "{owner}"
        );
        let state = test_support::state(gate);
        let get = || {
            handle(
                &state,
                &Request {
                    method: "GET".into(),
                    path: format!("/v1/files/{id}/{token}/0/0.png"),
                    ..Request::default()
                },
            )
        };
        let response = get();
        assert_eq!(response.status, 200);
        assert_eq!(response.content_type, "image/png");
        assert!(response.body.is_empty(), "not read into memory");
        let file = response.file.clone().expect("streamed from a file");
        assert_eq!(file.len, png.len() as u64);
        let mut streamed = Vec::new();
        (&*file.file).read_to_end(&mut streamed).expect("read");
        assert_eq!(streamed, png);
        let header = |response: &Response, name: &str| {
            response
                .headers
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.clone())
        };
        assert_eq!(
            header(&response, "Cache-Control").as_deref(),
            Some("private, max-age=3600")
        );
        assert!(
            header(&response, "Content-Security-Policy").is_some_and(|csp| csp.contains("sandbox"))
        );
        // Near the end of its retention, caches keep it no longer than that.
        clock.advance(std::time::Duration::from_millis(day_ms as u64 - 10_000));
        assert_eq!(
            header(&get(), "Cache-Control").as_deref(),
            Some("private, max-age=10")
        );
        clock.advance(std::time::Duration::from_secs(10));
        let gone = get();
        assert_eq!(gone.status, 410);
        let body: Value = serde_json::from_slice(&gone.body).expect("json");
        assert_eq!(body["code"], 410);
        assert_eq!(body["data"]["error"], "output_expired");
        assert!(
            body["message"]
                .as_str()
                .unwrap_or("")
                .contains("retention period"),
            "{body}"
        );
        // A wrong token stays a 404, expired or not.
        let wrong = handle(
            &state,
            &Request {
                method: "GET".into(),
                path: format!("/v1/files/{id}/nope/0/0.png"),
                ..Request::default()
            },
        );
        assert_eq!(wrong.status, 404);
    }

    fn exchange(state: &State, header: Option<&str>, body: &str) -> (u16, Value) {
        let mut request = Request {
            method: "POST".into(),
            path: "/auth/moltbook/exchange".into(),
            body: body.as_bytes().to_vec(),
            ..Request::default()
        };
        if let Some(token) = header {
            request
                .headers
                .push((MOLTBOOK_IDENTITY_HEADER.into(), token.into()));
        }
        test_support::answer(state, &request)
    }

    #[test]
    fn the_identity_header_wins_over_the_body() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = test_support::gate(dir.path(), "h.db");
        let account = test_support::account(&plain, "pool");
        let verifier = Arc::new(Vouching::default());
        let gate = plain.with_identity_verifier(verifier.clone(), Some(account.clone()));
        let state = test_support::state(gate);
        let asked = || verifier.asked.lock().expect("lock").clone();

        let body = r#"{"identity_token":"from-body"}"#;
        let (status, both) = exchange(&state, Some("from-header"), body);
        assert_eq!(status, 200, "{both}");
        assert_eq!(asked(), ["from-header"], "the header wins");
        assert_eq!(both["code"], 0);
        assert_eq!(both["data"]["token_type"], "Bearer");
        assert_eq!(both["data"]["expires_in"], 900);
        assert_eq!(both["data"]["account_id"], account.as_str());
        assert!(both["data"]["access_token"].is_string());
        assert!(both["data"]["scopes"].is_array());

        // With the header, the body is not read: even a broken one.
        assert_eq!(exchange(&state, Some("from-header"), "{not json").0, 200);
        // A blank header does not count: the body is used.
        let (status, _) = exchange(&state, Some("  "), body);
        assert_eq!(status, 200);
        assert_eq!(asked().last().map(String::as_str), Some("from-body"));

        let (status, none) = exchange(&state, None, "");
        assert_eq!(
            (status, none["data"]["error"].as_str()),
            (401, Some("unauthorized"))
        );
        let (status, wrong) = exchange(&state, None, r#"{"identity_token": 7}"#);
        assert_eq!(
            (status, wrong["data"]["field"].as_str()),
            (400, Some("identity_token"))
        );
    }

    /// A gate with the shipped catalog and an account with a key for
    /// images, behind a state the socket-free `handle` serves.
    fn served() -> (tempfile::TempDir, State, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let gate = test_support::gate(dir.path(), "s.db");
        let account = test_support::account(&gate, "agent");
        gate.grant("seed", &account, 100_000.into(), "")
            .expect("grant");
        let (_, key) = gate
            .create_api_key(&account, "k", &["image".to_owned()], None)
            .expect("key");
        let state = test_support::state(gate);
        (dir, state, key)
    }

    fn call(state: &State, method: &str, path: &str, key: &str, body: &str) -> (u16, Value) {
        let request = Request {
            method: method.into(),
            path: path.into(),
            headers: vec![("authorization".into(), format!("Bearer {key}"))],
            body: body.as_bytes().to_vec(),
            request_id: "req-test".into(),
            ..Request::default()
        };
        test_support::answer(state, &request)
    }

    #[test]
    fn a_full_disk_answers_507_insufficient_storage_and_submits_succeed_when_space_returns() {
        let (_dir, state, key) = served();
        let store = state.gate.store_for_tests();
        store
            .write(|tx| {
                let pages: i64 = tx.pragma_query_value(None, "page_count", |r| r.get(0))?;
                Ok(tx.pragma_update(None, "max_page_count", pages)?)
            })
            .expect("fill the disk");
        let body = |i: usize| {
            json!({"request_id": format!("r{i}"), "model": "z-image", "prompt": "x".repeat(2_000)})
                .to_string()
        };
        let mut refused = None;
        for i in 0..500 {
            let (status, answer) = call(&state, "POST", "/v1/generate", &key, &body(i));
            if status != 200 {
                refused = Some((i, status, answer));
                break;
            }
        }
        let (at, status, answer) = refused.expect("the disk fills up");
        assert_eq!(status, 507, "{answer}");
        assert_eq!(answer["code"], 507);
        assert_eq!(answer["data"]["error"], "insufficient_storage");

        store
            .write(|tx| Ok(tx.pragma_update(None, "max_page_count", 1_073_741_823)?))
            .expect("space returns");
        let (status, answer) = call(&state, "POST", "/v1/generate", &key, &body(at));
        assert_eq!(status, 200, "the server recovered by itself: {answer}");
        assert!(state.gate.verify_ledger().expect("verify").is_ok());
    }

    #[test]
    fn healthz_says_why_while_the_workers_keep_failing() {
        let (_dir, state, _) = served();
        assert_eq!(call(&state, "GET", "/healthz", "", "").0, 200);
        state
            .gate
            .store_for_tests()
            .write(|tx| Ok(tx.execute_batch("DROP INDEX jobs_due")?))
            .expect("break the worker's query");
        for _ in 0..creditgate::FAILING_STEPS_UNHEALTHY {
            assert!(state.gate.run_due_work(8).is_err());
        }
        let (status, answer) = call(&state, "GET", "/healthz", "", "");
        assert_eq!(status, 503, "{answer}");
        assert_eq!(answer["data"]["error"], "workers_failing");
        assert!(
            answer["data"]["reason"]
                .as_str()
                .is_some_and(|why| why.contains("jobs_due")),
            "{answer}"
        );
        assert!(answer["message"]
            .as_str()
            .unwrap_or("")
            .contains("jobs_due"));
    }
}
