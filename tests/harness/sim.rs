//! The upstream-sim's inspection API as the judge of invariants I2 and I3:
//! no conflict, no ban, every acknowledged message delivered exactly once and
//! in order. The same checks serve a harness cluster and a cluster the
//! deployment test runs in containers.

use super::{load, wait_for};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// A client of one sim's inspection API.
#[derive(Clone)]
pub struct SimInspector {
    http: reqwest::Client,
    api: String,
    logs_hint: String,
}

impl SimInspector {
    /// The sim whose inspection API is at `api` (`http://host:port`).
    pub fn new(http: reqwest::Client, api: String) -> SimInspector {
        SimInspector { http, api, logs_hint: String::new() }
    }

    /// Where the node logs are, said when a check fails.
    pub fn with_logs_hint(mut self, hint: String) -> SimInspector {
        self.logs_hint = hint;
        self
    }

    /// A POST on the inspection API.
    pub async fn post(&self, path: &str, body: Value) -> Value {
        let response = self.http.post(format!("{}{path}", self.api)).json(&body).send().await.expect("sim");
        assert!(response.status().is_success(), "sim {path} refused {body}: {}", response.status());
        response.json().await.expect("sim json")
    }

    /// `GET /sim/stats`.
    pub async fn stats(&self) -> Value {
        self.get("/sim/stats").await
    }

    /// A GET on the inspection API.
    pub async fn get(&self, path: &str) -> Value {
        self.http.get(format!("{}{path}", self.api)).send().await.expect("sim").json().await.expect("sim json")
    }

    /// Waits until every id in `acked` was delivered.
    pub async fn wait_delivered(&self, acked: &[String], timeout: Duration) {
        wait_for(&format!("delivery of all {} acknowledged messages", acked.len()), timeout, || async {
            let delivered = self.delivery_counts().await;
            acked.iter().all(|id| delivered.contains_key(id)).then_some(())
        })
        .await
    }

    /// Waits until the sim has delivered `n` more messages than `from`; returns the count.
    pub async fn wait_more_deliveries(&self, from: u64, n: u64) -> u64 {
        wait_for(&format!("{n} more deliveries"), Duration::from_secs(20), || async {
            let unique = self.stats().await["unique_messages"].as_u64()?;
            (unique >= from + n).then_some(unique)
        })
        .await
    }

    /// How many times each id was delivered.
    pub async fn delivery_counts(&self) -> HashMap<String, u64> {
        let messages = self.get("/sim/messages").await;
        let mut counts = HashMap::new();
        for m in messages["messages"].as_array().into_iter().flatten() {
            if m["delivered"].as_bool() == Some(true) {
                *counts.entry(m["id"].as_str().unwrap_or_default().to_string()).or_insert(0) += 1;
            }
        }
        counts
    }

    /// No conflict, no ban, every acknowledged message delivered exactly once,
    /// and nothing delivered that nobody was told was accepted.
    pub async fn assert_exactly_once(&self, load: &load::LoadReport) {
        let stats = self.stats().await;
        assert_eq!(stats["conflicts"], 0, "upstream conflicts: {stats}\n{}", self.logs_hint);
        assert_eq!(stats["bans"], 0, "bans: {stats}");
        assert_eq!(stats["duplicate_deliveries"], 0, "duplicate deliveries: {stats}");
        let counts = self.delivery_counts().await;
        for id in load.acked_ids() {
            assert_eq!(
                counts.get(&id).copied().unwrap_or(0),
                1,
                "acknowledged message {id} delivered {:?} times",
                counts.get(&id)
            );
        }
        let acked: HashSet<String> = load.acked_ids().into_iter().collect();
        // A request whose answer was lost may have been stored and delivered;
        // without such requests, nothing but acknowledged messages may arrive.
        if load.unknown_outcomes() == 0 {
            for id in counts.keys() {
                assert!(acked.contains(id), "delivered a message nobody was told was accepted: {id}");
            }
        }
    }

    /// [`Self::assert_exactly_once`], and each recipient's messages delivered
    /// in the order they were acknowledged.
    pub async fn assert_exactly_once_in_order(&self, load: &load::LoadReport) {
        self.assert_exactly_once(load).await;
        let acked: HashSet<String> = load.acked_ids().into_iter().collect();
        let deliveries = self.get("/sim/deliveries").await;
        for (to, expected) in load.acked_by_recipient() {
            let got: Vec<String> = deliveries["deliveries"][&to]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .filter(|id| acked.contains(id))
                .collect();
            assert_eq!(got, expected, "delivery order to {to}");
        }
    }
}
