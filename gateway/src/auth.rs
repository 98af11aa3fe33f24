//! Who is calling and whether they may: passwords, bearer tokens, the API
//! key, and the two layers every request but login passes:
//! 1. [`authenticate`] turns the credentials into a [`Caller`] (or refuses
//!    bad ones with 401): a request without any is an anonymous caller;
//! 2. [`authorize`] asks the authorization policy (the authorizer plugin)
//!    whether that caller may make this request. It is the one place that
//!    decides by path: the default plugin keeps the API key to health,
//!    metrics and stats and the settings, plugins and account endpoints to
//!    admins, as in the on-prem client. The one rule below the path is the
//!    user endpoints' (`api::users`: an admin manages users, a user only
//!    itself), which their handlers keep so that no plugin can hand it out.
//!
//! - Passwords are stored as argon2 PHC strings; hashing runs on the blocking
//!   pool so that a login never stalls the API, one hash per core at most and
//!   a bounded queue, so that a login flood cannot exhaust memory.
//! - Tokens are 32 random bytes (base64url); the store keeps only their
//!   SHA-256, so a database dump yields no usable token. Their users are
//!   cached for a second ([`crate::token_cache`]).

use crate::error::{ApiError, ErrorKind};
use crate::state::AppState;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rand::RngCore;
use shardgate_core::digest::sha256_hex;
use shardgate_core::policy::{AuthRequest, AuthVerdict, Principal, UserRole};
use shardgate_core::store::users::UserRecord;
use shardgate_core::store::Store;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// The user created at first start, as in the on-prem client.
pub const DEFAULT_ADMIN: &str = "admin";
/// Its password, which the first login must change.
pub const DEFAULT_PASSWORD: &str = "secret";

/// The authenticated caller of a request, put there by [`authenticate`]:
/// the policy's [`Principal`], as an extractor for handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::internal("a handler that needs a caller is mounted outside the auth layer"))
    }
}

/// Request headers the authorizer is shown (names are lower case in `HeaderMap`).
/// Never `authorization`: a plugin must not see credentials.
const HEADERS_FOR_AUTHORIZER: [header::HeaderName; 4] = [
    header::CONTENT_TYPE,
    header::USER_AGENT,
    header::HeaderName::from_static("x-forwarded-for"),
    header::HeaderName::from_static("x-real-ip"),
];

/// The client address shown to the authorizer when the server was not
/// started with connect info (in-process tests and benchmarks).
pub const UNKNOWN_CLIENT: &str = "unknown";

/// Tower middleware: authenticates the request and stores its [`Caller`].
/// Bad credentials are refused here (401); a request without credentials
/// goes on as an anonymous caller, for the authorizer to refuse.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let caller = if request.headers().contains_key(header::AUTHORIZATION) {
        let (scheme, credentials) = authorization(request.headers())?;
        if scheme.eq_ignore_ascii_case("bearer") {
            bearer_caller(&state, credentials).await?
        } else if scheme.eq_ignore_ascii_case("apikey") {
            let configured = state.api_key.as_deref().unwrap_or("");
            if configured.is_empty() || !bool::from(configured.as_bytes().ct_eq(credentials.as_bytes())) {
                return Err(ApiError::unauthenticated("the API key is not valid"));
            }
            Caller(Principal::ApiKey)
        } else {
            return Err(ApiError::unauthenticated(format!(
                "unknown authorization scheme {scheme:?}; use Authorization: Bearer <token>"
            )));
        }
    } else {
        Caller(Principal::Anonymous)
    };
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}

/// Tower middleware, inside [`authenticate`]: asks the authorization policy
/// whether the [`Caller`] may make this request, and answers its denial in
/// the on-prem format (401 and 403 as 1005, 429 as 1015).
///
/// The policy call is synchronous and runs on this worker thread: a plugin
/// call takes microseconds, and a plugin that loops is interrupted at the
/// host's deadline (10 ms by default) and answered for by the native rule.
pub async fn authorize(State(state): State<AppState>, request: Request, next: Next) -> Result<Response, ApiError> {
    let caller = request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| ApiError::internal("the authorization layer is mounted outside the authentication layer"))?;
    let asked = auth_request(&request);
    match state.authorizer.authorize(&caller.0, &asked) {
        AuthVerdict::Allow => Ok(next.run(request).await),
        AuthVerdict::Deny { status, reason } => {
            let kind = match status {
                401 => ErrorKind::Unauthenticated,
                429 => ErrorKind::TooManyRequests,
                _ => ErrorKind::Forbidden,
            };
            Err(ApiError::new(kind, reason))
        }
    }
}

/// The request as the authorizer sees it: method, path, a few headers, and
/// the peer's IP address (IPv4-mapped IPv6 addresses as IPv4).
fn auth_request(request: &Request) -> AuthRequest {
    let headers = HEADERS_FOR_AUTHORIZER
        .iter()
        .filter_map(|name| {
            let value = request.headers().get(name)?.to_str().ok()?;
            Some((name.as_str().to_string(), value.to_string()))
        })
        .collect();
    let client_addr = ClientAddr::of(request.extensions()).to_string();
    AuthRequest {
        method: request.method().as_str().to_string(),
        path: request.uri().path().to_string(),
        headers,
        client_addr,
    }
}

/// The scheme and credentials of the `Authorization` header.
fn authorization(headers: &HeaderMap) -> Result<(&str, &str), ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::unauthenticated(
                "this endpoint needs Authorization: Bearer <token>; get a token from POST /v1/users/login",
            )
        })?
        .to_str()
        .map_err(|_| ApiError::unauthenticated("the Authorization header is not readable text"))?;
    let (scheme, credentials) = value
        .trim()
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthenticated("the Authorization header must be '<scheme> <credentials>'"))?;
    Ok((scheme, credentials.trim()))
}

/// The user of a bearer token: from the token cache, or from the database
/// (and then cached).
async fn bearer_caller(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    let hash = token_hash(token);
    let user = match state.tokens.get(&hash) {
        Some(user) => user,
        None => {
            let lookup = state.tokens.lookup();
            let user = state
                .store
                .token_user(&hash)
                .await?
                .ok_or_else(|| ApiError::unauthenticated("the token is unknown or expired; log in again"))?;
            state.tokens.insert(lookup, hash, user.clone());
            user
        }
    };
    if user.must_change {
        return Err(ApiError::new(
            ErrorKind::PasswordChangeRequired,
            format!("the password of {} must be changed before anything else: log in with new_password", user.username),
        ));
    }
    Ok(Caller(Principal::User { role: UserRole::from_stored(&user.role), name: user.username }))
}

/// The token of an `Authorization: Bearer` header, if the request has one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let (scheme, token) = authorization(headers).ok()?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The user name and password of an `Authorization: Basic` header.
pub fn basic_credentials(headers: &HeaderMap) -> Result<(String, String), ApiError> {
    let refused = || {
        ApiError::unauthenticated(
            "login needs HTTP Basic authentication: Authorization: Basic base64(username:password)",
        )
    };
    let (scheme, encoded) = authorization(headers).map_err(|_| refused())?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(refused());
    }
    let decoded = STANDARD.decode(encoded).map_err(|_| refused())?;
    let decoded = String::from_utf8(decoded).map_err(|_| refused())?;
    let (user, password) = decoded.split_once(':').ok_or_else(refused)?;
    Ok((user.to_string(), password.to_string()))
}

/// The reasons `password` breaks the on-prem password rules; empty when it is acceptable.
pub fn password_problems(password: &str) -> Vec<&'static str> {
    let length = password.chars().count();
    let mut problems = Vec::new();
    if !(8..=64).contains(&length) {
        problems.push("it must be 8 to 64 characters long");
    }
    if !password.chars().any(|c| c.is_ascii_digit()) {
        problems.push("it must contain a digit");
    }
    if !password.chars().any(char::is_uppercase) {
        problems.push("it must contain an upper-case letter");
    }
    if !password.chars().any(char::is_lowercase) {
        problems.push("it must contain a lower-case letter");
    }
    if !password.chars().any(|c| !c.is_alphanumeric() && !c.is_whitespace()) {
        problems.push("it must contain a special character such as !@#$%&*");
    }
    problems
}

/// `user` if `password` is theirs. An unknown user (`None`) costs the same
/// hash verification as a known one, so that response times do not tell
/// which user names exist.
pub async fn check_password(user: Option<UserRecord>, password: &str) -> Result<Option<UserRecord>, ApiError> {
    static UNKNOWN_USER_HASH: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    let stored_hash = match &user {
        Some(user) => user.password_hash.clone(),
        None => UNKNOWN_USER_HASH.get_or_try_init(|| async { hash_password(&new_token()).await }).await?.clone(),
    };
    let matches = verify_password(password, &stored_hash).await?;
    Ok(user.filter(|_| matches))
}

/// The IP address of the client as the server saw it (IPv4-mapped IPv6
/// addresses as IPv4); `None` when the server was not started with connect
/// info (in-process tests and benchmarks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub Option<IpAddr>);

impl ClientAddr {
    fn of(extensions: &axum::http::Extensions) -> ClientAddr {
        ClientAddr(extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| peer.ip().to_canonical()))
    }
}

impl std::fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ip) => write!(f, "{ip}"),
            None => f.write_str(UNKNOWN_CLIENT),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr::of(&parts.extensions))
    }
}

/// How many password hashes may wait for a hashing slot; past that a login
/// is answered 429 at once instead of queueing without bound.
pub const HASH_QUEUE: usize = 32;

/// Password hashing is the one thing an unauthenticated caller can make the
/// node do that costs real memory (argon2's default, 19 MiB per hash) and a
/// core's worth of CPU. So at most one hash per core runs (on the blocking
/// pool, off the async workers), at most [`HASH_QUEUE`] wait, and any more
/// are refused at once: memory stays bounded whatever the flood.
struct HashingSlots {
    /// One permit per hash running.
    running: Arc<Semaphore>,
    /// One permit per hash running or waiting.
    admitted: Arc<Semaphore>,
}

static HASHING: LazyLock<HashingSlots> = LazyLock::new(|| {
    keep_large_blocks_out_of_arenas();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    HashingSlots { running: Arc::new(Semaphore::new(cores)), admitted: Arc::new(Semaphore::new(cores + HASH_QUEUE)) }
});

/// argon2 allocates its 19 MiB as one block per hash. glibc serves the
/// second and later such blocks from the hashing thread's arena (its mmap
/// threshold rises to the largest block freed) and keeps them resident after
/// the hash: a login flood spread over the blocking pool's threads once left
/// 360 MiB behind for good. A fixed threshold keeps every block of 1 MiB or
/// more in its own mapping, which goes back to the OS when the hash ends.
fn keep_large_blocks_out_of_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of the allocator; it is thread-safe.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Runs `hash` on the blocking pool once a hashing slot is free, or refuses
/// with 429 when too many already wait. The slot is held by the blocking task
/// itself, so a client that hangs up does not free it before the hash ends.
async fn run_hash<T: Send + 'static>(hash: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    let admitted = HASHING.admitted.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(ErrorKind::TooManyRequests, "the node is busy checking passwords; retry in a few seconds")
    })?;
    let running = HASHING.running.clone().acquire_owned().await.map_err(ApiError::internal)?;
    tokio::task::spawn_blocking(move || {
        let _slots = (admitted, running);
        hash()
    })
    .await
    .map_err(ApiError::internal)
}

/// Hashes a password (argon2id, random salt) into a PHC string.
pub async fn hash_password(password: &str) -> Result<String, ApiError> {
    let password = password.to_string();
    run_hash(move || {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(ApiError::internal)?;
        Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(ApiError::internal)
    })
    .await?
}

/// Whether `password` matches a stored PHC hash.
pub async fn verify_password(password: &str, stored_hash: &str) -> Result<bool, ApiError> {
    let (password, stored_hash) = (password.to_string(), stored_hash.to_string());
    run_hash(move || {
        let parsed = PasswordHash::new(&stored_hash).map_err(ApiError::internal)?;
        Ok(Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
    })
    .await?
}

/// A fresh bearer token: 32 random bytes, base64url.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the store keeps of a token: its SHA-256, hex.
pub fn token_hash(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

/// Creates `admin`/`secret` (password change required) unless it exists.
/// Safe to run from any number of webapps at once.
pub async fn ensure_default_admin(store: &Store) -> anyhow::Result<()> {
    if store.user(DEFAULT_ADMIN).await?.is_some() {
        return Ok(());
    }
    let password_hash = hash_password(DEFAULT_PASSWORD).await?;
    let admin = UserRecord {
        username: DEFAULT_ADMIN.to_string(),
        password_hash,
        role: UserRole::Admin.as_str().to_string(),
        must_change: true,
    };
    store.ensure_user(&admin).await?;
    Ok(())
}

/// Creates a user with an already chosen password (no change required).
pub async fn create_user(store: &Store, username: &str, password: &str, role: UserRole) -> anyhow::Result<()> {
    let user = UserRecord {
        username: username.to_string(),
        password_hash: hash_password(password).await?,
        role: role.as_str().to_string(),
        must_change: false,
    };
    store.ensure_user(&user).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_rules_name_every_broken_rule() {
        assert!(password_problems("Str0ng!pass").is_empty());
        assert_eq!(password_problems("S0!a").len(), 1);
        assert_eq!(password_problems("secret").len(), 4);
        assert_eq!(password_problems(&format!("Aa1!{}", "x".repeat(61))).len(), 1);
    }

    #[test]
    fn token_is_43_base64url_chars_and_hashes_to_64_hex() {
        let token = new_token();
        assert_eq!(token.len(), 43);
        assert_ne!(token, new_token());
        assert_eq!(token_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn authorizer_sees_selected_headers_never_credentials_and_the_peer_ip() {
        let mut request = Request::builder()
            .method("PATCH")
            .uri("/v1/settings/application?x=1")
            .header("authorization", "Bearer secret-token")
            .header("user-agent", "curl/8")
            .header("x-forwarded-for", "10.0.0.9")
            .header("cookie", "c=1")
            .body(axum::body::Body::empty())
            .unwrap();
        let asked = auth_request(&request);
        assert_eq!((asked.method.as_str(), asked.path.as_str()), ("PATCH", "/v1/settings/application"));
        assert_eq!(asked.client_addr, UNKNOWN_CLIENT);
        let names: Vec<&str> = asked.headers.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["user-agent", "x-forwarded-for"]);
        let peer: SocketAddr = "[::ffff:192.0.2.7]:4000".parse().unwrap();
        request.extensions_mut().insert(ConnectInfo(peer));
        assert_eq!(auth_request(&request).client_addr, "192.0.2.7");
    }
}
