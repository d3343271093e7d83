//! Harness for the end-to-end tests: starts the real `akhrot serve` binary on a free port with
//! its own temporary data and config directories, and talks HTTP to it.
//!
//! The tests expect a real Secret Service on the session bus (run them through
//! `scripts/with-keyring`, as `scripts/test` does).
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `akhrot` binary built from this workspace.
pub fn bin() -> PathBuf {
    if let Some(p) = std::env::var_os("AKHROT_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> -> target/<profile>/akhrot
    let p = exe.parent().unwrap().parent().unwrap().join("akhrot");
    assert!(
        p.exists(),
        "{} does not exist: build it first (cargo build -p akhrot-cli)",
        p.display()
    );
    p
}

/// A data dir and config dir that outlive server restarts within one test.
pub struct Dirs {
    pub root: tempfile::TempDir,
}

impl Dirs {
    pub fn new() -> Self {
        Self {
            root: tempfile::Builder::new()
                .prefix("akhrot-e2e")
                .tempdir()
                .unwrap(),
        }
    }
    pub fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }
    pub fn config(&self) -> PathBuf {
        self.root.path().join("config")
    }
    pub fn vault(&self) -> PathBuf {
        self.data().join("vault.db")
    }
}

impl Default for Dirs {
    fn default() -> Self {
        Self::new()
    }
}

/// A running `akhrot serve`.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub base: String,
    pub data: PathBuf,
    pub config: PathBuf,
    http: ureq::Agent,
    log: Arc<Mutex<String>>,
}

/// Options for starting a server.
#[derive(Default, Clone)]
pub struct Opts {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub env_remove: Vec<String>,
}

impl Opts {
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_owned());
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_owned(), v.to_owned()));
        self
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

impl Server {
    /// Starts a server in fresh directories that are removed when `dirs` drops.
    pub fn start(dirs: &Dirs) -> Self {
        Self::start_with(dirs, Opts::default()).unwrap()
    }

    /// Starts a server; `Err` carries its exit status and stderr if it did not come up.
    pub fn start_with(dirs: &Dirs, opts: Opts) -> Result<Self, String> {
        let mut cmd = Command::new(bin());
        cmd.arg("--data-dir")
            .arg(dirs.data())
            .arg("--config-dir")
            .arg(dirs.config())
            .arg("serve")
            .arg("--port")
            .arg("0")
            .args(&opts.args)
            .env("RUST_LOG", "info")
            .env_remove("AKHROT_PASSPHRASE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for k in &opts.env_remove {
            cmd.env_remove(k);
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            for _ in lines {}
        });
        let (etx, erx) = mpsc::channel();
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            // Line by line into the shared log (readable while the server runs, and after it
            // was killed); the whole of it once stderr closes.
            let mut reader = BufReader::new(&mut stderr);
            let mut line = String::new();
            while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
            let _ = etx.send(sink.lock().unwrap().clone());
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => {
                let url = line
                    .split_whitespace()
                    .find(|w| w.starts_with("http://"))
                    .unwrap_or_else(|| panic!("unexpected first line: {line}"));
                let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
                // Keep draining stderr in the background (the thread holds it).
                std::mem::forget(erx);
                Ok(Self {
                    child: Some(child),
                    port,
                    base: format!("http://127.0.0.1:{port}"),
                    data: dirs.data(),
                    config: dirs.config(),
                    http: agent(),
                    log,
                })
            }
            Err(_) => {
                let status = child.wait().unwrap();
                let err = erx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
                Err(format!("exit status {status}; stderr:\n{err}"))
            }
        }
    }

    /// Everything the server wrote to stderr so far (its log), shared: a clone taken before a
    /// kill keeps filling until the pipe closes.
    pub fn log(&self) -> Arc<Mutex<String>> {
        self.log.clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends SIGTERM and waits; returns the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.terminate()
    }

    /// SIGKILL: the process gets no chance to clean up or finish anything.
    pub fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data.join("admin.token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// A request with an optional bearer; returns (status, JSON body or the raw text as a string).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let auth = bearer.map(|b| format!("Bearer {b}"));
        let result = match (method, body) {
            ("GET", _) => {
                let mut r = self.http.get(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            ("DELETE", _) => {
                let mut r = self.http.delete(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            (m, b) => {
                let mut r = match m {
                    "POST" => self.http.post(&url),
                    "PUT" => self.http.put(&url),
                    "PATCH" => self.http.patch(&url),
                    other => panic!("method {other}"),
                };
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.send_json(b.cloned().unwrap_or(Value::Null))
            }
        };
        let mut resp = result.unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    pub fn get(&self, path: &str, bearer: Option<&str>) -> (u16, Value) {
        self.request("GET", path, bearer, None)
    }

    pub fn post(&self, path: &str, bearer: Option<&str>, body: &Value) -> (u16, Value) {
        self.request("POST", path, bearer, Some(body))
    }

    pub fn admin_get(&self, path: &str) -> Value {
        let (s, v) = self.get(path, Some(&self.admin_token()));
        assert_eq!(s, 200, "{path}: {v}");
        v["data"].clone()
    }

    pub fn admin_post(&self, path: &str, body: &Value) -> Value {
        let (s, v) = self.post(path, Some(&self.admin_token()), body);
        assert_eq!(s, 200, "{path}: {v}");
        v["data"].clone()
    }

    /// Creates an agent key allowed for `allow` (or every provider with `["*"]`).
    pub fn create_key(&self, name: &str, allow: &[&str]) -> String {
        let all = allow == ["*"];
        let allow: Vec<&str> = if all { vec![] } else { allow.to_vec() };
        let d = self.admin_post(
            "/admin/keys",
            &serde_json::json!({ "name": name, "allow": allow, "allowAll": all }),
        );
        d["key"].as_str().unwrap().to_owned()
    }

    /// Stores an API-key/MTProto connection through the admin API.
    pub fn add(&self, provider: &str, account: Option<&str>, fields: Value) -> Value {
        let mut body = serde_json::json!({ "provider": provider, "fields": fields });
        if let Some(a) = account {
            body["account"] = Value::from(a);
        }
        self.admin_post("/admin/connections", &body)
    }

    /// Writes raw bytes to the listener and returns the raw answer (for Host/Origin tests).
    pub fn raw(&self, request: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Runs `akhrot <args>` against this server's directories.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        cli_in(&self.data, &self.config, args, stdin)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.terminate();
        }
    }
}

/// Runs `akhrot` with the given directories.
pub fn cli_in(data: &Path, config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(bin());
    cmd.arg("--data-dir")
        .arg(data)
        .arg("--config-dir")
        .arg(config)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The error code of an error envelope.
pub fn code(v: &Value) -> &str {
    assert_eq!(v["status"], "error", "not an error envelope: {v}");
    v["error"]["code"].as_str().unwrap()
}

/// The keyring entry holding a vault's master key.
pub fn keyring_entry(vault_id: &str) -> keyring::Entry {
    keyring::Entry::new("akhrot", &format!("vault-{vault_id}")).unwrap()
}

/// Reads a vault's id from its database (read-only).
pub fn vault_id(vault: &Path) -> String {
    let c =
        rusqlite::Connection::open_with_flags(vault, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let v: Vec<u8> = c
        .query_row("SELECT value FROM meta WHERE key = 'vault_id'", [], |r| {
            r.get(0)
        })
        .unwrap();
    String::from_utf8(v).unwrap()
}

/// All bytes of the vault's files (db, WAL, SHM).
pub fn vault_bytes(vault: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let mut p = vault.as_os_str().to_owned();
        p.push(suffix);
        if let Ok(b) = std::fs::read(PathBuf::from(p)) {
            out.extend(b);
        }
    }
    out
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A request received by a [`StandIn`].
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An answer of a [`StandIn`]: status, content type, body.
pub type Answer = (u16, &'static str, String);

type Handler = dyn Fn(&Seen) -> Answer + Send + Sync;

/// A small local server that answers the way one provider's documentation says it does.
/// Only for quirks no real server here reproduces; standard OAuth runs against oidc-provider.
pub struct StandIn {
    pub port: u16,
    pub seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
}

impl StandIn {
    pub fn start(handler: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let handler: std::sync::Arc<Handler> = std::sync::Arc::new(handler);
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let handler = handler.clone();
                let log = log.clone();
                std::thread::spawn(move || serve_one(stream, &*handler, &log));
            }
        });
        Self { port, seen }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn requests_to(&self, path: &str) -> Vec<Seen> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }
}

fn serve_one(stream: TcpStream, handler: &Handler, log: &std::sync::Mutex<Vec<Seen>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("/").to_owned();
    let (path, query) = target
        .split_once('?')
        .map(|(p, q)| (p.to_owned(), q.to_owned()))
        .unwrap_or((target.clone(), String::new()));
    let mut headers = Vec::new();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let mut body = vec![0u8; len];
    let _ = reader.read_exact(&mut body);
    let seen = Seen {
        method,
        path,
        query,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let (status, ctype, answer) = handler(&seen);
    log.lock().unwrap().push(seen);
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    );
}

/// Query parameters of a URL, decoded.
pub fn query_params(url: &str) -> Vec<(String, String)> {
    let q = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (pct_decode(k), pct_decode(v))
        })
        .collect()
}

pub fn param(url: &str, name: &str) -> Option<String> {
    query_params(url)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn pct_decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes `<config>/providers.d/<name>.toml`.
pub fn write_provider_file(dirs: &Dirs, name: &str, toml: &str) {
    let d = dirs.config().join("providers.d");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(format!("{name}.toml")), toml).unwrap();
}

/// A real OAuth 2.0 / OIDC server (node-oidc-provider, `tests/oidc/server.mjs`) on loopback.
pub struct Oidc {
    child: Child,
    pub issuer: String,
    http: ureq::Agent,
}

impl Oidc {
    /// Starts the server with extra flags (see tests/oidc/README.md).
    pub fn start(flags: &[&str]) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc/server.mjs");
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("oidc/node_modules/oidc-provider")
                .exists(),
            "run `npm ci --prefix tests/oidc` first (scripts/test does)"
        );
        let mut child = Command::new("node")
            .arg(script)
            .args(["--port", "0"])
            .args(flags)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node is installed");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            panic!("the OAuth test server did not say it was listening within 30 s");
        };
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("oidc server did not start: {line:?}"));
        Self {
            child,
            issuer: v["issuer"].as_str().unwrap().to_owned(),
            http: agent(),
        }
    }

    pub fn stats(&self) -> Value {
        let mut r = self
            .http
            .get(format!("{}/__test/stats", self.issuer))
            .call()
            .unwrap();
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
    }

    pub fn stat(&self, name: &str) -> u64 {
        self.stats()[name].as_u64().unwrap_or(0)
    }

    /// `POST /__test/<what>` (e.g. `revoke-all`, `fail-token?status=503&count=1`).
    pub fn control(&self, what: &str) {
        let r = self
            .http
            .post(format!("{}/__test/{what}", self.issuer))
            .send_empty()
            .unwrap();
        assert!(r.status().is_success(), "{what}: {}", r.status());
    }

    /// A providers.d entry for this server as provider `code`, authenticating as `client`.
    pub fn provider_toml(&self, code: &str, token_auth: &str) -> String {
        let i = &self.issuer;
        format!(
            r#"[providers.{code}]
name = "Test IdP ({code})"
auth = "oauth2"
authorize_url = "{i}/auth"
token_url = "{i}/token"
revoke_url = "{i}/token/revocation"
userinfo_url = "{i}/me"
account_field = "email"
scopes = ["openid", "email", "profile", "offline_access"]
token_auth = "{token_auth}"

[[providers.{code}.services]]
code = "userinfo"
name = "User info"
base_url = "{i}"

[[providers.{code}.services.examples]]
title = "Who am I"
method = "GET"
path = "/me"
"#
        )
    }

    /// Calls the server's userinfo endpoint with a token: the token is live if this is `Some`.
    pub fn userinfo(&self, access_token: &str) -> Option<Value> {
        let mut r = self
            .http
            .get(format!("{}/me", self.issuer))
            .header("Authorization", format!("Bearer {access_token}"))
            .call()
            .unwrap();
        r.status()
            .is_success()
            .then(|| serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap())
    }
}

impl Drop for Oidc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scripted person with a cookie jar: signs in at the authorization server and stops at the
/// redirect to Akhrot's callback, returning that URL (as a browser would be about to open it).
pub struct Browser {
    http: ureq::Agent,
    cookies: Vec<(String, String, String)>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Self {
            http,
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self, url: &str) -> String {
        let path = url
            .splitn(4, '/')
            .nth(3)
            .map(|p| format!("/{}", p.split('?').next().unwrap_or("")))
            .unwrap_or_else(|| "/".into());
        self.cookies
            .iter()
            .filter(|(_, _, p)| path.starts_with(p.as_str()))
            .map(|(k, v, _)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn absorb(&mut self, resp: &ureq::http::Response<ureq::Body>) {
        for h in resp.headers().get_all("set-cookie") {
            let h = h.to_str().unwrap_or("");
            let mut parts = h.split(';');
            let Some((k, v)) = parts.next().and_then(|kv| kv.trim().split_once('=')) else {
                continue;
            };
            let path = parts
                .filter_map(|a| {
                    a.trim()
                        .strip_prefix("path=")
                        .or_else(|| a.trim().strip_prefix("Path="))
                })
                .next()
                .unwrap_or("/")
                .to_owned();
            self.cookies.retain(|(n, _, p)| !(n == k && *p == path));
            if !v.is_empty() {
                self.cookies.push((k.to_owned(), v.to_owned(), path));
            }
        }
    }

    /// One request; returns (status, Location, body).
    fn send(
        &mut self,
        method: &str,
        url: &str,
        form: Option<&str>,
    ) -> (u16, Option<String>, String) {
        let cookies = self.cookie_header(url);
        let mut resp = if method == "POST" {
            self.http
                .post(url)
                .header("Cookie", &cookies)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .send(form.unwrap_or(""))
                .unwrap()
        } else {
            self.http
                .get(url)
                .header("Cookie", &cookies)
                .call()
                .unwrap()
        };
        self.absorb(&resp);
        let status = resp.status().as_u16();
        let loc = resp
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(|l| {
                if l.starts_with('/') {
                    let origin: String = url.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
                    format!("{origin}{l}")
                } else {
                    l.to_owned()
                }
            });
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        (status, loc, body)
    }

    /// Follows the consent flow from `authorize_url`, signing in as `login` (or cancelling when
    /// `deny`), until the redirect to `callback_prefix`; returns that URL.
    pub fn authorize(
        &mut self,
        authorize_url: &str,
        login: &str,
        deny: bool,
        callback_prefix: &str,
    ) -> String {
        let mut url = authorize_url.to_owned();
        for _ in 0..12 {
            let (status, loc, body) = self.send("GET", &url, None);
            match (status, loc) {
                (300..=399, Some(loc)) if loc.starts_with(callback_prefix) => return loc,
                (300..=399, Some(loc)) => url = loc,
                (200, _) if body.contains("name=\"prompt\"") => {
                    if deny {
                        url = format!("{url}/abort");
                        continue;
                    }
                    let prompt = if body.contains("value=\"consent\"") {
                        "consent"
                    } else {
                        "login"
                    };
                    let form = if prompt == "login" {
                        format!("prompt=login&login={login}&password=pw")
                    } else {
                        "prompt=consent".to_owned()
                    };
                    let (s, loc, b) = self.send("POST", &url, Some(&form));
                    let Some(loc) = loc else {
                        panic!("form post answered {s}: {b}")
                    };
                    if loc.starts_with(callback_prefix) {
                        return loc;
                    }
                    url = loc;
                }
                (s, _) => panic!("unexpected answer {s} at {url}: {body}"),
            }
        }
        panic!("the consent flow did not reach {callback_prefix}");
    }
}
