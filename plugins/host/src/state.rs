//! The data of one plugin instance's store: who the plugin is, the settings
//! snapshot and clock it reads through its imports (`imports.rs`), its memory
//! cap, and the deadline check of the running call (`deadline.rs`).
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
}
