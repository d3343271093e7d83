//! Twitch against a loopback stand-in that answers as Twitch's documentation says: token
//! validation at `/oauth2/validate` with `Authorization: OAuth <token>`, at start and
//! periodically (https://dev.twitch.tv/docs/authentication/validate-tokens/), a refused token
//! marking the connection `needs_reconnect`, and Helix calls that need the app's `Client-Id`
//! (https://dev.twitch.tv/docs/api/reference/).
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use akhrot_e2e::*;
use serde_json::{Value, json};

const CLIENT_ID: &str = "twitchclient123";
const CLIENT_SECRET: &str = "twitch-client-secret-0001";
const FIRST: &str = "twitch_access_token_first_0001";
const SECOND: &str = "twitch_access_token_second_0002";
const REFRESH: &str = "twitch_refresh_token_0001";

/// What the stand-in's Twitch is doing now.
#[derive(Default)]
struct Twitch {
    /// Access tokens it accepts, with when each stops being valid.
    valid: Vec<(String, Instant)>,
    /// `/oauth2/validate` answers 503 (an outage).
    outage: bool,
    /// Lifetime of the token the code exchange issues.
    first_ttl: u64,
}

impl Twitch {
    fn accepts(&self, token: &str) -> bool {
        self.valid
            .iter()
            .any(|(t, until)| t == token && Instant::now() < *until)
    }
}

fn json_answer(status: u16, v: Value) -> Answer {
    (status, "application/json", v.to_string())
}

/// Twitch's token, validate and Helix endpoints, as documented.
fn stand_in(first_ttl: u64) -> (StandIn, Arc<Mutex<Twitch>>) {
    let tw = Arc::new(Mutex::new(Twitch {
        first_ttl,
        ..Twitch::default()
    }));
    let state = tw.clone();
    let st = StandIn::start(move |r| {
        let mut t = state.lock().unwrap();
        let invalid = || {
            json_answer(
                401,
                json!({"status": 401, "message": "invalid access token"}),
            )
        };
        match r.path.as_str() {
            "/oauth2/token" if r.body.contains("grant_type=authorization_code") => {
                let ttl = t.first_ttl;
                t.valid
                    .push((FIRST.into(), Instant::now() + Duration::from_secs(ttl)));
                json_answer(
                    200,
                    json!({"access_token": FIRST, "expires_in": ttl, "refresh_token": REFRESH,
                           "scope": ["user:read:email", "user:read:follows"], "token_type": "bearer"}),
                )
            }
            "/oauth2/token" if r.body.contains("grant_type=refresh_token") => {
                t.valid
                    .push((SECOND.into(), Instant::now() + Duration::from_secs(14124)));
                json_answer(
                    200,
                    json!({"access_token": SECOND, "expires_in": 14124, "refresh_token": REFRESH,
                           "scope": ["user:read:email", "user:read:follows"], "token_type": "bearer"}),
                )
            }
            "/oauth2/validate" => {
                if t.outage {
                    return (503, "text/plain", "upstream connect error".into());
                }
                // The documented prefix is `OAuth`; only that is accepted here.
                match r
                    .header("authorization")
                    .and_then(|a| a.strip_prefix("OAuth "))
                {
                    Some(tok) if t.accepts(tok) => json_answer(
                        200,
                        json!({"client_id": CLIENT_ID, "login": "twitchdev",
                               "scopes": ["user:read:email", "user:read:follows"],
                               "user_id": "141981764", "expires_in": 5520838}),
                    ),
                    _ => invalid(),
                }
            }
            "/helix/users" => {
                let bearer = r
                    .header("authorization")
                    .and_then(|a| a.strip_prefix("Bearer "));
                if !bearer.is_some_and(|b| t.accepts(b)) {
                    return json_answer(
                        401,
                        json!({"error": "Unauthorized", "status": 401, "message": "Invalid OAuth token"}),
                    );
                }
                if r.header("client-id") != Some(CLIENT_ID) {
                    return json_answer(
                        401,
                        json!({"error": "Unauthorized", "status": 401,
                        "message": "The ID in the Client-Id header must match the client ID in the access token."}),
                    );
                }
                json_answer(
                    200,
                    json!({"data": [{"id": "141981764", "login": "twitchdev"}]}),
                )
            }
            _ => (404, "text/plain", "no".into()),
        }
    });
    (st, tw)
}

/// The built-in Twitch entry with its endpoints at the stand-in, validating every `every` s.
fn override_twitch(d: &Dirs, st: &StandIn, every: u64) {
    write_provider_file(
        d,
        "50-twitch",
        &format!(
            r#"[providers.twitch]
authorize_url = "{authorize}"
token_url = "{token}"

[providers.twitch.validate]
url = "{validate}"
every = {every}

[[providers.twitch.services]]
code = "streaming"
name = "Streaming"
base_url = "{helix}"
headers = {{ "Client-Id" = "{{clientId}}" }}

[[providers.twitch.services.examples]]
title = "The authenticated user"
method = "GET"
path = "/users"
"#,
            authorize = st.url("/oauth2/authorize"),
            token = st.url("/oauth2/token"),
            validate = st.url("/oauth2/validate"),
            helix = st.url("/helix"),
        ),
    );
}

fn start(d: &Dirs) -> (Server, String) {
    let s = Server::start(d);
    let key = s.create_key("bot", &["*"]);
    s.admin_post(
        "/admin/clients",
        &json!({"provider": "twitch", "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}),
    );
    (s, key)
}

/// Runs a consent session for Twitch through the loopback callback; returns the session.
fn connect(s: &Server, key: &str) -> Value {
    let (id, url) = s.oauth_start(key, "twitch");
    let state = param(&url, "state").unwrap();
    let (status, page) = s.get(&format!("/oauth/callback?code=twcode&state={state}"), None);
    assert_eq!(status, 200, "{page}");
    s.oauth_session(key, &id)
}

fn validations(st: &StandIn) -> Vec<Seen> {
    st.requests_to("/oauth2/validate")
}

fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status_of(s: &Server) -> String {
    s.admin_get("/admin/connections")[0]["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn register_secrets() {
    for t in [FIRST, SECOND, REFRESH, CLIENT_SECRET] {
        secrets::register(t);
    }
}

#[test]
fn connect_names_the_account_from_validate_and_helix_gets_the_client_id() {
    register_secrets();
    let (st, _) = stand_in(14124);
    let d = Dirs::new();
    override_twitch(&d, &st, 3600);
    let (s, key) = start(&d);

    let session = connect(&s, &key);
    assert_eq!(
        (session["status"].as_str(), session["account"].as_str()),
        (Some("completed"), Some("twitchdev")),
        "{session}"
    );
    let token_req = &st.requests_to("/oauth2/token")[0];
    assert!(
        token_req
            .body
            .contains(&format!("client_secret={CLIENT_SECRET}"))
            && token_req.body.contains(&format!("client_id={CLIENT_ID}")),
        "client_secret_post"
    );
    // Validated right after the exchange, with the documented prefix.
    let v = validations(&st);
    assert_eq!(v.len(), 1);
    assert_eq!(
        v[0].header("authorization"),
        Some(format!("OAuth {FIRST}").as_str())
    );

    // Through the proxy, Helix gets the OAuth client's id and the token as Bearer.
    let (status, body) = s.get("/proxy/twitch/users", Some(&key));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"][0]["login"], "twitchdev");
    let helix = st.requests_to("/helix/users");
    let last = helix.last().unwrap();
    assert_eq!(last.header("client-id"), Some(CLIENT_ID));
    assert_eq!(
        last.header("authorization"),
        Some(format!("Bearer {FIRST}").as_str())
    );
    // The context shows the client id in the headers and the direct curl example.
    let (_, ctx) = s.get("/ai/context/twitch/streaming", Some(&key));
    assert_eq!(ctx["data"]["headers"]["Client-Id"], CLIENT_ID, "{ctx}");
    let curl = ctx["data"]["examples"][0]["curl"].as_str().unwrap();
    assert!(
        curl.contains(&format!("-H \"Client-Id: {CLIENT_ID}\""))
            && curl.contains("Authorization: Bearer"),
        "{curl}"
    );

    // At start: an owner restarted over the same vault validates the stored connection.
    let before = validations(&st).len();
    s.stop();
    let s = Server::start(&d);
    wait_for("the validation at start", 15, || {
        validations(&st).len() > before
    });
    assert_eq!(
        validations(&st).last().unwrap().header("authorization"),
        Some(format!("OAuth {FIRST}").as_str())
    );
    assert_eq!(status_of(&s), "connected");
    s.stop();
}

#[test]
fn a_service_header_that_cannot_be_filled_refuses_the_call() {
    let st = StandIn::start(|_| (200, "application/json", "{}".into()));
    let d = Dirs::new();
    write_provider_file(
        &d,
        "60-teamapi",
        &format!(
            r#"[providers.teamapi]
name = "Team API"
auth = "api_key"

[[providers.teamapi.fields]]
name = "team"
label = "Team"
secret = false
optional = true

[[providers.teamapi.fields]]
name = "apiKey"
label = "API key"
token = true

[[providers.teamapi.services]]
code = "api"
name = "API"
base_url = "{}"
headers = {{ "X-Team" = "{{team}}" }}
"#,
            st.url("/api")
        ),
    );
    let s = Server::start(&d);
    let key = s.create_key("bot", &["*"]);
    s.add("teamapi", None, json!({"apiKey": "team-api-key-0001"}));
    let (status, v) = s.get("/proxy/teamapi/things", Some(&key));
    assert_eq!((status, code(&v)), (400, "BAD_REQUEST"), "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("X-Team") && msg.contains("`team`"), "{msg}");
    assert!(st.requests().is_empty(), "nothing went upstream");
    s.stop();
}

#[test]
fn validation_repeats_survives_an_outage_refreshes_an_expired_token_and_marks_a_refused_one() {
    register_secrets();
    // The first token lives 2 s; validation runs every second.
    let (st, tw) = stand_in(2);
    let d = Dirs::new();
    override_twitch(&d, &st, 1);
    let (s, key) = start(&d);
    assert_eq!(connect(&s, &key)["account"], "twitchdev");

    // Periodically, and a token our records say has expired is refreshed first (Twitch would
    // refuse it), so the connection is not marked.
    wait_for("a validation of the refreshed token", 20, || {
        validations(&st)
            .iter()
            .any(|r| r.header("authorization") == Some(format!("OAuth {SECOND}").as_str()))
    });
    let refreshes = st
        .requests_to("/oauth2/token")
        .iter()
        .filter(|r| r.body.contains("grant_type=refresh_token"))
        .count();
    assert_eq!(refreshes, 1);
    assert_eq!(status_of(&s), "connected");
    let n = validations(&st).len();
    wait_for("two more rounds", 10, || validations(&st).len() >= n + 2);

    // An outage (503) changes nothing; validation goes on.
    tw.lock().unwrap().outage = true;
    let n = validations(&st).len();
    wait_for("rounds during the outage", 10, || {
        validations(&st).len() >= n + 2
    });
    assert_eq!(status_of(&s), "connected");
    let (status, v) = s.post("/tokens/fetch", Some(&key), &json!({"provider": "twitch"}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["accessToken"], SECOND);
    tw.lock().unwrap().outage = false;

    // The user disconnects the app at Twitch: every token is invalid; the next round marks it.
    tw.lock().unwrap().valid.clear();
    wait_for("needs_reconnect", 10, || status_of(&s) == "needs_reconnect");
    let o = s.cli(&["status", "--json"], None);
    let list: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let conn = list
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["kind"] == "connection" && x["provider"] == "twitch")
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(conn["status"], "needs_reconnect", "{conn}");
    let log = s.admin_get("/admin/audit?action=refresh");
    let entry = log
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["outcome"] == "needs_reconnect")
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(entry["provider"], "twitch");
    assert_eq!(entry["account"], "twitchdev");
    assert!(
        entry["detail"]
            .as_str()
            .unwrap()
            .contains("validation endpoint"),
        "{entry}"
    );
    assert!(
        !log.to_string().contains("twitch_access_token"),
        "no secret in the audit log"
    );
    let (status, v) = s.post("/tokens/fetch", Some(&key), &json!({"provider": "twitch"}));
    assert_eq!((status, code(&v)), (400, "TOKEN_EXPIRED"), "{v}");
    // A connection known to need reconnecting is not validated again.
    let n = validations(&st).len();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(validations(&st).len(), n);
    s.stop();
}

#[test]
fn a_token_refused_at_connect_stores_nothing() {
    register_secrets();
    // The token the exchange hands out is already invalid when it is validated.
    let (st, _) = stand_in(0);
    let d = Dirs::new();
    override_twitch(&d, &st, 3600);
    let (s, key) = start(&d);
    let (id, url) = s.oauth_start(&key, "twitch");
    let state = param(&url, "state").unwrap();
    let (status, page) = s.get(&format!("/oauth/callback?code=twcode&state={state}"), None);
    assert_eq!(status, 400, "{page}");
    let v = s.oauth_session(&key, &id);
    assert_eq!(v["status"], "failed", "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("validation endpoint"),
        "{v}"
    );
    assert_eq!(validations(&st).len(), 1);
    assert_eq!(s.admin_get("/admin/connections"), json!([]));
    s.stop();
}
