//! Each embedded default component gives the native rule's answer, over a
//! table of cases, through the same host path as any plugin.

mod common;

use shardgate_core::policy::{
    AuthRequest, AuthorizationPolicy, HashRouter, HealthObservations, HealthPolicy, IntervalHealth, OnPremAuthorizer,
    RouteRequest, RoutingPolicy,
};

fn recipients() -> Vec<String> {
    let mut recipients: Vec<String> = ["", "0", "1", "15551234567", "447700900123", "4915123456789", "5511987654321"]
        .into_iter()
        .map(String::from)
        .collect();
    recipients.extend((0..300u64).map(|n| format!("{}", 10_000_000_000u64 + n * 7_919_993)));
    recipients.push("9".repeat(64));
    recipients.push("1".repeat(1000));
    recipients
}

#[test]
fn default_router_component_routes_every_recipient_like_hash_router() {
    let host = common::host();
    let router = host.router();
    let mut compared = 0;
    for recipient in recipients() {
        for shards in [0, 1, 2, 3, 4, 8, 16, 32] {
            let message = RouteRequest {
                recipient: recipient.clone(),
                kind: "text".into(),
                metadata: vec![("recipient-type".into(), "individual".into())],
            };
            assert_eq!(router.route(&message, shards), HashRouter.route(&message, shards), "{recipient} / {shards}");
            compared += 1;
        }
    }
    let info = &host.plugins()[0];
    assert!(info.default && info.calls == compared && info.fallbacks == 0, "{info:?}");
    assert_eq!(info.instances, 1, "sequential calls reuse the pooled instance: {info:?}");
}

#[test]
fn default_authorizer_component_decides_like_on_prem_authorizer() {
    let host = common::host();
    let authorizer = host.authorizer();
    let principals = common::principals();
    let paths = [
        "/v1/users/login",
        "/v1/users/login/x",
        "/v1/health",
        "/v1/healthx",
        "/metrics",
        "/metrics/",
        "/v1/stats/",
        "/v1/stats/messages",
        "/v1/stats",
        "/v1/messages",
        "/v1/settings",
        "/v1/settings/application",
        "/v1/settingsx",
        "/v1/plugins",
        "/v1/plugins/router",
        "/v1/account",
        "/v1/account/password",
        "/v1/support",
        "/",
        "",
    ];
    let mut compared = 0;
    for principal in &principals {
        for path in paths {
            for (method, client_addr) in [("GET", "127.0.0.1"), ("POST", "203.0.113.9"), ("DELETE", "::1")] {
                let request = AuthRequest {
                    method: method.into(),
                    path: path.into(),
                    headers: vec![("user-agent".into(), "test".into())],
                    client_addr: client_addr.into(),
                };
                assert_eq!(
                    authorizer.authorize(principal, &request),
                    OnPremAuthorizer.authorize(principal, &request),
                    "{principal:?} {method} {path}"
                );
                compared += 1;
            }
        }
    }
    let info = &host.plugins()[1];
    assert!(info.default && info.calls == compared && info.fallbacks == 0, "{info:?}");
}

#[test]
fn default_health_component_judges_like_interval_health() {
    let host = common::host();
    let health = host.health();
    let base = HealthObservations {
        node: "coreapp-1".into(),
        heartbeats: vec![("master-1".into(), Some(5_000)), ("master-2".into(), Some(400))],
        since_db_liveness_ms: 1_000,
        recent_rtt_us: vec![300, 280, 1_200],
        heartbeat_interval_ms: 5_000,
        unhealthy_interval_ms: 30_000,
        db_update_interval_ms: 60_000,
    };
    let heartbeat_tables: Vec<Vec<(String, Option<u64>)>> = vec![
        vec![],
        vec![("m1".into(), None)],
        vec![("m1".into(), None), ("m2".into(), None)],
        vec![("m1".into(), Some(0))],
        vec![("m1".into(), Some(29_999))],
        vec![("m1".into(), Some(30_000))],
        vec![("m1".into(), Some(30_001))],
        vec![("m1".into(), Some(31_000)), ("m2".into(), None)],
        vec![("m1".into(), Some(95_432)), ("m2".into(), Some(61_010))],
        vec![("m1".into(), None), ("m2".into(), Some(12))],
        vec![("m1".into(), Some(u64::MAX))],
    ];
    let mut compared = 0;
    for heartbeats in &heartbeat_tables {
        for since_db_liveness_ms in [0, 1_000, 119_999, 120_000, 120_001, 123_456, 3_600_000] {
            for (unhealthy_interval_ms, db_update_interval_ms) in [(30_000, 60_000), (1_000, 500), (0, 0)] {
                let observations = HealthObservations {
                    heartbeats: heartbeats.clone(),
                    since_db_liveness_ms,
                    unhealthy_interval_ms,
                    db_update_interval_ms,
                    ..base.clone()
                };
                assert_eq!(health.judge(&observations), IntervalHealth.judge(&observations), "{observations:?}");
                compared += 1;
            }
        }
    }
    let info = &host.plugins()[2];
    assert!(info.default && info.calls == compared && info.fallbacks == 0, "{info:?}");
}
