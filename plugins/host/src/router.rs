//! Glue of world `router`: lowers a [`RouteRequest`], calls `route`, checks
//! the shard is below the shard count, and falls back to [`HashRouter`].

use std::sync::Arc;

use shardgate_core::policy::{HashRouter, Route, RouteRequest, RoutingPolicy};
use wasmtime::component::InstancePre;
use wasmtime::Store;

use crate::plugin::World;
use crate::slot::PluginSlot;
use crate::state::PluginState;
use crate::PluginKind;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "router",
        with: { "shardgate:policy/host": crate::imports::host },
        // Arguments borrow the caller's strings: no copy before the one
        // into the guest's memory.
        ownership: Borrowing { duplicate_if_necessary: false },
    });
}

use bindings::exports::shardgate::policy::routing;

/// World `router`.
pub(crate) struct RouterWorld;

impl World for RouterWorld {
    const KIND: PluginKind = PluginKind::Router;
    type Pre = bindings::RouterPre<PluginState>;
    type Exports = bindings::Router;

    fn prepare(pre: InstancePre<PluginState>) -> wasmtime::Result<Self::Pre> {
        bindings::RouterPre::new(pre)
    }

    fn instantiate(pre: &Self::Pre, store: &mut Store<PluginState>) -> wasmtime::Result<Self::Exports> {
        pre.instantiate(store)
    }
}

/// The running router plugin, as a [`RoutingPolicy`]; survives swaps.
pub(crate) struct PluginRouter(pub Arc<PluginSlot<RouterWorld>>);

impl RoutingPolicy for PluginRouter {
    fn route(&self, message: &RouteRequest, shards: u32) -> Route {
        self.0.invoke(
            |router, store| {
                let metadata: Vec<(&str, &str)> =
                    message.metadata.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
                let lowered =
                    routing::Message { recipient: &message.recipient, kind: &message.kind, metadata: &metadata };
                Ok(match router.shardgate_policy_routing().call_route(store, lowered, shards)? {
                    // A shard count of 0 is taken as 1, as the native rule does.
                    routing::RouteAnswer::Shard(shard) if shard < shards.max(1) => Ok(Route::Shard(shard)),
                    routing::RouteAnswer::Shard(shard) => {
                        Err(format!("answered shard {shard}, not below the shard count {shards}"))
                    }
                    routing::RouteAnswer::Refuse(reason) => Ok(Route::Refuse(reason)),
                })
            },
            || HashRouter.route(message, shards),
        )
    }
}
