//! The approval prompt's IPC commands on Tauri's mock runtime, with the app's real context (its
//! capabilities and ACL manifest) and a real owner: an agent's `POST /tokens/fetch` waits on a
//! prompt, and answering it through `answer_approval` from the prompt window completes that HTTP
//! request. A window without the prompt capability, and a remote page even in the prompt
//! window, are refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{INVOKE_KEY, MockRuntime, get_ipc_response, mock_builder};
use tauri::webview::InvokeRequest;
use tauri::{App, WebviewUrl, WebviewWindow, WebviewWindowBuilder};

use akhrot_core::SecretString;
use akhrot_core::paths::Paths;
use akhrot_core::vault::Unlock;
use akhrot_desktop::{Core, context, handler};
use akhrot_server::{AppState, Owner, OwnerOptions, actions};

struct Env {
    rt: tokio::runtime::Runtime,
    state: Arc<AppState>,
    stop: tokio::sync::watch::Sender<bool>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Env {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let owner = rt
            .block_on(Owner::start(OwnerOptions {
                paths: Paths {
                    data_dir: dir.path().join("data"),
                    config_dir: dir.path().join("config"),
                },
                port: 0,
                // A passphrase vault: this test is about IPC, not the keyring (the e2e test uses
                // the real keyring).
                unlock: Unlock::Passphrase(SecretString::new("ipc-test-passphrase".into())),
                rate_limit_per_min: 0,
                approval_timeout: Duration::from_secs(60),
                provider_timeout: Duration::from_secs(5),
                limits: Default::default(),
            }))
            .unwrap();
        let state = owner.state();
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let served = rt.spawn(owner.serve(async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        let openai = state.catalog.get("openai").unwrap().clone();
        let mut fields = BTreeMap::new();
        fields.insert("apiKey".to_owned(), SecretString::new("sk-ipc-test".into()));
        state
            .vault
            .put_key_connection(&openai, "default", fields)
            .unwrap();
        Self {
            rt,
            state,
            stop,
            served: Some(served),
            _dir: dir,
        }
    }

    fn agent(&self, name: &str) -> String {
        let (_, key) = self.state.vault.create_agent(name, &[], false).unwrap();
        key.expose().to_owned()
    }

    /// An agent's token request in the background: (status, body) once it is answered.
    fn fetch(&self, key: &str) -> std::thread::JoinHandle<(u16, Value)> {
        let url = format!("{}/tokens/fetch", self.state.base_url);
        let auth = format!("Bearer {key}");
        std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(60)))
                .build()
                .into();
            let mut r = agent
                .post(&url)
                .header("Authorization", &auth)
                .send_json(json!({"provider": "openai", "reason": "summarise my mail"}))
                .unwrap();
            let status = r.status().as_u16();
            let body = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
            (status, body)
        })
    }

    fn wait_pending(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while actions::pending_count(&self.state) != n {
            assert!(Instant::now() < deadline, "expected {n} pending approvals");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        if let Some(h) = self.served.take() {
            let _ = self.rt.block_on(h);
        }
    }
}

fn app(
    state: &Arc<AppState>,
) -> (
    App<MockRuntime>,
    WebviewWindow<MockRuntime>,
    WebviewWindow<MockRuntime>,
) {
    let app = mock_builder()
        .manage(Core::new(state.clone()))
        .invoke_handler(handler())
        .build(context())
        .unwrap();
    let prompt = WebviewWindowBuilder::new(&app, "prompt", WebviewUrl::App("prompt.html".into()))
        .build()
        .unwrap();
    let main = WebviewWindowBuilder::new(&app, "main", WebviewUrl::App("index.html".into()))
        .build()
        .unwrap();
    (app, prompt, main)
}

fn invoke_from(
    w: &WebviewWindow<MockRuntime>,
    url: &str,
    cmd: &str,
    args: Value,
) -> Result<Value, Value> {
    get_ipc_response(
        w,
        InvokeRequest {
            cmd: cmd.into(),
            callback: CallbackFn(0),
            error: CallbackFn(1),
            url: url.parse().unwrap(),
            body: InvokeBody::Json(args),
            headers: Default::default(),
            invoke_key: INVOKE_KEY.to_string(),
        },
    )
    .map(|b| b.deserialize::<Value>().unwrap())
}

fn invoke(w: &WebviewWindow<MockRuntime>, cmd: &str, args: Value) -> Result<Value, Value> {
    invoke_from(w, "tauri://localhost", cmd, args)
}

#[test]
fn the_prompt_window_lists_and_answers_approvals_and_no_other_window_can() {
    let env = Env::start();
    let (_app, prompt, main) = app(&env.state);
    let bot = env.agent("bot");
    let other = env.agent("other-bot");

    // Nothing waits yet.
    assert_eq!(
        invoke(&prompt, "pending_approvals", json!({})),
        Ok(json!([]))
    );

    // Approve: the agent's waiting HTTP request gets its token.
    let waiting = env.fetch(&bot);
    env.wait_pending(1);
    let list = invoke(&prompt, "pending_approvals", json!({})).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let p = &list[0];
    assert_eq!(p["agent"], "bot");
    assert_eq!(p["provider"], "openai");
    assert_eq!(p["providerName"], "OpenAI");
    assert_eq!(p["reason"], "summarise my mail");
    let id = p["id"].as_str().unwrap().to_owned();

    // The main window (no capability) can neither list nor answer; nor can a remote page loaded
    // in the prompt window itself. The request keeps waiting.
    for (w, url) in [
        (&main, "tauri://localhost"),
        (&prompt, env.state.base_url.as_str()),
    ] {
        let refused = invoke_from(w, url, "pending_approvals", json!({}));
        assert!(
            refused.is_err(),
            "listing from {url} in {} was allowed",
            w.label()
        );
        let refused = invoke_from(
            w,
            url,
            "answer_approval",
            json!({"id": id, "answer": "once"}),
        );
        let err = refused.expect_err("answering without the capability was allowed");
        assert!(
            err.to_string().contains("not allowed"),
            "refused for another reason: {err}"
        );
    }
    assert_eq!(actions::pending_count(&env.state), 1, "still waiting");
    assert!(!waiting.is_finished());

    let answered = invoke(
        &prompt,
        "answer_approval",
        json!({"id": id, "answer": "once"}),
    )
    .unwrap();
    assert_eq!(answered["answer"], "once");
    assert_eq!(answered["approval"]["id"], id.as_str());
    let (status, body) = waiting.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["accessToken"], "sk-ipc-test");
    assert_eq!(actions::pending_count(&env.state), 0);

    // Answering twice: the core says it is gone.
    let again = invoke(
        &prompt,
        "answer_approval",
        json!({"id": id, "answer": "once"}),
    )
    .unwrap_err();
    assert_eq!(again["code"], "NOT_FOUND", "{again}");

    // Deny: the agent gets APPROVAL_DENIED.
    let waiting = env.fetch(&bot);
    env.wait_pending(1);
    let id = actions::pending(&env.state)[0].id.clone();
    let bad = invoke(
        &prompt,
        "answer_approval",
        json!({"id": id, "answer": "maybe"}),
    )
    .unwrap_err();
    assert_eq!(bad["code"], "BAD_REQUEST", "{bad}");
    let answered = invoke(
        &prompt,
        "answer_approval",
        json!({"id": id, "answer": "deny"}),
    )
    .unwrap();
    assert_eq!(answered["answer"], "deny");
    let (status, body) = waiting.join().unwrap();
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "APPROVAL_DENIED");

    // Pending count: two agents wait at once; the list has both, oldest first, and "allow for
    // an hour" also lets the next request through without a prompt (the policy changed).
    let first = env.fetch(&bot);
    env.wait_pending(1);
    let second = env.fetch(&other);
    env.wait_pending(2);
    let list = invoke(&prompt, "pending_approvals", json!({})).unwrap();
    let agents: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["agent"].as_str().unwrap())
        .collect();
    assert_eq!(agents.len(), 2, "{list}");
    assert!(
        agents.contains(&"bot") && agents.contains(&"other-bot"),
        "{list}"
    );
    for p in list.as_array().unwrap() {
        let answer = if p["agent"] == "bot" { "hour" } else { "deny" };
        invoke(
            &prompt,
            "answer_approval",
            json!({"id": p["id"], "answer": answer}),
        )
        .unwrap();
    }
    assert_eq!(first.join().unwrap().0, 200);
    assert_eq!(second.join().unwrap().0, 403);
    assert_eq!(actions::pending_count(&env.state), 0);
    let (status, body) = env.fetch(&bot).join().unwrap();
    assert_eq!(status, 200, "allowed for an hour, no prompt: {body}");
    assert_eq!(actions::pending_count(&env.state), 0);
}

#[test]
fn quitting_denies_what_still_waits() {
    let env = Env::start();
    let bot = env.agent("bot");
    let waiting = env.fetch(&bot);
    env.wait_pending(1);
    let started = Instant::now();
    let mut env = env;
    env.stop.send_replace(true);
    let served = env.served.take().unwrap();
    env.rt.block_on(served).unwrap().unwrap();
    let (status, body) = waiting.join().unwrap();
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "APPROVAL_DENIED");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the shutdown did not wait for the 60 s prompt timeout"
    );
    let denials = env
        .state
        .audit
        .query(&akhrot_core::audit::Filter {
            action: Some(akhrot_core::audit::Action::Approval),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert!(
        denials
            .iter()
            .any(|e| e.outcome.to_string() == "deny"
                && e.detail.as_deref() == Some("Akhrot shut down")),
        "the shutdown denial is audited: {denials:?}"
    );
}
