//! Loading: a good component is swapped in and the policy handles follow it;
//! anything else is refused with a clear error and the running plugin stays.

mod common;

use shardgate_core::policy::{AuthRequest, AuthVerdict, HashRouter, Principal, Route, RouteRequest, RoutingPolicy};
use shardgate_plugins::{Blame, PluginError, PluginHost, PluginInfo, PluginKind};

fn message(recipient: &str) -> RouteRequest {
    RouteRequest { recipient: recipient.into(), kind: "text".into(), metadata: vec![] }
}

/// Everything but the counters and timestamps, which a refused load must not change either.
fn identity(info: &PluginInfo) -> (PluginKind, String, String, String, bool) {
    (info.kind, info.name.clone(), info.version.clone(), info.sha256.clone(), info.default)
}

fn assert_refused_and_unchanged(host: &PluginHost, kind: PluginKind, bytes: &[u8]) -> PluginError {
    let before: Vec<_> = host.plugins().iter().map(identity).collect();
    let error = host.load(kind, "bad", "1.0.0", bytes).expect_err("the load is refused");
    let after: Vec<_> = host.plugins().iter().map(identity).collect();
    assert_eq!(before, after, "a refused load changed the running plugins");
    assert_eq!(error.blame(), Blame::Guest, "{error}");
    error
}

#[test]
fn loaded_router_answers_through_handles_taken_before_the_swap() {
    let host = common::host();
    let router = host.router();
    // 44... is pinned to shard 1 by router-country; the default hashes it.
    let uk = message("447700900123");
    assert_eq!(router.route(&uk, 8), HashRouter.route(&uk, 8));
    let hashed = HashRouter.route(&uk, 8);
    assert_ne!(hashed, Route::Shard(1), "pick a recipient the default does not put on shard 1");

    let info = host.load(PluginKind::Router, "country", "2.1.0", &common::component("router-country")).unwrap();
    assert_eq!((info.name.as_str(), info.version.as_str(), info.default), ("country", "2.1.0", false));
    assert_eq!(info.sha256.len(), 64);
    assert_eq!(router.route(&uk, 8), Route::Shard(1), "the old handle calls the new plugin");
    assert_eq!(host.plugins()[0].calls, 1);

    host.reset(PluginKind::Router);
    assert_eq!(router.route(&uk, 8), hashed, "back on the default");
    assert!(host.plugins()[0].default);
    let retired = host.retired();
    assert_eq!(retired.last().map(|r| (r.info.name.as_str(), r.unloaded_for_failures)), Some(("country", false)));
}

#[test]
fn loaded_authorizer_replaces_the_default() {
    let host = common::host();
    let authorizer = host.authorizer();
    let user = Principal::User { name: "ana".into(), role: shardgate_core::policy::UserRole::User };
    let request = |addr: &str| AuthRequest {
        method: "POST".into(),
        path: "/v1/messages".into(),
        headers: vec![],
        client_addr: addr.into(),
    };
    assert_eq!(authorizer.authorize(&user, &request("203.0.113.9")), AuthVerdict::Allow);
    host.load(PluginKind::Authorizer, "allowlist", "1.0.0", &common::component("authorizer-allowlist")).unwrap();
    assert!(matches!(authorizer.authorize(&user, &request("203.0.113.9")), AuthVerdict::Deny { status: 403, .. }));
    assert_eq!(authorizer.authorize(&user, &request("10.1.2.3")), AuthVerdict::Allow);
    assert_eq!(host.plugins()[1].fallbacks, 0);
}

#[test]
fn component_of_the_wrong_world_is_refused_and_the_running_plugin_stays() {
    let host = common::host();
    host.load(PluginKind::Authorizer, "allowlist", "1.0.0", &common::component("authorizer-allowlist")).unwrap();
    let router = common::component("router-default");
    let error = assert_refused_and_unchanged(&host, PluginKind::Authorizer, &router);
    assert!(matches!(error, PluginError::WrongWorld { kind: PluginKind::Authorizer, .. }), "{error}");
    assert!(
        error.to_string().contains("not a authorizer plugin") || error.to_string().contains("authorizer"),
        "{error}"
    );
    let health = common::component("health-default");
    let error = assert_refused_and_unchanged(&host, PluginKind::Router, &health);
    assert!(matches!(error, PluginError::WrongWorld { kind: PluginKind::Router, .. }), "{error}");
    assert_eq!(host.plugins()[1].name, "allowlist");
}

#[test]
fn truncated_component_is_refused_and_the_running_plugin_stays() {
    let host = common::host();
    let bytes = common::component("router-country");
    for cut in [0, 4, 7, 9, 100, bytes.len() / 2, bytes.len() - 1] {
        let error = assert_refused_and_unchanged(&host, PluginKind::Router, &bytes[..cut]);
        assert!(matches!(error, PluginError::NotAComponent(_)), "cut at {cut}: {error}");
    }
    // The 8-byte header alone is a valid, empty component: it exports nothing.
    let error = assert_refused_and_unchanged(&host, PluginKind::Router, &bytes[..8]);
    assert!(matches!(error, PluginError::WrongWorld { .. }), "{error}");
}

#[test]
fn random_bytes_are_refused_and_the_running_plugin_stays() {
    let host = common::host();
    // A fixed xorshift stream: the same "random" bytes on every run.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut garbage = |len: usize| -> Vec<u8> {
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    };
    for len in [1, 100, 10_000] {
        let bytes = garbage(len);
        assert_refused_and_unchanged(&host, PluginKind::Router, &bytes);
    }
    // A valid header on garbage, and a core module rather than a component.
    let mut header = b"\0asm\x0d\0\x01\0".to_vec();
    header.extend(garbage(1000));
    assert_refused_and_unchanged(&host, PluginKind::HealthPolicy, &header);
    assert_refused_and_unchanged(&host, PluginKind::Authorizer, b"\0asm\x01\0\0\0");
}

#[test]
fn unusable_name_or_version_is_refused() {
    let host = common::host();
    let bytes = common::component("router-country");
    for (name, version) in [("", "1"), ("a b", "1"), ("x", ""), ("x", "1\n2"), (&*"n".repeat(65), "1")] {
        let error = host.load(PluginKind::Router, name, version, &bytes).expect_err("refused");
        assert!(matches!(error, PluginError::BadLabel(_)), "{error}");
    }
    assert!(host.plugins()[0].default);
}

#[test]
fn plugins_lists_each_kind_with_its_default() {
    let host = common::host();
    let plugins = host.plugins();
    let kinds: Vec<_> = plugins.iter().map(|p| p.kind).collect();
    assert_eq!(kinds, PluginKind::ALL);
    for p in &plugins {
        assert!(p.default && p.name == "default" && p.version == env!("CARGO_PKG_VERSION"), "{p:?}");
        assert_eq!((p.calls, p.failures, p.fallbacks, p.last_error.as_deref()), (0, 0, 0, None));
    }
    assert_eq!("health-policy".parse::<PluginKind>(), Ok(PluginKind::HealthPolicy));
    assert!("health".parse::<PluginKind>().is_err());
}
