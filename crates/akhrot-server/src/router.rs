//! Every route of the API, behind the loopback hygiene layer.

use std::sync::Arc;

use axum::Router;
use axum::routing::{any, delete, get, post};

use crate::error::{self, ApiError, Code};
use crate::state::AppState;
use crate::{admin, agent, guard, mcp, oauth, openapi, proxy, settings, ui};

/// The whole API behind the loopback hygiene layer.
pub fn router(state: Arc<AppState>) -> Router {
    // `/mcp` runs its tools through the same API in-process, as the caller's own requests; that
    // router has no `/mcp` of its own, so nothing loops.
    let agent_api = routes(state.clone(), None);
    routes(state, Some(agent_api))
}

/// The API; with `/mcp` (whose tools call `mcp_api`) when `mcp_api` is given.
fn routes(state: Arc<AppState>, mcp_api: Option<Router>) -> Router {
    let mut r = Router::new()
        .route("/ai/skill", get(agent::skill))
        .route("/ai/context/summary", get(agent::summary))
        .route("/ai/context/{provider}", get(agent::provider_context))
        .route(
            "/ai/context/{provider}/{service}",
            get(agent::service_context),
        )
        .route("/tokens/fetch", post(agent::fetch_token))
        .route("/ai/approvals", get(agent::own_approvals))
        .route("/proxy/{*rest}", any(proxy::handle))
        .route("/oauth/sessions", post(oauth::start_session))
        .route("/oauth/sessions/{id}", get(oauth::get_session))
        .route("/oauth/callback", get(oauth::callback))
        .route("/openapi.json", get(openapi::openapi_json))
        .route(
            "/admin/clients",
            get(admin::list_clients).post(admin::set_client),
        )
        .route("/admin/sessions", post(admin::start_session))
        .route("/admin/sessions/{id}", get(admin::get_session))
        .route("/admin/approvals", get(admin::list_approvals))
        .route("/admin/approvals/{id}", post(admin::answer_approval))
        .route("/admin/pause", post(admin::set_pause))
        .route("/admin/audit", get(admin::audit_log))
        .route("/admin/events", get(admin::events))
        .route("/admin/status", get(admin::status))
        .route(
            "/admin/settings",
            get(settings::get_settings).post(settings::set_settings),
        )
        .route("/admin/ui-link", post(ui::new_link))
        .route("/admin/logout", post(ui::logout))
        .route("/", get(ui::root))
        .route("/ui", get(ui::root))
        .route("/ui/", get(ui::index))
        .route("/ui/login", get(ui::login))
        .route("/ui/session", get(ui::session))
        .route("/ui/{*path}", get(ui::file))
        .route("/admin/keys", get(admin::list_keys).post(admin::create_key))
        .route("/admin/keys/{name}", delete(admin::revoke_key))
        .route("/admin/policies", post(admin::set_policy))
        .route(
            "/admin/connections",
            get(admin::list_connections).post(admin::add_connection),
        )
        .route(
            "/admin/connections/{provider}",
            delete(admin::remove_connection),
        )
        .route("/admin/token", post(admin::token))
        .route("/admin/providers", get(admin::list_providers))
        .route("/admin/providers/{code}", get(admin::get_provider));
    if let Some(api) = mcp_api {
        r = r.merge(
            Router::new()
                .route_service("/mcp", mcp::http_service(&state, api))
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    mcp::require_agent,
                )),
        );
    }
    r
        // Before the 405 fallback is set, so a wrong method is a 405, not a content-type 400.
        .route_layer(axum::middleware::from_fn(guard::require_json))
        .fallback(|| async { error::not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                Code::MethodNotAllowed,
                "this route does not take that method",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::hygiene,
        ))
        .with_state(state)
}
