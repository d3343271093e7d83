//! Telegram StringSessions for tests: a random auth key in Telethon's layout (what
//! `StringSession.save()` writes), so a test can add a Telegram connection the server accepts.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use std::io::Read as _;

/// 256 random bytes (an MTProto auth key's length).
pub fn random_auth_key() -> Vec<u8> {
    let mut key = vec![0u8; 256];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .unwrap();
    key
}

/// A Telethon StringSession for data center 2 (`149.154.167.51:443`) with a random auth key:
/// `'1' + urlsafe_b64encode(struct.pack('>B4sH256s', 2, ip, 443, key))`. Registered with the
/// secret scanner.
pub fn telethon_session() -> String {
    let mut b = vec![2u8, 149, 154, 167, 51];
    b.extend_from_slice(&443u16.to_be_bytes());
    b.extend_from_slice(&random_auth_key());
    let s = format!("1{}", URL_SAFE.encode(b));
    crate::secrets::register(&s);
    s
}
