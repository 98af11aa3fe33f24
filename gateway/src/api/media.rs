//! `POST /v1/media`, `GET /v1/media/{id}` and `DELETE /v1/media/{id}`: media
//! in the media directory every node shares, so that any webapp serves what
//! any other stored.
//!
//! An upload is the raw body with its `Content-Type`, at most 64 MiB,
//! streamed to disk as it arrives (memory does not grow with it) and
//! refused as soon as it passes the limit, leaving no file. The file is
//! written before its row and its row deleted before its file, so the API
//! never names a medium that is not whole. Ids that are not media ids
//! (`../x`, anything but a UUID) are unknown media: 404.

use crate::error::{ApiError, ErrorKind};
use crate::state::AppState;
use crate::views::Meta;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Json;
use serde::Serialize;
use shardgate_core::media_dir::{MediaError, MediaId};
use shardgate_core::store::media::{MediaOrigin, MediaRecord};
use tokio_util::io::ReaderStream;

/// Largest medium an upload may carry, in bytes.
pub const MEDIA_LIMIT: u64 = 64 << 20;
/// Bytes read from disk per chunk of a download.
const READ_CHUNK: usize = 64 * 1024;
/// Longest `Content-Type` stored (the column's size).
const MAX_CONTENT_TYPE: usize = 191;

/// `POST`: stores the body as a new medium; 201 with its id.
pub async fn upload(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<UploadResponse>), ApiError> {
    let mime_type = content_type(&headers)?;
    // A declared length over the limit is refused before a byte is read.
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MEDIA_LIMIT) {
        return Err(too_large());
    }
    let stored = state.media.store_stream(body.into_data_stream(), MEDIA_LIMIT).await.map_err(refused)?;
    if stored.size == 0 {
        state.media.remove(&stored.id).await.map_err(refused)?;
        return Err(ApiError::missing("the body is empty: send the medium's bytes as the body"));
    }
    let record = MediaRecord {
        id: stored.id.to_string(),
        mime_type,
        sha256: stored.sha256,
        size: i64::try_from(stored.size).unwrap_or(i64::MAX),
        origin: MediaOrigin::Upload,
        created_at: 0,
    };
    if let Err(e) = state.store.insert_media(&record).await {
        // Without its row the file can never be served: remove it.
        if let Err(cleanup) = state.media.remove(&stored.id).await {
            tracing::warn!("cannot remove the unrecorded medium {}: {cleanup}", stored.id);
        }
        return Err(e.into());
    }
    tracing::debug!(id = %stored.id, size = stored.size, "medium uploaded");
    Ok((
        StatusCode::CREATED,
        Json(UploadResponse { media: vec![UploadedMedia { id: record.id }], meta: Meta::current() }),
    ))
}

/// `GET`: the medium's bytes, streamed from disk, with its `Content-Type`.
pub async fn download(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = media_id(&id)?;
    let record = state.store.media(&id.to_string()).await?.ok_or_else(|| no_such_media(&id))?;
    let Some(file) = state.media.open(&id).await.map_err(refused)? else {
        tracing::warn!(%id, "the medium has a row but no file in the media directory");
        return Err(no_such_media(&id));
    };
    let length = file.metadata().await.map_err(ApiError::internal)?.len();
    let content_type = HeaderValue::from_str(&record.mime_type).map_err(ApiError::internal)?;
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, length)
        .body(Body::from_stream(ReaderStream::with_capacity(file, READ_CHUNK)))
        .map_err(ApiError::internal)
}

/// `DELETE`: forgets the medium, then removes its file.
pub async fn remove(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<DeleteResponse>, ApiError> {
    let id = media_id(&id)?;
    if !state.store.delete_media(&id.to_string()).await? {
        return Err(no_such_media(&id));
    }
    if !state.media.remove(&id).await.map_err(refused)? {
        tracing::warn!(%id, "the deleted medium had no file in the media directory");
    }
    Ok(Json(DeleteResponse { meta: Meta::current() }))
}

/// The medium's type: the `Content-Type` header, required, of the form
/// `type/subtype` with optional parameters (`audio/ogg; codecs=opus`).
fn content_type(headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers.get(header::CONTENT_TYPE).ok_or_else(|| {
        ApiError::missing("the Content-Type header is required: the media type of the body, such as image/jpeg")
    })?;
    let refused = || ApiError::invalid(format!("Content-Type must be a media type such as image/jpeg, not {value:?}"));
    let text = value.to_str().map_err(|_| refused())?.trim();
    let essence = text.split(';').next().unwrap_or("").trim();
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b));
    match essence.split_once('/') {
        Some((kind, subtype)) if token(kind) && token(subtype) && text.len() <= MAX_CONTENT_TYPE => {}
        _ => return Err(refused()),
    }
    if essence.eq_ignore_ascii_case("multipart/form-data") {
        return Err(ApiError::invalid(
            "send the medium's bytes as the body with its own Content-Type (curl --data-binary), not a form",
        ));
    }
    Ok(text.to_string())
}

/// The id of a path; anything but a media id names no medium.
fn media_id(id: &str) -> Result<MediaId, ApiError> {
    id.parse().map_err(|_| ApiError::new(ErrorKind::NotFound, format!("there is no medium {id:?}")))
}

fn no_such_media(id: &MediaId) -> ApiError {
    ApiError::new(ErrorKind::NotFound, format!("there is no medium {id}"))
}

fn too_large() -> ApiError {
    ApiError::new(ErrorKind::PayloadTooLarge, format!("a medium may be at most {MEDIA_LIMIT} bytes (64 MiB)"))
}

/// The API's answer to a media directory failure.
fn refused(e: MediaError) -> ApiError {
    match e {
        MediaError::TooLarge { .. } => too_large(),
        MediaError::Body(why) => ApiError::new(ErrorKind::InvalidRequest, format!("the body could not be read: {why}")),
        e @ MediaError::Io { .. } => ApiError::internal(e),
    }
}

/// The answer to an upload: `{"media":[{"id"}],"meta":{...}}`.
#[derive(Debug, Serialize)]
pub struct UploadResponse {
    /// The stored medium.
    pub media: Vec<UploadedMedia>,
    /// API status and version.
    pub meta: Meta,
}

/// The id of a stored medium.
#[derive(Debug, Serialize)]
pub struct UploadedMedia {
    /// Media id, for messages and `GET /v1/media/{id}`.
    pub id: String,
}

/// The answer to a delete: `{"meta":{...}}`.
#[derive(Debug, Serialize)]
pub struct DeleteResponse {
    /// API status and version.
    pub meta: Meta,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(content_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        headers
    }

    #[test]
    fn content_type_is_required_and_must_be_a_media_type() {
        assert_eq!(content_type(&headers("audio/ogg; codecs=opus")).unwrap(), "audio/ogg; codecs=opus");
        assert_eq!(content_type(&HeaderMap::new()).unwrap_err().kind, ErrorKind::MissingParameter);
        for bad in ["jpeg", "image/", "/png", "image/jp eg", "multipart/form-data; boundary=x"] {
            assert_eq!(content_type(&headers(bad)).unwrap_err().kind, ErrorKind::InvalidParameter, "{bad}");
        }
    }
}
