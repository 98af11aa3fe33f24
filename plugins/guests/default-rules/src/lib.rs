//! The built-in policy rules, as the guest plugins compute them.
//!
//! This is a copy of the native reference in `core/src/routing.rs` and
//! `core/src/policy.rs`, which the guests cannot depend on (`shardgate-core`
//! brings the whole runtime with it). The copy must give the same answer as
//! the reference for every input, down to the status codes and the reason
//! texts: the host tests the default components against the native rules,
//! and falls back to the native rules when a plugin fails.
//!
//! - [`routing`]: `fnv1a64(recipient) % shards`.
//! - [`authorization`]: the on-prem roles (admin, user, API key, anonymous).
//! - [`health`]: the interval-based health verdict.
//!
//! The functions take plain values rather than the WIT types, so that every
//! guest can reuse them whatever world it was generated for.

pub mod authorization;
pub mod health;
pub mod routing;
