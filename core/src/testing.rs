//! Test support (feature `test-support`): throw-away databases on the
//! machine's servers for the store suite, the cluster tests and the
//! benchmark.
//!
//! Each [`TestDatabase`] gets a unique name (`sgt_<8 hex>_shardgate`, or a
//! SQLite file in a fresh temp dir) and is dropped with its guard, also when
//! a test panics: the servers are shared with other CI jobs, so nothing here
//! touches a database it did not create. The servers are expected at
//! 127.0.0.1:5432 (PostgreSQL, user `postgres`, trust auth) and
//! 127.0.0.1:3306 (MariaDB, `root`, empty password). When one is unreachable
//! the test fails naming it, unless `SHARDGATE_SKIP_SERVER_DBS=1` is set.

use crate::config::{DbConfig, DbEngine};
use std::time::Duration;

/// A database created for one test and dropped when this guard is dropped.
pub struct TestDatabase {
    /// How to reach it.
    pub config: DbConfig,
}

impl TestDatabase {
    /// A fresh database on `engine`; `None` when the server tests are skipped.
    /// The database itself is created by the first `Store::connect`.
    pub async fn create(engine: DbEngine) -> Option<TestDatabase> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let config = DbConfig {
            engine,
            hostname: "127.0.0.1".into(),
            port: None,
            username: None,
            password: None,
            data_dir: std::env::temp_dir().join(format!("shardgate-test-{id}")),
            name_prefix: format!("sgt_{}_", &id[..8]),
            idle_timeout_ms: 60_000,
        };
        if engine != DbEngine::Sqlite && !server_reachable(&config).await {
            return None;
        }
        Some(TestDatabase { config })
    }

    /// The server as an operator would name it in a bug report.
    pub fn server_name(&self) -> String {
        server_name(&self.config)
    }

    /// The `shardgate` flags that point a node at this database.
    pub fn cli_args(&self) -> Vec<String> {
        let mut args = vec![
            "--db-engine".to_string(),
            self.config.engine.as_env().to_string(),
            "--db-hostname".to_string(),
            self.config.hostname.clone(),
            "--db-name-prefix".to_string(),
            self.config.name_prefix.clone(),
            "--data-dir".to_string(),
            self.config.data_dir.display().to_string(),
        ];
        if let Some(port) = self.config.port {
            args.extend(["--db-port".to_string(), port.to_string()]);
        }
        args
    }
}

/// A SQLite store in `dir`, migrated, with a cluster of `shards` shards set
/// up: what an in-process webapp needs.
pub async fn sqlite_cluster_store(
    dir: &std::path::Path,
    shards: u32,
) -> crate::store::StoreResult<crate::store::Store> {
    let config = DbConfig {
        engine: DbEngine::Sqlite,
        hostname: String::new(),
        port: None,
        username: None,
        password: None,
        name_prefix: String::new(),
        idle_timeout_ms: 60_000,
        data_dir: dir.to_path_buf(),
    };
    let store = crate::store::Store::connect(&config).await?;
    store.bootstrap().await?;
    store.migrate().await?;
    let cluster = crate::store::shard_map::ClusterInfo { shards, account: "15550000000".into() };
    store.init_cluster(&cluster).await?;
    Ok(store)
}

impl crate::store::Store {
    /// Sets the stored schema version, as a newer build would have.
    pub async fn forge_schema_version_for_tests(&self, version: i64) -> crate::store::StoreResult<()> {
        let sql = self.sql("UPDATE schema_version SET version = ? WHERE id = 1");
        sqlx::query(&sql).bind(version).execute(self.pool()).await?;
        Ok(())
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let config = self.config.clone();
        // The test's runtime may be unwinding or shutting down: run the drop on
        // a fresh runtime in its own thread.
        let outcome = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?
                .block_on(drop_database(&config))
        })
        .join()
        .unwrap_or_else(|_| Err("the drop thread panicked".into()));
        if let Err(e) = outcome {
            let message = format!(
                "could not drop test database {} on {}: {e}",
                self.config.database_name(),
                server_name(&self.config)
            );
            if std::thread::panicking() {
                eprintln!("{message}");
            } else {
                panic!("{message}");
            }
        }
    }
}

/// Drops exactly the database of `config`, which this suite created.
async fn drop_database(config: &DbConfig) -> Result<(), String> {
    let name = config.database_name();
    assert!(name.starts_with("sgt_"), "refusing to drop {name:?}: not a test database");
    match config.engine {
        DbEngine::Sqlite => match std::fs::remove_dir_all(&config.data_dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("remove {}: {e}", config.data_dir.display())),
        },
        DbEngine::Postgres | DbEngine::MySql => {
            sqlx::any::install_default_drivers();
            let maintenance = if config.engine == DbEngine::Postgres { "postgres" } else { "" };
            let url = config.server_url(maintenance);
            let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
                .await
                .map_err(|e| format!("connect {url}: {e}"))?;
            // FORCE ends sessions still attached (PostgreSQL 13+); MariaDB
            // needs no such thing for idle sessions.
            let sql = match config.engine {
                DbEngine::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                _ => format!("DROP DATABASE IF EXISTS {name}"),
            };
            sqlx::Executor::execute(&mut conn, sql.as_str()).await.map_err(|e| format!("{sql}: {e}"))?;
            let _ = sqlx::Connection::close(conn).await;
            Ok(())
        }
    }
}

/// The server of `config` as an operator would name it in a bug report.
fn server_name(config: &DbConfig) -> String {
    let (name, port, user) = match config.engine {
        DbEngine::Sqlite => return format!("SQLite in {}", config.data_dir.display()),
        DbEngine::Postgres => ("PostgreSQL", 5432, "postgres"),
        DbEngine::MySql => ("MariaDB", 3306, "root"),
    };
    let port = config.port.unwrap_or(port);
    let user = config.username.as_deref().unwrap_or(user);
    format!("{name} at {}:{port} (user {user})", config.hostname)
}

/// Whether the server answers; panics naming it unless the skip variable is set.
async fn server_reachable(config: &DbConfig) -> bool {
    sqlx::any::install_default_drivers();
    let maintenance = if config.engine == DbEngine::Postgres { "postgres" } else { "" };
    let url = config.server_url(maintenance);
    let attempt =
        tokio::time::timeout(Duration::from_secs(10), <sqlx::AnyConnection as sqlx::Connection>::connect(&url)).await;
    let error = match attempt {
        Ok(Ok(conn)) => {
            let _ = sqlx::Connection::close(conn).await;
            return true;
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no answer within 10 s".to_string(),
    };
    let server = server_name(config);
    if std::env::var("SHARDGATE_SKIP_SERVER_DBS").as_deref() == Ok("1") {
        eprintln!("skipped: {server} is unreachable ({error}) and SHARDGATE_SKIP_SERVER_DBS=1");
        return false;
    }
    panic!(
        "{server} is unreachable: {error}. The tests need it; start it, or set \
         SHARDGATE_SKIP_SERVER_DBS=1 to skip the PostgreSQL and MariaDB runs."
    );
}
