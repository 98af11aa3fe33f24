//! A fault-injecting TCP proxy the harness puts between a node and the
//! database server (one per node), to cut the database off or partition one
//! node from it, and to bring it back.
//!
//! - **Cut** (the database gone): established connections are severed and
//!   new ones are accepted but never answered.
//! - **Stalled** (a partition): the bytes of one direction or both are held
//!   without a word, no FIN and no RST, as a network that drops packets
//!   looks to both ends. Once lifted they flow again, as TCP retransmits
//!   once a partition heals, so a write held by a one-way stall of the
//!   replies commits at the server while its client hears nothing, and a
//!   held request arrives late.

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does to the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyState {
    /// Forwards both ways.
    Open,
    /// Severs every connection; new ones are held unanswered.
    Cut,
    /// Holds the bytes of the directions named, silently.
    Stalled {
        /// Requests from the node to the server are held.
        to_server: bool,
        /// Replies from the server to the node are held.
        to_client: bool,
    },
}

impl ProxyState {
    fn holds_to_server(self) -> bool {
        matches!(self, ProxyState::Stalled { to_server: true, .. })
    }

    fn holds_to_client(self) -> bool {
        matches!(self, ProxyState::Stalled { to_client: true, .. })
    }
}

/// A proxy to one upstream address.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<watch::Sender<ProxyState>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts forwarding from a port of `ip` (where a node in a namespace
    /// can reach it) to `upstream`.
    pub async fn start(ip: std::net::IpAddr, upstream: String) -> FaultProxy {
        let listener = TcpListener::bind((ip, 0)).await.expect("proxy bind");
        let addr = listener.local_addr().expect("proxy addr");
        let state = Arc::new(watch::channel(ProxyState::Open).0);
        let task = tokio::spawn(accept_loop(listener, upstream, state.clone()));
        FaultProxy { addr, state, task }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts the database off.
    pub fn cut(&self) {
        self.set(ProxyState::Cut);
    }

    /// Lets traffic through again.
    pub fn restore(&self) {
        self.set(ProxyState::Open);
    }

    /// Puts the proxy in `state`.
    pub fn set(&self, state: ProxyState) {
        self.state.send_replace(state);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, upstream: String, state: Arc<watch::Sender<ProxyState>>) {
    loop {
        let Ok((client, _)) = listener.accept().await else { continue };
        let mut state_rx = state.subscribe();
        let upstream = upstream.clone();
        tokio::spawn(async move {
            if *state_rx.borrow_and_update() == ProxyState::Cut {
                // Black hole: hold the connection silently until restored, then drop it.
                let _ = state_rx.wait_for(|s| *s != ProxyState::Cut).await;
                drop(client);
                return;
            }
            let Ok(server) = TcpStream::connect(&upstream).await else { return };
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            let mut cut_rx = state_rx.clone();
            tokio::select! {
                _ = async {
                    tokio::join!(
                        pump(client_read, server_write, state_rx.clone(), ProxyState::holds_to_server),
                        pump(server_read, client_write, state_rx, ProxyState::holds_to_client),
                    )
                } => {}
                // Dropping both halves of both sockets severs the connection.
                _ = cut_rx.wait_for(|s| *s == ProxyState::Cut) => {}
            }
        });
    }
}

/// Copies `from` to `to`, holding each chunk while `held` says so; on end of
/// stream passes the half-close on.
async fn pump<R, W>(mut from: R, mut to: W, mut state: watch::Receiver<ProxyState>, held: fn(ProxyState) -> bool)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if state.wait_for(|s| !held(*s)).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
    let _ = to.shutdown().await;
}
