//! `upstream-sim`: a strict stand-in for the messaging network, and the judge
//! of correctness in every cluster test.
//!
//! A crate of its own, depending on `shardgate-core` for the wire protocol and
//! never the reverse: the dependency graph shows that nothing in production
//! (core, gateway, plugins) can use the sim. Only the `shardgate` binary
//! (`upstream-sim` role, `shardgate dev`) and tests do.
//!
//! - [`state`]: the rules (one session per shard, conflicts, bans, message
//!   dedupe, the verdict on each message, routing of receipts) as a plain
//!   struct, unit-tested without sockets. It holds the network's knowledge,
//!   one module each:
//!   - [`contacts`]: which numbers exist;
//!   - [`templates`]: the approved message templates;
//!   - [`media`]: chunked uploads and the per-account media store;
//!   - [`inbound`]: messages users send to an account, and its read marks.
//! - [`messages`]: the shape of an outbound message object, as the network
//!   checks it.
//! - `session`: one TCP connection speaking
//!   [`protocol`](shardgate_core::upstream::protocol): handshake, keepalive,
//!   sends, read marks, uploads, contact checks, and the acks and receipts
//!   that follow.
//! - `inspect`: the JSON inspection API over HTTP, from which tests read the
//!   verdict (conflicts, bans, resends, duplicate deliveries, failures) and
//!   set up the network (templates, numbers, inbound messages).
//! - [`faults`]: misbehaviour switched on through that API.
//!
//! [`start`] runs a sim inside the caller's runtime (in-process tests,
//! `tests/upstream_sim.rs`); [`run`] is the `upstream-sim` role of the binary.
//! `docs/upstream-sim.md` is the user's guide.

pub mod contacts;
pub mod faults;
pub mod inbound;
mod inspect;
pub mod media;
pub mod messages;
mod session;
pub mod state;
pub mod templates;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use contacts::{DirectoryUpdate, DirectoryView};
pub use faults::{Faults, FaultsUpdate};
pub use inbound::{InboundRecord, InjectedMedia, MarkReadRecord};
pub use media::{MediaRecord, MediaRefusal, MediaSessionRecord};
pub use state::{BanRecord, ConflictRecord, InjectedInbound, MessageRecord, SessionRecord, SimStats};
use state::{SimState, Timings};
pub use templates::TemplateRecord;

/// Settings of one sim; also the `upstream-sim` command line.
#[derive(Debug, Clone, clap::Args)]
pub struct SimConfig {
    /// Address for upstream sessions (the coreapps connect here).
    #[arg(long = "listen", env = "SIM_LISTEN", default_value = "127.0.0.1:5222")]
    pub session_listen: SocketAddr,
    /// Address for the JSON inspection API.
    #[arg(long = "http-listen", env = "SIM_HTTP_LISTEN", default_value = "127.0.0.1:5280")]
    pub http_listen: SocketAddr,
    /// Seconds without a pong before the sim closes a session (fractional allowed).
    #[arg(long, env = "SIM_SESSION_TIMEOUT", default_value = "10")]
    pub session_timeout: f64,
    /// Seconds an account stays banned after 3 conflicts in 10 minutes.
    #[arg(long, env = "SIM_BAN_DURATION", default_value = "3600")]
    pub ban_duration: f64,
    /// Milliseconds between ack and the delivered/read receipts.
    #[arg(long, env = "SIM_RECEIPT_DELAY_MS", default_value = "50")]
    pub receipt_delay_ms: u64,
}

impl SimConfig {
    /// Loopback on ports the OS picks, with the default timings: what
    /// in-process tests start and then adjust.
    pub fn ephemeral() -> Self {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        SimConfig {
            session_listen: loopback,
            http_listen: loopback,
            session_timeout: 10.0,
            ban_duration: 3600.0,
            receipt_delay_ms: 50,
        }
    }
}

/// A running sim. Dropping it stops the listeners and closes every session.
#[derive(Debug)]
pub struct SimHandle {
    /// Where coreapps connect.
    pub session_addr: SocketAddr,
    /// Where the inspection API listens.
    pub http_addr: SocketAddr,
    stop: CancellationToken,
}

impl SimHandle {
    /// Base URL of the inspection API, such as `http://127.0.0.1:5280`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What every task of one running sim shares.
struct Shared {
    state: Mutex<SimState>,
    session_timeout: Duration,
    receipt_delay: Duration,
    /// Cancelled when the [`SimHandle`] drops; every task watches it.
    stop: CancellationToken,
}

impl Shared {
    /// Locks the rulebook. Its methods never await, so the lock is held only
    /// for one decision.
    fn state(&self) -> MutexGuard<'_, SimState> {
        // A panic inside a rule is a sim bug; carrying on with half-applied
        // state would make the verdict worthless, so every later call fails too.
        self.state.lock().expect("upstream-sim state poisoned by an earlier panic")
    }
}

/// Binds both listeners (port 0 picks a free port), spawns the sim on the
/// current runtime and returns the actual addresses.
pub async fn start(config: SimConfig) -> anyhow::Result<SimHandle> {
    ensure!(
        config.session_timeout.is_finite() && config.session_timeout > 0.0,
        "--session-timeout must be a positive number of seconds, got {}",
        config.session_timeout
    );
    ensure!(
        config.ban_duration.is_finite() && config.ban_duration >= 0.0,
        "--ban-duration must be zero or more seconds, got {}",
        config.ban_duration
    );
    let sessions = TcpListener::bind(config.session_listen)
        .await
        .with_context(|| format!("binding the session listener on {}", config.session_listen))?;
    let http = TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("binding the inspection API on {}", config.http_listen))?;
    let handle = SimHandle {
        session_addr: sessions.local_addr()?,
        http_addr: http.local_addr()?,
        stop: CancellationToken::new(),
    };
    let shared = Arc::new(Shared {
        state: Mutex::new(SimState::new(Timings {
            session_timeout_ms: (config.session_timeout * 1000.0) as i64,
            ban_duration_ms: (config.ban_duration * 1000.0) as i64,
        })),
        session_timeout: Duration::from_secs_f64(config.session_timeout),
        receipt_delay: Duration::from_millis(config.receipt_delay_ms),
        stop: handle.stop.clone(),
    });

    tokio::spawn(accept_sessions(sessions, shared.clone()));
    let api = axum::serve(http, inspect::router(shared.clone()))
        .with_graceful_shutdown(handle.stop.clone().cancelled_owned());
    tokio::spawn(async move {
        if let Err(error) = api.await {
            tracing::error!(%error, "upstream-sim inspection API stopped");
        }
    });
    tracing::info!(
        session_addr = %handle.session_addr, http_addr = %handle.http_addr,
        session_timeout_s = config.session_timeout, ban_duration_s = config.ban_duration,
        receipt_delay_ms = config.receipt_delay_ms,
        "upstream-sim listening"
    );
    Ok(handle)
}

/// The `upstream-sim` role: starts the sim, prints the readiness line, and
/// serves until ctrl-c or SIGTERM.
pub async fn run(config: SimConfig) -> anyhow::Result<()> {
    let sim = start(config).await?;
    shardgate_core::ready::announce(&serde_json::json!({
        "role": "upstream-sim",
        "session_addr": sim.session_addr,
        "http_addr": sim.http_addr,
        "pid": std::process::id(),
    }));
    shutdown_signal().await?;
    tracing::info!("upstream-sim stopping");
    Ok(())
}

/// Accepts connections until the sim stops; each one gets its own task.
async fn accept_sessions(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let accepted = tokio::select! {
            _ = shared.stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                // Frames are small lines written one by one: without this,
                // Nagle holds a receipt back until the coreapp's delayed ACK.
                let _ = stream.set_nodelay(true);
                tokio::spawn(session::serve(stream, shared.clone()));
            }
            // Usually EMFILE; the listener itself is fine, so keep accepting
            // after a pause instead of spinning.
            Err(error) => {
                tracing::warn!(%error, "upstream-sim accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Resolves on ctrl-c, or on SIGTERM where there is one.
async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("waiting for ctrl-c")?,
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await.context("waiting for ctrl-c")?;
    Ok(())
}

/// Milliseconds since the unix epoch: the sim's clock for every record.
fn now_ms() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    since_epoch.as_millis() as i64
}
