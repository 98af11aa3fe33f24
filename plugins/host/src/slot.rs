//! The running plugin of one kind: swapped atomically by a load, a reset or
//! an unload, and called with containment (a failed call is answered by the
//! built-in rule, logged and counted; too many in a row unload the plugin).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use shardgate_core::digest::sha256_hex;
use wasmtime::component::Component;
use wasmtime::Store;

use crate::engine::PluginRuntime;
use crate::error::{Blame, CallFailure, PluginError};
use crate::plugin::{Answer, LoadedPlugin, World};
use crate::state::{PluginLabel, PluginState};
use crate::stats::{PluginInfo, RetiredRecord};

/// How many retired plugins the host remembers.
const RETIRED_KEPT: usize = 32;

/// Plugins no longer running, newest last, shared by the three kinds.
pub(crate) type RetiredLog = Arc<Mutex<VecDeque<RetiredRecord>>>;

/// Name and version of the embedded defaults.
pub(crate) const DEFAULT_NAME: &str = "default";
pub(crate) const DEFAULT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The running plugin of kind `W::KIND`.
pub(crate) struct PluginSlot<W: World> {
    runtime: Arc<PluginRuntime>,
    current: ArcSwap<LoadedPlugin<W>>,
    default_component: Component,
    default_sha256: String,
    retired: RetiredLog,
}

impl<W: World> PluginSlot<W> {
    /// Loads the embedded default component of this kind.
    pub fn new(runtime: Arc<PluginRuntime>, default_bytes: &[u8], retired: RetiredLog) -> anyhow::Result<Self> {
        let context = |e: PluginError| anyhow::anyhow!("the embedded default {} component: {e}", W::KIND);
        let default_component = runtime.compile(default_bytes).map_err(context)?;
        let default_sha256 = sha256_hex(default_bytes);
        let first = build::<W>(&runtime, &default_component, DEFAULT_NAME, DEFAULT_VERSION, &default_sha256, true)
            .map_err(context)?;
        Ok(PluginSlot { runtime, current: ArcSwap::from_pointee(first), default_component, default_sha256, retired })
    }

    /// Compiles, checks and starts `bytes`, then makes it the running plugin.
    /// Calls already running finish on the plugin they started on.
    pub fn load(&self, name: &str, version: &str, bytes: &[u8]) -> Result<PluginInfo, PluginError> {
        check_label(name, version)?;
        let component = self.runtime.compile(bytes)?;
        let plugin = Arc::new(build::<W>(&self.runtime, &component, name, version, &sha256_hex(bytes), false)?);
        let info = plugin.record.info();
        let old = self.current.swap(plugin);
        self.retire(&old, format!("replaced by {name} {version}"), false);
        tracing::info!(plugin.kind = %W::KIND, plugin.name = name, plugin.version = version, sha256 = %info.sha256,
            "plugin loaded; it answers every new {} call from now on", W::KIND);
        Ok(info)
    }

    /// Goes back to the default component.
    pub fn reset(&self) {
        match self.fresh_default() {
            Ok(default) => {
                let old = self.current.swap(default);
                self.retire(&old, "reset to the default".into(), false);
            }
            Err(e) => tracing::error!(plugin.kind = %W::KIND, blame = %e.blame(), "cannot reset to the default: {e}"),
        }
    }

    /// The running plugin's state.
    pub fn info(&self) -> PluginInfo {
        self.current.load().record.info()
    }

    /// Calls the running plugin; if that fails, logs and counts it and
    /// answers with `fallback` (the built-in rule).
    #[inline]
    pub fn invoke<Out>(
        &self,
        call: impl FnOnce(&W::Exports, &mut Store<PluginState>) -> Answer<Out>,
        fallback: impl FnOnce() -> Out,
    ) -> Out {
        let plugin = self.current.load();
        let _span = tracing::trace_span!("plugin_call", kind = W::KIND.as_str()).entered();
        match plugin.call(call) {
            Ok(answer) => {
                plugin.record.counters.succeeded();
                answer
            }
            Err(failure) => {
                self.contain(&plugin, failure);
                fallback()
            }
        }
    }

    #[cold]
    fn contain(&self, plugin: &Arc<LoadedPlugin<W>>, failure: CallFailure) {
        let record = &plugin.record;
        let PluginLabel { kind, name, version } = &*record.label;
        let blame = failure.blame();
        let message = format!("{blame}: {failure}");
        if blame == Blame::Host {
            record.counters.host_failed(message);
            tracing::error!(plugin.kind = %kind, plugin.name = %name, plugin.version = %version, blame = %blame,
                "the host could not run the plugin ({failure}); the built-in rule answered");
            return;
        }
        let in_a_row = record.counters.failed(message);
        tracing::error!(plugin.kind = %kind, plugin.name = %name, plugin.version = %version, blame = %blame,
            failures_in_a_row = in_a_row, "plugin call failed ({failure}); the built-in rule answered");
        let limit = self.runtime.config.max_consecutive_failures;
        if in_a_row < limit || record.default {
            return;
        }
        let default = match self.fresh_default() {
            Ok(default) => default,
            Err(e) => {
                tracing::error!(plugin.kind = %kind, blame = %e.blame(), "cannot fall back to the default: {e}");
                return;
            }
        };
        // Only if it is still the running one: a concurrent call may have
        // unloaded it already, or an operator replaced it.
        let previous = self.current.compare_and_swap(plugin, default);
        if Arc::ptr_eq(&previous, plugin) {
            let reason = format!("unloaded after {in_a_row} failed calls in a row; last: {failure}");
            tracing::error!(plugin.kind = %kind, plugin.name = %name, plugin.version = %version,
                "{reason}; the default {kind} plugin runs again");
            self.retire(plugin, reason, true);
        }
    }

    fn fresh_default(&self) -> Result<Arc<LoadedPlugin<W>>, PluginError> {
        build::<W>(&self.runtime, &self.default_component, DEFAULT_NAME, DEFAULT_VERSION, &self.default_sha256, true)
            .map(Arc::new)
    }

    fn retire(&self, plugin: &LoadedPlugin<W>, reason: String, unloaded_for_failures: bool) {
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        if retired.len() == RETIRED_KEPT {
            retired.pop_front();
        }
        let record = plugin.record.clone();
        retired.push_back(RetiredRecord { record, retired_at: SystemTime::now(), reason, unloaded_for_failures });
    }
}

/// Links, type-checks and starts a compiled component as a plugin of world `W`.
fn build<W: World>(
    runtime: &Arc<PluginRuntime>,
    component: &Component,
    name: &str,
    version: &str,
    sha256: &str,
    default: bool,
) -> Result<LoadedPlugin<W>, PluginError> {
    let pre = runtime.link(component).map_err(|reason| PluginError::WrongWorld { kind: W::KIND, reason })?;
    let label = PluginLabel { kind: W::KIND, name: name.to_string(), version: version.to_string() };
    LoadedPlugin::new(runtime.clone(), pre, label, sha256.to_string(), default)
}

fn check_label(name: &str, version: &str) -> Result<(), PluginError> {
    let fine =
        |s: &str| !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c));
    if !fine(name) || !fine(version) {
        return Err(PluginError::BadLabel(format!(
            "{name:?} {version:?}: each must be 1 to 64 characters of letters, digits and . _ - +"
        )));
    }
    Ok(())
}
