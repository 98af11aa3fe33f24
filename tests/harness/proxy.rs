//! A fault-injecting TCP proxy the harness puts between the nodes and the
//! database server, to cut the database off and bring it back.
//!
//! While cut, established connections are severed and new ones are accepted
//! but never answered (a black hole, as a partition looks to a client).

use std::sync::Arc;
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A proxy on 127.0.0.1 to one upstream address.
pub struct FaultProxy {
    port: u16,
    cut: Arc<watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts forwarding to `upstream`.
    pub async fn start(upstream: String) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let port = listener.local_addr().expect("proxy addr").port();
        let (cut, _) = watch::channel(false);
        let cut = Arc::new(cut);
        let task = tokio::spawn(accept_loop(listener, upstream, cut.clone()));
        FaultProxy { port, cut, task }
    }

    /// The local port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Cuts the database off.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Lets traffic through again.
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, upstream: String, cut: Arc<watch::Sender<bool>>) {
    loop {
        let Ok((client, _)) = listener.accept().await else { continue };
        let mut cut_rx = cut.subscribe();
        let upstream = upstream.clone();
        tokio::spawn(async move {
            if *cut_rx.borrow_and_update() {
                // Black hole: hold the connection silently until restored, then drop it.
                let _ = cut_rx.wait_for(|c| !c).await;
                drop(client);
                return;
            }
            let Ok(server) = TcpStream::connect(&upstream).await else { return };
            let (mut client, mut server) = (client, server);
            tokio::select! {
                _ = copy_bidirectional(&mut client, &mut server) => {}
                _ = cut_rx.wait_for(|c| *c) => {}
            }
        });
    }
}
