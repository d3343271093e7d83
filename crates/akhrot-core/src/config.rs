//! `<config-dir>/config.toml`: settings of `akhrot serve` that flags and environment override.
//!
//! ```toml
//! port = 47420
//! approval_timeout = 120   # seconds
//! rate_limit = 600         # agent requests per minute per key; 0 = off
//! provider_timeout = 15    # seconds a provider's token endpoint may take
//! ```

use std::path::Path;

use serde::Deserialize;

use crate::{Error, Result};

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub port: Option<u16>,
    pub approval_timeout: Option<u64>,
    pub rate_limit: Option<u32>,
    pub provider_timeout: Option<u64>,
}

impl Config {
    /// Reads `<config_dir>/config.toml`; a missing file is the default, a malformed one an error
    /// naming the file and line.
    pub fn load(config_dir: &Path) -> Result<Self> {
        let path = config_dir.join("config.toml");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(Error::Io(format!("cannot read {}: {e}", path.display()))),
        };
        toml::from_str(&text).map_err(|e: toml::de::Error| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(1);
            Error::BadRequest(format!("{}:{line}: {}", path.display(), e.message().trim()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_valid_and_malformed() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Config::load(dir.path()).unwrap(), Config::default());
        std::fs::write(
            dir.path().join("config.toml"),
            "port = 5000\nrate_limit = 0\n",
        )
        .unwrap();
        let c = Config::load(dir.path()).unwrap();
        assert_eq!(
            (c.port, c.rate_limit, c.approval_timeout),
            (Some(5000), Some(0), None)
        );
        std::fs::write(dir.path().join("config.toml"), "port = 5000\nprot = 1\n").unwrap();
        let e = Config::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("config.toml:2"), "{e}");
    }
}
