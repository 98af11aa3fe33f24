//! `POST /v1/users/logout`: revokes the bearer token the request carries, as
//! the on-prem client does; the user's other tokens stay valid. The answer
//! is the on-prem `{"meta":{...}}`.

use crate::auth::{self, Caller, ClientAddr};
use crate::error::ApiError;
use crate::state::AppState;
use crate::views::Meta;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::Serialize;
use shardgate_core::policy::Principal;

/// Revokes the caller's token. A caller without a bearer token (the API key)
/// has nothing to log out of: 401.
pub async fn logout(
    State(state): State<AppState>,
    caller: Caller,
    client: ClientAddr,
    headers: HeaderMap,
) -> Result<Json<LogoutResponse>, ApiError> {
    let token = auth::bearer_token(&headers)
        .ok_or_else(|| ApiError::unauthenticated("logout revokes the bearer token sent with it; none was sent"))?;
    let hash = auth::token_hash(token);
    state.store.revoke_token(&hash).await?;
    state.tokens.evict(&hash);
    if let Caller(Principal::User { name: username, .. }) = &caller {
        tracing::info!(user = %username, client = %client, "logged out: token revoked");
    }
    Ok(Json(LogoutResponse { meta: Meta::current() }))
}

/// The answer: `{"meta":{"api_status","version"}}`.
#[derive(Debug, Serialize)]
pub struct LogoutResponse {
    /// This build's meta.
    pub meta: Meta,
}
