//! `PUT /v1/users/{username}`: sets a user's password from `{"password"}`;
//! the answer is `{"users":[{"username"}]}`.

use super::{admin_or_self, no_such_user, path_user, UserNameResponse};
use crate::auth::{self, Caller};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;

/// The body. The password is all that can change: the on-prem client keeps
/// one admin, so a role in the body is refused as an unknown field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    /// The new password, under the on-prem password rules.
    pub password: String,
}

/// An admin sets any user's password, a user its own (403 for another name).
///
/// Every token of the user is revoked in the same transaction, the caller's
/// own included when it changed its own password. The on-prem reference
/// says its password change leaves tokens valid; this is the strict choice,
/// since a password is changed when someone else may know it, and then they
/// may hold a token too. On this webapp the tokens stop at once, on the
/// others within the token cache's second.
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
    ApiJson(body): ApiJson<UpdateUserRequest>,
) -> Result<Json<UserNameResponse>, ApiError> {
    admin_or_self(&caller, &username)?;
    let name = path_user(&username)?;
    let problems = auth::password_problems(&body.password);
    if !problems.is_empty() {
        return Err(ApiError::invalid(format!("password is refused: {}", problems.join("; "))));
    }
    // Looked up before hashing, so that an unknown name costs no hash.
    if state.store.user(name).await?.is_none() {
        return Err(no_such_user(name));
    }
    let hash = auth::hash_password(&body.password).await?;
    let revoked = state.store.set_password(name, &hash).await?.ok_or_else(|| no_such_user(name))?;
    state.tokens.clear();
    tracing::info!(user = %name, "password changed through PUT /v1/users; {revoked} tokens revoked");
    Ok(Json(UserNameResponse::of(name)))
}
