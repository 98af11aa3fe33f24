//! `shardgate webhook-echo`: a tiny webhook receiver for development and
//! tests. It answers every callback with 200 (or `--status`) and prints it
//! on stdout as one JSON line, after the readiness line
//! (`SHARDGATE_READY {"role":"webhook-echo","listen_addr":...}`), so that a
//! harness started with `--listen 127.0.0.1:0` learns its port.

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::Router;
use serde_json::{json, Value};
use shardgate_core::http_server::{serve_until, ConnectionLimits};
use std::io::Write;
use std::net::SocketAddr;

/// Options of `shardgate webhook-echo`.
#[derive(Debug, Clone, clap::Args)]
pub struct WebhookEchoConfig {
    /// Address to listen on; port 0 picks one (the readiness line names it).
    #[arg(long, default_value = "127.0.0.1:8099")]
    pub listen: SocketAddr,
    /// Status answered to every callback; a non-2xx one makes the coreapps retry.
    #[arg(long, default_value = "200")]
    pub status: u16,
    /// Largest callback accepted, in bytes; a larger one is answered 413 and not printed.
    #[arg(long, default_value = "1048576")]
    pub max_body_bytes: usize,
}

/// Serves until SIGINT or SIGTERM.
pub async fn run(config: WebhookEchoConfig) -> anyhow::Result<()> {
    let status = StatusCode::from_u16(config.status)
        .ok()
        .filter(|s| (200..600).contains(&s.as_u16()))
        .with_context(|| format!("--status {} is not an HTTP status", config.status))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", config.listen))?;
    let addr = listener.local_addr()?;
    let app = Router::new().fallback(receive).with_state(status).layer(DefaultBodyLimit::max(config.max_body_bytes));
    shardgate_core::ready::announce(&json!({
        "role": "webhook-echo",
        "listen_addr": addr.to_string(),
        "pid": std::process::id(),
    }));
    tracing::info!("webhook-echo on http://{addr}/ answers {status}");
    serve_until(listener, app, ConnectionLimits::default(), shardgate_core::node::shutdown_signal()).await?;
    Ok(())
}

/// Prints the callback as one line and answers with the configured status.
async fn receive(State(status): State<StatusCode>, body: Bytes) -> StatusCode {
    println_flushed(&echo_line(&body));
    status
}

/// The line printed for a callback body: the JSON itself, compacted, or
/// `{"unparsable": "<the body>"}` when it is not JSON.
fn echo_line(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => value.to_string(),
        Err(_) => json!({ "unparsable": String::from_utf8_lossy(body) }).to_string(),
    }
}

fn println_flushed(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (the reader went away) must not take the receiver down.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callbacks_print_as_one_compact_line() {
        let line = echo_line(b"{\n  \"statuses\": [ {\"id\": \"m1\"} ]\n}");
        assert_eq!(line, r#"{"statuses":[{"id":"m1"}]}"#);
        assert_eq!(echo_line(b"not json\n"), r#"{"unparsable":"not json\n"}"#);
    }
}
