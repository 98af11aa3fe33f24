//! The seed's docker-compose steps, run for real on a Docker engine: the
//! image built from compose/Dockerfile's runtime stage, the single-server
//! cluster of `compose/multiconnect-compose.yml` with `db.env` unchanged (an
//! override file only names the locally built MariaDB image), and the
//! operator's day: `up -d`, `ps`, send, `kill` the primary coreapp, `logs >
//! debug_output.txt`, a rolling upgrade to a new tag one role at a time,
//! `down`, `up -d` again on the same volumes, `down -v`. Then the
//! production layout: one compose project per "host" (a master, two
//! coreapps, a webapp) from the per-role files, reaching each other and a
//! PostgreSQL "host" through this machine's published ports, with the shared
//! media as an `external: true` volume and, on the webapp, a bind mount.
//!
//! The engine, Compose v1 and debootstrap are installed when missing and the
//! base image made once (tests/deployment/prepare-engine); `SHARDGATE_SKIP_DOCKER=1`
//! skips the test on a machine that cannot run Docker. Alone:
//! `cargo test --test deployment -- --nocapture` (about 4 minutes with the
//! images cached, 6 the first time).

mod deployment_support;
mod harness;

use deployment_support::{
    build_mariadb_image, build_shardgate_image, docker_out, free_port, prepare_engine, repo, shardgate_image,
    ContainerState, ExternalVolume, Project, MARIADB_IMAGE,
};
use harness::load::{self, LoadReport, Outcome, Record};
use harness::sim::SimInspector;
use harness::{wait_for, ADMIN_PASSWORD};
use serde_json::Value;
use shardgate_core::VERSION;
use std::time::Duration;
use tokio::time::Instant;

/// How long a cluster on a fresh database gets to answer its first login.
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a replaced or restarted container gets to be healthy again.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(90);
/// The recipient of the first message, sent before any load.
const HELLO_TO: &str = "15559990000";
/// The services of multiconnect-compose.yml.
const SERVICES: [&str; 8] = ["db", "upstream-sim", "master1", "master2", "coreapp1", "coreapp2", "coreapp3", "webapp"];
/// The rolling upgrade's order: masters (the secondary first), then
/// coreapps, then the webapp. The sim stands in for the network and keeps
/// its record, so it is not upgraded.
const UPGRADE_ORDER: [&str; 6] = ["master2", "master1", "coreapp1", "coreapp2", "coreapp3", "webapp"];

/// The two flows take turns: each alone loads both cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_single_server_compose_flow_runs_end_to_end() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let test_started = Instant::now();
    if !prepare_engine() {
        return;
    }
    let (v1, v2) = (VERSION.to_string(), format!("{VERSION}-2"));
    build_mariadb_image();
    build_shardgate_image(&v1);
    assert_image_agrees(&v1);
    eprintln!("engine and images ready after {:.0} s", test_started.elapsed().as_secs_f64());

    let (web_port, sim_port) = (free_port().to_string(), free_port().to_string());
    let secret = format!("deploy-test-{}", uuid::Uuid::new_v4().simple());
    let compose_dir = repo().join("compose");
    let mut project = Project::new(
        "sgdeploy",
        &[compose_dir.join("multiconnect-compose.yml"), repo().join("tests/deployment/compose.override.yml")],
        &[
            ("WA_API_VERSION", &v1),
            ("EXTERNAL_WEBAPP_PORT", &web_port),
            ("EXTERNAL_SIM_PORT", &sim_port),
            ("SHARDGATE_CLUSTER_SECRET", &secret),
            ("SHARDGATE_TEST_MARIADB_IMAGE", MARIADB_IMAGE),
        ],
    );
    let api = format!("http://127.0.0.1:{web_port}");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("http client");
    let sim = SimInspector::new(http.clone(), format!("http://127.0.0.1:{sim_port}"));

    // --- up -d: the cluster answers ----------------------------------------------
    project.compose(&["up", "-d"]);
    let token = first_login(&http, &api).await;
    let hello = first_message(&http, &api, &token).await;
    eprintln!(
        "FIGURE answering: POST /v1/messages accepted {:.0} s after the test started (engine, images, up -d)",
        test_started.elapsed().as_secs_f64()
    );
    sim.wait_delivered(&hello.acked_ids(), Duration::from_secs(60)).await;
    let states = wait_all_up(&project, &SERVICES).await;
    assert!(states.iter().all(|s| s.image == shardgate_image(&v1) || s.service == "db"), "{states:?}");
    assert_support_reports(&http, &api, &token, &v1).await;
    let media = upload_media(&http, &api, &token).await;

    // --- the primary coreapp crashes, is stopped, is killed: the shard moves ---------
    let sends = load::start(http.clone(), api.clone(), token.clone(), 3, 5.0);
    let (_, settings) =
        harness::api_call(&http, &api, &token, reqwest::Method::GET, "/v1/settings/application", None).await;
    let application = &settings["settings"]["application"];
    eprintln!(
        "settings: heartbeat_interval {} s, unhealthy_interval {} s",
        application["heartbeat_interval"], application["unhealthy_interval"]
    );
    for fault in [Fault::Crash, Fault::Stop, Fault::Kill] {
        let (primary, epoch) = wait_for("a coreapp holding the shard", Duration::from_secs(60), || async {
            shard_holder(&http, &api, &token).await
        })
        .await;
        let faulted_at = Instant::now();
        fault.inflict(&project, &primary);
        let (successor, _) =
            wait_for(&format!("the shard to move after {fault:?}"), Duration::from_secs(120), || async {
                shard_holder(&http, &api, &token).await.filter(|(_, e)| *e > epoch)
            })
            .await;
        eprintln!(
            "FIGURE {fault:?}: {primary} -> {successor}, the shard served again after {:.1} s",
            faulted_at.elapsed().as_secs_f64()
        );
        if let Fault::Stop = fault {
            // A stopped coreapp releases its shards and says it is leaving, so
            // no master waits unhealthy_interval for it, or promotes it again.
            let unhealthy = application["unhealthy_interval"].as_f64().expect("unhealthy_interval");
            assert!(
                faulted_at.elapsed().as_secs_f64() < unhealthy,
                "after `stop` the shard must move before unhealthy_interval ({unhealthy} s)"
            );
        }
        project.compose(&["start", &primary]);
        wait_all_up(&project, &SERVICES).await;
    }
    let kill_report = sends.finish().await;
    let report = LoadReport::merged(&[hello.clone(), kill_report.clone()]);
    sim.wait_delivered(&report.acked_ids(), Duration::from_secs(60)).await;
    sim.assert_exactly_once_in_order(&report).await;
    eprintln!(
        "faults: {} acknowledged, none lost; longest acceptance gap {:.1} s",
        kill_report.acked_ids().len(),
        kill_report.longest_acceptance_gap().as_secs_f64()
    );

    // --- docker-compose logs > debug_output.txt ------------------------------------
    let debug_dir = deployment_support::tempfile_dir("shardgate-debug");
    let debug_output = debug_dir.join("debug_output.txt");
    std::fs::write(&debug_output, project.compose(&["logs", "--no-color"])).expect("debug_output.txt");
    let logs = std::fs::read_to_string(&debug_output).expect("debug_output.txt");
    for service in SERVICES {
        assert!(
            logs.lines().any(|l| l.starts_with(&format!("{service}_"))),
            "debug_output.txt holds no line of {service}"
        );
    }
    assert!(logs.contains("shard"), "the coreapps' logs say what they hold");
    let status = project.compose(&["exec", "-T", "master1", "shardgate", "status"]);
    let healthy_coreapps = status.lines().filter(|l| l.contains("coreapp") && l.ends_with("healthy")).count();
    assert_eq!(healthy_coreapps, 3, "`shardgate status` inside a container sees every coreapp healthy:\n{status}");
    for service in ["master1", "coreapp1", "webapp", "upstream-sim"] {
        let probe = project.compose(&["exec", "-T", service, "shardgate", "healthcheck"]);
        assert!(probe.contains("healthy"), "{service}: `shardgate healthcheck` says {probe:?}");
    }
    std::fs::remove_dir_all(&debug_dir).expect("remove debug dir");

    // --- rolling upgrade to a new tag, one service at a time -----------------------
    build_shardgate_image(&v2);
    assert_image_agrees(&v2);
    project.set_env("WA_API_VERSION", &v2);
    let sends = load::start(http.clone(), api.clone(), token.clone(), 3, 5.0);
    for service in UPGRADE_ORDER {
        project.compose(&["up", "-d", "--no-deps", service]);
        wait_all_up(&project, &[service]).await;
    }
    wait_all_up(&project, &SERVICES).await;
    tokio::time::sleep(Duration::from_secs(1)).await; // sends through the upgraded webapp
    let upgrade_report = sends.finish().await;
    let report = LoadReport::merged(&[hello, kill_report, upgrade_report.clone()]);
    sim.wait_delivered(&report.acked_ids(), Duration::from_secs(60)).await;
    sim.assert_exactly_once_in_order(&report).await;
    eprintln!(
        "FIGURE upgrade: {} acknowledged, none lost; longest gap between acceptances {:.1} s, {} requests without answer",
        upgrade_report.acked_ids().len(),
        upgrade_report.longest_acceptance_gap().as_secs_f64(),
        upgrade_report.unknown_outcomes()
    );
    let states = project.states();
    for state in states.iter().filter(|s| UPGRADE_ORDER.contains(&s.service.as_str())) {
        assert_eq!(state.image, shardgate_image(&v2), "{state:?}");
    }
    assert_support_reports(&http, &api, &token, &v2).await;

    // --- down keeps the volumes; up again finds users, messages and media ----------
    project.compose(&["down"]);
    assert!(project.container_ids().is_empty(), "down removes every container");
    let volumes = project.volumes();
    assert_eq!(volumes.len(), 2, "down keeps the database and media volumes: {volumes:?}");
    project.compose(&["up", "-d"]);
    let token = wait_for("a login with the password set before down", START_TIMEOUT, || async {
        let response =
            http.post(format!("{api}/v1/users/login")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().await.ok()?;
        let body: Value = response.json().await.ok()?;
        body["users"][0]["token"].as_str().map(String::from)
    })
    .await;
    let (status, _) =
        harness::api_call(&http, &api, &token, reqwest::Method::GET, &format!("/v1/media/{}", media.0), None).await;
    assert_eq!(status, 200, "the medium uploaded before down is still served");
    let downloaded = http
        .get(format!("{api}/v1/media/{}", media.0))
        .bearer_auth(&token)
        .send()
        .await
        .expect("download")
        .bytes()
        .await
        .expect("media bytes");
    assert_eq!(downloaded.as_ref(), media.1.as_slice(), "same bytes after down and up");
    wait_for("a message accepted after up", START_TIMEOUT, || async {
        harness::send_text(&http, &api, &token, "15550001000", "after up").await.ok()
    })
    .await;

    // --- down -v removes everything --------------------------------------------------
    project.compose(&["down", "-v"]);
    assert!(project.container_ids().is_empty(), "down -v removes every container");
    assert!(project.volumes().is_empty(), "down -v removes the volumes: {:?}", project.volumes());
    eprintln!("the whole flow took {:.0} s", test_started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_per_role_files_run_one_host_per_role_on_postgresql() {
    let _turn = ONE_AT_A_TIME.lock().await;
    if !prepare_engine() {
        return;
    }
    let tag = VERSION.to_string();
    build_postgres_image();
    build_shardgate_image(&tag);
    // Every "host" reaches the others at this machine's address on Docker's
    // default bridge, through the ports they publish.
    let host = host_address();
    let secret = format!("deploy-test-{}", uuid::Uuid::new_v4().simple());
    let db_password = "deploy-test-password";

    // The shared media: a directory of this machine the nodes' user owns,
    // mounted as an external volume on the master and coreapp hosts and as a
    // bind mount on the webapp host.
    let media_dir = deployment_support::tempfile_dir("shardgate-media");
    run_command("chown", &["10001:10001", media_dir.to_str().unwrap()]);
    let media_volume = format!("sgprod-media-{}", std::process::id());
    let _volume = ExternalVolume::bind(&media_volume, &media_dir);

    let db_port = free_port().to_string();
    let database = Project::new(
        "sgproddb",
        &[repo().join("tests/deployment/database-host.yml")],
        &[("EXTERNAL_DB_PORT", &db_port), ("WA_DB_PASSWORD", db_password)],
    );
    database.compose(&["up", "-d"]);
    let (sim_session_port, sim_port) = (free_port().to_string(), free_port().to_string());
    let upstream = Project::new(
        "sgprodsim",
        &[repo().join("tests/deployment/upstream-host.yml")],
        &[("WA_API_VERSION", &tag), ("EXTERNAL_SIM_SESSION_PORT", &sim_session_port), ("EXTERNAL_SIM_PORT", &sim_port)],
    );
    upstream.compose(&["up", "-d"]);
    wait_all_up(&database, &["db"]).await;

    // db.env for every host: the PostgreSQL variant, pointed at the database host.
    let host_dir = deployment_support::tempfile_dir("shardgate-hosts");
    let db_env = std::fs::read_to_string(repo().join("compose/db.postgres.env"))
        .expect("db.postgres.env")
        .replace("WA_DB_HOSTNAME=db.example.internal", &format!("WA_DB_HOSTNAME={host}"))
        .replace("WA_DB_PORT=5432", &format!("WA_DB_PORT={db_port}"))
        .replace("WA_DB_PASSWORD=testpass", &format!("WA_DB_PASSWORD={db_password}"));
    std::fs::write(host_dir.join("db.env"), db_env).expect("db.env");
    let shared = [
        ("WA_API_VERSION", tag.as_str()),
        ("SHARDGATE_CLUSTER_SECRET", secret.as_str()),
        ("COREAPP_HOSTNAME", host.as_str()),
        ("SHARDGATE_MEDIA_VOLUME", media_volume.as_str()),
    ];
    let role_host = |name: &str, file: &str, overrides: &[&str], ports: &[(String, String)]| {
        let mut files = vec![repo().join("compose").join(file)];
        files.extend(overrides.iter().map(|o| repo().join("tests/deployment").join(o)));
        let mut project = Project::new(name, &files, &shared).in_directory(&host_dir);
        for (key, value) in ports {
            project.set_env(key, value);
        }
        project
    };
    let node_ports = |prefix: &str| -> Vec<(String, String)> {
        (0..4).map(|i| (format!("{prefix}{i}"), free_port().to_string())).collect()
    };
    let master_ports = node_ports("EXTERNAL_MASTER_PORT");
    let master = role_host("sgprodmaster", "multiconnect-master.yml", &["shared-media.override.yml"], &master_ports);
    let upstream_addr = format!("{host}:{sim_session_port}");
    let coreapps: Vec<Project> = (1..=2)
        .map(|n| {
            let mut ports = node_ports("EXTERNAL_COREAPP_PORT");
            ports.push(("SHARDGATE_UPSTREAM".to_string(), upstream_addr.clone()));
            role_host(&format!("sgprodcore{n}x"), "multiconnect-coreapp.yml", &["shared-media.override.yml"], &ports)
        })
        .collect();
    let web_port = free_port().to_string();
    let mut webapp = role_host(
        "sgprodweb",
        "multiconnect-webapp.yml",
        &["bind-media.override.yml"],
        &[("EXTERNAL_WEBAPP_PORT".to_string(), web_port.clone())],
    );
    webapp.set_env("SHARDGATE_MEDIA_DIR", media_dir.to_str().unwrap());
    for project in std::iter::once(&master).chain(&coreapps).chain(std::iter::once(&webapp)) {
        project.compose(&["up", "-d"]);
    }

    let api = format!("http://127.0.0.1:{web_port}");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("http client");
    let sim = SimInspector::new(http.clone(), format!("http://127.0.0.1:{sim_port}"));
    let token = first_login(&http, &api).await;
    let hello = first_message(&http, &api, &token).await;
    for project in std::iter::once(&master).chain(&coreapps).chain(std::iter::once(&webapp)) {
        let service = project.compose(&["config", "--services"]).trim().to_string();
        wait_all_up(project, &[service.as_str()]).await;
    }

    // Every node advertises this machine's address and its own published control port.
    let (_, support) = harness::api_call(&http, &api, &token, reqwest::Method::GET, "/v1/support", None).await;
    let mut addresses: Vec<String> = support["support"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter(|n| n["reachable"] == true)
        .map(|n| n["address"].as_str().unwrap_or_default().to_string())
        .collect();
    addresses.sort();
    let mut expected: Vec<String> = std::iter::once(&master_ports)
        .map(|p| format!("{host}:{}", p[2].1))
        .chain(coreapps.iter().map(|c| format!("{host}:{}", c.env_value("EXTERNAL_COREAPP_PORT2"))))
        .collect();
    expected.sort();
    assert_eq!(addresses, expected, "the nodes advertise COREAPP_HOSTNAME and their EXTERNAL_*_PORT2");

    // The media the webapp stores (bind mount) is what the coreapps see (external volume).
    let (media_id, _) = upload_media(&http, &api, &token).await;
    for coreapp in &coreapps {
        let listing = coreapp.compose(&["exec", "-T", "coreapp", "ls", "-R", "/usr/local/wamedia"]);
        assert!(listing.contains(&media_id), "{}: the shared media holds {media_id}:\n{listing}", coreapp.name);
    }

    // The coreapp host holding the shard goes away; the other one takes over.
    let sends = load::start(http.clone(), api.clone(), token.clone(), 2, 5.0);
    let (holder, epoch) = wait_for("a coreapp holding the shard", Duration::from_secs(60), || async {
        shard_holder(&http, &api, &token).await
    })
    .await;
    let holder_host = coreapps
        .iter()
        .find(|c| holder.ends_with(&format!(":{}", c.env_value("EXTERNAL_COREAPP_PORT2"))))
        .expect("the holder is one of the coreapp hosts");
    let stopped_at = Instant::now();
    holder_host.compose(&["stop", "coreapp"]);
    wait_for("the other coreapp host to hold the shard", Duration::from_secs(90), || async {
        shard_holder(&http, &api, &token).await.filter(|(h, e)| *h != holder && *e > epoch)
    })
    .await;
    eprintln!("FIGURE per-role stop: the shard moved hosts {:.1} s after `stop`", stopped_at.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(1)).await; // sends through the new primary
    let report = LoadReport::merged(&[hello, sends.finish().await]);
    sim.wait_delivered(&report.acked_ids(), Duration::from_secs(60)).await;
    sim.assert_exactly_once_in_order(&report).await;

    drop((webapp, coreapps, master, upstream, database));
    for dir in [&host_dir, &media_dir] {
        std::fs::remove_dir_all(dir).expect("remove the hosts' directories");
    }
}

/// Builds the PostgreSQL image from the base (cached by Docker after the first time).
fn build_postgres_image() {
    deployment_support::build_local_image("tests/deployment/postgres", deployment_support::POSTGRES_IMAGE);
}

/// This machine's address on `docker0`, which every container reaches.
fn host_address() -> String {
    let mut command = std::process::Command::new("ip");
    command.args(["-4", "-o", "addr", "show", "docker0"]);
    let output = String::from_utf8_lossy(&deployment_support::run(command, "ip addr show docker0").stdout).into_owned();
    let cidr = output.split_whitespace().skip_while(|w| *w != "inet").nth(1).expect("docker0 has an IPv4 address");
    cidr.split('/').next().expect("address").to_string()
}

/// Runs a command of this machine, failing the test if it fails.
fn run_command(program: &str, args: &[&str]) {
    let mut command = std::process::Command::new(program);
    command.args(args);
    deployment_support::run(command, program);
}

/// The admin's first login (it sets the password); the token.
async fn first_login(http: &reqwest::Client, api: &str) -> String {
    wait_for("the first login", START_TIMEOUT, || async {
        let response = http
            .post(format!("{api}/v1/users/login"))
            .basic_auth("admin", Some("secret"))
            .json(&serde_json::json!({"new_password": ADMIN_PASSWORD}))
            .send()
            .await
            .ok()?;
        let body: Value = response.json().await.ok()?;
        body["users"][0]["token"].as_str().map(String::from)
    })
    .await
}

/// The first message, sent until the cluster accepts it, as a report the
/// sim checks can count with the loads that follow.
async fn first_message(http: &reqwest::Client, api: &str, token: &str) -> LoadReport {
    let started = Instant::now();
    let body = "hello from compose";
    let id = wait_for("the first accepted message", START_TIMEOUT, || async {
        harness::send_text(http, api, token, HELLO_TO, body).await.ok()
    })
    .await;
    LoadReport {
        records: vec![Record {
            to: HELLO_TO.into(),
            body: body.into(),
            sent_at: Duration::ZERO,
            answered_at: started.elapsed(),
            outcome: Outcome::Acked(id),
        }],
        started: Some(started),
    }
}

/// Waits until every container of `services` is running and healthy; all states.
async fn wait_all_up(project: &Project, services: &[&str]) -> Vec<ContainerState> {
    wait_for(&format!("{services:?} up and healthy"), HEALTHY_TIMEOUT, || async {
        let states = project.states();
        let up = services.iter().all(|service| states.iter().any(|s| s.service == *service && s.is_up()));
        up.then_some(states)
    })
    .await
}

/// How the primary coreapp's container goes away.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Its process dies (`kill -9` from the host); Docker restarts the
    /// container (`restart: always`) and the masters see a new instance.
    Crash,
    /// `docker-compose stop`: SIGTERM, the coreapp releases its shards.
    Stop,
    /// `docker-compose kill`: the container and its address vanish without
    /// a word, as a host that dies; the masters cannot tell that from a
    /// partition and wait `unhealthy_interval`.
    Kill,
}

impl Fault {
    fn inflict(self, project: &Project, service: &str) {
        match self {
            Fault::Crash => {
                let id = project.compose(&["ps", "-q", service]).trim().to_string();
                let pid = docker_out(&["inspect", "--format", "{{.State.Pid}}", &id]).trim().to_string();
                run_command("kill", &["-9", &pid]);
            }
            Fault::Stop => {
                project.compose(&["stop", service]);
            }
            Fault::Kill => {
                project.compose(&["kill", service]);
            }
        }
    }
}

/// The coreapp holding shard 0 (the only one by default) with its session
/// open, and its epoch, per `GET /v1/support`.
async fn shard_holder(http: &reqwest::Client, api: &str, token: &str) -> Option<(String, i64)> {
    let (status, body) = harness::api_call(http, api, token, reqwest::Method::GET, "/v1/support", None).await;
    (status == 200).then_some(())?;
    body["support"]["nodes"].as_array()?.iter().filter(|n| n["reachable"] == true).find_map(|n| {
        let held = n["shards"].as_array()?.iter().find(|h| h["shard"] == 0 && h["session_open"] == true)?;
        Some((n["node_id"].as_str()?.to_string(), held["epoch"].as_i64()?))
    })
}

/// `GET /v1/support` names `tag` as the image of every node and of the
/// webapp, and the binary's version is the one the tag was cut from.
async fn assert_support_reports(http: &reqwest::Client, api: &str, token: &str, tag: &str) {
    wait_for(&format!("every node reporting image {tag}"), HEALTHY_TIMEOUT, || async {
        let (_, body) = harness::api_call(http, api, token, reqwest::Method::GET, "/v1/support", None).await;
        let support = &body["support"];
        let nodes = support["nodes"].as_array()?;
        let current: Vec<&Value> = nodes.iter().filter(|n| n["reachable"] == true).collect();
        let all = current.len() == 5
            && current.iter().all(|n| n["image_version"] == tag && n["version"] == VERSION)
            && support["webapp"]["image_version"] == tag
            && support["webapp"]["version"] == VERSION;
        all.then_some(())
    })
    .await
}

/// The image's version label is its tag, and its binary the version the tag
/// was cut from (`shardgate --version`).
fn assert_image_agrees(tag: &str) {
    let image = shardgate_image(tag);
    let label =
        docker_out(&["inspect", "--format", "{{index .Config.Labels \"org.opencontainers.image.version\"}}", &image]);
    assert_eq!(label.trim(), tag, "{image}: the version label");
    let version = docker_out(&["run", "--rm", &image, "/usr/local/bin/shardgate", "--version"]);
    assert_eq!(version.trim(), format!("shardgate {VERSION}"), "{image}: shardgate --version");
    assert!(tag.starts_with(VERSION), "the tag {tag} is cut from version {VERSION}");
}

/// Uploads a small medium; its id and bytes.
async fn upload_media(http: &reqwest::Client, api: &str, token: &str) -> (String, Vec<u8>) {
    let bytes: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    let response = http
        .post(format!("{api}/v1/media"))
        .bearer_auth(token)
        .header("content-type", "image/png")
        .body(bytes.clone())
        .send()
        .await
        .expect("upload");
    let body: Value = response.json().await.expect("upload json");
    (body["media"][0]["id"].as_str().expect("media id").to_string(), bytes)
}
