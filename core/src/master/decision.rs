//! The primary master's decision for one cycle, as a pure function of what it
//! observed: for every shard, keep the primary, or give the shard to a healthy
//! secondary and say from when that secondary may open its session.
//!
//! Safety rests on `not_before`: a shard taken from a holder that may still be
//! alive (silent, paused, partitioned, or serving without an upstream
//! session) is claimable only after the holder's lease has expired on the
//! database clock, plus a margin. The holder stops using its session before
//! that expiry by its own clock (see the coreapp's lease keeper), so two
//! sessions never overlap. A holder known to be gone (its control port
//! refuses connections, or a new process answers in its place) wrote its
//! last frame before this cycle read the database clock, but its FIN may
//! never reach the upstream: its shard is claimable once the upstream must
//! have timed that session out (`session_timeout` plus the margin from now),
//! or at the lease's own bound if that comes first.

use crate::cluster::Timing;
use crate::policy::{HealthObservations, HealthPolicy, HealthVerdict};
use crate::store::ms;
use crate::store::shard_map::ShardRow;
use std::fmt;
use std::time::Duration;

/// What the primary master's own latest heartbeat to a coreapp returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Not probed yet.
    Unknown,
    /// Answered, by this process instance.
    Answered {
        /// Instance that answered.
        instance_id: String,
        /// Per shard it holds, how long it has been without an open upstream session (ms).
        sessions_down_ms: Vec<(u32, u64)>,
    },
    /// Connection refused: no process listens there any more.
    Refused,
    /// No answer in time: paused, overloaded or cut off.
    Silent,
}

/// One coreapp as the primary master sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreappView {
    /// Node id.
    pub node_id: String,
    /// Database-clock time of its last liveness write.
    pub last_seen: i64,
    /// Per master, the database-clock time of the latest heartbeat it answered.
    pub answers: Vec<(String, i64)>,
    /// Round-trip times of the latest heartbeats, µs.
    pub recent_rtt_us: Vec<u64>,
    /// This master's own latest probe.
    pub probe: Probe,
}

/// Everything one cycle decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// Database clock, unix ms.
    pub now: i64,
    /// The shard map.
    pub shards: Vec<ShardRow>,
    /// Every registered coreapp.
    pub coreapps: Vec<CoreappView>,
    /// How long this master has been probing: silence is judged only over a
    /// window it watched, so a freshly elected master does not fail over
    /// healthy primaries it has not heard from yet.
    pub probing_for: Duration,
}

/// Why a coreapp cannot serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unhealthy {
    /// Its process is gone: refused connection or a new instance answers.
    Gone(String),
    /// It may be alive but is not serving: silent, stale, or not renewing.
    Suspect(String),
}

/// The decision for one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardDecision {
    /// The primary is fine (or a claim is pending), nothing to do.
    Keep {
        /// Shard.
        shard: u32,
        /// What was seen.
        reason: String,
    },
    /// Give the shard to `to`, claimable from `not_before` (database clock).
    Reassign {
        /// Shard.
        shard: u32,
        /// Row version the decision was made on.
        expected_version: i64,
        /// Previous owner ("" when none).
        from: String,
        /// New owner.
        to: String,
        /// Earliest database-clock time the new owner may claim.
        not_before: i64,
        /// Why.
        reason: String,
    },
    /// The shard needs a new primary but no healthy coreapp is free.
    Stuck {
        /// Shard.
        shard: u32,
        /// Why.
        reason: String,
    },
}

impl fmt::Display for ShardDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShardDecision::Keep { shard, reason } => write!(f, "shard {shard} {reason}, no action"),
            ShardDecision::Reassign { shard, from, to, reason, .. } if from.is_empty() => {
                write!(f, "shard {shard} has no primary ({reason}): promoting {to}")
            }
            ShardDecision::Reassign { shard, from, to, reason, .. } => {
                write!(f, "shard {shard} primary {from} {reason}: promoting {to}")
            }
            ShardDecision::Stuck { shard, reason } => write!(f, "shard {shard} {reason}"),
        }
    }
}

impl ClusterView {
    fn coreapp(&self, node_id: &str) -> Option<&CoreappView> {
        self.coreapps.iter().find(|c| c.node_id == node_id)
    }

    /// Why `node_id` cannot serve, judged against its claimed `instance`
    /// (empty when it has claimed nothing yet); `None` when healthy.
    ///
    /// Whether a process is gone is the host's own judgement; suspicion is
    /// the health policy's, and it is acted on only by a master that has
    /// itself watched for `unhealthy_interval`, so that a freshly elected
    /// master does not fail over primaries it has not heard from yet.
    pub fn unhealthy(
        &self,
        node_id: &str,
        instance: &str,
        timing: &Timing,
        policy: &dyn HealthPolicy,
    ) -> Option<Unhealthy> {
        let Some(c) = self.coreapp(node_id) else {
            return Some(Unhealthy::Suspect("is not registered".into()));
        };
        match &c.probe {
            Probe::Refused => return Some(Unhealthy::Gone("is gone (connection refused)".into())),
            Probe::Answered { instance_id, .. } if !instance.is_empty() && instance_id != instance => {
                return Some(Unhealthy::Gone("restarted (a new process answers)".into()));
            }
            _ => {}
        }
        if self.probing_for < timing.unhealthy {
            return None;
        }
        let since = |t: i64| u64::try_from(self.now - t).unwrap_or(0);
        let observations = HealthObservations {
            node: c.node_id.clone(),
            heartbeats: c.answers.iter().map(|(master, at)| (master.clone(), Some(since(*at)))).collect(),
            since_db_liveness_ms: since(c.last_seen),
            recent_rtt_us: c.recent_rtt_us.clone(),
            heartbeat_interval_ms: ms(timing.heartbeat).unsigned_abs(),
            unhealthy_interval_ms: ms(timing.unhealthy).unsigned_abs(),
            db_update_interval_ms: ms(timing.db_update).unsigned_abs(),
        };
        match policy.judge(&observations) {
            HealthVerdict::Healthy => None,
            HealthVerdict::Unhealthy(reason) => Some(Unhealthy::Suspect(reason)),
        }
    }

    /// How long `node_id` says it has held `shard` without an upstream session.
    fn session_down(&self, node_id: &str, shard: u32) -> Duration {
        let Some(Probe::Answered { sessions_down_ms, .. }) = self.coreapp(node_id).map(|c| &c.probe) else {
            return Duration::ZERO;
        };
        let down = sessions_down_ms.iter().find(|(s, _)| *s == shard).map_or(0, |(_, ms)| *ms);
        Duration::from_millis(down)
    }

    /// A healthy coreapp to take a shard, the least loaded first.
    fn candidate(
        &self,
        exclude: &str,
        planned: &[(String, u32)],
        timing: &Timing,
        policy: &dyn HealthPolicy,
    ) -> Option<String> {
        let load = |node: &str| {
            self.shards.iter().filter(|r| r.owner == node).count() + planned.iter().filter(|(n, _)| n == node).count()
        };
        self.coreapps
            .iter()
            .filter(|c| c.node_id != exclude && self.unhealthy(&c.node_id, "", timing, policy).is_none())
            .map(|c| (load(&c.node_id), c.node_id.clone()))
            .min()
            .map(|(_, node)| node)
    }
}

/// Decides every shard for one cycle, with `policy` judging suspects.
pub fn decide(view: &ClusterView, timing: &Timing, policy: &dyn HealthPolicy) -> Vec<ShardDecision> {
    let mut planned: Vec<(String, u32)> = Vec::new();
    let mut decisions = Vec::with_capacity(view.shards.len());
    for row in &view.shards {
        let decision = decide_shard(view, row, &planned, timing, policy);
        if let ShardDecision::Reassign { to, shard, .. } = &decision {
            planned.push((to.clone(), *shard));
        }
        decisions.push(decision);
    }
    decisions
}

fn decide_shard(
    view: &ClusterView,
    row: &ShardRow,
    planned: &[(String, u32)],
    timing: &Timing,
    policy: &dyn HealthPolicy,
) -> ShardDecision {
    let shard = row.shard;
    // Nothing can have been opened under the current epoch before it was
    // claimed, so an unowned or unclaimed shard keeps its old `not_before`.
    let (reason, exclude, not_before) = if row.owner.is_empty() {
        ("unassigned".to_string(), "", row.not_before)
    } else {
        match view.unhealthy(&row.owner, &row.owner_instance, timing, policy) {
            // A healthy owner that cannot claim (it cannot write to the
            // database, say) must not hold the shard hostage.
            None if row.owner_instance.is_empty()
                && view.now - row.updated_at.max(row.not_before) > ms(timing.unhealthy) =>
            {
                ("did not claim its assignment in time".to_string(), row.owner.as_str(), row.not_before)
            }
            None if row.owner_instance.is_empty() => {
                return ShardDecision::Keep {
                    shard,
                    reason: format!("assigned to {}, waiting for its claim", row.owner),
                };
            }
            None if !row.lease_live(view.now) && view.now - row.lease_expires_at > ms(timing.unhealthy) => (
                format!("stopped renewing its lease {:.1} s ago", (view.now - row.lease_expires_at) as f64 / 1000.0),
                row.owner.as_str(),
                row.not_before.max(row.lease_expires_at) + ms(timing.promotion_margin),
            ),
            // Alive and renewing, but not talking to the upstream (cut off
            // from it, or refused): as good as down for the shard.
            None if view.session_down(&row.owner, shard) >= timing.unhealthy => (
                format!("has had no upstream session for {:.1} s", view.session_down(&row.owner, shard).as_secs_f64()),
                row.owner.as_str(),
                row.not_before.max(row.lease_expires_at) + ms(timing.promotion_margin),
            ),
            None => {
                return ShardDecision::Keep {
                    shard,
                    reason: format!("primary {} healthy (epoch {})", row.owner, row.epoch),
                };
            }
            Some(Unhealthy::Gone(why)) if row.owner_instance.is_empty() => (why, "", row.not_before),
            Some(Unhealthy::Gone(why)) => {
                let upstream_gave_up = view.now + ms(timing.upstream_session_timeout + timing.promotion_margin);
                let lease_bound = row.lease_expires_at + ms(timing.promotion_margin);
                (why, "", row.not_before.max(upstream_gave_up.min(lease_bound)))
            }
            Some(Unhealthy::Suspect(why)) if row.owner_instance.is_empty() => (why, row.owner.as_str(), row.not_before),
            Some(Unhealthy::Suspect(why)) => {
                (why, row.owner.as_str(), row.not_before.max(row.lease_expires_at) + ms(timing.promotion_margin))
            }
        }
    };
    match view.candidate(exclude, planned, timing, policy) {
        Some(to) => ShardDecision::Reassign {
            shard,
            expected_version: row.version,
            from: row.owner.clone(),
            to,
            not_before,
            reason,
        },
        None => {
            ShardDecision::Stuck { shard, reason: format!("needs a primary ({reason}) but no healthy coreapp is free") }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Settings;
    use crate::policy::IntervalHealth;

    fn decide(view: &ClusterView, timing: &Timing) -> Vec<ShardDecision> {
        super::decide(view, timing, &IntervalHealth)
    }

    fn timing() -> Timing {
        Settings {
            heartbeat_interval: 0.2,
            unhealthy_interval: 1.0,
            db_update_interval: 1.0,
            upstream_session_timeout: 0.3,
            ..Settings::default()
        }
        .timing()
        .unwrap()
    }

    const NOW: i64 = 1_000_000;

    fn healthy(node: &str, instance: &str) -> CoreappView {
        CoreappView {
            node_id: node.into(),
            last_seen: NOW - 100,
            answers: vec![("m1".into(), NOW - 100)],
            recent_rtt_us: vec![250],
            probe: Probe::Answered { instance_id: instance.into(), sessions_down_ms: Vec::new() },
        }
    }

    fn held(shard: u32, owner: &str, instance: &str, expires: i64) -> ShardRow {
        ShardRow {
            shard,
            owner: owner.into(),
            owner_instance: instance.into(),
            epoch: 3,
            lease_expires_at: expires,
            not_before: 0,
            master_epoch: 1,
            version: 9,
            updated_at: NOW - 200,
        }
    }

    fn view(shards: Vec<ShardRow>, coreapps: Vec<CoreappView>) -> ClusterView {
        ClusterView { now: NOW, shards, coreapps, probing_for: Duration::from_secs(5) }
    }

    #[test]
    fn healthy_primary_is_kept() {
        let v = view(vec![held(0, "c1", "i1", NOW + 500)], vec![healthy("c1", "i1"), healthy("c2", "i2")]);
        let d = decide(&v, &timing());
        assert!(matches!(&d[0], ShardDecision::Keep { .. }), "{d:?}");
        assert_eq!(d[0].to_string(), "shard 0 primary c1 healthy (epoch 3), no action");
    }

    #[test]
    fn unassigned_shards_go_to_distinct_free_coreapps() {
        let v = view(
            vec![held(0, "", "", 0), held(1, "", "", 0)],
            vec![healthy("c1", "i1"), healthy("c2", "i2"), healthy("c3", "i3")],
        );
        let d = decide(&v, &timing());
        let owners: Vec<_> = d
            .iter()
            .map(|d| match d {
                ShardDecision::Reassign { to, not_before, .. } => {
                    assert_eq!(*not_before, 0);
                    to.clone()
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(owners, ["c1", "c2"]);
    }

    /// When the upstream must have timed out a session whose writer died before `NOW`.
    fn upstream_gave_up() -> i64 {
        let t = timing();
        NOW + ms(t.upstream_session_timeout + t.promotion_margin)
    }

    #[test]
    fn dead_primary_is_replaced_once_the_upstream_must_have_dropped_its_session() {
        let mut dead = healthy("c1", "i1");
        dead.probe = Probe::Refused;
        let v = view(vec![held(0, "c1", "i1", NOW + 900)], vec![dead, healthy("c2", "i2")]);
        match &decide(&v, &timing())[0] {
            ShardDecision::Reassign { to, not_before, reason, .. } => {
                assert_eq!(to, "c2");
                assert_eq!(*not_before, upstream_gave_up(), "a lost FIN must not matter");
                assert!(*not_before < NOW + 900, "sooner than the lease");
                assert!(reason.contains("refused"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dead_primary_waits_no_longer_than_its_lease_bound() {
        let mut dead = healthy("c1", "i1");
        dead.probe = Probe::Refused;
        let v = view(vec![held(0, "c1", "i1", NOW + 100)], vec![dead, healthy("c2", "i2")]);
        let bound = NOW + 100 + ms(timing().promotion_margin);
        assert!(bound < upstream_gave_up());
        assert!(
            matches!(&decide(&v, &timing())[0], ShardDecision::Reassign { not_before, .. } if *not_before == bound)
        );
    }

    #[test]
    fn restarted_primary_is_replaced_once_the_upstream_must_have_dropped_its_session() {
        let v = view(vec![held(0, "c1", "old", NOW + 900)], vec![healthy("c1", "new"), healthy("c2", "i2")]);
        let gave_up = upstream_gave_up();
        assert!(
            matches!(&decide(&v, &timing())[0], ShardDecision::Reassign { not_before, .. } if *not_before == gave_up)
        );
    }

    #[test]
    fn primary_without_an_upstream_session_is_replaced_after_its_lease() {
        let mut cut_off = healthy("c1", "i1");
        let down = ms(timing().unhealthy).unsigned_abs();
        cut_off.probe = Probe::Answered { instance_id: "i1".into(), sessions_down_ms: vec![(0, down - 1)] };
        let v = view(vec![held(0, "c1", "i1", NOW + 700)], vec![cut_off.clone(), healthy("c2", "i2")]);
        assert!(matches!(&decide(&v, &timing())[0], ShardDecision::Keep { .. }), "not yet");
        cut_off.probe = Probe::Answered { instance_id: "i1".into(), sessions_down_ms: vec![(0, down)] };
        let v = view(vec![held(0, "c1", "i1", NOW + 700)], vec![cut_off, healthy("c2", "i2")]);
        match &decide(&v, &timing())[0] {
            ShardDecision::Reassign { to, not_before, reason, .. } => {
                assert_eq!(to, "c2");
                assert_eq!(
                    *not_before,
                    NOW + 700 + ms(timing().promotion_margin),
                    "the live holder's lease is waited out"
                );
                assert!(reason.contains("no upstream session"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn silent_primary_is_replaced_only_after_its_lease_expires_plus_margin() {
        let mut silent = healthy("c1", "i1");
        silent.probe = Probe::Silent;
        silent.answers = vec![("m1".into(), NOW - 1_500), ("m2".into(), NOW - 1_600)];
        let expires = NOW + 300;
        let v = view(vec![held(0, "c1", "i1", expires)], vec![silent, healthy("c2", "i2")]);
        match &decide(&v, &timing())[0] {
            ShardDecision::Reassign { to, not_before, .. } => {
                assert_eq!(to, "c2");
                assert!(*not_before > expires, "must wait past the old lease");
                assert_eq!(*not_before, expires + ms(timing().promotion_margin));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn new_master_does_not_judge_silence_it_did_not_watch() {
        let mut quiet = healthy("c1", "i1");
        quiet.probe = Probe::Unknown;
        quiet.answers = Vec::new();
        let mut v = view(vec![held(0, "c1", "i1", NOW + 500)], vec![quiet, healthy("c2", "i2")]);
        v.probing_for = Duration::from_millis(100);
        assert!(matches!(&decide(&v, &timing())[0], ShardDecision::Keep { .. }));
    }

    #[test]
    fn stale_database_liveness_is_unhealthy() {
        let mut stale = healthy("c1", "i1");
        stale.last_seen = NOW - 10_000;
        let v = view(vec![held(0, "c1", "i1", NOW + 500)], vec![stale, healthy("c2", "i2")]);
        match &decide(&v, &timing())[0] {
            ShardDecision::Reassign { reason, .. } => assert!(reason.contains("database liveness")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn primary_that_stopped_renewing_is_replaced_after_expiry() {
        let v = view(vec![held(0, "c1", "i1", NOW - 2_000)], vec![healthy("c1", "i1"), healthy("c2", "i2")]);
        assert!(matches!(&decide(&v, &timing())[0], ShardDecision::Reassign { to, .. } if to == "c2"));
    }

    #[test]
    fn assignment_waits_for_the_claim_then_moves_on_if_none_comes() {
        let pending = held(0, "c1", "", 0);
        let v = view(vec![pending.clone()], vec![healthy("c1", "i1"), healthy("c2", "i2")]);
        assert!(matches!(&decide(&v, &timing())[0], ShardDecision::Keep { .. }));
        let stale = ShardRow { updated_at: NOW - 5_000, ..pending };
        let v = view(vec![stale], vec![healthy("c1", "i1"), healthy("c2", "i2")]);
        match &decide(&v, &timing())[0] {
            ShardDecision::Reassign { to, reason, .. } => {
                assert_eq!(to, "c2");
                assert!(reason.contains("claim"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_free_healthy_coreapp_leaves_the_shard_stuck() {
        let mut dead = healthy("c1", "i1");
        dead.probe = Probe::Refused;
        let v = view(vec![held(0, "c1", "i1", NOW + 500)], vec![dead]);
        assert!(matches!(&decide(&v, &timing())[0], ShardDecision::Stuck { .. }));
    }
}
