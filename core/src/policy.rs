//! The three policies that plugins may replace, as traits, with their native
//! implementations of the built-in rules.
//!
//! The built-in policies ship as WebAssembly components (`plugins/`), and
//! the gateway and the master call them through the same host path as custom
//! ones. The native versions here are the reference those components are
//! tested against, the fallback when a plugin fails a call, and the baseline
//! of the plugin benchmarks. Nothing here depends on the plugin runtime.

use crate::routing::default_shard;

/// A message as the router sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRequest {
    /// Recipient `wa_id`, digits only.
    pub recipient: String,
    /// Message type (`text`, ...).
    pub kind: String,
    /// Further facts as name/value pairs.
    pub metadata: Vec<(String, String)>,
}

/// The router's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Send on this shard.
    Shard(u32),
    /// Refuse the message, with the reason.
    Refuse(String),
}

/// Chooses the shard of a message.
pub trait RoutingPolicy: Send + Sync {
    /// The shard of `message` among `shards` shards.
    fn route(&self, message: &RouteRequest, shards: u32) -> Route;
}

/// Roles of API users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserRole {
    /// May change settings and plugins.
    Admin,
    /// May send and read.
    User,
}

impl UserRole {
    /// The role as the users table stores it; anything unknown gets the least rights.
    pub fn from_stored(role: &str) -> UserRole {
        if role == "admin" {
            UserRole::Admin
        } else {
            UserRole::User
        }
    }

    /// The role as the users table stores it (and the on-prem API names it).
    pub fn as_str(self) -> &'static str {
        match self {
            UserRole::Admin => "admin",
            UserRole::User => "user",
        }
    }
}

/// Who is calling, as the gateway authenticated them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A logged-in user.
    User {
        /// Login name.
        name: String,
        /// Role.
        role: UserRole,
    },
    /// The cluster's API key.
    ApiKey,
    /// No credentials.
    Anonymous,
}

/// A request as the authorizer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    /// HTTP method, upper case.
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// Selected headers, names in lower case, never `authorization`.
    pub headers: Vec<(String, String)>,
    /// The client's IP address.
    pub client_addr: String,
}

/// The authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthVerdict {
    /// Let it through.
    Allow,
    /// Refuse it with this HTTP status (401, 403 or 429) and reason.
    Deny {
        /// HTTP status.
        status: u16,
        /// Why.
        reason: String,
    },
}

/// Decides whether a caller may make a request.
pub trait AuthorizationPolicy: Send + Sync {
    /// The verdict on one request.
    fn authorize(&self, principal: &Principal, request: &AuthRequest) -> AuthVerdict;
}

/// Everything observed about one coreapp, for the health verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthObservations {
    /// Node id.
    pub node: String,
    /// Per master: milliseconds since the coreapp last answered it, if ever.
    pub heartbeats: Vec<(String, Option<u64>)>,
    /// Milliseconds since its last database liveness write.
    pub since_db_liveness_ms: u64,
    /// Recent heartbeat round-trip times, µs.
    pub recent_rtt_us: Vec<u64>,
    /// `heartbeat_interval` in force, ms.
    pub heartbeat_interval_ms: u64,
    /// `unhealthy_interval` in force, ms.
    pub unhealthy_interval_ms: u64,
    /// `db_update_interval` in force, ms.
    pub db_update_interval_ms: u64,
}

/// The health verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthVerdict {
    /// Keep it.
    Healthy,
    /// Replace it, for this reason.
    Unhealthy(String),
}

/// Judges whether a coreapp that may be alive can keep serving. Only
/// suspicion is delegated: a coreapp known to be gone is replaced by the
/// master itself, and a suspect's shard is never claimable before its old
/// lease expired, whatever the verdict.
pub trait HealthPolicy: Send + Sync {
    /// The verdict on one coreapp.
    fn judge(&self, observations: &HealthObservations) -> HealthVerdict;
}

/// The built-in rule: `fnv1a64(recipient) % shards`.
#[derive(Debug, Clone, Copy, Default)]
pub struct HashRouter;

impl RoutingPolicy for HashRouter {
    fn route(&self, message: &RouteRequest, shards: u32) -> Route {
        Route::Shard(default_shard(&message.recipient, shards))
    }
}

/// The on-prem rules: the API key only on health, metrics and stats; the
/// settings, plugins, account and support endpoints for admins only;
/// anonymous callers only on the login endpoint.
#[derive(Debug, Clone, Copy, Default)]
pub struct OnPremAuthorizer;

/// Paths only the API key (besides users) may reach.
pub fn apikey_path(path: &str) -> bool {
    path == "/v1/health" || path == "/metrics" || path.starts_with("/v1/stats/")
}

/// Paths only admins may reach.
pub fn admin_path(path: &str) -> bool {
    ["/v1/settings", "/v1/plugins", "/v1/account", "/v1/support"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

impl AuthorizationPolicy for OnPremAuthorizer {
    fn authorize(&self, principal: &Principal, request: &AuthRequest) -> AuthVerdict {
        let deny = |status, reason: &str| AuthVerdict::Deny { status, reason: reason.to_string() };
        match principal {
            Principal::Anonymous if request.path == "/v1/users/login" => AuthVerdict::Allow,
            Principal::Anonymous => deny(401, "this endpoint needs Authorization: Bearer <token>"),
            Principal::ApiKey if apikey_path(&request.path) => AuthVerdict::Allow,
            Principal::ApiKey => {
                deny(403, "Authorization: Apikey is accepted on /v1/health, /metrics and /v1/stats/* only")
            }
            Principal::User { role: UserRole::User, .. } if admin_path(&request.path) => {
                deny(403, "this endpoint is for admin users only")
            }
            Principal::User { .. } => AuthVerdict::Allow,
        }
    }
}

/// The seed's rules: unhealthy when no master heard the coreapp for
/// `unhealthy_interval`, or it wrote no database liveness for twice
/// `db_update_interval`.
#[derive(Debug, Clone, Copy, Default)]
pub struct IntervalHealth;

impl HealthPolicy for IntervalHealth {
    fn judge(&self, o: &HealthObservations) -> HealthVerdict {
        let freshest = o.heartbeats.iter().filter_map(|(_, since)| *since).min();
        match freshest {
            Some(since) if since <= o.unhealthy_interval_ms => {}
            Some(since) => {
                return HealthVerdict::Unhealthy(format!("answered no master for {:.1} s", since as f64 / 1000.0))
            }
            None => return HealthVerdict::Unhealthy("never answered a master".into()),
        }
        if o.since_db_liveness_ms > 2 * o.db_update_interval_ms {
            return HealthVerdict::Unhealthy(format!(
                "wrote no database liveness for {:.0} s",
                o.since_db_liveness_ms as f64 / 1000.0
            ));
        }
        HealthVerdict::Healthy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str) -> AuthRequest {
        AuthRequest { method: "GET".into(), path: path.into(), headers: vec![], client_addr: "127.0.0.1".into() }
    }

    #[test]
    fn on_prem_authorizer_scopes_the_api_key_and_admin_endpoints() {
        let a = OnPremAuthorizer;
        let user = Principal::User { name: "u".into(), role: UserRole::User };
        let admin = Principal::User { name: "a".into(), role: UserRole::Admin };
        assert_eq!(a.authorize(&Principal::ApiKey, &request("/v1/health")), AuthVerdict::Allow);
        assert!(matches!(
            a.authorize(&Principal::ApiKey, &request("/v1/messages")),
            AuthVerdict::Deny { status: 403, .. }
        ));
        assert!(matches!(
            a.authorize(&user, &request("/v1/settings/application")),
            AuthVerdict::Deny { status: 403, .. }
        ));
        assert_eq!(a.authorize(&admin, &request("/v1/settings/application")), AuthVerdict::Allow);
        assert!(matches!(a.authorize(&user, &request("/v1/support")), AuthVerdict::Deny { status: 403, .. }));
        assert_eq!(a.authorize(&admin, &request("/v1/support")), AuthVerdict::Allow);
        assert_eq!(a.authorize(&user, &request("/v1/messages")), AuthVerdict::Allow);
        assert!(matches!(
            a.authorize(&Principal::Anonymous, &request("/v1/messages")),
            AuthVerdict::Deny { status: 401, .. }
        ));
        assert_eq!(a.authorize(&Principal::Anonymous, &request("/v1/users/login")), AuthVerdict::Allow);
        assert!(!admin_path("/v1/settingsx"));
    }

    #[test]
    fn interval_health_follows_the_seed_rules() {
        let base = HealthObservations {
            node: "c1".into(),
            heartbeats: vec![("m1".into(), Some(5_000)), ("m2".into(), Some(400))],
            since_db_liveness_ms: 1_000,
            recent_rtt_us: vec![300],
            heartbeat_interval_ms: 5_000,
            unhealthy_interval_ms: 30_000,
            db_update_interval_ms: 60_000,
        };
        assert_eq!(IntervalHealth.judge(&base), HealthVerdict::Healthy);
        let silent =
            HealthObservations { heartbeats: vec![("m1".into(), Some(31_000)), ("m2".into(), None)], ..base.clone() };
        assert!(matches!(IntervalHealth.judge(&silent), HealthVerdict::Unhealthy(r) if r.contains("31.0 s")));
        let stale = HealthObservations { since_db_liveness_ms: 120_001, ..base };
        assert!(matches!(IntervalHealth.judge(&stale), HealthVerdict::Unhealthy(r) if r.contains("liveness")));
    }

    #[test]
    fn hash_router_is_the_default_rule() {
        let m = RouteRequest { recipient: "15551234567".into(), kind: "text".into(), metadata: vec![] };
        assert_eq!(HashRouter.route(&m, 8), Route::Shard(default_shard("15551234567", 8)));
    }
}
