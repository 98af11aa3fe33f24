//! Callback delivery: whoever holds a shard delivers its callbacks (a new
//! primary picks up what the old one left), from a task the lease keeper
//! starts and stops with the shard worker.
//!
//! - **Order.** Each recipient's callbacks go strictly in `seq` order: the
//!   next only once the previous is settled (delivered, or dropped). Across
//!   recipients they go concurrently, at most `webhooks.max_concurrent_requests`
//!   at once in the whole node (see [`super::callback_poster`]).
//! - **Latency.** The shard worker wakes the task right after it recorded
//!   new callbacks; a poll every [`POLL`] covers retries and anything missed.
//! - **Retries.** A 2xx answer delivers. Anything else is retried after
//!   `min(callback_backoff_delay_ms × attempts, max_callback_backoff_delay_ms)`
//!   (linear), or, with `callback_persist=false`, dropped after its one attempt.
//! - **Bounded.** A pass reads the first pending callback of at most
//!   [`MAX_SCAN`] recipients, without their payloads, however many wait
//!   behind them, and loads the payloads of at most [`DUE_AT_ONCE`] callbacks.
//!   Outcomes are written in one transaction per pass. Settled callbacks
//!   are pruned after [`KEEP_SETTLED`].
//! - **Fenced like the session.** Nothing is posted while the shard's lease
//!   grant is unusable, so two holders of a shard do not deliver at once
//!   (only posts already in flight may overlap a failover: at least once).
//!
//! Nothing here touches the upstream session.

pub use super::callback_poster::{CallbackCounts, CallbackPoster};
use super::session::LeaseGrant;
use crate::callback_payload::announced_inbound_id;
use crate::cluster::live_settings::{LiveSettings, SettingsInForce};
use crate::store::callbacks::{PendingCallback, Settlement};
use crate::store::{ms, Store, StoreResult};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Pending callbacks are looked for at least this often.
pub const POLL: Duration = Duration::from_secs(1);
/// Recipients' first pending callbacks read per query of a pass.
const PAGE: u32 = 512;
/// Recipients' first pending callbacks read per pass at most.
pub const MAX_SCAN: usize = 4096;
/// Callbacks picked per pass at most (one per recipient).
pub const DUE_AT_ONCE: usize = 64;
/// How long settled callbacks stay in the table.
pub const KEEP_SETTLED: Duration = Duration::from_secs(3600);
/// Period of the pruning of settled callbacks, and rows deleted per statement.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const PRUNE_BATCH: u32 = 1000;
/// Least time between two warnings about failing deliveries of a shard.
const WARN_SPACING: Duration = Duration::from_secs(10);

/// The linear backoff: the wait after the `attempts`-th failed attempt.
pub fn retry_delay_ms(attempts: i64, first_ms: u64, max_ms: u64) -> i64 {
    let attempts = u64::try_from(attempts.max(1)).unwrap_or(1);
    i64::try_from(first_ms.saturating_mul(attempts).min(max_ms)).unwrap_or(i64::MAX / 4)
}

/// Picks from `rows` (pending callbacks in `seq` order) the first callback
/// of each recipient not `seen` yet, when it is due, until `picked` holds
/// `want`. A recipient's later callbacks wait for its first, so every
/// recipient met is marked seen, due or not. Returns the shortest wait of a
/// first callback that is not due yet.
pub fn pick_heads(
    rows: &[PendingCallback],
    seen: &mut HashSet<String>,
    want: usize,
    picked: &mut Vec<PendingCallback>,
) -> Option<i64> {
    let mut soonest: Option<i64> = None;
    for row in rows {
        if picked.len() >= want {
            break;
        }
        if !seen.insert(row.recipient.clone()) {
            continue;
        }
        if row.wait_ms > 0 {
            soonest = Some(soonest.map_or(row.wait_ms, |s| s.min(row.wait_ms)));
        } else {
            picked.push(row.clone());
        }
    }
    soonest
}

/// A callback about to be posted.
#[derive(Debug)]
struct Due {
    seq: i64,
    recipient: String,
    attempts: i64,
    payload: String,
}

/// How a post ended.
struct Attempted {
    due: Due,
    outcome: Result<(), String>,
}

/// One shard's callback delivery.
pub struct ShardCallbacks {
    /// Database.
    pub store: Store,
    /// The shard.
    pub shard: u32,
    /// Settings in force (receiver, concurrency, backoff, persistence).
    pub settings: LiveSettings,
    /// The node's client, limit and counters.
    pub poster: CallbackPoster,
    /// Rung by the shard worker when it recorded new callbacks.
    pub wake: Arc<Notify>,
    /// The shard's lease grant: nothing is posted while it is unusable.
    pub grant: watch::Receiver<LeaseGrant>,
}

/// The delivery task's state between passes.
#[derive(Default)]
struct Pass {
    /// Recipients with a callback picked, in flight, or not yet settled in
    /// the database: their next callback must wait.
    busy: HashSet<String>,
    /// Picked callbacks waiting for room.
    due: VecDeque<Due>,
    /// Outcomes not yet written.
    settled: Vec<(Settlement, String)>,
    /// Counter increments that come with them.
    counts: CallbackCounts,
    last_warning: Option<Instant>,
}

impl ShardCallbacks {
    /// Delivers until aborted (the lease keeper aborts it with the shard).
    pub async fn run(mut self) {
        let mut pass = Pass::default();
        let mut in_flight: JoinSet<Attempted> = JoinSet::new();
        let mut recipients_in_flight: HashMap<tokio::task::Id, String> = HashMap::new();
        let mut look = true;
        // A deadline, not a duration: lease renewals wake this loop far more
        // often than the poll, and a sleep restarted on each would never end.
        let mut look_at = Instant::now() + POLL;
        let mut next_prune = Instant::now() + PRUNE_EVERY / 4;
        loop {
            let settings = self.settings.current();
            // Outcomes are written when nothing else is ready to go (or many
            // wait), so that a burst of them costs one commit.
            let write = pass.due.is_empty() || pass.settled.len() >= DUE_AT_ONCE;
            if write && !pass.settled.is_empty() {
                if let Err(e) = self.write_settled(&mut pass).await {
                    tracing::warn!("shard {}: cannot record callback deliveries, retrying: {e}", self.shard);
                    look = false;
                    look_at = Instant::now() + Duration::from_millis(200);
                }
            }
            let usable = self.grant.borrow().usable();
            if !usable || !settings.settings.callbacks_on() {
                for due in pass.due.drain(..) {
                    pass.busy.remove(&due.recipient);
                }
            } else {
                self.poster.limit.resize(settings.settings.webhooks.max_concurrent_requests as usize);
                if look && pass.due.is_empty() && pass.settled.is_empty() {
                    look = false;
                    let wait = match self.look(&mut pass).await {
                        Ok(soonest) => soonest.map_or(POLL, |ms| Duration::from_millis(ms.unsigned_abs()).min(POLL)),
                        Err(e) => {
                            tracing::warn!("shard {}: cannot read pending callbacks: {e}", self.shard);
                            POLL
                        }
                    }
                    .max(Duration::from_millis(5));
                    look_at = Instant::now() + wait;
                }
            }
            if Instant::now() >= next_prune {
                next_prune = Instant::now() + PRUNE_EVERY;
                self.prune().await;
            }
            tokio::select! {
                permit = self.poster.limit.acquire(), if !pass.due.is_empty() => {
                    let due = pass.due.pop_front().expect("a callback is due");
                    let recipient = due.recipient.clone();
                    let handle = in_flight.spawn(attempt(self.poster.clone(), settings.clone(), due, permit));
                    recipients_in_flight.insert(handle.id(), recipient);
                }
                Some(done) = in_flight.join_next_with_id(), if !in_flight.is_empty() => {
                    look = true;
                    let mut next = Some(done);
                    while let Some(done) = next {
                        match done {
                            Ok((id, attempted)) => {
                                recipients_in_flight.remove(&id);
                                self.settle(&mut pass, &settings, attempted);
                            }
                            Err(e) => {
                                // A post that panicked: its callback is still pending, and is tried again.
                                if let Some(recipient) = recipients_in_flight.remove(&e.id()) {
                                    pass.busy.remove(&recipient);
                                }
                            }
                        }
                        next = in_flight.try_join_next_with_id();
                    }
                }
                _ = self.wake.notified() => look = true,
                _ = tokio::time::sleep_until(look_at) => {
                    look = true;
                    look_at = Instant::now() + POLL;
                }
                changed = self.grant.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Reads the pending callbacks and picks those due now, one per
    /// recipient not busy; the shortest wait of one not due yet.
    async fn look(&self, pass: &mut Pass) -> StoreResult<Option<i64>> {
        let mut seen = pass.busy.clone();
        let mut picked = Vec::new();
        let mut soonest: Option<i64> = None;
        let (mut after, mut scanned) = (0, 0);
        loop {
            let page = self.store.pending_heads(self.shard, after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            scanned += page.len();
            if let Some(wait) = pick_heads(&page, &mut seen, DUE_AT_ONCE, &mut picked) {
                soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
            }
            if picked.len() >= DUE_AT_ONCE || page.len() < PAGE as usize || scanned >= MAX_SCAN {
                break;
            }
        }
        if picked.is_empty() {
            return Ok(soonest);
        }
        let seqs: Vec<i64> = picked.iter().map(|p| p.seq).collect();
        let mut payloads: HashMap<i64, String> = self.store.callback_payloads(&seqs).await?.into_iter().collect();
        for head in picked {
            if let Some(payload) = payloads.remove(&head.seq) {
                pass.busy.insert(head.recipient.clone());
                pass.due.push_back(Due { seq: head.seq, recipient: head.recipient, attempts: head.attempts, payload });
            }
        }
        Ok(soonest)
    }

    /// Turns a finished post into the settlement to write.
    fn settle(&self, pass: &mut Pass, settings: &SettingsInForce, attempted: Attempted) {
        let Attempted { due, outcome } = attempted;
        let s = &settings.settings;
        let (settlement, failure) = match outcome {
            Ok(()) => {
                pass.counts.delivered += 1;
                let forget_inbound = if s.pass_through { announced_inbound_id(&due.payload) } else { None };
                (Settlement::Delivered { seq: due.seq, forget_inbound }, None)
            }
            Err(why) if s.callback_persist => {
                pass.counts.retried += 1;
                let delay_ms =
                    retry_delay_ms(due.attempts + 1, s.callback_backoff_delay_ms, s.max_callback_backoff_delay_ms);
                (Settlement::Retry { seq: due.seq, delay_ms }, Some(format!("{why}; retrying in {delay_ms} ms")))
            }
            Err(why) => {
                pass.counts.dropped += 1;
                (Settlement::Dropped { seq: due.seq }, Some(format!("{why}; dropped (callback_persist is off)")))
            }
        };
        if let Some(failure) = failure {
            if pass.last_warning.is_none_or(|at| at.elapsed() >= WARN_SPACING) {
                pass.last_warning = Some(Instant::now());
                tracing::warn!("shard {}: callback {} not delivered: {failure}", self.shard, due.seq);
            } else {
                tracing::debug!("shard {}: callback {} not delivered: {failure}", self.shard, due.seq);
            }
        }
        pass.settled.push((settlement, due.recipient));
    }

    /// Writes the settlements of finished posts, then frees their recipients.
    async fn write_settled(&self, pass: &mut Pass) -> StoreResult<()> {
        if pass.settled.is_empty() {
            return Ok(());
        }
        let settlements: Vec<Settlement> = pass.settled.iter().map(|(s, _)| s.clone()).collect();
        self.store.settle_callbacks(&settlements).await?;
        for (_, recipient) in pass.settled.drain(..) {
            pass.busy.remove(&recipient);
        }
        let counts = std::mem::take(&mut pass.counts);
        let c = &self.poster.counters;
        c.delivered.fetch_add(counts.delivered, Ordering::Relaxed);
        c.retried.fetch_add(counts.retried, Ordering::Relaxed);
        c.dropped.fetch_add(counts.dropped, Ordering::Relaxed);
        Ok(())
    }

    /// Deletes settled callbacks older than [`KEEP_SETTLED`], a bounded amount.
    async fn prune(&self) {
        for _ in 0..10 {
            match self.store.prune_callbacks(self.shard, ms(KEEP_SETTLED), PRUNE_BATCH).await {
                Ok(n) if n == u64::from(PRUNE_BATCH) => continue,
                Ok(_) => return,
                Err(e) => {
                    tracing::debug!("shard {}: cannot prune callbacks: {e}", self.shard);
                    return;
                }
            }
        }
    }
}

/// Posts one callback, holding a place under the node's limit meanwhile.
async fn attempt(
    poster: CallbackPoster,
    settings: Arc<SettingsInForce>,
    due: Due,
    _permit: OwnedSemaphorePermit,
) -> Attempted {
    poster.counters.in_flight.fetch_add(1, Ordering::Relaxed);
    let outcome = poster.post(&settings.settings.webhooks.url, due.payload.clone()).await;
    poster.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
    Attempted { due, outcome }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64, recipient: &str, wait_ms: i64) -> PendingCallback {
        PendingCallback { seq, recipient: recipient.into(), attempts: 0, wait_ms }
    }

    fn seqs(picked: &[PendingCallback]) -> Vec<i64> {
        picked.iter().map(|p| p.seq).collect()
    }

    #[test]
    fn each_recipient_goes_in_seq_order_one_at_a_time() {
        let rows = [row(1, "a", 0), row(2, "a", 0), row(3, "b", 0), row(4, "c", 0), row(5, "b", 0)];
        let mut seen = HashSet::new();
        let mut picked = Vec::new();
        assert_eq!(pick_heads(&rows, &mut seen, 10, &mut picked), None);
        assert_eq!(seqs(&picked), vec![1, 3, 4], "only the first of each recipient");
    }

    #[test]
    fn a_recipient_waiting_for_a_retry_holds_back_its_later_callbacks() {
        let rows = [row(1, "a", 3000), row(2, "a", 0), row(3, "b", 0), row(4, "c", 500)];
        let mut seen = HashSet::new();
        let mut picked = Vec::new();
        assert_eq!(pick_heads(&rows, &mut seen, 10, &mut picked), Some(500), "the soonest retry");
        assert_eq!(seqs(&picked), vec![3]);
    }

    #[test]
    fn busy_recipients_and_the_window_are_respected() {
        let rows = [row(1, "a", 0), row(2, "b", 0), row(3, "c", 0), row(4, "d", 0)];
        let mut seen: HashSet<String> = ["b".to_string()].into();
        let mut picked = Vec::new();
        pick_heads(&rows, &mut seen, 2, &mut picked);
        assert_eq!(seqs(&picked), vec![1, 3], "b is in flight; at most two");
        // A second page continues with what the first one saw.
        let more = [row(5, "a", 0), row(6, "e", 0)];
        let mut picked = Vec::new();
        pick_heads(&more, &mut seen, 2, &mut picked);
        assert_eq!(seqs(&picked), vec![6], "a's first callback is on the first page");
    }

    #[test]
    fn backoff_is_linear_and_capped() {
        assert_eq!(retry_delay_ms(1, 3000, 900_000), 3000);
        assert_eq!(retry_delay_ms(2, 3000, 900_000), 6000);
        assert_eq!(retry_delay_ms(5, 3000, 10_000), 10_000);
        assert_eq!(retry_delay_ms(0, 100, 1000), 100, "at least one step");
        assert_eq!(retry_delay_ms(i64::MAX, u64::MAX, 86_400_000), 86_400_000, "no overflow");
    }
}

#[cfg(test)]
mod delivery_tests {
    use super::*;
    use crate::cluster::Settings;
    use crate::store::callbacks::CallbackFilter;
    use crate::store::messages::MessageStatus;
    use crate::store::messages::{NewMessage, SessionOutcomes, StatusUpdate};
    use axum::extract::State as AxumState;
    use axum::http::StatusCode;
    use std::sync::atomic::AtomicU64;
    use std::sync::Mutex;

    /// A receiver that fails the first `failures` callbacks, and keeps every body it got.
    #[derive(Clone, Default)]
    struct Receiver {
        got: Arc<Mutex<Vec<serde_json::Value>>>,
        failures: Arc<AtomicU64>,
    }

    async fn receiver(failures: u64) -> (Receiver, String) {
        let receiver = Receiver { failures: Arc::new(AtomicU64::new(failures)), ..Receiver::default() };
        let app = axum::Router::new()
            .fallback(|AxumState(r): AxumState<Receiver>, body: axum::body::Bytes| async move {
                r.got.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
                let fail = r.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
                if fail {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                }
            })
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    struct Setup {
        store: Store,
        dir: std::path::PathBuf,
        poster: CallbackPoster,
        grant: watch::Sender<LeaseGrant>,
        task: tokio::task::JoinHandle<()>,
    }

    /// Callbacks for three statuses of `a` and one of `b`, and a delivery
    /// task under `settings`, with a lease grant usable for `usable`.
    async fn setup(settings: Settings, usable: Duration) -> Setup {
        let dir = std::env::temp_dir().join(format!("shardgate-delivery-{}", uuid::Uuid::new_v4().simple()));
        let store = crate::testing::sqlite_cluster_store(&dir, 1).await.unwrap();
        for (id, recipient) in [("m1", "a"), ("m2", "b")] {
            let message = NewMessage {
                id: id.into(),
                shard: 0,
                recipient: recipient.into(),
                kind: "text".into(),
                body: r#"{"type":"text","text":{"body":"hi"}}"#.into(),
            };
            store.enqueue_message(&message).await.unwrap();
        }
        let outcomes = SessionOutcomes {
            acks: vec![("m1".into(), "s1".into()), ("m2".into(), "s2".into())],
            statuses: vec![
                StatusUpdate::now("m1", MessageStatus::Delivered),
                StatusUpdate::now("m1", MessageStatus::Read),
            ],
            ..Default::default()
        };
        assert_eq!(store.record_outcomes(&outcomes, CallbackFilter::of(&settings)).await.unwrap(), 4);
        let (grant, grant_rx) =
            watch::channel(LeaseGrant { epoch: 1, usable_until: Instant::now() + usable, revoked: false });
        let poster = CallbackPoster::new();
        let task = ShardCallbacks {
            store: store.clone(),
            shard: 0,
            settings: LiveSettings::fixed(settings),
            poster: poster.clone(),
            wake: Arc::default(),
            grant: grant_rx,
        };
        let task = tokio::spawn(task.run());
        Setup { store, dir, poster, grant, task }
    }

    async fn settled(store: &Store, n: usize) -> Vec<crate::store::callbacks::CallbackRow> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let rows = store.callbacks_of_shard(0, 100).await.unwrap();
            if rows.iter().filter(|r| r.delivered_at.is_some()).count() >= n || Instant::now() > deadline {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn statuses_of(got: &[serde_json::Value], recipient: &str) -> Vec<String> {
        got.iter()
            .map(|p| &p["statuses"][0])
            .filter(|s| s["recipient_id"] == recipient)
            .map(|s| s["status"].as_str().unwrap().to_string())
            .collect()
    }

    const HOUR: Duration = Duration::from_secs(3600);

    fn settings(url: &str) -> Settings {
        let mut settings = Settings::default();
        settings.webhooks.url = url.into();
        settings.callback_backoff_delay_ms = 50;
        settings.max_callback_backoff_delay_ms = 100;
        settings
    }

    #[tokio::test]
    async fn a_failed_callback_is_retried_before_the_recipients_next_one() {
        let (receiver, url) = receiver(1).await;
        let setup = setup(settings(&url), HOUR).await;
        let rows = settled(&setup.store, 4).await;
        assert!(rows.iter().all(|r| r.delivered_at.is_some() && r.dropped_at.is_none()), "{rows:?}");
        let got = receiver.got.lock().unwrap().clone();
        assert_eq!(got.len(), 5, "four callbacks, one of them twice: {got:?}");
        let a = statuses_of(&got, "a");
        // Whichever recipient's callback failed, its order held.
        let a_order: Vec<&str> = a.iter().map(String::as_str).collect();
        assert!(
            a_order == ["sent", "delivered", "read"] || a_order == ["sent", "sent", "delivered", "read"],
            "{a_order:?}"
        );
        let counts = setup.poster.counts();
        assert_eq!((counts.delivered, counts.retried, counts.dropped), (4, 1, 0));
        assert_eq!(rows.iter().map(|r| r.attempts).sum::<i64>(), 5);
        setup.task.abort();
        std::fs::remove_dir_all(setup.dir).unwrap();
    }

    #[tokio::test]
    async fn without_persistence_a_failed_callback_is_dropped_after_one_attempt() {
        let (receiver, url) = receiver(u64::MAX).await;
        let setup = setup(Settings { callback_persist: false, ..settings(&url) }, HOUR).await;
        let rows = settled(&setup.store, 4).await;
        assert!(rows.iter().all(|r| r.dropped_at.is_some() && r.attempts == 1), "{rows:?}");
        assert_eq!(receiver.got.lock().unwrap().len(), 4);
        assert_eq!(setup.poster.counts().dropped, 4);
        setup.task.abort();
        std::fs::remove_dir_all(setup.dir).unwrap();
    }

    #[tokio::test]
    async fn nothing_is_posted_while_the_lease_is_unusable() {
        let (receiver, url) = receiver(0).await;
        let setup = setup(settings(&url), Duration::ZERO).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(receiver.got.lock().unwrap().is_empty(), "no post without a usable lease");
        setup.grant.send_modify(|g| g.usable_until = Instant::now() + HOUR);
        let rows = settled(&setup.store, 4).await;
        assert!(rows.iter().all(|r| r.delivered_at.is_some()), "delivered once usable again: {rows:?}");
        setup.task.abort();
        std::fs::remove_dir_all(setup.dir).unwrap();
    }
}
