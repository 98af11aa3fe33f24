//! [`ApiJson`]: the JSON body extractor of every endpoint. It answers bad
//! bodies with on-prem errors that name the problem and the field, by its
//! path in the body (`template.components[0].index: invalid type ...`),
//! instead of axum's plain text rejections.

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
        parse(&bytes).map(ApiJson)
    }
}

/// The body as a `T`, or the on-prem error naming what is wrong and where.
fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut json = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let path = e.path().iter().next().map(|_| e.path().to_string());
        json_refused(path, e.inner())
    })?;
    // Trailing data after the value, as `serde_json::from_slice` refuses it.
    json.end().map_err(|e| json_refused(None, &e))?;
    Ok(value)
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

/// Maps a serde error to the on-prem code of its cause; `path` is where in
/// the body it happened, `None` at the top.
fn json_refused(path: Option<String>, e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    let cause = e.to_string();
    let message = match path {
        Some(path) => format!("{path}: {cause}"),
        None => cause.clone(),
    };
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::new(ErrorKind::InvalidRequest, format!("the body is not valid JSON: {message}"))
        }
        Category::Data if cause.starts_with("unknown field") => ApiError::new(ErrorKind::UnknownParameter, message),
        Category::Data if cause.starts_with("missing field") => ApiError::missing(message),
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
        inner: Option<Vec<Inner>>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        n: u32,
    }

    fn refused(json: &str) -> ApiError {
        parse::<Probe>(json.as_bytes()).unwrap_err()
    }

    #[test]
    fn serde_failures_map_to_the_code_of_their_cause() {
        assert_eq!(refused("{\"to\":").kind, ErrorKind::InvalidRequest);
        assert_eq!(refused("{\"to\":\"1\",\"x\":1}").kind, ErrorKind::UnknownParameter);
        assert_eq!(refused("{}").kind, ErrorKind::MissingParameter);
        assert_eq!(refused("{\"to\":5}").kind, ErrorKind::InvalidParameter);
        assert_eq!(refused("{\"to\":\"1\"} x").kind, ErrorKind::InvalidRequest);
    }

    #[test]
    fn nested_failures_name_the_field_by_its_path() {
        let wrong = refused("{\"to\":\"1\",\"inner\":[{\"n\":1},{\"n\":\"two\"}]}");
        assert_eq!(wrong.kind, ErrorKind::InvalidParameter);
        assert!(wrong.details.starts_with("inner[1].n: "), "{}", wrong.details);
        let unknown = refused("{\"to\":\"1\",\"inner\":[{\"n\":1,\"m\":2}]}");
        assert_eq!(unknown.kind, ErrorKind::UnknownParameter);
        assert!(unknown.details.contains("inner[0]") && unknown.details.contains("`m`"), "{}", unknown.details);
    }

    #[test]
    fn json_content_types_are_recognised() {
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("application/vnd.api+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
    }
}
