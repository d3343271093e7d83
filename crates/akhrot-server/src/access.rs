//! The one place that decides whether an agent may use a provider's credential right now:
//! connection present, "pause all agents", the agent's policy, and (under `ask`) the user's
//! answer to a prompt. `/tokens/fetch` and `/proxy/…` both call [`authorize`].
//!
//! Policy `proxy-only` refuses `/tokens/fetch` (the agent would hold the credential) and lets
//! proxied calls through without a prompt: the user chose to let this agent use the provider,
//! only never to see its credential. Answering a proxied call's prompt with "for a while",
//! "until quit" or "always" grants proxied calls only, never token hand-outs.

use std::sync::atomic::Ordering;

use akhrot_core::approvals::{Ask, AskError, Outcome};
use akhrot_core::audit::Entry;
use akhrot_core::catalog::Provider;
use akhrot_core::now_unix;
use akhrot_core::vault::{Agent, Mode};

use crate::AppState;
use crate::error::{ApiError, Code};

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
    let action = if request.is_some() { "proxy" } else { "token" };
    // Token denials say why; proxied ones also say which call (method and URL, no query values).
    let audit = |outcome: &str, why: &str| {
        let e = Entry::new(action, outcome)
            .agent(&agent.id, &agent.name)
            .provider(&provider.code)
            .account(account);
        match (&request, why.is_empty()) {
            (Some(r), true) => e.detail(r.clone()),
            (Some(r), false) => e.detail(format!("{r} ({why})")),
            (None, true) => e,
            (None, false) => e.detail(why),
        }
    };
    // Not connected is answered before policy: there is nothing to approve.
    state.vault.require_connection(&provider.code, account)?;
    if state.paused.load(Ordering::Relaxed) {
        state.audit.record(audit("denied", "agents are paused"));
        return Err(ApiError::new(
            Code::ApprovalDenied,
            "the user has paused all agents; try again later",
        ));
    }
    let mode = state
        .vault
        .policy_for(&agent.id, &provider.code)
        .effective(now_unix());
    match mode {
        Mode::Allow => Ok(Granted::default()),
        Mode::ProxyOnly if request.is_some() => Ok(Granted::default()),
        Mode::ProxyOnly => {
            state.audit.record(audit("denied", "policy proxy-only"));
            Err(ApiError::new(
                Code::ApprovalDenied,
                format!(
                    "agent `{}` may use {} only through the proxy, never holding its token: call {}/proxy/{}/<path> with your agent key (the credential is added for you); GET /ai/skill explains",
                    agent.name, provider.name, state.base_url, provider.code
                ),
            ))
        }
        Mode::Deny => {
            state.audit.record(audit("denied", "policy deny"));
            Err(ApiError::new(
                Code::ApprovalDenied,
                format!(
                    "the user does not allow agent `{}` to use {}",
                    agent.name, provider.name
                ),
            ))
        }
        Mode::Ask
            if state
                .approvals
                .allowed_until_quit(&agent.id, &provider.code, request.is_some()) =>
        {
            Ok(Granted::default())
        }
        Mode::Ask => {
            let peer = Some(crate::peer_json(state.port, peer_addr).await);
            let conn = state.vault.find_connection(&provider.code, account);
            let ask = Ask {
                agent_id: agent.id.clone(),
                agent: agent.name.clone(),
                provider: provider.code.clone(),
                provider_name: provider.name.clone(),
                account: conn.as_ref().map(|c| c.account.clone()).unwrap_or_default(),
                scopes: conn.map(|c| c.scopes).unwrap_or_default(),
                reason,
                peer: peer.clone(),
                request: request.clone(),
            };
            match state.approvals.ask(ask).await {
                Ok(Outcome::Answered(a)) if a.allows() => Ok(Granted { peer }),
                Ok(Outcome::Answered(_)) => {
                    state
                        .audit
                        .record(audit("denied", "denied by the user").peer(peer));
                    Err(ApiError::new(
                        Code::ApprovalDenied,
                        format!(
                            "the user denied agent `{}` access to {}",
                            agent.name, provider.name
                        ),
                    ))
                }
                Ok(Outcome::Closed) => {
                    state
                        .audit
                        .record(audit("denied", "Akhrot shut down").peer(peer));
                    Err(ApiError::new(
                        Code::ApprovalDenied,
                        "Akhrot is shutting down, so nobody can answer the approval prompt; retry once it runs again",
                    ))
                }
                Ok(Outcome::TimedOut) => {
                    state.audit.record(audit("timeout", "").peer(peer));
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
    }
}
