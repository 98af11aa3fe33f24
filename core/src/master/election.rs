//! The master lease loop: compete while secondary, renew while primary, and
//! stop acting the moment the lease could have lapsed.
//!
//! Like a coreapp with its shard lease, a primary master trusts its lease
//! only until `sent + ttl - margin` by its own monotonic clock, where `sent`
//! is when it *sent* the last successful renewal; the database clock decides
//! expiry for everyone else. Every write it makes is fenced by its epoch too.

use crate::store::master_lease::MasterAuth;
use crate::store::Store;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// This master's role as the election sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterRole {
    /// Competing for the lease.
    Secondary,
    /// Holding the lease.
    Primary {
        /// Credentials for fenced writes.
        auth: MasterAuth,
        /// Local deadline after which this master must not act without a renewal.
        valid_until: Instant,
    },
}

impl MasterRole {
    /// The credentials while the lease is surely held by this master.
    pub fn acting_auth(&self) -> Option<&MasterAuth> {
        match self {
            MasterRole::Primary { auth, valid_until } if Instant::now() < *valid_until => Some(auth),
            _ => None,
        }
    }
}

/// Runs the election forever, publishing role changes on `role`.
pub async fn run_election(
    store: Store,
    node_id: String,
    timing: watch::Receiver<crate::cluster::Timing>,
    role: watch::Sender<MasterRole>,
) {
    loop {
        let t = *timing.borrow();
        let ttl = t.master_lease_ttl;
        let margin = (ttl / 10).max(Duration::from_millis(20));
        let sent = Instant::now();
        let current = role.borrow().clone();
        let next = match current {
            MasterRole::Secondary => match store.try_acquire_master_lease(&node_id, ttl).await {
                Ok(Some(auth)) => {
                    tracing::info!("{node_id} won the master lease, epoch {}: now primary master", auth.epoch);
                    Some(MasterRole::Primary { auth, valid_until: sent + ttl - margin })
                }
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!("{node_id} cannot compete for the master lease: {e}");
                    None
                }
            },
            MasterRole::Primary { auth, valid_until } => {
                match tokio::time::timeout(t.master_renew_every * 2, store.renew_master_lease(&auth, ttl)).await {
                    Ok(Ok(true)) => Some(MasterRole::Primary { auth, valid_until: sent + ttl - margin }),
                    Ok(Ok(false)) => {
                        tracing::warn!("{node_id} lost the master lease (epoch {}): now secondary", auth.epoch);
                        Some(MasterRole::Secondary)
                    }
                    Ok(Err(_)) | Err(_) if Instant::now() >= valid_until => {
                        tracing::warn!(
                            "{node_id} could not renew the master lease in time (epoch {}): stepping down",
                            auth.epoch
                        );
                        Some(MasterRole::Secondary)
                    }
                    Ok(Err(e)) => {
                        tracing::warn!("{node_id} failed to renew the master lease, retrying: {e}");
                        Some(MasterRole::Primary { auth, valid_until })
                    }
                    Err(_) => Some(MasterRole::Primary { auth, valid_until }),
                }
            }
        };
        if let Some(next) = next {
            role.send_replace(next);
        }
        if role.is_closed() {
            return;
        }
        tokio::time::sleep(t.master_renew_every).await;
    }
}

/// Gives the lease back on a clean stop so that a secondary takes over at once.
pub async fn step_down(store: &Store, role: &MasterRole) {
    if let MasterRole::Primary { auth, .. } = role {
        match store.release_master_lease(auth).await {
            Ok(true) => tracing::info!("released the master lease (epoch {})", auth.epoch),
            Ok(false) => {}
            Err(e) => tracing::warn!("could not release the master lease: {e}"),
        }
    }
}
