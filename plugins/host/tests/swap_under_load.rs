//! Swapping the router while four threads route in a loop drops no call:
//! every call gets a valid answer from one plugin or the other, and none
//! falls back.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardgate_core::policy::{HashRouter, Route, RouteRequest, RoutingPolicy};
use shardgate_plugins::{HostConfig, PluginKind};

const THREADS: usize = 4;
const SWAPS: usize = 20;
/// Bounds the test, whatever the machine's load.
const MOST_CALLS_PER_THREAD: usize = 200_000;
const TIME_LIMIT: Duration = Duration::from_secs(60);

/// The country router's answer for the recipients used here: 44 on shard 1,
/// 49 on shard 2, others hashed over the shards not pinned.
fn country_route(recipient: &str, shards: u32) -> Option<Route> {
    match &recipient[..2] {
        "44" => Some(Route::Shard(1)),
        "49" => Some(Route::Shard(2)),
        _ => {
            let _ = shards;
            None
        }
    }
}

#[test]
fn swapping_the_router_under_four_calling_threads_drops_no_call() {
    // A deadline no call reaches: on a starved machine a call cut at the
    // deadline falls back (blamed on the host), which is not what this tests.
    let host = common::host_with(HostConfig { call_deadline: Duration::from_secs(2), ..HostConfig::default() });
    let country = common::component("router-country");
    let default = common::component("router-default");
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();

    let callers: Vec<_> = (0..THREADS)
        .map(|t| {
            let router = host.router();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut calls = 0;
                while !stop.load(Ordering::Relaxed) && calls < MOST_CALLS_PER_THREAD && started.elapsed() < TIME_LIMIT {
                    let prefix = ["44", "49", "15", "55"][calls % 4];
                    let recipient = format!("{prefix}{t}{calls:09}");
                    let message = RouteRequest { recipient: recipient.clone(), kind: "text".into(), metadata: vec![] };
                    let route = router.route(&message, 8);
                    let Route::Shard(shard) = route else { panic!("{recipient}: refused: {route:?}") };
                    assert!(shard < 8, "{recipient}: shard {shard}");
                    let by_default = HashRouter.route(&message, 8);
                    let valid = route == by_default
                        || country_route(&recipient, 8).map_or(![1, 2].contains(&shard), |c| c == route);
                    assert!(valid, "{recipient}: {route:?} is neither plugin's answer");
                    calls += 1;
                }
                calls
            })
        })
        .collect();

    for swap in 0..SWAPS {
        let (name, bytes) = if swap % 2 == 0 { ("country", &country) } else { ("hash", &default) };
        host.load(PluginKind::Router, name, &format!("1.0.{swap}"), bytes).expect("the swap loads");
        std::thread::sleep(Duration::from_millis(5));
    }
    host.reset(PluginKind::Router);
    std::thread::sleep(Duration::from_millis(20));
    stop.store(true, Ordering::Relaxed);

    let calls: usize = callers.into_iter().map(|c| c.join().expect("no caller panicked")).sum();
    assert!(started.elapsed() < TIME_LIMIT + Duration::from_secs(5));
    let retired = host.retired();
    assert_eq!(retired.len(), SWAPS + 1);
    let counted: u64 = retired.iter().map(|r| r.info.calls).sum::<u64>() + host.plugins()[0].calls;
    let fallbacks: u64 = retired.iter().map(|r| r.info.fallbacks).sum::<u64>() + host.plugins()[0].fallbacks;
    assert_eq!(fallbacks, 0, "a call fell back during the swaps");
    assert_eq!(counted, calls as u64, "every call reached a plugin");
    assert!(calls >= THREADS * 10, "the callers ran during the swaps ({calls} calls)");
}
