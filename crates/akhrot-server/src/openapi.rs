//! The agent-facing API as an OpenAPI 3.1 document, generated from the handlers' own types
//! (utoipa): served at `GET /openapi.json`, printed by `akhrot openapi`, and checked into the
//! repository as `docs/openapi.json` (a unit test fails when they differ;
//! `UPDATE_OPENAPI=1 cargo test -p akhrot-server openapi` rewrites it).

use std::sync::LazyLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::server::{ServerBuilder, ServerVariableBuilder};
use utoipa::openapi::{
    ContentBuilder, Ref, RefOr, Required, Response as ApiResponse, ResponseBuilder,
};
use utoipa::{Modify, OpenApi};

use crate::error::{Code, ErrorEnvelope};

const DESCRIPTION: &str = "\
The loopback API that AI agents use to get credentials from Akhrot Desktop, a local-first \
credential broker. It listens on 127.0.0.1 only (default port 47420).

Every JSON answer is wrapped: `{\"status\":\"success\",\"data\":…}` or \
`{\"status\":\"error\",\"error\":{\"code\",\"message\"}}`. Agents authenticate with \
`Authorization: Bearer <agent key>` (keys look like `akhrot_<id>_<secret>`; the user creates \
them with `akhrot keys create`).

Answers every operation can give besides its own: `403 FORBIDDEN_HOST` for a request whose \
`Host` is not this listener or that comes from a web page (`Origin`, cross-site \
`Sec-Fetch-Site`); `405 METHOD_NOT_ALLOWED` with an `Allow` header for a method the path does not \
take; and, with an agent key, `401 UNAUTHORIZED`, `429 RATE_LIMITED` (with `Retry-After`) and \
`503 VAULT_UNAVAILABLE` (the vault database cannot be read or written, e.g. disk full).

Not described here: `/mcp`, the Model Context Protocol server (Streamable HTTP, same agent key): \
it speaks JSON-RPC 2.0 messages defined by the MCP specification, not resources and operations, \
and MCP clients discover its tools with `tools/list` (they are the agent operations below: list \
connections, describe, get a token, start a connection, call an API through the proxy); and the web \
UI (`/ui/…`).

The admin API (`/admin/…`, tag `admin`) is the user's own: the `akhrot` command, the web UI and \
the desktop window use it with the admin credential (`Authorization: Bearer` with the contents of \
`admin.token` in the data directory, written by the running owner; the web UI uses its sign-in \
cookie instead). Agent keys get `401 UNAUTHORIZED` there. It is described here so that its \
requests and answers have one definition; agents never call it.";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Akhrot Desktop agent API",
        description = DESCRIPTION,
        license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0"),
    ),
    paths(
        crate::agent::skill,
        crate::agent::summary,
        crate::agent::provider_context,
        crate::agent::service_context,
        crate::agent::fetch_token,
        crate::oauth::start_session,
        crate::oauth::get_session,
        crate::oauth::callback,
        crate::agent::own_approvals,
        proxy,
        openapi_json,
        crate::admin::status,
        crate::admin::list_keys,
        crate::admin::create_key,
        crate::admin::revoke_key,
        crate::admin::set_policy,
        crate::admin::list_connections,
        crate::admin::add_connection,
        crate::admin::remove_connection,
        crate::admin::token,
        crate::admin::list_providers,
        crate::admin::get_provider,
        crate::admin::list_clients,
        crate::admin::set_client,
        crate::admin::start_session,
        crate::admin::get_session,
        crate::admin::list_approvals,
        crate::admin::answer_approval,
        crate::admin::set_pause,
        crate::admin::audit_log,
        crate::admin::events,
        crate::settings::get_settings,
        crate::settings::set_settings,
        crate::ui::new_link,
        crate::ui::logout,
    ),
    components(schemas(Code, ErrorEnvelope)),
    modifiers(&Common),
    tags(
        (name = "context", description = "What is connected, and how to use each provider."),
        (name = "tokens", description = "Credentials, under the user's policy and approvals."),
        (name = "oauth", description = "Connecting OAuth providers."),
        (name = "proxy", description = "Calling a provider's API through Akhrot, which adds the credential: the agent never holds it."),
        (name = "meta", description = "This document."),
        (name = "admin", description = "The user's own API (`/admin/…`): the `akhrot` command, the web UI and the desktop window use it, with the admin credential. Agent keys are refused here."),
    )
)]
struct ApiDoc;

/// The security scheme, the server, and the answers every operation can give.
struct Common;

fn error_response(description: &str) -> ApiResponse {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Error")))
                .build(),
        )
        .build()
}

/// A proxied answer: Akhrot's own error, or the provider's answer with the same status.
fn passthrough(description: &str) -> ApiResponse {
    ResponseBuilder::new()
        .description(description)
        .content(
            "*/*",
            ContentBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(SchemaType::AnyValue)))
                .build(),
        )
        .build()
}

fn integer_header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0)),
        ))
        .description(Some(description))
        .build()
}

impl Modify for Common {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.info.version = env!("CARGO_PKG_VERSION").into();
        doc.servers = Some(vec![
            ServerBuilder::new()
                .url("http://127.0.0.1:{port}")
                .description(Some("This machine's Akhrot (loopback only)"))
                .parameter(
                    "port",
                    ServerVariableBuilder::new()
                        .default_value("47420")
                        .description(Some("`akhrot serve --port`; 47420 unless changed")),
                )
                .build(),
        ]);
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "adminCredential",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("akhrot-admin-<hex>")
                    .description(Some(
                        "The running owner's admin credential: the contents of `admin.token` in its data directory (the user's own `akhrot` command and window).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "agentKey",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("akhrot_<id>_<secret>")
                    .description(Some(
                        "An agent key, created by the user with `akhrot keys create --name <agent>`.",
                    ))
                    .build(),
            ),
        );
        let not_allowed = ResponseBuilder::new()
            .description(
                "`METHOD_NOT_ALLOWED`: the path does not take this method (`Allow` lists those it takes).",
            )
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Error")))
                    .build(),
            )
            .header(
                "Allow",
                HeaderBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                    .description(Some("The methods this path takes, e.g. `GET,HEAD`."))
                    .build(),
            )
            .build();
        let mut rate_limited = error_response(
            "`RATE_LIMITED`: too many requests from this agent key; retry after `Retry-After` seconds.",
        );
        rate_limited.headers.insert(
            "Retry-After".into(),
            RefOr::T(integer_header("Seconds to wait before retrying.")),
        );
        // The session a start returns is the one to poll (schemathesis follows this link).
        if let Some(RefOr::T(ok)) = doc
            .paths
            .paths
            .get_mut("/oauth/sessions")
            .and_then(|i| i.post.as_mut())
            .and_then(|op| op.responses.responses.get_mut("200"))
        {
            ok.links.insert(
                "GetSession".into(),
                RefOr::T(
                    LinkBuilder::new()
                        .operation_id("getOAuthSession")
                        .parameter("id", "$response.body#/data/sessionId")
                        .description("Poll the session until it is `completed`.")
                        .build(),
                ),
            );
        }
        if let Some(item) = doc.paths.paths.get_mut("/proxy/{provider}/{path}") {
            for (name, op) in [
                ("proxyGet", &mut item.get),
                ("proxyPost", &mut item.post),
                ("proxyPut", &mut item.put),
                ("proxyPatch", &mut item.patch),
                ("proxyDelete", &mut item.delete),
            ] {
                if let Some(op) = op {
                    op.operation_id = Some(name.into());
                    if matches!(name, "proxyGet" | "proxyDelete") {
                        op.request_body = None;
                    } else if let Some(RefOr::T(body)) = op.request_body.as_mut() {
                        body.required = Some(Required::False);
                    }
                    // The provider may answer with these statuses too, in any form.
                    for (code, what) in [
                        (
                            "401",
                            "`UNAUTHORIZED`: a missing, malformed, unknown or revoked agent key",
                        ),
                        (
                            "405",
                            "`METHOD_NOT_ALLOWED` (with `Allow`): a method the proxy does not forward",
                        ),
                        (
                            "409",
                            "`VAULT_INTEGRITY`: the stored credential failed authentication; the user must reconnect",
                        ),
                        (
                            "429",
                            "`RATE_LIMITED` (with `Retry-After`): too many requests from this agent key",
                        ),
                        (
                            "503",
                            "`VAULT_UNAVAILABLE`: the vault database cannot be read right now",
                        ),
                    ] {
                        op.responses.responses.insert(
                            code.into(),
                            RefOr::T(passthrough(&format!(
                                "From Akhrot (JSON, schema `Error`): {what}. Or the provider's own {code}."
                            ))),
                        );
                    }
                }
            }
        }
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let authed = op.security.as_ref().is_some_and(|s| !s.is_empty());
                let admin = op
                    .tags
                    .as_ref()
                    .is_some_and(|t| t.iter().any(|t| t == "admin"));
                let responses = &mut op.responses.responses;
                let mut add = |code: &str, r: &ApiResponse| {
                    responses
                        .entry(code.to_owned())
                        .or_insert_with(|| RefOr::T(r.clone()));
                };
                add(
                    "403",
                    &error_response(
                        "`FORBIDDEN_HOST`: the `Host` is not this listener, or the request comes from a web page.",
                    ),
                );
                add("405", &not_allowed);
                if authed && admin {
                    add(
                        "401",
                        &error_response(
                            "`UNAUTHORIZED`: not the running owner's admin credential (agent keys are refused here).",
                        ),
                    );
                } else if authed {
                    add(
                        "401",
                        &error_response(
                            "`UNAUTHORIZED`: a missing, malformed, unknown or revoked agent key.",
                        ),
                    );
                    add("429", &rate_limited);
                }
                if authed {
                    add(
                        "503",
                        &error_response(
                            "`VAULT_UNAVAILABLE`: the vault database cannot be read or written right now (e.g. disk full).",
                        ),
                    );
                }
            }
        }
    }
}

/// `ANY /proxy/{provider}/{path…}` as the document describes it (the handler is
/// `proxy::handle`, one function for every method, which reads the path itself). The path's
/// `{path}` stands for the rest of the URL path, slashes included.
#[utoipa::path(
    method(get, post, put, patch, delete),
    path = "/proxy/{provider}/{path}",
    tag = "proxy",
    operation_id = "proxy",
    security(("agentKey" = [])),
    summary = "Call a provider's API with the credential added",
    description = "Forwards the request to the provider service's base URL from the catalog plus `{path}` and the query (less `akhrot_account` and `akhrot_service`), with the credential injected the way the provider expects, and streams the answer back. Only the provider's own catalog hosts are reachable; redirects are passed back, never followed; on a 401 from the provider an OAuth connection is refreshed and the call retried once. Policy and approvals apply as for `POST /tokens/fetch`, and the prompt shows the method and URL.",
    params(
        ("provider" = String, Path, description = "A catalog provider code, e.g. `github`.", example = "github"),
        ("path" = String, Path, description = "The API path relative to the service's base URL; it may contain `/` but no `.` or `..` segment or backslash, in any encoding.", example = "user"),
        ("X-Akhrot-Account" = Option<String>, Header, max_length = 200, description = "Which connected account, when there are several (or `?akhrot_account=`)."),
        ("X-Akhrot-Service" = Option<String>, Header, description = "Which service, when the provider has APIs on several base URLs (or `?akhrot_service=`); `GET /ai/context/{provider}` says when it is needed."),
        ("X-Akhrot-Reason" = Option<String>, Header, max_length = 500, description = "Why: shown to the user if they are asked to approve."),
    ),
    request_body(description = "Any body the provider's API takes, passed on as it is.", content(
        (serde_json::Value = "*/*"),
    )),
    responses(
        (status = "default", description = "The provider's answer, passed back as it is (status, headers and body; `Set-Cookie` and the provider's Content-Security-Policy are dropped).", content(
            (serde_json::Value = "*/*"),
        )),
        (status = 400, description = "`BAD_REQUEST` from Akhrot (JSON, schema `Error`): a `.`/`..` segment or backslash in the path, an MTProto or Digest provider, several base URLs and no service chosen, or a header over its length. Or the provider's own 400.", content(
            (serde_json::Value = "*/*"),
        )),
        (status = 403, description = "`APPROVAL_DENIED` or `FORBIDDEN_HOST` from Akhrot (JSON, schema `Error`): denied by the user or a policy, or a host the catalog does not list for the provider. Or the provider's own 403.", content(
            (serde_json::Value = "*/*"),
        )),
        (status = 404, description = "`PROVIDER_NOT_FOUND`, `INTEGRATION_NOT_FOUND` or `NOT_FOUND` (no such service) from Akhrot (JSON, schema `Error`). Or the provider's own 404.", content(
            (serde_json::Value = "*/*"),
        )),
        (status = 408, description = "`APPROVAL_TIMEOUT` from Akhrot (JSON, schema `Error`). Or the provider's own 408.", content(
            (serde_json::Value = "*/*"),
        )),
        (status = 502, description = "`PROVIDER_ERROR` from Akhrot (JSON, schema `Error`): the provider could not be reached or did not answer in time. Or the provider's own 502.", content(
            (serde_json::Value = "*/*"),
        )),
    )
)]
#[allow(dead_code)]
fn proxy() {}

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    operation_id = "getOpenApi",
    summary = "This document",
    description = "The agent API as OpenAPI 3.1. No authentication.",
    responses(
        (status = 200, description = "The document.", content_type = "application/json", body = Object),
    )
)]
pub async fn openapi_json() -> Response {
    let mut resp = json().to_owned().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as pretty JSON with a final newline, built once.
pub fn json() -> &'static str {
    static JSON: LazyLock<String> = LazyLock::new(|| {
        let mut s = document()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
        s.push('\n');
        s
    });
    &JSON
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn checked_in() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")
    }

    /// `docs/openapi.json` is exactly what the code generates. After changing the API, run
    /// `UPDATE_OPENAPI=1 cargo test -p akhrot-server openapi` and commit the file.
    #[test]
    fn openapi_document_matches_docs_openapi_json() {
        let path = checked_in();
        if std::env::var_os("UPDATE_OPENAPI").is_some_and(|v| v == "1") {
            std::fs::write(&path, json()).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == json(),
            "docs/openapi.json differs from the generated document; run `UPDATE_OPENAPI=1 cargo test -p akhrot-server openapi` and commit it"
        );
    }

    #[test]
    fn openapi_document_is_3_1_and_covers_the_agent_api() {
        let v: serde_json::Value = serde_json::from_str(json()).unwrap();
        assert_eq!(v["openapi"], "3.1.0");
        for (path, method) in [
            ("/ai/skill", "get"),
            ("/ai/context/summary", "get"),
            ("/ai/context/{provider}", "get"),
            ("/ai/context/{provider}/{service}", "get"),
            ("/tokens/fetch", "post"),
            ("/oauth/sessions", "post"),
            ("/oauth/sessions/{id}", "get"),
            ("/oauth/callback", "get"),
            ("/openapi.json", "get"),
        ] {
            let op = &v["paths"][path][method];
            assert!(op.is_object(), "{method} {path} is missing");
            assert!(op["responses"]["405"].is_object(), "{method} {path}: 405");
            assert!(op["responses"]["403"].is_object(), "{method} {path}: 403");
        }
        let fetch = &v["paths"]["/tokens/fetch"]["post"]["responses"];
        for code in [
            "200", "400", "401", "403", "404", "408", "409", "413", "429", "502",
        ] {
            assert!(fetch[code].is_object(), "POST /tokens/fetch: {code}");
        }
        let codes = v["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .unwrap();
        assert!(codes.contains(&"INTEGRATION_NOT_FOUND".into()));
        assert!(codes.contains(&"METHOD_NOT_ALLOWED".into()));
        assert_eq!(
            v["components"]["securitySchemes"]["agentKey"]["scheme"],
            "bearer"
        );
    }
}
