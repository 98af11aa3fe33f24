//! Test plugin: a router whose `route` never returns. The host's per-call
//! deadline must interrupt it.

wit_bindgen::generate!({ world: "router", path: "../../../../wit" });

use exports::shardgate::policy::routing::{Guest, MessageKind, RouteAnswer};

/// The component's exports.
struct Loop;

impl Guest for Loop {
    fn route(_recipient: String, _kind: MessageKind, _shards: u32) -> RouteAnswer {
        #[allow(clippy::empty_loop)]
        loop {}
    }
}

export!(Loop);
