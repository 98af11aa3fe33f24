//! Test plugin: a router whose `route` panics, which is a trap
//! (`unreachable`) under `panic = "abort"`.

wit_bindgen::generate!({ world: "router", path: "../../../../wit" });

use exports::shardgate::policy::routing::{Guest, Message, RouteAnswer};

/// The component's exports.
struct Trap;

impl Guest for Trap {
    fn route(message: Message, _shards: u32) -> RouteAnswer {
        panic!("hostile-trap refuses to route {}", message.recipient)
    }
}

export!(Trap);
