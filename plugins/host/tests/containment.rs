//! Hostile plugins are contained: the call is answered by the native rule
//! within the deadline, the failure is counted and blamed on the plugin, the
//! host keeps working, and a plugin that keeps failing is unloaded.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use shardgate_core::policy::{HashRouter, Route, RouteRequest, RoutingPolicy};
use shardgate_plugins::{HostConfig, PluginHost, PluginInfo, PluginKind};

/// Slack over the documented bounds for a call to come back: the ticker
/// thread and the caller share two busy cores with other work.
const SLACK: Duration = Duration::from_millis(40);

/// The longest a call may take: twice the deadline (a call the OS kept off
/// the CPU gets one more deadline) plus three ticks (the first tick and the
/// CPU probe), plus the slack.
fn call_bound(config: &HostConfig) -> Duration {
    2 * config.call_deadline + 3 * config.epoch_tick + SLACK
}

fn message(recipient: &str) -> RouteRequest {
    RouteRequest { recipient: recipient.into(), kind: "text".into(), metadata: vec![] }
}

/// A host whose router is the hostile test component `name`, never
/// unloaded by the failures of these tests.
fn host_running(name: &str) -> PluginHost {
    let host = common::host_with(HostConfig { max_consecutive_failures: 1000, ..HostConfig::default() });
    host.load(PluginKind::Router, name, "0.1.0", &common::test_component(name)).expect("the hostile plugin loads");
    host
}

/// Routes one message on another thread, failing the test (instead of
/// hanging it) if the call does not come back in `limit`.
fn route_within(host: &PluginHost, recipient: &str, shards: u32, limit: Duration) -> (Route, Duration) {
    let router = host.router();
    let message = message(recipient);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let started = Instant::now();
        let route = router.route(&message, shards);
        let _ = tx.send((route, started.elapsed()));
    });
    rx.recv_timeout(limit + Duration::from_secs(2)).expect("the plugin call came back (not stalled)")
}

fn router_info(host: &PluginHost) -> PluginInfo {
    host.plugin(PluginKind::Router)
}

#[test]
fn looping_plugin_is_interrupted_at_the_deadline_and_the_native_rule_answers() {
    let host = host_running("hostile-loop");
    let config = host.config().clone();
    let limit = call_bound(&config);
    for n in 0..3 {
        let recipient = format!("1555000000{n}");
        let (route, took) = route_within(&host, &recipient, 8, limit);
        assert_eq!(route, HashRouter.route(&message(&recipient), 8));
        assert!(took <= limit, "call {n} took {took:?}, over the deadline bound {limit:?}");
        assert!(took >= config.call_deadline - config.epoch_tick, "call {n} cut short at {took:?}");
    }
    let info = router_info(&host);
    assert_eq!((info.name.as_str(), info.calls, info.failures, info.fallbacks), ("hostile-loop", 3, 3, 3), "{info:?}");
    let error = info.last_error.expect("the failure is recorded");
    // Blamed on the plugin: it was burning CPU past the deadline.
    assert!(error.starts_with("guest:") && error.contains("deadline"), "{error}");
}

#[test]
fn deadline_is_configurable() {
    let config = HostConfig { call_deadline: Duration::from_millis(50), ..HostConfig::default() };
    let host = common::host_with(config);
    host.load(PluginKind::Router, "hostile-loop", "0.1.0", &common::test_component("hostile-loop")).unwrap();
    let limit = call_bound(host.config());
    let (_, took) = route_within(&host, "15550000001", 4, limit);
    assert!(took >= Duration::from_millis(49), "interrupted after {took:?}, before the 50 ms deadline");
    assert!(took <= limit, "interrupted after {took:?}");
}

#[test]
fn memory_bomb_is_stopped_at_the_memory_cap_and_the_native_rule_answers() {
    // A deadline it cannot reach first, even on a loaded machine: the cap
    // must be what stops it.
    let config = HostConfig { call_deadline: Duration::from_secs(2), ..HostConfig::default() };
    let host = common::host_with(config);
    host.load(PluginKind::Router, "membomb", "0.1.0", &common::test_component("hostile-membomb")).unwrap();
    let limit = Duration::from_secs(2);
    for n in 0..3 {
        let recipient = format!("4477009001{n}");
        let (route, _) = route_within(&host, &recipient, 4, limit);
        assert_eq!(route, HashRouter.route(&message(&recipient), 4));
    }
    let info = router_info(&host);
    assert_eq!((info.calls, info.failures, info.fallbacks), (3, 3, 3), "{info:?}");
    let error = info.last_error.expect("the failure is recorded");
    assert!(error.contains("over the cap of 16777216 bytes"), "{error}");
}

#[test]
fn trapping_plugin_is_contained_and_its_instance_replaced() {
    let host = host_running("hostile-trap");
    let router = host.router();
    for n in 0..20 {
        let recipient = format!("491512345{n:04}");
        assert_eq!(router.route(&message(&recipient), 16), HashRouter.route(&message(&recipient), 16));
    }
    let info = router_info(&host);
    // Every call trapped anew: a trapped instance is replaced, not reused
    // (wasmtime would refuse to enter it, a different error).
    assert_eq!((info.calls, info.failures, info.fallbacks), (20, 20, 20), "{info:?}");
    assert_eq!(info.instances, 20, "one at load, then one per trapped call but the last: {info:?}");
    let error = info.last_error.expect("the failure is recorded");
    assert!(error.starts_with("guest: trapped"), "{error}");
}

#[test]
fn out_of_range_shard_is_rejected_and_the_native_rule_answers() {
    let host = host_running("hostile-out-of-range");
    let router = host.router();
    for shards in [1, 2, 8, 32] {
        assert_eq!(router.route(&message("15551234567"), shards), HashRouter.route(&message("15551234567"), shards));
    }
    let info = router_info(&host);
    assert_eq!((info.calls, info.failures, info.fallbacks), (4, 4, 4), "{info:?}");
    let error = info.last_error.expect("the failure is recorded");
    assert!(error.contains("answered shard 1000, not below the shard count 32"), "{error}");
}

#[test]
fn plugin_is_unloaded_after_consecutive_failures_and_the_default_runs_again() {
    let config = HostConfig { max_consecutive_failures: 5, ..HostConfig::default() };
    let host = common::host_with(config);
    host.load(PluginKind::Router, "hostile-trap", "0.1.0", &common::test_component("hostile-trap")).unwrap();
    let router = host.router();
    for n in 0..4 {
        router.route(&message(&format!("1555{n}")), 8);
        assert_eq!(router_info(&host).name, "hostile-trap", "still loaded after {} failures", n + 1);
    }
    router.route(&message("15559"), 8);
    let info = router_info(&host);
    assert!(info.default && info.calls == 0, "back on the default after 5 failures: {info:?}");

    let retired = host.retired();
    let unloaded = retired.last().expect("the unloaded plugin is remembered");
    assert!(unloaded.unloaded_for_failures, "{unloaded:?}");
    assert_eq!((unloaded.info.name.as_str(), unloaded.info.failures), ("hostile-trap", 5));
    assert!(unloaded.reason.contains("5 failed calls in a row"), "{}", unloaded.reason);

    // The default answers from the plugin, not the fallback.
    assert_eq!(router.route(&message("15551234567"), 8), HashRouter.route(&message("15551234567"), 8));
    let info = router_info(&host);
    assert_eq!((info.calls, info.fallbacks), (1, 0), "{info:?}");
}

#[test]
fn every_hostile_plugin_in_turn_leaves_the_host_serving() {
    let host = common::host();
    let router = host.router();
    for name in ["hostile-loop", "hostile-membomb", "hostile-trap", "hostile-out-of-range"] {
        host.load(PluginKind::Router, name, "0.1.0", &common::test_component(name)).unwrap();
        // Five failures in a row unload it (a call cut short because the
        // host starved it does not count, hence the margin).
        for n in 0..30 {
            if router_info(&host).default {
                break;
            }
            let recipient = format!("1555{n}");
            let started = Instant::now();
            assert_eq!(router.route(&message(&recipient), 4), HashRouter.route(&message(&recipient), 4), "{name}");
            let limit = call_bound(host.config());
            assert!(started.elapsed() <= limit, "{name}: a call took {:?}", started.elapsed());
        }
        assert!(router_info(&host).default, "{name} was unloaded");
    }
    assert_eq!(host.retired().iter().filter(|r| r.unloaded_for_failures).count(), 4);
    let default = router_info(&host);
    assert_eq!(default.fallbacks, 0, "{default:?}");
}
