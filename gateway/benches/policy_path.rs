//! What running the gateway's policies as plugins costs a request.
//!
//! - `policy/*`: the per-request policy path alone, one `authorize` and one
//!   `route`, through the plugin host's handles (the embedded default
//!   components) against the native `OnPremAuthorizer` and `HashRouter`.
//! - `messages/*`: `POST /v1/messages` end to end through the in-process
//!   router (`tower::ServiceExt::oneshot`, no socket): bearer token lookup,
//!   authorization, validation, routing, the SQLite insert, the response;
//!   one request at a time, and 8 in flight. Each variant gets a fresh
//!   database, so that none pays for a table the other filled.
//! - paired rounds: the same requests again, outside criterion, in rounds
//!   that alternate the two variants (ABBA), so that both see the same
//!   machine; on a shared machine this is the fair comparison, and its
//!   median ratio is the headline figure.
//! - cold policy path: the two policy calls again, each time after the
//!   caches were flushed by writing a 32 MiB buffer, as a request's database
//!   work flushes them; plugin and native alternate call by call.
//!
//! `cargo bench -p shardgate-gateway --bench policy_path` runs it and, on a
//! full run, rewrites the `gateway-policies` section of BENCHMARKS.md.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use bench_report::{criterion_dir, criterion_medians, median, provenance, Machine, Section};
use criterion::Criterion;
use futures::future::join_all;
use shardgate_core::control::ControlClient;
use shardgate_core::control_auth::ClusterSecret;
use shardgate_core::media_dir::MediaDir;
use shardgate_core::policy::{
    AuthRequest, AuthorizationPolicy, HashRouter, OnPremAuthorizer, Principal, RouteRequest, RoutingPolicy, UserRole,
};
use shardgate_core::testing::sqlite_cluster_store;
use shardgate_gateway::auth;
use shardgate_gateway::{router, AppState};
use shardgate_plugins::{HostConfig, PluginHost};
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tower::ServiceExt;

/// Shards of the benchmarked cluster.
const SHARDS: u32 = 8;
/// Requests in flight in the concurrent variants.
const IN_FLIGHT: usize = 8;

/// Paired rounds per concurrency, and the requests each variant sends per round one at a time.
const ROUNDS: usize = 100;
const REQUESTS_PER_ROUND: usize = 48;

/// Cold policy-path samples per variant, and the buffer written before each.
const COLD_CALLS: usize = 1000;
const COLD_FLUSH_BYTES: usize = 32 << 20;

/// Each case: criterion id, requests per iteration (0: not a request), what it measures.
const CASES: [(&str, usize, &str); 6] = [
    ("policy/plugin", 0, "`authorize` + `route` through the host's handles (default components)"),
    ("policy/native", 0, "`OnPremAuthorizer` + `HashRouter`, same arguments"),
    ("messages/plugin", 1, "`POST /v1/messages`, one at a time, policies from the plugin host"),
    ("messages/native", 1, "same, native policies in `AppState`"),
    ("messages-8-in-flight/plugin", IN_FLIGHT, "8 concurrent `POST /v1/messages`, plugin host"),
    ("messages-8-in-flight/native", IN_FLIGHT, "same, native policies"),
];

fn main() {
    let output = criterion_dir();
    let mut c = Criterion::default()
        .output_directory(&output)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    let started = SystemTime::now();
    let machine = Machine::probe();
    let host = PluginHost::new(HostConfig::default()).expect("the plugin host starts");

    policy_path(&mut c, &host);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    for in_flight in [1, IN_FLIGHT] {
        let group = if in_flight == 1 { "messages".to_string() } else { format!("messages-{in_flight}-in-flight") };
        for variant in ["plugin", "native"] {
            let (app, token, _db) = runtime.block_on(webapp(&host, variant == "native"));
            let sent = AtomicU64::new(0);
            c.bench_function(&format!("{group}/{variant}"), |b| {
                b.to_async(&runtime).iter(|| {
                    join_all((0..in_flight).map(|_| post_message(&app, &token, sent.fetch_add(1, Ordering::Relaxed))))
                })
            });
        }
    }

    c.final_summary();
    for info in host.plugins() {
        assert_eq!(info.fallbacks, 0, "a benchmarked call fell back: {info:?}");
    }
    if std::env::args().any(|a| a == "--bench") {
        match criterion_medians(&output, CASES.map(|(id, _, _)| id), started) {
            Some(medians) => {
                let paired = [1, IN_FLIGHT].map(|in_flight| runtime.block_on(paired_rounds(&host, in_flight)));
                for p in &paired {
                    eprintln!(
                        "paired, {} in flight: plugin {:.0} req/s, native {:.0} req/s, median ratio {:.3}, control {:.3}",
                        p.in_flight, p.plugin, p.native, p.ratio, p.control
                    );
                }
                let cold = cold_policy_path(&host);
                eprintln!("cold policy path: plugin {:.0} ns, native {:.0} ns", cold.0, cold.1);
                section(&machine, &medians, &paired, cold).write();
            }
            None => eprintln!("not every case ran (a filter?): BENCHMARKS.md left as it is"),
        }
    }
}

/// Medians (ns) of the policy path, plugin and native, each call made with cold caches.
fn cold_policy_path(host: &PluginHost) -> (f64, f64) {
    let (user, request, message) = policy_arguments();
    let native: Policies = (Arc::new(OnPremAuthorizer), Arc::new(HashRouter));
    let variants = [(host.authorizer(), host.router()), native];
    let mut flush = vec![0u8; COLD_FLUSH_BYTES];
    let mut samples = [Vec::with_capacity(COLD_CALLS), Vec::with_capacity(COLD_CALLS)];
    for n in 0..COLD_CALLS {
        for (variant, (authorizer, router)) in variants.iter().enumerate() {
            for line in flush.chunks_mut(64) {
                line[0] = line[0].wrapping_add(n as u8);
            }
            black_box(&flush);
            let started = std::time::Instant::now();
            black_box((authorizer.authorize(&user, &request), router.route(&message, SHARDS)));
            samples[variant].push(started.elapsed().as_nanos() as f64);
        }
    }
    let [plugin, native] = samples.map(|s| median(s).expect("samples"));
    (plugin, native)
}

/// Requests/s of the two variants measured in alternating rounds, with a control.
struct Paired {
    in_flight: usize,
    /// Median over the rounds, requests/s.
    plugin: f64,
    native: f64,
    /// Median over the rounds of plugin / native.
    ratio: f64,
    /// Median over the rounds of a second native variant / native: what
    /// identical variants differ by, i.e. the noise floor of `ratio`.
    control: f64,
}

/// The six orders of three variants: each goes first, second and last equally often.
const ORDERS: [[usize; 3]; 6] = [[0, 1, 2], [2, 1, 0], [1, 2, 0], [0, 2, 1], [2, 0, 1], [1, 0, 2]];

/// Sends `REQUESTS_PER_ROUND` requests per round (twice that with several in
/// flight), `in_flight` at a time, through the plugin variant, the native one
/// and a second native one (the control), each over its own database,
/// `ROUNDS` times, rotating their order.
async fn paired_rounds(host: &PluginHost, in_flight: usize) -> Paired {
    let variants = [webapp(host, false).await, webapp(host, true).await, webapp(host, true).await];
    let batches = if in_flight == 1 { REQUESTS_PER_ROUND } else { 2 * REQUESTS_PER_ROUND / in_flight };
    let sent = AtomicU64::new(0);
    let round = |variant: usize| {
        let (app, token, _) = &variants[variant];
        let sent = &sent;
        async move {
            let started = std::time::Instant::now();
            for _ in 0..batches {
                join_all((0..in_flight).map(|_| post_message(app, token, sent.fetch_add(1, Ordering::Relaxed)))).await;
            }
            (batches * in_flight) as f64 / started.elapsed().as_secs_f64()
        }
    };
    // One round each to warm up, not counted.
    for variant in 0..3 {
        round(variant).await;
    }
    let mut rates: [Vec<f64>; 3] = Default::default();
    for n in 0..ROUNDS {
        for variant in ORDERS[n % ORDERS.len()] {
            rates[variant].push(round(variant).await);
        }
    }
    let [plugin, native, control] = rates;
    let ratio = plugin.iter().zip(&native).map(|(p, q)| p / q).collect();
    let control = control.iter().zip(&native).map(|(c, q)| c / q).collect();
    let [plugin, native, ratio, control] = [plugin, native, ratio, control].map(|v| median(v).expect("rounds"));
    Paired { in_flight, plugin, native, ratio, control }
}

/// An authorization and a routing policy.
type Policies = (Arc<dyn AuthorizationPolicy>, Arc<dyn RoutingPolicy>);

/// The two policy calls every `POST /v1/messages` makes, as the gateway makes them.
fn policy_path(c: &mut Criterion, host: &PluginHost) {
    let (user, request, message) = policy_arguments();
    let native: Policies = (Arc::new(OnPremAuthorizer), Arc::new(HashRouter));
    for (id, (authorizer, router)) in [("policy/plugin", (host.authorizer(), host.router())), ("policy/native", native)]
    {
        c.bench_function(id, |b| {
            b.iter(|| {
                (authorizer.authorize(black_box(&user), black_box(&request)), router.route(black_box(&message), SHARDS))
            })
        });
    }
}

/// The arguments of the two policy calls of a user's `POST /v1/messages`.
fn policy_arguments() -> (Principal, AuthRequest, RouteRequest) {
    let user = Principal::User { name: "ana".into(), role: UserRole::User };
    let request = AuthRequest {
        method: "POST".into(),
        path: "/v1/messages".into(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("user-agent".into(), "shardgate-client/1.0".into()),
        ],
        client_addr: "10.0.3.17".into(),
    };
    let message = RouteRequest {
        recipient: "5511987654321".into(),
        kind: "text".into(),
        metadata: vec![("recipient-type".into(), "individual".into())],
    };
    (user, request, message)
}

/// A fresh database removed on drop.
struct TempDb(PathBuf);

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The API over a fresh SQLite database, and a user's bearer token.
async fn webapp(host: &PluginHost, native: bool) -> (Router, String, TempDb) {
    let dir = std::env::temp_dir().join(format!("shardgate-policy-bench-{}", uuid::Uuid::new_v4().simple()));
    let store = sqlite_cluster_store(&dir, SHARDS).await.expect("the database opens");
    auth::create_user(&store, "ana", "Str0ng!Passw0rd", UserRole::User).await.unwrap();
    let token = auth::new_token();
    let expires = store.now_ms().await.unwrap() + 86_400_000;
    let password_hash = store.user("ana").await.unwrap().expect("ana exists").password_hash;
    store.insert_token(&auth::token_hash(&token), "ana", &password_hash, expires).await.unwrap();
    let media = MediaDir::create(dir.join("media")).expect("the media directory opens");
    let control = ControlClient::new(&ClusterSecret::generate());
    let mut state = AppState::new(store, media, control, None, "bench", host.clone());
    if native {
        state = state.with_policies(Arc::new(HashRouter), Arc::new(OnPremAuthorizer));
    }
    (router(state), token, TempDb(dir))
}

/// One `POST /v1/messages` of message number `n`; panics unless it is accepted.
async fn post_message(app: &Router, token: &str, n: u64) {
    let body = format!(r#"{{"to":"1555{n:07}","type":"text","text":{{"body":"hello from the bench"}}}}"#);
    let request = Request::post("/v1/messages")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, "shardgate-bench/1.0")
        .body(Body::from(body))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// The `gateway-policies` section of BENCHMARKS.md.
fn section(machine: &Machine, medians: &[f64], paired: &[Paired], cold: (f64, f64)) -> Section {
    let requests_per_s = |case: usize| CASES[case].1 as f64 * 1e9 / medians[case];
    let mut section = Section::new(
        "gateway-policies",
        "Gateway policies: plugins against native rules",
        "gateway/benches/policy_path.rs",
    );
    let _ = writeln!(
        section,
        "The `policy` cases make the two policy calls of every `POST /v1/messages` (a user's `authorize` with two \
         headers, a `route` with one metadata pair over {SHARDS} shards) through the plugin host's handles, i.e. \
         the embedded default components, and through the native rules. The `messages` cases send \
         `POST /v1/messages` through the whole in-process router (`tower::ServiceExt::oneshot`, no socket: \
         bearer token lookup in the database, authorization, validation, routing, the SQLite insert into the \
         outbox, the JSON answer), on a 2-worker tokio runtime, each variant over a fresh SQLite database; the \
         native variant is the same `AppState` with `OnPremAuthorizer` and `HashRouter` put in by \
         `AppState::with_policies`. Median of criterion's samples (ns per iteration; requests/s = requests per \
         iteration / median).\n\n\
         Criterion measures one variant after the other, so on a shared machine load that comes and goes lands \
         on one of them. The paired rounds are the fair comparison: {ROUNDS} rounds in which the plugin variant, \
         the native one and a second native one (the control) each send {REQUESTS_PER_ROUND} requests one at a \
         time, or {} requests 8 in flight, in an order rotated round by round, each variant over its own fresh \
         database. The figures are the medians over the rounds; the loss is 1 - the median of the per-round \
         ratios plugin / native, and the control's is 1 - the median of control / native: two identical variants \
         differ by that much, so a loss of that size is noise.\n",
        2 * REQUESTS_PER_ROUND
    );
    let toolchain = "profile `bench`; plugin host with `HostConfig::default()`";
    let _ = writeln!(
        section,
        "{}\n",
        provenance("cargo bench -p shardgate-gateway --bench policy_path", machine, toolchain, &[])
    );
    let _ = writeln!(section, "| Case | What | Median | Requests/s |\n|---|---|---|---|");
    for (case, ((id, requests, what), median)) in CASES.iter().zip(medians).enumerate() {
        let rate = if *requests == 0 { "-".to_string() } else { format!("{:.0}", requests_per_s(case)) };
        let median = match *median {
            m if m < 10e3 => format!("{m:.0} ns"),
            m if m < 1e6 => format!("{:.1} µs", m / 1e3),
            m => format!("{:.2} ms", m / 1e6),
        };
        let _ = writeln!(section, "| `{id}` | {what} | {median} | {rate} |");
    }
    let _ = writeln!(section);
    let _ = writeln!(
        section,
        "- Policy path, hot caches (criterion): the plugins cost {:.0} ns more per request than the native rules.",
        medians[0] - medians[1]
    );
    let _ = writeln!(
        section,
        "- Policy path, cold caches ({COLD_CALLS} calls per variant, each after writing a {} MiB buffer, \
         alternating): plugins {:.1} µs, native {:.1} µs, i.e. {:.1} µs more per request. This is an upper \
         bound: a request's database work evicts part of what a plugin call touches (wasmtime's entry code, the \
         instance, its memory), the flush evicts all of it; it is why the end-to-end cost per request exceeds the \
         hot figure.",
        COLD_FLUSH_BYTES >> 20,
        cold.0 / 1e3,
        cold.1 / 1e3,
        (cold.0 - cold.1) / 1e3
    );
    let criterion_loss = |plugin: usize, native: usize| 100.0 * (1.0 - requests_per_s(plugin) / requests_per_s(native));
    let _ = writeln!(
        section,
        "- Criterion medians, throughput lost with plugins: {:.1}% one at a time, {:.1}% with 8 in flight \
         (measured apart: see above).",
        criterion_loss(2, 3),
        criterion_loss(4, 5)
    );
    let _ = writeln!(
        section,
        "\n| Paired rounds | Plugins, requests/s | Native, requests/s | Throughput lost | Control: native against \
         native |"
    );
    let _ = writeln!(section, "|---|---|---|---|---|");
    for p in paired {
        let clients = if p.in_flight == 1 { "one at a time".to_string() } else { format!("{} in flight", p.in_flight) };
        let _ = writeln!(
            section,
            "| {clients} | {:.0} | {:.0} | {:.1}% | {:.1}% |",
            p.plugin,
            p.native,
            100.0 * (1.0 - p.ratio),
            100.0 * (1.0 - p.control)
        );
    }
    let met = paired.iter().all(|p| 1.0 - p.ratio < 0.05);
    let met = if met { "**met**" } else { "**NOT met**" };
    let _ = writeln!(section, "\nTarget: throughput loss with plugins under 5% against native (paired rounds): {met}.");
    section
}
