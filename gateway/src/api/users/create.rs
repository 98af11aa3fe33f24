//! `POST /v1/users`: an admin creates a user from `{"username","password"}`;
//! the answer is 201 `{"users":[{"username"}]}`.

use super::{admin_only, username_problem, UserNameResponse};
use crate::auth::{self, Caller};
use crate::error::{ApiError, ErrorKind};
use crate::extract::ApiJson;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use shardgate_core::policy::UserRole;
use shardgate_core::store::users::UserRecord;

/// The body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    /// The new user's name (see [`super::username_problem`]).
    pub username: String,
    /// Its password, under the on-prem password rules.
    pub password: String,
}

/// Creates the user with the role `USER` (the on-prem client has one admin,
/// `admin`, and no way to make another). The user may log in at once with
/// this password: an admin chose it, so no change is required.
///
/// A name already taken is refused with 409 before any hashing; two
/// webapps creating the same name at once are told apart by the database.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateUserRequest>,
) -> Result<(StatusCode, Json<UserNameResponse>), ApiError> {
    admin_only(&caller, "create users")?;
    if let Some(problem) = username_problem(&body.username) {
        return Err(ApiError::invalid(format!("username is refused: {problem}")));
    }
    let problems = auth::password_problems(&body.password);
    if !problems.is_empty() {
        return Err(ApiError::invalid(format!("password is refused: {}", problems.join("; "))));
    }
    if state.store.user(&body.username).await?.is_some() {
        return Err(name_taken(&body.username));
    }
    let user = UserRecord {
        username: body.username,
        password_hash: auth::hash_password(&body.password).await?,
        role: UserRole::User.as_str().to_string(),
        must_change: false,
    };
    if !state.store.ensure_user(&user).await? {
        return Err(name_taken(&user.username));
    }
    tracing::info!(user = %user.username, "user created");
    Ok((StatusCode::CREATED, Json(UserNameResponse::of(&user.username))))
}

fn name_taken(name: &str) -> ApiError {
    ApiError::new(ErrorKind::Conflict, format!("a user named {name:?} exists already"))
}
