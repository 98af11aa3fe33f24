//! Each node's current settings: polled from the database every
//! `settings_poll`, so that a change is in force on every live node within
//! one heartbeat interval (or one second, whichever is shorter).

use super::{Settings, Timing};
use crate::store::Store;
use std::sync::Arc;
use tokio::sync::watch;

/// The settings in force on this node, with their version.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingsInForce {
    /// Stored version (0: defaults, nothing stored yet).
    pub version: i64,
    /// The settings.
    pub settings: Settings,
    /// Timing derived from them.
    pub timing: Timing,
}

/// A watch over the settings in force; cheap to clone.
#[derive(Clone)]
pub struct LiveSettings {
    rx: watch::Receiver<Arc<SettingsInForce>>,
}

impl LiveSettings {
    /// Loads the stored settings and starts polling for changes.
    pub async fn start(store: Store) -> crate::store::StoreResult<LiveSettings> {
        let first = load(&store).await?;
        let (tx, rx) = watch::channel(Arc::new(first));
        tokio::spawn(poll(store, tx));
        Ok(LiveSettings { rx })
    }

    /// A fixed value, for tests and tools that do not follow the database.
    pub fn fixed(settings: Settings) -> LiveSettings {
        let timing = settings.timing().expect("fixed settings are valid");
        let (_tx, rx) = watch::channel(Arc::new(SettingsInForce { version: 0, settings, timing }));
        LiveSettings { rx }
    }

    /// The settings in force now.
    pub fn current(&self) -> Arc<SettingsInForce> {
        self.rx.borrow().clone()
    }

    /// The timing in force now.
    pub fn timing(&self) -> Timing {
        self.rx.borrow().timing
    }

    /// Waits until the settings change.
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

async fn load(store: &Store) -> crate::store::StoreResult<SettingsInForce> {
    let (version, settings) = match store.settings_doc().await {
        Ok(Some((version, doc))) => match Settings::from_stored(&doc) {
            Ok(s) if s.timing().is_ok() => (version, s),
            Ok(_) | Err(_) => {
                tracing::error!(version, "stored settings are invalid; keeping defaults");
                (version, Settings::default())
            }
        },
        Ok(None) => (0, Settings::default()),
        Err(e) => return Err(e),
    };
    let timing = settings.timing().expect("validated above");
    Ok(SettingsInForce { version, settings, timing })
}

async fn poll(store: Store, tx: watch::Sender<Arc<SettingsInForce>>) {
    loop {
        let period = tx.borrow().timing.settings_poll;
        tokio::time::sleep(period).await;
        let known = tx.borrow().version;
        match store.settings_version().await {
            Ok(version) if version != known => match load(&store).await {
                Ok(next) => {
                    tracing::info!(
                        version = next.version,
                        heartbeat_interval = next.settings.heartbeat_interval,
                        unhealthy_interval = next.settings.unhealthy_interval,
                        "settings changed; now in force on this node"
                    );
                    tx.send_replace(Arc::new(next));
                }
                Err(e) => tracing::warn!("cannot load settings: {e}"),
            },
            Ok(_) => {}
            Err(e) => tracing::debug!("cannot poll settings: {e}"),
        }
        if tx.is_closed() {
            return;
        }
    }
}
