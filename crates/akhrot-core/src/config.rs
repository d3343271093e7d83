//! `<config-dir>/config.toml`: settings of `akhrot serve` that flags and environment override.
//!
//! ```toml
//! port = 47420
//! approval_timeout = 120   # seconds
//! rate_limit = 600         # agent requests per minute per key; 0 = off
//! provider_timeout = 15    # seconds a provider's token endpoint may take
//! max_connections = 480    # connections served at once (default: from the descriptor limit)
//! header_timeout = 10      # seconds a connection may take to send a request head
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Error, Result};

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub port: Option<u16>,
    pub approval_timeout: Option<u64>,
    pub rate_limit: Option<u32>,
    pub provider_timeout: Option<u64>,
    pub max_connections: Option<usize>,
    pub header_timeout: Option<u64>,
}

impl Config {
    /// Reads `<config_dir>/config.toml`; a missing file is the default, a malformed one an error
    /// naming the file and line.
    pub fn load(config_dir: &Path) -> Result<Self> {
        let path = path(config_dir);
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

/// The file [`Config::load`] reads.
pub fn path(config_dir: &Path) -> PathBuf {
    config_dir.join("config.toml")
}

/// Sets integer keys in `config.toml`, keeping the rest of the file (comments, order, other
/// keys) as the user wrote it. The file is replaced atomically; a malformed file is an error and
/// is left alone.
pub fn update(config_dir: &Path, changes: &[(&str, i64)]) -> Result<PathBuf> {
    let path = path(config_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::Io(format!("cannot read {}: {e}", path.display()))),
    };
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        Error::BadRequest(format!(
            "{} is not valid TOML ({}); fix it by hand first",
            path.display(),
            e.message().trim()
        ))
    })?;
    for (key, value) in changes {
        doc[*key] = toml_edit::value(*value);
    }
    // Checks what is written still loads, so a later start cannot fail on it.
    let out = doc.to_string();
    toml::from_str::<Config>(&out)
        .map_err(|e| Error::BadRequest(format!("{}: {}", path.display(), e.message().trim())))?;
    crate::paths::ensure_private_dir(config_dir)?;
    let tmp = config_dir.join(".config.toml.tmp");
    crate::paths::write_private_file(&tmp, out.as_bytes())?;
    std::fs::rename(&tmp, &path)
        .map_err(|e| Error::Io(format!("cannot replace {}: {e}", path.display())))?;
    Ok(path)
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

    #[test]
    fn update_keeps_comments_and_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        update(dir.path(), &[("approval_timeout", 30)]).unwrap();
        assert_eq!(Config::load(dir.path()).unwrap().approval_timeout, Some(30));
        std::fs::write(
            path(dir.path()),
            "# my settings\nport = 5000 # fixed\nrate_limit = 0\n",
        )
        .unwrap();
        update(dir.path(), &[("rate_limit", 60), ("approval_timeout", 45)]).unwrap();
        let text = std::fs::read_to_string(path(dir.path())).unwrap();
        assert!(
            text.contains("# my settings") && text.contains("# fixed"),
            "{text}"
        );
        let c = Config::load(dir.path()).unwrap();
        assert_eq!(
            (c.port, c.rate_limit, c.approval_timeout),
            (Some(5000), Some(60), Some(45))
        );
        std::fs::write(path(dir.path()), "port = [").unwrap();
        assert!(update(dir.path(), &[("port", 1)]).is_err());
        assert_eq!(
            std::fs::read_to_string(path(dir.path())).unwrap(),
            "port = ["
        );
        std::fs::write(path(dir.path()), "port = 5000\n").unwrap();
        assert!(
            update(dir.path(), &[("port", -1)]).is_err(),
            "a value that would not load"
        );
        assert_eq!(
            std::fs::read_to_string(path(dir.path())).unwrap(),
            "port = 5000\n"
        );
    }
}
