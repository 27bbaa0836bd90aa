//! Black-box tests of plan tiers through the real binary: the `plans` and
//! `accounts set-plan` commands (the shipped tiers, editing, the default
//! plan, a warning for a plan that does not exist), and over HTTP a plan's
//! daily cap answered 429 `plan_limit_reached` with the reset time, with
//! `X-RateLimit-*` headers for the cap on generate and for the
//! per-credential rate limit elsewhere.

use std::time::{SystemTime, UNIX_EPOCH};

use creditgate_tests::{text_at, Sandbox};
use serde_json::{json, Value};

fn sandbox() -> Sandbox {
    Sandbox::new(env!("CARGO_BIN_EXE_creditgate"))
}

const DAY_SECS: u64 = 86_400;

/// The Unix second of the next UTC midnight.
fn next_midnight_secs() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs();
    (now / DAY_SECS + 1) * DAY_SECS
}

fn plan<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["plans"]
        .as_array()
        .expect("plans")
        .iter()
        .find(|p| p["name"] == json!(name))
        .unwrap_or_else(|| panic!("no plan {name} in {list}"))
}

#[test]
fn plans_are_listed_edited_assigned_and_defaulted_from_the_cli() {
    let sb = sandbox();
    // `plans list` only reads: the database must exist first.
    let first = sb.ok(&["accounts", "create", "--name", "first"]);
    assert_eq!(first["plan"], json!("none"));
    let list = sb.ok(&["plans", "list"]);
    assert_eq!(
        plan(&list, "free")["caps"],
        json!({"image": 10, "video": 2, "chat": 50})
    );
    assert_eq!(
        plan(&list, "pro")["caps"],
        json!({"image": 200, "video": 50})
    );
    assert_eq!(plan(&list, "enterprise")["caps"], json!({}));
    let text = sb.run(&["plans", "list"]);
    assert!(
        text.stdout.contains("free\tchat=50 image=10 video=2"),
        "{text:?}"
    );

    let tiny = sb.ok(&[
        "plans", "set", "tiny", "--cap", "image=2", "--cap", "video=1",
    ]);
    assert_eq!(tiny["caps"], json!({"image": 2, "video": 1}));
    let tiny = sb.ok(&["plans", "set", "tiny", "--cap", "video=unlimited"]);
    assert_eq!(tiny["caps"], json!({"image": 2}), "unlimited removes a cap");
    let bad = sb.json(&["plans", "set", "tiny", "--cap", "image=many"]);
    assert_eq!(bad.code, 2, "a malformed cap is a usage error: {bad:?}");
    let reserved = sb.json(&["plans", "set", "none"]);
    assert_eq!(reserved.code, 1, "{reserved:?}");
    assert_eq!(reserved.json["error"], json!("invalid_request"));

    // Without a default plan, an account created without one has no plan.
    let plain = sb.ok(&["accounts", "create", "--name", "plain"]);
    assert_eq!(plain["plan"], json!("none"));
    let planned = sb.ok(&["accounts", "create", "--name", "p", "--plan", "free"]);
    assert_eq!(planned["plan"], json!("free"));
    assert!(planned.get("warning").is_none());
    // A plan that is not a plan is kept, with a warning: no caps.
    let gold = sb.json(&["accounts", "create", "--name", "g", "--plan", "gold"]);
    assert_eq!(gold.code, 0, "{gold:?}");
    assert_eq!(gold.json["plan"], json!("gold"));
    assert!(
        gold.stderr
            .contains("warning: plan gold is not a known plan"),
        "{gold:?}"
    );
    let id = text_at(&planned, "/id");
    let moved = sb.ok(&["accounts", "set-plan", &id, "tiny"]);
    assert_eq!(moved["plan"], json!("tiny"));
    let missing = sb.json(&["accounts", "set-plan", "acct_missing", "tiny"]);
    assert_eq!(missing.code, 1);
    assert_eq!(missing.json["error"], json!("not_found"));

    sb.ok(&["plans", "default", "free"]);
    assert_eq!(
        plan(&sb.ok(&["plans", "list"]), "free")["default"],
        json!(true)
    );
    let defaulted = sb.ok(&["accounts", "create", "--name", "d"]);
    assert_eq!(defaulted["plan"], json!("free"));
    assert_eq!(sb.json(&["plans", "default", "gold"]).code, 1);
    sb.ok(&["plans", "default", "--none"]);
    let plain = sb.ok(&["accounts", "create", "--name", "plain2"]);
    assert_eq!(plain["plan"], json!("none"));
}

#[test]
fn a_used_up_daily_cap_is_429_with_the_reset_time_and_rate_limit_headers() {
    let sb = sandbox();
    let server = sb.serve(&["--rate-limit-per-sec", "50", "--rate-limit-burst", "100"]);
    let key = server.demo_key.clone().expect("first run prints a key");
    let account = sb.first_account();
    sb.ok(&["plans", "set", "tiny", "--cap", "image=2"]);
    sb.ok(&["accounts", "set-plan", &account, "tiny"]);
    let reset = next_midnight_secs();

    // The per-credential rate limit's numbers on a v1 answer.
    let balance = server.get("/v1/credits/balance", &key);
    assert_eq!(balance.status, 200);
    assert_eq!(balance.header("x-ratelimit-limit"), Some("100"));
    let remaining: u64 = balance
        .header("x-ratelimit-remaining")
        .expect("remaining")
        .parse()
        .expect("a number");
    assert!(remaining < 100, "{remaining}");
    assert!(balance.header("x-ratelimit-reset").is_some());

    // On generate: the product's daily cap.
    let body = |id: &str| json!({"request_id": id, "model": "google/nano-banana", "prompt": "a lighthouse"});
    for (i, left) in [(0, "1"), (1, "0")] {
        let answer = server.post("/v1/generate", &key, &body(&format!("img{i}")));
        assert_eq!(answer.status, 200, "{}", answer.json());
        assert_eq!(answer.header("x-ratelimit-limit"), Some("2"));
        assert_eq!(answer.header("x-ratelimit-remaining"), Some(left));
        let at: u64 = answer
            .header("x-ratelimit-reset")
            .expect("reset")
            .parse()
            .expect("secs");
        assert!(at == reset || at == reset + DAY_SECS, "{at} vs {reset}");
    }
    // A replay answers the job again and counts nothing more.
    let replay = server.post("/v1/generate", &key, &body("img0"));
    assert_eq!(replay.status, 200);
    assert_eq!(replay.header("x-ratelimit-remaining"), Some("0"));

    let refused = server.post("/v1/generate", &key, &body("img2"));
    let answer = refused.json();
    assert_eq!(refused.status, 429, "{answer}");
    assert_eq!(answer["code"], json!(429));
    assert_eq!(answer["data"]["error"], json!("plan_limit_reached"));
    assert_eq!(answer["data"]["plan"], json!("tiny"));
    assert_eq!(answer["data"]["product"], json!("image"));
    assert_eq!(
        (
            answer["data"]["limit"].clone(),
            answer["data"]["used"].clone()
        ),
        (json!(2), json!(2))
    );
    assert!(
        answer["data"]["reset_at"]
            .as_str()
            .is_some_and(|at| at.ends_with("T00:00:00.000Z")),
        "{answer}"
    );
    assert_eq!(refused.header("x-ratelimit-limit"), Some("2"));
    assert_eq!(refused.header("x-ratelimit-remaining"), Some("0"));
    let wait: u64 = refused
        .header("retry-after")
        .expect("retry-after")
        .parse()
        .expect("secs");
    assert!((1..=DAY_SECS).contains(&wait), "{wait}");
    // Nothing was held for it: two images of 8 credits are pending.
    let balance = server.get("/v1/credits/balance", &key).json();
    assert_eq!(balance["data"]["pending"], json!(16), "{balance}");
    // Videos are not capped by this plan.
    let video = server.post(
        "/v1/generate",
        &key,
        &json!({"request_id": "vid", "model": "sora-2", "prompt": "waves"}),
    );
    assert_eq!(video.status, 200, "{}", video.json());
    assert_eq!(
        video.header("x-ratelimit-limit"),
        Some("100"),
        "the rate limit's numbers"
    );
    // A refusal after admission carries the rate limit's numbers too.
    let unknown = server.post(
        "/v1/generate",
        &key,
        &json!({"request_id": "x", "model": "no-such-model", "prompt": "x"}),
    );
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.header("x-ratelimit-limit"), Some("100"));
    drop(server);
    let run = sb.run(&["ledger", "verify"]);
    assert_eq!(run.code, 0, "ledger verify: {}{}", run.stdout, run.stderr);
}
