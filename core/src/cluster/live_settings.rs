//! Each node's current settings: polled from the database every
//! `settings_poll`, so that a change is in force on every live node within
//! one heartbeat interval (or one second, whichever is shorter).
//!
//! A node that talks to (or reasons about) the upstream was deployed with the
//! upstream's session timeout; it uses the larger of that and the stored
//! value, and raises the stored value to it, so that nobody (the API
//! included) works with less than the truth.

use super::{Settings, SettingsPatch, Timing};
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
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
    /// Loads the stored settings and starts polling for changes. With a
    /// `session_timeout_floor` (seconds), the upstream session timeout in
    /// force is at least that; settings that cannot accommodate it are an
    /// error at start and ignored (with an error line) afterwards.
    pub async fn start(store: Store, session_timeout_floor: Option<f64>) -> anyhow::Result<LiveSettings> {
        let first = load(&store, session_timeout_floor).await?.map_err(anyhow::Error::msg)?;
        let (tx, rx) = watch::channel(Arc::new(first));
        tokio::spawn(poll(store, session_timeout_floor, tx));
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

/// The settings in force for a node deployed with `floor`, or why they cannot be.
async fn load(store: &Store, floor: Option<f64>) -> crate::store::StoreResult<Result<SettingsInForce, String>> {
    let (version, stored) = match store.settings_doc().await? {
        Some((version, doc)) => match Settings::from_stored(&doc) {
            Ok(s) => (version, s),
            Err(e) => return Ok(Err(format!("stored settings version {version} are unreadable: {e}"))),
        },
        None => (0, Settings::default()),
    };
    let settings = stored.with_session_timeout_floor(floor);
    Ok(match settings.timing() {
        Ok(timing) => Ok(SettingsInForce { version, settings, timing }),
        Err(e) => Err(format!(
            "stored settings version {version} cannot be used with the upstream session timeout of {} s in force on \
             this node (SHARDGATE_UPSTREAM_SESSION_TIMEOUT): {e}",
            settings.upstream_session_timeout
        )),
    })
}

async fn poll(store: Store, floor: Option<f64>, tx: watch::Sender<Arc<SettingsInForce>>) {
    loop {
        let period = tx.borrow().timing.settings_poll;
        tokio::time::sleep(period).await;
        let known = tx.borrow().version;
        match store.settings_version().await {
            Ok(version) if version != known => match load(&store, floor).await {
                Ok(Ok(next)) => {
                    tracing::info!(
                        version = next.version,
                        heartbeat_interval = next.settings.heartbeat_interval,
                        unhealthy_interval = next.settings.unhealthy_interval,
                        upstream_session_timeout = next.settings.upstream_session_timeout,
                        "settings changed; now in force on this node"
                    );
                    tx.send_replace(Arc::new(next));
                }
                Ok(Err(problem)) => {
                    tracing::error!("{problem}; keeping the settings in force");
                    // Not again until the next change.
                    tx.send_modify(|s| Arc::make_mut(s).version = version);
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

/// Raises the stored upstream session timeout to at least `floor` (seconds),
/// the value this node was deployed with. It waits until the primary master
/// has seeded the settings, so that the seed is never pre-empted, and fails
/// when the stored settings cannot accommodate `floor`.
pub async fn raise_session_timeout(store: &Store, floor: f64) -> anyhow::Result<()> {
    for _ in 0..50 {
        let Some((version, doc)) = store.settings_doc().await? else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut stored: SettingsPatch = serde_json::from_str(&doc)?;
        let in_force = Settings::default().merged(&stored);
        if in_force.upstream_session_timeout >= floor {
            return Ok(());
        }
        stored.upstream_session_timeout = Some(floor);
        Settings::default().patched(&stored).map_err(|e| {
            anyhow::anyhow!(
                "SHARDGATE_UPSTREAM_SESSION_TIMEOUT={floor} does not fit the cluster settings (version {version}): {e}"
            )
        })?;
        if store.write_settings(version, &serde_json::to_string(&stored)?).await?.is_some() {
            tracing::info!(
                "raised the cluster's upstream_session_timeout from {} s to {floor} s, the value this node was \
                 deployed with",
                in_force.upstream_session_timeout
            );
            return Ok(());
        }
    }
    anyhow::bail!("could not raise the stored upstream_session_timeout to {floor} s: the settings were never seeded or kept changing")
}
