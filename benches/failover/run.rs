//! One run of the failover benchmark: a fresh cluster of real processes,
//! a steady load, the fault (kill -9 or SIGSTOP) on the primary coreapp of
//! shard 0, the recovery, and what the sim saw: [`RunResult`].

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::time::Instant;

use crate::harness::{self, load, ClusterSpec};

/// Recipients of the load, each with its own sequential sender (as in the failover suite).
pub const RECIPIENTS: usize = 4;
/// Messages per second per recipient.
pub const RATE: f64 = 15.0;
/// Fresh deliveries that count as a steady load, before the fault and after the recovery.
pub const STEADY: u64 = 20;
/// How long the load keeps going once deliveries have resumed.
pub const TAIL: Duration = Duration::from_millis(500);
/// Bound on the wait for steady deliveries (before the fault, after the recovery).
const STEADY_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on the wait for every acknowledged message once the load stops.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Polling period of the sim while waiting; the figures come from the sim's
/// own timestamps, so this only bounds how fast a run moves on.
const POLL: Duration = Duration::from_millis(50);

/// How the primary coreapp fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `kill -9`: the master sees the control port refuse and replaces it at once.
    Kill9,
    /// SIGSTOP: a paused zombie; the master waits for its lease to expire plus a margin.
    Pause,
}

impl Fault {
    /// How the text names it.
    pub fn label(self) -> &'static str {
        match self {
            Fault::Kill9 => "kill -9",
            Fault::Pause => "SIGSTOP (paused)",
        }
    }
}

/// One setting of the benchmark: cluster timing, fault, how many runs.
pub struct Scenario {
    pub name: &'static str,
    pub spec: ClusterSpec,
    pub fault: Fault,
    pub runs: usize,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub old_owner: String,
    pub new_owner: String,
    pub acceptance_gap: Duration,
    /// The longest acknowledgement gap before the fault: the load's own jitter.
    pub baseline_gap: Duration,
    pub refused: usize,
    pub unknown: usize,
    pub acked: usize,
    /// Fault → the new primary's upstream session opened; `None` if none did.
    pub session_gap: Option<Duration>,
    /// The paused primary stalled the cluster: no failover until it was woken.
    pub stalled: bool,
    /// Where the node logs of a stalled run were kept.
    pub kept_logs: Option<String>,
    /// Fault → the new primary's first delivery; `None` if it delivered nothing new.
    pub delivery_gap: Option<Duration>,
    pub conflicts: u64,
    pub bans: u64,
    pub duplicates: u64,
    pub lost: usize,
    pub resends: u64,
}

/// One run: a fresh cluster, the load, the fault, the recovery, the verdict.
pub async fn run_once(spec: ClusterSpec, fault: Fault) -> Result<RunResult, String> {
    let Some(mut cluster) = harness::start(spec.clone()).await else {
        return Err(format!("{:?} server unreachable and skipped (SHARDGATE_SKIP_SERVER_DBS)", spec.engine));
    };
    let old_owner = cluster.shard(0).await.owner;
    let load = load::start(cluster.http.clone(), cluster.api.clone(), cluster.token.clone(), RECIPIENTS, RATE);
    let observed = fail_and_recover(&mut cluster, &old_owner, fault, load.started).await;
    // The load is always stopped, even when the failover was not observed.
    let report = load.finish().await;
    let observed = observed.map_err(|e| format!("{e}; {}", keep_logs(&cluster)))?;

    let acked = report.acked_ids();
    let delivered = harness::poll_every(DRAIN_TIMEOUT, Duration::from_millis(250), || async {
        let delivered = delivered_ids(&cluster).await?;
        acked.iter().all(|id| delivered.contains(id)).then_some(delivered)
    })
    .await;
    let delivered = match delivered {
        Some(d) => d,
        None => delivered_ids(&cluster).await.ok_or("the sim does not answer")?,
    };
    let lost = acked.iter().filter(|id| !delivered.contains(*id)).count();

    let messages = sim_json(&cluster, "/sim/messages").await.ok_or("the sim does not answer")?;
    let first_new = messages["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["delivered"].as_bool() == Some(true) && m["node"].as_str() != Some(old_owner.as_str()))
        .filter_map(|m| Some((m["received_at_ms"].as_i64()?, m["node"].as_str()?.to_string())))
        .filter(|(at, _)| *at >= observed.fault_at_ms)
        .min();
    let stats = sim_json(&cluster, "/sim/stats").await.ok_or("the sim does not answer")?;
    let count = |field: &str| stats[field].as_u64().unwrap_or(0);

    let mut before_fault: Vec<Duration> = report
        .records
        .iter()
        .filter(|r| matches!(r.outcome, load::Outcome::Acked(_)) && r.answered_at <= observed.fault_offset)
        .map(|r| r.answered_at)
        .collect();
    before_fault.sort();
    let baseline_gap = before_fault.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();

    Ok(RunResult {
        new_owner: first_new
            .as_ref()
            .map(|(_, node)| node.clone())
            .or_else(|| observed.new_session.as_ref().map(|(node, _)| node.clone()))
            .unwrap_or_else(|| "none".into()),
        old_owner,
        acceptance_gap: report.longest_acceptance_gap(),
        baseline_gap,
        refused: report.refused(),
        unknown: report.unknown_outcomes(),
        acked: acked.len(),
        session_gap: observed.new_session.as_ref().map(|(_, at)| ms_between(observed.fault_at_ms, *at)),
        stalled: observed.stalled,
        kept_logs: observed.stalled.then(|| keep_logs(&cluster)),
        delivery_gap: first_new.map(|(at, _)| ms_between(observed.fault_at_ms, at)),
        conflicts: count("conflicts"),
        bans: count("bans"),
        duplicates: count("duplicate_deliveries"),
        lost,
        resends: count("resends"),
    })
}

/// When the fault struck and when the new primary came up.
struct Observed {
    /// Unix ms, the sim's clock.
    fault_at_ms: i64,
    /// From the start of the load, the load's clock.
    fault_offset: Duration,
    /// The first other coreapp to open a session after the fault.
    new_session: Option<(String, i64)>,
    /// No failover happened while the primary was paused; it was woken to
    /// see whether the cluster then recovers cleanly.
    stalled: bool,
}

/// Waits for a steady load, strikes, and keeps the load on until deliveries
/// have resumed under a new primary (and, for a zombie, after it woke up).
async fn fail_and_recover(
    cluster: &mut harness::Cluster,
    old_owner: &str,
    fault: Fault,
    load_started: Instant,
) -> Result<Observed, String> {
    wait_more_deliveries(cluster, STEADY).await.ok_or("no steady deliveries before the fault")?;

    let fault_at_ms = unix_ms();
    let fault_offset = load_started.elapsed();
    let primary = cluster.coreapp(old_owner);
    match fault {
        Fault::Kill9 => primary.kill9().await.map_err(|e| format!("kill -9: {e}"))?,
        Fault::Pause => primary.pause().map_err(|e| format!("SIGSTOP: {e}"))?,
    }
    let cluster: &harness::Cluster = cluster;

    let bound = failover_bound(&cluster.spec);
    let mut new_session =
        harness::poll_every(bound, POLL, || new_primary_session(cluster, old_owner, fault_at_ms)).await;
    let stalled = new_session.is_none();
    match fault {
        Fault::Kill9 if stalled => return Err(format!("no new primary opened a session within {bound:?}")),
        Fault::Kill9 => {
            wait_more_deliveries(cluster, STEADY).await.ok_or("deliveries did not resume under the new primary")?;
        }
        Fault::Pause => {
            if !stalled {
                wait_more_deliveries(cluster, STEADY).await.ok_or("deliveries did not resume under the new primary")?;
            }
            // Wake the zombie under load: it must find it lost the shard and
            // stay silent upstream, or the sim counts a conflict. After a
            // stall, this shows whether the cluster recovers cleanly.
            let zombie = cluster.coreapps.iter().find(|c| c.name == old_owner).ok_or("the zombie vanished")?;
            zombie.resume().map_err(|e| format!("SIGCONT: {e}"))?;
            wait_more_deliveries(cluster, STEADY).await.ok_or("deliveries did not flow after the zombie woke up")?;
            if stalled {
                new_session = new_primary_session(cluster, old_owner, fault_at_ms).await;
            }
        }
    }
    tokio::time::sleep(TAIL).await;
    Ok(Observed { fault_at_ms, fault_offset, new_session, stalled })
}

/// How long a run waits for a new primary: well past the slowest legitimate
/// path (lease expiry plus margin, detection, claim).
pub fn failover_bound(spec: &ClusterSpec) -> Duration {
    Duration::from_secs_f64(3.0 * spec.unhealthy_interval + 15.0)
}

/// The first session opened at or after `since_ms` by a coreapp other than `old_owner`.
async fn new_primary_session(cluster: &harness::Cluster, old_owner: &str, since_ms: i64) -> Option<(String, i64)> {
    let sessions = sim_json(cluster, "/sim/sessions").await?;
    sessions["sessions"]
        .as_array()?
        .iter()
        .filter(|s| s["node"].as_str() != Some(old_owner))
        .filter_map(|s| Some((s["opened_at_ms"].as_i64()?, s["node"].as_str()?.to_string())))
        .filter(|(at, _)| *at >= since_ms)
        .min()
        .map(|(at, node)| (node, at))
}

/// Copies the node logs out of the cluster's directory, which the cluster
/// removes when dropped, and says where they are.
fn keep_logs(cluster: &harness::Cluster) -> String {
    let name = cluster.dir.file_name().map_or_else(|| "cluster".into(), |n| n.to_string_lossy().into_owned());
    let kept = std::env::temp_dir().join(format!("failover-bench-{name}"));
    let copied = std::fs::create_dir_all(&kept).is_ok()
        && std::fs::read_dir(&cluster.dir)
            .is_ok_and(|entries| entries.flatten().all(|e| std::fs::copy(e.path(), kept.join(e.file_name())).is_ok()));
    if copied {
        format!("node logs kept in {}", kept.display())
    } else {
        format!("node logs could not be kept ({})", cluster.logs_hint())
    }
}

/// A GET on the sim's inspection API; `None` instead of a panic.
async fn sim_json(cluster: &harness::Cluster, path: &str) -> Option<Value> {
    cluster.http.get(format!("{}{path}", cluster.sim_api)).send().await.ok()?.json().await.ok()
}

/// Distinct messages the sim has delivered.
async fn unique_messages(cluster: &harness::Cluster) -> Option<u64> {
    sim_json(cluster, "/sim/stats").await?["unique_messages"].as_u64()
}

/// Waits until the sim has delivered `n` more distinct messages than now.
async fn wait_more_deliveries(cluster: &harness::Cluster, n: u64) -> Option<u64> {
    let from = unique_messages(cluster).await?;
    harness::poll_every(STEADY_TIMEOUT, POLL, || async { unique_messages(cluster).await.filter(|&u| u >= from + n) })
        .await
}

/// Ids of the messages the sim has delivered.
async fn delivered_ids(cluster: &harness::Cluster) -> Option<HashSet<String>> {
    let messages = sim_json(cluster, "/sim/messages").await?;
    Some(
        messages["messages"]
            .as_array()?
            .iter()
            .filter(|m| m["delivered"].as_bool() == Some(true))
            .filter_map(|m| m["id"].as_str().map(str::to_string))
            .collect(),
    )
}

/// Now, unix ms.
fn unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// From one unix ms to a later one; zero if it is not later.
fn ms_between(from: i64, to: i64) -> Duration {
    Duration::from_millis(u64::try_from(to - from).unwrap_or(0))
}
