//! A token endpoint's answer (status and body) read for every catalog provider, quirks included:
//! an error or a token set, never a panic, and a token set never keeps a secret in `extra`.
#![no_main]
use std::sync::OnceLock;

use akhrot_core::catalog::Catalog;
use akhrot_core::oauth::read_token_answer;
use libfuzzer_sys::fuzz_target;

static CATALOG: OnceLock<Catalog> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let status = [200u16, 201, 400, 401, 403, 429, 500, 502][usize::from(first & 7)];
    let catalog = CATALOG.get_or_init(|| Catalog::builtin().expect("the built-in catalog loads"));
    let p = catalog
        .iter()
        .nth(usize::from(first >> 3) % catalog.len())
        .expect("a provider");
    if let Ok(set) = read_token_answer(p, status, body) {
        let extra = set.extra.to_string().to_ascii_lowercase();
        assert!(!extra.contains("\"access_token\""), "{extra}");
        assert!(!extra.contains("\"refresh_token\""), "{extra}");
    }
});
