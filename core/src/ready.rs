//! The one line a node prints on stdout once it listens, so that `shardgate dev`
//! and the test harness learn its addresses without guessing ports.

use serde::Serialize;
use std::io::Write;

/// Prefix of the readiness line; the rest of the line is one JSON object.
pub const READY_PREFIX: &str = "SHARDGATE_READY ";

/// Prints the readiness line and flushes stdout.
pub fn announce<T: Serialize>(info: &T) {
    let json = serde_json::to_string(info).expect("readiness info serializes");
    let mut out = std::io::stdout().lock();
    // A closed stdout (the supervisor went away) must not kill the node.
    let _ = writeln!(out, "{READY_PREFIX}{json}");
    let _ = out.flush();
}
