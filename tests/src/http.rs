//! Small HTTP pieces the tests share: a client that treats every status as an answer, the
//! error code of an envelope, and URL query parameters.

use std::time::Duration;

use serde_json::Value;

/// An HTTP client that returns every status as an answer (no error), goes to loopback directly
/// (no proxy from the environment) and gives up on a whole request after `timeout`, if given.
pub fn http_agent(timeout: Option<Duration>) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(timeout)
        .build()
        .into()
}

pub(crate) fn agent() -> ureq::Agent {
    http_agent(Some(Duration::from_secs(30)))
}

/// The error code of an error envelope.
pub fn code(v: &Value) -> &str {
    assert_eq!(v["status"], "error", "not an error envelope: {v}");
    v["error"]["code"].as_str().unwrap()
}

/// The agent key named `name` in a `GET /admin/keys` answer's data.
pub fn key_record<'a>(keys: &'a Value, name: &str) -> &'a Value {
    keys.as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == name)
        .unwrap_or_else(|| panic!("no key {name} in {keys}"))
}

/// Query parameters of a URL, decoded.
pub fn query_params(url: &str) -> Vec<(String, String)> {
    let q = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (pct_decode(k), pct_decode(v))
        })
        .collect()
}

pub fn param(url: &str, name: &str) -> Option<String> {
    query_params(url)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn pct_decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
