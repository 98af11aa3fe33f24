//! Floods and hostile requests against real `shardgate` processes (issue 6,
//! items 4, 5 and 7): a login flood keeps the webapp's memory bounded and
//! returns it afterwards; thousands of idle or slowloris connections to the
//! REST port and a coreapp's control port do not delay legitimate requests
//! and are closed by the header timeout; tokens die with a password change
//! and a logout, at once where they happen and within a second on every
//! other webapp; support is for admins; and every error,
//! those hyper and axum make themselves included, has the on-prem body.

mod harness;

use futures::stream::{self, StreamExt};
use harness::{poll_until, start, Cluster, ClusterSpec};
use reqwest::StatusCode;
use serde_json::{json, Value};
use shardgate_core::config::DbEngine;
use shardgate_core::policy::UserRole;
use shardgate_gateway::auth::create_user;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The flood of the issue: 400 wrong logins, 100 at a time.
const FLOOD_LOGINS: usize = 400;
const FLOOD_CONCURRENCY: usize = 100;
/// How long the flood runs before the legitimate requests start.
const FLOOD_HEAD_START: Duration = Duration::from_millis(50);
/// The webapp's resident memory must stay under this during a flood.
const RSS_CEILING_KB: u64 = 256 * 1024;
/// How far above its baseline the webapp's memory may stay after a flood.
const RSS_AFTER_FLOOD_SLACK_KB: u64 = 32 * 1024;
/// Legitimate requests answer within this during every flood.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);
/// Idle connections held to the REST port, and to a coreapp's control port.
const IDLE_REST_CONNECTIONS: usize = 5_000;
const IDLE_CONTROL_CONNECTIONS: usize = 500;
/// Slowloris connections (one header byte a second) to each port.
const SLOW_REST_CONNECTIONS: usize = 50;
const SLOW_CONTROL_CONNECTIONS: usize = 10;
/// The webapp's default header-read timeout.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// A USER-role account the tests create, and its password.
const OPERATOR: &str = "operator";
const OPERATOR_PASSWORD: &str = "0perator!Pass";
/// The loopback address legitimate clients come from; floods come from 127.0.0.1.
const LEGITIMATE_SOURCE: &str = "127.0.0.2";

/// One shard, one coreapp, one master: the least that serves `POST /v1/messages`.
/// Timings are relaxed from the failover suites' (a 3 s lease rather than
/// 1 s): a flood loads both cores, and a lease renewal late under that load
/// would self-fence the coreapp, which is safe but not what is under test.
fn spec() -> ClusterSpec {
    ClusterSpec {
        coreapps: 1,
        masters: 1,
        heartbeat_interval: 0.5,
        unhealthy_interval: 3.0,
        session_timeout: 0.5,
        ..ClusterSpec::fast(DbEngine::Sqlite)
    }
}

/// A client whose connections come from `source`.
fn client_from(source: &str) -> reqwest::Client {
    let source: IpAddr = source.parse().expect("source address");
    reqwest::Client::builder()
        .no_proxy()
        .local_address(source)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// `(VmRSS, VmHWM)` of `pid`, in kB.
fn memory_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Samples the RSS of `pid` every 20 ms until dropped; the highest seen.
struct RssSampler {
    peak_kb: Arc<AtomicU64>,
    running: Arc<AtomicBool>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let peak_kb = Arc::new(AtomicU64::new(memory_kb(pid).0));
        let running = Arc::new(AtomicBool::new(true));
        let (peak, run) = (peak_kb.clone(), running.clone());
        tokio::spawn(async move {
            while run.load(Ordering::Relaxed) {
                peak.fetch_max(memory_kb(pid).0, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        RssSampler { peak_kb, running }
    }

    fn peak_kb(&self) -> u64 {
        self.peak_kb.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
    }
}

/// Raises this process's open-file limit to its hard limit: the tests hold
/// thousands of sockets.
fn raise_own_fd_limit(needed: u64) {
    let limit = shardgate_core::http_server::raise_fd_limit();
    assert!(limit >= needed, "the test needs {needed} open files, the hard limit allows {limit}");
}

/// `FLOOD_LOGINS` wrong logins as `admin`, `FLOOD_CONCURRENCY` at a time:
/// how many got each status (0 for no answer), and when the last answered.
async fn login_flood(api: String) -> (BTreeMap<u16, usize>, Instant) {
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().expect("client");
    let statuses: Vec<u16> = stream::iter(0..FLOOD_LOGINS)
        .map(|i| {
            let (http, api) = (http.clone(), api.clone());
            async move {
                let sent = http.post(format!("{api}/v1/users/login")).basic_auth("admin", Some(format!("Bad{i}!")));
                sent.send().await.map_or(0, |r| r.status().as_u16())
            }
        })
        .buffer_unordered(FLOOD_CONCURRENCY)
        .collect()
        .await;
    let ended = Instant::now();
    let mut counts = BTreeMap::new();
    for status in statuses {
        *counts.entry(status).or_default() += 1;
    }
    (counts, ended)
}

/// A login; its status, body and how long it took.
async fn timed_login(http: &reqwest::Client, api: &str, user: &str, password: &str) -> (StatusCode, Value, Duration) {
    let started = Instant::now();
    let response =
        http.post(format!("{api}/v1/users/login")).basic_auth(user, Some(password)).send().await.expect("login");
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, started.elapsed())
}

/// A text message; its status, body and how long it took.
async fn timed_send(http: &reqwest::Client, api: &str, token: &str) -> (StatusCode, Value, Duration) {
    let started = Instant::now();
    let response = http
        .post(format!("{api}/v1/messages"))
        .bearer_auth(token)
        .json(&json!({"to": "15551230001", "type": "text", "text": {"body": "still here"}}))
        .send()
        .await
        .expect("send");
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, started.elapsed())
}

/// A bearer token for `user`.
async fn token_for(http: &reqwest::Client, api: &str, user: &str, password: &str) -> String {
    let (status, body, _) = timed_login(http, api, user, password).await;
    assert_eq!(status, StatusCode::OK, "login of {user}: {body}");
    body["users"][0]["token"].as_str().expect("token").to_string()
}

/// Asserts the on-prem error body `{"errors":[{"code","title","details"}]}` and returns the code.
async fn onprem_error(response: reqwest::Response) -> u64 {
    let status = response.status();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let body = response.text().await.unwrap_or_default();
    assert!(content_type.starts_with("application/json"), "{status}: content type {content_type:?}, body {body:?}");
    let body: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{status}: {e}: {body}"));
    let error = &body["errors"][0];
    assert_eq!(body["errors"].as_array().map(Vec::len), Some(1), "{status}: {body}");
    assert!(error["title"].as_str().is_some_and(|t| !t.is_empty()), "{status}: {body}");
    assert!(error["details"].as_str().is_some_and(|d| !d.is_empty()), "{status}: {body}");
    error["code"].as_u64().unwrap_or_else(|| panic!("{status}: no code in {body}"))
}

/// The cluster, with the USER-role operator created.
async fn cluster_with_operator() -> Option<Cluster> {
    let cluster = start(spec()).await?;
    create_user(&cluster.store, OPERATOR, OPERATOR_PASSWORD, UserRole::User).await.expect("operator created");
    Some(cluster)
}

/// Waits until the RSS of `pid` is within `slack` of `baseline`; the last value read.
async fn rss_settles(pid: u32, baseline_kb: u64, slack_kb: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (rss, _) = memory_kb(pid);
        if rss <= baseline_kb + slack_kb || Instant::now() >= deadline {
            return rss;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_flood_keeps_webapp_memory_bounded_and_legitimate_requests_fast() {
    let Some(cluster) = cluster_with_operator().await else { return };
    let pid = cluster.webapp.pid;
    let legitimate = client_from(LEGITIMATE_SOURCE);
    // Warm up as a legitimate client would, so the baseline includes one hash.
    token_for(&legitimate, &cluster.api, OPERATOR, OPERATOR_PASSWORD).await;
    let (baseline_kb, _) = memory_kb(pid);

    let sampler = RssSampler::start(pid);
    let flood = tokio::spawn(login_flood(cluster.api.clone()));
    tokio::time::sleep(FLOOD_HEAD_START).await;
    let legitimate_from = Instant::now();
    let ((login_status, login_body, login_took), (send_status, send_body, send_took)) = tokio::join!(
        timed_login(&legitimate, &cluster.api, OPERATOR, OPERATOR_PASSWORD),
        timed_send(&legitimate, &cluster.api, &cluster.token)
    );
    let (statuses, flood_ended) = flood.await.expect("flood");
    let flood_was_running = legitimate_from < flood_ended;
    let peak_kb = sampler.peak_kb();
    drop(sampler);
    let (_, hwm_kb) = memory_kb(pid);
    let after_kb = rss_settles(pid, baseline_kb, RSS_AFTER_FLOOD_SLACK_KB).await;
    eprintln!(
        "login flood {statuses:?}: RSS baseline {baseline_kb} kB, peak {peak_kb} kB (VmHWM {hwm_kb} kB), after \
         {after_kb} kB; legitimate login {login_took:?}, send {send_took:?}; flood ended {:?} after they started",
        flood_ended.saturating_duration_since(legitimate_from)
    );

    assert!(flood_was_running, "the legitimate requests must be measured during the flood");
    assert_eq!(login_status, StatusCode::OK, "{login_body}");
    assert!(login_took < ANSWER_WITHIN, "legitimate login took {login_took:?} during the flood");
    assert_eq!(send_status, StatusCode::OK, "{send_body}");
    assert!(send_took < ANSWER_WITHIN, "send took {send_took:?} during the flood");
    assert!(statuses.get(&429).copied().unwrap_or(0) > 0, "no 429 in {statuses:?}");
    assert_eq!(statuses.get(&0), None, "every flood request must be answered: {statuses:?}");
    assert_eq!(statuses.values().sum::<usize>(), FLOOD_LOGINS);
    assert!(hwm_kb < RSS_CEILING_KB, "VmHWM {hwm_kb} kB over {RSS_CEILING_KB} kB");
    assert!(after_kb <= baseline_kb + RSS_AFTER_FLOOD_SLACK_KB, "RSS {after_kb} kB after, {baseline_kb} kB before");

    // Refusals are on-prem errors (1015), and the attacker's address stays refused.
    let refused = reqwest::Client::new()
        .post(format!("{}/v1/users/login", cluster.api))
        .basic_auth("admin", Some("Bad-again!1"))
        .send()
        .await
        .expect("login");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(onprem_error(refused).await, 1015);
    let log = std::fs::read_to_string(&cluster.webapp.log_file).unwrap_or_default();
    assert!(
        log.lines().any(|l| l.contains("WARN") && l.contains("failed login") && l.contains("127.0.0.1")),
        "failed logins must be logged with the client address"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashing_queue_alone_bounds_memory_when_login_budgets_are_lifted() {
    let Some(cluster) = cluster_with_operator().await else { return };
    let lifted = ["--login-attempts-per-address", "1000000", "--login-attempts-per-user", "1000000"];
    let (webapp, api) = cluster.start_webapp_with("webapp-lifted", &lifted.map(String::from)).await;
    let legitimate = client_from(LEGITIMATE_SOURCE);
    token_for(&legitimate, &api, OPERATOR, OPERATOR_PASSWORD).await;
    let (baseline_kb, _) = memory_kb(webapp.pid);

    let sampler = RssSampler::start(webapp.pid);
    let flood = tokio::spawn(login_flood(api.clone()));
    tokio::time::sleep(FLOOD_HEAD_START).await;
    let legitimate_from = Instant::now();
    let ((login_status, login_body, login_took), (send_status, send_body, send_took)) = tokio::join!(
        timed_login(&legitimate, &api, OPERATOR, OPERATOR_PASSWORD),
        timed_send(&legitimate, &api, &cluster.token)
    );
    let (statuses, flood_ended) = flood.await.expect("flood");
    let flood_was_running = legitimate_from < flood_ended;
    let peak_kb = sampler.peak_kb();
    drop(sampler);
    let (_, hwm_kb) = memory_kb(webapp.pid);
    let after_kb = rss_settles(webapp.pid, baseline_kb, RSS_AFTER_FLOOD_SLACK_KB).await;
    eprintln!(
        "login flood without budgets {statuses:?}: RSS baseline {baseline_kb} kB, peak {peak_kb} kB (VmHWM \
         {hwm_kb} kB), after {after_kb} kB; legitimate login {login_status} in {login_took:?}, send {send_took:?}; \
         flood ended {:?} after they started",
        flood_ended.saturating_duration_since(legitimate_from)
    );

    assert!(flood_was_running, "the legitimate requests must be measured during the flood");
    // A login may find the hashing queue full: it is then refused at once, never kept waiting.
    assert!(
        login_status == StatusCode::OK || login_status == StatusCode::TOO_MANY_REQUESTS,
        "{login_status}: {login_body}"
    );
    assert!(login_took < ANSWER_WITHIN, "legitimate login took {login_took:?} during the flood");
    assert_eq!(send_status, StatusCode::OK, "{send_body}");
    assert!(send_took < ANSWER_WITHIN, "send took {send_took:?} during the flood");
    assert!(statuses.get(&429).copied().unwrap_or(0) > 0, "the full hashing queue must refuse: {statuses:?}");
    assert!(hwm_kb < RSS_CEILING_KB, "VmHWM {hwm_kb} kB over {RSS_CEILING_KB} kB");
    assert!(after_kb <= baseline_kb + RSS_AFTER_FLOOD_SLACK_KB, "RSS {after_kb} kB after, {baseline_kb} kB before");
}

/// Opens `n` TCP connections to `addr`, 200 at a time, each within 5 s.
async fn open_idle(addr: &str, n: usize) -> Vec<TcpStream> {
    let opened: Vec<TcpStream> = stream::iter(0..n)
        .map(|_| async move {
            tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
                .await
                .expect("connect within 5 s")
                .expect("connect")
        })
        .buffer_unordered(200)
        .collect()
        .await;
    opened
}

/// Open descriptors of `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// How many more descriptors than `before` `pid` holds, once that is at
/// least 90 % of `opened` (its accept loop may lag on a busy machine), or
/// after 5 s.
async fn held_by(pid: u32, before: usize, opened: usize) -> usize {
    let held = || open_fds(pid).saturating_sub(before);
    poll_until(Duration::from_secs(5), || async { (held() >= opened * 9 / 10).then_some(held()) })
        .await
        .unwrap_or_else(held)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_to_rest_and_control_ports_do_not_delay_legitimate_requests() {
    raise_own_fd_limit((IDLE_REST_CONNECTIONS + IDLE_CONTROL_CONNECTIONS + 1_000) as u64);
    let Some(cluster) = start(spec()).await else { return };
    let rest_addr = cluster.webapp.ready_str("api_addr");
    let control_addr = cluster.coreapps[0].ready_str("control_addr");
    let http = client_from(LEGITIMATE_SOURCE);
    let coreapp_pid = cluster.coreapps[0].pid;
    let fds_before = (open_fds(cluster.webapp.pid), open_fds(coreapp_pid));

    let started = Instant::now();
    let rest = open_idle(&rest_addr, IDLE_REST_CONNECTIONS).await;
    let control = open_idle(&control_addr, IDLE_CONTROL_CONNECTIONS).await;
    let opened_in = started.elapsed();
    // Held by the servers themselves, not waiting in their accept queues.
    let held_rest = held_by(cluster.webapp.pid, fds_before.0, IDLE_REST_CONNECTIONS).await;
    let held_control = held_by(coreapp_pid, fds_before.1, IDLE_CONTROL_CONNECTIONS).await;

    let health_started = Instant::now();
    let health = http.get(format!("{}/v1/health", cluster.api)).bearer_auth(&cluster.token).send().await;
    let health_took = health_started.elapsed();
    let health: Value = health.expect("health").json().await.expect("health json");
    let (send_status, send_body, send_took) = timed_send(&http, &cluster.api, &cluster.token).await;
    let still_idle = started.elapsed();
    eprintln!(
        "{} idle REST and {} idle control connections opened in {opened_in:?} ({held_rest} and {held_control} \
         held by the webapp and the coreapp); health {health_took:?}, send {send_took:?}",
        rest.len(),
        control.len()
    );
    drop((rest, control));

    assert!(still_idle < HEADER_TIMEOUT, "the requests must run while the idle connections are open");
    assert!(held_rest >= IDLE_REST_CONNECTIONS * 9 / 10, "the webapp holds {held_rest} of {IDLE_REST_CONNECTIONS}");
    assert!(
        held_control >= IDLE_CONTROL_CONNECTIONS * 9 / 10,
        "the coreapp holds {held_control} of {IDLE_CONTROL_CONNECTIONS}"
    );
    assert!(health_took < ANSWER_WITHIN, "health took {health_took:?}");
    // "unreachable" is what a control port that does not answer gets; the
    // coreapp's own status (its upstream session) is not under test here.
    let coreapp_answered = health["health"]
        .as_object()
        .is_some_and(|nodes| nodes.values().any(|n| n["role"] == "coreapp" && n["gateway_status"] != "unreachable"));
    assert!(coreapp_answered, "the coreapp's control port must answer the health fan-out: {health}");
    assert_eq!(send_status, StatusCode::OK, "{send_body}");
    assert!(send_took < ANSWER_WITHIN, "send took {send_took:?}");
}

/// Sends a request line, then one header byte a second, until the server
/// closes the connection or 20 s pass; how long the server kept it open.
async fn slowloris(addr: String) -> Option<Duration> {
    let mut stream = TcpStream::connect(&addr).await.ok()?;
    let started = Instant::now();
    stream.write_all(b"GET /v1/health HTTP/1.1\r\nhost: x\r\nx-slow: ").await.ok()?;
    let mut buf = [0u8; 256];
    for _ in 0..20 {
        if stream.write_all(b"a").await.is_err() {
            return Some(started.elapsed());
        }
        // A second without an answer is the pace: one byte a second.
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
            return Some(started.elapsed());
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_by_the_header_timeout() {
    let Some(cluster) = start(spec()).await else { return };
    let rest_addr = cluster.webapp.ready_str("api_addr");
    let control_addr = cluster.coreapps[0].ready_str("control_addr");
    let targets = std::iter::repeat_n(rest_addr, SLOW_REST_CONNECTIONS)
        .chain(std::iter::repeat_n(control_addr, SLOW_CONTROL_CONNECTIONS));
    let slow: Vec<_> = targets.map(|addr| tokio::spawn(slowloris(addr))).collect();

    tokio::time::sleep(Duration::from_secs(3)).await;
    let http = client_from(LEGITIMATE_SOURCE);
    let (send_status, send_body, send_took) = timed_send(&http, &cluster.api, &cluster.token).await;
    let mut kept_open = Vec::new();
    for task in slow {
        kept_open.push(task.await.expect("slowloris task"));
    }
    let longest = kept_open.iter().flatten().max().copied();
    eprintln!("slowloris: send {send_took:?} meanwhile; connections closed after at most {longest:?}");

    assert_eq!(send_status, StatusCode::OK, "{send_body}");
    assert!(send_took < ANSWER_WITHIN, "send took {send_took:?} among slowloris connections");
    let never_closed = kept_open.iter().filter(|k| k.is_none()).count();
    assert_eq!(never_closed, 0, "{never_closed} slowloris connections outlived 20 s");
    for kept in kept_open.into_iter().flatten() {
        assert!(kept >= HEADER_TIMEOUT - Duration::from_secs(1), "closed after {kept:?}, before the timeout");
        assert!(kept < HEADER_TIMEOUT + Duration::from_secs(3), "kept open {kept:?}, past the header timeout");
    }
}

/// How the webapp at `api` takes `token`: the status of `GET /v1/health` with it.
async fn token_status(http: &reqwest::Client, api: &str, token: &str) -> StatusCode {
    http.get(format!("{api}/v1/health")).bearer_auth(token).send().await.expect("health").status()
}

/// Waits until the webapp at `api` refuses `token`, which it must within the
/// token cache's lifetime of a second (plus a margin for a busy machine).
async fn assert_revoked_within_a_second(http: &reqwest::Client, api: &str, token: &str) {
    let started = Instant::now();
    while token_status(http, api, token).await != StatusCode::UNAUTHORIZED {
        assert!(started.elapsed() < Duration::from_millis(1500), "{api} still takes a revoked token after 1.5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change_and_logout_revoke_tokens_on_every_webapp() {
    let Some(cluster) = cluster_with_operator().await else { return };
    let (_second, second_api) = cluster.start_webapp("webapp-2").await;
    let http = client_from(LEGITIMATE_SOURCE);
    let apis = [cluster.api.as_str(), second_api.as_str()];

    let first = token_for(&http, &cluster.api, OPERATOR, OPERATOR_PASSWORD).await;
    let second = token_for(&http, &second_api, OPERATOR, OPERATOR_PASSWORD).await;
    for api in apis {
        assert_eq!(token_status(&http, api, &first).await, StatusCode::OK);
    }
    let changed = http
        .post(format!("{}/v1/users/login", cluster.api))
        .basic_auth(OPERATOR, Some(OPERATOR_PASSWORD))
        .json(&json!({"new_password": "N3w!operator"}))
        .send()
        .await
        .expect("password change");
    assert_eq!(changed.status(), StatusCode::OK);
    let current: Value = changed.json().await.expect("login json");
    let current = current["users"][0]["token"].as_str().expect("token").to_string();
    // The webapp that revoked refuses at once; the other one within the
    // token cache's second (both have the old tokens cached by now).
    for old in [&first, &second] {
        let response = http.get(format!("{}/v1/health", cluster.api)).bearer_auth(old).send().await.expect("health");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "a token from before the change, where it changed");
        assert_eq!(onprem_error(response).await, 1005);
        assert_revoked_within_a_second(&http, &second_api, old).await;
    }
    for api in apis {
        assert_eq!(token_status(&http, api, &current).await, StatusCode::OK, "the token of the change on {api}");
    }

    let other = token_for(&http, &cluster.api, OPERATOR, "N3w!operator").await;
    let logout = http.post(format!("{second_api}/v1/users/logout")).bearer_auth(&current).send().await.expect("logout");
    assert_eq!(logout.status(), StatusCode::OK);
    let body: Value = logout.json().await.expect("logout json");
    assert_eq!(body["meta"]["api_status"], "stable", "{body}");
    assert_eq!(token_status(&http, &second_api, &current).await, StatusCode::UNAUTHORIZED, "where it logged out");
    assert_revoked_within_a_second(&http, &cluster.api, &current).await;
    for api in apis {
        assert_eq!(token_status(&http, api, &other).await, StatusCode::OK, "logout revokes only its own token");
    }
    let again =
        http.post(format!("{}/v1/users/logout", cluster.api)).bearer_auth(&current).send().await.expect("logout");
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(onprem_error(again).await, 1005);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_is_admin_only_and_every_error_has_the_onprem_body() {
    let Some(cluster) = cluster_with_operator().await else { return };
    let http = client_from(LEGITIMATE_SOURCE);
    let api = cluster.api.as_str();
    let operator = token_for(&http, api, OPERATOR, OPERATOR_PASSWORD).await;

    let support = http.get(format!("{api}/v1/support")).bearer_auth(&operator).send().await.expect("support");
    assert_eq!(support.status(), StatusCode::FORBIDDEN);
    assert_eq!(onprem_error(support).await, 1005);
    let support = http.get(format!("{api}/v1/support")).bearer_auth(&cluster.token).send().await.expect("support");
    assert_eq!(support.status(), StatusCode::OK, "admins keep /v1/support");

    let admin = &cluster.token;
    let cases = [
        (StatusCode::NOT_FOUND, http.get(format!("{api}/v1/no-such-endpoint")).bearer_auth(admin)),
        (StatusCode::NOT_FOUND, http.get(format!("{api}/")).bearer_auth(admin)),
        (StatusCode::METHOD_NOT_ALLOWED, http.put(format!("{api}/v1/users/login"))),
        (StatusCode::METHOD_NOT_ALLOWED, http.delete(format!("{api}/v1/messages")).bearer_auth(admin)),
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            http.post(format!("{api}/v1/messages")).bearer_auth(admin).header("content-type", "application/json").body(
                format!("{{\"to\":\"1555\",\"type\":\"text\",\"text\":{{\"body\":\"{}\"}}}}", "x".repeat(100_000)),
            ),
        ),
        (StatusCode::URI_TOO_LONG, http.get(format!("{api}/v1/health?pad={}", "a".repeat(10_000))).bearer_auth(admin)),
        (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            http.get(format!("{api}/v1/health")).bearer_auth(admin).header("x-pad", "b".repeat(40_000)),
        ),
        (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            (0..150).fold(http.get(format!("{api}/v1/health")), |r, i| r.header(format!("x-pad-{i}"), "1")),
        ),
    ];
    for (expected, request) in cases {
        let response = request.send().await.expect("answer");
        assert_eq!(response.status(), expected);
        let code = onprem_error(response).await;
        assert!(code == 1006 || code == 1025, "{expected}: code {code}");
    }
}
