//! Glue of world `health-policy`: lowers [`HealthObservations`] for the
//! contract version the plugin was built for (the world is the same in 0.1.0
//! and 0.2.0), calls `judge`, and falls back to [`IntervalHealth`].
//!
//! Every verdict is within the contract: the host, not the plugin, keeps a
//! failover safe (a dead coreapp is replaced whatever the verdict, and a
//! suspect's shard is never claimable before its lease expired).

use std::sync::Arc;

use shardgate_core::policy::{HealthObservations, HealthPolicy, HealthVerdict, IntervalHealth};
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
        world: "health-policy",
        with: { "shardgate:policy/host": crate::imports::v0_2::host },
        // Arguments borrow the caller's strings: no copy before the one
        // into the guest's memory.
        ownership: Borrowing { duplicate_if_necessary: false },
    });
}

/// Bindings of contract 0.1.0; the world has not changed since.
mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../../wit/0.1.0",
        world: "health-policy",
        with: { "shardgate:policy/host": crate::imports::v0_1::host },
        ownership: Borrowing { duplicate_if_necessary: false },
    });
}

/// World `health-policy`.
pub(crate) struct HealthWorld;

/// A health-policy plugin, pre-linked with the bindings of its contract version.
pub(crate) enum HealthPre {
    V0_1(v0_1::HealthPolicyPre<PluginState>),
    V0_2(v0_2::HealthPolicyPre<PluginState>),
}

/// A health-policy instance's exports.
pub(crate) enum HealthExports {
    V0_1(v0_1::HealthPolicy),
    V0_2(v0_2::HealthPolicy),
}

impl World for HealthWorld {
    const KIND: PluginKind = PluginKind::HealthPolicy;
    type Pre = HealthPre;
    type Exports = HealthExports;

    fn prepare(pre: InstancePre<PluginState>) -> wasmtime::Result<Self::Pre> {
        Ok(match Contract::exported_by(&pre, "health")? {
            Contract::V0_1 => HealthPre::V0_1(v0_1::HealthPolicyPre::new(pre)?),
            Contract::V0_2 => HealthPre::V0_2(v0_2::HealthPolicyPre::new(pre)?),
        })
    }

    fn instantiate(pre: &Self::Pre, store: &mut Store<PluginState>) -> wasmtime::Result<Self::Exports> {
        Ok(match pre {
            HealthPre::V0_1(pre) => HealthExports::V0_1(pre.instantiate(store)?),
            HealthPre::V0_2(pre) => HealthExports::V0_2(pre.instantiate(store)?),
        })
    }
}

/// `judge` through the bindings of one contract version (`$version`): the
/// interface is the same in both, only the paths of its types differ.
macro_rules! judge {
    ($version:ident, $health:expr, $store:expr, $observations:expr) => {{
        use $version::exports::shardgate::policy::health as wit;

        let observations: &HealthObservations = $observations;
        let heartbeats: Vec<wit::HeartbeatView<'_>> = observations
            .heartbeats
            .iter()
            .map(|(master, since)| wit::HeartbeatView { master, since_last_answer_ms: *since })
            .collect();
        let lowered = wit::Observations {
            node: &observations.node,
            heartbeats: &heartbeats,
            since_db_liveness_ms: observations.since_db_liveness_ms,
            recent_rtt_us: &observations.recent_rtt_us,
            heartbeat_interval_ms: observations.heartbeat_interval_ms,
            unhealthy_interval_ms: observations.unhealthy_interval_ms,
            db_update_interval_ms: observations.db_update_interval_ms,
        };
        match $health.shardgate_policy_health().call_judge($store, lowered)? {
            wit::Verdict::Healthy => HealthVerdict::Healthy,
            wit::Verdict::Unhealthy(reason) => HealthVerdict::Unhealthy(reason),
        }
    }};
}

/// The running health-policy plugin, as a [`HealthPolicy`]; survives swaps.
pub(crate) struct PluginHealth(pub Arc<PluginSlot<HealthWorld>>);

impl HealthPolicy for PluginHealth {
    fn judge(&self, observations: &HealthObservations) -> HealthVerdict {
        self.0.invoke(
            |health, store| {
                Ok(Ok(match health {
                    HealthExports::V0_2(health) => judge!(v0_2, health, store, observations),
                    HealthExports::V0_1(health) => judge!(v0_1, health, store, observations),
                }))
            },
            || IntervalHealth.judge(observations),
        )
    }
}
