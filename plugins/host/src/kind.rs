//! The three kinds of plugin, one per WIT world.

use std::fmt;
use std::str::FromStr;

/// Which policy a plugin replaces; each kind is one world of `wit/policy.wit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginKind {
    /// World `router`: chooses the shard of a message.
    Router,
    /// World `authorizer`: decides whether a caller may make a request.
    Authorizer,
    /// World `health-policy`: judges whether a primary coreapp stays primary.
    HealthPolicy,
}

impl PluginKind {
    /// All kinds, in a stable order.
    pub const ALL: [PluginKind; 3] = [PluginKind::Router, PluginKind::Authorizer, PluginKind::HealthPolicy];

    /// The name used in the API and the logs: `router`, `authorizer`, `health-policy`.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Router => "router",
            PluginKind::Authorizer => "authorizer",
            PluginKind::HealthPolicy => "health-policy",
        }
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PluginKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PluginKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| format!("unknown plugin kind {s:?}: expected router, authorizer or health-policy"))
    }
}
