//! Agent keys: `akhrot_<id>_<secret>`. The id (10 lowercase letters/digits) finds the record;
//! the secret (256 random bits, 64 hex digits) is stored only as a SHA-256 hash and compared
//! in constant time.

use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::SecretString;

pub const PREFIX: &str = "akhrot_";
const ID_LEN: usize = 10;
const SECRET_HEX_LEN: usize = 64;
const ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A key split into its parts. The secret part stays in a [`SecretString`].
#[derive(Debug)]
pub struct ParsedKey {
    pub id: String,
    pub secret: SecretString,
}

/// Splits a presented key. Anything not of the exact form is `None`.
pub fn parse(key: &str) -> Option<ParsedKey> {
    let rest = key.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let id_ok = id.len() == ID_LEN && id.bytes().all(|b| ID_ALPHABET.contains(&b));
    let secret_ok = secret.len() == SECRET_HEX_LEN && secret.bytes().all(|b| b.is_ascii_hexdigit());
    (id_ok && secret_ok).then(|| ParsedKey {
        id: id.to_owned(),
        secret: SecretString::from(secret),
    })
}

/// A new key: `(id, full key)`. The full key is shown once and never stored.
pub fn generate() -> (String, SecretString) {
    let mut rng = rand::rngs::OsRng;
    let id: String = (0..ID_LEN)
        .map(|_| ID_ALPHABET[rng.gen_range(0..ID_ALPHABET.len())] as char)
        .collect();
    let full = format!("{PREFIX}{id}_{}", crate::text::random_hex(32));
    (id, SecretString::new(full))
}

/// The stored form of a key's secret part.
pub fn hash_secret(secret: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"akhrot agent key v1\0");
    h.update(secret.as_bytes());
    h.finalize().into()
}

/// Constant-time comparison of a presented secret with a stored hash.
pub fn verify(secret: &str, stored_hash: &[u8]) -> bool {
    let computed = hash_secret(secret);
    stored_hash.len() == computed.len() && bool::from(computed.ct_eq(stored_hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_verify() {
        let (id, key) = generate();
        let parsed = parse(key.expose()).expect("parses");
        assert_eq!(parsed.id, id);
        let stored = hash_secret(parsed.secret.expose());
        assert!(verify(parsed.secret.expose(), &stored));
        let (_, other) = generate();
        let other = parse(other.expose()).expect("parses");
        assert!(!verify(other.secret.expose(), &stored));
        assert_eq!(
            key.expose().len(),
            PREFIX.len() + ID_LEN + 1 + SECRET_HEX_LEN
        );
    }

    #[test]
    fn malformed_keys_are_rejected() {
        let (_, key) = generate();
        let k = key.expose();
        for bad in [
            "",
            "akhrot_",
            "akhrot__",
            &k[..k.len() - 1],
            &format!("{k}0"),
            &k.replace("akhrot_", "akhrot-"),
            &k.to_uppercase(),
            "akhrot_admin_0123",
            &format!("{}_{}", &k[..17], "zz".repeat(32)),
        ] {
            assert!(parse(bad).is_none(), "{bad:?} should not parse");
        }
    }
}
