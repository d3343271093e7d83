//! The contract's error envelope: `{"status":"error","error":{"code","message"}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use akhrot_core::Error as CoreError;
use akhrot_core::broker::BrokerError;
use akhrot_core::keystore::KeystoreError;

/// The error codes of the contract, plus a few of our own (documented in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[schema(as = ErrorCode)]
pub enum Code {
    Unauthorized,
    BadRequest,
    ProviderNotFound,
    IntegrationNotFound,
    ApprovalDenied,
    ApprovalTimeout,
    RateLimited,
    ForbiddenHost,
    ClientNotConfigured,
    TokenExpired,
    SessionExpired,
    SessionNotFound,
    ProviderError,
    /// Extension: no such route.
    NotFound,
    /// Extension: the route exists, the method does not.
    MethodNotAllowed,
    /// Extension: the named thing already exists.
    Conflict,
    /// An OAuth session an agent started would replace a stored connection; nothing changed.
    ConnectionExists,
    /// Extension: a sealed value failed to open (vault modified outside Akhrot).
    VaultIntegrity,
    /// Extension: the vault database cannot be written or read right now.
    VaultUnavailable,
}

impl Code {
    /// Every code, in the order of the enum.
    pub const ALL: [Self; 19] = [
        Self::Unauthorized,
        Self::BadRequest,
        Self::ProviderNotFound,
        Self::IntegrationNotFound,
        Self::ApprovalDenied,
        Self::ApprovalTimeout,
        Self::RateLimited,
        Self::ForbiddenHost,
        Self::ClientNotConfigured,
        Self::TokenExpired,
        Self::SessionExpired,
        Self::SessionNotFound,
        Self::ProviderError,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::Conflict,
        Self::ConnectionExists,
        Self::VaultIntegrity,
        Self::VaultUnavailable,
    ];

    /// The code a `code` string of the envelope names, if this build knows it.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Code::Unauthorized => "UNAUTHORIZED",
            Code::BadRequest => "BAD_REQUEST",
            Code::ProviderNotFound => "PROVIDER_NOT_FOUND",
            Code::IntegrationNotFound => "INTEGRATION_NOT_FOUND",
            Code::ApprovalDenied => "APPROVAL_DENIED",
            Code::ApprovalTimeout => "APPROVAL_TIMEOUT",
            Code::RateLimited => "RATE_LIMITED",
            Code::ForbiddenHost => "FORBIDDEN_HOST",
            Code::ClientNotConfigured => "CLIENT_NOT_CONFIGURED",
            Code::TokenExpired => "TOKEN_EXPIRED",
            Code::SessionExpired => "SESSION_EXPIRED",
            Code::SessionNotFound => "SESSION_NOT_FOUND",
            Code::ProviderError => "PROVIDER_ERROR",
            Code::NotFound => "NOT_FOUND",
            Code::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Code::Conflict => "CONFLICT",
            Code::ConnectionExists => "CONNECTION_EXISTS",
            Code::VaultIntegrity => "VAULT_INTEGRITY",
            Code::VaultUnavailable => "VAULT_UNAVAILABLE",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::BadRequest | Code::TokenExpired | Code::SessionExpired => StatusCode::BAD_REQUEST,
            Code::ClientNotConfigured => StatusCode::CONFLICT,
            Code::SessionNotFound => StatusCode::NOT_FOUND,
            Code::ProviderError => StatusCode::BAD_GATEWAY,
            Code::ProviderNotFound | Code::IntegrationNotFound | Code::NotFound => {
                StatusCode::NOT_FOUND
            }
            Code::ApprovalDenied | Code::ForbiddenHost => StatusCode::FORBIDDEN,
            Code::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Code::ApprovalTimeout => StatusCode::REQUEST_TIMEOUT,
            Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Code::Conflict | Code::ConnectionExists | Code::VaultIntegrity => StatusCode::CONFLICT,
            Code::VaultUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    pub status: StatusCode,
    pub retry_after: Option<u64>,
    /// The `Allow` header of a 405 that axum's router does not add itself.
    pub allow: Option<&'static str>,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            status: code.status(),
            retry_after: None,
            allow: None,
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(Code::BadRequest, message)
    }

    pub fn provider_not_found(code: &str) -> Self {
        Self::new(
            Code::ProviderNotFound,
            format!(
                "no provider `{}` in the catalog; GET /ai/context/summary lists the available codes",
                printable(code)
            ),
        )
    }
}

/// Echoes user input into a message safely: printable, short.
pub use akhrot_core::text::printable;

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        let code = match &e {
            CoreError::BadRequest(_) => Code::BadRequest,
            CoreError::ProviderNotFound(_) => Code::ProviderNotFound,
            CoreError::IntegrationNotFound(_) => Code::IntegrationNotFound,
            CoreError::NotFound(_) => Code::NotFound,
            CoreError::Conflict(_) => Code::Conflict,
            CoreError::Integrity(_) => Code::VaultIntegrity,
            CoreError::Keystore(KeystoreError::Corrupt(_)) => Code::VaultIntegrity,
            CoreError::Keystore(_) | CoreError::Storage(_) | CoreError::Io(_) => {
                Code::VaultUnavailable
            }
            CoreError::Catalog(_) => Code::BadRequest,
        };
        if code == Code::VaultUnavailable {
            tracing::error!(error = %e, "vault error");
        }
        ApiError::new(code, e.to_string())
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        match e {
            BrokerError::ClientNotConfigured(m) => ApiError::new(Code::ClientNotConfigured, m),
            BrokerError::SessionNotFound(m) => ApiError::new(Code::SessionNotFound, m),
            BrokerError::SessionExpired(m) => ApiError::new(Code::SessionExpired, m),
            BrokerError::TokenExpired(m) => ApiError::new(Code::TokenExpired, m),
            BrokerError::ProviderError(m) => ApiError::new(Code::ProviderError, m),
            BrokerError::ConnectionExists { message, .. } => {
                ApiError::new(Code::ConnectionExists, message)
            }
            BrokerError::Core(e) => e.into(),
        }
    }
}

/// `"error"`, the one value of an error envelope's `status`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ErrorStatus {
    Error,
}

/// `"success"`, the one value of a success envelope's `status`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SuccessStatus {
    Success,
}

/// Every error answer: `{"status":"error","error":{"code","message"}}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorEnvelope {
    pub status: ErrorStatus,
    pub error: ErrorBody,
}

/// What went wrong: a stable code and a human sentence (never a secret, never a submitted value).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub code: Code,
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorEnvelope {
            status: ErrorStatus::Error,
            error: ErrorBody {
                code: self.code,
                message: self.message,
            },
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if let Some(allow) = self.allow {
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        resp
    }
}

/// The success envelope.
pub fn success(data: serde_json::Value) -> Response {
    success_typed(data)
}

/// Every success answer: `{"status":"success","data":…}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Envelope<T> {
    pub status: SuccessStatus,
    pub data: T,
}

/// The success envelope around any serializable answer (no intermediate JSON tree).
pub fn success_typed<T: serde::Serialize>(data: T) -> Response {
    // Straight into a buffer sized for a token answer: `axum::Json` starts at 128 bytes and
    // grows (the profile showed its reallocations on every hand-out).
    let mut buf = Vec::with_capacity(512);
    match serde_json::to_writer(
        &mut buf,
        &Envelope {
            status: SuccessStatus::Success,
            data,
        },
    ) {
        Ok(()) => (
            [(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            )],
            buf,
        )
            .into_response(),
        Err(_) => {
            ApiError::new(Code::BadRequest, "the answer could not be encoded").into_response()
        }
    }
}

/// `NOT_FOUND` for a path no route serves.
pub fn not_found() -> ApiError {
    ApiError::new(
        Code::NotFound,
        "no such route; GET /ai/skill describes the API",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialized_codes_are_the_contract_names() {
        let all = [
            Code::Unauthorized,
            Code::BadRequest,
            Code::ProviderNotFound,
            Code::IntegrationNotFound,
            Code::ApprovalDenied,
            Code::ApprovalTimeout,
            Code::RateLimited,
            Code::ForbiddenHost,
            Code::ClientNotConfigured,
            Code::TokenExpired,
            Code::SessionExpired,
            Code::SessionNotFound,
            Code::ProviderError,
            Code::NotFound,
            Code::MethodNotAllowed,
            Code::Conflict,
            Code::VaultIntegrity,
            Code::VaultUnavailable,
        ];
        for c in all {
            assert_eq!(
                serde_json::to_value(c).ok(),
                Some(serde_json::Value::from(c.as_str()))
            );
        }
    }
}
