//! The one place where errors become HTTP: [`ErrorCode`] → status, and the body
//! `{"error": {"code", "message", "details"}}` of shared/API.md.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::{Error, ErrorCode};

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
        | C::InvalidKey => StatusCode::BAD_REQUEST,
        C::Unauthorized => StatusCode::UNAUTHORIZED,
        C::PresignedUrlInvalid => StatusCode::FORBIDDEN,
        C::NotFound | C::SubscriptionNotFound => StatusCode::NOT_FOUND,
        C::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        C::AlreadyLoaded
        | C::HasDependents
        | C::CircularDependency
        | C::DependencyNotFound
        | C::DependencyVersionMismatch
        | C::DuplicatePlugin
        | C::PluginDisabled
        | C::PluginNotActive
        | C::StaleHandle => StatusCode::CONFLICT,
        C::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        C::InitializeFailed
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
