//! Glue of world `health-policy`: lowers [`HealthObservations`], calls
//! `judge`, and falls back to [`IntervalHealth`].
//!
//! Every verdict is within the contract: the host, not the plugin, keeps a
//! failover safe (a dead coreapp is replaced whatever the verdict, and a
//! suspect's shard is never claimable before its lease expired).

use std::sync::Arc;

use shardgate_core::policy::{HealthObservations, HealthPolicy, HealthVerdict, IntervalHealth};
use wasmtime::component::InstancePre;
use wasmtime::Store;

use crate::plugin::World;
use crate::slot::PluginSlot;
use crate::state::PluginState;
use crate::PluginKind;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "health-policy",
        with: { "shardgate:policy/host": crate::imports::host },
        // Arguments borrow the caller's strings: no copy before the one
        // into the guest's memory.
        ownership: Borrowing { duplicate_if_necessary: false },
    });
}

use bindings::exports::shardgate::policy::health as wit;

/// World `health-policy`.
pub(crate) struct HealthWorld;

impl World for HealthWorld {
    const KIND: PluginKind = PluginKind::HealthPolicy;
    type Pre = bindings::HealthPolicyPre<PluginState>;
    type Exports = bindings::HealthPolicy;

    fn prepare(pre: InstancePre<PluginState>) -> wasmtime::Result<Self::Pre> {
        bindings::HealthPolicyPre::new(pre)
    }

    fn instantiate(pre: &Self::Pre, store: &mut Store<PluginState>) -> wasmtime::Result<Self::Exports> {
        pre.instantiate(store)
    }
}

/// The running health-policy plugin, as a [`HealthPolicy`]; survives swaps.
pub(crate) struct PluginHealth(pub Arc<PluginSlot<HealthWorld>>);

impl HealthPolicy for PluginHealth {
    fn judge(&self, observations: &HealthObservations) -> HealthVerdict {
        self.0.invoke(
            |health, store| {
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
                Ok(Ok(match health.shardgate_policy_health().call_judge(store, lowered)? {
                    wit::Verdict::Healthy => HealthVerdict::Healthy,
                    wit::Verdict::Unhealthy(reason) => HealthVerdict::Unhealthy(reason),
                }))
            },
            || IntervalHealth.judge(observations),
        )
    }
}
