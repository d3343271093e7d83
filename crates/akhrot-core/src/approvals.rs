//! Pending approvals: a token request, proxied call or consent session under an `ask` policy
//! waits here until the user answers, the prompt times out, or the agent goes away.
//!
//! Two identical requests from one agent (same kind, provider, account, reason, calling
//! processes and, for proxied calls, the same method and URL) share one prompt: the prompt shows
//! one reason and one caller, so "Allow once" releases only requests the person saw; requests of
//! different kinds never share one. An
//! agent may have only [`MAX_PENDING_PER_AGENT`] prompts open at once, so no agent can flood
//! the user. When every waiter of a prompt has gone (the agent disconnected), the prompt is
//! withdrawn.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::text::random_hex;

/// Prompts one agent may have open at once.
pub const MAX_PENDING_PER_AGENT: usize = 3;

/// The user's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Answer {
    Deny,
    /// This request only.
    Once,
    /// This and later requests for the given time.
    For(u64),
    /// Until the owner process stops.
    UntilQuit,
    /// From now on (the policy becomes `allow`).
    Always,
}

impl Answer {
    pub fn allows(self) -> bool {
        self != Answer::Deny
    }

    /// The answer as it applies to a prompt of `kind`: a consent session is allowed once at
    /// most. "For a while", "until quit" and "always" on a `connect` prompt would otherwise
    /// grant token hand-outs or proxied calls the person never saw asked for.
    pub fn for_kind(self, kind: AskKind) -> Self {
        match kind {
            AskKind::Connect if self.allows() => Answer::Once,
            _ => self,
        }
    }

    /// Parses `deny`, `once`, `hour`, `quit`, `always`, or `for:<seconds>`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "deny" => Some(Answer::Deny),
            "once" | "allow" => Some(Answer::Once),
            "hour" => Some(Answer::For(3600)),
            "quit" | "until_quit" => Some(Answer::UntilQuit),
            "always" => Some(Answer::Always),
            _ => s
                .strip_prefix("for:")
                .and_then(|n| n.parse().ok())
                .filter(|n| *n > 0)
                .map(Answer::For),
        }
    }

    /// The answer as a request names it, for [`Answer::parse`]: `deny`, `once`, `for:<seconds>`,
    /// `quit`, `always`.
    pub fn request_word(self) -> String {
        match self {
            Answer::Deny => "deny".into(),
            Answer::Once => "once".into(),
            Answer::For(s) => format!("for:{s}"),
            Answer::UntilQuit => "quit".into(),
            Answer::Always => "always".into(),
        }
    }

    /// Parses the shown form, [`Answer::as_str`]: `deny`, `once`, `for <n>s`, `until quit`,
    /// `always`.
    pub fn parse_shown(s: &str) -> Option<Self> {
        match s {
            "deny" => Some(Answer::Deny),
            "once" => Some(Answer::Once),
            "until quit" => Some(Answer::UntilQuit),
            "always" => Some(Answer::Always),
            _ => s
                .strip_prefix("for ")
                .and_then(|r| r.strip_suffix('s'))
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse().ok())
                .map(Answer::For),
        }
    }

    /// The answer as shown and audited: `deny`, `once`, `for <n>s`, `until quit`, `always`.
    pub fn as_str(self) -> String {
        match self {
            Answer::Deny => "deny".into(),
            Answer::Once => "once".into(),
            Answer::For(s) => format!("for {s}s"),
            Answer::UntilQuit => "until quit".into(),
            Answer::Always => "always".into(),
        }
    }
}

/// What the prompt shows: the request, and the prompt's own facts.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Prompt {
    pub id: String,
    #[serde(flatten)]
    pub ask: Ask,
    /// Unix seconds.
    pub created_at: i64,
    pub expires_at: i64,
    /// Requests waiting on this prompt.
    pub waiting: usize,
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Answered(Answer),
    TimedOut,
    /// The owner is shutting down: nobody will answer any more.
    Closed,
}

/// Why a request could not even wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AskError {
    TooManyPending { agent: String, max: usize },
}

/// Events for the UI.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Event {
    Created { prompt: Box<Prompt> },
    Resolved { id: String, outcome: String },
}

struct Open {
    prompt: Prompt,
    /// Identical requests share one prompt.
    key: JoinKey,
    answer: watch::Sender<Option<Outcome>>,
}

/// What two requests must share to share a prompt: everything the prompt shows about the
/// request (agent id, provider, account, proxied call, reason) and the calling processes (their
/// pids as the OS named them; two unknown callers are the same).
#[derive(Debug, Clone, PartialEq, Eq)]
struct JoinKey {
    agent_id: String,
    kind: AskKind,
    provider: String,
    account: String,
    request: Option<String>,
    reason: Option<String>,
    callers: Vec<u64>,
}

impl JoinKey {
    fn of(ask: &Ask) -> Self {
        let mut callers: Vec<u64> = ask
            .peer
            .as_ref()
            .and_then(|p| p["processes"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|p| p["pid"].as_u64())
            .collect();
        callers.sort_unstable();
        Self {
            agent_id: ask.agent_id.clone(),
            kind: ask.kind,
            provider: ask.provider.clone(),
            account: ask.account.clone(),
            request: ask.request.clone(),
            reason: ask.reason.clone(),
            callers,
        }
    }
}

#[derive(Default)]
struct State {
    open: HashMap<String, Open>,
    /// (agent id, provider) allowed until the process stops; `true`: for proxied calls only
    /// (the user answered a proxied call's prompt).
    until_quit: HashMap<(String, String), bool>,
    /// Set by [`Approvals::close`]: no new prompt opens.
    closed: bool,
}

pub struct Approvals {
    state: Mutex<State>,
    /// Milliseconds; the Settings page can change it while requests wait.
    timeout_ms: AtomicU64,
    events: broadcast::Sender<Event>,
}

/// What kind of request a prompt is about (JSON `"token"`, `"proxy"`, `"connect"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AskKind {
    /// `POST /tokens/fetch`: the agent would receive the credential.
    Token,
    /// A call through `/proxy/…`: the credential is added for the agent, never shown to it.
    Proxy,
    /// `POST /oauth/sessions`: the agent wants a consent session that adds a connection.
    /// Only ever answered once: a broad answer grants nothing beyond this one session.
    Connect,
}

/// What a request needs approved.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ask {
    pub kind: AskKind,
    pub agent_id: String,
    pub agent: String,
    pub provider: String,
    pub provider_name: String,
    /// The connection's account; for `connect`, the label the agent asked for (empty: none).
    pub account: String,
    /// The connection's scopes; for `connect`, the scopes the agent asked for.
    pub scopes: Vec<String>,
    pub reason: Option<String>,
    /// What the OS says about the calling processes (not what the agent claims): a
    /// [`crate::peer::Peer`] as JSON (`verified`, `note`, `processes`).
    pub peer: Option<serde_json::Value>,
    /// Method and path, for proxied calls.
    pub request: Option<String>,
}

impl Approvals {
    pub fn new(timeout: Duration) -> Arc<Self> {
        let (events, _) = broadcast::channel(256);
        Arc::new(Self {
            state: Mutex::new(State::default()),
            timeout_ms: AtomicU64::new(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)),
            events,
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.load(Ordering::Relaxed))
    }

    /// Sets how long requests that ask from now on wait.
    pub fn set_timeout(&self, timeout: Duration) {
        self.timeout_ms.store(
            u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Whether the user chose "until I quit" for this agent and provider, for this kind of
    /// request (`proxied`: a call through the proxy; else a token hand-out). An answer given to
    /// a proxied call's prompt covers proxied calls only.
    pub fn allowed_until_quit(&self, agent_id: &str, provider: &str, proxied: bool) -> bool {
        match self
            .state()
            .until_quit
            .get(&(agent_id.to_owned(), provider.to_owned()))
        {
            Some(proxy_only) => proxied || !proxy_only,
            None => false,
        }
    }

    /// How many prompts are open.
    pub fn pending_count(&self) -> usize {
        self.state().open.len()
    }

    /// Open prompts, oldest first.
    pub fn pending(&self) -> Vec<Prompt> {
        let mut v: Vec<Prompt> = self
            .state()
            .open
            .values()
            .map(|o| o.prompt.clone())
            .collect();
        v.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        v
    }

    /// Waits for the user's answer to `ask` (joining an identical open prompt of the same agent:
    /// same provider, account, request, reason and calling processes).
    /// If the returned future is dropped (the agent disconnected) and nobody else waits on the
    /// prompt, the prompt is withdrawn.
    pub async fn ask(self: &Arc<Self>, ask: Ask) -> Result<Outcome, AskError> {
        let key = JoinKey::of(&ask);
        let (id, mut rx) = {
            let mut st = self.state();
            if st.closed {
                return Ok(Outcome::Closed);
            }
            if let Some(open) = st.open.values_mut().find(|o| o.key == key) {
                open.prompt.waiting += 1;
                (open.prompt.id.clone(), open.answer.subscribe())
            } else {
                let of_agent = st
                    .open
                    .values()
                    .filter(|o| o.key.agent_id == key.agent_id)
                    .count();
                if of_agent >= MAX_PENDING_PER_AGENT {
                    return Err(AskError::TooManyPending {
                        agent: ask.agent.clone(),
                        max: MAX_PENDING_PER_AGENT,
                    });
                }
                let now = crate::now_unix();
                let id = format!("apr_{}", random_hex(8));
                let prompt = Prompt {
                    id: id.clone(),
                    ask,
                    created_at: now,
                    expires_at: now + i64::try_from(self.timeout().as_secs()).unwrap_or(120),
                    waiting: 1,
                };
                let (tx, rx) = watch::channel(None);
                let _ = self.events.send(Event::Created {
                    prompt: Box::new(prompt.clone()),
                });
                st.open.insert(
                    id.clone(),
                    Open {
                        prompt,
                        key,
                        answer: tx,
                    },
                );
                (id, rx)
            }
        };
        let guard = Waiter {
            approvals: self.clone(),
            id: id.clone(),
        };
        let result = tokio::time::timeout(self.timeout(), rx.wait_for(Option::is_some)).await;
        let outcome = match result {
            Ok(Ok(outcome)) => outcome.unwrap_or(Outcome::Answered(Answer::Deny)),
            Ok(Err(_)) => Outcome::Answered(Answer::Deny),
            Err(_) => {
                self.resolve(&id, "timeout");
                Outcome::TimedOut
            }
        };
        drop(guard);
        Ok(outcome)
    }

    /// Answers an open prompt; every request waiting on it gets the answer. A `connect` prompt
    /// allowed in any way is allowed [`Answer::Once`] (see [`Answer::for_kind`]).
    pub fn answer(&self, id: &str, answer: Answer) -> Option<Prompt> {
        let (open, answer) = {
            let mut st = self.state();
            let open = st.open.remove(id)?;
            let answer = answer.for_kind(open.prompt.ask.kind);
            if answer == Answer::UntilQuit {
                let proxy_only = open.prompt.ask.kind == AskKind::Proxy;
                st.until_quit
                    .entry((
                        open.prompt.ask.agent_id.clone(),
                        open.prompt.ask.provider.clone(),
                    ))
                    .and_modify(|p| *p = *p && proxy_only)
                    .or_insert(proxy_only);
            }
            (open, answer)
        };
        let _ = open.answer.send(Some(Outcome::Answered(answer)));
        let _ = self.events.send(Event::Resolved {
            id: id.to_owned(),
            outcome: answer.as_str(),
        });
        Some(open.prompt)
    }

    /// At shutdown: ends every open prompt (its requests get [`Outcome::Closed`], which they
    /// answer as a denial) and refuses new ones. Returns the prompts it ended.
    pub fn close(&self) -> Vec<Prompt> {
        let ended: Vec<Open> = {
            let mut st = self.state();
            st.closed = true;
            st.open.drain().map(|(_, o)| o).collect()
        };
        let mut prompts = Vec::with_capacity(ended.len());
        for open in ended {
            let _ = open.answer.send(Some(Outcome::Closed));
            let _ = self.events.send(Event::Resolved {
                id: open.prompt.id.clone(),
                outcome: "shutdown".into(),
            });
            prompts.push(open.prompt);
        }
        prompts.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        prompts
    }

    fn resolve(&self, id: &str, outcome: &str) {
        if self.state().open.remove(id).is_some() {
            let _ = self.events.send(Event::Resolved {
                id: id.to_owned(),
                outcome: outcome.to_owned(),
            });
        }
    }
}

/// One waiting request; when the last one of a prompt goes, the prompt is withdrawn.
struct Waiter {
    approvals: Arc<Approvals>,
    id: String,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let withdraw = {
            let mut st = self.approvals.state();
            match st.open.get_mut(&self.id) {
                Some(o) => {
                    o.prompt.waiting = o.prompt.waiting.saturating_sub(1);
                    o.prompt.waiting == 0
                }
                None => false,
            }
        };
        if withdraw {
            self.approvals.resolve(&self.id, "withdrawn");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(agent: &str, provider: &str) -> Ask {
        Ask {
            kind: AskKind::Token,
            agent_id: agent.into(),
            agent: agent.into(),
            provider: provider.into(),
            provider_name: provider.into(),
            account: "default".into(),
            scopes: vec![],
            reason: Some("because".into()),
            peer: None,
            request: None,
        }
    }

    #[tokio::test]
    async fn identical_requests_share_a_prompt_and_all_get_the_answer() {
        let a = Approvals::new(Duration::from_secs(5));
        let (a1, a2) = (a.clone(), a.clone());
        let w1 = tokio::spawn(async move { a1.ask(ask("bot", "github")).await });
        let w2 = tokio::spawn(async move { a2.ask(ask("bot", "github")).await });
        while a.pending().first().map(|p| p.waiting) != Some(2) {
            tokio::task::yield_now().await;
        }
        assert_eq!(a.pending().len(), 1);
        let id = a.pending()[0].id.clone();
        assert!(a.answer(&id, Answer::Once).is_some());
        assert_eq!(w1.await.unwrap(), Ok(Outcome::Answered(Answer::Once)));
        assert_eq!(w2.await.unwrap(), Ok(Outcome::Answered(Answer::Once)));
        assert!(a.pending().is_empty());
        assert!(a.answer(&id, Answer::Once).is_none(), "answered once");
    }

    /// Requests that differ in what the prompt shows (reason, calling process) never share a
    /// prompt: "Allow once" must release only what the person saw.
    #[tokio::test]
    async fn requests_with_another_reason_or_caller_get_their_own_prompts() {
        let a = Approvals::new(Duration::from_secs(5));
        let peer = |pids: &[u32]| {
            let processes: Vec<_> = pids
                .iter()
                .map(|p| serde_json::json!({ "pid": p }))
                .collect();
            Some(
                serde_json::json!({ "verified": pids.len() == 1, "note": null, "processes": processes }),
            )
        };
        let mut asks = Vec::new();
        let mut base = ask("bot", "github");
        base.peer = peer(&[10]);
        asks.push(base.clone()); // prompt 1
        asks.push(base.clone()); // joins prompt 1
        let mut other_reason = base.clone();
        other_reason.reason = Some("something else".into());
        asks.push(other_reason); // prompt 2
        let mut other_caller = base.clone();
        other_caller.peer = peer(&[10, 11]);
        asks.push(other_caller); // prompt 3
        let mut waiters = Vec::new();
        for x in asks {
            let a = a.clone();
            waiters.push(tokio::spawn(async move { a.ask(x).await }));
        }
        while a.pending().iter().map(|p| p.waiting).sum::<usize>() < 4 {
            tokio::task::yield_now().await;
        }
        let pending = a.pending();
        assert_eq!(pending.len(), 3, "{pending:?}");
        assert_eq!(
            pending.iter().map(|p| p.waiting).max(),
            Some(2),
            "only the identical request joined"
        );
        for p in pending {
            a.answer(&p.id, Answer::Deny);
        }
        for w in waiters {
            assert_eq!(w.await.unwrap(), Ok(Outcome::Answered(Answer::Deny)));
        }
        // Two unknown callers are the same caller.
        let (x, y) = (a.clone(), a.clone());
        let w1 = tokio::spawn(async move { x.ask(ask("bot", "gitlab")).await });
        let w2 = tokio::spawn(async move { y.ask(ask("bot", "gitlab")).await });
        while a.pending().first().map(|p| p.waiting) != Some(2) {
            tokio::task::yield_now().await;
        }
        a.answer(&a.pending()[0].id, Answer::Deny);
        w1.await.unwrap().unwrap();
        w2.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn prompts_per_agent_are_capped_and_time_out() {
        let a = Approvals::new(Duration::from_millis(300));
        let mut waiters = Vec::new();
        for p in ["p1", "p2", "p3"] {
            let a = a.clone();
            waiters.push(tokio::spawn(async move { a.ask(ask("bot", p)).await }));
        }
        while a.pending().len() < 3 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            a.ask(ask("bot", "p4")).await,
            Err(AskError::TooManyPending { .. })
        ));
        let other = a.clone();
        let w = tokio::spawn(async move { other.ask(ask("other", "p1")).await });
        for w in waiters {
            assert_eq!(w.await.unwrap(), Ok(Outcome::TimedOut));
        }
        assert_eq!(
            w.await.unwrap(),
            Ok(Outcome::TimedOut),
            "other agents are not capped by bot"
        );
        assert!(a.pending().is_empty());
    }

    #[tokio::test]
    async fn a_dropped_request_withdraws_its_prompt() {
        let a = Approvals::new(Duration::from_secs(5));
        let mut events = a.subscribe();
        let a1 = a.clone();
        let w = tokio::spawn(async move { a1.ask(ask("bot", "github")).await });
        while a.pending().is_empty() {
            tokio::task::yield_now().await;
        }
        w.abort();
        let _ = w.await;
        assert!(a.pending().is_empty());
        let mut saw_withdrawn = false;
        while let Ok(e) = events.try_recv() {
            if let Event::Resolved { outcome, .. } = e {
                saw_withdrawn |= outcome == "withdrawn";
            }
        }
        assert!(saw_withdrawn);
    }

    #[tokio::test]
    async fn different_proxied_requests_get_their_own_prompts() {
        let a = Approvals::new(Duration::from_secs(5));
        let mut get = ask("bot", "github");
        get.kind = AskKind::Proxy;
        get.request = Some("GET https://api.github.com/user".into());
        let mut del = ask("bot", "github");
        del.kind = AskKind::Proxy;
        del.request = Some("DELETE https://api.github.com/repos/o/r".into());
        let (a1, a2, a3) = (a.clone(), a.clone(), a.clone());
        let g2 = get.clone();
        let w1 = tokio::spawn(async move { a1.ask(get).await });
        let w2 = tokio::spawn(async move { a2.ask(del).await });
        let w3 = tokio::spawn(async move { a3.ask(g2).await });
        while a.pending().iter().map(|p| p.waiting).sum::<usize>() < 3 {
            tokio::task::yield_now().await;
        }
        let pending = a.pending();
        assert_eq!(
            pending.len(),
            2,
            "same request shares, another request does not"
        );
        for p in pending {
            let answer = if p.ask.request.as_deref().unwrap_or("").starts_with("DELETE") {
                Answer::Deny
            } else {
                Answer::Once
            };
            a.answer(&p.id, answer);
        }
        assert_eq!(w1.await.unwrap(), Ok(Outcome::Answered(Answer::Once)));
        assert_eq!(w2.await.unwrap(), Ok(Outcome::Answered(Answer::Deny)));
        assert_eq!(w3.await.unwrap(), Ok(Outcome::Answered(Answer::Once)));
    }

    #[tokio::test]
    async fn until_quit_on_a_proxied_call_covers_proxied_calls_only() {
        let a = Approvals::new(Duration::from_secs(5));
        let mut proxied = ask("bot", "github");
        proxied.kind = AskKind::Proxy;
        proxied.request = Some("GET https://api.github.com/user".into());
        let a1 = a.clone();
        let w = tokio::spawn(async move { a1.ask(proxied).await });
        while a.pending().is_empty() {
            tokio::task::yield_now().await;
        }
        a.answer(&a.pending()[0].id, Answer::UntilQuit);
        assert_eq!(w.await.unwrap(), Ok(Outcome::Answered(Answer::UntilQuit)));
        assert!(a.allowed_until_quit("bot", "github", true));
        assert!(!a.allowed_until_quit("bot", "github", false));
        assert!(!a.allowed_until_quit("bot", "gitlab", true));
        // A token prompt answered the same way covers both.
        let a2 = a.clone();
        let w = tokio::spawn(async move { a2.ask(ask("bot", "github")).await });
        while a.pending().is_empty() {
            tokio::task::yield_now().await;
        }
        a.answer(&a.pending()[0].id, Answer::UntilQuit);
        w.await.unwrap().unwrap();
        assert!(a.allowed_until_quit("bot", "github", false));
    }

    #[tokio::test]
    async fn closing_ends_open_prompts_and_refuses_new_ones() {
        let a = Approvals::new(Duration::from_secs(30));
        let a1 = a.clone();
        let w = tokio::spawn(async move { a1.ask(ask("bot", "github")).await });
        while a.pending_count() == 0 {
            tokio::task::yield_now().await;
        }
        let ended = a.close();
        assert_eq!(ended.len(), 1);
        assert_eq!(w.await.unwrap(), Ok(Outcome::Closed));
        assert_eq!(a.pending_count(), 0);
        assert_eq!(a.ask(ask("bot", "gitlab")).await, Ok(Outcome::Closed));
        assert!(a.pending().is_empty(), "no prompt opens after close");
    }

    #[tokio::test]
    async fn a_connect_prompt_never_joins_a_token_prompt_and_is_only_ever_allowed_once() {
        let a = Approvals::new(Duration::from_secs(5));
        let token = ask("bot", "github");
        let mut connect = ask("bot", "github");
        connect.kind = AskKind::Connect;
        let (a1, a2) = (a.clone(), a.clone());
        let wt = tokio::spawn(async move { a1.ask(token).await });
        let wc = tokio::spawn(async move { a2.ask(connect).await });
        while a.pending().len() < 2 {
            tokio::task::yield_now().await;
        }
        let pending = a.pending();
        let c = pending
            .iter()
            .find(|p| p.ask.kind == AskKind::Connect)
            .unwrap();
        assert_eq!(
            serde_json::to_value(c).unwrap()["kind"],
            "connect",
            "the prompt's JSON names its kind"
        );
        for broad in [Answer::Always, Answer::UntilQuit, Answer::For(3600)] {
            assert_eq!(broad.for_kind(AskKind::Connect), Answer::Once);
            assert_eq!(broad.for_kind(AskKind::Token), broad);
        }
        assert_eq!(Answer::Deny.for_kind(AskKind::Connect), Answer::Deny);
        a.answer(&c.id, Answer::UntilQuit);
        assert_eq!(wc.await.unwrap(), Ok(Outcome::Answered(Answer::Once)));
        assert!(
            !a.allowed_until_quit("bot", "github", true),
            "a connect answer grants nothing else"
        );
        assert_eq!(a.pending().len(), 1, "the token prompt still waits");
        assert_eq!(a.pending()[0].ask.kind, AskKind::Token);
        a.answer(&a.pending()[0].id, Answer::Deny);
        assert_eq!(wt.await.unwrap(), Ok(Outcome::Answered(Answer::Deny)));
    }

    #[test]
    fn answers_parse() {
        assert_eq!(Answer::parse("hour"), Some(Answer::For(3600)));
        assert_eq!(Answer::parse("for:60"), Some(Answer::For(60)));
        assert_eq!(Answer::parse("for:0"), None);
        assert_eq!(Answer::parse("maybe"), None);
    }
}
