//! Black-box tests of the owner's console's security through the real
//! binary, as a browser's requests: only an operator key signs in, into a
//! strict `HttpOnly` cookie (`Secure` behind HTTPS); a form without its
//! session's CSRF token changes nothing; a signed-out session, or one whose
//! key the CLI revoked, is refused; failed sign-ins are throttled; every
//! owner and agent string is escaped; webhook endpoints are added only
//! with a signing key configured; `ledger verify` after.

use creditgate_tests::{HttpResponse, Sandbox, Server};

fn key(sb: &Sandbox, account: &str, scope: &str) -> (String, String) {
    let created = sb.ok(&["keys", "create", "--account", account, "--scope", scope]);
    (
        created["id"].as_str().expect("id").to_owned(),
        created["key"].as_str().expect("key").to_owned(),
    )
}

fn body(response: &HttpResponse) -> String {
    String::from_utf8_lossy(&response.body).into_owned()
}

/// Signs in with `key`; the session cookie (`cg_console=...`).
fn sign_in(server: &Server, key: &str) -> String {
    let answer = server.form("/console/sign-in", None, &[("key", key)]);
    assert_eq!(answer.status, 303, "{}", body(&answer));
    assert_eq!(answer.header("location"), Some("/console"));
    let cookie = answer.header("set-cookie").expect("a session cookie");
    cookie.split(';').next().expect("name=value").to_owned()
}

/// The CSRF token the forms of `page` carry.
fn csrf_of(page: &HttpResponse) -> String {
    let html = body(page);
    let at = html
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("a CSRF field in {html}"));
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').expect("end of the value")].to_owned()
}

fn verified(sb: &Sandbox) {
    let report = sb.ok(&["ledger", "verify"]);
    assert_eq!(report["ok"], true, "{report}");
}

#[test]
fn only_an_operator_key_signs_in_into_a_strict_cookie_and_the_index_points_the_way() {
    let sb = Sandbox::new(env!("CARGO_BIN_EXE_creditgate"));
    let house = sb.account("house");
    let (_, operator) = key(&sb, &house, "operator");
    let (_, admin) = key(&sb, &house, "admin");
    let server = sb.serve(&[]);

    let index = server.page("/", None);
    assert_eq!(index.status, 200);
    assert!(body(&index).contains("href=\"/console\""));
    assert!(body(&index).contains("href=\"/llms.txt\""));

    let unsigned = server.page("/console", None);
    assert_eq!(unsigned.status, 303);
    assert_eq!(unsigned.header("location"), Some("/console/sign-in"));

    let refused = server.form("/console/sign-in", None, &[("key", &admin)]);
    assert_eq!(
        refused.status, 403,
        "an account's admin key is not the box's"
    );
    assert!(refused.header("set-cookie").is_none());
    assert!(!body(&refused).contains(&admin), "the key is never echoed");

    let answer = server.form("/console/sign-in", None, &[("key", &operator)]);
    let cookie = answer.header("set-cookie").expect("cookie");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age="] {
        assert!(cookie.contains(part), "{cookie} has {part}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    assert!(
        !answer.header("location").unwrap_or("").contains("cg_cs_"),
        "the session is never in a URL"
    );
    let session = cookie.split(';').next().expect("pair");
    let overview = server.page("/console", Some(session));
    assert_eq!(overview.status, 200, "{}", body(&overview));
    assert_eq!(overview.header("cache-control"), Some("no-store"));
    assert!(overview
        .header("content-security-policy")
        .is_some_and(|csp| csp.contains("default-src 'none'")));
    drop(server);

    let behind_https = sb.serve(&["--public-url", "https://credits.example"]);
    let answer = behind_https.form("/console/sign-in", None, &[("key", &operator)]);
    assert!(answer
        .header("set-cookie")
        .is_some_and(|cookie| cookie.contains("; Secure")));
}

#[test]
fn a_form_without_its_session_s_csrf_token_changes_nothing() {
    let sb = Sandbox::new(env!("CARGO_BIN_EXE_creditgate"));
    let house = sb.account("house");
    let (_, operator) = key(&sb, &house, "operator");
    let server = sb.serve(&[]);
    let session = sign_in(&server, &operator);
    let other_session = sign_in(&server, &operator);
    let accounts = || {
        sb.ok(&["accounts", "list"])["accounts"]
            .as_array()
            .expect("list")
            .len()
    };
    let before = accounts();

    let page = server.page(&format!("/console/accounts/{house}"), Some(&session));
    let csrf = csrf_of(&page);
    let other_csrf = csrf_of(&server.page("/console/accounts", Some(&other_session)));
    assert_ne!(csrf, other_csrf, "a token is its session's own");

    for token in [None, Some("0".repeat(64)), Some(other_csrf.clone())] {
        let mut fields = vec![("name", "forged")];
        if let Some(token) = &token {
            fields.push(("csrf", token));
        }
        let forged = server.form("/console/accounts", Some(&session), &fields);
        assert_eq!(forged.status, 403, "{}", body(&forged));
        assert!(body(&forged).contains("CSRF"), "{}", body(&forged));
        let mut grant = vec![("grant_id", "forged-grant"), ("credits", "50")];
        if let Some(token) = &token {
            grant.push(("csrf", token));
        }
        let forged = server.form(
            &format!("/console/accounts/{house}/grants"),
            Some(&session),
            &grant,
        );
        assert_eq!(forged.status, 403);
    }
    assert_eq!(accounts(), before, "no forged account");
    let balance = sb.ok(&["credits", "balance", "--account", &house]);
    assert_eq!(balance["available"], serde_json::json!(0), "{balance}");

    // With its token, the same grant moves once, however often posted.
    let fields = [
        ("csrf", csrf.as_str()),
        ("grant_id", "g-1"),
        ("credits", "50"),
    ];
    for _ in 0..2 {
        let granted = server.form(
            &format!("/console/accounts/{house}/grants"),
            Some(&session),
            &fields,
        );
        assert_eq!(granted.status, 303, "{}", body(&granted));
    }
    let balance = sb.ok(&["credits", "balance", "--account", &house]);
    assert_eq!(balance["available"], serde_json::json!(50), "{balance}");
    verified(&sb);
}

#[test]
fn a_signed_out_session_and_one_whose_key_the_cli_revoked_are_refused() {
    let sb = Sandbox::new(env!("CARGO_BIN_EXE_creditgate"));
    let house = sb.account("house");
    let (key_id, operator) = key(&sb, &house, "operator");
    let server = sb.serve(&[]);

    let session = sign_in(&server, &operator);
    let csrf = csrf_of(&server.page("/console", Some(&session)));
    let out = server.form("/console/sign-out", Some(&session), &[("csrf", &csrf)]);
    assert_eq!(out.status, 303);
    assert!(out
        .header("set-cookie")
        .is_some_and(|c| c.contains("Max-Age=0")));
    let after = server.page("/console", Some(&session));
    assert_eq!(after.status, 303, "signed out: back to the sign-in page");
    let post = server.form(
        "/console/accounts",
        Some(&session),
        &[("csrf", &csrf), ("name", "x")],
    );
    assert_eq!(post.status, 401, "{}", body(&post));

    let session = sign_in(&server, &operator);
    assert_eq!(server.page("/console", Some(&session)).status, 200);
    sb.ok(&["keys", "revoke", &key_id]);
    assert_eq!(
        server.page("/console", Some(&session)).status,
        303,
        "a key revoked from the CLI ends its sessions at once"
    );
}

#[test]
fn failed_sign_ins_are_throttled() {
    let sb = Sandbox::new(env!("CARGO_BIN_EXE_creditgate"));
    let house = sb.account("house");
    let (_, operator) = key(&sb, &house, "operator");
    let server = sb.serve(&[]);
    for _ in 0..10 {
        let wrong = server.form("/console/sign-in", None, &[("key", "cg_live_guess")]);
        assert_eq!(wrong.status, 401);
    }
    let throttled = server.form("/console/sign-in", None, &[("key", &operator)]);
    assert_eq!(throttled.status, 429, "{}", body(&throttled));
    assert!(throttled.header("retry-after").is_some());
}

#[test]
fn owner_and_agent_strings_render_as_text() {
    let sb = Sandbox::new(env!("CARGO_BIN_EXE_creditgate"));
    let hostile = "<script>alert('owner')</script>";
    let house = sb.account(hostile);
    let (_, operator) = key(&sb, &house, "operator");
    sb.ok(&[
        "credits",
        "grant",
        "--account",
        &house,
        "--amount",
        "5",
        "--memo",
        hostile,
    ]);
    let server = sb.serve(&[]);
    let session = sign_in(&server, &operator);
    for path in [
        format!("/console/accounts/{house}"),
        "/console/accounts".to_owned(),
        "/console/ledger".to_owned(),
        "/console/jobs?model=%3Cscript%3E".to_owned(),
    ] {
        let page = server.page(&path, Some(&session));
        assert_eq!(page.status, 200, "{path}: {}", body(&page));
        let html = body(&page);
        assert!(!html.contains("<script"), "{path} has no script: {html}");
    }
    let account = body(&server.page(&format!("/console/accounts/{house}"), Some(&session)));
    assert!(account.contains("&lt;script&gt;alert(&#39;owner&#39;)&lt;/script&gt;"));
    verified(&sb);
}

#[test]
fn webhook_endpoints_are_added_and_removed_and_without_a_signing_key_not_configured() {
    let sb = Sandbox::new(env!("CARGO_BIN_EXE_creditgate"));
    let house = sb.account("house");
    let (_, operator) = key(&sb, &house, "operator");
    let unsigned = sb.serve(&[]);
    let session = sign_in(&unsigned, &operator);
    let csrf = csrf_of(&unsigned.page("/console/webhooks", Some(&session)));
    let fields = [
        ("csrf", csrf.as_str()),
        ("url", "https://hooks.example/creditgate"),
        ("events", "job.finished balance.low"),
        ("low_balance", "5"),
    ];
    let refused = unsigned.form("/console/webhooks", Some(&session), &fields);
    assert_eq!(refused.status, 403, "{}", body(&refused));
    assert!(
        body(&refused).contains("not configured"),
        "{}",
        body(&refused)
    );
    drop(unsigned);

    let server = sb.serve_env(
        &[],
        &[(
            "CREDITGATE_WEBHOOK_SIGNING_KEY",
            "an-operator-signing-key-of-32-bytes!!",
        )],
    );
    let session = sign_in(&server, &operator);
    let csrf = csrf_of(&server.page("/console/webhooks", Some(&session)));
    let fields = [
        ("csrf", csrf.as_str()),
        ("url", "https://hooks.example/creditgate"),
        ("events", "job.finished balance.low"),
        ("low_balance", "5"),
    ];
    let added = server.form("/console/webhooks", Some(&session), &fields);
    assert_eq!(added.status, 200, "{}", body(&added));
    assert!(body(&added).contains("id=\"new-secret\""));
    let listed = sb.ok(&["webhooks", "list"]);
    assert!(
        listed
            .to_string()
            .contains("https://hooks.example/creditgate"),
        "{listed}"
    );
    let page = body(&server.page("/console/webhooks", Some(&session)));
    let at = page.find("whe_").expect("an endpoint id on the page");
    let endpoint: String = page[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let removed = server.form(
        &format!("/console/webhooks/{endpoint}/remove"),
        Some(&session),
        &[("csrf", &csrf)],
    );
    assert_eq!(removed.status, 303, "{}", body(&removed));
    assert!(body(&server.page("/console/webhooks", Some(&session))).contains("removed "));
}
