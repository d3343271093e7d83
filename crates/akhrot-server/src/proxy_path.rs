//! The proxy's path check ([`check_path`]), shared by `/proxy/…` and MCP's `call_api`, which
//! refuses a bad path before it sends anything.

use crate::error::ApiError;

/// Percent-decodes `s` (invalid UTF-8 replaced).
pub fn pct_decode(s: &str) -> String {
    String::from_utf8_lossy(&pct_decode_bytes(s)).into_owned()
}

fn pct_decode_bytes(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(hex) = std::str::from_utf8(&b[i + 1..i + 3])
            && let Ok(v) = u8::from_str_radix(hex, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Whether a decoded segment is `.` or `..` to some upstream: as it is, with what follows a
/// `;` (path parameters: Tomcat and Jetty read `..;x` as `..`) or a NUL (C strings) cut off,
/// and with the dots that Unicode normalisation (NFKC) turns into `.` (full-width `．`, `․`,
/// `﹒`).
fn is_dot_segment(seg: &str) -> bool {
    let cut = seg.split([';', '\0']).next().unwrap_or("");
    let dots: String = cut
        .chars()
        .map(|c| match c {
            '\u{FF0E}' | '\u{2024}' | '\u{FE52}' => '.',
            c => c,
        })
        .collect();
    dots == "." || dots == ".."
}

/// Refuses `.`/`..` segments, also percent-encoded (once or more), with backslashes, as path
/// parameters, NUL-cut or Unicode look-alikes, and segments that decode to invalid UTF-8 (an
/// overlong `%c0%ae` is a `.` to an upstream that decodes leniently).
pub fn check_path(rest: &str) -> Result<(), ApiError> {
    let refuse = || {
        ApiError::bad_request(
            "the proxied path may not contain `.` or `..` segments or backslashes (in any encoding); send the API path as the provider documents it",
        )
    };
    for seg in rest.split('/') {
        let mut s = seg.to_owned();
        for _ in 0..4 {
            if s.contains('\\') {
                return Err(refuse());
            }
            if s.split('/').any(is_dot_segment) {
                return Err(refuse());
            }
            let Ok(next) = String::from_utf8(pct_decode_bytes(&s)) else {
                return Err(refuse());
            };
            if next == s {
                break;
            }
            s = next;
        }
        if s.contains('%') && pct_decode(&s) != s {
            // Encoded more than four times: nobody needs that.
            return Err(refuse());
        }
    }
    Ok(())
}
