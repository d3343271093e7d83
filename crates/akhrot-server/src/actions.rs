//! What the user does to approvals and the pause switch. The admin HTTP routes and the desktop
//! shell's IPC commands both call these, so an answer from the tray prompt and one from the web
//! UI or `akhrot approvals` change the policy, resolve the waiting requests and write the audit
//! log in exactly the same way.

use std::sync::atomic::Ordering;

use serde::Serialize;

use akhrot_core::approvals::{Answer, AskKind, Prompt};
use akhrot_core::audit::{Action, Entry, Outcome};
use akhrot_core::vault::Mode;

use crate::error::{ApiError, Code, printable};
use crate::state::AppState;

/// Open prompts, oldest first.
pub fn pending(state: &AppState) -> Vec<Prompt> {
    state.approvals.pending()
}

/// How many prompts are open.
pub fn pending_count(state: &AppState) -> usize {
    state.approvals.pending_count()
}

/// An answered prompt.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Answered {
    pub approval: Prompt,
    /// Shown as `deny`, `once`, `for <n>s`, `until quit` or `always`.
    #[serde(serialize_with = "crate::models::admin::answer_shown::serialize")]
    pub answer: Answer,
}

/// Answers prompt `id` with `answer` (`deny`, `once`, `hour`, `quit`, `always`, or
/// `for:<seconds>`). "For a while" and "always" also change the agent's policy for the provider,
/// before the waiting requests are released, so requests right after the answer already see it.
/// A consent session's prompt (`kind: connect`) allowed in any way is allowed once: it changes
/// no policy and grants no token hand-out or proxied call.
pub fn answer_approval(state: &AppState, id: &str, answer: &str) -> Result<Answered, ApiError> {
    let answer = Answer::parse(answer).ok_or_else(|| {
        ApiError::bad_request(format!(
            "answer `{}` is not one of deny, once, hour, quit, always, for:<seconds>",
            printable(answer)
        ))
    })?;
    answer_approval_with(state, id, answer)
}

/// [`answer_approval`] with an answer already parsed (the admin API's typed body).
pub fn answer_approval_with(
    state: &AppState,
    id: &str,
    answer: Answer,
) -> Result<Answered, ApiError> {
    let pending = state
        .approvals
        .pending()
        .into_iter()
        .find(|p| p.id == id)
        .ok_or_else(|| {
            ApiError::new(
                Code::NotFound,
                "no pending approval with that id (it was answered, timed out or withdrawn)",
            )
        })?;
    let answer = answer.for_kind(pending.ask.kind);
    // Answering a proxied call grants proxied calls only (`proxy-only`), never token hand-outs.
    let granted = match pending.ask.kind {
        AskKind::Proxy => Mode::ProxyOnly,
        AskKind::Token => Mode::Allow,
        // `for_kind` made any allowing answer `Once`: nothing below applies.
        AskKind::Connect => Mode::Ask,
    };
    match answer {
        Answer::For(secs) => {
            let until = akhrot_core::now_unix().saturating_add(i64::try_from(secs).unwrap_or(3600));
            state.vault.set_policy(
                &pending.ask.agent_id,
                &pending.ask.provider,
                granted,
                Some(until),
            )?;
        }
        Answer::Always => {
            state
                .vault
                .set_policy(&pending.ask.agent_id, &pending.ask.provider, granted, None)?;
        }
        _ => {}
    }
    let prompt = state.approvals.answer(id, answer).ok_or_else(|| {
        ApiError::new(
            Code::NotFound,
            "the approval ended before the answer arrived",
        )
    })?;
    let entry = Entry::new(Action::Approval, Outcome::Answer(answer))
        .agent(&prompt.ask.agent_id, &prompt.ask.agent)
        .provider(&prompt.ask.provider)
        .account(Some(prompt.ask.account.as_str()).filter(|a| !a.is_empty()));
    state.audit.record(if prompt.ask.kind == AskKind::Connect {
        entry.detail("consent session")
    } else {
        entry
    });
    Ok(Answered {
        approval: prompt,
        answer,
    })
}

/// Whether "pause all agents" is on.
pub fn is_paused(state: &AppState) -> bool {
    state.paused.load(Ordering::Relaxed)
}

/// Turns "pause all agents" on or off (persisted in the vault, audited).
pub fn set_paused(state: &AppState, paused: bool) -> Result<bool, ApiError> {
    state
        .vault
        .set_setting("paused", if paused { "1" } else { "0" })?;
    state.paused.store(paused, Ordering::Relaxed);
    state.audit.record(Entry::new(
        Action::Pause,
        if paused { Outcome::On } else { Outcome::Off },
    ));
    Ok(paused)
}

/// Flips "pause all agents"; returns the new state.
pub fn toggle_paused(state: &AppState) -> Result<bool, ApiError> {
    set_paused(state, !is_paused(state))
}

/// At shutdown: every open prompt is denied (its waiting requests get `APPROVAL_DENIED` at once
/// instead of holding the shutdown open until they time out), each denial is audited, and no
/// new prompt opens. Returns how many prompts it ended.
pub fn deny_all_at_shutdown(state: &AppState) -> usize {
    let ended = state.approvals.close();
    for prompt in &ended {
        state.audit.record(
            Entry::new(Action::Approval, Outcome::Answer(Answer::Deny))
                .agent(&prompt.ask.agent_id, &prompt.ask.agent)
                .provider(&prompt.ask.provider)
                .account(Some(&prompt.ask.account))
                .detail("Akhrot shut down"),
        );
    }
    if !ended.is_empty() {
        tracing::info!(
            prompts = ended.len(),
            "denied the open approval prompts at shutdown"
        );
    }
    ended.len()
}
