//! The callback latency benchmark: a cluster of real processes (1 webapp,
//! 1 master, 3 coreapps, 2 shards, the sim) under a steady send load, with a
//! webhook receiver on this machine; for every status of every message, the
//! time from the sim emitting the receipt to the receiver getting the POST.
//! Both clocks are this machine's wall clock (unix ms). The figures are
//! printed and written into `BENCHMARKS.md`, between the callbacks markers.
//!
//! ```text
//! cargo bench --bench callbacks [-- --rate 200 --seconds 20 --engine sqlite --no-write]
//! ```

#[path = "../tests/harness/mod.rs"]
mod harness;

use bench_report::{command_line, median, percentile, provenance, Machine, Section};
use clap::Parser;
use harness::webhook_receiver::WebhookReceiver;
use harness::{load, start, ClusterSpec};
use serde_json::json;
use shardgate_core::config::DbEngine;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

/// Recipients of the load; the rate is spread over them.
const RECIPIENTS: usize = 10;

/// Command-line options (after `--`).
#[derive(Debug, Parser)]
#[command(
    name = "callbacks",
    override_usage = "cargo bench --bench callbacks [-- OPTIONS]",
    about = "Measures the latency from a status at the upstream to its callback at the webhook"
)]
struct Options {
    /// Messages per second, in total
    #[arg(long, default_value_t = 200.0, value_parser = rate)]
    rate: f64,
    /// Seconds of load
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
    seconds: u64,
    /// Database: sqlite, pgsql or mysql
    #[arg(long, value_name = "E", default_value = "sqlite")]
    engine: DbEngine,
    /// Print the figures only, leave BENCHMARKS.md alone
    #[arg(long)]
    no_write: bool,
    /// Passed by `cargo bench` to every bench binary; ignored
    #[arg(long, hide = true)]
    bench: bool,
}

fn rate(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(r) if (1.0..=5_000.0).contains(&r) => Ok(r),
        _ => Err(format!("a rate between 1 and 5000 messages a second, not {value}")),
    }
}

/// Latency figures of one status, in milliseconds.
struct Figures {
    status: &'static str,
    count: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

fn figures(status: &'static str, mut latencies: Vec<f64>) -> Figures {
    latencies.sort_by(f64::total_cmp);
    Figures {
        status,
        count: latencies.len(),
        p50: median(latencies.clone()).unwrap_or(f64::NAN),
        p90: percentile(&latencies, 0.90).unwrap_or(f64::NAN),
        p99: percentile(&latencies, 0.99).unwrap_or(f64::NAN),
        max: latencies.last().copied().unwrap_or(f64::NAN),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let options = Options::parse();
    let machine = Machine::probe();
    let spec = ClusterSpec { shards: 2, coreapps: 3, masters: 1, ..ClusterSpec::fast(options.engine) };
    let cluster = start(spec).await.expect("the database of the benchmark is reachable");
    let receiver = WebhookReceiver::start().await;
    cluster.patch_settings(json!({"webhooks": {"url": receiver.url}})).await;

    let per_recipient = options.rate / RECIPIENTS as f64;
    let load = load::start(cluster.http.clone(), cluster.api.clone(), cluster.token.clone(), RECIPIENTS, per_recipient);
    tokio::time::sleep(Duration::from_secs(options.seconds)).await;
    let report = load.finish().await;
    let acked = report.acked_ids();
    let accepted_rate = acked.len() as f64 / options.seconds as f64;
    cluster.wait_delivered(&acked, Duration::from_secs(60)).await;
    let wanted = acked.len() * 3;
    receiver
        .wait_until("every status callback", Duration::from_secs(120), |r| {
            r.statuses().iter().collect::<std::collections::HashSet<_>>().len() >= wanted
        })
        .await;

    // The first accepted POST of each (id, status), against the sim's emission time.
    let mut arrived: HashMap<(String, String), i64> = HashMap::new();
    for delivery in receiver.deliveries().into_iter().filter(|d| d.accepted) {
        for status in delivery.body["statuses"].as_array().into_iter().flatten() {
            let key =
                (status["id"].as_str().unwrap_or("").to_string(), status["status"].as_str().unwrap_or("").to_string());
            arrived.entry(key).or_insert(delivery.wall_ms);
        }
    }
    let messages = cluster.sim_get("/sim/messages").await;
    let mut by_status: HashMap<&'static str, Vec<f64>> = HashMap::new();
    for record in messages["messages"].as_array().into_iter().flatten().filter(|m| m["delivered"] == true) {
        let id = record["id"].as_str().unwrap_or("");
        for status in ["sent", "delivered", "read"] {
            let (Some(emitted), Some(at)) =
                (record["status_at_ms"][status].as_i64(), arrived.get(&(id.to_string(), status.to_string())))
            else {
                continue;
            };
            by_status.entry(status).or_default().push((at - emitted) as f64);
        }
    }
    let all: Vec<f64> = by_status.values().flatten().copied().collect();
    let mut rows = vec![figures("all", all)];
    rows.extend(["sent", "delivered", "read"].map(|s| figures(s, by_status.remove(s).unwrap_or_default())));
    let duplicates =
        receiver.statuses().len() - receiver.statuses().iter().collect::<std::collections::HashSet<_>>().len();

    let mut table = String::from("| status | callbacks | median | p90 | p99 | max |\n|---|---|---|---|---|---|\n");
    for f in &rows {
        let _ = writeln!(
            table,
            "| {} | {} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms |",
            f.status, f.count, f.p50, f.p90, f.p99, f.max
        );
    }
    println!("{table}");
    println!(
        "accepted {accepted_rate:.0} messages/s over {} s, {} callbacks, {duplicates} duplicates",
        options.seconds, rows[0].count
    );
    if options.no_write {
        return;
    }
    let command = command_line("callbacks");
    let mut section = Section::new("callbacks", "Callback latency", "benches/callbacks.rs");
    let _ = writeln!(
        section,
        "{}\n\nA cluster of real processes (1 webapp, 1 master, 3 coreapps, 2 shards, the sim; {:?}, heartbeat \
         0.2 s) under a steady load of {:.0} messages/s ({RECIPIENTS} recipients) for {} s, with a webhook receiver \
         on this machine. Latency: from the sim emitting a receipt to the receiver getting its callback (both on \
         this machine's wall clock, millisecond resolution). Target: median under 50 ms at 200 messages/s.\n\n\
         Accepted {accepted_rate:.0} messages/s; {} status callbacks measured, {duplicates} duplicates.\n\n{table}",
        provenance(&command, &machine, "release profile (`cargo bench`)", &[]),
        options.engine,
        options.rate,
        options.seconds,
        rows[0].count,
    );
    section.write();
}
