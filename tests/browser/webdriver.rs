//! A small W3C WebDriver client over reqwest, driving Debian's chromium through chromedriver.
//!
//! The test needs a dozen commands (navigate, find, click, type, read text, run a script,
//! switch windows, screenshot, read the console log); a full WebDriver crate would add a large
//! dependency tree (hyper stacks, the `webdriver` crate's ICU segmenter) to build on two cores
//! for what is a few JSON calls. The console log is chromedriver's `goog:loggingPrefs` extension.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// WebDriver's key codes.
pub const TAB: &str = "\u{E004}";
pub const ENTER: &str = "\u{E007}";

/// A headless chromium session; the driver is killed on drop.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Child,
    shots: PathBuf,
}

/// Where a program is, or a message saying how to get it.
fn program(name: &str) -> String {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p.display().to_string();
        }
    }
    panic!("{name} is not installed: `scripts/services.sh tools` (run by `make test`) installs chromium and chromium-driver")
}

impl Browser {
    /// Starts chromedriver and a headless chromium with a phone-sized window, in `lang`;
    /// screenshots go to `shots`.
    pub async fn start(shots: &Path, lang: &str) -> Browser {
        Browser::start_with(shots, lang, None).await
    }

    /// As [`Browser::start`], in its own browser profile at `profile` (emptied first): a second
    /// person's browser, sharing no cookies or storage with any other.
    pub async fn start_in_profile(shots: &Path, lang: &str, profile: &Path) -> Browser {
        let _ = std::fs::remove_dir_all(profile);
        std::fs::create_dir_all(profile).expect("profile folder");
        Browser::start_with(shots, lang, Some(profile)).await
    }

    async fn start_with(shots: &Path, lang: &str, profile: Option<&Path>) -> Browser {
        std::fs::create_dir_all(shots).expect("screenshot folder");
        let port = crate::common::free_port();
        let log = std::fs::File::create(shots.join("chromedriver.log")).expect("driver log");
        let driver = Command::new(program("chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("chromedriver starts");
        assert!(crate::common::wait_for_port(port, Duration::from_secs(20)), "chromedriver did not listen");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=412,915".into(),
            format!("--lang={lang}"),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-search-engine-choice-screen".into(),
        ];
        if let Some(p) = profile {
            args.push(format!("--user-data-dir={}", p.display()));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": program("chromium"),
                "args": args,
                "prefs": {"intl.accept_languages": lang}
            }
        }}});
        let url = format!("http://127.0.0.1:{port}/session");
        let r: Value = http.post(&url).json(&caps).send().await.expect("new session").json().await.unwrap();
        let session = r["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {r}")).to_owned();
        Browser { http, session: format!("{url}/{session}"), driver, shots: shots.to_owned() }
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut req = self.http.request(method, format!("{}{path}", self.session));
        // A POST carries a JSON body always ({} when there is nothing to say).
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r: Value = req.send().await.map_err(|e| e.to_string())?.json().await.map_err(|e| e.to_string())?;
        match r["value"].get("error") {
            Some(e) => Err(format!("{e}: {}", r["value"]["message"])),
            None => Ok(r["value"].clone()),
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.cmd(reqwest::Method::POST, path, Some(body)).await.unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    async fn get(&self, path: &str) -> Value {
        self.cmd(reqwest::Method::GET, path, None).await.unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    pub async fn url(&self) -> String {
        self.get("/url").await.as_str().unwrap_or_default().to_owned()
    }

    pub async fn refresh(&self) {
        self.post("/refresh", json!({})).await;
    }

    async fn find(&self, css: &str) -> Option<String> {
        let r = self.cmd(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css}))).await;
        r.ok().and_then(|v| v[ELEMENT].as_str().map(str::to_owned))
    }

    async fn element(&self, css: &str) -> String {
        match self.find(css).await {
            Some(e) => e,
            None => panic!("no element {css} on {}", self.url().await),
        }
    }

    /// The rendered text of `css` ("" when it is hidden or missing).
    pub async fn text(&self, css: &str) -> String {
        let Some(e) = self.find(css).await else { return String::new() };
        let r = self.cmd(reqwest::Method::GET, &format!("/element/{e}/text"), None).await;
        r.ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
    }

    /// Clicks `css` as it is on the page now. An element found and then replaced before the
    /// click (the document swapped by a redirect that finished late on a busy machine: "stale
    /// element reference") is found again, as a person clicks the button they see now; a few
    /// tries, then the error.
    pub async fn click(&self, css: &str) {
        for _ in 0..5 {
            let e = self.element(css).await;
            match self.cmd(reqwest::Method::POST, &format!("/element/{e}/click"), Some(json!({}))).await {
                Ok(_) => return,
                Err(err) if err.contains("stale element reference") => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Err(err) => panic!("click {css}: {err}"),
            }
        }
        panic!("click {css}: the element went stale five times in a row on {}", self.url().await);
    }

    /// Clears `css` and types `text` into it.
    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css).await;
        self.post(&format!("/element/{e}/clear"), json!({})).await;
        self.post(&format!("/element/{e}/value"), json!({ "text": text })).await;
    }

    /// Presses and releases one key on whatever has the focus, as a keyboard does (WebDriver
    /// actions; `key` is a character or a WebDriver key code such as TAB, ENTER).
    pub async fn press(&self, key: &str) {
        let actions = json!({"actions": [{"type": "key", "id": "keyboard",
            "actions": [{"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}]}]});
        self.post("/actions", actions).await;
    }

    /// The id of the element that has the focus ("" for none or one without an id).
    pub async fn focused(&self) -> String {
        self.eval("return document.activeElement ? document.activeElement.id : '';", json!([]))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Chooses the file at `path` in the file input `css`.
    pub async fn attach(&self, css: &str, path: &Path) {
        let e = self.element(css).await;
        self.post(&format!("/element/{e}/value"), json!({ "text": path.to_str().expect("a UTF-8 path") })).await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns what it returns.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": args })).await
    }

    /// Runs axe-core (`scripts/services.sh tools` installs it into .local/axe) on the page as
    /// it stands, against WCAG 2.0-2.2 A and AA, and panics listing every violation: rule,
    /// impact, help and the elements it names. `state` says which page and state in the message.
    /// The script is sent as the WebDriver script itself (so the page's CSP, which forbids
    /// eval, does not apply to it).
    pub async fn assert_accessible(&self, state: &str) {
        let violations = self.accessibility_violations().await;
        if !violations.is_empty() {
            self.screenshot(&format!("axe-{state}")).await;
        }
        assert!(
            violations.is_empty(),
            "axe-core: {} WCAG A/AA violation(s) on {state} ({}):\n{}",
            violations.len(),
            self.url().await,
            violations
                .iter()
                .map(|v| format!(
                    "- {} ({}): {}\n    {}",
                    v["id"],
                    v["impact"],
                    v["help"],
                    v["nodes"]
                        .as_array()
                        .map(|n| n
                            .iter()
                            .map(|x| x.as_str().unwrap_or_default().replace('\n', " "))
                            .collect::<Vec<_>>()
                            .join("\n    "))
                        .unwrap_or_default()
                ))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    /// axe-core's WCAG 2.0-2.2 A and AA violations on the page as it stands (id, impact, help,
    /// nodes).
    pub async fn accessibility_violations(&self) -> Vec<Value> {
        let axe = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/.local/axe/node_modules/axe-core/axe.min.js"
        ))
        .expect("axe-core in .local/axe (scripts/services.sh tools installs it)");
        let script = format!(
            "{axe}\nconst done = arguments[arguments.length - 1];\n\
             axe.run(document, {{ runOnly: {{ type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'] }} }})\n\
               .then(r => done(r.violations.map(v => ({{ id: v.id, impact: v.impact, help: v.help, \
                 nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ') + ': ' + n.failureSummary) }}))))\n\
               .catch(e => done([{{ id: 'axe-error', impact: 'error', help: String(e), nodes: [] }}]));"
        );
        let violations = self.post("/execute/async", json!({ "script": script, "args": [] })).await;
        violations.as_array().cloned().expect("axe-core's answer is a list")
    }

    /// Waits (up to `within`) until `css`'s text satisfies `ok`; the last text either way.
    pub async fn wait_text(&self, css: &str, within: Duration, ok: impl Fn(&str) -> bool) -> Result<String, String> {
        let until = Instant::now() + within;
        loop {
            let t = self.text(css).await;
            if ok(&t) {
                return Ok(t);
            }
            if Instant::now() > until {
                return Err(t);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// [`wait_text`](Self::wait_text), failing with what the page showed instead: the text,
    /// the console, and a screenshot `failed-<what>.png`.
    pub async fn expect_text(&self, css: &str, within: Duration, ok: impl Fn(&str) -> bool, what: &str) -> String {
        match self.wait_text(css, within, ok).await {
            Ok(t) => t,
            Err(t) => {
                self.screenshot(&format!("failed-{}", what.replace(' ', "-"))).await;
                panic!("{what}: {css} shows {t:?} at {}; console: {:?}", self.url().await, self.console().await)
            }
        }
    }

    /// Saves a PNG of the window as `<shots>/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let b64 = self.get("/screenshot").await;
        let png = base64::engine::general_purpose::STANDARD.decode(b64.as_str().unwrap()).expect("PNG");
        std::fs::write(self.shots.join(format!("{name}.png")), png).expect("screenshot written");
    }

    /// The browser console's entries since the last call (level, message).
    pub async fn console(&self) -> Vec<(String, String)> {
        let v = self.post("/se/log", json!({"type": "browser"})).await;
        v.as_array()
            .into_iter()
            .flatten()
            .map(|e| (e["level"].as_str().unwrap_or("").to_owned(), e["message"].as_str().unwrap_or("").to_owned()))
            .collect()
    }

    /// Resizes the window (every tab of it).
    pub async fn resize(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({ "width": width, "height": height })).await;
    }

    /// Opens a new tab and returns its handle (the current tab stays current).
    pub async fn new_tab(&self) -> String {
        self.post("/window/new", json!({"type": "tab"})).await["handle"].as_str().unwrap().to_owned()
    }

    pub async fn tab(&self) -> String {
        self.get("/window").await.as_str().unwrap().to_owned()
    }

    pub async fn switch_to(&self, handle: &str) {
        self.post("/window", json!({ "handle": handle })).await;
    }
}

impl Drop for Browser {
    /// Ends the session (chromedriver closes chromium) with a plain blocking DELETE, then stops
    /// the driver.
    fn drop(&mut self) {
        use std::io::{Read, Write};
        if let Some(rest) = self.session.strip_prefix("http://") {
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            if let Ok(mut s) = std::net::TcpStream::connect(host) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = write!(
                    s,
                    "DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = s.read(&mut [0u8; 256]);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
