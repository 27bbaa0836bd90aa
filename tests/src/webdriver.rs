//! A small W3C WebDriver client for the console's browser tests: it starts
//! `chromedriver` (Debian's `chromium-driver`) on a free port, opens a
//! headless Chromium session and offers what the tests need (navigate,
//! find, type, click, read, run a script, screenshot). Bounded: every
//! request has a deadline, and the driver and browser are stopped on drop.
//!
//! Set `CREDITGATE_BROWSER_TESTS=skip` to skip the browser tests on a
//! machine without Chromium; otherwise a missing driver fails the test,
//! saying what to install.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The element key of the W3C protocol.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long one driver request may take.
const REQUEST_WAIT_MAX: Duration = Duration::from_secs(60);
/// How long the driver may take to start.
const DRIVER_START_MAX: Duration = Duration::from_secs(20);

/// Whether the browser tests are to be skipped on this machine (said
/// loudly on stderr).
pub fn skipped() -> bool {
    let skip = std::env::var("CREDITGATE_BROWSER_TESTS").as_deref() == Ok("skip");
    if skip {
        eprintln!("CREDITGATE_BROWSER_TESTS=skip: the browser tests did not run");
    }
    skip
}

/// A headless Chromium session through chromedriver.
pub struct Browser {
    driver: Child,
    addr: String,
    session: String,
}

/// An element of the page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    pub fn start() -> Browser {
        let driver_bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = free_port();
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start {driver_bin} ({err}): install Debian's chromium and \
                     chromium-driver, or set CREDITGATE_BROWSER_TESTS=skip"
                )
            });
        let addr = format!("127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            if let Ok(status) = request(&addr, "GET", "/status", None) {
                if status["value"]["ready"] == true {
                    break;
                }
            }
            assert!(
                started.elapsed() < DRIVER_START_MAX,
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binary,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1024"]
            }
        }}});
        let opened = request(&addr, "POST", "/session", Some(&capabilities))
            .unwrap_or_else(|err| panic!("no browser session: {err}"));
        let session = opened["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {opened}"))
            .to_owned();
        Browser {
            driver,
            addr,
            session,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let answer = request(&self.addr, method, &path, body)
            .unwrap_or_else(|err| panic!("{method} {path}: {err}"));
        if let Some(error) = answer["value"]["error"].as_str() {
            panic!("{method} {path}: {error}: {}", answer["value"]["message"]);
        }
        answer["value"].clone()
    }

    /// Opens `url`.
    pub fn go(&self, url: &str) {
        self.call("POST", "/url", Some(&json!({ "url": url })));
    }

    /// The page's title.
    pub fn title(&self) -> String {
        self.call("GET", "/title", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The current URL.
    pub fn url(&self) -> String {
        self.call("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The first element matching the CSS `selector`.
    pub fn find(&self, selector: &str) -> Element {
        let found = self.call(
            "POST",
            "/element",
            Some(&json!({"using": "css selector", "value": selector})),
        );
        Element(
            found[ELEMENT_KEY]
                .as_str()
                .unwrap_or_else(|| panic!("no element {selector}: {found}"))
                .to_owned(),
        )
    }

    /// How many elements match the CSS `selector`.
    pub fn count(&self, selector: &str) -> usize {
        self.call(
            "POST",
            "/elements",
            Some(&json!({"using": "css selector", "value": selector})),
        )
        .as_array()
        .map_or(0, Vec::len)
    }

    /// Types `text` into `element`.
    pub fn type_into(&self, element: &Element, text: &str) {
        self.call(
            "POST",
            &format!("/element/{}/value", element.0),
            Some(&json!({ "text": text })),
        );
    }

    /// Clears `element` (an input).
    pub fn clear(&self, element: &Element) {
        self.call(
            "POST",
            &format!("/element/{}/clear", element.0),
            Some(&json!({})),
        );
    }

    /// Clicks `element`.
    pub fn click(&self, element: &Element) {
        self.call(
            "POST",
            &format!("/element/{}/click", element.0),
            Some(&json!({})),
        );
    }

    /// The rendered text of `element`.
    pub fn text(&self, element: &Element) -> String {
        self.call("GET", &format!("/element/{}/text", element.0), None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The text of the whole page (`body`).
    pub fn page_text(&self) -> String {
        let body = self.find("body");
        self.text(&body)
    }

    /// Runs `script` (a function body) in the page; its return value.
    pub fn script(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(&json!({"script": script, "args": []})),
        )
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        let encoded = self.call("GET", "/screenshot", None);
        decode_base64(encoded.as_str().unwrap_or_default())
    }

    /// Waits until `done` holds (a navigation a click started has
    /// finished), at most `wait`.
    pub fn until(&self, wait: Duration, mut done: impl FnMut(&Browser) -> bool) -> bool {
        let started = Instant::now();
        while !done(self) {
            if started.elapsed() > wait {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }

    /// Waits until `done` holds, reloading the page between tries, at
    /// most `wait`.
    pub fn wait_for(&self, wait: Duration, mut done: impl FnMut(&Browser) -> bool) -> bool {
        let started = Instant::now();
        loop {
            if done(self) {
                return true;
            }
            if started.elapsed() > wait {
                return false;
            }
            std::thread::sleep(Duration::from_millis(200));
            self.call("POST", "/refresh", Some(&json!({})));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = request(
            &self.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// One JSON request to the driver.
fn request(addr: &str, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let mut stream = TcpStream::connect(addr).map_err(|err| err.to_string())?;
    stream
        .set_read_timeout(Some(REQUEST_WAIT_MAX))
        .and_then(|()| stream.set_write_timeout(Some(REQUEST_WAIT_MAX)))
        .map_err(|err| err.to_string())?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()))
        .map_err(|err| err.to_string())?;
    // Read the head, then exactly the body: the driver may keep the
    // connection open whatever the request said.
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 8192];
    let split = loop {
        if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let read = stream.read(&mut chunk).map_err(|err| err.to_string())?;
        if read == 0 {
            return Err("the driver closed without an answer".into());
        }
        bytes.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&bytes[..split]).to_ascii_lowercase();
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name.trim() == "content-length")
            .then(|| value.trim().parse::<usize>().ok())
            .flatten()
    });
    let mut payload = bytes[split + 4..].to_vec();
    match length {
        Some(length) => {
            while payload.len() < length {
                let read = stream.read(&mut chunk).map_err(|err| err.to_string())?;
                if read == 0 {
                    break;
                }
                payload.extend_from_slice(&chunk[..read]);
            }
            payload.truncate(length);
        }
        None => {
            stream
                .read_to_end(&mut payload)
                .map_err(|err| err.to_string())?;
            if head.contains("transfer-encoding: chunked") {
                payload = crate::dechunk_body(&payload);
            }
        }
    }
    serde_json::from_slice(&payload).map_err(|err| format!("not JSON ({err})"))
}

/// Standard base64 (the screenshots), without a dependency.
fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut bits, mut count) = (0u32, 0);
    for c in text.bytes().filter_map(value) {
        bits = (bits << 6) | c;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_decodes() {
        assert_eq!(super::decode_base64("aGVsbG8gd29ybGQ="), b"hello world");
        assert_eq!(super::decode_base64("iVBORw0KGgo="), b"\x89PNG\r\n\x1a\n");
    }
}
