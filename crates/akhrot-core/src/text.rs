//! Small text helpers shared by every crate: random hex identifiers and tokens,
//! percent-encoding of a path segment or query value, and making text from outside safe to
//! show (one line, printable, bounded).
//!
//! The three cleaning functions differ on purpose, each for what it shows:
//! - [`clean_text`]: a provider's or agent's free text kept readable (controls become
//!   spaces so words stay apart, trimmed, at most 300 characters and `…` when cut).
//! - [`replace_controls`]: evidence about a process (its name, its arguments): every control
//!   character stays visible as `U+FFFD`, so a name cannot hide one; cut at `max`, no mark.
//! - [`printable`]: user input echoed in an error message: controls dropped, at most 64
//!   characters, `…` when the input was longer.

/// `bytes` random bytes from the OS as lowercase hex (`2 * bytes` characters). The bytes are
/// wiped once encoded; use it for ids, states and tokens alike.
pub fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut b = zeroize::Zeroizing::new(vec![0u8; bytes]);
    rand::rngs::OsRng.fill_bytes(b.as_mut_slice());
    hex::encode(b.as_slice())
}

/// Percent-encodes a path segment or query value: every byte but RFC 3986's unreserved
/// characters (`A-Z a-z 0-9 - _ . ~`) becomes `%XX` (upper-case hex), so a space is `%20`,
/// never `+`. For `application/x-www-form-urlencoded` bodies (where a space is `+`) use
/// `url::form_urlencoded` instead.
pub fn pct_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Text from outside (a provider's error description) made safe to show: one line, printable,
/// at most 300 characters.
pub fn clean_text(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    if s.chars().count() > 300 {
        out.push('…');
    }
    out.trim().to_owned()
}

/// Replaces control characters with `U+FFFD` and cuts to `max` characters.
pub fn replace_controls(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

/// Echoes user input into a message safely: printable, short.
pub fn printable(s: &str) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(64).collect();
    if s.chars().count() > 64 {
        out.push('…');
    }
    out
}

/// The one placeholder scanner, for catalog templates: `{name}` (ASCII letters and digits) is
/// replaced by its known value, or by what `unknown` makes of the name; any other brace is kept
/// as it is.
pub fn fill_with<E>(
    template: &str,
    known: &std::collections::BTreeMap<String, String>,
    mut unknown: impl FnMut(&str) -> Result<String, E>,
) -> Result<String, E> {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end)
                if !after[..end].is_empty()
                    && after[..end].chars().all(|c| c.is_ascii_alphanumeric()) =>
            {
                let name = &after[..end];
                match known.get(name) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&unknown(name)?),
                }
                rest = &after[end + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The `{name}` placeholders of a template, in order (see [`fill_with`]).
pub fn placeholders(template: &str) -> Vec<String> {
    let mut names = Vec::new();
    let _ = fill_with(template, &std::collections::BTreeMap::new(), |n| {
        names.push(n.to_owned());
        Ok::<_, ()>(String::new())
    });
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_hex_has_the_length_and_alphabet_and_differs() {
        let a = random_hex(16);
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_ne!(a, random_hex(16));
        assert_eq!(random_hex(0), "");
    }

    #[test]
    fn pct_encode_keeps_only_unreserved() {
        assert_eq!(pct_encode("aZ09-_.~"), "aZ09-_.~");
        assert_eq!(
            pct_encode("a b+c/d?e=f&g#h%"),
            "a%20b%2Bc%2Fd%3Fe%3Df%26g%23h%25"
        );
        assert_eq!(pct_encode("é"), "%C3%A9");
        assert_eq!(pct_encode("\n"), "%0A");
        assert_eq!(pct_encode(""), "");
    }

    #[test]
    fn clean_text_is_one_trimmed_line_of_at_most_300() {
        assert_eq!(clean_text("  bad\r\ngrant\t "), "bad  grant");
        let long = "x".repeat(301);
        let c = clean_text(&long);
        assert_eq!(c.chars().count(), 301);
        assert!(c.ends_with('…'));
        assert_eq!(clean_text(&"y".repeat(300)), "y".repeat(300));
    }

    #[test]
    fn replace_controls_marks_each_control_and_cuts() {
        assert_eq!(replace_controls("a\u{1b}[2Jb", 10), "a\u{FFFD}[2Jb");
        assert_eq!(replace_controls("abcdef", 3), "abc");
        assert_eq!(replace_controls(" x ", 9), " x ");
    }

    #[test]
    fn printable_drops_controls_and_cuts_at_64() {
        assert_eq!(printable("a\u{7}b\nc"), "abc");
        let p = printable(&"z".repeat(65));
        assert_eq!(p, format!("{}…", "z".repeat(64)));
        assert_eq!(printable(&"z".repeat(64)), "z".repeat(64));
    }
}
