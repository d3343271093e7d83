//! Browsers for the tests: a scripted person who signs in and consents at the authorization
//! server ([`Browser`]), and a fake `xdg-open` that records what it was asked to open
//! ([`FakeBrowser`]).

use std::path::PathBuf;
use std::time::{Duration, Instant};

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
