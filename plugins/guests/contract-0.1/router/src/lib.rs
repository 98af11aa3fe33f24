//! Test plugin: the default router as built for contract
//! `shardgate:policy@0.1.0` (`wit/0.1.0`), before 0.2.0 changed `route`.
//! The host must keep loading such components and route with them as
//! before; its tests compare this one with `HashRouter`.

wit_bindgen::generate!({ world: "router", path: "../../../../wit/0.1.0" });

use exports::shardgate::policy::routing::{Guest, Message, RouteAnswer};

/// The component's exports.
struct HashRouter;

impl Guest for HashRouter {
    fn route(message: Message, shards: u32) -> RouteAnswer {
        RouteAnswer::Shard(default_rules::routing::default_shard(&message.recipient, shards))
    }
}

export!(HashRouter);
