//! The default router: `fnv1a64(recipient) % shards`, the rule of
//! `HashRouter` in `core/src/policy.rs`.
//!
//! The hash is fixed forever (see `default_rules::routing`): a recipient's
//! shard must never move between versions. Every message passes through
//! here, so the call does nothing but hash: no logging, no allocation.

wit_bindgen::generate!({ world: "router", path: "../../../wit" });

use exports::shardgate::policy::routing::{Guest, Message, RouteAnswer};

/// The component's exports.
struct HashRouter;

impl Guest for HashRouter {
    fn route(message: Message, shards: u32) -> RouteAnswer {
        RouteAnswer::Shard(default_rules::routing::default_shard(&message.recipient, shards))
    }
}

export!(HashRouter);
