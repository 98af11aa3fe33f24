//! The `shardgate` command line as an operator meets it: start-up errors that
//! name the setting, `--help` that documents the official variables, the
//! schema guard, and `shardgate dev` running and stopping a whole cluster.

mod harness;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The cluster secret of the nodes these tests start.
const SECRET: &str = "cli-tests-cluster-secret";

fn shardgate() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shardgate"));
    command.env_remove("WA_DB_ENGINE").env("SHARDGATE_LOG", "info").env("SHARDGATE_CLUSTER_SECRET", SECRET);
    command
}

/// Runs to completion within 60 s.
fn run(command: &mut Command) -> Output {
    let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("shardgate did not exit within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("shardgate-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn bad_database_engine_stops_the_node_with_one_line_naming_the_setting() {
    let out = run(shardgate().arg("coreapp").env("WA_DB_ENGINE", "ORACLE"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("WA_DB_ENGINE"), "{stderr}");
    assert!(stderr.contains("ORACLE"), "{stderr}");
}

#[test]
fn bad_external_ports_stop_the_node_at_once_naming_the_variable() {
    let dir = temp_dir();
    let out = run(shardgate().arg("coreapp").env("SHARDGATE_DATA_DIR", &dir).env("COREAPP_EXTERNAL_PORTS", "6250,x"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("shardgate:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("COREAPP_EXTERNAL_PORTS"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn invalid_shard_count_is_refused_naming_the_allowed_values() {
    let out = run(shardgate().args(["master", "--shards", "3"]));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1, 2, 4, 8, 16, 32"), "{stderr}");
}

#[test]
fn unsafe_initial_settings_are_refused_with_the_reason() {
    let out = run(shardgate().args([
        "master",
        "--heartbeat-interval",
        "0.2",
        "--unhealthy-interval",
        "1",
        "--upstream-session-timeout",
        "0.9",
    ]));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unhealthy_interval") && stderr.contains("session_timeout"), "{stderr}");
}

#[test]
fn help_documents_every_official_variable_of_each_role() {
    let db = [
        "WA_DB_ENGINE",
        "WA_DB_HOSTNAME",
        "WA_DB_PORT",
        "WA_DB_USERNAME",
        "WA_DB_PASSWORD",
        "WA_DB_NAME_PREFIX",
        "WA_DB_CONNECTION_IDLE_TIMEOUT",
    ];
    let node = ["COREAPP_HOSTNAME", "COREAPP_EXTERNAL_PORTS", "SHARDGATE_CLUSTER_SECRET"];
    let webapp = ["WA_API_KEY", "SHARDGATE_CLUSTER_SECRET"];
    for (role, extra) in [("webapp", &webapp[..]), ("master", &node[..]), ("coreapp", &node[..])] {
        let out = run(shardgate().args([role, "--help"]));
        assert!(out.status.success());
        let help = String::from_utf8_lossy(&out.stdout);
        for name in db.iter().chain(extra) {
            assert!(help.contains(&format!("env: {name}")), "{role} --help does not document {name}:\n{help}");
        }
    }
}

#[test]
fn a_database_newer_than_this_build_is_refused_at_start() {
    let dir = temp_dir();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let config = shardgate_core::config::DbConfig {
            engine: shardgate_core::config::DbEngine::Sqlite,
            hostname: String::new(),
            port: None,
            username: None,
            password: None,
            name_prefix: String::new(),
            idle_timeout_ms: 1000,
            data_dir: dir.clone(),
        };
        let store = shardgate_core::store::Store::connect(&config).await.expect("store");
        store.bootstrap().await.expect("bootstrap");
        store.forge_schema_version_for_tests(999).await.expect("forge");
    });
    let out = run(shardgate().arg("coreapp").env("SHARDGATE_DATA_DIR", &dir));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("version 999") && stderr.contains("newer"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_official_variables_are_ignored_with_one_info_line_each() {
    let dir = temp_dir();
    let spec = shardgate::supervisor::NodeSpec {
        name: "master".into(),
        args: ["master", "--control-listen", "127.0.0.1:0", "--data-dir"]
            .iter()
            .map(|s| s.to_string())
            .chain([dir.display().to_string()])
            .collect(),
        env: vec![
            ("WA_API_VERSION".into(), "v2.41.3".into()),
            ("EXTERNAL_WEBAPP_PORT".into(), "9090".into()),
            ("SHARDGATE_CLUSTER_SECRET".into(), SECRET.into()),
        ],
    };
    let sink = shardgate::supervisor::LogSink { file: dir.join("master.log"), echo: false };
    let mut node = shardgate::supervisor::start_node(
        env!("CARGO_BIN_EXE_shardgate").as_ref(),
        &spec,
        &sink,
        Duration::from_secs(30),
    )
    .await
    .expect("master starts despite unknown official variables");
    node.stop(Duration::from_secs(5)).await.expect("stop");
    let log = std::fs::read_to_string(&sink.file).expect("log");
    for name in ["WA_API_VERSION", "EXTERNAL_WEBAPP_PORT"] {
        let lines = log.lines().filter(|l| l.contains(&format!("{name} is set")) && l.contains("INFO")).count();
        assert_eq!(lines, 1, "{name} must be acknowledged by exactly one info line:\n{log}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_starts_every_node_as_a_process_and_ctrl_c_stops_them_all() {
    let _lock = harness::ClusterLock::acquire().await;
    let dir = temp_dir();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut dev = tokio::process::Command::new(env!("CARGO_BIN_EXE_shardgate"))
        .args(["dev", "--data-dir", &dir.display().to_string(), "--port", &port.to_string(), "--shards", "2"])
        .args(["--heartbeat-interval", "0.2", "--unhealthy-interval", "1", "--sim-session-timeout", "0.3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("dev starts");
    // Drain stdout meanwhile, or a full pipe would stall dev's log forwarding.
    let mut stdout = dev.stdout.take().unwrap();
    let printed = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out).await;
        out
    });
    let cluster_json = dir.join("cluster.json");
    let summary: serde_json::Value = harness::wait_for("cluster.json", Duration::from_secs(60), || async {
        serde_json::from_str(&std::fs::read_to_string(&cluster_json).ok()?).ok()
    })
    .await;
    let pids: Vec<i32> =
        summary["nodes"].as_array().unwrap().iter().map(|n| n["pid"].as_i64().unwrap() as i32).collect();
    let roles: Vec<&str> = summary["nodes"].as_array().unwrap().iter().map(|n| n["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["upstream-sim", "master", "master", "coreapp", "coreapp", "coreapp", "webapp"]);
    assert!(pids.iter().all(|&p| alive(p)), "every node runs as its own process");
    assert_eq!(summary["api"], format!("http://127.0.0.1:{port}"));

    // The API works with the printed login.
    let http = reqwest::Client::new();
    let api = summary["api"].as_str().unwrap();
    let login = http
        .post(format!("{api}/v1/users/login"))
        .basic_auth("admin", Some("secret"))
        .json(&serde_json::json!({"new_password": "Dev-Passw0rd!"}))
        .send()
        .await
        .unwrap();
    assert!(login.status().is_success());

    // `shardgate status` shows every node registered and both shards served.
    harness::wait_for("every node registered and both shards served", Duration::from_secs(30), || async {
        let out = run(shardgate().args(["status", "--json", "--data-dir", &dir.display().to_string()]));
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let live = s["shards"].as_array()?.iter().filter(|r| r["lease_live"] == true).count();
        let nodes = s["nodes"].as_array()?.len();
        (live == 2 && nodes == 6).then_some(())
    })
    .await;

    // Ctrl-C stops every child.
    let pid = dev.id().unwrap() as i32;
    // SAFETY: signalling the child we started.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let exit =
        tokio::time::timeout(Duration::from_secs(30), dev.wait()).await.expect("dev exits after Ctrl-C").unwrap();
    assert!(exit.success(), "dev exits cleanly: {exit:?}");
    for p in pids {
        assert!(!alive(p), "node pid {p} still running after Ctrl-C");
    }
    let out = printed.await.unwrap();
    assert!(
        out.contains("REST API:") && out.contains("admin:secret"),
        "dev prints where the API is and how to log in:\n{out}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Whether a process exists (and is not a zombie awaiting its parent).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.split_whitespace().nth(2).is_none_or(|state| state != "Z"),
        Err(_) => false,
    }
}
