//! [`refuse_oversized_heads`]: the size limits of a request's URI and headers,
//! answered in the on-prem error format.
//!
//! hyper refuses a head over its own limits with a bare 414 or 431 and no
//! body, before any layer runs. So the server's limits are set generously
//! (`shardgate_core::http_server`: 64 KiB of head, 256 header lines) and the
//! real ones are checked here, well below them, where the answer can carry
//! the on-prem body. Only a head beyond hyper's limits still gets hyper's.

use crate::error::{ApiError, ErrorKind};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The longest request target (path and query) accepted.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// The most header bytes accepted (names, values and line overhead).
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// The most header lines accepted.
pub const MAX_HEADER_LINES: usize = 100;

// The checks here must bite before hyper's own refusals do.
const _: () = assert!(MAX_URI_BYTES + MAX_HEADER_BYTES < shardgate_core::http_server::MAX_REQUEST_HEAD_BYTES);
const _: () = assert!(MAX_HEADER_LINES < shardgate_core::http_server::MAX_HEADER_LINES);

/// Tower middleware: answers 414 for a URI over [`MAX_URI_BYTES`] and 431 for
/// headers over [`MAX_HEADER_BYTES`] or [`MAX_HEADER_LINES`].
pub async fn refuse_oversized_heads(request: Request, next: Next) -> Response {
    let uri_bytes = request.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_bytes > MAX_URI_BYTES {
        let details = format!("the request URI is {uri_bytes} bytes long; the limit is {MAX_URI_BYTES}");
        return ApiError::new(ErrorKind::UriTooLong, details).into_response();
    }
    let headers = request.headers();
    let header_bytes: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    if headers.len() > MAX_HEADER_LINES || header_bytes > MAX_HEADER_BYTES {
        let details = format!(
            "the request has {} header lines in {header_bytes} bytes; the limits are {MAX_HEADER_LINES} lines \
             and {MAX_HEADER_BYTES} bytes",
            headers.len()
        );
        return ApiError::new(ErrorKind::HeadersTooLarge, details).into_response();
    }
    next.run(request).await
}
