//! The fault suite (issue 11): faults combined at random from a seed
//! (`harness::nemesis`) while a load sends and callbacks flow, judged by
//! `harness::checker`: zero conflicts, zero bans, no acknowledged message
//! lost, none delivered twice, order per recipient kept, every status
//! callback delivered at least once, never two masters acting in one epoch,
//! and the cluster serving again once the faults healed. On the server
//! engines two coreapps and a master run with drifting clocks; the router
//! plugin is swapped and a setting changed during the faults.
//!
//! `cargo test --test fault_suite` runs one short schedule per engine. The
//! long run is the same test with more seeds and faults:
//! `SHARDGATE_FAULT_SEEDS=0..12 SHARDGATE_FAULT_COUNT=25 cargo test --test fault_suite -- --nocapture --test-threads 1`
//! prints one table row per (engine, seed). A failing run prints its seed,
//! engine and fault timeline, keeps the node logs, and fails the test.

mod harness;

use harness::checker::{self, Recovery, Verdict};
use harness::nemesis::{self, Applied, FaultKind, HookRelay, Schedule};
use harness::webhook_receiver::WebhookReceiver;
use harness::{load, poll_every, poll_until, start, Cluster, ClusterSpec};
use serde_json::json;
use shardgate_core::config::DbEngine;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

/// Recipients of the load, each with its own sequential sender.
const RECIPIENTS: usize = 4;
/// Messages per second per recipient.
const RATE: f64 = 15.0;
/// The seed of the short run (the number).
const DEFAULT_SEED: u64 = 11;
/// Faults of the short run.
const DEFAULT_COUNT: usize = 8;
/// How long the cluster may take to serve again, and to deliver what it
/// acknowledged, once every fault healed.
const SETTLE: Duration = Duration::from_secs(30);
/// How long every receipt the upstream emitted may take to be called back.
const RECEIPTS_SETTLE: Duration = Duration::from_secs(10);
/// How long the callbacks may take to catch up after that.
const CALLBACKS_SETTLE: Duration = Duration::from_secs(60);

/// The cluster of `engine`: the fast settings, `coreapp-1` in a namespace,
/// and on the server engines a database proxy per node (SQLite has no
/// server to cut off or partition from).
fn spec_for(engine: DbEngine) -> ClusterSpec {
    // 0.5 s as the other namespace tests: the lost-FIN wait of a partitioned kill.
    let spec = ClusterSpec { session_timeout: 0.5, netns_coreapp: true, ..ClusterSpec::fast(engine) };
    ClusterSpec { db_proxy: engine != DbEngine::Sqlite, ..spec }
}

/// What a run of the suite does on each engine: which seeds, how many
/// faults each, and which kinds (the table's two-letter names; all when empty).
#[derive(Debug, Clone)]
struct Plan {
    seeds: Range<u64>,
    count: usize,
    kinds: Vec<String>,
}

impl Plan {
    /// The short run, or what `SHARDGATE_FAULT_SEEDS`, `SHARDGATE_FAULT_COUNT`
    /// and `SHARDGATE_FAULT_KINDS=kc,wh,...` (to bisect a failure) ask for.
    fn from_env() -> Plan {
        let kinds = std::env::var("SHARDGATE_FAULT_KINDS").unwrap_or_default();
        Plan {
            seeds: seeds(),
            count: fault_count(),
            kinds: kinds.split(',').map(|k| k.trim().to_string()).filter(|k| !k.is_empty()).collect(),
        }
    }

    /// The kinds a cluster of `spec` can suffer, narrowed to the plan's.
    fn fault_kinds(&self, spec: &ClusterSpec) -> Vec<FaultKind> {
        let kinds: Vec<FaultKind> = FaultKind::available(spec)
            .into_iter()
            .filter(|k| self.kinds.is_empty() || self.kinds.iter().any(|w| w == k.short()))
            .collect();
        assert!(!kinds.is_empty(), "the fault kinds {:?} leave no fault this cluster can suffer", self.kinds);
        kinds
    }
}

/// `SHARDGATE_FAULT_SEEDS=a..b`, or the one default seed.
fn seeds() -> Range<u64> {
    let Ok(range) = std::env::var("SHARDGATE_FAULT_SEEDS") else { return DEFAULT_SEED..DEFAULT_SEED + 1 };
    let parsed = range.split_once("..").and_then(|(a, b)| Some(a.trim().parse().ok()?..b.trim().parse().ok()?));
    parsed.unwrap_or_else(|| panic!("SHARDGATE_FAULT_SEEDS must look like 0..20, not {range:?}"))
}

/// `SHARDGATE_FAULT_COUNT=n`, or [`DEFAULT_COUNT`].
fn fault_count() -> usize {
    std::env::var("SHARDGATE_FAULT_COUNT")
        .map(|n| n.parse().unwrap_or_else(|_| panic!("SHARDGATE_FAULT_COUNT must be a number, not {n:?}")))
        .unwrap_or(DEFAULT_COUNT)
}

/// What one (engine, seed) run did and found.
struct Run {
    engine: DbEngine,
    schedule: Schedule,
    applied: Vec<Applied>,
    origin_ms: i64,
    /// How the settings PATCH and the plugin swaps made during the faults were answered.
    operations: Vec<String>,
    verdict: Verdict,
    recoveries: Vec<Recovery>,
    /// Where the node logs of a failing run were kept.
    kept_logs: Option<PathBuf>,
}

impl Run {
    /// One table row.
    fn row(&self) -> String {
        let faults: Vec<String> = self
            .schedule
            .counts()
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(kind, n)| format!("{}{n}", kind.short()))
            .collect();
        let v = &self.verdict;
        format!(
            "{:<8} {:>4} | {:<34} | {:>4} {:>4} {:>4} {:>4} {:>5} {:>5} {:>6} {:>4} {:>5} | {:>5} {:>5} | {}",
            format!("{:?}", self.engine),
            self.schedule.seed,
            faults.join(" "),
            v.conflicts.len(),
            v.bans.len(),
            v.lost.len(),
            v.duplicates.len(),
            v.order.len(),
            v.unexpected.len(),
            v.callbacks_missing.len(),
            v.masters.len(),
            v.unrecovered.len(),
            v.superseded.len(),
            v.receipts_lost.len(),
            recovery_summary(&self.recoveries)
        )
    }

    /// The seed, the engine, the timeline as it ran and what was found.
    fn failure(&self) -> String {
        format!(
            "FAULT SUITE FAILURE: engine {:?}, seed {} (replay: SHARDGATE_FAULT_SEEDS={}..{} \
             SHARDGATE_FAULT_COUNT={})\n{}timeline as run (from the first fault):\n{}\n  {}\nviolations:\n{}\
             node logs kept in {}",
            self.engine,
            self.schedule.seed,
            self.schedule.seed,
            self.schedule.seed + 1,
            self.schedule.faults.len(),
            self.schedule,
            nemesis::timeline(&self.applied, self.origin_ms),
            self.operations.join("\n  "),
            self.verdict,
            self.kept_logs.as_ref().map_or("(not kept)".to_string(), |p| p.display().to_string())
        )
    }
}

/// The table's header, matching [`Run::row`].
const HEADER: &str =
    "engine   seed | faults                             | conf bans lost  dup order unexp cbmiss mast unrec |  skip rlost | \
                      recovery per kind: after heal median/max, longest delivery gap (ms)";

/// Per kind: the time from heal to the next delivery (median/max) and the
/// longest delivery gap around the fault.
fn recovery_summary(recoveries: &[Recovery]) -> String {
    FaultKind::ALL
        .into_iter()
        .filter_map(|kind| {
            let of_kind: Vec<&Recovery> = recoveries.iter().filter(|r| r.kind == kind).collect();
            if of_kind.is_empty() {
                return None;
            }
            let after: Vec<i64> = of_kind.iter().filter_map(|r| r.after_heal_ms).collect();
            let never = of_kind.len() - after.len();
            let gap = of_kind.iter().map(|r| r.longest_gap_ms).max().unwrap_or(0);
            let never = if never > 0 { format!(" ({never} never)") } else { String::new() };
            Some(format!(
                "{} {}/{}{never} gap {gap}",
                kind.short(),
                checker::median(&after),
                after.iter().max().unwrap_or(&0)
            ))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// PATCHes a harmless setting `after` into the schedule, as an operator
/// might during an incident; says how it was answered (a refusal while the
/// database is cut off is no violation; the settings check at the end is).
async fn change_settings_midway(http: reqwest::Client, api: String, token: String, after: Duration) -> String {
    tokio::time::sleep(after).await;
    let at = after.as_secs_f64();
    let request = http
        .patch(format!("{api}/v1/settings/application"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(5))
        .json(&json!({"callback_backoff_delay_ms": 150}));
    match request.send().await {
        Ok(response) => format!("+{at:.2}s settings PATCH answered {}", response.status()),
        Err(e) => format!("+{at:.2}s settings PATCH got no answer: {e}"),
    }
}

/// Swaps the router plugin at each of `at` (the country router in, then
/// out again, and so on), as an operator rolling a plugin out during an
/// incident; says how each was answered (a refusal while the database is
/// cut off is no violation: nothing may be lost either way).
async fn swap_routers_midway(http: reqwest::Client, api: String, token: String, at: Vec<Duration>) -> Vec<String> {
    let country = std::fs::read(format!("{}/plugins/components/router-country.wasm", env!("CARGO_MANIFEST_DIR")))
        .expect("router-country component");
    let start = tokio::time::Instant::now();
    let mut answers = Vec::new();
    for (i, after) in at.into_iter().enumerate() {
        tokio::time::sleep_until(start + after).await;
        let (what, request) = if i % 2 == 0 {
            let url = format!("{api}/v1/plugins/router?name=country&version=1.0.{i}");
            ("router swapped in", http.put(url).header("Content-Type", "application/wasm").body(country.clone()))
        } else {
            ("router swapped out", http.delete(format!("{api}/v1/plugins/router")))
        };
        let answer = match request.bearer_auth(&token).timeout(Duration::from_secs(5)).send().await {
            Ok(response) => format!("answered {}", response.status()),
            Err(e) => format!("got no answer: {e}"),
        };
        answers.push(format!("+{:.2}s {what}: {answer}", after.as_secs_f64()));
    }
    answers
}

/// What did not come back once every fault healed: a node that exited, a
/// shard not served, deliveries not resuming, settings not in force.
async fn check_recovered(cluster: &mut Cluster) -> Vec<String> {
    let mut unrecovered = Vec::new();
    for node in
        std::iter::once(&mut cluster.webapp).chain(cluster.masters.iter_mut()).chain(cluster.coreapps.iter_mut())
    {
        if node.exited() {
            unrecovered.push(format!("{} exited", node.name));
        }
    }
    let shards = cluster.spec.shards as usize;
    let served = poll_until(SETTLE, || async {
        let map = cluster.store.shard_map().await.ok()?;
        let live = map.rows.len() == shards && map.rows.iter().all(|r| r.lease_live(map.now));
        let open = cluster.sim_stats().await["sessions_open"].as_u64() == Some(shards as u64);
        (live && open).then_some(())
    });
    if served.await.is_none() {
        unrecovered.push(format!("a shard was not served again within {SETTLE:?} of the last heal"));
    }
    let before = cluster.sim_stats().await["unique_messages"].as_u64().unwrap_or(0);
    let delivering = poll_until(SETTLE, || async {
        (cluster.sim_stats().await["unique_messages"].as_u64()? >= before + 20).then_some(())
    });
    if delivering.await.is_none() {
        unrecovered.push(format!("deliveries did not resume within {SETTLE:?} of the last heal"));
    }
    let version = cluster.store.settings_version().await.expect("settings version");
    let in_force = poll_until(Duration::from_secs(10), || async {
        let versions = cluster.node_settings_versions().await;
        versions.iter().all(|(_, v)| v.is_some_and(|v| v >= version)).then_some(())
    });
    if in_force.await.is_none() {
        let versions = cluster.node_settings_versions().await;
        unrecovered.push(format!("settings version {version} not in force on every node: {versions:?}"));
    }
    unrecovered
}

/// Copies the node logs of a failing run where the cluster's drop leaves them.
fn keep_logs(cluster: &Cluster, engine: DbEngine, seed: u64) -> Option<PathBuf> {
    let kept = std::env::temp_dir().join(format!("shardgate-fault-{engine:?}-{seed}-{}", std::process::id()));
    std::fs::create_dir_all(&kept).ok()?;
    for entry in std::fs::read_dir(&cluster.dir).ok()?.flatten() {
        if entry.path().extension().is_some_and(|e| e == "log") {
            std::fs::copy(entry.path(), kept.join(entry.file_name())).ok()?;
        }
    }
    Some(kept)
}

/// One seed on one engine; `None` when the engine's server tests are skipped.
async fn run_seed(engine: DbEngine, seed: u64, plan: &Plan) -> Option<Run> {
    let spec = spec_for(engine);
    let schedule = Schedule::generate(seed, plan.count, &plan.fault_kinds(&spec), &spec);
    let mut cluster = start(ClusterSpec { clock_rates: schedule.clocks.clone(), ..spec }).await?;
    println!("engine {engine:?}, {schedule}");
    let receiver = WebhookReceiver::start().await;
    let relay = HookRelay::start(&receiver, cluster.netns.as_ref()).await;
    cluster
        .patch_settings(json!({"webhooks": {"url": relay.url}, "callback_backoff_delay_ms": 100,
            "max_callback_backoff_delay_ms": 400}))
        .await;
    let load = load::start(cluster.http.clone(), cluster.api.clone(), cluster.token.clone(), RECIPIENTS, RATE);
    cluster.wait_more_deliveries(0, 20).await;

    let origin_ms = nemesis::now_ms();
    let (http, api, token) = (cluster.http.clone(), cluster.api.clone(), cluster.token.clone());
    let settings_change =
        tokio::spawn(change_settings_midway(http.clone(), api.clone(), token.clone(), schedule.span() / 2));
    let swap_at = [1, 3, 5, 7].map(|k| schedule.span() * k / 8).to_vec();
    let plugin_swaps = tokio::spawn(swap_routers_midway(http, api, token, swap_at));
    let applied = nemesis::run(&mut cluster, &receiver, &schedule).await;
    let mut operations = vec![settings_change.await.expect("settings change task")];
    operations.extend(plugin_swaps.await.expect("plugin swap task"));
    let mut unrecovered: Vec<String> = applied.iter().filter_map(|a| a.heal_error.clone()).collect();
    unrecovered.extend(check_recovered(&mut cluster).await);

    let report = load.finish().await;
    let acked = report.acked_ids();
    let all_delivered = poll_every(SETTLE, Duration::from_millis(250), || async {
        let counts = cluster.delivery_counts().await;
        acked.iter().all(|id| counts.contains_key(id)).then_some(())
    });
    all_delivered.await;
    // Every callback, or (receipts lost upstream) every one owed: the last
    // receipts may still be on their way to being recorded, so the second
    // wait only starts once the first one timed out.
    let acked_set = acked.iter().cloned().collect();
    for (bound, owed_only) in [(RECEIPTS_SETTLE, false), (CALLBACKS_SETTLE, true)] {
        let callbacks = poll_every(bound, Duration::from_millis(250), || async {
            let (owed, _, lost) = checker::missing_callbacks_by_cause(&cluster, &receiver, &acked_set).await;
            (owed.is_empty() && (owed_only || lost.is_empty())).then_some(())
        });
        if callbacks.await.is_some() {
            break;
        }
    }

    let verdict = checker::judge(&cluster, &report, &receiver, unrecovered).await;
    let recoveries = checker::recoveries(&checker::sim_messages(&cluster).await, &applied);
    let kept_logs = if verdict.is_clean() { None } else { keep_logs(&cluster, engine, seed) };
    Some(Run { engine, schedule, applied, origin_ms, operations, verdict, recoveries, kept_logs })
}

/// Every seed of `plan` on `engine`; fails after the last seed if any failed.
async fn fault_suite(engine: DbEngine, plan: Plan) {
    let count = plan.count;
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let mut all_recoveries = Vec::new();
    for seed in plan.seeds.clone() {
        let Some(run) = run_seed(engine, seed, &plan).await else { return };
        println!("{HEADER}\n{}", run.row());
        if let Some(lost) = run.verdict.receipts_lost.get(..run.verdict.receipts_lost.len().min(3)) {
            lost.iter().for_each(|story| println!("  receipt lost upstream (no violation): {story}"));
        }
        if !run.verdict.is_clean() {
            eprintln!("{}", run.failure());
            failures.push(run.failure());
        }
        rows.push(run.row());
        all_recoveries.extend(run.recoveries);
    }
    println!(
        "\nfault suite, {engine:?}, {count} faults per seed:\n{HEADER}\n{}\nall seeds: {}",
        rows.join("\n"),
        recovery_summary(&all_recoveries)
    );
    assert!(failures.is_empty(), "{} of {} runs failed:\n{}", failures.len(), rows.len(), failures.join("\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_random_faults_keep_every_message_and_callback_without_conflict() {
    fault_suite(DbEngine::Sqlite, Plan::from_env()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_random_faults_keep_every_message_and_callback_without_conflict() {
    fault_suite(DbEngine::Postgres, Plan::from_env()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_random_faults_keep_every_message_and_callback_without_conflict() {
    fault_suite(DbEngine::MySql, Plan::from_env()).await;
}

/// Seed 11 with its 8 faults found callback delivery falling behind for
/// good on PostgreSQL and MariaDB: each pass read thousands of pending rows
/// to find a handful of recipients' first callbacks, so a pass took longer
/// than the callbacks took to arrive (attempts 0, due, none in flight, while
/// messages flowed). Receiver failures alone reproduced it; this replays the
/// schedule narrowed to them. Fixed by reading one head per recipient
/// (`Store::pending_heads`).
fn seed_11_receiver_failures() -> Plan {
    Plan { seeds: 11..12, count: DEFAULT_COUNT, kinds: vec!["wh".to_string()] }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_seed_11_every_recorded_status_is_called_back() {
    fault_suite(DbEngine::Postgres, seed_11_receiver_failures()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_seed_11_every_recorded_status_is_called_back() {
    fault_suite(DbEngine::MySql, seed_11_receiver_failures()).await;
}

/// The schedules themselves, without a cluster: a seed always draws the same
/// faults, each bounded, with the two healability rules of
/// [`Schedule::generate`] kept.
#[test]
fn schedules_are_reproducible_bounded_and_healable() {
    let spec = spec_for(DbEngine::Postgres);
    let kinds = FaultKind::available(&spec);
    for seed in 0..200 {
        let schedule = Schedule::generate(seed, fault_count(), &kinds, &spec);
        assert_eq!(
            format!("{schedule}"),
            format!("{}", Schedule::generate(seed, fault_count(), &kinds, &spec)),
            "seed {seed}"
        );
        let of = |kind| schedule.faults.iter().filter(move |f| f.kind == kind);
        for fault in &schedule.faults {
            assert!(fault.duration >= Duration::from_millis(200), "seed {seed}: {fault:?}");
        }
        for (node, rate) in &schedule.clocks {
            let tolerated = if node.starts_with("coreapp") { 0.8..=1.08 } else { 0.7..=1.3 };
            assert!(tolerated.contains(rate), "seed {seed}: {node} drifts at {rate}, outside the tolerated drift");
        }
        let masters: Vec<_> = of(FaultKind::KillMaster).collect();
        for pair in masters.windows(2) {
            assert!(pair[0].end() < pair[1].start, "seed {seed}: master kills overlap: {pair:?}");
        }
        for kill in of(FaultKind::KillCoreapp).chain(of(FaultKind::KillMaster)) {
            for cut in of(FaultKind::DbCut).chain(of(FaultKind::DbStall)) {
                assert!(!(cut.start <= kill.end() && kill.end() < cut.end()), "seed {seed}: restart in a cut");
            }
        }
        if std::env::var("SHARDGATE_PRINT_SCHEDULES").is_ok() {
            println!("{schedule}");
        }
    }
}

/// SQLite seeds 9 and 10 with 25 faults each (the long run) left
/// `coreapp-1` down: it was restarted while another coreapp was paused
/// inside a write, holding SQLite's only write lock, so its start-up write
/// waited out the busy timeout and it exited ("database is locked"), and the
/// SIGCONT that would have freed the lock was scheduled after the restart.
/// On SQLite a restart now waits for every pause around it, as it waits for
/// a database cut on the server engines.
#[test]
fn sqlite_seeds_9_and_10_restart_no_node_while_another_is_paused() {
    let spec = spec_for(DbEngine::Sqlite);
    let kinds = FaultKind::available(&spec);
    for seed in [9, 10] {
        let schedule = Schedule::generate(seed, 25, &kinds, &spec);
        let of = |kind| schedule.faults.iter().filter(move |f| f.kind == kind);
        for kill in of(FaultKind::KillCoreapp).chain(of(FaultKind::KillMaster)) {
            for pause in of(FaultKind::PauseCoreapp) {
                assert!(
                    !(pause.start <= kill.end() && kill.end() < pause.end()),
                    "seed {seed}: {kill:?} restarts during {pause:?}"
                );
            }
        }
    }
}

/// The check of "one master per epoch" on log lines as the masters write
/// them: a reassignment by a master under an epoch it did not win, and an
/// epoch won twice, are found; a refused reassignment is no act.
#[test]
fn two_masters_in_one_epoch_are_found_in_their_logs() {
    use harness::master_log::{parse, violations, MasterAct};
    let lines = [
        "2026-12-07T10:00:00.000001Z  INFO master-1 won the master lease, epoch 1: now primary master",
        "2026-12-07T10:00:01.000001Z  INFO primary master master-1, epoch 1: shard 0 has no primary (none yet): promoting coreapp-1",
        "2026-12-07T10:00:02.000001Z  INFO master-2 won the master lease, epoch 2: now primary master",
        "2026-12-07T10:00:03.000001Z  INFO primary master master-2, epoch 2: shard 0 primary coreapp-1 gone: promoting coreapp-2",
        "2026-12-07T10:00:04.000001Z  INFO primary master master-1, epoch 2: shard 0 primary coreapp-2 gone: promoting coreapp-3",
        "2026-12-07T10:00:05.000001Z  INFO primary master master-2, epoch 2: shard 0 primary x gone: promoting y (not applied: the shard changed or the lease lapsed)",
    ];
    let acts: Vec<MasterAct> = lines.iter().filter_map(|l| parse(l)).collect();
    assert_eq!(acts.len(), 5, "{acts:?}");
    assert_eq!(violations(&acts[..4]), Vec::<String>::new());
    assert_eq!(violations(&acts).len(), 1, "{:?}", violations(&acts));
    let mut twice = acts[..4].to_vec();
    twice.push(
        parse("2026-12-07T10:00:06.000001Z  INFO master-1 won the master lease, epoch 2: now primary master").unwrap(),
    );
    assert!(violations(&twice)[0].contains("epoch 2 won by"), "{:?}", violations(&twice));
}
