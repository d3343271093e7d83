//! The IPC commands of the approval prompt window. Each calls the server crate's shared actions
//! (the same code as the admin HTTP routes): the shell adds no rule of its own.
//!
//! `build.rs` declares these commands in the app's ACL manifest, so they run only for a window
//! that holds a capability granting them: `capabilities/prompt.json` grants them to the window
//! labelled `prompt` and to nothing else. Agents cannot reach them at all: they are not HTTP
//! routes.

use std::sync::Arc;

use serde::Serialize;
use tauri::State;

use akhrot_core::approvals::Prompt;
use akhrot_server::AppState;
use akhrot_server::actions::{self, Answered};
use akhrot_server::error::{ApiError, Code};

/// The running owner's state, managed by the Tauri app.
pub struct Core {
    pub state: Arc<AppState>,
}

impl Core {
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

/// An IPC error: the API's error code (serialized as the contract spells it, e.g.
/// `"NOT_FOUND"`) and a human sentence (never a secret).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct IpcError {
    pub code: Code,
    pub message: String,
}

impl From<ApiError> for IpcError {
    fn from(e: ApiError) -> Self {
        Self {
            code: e.code,
            message: e.message,
        }
    }
}

/// The open approval prompts, oldest first.
#[tauri::command]
pub fn pending_approvals(core: State<'_, Core>) -> Vec<Prompt> {
    actions::pending(&core.state)
}

/// Answers prompt `id`: `once`, `hour`, `quit`, `always`, `deny` or `for:<seconds>`.
#[tauri::command]
pub fn answer_approval(
    core: State<'_, Core>,
    id: String,
    answer: String,
) -> Result<Answered, IpcError> {
    Ok(actions::answer_approval(&core.state, &id, &answer)?)
}

/// The invoke handler with the app's commands (the app and the tests use this one).
pub fn handler<R: tauri::Runtime>() -> impl Fn(tauri::ipc::Invoke<R>) -> bool + Send + Sync + 'static
{
    tauri::generate_handler![pending_approvals, answer_approval]
}
