//! Group commit of accepted messages. `POST /v1/messages` hands its row to
//! the node's writer task and waits; the writer stores everything that
//! arrived while its previous commit was in flight in one transaction
//! (multi-row inserts, one fsync), then answers each request. A request is
//! answered only after the commit that holds its row, so the API still
//! acknowledges only durable messages (I3); what changes is that a thousand
//! concurrent requests cost a handful of commits instead of a thousand.
//!
//! Rows keep their arrival order in the transaction, so `seq` follows it: a
//! message sent after another was answered is always stored after it.
//! On PostgreSQL and MariaDB [`SERVER_WRITERS`] writers share the queue, so
//! that the next batch is written while the last one waits for its fsync
//! (the server groups their flushes too); batches in flight together hold
//! only requests none of which was answered yet, so the order above holds.
//! SQLite has one writer: its transactions take turns anyway.
//!
//! The queue is bounded: when the database falls behind, requests wait for a
//! place (the server bounds how many requests there are) instead of piling
//! up in memory.

use crate::error::{ApiError, ErrorKind};
use shardgate_core::config::DbEngine;
use shardgate_core::store::messages::NewMessage;
use shardgate_core::store::Store;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};

/// Requests waiting for a writer, at most.
const QUEUE: usize = 4096;
/// Rows stored in one transaction, at most.
const MAX_BATCH: usize = 512;
/// Writers (transactions in flight at once) on a database server.
const SERVER_WRITERS: usize = 4;

/// How a batch ended.
#[derive(Debug, Clone)]
enum Enqueued {
    /// Committed.
    Stored,
    /// Not stored: the shard count changed after the message was routed.
    ShardCountChanged,
    /// Not stored: the database refused the batch (logged by the writer).
    Failed,
}

/// A message, the shard count it was routed over, and who waits for it.
struct Submission {
    message: NewMessage,
    shards: u32,
    done: oneshot::Sender<Enqueued>,
}

/// The handle requests use; cheap to clone. The writer task ends when the
/// last handle is dropped.
#[derive(Clone)]
pub struct OutboxWriter {
    queue: mpsc::Sender<Submission>,
}

impl OutboxWriter {
    /// Starts the writers of `store` on the current runtime.
    pub fn start(store: Store) -> OutboxWriter {
        let (queue, submissions) = mpsc::channel(QUEUE);
        let submissions = Arc::new(Mutex::new(submissions));
        let writers = if store.engine() == DbEngine::Sqlite { 1 } else { SERVER_WRITERS };
        for _ in 0..writers {
            tokio::spawn(write_batches(store.clone(), submissions.clone()));
        }
        OutboxWriter { queue }
    }

    /// Stores `message`, routed over `shards` shards; returns once its
    /// transaction committed, or with the error to answer.
    pub async fn store(&self, message: NewMessage, shards: u32) -> Result<(), ApiError> {
        let stopped = || ApiError::internal("the outbox writer has stopped");
        let (done, answer) = oneshot::channel();
        self.queue.send(Submission { message, shards, done }).await.map_err(|_| stopped())?;
        match answer.await.map_err(|_| stopped())? {
            Enqueued::Stored => Ok(()),
            Enqueued::ShardCountChanged => Err(ApiError::new(
                ErrorKind::ServiceNotReady,
                "the cluster's shard count changed while the message was routed; send it again",
            )),
            Enqueued::Failed => Err(ApiError::database()),
        }
    }
}

/// A writer task: one transaction per batch of whatever is queued. The
/// queue is held only while a batch is taken, not while it is written.
async fn write_batches(store: Store, submissions: Arc<Mutex<mpsc::Receiver<Submission>>>) {
    let mut batch: Vec<Submission> = Vec::with_capacity(MAX_BATCH);
    loop {
        {
            let mut submissions = submissions.lock().await;
            if batch.is_empty() {
                if submissions.recv_many(&mut batch, MAX_BATCH).await == 0 {
                    return;
                }
            } else {
                while batch.len() < MAX_BATCH {
                    let Ok(next) = submissions.try_recv() else { break };
                    batch.push(next);
                }
            }
        }
        // One shard count per transaction, the count the stored one is
        // checked against; requests routed over another wait for the next.
        let shards = batch[0].shards;
        let split = batch.iter().position(|s| s.shards != shards).unwrap_or(batch.len());
        let rest = batch.split_off(split);
        commit(&store, std::mem::replace(&mut batch, rest), shards).await;
    }
}

/// Stores one batch and answers its requests.
async fn commit(store: &Store, batch: Vec<Submission>, shards: u32) {
    let (messages, waiting): (Vec<NewMessage>, Vec<_>) = batch.into_iter().map(|s| (s.message, s.done)).unzip();
    let outcome = match store.enqueue_messages(&messages, shards).await {
        Ok(true) => Enqueued::Stored,
        Ok(false) => Enqueued::ShardCountChanged,
        Err(e) => {
            tracing::error!("database failure storing {} accepted message(s): {e}", messages.len());
            Enqueued::Failed
        }
    };
    for done in waiting {
        // A request that gave up no longer listens; its row is stored anyway.
        let _ = done.send(outcome.clone());
    }
}
