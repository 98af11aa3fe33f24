//! The data of one plugin instance's store: who the plugin is, the settings
//! snapshot, clock and routed message's metadata it reads through its imports
//! (`imports.rs`), its memory cap, and the deadline check of the running call
//! (`deadline.rs`).
//!
//! A module of its own so that the modules reading it (the imports, the
//! deadline callback, the world glue) depend on it and not on each other.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::deadline::DeadlineCheck;
use crate::PluginKind;

/// The cluster settings as the plugins see them: a snapshot swapped whole by
/// `PluginHost::set_settings`.
pub(crate) type Settings = Arc<ArcSwap<HashMap<String, String>>>;

/// Who a plugin is, for its log lines and the host's.
#[derive(Debug)]
pub(crate) struct PluginLabel {
    pub kind: PluginKind,
    pub name: String,
    pub version: String,
}

/// The data of one plugin instance's store.
pub(crate) struct PluginState {
    /// Who runs in this store.
    pub label: Arc<PluginLabel>,
    /// What the `setting` import answers from.
    pub settings: Settings,
    /// What the `monotonic-now` import counts from.
    pub clock_origin: Instant,
    /// The most linear memory the instance may grow to, in bytes.
    pub memory_cap: usize,
    /// The running call's deadline and what the check past it found.
    pub deadline: DeadlineCheck,
    /// What the `message.metadata` import answers from.
    pub routed: RoutedMetadata,
}

/// The metadata of the message a router's `route` call is routing, held for
/// the duration of the call. A copy, because the store outlives the borrowed
/// request; but into buffers the store keeps from call to call, so that
/// copying allocates only for more or longer pairs than the store has held.
#[derive(Debug, Default)]
pub(crate) struct RoutedMetadata {
    /// The pairs; those from `len` on are spare buffers.
    pairs: Vec<(String, String)>,
    len: usize,
}

impl RoutedMetadata {
    /// Holds `metadata` until [`RoutedMetadata::clear`].
    pub fn hold(&mut self, metadata: &[(String, String)]) {
        for (i, (name, value)) in metadata.iter().enumerate() {
            match self.pairs.get_mut(i) {
                Some(pair) => {
                    pair.0.clone_from(name);
                    pair.1.clone_from(value);
                }
                None => self.pairs.push((name.clone(), value.clone())),
            }
        }
        self.len = metadata.len();
    }

    /// Forgets the held metadata (keeping the buffers).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The value of the first pair named `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs[..self.len].iter().find(|(n, _)| n == name).map(|(_, value)| value.as_str())
    }
}
