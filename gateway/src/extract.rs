//! [`ApiJson`]: the JSON body extractor of every endpoint. It answers bad
//! bodies with on-prem errors that name the problem, instead of axum's plain
//! text rejections.

use crate::error::{ApiError, ErrorKind};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

/// Largest JSON body any endpoint takes (enforced by `DefaultBodyLimit` in `app.rs`).
pub const JSON_BODY_LIMIT: usize = 64 * 1024;

/// A JSON request body. An absent body reads as JSON `null`, so that an
/// `ApiJson<Option<T>>` makes the body optional and any other `T` requires it.
///
/// A `Content-Type` other than JSON is refused; a missing one is accepted,
/// because the official examples sometimes omit it on small bodies.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = request.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("").to_string());
        let bytes = Bytes::from_request(request, state).await.map_err(body_unreadable)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return serde_json::from_slice(b"null")
                .map(ApiJson)
                .map_err(|_| ApiError::missing("this endpoint needs a JSON body"));
        }
        if let Some(content_type) = content_type.filter(|ct| !is_json(ct)) {
            return Err(ApiError::new(
                ErrorKind::InvalidRequest,
                format!("the body must be JSON sent with Content-Type: application/json, not {content_type:?}"),
            ));
        }
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|e| json_refused(&e))
    }
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn body_unreadable(rejection: BytesRejection) -> ApiError {
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!("the body is over the limit of {JSON_BODY_LIMIT} bytes for this endpoint"),
        )
    } else {
        ApiError::new(ErrorKind::InvalidRequest, format!("the body could not be read: {rejection}"))
    }
}

/// Maps a serde error to the on-prem code of its cause.
fn json_refused(e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    let message = e.to_string();
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::new(ErrorKind::InvalidRequest, format!("the body is not valid JSON: {message}"))
        }
        Category::Data if message.starts_with("unknown field") => ApiError::new(ErrorKind::UnknownParameter, message),
        Category::Data if message.starts_with("missing field") => ApiError::missing(message),
        Category::Data => ApiError::invalid(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Probe {
        to: String,
    }

    fn refused(json: &str) -> ErrorKind {
        json_refused(&serde_json::from_str::<Probe>(json).unwrap_err()).kind
    }

    #[test]
    fn serde_failures_map_to_the_code_of_their_cause() {
        assert_eq!(refused("{\"to\":"), ErrorKind::InvalidRequest);
        assert_eq!(refused("{\"to\":\"1\",\"x\":1}"), ErrorKind::UnknownParameter);
        assert_eq!(refused("{}"), ErrorKind::MissingParameter);
        assert_eq!(refused("{\"to\":5}"), ErrorKind::InvalidParameter);
    }

    #[test]
    fn json_content_types_are_recognised() {
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("application/vnd.api+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
    }
}
