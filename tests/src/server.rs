//! A running `akhrot serve` ([`Server`]) in its own temporary directories ([`Dirs`]): started on
//! a free port, talked to over HTTP, stopped or killed, and searched for plaintext secrets (its
//! data dir files and everything it wrote) whenever it stops.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http::agent;
use crate::secrets::register_connection_fields;
use crate::{bin, cli_in, param, secrets};

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
