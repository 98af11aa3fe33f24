//! The upstream messaging network: its wire protocol, the coreapp's client
//! session, and `upstream-sim`, the strict simulator that judges correctness.

pub mod protocol;
pub mod sim;
