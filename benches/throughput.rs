//! The throughput benchmark: on each database, a cluster of real processes
//! (1 webapp, 1 master, 3 coreapps, 2 shards, the sim) driven by the
//! built-in load generator with text messages to 1,000 recipients:
//! - closed-loop at fixed connection counts: accepted/s, delivered at the
//!   sim per second during the load, latency of `POST /v1/messages`;
//! - open-loop at half the best closed-loop rate: the latency a client sees
//!   when the cluster is not saturated (timed from when each request was due);
//! - per role, CPU per accepted message (from the phase's start until the
//!   sim delivered everything accepted) and peak RSS over the whole run.
//!
//! In the same run, a bare axum handler that parses the request and answers
//! it without checking or storing anything, under the same closed loops: the
//! HTTP ceiling of this machine. The figures are printed and written into
//! `BENCHMARKS.md`, between the throughput markers.
//!
//! ```text
//! cargo bench --bench throughput [-- --engine sqlite --engine pgsql --seconds 10 --connections 16,64 --no-write]
//! ```
//!
//! The parts: this file (options, phases, report), `throughput/load.rs`
//! (the load generator), `throughput/procstat.rs` (CPU and peak RSS from
//! `/proc`), `throughput/ceiling.rs` (the bare handler).

#[path = "throughput/ceiling.rs"]
mod ceiling;
#[path = "../tests/harness/mod.rs"]
mod harness;
#[path = "throughput/load.rs"]
mod load;
#[path = "throughput/procstat.rs"]
mod procstat;

use bench_report::{command_line, provenance, Machine, Section};
use clap::Parser;
use harness::{start, Cluster, ClusterSpec};
use load::{Outcome, Target};
use shardgate::supervisor::NodeProcess;
use shardgate_core::config::DbEngine;
use std::fmt::Write as _;
use std::time::Duration;
use tokio::time::Instant;

/// How long the outbox gets to drain after a phase.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(180);

/// Command-line options (after `--`).
#[derive(Debug, Parser)]
#[command(
    name = "throughput",
    override_usage = "cargo bench --bench throughput [-- OPTIONS]",
    about = "Measures accepted and delivered messages per second, latency, CPU and memory of a cluster under load"
)]
struct Options {
    /// Databases, in order (repeatable): sqlite, pgsql, mysql; all three if none is given
    #[arg(long, value_name = "E")]
    engine: Vec<DbEngine>,
    /// Seconds of each load phase
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=120))]
    seconds: u64,
    /// Closed-loop connection counts, one phase each
    #[arg(long, value_delimiter = ',', default_value = "16,64", value_parser = clap::value_parser!(u16).range(1..=1024))]
    connections: Vec<u16>,
    /// Print the figures only, leave BENCHMARKS.md alone
    #[arg(long)]
    no_write: bool,
    /// Passed by `cargo bench` to every bench binary; ignored
    #[arg(long, hide = true)]
    bench: bool,
}

/// The nodes of one role.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Webapp,
    Coreapps,
    Master,
    Sim,
}

const ROLES: [Role; 4] = [Role::Webapp, Role::Coreapps, Role::Master, Role::Sim];

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Webapp => "webapp",
            Role::Coreapps => "coreapps (3)",
            Role::Master => "master",
            Role::Sim => "sim",
        }
    }

    fn nodes(self, cluster: &Cluster) -> Vec<&NodeProcess> {
        match self {
            Role::Webapp => vec![&cluster.webapp],
            Role::Coreapps => cluster.coreapps.iter().collect(),
            Role::Master => cluster.masters.iter().collect(),
            Role::Sim => vec![&cluster.sim],
        }
    }

    fn cpu(self, cluster: &Cluster) -> Duration {
        self.nodes(cluster).iter().map(|node| procstat::cpu_time(node.pid)).sum()
    }

    /// The largest peak RSS among the role's nodes.
    fn peak_rss_mib(self, cluster: &Cluster) -> f64 {
        self.nodes(cluster).iter().map(|node| procstat::peak_rss_mib(node.pid)).fold(0.0, f64::max)
    }
}

/// The figures of one load phase.
struct Phase {
    name: String,
    accepted_per_s: f64,
    delivered_per_s: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    errors: u64,
    /// Seconds from the end of the load until the sim had everything accepted.
    drain_s: f64,
    /// Microseconds of CPU per accepted message, per role (in [`ROLES`] order).
    cpu_us: Vec<f64>,
}

/// Messages the sim delivered so far (received once, not failed).
async fn delivered(cluster: &Cluster) -> u64 {
    let stats = cluster.sim_stats().await;
    let count = |field: &str| stats[field].as_u64().unwrap_or(0);
    count("unique_messages").saturating_sub(count("messages_failed"))
}

/// Runs one phase of `load`, then waits for the sim to deliver what it accepted.
async fn phase<F: std::future::Future<Output = Outcome>>(cluster: &Cluster, name: String, load: F) -> Phase {
    let cpu_before: Vec<Duration> = ROLES.iter().map(|role| role.cpu(cluster)).collect();
    let delivered_before = delivered(cluster).await;
    let mut outcome = load.await;
    let delivered_during = delivered(cluster).await - delivered_before;
    let load_end = Instant::now();
    let accepted = outcome.latencies_us.len() as u64;
    let drained = harness::poll_until(DRAIN_TIMEOUT, || async {
        (delivered(cluster).await >= delivered_before + accepted).then_some(())
    })
    .await;
    assert!(drained.is_some(), "{name}: the outbox did not drain in {DRAIN_TIMEOUT:?}{}", cluster.logs_hint());
    let cpu_us = ROLES
        .iter()
        .zip(&cpu_before)
        .map(|(role, before)| (role.cpu(cluster) - *before).as_secs_f64() * 1e6 / accepted.max(1) as f64)
        .collect();
    Phase {
        name,
        accepted_per_s: outcome.rate(),
        delivered_per_s: delivered_during as f64 / outcome.elapsed.as_secs_f64(),
        p50: outcome.quantile_ms(0.5),
        p99: outcome.quantile_ms(0.99),
        p999: outcome.quantile_ms(0.999),
        errors: outcome.errors + outcome.missed,
        drain_s: load_end.elapsed().as_secs_f64(),
        cpu_us,
    }
}

/// The figures of one database.
struct EngineRun {
    engine: DbEngine,
    phases: Vec<Phase>,
    peak_rss_mib: Vec<f64>,
}

fn client(connections: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(connections.max(64))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

async fn run_engine(engine: DbEngine, options: &Options) -> Option<EngineRun> {
    let spec = ClusterSpec { shards: 2, coreapps: 3, masters: 1, ..ClusterSpec::fast(engine) };
    let Some(cluster) = start(spec).await else {
        eprintln!("{engine:?}: database unreachable, skipped");
        return None;
    };
    let most = options.connections.iter().copied().max().unwrap_or(16) as usize;
    let target =
        Target { http: client(most), url: format!("{}/v1/messages", cluster.api), token: cluster.token.clone() };
    let seconds = Duration::from_secs(options.seconds);
    // Warm-up: connections, caches, the plugin pools.
    phase(&cluster, "warm-up".into(), load::closed_loop(&target, 16, Duration::from_secs(2))).await;
    let mut phases = Vec::new();
    for &connections in &options.connections {
        let name = format!("closed loop, {connections} connections");
        let figures = phase(&cluster, name, load::closed_loop(&target, connections.into(), seconds)).await;
        println!("{engine:?}: {}", line(&figures));
        phases.push(figures);
    }
    let peak = phases.iter().map(|p| p.accepted_per_s).fold(0.0, f64::max);
    let rate = (peak / 2.0).max(1.0).round();
    let figures =
        phase(&cluster, format!("open loop, {rate:.0}/s (half the peak)"), load::open_loop(&target, rate, seconds))
            .await;
    println!("{engine:?}: {}", line(&figures));
    phases.push(figures);
    let peak_rss_mib = ROLES.iter().map(|role| role.peak_rss_mib(&cluster)).collect();
    Some(EngineRun { engine, phases, peak_rss_mib })
}

fn line(p: &Phase) -> String {
    format!(
        "{}: accepted {:.0}/s, delivered {:.0}/s, p50 {:.1} ms, p99 {:.1} ms, p999 {:.1} ms, {} errors, drained in {:.1} s",
        p.name, p.accepted_per_s, p.delivered_per_s, p.p50, p.p99, p.p999, p.errors, p.drain_s
    )
}

/// The ceiling's closed loops: (connections, requests/s, p50, p99).
async fn ceiling_runs(options: &Options) -> Vec<(u16, f64, f64, f64)> {
    let server = ceiling::Ceiling::start();
    let most = options.connections.iter().copied().max().unwrap_or(16) as usize;
    let target =
        Target { http: client(most), url: format!("http://{}/v1/messages", server.addr), token: "ceiling".into() };
    load::closed_loop(&target, 16, Duration::from_secs(1)).await;
    let mut runs = Vec::new();
    for &connections in &options.connections {
        let mut outcome = load::closed_loop(&target, connections.into(), Duration::from_secs(options.seconds)).await;
        let row = (connections, outcome.rate(), outcome.quantile_ms(0.5), outcome.quantile_ms(0.99));
        println!(
            "ceiling, {connections} connections: {:.0} requests/s, p50 {:.1} ms, p99 {:.1} ms",
            row.1, row.2, row.3
        );
        runs.push(row);
    }
    runs
}

fn tables(runs: &[EngineRun], ceiling: &[(u16, f64, f64, f64)]) -> String {
    let mut out = String::from(
        "| database | load | accepted/s | delivered/s during | p50 | p99 | p999 | errors | drained after | CPU µs/msg \
         webapp | coreapps | master | sim |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for run in runs {
        for p in &run.phases {
            let _ = writeln!(
                out,
                "| {:?} | {} | {:.0} | {:.0} | {:.1} ms | {:.1} ms | {:.1} ms | {} | {:.1} s | {:.0} | {:.0} | {:.0} | {:.0} |",
                run.engine,
                p.name,
                p.accepted_per_s,
                p.delivered_per_s,
                p.p50,
                p.p99,
                p.p999,
                p.errors,
                p.drain_s,
                p.cpu_us[0],
                p.cpu_us[1],
                p.cpu_us[2],
                p.cpu_us[3]
            );
        }
    }
    out.push_str("\nPeak RSS per node over the run (MiB; for the coreapps, the largest of the three):\n\n| database |");
    for role in ROLES {
        let _ = write!(out, " {} |", role.name());
    }
    out.push_str("\n|---|---|---|---|---|\n");
    for run in runs {
        let _ = write!(out, "| {:?} |", run.engine);
        for mib in &run.peak_rss_mib {
            let _ = write!(out, " {mib:.1} |");
        }
        out.push('\n');
    }
    out.push_str("\nHTTP ceiling (bare axum handler, nothing checked or stored):\n\n| connections | requests/s | p50 | p99 |\n|---|---|---|---|\n");
    for (connections, rate, p50, p99) in ceiling {
        let _ = writeln!(out, "| {connections} | {rate:.0} | {p50:.1} ms | {p99:.1} ms |");
    }
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut options = Options::parse();
    if options.engine.is_empty() {
        options.engine = vec![DbEngine::Sqlite, DbEngine::Postgres, DbEngine::MySql];
    }
    let machine = Machine::probe();
    let mut runs = Vec::new();
    for &engine in &options.engine {
        runs.extend(run_engine(engine, &options).await);
    }
    let ceiling = ceiling_runs(&options).await;
    let table = tables(&runs, &ceiling);
    println!("{table}");
    if options.no_write {
        return;
    }
    let command = command_line("throughput");
    let mut section = Section::new("throughput", "Throughput", "benches/throughput.rs");
    let _ = writeln!(
        section,
        "{}\n\nOn each database a cluster of real processes (1 webapp, 1 master, 3 coreapps, 2 shards, the sim; \
         heartbeat 0.2 s), all on this machine together with the load generator (the bench process, reqwest), \
         which sends text messages to 1,000 recipients. Closed loop: each connection sends its next request when \
         the last one is answered, for {} s. Open loop: requests due at a fixed rate, half the best closed-loop \
         rate, each timed from when it was due. Delivered/s: messages the sim delivered during the load. CPU per \
         message: the role's CPU time from the phase's start until the sim had delivered everything accepted, \
         over the messages accepted. Peak RSS: the kernel's high-water mark (`VmHWM`).\n\n{table}",
        provenance(&command, &machine, "release profile (`cargo bench`)", &[]),
        options.seconds,
    );
    section.write();
}
