//! A real browser for the tests: Debian's headless Chromium, driven over WebDriver by its
//! chromedriver (packages `chromium` and `chromium-driver`; `.ci/run` installs them). One
//! chromedriver serves the whole test binary; each test opens a browser session of its own
//! and closes it when dropped.
//!
//! Without chromedriver the browser tests are built as ignored (`build.rs`), as the
//! PostgreSQL ones are without their server, and the summary says how many did not run;
//! `.ci/run` installs it and fails without it. `CHROMEDRIVER` and `CHROMIUM` name other
//! binaries.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// How long a wait for the page may take: generous, the machine runs other tests meanwhile.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The chromedriver of this test binary, started on first use.
struct Driver {
    url: String,
    /// A shell that kills chromedriver when this end of its stdin closes — when the test
    /// process exits, however it exits: nothing is left running.
    _keeper: Mutex<(Child, ChildStdin)>,
}

static DRIVER: OnceLock<Driver> = OnceLock::new();

fn binary(variable: &str, default: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| default.to_owned())
}

fn driver() -> &'static Driver {
    DRIVER.get_or_init(|| {
        let chromedriver = binary("CHROMEDRIVER", "/usr/bin/chromedriver");
        assert!(
            std::path::Path::new(&chromedriver).exists(),
            "the browser tests need Chromium and its WebDriver: `apt-get install chromium \
             chromium-driver` (Debian; .ci/run installs them), or set CHROMEDRIVER and CHROMIUM \
             to their paths — {chromedriver} does not exist"
        );
        let port = crate::cli::free_port();
        let mut keeper = Command::new("sh")
            .arg("-c")
            .arg("\"$0\" --port=\"$1\" >/dev/null 2>&1 & read _; kill $!")
            .arg(&chromedriver)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .spawn()
            .expect("start chromedriver");
        let stdin = keeper.stdin.take().expect("its stdin");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver ({chromedriver}) did not listen on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver {
            url: format!("http://127.0.0.1:{port}"),
            _keeper: Mutex::new((keeper, stdin)),
        }
    })
}

/// What a browser session starts with.
pub struct BrowserOptions {
    /// The browser's language (`navigator.languages`), e.g. `en-US`, `it-IT`.
    pub language: &'static str,
}

impl Default for BrowserOptions {
    fn default() -> Self {
        Self { language: "en-US" }
    }
}

/// One headless Chromium session: a window of 360 × 740 CSS pixels, a phone's.
pub struct Browser {
    http: reqwest::Client,
    session: String,
}

impl Browser {
    pub async fn open(options: BrowserOptions) -> Browser {
        let driver = driver();
        let chromium = binary("CHROMIUM", "/usr/bin/chromium");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"performance": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-extensions", "--disable-sync",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-default-apps", "--metrics-recording-only",
                    format!("--lang={}", options.language),
                    "--window-size=360,740",
                ],
                "prefs": {"intl.accept_languages": options.language},
                "perfLoggingPrefs": {"enableNetwork": true, "enablePage": false},
            },
        }}});
        let http = reqwest::Client::new();
        let answer = post(&http, &format!("{}/session", driver.url), capabilities).await;
        let session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {answer}"))
            .to_owned();
        let browser = Browser { http, session };
        // A phone's screen, whatever the window manager made of the window.
        browser
            .cdp(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": 360, "height": 740, "deviceScaleFactor": 1, "mobile": true}),
            )
            .await;
        browser
    }

    fn url(&self, path: &str) -> String {
        format!("{}/session/{}{path}", driver().url, self.session)
    }

    pub async fn go(&self, url: &str) {
        post(&self.http, &self.url("/url"), json!({"url": url})).await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page; its value.
    pub async fn run(&self, script: &str, args: Value) -> Value {
        post(
            &self.http,
            &self.url("/execute/sync"),
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// The value of the JavaScript expression `expression` in the page.
    pub async fn eval(&self, expression: &str) -> Value {
        self.run(&format!("return ({expression});"), json!([]))
            .await
    }

    /// A Chrome DevTools command, sent through chromedriver to the page's target.
    pub async fn cdp(&self, command: &str, params: Value) -> Value {
        post(
            &self.http,
            &self.url("/goog/cdp/execute"),
            json!({"cmd": command, "params": params}),
        )
        .await
    }

    /// Every request of the page from now on carries `headers`, as a gateway in front of the
    /// service adds the caller's identity.
    pub async fn send_headers(&self, headers: &[(&str, &str)]) {
        let headers: serde_json::Map<String, Value> = headers
            .iter()
            .map(|(name, value)| ((*name).to_owned(), Value::from(*value)))
            .collect();
        self.cdp("Network.enable", json!({})).await;
        self.cdp("Network.setExtraHTTPHeaders", json!({"headers": headers}))
            .await;
    }

    /// Waits until `expression` is truthy in the page; its value. Fails with the page's
    /// state and status after [`PATIENCE`].
    pub async fn wait_for(&self, what: &str, expression: &str) -> Value {
        let started = Instant::now();
        loop {
            let value = self.eval(expression).await;
            if !(value.is_null() || value == false || value == "" || value == 0) {
                return value;
            }
            if started.elapsed() > PATIENCE {
                let page = self.eval(PAGE_STATE).await;
                panic!("waited {PATIENCE:?} for {what} ({expression}); the page: {page}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the page's `data-state` is `state`; the status it shows.
    pub async fn wait_for_state(&self, state: &str) -> String {
        self.wait_for(
            &format!("state {state}"),
            &format!("document.body && document.body.dataset.state === {state:?}"),
        )
        .await;
        self.text("status").await
    }

    /// The text of the element with id `id` as shown (empty when hidden).
    pub async fn text(&self, id: &str) -> String {
        let value = self
            .run(
                "const e = document.getElementById(arguments[0]); return e ? e.innerText : null;",
                json!([id]),
            )
            .await;
        value
            .as_str()
            .unwrap_or_else(|| panic!("no element #{id}"))
            .to_owned()
    }

    /// Whether the element with id `id` is shown.
    pub async fn shown(&self, id: &str) -> bool {
        self.run(
            "const e = document.getElementById(arguments[0]); \
             return !!e && e.getClientRects().length > 0;",
            json!([id]),
        )
        .await
            == true
    }

    /// Presses `key` (a WebDriver key: `\u{E004}` Tab, `\u{E007}` Enter) in the page.
    pub async fn press(&self, key: &str) {
        post(
            &self.http,
            &self.url("/actions"),
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key},
            ]}]}),
        )
        .await;
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let answer = self
            .http
            .get(self.url("/screenshot"))
            .send()
            .await
            .expect("chromedriver answers");
        let body: Value = answer.json().await.expect("JSON");
        base64::engine::general_purpose::STANDARD
            .decode(body["value"].as_str().expect("a screenshot"))
            .expect("base64")
    }

    /// Saves a screenshot as `name` in `TELECONS_SCREENSHOT_DIR`, when that is set (the
    /// README's pictures are made so); nothing otherwise.
    pub async fn save_screenshot(&self, name: &str) {
        if let Ok(dir) = std::env::var("TELECONS_SCREENSHOT_DIR") {
            let png = self.screenshot().await;
            std::fs::create_dir_all(&dir).expect("the screenshot directory");
            std::fs::write(std::path::Path::new(&dir).join(name), png).expect("write it");
        }
    }

    /// Every request the browser sent so far (the page, its calls, frames), each as its URL
    /// and headers, from the browser's own network log. Reading it empties it.
    pub async fn requests(&self) -> Vec<(String, Value)> {
        let entries = post(
            &self.http,
            &self.url("/se/log"),
            json!({"type": "performance"}),
        )
        .await;
        entries
            .as_array()
            .expect("log entries")
            .iter()
            .filter_map(|entry| {
                let message: Value =
                    serde_json::from_str(entry["message"].as_str()?).expect("a JSON message");
                let message = &message["message"];
                (message["method"] == "Network.requestWillBeSent").then(|| {
                    let request = &message["params"]["request"];
                    (
                        request["url"].as_str().unwrap_or_default().to_owned(),
                        request["headers"].clone(),
                    )
                })
            })
            .collect()
    }
}

/// What a failed wait reports of the page.
const PAGE_STATE: &str = "document.body ? {state: document.body.dataset.state, \
     status: (document.getElementById('status') || {}).innerText, url: location.href} : null";

impl Drop for Browser {
    /// Closes the session (and its Chromium) even when the test failed: a plain HTTP
    /// DELETE, since no runtime may be left to run an async one.
    fn drop(&mut self) {
        let driver = driver();
        let address = driver.url.trim_start_matches("http://").to_owned();
        let path = format!("/session/{}", self.session);
        let _ = std::thread::spawn(move || {
            let Ok(mut stream) = TcpStream::connect(&address) else {
                return;
            };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                stream,
                "DELETE {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
            );
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
        })
        .join();
    }
}

/// POSTs `body` to chromedriver; the answer's `value`, or a failure naming WebDriver's error.
async fn post(http: &reqwest::Client, url: &str, body: Value) -> Value {
    let answer = http
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("chromedriver at {url}: {e}"));
    let status = answer.status();
    let mut body: Value = answer.json().await.expect("chromedriver answers JSON");
    assert!(status.is_success(), "chromedriver {url}: {status} {body}");
    body["value"].take()
}
