//! `POST /v1/users/login`: trades HTTP Basic credentials for a bearer token,
//! and changes the password when the body carries `new_password` (which the
//! first login of the default admin must do). Attempts are limited per client
//! address and per user name (`login_limits`).

use crate::auth::{self, ClientAddr};
use crate::error::{ApiError, ErrorKind};
use crate::extract::ApiJson;
use crate::login_limits::address_key;
use crate::state::AppState;
use crate::views::utc_timestamp;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};

/// How long a token is valid: 7 days, as in the on-prem client.
pub const TOKEN_LIFETIME_MS: i64 = 7 * 24 * 3600 * 1000;

/// The optional body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// A new password to set (8–64 characters with a digit, an upper-case
    /// letter, a lower-case letter and a special character).
    pub new_password: Option<String>,
}

/// Authenticates, changes the password if asked (which revokes every other
/// token of the user), and issues a token.
///
/// Before any password hashing, the attempt must fit the budgets of its
/// client address and user name (`login_limits`, 429 otherwise); every
/// wrong password is logged with the client address.
pub async fn login(
    State(state): State<AppState>,
    client: ClientAddr,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Option<LoginRequest>>,
) -> Result<Json<LoginResponse>, ApiError> {
    let (username, password) = auth::basic_credentials(&headers)?;
    state.login_throttle.admit_address(client.0, &username)?;
    let user = state.store.user(&username).await?;
    if user.is_some() {
        state.login_throttle.admit_user(&username, client.0)?;
    }
    let checked = auth::check_password(user, &password).await.inspect_err(|e| {
        if e.kind == ErrorKind::TooManyRequests {
            state.login_throttle.note_refusal(&username, address_key(client.0), e);
        }
    });
    let Some(user) = checked? else {
        tracing::warn!(user = %username, client = %client, "failed login: wrong user name or password");
        return Err(ApiError::unauthenticated("wrong user name or password"));
    };
    // The password hash the token is issued on: the one just checked, or the new one.
    let mut password_hash = user.password_hash.clone();
    match body.and_then(|b| b.new_password) {
        Some(new_password) => {
            let problems = auth::password_problems(&new_password);
            if !problems.is_empty() {
                return Err(ApiError::invalid(format!("new_password is refused: {}", problems.join("; "))));
            }
            let hash = auth::hash_password(&new_password).await?;
            let Some(revoked) = state.store.set_password(&username, &hash).await? else {
                // Deleted between the password check and now: no token for a user that is gone.
                return Err(ApiError::unauthenticated("wrong user name or password"));
            };
            state.tokens.clear();
            password_hash = hash;
            tracing::info!(user = %username, client = %client, "password changed; {revoked} earlier tokens revoked");
        }
        None if user.must_change => {
            return Err(ApiError::new(
                ErrorKind::PasswordChangeRequired,
                format!(
                    "the password of {username} must be changed: log in again with a body \
                     {{\"new_password\":\"...\"}} holding 8 to 64 characters with a digit, an \
                     upper-case letter, a lower-case letter and a special character"
                ),
            ));
        }
        None => {}
    }
    let token = auth::new_token();
    let expires_at = state.store.now_ms().await? + TOKEN_LIFETIME_MS;
    if !state.store.insert_token(&auth::token_hash(&token), &username, &password_hash, expires_at).await? {
        // Deleted, or its password changed, since the password was checked.
        return Err(ApiError::unauthenticated("wrong user name or password"));
    }
    Ok(Json(LoginResponse { users: vec![IssuedToken { token, expires_after: utc_timestamp(expires_at) }] }))
}

/// The answer: `{"users":[{"token","expires_after"}]}`.
#[derive(Debug, Serialize)]
pub struct LoginResponse {
    /// The one token issued.
    pub users: Vec<IssuedToken>,
}

/// A token and its expiry.
#[derive(Debug, Serialize)]
pub struct IssuedToken {
    /// The bearer token.
    pub token: String,
    /// Expiry on the database clock, `YYYY-MM-DD HH:MM:SS+00:00`.
    pub expires_after: String,
}
