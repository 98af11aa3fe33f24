//! The on-prem authorization rules: the API key only on health, metrics and
//! stats; the settings, plugins and account endpoints for admins only;
//! anonymous callers only on the login endpoint.
//!
//! Status codes and reasons are those of `OnPremAuthorizer` in
//! `core/src/policy.rs`, word for word.

/// Who is calling, reduced to what the rules look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// A logged-in user; `admin` for the admin role.
    User {
        /// Whether the user has the admin role.
        admin: bool,
    },
    /// The cluster's API key.
    ApiKey,
    /// No credentials.
    Anonymous,
}

/// A refusal: the HTTP status and the reason shown to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denial {
    /// HTTP status (401 or 403).
    pub status: u16,
    /// Why.
    pub reason: &'static str,
}

/// The one path anonymous callers may reach.
const LOGIN_PATH: &str = "/v1/users/login";
/// Endpoint roots (the root and everything below it) for admins only.
const ADMIN_ROOTS: [&str; 4] = ["/v1/settings", "/v1/plugins", "/v1/account", "/v1/support"];

/// Paths the API key (besides users) may reach.
pub fn apikey_path(path: &str) -> bool {
    path == "/v1/health" || path == "/metrics" || path.starts_with("/v1/stats/")
}

/// Paths only admins may reach: a root itself or anything below it, but not
/// a longer name (`/v1/settingsx`).
pub fn admin_path(path: &str) -> bool {
    ADMIN_ROOTS.iter().any(|root| match path.strip_prefix(root) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    })
}

/// The on-prem verdict on `caller` requesting `path`: `Ok` lets it through.
pub fn on_prem(caller: Caller, path: &str) -> Result<(), Denial> {
    let deny = |status, reason| Err(Denial { status, reason });
    match caller {
        Caller::Anonymous if path == LOGIN_PATH => Ok(()),
        Caller::Anonymous => deny(401, "this endpoint needs Authorization: Bearer <token>"),
        Caller::ApiKey if apikey_path(path) => Ok(()),
        Caller::ApiKey => deny(403, "Authorization: Apikey is accepted on /v1/health, /metrics and /v1/stats/* only"),
        Caller::User { admin: false } if admin_path(path) => deny(403, "this endpoint is for admin users only"),
        Caller::User { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_roots_cover_their_subtree_only() {
        assert!(admin_path("/v1/settings"));
        assert!(admin_path("/v1/plugins/router"));
        assert!(admin_path("/v1/support"));
        assert!(!admin_path("/v1/settingsx"));
        assert!(!admin_path("/v1/messages"));
    }

    #[test]
    fn on_prem_rules_scope_the_api_key_and_admin_endpoints() {
        let user = Caller::User { admin: false };
        let admin = Caller::User { admin: true };
        assert_eq!(on_prem(Caller::ApiKey, "/v1/health"), Ok(()));
        assert_eq!(on_prem(Caller::ApiKey, "/v1/messages").unwrap_err().status, 403);
        assert_eq!(on_prem(user, "/v1/settings/application").unwrap_err().status, 403);
        assert_eq!(on_prem(admin, "/v1/settings/application"), Ok(()));
        assert_eq!(on_prem(user, "/v1/messages"), Ok(()));
        assert_eq!(on_prem(Caller::Anonymous, "/v1/messages").unwrap_err().status, 401);
        assert_eq!(on_prem(Caller::Anonymous, "/v1/users/login"), Ok(()));
    }
}
