//! Who is at the other end of a loopback connection, according to the operating system.
//!
//! An agent that calls the loopback API says who it is through its key (the key's name is chosen
//! by whoever created it, and the request may carry any user agent it likes). When the owner is
//! asked to approve a request, the prompt should also show facts the caller cannot choose: which
//! executable holds the client end of the TCP connection, with which arguments, in which
//! directory, as which user, started by which parent. [`identify`] asks the OS for those facts.
//!
//! The answer is a [`Peer`]: every process that holds the client's socket (a process that forks
//! after connecting shares it with its child, and either may write the request), whether that
//! answer is certain (`verified`), and a plain note when it is not. When nothing is found (the
//! process already exited, it belongs to another user whose file descriptors we may not read,
//! the platform is not supported) the list is empty and the note says so: the prompt must say
//! that the process is unknown rather than guess.
//!
//! Only Linux is implemented (through `/proc`). macOS would need `libproc`
//! (`proc_listpids` / `proc_pidfdinfo` with `PROC_PIDFDSOCKETINFO`), which means FFI and `unsafe`
//! code, forbidden in this workspace; Windows would need `GetExtendedTcpTable`. Both answer
//! "unknown" for now.

use std::net::SocketAddr;

use serde::Serialize;

/// At most this many arguments of a command line are kept.
pub const MAX_ARGS: usize = 20;
/// Each kept argument (and path) is cut to this many characters.
pub const MAX_ARG_CHARS: usize = 200;
/// At most this many processes sharing one connection are listed (the note says when more were).
pub const MAX_PROCESSES: usize = 8;
/// The note when the OS names no process.
pub const NOTE_UNKNOWN: &str = "the OS could not say which process this is";

/// Who is at the other end of a connection, as the OS says: what the approval prompt, the
/// admin API, the audit log and the UIs show.
///
/// `verified` is true only when exactly one process holds the client's socket, every fact about
/// it could be read, and no process of the same user hid its descriptors from the lookup. In
/// every other case `note` says, in a plain sentence, why the answer is not certain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Peer {
    pub verified: bool,
    pub note: Option<String>,
    /// Every process holding the socket, by pid, at most [`MAX_PROCESSES`].
    pub processes: Vec<PeerProcess>,
}

impl Peer {
    /// No process known; `note` says why.
    pub fn unknown(note: impl Into<String>) -> Self {
        Self {
            verified: false,
            note: Some(note.into()),
            processes: Vec::new(),
        }
    }

    /// The pids of the listed processes (empty when unknown).
    pub fn pids(&self) -> Vec<u32> {
        self.processes.iter().map(|p| p.pid).collect()
    }

    /// The verdict on a lookup: `holders` every pid holding the socket (sorted), `read` what
    /// could be read about the first [`MAX_PROCESSES`] of them (`None`: the process vanished;
    /// `Some((p, false))`: some of its facts could not be read), `hidden` how many processes of
    /// the socket's user would not show their descriptors.
    pub(crate) fn judge(
        holders: usize,
        read: Vec<Option<(PeerProcess, bool)>>,
        hidden: usize,
    ) -> Self {
        let mut notes: Vec<String> = Vec::new();
        let complete = read.iter().all(|r| matches!(r, Some((_, true))));
        let processes: Vec<PeerProcess> = read.into_iter().flatten().map(|(p, _)| p).collect();
        if processes.is_empty() {
            notes.push(NOTE_UNKNOWN.to_owned());
        } else if holders > 1 {
            let mut n = format!(
                "{holders} processes share this connection; any of them may have sent the request"
            );
            if holders > processes.len() {
                n.push_str(&format!(" (only {} are listed)", processes.len()));
            }
            notes.push(n);
        }
        if !processes.is_empty() && !complete {
            notes.push(if holders > 1 {
                "some facts about these processes could not be read".to_owned()
            } else {
                "some facts about this process could not be read".to_owned()
            });
        }
        if hidden > 0 {
            notes.push(if hidden == 1 {
                "1 other process of this user hides its connections from Akhrot; it may have sent the request".to_owned()
            } else {
                format!("{hidden} other processes of this user hide their connections from Akhrot; any of them may have sent the request")
            });
        }
        Self {
            verified: holders == 1 && processes.len() == 1 && complete && hidden == 0,
            note: (!notes.is_empty()).then(|| notes.join("; ")),
            processes,
        }
    }
}

/// What the operating system says about the process at the other end of a loopback connection.
///
/// Every text field is as the OS reports it, except that control characters (newlines,
/// terminal escapes) are replaced by `U+FFFD` so that a crafted argument cannot draw fake lines
/// into the approval prompt, and that command lines are cut (see [`MAX_ARGS`], [`MAX_ARG_CHARS`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerProcess {
    /// Process id.
    pub pid: u32,
    /// The executable (`/proc/<pid>/exe` link target); `None` when it cannot be read.
    pub exe: Option<String>,
    /// The command line (`/proc/<pid>/cmdline`), at most [`MAX_ARGS`] arguments of at most
    /// [`MAX_ARG_CHARS`] characters each. Unlike `exe`, the process can rewrite this.
    pub cmdline: Vec<String>,
    /// The working directory (`/proc/<pid>/cwd` link target).
    pub cwd: Option<String>,
    /// The real user id (first number of `Uid:` in `/proc/<pid>/status`).
    pub uid: Option<u32>,
    /// The parent process (ppid from `/proc/<pid>/stat`); `None` when there is none (pid 0) or
    /// it cannot be read.
    pub parent: Option<ParentProcess>,
}

/// The parent of a [`PeerProcess`]: often the shell or IDE that launched the agent, which tells
/// the owner more than the agent's own name does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentProcess {
    /// Process id.
    pub pid: u32,
    /// The executable (`/proc/<pid>/exe` link target).
    pub exe: Option<String>,
    /// The command line, cut like [`PeerProcess::cmdline`].
    pub cmdline: Vec<String>,
}

/// Finds every process holding the client side of a TCP connection on this machine.
///
/// `local` is our (server) address and `peer` the client's address, both as the listener saw
/// them (from the accepted socket). The order matters: swapped, the lookup would find the server's
/// own accepted socket, i.e. this process. The client's socket is the one whose own address is `peer`
/// and whose remote address is `local`; IPv4 and IPv4-mapped IPv6 addresses
/// (`::ffff:a.b.c.d`) compare equal, since a dual-stack listener sees an IPv4 client that way.
///
/// Linux: the socket's inode (and its owner's uid) is looked up in `/proc/net/tcp` and
/// `/proc/net/tcp6` (state ESTABLISHED only), then every `/proc/<pid>/fd/*` is scanned for a
/// `socket:[<inode>]` link. That costs O(processes × descriptors), a few milliseconds: call it
/// from a blocking thread (`spawn_blocking`). The client may be this very process (in tests it
/// is); it is returned like any other. Every process holding the socket is listed (a fork after
/// connecting shares it, and the decoy may be either side), and a process of the socket's user
/// whose descriptors cannot be read (it made itself non-dumpable) counts against certainty: it
/// may hold the socket unseen.
///
/// Never fails: when nothing matches (the connection is gone, the process exited, it belongs to
/// another user whose descriptors we cannot read, `/proc` is unreadable) the answer is
/// [`Peer::unknown`]. Malformed `/proc` content never panics; it simply does not match.
///
/// Other OSes: always unknown for now (see the module documentation).
pub fn identify(local: SocketAddr, peer: SocketAddr) -> Peer {
    #[cfg(target_os = "linux")]
    {
        linux::identify(local, peer).unwrap_or_else(|_| Peer::unknown(NOTE_UNKNOWN))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (local, peer);
        Peer::unknown(NOTE_UNKNOWN)
    }
}

/// Replaces control characters (each one stays visible) and cuts to `max` characters.
#[cfg(target_os = "linux")]
use crate::text::replace_controls as clean;

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::OsStr;
    use std::fs;
    use std::io;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    use std::path::Path;

    use super::{MAX_ARG_CHARS, MAX_ARGS, MAX_PROCESSES, ParentProcess, Peer, PeerProcess, clean};

    /// `TCP_ESTABLISHED` in the kernel's `st` column.
    const ESTABLISHED: u8 = 0x01;

    /// Paths (exe, cwd) are cut far longer than arguments: they are one fact, not free text.
    const MAX_PATH_CHARS: usize = 4096;

    /// One row of `/proc/net/tcp` or `/proc/net/tcp6`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) struct TcpEntry {
        pub local: SocketAddr,
        pub remote: SocketAddr,
        pub state: u8,
        /// The socket's owner (the user that created it).
        pub uid: u32,
        pub inode: u64,
    }

    pub(super) fn identify(local: SocketAddr, peer: SocketAddr) -> io::Result<Peer> {
        let Some((inode, uid)) = find_client_socket(local, peer)? else {
            return Ok(Peer::unknown(super::NOTE_UNKNOWN));
        };
        let scan = find_pids_with_socket(inode, uid)?;
        let read = scan
            .pids
            .iter()
            .take(MAX_PROCESSES)
            .map(|&pid| read_process(pid))
            .collect();
        Ok(Peer::judge(scan.pids.len(), read, scan.hidden))
    }

    /// The inode and owner uid of the ESTABLISHED socket whose own address is `peer` and whose
    /// remote address is `local`.
    fn find_client_socket(local: SocketAddr, peer: SocketAddr) -> io::Result<Option<(u64, u32)>> {
        for (table, required) in [("/proc/net/tcp", true), ("/proc/net/tcp6", false)] {
            let text = match fs::read_to_string(table) {
                Ok(text) => text,
                // Without IPv6 support the tcp6 table does not exist.
                Err(_) if !required => continue,
                Err(e) => return Err(e),
            };
            let found = parse_tcp_table(&text).into_iter().find(|e| {
                e.state == ESTABLISHED
                    && e.inode != 0
                    && same_addr(e.local, peer)
                    && same_addr(e.remote, local)
            });
            if let Some(entry) = found {
                return Ok(Some((entry.inode, entry.uid)));
            }
        }
        Ok(None)
    }

    /// Equal ports and equal IPs, an IPv4-mapped IPv6 address being equal to its IPv4 address
    /// (flow info and scope id are ignored).
    fn same_addr(a: SocketAddr, b: SocketAddr) -> bool {
        a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical()
    }

    /// Parses the rows of a `/proc/net/tcp{,6}` text; the header and unparsable rows are skipped.
    ///
    /// Columns: `sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid
    /// timeout inode ...`.
    pub(super) fn parse_tcp_table(text: &str) -> Vec<TcpEntry> {
        text.lines().filter_map(parse_tcp_line).collect()
    }

    fn parse_tcp_line(line: &str) -> Option<TcpEntry> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 10 || !fields[0].ends_with(':') {
            return None;
        }
        Some(TcpEntry {
            local: parse_hex_addr(fields[1])?,
            remote: parse_hex_addr(fields[2])?,
            state: parse_hex::<u8>(fields[3])?,
            uid: fields[7].parse().ok().filter(|_| is_digits(fields[7]))?,
            inode: fields[9].parse().ok().filter(|_| is_digits(fields[9]))?,
        })
    }

    /// Parses `IP:PORT` as the kernel prints it.
    ///
    /// The kernel prints the address (a `__be32`, or four of them for IPv6) with `%08X` of the
    /// value as loaded natively, so the bytes in network order are the parsed `u32`'s native-endian
    /// bytes (`0100007F` is 127.0.0.1 on little-endian machines, `7F000001` on big-endian ones).
    /// The port is printed after `ntohs`, so it is plain hex.
    pub(super) fn parse_hex_addr(s: &str) -> Option<SocketAddr> {
        let (ip, port) = s.split_once(':')?;
        let port = parse_hex::<u16>(port).filter(|_| port.len() == 4)?;
        let ip = match ip.len() {
            8 => IpAddr::V4(Ipv4Addr::from(parse_hex::<u32>(ip)?.to_ne_bytes())),
            32 => {
                let mut bytes = [0u8; 16];
                for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                    let word = parse_hex::<u32>(ip.get(i * 8..i * 8 + 8)?)?;
                    chunk.copy_from_slice(&word.to_ne_bytes());
                }
                IpAddr::V6(Ipv6Addr::from(bytes))
            }
            _ => return None,
        };
        Some(SocketAddr::new(ip, port))
    }

    /// Hex digits only (`from_str_radix` would also take a leading sign).
    fn parse_hex<T: FromHex>(s: &str) -> Option<T> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        T::from_hex(s)
    }

    trait FromHex: Sized {
        fn from_hex(s: &str) -> Option<Self>;
    }
    macro_rules! from_hex {
        ($($t:ty),*) => {$(
            impl FromHex for $t {
                fn from_hex(s: &str) -> Option<Self> {
                    <$t>::from_str_radix(s, 16).ok()
                }
            }
        )*};
    }
    from_hex!(u8, u16, u32);

    fn is_digits(s: &str) -> bool {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
    }

    /// What a scan of `/proc` found.
    pub(super) struct Scan {
        /// Every process with a descriptor linked to the socket, by pid.
        pub pids: Vec<u32>,
        /// Processes of the socket's user whose descriptors could not be listed: a process
        /// that made itself non-dumpable (`prctl(PR_SET_DUMPABLE, 0)`) hides them, and could
        /// hold the socket unseen.
        pub hidden: usize,
    }

    /// Every process with a descriptor linked to `socket:[<inode>]`. Processes that exit
    /// meanwhile are skipped; of the processes whose descriptors we cannot read, those of `uid`
    /// (the socket's user, as whom the agent runs) are counted in [`Scan::hidden`], those of
    /// other users skipped (the agent cannot run its own code as them without privileges).
    pub(super) fn find_pids_with_socket(inode: u64, uid: u32) -> io::Result<Scan> {
        let target = format!("socket:[{inode}]");
        let target = OsStr::new(&target);
        let mut scan = Scan {
            pids: Vec::new(),
            hidden: 0,
        };
        for entry in fs::read_dir("/proc")? {
            let Ok(entry) = entry else { continue };
            let Some(pid) = entry
                .file_name()
                .to_str()
                .filter(|name| is_digits(name))
                .and_then(|name| name.parse::<u32>().ok())
            else {
                continue;
            };
            let fds = match fs::read_dir(entry.path().join("fd")) {
                Ok(fds) => fds,
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    let owner = fs::read_to_string(entry.path().join("status"))
                        .ok()
                        .as_deref()
                        .and_then(parse_real_uid);
                    if owner == Some(uid) {
                        scan.hidden += 1;
                    }
                    continue;
                }
                Err(_) => continue,
            };
            if fds
                .flatten()
                .any(|fd| fs::read_link(fd.path()).is_ok_and(|link| link.as_os_str() == target))
            {
                scan.pids.push(pid);
            }
        }
        scan.pids.sort_unstable();
        Ok(scan)
    }

    /// What `/proc/<pid>` says, and whether every fact of the process itself (not its parent)
    /// could be read; `None` when the process no longer exists.
    fn read_process(pid: u32) -> Option<(PeerProcess, bool)> {
        let dir = Path::new("/proc").join(pid.to_string());
        let stat = fs::read_to_string(dir.join("stat")).ok();
        if stat.is_none() && !dir.exists() {
            return None;
        }
        let ppid = stat.as_deref().and_then(parse_ppid);
        let parent = ppid.filter(|&ppid| ppid != 0).map(|ppid| {
            let pdir = Path::new("/proc").join(ppid.to_string());
            ParentProcess {
                pid: ppid,
                exe: read_link_text(&pdir.join("exe")),
                cmdline: read_cmdline(&pdir.join("cmdline")).unwrap_or_default(),
            }
        });
        let cmdline = read_cmdline(&dir.join("cmdline"));
        let p = PeerProcess {
            pid,
            exe: read_link_text(&dir.join("exe")),
            cwd: read_link_text(&dir.join("cwd")),
            uid: fs::read_to_string(dir.join("status"))
                .ok()
                .as_deref()
                .and_then(parse_real_uid),
            parent,
            cmdline: cmdline.clone().unwrap_or_default(),
        };
        let complete = ppid.is_some()
            && p.exe.is_some()
            && p.cwd.is_some()
            && p.uid.is_some()
            && cmdline.is_some_and(|c| !c.is_empty());
        Some((p, complete))
    }

    fn read_link_text(path: &Path) -> Option<String> {
        let target = fs::read_link(path).ok()?;
        Some(clean(&target.to_string_lossy(), MAX_PATH_CHARS))
    }

    fn read_cmdline(path: &Path) -> Option<Vec<String>> {
        fs::read(path).ok().map(|bytes| parse_cmdline(&bytes))
    }

    /// NUL-separated arguments (the last one NUL-terminated), cut to [`MAX_ARGS`] ×
    /// [`MAX_ARG_CHARS`].
    pub(super) fn parse_cmdline(bytes: &[u8]) -> Vec<String> {
        let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
        if bytes.is_empty() {
            return Vec::new();
        }
        let args: Vec<String> = bytes
            .split(|&b| b == 0)
            .take(MAX_ARGS)
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect();
        super::redact_args(&args)
            .iter()
            .map(|arg| clean(arg, MAX_ARG_CHARS))
            .collect()
    }

    /// The ppid from `/proc/<pid>/stat`: `pid (comm) state ppid ...`, where `comm` may hold
    /// spaces and `)`, so the fields are read after the last `)`.
    pub(super) fn parse_ppid(stat: &str) -> Option<u32> {
        let (_, rest) = stat.rsplit_once(')')?;
        let mut fields = rest.split_whitespace();
        let _state = fields.next()?;
        let ppid = fields.next()?;
        ppid.parse().ok().filter(|_| is_digits(ppid))
    }

    /// The real uid: the first number of the `Uid:` line of `/proc/<pid>/status`.
    pub(super) fn parse_real_uid(status: &str) -> Option<u32> {
        let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
        let uid = line.split_whitespace().next()?;
        uid.parse().ok().filter(|_| is_digits(uid))
    }
}

const REDACTED: &str = "[redacted]";

/// A command line with the secrets it carries replaced by `[redacted]`, so that the prompt and
/// the audit log never show one: an agent that runs `curl -H "Authorization: Bearer akhrot_…"`
/// puts its own key in its argv, which any local process can read.
///
/// Redacted: the secret half of agent keys (`akhrot_<id>_<secret>`, the id stays: it names the
/// key), admin credentials (`akhrot-admin-…`), whatever follows `Bearer `, `Basic ` or `token `
/// (any case), the value of an option whose name says it is secret (`--token X`, `--password=X`,
/// `-p` is not guessed), and the value of `NAME=value` words whose name says so (`API_KEY=…`).
pub fn redact_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut secret_next = false;
    for arg in args {
        if secret_next && !arg.starts_with('-') {
            out.push(REDACTED.to_owned());
            secret_next = false;
            continue;
        }
        secret_next = false;
        if let Some(name) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) {
            match name.split_once('=') {
                Some((n, _)) if secret_name(n) => {
                    out.push(format!(
                        "{}={REDACTED}",
                        &arg[..arg.len() - name.len() + n.len()]
                    ));
                    continue;
                }
                None if secret_name(name) => secret_next = true,
                _ => {}
            }
        } else if let Some((n, _)) = arg.split_once('=')
            && !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            && secret_name(n)
        {
            out.push(format!("{n}={REDACTED}"));
            continue;
        }
        out.push(redact_text(arg));
    }
    out
}

/// Whether an option or variable name says its value is a secret.
fn secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "token",
        "secret",
        "password",
        "passwd",
        "api-key",
        "api_key",
        "apikey",
        "credential",
    ]
    .iter()
    .any(|w| n.contains(w))
        || n == "key"
        || n.ends_with("-key")
        || n.ends_with("_key")
}

/// Secrets inside one argument: agent keys, admin credentials, and words after an auth scheme.
fn redact_text(arg: &str) -> String {
    let mut s = arg.to_owned();
    // Agent keys: keep `akhrot_<id>_`, drop the secret.
    let mut from = 0;
    while let Some(i) = s[from..].find(crate::agent_key::PREFIX) {
        let start = from + i + crate::agent_key::PREFIX.len();
        let rest = &s[start..];
        let id_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            .count();
        if rest.as_bytes().get(id_len) == Some(&b'_') {
            let secret_start = start + id_len + 1;
            let secret_len = s[secret_start..]
                .bytes()
                .take_while(u8::is_ascii_alphanumeric)
                .count();
            if secret_len > 0 {
                s.replace_range(secret_start..secret_start + secret_len, REDACTED);
            }
            from = secret_start + REDACTED.len().min(s.len() - secret_start);
        } else {
            from = start;
        }
    }
    // Admin credentials and `Bearer x` / `Basic x` / `token x`.
    // `basic`/`token` are ordinary words; they are a scheme only in an Authorization header.
    let header = s.to_ascii_lowercase().contains("authorization");
    for marker in ["akhrot-admin-", "bearer ", "basic ", "token "] {
        if !header && matches!(marker, "basic " | "token ") {
            continue;
        }
        let mut from = 0;
        loop {
            let lower = s.to_ascii_lowercase();
            let Some(i) = lower[from..].find(marker) else {
                break;
            };
            let start = from + i + marker.len();
            let len = s[start..]
                .find(|c: char| c.is_whitespace() || c == '"' || c == '\'')
                .unwrap_or(s.len() - start);
            if len > 0 && &s[start..start + len] != REDACTED {
                s.replace_range(start..start + len, REDACTED);
            }
            from = start + REDACTED.len().min(s.len() - start);
        }
    }
    s
}

#[cfg(test)]
mod redact_tests {
    use super::redact_args;

    fn r(args: &[&str]) -> Vec<String> {
        redact_args(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn agent_keys_and_auth_headers_are_redacted() {
        let key = format!("akhrot_abcdefghij_{}", "0a".repeat(32));
        let header = format!("Authorization: Bearer {key}");
        assert_eq!(
            r(&["curl", "-H", &header, "http://127.0.0.1:47420/tokens/fetch"]),
            [
                "curl",
                "-H",
                "Authorization: Bearer [redacted]",
                "http://127.0.0.1:47420/tokens/fetch"
            ]
        );
        let bare = r(&["agent", &key]);
        assert_eq!(bare[1], "akhrot_abcdefghij_[redacted]");
        assert_eq!(
            r(&["x", "AUTHORIZATION: basic dXNlcjpwYXNz"])[1],
            "AUTHORIZATION: basic [redacted]"
        );
        assert_eq!(
            r(&["gh", "-H", "Authorization: token ghp_123"])[2],
            "Authorization: token [redacted]"
        );
        let admin = format!("akhrot-admin-{}", "f".repeat(64));
        assert_eq!(r(&[&admin])[0], "akhrot-admin-[redacted]");
    }

    #[test]
    fn secret_options_and_assignments_are_redacted() {
        assert_eq!(
            r(&["tool", "--token", "abc", "--verbose"]),
            ["tool", "--token", "[redacted]", "--verbose"]
        );
        assert_eq!(
            r(&["tool", "--api-key=sk-1"]),
            ["tool", "--api-key=[redacted]"]
        );
        assert_eq!(
            r(&["env", "OPENAI_API_KEY=sk-1", "python"]),
            ["env", "OPENAI_API_KEY=[redacted]", "python"]
        );
        assert_eq!(
            r(&["tool", "--password", "-v"]),
            ["tool", "--password", "-v"]
        );
        // Ordinary arguments are left alone.
        assert_eq!(
            r(&[
                "python3",
                "agent.py",
                "--model",
                "x",
                "path=/tmp",
                "--keyboard"
            ]),
            [
                "python3",
                "agent.py",
                "--model",
                "x",
                "path=/tmp",
                "--keyboard"
            ]
        );
        assert_eq!(
            r(&["echo", "akhrot_ is a prefix"])[1],
            "akhrot_ is a prefix"
        );
        assert_eq!(r(&["say", "basic token use"])[1], "basic token use");
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::linux::{
        TcpEntry, parse_cmdline, parse_hex_addr, parse_ppid, parse_real_uid, parse_tcp_table,
    };
    use super::*;
    use std::io::{self, Read};
    use std::net::{TcpListener, TcpStream};
    use std::path::PathBuf;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    fn self_ppid() -> u32 {
        let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
        parse_ppid(&stat).expect("ppid")
    }

    fn canonical(p: &str) -> PathBuf {
        std::fs::canonicalize(p).expect("canonicalize")
    }

    /// Accepts one connection, giving up after `timeout`.
    fn accept_within(listener: &TcpListener, timeout: Duration) -> (TcpStream, SocketAddr) {
        listener.set_nonblocking(true).expect("nonblocking");
        let deadline = Instant::now() + timeout;
        loop {
            match listener.accept() {
                Ok((stream, addr)) => return (stream, addr),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }

    /// The one process found, checking that the answer says it is certain (unless a process
    /// of this user hides its descriptors, which a developer's desktop may have: ssh-agent).
    fn only(found: &Peer) -> &PeerProcess {
        assert_eq!(found.processes.len(), 1, "{found:?}");
        let hidden = found.note.as_deref().is_some_and(|n| n.contains("hide"));
        assert_eq!(found.verified, !hidden, "{found:?}");
        if !hidden {
            assert_eq!(found.note, None);
        }
        &found.processes[0]
    }

    #[test]
    fn peer_identifies_this_process() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let _client = TcpStream::connect(local).unwrap();
        let (accepted, peer) = listener.accept().unwrap();
        assert_eq!(accepted.local_addr().unwrap(), local);

        let answer = identify(local, peer);
        let found = only(&answer);
        assert_eq!(found.pid, std::process::id());
        let exe = std::env::current_exe().unwrap();
        assert_eq!(
            canonical(found.exe.as_deref().unwrap()),
            std::fs::canonicalize(exe).unwrap()
        );
        assert!(!found.cmdline.is_empty());
        assert!(found.cwd.is_some());
        assert!(found.uid.is_some());
        let parent = found.parent.clone().expect("a parent");
        assert_eq!(parent.pid, self_ppid());

        // Serialized field names are camelCase, in the shape every surface shows.
        let json = serde_json::to_value(identify(local, peer)).unwrap();
        assert!(json["verified"].is_boolean(), "{json}");
        assert!(json.get("note").is_some(), "{json}");
        let p = &json["processes"][0];
        assert!(p.get("cmdline").is_some() && p.get("parent").is_some());
    }

    #[test]
    fn peer_identifies_a_child_process() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        // `read` is a builtin, so the process stays bash (a trailing `sleep` could be exec'd).
        let script = format!(
            "exec 3<>/dev/tcp/127.0.0.1/{}; read -r -t 5 _ <&3",
            local.port()
        );
        let mut child = Command::new("bash")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let (accepted, peer) = accept_within(&listener, Duration::from_secs(10));

        let answer = identify(local, peer);
        drop(accepted);
        let _ = child.kill();
        let _ = child.wait();

        let found = only(&answer);
        assert_eq!(found.pid, child.id());
        assert!(found.exe.as_deref().unwrap().ends_with("bash"), "{found:?}");
        assert_eq!(found.cmdline, ["bash", "-c", script.as_str()]);
        assert_eq!(
            found.parent.as_ref().map(|p| p.pid),
            Some(std::process::id())
        );
    }

    /// Runs bash holding a connection to `local` on fd 3 and starting `decoys` background
    /// children that inherit it (`sleep` run as `claude`, as a forking agent would); returns
    /// the bash child, the accepted socket and the client's address once every decoy runs.
    fn forked_holders(
        listener: &TcpListener,
        decoys: usize,
    ) -> (std::process::Child, TcpStream, SocketAddr) {
        let local = listener.local_addr().expect("local address");
        let script = format!(
            "exec 3<>/dev/tcp/127.0.0.1/{}; for i in $(seq {decoys}); do (exec -a claude sleep 30) & done; echo ready; read -r -t 20 _ <&3; kill $(jobs -p) 2>/dev/null",
            local.port()
        );
        let mut child = Command::new("bash")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("bash");
        let (accepted, peer) = accept_within(listener, Duration::from_secs(10));
        let mut line = [0u8; 6];
        child
            .stdout
            .as_mut()
            .expect("stdout")
            .read_exact(&mut line)
            .expect("ready");
        // The decoys exec'd `sleep` once their cmdline says `claude`.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = identify(local, peer);
            let ready = found
                .processes
                .iter()
                .filter(|p| p.cmdline.first().map(String::as_str) == Some("claude"))
                .count();
            if ready >= decoys.min(MAX_PROCESSES - 1) || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (child, accepted, peer)
    }

    /// Ends bash and its decoys: once the server side is closed, bash's `read` ends and it
    /// kills its background jobs.
    fn end(mut child: std::process::Child, accepted: TcpStream) {
        drop(accepted);
        let _ = child.wait();
    }

    #[test]
    fn peer_lists_every_process_sharing_the_socket_and_is_not_verified() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let (child, accepted, peer) = forked_holders(&listener, 1);
        let found = identify(local, peer);
        end(child, accepted);

        assert!(!found.verified, "{found:?}");
        assert_eq!(found.processes.len(), 2, "{found:?}");
        let pids = found.pids();
        assert!(
            pids.windows(2).all(|w| w[0] < w[1]),
            "sorted by pid: {pids:?}"
        );
        let bash = found
            .processes
            .iter()
            .find(|p| p.cmdline.first().map(String::as_str) == Some("bash"));
        let decoy = found
            .processes
            .iter()
            .find(|p| p.cmdline == ["claude", "30"]);
        assert!(bash.is_some() && decoy.is_some(), "{found:?}");
        assert!(
            decoy.unwrap().exe.as_deref().unwrap().ends_with("sleep"),
            "{found:?}"
        );
        let note = found.note.as_deref().unwrap();
        assert!(
            note.starts_with(
                "2 processes share this connection; any of them may have sent the request"
            ),
            "{note}"
        );
    }

    #[test]
    fn peer_lists_at_most_eight_processes_and_says_so() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let (child, accepted, peer) = forked_holders(&listener, 10);
        let found = identify(local, peer);
        end(child, accepted);

        assert!(!found.verified);
        assert_eq!(found.processes.len(), MAX_PROCESSES, "{found:?}");
        let note = found.note.as_deref().unwrap();
        assert!(
            note.starts_with("11 processes share this connection")
                && note.contains("only 8 are listed"),
            "{note}"
        );
    }

    fn proc(pid: u32) -> PeerProcess {
        PeerProcess {
            pid,
            exe: Some("/usr/bin/x".into()),
            cmdline: vec!["x".into()],
            cwd: Some("/".into()),
            uid: Some(1000),
            parent: None,
        }
    }

    #[test]
    fn peer_verdicts() {
        let one = Peer::judge(1, vec![Some((proc(7), true))], 0);
        assert!(one.verified);
        assert_eq!(one.note, None);
        assert_eq!(one.pids(), [7]);

        // Exactly one holder, but its facts could not all be read.
        let partial = Peer::judge(1, vec![Some((proc(7), false))], 0);
        assert!(!partial.verified);
        assert_eq!(
            partial.note.as_deref(),
            Some("some facts about this process could not be read")
        );

        // A holder that vanished before it could be read: nothing known about it.
        let gone = Peer::judge(1, vec![None], 0);
        assert_eq!(gone, Peer::unknown(NOTE_UNKNOWN));
        assert_eq!(Peer::judge(0, vec![], 0), Peer::unknown(NOTE_UNKNOWN));

        // Two holders, one of which vanished: still not one verified process.
        let two = Peer::judge(2, vec![Some((proc(7), true)), None], 0);
        assert!(!two.verified);
        assert_eq!(two.processes.len(), 1);
        assert!(
            two.note
                .as_deref()
                .unwrap()
                .starts_with("2 processes share"),
            "{two:?}"
        );

        // A process of the same user that hides its descriptors may hold the socket unseen.
        let hidden = Peer::judge(1, vec![Some((proc(7), true))], 2);
        assert!(!hidden.verified);
        assert_eq!(
            hidden.note.as_deref(),
            Some(
                "2 other processes of this user hide their connections from Akhrot; any of them may have sent the request"
            )
        );

        let json = serde_json::to_value(Peer::unknown(NOTE_UNKNOWN)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"verified": false, "note": NOTE_UNKNOWN, "processes": []})
        );
    }

    #[test]
    fn peer_ipv4_client_on_dual_stack_listener() {
        // A `[::]` listener sees an IPv4 client as `::ffff:127.0.0.1`, while the client socket
        // is listed in /proc/net/tcp as plain IPv4.
        let Ok(listener) = TcpListener::bind("[::]:0") else {
            return; // no IPv6 here
        };
        let port = listener.local_addr().unwrap().port();
        let Ok(_client) = TcpStream::connect(("127.0.0.1", port)) else {
            return; // IPV6_V6ONLY by default here
        };
        let (accepted, peer) = accept_within(&listener, Duration::from_secs(10));
        let local = accepted.local_addr().unwrap();
        assert!(matches!(peer, SocketAddr::V6(_)), "{peer}");
        let answer = identify(local, peer);
        assert_eq!(only(&answer).pid, std::process::id());
    }

    #[test]
    fn peer_ipv6_loopback() {
        let Ok(listener) = TcpListener::bind("[::1]:0") else {
            return; // no IPv6 here
        };
        let local = listener.local_addr().unwrap();
        let _client = TcpStream::connect(local).unwrap();
        let (_accepted, peer) = listener.accept().unwrap();
        let answer = identify(local, peer);
        assert_eq!(only(&answer).pid, std::process::id());
    }

    #[test]
    fn peer_unknown_or_closed_is_unknown() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let client = TcpStream::connect(local).unwrap();
        let (mut accepted, peer) = listener.accept().unwrap();
        drop(client);
        let mut buf = [0u8; 1];
        assert_eq!(accepted.read(&mut buf).unwrap(), 0); // the client is gone
        drop(accepted);
        assert_eq!(identify(local, peer), Peer::unknown(NOTE_UNKNOWN));

        let nobody: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(identify(local, nobody), Peer::unknown(NOTE_UNKNOWN));
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn peer_parses_proc_net_tcp() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 12345 1 0000000000000000 100 0 0 10 0
   1: 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 67890 1 0000000000000000 20 4 30 10 -1
   2: 0101A8C0:0016 6401A8C0:C350 01 00000000:00000000 02:0009B4B7 00000000     0        0 424242 2 0000000000000000 20 4 31 10 -1
   3: garbage
   4: ZZZZZZZZ:0016 6401A8C0:C350 01 00000000:00000000 00:00000000 00000000     0        0 1 1
   5: +100007F:0016 6401A8C0:C350 01 00000000:00000000 00:00000000 00000000     0        0 1 1
   6: 0100007F:0016 6401A8C0:C350 01 00000000:00000000 00:00000000 00000000     0        0 -1 1
";
        let rows = parse_tcp_table(text);
        assert_eq!(
            rows,
            [
                TcpEntry {
                    local: "127.0.0.1:8080".parse().unwrap(),
                    remote: "0.0.0.0:0".parse().unwrap(),
                    state: 0x0A,
                    uid: 1000,
                    inode: 12345,
                },
                TcpEntry {
                    local: "127.0.0.1:54321".parse().unwrap(),
                    remote: "127.0.0.1:8080".parse().unwrap(),
                    state: 0x01,
                    uid: 1000,
                    inode: 67890,
                },
                TcpEntry {
                    local: "192.168.1.1:22".parse().unwrap(),
                    remote: "192.168.1.100:50000".parse().unwrap(),
                    state: 0x01,
                    uid: 0,
                    inode: 424242,
                },
            ]
        );

        let tcp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:D431 01 00000000:00000000 00:00000000 00000000  1000        0 555 1 0000000000000000 20 4 30 10 -1
   1: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:D432 01 00000000:00000000 00:00000000 00000000  1000        0 556 1 0000000000000000 20 4 30 10 -1
   2: B80D0120000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 557 1 0000000000000000 20 4 30 10 -1
";
        let rows = parse_tcp_table(tcp6);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].local, "[::1]:8080".parse().unwrap());
        assert_eq!(rows[0].remote, "[::1]:54321".parse().unwrap());
        assert_eq!(rows[1].local, "[::ffff:127.0.0.1]:8080".parse().unwrap());
        assert_eq!(rows[2].local, "[2001:db8::1]:80".parse().unwrap());
        assert_eq!(rows[2].inode, 557);

        for bad in [
            "",
            ":",
            "0100007F",
            "0100007F:",
            "0100007F:1F9",
            "100007F:1F90",
            "0100007F:-1F9",
        ] {
            assert_eq!(parse_hex_addr(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn peer_parses_stat_status_and_cmdline() {
        // comm may contain spaces and ')'.
        assert_eq!(parse_ppid("42 (evil) S 1 (x)) R 777 42 42 0 -1"), Some(777));
        assert_eq!(parse_ppid("42 (bash) S 4242 42 42 0 -1"), Some(4242));
        assert_eq!(parse_ppid("42 (bash) S"), None);
        assert_eq!(parse_ppid("no paren here"), None);
        assert_eq!(parse_ppid("1 (x) S -5 1"), None);

        let status =
            "Name:\tbash\nUmask:\t0022\nUid:\t1000\t1001\t1002\t1003\nGid:\t100\t100\t100\t100\n";
        assert_eq!(parse_real_uid(status), Some(1000));
        assert_eq!(parse_real_uid("Name:\tx\n"), None);
        assert_eq!(parse_real_uid("Uid:\tabc\n"), None);

        assert_eq!(parse_cmdline(b""), Vec::<String>::new());
        assert_eq!(
            parse_cmdline(b"bash\0-c\0echo hi\0"),
            ["bash", "-c", "echo hi"]
        );
        assert_eq!(parse_cmdline(b"a\0\0b\0"), ["a", "", "b"]);
        assert_eq!(parse_cmdline(b"x\nfake: line\0"), ["x\u{FFFD}fake: line"]);
        let long = "é".repeat(500);
        let many: Vec<u8> = (0..30)
            .flat_map(|_| format!("{long}\0").into_bytes())
            .collect();
        let args = parse_cmdline(&many);
        assert_eq!(args.len(), MAX_ARGS);
        assert!(args.iter().all(|a| a.chars().count() == MAX_ARG_CHARS));
    }
}
