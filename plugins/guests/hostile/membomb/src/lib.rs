//! Test plugin: a router whose `route` allocates (and touches) memory until
//! allocation fails, then traps. The host's memory cap must stop it.

wit_bindgen::generate!({ world: "router", path: "../../../../wit" });

use exports::shardgate::policy::routing::{Guest, MessageKind, RouteAnswer};

/// The component's exports.
struct MemBomb;

impl Guest for MemBomb {
    fn route(_recipient: String, _kind: MessageKind, _shards: u32) -> RouteAnswer {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            // 1 MiB at a time, written so that it is really committed;
            // `black_box` keeps the optimizer from dropping the allocations.
            hoard.push(vec![0xa5; 1 << 20]);
            std::hint::black_box(&mut hoard);
        }
    }
}

export!(MemBomb);
