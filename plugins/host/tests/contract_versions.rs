//! Both contract versions: components built for `shardgate:policy@0.1.0`
//! (`plugins/test-components/*-v0-1.wasm`, the defaults as they were built
//! for it) still load and answer as before; the 0.2.0 `route` gets every
//! message kind; a 0.2.0 router reads the metadata of the message it routes
//! through the host's `message.metadata` import, and only that message's.

mod common;

use shardgate_core::policy::{
    AuthRequest, AuthorizationPolicy, HashRouter, HealthObservations, HealthPolicy, IntervalHealth, OnPremAuthorizer,
    Route, RouteRequest, RoutingPolicy,
};
use shardgate_plugins::PluginKind;

fn message(recipient: &str, kind: &str, metadata: &[(&str, &str)]) -> RouteRequest {
    RouteRequest {
        recipient: recipient.into(),
        kind: kind.into(),
        metadata: metadata.iter().map(|&(name, value)| (name.into(), value.into())).collect(),
    }
}

#[test]
fn router_built_for_contract_0_1_routes_every_recipient_like_hash_router() {
    let host = common::host();
    host.load(PluginKind::Router, "router-v0-1", "0.1.0", &common::test_component("router-v0-1")).unwrap();
    let router = host.router();
    let mut recipients: Vec<String> =
        ["", "0", "15551234567", "447700900123", "5511987654321"].map(String::from).into();
    recipients.extend((0..100u64).map(|n| format!("{}", 10_000_000_000u64 + n * 7_919_993)));
    recipients.push("1".repeat(1000));
    let metadata_tables: [&[(&str, &str)]; 3] =
        [&[], &[("recipient-type", "individual")], &[("recipient-type", "group"), ("priority", "high")]];
    let mut compared = 0;
    for recipient in &recipients {
        for metadata in metadata_tables {
            for shards in [0, 1, 2, 8, 32] {
                let message = message(recipient, "text", metadata);
                assert_eq!(
                    router.route(&message, shards),
                    HashRouter.route(&message, shards),
                    "{message:?} / {shards}"
                );
                compared += 1;
            }
        }
    }
    let info = host.plugin(PluginKind::Router);
    assert!(!info.default && info.calls == compared && info.fallbacks == 0, "{info:?}");
}

#[test]
fn authorizer_and_health_policy_built_for_contract_0_1_answer_like_the_native_rules() {
    let host = common::host();
    host.load(PluginKind::Authorizer, "authorizer-v0-1", "0.1.0", &common::test_component("authorizer-v0-1")).unwrap();
    host.load(PluginKind::HealthPolicy, "health-v0-1", "0.1.0", &common::test_component("health-v0-1")).unwrap();

    let authorizer = host.authorizer();
    let principals = common::principals();
    for principal in &principals {
        for path in ["/v1/users/login", "/v1/health", "/v1/messages", "/v1/settings/application", "/v1/plugins"] {
            let request = AuthRequest {
                method: "POST".into(),
                path: path.into(),
                headers: vec![("user-agent".into(), "test".into())],
                client_addr: "203.0.113.9".into(),
            };
            let expected = OnPremAuthorizer.authorize(principal, &request);
            assert_eq!(authorizer.authorize(principal, &request), expected, "{principal:?} {path}");
        }
    }

    let health = host.health();
    for since in [None, Some(1_000), Some(30_001)] {
        let observations = HealthObservations {
            node: "coreapp-1".into(),
            heartbeats: vec![("master-1".into(), since)],
            since_db_liveness_ms: 1_000,
            recent_rtt_us: vec![300],
            heartbeat_interval_ms: 5_000,
            unhealthy_interval_ms: 30_000,
            db_update_interval_ms: 60_000,
        };
        assert_eq!(health.judge(&observations), IntervalHealth.judge(&observations), "{observations:?}");
    }
    for kind in [PluginKind::Authorizer, PluginKind::HealthPolicy] {
        let info = host.plugin(kind);
        assert!(!info.default && info.calls > 0 && info.fallbacks == 0, "{info:?}");
    }
}

#[test]
fn default_router_routes_every_message_kind_like_hash_router() {
    let host = common::host();
    let router = host.router();
    let kinds = [
        "text",
        "template",
        "hsm",
        "image",
        "document",
        "audio",
        "video",
        "sticker",
        "location",
        "contacts",
        "interactive",
        "contact_check",
        // Kinds 0.2.0 does not list: lowered as `other(name)`.
        "reaction",
        "",
        "Text",
    ];
    for kind in kinds {
        let message = message("5511987654321", kind, &[]);
        assert_eq!(router.route(&message, 8), HashRouter.route(&message, 8), "{kind:?}");
    }
    let info = host.plugin(PluginKind::Router);
    assert_eq!((info.calls, info.fallbacks), (kinds.len() as u64, 0), "{info:?}");
}

#[test]
fn router_reads_the_routed_message_metadata_through_the_host_import() {
    let host = common::host();
    host.load(PluginKind::Router, "country", "1.0.0", &common::component("router-country")).unwrap();
    let router = host.router();
    // router-country pins 44... to shard 1 and 49... to shard 2, for phone
    // numbers only: it asks for `recipient-type` and hashes anything but an
    // `individual` over the shards no prefix is pinned to.
    let uk = "447700900123";
    let individual = message(uk, "text", &[("priority", "high"), ("recipient-type", "individual")]);
    let group = message(uk, "text", &[("recipient-type", "group")]);
    let none = message(uk, "contact_check", &[]);

    assert_eq!(router.route(&individual, 8), Route::Shard(1), "the second pair is found");
    let hashed = router.route(&group, 8);
    assert!(matches!(hashed, Route::Shard(s) if s != 1 && s != 2 && s < 8), "a group is hashed: {hashed:?}");
    // Each call reads its own message's metadata, never the previous one's.
    assert_eq!(router.route(&none, 8), Route::Shard(1), "no metadata: a phone number");
    assert_eq!(router.route(&group, 8), hashed, "the same group, the same shard");
    assert_eq!(router.route(&individual, 8), Route::Shard(1));
    // Longer values than the held buffers had, then shorter ones again.
    let long = message(uk, "text", &[("recipient-type", &"g".repeat(5000)), ("x", "y")]);
    assert_eq!(router.route(&long, 8), hashed);
    assert_eq!(router.route(&individual, 8), Route::Shard(1));

    let info = host.plugin(PluginKind::Router);
    assert_eq!((info.calls, info.fallbacks), (7, 0), "{info:?}");
}
