//! Telegram StringSessions: parses the session string a user pastes into `akhrot add telegram`
//! (Telethon's or GramJS's format) and writes the same session in both formats, so an agent gets
//! one its library loads whichever library made it.
//!
//! The two libraries name their format the same (`StringSession`, version `1`) but lay it out
//! differently. Read from the libraries' own sources:
//!
//! **Telethon** (PyPI `telethon`, `telethon/sessions/string.py`,
//! <https://github.com/LonamiWebs/Telethon/blob/v1/telethon/sessions/string.py>, the same in
//! 1.45.0): `CURRENT_VERSION = '1'`, then `base64.urlsafe_b64encode` (URL-safe alphabet `-_`,
//! with `=` padding) of `struct.pack('>B{4|16}sH256s', dc_id, ip, port, auth_key)`:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | dc id (unsigned) |
//! | 4 or 16 | server address, *packed* IPv4 or IPv6 bytes (`ipaddress.ip_address(..).packed`) |
//! | 2 | port, big-endian unsigned |
//! | 256 | auth key |
//!
//! That is 263 bytes (352 base64 characters) for IPv4 and 275 bytes (368 characters) for IPv6;
//! the loader tells them apart by the string length alone (`4 if len(string) == 352 else 16`),
//! and decodes with `urlsafe_b64decode`, which needs the padding. An all-zero auth key loads as
//! "no auth key" (`if any(key)`), and a session without a key saves as the empty string.
//!
//! **GramJS** (npm `telegram`, `gramjs/sessions/StringSession.ts`,
//! <https://github.com/gram-js/gramjs/blob/master/gramjs/sessions/StringSession.ts>, the same in
//! 2.26.22): `CURRENT_VERSION = "1"`, then `Buffer.toString("base64")` (standard alphabet `+/`,
//! with `=` padding) of:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | dc id (`readUInt8`) |
//! | 2 | length L of the server address, big-endian *signed* (`writeInt16BE`) |
//! | L | server address as text (`Buffer.from(serverAddress)`, e.g. `149.154.167.51`) |
//! | 2 | port, big-endian *signed* (`writeInt16BE`/`readInt16BE`) |
//! | rest | auth key (256 bytes) |
//!
//! GramJS also loads Telethon's layout: a string of 352 characters is read as Telethon IPv4, and
//! a length field above 100 as Telethon IPv6 (the 16 address bytes). Node's base64 decoder takes
//! both alphabets. Telethon does not load GramJS's layout: a GramJS session is never 352
//! characters long for an IPv4 address, so Telethon unpacks it as IPv6, which fails
//! (`struct.error`) or, for a 14-character address such as `149.154.167.51`, gives a wrong
//! address, port and key.
//!
//! What this module accepts: either layout, either base64 alphabet, with or without padding; a
//! data center 1-5 (Telegram's production and test DCs); an IPv4 or IPv6 address (GramJS's text
//! address must be one; Telegram's DC addresses are); a port 1-32767 (GramJS's signed 16-bit
//! port cannot hold more); a 256-byte auth key that is not all zeros. Errors never contain any
//! part of the session. It writes Telethon's layout as URL-safe padded base64 and GramJS's as
//! standard padded base64 with the address as canonical text (RFC 5952 for IPv6, which is also
//! what Python's `ipaddress` prints).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use zeroize::Zeroizing;

use crate::SecretString;

/// The version character both libraries write first.
const VERSION: char = '1';
/// Length of an MTProto auth key.
pub const AUTH_KEY_LEN: usize = 256;
/// GramJS reads a longer address-length field as Telethon's IPv6 layout.
const GRAMJS_MAX_ADDRESS_LEN: usize = 100;
/// Longer input is refused before decoding (a GramJS session with a 100-byte address is 484
/// characters).
const MAX_INPUT_LEN: usize = 1024;
/// Telegram's data centers (production and test) are numbered 1 to 5.
const DC_IDS: std::ops::RangeInclusive<u8> = 1..=5;

/// Decodes either alphabet (after mapping URL-safe to standard), padding optional.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Which library's layout a session string used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionFormat {
    /// Telethon: packed address bytes, URL-safe base64.
    Telethon,
    /// GramJS: length-prefixed address text, standard base64.
    Gramjs,
}

/// An MTProto auth key: 256 bytes, redacted in `Debug`, zeroed on drop.
#[derive(Clone)]
pub struct AuthKey(Zeroizing<Vec<u8>>);

impl AuthKey {
    /// The key bytes (always [`AUTH_KEY_LEN`] long).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthKey(<redacted>)")
    }
}

/// A parsed Telegram StringSession.
#[derive(Debug, Clone)]
pub struct StringSession {
    /// The data center the session is logged in at (1-5).
    pub dc_id: u8,
    /// The data center's address.
    pub server_address: IpAddr,
    /// The data center's port (1-32767).
    pub port: u16,
    /// The authorization key.
    pub auth_key: AuthKey,
    /// The layout the string was in.
    pub format: SessionFormat,
}

/// Why a string is not a Telegram StringSession. Messages name what is wrong, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the Telegram session is empty; paste a Telethon or GramJS StringSession")]
    Empty,
    #[error(
        "the Telegram session is {0} characters long; a Telethon or GramJS StringSession is at most {MAX_INPUT_LEN}"
    )]
    TooLong(usize),
    #[error(
        "the Telegram session does not start with the version character `1` that Telethon and GramJS StringSessions start with"
    )]
    Version,
    #[error(
        "the Telegram session is not base64 after its version character `1` (Telethon writes URL-safe base64, GramJS standard base64)"
    )]
    Base64,
    #[error(
        "the Telegram session decodes to {0} bytes; a Telethon StringSession is 263 (IPv4) or 275 (IPv6) bytes and a GramJS one 261 plus the length of its server address"
    )]
    Length(usize),
    #[error("the Telegram session names data center {0}; Telegram's data centers are 1 to 5")]
    DcId(u8),
    #[error("the Telegram session's server address is not an IPv4 or IPv6 address")]
    Address,
    #[error(
        "the Telegram session's port is {0}; it must be 1-32767 (GramJS stores the port as a signed 16-bit number)"
    )]
    Port(u16),
    #[error("the Telegram session's auth key is all zeros: the session was never logged in")]
    ZeroAuthKey,
}

impl StringSession {
    /// Builds a session from its parts (the auth key must be 256 bytes, not all zeros; another
    /// length is refused as [`SessionError::Length`]).
    pub fn new(
        dc_id: u8,
        server_address: IpAddr,
        port: u16,
        auth_key: &[u8],
    ) -> Result<Self, SessionError> {
        if auth_key.len() != AUTH_KEY_LEN {
            return Err(SessionError::Length(auth_key.len()));
        }
        let s = Self {
            dc_id,
            server_address,
            port,
            auth_key: AuthKey(Zeroizing::new(auth_key.to_vec())),
            format: SessionFormat::Telethon,
        };
        s.check()?;
        Ok(s)
    }

    /// Parses a Telethon or GramJS StringSession (surrounding whitespace ignored).
    pub fn parse(input: &str) -> Result<Self, SessionError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(SessionError::Empty);
        }
        if input.len() > MAX_INPUT_LEN {
            return Err(SessionError::TooLong(input.len()));
        }
        let rest = input.strip_prefix(VERSION).ok_or(SessionError::Version)?;
        let standard: Zeroizing<String> = Zeroizing::new(
            rest.chars()
                .map(|c| match c {
                    '-' => '+',
                    '_' => '/',
                    c => c,
                })
                .collect(),
        );
        let bytes = Zeroizing::new(
            LENIENT
                .decode(standard.as_bytes())
                .map_err(|_| SessionError::Base64)?,
        );
        Self::from_bytes(&bytes)
    }

    fn from_bytes(b: &[u8]) -> Result<Self, SessionError> {
        let n = b.len();
        let (format, dc_id, server_address, port_at) = match gramjs_address(b) {
            Some(Ok(addr)) => (SessionFormat::Gramjs, b[0], addr, n - 2 - AUTH_KEY_LEN),
            gramjs => match n {
                263 => {
                    let ip: [u8; 4] = b[1..5].try_into().map_err(|_| SessionError::Length(n))?;
                    (SessionFormat::Telethon, b[0], Ipv4Addr::from(ip).into(), 5)
                }
                275 => {
                    let ip: [u8; 16] = b[1..17].try_into().map_err(|_| SessionError::Length(n))?;
                    (SessionFormat::Telethon, b[0], Ipv6Addr::from(ip).into(), 17)
                }
                _ => {
                    return Err(gramjs
                        .and_then(Result::err)
                        .unwrap_or(SessionError::Length(n)));
                }
            },
        };
        let port_bytes: [u8; 2] = b
            .get(port_at..port_at + 2)
            .and_then(|p| p.try_into().ok())
            .ok_or(SessionError::Length(n))?;
        let key = b.get(port_at + 2..).ok_or(SessionError::Length(n))?;
        if key.len() != AUTH_KEY_LEN {
            return Err(SessionError::Length(n));
        }
        let s = Self {
            dc_id,
            server_address,
            port: u16::from_be_bytes(port_bytes),
            auth_key: AuthKey(Zeroizing::new(key.to_vec())),
            format,
        };
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<(), SessionError> {
        if !DC_IDS.contains(&self.dc_id) {
            return Err(SessionError::DcId(self.dc_id));
        }
        if self.port == 0 || self.port > i16::MAX as u16 {
            return Err(SessionError::Port(self.port));
        }
        if self.auth_key.expose().iter().all(|&b| b == 0) {
            return Err(SessionError::ZeroAuthKey);
        }
        Ok(())
    }

    /// The session in Telethon's format (loads with Telethon's and GramJS's `StringSession`).
    pub fn to_telethon(&self) -> SecretString {
        let mut b = Zeroizing::new(Vec::with_capacity(1 + 16 + 2 + AUTH_KEY_LEN));
        b.push(self.dc_id);
        match self.server_address {
            IpAddr::V4(ip) => b.extend_from_slice(&ip.octets()),
            IpAddr::V6(ip) => b.extend_from_slice(&ip.octets()),
        }
        b.extend_from_slice(&self.port.to_be_bytes());
        b.extend_from_slice(self.auth_key.expose());
        let mut out = String::with_capacity(1 + b.len() * 4 / 3 + 4);
        out.push(VERSION);
        URL_SAFE.encode_string(&*b, &mut out);
        SecretString::new(out)
    }

    /// The session in GramJS's format (loads with GramJS's `StringSession`).
    pub fn to_gramjs(&self) -> SecretString {
        let address = self.server_address.to_string();
        let mut b = Zeroizing::new(Vec::with_capacity(1 + 2 + address.len() + 2 + AUTH_KEY_LEN));
        b.push(self.dc_id);
        // An IP address as text is at most 45 bytes.
        b.extend_from_slice(&(address.len() as u16).to_be_bytes());
        b.extend_from_slice(address.as_bytes());
        b.extend_from_slice(&self.port.to_be_bytes());
        b.extend_from_slice(self.auth_key.expose());
        let mut out = String::with_capacity(1 + b.len() * 4 / 3 + 4);
        out.push(VERSION);
        STANDARD.encode_string(&*b, &mut out);
        SecretString::new(out)
    }
}

/// GramJS's layout, when the bytes have its shape: `None` when they do not, `Some(Err)` when
/// they do but the address text is not an IP address.
fn gramjs_address(b: &[u8]) -> Option<Result<IpAddr, SessionError>> {
    let len = usize::from(u16::from_be_bytes([*b.get(1)?, *b.get(2)?]));
    if len > GRAMJS_MAX_ADDRESS_LEN || b.len() != 1 + 2 + len + 2 + AUTH_KEY_LEN {
        return None;
    }
    let text = std::str::from_utf8(b.get(3..3 + len)?).ok();
    Some(
        text.and_then(|t| t.parse::<IpAddr>().ok())
            .ok_or(SessionError::Address),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Vec<u8> {
        (0..AUTH_KEY_LEN).map(|i| (i * 7 + 3) as u8).collect()
    }

    fn v4() -> StringSession {
        StringSession::new(2, "149.154.167.51".parse().unwrap(), 443, &key()).unwrap()
    }

    fn v6() -> StringSession {
        StringSession::new(4, "2001:67c:4e8:f004::b".parse().unwrap(), 443, &key()).unwrap()
    }

    fn same(a: &StringSession, b: &StringSession) {
        assert_eq!(a.dc_id, b.dc_id);
        assert_eq!(a.server_address, b.server_address);
        assert_eq!(a.port, b.port);
        assert_eq!(a.auth_key.expose(), b.auth_key.expose());
    }

    /// What Telethon 1.45.0 writes for `set_dc(2, '149.154.167.51', 443)` and the key above,
    /// built by hand from `struct.pack('>B4sH256s', ...)` + `urlsafe_b64encode`.
    fn telethon_by_hand(dc: u8, ip: &[u8], port: u16, key: &[u8]) -> String {
        let mut b = vec![dc];
        b.extend_from_slice(ip);
        b.extend_from_slice(&port.to_be_bytes());
        b.extend_from_slice(key);
        format!("1{}", URL_SAFE.encode(b))
    }

    fn gramjs_by_hand(dc: u8, addr: &str, port: u16, key: &[u8]) -> String {
        let mut b = vec![dc];
        b.extend_from_slice(&(addr.len() as u16).to_be_bytes());
        b.extend_from_slice(addr.as_bytes());
        b.extend_from_slice(&port.to_be_bytes());
        b.extend_from_slice(key);
        format!("1{}", STANDARD.encode(b))
    }

    #[test]
    fn telethon_layout_lengths_match_the_library() {
        let t = v4().to_telethon();
        assert_eq!(t.len(), 1 + 352, "Telethon tells IPv4 by 352 characters");
        assert!(t.expose().ends_with('='));
        assert_eq!(v6().to_telethon().len(), 1 + 368);
        assert_eq!(
            t.expose(),
            telethon_by_hand(2, &[149, 154, 167, 51], 443, &key())
        );
    }

    #[test]
    fn gramjs_layout_matches_the_library() {
        assert_eq!(
            v4().to_gramjs().expose(),
            gramjs_by_hand(2, "149.154.167.51", 443, &key())
        );
        assert_eq!(
            v6().to_gramjs().expose(),
            gramjs_by_hand(4, "2001:67c:4e8:f004::b", 443, &key())
        );
    }

    #[test]
    fn round_trips_through_both_formats() {
        for s in [v4(), v6()] {
            let t = StringSession::parse(s.to_telethon().expose()).unwrap();
            assert_eq!(t.format, SessionFormat::Telethon);
            same(&s, &t);
            let g = StringSession::parse(s.to_gramjs().expose()).unwrap();
            assert_eq!(g.format, SessionFormat::Gramjs);
            same(&s, &g);
            // Each written from the other parses the same.
            same(&s, &StringSession::parse(t.to_gramjs().expose()).unwrap());
            same(&s, &StringSession::parse(g.to_telethon().expose()).unwrap());
        }
    }

    #[test]
    fn accepts_either_alphabet_without_padding_and_surrounding_space() {
        let t = v4().to_telethon();
        let unpadded = t.expose().trim_end_matches('=');
        same(&v4(), &StringSession::parse(unpadded).unwrap());
        let swapped: String = t
            .expose()
            .chars()
            .map(|c| match c {
                '-' => '+',
                '_' => '/',
                c => c,
            })
            .collect();
        same(&v4(), &StringSession::parse(&swapped).unwrap());
        let g = v6().to_gramjs();
        same(
            &v6(),
            &StringSession::parse(&format!("  {}\n", g.expose())).unwrap(),
        );
    }

    #[test]
    fn a_fourteen_character_gramjs_address_is_not_mistaken_for_telethon_ipv6() {
        // Both are 275 bytes: GramJS with "149.154.167.51" and Telethon with an IPv6 address.
        let g = gramjs_by_hand(2, "149.154.167.51", 443, &key());
        let t = telethon_by_hand(2, &v6_octets(), 443, &key());
        assert_eq!(g.len(), t.len());
        assert_eq!(
            StringSession::parse(&g).unwrap().format,
            SessionFormat::Gramjs
        );
        let t = StringSession::parse(&t).unwrap();
        assert_eq!(t.format, SessionFormat::Telethon);
        assert_eq!(
            t.server_address,
            "2001:67c:4e8:f004::b".parse::<IpAddr>().unwrap()
        );
    }

    fn v6_octets() -> [u8; 16] {
        "2001:67c:4e8:f004::b".parse::<Ipv6Addr>().unwrap().octets()
    }

    #[test]
    fn malformed_sessions_are_refused_with_a_clear_error() {
        let k = key();
        let ip = [149, 154, 167, 51];
        let cases: Vec<(String, SessionError)> = vec![
            (String::new(), SessionError::Empty),
            ("  \n".into(), SessionError::Empty),
            ("1".repeat(2000), SessionError::TooLong(2000)),
            (
                format!("2{}", &telethon_by_hand(2, &ip, 443, &k)[1..]),
                SessionError::Version,
            ),
            ("1not base64!".into(), SessionError::Base64),
            ("1AAAA*".into(), SessionError::Base64),
            ("1AAAA".into(), SessionError::Length(3)),
            (
                telethon_by_hand(2, &ip, 443, &k[..255]),
                SessionError::Length(262),
            ),
            (
                format!("1{}", URL_SAFE.encode([7u8; 300])),
                SessionError::Length(300),
            ),
            (telethon_by_hand(0, &ip, 443, &k), SessionError::DcId(0)),
            (telethon_by_hand(6, &ip, 443, &k), SessionError::DcId(6)),
            (
                gramjs_by_hand(9, "149.154.167.51", 443, &k),
                SessionError::DcId(9),
            ),
            (
                gramjs_by_hand(2, "api.telegram.org", 443, &k),
                SessionError::Address,
            ),
            (gramjs_by_hand(2, "", 443, &k), SessionError::Address),
            (telethon_by_hand(2, &ip, 0, &k), SessionError::Port(0)),
            (
                telethon_by_hand(2, &ip, 40000, &k),
                SessionError::Port(40000),
            ),
            (
                telethon_by_hand(2, &ip, 443, &[0; AUTH_KEY_LEN]),
                SessionError::ZeroAuthKey,
            ),
            (
                gramjs_by_hand(2, "149.154.167.51", 443, &[0; AUTH_KEY_LEN]),
                SessionError::ZeroAuthKey,
            ),
        ];
        for (input, want) in cases {
            let got = StringSession::parse(&input).unwrap_err();
            assert_eq!(got, want, "input of {} characters", input.len());
            let msg = got.to_string();
            assert!(msg.starts_with("the Telegram session"), "{msg}");
            // No error echoes the session.
            if input.len() > 20 {
                assert!(!msg.contains(&input[1..17]), "{msg}");
            }
        }
    }

    #[test]
    fn debug_never_shows_the_auth_key() {
        let s = v4();
        let d = format!("{s:?}");
        assert!(d.contains("AuthKey(<redacted>)"), "{d}");
        assert!(!d.contains("3, 10, 17"), "{d}");
        assert!(!d.contains(&s.to_telethon().expose()[1..20]));
    }

    #[test]
    fn no_input_panics() {
        use rand::Rng as _;
        let mut rng = rand::thread_rng();
        let good = v4().to_telethon().expose().to_owned();
        let good_g = v6().to_gramjs().expose().to_owned();
        for i in 0..20_000 {
            let s: String = match i % 3 {
                0 => {
                    let n = rng.gen_range(0..600);
                    (0..n).map(|_| rng.r#gen::<char>()).collect()
                }
                _ => {
                    // Mutations of real sessions and random bytes in their layouts.
                    let base = if i % 3 == 1 { &good } else { &good_g };
                    let mut b = base.clone().into_bytes();
                    for _ in 0..rng.gen_range(1..4) {
                        let at = rng.gen_range(0..b.len());
                        b[at] = b"1AZaz09+/-_= "[rng.gen_range(0..13)];
                    }
                    b.truncate(rng.gen_range(0..b.len() + 1).max(b.len() - 8));
                    String::from_utf8(b).unwrap()
                }
            };
            let _ = StringSession::parse(&s);
        }
        for n in 0..400 {
            let bytes: Vec<u8> = (0..n).map(|_| rng.r#gen()).collect();
            let _ = StringSession::parse(&format!("1{}", STANDARD.encode(&bytes)));
            let mut g = bytes.clone();
            if g.len() > 3 {
                g[1] = 0;
                g[2] = (n as usize).saturating_sub(261) as u8;
            }
            let _ = StringSession::parse(&format!("1{}", STANDARD.encode(&g)));
        }
    }
}
