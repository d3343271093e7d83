//! Masking the injected credential in a proxied answer.
//!
//! A proxied agent must never see the credential Akhrot adds for it. A provider may echo it
//! back: a key sent in the query comes back in a redirect's `Location`, an error page quotes the
//! URL, an echo endpoint repeats the headers. So every header and every byte of the body the
//! proxy passes back is searched for each secret value of the connection (as stored, in both
//! percent-encodings a URL may carry, and as the Basic pair), and each occurrence is replaced by
//! as many `*`: the length stays the same, so `Content-Length` stays true. The body is searched
//! as it streams. Only the end of a chunk that could begin an occurrence (the longest suffix that
//! is a prefix of some spelling) waits for the next chunk, so an occurrence split across chunks
//! is found too, and a stream (server-sent events, a download the agent reads as it comes) is
//! not held back otherwise.

use aho_corasick::AhoCorasick;
use axum::body::Bytes;
use axum::http::HeaderValue;
use zeroize::Zeroizing;

/// Secret values shorter than this are not searched for (they would mask ordinary text).
const MIN_SECRET_LEN: usize = 8;

/// The spellings of a connection's secrets to mask.
#[derive(Default)]
pub struct Secrets {
    spellings: Vec<Zeroizing<Vec<u8>>>,
}

impl Secrets {
    /// Adds a secret value, in every spelling an answer may carry it.
    pub fn add(&mut self, value: &str) {
        if value.len() < MIN_SECRET_LEN {
            return;
        }
        let mut push = |s: Vec<u8>| {
            if !self.spellings.iter().any(|x| x.as_slice() == s.as_slice()) {
                self.spellings.push(Zeroizing::new(s));
            }
        };
        push(value.as_bytes().to_vec());
        // As a query value: form encoding (`+` for space) and strict percent-encoding.
        push(
            url::form_urlencoded::byte_serialize(value.as_bytes())
                .collect::<String>()
                .into_bytes(),
        );
        push(strict_pct(value).into_bytes());
    }

    /// Adds an already-encoded spelling (e.g. the base64 of a Basic pair).
    pub fn add_spelling(&mut self, spelling: &str) {
        if spelling.len() >= MIN_SECRET_LEN
            && !self
                .spellings
                .iter()
                .any(|x| x.as_slice() == spelling.as_bytes())
        {
            self.spellings
                .push(Zeroizing::new(spelling.as_bytes().to_vec()));
        }
    }

    /// The masker for one answer; `None` when there is nothing to search for.
    pub fn masker(&self) -> Option<Masker> {
        if self.spellings.is_empty() {
            return None;
        }
        let ac = AhoCorasick::new(self.spellings.iter().map(|s| s.as_slice())).ok()?;
        Some(Masker {
            ac,
            spellings: self.spellings.clone(),
            carry: Zeroizing::new(Vec::new()),
            masked: 0,
        })
    }
}

use akhrot_core::text::pct_encode as strict_pct;

/// Masks secrets in one answer: its headers, then its body chunk by chunk.
pub struct Masker {
    ac: AhoCorasick,
    spellings: Vec<Zeroizing<Vec<u8>>>,
    carry: Zeroizing<Vec<u8>>,
    /// Occurrences masked so far.
    pub masked: usize,
}

impl Masker {
    fn mask_in_place(&mut self, buf: &mut [u8]) {
        let spans: Vec<(usize, usize)> = self
            .ac
            .find_overlapping_iter(&*buf)
            .map(|m| (m.start(), m.end()))
            .collect();
        for (start, end) in spans {
            buf[start..end].fill(b'*');
            self.masked += 1;
        }
    }

    /// The header value with every secret masked (the same value when there is none).
    pub fn header(&mut self, value: &HeaderValue) -> HeaderValue {
        if !self.ac.is_match(value.as_bytes()) {
            return value.clone();
        }
        let mut bytes = value.as_bytes().to_vec();
        self.mask_in_place(&mut bytes);
        HeaderValue::from_bytes(&bytes).unwrap_or_else(|_| HeaderValue::from_static("***"))
    }

    /// The part of the body that can be passed on after `chunk`: all of it but an end that could
    /// begin an occurrence, which waits for the next chunk.
    pub fn chunk(&mut self, chunk: &[u8]) -> Bytes {
        let mut buf = std::mem::take(&mut *self.carry);
        buf.extend_from_slice(chunk);
        self.mask_in_place(&mut buf);
        let hold = self.could_begin_a_secret(&buf);
        let tail = buf.split_off(buf.len() - hold);
        *self.carry = tail;
        Bytes::from(buf)
    }

    /// The length of the longest end of `buf` that is a proper prefix of some spelling.
    fn could_begin_a_secret(&self, buf: &[u8]) -> usize {
        let mut hold = 0;
        for s in &self.spellings {
            let most = (s.len() - 1).min(buf.len());
            for k in (hold + 1..=most).rev() {
                if buf[buf.len() - k..] == s[..k] {
                    hold = k;
                    break;
                }
            }
        }
        hold
    }

    /// What is left once the body ended (already searched).
    pub fn finish(&mut self) -> Bytes {
        Bytes::from(std::mem::take(&mut *self.carry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masker(values: &[&str]) -> Masker {
        let mut s = Secrets::default();
        for v in values {
            s.add(v);
        }
        s.masker().unwrap()
    }

    #[test]
    fn every_spelling_is_masked_in_headers() {
        let mut m = masker(&["s3cr3t+key/=="]);
        let loc =
            HeaderValue::from_static("https://api.example/next?key=s3cr3t%2Bkey%2F%3D%3D&other=1");
        let stars = "*".repeat("s3cr3t%2Bkey%2F%3D%3D".len());
        assert_eq!(
            m.header(&loc).to_str().unwrap(),
            format!("https://api.example/next?key={stars}&other=1")
        );
        let raw = HeaderValue::from_static("echo: s3cr3t+key/==");
        assert_eq!(m.header(&raw).to_str().unwrap(), "echo: *************");
        let clean = HeaderValue::from_static("nothing here");
        assert_eq!(m.header(&clean), clean);
        assert_eq!(m.masked, 2);
    }

    #[test]
    fn a_secret_split_across_chunks_is_masked_and_lengths_are_kept() {
        let secret = "key_0123456789abcdef";
        let body = format!("{{\"url\":\"https://x/?k={secret}\",\"again\":\"{secret}\"}}");
        for split in 1..body.len() {
            let mut m = masker(&[secret]);
            let (a, b) = body.as_bytes().split_at(split);
            let mut out = Vec::new();
            out.extend_from_slice(&m.chunk(a));
            out.extend_from_slice(&m.chunk(b));
            out.extend_from_slice(&m.finish());
            assert_eq!(out.len(), body.len());
            let text = String::from_utf8(out).unwrap();
            assert!(!text.contains(secret), "split at {split}: {text}");
            assert_eq!(m.masked, 2);
        }
    }

    #[test]
    fn only_an_end_that_could_begin_a_secret_waits_for_the_next_chunk() {
        let mut m = masker(&["key_0123456789abcdef"]);
        assert_eq!(&m.chunk(b"data: hello\n\n")[..], b"data: hello\n\n");
        assert_eq!(&m.chunk(b"data: x key_01")[..], b"data: x ");
        assert_eq!(&m.chunk(b"23 nope")[..], b"key_0123 nope");
        assert_eq!(&m.finish()[..], b"");
    }

    #[test]
    fn short_values_are_not_searched_for() {
        let mut s = Secrets::default();
        s.add("abc");
        assert!(s.masker().is_none());
    }
}
