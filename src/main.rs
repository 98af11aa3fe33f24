//! `shardgate`: one binary, one subcommand per role.
//!
//! - `webapp`, `master`, `coreapp`: the three node roles of a cluster;
//! - `upstream-sim`: the strict upstream simulator that judges correctness;
//! - `dev`: a whole cluster on this machine, on the embedded SQLite database;
//! - `status`: the cluster as one table, read from the database;
//! - `webhook-echo`: a tiny webhook receiver that prints each callback;
//! - `healthcheck`: a container's probe of its own node.

mod dev;
mod healthcheck;
mod status;
mod webhook_echo;

use clap::{Parser, Subcommand};
use shardgate_plugins::{HostConfig, PluginHost, PluginKind};
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
    Webapp(WebappArgs),
    /// Compete for the master lease; the primary keeps every shard served.
    Master(MasterArgs),
    /// Hold, when primary for a shard, its one upstream session.
    Coreapp(shardgate_core::coreapp::CoreappConfig),
    /// Run the strict upstream simulator with its JSON inspection API.
    UpstreamSim(shardgate_upstream_sim::SimConfig),
    /// Start a whole cluster as separate processes on SQLite: sim, masters, coreapps, webapp.
    Dev(dev::DevConfig),
    /// Print the cluster as one table (or JSON), read from the database.
    Status(status::StatusConfig),
    /// Receive webhooks: print each callback as one JSON line, answer 200.
    WebhookEcho(webhook_echo::WebhookEchoConfig),
    /// Probe this container's own node (the role of PID 1); exit 0 when healthy.
    Healthcheck(healthcheck::HealthcheckConfig),
}

/// Where a node finds plugins of its own (see `shardgate::plugin_sync`).
#[derive(clap::Args)]
struct PluginArgs {
    /// Directory watched for `router.wasm`, `authorizer.wasm` and `health-policy.wasm`;
    /// a plugin uploaded to the cluster takes precedence.
    #[arg(long, env = "SHARDGATE_PLUGINS_DIR")]
    plugins_dir: Option<std::path::PathBuf>,
}

#[derive(clap::Args)]
struct WebappArgs {
    #[command(flatten)]
    config: shardgate_gateway::WebappConfig,
    #[command(flatten)]
    plugins: PluginArgs,
}

#[derive(clap::Args)]
struct MasterArgs {
    #[command(flatten)]
    config: shardgate_core::master::MasterConfig,
    #[command(flatten)]
    plugins: PluginArgs,
}

/// A plugin host for `kinds`, following the cluster's database and `plugins`.
async fn plugin_host(
    db: &shardgate_core::config::DbConfig,
    kinds: Vec<PluginKind>,
    plugins: PluginArgs,
) -> anyhow::Result<PluginHost> {
    let host = PluginHost::new(HostConfig::default())?;
    let store = shardgate_core::store::Store::connect(db).await?;
    tokio::spawn(shardgate::plugin_sync::follow(store, host.clone(), kinds, plugins.plugins_dir));
    Ok(host)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime starts");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Webapp(a) => {
                let kinds = vec![PluginKind::Router, PluginKind::Authorizer, PluginKind::HealthPolicy];
                let host = plugin_host(&a.config.db, kinds, a.plugins).await?;
                shardgate_gateway::run_with(a.config, host).await
            }
            Command::Master(a) => {
                // Refuse bad settings before anything touches the database.
                a.config.initial_settings()?;
                let host = plugin_host(&a.config.db, vec![PluginKind::HealthPolicy], a.plugins).await?;
                shardgate_core::master::run(a.config, host.health()).await
            }
            Command::Coreapp(c) => shardgate_core::coreapp::run(c).await,
            Command::UpstreamSim(c) => shardgate_upstream_sim::run(c).await,
            Command::Dev(c) => dev::run(c).await,
            Command::Status(c) => status::run(c).await,
            Command::WebhookEcho(c) => webhook_echo::run(c).await,
            Command::Healthcheck(c) => healthcheck::run(c).await,
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
