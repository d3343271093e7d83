//! The `Authorization: Bearer` value of every agent request.
#![no_main]
use akhrot_core::agent_key;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(key) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(parsed) = agent_key::parse(key) {
        // Only the exact form parses, and it round-trips.
        assert_eq!(
            format!("{}{}_{}", agent_key::PREFIX, parsed.id, parsed.secret.expose()),
            key
        );
    }
});
