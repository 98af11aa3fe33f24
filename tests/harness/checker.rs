//! The fault suite's judge: the checks of [`super::sim::SimInspector`]'s
//! `assert_exactly_once_in_order` and of the webhook suite, returning every
//! violation instead of panicking at the first, so that one run reports all
//! it found (and a long run goes on to the next seed). Also the recovery
//! time of each fault, from the sim's delivery times.

use super::load::LoadReport;
use super::master_log;
use super::nemesis::{Applied, FaultKind};
use super::webhook_receiver::WebhookReceiver;
use super::Cluster;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::fmt;

/// Every violation one run found, by kind; each entry says what and which.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Conflicts recorded by the sim (two sessions for one shard).
    pub conflicts: Vec<String>,
    /// Bans recorded by the sim.
    pub bans: Vec<String>,
    /// Acknowledged messages never delivered.
    pub lost: Vec<String>,
    /// Messages delivered more than once.
    pub duplicates: Vec<String>,
    /// Recipients whose messages arrived out of acknowledgement order.
    pub order: Vec<String>,
    /// Delivered messages nobody was told were accepted (judged only when
    /// every request got an answer).
    pub unexpected: Vec<String>,
    /// `(id, status)` the upstream emitted that never reached the receiver.
    pub callbacks_missing: Vec<String>,
    /// Two masters acting in one epoch: an epoch of the master lease won
    /// twice, or a reassignment made under an epoch its master did not win.
    pub masters: Vec<String>,
    /// What did not come back after the faults healed: a node that exited,
    /// a shard never served again, settings not in force.
    pub unrecovered: Vec<String>,
    /// Not a violation: receipts the upstream emitted that the cluster never
    /// recorded, so no callback could follow. The upstream protocol has no
    /// receipt acks: a receipt written to a session that then dies (killed,
    /// paused past its lease, partitioned) is gone, and the sim does not
    /// send it again. Each says which session took it and how that ended.
    pub receipts_lost: Vec<String>,
    /// Not a violation by the product's rule (a status is recorded, and
    /// called back, only when it advances), but reported: statuses the
    /// cluster skipped because a later one arrived first, e.g. `sent` when
    /// the ack was lost with its session and `delivered` came queued on the
    /// next one; the receiver got the later status.
    pub superseded: Vec<String>,
    /// Not a violation: what the database and the nodes said when callbacks
    /// were missing, to tell a stalled deliverer from callbacks never written.
    pub notes: Vec<String>,
}

impl Verdict {
    /// No violation at all.
    pub fn is_clean(&self) -> bool {
        self.kinds().iter().all(|(_, v)| v.is_empty())
    }

    /// Each kind of violation with its findings, in table order.
    pub fn kinds(&self) -> [(&'static str, &Vec<String>); 9] {
        [
            ("conflicts", &self.conflicts),
            ("bans", &self.bans),
            ("lost", &self.lost),
            ("duplicates", &self.duplicates),
            ("order", &self.order),
            ("unexpected", &self.unexpected),
            ("callbacks missing", &self.callbacks_missing),
            ("two masters in one epoch", &self.masters),
            ("unrecovered", &self.unrecovered),
        ]
    }
}

impl fmt::Display for Verdict {
    /// Up to five examples of each kind found.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (kind, found) in self.kinds() {
            if !found.is_empty() {
                writeln!(f, "  {kind}: {} (e.g. {:?})", found.len(), &found[..found.len().min(5)])?;
            }
        }
        for note in &self.notes {
            writeln!(f, "  note: {note}")?;
        }
        if !self.superseded.is_empty() {
            let skipped = &self.superseded;
            let examples = &skipped[..skipped.len().min(5)];
            writeln!(f, "  (no violation) statuses superseded: {} (e.g. {examples:?})", skipped.len())?;
        }
        if !self.receipts_lost.is_empty() {
            let lost = &self.receipts_lost;
            writeln!(
                f,
                "  (no violation) receipts lost upstream: {} (e.g. {:?})",
                lost.len(),
                &lost[..lost.len().min(5)]
            )?;
        }
        Ok(())
    }
}

/// The sim's records of every received send.
pub async fn sim_messages(cluster: &Cluster) -> Vec<Value> {
    cluster.sim_get("/sim/messages").await["messages"].as_array().cloned().unwrap_or_default()
}

/// `(id, status)` of every receipt the upstream emitted for the acknowledged messages.
pub fn emitted_statuses(messages: &[Value], acked: &HashSet<String>) -> HashSet<(String, String)> {
    messages
        .iter()
        .filter(|m| m["id"].as_str().is_some_and(|id| acked.contains(id)))
        .flat_map(|m| {
            let id = m["id"].as_str().unwrap_or_default().to_string();
            let statuses = m["status_at_ms"].as_object().map(|o| o.keys().cloned().collect()).unwrap_or(Vec::new());
            statuses.into_iter().map(move |s| (id.clone(), s))
        })
        .collect()
}

/// The receipts of `emitted` the receiver has not accepted yet.
pub fn missing_callbacks(emitted: &HashSet<(String, String)>, receiver: &WebhookReceiver) -> Vec<String> {
    let got: HashSet<(String, String)> = receiver.statuses().into_iter().collect();
    let mut missing: Vec<String> = emitted.difference(&got).map(|(id, s)| format!("{id}/{s}")).collect();
    missing.sort();
    missing
}

/// Judges a finished run: I2 (conflicts, bans), I3 (lost, duplicates, order,
/// unexpected) and I4 (callbacks) against the sim and the receiver, and the
/// masters' epochs against their logs.
/// `unrecovered` comes from the run's own waits.
pub async fn judge(
    cluster: &Cluster,
    load: &LoadReport,
    receiver: &WebhookReceiver,
    unrecovered: Vec<String>,
) -> Verdict {
    let stats = cluster.sim_stats().await;
    let mut verdict = Verdict { unrecovered, ..Verdict::default() };
    if stats["conflicts"].as_u64().unwrap_or(0) > 0 {
        let conflicts = cluster.sim_get("/sim/conflicts").await;
        verdict.conflicts = conflicts["conflicts"].as_array().into_iter().flatten().map(Value::to_string).collect();
    }
    if stats["bans"].as_u64().unwrap_or(0) > 0 {
        let bans = cluster.sim_get("/sim/bans").await;
        verdict.bans = bans["bans"].as_array().into_iter().flatten().map(Value::to_string).collect();
    }
    let counts = cluster.delivery_counts().await;
    let acked: HashSet<String> = load.acked_ids().into_iter().collect();
    for id in load.acked_ids() {
        match counts.get(&id).copied().unwrap_or(0) {
            0 => verdict.lost.push(id),
            1 => {}
            n => verdict.duplicates.push(format!("{id} x{n}")),
        }
    }
    let duplicate_deliveries = stats["duplicate_deliveries"].as_u64().unwrap_or(0);
    if duplicate_deliveries > 0 && verdict.duplicates.is_empty() {
        verdict.duplicates.push(format!("the sim counts {duplicate_deliveries} duplicate deliveries"));
    }
    if load.unknown_outcomes() == 0 {
        verdict.unexpected = counts.keys().filter(|id| !acked.contains(*id)).cloned().collect();
    }
    verdict.order = order_violations(cluster, load, &counts).await;
    let acts = master_log::read(&cluster.dir);
    verdict.masters = master_log::violations(&acts);
    if !acts.iter().any(|act| matches!(act, master_log::MasterAct::Won { .. })) {
        // Every run elects a master: finding none means the check read nothing.
        verdict.masters.push("no master lease win found in the master logs: has their format changed?".into());
    }
    let missing = missing_callbacks_by_cause(cluster, receiver, &acked).await;
    (verdict.callbacks_missing, verdict.superseded, verdict.receipts_lost) = missing;
    if !verdict.callbacks_missing.is_empty() {
        verdict.notes = callback_notes(cluster).await;
    }
    verdict
}

/// The status callbacks of `acked` messages the receiver lacks, split by
/// cause: `(owed, superseded, lost)`. Owed: the cluster recorded the status,
/// a callback was due (a violation). Superseded: it recorded a later status
/// and the receiver got that one. Lost: it never recorded it (the receipt
/// was lost upstream).
pub async fn missing_callbacks_by_cause(
    cluster: &Cluster,
    receiver: &WebhookReceiver,
    acked: &HashSet<String>,
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let messages = sim_messages(cluster).await;
    let missing = missing_callbacks(&emitted_statuses(&messages, acked), receiver);
    let (mut owed, mut superseded, mut lost) = (Vec::new(), Vec::new(), Vec::new());
    if missing.is_empty() {
        return (owed, superseded, lost);
    }
    let received = receiver.statuses();
    let sessions = cluster.sim_get("/sim/sessions").await["sessions"].as_array().cloned().unwrap_or_default();
    for key in missing {
        let (id, status) = key.split_once('/').unwrap_or((key.as_str(), ""));
        let recorded = cluster.store.message_status(id).await.ok().flatten().map(|r| r.as_str());
        let story = receipt_story(&messages, &sessions, id, status, recorded);
        let later_called_back = received.iter().any(|(i, s)| i == id && rank(s) > rank(status));
        match recorded.map(rank) {
            Some(r) if r > rank(status) && later_called_back => superseded.push(story),
            Some(r) if r >= rank(status) => owed.push(story),
            _ => lost.push(story),
        }
    }
    (owed, superseded, lost)
}

/// The pending callbacks in the database, and each coreapp's own counts.
async fn callback_notes(cluster: &Cluster) -> Vec<String> {
    let mut notes = Vec::new();
    for shard in 0..cluster.spec.shards {
        match cluster.store.pending_callbacks(shard, 0, 512).await {
            Ok(pending) => notes.push(format!(
                "shard {shard}: {}{} callbacks pending in the database, first {:?}",
                pending.len(),
                if pending.len() == 512 { "+" } else { "" },
                pending.first().map(|p| (p.seq, &p.recipient, p.attempts, p.wait_ms))
            )),
            Err(e) => notes.push(format!("shard {shard}: cannot read pending callbacks: {e}")),
        }
    }
    for node in &cluster.coreapps {
        let url = format!("http://{}/control/callbacks", node.ready_str("control_addr"));
        let counts = match cluster.http.get(url).bearer_auth(&cluster.cluster_secret).send().await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(e) => format!("no answer: {e}"),
        };
        notes.push(format!("{} callbacks: {counts}", node.name));
    }
    notes
}

/// The order of the statuses a message goes through.
fn rank(status: &str) -> usize {
    ["queued", "sent", "delivered", "read"].iter().position(|s| *s == status).unwrap_or(4)
}

/// `id/status`, what the cluster recorded, and the session the upstream
/// emitted the receipt to (the one holding the shard then) with how it ended.
fn receipt_story(messages: &[Value], sessions: &[Value], id: &str, status: &str, recorded: Option<&str>) -> String {
    let message = messages.iter().find(|m| m["id"] == id);
    let emitted = message.and_then(|m| m["status_at_ms"][status].as_i64()).unwrap_or(0);
    let shard = message.map(|m| m["shard"].clone()).unwrap_or(Value::Null);
    let session = sessions.iter().find(|s| {
        let opened = s["opened_at_ms"].as_i64().unwrap_or(i64::MAX);
        let closed = s["closed_at_ms"].as_i64().unwrap_or(i64::MAX);
        s["shard"] == shard && opened <= emitted && emitted < closed
    });
    let went_to = session.map_or("no open session (queued)".to_string(), |s| {
        let closed = s["closed_at_ms"].as_i64().map_or("still open".to_string(), |c| format!("+{} ms", c - emitted));
        format!("session {} of {} closed {closed} ({})", s["id"], s["node"], s["close_reason"])
    });
    format!("{id}/{status}: recorded {recorded:?}; emitted to {went_to}")
}

/// Recipients whose delivered messages are not in acknowledgement order
/// (lost ones are left out here: they are counted as lost).
async fn order_violations(cluster: &Cluster, load: &LoadReport, counts: &HashMap<String, u64>) -> Vec<String> {
    let acked: HashSet<String> = load.acked_ids().into_iter().collect();
    let deliveries = cluster.sim_get("/sim/deliveries").await;
    let mut violations = Vec::new();
    for (to, expected) in load.acked_by_recipient() {
        let expected: Vec<String> = expected.into_iter().filter(|id| counts.contains_key(id)).collect();
        let got: Vec<String> = deliveries["deliveries"][&to]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .filter(|id| acked.contains(id))
            .collect();
        if got != expected {
            let at = got.iter().zip(&expected).position(|(g, e)| g != e).unwrap_or(got.len().min(expected.len()));
            violations.push(format!(
                "{to}: from position {at}, delivered {:?}, acknowledged {:?}",
                &got[at..got.len().min(at + 3)],
                &expected[at..expected.len().min(at + 3)]
            ));
        }
    }
    violations
}

/// How long the cluster took to deliver again around one fault.
#[derive(Debug, Clone, Copy)]
pub struct Recovery {
    /// The fault's kind.
    pub kind: FaultKind,
    /// From the heal to the next delivery at the sim; `None`: none came.
    pub after_heal_ms: Option<i64>,
    /// The longest time without a delivery from the last one before the
    /// fault to the first one after its heal: the outage it caused (a
    /// failover does not wait for the heal).
    pub longest_gap_ms: i64,
}

/// The recovery of each applied (not skipped) fault, from the sim's records.
pub fn recoveries(messages: &[Value], applied: &[Applied]) -> Vec<Recovery> {
    let mut times: Vec<i64> =
        messages.iter().filter(|m| m["delivered"] == true).filter_map(|m| m["received_at_ms"].as_i64()).collect();
    times.sort_unstable();
    applied
        .iter()
        .filter(|a| a.skipped.is_none())
        .map(|a| {
            let next = times.iter().position(|t| *t >= a.healed_ms);
            let first = times.iter().rposition(|t| *t < a.injected_ms).unwrap_or(0);
            let last = next.unwrap_or(times.len().saturating_sub(1));
            let longest_gap_ms =
                times.get(first..=last).map(|w| w.windows(2).map(|p| p[1] - p[0]).max().unwrap_or(0)).unwrap_or(0);
            Recovery { kind: a.fault.kind, after_heal_ms: next.map(|i| times[i] - a.healed_ms), longest_gap_ms }
        })
        .collect()
}

/// The median of `values` (the upper one of an even count); 0 when empty.
pub fn median(values: &[i64]) -> i64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied().unwrap_or(0)
}
