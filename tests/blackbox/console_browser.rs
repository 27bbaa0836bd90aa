//! The owner's console driven by a real headless Chromium over WebDriver
//! (Debian's `chromium` and `chromium-driver`, which `.ci/run` installs):
//! an operator signs in, creates an account, grants it credits and makes
//! a key; binds a registered agent's code to that account; an agent
//! submits a job over the API with the key; the operator watches it finish
//! on the jobs page, opens its ledger transfers, makes a redemption code
//! the agent redeems, verifies the ledger, reads the overview, checks the
//! providers, imports a
//! price catalog file and activates it, and signs out. Every page is
//! checked for a title, landmarks and labelled inputs, and a screenshot of
//! each is written to `$CARGO_TARGET_TMPDIR/console-screenshots/`.

use std::time::Duration;

use creditgate_tests::webdriver::{self, Browser};
use creditgate_tests::{Sandbox, Server};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};

/// Registers an ed25519 agent over the API (a signed request, as
/// reference 001 says); its id and the registration code it shows its
/// owner.
fn register_agent(server: &Server) -> (String, String) {
    let key = SigningKey::from_bytes(&[7; 32]);
    let public = key
        .verifying_key()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let mut body = json!({
        "public_key": public, "agent_name": "console-agent", "agent_version": "1.0",
        "timestamp": timestamp, "nonce": format!("n-{timestamp}"),
    });
    let path = "/api/v1/agents/register";
    let message = format!(
        "POST {path}\n{}",
        serde_json::to_string(&body).expect("json")
    );
    let signature: String = key
        .sign(message.as_bytes())
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    body["signature"] = json!(signature);
    let answer = server.request("POST", path, None, Some(&body.to_string()));
    let data: Value = answer.json()["data"].clone();
    (
        data["agent_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{data}"))
            .to_owned(),
        data["registration_code"]
            .as_str()
            .unwrap_or_else(|| panic!("{data}"))
            .to_owned(),
    )
}

/// The accessibility basics of the page shown: a title, `main` and `nav`
/// landmarks, a label for every visible input and a caption or heading
/// for every table; a list of what is missing.
const ACCESSIBILITY_CHECK: &str = "
    const missing = [];
    if (!document.title) missing.push('title');
    if (!document.querySelector('main')) missing.push('main landmark');
    if (!document.querySelector('nav') && !location.pathname.endsWith('/sign-in'))
        missing.push('nav landmark');
    for (const input of document.querySelectorAll('input, select, textarea')) {
        if (input.type === 'hidden') continue;
        const labelled = (input.labels && input.labels.length > 0)
            || input.getAttribute('aria-label');
        if (!labelled) missing.push('label for ' + (input.name || input.id));
    }
    for (const button of document.querySelectorAll('button')) {
        if (!button.textContent.trim() && !button.getAttribute('aria-label'))
            missing.push('button text');
    }
    return missing;
";

struct Console<'a> {
    browser: &'a Browser,
    base: String,
    shots: std::path::PathBuf,
}

impl Console<'_> {
    /// Checks the page's accessibility basics and writes its screenshot.
    fn checked(&self, name: &str) {
        let missing = self.browser.script(ACCESSIBILITY_CHECK);
        assert_eq!(missing, json!([]), "{name}: {}", self.browser.url());
        let png = self.browser.screenshot();
        assert!(png.starts_with(b"\x89PNG"), "{name}: a PNG screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).expect("screenshot");
    }

    fn go(&self, path: &str) {
        self.browser.go(&format!("{}{path}", self.base));
    }

    fn fill(&self, selector: &str, text: &str) {
        let input = self.browser.find(selector);
        self.browser.clear(&input);
        self.browser.type_into(&input, text);
    }

    /// Clicks the button at `selector` and waits for the page it leads
    /// to: the title changes, or `stays` when it may be the same.
    fn press(&self, selector: &str) {
        let before = self.browser.url();
        let marker = self
            .browser
            .script("document.documentElement.dataset.seen = 'before'; return true;");
        assert_eq!(marker, json!(true));
        let button = self.browser.find(selector);
        self.browser.click(&button);
        let moved = self.browser.until(Duration::from_secs(10), |b| {
            b.script("return document.readyState === 'complete' && document.documentElement.dataset.seen !== 'before';")
                == json!(true)
        });
        assert!(moved, "{selector} led to a new page from {before}");
    }
}

#[test]
fn an_operator_runs_the_box_from_the_console_in_a_real_browser() {
    if webdriver::skipped() {
        return;
    }
    let sb = Sandbox::new(env!("CARGO_BIN_EXE_creditgate"));
    let house = sb.account("house");
    let operator = sb.ok(&["keys", "create", "--account", &house, "--scope", "operator"])["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let server = sb.serve(&["--poll-interval-ms", "20", "--workers", "2"]);
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot folder");
    let browser = Browser::start();
    let console = Console {
        browser: &browser,
        base: server.base(),
        shots,
    };

    // Signing in: the console sends a stranger to the sign-in page.
    console.go("/console");
    assert!(
        browser.url().ends_with("/console/sign-in"),
        "{}",
        browser.url()
    );
    assert_eq!(browser.title(), "Sign in · creditgate console");
    console.checked("sign-in");
    console.fill("#f-key", &operator);
    console.press("main button[type=submit]");
    assert_eq!(browser.title(), "Overview · creditgate console");
    console.checked("overview");

    // An account, credits granted to it, and a key for it.
    console.go("/console/accounts");
    console.checked("accounts");
    console.fill("#f-name", "studio");
    console.press("main button[type=submit]");
    assert_eq!(browser.title(), "Account studio · creditgate console");
    let account = browser
        .url()
        .rsplit('/')
        .next()
        .expect("the account id")
        .to_owned();
    console.fill("#f-credits", "25");
    console.fill("#f-memo", "first credits");
    console.press("form[action$='/grants'] button");
    let page = browser.page_text();
    assert!(page.contains("Granted"), "{page}");
    assert!(page.contains("first credits"), "the grant's memo: {page}");
    let balance = sb.ok(&["credits", "balance", "--account", &account]);
    assert_eq!(balance["available"], json!(25), "{balance}");
    console.checked("account");
    console.press("form[action$='/keys'] button");
    assert_eq!(browser.title(), "Key created · creditgate console");
    let secret = browser.text(&browser.find("#new-key"));
    assert!(secret.starts_with("cg_live_"), "{secret}");
    console.checked("key-created");

    // An agent registers; its owner binds its code to the account.
    let (agent, code) = register_agent(&server);
    console.go("/console/agents");
    assert!(
        browser.page_text().contains("console-agent"),
        "waiting to be bound"
    );
    console.checked("agents");
    console.fill("#f-code", &code);
    console.fill("#f-account", &account);
    console.fill("#f-scopes", "image");
    console.press("form[action='/console/agents'] button");
    let bound = browser.page_text();
    assert!(
        bound.contains(&format!("Agent {agent} is bound")),
        "{bound}"
    );
    assert_eq!(
        browser.script(&format!(
            "return [...document.querySelectorAll('main tbody tr')]
                 .some(r => r.cells[0].textContent === '{agent}'
                            && r.cells[2].textContent === '{account}');"
        )),
        json!(true),
        "bound to the account: {bound}"
    );
    console.checked("agent-bound");
    console.go(&format!("/console/accounts/{account}"));
    assert!(
        browser.page_text().contains(&agent),
        "the account's page lists its agent"
    );

    // An agent spends with that key over the API.
    let submitted = server.post(
        "/v1/generate",
        &secret,
        &json!({"request_id": "console-1", "model": "nano-banana-pro",
                "prompt": "a lighthouse at dawn"}),
    );
    assert_eq!(submitted.status, 200, "{:?}", submitted.json());
    let job = submitted.json()["data"]["task_id"]
        .as_str()
        .expect("task id")
        .to_owned();

    // The operator watches it finish, then opens it.
    console.go(&format!("/console/jobs?account={account}"));
    let row_says_succeeded = format!(
        "return [...document.querySelectorAll('main tbody tr')]
             .some(r => r.cells[0].textContent === '{job}'
                        && r.cells[1].textContent === 'succeeded');"
    );
    let finished = browser.wait_for(Duration::from_secs(30), |b| {
        b.script(&row_says_succeeded) == json!(true)
    });
    assert!(
        finished,
        "the job finished on the jobs page: {}",
        browser.page_text()
    );
    console.checked("jobs");
    console.press(&format!("a[href='/console/jobs/{job}']"));
    assert_eq!(browser.title(), format!("Job {job} · creditgate console"));
    assert_eq!(browser.text(&browser.find("#job-status")), "succeeded");
    let transfers = browser.page_text();
    for id in [format!("hold:{job}"), format!("capture:{job}")] {
        assert!(
            transfers.contains(&id),
            "{id} on the job's page: {transfers}"
        );
    }
    assert_eq!(browser.count("main img"), 1, "the output's preview");
    console.checked("job");

    // A redemption code made in the console, redeemed over the API.
    console.go("/console/codes");
    console.checked("codes");
    console.fill("#f-credits", "5");
    console.fill("#f-uses", "3");
    console.fill("#f-memo", "launch");
    console.press("form[action='/console/codes'] button");
    let code = browser.text(&browser.find("#new-code"));
    assert!(code.starts_with("cg_code_"), "{code}");
    console.checked("code-created");
    let redeemed = server.post("/v1/credits/redeem", &secret, &json!({ "code": code }));
    assert_eq!(redeemed.status, 200, "{:?}", redeemed.json());
    let balance = sb.ok(&["credits", "balance", "--account", &account]);
    assert_eq!(
        balance["available"],
        json!(10),
        "25 granted, 20 spent, 5 redeemed: {balance}"
    );

    // The ledger verifies, on demand.
    console.go("/console/ledger");
    console.checked("ledger");
    console.press("form[action='/console/ledger/verify'] button");
    let verified = browser.page_text();
    assert!(verified.contains("The ledger verifies"), "{verified}");
    console.checked("ledger-verified");

    // The overview: today's jobs by status, and today's credits granted
    // and spent on images in the chart's table.
    console.go("/console");
    let today = browser.script(
        "const table = [...document.querySelectorAll('table')]
             .find(t => t.caption && t.caption.textContent.startsWith('Credits per day'));
         const head = [...table.tHead.rows[0].cells].map(c => c.textContent);
         const row = [...table.tBodies[0].rows[0].cells].map(c => c.textContent);
         return Object.fromEntries(head.map((h, i) => [h, row[i]]));",
    );
    assert_eq!(today["granted"], "30", "25 granted, 5 redeemed: {today}");
    assert_eq!(today["spent: image"], "20", "{today}");
    assert_eq!(
        browser.count("main svg rect"),
        2,
        "a granted bar and a spent bar"
    );
    console.checked("overview-after");

    // The providers: the fixture served the job, and answers a check.
    console.go("/console/providers");
    console.checked("providers");
    let providers = browser.script(
        "const row = [...document.querySelectorAll('main tbody tr')]
             .find(r => r.cells[0].textContent === 'fixture');
         const head = [...document.querySelector('main thead tr').cells].map(c => c.textContent);
         return row ? row.cells[head.indexOf('succeeded')].textContent : null;",
    );
    assert_eq!(providers, json!("1"), "the fixture's one success");
    console.press("form[action='/console/providers/check'] button");
    let check = browser.script(
        "const row = [...document.querySelectorAll('main tbody tr')]
             .find(r => r.cells[0].textContent === 'fixture');
         return row ? row.cells[1].textContent : null;",
    );
    assert_eq!(check, json!("yes"), "the fixture is reachable");
    console.checked("providers-checked");

    // A new price version: imported from a file, compared, activated.
    let mut catalog: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/catalogs/rynjer.json"
        ))
        .expect("the shipped catalog"),
    )
    .expect("JSON");
    catalog["price_version"] = json!("2026-12-console");
    catalog["models"][0]["base_price"] = json!(33);
    let file = sb.write("console-catalog.json", &catalog.to_string());
    console.go("/console/prices");
    console.checked("prices");
    let upload = browser.find("#f-catalog");
    browser.type_into(&upload, file.to_str().expect("path"));
    console.press("form[action='/console/prices'] button");
    assert_eq!(
        browser.title(),
        "Price version 2026-12-console · creditgate console"
    );
    assert_eq!(
        browser.text(&browser.find("#version-state")),
        "imported, not active"
    );
    let diff = browser.page_text();
    assert!(
        diff.contains("changed"),
        "one model's price changed: {diff}"
    );
    console.checked("price-version");
    console.press("form[action$='/activate'] button");
    assert_eq!(browser.text(&browser.find("#version-state")), "active");
    let versions = sb.ok(&["prices", "list"]);
    assert!(
        versions.to_string().contains("2026-12-console"),
        "{versions}"
    );

    // Signing out ends the session.
    console.press("header form button");
    assert!(
        browser.url().ends_with("/console/sign-in"),
        "{}",
        browser.url()
    );
    console.go("/console/jobs");
    assert!(browser.url().ends_with("/console/sign-in"), "signed out");
    drop(server);
    let report = sb.ok(&["ledger", "verify"]);
    assert_eq!(report["ok"], true, "{report}");
}
