//! What a plugin instance sees of the host: the `host` interface of
//! `wit/policy.wit` (a log line, a monotonic clock, read-only settings) at
//! both contract versions, a router's `message` interface (0.2.0: the
//! metadata of the message it routes), all implemented on the per-store
//! state (`state.rs`), and the store's limiter, which enforces the memory cap.
//!
//! No filesystem, no network, no wall clock: a WASI import a component
//! carries is linked to a trap (see `engine.rs`).

use crate::error::MemoryCapExceeded;
use crate::state::{PluginLabel, PluginState};

/// The imports of contract 0.2.0, the current one.
pub mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../../wit",
        interfaces: "
            import shardgate:policy/host@0.2.0;
            import shardgate:policy/message@0.2.0;
        ",
    });

    pub use shardgate::policy::{host, message};
}

/// The imports of contract 0.1.0: the same `host` interface, under its old
/// name; it answers through the 0.2.0 implementation.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../../wit/0.1.0",
        interfaces: "import shardgate:policy/host@0.1.0;",
    });

    pub use shardgate::policy::host;
}

use v0_2::host;

/// The longest log line a plugin may write; the rest is cut off.
const MAX_LOG_LINE: usize = 2048;

/// Most table elements an instance may grow to.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl host::Host for PluginState {
    fn log(&mut self, level: host::Level, mut message: String) {
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" [cut]");
        }
        let PluginLabel { kind, name, version } = &*self.label;
        let (kind, name, version) = (kind.as_str(), name.as_str(), version.as_str());
        match level {
            host::Level::Debug => {
                tracing::debug!(plugin.kind = kind, plugin.name = name, plugin.version = version, "{message}")
            }
            host::Level::Info => {
                tracing::info!(plugin.kind = kind, plugin.name = name, plugin.version = version, "{message}")
            }
            host::Level::Warn => {
                tracing::warn!(plugin.kind = kind, plugin.name = name, plugin.version = version, "{message}")
            }
            host::Level::Error => {
                tracing::error!(plugin.kind = kind, plugin.name = name, plugin.version = version, "{message}")
            }
        }
    }

    fn monotonic_now(&mut self) -> u64 {
        u64::try_from(self.clock_origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn setting(&mut self, name: String) -> Option<String> {
        self.settings.load().get(&name).cloned()
    }
}

impl v0_2::message::Host for PluginState {
    fn metadata(&mut self, name: String) -> Option<String> {
        self.routed.get(&name).map(str::to_owned)
    }
}

impl v0_1::host::Host for PluginState {
    fn log(&mut self, level: v0_1::host::Level, message: String) {
        let level = match level {
            v0_1::host::Level::Debug => host::Level::Debug,
            v0_1::host::Level::Info => host::Level::Info,
            v0_1::host::Level::Warn => host::Level::Warn,
            v0_1::host::Level::Error => host::Level::Error,
        };
        host::Host::log(self, level, message)
    }

    fn monotonic_now(&mut self) -> u64 {
        host::Host::monotonic_now(self)
    }

    fn setting(&mut self, name: String) -> Option<String> {
        host::Host::setting(self, name)
    }
}

impl wasmtime::ResourceLimiter for PluginState {
    fn memory_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            // An error rather than `Ok(false)`: the call traps at once with a
            // cause the host can name, instead of the guest aborting later on
            // a failed allocation (or, worse, carrying on without it).
            return Err(wasmtime::Error::new(MemoryCapExceeded { desired, cap: self.memory_cap }));
        }
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    fn table_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS && maximum.is_none_or(|max| desired <= max))
    }
}
