//! Drives Debian's Chromium (headless) through chromedriver, against a real saaskit server on a
//! fresh database, the way a person would: open a page, fill the form, press the button.
//!
//! Every page a journey passes through is checked with axe-core (no serious or critical
//! violation), checked at phone width (nothing wider than the screen), and photographed:
//! `target/screenshots/<name>.png`, or `docs/screenshots/` with `SAASKIT_UPDATE_SCREENSHOTS=1`.
//!
//! Chromium and chromedriver come from Debian (`apt-get install chromium chromium-driver`), and
//! axe-core from npm; `.ci/browser-tools` installs them. Without them the journeys are skipped
//! with a note, unless `SAASKIT_BROWSER_TESTS=required` (as `.ci/run` sets), which makes a
//! missing tool a failure.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// At most this many browsers at once in one test process: each Chromium takes a core.
static BROWSERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where axe-core's script is: `SAASKIT_AXE_JS`, or where `.ci/browser-tools` puts it.
fn axe_path() -> PathBuf {
    std::env::var_os("SAASKIT_AXE_JS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/browser-tools/node_modules/axe-core/axe.min.js"))
}

fn required() -> bool {
    std::env::var("SAASKIT_BROWSER_TESTS").is_ok_and(|v| v == "required")
}

/// Whether the tools are here; when they are not, a journey is skipped (or fails, when they
/// are required).
pub fn available() -> bool {
    let missing: Vec<String> = [Path::new(CHROMIUM), Path::new(CHROMEDRIVER), &axe_path()]
        .into_iter()
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let note = format!(
        "browser journey skipped: missing {} (run `bash .ci/browser-tools` to install them)",
        missing.join(", ")
    );
    assert!(!required(), "{note}");
    eprintln!("{note}");
    false
}

/// A chromedriver of this test's own, stopped when dropped.
pub struct Driver {
    url: String,
    _process: Child,
    _permit: tokio::sync::SemaphorePermit<'static>,
}

impl Driver {
    /// Starts chromedriver on a free port and waits until it answers. On a loaded machine it
    /// can take seconds to listen, and the port picked may be taken again before it binds: a
    /// chromedriver that exits or stays silent for 30 s is replaced by one on another port.
    pub async fn start() -> Driver {
        let permit = BROWSERS
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let mut last_failure = String::new();
        for _attempt in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let mut process = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("start chromedriver");
            let url = format!("http://127.0.0.1:{port}");
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while tokio::time::Instant::now() < deadline {
                if let Ok(Some(status)) = process.try_wait() {
                    last_failure = format!("chromedriver on port {port} exited: {status}");
                    break;
                }
                if ready(&url).await {
                    return Driver {
                        url,
                        _process: process,
                        _permit: permit,
                    };
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if last_failure.is_empty() {
                last_failure = format!("chromedriver on port {port} did not answer in 30 s");
            }
            let _ = process.kill().await;
        }
        panic!("no chromedriver: {last_failure}");
    }

    /// A new browser (its own profile: its own cookies) on `base`, the server's address.
    pub async fn browser(&self, base: &str, journey: &str) -> Browser {
        let profile = std::env::temp_dir().join(format!(
            "saaskit_chromium_{}",
            uuid::Uuid::new_v4().simple()
        ));
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-extensions", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a Chromium session through chromedriver");
        Browser {
            client,
            base: base.trim_end_matches('/').to_owned(),
            journey: journey.to_owned(),
            profile,
        }
    }
}

/// Whether the chromedriver at `url` answers its status request ready (listening is not
/// enough: it accepts connections a moment before it serves sessions).
async fn ready(url: &str) -> bool {
    let status = async {
        reqwest::Client::new()
            .get(format!("{url}/status"))
            .timeout(Duration::from_secs(2))
            .send()
            .await?
            .json::<Value>()
            .await
    };
    status
        .await
        .is_ok_and(|status| status["value"]["ready"] == json!(true))
}

pub struct Browser {
    pub client: Client,
    base: String,
    journey: String,
    profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Browser {
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    /// Opens a path of the server (or, given a whole address, the path and query of it: mailed
    /// links name the public address).
    pub async fn open(&self, path_or_link: &str) {
        let path = match path_or_link.find("://") {
            Some(at) => {
                let rest = &path_or_link[at + 3..];
                rest.find('/').map_or("/", |i| &rest[i..])
            }
            None => path_or_link,
        };
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    /// The path (and query) the browser is on.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("current url");
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// Types `value` into the field labelled `label` (found by its label, as a person would).
    pub async fn fill(&self, label: &str, value: &str) {
        let xpath = format!("//label[normalize-space()={}]", xpath_literal(label));
        let here = self.path().await;
        let label_el = self
            .client
            .find(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|e| panic!("no field labelled {label:?} on {here}: {e}"));
        let id = label_el
            .attr("for")
            .await
            .expect("label attribute")
            .unwrap_or_else(|| panic!("the label {label:?} names no field"));
        let field = self
            .client
            .find(Locator::Id(&id))
            .await
            .unwrap_or_else(|e| panic!("no field #{id}: {e}"));
        field.clear().await.expect("clear the field");
        field.send_keys(value).await.expect("type into the field");
    }

    /// Presses the button that reads `text`, and waits for the page it leads to.
    pub async fn press(&self, text: &str) {
        let xpath = format!("//button[normalize-space()={}]", xpath_literal(text));
        let here = self.path().await;
        let button = self
            .client
            .find(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|e| panic!("no button {text:?} on {here}: {e}"));
        // A mark on this page's window: it is gone once the next page has replaced it.
        self.run("window.__before_press = true;").await;
        button.click().await.expect("press the button");
        self.next_page().await;
    }

    /// Waits until the page a form or link leads to has loaded.
    pub async fn next_page(&self) {
        for _ in 0..400 {
            let loaded = self
                .run("return window.__before_press !== true && document.readyState === 'complete';")
                .await;
            if loaded == Value::Bool(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no new page 10 s after pressing a button");
    }

    /// The visible text of the page.
    pub async fn text(&self) -> String {
        self.client
            .find(Locator::Css("body"))
            .await
            .expect("a body")
            .text()
            .await
            .expect("its text")
    }

    /// The text of the first element matching `css`.
    pub async fn text_of(&self, css: &str) -> String {
        let here = self.path().await;
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} on {here}: {e}"))
            .text()
            .await
            .expect("its text")
    }

    /// Checks the page as every page is checked (axe-core, phone width) and keeps a screenshot
    /// of it named `name`.
    pub async fn check(&self, name: &str) {
        self.axe(name).await;
        self.screenshot(name).await;
        self.client
            .set_window_size(390, 844)
            .await
            .expect("phone width");
        let overflow = self
            .client
            .execute(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
                vec![],
            )
            .await
            .expect("measure the page");
        assert!(
            overflow.as_i64().unwrap_or(0) <= 0,
            "{name}: the page is {overflow} px wider than a phone's screen"
        );
        self.client
            .set_window_size(1280, 900)
            .await
            .expect("desktop width");
    }

    async fn axe(&self, name: &str) {
        let source = std::fs::read_to_string(axe_path()).expect("read axe-core");
        // The page's CSP forbids inline scripts, not a WebDriver's: the script runs as the test.
        self.client
            .execute(&source, vec![])
            .await
            .expect("load axe-core");
        let found = self
            .client
            .execute(
                "return axe.run(document, { resultTypes: ['violations'] }).then(r => r.violations \
                 .filter(v => v.impact === 'serious' || v.impact === 'critical') \
                 .map(v => v.id + ' (' + v.impact + '): ' + v.help + ' — ' + \
                      v.nodes.map(n => n.target.join(' ')).join(', ')));",
                vec![],
            )
            .await
            .expect("run axe-core");
        let violations: Vec<String> = serde_json::from_value(found).unwrap_or_default();
        assert!(
            violations.is_empty(),
            "{name} ({}): accessibility violations:\n{}",
            self.path().await,
            violations.join("\n")
        );
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = if std::env::var("SAASKIT_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
            root().join("docs/screenshots")
        } else {
            root().join("target/screenshots").join(&self.journey)
        };
        std::fs::create_dir_all(&dir).expect("the screenshots folder");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write the screenshot");
    }

    /// Runs `script` in the page and returns what it returns.
    pub async fn run(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .expect("run a script")
    }
}

fn xpath_literal(s: &str) -> String {
    if s.contains('\'') {
        format!("\"{s}\"")
    } else {
        format!("'{s}'")
    }
}

/// The first link in a message that leads to `path` (`/verify-email`, say).
pub fn link_in(message: &str, path: &str) -> String {
    let at = message
        .find(&format!("{path}?key="))
        .unwrap_or_else(|| panic!("no {path} link in:\n{message}"));
    let start = message[..at].rfind("http").unwrap_or(at);
    message[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"' && *c != '<')
        .collect()
}
