//! `DELETE /v1/users/{username}`: an admin deletes a user; the answer is
//! `{"users":[{"username"}]}`.

use super::{admin_only, no_such_user, path_user, UserNameResponse};
use crate::auth::{Caller, DEFAULT_ADMIN};
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::Json;

/// Deletes the user and every token of theirs in one transaction. On this
/// webapp its tokens stop at once; on the others within the token cache's
/// second, after which they ask the database and find no user.
///
/// The built-in `admin` cannot be deleted (403): it is the one admin, and
/// without it nobody could manage users again.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
) -> Result<Json<UserNameResponse>, ApiError> {
    admin_only(&caller, "delete users")?;
    let name = path_user(&username)?;
    if name == DEFAULT_ADMIN {
        return Err(ApiError::forbidden("the built-in admin cannot be deleted"));
    }
    let revoked = state.store.delete_user(name).await?.ok_or_else(|| no_such_user(name))?;
    state.tokens.clear();
    tracing::info!(user = %name, "user deleted; {revoked} tokens revoked");
    Ok(Json(UserNameResponse::of(name)))
}
