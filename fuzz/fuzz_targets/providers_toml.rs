//! A `providers.d/*.toml` file of any content: the catalog must report problems as issues, never
//! panic, and every provider it accepts must pass the catalog's own checks again: with its client
//! settings at their defaults, every URL is a valid one (a setting without a default leaves the
//! entry to be completed by the person, which `resolve` says).
#![no_main]
use std::path::Path;
use std::sync::OnceLock;

use akhrot_core::catalog::Catalog;
use libfuzzer_sys::fuzz_target;

static BUILTIN: OnceLock<Catalog> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut c = BUILTIN
        .get_or_init(|| Catalog::builtin().expect("the built-in catalog loads"))
        .clone();
    let before = c.len();
    c.overlay_text(Path::new("fuzz.toml"), text);
    assert!(c.len() >= before, "an overlay never removes providers");
    for p in c.iter() {
        let Ok(p) = p.resolve(&std::collections::BTreeMap::new()) else {
            continue;
        };
        for (_, url) in p.urls() {
            assert!(akhrot_core::catalog::check_url(url).is_ok(), "{url}");
        }
    }
});
