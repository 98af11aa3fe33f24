//! One loaded plugin: its pre-linked component, its pool of warm instances,
//! its counters; and one call into it, under the deadline.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use wasmtime::component::InstancePre;
use wasmtime::Store;

use crate::engine::PluginRuntime;
use crate::error::{CallFailure, PluginError};
use crate::state::{PluginLabel, PluginState};
use crate::stats::{PluginCounters, PluginRecord};
use crate::PluginKind;

/// The glue of one WIT world, implemented by `router.rs`, `authorizer.rs`
/// and `health.rs`.
pub(crate) trait World: Send + Sync + 'static {
    /// Its kind.
    const KIND: PluginKind;
    /// The world's pre-instantiated form (exports looked up and type-checked).
    type Pre: Send + Sync + 'static;
    /// A live instance's typed exports.
    type Exports: Send + 'static;

    /// Checks that the component exports this world.
    fn prepare(pre: InstancePre<PluginState>) -> wasmtime::Result<Self::Pre>;

    /// Instantiates it in `store`.
    fn instantiate(pre: &Self::Pre, store: &mut Store<PluginState>) -> wasmtime::Result<Self::Exports>;
}

/// What a world's call gives back: `Err` from wasmtime, `Ok(Err(why))` for
/// an answer the contract forbids.
pub(crate) type Answer<R> = wasmtime::Result<Result<R, String>>;

/// A live instance, between calls.
struct WarmInstance<W: World> {
    store: Store<PluginState>,
    exports: W::Exports,
}

/// A compiled, linked plugin and its instances.
pub(crate) struct LoadedPlugin<W: World> {
    runtime: Arc<PluginRuntime>,
    pre: W::Pre,
    pub record: Arc<PluginRecord>,
    /// Idle instances. A call takes one (or creates one) and gives it back
    /// unless it trapped; the pool keeps at most `warm_instances`.
    idle: Mutex<Vec<WarmInstance<W>>>,
}

impl<W: World> LoadedPlugin<W> {
    /// Type-checks `pre` against the world and instantiates it once, so that
    /// a plugin that cannot start is refused at load time, not at its first call.
    pub fn new(
        runtime: Arc<PluginRuntime>,
        pre: InstancePre<PluginState>,
        label: PluginLabel,
        sha256: String,
        default: bool,
    ) -> Result<LoadedPlugin<W>, PluginError> {
        let pre = W::prepare(pre).map_err(|e| PluginError::WrongWorld { kind: W::KIND, reason: format!("{e:#}") })?;
        let plugin = LoadedPlugin {
            runtime,
            pre,
            record: Arc::new(PluginRecord {
                label: Arc::new(label),
                sha256,
                default,
                loaded_at: SystemTime::now(),
                counters: PluginCounters::default(),
            }),
            idle: Mutex::new(Vec::new()),
        };
        let first = plugin.instantiate().map_err(|e| PluginError::instantiation(e, plugin.runtime.deadline()))?;
        plugin.idle.lock().unwrap_or_else(|e| e.into_inner()).push(first);
        Ok(plugin)
    }

    fn instantiate(&self) -> wasmtime::Result<WarmInstance<W>> {
        self.record.counters.instances.fetch_add(1, Ordering::Relaxed);
        let mut store = self.runtime.new_store(&self.record.label);
        let exports = W::instantiate(&self.pre, &mut store)?;
        Ok(WarmInstance { store, exports })
    }

    /// Runs `call` on an idle instance (or a new one) under the deadline.
    /// `call` lowers the arguments, calls the export and checks the answer:
    /// `Err` is wasmtime's (a trap, the deadline, the memory cap), `Ok(Err)`
    /// an answer outside the contract.
    #[inline]
    pub fn call<R>(
        &self,
        call: impl FnOnce(&W::Exports, &mut Store<PluginState>) -> Answer<R>,
    ) -> Result<R, CallFailure> {
        self.record.counters.calls.fetch_add(1, Ordering::Relaxed);
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut instance = match idle {
            Some(instance) => instance,
            None => self.instantiate().map_err(|e| CallFailure::from_wasmtime(e, self.runtime.deadline(), None))?,
        };
        self.runtime.arm_deadline(&mut instance.store);
        let outcome = match call(&instance.exports, &mut instance.store) {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(nonsense)) => Err(CallFailure::nonsense(nonsense)),
            Err(error) => Err(CallFailure::from_wasmtime(
                error,
                self.runtime.deadline(),
                instance.store.data().deadline.overrun(),
            )),
        };
        match outcome {
            Ok(answer) => {
                self.give_back(instance);
                Ok(answer)
            }
            Err(failure) => {
                // A trapped instance is dropped here; the next call that
                // finds the pool empty creates its replacement.
                if !failure.poisons_instance() {
                    self.give_back(instance);
                }
                Err(failure)
            }
        }
    }

    #[inline]
    fn give_back(&self, instance: WarmInstance<W>) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.runtime.config.warm_instances {
            idle.push(instance);
        }
    }
}
