//! Per-call cost of each default plugin, through the host path the gateway
//! and the master use (policy handle → running plugin → pooled instance,
//! deadline armed, arguments lowered, answer lifted and checked), against
//! the native rule it reproduces.
//!
//! `cargo bench -p shardgate-plugins --bench policy_calls` runs it and, on a
//! full run, rewrites the `plugins` section of BENCHMARKS.md.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, SystemTime};

use bench_report::{criterion_dir, criterion_medians, provenance, Machine, Section};
use criterion::Criterion;
use shardgate_core::policy::{
    AuthRequest, AuthorizationPolicy, HashRouter, HealthObservations, HealthPolicy, IntervalHealth, OnPremAuthorizer,
    Principal, RouteRequest, RoutingPolicy, UserRole,
};
use shardgate_plugins::{HostConfig, PluginHost, PluginKind};

/// Each case: criterion id, what it measures.
const CASES: [(&str, &str); 11] = [
    ("router/plugin", "router plugin, `route` of a 13-digit recipient, no metadata, 8 shards"),
    ("router/native", "`HashRouter`, same message"),
    ("router/plugin-with-metadata", "router plugin, same recipient, one metadata pair"),
    ("router/native-with-metadata", "`HashRouter`, same message"),
    (
        "router/plugin-contract-0.1",
        "the default router built for contract 0.1.0 (`test-components/router-v0-1.wasm`), same message with metadata",
    ),
    (
        "router/plugin-reading-metadata",
        "`router-country` (example), a pinned recipient, one metadata pair, read through `message.metadata`",
    ),
    ("authorizer/plugin", "authorizer plugin, a user `POST /v1/messages`, one header"),
    ("authorizer/native", "`OnPremAuthorizer`, same request"),
    ("health/plugin", "health-policy plugin, 2 masters, 3 round-trip times"),
    ("health/native", "`IntervalHealth`, same observations"),
    (
        "tracing/span",
        "the `trace_span!` each plugin call enters, with the binary's subscriber at `info` (included above)",
    ),
];

fn main() {
    let output = criterion_dir();
    let mut c = Criterion::default()
        .output_directory(&output)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let started = SystemTime::now();
    let machine = Machine::probe();
    // As the binary runs: a fmt subscriber, `info` and up.
    tracing_subscriber::fmt().with_env_filter("info").init();
    let host = PluginHost::new(HostConfig::default()).expect("the plugin host starts");

    let router = host.router();
    let message = RouteRequest { recipient: "5511987654321".into(), kind: "text".into(), metadata: vec![] };
    let with_metadata =
        RouteRequest { metadata: vec![("recipient-type".into(), "individual".into())], ..message.clone() };
    c.bench_function("router/plugin", |b| b.iter(|| router.route(black_box(&message), black_box(8))));
    c.bench_function("router/native", |b| b.iter(|| HashRouter.route(black_box(&message), black_box(8))));
    c.bench_function("router/plugin-with-metadata", |b| b.iter(|| router.route(black_box(&with_metadata), 8)));
    c.bench_function("router/native-with-metadata", |b| b.iter(|| HashRouter.route(black_box(&with_metadata), 8)));

    // Other routers, each in a host of its own.
    let contract_0_1 = host_running("router-v0-1", "test-components");
    let router_0_1 = contract_0_1.router();
    c.bench_function("router/plugin-contract-0.1", |b| b.iter(|| router_0_1.route(black_box(&with_metadata), 8)));
    let country = host_running("router-country", "components");
    let router_country = country.router();
    let pinned = RouteRequest { recipient: "447700900123".into(), ..with_metadata.clone() };
    c.bench_function("router/plugin-reading-metadata", |b| b.iter(|| router_country.route(black_box(&pinned), 8)));

    let authorizer = host.authorizer();
    let user = Principal::User { name: "ana".into(), role: UserRole::User };
    let request = AuthRequest {
        method: "POST".into(),
        path: "/v1/messages".into(),
        headers: vec![("user-agent".into(), "shardgate-client/1.0".into())],
        client_addr: "10.0.3.17".into(),
    };
    c.bench_function("authorizer/plugin", |b| b.iter(|| authorizer.authorize(black_box(&user), black_box(&request))));
    c.bench_function("authorizer/native", |b| {
        b.iter(|| OnPremAuthorizer.authorize(black_box(&user), black_box(&request)))
    });

    let health = host.health();
    let observations = HealthObservations {
        node: "coreapp-2".into(),
        heartbeats: vec![("master-1".into(), Some(1_200)), ("master-2".into(), Some(4_800))],
        since_db_liveness_ms: 20_000,
        recent_rtt_us: vec![310, 290, 1_150],
        heartbeat_interval_ms: 5_000,
        unhealthy_interval_ms: 30_000,
        db_update_interval_ms: 60_000,
    };
    c.bench_function("health/plugin", |b| b.iter(|| health.judge(black_box(&observations))));
    c.bench_function("health/native", |b| b.iter(|| IntervalHealth.judge(black_box(&observations))));

    c.bench_function("tracing/span", |b| {
        b.iter(|| drop(tracing::trace_span!("plugin_call", kind = black_box("router")).entered()))
    });

    c.final_summary();
    for info in [host.plugins(), contract_0_1.plugins(), country.plugins()].concat() {
        assert_eq!(info.fallbacks, 0, "a benchmarked call fell back: {info:?}");
    }
    if std::env::args().any(|a| a == "--bench") {
        match criterion_medians(&output, CASES.map(|(id, _)| id), started) {
            Some(medians) => section(&machine, &medians).write(),
            None => eprintln!("not every case ran (a filter?): BENCHMARKS.md left as it is"),
        }
    }
}

/// A host whose router is `plugins/<folder>/<name>.wasm`.
fn host_running(name: &str, folder: &str) -> PluginHost {
    let path = format!("{}/../{folder}/{name}.wasm", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}; build the plugins first (plugins/build)"));
    let host = PluginHost::new(HostConfig::default()).expect("the plugin host starts");
    host.load(PluginKind::Router, name, "1.0.0", &bytes).expect("the router loads");
    host
}

/// The `plugins` section of BENCHMARKS.md.
fn section(machine: &Machine, medians: &[f64]) -> Section {
    let mut section = Section::new("plugins", "Plugin calls", "plugins/host/benches/policy_calls.rs");
    let _ = writeln!(
        section,
        "Each plugin case calls the embedded default component through the policy handle the gateway and the \
         master use: the running plugin is looked up, an instance taken from its pool, the deadline armed (epoch \
         interruption, {} ms, 1 ms ticks), the arguments lowered into the guest, the answer lifted and checked, \
         the instance put back. The native case calls the rule of `shardgate_core::policy` the component \
         reproduces. Median of criterion's samples, one thread.\n\n\
         What a plugin call costs is mostly wasmtime entering the guest, once per string or list argument (the \
         guest's `cabi_realloc`, even for an empty list), once for the function, and once for its post-return when \
         the answer can carry a string. A `route` call of contract 0.2.0 enters the guest three times (`recipient`, \
         `route`, post-return), whatever the metadata: the kind is a variant (no allocation unless it is `other`), \
         and a router reads the metadata it needs through the host's `message.metadata` import, one host call and \
         one more entry (the answer's allocation) per value read. The host holds a message's metadata for the call \
         only if the router imports `message.metadata`; the default router does not. A component built for \
         contract 0.1.0 still loads and is called as before: five entries (`recipient`, `kind`, `metadata`, \
         `route`, post-return), each metadata pair twice more.\n",
        HostConfig::default().call_deadline.as_millis()
    );
    let toolchain = "profile `bench`; wasmtime 48.0.8 (features `runtime`, `cranelift`, `component-model`, \
                     `pooling-allocator`, `std`; no `component-model-async`)";
    let _ = writeln!(
        section,
        "{}\n",
        provenance("cargo bench -p shardgate-plugins --bench policy_calls", machine, toolchain, &[])
    );
    let _ = writeln!(section, "| Case | What | Median |\n|---|---|---|");
    for ((id, what), median) in CASES.iter().zip(medians) {
        let _ = writeln!(section, "| `{id}` | {what} | {median:.0} ns |");
    }
    let _ = writeln!(section);
    for (kind, plugin, native) in [
        ("router", 0, 1),
        ("router with metadata", 2, 3),
        ("router of contract 0.1.0, with metadata", 4, 3),
        ("authorizer", 6, 7),
        ("health", 8, 9),
    ] {
        let _ = writeln!(
            section,
            "- {kind}: the plugin costs {:.0} ns more than the native rule per call.",
            medians[plugin] - medians[native]
        );
    }
    let _ = writeln!(
        section,
        "- a router that reads one metadata value (`router-country`, pinned recipient): {:.0} ns per call, {:.0} ns \
         more than the default router, which reads none.",
        medians[5],
        medians[5] - medians[2]
    );
    let target = if medians[0] < 300.0 { "**met**" } else { "**NOT met**" };
    let _ = writeln!(section, "\nTarget: router call median under 300 ns: {target} ({:.0} ns).", medians[0]);
    section
}
