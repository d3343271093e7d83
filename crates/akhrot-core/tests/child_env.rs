//! Children started through `akhrot_core::child` do not inherit this process's `AKHROT_*`
//! secrets. The test re-runs its own binary with the secrets in its environment (a test cannot
//! set variables in its own process: `set_var` is unsafe and this workspace forbids unsafe code).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use akhrot_core::child::{open_browser, scrub_env};

const MARK: &str = "CHILD_ENV_TEST_INNER";

fn rerun(test: &str, envs: &[(&str, &str)]) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(MARK, "1")
        .env("AKHROT_PASSPHRASE", "passphrase-must-not-leak")
        .env("AKHROT_API_KEY", "akhrot_key_must_not_leak")
        .env("AKHROT_ADMIN_TOKEN", "admin-must-not-leak")
        .env("AKHROT_FUTURE_SECRET", "future-must-not-leak")
        .env("AKHROT_DATA_DIR", "/tmp/akhrot-data-kept");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("1 passed"),
        "the inner test did not run: {text}"
    );
}

fn assert_scrubbed(env: &str) {
    for leak in [
        "passphrase-must-not-leak",
        "akhrot_key_must_not_leak",
        "admin-must-not-leak",
        "future-must-not-leak",
    ] {
        assert!(!env.contains(leak), "a secret reached the child: {env}");
    }
    assert!(!env.contains("AKHROT_PASSPHRASE="), "{env}");
    // Settings pass through, and so does the rest of the environment.
    assert!(
        env.contains("AKHROT_DATA_DIR=/tmp/akhrot-data-kept"),
        "{env}"
    );
    assert!(env.contains(&format!("{MARK}=1")), "{env}");
}

#[test]
fn a_child_gets_no_akhrot_secret() {
    if std::env::var_os(MARK).is_some() {
        // Inner run: this process has the secrets.
        assert_eq!(
            std::env::var("AKHROT_PASSPHRASE").unwrap(),
            "passphrase-must-not-leak"
        );
        let out = scrub_env(&mut Command::new("env")).output().unwrap();
        assert!(out.status.success());
        assert_scrubbed(&String::from_utf8_lossy(&out.stdout));
        return;
    }
    rerun("a_child_gets_no_akhrot_secret", &[]);
}

#[cfg(target_os = "linux")]
#[test]
fn the_browser_gets_no_akhrot_secret() {
    if std::env::var_os(MARK).is_some() {
        let dump = std::env::var("FAKE_BROWSER_DUMP").unwrap();
        open_browser("https://example.test/consent", &["GDK_GL"]).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !Path::new(&dump).exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the fake browser never ran"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // Written by a shell redirect: wait until the URL line (the last) is in.
        let mut text = String::new();
        while !text.contains("URL=https://example.test/consent") {
            assert!(std::time::Instant::now() < deadline, "{text}");
            std::thread::sleep(std::time::Duration::from_millis(20));
            text = std::fs::read_to_string(&dump).unwrap();
        }
        assert_scrubbed(&text);
        assert!(!text.contains("GDK_GL="), "{text}");
        return;
    }
    // A fake `xdg-open` first on PATH records the environment it was started with.
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("env.txt");
    let script = dir.path().join("xdg-open");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{{ env; echo \"URL=$1\"; }} > '{}.tmp' && mv '{0}.tmp' '{0}'\n",
            dump.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    rerun(
        "the_browser_gets_no_akhrot_secret",
        &[
            ("PATH", path.as_str()),
            ("FAKE_BROWSER_DUMP", dump.to_str().unwrap()),
            ("GDK_GL", "disable"),
        ],
    );
}
