//! A real OAuth 2.0 / OIDC authorization server (node-oidc-provider) for the OAuth tests.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::http::agent;

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
