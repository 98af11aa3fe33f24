//! Test plugin: a router whose `route` never returns. The host's per-call
//! deadline must interrupt it.

wit_bindgen::generate!({ world: "router", path: "../../../../wit" });

use exports::shardgate::policy::routing::{Guest, Message, RouteAnswer};

/// The component's exports.
struct Loop;

impl Guest for Loop {
    fn route(_message: Message, _shards: u32) -> RouteAnswer {
        #[allow(clippy::empty_loop)]
        loop {}
    }
}

export!(Loop);
