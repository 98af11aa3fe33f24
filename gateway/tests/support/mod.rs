//! What the REST API test suites share: a webapp on a real TCP listener over
//! its own SQLite database and media directory, an HTTP client, and the
//! on-prem error assertion. Each suite uses part of it, hence the
//! `dead_code` allowance (every test file compiles this module on its own).
#![allow(dead_code)]

pub mod raw_http;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use shardgate_core::control::{ControlClient, HeldShard, NodeStatus, Wake};
use shardgate_core::control_auth::{require_cluster_secret, ClusterSecret, ControlGuard};
use shardgate_core::media_dir::MediaDir;
use shardgate_core::store::nodes::NodeRecord;
use shardgate_core::store::Store;
use shardgate_core::testing::sqlite_cluster_store;
use shardgate_gateway::auth;
use shardgate_gateway::{router, AppState};
use shardgate_plugins::{HostConfig, PluginHost};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const API_KEY: &str = "test-api-key";
pub const NEW_PASSWORD: &str = "Str0ng!Passw0rd";
pub const SHARDS: u32 = 2;

/// A webapp serving on 127.0.0.1, over its own SQLite database.
pub struct Webapp {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Its database.
    pub store: Store,
    /// A client without proxies.
    pub http: reqwest::Client,
    /// Its data directory (database, media), removed on drop.
    pub dir: PathBuf,
}

impl Drop for Webapp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Webapp {
    pub async fn start() -> Webapp {
        let dir = std::env::temp_dir().join(format!("shardgate-gateway-test-{}", uuid::Uuid::new_v4().simple()));
        let store = sqlite_cluster_store(&dir, SHARDS).await.unwrap();
        auth::ensure_default_admin(&store).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let plugins = PluginHost::new(HostConfig::default()).unwrap();
        let media = MediaDir::create(dir.join("media")).unwrap();
        let state = AppState::new(store.clone(), media, test_control(), Some(API_KEY.into()), "webapp-test", plugins);
        let app = router(state);
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        Webapp { base: format!("http://{addr}"), store, http, dir }
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    pub async fn login(&self, user: &str, password: &str, body: Option<Value>) -> reqwest::Response {
        let mut request = self.request(Method::POST, "/v1/users/login").basic_auth(user, Some(password));
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    /// Changes the default admin password and returns a token.
    pub async fn admin_token(&self) -> String {
        let response = self.login("admin", "secret", Some(json!({"new_password": NEW_PASSWORD}))).await;
        assert_eq!(response.status(), StatusCode::OK);
        token_of(response).await
    }

    pub async fn post_message(&self, token: &str, body: &Value) -> reqwest::Response {
        self.request(Method::POST, "/v1/messages").bearer_auth(token).json(body).send().await.unwrap()
    }

    pub async fn pending_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        for shard in 0..SHARDS {
            ids.extend(self.store.pending_messages(shard, 1000).await.unwrap().into_iter().map(|m| m.id));
        }
        ids
    }
}

pub async fn token_of(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap();
    body["users"][0]["token"].as_str().unwrap().to_string()
}

/// Asserts the on-prem error shape and returns (status, code, details).
pub async fn onprem_error(response: reqwest::Response) -> (StatusCode, u64, String) {
    let status = response.status();
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("application/json"), "{status}: content type {content_type}");
    let body: Value = response.json().await.unwrap();
    let errors = body["errors"].as_array().unwrap_or_else(|| panic!("no errors array in {body}"));
    assert_eq!(errors.len(), 1, "{body}");
    let error = errors[0].as_object().unwrap();
    assert_eq!(error.len(), 3, "{body}");
    assert!(error["title"].as_str().is_some_and(|t| !t.is_empty()), "{body}");
    let details = error["details"].as_str().unwrap_or_else(|| panic!("no details in {body}"));
    (status, error["code"].as_u64().unwrap(), details.to_string())
}

pub fn text_message(to: &str, body: &str) -> Value {
    json!({"to": to, "type": "text", "recipient_type": "individual", "text": {"body": body}})
}

/// The cluster secret of the test webapp and of the fake control APIs.
pub fn test_secret() -> ClusterSecret {
    ClusterSecret::new("gateway-tests-cluster-secret").unwrap()
}

/// The webapp's control client, carrying [`test_secret`].
pub fn test_control() -> ControlClient {
    ControlClient::new(&test_secret())
}

/// A node's control API that reports `status` and records the wakes it gets;
/// like a real node's, it answers only calls that carry the cluster secret.
pub async fn fake_control_api(status: NodeStatus) -> (String, Arc<Mutex<Vec<u32>>>) {
    use axum::routing::{get, post};
    let wakes = Arc::new(Mutex::new(Vec::new()));
    let recorded = wakes.clone();
    let app = axum::Router::new()
        .route("/control/status", get(move || async move { axum::Json(status) }))
        .route(
            "/control/wake",
            post(move |axum::Json(wake): axum::Json<Wake>| async move {
                recorded.lock().unwrap().push(wake.shard);
            }),
        )
        .layer(axum::middleware::from_fn_with_state(ControlGuard::new(test_secret()), require_cluster_secret));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, wakes)
}

pub fn coreapp_status(node_id: &str) -> NodeStatus {
    NodeStatus {
        node_id: node_id.into(),
        instance_id: "i-1".into(),
        role: "coreapp".into(),
        gateway_status: "connected".into(),
        version: "9.9.9".into(),
        image_version: Some("9.9.9-1".into()),
        pid: 4242,
        shards: vec![HeldShard { shard: 1, epoch: 3, session_open: true, session_down_ms: 0, frames_skipped: 0 }],
        master_epoch: None,
        settings_version: 7,
        uptime_s: 12.5,
    }
}

pub fn node_record(node_id: &str, role: &str, control_addr: &str) -> NodeRecord {
    NodeRecord {
        node_id: node_id.into(),
        role: role.into(),
        instance_id: "i-1".into(),
        control_addr: control_addr.into(),
        version: shardgate_core::VERSION.into(),
        pid: 4242,
        started_at: 0,
        last_seen: 0,
    }
}

impl Webapp {
    /// Its media directory.
    pub fn media_dir(&self) -> PathBuf {
        self.dir.join("media")
    }

    /// Makes a fake coreapp the owner of every shard and returns the shards
    /// it is woken for, in order.
    pub async fn owned_by_fake_coreapp(&self) -> Arc<Mutex<Vec<u32>>> {
        let (addr, wakes) = fake_control_api(coreapp_status("core-a")).await;
        self.store.register_node(&node_record("core-a", "coreapp", &addr)).await.unwrap();
        let auth = self.store.try_acquire_master_lease("master-test", Duration::from_secs(30)).await.unwrap().unwrap();
        for row in self.store.shard_map().await.unwrap().rows {
            assert!(self.store.reassign_shard(row.shard, row.version, "core-a", 0, &auth).await.unwrap());
        }
        wakes
    }
}

/// Waits up to a second for `shard` to be among `wakes`.
pub async fn woken(wakes: &Mutex<Vec<u32>>, shard: u32) -> bool {
    for _ in 0..50 {
        if wakes.lock().unwrap().contains(&shard) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
