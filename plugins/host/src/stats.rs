//! Counters of each loaded plugin, and the plain snapshots the gateway
//! renders in `/metrics` and `/v1/support`.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::state::PluginLabel;
use crate::PluginKind;

/// A loaded plugin as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// Its kind.
    pub kind: PluginKind,
    /// Name given with the upload (`default` for the embedded defaults).
    pub name: String,
    /// Version given with the upload (the crate version for the defaults).
    pub version: String,
    /// SHA-256 of the component bytes, lower-case hex.
    pub sha256: String,
    /// When it became the running plugin of its kind.
    pub loaded_at: SystemTime,
    /// Calls made to it since.
    pub calls: u64,
    /// Calls it failed (trap, deadline, memory cap, nonsense answer): the
    /// plugin's fault.
    pub failures: u64,
    /// Calls answered by the built-in rule instead: its failures plus those
    /// the host could not run (no free instance).
    pub fallbacks: u64,
    /// Instances created for it: one at load, then one per instance lost to
    /// a trap or needed for concurrent calls beyond the warm pool.
    pub instances: u64,
    /// Failures in a row, up to now; it is unloaded when this reaches the limit.
    pub consecutive_failures: u32,
    /// The last failure, with its blame.
    pub last_error: Option<String>,
    /// Whether it is the embedded default component of its kind.
    pub default: bool,
}

/// A plugin that is no longer running, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetiredPlugin {
    /// Its last state.
    pub info: PluginInfo,
    /// When it stopped running.
    pub retired_at: SystemTime,
    /// Why: replaced by an upload, reset, or unloaded after failing.
    pub reason: String,
    /// Whether the host unloaded it for failing (rather than an operator's
    /// upload or reset).
    pub unloaded_for_failures: bool,
}

/// Who a loaded plugin is and how its calls went. Shared with the retired
/// log, so that calls still finishing on a replaced plugin are counted.
#[derive(Debug)]
pub(crate) struct PluginRecord {
    pub label: Arc<PluginLabel>,
    pub sha256: String,
    pub default: bool,
    pub loaded_at: SystemTime,
    pub counters: PluginCounters,
}

impl PluginRecord {
    /// A snapshot of it.
    pub fn info(&self) -> PluginInfo {
        let c = &self.counters;
        PluginInfo {
            kind: self.label.kind,
            name: self.label.name.clone(),
            version: self.label.version.clone(),
            sha256: self.sha256.clone(),
            loaded_at: self.loaded_at,
            calls: c.calls.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            fallbacks: c.fallbacks.load(Ordering::Relaxed),
            instances: c.instances.load(Ordering::Relaxed),
            consecutive_failures: c.consecutive_failures.load(Ordering::Relaxed),
            last_error: c.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            default: self.default,
        }
    }
}

/// A retired plugin's record, kept for [`RetiredPlugin`] snapshots.
#[derive(Debug)]
pub(crate) struct RetiredRecord {
    pub record: Arc<PluginRecord>,
    pub retired_at: SystemTime,
    pub reason: String,
    pub unloaded_for_failures: bool,
}

impl RetiredRecord {
    /// A snapshot of it.
    pub fn snapshot(&self) -> RetiredPlugin {
        RetiredPlugin {
            info: self.record.info(),
            retired_at: self.retired_at,
            reason: self.reason.clone(),
            unloaded_for_failures: self.unloaded_for_failures,
        }
    }
}

/// Updated on every call; lock-free but for the last error.
#[derive(Debug, Default)]
pub(crate) struct PluginCounters {
    pub calls: AtomicU64,
    pub failures: AtomicU64,
    pub fallbacks: AtomicU64,
    pub instances: AtomicU64,
    pub consecutive_failures: AtomicU32,
    pub last_error: Mutex<Option<String>>,
}

impl PluginCounters {
    /// A call that answered within the contract.
    #[inline]
    pub fn succeeded(&self) {
        // Read before writing: the common case leaves the cache line shared.
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// A call the plugin failed; returns the failures in a row.
    pub fn failed(&self, error: String) -> u32 {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
        self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A call the host could not run.
    pub fn host_failed(&self, error: String) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
    }
}
