//! The user endpoints of the on-prem API, one file each: [`create`]
//! (`POST /v1/users`), [`read`] (`GET /v1/users/{username}`), [`update`]
//! (`PUT /v1/users/{username}`) and [`delete`] (`DELETE /v1/users/{username}`);
//! logging in and out are `api::login` and `api::logout`.
//!
//! Who may do what, as the on-prem reference says: an admin sets any user's
//! password and a user its own; only the built-in `admin` has the admin role
//! (a created user is always a user); the admin deletes accounts. Where the
//! reference is silent, the strict choice: only an admin creates users, a
//! user reads its own account only, and `admin` cannot be deleted at all.
//! These rules are checked here, in the handlers, and not left to the
//! authorizer plugin: a replaced plugin may narrow who reaches these
//! endpoints, but must never be able to let a user make itself or anyone
//! else an admin or remove the admin.

pub mod create;
pub mod delete;
pub mod read;
pub mod update;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorKind};
use serde::Serialize;
use shardgate_core::policy::{Principal, UserRole};

/// Shortest user name [`create`] accepts.
const USERNAME_MIN: usize = 3;
/// Longest user name [`create`] accepts (the column holds 64).
const USERNAME_MAX: usize = 32;

/// Why `name` cannot be a new user's name, if it cannot.
///
/// The on-prem reference gives no rule, so this is the strict one: 3 to 32
/// characters of lower-case ASCII letters, digits, `.`, `_` and `-`, starting
/// with a letter. Lower case only because MariaDB compares names without
/// regard to case or trailing spaces while PostgreSQL and SQLite do not:
/// with this rule `Ana`, `ana` and `ana ` cannot be two users on one engine
/// and one on another. `login` and `logout` are the paths of other endpoints.
pub fn username_problem(name: &str) -> Option<&'static str> {
    let length = name.chars().count();
    if !(USERNAME_MIN..=USERNAME_MAX).contains(&length) {
        return Some("it must be 3 to 32 characters long");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Some("it must start with a lower-case letter a-z");
    }
    if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')) {
        return Some("it may hold only lower-case letters a-z, digits, '.', '_' and '-'");
    }
    if name == "login" || name == "logout" {
        return Some("login and logout are the paths of other endpoints");
    }
    None
}

/// The user named in a request's path, refused as unknown (404) without
/// asking the database when no user could have that name: so a name that
/// MariaDB would match to another user (`ADMIN`, `admin `) or that a database
/// cannot even take as text (a NUL byte) never reaches a query.
fn path_user(name: &str) -> Result<&str, ApiError> {
    if username_problem(name).is_none() {
        Ok(name)
    } else {
        Err(no_such_user(name))
    }
}

/// The 404 for a user that does not exist.
fn no_such_user(name: &str) -> ApiError {
    ApiError::new(ErrorKind::NotFound, format!("there is no user {name:?}"))
}

/// Refuses every caller but an admin user.
fn admin_only(caller: &Caller, what: &str) -> Result<(), ApiError> {
    match &caller.0 {
        Principal::User { role: UserRole::Admin, .. } => Ok(()),
        _ => Err(ApiError::forbidden(format!("only an admin may {what}"))),
    }
}

/// Refuses every caller but an admin and the user `name` itself. Checked
/// before the user is looked up, so a user learns nothing about whether
/// other names exist.
fn admin_or_self(caller: &Caller, name: &str) -> Result<(), ApiError> {
    match &caller.0 {
        Principal::User { role: UserRole::Admin, .. } => Ok(()),
        Principal::User { name: own, .. } if own == name => Ok(()),
        _ => Err(ApiError::forbidden("a user may read and change its own account only; an admin may manage any")),
    }
}

/// The answer of create, update and delete: `{"users":[{"username"}]}`.
#[derive(Debug, Serialize)]
pub struct UserNameResponse {
    /// The one user the request was about.
    pub users: Vec<UserName>,
}

/// A user, by name.
#[derive(Debug, Serialize)]
pub struct UserName {
    /// Login name.
    pub username: String,
}

impl UserNameResponse {
    /// The answer about `username`.
    fn of(username: &str) -> UserNameResponse {
        UserNameResponse { users: vec![UserName { username: username.to_string() }] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, role: UserRole) -> Caller {
        Caller(Principal::User { name: name.into(), role })
    }

    #[test]
    fn usernames_are_lower_case_and_never_another_endpoint() {
        for good in ["ana", "ops.team-2", "a_b", &"x".repeat(32)] {
            assert_eq!(username_problem(good), None, "{good}");
        }
        for bad in ["an", "Ana", "ana ", "1ana", "ana!", "ana\0", "änä", "login", "logout", &"x".repeat(33)] {
            assert!(username_problem(bad).is_some(), "{bad:?}");
        }
        assert!(path_user("admin").is_ok());
        assert_eq!(path_user("ADMIN").unwrap_err().kind, ErrorKind::NotFound, "never matched to admin");
    }

    #[test]
    fn a_user_reaches_only_itself_and_an_admin_everyone() {
        let ana = user("ana", UserRole::User);
        assert!(admin_or_self(&ana, "ana").is_ok());
        assert_eq!(admin_or_self(&ana, "bob").unwrap_err().kind, ErrorKind::Forbidden);
        assert!(admin_or_self(&user("admin", UserRole::Admin), "bob").is_ok());
        assert_eq!(admin_or_self(&Caller(Principal::ApiKey), "ana").unwrap_err().kind, ErrorKind::Forbidden);
        assert_eq!(admin_only(&ana, "create users").unwrap_err().kind, ErrorKind::Forbidden);
        assert!(admin_only(&user("admin", UserRole::Admin), "create users").is_ok());
    }
}
