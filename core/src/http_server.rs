//! The one HTTP server of every port Shardgate listens on (the webapp's REST
//! API, the control APIs of masters and coreapps): hyper's HTTP/1 server
//! with the limits that keep idle, slow or excess connections from taking a
//! node down (issue 6). axum's own `serve` has none of them.
//!
//! - **A cap on concurrent connections**, kept well under the process's
//!   file-descriptor limit (raised from soft to hard at start), so that the
//!   node always has descriptors left for its database, the upstream and its
//!   peers. A connection over the cap is accepted and closed at once, so the
//!   kernel's backlog keeps moving and the client learns at once.
//! - **A header-read timeout** against slowloris: a request head must arrive
//!   whole within it. hyper starts that clock when it waits for a head, so it
//!   also bounds how long a kept-alive connection may sit between requests.
//! - **An idle timeout**: a connection on which no byte moves either way
//!   (a stalled body upload, a client that stops reading its answer) is
//!   closed, whatever state it is in. No handler of ours stays silent that
//!   long.
//! - **Accept errors** (`EMFILE`, `ENFILE`, `ENOBUFS`) pause the accept loop
//!   briefly instead of spinning it.
//!
//! Every request carries its peer address as axum's `ConnectInfo<SocketAddr>`.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// The largest request head (request line and headers) hyper buffers; a
/// longer one gets hyper's own bare 431. The webapp refuses far smaller
/// heads itself, with an on-prem error body.
pub const MAX_REQUEST_HEAD_BYTES: usize = 64 * 1024;

/// The most header lines hyper parses in one request head (its default is 100;
/// above it hyper answers a bare 431, so the webapp's own check sits below).
pub const MAX_HEADER_LINES: usize = 256;

/// How long a graceful shutdown waits for requests in progress.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long the accept loop pauses after an error that is not about one connection.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// How often a refused connection or an accept error is logged, at most.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The limits of one listening port.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ConnectionLimits {
    /// Most connections served at once; more are accepted and closed at once.
    /// Always kept below the file-descriptor limit less a reserve.
    #[arg(long = "max-connections", env = "SHARDGATE_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Seconds a client has to send a whole request head (also the longest
    /// wait for the next request on a kept-alive connection).
    #[arg(
        long = "header-read-timeout",
        env = "SHARDGATE_HEADER_READ_TIMEOUT",
        default_value = "10",
        value_parser = parse_seconds
    )]
    pub header_read_timeout: Duration,
    /// Seconds a connection may go without a byte moving either way before
    /// it is closed (a stalled upload, a client that stops reading).
    #[arg(long = "idle-timeout", env = "SHARDGATE_IDLE_TIMEOUT", default_value = "60", value_parser = parse_seconds)]
    pub idle_timeout: Duration,
}

/// The default connection cap of every port.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl ConnectionLimits {
    /// The cap in force under a file-descriptor limit of `fd_limit`: the
    /// configured cap, but never closer to the limit than a reserve of a
    /// quarter of it (at least 64, at most 1024 descriptors).
    pub fn effective_cap(&self, fd_limit: u64) -> usize {
        let reserve = (fd_limit / 4).clamp(64, 1024);
        let room = usize::try_from(fd_limit.saturating_sub(reserve)).unwrap_or(usize::MAX);
        self.max_connections.min(room).max(1)
    }
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text.trim().parse().map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 86_400.0) {
        return Err(format!("{text:?} must be more than 0 and at most 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Raises the soft limit on open files to the hard limit (capped at 2^20) and
/// returns the soft limit in force afterwards.
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    let wanted = limit.rlim_max.min(1 << 20);
    if limit.rlim_cur < wanted {
        let raised = libc::rlimit { rlim_cur: wanted, rlim_max: limit.rlim_max };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = wanted;
        }
    }
    limit.rlim_cur
}

/// The accept queue asked for (the kernel caps it at `net.core.somaxconn`).
const LISTEN_BACKLOG: libc::c_int = 4096;

/// Re-listens with a longer accept queue than tokio's 1024 (Linux takes a
/// second `listen` as a change of backlog), so that a burst of connections
/// while the accept loop waits for a CPU is queued, not dropped into SYN
/// retries that cost the client a second.
fn widen_backlog(listener: &TcpListener) {
    use std::os::fd::AsRawFd;
    // SAFETY: listen on a socket we own, already listening.
    if unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
        tracing::debug!("cannot widen the accept queue: {}", io::Error::last_os_error());
    }
}

/// Serves `router` on `listener` under `limits` for good: accept errors pause
/// the loop, they never end it.
pub async fn serve(listener: TcpListener, router: Router, limits: ConnectionLimits) -> io::Result<()> {
    serve_until(listener, router, limits, std::future::pending()).await
}

/// Serves `router` on `listener` under `limits` until `shutdown` resolves,
/// then stops accepting and gives requests in progress up to 10 s to end.
pub async fn serve_until(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    widen_backlog(&listener);
    let fd_limit = raise_fd_limit();
    let cap = limits.effective_cap(fd_limit);
    let addr = listener.local_addr()?;
    tracing::info!(
        "{addr}: at most {cap} connections (open-file limit {fd_limit}), header timeout {:?}, idle timeout {:?}",
        limits.header_read_timeout,
        limits.idle_timeout
    );
    let slots = Arc::new(Semaphore::new(cap));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_REQUEST_HEAD_BYTES)
        .max_headers(MAX_HEADER_LINES);
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    let mut refused = ThrottledWarning::default();
    let mut failed = ThrottledWarning::default();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    failed.warn(|n| format!("{addr}: {n} accept errors, latest: {e}; pausing the accept loop"));
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused.warn(|n| format!("{addr}: {n} connections refused at the cap of {cap}, latest from {peer}"));
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (io, activity) = ActivityIo::new(stream);
        let service = router.clone().map_request(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(io), TowerToHyperService::new(service)));
        let idle_timeout = limits.idle_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            tokio::select! {
                served = connection => if let Err(e) = served {
                    tracing::debug!("connection from {peer} ended: {e}");
                },
                () = activity.idle_for(idle_timeout) => tracing::debug!("closing idle connection from {peer}"),
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("{addr}: requests still in progress after {SHUTDOWN_GRACE:?}; closing them");
    }
    Ok(())
}

/// Errors about one connection (the client gave up before the accept).
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// A warning logged at most once per [`WARN_EVERY`], counting what it stood for.
#[derive(Default)]
struct ThrottledWarning {
    last: Option<Instant>,
    suppressed: u64,
}

impl ThrottledWarning {
    fn warn(&mut self, line: impl FnOnce(u64) -> String) {
        self.suppressed += 1;
        if self.last.is_none_or(|last| last.elapsed() >= WARN_EVERY) {
            tracing::warn!("{}", line(self.suppressed));
            self.last = Some(Instant::now());
            self.suppressed = 0;
        }
    }
}

/// Milliseconds since the first use, the clock of [`Activity`].
fn now_ms() -> u64 {
    static START: LazyLock<Instant> = LazyLock::new(Instant::now);
    u64::try_from(START.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// When a connection last moved a byte (milliseconds on [`now_ms`]'s clock).
#[derive(Clone)]
struct Activity(Arc<AtomicU64>);

impl Activity {
    fn touch(&self) {
        self.0.store(now_ms(), Ordering::Relaxed);
    }

    /// Resolves once no byte has moved for `idle`.
    async fn idle_for(&self, idle: Duration) {
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        loop {
            let quiet_ms = now_ms().saturating_sub(self.0.load(Ordering::Relaxed));
            if quiet_ms >= idle_ms {
                return;
            }
            let wait = idle_ms.saturating_sub(quiet_ms).max(idle_ms / 4).max(10);
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }
}

/// A TCP stream that records in its [`Activity`] every read or write that moved bytes.
struct ActivityIo {
    stream: TcpStream,
    activity: Activity,
}

impl ActivityIo {
    fn new(stream: TcpStream) -> (ActivityIo, Activity) {
        let activity = Activity(Arc::new(AtomicU64::new(now_ms())));
        (ActivityIo { stream, activity: activity.clone() }, activity)
    }
}

impl AsyncRead for ActivityIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for ActivityIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn limits(max_connections: usize, header_ms: u64, idle_ms: u64) -> ConnectionLimits {
        ConnectionLimits {
            max_connections,
            header_read_timeout: Duration::from_millis(header_ms),
            idle_timeout: Duration::from_millis(idle_ms),
        }
    }

    /// A server answering `GET /peer` with the peer address it was given.
    async fn start(limits: ConnectionLimits) -> SocketAddr {
        let router = Router::new()
            .route("/peer", get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }))
            .route("/echo", post(|body: String| async move { body }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, router, limits));
        addr
    }

    async fn get_peer(stream: &mut TcpStream) -> String {
        stream.write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.unwrap().unwrap();
        String::from_utf8_lossy(&buf[..n]).to_string()
    }

    /// Reads until EOF (or a reset); how long that took.
    async fn time_to_close(stream: &mut TcpStream) -> Duration {
        let started = Instant::now();
        let mut buf = [0u8; 256];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => return started.elapsed(),
                Ok(Ok(_)) => {}
                Err(_) => panic!("the server kept the connection open for 5 s"),
            }
        }
    }

    #[tokio::test]
    async fn handlers_see_the_peer_address_as_connect_info() {
        let addr = start(ConnectionLimits::default()).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let local = stream.local_addr().unwrap();
        let answer = get_peer(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with(&local.to_string()), "{answer}");
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_closed_at_once_and_slots_come_back() {
        let addr = start(limits(2, 5_000, 5_000)).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            assert!(get_peer(&mut stream).await.starts_with("HTTP/1.1 200"));
            held.push(stream);
        }
        let mut over = TcpStream::connect(addr).await.unwrap();
        let _ = over.write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\n\r\n").await;
        assert!(time_to_close(&mut over).await < Duration::from_secs(1));
        held.clear();
        let answered = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let mut stream = TcpStream::connect(addr).await.unwrap();
                let _ = stream.write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\n\r\n").await;
                let mut buf = [0u8; 64];
                if matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        answered.await.expect("a slot freed by closed connections is served again");
    }

    #[tokio::test]
    async fn slowloris_heads_are_cut_off_by_the_header_timeout() {
        let addr = start(limits(100, 300, 60_000)).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET /peer HTTP/1.1\r\n").await.unwrap();
        let drip = async {
            for byte in b"x-slow: 1234567890\r\n".iter().cycle().take(100) {
                if stream.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let started = Instant::now();
        drip.await;
        let closed_after = started.elapsed() + time_to_close(&mut stream).await;
        assert!(closed_after < Duration::from_secs(3), "slow head kept open for {closed_after:?}");
    }

    #[tokio::test]
    async fn a_connection_that_stalls_mid_body_is_closed_when_idle() {
        let addr = start(limits(100, 60_000, 300)).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nabc").await.unwrap();
        assert!(time_to_close(&mut stream).await < Duration::from_secs(2));
    }

    #[test]
    fn the_cap_keeps_a_reserve_of_descriptors() {
        let limits = ConnectionLimits::default();
        assert_eq!(limits.effective_cap(1 << 20), DEFAULT_MAX_CONNECTIONS);
        assert_eq!(limits.effective_cap(1024), 768);
        assert_eq!(limits.effective_cap(20_000), DEFAULT_MAX_CONNECTIONS);
        assert_eq!(limits.effective_cap(10_000), 10_000 - 1024);
        assert!(parse_seconds("0").is_err());
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
    }
}
