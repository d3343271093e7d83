//! Types that hold secrets. Their `Debug` and `Display` never show the value, and the
//! memory is wiped when they are dropped.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

/// A secret string (token, API key, client secret, session string).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    pub fn new(s: String) -> Self {
        Self(Zeroizing::new(s))
    }

    /// The secret itself. Call sites are the places a secret leaves the vault: keep them few.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

impl From<&str> for SecretString {
    fn from(s: &str) -> Self {
        Self::new(s.to_owned())
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString([redacted])")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl serde::Serialize for SecretString {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.expose())
    }
}

impl<'de> serde::Deserialize<'de> for SecretString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::new)
    }
}

/// A 256-bit key (the master key, or a key derived from a passphrase).
#[derive(Clone)]
pub struct Key32(Box<[u8; 32]>);

impl Key32 {
    pub fn from_bytes(mut b: [u8; 32]) -> Self {
        let k = Self(Box::new(b));
        b.zeroize();
        k
    }

    pub fn generate() -> Self {
        use rand::RngCore;
        let mut k = Self(Box::new([0u8; 32]));
        rand::rngs::OsRng.fill_bytes(k.0.as_mut());
        k
    }

    pub fn from_slice(s: &[u8]) -> Option<Self> {
        let arr: [u8; 32] = s.try_into().ok()?;
        Some(Self::from_bytes(arr))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Drop for Key32 {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Key32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key32([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let s = SecretString::from("sk-very-secret");
        assert_eq!(format!("{s:?}"), "SecretString([redacted])");
        assert_eq!(format!("{s}"), "[redacted]");
        let k = Key32::generate();
        assert_eq!(format!("{k:?}"), "Key32([redacted])");
    }
}
