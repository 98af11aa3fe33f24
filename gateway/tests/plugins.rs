//! The gateway's policies run through the plugin host: uploads through
//! `/v1/plugins`, containment of hostile routers, the authorizer as the one
//! place that decides, and `/metrics`. The router on a real TCP listener
//! (with connect info, as in production), over a real SQLite store, with the
//! committed components of `plugins/components` and `plugins/test-components`.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use shardgate_core::control::ControlClient;
use shardgate_core::control_auth::ClusterSecret;
use shardgate_core::media_dir::MediaDir;
use shardgate_core::policy::UserRole;
use shardgate_core::policy::{AuthorizationPolicy, OnPremAuthorizer, Route, RouteRequest, RoutingPolicy};
use shardgate_core::routing::default_shard;
use shardgate_core::store::Store;
use shardgate_core::testing::sqlite_cluster_store;
use shardgate_gateway::auth;
use shardgate_gateway::{router, AppState};
use shardgate_plugins::{HostConfig, PluginHost};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const API_KEY: &str = "test-api-key";
const PASSWORD: &str = "Str0ng!Passw0rd";
/// Enough shards for both pins of `router-country` (44 → 1, 49 → 2).
const SHARDS: u32 = 4;
/// The shard `router-country` pins UK numbers (prefix 44) to.
const UK_SHARD: u32 = 1;

/// One webapp at a time: the hostile-plugin tests time their requests, and
/// the others' password hashing and component compiling would steal their CPU.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A committed component, by its path under `plugins/`.
fn component(path: &str) -> Vec<u8> {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins").join(path);
    std::fs::read(&file).unwrap_or_else(|e| panic!("{} ({e}): build the components with plugins/build", file.display()))
}

/// A webapp serving on 127.0.0.1 over its own SQLite database, with an admin token.
struct Webapp {
    base: String,
    store: Store,
    plugins: PluginHost,
    http: reqwest::Client,
    admin: String,
    dir: PathBuf,
    _alone: tokio::sync::MutexGuard<'static, ()>,
}

impl Drop for Webapp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The webapp's control client (no node of these tests has a control API).
fn test_control() -> ControlClient {
    ControlClient::new(&ClusterSecret::generate())
}

impl Webapp {
    async fn start() -> Webapp {
        Webapp::start_with(HostConfig::default(), |state| state).await
    }

    /// A webapp whose plugin host runs with `config` and whose state `adjust`
    /// may change before it serves.
    async fn start_with(config: HostConfig, adjust: impl FnOnce(AppState) -> AppState) -> Webapp {
        let alone = ONE_AT_A_TIME.lock().await;
        let dir = std::env::temp_dir().join(format!("shardgate-plugins-test-{}", uuid::Uuid::new_v4().simple()));
        let store = sqlite_cluster_store(&dir, SHARDS).await.unwrap();
        auth::create_user(&store, "root", PASSWORD, UserRole::Admin).await.unwrap();
        let plugins = PluginHost::new(config).unwrap();
        let media = MediaDir::create(dir.join("media")).unwrap();
        let state = adjust(AppState::new(
            store.clone(),
            media,
            test_control(),
            Some(API_KEY.into()),
            "webapp-test",
            plugins.clone(),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        // A request that hangs fails the test instead of stalling it.
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();
        let mut webapp =
            Webapp { base: format!("http://{addr}"), store, plugins, http, admin: String::new(), dir, _alone: alone };
        webapp.admin = webapp.token("root").await;
        webapp
    }

    async fn token(&self, user: &str) -> String {
        let response = self.request(Method::POST, "/v1/users/login").basic_auth(user, Some(PASSWORD)).send().await;
        let body: Value = response.unwrap().json().await.unwrap();
        body["users"][0]["token"].as_str().expect("login answers a token").to_string()
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    fn as_admin(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.request(method, path).bearer_auth(&self.admin)
    }

    async fn upload(&self, kind: &str, name: &str, bytes: Vec<u8>) -> reqwest::Response {
        self.as_admin(Method::PUT, &format!("/v1/plugins/{kind}?name={name}&version=1.0.0"))
            .header("content-type", "application/wasm")
            .body(bytes)
            .send()
            .await
            .unwrap()
    }

    /// Uploads and asserts it was accepted.
    async fn upload_ok(&self, kind: &str, name: &str, bytes: Vec<u8>) -> Value {
        let response = self.upload(kind, name, bytes).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn send(&self, to: &str) -> reqwest::Response {
        self.as_admin(Method::POST, "/v1/messages")
            .json(&json!({"to": to, "text": {"body": "hi"}}))
            .send()
            .await
            .unwrap()
    }

    /// Sends a message, asserts it was accepted, and returns its id.
    async fn send_ok(&self, to: &str) -> String {
        let response = self.send(to).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        body["messages"][0]["id"].as_str().unwrap().to_string()
    }

    /// The shard whose outbox holds message `id`.
    async fn shard_of(&self, id: &str) -> u32 {
        for shard in 0..SHARDS {
            if self.store.pending_messages(shard, 10_000).await.unwrap().iter().any(|m| m.id == id) {
                return shard;
            }
        }
        panic!("message {id} is in no outbox");
    }

    /// `GET /v1/plugins` as the admin.
    async fn plugins_listed(&self) -> Value {
        let response = self.as_admin(Method::GET, "/v1/plugins").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// The running plugin of `kind` as `GET /v1/plugins` lists it.
    async fn running(&self, kind: &str) -> Value {
        let listed = self.plugins_listed().await;
        let plugins = listed["plugins"].as_array().unwrap();
        plugins.iter().find(|p| p["kind"] == kind).unwrap_or_else(|| panic!("no {kind} in {listed}")).clone()
    }

    /// `GET /metrics` with the API key.
    async fn metrics(&self) -> String {
        let response =
            self.request(Method::GET, "/metrics").header("authorization", format!("Apikey {API_KEY}")).send().await;
        let response = response.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.unwrap()
    }
}

/// The value of the sample `series` (name and labels exactly as rendered) in a scrape.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Asserts the on-prem error shape and returns (status, code, details).
async fn onprem_error(response: reqwest::Response) -> (StatusCode, u64, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    let error = &body["errors"][0];
    assert!(error["title"].is_string(), "{body}");
    (status, error["code"].as_u64().unwrap(), error["details"].as_str().unwrap().to_string())
}

/// A UK number that the default rule does not put on the UK shard, so that a move proves the pin.
fn uk_number_off_the_uk_shard() -> String {
    (0..1000)
        .map(|i| format!("44770090{i:04}"))
        .find(|n| default_shard(n, SHARDS) != UK_SHARD)
        .expect("some UK number hashes elsewhere")
}

// ---------------------------------------------------------------- upload and delete

#[tokio::test]
async fn uploaded_country_router_moves_pinned_recipients_and_delete_restores_the_hash_rule() {
    let webapp = Webapp::start().await;
    let uk = uk_number_off_the_uk_shard();
    let hashed = default_shard(&uk, SHARDS);
    let before = webapp.send_ok(&uk).await;
    assert_eq!(webapp.shard_of(&before).await, hashed);

    let bytes = component("components/router-country.wasm");
    let uploaded = webapp.upload_ok("router", "country", bytes.clone()).await;
    assert_eq!(uploaded["plugins"][0]["name"], "country");
    assert_eq!(uploaded["plugins"][0]["default"], false);
    let stored = webapp.store.plugin("router").await.unwrap().expect("the upload is stored for every node");
    assert_eq!((stored.name.as_str(), stored.version.as_str()), ("country", "1.0.0"));
    assert_eq!(stored.component, bytes);
    assert_eq!(json!(stored.sha256), uploaded["plugins"][0]["sha256"]);
    let pinned = webapp.send_ok(&uk).await;
    assert_eq!(webapp.shard_of(&pinned).await, UK_SHARD, "the country router pins 44 to shard {UK_SHARD}");
    let listed = webapp.plugins_listed().await;
    assert_eq!(listed["stored"], json!([{"kind": "router", "sha256": stored.sha256}]), "{listed}");
    let support: Value = webapp.as_admin(Method::GET, "/v1/support").send().await.unwrap().json().await.unwrap();
    assert_eq!(support["support"]["plugins"][0]["name"], "country", "{support}");

    let deleted = webapp.as_admin(Method::DELETE, "/v1/plugins/router").send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    let deleted: Value = deleted.json().await.unwrap();
    assert_eq!(deleted["plugins"][0]["default"], true, "{deleted}");
    assert!(webapp.store.plugin("router").await.unwrap().is_none());
    let after = webapp.send_ok(&uk).await;
    assert_eq!(webapp.shard_of(&after).await, hashed);
    let again = webapp.as_admin(Method::DELETE, "/v1/plugins/router").send().await.unwrap();
    assert_eq!(onprem_error(again).await.0, StatusCode::NOT_FOUND, "nothing left to delete");
}

#[tokio::test]
async fn unloadable_uploads_are_refused_with_the_reason_and_change_nothing() {
    let webapp = Webapp::start().await;
    let country = component("components/router-country.wasm");
    webapp.upload_ok("router", "country", country.clone()).await;
    let digests = webapp.store.plugin_digests().await.unwrap();
    let mut garbage = vec![0u8; 4096];
    let mut x: u32 = 0x2545_f491;
    for byte in &mut garbage {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *byte = x as u8;
    }
    let refusals = [
        ("authorizer", country.clone(), "not a authorizer plugin"),
        ("router", country[..country.len() / 2].to_vec(), "not a valid WebAssembly component"),
        ("router", garbage, "not a valid WebAssembly component"),
    ];
    for (kind, bytes, reason) in refusals {
        let (status, code, details) = onprem_error(webapp.upload(kind, "bad", bytes).await).await;
        assert_eq!((status, code), (StatusCode::BAD_REQUEST, 1009), "{details}");
        assert!(details.contains(reason) && details.contains("unchanged"), "{details}");
    }
    assert_eq!(webapp.store.plugin_digests().await.unwrap(), digests, "nothing stored");
    assert_eq!(webapp.running("router").await["name"], "country");
    assert_eq!(webapp.running("authorizer").await["default"], true);
    let uk = uk_number_off_the_uk_shard();
    let id = webapp.send_ok(&uk).await;
    assert_eq!(webapp.shard_of(&id).await, UK_SHARD, "the country router still routes");
}

#[tokio::test]
async fn upload_takes_components_up_to_16_mib_of_a_known_kind_with_name_and_version() {
    let webapp = Webapp::start().await;
    // Over the 64 KiB of JSON bodies, under 16 MiB: read, then refused for what it is.
    let (status, _, details) = onprem_error(webapp.upload("router", "big", vec![7u8; 1 << 20]).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{details}");
    assert!(details.contains("not a valid WebAssembly component"), "{details}");
    let (status, code, _) = onprem_error(webapp.upload("router", "huge", vec![7u8; (16 << 20) + 1]).await).await;
    assert_eq!((status, code), (StatusCode::PAYLOAD_TOO_LARGE, 1025));
    let country = component("components/router-country.wasm");
    let (status, code, details) = onprem_error(webapp.upload("shredder", "x", country.clone()).await).await;
    assert_eq!((status, code), (StatusCode::NOT_FOUND, 1006));
    assert!(details.contains("router, authorizer or health-policy"), "{details}");
    let unnamed = webapp.as_admin(Method::PUT, "/v1/plugins/router?version=1").body(country.clone()).send().await;
    assert_eq!(onprem_error(unnamed.unwrap()).await.1, 1008);
    let as_json = webapp
        .as_admin(Method::PUT, "/v1/plugins/router?name=a&version=1")
        .header("content-type", "application/json")
        .body(country.clone())
        .send()
        .await;
    assert_eq!(onprem_error(as_json.unwrap()).await.1, 1025);
    assert!(webapp.store.plugin_digests().await.unwrap().is_empty());
    // The health policy runs on masters; a webapp validates it, and stores it for them.
    webapp.upload_ok("health-policy", "interval", component("components/health-default.wasm")).await;
    assert!(webapp.store.plugin("health-policy").await.unwrap().is_some());
}

// ---------------------------------------------------------------- hostile routers

/// Uploads a hostile router and sends messages until the host unloads it:
/// every message is accepted within the deadline bound and routed by the
/// native rule; the failures show in `/v1/plugins` and `/metrics`; then the
/// default router runs again and the hostile one is listed as retired.
async fn hostile_router_is_contained(file: &str, failure: &str, config: HostConfig) {
    let webapp = Webapp::start_with(config, |state| state).await;
    let config = webapp.plugins.config().clone();
    // Interrupted at the deadline plus the probe; a starved call at twice the
    // deadline; the margin is for the rest of a debug-build request on a
    // machine shared with other builds.
    let bound = config.call_deadline * 2 + config.epoch_tick * 4 + Duration::from_millis(400);
    webapp.upload_ok("router", "hostile", component(file)).await;

    let mut sent = 0;
    while webapp.running("router").await["name"] == "hostile" {
        assert!(sent < 4 * config.max_consecutive_failures, "still loaded after {sent} failed calls");
        let to = format!("4477009{sent:05}");
        let started = Instant::now();
        let response = webapp.send(&to).await;
        let took = started.elapsed();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "never failed by its plugin: {body}");
        assert!(took < bound, "a request took {took:?}, over the bound {bound:?}");
        let id = body["messages"][0]["id"].as_str().unwrap();
        assert_eq!(webapp.shard_of(id).await, default_shard(&to, SHARDS), "routed by the native rule");
        sent += 1;
        if sent == 1 {
            let running = webapp.running("router").await;
            assert_eq!(running["fallbacks"], 1, "{running}");
            assert!(running["last_error"].as_str().unwrap_or("").contains(failure), "{running}");
            let scrape = webapp.metrics().await;
            assert_eq!(sample(&scrape, r#"shardgate_plugin_fallbacks_total{kind="router"}"#), Some(1.0), "{scrape}");
            let failures = sample(&scrape, r#"shardgate_plugin_failures_total{kind="router"}"#);
            assert_eq!(failures, running["failures"].as_f64(), "{scrape}");
            let loaded = r#"shardgate_plugin_loaded{kind="router",name="hostile",version="1.0.0"}"#;
            assert_eq!(sample(&scrape, loaded), Some(1.0), "{scrape}");
        }
    }
    assert!(sent >= config.max_consecutive_failures, "unloaded after {sent} calls, before its failure budget");
    let listed = webapp.plugins_listed().await;
    let router = listed["plugins"].as_array().unwrap().iter().find(|p| p["kind"] == "router").unwrap();
    assert_eq!(router["default"], true, "{listed}");
    let retired = listed["retired"].as_array().unwrap().iter().find(|p| p["name"] == "hostile").expect("retired");
    assert_eq!(retired["unloaded_for_failures"], true, "{listed}");
    assert!(retired["failures"].as_u64().unwrap() >= u64::from(config.max_consecutive_failures), "{listed}");
    let scrape = webapp.metrics().await;
    let loaded = format!(
        r#"shardgate_plugin_loaded{{kind="router",name="default",version="{}"}}"#,
        router["version"].as_str().unwrap()
    );
    assert_eq!(sample(&scrape, &loaded), Some(1.0), "{scrape}");
    assert_eq!(sample(&scrape, "shardgate_messages_accepted_total"), Some(sent as f64), "{scrape}");
}

#[tokio::test]
async fn looping_router_never_stalls_or_fails_a_message_and_is_unloaded_after_its_failure_budget() {
    hostile_router_is_contained("test-components/hostile-loop.wasm", "deadline", HostConfig::default()).await;
}

#[tokio::test]
async fn trapping_router_never_fails_a_message_and_is_unloaded_after_its_failure_budget() {
    hostile_router_is_contained("test-components/hostile-trap.wasm", "trapped", HostConfig::default()).await;
}

#[tokio::test]
async fn out_of_range_router_never_misroutes_a_message_and_is_unloaded_after_its_failure_budget() {
    hostile_router_is_contained(
        "test-components/hostile-out-of-range.wasm",
        "not below the shard count",
        HostConfig::default(),
    )
    .await;
}

#[tokio::test]
async fn memory_bomb_router_never_fails_a_message_and_is_unloaded_after_its_failure_budget() {
    // Writing 16 MiB can take longer than the default 10 ms deadline on a
    // loaded machine; a longer one makes sure the memory cap is what stops it.
    let config = HostConfig { call_deadline: Duration::from_millis(500), ..HostConfig::default() };
    hostile_router_is_contained("test-components/hostile-membomb.wasm", "memory", config).await;
}

// ---------------------------------------------------------------- the authorizer decides

#[tokio::test]
async fn allowlist_authorizer_lets_loopback_through_and_refuses_other_client_addresses() {
    let webapp = Webapp::start().await;
    webapp.upload_ok("authorizer", "allowlist", component("components/authorizer-allowlist.wasm")).await;
    let calls_before = webapp.plugins.plugin(shardgate_plugins::PluginKind::Authorizer).calls;
    webapp.send_ok("15551234567").await;
    let health = webapp.as_admin(Method::GET, "/v1/health").send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let calls = webapp.plugins.plugin(shardgate_plugins::PluginKind::Authorizer).calls;
    assert!(calls >= calls_before + 2, "the allow-list answered: {calls_before} → {calls}");

    // Loopback is 127.0.0.0/8: a client bound to 127.0.0.2 is not on the list.
    let outsider_addr: IpAddr = "127.0.0.2".parse().unwrap();
    let outsider = reqwest::Client::builder().no_proxy().local_address(outsider_addr).build().unwrap();
    let refused = outsider
        .get(format!("{}/v1/health", webapp.base))
        .bearer_auth(&webapp.admin)
        .send()
        .await
        .expect("127.0.0.2 reaches a loopback listener");
    let (status, code, details) = onprem_error(refused).await;
    assert_eq!((status, code), (StatusCode::FORBIDDEN, 1005));
    assert!(details.contains("127.0.0.2") && details.contains("allow-list"), "{details}");
}

#[tokio::test]
async fn user_role_is_refused_plugins_and_settings_by_the_default_authorizer() {
    let webapp = Webapp::start().await;
    auth::create_user(&webapp.store, "carol", PASSWORD, UserRole::User).await.unwrap();
    let user = webapp.token("carol").await;
    let country = component("components/router-country.wasm");
    let attempts = [
        webapp.request(Method::GET, "/v1/plugins").bearer_auth(&user),
        webapp
            .request(Method::PUT, "/v1/plugins/router?name=country&version=1")
            .bearer_auth(&user)
            .header("content-type", "application/wasm")
            .body(country),
        webapp.request(Method::DELETE, "/v1/plugins/router").bearer_auth(&user),
        webapp.request(Method::GET, "/v1/settings/application").bearer_auth(&user),
    ];
    for attempt in attempts {
        let (status, code, details) = onprem_error(attempt.send().await.unwrap()).await;
        assert_eq!((status, code), (StatusCode::FORBIDDEN, 1005), "{details}");
        assert!(details.contains("admin"), "{details}");
    }
    assert!(webapp.store.plugin_digests().await.unwrap().is_empty());
    assert_eq!(webapp.running("router").await["default"], true);
    let listed = webapp.plugins_listed().await;
    let kinds: Vec<&str> = listed["plugins"].as_array().unwrap().iter().map(|p| p["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["router", "authorizer", "health-policy"], "the admin sees every kind");
}

#[tokio::test]
async fn metrics_answer_the_api_key_count_accepted_messages_and_refuse_anonymous_callers() {
    let webapp = Webapp::start().await;
    let scrape = webapp.metrics().await;
    assert_eq!(sample(&scrape, "shardgate_messages_accepted_total"), Some(0.0), "{scrape}");
    for kind in ["router", "authorizer", "health-policy"] {
        let loaded = format!(r#"shardgate_plugin_loaded{{kind="{kind}",name="default""#);
        assert!(scrape.contains(&loaded), "{scrape}");
    }
    webapp.send_ok("15551234567").await;
    let scrape = webapp.metrics().await;
    assert_eq!(sample(&scrape, "shardgate_messages_accepted_total"), Some(1.0), "{scrape}");
    assert!(sample(&scrape, r#"shardgate_plugin_calls_total{kind="router"}"#).unwrap() >= 1.0, "{scrape}");
    let anonymous = webapp.request(Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(onprem_error(anonymous).await.0, StatusCode::UNAUTHORIZED);
    let wrong_key = webapp.request(Method::GET, "/metrics").header("authorization", "Apikey nope").send().await;
    assert_eq!(onprem_error(wrong_key.unwrap()).await.0, StatusCode::UNAUTHORIZED);
}

// ---------------------------------------------------------------- policies in AppState

/// A router that refuses every message.
struct RefuseAll;

impl RoutingPolicy for RefuseAll {
    fn route(&self, message: &RouteRequest, _shards: u32) -> Route {
        Route::Refuse(format!("{} is embargoed", message.recipient))
    }
}

#[tokio::test]
async fn router_refusal_is_a_400_with_its_reason_and_stores_nothing() {
    let webapp = Webapp::start_with(HostConfig::default(), |state| {
        state.with_policies(Arc::new(RefuseAll), Arc::new(OnPremAuthorizer) as Arc<dyn AuthorizationPolicy>)
    })
    .await;
    let (status, code, details) = onprem_error(webapp.send("15551234567").await).await;
    assert_eq!((status, code), (StatusCode::BAD_REQUEST, 1009));
    assert!(details.contains("15551234567 is embargoed"), "{details}");
    for shard in 0..SHARDS {
        assert!(webapp.store.pending_messages(shard, 10).await.unwrap().is_empty());
    }
}
