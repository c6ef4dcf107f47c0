//! The one place where errors become HTTP: [`ErrorCode`] → status, and the body
//! `{"error": {"code", "message", "details"}}` of shared/API.md.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use plugin_host::{Error, ErrorCode};

/// An error on its way to an HTTP client.
#[derive(Debug)]
pub(crate) struct ApiError(pub(crate) Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

/// The HTTP status of an error code: 400 bad input, 401 auth, 403 a refused presigned link,
/// 404 unknown plugin, path or object, 409 conflict, 413 too large, 422 a plugin-level failure,
/// 504 timeout.
pub(crate) fn status(code: ErrorCode) -> StatusCode {
    use ErrorCode as C;
    match code {
        C::BadRequest
        | C::FileNotFound
        | C::InvalidPlugin
        | C::IncompatibleAbi
        | C::UnsupportedPanicStrategy
        | C::InvalidName
        | C::SelfDependency
        | C::InvalidEventName
        | C::InvalidPattern
        | C::InvalidConfig
        | C::InvalidOverrides
        | C::InvalidKey
        | C::InvalidPath
        | C::InvalidInput
        | C::FileTooLarge => StatusCode::BAD_REQUEST,
        C::Unauthorized => StatusCode::UNAUTHORIZED,
        C::PresignedUrlInvalid => StatusCode::FORBIDDEN,
        C::NotFound | C::SubscriptionNotFound | C::FunctionNotFound => StatusCode::NOT_FOUND,
        C::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        C::AlreadyLoaded
        | C::HasDependents
        | C::CircularDependency
        | C::DependencyNotFound
        | C::DependencyVersionMismatch
        | C::DuplicatePlugin
        | C::PluginDisabled
        | C::PluginNotActive
        | C::StaleHandle
        | C::DataDirInUse
        | C::ConcurrentChange => StatusCode::CONFLICT,
        C::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        C::InitializeFailed
        | C::FunctionMismatch
        | C::PluginFailed
        | C::DependencyNotDeclared
        | C::InvalidPluginConfig
        | C::TableAccessDenied
        | C::SqlAccessDenied
        | C::ResultTooLarge
        | C::TopicAccessDenied
        | C::BucketAccessDenied
        | C::SqlError => StatusCode::UNPROCESSABLE_ENTITY,
        C::Timeout => StatusCode::GATEWAY_TIMEOUT,
        C::BackendUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The code for an error status that did not come from an [`ApiError`] (an extractor or layer
/// of the HTTP stack answered on its own).
fn code_of_status(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => ErrorCode::Timeout,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::BackendUnavailable,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::BadRequest,
    }
}

/// Middleware: every error response leaves with the API's JSON error body. Handlers already
/// answer so; this catches what the HTTP stack answers by itself (a rejection of an extractor
/// or layer), keeping its status and using its text as the message.
pub(crate) async fn json_errors(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (_, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_owned()
    } else {
        text
    };
    let body = json!({
        "error": {
            "code": code_of_status(status).as_str(),
            "message": message,
            "details": {},
        }
    });
    (status, Json(body)).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.0.code();
        let status = status(code);
        if status.is_server_error() {
            tracing::error!(target: "api", code = %code, error = %self.0.chain(), "request failed");
        }
        let body = json!({
            "error": {
                "code": code.as_str(),
                "message": self.0.chain(),
                "details": self.0.details(),
            }
        });
        (status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_deliberate_status() {
        for code in ErrorCode::ALL {
            let s = status(*code);
            if *code != ErrorCode::Internal {
                assert_ne!(
                    s,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "{code} falls through to 500"
                );
            }
        }
        assert_eq!(status(ErrorCode::CircularDependency), StatusCode::CONFLICT);
        assert_eq!(
            status(ErrorCode::InitializeFailed),
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
}
