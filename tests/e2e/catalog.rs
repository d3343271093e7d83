//! The provider catalog as agents and users see it: the 37 built-in providers of the skill
//! document, their context answers, and `providers.d` overrides and additions.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use akhrot_e2e::*;
use serde_json::{Value, json};

/// The provider codes of the skill document, in its order.
const SKILL_CODES: [&str; 37] = [
    "google",
    "github",
    "x-twitter",
    "telegram",
    "notion",
    "linear",
    "spotify",
    "slack",
    "discord",
    "zoom",
    "calendly",
    "reddit",
    "asana",
    "twitch",
    "jira",
    "dropbox",
    "microsoft",
    "figma",
    "gitlab",
    "airtable",
    "mongodb",
    "supabase",
    "railway",
    "elevenlabs",
    "typefully",
    "openai",
    "twilio",
    "stripe",
    "sendgrid",
    "anthropic",
    "replicate",
    "cloudflare",
    "cohere",
    "postmark",
    "mailgun",
    "pagerduty",
    "vercel",
];

/// Section 4 of the API contract, verbatim.
const MYIDP_TOML: &str = r#"[providers.myidp]
name = "My IdP"
auth = "oauth2"                      # "oauth2" | "api_key" | "mtproto"
authorize_url = "https://idp.example.com/oauth/authorize"
token_url = "https://idp.example.com/oauth/token"
revoke_url = "https://idp.example.com/oauth/revoke"       # optional
userinfo_url = "https://idp.example.com/userinfo"         # optional: names the account
scopes = ["openid", "email", "offline_access"]
scope_separator = " "                # optional, default " "
token_auth = "client_secret_basic"   # or "client_secret_post", "none"
pkce = true                          # optional, default true

[[providers.myidp.services]]
code = "api"
name = "My IdP API"
base_url = "https://idp.example.com/api"
docs_url = "https://idp.example.com/docs"                 # optional
"#;

fn codes(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap().to_owned())
        .collect()
}

fn write_providers_d(d: &Dirs, files: &[(&str, &str)]) {
    let dir = d.config().join("providers.d");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

/// Every `docsUrl` and `baseUrl` anywhere in `v` is https (null is checked by the caller).
fn assert_https_urls(v: &Value, what: &str) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if matches!(k.as_str(), "docsUrl" | "baseUrl")
                    && let Some(u) = x.as_str()
                {
                    assert!(u.starts_with("https://"), "{what}: {k} = {u}");
                }
                assert_https_urls(x, what);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| assert_https_urls(x, what)),
        _ => {}
    }
}

#[test]
fn every_skill_provider_is_in_the_catalog_with_https_services_and_examples() {
    let d = Dirs::new();
    let s = Server::start_with(&d, Opts::default().arg("--rate-limit").arg("0")).unwrap();
    let key = s.create_key("bot", &["*"]);

    let listed = s.admin_get("/admin/providers");
    let got: BTreeSet<String> = codes(&listed).into_iter().collect();
    let want: BTreeSet<String> = SKILL_CODES.iter().map(|c| (*c).to_owned()).collect();
    assert_eq!(got, want);
    assert_eq!(listed.as_array().unwrap().len(), 37, "no duplicates");
    for p in listed.as_array().unwrap() {
        assert_eq!(p["custom"], false, "{p}");
        assert!(
            matches!(
                p["authType"].as_str().unwrap(),
                "oauth2" | "api_key" | "mtproto"
            ),
            "{p}"
        );
        assert_https_urls(p, "admin/providers");
    }

    let mut services_seen = 0;
    for code in SKILL_CODES {
        let (status, v) = s.get(&format!("/ai/context/{code}"), Some(&key));
        assert_eq!(status, 200, "{code}: {v}");
        let data = &v["data"];
        assert_eq!(data["provider"], code, "{v}");
        assert_eq!(data["connected"], false, "{v}");
        assert!(data["getToken"]["url"].is_string(), "{code}: {v}");
        assert_https_urls(data, code);
        let services = data["services"].as_array().unwrap();
        assert!(!services.is_empty(), "{code} has no services");
        for svc in services {
            let sc = svc["code"].as_str().unwrap();
            let what = format!("{code}/{sc}");
            let (status, v) = s.get(&format!("/ai/context/{code}/{sc}"), Some(&key));
            assert_eq!(status, 200, "{what}: {v}");
            let data = &v["data"];
            assert_eq!(data["service"], sc, "{v}");
            assert_https_urls(data, &what);
            let examples = data["examples"].as_array().unwrap();
            if code == "telegram" {
                // MTProto: no HTTP base URL and no example calls.
                assert!(data["baseUrl"].is_null() || data["baseUrl"].is_string());
            } else {
                assert!(data["baseUrl"].is_string(), "{what}: no baseUrl: {v}");
                assert!(!examples.is_empty(), "{what}: no examples");
            }
            for e in examples {
                let url = e["url"].as_str().unwrap();
                assert!(url.starts_with("https://"), "{what}: example url {url}");
                assert!(e["curl"].as_str().unwrap().contains(url), "{what}: {e}");
            }
            services_seen += 1;
        }
    }
    assert!(services_seen >= 37, "{services_seen}");

    let (status, v) = s.get("/ai/context/nosuch", Some(&key));
    assert_eq!((status, code(&v)), (404, "PROVIDER_NOT_FOUND"));
    let (status, v) = s.get("/ai/context/openai/nosuch", Some(&key));
    assert_eq!(status, 404, "{v}");
}

#[test]
fn skill_document_lists_every_code_and_this_instance() {
    let d = Dirs::new();
    let s = Server::start(&d);
    let (status, v) = s.get("/ai/skill", None);
    assert_eq!(status, 200);
    let text = v.as_str().unwrap();
    for code in SKILL_CODES {
        assert!(text.contains(code), "the skill document lacks {code}");
    }
    assert!(
        text.contains(&s.base),
        "the skill document lacks {}",
        s.base
    );
    assert!(!text.contains("akhrot.ai"));
}

const GITLAB_OVERRIDE: &str = r#"# Self-hosted GitLab
[providers.gitlab]
authorize_url = "https://gitlab.example.org/oauth/authorize"
token_url = "https://gitlab.example.org/oauth/token"
"#;

/// A TOML syntax error on line 4 (a key with no `=`).
const BROKEN: &str = r#"[providers.broken]
name = "Broken"
auth = "oauth2"
this line is not toml
token_url = "https://broken.example.com/token"
"#;

/// `token_url` on line 6 is http:// to a non-loopback host; the entry starts on line 2.
const INSECURE: &str = r#"# an insecure provider
[providers.insecure]
name = "Insecure"
auth = "oauth2"
authorize_url = "https://insecure.example.com/authorize"
token_url = "http://insecure.example.com/token"

[[providers.insecure.services]]
code = "api"
name = "API"
base_url = "https://insecure.example.com/api"
"#;

const LOOPBACK: &str = r#"[providers.loopidp]
name = "Loopback IdP"
auth = "oauth2"
authorize_url = "http://127.0.0.1:9/authorize"
token_url = "http://127.0.0.1:9/token"
scopes = ["openid"]

[[providers.loopidp.services]]
code = "api"
name = "Loopback API"
base_url = "https://loop.example.com/api"
"#;

#[test]
fn providers_d_adds_overrides_and_reports_bad_files() {
    let d = Dirs::new();
    write_providers_d(
        &d,
        &[
            ("10-myidp.toml", MYIDP_TOML),
            ("20-gitlab.toml", GITLAB_OVERRIDE),
            ("30-broken.toml", BROKEN),
            ("40-insecure.toml", INSECURE),
            ("50-loopback.toml", LOOPBACK),
        ],
    );
    let s = Server::start(&d);
    let key = s.create_key("bot", &["*"]);

    let listed = s.admin_get("/admin/providers");
    let all = codes(&listed);
    assert_eq!(all.len(), 39, "{all:?}");
    for c in SKILL_CODES {
        assert!(all.iter().any(|x| x == c), "{c} missing");
    }
    assert!(all.iter().any(|c| c == "myidp"), "{all:?}");
    assert!(all.iter().any(|c| c == "loopidp"), "{all:?}");
    assert!(!all.iter().any(|c| c == "insecure"), "{all:?}");
    assert!(!all.iter().any(|c| c == "broken"), "{all:?}");
    let myidp = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["code"] == "myidp")
        .unwrap();
    assert_eq!(myidp["custom"], true, "{myidp}");
    assert_eq!(myidp["name"], "My IdP");
    assert_eq!(myidp["authType"], "oauth2");
    assert_eq!(
        myidp["authorizeUrl"],
        "https://idp.example.com/oauth/authorize"
    );
    assert_eq!(myidp["tokenUrl"], "https://idp.example.com/oauth/token");
    assert_eq!(
        myidp["scopes"],
        json!(["openid", "email", "offline_access"])
    );
    let (status, _) = s.get("/admin/providers/insecure", Some(&s.admin_token()));
    assert_eq!(status, 404);

    // GitLab: only the two URLs changed.
    let gitlab = s.admin_get("/admin/providers/gitlab");
    assert_eq!(
        gitlab["authorizeUrl"],
        "https://gitlab.example.org/oauth/authorize"
    );
    assert_eq!(gitlab["tokenUrl"], "https://gitlab.example.org/oauth/token");
    assert_eq!(gitlab["name"], "GitLab");
    assert_eq!(gitlab["authType"], "oauth2");
    assert_eq!(gitlab["scopes"], json!(["api", "read_user"]));
    let (status, v) = s.get("/ai/context/gitlab", Some(&key));
    assert_eq!(status, 200, "{v}");
    let services: Vec<&str> = v["data"]["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["code"].as_str().unwrap())
        .collect();
    assert!(services.len() >= 3, "{services:?}");
    assert!(services.contains(&"repos"), "{services:?}");
    let (status, v) = s.get("/ai/context/gitlab/repos", Some(&key));
    assert_eq!(status, 200, "{v}");
    assert!(
        v["data"]["baseUrl"]
            .as_str()
            .unwrap()
            .starts_with("https://"),
        "{v}"
    );

    // The new providers work for agents too.
    let (status, v) = s.get("/ai/context/myidp", Some(&key));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["authType"], "oauth2");
    assert_eq!(v["data"]["services"][0]["code"], "api");
    assert_eq!(
        v["data"]["services"][0]["baseUrl"],
        "https://idp.example.com/api"
    );
    assert_eq!(
        v["data"]["services"][0]["docsUrl"],
        "https://idp.example.com/docs"
    );
    let (status, v) = s.get("/ai/context/myidp/api", Some(&key));
    assert_eq!(status, 200, "{v}");
    let (status, v) = s.get("/ai/context/loopidp", Some(&key));
    assert_eq!(status, 200, "{v}");
    let (status, v) = s.get("/ai/context/insecure", Some(&key));
    assert_eq!((status, code(&v)), (404, "PROVIDER_NOT_FOUND"), "{v}");

    // The problems are reported with path and line.
    let status = s.admin_get("/admin/status");
    assert_eq!(status["catalog"]["providers"], 39, "{status}");
    let issues: Vec<&str> = status["catalog"]["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    assert_eq!(issues.len(), 2, "{issues:?}");
    let broken = issues
        .iter()
        .find(|i| i.contains("30-broken.toml"))
        .unwrap_or_else(|| panic!("{issues:?}"));
    assert!(broken.contains("30-broken.toml:4:"), "{broken}");
    assert!(
        broken.contains(&d.config().join("providers.d").display().to_string()),
        "{broken}"
    );
    let insecure = issues
        .iter()
        .find(|i| i.contains("40-insecure.toml"))
        .unwrap_or_else(|| panic!("{issues:?}"));
    // The entry's header (line 2) or the offending key (line 6).
    assert!(
        insecure.contains("40-insecure.toml:2:") || insecure.contains("40-insecure.toml:6:"),
        "{insecure}"
    );
    assert!(insecure.contains("http://"), "{insecure}");
    assert!(insecure.contains("token_url"), "{insecure}");

    // Agents see the added provider as available.
    let (status, v) = s.get("/ai/context/summary", Some(&key));
    assert_eq!(status, 200);
    let available: Vec<&str> = v["data"]["available"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(available.contains(&"myidp"), "{available:?}");
    assert!(available.contains(&"loopidp"), "{available:?}");
    assert!(!available.contains(&"insecure"), "{available:?}");
    assert_eq!(available.len(), 39, "{available:?}");

    // The skill document lists the added provider too.
    let (_, v) = s.get("/ai/skill", None);
    assert!(v.as_str().unwrap().contains("myidp"));
}

#[test]
fn an_override_cannot_break_a_built_in_provider() {
    let d = Dirs::new();
    write_providers_d(
        &d,
        &[(
            "10-openai.toml",
            "[providers.openai]\nauth = \"bogus\"\nname = \"Not OpenAI\"\n",
        )],
    );
    let s = Server::start(&d);
    let status = s.admin_get("/admin/status");
    let issues = status["catalog"]["issues"].as_array().unwrap();
    assert_eq!(issues.len(), 1, "{status}");
    let issue = issues[0].as_str().unwrap();
    assert!(issue.contains("10-openai.toml:1:"), "{issue}");
    assert!(issue.contains("openai"), "{issue}");
    assert!(issue.contains("bogus"), "{issue}");
    assert_eq!(status["catalog"]["providers"], 37);

    let openai = s.admin_get("/admin/providers/openai");
    assert_eq!(openai["authType"], "api_key", "{openai}");
    assert_eq!(openai["name"], "OpenAI", "{openai}");
    assert_eq!(openai["custom"], false, "{openai}");

    let key = s.create_key("bot", &["openai"]);
    s.add("openai", None, json!({ "apiKey": "sk-override-test-1234" }));
    let (status, v) = s.post(
        "/tokens/fetch",
        Some(&key),
        &json!({ "provider": "openai" }),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["accessToken"], "sk-override-test-1234");
    let (status, v) = s.get("/ai/context/openai", Some(&key));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["authType"], "api_key");
    assert_eq!(v["data"]["name"], "OpenAI");
}
