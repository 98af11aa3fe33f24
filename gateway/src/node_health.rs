//! What is really the case with each registered node, in one word, for
//! `shardgate status` and `GET /v1/health` alike.
//!
//! A node's own record says little once it stops: a `kill -9`ed coreapp's
//! row stays, only older. So every node is probed at the address it
//! registered, in up to two steps of [`STATUS_TIMEOUT`] each: a TCP connect,
//! which tells a dead process (refused) from a cut-off host (no connection in
//! time, no route); then a call that only a running process answers (the
//! authenticated status call of a master or coreapp, any HTTP answer of a
//! webapp's REST API), which tells a paused process (the kernel accepts for
//! it) from a running one. Whoever answers is then judged by the database:
//! whether it still refreshes its record, and for a coreapp, whether the
//! masters still hear it.

use futures::future::join_all;
use serde::Serialize;
use shardgate_core::cluster::{Settings, Timing};
use shardgate_core::control::{ControlClient, ControlError, NodeStatus};
use shardgate_core::store::nodes::{HeartbeatObservation, NodeRecord};
use shardgate_core::store::{Store, StoreResult};
use std::fmt;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long each probe step (connect, answer) may take.
pub const STATUS_TIMEOUT: Duration = Duration::from_millis(500);

/// A node whose record is this many stale thresholds old and that cannot be
/// reached is taken for gone: long enough that a partition being repaired is
/// still shown as one, short enough that a decommissioned host does not stay
/// `unreachable` for ever.
const GONE_AFTER_STALE_PERIODS: u32 = 10;

/// The verdict on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// It answers, refreshes its record, and (a coreapp) the masters hear it.
    Healthy,
    /// A coreapp that answers and refreshes its record, but that no master
    /// has heard for longer than `unhealthy_interval`.
    Unhealthy,
    /// It answers, but has not refreshed its record for longer than the
    /// stale threshold: it cannot write the database.
    Stale,
    /// The kernel accepts connections for it, but the process does not
    /// answer in time: stopped (SIGSTOP) or wedged.
    Paused,
    /// No connection in time, or no route to its host: a partition, or a
    /// host that is down. Also a node whose control API rejects our cluster
    /// secret: alive, but cut off from us (and the masters) all the same.
    Unreachable,
    /// Nothing of it listens at its address any more (refused, another node
    /// answers there, or a newer record took the address over), or no
    /// connection can be made and its record is ten stale thresholds old.
    Gone,
}

impl Health {
    /// The word shown for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
            Health::Stale => "stale",
            Health::Paused => "paused",
            Health::Unreachable => "unreachable",
            Health::Gone => "gone",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What probing a node's address found.
#[derive(Debug)]
pub enum Reply {
    /// A master or coreapp answered its status call.
    Status(NodeStatus),
    /// The process answered, but gave no status: a webapp's REST API (which
    /// answers anything, a 401 included), or a control API that answered
    /// something unreadable.
    Answered(String),
    /// A control API turned our call down: the node has another cluster secret.
    Rejected,
    /// The connection was accepted; nothing more was asked, for want of a
    /// cluster secret to ask a master or coreapp with.
    Accepted,
    /// The connection was accepted, but no answer came in time.
    Silent,
    /// Nothing listens at the address.
    Refused,
    /// No connection in time, or none possible (no route, no such host).
    NoRoute(String),
    /// Another node answers at the address.
    OtherNode(String),
    /// A newer record (this node id) registered the same address after this
    /// record was last refreshed, so this process is gone; not probed, or
    /// the new process would answer for it.
    Superseded(String),
}

impl Reply {
    /// What was found, in words.
    pub fn describe(&self, addr: &str) -> String {
        match self {
            Reply::Status(status) => format!("answered as {}, {}", status.role, status.gateway_status),
            Reply::Answered(what) => format!("answered without its status: {what}"),
            Reply::Rejected => ControlError::Unauthorized(addr.to_string()).to_string(),
            Reply::Accepted => format!("{addr} accepts connections (not asked further)"),
            Reply::Silent => format!("{addr} accepted the connection but gave no answer within {STATUS_TIMEOUT:?}"),
            Reply::Refused => format!("connection refused: nothing listens at {addr}"),
            Reply::NoRoute(why) => format!("cannot connect to {addr}: {why}"),
            Reply::OtherNode(node) => format!("node {node} answers at {addr} now"),
            Reply::Superseded(node) => format!("superseded: node {node} registered {addr} since"),
        }
    }

    /// The answer as a control call's result, for views that report the
    /// error of a node that gave no status.
    pub fn into_status(self, addr: &str) -> Result<NodeStatus, ControlError> {
        match self {
            Reply::Status(status) => Ok(status),
            Reply::Refused => Err(ControlError::Refused(addr.to_string())),
            Reply::Silent => Err(ControlError::Timeout(addr.to_string())),
            Reply::Rejected => Err(ControlError::Unauthorized(addr.to_string())),
            other => Err(ControlError::Other { addr: addr.to_string(), reason: other.describe(addr) }),
        }
    }
}

/// The thresholds a verdict is judged against, from the settings in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// A master's or coreapp's record is stale after this without a
    /// liveness write: two `db_update_interval`s.
    pub stale_after: Duration,
    /// A coreapp no master heard for longer is unhealthy: `unhealthy_interval`.
    pub unhealthy_after: Duration,
}

impl Thresholds {
    /// The thresholds of `timing`.
    pub fn from_timing(timing: &Timing) -> Thresholds {
        Thresholds { stale_after: timing.db_unhealthy_after, unhealthy_after: timing.unhealthy }
    }

    /// The thresholds of the stored settings. Settings no node can use are
    /// refused by every node, which runs on; the defaults then stand in
    /// rather than no verdict at all.
    pub async fn in_force(store: &Store) -> StoreResult<Thresholds> {
        let settings = match store.settings_doc().await? {
            Some((version, doc)) => Settings::from_stored(&doc).unwrap_or_else(|e| {
                tracing::warn!("stored settings version {version} are unreadable ({e}); judging with the defaults");
                Settings::default()
            }),
            None => Settings::default(),
        };
        let timing = settings.timing().or_else(|e| {
            tracing::warn!("stored settings are unusable ({e}); judging with the defaults");
            Settings::default().timing()
        });
        Ok(Thresholds::from_timing(&timing.expect("the default settings are valid")))
    }

    /// How long a node of `role` may go without a liveness write: webapps
    /// write theirs every `LIVENESS_EVERY` (30 s) whatever the settings.
    pub fn stale_after(&self, role: &str) -> Duration {
        if role == "webapp" {
            crate::LIVENESS_EVERY * 2
        } else {
            self.stale_after
        }
    }

    /// How long a node of `role` may stay unreachable before it is taken for gone.
    pub fn gone_after(&self, role: &str) -> Duration {
        self.stale_after(role) * GONE_AFTER_STALE_PERIODS
    }
}

/// The verdict on a node of `role` whose probe found `reply`, whose record
/// was last refreshed `seen_ago`, and whose current process a master last
/// heard `heard_ago` (coreapps; `None`: never).
pub fn judge(role: &str, reply: &Reply, seen_ago: Duration, heard_ago: Option<Duration>, t: &Thresholds) -> Health {
    match reply {
        Reply::Refused | Reply::OtherNode(_) | Reply::Superseded(_) => Health::Gone,
        Reply::NoRoute(_) if seen_ago > t.gone_after(role) => Health::Gone,
        Reply::NoRoute(_) | Reply::Rejected => Health::Unreachable,
        Reply::Silent => Health::Paused,
        Reply::Status(_) | Reply::Answered(_) | Reply::Accepted => {
            if seen_ago > t.stale_after(role) {
                Health::Stale
            } else if role == "coreapp" && heard_ago.is_none_or(|h| h > t.unhealthy_after) {
                Health::Unhealthy
            } else {
                Health::Healthy
            }
        }
    }
}

/// One registered node and the verdict on it.
#[derive(Debug)]
pub struct NodeVerdict {
    /// Its registration.
    pub record: NodeRecord,
    /// What its probe found.
    pub reply: Reply,
    /// The verdict.
    pub health: Health,
    /// Since its last liveness write.
    pub seen_ago: Duration,
    /// Since a master last heard its current process (only coreapps are
    /// heartbeated; `None`: never).
    pub heard_ago: Option<Duration>,
}

impl NodeVerdict {
    /// Why the verdict is what it is, in one line an operator can act on.
    pub fn reason(&self, t: &Thresholds) -> String {
        let addr = &self.record.control_addr;
        let seen = self.seen_ago.as_secs_f64();
        match self.health {
            Health::Stale => format!(
                "answers, but last refreshed its record {seen:.1} s ago (stale after {:.1} s): it cannot write the database",
                t.stale_after(&self.record.role).as_secs_f64()
            ),
            Health::Unhealthy => match self.heard_ago {
                Some(heard) => format!(
                    "answers, but no master has heard it for {:.1} s (unhealthy after {:.1} s)",
                    heard.as_secs_f64(),
                    t.unhealthy_after.as_secs_f64()
                ),
                None => "answers, but no master has heard this process yet".to_string(),
            },
            Health::Gone | Health::Unreachable if !matches!(self.reply, Reply::Superseded(_)) => {
                format!("{}; record last refreshed {seen:.1} s ago", self.reply.describe(addr))
            }
            _ => self.reply.describe(addr),
        }
    }

    /// Whether its record can go: gone (superseded included) and older
    /// than the stale threshold. A node just killed is still shown as gone
    /// for a while; and a record superseded by another host that advertises
    /// the same address by mistake stays, since its live node refreshes it.
    pub fn gone_for_good(&self, t: &Thresholds) -> bool {
        self.health == Health::Gone && self.seen_ago > t.stale_after(&self.record.role)
    }
}

/// Every registered node with its verdict, and what it was judged against.
#[derive(Debug)]
pub struct ClusterHealth {
    /// The thresholds of the settings in force.
    pub thresholds: Thresholds,
    /// One verdict per record, ordered by role and node id.
    pub nodes: Vec<NodeVerdict>,
}

/// Probes every registered node that `wanted` picks, all at once, and judges
/// each. Without `control` (no cluster secret), masters and coreapps are
/// probed by TCP connect only, so a paused one cannot be told from a running one.
pub async fn assess(
    store: &Store,
    control: Option<&ControlClient>,
    wanted: impl Fn(&NodeRecord) -> bool,
) -> StoreResult<ClusterHealth> {
    let thresholds = Thresholds::in_force(store).await?;
    let observations = store.heartbeat_observations().await?;
    // Ages are taken on the database clock as the records were read, not
    // after the probes, whose time would make every record look older.
    let (now, all) = store.nodes().await?;
    let records: Vec<NodeRecord> = all.iter().filter(|r| wanted(r)).cloned().collect();
    let replies = join_all(records.iter().map(|record| async {
        match superseded_by(record, &all) {
            Some(newer) => Reply::Superseded(newer.node_id.clone()),
            None => probe(record, control).await,
        }
    }))
    .await;
    let ago = |t: i64| Duration::from_millis(u64::try_from(now - t).unwrap_or(0));
    let nodes = records
        .into_iter()
        .zip(replies)
        .map(|(record, reply)| {
            let seen_ago = ago(record.last_seen);
            let heard_ago = last_heard(&record, &observations).map(ago);
            let health = judge(&record.role, &reply, seen_ago, heard_ago, &thresholds);
            NodeVerdict { record, reply, health, seen_ago, heard_ago }
        })
        .collect();
    Ok(ClusterHealth { thresholds, nodes })
}

/// The record registered at the same address after `record` was last
/// refreshed: a process that took the address over, so `record`'s is gone.
/// (Two live processes cannot share an address, so a record refreshed after
/// the other started is another host misadvertising it, not superseded.)
fn superseded_by<'a>(record: &NodeRecord, records: &'a [NodeRecord]) -> Option<&'a NodeRecord> {
    records.iter().find(|other| {
        other.node_id != record.node_id
            && other.control_addr == record.control_addr
            && other.started_at > record.last_seen
    })
}

/// When a master last heard the node's current process (database clock).
fn last_heard(record: &NodeRecord, observations: &[HeartbeatObservation]) -> Option<i64> {
    observations
        .iter()
        .filter(|o| o.node_id == record.node_id && o.instance_id == record.instance_id)
        .map(|o| o.last_ok_at)
        .max()
}

/// Connects to the node's address, then asks what its role answers.
async fn probe(record: &NodeRecord, control: Option<&ControlClient>) -> Reply {
    let addr = record.control_addr.as_str();
    let stream = match tokio::time::timeout(STATUS_TIMEOUT, TcpStream::connect(addr)).await {
        Err(_) => return Reply::NoRoute(format!("no connection within {STATUS_TIMEOUT:?}")),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Reply::Refused,
        Ok(Err(e)) => return Reply::NoRoute(e.to_string()),
        Ok(Ok(stream)) => stream,
    };
    match (record.role.as_str(), control) {
        ("webapp", _) => http_answer(stream).await,
        (_, None) => Reply::Accepted,
        (_, Some(control)) => {
            drop(stream);
            match control.status(addr, STATUS_TIMEOUT).await {
                Ok(status) if status.node_id == record.node_id => Reply::Status(status),
                Ok(status) => Reply::OtherNode(status.node_id),
                Err(ControlError::Timeout(_)) => Reply::Silent,
                Err(ControlError::Refused(_)) => Reply::Refused,
                Err(ControlError::Unauthorized(_)) => Reply::Rejected,
                Err(e) => Reply::Answered(e.to_string()),
            }
        }
    }
}

/// Whether a webapp's REST API answers a request on `stream`: only its
/// running server loop does. The request needs no login; the 401 it gets is
/// answer enough, and webapps serve no status call.
async fn http_answer(mut stream: TcpStream) -> Reply {
    match tokio::time::timeout(STATUS_TIMEOUT, rest_api_status_line(&mut stream)).await {
        Err(_) => Reply::Silent,
        Ok(Ok(line)) if line.is_empty() => Reply::Answered("closed the connection".to_string()),
        Ok(Ok(line)) => Reply::Answered(line),
        Ok(Err(e)) => Reply::Answered(format!("ended the connection: {e}")),
    }
}

/// The first line of what the REST API on `stream` answers an
/// unauthenticated `GET /v1/health` (`HTTP/1.1 401 ...`); empty when it
/// closes the connection without a word. Shared with the container probe
/// (`shardgate healthcheck`).
pub async fn rest_api_status_line(stream: &mut TcpStream) -> std::io::Result<String> {
    stream.write_all(b"GET /v1/health HTTP/1.1\r\nHost: shardgate\r\nConnection: close\r\n\r\n").await?;
    let mut head = [0u8; 64];
    let read = stream.read(&mut head).await?;
    Ok(String::from_utf8_lossy(&head[..read]).lines().next().unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds { stale_after: Duration::from_secs(2), unhealthy_after: Duration::from_secs(1) };

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn running() -> Reply {
        Reply::Answered("HTTP/1.1 401 Unauthorized".into())
    }

    #[test]
    fn a_node_that_answers_is_judged_by_its_record_and_by_the_masters() {
        assert_eq!(judge("master", &running(), secs(1.0), None, &T), Health::Healthy);
        assert_eq!(judge("master", &running(), secs(3.0), None, &T), Health::Stale);
        assert_eq!(judge("coreapp", &running(), secs(1.0), Some(secs(0.5)), &T), Health::Healthy);
        assert_eq!(judge("coreapp", &running(), secs(1.0), Some(secs(1.5)), &T), Health::Unhealthy);
        assert_eq!(judge("coreapp", &running(), secs(1.0), None, &T), Health::Unhealthy, "never heard");
        assert_eq!(judge("coreapp", &running(), secs(3.0), Some(secs(0.1)), &T), Health::Stale);
    }

    #[test]
    fn a_node_that_does_not_answer_is_named_by_how_it_fails() {
        let fresh = secs(0.1);
        assert_eq!(judge("coreapp", &Reply::Refused, fresh, Some(fresh), &T), Health::Gone);
        assert_eq!(judge("master", &Reply::Silent, fresh, None, &T), Health::Paused);
        assert_eq!(judge("master", &Reply::Silent, secs(60.0), None, &T), Health::Paused, "a paused process exists");
        assert_eq!(judge("coreapp", &Reply::NoRoute("timed out".into()), fresh, None, &T), Health::Unreachable);
        assert_eq!(judge("coreapp", &Reply::NoRoute("timed out".into()), secs(21.0), None, &T), Health::Gone);
        assert_eq!(judge("coreapp", &Reply::OtherNode("core-b".into()), fresh, None, &T), Health::Gone);
        assert_eq!(judge("coreapp", &Reply::Rejected, fresh, None, &T), Health::Unreachable, "another secret");
        assert_eq!(judge("coreapp", &Reply::Rejected, secs(60.0), None, &T), Health::Unreachable, "alive");
    }

    #[test]
    fn webapps_are_stale_only_after_two_of_their_own_liveness_writes() {
        let seen = secs(45.0);
        assert_eq!(judge("webapp", &running(), seen, None, &T), Health::Healthy);
        assert_eq!(judge("webapp", &running(), crate::LIVENESS_EVERY * 2 + secs(1.0), None, &T), Health::Stale);
    }

    #[test]
    fn only_a_gone_record_older_than_the_stale_threshold_may_be_pruned() {
        let verdict = |reply: Reply, seen: f64| {
            let record = NodeRecord {
                node_id: "core-a".into(),
                role: "coreapp".into(),
                instance_id: "i".into(),
                control_addr: "127.0.0.1:1".into(),
                version: "0".into(),
                pid: 1,
                started_at: 0,
                last_seen: 0,
            };
            let health = judge("coreapp", &reply, secs(seen), None, &T);
            NodeVerdict { record, reply, health, seen_ago: secs(seen), heard_ago: None }
        };
        assert!(verdict(Reply::Refused, 3.0).gone_for_good(&T));
        assert!(!verdict(Reply::Refused, 1.0).gone_for_good(&T), "just killed: shown, not pruned");
        assert!(verdict(Reply::Superseded("core-b".into()), 3.0).gone_for_good(&T));
        assert!(!verdict(Reply::Superseded("core-b".into()), 1.0).gone_for_good(&T), "maybe refreshed by a twin");
        assert!(!verdict(Reply::NoRoute("timed out".into()), 3.0).gone_for_good(&T), "unreachable");
        assert!(!verdict(Reply::Silent, 30.0).gone_for_good(&T), "paused");
    }

    #[test]
    fn a_newer_record_at_the_same_address_supersedes_an_older_one_only_after_its_last_write() {
        let record = |id: &str, started_at: i64, last_seen: i64| NodeRecord {
            node_id: id.into(),
            role: "coreapp".into(),
            instance_id: id.into(),
            control_addr: "10.0.0.1:6252".into(),
            version: "0".into(),
            pid: 1,
            started_at,
            last_seen,
        };
        let records = [record("old", 0, 100), record("new", 150, 900), record("twin", 50, 950)];
        assert_eq!(superseded_by(&records[0], &records).map(|r| r.node_id.as_str()), Some("new"));
        assert!(superseded_by(&records[1], &records).is_none());
        assert!(superseded_by(&records[2], &records).is_none(), "refreshed after `new` started: not superseded");
    }
}
