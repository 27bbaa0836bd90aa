//! Black-box tests of the CLI slice of CONTRACTS.md §7: accounts, grants,
//! balances, `ledger verify`, `--db`/`CREDITGATE_DB`, `--json` shapes and
//! exit codes, and durability of an acknowledged grant across SIGKILL.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use creditgate_tests::{Run, Sandbox};
use serde_json::json;

fn sandbox() -> Sandbox {
    Sandbox::new(env!("CARGO_BIN_EXE_creditgate"))
}

#[test]
fn accounts_grants_and_balances_round_trip_as_json() {
    let sb = sandbox();
    let created = sb.ok(&["accounts", "create", "--name", "Alice", "--plan", "pro"]);
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("acct_"), "{created}");
    assert_eq!(created["plan"], "pro");

    let granted = sb.ok(&[
        "credits",
        "grant",
        "--account",
        &id,
        "--amount",
        "0.0165",
        "--memo",
        "hi",
    ]);
    assert!(granted["id"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(granted["amount"].to_string(), "0.0165", "exact JSON number");
    sb.ok(&["credits", "grant", "--account", &id, "--amount", "20"]);

    let balance = sb.ok(&["credits", "balance", "--account", &id]);
    assert_eq!(balance["available"].to_string(), "20.0165");
    assert_eq!(balance["pending"].to_string(), "0");
    assert_eq!(balance["posted"].to_string(), "20.0165");

    let listed = sb.ok(&["accounts", "list"]);
    assert_eq!(listed["accounts"][0]["id"], json!(id));

    let history = sb.ok(&["credits", "history", "--account", &id]);
    assert_eq!(history["transfers"].as_array().map(Vec::len), Some(2));
    assert_eq!(history["transfers"][0]["amount"].to_string(), "20");

    let verify = sb.run(&["ledger", "verify"]);
    assert_eq!(verify.code, 0, "{verify:?}");
    assert!(
        verify.stdout.starts_with("ledger ok: 2 transfers"),
        "{}",
        verify.stdout
    );
}

#[test]
fn a_grant_with_an_id_is_safe_to_retry() {
    let sb = sandbox();
    let id = sb.account("retry");
    let first = sb.ok(&[
        "credits",
        "grant",
        "--account",
        &id,
        "--amount",
        "5",
        "--id",
        "topup-1",
    ]);
    let again = sb.ok(&[
        "credits",
        "grant",
        "--account",
        &id,
        "--amount",
        "5",
        "--id",
        "topup-1",
    ]);
    assert_eq!(
        (first["replayed"].clone(), again["replayed"].clone()),
        (json!(false), json!(true))
    );
    assert_eq!(again["available"].to_string(), "5");

    let differs = sb.json(&[
        "credits",
        "grant",
        "--account",
        &id,
        "--amount",
        "6",
        "--id",
        "topup-1",
    ]);
    assert_eq!(differs.code, 1);
    assert_eq!(differs.json["error"], "exists_with_different_fields");
    assert_eq!(differs.json["field"], "amount");
    assert_eq!(
        sb.ok(&["credits", "balance", "--account", &id])["available"].to_string(),
        "5"
    );
}

#[test]
fn bad_input_is_a_clear_error_and_moves_nothing() {
    let sb = sandbox();
    let id = sb.account("bad");
    let check = |args: &[&str], code: &str| {
        let run = sb.json(args);
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        assert_eq!(run.json["error"], code, "{args:?}: {run:?}");
        assert!(run.json["message"].as_str().is_some_and(|m| !m.is_empty()));
    };
    for amount in ["-1", "0", "0.0000001", "1e3", "ten", "1000000001"] {
        check(
            &["credits", "grant", "--account", &id, "--amount", amount],
            "invalid_amount",
        );
    }
    check(
        &[
            "credits",
            "grant",
            "--account",
            "acct_missing",
            "--amount",
            "1",
        ],
        "not_found",
    );
    check(
        &["credits", "balance", "--account", "acct_missing"],
        "not_found",
    );
    check(&["accounts", "create", "--name", "   "], "invalid_request");

    let usage = sb.run(&["credits", "grant", "--amount", "1"]);
    assert_eq!(usage.code, 2, "a missing flag is a usage error");
    assert_eq!(sb.run(&["ledger", "verify"]).code, 0);
    assert_eq!(
        sb.ok(&["credits", "balance", "--account", &id])["available"].to_string(),
        "0"
    );
}

#[test]
fn the_database_comes_from_the_flag_or_the_environment() {
    let sb = sandbox();
    let other = sb.dir().join("from-env.db");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_creditgate"));
    command
        .current_dir(sb.dir())
        .env("CREDITGATE_DB", &other)
        .args(["--json", "accounts", "create", "--name", "env"]);
    let run = Run::from(command.output().expect("run"));
    assert_eq!(run.code, 0, "{run:?}");
    assert!(other.exists(), "CREDITGATE_DB was used");
    assert!(!sb.db().exists(), "the flag's database was not touched");

    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_creditgate"));
    command
        .current_dir(sb.dir())
        .env_remove("CREDITGATE_DB")
        .args(["accounts", "list"]);
    assert_eq!(Run::from(command.output().expect("run")).code, 0);
    assert!(
        sb.dir().join("creditgate.db").exists(),
        "the default is ./creditgate.db"
    );
}

#[test]
fn verify_exits_one_and_names_a_tampered_balance() {
    let sb = sandbox();
    let id = sb.account("tamper");
    sb.ok(&["credits", "grant", "--account", &id, "--amount", "10"]);
    let conn = rusqlite::Connection::open(sb.db()).expect("raw open");
    conn.execute(
        "UPDATE ledger_accounts SET credits_posted = credits_posted + 7 WHERE kind = 'wallet'",
        [],
    )
    .expect("tamper");
    drop(conn);
    let run = sb.run(&["ledger", "verify"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("balance_replay") && run.stdout.contains(&id),
        "{}",
        run.stdout
    );
    let run = sb.json(&["ledger", "verify"]);
    assert_eq!(run.json["ok"], json!(false));
}

#[test]
fn an_acknowledged_grant_survives_sigkill() {
    let sb = sandbox();
    let id = sb.account("durable");
    // Many writers at once; kill them all at staggered moments. Every grant
    // whose process printed its acknowledgement must be in the database.
    let mut children: Vec<_> = (0..24)
        .map(|i| {
            sb.command(&[
                "--json",
                "credits",
                "grant",
                "--account",
                &id,
                "--amount",
                "1",
                "--id",
                &format!("kill-{i}"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn")
        })
        .collect();
    let started = Instant::now();
    let mut acknowledged = Vec::new();
    for (i, child) in children.iter_mut().enumerate() {
        // Stagger: some finish, some die mid-write.
        std::thread::sleep(Duration::from_millis((i as u64 % 4) * 3));
        let _ = child.kill();
        let status = child.wait().expect("wait");
        let mut out = String::new();
        if let Some(mut stdout) = child.stdout.take() {
            let _ = stdout.read_to_string(&mut out);
        }
        if status.success() {
            let ack: serde_json::Value = serde_json::from_str(out.trim()).expect("ack is JSON");
            acknowledged.push(ack["id"].as_str().expect("transfer id").to_owned());
        }
    }
    assert!(started.elapsed() < Duration::from_secs(60));
    eprintln!(
        "{} of 24 grants were acknowledged before the kill",
        acknowledged.len()
    );

    let history = sb.ok(&["credits", "history", "--account", &id, "--limit", "200"]);
    let stored: Vec<&str> = history["transfers"]
        .as_array()
        .expect("transfers")
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    for ack in &acknowledged {
        assert!(
            stored.contains(&ack.as_str()),
            "acknowledged grant {ack} was lost"
        );
    }
    let balance = sb.ok(&["credits", "balance", "--account", &id]);
    assert_eq!(balance["posted"].to_string(), stored.len().to_string());
    let verify = sb.run(&["ledger", "verify"]);
    assert_eq!(verify.code, 0, "{verify:?}");
}

#[test]
fn a_backup_is_a_consistent_copy_that_verifies() {
    let sb = sandbox();
    let id = sb.account("backup");
    sb.ok(&["credits", "grant", "--account", &id, "--amount", "12.5"]);
    let dest = sb.dir().join("copy.db");
    let made = sb.ok(&["backup", &dest.display().to_string()]);
    assert_eq!(made["path"], json!(dest.display().to_string()));
    let copy = std::process::Command::new(env!("CARGO_BIN_EXE_creditgate"))
        .arg("--db")
        .arg(&dest)
        .args(["--json", "credits", "balance", "--account", &id])
        .output()
        .expect("read the copy");
    let balance: serde_json::Value = serde_json::from_slice(&copy.stdout).expect("json");
    assert_eq!(balance["available"].to_string(), "12.5");
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_creditgate"))
        .arg("--db")
        .arg(&dest)
        .args(["ledger", "verify"])
        .status()
        .expect("verify the copy");
    assert!(verify.success());
    // Refuses to overwrite.
    assert_eq!(sb.json(&["backup", &dest.display().to_string()]).code, 1);
}
