//! Versioned schema. The bootstrap tables (schema version and master lease)
//! are created by any master so that masters can elect one; every later
//! migration is applied only by the primary master, under its lease.

/// One schema step: portable SQL statements (see [`super::dialect`]).
pub struct Migration {
    /// The version the database is at once this step is applied.
    pub version: i64,
    /// What the step is for, for logs.
    pub name: &'static str,
    /// Statements, each idempotent so that a step cut short can be re-run.
    pub statements: &'static [&'static str],
}

/// Statements any master may run before the election: idempotent.
pub const BOOTSTRAP: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS schema_version (id BIGINT PRIMARY KEY, version BIGINT NOT NULL)",
    "{insert_ignore} INTO schema_version (id, version) VALUES (1, 0)",
    "CREATE TABLE IF NOT EXISTS master_lease (id BIGINT PRIMARY KEY, holder VARCHAR(191) NOT NULL, \
     epoch BIGINT NOT NULL, expires_at BIGINT NOT NULL, version BIGINT NOT NULL)",
    "{insert_ignore} INTO master_lease (id, holder, epoch, expires_at, version) VALUES (1, '', 0, 0, 0)",
];

/// Every migration, in order. The last one's version is what this build knows.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "cluster, nodes, shard map, heartbeats, settings, outbox, users",
        statements: &[
            "CREATE TABLE IF NOT EXISTS cluster (id BIGINT PRIMARY KEY, shards BIGINT NOT NULL, \
         account VARCHAR(64) NOT NULL)",
            "CREATE TABLE IF NOT EXISTS nodes (node_id VARCHAR(191) PRIMARY KEY, role VARCHAR(32) NOT NULL, \
         instance_id VARCHAR(64) NOT NULL, control_addr VARCHAR(191) NOT NULL, \
         version VARCHAR(32) NOT NULL, pid BIGINT NOT NULL, started_at BIGINT NOT NULL, \
         last_seen BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS shard_map (shard BIGINT PRIMARY KEY, owner VARCHAR(191) NOT NULL, \
         owner_instance VARCHAR(64) NOT NULL, epoch BIGINT NOT NULL, lease_expires_at BIGINT NOT NULL, \
         not_before BIGINT NOT NULL, master_epoch BIGINT NOT NULL, version BIGINT NOT NULL, \
         updated_at BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS heartbeat_observations (master_id VARCHAR(191) NOT NULL, \
         node_id VARCHAR(191) NOT NULL, instance_id VARCHAR(64) NOT NULL, last_ok_at BIGINT NOT NULL, \
         rtt_us BIGINT NOT NULL, PRIMARY KEY (master_id, node_id))",
            "CREATE TABLE IF NOT EXISTS settings (id BIGINT PRIMARY KEY, doc TEXT NOT NULL, \
         version BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS messages (seq {autoinc}, id VARCHAR(64) NOT NULL UNIQUE, \
         shard BIGINT NOT NULL, recipient VARCHAR(64) NOT NULL, kind VARCHAR(32) NOT NULL, \
         body TEXT NOT NULL, status_rank BIGINT NOT NULL, created_at BIGINT NOT NULL, \
         sent_at BIGINT, server_id VARCHAR(64), attempts BIGINT NOT NULL, sent_epoch BIGINT, \
         sent_node VARCHAR(191), delivered_at BIGINT, read_at BIGINT)",
            "CREATE INDEX IF NOT EXISTS messages_pending ON messages (shard, status_rank, seq)",
            "CREATE TABLE IF NOT EXISTS inbound_messages (id VARCHAR(64) PRIMARY KEY, \
         sender VARCHAR(64) NOT NULL, body TEXT NOT NULL, timestamp_s BIGINT NOT NULL, \
         shard BIGINT NOT NULL, received_at BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS users (username VARCHAR(64) PRIMARY KEY, \
         password_hash VARCHAR(255) NOT NULL, role VARCHAR(16) NOT NULL, \
         must_change BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS tokens (token_hash VARCHAR(64) PRIMARY KEY, \
         username VARCHAR(64) NOT NULL, expires_at BIGINT NOT NULL)",
        ],
    },
    Migration {
        version: 2,
        name: "policy plugins, shared by every node",
        statements: &["CREATE TABLE IF NOT EXISTS plugins (kind VARCHAR(32) PRIMARY KEY, name VARCHAR(191) NOT NULL, \
         version VARCHAR(64) NOT NULL, sha256 VARCHAR(64) NOT NULL, component {blob} NOT NULL, \
         uploaded_at BIGINT NOT NULL)"],
    },
    Migration {
        version: 3,
        name: "messaging surface: media, contacts cache and checks, failures, callbacks",
        statements: &[
            // Media in WA_MEDIA_DIR, named by id; the row is what the API answers with.
            "CREATE TABLE IF NOT EXISTS media (id VARCHAR(64) PRIMARY KEY, mime_type VARCHAR(191) NOT NULL, \
         sha256 VARCHAR(64) NOT NULL, size BIGINT NOT NULL, origin VARCHAR(16) NOT NULL, \
         created_at BIGINT NOT NULL)",
            // Contact check results, shared by every webapp, valid for 7 days.
            "CREATE TABLE IF NOT EXISTS contacts (input VARCHAR(64) PRIMARY KEY, status VARCHAR(16) NOT NULL, \
         wa_id VARCHAR(64), checked_at BIGINT NOT NULL)",
            // Checks waiting for the shard's primary coreapp to ask the upstream.
            "CREATE TABLE IF NOT EXISTS contact_checks (input VARCHAR(64) PRIMARY KEY, shard BIGINT NOT NULL, \
         requested_at BIGINT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS contact_checks_shard ON contact_checks (shard, requested_at)",
            // Why an outbound message failed (status_rank 4), as on-prem `errors`.
            "CREATE TABLE IF NOT EXISTS message_failures (id VARCHAR(64) PRIMARY KEY, errors TEXT NOT NULL, \
         failed_at BIGINT NOT NULL)",
            // Callbacks to the webhook, written in the transaction that records
            // what they announce and delivered by the shard's primary coreapp,
            // in seq order per recipient. `delivered_at` is set once a callback
            // is settled: delivered, or (with `dropped_at` too) dropped after
            // its one attempt under `callback_persist=false`.
            "CREATE TABLE IF NOT EXISTS callbacks (seq {autoinc}, shard BIGINT NOT NULL, \
         recipient VARCHAR(64) NOT NULL, payload TEXT NOT NULL, created_at BIGINT NOT NULL, \
         attempts BIGINT NOT NULL, next_attempt_at BIGINT NOT NULL, delivered_at BIGINT, \
         dropped_at BIGINT)",
            "CREATE INDEX IF NOT EXISTS callbacks_pending ON callbacks (shard, delivered_at, seq)",
        ],
    },
];

/// The schema version this build knows and writes.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}
