//! [`PluginHost`]: what the gateway, the master and the binary use.

use std::collections::HashMap;
use std::sync::Arc;

use shardgate_core::policy::{AuthorizationPolicy, HealthPolicy, RoutingPolicy};

use crate::authorizer::{AuthorizerWorld, PluginAuthorizer};
use crate::engine::PluginRuntime;
use crate::health::{HealthWorld, PluginHealth};
use crate::router::{PluginRouter, RouterWorld};
use crate::slot::{PluginSlot, RetiredLog};
use crate::{HostConfig, PluginError, PluginInfo, PluginKind, RetiredPlugin};

/// The default components, built by `plugins/build` and committed.
mod defaults {
    pub const ROUTER: &[u8] = include_bytes!("../../components/router-default.wasm");
    pub const AUTHORIZER: &[u8] = include_bytes!("../../components/authorizer-default.wasm");
    pub const HEALTH: &[u8] = include_bytes!("../../components/health-default.wasm");
}

/// The plugins of one process: one running plugin per kind, each starting
/// as the embedded default. Cheap to clone; create one per process.
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<HostInner>,
}

struct HostInner {
    runtime: Arc<PluginRuntime>,
    router: Arc<PluginSlot<RouterWorld>>,
    authorizer: Arc<PluginSlot<AuthorizerWorld>>,
    health: Arc<PluginSlot<HealthWorld>>,
    retired: RetiredLog,
}

impl PluginHost {
    /// Builds the engine, starts the epoch ticker and loads the three
    /// embedded default components.
    pub fn new(config: HostConfig) -> anyhow::Result<PluginHost> {
        let runtime = Arc::new(PluginRuntime::new(config)?);
        let retired = RetiredLog::default();
        let router = PluginSlot::new(runtime.clone(), defaults::ROUTER, retired.clone())?;
        let authorizer = PluginSlot::new(runtime.clone(), defaults::AUTHORIZER, retired.clone())?;
        let health = PluginSlot::new(runtime.clone(), defaults::HEALTH, retired.clone())?;
        Ok(PluginHost {
            inner: Arc::new(HostInner {
                runtime,
                router: Arc::new(router),
                authorizer: Arc::new(authorizer),
                health: Arc::new(health),
                retired,
            }),
        })
    }

    /// Compiles `bytes`, checks it is a component of `kind`'s world and that
    /// it starts, then swaps it in: calls already running finish on the old
    /// plugin, every later call goes to the new one, none is dropped. On an
    /// error the running plugin is unchanged. Takes some 15 ms (compilation);
    /// call it off the async runtime's worker threads.
    pub fn load(&self, kind: PluginKind, name: &str, version: &str, bytes: &[u8]) -> Result<PluginInfo, PluginError> {
        match kind {
            PluginKind::Router => self.inner.router.load(name, version, bytes),
            PluginKind::Authorizer => self.inner.authorizer.load(name, version, bytes),
            PluginKind::HealthPolicy => self.inner.health.load(name, version, bytes),
        }
    }

    /// Puts `kind` back on its default component.
    pub fn reset(&self, kind: PluginKind) {
        match kind {
            PluginKind::Router => self.inner.router.reset(),
            PluginKind::Authorizer => self.inner.authorizer.reset(),
            PluginKind::HealthPolicy => self.inner.health.reset(),
        }
    }

    /// The running plugin of each kind, in [`PluginKind::ALL`] order.
    pub fn plugins(&self) -> Vec<PluginInfo> {
        vec![self.inner.router.info(), self.inner.authorizer.info(), self.inner.health.info()]
    }

    /// The running plugin of one kind.
    pub fn plugin(&self, kind: PluginKind) -> PluginInfo {
        match kind {
            PluginKind::Router => self.inner.router.info(),
            PluginKind::Authorizer => self.inner.authorizer.info(),
            PluginKind::HealthPolicy => self.inner.health.info(),
        }
    }

    /// The last plugins that stopped running (replaced, reset, or unloaded
    /// for failing), oldest first; at most 32.
    pub fn retired(&self) -> Vec<RetiredPlugin> {
        self.inner.retired.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|r| r.snapshot()).collect()
    }

    /// The routing policy: always the running router plugin.
    pub fn router(&self) -> Arc<dyn RoutingPolicy> {
        Arc::new(PluginRouter(self.inner.router.clone()))
    }

    /// The authorization policy: always the running authorizer plugin.
    pub fn authorizer(&self) -> Arc<dyn AuthorizationPolicy> {
        Arc::new(PluginAuthorizer(self.inner.authorizer.clone()))
    }

    /// The health policy: always the running health-policy plugin.
    pub fn health(&self) -> Arc<dyn HealthPolicy> {
        Arc::new(PluginHealth(self.inner.health.clone()))
    }

    /// Replaces the settings the plugins read with `setting` (names to JSON
    /// texts); calls from now on see the new snapshot.
    pub fn set_settings(&self, settings: HashMap<String, String>) {
        self.inner.runtime.settings.store(Arc::new(settings));
    }

    /// The configuration the host runs with.
    pub fn config(&self) -> &HostConfig {
        &self.inner.runtime.config
    }
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost").field("plugins", &self.plugins()).finish()
    }
}

// The gateway shares one host between its worker threads.
const _: () = {
    const fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<PluginHost>();
};
