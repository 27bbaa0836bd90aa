//! The owner's console driven by a real headless Chromium over WebDriver
//! (Debian's `chromium` and `chromium-driver`, which `.ci/run` installs):
//! an operator signs in, creates an account, grants it credits and makes
//! a key; an agent submits a job over the API with that key; the operator
//! watches it finish on the jobs page, opens its ledger transfers,
//! verifies the ledger and signs out. Every page is checked for a title,
//! landmarks and labelled inputs, and a screenshot of each is written to
//! `$CARGO_TARGET_TMPDIR/console-screenshots/`.

use std::time::Duration;

use creditgate_tests::webdriver::{self, Browser};
use creditgate_tests::Sandbox;
use serde_json::json;

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

    // The ledger verifies, on demand.
    console.go("/console/ledger");
    console.checked("ledger");
    console.press("form[action='/console/ledger/verify'] button");
    let verified = browser.page_text();
    assert!(verified.contains("The ledger verifies"), "{verified}");
    console.checked("ledger-verified");

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
