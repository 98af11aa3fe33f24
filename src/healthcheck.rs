//! `shardgate healthcheck`: a container's probe of its own node (the image's
//! `HEALTHCHECK`, the Kubernetes exec probes). One image serves every role, so
//! the probe first finds which role the container runs, from the command line
//! of its main process (PID 1) unless `--role` names it, and then asks that
//! role's own port, with the settings the node itself reads from the
//! environment:
//!
//! - master or coreapp: the authenticated control status call, which only a
//!   running node loop answers (a paused or wedged process times out);
//! - webapp: any HTTP answer of the REST API (401 included: it proves the
//!   server loop runs without needing a login);
//! - upstream-sim: a TCP accept on its session port.
//!
//! Exit status 0 means healthy, 1 unhealthy, as Docker and Kubernetes expect.

use shardgate_core::control::ControlClient;
use shardgate_core::control_auth::ClusterSecretArgs;
use shardgate_gateway::node_health::rest_api_status_line;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::net::TcpStream;

/// The roles a container can run, as their subcommands are named.
const ROLES: [&str; 4] = ["webapp", "master", "coreapp", "upstream-sim"];

/// Options of `shardgate healthcheck`; the listen addresses are the nodes' own
/// variables, so the probe follows a container whose ports were moved.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthcheckConfig {
    /// The role to probe: webapp, master, coreapp or upstream-sim. Default:
    /// the role of this container's main process (PID 1).
    #[arg(long)]
    role: Option<String>,
    /// How long the node has to answer, in milliseconds.
    #[arg(long, default_value_t = 2_000)]
    timeout_ms: u64,
    /// The webapp's REST API address (as the webapp reads it).
    #[arg(long = "webapp-listen", env = "WEBAPP_LISTEN", default_value = "0.0.0.0:9090")]
    webapp_listen: SocketAddr,
    /// The control API address of a master or coreapp (as they read it).
    #[arg(long = "control-listen", env = "SHARDGATE_CONTROL_LISTEN", default_value = "0.0.0.0:6252")]
    control_listen: SocketAddr,
    /// The simulator's session address (as it reads it).
    #[arg(long = "sim-listen", env = "SIM_LISTEN", default_value = "127.0.0.1:5222")]
    sim_listen: SocketAddr,
    #[command(flatten)]
    secret: ClusterSecretArgs,
}

/// Probes the node; `Ok` with what answered, or why it is unhealthy.
pub async fn run(config: HealthcheckConfig) -> anyhow::Result<()> {
    let role = match &config.role {
        Some(role) => role.clone(),
        None => role_of_main_process()?,
    };
    let timeout = Duration::from_millis(config.timeout_ms);
    match role.as_str() {
        "master" | "coreapp" => {
            let secret = config.secret.require().map_err(anyhow::Error::msg)?;
            let addr = local(config.control_listen).to_string();
            let status = ControlClient::new(&secret).status(&addr, timeout).await?;
            println!("{role} {} healthy: {}", status.node_id, status.gateway_status);
        }
        "webapp" => {
            let answer = tokio::time::timeout(timeout, http_status_line(local(config.webapp_listen)))
                .await
                .map_err(|_| anyhow::anyhow!("the REST API did not answer within {timeout:?}"))??;
            println!("webapp healthy: {answer}");
        }
        "upstream-sim" => {
            tokio::time::timeout(timeout, TcpStream::connect(local(config.sim_listen)))
                .await
                .map_err(|_| anyhow::anyhow!("the simulator did not accept within {timeout:?}"))??;
            println!("upstream-sim healthy");
        }
        other => anyhow::bail!("no probe for role `{other}`: use one of {ROLES:?}"),
    }
    Ok(())
}

/// The role in PID 1's command line (`shardgate coreapp`, also behind an init
/// such as `docker-init -- shardgate coreapp`).
fn role_of_main_process() -> anyhow::Result<String> {
    let cmdline = std::fs::read("/proc/1/cmdline")
        .map_err(|e| anyhow::anyhow!("cannot read /proc/1/cmdline ({e}): name the role with --role"))?;
    cmdline
        .split(|b| *b == 0)
        .filter_map(|arg| std::str::from_utf8(arg).ok())
        .find(|arg| ROLES.contains(arg))
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("PID 1 runs no shardgate role: name the role with --role"))
}

/// The address to call for a listen address: a wildcard listens on loopback too.
fn local(listen: SocketAddr) -> SocketAddr {
    if listen.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
    } else {
        listen
    }
}

/// The status line of the webapp's answer to an unauthenticated health call.
async fn http_status_line(addr: SocketAddr) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    let line = rest_api_status_line(&mut stream).await?;
    anyhow::ensure!(line.starts_with("HTTP/1."), "the REST API answered no HTTP ({line:?})");
    Ok(line)
}
