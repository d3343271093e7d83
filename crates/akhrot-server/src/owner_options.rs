//! What an owner starts with, resolved one way for `akhrot serve` and the desktop app: the
//! caller's overrides (command-line flags, a passphrase it read), then the environment
//! (`AKHROT_PORT`, `AKHROT_PASSPHRASE`), then `config.toml`, then the defaults.

use std::time::Duration;

use akhrot_core::SecretString;
use akhrot_core::config::Config;
use akhrot_core::paths::Paths;
use akhrot_core::vault::Unlock;

use crate::listener::ConnLimits;
use crate::{
    DEFAULT_APPROVAL_TIMEOUT_SECS, DEFAULT_PORT, DEFAULT_PROVIDER_TIMEOUT_SECS, DEFAULT_RATE_LIMIT,
    OwnerOptions,
};

/// What the caller decided itself; `None` falls through to the environment and `config.toml`.
#[derive(Debug, Default)]
pub struct OwnerOverrides {
    /// `--port` (`0` picks a free port).
    pub port: Option<u16>,
    /// `--rate-limit`.
    pub rate_limit_per_min: Option<u32>,
    /// `--approval-timeout`, in seconds.
    pub approval_timeout_secs: Option<u64>,
    /// A passphrase the caller read (a terminal prompt, the desktop app's stdin pipe).
    pub passphrase: Option<SecretString>,
}

/// Why the options could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("AKHROT_PORT `{0}` is not a port number")]
    Port(String),
    #[error(transparent)]
    Config(#[from] akhrot_core::Error),
}

impl OwnerOptions {
    /// The options for an owner of `paths`: `overrides`, else the environment (`AKHROT_PORT`,
    /// `AKHROT_PASSPHRASE`, a non-empty value), else `config.toml`, else the defaults. Without a
    /// passphrase the vault key is in the OS keyring.
    pub fn resolve(paths: Paths, overrides: OwnerOverrides) -> Result<Self, ResolveError> {
        let config = Config::load(&paths.config_dir)?;
        let port = match overrides.port {
            Some(p) => p,
            None => match non_empty_env("AKHROT_PORT") {
                Some(p) => p.parse().map_err(|_| ResolveError::Port(p))?,
                None => config.port.unwrap_or(DEFAULT_PORT),
            },
        };
        let unlock = match overrides
            .passphrase
            .or_else(|| non_empty_env("AKHROT_PASSPHRASE").map(SecretString::new))
        {
            Some(p) => Unlock::Passphrase(p),
            None => Unlock::Keyring,
        };
        Ok(Self {
            paths,
            port,
            unlock,
            rate_limit_per_min: overrides
                .rate_limit_per_min
                .or(config.rate_limit)
                .unwrap_or(DEFAULT_RATE_LIMIT),
            approval_timeout: Duration::from_secs(
                overrides
                    .approval_timeout_secs
                    .or(config.approval_timeout)
                    .unwrap_or(DEFAULT_APPROVAL_TIMEOUT_SECS),
            ),
            provider_timeout: Duration::from_secs(
                config
                    .provider_timeout
                    .unwrap_or(DEFAULT_PROVIDER_TIMEOUT_SECS)
                    .max(1),
            ),
            limits: ConnLimits::from_config(config.max_connections, config.header_timeout),
        })
    }
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn dirs(config: &str) -> Paths {
        let root = std::env::temp_dir().join(format!(
            "akhrot-owner-options-{}-{}",
            std::process::id(),
            config.len()
        ));
        let config_dir = root.join("config");
        std::fs::create_dir_all(&config_dir).unwrap();
        std::fs::write(config_dir.join("config.toml"), config).unwrap();
        Paths {
            data_dir: root.join("data"),
            config_dir,
        }
    }

    #[test]
    fn overrides_then_config_then_defaults() {
        let paths = dirs("port = 1234\nrate_limit = 5\nprovider_timeout = 0\n");
        let from_config = OwnerOptions::resolve(
            paths.clone(),
            OwnerOverrides {
                port: Some(4321),
                passphrase: Some(SecretString::from("a passphrase")),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(from_config.port, 4321);
        assert_eq!(from_config.rate_limit_per_min, 5);
        assert_eq!(
            from_config.approval_timeout,
            Duration::from_secs(DEFAULT_APPROVAL_TIMEOUT_SECS)
        );
        assert_eq!(from_config.provider_timeout, Duration::from_secs(1));
        assert!(matches!(from_config.unlock, Unlock::Passphrase(_)));
        let flags = OwnerOptions::resolve(
            paths,
            OwnerOverrides {
                port: Some(0),
                rate_limit_per_min: Some(0),
                approval_timeout_secs: Some(30),
                passphrase: Some(SecretString::from("a passphrase")),
            },
        )
        .unwrap();
        assert_eq!(flags.port, 0);
        assert_eq!(flags.rate_limit_per_min, 0);
        assert_eq!(flags.approval_timeout, Duration::from_secs(30));
    }

    #[test]
    fn a_broken_config_is_an_error() {
        let paths = dirs("port = \"not a number\"");
        assert!(matches!(
            OwnerOptions::resolve(paths, OwnerOverrides::default()),
            Err(ResolveError::Config(_))
        ));
    }
}
