//! Library side of the `shardgate` binary, shared with the cluster tests:
//!
//! - [`plugin_sync`]: keeps a node's plugin host in step with the cluster's
//!   uploads and its plugins directory.
//! - [`supervisor`]: starts node processes, reads their readiness line, and
//!   signals them (used by `shardgate dev`, the tests and the benchmark).
pub mod plugin_sync;
pub mod supervisor;
