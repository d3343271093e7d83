//! The one place that decides whether an agent may act on a provider right now: "pause all
//! agents", the agent's policy, and (under `ask`) the user's answer to a prompt. `/tokens/fetch`
//! and `/proxy/…` call [`authorize`] (which first requires the connection to exist);
//! `POST /oauth/sessions` calls [`authorize_connect`] (there is no connection yet to require).
//!
//! Policy `proxy-only` refuses `/tokens/fetch` (the agent would hold the credential) and lets
//! proxied calls through without a prompt: the user chose to let this agent use the provider,
//! only never to see its credential. Answering a proxied call's prompt with "for a while",
//! "until quit" or "always" grants proxied calls only, never token hand-outs. A consent
//! session's prompt is only ever allowed once (see `Answer::for_kind`).

use std::sync::atomic::Ordering;

use akhrot_core::approvals::{Ask, AskError, AskKind, Outcome};
use akhrot_core::audit::{self, Action, Entry};
use akhrot_core::catalog::Provider;
use akhrot_core::now_unix;
use akhrot_core::vault::{Agent, Mode};

use crate::error::{ApiError, Code};
use crate::state::AppState;

/// What an allowed request carries on: the calling process, when the prompt looked it up.
#[derive(Debug, Default)]
pub struct Granted {
    pub peer: Option<serde_json::Value>,
}

/// Decides whether `agent` may use `provider` (`account`, or its only/default one).
///
/// `request` is `Some("METHOD https://host/path")` for a proxied call (shown in the prompt,
/// part of what makes two prompts identical, and audited under action `proxy`), `None` for a
/// token hand-out (audited under action `token`). Denials, timeouts and pauses are audited
/// here; the caller audits what it then does.
pub async fn authorize(
    state: &AppState,
    agent: &Agent,
    provider: &Provider,
    account: Option<&str>,
    reason: Option<String>,
    request: Option<String>,
    peer_addr: std::net::SocketAddr,
) -> Result<Granted, ApiError> {
    // Not connected is answered before policy: there is nothing to approve.
    state.vault.require_connection(&provider.code, account)?;
    let what = What {
        kind: if request.is_some() {
            AskKind::Proxy
        } else {
            AskKind::Token
        },
        account: account.map(str::to_owned),
        // Read from the connection only if a prompt is shown (the hot path never needs it).
        asked: None,
        reason,
        request,
    };
    decide(state, agent, provider, what, peer_addr).await
}

/// Decides whether `agent` may start a consent session for `provider` (`POST /oauth/sessions`),
/// asking for the label `account` (if any) and `scopes`. Audited under action `connect`.
///
/// Policy `proxy-only` allows it without a prompt: a consent session never hands the agent a
/// token (it only ever sees the session's status and the account label), so the person's
/// "use it, never see it" still holds; what the agent then does with the new connection goes
/// through [`authorize`] like any other use.
pub async fn authorize_connect(
    state: &AppState,
    agent: &Agent,
    provider: &Provider,
    account: Option<&str>,
    scopes: &[String],
    peer_addr: std::net::SocketAddr,
) -> Result<Granted, ApiError> {
    let what = What {
        kind: AskKind::Connect,
        account: account.map(str::to_owned),
        asked: Some((account.unwrap_or_default().to_owned(), scopes.to_vec())),
        reason: None,
        request: None,
    };
    decide(state, agent, provider, what, peer_addr).await
}

/// What an agent asks to do, as the decision, the prompt and the audit log see it.
struct What {
    kind: AskKind,
    /// The account the agent named (audited).
    account: Option<String>,
    /// For a consent session, the label (may be empty) and scopes asked for, which the prompt
    /// shows; `None` for token and proxy requests, whose prompt shows the connection's.
    asked: Option<(String, Vec<String>)>,
    reason: Option<String>,
    /// Method and URL of a proxied call.
    request: Option<String>,
}

impl What {
    fn action(&self) -> Action {
        match self.kind {
            AskKind::Token => Action::Token,
            AskKind::Proxy => Action::Proxy,
            AskKind::Connect => Action::Connect,
        }
    }

    /// "use GitHub" / "connect GitHub", for messages.
    fn verb(&self, provider: &Provider) -> String {
        match self.kind {
            AskKind::Connect => format!("connect {}", provider.name),
            AskKind::Token | AskKind::Proxy => format!("use {}", provider.name),
        }
    }
}

/// Pause, policy, and under `ask` the person's answer: shared by every kind of request.
async fn decide(
    state: &AppState,
    agent: &Agent,
    provider: &Provider,
    what: What,
    peer_addr: std::net::SocketAddr,
) -> Result<Granted, ApiError> {
    // Denials say why; proxied ones also say which call (method and URL, no query values).
    let audit = |outcome: audit::Outcome, why: &str| {
        let e = Entry::new(what.action(), outcome)
            .agent(&agent.id, &agent.name)
            .provider(&provider.code)
            .account(what.account.as_deref());
        match (&what.request, why.is_empty()) {
            (Some(r), true) => e.detail(r.clone()),
            (Some(r), false) => e.detail(format!("{r} ({why})")),
            (None, true) => e,
            (None, false) => e.detail(why),
        }
    };
    if state.paused.load(Ordering::Relaxed) {
        state
            .audit
            .record(audit(audit::Outcome::Denied, "agents are paused"));
        return Err(ApiError::new(
            Code::ApprovalDenied,
            "the user has paused all agents; try again later",
        ));
    }
    let mode = state
        .vault
        .policy_for(&agent.id, &provider.code)
        .effective(now_unix());
    match (mode, what.kind) {
        (Mode::Allow, _) => Ok(Granted::default()),
        // See `authorize_connect` for why a consent session is allowed under proxy-only.
        (Mode::ProxyOnly, AskKind::Proxy | AskKind::Connect) => Ok(Granted::default()),
        (Mode::ProxyOnly, AskKind::Token) => {
            state
                .audit
                .record(audit(audit::Outcome::Denied, "policy proxy-only"));
            Err(ApiError::new(
                Code::ApprovalDenied,
                format!(
                    "agent `{}` may use {} only through the proxy, never holding its token: call {}/proxy/{}/<path> with your agent key (the credential is added for you); GET /ai/skill explains",
                    agent.name, provider.name, state.base_url, provider.code
                ),
            ))
        }
        (Mode::Deny, _) => {
            state
                .audit
                .record(audit(audit::Outcome::Denied, "policy deny"));
            Err(ApiError::new(
                Code::ApprovalDenied,
                format!(
                    "the user does not allow agent `{}` to {}",
                    agent.name,
                    what.verb(provider)
                ),
            ))
        }
        // "Until quit" on a proxied call's prompt stands for proxy-only, on a token prompt for
        // allow: either way it covers a consent session, as those policies do.
        (Mode::Ask, kind)
            if state.approvals.allowed_until_quit(
                &agent.id,
                &provider.code,
                kind != AskKind::Token,
            ) =>
        {
            Ok(Granted::default())
        }
        (Mode::Ask, _) => ask(state, agent, provider, &what, peer_addr, audit).await,
    }
}

/// Prompts the person and waits for the answer.
async fn ask(
    state: &AppState,
    agent: &Agent,
    provider: &Provider,
    what: &What,
    peer_addr: std::net::SocketAddr,
    audit: impl Fn(audit::Outcome, &str) -> Entry,
) -> Result<Granted, ApiError> {
    let peer = Some(peer_json(state.port, peer_addr).await);
    let (prompt_account, scopes) = match &what.asked {
        Some(asked) => asked.clone(),
        None => state
            .vault
            .find_connection(&provider.code, what.account.as_deref())
            .map(|c| (c.account, c.scopes))
            .unwrap_or_default(),
    };
    let ask = Ask {
        kind: what.kind,
        agent_id: agent.id.clone(),
        agent: agent.name.clone(),
        provider: provider.code.clone(),
        provider_name: provider.name.clone(),
        account: prompt_account,
        scopes,
        reason: what.reason.clone(),
        peer: peer.clone(),
        request: what.request.clone(),
    };
    match state.approvals.ask(ask).await {
        Ok(Outcome::Answered(a)) if a.allows() => Ok(Granted { peer }),
        Ok(Outcome::Answered(_)) => {
            state
                .audit
                .record(audit(audit::Outcome::Denied, "denied by the user").peer(peer));
            Err(ApiError::new(
                Code::ApprovalDenied,
                match what.kind {
                    AskKind::Connect => format!(
                        "the user denied agent `{}` a consent session for {}",
                        agent.name, provider.name
                    ),
                    AskKind::Token | AskKind::Proxy => format!(
                        "the user denied agent `{}` access to {}",
                        agent.name, provider.name
                    ),
                },
            ))
        }
        Ok(Outcome::Closed) => {
            state
                .audit
                .record(audit(audit::Outcome::Denied, "Akhrot shut down").peer(peer));
            Err(ApiError::new(
                Code::ApprovalDenied,
                "Akhrot is shutting down, so nobody can answer the approval prompt; retry once it runs again",
            ))
        }
        Ok(Outcome::TimedOut) => {
            state
                .audit
                .record(audit(audit::Outcome::Timeout, "").peer(peer));
            Err(ApiError::new(
                Code::ApprovalTimeout,
                format!(
                    "nobody answered the approval prompt within {} s; ask the user to look at Akhrot, then retry",
                    state.approvals.timeout().as_secs()
                ),
            ))
        }
        Err(AskError::TooManyPending { agent, max }) => {
            let mut e = ApiError::new(
                Code::RateLimited,
                format!(
                    "agent `{agent}` already has {max} approval prompts waiting; wait for the user to answer them"
                ),
            );
            e.retry_after = Some(10);
            Err(e)
        }
    }
}

/// What the OS says about the processes at the other end of an agent's connection, as JSON
/// for the prompt and the audit log: an [`akhrot_core::peer::Peer`] (`verified`, `note`,
/// `processes`), never null: when nothing is known its note says so.
pub async fn peer_json(port: u16, peer: std::net::SocketAddr) -> serde_json::Value {
    let local = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port));
    // Bounded: reading another process's /proc entries can block on its memory lock; a prompt
    // that says "unknown process" is better than one that comes late.
    let found = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        tokio::task::spawn_blocking(move || akhrot_core::peer::identify(local, peer)),
    )
    .await;
    let answer = match found {
        Ok(Ok(p)) => p,
        Ok(Err(_)) => akhrot_core::peer::Peer::unknown(akhrot_core::peer::NOTE_UNKNOWN),
        Err(_) => {
            tracing::warn!(
                "identifying the calling process took over 500 ms; the prompt says unknown"
            );
            akhrot_core::peer::Peer::unknown("the OS took too long to say which process this is")
        }
    };
    serde_json::to_value(answer).unwrap_or_else(|_| {
        serde_json::json!({ "verified": false, "note": akhrot_core::peer::NOTE_UNKNOWN, "processes": [] })
    })
}
