//! The one place where errors become HTTP: an [`ApiError`] is either a library [`Error`] or one
//! of the HTTP layer's own refusals, each with a code defined once (with its status) in a table:
//! [`ErrorCode`] in the library, [`ApiCode`] here. The body is
//! `{"error": {"code", "message", "details"}}` of shared/API.md.

use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use plugin_host::{Error, ErrorCode};

plugin_host::error_codes! {
    /// The codes only the HTTP layer (the admin API and the application listener) answers
    /// with: its own refusals, which the core library never raises. Like [`ErrorCode`], stable across releases.
    pub enum ApiCode {
        /// The admin token is missing or wrong (`Authorization: Bearer <token>` on `/api/v1`
        /// when a token is configured).
        Unauthorized = "unauthorized", 401, {};
        /// The request body is over `limits.body_bytes`.
        PayloadTooLarge = "payload_too_large", 413, {
            limit: "the limit in bytes",
        };
        /// The route exists, the method does not.
        MethodNotAllowed = "method_not_allowed", 405, {};
        /// A route guarded by another plugin (`plugin:<name>`), and that plugin could not say
        /// who the caller is: it is disabled or not active, it timed out or panicked, or its
        /// answer had no `identity`. Retry later (`Retry-After`).
        AuthUnavailable = "auth_unavailable", 503, {
            plugin: "the auth plugin",
        };
        /// The request's body did not arrive within `[app] body_timeout_ms` of its head
        /// (application listener).
        BodyTimeout = "body_timeout", 408, {
            after_ms: "the limit in milliseconds",
        };
        /// A plugin already has `[app] max_streams` Server-Sent Event streams open on the
        /// application listener; the new stream is refused (with `Retry-After`).
        TooManyStreams = "too_many_streams", 503, {
            plugin: "the plugin",
            limit: "the most streams open at once per plugin",
        };
    }
}

/// The code of an error response: the library's or the API layer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    /// A code of the core library.
    Host(ErrorCode),
    /// A code of the API layer.
    Api(ApiCode),
}

impl Code {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Host(c) => c.as_str(),
            Self::Api(c) => c.as_str(),
        }
    }

    pub(crate) fn status(self) -> StatusCode {
        let status = match self {
            Self::Host(c) => c.http_status(),
            Self::Api(c) => c.http_status(),
        };
        // Every table status is a valid error status (a unit test checks them all).
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// An error on its way to an HTTP client.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// What the core library failed with.
    #[error(transparent)]
    Host(#[from] Error),
    /// The admin token is missing or wrong.
    #[error("unauthorized: {message}")]
    Unauthorized {
        /// What was wrong (never the token itself).
        message: String,
    },
    /// The request body is larger than the configured limit.
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The path exists but not with this method.
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// The path.
        path: String,
    },
    /// No route has this path.
    #[error("no route {method} {path}")]
    RouteNotFound {
        /// The method used.
        method: String,
        /// The path.
        path: String,
    },
    /// The auth plugin of a `plugin:<name>` route could not answer.
    #[error("the auth plugin `{plugin}` could not answer: {message}")]
    AuthUnavailable {
        /// The auth plugin.
        plugin: String,
        /// What went wrong.
        message: String,
    },
    /// A request body did not arrive in time (application listener).
    #[error("the request body did not arrive within {after:?}")]
    BodyTimeout {
        /// The limit.
        after: Duration,
    },
    /// An admin request did not finish within the configured time.
    #[error("request did not finish within {after:?}")]
    RequestTimeout {
        /// The limit.
        after: Duration,
    },
    /// A plugin has as many event streams open as it may.
    #[error("plugin `{plugin}` already has {limit} event streams open")]
    TooManyStreams {
        /// The plugin.
        plugin: String,
        /// The most streams open at once per plugin.
        limit: usize,
    },
}

impl ApiError {
    /// The code of the response body.
    pub(crate) fn code(&self) -> Code {
        match self {
            Self::Host(e) => Code::Host(e.code()),
            Self::Unauthorized { .. } => Code::Api(ApiCode::Unauthorized),
            Self::PayloadTooLarge { .. } => Code::Api(ApiCode::PayloadTooLarge),
            Self::MethodNotAllowed { .. } => Code::Api(ApiCode::MethodNotAllowed),
            Self::RouteNotFound { .. } => Code::Host(ErrorCode::NotFound),
            Self::RequestTimeout { .. } => Code::Host(ErrorCode::Timeout),
            Self::AuthUnavailable { .. } => Code::Api(ApiCode::AuthUnavailable),
            Self::BodyTimeout { .. } => Code::Api(ApiCode::BodyTimeout),
            Self::TooManyStreams { .. } => Code::Api(ApiCode::TooManyStreams),
        }
    }

    /// The body's `details`; no wildcard, so a new variant must say what it gives.
    pub(crate) fn details(&self) -> Value {
        match self {
            Self::Host(e) => e.details(),
            Self::PayloadTooLarge { limit } => json!({ "limit": limit }),
            Self::AuthUnavailable { plugin, .. } => json!({ "plugin": plugin }),
            Self::BodyTimeout { after } => json!({ "after_ms": after.as_millis() }),
            Self::TooManyStreams { plugin, limit } => json!({ "plugin": plugin, "limit": limit }),
            Self::Unauthorized { .. }
            | Self::MethodNotAllowed { .. }
            | Self::RouteNotFound { .. }
            | Self::RequestTimeout { .. } => json!({}),
        }
    }

    /// The message with its causes (the library's chain, where dlerror's text lives).
    pub(crate) fn message(&self) -> String {
        match self {
            Self::Host(e) => e.chain(),
            other => other.to_string(),
        }
    }
}

/// The code for an error status that did not come from an [`ApiError`] (an extractor or layer
/// of the HTTP stack answered on its own).
fn code_of_status(status: StatusCode) -> Code {
    match status {
        StatusCode::UNAUTHORIZED => Code::Api(ApiCode::Unauthorized),
        StatusCode::NOT_FOUND => Code::Host(ErrorCode::NotFound),
        StatusCode::METHOD_NOT_ALLOWED => Code::Api(ApiCode::MethodNotAllowed),
        StatusCode::PAYLOAD_TOO_LARGE => Code::Api(ApiCode::PayloadTooLarge),
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => Code::Host(ErrorCode::Timeout),
        StatusCode::SERVICE_UNAVAILABLE => Code::Host(ErrorCode::BackendUnavailable),
        s if s.is_server_error() => Code::Host(ErrorCode::Internal),
        _ => Code::Host(ErrorCode::BadRequest),
    }
}

/// Middleware: every error response leaves with the API's JSON error body. Handlers already
/// answer so; this catches what the HTTP stack answers by itself (a rejection of an extractor
/// or layer), keeping its status and using its text as the message.
/// Marks a response that a plugin's route handler wrote: [`json_errors`] leaves it as it is
/// (its body, content type and headers are the plugin's, whatever its status).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HandlerAnswer;

pub(crate) async fn json_errors(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(req).await;
    if response.extensions().get::<HandlerAnswer>().is_some() {
        return response;
    }
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
        let code = self.code();
        let status = code.status();
        let message = self.message();
        if status.is_server_error() {
            tracing::error!(target: "api", code = code.as_str(), error = %message, "request failed");
        }
        let body = json!({
            "error": {
                "code": code.as_str(),
                "message": message,
                "details": self.details(),
            }
        });
        (status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_in_the_tables_is_an_error_status() {
        let codes = ErrorCode::ALL
            .iter()
            .map(|c| Code::Host(*c))
            .chain(ApiCode::ALL.iter().map(|c| Code::Api(*c)));
        for code in codes {
            let s = code.status();
            assert!(s.is_client_error() || s.is_server_error(), "{code:?}");
            assert_eq!(
                s == StatusCode::INTERNAL_SERVER_ERROR,
                code == Code::Host(ErrorCode::Internal),
                "{code:?} answers {s}"
            );
        }
        assert_eq!(
            Code::Host(ErrorCode::CircularDependency).status(),
            StatusCode::CONFLICT
        );
        assert_eq!(
            Code::Api(ApiCode::Unauthorized).status(),
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn api_codes_do_not_reuse_library_codes() {
        for api in ApiCode::ALL {
            assert!(
                ErrorCode::ALL.iter().all(|c| c.as_str() != api.as_str()),
                "{api} is also a library code"
            );
        }
    }
}
