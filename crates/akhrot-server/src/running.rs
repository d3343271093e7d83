//! Finding the running owner before any credential is sent to it.
//!
//! `server.json` and `admin.token` stay behind when an owner crashes, and any local process may
//! then listen on the port they name. A client that trusted them would hand its admin credential
//! or agent key to that process (and `akhrot ui` would open whatever URL it answered). So a
//! client first checks that the owner is alive: the owner lock (`owner.lock`, an exclusive
//! `flock` the owner holds for as long as it runs, released by the kernel when it dies) must be
//! held, and on Linux held by the very pid `server.json` names (`/proc/locks`). The address is
//! built from the port alone: always `http://127.0.0.1:<port>`, whatever else the file says.

use std::fs::File;

use akhrot_core::paths::Paths;

/// What `server.json` says about a running owner.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfo {
    pub pid: u32,
    pub port: u16,
    pub base_url: String,
    pub started_at: String,
    pub version: String,
}

impl ServerInfo {
    pub fn read(paths: &Paths) -> Option<Self> {
        let text = std::fs::read_to_string(paths.server_file()).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// Why no live owner was found; the text says it in a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotRunning(pub String);

impl std::fmt::Display for NotRunning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotRunning {}

/// The owner `server.json` describes, once it is shown to be alive and holding the owner lock.
pub fn live_owner(paths: &Paths) -> Result<ServerInfo, NotRunning> {
    let info = ServerInfo::read(paths).ok_or_else(|| NotRunning("no server.json".into()))?;
    let lock =
        File::open(paths.owner_lock()).map_err(|_| NotRunning("no owner lock file".into()))?;
    match lock.try_lock_shared() {
        Ok(()) => {
            // Nobody holds it: the owner that wrote server.json is gone.
            let _ = lock.unlock();
            return Err(NotRunning(format!(
                "the owner that wrote server.json (pid {}) is not running any more; its files were left behind",
                info.pid
            )));
        }
        Err(std::fs::TryLockError::WouldBlock) => {}
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(NotRunning(format!("cannot check the owner lock: {e}")));
        }
    }
    check_holder(&lock, info.pid)?;
    Ok(info)
}

/// The loopback URL of an owner on `port`: the only address a client sends credentials to.
pub fn base_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

#[cfg(target_os = "linux")]
fn check_holder(lock: &File, pid: u32) -> Result<(), NotRunning> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = lock.metadata() else {
        return Ok(());
    };
    let Ok(table) = std::fs::read_to_string("/proc/locks") else {
        return pid_alive(pid);
    };
    let holders = flock_holders(&table, meta.ino());
    if holders.is_empty() {
        // A kernel that shows no pid for this lock (or another format): the lock is held, so
        // fall back to the pid being alive.
        return pid_alive(pid);
    }
    if holders.contains(&pid) {
        Ok(())
    } else {
        Err(NotRunning(format!(
            "server.json names pid {pid}, but the owner lock is held by pid {}; not sending any credential",
            holders
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

#[cfg(not(target_os = "linux"))]
fn check_holder(_lock: &File, _pid: u32) -> Result<(), NotRunning> {
    // The lock is held; other platforms have no /proc/locks to say by whom.
    Ok(())
}

#[cfg(target_os = "linux")]
fn pid_alive(pid: u32) -> Result<(), NotRunning> {
    if std::path::Path::new("/proc").join(pid.to_string()).exists() {
        Ok(())
    } else {
        Err(NotRunning(format!(
            "the owner that wrote server.json (pid {pid}) is not running"
        )))
    }
}

/// Pids holding a `FLOCK` write lock on inode `ino`, from `/proc/locks` lines such as
/// `3: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF` (`->` lines are waiters, skipped).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn flock_holders(table: &str, ino: u64) -> Vec<u32> {
    table
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 6 || f.get(1) == Some(&"->") || f[1] != "FLOCK" || f[3] != "WRITE" {
                return None;
            }
            let inode = f[5].rsplit(':').next()?.parse::<u64>().ok()?;
            (inode == ino).then(|| f[4].parse::<u32>().ok()).flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_locks_lines_name_the_holder() {
        let table = "1: POSIX  ADVISORY  WRITE 77 00:2a:99 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 4321 00:2a:5678 0 EOF\n\
                     3: FLOCK  ADVISORY  READ 55 00:2a:5678 0 EOF\n\
                     4: FLOCK  ADVISORY  WRITE 66 fd:01:5679 0 EOF\n";
        assert_eq!(flock_holders(table, 5678), vec![1234]);
        assert_eq!(flock_holders(table, 99), Vec::<u32>::new());
        assert_eq!(flock_holders("garbage\n\n1:", 5678), Vec::<u32>::new());
    }

    #[test]
    fn the_base_url_is_loopback_whatever_the_file_says() {
        assert_eq!(base_url(47420), "http://127.0.0.1:47420");
    }
}
