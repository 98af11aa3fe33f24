//! `shardgate dev`: a whole cluster on this machine, each node its own OS
//! process on the embedded SQLite database: the upstream-sim, the masters,
//! the coreapps and one webapp. Ctrl-C stops them all; `kill -9` of any one
//! shows a failover in the logs and in `shardgate status`.

use anyhow::Context;
use serde_json::json;
use shardgate::supervisor::{start_node, LogSink, NodeProcess, NodeSpec};
use shardgate_core::cluster::Settings;
use shardgate_core::control_auth::{ClusterSecret, SECRET_ENV};
use std::path::PathBuf;
use std::time::Duration;

/// Options of `shardgate dev`.
#[derive(Debug, Clone, clap::Args)]
pub struct DevConfig {
    /// Directory for the SQLite database, logs and cluster.json.
    #[arg(long, default_value = "shardgate-dev")]
    pub data_dir: PathBuf,
    /// Port of the REST API.
    #[arg(long, default_value = "9090")]
    pub port: u16,
    /// Shard count: 1, 2, 4, 8, 16 or 32.
    #[arg(long, default_value = "1")]
    pub shards: u32,
    /// Number of coreapps (shards + X survive X failures).
    #[arg(long, default_value = "3")]
    pub coreapps: u32,
    /// Number of masters.
    #[arg(long, default_value = "2")]
    pub masters: u32,
    /// Seconds between heartbeats.
    #[arg(long, default_value = "5")]
    pub heartbeat_interval: f64,
    /// Seconds without an answered heartbeat before a primary coreapp is replaced.
    #[arg(long, default_value = "30")]
    pub unhealthy_interval: f64,
    /// Seconds the simulated upstream keeps a silent session open.
    #[arg(long, default_value = "10")]
    pub sim_session_timeout: f64,
}

/// Starts the cluster and supervises it until Ctrl-C.
pub async fn run(config: DevConfig) -> anyhow::Result<()> {
    let settings = Settings {
        heartbeat_interval: config.heartbeat_interval,
        unhealthy_interval: config.unhealthy_interval,
        upstream_session_timeout: config.sim_session_timeout,
        ..Settings::default()
    };
    settings.timing().map_err(|e| anyhow::anyhow!("invalid setting {e}"))?;
    if config.coreapps == 0 || config.masters == 0 {
        anyhow::bail!("--coreapps and --masters must be at least 1");
    }
    let logs = config.data_dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let exe = std::env::current_exe()?;
    let db_args = |extra: &[String]| -> Vec<String> {
        let mut args =
            vec!["--db-engine".into(), "SQLITE".into(), "--data-dir".into(), config.data_dir.display().to_string()];
        args.extend_from_slice(extra);
        args
    };
    // One fresh secret for this cluster's control plane, handed to every
    // node through its environment (never its arguments, which `ps` shows).
    let secret = ClusterSecret::generate();
    // Every node shares one media directory, as they share NFS in production.
    let media_dir = config.data_dir.join("media");
    let mut nodes: Vec<NodeProcess> = Vec::new();
    let start = |name: String, args: Vec<String>| {
        let sink = LogSink { file: logs.join(format!("{name}.log")), echo: true };
        let exe = exe.clone();
        let env = vec![
            (SECRET_ENV.to_string(), secret.expose().to_string()),
            ("WA_MEDIA_DIR".to_string(), media_dir.display().to_string()),
        ];
        async move { start_node(&exe, &NodeSpec { name, args, env }, &sink, Duration::from_secs(60)).await }
    };
    let outcome: anyhow::Result<()> = async {
        let sim = start(
            "upstream-sim".into(),
            vec![
                "upstream-sim".into(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--http-listen".into(),
                "127.0.0.1:0".into(),
                "--session-timeout".into(),
                config.sim_session_timeout.to_string(),
            ],
        )
        .await?;
        let upstream = sim.ready_str("session_addr");
        nodes.push(sim);
        for i in 1..=config.masters {
            let args = db_args(&[
                "--node-id".into(),
                format!("master-{i}"),
                "--control-listen".into(),
                "127.0.0.1:0".into(),
                "--shards".into(),
                config.shards.to_string(),
                "--heartbeat-interval".into(),
                config.heartbeat_interval.to_string(),
                "--unhealthy-interval".into(),
                config.unhealthy_interval.to_string(),
                "--upstream-session-timeout".into(),
                config.sim_session_timeout.to_string(),
            ]);
            nodes.push(start(format!("master-{i}"), [vec!["master".into()], args].concat()).await?);
        }
        for i in 1..=config.coreapps {
            let args = db_args(&[
                "--node-id".into(),
                format!("coreapp-{i}"),
                "--control-listen".into(),
                "127.0.0.1:0".into(),
                "--upstream".into(),
                upstream.clone(),
                "--upstream-session-timeout".into(),
                config.sim_session_timeout.to_string(),
            ]);
            nodes.push(start(format!("coreapp-{i}"), [vec!["coreapp".into()], args].concat()).await?);
        }
        let args =
            db_args(&["--node-id".into(), "webapp-1".into(), "--listen".into(), format!("127.0.0.1:{}", config.port)]);
        nodes.push(start("webapp-1".into(), [vec!["webapp".into()], args].concat()).await?);
        Ok(())
    }
    .await;
    if let Err(e) = outcome {
        stop_all(&mut nodes).await;
        return Err(e);
    }
    let summary = describe(&config, &nodes);
    let path = config.data_dir.join("cluster.json");
    std::fs::write(&path, serde_json::to_string_pretty(&summary)?)?;
    print_summary(&summary, &path);
    let _ = shardgate_core::node::shutdown_signal().await;
    println!("stopping the cluster...");
    stop_all(&mut nodes).await;
    Ok(())
}

async fn stop_all(nodes: &mut [NodeProcess]) {
    // Webapp first, the sim last, so sessions close before their judge goes.
    for node in nodes.iter_mut().rev() {
        if let Err(e) = node.stop(Duration::from_secs(5)).await {
            eprintln!("could not stop {}: {e}", node.name);
        }
    }
}

fn describe(config: &DevConfig, nodes: &[NodeProcess]) -> serde_json::Value {
    let sim = &nodes[0];
    let webapp = nodes.last().expect("webapp started");
    json!({
        "api": format!("http://{}", webapp.ready_str("api_addr")),
        "login": {"user": "admin", "password": "secret", "first_login_must_set": "new_password"},
        "sim": {
            "sessions": sim.ready_str("session_addr"),
            "inspection": format!("http://{}/sim/stats", sim.ready_str("http_addr")),
        },
        "database": config.data_dir.join("shardgate.db"),
        "nodes": nodes.iter().map(|n| json!({
            "name": n.name,
            "role": n.ready_str("role"),
            "pid": n.pid,
            "address": (["api_addr", "control_addr", "session_addr"].iter().map(|f| n.ready_str(f)).find(|a| !a.is_empty())),
            "log": n.log_file,
        })).collect::<Vec<_>>(),
    })
}

fn print_summary(summary: &serde_json::Value, path: &std::path::Path) {
    println!();
    println!("{:<14} {:<13} {:>8}  ADDRESS", "NODE", "ROLE", "PID");
    for n in summary["nodes"].as_array().into_iter().flatten() {
        println!(
            "{:<14} {:<13} {:>8}  {}",
            n["name"].as_str().unwrap_or(""),
            n["role"].as_str().unwrap_or(""),
            n["pid"],
            n["address"].as_str().unwrap_or("")
        );
    }
    let api = summary["api"].as_str().unwrap_or("");
    println!();
    println!("REST API:        {api}");
    println!("Sim inspection:  {}", summary["sim"]["inspection"].as_str().unwrap_or(""));
    println!("Cluster file:    {}", path.display());
    println!("First login (sets the admin password):");
    println!(
        "  curl -s -u admin:secret -H 'Content-Type: application/json' -d '{{\"new_password\":\"S3cret-pass\"}}' {api}/v1/users/login"
    );
    println!("Cluster table:   cargo run --release -- status --data-dir <data-dir>");
    println!("Ctrl-C stops every node.");
    println!();
}
