//! The HTTP ceiling of this machine: a bare axum handler that answers
//! `POST /v1/messages` as the webapp does (parses the JSON, answers the
//! on-prem body with a fresh id) but checks nothing and stores nothing. It
//! runs on its own two-worker runtime, as a node would, so the load
//! generator measures it exactly as it measures the webapp.

use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::net::SocketAddr;

/// A running ceiling server; it stops when the bench process exits.
pub struct Ceiling {
    /// Its address.
    pub addr: SocketAddr,
}

async fn accept(Json(message): Json<Value>) -> Json<Value> {
    let to = message["to"].as_str().unwrap_or_default().to_string();
    Json(json!({
        "contacts": [{"input": to, "wa_id": to}],
        "messages": [{"id": uuid::Uuid::new_v4().to_string()}],
    }))
}

impl Ceiling {
    /// Starts the server on a thread of its own.
    pub fn start() -> Ceiling {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port is free");
        let addr = listener.local_addr().expect("a bound listener has an address");
        listener.set_nonblocking(true).expect("the listener goes non-blocking");
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the ceiling server");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                let app = Router::new().route("/v1/messages", post(accept));
                axum::serve(listener, app).await.expect("the ceiling server runs");
            });
        });
        Ceiling { addr }
    }
}
