//! Test plugin: a router that answers shard 1000, which no cluster has (at
//! most 32 shards). The host must reject the answer and fall back.

wit_bindgen::generate!({ world: "router", path: "../../../../wit" });

use exports::shardgate::policy::routing::{Guest, MessageKind, RouteAnswer};

/// The component's exports.
struct OutOfRange;

impl Guest for OutOfRange {
    fn route(_recipient: String, _kind: MessageKind, _shards: u32) -> RouteAnswer {
        RouteAnswer::Shard(1000)
    }
}

export!(OutOfRange);
