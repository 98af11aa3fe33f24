//! The one error type of the REST API, rendered in the on-prem format
//! `{"errors":[{"code":N,"title":"...","details":"..."}]}`.
//!
//! Codes follow the on-prem client's error reference where it has one:
//!
//! | code | title                      | HTTP | used for                                             |
//! |------|----------------------------|------|------------------------------------------------------|
//! | 1000 | Generic error              | 409  | settings changed under us too many times in a row; a user name taken |
//! | 1001 | Message too long           | 400  | text body over 4096 characters                       |
//! | 1005 | Access denied              | 401  | missing or bad credentials, token, or API key; an authorizer's 401 |
//! | 1005 | Access denied              | 403  | the authorizer's 403 (role, Apikey scope, a plugin's rule); the user endpoints' role rules |
//! | 1006 | Resource not found         | 404  | no such endpoint, plugin kind, uploaded plugin, or user |
//! | 1008 | Required parameter is missing | 400 | a required field or the body is absent            |
//! | 1009 | Parameter value is not valid  | 400 | a refused value or type; a router's refusal; an unloadable plugin |
//! | 1010 | Parameter is not required  | 400  | an unknown field (I6: nothing is silently ignored)   |
//! | 1011 | Service not ready          | 503  | no shard count yet (no master ran); the plugin host had no room |
//! | 1015 | Too many requests          | 429  | the authorizer's 429; login attempts over their budget; password checks queued full |
//! | 1014 | Internal error             | 500  | a bug or an unexpected failure                       |
//! | 1023 | Database error occurred    | 500  | the database refused or could not be reached         |
//! | 1024 | Password change required   | 403  | the default password must be changed first           |
//! | 1025 | Invalid request            | 400  | malformed JSON, wrong content type                   |
//! | 1025 | Invalid request            | 405  | wrong method (the `Allow` header lists the right ones) |
//! | 1025 | Invalid request            | 413  | body over the size limit                             |
//! | 1025 | Invalid request            | 414  | request URI over the limit                           |
//! | 1025 | Invalid request            | 431  | request headers over the limit                       |
//!
//! Handlers and extractors return [`ApiError`]; an unknown route is answered
//! by [`no_such_endpoint`]. Whatever axum or a tower layer answers on its own
//! (405, a stray rejection) is rewritten into the same format by
//! [`onprem_format_for_stray_errors`], and oversized request heads are refused
//! in it by `request_head`, so no plain-text error ever leaves the node.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use shardgate_core::store::StoreError;

/// The kinds of failure the API reports, each with its on-prem code and HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 1000, 409: a conflict with what is stored (a concurrent writer, a taken name).
    Conflict,
    /// 1001, 400: a text body over the limit.
    MessageTooLong,
    /// 1005, 401: no valid credentials.
    Unauthenticated,
    /// 1005, 403: valid credentials without the right to do this.
    Forbidden,
    /// 1006, 404: no such endpoint or resource.
    NotFound,
    /// 1008, 400: a required parameter is absent.
    MissingParameter,
    /// 1009, 400: a parameter has a refused value.
    InvalidParameter,
    /// 1010, 400: a parameter the endpoint does not know.
    UnknownParameter,
    /// 1011, 503: the cluster cannot take this request yet.
    ServiceNotReady,
    /// 1015, 429: the caller sends too much.
    TooManyRequests,
    /// 1014, 500: an unexpected failure.
    Internal,
    /// 1023, 500: the database failed.
    Database,
    /// 1024, 403: the password must be changed before anything else.
    PasswordChangeRequired,
    /// 1025, 400: the request cannot be read (malformed JSON, content type).
    InvalidRequest,
    /// 1025, 405: the endpoint exists but not with this method.
    MethodNotAllowed,
    /// 1025, 413: the body is over the size limit.
    PayloadTooLarge,
    /// 1025, 414: the request URI is over the size limit.
    UriTooLong,
    /// 1025, 431: the request headers are over the size limit.
    HeadersTooLarge,
}

impl ErrorKind {
    /// The on-prem error code.
    pub fn code(self) -> u32 {
        match self {
            ErrorKind::Conflict => 1000,
            ErrorKind::MessageTooLong => 1001,
            ErrorKind::Unauthenticated | ErrorKind::Forbidden => 1005,
            ErrorKind::NotFound => 1006,
            ErrorKind::MissingParameter => 1008,
            ErrorKind::InvalidParameter => 1009,
            ErrorKind::UnknownParameter => 1010,
            ErrorKind::ServiceNotReady => 1011,
            ErrorKind::TooManyRequests => 1015,
            ErrorKind::Internal => 1014,
            ErrorKind::Database => 1023,
            ErrorKind::PasswordChangeRequired => 1024,
            ErrorKind::InvalidRequest
            | ErrorKind::MethodNotAllowed
            | ErrorKind::PayloadTooLarge
            | ErrorKind::UriTooLong
            | ErrorKind::HeadersTooLarge => 1025,
        }
    }

    /// The on-prem error title.
    pub fn title(self) -> &'static str {
        match self {
            ErrorKind::Conflict => "Generic error",
            ErrorKind::MessageTooLong => "Message too long",
            ErrorKind::Unauthenticated | ErrorKind::Forbidden => "Access denied",
            ErrorKind::NotFound => "Resource not found",
            ErrorKind::MissingParameter => "Required parameter is missing",
            ErrorKind::InvalidParameter => "Parameter value is not valid",
            ErrorKind::UnknownParameter => "Parameter is not required",
            ErrorKind::ServiceNotReady => "Service not ready",
            ErrorKind::TooManyRequests => "Too many requests",
            ErrorKind::Internal => "Internal error",
            ErrorKind::Database => "Database error occurred",
            ErrorKind::PasswordChangeRequired => "Password change required",
            ErrorKind::InvalidRequest
            | ErrorKind::MethodNotAllowed
            | ErrorKind::PayloadTooLarge
            | ErrorKind::UriTooLong
            | ErrorKind::HeadersTooLarge => "Invalid request",
        }
    }

    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::MessageTooLong
            | ErrorKind::MissingParameter
            | ErrorKind::InvalidParameter
            | ErrorKind::UnknownParameter
            | ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden | ErrorKind::PasswordChangeRequired => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::UriTooLong => StatusCode::URI_TOO_LONG,
            ErrorKind::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorKind::ServiceNotReady => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Internal | ErrorKind::Database => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The kind a bare HTTP status stands for, for responses axum made itself.
    fn of_status(status: StatusCode) -> ErrorKind {
        match status {
            StatusCode::UNAUTHORIZED => ErrorKind::Unauthenticated,
            StatusCode::FORBIDDEN => ErrorKind::Forbidden,
            StatusCode::NOT_FOUND => ErrorKind::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => ErrorKind::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => ErrorKind::PayloadTooLarge,
            StatusCode::URI_TOO_LONG => ErrorKind::UriTooLong,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ErrorKind::HeadersTooLarge,
            StatusCode::CONFLICT => ErrorKind::Conflict,
            StatusCode::SERVICE_UNAVAILABLE => ErrorKind::ServiceNotReady,
            StatusCode::TOO_MANY_REQUESTS => ErrorKind::TooManyRequests,
            s if s.is_server_error() => ErrorKind::Internal,
            _ => ErrorKind::InvalidRequest,
        }
    }
}

/// A failed request: what kind of failure, and details an API user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} ({}): {details}", kind.title(), kind.code())]
pub struct ApiError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Why, in a sentence that says what to do about it.
    pub details: String,
}

impl ApiError {
    /// An error of `kind` with `details`.
    pub fn new(kind: ErrorKind, details: impl Into<String>) -> ApiError {
        ApiError { kind, details: details.into() }
    }

    /// A required parameter is absent (1008).
    pub fn missing(details: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::MissingParameter, details)
    }

    /// A parameter has a refused value (1009).
    pub fn invalid(details: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::InvalidParameter, details)
    }

    /// No valid credentials (401, 1005).
    pub fn unauthenticated(details: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::Unauthenticated, details)
    }

    /// Credentials without the right (403, 1005).
    pub fn forbidden(details: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::Forbidden, details)
    }

    /// The database failed; the cause is logged by the caller, not shown
    /// (its message can name tables and hosts).
    pub fn database() -> ApiError {
        ApiError::new(
            ErrorKind::Database,
            "the database failed or could not be reached; nothing was changed, retry later",
        )
    }

    /// An unexpected failure (1014); the cause is logged, not shown.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!("internal error: {cause}");
        ApiError::new(ErrorKind::Internal, "an unexpected error occurred; see the webapp log")
    }

    /// The response body.
    pub fn body(&self) -> serde_json::Value {
        json!({"errors": [{
            "code": self.kind.code(),
            "title": self.kind.title(),
            "details": self.details,
        }]})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.kind.status(), axum::Json(self.body())).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        // The database's own message can name tables and hosts: it goes to the
        // operator's log, and the API user gets what it means for them.
        tracing::error!("database failure: {e}");
        ApiError::database()
    }
}

/// The fallback of the router: no endpoint has this path (404).
pub async fn no_such_endpoint(method: Method, uri: Uri) -> ApiError {
    ApiError::new(ErrorKind::NotFound, format!("there is no endpoint {method} {}", uri.path()))
}

/// Tower middleware: rewrites any error response that is not already JSON
/// (axum's 404 and 405, a rejection from a layer) into the on-prem format,
/// keeping its status and headers.
pub async fn onprem_format_for_stray_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let kind = ErrorKind::of_status(status);
    let details = match kind {
        ErrorKind::NotFound => format!("there is no endpoint {method} {path}"),
        // The router adds the `Allow` header after this layer has run.
        ErrorKind::MethodNotAllowed => {
            format!("{method} is not allowed on {path}; the Allow header lists the methods it takes")
        }
        _ if text.is_empty() => status.canonical_reason().unwrap_or("request refused").to_string(),
        _ => text,
    };
    let body = serde_json::to_vec(&ApiError::new(kind, details).body()).expect("error body serializes");
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_renders_the_onprem_shape_with_its_code() {
        let err = ApiError::invalid("to must be digits");
        assert_eq!(
            err.body(),
            json!({"errors":[{"code":1009,"title":"Parameter value is not valid","details":"to must be digits"}]})
        );
        assert_eq!(err.kind.status(), StatusCode::BAD_REQUEST);
        assert_eq!(ErrorKind::of_status(StatusCode::METHOD_NOT_ALLOWED).code(), 1025);
        assert_eq!(ErrorKind::of_status(StatusCode::BAD_GATEWAY), ErrorKind::Internal);
    }
}
