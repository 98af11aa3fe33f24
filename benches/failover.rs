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
//! cargo bench --bench failover -- --help
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
//!
//! The parts:
//! - this file: the options, the settings, and the loop over the runs;
//! - `failover/run.rs`: one run (the cluster, the load, the fault, the
//!   recovery) and what it measured;
//! - `failover/report.rs`: the figures of each setting, the table, and the
//!   section of `BENCHMARKS.md`, whose prose is the template `failover/section.md`.

#[path = "../tests/harness/mod.rs"]
mod harness;
#[path = "failover/report.rs"]
mod report;
#[path = "failover/run.rs"]
mod run;

use bench_report::Machine;
use clap::Parser;
use harness::ClusterSpec;
use report::{run_line, section, summary_table, Summary};
use run::{run_once, Fault, RunResult, Scenario};
use shardgate_core::config::DbEngine;
use tokio::time::Instant;

/// Upper bound on runs per setting, so a typo cannot make the bench endless.
const MAX_RUNS: usize = 1000;

/// Command-line options (after `--`).
#[derive(Debug, Parser)]
#[command(
    name = "failover",
    override_usage = "cargo bench --bench failover [-- OPTIONS]",
    about = "Kills (or pauses) the primary coreapp under load, on a fresh cluster each run, and reports the gaps"
)]
struct Options {
    /// kill -9 runs with fast settings
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = run_count)]
    runs: usize,
    /// SIGSTOP runs with fast settings
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = run_count)]
    paused_runs: usize,
    /// kill -9 runs with the default settings
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = run_count)]
    default_runs: usize,
    /// SIGSTOP runs with the default settings (about 45 s each)
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = run_count)]
    default_paused_runs: usize,
    /// Database of the kill -9 runs: sqlite, pgsql or mysql
    #[arg(long, value_name = "E", default_value = "sqlite")]
    engine: DbEngine,
    /// Database of the SIGSTOP runs: sqlite, pgsql or mysql (a server by default: on SQLite a writer paused
    /// inside a write stalls every writer, see the README)
    #[arg(long, value_name = "E", default_value = "pgsql")]
    paused_engine: DbEngine,
    /// Print the table only, leave BENCHMARKS.md alone
    #[arg(long)]
    no_write: bool,
    /// Passed by `cargo bench` to every bench binary; ignored
    #[arg(long, hide = true)]
    bench: bool,
}

/// A number of runs, bounded so that a typo cannot make the bench endless.
fn run_count(value: &str) -> Result<usize, String> {
    match value.parse() {
        Ok(n) if n <= MAX_RUNS => Ok(n),
        Ok(_) => Err(format!("at most {MAX_RUNS}")),
        Err(_) => Err(format!("not a count: {value}")),
    }
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
    let options = Options::parse();
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
    if !options.no_write {
        section(&bench_report::command_line("failover"), &machine, &results, &summaries, took).write();
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
