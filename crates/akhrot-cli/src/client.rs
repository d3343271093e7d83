//! Talking to the running owner: where it is (`server.json`), with what (`admin.token`).

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use akhrot_core::paths::Paths;
use akhrot_server::ServerInfo;

/// Exit code when no owner is running.
pub const EXIT_NO_OWNER: i32 = 3;

#[derive(Debug)]
pub struct NoOwner(pub String);

impl std::fmt::Display for NoOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for NoOwner {}

/// An error answer from the owner, in the contract's envelope.
#[derive(Debug)]
pub struct ApiFailure {
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}
impl std::error::Error for ApiFailure {}

pub struct Client {
    agent: ureq::Agent,
    /// Always `http://127.0.0.1:<port>`.
    base: String,
    /// The admin credential, or an agent key for the commands agents run (`exec`, `mcp`).
    bearer: String,
}

fn no_owner(paths: &Paths, why: &str) -> anyhow::Error {
    anyhow!(NoOwner(format!(
        "no Akhrot owner is running for {} ({why}). Start one with `akhrot serve` (add --data-dir {} if you use one), or open the Akhrot app.",
        paths.data_dir.display(),
        paths.data_dir.display()
    )))
}

/// Where the running owner listens, from its `server.json`, once the owner is shown to be alive
/// and holding the owner lock: no credential is ever sent to whatever took over a dead owner's
/// port (see `akhrot_server::running`).
pub fn owner_info(paths: &Paths) -> Result<ServerInfo> {
    akhrot_server::running::live_owner(paths).map_err(|e| no_owner(paths, &e.0))
}

impl Client {
    pub fn connect(paths: &Paths) -> Result<Self> {
        let info = owner_info(paths)?;
        let admin = std::fs::read_to_string(paths.admin_token())
            .map_err(|_| no_owner(paths, "no admin credential"))?
            .trim()
            .to_owned();
        Ok(Self::new(
            akhrot_server::running::base_url(info.port),
            admin,
            Duration::from_secs(30),
        ))
    }

    /// A client that speaks for an agent: its key, never the admin credential. Token requests
    /// may wait for the user's approval, so the timeout is long.
    pub fn for_agent(paths: &Paths, key: &str) -> Result<Self> {
        let info = owner_info(paths)?;
        Ok(Self::new(
            akhrot_server::running::base_url(info.port),
            key.to_owned(),
            Duration::from_secs(3600),
        ))
    }

    fn new(base: String, bearer: String, timeout: Duration) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(timeout))
            .build()
            .into();
        Self {
            agent,
            base,
            bearer,
        }
    }

    fn handle(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value> {
        let mut resp = match result {
            Ok(r) => r,
            Err(ureq::Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                bail!(NoOwner(format!(
                    "no Akhrot owner answers at {} (it stopped without cleaning up). Start one with `akhrot serve`.",
                    self.base
                )))
            }
            Err(e) => {
                return Err(
                    anyhow!(e).context(format!("cannot reach the Akhrot owner at {}", self.base))
                );
            }
        };
        let status = resp.status().as_u16();
        let body: Value = resp.body_mut().read_json().with_context(|| {
            format!("the owner answered HTTP {status} with a body that is not JSON")
        })?;
        if body["status"] == "success" {
            return Ok(body["data"].clone());
        }
        let err = &body["error"];
        Err(anyhow!(ApiFailure {
            code: err["code"].as_str().unwrap_or("UNKNOWN").to_owned(),
            message: err["message"]
                .as_str()
                .unwrap_or("the owner refused the request")
                .to_owned(),
        }))
    }

    /// The owner's loopback address.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.bearer)
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        let r = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", self.auth())
            .call();
        self.handle(r)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let r = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", self.auth())
            .send_json(body);
        self.handle(r)
    }

    /// `get`, read as the answer's type (`akhrot_server::models`).
    pub fn get_typed<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        typed(path, self.get(path)?)
    }

    /// `post` with a typed body, read as the answer's type.
    pub fn post_typed<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        let body = serde_json::to_value(body).context("cannot encode the request")?;
        typed(path, self.post(path, &body)?)
    }

    /// `delete`, read as the answer's type.
    pub fn delete_typed<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        typed(path, self.delete(path)?)
    }

    pub fn delete(&self, path: &str) -> Result<Value> {
        let r = self
            .agent
            .delete(format!("{}{path}", self.base))
            .header("Authorization", self.auth())
            .call();
        self.handle(r)
    }
}

/// An answer's `data` as its type; a mismatch means the owner runs another version.
pub fn typed<T: DeserializeOwned>(path: &str, data: Value) -> Result<T> {
    let route = path.split('?').next().unwrap_or(path);
    serde_json::from_value(data)
        .with_context(|| format!("the owner's answer to {route} is not in the expected shape (is it another version of Akhrot?)"))
}

/// Percent-encodes a path segment or query value.
pub use akhrot_core::text::pct_encode as enc;
