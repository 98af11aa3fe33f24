//! The shared SQL store: one interface over SQLite, PostgreSQL and MySQL.
//!
//! Every node talks to the cluster only through [`Store`]. Each file holds
//! the queries of one table family:
//! - [`master_lease`]: the master election, judged on the database clock;
//! - [`shard_map`]: per-shard ownership leases with fencing epochs;
//! - [`nodes`]: node registration, liveness and heartbeat observations;
//! - [`plugins`]: policy plugins uploaded to the cluster;
//! - [`settings`]: the versioned application settings document;
//! - [`messages`]: the durable outbox and inbound messages;
//! - [`callbacks`]: the callbacks waiting for the webhook receiver, and their delivery;
//! - [`inbound`]: reading one inbound message back (to mark it read);
//! - [`media`]: the media directory's index: type, digest and size of each medium;
//! - [`contacts`]: contact check results and the checks queued per shard;
//! - [`users`]: API users and their bearer tokens.
//!
//! Queries are portable SQL with a few tokens that [`dialect::Dialect`]
//! rewrites per engine, so the three backends share one implementation and
//! one test suite.

pub mod callbacks;
pub mod contacts;
pub mod dialect;
pub mod inbound;
pub mod master_lease;
pub mod media;
pub mod messages;
pub mod nodes;
pub mod plugins;
pub mod schema;
pub mod settings;
pub mod shard_map;
pub mod users;

use crate::config::{DbConfig, DbEngine};
use dialect::Dialect;
use sqlx::any::{AnyArguments, AnyPoolOptions};
use sqlx::query::Query;
use sqlx::{Any, AnyPool, Executor, Row};
use std::path::PathBuf;
use std::time::Duration;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The database was upgraded by a newer Shardgate; running on would corrupt it.
    #[error(
        "the database schema is at version {found}, newer than version {known} that this \
         shardgate {build} knows; upgrade this node to a newer shardgate"
    )]
    SchemaTooNew {
        /// Version found in the database.
        found: i64,
        /// Newest version this build knows.
        known: i64,
        /// This build's version.
        build: &'static str,
    },
    /// Stored data could not be decoded.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// A file or directory of the store could not be read or written.
    #[error("{action} {}: {error}", .path.display())]
    Io {
        /// What was being done, e.g. `cannot create`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why it failed. Shown in the message and deliberately not a
        /// `source()`, so that error chains (`{:#}`) do not print it twice.
        error: std::io::Error,
    },
}

/// Result of store calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// Handle to the shared database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
}

impl Store {
    /// Connects, creating the database (or SQLite file) when it does not exist.
    pub async fn connect(config: &DbConfig) -> StoreResult<Store> {
        sqlx::any::install_default_drivers();
        let engine = config.engine;
        let name = config.database_name();
        if engine == DbEngine::Sqlite {
            std::fs::create_dir_all(&config.data_dir).map_err(|error| StoreError::Io {
                action: "cannot create",
                path: config.data_dir.clone(),
                error,
            })?;
        } else {
            create_server_database(config, &name).await?;
        }
        let url = match engine {
            DbEngine::Sqlite => format!("sqlite://{}?mode=rwc", config.sqlite_path().display()),
            _ => config.server_url(&name),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if engine == DbEngine::Sqlite { 4 } else { 8 })
            .min_connections(0)
            .idle_timeout(config.idle_timeout())
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if engine == DbEngine::Sqlite {
                        // WAL lets the node processes read while one writes; FULL
                        // makes an acknowledged message survive a power cut too.
                        conn.execute("PRAGMA journal_mode=WAL").await?;
                        conn.execute("PRAGMA synchronous=FULL").await?;
                        conn.execute("PRAGMA busy_timeout=10000").await?;
                    }
                    if engine == DbEngine::MySql {
                        // `{now}` is UNIX_TIMESTAMP(NOW(3)), which converts through
                        // the session time zone: in a zone with daylight saving
                        // the repeated autumn hour would turn the lease clock back
                        // an hour. UTC has no such hour.
                        conn.execute("SET time_zone = '+00:00'").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        Ok(Store { pool, dialect: Dialect(engine) })
    }

    /// The engine behind this store.
    pub fn engine(&self) -> DbEngine {
        self.dialect.0
    }

    /// Portable SQL rewritten for this engine.
    pub(crate) fn sql(&self, portable: &str) -> String {
        self.dialect.sql(portable)
    }

    /// The pool, for the store's own modules.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Runs a conditional write of one row and says whether its condition
    /// held: true when it changed exactly one row (the fence, the expected
    /// version or the claim matched; for an insert-ignore, the row was new),
    /// false when it changed none.
    pub(crate) async fn changed_one_row<'q>(&self, query: Query<'q, Any, AnyArguments<'q>>) -> StoreResult<bool> {
        Ok(query.execute(&self.pool).await?.rows_affected() == 1)
    }

    /// The database clock, in unix milliseconds.
    pub async fn now_ms(&self) -> StoreResult<i64> {
        let sql = self.sql("SELECT {now}");
        Ok(sqlx::query(&sql).fetch_one(&self.pool).await?.try_get(0)?)
    }

    /// Creates the tables the master election needs. Idempotent; any master may run it.
    pub async fn bootstrap(&self) -> StoreResult<()> {
        for statement in schema::BOOTSTRAP {
            self.run_ddl(statement).await?;
        }
        Ok(())
    }

    /// The schema version stored in the database, 0 when it is empty.
    pub async fn schema_version(&self) -> StoreResult<i64> {
        let sql = "SELECT version FROM schema_version WHERE id = 1";
        match sqlx::query(sql).fetch_optional(&self.pool).await {
            Ok(Some(row)) => Ok(row.try_get(0)?),
            Ok(None) => Ok(0),
            Err(e) if is_missing_table(&e) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Fails when the database was upgraded by a newer build.
    pub async fn check_not_newer(&self) -> StoreResult<i64> {
        let found = self.schema_version().await?;
        let known = schema::latest_version();
        if found > known {
            return Err(StoreError::SchemaTooNew { found, known, build: crate::VERSION });
        }
        Ok(found)
    }

    /// Applies the missing migrations. Only the primary master calls this.
    pub async fn migrate(&self) -> StoreResult<Vec<i64>> {
        let found = self.check_not_newer().await?;
        let mut applied = Vec::new();
        for migration in schema::MIGRATIONS.iter().filter(|m| m.version > found) {
            tracing::info!(version = migration.version, "applying schema migration: {}", migration.name);
            for statement in migration.statements {
                self.run_ddl(statement).await?;
            }
            let sql = self.sql("UPDATE schema_version SET version = ? WHERE id = 1 AND version < ?");
            sqlx::query(&sql).bind(migration.version).bind(migration.version).execute(&self.pool).await?;
            applied.push(migration.version);
        }
        Ok(applied)
    }

    /// Runs one idempotent DDL statement; tolerates the races of two nodes
    /// creating the same object at once.
    async fn run_ddl(&self, portable: &str) -> StoreResult<()> {
        let mut sql = self.sql(portable);
        if self.engine() == DbEngine::MySql {
            // MySQL (unlike MariaDB) has no CREATE INDEX IF NOT EXISTS; a
            // duplicate index is reported and ignored below instead.
            sql = sql.replace("CREATE INDEX IF NOT EXISTS", "CREATE INDEX");
        }
        match self.pool.execute(sql.as_str()).await {
            Ok(_) => Ok(()),
            Err(e) if is_already_exists(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// A duration in the store's unit, milliseconds, for arithmetic on the
/// database clock; absurdly long durations saturate at a quarter of
/// `i64::MAX`, so that adding one to a timestamp cannot overflow.
pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// Creates `<prefix>shardgate` on a PostgreSQL or MySQL server when missing.
async fn create_server_database(config: &DbConfig, name: &str) -> StoreResult<()> {
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(StoreError::Corrupt(format!(
            "WA_DB_NAME_PREFIX may hold only letters, digits and '_' (database name {name:?})"
        )));
    }
    let maintenance = match config.engine {
        DbEngine::Postgres => "postgres",
        _ => "",
    };
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&config.server_url(maintenance)).await?;
    let exists = match config.engine {
        DbEngine::Postgres => sqlx::query("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_optional(&mut conn)
            .await?
            .is_some(),
        _ => false,
    };
    if !exists {
        let sql = match config.engine {
            DbEngine::Postgres => format!("CREATE DATABASE {name}"),
            _ => format!("CREATE DATABASE IF NOT EXISTS {name}"),
        };
        if let Err(e) = conn.execute(sql.as_str()).await {
            if !is_already_exists(&e) {
                return Err(e.into());
            }
        }
    }
    let _ = sqlx::Connection::close(conn).await;
    Ok(())
}

fn db_error_text(e: &sqlx::Error) -> Option<(String, String)> {
    match e {
        sqlx::Error::Database(db) => {
            Some((db.code().map(|c| c.into_owned()).unwrap_or_default(), db.message().to_ascii_lowercase()))
        }
        _ => None,
    }
}

fn is_missing_table(e: &sqlx::Error) -> bool {
    db_error_text(e).is_some_and(|(code, msg)| {
        code == "42P01" || code == "42S02" || msg.contains("no such table") || msg.contains("doesn't exist")
    })
}

fn is_already_exists(e: &sqlx::Error) -> bool {
    db_error_text(e).is_some_and(|(code, msg)| {
        // 42P04 duplicate database, 42P07 duplicate table, 23505 a concurrent
        // CREATE racing in pg_type; MySQL 1061 duplicate key name.
        matches!(code.as_str(), "42P04" | "42P07" | "23505" | "42000")
            && (msg.contains("exist") || msg.contains("duplicate"))
            || msg.contains("already exists")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_version_is_the_last_migration() {
        assert_eq!(schema::latest_version(), schema::MIGRATIONS.last().unwrap().version);
        let versions: Vec<i64> = schema::MIGRATIONS.iter().map(|m| m.version).collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "migrations must be ordered");
    }
}
