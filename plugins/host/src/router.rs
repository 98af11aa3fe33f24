//! Glue of world `router`: lowers a [`RouteRequest`] for the contract version
//! the plugin was built for, calls `route`, checks the shard is below the
//! shard count, and falls back to [`HashRouter`].
//!
//! 0.2.0 passes the recipient and the kind only, which makes a call enter the
//! guest three times (the recipient's allocation, `route`, its post-return);
//! a plugin that imports `message.metadata` reads the metadata from the
//! store's state, where it is held for the call. 0.1.0 passes the whole
//! message: five entries, and two more per metadata pair.

use std::sync::Arc;

use shardgate_core::policy::{HashRouter, Route, RouteRequest, RoutingPolicy};
use wasmtime::component::InstancePre;
use wasmtime::Store;

use crate::contract::Contract;
use crate::plugin::World;
use crate::slot::PluginSlot;
use crate::state::PluginState;
use crate::PluginKind;

/// Bindings of contract 0.2.0.
mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "router",
        with: {
            "shardgate:policy/host": crate::imports::v0_2::host,
            "shardgate:policy/message": crate::imports::v0_2::message,
        },
        // Arguments borrow the caller's strings: no copy before the one
        // into the guest's memory.
        ownership: Borrowing { duplicate_if_necessary: false },
    });

    pub use exports::shardgate::policy::routing;
}

/// Bindings of contract 0.1.0.
mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../../wit/0.1.0",
        world: "router",
        with: { "shardgate:policy/host": crate::imports::v0_1::host },
        ownership: Borrowing { duplicate_if_necessary: false },
    });

    pub use exports::shardgate::policy::routing;
}

/// World `router`.
pub(crate) struct RouterWorld;

/// A router plugin, pre-linked with the bindings of its contract version.
pub(crate) enum RouterPre {
    V0_1(v0_1::RouterPre<PluginState>),
    /// With whether it imports `message.metadata`: if not, the host does
    /// not hold the metadata for its calls.
    V0_2(v0_2::RouterPre<PluginState>, bool),
}

/// A router instance's exports.
pub(crate) enum RouterExports {
    V0_1(v0_1::Router),
    V0_2(v0_2::Router, bool),
}

impl World for RouterWorld {
    const KIND: PluginKind = PluginKind::Router;
    type Pre = RouterPre;
    type Exports = RouterExports;

    fn prepare(pre: InstancePre<PluginState>) -> wasmtime::Result<Self::Pre> {
        Ok(match Contract::exported_by(&pre, "routing")? {
            Contract::V0_1 => RouterPre::V0_1(v0_1::RouterPre::new(pre)?),
            Contract::V0_2 => {
                let reads_metadata = Contract::V0_2.imported_by(&pre, "message");
                RouterPre::V0_2(v0_2::RouterPre::new(pre)?, reads_metadata)
            }
        })
    }

    fn instantiate(pre: &Self::Pre, store: &mut Store<PluginState>) -> wasmtime::Result<Self::Exports> {
        Ok(match pre {
            RouterPre::V0_1(pre) => RouterExports::V0_1(pre.instantiate(store)?),
            RouterPre::V0_2(pre, reads_metadata) => RouterExports::V0_2(pre.instantiate(store)?, *reads_metadata),
        })
    }
}

/// The running router plugin, as a [`RoutingPolicy`]; survives swaps.
pub(crate) struct PluginRouter(pub Arc<PluginSlot<RouterWorld>>);

impl RoutingPolicy for PluginRouter {
    fn route(&self, message: &RouteRequest, shards: u32) -> Route {
        self.0.invoke(
            |router, store| {
                let route = match router {
                    RouterExports::V0_2(router, reads_metadata) => {
                        route_v0_2(router, *reads_metadata, store, message, shards)?
                    }
                    RouterExports::V0_1(router) => route_v0_1(router, store, message, shards)?,
                };
                Ok(match route {
                    // A shard count of 0 is taken as 1, as the native rule does.
                    Route::Shard(shard) if shard >= shards.max(1) => {
                        Err(format!("answered shard {shard}, not below the shard count {shards}"))
                    }
                    route => Ok(route),
                })
            },
            || HashRouter.route(message, shards),
        )
    }
}

/// `route` of contract 0.2.0; the metadata is held in the store for the
/// call if the plugin can ask for it.
#[inline]
fn route_v0_2(
    router: &v0_2::Router,
    reads_metadata: bool,
    store: &mut Store<PluginState>,
    message: &RouteRequest,
    shards: u32,
) -> wasmtime::Result<Route> {
    use v0_2::routing::{MessageKind, RouteAnswer};

    let kind = match message.kind.as_str() {
        "text" => MessageKind::Text,
        "template" => MessageKind::Template,
        "hsm" => MessageKind::Hsm,
        "image" => MessageKind::Image,
        "document" => MessageKind::Document,
        "audio" => MessageKind::Audio,
        "video" => MessageKind::Video,
        "sticker" => MessageKind::Sticker,
        "location" => MessageKind::Location,
        "contacts" => MessageKind::Contacts,
        "interactive" => MessageKind::Interactive,
        "contact_check" => MessageKind::ContactCheck,
        other => MessageKind::Other(other),
    };
    if reads_metadata {
        store.data_mut().routed.hold(&message.metadata);
    }
    let answer = router.shardgate_policy_routing().call_route(&mut *store, &message.recipient, kind, shards);
    if reads_metadata {
        store.data_mut().routed.clear();
    }
    Ok(match answer? {
        RouteAnswer::Shard(shard) => Route::Shard(shard),
        RouteAnswer::Refuse(reason) => Route::Refuse(reason),
    })
}

/// `route` of contract 0.1.0: the whole message as one argument.
fn route_v0_1(
    router: &v0_1::Router,
    store: &mut Store<PluginState>,
    message: &RouteRequest,
    shards: u32,
) -> wasmtime::Result<Route> {
    use v0_1::routing::{Message, RouteAnswer};

    let metadata: Vec<(&str, &str)> =
        message.metadata.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
    let lowered = Message { recipient: &message.recipient, kind: &message.kind, metadata: &metadata };
    Ok(match router.shardgate_policy_routing().call_route(store, lowered, shards)? {
        RouteAnswer::Shard(shard) => Route::Shard(shard),
        RouteAnswer::Refuse(reason) => Route::Refuse(reason),
    })
}
