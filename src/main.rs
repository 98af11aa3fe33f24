//! `shardgate`: one binary, one subcommand per role.
//!
//! - `webapp`, `master`, `coreapp`: the three node roles of a cluster;
//! - `upstream-sim`: the strict upstream simulator that judges correctness;
//! - `dev`: a whole cluster on this machine, on the embedded SQLite database;
//! - `status`: the cluster as one table, read from the database.

mod dev;
mod status;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Self-hosted high-availability messaging gateway (WhatsApp Business API
/// on-premises multiconnect, re-implemented). Settings come from flags or the
/// official environment variables shown in each subcommand's --help.
#[derive(Parser)]
#[command(name = "shardgate", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the REST API (port 9090) and route calls through the shard map.
    Webapp(shardgate_gateway::WebappConfig),
    /// Compete for the master lease; the primary keeps every shard served.
    Master(shardgate_core::master::MasterConfig),
    /// Hold, when primary for a shard, its one upstream session.
    Coreapp(shardgate_core::coreapp::CoreappConfig),
    /// Run the strict upstream simulator with its JSON inspection API.
    UpstreamSim(shardgate_core::upstream::sim::SimConfig),
    /// Start a whole cluster as separate processes on SQLite: sim, masters, coreapps, webapp.
    Dev(dev::DevConfig),
    /// Print the cluster as one table (or JSON), read from the database.
    Status(status::StatusConfig),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Webapp(c) => shardgate_gateway::run(c).await,
            Command::Master(c) => shardgate_core::master::run(c, std::sync::Arc::new(shardgate_core::policy::IntervalHealth)).await,
            Command::Coreapp(c) => shardgate_core::coreapp::run(c).await,
            Command::UpstreamSim(c) => shardgate_core::upstream::sim::run(c).await,
            Command::Dev(c) => dev::run(c).await,
            Command::Status(c) => status::run(c).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line an operator can act on, naming the setting when it is one.
            eprintln!("shardgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; stdout carries only the readiness line and command output.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHARDGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_subcommand_has_consistent_flags() {
        Cli::command().debug_assert();
    }
}
