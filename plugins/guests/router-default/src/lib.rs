//! The default router: `fnv1a64(recipient) % shards`, the rule of
//! `HashRouter` in `core/src/policy.rs`.
//!
//! The hash is fixed forever (see `default_rules::routing`): a recipient's
//! shard must never move between versions. Every message passes through
//! here, so the call does nothing but hash: no logging, no allocation, no
//! metadata (a router that never calls `message.metadata` does not import
//! it, and the host then does not even prepare it).

wit_bindgen::generate!({ world: "router", path: "../../../wit" });

use exports::shardgate::policy::routing::{Guest, MessageKind, RouteAnswer};

/// The component's exports.
struct HashRouter;

impl Guest for HashRouter {
    fn route(recipient: String, _kind: MessageKind, shards: u32) -> RouteAnswer {
        RouteAnswer::Shard(default_rules::routing::default_shard(&recipient, shards))
    }
}

export!(HashRouter);
