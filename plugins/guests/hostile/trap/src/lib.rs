//! Test plugin: a router whose `route` panics, which is a trap
//! (`unreachable`) under `panic = "abort"`.

wit_bindgen::generate!({ world: "router", path: "../../../../wit" });

use exports::shardgate::policy::routing::{Guest, MessageKind, RouteAnswer};

/// The component's exports.
struct Trap;

impl Guest for Trap {
    fn route(recipient: String, _kind: MessageKind, _shards: u32) -> RouteAnswer {
        panic!("hostile-trap refuses to route {}", recipient)
    }
}

export!(Trap);
