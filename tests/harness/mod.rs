//! The cluster harness: a whole Shardgate cluster of real processes (the
//! built `shardgate` binary) on a real database, with the upstream-sim as
//! the judge, plus the tools the failover suites need: a steady send load,
//! a fault-injecting TCP proxy in front of the database, and the checks of
//! invariants I2 and I3 against the sim's inspection API.
//!
//! Clusters run one at a time across all test binaries (a file lock), since
//! two clusters on two cores would starve each other's heartbeats.

#![allow(dead_code)] // each test binary uses its own part of the harness

pub mod checker;
pub mod load;
pub mod master_log;
pub mod nemesis;
pub mod netns;
pub mod proxy;
pub mod sim;
pub mod webhook_receiver;

use serde_json::{json, Value};
use shardgate::supervisor::{start_node, LogSink, NodeProcess, NodeSpec};
use shardgate_core::config::DbEngine;
use shardgate_core::control_auth::{ClusterSecret, SECRET_ENV};
use shardgate_core::store::shard_map::ShardRow;
use shardgate_core::store::Store;
use shardgate_core::testing::TestDatabase;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;

/// The settings every failover test runs with: heartbeat 0.2 s, unhealthy 1 s.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Database engine.
    pub engine: DbEngine,
    /// Shard count.
    pub shards: u32,
    /// Coreapps.
    pub coreapps: usize,
    /// Masters.
    pub masters: usize,
    /// Seconds.
    pub heartbeat_interval: f64,
    /// Seconds.
    pub unhealthy_interval: f64,
    /// Seconds, the sim's keepalive timeout.
    pub session_timeout: f64,
    /// Put a fault-injecting proxy between each node and the database
    /// server (one per node, so that one node can be partitioned from it).
    pub db_proxy: bool,
    /// Run `coreapp-1` in a network namespace of the test's own (see
    /// [`netns`]), started alone first so that it holds every shard.
    pub netns_coreapp: bool,
    /// Extra environment of every node but the sim.
    pub node_env: Vec<(String, String)>,
    /// Nodes whose clocks run at a rate other than real time (`libfaketime`:
    /// monotonic and wall clock, timers included), e.g. `("coreapp-2", 0.8)`.
    pub clock_rates: Vec<(String, f64)>,
}

impl ClusterSpec {
    /// Fast settings on `engine`: 1 shard, 3 coreapps, 2 masters.
    pub fn fast(engine: DbEngine) -> ClusterSpec {
        ClusterSpec {
            engine,
            shards: 1,
            coreapps: 3,
            masters: 2,
            heartbeat_interval: 0.2,
            unhealthy_interval: 1.0,
            session_timeout: 0.3,
            db_proxy: false,
            netns_coreapp: false,
            node_env: Vec::new(),
            clock_rates: Vec::new(),
        }
    }
}

/// A running cluster; dropping it kills every process and drops the database.
pub struct Cluster {
    /// The spec it was started with.
    pub spec: ClusterSpec,
    /// The upstream-sim.
    pub sim: NodeProcess,
    /// Masters, `master-1`...
    pub masters: Vec<NodeProcess>,
    /// Coreapps, `coreapp-1`...
    pub coreapps: Vec<NodeProcess>,
    /// The webapp.
    pub webapp: NodeProcess,
    /// Base URL of the REST API.
    pub api: String,
    /// Base URL of the sim's inspection API.
    pub sim_api: String,
    /// Bearer token of the admin.
    pub token: String,
    /// HTTP client.
    pub http: reqwest::Client,
    /// Direct store access, for assertions on the shard map.
    pub store: Store,
    /// The proxy in front of the database of each node that has one: every
    /// node when [`ClusterSpec::db_proxy`], and the namespaced coreapp on a
    /// server engine (its only way to the server on the host's loopback).
    pub db_proxies: Vec<(String, proxy::FaultProxy)>,
    /// The namespace of `coreapp-1`, when asked for; dropped after the nodes.
    pub netns: Option<netns::NetNs>,
    /// Logs of every node.
    pub dir: PathBuf,
    /// The control-plane secret every node of this cluster was given.
    pub cluster_secret: String,
    /// Flags that point a node at the cluster's database directly.
    db_args: Vec<String>,
    /// The flags of each node that reaches the database through its proxy.
    proxied_db_args: HashMap<String, Vec<String>>,
    db: TestDatabase,
    _lock: ClusterLock,
}

/// Serializes clusters across test processes.
pub struct ClusterLock(std::fs::File);

impl ClusterLock {
    pub async fn acquire() -> ClusterLock {
        let path = std::env::temp_dir().join("shardgate-cluster-tests.lock");
        tokio::task::spawn_blocking(move || {
            let file =
                std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).expect("lock file");
            // SAFETY: flock on a descriptor we own; released when the file closes.
            let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX) };
            assert_eq!(rc, 0, "flock failed");
            ClusterLock(file)
        })
        .await
        .expect("lock task")
    }
}

/// Returns `None` when the database server tests are skipped.
pub async fn start(spec: ClusterSpec) -> Option<Cluster> {
    let lock = ClusterLock::acquire().await;
    let db = TestDatabase::create(spec.engine).await?;
    let dir = std::env::temp_dir().join(format!("shardgate-cluster-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("cluster dir");
    let netns = spec.netns_coreapp.then(netns::NetNs::create);
    let db_args = db.cli_args();
    let mut db_proxies = Vec::new();
    let mut proxied_db_args = HashMap::new();
    let node_names = (1..=spec.masters)
        .map(|i| format!("master-{i}"))
        .chain((1..=spec.coreapps).map(|i| format!("coreapp-{i}")))
        .chain(std::iter::once("webapp-1".to_string()));
    for name in node_names {
        let namespaced = netns.is_some() && name == netns::NETNS_COREAPP;
        if !(spec.db_proxy || namespaced && spec.engine != DbEngine::Sqlite) {
            continue;
        }
        let server_port = match spec.engine {
            DbEngine::Postgres => 5432,
            DbEngine::MySql => 3306,
            DbEngine::Sqlite => panic!("SQLite has no server to proxy"),
        };
        let ip = match &netns {
            Some(ns) if namespaced => std::net::IpAddr::V4(ns.host_ip),
            _ => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        };
        let proxy = proxy::FaultProxy::start(ip, format!("127.0.0.1:{server_port}")).await;
        proxied_db_args.insert(name.clone(), db_args_via(&db_args, proxy.addr()));
        db_proxies.push((name, proxy));
    }
    let db_args_of = |name: &str| proxied_db_args.get(name).cloned().unwrap_or_else(|| db_args.clone());
    // The harness itself reads the database directly, never through the proxy.
    let store = Store::connect(&db.config).await.expect("harness store");
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_shardgate"));
    let cluster_secret = ClusterSecret::generate().expose().to_string();
    let spec_ref = &spec;
    let node = |name: &str, args: Vec<String>| {
        let spec = NodeSpec { name: name.to_string(), args, env: node_env(&cluster_secret, &dir) };
        let sink = LogSink { file: dir.join(format!("{name}.log")), echo: false };
        let (exe, spec) = netns::place(&exe, spec, spec_ref, netns.as_ref());
        async move { start_node(&exe, &spec, &sink, Duration::from_secs(60)).await.expect("node starts") }
    };
    let s = |v: &str| v.to_string();
    let sim = node(
        "upstream-sim",
        vec![
            s("upstream-sim"),
            s("--listen"),
            netns::sim_listen(netns.as_ref()),
            s("--http-listen"),
            s("127.0.0.1:0"),
            s("--session-timeout"),
            spec.session_timeout.to_string(),
            s("--receipt-delay-ms"),
            s("20"),
        ],
    )
    .await;
    let mut masters = Vec::new();
    for i in 1..=spec.masters {
        let mut args =
            vec![s("master"), s("--node-id"), format!("master-{i}"), s("--control-listen"), s("127.0.0.1:0")];
        args.extend(db_args_of(&format!("master-{i}")));
        args.extend([
            s("--shards"),
            spec.shards.to_string(),
            s("--heartbeat-interval"),
            spec.heartbeat_interval.to_string(),
            s("--unhealthy-interval"),
            spec.unhealthy_interval.to_string(),
            s("--upstream-session-timeout"),
            spec.session_timeout.to_string(),
        ]);
        masters.push(node(&format!("master-{i}"), args).await);
    }
    let mut coreapps = Vec::new();
    for i in 1..=spec.coreapps {
        let name = format!("coreapp-{i}");
        let control = netns::control_listen(&name, netns.as_ref());
        let mut args = vec![s("coreapp"), s("--node-id"), name.clone(), s("--control-listen"), control];
        args.extend(db_args_of(&name));
        args.extend([
            s("--upstream"),
            sim.ready_str("session_addr"),
            s("--upstream-session-timeout"),
            spec.session_timeout.to_string(),
        ]);
        coreapps.push(node(&name, args).await);
        if netns.is_some() && name == netns::NETNS_COREAPP {
            netns::wait_netns_coreapp_primary(&store, spec.shards).await;
        }
    }
    let mut args = vec![s("webapp"), s("--node-id"), s("webapp-1"), s("--listen"), s("127.0.0.1:0")];
    args.extend(db_args_of("webapp-1"));
    let webapp = node("webapp-1", args).await;
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().expect("client");
    let api = format!("http://{}", webapp.ready_str("api_addr"));
    let sim_api = format!("http://{}", sim.ready_str("http_addr"));
    let token = login(&http, &api).await;
    let cluster = Cluster {
        spec,
        sim,
        masters,
        coreapps,
        webapp,
        api,
        sim_api,
        token,
        http,
        store,
        db_proxies,
        netns,
        dir,
        cluster_secret,
        db_args,
        proxied_db_args,
        db,
        _lock: lock,
    };
    cluster.wait_all_shards_served(Duration::from_secs(30)).await;
    Some(cluster)
}

/// `db_args` with the database server at `addr` instead.
fn db_args_via(db_args: &[String], addr: std::net::SocketAddr) -> Vec<String> {
    let mut args = Vec::new();
    let mut flags = db_args.iter();
    while let Some(flag) = flags.next() {
        let value = flags.next().expect("every database flag has a value");
        if flag != "--db-hostname" && flag != "--db-port" {
            args.extend([flag.clone(), value.clone()]);
        }
    }
    args.extend(["--db-hostname".to_string(), addr.ip().to_string(), "--db-port".to_string(), addr.port().to_string()]);
    args
}

/// Where Debian's `libfaketime` package puts the library (the thread-safe build).
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// The environment that makes a node's clocks run at `rate` × real time from
/// its start: every clock it reads (monotonic included) and every timer it
/// sets, as a drifting oscillator would. Panics when libfaketime is missing
/// (`.ci/run` installs it: Debian package `faketime`).
pub fn clock_env(rate: f64) -> Vec<(String, String)> {
    assert!(Path::new(LIBFAKETIME).exists(), "{LIBFAKETIME} is missing: apt-get install faketime");
    vec![("LD_PRELOAD".to_string(), LIBFAKETIME.to_string()), ("FAKETIME".to_string(), format!("+0 x{rate}"))]
}

/// The environment that gives a node the cluster's control-plane secret.
pub fn secret_env(secret: &str) -> Vec<(String, String)> {
    vec![(SECRET_ENV.to_string(), secret.to_string())]
}

/// The environment of every node of a cluster in `dir`: its secret, and the
/// media directory all of them share (as NFS would in production).
pub fn node_env(secret: &str, dir: &Path) -> Vec<(String, String)> {
    let mut env = secret_env(secret);
    env.push(("WA_MEDIA_DIR".to_string(), dir.join("media").display().to_string()));
    env
}

/// Sets the admin password on first login and returns a bearer token.
/// The password the first login gives the admin.
pub const ADMIN_PASSWORD: &str = "Sh4rdgate!pass";

/// The admin's first login, which sets its password to [`ADMIN_PASSWORD`]; the token.
pub async fn login(http: &reqwest::Client, api: &str) -> String {
    let response = http
        .post(format!("{api}/v1/users/login"))
        .basic_auth("admin", Some("secret"))
        .json(&json!({"new_password": ADMIN_PASSWORD}))
        .send()
        .await
        .expect("login");
    assert!(response.status().is_success(), "first login: {}", response.text().await.unwrap_or_default());
    let body: Value = response.json().await.expect("login json");
    body["users"][0]["token"].as_str().expect("token").to_string()
}

/// Polls `check` every 20 ms until it yields a value; `None` once `timeout` passed.
pub async fn poll_until<T, F, Fut>(timeout: Duration, check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    poll_every(timeout, Duration::from_millis(20), check).await
}

/// Polls `check` every `every` until it yields a value; `None` once `timeout` passed.
pub async fn poll_every<T, F, Fut>(timeout: Duration, every: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// Like [`poll_until`], but a timeout fails the test naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    match poll_until(timeout, check).await {
        Some(value) => value,
        None => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

impl Cluster {
    /// Starts one more webapp on the cluster's database and returns it with its API URL.
    pub async fn start_webapp(&self, name: &str) -> (NodeProcess, String) {
        self.start_webapp_with(name, &[]).await
    }

    /// [`Cluster::start_webapp`] with extra flags. It reaches the database
    /// directly, never through a proxy.
    pub async fn start_webapp_with(&self, name: &str, extra: &[String]) -> (NodeProcess, String) {
        let mut args =
            vec!["webapp".to_string(), "--node-id".into(), name.into(), "--listen".into(), "127.0.0.1:0".into()];
        args.extend(self.db_args.clone());
        args.extend_from_slice(extra);
        let spec = NodeSpec { name: name.to_string(), args, env: node_env(&self.cluster_secret, &self.dir) };
        let sink = LogSink { file: self.dir.join(format!("{name}.log")), echo: false };
        let exe = PathBuf::from(env!("CARGO_BIN_EXE_shardgate"));
        let node = start_node(&exe, &spec, &sink, Duration::from_secs(60)).await.expect("webapp starts");
        let api = format!("http://{}", node.ready_str("api_addr"));
        (node, api)
    }

    /// Starts one more coreapp on the cluster's database whose control-plane
    /// secret is `secret` (the cluster's, or a wrong one).
    pub async fn start_coreapp_with_secret(&self, name: &str, secret: &str) -> NodeProcess {
        let mut args = vec![
            "coreapp".to_string(),
            "--node-id".into(),
            name.into(),
            "--control-listen".into(),
            "127.0.0.1:0".into(),
        ];
        args.extend(self.db_args.clone());
        args.extend(["--upstream".to_string(), self.sim.ready_str("session_addr")]);
        let spec = NodeSpec { name: name.to_string(), args, env: node_env(secret, &self.dir) };
        let exe = PathBuf::from(env!("CARGO_BIN_EXE_shardgate"));
        let (exe, spec) = netns::place(&exe, spec, &self.spec, None);
        let sink = LogSink { file: self.dir.join(format!("{name}.log")), echo: false };
        start_node(&exe, &spec, &sink, Duration::from_secs(60)).await.expect("coreapp starts")
    }

    /// The coreapp process named `node_id`.
    pub fn coreapp(&mut self, node_id: &str) -> &mut NodeProcess {
        self.coreapps.iter_mut().find(|c| c.name == node_id).unwrap_or_else(|| panic!("no coreapp {node_id}"))
    }

    /// The shard map row of `shard`.
    pub async fn shard(&self, shard: u32) -> ShardRow {
        let map = self.store.shard_map().await.expect("shard map");
        map.rows.into_iter().find(|r| r.shard == shard).expect("shard row")
    }

    /// Waits until every shard has a claimed, live lease and an open session at the sim.
    pub async fn wait_all_shards_served(&self, timeout: Duration) -> Vec<ShardRow> {
        let shards = self.spec.shards as usize;
        wait_for("every shard to have a primary with an open session", timeout, || async {
            let map = self.store.shard_map().await.ok()?;
            let served = map.rows.len() == shards && map.rows.iter().all(|r| r.lease_live(map.now));
            let open = self.sim_stats().await["sessions_open"].as_u64() == Some(shards as u64);
            (served && open).then_some(map.rows)
        })
        .await
    }

    /// Waits until `shard` is claimed under an epoch above `old_epoch`.
    pub async fn wait_new_primary(&self, shard: u32, old_epoch: i64, timeout: Duration) -> ShardRow {
        match self.new_primary_within(shard, old_epoch, timeout).await {
            Some(row) => row,
            None => panic!("no new primary for shard {shard} within {timeout:?}; {}", self.logs_hint()),
        }
    }

    /// The new primary of `shard` (epoch above `old_epoch`) if one claims it within `timeout`.
    pub async fn new_primary_within(&self, shard: u32, old_epoch: i64, timeout: Duration) -> Option<ShardRow> {
        poll_until(timeout, || async {
            let row = self.shard(shard).await;
            let now = self.store.now_ms().await.ok()?;
            (row.epoch > old_epoch && row.lease_live(now)).then_some(row)
        })
        .await
    }

    /// `POST /v1/messages`; the message id, or the HTTP status and body of a refusal.
    pub async fn send_text(&self, to: &str, body: &str) -> Result<String, String> {
        send_text(&self.http, &self.api, &self.token, to, body).await
    }

    /// A JSON request to the REST API as the admin: the status and the JSON
    /// body (`Null` when the body is not JSON).
    pub async fn api_call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        api_call(&self.http, &self.api, &self.token, method, path, body).await
    }

    /// `PATCH /v1/settings/application`, which must succeed; returns once
    /// every node that answers its control API runs the new settings.
    pub async fn patch_settings(&self, patch: Value) -> Value {
        let (status, body) = self.api_call(reqwest::Method::PATCH, "/v1/settings/application", Some(patch)).await;
        assert_eq!(status, 200, "settings PATCH refused: {body}");
        let version = self.store.settings_version().await.expect("settings version");
        wait_for("every live node to run the new settings", Duration::from_secs(10), || async {
            let versions = self.node_settings_versions().await;
            versions.iter().all(|(_, v)| v.is_none_or(|v| v >= version)).then_some(())
        })
        .await;
        body
    }

    /// The settings version each master and coreapp runs (`None`: no answer).
    pub async fn node_settings_versions(&self) -> Vec<(String, Option<i64>)> {
        let mut versions = Vec::new();
        for node in self.masters.iter().chain(self.coreapps.iter()) {
            let url = format!("http://{}/control/status", node.ready_str("control_addr"));
            let status: Option<Value> = match self.http.get(url).bearer_auth(&self.cluster_secret).send().await {
                Ok(r) => r.json().await.ok(),
                Err(_) => None,
            };
            versions.push((node.name.clone(), status.and_then(|s| s["settings_version"].as_i64())));
        }
        versions
    }

    /// `POST /v1/messages` with any message object; the message id.
    pub async fn send_message(&self, message: Value) -> String {
        let (status, body) = self.api_call(reqwest::Method::POST, "/v1/messages", Some(message.clone())).await;
        assert!(status == 200 || status == 201, "message {message} refused: {status} {body}");
        body["messages"][0]["id"].as_str().unwrap_or_else(|| panic!("no id in {body}")).to_string()
    }

    /// The sim's inspection API, judged as the failover suites judge it.
    pub fn sim_inspector(&self) -> sim::SimInspector {
        sim::SimInspector::new(self.http.clone(), self.sim_api.clone()).with_logs_hint(self.logs_hint())
    }

    /// A POST on the sim's inspection API.
    pub async fn sim_post(&self, path: &str, body: Value) -> Value {
        self.sim_inspector().post(path, body).await
    }

    /// `GET /sim/stats`.
    pub async fn sim_stats(&self) -> Value {
        self.sim_inspector().stats().await
    }

    /// A GET on the sim's inspection API.
    pub async fn sim_get(&self, path: &str) -> Value {
        self.sim_inspector().get(path).await
    }

    /// Waits until every id in `acked` was delivered by the sim.
    pub async fn wait_delivered(&self, acked: &[String], timeout: Duration) {
        self.sim_inspector().wait_delivered(acked, timeout).await
    }

    /// Waits until the sim has delivered `n` more messages than `from`; returns the count.
    pub async fn wait_more_deliveries(&self, from: u64, n: u64) -> u64 {
        self.sim_inspector().wait_more_deliveries(from, n).await
    }

    /// How many times the sim delivered each id.
    pub async fn delivery_counts(&self) -> HashMap<String, u64> {
        self.sim_inspector().delivery_counts().await
    }

    /// See [`sim::SimInspector::assert_exactly_once`].
    pub async fn assert_exactly_once(&self, load: &load::LoadReport) {
        self.sim_inspector().assert_exactly_once(load).await
    }

    /// See [`sim::SimInspector::assert_exactly_once_in_order`].
    pub async fn assert_exactly_once_in_order(&self, load: &load::LoadReport) {
        self.sim_inspector().assert_exactly_once_in_order(load).await
    }

    /// Where the node logs are, for failure messages.
    pub fn logs_hint(&self) -> String {
        format!("node logs in {}", self.dir.display())
    }
}

/// A JSON request to the REST API at `api` with `token`: the status and the
/// JSON body (`Null` when the body is not JSON).
pub async fn api_call(
    http: &reqwest::Client,
    api: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http.request(method, format!("{api}{path}")).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("REST API reachable");
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("REST body");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// `POST /v1/messages` with a given client.
pub async fn send_text(http: &reqwest::Client, api: &str, token: &str, to: &str, body: &str) -> Result<String, String> {
    let response = http
        .post(format!("{api}/v1/messages"))
        .bearer_auth(token)
        .json(&json!({"to": to, "type": "text", "text": {"body": body}}))
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| format!("{status}: unreadable body: {e}"))?;
    if !status.is_success() {
        return Err(format!("{status}: {body}"));
    }
    body["messages"][0]["id"].as_str().map(str::to_string).ok_or_else(|| format!("no id in {body}"))
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Kill every node and give the kernel a moment to close their
        // database connections before the guard drops the database.
        for node in std::iter::once(&mut self.webapp)
            .chain(self.coreapps.iter_mut())
            .chain(self.masters.iter_mut())
            .chain(std::iter::once(&mut self.sim))
        {
            node.kill_now();
        }
        std::thread::sleep(Duration::from_millis(300));
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("cluster logs kept in {}", self.dir.display());
        }
    }
}

/// Reads the last `n` lines of a log, for failure messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// --- nemesis support ---
impl Cluster {
    /// Starts coreapp `name` again after a `kill -9`, with the flags, the
    /// environment and the namespace [`start`] gave it; its log continues.
    /// An error says why it did not start (a finding, not a harness failure).
    pub async fn restart_coreapp(&mut self, name: &str) -> Result<(), String> {
        let s = |v: &str| v.to_string();
        let control = netns::control_listen(name, self.netns.as_ref());
        let mut args = vec![s("coreapp"), s("--node-id"), s(name), s("--control-listen"), control];
        args.extend(self.db_args_of(name));
        args.extend([
            s("--upstream"),
            self.sim.ready_str("session_addr"),
            s("--upstream-session-timeout"),
            self.spec.session_timeout.to_string(),
        ]);
        let node = self.start_named(name, args).await?;
        let slot = self.coreapps.iter().position(|c| c.name == name).unwrap_or_else(|| panic!("no coreapp {name}"));
        self.coreapps[slot] = node;
        Ok(())
    }

    /// Starts master `name` again after a `kill -9`, with the flags [`start`] gave it.
    pub async fn restart_master(&mut self, name: &str) -> Result<(), String> {
        let s = |v: &str| v.to_string();
        let mut args = vec![s("master"), s("--node-id"), s(name), s("--control-listen"), s("127.0.0.1:0")];
        args.extend(self.db_args_of(name));
        args.extend([
            s("--shards"),
            self.spec.shards.to_string(),
            s("--heartbeat-interval"),
            self.spec.heartbeat_interval.to_string(),
            s("--unhealthy-interval"),
            self.spec.unhealthy_interval.to_string(),
            s("--upstream-session-timeout"),
            self.spec.session_timeout.to_string(),
        ]);
        let node = self.start_named(name, args).await?;
        let slot = self.masters.iter().position(|m| m.name == name).unwrap_or_else(|| panic!("no master {name}"));
        self.masters[slot] = node;
        Ok(())
    }

    /// The database flags [`start`] gave node `name`.
    fn db_args_of(&self, name: &str) -> Vec<String> {
        self.proxied_db_args.get(name).cloned().unwrap_or_else(|| self.db_args.clone())
    }

    /// Cuts every node's database off at its proxy ([`ClusterSpec::db_proxy`]).
    pub fn cut_database(&self) {
        assert!(self.spec.db_proxy, "cutting the database off needs db_proxy");
        self.db_proxies.iter().for_each(|(_, proxy)| proxy.cut());
    }

    /// Lets every node reach the database again.
    pub fn restore_database(&self) {
        self.db_proxies.iter().for_each(|(_, proxy)| proxy.restore());
    }

    /// Starts node `name` with `args`, placed as [`start`] places it, appending to its log.
    async fn start_named(&self, name: &str, args: Vec<String>) -> Result<NodeProcess, String> {
        let spec = NodeSpec { name: name.to_string(), args, env: node_env(&self.cluster_secret, &self.dir) };
        let sink = LogSink { file: self.dir.join(format!("{name}.log")), echo: false };
        let exe = PathBuf::from(env!("CARGO_BIN_EXE_shardgate"));
        let (exe, spec) = netns::place(&exe, spec, &self.spec, self.netns.as_ref());
        start_node(&exe, &spec, &sink, Duration::from_secs(60)).await.map_err(|e| format!("{e:#}"))
    }
}
