//! JSON shapes and formats that more than one endpoint answers with: the
//! on-prem `meta` object, the on-prem timestamp format, a plugin's view.
//! Depends on nothing of the gateway's own.

use serde::Serialize;
use shardgate_plugins::PluginInfo;
use std::time::SystemTime;
use time::macros::format_description;
use time::OffsetDateTime;

/// The `meta` object of on-prem responses.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Meta {
    /// Always `stable`.
    pub api_status: &'static str,
    /// This build's version.
    pub version: &'static str,
}

impl Meta {
    /// The meta of this build.
    pub fn current() -> Meta {
        Meta { api_status: "stable", version: shardgate_core::VERSION }
    }
}

/// Unix milliseconds as the on-prem API writes times: `YYYY-MM-DD HH:MM:SS+00:00`.
pub fn utc_timestamp(unix_ms: i64) -> String {
    let at = OffsetDateTime::from_unix_timestamp(unix_ms.div_euclid(1000)).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    at.format(format_description!("[year]-[month]-[day] [hour]:[minute]:[second]+00:00"))
        .unwrap_or_else(|_| "1970-01-01 00:00:00+00:00".to_string())
}

/// A process clock reading in the on-prem format.
pub fn system_timestamp(at: SystemTime) -> String {
    let unix_ms = at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    utc_timestamp(i64::try_from(unix_ms).unwrap_or(i64::MAX))
}

/// One plugin as this webapp runs it.
#[derive(Debug, Serialize)]
pub struct PluginView {
    /// `router`, `authorizer` or `health-policy`.
    pub kind: &'static str,
    /// Name given at upload (`default` for the built-in one).
    pub name: String,
    /// Version given at upload.
    pub version: String,
    /// SHA-256 of the component, hex.
    pub sha256: String,
    /// When it started running here, `YYYY-MM-DD HH:MM:SS+00:00`.
    pub loaded_at: String,
    /// Calls made to it since.
    pub calls: u64,
    /// Calls it failed (its fault).
    pub failures: u64,
    /// Calls the built-in rule answered instead.
    pub fallbacks: u64,
    /// Instances created for it.
    pub instances: u64,
    /// Failures in a row now; it is unloaded at the host's limit.
    pub consecutive_failures: u32,
    /// The last failure, with its blame.
    pub last_error: Option<String>,
    /// Whether it is the built-in default.
    pub default: bool,
}

impl From<PluginInfo> for PluginView {
    fn from(info: PluginInfo) -> PluginView {
        PluginView {
            kind: info.kind.as_str(),
            name: info.name,
            version: info.version,
            sha256: info.sha256,
            loaded_at: system_timestamp(info.loaded_at),
            calls: info.calls,
            failures: info.failures,
            fallbacks: info.fallbacks,
            instances: info.instances,
            consecutive_failures: info.consecutive_failures,
            last_error: info.last_error,
            default: info.default,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_in_the_onprem_format() {
        assert_eq!(utc_timestamp(0), "1970-01-01 00:00:00+00:00");
        assert_eq!(utc_timestamp(951_782_400_000), "2000-02-29 00:00:00+00:00");
        assert_eq!(utc_timestamp(1_700_000_000_999), "2023-11-14 22:13:20+00:00");
    }
}
