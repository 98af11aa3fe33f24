//! The wasmtime side, set up once per host: the engine (Cranelift, pooling
//! allocator, epoch interruption, no component-model concurrency), the epoch
//! ticker thread behind every deadline, the base linker with the host
//! imports, and new stores with their limits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use wasmtime::component::{Component, HasSelf, InstancePre, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

use crate::deadline::DeadlineCheck;
use crate::error::PluginError;
use crate::imports::{v0_1, v0_2};
use crate::state::{PluginLabel, PluginState, RoutedMetadata, Settings};
use crate::HostConfig;

/// Most core instances, memories and tables one component may have. Ours
/// have one memory and a handful of core instances; a component built by
/// `wasm32-wasip2` tooling (or with a WASI adapter) has a few more.
const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 16;
const MAX_MEMORIES_PER_COMPONENT: u32 = 2;
const MAX_TABLES_PER_COMPONENT: u32 = 4;

/// Everything shared by the plugins of one host.
pub(crate) struct PluginRuntime {
    engine: Engine,
    linker: Linker<PluginState>,
    /// Kept for as long as any plugin can run: it drives every deadline.
    _ticker: EpochTicker,
    deadline_ticks: u64,
    pub config: HostConfig,
    pub settings: Settings,
    clock_origin: Instant,
}

impl PluginRuntime {
    /// Builds the engine and starts the ticker.
    pub fn new(config: HostConfig) -> anyhow::Result<PluginRuntime> {
        anyhow::ensure!(!config.epoch_tick.is_zero(), "epoch_tick must be above zero");
        anyhow::ensure!(!config.call_deadline.is_zero(), "call_deadline must be above zero");
        anyhow::ensure!(config.memory_cap >= 1 << 16, "memory_cap must be at least one WebAssembly page");
        anyhow::ensure!(config.max_instances >= 3, "max_instances must leave room for the three defaults");

        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(config.max_instances)
            .total_core_instances(config.max_instances * MAX_CORE_INSTANCES_PER_COMPONENT)
            .total_memories(config.max_instances * MAX_MEMORIES_PER_COMPONENT)
            .total_tables(config.max_instances * MAX_TABLES_PER_COMPONENT)
            .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
            .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
            .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
            .max_memory_size(config.memory_cap);

        let mut wasm = Config::new();
        wasm.epoch_interruption(true)
            // Off even if feature unification in a larger build turns
            // `component-model-async` on: its per-store machinery triples the
            // cost of a call, and no plugin world is async.
            .concurrency_support(false)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(crate::error::to_anyhow).context("creating the wasmtime engine")?;

        // The imports of both contract versions: a component of either links.
        let mut linker = Linker::new(&engine);
        v0_2::host::add_to_linker::<PluginState, HasSelf<PluginState>>(&mut linker, |state| state)
            .and_then(|()| {
                v0_2::message::add_to_linker::<PluginState, HasSelf<PluginState>>(&mut linker, |state| state)
            })
            .and_then(|()| v0_1::host::add_to_linker::<PluginState, HasSelf<PluginState>>(&mut linker, |state| state))
            .map_err(crate::error::to_anyhow)
            .context("linking the host imports")?;

        // Deadline in ticks, plus one: the first tick may come at once.
        let tick_nanos = config.epoch_tick.as_nanos().max(1);
        let deadline_ticks =
            u64::try_from(config.call_deadline.as_nanos().div_ceil(tick_nanos)).unwrap_or(u64::MAX / 2) + 1;
        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick)?;
        let settings = Arc::new(arc_swap::ArcSwap::from_pointee(config.settings.clone()));
        Ok(PluginRuntime {
            engine,
            linker,
            _ticker: ticker,
            deadline_ticks,
            config,
            settings,
            clock_origin: Instant::now(),
        })
    }

    /// Compiles and validates a component (12–18 ms with Cranelift).
    pub fn compile(&self, bytes: &[u8]) -> Result<Component, PluginError> {
        Component::new(&self.engine, bytes).map_err(|e| PluginError::NotAComponent(format!("{e:#}")))
    }

    /// Links a component against the host imports. Imports the host does not
    /// provide (typically WASI, in a component built for `wasm32-wasip2`)
    /// are linked to functions that trap if ever called, so such a component
    /// loads as long as it never uses them.
    pub fn link(&self, component: &Component) -> Result<InstancePre<PluginState>, String> {
        let mut linker = self.linker.clone();
        linker.define_unknown_imports_as_traps(component).map_err(|e| format!("{e:#}"))?;
        linker.instantiate_pre(component).map_err(|e| format!("{e:#}"))
    }

    /// A new store for one instance of the plugin `label`, with its memory
    /// cap and a deadline already armed for the instantiation.
    pub fn new_store(&self, label: &Arc<PluginLabel>) -> Store<PluginState> {
        let config = &self.config;
        let state = PluginState {
            label: label.clone(),
            settings: self.settings.clone(),
            clock_origin: self.clock_origin,
            memory_cap: config.memory_cap,
            deadline: DeadlineCheck::new(config.call_deadline),
            routed: RoutedMetadata::default(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| state);
        store.epoch_deadline_callback(|mut store| Ok(store.data_mut().deadline.reached()));
        self.arm_deadline(&mut store);
        store
    }

    /// Starts the deadline of one call (or instantiation) now.
    #[inline]
    pub fn arm_deadline(&self, store: &mut Store<PluginState>) {
        store.data_mut().deadline.start_call();
        store.set_epoch_deadline(self.deadline_ticks);
    }

    /// The configured deadline, for messages.
    pub fn deadline(&self) -> Duration {
        self.config.call_deadline
    }
}

/// The thread that advances the engine's epoch every tick, which is what
/// interrupts a plugin past its deadline. It stops when dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine, tick: Duration) -> anyhow::Result<EpochTicker> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .context("starting the plugin epoch ticker")?;
        Ok(EpochTicker { stop, thread: Some(thread) })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // At most one tick; never from the ticker itself.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}
