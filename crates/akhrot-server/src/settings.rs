//! The Settings page: what this owner runs with, and the few settings the user changes there.
//! Changes are written to `config.toml` (keeping the user's comments); the approval timeout and
//! the rate limit apply at once, the port at the next start.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::response::Response;

use akhrot_core::audit::{Action, Entry, Outcome};
use akhrot_core::config::{self, Config};

use crate::error::{ApiError, Envelope, ErrorEnvelope, success_typed};
use crate::guard::{AdminAuth, JsonBody};
use crate::models::admin::{SetSettings, Settings, VaultStatus};
use crate::state::AppState;

/// Bounds the Settings page accepts (flags and the file may go beyond them).
const TIMEOUT_SECS: std::ops::RangeInclusive<u64> = 5..=86_400;
const RATE_PER_MIN: std::ops::RangeInclusive<u32> = 0..=1_000_000;

fn view(state: &AppState) -> Settings {
    let configured = Config::load(&state.config_dir).ok();
    Settings {
        port: state.port,
        configured_port: configured.as_ref().and_then(|c| c.port),
        approval_timeout_secs: state.approvals.timeout().as_secs(),
        rate_limit_per_minute: state.limiter.per_minute(),
        paused: state.paused.load(Ordering::Relaxed),
        key_source: VaultStatus::key_source_name(state.vault.key_source()).to_owned(),
        vault_path: state.vault.path().to_string_lossy().into_owned(),
        data_dir: state
            .vault
            .path()
            .parent()
            .map(|d| d.to_string_lossy().into_owned()),
        config_path: config::path(&state.config_dir)
            .to_string_lossy()
            .into_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        base_url: state.base_url.clone(),
        restart_required: None,
    }
}

#[utoipa::path(
    get,
    path = "/admin/settings",
    tag = "admin",
    operation_id = "getSettings",
    security(("adminCredential" = [])),
    summary = "Settings",
    description = "What this owner runs with.",
    responses(
        (status = 200, description = "The settings.", body = Envelope<Settings>),
    )
)]
pub async fn get_settings(State(state): State<Arc<AppState>>, _: AdminAuth) -> Response {
    success_typed(view(&state))
}

#[utoipa::path(
    post,
    path = "/admin/settings",
    tag = "admin",
    operation_id = "setSettings",
    security(("adminCredential" = [])),
    summary = "Change settings",
    description = "Written to `config.toml`; the approval timeout and the rate limit apply at once, the port at the next start.",
    request_body(content = SetSettings, content_type = "application/json"),
    responses(
        (status = 200, description = "The settings, with `restartRequired`.", body = Envelope<Settings>),
        (status = 400, description = "`BAD_REQUEST`: a malformed body, path or query.", body = ErrorEnvelope),
    )
)]
pub async fn set_settings(
    State(state): State<Arc<AppState>>,
    _: AdminAuth,
    JsonBody(req): JsonBody<SetSettings>,
) -> Result<Response, ApiError> {
    let mut changes: Vec<(&str, i64)> = Vec::new();
    if let Some(t) = req.approval_timeout_secs {
        if !TIMEOUT_SECS.contains(&t) {
            return Err(ApiError::bad_request(format!(
                "the approval timeout must be between {} and {} seconds",
                TIMEOUT_SECS.start(),
                TIMEOUT_SECS.end()
            )));
        }
        changes.push(("approval_timeout", i64::try_from(t).unwrap_or(i64::MAX)));
    }
    if let Some(r) = req.rate_limit_per_minute {
        if !RATE_PER_MIN.contains(&r) {
            return Err(ApiError::bad_request(format!(
                "the rate limit must be between {} and {} requests a minute (0 turns it off)",
                RATE_PER_MIN.start(),
                RATE_PER_MIN.end()
            )));
        }
        changes.push(("rate_limit", i64::from(r)));
    }
    if let Some(p) = req.port {
        changes.push(("port", i64::from(p)));
    }
    if changes.is_empty() {
        return Err(ApiError::bad_request(
            "send at least one of approvalTimeoutSecs, rateLimitPerMinute, port",
        ));
    }
    // The file first: if it cannot be written, nothing changes.
    let dir = state.config_dir.clone();
    let written = changes.clone();
    tokio::task::spawn_blocking(move || config::update(&dir, &written))
        .await
        .map_err(|_| ApiError::bad_request("the settings could not be saved"))??;
    if let Some(t) = req.approval_timeout_secs {
        state.approvals.set_timeout(Duration::from_secs(t));
    }
    if let Some(r) = req.rate_limit_per_minute {
        state.limiter.set_per_minute(r);
    }
    let detail = changes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
    state
        .audit
        .record(Entry::new(Action::Settings, Outcome::Changed).detail(detail));
    let mut out = view(&state);
    out.restart_required = Some(req.port.is_some_and(|p| p != state.port));
    Ok(success_typed(out))
}
