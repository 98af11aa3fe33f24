//! The store test suite: every property of [`Store`] proven on all three
//! backends, SQLite, PostgreSQL and MariaDB, through the same public API.
//!
//! Each property is one `case_*` function; [`store_cases!`] turns it into
//! `sqlite_*`, `postgres_*` and `mariadb_*` tests. Every test creates its own
//! database (`sgt_<8 hex>_shardgate`, or a SQLite file in a fresh temp dir)
//! and a guard drops it at the end, also when the case panics: the servers
//! are shared with other CI jobs, so the suite touches no database it did not
//! create.
//!
//! The servers are expected at 127.0.0.1:5432 (PostgreSQL, user `postgres`,
//! trust auth) and 127.0.0.1:3306 (MariaDB, `root`, empty password). When one
//! is unreachable its tests fail naming it, unless
//! `SHARDGATE_SKIP_SERVER_DBS=1` is set.

use futures::FutureExt;
use shardgate_core::config::{DbConfig, DbEngine};
use shardgate_core::store::contacts::{ContactRow, ContactStatus, CONTACT_RESULT_TTL_MS};
use shardgate_core::store::master_lease::MasterAuth;
use shardgate_core::store::media::{MediaOrigin, MediaRecord};
use shardgate_core::store::messages::{InboundMessage, MessageStatus, NewMessage};
use shardgate_core::store::nodes::NodeRecord;
use shardgate_core::store::plugins::StoredPlugin;
use shardgate_core::store::schema;
use shardgate_core::store::shard_map::ClusterInfo;
use shardgate_core::store::users::UserRecord;
use shardgate_core::store::{Store, StoreError};
use shardgate_core::testing::TestDatabase;
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A lease long enough never to expire during a case.
const LONG: Duration = Duration::from_secs(30);
/// A lease short enough to wait out.
const TINY: Duration = Duration::from_millis(150);
/// How long a case may wait for a lease to expire before it fails.
const EXPIRY_DEADLINE: Duration = Duration::from_secs(10);
/// How long one case may run before it fails instead of hanging the suite.
const CASE_DEADLINE: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------
// Per-test databases
// ---------------------------------------------------------------------------

/// A test database with the store open on it; the store closes first.
struct TestDb {
    store: Store,
    db: TestDatabase,
}

impl TestDb {
    /// Creates a fresh database on `engine`; `None` when the server tests are skipped.
    async fn create(engine: DbEngine) -> Option<TestDb> {
        let db = TestDatabase::create(engine).await?;
        // A failed connect still drops whatever it created, through `db`.
        match Store::connect(&db.config).await {
            Ok(store) => Some(TestDb { store, db }),
            Err(e) => panic!("{}: Store::connect failed: {e}", db.server_name()),
        }
    }

    fn store(&self) -> &Store {
        &self.store
    }
}

/// Runs one case against a fresh database of `engine`; the guard drops it.
async fn run_case<F>(engine: DbEngine, case: F)
where
    F: AsyncFnOnce(&Store, &DbConfig),
{
    let Some(db) = TestDb::create(engine).await else {
        return;
    };
    let outcome =
        tokio::time::timeout(CASE_DEADLINE, AssertUnwindSafe(case(db.store(), &db.db.config)).catch_unwind()).await;
    // Drop the database before reporting, so that a failure leaves nothing behind.
    drop(db);
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("case did not finish within {CASE_DEADLINE:?}"),
    }
}

/// `case => sqlite_test, postgres_test, mariadb_test;` makes the three tests.
macro_rules! store_cases {
    ($($case:ident => $sqlite:ident, $postgres:ident, $mariadb:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            run_case(DbEngine::Sqlite, $case).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            run_case(DbEngine::Postgres, $case).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $mariadb() {
            run_case(DbEngine::MySql, $case).await;
        }
    )*};
}

store_cases! {
    case_schema_migrates_once_and_refuses_newer =>
        sqlite_schema_migrates_once_and_refuses_a_newer_database,
        postgres_schema_migrates_once_and_refuses_a_newer_database,
        mariadb_schema_migrates_once_and_refuses_a_newer_database;
    case_database_clock =>
        sqlite_database_clock_is_near_wall_clock_and_monotonic,
        postgres_database_clock_is_near_wall_clock_and_monotonic,
        mariadb_database_clock_is_near_wall_clock_and_monotonic;
    case_master_lease =>
        sqlite_master_lease_has_one_holder_and_expired_holder_is_fenced,
        postgres_master_lease_has_one_holder_and_expired_holder_is_fenced,
        mariadb_master_lease_has_one_holder_and_expired_holder_is_fenced;
    case_master_lease_race =>
        sqlite_concurrent_master_candidates_elect_exactly_one,
        postgres_concurrent_master_candidates_elect_exactly_one,
        mariadb_concurrent_master_candidates_elect_exactly_one;
    case_reassignment_fenced_by_master =>
        sqlite_deposed_master_cannot_reassign_shards,
        postgres_deposed_master_cannot_reassign_shards,
        mariadb_deposed_master_cannot_reassign_shards;
    case_shard_lease =>
        sqlite_shard_lease_only_for_current_owner_and_epoch,
        postgres_shard_lease_only_for_current_owner_and_epoch,
        mariadb_shard_lease_only_for_current_owner_and_epoch;
    case_nodes_and_heartbeats =>
        sqlite_nodes_reregister_and_heartbeats_upsert,
        postgres_nodes_reregister_and_heartbeats_upsert,
        mariadb_nodes_reregister_and_heartbeats_upsert;
    case_settings =>
        sqlite_settings_writes_are_compare_and_set,
        postgres_settings_writes_are_compare_and_set,
        mariadb_settings_writes_are_compare_and_set;
    case_messages =>
        sqlite_outbox_keeps_order_and_status_never_regresses,
        postgres_outbox_keeps_order_and_status_never_regresses,
        mariadb_outbox_keeps_order_and_status_never_regresses;
    case_outbox_window =>
        sqlite_outbox_batches_commit_whole_and_epochs_take_rows_until_put_back,
        postgres_outbox_batches_commit_whole_and_epochs_take_rows_until_put_back,
        mariadb_outbox_batches_commit_whole_and_epochs_take_rows_until_put_back;
    case_users_and_tokens =>
        sqlite_users_insert_once_and_expired_tokens_are_refused,
        postgres_users_insert_once_and_expired_tokens_are_refused,
        mariadb_users_insert_once_and_expired_tokens_are_refused;
    case_user_lifecycle =>
        sqlite_deleting_a_user_revokes_exactly_its_tokens,
        postgres_deleting_a_user_revokes_exactly_its_tokens,
        mariadb_deleting_a_user_revokes_exactly_its_tokens;
    case_plugins =>
        sqlite_plugins_round_trip_binary_components_one_per_kind,
        postgres_plugins_round_trip_binary_components_one_per_kind,
        mariadb_plugins_round_trip_binary_components_one_per_kind;
    case_media =>
        sqlite_media_rows_round_trip_and_delete_once,
        postgres_media_rows_round_trip_and_delete_once,
        mariadb_media_rows_round_trip_and_delete_once;
    case_contacts =>
        sqlite_contact_checks_queue_per_shard_and_results_age_on_the_database_clock,
        postgres_contact_checks_queue_per_shard_and_results_age_on_the_database_clock,
        mariadb_contact_checks_queue_per_shard_and_results_age_on_the_database_clock;
    case_inbound_lookup =>
        sqlite_inbound_messages_read_back_by_id,
        postgres_inbound_messages_read_back_by_id,
        mariadb_inbound_messages_read_back_by_id;
}

// ---------------------------------------------------------------------------
// Helpers shared by the cases
// ---------------------------------------------------------------------------

/// A raw connection to a test database, for what the store API must not
/// offer (forging a newer schema version).
async fn raw_connection(config: &DbConfig) -> sqlx::AnyConnection {
    let url = config.server_url(&config.database_name());
    <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("raw connection to {url}: {e}"))
}

/// Bootstrap and migrate: the state every non-schema case starts from.
async fn migrated(store: &Store) {
    store.bootstrap().await.expect("bootstrap");
    store.migrate().await.expect("migrate");
}

fn wall_clock_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// Waits until the master lease has expired on the database clock. Polls
/// without pausing, so that callers act in the very millisecond of expiry,
/// where `is_live` and `try_acquire_master_lease` must already agree.
async fn wait_master_lease_expired(store: &Store) {
    let deadline = tokio::time::Instant::now() + EXPIRY_DEADLINE;
    loop {
        let lease = store.read_master_lease().await.expect("read master lease");
        if !lease.is_live() {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "master lease still live after {EXPIRY_DEADLINE:?}: {lease:?}");
        tokio::task::yield_now().await;
    }
}

/// Waits until the database clock has passed `at` (unix ms).
async fn wait_database_clock_past(store: &Store, at: i64) {
    let deadline = tokio::time::Instant::now() + EXPIRY_DEADLINE;
    loop {
        let now = store.now_ms().await.expect("now_ms");
        if now > at {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "database clock {now} never passed {at}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Acquires the master lease for `holder`, which must succeed.
async fn become_master(store: &Store, holder: &str, ttl: Duration) -> MasterAuth {
    store
        .try_acquire_master_lease(holder, ttl)
        .await
        .expect("try_acquire_master_lease")
        .unwrap_or_else(|| panic!("{holder} could not acquire a free master lease"))
}

/// Deposes `old`: its lease runs out and `new_holder` takes the next epoch.
async fn depose(store: &Store, old: &MasterAuth, new_holder: &str) -> MasterAuth {
    assert!(store.renew_master_lease(old, TINY).await.unwrap(), "shorten {old:?}");
    wait_master_lease_expired(store).await;
    let new = become_master(store, new_holder, LONG).await;
    assert_eq!(new.epoch, old.epoch + 1, "a new master takes the next epoch");
    new
}

async fn shard_row(store: &Store, shard: u32) -> shardgate_core::store::shard_map::ShardRow {
    let map = store.shard_map().await.expect("shard_map");
    map.rows.into_iter().find(|r| r.shard == shard).unwrap_or_else(|| panic!("no row for shard {shard}"))
}

// ---------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------

async fn case_schema_migrates_once_and_refuses_newer(store: &Store, config: &DbConfig) {
    assert_eq!(store.schema_version().await.unwrap(), 0, "a fresh database is at version 0");
    store.bootstrap().await.expect("bootstrap");
    store.bootstrap().await.expect("bootstrap is idempotent");
    assert_eq!(store.schema_version().await.unwrap(), 0, "bootstrap applies no migration");

    let all: Vec<i64> = schema::MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(store.migrate().await.expect("first migrate"), all);
    assert_eq!(store.schema_version().await.unwrap(), schema::latest_version());
    assert_eq!(store.migrate().await.expect("second migrate"), Vec::<i64>::new(), "migrate is idempotent");
    store.bootstrap().await.expect("bootstrap after migrate");
    assert_eq!(store.schema_version().await.unwrap(), schema::latest_version(), "bootstrap keeps the version");
    assert_eq!(store.check_not_newer().await.unwrap(), schema::latest_version());

    // A newer Shardgate upgraded the database: this build must stop.
    let newer = schema::latest_version() + 1;
    let mut conn = raw_connection(config).await;
    let sql = format!("UPDATE schema_version SET version = {newer} WHERE id = 1");
    let done = sqlx::Executor::execute(&mut conn, sql.as_str()).await.expect(&sql);
    assert_eq!(done.rows_affected(), 1, "{sql}");
    let _ = sqlx::Connection::close(conn).await;
    match store.check_not_newer().await {
        Err(StoreError::SchemaTooNew { found, known, .. }) => {
            assert_eq!((found, known), (newer, schema::latest_version()));
        }
        other => panic!("check_not_newer on a newer schema: expected SchemaTooNew, got {other:?}"),
    }
    match store.migrate().await {
        Err(StoreError::SchemaTooNew { found, .. }) => assert_eq!(found, newer),
        other => panic!("migrate on a newer schema: expected SchemaTooNew, got {other:?}"),
    }
    assert_eq!(store.schema_version().await.unwrap(), newer, "a refused migrate changes nothing");
}

async fn case_database_clock(store: &Store, _: &DbConfig) {
    let before = wall_clock_ms();
    let db_now = store.now_ms().await.expect("now_ms");
    let after = wall_clock_ms();
    assert!(
        db_now > before - 5_000 && db_now < after + 5_000,
        "database clock {db_now} is not within 5 s of the wall clock [{before}, {after}]"
    );
    let mut last = db_now;
    for _ in 0..50 {
        let now = store.now_ms().await.expect("now_ms");
        assert!(now >= last, "database clock went backwards: {last} then {now}");
        last = now;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let later = store.now_ms().await.unwrap();
    assert!(later >= last + 40, "50 ms of sleep moved the database clock only {} ms", later - last);
}

async fn case_master_lease(store: &Store, _: &DbConfig) {
    store.bootstrap().await.expect("bootstrap");
    let fresh = store.read_master_lease().await.unwrap();
    assert!(!fresh.is_live(), "a fresh lease is free: {fresh:?}");
    assert_eq!(fresh.epoch, 0);

    let m1 = become_master(store, "m1", LONG).await;
    assert_eq!(m1, MasterAuth { holder: "m1".into(), epoch: 1 }, "the first winner gets epoch 1");
    let lease = store.read_master_lease().await.unwrap();
    assert!(lease.is_live() && lease.holder == "m1", "{lease:?}");
    assert!(lease.expires_at >= lease.now + LONG.as_millis() as i64 - 2_000, "ttl applied: {lease:?}");

    assert_eq!(store.try_acquire_master_lease("m2", LONG).await.unwrap(), None, "a live lease is not taken");
    assert_eq!(store.try_acquire_master_lease("m1", LONG).await.unwrap(), None, "nor re-won by its holder");

    assert!(store.renew_master_lease(&m1, LONG).await.unwrap(), "the holder renews");
    let wrong_epoch = MasterAuth { holder: "m1".into(), epoch: 7 };
    assert!(!store.renew_master_lease(&wrong_epoch, LONG).await.unwrap(), "a wrong epoch does not renew");
    let wrong_holder = MasterAuth { holder: "m2".into(), epoch: 1 };
    assert!(!store.renew_master_lease(&wrong_holder, LONG).await.unwrap(), "a non-holder does not renew");

    // Expiry: after it, another master wins the next epoch and m1 is fenced.
    let m2 = depose(store, &m1, "m2").await;
    assert_eq!(m2, MasterAuth { holder: "m2".into(), epoch: 2 });
    assert!(!store.renew_master_lease(&m1, LONG).await.unwrap(), "the deposed holder cannot renew");
    assert!(!store.release_master_lease(&m1).await.unwrap(), "nor release the new holder's lease");
    let lease = store.read_master_lease().await.unwrap();
    assert!(lease.is_live() && lease.holder == "m2" && lease.epoch == 2, "{lease:?}");

    // Release: free at once, no waiting for expiry.
    assert!(store.release_master_lease(&m2).await.unwrap(), "the holder releases");
    assert!(!store.read_master_lease().await.unwrap().is_live(), "a released lease is free");
    let m3 = become_master(store, "m3", LONG).await;
    assert_eq!(m3.epoch, 3, "every win bumps the epoch");
}

async fn case_master_lease_race(store: &Store, _: &DbConfig) {
    store.bootstrap().await.expect("bootstrap");
    for round in 1..=3_i64 {
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(8));
        let candidates: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                let start = start.clone();
                tokio::spawn(async move {
                    start.wait().await;
                    store.try_acquire_master_lease(&format!("m{round}-{i}"), LONG).await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for candidate in candidates {
            if let Some(auth) = candidate.await.expect("candidate task").expect("try_acquire_master_lease") {
                winners.push(auth);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one of 8 candidates wins: {winners:?}");
        let winner = winners.pop().unwrap();
        assert_eq!(winner.epoch, round, "round {round}: one win, one epoch bump");
        let lease = store.read_master_lease().await.unwrap();
        assert_eq!((lease.holder.as_str(), lease.epoch), (winner.holder.as_str(), round));
        assert!(store.release_master_lease(&winner).await.unwrap());
    }
}

async fn case_reassignment_fenced_by_master(store: &Store, _: &DbConfig) {
    migrated(store).await;
    assert_eq!(store.cluster_info().await.unwrap(), None, "no cluster before init");
    let wanted = ClusterInfo { shards: 4, account: "15550001111".into() };
    assert_eq!(store.init_cluster(&wanted).await.expect("init_cluster"), wanted);
    // A later init (say, by a deposed master) keeps what is stored.
    let other = ClusterInfo { shards: 8, account: "19990000000".into() };
    assert_eq!(store.init_cluster(&other).await.expect("second init_cluster"), wanted);
    assert_eq!(store.cluster_info().await.unwrap(), Some(wanted));
    let map = store.shard_map().await.unwrap();
    assert_eq!(map.rows.iter().map(|r| r.shard).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    assert!(map.rows.iter().all(|r| r.owner.is_empty() && r.epoch == 0 && r.version == 0), "{map:?}");

    let m1 = become_master(store, "m1", LONG).await;
    assert!(store.reassign_shard(0, 0, "core-a", 0, &m1).await.unwrap(), "the master reassigns");
    let row = shard_row(store, 0).await;
    assert_eq!((row.owner.as_str(), row.epoch, row.master_epoch, row.version), ("core-a", 1, 1, 1));
    assert!(row.owner_instance.is_empty() && row.lease_expires_at == 0, "{row:?}");

    assert!(!store.reassign_shard(0, 0, "core-b", 0, &m1).await.unwrap(), "a stale row version does not reassign");
    assert_eq!(shard_row(store, 0).await, row, "a refused reassignment changes nothing");

    // An expired master may not act, even before anyone else took over.
    assert!(store.renew_master_lease(&m1, TINY).await.unwrap());
    wait_master_lease_expired(store).await;
    assert!(!store.reassign_shard(0, 1, "core-b", 0, &m1).await.unwrap(), "an expired master is fenced");

    let m2 = become_master(store, "m2", LONG).await;
    assert_eq!(m2.epoch, 2);
    assert!(!store.reassign_shard(0, 1, "core-b", 0, &m1).await.unwrap(), "a deposed master's late write fails");
    assert!(!store.reassign_shard(1, 0, "core-b", 0, &m1).await.unwrap(), "on every shard");
    let forged = MasterAuth { holder: "m1".into(), epoch: 2 };
    assert!(!store.reassign_shard(0, 1, "core-b", 0, &forged).await.unwrap(), "holder and epoch must match");
    assert_eq!(shard_row(store, 0).await, row, "the deposed master changed nothing");
    assert_eq!(shard_row(store, 1).await.version, 0);

    assert!(store.reassign_shard(0, 1, "core-b", 0, &m2).await.unwrap(), "the new master reassigns");
    let row = shard_row(store, 0).await;
    assert_eq!((row.owner.as_str(), row.epoch, row.master_epoch, row.version), ("core-b", 2, 2, 2));
}

async fn case_shard_lease(store: &Store, _: &DbConfig) {
    migrated(store).await;
    store.init_cluster(&ClusterInfo { shards: 2, account: "15550002222".into() }).await.unwrap();
    let master = become_master(store, "m1", LONG).await;

    let not_before = store.now_ms().await.unwrap() + 500;
    assert!(store.reassign_shard(0, 0, "core-a", not_before, &master).await.unwrap());
    let epoch = shard_row(store, 0).await.epoch;
    assert_eq!(epoch, 1);
    assert!(!store.claim_shard(0, epoch, "core-a", "a-1", LONG).await.unwrap(), "no claim before not_before");
    wait_database_clock_past(store, not_before).await;
    assert!(!store.claim_shard(0, epoch, "core-b", "b-1", LONG).await.unwrap(), "a non-owner cannot claim");
    assert!(!store.claim_shard(0, epoch + 1, "core-a", "a-1", LONG).await.unwrap(), "nor a wrong epoch");
    assert!(store.claim_shard(0, epoch, "core-a", "a-1", LONG).await.unwrap(), "the owner claims");
    assert!(
        !store.claim_shard(0, epoch, "core-a", "a-2", LONG).await.unwrap(),
        "a claimed lease cannot be claimed again, even by a restarted owner"
    );
    let map = store.shard_map().await.unwrap();
    let row = &map.rows[0];
    assert_eq!(row.owner_instance, "a-1");
    assert!(row.lease_live(map.now), "claimed lease is live: {row:?} at {}", map.now);

    assert!(store.renew_shard(0, epoch, "a-1", LONG).await.unwrap(), "the claiming instance renews");
    assert!(!store.renew_shard(0, epoch, "a-2", LONG).await.unwrap(), "another instance cannot renew");
    assert!(!store.renew_shard(0, epoch - 1, "a-1", LONG).await.unwrap(), "a stale epoch cannot renew");
    assert!(!store.renew_shard(1, epoch, "a-1", LONG).await.unwrap(), "nor renew another shard");

    // lease_live follows the database clock.
    assert!(store.renew_shard(0, epoch, "a-1", TINY).await.unwrap());
    let expires_at = shard_row(store, 0).await.lease_expires_at;
    wait_database_clock_past(store, expires_at).await;
    let map = store.shard_map().await.unwrap();
    assert!(!map.rows[0].lease_live(map.now), "expired lease is not live: {:?} at {}", map.rows[0], map.now);

    // The master moves the shard: the old holder's lease is fenced.
    let version = shard_row(store, 0).await.version;
    assert!(store.reassign_shard(0, version, "core-b", 0, &master).await.unwrap());
    let row = shard_row(store, 0).await;
    assert_eq!((row.owner.as_str(), row.owner_instance.as_str(), row.epoch), ("core-b", "", 2));
    assert!(!store.renew_shard(0, epoch, "a-1", LONG).await.unwrap(), "the old holder's renew fails");
    assert!(!store.release_shard(0, epoch, "a-1", Duration::ZERO).await.unwrap(), "and so does its release");
    assert!(!store.claim_shard(0, epoch, "core-a", "a-1", LONG).await.unwrap(), "and its reclaim");

    assert!(store.claim_shard(0, 2, "core-b", "b-1", LONG).await.unwrap(), "the new owner claims");
    assert!(store.release_shard(0, 2, "b-1", LONG).await.unwrap(), "the owner releases");
    let map = store.shard_map().await.unwrap();
    let row = &map.rows[0];
    assert!(row.owner.is_empty() && row.owner_instance.is_empty(), "a released shard is free: {row:?}");
    assert!(row.not_before > map.now, "but claimable only once the upstream dropped the session: {row:?}");
    assert!(!row.lease_live(map.now));
    assert!(!store.renew_shard(0, 2, "b-1", LONG).await.unwrap(), "a released lease is not renewed");
    let untouched = &map.rows[1];
    assert!(untouched.owner.is_empty() && untouched.version == 0, "shard 1 untouched: {untouched:?}");
}

async fn case_nodes_and_heartbeats(store: &Store, _: &DbConfig) {
    migrated(store).await;
    let first = NodeRecord {
        node_id: "core-a".into(),
        role: "coreapp".into(),
        instance_id: "inst-1".into(),
        control_addr: "10.0.0.5:6252".into(),
        version: "0.1.0".into(),
        pid: 4242,
        started_at: 0,
        last_seen: 0,
    };
    let t0 = store.now_ms().await.unwrap();
    store.register_node(&first).await.expect("register");
    let (now, nodes) = store.nodes().await.unwrap();
    assert_eq!(nodes.len(), 1);
    let stored = &nodes[0];
    assert_eq!(
        (&stored.node_id, &stored.role, &stored.instance_id, &stored.control_addr, &stored.version, stored.pid),
        (&first.node_id, &first.role, &first.instance_id, &first.control_addr, &first.version, first.pid)
    );
    assert!(stored.started_at >= t0 && stored.started_at <= now, "started_at on the database clock");
    assert!(stored.last_seen >= t0 && stored.last_seen <= now);

    // The same node restarted: the new process takes the id over.
    let restarted = NodeRecord { instance_id: "inst-2".into(), pid: 5151, ..first.clone() };
    store.register_node(&restarted).await.expect("re-register");
    store.register_node(&restarted).await.expect("re-register again at once");
    let (_, nodes) = store.nodes().await.unwrap();
    assert_eq!(nodes.len(), 1, "re-registering updates, never duplicates: {nodes:?}");
    assert_eq!((nodes[0].instance_id.as_str(), nodes[0].pid), ("inst-2", 5151));

    assert!(!store.touch_node("core-a", "inst-1").await.unwrap(), "the old process is told it lost its id");
    assert!(!store.touch_node("core-z", "inst-2").await.unwrap(), "an unknown node is not touched");
    // Twice within the same millisecond still counts as touched.
    assert!(store.touch_node("core-a", "inst-2").await.unwrap(), "the live process touches");
    assert!(store.touch_node("core-a", "inst-2").await.unwrap(), "and touches again at once");
    let seen = store.nodes().await.unwrap().1[0].last_seen;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(store.touch_node("core-a", "inst-2").await.unwrap());
    assert!(store.nodes().await.unwrap().1[0].last_seen > seen, "touch moves last_seen forward");

    // A process leaving makes its liveness ancient; only its own record.
    assert!(!store.mark_node_leaving("core-a", "inst-1").await.unwrap(), "an old process cannot mark the new one");
    assert!(store.nodes().await.unwrap().1[0].last_seen > seen);
    assert!(store.mark_node_leaving("core-a", "inst-2").await.unwrap(), "the live process marks itself leaving");
    assert_eq!(store.nodes().await.unwrap().1[0].last_seen, 0, "no master counts a leaving node healthy");
    assert!(store.touch_node("core-a", "inst-2").await.unwrap());

    let master = NodeRecord { node_id: "master-1".into(), role: "master".into(), ..first.clone() };
    store.register_node(&master).await.unwrap();
    let (_, nodes) = store.nodes().await.unwrap();
    assert_eq!(nodes.iter().map(|n| n.node_id.as_str()).collect::<Vec<_>>(), vec!["core-a", "master-1"]);

    assert!(store.heartbeat_observations().await.unwrap().is_empty());
    store.record_heartbeat("master-1", "core-a", "inst-2", 1500).await.expect("first heartbeat");
    let first_ok = store.heartbeat_observations().await.unwrap();
    assert_eq!(first_ok.len(), 1);
    assert_eq!(
        (first_ok[0].master_id.as_str(), first_ok[0].node_id.as_str(), first_ok[0].instance_id.as_str()),
        ("master-1", "core-a", "inst-2")
    );
    assert_eq!(first_ok[0].rtt_us, 1500);
    tokio::time::sleep(Duration::from_millis(20)).await;
    store.record_heartbeat("master-1", "core-a", "inst-3", 900).await.expect("second heartbeat");
    store.record_heartbeat("master-1", "core-a", "inst-3", 900).await.expect("identical heartbeat");
    let observations = store.heartbeat_observations().await.unwrap();
    assert_eq!(observations.len(), 1, "a second heartbeat updates the row: {observations:?}");
    let latest = &observations[0];
    assert_eq!((latest.instance_id.as_str(), latest.rtt_us), ("inst-3", 900));
    assert!(latest.last_ok_at > first_ok[0].last_ok_at, "last_ok_at moves forward");

    store.record_heartbeat("master-2", "core-a", "inst-3", 700).await.unwrap();
    let mut by_master: Vec<_> =
        store.heartbeat_observations().await.unwrap().into_iter().map(|o| (o.master_id, o.rtt_us)).collect();
    by_master.sort();
    assert_eq!(by_master, vec![("master-1".into(), 900), ("master-2".into(), 700)]);
}

async fn case_settings(store: &Store, _: &DbConfig) {
    migrated(store).await;
    assert_eq!(store.settings_version().await.unwrap(), 0);
    assert_eq!(store.settings_doc().await.unwrap(), None);

    let first = r#"{"webhooks":{"url":"https://hooks.example/ü"},"heartbeat_interval":5}"#;
    assert_eq!(store.write_settings(0, first).await.unwrap(), Some(1), "the first write is version 1");
    assert_eq!(store.write_settings(0, "{}").await.unwrap(), None, "a second first-write loses");
    assert_eq!(store.settings_doc().await.unwrap(), Some((1, first.to_string())));

    // A large document with every kind of character round-trips.
    let second = format!(r#"{{"note":"{}","quote":"it's \"x\"","emoji":"📨"}}"#, "é".repeat(20_000));
    assert_eq!(store.write_settings(1, &second).await.unwrap(), Some(2));
    assert_eq!(store.write_settings(1, "{}").await.unwrap(), None, "a stale version loses");
    assert_eq!(store.write_settings(5, "{}").await.unwrap(), None, "a future version loses");
    assert_eq!(store.settings_doc().await.unwrap(), Some((2, second.clone())));
    // Writing the same bytes again is still a new version.
    assert_eq!(store.write_settings(2, &second).await.unwrap(), Some(3));
    assert_eq!(store.settings_version().await.unwrap(), 3);
}

fn message(id: &str, shard: u32, body: &str) -> NewMessage {
    NewMessage { id: id.into(), shard, recipient: format!("1555000{shard}"), kind: "text".into(), body: body.into() }
}

async fn case_messages(store: &Store, _: &DbConfig) {
    migrated(store).await;
    let long_body = format!("{{\"text\":{{\"body\":\"{}\"}}}}", "ñ".repeat(4096));
    for m in
        [message("m1", 0, &long_body), message("m2", 1, "two"), message("m3", 0, "three ✓"), message("m4", 0, "four")]
    {
        store.enqueue_message(&m).await.expect("enqueue");
    }
    assert!(store.enqueue_message(&message("m1", 1, "dup")).await.is_err(), "a duplicate id is refused");

    let pending = store.pending_messages(0, 10).await.unwrap();
    assert_eq!(pending.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), vec!["m1", "m3", "m4"]);
    assert!(pending.windows(2).all(|w| w[0].seq < w[1].seq), "seq order: {pending:?}");
    assert_eq!(pending[0].body, long_body, "the body round-trips");
    assert_eq!(pending[1].body, "three ✓");
    assert_eq!(pending[0].recipient, "15550000");
    assert!(pending.iter().all(|p| p.attempts == 0));
    let limited = store.pending_messages(0, 2).await.unwrap();
    assert_eq!(limited.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), vec!["m1", "m3"], "limit");
    let shard1 = store.pending_messages(1, 10).await.unwrap();
    assert_eq!(shard1.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), vec!["m2"], "only its shard");

    store.mark_attempt(&["m1".into(), "m3".into()], 1, "core-a").await.unwrap();
    store.mark_attempt(&["m1".into()], 2, "core-b").await.unwrap();
    let attempts: Vec<_> =
        store.pending_messages(0, 10).await.unwrap().into_iter().map(|p| (p.id, p.attempts)).collect();
    assert_eq!(attempts, vec![("m1".into(), 2), ("m3".into(), 1), ("m4".into(), 0)]);

    assert_eq!(store.message_status("m1").await.unwrap(), Some(MessageStatus::Queued));
    store.mark_sent("m1", "srv-1").await.unwrap();
    assert_eq!(store.message_status("m1").await.unwrap(), Some(MessageStatus::Sent));
    let pending = store.pending_messages(0, 10).await.unwrap();
    assert_eq!(pending.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), vec!["m3", "m4"], "sent leaves");

    // Receipts only move forward.
    store.record_receipt("m1", MessageStatus::Read).await.unwrap();
    assert_eq!(store.message_status("m1").await.unwrap(), Some(MessageStatus::Read));
    store.record_receipt("m1", MessageStatus::Delivered).await.unwrap();
    store.record_receipt("m1", MessageStatus::Sent).await.unwrap();
    store.mark_sent("m1", "srv-1").await.unwrap();
    assert_eq!(store.message_status("m1").await.unwrap(), Some(MessageStatus::Read), "read stays read");
    store.record_receipt("m3", MessageStatus::Delivered).await.unwrap();
    assert_eq!(store.message_status("m3").await.unwrap(), Some(MessageStatus::Delivered));
    assert_eq!(store.message_status("nope").await.unwrap(), None);

    let counts: BTreeMap<MessageStatus, i64> = store.message_counts().await.unwrap().into_iter().collect();
    let expected: BTreeMap<MessageStatus, i64> =
        [(MessageStatus::Queued, 2), (MessageStatus::Delivered, 1), (MessageStatus::Read, 1)].into();
    assert_eq!(counts, expected);

    let inbound = InboundMessage {
        id: "in-1".into(),
        sender: "15551230000".into(),
        body: "hola ¿qué tal?".into(),
        timestamp_s: 1_700_000_000,
        shard: 1,
    };
    assert!(store.store_inbound(&inbound).await.unwrap(), "first delivery is stored");
    assert!(!store.store_inbound(&inbound).await.unwrap(), "a redelivery is deduped");
    let other = InboundMessage { id: "in-2".into(), ..inbound };
    assert!(store.store_inbound(&other).await.unwrap());
}

async fn case_outbox_window(store: &Store, _: &DbConfig) {
    migrated(store).await;
    store.init_cluster(&ClusterInfo { shards: 2, account: "15550001111".into() }).await.unwrap();
    let ids =
        |rows: Vec<shardgate_core::store::messages::PendingMessage>| rows.into_iter().map(|p| p.id).collect::<Vec<_>>();
    // A batch is stored whole, in its order, and only under the shard count it was routed over.
    let batch: Vec<NewMessage> = (1..=250).map(|i| message(&format!("b{i:03}"), 0, "x")).collect();
    assert!(!store.enqueue_messages(&batch[..3], 4).await.unwrap(), "routed over another shard count");
    assert!(store.pending_messages(0, 10).await.unwrap().is_empty(), "nothing of it is stored");
    assert!(store.enqueue_messages(&batch, 2).await.unwrap());
    let pending = store.pending_messages(0, 1000).await.unwrap();
    assert_eq!(ids(pending.clone()), batch.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), "in its order");
    assert!(pending.windows(2).all(|w| w[0].seq < w[1].seq));
    let duplicate = [message("fresh", 0, "x"), message("b001", 0, "dup")];
    assert!(store.enqueue_messages(&duplicate, 2).await.is_err(), "a duplicate id fails the batch");
    assert_eq!(store.message_status("fresh").await.unwrap(), None, "and nothing of it is stored");

    // Epoch 7 takes rows: they are not read again until put back.
    let taken: Vec<String> = batch[..100].iter().map(|m| m.id.clone()).collect();
    store.mark_attempt(&taken, 7, "core-a").await.unwrap();
    assert_eq!(ids(store.unsent_messages(0, 7, 2).await.unwrap()), vec!["b101", "b102"]);
    assert_eq!(ids(store.unsent_messages(0, 8, 2).await.unwrap()), vec!["b001", "b002"], "another epoch reads them");
    store.mark_sent("b001", "srv").await.unwrap();
    store.put_back_unacknowledged(0, 7).await.unwrap();
    assert_eq!(ids(store.unsent_messages(0, 7, 2).await.unwrap()), vec!["b002", "b003"], "put back, in seq order");
    // A row another epoch took (a deposed primary's late mark) is still unsent for this one.
    store.mark_attempt(&["b002".into()], 6, "core-old").await.unwrap();
    assert_eq!(ids(store.unsent_messages(0, 7, 1).await.unwrap()), vec!["b002"]);
}

async fn case_users_and_tokens(store: &Store, _: &DbConfig) {
    migrated(store).await;
    assert_eq!(store.user("admin").await.unwrap(), None);
    let admin = UserRecord {
        username: "admin".into(),
        password_hash: "$argon2id$v=19$first".into(),
        role: "admin".into(),
        must_change: true,
    };
    assert!(store.ensure_user(&admin).await.expect("ensure_user"), "created");
    assert_eq!(store.user("admin").await.unwrap(), Some(admin.clone()));
    let again = UserRecord { password_hash: "$argon2id$v=19$other".into(), must_change: false, ..admin.clone() };
    assert!(!store.ensure_user(&again).await.expect("ensure_user again"), "not created twice");
    assert_eq!(store.user("admin").await.unwrap(), Some(admin.clone()), "ensure_user inserts once");

    assert_eq!(store.set_password("admin", "$argon2id$v=19$changed").await.unwrap(), Some(0));
    let changed = store.user("admin").await.unwrap().unwrap();
    assert_eq!(changed.password_hash, "$argon2id$v=19$changed");
    assert!(!changed.must_change, "a new password ends must_change");

    let now = store.now_ms().await.unwrap();
    let week = 7 * 24 * 3600 * 1000;
    let changed_hash = "$argon2id$v=19$changed";
    assert!(store.insert_token("live-token-hash", "admin", changed_hash, now + week).await.unwrap());
    store.insert_token("old-token-hash", "admin", changed_hash, now - 1_000).await.unwrap();
    // A token checked against a password that has changed since is not issued.
    assert!(!store.insert_token("stale-token-hash", "admin", "$argon2id$v=19$first", now + week).await.unwrap());
    assert_eq!(store.token_user("live-token-hash").await.unwrap(), Some(changed), "an unexpired token");
    assert_eq!(store.token_user("old-token-hash").await.unwrap(), None, "an expired token");
    assert_eq!(store.token_user("unknown-hash").await.unwrap(), None, "an unknown token");

    // A logout revokes one token; a password change revokes all of the user's.
    store.insert_token("second-token-hash", "admin", changed_hash, now + week).await.unwrap();
    assert!(store.revoke_token("live-token-hash").await.unwrap());
    assert!(!store.revoke_token("live-token-hash").await.unwrap(), "revoked once");
    assert_eq!(store.token_user("live-token-hash").await.unwrap(), None, "a revoked token");
    assert!(store.token_user("second-token-hash").await.unwrap().is_some(), "logout spares the others");
    assert_eq!(store.set_password("admin", "$argon2id$v=19$third").await.unwrap(), Some(2), "both remaining tokens");
    assert_eq!(store.token_user("second-token-hash").await.unwrap(), None, "a token from before the change");
}

async fn case_user_lifecycle(store: &Store, _: &DbConfig) {
    migrated(store).await;
    let user = |name: &str| UserRecord {
        username: name.into(),
        password_hash: format!("$argon2id$v=19${name}"),
        role: "user".into(),
        must_change: false,
    };
    assert!(store.ensure_user(&user("ana")).await.unwrap());
    assert!(store.ensure_user(&user("bob")).await.unwrap());
    assert_eq!(store.set_password("nobody", "$argon2id$v=19$x").await.unwrap(), None, "no such user");
    assert_eq!(store.user("nobody").await.unwrap(), None, "and none was made");

    let now = store.now_ms().await.unwrap();
    let later = now + 60_000;
    for (hash, name) in [("ana-1", "ana"), ("ana-2", "ana"), ("bob-1", "bob")] {
        assert!(store.insert_token(hash, name, &user(name).password_hash, later).await.unwrap(), "{hash}");
    }
    let unknown = store.insert_token("nobody-1", "nobody", &user("nobody").password_hash, later).await.unwrap();
    assert!(!unknown, "no token for an unknown user");
    assert_eq!(store.token_user("nobody-1").await.unwrap(), None);
    // A deletion takes the user's tokens with it, and only theirs.
    assert_eq!(store.delete_user("ana").await.unwrap(), Some(2), "both of ana's tokens");
    assert_eq!(store.user("ana").await.unwrap(), None);
    assert_eq!(store.token_user("ana-1").await.unwrap(), None, "a deleted user's token");
    assert_eq!(store.token_user("bob-1").await.unwrap(), Some(user("bob")), "another user's token");
    assert_eq!(store.delete_user("ana").await.unwrap(), None, "deleted once");
    // The name is free again; a token left from before cannot come back with it.
    let deleted = store.insert_token("ana-3", "ana", &user("ana").password_hash, later).await.unwrap();
    assert!(!deleted, "no token for a deleted user");
    assert!(store.ensure_user(&user("ana")).await.unwrap(), "the name can be taken again");
    assert_eq!(store.token_user("ana-2").await.unwrap(), None, "an old token does not revive");
}

async fn case_plugins(store: &Store, _: &DbConfig) {
    migrated(store).await;
    assert!(store.plugin_digests().await.unwrap().is_empty());
    assert_eq!(store.plugin("router").await.unwrap(), None);
    // Every byte value, and more than a MySQL BLOB (64 KiB) holds.
    let component: Vec<u8> = (0..200_000u32).map(|i| (i % 256) as u8).collect();
    let plugin = StoredPlugin {
        kind: "router".into(),
        name: "country".into(),
        version: "1.0.0".into(),
        sha256: "ab".repeat(32),
        component: component.clone(),
        uploaded_at: 0,
    };
    store.put_plugin(&plugin).await.unwrap();
    let stored = store.plugin("router").await.unwrap().expect("stored");
    assert_eq!(stored.component, component, "the component must round-trip byte for byte");
    assert_eq!((stored.name.as_str(), stored.version.as_str()), ("country", "1.0.0"));
    assert!(stored.uploaded_at > 0);
    // A second upload of the kind replaces the first.
    let replacement =
        StoredPlugin { version: "1.1.0".into(), sha256: "cd".repeat(32), component: vec![0, 1, 2], ..plugin };
    store.put_plugin(&replacement).await.unwrap();
    assert_eq!(store.plugin_digests().await.unwrap(), vec![("router".to_string(), "cd".repeat(32))]);
    assert_eq!(store.plugin("router").await.unwrap().unwrap().component, vec![0, 1, 2]);
    assert!(store.delete_plugin("router").await.unwrap());
    assert!(!store.delete_plugin("router").await.unwrap());
    assert!(store.plugin_digests().await.unwrap().is_empty());
}

async fn case_media(store: &Store, _: &DbConfig) {
    migrated(store).await;
    let before = store.now_ms().await.unwrap();
    let record = MediaRecord {
        id: "4b5bf27b-8672-4d55-bc21-d096dc200d0f".into(),
        mime_type: "audio/ogg; codecs=opus".into(),
        sha256: "ab".repeat(32),
        size: 64 << 20,
        origin: MediaOrigin::Inbound,
        created_at: 0,
    };
    store.insert_media(&record).await.unwrap();
    assert!(store.insert_media(&record).await.is_err(), "an id is recorded once");
    let stored = store.media(&record.id).await.unwrap().expect("recorded");
    assert!(stored.created_at >= before, "stamped by the database clock");
    assert_eq!(stored, MediaRecord { created_at: stored.created_at, ..record.clone() });
    assert_eq!(store.media("nope").await.unwrap(), None);
    assert!(store.delete_media(&record.id).await.unwrap());
    assert!(!store.delete_media(&record.id).await.unwrap());
    assert_eq!(store.media(&record.id).await.unwrap(), None);
}

async fn case_contacts(store: &Store, _: &DbConfig) {
    migrated(store).await;
    let inputs: Vec<String> = vec!["+1 555 0100".into(), "15550101".into(), "15550102".into()];
    assert!(store.cached_contacts(&inputs, CONTACT_RESULT_TTL_MS).await.unwrap().is_empty());
    let checks: Vec<(String, u32)> = vec![(inputs[0].clone(), 1), (inputs[1].clone(), 0), (inputs[2].clone(), 1)];
    store.request_contact_checks(&checks).await.unwrap();
    store.request_contact_checks(&[(inputs[0].clone(), 0)]).await.unwrap();
    assert_eq!(store.pending_contact_checks(1, 10).await.unwrap(), vec![inputs[0].clone(), inputs[2].clone()]);
    assert_eq!(
        store.pending_contact_checks(0, 10).await.unwrap(),
        vec![inputs[1].clone()],
        "queued once, on its shard"
    );
    assert_eq!(store.pending_contact_checks(1, 1).await.unwrap().len(), 1, "limit");

    let valid = ContactRow {
        input: inputs[0].clone(),
        status: ContactStatus::Valid,
        wa_id: Some("15550100".into()),
        checked_at: 0,
    };
    let invalid = ContactRow { input: inputs[2].clone(), status: ContactStatus::Invalid, wa_id: None, checked_at: 0 };
    let before = store.now_ms().await.unwrap();
    store.record_contact_results(&[valid.clone(), invalid.clone()]).await.unwrap();
    assert!(store.pending_contact_checks(1, 10).await.unwrap().is_empty(), "recorded checks leave the queue");
    assert_eq!(store.pending_contact_checks(0, 10).await.unwrap(), vec![inputs[1].clone()]);
    let mut cached = store.cached_contacts(&inputs, CONTACT_RESULT_TTL_MS).await.unwrap();
    cached.sort_by(|a, b| a.input.cmp(&b.input));
    assert_eq!(cached.len(), 2);
    assert!(cached.iter().all(|c| c.checked_at >= before), "stamped by the database clock: {cached:?}");
    assert_eq!(cached[0], ContactRow { checked_at: cached[0].checked_at, ..valid.clone() });
    assert_eq!(cached[1], ContactRow { checked_at: cached[1].checked_at, ..invalid });

    // A newer result replaces the older one; results age on the database clock.
    let changed = ContactRow { status: ContactStatus::Invalid, wa_id: None, ..valid };
    store.record_contact_results(&[changed]).await.unwrap();
    let again = store.cached_contacts(&inputs[..1], CONTACT_RESULT_TTL_MS).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].status, ContactStatus::Invalid);
    wait_database_clock_past(store, again[0].checked_at + 50).await;
    assert!(store.cached_contacts(&inputs[..1], 20).await.unwrap().is_empty(), "older than the max age");

    // More inputs than one statement takes.
    let many: Vec<String> = (0..1200).map(|i| format!("1666{i:07}")).collect();
    let rows: Vec<ContactRow> = many
        .iter()
        .map(|i| ContactRow { input: i.clone(), status: ContactStatus::Valid, wa_id: Some(i.clone()), checked_at: 0 })
        .collect();
    store.record_contact_results(&rows).await.unwrap();
    assert_eq!(store.cached_contacts(&many, CONTACT_RESULT_TTL_MS).await.unwrap().len(), 1200);
}

async fn case_inbound_lookup(store: &Store, _: &DbConfig) {
    migrated(store).await;
    let inbound = InboundMessage {
        id: "ABGGFlA5FpafAgo6EhoNtrtPzjp".into(),
        sender: "15551230000".into(),
        body: "hola".into(),
        timestamp_s: 1_700_000_000,
        shard: 3,
    };
    assert_eq!(store.inbound_message(&inbound.id).await.unwrap(), None);
    store.store_inbound(&inbound).await.unwrap();
    assert_eq!(store.inbound_message(&inbound.id).await.unwrap(), Some(inbound));
}
