//! [`GatewayMetrics`]: the webapp's Prometheus registry, rendered by `GET /metrics`.
//!
//! The registry is private to the webapp (not the process-global default one),
//! so that several webapps in one process, as in the tests, do not mix.
//! Messages accepted are counted as they happen; the plugin figures are the
//! plugin host's own counters, copied in at each scrape:
//! - `shardgate_plugin_{calls,failures,fallbacks}_total{kind}`: the running
//!   plugin of that kind since it was loaded (a new plugin starts from 0,
//!   which Prometheus reads as a counter reset);
//! - `shardgate_plugin_loaded{kind,name,version}`: 1 for each running plugin.

use prometheus::{Encoder, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use shardgate_plugins::PluginHost;
use std::sync::{Arc, Mutex};

/// The metrics of one webapp; cheap to clone.
#[derive(Clone)]
pub struct GatewayMetrics {
    inner: Arc<MetricsInner>,
}

struct MetricsInner {
    registry: Registry,
    messages_accepted: IntCounter,
    plugin_calls: IntCounterVec,
    plugin_failures: IntCounterVec,
    plugin_fallbacks: IntCounterVec,
    plugin_loaded: IntGaugeVec,
    /// Held from copying the plugin snapshots in to gathering them, so that
    /// concurrent scrapes never see each other's half-copied figures.
    scrape: Mutex<()>,
}

impl GatewayMetrics {
    /// A fresh registry with every metric registered at 0.
    pub fn new() -> GatewayMetrics {
        let registry = Registry::new();
        let messages_accepted = IntCounter::new(
            "shardgate_messages_accepted_total",
            "Messages stored in their shard's outbox and acknowledged by this webapp.",
        )
        .expect("valid metric");
        let per_kind =
            |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &["kind"]).expect("valid metric");
        let plugin_calls =
            per_kind("shardgate_plugin_calls_total", "Calls to the running plugin of this kind since it was loaded.");
        let plugin_failures = per_kind(
            "shardgate_plugin_failures_total",
            "Calls the running plugin of this kind failed (trap, deadline, memory cap, answer outside the contract).",
        );
        let plugin_fallbacks = per_kind(
            "shardgate_plugin_fallbacks_total",
            "Calls to the running plugin of this kind answered by the built-in rule instead.",
        );
        let plugin_loaded = IntGaugeVec::new(
            Opts::new("shardgate_plugin_loaded", "1 for the running plugin of each kind."),
            &["kind", "name", "version"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(messages_accepted.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(plugin_calls.clone()),
            Box::new(plugin_failures.clone()),
            Box::new(plugin_fallbacks.clone()),
            Box::new(plugin_loaded.clone()),
        ] {
            registry.register(collector).expect("metric names are unique");
        }
        GatewayMetrics {
            inner: Arc::new(MetricsInner {
                registry,
                messages_accepted,
                plugin_calls,
                plugin_failures,
                plugin_fallbacks,
                plugin_loaded,
                scrape: Mutex::new(()),
            }),
        }
    }

    /// One more message accepted.
    pub fn message_accepted(&self) {
        self.inner.messages_accepted.inc();
    }

    /// Every metric in the Prometheus text format, with the plugin figures of `plugins` as of now.
    pub fn render(&self, plugins: &PluginHost) -> String {
        let m = &*self.inner;
        let gathered = {
            let _scrape = m.scrape.lock().unwrap_or_else(|e| e.into_inner());
            for family in [&m.plugin_calls, &m.plugin_failures, &m.plugin_fallbacks] {
                family.reset();
            }
            m.plugin_loaded.reset();
            for info in plugins.plugins() {
                let kind = info.kind.as_str();
                m.plugin_calls.with_label_values(&[kind]).inc_by(info.calls);
                m.plugin_failures.with_label_values(&[kind]).inc_by(info.failures);
                m.plugin_fallbacks.with_label_values(&[kind]).inc_by(info.fallbacks);
                m.plugin_loaded.with_label_values(&[kind, &info.name, &info.version]).set(1);
            }
            m.registry.gather()
        };
        let mut text = Vec::new();
        TextEncoder::new().encode(&gathered, &mut text).expect("the text encoder writes to memory");
        String::from_utf8(text).expect("the text format is UTF-8")
    }

    /// The `Content-Type` of [`render`](Self::render)'s text.
    pub fn content_type() -> String {
        TextEncoder::new().format_type().to_string()
    }
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        GatewayMetrics::new()
    }
}
