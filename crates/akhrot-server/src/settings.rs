//! The Settings page: what this owner runs with, and the few settings the user changes there.
//! Changes are written to `config.toml` (keeping the user's comments); the approval timeout and
//! the rate limit apply at once, the port at the next start.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use akhrot_core::audit::Entry;
use akhrot_core::config::{self, Config};

use crate::error::{ApiError, success};
use crate::guard::{AdminAuth, JsonBody};
use crate::state::AppState;

/// Bounds the Settings page accepts (flags and the file may go beyond them).
const TIMEOUT_SECS: std::ops::RangeInclusive<u64> = 5..=86_400;
const RATE_PER_MIN: std::ops::RangeInclusive<u32> = 0..=1_000_000;

fn view(state: &AppState) -> Value {
    let configured = Config::load(&state.config_dir).ok();
    json!({
        "port": state.port,
        "configuredPort": configured.as_ref().and_then(|c| c.port),
        "approvalTimeoutSecs": state.approvals.timeout().as_secs(),
        "rateLimitPerMinute": state.limiter.per_minute(),
        "paused": state.paused.load(Ordering::Relaxed),
        "keySource": state.vault.key_source(),
        "vaultPath": state.vault.path(),
        "dataDir": state.vault.path().parent(),
        "configPath": config::path(&state.config_dir),
        "version": env!("CARGO_PKG_VERSION"),
        "baseUrl": state.base_url,
    })
}

pub async fn get_settings(State(state): State<Arc<AppState>>, _: AdminAuth) -> Response {
    success(view(&state))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetSettings {
    approval_timeout_secs: Option<u64>,
    rate_limit_per_minute: Option<u32>,
    port: Option<u16>,
}

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
        .record(Entry::new("settings", "changed").detail(detail));
    let mut out = view(&state);
    out["restartRequired"] = json!(req.port.is_some_and(|p| p != state.port));
    Ok(success(out))
}
