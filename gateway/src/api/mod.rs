//! One file per endpoint, each in the same shape: request type, handler,
//! response type.

pub mod health;
pub mod login;
pub mod logout;
pub mod messages;
pub mod metrics;
pub mod plugins;
pub mod settings;
pub mod support;

use serde::Serialize;

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
