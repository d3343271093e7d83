//! Running the `akhrot` CLI against a test's directories, registering the secrets it is fed
//! and the ones it prints.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::secrets;
use crate::secrets::register_connection_fields;

/// The `akhrot` binary built from this workspace.
pub fn bin() -> PathBuf {
    if let Some(p) = std::env::var_os("AKHROT_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> -> target/<profile>/akhrot
    let p = exe.parent().unwrap().parent().unwrap().join("akhrot");
    assert!(
        p.exists(),
        "{} does not exist: build it first (cargo build -p akhrot-cli)",
        p.display()
    );
    p
}

/// Runs `akhrot` with the given directories.
pub fn cli_in(data: &Path, config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    // A client secret, or the one secret of a one-field provider (several fields come as
    // `field=value` lines, registered below by what the catalog says is secret).
    let secret_stdin = args.contains(&"--client-secret-stdin")
        || (args.contains(&"add") && stdin.is_some_and(|i| !i.contains('=')));
    if let (true, Some(input)) = (secret_stdin, stdin) {
        secrets::register(input);
    }
    if let (Some(i), Some(input)) = (args.iter().position(|a| *a == "add"), stdin)
        && let Some(provider) = args.get(i + 1)
    {
        let fields: serde_json::Map<String, Value> = input
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), Value::from(v.trim())))
            .collect();
        let body = serde_json::json!({ "provider": provider, "fields": fields });
        register_connection_fields(data, &body);
    }
    let out = run_fed(akhrot_cmd(data, config, args, stdin.is_some()), stdin);
    // What `keys create` and `token` print is a secret.
    if args.windows(2).any(|w| w == ["keys", "create"]) {
        secrets::register_agent_key(stdout(&out).trim());
    } else if args.contains(&"token") {
        secrets::register(stdout(&out).trim());
    }
    out
}

/// `akhrot --data-dir <data> --config-dir <config> <args>` with stdout and stderr captured, and
/// stdin piped when the run will feed it (see [`run_fed`]), else empty.
pub fn akhrot_cmd(data: &Path, config: &Path, args: &[&str], feed_stdin: bool) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("--data-dir")
        .arg(data)
        .arg("--config-dir")
        .arg(config)
        .args(args)
        .stdin(if feed_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Spawns `cmd`, writes `stdin` to it (if any) and waits for its output.
pub fn run_fed(mut cmd: Command, stdin: Option<&str>) -> Output {
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
