//! Secrets never at rest in plaintext: every secret a test hands to the server or gets from it
//! (API keys, client secrets, tokens, agent keys, the admin credential) is registered here, and
//! whenever a [`Server`](crate::Server) stops (SIGTERM, SIGKILL, end of test) or a [`Dirs`](crate::Dirs) is dropped, the data
//! dir's files (vault.db, its WAL and SHM, anything else there) and the server's captured
//! stdout/stderr are searched for each one. A hit fails the test with the place, never the value.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use crate::http::agent;

/// Shorter values (`"pw"`, `"s"`) would match by chance; no test secret is this short.
pub const MIN_LEN: usize = 8;

/// Files whose job is to hold a credential in plaintext for the user's own tools: the admin
/// credential (mode 0600, read by the CLI). Everything else in the data dir is scanned.
const BY_DESIGN: &[&str] = &["admin.token"];

static REGISTRY: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
static BYTES: AtomicU64 = AtomicU64::new(0);
static SCANS: AtomicU64 = AtomicU64::new(0);

/// Registers a secret the test run uses (ignored when shorter than [`MIN_LEN`]).
pub fn register(secret: &str) {
    let s = secret.trim();
    if s.len() < MIN_LEN {
        return;
    }
    let mut r = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    if !r.iter().any(|x| x == s.as_bytes()) {
        r.push(s.as_bytes().to_vec());
    }
}

/// Registers an agent key: the whole key and its secret part (the id is not secret).
pub fn register_agent_key(key: &str) {
    register(key);
    if let Some((_, secret)) = key.rsplit_once('_') {
        register(secret);
    }
}

/// Field names whose string values are secrets, in request and answer bodies.
const SECRET_NAMES: &[&str] = &[
    "accessToken",
    "refreshToken",
    "idToken",
    "clientSecret",
    "apiKey",
    "apiHash",
    "password",
    "secret",
    "passphrase",
];

/// Registers the secrets in a JSON body: values of `SECRET_NAMES`, agent keys (`key`), and
/// in a request, every string under `fields` (the values of a connection being stored).
pub fn register_json(v: &serde_json::Value, request: bool) {
    walk(v, request, false);
}

/// Registers every string in `v`.
pub fn register_strings(v: &serde_json::Value) {
    walk(v, true, true);
}

fn walk(v: &serde_json::Value, request: bool, fields_are_secret: bool) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match x {
                    Value::String(s) if fields_are_secret || SECRET_NAMES.contains(&k.as_str()) => {
                        register(s);
                    }
                    Value::String(s) if k == "key" && s.starts_with("akhrot_") => {
                        register_agent_key(s);
                    }
                    // A connection's `fields` are registered by what the catalog says is secret.
                    _ if request && k == "fields" => {}
                    _ => walk(x, request, fields_are_secret),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| walk(x, request, fields_are_secret)),
        Value::String(s) if fields_are_secret => register(s),
        _ => {}
    }
}

/// Every secret registered so far in this test process.
pub fn all() -> Vec<Vec<u8>> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// (secrets registered, scans done, bytes scanned) in this test process so far.
pub fn stats() -> (usize, u64, u64) {
    (
        REGISTRY.lock().unwrap_or_else(|e| e.into_inner()).len(),
        SCANS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    )
}

/// A secret as it would look written down without encryption: as it is, in hex, and in
/// base64 (standard and URL-safe, at each of the three alignments; only whole groups, which
/// do not depend on the bytes around the secret).
pub fn spellings(secret: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let mut out = vec![("as it is", secret.to_vec()), ("in hex", hex.into_bytes())];
    for (name, alphabet) in [
        (
            "in base64",
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        ),
        (
            "in URL-safe base64",
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        ),
    ] {
        // Encoded after 0, 1 or 2 other bytes, the secret's whole 3-byte groups from its
        // 1st, 3rd or 2nd byte on are aligned: one of these is in the encoded text.
        for skip in 0..3 {
            let mut b64 = Vec::new();
            for c in secret[skip.min(secret.len())..].chunks_exact(3) {
                let n = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
                for shift in [18, 12, 6, 0] {
                    b64.push(alphabet[((n >> shift) & 63) as usize]);
                }
            }
            out.push((name, b64));
        }
    }
    out
}

/// The places in `hay` (named `place`) that hold one of `secrets` in one of its
/// [`spellings`]: one entry per secret found, naming the place, the spelling and the
/// secret's position in the list, never its value.
pub fn scan_bytes(hay: &[u8], secrets: &[Vec<u8>], place: &str) -> Vec<String> {
    BYTES.fetch_add(hay.len() as u64, Ordering::Relaxed);
    let mut cache = MATCHER.lock().unwrap_or_else(|e| e.into_inner());
    if cache.as_ref().is_none_or(|m| m.secrets != secrets) {
        *cache = Some(Matcher::new(secrets));
    }
    let Some(m) = cache.as_ref() else {
        return Vec::new();
    };
    // For each secret, the first of its spellings (in `spellings` order) found anywhere.
    let mut best: Vec<Option<usize>> = vec![None; secrets.len()];
    for found in m.automaton.find_overlapping_iter(hay) {
        for &(i, k) in &m.owners[found.pattern().as_usize()] {
            if best[i].is_none_or(|b| k < b) {
                best[i] = Some(k);
            }
        }
    }
    let mut hits = Vec::new();
    for (i, k) in best.into_iter().enumerate() {
        if let Some(k) = k {
            hits.push(format!(
                "{place}: registered secret #{i} ({} bytes), {}",
                secrets[i].len(),
                m.how[k]
            ));
        }
    }
    hits
}

/// Every spelling of every secret in one Aho-Corasick automaton, so a scan is one pass over
/// the bytes however many secrets there are (a 1,000-round crash test registers thousands
/// of tokens and scans after every kill). Rebuilt when the list of secrets changes.
struct Matcher {
    secrets: Vec<Vec<u8>>,
    automaton: aho_corasick::AhoCorasick,
    /// For each distinct pattern: the (secret, spelling) pairs it spells.
    owners: Vec<Vec<(usize, usize)>>,
    how: Vec<&'static str>,
}

static MATCHER: Mutex<Option<Matcher>> = Mutex::new(None);

impl Matcher {
    fn new(secrets: &[Vec<u8>]) -> Self {
        let mut index = std::collections::HashMap::<Vec<u8>, usize>::new();
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut owners: Vec<Vec<(usize, usize)>> = Vec::new();
        let mut how = Vec::new();
        for (i, s) in secrets.iter().enumerate() {
            for (k, (name, sp)) in spellings(s).into_iter().enumerate() {
                if how.len() <= k {
                    how.push(name);
                }
                if sp.is_empty() {
                    continue;
                }
                let at = *index.entry(sp.clone()).or_insert_with(|| {
                    patterns.push(sp);
                    owners.push(Vec::new());
                    patterns.len() - 1
                });
                owners[at].push((i, k));
            }
        }
        let automaton = aho_corasick::AhoCorasick::new(&patterns)
            .unwrap_or_else(|e| panic!("cannot build the secret matcher: {e}"));
        Self {
            secrets: secrets.to_vec(),
            automaton,
            owners,
            how,
        }
    }
}

/// Scans every file under `dir` (recursively) except those in `BY_DESIGN`.
pub fn scan_dir(dir: &Path, secrets: &[Vec<u8>]) -> Vec<String> {
    SCANS.fetch_add(1, Ordering::Relaxed);
    let mut hits = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return hits;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            hits.extend(scan_dir(&p, secrets));
        } else if ft.is_file()
            && !BY_DESIGN.contains(&name.as_str())
            && let Ok(b) = std::fs::read(&p)
        {
            hits.extend(scan_bytes(&b, secrets, &p.display().to_string()));
        }
    }
    hits
}

/// Fails the test on any hit (only reports it when the test is already failing, so a
/// panic during unwinding does not abort the run). Appends the totals to the file named by
/// `AKHROT_E2E_SCAN_LOG`, when set.
pub fn fail_on(hits: &[String], what: &str) {
    if let Some(log) = std::env::var_os("AKHROT_E2E_SCAN_LOG") {
        let (n, scans, bytes) = stats();
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            use std::io::Write;
            let _ = writeln!(
                f,
                "pid={} secrets={n} scans={scans} bytes={bytes}",
                std::process::id()
            );
        }
    }
    if hits.is_empty() {
        return;
    }
    let msg = format!("plaintext secret found in {what}:\n  {}", hits.join("\n  "));
    if std::thread::panicking() {
        eprintln!("{msg}");
    } else {
        panic!("{msg}");
    }
}

/// Registers the secret values of a `POST /admin/connections` body: every field the running
/// owner's catalog marks secret (all of them when the owner cannot be asked).
pub(crate) fn register_connection_fields(data: &Path, body: &Value) {
    let Some(fields) = body["fields"].as_object() else {
        return;
    };
    let public: Vec<String> = (|| {
        let info: Value =
            serde_json::from_str(&std::fs::read_to_string(data.join("server.json")).ok()?).ok()?;
        let admin = std::fs::read_to_string(data.join("admin.token")).ok()?;
        let url = format!(
            "{}/admin/providers/{}",
            info["baseUrl"].as_str().or(info["base_url"].as_str())?,
            body["provider"].as_str()?
        );
        let mut r = agent()
            .get(&url)
            .header("Authorization", format!("Bearer {}", admin.trim()))
            .call()
            .ok()?;
        let v: Value = serde_json::from_str(&r.body_mut().read_to_string().ok()?).ok()?;
        Some(
            v["data"]["fields"]
                .as_array()?
                .iter()
                .filter(|f| f["secret"] == false)
                .filter_map(|f| f["name"].as_str().map(str::to_owned))
                .collect(),
        )
    })()
    .unwrap_or_default();
    for (name, v) in fields {
        if !public.contains(name) {
            register_strings(v);
        }
    }
}
