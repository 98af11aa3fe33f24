//! When a shard's next upstream session may open.
//!
//! Every session this process opens holds its shard's [`SessionSlot`] from
//! before the hello until after its socket is gone. Dropping the slot leaves
//! the instant from which the upstream has surely closed that session: at
//! once when the upstream said so (its EOF after our `bye`, a kick, a refused
//! hello) or when nothing was ever written; otherwise `session_timeout` plus
//! the margin after the socket was aborted, because a lost FIN proves
//! nothing. The next session for the shard waits for that instant, whatever
//! ended the previous one: a read error, an oversized frame, a silent
//! upstream, a revoked lease, a new worker after a re-claim.
//!
//! Upstream sockets abort on close (`SO_LINGER` 0) and give up on
//! unacknowledged data after [`Timing::upstream_write_abort`]
//! (`TCP_USER_TIMEOUT`, enforced by the kernel even while the process is
//! paused), so no frame of an ended session can reach the upstream later
//! than that margin after it was written.

use crate::cluster::live_settings::LiveSettings;
use crate::cluster::Timing;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How often a waiter looks again while another session of its shard is
/// still open (rare: only while a revoked worker finishes its `bye`).
const OPEN_POLL: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy)]
enum ShardQuiet {
    /// A session may be open upstream right now.
    Open,
    /// The last session is surely closed upstream from this instant.
    ClosedBy(Instant),
}

/// The per-shard record of this process's upstream sessions; cheap to clone.
#[derive(Clone, Default)]
pub struct UpstreamQuiet {
    shards: Arc<Mutex<HashMap<u32, ShardQuiet>>>,
}

impl UpstreamQuiet {
    /// Waits until no earlier session of `shard` can still be open upstream,
    /// then takes the shard's slot for a new one.
    pub async fn acquire(&self, shard: u32, settings: LiveSettings) -> SessionSlot {
        loop {
            let wait_until = {
                let mut shards = self.shards.lock().expect("quiet lock");
                match shards.get(&shard) {
                    Some(ShardQuiet::Open) => Instant::now() + OPEN_POLL,
                    Some(ShardQuiet::ClosedBy(at)) if *at > Instant::now() => *at,
                    _ => {
                        shards.insert(shard, ShardQuiet::Open);
                        return SessionSlot {
                            shard,
                            quiet: self.clone(),
                            settings,
                            exposed: false,
                            closed_upstream: false,
                        };
                    }
                }
            };
            tokio::time::sleep_until(wait_until).await;
        }
    }

    /// How long until a new session of `shard` may open; `None` while one may
    /// still be open.
    pub fn remaining(&self, shard: u32) -> Option<Duration> {
        match self.shards.lock().expect("quiet lock").get(&shard) {
            Some(ShardQuiet::Open) => None,
            Some(ShardQuiet::ClosedBy(at)) => Some(at.saturating_duration_since(Instant::now())),
            None => Some(Duration::ZERO),
        }
    }

    fn close(&self, shard: u32, by: Instant) {
        self.shards.lock().expect("quiet lock").insert(shard, ShardQuiet::ClosedBy(by));
    }
}

/// The right to have one session of a shard open upstream. Drop it only
/// once the session's socket is gone.
pub struct SessionSlot {
    shard: u32,
    quiet: UpstreamQuiet,
    settings: LiveSettings,
    exposed: bool,
    closed_upstream: bool,
}

impl SessionSlot {
    /// Something is about to be written: from now on the upstream may hold a session.
    pub fn exposed(&mut self) {
        self.exposed = true;
    }

    /// The upstream itself closed the session, or refused to open one.
    pub fn closed_upstream(&mut self) {
        self.closed_upstream = true;
    }

    /// How long the upstream may keep an unproven session after its socket died.
    pub fn linger(timing: &Timing) -> Duration {
        timing.upstream_session_timeout + timing.promotion_margin
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let now = Instant::now();
        let by = if self.closed_upstream || !self.exposed { now } else { now + Self::linger(&self.settings.timing()) };
        self.quiet.close(self.shard, by);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Settings;

    fn settings() -> LiveSettings {
        LiveSettings::fixed(Settings {
            heartbeat_interval: 0.2,
            unhealthy_interval: 1.0,
            db_update_interval: 1.0,
            upstream_session_timeout: 0.3,
            ..Settings::default()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn an_unproven_close_holds_the_shard_for_the_session_timeout_plus_margin() {
        let quiet = UpstreamQuiet::default();
        let mut slot = quiet.acquire(0, settings()).await;
        assert_eq!(quiet.remaining(0), None, "open while the slot is held");
        slot.exposed();
        drop(slot);
        let linger = SessionSlot::linger(&settings().timing());
        assert_eq!(quiet.remaining(0), Some(linger));
        let started = Instant::now();
        let _next = quiet.acquire(0, settings()).await;
        assert!(started.elapsed() >= linger);
        assert_eq!(quiet.remaining(1), Some(Duration::ZERO), "other shards are not held back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_close_the_upstream_confirmed_frees_the_shard_at_once() {
        let quiet = UpstreamQuiet::default();
        let mut slot = quiet.acquire(0, settings()).await;
        slot.exposed();
        slot.closed_upstream();
        drop(slot);
        assert_eq!(quiet.remaining(0), Some(Duration::ZERO));
        let never_written = quiet.acquire(0, settings()).await;
        drop(never_written);
        assert_eq!(quiet.remaining(0), Some(Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_session_waits_while_the_first_is_open() {
        let quiet = UpstreamQuiet::default();
        let mut first = quiet.acquire(0, settings()).await;
        first.exposed();
        let waiter = tokio::spawn({
            let quiet = quiet.clone();
            async move {
                let _second = quiet.acquire(0, settings()).await;
                Instant::now()
            }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiter.is_finished(), "no second session while the first is open");
        let dropped_at = Instant::now();
        drop(first);
        let opened_at = waiter.await.unwrap();
        assert!(opened_at >= dropped_at + SessionSlot::linger(&settings().timing()));
    }
}
