//! `GET /v1/users/{username}`: a user's name and role, as
//! `{"users":[{"ROLES":"ROLE_ADMIN"|"ROLE_USER","username"}]}`.

use super::{admin_or_self, no_such_user, path_user};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use shardgate_core::policy::UserRole;

/// Answers an admin about any user, and a user about itself only (403 for
/// any other name, whether it exists or not).
pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
) -> Result<Json<UserResponse>, ApiError> {
    admin_or_self(&caller, &username)?;
    let name = path_user(&username)?;
    let user = state.store.user(name).await?.ok_or_else(|| no_such_user(name))?;
    let roles = match UserRole::from_stored(&user.role) {
        UserRole::Admin => "ROLE_ADMIN",
        UserRole::User => "ROLE_USER",
    };
    Ok(Json(UserResponse { users: vec![UserView { roles, username: user.username }] }))
}

/// The answer: `{"users":[{"ROLES","username"}]}`.
#[derive(Debug, Serialize)]
pub struct UserResponse {
    /// The one user asked about.
    pub users: Vec<UserView>,
}

/// A user as the on-prem client shows it.
#[derive(Debug, Serialize)]
pub struct UserView {
    /// `ROLE_ADMIN` or `ROLE_USER` (the on-prem field name is upper case).
    #[serde(rename = "ROLES")]
    pub roles: &'static str,
    /// Login name.
    pub username: String,
}
