//! The nemesis of the fault suite (issue 11): faults drawn from a seed, each
//! bounded in time and healed before the run ends, applied to a running
//! [`Cluster`]. The same seed gives the same [`Schedule`] on every machine, so
//! a failing run is replayed from the seed its report prints.
//!
//! Fault kinds: `kill -9` of a coreapp or of the primary master (restarted
//! when the fault ends), SIGSTOP/SIGCONT of a coreapp, the database cut off
//! at the proxies or stalled (server engines), a coreapp, the primary master or the
//! webapp partitioned from the database, both ways or only its replies
//! (silently, at its own proxy), `coreapp-1` partitioned from its masters or
//! from the upstream with silent drops (its network namespace), and the
//! webhook receiver failing. Besides the faults, a schedule runs two
//! coreapps with clocks that drift, one slow and one fast, for the whole
//! run. Faults may overlap: combinations are the point.

use super::proxy::ProxyState;
use super::webhook_receiver::WebhookReceiver;
use super::{netns::NetNs, Cluster, ClusterSpec};
use shardgate_core::config::DbEngine;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Shortest and longest fault, seconds.
const DURATION_S: (f64, f64) = (0.2, 3.0);
/// Seconds of schedule per fault: faults start at random in `count × this`,
/// so that some overlap and most do not.
const WINDOW_PER_FAULT_S: f64 = 1.5;
/// A restart waits this long past the end of a database cut it would fall into.
const RESTART_AFTER_CUT_S: f64 = 0.3;
/// Clock rates of the drifting coreapps: `coreapp-2` runs slow, `coreapp-3`
/// fast, inside the drift the cluster's timing tolerates with the suite's
/// settings (see `RELIABILITY.md`, "Clock drift": a holder may run down to
/// 0.67× before it could use a session past its lease, and up to 1.09×
/// before its own wait after an aborted session could fall short).
const SLOW_CLOCK: (f64, f64) = (0.8, 0.95);
/// See [`SLOW_CLOCK`].
const FAST_CLOCK: (f64, f64) = (1.02, 1.08);
/// Clock rate of `master-2`: a master's clock only decides when it suspects
/// a coreapp (its writes are fenced by the database clock), so it may drift
/// either way by much more.
const MASTER_CLOCK: (f64, f64) = (0.7, 1.3);

/// A deterministic generator (SplitMix64), so that a seed names a schedule.
///
/// It stands in for `rand`'s `StdRng::seed_from_u64`, which the root package
/// does not have as a dev-dependency; the schedules need nothing more.
pub struct SeededRng(u64);

impl SeededRng {
    /// The generator of `seed`.
    pub fn seed_from_u64(seed: u64) -> SeededRng {
        SeededRng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[low, high)`.
    pub fn range_f64(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// `kill -9` of a coreapp; restarted when the fault ends.
    KillCoreapp,
    /// `kill -9` of the primary master; restarted when the fault ends.
    KillMaster,
    /// SIGSTOP of a coreapp; SIGCONT when the fault ends.
    PauseCoreapp,
    /// The database cut off at the proxies, every node at once (server
    /// engines): connections severed, new ones unanswered, as when it restarts.
    DbCut,
    /// The database stalled: every node's connections held silently, both
    /// ways, as a server whose disk hangs (server engines).
    DbStall,
    /// A coreapp (the primary or a random one) partitioned from the database.
    CoreappDbPartition,
    /// The primary master partitioned from the database.
    MasterDbPartition,
    /// The webapp partitioned from the database.
    WebappDbPartition,
    /// `coreapp-1` hears nothing from its masters (heartbeats dropped silently).
    PartitionFromMasters,
    /// `coreapp-1` and the upstream drop each other's packets silently.
    PartitionFromUpstream,
    /// The webhook receiver answers 500 to every callback.
    WebhookFailing,
}

impl FaultKind {
    /// Every kind, in table order.
    pub const ALL: [FaultKind; 11] = [
        FaultKind::KillCoreapp,
        FaultKind::KillMaster,
        FaultKind::PauseCoreapp,
        FaultKind::DbCut,
        FaultKind::DbStall,
        FaultKind::CoreappDbPartition,
        FaultKind::MasterDbPartition,
        FaultKind::WebappDbPartition,
        FaultKind::PartitionFromMasters,
        FaultKind::PartitionFromUpstream,
        FaultKind::WebhookFailing,
    ];

    /// The kinds a cluster of `spec` can suffer: the database cut and
    /// partitions need the proxies, the other partitions need `coreapp-1` in
    /// its namespace.
    pub fn available(spec: &ClusterSpec) -> Vec<FaultKind> {
        FaultKind::ALL
            .into_iter()
            .filter(|kind| match kind {
                FaultKind::DbCut | FaultKind::DbStall => spec.db_proxy,
                FaultKind::CoreappDbPartition | FaultKind::WebappDbPartition => spec.db_proxy,
                FaultKind::MasterDbPartition => spec.db_proxy && spec.masters > 0,
                FaultKind::PartitionFromMasters | FaultKind::PartitionFromUpstream => spec.netns_coreapp,
                FaultKind::KillMaster => spec.masters > 0,
                _ => true,
            })
            .collect()
    }

    /// Two letters, for the table.
    pub fn short(self) -> &'static str {
        match self {
            FaultKind::KillCoreapp => "kc",
            FaultKind::KillMaster => "km",
            FaultKind::PauseCoreapp => "ps",
            FaultKind::DbCut => "db",
            FaultKind::DbStall => "ds",
            FaultKind::CoreappDbPartition => "cd",
            FaultKind::MasterDbPartition => "md",
            FaultKind::WebappDbPartition => "wd",
            FaultKind::PartitionFromMasters => "pm",
            FaultKind::PartitionFromUpstream => "pu",
            FaultKind::WebhookFailing => "wh",
        }
    }

    /// Whether the fault stops a process, which must then be restarted or resumed.
    fn is_process_fault(self) -> bool {
        matches!(self, FaultKind::KillCoreapp | FaultKind::KillMaster | FaultKind::PauseCoreapp)
    }

    /// Whether the fault partitions one node from the database.
    fn is_db_partition(self) -> bool {
        matches!(self, FaultKind::CoreappDbPartition | FaultKind::MasterDbPartition | FaultKind::WebappDbPartition)
    }

    /// Whether the fault hits one coreapp, the primary or another.
    fn hits_a_coreapp(self) -> bool {
        matches!(self, FaultKind::KillCoreapp | FaultKind::PauseCoreapp | FaultKind::CoreappDbPartition)
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultKind::KillCoreapp => "kill -9 coreapp",
            FaultKind::KillMaster => "kill -9 primary master",
            FaultKind::PauseCoreapp => "SIGSTOP coreapp",
            FaultKind::DbCut => "database cut off",
            FaultKind::DbStall => "database stalled",
            FaultKind::CoreappDbPartition => "coreapp cut off from the database",
            FaultKind::MasterDbPartition => "primary master cut off from the database",
            FaultKind::WebappDbPartition => "webapp cut off from the database",
            FaultKind::PartitionFromMasters => "coreapp-1 cut off from masters",
            FaultKind::PartitionFromUpstream => "coreapp-1 cut off from upstream",
            FaultKind::WebhookFailing => "webhook receiver failing",
        })
    }
}

/// Which coreapp a process fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The primary of shard 0 when the fault starts.
    Primary,
    /// `coreapp-<n>`.
    Coreapp(usize),
    /// The fault's kind says what it hits.
    Implied,
}

/// One fault of a schedule.
#[derive(Debug, Clone)]
pub struct Fault {
    /// What it does.
    pub kind: FaultKind,
    /// Whom it hits.
    pub target: Target,
    /// When it starts, from the start of the schedule.
    pub start: Duration,
    /// How long until it is healed.
    pub duration: Duration,
    /// Database partitions only: only the replies are dropped, so the node's
    /// writes reach the server and commit while it hears nothing back.
    pub one_way: bool,
}

impl Fault {
    /// When it is healed, from the start of the schedule.
    pub fn end(&self) -> Duration {
        self.start + self.duration
    }
}

/// Faults drawn from a seed, in start order.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The seed that drew it.
    pub seed: u64,
    /// The faults, by start.
    pub faults: Vec<Fault>,
    /// Nodes whose clocks drift for the whole run, and their rates.
    pub clocks: Vec<(String, f64)>,
}

impl Schedule {
    /// `count` faults of `kinds` for a cluster of `spec`, drawn from `seed`,
    /// and the clocks that drift (server engines only: there each node
    /// stands for a machine of its own and the leases run on the server's
    /// clock; on SQLite every node is a process of one machine, reading one
    /// kernel clock, and the leases run on it).
    ///
    /// Two rules keep every fault healable: master kills never overlap (one
    /// master always runs to take over), and no node is restarted while the
    /// database is cut off or stalled, or on SQLite while a node is paused
    /// (a node must reach the database to start), so a kill whose restart
    /// would fall into a cut lasts until just after it.
    pub fn generate(seed: u64, count: usize, kinds: &[FaultKind], spec: &ClusterSpec) -> Schedule {
        let coreapps = spec.coreapps;
        let mut rng = SeededRng::seed_from_u64(seed);
        let window = WINDOW_PER_FAULT_S * count as f64;
        let mut faults: Vec<Fault> = (0..count)
            .map(|_| {
                let kind = kinds[rng.below(kinds.len())];
                let target = match kind {
                    _ if kind.hits_a_coreapp() && rng.below(2) == 0 => Target::Primary,
                    _ if kind.hits_a_coreapp() => Target::Coreapp(1 + rng.below(coreapps)),
                    _ => Target::Implied,
                };
                let start = Duration::from_secs_f64(rng.range_f64(0.0, window));
                let duration = Duration::from_secs_f64(rng.range_f64(DURATION_S.0, DURATION_S.1));
                let one_way = kind.is_db_partition() && rng.below(2) == 0;
                Fault { kind, target, start, duration, one_way }
            })
            .collect();
        faults.sort_by_key(|f| f.start);
        // On SQLite a paused node may be inside a write transaction and then
        // holds the database's only write lock until it resumes: to a node
        // starting then, the database is as good as cut off.
        let pause_locks = spec.engine == DbEngine::Sqlite;
        let cuts: Vec<(Duration, Duration)> = faults
            .iter()
            .filter(|f| match f.kind {
                FaultKind::DbCut | FaultKind::DbStall => true,
                FaultKind::PauseCoreapp => pause_locks,
                _ => false,
            })
            .map(|f| (f.start, f.end()))
            .collect();
        let restart_after_cuts = |fault: &mut Fault| {
            while let Some(&(_, cut_end)) = cuts.iter().find(|(s, e)| *s <= fault.end() && fault.end() < *e) {
                fault.duration = cut_end + Duration::from_secs_f64(RESTART_AFTER_CUT_S) - fault.start;
            }
        };
        let mut master_free_at = Duration::ZERO;
        for fault in faults.iter_mut() {
            match fault.kind {
                FaultKind::KillMaster => {
                    fault.start = fault.start.max(master_free_at);
                    restart_after_cuts(fault);
                    master_free_at = fault.end() + Duration::from_millis(100);
                }
                FaultKind::KillCoreapp => restart_after_cuts(fault),
                _ => {}
            }
        }
        faults.sort_by_key(|f| f.start);
        let clocks = if spec.engine == DbEngine::Sqlite { Vec::new() } else { drifting_clocks(seed, coreapps) };
        Schedule { seed, faults, clocks }
    }

    /// When the last fault is healed.
    pub fn span(&self) -> Duration {
        self.faults.iter().map(Fault::end).max().unwrap_or_default()
    }

    /// Faults per kind, in [`FaultKind::ALL`] order.
    pub fn counts(&self) -> Vec<(FaultKind, usize)> {
        FaultKind::ALL.into_iter().map(|k| (k, self.faults.iter().filter(|f| f.kind == k).count())).collect()
    }
}

/// The clocks that drift in the run of `seed`: `coreapp-2` slow,
/// `coreapp-3` fast (when there are that many) and `master-2` either way.
/// Drawn from a generator of their own, so that they do not change the
/// faults a seed draws.
fn drifting_clocks(seed: u64, coreapps: usize) -> Vec<(String, f64)> {
    let mut rng = SeededRng::seed_from_u64(seed ^ 0xC10C_D21F_7000_0000);
    [("coreapp-2", 2, SLOW_CLOCK), ("coreapp-3", 3, FAST_CLOCK), ("master-2", 0, MASTER_CLOCK)]
        .into_iter()
        .filter(|(_, n, _)| *n <= coreapps)
        .map(|(node, _, (low, high))| (node.to_string(), (rng.range_f64(low, high) * 100.0).round() / 100.0))
        .collect()
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let clocks: Vec<String> = self.clocks.iter().map(|(node, rate)| format!("{node} ×{rate}")).collect();
        writeln!(
            f,
            "schedule of seed {} ({} faults, {:.1} s; clocks: {}):",
            self.seed,
            self.faults.len(),
            self.span().as_secs_f64(),
            if clocks.is_empty() { "true".to_string() } else { clocks.join(", ") }
        )?;
        for fault in &self.faults {
            let target = match fault.target {
                Target::Primary => " (the primary)".to_string(),
                Target::Coreapp(n) => format!(" (coreapp-{n})"),
                Target::Implied => String::new(),
            };
            let one_way = if fault.one_way { ", replies only" } else { "" };
            writeln!(
                f,
                "  +{:6.2}s .. +{:6.2}s  {}{target}{one_way}",
                fault.start.as_secs_f64(),
                fault.end().as_secs_f64(),
                fault.kind
            )?;
        }
        Ok(())
    }
}

/// What became of one fault when it ran.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The fault as scheduled.
    pub fault: Fault,
    /// The node it hit, when it hits one.
    pub node: Option<String>,
    /// When it was injected and healed (unix ms, as the sim's times).
    pub injected_ms: i64,
    /// See `injected_ms`; 0 while not healed.
    pub healed_ms: i64,
    /// Why it was not applied (every node it could hit was already down).
    pub skipped: Option<String>,
    /// Why it could not be healed: the killed node did not start again (it
    /// stays down, and the run reports it).
    pub heal_error: Option<String>,
    /// The `iptables` rules a partition added, removed when it heals.
    rules: Vec<Vec<String>>,
}

/// The applied faults as a timeline, times from `origin_ms`.
pub fn timeline(applied: &[Applied], origin_ms: i64) -> String {
    let mut lines = Vec::new();
    for a in applied {
        let node = a.node.as_deref().map(|n| format!(" {n}")).unwrap_or_default();
        let skipped = a.skipped.as_deref().map(|s| format!(" SKIPPED: {s}")).unwrap_or_default();
        let skipped = skipped + &a.heal_error.as_deref().map(|e| format!(" NOT HEALED: {e}")).unwrap_or_default();
        lines.push(format!(
            "  +{:6.2}s .. +{:6.2}s  {}{node}{skipped}",
            (a.injected_ms - origin_ms) as f64 / 1000.0,
            (a.healed_ms - origin_ms) as f64 / 1000.0,
            a.fault.kind
        ));
    }
    lines.join("\n")
}

/// Unix milliseconds, the clock of the sim's records.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Runs `schedule` against `cluster` from now on and returns once every fault
/// is healed. Actions run one at a time in timeline order, so a slow one (a
/// restart waiting for its readiness line) delays the next; the returned
/// times are the real ones.
pub async fn run(cluster: &mut Cluster, receiver: &WebhookReceiver, schedule: &Schedule) -> Vec<Applied> {
    let mut events: Vec<(Duration, bool, usize)> = Vec::new();
    for (i, fault) in schedule.faults.iter().enumerate() {
        events.push((fault.start, true, i));
        events.push((fault.end(), false, i));
    }
    // At one instant, heal before injecting.
    events.sort_by_key(|(at, inject, i)| (*at, *inject, *i));
    let mut nemesis =
        Nemesis { cluster, receiver, down: HashSet::new(), cuts: 0, db_stalls: 0, stalls: HashMap::new(), failing: 0 };
    let mut applied: Vec<Applied> = schedule
        .faults
        .iter()
        .map(|fault| Applied {
            fault: fault.clone(),
            node: None,
            injected_ms: 0,
            healed_ms: 0,
            skipped: None,
            heal_error: None,
            rules: Vec::new(),
        })
        .collect();
    let origin = Instant::now();
    for (at, inject, i) in events {
        tokio::time::sleep_until(origin + at).await;
        if inject {
            nemesis.inject(&mut applied[i]).await;
        } else {
            nemesis.heal(&mut applied[i]).await;
        }
    }
    applied
}

/// The state of a run: which nodes are down, how many cuts and failures hold.
struct Nemesis<'a> {
    cluster: &'a mut Cluster,
    receiver: &'a WebhookReceiver,
    /// Nodes killed, paused or partitioned from the database by a fault not
    /// yet healed: no other such fault hits them (a node must reach the
    /// database to restart).
    down: HashSet<String>,
    /// Database cuts in force (the proxies are restored when the last heals).
    cuts: usize,
    /// Database stalls in force.
    db_stalls: usize,
    /// Nodes partitioned from the database, and whether only the replies are dropped.
    stalls: HashMap<String, bool>,
    /// Receiver failures in force.
    failing: usize,
}

impl Nemesis<'_> {
    async fn inject(&mut self, a: &mut Applied) {
        a.injected_ms = now_ms();
        let kind = a.fault.kind;
        if kind.is_process_fault() {
            let node = if kind == FaultKind::KillMaster {
                self.pick_master().await
            } else {
                self.pick_coreapp(a.fault.target).await
            };
            let Some(node) = node else {
                a.skipped = Some("every node it could hit is already down".into());
                return;
            };
            let process = self.process(&node);
            match kind {
                FaultKind::PauseCoreapp => process.pause().expect("SIGSTOP"),
                _ => process.kill9().await.expect("kill -9"),
            }
            self.down.insert(node.clone());
            a.node = Some(node);
            return;
        }
        if kind.is_db_partition() {
            let node = match kind {
                FaultKind::CoreappDbPartition => self.pick_coreapp(a.fault.target).await,
                FaultKind::MasterDbPartition => self.pick_master().await,
                _ => Some(self.cluster.webapp.name.clone()).filter(|n| !self.down.contains(n)),
            };
            let Some(node) = node else {
                a.skipped = Some("every node it could hit is already under a fault".into());
                return;
            };
            self.down.insert(node.clone());
            self.stalls.insert(node.clone(), a.fault.one_way);
            a.node = Some(node);
            self.set_database_states();
            return;
        }
        match kind {
            FaultKind::DbCut => {
                self.cuts += 1;
                self.set_database_states();
            }
            FaultKind::DbStall => {
                self.db_stalls += 1;
                self.set_database_states();
            }
            FaultKind::WebhookFailing => {
                self.failing += 1;
                self.receiver.set_failing(true);
            }
            FaultKind::PartitionFromMasters | FaultKind::PartitionFromUpstream => {
                a.node = Some(super::netns::NETNS_COREAPP.to_string());
                a.rules = self.partition_rules(kind);
                for rule in &a.rules {
                    iptables(self.netns(), "-A", rule);
                }
            }
            _ => unreachable!("process faults and database partitions are handled above"),
        }
    }

    async fn heal(&mut self, a: &mut Applied) {
        a.healed_ms = now_ms();
        if a.skipped.is_some() {
            return;
        }
        match a.fault.kind {
            FaultKind::KillCoreapp | FaultKind::KillMaster => {
                let node = a.node.clone().expect("killed node");
                let restarted = if a.fault.kind == FaultKind::KillMaster {
                    self.cluster.restart_master(&node).await
                } else {
                    self.cluster.restart_coreapp(&node).await
                };
                match restarted {
                    Ok(()) => _ = self.down.remove(&node),
                    Err(e) => a.heal_error = Some(format!("{node} did not start again: {e}")),
                }
            }
            FaultKind::PauseCoreapp => {
                let node = a.node.clone().expect("paused node");
                self.process(&node).resume().expect("SIGCONT");
                self.down.remove(&node);
            }
            FaultKind::DbCut => {
                self.cuts -= 1;
                self.set_database_states();
            }
            FaultKind::DbStall => {
                self.db_stalls -= 1;
                self.set_database_states();
            }
            FaultKind::CoreappDbPartition | FaultKind::MasterDbPartition | FaultKind::WebappDbPartition => {
                let node = a.node.clone().expect("partitioned node");
                self.stalls.remove(&node);
                self.down.remove(&node);
                self.set_database_states();
            }
            FaultKind::WebhookFailing => {
                self.failing -= 1;
                if self.failing == 0 {
                    self.receiver.set_failing(false);
                }
            }
            FaultKind::PartitionFromMasters | FaultKind::PartitionFromUpstream => {
                for rule in a.rules.iter().rev() {
                    iptables(self.netns(), "-D", rule);
                }
            }
        }
        // Healing takes time (a restart waits for its readiness line); the heal is when it is done.
        a.healed_ms = now_ms();
    }

    /// The coreapp `target` names, or the first one still up when it is down.
    async fn pick_coreapp(&self, target: Target) -> Option<String> {
        let wanted = match target {
            Target::Primary => {
                let map = self.cluster.store.shard_map().await.ok();
                map.and_then(|m| m.rows.into_iter().find(|r| r.shard == 0)).map(|r| r.owner).unwrap_or_default()
            }
            Target::Coreapp(n) => format!("coreapp-{n}"),
            Target::Implied => String::new(),
        };
        let names: Vec<&String> = self.cluster.coreapps.iter().map(|c| &c.name).collect();
        if names.contains(&&wanted) && !self.down.contains(&wanted) {
            return Some(wanted);
        }
        names.into_iter().find(|n| !self.down.contains(*n)).cloned()
    }

    /// The master holding the master lease, or the first one still up.
    async fn pick_master(&self) -> Option<String> {
        let holder = self.cluster.store.read_master_lease().await.map(|l| l.holder).unwrap_or_default();
        let names: Vec<&String> = self.cluster.masters.iter().map(|m| &m.name).collect();
        if names.contains(&&holder) && !self.down.contains(&holder) {
            return Some(holder);
        }
        names.into_iter().find(|n| !self.down.contains(*n)).cloned()
    }

    fn process(&mut self, name: &str) -> &mut shardgate::supervisor::NodeProcess {
        let cluster = &mut *self.cluster;
        match cluster.masters.iter().position(|m| m.name == name) {
            Some(i) => &mut cluster.masters[i],
            None => cluster.coreapp(name),
        }
    }

    /// Puts every node's database proxy in the state the faults in force
    /// ask for: cut while any cut holds, else stalled while the database
    /// stalls or its node is partitioned, else open.
    fn set_database_states(&self) {
        for (node, proxy) in &self.cluster.db_proxies {
            let state = match self.stalls.get(node) {
                _ if self.cuts > 0 => ProxyState::Cut,
                _ if self.db_stalls > 0 => ProxyState::Stalled { to_server: true, to_client: true },
                Some(&one_way) => ProxyState::Stalled { to_server: !one_way, to_client: true },
                None => ProxyState::Open,
            };
            proxy.set(state);
        }
    }

    fn netns(&self) -> &NetNs {
        self.cluster.netns.as_ref().expect("coreapp-1 in a namespace")
    }

    /// The rules (after `-A`/`-D`) that cut `coreapp-1` off: its control port
    /// from everyone (the masters' heartbeats; the webapp's wake-ups go with
    /// them), or the upstream both ways.
    fn partition_rules(&self, kind: FaultKind) -> Vec<Vec<String>> {
        let strings = |rule: &[&str]| rule.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        if kind == FaultKind::PartitionFromMasters {
            let control = self.cluster.coreapps[0].ready_str("control_addr");
            let port = control.rsplit(':').next().expect("control port").to_string();
            return vec![strings(&["INPUT", "-p", "tcp", "--dport", &port, "-j", "DROP"])];
        }
        let sim: SocketAddr = self.cluster.sim.ready_str("session_addr").parse().expect("sim session address");
        let (ip, port) = (sim.ip().to_string(), sim.port().to_string());
        vec![
            strings(&["OUTPUT", "-p", "tcp", "-d", &ip, "--dport", &port, "-j", "DROP"]),
            strings(&["INPUT", "-p", "tcp", "-s", &ip, "--sport", &port, "-j", "DROP"]),
        ]
    }
}

/// `iptables -w <op> <rule>` inside the namespace. The namespace's own tables
/// go with it, so a rule left by a panicking run never outlives the test.
fn iptables(ns: &NetNs, op: &str, rule: &[String]) {
    let mut command = vec!["iptables", "-w", op];
    command.extend(rule.iter().map(String::as_str));
    ns.exec(&command);
}

/// Forwards TCP from an address the namespace can reach to the webhook
/// receiver on the host's loopback: `coreapp-1`'s 127.0.0.1 is its own, and
/// while it is primary it delivers the callbacks.
pub struct HookRelay {
    /// The URL to put in `webhooks.url`.
    pub url: String,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for HookRelay {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl HookRelay {
    /// The receiver's own URL without a namespace, a relay on the host end of its veth pair with one.
    pub async fn start(receiver: &WebhookReceiver, netns: Option<&NetNs>) -> HookRelay {
        let Some(ns) = netns else { return HookRelay { url: receiver.url.clone(), task: None } };
        let target: SocketAddr = receiver
            .url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .and_then(|a| a.parse().ok())
            .expect("receiver address");
        let listener = tokio::net::TcpListener::bind((ns.host_ip, 0)).await.expect("relay binds");
        let url = format!("http://{}/hook", listener.local_addr().expect("relay addr"));
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { continue };
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        HookRelay { url, task: Some(task) }
    }
}
