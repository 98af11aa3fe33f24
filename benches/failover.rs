//! The failover benchmark: under a steady send load, kill -9 (or SIGSTOP) the
//! primary coreapp of shard 0, again and again, each time on a fresh cluster
//! of real processes, and report per setting how long the API stopped
//! accepting and how long deliveries stopped, with the sim's verdict
//! (conflicts, bans, lost messages, resends). The figures are printed as a
//! table and written into `BENCHMARKS.md`, between the failover markers.
//!
//! ```text
//! cargo bench --bench failover [-- --runs 10 --paused-runs 5 --default-runs 1
//!                                   --default-paused-runs 0 --engine sqlite --paused-engine pgsql --no-write]
//! ```
//!
//! The two gaps of one run:
//! - acceptance gap: the longest interval between two consecutive
//!   acknowledged `POST /v1/messages` of the whole load (the API's outage);
//! - delivery gap: from the fault to the first delivery at the sim by the new
//!   primary, on the sim's clock (unix ms; the sim runs on this machine).
//!
//! A paused primary that no other coreapp replaces within the bound is a
//! *stalled* run: it is woken, the verdict after the wake-up still counts,
//! its gaps stay out of the medians, and its node logs are kept.

#[path = "../tests/harness/mod.rs"]
mod harness;

use harness::{load, ClusterSpec};
use serde_json::Value;
use shardgate_core::cluster::{Settings, Timing};
use shardgate_core::config::DbEngine;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Recipients of the load, each with its own sequential sender (as in the failover suite).
const RECIPIENTS: usize = 4;
/// Messages per second per recipient.
const RATE: f64 = 15.0;
/// Fresh deliveries that count as a steady load, before the fault and after the recovery.
const STEADY: u64 = 20;
/// How long the load keeps going once deliveries have resumed.
const TAIL: Duration = Duration::from_millis(500);
/// Bound on the wait for steady deliveries (before the fault, after the recovery).
const STEADY_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on the wait for every acknowledged message once the load stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Polling period of the sim while waiting; the figures come from the sim's
/// own timestamps, so this only bounds how fast a run moves on.
const POLL: Duration = Duration::from_millis(50);
/// Upper bound on runs per setting, so a typo cannot make the bench endless.
const MAX_RUNS: usize = 1000;

const BEGIN: &str = "<!-- failover:begin -->";
const END: &str = "<!-- failover:end -->";

/// How the primary coreapp fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// `kill -9`: the master sees the control port refuse and replaces it at once.
    Kill9,
    /// SIGSTOP: a paused zombie; the master waits for its lease to expire plus a margin.
    Pause,
}

impl Fault {
    fn label(self) -> &'static str {
        match self {
            Fault::Kill9 => "kill -9",
            Fault::Pause => "SIGSTOP (paused)",
        }
    }
}

/// One setting of the benchmark: cluster timing, fault, how many runs.
struct Scenario {
    name: &'static str,
    spec: ClusterSpec,
    fault: Fault,
    runs: usize,
}

/// What one run measured.
#[derive(Debug, Clone)]
struct RunResult {
    old_owner: String,
    new_owner: String,
    acceptance_gap: Duration,
    /// The longest acknowledgement gap before the fault: the load's own jitter.
    baseline_gap: Duration,
    refused: usize,
    unknown: usize,
    acked: usize,
    /// Fault → the new primary's upstream session opened; `None` if none did.
    session_gap: Option<Duration>,
    /// The paused primary stalled the cluster: no failover until it was woken.
    stalled: bool,
    /// Where the node logs of a stalled run were kept.
    kept_logs: Option<String>,
    /// Fault → the new primary's first delivery; `None` if it delivered nothing new.
    delivery_gap: Option<Duration>,
    conflicts: u64,
    bans: u64,
    duplicates: u64,
    lost: usize,
    resends: u64,
}

/// Command-line options (after `--`).
#[derive(Debug, Clone)]
struct Options {
    runs: usize,
    paused_runs: usize,
    default_runs: usize,
    default_paused_runs: usize,
    engine: DbEngine,
    /// Paused runs default to a database server: on SQLite a writer paused
    /// inside a write stalls every writer (see the README).
    paused_engine: DbEngine,
    write: bool,
    /// The arguments as given, for the command line in `BENCHMARKS.md`.
    given: Vec<String>,
}

const USAGE: &str = "usage: cargo bench --bench failover [-- OPTIONS]
  --runs N           kill -9 runs with fast settings (default 10)
  --paused-runs N    SIGSTOP runs with fast settings (default 5)
  --default-runs N   kill -9 runs with the default settings (default 1)
  --default-paused-runs N
                     SIGSTOP runs with the default settings (default 0; about 45 s each)
  --engine E         database of the kill -9 runs: sqlite (default), pgsql or mysql
  --paused-engine E  database of the SIGSTOP runs: pgsql (default), sqlite or mysql
  --no-write         print the table only, leave BENCHMARKS.md alone";

fn parse_options(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        runs: 10,
        paused_runs: 5,
        default_runs: 1,
        default_paused_runs: 0,
        engine: DbEngine::Sqlite,
        paused_engine: DbEngine::Postgres,
        write: true,
        given: Vec::new(),
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        // `cargo bench` passes `--bench` to every bench binary.
        if arg == "--bench" {
            continue;
        }
        options.given.push(arg.clone());
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_string(), Some(value.to_string())),
            None => (arg.clone(), None),
        };
        let mut value = || -> Result<String, String> {
            let v = inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{flag} needs a value"))?;
            if inline.is_none() {
                options.given.push(v.clone());
            }
            Ok(v)
        };
        let count = |v: String| -> Result<usize, String> {
            let n: usize = v.parse().map_err(|_| format!("{flag}: not a count: {v}"))?;
            if n > MAX_RUNS {
                return Err(format!("{flag}: at most {MAX_RUNS}"));
            }
            Ok(n)
        };
        match flag.as_str() {
            "--runs" => options.runs = count(value()?)?,
            "--paused-runs" => options.paused_runs = count(value()?)?,
            "--default-runs" => options.default_runs = count(value()?)?,
            "--default-paused-runs" => options.default_paused_runs = count(value()?)?,
            "--engine" => options.engine = value()?.parse()?,
            "--paused-engine" => options.paused_engine = value()?.parse()?,
            "--no-write" => options.write = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    Ok(options)
}

fn scenarios(options: &Options) -> Vec<Scenario> {
    let fast = |engine| ClusterSpec::fast(engine);
    let defaults = |engine| ClusterSpec {
        heartbeat_interval: 5.0,
        unhealthy_interval: 30.0,
        session_timeout: 10.0,
        ..ClusterSpec::fast(engine)
    };
    let (kill, pause) = (options.engine, options.paused_engine);
    vec![
        Scenario { name: "fast", spec: fast(kill), fault: Fault::Kill9, runs: options.runs },
        Scenario { name: "fast", spec: fast(pause), fault: Fault::Pause, runs: options.paused_runs },
        Scenario { name: "defaults", spec: defaults(kill), fault: Fault::Kill9, runs: options.default_runs },
        Scenario { name: "defaults", spec: defaults(pause), fault: Fault::Pause, runs: options.default_paused_runs },
    ]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let options = match parse_options(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let machine = Machine::probe();
    let started = Instant::now();
    let mut results: Vec<(Scenario, Vec<Result<RunResult, String>>)> = Vec::new();
    for scenario in scenarios(&options) {
        let mut runs = Vec::with_capacity(scenario.runs);
        for i in 1..=scenario.runs {
            let t = Instant::now();
            // Each run is its own task, so a harness panic fails that run only.
            let outcome = match tokio::spawn(run_once(scenario.spec.clone(), scenario.fault)).await {
                Ok(outcome) => outcome,
                Err(e) => Err(format!("panicked: {}", panic_message(e))),
            };
            println!(
                "[failover] {} {} run {i}/{}: {} ({:.1} s)",
                scenario.name,
                scenario.fault.label(),
                scenario.runs,
                match &outcome {
                    Ok(r) => run_line(r),
                    Err(e) => format!("FAILED: {e}"),
                },
                t.elapsed().as_secs_f64()
            );
            runs.push(outcome);
        }
        results.push((scenario, runs));
    }
    let took = started.elapsed();
    let summaries: Vec<Summary> = results.iter().map(|(s, runs)| Summary::of(s, runs)).collect();
    println!("\n{}", summary_table(&summaries));
    println!("bench took {:.0} s", took.as_secs_f64());
    if options.write {
        let section = markdown_section(&options, &machine, &results, &summaries, took);
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
        let existing = std::fs::read_to_string(&path).ok();
        match std::fs::write(&path, merge_section(existing.as_deref(), &section)) {
            Ok(()) => println!("wrote {}", path.display()),
            Err(e) => eprintln!("cannot write {}: {e}", path.display()),
        }
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "(no message)".into()),
        Err(e) => e.to_string(),
    }
}

/// One run: a fresh cluster, the load, the fault, the recovery, the verdict.
async fn run_once(spec: ClusterSpec, fault: Fault) -> Result<RunResult, String> {
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
fn failover_bound(spec: &ClusterSpec) -> Duration {
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

async fn unique_messages(cluster: &harness::Cluster) -> Option<u64> {
    sim_json(cluster, "/sim/stats").await?["unique_messages"].as_u64()
}

/// Waits until the sim has delivered `n` more distinct messages than now.
async fn wait_more_deliveries(cluster: &harness::Cluster, n: u64) -> Option<u64> {
    let from = unique_messages(cluster).await?;
    harness::poll_every(STEADY_TIMEOUT, POLL, || async { unique_messages(cluster).await.filter(|&u| u >= from + n) })
        .await
}

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

fn unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn ms_between(from: i64, to: i64) -> Duration {
    Duration::from_millis(u64::try_from(to - from).unwrap_or(0))
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn run_line(r: &RunResult) -> String {
    format!(
        "{}{} -> {}: acceptance gap {} (baseline {}), refused {}, unknown {}, session after {}, delivery gap {}, \
         acked {}, lost {}, resends {}, conflicts {}, bans {}, duplicates {}",
        r.kept_logs.as_ref().map_or(String::new(), |logs| format!(
            "STALLED (no failover while paused; figures include the wake-up; {logs}) "
        )),
        r.old_owner,
        r.new_owner,
        secs(r.acceptance_gap),
        secs(r.baseline_gap),
        r.refused,
        r.unknown,
        r.session_gap.map_or("none".into(), secs),
        r.delivery_gap.map_or("none".into(), secs),
        r.acked,
        r.lost,
        r.resends,
        r.conflicts,
        r.bans,
        r.duplicates
    )
}

/// Median (mean of the middle two for an even count) and max.
fn median_max(mut values: Vec<Duration>) -> Option<(Duration, Duration)> {
    values.sort();
    let n = values.len();
    let max = *values.last()?;
    let median = if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2 };
    Some((median, max))
}

/// The figures of one setting.
struct Summary {
    name: &'static str,
    fault: Fault,
    spec: ClusterSpec,
    planned: usize,
    /// Runs that completed, stalled ones included: the totals count them.
    completed: usize,
    /// Completed runs that did not stall: the medians and maxima are theirs.
    measured: usize,
    /// Runs where a paused primary stalled the cluster until it was woken.
    stalled: usize,
    acceptance: Option<(Duration, Duration)>,
    baseline: Option<(Duration, Duration)>,
    delivery: Option<(Duration, Duration)>,
    session: Option<(Duration, Duration)>,
    /// Runs where no new primary delivered anything.
    no_delivery: usize,
    refused: usize,
    unknown: usize,
    acked: usize,
    conflicts: u64,
    bans: u64,
    duplicates: u64,
    lost: usize,
    resends: u64,
    failures: Vec<String>,
}

impl Summary {
    fn of(scenario: &Scenario, runs: &[Result<RunResult, String>]) -> Summary {
        let ok: Vec<&RunResult> = runs.iter().filter_map(|r| r.as_ref().ok()).collect();
        let measured: Vec<&RunResult> = ok.iter().copied().filter(|r| !r.stalled).collect();
        Summary {
            name: scenario.name,
            fault: scenario.fault,
            spec: scenario.spec.clone(),
            planned: scenario.runs,
            completed: ok.len(),
            measured: measured.len(),
            stalled: ok.len() - measured.len(),
            acceptance: median_max(measured.iter().map(|r| r.acceptance_gap).collect()),
            baseline: median_max(measured.iter().map(|r| r.baseline_gap).collect()),
            delivery: median_max(measured.iter().filter_map(|r| r.delivery_gap).collect()),
            session: median_max(measured.iter().filter_map(|r| r.session_gap).collect()),
            no_delivery: measured.iter().filter(|r| r.delivery_gap.is_none()).count(),
            refused: ok.iter().map(|r| r.refused).sum(),
            unknown: ok.iter().map(|r| r.unknown).sum(),
            acked: ok.iter().map(|r| r.acked).sum(),
            conflicts: ok.iter().map(|r| r.conflicts).sum(),
            bans: ok.iter().map(|r| r.bans).sum(),
            duplicates: ok.iter().map(|r| r.duplicates).sum(),
            lost: ok.iter().map(|r| r.lost).sum(),
            resends: ok.iter().map(|r| r.resends).sum(),
            failures: runs.iter().filter_map(|r| r.as_ref().err().cloned()).collect(),
        }
    }

    fn settings(&self) -> String {
        format!(
            "{}, heartbeat {} s, unhealthy {} s, session timeout {} s",
            engine_name(self.spec.engine),
            self.spec.heartbeat_interval,
            self.spec.unhealthy_interval,
            self.spec.session_timeout
        )
    }

    /// The delivery gap beyond `unhealthy_interval`: the margin a paused primary costs.
    fn margin_over_unhealthy(&self) -> Option<(Duration, Duration)> {
        let unhealthy = Duration::from_secs_f64(self.spec.unhealthy_interval);
        self.delivery.map(|(median, max)| (median.saturating_sub(unhealthy), max.saturating_sub(unhealthy)))
    }
}

fn pair(p: Option<(Duration, Duration)>) -> (String, String) {
    p.map_or(("-".into(), "-".into()), |(median, max)| (secs(median), secs(max)))
}

/// The main table, in Markdown (it reads fine on a terminal too).
fn summary_table(summaries: &[Summary]) -> String {
    let mut t = String::new();
    t.push_str(
        "| Setting | Fault | Runs measured | Stalled | Acceptance gap median | max | Refused | Delivery gap median \
         | max | Conflicts | Bans | Lost | Resends |\n",
    );
    t.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for s in summaries.iter().filter(|s| s.planned > 0) {
        let (acc_med, acc_max) = pair(s.acceptance);
        let (del_med, del_max) = pair(s.delivery);
        let _ = writeln!(
            t,
            "| {} ({}) | {} | {}/{} | {} | {acc_med} | {acc_max} | {} | {del_med} | {del_max} | {} | {} | {} | {} |",
            s.name,
            s.settings(),
            s.fault.label(),
            s.measured,
            s.planned,
            s.stalled,
            s.refused,
            s.conflicts,
            s.bans,
            s.lost,
            s.resends
        );
    }
    t
}

/// The machine, as the figures depend on it.
struct Machine {
    nproc: usize,
    cpu: String,
    ram: String,
    kernel: String,
    rustc: String,
    loadavg: String,
    date: String,
}

impl Machine {
    fn probe() -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let ram = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or_else(|| "unknown".into(), |kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0));
        let command = |program: &str, args: &[&str]| {
            std::process::Command::new(program)
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_else(|| "unknown".into())
        };
        Machine {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            ram,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            rustc: command("rustc", &["--version"]),
            loadavg: loadavg(),
            date: command("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        }
    }
}

/// The 1, 5 and 15 minute load averages.
fn loadavg() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn engine_name(engine: DbEngine) -> &'static str {
    match engine {
        DbEngine::Sqlite => "SQLite",
        DbEngine::Postgres => "PostgreSQL",
        DbEngine::MySql => "MySQL/MariaDB",
    }
}

fn ratio(reference: f64, measured: Option<(Duration, Duration)>) -> String {
    match measured {
        Some((median, _)) if median > Duration::ZERO => {
            let r = reference / median.as_secs_f64();
            if r < 10.0 {
                format!("{r:.1}x")
            } else {
                format!("{r:.0}x")
            }
        }
        _ => "-".into(),
    }
}

/// The cluster's timing under these settings, as the nodes derive it.
fn timing(spec: &ClusterSpec) -> Option<Timing> {
    let settings = Settings {
        heartbeat_interval: spec.heartbeat_interval,
        unhealthy_interval: spec.unhealthy_interval,
        upstream_session_timeout: spec.session_timeout,
        ..Settings::default()
    };
    settings.timing().ok()
}

/// The whole `## Failover` section, markers included.
fn markdown_section(
    options: &Options,
    machine: &Machine,
    results: &[(Scenario, Vec<Result<RunResult, String>>)],
    summaries: &[Summary],
    took: Duration,
) -> String {
    let mut md = String::new();
    let command = if options.given.is_empty() {
        "cargo bench --bench failover".to_string()
    } else {
        format!("cargo bench --bench failover -- {}", options.given.join(" "))
    };
    let profile = if cfg!(debug_assertions) {
        "debug (debug assertions on: figures are not representative)"
    } else {
        "`bench` (inherits `release`: opt-level 3, no debug assertions), binary and bench alike"
    };
    let scenarios = scenarios(options);
    let (fast, defaults) = (&scenarios[0].spec, &scenarios[2].spec);
    // Promotion margin and renewal period, as the text explains the paused path with them.
    let margin_and_renewal = |spec: &ClusterSpec| {
        timing(spec).map_or(("?".to_string(), "?".to_string()), |t| (secs(t.promotion_margin), secs(t.renew_every)))
    };

    let _ = writeln!(md, "{BEGIN}");
    let _ = writeln!(md, "## Failover\n");
    let _ = writeln!(
        md,
        "_Generated by `benches/failover.rs`; everything between the `failover` markers is overwritten by the next \
         run._\n"
    );
    let _ = writeln!(
        md,
        "Each run starts a fresh cluster of real processes (the release `shardgate` binary: upstream-sim, 2 masters, \
         3 coreapps, 1 webapp, 1 shard; the kill -9 runs on {}, the SIGSTOP runs on {}), runs a steady load of {RECIPIENTS} sequential senders at \
         {RATE:.0} messages/s each, waits for {STEADY} deliveries, then kills (`kill -9`) or pauses (SIGSTOP) the \
         primary coreapp of shard 0 and keeps the load on until the new primary has delivered {STEADY} more \
         (a paused primary is then resumed under load, and {STEADY} more are awaited), plus {} ms. The load stops and \
         every acknowledged message is awaited (at most {} s).\n",
        engine_name(options.engine),
        engine_name(options.paused_engine),
        TAIL.as_millis(),
        DRAIN_TIMEOUT.as_secs()
    );
    md.push_str(
        "- **Acceptance gap**: the longest interval between two consecutive acknowledged `POST /v1/messages` over \
         the whole load (the senders' clock). The load's own jitter, the same measure taken before the fault, is \
         listed as the baseline.\n\
         - **Delivery gap**: from the fault (wall clock, unix ms, taken just before the signal) to the first delivery \
         at the sim by the new primary (the sim's `received_at_ms`; same machine, same clock).\n\
         - **Lost**: acknowledged but never delivered. **Resends**: sends the sim had already received (in flight at \
         the fault). **Conflicts**, **bans**: the sim's counters, which must stay 0. Totals are over the runs.\n\
         - **Runs measured**: runs whose gaps make the medians and maxima. **Stalled**: SIGSTOP runs in which no \
         other coreapp took over while the primary was paused.\n\n",
    );
    let _ = writeln!(md, "**Command**: `{command}`  ");
    let _ = writeln!(md, "**Date**: {}  ", machine.date);
    let _ = writeln!(
        md,
        "**Machine**: {} CPUs (`nproc`), {}, {} RAM, Linux {}; load average (1, 5, 15 min) {} at the start, {} at \
         the end (a shared machine: other work shows there and in the baseline gaps)  ",
        machine.nproc,
        machine.cpu,
        machine.ram,
        machine.kernel,
        machine.loadavg,
        loadavg()
    );
    let _ = writeln!(md, "**Toolchain**: {}; build profile {profile}  ", machine.rustc);
    let _ = writeln!(md, "**Duration**: {:.0} s for the whole bench\n", took.as_secs_f64());
    let _ = writeln!(md, "**Settings**:");
    for (name, spec) in [("fast", &fast), ("defaults", &defaults)] {
        let _ = writeln!(
            md,
            "- {name}: heartbeat_interval {} s, unhealthy_interval {} s (also the shard lease TTL), sim \
             session_timeout {} s; derived promotion margin {}.",
            spec.heartbeat_interval,
            spec.unhealthy_interval,
            spec.session_timeout,
            margin_and_renewal(spec).0
        );
    }
    md.push('\n');

    let _ = writeln!(md, "### Results\n");
    md.push_str(&summary_table(summaries));
    md.push('\n');
    for s in summaries.iter().filter(|s| s.planned > 0) {
        let (ses_med, ses_max) = pair(s.session);
        let (base_med, base_max) = pair(s.baseline);
        let _ = write!(
            md,
            "- {} {}: new primary's session opened after {ses_med} (median), {ses_max} (max); baseline \
             acknowledgement gap before the fault {base_med} (median), {base_max} (max); {} acknowledged, {} \
             unanswered requests, {} duplicate deliveries",
            s.name,
            s.fault.label(),
            s.acked,
            s.unknown,
            s.duplicates
        );
        if s.stalled > 0 {
            let _ = write!(
                md,
                "; **{} of {} completed run(s) stalled**: no other coreapp opened a session within {:.0} s of the \
                 SIGSTOP, so the zombie was woken (SIGCONT) to see whether the cluster then recovers; their gaps are \
                 left out of the medians and maxima, their refused, conflicts, lost and resends are in the totals",
                s.stalled,
                s.completed,
                failover_bound(&s.spec).as_secs_f64()
            );
        }
        if s.no_delivery > 0 {
            let _ = write!(md, "; {} run(s) without any delivery by the new primary", s.no_delivery);
        }
        if s.fault == Fault::Pause {
            let (m_med, m_max) = pair(s.margin_over_unhealthy());
            let (margin, renewal) = margin_and_renewal(&s.spec);
            let _ = write!(
                md,
                "; **observed margin over unhealthy_interval: {m_med} (median), {m_max} (max)**, counted from the \
                 pause: the lease expires unhealthy_interval after its last renewal (which precedes the pause by up \
                 to one renewal period, {renewal}), the master then waits the promotion margin ({margin}), and the \
                 new primary claims, opens its session and resends"
            );
        }
        md.push_str(".\n");
        for f in &s.failures {
            let _ = writeln!(md, "  - failed run: {}", f.replace('\n', " "));
        }
    }
    md.push('\n');

    let fast_kill = summaries.iter().find(|s| s.name == "fast" && s.fault == Fault::Kill9 && s.measured > 0);
    let fast_pause = summaries.iter().find(|s| s.name == "fast" && s.fault == Fault::Pause && s.measured > 0);
    let default_kill = summaries.iter().find(|s| s.name == "defaults" && s.fault == Fault::Kill9 && s.measured > 0);
    let default_pause = summaries.iter().find(|s| s.name == "defaults" && s.fault == Fault::Pause && s.measured > 0);
    let _ = writeln!(md, "### Against the anchors of the issue\n");
    let _ = writeln!(md, "All medians and ratios below come from this one run of the bench.\n");
    let _ = writeln!(md, "| Reference | Failover time | This run | Ratio (reference / this run's median) |");
    let _ = writeln!(md, "|---|---|---|---|");
    let dg = |s: Option<&Summary>| s.and_then(|s| s.delivery);
    let med = |s: Option<&Summary>, label: &str| {
        dg(s).map_or("not measured".to_string(), |(median, _)| format!("{label} median delivery gap {}", secs(median)))
    };
    let rows: [(&str, &str, f64, Option<&Summary>, &str); 6] = [
        ("Official on-prem, heartbeat monitoring (seed)", "≈30 s", 30.0, default_kill, "defaults kill -9:"),
        ("Official on-prem, heartbeat monitoring (seed)", "≈30 s", 30.0, default_pause, "defaults SIGSTOP:"),
        ("Official on-prem, DB-based monitoring (seed)", "≈2 min", 120.0, default_kill, "defaults kill -9:"),
        ("Patroni, default settings", "≈30-45 s", 30.0, fast_kill, "fast kill -9:"),
        ("Kubernetes Lease leader election", "15-17 s", 15.0, fast_kill, "fast kill -9:"),
        ("Kubernetes Lease leader election", "15-17 s", 15.0, fast_pause, "fast SIGSTOP:"),
    ];
    for (reference, time, seconds, summary, label) in rows {
        if summary.is_none() && label.contains("SIGSTOP") {
            continue;
        }
        let _ = writeln!(md, "| {reference} | {time} | {} | {} |", med(summary, label), ratio(seconds, dg(summary)));
    }
    let default_margin = margin_and_renewal(defaults).0;
    let _ = writeln!(
        md,
        "\nThe seed's ≈30 s and ≈2 min hold for any failure. A killed process is replaced as soon as a heartbeat is \
         refused (within one heartbeat_interval), which is what the kill -9 rows measure. A paused (or cut-off) \
         primary is replaced only after its lease expires plus the promotion margin: with the default settings that \
         is about {} s + {default_margin}, i.e. no faster than the seed (`--default-paused-runs 1` measures it).",
        defaults.unhealthy_interval
    );
    md.push('\n');
    let _ = writeln!(md, "Targets from the issue:\n");
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    if let Some(s) = fast_kill {
        let (median, max) = s.delivery.unwrap_or((Duration::MAX, Duration::MAX));
        let _ = writeln!(
            md,
            "- kill -9 with heartbeat 0.2 s: median delivery gap under 1 s: **{}** (median {}, max {}).",
            verdict(median < Duration::from_secs(1)),
            secs(median),
            secs(max)
        );
    }
    if let Some(s) = fast_pause {
        let (m_med, m_max) = pair(s.margin_over_unhealthy());
        let (d_med, d_max) = pair(s.delivery);
        let (margin, renewal) = margin_and_renewal(&s.spec);
        let overall = if s.stalled == 0 && s.measured == s.planned {
            "**met** in every run".to_string()
        } else {
            format!("**NOT met** in {} of {} runs (stalled or failed)", s.planned - s.measured, s.planned)
        };
        let _ = writeln!(
            md,
            "- paused primary: within unhealthy_interval ({} s) plus a stated margin: delivery gap {d_med} median, \
             {d_max} max, i.e. a margin of {m_med} median, {m_max} max over unhealthy_interval (promotion margin \
             {margin} after the lease expiry, less up to one renewal period, {renewal}, plus claim and session); \
             {overall}.",
            s.spec.unhealthy_interval
        );
    }
    let all_ok: Vec<&Summary> = summaries.iter().filter(|s| s.completed > 0).collect();
    let refused: usize = all_ok.iter().map(|s| s.refused).sum();
    let unknown: usize = all_ok.iter().map(|s| s.unknown).sum();
    let acc: Vec<String> = all_ok
        .iter()
        .map(|s| {
            let (median, max) = pair(s.acceptance);
            format!("{} {}: {median} median, {max} max", s.name, s.fault.label())
        })
        .collect();
    let stalled_gaps: Vec<Duration> = results
        .iter()
        .flat_map(|(_, runs)| runs.iter().filter_map(|r| r.as_ref().ok()).filter(|r| r.stalled))
        .map(|r| r.acceptance_gap)
        .collect();
    let stalled_note = match median_max(stalled_gaps) {
        Some((_, max)) => format!(
            "; in the stalled run(s), the API accepted nothing for up to {} (until the zombie was woken)",
            secs(max)
        ),
        None => String::new(),
    };
    let _ = writeln!(
        md,
        "- acceptance gap ideally none: {refused} refused and {unknown} unanswered requests in all runs; longest gap \
         between acknowledgements {}{stalled_note}.",
        acc.join("; ")
    );
    let conflicts: u64 = all_ok.iter().map(|s| s.conflicts + s.bans).sum();
    let lost: usize = all_ok.iter().map(|s| s.lost).sum();
    let _ = writeln!(
        md,
        "- zero conflicts, zero bans, nothing lost: **{}** ({conflicts} conflicts+bans, {lost} lost).\n",
        verdict(conflicts == 0 && lost == 0)
    );

    let _ = writeln!(md, "<details><summary>Every run</summary>\n");
    md.push_str(
        "| Setting | Fault | Run | Old → new primary | Acceptance gap | Baseline gap | Refused | Unanswered \
         | Session after | Delivery gap | Acked | Lost | Resends | Conflicts | Bans |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (scenario, runs) in results {
        for (i, run) in runs.iter().enumerate() {
            match run {
                Ok(r) => {
                    let _ = writeln!(
                        md,
                        "| {} | {} | {} | {} → {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                        scenario.name,
                        scenario.fault.label(),
                        i + 1,
                        r.old_owner,
                        if r.stalled { format!("{} (stalled until woken)", r.new_owner) } else { r.new_owner.clone() },
                        secs(r.acceptance_gap),
                        secs(r.baseline_gap),
                        r.refused,
                        r.unknown,
                        r.session_gap.map_or("none".into(), secs),
                        r.delivery_gap.map_or("none".into(), secs),
                        r.acked,
                        r.lost,
                        r.resends,
                        r.conflicts,
                        r.bans
                    );
                }
                Err(e) => {
                    let _ = writeln!(
                        md,
                        "| {} | {} | {} | failed: {} |||||||||||",
                        scenario.name,
                        scenario.fault.label(),
                        i + 1,
                        e.replace('|', "/").replace('\n', " ")
                    );
                }
            }
        }
    }
    let _ = writeln!(md, "\n</details>");
    let _ = writeln!(md, "{END}");
    md
}

/// Replaces the failover section of `existing` (or appends it; or starts the file).
fn merge_section(existing: Option<&str>, section: &str) -> String {
    match existing {
        Some(text) => match (text.find(BEGIN), text.find(END)) {
            (Some(begin), Some(end)) if begin < end => {
                let after = &text[end + END.len()..];
                format!("{}{}{}", &text[..begin], section.trim_end(), after)
            }
            _ => format!("{}\n\n{section}", text.trim_end()),
        },
        None => format!(
            "# Benchmarks\n\nMeasured figures of Shardgate. Each section is regenerated by the benchmark named in it: \
             the lines between its `<!-- name:begin -->` and `<!-- name:end -->` markers are overwritten on every \
             run, so notes belong outside them.\n\n{section}"
        ),
    }
}
