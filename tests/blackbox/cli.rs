//! Black-box tests of the CLI slice of CONTRACTS.md §7: accounts, grants,
//! balances, `ledger verify`, `--db`/`CREDITGATE_DB`, `--json` shapes and
//! exit codes, and durability of an acknowledged grant across SIGKILL.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use creditgate_tests::{text_at, Run, Sandbox};
use serde_json::json;

/// The arguments of `credits grant` for `account` and `amount`, then `extra`.
fn grant<'a>(account: &'a str, amount: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["credits", "grant", "--account", account, "--amount", amount];
    args.extend_from_slice(extra);
    args
}

/// What `credits balance` says `account` has available, as printed.
fn available(sb: &Sandbox, account: &str) -> String {
    sb.ok(&["credits", "balance", "--account", account])["available"].to_string()
}

fn sandbox() -> Sandbox {
    Sandbox::new(env!("CARGO_BIN_EXE_creditgate"))
}

#[test]
fn accounts_grants_and_balances_round_trip_as_json() {
    let sb = sandbox();
    let created = sb.ok(&["accounts", "create", "--name", "Alice", "--plan", "pro"]);
    let id = text_at(&created, "/id");
    assert!(id.starts_with("acct_"), "{created}");
    assert_eq!(created["plan"], "pro");

    let granted = sb.ok(&grant(&id, "0.0165", &["--memo", "hi"]));
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
fn promotional_credits_show_in_balances_and_are_spent_first() {
    let sb = sandbox();
    let id = text_at(&sb.ok(&["accounts", "create", "--name", "Promo"]), "/id");
    sb.ok(&grant(&id, "10", &[]));
    let granted = sb.ok(&grant(
        &id,
        "20",
        &["--expires-in-days", "30", "--memo", "launch"],
    ));
    assert_eq!(granted["promotional"].to_string(), "20");
    assert_eq!(granted["paid"].to_string(), "10");
    let balance = sb.ok(&["credits", "balance", "--account", &id]);
    assert_eq!(balance["expiring"][0]["credits"].to_string(), "20");
    assert!(balance["expiring"][0]["expires_at"].as_str().is_some());
    // Over HTTP too; a job's hold draws the promotional credits first.
    let key = text_at(
        &sb.ok(&["keys", "create", "--account", &id, "--scope", "image"]),
        "/key",
    );
    let server = sb.serve(&[]);
    let submitted = server.post(
        "/v1/generate",
        &key,
        &json!({"request_id": "p1", "model": "z-image", "prompt": "a cat"}),
    );
    assert_eq!(submitted.status, 200, "{}", submitted.json());
    let balance = server.get("/v1/credits/balance", &key).json()["data"].clone();
    assert_eq!(balance["paid"].to_string(), "10", "{balance}");
    assert_eq!(balance["promotional"].to_string(), "0", "{balance}");
    assert_eq!(
        balance["expiring"][0]["credits"].to_string(),
        "20",
        "held, not gone"
    );
    let bad = sb.run(&grant(&id, "1", &["--expires-in-days", "0"]));
    assert_eq!(bad.code, 2, "{bad:?}");
    drop(server);
    let verify = sb.run(&["ledger", "verify"]);
    assert_eq!(verify.code, 0, "{verify:?}");
}

#[test]
fn a_grant_with_an_id_is_safe_to_retry() {
    let sb = sandbox();
    let id = sb.account("retry");
    let first = sb.ok(&grant(&id, "5", &["--id", "topup-1"]));
    let again = sb.ok(&grant(&id, "5", &["--id", "topup-1"]));
    assert_eq!(
        (first["replayed"].clone(), again["replayed"].clone()),
        (json!(false), json!(true))
    );
    assert_eq!(again["available"].to_string(), "5");

    let differs = sb.json(&grant(&id, "6", &["--id", "topup-1"]));
    assert_eq!(differs.code, 1);
    assert_eq!(differs.json["error"], "exists_with_different_fields");
    assert_eq!(differs.json["field"], "amount");
    assert_eq!(available(&sb, &id), "5");
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
    assert_eq!(available(&sb, &id), "0");
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
        .args(["accounts", "create", "--name", "default"]);
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
            let kill = format!("kill-{i}");
            sb.command(&[vec!["--json"], grant(&id, "1", &["--id", &kill])].concat())
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
            acknowledged.push(text_at(&ack, "/id"));
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

/// The files in `dir`, sorted.
fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// A sandbox whose database exists and holds the shipped Rynjer catalog.
fn with_catalog() -> Sandbox {
    let sb = sandbox();
    sb.ok(&["prices", "import", &catalog("rynjer.json")]);
    sb
}

fn catalog(name: &str) -> String {
    format!("{}/../fixtures/catalogs/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn read_commands_on_a_missing_database_exit_2_and_create_nothing() {
    let sb = sandbox();
    let typo = sb.dir().join("creditgaet.db");
    let typo_arg = typo.display().to_string();
    let dest = sb.dir().join("copy.db").display().to_string();
    let commands: Vec<Vec<&str>> = vec![
        vec!["ledger", "verify"],
        vec!["credits", "balance", "--account", "acct_x"],
        vec!["credits", "history", "--account", "acct_x"],
        vec!["accounts", "list"],
        vec!["jobs", "list"],
        vec!["jobs", "show", "job_x"],
        vec!["prices", "list"],
        vec!["keys", "list", "--account", "acct_x"],
        vec!["backup", &dest],
    ];
    let created_nothing = |args: &[&str]| {
        assert_eq!(
            files_in(sb.dir()),
            Vec::<String>::new(),
            "{args:?} created a file"
        );
    };
    for args in commands {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_creditgate"));
        command.arg("--db").arg(&typo).args(&args);
        let run = Run::from(command.output().expect("run"));
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert_eq!(
            run.stderr.trim(),
            format!("error: no creditgate database at {typo_arg}"),
            "{args:?}"
        );
        assert!(run.stdout.is_empty(), "{args:?}: {run:?}");
        created_nothing(&args);

        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_creditgate"));
        command.arg("--db").arg(&typo).arg("--json").args(&args);
        let run = Run::from(command.output().expect("run"));
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert_eq!(
            run.json["message"],
            json!(format!("no creditgate database at {typo_arg}"))
        );
        created_nothing(&args);
    }
}

#[test]
fn database_errors_say_once_what_is_wrong() {
    let sb = sandbox();
    let dir = sb.dir();
    let run_on = |db: &std::path::Path, args: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_creditgate"));
        command.arg("--db").arg(db).args(args);
        Run::from(command.output().expect("run"))
    };
    let expect = |db: &std::path::Path, args: &[&str], wanted: &str| {
        let run = run_on(db, args);
        assert_eq!(run.code, 2, "{db:?} {args:?}: {run:?}");
        let message = run.stderr.trim();
        assert_eq!(message.lines().count(), 1, "said once: {message}");
        assert!(message.starts_with("error: "), "{message}");
        assert!(message.contains(wanted), "{db:?} {args:?}: {message}");
        assert!(
            message.contains(&db.display().to_string()),
            "names the path: {message}"
        );
    };
    let create = ["accounts", "create", "--name", "x"];
    let list = ["accounts", "list"];

    expect(dir, &create, "is a directory");
    expect(dir, &list, "is a directory");
    expect(
        &dir.join("no-such-folder").join("a.db"),
        &create,
        "its folder does not exist",
    );
    assert!(!dir.join("no-such-folder").exists());

    let readonly = dir.join("readonly.db");
    assert_eq!(run_on(&readonly, &create).code, 0);
    let mut permissions = std::fs::metadata(&readonly).expect("meta").permissions();
    permissions.set_readonly(true);
    std::fs::set_permissions(&readonly, permissions).expect("chmod");
    expect(&readonly, &create, "is read-only");
    expect(&readonly, &list, "is read-only");

    let junk = dir.join("notes.txt");
    std::fs::write(
        &junk,
        "shopping list: milk, eggs, flour, sugar, butter\n".repeat(20),
    )
    .expect("write");
    expect(&junk, &create, "is not a creditgate database");
    expect(&junk, &["ledger", "verify"], "is not a creditgate database");

    let other = dir.join("other.sqlite");
    let conn = rusqlite::Connection::open(&other).expect("open");
    conn.execute_batch("CREATE TABLE recipes (name TEXT)")
        .expect("create");
    drop(conn);
    expect(&other, &create, "is not a creditgate database");
    let conn = rusqlite::Connection::open(&other).expect("open");
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .expect("count");
    assert_eq!(tables, 1, "someone else's database was left alone");
    drop(conn);

    let newer = dir.join("newer.db");
    assert_eq!(run_on(&newer, &create).code, 0);
    let conn = rusqlite::Connection::open(&newer).expect("open");
    conn.pragma_update(None, "user_version", 999).expect("bump");
    drop(conn);
    expect(&newer, &create, "newer than this build supports");
    expect(
        &newer,
        &["ledger", "verify"],
        "newer than this build supports",
    );
}

#[test]
fn an_unreadable_input_file_is_exit_2() {
    let sb = with_catalog();
    let missing = sb.dir().join("missing.json").display().to_string();
    let run = sb.run(&["prices", "import", &missing]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("cannot read"), "{run:?}");
    let run = sb.run(&["prices", "estimate", &format!("@{missing}")]);
    assert_eq!(run.code, 2, "{run:?}");
    let run = sb.json(&["prices", "import", &missing]);
    assert_eq!(
        (run.code, run.json["error"].clone()),
        (2, json!("unreadable_input"))
    );
    // A refusal is still 1.
    let bad = sb.dir().join("bad.json");
    std::fs::write(&bad, "{}").expect("write");
    assert_eq!(
        sb.run(&["prices", "import", &bad.display().to_string()])
            .code,
        1
    );
}

#[test]
fn a_storage_failure_is_exit_2_not_a_refusal() {
    let sb = sandbox();
    sb.account("backup");
    let dest = sb.dir().join("no-such-folder").join("copy.db");
    let run = sb.json(&["backup", &dest.display().to_string()]);
    assert_eq!(run.code, 2, "the command could not run: {run:?}");
    assert_eq!(run.json["error"], "storage_error");
}

#[test]
fn credits_history_is_a_table_that_pages_and_empty_lists_say_so() {
    let sb = with_catalog();
    assert_eq!(
        sb.run(&["accounts", "list"]).stdout.trim(),
        "no accounts yet (create one with `creditgate accounts create --name NAME`)"
    );
    assert_eq!(sb.run(&["jobs", "list"]).stdout.trim(), "no jobs");
    let id = sb.account("history");
    let empty = sb.run(&["credits", "history", "--account", &id]);
    assert_eq!(empty.code, 0);
    assert_eq!(empty.stdout.trim(), format!("no transfers for {id} yet"));
    assert_eq!(
        sb.run(&["keys", "list", "--account", &id]).stdout.trim(),
        format!("no keys for {id}")
    );

    for (i, amount) in ["12.5", "0.0165", "3"].iter().enumerate() {
        sb.ok(&grant(&id, amount, &["--memo", &format!("top-up {i}")]));
    }
    let page = sb.run(&["credits", "history", "--account", &id, "--limit", "2"]);
    assert_eq!(page.code, 0, "{page:?}");
    let lines: Vec<&str> = page.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        4,
        "header, two rows, the next page: {}",
        page.stdout
    );
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["TIME", "DIRECTION", "CREDITS", "KIND", "MEMO"]);
    let first: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        first[1..],
        ["in", "3", "grant", "top-up", "2"],
        "{}",
        lines[1]
    );
    assert!(
        first[0].ends_with('Z') && first[0].contains('T'),
        "an RFC 3339 time"
    );
    let second: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(second[1..], ["in", "0.0165", "grant", "top-up", "1"]);
    let next = lines[3]
        .strip_prefix(&format!(
            "more: creditgate credits history --account {id} --cursor "
        ))
        .unwrap_or_else(|| panic!("the next page's command: {}", lines[3]));
    let rest = sb.run(&[
        "credits",
        "history",
        "--account",
        &id,
        "--limit",
        "2",
        "--cursor",
        next,
    ]);
    let lines: Vec<&str> = rest.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", rest.stdout);
    assert_eq!(
        lines[1].split_whitespace().skip(1).collect::<Vec<_>>(),
        ["in", "12.5", "grant", "top-up", "0"]
    );
}

/// Overwrites the index entry of the transfer `needle` in `index`'s root page
/// of the database at `db` (closed, checkpointed) so that the index no
/// longer matches its table.
fn corrupt_index_entry(db: &std::path::Path, index: &str, needle: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let conn = rusqlite::Connection::open(db).expect("open");
    let (root, page_size): (i64, i64) = conn
        .query_row(
            "SELECT rootpage, (SELECT page_size FROM pragma_page_size()) FROM sqlite_schema WHERE name = ?1",
            [index],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("index root page");
    conn.pragma_update(None, "journal_mode", "DELETE")
        .expect("fold the WAL in");
    drop(conn);
    let offset = ((root - 1) * page_size) as u64;
    let bytes = std::fs::read(db).expect("read");
    let page = &bytes[offset as usize..(offset + page_size as u64) as usize];
    let at = page
        .windows(needle.len())
        .rposition(|w| w == needle)
        .expect("the entry is in the root page");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(db)
        .expect("open for write");
    file.seek(SeekFrom::Start(
        offset + at as u64 + needle.len() as u64 - 1,
    ))
    .expect("seek");
    file.write_all(b"#").expect("damage");
}

#[test]
fn verify_checks_the_file_and_fails_on_damage_with_exit_1() {
    let sb = sandbox();
    let id = sb.account("damaged");
    for i in 0..3 {
        sb.ok(&grant(&id, "5", &["--id", &format!("topup-{i}")]));
    }
    assert_eq!(sb.run(&["ledger", "verify"]).code, 0);
    corrupt_index_entry(&sb.db(), "sqlite_autoindex_transfers_1", b"topup-1");

    let run = sb.run(&["ledger", "verify"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("the database file is damaged"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("integrity_check: row")
            && run
                .stdout
                .contains("missing from index sqlite_autoindex_transfers_1"),
        "{}",
        run.stdout
    );
    let run = sb.json(&["ledger", "verify"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        (run.json["ok"].clone(), run.json["damaged"].clone()),
        (json!(false), json!(true))
    );
    assert_eq!(run.json["violations"][0]["check"], "integrity_check");

    // Damage SQLite cannot even open past: still found (1), and other
    // commands could not run (2).
    let sb = sandbox();
    sb.account("unreadable");
    let conn = rusqlite::Connection::open(sb.db()).expect("open");
    conn.pragma_update(None, "journal_mode", "DELETE")
        .expect("fold the WAL in");
    drop(conn);
    let mut bytes = std::fs::read(sb.db()).expect("read");
    bytes[100] = 0; // the schema b-tree's page type
    std::fs::write(sb.db(), bytes).expect("damage");
    let run = sb.run(&["ledger", "verify"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("is damaged"), "{run:?}");
    assert_eq!(sb.run(&["accounts", "list"]).code, 2);
}

#[test]
fn verify_names_a_dangling_foreign_key() {
    let sb = sandbox();
    let id = sb.account("orphan");
    let key = sb.ok(&["keys", "create", "--account", &id, "--scope", "image"]);
    let conn = rusqlite::Connection::open(sb.db()).expect("open");
    conn.pragma_update(None, "foreign_keys", false)
        .expect("foreign keys off");
    conn.execute("UPDATE api_keys SET account_id = 'acct_gone'", [])
        .expect("tamper with foreign keys off");
    drop(conn);
    let run = sb.run(&["ledger", "verify"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("foreign_key_check: api_keys row") && run.stdout.contains("accounts"),
        "{} (key {})",
        run.stdout,
        key["id"]
    );
}

#[test]
fn a_backup_taken_under_load_passes_the_file_and_ledger_checks() {
    let sb = sandbox();
    let id = sb.account("load");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let (stop, db, id) = (stop.clone(), sb.db(), id.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let status = std::process::Command::new(env!("CARGO_BIN_EXE_creditgate"))
                        .arg("--db")
                        .arg(&db)
                        .args(["--synchronous", "normal"])
                        .args(grant(&id, "1", &["--id", &format!("w{w}-{i}")]))
                        .output()
                        .expect("grant");
                    assert!(status.status.success(), "{status:?}");
                    i += 1;
                }
                i
            })
        })
        .collect();
    let mut copies = Vec::new();
    for n in 0..4 {
        std::thread::sleep(Duration::from_millis(150));
        let dest = sb.dir().join(format!("copy-{n}.db"));
        sb.ok(&["backup", &dest.display().to_string()]);
        copies.push(dest);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let granted: i32 = writers.into_iter().map(|w| w.join().expect("writer")).sum();
    assert!(granted > 0);
    for copy in copies {
        let run = Run::from(
            std::process::Command::new(env!("CARGO_BIN_EXE_creditgate"))
                .arg("--db")
                .arg(&copy)
                .args(["ledger", "verify"])
                .output()
                .expect("verify the copy"),
        );
        assert_eq!(run.code, 0, "{copy:?}: {run:?}");
    }
}

#[test]
fn the_first_run_demo_key_has_the_catalog_products_and_is_not_admin() {
    let sb = sandbox();
    let server = sb.serve(&[]);
    let key = server.demo_key.clone().expect("first run prints a key");
    let account = sb.first_account();
    let keys = sb.ok(&["keys", "list", "--account", &account]);
    assert_eq!(
        keys["keys"][0]["scopes"],
        json!(["chat", "image", "music", "video"]),
        "the Rynjer catalog's products, no admin"
    );
    assert!(
        server.banner.iter().any(|line| line
            == "It may generate with every product of the catalog (chat, image, music, video), not administer."),
        "{:?}",
        server.banner
    );
    let bind = server.post(
        "/api/v1/agents/bind",
        &key,
        &json!({"registration_code": "cg_reg_unknown"}),
    );
    assert_eq!(
        bind.status,
        403,
        "the demo key cannot administer: {:?}",
        bind.json()
    );
    assert_eq!(bind.json()["data"]["error"], "forbidden");
}

#[test]
fn default_keys_can_use_every_product_of_the_active_catalog() {
    let sb = sandbox();
    let server = sb.serve(&["--catalog", &catalog("kiwiwhale.json")]);
    let demo = server.demo_key.clone().expect("demo key");
    let account = sb.first_account();
    let created = sb.ok(&["keys", "create", "--account", &account]);
    assert_eq!(
        created["scopes"],
        json!(["audio", "chat", "image", "tools", "video"]),
        "KiwiWhale's products"
    );
    let key = text_at(&created, "/key");
    // The first-run curl line works as printed with this catalog too.
    let (curl, answer) = server.run_banner_curl();
    assert_eq!(answer["code"], 0, "{curl}: {answer}");
    for (credential, name) in [(&demo, "demo"), (&key, "default")] {
        for (n, model) in ["kiwiwhale/s2-pro/tts", "tools/web-search"]
            .iter()
            .enumerate()
        {
            let answer = server.post(
                "/v1/generate",
                credential,
                &json!({"request_id": format!("{name}-{n}"), "model": model, "prompt": "hello"}),
            );
            assert_eq!(answer.status, 200, "{name} key, {model}: {}", answer.json());
        }
    }
}

#[test]
fn the_readme_shows_what_the_first_run_prints() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let lines: Vec<&str> = readme.lines().collect();
    let first = lines
        .iter()
        .position(|l| l.starts_with("creditgate: first run:"))
        .expect("the README shows the first run");
    let start = lines[..first]
        .iter()
        .rposition(|l| l.starts_with("```"))
        .expect("in a code block")
        + 1;
    let end = first
        + lines[first..]
            .iter()
            .position(|l| l.starts_with("```"))
            .expect("the block ends");
    let sample = &lines[start..end];

    let sb = sandbox();
    let server = sb.serve(&[]);
    let printed: Vec<String> = server
        .banner
        .iter()
        .map(|line| {
            line.replace(&server.base(), "http://127.0.0.1:8080")
                .replace(&sb.db().display().to_string(), "./creditgate.db")
        })
        .collect();
    assert_eq!(
        sample.len(),
        printed.len(),
        "README:\n{}\nprinted:\n{}",
        sample.join("\n"),
        printed.join("\n")
    );
    for (shown, printed) in sample.iter().zip(&printed) {
        assert!(
            matches_sample(shown, printed),
            "README line\n  {shown}\ndoes not match the printed\n  {printed}"
        );
    }
}

/// Whether `printed` is `shown` with each `…` standing for some text.
fn matches_sample(shown: &str, printed: &str) -> bool {
    let parts: Vec<&str> = shown.split('…').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    let Some(mut rest) = printed.strip_prefix(first) else {
        return false;
    };
    if parts.len() == 1 {
        return rest.is_empty();
    }
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// The shipped example providers file.
fn example_providers() -> String {
    format!(
        "{}/../fixtures/providers/example.json",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Every credential variable the example providers file names, each with a
/// fake value no output may ever show.
const EXAMPLE_CREDENTIALS: [(&str, &str); 5] = [
    ("KIE_API_KEY", "kie-fake-3f9c1e"),
    ("FAL_KEY", "fal-fake-8b27d4"),
    ("REPLICATE_API_TOKEN", "r8_fake_51ac0e"),
    ("OPENAI_API_KEY", "sk-fake-c70b2a"),
    ("OPENROUTER_API_KEY", "sk-or-fake-94e6f1"),
];

/// Runs `args` with the example credentials set, except `unset`, and with
/// no providers file from the environment.
fn with_example_credentials(sb: &Sandbox, args: &[&str], unset: Option<&str>) -> Run {
    let mut command = sb.command(args);
    command.env_remove("CREDITGATE_PROVIDERS");
    for (var, value) in EXAMPLE_CREDENTIALS {
        if Some(var) == unset {
            command.env_remove(var);
        } else {
            command.env(var, value);
        }
    }
    Run::from(command.output().expect("run the creditgate binary"))
}

#[test]
fn the_upstream_catalog_imports_with_the_example_providers() {
    let sb = sandbox();
    let catalog = catalog("rynjer-upstreams.json");
    let providers = example_providers();
    let run = with_example_credentials(
        &sb,
        &[
            "--json",
            "prices",
            "import",
            &catalog,
            "--providers",
            &providers,
        ],
        None,
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json["price_version"], "2026-12-01-upstreams", "{run:?}");
    assert_eq!(run.json["active"], true, "{run:?}");
    let listed = sb.ok(&["prices", "list"]);
    assert_eq!(
        listed["price_versions"][0]["price_version"], "2026-12-01-upstreams",
        "{listed}"
    );
    assert_eq!(listed["price_versions"][0]["models"], 20, "{listed}");
}

#[test]
fn the_upstream_catalog_without_providers_is_refused_naming_model_and_provider() {
    let sb = sandbox();
    let catalog = catalog("rynjer-upstreams.json");
    let run = with_example_credentials(&sb, &["--json", "prices", "import", &catalog], None);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.json["error"], "provider_not_configured", "{run:?}");
    // The first model of the catalog, and the instance it names.
    let message = run.json["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("google/nano-banana") && message.contains("kie"),
        "{run:?}"
    );
    // Nothing was stored: there is still no price version.
    let listed = sb.ok(&["prices", "list"]);
    assert_eq!(listed["price_versions"], json!([]), "{listed}");

    // The text form says the same on stderr.
    let run = with_example_credentials(&sb, &["prices", "import", &catalog], None);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("google/nano-banana") && run.stderr.contains("provider kie"),
        "{run:?}"
    );
}

#[test]
fn an_unset_credential_variable_exits_2_naming_it_and_showing_no_secret() {
    let sb = sandbox();
    let catalog = catalog("rynjer-upstreams.json");
    let providers = example_providers();
    for (unset, _) in EXAMPLE_CREDENTIALS {
        for json in [false, true] {
            let mut args = vec!["prices", "import", &catalog, "--providers", &providers];
            if json {
                args.insert(0, "--json");
            }
            let run = with_example_credentials(&sb, &args, Some(unset));
            assert_eq!(run.code, 2, "{unset}: {run:?}");
            let said = format!("{}{}", run.stdout, run.stderr);
            assert!(said.contains(unset), "{unset}: {run:?}");
            for (_, value) in EXAMPLE_CREDENTIALS {
                assert!(
                    !said.contains(value),
                    "{unset}: a secret was shown: {run:?}"
                );
            }
        }
    }
    // It stopped before opening the database: nothing was created.
    assert!(!sb.db().exists(), "a database was created");
}

#[test]
fn providers_check_reports_credits_a_refused_key_and_an_unreachable_upstream() {
    let kie = creditgate_standins::kie::KieStandIn::start("kie-good-key");
    // A port nothing listens on: bound, then dropped.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let sb = Sandbox::new(env!("CARGO_BIN_EXE_creditgate"));
    let file = sb.write(
        "providers.json",
        &serde_json::json!({"providers": {
            "kie": {"kind": "kie", "base_url": kie.base_url(), "credential_env": "TEST_KIE_KEY",
                    "timeout_ms": 2000},
            "kie-wrong": {"kind": "kie", "base_url": kie.base_url(),
                          "credential_env": "TEST_KIE_WRONG", "timeout_ms": 2000},
            "gone": {"kind": "openai", "base_url": format!("http://127.0.0.1:{dead}/v1"),
                     "timeout_ms": 2000, "connect_timeout_ms": 500}
        }})
        .to_string(),
    );
    let run = |json: bool| {
        let mut args = vec![
            "providers",
            "check",
            "--providers",
            file.to_str().expect("path"),
        ];
        if json {
            args.insert(0, "--json");
        }
        let out = sb
            .command(&args)
            .env("TEST_KIE_KEY", "kie-good-key")
            .env("TEST_KIE_WRONG", "kie-wrong-secret")
            .output()
            .expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, text, err) = run(false);
    assert_eq!(code, Some(1), "a provider is down: {text} {err}");
    let line = |name: &str| {
        text.lines()
            .find(|l| l.split('\t').next() == Some(name))
            .unwrap_or_else(|| panic!("no line for {name}: {text}"))
            .to_owned()
    };
    assert!(
        line("kie").contains("reachable") && line("kie").contains("auth ok"),
        "{text}"
    );
    assert!(
        line("kie").contains("1234.5"),
        "the upstream credits: {text}"
    );
    assert!(line("kie-wrong").contains("auth REFUSED"), "{text}");
    assert!(line("gone").contains("UNREACHABLE"), "{text}");
    assert!(line("fixture").contains("reachable"), "{text}");
    assert!(
        !text.contains("kie-wrong-secret") && !err.contains("kie-wrong-secret"),
        "a key is never printed"
    );
    let (code, json, _) = run(true);
    assert_eq!(code, Some(1));
    let json: serde_json::Value = serde_json::from_str(&json).expect("json");
    let by_name = |name: &str| {
        json["providers"]
            .as_array()
            .expect("providers")
            .iter()
            .find(|p| p["provider"] == name)
            .cloned()
            .expect("listed")
    };
    assert_eq!(by_name("kie")["ok"], true);
    assert_eq!(by_name("kie-wrong")["auth_ok"], false);
    assert_eq!(by_name("gone")["ok"], false);
}

#[test]
fn serve_refuses_to_start_while_a_catalog_in_force_routes_to_an_unconfigured_provider() {
    let sb = sandbox();
    let catalog = catalog("rynjer-upstreams.json");
    let providers = example_providers();
    let run = with_example_credentials(
        &sb,
        &["prices", "import", &catalog, "--providers", &providers],
        None,
    );
    assert_eq!(run.code, 0, "{run:?}");
    // The same database, served without the providers file.
    let mut child = sb
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .env_remove("CREDITGATE_PROVIDERS")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start serve");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve started although its catalog routes to kie, which is not configured");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read");
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("not configured") && stderr.contains("kie"),
        "says which provider: {stderr}"
    );
    assert!(stderr.contains("--providers"), "says what to do: {stderr}");
}
