//! Programs Akhrot starts (the person's browser, `akhrot exec`'s command) must not inherit the
//! secrets Akhrot was given through its own environment: the vault passphrase
//! (`AKHROT_PASSPHRASE`), an agent key (`AKHROT_API_KEY`), and any other `AKHROT_*` variable
//! that is not known to be harmless. A browser started with the passphrase in its environment
//! hands it to every helper it runs, and anything that can read `/proc/<pid>/environ` of the
//! browser (same user) reads the passphrase.
//!
//! Every place that starts a child process goes through [`scrub_env`] (or [`open_browser`],
//! which does). Unknown `AKHROT_*` names are removed too: a secret added later must not leak
//! because nobody remembered to list it here.

use std::ffi::OsStr;
use std::io;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The `AKHROT_*` variables that hold secrets. They are removed even when this process does not
/// have them (a caller may have set them on the command).
pub const SECRET_VARS: &[&str] = &["AKHROT_PASSPHRASE", "AKHROT_API_KEY", "AKHROT_ADMIN_TOKEN"];

/// The `AKHROT_*` variables that are settings, not secrets, and pass through to children (a
/// nested `akhrot` started by `akhrot exec` still finds the same data directory). Every other
/// `AKHROT_*` variable is removed.
pub const PASS_THROUGH: &[&str] = &[
    "AKHROT_DATA_DIR",
    "AKHROT_CONFIG_DIR",
    "AKHROT_PORT",
    "AKHROT_NO_BROWSER",
];

/// Whether a variable of this process's environment must not reach a child.
pub fn is_secret_var(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        // Not UTF-8: cannot be one of ours unless it starts with the prefix's bytes.
        return name.as_encoded_bytes().starts_with(b"AKHROT_");
    };
    name.starts_with("AKHROT_") && !PASS_THROUGH.contains(&name)
}

/// Removes from `cmd`'s environment every `AKHROT_*` secret this process has (and the known
/// secret names in any case). Call it before setting the variables the child should get.
pub fn scrub_env(cmd: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        if is_secret_var(&name) {
            cmd.env_remove(name);
        }
    }
    for name in SECRET_VARS {
        cmd.env_remove(name);
    }
    cmd
}

/// How long a launcher (xdg-open, gio, …) may take to fail before the next one is tried; one
/// still running after that has handed the URL over.
const LAUNCH_CHECK: Duration = Duration::from_millis(250);

/// Opens `url` in the person's browser, like `open::that_detached`, but each launcher runs with
/// a scrubbed environment ([`scrub_env`], then `also_remove`), in its own process group (a
/// Ctrl-C meant for `akhrot connect` does not reach the browser), with no stdio.
pub fn open_browser(url: &str, also_remove: &[&str]) -> io::Result<()> {
    let mut first_err = None;
    for mut cmd in open::commands(url) {
        scrub_env(&mut cmd);
        for name in also_remove {
            cmd.env_remove(name);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt as _;
            cmd.process_group(0);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                first_err.get_or_insert(e);
                continue;
            }
        };
        let start = Instant::now();
        let exited = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if start.elapsed() < LAUNCH_CHECK => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(None) | Err(_) => break None,
            }
        };
        match exited {
            Some(status) if status.success() => return Ok(()),
            Some(status) => {
                first_err.get_or_insert(io::Error::other(format!(
                    "{:?} failed with {status}",
                    cmd.get_program()
                )));
            }
            None => {
                // Handed over; reap the launcher when it exits.
                std::thread::spawn(move || child.wait());
                return Ok(());
            }
        }
    }
    Err(first_err.unwrap_or_else(|| io::Error::other("no program to open a browser with")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_secret_var(OsStr::new("AKHROT_PASSPHRASE")));
        assert!(is_secret_var(OsStr::new("AKHROT_API_KEY")));
        assert!(is_secret_var(OsStr::new("AKHROT_SOMETHING_NEW")));
        assert!(!is_secret_var(OsStr::new("AKHROT_DATA_DIR")));
        assert!(!is_secret_var(OsStr::new("PATH")));
        assert!(!is_secret_var(OsStr::new("XAKHROT_PASSPHRASE")));
    }
}
