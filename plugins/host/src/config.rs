//! What the embedder may tune: the call deadline, the memory cap, the
//! failure budget and the size of the instance pools.

use std::collections::HashMap;
use std::time::Duration;

/// Limits and pool sizes of a [`PluginHost`](crate::PluginHost).
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Longest a plugin call (or an instantiation) may run, wall clock. A call
    /// that keeps the CPU busy past it is interrupted within three more
    /// `epoch_tick`s and answered by the built-in rule; one the OS kept off
    /// the CPU gets up to one more deadline to finish (see `deadline.rs`).
    pub call_deadline: Duration,
    /// Period of the epoch ticker thread, which is the deadline's resolution.
    pub epoch_tick: Duration,
    /// Most linear memory one plugin instance may have, in bytes.
    pub memory_cap: usize,
    /// Consecutive failed calls after which a plugin is unloaded and its kind
    /// goes back to the default component.
    pub max_consecutive_failures: u32,
    /// Idle instances kept warm per plugin; more are created under
    /// concurrency and dropped when they come back to a full pool.
    pub warm_instances: usize,
    /// Most instances alive at once in this host, all plugins together
    /// (the pooling allocator's slots). A call that finds none free is
    /// answered by the built-in rule, blamed on the host.
    pub max_instances: u32,
    /// Initial cluster settings the plugins may read (`setting`), as JSON texts.
    pub settings: HashMap<String, String>,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            call_deadline: Duration::from_millis(10),
            epoch_tick: Duration::from_millis(1),
            memory_cap: 16 << 20,
            max_consecutive_failures: 5,
            warm_instances: 8,
            max_instances: 64,
            settings: HashMap::new(),
        }
    }
}
