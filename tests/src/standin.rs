//! Stand-ins for provider APIs: a small local HTTP server that answers as one provider's
//! documentation says ([`StandIn`]), and providers.d entries pointing at such servers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::Dirs;

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
