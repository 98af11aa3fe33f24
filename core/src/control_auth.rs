//! Authentication of the control plane: every control request (heartbeats,
//! status, wake-ups) carries the cluster secret as `Authorization: Bearer
//! <secret>`, and every control server checks it in one layer before any
//! handler runs.
//!
//! The control ports bind `0.0.0.0:6252` by default, because masters,
//! coreapps and webapps on other hosts must reach them; whoever else reaches
//! them would otherwise read pids and epochs and send wake-ups at will. The
//! secret is deployment configuration (`SHARDGATE_CLUSTER_SECRET`), the same
//! on every master, coreapp and webapp; a production role refuses to start
//! without it.

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// The environment variable that holds the secret.
pub const SECRET_ENV: &str = "SHARDGATE_CLUSTER_SECRET";

/// Shortest secret accepted: 16 characters.
pub const MIN_SECRET_LEN: usize = 16;

/// The secret the nodes of one cluster share. Its `Debug` never shows it.
#[derive(Clone)]
pub struct ClusterSecret {
    value: Arc<str>,
    /// SHA-256 of the value: presented secrets are hashed and the digests
    /// compared, so the comparison takes the same time whatever the length.
    digest: [u8; 32],
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(<redacted>)")
    }
}

impl ClusterSecret {
    /// Checks a configured secret: at least [`MIN_SECRET_LEN`] printable
    /// ASCII characters without spaces (it travels in an HTTP header). The
    /// error names the variable and never repeats the value.
    pub fn new(value: &str) -> Result<ClusterSecret, String> {
        if value.len() < MIN_SECRET_LEN {
            return Err(format!(
                "{SECRET_ENV} is too short ({} characters): use at least {MIN_SECRET_LEN}, e.g. `openssl rand -hex 32`",
                value.chars().count()
            ));
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("{SECRET_ENV} may hold only printable ASCII characters without spaces"));
        }
        Ok(ClusterSecret { value: Arc::from(value), digest: Sha256::digest(value.as_bytes()).into() })
    }

    /// A fresh random secret (256 bits, hex), as `shardgate dev` gives its cluster.
    pub fn generate() -> ClusterSecret {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        ClusterSecret::new(&hex).expect("64 hex digits are a valid secret")
    }

    /// The secret itself, to hand to child processes.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// The `Authorization` header value every control request carries.
    pub fn header_value(&self) -> HeaderValue {
        let mut value =
            HeaderValue::from_str(&format!("Bearer {}", self.value)).expect("checked to be printable ASCII");
        value.set_sensitive(true);
        value
    }

    /// Whether `presented` (the raw `Authorization` header) carries this
    /// secret, in time independent of where or whether they differ.
    pub fn accepts(&self, presented: &[u8]) -> bool {
        let token = presented.strip_prefix(b"Bearer ").unwrap_or(b"");
        let digest: [u8; 32] = Sha256::digest(token).into();
        bool::from(digest.ct_eq(&self.digest))
    }
}

/// The `--cluster-secret` option every master, coreapp and webapp reads.
#[derive(Clone, Default, clap::Args)]
pub struct ClusterSecretArgs {
    /// Secret shared by every master, coreapp and webapp of the cluster (at least 16
    /// characters); every control request carries it. Required.
    #[arg(long = "cluster-secret", env = SECRET_ENV, hide_env_values = true)]
    pub cluster_secret: Option<String>,
}

impl std::fmt::Debug for ClusterSecretArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = if self.cluster_secret.is_some() { "<redacted>" } else { "None" };
        f.debug_struct("ClusterSecretArgs").field("cluster_secret", &set).finish()
    }
}

impl ClusterSecretArgs {
    /// The secret, or the one line that stops a node started without a usable one.
    pub fn require(&self) -> Result<ClusterSecret, String> {
        match self.cluster_secret.as_deref() {
            None | Some("") => Err(format!(
                "{SECRET_ENV} is not set: every master, coreapp and webapp of a cluster needs the same cluster \
                 secret (or --cluster-secret), at least {MIN_SECRET_LEN} characters, e.g. `openssl rand -hex 32`"
            )),
            Some(value) => ClusterSecret::new(value),
        }
    }
}

/// How often a rejected control request may be logged: a flood is summed up,
/// one line per interval, instead of filling the disk.
const REJECTION_LOG_EVERY: Duration = Duration::from_secs(10);

/// The state of the control servers' auth layer: the secret, and the count of
/// requests it turned away.
pub struct ControlGuard {
    secret: ClusterSecret,
    rejected: AtomicU64,
    log: LogThrottle,
}

impl ControlGuard {
    /// A guard admitting requests that carry `secret`.
    pub fn new(secret: ClusterSecret) -> Arc<ControlGuard> {
        Arc::new(ControlGuard { secret, rejected: AtomicU64::new(0), log: LogThrottle::new(REJECTION_LOG_EVERY) })
    }

    /// Requests turned away since the node started.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
}

/// The layer every control router is wrapped in: a request without the
/// cluster secret gets 401 before any handler (or body extractor) runs.
pub async fn require_cluster_secret(State(guard): State<Arc<ControlGuard>>, request: Request, next: Next) -> Response {
    let presented = request.headers().get(header::AUTHORIZATION);
    if presented.is_some_and(|v| guard.secret.accepts(v.as_bytes())) {
        return next.run(request).await;
    }
    let total = guard.rejected.fetch_add(1, Ordering::Relaxed) + 1;
    if let Some(suppressed) = guard.log.admit() {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "an unknown peer".to_string(), |c| c.0.to_string());
        let why = if presented.is_some() { "a wrong" } else { "no" };
        tracing::warn!(
            "control request {} {} from {peer} rejected (401): {why} cluster secret ({SECRET_ENV}); \
             {total} rejected since start, {suppressed} not logged since the last line",
            request.method(),
            request.uri().path(),
        );
    }
    unauthorized()
}

fn unauthorized() -> Response {
    let body = axum::Json(serde_json::json!({"errors": [{
        "code": 401,
        "title": "Unauthorized",
        "details": format!("control requests must carry the cluster secret ({SECRET_ENV}) as `Authorization: Bearer <secret>`"),
    }]}));
    let mut response = (StatusCode::UNAUTHORIZED, body).into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"shardgate-control\""));
    response
}

/// Admits one log line per interval and counts the ones it held back.
pub struct LogThrottle {
    every_ms: u64,
    start: Instant,
    /// Milliseconds since `start` before which no line is admitted.
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl LogThrottle {
    /// At most one line per `every`; the first is admitted at once.
    pub fn new(every: Duration) -> LogThrottle {
        LogThrottle {
            every_ms: u64::try_from(every.as_millis()).unwrap_or(u64::MAX),
            start: Instant::now(),
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(lines held back since the last one)` when a line may be written now.
    pub fn admit(&self) -> Option<u64> {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let next = self.next_ms.load(Ordering::Relaxed);
        if now >= next
            && self
                .next_ms
                .compare_exchange(next, now.saturating_add(self.every_ms), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_secret_as_a_bearer_token_is_accepted() {
        let secret = ClusterSecret::new("0123456789abcdef-cluster").unwrap();
        assert!(secret.accepts(b"Bearer 0123456789abcdef-cluster"));
        for wrong in [&b""[..], b"Bearer ", b"0123456789abcdef-cluster", b"Bearer 0123456789abcdef-cluste", b"Bearer x"]
        {
            assert!(!secret.accepts(wrong), "{}", String::from_utf8_lossy(wrong));
        }
        assert!(secret.accepts(secret.header_value().as_bytes()));
    }

    #[test]
    fn a_missing_short_or_spaced_secret_is_refused_naming_the_variable_without_echoing_it() {
        let missing = ClusterSecretArgs { cluster_secret: None }.require().unwrap_err();
        assert!(missing.contains(SECRET_ENV) && missing.contains("not set"), "{missing}");
        let short = ClusterSecretArgs { cluster_secret: Some("hunter2".into()) }.require().unwrap_err();
        assert!(short.contains(SECRET_ENV) && short.contains("16") && !short.contains("hunter2"), "{short}");
        let spaced = ClusterSecret::new("a secret with spaces in it").unwrap_err();
        assert!(spaced.contains(SECRET_ENV), "{spaced}");
        let args = ClusterSecretArgs { cluster_secret: Some("0123456789abcdef".into()) };
        assert!(!format!("{args:?} {:?}", args.require().unwrap()).contains("0123456789abcdef"));
    }

    #[test]
    fn generated_secrets_are_long_and_differ() {
        let (a, b) = (ClusterSecret::generate(), ClusterSecret::generate());
        assert_eq!(a.expose().len(), 64);
        assert_ne!(a.expose(), b.expose());
    }

    /// A control server that answers status only to callers with `secret`.
    async fn guarded_status_server(secret: &ClusterSecret) -> String {
        use crate::control::NodeStatus;
        let status = NodeStatus {
            node_id: "core-a".into(),
            instance_id: "i".into(),
            role: "coreapp".into(),
            gateway_status: "connected".into(),
            version: crate::VERSION.into(),
            image_version: None,
            pid: 1,
            shards: Vec::new(),
            master_epoch: None,
            settings_version: 0,
            uptime_s: 0.0,
        };
        let app = axum::Router::new()
            .route("/control/status", axum::routing::get(move || async move { axum::Json(status) }))
            .layer(axum::middleware::from_fn_with_state(ControlGuard::new(secret.clone()), require_cluster_secret));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    #[tokio::test]
    async fn a_node_that_rejects_our_secret_is_unauthorized_to_the_client_not_refused() {
        use crate::control::{ControlClient, ControlError};
        let secret = ClusterSecret::generate();
        let addr = guarded_status_server(&secret).await;
        let timeout = Duration::from_secs(5);
        let ours = ControlClient::new(&secret).status(&addr, timeout).await.expect("the secret is accepted");
        assert_eq!(ours.node_id, "core-a");
        match ControlClient::new(&ClusterSecret::generate()).status(&addr, timeout).await {
            Err(ControlError::Unauthorized(a)) => assert_eq!(a, addr),
            other => panic!("a wrong secret must read as Unauthorized, got {other:?}"),
        }
        let wake = ControlClient::new(&ClusterSecret::generate()).wake(&addr, 0, timeout).await;
        assert!(matches!(wake, Err(ControlError::Unauthorized(_))), "{wake:?}");
    }

    #[test]
    fn the_log_throttle_admits_one_line_per_interval_and_counts_the_rest() {
        let throttle = LogThrottle::new(Duration::from_secs(3600));
        assert_eq!(throttle.admit(), Some(0));
        for _ in 0..1000 {
            assert_eq!(throttle.admit(), None);
        }
        throttle.next_ms.store(0, Ordering::Relaxed);
        assert_eq!(throttle.admit(), Some(1000));
    }
}
