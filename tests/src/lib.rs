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

mod oauth;
pub use oauth::OauthEnv;

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

impl Drop for Dirs {
    /// Whatever ran in these directories (a [`Server`], the CLI, a hand-started `akhrot serve`),
    /// no registered secret may be in the data dir's files in plaintext.
    fn drop(&mut self) {
        let hits = secrets::scan_dir(&self.data(), &secrets::all());
        secrets::fail_on(&hits, "the data dir");
    }
}

/// A running `akhrot serve`.
pub struct Server {
    child: Option<Child>,
    /// Everything the server wrote to stdout and stderr (logs, panics, crash output), scanned
    /// for registered secrets when it stops.
    output: Captured,
    pub port: u16,
    pub base: String,
    pub data: PathBuf,
    pub config: PathBuf,
    http: ureq::Agent,
}

/// Options for starting a server.
#[derive(Default, Clone)]
pub struct Opts {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub env_remove: Vec<String>,
    /// A command that runs the server, e.g. `["prlimit", "--nofile=256:256", "--"]`: it must
    /// `exec` the server, so the pid stays the server's.
    pub prefix: Vec<String>,
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
    pub fn prefix(mut self, cmd: &[&str]) -> Self {
        self.prefix = cmd.iter().map(|s| (*s).to_owned()).collect();
        self
    }
}

/// An HTTP client that returns every status as an answer (no error), goes to loopback directly
/// (no proxy from the environment) and gives up on a whole request after `timeout`, if given.
pub fn http_agent(timeout: Option<Duration>) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(timeout)
        .build()
        .into()
}

fn agent() -> ureq::Agent {
    http_agent(Some(Duration::from_secs(30)))
}

impl Server {
    /// Starts a server in fresh directories that are removed when `dirs` drops.
    pub fn start(dirs: &Dirs) -> Self {
        Self::start_with(dirs, Opts::default()).unwrap()
    }

    /// Starts a server; `Err` carries its exit status and stderr if it did not come up.
    pub fn start_with(dirs: &Dirs, opts: Opts) -> Result<Self, String> {
        let mut cmd = match opts.prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin());
                c
            }
            None => Command::new(bin()),
        };
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
            if k.contains("PASSPHRASE") {
                secrets::register(v);
            }
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let output = Captured::default();
        let (tx, rx) = mpsc::channel();
        let out = output.clone();
        let out_done = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut first = Vec::new();
            let _ = r.read_until(b'\n', &mut first);
            out.push(&first);
            if !first.is_empty() {
                let _ = tx.send(String::from_utf8_lossy(&first).trim_end().to_owned());
            }
            drop(tx);
            out.drain(r);
        });
        let (etx, erx) = mpsc::channel();
        let mut err = output.clone();
        err.is_stderr = true;
        let err_done = std::thread::spawn(move || {
            let all = err.clone();
            err.drain(&mut stderr);
            let _ = etx.send(String::from_utf8_lossy(&all.stderr_snapshot()).into_owned());
        });
        output.threads.lock().unwrap().extend([out_done, err_done]);
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
                    output,
                    port,
                    base: format!("http://127.0.0.1:{port}"),
                    data: dirs.data(),
                    config: dirs.config(),
                    http: agent(),
                })
            }
            Err(_) => {
                let status = child.wait().unwrap();
                let err = erx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
                // A server that failed to start must not have printed a secret either.
                output.finish();
                secrets::fail_on(&output.scan(&secrets::all()), "a server that did not start");
                Err(format!("exit status {status}; stderr:\n{err}"))
            }
        }
    }

    /// Everything the server wrote to stderr so far (its log), shared: a handle taken before a
    /// kill keeps filling until the pipe closes.
    pub fn log(&self) -> ServerLog {
        ServerLog(self.output.stderr.clone())
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends SIGTERM and waits; returns the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let status = self.terminate();
        self.check_secrets("after SIGTERM");
        status
    }

    /// SIGKILL: the process gets no chance to clean up or finish anything.
    pub fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        let _ = child.kill();
        let _ = child.wait();
        self.check_secrets("after SIGKILL");
    }

    /// Where `secrets` occur in plaintext: this server's data dir files and everything it has
    /// written to stdout/stderr so far. Names the places, never the secret.
    pub fn find_secrets(&self, secrets: &[Vec<u8>]) -> Vec<String> {
        let mut hits = secrets::scan_dir(&self.data, secrets);
        hits.extend(self.output.scan(secrets));
        hits
    }

    /// Fails the test if a registered secret is in plaintext in this server's files or output
    /// (once the process has ended, so its output is complete).
    fn check_secrets(&mut self, when: &str) {
        self.output.finish();
        let hits = self.find_secrets(&secrets::all());
        secrets::fail_on(&hits, &format!("the server, {when}"));
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
        let t = std::fs::read_to_string(self.data.join("admin.token"))
            .unwrap()
            .trim()
            .to_owned();
        secrets::register(&t);
        t
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
        if let Some(b) = body {
            secrets::register_json(b, true);
            if path == "/admin/connections" {
                register_connection_fields(&self.data, b);
            }
        }
        if let Some(b) = bearer {
            secrets::register(b);
        }
        let mut resp = result.unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        secrets::register_json(&v, false);
        // A UI sign-in link's one-time code.
        if path == "/admin/ui-link"
            && let Some(code) = v["data"]["url"].as_str().and_then(|u| param(u, "code"))
        {
            secrets::register(&code);
        }
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
        let key = d["key"].as_str().unwrap().to_owned();
        secrets::register_agent_key(&key);
        key
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
        // The server may answer (and stop reading) before all of a large request is written.
        let _ = s.write_all(request.as_bytes());
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
            self.check_secrets("at the end of the test");
        }
    }
}

/// A live view of a server's stderr (see [`Server::log`]).
#[derive(Clone)]
pub struct ServerLog(Arc<Mutex<Vec<u8>>>);

impl ServerLog {
    /// The log so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// A server's stdout and stderr as the reader threads collect them.
#[derive(Clone, Default)]
struct Captured {
    stdout: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    threads: std::sync::Arc<std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>>,
    is_stderr: bool,
}

impl Captured {
    fn push(&self, b: &[u8]) {
        let buf = if self.is_stderr {
            &self.stderr
        } else {
            &self.stdout
        };
        buf.lock().unwrap().extend_from_slice(b);
    }

    /// Reads `r` to its end into this stream's buffer.
    fn drain(self, mut r: impl Read) {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            self.push(&chunk[..n]);
        }
    }

    fn stderr_snapshot(&self) -> Vec<u8> {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (a bounded time) for the reader threads to see the end of the output.
    fn finish(&self) {
        let threads: Vec<_> = self.threads.lock().unwrap().drain(..).collect();
        let deadline = Instant::now() + Duration::from_secs(5);
        for t in threads {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }

    fn scan(&self, secrets: &[Vec<u8>]) -> Vec<String> {
        let mut hits = Vec::new();
        for (name, buf) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let b = buf.lock().unwrap();
            hits.extend(secrets::scan_bytes(&b, secrets, &format!("server {name}")));
        }
        hits
    }
}

/// Secrets never at rest in plaintext: every secret a test hands to the server or gets from it
/// (API keys, client secrets, tokens, agent keys, the admin credential) is registered here, and
/// whenever a [`Server`] stops (SIGTERM, SIGKILL, end of test) or a [`Dirs`] is dropped, the data
/// dir's files (vault.db, its WAL and SHM, anything else there) and the server's captured
/// stdout/stderr are searched for each one. A hit fails the test with the place, never the value.
pub mod secrets {
    use std::path::Path;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Shorter values (`"pw"`, `"s"`) would match by chance; no test secret is this short.
    pub const MIN_LEN: usize = 8;

    /// Files whose job is to hold a credential in plaintext for the user's own tools: the admin
    /// credential (mode 0600, read by the CLI). Everything else in the data dir is scanned.
    const BY_DESIGN: &[&str] = &["admin.token"];

    static REGISTRY: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
    static BYTES: AtomicU64 = AtomicU64::new(0);
    static SCANS: AtomicU64 = AtomicU64::new(0);

    /// Registers a secret the test run uses (ignored when shorter than [`MIN_LEN`]).
    pub fn register(secret: &str) {
        let s = secret.trim();
        if s.len() < MIN_LEN {
            return;
        }
        let mut r = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        if !r.iter().any(|x| x == s.as_bytes()) {
            r.push(s.as_bytes().to_vec());
        }
    }

    /// Registers an agent key: the whole key and its secret part (the id is not secret).
    pub fn register_agent_key(key: &str) {
        register(key);
        if let Some((_, secret)) = key.rsplit_once('_') {
            register(secret);
        }
    }

    /// Field names whose string values are secrets, in request and answer bodies.
    const SECRET_NAMES: &[&str] = &[
        "accessToken",
        "refreshToken",
        "idToken",
        "clientSecret",
        "apiKey",
        "apiHash",
        "password",
        "secret",
        "passphrase",
    ];

    /// Registers the secrets in a JSON body: values of [`SECRET_NAMES`], agent keys (`key`), and
    /// in a request, every string under `fields` (the values of a connection being stored).
    pub fn register_json(v: &serde_json::Value, request: bool) {
        walk(v, request, false);
    }

    /// Registers every string in `v`.
    pub fn register_strings(v: &serde_json::Value) {
        walk(v, true, true);
    }

    fn walk(v: &serde_json::Value, request: bool, fields_are_secret: bool) {
        use serde_json::Value;
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    match x {
                        Value::String(s)
                            if fields_are_secret || SECRET_NAMES.contains(&k.as_str()) =>
                        {
                            register(s);
                        }
                        Value::String(s) if k == "key" && s.starts_with("akhrot_") => {
                            register_agent_key(s);
                        }
                        // A connection's `fields` are registered by what the catalog says is secret.
                        _ if request && k == "fields" => {}
                        _ => walk(x, request, fields_are_secret),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, request, fields_are_secret)),
            Value::String(s) if fields_are_secret => register(s),
            _ => {}
        }
    }

    /// Every secret registered so far in this test process.
    pub fn all() -> Vec<Vec<u8>> {
        REGISTRY.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// (secrets registered, scans done, bytes scanned) in this test process so far.
    pub fn stats() -> (usize, u64, u64) {
        (
            REGISTRY.lock().unwrap_or_else(|e| e.into_inner()).len(),
            SCANS.load(Ordering::Relaxed),
            BYTES.load(Ordering::Relaxed),
        )
    }

    /// A secret as it would look written down without encryption: as it is, in hex, and in
    /// base64 (standard and URL-safe, at each of the three alignments; only whole groups, which
    /// do not depend on the bytes around the secret).
    pub fn spellings(secret: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let mut out = vec![("as it is", secret.to_vec()), ("in hex", hex.into_bytes())];
        for (name, alphabet) in [
            (
                "in base64",
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
            ),
            (
                "in URL-safe base64",
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
            ),
        ] {
            // Encoded after 0, 1 or 2 other bytes, the secret's whole 3-byte groups from its
            // 1st, 3rd or 2nd byte on are aligned: one of these is in the encoded text.
            for skip in 0..3 {
                let mut b64 = Vec::new();
                for c in secret[skip.min(secret.len())..].chunks_exact(3) {
                    let n = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
                    for shift in [18, 12, 6, 0] {
                        b64.push(alphabet[((n >> shift) & 63) as usize]);
                    }
                }
                out.push((name, b64));
            }
        }
        out
    }

    /// The places in `hay` (named `place`) that hold one of `secrets` in one of its
    /// [`spellings`]: one entry per secret found, naming the place, the spelling and the
    /// secret's position in the list, never its value.
    pub fn scan_bytes(hay: &[u8], secrets: &[Vec<u8>], place: &str) -> Vec<String> {
        BYTES.fetch_add(hay.len() as u64, Ordering::Relaxed);
        let mut cache = MATCHER.lock().unwrap_or_else(|e| e.into_inner());
        if cache.as_ref().is_none_or(|m| m.secrets != secrets) {
            *cache = Some(Matcher::new(secrets));
        }
        let Some(m) = cache.as_ref() else {
            return Vec::new();
        };
        // For each secret, the first of its spellings (in `spellings` order) found anywhere.
        let mut best: Vec<Option<usize>> = vec![None; secrets.len()];
        for found in m.automaton.find_overlapping_iter(hay) {
            for &(i, k) in &m.owners[found.pattern().as_usize()] {
                if best[i].is_none_or(|b| k < b) {
                    best[i] = Some(k);
                }
            }
        }
        let mut hits = Vec::new();
        for (i, k) in best.into_iter().enumerate() {
            if let Some(k) = k {
                hits.push(format!(
                    "{place}: registered secret #{i} ({} bytes), {}",
                    secrets[i].len(),
                    m.how[k]
                ));
            }
        }
        hits
    }

    /// Every spelling of every secret in one Aho-Corasick automaton, so a scan is one pass over
    /// the bytes however many secrets there are (a 1,000-round crash test registers thousands
    /// of tokens and scans after every kill). Rebuilt when the list of secrets changes.
    struct Matcher {
        secrets: Vec<Vec<u8>>,
        automaton: aho_corasick::AhoCorasick,
        /// For each distinct pattern: the (secret, spelling) pairs it spells.
        owners: Vec<Vec<(usize, usize)>>,
        how: Vec<&'static str>,
    }

    static MATCHER: Mutex<Option<Matcher>> = Mutex::new(None);

    impl Matcher {
        fn new(secrets: &[Vec<u8>]) -> Self {
            let mut index = std::collections::HashMap::<Vec<u8>, usize>::new();
            let mut patterns: Vec<Vec<u8>> = Vec::new();
            let mut owners: Vec<Vec<(usize, usize)>> = Vec::new();
            let mut how = Vec::new();
            for (i, s) in secrets.iter().enumerate() {
                for (k, (name, sp)) in spellings(s).into_iter().enumerate() {
                    if how.len() <= k {
                        how.push(name);
                    }
                    if sp.is_empty() {
                        continue;
                    }
                    let at = *index.entry(sp.clone()).or_insert_with(|| {
                        patterns.push(sp);
                        owners.push(Vec::new());
                        patterns.len() - 1
                    });
                    owners[at].push((i, k));
                }
            }
            let automaton = aho_corasick::AhoCorasick::new(&patterns)
                .unwrap_or_else(|e| panic!("cannot build the secret matcher: {e}"));
            Self {
                secrets: secrets.to_vec(),
                automaton,
                owners,
                how,
            }
        }
    }

    /// Scans every file under `dir` (recursively) except those in `BY_DESIGN`.
    pub fn scan_dir(dir: &Path, secrets: &[Vec<u8>]) -> Vec<String> {
        SCANS.fetch_add(1, Ordering::Relaxed);
        let mut hits = Vec::new();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return hits;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                hits.extend(scan_dir(&p, secrets));
            } else if ft.is_file()
                && !BY_DESIGN.contains(&name.as_str())
                && let Ok(b) = std::fs::read(&p)
            {
                hits.extend(scan_bytes(&b, secrets, &p.display().to_string()));
            }
        }
        hits
    }

    /// Fails the test on any hit (only reports it when the test is already failing, so a
    /// panic during unwinding does not abort the run). Appends the totals to the file named by
    /// `AKHROT_E2E_SCAN_LOG`, when set.
    pub fn fail_on(hits: &[String], what: &str) {
        if let Some(log) = std::env::var_os("AKHROT_E2E_SCAN_LOG") {
            let (n, scans, bytes) = stats();
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
            {
                use std::io::Write;
                let _ = writeln!(
                    f,
                    "pid={} secrets={n} scans={scans} bytes={bytes}",
                    std::process::id()
                );
            }
        }
        if hits.is_empty() {
            return;
        }
        let msg = format!("plaintext secret found in {what}:\n  {}", hits.join("\n  "));
        if std::thread::panicking() {
            eprintln!("{msg}");
        } else {
            panic!("{msg}");
        }
    }
}

/// Registers the secret values of a `POST /admin/connections` body: every field the running
/// owner's catalog marks secret (all of them when the owner cannot be asked).
fn register_connection_fields(data: &Path, body: &Value) {
    let Some(fields) = body["fields"].as_object() else {
        return;
    };
    let public: Vec<String> = (|| {
        let info: Value =
            serde_json::from_str(&std::fs::read_to_string(data.join("server.json")).ok()?).ok()?;
        let admin = std::fs::read_to_string(data.join("admin.token")).ok()?;
        let url = format!(
            "{}/admin/providers/{}",
            info["baseUrl"].as_str().or(info["base_url"].as_str())?,
            body["provider"].as_str()?
        );
        let mut r = agent()
            .get(&url)
            .header("Authorization", format!("Bearer {}", admin.trim()))
            .call()
            .ok()?;
        let v: Value = serde_json::from_str(&r.body_mut().read_to_string().ok()?).ok()?;
        Some(
            v["data"]["fields"]
                .as_array()?
                .iter()
                .filter(|f| f["secret"] == false)
                .filter_map(|f| f["name"].as_str().map(str::to_owned))
                .collect(),
        )
    })()
    .unwrap_or_default();
    for (name, v) in fields {
        if !public.contains(name) {
            secrets::register_strings(v);
        }
    }
}

/// Runs `akhrot` with the given directories.
pub fn cli_in(data: &Path, config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    // A client secret, or the one secret of a one-field provider (several fields come as
    // `field=value` lines, registered below by what the catalog says is secret).
    let secret_stdin = args.contains(&"--client-secret-stdin")
        || (args.contains(&"add") && stdin.is_some_and(|i| !i.contains('=')));
    if let (true, Some(input)) = (secret_stdin, stdin) {
        secrets::register(input);
    }
    if let (Some(i), Some(input)) = (args.iter().position(|a| *a == "add"), stdin)
        && let Some(provider) = args.get(i + 1)
    {
        let fields: serde_json::Map<String, Value> = input
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), Value::from(v.trim())))
            .collect();
        let body = serde_json::json!({ "provider": provider, "fields": fields });
        register_connection_fields(data, &body);
    }
    let out = run_fed(akhrot_cmd(data, config, args, stdin.is_some()), stdin);
    // What `keys create` and `token` print is a secret.
    if args.windows(2).any(|w| w == ["keys", "create"]) {
        secrets::register_agent_key(stdout(&out).trim());
    } else if args.contains(&"token") {
        secrets::register(stdout(&out).trim());
    }
    out
}

/// `akhrot --data-dir <data> --config-dir <config> <args>` with stdout and stderr captured, and
/// stdin piped when the run will feed it (see [`run_fed`]), else empty.
pub fn akhrot_cmd(data: &Path, config: &Path, args: &[&str], feed_stdin: bool) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("--data-dir")
        .arg(data)
        .arg("--config-dir")
        .arg(config)
        .args(args)
        .stdin(if feed_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Spawns `cmd`, writes `stdin` to it (if any) and waits for its output.
pub fn run_fed(mut cmd: Command, stdin: Option<&str>) -> Output {
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

/// The agent key named `name` in a `GET /admin/keys` answer's data.
pub fn key_record<'a>(keys: &'a Value, name: &str) -> &'a Value {
    keys.as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == name)
        .unwrap_or_else(|| panic!("no key {name} in {keys}"))
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

/// The inject rule of a stand-in provider that sends the key as `X-Api-Key`.
pub const INJECT_X_API_KEY: &str = r#"headers = { "X-Api-Key" = "{accessToken}" }"#;

/// A providers.d entry for a stand-in provider API `code` of auth `api_key`: an optional public
/// field `user`, the secret `apiKey`, the `[providers.<code>.inject]` rule `inject` (e.g.
/// [`INJECT_X_API_KEY`]), and one service `(code, base URL)` for each of `bases`.
pub fn api_key_provider(code: &str, inject: &str, bases: &[(&str, String)]) -> String {
    let mut t = format!(
        r#"[providers.{code}]
name = "Stand-in {code}"
auth = "api_key"

[[providers.{code}.fields]]
name = "user"
label = "User"
secret = false
token = false
optional = true

[[providers.{code}.fields]]
name = "apiKey"
label = "API key"
secret = true
token = true

[providers.{code}.inject]
{inject}
"#
    );
    for (svc, base) in bases {
        t.push_str(&format!(
            "\n[[providers.{code}.services]]\ncode = \"{svc}\"\nname = \"{svc} API\"\nbase_url = \"{base}\"\n"
        ));
    }
    t
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

/// A fake browser for code that opens one: a directory to put first on `PATH` holding an
/// `xdg-open` that writes the environment it was started with, then `URL=<its argument>`, to
/// `dump` (atomically: the file appears complete).
pub struct FakeBrowser {
    pub bin: PathBuf,
    pub dump: PathBuf,
    _dir: tempfile::TempDir,
}

impl FakeBrowser {
    pub fn new() -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::Builder::new()
            .prefix("akhrot-e2e-browser")
            .tempdir()
            .unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let dump = dir.path().join("browser-env.txt");
        let opener = bin.join("xdg-open");
        std::fs::write(
            &opener,
            format!(
                "#!/bin/sh\n{{ env; echo \"URL=$1\"; }} > '{0}.tmp' && mv '{0}.tmp' '{0}'\n",
                dump.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&opener, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self {
            bin,
            dump,
            _dir: dir,
        }
    }

    /// `PATH` with the fake `xdg-open` first.
    pub fn path(&self) -> String {
        format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// What the fake browser was started with, once it was (waits up to `secs`).
    pub fn seen(&self, secs: u64) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Ok(text) = std::fs::read_to_string(&self.dump) {
                return Some(text);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Default for FakeBrowser {
    fn default() -> Self {
        Self::new()
    }
}
