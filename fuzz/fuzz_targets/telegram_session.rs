//! Fuzzes the Telegram StringSession parser (the session string `akhrot add telegram` takes):
//! no input panics, and every session it accepts writes both formats that parse back the same.
#![no_main]

use akhrot_core::telegram::StringSession;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(session) = StringSession::parse(s) {
        for written in [session.to_telethon(), session.to_gramjs()] {
            let again = StringSession::parse(written.expose()).expect("written session parses");
            assert_eq!(again.dc_id, session.dc_id);
            assert_eq!(again.server_address, session.server_address);
            assert_eq!(again.port, session.port);
            assert_eq!(again.auth_key.expose(), session.auth_key.expose());
        }
    }
});
