//! The catalog promises nothing that no code keeps: every key of its schema (each `pub` field of
//! a deserialized struct in `catalog.rs`) is read by the code that acts on providers. A field
//! counts as read when some source file other than `catalog.rs` reads it (`.name`), or when a
//! `pub fn` of `catalog.rs` reads it and that function is called from elsewhere. Checking a
//! value at load time is not acting on it, so `catalog.rs`'s own checks do not count.
//!
//! Unknown keys and quirk names are refused by serde at load time (`deny_unknown_fields`, the
//! `Quirk` enum); `quirks.rs` shows every quirk changes behaviour.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `struct name → its pub fields`, for the structs serde reads (not `#[serde(skip)]` ones).
fn schema(catalog: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let mut lines = catalog.lines().peekable();
    let mut derives_deserialize = false;
    while let Some(line) = lines.next() {
        let t = line.trim();
        if t.starts_with("#[derive(") {
            derives_deserialize = t.contains("Deserialize");
            continue;
        }
        let Some(rest) = t.strip_prefix("pub struct ") else {
            continue;
        };
        if !derives_deserialize || !t.ends_with('{') {
            continue;
        }
        let name = rest.trim_end_matches('{').trim().to_owned();
        let mut fields = Vec::new();
        let mut skipped = false;
        for l in lines.by_ref() {
            let l = l.trim();
            if l == "}" {
                break;
            }
            if l.starts_with("#[serde(skip)]") {
                skipped = true;
                continue;
            }
            if let Some(f) = l.strip_prefix("pub ").and_then(|f| f.split(':').next()) {
                if !skipped {
                    fields.push(f.trim().to_owned());
                }
                skipped = false;
            }
        }
        out.insert(name, fields);
    }
    out
}

/// `fn name → body` for every `pub fn` in `src`.
fn pub_fns(src: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(i) = src[at..].find("pub fn ") {
        let start = at + i + "pub fn ".len();
        let name: String = src[start..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let Some(open) = src[start..].find('{').map(|o| start + o) else {
            break;
        };
        let mut depth = 0usize;
        let mut end = open;
        for (j, c) in src[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + j;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.push((name, src[open..=end].to_owned()));
        at = end;
    }
    out
}

/// `.name` read as a field (not `.name(` as a method call), with a word boundary after it.
fn reads(text: &str, field: &str) -> bool {
    let pat = format!(".{field}");
    text.match_indices(&pat).any(|(i, _)| {
        let after = text[i + pat.len()..].chars().next();
        !after.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '(')
    })
}

fn calls(text: &str, func: &str) -> bool {
    text.contains(&format!(".{func}(")) || text.contains(&format!("::{func}("))
}

#[test]
fn every_key_of_the_catalog_schema_is_read_by_code_that_acts_on_it() {
    let root = root();
    let catalog_path = root.join("crates/akhrot-core/src/catalog.rs");
    let catalog = std::fs::read_to_string(&catalog_path).unwrap();
    let structs = schema(&catalog);
    for expected in [
        "Provider",
        "Service",
        "Field",
        "Inject",
        "Example",
        "TokenPaths",
    ] {
        assert!(
            structs.contains_key(expected),
            "{expected} not found: {structs:?}"
        );
    }
    let mut files = Vec::new();
    for dir in ["crates", "src-tauri/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    let others: Vec<String> = files
        .iter()
        .filter(|p| {
            let s = p.to_string_lossy();
            !s.ends_with("akhrot-core/src/catalog.rs")
                && !s.contains("/tests/")
                && !s.contains("/target/")
                && !s.contains("/fuzz/")
        })
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let elsewhere = others.join("\n");
    let helpers = pub_fns(&catalog);
    let mut unread = Vec::new();
    let mut how = Vec::new();
    for (st, fields) in &structs {
        for f in fields {
            if reads(&elsewhere, f) {
                how.push(format!("{st}.{f}: read directly"));
                continue;
            }
            let via: Vec<&str> = helpers
                .iter()
                .filter(|(name, body)| reads(body, f) && calls(&elsewhere, name))
                .map(|(name, _)| name.as_str())
                .collect();
            if via.is_empty() {
                unread.push(format!("{st}.{f}"));
            } else {
                how.push(format!("{st}.{f}: via {}", via.join(", ")));
            }
        }
    }
    println!("{}", how.join("\n"));
    assert!(
        unread.is_empty(),
        "catalog keys that no code acts on (a promise to providers.d authors that nothing keeps): {unread:?}"
    );
}
