//! Where Akhrot keeps things, and how its files are created (directories 0700, files 0600).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The two directories an instance uses. Two instances with different directories share nothing
/// (the keyring entry is named after the vault's own random id).
#[derive(Debug, Clone)]
pub struct Paths {
    pub data_dir: PathBuf,
    pub config_dir: PathBuf,
}

impl Paths {
    /// Resolves the directories: explicit value, else `AKHROT_DATA_DIR`/`AKHROT_CONFIG_DIR`,
    /// else `$XDG_DATA_HOME/akhrot` and `$XDG_CONFIG_HOME/akhrot` (with the usual fallbacks).
    pub fn resolve(data_dir: Option<PathBuf>, config_dir: Option<PathBuf>) -> Result<Self> {
        let data_dir = match data_dir.or_else(|| env_path("AKHROT_DATA_DIR")) {
            Some(p) => p,
            None => base_dir("XDG_DATA_HOME", ".local/share", "APPDATA")?.join("akhrot"),
        };
        let config_dir = match config_dir.or_else(|| env_path("AKHROT_CONFIG_DIR")) {
            Some(p) => p,
            None => base_dir("XDG_CONFIG_HOME", ".config", "APPDATA")?.join("akhrot"),
        };
        Ok(Self {
            data_dir: absolute(data_dir),
            config_dir: absolute(config_dir),
        })
    }

    pub fn vault_db(&self) -> PathBuf {
        self.data_dir.join("vault.db")
    }
    /// The admin credential of the running owner (rewritten at every start).
    pub fn admin_token(&self) -> PathBuf {
        self.data_dir.join("admin.token")
    }
    /// Where the running owner says how to reach it.
    pub fn server_file(&self) -> PathBuf {
        self.data_dir.join("server.json")
    }
    /// Held locked by the one process that owns this data dir.
    pub fn owner_lock(&self) -> PathBuf {
        self.data_dir.join("owner.lock")
    }
    pub fn providers_d(&self) -> PathBuf {
        self.config_dir.join("providers.d")
    }
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn base_dir(xdg: &str, home_rel: &str, windows: &str) -> Result<PathBuf> {
    if let Some(p) = env_path(xdg).filter(|p| p.is_absolute()) {
        return Ok(p);
    }
    if cfg!(windows)
        && let Some(p) = env_path(windows)
    {
        return Ok(p);
    }
    if let Some(home) = env_path("HOME") {
        return Ok(home.join(home_rel));
    }
    Err(Error::Io(format!(
        "cannot tell where to keep data: neither ${xdg} nor $HOME is set; pass --data-dir and --config-dir"
    )))
}

fn absolute(p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        p
    } else {
        std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
    }
}

/// Creates a directory (and parents) readable by its owner only.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)
        .map_err(|e| Error::Io(format!("cannot create {}: {e}", dir.display())))?;
    set_mode(dir, 0o700)
}

/// Writes a file atomically (temp file + rename) with mode 0600 from its creation on.
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let res = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(Error::Io(format!("cannot write {}: {e}", path.display())));
    }
    Ok(())
}

/// Sets a file's permission bits (no-op off Unix).
pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if path.exists() {
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .map_err(|e| Error::Io(format!("cannot set mode of {}: {e}", path.display())))?;
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}
