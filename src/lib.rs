//! Library side of the `shardgate` binary, shared with the cluster tests:
//!
//! - [`supervisor`]: starts node processes, reads their readiness line, and
//!   signals them (used by `shardgate dev`, the tests and the benchmark).
pub mod supervisor;
