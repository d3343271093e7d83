//! The core's error type. Every message is written for the person reading it and never
//! contains a secret.

use crate::keystore::KeystoreError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is wrong (missing field, bad value).
    #[error("{0}")]
    BadRequest(String),
    /// No provider with that code in the catalog.
    #[error("no provider `{0}` in the catalog; GET /ai/context/summary lists the available codes")]
    ProviderNotFound(String),
    /// The provider (or that account of it) is not connected.
    #[error("{0}")]
    IntegrationNotFound(String),
    /// An agent key, or another named thing, does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The thing already exists (e.g. an agent key name).
    #[error("{0}")]
    Conflict(String),
    /// A sealed value failed authentication: the vault was modified outside Akhrot.
    #[error("{0}")]
    Integrity(String),
    /// The master key could not be had, or is not the vault's.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// The database could not be read or written (disk full, read-only, corrupt file).
    #[error("the vault database could not be used: {0}")]
    Storage(String),
    /// A provider catalog file is malformed.
    #[error("{0}")]
    Catalog(String),
    /// A file-system problem outside the database.
    #[error("{0}")]
    Io(String),
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        // SQLite messages name tables and constraints, never bound values.
        Error::Storage(e.to_string())
    }
}
