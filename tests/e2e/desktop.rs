//! The desktop app end to end, as a person meets it: the real `akhrot-desktop` binary in a real
//! WebKitGTK window under Xvfb, driven over WebDriver (tauri-driver + Debian's WebKitWebDriver),
//! with a real gnome-keyring on a private D-Bus session and a real OAuth server.
//!
//! It shows that the app starts and its window shows the Connections page; that an agent's
//! blocked token request opens the prompt window, which says it is a token hand-out, ignores
//! every answer for its first second (and again when the shown request changes: then a proxied
//! call, shown with its method and URL), never focuses a button that allows, lets no Enter or
//! Space approve, and where clicking Allow completes the agent's HTTP request with 200 and
//! Deny refuses the proxied call; that the app started with `AKHROT_PASSPHRASE` gives it to no
//! process it starts (the browser, WebKit's); that a second launch with an `akhrot://oauth/callback?…` URL completes
//! a pending OAuth session in the running app; that SIGTERM shuts it down cleanly; and that when
//! `akhrot serve` already owns the data directory, the app shows a page saying so (and quits when
//! it is closed) instead of opening the vault.
//!
//! Run it through `scripts/with-desktop` (scripts/test does), after
//! `cargo build -p akhrot-desktop` and installing tauri-driver into target/tools:
//!   scripts/with-desktop cargo test -p akhrot-e2e --test desktop -- --test-threads=1
//! (one at a time: each test runs its own tauri-driver, WebKitWebDriver and WebKit processes).
//! `AKHROT_SCREENSHOTS=<dir>` saves screenshots of the screen (ImageMagick `import`).
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use akhrot_e2e::*;
use serde_json::{Value, json};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn desktop_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("AKHROT_DESKTOP_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test> -> target/<profile>/akhrot-desktop
    let exe = std::env::current_exe().unwrap();
    let p = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("akhrot-desktop");
    assert!(
        p.exists(),
        "{} does not exist: build it first (cargo build -p akhrot-desktop)",
        p.display()
    );
    p
}

fn tauri_driver_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("AKHROT_TAURI_DRIVER") {
        return PathBuf::from(p);
    }
    let p = workspace().join("target/tools/bin/tauri-driver");
    assert!(
        p.exists(),
        "{} does not exist: cargo install tauri-driver --version '^2' --locked --root target/tools",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http() -> ureq::Agent {
    http_agent(Some(Duration::from_secs(90)))
}

fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn screenshot(name: &str) {
    let Some(dir) = std::env::var_os("AKHROT_SCREENSHOTS") else {
        return;
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(format!("{name}.png"));
    let status = Command::new("import")
        .args(["-window", "root"])
        .arg(&out)
        .status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "screenshot {} failed (is ImageMagick installed?)",
        out.display()
    );
}

/// A running tauri-driver (which runs WebKitWebDriver, which launches the app).
struct Driver {
    child: Child,
    base: String,
    http: ureq::Agent,
}

impl Driver {
    fn start(env: &[(String, String)]) -> Self {
        let port = free_port();
        let native = free_port();
        let mut cmd = Command::new(tauri_driver_bin());
        cmd.args([
            "--port",
            &port.to_string(),
            "--native-port",
            &native.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let d = Self {
            child,
            base,
            http: http(),
        };
        wait_for("tauri-driver to listen", 30, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        d
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        match self.try_call(method, path, body) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }

    /// A WebDriver command; `Err` with the status and answer when the driver refuses it.
    fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let mut r = match (method, body) {
            ("GET", _) => self.http.get(&url).call().unwrap(),
            ("DELETE", _) => self.http.delete(&url).call().unwrap(),
            (_, b) => self
                .http
                .post(&url)
                .send_json(b.unwrap_or_else(|| json!({})))
                .unwrap(),
        };
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status >= 400 {
            return Err(format!("WebDriver {method} {path}: {status} {v}"));
        }
        Ok(v["value"].clone())
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebDriver session on the app.
struct Session<'a> {
    driver: &'a Driver,
    id: String,
}

impl<'a> Session<'a> {
    fn new(driver: &'a Driver, app: &Path) -> Self {
        let v = driver.call(
            "POST",
            "/session",
            Some(json!({"capabilities": {"alwaysMatch": {
                "browserName": "wry",
                "tauri:options": {"application": app},
            }}})),
        );
        let id = v["sessionId"].as_str().unwrap().to_owned();
        Self { driver, id }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.driver
            .call(method, &format!("/session/{}{path}", self.id), body)
    }

    fn handles(&self) -> Vec<String> {
        self.call("GET", "/window/handles", None)
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap().to_owned())
            .collect()
    }

    fn current(&self) -> String {
        self.call("GET", "/window", None)
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn switch_to(&self, handle: &str) {
        self.call("POST", "/window", Some(json!({ "handle": handle })));
    }

    fn title(&self) -> String {
        self.call("GET", "/title", None)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// The text of the first element matching `css`, if there is one. `None` too while the page
    /// cannot run scripts (it is navigating: the sign-in link redirects to the UI).
    fn text(&self, css: &str) -> Option<String> {
        let script = format!(
            "const e = document.querySelector({}); return e ? e.textContent : null;",
            serde_json::to_string(css).unwrap()
        );
        let v = self
            .driver
            .try_call(
                "POST",
                &format!("/session/{}/execute/sync", self.id),
                Some(json!({ "script": script, "args": [] })),
            )
            .ok()?;
        v.as_str().map(str::to_owned)
    }

    /// Runs `script` (a function body) in the page and returns what it returns.
    fn exec(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Runs `script` in the page; it answers by calling `arguments[0]` (the callback).
    fn exec_async(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/async",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Presses and releases each key (WebDriver key codes: "\u{e007}" is Enter) as real
    /// keyboard input to the focused window, wherever the page's focus is.
    fn press(&self, keys: &[&str]) {
        let mut actions = Vec::new();
        for k in keys {
            actions.push(json!({"type": "keyDown", "value": k}));
            actions.push(json!({"type": "keyUp", "value": k}));
        }
        self.call(
            "POST",
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        );
        let _ = self
            .driver
            .try_call("DELETE", &format!("/session/{}/actions", self.id), None);
    }

    /// Clicks an element. A window that closes because of the click (the prompt, once
    /// answered) is not an error.
    fn click(&self, css: &str) {
        let v = self.call(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        );
        let id = v
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap()
            .to_owned();
        let path = format!("/session/{}/element/{id}/click", self.id);
        match self.driver.try_call("POST", &path, Some(json!({}))) {
            Ok(_) => {}
            // The click answered the prompt and the prompt closed itself before the driver
            // replied; the caller checks what the click did.
            Err(e) if e.contains("no such window") => {}
            Err(e) => panic!("{e}"),
        }
    }
}

/// The app's loopback API, found through the `server.json` the owner writes.
struct Api {
    base: String,
    data: PathBuf,
    http: ureq::Agent,
}

impl Api {
    fn find(data: &Path) -> Self {
        let base = wait_for("the app's server.json", 60, || {
            let text = std::fs::read_to_string(data.join("server.json")).ok()?;
            let v: Value = serde_json::from_str(&text).ok()?;
            v["baseUrl"].as_str().map(str::to_owned)
        });
        Self {
            base,
            data: data.to_owned(),
            http: http(),
        }
    }

    fn pid(&self) -> u32 {
        let text = std::fs::read_to_string(self.data.join("server.json")).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        u32::try_from(v["pid"].as_u64().unwrap()).unwrap()
    }

    fn admin(&self) -> String {
        std::fs::read_to_string(self.data.join("admin.token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    fn send(&self, method: &str, path: &str, bearer: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {bearer}");
        let mut r = match body {
            None => self
                .http
                .get(&url)
                .header("Authorization", &auth)
                .call()
                .unwrap(),
            Some(b) => {
                assert_eq!(method, "POST");
                self.http
                    .post(&url)
                    .header("Authorization", &auth)
                    .send_json(b)
                    .unwrap()
            }
        };
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn admin_post(&self, path: &str, body: Value) -> Value {
        let (s, v) = self.send("POST", path, &self.admin(), Some(body));
        assert_eq!(s, 200, "{path}: {v}");
        v["data"].clone()
    }
}

/// Fails the test when there is no X display to run the app on.
fn require_display() {
    assert!(
        std::env::var_os("DISPLAY").is_some(),
        "no X display: run this through scripts/with-desktop"
    );
}

/// The app's environment: its data and config directories in `dirs`, any free port, info logs.
fn app_env(dirs: &Dirs) -> Vec<(String, String)> {
    vec![
        ("AKHROT_DATA_DIR".into(), dirs.data().display().to_string()),
        (
            "AKHROT_CONFIG_DIR".into(),
            dirs.config().display().to_string(),
        ),
        ("AKHROT_PORT".into(), "0".into()),
        ("RUST_LOG".into(), "info".into()),
    ]
}

/// WebDriver key codes.
const ENTER: &str = "\u{e007}";
const SPACE: &str = "\u{e00d}";

/// The prompt page's arming state: its delay, how long ago the shown request appeared, whether
/// the answer buttons (deny, allow for an hour, allow once) are disabled, the hint.
fn prompt_state(session: &Session) -> Value {
    session.exec(
        "const p = window.akhrotPrompt, s = p.state(); \
         const b = (t) => { const e = document.querySelector(`[data-testid=${t}]`); return e ? e.disabled : null; }; \
         const hint = document.querySelector('[data-testid=arming]'); \
         return { delay: p.ARM_DELAY_MS, since: s.sinceShown, armed: s.armed, \
                  disabled: [b('deny'), b('allow-hour'), b('allow')], hint: !!hint && !hint.hidden };",
    )
}

/// Neither now nor at any moment recorded since (`window.allowFocused`) did an allowing button
/// have the focus.
fn assert_no_allow_focus(session: &Session) {
    let v = session.exec(
        "const a = document.activeElement; \
         return { active: (a && a.dataset && a.dataset.testid) || (a && a.tagName), \
                  recorded: window.allowFocused || [] };",
    );
    let active = v["active"].as_str().unwrap_or("");
    assert!(
        !active.starts_with("allow"),
        "an allowing button has the focus: {v}"
    );
    assert_eq!(
        v["recorded"],
        json!([]),
        "an allowing button had the focus: {v}"
    );
}

#[test]
fn the_desktop_app_prompts_completes_deep_links_and_quits_on_sigterm() {
    require_display();
    let dirs = Dirs::new();
    let oidc = Oidc::start(&[]);
    write_provider_file(
        &dirs,
        "idp",
        &oidc.provider_toml("idp", "client_secret_basic"),
    );
    let app = desktop_bin();
    let env = app_env(&dirs);

    // 1. The app starts and its window shows the Connections page, signed in.
    let driver = Driver::start(&env);
    let session = Session::new(&driver, &app);
    let api = Api::find(&dirs.data());
    let heading = wait_for("the Connections page", 60, || {
        session
            .text("main h1")
            .filter(|t| t.contains("Connections"))
    });
    assert_eq!(heading.trim(), "Connections");
    // Signed in: the catalog loads (it needs the session cookie the sign-in link set).
    wait_for("the provider catalog", 60, || {
        session
            .text("main")
            .filter(|t| t.contains("Google") && !t.contains("Loading"))
    });
    let main_window = session.current();

    // 2. An agent's token request waits under the `ask` policy; the prompt window opens and
    //    says it is a token hand-out. For its first moment every answer is ignored, no button
    //    that allows ever has the focus, and Enter or Space typed into it approves nothing.
    let key = api.admin_post("/admin/keys", json!({"name": "e2e-agent"}))["key"]
        .as_str()
        .unwrap()
        .to_owned();
    api.admin_post(
        "/admin/connections",
        json!({"provider": "openai", "fields": {"apiKey": "sk-desktop-e2e"}}),
    );
    // The agent's HTTP call, in a thread: it blocks until the prompt is answered.
    let agent_call = |method: &'static str, path: &str, body: Option<Value>| {
        let url = format!("{}{path}", api.base);
        let key = key.clone();
        std::thread::spawn(move || {
            let auth = format!("Bearer {key}");
            let mut r = match body {
                Some(b) => http()
                    .post(&url)
                    .header("Authorization", &auth)
                    .send_json(b)
                    .unwrap(),
                None => {
                    assert_eq!(method, "GET");
                    http()
                        .get(&url)
                        .header("Authorization", &auth)
                        .call()
                        .unwrap()
                }
            };
            let status = r.status().as_u16();
            let text = r.body_mut().read_to_string().unwrap();
            (
                status,
                serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)),
            )
        })
    };
    let fetch = agent_call(
        "POST",
        "/tokens/fetch",
        Some(json!({"provider": "openai", "reason": "draft the weekly report"})),
    );
    let prompt = wait_for("the prompt window", 60, || {
        session.handles().into_iter().find(|h| *h != main_window)
    });
    session.switch_to(&prompt);
    let title = wait_for("the prompt's request", 30, || {
        session
            .text("[data-testid=title]")
            .filter(|t| t.contains("e2e-agent"))
    });
    // Right after it appeared, the buttons are disabled and say why (unless this machine took
    // the whole delay to get here).
    let st = prompt_state(&session);
    assert_eq!(st["delay"], 1000, "{st}");
    if st["since"].as_f64().unwrap() < 900.0 {
        assert_eq!(st["disabled"], json!([true, true, true]), "{st}");
        assert_eq!(st["hint"], true, "{st}");
    }
    // Any focus an allowing button gets from now on is recorded.
    session.exec(
        "window.allowFocused = []; document.addEventListener('focusin', (e) => { \
         const t = e.target.dataset && e.target.dataset.testid; \
         if (t && t.startsWith('allow')) window.allowFocused.push(t); }); return null;",
    );
    assert_no_allow_focus(&session);
    assert_eq!(title, "e2e-agent wants an OpenAI token");
    let kind = session.text("[data-testid=kind]").unwrap();
    assert!(
        kind.contains("Token hand-out") && kind.contains("hold the token itself"),
        "{kind}"
    );
    assert_eq!(session.text("[data-testid=request]"), None);
    assert_eq!(
        session.text("[data-testid=reason]").as_deref(),
        Some("draft the weekly report")
    );
    assert!(session.title().contains("Akhrot"), "{}", session.title());
    // Keys typed into the prompt, at once and after the delay, answer nothing.
    session.press(&[ENTER, SPACE, ENTER]);
    std::thread::sleep(Duration::from_millis(1500));
    session.press(&[ENTER, SPACE]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !fetch.is_finished(),
        "a keystroke answered the prompt: {:?}",
        fetch.join()
    );
    assert_no_allow_focus(&session);

    // 2b. A proxied call of the same agent waits behind it.
    let proxied = agent_call("GET", "/proxy/openai/models?limit=5", None);
    wait_for("the second prompt to queue", 30, || {
        session
            .text("[data-testid=count]")
            .filter(|t| t.contains("1 of 2"))
    });
    wait_for("the buttons to work", 10, || {
        prompt_state(&session)["armed"]
            .as_bool()
            .unwrap()
            .then_some(())
    });
    screenshot("desktop-prompt");
    assert!(!fetch.is_finished(), "the agent waits for the answer");
    session.click("[data-testid=allow]");
    let (status, body) = fetch.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["accessToken"], "sk-desktop-e2e");

    // 2c. The proxied call's prompt replaces it: the buttons are disabled again, so a click or
    //     key meant for the old prompt cannot answer the new one; it shows the method and URL.
    let st = session.exec_async(
        "const done = arguments[0]; const t0 = performance.now(); \
         (function poll() { \
           const k = document.querySelector('[data-testid=kind]'); \
           if (k && k.dataset.kind === 'proxy') { \
             const allow = document.querySelector('[data-testid=allow]'); \
             const hour = document.querySelector('[data-testid=allow-hour]'); \
             const s = window.akhrotPrompt.state(); \
             const a = document.activeElement; \
             const r = { disabled: allow.disabled && hour.disabled, since: s.sinceShown, \
               hint: !document.querySelector('[data-testid=arming]').hidden, clicked: false, \
               active: (a && a.dataset && a.dataset.testid) || (a && a.tagName) }; \
             window.allowFocused = []; \
             if (r.disabled) { allow.click(); hour.click(); r.clicked = true; } \
             return done(r); } \
           if (performance.now() - t0 > 20000) return done(null); \
           setTimeout(poll, 5); })();",
    );
    assert_eq!(st["disabled"], true, "not disabled when it changed: {st}");
    assert_eq!(st["hint"], true, "{st}");
    assert_eq!(st["clicked"], true, "{st}");
    // (The click on Allow above focused it; this prompt's own focus is elsewhere.)
    assert!(
        !st["active"].as_str().unwrap_or("").starts_with("allow"),
        "{st}"
    );
    session.press(&[ENTER, SPACE]);
    assert_eq!(
        session.text("[data-testid=title]").as_deref(),
        Some("e2e-agent wants to call OpenAI through Akhrot")
    );
    assert_eq!(
        session.text("[data-testid=request]").as_deref(),
        Some("GET https://api.openai.com/v1/models?limit")
    );
    let kind = session.text("[data-testid=kind]").unwrap();
    assert!(
        kind.contains("Proxied call") && kind.contains("never sees the token"),
        "{kind}"
    );
    std::thread::sleep(Duration::from_millis(1500));
    session.press(&[ENTER, SPACE, ENTER]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !proxied.is_finished(),
        "a click or key in the first moment answered the new prompt: {:?}",
        proxied.join()
    );
    assert_no_allow_focus(&session);
    screenshot("desktop-prompt-proxy");
    // Deny, clicked after the delay, denies it.
    session.click("[data-testid=deny]");
    let (status, body) = proxied.join().unwrap();
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "APPROVAL_DENIED", "{body}");
    // The prompt closes when nothing else waits.
    wait_for("the prompt window to close", 30, || {
        (!session.handles().contains(&prompt)).then_some(())
    });
    session.switch_to(&main_window);

    // 3. A second launch with an akhrot://oauth/callback URL completes a pending session in the
    //    running app (single instance + deep link), through the broker.
    api.admin_post(
        "/admin/clients",
        json!({"provider": "idp", "clientId": "basic-client", "clientSecret": "basic-secret", "redirect": "deep_link"}),
    );
    // Starting a consent session is an agent request like any other: allowed by policy here, so
    // that no prompt opens.
    api.admin_post(
        "/admin/policies",
        json!({"agent": "e2e-agent", "provider": "idp", "mode": "allow"}),
    );
    let (s, v) = api.send(
        "POST",
        "/oauth/sessions",
        &key,
        Some(json!({"provider": "idp"})),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["redirectUri"], "akhrot://oauth/callback");
    let sid = v["data"]["sessionId"].as_str().unwrap().to_owned();
    let consent = v["data"]["url"].as_str().unwrap().to_owned();
    let link = Browser::new().authorize(&consent, "alice", false, "akhrot://oauth/callback");
    assert!(link.contains("code=") && link.contains("state="), "{link}");
    // Launches a second instance with `url`, as the desktop does for a deep link; it hands the
    // URL to the running app and exits. Returns what it said on stderr.
    let second_launch = |url: &str| -> Vec<String> {
        let mut second = Command::new(&app);
        second
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in &env {
            second.env(k, v);
        }
        let started = Instant::now();
        let mut second = second.spawn().unwrap();
        let stderr = second.stderr.take().unwrap();
        let lines = std::thread::spawn(move || {
            BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        });
        let status = wait_for("the second instance to hand over and exit", 30, || {
            second.try_wait().unwrap()
        });
        assert!(status.success(), "second instance: {status}");
        assert!(started.elapsed() < Duration::from_secs(30));
        lines.join().unwrap()
    };
    let session_of = |sid: &str| {
        let (s, v) = api.send("GET", &format!("/oauth/sessions/{sid}"), &key, None);
        assert_eq!(s, 200, "{v}");
        v["data"].clone()
    };

    // 3a. Forged deep links (any local process can open an akhrot:// URL): the real code with a
    //     made-up state, with the state given twice, and without a state. The app must refuse
    //     each without spending the code or failing the session; the real link below then
    //     completes it, which the provider allows only if the single-use code was never exchanged.
    let (base, query) = link.split_once('?').unwrap();
    let params: Vec<&str> = query.split('&').collect();
    let state_param = *params.iter().find(|p| p.starts_with("state=")).unwrap();
    let others: Vec<&str> = params
        .iter()
        .copied()
        .filter(|p| !p.starts_with("state="))
        .collect();
    let forged = [
        format!(
            "{base}?{}&state=forged-{}",
            others.join("&"),
            std::process::id()
        ),
        format!("{base}?{query}&{state_param}"),
        format!("{base}?{}", others.join("&")),
    ];
    for url in &forged {
        let said = second_launch(url);
        // The running app has handled the URL once the second instance exits; give its event
        // loop a moment, then the session must still wait.
        std::thread::sleep(Duration::from_millis(500));
        let v = session_of(&sid);
        assert_eq!(
            v["status"], "pending",
            "after {url}: {v}; second instance said: {said:?}"
        );
    }

    // 3b. The real link completes it.
    let said = second_launch(&link);
    let session_state = wait_for("the session to complete", 30, || {
        let v = session_of(&sid);
        (v["status"] != "pending").then_some(v)
    });
    assert_eq!(
        session_state["status"], "completed",
        "{session_state}; second instance said: {said:?}"
    );
    assert_eq!(session_state["account"], "alice@example.test");
    // 3c. A replayed link changes nothing: the session stays completed and the stored
    //     connection (its updatedAt included) is the same.
    let idp_connections = || {
        let (s, v) = api.send("GET", "/admin/connections", &api.admin(), None);
        assert_eq!(s, 200, "{v}");
        let all = v["data"].as_array().unwrap().clone();
        all.into_iter()
            .filter(|c| c["provider"] == "idp")
            .collect::<Vec<_>>()
    };
    let before = idp_connections();
    assert_eq!(before.len(), 1, "{before:?}");
    let said = second_launch(&link);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(session_of(&sid)["status"], "completed", "{said:?}");
    assert_eq!(
        idp_connections(),
        before,
        "a replayed deep link changed the connection"
    );
    // The window shows both connections (the UI follows the owner's events).
    wait_for("the new connections in the window", 30, || {
        session
            .text("main")
            .filter(|t| t.contains("alice@example.test") && t.contains("OpenAI"))
    });
    screenshot("desktop-window");

    // 4. SIGTERM quits like Quit: the owner stops cleanly and removes its files.
    let pid = api.pid();
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for("the app to shut down cleanly", 30, || {
        (!dirs.data().join("server.json").exists() && !dirs.data().join("admin.token").exists())
            .then_some(())
    });
    drop(driver);
}

/// The pids of `akhrot-desktop` processes started under `root` (tauri-driver, then
/// WebKitWebDriver, then the app), from /proc.
fn desktop_pids_under(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`: comm may hold spaces, so split after the last ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head
            .split_once('(')
            .map(|(_, c)| c.to_owned())
            .unwrap_or_default();
        let Some(ppid) = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        parent_of.push((pid, ppid, comm));
    }
    let mut under = vec![root];
    let mut found = Vec::new();
    while let Some(p) = under.pop() {
        for (pid, ppid, comm) in &parent_of {
            if *ppid == p {
                under.push(*pid);
                if comm == "akhrot-desktop" {
                    found.push(*pid);
                }
            }
        }
    }
    found
}

#[test]
fn the_desktop_app_says_so_when_akhrot_serve_already_owns_the_vault() {
    require_display();
    let dirs = Dirs::new();
    // `akhrot serve` owns the data directory first, with a credential in its vault.
    let server = Server::start(&dirs);
    server.add("openai", None, json!({"apiKey": "sk-owned-by-serve"}));
    let owner_before = std::fs::read_to_string(dirs.data().join("server.json")).unwrap();
    let admin_before = server.admin_token();
    let env = app_env(&dirs);
    let driver = Driver::start(&env);
    let session = Session::new(&driver, &desktop_bin());

    // The app's only window says that `akhrot serve` (its pid and port) owns the vault.
    let title = wait_for("the notice page", 60, || {
        session
            .text("#title")
            .filter(|t| !t.trim().is_empty() && t != "Akhrot")
    });
    assert_eq!(title, "Akhrot is already running");
    let message = session.text("#message").unwrap();
    assert!(
        message.contains("already running")
            && message.contains(&format!("pid {}", server.pid()))
            && message.contains(&format!("port {}", server.port)),
        "{message}"
    );
    assert!(
        session.title().contains("already running"),
        "{}",
        session.title()
    );
    assert_eq!(session.handles().len(), 1, "no main window, no prompt");
    let app_pids = desktop_pids_under(driver.child.id());
    assert_eq!(app_pids.len(), 1, "one app process: {app_pids:?}");
    screenshot("desktop-already-running");

    // It did not fight over the vault: it holds no handle on it, `akhrot serve` still owns it
    // (its server.json and admin token are untouched) and serves the credential.
    let vault = std::fs::canonicalize(dirs.vault()).unwrap();
    let open: Vec<PathBuf> = std::fs::read_dir(format!("/proc/{}/fd", app_pids[0]))
        .unwrap()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .collect();
    assert!(
        !open
            .iter()
            .any(|f| f.to_string_lossy().starts_with(&*vault.to_string_lossy())),
        "the app opened the vault: {open:?}"
    );
    assert_eq!(
        std::fs::read_to_string(dirs.data().join("server.json")).unwrap(),
        owner_before
    );
    assert_eq!(server.admin_token(), admin_before);
    let (s, v) = server.get("/ai/skill", None);
    assert_eq!(s, 200, "{v}");
    let (s, v) = server.get("/admin/connections", Some(&admin_before));
    assert_eq!(s, 200, "{v}");
    assert!(v.to_string().contains("openai"), "{v}");

    // Closing the notice quits the app (it owns nothing that would keep it in the tray).
    let _ = driver.try_call("DELETE", &format!("/session/{}/window", session.id), None);
    wait_for("the app to quit when its notice closes", 30, || {
        desktop_pids_under(driver.child.id())
            .is_empty()
            .then_some(())
    });
    let (s, _) = server.get("/ai/skill", None);
    assert_eq!(s, 200, "`akhrot serve` keeps running");
    drop(driver);
    assert!(server.stop().success());
}

/// Every process under `root` (its descendants, not `root`), from /proc.
fn descendants(root: u32) -> Vec<(u32, String)> {
    let mut procs = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head
            .split_once('(')
            .map(|(_, c)| c.to_owned())
            .unwrap_or_default();
        if let Some(ppid) = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok())
        {
            procs.push((pid, ppid, comm));
        }
    }
    let mut todo = vec![root];
    let mut found = Vec::new();
    while let Some(p) = todo.pop() {
        for (pid, ppid, comm) in &procs {
            if *ppid == p {
                todo.push(*pid);
                found.push((*pid, comm.clone()));
            }
        }
    }
    found
}

/// Issue 15, item 7: started with `AKHROT_PASSPHRASE` (and an agent key) in its environment, the
/// app opens the vault with the passphrase, yet neither the browser it opens for a link nor any
/// process it runs (WebKit's web and network processes) nor its own environment holds them.
#[test]
fn the_desktop_app_gives_no_secret_to_the_programs_it_starts() {
    require_display();
    const PASS: &str = "desktop-e2e passphrase that must not leak";
    const AGENT_KEY: &str = "akhrot_e2eleak_agent-key-that-must-not-leak";
    let dirs = Dirs::new();
    let browser = FakeBrowser::new();
    let mut env = app_env(&dirs);
    env.push(("AKHROT_PASSPHRASE".into(), PASS.into()));
    env.push(("AKHROT_API_KEY".into(), AGENT_KEY.into()));
    env.push(("PATH".into(), browser.path()));
    let driver = Driver::start(&env);
    let session = Session::new(&driver, &desktop_bin());
    let api = Api::find(&dirs.data());
    wait_for("the Connections page", 60, || {
        session
            .text("main h1")
            .filter(|t| t.contains("Connections"))
    });
    // The app did get the passphrase: the vault is a passphrase vault.
    let (s, v) = api.send("GET", "/admin/status", &api.admin(), None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["vault"]["keySource"], "passphrase", "{v}");

    // A page outside the UI opens in the person's browser (the window stays on the UI).
    session.exec(
        "window.location.href = 'https://example.test/consent?from=desktop-e2e'; return null;",
    );
    let seen = browser.seen(30).expect("the browser never started");
    assert!(
        seen.contains("URL=https://example.test/consent?from=desktop-e2e"),
        "{seen}"
    );
    for leak in [
        PASS,
        AGENT_KEY,
        "AKHROT_PASSPHRASE",
        "AKHROT_API_KEY",
        "GDK_GL",
    ] {
        assert!(!seen.contains(leak), "the browser got {leak}: {seen}");
    }
    // Settings are not secrets: the browser may see them.
    assert!(seen.contains("AKHROT_DATA_DIR="), "{seen}");

    // Neither the app's own environment nor that of any process it started holds them.
    let pid = api.pid();
    let mut procs = descendants(pid);
    procs.push((pid, "akhrot-desktop".into()));
    assert!(
        procs.iter().any(|(_, c)| c.starts_with("WebKit")),
        "no WebKit process under the app: {procs:?}"
    );
    for (p, comm) in &procs {
        let Ok(environ) = std::fs::read(format!("/proc/{p}/environ")) else {
            continue;
        };
        let environ = String::from_utf8_lossy(&environ);
        for leak in [PASS, AGENT_KEY, "AKHROT_PASSPHRASE=", "AKHROT_API_KEY="] {
            assert!(
                !environ.contains(leak),
                "{comm} (pid {p}) has {leak} in its environment"
            );
        }
    }

    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for("the app to shut down cleanly", 30, || {
        (!dirs.data().join("server.json").exists()).then_some(())
    });
    drop(driver);
}
