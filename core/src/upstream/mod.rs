//! The upstream messaging network: its wire protocol, spoken by the coreapp's
//! client session ([`crate::coreapp`]). The strict simulator that judges
//! correctness speaks it too, but lives in its own crate,
//! `shardgate-upstream-sim`, so that nothing in production can depend on it.

pub mod protocol;
