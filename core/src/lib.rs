//! Shardgate core: everything but the REST API.
//!
//! - [`cluster`]: settings and the timing derived from them, shared by every role.
//! - [`config`]: start-up settings under the official on-prem environment names.
//! - [`digest`]: the SHA-256 hex digests of plugin components and tokens.
//! - [`store`]: the shared SQL database (SQLite, PostgreSQL, MySQL) behind one interface.
//! - [`callback_payload`]: the callbacks a webhook receiver gets, in the flat on-prem format.
//! - [`media_dir`]: the shared media directory, its files named by media ids that cannot escape it.
//! - `testing` (feature `test-support`): throw-away databases for tests and benchmarks.
//! - [`upstream`]: the wire protocol to the messaging network (the simulator is the
//!   `shardgate-upstream-sim` crate, which depends on this one, never the reverse).
//! - [`http_server`]: the HTTP server of every port, with connection caps and header and idle timeouts.
//! - [`control`]: the control API of masters and coreapps (status, heartbeat, wake) and its client.
//! - [`control_auth`]: the cluster secret every control request carries, and the layer that checks it.
//! - [`coreapp`]: the coreapp role: shard leases, the self-fenced upstream session, the outbox sender.
//! - [`master`]: the master role: lease election, heartbeats, and the primary's failover cycle.
//! - [`node`]: start-up common to every role: identity and waiting for the schema.
//! - [`routing`]: the default shard rule, `fnv1a64(recipient) % shards`.
//! - [`policy`]: the routing, authorization and health policies plugins may replace, and their native rules.
//! - [`ready`]: the readiness line nodes print once they listen.
pub mod callback_payload;
pub mod cluster;
pub mod config;
pub mod control;
pub mod control_auth;
pub mod coreapp;
pub mod digest;
pub mod http_server;
pub mod master;
pub mod media_dir;
pub mod node;
pub mod policy;
pub mod ready;
pub mod routing;
pub mod store;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod upstream;

/// This build's version, reported by every node.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The variable the image sets to the tag it was built as (`WA_API_VERSION`).
pub const IMAGE_VERSION_ENV: &str = "SHARDGATE_IMAGE_VERSION";

/// The tag of the container image this node runs in, if it runs in one: during
/// a rolling upgrade it tells which nodes already run the new image.
pub fn image_version() -> Option<String> {
    std::env::var(IMAGE_VERSION_ENV).ok().filter(|v| !v.is_empty())
}
