//! Types that hold secrets. Their `Debug` and `Display` never show the value, and the
//! memory is wiped when they are dropped.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

/// A secret string (token, API key, client secret, session string).
///
/// It is deliberately **not** `serde::Serialize`: a secret never reaches JSON, a log or an
/// answer by accident (through a derive on a type holding it). Where a secret must leave, the
/// call site says so with [`SecretString::expose`] and serializes the `&str`. (It is
/// `Deserialize`, so secrets can be read in.) The `const` check below fails to compile if a
/// `Serialize` impl is ever added.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

/// Compile-time check that [`SecretString`] is not `Serialize`: with an impl, the call below has
/// two candidate impls and type inference fails (the `static_assertions::assert_not_impl_any`
/// trick, without the crate).
const _: () = {
    trait AmbiguousIfSerialize<A> {
        fn check() {}
    }
    impl<T: ?Sized> AmbiguousIfSerialize<()> for T {}
    #[allow(dead_code)]
    struct IsSerialize;
    impl<T: ?Sized + serde::Serialize> AmbiguousIfSerialize<IsSerialize> for T {}
    let _ = <SecretString as AmbiguousIfSerialize<_>>::check;
};

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
        // Also inside what holds secrets (a connection's opened values).
        let creds = std::collections::BTreeMap::from([("apiKey".to_owned(), s.clone())]);
        let shown = format!("{creds:?}");
        assert!(!shown.contains("sk-very-secret"), "{shown}");
        assert_eq!(shown, r#"{"apiKey": SecretString([redacted])}"#);
        assert!(!format!("{:?}", Some(&s)).contains("sk-very"));
    }

    #[test]
    fn reads_in_from_json_and_leaves_only_through_expose() {
        let s: SecretString = serde_json::from_str(r#""tok-123""#).unwrap();
        assert_eq!(s.expose(), "tok-123");
        assert_eq!(serde_json::to_string(s.expose()).unwrap(), r#""tok-123""#);
    }
}
