//! The `host` interface as a plugin sees it: `log` lines reach the node's
//! log through `tracing`, tagged with the plugin's kind, name and version.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use shardgate_core::policy::{Route, RouteRequest};
use shardgate_plugins::PluginKind;

/// Collects what a `tracing` subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn plugin_log_lines_reach_tracing_tagged_with_the_plugin_kind_name_and_version() {
    let host = common::host();
    host.load(PluginKind::Router, "country", "3.2.1", &common::component("router-country")).unwrap();
    let router = host.router();
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("shardgate_plugins=debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The plugin logs the first use of each pinned prefix, at debug level.
    let uk = RouteRequest { recipient: "447700900123".into(), kind: "text".into(), metadata: vec![] };
    let route = tracing::subscriber::with_default(subscriber, || router.route(&uk, 8));
    assert_eq!(route, Route::Shard(1));
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line =
        log.lines().find(|l| l.contains("pinned to shard 1")).unwrap_or_else(|| panic!("no plugin line in {log:?}"));
    assert!(line.contains("DEBUG"), "{line}");
    for tag in ["plugin.kind=\"router\"", "plugin.name=\"country\"", "plugin.version=\"3.2.1\""] {
        assert!(line.contains(tag), "{tag} missing: {line}");
    }
}
