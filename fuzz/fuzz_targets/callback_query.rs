//! The query of `/oauth/callback` and `akhrot://oauth/callback` links, as any local process or
//! web page may send it.
#![no_main]
use akhrot_core::broker::CallbackParams;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let p = CallbackParams::from_query(query);
    // Whatever the query, a parameter is only ever taken from the query itself.
    for v in [&p.state, &p.code, &p.error, &p.error_description].into_iter().flatten() {
        assert!(v.len() <= query.len() * 3, "{v:?} from {query:?}");
    }
});
